"""The integer executor of a quantized graph: the golden model of Lava ``fixed_pt``.

Pure numpy integer arithmetic, every integer state recorded; neurons step with their
registered integer model (:attr:`QuantizedNeuron.model`). Recurrent graphs run as the
reference runs them (cyclic components step by step, feedback edges carrying the
previous step, zero at t = 0); ``nir.Delay`` shifts the integers by its steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from nirbridge import fixed_point as fx
from nirbridge.errors import GraphError, InputError, QuantizationError
from nirbridge.geometry import pool_geometry_of
from nirbridge.graph import delay_steps, feedback_edges, schedule
from nirbridge.quantize.chains import _tname
from nirbridge.quantize.graph import (
    QuantizedGraph,
    QuantizedInput,
    QuantizedNeuron,
    QuantizedOutput,
    QuantizedSynapse,
    QuantizedThreshold,
)


@dataclass
class FixedPointRecord:
    """What the integer run saw at one node: integer input (``a_in`` for a neuron),
    output and states (``[T, B, ...]`` int64), their fractional bits, and how many
    elements saturated (per field, over the whole run)."""

    input: np.ndarray | None = None
    output: np.ndarray | None = None
    states: dict[str, np.ndarray] = field(default_factory=dict)
    frac_bits: dict[str, int] = field(default_factory=dict)
    saturations: dict[str, int] = field(default_factory=dict)

    @property
    def n_saturations(self) -> int:
        """All saturation events at this node."""
        return sum(self.saturations.values())

    def real(self, what: str = "output") -> np.ndarray | None:
        """A recorded integer array (``input``, ``output`` or a state) in real units."""
        arr = getattr(self, what) if what in ("input", "output") else self.states.get(what)
        if arr is None:
            return None
        return arr.astype(np.float64) * 2.0 ** -self.frac_bits.get(what, 0)


def _align(x: np.ndarray, frm: int, to: int) -> np.ndarray:
    return x << (to - frm) if to >= frm else fx.shift_round(x, frm - to)


def _matmul_exact(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` for int64 operands, exactly (via float64 when the sums fit 2^53)."""
    k = w.shape[0]
    bound = float(np.max(np.abs(x), initial=0)) * float(np.max(np.abs(w), initial=0)) * k
    if bound < 2.0 ** 52:
        return np.rint(x.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    return np.matmul(x, w)


def _int_conv(x: np.ndarray, syn: QuantizedSynapse) -> np.ndarray:
    """Integer convolution (cross-correlation, like torch) of ``x`` [N, C, *spatial]."""
    w = syn.mant
    nd = w.ndim - 2
    pad = [(0, 0), (0, 0)] + [(p, p) for p in syn.padding]
    xp = np.pad(x, pad)
    ks = w.shape[2:]
    ext = tuple(d * (k - 1) + 1 for d, k in zip(syn.dilation, ks, strict=True))
    win = np.lib.stride_tricks.sliding_window_view(xp, ext, axis=tuple(range(2, 2 + nd)))
    sl = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in syn.stride) + \
        tuple(slice(None, None, d) for d in syn.dilation)
    win = win[sl]  # [N, C, *out, *k]
    n, c = win.shape[:2]
    out_sp = win.shape[2:2 + nd]
    g = syn.groups
    cg, og = c // g, w.shape[0] // g
    outs = []
    for gi in range(g):
        wg = win[:, gi * cg:(gi + 1) * cg]  # [N, cg, *out, *k]
        wg = np.moveaxis(wg, 1, 1 + nd)  # [N, *out, cg, *k]
        cols = wg.reshape(n, *out_sp, -1)
        kern = w[gi * og:(gi + 1) * og].reshape(og, -1).T  # [cg·k, og]
        y = _matmul_exact(cols.reshape(-1, cols.shape[-1]), kern)
        outs.append(np.moveaxis(y.reshape(n, *out_sp, og), -1, 1))
    return np.concatenate(outs, axis=1)


def _int_sumpool(x: np.ndarray, node: nir.NIRNode) -> np.ndarray:
    k, s, p = pool_geometry_of(node)
    xp = np.pad(x, [(0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])])
    win = np.lib.stride_tricks.sliding_window_view(xp, k, axis=(2, 3))
    return win[:, :, ::s[0], ::s[1]].sum(axis=(-2, -1))


