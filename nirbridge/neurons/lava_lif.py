"""The integer model NIR's own neurons share: Lava's bit-accurate LIF, and the quantizer
plan that puts LIF, IF, LI, I, CubaLIF and CubaLI in its form.

:func:`lava_lif_step` transcribes ``PyLifModelBitAcc`` (lava-nc 0.10.0); Lava's own ``LIF``
Process runs a quantized layer exactly where it is stock-compatible (:func:`stock_lava`);
otherwise nirbridge's generic integer Process runs this step. Used by the registry entries
of :mod:`~nirbridge.neurons.standard`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, NamedTuple

import nir
import numpy as np

from nirbridge import fixed_point as fx
from nirbridge.errors import InvalidParameterError, QuantizationError
from nirbridge.neurons._base import compare_of
from nirbridge.neurons._registry import IntegerModel, QuantPlan, StockLava


class LavaLIFState(NamedTuple):
    """Lava LIF state: current ``u`` and voltage ``v`` (24-bit integers)."""

    u: np.ndarray
    v: np.ndarray


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
    vth_shift: int = fx.LAVA_VTH_SHIFT
    act_shift: int = fx.LAVA_ACT_SHIFT
    state_bits: int = fx.LAVA_STATE_BITS
    decay_bits: int = fx.LAVA_DECAY_SHIFT
    u_init: Any = 0
    v_init: Any = 0
    in_gain: Any = None
    gain_frac: int = 12
    a_bias: Any = None

    @cached_property
    def effective_bias(self) -> np.ndarray:
        """Lava's ``scale_bias``: ``mant << exp`` where ``exp ≥ 0``, else ``mant >> −exp``
        (computed once: the quantizer builds the parameters and nothing changes them, and
        every step reads it)."""
        mant = fx.as_int(self.bias_mant)
        exp = fx.as_int(self.bias_exp)
        return np.where(exp >= 0, mant << np.maximum(exp, 0), mant >> np.maximum(-exp, 0))

    @property
    def spiking(self) -> bool:
        """False for a leaky integrator (``vth is None``), whose output is ``v``."""
        return self.vth is not None

    def state_frac(self, name: str) -> int:
        """Fractional bits of state field ``name`` (both ``u`` and ``v``: the state's)."""
        return self.frac_bits

    @property
    def lava_issues(self) -> list[str]:
        """Why stock Lava ``LIF`` (fixed_pt) could not run these parameters exactly."""
        issues = []
        if self.compare != ">":
            issues.append("fires on '>=' (Lava's LIF fires on '>')")
        if self.vth_shift != fx.LAVA_VTH_SHIFT or self.act_shift != fx.LAVA_ACT_SHIFT:
            issues.append(f"shifts {self.vth_shift}/{self.act_shift} (Lava's are 6/6)")
        if self.decay_bits != fx.LAVA_DECAY_SHIFT or self.state_bits != fx.LAVA_STATE_BITS:
            issues.append("decay or state width differs from Lava's 12/24 bits")
        for name in ("du", "dv", "vth"):
            val = getattr(self, name)
            if val is not None and np.unique(fx.as_int(val)).size > 1:
                issues.append(f"{name} varies per neuron (a scalar in Lava)")
        if self.vth is not None:
            vth = fx.as_int(self.vth)
            if np.any(vth < 0) or np.any(vth > (1 << 17) - 1):
                issues.append("vth outside Lava's unsigned 17 bits")
        mant, exp = fx.as_int(self.bias_mant), fx.as_int(self.bias_exp)
        if np.any(mant > 4095) or np.any(mant < -4096) or np.any(exp > 7) or np.any(exp < 0):
            issues.append("bias outside Lava's 13-bit mantissa / 3-bit exponent")
        if self.in_gain is not None:
            issues.append("input gain not folded into the weights")
        if self.a_bias is not None and np.any(fx.as_int(self.a_bias) != 0):
            issues.append("constant synaptic input (a_bias) needs an extra source in Lava")
        return issues

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> LavaLIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        return LavaLIFState(fx.full_int(self.u_init, batch, shape),
                            fx.full_int(self.v_init, batch, shape))


def lava_lif_step(a_in: np.ndarray, state: LavaLIFState, p: LavaLIFParams,
                  sat: fx.SaturationCounter | None = None) -> tuple[np.ndarray, LavaLIFState]:
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
        a = fx.mul_round(a, p.in_gain, p.gain_frac)
    if p.a_bias is not None:
        a = a + fx.as_int(p.a_bias)
    u = fx.mul_trunc(state.u, unity - (fx.as_int(p.du) + 1), p.decay_bits) + (a << p.act_shift)
    u = fx.lava_wrap(u, p.state_bits, sat, "u")
    v = fx.mul_trunc(state.v, unity - fx.as_int(p.dv), p.decay_bits) + u + p.effective_bias
    v = fx.saturate(v, p.state_bits, sat, "v")
    if p.vth is None:
        return v, LavaLIFState(u, v)
    s = fx.fires(v, fx.as_int(p.vth) << p.vth_shift, p.compare)
    v = np.where(s.astype(bool), 0, v)
    return s, LavaLIFState(u, v)


@cache
def _scan_kernel(spiking: bool, use_gain: bool, trace: bool, ge: bool):
    """The compiled loop of :func:`lava_lif_scan` for one setting of its flags (numba,
    compiled at its first call with them, about a second, once per process: no cache file
    is written). The flags are compile-time constants: their branches vanish and the loop
    over neurons is branch-free (selects), so it vectorizes (2-3x faster than testing them
    per neuron)."""
    import numba

    @numba.njit(cache=False, nogil=True)
    def kernel(a, u, v, cu, cv, bias, vth, gain, abias, decay_bits, act_shift, state_bits,
               gain_frac, out, u_tr, v_tr, counts):
        # every operation is lava_lif_step's on one neuron, in int64 (numba's int64 >> is
        # arithmetic and its + and * wrap, like numpy's)
        n_t, n_b, n_p = a.shape
        m = np.int64(1) << (state_bits - 1)
        lim = m - 1
        half = (np.int64(1) << (gain_frac - 1)) if gain_frac > 0 else np.int64(0)
        n_u = np.int64(0)
        n_v = np.int64(0)
        for t in range(n_t):
            for b in range(n_b):
                at, ub, vb, ot = a[t, b], u[b], v[b], out[t, b]
                for k in range(n_p):
                    x = np.int64(at[k])  # a float a holds integers exactly
                    if use_gain:
                        g = x * gain[k]
                        x = (g + half) >> gain_frac if gain_frac > 0 else g << (-gain_frac)
                    x = x + abias[k]
                    pu = ub[k] * cu[k]
                    q = abs(pu) >> decay_bits  # mul_trunc: the magnitude shifted, signed
                    uu = (q if pu >= 0 else -q) + (x << act_shift)
                    w = uu - 2 * m if uu > m else (uu + 2 * m if uu <= -m else uu)
                    n_u += w != uu
                    pv = vb[k] * cv[k]
                    q = abs(pv) >> decay_bits
                    vv = (q if pv >= 0 else -q) + w + bias[k]
                    c = min(max(vv, -lim), lim)
                    n_v += c != vv
                    vv = c
                    if spiking:
                        s = vv >= vth[k] if ge else vv > vth[k]
                        ot[k] = s
                        vv = 0 if s else vv
                    else:
                        ot[k] = vv
                    ub[k] = w
                    vb[k] = vv
                    if trace:
                        u_tr[t, b, k] = w
                        v_tr[t, b, k] = vv
        counts[0] = n_u
        counts[1] = n_v

    return kernel


def lava_lif_scan(a_in: np.ndarray, state: LavaLIFState, p: LavaLIFParams,
                  sat: fx.SaturationCounter | None = None, trace: bool = False,
                  out_dtype: Any = np.int64
                  ) -> tuple[np.ndarray, LavaLIFState, dict[str, np.ndarray]]:
    """:func:`lava_lif_step` over a whole sequence ``a_in`` ``[T, B, *shape]`` in one
    compiled loop (see :data:`~nirbridge.neurons.Scan`): the same integers, final state,
    per-step ``u``, ``v`` (when ``trace``) and saturation counts as ``T`` steps."""
    a = fx.scan_input(a_in)
    n_t, n_b, shape = a.shape[0], a.shape[1], tuple(a.shape[2:])
    n_p = int(np.prod(shape, dtype=np.int64))
    if p.vth is not None and p.compare not in fx.COMPARES:
        raise InvalidParameterError(f"compare={p.compare!r} is not a firing convention; "
                                    "use '>' or '>='")
    unity = 1 << p.decay_bits
    # the per-neuron constants lava_lif_step forms every step, formed once
    cu = fx.per_neuron(unity - (fx.as_int(p.du) + 1), shape)
    cv = fx.per_neuron(unity - fx.as_int(p.dv), shape)
    bias = fx.per_neuron(p.effective_bias, shape)
    vth = fx.per_neuron(0 if p.vth is None else fx.as_int(p.vth) << p.vth_shift, shape)
    gain = fx.per_neuron(1 if p.in_gain is None else p.in_gain, shape)
    abias = fx.per_neuron(0 if p.a_bias is None else p.a_bias, shape)
    u = np.array(np.broadcast_to(fx.as_int(state.u), (n_b, *shape))).reshape(n_b, n_p)
    v = np.array(np.broadcast_to(fx.as_int(state.v), (n_b, *shape))).reshape(n_b, n_p)
    out = fx.scan_output((n_t, n_b, n_p), out_dtype,
                         1 if p.vth is not None else fx.sat_limit(p.state_bits), "Lava LIF")
    n_tr = n_t if trace else 0
    u_tr = np.empty((n_tr, n_b, n_p), dtype=np.int64)
    v_tr = np.empty((n_tr, n_b, n_p), dtype=np.int64)
    counts = np.zeros(2, dtype=np.int64)
    kernel = _scan_kernel(p.vth is not None, p.in_gain is not None, bool(trace),
                          p.vth is not None and p.compare == ">=")
    kernel(a.reshape(n_t, n_b, n_p), u, v, cu, cv, bias, vth, gain, abias, p.decay_bits,
           p.act_shift, p.state_bits, p.gain_frac, out, u_tr, v_tr, counts)
    if sat is not None and n_t:
        sat.add("u", int(counts[0]))
        sat.add("v", int(counts[1]))
    full = (n_b, *shape)
    traces = {"u": u_tr.reshape(n_t, *full), "v": v_tr.reshape(n_t, *full)} if trace else {}
    return out.reshape(n_t, *full), LavaLIFState(u.reshape(full), v.reshape(full)), traces


#: Lava's own LIF with periodic reset (the runner sets ``reset_interval``/``offset``).
LAVA_LIF_PROCESS = "lava.proc.lif.process:LIFReset"


def _scalar(value: Any, name: str, layer: Any) -> int:
    arr = np.unique(fx.as_int(value))
    if arr.size != 1:  # excluded by the issues check
        raise QuantizationError(f"node '{layer.name}': {name} varies per neuron")
    return int(arr[0])


def stock_lava(layer: Any) -> StockLava | list[str]:
    """Lava's own ``LIFReset`` for a quantized layer it runs exactly, else why not."""
    p = layer.params
    issues = list(p.lava_issues)
    if not p.spiking:
        issues.append("does not spike (its output is v; Lava's LIF sends spikes)")
    if np.any(fx.as_int(p.u_init) != 0) or np.any(fx.as_int(p.v_init) != 0):
        issues.append("non-zero initial state (Lava's LIFReset resets u, v to 0)")
    if issues:
        return issues

    def flat(v: Any) -> np.ndarray:
        return np.broadcast_to(fx.as_int(v), layer.shape).ravel().copy()

    return StockLava(LAVA_LIF_PROCESS,
                     dict(du=_scalar(p.du, "du", layer), dv=_scalar(p.dv, "dv", layer),
                          bias_mant=flat(p.bias_mant), bias_exp=flat(p.bias_exp),
                          vth=_scalar(p.vth, "vth", layer)),
                     state_vars=("u", "v"))


LAVA_LIF_MODEL = IntegerModel("lava_lif", lava_lif_step, LavaLIFParams, ("u", "v"),
                              stock_lava=stock_lava, stock_name="Lava LIF",
                              input_shift_is_frac=True, scan=lava_lif_scan)


def lava_bias(fq: fx.Rounder, bias: np.ndarray, S: int) -> tuple[np.ndarray, np.ndarray]:
    """Lava's bias ``mant << exp`` (13-bit signed mantissa, smallest exponent ≥ 0)."""
    b = np.asarray(bias, dtype=np.float64)
    if not np.all(np.isfinite(b)):
        raise QuantizationError(f"node '{fq.name}': bias holds NaN or inf")
    lim = fx.sat_limit(fq.state_bits)
    exact = np.floor(b * 2.0 ** S + 0.5)
    if np.any(np.abs(exact) > lim):
        bad = float(b[np.abs(exact) > lim].flat[0])
        raise QuantizationError(f"node '{fq.name}': bias = {bad:g} does not fit the "
                                f"{fq.state_bits}-bit state with {S} fractional bits")
    exp = np.zeros(b.shape, dtype=np.int64)
    mant = exact.astype(np.int64)
    for e in range(1, fq.state_bits):
        big = (mant > 4095) | (mant < -4096)
        if not big.any():
            break
        exp = np.where(big, e, exp)
        mant = np.where(big, np.floor(b * 2.0 ** (S - e) + 0.5).astype(np.int64), mant)
    eff = mant.astype(np.float64) * 2.0 ** exp.astype(np.float64) * 2.0 ** -S
    fq.report("bias", b, mant, S, 0, np.abs(eff - b))
    return mant, exp


def quantize_standard(name: str, node: nir.NIRNode, dt: float, shape: tuple[int, ...],
                      cfg: Any) -> QuantPlan:
    """The Lava-LIF form of any of NIR's own neurons (see the quantizer's docstring)."""
    def fill(v: Any) -> np.ndarray:
        return np.array(np.broadcast_to(np.asarray(v, dtype=np.float64), shape))

    def p(f: str) -> np.ndarray:
        return fill(getattr(node, f))

    cmp = compare_of(node)
    zeros = np.zeros(shape)
    q = cfg.decay_bits
    spiking = isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF))
    cuba = isinstance(node, (nir.CubaLIF, nir.CubaLI))
    if isinstance(node, (nir.IF, nir.I)):
        gm = zeros
        gain = p("r") * (dt if isinstance(node, nir.I) else 1.0)
    else:
        gm = dt / p("tau_mem" if cuba else "tau")
        gain = gm * p("r")
    gs = dt / p("tau_syn") if cuba else None
    if cuba:
        gain = gain * gs * p("w_in")
    v_r = p("v_reset") if spiking else zeros
    v_leak = p("v_leak") if hasattr(node, "v_leak") else zeros
    own = gm * (v_leak - v_r)
    theta = p("v_threshold") - v_r if spiking else None
    v0 = (getattr(node, "metadata", None) or {}).get("v_init") \
        if isinstance(node, (nir.LIF, nir.IF)) else None
    v_init = (fill(v0) if v0 is not None else zeros) - v_r

    def build(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
              const: np.ndarray) -> LavaLIFParams:
        dv = fq.fixed("dv", gm, q, lo=0, hi=(1 << q) - 1, clip=True,
                      what="Lava dv, 12-bit unsigned")
        if cuba:
            du = fq.fixed("du", gs, q, lo=1, hi=1 << q, clip=True,
                          what="Lava du + 1, 12-bit") - 1
            v_bias, a_bias = own, const
        else:
            du, v_bias, a_bias = np.int64((1 << q) - 1), own + const, None
        mant, exp = lava_bias(fq, v_bias, S)
        vth = None
        if theta is not None:
            lim = fx.sat_limit(cfg.state_bits) >> a
            vth = fq.fixed("v_threshold", theta, k, lo=-lim, hi=lim,
                           what=f"{cfg.state_bits}-bit state >> {a}")
        ab = None
        if a_bias is not None and np.any(a_bias != 0):
            ab = fq.fixed("a_bias", a_bias, S - a)
        return LavaLIFParams(
            du=du, dv=dv, bias_mant=mant, bias_exp=exp, vth=vth, compare=cmp,
            frac_bits=S, vth_shift=a, act_shift=a, state_bits=cfg.state_bits,
            decay_bits=q, u_init=0, v_init=fq.fixed("v_init", v_init, S),
            in_gain=in_gain, gain_frac=gain_frac, a_bias=ab)

    tmax = float(np.max(np.abs(theta))) if theta is not None else 0.0
    tmax = max(tmax, float(np.max(np.abs(v_init), initial=0.0)))
    key = _FRAC_KEY[type(node)]
    return QuantPlan(LAVA_LIF_MODEL, key, True, spiking, gain, own, tmax,
                     float(np.min(gm, initial=1.0)), build)


#: The ``[quantization.frac_bits]`` key of each node type (I shares IF's, CubaLI CubaLIF's).
_FRAC_KEY: dict[type, str] = {nir.LIF: "lif", nir.IF: "if", nir.I: "if", nir.LI: "li",
                              nir.CubaLIF: "cubalif", nir.CubaLI: "cubalif"}


__all__ = ["LAVA_LIF_MODEL", "LAVA_LIF_PROCESS", "LavaLIFParams", "LavaLIFState", "lava_bias",
           "lava_lif_scan", "lava_lif_step", "quantize_standard", "stock_lava"]
