"""Sinabs' leaky integrator (``sinabs.layers.ExpLeak``): Sinabs' LIF without a spike.

Sinabs' step (``lif_forward_single`` with ``spike_fn=None``): ``v ← α·v + x`` (its
default ``norm_input=False``; with it, ``α·v + (1 − α)·x``), ``α = exp(−1/τ_mem)`` per
step; the output is this ``v``, and the floor ``min_v_mem`` applies to the stored state
only (Sinabs clones the output before flooring). NIR's LI is the forward-Euler
``v ← v + (dt/τ)(v_leak − v + R·x)``: equal in exact arithmetic for ``τ = dt/(1 − α)``,
``R = gain/(1 − α)``, but not in floating point, and it has no floor; hence the custom
node ``SinabsExpLeak``. Sinabs' own reader reads NIR's ``LI`` as this neuron.

Fixed point: the integer model of :mod:`~nirbridge.neurons.sinabs_iaf`, non-spiking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import nir
import numpy as np
import torch

from nirbridge.neurons._base import (
    LOSSY_EPS,
    CustomNeuron,
    NeuronModule,
    Param,
    as_bool,
    as_str,
    example_value,
    full,
    node_param,
)
from nirbridge.neurons._registry import NeuronSpec, QuantPlan, register
from nirbridge.neurons.sinabs_iaf import SINABS_MODEL, sinabs_plan
from nirbridge.neurons.sinabs_lif import input_gain, sinabs_charge
from nirbridge.neurons.standard import LIFState

Tensor = torch.Tensor


def sinabs_expleak_step(x: Tensor, state: LIFState, *, alpha: Tensor | float,
                        norm_input: bool = False, v_min: Tensor | float | None = None
                        ) -> tuple[Tensor, LIFState]:
    """One step of Sinabs' ExpLeak: the output is the charged ``v``; the state is it
    floored at ``v_min`` (``relu(v − m) + m``, Sinabs' expression)."""
    v = sinabs_charge(x, state.v, alpha, norm_input)
    kept = v if v_min is None else torch.relu(v - v_min) + v_min
    return v, LIFState(kept)


@dataclass(eq=False)
class SinabsExpLeakNode(CustomNeuron):
    """Sinabs' ExpLeak: ``alpha`` the per-step decay, ``norm_input`` the ``1 − α`` input
    gain, ``v_min`` the state's floor where ``floor``. ``compare`` is unused (no spike)."""

    alpha: np.ndarray
    v_min: np.ndarray
    norm_input: bool = False
    floor: bool = False
    compare: str = ">="
    TYPE: ClassVar[str] = "SinabsExpLeak"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "v_min")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "norm_input": as_bool, "floor": as_bool, "compare": as_str}


def _kwargs(node: SinabsExpLeakNode, dt: float, dtype: torch.dtype, device: Any = None
            ) -> dict[str, Any]:
    return dict(alpha=node_param(node, "alpha", dtype, device),
                norm_input=bool(node.norm_input),
                v_min=node_param(node, "v_min", dtype, device) if node.floor else None)


class SinabsExpLeak(NeuronModule):
    """Sinabs' ExpLeak as a single-step nirbridge neuron (output ``v``): ``alpha`` the
    per-step decay, ``norm_input`` as in Sinabs (default False), ``min_v_mem`` the floor
    of the state (None: none). Exports as ``SinabsExpLeak``."""

    def __init__(self, alpha: Param = 0.9, *, norm_input: bool = False,
                 min_v_mem: Param | None = None) -> None:
        super().__init__()
        self.norm_input = bool(norm_input)
        self.floor = min_v_mem is not None
        self.add_param("alpha", alpha)
        self.add_param("v_min", 0.0 if min_v_mem is None else min_v_mem)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return sinabs_expleak_step(x, state, alpha=self.p("alpha", x),
                                   norm_input=self.norm_input,
                                   v_min=self.p("v_min", x) if self.floor else None)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        return SinabsExpLeakNode(alpha=full(self.alpha, shape, "alpha"),
                                 v_min=full(self.v_min, shape, "v_min"),
                                 norm_input=self.norm_input, floor=self.floor)

    def extra_repr(self) -> str:
        return f"norm_input={self.norm_input}, floor={self.floor}"


def lossy(node: SinabsExpLeakNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``LI(τ = dt/(1 − α), R = gain/(1 − α), v_leak = 0)``."""
    one_minus = 1.0 - np.asarray(node.alpha, np.float64)
    note = ""
    if np.any(one_minus < LOSSY_EPS):
        note = (f"; {int((one_minus < LOSSY_EPS).sum())} neuron(s) have decay ≥ 1, clamped "
                f"to 1 − {LOSSY_EPS:g}")
        one_minus = np.maximum(one_minus, LOSSY_EPS)
    new = nir.LI(tau=dt / one_minus, r=input_gain(node) / one_minus,
                 v_leak=np.zeros(node.shape), metadata=meta)
    lost = "forward Euler instead of α·v + x (equal up to rounding)"
    if node.floor:
        lost += "; the floor min_v_mem of the state is lost"
    return new, lost + note


def quantize(name: str, node: SinabsExpLeakNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    alpha = np.array(np.broadcast_to(np.asarray(node.alpha, np.float64), shape))
    gain = np.array(np.broadcast_to(input_gain(node), shape))
    return sinabs_plan(node, shape, cfg, alpha, gain, spiking=False)


SPEC = register(NeuronSpec(
    node=SinabsExpLeakNode, step=sinabs_expleak_step, state=LIFState, kwargs=_kwargs,
    spiking=False,
    example=lambda s, pc: SinabsExpLeak(alpha=example_value(s, pc, 0.8, 0.6),
                                        min_v_mem=example_value(s, pc, -0.3, -0.1)),
    lossy=lossy, integer=SINABS_MODEL, quantize=quantize,
    description="Sinabs ExpLeak: v ← α·v + x, output v, floor min_v_mem on the state",
    ranges={"alpha": "decay"}))

__all__ = ["SinabsExpLeak", "SinabsExpLeakNode", "sinabs_expleak_step"]
