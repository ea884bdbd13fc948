"""Integer golden models of the neurons for Loihi 2 style fixed point (pure numpy, int64).

These are the bit-level specifications that the Lava ``fixed_pt`` lowering is checked
against, integer state by integer state. Every function here works on ``np.int64`` arrays,
saturates every state explicitly, never divides at run time (reciprocals are constants
computed once by :mod:`nirbridge.quantize`), and states its rounding convention.

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

Neurons (each ``step(a_in, state, params, sat=None) -> (output, new_state)``)
-------------------------------------------------------------------------------
- :func:`lava_lif_step`: Lava's ``PyLifModelBitAcc`` bit for bit (``u`` wraps around,
  ``v`` clips, fires on ``v > vth << 6``, resets to 0); NIR LIF, IF, LI, I, CubaLIF and
  CubaLI (and DA-LIF with hard reset, which is exported as ``nir.LIF``) map onto it.
- :func:`linear_lif_step`: ``v ← v·d + x`` with hard or subtractive reset (SubtractiveLIF,
  DA-LIF).
- :func:`klif_step`, :func:`arlif_step` (both variants), :func:`clif_step`,
  :func:`alif_step`: the custom nodes of specs/neurons.md.
Every model applies its own comparison (``>`` or ``>=``), exact ties included.

``sat`` is an optional :class:`SaturationCounter` that counts, per state field, how many
elements were clipped (or, for Lava's ``u``, wrapped) in a step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from nirbridge.errors import InvalidParameterError

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
    return arr.astype(np.int64)


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


# ---------------------------------------------------------------------------- states
class LavaLIFState(NamedTuple):
    """Lava LIF state: current ``u`` and voltage ``v`` (24-bit integers)."""

    u: IntArray
    v: IntArray


class IntLIFState(NamedTuple):
    """State of the one-voltage integer models (linear LIF, KLIF)."""

    v: IntArray


class IntARLIFState(NamedTuple):
    """AR-LIF state: voltage and adaptive-reset memory ``m``."""

    v: IntArray
    m: IntArray


class IntCLIFState(NamedTuple):
    """CLIF state: voltage and complementary state ``m``."""

    v: IntArray
    m: IntArray


class IntALIFState(NamedTuple):
    """ALIF state: voltage, adaptation ``b`` and the previous step's spikes ``z``."""

    v: IntArray
    b: IntArray
    z: IntArray  # spikes of the previous step


def _full(value: Any, batch: int, shape: tuple[int, ...]) -> IntArray:
    return np.broadcast_to(as_int(value), (batch, *shape)).copy()


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


