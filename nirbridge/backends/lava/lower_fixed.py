"""Fixed-point (``fixed_pt``) lowering of a NIR graph to Lava, from its quantized form.

:func:`nirbridge.backends.lava.lower` calls :func:`lower_fixed` for ``mode="fixed_pt"``.
The graph is quantized once (:func:`nirbridge.quantize.quantize`, the ``loihi2`` profile
by default), and every Lava process is built from that :class:`QuantizedGraph`, so that a
Lava run computes the integers of :func:`nirbridge.quantize.run_fixed_point` (the golden
model), step for step, after the latency alignment of
:mod:`nirbridge.backends.lava.network`.

Node by node
------------
- ``Input`` → ``RingBuffer`` (fixed_pt model, int32) holding the inputs quantized as the
  golden run does (:func:`~nirbridge.quantize.quantize_input`: ``input_frac_bits``,
  saturated to ``input_bits``). Its stream is graded (``num_message_bits = 24`` on the
  synapse it feeds), so integer inputs other than 0/1 arrive whole.
- ``Affine``/``Linear``/``Conv1d``/``Conv2d`` → Lava ``Dense`` (``Sparse`` for large maps,
  as in floating_pt) whose matrix is the layer's integer mantissas (convolutions unrolled
  by applying the reference's own layer, with the mantissas as weights, to unit vectors:
  exact integers, PyTorch layout). The golden synapse is ``shift_floor(mant ⊛ x, w_exp)``;
  Lava's bit-accurate Dense clips weights to 8 bits and, for mixed-sign matrices, drops
  their LSB, so a mixed-sign layer gets ``2·mant`` with ``weight_exp = w_exp − 1`` and a
  single-sign layer ``mant`` with ``weight_exp = w_exp`` (Lava keeps 8 magnitude bits
  there): both give exactly the golden ``a_in``. The bias is not a synapse: the quantizer
  moved it into the neuron (or the Output) it feeds.
- ``SumPool2d``/``AvgPool2d`` → ``Dense``/``Sparse`` with the 0/1 window matrix: in the
  quantized graph both are integer window sums (the ``1/k²`` of average pooling is folded
  into the adjacent weights or into the neuron's input gain by the quantizer).
- ``Flatten`` → nothing (ports are flat, in C order).
- ``Threshold`` → a zero-delay integer ``PassThrough`` comparing its aligned input with
  the quantized threshold (``gt``); it sends spikes (``num_message_bits = 0`` on the
  synapse it feeds), like a spiking neuron. A max pooling of spikes (SumPool2d then
  Threshold) is a 0/1 window-count Dense and that compare: integer-exact.
- Where a neuron or an Output sums several inputs, each input is first aligned to the
  sink's fractional bits by a zero-delay integer ``PassThrough`` (``shl``, or
  ``shr_round`` for round half up) when its format differs (a spike train feeding a
  neuron without weights, a residual skip), and delay lines balance the latencies.
- Neurons: Lava's own LIF (``lava.proc.lif.process.LIFReset``: the ``LIF`` Process with
  the sample-boundary reset the runner needs, bit-accurate model
  ``PyLifResetModelBitAcc``, the same integer dynamics as ``PyLifModelBitAcc``) wherever
  the quantized layer is stock Lava LIF (``lava_issues`` empty, spiking, zero initial
  state); every other neuron gets a :mod:`nirbridge.backends.lava.procs.fixed` Process whose model
  runs the integer step function of :mod:`nirbridge.fixed_point` with the quantizer's
  parameters. Which one each node got: :func:`neuron_mapping`.
- ``Output`` → the aligned sum of its inputs plus its integer bias (a ``Monitor`` adds
  it); values are returned in real units (``int · 2^-frac_bits``), as the golden run does.
- ``Scale`` (on a vector) → the quantizer's one-to-one ``Linear(diag)``: a Dense.
- ``Delay`` → a delay line of its steps per element (at most 62), zero at the first
  steps of every sample; integers pass unchanged.
- Recurrent graphs, as in floating_pt (:class:`~nirbridge.backends.lava.network.Lowerer`):
  each feedback edge is connected once everything is lowered, through a gate (zero at each
  sample's first step) that also shifts it to the sink's fractional bits; a weighted layer
  whose bias reaches its sink over a feedback edge or through a delay adds its integer
  bias itself (a zero-delay ``PassThrough`` after its Dense), as the golden model does.

Graphs the quantizer rejects (a Scale on more than a vector, two weighted layers in a
row, a weighted layer feeding several nodes, unknown nodes) raise its
:class:`QuantizationError`, which names the node; a quantized layer Lava cannot hold
(weights wider than Lava's 8 bits) raises :class:`LoweringError` naming the layer, and so
does a loop whose synapses Lava cannot fit in its feedback steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nir
import numpy as np

from nirbridge import fixed_point as fx
from nirbridge.backends.fixed import quantized_for
from nirbridge.backends.lava.linear import LINEAR_NODES, linear_map, wants_sparse
from nirbridge.backends.lava.network import (
    DELAY,
    DENSE,
    FIXED_NEURON,
    PASS,
    SOURCE,
    SPARSE,
    LavaNetwork,
    Lowerer,
    NeuronContext,
    NeuronLowering,
    ProcSpec,
    Stream,
    check_same_shapes,
    delay_of,
    process_label,
)
from nirbridge.errors import LoweringError
from nirbridge.neurons import StockLava, spec_of
from nirbridge.quantize import (
    QuantConfig,
    QuantizedGraph,
    QuantizedNeuron,
    QuantizedOutput,
    QuantizedSynapse,
    QuantizedThreshold,
    without_bias,
)

#: Widest weight mantissa Lava's Dense/Sparse hold exactly (8 bits, signed).
LAVA_WEIGHT_BITS = 8

#: What ``quant=`` takes (see :func:`lower_fixed`).
QuantSpec = QuantConfig | QuantizedGraph | Mapping[str, Any] | str | Path | None


def stock_lava(layer: QuantizedNeuron) -> StockLava | list[str]:
    """The Lava-shipped Process that runs ``layer`` exactly (its integer model's
    ``stock_lava``), or why there is none."""
    hook = layer.model.stock_lava
    if hook is None:
        return [f"integer model '{layer.kind}' has no Lava-shipped Process"]
    return hook(layer)


def stock_lif_issues(layer: QuantizedNeuron) -> list[str]:
    """Why Lava's own Process cannot run ``layer`` exactly (empty: it can)."""
    stock = stock_lava(layer)
    return [] if isinstance(stock, StockLava) else stock


