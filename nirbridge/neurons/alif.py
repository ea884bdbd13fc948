"""ALIF (Bellec et al. 2018): LIF with a spike-driven adaptive threshold.

One file: the custom NIR node, the torch step and trainable module, the lossy
standard-NIR approximation, the integer model and its quantizer plan, the registry entry.
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
    CustomNeuron,
    NeuronModule,
    Param,
    as_str,
    check_compare,
    check_positive,
    example_value,
    full,
    leaky_standard_node,
    param_reader,
    spike,
    to_tensor,
)
from nirbridge.neurons._registry import (
    IntegerModel,
    NeuronSpec,
    QuantPlan,
    node_kwargs,
    register,
)

Tensor = torch.Tensor


class ALIFState(NamedTuple):
    v: Tensor
    b: Tensor
    z: Tensor  # spikes of the previous step (z_prev)


def alif_step(
    x: Tensor,
    state: ALIFState,
    *,
    alpha: Tensor | float,
    rho: Tensor | float,
    v_threshold: Tensor | float,
    beta: Tensor | float,
    compare: str = ">",
) -> tuple[Tensor, ALIFState]:
    """ALIF (Bellec et al. 2018) with ``α = exp(−dt/τ)``, ``ρ = exp(−dt/τ_a)``.

    Ordering chosen here (documented in specs/neurons.md): the adaptation and the reset use
    the previous step's spikes ``z_prev``; this step's spike is computed from the *updated*
    voltage: ``b ← ρb + (1−ρ)z_prev; A = thr + βb; v ← αv + (1−α)x − z_prev·A;
    z = H(v − A)``. (Bellec's code computes z from the voltage before the update, which
    shifts spikes by one step; this ordering has no such latency.)
    """
    b = rho * state.b + (1 - rho) * state.z
    a_thr = v_threshold + beta * b
    v = alpha * state.v + (1 - alpha) * x - state.z * a_thr
    z = spike(v - a_thr, compare)
    return z, ALIFState(v, b, z)


@dataclass(eq=False)
class ALIFNode(CustomNeuron):
    """ALIF (Bellec et al. 2018); ``alpha = exp(−dt/τ_m)``, ``rho = exp(−dt/τ_a)`` stored."""

    alpha: np.ndarray
    rho: np.ndarray
    v_threshold: np.ndarray
    beta: np.ndarray
    compare: str = ">"
    TYPE: ClassVar[str] = "ALIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "rho", "v_threshold", "beta")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"compare": as_str}


class ALIF(NeuronModule):
    """ALIF with state ``(v, b, z_prev)``, all starting at 0::

        b ← ρ·b + (1 − ρ)·z_prev ;  A = v_th + β·b
        v ← α·v + (1 − α)·x − z_prev·A ;  z = H(v − A)      # '>' by default

    with ``α = exp(−dt/τ_mem)`` and ``ρ = exp(−dt/τ_adapt)``, computed once at construction
    and stored as the buffers ``alpha`` and ``rho`` (the effective values exported).
    Ordering: adaptation and reset use the previous step's spike, this step's spike comes
    from the *updated* voltage (Bellec's code uses the voltage before the update, one step
    later); see :func:`functional.alif_step`. Exported as the custom ``ALIF`` node.
    """

    def __init__(
        self,
        tau_mem: Param = 20.0,
        tau_adapt: Param = 200.0,
        v_threshold: Param = 1.0,
        beta: Param = 1.8,
        *,
        dt: float = 1.0,
        compare: str = ">",
    ) -> None:
        super().__init__()
        self.compare = check_compare(compare)
        self.dt = float(dt)
        tau_mem_t = to_tensor(tau_mem, "tau_mem").double()
        tau_adapt_t = to_tensor(tau_adapt, "tau_adapt").double()
        check_positive(tau_mem_t.cpu().numpy(), "tau_mem", "ALIF")
        check_positive(tau_adapt_t.cpu().numpy(), "tau_adapt", "ALIF")
        dtype = torch.get_default_dtype()
        self.add_param("alpha", torch.exp(-self.dt / tau_mem_t).to(dtype))
        self.add_param("rho", torch.exp(-self.dt / tau_adapt_t).to(dtype))
        self.add_param("v_threshold", v_threshold)
        self.add_param("beta", beta)

    def initial_state(self, x: torch.Tensor) -> ALIFState:
        return ALIFState(torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: ALIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return alif_step(x, state, alpha=self.p("alpha", x), rho=self.p("rho", x),
                           v_threshold=self.p("v_threshold", x), beta=self.p("beta", x),
                           compare=self.compare)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # alpha and rho are per-step factors: the graph's dt does not change them.
        return ALIFNode(alpha=full(self.alpha, shape, "alpha"), rho=full(self.rho, shape, "rho"),
                      v_threshold=full(self.v_threshold, shape, "v_threshold"),
                      beta=full(self.beta, shape, "beta"), compare=self.compare)

    def extra_repr(self) -> str:
        return f"compare={self.compare!r}, dt={self.dt}"


def lossy(node: ALIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``LIF(τ = dt/(1−α), r = 1, v_leak = 0, v_reset = 0)``: the adaptation ``b`` and the
    delayed reset are lost. (``α = exp(−dt/τ_m)``: the Euler-exact ``τ = dt/(1−α)`` is used
    rather than ``τ_m = −dt/ln α``, because NIR consumers step LIF with forward Euler.)"""
    new, note = leaky_standard_node(node.alpha, 1.0 - node.alpha, 0.0, node.v_threshold, 0.0,
                                    dt, meta)
    return new, ("the adaptive threshold b (rho, beta) and the reset by subtraction of A on "
                 "the next step become a fixed threshold and a hard reset to 0" + note)


