"""Sinabs' integrate-and-fire neuron (``sinabs.layers.IAF``): several spikes per step,
subtractive reset, a membrane floor.

Sinabs' step (``sinabs/layers/functional/lif.py``, ``lif_forward_single``), in its order:
charge ``v ← v + x``; spike; reset; floor::

    MultiSpike   s = (v > 0)·trunc(v/θ)              (several spikes: floor(v/θ) for θ > 0)
    MaxSpike(n)  s = min((v > 0)·trunc(v/θ), n)
    SingleSpike  s = (v − θ ≥ 0)
    MembraneSubtract(d)   v ← v − s·d               (d = θ by default)
    MembraneReset(r)      v ← v·(s = 0) + r         (r is added to every neuron, as Sinabs does)
    min_v_mem m           v ← relu(v − m) + m

The output is the spike COUNT of the step (an integer ≥ 0). NIR's ``IF`` fires once and
resets hard, so this is the custom node ``SinabsIAF``; Sinabs' LIF (:mod:`.sinabs_lif`)
and ExpLeak (:mod:`.sinabs_expleak`) build on the step and the integer model defined here.

Fixed point (:data:`SINABS_MODEL`): the same order on integers; ``floor(v/θ)`` without a
run-time division, by a multiply and a shift with a reciprocal the quantizer computes once
(:func:`divide_by_constant`: exact for every state value).
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
    check_positive,
    compare_meta,
    example_value,
    full,
    node_param,
    param_reader,
    spike,
)
from nirbridge.neurons._registry import IntegerModel, NeuronSpec, QuantPlan, register
from nirbridge.neurons.standard import LIFState
from nirbridge.neurons.sublif import IntLIFState

Tensor = torch.Tensor
SPIKES = ("multi", "single")
RESETS = ("subtract", "reset")
#: The profiles' ``[quantization.frac_bits]`` entry these neurons use (a 12-bit linear
#: state, as SubtractiveLIF's), so that no profile needs a new key.
FRAC_KEY = "sublif"


def check_modes(spike_mode: str, reset: str, max_spikes: int, owner: str) -> None:
    """An error naming ``owner`` unless the spike and reset modes are Sinabs' own."""
    if spike_mode not in SPIKES:
        raise InvalidParameterError(f"{owner}: spike={spike_mode!r}; use 'multi' (MultiSpike, "
                                    "MaxSpike) or 'single' (SingleSpike)")
    if reset not in RESETS:
        raise InvalidParameterError(f"{owner}: reset={reset!r}; use 'subtract' "
                                    "(MembraneSubtract) or 'reset' (MembraneReset)")
    if int(max_spikes) < 0:
        raise InvalidParameterError(f"{owner}: max_spikes={max_spikes!r}; use 0 (no bound) "
                                    "or a positive bound")


# ------------------------------------------------------------------------- torch step
def sinabs_fire(v: Tensor, *, v_threshold: Tensor | float,
                spike_mode: str = "multi", max_spikes: int = 0, reset: str = "subtract",
                reset_value: Tensor | float, v_min: Tensor | float | None = None
                ) -> tuple[Tensor, Tensor]:
    """Spike, reset and floor a charged membrane ``v`` as Sinabs does; ``(s, v)``.

    The forward values are Sinabs' expressions, operation for operation (so float64 runs
    agree bit for bit); the gradient is nirbridge's surrogate of the first spike.
    """
    s = spike(v - v_threshold, ">=")  # SingleSpike's (v − θ ≥ 0); the surrogate for all
    if spike_mode == "multi":
        count = (v > 0) * torch.div(v, v_threshold, rounding_mode="trunc")
        if max_spikes:
            count = torch.clamp(count, max=max_spikes)
        # the count's value with the surrogate's gradient: small integers, so exact
        s = s + (count - s).detach()
    if reset == "subtract":
        v = v - s * reset_value
    else:
        v = v * (s == 0).to(v.dtype) + reset_value
    if v_min is not None:
        v = torch.relu(v - v_min) + v_min
    return s, v


