"""Chip mapping estimates and their design rules (:func:`map_to_chip`).

A graph is grouped into layers (a neuron node and the synapse nodes feeding it); each
mapper sizes the layers against the limits of its chip family: Loihi-style cores
(neurons, synaptic memory and axons per core: Loihi, Loihi 2, TrueNorth), Speck /
DYNAP-CNN (one convolution per core, sinabs' memory rules) and Xylo (one core, dense
recurrent weights). Limits that no source publishes are flagged as assumptions.

Recurrent layers: a synapse on a cycle with the layer's neuron node (``w_rec`` in
``lif → w_rec → lif``, or a feedback path through other layers) belongs to the layer it
feeds, like any synapse: its weights are stored on that layer's cores, its presynaptic
neurons count toward the layer's fan-in (input axons), and the neurons it comes from
send axons to that layer's cores (output axons), the layer's own cores included for a
layer feeding itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np

from nirbridge.errors import ProfileError
from nirbridge.graph import (
    flatten_subgraphs,
    predecessors,
    strongly_connected_components,
    successors,
)
from nirbridge.neurons import is_neuron
from nirbridge.profile.counting import Counts, fanout_map
from nirbridge.profile.spiking import (
    NEUROBENCH_TYPES,
    PASS_THROUGH,
    SPIKING_STATELESS,
    SYNAPSE_TYPES,
)
from nirbridge.profile.split import CoreSplit, split_layer
from nirbridge.profile.targets import Profile, list_profiles, load_profile

#: Nodes the grouping into layers walks through: pass-through nodes, and the stateless
#: spiking stages (a Threshold after a SumPool2d of spikes, the OR of a max pooling
#: window), which re-emit events on the way from one neuron layer to the next, so that
#: their pooling joins the synapses of the layer they feed.
_WALK_THROUGH: tuple[type, ...] = (*PASS_THROUGH, *SPIKING_STATELESS)
_SPLIT_SPATIAL = (nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)


@dataclass
class LayerMapping:
    """Resources of one layer (a neuron node and the synapse nodes feeding it)."""

    name: str
    neuron_node: str | None
    synapse_nodes: list[str]
    neurons: int
    synapses: int | None             #: stored (non-zero-weight) synapses
    fan_in: int | None               #: presynaptic elements feeding the layer
    cores: int | None
    usage: dict[str, dict[str, Any]]  #: limit → {need, limit, ratio}
    binding: str | None
    fits: bool
    notes: list[str] = field(default_factory=list)
    #: how the layer is split over cores (:class:`~nirbridge.profile.split.CoreSplit`)
    split: dict[str, Any] | None = None


@dataclass
class Mapping:
    """A mapping estimate of a graph on one chip."""

    profile: str
    label: str
    layers: list[LayerMapping]
    cores_used: int | None
    cores_available: int | float | None
    chips_needed: int | None
    fits: bool
    binding: str | None
    assumptions: list[str]
    unchecked: list[str]
    notes: list[str]
    #: chip-level limits: key → {need, limit, ratio} (cores, neurons, synapses per chip)
    chip_usage: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shape_of(node: nir.NIRNode, port: str) -> tuple[int, ...] | None:
    types = node.input_type if port == "input" else node.output_type
    v = (types or {}).get(port)
    if v is None or np.size(v) == 0:
        return None
    return tuple(int(s) for s in np.asarray(v).ravel())


class _Layers:
    """Groups a graph into layers: each neuron node with the synapse nodes feeding it."""

    def __init__(self, graph: nir.NIRGraph, counts: Counts | None) -> None:
        self.graph = graph
        self.counts = counts
        self.preds = predecessors(graph)
        self.succ = successors(graph)
        self.component = {n: i for i, comp in enumerate(strongly_connected_components(graph))
                          for n in comp}

    def recurrent(self, neuron: str | None, syn: list[str]) -> list[str]:
        """The synapse nodes of ``syn`` on a cycle through the layer's ``neuron``."""
        if neuron is None:
            return []
        return [s for s in syn if self.component[s] == self.component[neuron]]

    def in_shape(self, name: str) -> tuple[int, ...] | None:
        if self.counts is not None and name in self.counts.synapses:
            return self.counts.synapses[name].in_shape
        node = self.graph.nodes[name]
        shp = _shape_of(node, "input")
        if shp is None:
            for p in self.preds[name]:
                shp = _shape_of(self.graph.nodes[p], "output")
                if shp is not None:
                    break
        return shp

    def neuron_count(self, name: str) -> int | None:
        if self.counts is not None and name in self.counts.neurons:
            return self.counts.neurons[name].neurons
        shp = _shape_of(self.graph.nodes[name], "output") or \
            _shape_of(self.graph.nodes[name], "input")
        return None if shp is None else int(np.prod(shp, dtype=np.int64))

    def feeding_synapses(self, name: str) -> list[str]:
        """Synapse nodes upstream of ``name`` up to the previous neuron/Input node."""
        out: list[str] = []
        stack = list(self.preds[name])
        seen: set[str] = set()
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            node = self.graph.nodes[p]
            if isinstance(node, SYNAPSE_TYPES):
                out.append(p)
                stack.extend(self.preds[p])
            elif isinstance(node, _WALK_THROUGH):
                stack.extend(self.preds[p])
        return sorted(out, key=list(self.graph.nodes).index)

    def layers(self) -> list[tuple[str, str | None, list[str]]]:
        """``(layer name, neuron node or None, synapse nodes)`` in graph order."""
        result: list[tuple[str, str | None, list[str]]] = []
        used: set[str] = set()
        for name, node in self.graph.nodes.items():
            if is_neuron(node):
                syn = self.feeding_synapses(name)
                used.update(syn)
                result.append((name, name, syn))
        for name, node in self.graph.nodes.items():
            if isinstance(node, nir.Output):
                syn = [s for s in self.feeding_synapses(name) if s not in used]
                if syn:
                    used.update(syn)
                    result.append((f"{name} (readout)", None, syn))
        return result

    def synapse_stats(self, syn: list[str]) -> tuple[int | None, int | None, bool]:
        """(stored synapses, fan-in elements, has_conv) of a list of synapse nodes."""
        total = 0
        fan_in = 0
        conv = False
        for s in syn:
            node = self.graph.nodes[s]
            conv = conv or isinstance(node, (nir.Conv1d, nir.Conv2d))
            if self.counts is not None and s in self.counts.synapses:
                sc = self.counts.synapses[s]
                total += sc.synapses
                shp = sc.in_shape
            else:
                shp = self.in_shape(s)
                if shp is None:
                    return None, None, conv
                total += int(round(float(fanout_map(node, shp).sum().item())))
            # fan-in counts the presynaptic elements of the first synapse in a chain only
            if not any(p in syn for p in self.preds[s]):
                fan_in += int(np.prod(shp, dtype=np.int64))
        return total, fan_in, conv


