"""The structure the quantizer reads: per-node shapes, and the chains from a source to a
sink (the rules are in the package docstring, :mod:`nirbridge.quantize`).

A *chain* is a path from a source (Input, neuron or spike stage) to a sink (neuron, spike
stage or Output) through stateless nodes: passthrough nodes and delays, at most one
weighted layer, passthrough nodes and delays. Recurrent graphs: a chain may run over a
feedback edge (:func:`nirbridge.graph.feedback_edges`), and its source may then be the
sink itself or a node quantized after it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.backends.reference import apply_synapse
from nirbridge.errors import GraphError, QuantizationError
from nirbridge.geometry import pool_geometry_of
from nirbridge.neurons import is_neuron
from nirbridge.neurons._base import numeric_fields

WEIGHTED = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
PASSTHROUGH = (nir.Flatten, nir.SumPool2d, nir.AvgPool2d)
#: Stateless nodes that emit spikes: each ends the chains feeding it (a sink, like a
#: neuron) and starts the chains it feeds (a source of 0/1 values). A Threshold after a
#: SumPool2d of spikes is how a max pooling of spikes is exported.
SPIKE_STAGES = (nir.Threshold,)
#: Nodes that shift integers in time and leave their format alone.
DELAYS = (nir.Delay,)

Edge = tuple[str, str]


def _tname(node: Any) -> str:
    return type(node).__name__


def check_finite(name: str, node: nir.NIRNode) -> None:
    """QuantizationError if a numeric parameter of ``node`` holds NaN or inf."""
    for f, val in numeric_fields(node):
        try:
            arr = np.asarray(val, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if not np.all(np.isfinite(arr)):
            raise QuantizationError(f"node '{name}': {f} holds NaN or inf; it cannot be "
                                    "represented in fixed point")


def node_shapes(graph: nir.NIRGraph, order: list[str], preds: dict[str, list[str]],
                feedback: Collection[Edge] = ()) -> dict[str, tuple[int, ...]]:
    """Per-step output shape of every node, by running the float semantics on zeros
    (from the first input over an edge of this step: ``order`` is an execution order)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            shapes[name] = tuple(int(s) for s in np.asarray(node.output_type["output"]).ravel())
            continue
        known = [p for p in preds[name] if (p, name) not in feedback and p in shapes]
        if not known:
            raise GraphError(f"node '{name}' has no incoming edge; connect it or remove it")
        inp = shapes[known[0]]
        if isinstance(node, (*WEIGHTED, *PASSTHROUGH)):
            y = apply_synapse(node, torch.zeros((1, 1, *inp), dtype=torch.float64))
            shapes[name] = tuple(y.shape[2:])
        else:
            shapes[name] = inp
    return shapes


def scale_as_linear(graph: nir.NIRGraph, shapes: dict[str, tuple[int, ...]]
                    ) -> tuple[nir.NIRGraph, set[str]]:
    """``graph`` with every ``nir.Scale`` on a vector replaced by the equal
    ``nir.Linear(diag(scale))`` (a one-to-one weighted layer, in integers as any other),
    and the names replaced. A Scale on a larger per-step shape is refused."""
    scaled = {n for n, v in graph.nodes.items() if isinstance(v, nir.Scale)}
    if not scaled:
        return graph, scaled
    nodes = dict(graph.nodes)
    for name in scaled:
        shape = shapes[name]
        if len(shape) != 1:
            raise QuantizationError(f"node '{name}' (Scale) acts on a per-step shape {shape}; "
                                    "fixed point runs a Scale as a one-to-one weighted layer, "
                                    "on vectors only: flatten its input first")
        try:
            scale = np.broadcast_to(np.asarray(graph.nodes[name].scale, np.float64), shape)
        except ValueError:
            raise QuantizationError(f"node '{name}' (Scale): scale of shape "
                                    f"{np.shape(graph.nodes[name].scale)} does not fit its "
                                    f"input {shape}") from None
        nodes[name] = nir.Linear(weight=np.diag(scale))
    meta = dict(graph.metadata) if isinstance(graph.metadata, dict) else {}
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=meta,
                        type_check=False), scaled


@dataclass
class Chain:
    """A path from a source to a sink: passthrough nodes and delays, at most one weighted
    layer, passthrough nodes and delays.

    ``feedback``: the chain runs over a feedback edge (it carries the previous step);
    ``travels``: a feedback edge or a delay lies between its weighted layer and the sink,
    so that layer's bias reaches the sink delayed (zero at first) and cannot be folded
    into the sink's constant drive: the layer adds it itself.
    """

    source: str
    pre: list[str]
    weighted: str | None
    post: list[str]
    feedback: bool = False
    travels: bool = False

    @property
    def nodes(self) -> list[str]:
        """The chain's stateless nodes, source side first."""
        return self.pre + ([self.weighted] if self.weighted else []) + self.post


