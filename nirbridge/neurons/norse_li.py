"""Norse's current-based leaky integrator (``norse.torch.LICell``): NorseLIF without fire.

Norse (``li_feed_forward_step``, 1.1.0)::

    j = i + x;   v ← v + (dt·τ_mem⁻¹)·((v_leak − v) + j);   i ← j − (dt·τ_syn⁻¹)·j

with the output ``v`` and the state ``(v, i)`` starting at ``(v_leak, 0)`` — the
sub-threshold step of :mod:`~nirbridge.neurons.norse_lif`. NIR's CubaLI feeds the membrane
the current after its decay step and starts at 0, so this is the custom node ``NorseLI``.
With ``dt·τ_syn⁻¹ = 1`` the current is the input itself (``i`` stays 0), which is how the
Norse front-end exports an ``LIBoxCell`` that starts at ``v_leak ≠ 0`` (NIR's LI starts
at 0).

Fixed point: Lava's LIF arithmetic without threshold (output ``v``), as NorseLIF's.
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
    NeuronModule,
    Param,
    as_str,
    example_value,
    full,
)
from nirbridge.neurons._registry import NeuronSpec, QuantPlan, node_kwargs, register
from nirbridge.neurons.lava_lif import LAVA_LIF_MODEL
from nirbridge.neurons.norse_lif import (
    NorseLIFState,
    cuba_fields,
    factor_inverse,
    lava_plan,
    norse_current,
    start_at_v_leak,
)

Tensor = torch.Tensor


def norse_li_step(x: Tensor, state: NorseLIFState, *, tau_syn_inv: Tensor | float,
                  tau_mem_inv: Tensor | float, v_leak: Tensor | float,
                  dt: float = 1.0) -> tuple[Tensor, NorseLIFState]:
    """Norse LICell: :func:`~nirbridge.neurons.norse_lif.norse_current`; the output is v."""
    new = norse_current(x, state, tau_syn_inv, tau_mem_inv, v_leak, dt)
    return new.v, new


@dataclass(eq=False)
class NorseLINode(CustomNeuron):
    """Norse's LICell: NorseLIF's sub-threshold step, output ``v``; ``(v, i)`` starts at
    ``(v_leak, 0)``; inverse time constants in 1/(graph time unit)."""

    tau_syn_inv: np.ndarray
    tau_mem_inv: np.ndarray
    v_leak: np.ndarray
    compare: str = ">"  # unused (it does not fire); every custom node has the flag
    TYPE: ClassVar[str] = "NorseLI"
    PARAMS: ClassVar[tuple[str, ...]] = ("tau_syn_inv", "tau_mem_inv", "v_leak")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"compare": as_str}


class NorseLI(NeuronModule):
    """Norse's ``LICell`` as a nirbridge module (the stand-in the Norse front-end builds);
    inverse time constants in 1/(the unit of ``dt``)."""

    def __init__(self, tau_syn_inv: Param = 200.0, tau_mem_inv: Param = 100.0,
                 v_leak: Param = 0.0, *, dt: float = 1e-3, learn_tau: bool = False) -> None:
        super().__init__()
        self.dt = float(dt)
        self.add_param("tau_syn_inv", tau_syn_inv, learn_tau)
        self.add_param("tau_mem_inv", tau_mem_inv, learn_tau)
        self.add_param("v_leak", v_leak)

    def initial_state(self, x: torch.Tensor) -> NorseLIFState:
        return NorseLIFState(self.p("v_leak", x).expand_as(x).clone(), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: NorseLIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return norse_li_step(x, state, tau_syn_inv=self.p("tau_syn_inv", x),
                             tau_mem_inv=self.p("tau_mem_inv", x),
                             v_leak=self.p("v_leak", x), dt=self.dt)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        rates = {name: factor_inverse(self.dt * full(getattr(self, name), shape, name), dt)
                 for name in ("tau_syn_inv", "tau_mem_inv")}
        return NorseLINode(**rates, v_leak=full(self.v_leak, shape, "v_leak"))

    def extra_repr(self) -> str:
        return f"dt={self.dt}"


def lossy(node: NorseLINode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``CubaLI(w_in = 1/(dt·τ_syn⁻¹))``: lost is only the start at ``v_leak``."""
    fields, note = cuba_fields(node, dt)
    return nir.CubaLI(**fields, metadata=meta), (
        "NIR's current is Norse's current before its decay (the same v up to rounding); "
        "lost: the start at v = v_leak (CubaLI starts at 0)" + note)


def quantize(name: str, node: NorseLINode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    return lava_plan(node, dt, shape, cfg, spiking=False)


SPEC = register(NeuronSpec(
    node=NorseLINode, step=norse_li_step, state=NorseLIFState, init=start_at_v_leak,
    spiking=False,
    kwargs=node_kwargs("tau_syn_inv", "tau_mem_inv", "v_leak", dt=True),
    example=lambda s, pc: NorseLI(tau_syn_inv=example_value(s, pc, 0.5, 0.7),
                                  tau_mem_inv=example_value(s, pc, 0.25, 0.2), v_leak=0.1,
                                  dt=1.0),
    lossy=lossy, integer=LAVA_LIF_MODEL, quantize=quantize,
    description="Norse LICell (current jumps before, decays after the membrane update)",
    ranges={"tau_syn_inv": "rate", "tau_mem_inv": "rate"}))

__all__ = ["NorseLI", "NorseLINode", "norse_li_step"]
