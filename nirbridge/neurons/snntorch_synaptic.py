"""snnTorch's ``Synaptic``: a current-based LIF with snnTorch's own delayed reset.

Per step, with ``H(z) = (z > 0)`` and the reset due from the previous membrane::

    r = H(v − θ)
    syn ← α·syn + x
    u = β·v + syn
    u ← u − r·θ                           # reset "subtract" (the default)
    u ← u − r·u                           # "zero_updated" (snnTorch's "zero"; syn is kept)
    s = H(u − θ)
    if not reset_delay: d = s − r;  u ← u − d·θ  or  u ← u − d·u
    out = s·graded;  v ← u

``α`` and ``β`` are clamped to [0, 1] (snnTorch's forward). The state ``(syn, v)`` is
snnTorch's ``(syn, mem)``, starting at 0. NIR's ``CubaLIF`` resets at once to ``v_reset``,
so the custom node ``SnnTorchSynaptic`` is the exact form. A per-step model: dt does not
enter it.

Fixed point: ``syn ← sat(round(syn·α) + x)``, ``u ← sat(round(v·β) + syn)`` with the same
resets (:data:`SNNTORCH_SYNAPTIC_MODEL`).
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
    example_value,
    full,
    spike,
)
from nirbridge.neurons._registry import (
    IntegerModel,
    NeuronSpec,
    QuantPlan,
    node_kwargs,
    register,
)
from nirbridge.neurons.snntorch_leaky import (
    check_reset,
    immediate_reset,
    int_reset_after,
    pending_reset,
    snntorch_plan,
)

Tensor = torch.Tensor

#: The resets snnTorch's ``Synaptic`` has ("zero_updated" is its "zero").
SYNAPTIC_RESETS = ("subtract", "zero_updated", "none")


class SynapticState(NamedTuple):
    """snnTorch's ``(syn, mem)``."""

    syn: Tensor
    v: Tensor


def snntorch_synaptic_step(x: Tensor, state: SynapticState, *, alpha: Tensor | float,
                           beta: Tensor | float, v_threshold: Tensor | float,
                           graded: Tensor | float, reset: str = "subtract",
                           reset_delay: bool = True, compare: str = ">"
                           ) -> tuple[Tensor, SynapticState]:
    """One step of snnTorch's ``Synaptic`` (see the module docstring)."""
    r = pending_reset(state.v, v_threshold, compare)
    syn = alpha * state.syn + x
    u = beta * state.v + syn
    if reset == "subtract":
        u = u - r * v_threshold
    elif reset == "zero_updated":
        u = u - r * u
    s = spike(u - v_threshold, compare)
    if not reset_delay:
        u = immediate_reset(u, s, r, v_threshold, reset)
    return s * graded, SynapticState(syn, u)


@dataclass(eq=False)
class SnnTorchSynapticNode(CustomNeuron):
    """snnTorch ``Synaptic``: ``syn ← α·syn + x``, ``u = β·v + syn`` with snnTorch's delayed
    reset (``reset``: one of :data:`SYNAPTIC_RESETS`), output ``H(u − θ)·graded``."""

    alpha: np.ndarray
    beta: np.ndarray
    v_threshold: np.ndarray
    graded: np.ndarray
    reset: str = "subtract"
    reset_delay: bool = True
    compare: str = ">"
    TYPE: ClassVar[str] = "SnnTorchSynaptic"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "beta", "v_threshold", "graded")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "reset": as_str, "reset_delay": as_bool, "compare": as_str}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_reset(self.reset, SYNAPTIC_RESETS)


class SnnTorchSynaptic(NeuronModule):
    """snnTorch's ``Synaptic`` as a nirbridge neuron: the same step, state and reset (see
    the module docstring); exported as ``SnnTorchSynaptic``.

    ``alpha`` and ``beta`` are clamped to [0, 1] in the forward, as snnTorch does;
    ``reset`` is one of :data:`SYNAPTIC_RESETS`; ``reset_delay=False`` is snnTorch's
    immediate reset; ``graded`` scales the output spikes. State ``(syn, v)`` starts at 0.
    """

    def __init__(self, alpha: Param = 0.8, beta: Param = 0.9, threshold: Param = 1.0, *,
                 graded: Param = 1.0, reset: str = "subtract", reset_delay: bool = True,
                 learn_alpha: bool = False, learn_beta: bool = False,
                 learn_threshold: bool = False, learn_graded: bool = False) -> None:
        super().__init__()
        self.reset = check_reset(reset, SYNAPTIC_RESETS)
        self.reset_delay = bool(reset_delay)
        self.compare = check_compare(">")
        self.add_param("alpha", alpha, learn_alpha)
        self.add_param("beta", beta, learn_beta)
        self.add_param("threshold", threshold, learn_threshold)
        self.add_param("graded", graded, learn_graded)

    def initial_state(self, x: Tensor) -> SynapticState:
        return SynapticState(torch.zeros_like(x), torch.zeros_like(x))

    def forward(self, x: Tensor, state: SynapticState | None = None):
        state = self.initial_state(x) if state is None else state
        return snntorch_synaptic_step(
            x, state, alpha=self.p("alpha", x).clamp(0, 1),
            beta=self.p("beta", x).clamp(0, 1), v_threshold=self.p("threshold", x),
            graded=self.p("graded", x), reset=self.reset, reset_delay=self.reset_delay,
            compare=self.compare)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # A per-step model (α, β, not τ): dt does not enter its parameters.
        return SnnTorchSynapticNode(
            alpha=full(self.alpha.detach().double().clamp(0, 1), shape, "alpha"),
            beta=full(self.beta.detach().double().clamp(0, 1), shape, "beta"),
            v_threshold=full(self.threshold, shape, "threshold"),
            graded=full(self.graded, shape, "graded"), reset=self.reset,
            reset_delay=self.reset_delay, compare=self.compare)

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}, reset_delay={self.reset_delay}"


