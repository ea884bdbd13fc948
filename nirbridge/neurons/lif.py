"""LIF-family neurons that NIR expresses (LIF, IF, LI, CubaLIF, PLIF) plus soft-reset LIF."""

from __future__ import annotations

import math

import nir
import numpy as np
import torch

from nirbridge.errors import InvalidParameterError
from nirbridge.neurons import functional as F
from nirbridge.neurons.base import NeuronModule
from nirbridge.nodes import SubtractiveLIF

Param = float | torch.Tensor


def as_param(value: Param, learn: bool) -> torch.Tensor:
    """A float or tensor as a float32 tensor; an ``nn.Parameter`` when ``learn``."""
    t = torch.as_tensor(value, dtype=torch.get_default_dtype()).clone()
    return torch.nn.Parameter(t) if learn else t


def full(value: torch.Tensor | float, shape: tuple[int, ...]) -> np.ndarray:
    """Effective parameter broadcast to the neuron shape as float64 (NIR stores arrays)."""
    arr = value.detach().cpu().double().numpy() if torch.is_tensor(value) else np.asarray(value)
    try:
        return np.array(np.broadcast_to(np.asarray(arr, dtype=np.float64), shape))
    except ValueError as exc:
        raise InvalidParameterError(
            f"parameter of shape {np.shape(arr)} does not broadcast to neuron shape {shape}"
        ) from exc


def compare_meta(compare: str) -> dict[str, str]:
    """Metadata recording a standard node's firing convention (NIR's own is '>')."""
    return {"compare": F.check_compare(compare)}


class LIF(NeuronModule):
    """Leaky integrate-and-fire, NIR's forward-Euler form, hard or subtractive reset.

    ``v ← v + (dt/τ)(v_leak − v + R·x)``; fire on ``v > v_th`` (or ``>=``); reset hard to
    ``v_reset`` (exported as ``nir.LIF``) or ``v ← v − s·v_th`` (custom ``SubtractiveLIF``).
    """

    def __init__(
        self,
        tau: Param = 2.0,
        v_threshold: Param = 1.0,
        v_leak: Param = 0.0,
        v_reset: Param = 0.0,
        r: Param = 1.0,
        *,
        reset: str = "hard",
        compare: str = ">",
        dt: float = 1.0,
        learn_tau: bool = False,
    ) -> None:
        super().__init__()
        if reset not in ("hard", "subtract"):
            raise InvalidParameterError(f"LIF reset={reset!r}; use 'hard' or 'subtract'")
        self.tau = as_param(tau, learn_tau)
        self.v_threshold = as_param(v_threshold, False)
        self.v_leak = as_param(v_leak, False)
        self.v_reset = as_param(v_reset, False)
        self.r = as_param(r, False)
        self.reset = reset
        self.compare = F.check_compare(compare)
        self.dt = float(dt)

    def initial_state(self, x: torch.Tensor) -> F.LIFState:
        return F.LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: F.LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return F.lif_step(
            x, state, tau=self.tau.to(x), r=self.r.to(x), v_leak=self.v_leak.to(x),
            v_threshold=self.v_threshold.to(x), v_reset=self.v_reset.to(x), dt=self.dt,
            compare=self.compare, reset=self.reset,
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # Keep dt/τ identical when the graph's dt differs from the module's own.
        tau = full(self.tau, shape) * (dt / self.dt)
        kw = dict(tau=tau, r=full(self.r, shape), v_leak=full(self.v_leak, shape),
                  v_threshold=full(self.v_threshold, shape))
        if self.reset == "subtract":
            return SubtractiveLIF(**kw, compare=self.compare)
        return nir.LIF(**kw, v_reset=full(self.v_reset, shape),
                       metadata=compare_meta(self.compare))


__all__ = ["LIF", "as_param", "compare_meta", "full", "math"]
