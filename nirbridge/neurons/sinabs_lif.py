"""Sinabs' leaky integrate-and-fire neuron (``sinabs.layers.LIF``).

Sinabs' step (``lif_forward_single``): ``v ← α·v + (1 − α)·x`` with ``norm_input`` (its
default), else ``v ← α·v + x``, with ``α = exp(−1/τ_mem)`` per time step (or the trained
``alpha_mem``); then the spike, reset and floor of Sinabs' IAF
(:func:`~nirbridge.neurons.sinabs_iaf.sinabs_fire`). NIR's LIF is a forward-Euler step
``v ← v + (dt/τ)(v_leak − v + R·x)`` that fires once and resets hard, so this is the
custom node ``SinabsLIF`` (``alpha`` is the per-step decay: no dt enters it).

Fixed point: the integer model of :mod:`~nirbridge.neurons.sinabs_iaf` with a decay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import nir
import numpy as np
import torch

from nirbridge.neurons._base import (
    CustomNeuron,
    Param,
    as_bool,
    compare_meta,
    example_value,
    full,
    leaky_standard_node,
    node_param,
)
from nirbridge.neurons._registry import NeuronSpec, QuantPlan, register
from nirbridge.neurons.sinabs_iaf import (
    FIRE_FLAGS,
    SINABS_MODEL,
    SinabsFire,
    check_fire_node,
    event_bound,
    fire_kwargs,
    fire_losses,
    lossy_reset,
    sinabs_fire,
    sinabs_plan,
)
from nirbridge.neurons.standard import LIFState

Tensor = torch.Tensor


def sinabs_charge(x: Tensor, v: Tensor, alpha: Tensor | float, norm_input: bool) -> Tensor:
    """Sinabs' leaky charge, in its order: ``α·v + (1 − α)·x`` or ``α·v + x``."""
    syn = (1 - alpha) * x if norm_input else x
    return alpha * v + syn


def sinabs_lif_step(x: Tensor, state: LIFState, *, alpha: Tensor | float,
                    norm_input: bool = True, v_threshold: Tensor | float,
                    spike_mode: str = "multi", max_spikes: int = 0, reset: str = "subtract",
                    reset_value: Tensor | float, v_min: Tensor | float | None = None
                    ) -> tuple[Tensor, LIFState]:
    """One step of Sinabs' LIF: :func:`sinabs_charge`, then spike, reset and floor."""
    s, v = sinabs_fire(sinabs_charge(x, state.v, alpha, norm_input),
                       v_threshold=v_threshold, spike_mode=spike_mode, max_spikes=max_spikes,
                       reset=reset, reset_value=reset_value, v_min=v_min)
    return s, LIFState(v)


@dataclass(eq=False)
class SinabsLIFNode(CustomNeuron):
    """Sinabs' LIF: ``alpha`` the per-step decay ``exp(−1/τ_mem)``; ``norm_input`` scales
    the input by ``1 − α``; the other fields as :class:`SinabsIAFNode`'s."""

    alpha: np.ndarray
    v_threshold: np.ndarray
    reset_value: np.ndarray
    v_min: np.ndarray
    norm_input: bool = True
    spike: str = "multi"
    max_spikes: int = 0
    reset: str = "subtract"
    floor: bool = False
    compare: str = ">="
    TYPE: ClassVar[str] = "SinabsLIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "v_threshold", "reset_value", "v_min")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"norm_input": as_bool, **FIRE_FLAGS}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fire_node(self)


def _kwargs(node: SinabsLIFNode, dt: float, dtype: torch.dtype, device: Any = None
            ) -> dict[str, Any]:
    return dict(alpha=node_param(node, "alpha", dtype, device),
                norm_input=bool(node.norm_input), **fire_kwargs(node, dtype, device))


class SinabsLIF(SinabsFire):
    """Sinabs' LIF as a single-step nirbridge neuron: ``alpha`` is the per-step decay
    (Sinabs' ``alpha_mem_calculated``), ``norm_input`` as in Sinabs (default True); the
    spike, reset and floor arguments as :class:`~nirbridge.neurons.sinabs_iaf.SinabsIAF`'s.
    Exports as ``SinabsLIF``."""

    def __init__(self, alpha: Param = 0.9, v_threshold: Param = 1.0, *,
                 norm_input: bool = True, spike: str = "multi", max_spikes: int = 0,
                 reset: str = "subtract", reset_value: Param | None = None,
                 min_v_mem: Param | None = None) -> None:
        super().__init__()
        self.norm_input = bool(norm_input)
        self.add_param("alpha", alpha)
        self._init_fire(v_threshold, spike, max_spikes, reset, reset_value, min_v_mem)

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return sinabs_lif_step(x, state, alpha=self.p("alpha", x), norm_input=self.norm_input,
                               **self._fire_kw(x))

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # a per-step model: alpha is the decay of one step whatever the graph's dt
        return SinabsLIFNode(alpha=full(self.alpha, shape, "alpha"),
                             norm_input=self.norm_input, **self._fire_fields(shape))

    def extra_repr(self) -> str:
        return f"norm_input={self.norm_input}, {super().extra_repr()}"


def input_gain(node: Any) -> np.ndarray:
    """The gain on ``x``: ``1 − α`` with ``norm_input``, else 1."""
    alpha = np.asarray(node.alpha, np.float64)
    return 1.0 - alpha if node.norm_input else np.ones_like(alpha)


def lossy(node: SinabsLIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``LIF(τ = dt/(1 − α), R = gain/(1 − α), v_threshold, v_reset)`` firing on ``>=``."""
    new, note = leaky_standard_node(node.alpha, input_gain(node), 0.0, node.v_threshold,
                                    lossy_reset(node), dt, {**meta, **compare_meta(">=")})
    return new, fire_losses(node) + note


def quantize(name: str, node: SinabsLIFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    alpha = np.array(np.broadcast_to(np.asarray(node.alpha, np.float64), shape))
    gain = np.array(np.broadcast_to(input_gain(node), shape))
    return sinabs_plan(node, shape, cfg, alpha, gain)


def example(shape: tuple[int, ...], per_channel: bool) -> SinabsLIF:
    """The registry's example: SingleSpike, MembraneReset, a floor, norm_input."""
    return SinabsLIF(alpha=example_value(shape, per_channel, 0.7, 0.5), v_threshold=0.5,
                     spike="single", reset="reset",
                     min_v_mem=example_value(shape, per_channel, -0.4, -0.2))


SPEC = register(NeuronSpec(
    node=SinabsLIFNode, step=sinabs_lif_step, state=LIFState, kwargs=_kwargs,
    example=example, lossy=lossy, integer=SINABS_MODEL, quantize=quantize,
    events=event_bound,
    description="Sinabs LIF: v ← α·v + (1−α)·x, spike counts, Sinabs' reset and floor",
    ranges={"alpha": "decay", "v_threshold": "count_threshold", "reset_value": lambda n: (
        "reset_amount" if n.reset == "subtract" else ())}))

__all__ = ["SinabsLIF", "SinabsLIFNode", "input_gain", "sinabs_charge", "sinabs_lif_step"]