def _apply_int(node: nir.NIRNode, layer: Any, x: np.ndarray) -> np.ndarray:
    """A stateless node on integers ``[T, B, ...]``."""
    t, b = x.shape[:2]
    if isinstance(layer, QuantizedSynapse):
        if isinstance(node, (nir.Affine, nir.Linear)):
            y = _matmul_exact(x.reshape(t * b, -1), layer.mant.T).reshape(t, b, -1)
        else:
            y = _int_conv(x.reshape(t * b, *x.shape[2:]), layer)
            y = y.reshape(t, b, *y.shape[1:])
        y = fx.shift_floor(y, layer.w_exp)
        return y if layer.bias is None else y + layer.bias
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        y = _int_sumpool(x.reshape(t * b, *x.shape[2:]), node)
        return y.reshape(t, b, *y.shape[1:])
    if isinstance(node, nir.Flatten):
        ndim = x.ndim - 2
        start = int(node.start_dim) % ndim + 2
        end = int(node.end_dim) % ndim + 2
        return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:])
    raise QuantizationError(f"node type {_tname(node)} has no integer semantics")


def quantize_input(x: Any, layer: QuantizedInput,
                   sat: fx.SaturationCounter | None = None) -> np.ndarray:
    """Real-valued input ``[T, B, ...]`` → integers with ``layer.frac_bits`` fractional bits
    (round half up), saturated to ``layer.bits``."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"input for node '{layer.name}' contains NaN or inf")
    q = np.floor(arr * 2.0 ** layer.frac_bits + 0.5)
    # clipped in float first: a float beyond int64 has no defined int64 conversion, and one
    # past the saturation limit is counted the same either way
    lim = fx.sat_limit(layer.bits) + 1
    q = np.clip(q, -lim, lim).astype(np.int64)
    return fx.saturate(q, layer.bits, sat, "input")


def _delay_int(x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``y[t] = x[t - d]`` (zero for ``t < d``) over a whole ``[T, B, ...]`` integer array,
    one delay per element (``steps`` broadcasts to the per-sample shape)."""
    y = np.zeros_like(x)
    n = x.shape[0]
    steps = np.broadcast_to(steps, x.shape[2:])
    for d in np.unique(steps):
        d = int(d)
        if d < n:
            y[d:] = np.where(steps == d, x[:n - d], y[d:])
    return y


