"""The quantizer: a float NIR graph → a :class:`QuantizedGraph` for a fixed-point target.

The layout rules are in the package docstring (:mod:`nirbridge.quantize`). Neurons are
planned by their registry entry (``NeuronSpec.quantize``): this module names none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch

from nirbridge import fixed_point as fx
from nirbridge.backends.reference import apply_synapse
from nirbridge.errors import GraphError, QuantizationError
from nirbridge.geometry import conv_geometry_of, pool_geometry_of
from nirbridge.graph import refuse_recurrent
from nirbridge.neurons import QuantPlan, is_neuron, spec_of
from nirbridge.neurons._base import numeric_fields
from nirbridge.passes import graph_dt, predecessors, successors, topological_order
from nirbridge.quantize.config import QuantConfig
from nirbridge.quantize.graph import (
    LayerReport,
    QuantizedGraph,
    QuantizedInput,
    QuantizedNeuron,
    QuantizedOutput,
    QuantizedSynapse,
    QuantizedThreshold,
)

WEIGHTED = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
PASSTHROUGH = (nir.Flatten, nir.SumPool2d, nir.AvgPool2d)
#: Stateless nodes that emit spikes: each ends the chains feeding it (a sink, like a
#: neuron) and starts the chains it feeds (a source of 0/1 values). A Threshold after a
#: SumPool2d of spikes is how a max pooling of spikes is exported.
SPIKE_STAGES = (nir.Threshold,)


def _tname(node: Any) -> str:
    return type(node).__name__


def _check_finite(name: str, node: nir.NIRNode) -> None:
    for f, val in numeric_fields(node):
        try:
            arr = np.asarray(val, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if not np.all(np.isfinite(arr)):
            raise QuantizationError(f"node '{name}': {f} holds NaN or inf; it cannot be "
                                    "represented in fixed point")


def _shapes(graph: nir.NIRGraph, order: list[str], preds: dict[str, list[str]]
            ) -> dict[str, tuple[int, ...]]:
    """Per-step output shape of every node, by running the float semantics on zeros."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            shapes[name] = tuple(int(s) for s in np.asarray(node.output_type["output"]).ravel())
            continue
        if not preds[name]:
            raise GraphError(f"node '{name}' has no incoming edge; connect it or remove it")
        inp = shapes[preds[name][0]]
        if isinstance(node, (*WEIGHTED, *PASSTHROUGH)):
            y = apply_synapse(node, torch.zeros((1, 1, *inp), dtype=torch.float64))
            shapes[name] = tuple(y.shape[2:])
        else:
            shapes[name] = inp
    return shapes


@dataclass
class _Chain:
    """A path from a source (Input, neuron or spike stage) to a sink (neuron, spike stage
    or Output): passthrough nodes, at most one weighted layer, passthrough nodes."""

    source: str
    pre: list[str]
    weighted: str | None
    post: list[str]

    @property
    def nodes(self) -> list[str]:
        """The chain's stateless nodes, source side first."""
        return self.pre + ([self.weighted] if self.weighted else []) + self.post


def _chain(g: nir.NIRGraph, sink: str, pred: str, preds: dict[str, list[str]],
           succs: dict[str, list[str]]) -> _Chain:
    def walk(cur: str, acc: list[str]) -> str:
        while isinstance(g.nodes[cur], PASSTHROUGH):
            if len(preds[cur]) != 1:
                raise QuantizationError(f"node '{cur}' ({_tname(g.nodes[cur])}) sums several "
                                        "inputs; fixed point supports sums only at neurons "
                                        "and outputs")
            acc.append(cur)
            cur = preds[cur][0]
        return cur

    post: list[str] = []
    cur = walk(pred, post)
    node = g.nodes[cur]
    weighted = None
    pre: list[str] = []
    if isinstance(node, WEIGHTED):
        weighted = cur
        if len(succs[cur]) != 1 or any(len(succs[p]) != 1 for p in post):
            raise QuantizationError(f"weighted layer '{cur}' feeds several nodes; its output "
                                    "format is set by the one neuron it feeds")
        if len(preds[cur]) != 1:
            raise QuantizationError(f"weighted layer '{cur}' has {len(preds[cur])} inputs; "
                                    "fixed point needs exactly one")
        cur = walk(preds[cur][0], pre)
        node = g.nodes[cur]
        if isinstance(node, WEIGHTED):
            raise QuantizationError(f"weighted layers '{cur}' and '{weighted}' follow each "
                                    "other without a neuron; merge them before quantizing")
    if not (isinstance(node, (nir.Input, *SPIKE_STAGES)) or is_neuron(node)):
        raise QuantizationError(f"node '{cur}' ({_tname(node)}) has no fixed-point "
                                "semantics here")
    return _Chain(cur, pre[::-1], weighted, post[::-1])


