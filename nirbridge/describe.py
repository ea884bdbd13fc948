"""A JSON-able summary of a NIR graph (:func:`describe`): what ``nirbridge inspect``
prints, as data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import nir

#: Node fields that are geometry or types, not parameters.
_NOT_PARAMETERS = ("input_shape", "stride", "padding", "dilation", "kernel_size")
_NOT_FIELDS = ("input_type", "output_type", "metadata")


def _shape(types: dict | None, key: str) -> list[int] | None:
    v = (types or {}).get(key)
    return None if v is None else [int(s) for s in np.asarray(v).ravel()]


def _parameter_count(node: nir.NIRNode) -> int:
    n = 0
    for k, v in vars(node).items():
        if k in _NOT_FIELDS:
            continue
        if isinstance(v, np.ndarray) and v.dtype.kind in "fiu" and k not in _NOT_PARAMETERS:
            n += int(v.size)
        elif hasattr(v, "numel"):
            n += int(v.numel())
    return n


def describe(graph: nir.NIRGraph) -> dict[str, Any]:
    """A JSON-able summary of ``graph``: ``dt``, ``metadata`` (scalars; others as text),
    ``nodes`` (name, type, whether custom, input and output shapes, parameter count, and
    for neurons how they fire: ``compare``), ``edges``, ``custom_nodes`` and the total
    ``parameters``."""
    # the CLI imports this module at start; the neuron registry (torch) only when used
    from nirbridge.neurons import CustomNeuron, is_neuron
    from nirbridge.neurons._base import compare_of

    nodes = []
    for name, node in graph.nodes.items():
        entry = {
            "name": name,
            "type": type(node).__name__,
            "custom": isinstance(node, CustomNeuron),
            "input_shape": _shape(getattr(node, "input_type", None), "input"),
            "output_shape": _shape(getattr(node, "output_type", None), "output"),
            "parameters": _parameter_count(node),
        }
        if is_neuron(node):
            entry["compare"] = compare_of(node)
        nodes.append(entry)
    meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in (graph.metadata or {}).items()
            if not isinstance(v, dict)}
    return {
        "dt": meta.get("dt"),
        "metadata": {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                     for k, v in meta.items()},
        "nodes": nodes,
        "edges": [[a, b] for a, b in graph.edges],
        "custom_nodes": [n["name"] for n in nodes if n["custom"]],
        "parameters": sum(n["parameters"] for n in nodes),
    }


__all__ = ["describe"]