def _lower_fixed_neuron(node: nir.NIRNode, ctx: NeuronContext) -> NeuronLowering:
    """The Lava-shipped Process where the quantized layer runs on it exactly (Lava's own
    LIF), else the generic integer Process running the layer's integer model."""
    layer = ctx.quant
    if not isinstance(layer, QuantizedNeuron):
        raise LoweringError(f"node '{ctx.name}': no quantized form to lower in fixed_pt")
    stock = stock_lava(layer) if ctx.options.get("stock_lif", True) else None
    if isinstance(stock, StockLava):
        return NeuronLowering(stock.process, dict(stock.params), probe=False,
                              state_vars=stock.state_vars)
    return NeuronLowering(FIXED_NEURON, dict(neuron=layer.node_type, params=layer.params,
                                             node_shape=tuple(layer.shape)),
                          graded=not (layer.spiking and spec_of(node).binary(node)))


def neuron_mapping(net: LavaNetwork) -> dict[str, str]:
    """Per neuron node of a fixed_pt :class:`LavaNetwork`: the Lava Process it runs on
    (``"LIFReset"`` for Lava's own LIF, else ``"FixedNeuron(<integer model>)"``)."""
    return {n: process_label(net, n) for n in net.neurons}


# -------------------------------------------------------------------- synapses
def dense_weights(mant: Any, w_exp: int) -> tuple[Any, int]:
    """``(weights, weight_exp)`` for Lava's bit-accurate Dense/Sparse (``num_weight_bits =
    8``) that deliver exactly ``shift_floor(mant @ x, w_exp)``.

    Lava clips mixed-sign weights to [−256, 255] and drops their LSB, so mixed-sign
    matrices get ``2·mant`` and ``w_exp − 1``; single-sign matrices keep 8 magnitude bits
    in Lava and get ``mant`` and ``w_exp``.
    """
    data = mant.data if hasattr(mant, "tocsr") else np.asarray(mant)
    lo = int(data.min()) if data.size else 0
    hi = int(data.max()) if data.size else 0
    if lo >= 0 or hi <= 0:
        return mant, int(w_exp)
    return mant * 2, int(w_exp) - 1