def sinabs_iaf_step(x: Tensor, state: LIFState, *, v_threshold: Tensor | float,
                    spike_mode: str = "multi", max_spikes: int = 0, reset: str = "subtract",
                    reset_value: Tensor | float, v_min: Tensor | float | None = None
                    ) -> tuple[Tensor, LIFState]:
    """One step of Sinabs' IAF: ``v ← v + x`` (Sinabs multiplies ``v`` by 1.0, which is
    exact), then :func:`sinabs_fire`."""
    s, v = sinabs_fire(state.v + x, v_threshold=v_threshold, spike_mode=spike_mode,
                       max_spikes=max_spikes, reset=reset, reset_value=reset_value,
                       v_min=v_min)
    return s, LIFState(v)


# --------------------------------------------------------------------------- the node
#: The flags every Sinabs spiking node has, with their converters from a file's values.
FIRE_FLAGS: dict[str, Callable[[Any], Any]] = {
    "spike": as_str, "max_spikes": lambda v: int(np.asarray(v).item()), "reset": as_str,
    "floor": as_bool, "compare": as_str,
}


def check_fire_node(node: Any) -> None:
    """The checks every Sinabs spiking node makes after :class:`CustomNeuron`'s."""
    name = type(node).__name__
    check_modes(node.spike, node.reset, node.max_spikes, name)
    if node.compare != ">=":
        raise InvalidParameterError(f"{name}: compare={node.compare!r}; Sinabs fires on "
                                    "v >= v_threshold, so it is always '>='")
    check_positive(node.v_threshold, "v_threshold", name)


@dataclass(eq=False)
class SinabsIAFNode(CustomNeuron):
    """Sinabs' IAF (see the module docstring). ``reset_value``: what ``MembraneSubtract``
    subtracts per spike (θ by default) or what ``MembraneReset`` adds; ``v_min`` is the
    floor ``min_v_mem`` where ``floor``; ``max_spikes`` bounds the count (0: no bound)."""

    v_threshold: np.ndarray
    reset_value: np.ndarray
    v_min: np.ndarray
    spike: str = "multi"
    max_spikes: int = 0
    reset: str = "subtract"
    floor: bool = False
    compare: str = ">="
    TYPE: ClassVar[str] = "SinabsIAF"
    PARAMS: ClassVar[tuple[str, ...]] = ("v_threshold", "reset_value", "v_min")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = FIRE_FLAGS

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fire_node(self)


def fire_kwargs(node: Any, dtype: torch.dtype, device: Any = None) -> dict[str, Any]:
    """The keyword arguments of :func:`sinabs_fire` from a Sinabs spiking node."""
    return dict(v_threshold=node_param(node, "v_threshold", dtype, device),
                spike_mode=node.spike, max_spikes=int(node.max_spikes), reset=node.reset,
                reset_value=node_param(node, "reset_value", dtype, device),
                v_min=node_param(node, "v_min", dtype, device) if node.floor else None)


def _iaf_kwargs(node: SinabsIAFNode, dt: float, dtype: torch.dtype, device: Any = None
                ) -> dict[str, Any]:
    return fire_kwargs(node, dtype, device)