class _Run:
    """One run of a quantized graph: the values ``(integers [T, B, ...], frac)`` of every
    node run so far, the records, and how each node is evaluated over the whole time axis
    (:meth:`batched`) or one step at a time inside a cyclic component (:meth:`cyclic`)."""

    def __init__(self, qgraph: QuantizedGraph, want: set[str]) -> None:
        self.q = qgraph
        self.g = qgraph.graph
        self.want = want
        self.values: dict[str, tuple[np.ndarray, int]] = {}
        self.records: dict[str, FixedPointRecord] = {}
        self.feedback = set(feedback_edges(self.g))
        self.delays = {n: delay_steps(v, qgraph.dt, n) for n, v in self.g.nodes.items()
                       if isinstance(v, nir.Delay)}
        self._fracs: dict[str, int] = {}

    def frac(self, name: str) -> int:
        """Fractional bits of what ``name`` emits (a stateless node: its input's)."""
        if name not in self._fracs:
            layer = self.q.layers.get(name)
            if isinstance(layer, QuantizedInput | QuantizedOutput):
                f = layer.frac_bits
            elif isinstance(layer, QuantizedNeuron | QuantizedThreshold | QuantizedSynapse):
                f = layer.out_frac
            else:
                (pred,) = self.q.preds[name]
                f = self.frac(pred)
            self._fracs[name] = f
        return self._fracs[name]

    def sum_frac(self, name: str) -> int:
        """The fractional bits the inputs of ``name`` are summed at."""
        layer = self.q.layers.get(name)
        if isinstance(layer, QuantizedNeuron | QuantizedThreshold):
            return layer.in_frac
        if isinstance(layer, QuantizedOutput):
            return layer.frac_bits
        (pred,) = self.q.preds[name]
        return self.frac(pred)

    def record(self, name: str, rec: FixedPointRecord, sat: fx.SaturationCounter) -> None:
        rec.saturations = dict(sat.counts)
        self.records[name] = rec

    # ------------------------------------------------------------- the whole time axis
    def batched(self, name: str, inputs: Mapping[str, Any]) -> None:
        node = self.g.nodes[name]
        layer = self.q.layers.get(name)
        rec = FixedPointRecord() if name in self.want else None
        sat = fx.SaturationCounter()
        if isinstance(layer, QuantizedInput):
            if name not in inputs:
                raise InputError(f"no input given for Input node '{name}'")
            x = quantize_input(inputs[name], layer, sat)
            if x.ndim < 3:
                raise InputError(f"input for node '{name}' has shape {x.shape}; expected "
                                 "[T, B, ...] with time first, then batch")
            want_shape = self.q.shapes[name]
            if tuple(x.shape[2:]) != want_shape:
                raise InputError(f"input for node '{name}' has per-step shape "
                                 f"{tuple(x.shape[2:])}; the graph expects {want_shape}")
            self.values[name] = (x, layer.frac_bits)
            if rec is not None:
                rec.output, rec.frac_bits = x, {"output": layer.frac_bits}
        elif isinstance(layer, QuantizedNeuron):
            a_in = _sum_inputs(name, self.q, self.values, layer.in_frac)
            y, states = _run_neuron(layer, a_in, sat)
            self.values[name] = (y, layer.out_frac)
            if rec is not None:
                rec.input, rec.output, rec.states = a_in, y, states
                rec.frac_bits = {"input": layer.in_frac, "output": layer.out_frac,
                                 **{f: layer.params.state_frac(f) for f in states}}
        elif isinstance(layer, QuantizedThreshold):
            x = _sum_inputs(name, self.q, self.values, layer.in_frac)
            y = (x > layer.threshold).astype(np.int64)
            self.values[name] = (y, layer.out_frac)
            if rec is not None:
                rec.input, rec.output = x, y
                rec.frac_bits = {"input": layer.in_frac, "output": layer.out_frac}
        elif isinstance(layer, QuantizedOutput):
            x = _sum_inputs(name, self.q, self.values, layer.frac_bits)
            if layer.bias is not None:
                x = x + layer.bias
            self.values[name] = (x, layer.frac_bits)
            if rec is not None:
                rec.input = rec.output = x
                rec.frac_bits = {"input": layer.frac_bits, "output": layer.frac_bits}
        else:
            (x, frac), = [self.values[p] for p in self.q.preds[name]]
            if isinstance(node, nir.Delay):
                y, frac_out = _delay_int(x, self.delays[name]), frac
            elif isinstance(layer, QuantizedSynapse):
                y, frac_out = _apply_int(node, layer, x), layer.out_frac
            else:
                y, frac_out = _apply_int(node, None, x), frac
            self.values[name] = (y, frac_out)
            if rec is not None:
                rec.input, rec.output = x, y
                rec.frac_bits = {"input": frac, "output": frac_out}
        if rec is not None:
            self.record(name, rec, sat)

    # ------------------------------------------------------------- step by step
    def cyclic(self, nodes: tuple[str, ...], steps: int, batch: int) -> None:
        """A strongly connected component with a cycle, step by step: each node from this
        step's values of its sources, except over a feedback edge (the previous step's;
        zero at t = 0)."""
        members = set(nodes)
        sats = {n: fx.SaturationCounter() for n in nodes}
        steppers = {n: self._stepper(n, batch, sats[n]) for n in nodes}
        outs: dict[str, list[np.ndarray]] = {n: [] for n in nodes}
        ins: dict[str, list[np.ndarray]] = {n: [] for n in nodes}
        traces: dict[str, dict[str, list[np.ndarray]]] = {n: {} for n in nodes}
        for t in range(steps):
            for n in nodes:
                to = self.sum_frac(n)
                x = None
                for p in self.q.preds[n]:
                    if (p, n) in self.feedback:
                        v = outs[p][t - 1] if t > 0 else np.zeros_like(self._zero(p, batch))
                    elif p in members:
                        v = outs[p][t]
                    else:
                        v = self.values[p][0][t]
                    v = _align(v, self.frac(p), to)
                    if x is not None and x.shape != v.shape:
                        raise GraphError(f"node '{n}' sums inputs of shapes {tuple(x.shape)} "
                                         f"and {tuple(v.shape)} ('{p}')")
                    x = v if x is None else x + v
                assert x is not None
                y, state = steppers[n](x, t)
                ins[n].append(x)
                outs[n].append(y)
                for f, v in (state or {}).items():
                    traces[n].setdefault(f, []).append(v)
        for n in nodes:
            y = np.stack(outs[n])
            self.values[n] = (y, self.frac(n))
            if n in self.want:
                layer = self.q.layers.get(n)
                x = np.stack(ins[n])
                rec = FixedPointRecord(input=x, output=y,
                                       states={f: np.stack(v) for f, v in traces[n].items()})
                rec.frac_bits = {"input": self.sum_frac(n), "output": self.frac(n)}
                if isinstance(layer, QuantizedNeuron):
                    rec.frac_bits.update({f: layer.params.state_frac(f) for f in rec.states})
                self.record(n, rec, sats[n])

    def _zero(self, name: str, batch: int) -> np.ndarray:
        return np.zeros((batch, *self.q.shapes[name]), dtype=np.int64)

    def _stepper(self, name: str, batch: int, sat: fx.SaturationCounter):
        """``step(x_t, t) -> (y_t, states or None)`` of one node in a cyclic component:
        the operations of :meth:`batched`, one step at a time."""
        node = self.g.nodes[name]
        layer = self.q.layers.get(name)
        if isinstance(layer, QuantizedNeuron):
            model, params = layer.model, layer.params
            held = [params.initial_state(batch, tuple(layer.shape))]

            def neuron(x: np.ndarray, t: int):
                y, held[0] = model.step(x, held[0], params, sat)
                return y, {f: getattr(held[0], f) for f in type(held[0])._fields}

            return neuron
        if isinstance(layer, QuantizedThreshold):
            return lambda x, t: ((x > layer.threshold).astype(np.int64), None)
        if isinstance(layer, QuantizedOutput):
            return lambda x, t: (x if layer.bias is None else x + layer.bias, None)
        if isinstance(node, nir.Delay):
            steps = self.delays[name]
            history: list[np.ndarray] = []

            def delay(x: np.ndarray, t: int):
                history.append(x)
                d = np.broadcast_to(steps, x.shape[1:])
                y = np.zeros_like(x)
                for k in np.unique(d):
                    if t >= int(k):
                        y = np.where(d == k, history[t - int(k)], y)
                return y, None

            return delay
        syn = layer if isinstance(layer, QuantizedSynapse) else None
        return lambda x, t: (_apply_int(node, syn, x[None])[0], None)


