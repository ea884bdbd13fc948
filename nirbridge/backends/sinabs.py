"""The ``sinabs`` backend: a graph run by Sinabs 3.1's own reader, ``sinabs.from_nir``:
what Sinabs, and so SynSense's Speck chip programmed from a Sinabs model, computes from
the file.

:meth:`SinabsBackend.run` builds ``sinabs.from_nir(graph, batch_size=B)`` (nirtorch's
executor over Sinabs' ``*Squeeze`` layers) and runs the whole sequence in Sinabs' own
layout, ``[B·T, ...]``, in one call; outputs and records come back as ``[T, B, ...]``
(records from the executor's cache, inputs from forward pre-hooks, ``v_mem`` from the
layers' recordings). Default ``dtype="float64"``: the model in float64 with the
parameters Sinabs builds (float32 weights), each layer's input cast back to float64
because Sinabs' spike functions return float32 (small integer counts: exact); option
``dtype="float32"`` runs Sinabs natively.

Sinabs reads NIR's ``IF`` as its multi-spike IAF (``floor(v/θ)`` spikes per step,
subtractive reset, ``v`` floored at ``−v_threshold``, firing on ``>=``), ``LIF`` as its
multi-spike LIF with ``α = exp(−1/τ)``, every τ in time steps (dt = 1) whatever the file
says: :meth:`SinabsBackend.reading` names each departure per node (from the Sinabs
front-end's :func:`~nirbridge.export.frontends.sinabs.from_file`) and gives the graph it
computes; the reference run of that graph equals this backend's float64 run exactly.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from typing import Any

import nir
import torch

from nirbridge.backends import _nirtorch as nt
from nirbridge.backends._base import (
    Reading,
    RunResult,
    Tolerance,
    check_options,
    runnable,
    to_numpy,
)
from nirbridge.errors import InputError, NirbridgeError, SimulationError
from nirbridge.passes import graph_dt

OPTIONS = ("dtype",)
#: The dt Sinabs reads every file with (τ in time steps).
DT = 1.0

#: Sinabs rounds weights to float32 and takes exp(−1/τ) of a float32 τ; on a graph it
#: reads as NIR (Affine and pooling only: no NIR neuron reads the same) that is float32
#: rounding of graded values.
TOLERANCE = Tolerance(
    "rounding", 1e-6, 1.0,
    "float64 run of the weights Sinabs builds in float32 (rounded: ~6e-8 relative each); "
    "NIR's IF and LIF are never read per the spec (see reading()), so verify measures "
    "their difference rather than holding Sinabs to it")

#: The NIR node types ``sinabs.from_nir`` maps (anything else it maps to nothing).
_READ = (nir.Input, nir.Output, nir.Affine, nir.Conv2d, nir.IF, nir.LIF, nir.LI,
         nir.SumPool2d, nir.Flatten)

#: Per-type notes of the front-end (given once for all nodes of the type) and the node
#: type each describes: the backend gives them once per node.
_TYPE_NOTES = {"IF read as Sinabs IAF": nir.IF, "LIF read as Sinabs LIF": nir.LIF,
               "LI read as Sinabs ExpLeak": nir.LI}


def _node_reasons(name: str, node: nir.NIRNode) -> list[str]:
    from nirbridge.export.frontends.sinabs import from_file

    if isinstance(node, nir.Conv1d):
        return [f"node '{name}' (Conv1d): Sinabs 3.1's from_nir fails on a Conv1d read from a "
                "file (it calls .detach() on its numpy arrays)"]
    if not isinstance(node, _READ):
        return [f"node '{name}' ({type(node).__name__}): sinabs.from_nir has no mapping for "
                "it (its executor would skip the node silently); Sinabs reads Affine, "
                "Conv2d, IF, LIF, LI, SumPool2d and Flatten"]
    try:  # the front-end raises for the parameters Sinabs' reader refuses
        from_file(nir.NIRGraph(nodes={name: node}, edges=[], type_check=False))
    except NirbridgeError as exc:
        return [str(exc).split("; read the file")[0]]
    return []


def _cast_input(dtype: torch.dtype):
    def hook(_mod: torch.nn.Module, args: tuple) -> tuple:
        return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a
                     for a in args)

    return hook


def _to_tbn(y: torch.Tensor, t: int, b: int) -> torch.Tensor:
    """Sinabs' ``[B·T, ...]`` (or a layer's ``[B, T, ...]`` recording) as ``[T, B, ...]``."""
    if y.dim() >= 1 and y.shape[0] == b * t and not (y.dim() >= 2 and y.shape[:2] == (b, t)):
        y = y.reshape(b, t, *y.shape[1:])
    return y.transpose(0, 1).to(torch.float64)


class SinabsBackend:
    """The ``sinabs`` backend (:class:`~nirbridge.backends.Backend`); see the module
    documentation."""

    name = "sinabs"
    description = ("Sinabs 3.1's own from_nir reading (what Sinabs, and Speck, compute "
                   "from the file), float64 by default")
    tolerance = TOLERANCE

    def check(self, graph: nir.NIRGraph, **options: Any) -> list[str]:
        """Why Sinabs cannot run ``graph``: nodes its reader does not map or refuses
        (custom nodes, CubaLIF, Linear, Scale, Delay, LIF/LI with v_leak ≠ 0 ... named),
        recurrence (it runs the whole sequence in one call), several Input nodes."""
        check_options(self.name, options, OPTIONS)
        nt.run_dtype(options)
        flat, reasons = nt.graph_reasons(graph, "Sinabs", _node_reasons)
        if flat is None:
            return reasons
        for src, dst in nt.cycle_edges(flat):
            reasons.append(f"edge {src} → {dst} closes a cycle: Sinabs' executor runs the "
                           "whole sequence in one call, so a recurrent edge carries nothing")
        if not reasons:
            late = nt.late_edges(flat)
            for src, dst in late:
                if not [s for s, d in flat.edges if d == dst and (s, d) not in late]:
                    reasons.append(nt.late_note(src, dst, "gets no input at all and "
                                                "Sinabs' executor fails"))
        return reasons

    def reading(self, graph: nir.NIRGraph, *, dt: float | None = None,
                **options: Any) -> Reading:
        """Sinabs' reading of ``graph``: one note per departure from NIR, naming the node
        (every IF node: Sinabs' multi-spike IAF), and the graph it computes (dt = 1)."""
        from nirbridge.export.frontends.sinabs import from_file

        flat = runnable(self, graph, options)
        read, fe_notes = from_file(flat)
        notes = []
        if dt is not None and float(dt) != 1.0 and not any("is ignored" in n for n in fe_notes):
            notes.append(f"dt = {float(dt):g} asked: Sinabs reads every τ in time steps "
                         "(dt = 1) whatever the dt")
        for line in fe_notes:
            kind = next((t for key, t in _TYPE_NOTES.items() if line.startswith(key)), None)
            if kind is None:
                notes.append(line)
                continue
            notes += [f"{n}: {line}" for n, node in flat.nodes.items() if isinstance(node, kind)]
        late = nt.late_edges(flat)
        notes += [nt.late_note(s, d, f"never receives {s}'s output (Sinabs calls the "
                               "executor once for the whole sequence)") for s, d in late]
        if late:
            read = nir.NIRGraph(nodes=read.nodes,
                                edges=[e for e in read.edges if e not in late],
                                metadata=read.metadata, type_check=False)
        return Reading(notes, read)

    def run(self, graph: nir.NIRGraph, inputs: Any, *, record: bool | Iterable[str] | None = False,
            dt: float | None = None, **options: Any) -> RunResult:
        """Run ``inputs`` ``[T, B, ...]`` through ``sinabs.from_nir`` in Sinabs' layout."""
        import sinabs
        import sinabs.layers as sl

        flat = runnable(self, graph, options)
        dtype = nt.run_dtype(options)
        # a Sinabs file carries no dt, and Sinabs needs none: its convention, dt = 1
        has_dt = "dt" in (flat.metadata or {})
        step = graph_dt(flat, dt if dt is not None or has_dt else DT)
        want = set(flat.nodes) if record is True else set(record or ())
        unknown = want - set(flat.nodes)
        if unknown:
            raise InputError(f"record names nodes {sorted(unknown)} the graph does not have")
        x = nt.one_input(flat, inputs, dtype)
        steps, batch = int(x.shape[0]), int(x.shape[1])
        t0 = time.perf_counter()
        # from_nir reshapes some arrays of the nodes it reads in place: give it a copy
        with nt.quiet_load():
            model = sinabs.from_nir(copy.deepcopy(flat), batch_size=batch)
        nt.check_order(model, flat, "Sinabs")
        if dtype == torch.float64:
            model.double()
            for mod in model.modules():
                if not list(mod.children()):
                    mod.register_forward_pre_hook(_cast_input(dtype))
        layers = dict(model.named_children())
        for mod in layers.values():
            if isinstance(mod, sl.StatefulLayer):
                mod.record_states = bool(want)
                mod.reset_states()
        hooks = nt.InputRecorder(model, want) if want else None
        t1 = time.perf_counter()
        try:
            with torch.no_grad():
                _, state = model(x.transpose(0, 1).reshape(batch * steps, *x.shape[2:]))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise SimulationError(f"Sinabs' executor failed: {type(exc).__name__}: "
                                  f"{exc}") from exc
        finally:
            if hooks is not None:
                hooks.close()
        t2 = time.perf_counter()
        outputs = [n for n, node in flat.nodes.items() if isinstance(node, nir.Output)]
        records = {}
        if want:
            from nirbridge.backends.reference import RunRecord

            for n in want:
                ins = hooks.inputs.get(n) if hooks is not None else None
                layer = layers.get(nt.sanitized(n))
                rec = getattr(layer, "recordings", None) or {}
                records[n] = RunRecord(
                    input=_to_tbn(ins[0], steps, batch) if ins else None,
                    output=_to_tbn(state.cache[nt.sanitized(n)], steps, batch),
                    states={ours: _to_tbn(rec[theirs], steps, batch)
                            for theirs, ours in (("v_mem", "v"), ("i_syn", "i"))
                            if rec.get(theirs) is not None})
        outs = {n: to_numpy(_to_tbn(state.cache[nt.sanitized(n)], steps, batch))
                for n in outputs}
        return RunResult(outs[outputs[0]] if len(outs) == 1 else outs, records,
                         {"backend": self.name, "dt": step, "reading_dt": DT,
                          "dtype": str(dtype).removeprefix("torch."),
                          "seconds": {"build": t1 - t0, "run": t2 - t1, "wall": t2 - t0}})


#: The Sinabs backend, as listed in :data:`nirbridge.backends.BACKENDS`.
BACKEND = SinabsBackend()

__all__ = ["BACKEND", "OPTIONS", "TOLERANCE", "SinabsBackend"]
