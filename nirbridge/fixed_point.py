"""Integer arithmetic for Loihi 2 style fixed point (pure numpy, int64): shifts, rounding,
saturation, look-up tables, the rounding of real parameters onto a grid, and the fields
every integer neuron model shares.

The integer neuron models themselves (the bit-level specifications that the Lava
``fixed_pt`` lowering is checked against) live in each neuron's file under
:mod:`nirbridge.neurons`, built from these primitives: every one works on ``np.int64``
arrays, saturates every state explicitly, never divides at run time (reciprocals are
constants computed once by the quantizer), and states its rounding convention.

Formats
-------
- A *state* (``v``, ``u``, ``m``) is a signed ``state_bits``-bit integer (24 by default)
  with ``frac_bits`` fractional bits: ``real = int · 2^-frac_bits``. Saturation is
  symmetric, to ``±(2^(state_bits−1) − 1)``, exactly as Lava clips ``v``.
- A *constant multiplier* (decay, ``1/τ``, ``k``, ``tanh(a)``, ``c``) is a signed integer
  with ``decay_bits`` fractional bits (12: unit 4096), so ``mul_round(x, c, 12)`` is
  ``x·c`` in the format of ``x``.
- Synaptic input arrives as ``a_in`` (what Lava's Dense/Conv deliver), an integer with
  ``frac_bits − act_shift`` fractional bits; a neuron forms ``x = a_in << act_shift`` in
  its state format. With ``act_shift = 0``, ``a_in`` *is* the input in state units.
- Spikes are int64 0/1.

Rounding
--------
- :func:`mul_trunc` (stock Lava LIF only): ``sign(p)·(|p| >> 12)``, round toward zero,
  transcribed from ``lava/proc/lif/models.py`` (``AbstractPyLifModelFixed.subthr_dynamics``).
- :func:`mul_round` (every custom neuron): round half up, ``(p + 2^(n−1)) >> n`` (numpy's
  ``>>`` on int64 is an arithmetic shift, i.e. floor), which is unbiased except on exact
  ties and costs one add in hardware.
- :func:`shift_floor` (synapses): Lava Dense's ``weight_exp``: ``<< e`` for ``e ≥ 0``,
  arithmetic ``>> −e`` (floor) otherwise, applied to the accumulated sum.
- :class:`Rounder` (parameters, at quantization time): ``round_half_up(value·2^frac)``.

``sat`` arguments are optional :class:`SaturationCounter` objects that count, per state
field, how many elements were clipped (or, for Lava's ``u``, wrapped) in a step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from nirbridge.errors import InvalidParameterError, QuantizationError

IntArray = np.ndarray
COMPARES = (">", ">=")

#: Lava's fixed shifts (``AbstractPyLifModelFixed.__init__``): decays are 12-bit, and the
#: threshold and the synaptic input are left-shifted by 6 to MSB-align them with u and v.
LAVA_DECAY_SHIFT = 12
LAVA_VTH_SHIFT = 6
LAVA_ACT_SHIFT = 6
LAVA_STATE_BITS = 24


# ------------------------------------------------------------------------- arithmetic
def as_int(x: Any) -> IntArray:
    """``x`` as an ``np.int64`` array (integers only: floats must be rounded first)."""
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InvalidParameterError("fixed-point value is not an integer; round it first")
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    # no copy when it already is int64: integer models never write into their operands
    return arr.astype(np.int64, copy=False)


def sat_limit(bits: int) -> int:
    """Largest magnitude of a symmetric-saturating signed ``bits``-bit register."""
    return (1 << (bits - 1)) - 1


class SaturationCounter:
    """Counts saturation events per state field (elements clipped or wrapped)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, name: str, n: int) -> None:
        """Add ``n`` events for ``name``."""
        if n:
            self.counts[name] = self.counts.get(name, 0) + int(n)
        else:
            self.counts.setdefault(name, 0)

    @property
    def total(self) -> int:
        """All events of all fields."""
        return sum(self.counts.values())

    def __repr__(self) -> str:
        return f"SaturationCounter({self.counts})"


def saturate(x: IntArray, bits: int, sat: SaturationCounter | None = None,
             name: str = "v") -> IntArray:
    """Clip ``x`` to ``±(2^(bits−1) − 1)`` (symmetric, like Lava's ``v``), counting clips."""
    lim = sat_limit(bits)
    x = np.asarray(x)
    # fast path (the common case): nothing to clip, so no clip and no count pass
    if x.size == 0 or (-lim <= x.min() and x.max() <= lim):
        if sat is not None:
            sat.add(name, 0)
        return x
    if sat is not None:
        sat.add(name, int(np.count_nonzero((x > lim) | (x < -lim))))
    return np.clip(x, -lim, lim)