def _ratio(need: float, lim: float) -> float:
    return math.inf if lim == 0 else need / lim


def _finish(prof: Profile, layers: list[LayerMapping], cores: int | None,
            chip_usage: dict[str, dict[str, Any]], notes: list[str]) -> Mapping:
    assumptions = [f"{k} = {v.value} ({v.source})" for k, v in prof.limits.items()
                   if v.assumption and v.value is not None]
    unchecked = [k for k, v in prof.limits.items() if v.value is None]
    cores_avail = prof.limit("cores_per_chip")
    chips = None
    if cores is not None and isinstance(cores_avail, (int, float)) and cores_avail > 0:
        chips = max(1, math.ceil(cores / cores_avail))
    fits = all(lm.fits for lm in layers) and all(u["ratio"] <= 1 for u in chip_usage.values())
    binding = None
    worst = -1.0
    for lm in layers:
        for k, u in lm.usage.items():
            if u["ratio"] > worst:
                worst, binding = u["ratio"], f"{lm.name}: {k}"
    for k, u in chip_usage.items():
        if u["ratio"] > worst:
            worst, binding = u["ratio"], f"chip: {k}"
    label = (f"mapping estimate (profile {prof.name}"
             + (f"; {len(assumptions)} assumed limit(s)" if assumptions else "") + ")")
    return Mapping(profile=prof.name, label=label, layers=layers, cores_used=cores,
                   cores_available=cores_avail if not isinstance(cores_avail, tuple)
                   else len(cores_avail), chips_needed=chips, fits=fits, binding=binding,
                   assumptions=assumptions, unchecked=unchecked, notes=notes,
                   chip_usage=chip_usage)


