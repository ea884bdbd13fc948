"""snnTorch's ``Alpha``: a membrane that is the weighted sum of an excitatory and an
inhibitory current, with snnTorch's own resets.

Per step, with ``H(z) = (z > 0)``, the reset due from the previous membrane and
``τ_α = log α / (log β − log α) + 1``::

    r = H(v − θ)
    e = α·e + x;   i = β·i − x;   u = τ_α·(e + i)
    "subtract":  e ← e − θ·r;   i ← i − i·r;   u ← u + i_prev·r
    "zero":      e ← e − e·r;   i ← i − i·r;   u ← u − u·r
    s = H(u − θ);   out = s·graded;   v ← u

(``i_prev`` is the inhibitory current before this step: snnTorch's subtractive reset
adds it back to the membrane.) ``α``, ``β`` are clamped to [0, 1] as snnTorch does; the
state ``(e, i, v)`` is snnTorch's ``(syn_exc, syn_inh, mem)``, starting at 0. Neither NIR
nor another nirbridge node has this membrane, so the custom node ``SnnTorchAlpha`` is its
exact form. A per-step model: dt does not enter it.

Fixed point: the same step on int64 arrays with ``α``, ``β``, ``τ_α`` in ``decay_bits``
(:data:`SNNTORCH_ALPHA_MODEL`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import nir
import numpy as np
import torch

from nirbridge import fixed_point as fx
from nirbridge.errors import InvalidParameterError
from nirbridge.neurons._base import (
    LOSSY_EPS,
    CustomNeuron,
    NeuronModule,
    Param,
    as_str,
    check_compare,
    example_value,
    full,
)
from nirbridge.neurons._base import spike as fire
from nirbridge.neurons._registry import (
    IntegerModel,
    NeuronSpec,
    QuantPlan,
    node_kwargs,
    register,
)
from nirbridge.neurons.snntorch_leaky import check_reset, pending_reset, snntorch_plan

Tensor = torch.Tensor

#: The resets snnTorch's ``Alpha`` has ("zero" clears all three states).
ALPHA_RESETS = ("subtract", "zero", "none")


class AlphaState(NamedTuple):
    """snnTorch's ``(syn_exc, syn_inh, mem)``."""

    exc: Tensor
    inh: Tensor
    v: Tensor


def tau_alpha(alpha: Tensor, beta: Tensor) -> Tensor:
    """snnTorch's ``τ_α = log α / (log β − log α) + 1`` (α, β already clamped)."""
    return torch.log(alpha) / (torch.log(beta) - torch.log(alpha)) + 1


def snntorch_alpha_step(x: Tensor, state: AlphaState, *, alpha: Tensor | float,
                        beta: Tensor | float, tau: Tensor | float,
                        v_threshold: Tensor | float, graded: Tensor | float,
                        reset: str = "zero", compare: str = ">"
                        ) -> tuple[Tensor, AlphaState]:
    """One step of snnTorch's ``Alpha`` (see the module docstring); ``tau`` is ``τ_α``."""
    r = pending_reset(state.v, v_threshold, compare)
    e = alpha * state.exc + x
    i = beta * state.inh - x
    u = tau * (e + i)
    if reset == "subtract":
        e = e - v_threshold * r
        i = i - i * r
        u = u - (-state.inh) * r
    elif reset == "zero":
        e = e - e * r
        i = i - i * r
        u = u - u * r
    s = fire(u - v_threshold, compare)
    return s * graded, AlphaState(e, i, u)


@dataclass(eq=False)
class SnnTorchAlphaNode(CustomNeuron):
    """snnTorch ``Alpha``: ``u = τ_α·(e + i)`` of an excitatory and an inhibitory current,
    snnTorch's delayed resets (``reset``: one of :data:`ALPHA_RESETS`); ``tau`` is ``τ_α``."""

    alpha: np.ndarray
    beta: np.ndarray
    tau: np.ndarray
    v_threshold: np.ndarray
    graded: np.ndarray
    reset: str = "zero"
    compare: str = ">"
    TYPE: ClassVar[str] = "SnnTorchAlpha"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "beta", "tau", "v_threshold", "graded")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"reset": as_str, "compare": as_str}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_reset(self.reset, ALPHA_RESETS)


