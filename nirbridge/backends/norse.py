"""The ``norse`` backend: a graph run by Norse 1.1's own reader and executor.

:meth:`NorseBackend.run` builds the model with Norse's node mapping inside
``nirtorch.load`` (exactly what ``norse.torch.from_nir(graph, dt=dt)`` builds) at the
graph's dt and steps it ``[T, B, ...]`` one step at a time, as Norse users do. Nodes
Norse does not know but nirbridge registers as neurons (KLIF, ARLIF, NorseLIF ...) run
through a small torch module stepping nirbridge's own ``spec.runner(node, dt)``, plugged
into the same executor (state in and out the way nirtorch's ``GraphExecutor`` passes it).
Nested subgraphs are flattened first (records keep the ``sub.x`` names).

Default ``dtype="float64"``: the modules run in float64 with the parameters Norse itself
builds (float32 values; Norse keeps its neuron parameters in float32 even then, so each
per-step factor ``dt·(1/τ)`` is computed in float32): that separates Norse's *reading*
from float32 arithmetic. ``dtype="float32"`` runs Norse natively.

:meth:`NorseBackend.reading` says where that departs from NIR, node by node (the Norse
front-end's :func:`~nirbridge.export.frontends.norse.from_file` knows the reader), and gives
the graph it computes in nirbridge's exact nodes: the reference run of that graph equals
this backend's float64 run exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import nir
import numpy as np
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
from nirbridge.neurons import spec_of
from nirbridge.passes import graph_dt

log = logging.getLogger(__name__)

OPTIONS = ("dtype",)

#: Norse rounds every array to float32 and computes ``dt·(1/τ)`` in float32. Measured on
#: the tests' dense and conv graphs (float64 weights, T = 16): graded outputs within
#: 6e-8 (float64 run) and 2e-7 (dtype="float32") of each layer's largest value.
TOLERANCE = Tolerance(
    "rounding", 1e-6, 1.0,
    "float64 run of the parameters Norse builds in float32: each weight, threshold and "
    "per-step factor dt·(1/τ) is rounded to float32, so graded values differ from the "
    "float64 reference by float32 rounding (measured ≤ 6e-8, float32 runs ≤ 2e-7, of the "
    "layer's largest value) and a spike can flip only where v lies within that of the "
    "threshold; nothing differs where every array is a float32 value and dt/τ exact in "
    "float32 (reading() then has no note)")


class _NirbridgeStep(torch.nn.Module):
    """A registered nirbridge neuron Norse does not know, as a module nirtorch's executor
    steps: ``forward(x, state) -> (y, state)``; nirtorch keeps ``state`` between calls
    because the signature has a ``state`` parameter."""

    def __init__(self, node: nir.NIRNode, dt: float) -> None:
        super().__init__()
        spec = spec_of(node)
        assert spec is not None
        self.type_name = spec.name
        self._init, self._step = spec.runner(node, dt)

    def forward(self, x: torch.Tensor, state: Any = None):
        return self._step(x, self._init(x) if state is None else state)

    def extra_repr(self) -> str:
        return f"nirbridge {self.type_name}"


def _custom(node: nir.NIRNode) -> bool:
    spec = spec_of(node)
    return spec is not None and spec.custom


def _model_map(dt: float):
    # Norse 1.1.0's from_nir accepts no mapping of its own; its mapping function
    # (norse.torch.utils.import_nir._import_norse_module, private) is the one way to run
    # Norse's reading of the standard nodes and nirbridge's steps in one executor.
    import warnings

    with warnings.catch_warnings():  # Norse 1.1 scripts its modules at import: its warning
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
        from norse.torch.utils.import_nir import _import_norse_module

    def model_map(node: nir.NIRNode):
        if _custom(node):
            return _NirbridgeStep(node, dt)
        return _import_norse_module(node, ignore_warnings=True, dt=dt)

    return model_map


def _placeholders(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, dict[str, nir.NIRNode]]:
    """``graph`` with each custom node replaced by an ``Output`` node (which the Norse
    front-end passes through as it is), and the custom nodes by name."""
    custom = {n: node for n, node in graph.nodes.items() if _custom(node)}
    nodes = {n: (nir.Output(output_type={"output": np.array([1])}) if n in custom else node)
             for n, node in graph.nodes.items()}
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges),
                        metadata=dict(graph.metadata or {}), type_check=False), custom


def _node_reasons(name: str, node: nir.NIRNode) -> list[str]:
    from nirbridge.export.frontends.norse import from_file

    if _custom(node) or isinstance(node, (nir.Input, nir.Output)):
        return []
    if isinstance(node, nir.LI):
        return [f"node '{name}' (LI): Norse 1.1.0's from_nir maps LI to nothing, so its "
                "executor skips the node and what it feeds loses that input; run a graph "
                "with LI on another backend (reference, lava-float)"]
    try:  # the front-end raises for what Norse's reader cannot read
        from_file(nir.NIRGraph(nodes={name: node}, edges=[], type_check=False), dt=1.0)
    except NirbridgeError as exc:
        return [str(exc).split("; read the file")[0]]
    return []


def _rel_change(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    scale = np.maximum(np.abs(a), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b) / scale)) if a.size else 0.0


_FIELDS = ("weight", "bias", "tau", "tau_syn", "tau_mem", "v_threshold", "v_leak", "w_in", "r")


def _by_node(notes: list[str]) -> dict[str, list[str]]:
    """The front-end's node notes (``"a, b: text"``) by node."""
    out: dict[str, list[str]] = {}
    for line in notes:
        names, _, text = line.partition(": ")
        for n in names.split(", "):
            out.setdefault(n, []).append(text)
    return out


