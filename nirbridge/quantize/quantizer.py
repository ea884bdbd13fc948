"""The quantizer: a float NIR graph → a :class:`QuantizedGraph` for a fixed-point target.

The layout rules are in the package docstring (:mod:`nirbridge.quantize`). Neurons are
planned by their registry entry (``NeuronSpec.quantize``): this module names none. The
chains (:mod:`nirbridge.quantize.chains`) and the synapses, Outputs and Thresholds
(:mod:`nirbridge.quantize.synapses`) are their own modules; the names they had here are
importable here as before.
"""

from __future__ import annotations

import math
from typing import Any

import nir
import numpy as np

from nirbridge import fixed_point as fx
from nirbridge.errors import GraphError, QuantizationError
from nirbridge.graph import (
    check_algebraic_loops,
    check_edge_names,
    delay_steps,
    execution_order,
    feedback_edges,
    flatten_subgraphs,
    predecessors,
    successors,
)
from nirbridge.neurons import QuantPlan, is_neuron, spec_of
from nirbridge.passes import graph_dt
from nirbridge.quantize.chains import (  # importable here as before
    DELAYS,
    PASSTHROUGH,
    SPIKE_STAGES,
    WEIGHTED,
    Chain,
    _tname,
    avg_factor,
    chain,
    check_finite,
    graph_pred,
    node_shapes,
    push_gain,
    run_float,
    scale_as_linear,
    without_bias,
)
from nirbridge.quantize.config import QuantConfig
from nirbridge.quantize.graph import (
    LayerReport,
    QuantizedGraph,
    QuantizedInput,
    QuantizedNeuron,
)
from nirbridge.quantize.synapses import (
    Choices,
    Formats,
    best_mant_frac,
    effective_choice,
    exp_range,
    make_synapse,
    quantize_output,
    quantize_threshold,
    travelling_bias,
)

#: How many times the range of a neuron fed back its own graded output is re-estimated.
SELF_RANGE_ITERATIONS = 12


def _plan(name: str, node: nir.NIRNode, dt: float, shape: tuple[int, ...],
          cfg: QuantConfig) -> QuantPlan:
    spec = spec_of(node)
    if spec is None or spec.quantize is None or spec.integer is None:
        raise QuantizationError(f"node '{name}' ({_tname(node)}) has no fixed-point model")
    return spec.quantize(name, node, dt, shape, cfg)


def _early_format(graph: nir.NIRGraph, sink: str, src: str) -> tuple[int, float]:
    """The format of a recurrent source quantized after its sink: known in advance for
    spikes (0 fractional bits, bounded by the events a step can emit), else refused."""
    node = graph.nodes[src]
    if isinstance(node, SPIKE_STAGES):
        return 0, 1.0
    spec = spec_of(node)
    bound = spec.event_bound(node) if spec is not None and spec.spiking else None
    if bound is None:
        what = "graded values" if spec is not None and not spec.spiking else "unbounded counts"
        raise QuantizationError(
            f"node '{sink}': its recurrent input from '{src}' ({_tname(node)}, {what}) "
            "comes from a node quantized after it, whose integer format is not known yet; "
            "fixed point takes a graded recurrent input only from the neuron itself")
    return 0, float(bound)