class SnnTorchAlpha(NeuronModule):
    """snnTorch's ``Alpha`` as a nirbridge neuron: the same step, state and resets (see the
    module docstring); exported as ``SnnTorchAlpha``.

    ``alpha`` and ``beta`` are clamped to [0, 1]; snnTorch requires ``alpha > beta`` and
    ``beta < 1`` (``τ_α`` is finite only when ``alpha ≠ beta``). State ``(e, i, v)``
    starts at 0.
    """

    def __init__(self, alpha: Param = 0.9, beta: Param = 0.8, threshold: Param = 1.0, *,
                 graded: Param = 1.0, reset: str = "zero", learn_alpha: bool = False,
                 learn_beta: bool = False, learn_threshold: bool = False) -> None:
        super().__init__()
        self.reset = check_reset(reset, ALPHA_RESETS)
        self.compare = check_compare(">")
        self.add_param("alpha", alpha, learn_alpha)
        self.add_param("beta", beta, learn_beta)
        self.add_param("threshold", threshold, learn_threshold)
        self.add_param("graded", graded)

    def _decays(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, b = self.p("alpha", x).clamp(0, 1), self.p("beta", x).clamp(0, 1)
        return a, b, tau_alpha(a, b)

    def initial_state(self, x: Tensor) -> AlphaState:
        return AlphaState(torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x))

    def forward(self, x: Tensor, state: AlphaState | None = None):
        state = self.initial_state(x) if state is None else state
        a, b, tau = self._decays(x)
        return snntorch_alpha_step(x, state, alpha=a, beta=b, tau=tau,
                                   v_threshold=self.p("threshold", x),
                                   graded=self.p("graded", x), reset=self.reset,
                                   compare=self.compare)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # A per-step model (α, β, not τ in time units): dt does not enter its parameters.
        a, b, tau = self._decays(torch.zeros((), dtype=torch.float64))
        if not np.all(np.isfinite(full(tau, shape, "tau_alpha"))):
            raise InvalidParameterError("SnnTorchAlpha: tau_alpha = log α/(log β − log α) + 1 "
                                        "is not finite; snnTorch requires alpha > beta, "
                                        "0 < beta < 1")
        return SnnTorchAlphaNode(
            alpha=full(a, shape, "alpha"), beta=full(b, shape, "beta"),
            tau=full(tau, shape, "tau_alpha"),
            v_threshold=full(self.threshold, shape, "threshold"),
            graded=full(self.graded, shape, "graded"), reset=self.reset,
            compare=self.compare)

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}"