def _int_matrix(node: nir.NIRNode, mant: np.ndarray | None, in_shape: tuple[int, ...],
                sparse: bool) -> Any:
    """The integer matrix of a weighted layer with weights ``mant`` (or, ``mant=None``, of
    a pooling window sum) on ``in_shape``: dense int64, or CSR when ``sparse``."""
    if mant is None:
        lin = linear_map(node, in_shape)  # the 0/1 window matrix; post-ops ignored
    else:
        lin = linear_map(without_bias(node, np.asarray(mant, dtype=np.float64)), in_shape)
    m = lin.matrix
    if hasattr(m, "tocsr"):
        m = m.tocsr()
        m.data = np.rint(m.data).astype(np.int64)
        m.eliminate_zeros()
        return m if sparse else m.toarray()
    m = np.rint(np.asarray(m)).astype(np.int64)
    if sparse:
        from scipy.sparse import csr_matrix

        return csr_matrix(m)
    return m


class FixedLowerer(Lowerer):
    """Lowers a graph from its quantized form (see the module docstring)."""

    def __init__(self, graph: nir.NIRGraph, qgraph: QuantizedGraph, sparse: bool | str,
                 options: Mapping[str, Any]) -> None:
        super().__init__(qgraph.graph, "fixed_pt", qgraph.dt, sparse)
        self.q = qgraph
        self.options = dict(options)
        #: per node with feedback inputs, the fractional bits they are aligned to
        self.fb_frac: dict[str, int] = {}

    def steps(self, name: str, node: nir.NIRNode) -> int:
        """A Dense/Sparse (weighted layers, pooling) adds one step; nothing else does."""
        return 1 if isinstance(node, LINEAR_NODES) else 0

    def fb_ops(self, name: str, stream: Stream) -> list[tuple[str, Any]]:
        """A feedback stream is shifted to the fractional bits of the node it feeds."""
        ops: list[tuple[str, Any]] = []
        frac = self.fb_frac[name]
        if stream.frac != frac:
            ops.append(("shl", frac - stream.frac) if frac > stream.frac
                       else ("shr_round", stream.frac - frac))
        if stream.bias is not None:
            ops.append(("add", stream.bias))
        return ops

    def _lower_node(self, name: str, node: nir.NIRNode) -> None:
        """Lower one node from its quantized layer (see the module docstring)."""
        layer = self.q.layers.get(name)
        if isinstance(node, nir.Input):
            shape = tuple(self.q.shapes[name])
            size = int(np.prod(shape, dtype=np.int64))
            self.add(ProcSpec(name, SOURCE, {}, size, node=name, role="source",
                              in_port=None))
            self.streams[name] = Stream(name, 0, shape, None, True, layer.frac_bits)
        elif isinstance(node, nir.Flatten):
            pred, src = self._single(name)
            key = self.delayed(name, pred, src, self.lat_in[name])
            self.streams[name] = dataclasses.replace(src, proc=key, latency=self.lat_in[name],
                                                     shape=tuple(self.q.shapes[name]))
        elif isinstance(node, nir.Delay):
            self._lower_delay(name, node)
        elif isinstance(layer, QuantizedOutput):
            self._lower_output(name, layer)
        elif isinstance(layer, QuantizedThreshold):
            self._lower_threshold(name, layer)
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            self._lower_dense(name, node, None, 0)
        elif isinstance(layer, QuantizedSynapse):
            self._check_weights(name, layer)
            self._lower_dense(name, node, layer.mant, layer.w_exp, layer.out_frac, layer.bias)
        elif isinstance(layer, QuantizedNeuron):
            self._lower_neuron(name, node)
        else:
            raise LoweringError(f"node '{name}' of type {type(node).__name__} has no fixed_pt "
                                "lowering")

    def _single(self, name: str) -> tuple[str, Stream]:
        """The one input of a node the quantizer allows one input (over this step)."""
        if len(self.preds[name]) != 1 or self.fb_preds[name]:
            raise LoweringError(f"node '{name}' ({type(self.graph.nodes[name]).__name__}) "
                                "takes one input in fixed point, over an edge of this step")
        (pred,) = self.preds[name]
        self.in_shape[name] = self.streams[pred].shape
        return pred, self.streams[pred]

    def _lower_delay(self, name: str, node: nir.Delay) -> None:
        """A delay line of the node's steps per element (integers pass unchanged)."""
        pred, src = self._single(name)
        latency = self.lat_in[name]
        key = self.delayed(name, pred, src, latency)
        steps = delay_of(name, node, self.dt, src.shape)
        out = self.add(ProcSpec(name, DELAY, dict(shape=(src.size,), delay=steps), src.size,
                                node=name, latency=latency, stateful=True))
        self.connect(key, out)
        self.streams[name] = Stream(out, latency, src.shape, None, src.graded, src.frac)

    def _check_weights(self, name: str, layer: QuantizedSynapse) -> None:
        """LoweringError if the layer's mantissas do not fit Lava's 8-bit weights."""
        bits = self.q.config.weight_bits
        if bits > LAVA_WEIGHT_BITS:
            big = int(np.max(np.abs(layer.mant), initial=0))
            if big > (1 << (LAVA_WEIGHT_BITS - 1)) - 1 or int(np.min(layer.mant, initial=0)) < \
                    -(1 << (LAVA_WEIGHT_BITS - 1)):
                raise LoweringError(
                    f"weighted layer '{name}': its {bits}-bit weight mantissas (up to {big}) do "
                    f"not fit Lava's {LAVA_WEIGHT_BITS}-bit Dense/Sparse weights; quantize with "
                    f"weight_bits <= {LAVA_WEIGHT_BITS}")

    def _lower_dense(self, name: str, node: nir.NIRNode, mant: np.ndarray | None, w_exp: int,
                     frac: int | None = None, bias: np.ndarray | None = None) -> None:
        """A Dense/Sparse with integer ``mant`` (None: the pooling window sum) and the
        exponent ``w_exp``; its stream has ``frac`` fractional bits (default: its
        input's). ``bias``: the integer bias the layer adds itself (a recurrent or
        delayed layer's: see :class:`~nirbridge.quantize.QuantizedSynapse`), by a
        zero-delay PassThrough after it."""
        pred, src = self._single(name)  # the quantizer allows sums only at neurons and outputs
        latency = self.lat_in[name]
        key_in = self.delayed(name, pred, src, latency)
        n_out = int(np.prod(self.q.shapes[name], dtype=np.int64))
        use_sparse = (wants_sparse(self.sparse, n_out, src.size)
                      and not isinstance(node, (nir.Affine, nir.Linear)))
        matrix = _int_matrix(node, mant, src.shape, use_sparse)
        weights, weight_exp = dense_weights(matrix, w_exp)
        if hasattr(weights, "tocsr"):
            weights = weights.astype(np.int32)
        else:
            weights = np.asarray(weights, dtype=np.int32)
        key = self.add(ProcSpec(
            name, SPARSE if use_sparse else DENSE,
            dict(weights=weights, weight_exp=weight_exp, num_weight_bits=LAVA_WEIGHT_BITS,
                 num_message_bits=24 if src.graded else 0),
            n_out, node=name, role="synapse", in_port="s_in", out_port="a_out",
            latency=latency + 1))
        self.connect(key_in, key)
        if bias is not None:
            flat = np.broadcast_to(fx.as_int(bias), tuple(self.q.shapes[name])).ravel().copy()
            out = self.add(ProcSpec(f"{name}/bias", PASS,
                                    dict(shape=(n_out,), ops=(("add", flat),)), n_out,
                                    latency=latency + 1, probe=True))
            self.connect(key, out)
            key = out
        self.streams[name] = Stream(key, latency + 1, tuple(self.q.shapes[name]), None,
                                    True, src.frac if frac is None else frac)

    def _aligned(self, name: str, frac: int) -> tuple[list[str], int, tuple[int, ...], bool]:
        """The inputs of ``name`` over edges of this step: delayed to its planned latency
        and shifted to ``frac`` (its feedback inputs are connected later, shifted alike)."""
        preds = self.ff_preds[name]
        streams = [self.streams[p] for p in preds]
        check_same_shapes(name, preds, streams)
        latency = self.lat_in[name]
        keys: list[str] = []
        graded = self.inputs_of(name) > 1
        for p, s in zip(preds, streams, strict=True):
            key = self.delayed(name, p, s, latency)
            if s.frac != frac:
                op = ("shl", frac - s.frac) if frac > s.frac else ("shr_round", s.frac - frac)
                aligned = self.add(ProcSpec(f"{name}/align<{p}", PASS,
                                            dict(shape=(s.size,), ops=(op,)), s.size,
                                            latency=latency))
                self.connect(key, aligned)
                key = aligned
                graded = True
            graded = graded or s.graded
            keys.append(key)
        self.in_shape[name] = streams[0].shape
        self.fb_frac[name] = frac
        return keys, latency, streams[0].shape, graded

    def _lower_output(self, name: str, layer: QuantizedOutput) -> None:
        """The aligned sum of the Output's inputs, plus its integer bias."""
        keys, latency, shape, graded = self._aligned(name, layer.frac_bits)
        size = int(np.prod(shape, dtype=np.int64))
        bias = None
        if layer.bias is not None:
            bias = np.broadcast_to(fx.as_int(layer.bias), shape).ravel().copy()
        if len(keys) == 1 and not self.fb_preds[name]:
            self.streams[name] = Stream(keys[0], latency, shape, bias, graded,
                                        layer.frac_bits)
            return
        ops = (("add", bias),) if bias is not None else ()
        key = self.add(ProcSpec(f"{name}/sum", PASS, dict(shape=(size,), ops=ops), size,
                                latency=latency, probe=True))
        for k in keys:
            self.connect(k, key)
        self.fb_target[name] = key
        self.streams[name] = Stream(key, latency, shape, None, True, layer.frac_bits)

    def _lower_threshold(self, name: str, layer: QuantizedThreshold) -> None:
        """The integer compare of the aligned sum of the Threshold's inputs: spikes."""
        keys, latency, shape, _ = self._aligned(name, layer.in_frac)
        size = int(np.prod(shape, dtype=np.int64))
        theta = np.broadcast_to(layer.threshold, shape).ravel().astype(np.int64)
        key = self.add(ProcSpec(f"{name}/threshold", PASS,
                                dict(shape=(size,), ops=(("gt", theta),)), size,
                                latency=latency, probe=True))
        for k in keys:
            self.connect(k, key)
        self.fb_target[name] = key
        self.streams[name] = Stream(key, latency, shape, None, False, layer.out_frac)

    def _lower_neuron(self, name: str, node: nir.NIRNode) -> None:
        """The neuron's fixed_pt Process, fed its aligned inputs."""
        layer = self.q.layers[name]
        keys, latency, shape, _ = self._aligned(name, layer.in_frac)
        ctx = NeuronContext(name, shape, self.dt, self.mode, quant=layer,
                            options=self.options)
        low = _lower_fixed_neuron(node, ctx)
        kwargs = dict(shape=(ctx.size,), **low.params)
        self.add(ProcSpec(name, low.process, kwargs, ctx.size, node=name, role="neuron",
                          latency=latency, stateful=low.stateful, probe=low.probe,
                          state_vars=tuple(low.state_vars)))
        for k in keys:
            self.connect(k, name)
        self.fb_target[name] = name  # the neuron's in-port sums its feedback inputs too
        self.streams[name] = Stream(name, latency, shape, None, low.graded, layer.out_frac)