# ------------------------------------------------------------------------- the module
class SinabsFire(NeuronModule):
    """What Sinabs' spiking modules share: threshold, spike, reset and floor settings."""

    def _init_fire(self, v_threshold: Param, spike: str, max_spikes: int, reset: str,
                   reset_value: Param | None, min_v_mem: Param | None) -> None:
        check_modes(spike, reset, max_spikes, type(self).__name__)
        self.spike_mode = spike
        self.max_spikes = int(max_spikes) if spike == "multi" else 0
        self.reset = reset
        self.floor = min_v_mem is not None
        self.add_param("v_threshold", v_threshold)
        if reset_value is None:  # MembraneSubtract(None) subtracts θ; MembraneReset() is 0
            reset_value = v_threshold if reset == "subtract" else 0.0
        self.add_param("reset_value", reset_value)
        self.add_param("v_min", 0.0 if min_v_mem is None else min_v_mem)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        # Sinabs' reset_states(): zeros
        return LIFState(torch.zeros_like(x))

    def _fire_kw(self, x: torch.Tensor) -> dict[str, Any]:
        return dict(v_threshold=self.p("v_threshold", x), spike_mode=self.spike_mode,
                    max_spikes=self.max_spikes, reset=self.reset,
                    reset_value=self.p("reset_value", x),
                    v_min=self.p("v_min", x) if self.floor else None)

    def _fire_fields(self, shape: tuple[int, ...]) -> dict[str, Any]:
        name = type(self).__name__
        return dict(
            v_threshold=check_positive(full(self.v_threshold, shape, "v_threshold"),
                                       "v_threshold", name),
            reset_value=full(self.reset_value, shape, "reset_value"),
            v_min=full(self.v_min, shape, "v_min"), spike=self.spike_mode,
            max_spikes=self.max_spikes, reset=self.reset, floor=self.floor)

    def extra_repr(self) -> str:
        return (f"spike={self.spike_mode!r}, max_spikes={self.max_spikes}, "
                f"reset={self.reset!r}, floor={self.floor}")


class SinabsIAF(SinabsFire):
    """Sinabs' IAF as a single-step nirbridge neuron (``forward(x, state) -> (s, state)``).

    ``spike``: ``"multi"`` (``MultiSpike``; with ``max_spikes > 0``, ``MaxSpike``) or
    ``"single"`` (``SingleSpike``); ``reset``: ``"subtract"`` (``MembraneSubtract``,
    ``reset_value`` = its ``subtract_value``, θ when None) or ``"reset"``
    (``MembraneReset``, ``reset_value`` = its ``reset_value``, 0 when None);
    ``min_v_mem``: the floor (None: none). State starts at 0. Exports as ``SinabsIAF``.
    """

    def __init__(self, v_threshold: Param = 1.0, *, spike: str = "multi",
                 max_spikes: int = 0, reset: str = "subtract",
                 reset_value: Param | None = None, min_v_mem: Param | None = None) -> None:
        super().__init__()
        self._init_fire(v_threshold, spike, max_spikes, reset, reset_value, min_v_mem)

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return sinabs_iaf_step(x, state, **self._fire_kw(x))

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # a per-step model: dt does not enter its parameters
        return SinabsIAFNode(**self._fire_fields(shape))


# ----------------------------------------------------------------- lossy approximation
def fire_losses(node: Any) -> str:
    """What a standard NIR neuron loses of a Sinabs spiking node."""
    lost = []
    if node.spike == "multi" and node.max_spikes != 1:
        lost.append("several spikes per step (floor(v/θ)) become at most one")
    if node.reset == "subtract":
        lost.append("the subtractive reset v ← v − s·d becomes a hard reset to 0")
    elif np.any(node.reset_value != 0):
        lost.append("MembraneReset adds reset_value to the neurons that did not fire too")
    if node.floor:
        lost.append("the floor min_v_mem is lost")
    return "; ".join(lost) or "nothing"


def lossy_reset(node: Any) -> np.ndarray:
    """The hard reset value of the standard approximation."""
    return node.reset_value if node.reset == "reset" else np.zeros(node.shape)