def lava_wrap(u: IntArray, bits: int = LAVA_STATE_BITS, sat: SaturationCounter | None = None,
              name: str = "u") -> IntArray:
    """Lava's wrap-around of the current ``u`` (transcribed, including its asymmetry).

    ``lava/proc/lif/models.py``, ``AbstractPyLifModelFixed.subthr_dynamics``: values above
    ``2^(bits−1)`` lose ``2^bits``; then values ``≤ −2^(bits−1)`` gain ``2^bits`` (computed
    from the unwrapped value, as Lava does).
    """
    m = 1 << (bits - 1)
    u = np.asarray(u)
    if u.size == 0 or (-m < u.min() and u.max() <= m):  # nothing wraps: skip both passes
        if sat is not None:
            sat.add(name, 0)
        return u
    wrapped = np.where(u > m, u - 2 * m, u)
    wrapped = np.where(wrapped <= -m, u + 2 * m, wrapped)
    if sat is not None:
        sat.add(name, int(np.count_nonzero(wrapped != u)))
    return wrapped


def shift_round(x: IntArray, n: int) -> IntArray:
    """``x · 2^-n`` rounded half up (``n > 0``); exact left shift for ``n ≤ 0``."""
    x = np.asarray(x, dtype=np.int64)
    if n > 0:
        return (x + (1 << (n - 1))) >> n
    return x << (-n)


def shift_floor(x: IntArray, e: int) -> IntArray:
    """Lava Dense's exponent: ``x << e`` for ``e ≥ 0``, else arithmetic ``x >> −e`` (floor)."""
    x = np.asarray(x, dtype=np.int64)
    return x << e if e >= 0 else x >> (-e)


def mul_round(x: IntArray, c: IntArray, frac: int) -> IntArray:
    """``x · c · 2^-frac`` rounded half up: multiply by a fixed-point constant."""
    return shift_round(np.asarray(x, dtype=np.int64) * np.asarray(c, dtype=np.int64), frac)


def mul_trunc(x: IntArray, c: IntArray, frac: int = LAVA_DECAY_SHIFT) -> IntArray:
    """``x · c · 2^-frac`` rounded toward zero, as Lava's LIF decays:
    ``np.sign(p) * np.right_shift(np.abs(p), 12)``."""
    p = np.asarray(x, dtype=np.int64) * np.asarray(c, dtype=np.int64)
    return np.sign(p) * (np.abs(p) >> frac)


def fires(v: IntArray, theta: IntArray, compare: str) -> IntArray:
    """The node's own comparison on integers, exact ties included: 1 where it fires."""
    if compare == ">":
        return (v > theta).astype(np.int64)
    if compare == ">=":
        return (v >= theta).astype(np.int64)
    raise InvalidParameterError(f"compare={compare!r} is not a firing convention; use '>' "
                                "or '>='")


# ------------------------------------------------------------------------------ LUTs
@dataclass(frozen=True)
class Lut:
    """A function tabulated on a uniform grid over a clamped input range.

    Entry ``i`` holds ``round(f((lo + i)·2^step_log2) · 2^out_frac)``. :meth:`__call__`
    rounds the input to the nearest grid point (half up) and clamps it into the table, so
    the error inside the range is at most ``max|f'|·2^(step_log2−1)`` plus half an output
    LSB, and outside it is ``|f(x) − f(edge)|``.
    """

    name: str
    table: IntArray
    lo: int
    step_log2: int
    out_frac: int

    def __call__(self, x: IntArray, x_frac: int) -> IntArray:
        """Look up ``f(x·2^-x_frac)`` for integers ``x`` with ``x_frac`` fractional bits."""
        grid = shift_round(x, x_frac + self.step_log2)
        idx = np.clip(grid - self.lo, 0, self.table.size - 1)
        return self.table[idx]

    @property
    def x_min(self) -> float:
        """Smallest tabulated input (real units)."""
        return self.lo * 2.0 ** self.step_log2

    @property
    def x_max(self) -> float:
        """Largest tabulated input (real units)."""
        return (self.lo + self.table.size - 1) * 2.0 ** self.step_log2