def _run_float(g: nir.NIRGraph, names: list[str], x: np.ndarray,
               override: dict[str, nir.NIRNode] | None = None) -> np.ndarray:
    """The float semantics of a chain of stateless nodes on one per-step input ``x``."""
    t = torch.as_tensor(x, dtype=torch.float64).reshape(1, 1, *x.shape)
    for n in names:
        t = apply_synapse((override or {}).get(n, g.nodes[n]), t)
    return t[0, 0].numpy()


def without_bias(node: nir.NIRNode, weight: np.ndarray | None = None) -> nir.NIRNode:
    w = np.asarray(node.weight, dtype=np.float64) if weight is None else weight
    if isinstance(node, nir.Affine):
        return nir.Affine(weight=w, bias=np.zeros(w.shape[0]))
    if isinstance(node, nir.Linear):
        return nir.Linear(weight=w)
    cls = type(node)
    return cls(input_shape=node.input_shape, weight=w, stride=node.stride,
               padding=node.padding, dilation=node.dilation, groups=node.groups,
               bias=np.zeros(w.shape[0]))


def _avg_factor(g: nir.NIRGraph, names: list[str]) -> float:
    f = 1.0
    for n in names:
        node = g.nodes[n]
        if isinstance(node, nir.AvgPool2d):
            f /= pool_geometry_of(node).area
    return f


def _push_gain(g: nir.NIRGraph, chain: _Chain, gain: np.ndarray,
               shapes: dict[str, tuple[int, ...]]) -> np.ndarray | None:
    """The neuron gain as a per-row (Affine) / per-output-channel (Conv) factor of the
    chain's weighted layer, or None if it does not commute with the nodes in between."""
    w = chain.weighted
    assert w is not None
    wnode = g.nodes[w]
    n_out = int(np.asarray(wnode.weight).shape[0])
    if np.all(gain == gain.flat[0]):
        return np.full(n_out, float(gain.flat[0]))
    cur = gain
    for name in reversed(chain.post):
        node = g.nodes[name]
        pred_shape = shapes[w] if name == chain.post[0] else shapes[
            chain.post[chain.post.index(name) - 1]]
        if isinstance(node, nir.Flatten):
            cur = cur.reshape(pred_shape)
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


def _plan(name: str, node: nir.NIRNode, dt: float, shape: tuple[int, ...],
          cfg: QuantConfig) -> QuantPlan:
    spec = spec_of(node)
    if spec is None or spec.quantize is None or spec.integer is None:
        raise QuantizationError(f"node '{name}' ({_tname(node)}) has no fixed-point model")
    return spec.quantize(name, node, dt, shape, cfg)


def _best_mant_frac(w_eff: np.ndarray, bits: int) -> int:
    """Largest P with ``round(max|w|·2^P) ≤ 2^(bits−1) − 1``."""
    wmax = float(np.max(np.abs(w_eff), initial=0.0))
    mmax = (1 << (bits - 1)) - 1
    if wmax == 0.0:
        return 0
    p = int(math.floor(math.log2(mmax / wmax)))
    while np.floor(wmax * 2.0 ** p + 0.5) > mmax:
        p -= 1
    return p