def quantize(graph: nir.NIRGraph, config: QuantConfig | None = None, *,
             dt: float | None = None, choices: Choices | None = None) -> QuantizedGraph:
    """Quantize ``graph`` for the fixed-point target described by ``config``.

    Nested subgraphs are flattened first (node ``sub.x``). Recurrent graphs: a weighted
    layer on a feedback edge (its source the neuron itself or a neuron after it) takes
    the format of the neuron it feeds, as any other; one whose bias reaches its neuron
    over the feedback edge or through a ``nir.Delay`` adds that bias itself (it first
    counts at t = 1, as in the reference); ``nir.Delay`` passes integers unchanged. A
    ``nir.Scale`` on a vector is the one-to-one weighted layer ``nir.Linear(diag)``.

    ``choices``: per weighted layer, how its mantissas are chosen
    (:class:`~nirbridge.quantize.synapses.WeightChoice`; what
    :func:`nirbridge.quantize.calibrate.calibrate` picks on calibration data); a layer
    not named, or whose weights are already exactly on the plain grid, gets the plain
    rule (the largest precision that fits, rounded to nearest).

    Returns a :class:`QuantizedGraph` (integer layers + per-layer report). Raises
    :class:`QuantizationError` naming the node and field for values that cannot be
    represented (NaN/inf, a threshold or bias overflowing the state, a node with no
    integer semantics) and :class:`GraphError` for structural problems (an algebraic loop
    named by its nodes).
    """
    cfg = config or QuantConfig()
    graph = flatten_subgraphs(graph)
    for name, node in graph.nodes.items():
        check_finite(name, node)
    check_edge_names(graph)
    check_algebraic_loops(graph)
    dt_ = graph_dt(graph, dt)
    order = execution_order(graph)
    preds, succs = predecessors(graph), successors(graph)
    feedback = feedback_edges(graph)
    fb = set(feedback)
    shapes = node_shapes(graph, order, preds, fb)
    graph, scaled = scale_as_linear(graph, shapes)
    types = dict.fromkeys(scaled, "Scale")

    layers: dict[str, Any] = {}
    report: dict[str, LayerReport] = {}
    out_frac: dict[str, int] = {}  # fractional bits of what a source emits
    in_max: dict[str, float] = {}  # its magnitude bound
    early: dict[str, tuple[int, float]] = {}  # formats used before their node was quantized
    sink = [""]

    def fmt(src: str) -> tuple[int, float]:
        if src in out_frac:
            return out_frac[src], in_max[src]
        early[src] = _early_format(graph, sink[0], src)
        return early[src]

    for name in order:
        node = graph.nodes[name]
        sink[0] = name
        if isinstance(node, nir.Input):
            layers[name] = QuantizedInput(name, cfg.input_frac_bits, cfg.input_bits)
            out_frac[name] = cfg.input_frac_bits
            in_max[name] = cfg.input_max
        elif isinstance(node, (nir.Output, *SPIKE_STAGES)) or is_neuron(node):
            chains = [chain(graph, name, p, preds, succs, fb) for p in preds[name]]
            if not chains:
                raise GraphError(f"node '{name}' has no incoming edge; connect it or remove it")
            if isinstance(node, nir.Output):
                quantize_output(graph, name, chains, cfg, shapes, fmt, layers, report, types,
                                choices)
            elif isinstance(node, SPIKE_STAGES):
                quantize_threshold(graph, name, node, chains, shapes, fmt, layers, report)
                out_frac[name], in_max[name] = 0, 1.0
            else:
                qn, bound = _quantize_neuron(graph, name, node, chains, cfg, dt_, shapes, fmt,
                                             layers, report, types, choices or {})
                out_frac[name], in_max[name] = qn.out_frac, bound
        elif isinstance(node, DELAYS):
            delay_steps(node, dt_, name)  # a whole number of steps, else named here
        elif not isinstance(node, (*WEIGHTED, *PASSTHROUGH)):
            raise QuantizationError(f"node '{name}' ({_tname(node)}) has no fixed-point "
                                    "semantics; supported: Input, Output, Affine, Linear, "
                                    "Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, Scale, "
                                    "Threshold, Delay and the neurons")
    for src, used in early.items():
        if (out_frac[src], in_max[src]) != used:  # pragma: no cover (spikes: always equal)
            raise QuantizationError(f"node '{src}': quantized as {out_frac[src]} fractional "
                                    f"bits, but its recurrent sinks assumed {used[0]}")
    for name, node in graph.nodes.items():
        if isinstance(node, WEIGHTED) and name not in layers:
            raise QuantizationError(f"weighted layer '{name}' reaches no neuron or output")
    return QuantizedGraph(graph, cfg, dt_, order, preds, layers, report, shapes, feedback)