def run_fixed_point(qgraph: QuantizedGraph, inputs: Any, *,
                    record: bool | Iterable[str] = True
                    ) -> tuple[Any, dict[str, FixedPointRecord]]:
    """Run a quantized graph in integer arithmetic on ``inputs`` ``[T, B, ...]``.

    ``inputs``: array/tensor (one Input node) or dict by Input name; real values are
    rounded to the input format (``input_frac_bits``). Returns ``(outputs, records)``:
    outputs as float64 numpy arrays in real units (spikes are 0/1; one Output node gives
    an array, several a dict), and a :class:`FixedPointRecord` per recorded node with
    every integer state per step and the saturation counts.

    Recurrent graphs run as the reference runs them: each strongly connected component
    with a cycle step by step, a feedback edge carrying the previous step's integers of
    its source (zero at t = 0), everything else over the whole time axis.
    """
    g = qgraph.graph
    if not isinstance(inputs, dict):
        if len(qgraph.inputs) != 1:
            raise InputError(f"graph has inputs {qgraph.inputs}; pass a dict by name")
        inputs = {qgraph.inputs[0]: inputs}
    run = _Run(qgraph, set(g.nodes) if record is True else set(record or ()))
    for unit in schedule(g):
        if not unit.cyclic:
            run.batched(unit.nodes[0], inputs)
            continue
        outside = [run.values[p][0] for n in unit.nodes for p in qgraph.preds[n]
                   if p not in unit.nodes]
        ref = outside[0] if outside else run.values[qgraph.inputs[0]][0]
        run.cyclic(unit.nodes, ref.shape[0], ref.shape[1])
    values = run.values
    outs = {n: values[n][0].astype(np.float64) * 2.0 ** -values[n][1] for n in qgraph.outputs}
    out: Any = outs[qgraph.outputs[0]] if len(outs) == 1 else outs
    return out, run.records


def _sum_inputs(name: str, qgraph: QuantizedGraph, values: dict[str, tuple[np.ndarray, int]],
                frac: int) -> np.ndarray:
    total = None
    for p in qgraph.preds[name]:
        x, f = values[p]
        x = _align(x, f, frac)
        if total is not None and total.shape != x.shape:
            raise GraphError(f"node '{name}' sums inputs of shapes {tuple(total.shape)} and "
                             f"{tuple(x.shape)} ('{p}')")
        total = x if total is None else total + x
    assert total is not None
    return total


def _run_neuron(layer: QuantizedNeuron, a_in: np.ndarray, sat: fx.SaturationCounter
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    model = layer.model
    state = layer.params.initial_state(a_in.shape[1], tuple(a_in.shape[2:]))
    outs = []
    trace: dict[str, list[np.ndarray]] = {f: [] for f in type(state)._fields}
    for xt in a_in:
        y, state = model.step(xt, state, layer.params, sat)
        outs.append(y)
        for f in trace:
            trace[f].append(getattr(state, f))
    return np.stack(outs), {f: np.stack(v) for f, v in trace.items()}


def saturation_counts(records: Mapping[str, FixedPointRecord]) -> dict[str, int]:
    """Total saturations per node (nodes with none are left out)."""
    return {n: r.n_saturations for n, r in records.items() if r.n_saturations}