def lower_fixed(graph: nir.NIRGraph, *, dt: float | None = None, sparse: bool | str = "auto",
                quant: QuantSpec = None, stock_lif: bool = True
                ) -> tuple[FixedLowerer, QuantizedGraph]:
    """Quantize ``graph`` and lower it for ``fixed_pt``.

    ``quant``: ``None`` (the shipped ``loihi2`` profile, its own input format), a
    :class:`QuantConfig`, a profile (its name, a path to a ``.toml`` file, or a parsed
    dict), or a :class:`QuantizedGraph` of this very graph (used as is), as
    :func:`nirbridge.backends.fixed.quantized_for` takes it (the ``fixed`` backend's
    choice, so both compute the same integers).

    ``stock_lif=False`` runs every neuron, stock-compatible LIF layers included, on the
    nirbridge integer Processes (to cross-check them against Lava's LIF). Returns the
    lowerer (its processes, connections and streams) and the quantized graph.
    """
    qgraph = quantized_for(graph, None, quant=quant, dt=dt)
    low = FixedLowerer(graph, qgraph, sparse, {"stock_lif": bool(stock_lif)})
    low.lower()
    return low, qgraph


__all__ = ["LAVA_WEIGHT_BITS", "FixedLowerer", "QuantSpec", "dense_weights", "lower_fixed",
           "neuron_mapping", "stock_lava", "stock_lif_issues"]
