"""SJPLIF: SpikingJelly's ``ParametricLIFNode`` (``activation_based``), to the last bit.

SpikingJelly's LIF with a trained decay ``σ(w)`` that it multiplies by (``_ops/plif``):
``h = v + (x − (v − v_r))·σ(w)`` (``decay_input``) or ``h = v − (v − v_r)·σ(w) + x``;
fire on ``h ≥ v_th``; hard reset to ``v_r`` or soft (``v_reset=None``: ``v ← h − s·v_th``,
leak towards 0); start at ``v_r`` (0 for soft reset). With ``decay_input`` the standard
``nir.LIF`` (or ``SubtractiveLIF``) is exact when ``τ = dt/σ(w)`` gives back
``fl(dt/τ) == σ(w)`` (most values; see :func:`~nirbridge.neurons.sjlif.exact_standard_lif`);
otherwise the custom node ``SJPLIF`` stores ``decay = σ(w)`` itself, a per-step factor
that dt does not enter. nirbridge's own :class:`~nirbridge.neurons.PLIF` is the trainable
PLIF of NIR's LIF step; this neuron is SpikingJelly's.

Lossy form, initial state and quantizer plan: SpikingJelly's LIF family, shared in
:mod:`~nirbridge.neurons.sjlif` (with the rate ``σ(w)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import nir
import numpy as np
import torch

from nirbridge.errors import InvalidParameterError
from nirbridge.neurons._base import (
    CustomNeuron,
    NeuronModule,
    Param,
    as_bool,
    as_str,
    check_compare,
    example_value,
    full,
    to_tensor,
)
from nirbridge.neurons._registry import NeuronSpec, QuantPlan, node_kwargs, register
from nirbridge.neurons.sjlif import exact_standard_lif, sj_init, sj_lossy, sj_quantize
from nirbridge.neurons.standard import LIFState, fire_and_reset
from nirbridge.neurons.sublif import LINEAR_LIF_MODEL

Tensor = torch.Tensor


def sjplif_step(x: Tensor, state: LIFState, *, decay: Tensor | float,
                v_threshold: Tensor | float, v_reset: Tensor | float = 0.0,
                soft_reset: bool = False, decay_input: bool = True,
                compare: str = ">=") -> tuple[Tensor, LIFState]:
    """SpikingJelly ``ParametricLIFNode`` with ``decay = σ(w)``, in its operation order."""
    v = state.v
    v_r = 0.0 if soft_reset else v_reset
    if decay_input:
        h = v + (x - (v - v_r)) * decay
    else:
        h = v - (v - v_r) * decay + x
    return fire_and_reset(h, v_threshold, v_reset, compare,
                          "subtract" if soft_reset else "hard")


@dataclass(eq=False)
class SJPLIFNode(CustomNeuron):
    """SpikingJelly ``ParametricLIFNode``: ``decay = σ(w)`` per step, multiplied by;
    ``soft_reset`` stands for ``v_reset=None`` (then ``v_reset`` is 0 and unused)."""

    decay: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray
    soft_reset: bool = False
    decay_input: bool = True
    compare: str = ">="
    TYPE: ClassVar[str] = "SJPLIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("decay", "v_threshold", "v_reset")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "soft_reset": as_bool,
        "decay_input": as_bool,
        "compare": as_str,
    }


class SJPLIF(NeuronModule):
    """SpikingJelly's ``ParametricLIFNode`` as a nirbridge module: trainable ``w``,
    initialised as SpikingJelly does (``w = −log(init_tau − 1)``, so ``σ(w) = 1/init_tau``),
    or given directly (``w=``, e.g. a trained SpikingJelly node's). ``v_reset=None`` is
    soft reset. Exported as ``nir.LIF``/``SubtractiveLIF`` where exact, else ``SJPLIF``.
    """

    def __init__(self, init_tau: Param = 2.0, v_threshold: Param = 1.0,
                 v_reset: Param | None = 0.0, *, decay_input: bool = True,
                 w: Param | None = None, compare: str = ">=", learn: bool = True) -> None:
        super().__init__()
        if w is None:
            init_tau = to_tensor(init_tau, "init_tau")
            if not bool((init_tau > 1).all()):
                raise InvalidParameterError(
                    f"SJPLIF: init_tau must be > 1; got {init_tau.tolist()}")
            w = -torch.log(init_tau - 1)
        self.compare = check_compare(compare)
        self.soft_reset = v_reset is None
        self.decay_input = bool(decay_input)
        self.add_param("w", w, learn)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_reset", 0.0 if v_reset is None else v_reset)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x) + self.p("v_reset", x).detach())

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return sjplif_step(x, state, decay=torch.sigmoid(self.p("w", x)),
                           v_threshold=self.p("v_threshold", x), v_reset=self.p("v_reset", x),
                           soft_reset=self.soft_reset, decay_input=self.decay_input,
                           compare=self.compare)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # σ(w) as SpikingJelly computes it on this parameter, in float64
        decay = full(torch.sigmoid(self.w.detach().double()), shape, "w")
        v_th = full(self.v_threshold, shape, "v_threshold")
        v_r = full(self.v_reset, shape, "v_reset")
        if self.decay_input:
            node = exact_standard_lif(decay, dt, v_th, None if self.soft_reset else v_r,
                                      self.compare)
            if node is not None:
                return node
        return SJPLIFNode(decay=decay, v_threshold=v_th, v_reset=v_r,
                          soft_reset=self.soft_reset, decay_input=self.decay_input,
                          compare=self.compare)

    def extra_repr(self) -> str:
        return (f"soft_reset={self.soft_reset}, decay_input={self.decay_input}, "
                f"compare={self.compare!r}")


def _lossy(node: SJPLIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    return sj_lossy(node, node.decay, dt, meta)


def _quantize(name: str, node: SJPLIFNode, dt: float, shape: tuple[int, ...],
              cfg: Any) -> QuantPlan:
    return sj_quantize(node, np.asarray(node.decay, np.float64), shape, cfg)


def _example(shape: tuple[int, ...], per_channel: bool) -> SJPLIF:
    # decay_input=False has no standard equivalent: always the custom node
    return SJPLIF(init_tau=example_value(shape, per_channel, 3.0, 4.0), v_threshold=0.5,
                  v_reset=None, decay_input=False)


SPEC = register(NeuronSpec(
    node=SJPLIFNode, step=sjplif_step, state=LIFState, init=sj_init,
    kwargs=node_kwargs("decay", "v_threshold", "v_reset",
                       flags={"soft_reset": lambda n: n.soft_reset,
                              "decay_input": lambda n: n.decay_input,
                              "compare": lambda n: n.compare}),
    example=_example, lossy=_lossy, integer=LINEAR_LIF_MODEL, quantize=_quantize,
    description="SpikingJelly ParametricLIFNode (its operation order; hard or soft reset)",
    ranges={"decay": "decay", "v_threshold": lambda n: (
        "threshold_soft" if n.soft_reset else "threshold_reset:v_reset")}))

__all__ = ["SJPLIF", "SJPLIFNode", "sjplif_step"]
