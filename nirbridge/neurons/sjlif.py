"""SJLIF: SpikingJelly's ``LIFNode`` (``activation_based``), to the last bit.

SpikingJelly charges ``h = v + (x − (v − v_r))/τ`` (``decay_input``) or
``h = v − (v − v_r)/τ + x``, divides by ``τ`` (never multiplies by ``1/τ``), fires on
``h ≥ v_th``, resets hard to ``v_r`` or softly (``v_reset=None``: ``v ← h − s·v_th``, the
leak then pulls towards 0) and starts at ``v = v_r`` (0 for soft reset). NIR's LIF
computes ``v + (dt/τ)(v_leak − v + R·x)``, the same numbers only when ``1/τ`` is exact
(``τ`` a power of two) and the input is decayed: then :class:`SJLIF` exports the standard
``nir.LIF`` (``metadata`` ``compare=">="``, ``v_init``) or, for soft reset,
``SubtractiveLIF``; otherwise the custom node ``SJLIF`` with SpikingJelly's operation
order. τ counts steps: dt does not enter the custom node.

Also here, shared with :mod:`~nirbridge.neurons.sjplif` (SpikingJelly's
``ParametricLIFNode``, the same neuron with ``·σ(w)`` for ``/τ``): the exact standard node
for a per-step rate (:func:`exact_standard_lif`), the lossy approximation, the initial
state and the quantizer plan on the linear-reset integer model of
:mod:`~nirbridge.neurons.sublif`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

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
    check_positive,
    compare_meta,
    dt_scale,
    example_value,
    full,
    leaky_standard_node,
    param_reader,
)
from nirbridge.neurons._registry import NEURONS, NeuronSpec, QuantPlan, node_kwargs, register
from nirbridge.neurons.standard import LIFState, fire_and_reset
from nirbridge.neurons.sublif import LINEAR_LIF_MODEL, LinearLIFParams

Tensor = torch.Tensor


def sjlif_step(x: Tensor, state: LIFState, *, tau: Tensor | float, v_threshold: Tensor | float,
               v_reset: Tensor | float = 0.0, soft_reset: bool = False,
               decay_input: bool = True, compare: str = ">=") -> tuple[Tensor, LIFState]:
    """SpikingJelly ``LIFNode``, in its own operation order (``_ops/lif/reference.py``)."""
    v = state.v
    v_r = 0.0 if soft_reset else v_reset
    if decay_input:
        h = v + (x - (v - v_r)) / tau
    else:
        h = v - (v - v_r) / tau + x
    return fire_and_reset(h, v_threshold, v_reset, compare,
                          "subtract" if soft_reset else "hard")


@dataclass(eq=False)
class SJLIFNode(CustomNeuron):
    """SpikingJelly ``LIFNode``: ``τ`` in steps, divided by; ``soft_reset`` stands for
    ``v_reset=None`` (then ``v_reset`` is 0 and unused)."""

    tau: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray
    soft_reset: bool = False
    decay_input: bool = True
    compare: str = ">="
    TYPE: ClassVar[str] = "SJLIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("tau", "v_threshold", "v_reset")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "soft_reset": as_bool,
        "decay_input": as_bool,
        "compare": as_str,
    }


# ------------------------------------------------------------ the exact standard node
def exact_standard_lif(rate: np.ndarray, dt: float, v_threshold: np.ndarray,
                       v_reset: np.ndarray | None, compare: str) -> nir.NIRNode | None:
    """The standard node equal, bit for bit, to SpikingJelly's decayed-input charge
    ``h = v + (x − (v − v_r))·rate`` at graph step ``dt``, or None when there is none.

    NIR's LIF with ``R = 1``, ``v_leak = v_r`` forms ``(v_r − v) + 1·x``, which is exactly
    ``x − (v − v_r)``; its factor ``dt/τ`` is then the only difference, so the node exists
    when some ``τ`` gives ``fl(dt/τ) == rate`` everywhere (the nearest candidate
    ``τ = dt/rate`` is the only one worth trying: ``dt/τ`` is monotone in ``τ`` and moves by
    about one ulp of ``rate`` per ulp of ``τ``). ``v_reset=None`` is soft reset
    (``SubtractiveLIF``, which starts at 0 as SpikingJelly's soft reset does); a hard
    reset records SpikingJelly's start ``v = v_r`` in ``metadata["v_init"]``.
    """
    dt_scale(dt, 1.0)  # validates dt
    rate = np.asarray(rate, dtype=np.float64)
    if not np.all((rate > 0) & np.isfinite(rate)):
        return None
    tau = dt / rate
    if not (np.all(np.isfinite(tau)) and np.array_equal(dt / tau, rate)):
        return None
    ones = np.ones_like(rate)
    if v_reset is None:
        return NEURONS["SubtractiveLIF"].node(tau=tau, r=ones, v_leak=np.zeros_like(rate),
                                              v_threshold=v_threshold, compare=compare)
    meta: dict[str, Any] = compare_meta(compare)
    if np.any(v_reset != 0):
        meta["v_init"] = v_reset
    return nir.LIF(tau=tau, r=ones, v_leak=v_reset, v_threshold=v_threshold, v_reset=v_reset,
                   metadata=meta)


def reciprocal_if_exact(tau: np.ndarray) -> np.ndarray | None:
    """``1/τ`` where it is exact for every entry (``τ`` a power of two), else None."""
    mantissa, _ = np.frexp(np.asarray(tau, dtype=np.float64))
    return 1.0 / tau if np.all(mantissa == 0.5) else None


# ---------------------------------------------------------------------------- module
class SJLIF(NeuronModule):
    """SpikingJelly's ``LIFNode`` as a nirbridge module (the stand-in the SpikingJelly
    front-end exports it with): see the module docstring for the equations.

    ``v_reset=None`` is soft reset. Exported as ``nir.LIF``/``SubtractiveLIF`` where they
    are exact (``decay_input`` and ``τ`` a power of two), else as the ``SJLIF`` node.
    """

    def __init__(self, tau: Param = 2.0, v_threshold: Param = 1.0,
                 v_reset: Param | None = 0.0, *, decay_input: bool = True,
                 compare: str = ">=") -> None:
        super().__init__()
        self.compare = check_compare(compare)
        self.soft_reset = v_reset is None
        self.decay_input = bool(decay_input)
        self.add_param("tau", tau)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_reset", 0.0 if v_reset is None else v_reset)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x) + self.p("v_reset", x).detach())

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return sjlif_step(x, state, tau=self.p("tau", x), v_threshold=self.p("v_threshold", x),
                          v_reset=self.p("v_reset", x), soft_reset=self.soft_reset,
                          decay_input=self.decay_input, compare=self.compare)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        tau = check_positive(full(self.tau, shape, "tau"), "tau", "SJLIF")
        v_th = full(self.v_threshold, shape, "v_threshold")
        v_r = full(self.v_reset, shape, "v_reset")
        rate = reciprocal_if_exact(tau) if self.decay_input else None
        if rate is not None:
            node = exact_standard_lif(rate, dt, v_th, None if self.soft_reset else v_r,
                                      self.compare)
            if node is not None:
                return node
        return SJLIFNode(tau=tau, v_threshold=v_th, v_reset=v_r, soft_reset=self.soft_reset,
                         decay_input=self.decay_input, compare=self.compare)

    def extra_repr(self) -> str:
        return (f"soft_reset={self.soft_reset}, decay_input={self.decay_input}, "
                f"compare={self.compare!r}")


# ------------------------------------------------------- shared: SJLIF and SJPLIF
def sj_init(node: Any, x0: torch.Tensor) -> LIFState:
    """SpikingJelly's start: ``v = v_r`` (hard reset), 0 (soft reset)."""
    v0 = np.zeros(node.shape) if node.soft_reset else node.v_reset
    return LIFState(torch.as_tensor(np.asarray(v0), dtype=x0.dtype, device=x0.device)
                    .expand_as(x0).clone())


