"""Sinabs' IAF and LIF with a synaptic current (``tau_syn``).

Sinabs' step (``lif_forward_single``) with ``alpha_syn``: the current first, then the
membrane, in its order::

    i ← α_syn·(i + x)                          (α_syn = exp(−1/τ_syn) per step)
    v ← α·v + (1 − α)·i   (norm_input)  or  α·v + i

then the spike, reset and floor of :func:`~nirbridge.neurons.sinabs_iaf.sinabs_fire`. An
``IAF`` is ``α = 1`` without ``norm_input`` (Sinabs multiplies ``v`` by 1.0: exact). NIR's
CubaLIF is equal in exact arithmetic but forward Euler in floating point, fires once and
resets hard; hence the custom node ``SinabsSynLIF``.

Fixed point: :mod:`~nirbridge.neurons.sinabs_iaf`'s model with a current ``i`` in the
state format, ``i ← sat(round((i + x)·α_syn))``; the ``1 − α`` of ``norm_input`` scales
``i`` as a whole, so it is folded into the weights like an input gain.
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
    LOSSY_EPS,
    CustomNeuron,
    Param,
    as_bool,
    compare_meta,
    example_value,
    full,
    node_param,
)
from nirbridge.neurons._registry import IntegerModel, NeuronSpec, QuantPlan, register
from nirbridge.neurons.sinabs_iaf import (
    FIRE_FLAGS,
    SinabsFire,
    SinabsParams,
    check_fire_node,
    event_bound,
    fire_kwargs,
    fire_losses,
    int_fire,
    lossy_reset,
    sinabs_fire,
    sinabs_plan,
)
from nirbridge.neurons.sinabs_lif import input_gain, sinabs_charge
from nirbridge.neurons.standard import CubaLIFState

Tensor = torch.Tensor


def sinabs_synlif_step(x: Tensor, state: CubaLIFState, *, alpha: Tensor | float,
                       alpha_syn: Tensor | float, norm_input: bool = True,
                       v_threshold: Tensor | float, spike_mode: str = "multi",
                       max_spikes: int = 0, reset: str = "subtract",
                       reset_value: Tensor | float, v_min: Tensor | float | None = None
                       ) -> tuple[Tensor, CubaLIFState]:
    """One step of Sinabs' IAF/LIF with ``tau_syn`` (see the module docstring)."""
    i = alpha_syn * (state.i + x)
    s, v = sinabs_fire(sinabs_charge(i, state.v, alpha, norm_input), v_threshold=v_threshold,
                       spike_mode=spike_mode, max_spikes=max_spikes, reset=reset,
                       reset_value=reset_value, v_min=v_min)
    return s, CubaLIFState(v, i)


@dataclass(eq=False)
class SinabsSynLIFNode(CustomNeuron):
    """Sinabs' IAF/LIF with a synaptic current: ``alpha`` (1 for an IAF) and
    ``alpha_syn`` the per-step decays; the other fields as ``SinabsLIF``'s."""

    alpha: np.ndarray
    alpha_syn: np.ndarray
    v_threshold: np.ndarray
    reset_value: np.ndarray
    v_min: np.ndarray
    norm_input: bool = True
    spike: str = "multi"
    max_spikes: int = 0
    reset: str = "subtract"
    floor: bool = False
    compare: str = ">="
    TYPE: ClassVar[str] = "SinabsSynLIF"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "alpha_syn", "v_threshold", "reset_value",
                                         "v_min")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"norm_input": as_bool, **FIRE_FLAGS}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fire_node(self)


def _kwargs(node: SinabsSynLIFNode, dt: float, dtype: torch.dtype, device: Any = None
            ) -> dict[str, Any]:
    return dict(alpha=node_param(node, "alpha", dtype, device),
                alpha_syn=node_param(node, "alpha_syn", dtype, device),
                norm_input=bool(node.norm_input), **fire_kwargs(node, dtype, device))