def lossy(node: SnnTorchSynapticNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``CubaLIF(τ_syn = dt/(1−α), τ_mem = dt/(1−β), w_in = 1/(1−α), r = 1/(1−β), v_reset = 0)``:
    NIR's CubaLIF drives the membrane with the updated current, as snnTorch does."""
    one_a = np.maximum(1.0 - node.alpha, LOSSY_EPS)
    one_b = np.maximum(1.0 - node.beta, LOSSY_EPS)
    note = ""
    clamped = int(np.sum(1.0 - node.alpha < LOSSY_EPS) + np.sum(1.0 - node.beta < LOSSY_EPS))
    if clamped:
        note = f"; {clamped} decay(s) ≥ 1 clamped to 1 − {LOSSY_EPS:g}"
    new = nir.CubaLIF(tau_syn=dt / one_a, tau_mem=dt / one_b, r=1.0 / one_b,
                      v_leak=np.zeros(node.shape), v_threshold=node.v_threshold,
                      v_reset=np.zeros(node.shape), w_in=1.0 / one_a, metadata=meta)
    lost = "snnTorch's reset (from the previous membrane, at the next step) becomes NIR's " \
           "immediate hard reset to 0"
    if np.any(node.graded != 1):
        lost += "; the graded spike factor is lost"
    return new, lost + note


# ------------------------------------------------------------------------ integer model
class IntSynapticState(NamedTuple):
    """Integer ``(syn, v)``."""

    syn: np.ndarray
    v: np.ndarray


@dataclass
class SnnTorchSynapticParams(fx.NeuronParams):
    """``syn ← sat(round(syn·alpha/2^q) + x)``, ``u ← sat(round(v·beta/2^q) + syn)``, with
    snnTorch's resets on ``theta``."""

    alpha: Any = 4096
    beta: Any = 4096
    theta: Any = 0
    reset: str = "subtract"
    reset_delay: bool = True

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntSynapticState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        z = fx.full_int(0, batch, shape)
        return IntSynapticState(z, z.copy())


def snntorch_synaptic_int_step(a_in: np.ndarray, state: IntSynapticState,
                               p: SnnTorchSynapticParams,
                               sat: fx.SaturationCounter | None = None
                               ) -> tuple[np.ndarray, IntSynapticState]:
    """The step of the module docstring on int64 arrays (``graded`` is 1)."""
    q = p.decay_bits
    theta = fx.as_int(p.theta)
    r = fx.fires(state.v, theta, p.compare)
    x = p.drive(a_in, sat)
    syn = p._sat(fx.mul_round(state.syn, p.alpha, q) + x, sat, "syn")
    u = p._sat(fx.mul_round(state.v, p.beta, q) + syn, sat, "v")
    if p.reset == "subtract":
        u = p._sat(u - r * theta, sat, "v")
    elif p.reset == "zero_updated":
        u = u * (1 - r)
    s = fx.fires(u, theta, p.compare)
    if not p.reset_delay:
        u = int_reset_after(u, s, r, theta, p.reset, sat, p)
    return s, IntSynapticState(syn, u)


SNNTORCH_SYNAPTIC_MODEL = IntegerModel("snntorch_synaptic", snntorch_synaptic_int_step,
                                       SnnTorchSynapticParams, ("syn", "v"))


def quantize(name: str, node: SnnTorchSynapticNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    """The plan: unit input gain into ``syn``, decays ``α``, ``β``; homogeneous."""
    return snntorch_plan(name, node, shape, cfg, SNNTORCH_SYNAPTIC_MODEL,
                         SnnTorchSynapticParams, None, {"alpha": "alpha", "beta": "beta"},
                         {"reset": node.reset, "reset_delay": node.reset_delay})


SPEC = register(NeuronSpec(
    node=SnnTorchSynapticNode, step=snntorch_synaptic_step, state=SynapticState,
    kwargs=node_kwargs("alpha", "beta", "v_threshold", "graded",
                       flags={"reset": lambda n: n.reset,
                              "reset_delay": lambda n: n.reset_delay,
                              "compare": lambda n: n.compare}),
    example=lambda s, pc: SnnTorchSynaptic(alpha=example_value(s, pc, 0.5, 0.3),
                                           beta=example_value(s, pc, 0.6, 0.4),
                                           threshold=1.0),
    lossy=lossy, integer=SNNTORCH_SYNAPTIC_MODEL, quantize=quantize,
    description="snnTorch Synaptic: current-based LIF, delayed reset from the previous "
                "membrane",
    ranges={"alpha": "decay", "beta": "decay", "v_threshold": lambda n: (
        "threshold_soft" if n.reset == "subtract" else "threshold_rest")}))

__all__ = [
    "SNNTORCH_SYNAPTIC_MODEL",
    "SYNAPTIC_RESETS",
    "IntSynapticState",
    "SnnTorchSynaptic",
    "SnnTorchSynapticNode",
    "SnnTorchSynapticParams",
    "SynapticState",
    "snntorch_synaptic_int_step",
    "snntorch_synaptic_step",
]
