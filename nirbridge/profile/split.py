"""Splitting one layer across Loihi-style cores (:func:`split_layer`).

A layer that holds more neurons than a core, more synaptic memory or more distinct
inputs (input axons) is split by its output neurons into several cores, as nengo-loihi
splits an ensemble's block (``nengo_loihi.builder.split_blocks``): every core keeps a
share of the output neurons, the synapses that end on them, and one input axon for each
presynaptic element that reaches at least one of them.

- A dense layer (``Affine``/``Linear`` on the input side) is cut into contiguous runs of
  output neurons; a core's input axons are counted exactly, as the input columns holding
  a non-zero weight in that core's rows (a sparse matrix needs fewer than its fan-in).
- A convolution (or pooling) layer is cut into output tiles of ``c`` channels ×
  spatial blocks: a tile's inputs are the input channels it reads times its receptive
  field (``(t − 1)·stride + (k − 1)·dilation + 1`` per axis, at most the input size),
  composed through chains such as ``SumPool2d → Conv2d``. The tiling with the fewest
  cores that meets every per-core limit is chosen.

The receptive field of a single output neuron is the least any split can give a core:
when it exceeds the input axons per core the layer cannot be mapped by splitting (the
report says so and what to change). Synaptic memory per core is the layer's stored
synapses per neuron (averaged over its neurons) times the neurons on the core.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import nir
import numpy as np

#: The kinds of synapse node whose receptive field :func:`split_layer` composes.
_SPATIAL = (nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)
_DENSE = (nir.Affine, nir.Linear)


@dataclass
class CoreSplit:
    """How one layer is split across cores (all per-core figures are the largest core's)."""

    cores: int
    by: str  #: "output neurons" (dense runs) or "output tiles" (convolution)
    neurons_per_core: int
    input_axons_per_core: int | None
    synapse_memory_bytes_per_core: float | None
    tile: list[int] | None  #: output tile (channels, *spatial) of a convolution split
    min_input_axons: int | None  #: input axons of one output neuron alone
    fits: bool
    binding: str | None  #: the per-core limit that sets the core count (or breaks it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _candidates(size: int) -> list[int]:
    """Every distinct chunk length ``ceil(size / k)``, largest first."""
    return sorted({math.ceil(size / k) for k in range(1, size + 1)}, reverse=True)


def _node_geometry(node: nir.NIRNode) -> tuple[list[int], list[int], list[int]]:
    """(kernel, stride, dilation) per spatial axis of a convolution or pooling node."""
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = np.asarray(node.weight)
        nd = w.ndim - 2
        kernel = [int(s) for s in w.shape[2:]]
        stride = [int(s) for s in np.broadcast_to(np.asarray(node.stride), (nd,))]
        dil = [int(s) for s in np.broadcast_to(np.asarray(node.dilation), (nd,))]
        return kernel, stride, dil
    kernel = [int(s) for s in np.broadcast_to(np.asarray(node.kernel_size), (2,))]
    stride = [int(s) for s in np.broadcast_to(np.asarray(node.stride), (2,))]
    return kernel, stride, [1, 1]


class _Receptive:
    """Distinct input elements a tile of a layer's output reads, per synapse root."""

    def __init__(self, graph: nir.NIRGraph, syn: list[str], preds: dict[str, list[str]],
                 in_shape: Any) -> None:
        self.graph, self.syn, self.preds, self.in_shape = graph, syn, preds, in_shape

    def spatial(self, name: str, tile: list[int]) -> int | None:
        """Inputs of ``tile`` (channels, *spatial) of ``name``'s output, through the
        synapse nodes before it in the layer; None when a node is not composable."""
        node = self.graph.nodes[name]
        shp = self.in_shape(name)
        if shp is None or len(shp) != len(tile):
            return None
        if isinstance(node, (nir.Conv1d, nir.Conv2d)):
            w = np.asarray(node.weight)
            groups = int(np.asarray(node.groups).ravel()[0]) if node.groups is not None else 1
            per_group = w.shape[0] // max(groups, 1)
            touched = min(groups, math.ceil(tile[0] / per_group) + (tile[0] % per_group != 0))
            chans = min(int(shp[0]), touched * int(w.shape[1]))
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            chans = tile[0]
        else:
            return None
        kernel, stride, dil = _node_geometry(node)
        spans = [min(int(s), (t - 1) * st + (k - 1) * d + 1)
                 for t, s, k, st, d in zip(tile[1:], shp[1:], kernel, stride, dil, strict=True)]
        back = [chans, *spans]
        inner = [p for p in self.preds[name] if p in self.syn]
        if not inner:
            return int(np.prod(back, dtype=np.int64))
        total = 0
        for p in inner:
            sub = self.spatial(p, back)
            if sub is None:
                return None
            total += sub
        return total


def _dense_axons(weights: list[np.ndarray], run: int) -> int:
    """Largest count, over runs of ``run`` consecutive output neurons, of the input
    columns with a non-zero weight in the run's rows (summed over the weight matrices)."""
    worst = None
    for w in weights:
        mask = (w != 0).astype(np.int64)
        starts = np.arange(0, mask.shape[0], run)
        used = (np.add.reduceat(mask, starts, axis=0) > 0).sum(axis=1)
        worst = used if worst is None else worst + used
    return int(worst.max()) if worst is not None and worst.size else 0


def _fits(need: dict[str, float | None], lim: dict[str, float | None]) -> str | None:
    """The first per-core limit ``need`` exceeds (None: all met)."""
    for k, v in need.items():
        cap = lim.get(k)
        if v is not None and isinstance(cap, (int, float)) and v > cap:
            return k
    return None


def split_layer(graph: nir.NIRGraph, syn: list[str], roots: list[str],
                preds: dict[str, list[str]], in_shape: Any, out_shape: tuple[int, ...] | None,
                neurons: int, synapses: int | None, limits: dict[str, Any],
                fan_in: int | None, min_cores: int = 1) -> CoreSplit:
    """Split one layer (``neurons`` outputs of shape ``out_shape`` fed by the synapse nodes
    ``syn``, of which ``roots`` feed the neurons directly) over cores under ``limits``
    (``neurons_per_core``, ``synapse_memory_bytes_per_core``, ``input_axons_per_core``,
    ``weight_bits``); at least ``min_cores`` cores (another limit, e.g. output axons,
    asked for more). ``in_shape(name)`` gives a synapse node's input shape."""
    npc = limits.get("neurons_per_core")
    wbits = limits.get("weight_bits")
    per_syn = None
    if synapses is not None and isinstance(wbits, (int, float)) and neurons:
        per_syn = synapses * wbits / 8 / neurons  # bytes per output neuron, on average
    caps = {"neurons_per_core": npc,
            "synapse_memory_bytes_per_core": limits.get("synapse_memory_bytes_per_core"),
            "input_axons_per_core": limits.get("input_axons_per_core")}
    order = ("neurons_per_core", "synapse_memory_bytes_per_core", "input_axons_per_core")
    rec = _Receptive(graph, syn, preds, in_shape)
    spatial = (out_shape is not None and len(out_shape) >= 2 and roots
               and all(isinstance(graph.nodes[r], _SPATIAL) for r in roots))
    dense = (roots and all(isinstance(graph.nodes[s], _DENSE) for s in syn)
             and not any(p in syn for s in syn for p in preds[s]))
    best: CoreSplit | None = None

    def consider(cores: int, per_core: int, axons: int | None, tile: list[int] | None,
                 by: str) -> None:
        nonlocal best
        mem = None if per_syn is None else per_syn * per_core
        need = {"neurons_per_core": per_core, "synapse_memory_bytes_per_core": mem,
                "input_axons_per_core": axons}
        broken = _fits(need, caps)
        if broken is not None or cores < min_cores:
            return
        if best is None or (cores, axons or 0) < (best.cores, best.input_axons_per_core or 0):
            best = CoreSplit(cores=cores, by=by, neurons_per_core=per_core,
                             input_axons_per_core=axons, synapse_memory_bytes_per_core=mem,
                             tile=tile, min_input_axons=None, fits=True, binding=None)

    min_axons: int | None = None
    if spatial:
        assert out_shape is not None
        one = [1] * len(out_shape)
        parts = [rec.spatial(r, one) for r in roots]
        if all(p is not None for p in parts):
            min_axons = int(sum(p for p in parts if p is not None))
            for c in _candidates(int(out_shape[0])):
                for tiles in _spatial_tiles(out_shape[1:]):
                    tile = [c, *tiles]
                    per_core = int(np.prod(tile, dtype=np.int64))
                    if isinstance(npc, (int, float)) and per_core > npc:
                        continue
                    cores = math.ceil(out_shape[0] / c) * int(np.prod(
                        [math.ceil(s / t) for s, t in zip(out_shape[1:], tiles, strict=True)],
                        dtype=np.int64))
                    if best is not None and cores > best.cores:
                        continue
                    axons = sum(rec.spatial(r, tile) or 0 for r in roots)
                    consider(cores, per_core, axons, tile, "output tiles")
        else:
            spatial = False
    if not spatial:
        weights = ([np.asarray(graph.nodes[s].weight).reshape(
            np.asarray(graph.nodes[s].weight).shape[0], -1) for s in syn] if dense else None)
        if weights is not None:
            min_axons = _dense_axons(weights, 1)
        elif fan_in is not None:
            min_axons = fan_in  # not composable: every core is assumed to read every input
        longest = _longest_run(neurons, per_syn, caps, min_cores)
        runs = [r for r in _candidates(max(neurons, 1)) if r <= longest]
        if weights is None or not neurons:
            run = runs[0] if runs and neurons else 0
            consider(math.ceil(neurons / run) if run else 1, run, min_axons, None,
                     "output neurons")
        else:
            # the longest run (fewest cores) whose input axons fit; not bisected: a run
            # that straddles two blocks of a sparse matrix reads both
            cap = caps["input_axons_per_core"]
            if not (isinstance(cap, (int, float)) and min_axons is not None
                    and min_axons > cap):
                for run in runs:
                    axons = _dense_axons(weights, run)
                    if not isinstance(cap, (int, float)) or axons <= cap:
                        consider(math.ceil(neurons / run), run, axons, None, "output neurons")
                        break
    if best is not None:
        best.min_input_axons = min_axons
        best.binding = _binding(best, caps, min_cores, order)
        return best
    # no split meets every limit: report the one a single output neuron per core breaks,
    # at the most neurons per core the other limits allow (the fewest cores they need)
    need = {"neurons_per_core": 1, "synapse_memory_bytes_per_core": per_syn,
            "input_axons_per_core": min_axons}
    broken = _fits(need, caps) or "input_axons_per_core"
    run = _longest_run(neurons, per_syn, caps, min_cores)
    return CoreSplit(cores=max(math.ceil(neurons / run), 1), by="output neurons",
                     neurons_per_core=run, input_axons_per_core=min_axons,
                     synapse_memory_bytes_per_core=None if per_syn is None else per_syn * run,
                     tile=None, min_input_axons=min_axons, fits=False, binding=broken)


def _longest_run(neurons: int, per_syn: float | None, caps: dict[str, Any],
                 min_cores: int) -> int:
    """The most output neurons one core may hold under the neuron and memory limits."""
    run = math.ceil(neurons / max(min_cores, 1)) if neurons else 1
    npc = caps.get("neurons_per_core")
    if isinstance(npc, (int, float)) and npc > 0:
        run = min(run, int(npc))
    smem = caps.get("synapse_memory_bytes_per_core")
    if per_syn and isinstance(smem, (int, float)) and smem > 0:
        run = min(run, int(smem // per_syn))
    return max(run, 1)


def _spatial_tiles(spatial: tuple[int, ...]) -> list[list[int]]:
    """Every combination of distinct chunk lengths per spatial axis."""
    combos: list[list[int]] = [[]]
    for s in spatial:
        combos = [c + [t] for c in combos for t in _candidates(int(s))]
    return combos


def _binding(sp: CoreSplit, caps: dict[str, Any], min_cores: int,
             order: tuple[str, ...]) -> str | None:
    """The per-core limit closest to its cap in the chosen split (the one that set the
    core count when the split is the smallest that fits), or None for one core."""
    if sp.cores <= 1:
        return None
    ratios = {}
    for k, v in (("neurons_per_core", sp.neurons_per_core),
                 ("synapse_memory_bytes_per_core", sp.synapse_memory_bytes_per_core),
                 ("input_axons_per_core", sp.input_axons_per_core)):
        cap = caps.get(k)
        if v is not None and isinstance(cap, (int, float)) and cap > 0:
            ratios[k] = v / cap
    if not ratios:
        return None
    return max(order, key=lambda k: ratios.get(k, -1.0))


__all__ = ["CoreSplit", "split_layer"]