def chain(g: nir.NIRGraph, sink: str, pred: str, preds: dict[str, list[str]],
          succs: dict[str, list[str]], feedback: Collection[Edge] = ()) -> Chain:
    """The chain ending at ``sink`` through its input ``pred`` (QuantizationError where
    the path is not a chain)."""
    def walk(cur: str, acc: list[str], nxt: str) -> tuple[str, bool]:
        crossed = (cur, nxt) in feedback
        while isinstance(g.nodes[cur], (*PASSTHROUGH, *DELAYS)):
            if len(preds[cur]) != 1:
                raise QuantizationError(f"node '{cur}' ({_tname(g.nodes[cur])}) sums several "
                                        "inputs; fixed point supports sums only at neurons "
                                        "and outputs")
            acc.append(cur)
            cur, nxt = preds[cur][0], cur
            crossed |= (cur, nxt) in feedback
        return cur, crossed

    post: list[str] = []
    cur, fb_post = walk(pred, post, sink)
    node = g.nodes[cur]
    weighted = None
    pre: list[str] = []
    fb_pre = False
    if isinstance(node, WEIGHTED):
        weighted = cur
        if len(succs[cur]) != 1 or any(len(succs[p]) != 1 for p in post):
            raise QuantizationError(f"weighted layer '{cur}' feeds several nodes; its output "
                                    "format is set by the one neuron it feeds")
        if len(preds[cur]) != 1:
            raise QuantizationError(f"weighted layer '{cur}' has {len(preds[cur])} inputs; "
                                    "fixed point needs exactly one")
        cur, fb_pre = walk(preds[cur][0], pre, cur)
        node = g.nodes[cur]
        if isinstance(node, WEIGHTED):
            raise QuantizationError(f"weighted layers '{cur}' and '{weighted}' follow each "
                                    "other without a neuron; merge them before quantizing")
    if not (isinstance(node, (nir.Input, *SPIKE_STAGES)) or is_neuron(node)):
        raise QuantizationError(f"node '{cur}' ({_tname(node)}) has no fixed-point "
                                "semantics here")
    delayed = any(isinstance(g.nodes[n], DELAYS) for n in post)
    return Chain(cur, pre[::-1], weighted, post[::-1], fb_pre or fb_post,
                 weighted is not None and (fb_post or delayed))


def run_float(g: nir.NIRGraph, names: list[str], x: np.ndarray,
              override: dict[str, nir.NIRNode] | None = None) -> np.ndarray:
    """The float semantics of a chain of stateless nodes on one per-step input ``x``
    (a delay is the identity here: constants and bounds do not depend on time)."""
    t = torch.as_tensor(x, dtype=torch.float64).reshape(1, 1, *x.shape)
    for n in names:
        node = (override or {}).get(n, g.nodes[n])
        if not isinstance(node, DELAYS):
            t = apply_synapse(node, t)
    return t[0, 0].numpy()


def without_bias(node: nir.NIRNode, weight: np.ndarray | None = None) -> nir.NIRNode:
    """The weighted layer ``node`` with weights ``weight`` (default its own) and no bias."""
    w = np.asarray(node.weight, dtype=np.float64) if weight is None else weight
    if isinstance(node, nir.Affine):
        return nir.Affine(weight=w, bias=np.zeros(w.shape[0]))
    if isinstance(node, nir.Linear):
        return nir.Linear(weight=w)
    cls = type(node)
    return cls(input_shape=node.input_shape, weight=w, stride=node.stride,
               padding=node.padding, dilation=node.dilation, groups=node.groups,
               bias=np.zeros(w.shape[0]))


def avg_factor(g: nir.NIRGraph, names: list[str]) -> float:
    """The product of ``1/k²`` of the average poolings among ``names``."""
    f = 1.0
    for n in names:
        node = g.nodes[n]
        if isinstance(node, nir.AvgPool2d):
            f /= pool_geometry_of(node).area
    return f


def push_gain(g: nir.NIRGraph, ch: Chain, gain: np.ndarray,
              shapes: dict[str, tuple[int, ...]]) -> np.ndarray | None:
    """The neuron gain as a per-row (Affine) / per-output-channel (Conv) factor of the
    chain's weighted layer, or None if it does not commute with the nodes in between."""
    w = ch.weighted
    assert w is not None
    wnode = g.nodes[w]
    n_out = int(np.asarray(wnode.weight).shape[0])
    if np.all(gain == gain.flat[0]):
        return np.full(n_out, float(gain.flat[0]))
    cur = gain
    for name in reversed(ch.post):
        node = g.nodes[name]
        pred_shape = shapes[w] if name == ch.post[0] else shapes[
            ch.post[ch.post.index(name) - 1]]
        if isinstance(node, nir.Flatten):
            cur = cur.reshape(pred_shape)
        elif isinstance(node, DELAYS):
            continue
        else:  # pooling: only a per-channel gain commutes
            flat = cur.reshape(cur.shape[0], -1)
            if not np.all(flat == flat[:, :1]):
                return None
            cur = np.broadcast_to(flat[:, :1].reshape(-1, *([1] * (len(pred_shape) - 1))),
                                  pred_shape)
    if isinstance(wnode, (nir.Affine, nir.Linear)):
        return cur.reshape(n_out).astype(np.float64) if cur.size == n_out else None
    flat = np.asarray(cur).reshape(n_out, -1)
    if not np.all(flat == flat[:, :1]):
        return None
    return flat[:, 0].astype(np.float64)


def graph_pred(ch: Chain) -> str:
    """The node whose output feeds the chain's weighted layer (its source or last pre)."""
    return ch.pre[-1] if ch.pre else ch.source


def layer_bias(g: nir.NIRGraph, ch: Chain, shapes: dict[str, tuple[int, ...]]
               ) -> np.ndarray:
    """The bias of the chain's weighted layer over its output shape (zeros: none)."""
    assert ch.weighted is not None
    return run_float(g, [ch.weighted], np.zeros(shapes[graph_pred(ch)]))


__all__ = ["DELAYS", "PASSTHROUGH", "SPIKE_STAGES", "WEIGHTED", "Chain", "avg_factor",
           "chain", "check_finite", "graph_pred", "layer_bias", "node_shapes", "push_gain",
           "run_float", "scale_as_linear", "without_bias"]