def quantize(graph: nir.NIRGraph, config: QuantConfig | None = None, *,
             dt: float | None = None) -> QuantizedGraph:
    """Quantize ``graph`` for the fixed-point target described by ``config``.

    Returns a :class:`QuantizedGraph` (integer layers + per-layer report). Raises
    :class:`QuantizationError` naming the node and field for values that cannot be
    represented (NaN/inf, a threshold or bias overflowing the state, a node with no
    integer semantics) and :class:`GraphError` for structural problems.
    """
    cfg = config or QuantConfig()
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise QuantizationError(f"node '{name}' is a subgraph; flatten the graph before "
                                    "quantizing")
        _check_finite(name, node)
    refuse_recurrent(graph, "the quantizer")
    dt_ = graph_dt(graph, dt)
    order = topological_order(graph)
    preds, succs = predecessors(graph), successors(graph)
    shapes = _shapes(graph, order, preds)

    layers: dict[str, Any] = {}
    report: dict[str, LayerReport] = {}
    out_frac: dict[str, int] = {}  # fractional bits of what a source emits
    in_max: dict[str, float] = {}  # its magnitude bound
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            layers[name] = QuantizedInput(name, cfg.input_frac_bits, cfg.input_bits)
            out_frac[name] = cfg.input_frac_bits
            in_max[name] = cfg.input_max
        elif isinstance(node, (nir.Output, *SPIKE_STAGES)) or is_neuron(node):
            chains = [_chain(graph, name, p, preds, succs) for p in preds[name]]
            if not chains:
                raise GraphError(f"node '{name}' has no incoming edge; connect it or remove it")
            if isinstance(node, nir.Output):
                _quantize_output(graph, name, chains, cfg, shapes, out_frac, layers, report)
            elif isinstance(node, SPIKE_STAGES):
                _quantize_threshold(graph, name, node, chains, shapes, out_frac, in_max,
                                    layers, report)
            else:
                _quantize_neuron(graph, name, node, chains, cfg, dt_, shapes, out_frac, in_max,
                                 layers, report)
        elif not isinstance(node, (*WEIGHTED, *PASSTHROUGH)):
            raise QuantizationError(f"node '{name}' ({_tname(node)}) has no fixed-point "
                                    "semantics; supported: Input, Output, Affine, Linear, "
                                    "Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, "
                                    "Threshold and the neurons")
    for name, node in graph.nodes.items():
        if isinstance(node, WEIGHTED) and name not in layers:
            raise QuantizationError(f"weighted layer '{name}' reaches no neuron or output")
    return QuantizedGraph(graph, cfg, dt_, order, preds, layers, report, shapes)


def _exp_range(node: nir.NIRNode, cfg: QuantConfig) -> tuple[int, int]:
    if isinstance(node, (nir.Conv1d, nir.Conv2d)) and not cfg.conv_weight_exp:
        return 0, 0
    return cfg.weight_exp_min, cfg.weight_exp_max


def _make_synapse(graph: nir.NIRGraph, ch: _Chain, sink: str, w_eff: np.ndarray,
                  gain_rows: np.ndarray | None, P: int, w_exp: int, in_frac: int,
                  out_frac: int, cfg: QuantConfig, report: dict[str, LayerReport]
                  ) -> QuantizedSynapse:
    name = ch.weighted
    assert name is not None
    node = graph.nodes[name]
    rep = LayerReport(name, _tname(node), "synapse",
                      scale=dict(w_exp=w_exp, mantissa_frac_bits=P, in_frac_bits=in_frac,
                                 out_frac_bits=out_frac, feeds=sink))
    mmax = (1 << (cfg.weight_bits - 1)) - 1
    w = np.asarray(node.weight, dtype=np.float64)
    scale = w_eff / np.where(w != 0, w, 1.0)  # the folded gain, per element
    scale = np.where(w != 0, scale, 1.0)
    mant = fx.Rounder(name, rep.fields, cfg.state_bits).fixed(
        "weight", w_eff, P, lo=-mmax - 1, hi=mmax, clip=True, scale=scale,
        what=f"{cfg.weight_bits}-bit mantissa")
    if not np.any(mant) and np.any(w):
        rep.notes.append("all weights round to zero")
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        geo = conv_geometry_of(node)
        padding = geo.explicit_padding()
        if padding is None:
            raise QuantizationError(f"node '{name}': asymmetric 'same' padding is not "
                                    "supported in fixed point")
        syn = QuantizedSynapse(name, _tname(node), mant, w_exp, P, in_frac, out_frac, sink,
                               gain_rows, geo.stride, padding, geo.dilation, geo.groups)
    else:
        syn = QuantizedSynapse(name, _tname(node), mant, w_exp, P, in_frac, out_frac, sink,
                               gain_rows)
    report[name] = rep
    return syn


