"""A worked example: a neuron added to nirbridge in one file, outside the package.

``FloorLIF`` is a leaky integrate-and-fire neuron whose membrane cannot fall below a floor
(Sinabs' ``min_v_mem``, here with one spike per step), with subtractive reset::

    v ← max(β·v + x, v_min);  s = H(v − θ)  ('>=' by default);  v ← v − s·θ

Everything nirbridge needs is declared below and registered once; no file of the package
is edited. ``tests/test_registry.py`` imports this module and runs it (with every built-in
neuron) through export, file round trip, lossy fallback, the float64 reference, Lava
floating_pt, the integer model, Lava fixed_pt and the profiler. The README's "Adding a
neuron" walks through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import nir
import numpy as np
import torch

from nirbridge import fixed_point as fx
from nirbridge.neurons import (
    CustomNeuron,
    IntegerModel,
    NeuronModule,
    NeuronSpec,
    QuantPlan,
    as_str,
    check_compare,
    example_value,
    full,
    leaky_standard_node,
    node_kwargs,
    param_reader,
    register,
    spike,
)
from nirbridge.neurons.standard import LIFState
from nirbridge.neurons.sublif import IntLIFState


# 1. the equation: one torch step, used by the module, the reference and Lava floating_pt
def floorlif_step(x: torch.Tensor, state: LIFState, *, beta: Any, v_threshold: Any,
                  v_min: Any, compare: str = ">=") -> tuple[torch.Tensor, LIFState]:
    v = torch.maximum(beta * state.v + x, torch.as_tensor(v_min).to(x))
    s = spike(v - v_threshold, compare)
    return s, LIFState(v - s * v_threshold)


# 2. the NIR node (a dataclass; TYPE is its type name in .nir files)
@dataclass(eq=False)
class FloorLIFNode(CustomNeuron):
    beta: np.ndarray
    v_threshold: np.ndarray
    v_min: np.ndarray
    compare: str = ">="
    TYPE: ClassVar[str] = "FloorLIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("beta", "v_threshold", "v_min")
    FLAGS: ClassVar[dict[str, Any]] = {"compare": as_str}


# 3. the trainable module
class FloorLIF(NeuronModule):
    def __init__(self, beta: Any = 0.8, v_threshold: Any = 1.0, v_min: Any = -0.5, *,
                 compare: str = ">=") -> None:
        super().__init__()
        self.compare = check_compare(compare)
        self.add_param("beta", beta, learn=True)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_min", v_min)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return floorlif_step(x, state, beta=self.p("beta", x),
                             v_threshold=self.p("v_threshold", x), v_min=self.p("v_min", x),
                             compare=self.compare)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        return FloorLIFNode(beta=full(self.beta, shape, "beta"),
                            v_threshold=full(self.v_threshold, shape, "v_threshold"),
                            v_min=full(self.v_min, shape, "v_min"), compare=self.compare)


# 4. the lossy standard-NIR approximation, saying what is lost
def lossy(node: FloorLIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    new, note = leaky_standard_node(node.beta, 1.0, 0.0, node.v_threshold, 0.0, dt, meta)
    return new, "the floor v_min and the subtractive reset become a hard reset to 0" + note


# 5. the integer model: parameters, one step on int64 arrays, explicit saturation
@dataclass
class FloorLIFParams(fx.NeuronParams):
    beta: Any = 4096
    theta: Any = 0
    v_min: Any = 0

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntLIFState:
        return IntLIFState(fx.full_int(0, batch, shape))


def floorlif_int_step(a_in: np.ndarray, state: IntLIFState, p: FloorLIFParams,
                      sat: fx.SaturationCounter | None = None) -> tuple[np.ndarray, IntLIFState]:
    x = p.drive(a_in, sat)
    v = np.maximum(p._sat(fx.mul_round(state.v, p.beta, p.decay_bits) + x, sat, "v"),
                   fx.as_int(p.v_min))
    s = fx.fires(v, fx.as_int(p.theta), p.compare)
    return s, IntLIFState(p._sat(v - s * fx.as_int(p.theta), sat, "v"))


FLOORLIF_MODEL = IntegerModel("floorlif", floorlif_int_step, FloorLIFParams)


# 6. the quantizer plan: v' = βv + x is homogeneous (scaling x, v, θ, v_min keeps spikes)
def quantize(name: str, node: FloorLIFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    p = param_reader(node, shape)

    theta, v_min = p("v_threshold"), p("v_min")

    def build(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
              const: np.ndarray) -> FloorLIFParams:
        return FloorLIFParams(
            frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=cfg.decay_bits,
            compare=node.compare, bias=fq.fixed("bias", const, S), in_gain=in_gain,
            gain_frac=gain_frac, beta=fq.fixed("beta", p("beta"), cfg.decay_bits),
            theta=fq.fixed("v_threshold", theta, S), v_min=fq.fixed("v_min", v_min, S))

    tmax = float(max(np.max(np.abs(theta)), np.max(np.abs(v_min))))
    # a 12-bit linear state: reuse the profiles' "sublif" format rather than a new key
    return QuantPlan(FLOORLIF_MODEL, "sublif", True, True, np.ones(shape), np.zeros(shape),
                     tmax, 0.0, build)


# 7. the registry entry
SPEC = register(NeuronSpec(
    node=FloorLIFNode, step=floorlif_step, state=LIFState,
    kwargs=node_kwargs("beta", "v_threshold", "v_min", flags={"compare": lambda n: n.compare}),
    example=lambda s, pc: FloorLIF(beta=example_value(s, pc, 0.8, 0.6), v_threshold=0.5,
                                   v_min=example_value(s, pc, -0.3, -0.1)),
    lossy=lossy, integer=FLOORLIF_MODEL, quantize=quantize,
    description="example: LIF with a membrane floor and subtractive reset"))
