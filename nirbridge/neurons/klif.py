"""KLIF (arXiv 2302.09238; reference: SpikingJelly ``KLIFNode``): a learnable-slope LIF.

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
    LOSSY_EPS,
    CustomNeuron,
    NeuronModule,
    Param,
    as_bool,
    as_str,
    check_compare,
    check_positive,
    example_value,
    full,
    leaky_standard_node,
    param_reader,
    spike,
)
from nirbridge.neurons._registry import (
    IntegerModel,
    NeuronSpec,
    QuantPlan,
    node_kwargs,
    register,
)
from nirbridge.neurons.standard import LIFState

Tensor = torch.Tensor


def klif_step(
    x: Tensor,
    state: LIFState,
    *,
    tau: Tensor | float,
    k: Tensor | float,
    v_threshold: Tensor | float,
    v_reset: Tensor | float | None = 0.0,
    decay_input: bool = True,
    scale_reset: bool = False,
    compare: str = ">=",
) -> tuple[Tensor, LIFState]:
    """KLIF (arXiv 2302.09238, SpikingJelly KLIFNode); ``v_reset=None`` is soft reset."""
    vr = 0.0 if v_reset is None else v_reset
    if decay_input:
        h = state.v + (x - (state.v - vr)) / tau
    else:
        h = state.v - (state.v - vr) / tau + x
    f = torch.relu(k * h)
    s = spike(f - v_threshold, compare)
    if v_reset is None:
        v = f - s * v_threshold
        if scale_reset:
            v = v / k
    else:
        kept = f * (1 - s)
        if scale_reset:
            kept = kept / k
        v = kept + v_reset * s
    return s, LIFState(v)


@dataclass(eq=False)
class KLIFNode(CustomNeuron):
    """KLIF (arXiv 2302.09238): relu(k·h) membrane; ``soft_reset`` replaces ``v_r = None``."""

    tau: np.ndarray
    k: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray
    soft_reset: bool = False
    decay_input: bool = True
    scale_reset: bool = False
    compare: str = ">="
    TYPE: ClassVar[str] = "KLIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("tau", "k", "v_threshold", "v_reset")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "soft_reset": as_bool,
        "decay_input": as_bool,
        "scale_reset": as_bool,
        "compare": as_str,
    }


class KLIF(NeuronModule):
    """KLIF: ``h = v + (x − (v − v_r))/τ`` (``decay_input``) or ``h = v − (v − v_r)/τ + x``;
    ``f = relu(k·h)``; fire on ``f >= v_th``; hard reset ``v = f(1 − s) + v_r·s`` or, with
    ``v_reset=None``, soft reset ``v = f − s·v_th``; ``scale_reset`` divides the new ``v``
    by ``k`` (hard: only the ``f`` term).

    ``k`` is a learnable scalar (SpikingJelly initialises it to 1); export requires
    ``k > 0``. State starts at ``v = v_r`` (0 for soft reset), as in SpikingJelly.
    Exported as the custom ``KLIF`` node (the relu floor has no NIR equivalent); the node
    has ``soft_reset=True`` and ``v_reset = 0`` where this module has ``v_reset=None``.
    """

    def __init__(
        self,
        tau: Param = 2.0,
        v_threshold: Param = 1.0,
        v_reset: Param | None = 0.0,
        *,
        k: Param = 1.0,
        learn_k: bool = True,
        decay_input: bool = True,
        scale_reset: bool = False,
        compare: str = ">=",
    ) -> None:
        super().__init__()
        self.compare = check_compare(compare)
        self.soft_reset = v_reset is None
        self.decay_input = bool(decay_input)
        self.scale_reset = bool(scale_reset)
        self.add_param("tau", tau)
        self.add_param("k", k, learn_k)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_reset", 0.0 if v_reset is None else v_reset)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x) + self.p("v_reset", x).detach())

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return klif_step(
            x, state, tau=self.p("tau", x), k=self.p("k", x),
            v_threshold=self.p("v_threshold", x),
            v_reset=None if self.soft_reset else self.p("v_reset", x),
            decay_input=self.decay_input, scale_reset=self.scale_reset, compare=self.compare,
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # KLIF is a per-step model: dt does not enter its parameters.
        return KLIFNode(
            tau=full(self.tau, shape, "tau"),
            k=check_positive(full(self.k, shape, "k"), "k", "KLIF"),
            v_threshold=full(self.v_threshold, shape, "v_threshold"),
            v_reset=full(self.v_reset, shape, "v_reset"),
            soft_reset=self.soft_reset, decay_input=self.decay_input,
            scale_reset=self.scale_reset, compare=self.compare,
        )

    def extra_repr(self) -> str:
        return (f"soft_reset={self.soft_reset}, decay_input={self.decay_input}, "
                f"scale_reset={self.scale_reset}, compare={self.compare!r}")


def lossy(node: KLIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """State ``f = k·h``: ``LIF(τ = dt/(1−k(1−1/τ)), r = k·g/(1−k(1−1/τ)), v_leak = k·v_r/τ/(1−…),
    v_reset = v_r`` (soft: 0), ``g = 1/τ`` (decay_input) or 1; with scale_reset the state is
    ``h`` (``k = 1``, threshold ``v_th/k``). Lost: the relu floor, ``v(0) = v_r``, soft reset."""
    inv_tau = 1.0 / node.tau
    gain = inv_tau if node.decay_input else np.ones_like(node.tau)
    v_reset = np.zeros(node.shape) if node.soft_reset else node.v_reset
    if node.scale_reset:  # the state is h (before k): threshold v_th/k
        new, note = leaky_standard_node(1.0 - inv_tau, gain, node.v_reset * inv_tau,
                                        node.v_threshold / np.maximum(node.k, LOSSY_EPS),
                                        v_reset, dt, meta)
    else:  # the state is f = k·h
        k = node.k
        new, note = leaky_standard_node(k * (1.0 - inv_tau), k * gain,
                                        k * node.v_reset * inv_tau, node.v_threshold, v_reset,
                                        dt, meta)
    lost = "the relu floor of f = relu(k·h) and the initial state v = v_r are lost"
    if node.soft_reset:
        lost += "; soft reset becomes a hard reset to 0"
    return new, lost + note


# ------------------------------------------------------------------ integer model
class IntLIFState(NamedTuple):
    """KLIF integer state: the voltage."""

    v: np.ndarray


@dataclass
class KLIFParams(fx.NeuronParams):
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
        return IntLIFState(fx.full_int(self.v_init, batch, shape))


def klif_int_step(a_in: np.ndarray, state: IntLIFState, p: KLIFParams,
              sat: fx.SaturationCounter | None = None) -> tuple[np.ndarray, IntLIFState]:
    """``f = max(0, sat(round(v·kd/4096) + x))``; ``s = f ⋚ θ``;
    hard: ``v = f·(1−s) [·1/k] + v_r·s``; soft: ``v = (f − s·θ) [·1/k]``."""
    x = p.drive(a_in, sat)
    f = np.maximum(p._sat(fx.mul_round(state.v, p.kd, p.decay_bits) + x, sat, "v"), 0)
    theta = fx.as_int(p.theta)
    s = fx.fires(f, theta, p.compare)
    if p.soft_reset:
        v = f - s * theta
        if p.scale_reset:
            v = fx.mul_round(v, p.inv_k, p.decay_bits)
    else:
        kept = f * (1 - s)
        if p.scale_reset:
            kept = fx.mul_round(kept, p.inv_k, p.decay_bits)
        v = kept + fx.as_int(p.v_reset) * s
    return s, IntLIFState(p._sat(v, sat, "v"))


KLIF_MODEL = IntegerModel("klif", klif_int_step, KLIFParams)


def quantize(name: str, node: KLIFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    """The quantizer plan of a KLIF node (see :mod:`nirbridge.quantize`)."""
    p = param_reader(node, shape)

    cmp = node.compare
    zeros = np.zeros(shape)
    q = cfg.decay_bits
    tau, kk = p("tau"), p("k")
    soft = bool(node.soft_reset)
    v_r = zeros if soft else p("v_reset")
    gain = kk / tau if node.decay_input else kk
    own = kk * v_r / tau
    theta = p("v_threshold")

    def build_klif(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
                   const: np.ndarray) -> KLIFParams:
        inv_k = (fq.fixed("inv_k", 1.0 / kk, q) if node.scale_reset
                 else np.int64(1 << q))
        vr = fq.fixed("v_reset", v_r, S)
        return KLIFParams(
            frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
            compare=cmp, bias=fq.fixed("bias", own + const, S), in_gain=in_gain,
            gain_frac=gain_frac, kd=fq.fixed("kd", kk * (1.0 - 1.0 / tau), q),
            theta=fq.fixed("v_threshold", theta, S), v_reset=vr, soft_reset=soft,
            scale_reset=bool(node.scale_reset), inv_k=inv_k, v_init=vr)

    tmax = float(max(np.max(np.abs(theta)), np.max(np.abs(v_r))))
    return QuantPlan(KLIF_MODEL, "klif", True, True, gain, own, tmax, 0.0, build_klif)


def _init(node: KLIFNode, x0: torch.Tensor) -> LIFState:
    v0 = 0.0 if node.soft_reset else node.v_reset
    return LIFState(torch.as_tensor(v0, dtype=x0.dtype, device=x0.device)
                     .expand_as(x0).clone())


def _kwargs(node: KLIFNode, dt: float, dtype: torch.dtype, device: Any = None
            ) -> dict[str, Any]:
    kw = _PARAMS(node, dt, dtype, device)
    if node.soft_reset:  # the step's soft reset is v_reset=None
        kw["v_reset"] = None
    return kw


_PARAMS = node_kwargs("tau", "k", "v_threshold", "v_reset",
                      flags={"decay_input": lambda n: n.decay_input,
                             "scale_reset": lambda n: n.scale_reset,
                             "compare": lambda n: n.compare})

SPEC = register(NeuronSpec(
    node=KLIFNode, step=klif_step, state=LIFState, kwargs=_kwargs, init=_init,
    example=lambda s, pc: KLIF(tau=example_value(s, pc, 2.0, 3.0), v_threshold=0.5,
                               k=example_value(s, pc, 1.0, 1.5)),
    lossy=lossy, integer=KLIF_MODEL, quantize=quantize,
    frac_bits={"klif": 12},
    description="KLIF (arXiv 2302.09238): relu(k·h) membrane",
    ranges={"tau": "tau_steps", "k": "positive", "v_threshold": lambda n: (
        ("threshold_rest", "threshold_soft") if n.soft_reset else "threshold_rest")}))

__all__ = ["KLIF", "KLIFNode", "KLIFParams", "KLIF_MODEL", "klif_int_step",
           "klif_step"]
