"""The one entry of the lowering: :func:`lower` picks the floating_pt or fixed_pt lowerer.

It imports both lowerers, which import only the shared modules (:mod:`.network`,
:mod:`.linear`): nothing imports this module back.
"""

from __future__ import annotations

from typing import Any

import nir

from nirbridge.backends.lava.lower_fixed import lower_fixed
from nirbridge.backends.lava.lower_float import FloatLowerer
from nirbridge.backends.lava.network import MODES, LavaNetwork, check_connected
from nirbridge.errors import GraphError, LoweringError
from nirbridge.graph import flatten_subgraphs
from nirbridge.neurons import is_neuron
from nirbridge.passes import graph_dt


def lower(graph: nir.NIRGraph, mode: str = "floating_pt", *, dt: float | None = None,
          sparse: bool | str = "auto", quant: Any = None, stock_lif: bool = True
          ) -> LavaNetwork:
    """Lower ``graph`` to a :class:`LavaNetwork` for ``mode`` (``"floating_pt"`` or
    ``"fixed_pt"``).

    ``dt``: the time step (default: the graph's metadata). ``sparse``: ``True`` makes
    every convolution/pooling map a Lava ``Sparse``, ``False`` a ``Dense``, ``"auto"``
    uses ``Sparse`` above :data:`~nirbridge.backends.lava.linear.SPARSE_ABOVE` entries.
    Nested subgraphs are flattened first (node ``sub.x``); recurrent graphs and
    ``nir.Delay`` lower as :class:`~nirbridge.backends.lava.network.Lowerer` describes.

    fixed_pt only (:mod:`nirbridge.backends.lava.lower_fixed`): the graph is quantized
    once with ``quant`` (``None``: the ``loihi2`` profile; a
    :class:`~nirbridge.quantize.QuantConfig`; a profile name, path or dict; or a
    :class:`~nirbridge.quantize.QuantizedGraph` of this graph), which raises
    :class:`~nirbridge.errors.QuantizationError` naming the node for graphs or values
    fixed point cannot represent. ``stock_lif=False`` puts stock-compatible LIF layers on
    nirbridge's integer Process instead of Lava's own LIF.
    """
    graph = flatten_subgraphs(graph)  # a subgraph's node x runs as node 'sub.x'
    if mode not in MODES:
        raise LoweringError(f"mode={mode!r}; use one of {MODES}")
    if sparse not in (True, False, "auto"):
        raise LoweringError(f"sparse={sparse!r}; use True, False or 'auto'")
    qgraph = None
    if mode == "fixed_pt":
        low, qgraph = lower_fixed(graph, dt=dt, sparse=sparse, quant=quant,
                                  stock_lif=stock_lif)
    else:
        if quant is not None:
            raise LoweringError("quant= applies to mode='fixed_pt' only")
        low = FloatLowerer(graph, graph_dt(graph, dt), sparse)
        low.lower()
    check_connected(low.procs, low.connections)
    nodes = low.graph.nodes
    inputs = [n for n in low.streams if isinstance(nodes[n], nir.Input)]
    outputs = [n for n in low.streams if isinstance(nodes[n], nir.Output)]
    if not inputs or not outputs:
        raise GraphError(f"graph needs at least one Input and one Output node (has inputs "
                         f"{inputs}, outputs {outputs})")
    neurons = [n for n in low.streams if is_neuron(nodes[n])]
    return LavaNetwork(low.graph, mode, low.dt, low.procs, low.connections, low.streams, inputs,
                       outputs, neurons, qgraph)


__all__ = ["lower"]