def sj_lossy(node: Any, rate: np.ndarray, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """The lossy form of a SpikingJelly LIF whose per-step rate is ``rate`` (``1/τ`` or
    ``σ(w)``): ``v ← (1 − rate)·v + g·x + rate·v_r`` (``g = rate`` with ``decay_input``,
    else 1) as ``nir.LIF``; the start ``v = v_r`` stays in ``metadata["v_init"]``."""
    gain = rate if node.decay_input else np.ones_like(rate)
    v_r = np.zeros(node.shape) if node.soft_reset else node.v_reset
    meta = dict(meta)
    if np.any(v_r != 0):
        meta["v_init"] = v_r
    new, note = leaky_standard_node(1.0 - rate, gain, rate * v_r, node.v_threshold, v_r, dt,
                                    meta)
    lost = "SpikingJelly's operation order (the last bit of v, hence ties at the threshold)"
    if node.soft_reset:
        lost += "; soft reset v ← v − v_th becomes a hard reset to 0"
    return new, lost + note


def sj_quantize(node: Any, rate: np.ndarray, shape: tuple[int, ...], cfg: Any) -> QuantPlan:
    """The quantizer plan of a SpikingJelly LIF with per-step ``rate``: the linear-reset
    integer model ``v ← sat(v·(1 − rate) + g·x + rate·v_r)``, hard reset to ``v_r`` (its
    start too) or subtractive, in the profiles' ``sublif`` state format."""
    q = cfg.decay_bits
    rate = np.array(np.broadcast_to(rate, shape))
    soft = bool(node.soft_reset)
    p = param_reader(node, shape)
    v_r = np.zeros(shape) if soft else p("v_reset")
    theta = p("v_threshold")
    gain = rate if node.decay_input else np.ones(shape)
    own = rate * v_r

    def build(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
              const: np.ndarray) -> LinearLIFParams:
        vr = fq.fixed("v_reset", v_r, S)
        return LinearLIFParams(
            frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
            compare=node.compare, bias=fq.fixed("bias", own + const, S), in_gain=in_gain,
            gain_frac=gain_frac, decay=fq.fixed("decay", 1.0 - rate, q),
            theta=fq.fixed("v_threshold", theta, S), reset="soft" if soft else "hard",
            v_reset=vr, v_init=vr)

    tmax = float(max(np.max(np.abs(theta)), np.max(np.abs(v_r))))
    return QuantPlan(LINEAR_LIF_MODEL, "sublif", True, True, gain, own, tmax, 0.0, build)


# ------------------------------------------------------------------------- registry
def _lossy(node: SJLIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    return sj_lossy(node, 1.0 / node.tau, dt, meta)


def _quantize(name: str, node: SJLIFNode, dt: float, shape: tuple[int, ...],
              cfg: Any) -> QuantPlan:
    return sj_quantize(node, 1.0 / param_reader(node, shape)("tau"), shape, cfg)


def _example(shape: tuple[int, ...], per_channel: bool) -> SJLIF:
    # τ = 3 is not a power of two: the custom node (τ = 2 would export nir.LIF)
    return SJLIF(tau=example_value(shape, per_channel, 3.0, 4.0), v_threshold=0.5,
                 v_reset=-0.1)


SPEC = register(NeuronSpec(
    node=SJLIFNode, step=sjlif_step, state=LIFState, init=sj_init,
    kwargs=node_kwargs("tau", "v_threshold", "v_reset",
                       flags={"soft_reset": lambda n: n.soft_reset,
                              "decay_input": lambda n: n.decay_input,
                              "compare": lambda n: n.compare}),
    example=_example, lossy=_lossy, integer=LINEAR_LIF_MODEL, quantize=_quantize,
    description="SpikingJelly LIFNode (its operation order; hard or soft reset)",
    ranges={"tau": "tau_steps", "v_threshold": lambda n: (
        "threshold_soft" if n.soft_reset else "threshold_reset:v_reset")}))

__all__ = ["SJLIF", "SJLIFNode", "exact_standard_lif", "reciprocal_if_exact", "sj_init",
           "sj_lossy", "sj_quantize", "sjlif_step"]
