"""DA-LIF (arXiv 2502.10422): LIF with learnable spatial gain ``alpha`` and decay ``beta``.

One file: the custom NIR node (soft reset; hard reset exports as ``nir.LIF``), the torch
step and trainable module, the lossy approximation, the quantizer plan (on the linear-reset
integer model of :mod:`nirbridge.neurons.sublif`), the registry entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import nir
import numpy as np
import torch

from nirbridge.errors import InvalidParameterError
from nirbridge.neurons._base import (
    CustomNeuron,
    NeuronModule,
    Param,
    as_str,
    check_compare,
    compare_meta,
    dt_scale,
    example_value,
    full,
    leaky_standard_node,
    param_reader,
    spike,
)
from nirbridge.neurons._registry import (
    NeuronSpec,
    QuantPlan,
    node_kwargs,
    register,
)
from nirbridge.neurons.standard import LIFState
from nirbridge.neurons.sublif import LINEAR_LIF_MODEL, linear_plan

Tensor = torch.Tensor


def dalif_step(
    x: Tensor,
    state: LIFState,
    *,
    alpha: Tensor | float,
    beta: Tensor | float,
    v_threshold: Tensor | float,
    reset: str = "hard",
    compare: str = ">=",
) -> tuple[Tensor, LIFState]:
    """DA-LIF (arXiv 2502.10422): ``v ← β·v + α·x``; hard reset to 0 or soft ``v − s·v_th``."""
    v = beta * state.v + alpha * x
    s = spike(v - v_threshold, compare)
    if reset == "hard":
        v = v * (1 - s)
    elif reset == "soft":
        v = v - s * v_threshold
    else:
        raise InvalidParameterError(f"DA-LIF reset={reset!r} is unknown; use 'hard' or 'soft'")
    return s, LIFState(v)


@dataclass(eq=False)
class DALIFNode(CustomNeuron):
    """DA-LIF (arXiv 2502.10422) with soft reset (hard reset is exported as ``nir.LIF``)."""

    alpha: np.ndarray
    beta: np.ndarray
    v_threshold: np.ndarray
    reset: str = "soft"
    compare: str = ">="
    TYPE: ClassVar[str] = "DALIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "beta", "v_threshold")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"reset": as_str, "compare": as_str}


class DALIF(NeuronModule):
    """DA-LIF: ``v ← β·v + α·x``; fire on ``v >= v_th`` (default); hard reset ``v ← 0`` or
    soft reset ``v ← v − s·v_th``. State starts at 0.

    ``alpha`` and ``beta`` are per layer (float) or per channel (e.g. ``[C, 1, 1]``) and
    learnable by default, trained directly (their effective value is the raw parameter).

    Export (``to_nir_node``):

    - hard reset, every ``beta == 1`` → ``nir.IF(r=α, v_threshold, v_reset=0)``;
    - hard reset, every ``beta < 1`` → ``nir.LIF(tau=dt/(1−β), r=α/(1−β), v_leak=0,
      v_reset=0)`` (the same update: ``dt/τ = 1−β``, ``(dt/τ)·R = α``);
    - hard reset, some ``beta == 1`` and some ``< 1``, or any ``beta > 1`` (a negative
      ``τ``) → custom ``DALIF`` node with ``reset="hard"``;
    - soft reset → custom ``DALIF`` node with ``reset="soft"``.

    Standard nodes carry ``metadata={"compare": ...}``.
    """

    def __init__(
        self,
        alpha: Param = 1.0,
        beta: Param = 0.5,
        v_threshold: Param = 1.0,
        *,
        reset: str = "hard",
        compare: str = ">=",
        learn_alpha: bool = True,
        learn_beta: bool = True,
    ) -> None:
        super().__init__()
        if reset not in ("hard", "soft"):
            raise InvalidParameterError(f"DALIF reset={reset!r}; use 'hard' or 'soft'")
        self.reset = reset
        self.compare = check_compare(compare)
        self.add_param("alpha", alpha, learn_alpha)
        self.add_param("beta", beta, learn_beta)
        self.add_param("v_threshold", v_threshold)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return dalif_step(
            x, state, alpha=self.p("alpha", x), beta=self.p("beta", x),
            v_threshold=self.p("v_threshold", x), reset=self.reset, compare=self.compare,
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        dt_scale(dt, 1.0)  # validates dt
        alpha = full(self.alpha, shape, "alpha")
        beta = full(self.beta, shape, "beta")
        vth = full(self.v_threshold, shape, "v_threshold")
        if self.reset == "hard":
            if np.all(beta == 1):
                return nir.IF(r=alpha, v_threshold=vth, v_reset=np.zeros_like(vth),
                              metadata=compare_meta(self.compare))
            if np.all(beta < 1):
                leak = 1.0 - beta
                return nir.LIF(tau=dt / leak, r=alpha / leak, v_leak=np.zeros_like(vth),
                               v_threshold=vth, v_reset=np.zeros_like(vth),
                               metadata=compare_meta(self.compare))
        return DALIFNode(alpha=alpha, beta=beta, v_threshold=vth, reset=self.reset,
                       compare=self.compare)

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}, compare={self.compare!r}"


def lossy(node: DALIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``LIF(τ = dt/(1−β), r = α/(1−β), v_leak = 0, v_reset = 0)`` (``β = 1``: ``IF(r = α)``):
    exact with hard reset; the soft reset is lost."""
    new, note = leaky_standard_node(node.beta, node.alpha, 0.0, node.v_threshold, 0.0, dt, meta)
    lost = ("exact (hard reset to 0)" if node.reset == "hard"
            else "soft reset v ← v − v_th becomes a hard reset to 0")
    return new, lost + note


def quantize(name: str, node: DALIFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    """The quantizer plan: the linear-reset model with gain ``α`` and decay ``β``."""
    p = param_reader(node, shape)

    return linear_plan("dalif", node.compare, cfg, p("alpha"), np.zeros(shape), p("beta"),
                       p("v_threshold"), node.reset)


SPEC = register(NeuronSpec(
    node=DALIFNode, step=dalif_step, state=LIFState,
    kwargs=node_kwargs("alpha", "beta", "v_threshold",
                       flags={"reset": lambda n: n.reset, "compare": lambda n: n.compare}),
    example=lambda s, pc: DALIF(alpha=example_value(s, pc, 1.0, 0.8),
                                beta=example_value(s, pc, 0.5, 0.7), v_threshold=0.5,
                                reset="soft"),
    lossy=lossy, integer=LINEAR_LIF_MODEL, quantize=quantize,
    frac_bits={"dalif": 12},
    description="DA-LIF (arXiv 2502.10422) with soft reset",
    # a trained β may pass 1 (the shipped digits_dalif reaches 1.057: the membrane grows
    # between spikes and the reset bounds it; DA-LIF's paper does not clamp it): only a
    # negative one (a state flipping sign every step) is refused
    ranges={"beta": "nonnegative", "v_threshold": lambda n: (
        "threshold_soft" if n.reset == "soft" else "threshold_rest")}))

__all__ = ["DALIF", "DALIFNode", "dalif_step"]
