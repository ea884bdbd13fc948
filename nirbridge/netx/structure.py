"""Which NIR graphs netx can express (:func:`check_netx_structure`) and its recurrent
layers (:func:`recurrent_layers`); the rules are in :mod:`nirbridge.netx`."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from nirbridge.errors import LoweringError
from nirbridge.graph import (
    check_edge_names,
    cyclic_components,
    execution_order,
    predecessors,
    successors,
)
from nirbridge.neurons import CustomNeuron, is_neuron

#: Neuron node types netx can run (as CUBA = stock Lava LIF).
NETX_NEURONS: tuple[type, ...] = (nir.LIF, nir.IF, nir.CubaLIF)
#: Weighted node types netx can run (``dense`` and ``conv`` layers).
NETX_WEIGHTED: tuple[type, ...] = (nir.Affine, nir.Linear, nir.Conv2d)


def type_name(node: Any) -> str:
    """A node's NIR type name, as every netx message names it."""
    return type(node).__name__


def _why_not_netx(node: nir.NIRNode) -> str | None:
    """Why a node type has no netx layer (None if it has one)."""
    if isinstance(node, (nir.Input, nir.Output, nir.Flatten, *NETX_WEIGHTED, *NETX_NEURONS)):
        return None
    if isinstance(node, CustomNeuron):
        return ("custom neuron: netx's only exact spiking neuron is CUBA (stock Lava LIF); "
                "run it with the lava backend's custom processes instead")
    if isinstance(node, (nir.LI, nir.CubaLI, nir.I)):
        return ("non-spiking neuron: netx's CUBA neuron always spikes, so a graded readout "
                "cannot be written; end the network with a spiking neuron")
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        return ("pooling: lava-dl netx 0.6.0 raises NotImplementedError for 'pool' layers; "
                "use a strided Conv2d instead")
    if isinstance(node, nir.Conv1d):
        return "Conv1d: netx conv layers are 2-D"
    if isinstance(node, nir.NIRGraph):
        return "subgraph: flatten the graph first"
    return "no netx layer type (input, dense, conv, flatten with CUBA neurons)"


def _refuse_recurrent_layer(comp: list[str], why: str) -> LoweringError:
    names = ", ".join(f"'{n}'" for n in comp)
    return LoweringError(f"netx: recurrent nodes ({names}) cannot be written: {why}")


def recurrent_layers(graph: nir.NIRGraph) -> dict[str, str]:
    """The recurrent layers of ``graph`` netx can write, as ``{neuron: recurrent
    synapse}``, or :class:`LoweringError` naming the nodes of the first cycle (in
    :func:`~nirbridge.graph.schedule` order) netx cannot run, and why.

    netx's one recurrent layer is ``dense_rec`` (lava-dl 0.6.0 ``RecurrentDense``): a
    dense input synapse into CUBA neurons, and a dense synapse from those neurons straight
    back to them, which Lava delivers one step later (``W_rec·s[t−1]``, nothing at
    t = 0): nirbridge's reading of the feedback edge. So every cycle must be exactly
    ``neuron → (Affine | Linear) → neuron``, the synapse with no other edge and no bias
    (a recurrent bias first counts at t = 1; netx has only the neuron's bias, which
    counts from t = 0), the neuron fed by one dense synapse besides it.
    """
    preds, succs = predecessors(graph), successors(graph)
    found: dict[str, str] = {}
    for comp in cyclic_components(graph):
        neurons = [n for n in comp if is_neuron(graph.nodes[n])]
        if len(comp) != 2 or len(neurons) != 1:
            raise _refuse_recurrent_layer(comp, (
                "netx's only recurrent layer (dense_rec) feeds a layer's CUBA neurons back "
                "to themselves through one dense synapse; "
                + ("here a node feeds itself" if len(comp) == 1 else
                   f"these cycles hold {len(neurons)} neuron layers" if len(neurons) != 1 else
                   f"this cycle holds {len(comp) - 1} nodes besides the neuron")))
        (neuron,) = neurons
        (syn,) = [n for n in comp if n != neuron]
        nnode, snode = graph.nodes[neuron], graph.nodes[syn]
        why_neuron = _why_not_netx(nnode)
        if why_neuron or not isinstance(nnode, NETX_NEURONS):
            raise _refuse_recurrent_layer(comp, f"node '{neuron}' ({type_name(nnode)}): "
                                          f"{why_neuron or 'not a CUBA neuron'}")
        if isinstance(snode, nir.Scale):
            raise _refuse_recurrent_layer(comp, (
                f"node '{syn}' (Scale): netx's recurrent synapse is dense; write the "
                "one-to-one recurrence as a Linear with diagonal weights"))
        if not isinstance(snode, (nir.Affine, nir.Linear)):
            raise _refuse_recurrent_layer(comp, (
                f"node '{syn}' ({type_name(snode)}): netx's recurrent synapse (dense_rec) is "
                "dense (Affine or Linear)"))
        if preds[syn] != [neuron] or succs[syn] != [neuron]:
            raise _refuse_recurrent_layer(comp, (
                f"node '{syn}' has other inputs or outputs than '{neuron}'; netx's "
                "recurrent synapse connects a layer's neurons to themselves only"))
        if isinstance(snode, nir.Affine) and np.any(np.asarray(snode.bias)):
            raise _refuse_recurrent_layer(comp, (
                f"node '{syn}' (Affine) has a bias: a recurrent bias first counts at t = 1 "
                "(docs/recurrence.md), and netx has only the neuron's bias, which counts "
                "from t = 0 (netx writes bias-free recurrent synapses only)"))
        ff = [p for p in preds[neuron] if p != syn]
        if len(ff) != 1 or not isinstance(graph.nodes[ff[0]], (nir.Affine, nir.Linear)):
            what = (f"is fed by {len(ff)} nodes besides '{syn}'" if len(ff) != 1 else
                    f"is fed by '{ff[0]}' ({type_name(graph.nodes[ff[0]])})")
            raise _refuse_recurrent_layer(comp, (
                f"node '{neuron}' {what}; netx's dense_rec layer has one dense input "
                "synapse (netx has no recurrent conv layer)"))
        found[neuron] = syn
    return found


