"""The ``fixed`` backend: the batched bit-accurate emulator of Lava's ``fixed_pt``.

The graph is quantized for a target (:func:`nirbridge.quantize.quantize`) and run in
integer arithmetic on torch (:func:`nirbridge.quantize.emulator.run_emulated`, integer for
integer the numpy golden model :func:`nirbridge.quantize.run_fixed_point`; options
``device``, default ``"cpu"``, and ``batch_size``, samples per chunk). Lava's bit-accurate
``lava-fixed`` backend reproduces these integers one for one, given the same
quantization; both pick it the same way (:func:`quantized_for`), from these options:

- ``quant``: a :class:`~nirbridge.quantize.QuantConfig`, a
  :class:`~nirbridge.quantize.QuantizedGraph` of this graph, or a profile (name, TOML
  path or parsed dict), used as given;
- otherwise ``target`` (a profile name or TOML path, default ``loihi2``) with the input
  format fitted to the data as ``nirbridge deploy`` does (:func:`input_quant_config`),
  or fixed by ``input_frac_bits``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.backends._base import (
    Reading,
    RunResult,
    Tolerance,
    check_options,
    error_reason,
    graph_issues,
)
from nirbridge.backends.inputs import check_fixed_range
from nirbridge.backends.reference import RunRecord
from nirbridge.errors import InputError, LoweringError, NirbridgeError
from nirbridge.graph import flatten_subgraphs
from nirbridge.quantize import (
    FixedPointRecord,
    QuantConfig,
    QuantizedGraph,
    quantize,
)
from nirbridge.quantize.emulator import DEFAULT_BATCH_SIZE, run_emulated

#: Fractional bits given to real-valued (graded) network inputs in fixed point: the
#: payload of a Loihi 2 graded spike is wide enough, and 8 bits represent the digits'
#: 1/16 grey levels exactly.
GRADED_INPUT_FRAC_BITS = 8

#: The options of :func:`quantized_for` (taken by ``fixed`` and ``lava-fixed``).
QUANT_OPTIONS = ("quant", "target", "input_frac_bits")

_DEFAULT_TARGET = "loihi2"

#: The options of the ``fixed`` backend: the quantization's and where the emulator runs.
RUN_OPTIONS = ("device", "batch_size")


def _arrays(inputs: Any) -> dict[str, np.ndarray]:
    items = inputs.items() if isinstance(inputs, Mapping) else [("input", inputs)]
    out = {}
    for name, x in items:
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        out[name] = x.astype(np.float64, copy=False)
    return out


def input_quant_config(target: Any, x: Any = None, *,
                       input_frac_bits: int | None = None) -> QuantConfig:
    """The target's quantization settings with an input format fitted to ``x`` (an array
    ``[T, B, ...]`` or a dict of them): integer inputs (spikes, counts) stay integers;
    real-valued inputs get :data:`GRADED_INPUT_FRAC_BITS` fractional bits, unless
    ``input_frac_bits`` says otherwise. Without ``x``: the profile's own input format."""
    if x is None:
        opts = {} if input_frac_bits is None else {"input_frac_bits": input_frac_bits}
        return QuantConfig.from_profile(target, **opts)
    arrays = list(_arrays(x).values())
    for a in arrays:
        if not np.isfinite(a).all():
            raise InputError("inputs contain NaN or inf")
    if input_frac_bits is None:
        graded = any(not np.array_equal(a, np.round(a)) for a in arrays)
        input_frac_bits = GRADED_INPUT_FRAC_BITS if graded else 0
    peak = max((float(np.abs(a).max()) for a in arrays if a.size), default=0.0)
    cfg = QuantConfig.from_profile(target, input_frac_bits=input_frac_bits,
                                   input_max=float(max(1.0, peak)))
    check_fixed_range(peak, cfg.input_frac_bits, cfg.input_bits)
    return cfg


def quantized_for(graph: nir.NIRGraph, inputs: Any = None, *, quant: Any = None,
                  target: Any = None, input_frac_bits: int | None = None,
                  dt: float | None = None) -> QuantizedGraph:
    """The :class:`~nirbridge.quantize.QuantizedGraph` the fixed-point backends run
    ``graph`` with, from their options (see the module's documentation)."""
    if quant is not None:
        if target is not None or input_frac_bits is not None:
            raise InputError("give quant= or target=/input_frac_bits=, not both")
        if isinstance(quant, QuantizedGraph):
            if quant.graph is not graph and set(quant.graph.nodes) != set(
                    flatten_subgraphs(graph).nodes):
                raise LoweringError("the QuantizedGraph given as quant= belongs to another "
                                    f"graph (nodes {sorted(quant.graph.nodes)})")
            return quant
        if isinstance(quant, QuantConfig):
            cfg = quant
        elif isinstance(quant, (str, Path, Mapping)):
            cfg = QuantConfig.from_profile(quant)
        else:
            raise InputError(f"quant={quant!r}: give a QuantConfig, a QuantizedGraph or a "
                             "profile name or path")
    else:
        cfg = input_quant_config(target or _DEFAULT_TARGET, inputs,
                                 input_frac_bits=input_frac_bits)
    return quantize(graph, cfg, dt=dt)