def _quantize_neuron(graph: nir.NIRGraph, name: str, node: nir.NIRNode, chains: list[Chain],
                     cfg: QuantConfig, dt: float, shapes: dict[str, tuple[int, ...]],
                     fmt: Formats, layers: dict[str, Any], report: dict[str, LayerReport],
                     types: dict[str, str], choices: Choices
                     ) -> tuple[QuantizedNeuron, float]:
    """The neuron ``name`` and the weighted layers of its chains; returns it and the
    magnitude bound of its output."""
    shape = shapes[name]
    plan = _plan(name, node, dt, shape, cfg)
    F = cfg.frac_of(plan.key, name)
    rep = LayerReport(name, _tname(node), plan.kind)
    fq = fx.Rounder(name, rep.fields, cfg.state_bits)
    gain = plan.gain
    if not np.all(np.isfinite(gain)):
        raise QuantizationError(f"node '{name}': its input gain is not finite (check tau, r)")
    own = [ch.source == name for ch in chains]  # fed back its own output

    # constant drive (folded into the neuron, or travelling with its layer) and the
    # magnitude bound of the chains, in the neuron's input units: the chains from the
    # neuron itself per unit of its own bound (``unit``), the others whole (``known``)
    const = np.zeros(shape)
    travel = np.zeros(shape)
    known = np.zeros(shape)
    unit = np.zeros(shape)
    for i, ch in enumerate(chains):
        mag = 1.0 if own[i] else fmt(ch.source)[1]
        override = None
        if ch.weighted:
            wnode = graph.nodes[ch.weighted]
            c = run_float(graph, [ch.weighted, *ch.post], np.zeros(shapes[graph_pred(ch)]))
            if ch.travels:
                travel = travel + np.abs(c)
            else:
                const = const + c
            absw = without_bias(wnode, np.abs(np.asarray(wnode.weight, dtype=np.float64)))
            override = {ch.weighted: absw}
        term = run_float(graph, ch.nodes, np.full(shapes[ch.source], mag), override)
        if own[i]:
            unit = unit + term
        else:
            known = known + term

    # fold the gain into the weights where it commutes, else keep it in the neuron
    folded: dict[int, np.ndarray] = {}
    unit_gain = bool(np.all(gain == 1.0))
    no_w = [c for c in chains if c.weighted is None]
    avg_common = 1.0
    if no_w:
        facs = {avg_factor(graph, c.nodes) for c in no_w}
        if len(facs) > 1:
            raise QuantizationError(f"node '{name}': inputs average-pooled differently with no "
                                    "weights in between cannot share one input gain")
        avg_common = facs.pop()
    if not unit_gain and not no_w:
        for i, ch in enumerate(chains):
            rows = push_gain(graph, ch, gain, shapes)
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
    picked: dict[int, Any] = {}
    facs_w: dict[int, float] = {}
    for i, ch in enumerate(chains):
        if ch.weighted is None:
            continue
        w = np.asarray(graph.nodes[ch.weighted].weight, dtype=np.float64)
        facs_w[i] = avg_factor(graph, ch.nodes) / avg_common
        rows = folded.get(i, np.ones(w.shape[0]))
        w_effs[i] = w * facs_w[i] * rows.reshape(-1, *([1] * (w.ndim - 1)))
        picked[i] = effective_choice(w_effs[i], cfg, choices.get(ch.weighted))
        Ps[i] = best_mant_frac(w_effs[i], cfg.weight_bits) + (
            picked[i].extra_bits if picked[i] is not None else 0)

    # state range; a neuron fed back its own graded output (or unbounded counts) bounds
    # its input by its own range: re-estimated until the state format settles
    static = np.abs(plan.own_bias + gain * const) + np.abs(gain) * travel

    def range_of(m_self: float) -> float:
        bound = known + unit * m_self if any(own) else known
        xmax = float(np.max(np.abs(gain) * bound + static, initial=0.0))
        if plan.spiking:
            return cfg.headroom * (plan.theta_max + xmax)
        return cfg.headroom * (plan.theta_max + xmax / max(plan.leak, 1.0 / 16))

    def s_range(R: float) -> int:
        S = cfg.state_bits - 1 - (math.ceil(math.log2(R)) if R > 0 else 0)
        return min(S, 2 * cfg.state_bits)  # a degenerate (all-zero) layer

    m_self = _output_bound(node, plan, 0.0) if any(own) else 0.0
    R = range_of(m_self)
    if any(own):
        for _ in range(SELF_RANGE_ITERATIONS):
            m_next = _output_bound(node, plan, R / cfg.headroom)
            R_next = range_of(m_next)
            settled = s_range(R_next) == s_range(R)
            m_self, R = m_next, R_next
            if settled:
                break
        else:
            rep.notes.append("the range of its recurrent input does not settle (a loop gain "
                             "above one?): its state may saturate")

    def q_of(i: int, S: int) -> int:
        """Fractional bits of chain ``i``'s source (the neuron's own: ``S`` if graded)."""
        return (0 if plan.spiking else S) if own[i] else fmt(chains[i].source)[0]

    S_range = s_range(R)
    if plan.homogeneous:
        S = S_range
        if plan.model.input_shift_is_frac:
            for i, ch in enumerate(chains):
                if ch.weighted is not None and not (own[i] and not plan.spiking):
                    hi = exp_range(graph.nodes[ch.weighted], cfg)[1]
                    S = min(S, F + q_of(i, S) + Ps[i] + hi)
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
                hi = exp_range(graph.nodes[ch.weighted], cfg)[1]
                a = max(a, S - q_of(i, S) - Ps[i] - hi)
    if k < 0:
        rep.notes.append(f"range forces {S} fractional bits, fewer than the {F} asked for")

    # synapses
    for i, ch in enumerate(chains):
        if ch.weighted is None:
            continue
        lo, hi = exp_range(graph.nodes[ch.weighted], cfg)
        q_src = q_of(i, S)
        P = Ps[i]
        w_exp = S - a - q_src - P
        if w_exp < lo:
            P, w_exp = S - a - q_src - lo, lo
        if w_exp > hi:  # only when the exponent range is pinned (Conv with Lava)
            raise QuantizationError(f"weighted layer '{ch.weighted}': needs exponent {w_exp} "
                                    f"outside [{lo}, {hi}] to feed '{name}'")
        bias = travelling_bias(graph, ch, facs_w[i], folded.get(i), shapes)
        layers[ch.weighted] = make_synapse(graph, ch, name, w_effs[i], folded.get(i), P,
                                           w_exp, q_src, S - a, cfg, report, bias,
                                           types.get(ch.weighted), picked[i])
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
    if any(own) or any(ch.feedback for ch in chains):
        rep.notes.append("recurrent: takes the previous step's values over its feedback "
                         "edges")
    qn = QuantizedNeuron(name, _tname(node), plan.kind, params, S, k, S - a,
                         0 if plan.spiking else S, plan.spiking, shape)
    if plan.model.stock_name:
        rep.notes.extend(f"not stock {plan.model.stock_name}: {i}"
                         for i in params.lava_issues)
    layers[name] = qn
    report[name] = rep
    return qn, _output_bound(node, plan, R / cfg.headroom)


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

__all__ = ["DELAYS", "PASSTHROUGH", "SELF_RANGE_ITERATIONS", "SPIKE_STAGES", "WEIGHTED",
           "quantize", "without_bias"]