# ------------------------------------------------------------------ integer model
class IntALIFState(NamedTuple):
    """ALIF state: voltage, adaptation ``b`` and the previous step's spikes ``z``."""

    v: np.ndarray
    b: np.ndarray
    z: np.ndarray  # spikes of the previous step


@dataclass
class ALIFParams(fx.NeuronParams):
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
        z = fx.full_int(0, batch, shape)
        return IntALIFState(z, z.copy(), z.copy())

    def state_frac(self, name: str) -> int:
        """``b`` is unitless (``b_frac`` bits), ``z`` holds spikes (0 bits)."""
        return {"b": self.b_frac, "z": 0}.get(name, self.frac_bits)


def alif_int_step(a_in: np.ndarray, state: IntALIFState, p: ALIFParams,
              sat: fx.SaturationCounter | None = None) -> tuple[np.ndarray, IntALIFState]:
    """Same ordering as :func:`alif_step`::

        b ← sat(round(b·rho/4096) + z_prev·omr)
        A = theta + round(beta·b / 2^b_frac)
        v ← sat(round(v·alpha/4096) + x − z_prev·A)
        z = v ⋚ A
    """
    q = p.decay_bits
    x = p.drive(a_in, sat)
    z_prev = state.z
    b = p._sat(fx.mul_round(state.b, p.rho, q) + z_prev * fx.as_int(p.omr), sat, "b")
    a_thr = fx.as_int(p.theta) + fx.mul_round(p.beta, b, p.b_frac)
    v = p._sat(fx.mul_round(state.v, p.alpha, q) + x - z_prev * a_thr, sat, "v")
    z = fx.fires(v, a_thr, p.compare)
    return z, IntALIFState(v, b, z)


ALIF_MODEL = IntegerModel("alif", alif_int_step, ALIFParams, ("v", "b", "z"))


def quantize(name: str, node: ALIFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    """The quantizer plan of an ALIF node (see :mod:`nirbridge.quantize`)."""
    p = param_reader(node, shape)

    cmp = node.compare
    zeros = np.zeros(shape)
    q = cfg.decay_bits
    alpha, rho, theta, beta = p("alpha"), p("rho"), p("v_threshold"), p("beta")
    b_frac = cfg.frac_of("alif", name)

    def build_alif(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
                   const: np.ndarray) -> ALIFParams:
        rho_q = fq.fixed("rho", rho, q, lo=0, hi=1 << q, what="decay in [0, 1]")
        omr = fx.shift_round((1 << q) - rho_q, q - b_frac)
        return ALIFParams(
            frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
            compare=cmp, bias=fq.fixed("bias", const, S), in_gain=in_gain,
            gain_frac=gain_frac, alpha=fq.fixed("alpha", alpha, q), rho=rho_q, omr=omr,
            b_frac=b_frac, theta=fq.fixed("v_threshold", theta, S),
            beta=fq.fixed("beta", beta, S))

    tmax = float(np.max(np.abs(theta)) + np.max(np.abs(beta)))
    return QuantPlan(ALIF_MODEL, "alif", True, True, 1.0 - alpha, zeros, tmax, 0.0, build_alif)


SPEC = register(NeuronSpec(
    node=ALIFNode, step=alif_step, state=ALIFState,
    kwargs=node_kwargs("alpha", "rho", "v_threshold", "beta",
                       flags={"compare": lambda n: n.compare}),
    example=lambda s, pc: ALIF(tau_mem=example_value(s, pc, 4.0, 6.0), tau_adapt=20.0,
                               v_threshold=0.2, beta=0.5),
    lossy=lossy, integer=ALIF_MODEL, quantize=quantize,
    frac_bits={"alif": 12},
    description="ALIF (Bellec et al. 2018): spike-driven adaptive threshold",
    ranges={"alpha": "decay", "rho": "decay", "v_threshold": "threshold_soft"}))

__all__ = ["ALIF", "ALIFNode", "ALIFParams", "ALIFState", "ALIF_MODEL", "IntALIFState",
           "alif_int_step", "alif_step"]
