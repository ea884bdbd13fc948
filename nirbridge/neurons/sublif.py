"""Subtractive-reset LIF: NIR's forward-Euler LIF with ``v ← v − s·v_th`` after a spike.

The soft-reset LIF of snnTorch, Norse and SpikingJelly; NIR (≥ 1.0.6) only resets hard, so
it is the custom node ``SubtractiveLIF`` (``LIF(reset="subtract")`` exports it). Its torch
step is NIR LIF's (:func:`~nirbridge.neurons.standard.lif_step`, ``reset="subtract"``).

Fixed point: the linear-reset integer model ``v ← sat(v·decay + x)``, hard or subtractive
reset, which DA-LIF shares (:data:`LINEAR_LIF_MODEL`, :func:`linear_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, NamedTuple

import nir
import numpy as np

from nirbridge import fixed_point as fx
from nirbridge.errors import InvalidParameterError
from nirbridge.neurons._base import CustomNeuron, as_str, example_value, param_reader
from nirbridge.neurons._registry import (
    IntegerModel,
    NeuronSpec,
    QuantPlan,
    node_kwargs,
    register,
)
from nirbridge.neurons.standard import LIF, LIFState, lif_step


@dataclass(eq=False)
class SubtractiveLIFNode(CustomNeuron):
    """LIF (NIR's forward-Euler form) with subtractive reset ``v ← v − s·v_th``.

    The soft-reset LIF of snnTorch, Norse and SpikingJelly; NIR (≥ 1.0.6) only resets hard.
    """

    tau: np.ndarray
    r: np.ndarray
    v_leak: np.ndarray
    v_threshold: np.ndarray
    compare: str = ">"
    TYPE: ClassVar[str] = "SubtractiveLIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("tau", "r", "v_leak", "v_threshold")
    FLAGS: ClassVar[dict[str, Any]] = {"compare": as_str}


def lossy(node: SubtractiveLIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``LIF(tau, r, v_leak, v_threshold, v_reset = 0)``: the subtractive reset is lost."""
    lif = nir.LIF(tau=node.tau, r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold,
                  v_reset=np.zeros(node.shape), metadata=meta)
    return lif, "subtractive reset v ← v − v_th becomes a hard reset to 0"


# ------------------------------------------------------------ integer model: linear LIF
class IntLIFState(NamedTuple):
    """State of the one-voltage integer models (linear LIF, KLIF)."""

    v: np.ndarray


@dataclass
class LinearLIFParams(fx.NeuronParams):
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
        return IntLIFState(fx.full_int(self.v_init, batch, shape))


def linear_lif_step(a_in: np.ndarray, state: IntLIFState, p: LinearLIFParams,
                    sat: fx.SaturationCounter | None = None) -> tuple[np.ndarray, IntLIFState]:
    """``v ← sat(round(v·decay/4096) + x)``; ``s = v ⋚ θ``; hard: ``v ← v_reset`` where
    ``s``; soft: ``v ← sat(v − s·θ)``."""
    x = p.drive(a_in, sat)
    v = p._sat(fx.mul_round(state.v, p.decay, p.decay_bits) + x, sat, "v")
    theta = fx.as_int(p.theta)
    s = fx.fires(v, theta, p.compare)
    if p.reset == "hard":
        v = np.where(s.astype(bool), fx.as_int(p.v_reset), v)
    elif p.reset in ("soft", "subtract"):
        v = p._sat(v - s * theta, sat, "v")
    else:
        raise InvalidParameterError(f"reset={p.reset!r} is unknown; use 'hard' or 'soft'")
    return s, IntLIFState(v)


@cache
def _scan_kernel(ge: bool, hard: bool, use_gain: bool, trace: bool):
    """The compiled loop of :func:`linear_lif_scan` for one setting of its flags (numba,
    compiled at its first call with them, about a second, once per process: no cache file
    is written; the flags are compile-time constants, so their branches vanish from the
    loop over neurons)."""
    import numba

    def round_shift(p, n):  # fx.shift_round on one int64
        return (p + (np.int64(1) << (n - 1))) >> n if n > 0 else p << (-n)

    round_shift = numba.njit(round_shift)

    @numba.njit(cache=False, nogil=True)
    def kernel(a, v, decay, bias, theta, v_reset, gain, act_shift, state_bits, decay_bits,
               gain_frac, out, v_tr, counts):
        n_t, n_b, n_p = a.shape
        lim = (np.int64(1) << (state_bits - 1)) - 1
        n_x = np.int64(0)
        n_v = np.int64(0)
        for t in range(n_t):
            for b in range(n_b):
                for k in range(n_p):
                    x = np.int64(a[t, b, k]) << act_shift  # a float a holds integers
                    if use_gain:
                        x = round_shift(x * gain[k], gain_frac)
                    x = x + bias[k]
                    c = min(max(x, -lim), lim)  # saturate to the state range, counted
                    n_x += c != x
                    x = c
                    vv = round_shift(v[b, k] * decay[k], decay_bits) + x
                    c = min(max(vv, -lim), lim)
                    n_v += c != vv
                    vv = c
                    s = vv >= theta[k] if ge else vv > theta[k]
                    out[t, b, k] = 1 if s else 0
                    if s:
                        if hard:
                            vv = v_reset[k]
                        else:
                            vv = vv - theta[k]
                            c = min(max(vv, -lim), lim)
                            n_v += c != vv
                            vv = c
                    v[b, k] = vv
                    if trace:
                        v_tr[t, b, k] = vv
        counts[0] = n_x
        counts[1] = n_v

    return kernel


def linear_lif_scan(a_in: np.ndarray, state: IntLIFState, p: LinearLIFParams,
                    sat: fx.SaturationCounter | None = None, trace: bool = False,
                    out_dtype: Any = np.int64
                    ) -> tuple[np.ndarray, IntLIFState, dict[str, np.ndarray]]:
    """:func:`linear_lif_step` over a whole sequence ``a_in`` ``[T, B, *shape]`` in one
    compiled loop (see :data:`~nirbridge.neurons.Scan`): the same spikes, final and
    per-step ``v`` and saturation counts (``x``, ``v``) as ``T`` steps."""
    a = fx.scan_input(a_in)
    n_t, n_b, shape = a.shape[0], a.shape[1], tuple(a.shape[2:])
    n_p = int(np.prod(shape, dtype=np.int64))
    if n_t and p.compare not in fx.COMPARES:
        raise InvalidParameterError(f"compare={p.compare!r} is not a firing convention; "
                                    "use '>' or '>='")
    if n_t and p.reset not in ("hard", "soft", "subtract"):
        raise InvalidParameterError(f"reset={p.reset!r} is unknown; use 'hard' or 'soft'")
    v = np.array(np.broadcast_to(fx.as_int(state.v), (n_b, *shape))).reshape(n_b, n_p)
    out = fx.scan_output((n_t, n_b, n_p), out_dtype, 1, "linear LIF")  # spikes
    v_tr = np.empty((n_t if trace else 0, n_b, n_p), dtype=np.int64)
    counts = np.zeros(2, dtype=np.int64)
    kernel = _scan_kernel(p.compare == ">=", p.reset == "hard", p.in_gain is not None,
                          bool(trace))
    kernel(a.reshape(n_t, n_b, n_p), v, fx.per_neuron(p.decay, shape),
           fx.per_neuron(p.bias, shape), fx.per_neuron(p.theta, shape),
           fx.per_neuron(p.v_reset, shape),
           fx.per_neuron(1 if p.in_gain is None else p.in_gain, shape), p.act_shift,
           p.state_bits, p.decay_bits, p.gain_frac, out, v_tr, counts)
    if sat is not None and n_t:
        sat.add("x", int(counts[0]))
        sat.add("v", int(counts[1]))
    full = (n_b, *shape)
    traces = {"v": v_tr.reshape(n_t, *full)} if trace else {}
    return out.reshape(n_t, *full), IntLIFState(v.reshape(full)), traces


LINEAR_LIF_MODEL = IntegerModel("linear_lif", linear_lif_step, LinearLIFParams,
                                scan=linear_lif_scan)


def linear_plan(key: str, cmp: str, cfg: Any, gain: np.ndarray, own: np.ndarray,
                decay: np.ndarray, theta: np.ndarray, reset: str) -> QuantPlan:
    """The quantizer plan of a linear-reset neuron ``v ← decay·v + gain·x + own``."""
    q = cfg.decay_bits

    def build(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
              const: np.ndarray) -> LinearLIFParams:
        return LinearLIFParams(
            frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
            compare=cmp, bias=fq.fixed("bias", own + const, S), in_gain=in_gain,
            gain_frac=gain_frac, decay=fq.fixed("decay", decay, q),
            theta=fq.fixed("v_threshold", theta, S), reset=reset)

    return QuantPlan(LINEAR_LIF_MODEL, key, True, True, gain, own,
                     float(np.max(np.abs(theta))), 0.0, build)


def quantize(name: str, node: SubtractiveLIFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    p = param_reader(node, shape)

    g_dt = dt / p("tau")
    return linear_plan("sublif", node.compare, cfg, p("r") * g_dt, g_dt * p("v_leak"),
                       1.0 - g_dt, p("v_threshold"), "soft")


SPEC = register(NeuronSpec(
    node=SubtractiveLIFNode, step=lif_step, state=LIFState,
    kwargs=node_kwargs("tau", "r", "v_leak", "v_threshold", dt=True,
                       flags={"compare": lambda n: n.compare, "reset": "subtract"}),
    example=lambda s, pc: LIF(tau=example_value(s, pc, 2.0, 3.0), v_threshold=0.4,
                              v_leak=0.05, r=example_value(s, pc, 1.2, 1.0),
                              reset="subtract"),
    lossy=lossy, integer=LINEAR_LIF_MODEL, quantize=quantize,
    frac_bits={"sublif": 12},
    description="LIF with subtractive reset (snnTorch/Norse/SpikingJelly soft reset)",
    ranges={"tau": "time_constant", "v_threshold": "threshold_soft"}))

SubtractiveLIF = SubtractiveLIFNode

__all__ = [
    "IntLIFState",
    "LINEAR_LIF_MODEL",
    "LinearLIFParams",
    "SubtractiveLIF",
    "SubtractiveLIFNode",
    "linear_lif_scan",
    "linear_lif_step",
    "linear_plan",
]