def make_lut(fn: Callable[[np.ndarray], np.ndarray], name: str, *, x_min: float = -8.0,
             x_max: float = 8.0, step_log2: int = -8, out_frac: int = 12) -> Lut:
    """Tabulate ``fn`` on ``[x_min, x_max]`` with step ``2^step_log2`` (ends rounded onto
    the grid), values with ``out_frac`` fractional bits."""
    if not x_max > x_min:
        raise InvalidParameterError(f"LUT '{name}': x_max={x_max} must exceed x_min={x_min}")
    step = 2.0 ** step_log2
    lo = int(np.floor(x_min / step))
    hi = int(np.ceil(x_max / step))
    grid = np.arange(lo, hi + 1, dtype=np.float64) * step
    table = np.round(fn(grid) * 2.0 ** out_frac).astype(np.int64)
    table.setflags(write=False)
    return Lut(name, table, lo, step_log2, out_frac)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function in float64 (for building tables)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def tanh_lut(out_frac: int, *, x_min: float = -8.0, x_max: float = 8.0,
             step_log2: int = -8) -> Lut:
    """tanh as a :class:`Lut` (outputs with ``out_frac`` fractional bits)."""
    return make_lut(np.tanh, "tanh", x_min=x_min, x_max=x_max, step_log2=step_log2,
                    out_frac=out_frac)


def sigmoid_lut(out_frac: int, *, x_min: float = -8.0, x_max: float = 8.0,
                step_log2: int = -8) -> Lut:
    """σ as a :class:`Lut` (used for σ(x), σ(c·x), σ(m), σ(v/τ))."""
    return make_lut(sigmoid, "sigmoid", x_min=x_min, x_max=x_max, step_log2=step_log2,
                    out_frac=out_frac)


def full_int(value: Any, batch: int, shape: tuple[int, ...]) -> IntArray:
    """``value`` (integers) broadcast to ``[batch, *shape]``, as a new int64 array."""
    return np.broadcast_to(as_int(value), (batch, *shape)).copy()


def per_neuron(value: Any, shape: tuple[int, ...]) -> IntArray:
    """``value`` (integers, a scalar or an array broadcastable to the population ``shape``)
    as one contiguous int64 entry per neuron (``[prod(shape)]``, C order): the parameter
    layout of the whole-sequence kernels, which index it by neuron."""
    return np.ascontiguousarray(np.broadcast_to(as_int(value), shape)).reshape(-1)


#: Significand bits of the float dtypes a whole-sequence kernel may read and write integers
#: in: every integer of magnitude below ``2^p`` is exact in them.
SCAN_FLOAT_BITS = {np.dtype(np.float32): 24, np.dtype(np.float64): 53}


def scan_input(a: Any) -> np.ndarray:
    """A whole-sequence kernel's input as it reads it: contiguous int64, or float32/float64
    as given (the batched emulator's float synapse output, whose every value is an integer
    the float holds exactly: the caller proves the bound; the kernel reads it as int64)."""
    arr = np.asarray(a)
    if arr.dtype not in SCAN_FLOAT_BITS:
        arr = arr.astype(np.int64, copy=False)
    return np.ascontiguousarray(arr)


def scan_output(n: tuple[int, ...], dtype: Any, bound: int, node: str) -> np.ndarray:
    """The output buffer of a whole-sequence kernel in ``dtype`` (int64, or a float of
    :data:`SCAN_FLOAT_BITS` when every output has magnitude ≤ ``bound`` below its ``2^p``:
    else refused, never rounded)."""
    dt = np.dtype(dtype)
    if dt != np.int64 and (dt not in SCAN_FLOAT_BITS or bound >= 2 ** SCAN_FLOAT_BITS[dt]):
        raise InvalidParameterError(f"{node}: out_dtype={dt} cannot hold its outputs (up to "
                                    f"{bound}) exactly; use int64")
    return np.empty(n, dtype=dt)


@lru_cache(maxsize=64)
def luts(lut_min: float, lut_max: float, step_log2: int, out_frac: int) -> tuple[Lut, Lut]:
    """The tanh and σ tables of a target's LUT grid with ``out_frac`` output bits (built
    once per grid: layers of one format share them)."""
    kw = dict(x_min=lut_min, x_max=lut_max, step_log2=step_log2)
    return tanh_lut(out_frac, **kw), sigmoid_lut(out_frac, **kw)


def luts_of(cfg: Any, out_frac: int) -> tuple[Lut, Lut]:
    """:func:`luts` on the grid of a quantization config (``lut_min``, ``lut_max``,
    ``lut_step_log2``)."""
    return luts(float(cfg.lut_min), float(cfg.lut_max), int(cfg.lut_step_log2), out_frac)


# ---------------------------------------------------------------- parameter rounding
@dataclass
class FieldReport:
    """How one parameter field was quantized."""

    count: int
    frac_bits: int
    clipped: int = 0
    zeroed: int = 0
    max_abs_error: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return dict(count=self.count, frac_bits=self.frac_bits, clipped=self.clipped,
                    zeroed=self.zeroed, max_abs_error=self.max_abs_error)