def _quantize_neuron(graph: nir.NIRGraph, name: str, node: nir.NIRNode, chains: list[_Chain],
                     cfg: QuantConfig, dt: float, shapes: dict[str, tuple[int, ...]],
                     out_frac: dict[str, int], in_max: dict[str, float],
                     layers: dict[str, Any], report: dict[str, LayerReport]) -> None:
    shape = shapes[name]
    plan = _plan(name, node, dt, shape, cfg)
    F = cfg.frac_of(plan.key, name)
    rep = LayerReport(name, _tname(node), plan.kind)
    fq = fx.Rounder(name, rep.fields, cfg.state_bits)
    gain = plan.gain
    if not np.all(np.isfinite(gain)):
        raise QuantizationError(f"node '{name}': its input gain is not finite (check tau, r)")

    # constant drive and magnitude bound of each chain, in the neuron's input units
    const = np.zeros(shape)
    bound = np.zeros(shape)
    for ch in chains:
        mag = in_max[ch.source]
        if ch.weighted:
            wnode = graph.nodes[ch.weighted]
            const = const + _run_float(graph, [ch.weighted, *ch.post],
                                       np.zeros(shapes[_graph_pred(ch)]))
            absw = without_bias(wnode, np.abs(np.asarray(wnode.weight, dtype=np.float64)))
            bound = bound + _run_float(graph, ch.nodes, np.full(shapes[ch.source], mag),
                                       {ch.weighted: absw})
        else:
            bound = bound + _run_float(graph, ch.nodes, np.full(shapes[ch.source], mag))

    # fold the gain into the weights where it commutes, else keep it in the neuron
    folded: dict[int, np.ndarray] = {}
    unit_gain = bool(np.all(gain == 1.0))
    no_w = [c for c in chains if c.weighted is None]
    avg_common = 1.0
    if no_w:
        facs = {_avg_factor(graph, c.nodes) for c in no_w}
        if len(facs) > 1:
            raise QuantizationError(f"node '{name}': inputs average-pooled differently with no "
                                    "weights in between cannot share one input gain")
        avg_common = facs.pop()
    if not unit_gain and not no_w:
        for i, ch in enumerate(chains):
            rows = _push_gain(graph, ch, gain, shapes)
            if rows is None:
                folded.clear()
                break
            folded[i] = rows
    in_gain_f = None
    if (not unit_gain and not folded) or avg_common != 1.0:
        in_gain_f = gain * avg_common
        rep.notes.append("input gain could not be folded into the weights; applied in the "
                         "neuron")

    # mantissa precision per weighted chain
    w_effs: dict[int, np.ndarray] = {}
    Ps: dict[int, int] = {}
    for i, ch in enumerate(chains):
        if ch.weighted is None:
            continue
        w = np.asarray(graph.nodes[ch.weighted].weight, dtype=np.float64)
        fac = _avg_factor(graph, ch.nodes) / avg_common
        rows = folded.get(i, np.ones(w.shape[0]))
        w_effs[i] = w * fac * rows.reshape(-1, *([1] * (w.ndim - 1)))
        Ps[i] = _best_mant_frac(w_effs[i], cfg.weight_bits)

    # state format
    x_bound = np.abs(gain) * bound + np.abs(plan.own_bias + gain * const)
    xmax = float(np.max(x_bound, initial=0.0))
    if plan.spiking:
        R = cfg.headroom * (plan.theta_max + xmax)
    else:
        R = cfg.headroom * (plan.theta_max + xmax / max(plan.leak, 1.0 / 16))
    S_range = cfg.state_bits - 1 - (math.ceil(math.log2(R)) if R > 0 else 0)
    S_range = min(S_range, 2 * cfg.state_bits)  # a degenerate (all-zero) layer
    if plan.homogeneous:
        S = S_range
        if plan.model.input_shift_is_frac:
            for i, ch in enumerate(chains):
                if ch.weighted is not None:
                    hi = _exp_range(graph.nodes[ch.weighted], cfg)[1]
                    S = min(S, F + out_frac[ch.source] + Ps[i] + hi)
    else:
        S = F
        if S > S_range:
            rep.notes.append(f"estimated range {R / cfg.headroom:g} may saturate the "
                             f"{cfg.state_bits}-bit state at {S} fractional bits")
    k = S - F
    if plan.model.input_shift_is_frac:
        a = F
    else:
        a = 0
        for i, ch in enumerate(chains):
            if ch.weighted is not None:
                hi = _exp_range(graph.nodes[ch.weighted], cfg)[1]
                a = max(a, S - out_frac[ch.source] - Ps[i] - hi)
    if k < 0:
        rep.notes.append(f"range forces {S} fractional bits, fewer than the {F} asked for")

    # synapses
    for i, ch in enumerate(chains):
        if ch.weighted is None:
            continue
        lo, hi = _exp_range(graph.nodes[ch.weighted], cfg)
        q_src = out_frac[ch.source]
        P = Ps[i]
        w_exp = S - a - q_src - P
        if w_exp < lo:
            P, w_exp = S - a - q_src - lo, lo
        if w_exp > hi:  # only when the exponent range is pinned (Conv with Lava)
            raise QuantizationError(f"weighted layer '{ch.weighted}': needs exponent {w_exp} "
                                    f"outside [{lo}, {hi}] to feed '{name}'")
        layers[ch.weighted] = _make_synapse(graph, ch, name, w_effs[i], folded.get(i), P,
                                            w_exp, q_src, S - a, cfg, report)
        if P < Ps[i]:
            report[ch.weighted].notes.append(f"mantissa precision cut from {Ps[i]} to {P} "
                                             "fractional bits by the exponent range")

    in_gain = None
    gain_frac = cfg.decay_bits
    if in_gain_f is not None:
        gmax = float(np.max(np.abs(in_gain_f), initial=0.0))
        gain_frac = int(math.floor(math.log2(((1 << 15) - 1) / gmax))) if gmax > 0 else 0
        in_gain = fq.fixed("in_gain", in_gain_f, gain_frac)
    params = plan.build(fq, S, a, k, in_gain, gain_frac, gain * const)
    rep.scale = dict(frac_bits=S, scale_exp=k, act_shift=a, in_frac_bits=S - a,
                     range_estimate=R / cfg.headroom)
    qn = QuantizedNeuron(name, _tname(node), plan.kind, params, S, k, S - a,
                         0 if plan.spiking else S, plan.spiking, shape)
    if plan.model.stock_name:
        rep.notes.extend(f"not stock {plan.model.stock_name}: {i}"
                         for i in params.lava_issues)
    layers[name] = qn
    report[name] = rep
    out_frac[name] = qn.out_frac
    in_max[name] = _output_bound(node, plan, R / cfg.headroom)