def _rounding_notes(graph: nir.NIRGraph, read: nir.NIRGraph,
                    named: dict[str, list[str]]) -> list[str]:
    """Per node and field: what Norse's float32 reading changed, where the front-end's
    own notes (``named``) do not already say it; and where it starts at ``v_leak``."""
    notes = []
    for name, node in graph.nodes.items():
        new = read.nodes.get(name)
        if new is None or _custom(node) or isinstance(node, (nir.Input, nir.Output)):
            continue
        for f in _FIELDS:
            old_v, new_v = getattr(node, f, None), getattr(new, f, None)
            ignored = any(t.startswith(f"{f} ignored") for t in named.get(name, ()))
            if old_v is None or new_v is None or ignored:
                continue
            if f.startswith("tau"):
                change = _rel_change(1.0 / np.asarray(old_v, np.float64),
                                     1.0 / np.asarray(new_v, np.float64))
                if change:
                    notes.append(f"{name}: {f} read as Norse's per-step factor dt·(1/{f}) "
                                 f"computed in float32 (dt/{f} changes by up to {change:.1e} "
                                 "relative)")
                continue
            change = _rel_change(old_v, new_v)
            if change:
                notes.append(f"{name}: {f} rounded to float32 as Norse reads it (changes by "
                             f"up to {change:.1e} relative)")
        if isinstance(node, nir.Flatten) and (int(node.start_dim), int(node.end_dim)) != (
                int(new.start_dim), int(new.end_dim)):
            notes.append(f"{name}: Flatten start_dim = {int(node.start_dim)}, end_dim = "
                         f"{int(node.end_dim)} read as NIR's start_dim = {int(new.start_dim)}, "
                         f"end_dim = {int(new.end_dim)} (Norse applies torch.nn.Flatten with "
                         "these dims to the batched step [B, ...])")
        v0 = (getattr(new, "metadata", None) or {}).get("v_init")
        if v0 is not None and np.any(np.asarray(v0) != 0) and isinstance(node, nir.LIF):
            notes.append(f"{name}: v starts at v_leak = {np.unique(v0).tolist()[:4]} "
                         "(Norse's LIFBoxCell), not at 0 as NIR's LIF")
    return notes


def _states(state: Any) -> dict[str, torch.Tensor]:
    """A node's state as nirtorch stores it (the tuple after the output) by field."""
    (s,) = state if isinstance(state, tuple) and len(state) == 1 else (state,)
    if hasattr(s, "_fields"):
        return {f: getattr(s, f) for f in s._fields if torch.is_tensor(getattr(s, f))}
    if isinstance(s, tuple) and len(s) == 2 and all(hasattr(p, "v") for p in s):
        return {"v": s[1].v, "i": s[0].v}  # Norse's CubaLIF: (synapse, LIFBoxCell)
    return {}


