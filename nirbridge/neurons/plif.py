"""PLIF (SpikingJelly ``ParametricLIFNode``): a LIF whose decay is trained.

A module only: its step is exactly NIR's LIF at the module's ``dt``, so it exports the
standard ``nir.LIF`` (hard reset) or the custom ``SubtractiveLIF`` (soft reset), whose
registry entries give it every stage.
"""

from __future__ import annotations

import nir
import numpy as np
import torch

from nirbridge.errors import InvalidParameterError
from nirbridge.neurons._base import (
    NeuronModule,
    Param,
    check_compare,
    compare_meta,
    dt_scale,
    full,
    to_tensor,
)
from nirbridge.neurons._registry import NEURONS
from nirbridge.neurons.standard import LIFState, lif_step


class PLIF(NeuronModule):
    """Parametric LIF (SpikingJelly ``ParametricLIFNode``, decay_input): trainable decay.

    ``v ← v + (x − (v − v_r))·σ(w)``; fire on ``v >= v_th`` (SpikingJelly); hard reset to
    ``v_r``; state starts at ``v_r`` (SpikingJelly). ``w`` is initialised as SpikingJelly
    does, ``w = −log(init_tau − 1)`` so that ``σ(w) = 1/init_tau`` (``init_tau > 1``).
    ``v_reset=None`` is SpikingJelly's soft reset (``v ← v − s·v_th``, leak towards 0).

    The step is NIR's LIF with ``τ = dt/σ(w)``, ``R = 1``, ``v_leak = v_r`` (computed by
    :func:`~nirbridge.neurons.standard.lif_step`, so the export is exact to the last bit
    when the graph's dt is the module's); hard reset exports as ``nir.LIF(tau=dt/σ(w),
    r=1, v_leak=v_r, v_reset=v_r, metadata={"compare": ">="})``, soft reset as ``SubtractiveLIF``.
    Note: standard NIR nodes start at ``v = 0``, so with ``v_r ≠ 0`` the first steps of the
    exported hard-reset node differ from SpikingJelly's start at ``v_r``.
    """

    def __init__(
        self,
        init_tau: Param = 2.0,
        v_threshold: Param = 1.0,
        v_reset: Param | None = 0.0,
        *,
        compare: str = ">=",
        dt: float = 1.0,
        learn: bool = True,
    ) -> None:
        super().__init__()
        init_tau = to_tensor(init_tau, "init_tau")
        if not bool((init_tau > 1).all()):
            raise InvalidParameterError(f"PLIF: init_tau must be > 1; got {init_tau.tolist()}")
        self.compare = check_compare(compare)
        self.dt = float(dt)
        self.soft_reset = v_reset is None
        self.add_param("w", -torch.log(init_tau - 1), learn)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_reset", 0.0 if v_reset is None else v_reset)

    def decay(self) -> torch.Tensor:
        """The effective per-step decay ``σ(w)`` (``= dt/τ``)."""
        return torch.sigmoid(self.w)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x) + self.p("v_reset", x).detach())

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        tau = self.dt / torch.sigmoid(self.p("w", x))
        vr = self.p("v_reset", x)
        return lif_step(
            x, state, tau=tau, r=1.0, v_leak=vr, v_threshold=self.p("v_threshold", x),
            v_reset=vr, dt=self.dt, compare=self.compare,
            reset="subtract" if self.soft_reset else "hard",
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        dt_scale(dt, self.dt)  # validates dt
        k = full(torch.sigmoid(self.w.detach().double()), shape, "w")
        kw = dict(tau=dt / k, r=np.ones_like(k),
                  v_leak=full(self.v_reset, shape, "v_reset"),
                  v_threshold=full(self.v_threshold, shape, "v_threshold"))
        if self.soft_reset:
            return NEURONS["SubtractiveLIF"].node(**kw, compare=self.compare)
        meta: dict = compare_meta(self.compare)
        v_r = full(self.v_reset, shape, "v_reset")
        if np.any(v_r != 0):  # SpikingJelly starts at v_r; NIR readers start at 0
            meta["v_init"] = v_r
        return nir.LIF(**kw, v_reset=v_r, metadata=meta)

    def extra_repr(self) -> str:
        return f"soft_reset={self.soft_reset}, compare={self.compare!r}, dt={self.dt}"


__all__ = ["PLIF"]