def check_netx_structure(graph: nir.NIRGraph) -> None:
    """Raise :class:`LoweringError` naming the first node (execution order) whose type
    or position netx cannot express: see the module docstring. A recurrent layer must be
    one netx can run (:func:`recurrent_layers`; its error names the cycle's nodes)."""
    check_edge_names(graph)
    recurrent = recurrent_layers(graph)
    rec_syn = set(recurrent.values())
    order = [n for n in execution_order(graph) if n not in rec_syn]
    # a recurrent layer is one netx layer: its loop is left out of the chain checks
    preds = {n: [p for p in ps if p not in rec_syn] for n, ps in predecessors(graph).items()}
    succs = {n: [m for m in ms if m not in rec_syn] for n, ms in successors(graph).items()}
    n_in = sum(isinstance(n, nir.Input) for n in graph.nodes.values())
    n_out = sum(isinstance(n, nir.Output) for n in graph.nodes.values())
    for name in order:
        node = graph.nodes[name]
        why = _why_not_netx(node)
        if why:
            raise LoweringError(f"netx: node '{name}' ({type_name(node)}) is not supported: {why}")

        def bad(msg: str, n: str = name, nd: Any = node) -> LoweringError:
            return LoweringError(f"netx: node '{n}' ({type_name(nd)}): {msg}")

        if isinstance(node, nir.Input):
            if n_in != 1:
                raise bad(f"the graph has {n_in} Input nodes; a netx network has exactly one")
        elif len(preds[name]) != 1:
            raise bad(f"has {len(preds[name])} inputs; a netx network is a chain (no sums "
                      "or branches)")
        if isinstance(node, nir.Output):
            if n_out != 1:
                raise bad(f"the graph has {n_out} Output nodes; a netx network has exactly one")
            if not is_neuron(graph.nodes[preds[name][0]]):
                raise bad("is not fed by a neuron: netx's output is the spikes of its last "
                          "layer's CUBA neurons")
            continue
        if len(succs[name]) != 1:
            raise bad(f"feeds {len(succs[name])} nodes; a netx network is a chain (no branches)"
                      if succs[name] else "feeds nothing; connect it to the Output")
        nxt_name = succs[name][0]
        nxt = graph.nodes[nxt_name]
        pred = graph.nodes[preds[name][0]] if preds[name] else None
        if isinstance(node, NETX_WEIGHTED):
            if not isinstance(nxt, NETX_NEURONS):
                why_next = _why_not_netx(nxt)
                if why_next:
                    raise LoweringError(f"netx: node '{nxt_name}' ({type_name(nxt)}) is not "
                                        f"supported: {why_next}")
                raise bad(f"is followed by '{nxt_name}' ({type_name(nxt)}); every netx dense/conv "
                          "layer must feed CUBA neurons (LIF, IF or CubaLIF) directly")
            if isinstance(node, nir.Conv2d) and isinstance(pred, nir.Flatten):
                raise bad(f"follows Flatten '{preds[name][0]}'; netx flattens only before a "
                          "dense layer")
        elif isinstance(node, NETX_NEURONS):
            if not isinstance(pred, NETX_WEIGHTED):
                raise bad(f"is fed by '{preds[name][0]}' ({type_name(pred)}); every netx neuron "
                          "layer sits right behind its own dense or conv synapse")
        elif isinstance(node, nir.Flatten):
            if not isinstance(nxt, (nir.Flatten, nir.Affine, nir.Linear)):
                raise bad(f"is followed by '{nxt_name}' ({type_name(nxt)}); netx flattens only "
                          "right before a dense layer")


def on_cycles(graph: nir.NIRGraph) -> set[str]:
    """The nodes of ``graph`` that lie on a cycle (a recurrent layer's neuron and synapse
    in a graph that passed :func:`check_netx_structure`)."""
    return {n for comp in cyclic_components(graph) for n in comp}


__all__ = ["NETX_NEURONS", "NETX_WEIGHTED", "check_netx_structure", "on_cycles",
           "recurrent_layers", "type_name"]
