"""The lossy fallback: standard NIR nodes only, for tools that read stock NIR.

Every custom neuron gives its own approximation (its registry entry's ``lossy``); this
module applies them, records what was replaced so that the file can be restored exactly,
and undoes it.
"""

from __future__ import annotations

from collections.abc import Mapping

import nir

from nirbridge.errors import NirbridgeError, UnknownNodeError
from nirbridge.neurons import CustomNeuron, custom_nodes, spec_of
from nirbridge.passes import graph_dt

#: in the graph's metadata, the dict ``{node name: original type}`` of approximated nodes.
LOSSY_KEY = "nirbridge_lossy"
#: Metadata key of a lossy node holding the original node's fields (params, flags, metadata).
ORIGINAL_KEY = "nirbridge_original"


class LossyExportWarning(UserWarning):
    """A custom node was replaced by an approximate standard NIR node (``compat="lossy"``)."""


def _lossy_node(name: str, node: CustomNeuron, dt: float) -> tuple[nir.NIRNode, str]:
    typ = type(node).__name__
    spec = spec_of(node)
    if spec is None or spec.lossy is None:
        raise UnknownNodeError(
            f"node {name!r} ({typ}): no lossy approximation is defined for this custom node "
            "type; write it with compat='native' or give its NeuronSpec a 'lossy' function")
    meta = {**(node.metadata or {}), "compare": node.compare, LOSSY_KEY: typ,
            ORIGINAL_KEY: node.fields()}
    new, lost = spec.lossy(node, dt, meta)
    desc = f"nir.{type(new).__name__}"
    return new, f"node {name!r} ({typ}) written as {desc} at dt = {dt:g}: {lost}"


def _lossy_nodes(graph: nir.NIRGraph, dt: float, prefix: str,
                 replaced: dict[str, str], notes: list[str]) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {}
    for name, node in graph.nodes.items():
        qname = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            nodes[name] = _lossy_nodes(node, dt, f"{qname}.", replaced, notes)
        elif isinstance(node, CustomNeuron):
            nodes[name], note = _lossy_node(qname, node, dt)
            replaced[qname] = type(node).__name__
            notes.append(note)
        else:
            nodes[name] = node
    meta = dict(graph.metadata) if isinstance(graph.metadata, Mapping) else {}
    return nir.NIRGraph(nodes=nodes, edges=[tuple(e) for e in graph.edges], metadata=meta,
                        type_check=False)


def lossy_graph(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
    """A copy of ``graph`` with every custom node replaced by a standard NIR approximation.

    Returns the new graph and one line per replaced node saying what was lost. ``graph``
    is not modified (standard nodes are shared). The approximations keep each model's
    sub-threshold dynamics exact at the graph's ``dt`` (``metadata["dt"]``, default 1.0)
    under NIR's forward-Euler LIF step ``v ← v + (dt/τ)(v_leak − v + R·x)``: a model whose
    step is ``v ← β·v + g·x + c`` becomes ``nir.LIF(τ = dt/(1−β), R = g/(1−β),
    v_leak = c/(1−β))``; ``β = 1`` (with ``c = 0``) becomes ``nir.IF(r = g)``; ``β ≥ 1``
    elsewhere is clamped to ``1 − 1e-12``. The firing convention goes to the node's
    ``metadata["compare"]``.

    Each custom neuron gives its own approximation (its ``NeuronSpec.lossy``, documented
    in its file under ``nirbridge/neurons/``), which says what is lost.
    Each replaced node's metadata holds ``nirbridge_lossy`` (its original type) and
    ``nirbridge_original`` (its original fields), and the graph's metadata holds
    ``nirbridge_lossy`` = ``{node name: original type}``; :func:`restore_custom_nodes`
    (or ``read(..., restore_lossy=True)``) undoes the replacement exactly.
    """
    replaced: dict[str, str] = {}
    notes: list[str] = []
    new = _lossy_nodes(graph, graph_dt(graph), "", replaced, notes)
    if replaced:
        new.metadata[LOSSY_KEY] = replaced
    return new, notes


def restore_custom_nodes(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Undo :func:`lossy_graph`: nodes whose metadata records an original custom node
    become that node again (exactly); returns a new graph, ``graph`` is not modified."""
    nodes: dict[str, nir.NIRNode] = {}
    for name, node in graph.nodes.items():
        meta = getattr(node, "metadata", None) or {}
        if isinstance(node, nir.NIRGraph):
            nodes[name] = restore_custom_nodes(node)
        elif LOSSY_KEY in meta and isinstance(meta.get(ORIGINAL_KEY), Mapping):
            cls = custom_nodes().get(str(meta[LOSSY_KEY]))
            if cls is None:
                raise UnknownNodeError(
                    f"node {name!r}: metadata '{LOSSY_KEY}' names {meta[LOSSY_KEY]!r}, which "
                    "is not a nirbridge custom node")
            try:
                nodes[name] = cls.from_dict(dict(meta[ORIGINAL_KEY]))
            except NirbridgeError as exc:
                raise type(exc)(f"node {name!r}, metadata '{ORIGINAL_KEY}': {exc}") from exc
        else:
            nodes[name] = node
    meta = {k: v for k, v in (graph.metadata or {}).items() if k != LOSSY_KEY}
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=meta, type_check=False)


__all__ = ["LOSSY_KEY", "LossyExportWarning", "ORIGINAL_KEY", "lossy_graph",
           "restore_custom_nodes"]