def _use(need: float, lim: Any) -> dict[str, Any]:
    return {"need": need, "limit": lim, "ratio": _ratio(need, lim)}


def _map_cores(graph: nir.NIRGraph, prof: Profile, counts: Counts | None) -> Mapping:
    """Loihi-style cores: neurons, synaptic memory and axons per core; a layer too big for
    one core is split by output neurons (:func:`~nirbridge.profile.split.split_layer`)."""
    lay = _Layers(graph, counts)
    limits = {k: prof.limit(k) for k in ("neurons_per_core", "synapse_memory_bytes_per_core",
                                         "input_axons_per_core", "weight_bits")}
    wbits = limits["weight_bits"]
    out_ax = prof.limit("output_axons_per_core")
    notes: list[str] = []
    layers: list[LayerMapping] = []
    shapes: dict[str, tuple[tuple[int, ...] | None, list[str]]] = {}
    for lname, neuron, syn in lay.layers():
        n = lay.neuron_count(neuron) if neuron else None
        syn_total, fan_in, conv = lay.synapse_stats(syn)
        roots = [s for s in syn if not any(s in lay.preds[t] for t in syn)]
        out_shp = (_shape_of(graph.nodes[neuron], "output") if neuron else None)
        if out_shp is None and roots:
            out_shp = _shape_of(graph.nodes[roots[-1]], "output")
        if n is None:
            # readout without neuron node: the synapse outputs need compartments
            n = int(np.prod(out_shp, dtype=np.int64)) if out_shp is not None else 0
        lm_notes: list[str] = []
        if neuron is None:
            lm_notes.append("no neuron node: the synapse outputs are counted as "
                            "compartments (accumulators)")
        if len(syn) > 1 and any(p in syn for s in syn for p in lay.preds[s]):
            lm_notes.append(f"chain of synapse nodes {syn}: on chip these fold into one "
                            "connection; the estimate stores each")
        rec = lay.recurrent(neuron, syn)
        if rec:
            lm_notes.append(f"recurrent synapse{'s' if len(rec) > 1 else ''} {rec}: stored "
                            "on this layer's cores; the neurons feeding back count toward "
                            "its fan-in and send output axons to it")
        lm = LayerMapping(name=lname, neuron_node=neuron, synapse_nodes=syn, neurons=n,
                          synapses=syn_total, fan_in=fan_in, cores=1 if n else 0, usage={},
                          binding=None, fits=True, notes=lm_notes)
        shapes[lname] = (out_shp, roots)
        if n:
            _apply_split(lay, lm, roots, out_shp, limits, 1)
        layers.append(lm)
    # output axons: a core sends one axon per (neuron, destination core)
    if isinstance(out_ax, (int, float)):
        feeds = _feeds(lay, layers)
        for lm in layers:
            if lm.neuron_node is None or not lm.cores:
                continue
            dest = _dest_cores(lay, lm.neuron_node, feeds)
            if not dest:
                continue
            c = math.ceil(lm.neurons * dest / out_ax)
            if c > (lm.cores or 0):
                lm.notes.append(f"output axons: {lm.neurons} neurons × {dest} destination "
                                f"cores need {c} cores")
                out_shp, roots = shapes[lm.name]
                _apply_split(lay, lm, roots, out_shp, limits, c)
                lm.binding = "output_axons_per_core" if lm.fits else lm.binding
            lm.usage["output_axons_per_core"] = _use(
                math.ceil(lm.neurons / max(lm.cores or 1, 1)) * dest, out_ax) | {"cores": c}
    cores = sum(lm.cores or 0 for lm in layers)
    chip_usage: dict[str, dict[str, Any]] = {}
    cpc = prof.limit("cores_per_chip")
    if isinstance(cpc, (int, float)):
        chip_usage["cores_per_chip"] = _use(cores, cpc)
    npch = prof.limit("neurons_per_chip")
    if isinstance(npch, (int, float)):
        chip_usage["neurons_per_chip"] = _use(sum(lm.neurons for lm in layers), npch)
    spch = prof.limit("synapses_per_chip")
    if isinstance(spch, (int, float)):
        chip_usage["synapses_per_chip"] = _use(sum(lm.synapses or 0 for lm in layers), spch)
    if any(lm.synapses is None for lm in layers):
        notes.append("some layer shapes are unknown: pass counts= from a run to size them")
    notes.append(f"weights stored at {wbits} bits without format overhead (a lower bound "
                 "on synaptic memory); weights must be quantised to that width")
    return _finish(prof, layers, cores, chip_usage, notes)


