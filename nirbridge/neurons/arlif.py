"""AR-LIF (arXiv 2507.20746): input-adaptive threshold and adaptive soft reset.

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

Tensor = torch.Tensor


class ARLIFState(NamedTuple):
    v: Tensor
    m: Tensor


def arlif_step(
    x: Tensor,
    state: ARLIFState,
    *,
    decay: Tensor | float,
    v_threshold: Tensor | float,
    tanh_a: Tensor | float,
    c: Tensor | float,
    memoryless_m: bool = False,
    compare: str = ">=",
) -> tuple[Tensor, ARLIFState]:
    """AR-LIF (arXiv 2507.20746): adaptive threshold from the input, adaptive soft reset.

    ``m`` is zero before every step when ``memoryless_m`` (the CIFAR10-DVS checkpoint).
    """
    v = decay * state.v + x
    theta = v_threshold + tanh_a * torch.tanh(x)
    s = spike(v - theta, compare)
    if memoryless_m:
        m = torch.zeros_like(state.m)
    else:
        g = torch.sigmoid(c * x)
        m = torch.relu(state.m) * g - torch.relu(-state.m) * (1 - g)
    m = m + (2 * s - 1) * torch.sigmoid(x)
    v = v - s * (theta + torch.sigmoid(m))
    return s, ARLIFState(v, m)


@dataclass(eq=False)
class ARLIFNode(CustomNeuron):
    """AR-LIF (arXiv 2507.20746): input-driven threshold and adaptive soft reset via ``m``."""

    decay: np.ndarray
    v_threshold: np.ndarray
    tanh_a: np.ndarray
    c: np.ndarray
    memoryless_m: bool = False
    compare: str = ">="
    TYPE: ClassVar[str] = "ARLIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("decay", "v_threshold", "tanh_a", "c")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "memoryless_m": as_bool,
        "compare": as_str,
    }


class ARLIF(NeuronModule):
    """AR-LIF with state ``(v, m)``, both starting at 0::

        v ← decay·v + x
        θ = v_th + tanh(a)·tanh(x)
        s = H(v − θ)                              # '>=' by default
        g = σ(c·x);  m ← relu(m)·g − relu(−m)·(1 − g)
        m ← m + (2s − 1)·σ(x)
        v ← v − s·(θ + σ(m))

    ``a`` (trained raw, effective ``tanh_a = tanh(a)``) and ``c`` are learnable by default,
    per layer or per channel; ``decay`` and ``v_threshold`` are fixed buffers.
    ``memoryless_m=True`` is the variant of the paper's CIFAR10-DVS checkpoint (``m`` is
    zero before every step, ``c`` is then unused); that run fired on strict ``'>'``: pass
    ``compare='>'`` to reproduce it (the default stays ``'>='``, the official code's).
    Exported as the custom ``ARLIF`` node with ``tanh_a`` stored.
    """

    def __init__(
        self,
        decay: Param = 0.5,
        v_threshold: Param = 1.0,
        a: Param = 0.0,
        c: Param = 1.0,
        *,
        memoryless_m: bool = False,
        compare: str = ">=",
        learn_a: bool = True,
        learn_c: bool = True,
    ) -> None:
        super().__init__()
        self.memoryless_m = bool(memoryless_m)
        self.compare = check_compare(compare)
        self.add_param("decay", decay)
        self.add_param("v_threshold", v_threshold)
        self.add_param("a", a, learn_a)
        self.add_param("c", c, learn_c)

    def initial_state(self, x: torch.Tensor) -> ARLIFState:
        return ARLIFState(torch.zeros_like(x), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: ARLIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return arlif_step(
            x, state, decay=self.p("decay", x), v_threshold=self.p("v_threshold", x),
            tanh_a=torch.tanh(self.p("a", x)), c=self.p("c", x),
            memoryless_m=self.memoryless_m, compare=self.compare,
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # AR-LIF is a per-step model: dt does not enter its parameters.
        return ARLIFNode(
            decay=full(self.decay, shape, "decay"),
            v_threshold=full(self.v_threshold, shape, "v_threshold"),
            tanh_a=full(torch.tanh(self.a.detach().double()), shape, "a"),
            c=full(self.c, shape, "c"),
            memoryless_m=self.memoryless_m, compare=self.compare,
        )

    def extra_repr(self) -> str:
        return f"memoryless_m={self.memoryless_m}, compare={self.compare!r}"


def lossy(node: ARLIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``LIF(τ = dt/(1−decay), r = 1/(1−decay), v_leak = 0, v_reset = 0)``: the input-dependent
    threshold and the adaptive reset through ``m`` are lost."""
    new, note = leaky_standard_node(node.decay, 1.0, 0.0, node.v_threshold, 0.0, dt, meta)
    return new, ("the input-dependent threshold (tanh_a·tanh(x)) and the adaptive soft "
                 "reset through m become a fixed threshold and a hard reset to 0" + note)


# ------------------------------------------------------------------ integer model
class IntARLIFState(NamedTuple):
    """AR-LIF state: voltage and adaptive-reset memory ``m``."""

    v: np.ndarray
    m: np.ndarray


@dataclass
class ARLIFParams(fx.NeuronParams):
    """AR-LIF in integers: ``decay``, ``tanh_a``, ``c`` in Q12; ``theta`` (= v_th) in
    state units; LUTs for tanh and σ with ``frac_bits`` output bits. ``bias`` (the
    synapse's bias) is part of ``x`` before the nonlinearities, as the spec requires."""

    decay: Any = 2048
    theta: Any = 0
    tanh_a: Any = 0
    c: Any = 0
    memoryless_m: bool = False
    tanh: fx.Lut | None = None
    sigmoid: fx.Lut | None = None

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntARLIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        z = fx.full_int(0, batch, shape)
        return IntARLIFState(z, z.copy())


def arlif_int_step(a_in: np.ndarray, state: IntARLIFState, p: ARLIFParams,
               sat: fx.SaturationCounter | None = None) -> tuple[np.ndarray, IntARLIFState]:
    """With ``S = frac_bits``, ``one = 2^S``, ``r(a, b) = round(a·b/2^S)``::

        v ← sat(round(v·decay/4096) + x)
        θ = theta + round(tanh_a·TANH(x)/4096)
        s = v ⋚ θ
        m ← 0 (memoryless) | r(max(m,0), g) − r(max(−m,0), one − g),  g = SIG(round(c·x/4096))
        m ← sat(m + (2s − 1)·SIG(x))
        v ← sat(v − s·(θ + SIG(m)))
    """
    assert p.tanh is not None and p.sigmoid is not None, "ARLIFParams needs its LUTs"
    S, q = p.frac_bits, p.decay_bits
    x = p.drive(a_in, sat)
    v = p._sat(fx.mul_round(state.v, p.decay, q) + x, sat, "v")
    theta = fx.as_int(p.theta) + fx.mul_round(p.tanh(x, S), p.tanh_a, q)
    s = fx.fires(v, theta, p.compare)
    if p.memoryless_m:
        m = np.zeros_like(state.m)
    else:
        g = p.sigmoid(fx.mul_round(x, p.c, q), S)
        one = np.int64(1) << S
        m = (fx.mul_round(np.maximum(state.m, 0), g, S)
             - fx.mul_round(np.maximum(-state.m, 0), one - g, S))
    m = p._sat(m + (2 * s - 1) * p.sigmoid(x, S), sat, "m")
    v = p._sat(v - s * (theta + p.sigmoid(m, S)), sat, "v")
    return s, IntARLIFState(v, m)


ARLIF_MODEL = IntegerModel("arlif", arlif_int_step, ARLIFParams, ("v", "m"))


def quantize(name: str, node: ARLIFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    """The quantizer plan of an AR-LIF node (see :mod:`nirbridge.quantize`)."""
    p = param_reader(node, shape)

    cmp = node.compare
    zeros = np.zeros(shape)
    q = cfg.decay_bits
    theta, tanh_a = p("v_threshold"), p("tanh_a")

    def build_arlif(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
                    const: np.ndarray) -> ARLIFParams:
        luts = fx.luts_of(cfg, S)
        return ARLIFParams(
            frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
            compare=cmp, bias=fq.fixed("bias", const, S), in_gain=in_gain,
            gain_frac=gain_frac, decay=fq.fixed("decay", p("decay"), q),
            theta=fq.fixed("v_threshold", theta, S),
            tanh_a=fq.fixed("tanh_a", tanh_a, q), c=fq.fixed("c", p("c"), q),
            memoryless_m=bool(node.memoryless_m), tanh=luts[0], sigmoid=luts[1])

    tmax = float(np.max(np.abs(theta)) + np.max(np.abs(tanh_a)) + 1.0)
    return QuantPlan(ARLIF_MODEL, "arlif", False, True, np.ones(shape), zeros, tmax, 0.0,
                     build_arlif)


SPEC = register(NeuronSpec(
    node=ARLIFNode, step=arlif_step, state=ARLIFState,
    kwargs=node_kwargs("decay", "v_threshold", "tanh_a", "c",
                       flags={"memoryless_m": lambda n: n.memoryless_m,
                              "compare": lambda n: n.compare}),
    example=lambda s, pc: ARLIF(decay=0.5, v_threshold=0.5, a=example_value(s, pc, 0.2, -0.3),
                                c=example_value(s, pc, 0.5, 1.0)),
    lossy=lossy, integer=ARLIF_MODEL, quantize=quantize,
    frac_bits={"arlif": 12},
    description="AR-LIF (arXiv 2507.20746): adaptive threshold and adaptive soft reset",
    ranges={"decay": "decay", "tanh_a": "unit", "v_threshold": "threshold_rest"}))

__all__ = ["ARLIF", "ARLIFNode", "ARLIFParams", "ARLIFState", "ARLIF_MODEL", "IntARLIFState",
           "arlif_int_step", "arlif_step"]