class Rounder:
    """Rounds a node's real parameters to fixed point, recording each field's losses in
    ``fields`` (name → :class:`FieldReport`)."""

    def __init__(self, name: str, fields: dict[str, FieldReport], state_bits: int) -> None:
        self.name = name
        self.fields = fields
        self.state_bits = state_bits

    def fixed(self, fname: str, value: Any, frac: int, *, lo: int | None = None,
              hi: int | None = None, clip: bool = False, scale: Any = 1.0,
              what: str = "") -> np.ndarray:
        """``round_half_up(value·2^frac)`` as int64, within ``[lo, hi]`` (default: the
        state's symmetric range). Out of range: clipped (``clip``) or QuantizationError.
        ``scale`` divides the error before it is reported (to report in original units).
        """
        v = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            raise QuantizationError(f"node '{self.name}': {fname} holds NaN or inf; fix the "
                                    "parameter before quantizing")
        lim = sat_limit(self.state_bits)
        lo = -lim if lo is None else lo
        hi = lim if hi is None else hi
        q = np.floor(v * 2.0 ** frac + 0.5)
        over = (q > hi) | (q < lo)
        n_over = int(np.count_nonzero(over))
        if n_over and not clip:
            bad = float(v[over].flat[0])
            raise QuantizationError(
                f"node '{self.name}': {fname} = {bad:g} does not fit the fixed-point format "
                f"({what or f'{self.state_bits}-bit'}, {frac} fractional bits: representable "
                f"[{lo * 2.0 ** -frac:g}, {hi * 2.0 ** -frac:g}]); rescale the layer or "
                "change the target's quantization settings")
        q = np.clip(q, lo, hi)
        err = np.abs(q * 2.0 ** -frac - v) / np.abs(np.asarray(scale, dtype=np.float64))
        err = np.where(np.isfinite(err), err, 0.0)
        self.report(fname, v, q, frac, n_over, err)
        return q.astype(np.int64)

    def report(self, fname: str, value: np.ndarray, q: np.ndarray, frac: int, clipped: int,
               err: np.ndarray) -> None:
        """Record field ``fname``: real ``value`` stood for by the integers ``q``."""
        self.fields[fname] = FieldReport(
            count=int(value.size), frac_bits=int(frac), clipped=clipped,
            zeroed=int(np.count_nonzero((value != 0) & (q == 0))),
            max_abs_error=float(err.max()) if err.size else 0.0)


# ----------------------------------------------------------------- common parameters
@dataclass
class NeuronParams:
    """Fields every integer neuron has.

    ``frac_bits``: fractional bits of the state; ``act_shift``: ``x = a_in << act_shift``;
    ``in_gain`` (optional, ``gain_frac`` fractional bits): a gain applied to ``x`` where it
    could not be folded into the weights; ``bias``: constant drive added to ``x`` (state
    units; the Lava LIF adds its bias to ``v`` instead, which is the same thing there).
    """

    frac_bits: int
    act_shift: int = 0
    state_bits: int = 24
    decay_bits: int = 12
    compare: str = ">"
    bias: Any = 0
    in_gain: Any = None
    gain_frac: int = 12

    def drive(self, a_in: IntArray, sat: SaturationCounter | None = None) -> IntArray:
        """``x = ((a_in << act_shift) [· in_gain]) + bias``, saturated to the state width."""
        x = np.asarray(a_in, dtype=np.int64) << self.act_shift
        if self.in_gain is not None:
            x = mul_round(x, self.in_gain, self.gain_frac)
        x = x + as_int(self.bias)
        return saturate(x, self.state_bits, sat, "x")

    def _sat(self, x: IntArray, sat: SaturationCounter | None, name: str) -> IntArray:
        return saturate(x, self.state_bits, sat, name)

    def state_frac(self, name: str) -> int:
        """Fractional bits of state field ``name`` (the state format unless a model's
        field has its own, e.g. ALIF's unitless ``b``)."""
        return self.frac_bits


__all__ = [
    "COMPARES",
    "FieldReport",
    "LAVA_ACT_SHIFT",
    "LAVA_DECAY_SHIFT",
    "LAVA_STATE_BITS",
    "LAVA_VTH_SHIFT",
    "SCAN_FLOAT_BITS",
    "Lut",
    "NeuronParams",
    "Rounder",
    "SaturationCounter",
    "as_int",
    "fires",
    "full_int",
    "lava_wrap",
    "luts",
    "luts_of",
    "make_lut",
    "mul_round",
    "mul_trunc",
    "per_neuron",
    "sat_limit",
    "saturate",
    "scan_input",
    "scan_output",
    "shift_floor",
    "shift_round",
    "sigmoid",
    "sigmoid_lut",
    "tanh_lut",
]