# ---------------------------------------------------------------------- Lava stock LIF
@dataclass
class LavaLIFParams:
    """Integer parameters of Lava's ``LIF`` process (``PyLifModelBitAcc``).

    ``du``, ``dv``: 12-bit decays (the current keeps ``4096 − (du + 1)``, the voltage
    ``4096 − dv``, of 4096); ``bias_mant``/``bias_exp``: the bias ``mant << exp`` (or
    ``>> −exp``) added to ``v`` each step; ``vth``: threshold, compared as
    ``vth << vth_shift``; ``vth=None`` means the neuron never fires and outputs ``v`` (LI).
    ``u_init``/``v_init``: initial state (Lava Vars ``u`` and ``v``).

    Not in stock Lava (they exist for graphs Lava cannot express exactly; see
    :attr:`lava_issues`): ``compare=">="``, ``in_gain`` (``a_in`` times a constant with
    ``gain_frac`` fractional bits, where a gain could not be folded into the weights) and
    ``a_bias`` (a constant added to ``a_in``, e.g. a CubaLIF's synaptic bias).
    """

    du: Any
    dv: Any
    bias_mant: Any = 0
    bias_exp: Any = 0
    vth: Any = None
    compare: str = ">"
    frac_bits: int = 6
    vth_shift: int = LAVA_VTH_SHIFT
    act_shift: int = LAVA_ACT_SHIFT
    state_bits: int = LAVA_STATE_BITS
    decay_bits: int = LAVA_DECAY_SHIFT
    u_init: Any = 0
    v_init: Any = 0
    in_gain: Any = None
    gain_frac: int = 12
    a_bias: Any = None

    @property
    def effective_bias(self) -> IntArray:
        """Lava's ``scale_bias``: ``mant << exp`` where ``exp ≥ 0``, else ``mant >> −exp``."""
        mant = as_int(self.bias_mant)
        exp = as_int(self.bias_exp)
        return np.where(exp >= 0, mant << np.maximum(exp, 0), mant >> np.maximum(-exp, 0))

    @property
    def spiking(self) -> bool:
        """False for a leaky integrator (``vth is None``), whose output is ``v``."""
        return self.vth is not None

    @property
    def lava_issues(self) -> list[str]:
        """Why stock Lava ``LIF`` (fixed_pt) could not run these parameters exactly."""
        issues = []
        if self.compare != ">":
            issues.append("fires on '>=' (Lava's LIF fires on '>')")
        if self.vth_shift != LAVA_VTH_SHIFT or self.act_shift != LAVA_ACT_SHIFT:
            issues.append(f"shifts {self.vth_shift}/{self.act_shift} (Lava's are 6/6)")
        if self.decay_bits != LAVA_DECAY_SHIFT or self.state_bits != LAVA_STATE_BITS:
            issues.append("decay or state width differs from Lava's 12/24 bits")
        for name in ("du", "dv", "vth"):
            val = getattr(self, name)
            if val is not None and np.unique(as_int(val)).size > 1:
                issues.append(f"{name} varies per neuron (a scalar in Lava)")
        if self.vth is not None:
            vth = as_int(self.vth)
            if np.any(vth < 0) or np.any(vth > (1 << 17) - 1):
                issues.append("vth outside Lava's unsigned 17 bits")
        mant, exp = as_int(self.bias_mant), as_int(self.bias_exp)
        if np.any(mant > 4095) or np.any(mant < -4096) or np.any(exp > 7) or np.any(exp < 0):
            issues.append("bias outside Lava's 13-bit mantissa / 3-bit exponent")
        if self.in_gain is not None:
            issues.append("input gain not folded into the weights")
        if self.a_bias is not None and np.any(as_int(self.a_bias) != 0):
            issues.append("constant synaptic input (a_bias) needs an extra source in Lava")
        return issues

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> LavaLIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        return LavaLIFState(_full(self.u_init, batch, shape), _full(self.v_init, batch, shape))


def lava_lif_step(a_in: IntArray, state: LavaLIFState, p: LavaLIFParams,
                  sat: SaturationCounter | None = None) -> tuple[IntArray, LavaLIFState]:
    """One step of Lava's bit-accurate LIF (``lava/proc/lif/models.py``, lava-nc 0.10.0,
    ``AbstractPyLifModelFixed.subthr_dynamics`` + ``PyLifModelBitAcc``)::

        u ← wrap24( sign·(|u·(4096 − (du + 1))| >> 12) + (a_in << 6) )
        v ← clip( sign·(|v·(4096 − dv)| >> 12) + u + bias, ±(2^23 − 1) )
        s = v > (vth << 6);   v ← 0 where s

    Returns ``(spikes, state)``, or ``(v, state)`` when ``vth is None`` (a leaky
    integrator). Lava computes in int32 after the int64 product; int64 here gives the same
    result whenever Lava's int32 does not overflow (always, for 24-bit states and 16-bit
    ``a_in``).
    """
    unity = 1 << p.decay_bits
    a = np.asarray(a_in, dtype=np.int64)
    if p.in_gain is not None:
        a = mul_round(a, p.in_gain, p.gain_frac)
    if p.a_bias is not None:
        a = a + as_int(p.a_bias)
    u = mul_trunc(state.u, unity - (as_int(p.du) + 1), p.decay_bits) + (a << p.act_shift)
    u = lava_wrap(u, p.state_bits, sat, "u")
    v = mul_trunc(state.v, unity - as_int(p.dv), p.decay_bits) + u + p.effective_bias
    v = saturate(v, p.state_bits, sat, "v")
    if p.vth is None:
        return v, LavaLIFState(u, v)
    s = fires(v, as_int(p.vth) << p.vth_shift, p.compare)
    v = np.where(s.astype(bool), 0, v)
    return s, LavaLIFState(u, v)


