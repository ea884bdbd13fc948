"""Norse's current-based LIF (``norse.torch.LIFCell``), in Norse's own order of operations.

Norse (``lif_feed_forward_step``, 1.1.0) jumps the current by the input *before* the
membrane update and decays it *after*::

    j = i + x
    v ← v + (dt·τ_mem⁻¹)·((v_leak − v) + j)
    i ← j − (dt·τ_syn⁻¹)·j
    z = H(v − v_th)  (fires on '>');   v ← (1 − z)·v + z·v_reset

with the state ``(v, i)`` starting at ``(v_leak, 0)``. NIR's CubaLIF is not this: its
membrane sees the current after the decay step and its input is scaled by dt/τ_syn (with
``w_in = 1/(dt·τ_syn⁻¹)`` its current is Norse's ``j``, which is the lossy approximation),
so this is the custom node ``NorseLIF``. Its parameters are Norse's inverse time constants
in 1/(the graph's time unit); the step multiplies them by the graph's ``dt`` exactly as
Norse multiplies by the cell's.

Fixed point: Lava's LIF arithmetic (:mod:`~nirbridge.neurons.lava_lif`) with the current
``u = dt·τ_mem⁻¹·j`` (``du = dt·τ_syn⁻¹``, ``dv = dt·τ_mem⁻¹``, input gain ``dt·τ_mem⁻¹``),
``v`` relative to ``v_reset`` and starting at ``v_leak``.

Also here: :func:`factor_inverse` and :func:`factor_tau`, which give the parameter whose
product (or quotient) with a graph's dt is a given per-step factor bit for bit, the one
place the Norse front-end and these nodes turn Norse's ``dt·τ⁻¹`` into node parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import nir
import numpy as np
import torch

from nirbridge import fixed_point as fx
from nirbridge.neurons._base import (
    LOSSY_EPS,
    CustomNeuron,
    NeuronModule,
    Param,
    as_str,
    check_compare,
    example_value,
    full,
    param_reader,
    spike,
)
from nirbridge.neurons._registry import NeuronSpec, QuantPlan, node_kwargs, register
from nirbridge.neurons.lava_lif import LAVA_LIF_MODEL, LavaLIFParams, lava_bias

Tensor = torch.Tensor


# --------------------------------------------------------------- per-step factors
def _solve(target: np.ndarray, guess: np.ndarray, apply: Callable[[np.ndarray], np.ndarray]
           ) -> np.ndarray:
    # The nearest float to target/dt (or dt/target) may miss target by one ulp after the
    # step's own multiplication (division); one of its neighbours usually hits it exactly.
    guess = np.array(guess, dtype=np.float64)
    out = guess.copy()
    miss = np.asarray(apply(out) != target)
    for direction in (np.inf, -np.inf):
        if not miss.any():
            break
        near = np.nextafter(guess, direction)
        hit = miss & (apply(near) == target)
        out = np.where(hit, near, out)
        miss = miss & ~hit
    return np.array(out, dtype=np.float64)


def factor_inverse(factor: Any, dt: float) -> np.ndarray:
    """``τ⁻¹`` with ``dt·τ⁻¹ == factor`` in float64 (bit for bit where a float does it)."""
    a = np.asarray(factor, dtype=np.float64)
    return _solve(a, a / dt, lambda x: dt * x)


def factor_tau(factor: Any, dt: float) -> np.ndarray:
    """``τ`` with ``dt/τ == factor`` in float64 (bit for bit where a float does it);
    every factor must be > 0."""
    a = np.asarray(factor, dtype=np.float64)
    return _solve(a, dt / a, lambda t: dt / t)


# ------------------------------------------------------------------------ torch step
class NorseLIFState(NamedTuple):
    """Norse's ``LIFFeedForwardState``: membrane ``v`` and (decayed) current ``i``."""

    v: Tensor
    i: Tensor


def norse_current(x: Tensor, state: NorseLIFState, tau_syn_inv: Any, tau_mem_inv: Any,
                  v_leak: Any, dt: float) -> NorseLIFState:
    """The sub-threshold step Norse's LIFCell and LICell share (jump, membrane, decay)."""
    j = state.i + x
    v = state.v + dt * tau_mem_inv * ((v_leak - state.v) + j)
    i = j + -dt * tau_syn_inv * j
    return NorseLIFState(v, i)


def norse_lif_step(x: Tensor, state: NorseLIFState, *, tau_syn_inv: Tensor | float,
                   tau_mem_inv: Tensor | float, v_leak: Tensor | float,
                   v_threshold: Tensor | float, v_reset: Tensor | float, dt: float = 1.0,
                   compare: str = ">") -> tuple[Tensor, NorseLIFState]:
    """Norse LIFCell: :func:`norse_current`, fire on ``v − v_th > 0``, reset to ``v_reset``."""
    v, i = norse_current(x, state, tau_syn_inv, tau_mem_inv, v_leak, dt)
    z = spike(v - v_threshold, compare)
    v = (1 - z) * v + z * v_reset
    return z, NorseLIFState(v, i)


