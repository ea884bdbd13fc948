"""CLIF (complementary LIF, ICML 2024).

One file: the custom NIR node, the torch step and trainable module, the lossy
standard-NIR approximation, the integer model and its quantizer plan, the registry entry.
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
    CustomNeuron,
    NeuronModule,
    Param,
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

Tensor = torch.Tensor


class CLIFState(NamedTuple):
    v: Tensor
    m: Tensor


def clif_step(
    x: Tensor,
    state: CLIFState,
    *,
    tau: Tensor | float,
    v_threshold: Tensor | float,
    compare: str = ">=",
) -> tuple[Tensor, CLIFState]:
    """CLIF (ICML 2024): complementary state ``m`` deepens the reset of busy neurons."""
    v = (1 - 1 / tau) * state.v + x
    m = state.m * torch.sigmoid(v / tau)
    s = spike(v - v_threshold, compare)
    m = m + s
    v = v - s * v_threshold - s * torch.sigmoid(m)
    return s, CLIFState(v, m)


@dataclass(eq=False)
class CLIFNode(CustomNeuron):
    """CLIF (ICML 2024): complementary-LIF with state ``m`` that deepens the reset."""

    tau: np.ndarray
    v_threshold: np.ndarray
    compare: str = ">="
    TYPE: ClassVar[str] = "CLIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("tau", "v_threshold")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"compare": as_str}


class CLIF(NeuronModule):
    """CLIF with state ``(v, m)``, both starting at 0::

        v ← (1 − 1/τ)·v + x ;  m ← m·σ(v/τ) ;  s = H(v − v_th)
        m ← m + s ;  v ← v − s·v_th − s·σ(m)

    ``tau`` (2 in the paper) and ``v_threshold`` are fixed buffers; fires on ``'>='``
    (SpikingJelly-based code) by default. Exported as the custom ``CLIF`` node.
    """

    def __init__(self, tau: Param = 2.0, v_threshold: Param = 1.0, *,
                 compare: str = ">=") -> None:
        super().__init__()
        self.compare = check_compare(compare)
        self.add_param("tau", tau)
        self.add_param("v_threshold", v_threshold)

    def initial_state(self, x: torch.Tensor) -> CLIFState:
        return CLIFState(torch.zeros_like(x), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: CLIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return clif_step(x, state, tau=self.p("tau", x),
                           v_threshold=self.p("v_threshold", x), compare=self.compare)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # CLIF is a per-step model: dt does not enter its parameters.
        return CLIFNode(tau=full(self.tau, shape, "tau"),
                      v_threshold=full(self.v_threshold, shape, "v_threshold"),
                      compare=self.compare)

    def extra_repr(self) -> str:
        return f"compare={self.compare!r}"


def lossy(node: CLIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``LIF(τ = τ·dt, r = τ, v_leak = 0, v_reset = 0)``: ``m`` and the soft reset are lost."""
    new, note = leaky_standard_node(1.0 - 1.0 / node.tau, 1.0, 0.0, node.v_threshold, 0.0, dt, meta)
    return new, ("the complementary state m and the soft reset v ← v − v_th − σ(m) become "
                 "a hard reset to 0" + note)


# ------------------------------------------------------------------ integer model
class IntCLIFState(NamedTuple):
    """CLIF state: voltage and complementary state ``m``."""

    v: np.ndarray
    m: np.ndarray


@dataclass
class CLIFParams(fx.NeuronParams):
    """CLIF in integers: ``decay = 1 − 1/τ`` and ``inv_tau = 1/τ`` in Q12, ``theta`` in
    state units, σ as a LUT with ``frac_bits`` output bits."""

    decay: Any = 2048
    inv_tau: Any = 2048
    theta: Any = 0
    sigmoid: fx.Lut | None = None

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntCLIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        z = fx.full_int(0, batch, shape)
        return IntCLIFState(z, z.copy())


def clif_int_step(a_in: np.ndarray, state: IntCLIFState, p: CLIFParams,
              sat: fx.SaturationCounter | None = None) -> tuple[np.ndarray, IntCLIFState]:
    """``v ← sat(round(v·decay/4096) + x)``; ``m ← round(m·SIG(round(v·inv_tau/4096))/2^S)``;
    ``s = v ⋚ θ``; ``m ← sat(m + s·2^S)``; ``v ← sat(v − s·θ − s·SIG(m))``."""
    assert p.sigmoid is not None, "CLIFParams needs its sigmoid LUT"
    S, q = p.frac_bits, p.decay_bits
    x = p.drive(a_in, sat)
    v = p._sat(fx.mul_round(state.v, p.decay, q) + x, sat, "v")
    m = fx.mul_round(state.m, p.sigmoid(fx.mul_round(v, p.inv_tau, q), S), S)
    theta = fx.as_int(p.theta)
    s = fx.fires(v, theta, p.compare)
    m = p._sat(m + (s << S), sat, "m")
    v = p._sat(v - s * theta - s * p.sigmoid(m, S), sat, "v")
    return s, IntCLIFState(v, m)


CLIF_MODEL = IntegerModel("clif", clif_int_step, CLIFParams, ("v", "m"))


def quantize(name: str, node: CLIFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    """The quantizer plan of a CLIF node (see :mod:`nirbridge.quantize`)."""
    p = param_reader(node, shape)

    cmp = node.compare
    zeros = np.zeros(shape)
    q = cfg.decay_bits
    tau, theta = p("tau"), p("v_threshold")

    def build_clif(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
                   const: np.ndarray) -> CLIFParams:
        return CLIFParams(
            frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
            compare=cmp, bias=fq.fixed("bias", const, S), in_gain=in_gain,
            gain_frac=gain_frac, decay=fq.fixed("decay", 1.0 - 1.0 / tau, q),
            inv_tau=fq.fixed("inv_tau", 1.0 / tau, q),
            theta=fq.fixed("v_threshold", theta, S), sigmoid=fx.luts_of(cfg, S)[1])

    return QuantPlan(CLIF_MODEL, "clif", False, True, np.ones(shape), zeros,
                     float(np.max(np.abs(theta)) + 1.0), 0.0, build_clif)


SPEC = register(NeuronSpec(
    node=CLIFNode, step=clif_step, state=CLIFState,
    kwargs=node_kwargs("tau", "v_threshold", flags={"compare": lambda n: n.compare}),
    example=lambda s, pc: CLIF(tau=example_value(s, pc, 2.0, 3.0), v_threshold=0.5),
    lossy=lossy, integer=CLIF_MODEL, quantize=quantize,
    frac_bits={"clif": 12},
    description="CLIF (ICML 2024): complementary state deepens the reset",
    ranges={"tau": "tau_steps_1", "v_threshold": "threshold_rest"}))

__all__ = ["CLIF", "CLIFNode", "CLIFParams", "CLIFState", "CLIF_MODEL", "IntCLIFState",
           "clif_int_step", "clif_step"]