# ------------------------------------------------------------------- linear-reset LIF
@dataclass
class LinearLIFParams(NeuronParams):
    """``v ← sat(v·decay + x)``; fire on ``v ⋚ theta``; reset hard (to ``v_reset``) or
    subtractive (``v − theta``). SubtractiveLIF (``decay = 1 − dt/τ``, input gain
    ``R·dt/τ``, bias ``dt/τ·v_leak``) and DA-LIF (``decay = β``, gain ``α``)."""

    decay: Any = 4096
    theta: Any = 0
    reset: str = "soft"
    v_reset: Any = 0
    v_init: Any = 0

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntLIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        return IntLIFState(_full(self.v_init, batch, shape))


def linear_lif_step(a_in: IntArray, state: IntLIFState, p: LinearLIFParams,
                    sat: SaturationCounter | None = None) -> tuple[IntArray, IntLIFState]:
    """``v ← sat(round(v·decay/4096) + x)``; ``s = v ⋚ θ``; hard: ``v ← v_reset`` where
    ``s``; soft: ``v ← sat(v − s·θ)``."""
    x = p.drive(a_in, sat)
    v = p._sat(mul_round(state.v, p.decay, p.decay_bits) + x, sat, "v")
    theta = as_int(p.theta)
    s = fires(v, theta, p.compare)
    if p.reset == "hard":
        v = np.where(s.astype(bool), as_int(p.v_reset), v)
    elif p.reset in ("soft", "subtract"):
        v = p._sat(v - s * theta, sat, "v")
    else:
        raise InvalidParameterError(f"reset={p.reset!r} is unknown; use 'hard' or 'soft'")
    return s, IntLIFState(v)


# ----------------------------------------------------------------------------- KLIF
@dataclass
class KLIFParams(NeuronParams):
    """KLIF in integers. With ``h`` the float pre-activation, ``k·h`` is
    ``v·kd + x`` where ``kd = k(1 − 1/τ)`` (Q12), the input gain is ``k/τ`` (decay_input)
    or ``k`` and the bias holds ``k·v_r/τ`` (folded by the quantizer). ``inv_k`` (Q12) is
    ``1/k`` for ``scale_reset``."""

    kd: Any = 4096
    theta: Any = 0
    v_reset: Any = 0
    soft_reset: bool = False
    scale_reset: bool = False
    inv_k: Any = 4096
    v_init: Any = 0

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntLIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        return IntLIFState(_full(self.v_init, batch, shape))


def klif_step(a_in: IntArray, state: IntLIFState, p: KLIFParams,
              sat: SaturationCounter | None = None) -> tuple[IntArray, IntLIFState]:
    """``f = max(0, sat(round(v·kd/4096) + x))``; ``s = f ⋚ θ``;
    hard: ``v = f·(1−s) [·1/k] + v_r·s``; soft: ``v = (f − s·θ) [·1/k]``."""
    x = p.drive(a_in, sat)
    f = np.maximum(p._sat(mul_round(state.v, p.kd, p.decay_bits) + x, sat, "v"), 0)
    theta = as_int(p.theta)
    s = fires(f, theta, p.compare)
    if p.soft_reset:
        v = f - s * theta
        if p.scale_reset:
            v = mul_round(v, p.inv_k, p.decay_bits)
    else:
        kept = f * (1 - s)
        if p.scale_reset:
            kept = mul_round(kept, p.inv_k, p.decay_bits)
        v = kept + as_int(p.v_reset) * s
    return s, IntLIFState(p._sat(v, sat, "v"))