def _output_bound(node: nir.NIRNode, plan: QuantPlan, range_estimate: float) -> float:
    """The magnitude bound of a neuron's output for the layers it feeds: 1 for spikes, the
    count bound for event counts (an unbounded count: the state range over the smallest
    threshold-like magnitude the plan knows), the state range for graded outputs."""
    if not plan.spiking:
        return range_estimate
    spec = spec_of(node)
    bound = 1 if spec is None else spec.event_bound(node)
    if bound is None:
        return max(1.0, range_estimate / max(plan.theta_max, 2.0 ** -16))
    return float(bound)


def _quantize_threshold(graph: nir.NIRGraph, name: str, node: nir.Threshold,
                        chains: list[_Chain], shapes: dict[str, tuple[int, ...]],
                        out_frac: dict[str, int], in_max: dict[str, float],
                        layers: dict[str, Any], report: dict[str, LayerReport]) -> None:
    """An integer compare of the aligned sum of its inputs (see
    :class:`QuantizedThreshold`); it then emits spikes like a spiking neuron."""
    for ch in chains:
        if ch.weighted is not None:
            raise QuantizationError(
                f"threshold '{name}' is fed through weighted layer '{ch.weighted}'; in fixed "
                "point a Threshold compares the spikes or integers it receives without "
                "weights (as after a SumPool2d of spikes): put a neuron between them")
    facs = {_avg_factor(graph, c.nodes) for c in chains}
    if len(facs) > 1:
        raise QuantizationError(f"threshold '{name}': inputs average-pooled differently "
                                "cannot share one integer threshold")
    frac = max(out_frac[c.source] for c in chains)
    shape = shapes[name]
    try:
        theta = np.broadcast_to(np.asarray(node.threshold, dtype=np.float64), shape)
    except ValueError:
        raise QuantizationError(f"threshold '{name}': threshold of shape "
                                f"{np.shape(node.threshold)} does not fit its input {shape}"
                                ) from None
    # the integer pools sum: compare the sum with θ times the window of an average pool
    scaled = np.floor(theta / facs.pop() * 2.0 ** frac)
    if not np.all(np.abs(scaled) < 2.0 ** 62):
        raise QuantizationError(f"threshold '{name}': threshold up to "
                                f"{float(np.max(np.abs(theta))):g} does not fit 63-bit "
                                f"integers at {frac} fractional bits")
    layers[name] = QuantizedThreshold(name, scaled.astype(np.int64), frac, shape)
    report[name] = LayerReport(name, _tname(node), "threshold",
                               scale=dict(in_frac_bits=frac, frac_bits=0))
    out_frac[name] = 0
    in_max[name] = 1.0