class NorseBackend:
    """The ``norse`` backend (:class:`~nirbridge.backends.Backend`); see the module
    documentation."""

    name = "norse"
    description = ("Norse 1.1's own from_nir reading and executor (nirbridge's steps for "
                   "custom neurons), float64 by default")
    tolerance = TOLERANCE

    def check(self, graph: nir.NIRGraph, **options: Any) -> list[str]:
        """Why Norse cannot run ``graph``: nodes its reader does not read (LI, Scale,
        Delay, Conv1d, AvgPool2d ... named), several Input nodes, a cycle nirtorch orders
        differently from NIR."""
        check_options(self.name, options, OPTIONS)
        nt.run_dtype(options)
        flat, reasons = nt.graph_reasons(graph, "Norse", _node_reasons)
        if flat is not None and not reasons:
            reasons += nt.misordered_cycles(flat, nt.late_edges(flat))
        return reasons

    def reading(self, graph: nir.NIRGraph, *, dt: float | None = None,
                **options: Any) -> Reading:
        """Norse's reading of ``graph`` at its dt: one note per departure from NIR (node and
        field), and the graph it computes (custom nodes as they are)."""
        from nirbridge.export.frontends.norse import from_file

        flat = runnable(self, graph, options)
        step = graph_dt(flat, dt)
        stand_in, custom = _placeholders(flat)
        read, fe_notes = from_file(stand_in, dt=step)
        read.nodes.update(custom)
        # from_file's first two notes are general (the dt it reads with, which here is the
        # graph's own; float32 arrays): the per-node notes below say which arrays changed
        named = fe_notes[2:]
        notes = _rounding_notes(flat, read, _by_node(named)) + named
        on_cycles = set(nt.cycle_edges(flat))
        acyclic = [e for e in nt.late_edges(flat) if e not in on_cycles]
        notes += [nt.late_note(s, d, f"reads {s}'s output of the previous step (zero at "
                               "t = 0), where NIR sums this step's") for s, d in acyclic]
        read = nt.delayed(read, acyclic, step)
        read.metadata = {**dict(read.metadata or {}), "dt": step}
        return Reading(notes, read)

    def run(self, graph: nir.NIRGraph, inputs: Any, *, record: bool | Iterable[str] | None = False,
            dt: float | None = None, **options: Any) -> RunResult:
        """Run ``inputs`` ``[T, B, ...]`` through Norse's executor one step at a time."""
        flat = runnable(self, graph, options)
        dtype = nt.run_dtype(options)
        step = graph_dt(flat, dt)
        want = set(flat.nodes) if record is True else set(record or ())
        unknown = want - set(flat.nodes)
        if unknown:
            raise InputError(f"record names nodes {sorted(unknown)} the graph does not have")
        x = nt.one_input(flat, inputs, dtype)
        t0 = time.perf_counter()
        model = nt.load(flat, _model_map(step))
        model = model.double() if dtype == torch.float64 else model
        nt.check_order(model, flat, "Norse")
        outputs = [n for n, node in flat.nodes.items() if isinstance(node, nir.Output)]
        hooks = nt.InputRecorder(model, want) if want else None
        per_step: dict[str, list[torch.Tensor]] = {n: [] for n in set(outputs) | want}
        states: dict[str, list[dict[str, torch.Tensor]]] = {n: [] for n in want}
        t1 = time.perf_counter()
        try:
            state = None
            with torch.no_grad():
                for xt in x:
                    _, state = model(xt, state)
                    for n in per_step:
                        per_step[n].append(state.cache[nt.sanitized(n)])
                    for n in states:
                        s = state.state.get(nt.sanitized(n))
                        if s is not None:
                            states[n].append(_states(s))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise SimulationError(f"Norse's executor failed: {type(exc).__name__}: "
                                  f"{exc}") from exc
        finally:
            if hooks is not None:
                hooks.close()
        t2 = time.perf_counter()
        series = {n: torch.stack(v).to(torch.float64) for n, v in per_step.items()}
        records = {}
        if want:
            from nirbridge.backends.reference import RunRecord

            for n in want:
                ins = hooks.inputs.get(n) if hooks is not None else None
                fields = states[n][0].keys() if states[n] else ()
                records[n] = RunRecord(
                    input=torch.stack(ins).to(torch.float64) if ins else None,
                    output=series[n],
                    states={f: torch.stack([torch.as_tensor(s[f]).expand_as(series[n][0])
                                            for s in states[n]]).to(torch.float64)
                            for f in fields})
        outs = {n: to_numpy(series[n]) for n in outputs}
        return RunResult(outs[outputs[0]] if len(outs) == 1 else outs, records,
                         {"backend": self.name, "dt": step,
                          "dtype": str(dtype).removeprefix("torch."),
                          "seconds": {"build": t1 - t0, "run": t2 - t1, "wall": t2 - t0}})


#: The Norse backend, as listed in :data:`nirbridge.backends.BACKENDS`.
BACKEND = NorseBackend()

__all__ = ["BACKEND", "OPTIONS", "TOLERANCE", "NorseBackend"]