def lossy(node: SnnTorchAlphaNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``e + i`` at step t is ``(α − β)·v(t−1)`` of the current-based LIF ``syn ← α·syn + x``,
    ``v ← β·v + syn``: ``CubaLIF(τ_syn = dt/(1−α), τ_mem = dt/(1−β), w_in = 1/(1−α),
    r = τ_α(α−β)/(1−β), v_reset = 0)``, one step early."""
    one_a = np.maximum(1.0 - node.alpha, LOSSY_EPS)
    one_b = np.maximum(1.0 - node.beta, LOSSY_EPS)
    new = nir.CubaLIF(tau_syn=dt / one_a, tau_mem=dt / one_b,
                      r=node.tau * (node.alpha - node.beta) / one_b,
                      v_leak=np.zeros(node.shape), v_threshold=node.v_threshold,
                      v_reset=np.zeros(node.shape), w_in=1.0 / one_a, metadata=meta)
    lost = ("the membrane responds one step earlier, and snnTorch's resets of the two "
            "currents become NIR's immediate hard reset of the membrane to 0")
    if np.any(node.graded != 1):
        lost += "; the graded spike factor is lost"
    return new, lost


# ------------------------------------------------------------------------ integer model
class IntAlphaState(NamedTuple):
    """Integer ``(e, i, v)``."""

    exc: np.ndarray
    inh: np.ndarray
    v: np.ndarray


@dataclass
class SnnTorchAlphaParams(fx.NeuronParams):
    """``e ← sat(round(e·alpha/2^q) + x)``, ``i ← sat(round(i·beta/2^q) − x)``,
    ``u ← sat(round((e + i)·tau/2^q))``, snnTorch's resets on ``theta``."""

    alpha: Any = 4096
    beta: Any = 4096
    tau: Any = 4096
    theta: Any = 0
    reset: str = "zero"

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntAlphaState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        z = fx.full_int(0, batch, shape)
        return IntAlphaState(z, z.copy(), z.copy())


def snntorch_alpha_int_step(a_in: np.ndarray, state: IntAlphaState, p: SnnTorchAlphaParams,
                            sat: fx.SaturationCounter | None = None
                            ) -> tuple[np.ndarray, IntAlphaState]:
    """The step of the module docstring on int64 arrays (``graded`` is 1)."""
    q = p.decay_bits
    theta = fx.as_int(p.theta)
    r = fx.fires(state.v, theta, p.compare)
    x = p.drive(a_in, sat)
    e = p._sat(fx.mul_round(state.exc, p.alpha, q) + x, sat, "exc")
    i = p._sat(fx.mul_round(state.inh, p.beta, q) - x, sat, "inh")
    u = p._sat(fx.mul_round(e + i, p.tau, q), sat, "v")
    if p.reset == "subtract":
        e = p._sat(e - theta * r, sat, "exc")
        i = i * (1 - r)
        u = p._sat(u + state.inh * r, sat, "v")
    elif p.reset == "zero":
        e, i, u = e * (1 - r), i * (1 - r), u * (1 - r)
    s = fx.fires(u, theta, p.compare)
    return s, IntAlphaState(e, i, u)


SNNTORCH_ALPHA_MODEL = IntegerModel("snntorch_alpha", snntorch_alpha_int_step,
                                    SnnTorchAlphaParams, ("exc", "inh", "v"))


def quantize(name: str, node: SnnTorchAlphaNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    """The plan: unit input gain into both currents, decays ``α``, ``β``, membrane gain
    ``τ_α``; homogeneous."""
    return snntorch_plan(name, node, shape, cfg, SNNTORCH_ALPHA_MODEL, SnnTorchAlphaParams,
                         None, {"alpha": "alpha", "beta": "beta", "tau": "tau"},
                         {"reset": node.reset})


SPEC = register(NeuronSpec(
    node=SnnTorchAlphaNode, step=snntorch_alpha_step, state=AlphaState,
    kwargs=node_kwargs("alpha", "beta", "tau", "v_threshold", "graded",
                       flags={"reset": lambda n: n.reset, "compare": lambda n: n.compare}),
    example=lambda s, pc: SnnTorchAlpha(alpha=example_value(s, pc, 0.8, 0.9),
                                        beta=example_value(s, pc, 0.5, 0.6), threshold=0.5),
    lossy=lossy, integer=SNNTORCH_ALPHA_MODEL, quantize=quantize,
    description="snnTorch Alpha: membrane of an excitatory and an inhibitory current",
    ranges={"alpha": "decay", "beta": "decay", "v_threshold": lambda n: (
        "threshold_soft" if n.reset == "subtract" else "threshold_rest")}))

__all__ = [
    "ALPHA_RESETS",
    "SNNTORCH_ALPHA_MODEL",
    "AlphaState",
    "IntAlphaState",
    "SnnTorchAlpha",
    "SnnTorchAlphaNode",
    "SnnTorchAlphaParams",
    "snntorch_alpha_int_step",
    "snntorch_alpha_step",
    "tau_alpha",
]