def _graph_pred(ch: _Chain) -> str:
    """The node whose output feeds the chain's weighted layer (its source or last pre)."""
    return ch.pre[-1] if ch.pre else ch.source


def _quantize_output(graph: nir.NIRGraph, name: str, chains: list[_Chain], cfg: QuantConfig,
                     shapes: dict[str, tuple[int, ...]], out_frac: dict[str, int],
                     layers: dict[str, Any], report: dict[str, LayerReport]) -> None:
    rep = LayerReport(name, "Output", "output")
    const = np.zeros(shapes[name])
    plans: list[tuple[_Chain, np.ndarray, int]] = []
    fracs: list[int] = []
    caps: list[int] = []
    for ch in chains:
        q_src = out_frac[ch.source]
        if ch.weighted is None:
            if _avg_factor(graph, ch.nodes) != 1.0:
                raise QuantizationError(f"output '{name}': average pooling with no weights "
                                        "before it has no integer form here")
            fracs.append(q_src)
            continue
        w = np.asarray(graph.nodes[ch.weighted].weight, dtype=np.float64)
        w_eff = w * _avg_factor(graph, ch.nodes)
        P = _best_mant_frac(w_eff, cfg.weight_bits)
        plans.append((ch, w_eff, P))
        fracs.append(q_src + P)
        caps.append(q_src + P + _exp_range(graph.nodes[ch.weighted], cfg)[1])
        const = const + _run_float(graph, [ch.weighted, *ch.post],
                                   np.zeros(shapes[_graph_pred(ch)]))
    frac = min([max(fracs)] + caps)
    for ch, w_eff, P0 in plans:
        lo, hi = _exp_range(graph.nodes[ch.weighted], cfg)
        q_src = out_frac[ch.source]
        P = P0
        w_exp = frac - q_src - P
        if w_exp < lo:
            P, w_exp = frac - q_src - lo, lo
        layers[ch.weighted] = _make_synapse(graph, ch, name, w_eff, None, P, w_exp, q_src,
                                            frac, cfg, report)
    bias = None
    if np.any(const != 0):
        bias = fx.Rounder(name, rep.fields, 62).fixed("bias", const, frac)
    rep.scale = dict(frac_bits=frac)
    layers[name] = QuantizedOutput(name, frac, bias)
    report[name] = rep
