"""What a Lava run returns: :class:`LavaResult`, assembled from the probes' files.

One assembler (:func:`assemble`) for both modes: the probes' arrays are gathered per
node and sample chunk, aligned to the reference time axis; floating_pt values are
returned as they are, fixed_pt integers as the golden run records them
(:class:`~nirbridge.quantize.FixedPointRecord`) and in real units, with the saturation
events and the quantization report rows the ``fixed`` backend builds
(:func:`~nirbridge.backends.fixed.quantization_rows`,
:func:`~nirbridge.backends.fixed.real_records`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nirbridge.backends.fixed import quantization_rows, real_records
from nirbridge.backends.lava.network import LavaNetwork, process_label
from nirbridge.backends.reference import RunRecord
from nirbridge.graph import feedback_edges, predecessors
from nirbridge.quantize import FixedPointRecord, QuantizedNeuron, QuantizedOutput

#: What the probes wrote: per chunk of samples, per node, the arrays of its probe file.
Parts = list[dict[str, dict[str, np.ndarray]]]


@dataclass
class LavaResult:
    """What a Lava run returns, aligned to the reference time axis.

    ``outputs``: ``[T, B, ...]`` (a dict by Output node when there are several);
    ``counts``: non-zero outputs (spikes) per node, sample and neuron, ``[B, *shape]``,
    for every neuron and Output node (every node when recorded) and the inputs;
    ``records``: per node :class:`~nirbridge.backends.reference.RunRecord` (torch
    float64, as the reference) when asked for; ``runs``: Lava runs made (chunks);
    ``steps``: Lava steps run in total; ``seconds``: compile/run/stop/wall times;
    ``child_pids``: the process (and process group) id of each run, for diagnostics;
    ``shards``: the samples ``(start, stop)`` of each run, in order.

    fixed_pt runs: ``outputs`` and ``records`` are in real units (``int · 2^-frac``, as
    :func:`~nirbridge.quantize.run_fixed_point` returns them); ``fixed_records`` holds the
    integers themselves per recorded node, as
    :class:`~nirbridge.quantize.FixedPointRecord` (int64 input/output/states ``[T, B,
    ...]``, their fractional bits, saturation events), directly comparable with the golden
    run's records; ``saturations``: saturation events per neuron node and state field
    (nirbridge's integer neurons report them; Lava's own LIF does not);
    ``quantization``: one dict per quantized node (its
    :class:`~nirbridge.quantize.LayerReport` as a dict, plus ``node``, ``saturated``:
    saturation events in this run or None where not reported, and ``lava_process``).
    """

    outputs: Any
    counts: dict[str, np.ndarray]
    records: dict[str, RunRecord] | None
    runs: int
    steps: int
    seconds: dict[str, float]
    child_pids: list[int] = field(default_factory=list)
    shards: list[tuple[int, int]] = field(default_factory=list)
    fixed_records: dict[str, Any] | None = None
    saturations: dict[str, dict[str, int]] = field(default_factory=dict)
    quantization: list[dict[str, Any]] | None = None


def _gather(net: LavaNetwork, parts: Parts, t: int, b: int, integers: bool
            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                       dict[str, dict[str, np.ndarray]]]:
    """Counts ``[B, *shape]``, outputs and (``input``, ``state_*``) arrays ``[T, B,
    *shape]`` per probed node, the chunks of samples joined (int64 when ``integers``)."""
    def cat(node: str, field_: str, axis: int) -> np.ndarray | None:
        arrays = [p[node][field_] for p in parts if field_ in p[node]]
        return np.concatenate(arrays, axis=axis) if arrays else None

    def typed(a: np.ndarray) -> np.ndarray:
        return a.astype(np.int64, copy=False) if integers else a

    counts: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    extra: dict[str, dict[str, np.ndarray]] = {}
    for node in parts[0]:
        shp = net.streams[node].shape
        counts[node] = cat(node, "counts", 0).reshape(b, *shp)
        out = cat(node, "output", 1)
        if out is not None:
            values[node] = typed(out).reshape(t, b, *shp)
        extra[node] = {k: typed(cat(node, k, 1)).reshape(t, b, *shp)
                       for k in parts[0][node] if k.startswith("state_") or k == "input"}
    return counts, values, extra


def _one_or_all(net: LavaNetwork, outs: dict[str, np.ndarray]) -> Any:
    return outs[net.outputs[0]] if len(outs) == 1 else outs


def _float_records(net: LavaNetwork, values: Mapping[str, np.ndarray],
                   extra: Mapping[str, Mapping[str, np.ndarray]], rec_nodes: set[str]
                   ) -> dict[str, RunRecord]:
    records = {}
    for node in net.streams:
        if node not in rec_nodes or node not in values:
            continue
        ex = extra.get(node, {})
        inp = ex.get("input")
        records[node] = RunRecord(
            input=None if inp is None else torch.from_numpy(inp),
            output=torch.from_numpy(values[node]),
            states={k[len("state_"):]: torch.from_numpy(v) for k, v in ex.items()
                    if k.startswith("state_")})
    return records


def _saturations(net: LavaNetwork, parts: Parts) -> dict[str, dict[str, int]]:
    """Saturation events per neuron and state field, summed over the chunks."""
    saturations: dict[str, dict[str, int]] = {}
    for node in parts[0]:
        if node in net.neurons:
            sat: dict[str, int] = {}
            for part in parts:
                for k, v in part[node].items():
                    if k.startswith("sat_"):
                        sat[k[4:]] = sat.get(k[4:], 0) + int(v)
            if sat:
                saturations[node] = sat
    return saturations


def _fixed_records(net: LavaNetwork, x: Mapping[str, np.ndarray],
                   ints: Mapping[str, np.ndarray],
                   extra: Mapping[str, Mapping[str, np.ndarray]],
                   saturations: Mapping[str, Mapping[str, int]],
                   input_sat: Mapping[str, int], rec_nodes: set[str]
                   ) -> dict[str, FixedPointRecord]:
    """The golden run's records of the recorded nodes, from the Lava run's integers."""
    layers = net.quant.layers
    preds = predecessors(net.graph)
    feedback = set(feedback_edges(net.graph))
    records: dict[str, FixedPointRecord] = {}
    for node in net.streams:
        if node not in rec_nodes or node not in ints:
            continue
        layer = layers.get(node)
        rec = FixedPointRecord(output=ints[node], frac_bits={"output": net.streams[node].frac})
        ex = extra.get(node, {})
        if isinstance(layer, QuantizedNeuron):
            rec.input = ex.get("input")
            rec.states = {k[len("state_"):]: v for k, v in ex.items()
                          if k.startswith("state_")}
            rec.frac_bits["input"] = layer.in_frac
            for f in rec.states:
                rec.frac_bits[f] = {"b": getattr(layer.params, "b_frac", layer.frac_bits),
                                    "z": 0}.get(f, layer.frac_bits)
            rec.saturations = dict(saturations.get(node, {}))
        elif node in x:
            rec.saturations = {"input": int(input_sat.get(node, 0))}
        elif isinstance(layer, QuantizedOutput):
            rec.input = rec.output
            rec.frac_bits["input"] = rec.frac_bits["output"]
        elif len(preds[node]) == 1 and preds[node][0] in ints:
            src = ints[preds[node][0]]
            if (preds[node][0], node) in feedback:  # the previous step's, zero at t = 0
                src = np.concatenate([np.zeros_like(src[:1]), src[:-1]])
            rec.input = src
            rec.frac_bits["input"] = net.streams[preds[node][0]].frac
        records[node] = rec
    return records


def assemble(net: LavaNetwork, x: Mapping[str, np.ndarray], parts: Parts,
             rec_nodes: set[str], runs: int, steps: int, seconds: dict[str, float],
             input_sat: Mapping[str, int] | None = None) -> LavaResult:
    """The :class:`LavaResult` of a run of ``net`` on inputs ``x`` ``[T, B, ...]`` (in
    fixed_pt: the quantized integers, whose saturation events are ``input_sat``), from
    the probes' arrays of each chunk of samples (``parts``)."""
    fixed = net.mode == "fixed_pt"
    t, b = next(iter(x.values())).shape[:2]
    counts, values, extra = _gather(net, parts, t, b, integers=fixed)
    for name, xi in x.items():
        counts[name] = np.count_nonzero(xi, axis=0).reshape(b, *net.streams[name].shape)
        values[name] = xi.astype(np.int64, copy=False) if fixed else xi
    if not fixed:
        records = _float_records(net, values, extra, rec_nodes) if rec_nodes else None
        outs = {n: values[n] for n in net.outputs}
        return LavaResult(_one_or_all(net, outs), counts, records, runs, steps, seconds)

    input_sat = input_sat or {}
    saturations = _saturations(net, parts)
    outs = {n: values[n].astype(np.float64) * 2.0 ** -net.streams[n].frac for n in net.outputs}
    fixed_records = records = None
    if rec_nodes:
        fixed_records = _fixed_records(net, x, values, extra, saturations, input_sat,
                                       rec_nodes)
        records = real_records(fixed_records)
    quantization = quantization_rows(net.quant, saturations, input_sat)
    for row in quantization:
        node = row["node"]
        row["lava_process"] = process_label(net, node) if node in net.procs else None
    result = LavaResult(_one_or_all(net, outs), counts, records, runs, steps, seconds)
    result.fixed_records = fixed_records
    result.saturations = saturations
    result.quantization = quantization
    return result


__all__ = ["LavaResult", "assemble"]