def start_at_v_leak(node: nir.NIRNode, x0: Tensor) -> NorseLIFState:
    """Norse's initial state: ``v = v_leak``, ``i = 0``."""
    v = torch.as_tensor(np.asarray(node.v_leak), dtype=x0.dtype, device=x0.device)
    return NorseLIFState(v.expand_as(x0).clone(), torch.zeros_like(x0))


# ------------------------------------------------------------------------- NIR node
@dataclass(eq=False)
class NorseLIFNode(CustomNeuron):
    """Norse's LIFCell: the current jumps before and decays after the membrane update;
    ``(v, i)`` starts at ``(v_leak, 0)``; inverse time constants in 1/(graph time unit)."""

    tau_syn_inv: np.ndarray
    tau_mem_inv: np.ndarray
    v_leak: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray
    compare: str = ">"
    TYPE: ClassVar[str] = "NorseLIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("tau_syn_inv", "tau_mem_inv", "v_leak",
                                         "v_threshold", "v_reset")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"compare": as_str}


# ---------------------------------------------------------------------------- module
class NorseLIF(NeuronModule):
    """Norse's ``LIFCell`` as a nirbridge module (the stand-in the Norse front-end builds).

    ``tau_syn_inv``, ``tau_mem_inv`` are in 1/(the unit of ``dt``), as Norse's are; the
    step multiplies them by ``dt`` (Norse's default 1e-3). Exported as ``NorseLIF`` with the
    products ``dt·τ⁻¹`` kept exactly at the graph's dt.
    """

    def __init__(self, tau_syn_inv: Param = 200.0, tau_mem_inv: Param = 100.0,
                 v_threshold: Param = 1.0, v_leak: Param = 0.0, v_reset: Param = 0.0, *,
                 dt: float = 1e-3, compare: str = ">", learn_tau: bool = False) -> None:
        super().__init__()
        self.dt = float(dt)
        self.compare = check_compare(compare)
        self.add_param("tau_syn_inv", tau_syn_inv, learn_tau)
        self.add_param("tau_mem_inv", tau_mem_inv, learn_tau)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_leak", v_leak)
        self.add_param("v_reset", v_reset)

    def initial_state(self, x: torch.Tensor) -> NorseLIFState:
        return NorseLIFState(self.p("v_leak", x).expand_as(x).clone(), torch.zeros_like(x))

    def _sub(self, x: torch.Tensor) -> dict[str, Any]:
        return dict(tau_syn_inv=self.p("tau_syn_inv", x), tau_mem_inv=self.p("tau_mem_inv", x),
                    v_leak=self.p("v_leak", x), dt=self.dt)

    def forward(self, x: torch.Tensor, state: NorseLIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return norse_lif_step(x, state, v_threshold=self.p("v_threshold", x),
                              v_reset=self.p("v_reset", x), compare=self.compare,
                              **self._sub(x))

    def rates_at(self, shape: tuple[int, ...], dt: float) -> dict[str, np.ndarray]:
        """``tau_syn_inv``, ``tau_mem_inv`` at graph step ``dt``, keeping ``dt·τ⁻¹``."""
        return {name: factor_inverse(self.dt * full(getattr(self, name), shape, name), dt)
                for name in ("tau_syn_inv", "tau_mem_inv")}

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        return NorseLIFNode(**self.rates_at(shape, dt),
                            v_leak=full(self.v_leak, shape, "v_leak"),
                            v_threshold=full(self.v_threshold, shape, "v_threshold"),
                            v_reset=full(self.v_reset, shape, "v_reset"),
                            compare=self.compare)

    def extra_repr(self) -> str:
        return f"dt={self.dt}"


# ----------------------------------------------------------------------------- lossy
def cuba_fields(node: Any, dt: float) -> tuple[dict[str, np.ndarray], str]:
    """NIR CubaLIF/CubaLI fields whose current is Norse's ``j``: ``w_in = 1/(dt·τ_syn⁻¹)``."""
    a_s = dt * np.asarray(node.tau_syn_inv, dtype=np.float64)
    a_m = dt * np.asarray(node.tau_mem_inv, dtype=np.float64)
    note = ""
    if np.any(a_s < LOSSY_EPS) or np.any(a_m < LOSSY_EPS):
        note = f"; factors dt/τ below {LOSSY_EPS:g} clamped to it"
        a_s, a_m = np.maximum(a_s, LOSSY_EPS), np.maximum(a_m, LOSSY_EPS)
    return dict(tau_syn=dt / a_s, tau_mem=dt / a_m, r=np.ones(node.shape), w_in=1.0 / a_s,
                v_leak=np.asarray(node.v_leak, dtype=np.float64)), note


_LOST = ("NIR's current is Norse's current before its decay (the same v and spikes up to "
         "rounding); lost: the start at v = v_leak (CubaLIF starts at 0)")


def lossy(node: NorseLIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``CubaLIF(w_in = 1/(dt·τ_syn⁻¹))``: lost is only the start at ``v_leak``."""
    fields, note = cuba_fields(node, dt)
    return nir.CubaLIF(**fields, v_threshold=node.v_threshold, v_reset=node.v_reset,
                       metadata=meta), _LOST + note


# ------------------------------------------------------------------- fixed point plan
def lava_plan(node: Any, dt: float, shape: tuple[int, ...], cfg: Any,
              spiking: bool) -> QuantPlan:
    """Lava-LIF form of NorseLIF (``spiking``) or NorseLI: ``u = dt·τ_mem⁻¹·j`` decays by
    ``dt·τ_syn⁻¹`` and takes the input with gain ``dt·τ_mem⁻¹``; ``v`` relative to
    ``v_reset`` decays by ``dt·τ_mem⁻¹`` with bias ``dt·τ_mem⁻¹·(v_leak − v_reset)``."""
    p = param_reader(node, shape)

    gm, gs = dt * p("tau_mem_inv"), dt * p("tau_syn_inv")
    v_r = p("v_reset") if spiking else np.zeros(shape)
    own = gm * (p("v_leak") - v_r)
    theta = p("v_threshold") - v_r if spiking else None
    v_init = p("v_leak") - v_r
    q = cfg.decay_bits

    def build(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
              const: np.ndarray) -> LavaLIFParams:
        dv = fq.fixed("dv", gm, q, lo=0, hi=(1 << q) - 1, clip=True,
                      what="Lava dv, 12-bit unsigned")
        du = fq.fixed("du", gs, q, lo=1, hi=1 << q, clip=True,
                      what="Lava du + 1, 12-bit") - 1
        mant, exp = lava_bias(fq, own, S)
        vth = None
        if theta is not None:
            lim = fx.sat_limit(cfg.state_bits) >> a
            vth = fq.fixed("v_threshold", theta, k, lo=-lim, hi=lim,
                           what=f"{cfg.state_bits}-bit state >> {a}")
        ab = fq.fixed("a_bias", const, S - a) if np.any(const != 0) else None
        return LavaLIFParams(
            du=du, dv=dv, bias_mant=mant, bias_exp=exp, vth=vth, compare=node.compare,
            frac_bits=S, vth_shift=a, act_shift=a, state_bits=cfg.state_bits,
            decay_bits=q, u_init=0, v_init=fq.fixed("v_init", v_init, S),
            in_gain=in_gain, gain_frac=gain_frac, a_bias=ab)

    tmax = float(np.max(np.abs(theta))) if theta is not None else 0.0
    tmax = max(tmax, float(np.max(np.abs(v_init), initial=0.0)))
    # the same integer form as NIR's CubaLIF: share its [quantization.frac_bits] entry
    return QuantPlan(LAVA_LIF_MODEL, "cubalif", True, spiking, gm, own, tmax,
                     float(np.min(gm, initial=1.0)), build)


def quantize(name: str, node: NorseLIFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    return lava_plan(node, dt, shape, cfg, spiking=True)


# -------------------------------------------------------------------------- registry
SPEC = register(NeuronSpec(
    node=NorseLIFNode, step=norse_lif_step, state=NorseLIFState, init=start_at_v_leak,
    kwargs=node_kwargs("tau_syn_inv", "tau_mem_inv", "v_leak", "v_threshold", "v_reset",
                       dt=True, flags={"compare": lambda n: n.compare}),
    example=lambda s, pc: NorseLIF(tau_syn_inv=example_value(s, pc, 0.5, 0.7),
                                   tau_mem_inv=example_value(s, pc, 0.4, 0.3),
                                   v_threshold=0.5, v_leak=0.05, v_reset=-0.1, dt=1.0),
    lossy=lossy, integer=LAVA_LIF_MODEL, quantize=quantize,
    description="Norse LIFCell (current jumps before, decays after the membrane update)",
    ranges={"tau_syn_inv": "rate", "tau_mem_inv": "rate",
            "v_threshold": "threshold_reset:v_reset"}))

__all__ = [
    "NorseLIF",
    "NorseLIFNode",
    "NorseLIFState",
    "cuba_fields",
    "factor_inverse",
    "factor_tau",
    "lava_plan",
    "norse_current",
    "norse_lif_step",
    "start_at_v_leak",
]