# ---------------------------------------------------------------------------- AR-LIF
@dataclass
class ARLIFParams(NeuronParams):
    """AR-LIF in integers: ``decay``, ``tanh_a``, ``c`` in Q12; ``theta`` (= v_th) in
    state units; LUTs for tanh and σ with ``frac_bits`` output bits. ``bias`` (the
    synapse's bias) is part of ``x`` before the nonlinearities, as the spec requires."""

    decay: Any = 2048
    theta: Any = 0
    tanh_a: Any = 0
    c: Any = 0
    memoryless_m: bool = False
    tanh: Lut | None = None
    sigmoid: Lut | None = None

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntARLIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        z = _full(0, batch, shape)
        return IntARLIFState(z, z.copy())


def arlif_step(a_in: IntArray, state: IntARLIFState, p: ARLIFParams,
               sat: SaturationCounter | None = None) -> tuple[IntArray, IntARLIFState]:
    """With ``S = frac_bits``, ``one = 2^S``, ``r(a, b) = round(a·b/2^S)``::

        v ← sat(round(v·decay/4096) + x)
        θ = theta + round(tanh_a·TANH(x)/4096)
        s = v ⋚ θ
        m ← 0 (memoryless) | r(max(m,0), g) − r(max(−m,0), one − g),  g = SIG(round(c·x/4096))
        m ← sat(m + (2s − 1)·SIG(x))
        v ← sat(v − s·(θ + SIG(m)))
    """
    assert p.tanh is not None and p.sigmoid is not None, "ARLIFParams needs its LUTs"
    S, q = p.frac_bits, p.decay_bits
    x = p.drive(a_in, sat)
    v = p._sat(mul_round(state.v, p.decay, q) + x, sat, "v")
    theta = as_int(p.theta) + mul_round(p.tanh(x, S), p.tanh_a, q)
    s = fires(v, theta, p.compare)
    if p.memoryless_m:
        m = np.zeros_like(state.m)
    else:
        g = p.sigmoid(mul_round(x, p.c, q), S)
        one = np.int64(1) << S
        m = (mul_round(np.maximum(state.m, 0), g, S)
             - mul_round(np.maximum(-state.m, 0), one - g, S))
    m = p._sat(m + (2 * s - 1) * p.sigmoid(x, S), sat, "m")
    v = p._sat(v - s * (theta + p.sigmoid(m, S)), sat, "v")
    return s, IntARLIFState(v, m)


# ------------------------------------------------------------------------------ CLIF
@dataclass
class CLIFParams(NeuronParams):
    """CLIF in integers: ``decay = 1 − 1/τ`` and ``inv_tau = 1/τ`` in Q12, ``theta`` in
    state units, σ as a LUT with ``frac_bits`` output bits."""

    decay: Any = 2048
    inv_tau: Any = 2048
    theta: Any = 0
    sigmoid: Lut | None = None

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntCLIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        z = _full(0, batch, shape)
        return IntCLIFState(z, z.copy())


def clif_step(a_in: IntArray, state: IntCLIFState, p: CLIFParams,
              sat: SaturationCounter | None = None) -> tuple[IntArray, IntCLIFState]:
    """``v ← sat(round(v·decay/4096) + x)``; ``m ← round(m·SIG(round(v·inv_tau/4096))/2^S)``;
    ``s = v ⋚ θ``; ``m ← sat(m + s·2^S)``; ``v ← sat(v − s·θ − s·SIG(m))``."""
    assert p.sigmoid is not None, "CLIFParams needs its sigmoid LUT"
    S, q = p.frac_bits, p.decay_bits
    x = p.drive(a_in, sat)
    v = p._sat(mul_round(state.v, p.decay, q) + x, sat, "v")
    m = mul_round(state.m, p.sigmoid(mul_round(v, p.inv_tau, q), S), S)
    theta = as_int(p.theta)
    s = fires(v, theta, p.compare)
    m = p._sat(m + (s << S), sat, "m")
    v = p._sat(v - s * theta - s * p.sigmoid(m, S), sat, "v")
    return s, IntCLIFState(v, m)


