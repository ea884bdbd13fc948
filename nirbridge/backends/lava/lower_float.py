"""floating_pt lowering of a NIR graph to Lava, node by node.

All Lava ports are flat (1-D), in C order of the NIR node's per-sample shape, so a
``Flatten`` is a relabelling and costs nothing.

- ``Input`` → ``RingBuffer`` (Lava's source) holding the samples back to back.
- ``Affine``/``Linear`` → ``Dense`` with the weight matrix; ``Conv1d``/``Conv2d`` →
  ``Dense`` (or ``Sparse``) with the unrolled convolution matrix (:func:`.linear_map`).
  ``sparse="auto"`` picks ``Sparse`` for large maps. ``num_message_bits`` is 0 when the
  input carries spikes, 24 when graded.
- ``SumPool2d``/``AvgPool2d`` → ``Dense``/``Sparse`` with a 0/1 window matrix followed
  by a zero-delay ``PassThrough`` dividing by the window size (and, for SumPool,
  multiplying back), which is exactly what the reference computes (``avg_pool2d``, times
  the window for SumPool).
- The bias of an Affine/Conv is not a synapse: it stays *pending* on the stream and is
  added where the reference adds it, by the consumer: a neuron's ``bias``
  (``x = a_in + bias`` before the neuron's equations), a monitor's ``bias``, or a
  ``PassThrough`` when another synapse follows (``Affine → Affine``: the intermediate
  value is materialised, not composed into one matrix, so the arithmetic is the
  reference's).
- ``Scale`` → ``PassThrough`` (multiply); ``Threshold`` → ``PassThrough`` comparing
  ``x > θ`` (its output is spikes, as the reference's; a max pooling of spikes is a
  SumPool2d followed by a Threshold, spike-exact). Several edges into one node sum (Lava
  in-ports add all their connections; an ``Output``/``Flatten`` with several inputs gets a
  summing ``PassThrough``).
- ``Delay`` → a delay line of its steps per element (at most 62,
  :data:`~nirbridge.backends.lava.network.MAX_DELAY_STEPS`), zero at the first steps of
  every sample as in the reference; a pending bias is added before it.
- Recurrent graphs: feedback edges are connected after every node is lowered, through a
  gate that sends zero at each sample's first step and adds the feedback stream's
  pending bias (a recurrent Affine's bias first counts at t = 1, as in the reference);
  the latencies are planned so that each loop's Lava delay equals its NIR delay
  (:class:`~nirbridge.backends.lava.network.Lowerer`).
- Neurons → the one generic Process (:mod:`nirbridge.backends.lava.procs.neurons`) running
  the neuron's own torch step from its registry entry (:data:`nirbridge.neurons.NEURONS`):
  the reference's operations, in the same order, in float64.

Exactness: spikes equal the reference's. Synaptic sums are computed by numpy/BLAS rather
than torch, and numpy's ``tanh``/``exp`` may differ from torch's in the last bit, so
graded values and states agree to rounding (~1e-15 relative); a spike could only differ
if a membrane were within that rounding of its threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from nirbridge.backends.lava.linear import LINEAR_NODES, linear_map, output_shape, wants_sparse
from nirbridge.backends.lava.network import (
    DELAY,
    DENSE,
    FLOAT_NEURON,
    PASS,
    SOURCE,
    SPARSE,
    Lowerer,
    NeuronContext,
    NeuronLowering,
    ProcSpec,
    Stream,
    check_same_shapes,
    delay_of,
)
from nirbridge.errors import (
    GraphError,
    InvalidParameterError,
    LoweringError,
    ShapeMismatchError,
)
from nirbridge.neurons import NEURONS, is_neuron, spec_of
from nirbridge.neurons._base import compare_of, numeric_fields


# ----------------------------------------------------------------- neuron lowerings
def check_neuron_params(name: str, node: nir.NIRNode, shape: tuple[int, ...]) -> None:
    """Every numeric parameter of a neuron node finite and of the neuron's shape, else an
    error naming the node and the parameter."""
    for f, value in numeric_fields(node):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(f"node '{name}': parameter '{f}' = {value!r} "
                                        "is not numeric") from exc
        if not np.all(np.isfinite(arr)):
            raise InvalidParameterError(f"node '{name}': parameter '{f}' contains NaN or "
                                        "inf")
        try:
            np.broadcast_to(arr, shape)
        except ValueError:
            raise ShapeMismatchError(f"node '{name}': parameter '{f}' of shape {arr.shape} "
                                     f"does not fit the neuron shape {shape}") from None
    check_compare_of(name, node)


def check_compare_of(name: str, node: nir.NIRNode) -> str:
    """The node's firing convention, or an error naming the node."""
    cmp = compare_of(node)
    if cmp not in (">", ">="):
        raise InvalidParameterError(f"node '{name}': compare={cmp!r}; use '>' or '>='")
    return cmp


