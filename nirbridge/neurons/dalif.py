"""DA-LIF (arXiv 2502.10422): LIF with learnable spatial gain ``alpha`` and decay ``beta``."""

from __future__ import annotations

import nir
import numpy as np
import torch

from nirbridge import nodes as N  # module alias: nirbridge.nodes imports this package
from nirbridge.errors import InvalidParameterError
from nirbridge.neurons import functional as F
from nirbridge.neurons.base import NeuronModule, Param, compare_meta, dt_scale, full


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
        self.compare = F.check_compare(compare)
        self.add_param("alpha", alpha, learn_alpha)
        self.add_param("beta", beta, learn_beta)
        self.add_param("v_threshold", v_threshold)

    def initial_state(self, x: torch.Tensor) -> F.LIFState:
        return F.LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: F.LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return F.dalif_step(
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
        return N.DALIF(alpha=alpha, beta=beta, v_threshold=vth, reset=self.reset,
                       compare=self.compare)

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}, compare={self.compare!r}"


__all__ = ["DALIF"]
