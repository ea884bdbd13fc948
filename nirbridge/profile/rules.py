"""Design-rule checks: will a graph fit and run on a chip (:func:`check_graph`).

Per target, the limits that make a network not fit or not run: neurons, input axons and
synaptic memory per core after splitting oversized layers (:mod:`~nirbridge.profile.split`),
cores, neurons and synapses per chip, kernel, feature and per-core memory limits (Speck,
sinabs' rules), hidden, output and input channel limits and the structural rules of
rockpool's Xylo mapper, and delays (Loihi 2). Each :class:`Violation` is one line naming
the layer, the limit, the value and what to change. Warnings (weights that round to zero
at the chip's weight width) are reported but do not refuse a network.

Sources of the rules that are not limits in the profiles:

- Speck: sinabs 3.1.3 ``backend/dynapcnn/dynapcnn_layer.py`` refuses a kernel that is not
  square ("must have the same height and width") and ``dynapcnn_layer_utils.py`` a
  pooling whose stride differs from its kernel.
- Xylo: rockpool ``devices/xylo/syns61300/xylo_mapper.py`` ``xylo_drc`` (which the Xylo
  Audio 2 mapper ``syns61201/xylo_mapper.py`` runs): neurons take their input through
  weights only, no two weight layers in a row, output neurons not recurrent, at least
  two neuron layers.
- Loihi 2 delays: lava-dl 0.6.0 ``netx/utils.py`` ``num_delay_bits`` refuses a delay of
  63 steps or more ("Max delay exceeded limit of 62"); lava-nc's own ``DelayDense`` sets
  no bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np

from nirbridge.errors import CheckFailed
from nirbridge.graph import delay_steps, flatten_subgraphs, predecessors
from nirbridge.neurons import is_neuron
from nirbridge.profile.counting import Counts
from nirbridge.profile.mapping import LayerMapping, Mapping, map_to_chip
from nirbridge.profile.spiking import NEUROBENCH_TYPES, PASS_THROUGH
from nirbridge.profile.targets import Profile, load_profile


@dataclass
class Violation:
    """One broken design rule (``severity`` "error" refuses the network)."""

    target: str
    layer: str
    limit: str
    value: Any
    cap: Any
    advice: str
    severity: str = "error"
    assumed: bool = False  #: the limit is an assumption (no source publishes it)

    def line(self) -> str:
        cap = "" if self.cap is None else f" > {_fmt(self.cap)}"
        assumed = " (assumed limit)" if self.assumed else ""
        return (f"{self.target}: layer '{self.layer}': {self.limit} {_fmt(self.value)}{cap}"
                f"{assumed}: {self.advice}")


@dataclass
class CheckReport:
    """The design-rule check of one graph on one target."""

    target: str
    violations: list[Violation]
    warnings: list[Violation]
    mapping: Mapping
    unchecked: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.violations

    def lines(self) -> list[str]:
        """One line per violation, then one per warning (prefixed ``warning:``)."""
        return ([v.line() for v in self.violations]
                + [f"warning: {w.line()}" for w in self.warnings])

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "fits": self.fits,
                "violations": [asdict(v) | {"line": v.line()} for v in self.violations],
                "warnings": [asdict(w) | {"line": w.line()} for w in self.warnings],
                "unchecked": list(self.unchecked), "mapping": self.mapping.to_dict()}


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.0f}" if x == int(x) else f"{x:.3g}"
    if isinstance(x, (list, tuple)):
        return "×".join(str(v) for v in x)
    return str(x)


def _conv_of(graph: nir.NIRGraph, lm: LayerMapping) -> nir.NIRNode | None:
    convs = [graph.nodes[s] for s in lm.synapse_nodes
             if isinstance(graph.nodes[s], (nir.Conv1d, nir.Conv2d))]
    return convs[-1] if convs else None


def _axon_advice(graph: nir.NIRGraph, lm: LayerMapping, cap: int) -> str:
    conv = _conv_of(graph, lm)
    if conv is not None:
        w = np.asarray(conv.weight)
        area = int(np.prod(w.shape[2:], dtype=np.int64))
        return (f"one output neuron reads {w.shape[1]}×{'×'.join(map(str, w.shape[2:]))} "
                f"inputs and no split by output neurons can give a core fewer; reduce the "
                f"input channels to ≤ {cap // area} (or the kernel), or use grouped "
                "convolutions")
    return (f"every core of this layer reads each presynaptic element that has a non-zero "
            f"weight to it; reduce the fan-in to ≤ {cap} (fewer inputs, or a sparser "
            "weight matrix), or insert a layer between")


_ADVICE = {
    "synapse_memory_bytes_per_core": "one output neuron's synapses exceed a core's synaptic "
                                     "memory; reduce the fan-in or the weight bits",
    "neurons_per_core": "reduce the layer's neurons",
    "max_kernel": "reduce the kernel to at most {cap}×{cap}",
    "max_features": "reduce the output channels to ≤ {cap}, or split the layer into "
                    "convolutions of ≤ {cap} channels each",
    "kernel_memory_per_core": "sinabs' kernel memory c·2^(⌈log2 k_h·k_w⌉+⌈log2 f⌉) exceeds "
                              "the largest core's; reduce input channels, kernel or output "
                              "channels (f is rounded up to a power of two)",
    "neuron_memory_per_core": "sinabs' neuron memory f·2^(⌈log2 h⌉+⌈log2 w⌉) exceeds the "
                              "largest core's; reduce output channels or the output size "
                              "(pool or stride before this layer)",
    "output_axons_per_core": "a Speck core sends its events to at most {cap} other cores; "
                             "feed at most {cap} layers from this one",
    "cores_per_chip": "the network needs {chips} chips; reduce the layers' sizes or map it "
                      "on a multi-chip system",
    "neurons_per_chip": "reduce the hidden neurons to ≤ {cap}",
    "output_neurons_per_chip": "reduce the output layer to ≤ {cap} neurons",
    "input_channels_per_chip": "reduce the input to ≤ {cap} channels",
    "synapses_per_chip": "reduce the synapses to ≤ {cap} or use several chips",
    "core_assignment": "no assignment of layers to distinct cores satisfies every core's "
                       "kernel and neuron memory; shrink the largest layers",
}


def _usage_violations(graph: nir.NIRGraph, prof: Profile, m: Mapping) -> list[Violation]:
    out: list[Violation] = []

    def assumed(key: str) -> bool:
        lim = prof.limits.get(key)
        return bool(lim and lim.assumption)

    for lm in m.layers:
        broke = False
        where = lm.name + (f" ({', '.join(lm.synapse_nodes)})" if lm.synapse_nodes else "")
        for key, u in lm.usage.items():
            if not u["ratio"] > 1:
                continue
            broke = True
            cap = u["limit"]
            if key == "input_axons_per_core":
                advice = _axon_advice(graph, lm, int(cap))
                name = "input axons per core"
            else:
                advice = _ADVICE.get(key, "reduce the layer").format(cap=_fmt(cap), chips="")
                name = key.replace("_", " ")
            out.append(Violation(prof.name, where, name, u["need"], cap, advice,
                                 assumed=assumed(key)))
        if not lm.fits and not broke:
            reason = next((n for n in lm.notes if not n.startswith(("core ", "output neurons",
                                                                     "split by "))),
                          "does not map")
            out.append(Violation(prof.name, where, "structure", reason, None,
                                 "change the layer as the reason says"))
    for key, u in m.chip_usage.items():
        if not u["ratio"] > 1:
            continue
        advice = _ADVICE.get(key, "reduce the network").format(
            cap=_fmt(u["limit"]), chips=m.chips_needed)
        out.append(Violation(prof.name, "network", key.replace("_", " "), u["need"],
                             u["limit"] if u["limit"] else None, advice,
                             assumed=assumed(key)))
    return out


def _speck_rules(graph: nir.NIRGraph, prof: Profile) -> list[Violation]:
    out = []
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Conv2d):
            k = np.asarray(node.weight).shape[2:]
            if k[0] != k[1]:
                out.append(Violation(prof.name, name, "kernel shape", list(k), None,
                                     "Speck (sinabs DynapcnnLayer) takes square kernels "
                                     "only; make it square"))
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            k = [int(v) for v in np.broadcast_to(np.asarray(node.kernel_size), (2,))]
            s = [int(v) for v in np.broadcast_to(np.asarray(node.stride), (2,))]
            if k[0] != k[1] or k != s:
                out.append(Violation(prof.name, name, "pooling", f"kernel {k}, stride {s}",
                                     None, "Speck (sinabs) pools with square windows whose "
                                     "stride equals the kernel; change the pooling"))
        if isinstance(node, nir.Conv1d):
            out.append(Violation(prof.name, name, "convolution", "1-D", None,
                                 "Speck runs 2-D convolutions; reshape to a Conv2d"))
    return out


def _xylo_rules(graph: nir.NIRGraph, prof: Profile, m: Mapping) -> list[Violation]:
    out = []
    preds = predecessors(graph)
    neurons = [n for n, v in graph.nodes.items() if is_neuron(v)]
    if len(neurons) < 2:
        out.append(Violation(prof.name, "network", "neuron layers", len(neurons), None,
                             "Xylo (rockpool xylo_drc) needs at least two neuron layers: "
                             "hidden and output"))
    weights = NEUROBENCH_TYPES + (nir.Scale,)
    for name, node in graph.nodes.items():
        if isinstance(node, weights):
            for p in preds[name]:
                if isinstance(graph.nodes[p], weights):
                    out.append(Violation(prof.name, name, "consecutive weights", p, None,
                                         "Xylo (rockpool xylo_drc) has no weight layer "
                                         "after another; fold them into one matrix"))
        if is_neuron(node) or isinstance(node, nir.Output):
            for p in preds[name]:
                src = graph.nodes[p]
                if not isinstance(src, weights) and not is_neuron(src) and not (
                        isinstance(src, PASS_THROUGH) and isinstance(node, nir.Output)) \
                        and is_neuron(node):
                    out.append(Violation(prof.name, name, "input", f"from '{p}' "
                                         f"({type(src).__name__})", None,
                                         "Xylo neurons take input through weights only "
                                         "(rockpool xylo_drc); put a weight before them"))
    for lm in m.layers:
        if any("recurrent" in n and "hidden neurons only" in n for n in lm.notes):
            out.append(Violation(prof.name, lm.name, "recurrent output neurons", "yes", None,
                                 "output neurons may not be recurrent (rockpool xylo_drc); "
                                 "add a hidden layer and read out through it"))
    return out


def _delay_rules(graph: nir.NIRGraph, prof: Profile, dt: float | None,
                 unchecked: list[str]) -> list[Violation]:
    cap = prof.limit("max_delay_steps")
    delays = [(n, v) for n, v in graph.nodes.items() if isinstance(v, nir.Delay)]
    if not isinstance(cap, (int, float)) or not delays:
        return []
    if dt is None:
        unchecked.append("max_delay_steps: the graph has no dt (give --dt)")
        return []
    out = []
    for name, node in delays:
        steps = int(np.max(delay_steps(node, dt, name)))
        if steps > cap:
            out.append(Violation(prof.name, name, "delay steps", steps, int(cap),
                                 f"at dt = {dt:g}; shorten the delay to ≤ {int(cap)} "
                                 "steps, raise dt, or relay it through neurons"))
    return out


def _weight_warnings(graph: nir.NIRGraph, prof: Profile) -> list[Violation]:
    """Non-zero weights that round to zero at the chip's weight width: with a shared scale
    per node (the largest magnitude on the top code 2^(b−1) − 1), a weight below half a
    step, max|w| / (2^b − 2), becomes 0."""
    bits = prof.limit("weight_bits")
    if not isinstance(bits, (int, float)) or bits < 2:
        return []
    out = []
    for name, node in graph.nodes.items():
        if not isinstance(node, NEUROBENCH_TYPES):
            continue
        w = np.abs(np.asarray(node.weight, dtype=np.float64))
        nz = w[w != 0]
        if not nz.size:
            continue
        half = nz.max() / (2 ** int(bits) - 2)
        lost = int((nz < half).sum())
        if lost:
            out.append(Violation(prof.name, name, f"weights lost at {int(bits)} bits",
                                 f"{lost} of {nz.size} non-zero", None,
                                 f"below max|w|/{2 ** int(bits) - 2} = {half:.3g} they round "
                                 "to 0; prune them or rescale the layer",
                                 severity="warning"))
    return out


def check_graph(graph: nir.NIRGraph, target: Profile | str | Path,
                counts: Counts | None = None, dt: float | None = None) -> CheckReport:
    """The design-rule check of ``graph`` on ``target`` (a profile with a chip mapper):
    the mapping with oversized layers split (:func:`map_to_chip`), every limit it breaks,
    the target's own rules, delays at ``dt`` (Loihi 2; unchecked without a dt) and
    weight-precision warnings. Raises :class:`~nirbridge.errors.ProfileError` for a
    target that describes no chip."""
    prof = load_profile(target)
    graph = flatten_subgraphs(graph)
    m = map_to_chip(graph, prof, counts)
    unchecked = [f"{k}: not published" for k in m.unchecked]
    violations = _usage_violations(graph, prof, m)
    if prof.mapper == "speck":
        violations += _speck_rules(graph, prof)
    if prof.mapper == "xylo":
        violations += _xylo_rules(graph, prof, m)
    violations += _delay_rules(graph, prof, dt, unchecked)
    return CheckReport(target=prof.name, violations=violations,
                       warnings=_weight_warnings(graph, prof), mapping=m,
                       unchecked=unchecked)


def refuse_unfit(reports: Iterable[CheckReport], echo: Any = None) -> None:
    """Raise :class:`CheckFailed` (exit code 3) when a report has violations, after
    giving ``echo`` (e.g. ``print``) one line per violation."""
    bad = [v for r in reports for v in r.violations]
    if not bad:
        return
    if echo is not None:
        for v in bad:
            echo(v.line())
    targets = sorted({v.target for v in bad})
    raise CheckFailed(f"does not fit {', '.join(targets)}: {len(bad)} design-rule "
                      f"violation(s); first: {bad[0].line()}")


def split_table(m: Mapping) -> list[list[str]]:
    """Rows (header first) of how each layer is split over cores."""
    rows = [["layer", "neurons", "cores", "split by", "neurons/core", "axons/core",
             "syn. memory/core", "fits"]]
    for lm in m.layers:
        sp = lm.split or {}
        mem = sp.get("synapse_memory_bytes_per_core")
        rows.append([lm.name, str(lm.neurons), str(lm.cores), sp.get("by", "-"),
                     str(sp.get("neurons_per_core", lm.neurons)),
                     _fmt(sp.get("input_axons_per_core", "-")),
                     "-" if mem is None else f"{math.ceil(mem)} B",
                     "yes" if lm.fits else "NO"])
    return rows


__all__ = ["CheckReport", "Violation", "check_graph", "refuse_unfit", "split_table"]