def _apply_split(lay: _Layers, lm: LayerMapping, roots: list[str],
                 out_shp: tuple[int, ...] | None, limits: dict[str, Any],
                 min_cores: int) -> None:
    """Split ``lm`` over cores (at least ``min_cores``) and record the split, the per-core
    usage of each limit, the binding limit and whether it fits."""
    sp = split_layer(lay.graph, lm.synapse_nodes, roots, lay.preds, lay.in_shape, out_shp,
                     lm.neurons, lm.synapses, limits, lm.fan_in, min_cores=min_cores)
    lm.split = sp.to_dict()
    lm.cores = sp.cores
    lm.fits = sp.fits
    lm.binding = sp.binding
    usage = {k: u for k, u in lm.usage.items() if k == "output_axons_per_core"}
    for key, need in (("neurons_per_core", sp.neurons_per_core),
                      ("synapse_memory_bytes_per_core", sp.synapse_memory_bytes_per_core),
                      ("input_axons_per_core", sp.input_axons_per_core)):
        lim = limits.get(key)
        if need is not None and isinstance(lim, (int, float)):
            usage[key] = _use(need, lim) | {"cores": sp.cores}
    lm.usage = usage
    lm.notes = [n for n in lm.notes if not n.startswith("split by ")]
    cap = limits.get("input_axons_per_core")
    one = sp.min_input_axons
    if one is not None and isinstance(cap, (int, float)) and one > cap:
        what = ("receptive field" if sp.by == "output tiles" or any(
            isinstance(lay.graph.nodes[s], _SPLIT_SPATIAL) for s in roots) else "fan-in")
        lm.notes.append(f"{what} of one output neuron is {one} inputs > {cap} input axons "
                        "per core: no split by output neurons fits")
    elif sp.cores > 1 and sp.fits:
        lm.notes.append(_split_note(sp))


def _split_note(sp: CoreSplit) -> str:
    tile = "" if sp.tile is None else f" of output tile {'×'.join(map(str, sp.tile))}"
    mem = ("" if sp.synapse_memory_bytes_per_core is None
           else f", {sp.synapse_memory_bytes_per_core:.0f} B synaptic memory")
    axons = "" if sp.input_axons_per_core is None else f", {sp.input_axons_per_core} input axons"
    return (f"split by {sp.by} into {sp.cores} cores{tile}: ≤ {sp.neurons_per_core} "
            f"neurons{axons}{mem} per core")


def _feeds(lay: _Layers, layers: list[LayerMapping]
           ) -> dict[str, list[tuple[LayerMapping, str]]]:
    """Per node, the layers whose synapses it reaches (through walk-through nodes), in layer
    order, each with the first of its synapses reached: built once, so that the output
    axons of every layer cost one look-up, not a walk over every layer (quadratic)."""
    feeds: dict[str, list[tuple[LayerMapping, str]]] = {}
    for lm in layers:
        for s in lm.synapse_nodes:
            stack, seen = list(lay.preds[s]), set()
            while stack:
                p = stack.pop()
                if p in seen:
                    continue
                seen.add(p)
                if isinstance(lay.graph.nodes[p], _WALK_THROUGH):
                    stack.extend(lay.preds[p])
            for p in seen:
                entries = feeds.setdefault(p, [])
                if not entries or entries[-1][0] is not lm:
                    entries.append((lm, s))
    return feeds


