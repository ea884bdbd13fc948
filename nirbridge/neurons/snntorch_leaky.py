"""snnTorch's first-order neurons (``Leaky``, ``Lapicque``) with snnTorch's own reset.

snnTorch does not reset at the step a neuron fires: the next step computes the reset from
the *previous* membrane, ``r = H(v_prev − θ)`` (detached), and applies it there. Per step,
with ``H(z) = (z > 0)``::

    r = H(v − θ)
    v ← (1 − r)·v                         # reset "zero_previous" (Leaky's "zero")
    u = β·v + g·x
    u ← u − r·θ                           # "subtract" (the default)
    u ← u − r·u                           # "zero_updated" (Lapicque's "zero")
    s = H(u − θ)
    if not reset_delay:                   # snnTorch's reset_delay=False
        d = s − r;  u ← u − d·θ ("subtract")  or  u ← u − d·u (both "zero")
    out = s·graded;  v ← u

``Leaky`` is ``g = 1`` with ``β`` clamped to [0, 1]; ``Lapicque`` is ``β = 1 − Δt/(RC)``,
``g = R·Δt/(RC)`` (its forward-Euler RC circuit, ``β`` unclamped, the reset always
delayed). The state is snnTorch's ``mem`` itself (the membrane before the pending reset),
starting at 0. NIR's LIF resets at once and steps ``v + (Δt/τ)(…)``, so neither the
delayed subtraction (92 % of the spikes) nor snnTorch's states map onto it: the custom
node ``SnnTorchLeaky`` is the exact form. It is a per-step model: dt does not enter it.

Fixed point: ``v ← sat(round(v·β) + x)`` with the same resets in integers
(:data:`SNNTORCH_LEAKY_MODEL`); ``graded ≠ 1`` has no integer form (fold it into the next
layer's weights).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import nir
import numpy as np
import torch

from nirbridge import fixed_point as fx
from nirbridge.errors import InvalidParameterError, QuantizationError
from nirbridge.neurons._base import (
    CustomNeuron,
    NeuronModule,
    Param,
    as_bool,
    as_str,
    check_compare,
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
from nirbridge.neurons.sublif import IntLIFState

Tensor = torch.Tensor

#: snnTorch's reset mechanisms in node form: "zero_previous" clears the previous membrane
#: before the update (``Leaky``), "zero_updated" the updated one, input included
#: (``Lapicque``, ``Synaptic``).
RESETS = ("subtract", "zero_previous", "zero_updated", "none")


def check_reset(reset: str, allowed: tuple[str, ...] = RESETS) -> str:
    """``reset`` unchanged if it is one of ``allowed``, else an error."""
    if reset not in allowed:
        raise InvalidParameterError(f"reset={reset!r} is not an snnTorch reset; use one of "
                                    f"{', '.join(allowed)}")
    return reset


def pending_reset(v: Tensor, v_threshold: Tensor | float, compare: str) -> Tensor:
    """snnTorch's ``mem_reset``: the reset due from the previous membrane (detached)."""
    return spike(v - v_threshold, compare).detach()


def immediate_reset(u: Tensor, s: Tensor, r: Tensor, v_threshold: Tensor | float,
                    reset: str) -> Tensor:
    """snnTorch's ``reset_delay=False``: reset at the spike, less the reset already done."""
    d = s - r
    if reset == "subtract":
        return u - d * v_threshold
    if reset in ("zero_previous", "zero_updated"):
        return u - d * u
    return u


def snntorch_leaky_step(x: Tensor, state: LIFState, *, beta: Tensor | float,
                        gain: Tensor | float, v_threshold: Tensor | float,
                        graded: Tensor | float, reset: str = "subtract",
                        reset_delay: bool = True, compare: str = ">"
                        ) -> tuple[Tensor, LIFState]:
    """One step of snnTorch's ``Leaky``/``Lapicque`` (see the module docstring)."""
    v = state.v
    r = pending_reset(v, v_threshold, compare)
    if reset == "zero_previous":
        v = (1 - r) * v
    u = beta * v + gain * x
    if reset == "subtract":
        u = u - r * v_threshold
    elif reset == "zero_updated":
        u = u - r * u
    s = spike(u - v_threshold, compare)
    if not reset_delay:
        u = immediate_reset(u, s, r, v_threshold, reset)
    return s * graded, LIFState(u)