def real_records(records: Mapping[str, FixedPointRecord]) -> dict[str, RunRecord]:
    """Integer records in real units (``int · 2^-frac``), as the other backends record."""
    def tensor(a: np.ndarray | None) -> torch.Tensor | None:
        return None if a is None else torch.from_numpy(a)

    return {n: RunRecord(input=tensor(r.real("input")), output=tensor(r.real("output")),
                         states={k: tensor(r.real(k)) for k in r.states})
            for n, r in records.items()}


def quantization_rows(qgraph: QuantizedGraph, saturations: Mapping[str, Mapping[str, int]],
                      input_saturations: Mapping[str, int]) -> list[dict[str, Any]]:
    """One dict per quantized node, in graph order: its layer report, ``node``, and
    ``saturated`` (events in this run; None for a neuron that did not report them)."""
    rows: list[dict[str, Any]] = []
    for node in qgraph.order:
        if node in qgraph.inputs:
            row: dict[str, Any] = dict(name=node, node_type="Input", kind="input",
                                       scale={"frac_bits": qgraph.layers[node].frac_bits},
                                       clipped=0, zeroed=0, max_abs_error=0.0, fields={},
                                       notes=[])
            row["saturated"] = int(input_saturations.get(node, 0))
        elif node in qgraph.report:
            row = qgraph.report[node].to_dict()
            row["saturated"] = (sum(saturations[node].values()) if node in saturations
                                else None)
        else:
            continue
        row["node"] = node
        rows.append(row)
    return rows


#: What fixed point promises against the float64 reference: the recipes' measured floor
#: (96.0–97.3 % of spikes identical on the digits recipes; deploy/*.toml check >= 95 %).
FIXED_TOLERANCE = Tolerance(
    "bound", graded_rel=float("inf"), min_spike_agreement=0.95,
    why="8-bit weight mantissa: spikes near threshold flip (digits recipes: 96.0-97.3 % "
        "identical, checked >= 95 %)")


class FixedBackend:
    """The ``fixed`` backend (:class:`~nirbridge.backends.Backend`)."""

    name = "fixed"
    description = ("batched bit-accurate emulator of the quantized graph on torch (integer for "
                   "integer lava-fixed)")
    tolerance = FIXED_TOLERANCE

    def reading(self, graph: nir.NIRGraph, **options: Any) -> Reading:
        """Fixed point computes the graph as NIR defines it, on the target's integer
        grids: what that changes is its tolerance, not its reading."""
        return Reading()

    def check(self, graph: nir.NIRGraph, **options: Any) -> list[str]:
        """Why ``graph`` cannot be quantized with ``options`` (quantizes, does not run)."""
        check_options(self.name, options, QUANT_OPTIONS + RUN_OPTIONS)
        device = options.pop("device", "cpu")
        options.pop("batch_size", None)
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            return [f"device={device!r}: torch sees no CUDA device"]
        reasons = graph_issues(graph)
        if reasons:
            return reasons
        try:
            quantized_for(graph, None, **options)
        except NirbridgeError as exc:
            return [error_reason(exc)]
        return []

    def run(self, graph: nir.NIRGraph, inputs: Any, *,
            record: bool | Iterable[str] | None = False, dt: float | None = None,
            **options: Any) -> RunResult:
        """Quantize ``graph`` (see :func:`quantized_for`) and run it in integers on
        ``device`` (default ``"cpu"``), ``batch_size`` samples at a time."""
        check_options(self.name, options, QUANT_OPTIONS + RUN_OPTIONS)
        device = options.pop("device", "cpu")
        batch_size = options.pop("batch_size", DEFAULT_BATCH_SIZE)
        t0 = time.perf_counter()
        qgraph = quantized_for(graph, inputs, dt=dt, **options)
        t1 = time.perf_counter()
        want = set(qgraph.graph.nodes) if record is True else set(record or ())
        res = run_emulated(qgraph, inputs, record=want, device=device, batch_size=batch_size)
        out, kept = res.outputs, res.records
        t2 = time.perf_counter()
        neurons = qgraph.neurons()
        saturations = {n: dict(res.saturations[n]) for n in qgraph.order if n in neurons}
        input_sat = {n: sum(res.saturations[n].values()) for n in qgraph.inputs}
        info: dict[str, Any] = {
            "backend": self.name, "mode": "fixed_pt", "dt": qgraph.dt, "device": str(device),
            "seconds": {"quantize": t1 - t0, "run": t2 - t1, "wall": t2 - t0},
            "quantized": qgraph,
            "quantization": quantization_rows(qgraph, saturations, input_sat),
            "saturations": saturations, "fixed_records": kept or None,
        }
        return RunResult(out, real_records(kept), info)


#: The emulator backend, as listed in :data:`nirbridge.backends.BACKENDS`.
BACKEND = FixedBackend()

__all__ = ["BACKEND", "FIXED_TOLERANCE", "GRADED_INPUT_FRAC_BITS", "QUANT_OPTIONS", "RUN_OPTIONS",
           "FixedBackend",
           "input_quant_config", "quantization_rows", "quantized_for", "real_records"]
