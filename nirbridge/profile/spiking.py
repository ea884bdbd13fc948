"""Which NIR node types do what, for counting and mapping, and what each node emits.

:func:`is_spiking` is the one place the profiler asks which nodes emit binary spikes
(the AC/MAC tag of a synapse here, spike counts in :mod:`~nirbridge.profile.counting`, the
spike comparison of :mod:`nirbridge.verify`); for a neuron it reads the neuron's registry
entry (``NeuronSpec.spiking``). Whether a node is a neuron at all is
:func:`nirbridge.neurons.is_neuron`'s answer. The
other tuples name the node families that are not neurons: synapses (weights), the subset
NeuroBench counts, and pass-through nodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from typing import Any

import nir

from nirbridge.geometry import pool_geometry_of
from nirbridge.graph import execution_order, predecessors
from nirbridge.neurons import NEURONS, spec_of

#: Synapse node types (NIR stateless nodes that multiply inputs by weights).
SYNAPSE_TYPES: tuple[type, ...] = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d,
                                   nir.SumPool2d, nir.AvgPool2d, nir.Scale)
#: The synapse types NeuroBench hooks (nn.Linear, nn.Conv1d/2d); pooling and Scale are
#: counted by nirbridge but not by NeuroBench.
NEUROBENCH_TYPES: tuple[type, ...] = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
#: Stateless nodes whose output is binary spikes.
SPIKING_STATELESS: tuple[type, ...] = (nir.Threshold,)
#: Standard nodes whose output is binary spikes: NIR's spiking neurons (from the registry)
#: and the stateless spiking nodes.
SPIKING_STANDARD: tuple[type, ...] = tuple(
    s.node for s in NEURONS.values() if s.spiking and not s.custom) + SPIKING_STATELESS
#: Nodes that move their input unchanged (the payload passes through them).
PASS_THROUGH: tuple[type, ...] = (nir.Flatten, nir.Delay)
#: Payload tags from the least to the most general (the join of several is the largest).
_RANK = {"spike": 0, "count": 1, "graded": 2}


def is_spiking(node: nir.NIRNode) -> bool:
    """Whether a node's output is binary spikes (from its type, never from values).

    A neuron: its registry entry says (``NeuronSpec.spiking``: NIR LIF, IF, CubaLIF and the
    nirbridge custom neurons spike; LI, I, CubaLI are graded). Otherwise: Threshold spikes;
    Input and synapses are graded.
    """
    spec = spec_of(node)
    if spec is not None:
        return spec.spiking
    return isinstance(node, SPIKING_STATELESS)


def payload_tags(graph: nir.NIRGraph,
                 spike_inputs: bool | Iterable[str] = False) -> dict[str, str]:
    """``"spike"``, ``"count"`` or ``"graded"`` for the output of every node, from the
    graph only.

    ``"count"``: event counts ≥ 0 per neuron and step (a neuron whose registry entry says
    so, e.g. Sinabs' multi-spike IAF); a value ``n`` is ``n`` events. ``spike_inputs``:
    Input nodes declared to carry binary events (e.g. DVS data); ``True`` declares all.
    Pass-through nodes (Flatten, Delay) carry events only when every predecessor does
    (counts when any of them does); on a cycle, a feedback edge's source counts as a
    predecessor like any other.
    """
    preds = predecessors(graph)
    if spike_inputs is True:
        declared = {n for n, v in graph.nodes.items() if isinstance(v, nir.Input)}
    else:
        declared = set(spike_inputs or ())
    tags: dict[str, str] = {}
    joined: list[str] = []  # pass-through nodes with inputs: the join of their sources
    for name in execution_order(graph):
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            tags[name] = "spike" if name in declared else "graded"
        elif is_spiking(node):
            spec = spec_of(node)
            tags[name] = "spike" if spec is None or spec.binary(node) else "count"
        elif isinstance(node, PASS_THROUGH) and preds[name]:
            joined.append(name)
        else:
            tags[name] = "graded"
    # On a cycle a pass-through node can feed itself (through a Delay): start every
    # joined tag at the least one, "spike", and raise them until nothing changes (the
    # join only rises, so this ends); on an acyclic graph the first pass, in execution
    # order, already gives each node the join of its sources.
    changed = True
    while changed:
        changed = False
        for name in joined:
            t = max((tags.get(p, "spike") for p in preds[name]), key=_RANK.__getitem__)
            if tags.get(name) != t:
                tags[name], changed = t, True
    return {n: tags[n] for n in graph.nodes}


#: Pooling nodes whose weights are all equal (a window sum, or a sum over its area): the
#: value of an output element is its window's events (× 1/area for AvgPool2d).
POOLING: tuple[type, ...] = (nir.SumPool2d, nir.AvgPool2d)


def event_scales(graph: nir.NIRGraph, tags: MappingABC[str, str] | None = None
                 ) -> dict[str, float | None]:
    """Per node, how many events one unit of its output value stands for, on a chip that
    routes events through pooling (such as Speck), from the graph only; ``None`` where
    the output is not a count of events (real values, weighted sums).

    Spikes and counts (:func:`payload_tags`): 1. A SumPool2d whose inputs carry events at
    one common scale ``s``: ``s`` (its output 3 is 3 events); an AvgPool2d: ``s × area``
    (its output is the window's events ÷ area). Pass-through nodes (Flatten, Delay): the
    scale of their sources when all agree. A node fed by sources of different scales, or
    by any ``None`` source, is ``None``. On a cycle, a source not yet known counts as
    agreeing; the passes repeat until nothing changes.
    """
    tags = payload_tags(graph) if tags is None else tags
    preds = predecessors(graph)
    order = execution_order(graph)
    unset = object()
    scale: dict[str, Any] = {n: unset for n in graph.nodes}

    def joined(name: str) -> Any:
        got = {scale[p] for p in preds[name] if scale[p] is not unset}
        if not preds[name] or None in got or len(got) > 1:
            return None
        return got.pop() if got else unset

    for _ in range(len(order) + 1):
        changed = False
        for name in order:
            node = graph.nodes[name]
            if tags[name] in ("spike", "count"):
                v: Any = 1.0
            elif isinstance(node, POOLING):
                v = joined(name)
                if isinstance(v, float) and isinstance(node, nir.AvgPool2d):
                    v *= float(pool_geometry_of(node).area)
            elif isinstance(node, PASS_THROUGH):
                v = joined(name)
            else:
                v = None
            if v is not scale[name]:
                if v != scale[name]:
                    changed = True
                scale[name] = v
        if not changed:
            break
    return {n: (None if v is unset else v) for n, v in scale.items()}


def synapse_kind(graph: nir.NIRGraph, name: str,
                 tags: MappingABC[str, str] | None = None,
                 preds: MappingABC[str, list[str]] | None = None) -> str:
    """``"AC"`` if every predecessor of synapse node ``name`` emits events (spikes or
    counts), else ``"MAC"``. ``tags``, ``preds``: :func:`payload_tags` and
    :func:`~nirbridge.graph.predecessors` of the graph, when the caller has them (one call
    per synapse would otherwise rebuild them: quadratic in the graph's size)."""
    tags = payload_tags(graph) if tags is None else tags
    preds = (predecessors(graph) if preds is None else preds)[name]
    return "AC" if preds and all(tags[p] in ("spike", "count") for p in preds) else "MAC"


__all__ = ["NEUROBENCH_TYPES", "PASS_THROUGH", "POOLING", "SPIKING_STANDARD",
           "SPIKING_STATELESS", "SYNAPSE_TYPES",
           "event_scales", "is_spiking", "payload_tags", "synapse_kind"]