def _dest_cores(lay: _Layers, neuron: str,
                feeds: dict[str, list[tuple[LayerMapping, str]]]) -> int:
    """Destination cores one neuron of ``neuron``'s layer sends spikes to (``feeds``: see
    :func:`_feeds`).

    A dense synapse reaches every core of its layer. A convolution or pooling layer is
    tiled spatially, so one input reaches only the cores holding its largest fan-out
    (plus one for a tile boundary), at most all the layer's cores. A recurrent layer
    sends to its own cores too (a feed-forward layer never reaches its own synapses).
    """
    total = 0
    for lm, s in feeds.get(neuron, ()):
        if not lm.cores:
            continue
        node = lay.graph.nodes[s]
        shp = lay.in_shape(s)
        if isinstance(node, (nir.Affine, nir.Linear, nir.Scale)) or shp is None:
            total += lm.cores
        else:
            fan = float(fanout_map(node, shp, ones=True).max().item())
            per_core = max(1, math.ceil(lm.neurons / lm.cores))
            total += min(lm.cores, math.ceil(fan / per_core) + 1)
    return total


def _speck_memory(node: nir.NIRNode, in_shape: tuple[int, ...], out_features: int,
                  out_hw: tuple[int, int]) -> tuple[int, int, int]:
    """(kernel memory, neuron memory, kernel side) as sinabs' ``memory_summary``."""
    if isinstance(node, nir.Conv2d):
        f, c, kh, kw = (int(s) for s in np.asarray(node.weight).shape)
    else:  # Affine/Linear: a convolution whose kernel covers the whole input
        f = out_features
        if len(in_shape) == 3:
            c, kh, kw = in_shape
        else:
            c, kh, kw = int(np.prod(in_shape)), 1, 1
    kmem = c * 2 ** (math.ceil(math.log2(kh * kw)) + math.ceil(math.log2(max(f, 1))))
    h, w = out_hw
    nmem = f * 2 ** (math.ceil(math.log2(max(h, 1))) + math.ceil(math.log2(max(w, 1))))
    return int(kmem), int(nmem), max(kh, kw)


def _match(needs: list[tuple[int, int]], caps: list[tuple[int, int]]) -> list[int] | None:
    """Assign each layer (kernel, neuron memory) to a distinct core that holds it."""
    owner: dict[int, int] = {}

    def try_assign(i: int, seen: set[int]) -> bool:
        for j, (km, nm) in enumerate(caps):
            if j in seen or needs[i][0] > km or needs[i][1] > nm:
                continue
            seen.add(j)
            if j not in owner or try_assign(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(needs)):
        if not try_assign(i, set()):
            return None
    assign = [0] * len(needs)
    for j, i in owner.items():
        assign[i] = j
    return assign