def lossy(node: SinabsIAFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``IF(r = 1, v_threshold, v_reset)`` firing on ``>=``."""
    meta = {**meta, **compare_meta(">=")}
    new = nir.IF(r=np.ones(node.shape), v_threshold=node.v_threshold,
                 v_reset=lossy_reset(node), metadata=meta)
    return new, fire_losses(node)


# ------------------------------------------------------------------ integer model
def divide_by_constant(theta: Any, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mul, shift)`` with ``(n·mul) >> shift == n // θ`` for every ``0 ≤ n < 2^bits``.

    ``shift = bits + ⌈log2 θ⌉``, ``mul = ⌈2^shift/θ⌉``: with ``mul·θ = 2^shift + e``,
    ``0 ≤ e < θ``, ``n·mul/2^shift = n/θ + n·e/(θ·2^shift)`` and the second term is below
    ``2^bits/2^shift ≤ 1/θ``, too little to reach the next multiple of ``1/θ`` above
    ``n/θ``; so the floor is ``n // θ``. For ``θ = 2^k`` this is ``n >> k``. Computed once,
    at quantization; the run-time step only multiplies and shifts.
    """
    th = fx.as_int(theta)
    if np.any(th < 1):
        raise QuantizationError("a Sinabs threshold rounds to 0 in the state format; give "
                                "more fractional bits")
    shift = bits + np.ceil(np.log2(th.astype(np.float64))).astype(np.int64)
    # log2 of a non-power of two may round down at large θ: make 2^shift ≥ 2^bits·θ sure
    shift = np.where((np.int64(1) << shift) < (th << bits), shift + 1, shift)
    mul = ((np.int64(1) << shift) + th - 1) // th
    if np.any(mul > (np.iinfo(np.int64).max >> bits)):
        raise QuantizationError(f"a {bits + 1}-bit Sinabs state cannot be divided in 64 "
                                "bits; use state_bits <= 31")
    return mul, shift


@dataclass
class SinabsParams(fx.NeuronParams):
    """Sinabs' IAF/LIF/ExpLeak on integers: ``v ← sat(round(v·decay/2^12) + x)`` (no
    multiply where ``decay`` is None: IAF); ``s``: ``(max(v, 0)·div_mul) >> div_shift``
    (``floor(v/θ)``, bounded by ``max_spikes`` where > 0) or ``v >= θ`` (single), or no
    spike at all (``spiking=False``: the output is ``v`` before the floor); reset
    ``v − s·reset_value`` or ``v·(s = 0) + reset_value``; floor ``max(v, v_min)`` where
    ``floor``."""

    decay: Any = None
    theta: Any = 1
    div_mul: Any = 1
    div_shift: Any = 0
    spike: str = "multi"
    max_spikes: int = 0
    reset: str = "subtract"
    reset_value: Any = 0
    floor: bool = False
    v_min: Any = 0
    spiking: bool = True

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntLIFState:
        """The state at the start of a sample: zeros, ``[batch, *shape]``."""
        return IntLIFState(fx.full_int(0, batch, shape))


def int_fire(v: np.ndarray, p: SinabsParams, sat: fx.SaturationCounter | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Spike, reset and floor a charged integer membrane ``v``: ``(s, v)``."""
    if p.spike == "single":
        s = fx.fires(v, fx.as_int(p.theta), ">=")
    else:
        s = (np.maximum(v, 0) * fx.as_int(p.div_mul)) >> fx.as_int(p.div_shift)
        if p.max_spikes:
            s = np.minimum(s, p.max_spikes)
    rv = fx.as_int(p.reset_value)
    if p.reset == "subtract":
        v = p._sat(v - s * rv, sat, "v")
    else:
        v = p._sat(v * (s == 0) + rv, sat, "v")
    if p.floor:
        v = np.maximum(v, fx.as_int(p.v_min))
    return s, v


def sinabs_int_step(a_in: np.ndarray, state: IntLIFState, p: SinabsParams,
                    sat: fx.SaturationCounter | None = None) -> tuple[np.ndarray, IntLIFState]:
    """One integer step in Sinabs' order: charge, spike, reset, floor (see
    :class:`SinabsParams`); returns the spike counts (or ``v``) and the state."""
    x = p.drive(a_in, sat)
    v = state.v if p.decay is None else fx.mul_round(state.v, p.decay, p.decay_bits)
    v = p._sat(v + x, sat, "v")
    if not p.spiking:  # ExpLeak: the output is v before the floor, as in Sinabs
        return v, IntLIFState(np.maximum(v, fx.as_int(p.v_min)) if p.floor else v)
    s, v = int_fire(v, p, sat)
    return s, IntLIFState(v)


SINABS_MODEL = IntegerModel("sinabs", sinabs_int_step, SinabsParams)


def sinabs_plan(node: Any, shape: tuple[int, ...], cfg: Any, decay: np.ndarray | None,
                gain: np.ndarray, spiking: bool = True, model: IntegerModel = SINABS_MODEL,
                params: type = SinabsParams,
                extra: Callable[[fx.Rounder], dict[str, Any]] | None = None) -> QuantPlan:
    """The quantizer plan of a Sinabs node: ``v ← decay·v + gain·x`` then its spike, reset
    and floor (``model``, ``params`` and the ``extra`` parameters for a variant of it).
    Homogeneous: scaling ``x``, ``v``, θ, ``reset_value`` and ``v_min`` together leaves
    ``floor(v/θ)`` and every comparison unchanged."""
    q = cfg.decay_bits
    floor = bool(node.floor)
    p = param_reader(node, shape)
    v_min = p("v_min")
    if spiking:
        theta = p("v_threshold")
        reset_value = p("reset_value")
    else:
        theta = reset_value = np.zeros(shape)

    def build(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
              const: np.ndarray) -> SinabsParams:
        th = fq.fixed("v_threshold", theta, S, lo=1) if spiking else np.ones(shape, np.int64)
        mul, shift = divide_by_constant(th, cfg.state_bits - 1)
        return params(
            frac_bits=S, act_shift=a, state_bits=cfg.state_bits, decay_bits=q,
            compare=">=", bias=fq.fixed("bias", const, S), in_gain=in_gain,
            gain_frac=gain_frac, decay=None if decay is None else fq.fixed("decay", decay, q),
            theta=th, div_mul=mul, div_shift=shift,
            spike=getattr(node, "spike", "multi"), max_spikes=int(getattr(node, "max_spikes", 0)),
            reset=getattr(node, "reset", "subtract"),
            reset_value=fq.fixed("reset_value", reset_value, S), floor=floor,
            v_min=fq.fixed("v_min", v_min, S) if floor else np.int64(0), spiking=spiking,
            **(extra(fq) if extra else {}))

    mags = [np.abs(theta), np.abs(reset_value)] + ([np.abs(v_min)] if floor else [])
    tmax = float(max(np.max(m, initial=0.0) for m in mags))
    leak = 0.0 if decay is None else float(np.min(1.0 - decay, initial=1.0))
    return QuantPlan(model, FRAC_KEY, True, spiking, gain, np.zeros(shape), tmax, leak, build)


def quantize(name: str, node: SinabsIAFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    return sinabs_plan(node, shape, cfg, None, np.ones(shape))


def example(shape: tuple[int, ...], per_channel: bool) -> SinabsIAF:
    """The registry's example: MultiSpike bounded to one spike per step (the profiler
    counts events, not counts: see :mod:`tests.test_frontend_sinabs`), with a floor."""
    return SinabsIAF(v_threshold=example_value(shape, per_channel, 1.5, 2.0), max_spikes=1,
                     min_v_mem=example_value(shape, per_channel, -0.5, -0.3))


def event_bound(node: Any) -> int | None:
    """Spikes per neuron and step of a Sinabs firing node: 1 (SingleSpike), its MaxSpike
    bound, or None (MultiSpike: unbounded)."""
    if node.spike == "single":
        return 1
    return int(node.max_spikes) or None


SPEC = register(NeuronSpec(
    node=SinabsIAFNode, step=sinabs_iaf_step, state=LIFState, kwargs=_iaf_kwargs,
    example=example, lossy=lossy, integer=SINABS_MODEL, quantize=quantize,
    events=event_bound,
    description="Sinabs IAF: spike counts floor(v/θ), subtractive reset, floor min_v_mem",
    ranges={"v_threshold": "count_threshold", "reset_value": lambda n: (
        "reset_amount" if n.reset == "subtract" else ())}))

__all__ = [
    "SINABS_MODEL",
    "SinabsFire",
    "SinabsIAF",
    "SinabsIAFNode",
    "SinabsParams",
    "check_fire_node",
    "divide_by_constant",
    "fire_kwargs",
    "fire_losses",
    "int_fire",
    "sinabs_fire",
    "sinabs_iaf_step",
    "sinabs_int_step",
    "sinabs_plan",
]