def lower_float_neuron(node: nir.NIRNode, ctx: NeuronContext) -> NeuronLowering:
    """Any registered neuron in floating_pt: the generic Process running its torch step."""
    spec = spec_of(node)
    if spec is None:
        raise LoweringError(f"node '{ctx.name}': {type(node).__name__} is not a registered "
                            "neuron")
    check_neuron_params(ctx.name, node, ctx.shape)
    return NeuronLowering(FLOAT_NEURON, dict(neuron=spec.name, node=node, dt=ctx.dt,
                                             node_shape=tuple(ctx.shape)),
                          graded=not spec.binary(node))  # counts travel as graded values


# ----------------------------------------------------------------------- lowering
@dataclass
class _Merged:
    keys: list[str]
    latency: int
    shape: tuple[int, ...]
    bias: np.ndarray | None
    graded: bool


class FloatLowerer(Lowerer):
    """Lowers a graph for floating_pt (see the module docstring)."""

    def __init__(self, graph: nir.NIRGraph, dt: float, sparse: bool | str) -> None:
        super().__init__(graph, "floating_pt", dt, sparse)

    def steps(self, name: str, node: nir.NIRNode) -> int:
        """A Dense/Sparse adds one step; nothing else does."""
        return 1 if isinstance(node, LINEAR_NODES) else 0

    def merge(self, name: str) -> _Merged:
        """The inputs of ``name`` over edges of this step, aligned with delay lines to its
        planned latency (its feedback inputs are connected later)."""
        preds = self.ff_preds[name]
        if not preds:
            raise GraphError(f"node '{name}' has no incoming edge; connect it or remove it")
        streams = [self.streams[p] for p in preds]
        check_same_shapes(name, preds, streams)
        latency = self.lat_in[name]
        keys = [self.delayed(name, p, s, latency) for p, s in zip(preds, streams, strict=True)]
        biases = [s.bias for s in streams if s.bias is not None]
        bias = None
        if biases:
            bias = biases[0].copy()
            for b in biases[1:]:
                bias = bias + b
        self.in_shape[name] = streams[0].shape
        return _Merged(keys, latency, streams[0].shape, bias,
                       any(s.graded for s in streams) or self.inputs_of(name) > 1)

    def materialize(self, name: str, m: _Merged, ops: Iterable[tuple[str, Any]] = (),
                    suffix: str = "sum") -> str:
        """A PassThrough summing ``m``'s inputs (and the feedback inputs of ``name``),
        adding its bias, then applying ``ops``."""
        size = int(np.prod(m.shape, dtype=np.int64))
        all_ops = ([("add", m.bias)] if m.bias is not None else []) + list(ops)
        key = self.add(ProcSpec(f"{name}/{suffix}", PASS,
                                dict(shape=(size,), ops=tuple(all_ops)), size,
                                latency=m.latency, probe=True))
        for k in m.keys:
            self.connect(k, key)
        if self.fb_preds[name]:
            self.fb_target[name] = key
        return key

    def _lower_node(self, name: str, node: nir.NIRNode) -> None:
        if isinstance(node, nir.Input):
            types = node.output_type or node.input_type
            shape = tuple(int(d) for d in np.asarray(next(iter(types.values()))).ravel())
            size = int(np.prod(shape, dtype=np.int64))
            self.add(ProcSpec(name, SOURCE, {}, size, node=name, role="source", in_port=None))
            self.streams[name] = Stream(name, 0, shape, None, True)
            return
        if isinstance(node, (nir.Output, nir.Flatten)):
            m = self.merge(name)
            shape = m.shape if isinstance(node, nir.Output) else output_shape(node, m.shape)
            if len(m.keys) == 1 and not self.fb_preds[name]:
                self.streams[name] = Stream(m.keys[0], m.latency, shape, m.bias, m.graded)
            else:
                key = self.materialize(name, m)
                self.streams[name] = Stream(key, m.latency, shape, None, True)
            return
        if isinstance(node, LINEAR_NODES):
            self._lower_linear(name, node)
            return
        if isinstance(node, nir.Scale):
            m = self.merge(name)
            scale = np.broadcast_to(np.asarray(node.scale, float), m.shape).ravel().copy()
            key = self.materialize(name, m, ops=[("mul", scale)], suffix="scale")
            self.streams[name] = Stream(key, m.latency, m.shape, None, True)
            return
        if isinstance(node, nir.Threshold):
            m = self.merge(name)
            theta = np.broadcast_to(np.asarray(node.threshold, float), m.shape).ravel().copy()
            key = self.materialize(name, m, ops=[("gt", theta)], suffix="threshold")
            self.streams[name] = Stream(key, m.latency, m.shape, None, False)
            return
        if isinstance(node, nir.Delay):
            self._lower_delay(name, node)
            return
        if is_neuron(node):
            self._lower_neuron(name, node)
            return
        raise LoweringError(
            f"node '{name}' of type {type(node).__name__} cannot be lowered to Lava; "
            "supported: Input, Output, Affine, Linear, Conv1d, Conv2d, SumPool2d, "
            "AvgPool2d, Flatten, Scale, Threshold, Delay and the registered neurons "
            f"{sorted(NEURONS)}")

    def _lower_delay(self, name: str, node: nir.Delay) -> None:
        """A delay line of the node's steps per element, at its input's latency; a
        pending bias is added before it (the reference delays it too)."""
        m = self.merge(name)
        steps = delay_of(name, node, self.dt, m.shape)
        keys = m.keys
        if m.bias is not None:
            keys = [self.materialize(name, m, suffix="bias")]
        size = steps.size
        key = self.add(ProcSpec(name, DELAY, dict(shape=(size,), delay=steps), size, node=name,
                                latency=m.latency, stateful=True))
        for k in keys:
            self.connect(k, key)
        if self.fb_preds[name] and name not in self.fb_target:
            self.fb_target[name] = key
        self.streams[name] = Stream(key, m.latency, m.shape, None, m.graded or m.bias is not None)

    def _lower_linear(self, name: str, node: nir.NIRNode) -> None:
        m = self.merge(name)
        lin = linear_map(node, m.shape)
        keys, graded = m.keys, m.graded
        if m.bias is not None:
            keys, graded = [self.materialize(name, m, suffix="bias")], True
        if self.fb_preds[name] and name not in self.fb_target:
            self.fb_target[name] = name  # the Dense's in-port sums them
        n_out, n_in = lin.matrix.shape
        sparse = wants_sparse(self.sparse, n_out, n_in)
        if hasattr(lin.matrix, "tocsr"):
            weights = lin.matrix.tocsr() if sparse else lin.matrix.toarray()
        else:
            weights = lin.matrix
            if sparse and not isinstance(node, (nir.Affine, nir.Linear)):
                from scipy.sparse import csr_matrix

                weights = csr_matrix(weights)
        is_sparse = hasattr(weights, "tocsr")
        key = self.add(ProcSpec(
            name, SPARSE if is_sparse else DENSE,
            dict(weights=weights, num_message_bits=24 if graded else 0), n_out, node=name,
            role="synapse", in_port="s_in", out_port="a_out", latency=m.latency + 1))
        for k in keys:
            self.connect(k, key)
        out = key
        if lin.post_ops:
            out = self.add(ProcSpec(f"{name}/post", PASS, dict(shape=(n_out,), ops=lin.post_ops),
                                    n_out, latency=m.latency + 1, probe=True))
            self.connect(key, out)
        self.streams[name] = Stream(out, m.latency + 1, lin.out_shape, lin.bias, True)

    def _lower_neuron(self, name: str, node: nir.NIRNode) -> None:
        m = self.merge(name)
        ctx = NeuronContext(name, m.shape, self.dt, self.mode)
        low = lower_float_neuron(node, ctx)
        kwargs = dict(shape=(ctx.size,), **low.params)
        if m.bias is not None:
            kwargs["bias"] = m.bias
        self.add(ProcSpec(name, low.process, kwargs, ctx.size, node=name, role="neuron",
                          latency=m.latency, stateful=low.stateful, probe=low.probe))
        for k in m.keys:
            self.connect(k, name)
        if self.fb_preds[name]:
            self.fb_target[name] = name  # the neuron's in-port sums them
        self.streams[name] = Stream(name, m.latency, m.shape, None, low.graded)


__all__ = ["FloatLowerer", "check_compare_of", "check_neuron_params", "lower_float_neuron"]