@dataclass(eq=False)
class SnnTorchLeakyNode(CustomNeuron):
    """snnTorch ``Leaky``/``Lapicque``: ``u = β·v + g·x`` with snnTorch's delayed reset
    (``reset``: one of :data:`RESETS`), output ``H(u − θ)·graded``."""

    beta: np.ndarray
    gain: np.ndarray
    v_threshold: np.ndarray
    graded: np.ndarray
    reset: str = "subtract"
    reset_delay: bool = True
    compare: str = ">"
    TYPE: ClassVar[str] = "SnnTorchLeaky"
    PARAMS: ClassVar[tuple[str, ...]] = ("beta", "gain", "v_threshold", "graded")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "reset": as_str, "reset_delay": as_bool, "compare": as_str}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_reset(self.reset)


class SnnTorchLeaky(NeuronModule):
    """snnTorch's ``Leaky`` (``gain = 1``) or ``Lapicque`` as a nirbridge neuron: the same
    step, state and reset (see the module docstring); exported as ``SnnTorchLeaky``.

    ``beta`` is clamped to [0, 1] in the forward, as snnTorch's ``Leaky`` does, unless
    ``clamp_beta=False`` (``Lapicque``). ``reset`` is one of :data:`RESETS`;
    ``reset_delay=False`` is snnTorch's immediate reset; ``graded`` scales the output
    spikes (snnTorch's ``graded_spikes_factor``). State ``v`` starts at 0.
    """

    def __init__(self, beta: Param = 0.9, threshold: Param = 1.0, *, gain: Param = 1.0,
                 graded: Param = 1.0, reset: str = "subtract", reset_delay: bool = True,
                 clamp_beta: bool = True, learn_beta: bool = False,
                 learn_threshold: bool = False, learn_graded: bool = False) -> None:
        super().__init__()
        self.reset = check_reset(reset)
        self.reset_delay = bool(reset_delay)
        self.clamp_beta = bool(clamp_beta)
        self.compare = check_compare(">")
        self.add_param("beta", beta, learn_beta)
        self.add_param("threshold", threshold, learn_threshold)
        self.add_param("gain", gain)
        self.add_param("graded", graded, learn_graded)

    def effective_beta(self, x: Tensor) -> Tensor:
        """The decay the step uses (clamped to [0, 1] unless ``clamp_beta`` is off)."""
        beta = self.p("beta", x)
        return beta.clamp(0, 1) if self.clamp_beta else beta

    def initial_state(self, x: Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x))

    def forward(self, x: Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return snntorch_leaky_step(
            x, state, beta=self.effective_beta(x), gain=self.p("gain", x),
            v_threshold=self.p("threshold", x), graded=self.p("graded", x),
            reset=self.reset, reset_delay=self.reset_delay, compare=self.compare)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # A per-step model (β, not τ): dt does not enter its parameters.
        beta = self.effective_beta(self.beta.detach().double())
        return SnnTorchLeakyNode(
            beta=full(beta, shape, "beta"), gain=full(self.gain, shape, "gain"),
            v_threshold=full(self.threshold, shape, "threshold"),
            graded=full(self.graded, shape, "graded"), reset=self.reset,
            reset_delay=self.reset_delay, compare=self.compare)

    def extra_repr(self) -> str:
        return (f"reset={self.reset!r}, reset_delay={self.reset_delay}, "
                f"clamp_beta={self.clamp_beta}")


def lossy(node: SnnTorchLeakyNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``LIF(τ = dt/(1−β), r = g/(1−β), v_leak = 0, v_reset = 0)`` (``β = 1``: ``IF``)."""
    new, note = leaky_standard_node(node.beta, node.gain, 0.0, node.v_threshold, 0.0, dt,
                                    meta)
    lost = "snnTorch's reset (from the previous membrane, at the next step"
    lost += ", subtracting θ)" if node.reset == "subtract" else ")"
    lost += " becomes NIR's immediate hard reset to 0"
    if node.reset == "none":
        lost = "no reset becomes NIR's hard reset to 0"
    if np.any(node.graded != 1):
        lost += "; the graded spike factor is lost"
    return new, lost + note


# ------------------------------------------------------------------------ integer model
@dataclass
class SnnTorchLeakyParams(fx.NeuronParams):
    """``u ← sat(round(v·decay/2^q) + x)`` with snnTorch's resets on ``theta``."""

    decay: Any = 4096
    theta: Any = 0
    reset: str = "subtract"
    reset_delay: bool = True

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntLIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        return IntLIFState(fx.full_int(0, batch, shape))


def int_reset_after(u: np.ndarray, s: np.ndarray, r: np.ndarray, theta: np.ndarray,
                    reset: str, sat: fx.SaturationCounter | None,
                    p: fx.NeuronParams) -> np.ndarray:
    """:func:`immediate_reset` on integers."""
    d = s - r
    if reset == "subtract":
        return p._sat(u - d * theta, sat, "v")
    if reset in ("zero_previous", "zero_updated"):
        return p._sat(u - d * u, sat, "v")
    return u


def snntorch_leaky_int_step(a_in: np.ndarray, state: IntLIFState, p: SnnTorchLeakyParams,
                            sat: fx.SaturationCounter | None = None
                            ) -> tuple[np.ndarray, IntLIFState]:
    """The step of the module docstring on int64 arrays (``graded`` is 1)."""
    theta = fx.as_int(p.theta)
    v = state.v
    r = fx.fires(v, theta, p.compare)
    if p.reset == "zero_previous":
        v = v * (1 - r)
    x = p.drive(a_in, sat)
    u = p._sat(fx.mul_round(v, p.decay, p.decay_bits) + x, sat, "v")
    if p.reset == "subtract":
        u = p._sat(u - r * theta, sat, "v")
    elif p.reset == "zero_updated":
        u = u * (1 - r)
    s = fx.fires(u, theta, p.compare)
    if not p.reset_delay:
        u = int_reset_after(u, s, r, theta, p.reset, sat, p)
    return s, IntLIFState(u)


SNNTORCH_LEAKY_MODEL = IntegerModel("snntorch_leaky", snntorch_leaky_int_step,
                                    SnnTorchLeakyParams)


def check_binary(name: str, node: Any) -> None:
    """Fixed point carries binary spikes: a graded output factor ≠ 1 has no integer form."""
    if np.any(np.asarray(node.graded) != 1):
        raise QuantizationError(
            f"node '{name}' ({type(node).__name__}): graded spike factor ≠ 1 has no "
            "fixed-point form (the integer spikes are 0/1); fold the factor into the next "
            "layer's weights")


def snntorch_plan(name: str, node: Any, shape: tuple[int, ...], cfg: Any, model: Any,
                  params: type, gain: str | None, factors: dict[str, str],
                  flags: dict[str, Any]) -> QuantPlan:
    """The quantizer plan every snnTorch neuron shares: binary spikes, a 12-bit linear state
    (the profiles' ``"sublif"`` format), homogeneous; the input gain is the node parameter
    ``gain`` (None: 1); ``factors`` maps each ``params`` field to the node parameter it
    holds on the ``decay_bits`` grid (decays, membrane gain), in rounding order; ``flags``
    pass through (reset, reset_delay)."""
    check_binary(name, node)
    p = param_reader(node, shape)
    theta = p("v_threshold")
    q = cfg.decay_bits

    def build(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
              const: np.ndarray) -> Any:
        bias = fq.fixed("bias", const, S)
        fixed = {f: fq.fixed(f, p(src), q) for f, src in factors.items()}
        return params(frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
                      compare=node.compare, bias=bias, in_gain=in_gain, gain_frac=gain_frac,
                      **fixed, theta=fq.fixed("v_threshold", theta, S), **flags)

    return QuantPlan(model, "sublif", True, True,
                     np.ones(shape) if gain is None else p(gain), np.zeros(shape),
                     float(np.max(np.abs(theta))), 0.0, build)


def quantize(name: str, node: SnnTorchLeakyNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    """The plan: input gain ``g`` (folded into the weights), decay ``β``; homogeneous."""
    return snntorch_plan(name, node, shape, cfg, SNNTORCH_LEAKY_MODEL, SnnTorchLeakyParams,
                         "gain", {"decay": "beta"},
                         {"reset": node.reset, "reset_delay": node.reset_delay})


SPEC = register(NeuronSpec(
    node=SnnTorchLeakyNode, step=snntorch_leaky_step, state=LIFState,
    kwargs=node_kwargs("beta", "gain", "v_threshold", "graded",
                       flags={"reset": lambda n: n.reset,
                              "reset_delay": lambda n: n.reset_delay,
                              "compare": lambda n: n.compare}),
    example=lambda s, pc: SnnTorchLeaky(beta=example_value(s, pc, 0.8, 0.6), threshold=0.5),
    lossy=lossy, integer=SNNTORCH_LEAKY_MODEL, quantize=quantize,
    description="snnTorch Leaky/Lapicque: delayed reset from the previous membrane",
    ranges={"beta": "decay", "v_threshold": lambda n: (
        "threshold_soft" if n.reset == "subtract" else "threshold_rest")}))

__all__ = [
    "RESETS",
    "SNNTORCH_LEAKY_MODEL",
    "SnnTorchLeaky",
    "SnnTorchLeakyNode",
    "SnnTorchLeakyParams",
    "check_binary",
    "check_reset",
    "immediate_reset",
    "int_reset_after",
    "pending_reset",
    "snntorch_leaky_int_step",
    "snntorch_leaky_step",
]