def _map_speck(graph: nir.NIRGraph, prof: Profile, counts: Counts | None) -> Mapping:
    """DYNAP-CNN / Speck: one layer (conv or linear + IAF) per core (sinabs' rules)."""
    lay = _Layers(graph, counts)
    kcap = prof.limit("kernel_memory_per_core")
    ncap = prof.limit("neuron_memory_per_core")
    max_k = prof.limit("max_kernel")
    max_f = prof.limit("max_features")
    notes: list[str] = []
    layers: list[LayerMapping] = []
    needs: list[tuple[int, int]] = []
    for lname, neuron, syn in lay.layers():
        n = (lay.neuron_count(neuron) if neuron else None) or 0
        syn_total, fan_in, _ = lay.synapse_stats(syn)
        lm_notes: list[str] = []
        usage: dict[str, dict[str, Any]] = {}
        fits = True
        weighted = [s for s in syn if isinstance(graph.nodes[s], NEUROBENCH_TYPES)]
        if neuron is not None:
            ntype = type(graph.nodes[neuron]).__name__
            if ntype != "IF":
                lm_notes.append(f"{ntype} neurons: Speck runs integrate-and-fire neurons "
                                "(leak only through a bias); the deployed layer differs")
        if len(weighted) != 1:
            lm_notes.append(f"{len(weighted)} weighted synapse nodes; a Speck core holds "
                            "exactly one convolution")
            fits = fits and len(weighted) == 1
        rec = lay.recurrent(neuron, syn)
        if rec:
            lm_notes.append(f"recurrent synapse{'s' if len(rec) > 1 else ''} {rec}: a Speck "
                            "core applies its one convolution to everything it receives, so "
                            "a layer cannot hold separate recurrent weights")
            fits = False
        kmem = nmem = 0
        if weighted:
            s = weighted[-1]
            node = graph.nodes[s]
            shp = lay.in_shape(s)
            out_shp = (_shape_of(graph.nodes[neuron], "output") if neuron else None) or \
                _shape_of(node, "output")
            if counts is not None and neuron in counts.neurons and out_shp is None:
                out_shp = (counts.neurons[neuron].neurons,)
            if shp is None or out_shp is None:
                lm_notes.append("shape unknown: memory not checked")
            else:
                f = out_shp[0]
                hw = (out_shp[1], out_shp[2]) if len(out_shp) == 3 else (1, 1)
                kmem, nmem, kside = _speck_memory(node, shp, f, hw)
                if isinstance(max_k, (int, float)):
                    usage["max_kernel"] = _use(kside, max_k)
                    fits = fits and kside <= max_k
                if isinstance(max_f, (int, float)):
                    usage["max_features"] = _use(f, max_f)
                    fits = fits and f <= max_f
                if isinstance(kcap, tuple):
                    usage["kernel_memory_per_core"] = _use(kmem, max(kcap))
                    fits = fits and kmem <= max(kcap)
                if isinstance(ncap, tuple):
                    usage["neuron_memory_per_core"] = _use(nmem, max(ncap))
                    fits = fits and nmem <= max(ncap)
        needs.append((kmem, nmem))
        binding = max(usage, key=lambda k: usage[k]["ratio"]) if usage else None
        layers.append(LayerMapping(name=lname, neuron_node=neuron, synapse_nodes=syn,
                                   neurons=n, synapses=syn_total, fan_in=fan_in, cores=1,
                                   usage=usage, binding=binding, fits=fits, notes=lm_notes))
    dests = prof.limit("output_axons_per_core")
    if isinstance(dests, (int, float)):
        feeds = _feeds(lay, layers)
        for lm in layers:
            if lm.neuron_node is not None:
                d = _dest_cores(lay, lm.neuron_node, feeds)
                if d:
                    lm.usage["output_axons_per_core"] = _use(d, dests)
                    lm.fits = lm.fits and d <= dests
    chip_usage: dict[str, dict[str, Any]] = {}
    cpc = prof.limit("cores_per_chip")
    if isinstance(cpc, (int, float)):
        chip_usage["cores_per_chip"] = _use(len(layers), cpc)
    if isinstance(kcap, tuple) and isinstance(ncap, tuple) and len(layers) <= len(kcap):
        assign = _match(needs, list(zip(kcap, ncap, strict=False)))
        if assign is None:
            chip_usage["core_assignment"] = {"need": len(layers), "limit": 0,
                                             "ratio": math.inf}
            notes.append("no assignment of layers to cores satisfies every core's kernel "
                         "and neuron memory")
        else:
            for lm, core in zip(layers, assign, strict=True):
                lm.notes.append(f"core {core}")
    notes.append("memory as sinabs' DynapcnnLayer.memory_summary (kernel: c·2^(⌈log2 k²⌉+"
                 "⌈log2 f⌉), neuron: f·2^(⌈log2 h⌉+⌈log2 w⌉)); pooling after a layer is "
                 "free (done on the way out of the core)")
    return _finish(prof, layers, len(layers), chip_usage, notes)


