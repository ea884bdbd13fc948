"""The batched bit-accurate emulator: the integer model of a quantized graph on torch tensors.

It computes exactly what :func:`nirbridge.quantize.run_fixed_point` (the numpy golden model
of Lava ``fixed_pt``) computes, integer for integer, faster:

- values are int64 tensors ``[T, B, ...]`` on any torch device; samples are run in chunks
  of ``batch_size`` (independent: the integer model has no cross-sample state);
- dense, conv and sum-pool layers go through torch's float kernels where that is exact
  (:func:`int_linear`, :func:`int_conv`: the bound is proven per layer and per run) and
  through an exact limb decomposition where it is not;
- neurons step with their registered :class:`~nirbridge.neurons.IntegerModel` over the
  whole population and batch, one call per time step: the model *is* the specification
  (numpy int64, one file per neuron), so it runs unchanged on the host, and only its
  input and output cross the device boundary, once per layer and chunk;
- cyclic components (recurrence) run step by step through the golden model's own code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from nirbridge import fixed_point as fx
from nirbridge.errors import GraphError, InputError, InvalidParameterError, QuantizationError
from nirbridge.geometry import pool_geometry_of
from nirbridge.graph import delay_steps, schedule
from nirbridge.neurons import NEURONS
from nirbridge.quantize.chains import _tname
from nirbridge.quantize.emu_kernels import input_peak, quantize_float
from nirbridge.quantize.executor import FixedPointRecord, _Run
from nirbridge.quantize.graph import (
    QuantizedGraph,
    QuantizedInput,
    QuantizedNeuron,
    QuantizedOutput,
    QuantizedSynapse,
    QuantizedThreshold,
)

#: Significand bits of the float formats the kernels may use exactly: every integer of
#: magnitude below 2^p is representable, and so is every sum or product of such integers
#: whose magnitude stays below 2^p, whatever the order the kernel adds in.
_MANTISSA = {torch.float32: 24, torch.float64: 53}


#: Steps·samples per chunk when ``batch_size="auto"`` (the default): ``max(1, CHUNK_ROWS //
#: T)`` samples. A chunk's activations then stay in cache between a layer's kernel and its
#: neurons, and the kernels still see big matrices (measured with float values between
#: layers, 1 thread: digits conv net at T = 20, B = 256, 40/64/128/256 samples a chunk:
#: 44/42/42/70 ms; at T = 100, B = 32, 8/16 samples: 28/25 ms; the MLP alike, 5-10 %).
CHUNK_ROWS = 1600
#: The default ``batch_size``: chunks of about :data:`CHUNK_ROWS` steps·samples.
DEFAULT_BATCH_SIZE = "auto"


@dataclass
class EmulatedRun:
    """What :func:`run_emulated` returns: ``outputs`` (float64 numpy arrays in real units,
    one array for one Output node, else a dict), ``records`` (a
    :class:`~nirbridge.quantize.FixedPointRecord` per recorded node, numpy int64), and
    ``saturations`` (node → field → events, for every node that counts them, recorded or
    not)."""

    outputs: Any
    records: dict[str, FixedPointRecord] = field(default_factory=dict)
    saturations: dict[str, dict[str, int]] = field(default_factory=dict)


def _float_dtype(device: torch.device, bound: float) -> torch.dtype | None:
    """The narrowest float dtype whose kernels are exact for integer partial sums of
    magnitude ≤ ``bound`` on ``device``, or None (no float kernel is exact).

    float32 only on the CPU and only at full precision: CUDA's convolutions may run float32
    as TF32 (10-bit significand) by default, and a reduced ``float32_matmul_precision``
    lets CPU matmuls do the same; float64 is never reduced."""
    if (device.type == "cpu" and torch.get_float32_matmul_precision() == "highest"
            and bound < 2.0 ** _MANTISSA[torch.float32]):
        return torch.float32
    if bound < 2.0 ** _MANTISSA[torch.float64]:
        return torch.float64
    return None


def _limbs(x: torch.Tensor, bits: int) -> list[tuple[torch.Tensor, int]]:
    """``x`` (int64) as ``Σ limb · 2^shift``: low limbs in ``[0, 2^bits)``, the top limb
    signed (two's complement), so every limb's magnitude is at most ``2^bits``."""
    out, shift = [], 0
    mask = (1 << bits) - 1
    rest = x
    while True:
        hi = rest >> bits
        if not bool(((hi != 0) & (hi != -1)).any()) and not bool((rest < -(1 << bits)).any()):
            out.append((rest, shift))
            return out
        out.append((rest & mask, shift))
        rest, shift = hi, shift + bits


def _exact(op, x: torch.Tensor, w_l1: float, w: np.ndarray, x_bound: float | None = None,
           cache: dict | None = None) -> torch.Tensor:
    """``op(x, w)`` for a linear ``op`` on int64 ``x``, exactly, through float kernels.

    Proof of exactness: each output is ``Σ_k x_k·w_jk`` over one output's fan-in; every
    product and every partial sum, in whatever order the kernel adds, has magnitude at most
    ``max|x| · max_j Σ_k |w_jk|`` (``w_l1``; padding adds zeros), an integer. Below the
    float dtype's ``2^p`` all of them are exact, and so is the conversion back to int64.
    Where even float64 does not hold that bound, ``x`` is split into limbs (``x = Σ x_i ·
    2^(b·i)``, ``|x_i| ≤ 2^b``, ``2^b · w_l1 < 2^53``), each limb's product is exact, and the
    shifted limb products are summed in int64 (exact unless the true result overflows int64,
    as in the numpy golden model).

    ``x_bound``: a known bound on ``max|x|`` (e.g. 1 for binary spikes), which spares the
    pass that measures it; ``cache``: a run's weights already converted, by dtype."""
    y, _ = _exact_any(op, x, w_l1, w, x_bound, cache)
    return _int(y)


def _xmax(x: torch.Tensor, x_bound: float | None) -> float:
    if x_bound is not None:
        return float(x_bound)
    if not x.numel():
        return 0.0
    lo, hi = torch.aminmax(x)
    return float(max(-float(lo), float(hi)))


def _as_kernel(w: np.ndarray, dtype: torch.dtype, device: torch.device,
               cache: dict | None) -> torch.Tensor:
    """Integer array ``w`` in the kernel's ``dtype`` (exact: the caller bounds it), made
    once per run with ``cache``."""
    key = (id(w), dtype, device)
    wt = None if cache is None else cache.get(key)
    if wt is None:
        wt = torch.as_tensor(w, dtype=dtype, device=device)
        if cache is not None:
            cache[key] = wt
    return wt


def _exact_any(op, x: torch.Tensor, w_l1: float, w: np.ndarray, x_bound: float | None,
               cache: dict | None) -> tuple[torch.Tensor, float]:
    """:func:`_exact`, but the result stays in the float kernel's dtype where one is exact
    (every value an integer the float holds: the bound of :func:`_exact`); int64 from the
    limb path. Also returns the bound ``max|x| · w_l1`` on its magnitude."""
    xmax = _xmax(x, x_bound)
    bound = xmax * w_l1
    dtype = _float_dtype(x.device, bound)
    if dtype is not None:
        return op(x.to(dtype), _as_kernel(w, dtype, x.device, cache)), bound
    x = _int(x)
    bits = int(np.floor(np.log2(2.0 ** 52 / max(w_l1, 1.0))))
    if bits < 1:
        raise QuantizationError(f"weights with row L1 norm {w_l1:g} leave no exact float64 "
                                "product; reduce the weight mantissa or fan-in")
    wt = torch.as_tensor(w, dtype=torch.float64, device=x.device)
    total = None
    for limb, shift in _limbs(x, bits):
        y = op(limb.to(torch.float64), wt).to(torch.int64) << shift
        total = y if total is None else total + y
    assert total is not None
    return total, bound


def _int(x: torch.Tensor) -> torch.Tensor:
    """A value as int64 (a float value holds integers exactly: no rounding)."""
    return x if x.dtype == torch.int64 else x.to(torch.int64)


def _l1(mant: np.ndarray, cache: dict | None) -> float:
    """The weights' largest row L1 norm (output by output), once per run with ``cache``."""
    key = ("l1", id(mant))
    if cache is not None and key in cache:
        return cache[key]
    w_l1 = float(np.abs(mant).reshape(mant.shape[0], -1).sum(axis=1).max(initial=0))
    if cache is not None:
        cache[key] = w_l1
    return w_l1


def int_linear(x: torch.Tensor, mant: np.ndarray, *, x_bound: float | None = None,
               cache: dict | None = None) -> torch.Tensor:
    """``x @ mant.T`` exactly, for int64 ``x`` ``[N, in]`` and integer weights ``[out, in]``
    (``x_bound``, ``cache``: see :func:`_exact`)."""
    return _exact(lambda a, w: a @ w.T, x, _l1(mant, cache), mant, x_bound, cache)


def int_conv(x: torch.Tensor, mant: np.ndarray, *, stride: tuple[int, ...],
             padding: tuple[int, ...], dilation: tuple[int, ...], groups: int,
             x_bound: float | None = None, cache: dict | None = None, fold: int = 1
             ) -> torch.Tensor:
    """Integer convolution (cross-correlation, like torch) of int64 ``x`` ``[N, C, *sp]``
    with integer weights ``[O, C/groups, *k]``, exactly (see :func:`_exact`); with ``fold
    = k``, ``x``'s first ``k`` dimensions are folded into ``N``."""
    nd = mant.ndim - 2
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(nd)
    if conv is None:
        raise QuantizationError(f"no integer convolution in {nd} dimensions")
    def op(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if fold > 1:
            a = a.reshape(-1, *a.shape[fold:])
        return conv(a, w, stride=tuple(stride), padding=tuple(padding),
                    dilation=tuple(dilation), groups=groups)

    return _exact(op, x, _l1(mant, cache), mant, x_bound, cache)


def int_sumpool(x: torch.Tensor, node: nir.NIRNode) -> torch.Tensor:
    """Sum pooling of int64 ``x`` ``[N, C, H, W]`` (zero padding): a depthwise all-ones
    convolution, exact like :func:`int_conv`."""
    k, s, p = pool_geometry_of(node)
    c = x.shape[1]
    ones = np.ones((c, 1, *k), dtype=np.int64)
    return int_conv(x, ones, stride=tuple(s), padding=tuple(p), dilation=(1,) * len(k),
                    groups=c)


def _align(x: torch.Tensor, frm: int, to: int) -> torch.Tensor:
    if to == frm:  # the common case: no copy (nothing writes into a value in place)
        return x
    if to > frm:
        return x << (to - frm)
    n = frm - to
    return (x + (1 << (n - 1))) >> n


def _synapse(node: nir.NIRNode, layer: QuantizedSynapse, x: torch.Tensor,
             x_bound: float | None, cache: dict) -> tuple[torch.Tensor, float]:
    """A weighted layer on integers ``[T, B, ...]`` (int64 or a float holding integers):
    ``(x ⊛ mant) << w_exp + bias``, and a bound on its magnitude.

    The result stays in the float kernel's dtype where that is exact: the kernel's output
    is exact (:func:`_exact`) and below ``bound``; a shift by ``w_exp`` is a product by
    ``2^w_exp`` (exact in float; a right shift is then ``floor``, as int64's arithmetic
    ``>>``: ``w_exp ≥ −100`` keeps every non-zero value a normal float); the bias adds
    integers. Every intermediate value is an integer of magnitude at most ``bound ·
    2^max(w_exp, 0) + 1 + max|bias|``: where that is below the float's ``2^p``, no step
    rounds. Otherwise the kernel's output goes to int64 and the same ops run there."""
    t, b = x.shape[:2]
    w_l1 = _l1(layer.mant, cache)
    # the kernels fold [T, B] inside, after their float conversion: x may be a strided
    # chunk of the input, and converting it first makes one contiguous copy, not two
    if isinstance(node, (nir.Affine, nir.Linear)):
        y, bound = _exact_any(lambda a, w: a.reshape(t * b, -1) @ w.T, x, w_l1, layer.mant,
                              x_bound, cache)
        y = y.reshape(t, b, -1)
    else:
        nd = layer.mant.ndim - 2
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(nd)
        if conv is None:
            raise QuantizationError(f"no integer convolution in {nd} dimensions")

        def op(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return conv(a.reshape(-1, *a.shape[2:]), w, stride=tuple(layer.stride),
                        padding=tuple(layer.padding), dilation=tuple(layer.dilation),
                        groups=layer.groups)

        y, bound = _exact_any(op, x, w_l1, layer.mant, x_bound, cache)
        y = y.reshape(t, b, *y.shape[1:])
    bias_max = _bias_max(layer.bias, cache)
    post = bound * 2.0 ** max(layer.w_exp, 0) + 1.0 + bias_max
    # y is the kernel's own fresh tensor: shift and add in place (no copies)
    if y.dtype in _MANTISSA and post < 2.0 ** _MANTISSA[y.dtype] and layer.w_exp >= -100:
        if layer.w_exp:
            y.mul_(2.0 ** layer.w_exp)
            if layer.w_exp < 0:
                y.floor_()
        if layer.bias is not None:
            y += _as_kernel(layer.bias, y.dtype, y.device, cache)
        return y, post
    y = _int(y)
    if layer.w_exp > 0:
        y <<= layer.w_exp
    elif layer.w_exp < 0:
        y >>= -layer.w_exp
    if layer.bias is not None:
        y += _as_kernel(layer.bias, torch.int64, y.device, cache)
    return y, post


def _bias_max(bias: np.ndarray | None, cache: dict) -> float:
    if bias is None:
        return 0.0
    key = ("bmax", id(bias))
    if key not in cache:
        cache[key] = float(np.max(np.abs(bias), initial=0))
    return cache[key]


def _apply(name: str, node: nir.NIRNode, x: torch.Tensor, x_bound: float | None,
           cache: dict) -> tuple[torch.Tensor, float | None]:
    """A stateless unweighted node on integers ``[T, B, ...]`` (int64 or a float holding
    integers), and a bound on its output's magnitude where one is known."""
    t, b = x.shape[:2]
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        key = ("pool", name)
        if key not in cache:
            k, st, pd = pool_geometry_of(node)
            cache[key] = (np.ones((x.shape[2], 1, *k), dtype=np.int64), tuple(st), tuple(pd))
        ones, st, pd = cache[key]
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[ones.ndim - 2]

        def op(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return conv(a.reshape(-1, *a.shape[2:]), w, stride=st, padding=pd,
                        groups=ones.shape[0])

        # a sum of prod(k) values: exact in float like any integer kernel (_exact)
        y, bound = _exact_any(op, x, float(ones[0].size), ones, x_bound, cache)
        return y.reshape(t, b, *y.shape[1:]), bound
    if isinstance(node, nir.Flatten):
        ndim = x.ndim - 2
        start = int(node.start_dim) % ndim + 2
        end = int(node.end_dim) % ndim + 2
        return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:]), x_bound
    raise QuantizationError(f"node type {_tname(node)} has no integer semantics")


def _delay(x: torch.Tensor, steps: np.ndarray) -> torch.Tensor:
    y = torch.zeros_like(x)
    n = x.shape[0]
    d_all = torch.as_tensor(np.broadcast_to(steps, x.shape[2:]).copy(), device=x.device)
    for d in np.unique(steps):
        d = int(d)
        if d < n:
            y[d:] = torch.where(d_all == d, x[:n - d], y[d:])
    return y


def _quantize_input(x: torch.Tensor, layer: QuantizedInput, sat: fx.SaturationCounter,
                    peak: float | None = None, lo: int = 0, hi: int | None = None
                    ) -> tuple[torch.Tensor, float]:
    """As :func:`nirbridge.quantize.quantize_input` on samples ``lo:hi`` of ``x``: round
    half up in float64, saturate. Also returns a bound on the integers' magnitude (for
    :func:`_exact`). ``peak``: ``max|x|`` of the whole input (:func:`input_peak`), else
    measured.

    The integers stay in a float that holds every one of them (``|q| ≤ lim``): float32
    where ``lim < 2^24``, float64 where ``lim < 2^53`` (one compiled pass, no int64 copy:
    the synapses take them as they are); int64 beyond."""
    lim = fx.sat_limit(layer.bits)
    dtype = np.float32 if lim < 2 ** 24 else np.float64 if lim < 2 ** 53 else None
    hi = x.shape[1] if hi is None else min(hi, x.shape[1])
    if peak is None:
        peak = input_peak(x, layer.name)
    if dtype is not None:
        arr = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float64)  # run_emulated's: as is
        q, n_sat, top = quantize_float(arr, lo, hi, layer.frac_bits, lim, dtype,
                                       layer.name, peak)
        sat.add("input", n_sat)
        return torch.from_numpy(q), float(top)
    x = x[:, lo:hi].to(torch.float64)
    scaled = x * 2.0 ** layer.frac_bits  # a fresh tensor: round it in place
    # clipped in float first, as the golden model (no float beyond int64 is converted)
    q = scaled.add_(0.5).floor_().clamp_(-lim - 1, lim + 1).to(torch.int64)
    # |floor(x·s + 0.5)| ≤ floor(|x|·s + 0.5) for either sign of x
    top = float(np.floor(peak * 2.0 ** layer.frac_bits + 0.5))
    if top <= lim:
        sat.add("input", 0)
        return q, top
    sat.add("input", int(((q > lim) | (q < -lim)).sum()))
    return q.clamp_(-lim, lim), float(lim)


def _neuron(layer: QuantizedNeuron, a_in: torch.Tensor, sat: fx.SaturationCounter,
            keep_states: bool, binary: bool) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The neuron's integer model over time on the host (numpy, as specified), the whole
    population and batch per call: its whole-sequence ``scan`` where the model has one
    (one call per layer and chunk: it reads a float synapse output as it is, and writes
    ``binary`` 0/1 spikes as float32, which the next synapse takes without a conversion),
    else its ``step`` once per time step."""
    model, params = layer.model, layer.params
    shape = tuple(a_in.shape[2:])
    state = params.initial_state(a_in.shape[1], shape)
    if model.scan is not None:
        out, _, trace = model.scan(a_in.cpu().numpy(), state, params, sat, keep_states,
                                   np.float32 if binary else np.int64)
        return torch.from_numpy(out).to(a_in.device), trace
    a = _int(a_in).cpu().numpy()
    out = None
    trace = {}
    for t, xt in enumerate(a):
        y, state = model.step(xt, state, params, sat)
        if out is None:
            out = np.empty((a.shape[0], *np.shape(y)), dtype=np.int64)
            if keep_states:
                trace = {f: np.empty((a.shape[0], *np.shape(getattr(state, f))),
                                     dtype=np.int64) for f in type(state)._fields}
        out[t] = y
        for f, buf in trace.items():
            buf[t] = getattr(state, f)
    if out is None:
        out = np.zeros((0, *a.shape[1:]), dtype=np.int64)
    return torch.from_numpy(out).to(a_in.device), trace


class _Chunk:
    """One chunk of samples through the graph: values ``(int64 tensor, frac)`` per node."""

    def __init__(self, qgraph: QuantizedGraph, want: set[str], device: torch.device,
                 bounds: dict[str, float], cache: dict) -> None:
        self.q = qgraph
        self.bounds = bounds
        self.cache = cache  # the run's weights, delays, plans: made by its first chunk
        self.g = qgraph.graph
        self.want = want
        self.device = device
        self.values: dict[str, tuple[torch.Tensor, int]] = {}
        self.records: dict[str, FixedPointRecord] = {}
        self.sats: dict[str, dict[str, int]] = {}
        self._gold: _Run | None = None

    @property
    def gold(self) -> _Run:
        """The golden model's stepper for cyclic components (made where one is met)."""
        if self._gold is None:
            self._gold = _Run(self.q, set())
        return self._gold

    def _delays(self, name: str) -> np.ndarray:
        key = ("delay", name)
        if key not in self.cache:
            self.cache[key] = delay_steps(self.g.nodes[name], self.q.dt, name)
        return self.cache[key]

    def _binary(self, name: str, layer: QuantizedNeuron) -> bool:
        key = ("binary", name)
        if key not in self.cache:
            self.cache[key] = bool(layer.spiking and
                                   NEURONS[layer.node_type].binary(self.g.nodes[name]))
        return self.cache[key]

    def _sum(self, name: str, frac: int) -> torch.Tensor:
        preds = self.q.preds[name]
        if len(preds) == 1 and self.values[preds[0]][1] == frac:
            return self.values[preds[0]][0]  # as it is (int64 or a float holding integers)
        total = self._float_sum(name, frac)
        if total is not None:
            return total
        for p in preds:
            x, f = self.values[p]
            x = _align(_int(x), f, frac)
            if total is not None and total.shape != x.shape:
                raise GraphError(f"node '{name}' sums inputs of shapes {tuple(total.shape)} "
                                 f"and {tuple(x.shape)} ('{p}')")
            total = x if total is None else total + x
        assert total is not None
        return total

    def _float_sum(self, name: str, frac: int) -> torch.Tensor | None:
        """The aligned sum of ``name``'s inputs (:func:`_align`, then ``+``) in float, where
        every input is a float with a known bound and every step is exact: a left shift is
        a product by ``2^n``; a rounding right shift ``(x + 2^(n−1)) >> n`` is
        ``floor((x + 2^(n−1)) · 2^−n)``; every intermediate is an integer of magnitude at
        most ``max|x| + 2^(n−1)`` or the sum of the aligned bounds, checked below ``2^p``.
        None where that does not hold (then int64)."""
        parts = []
        dtype = torch.float32
        total_bound = 0.0
        inner = 0.0  # the largest x + 2^(n-1) before a right shift
        for p in self.q.preds[name]:
            x, f = self.values[p]
            bound = self.bounds.get(p)
            if bound is None or x.dtype not in _MANTISSA or f - frac > 100:
                return None
            if x.dtype == torch.float64:
                dtype = torch.float64
            n = f - frac
            if n > 0:
                total_bound += bound * 2.0 ** -n + 1.0
                inner = max(inner, bound + 2.0 ** (n - 1))
            else:
                total_bound += bound * 2.0 ** -n
            parts.append((p, x, n))
        if max(total_bound, inner) >= 2.0 ** _MANTISSA[torch.float32]:
            dtype = torch.float64  # elementwise: no reduced-precision mode applies
        if max(total_bound, inner) >= 2.0 ** _MANTISSA[dtype]:
            return None
        total = None
        for p, x, n in parts:
            x = x.to(dtype)
            if n < 0:
                x = x * 2.0 ** -n
            elif n > 0:
                x = torch.floor((x + 2.0 ** (n - 1)) * 2.0 ** -n)
            if total is not None and total.shape != x.shape:
                raise GraphError(f"node '{name}' sums inputs of shapes {tuple(total.shape)} "
                                 f"and {tuple(x.shape)} ('{p}')")
            total = x if total is None else total + x  # never in place: x may be a value
        return total

    def node(self, name: str, inputs: Mapping[str, tuple[torch.Tensor, dict[str, int]]]
             ) -> None:
        node = self.g.nodes[name]
        layer = self.q.layers.get(name)
        keep = name in self.want
        sat = fx.SaturationCounter()
        x_in: torch.Tensor | None = None
        states: dict[str, np.ndarray] = {}
        if isinstance(layer, QuantizedInput):
            # quantized per chunk (run_emulated): this chunk's integers and counts
            y, counts = inputs[name]
            for f, n in counts.items():
                sat.add(f, n)
            frac_in, frac_out = None, layer.frac_bits
        elif isinstance(layer, QuantizedNeuron):
            x_in = self._sum(name, layer.in_frac)
            binary = self._binary(name, layer)  # the registry's contract: 0/1 spikes
            y, states = _neuron(layer, x_in, sat, keep, binary)
            frac_in, frac_out = layer.in_frac, layer.out_frac
            if binary:
                self.bounds[name] = 1.0
        elif isinstance(layer, QuantizedThreshold):
            x_in = _int(self._sum(name, layer.in_frac))
            y = (x_in > int(layer.threshold)).to(torch.int64) if np.ndim(layer.threshold) == 0 \
                else (x_in > torch.as_tensor(layer.threshold, device=x_in.device)).to(torch.int64)
            frac_in, frac_out = layer.in_frac, layer.out_frac
            self.bounds[name] = 1.0
        elif isinstance(layer, QuantizedOutput):
            x_in = _int(self._sum(name, layer.frac_bits))
            if layer.bias is not None:
                x_in = x_in + torch.as_tensor(layer.bias, device=x_in.device)
            y = x_in
            frac_in = frac_out = layer.frac_bits
        else:
            (pred,) = self.q.preds[name]
            x_in, frac_in = self.values[pred]
            bound = self.bounds.get(pred)
            out_bound: float | None = bound  # a Delay moves values, makes none larger
            if isinstance(node, nir.Delay):
                y, frac_out = _delay(x_in, self._delays(name)), frac_in
            elif isinstance(layer, QuantizedSynapse):
                y, out_bound = _synapse(node, layer, x_in, bound, self.cache)
                frac_out = layer.out_frac
            else:
                (y, out_bound), frac_out = _apply(name, node, x_in, bound, self.cache), frac_in
            if out_bound is not None:
                self.bounds[name] = out_bound
        self.values[name] = (y, frac_out)
        if isinstance(layer, QuantizedInput | QuantizedNeuron):
            self.sats[name] = dict(sat.counts)
        if keep:
            rec = FixedPointRecord(output=_host(_int(y)), states=states,
                                   saturations=dict(sat.counts))
            if isinstance(layer, QuantizedInput):
                rec.frac_bits = {"output": frac_out}
            else:
                rec.input = _host(_int(x_in))
                rec.frac_bits = {"input": frac_in, "output": frac_out}
            if isinstance(layer, QuantizedNeuron):
                rec.frac_bits.update({f: layer.params.state_frac(f) for f in states})
            self.records[name] = rec

    def cyclic(self, nodes: tuple[str, ...], steps: int, batch: int) -> None:
        """A cyclic component, step by step, by the golden model's own stepper (numpy)."""
        gold = self.gold
        gold.want = set(nodes)
        for n in nodes:
            for p in self.q.preds[n]:
                if p not in nodes and p not in gold.values:
                    x, f = self.values[p]
                    gold.values[p] = (_host(_int(x)), f)
        gold.cyclic(nodes, steps, batch)
        for n in nodes:
            y, f = gold.values[n]
            self.values[n] = (torch.from_numpy(y).to(self.device), f)
            rec = gold.records.pop(n)
            if isinstance(self.q.layers.get(n), QuantizedNeuron):
                self.sats[n] = dict(rec.saturations)
            if n in self.want:
                self.records[n] = rec


def _host(x: torch.Tensor | None) -> np.ndarray | None:
    return None if x is None else x.detach().cpu().numpy()


def _as_tensor(x: Any) -> torch.Tensor:
    """A real input as a contiguous float64 host tensor (no copy where it is one already):
    it is quantized on the host, chunk by chunk (:func:`quantize_float`)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).contiguous()
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def run_emulated(qgraph: QuantizedGraph, inputs: Any, *,
                 record: bool | Iterable[str] = False, device: str | torch.device = "cpu",
                 batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> EmulatedRun:
    """Run a quantized graph in integer arithmetic on ``inputs`` ``[T, B, ...]``, exactly
    as :func:`~nirbridge.quantize.run_fixed_point` does, on torch.

    ``inputs``: array/tensor (one Input node) or dict by Input name (real values, rounded to
    the input format). ``record``: True for every node, or node names. ``device``: where
    the synapses run (``"cpu"``, ``"cuda"``, …). ``batch_size``: samples per chunk (None:
    all at once; ``"auto"``: about :data:`CHUNK_ROWS` steps·samples a chunk); chunks bound
    the memory of one pass and leave the integers unchanged.
    """
    g = qgraph.graph
    if not isinstance(inputs, dict):
        if len(qgraph.inputs) != 1:
            raise InputError(f"graph has inputs {qgraph.inputs}; pass a dict by name")
        inputs = {qgraph.inputs[0]: inputs}
    for name in qgraph.inputs:
        if name not in inputs:
            raise InputError(f"no input given for Input node '{name}'")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(f"device={device!r}: torch sees no CUDA device; use "
                                    "device='cpu'")
    xs = {n: _as_tensor(inputs[n]) for n in qgraph.inputs}
    batch = None
    for name, x in xs.items():
        if x.ndim < 3:
            raise InputError(f"input for node '{name}' has shape {tuple(x.shape)}; expected "
                             "[T, B, ...] with time first, then batch")
        if tuple(x.shape[2:]) != qgraph.shapes[name]:
            raise InputError(f"input for node '{name}' has per-step shape "
                             f"{tuple(x.shape[2:])}; the graph expects {qgraph.shapes[name]}")
        batch = x.shape[1] if batch is None else batch
    assert batch is not None
    if batch_size == "auto":
        steps = next(iter(xs.values())).shape[0]
        batch_size = max(1, CHUNK_ROWS // max(steps, 1))
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidParameterError(f"batch_size={batch_size!r}: give a positive number of "
                                    "samples per chunk, 'auto' or None")
    step = batch if not batch_size else min(batch_size, max(batch, 1))
    want = set(g.nodes) if record is True else set(record or ())
    units = schedule(g)
    cache = qgraph.kernels  # the weights as the kernels take them, made at the first run
    peaks = {n: input_peak(x, n) for n, x in xs.items()}  # one pass over each input
    chunks: list[_Chunk] = []
    for lo in range(0, max(batch, 1), max(step, 1)):
        # each chunk's inputs quantized on the host straight from their strided view into
        # a contiguous block (no copy of the whole input), with its own counts and bound
        part: dict[str, tuple[torch.Tensor, dict[str, int]]] = {}
        bounds: dict[str, float] = {}  # max|value| where known without a pass over it
        for n, x in xs.items():
            sat = fx.SaturationCounter()
            layer = qgraph.layers[n]
            assert isinstance(layer, QuantizedInput)
            q, bounds[n] = _quantize_input(x, layer, sat, peaks[n], lo, lo + step)
            part[n] = (q.to(dev), dict(sat.counts))
        chunk = _Chunk(qgraph, want, dev, bounds, cache)
        for unit in units:
            if not unit.cyclic:
                chunk.node(unit.nodes[0], part)
                continue
            outside = [chunk.values[p][0] for n in unit.nodes for p in qgraph.preds[n]
                       if p not in unit.nodes]
            ref = outside[0] if outside else chunk.values[qgraph.inputs[0]][0]
            chunk.cyclic(unit.nodes, ref.shape[0], ref.shape[1])
        # keep only what is returned: the outputs and the records
        chunk.values = {n: chunk.values[n] for n in qgraph.outputs}
        chunks.append(chunk)
    return _merge(qgraph, chunks)


def _merge(qgraph: QuantizedGraph, chunks: list[_Chunk]) -> EmulatedRun:
    outs = {}
    for n in qgraph.outputs:
        frac = chunks[0].values[n][1]
        y = _int(torch.cat([c.values[n][0] for c in chunks], dim=1)).cpu().numpy()
        outs[n] = y.astype(np.float64) * 2.0 ** -frac
    records: dict[str, FixedPointRecord] = {}
    for n, first in chunks[0].records.items():
        parts = [c.records[n] for c in chunks]
        rec = FixedPointRecord(frac_bits=dict(first.frac_bits),
                               saturations=_sum_counts(p.saturations for p in parts))
        for what in ("input", "output"):
            if getattr(first, what) is not None:
                setattr(rec, what, np.concatenate([getattr(p, what) for p in parts], axis=1))
        rec.states = {f: np.concatenate([p.states[f] for p in parts], axis=1)
                      for f in first.states}
        records[n] = rec
    sats = {n: _sum_counts(c.sats[n] for c in chunks) for n in chunks[0].sats}
    out: Any = outs[qgraph.outputs[0]] if len(outs) == 1 else outs
    return EmulatedRun(out, records, sats)


def _sum_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + int(v)
    return total


__all__ = ["CHUNK_ROWS", "DEFAULT_BATCH_SIZE", "EmulatedRun", "int_conv", "int_linear",
           "int_sumpool", "run_emulated"]