# ------------------------------------------------------------------------------ ALIF
@dataclass
class ALIFParams(NeuronParams):
    """ALIF in integers: ``alpha``, ``rho`` in Q12; ``b`` has ``b_frac`` fractional bits
    (unitless, in [0, 1]); ``omr`` is ``1 − ρ`` in ``b_frac`` bits, computed from the
    quantized ρ so that ``ρ + (1 − ρ) = 1`` holds exactly; ``theta`` and ``beta`` in state
    units. The input gain ``1 − α`` is folded into the weights by the quantizer."""

    alpha: Any = 4096
    rho: Any = 4096
    omr: Any = 0
    b_frac: int = 12
    theta: Any = 0
    beta: Any = 0

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntALIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        z = _full(0, batch, shape)
        return IntALIFState(z, z.copy(), z.copy())


def alif_step(a_in: IntArray, state: IntALIFState, p: ALIFParams,
              sat: SaturationCounter | None = None) -> tuple[IntArray, IntALIFState]:
    """Same ordering as :func:`nirbridge.neurons.functional.alif_step`::

        b ← sat(round(b·rho/4096) + z_prev·omr)
        A = theta + round(beta·b / 2^b_frac)
        v ← sat(round(v·alpha/4096) + x − z_prev·A)
        z = v ⋚ A
    """
    q = p.decay_bits
    x = p.drive(a_in, sat)
    z_prev = state.z
    b = p._sat(mul_round(state.b, p.rho, q) + z_prev * as_int(p.omr), sat, "b")
    a_thr = as_int(p.theta) + mul_round(p.beta, b, p.b_frac)
    v = p._sat(mul_round(state.v, p.alpha, q) + x - z_prev * a_thr, sat, "v")
    z = fires(v, a_thr, p.compare)
    return z, IntALIFState(v, b, z)


# ------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class IntegerModel:
    """One integer neuron model: its step function and what it outputs."""

    kind: str
    step: Callable[..., tuple[IntArray, Any]]
    params: type
    spiking: bool = True
    state_fields: tuple[str, ...] = field(default=("v",))


#: The integer models by kind (the quantizer picks one per node type).
MODELS: dict[str, IntegerModel] = {
    "lava_lif": IntegerModel("lava_lif", lava_lif_step, LavaLIFParams, True, ("u", "v")),
    "linear_lif": IntegerModel("linear_lif", linear_lif_step, LinearLIFParams),
    "klif": IntegerModel("klif", klif_step, KLIFParams),
    "arlif": IntegerModel("arlif", arlif_step, ARLIFParams, True, ("v", "m")),
    "clif": IntegerModel("clif", clif_step, CLIFParams, True, ("v", "m")),
    "alif": IntegerModel("alif", alif_step, ALIFParams, True, ("v", "b", "z")),
}


def neuron_step(kind: str, a_in: IntArray, state: Any, params: Any,
                sat: SaturationCounter | None = None) -> tuple[IntArray, Any]:
    """Dispatch one step of the integer model ``kind``."""
    return MODELS[kind].step(a_in, state, params, sat)


__all__ = [
    "ALIFParams",
    "ARLIFParams",
    "CLIFParams",
    "IntALIFState",
    "IntARLIFState",
    "IntCLIFState",
    "IntLIFState",
    "IntegerModel",
    "KLIFParams",
    "LAVA_ACT_SHIFT",
    "LAVA_DECAY_SHIFT",
    "LAVA_STATE_BITS",
    "LAVA_VTH_SHIFT",
    "LavaLIFParams",
    "LavaLIFState",
    "LinearLIFParams",
    "Lut",
    "MODELS",
    "NeuronParams",
    "SaturationCounter",
    "alif_step",
    "arlif_step",
    "as_int",
    "clif_step",
    "fires",
    "klif_step",
    "lava_lif_step",
    "lava_wrap",
    "linear_lif_step",
    "make_lut",
    "mul_round",
    "mul_trunc",
    "neuron_step",
    "sat_limit",
    "saturate",
    "shift_floor",
    "shift_round",
    "sigmoid",
    "sigmoid_lut",
    "tanh_lut",
]