def _map_xylo(graph: nir.NIRGraph, prof: Profile, counts: Counts | None) -> Mapping:
    """Xylo: input channels → hidden neurons (recurrent weights) → ≤ 8 output neurons."""
    lay = _Layers(graph, counts)
    notes: list[str] = []
    layers: list[LayerMapping] = []
    out_nodes = {n for n, v in graph.nodes.items() if isinstance(v, nir.Output)}
    hidden = output = 0
    for lname, neuron, syn in lay.layers():
        n = (lay.neuron_count(neuron) if neuron else None) or 0
        syn_total, fan_in, conv = lay.synapse_stats(syn)
        is_out = neuron is not None and any(
            s in out_nodes or isinstance(graph.nodes[s], PASS_THROUGH)
            and any(t in out_nodes for t in lay.succ[s]) for s in lay.succ[neuron])
        lm_notes: list[str] = []
        fits = True
        if conv:
            fits = False
            lm_notes.append("convolution: Xylo has dense weights only (unroll it first)")
        if neuron is None:
            lm_notes.append("no neuron node: Xylo reads out through output neurons")
            is_out = True
        if is_out:
            output += n
            lm_notes.append("output neurons")
        else:
            hidden += n
        rec = lay.recurrent(neuron, syn)
        if rec:
            where = ("Xylo's recurrent weights join hidden neurons only (rockpool's "
                     "xylo_mapper): these would map as hidden neurons with a readout; not "
                     "checked") if is_out else "in Xylo's recurrent weight matrix"
            lm_notes.append(f"recurrent synapse{'s' if len(rec) > 1 else ''} {rec}: {where}")
        layers.append(LayerMapping(name=lname, neuron_node=neuron, synapse_nodes=syn,
                                   neurons=n, synapses=syn_total, fan_in=fan_in, cores=1,
                                   usage={}, binding=None, fits=fits, notes=lm_notes))
    chip_usage: dict[str, dict[str, Any]] = {}
    for key, need in (("neurons_per_chip", hidden), ("output_neurons_per_chip", output)):
        lim = prof.limit(key)
        if isinstance(lim, (int, float)):
            chip_usage[key] = _use(need, lim)
    lim = prof.limit("input_channels_per_chip")
    if isinstance(lim, (int, float)):
        ins = 0
        for v in graph.nodes.values():
            if isinstance(v, nir.Input):
                shp = _shape_of(v, "output") or _shape_of(v, "input") or ()
                ins += int(np.prod(shp, dtype=np.int64)) if shp else 0
        chip_usage["input_channels_per_chip"] = _use(ins, lim)
    cores = 1
    notes.append("Xylo is one core: hidden layers share the recurrent weight matrix")
    return _finish(prof, layers, cores, chip_usage, notes)


def map_to_chip(graph: nir.NIRGraph, profile: Profile | str | Path,
                counts: Counts | None = None) -> Mapping:
    """Estimate the resources ``graph`` needs on the chip ``profile`` describes.

    Per layer (a neuron node and the synapse nodes feeding it): neurons, stored synapses,
    fan-in, cores, the usage of each limit and which binds; for the chip: cores used
    against those available, chips needed, whether it fits. Limits that no source
    publishes are listed in ``assumptions``; unknown ones in ``unchecked``. ``counts``
    (from a run) supplies shapes the graph does not record. Recurrent layers map like
    the others (module docstring); nested subgraphs are flattened first (``sub.x``).
    """
    prof = load_profile(profile)
    graph = flatten_subgraphs(graph)
    if prof.mapper is None:
        mappable = [n for n in list_profiles() if load_profile(n).mapper]
        raise ProfileError(f"profile '{prof.name}' describes no chip to map onto; mapping "
                           f"is available for {', '.join(mappable)}")
    if prof.mapper == "speck":
        return _map_speck(graph, prof, counts)
    if prof.mapper == "xylo":
        return _map_xylo(graph, prof, counts)
    return _map_cores(graph, prof, counts)


__all__ = ["LayerMapping", "Mapping", "map_to_chip"]
