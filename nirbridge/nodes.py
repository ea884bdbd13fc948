"""nirbridge's custom NIR nodes (compatibility view of the neuron registry).

Each custom node is defined in its neuron's file (``nirbridge/neurons/<name>.py``) and
registered in :data:`nirbridge.neurons.NEURONS`; this module gives the built-in ones under
their type names, and the helpers code written against ``nirbridge.nodes`` uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import nir

from nirbridge.neurons import NEURONS, custom_node_class, custom_nodes, is_neuron, spec_of
from nirbridge.neurons._base import CustomNeuron, compare_of
from nirbridge.neurons.alif import ALIFNode as ALIF
from nirbridge.neurons.arlif import ARLIFNode as ARLIF
from nirbridge.neurons.clif import CLIFNode as CLIF
from nirbridge.neurons.dalif import DALIFNode as DALIF
from nirbridge.neurons.klif import KLIFNode as KLIF
from nirbridge.neurons.sublif import SubtractiveLIFNode as SubtractiveLIF


class _CustomNodes(Mapping[str, type[CustomNeuron]]):
    """Read-only view: the registered custom node classes by type name (always current)."""

    def __getitem__(self, key: str) -> type[CustomNeuron]:
        return custom_nodes()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(custom_nodes())

    def __len__(self) -> int:
        return len(custom_nodes())


#: The registered custom node classes by type name.
CUSTOM_NODES: Mapping[str, type[CustomNeuron]] = _CustomNodes()


def standard_neurons() -> tuple[type[nir.NIRNode], ...]:
    """The registered NIR-standard neuron node classes."""
    return tuple(s.node for s in NEURONS.values() if not s.custom)


#: NIR's own neuron node types (they carry state and fire, or integrate).
STANDARD_NEURONS: tuple[type[nir.NIRNode], ...] = standard_neurons()


def node_type_name(node: nir.NIRNode) -> str:
    """The type name a node is written under in ``.nir`` files."""
    return type(node).__name__


__all__ = [
    "ALIF",
    "ARLIF",
    "CLIF",
    "CUSTOM_NODES",
    "CustomNeuron",
    "DALIF",
    "KLIF",
    "STANDARD_NEURONS",
    "SubtractiveLIF",
    "compare_of",
    "custom_node_class",
    "is_neuron",
    "node_type_name",
    "spec_of",
    "standard_neurons",
]