class SinabsSynLIF(SinabsFire):
    """Sinabs' IAF/LIF with ``tau_syn`` as a single-step nirbridge neuron, state
    ``(v, i)``: ``alpha`` and ``alpha_syn`` the per-step decays (an IAF: ``alpha=1``,
    ``norm_input=False``); the other arguments as
    :class:`~nirbridge.neurons.sinabs_lif.SinabsLIF`'s. Exports as ``SinabsSynLIF``."""

    def __init__(self, alpha: Param = 0.9, alpha_syn: Param = 0.6, v_threshold: Param = 1.0,
                 *, norm_input: bool = True, spike: str = "multi", max_spikes: int = 0,
                 reset: str = "subtract", reset_value: Param | None = None,
                 min_v_mem: Param | None = None) -> None:
        super().__init__()
        self.norm_input = bool(norm_input)
        self.add_param("alpha", alpha)
        self.add_param("alpha_syn", alpha_syn)
        self._init_fire(v_threshold, spike, max_spikes, reset, reset_value, min_v_mem)

    def initial_state(self, x: torch.Tensor) -> CubaLIFState:
        return CubaLIFState(torch.zeros_like(x), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: CubaLIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return sinabs_synlif_step(x, state, alpha=self.p("alpha", x),
                                  alpha_syn=self.p("alpha_syn", x),
                                  norm_input=self.norm_input, **self._fire_kw(x))

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # a per-step model: the decays are those of one step whatever the graph's dt
        return SinabsSynLIFNode(alpha=full(self.alpha, shape, "alpha"),
                                alpha_syn=full(self.alpha_syn, shape, "alpha_syn"),
                                norm_input=self.norm_input, **self._fire_fields(shape))

    def extra_repr(self) -> str:
        return f"norm_input={self.norm_input}, {super().extra_repr()}"


def _one_minus(a: Any) -> tuple[np.ndarray, int]:
    one_minus = 1.0 - np.asarray(a, np.float64)
    clamped = int((one_minus < LOSSY_EPS).sum())
    return np.maximum(one_minus, LOSSY_EPS), clamped


def lossy(node: SinabsSynLIFNode, dt: float, meta: dict) -> tuple[nir.NIRNode, str]:
    """``CubaLIF(τ_syn = dt/(1 − α_syn), w_in = α_syn/(1 − α_syn), τ_mem = dt/(1 − α),
    r = gain/(1 − α), v_threshold, v_reset)`` firing on ``>=``."""
    om_syn, n_syn = _one_minus(node.alpha_syn)
    om_mem, n_mem = _one_minus(node.alpha)
    new = nir.CubaLIF(tau_syn=dt / om_syn, tau_mem=dt / om_mem,
                      r=input_gain(node) / om_mem, v_leak=np.zeros(node.shape),
                      v_threshold=node.v_threshold, v_reset=lossy_reset(node),
                      w_in=np.asarray(node.alpha_syn, np.float64) / om_syn,
                      metadata={**meta, **compare_meta(">=")})
    note = ""
    if n_syn + n_mem:
        note = (f"; {n_syn + n_mem} decay(s) ≥ 1 clamped to 1 − {LOSSY_EPS:g}")
    return new, fire_losses(node) + note


# ------------------------------------------------------------------ integer model
class IntSynState(NamedTuple):
    """Integer state: membrane ``v`` and synaptic current ``i`` (state format)."""

    v: np.ndarray
    i: np.ndarray


@dataclass
class SinabsSynParams(SinabsParams):
    """:class:`SinabsParams` with the current's decay ``syn_decay`` (2^12 = 1)."""

    syn_decay: Any = 4096

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> IntSynState:
        """Zeros, ``[batch, *shape]``."""
        return IntSynState(fx.full_int(0, batch, shape), fx.full_int(0, batch, shape))


def sinabs_synlif_int_step(a_in: np.ndarray, state: IntSynState, p: SinabsSynParams,
                           sat: fx.SaturationCounter | None = None
                           ) -> tuple[np.ndarray, IntSynState]:
    """``i ← sat(round((i + x)·α_syn))``; ``v ← sat(round(v·decay) + i)``; then the
    spike, reset and floor of :func:`~nirbridge.neurons.sinabs_iaf.int_fire`."""
    x = p.drive(a_in, sat)
    i = p._sat(fx.mul_round(p._sat(state.i + x, sat, "i"), p.syn_decay, p.decay_bits), sat,
               "i")
    v = state.v if p.decay is None else fx.mul_round(state.v, p.decay, p.decay_bits)
    s, v = int_fire(p._sat(v + i, sat, "v"), p, sat)
    return s, IntSynState(v, i)


SINABS_SYN_MODEL = IntegerModel("sinabs_syn", sinabs_synlif_int_step, SinabsSynParams,
                                state_fields=("v", "i"))


def quantize(name: str, node: SinabsSynLIFNode, dt: float, shape: tuple[int, ...],
             cfg: Any) -> QuantPlan:
    def p(value: Any) -> np.ndarray:
        return np.array(np.broadcast_to(np.asarray(value, np.float64), shape))

    alpha_syn = p(node.alpha_syn)
    return sinabs_plan(node, shape, cfg, p(node.alpha), p(input_gain(node)),
                       model=SINABS_SYN_MODEL, params=SinabsSynParams,
                       extra=lambda fq: {"syn_decay": fq.fixed("alpha_syn", alpha_syn,
                                                               cfg.decay_bits)})


def example(shape: tuple[int, ...], per_channel: bool) -> SinabsSynLIF:
    """The registry's example: an IAF with a synaptic current (α = 1), MaxSpike(1)."""
    return SinabsSynLIF(alpha=1.0, alpha_syn=example_value(shape, per_channel, 0.6, 0.4),
                        v_threshold=1.5, norm_input=False, max_spikes=1,
                        min_v_mem=example_value(shape, per_channel, -0.5, -0.3))


SPEC = register(NeuronSpec(
    node=SinabsSynLIFNode, step=sinabs_synlif_step, state=CubaLIFState, kwargs=_kwargs,
    example=example, lossy=lossy, integer=SINABS_SYN_MODEL, quantize=quantize,
    events=event_bound,
    description="Sinabs IAF/LIF with tau_syn: i ← α_syn·(i + x), then Sinabs' LIF",
    ranges={"alpha": "decay", "alpha_syn": "decay", "v_threshold": "count_threshold",
            "reset_value": lambda n: "reset_amount" if n.reset == "subtract" else ()}))

__all__ = ["IntSynState", "SINABS_SYN_MODEL", "SinabsSynLIF", "SinabsSynLIFNode",
           "SinabsSynParams", "sinabs_synlif_int_step", "sinabs_synlif_step"]
