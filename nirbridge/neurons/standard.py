"""NIR's own neurons — LIF, IF, LI, I, CubaLIF, CubaLI — in one file: their torch steps
and trainable modules, and their one integer model, Lava's bit-accurate LIF.

Forward Euler at the graph's ``dt`` (specs/neurons.md). LIF and IF fire on ``>`` unless
the node's ``metadata["compare"]`` says ``">="``; LIF/IF nodes may carry
``metadata["v_init"]`` (a start other than 0, e.g. SpikingJelly's PLIF). A module whose
reset NIR cannot express (subtractive) exports the matching custom node, looked up in the
registry by name (``SubtractiveLIF``, ``DALIF``).

Fixed point: all six map onto Lava's LIF arithmetic, the integer model of
:mod:`~nirbridge.neurons.lava_lif`; LI, I and CubaLI are its non-spiking form (the output
is ``v``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import nir
import numpy as np
import torch

from nirbridge.errors import InvalidParameterError
from nirbridge.neurons._base import (
    NeuronModule,
    Param,
    check_compare,
    check_positive,
    compare_meta,
    compare_of,
    dt_scale,
    example_value,
    full,
    spike,
)
from nirbridge.neurons._registry import NEURONS, NeuronSpec, node_kwargs, register
from nirbridge.neurons.lava_lif import LAVA_LIF_MODEL, quantize_standard

Tensor = torch.Tensor


# ------------------------------------------------------------------------ torch steps
class LIFState(NamedTuple):
    v: Tensor


class CubaLIFState(NamedTuple):
    v: Tensor
    i: Tensor


def fire_and_reset(v: Tensor, v_threshold: Tensor | float, v_reset: Tensor | float,
                   compare: str, reset: str) -> tuple[Tensor, LIFState]:
    """Fire on ``v`` against the threshold, then reset hard to ``v_reset`` or subtract."""
    s = spike(v - v_threshold, compare)
    if reset == "hard":
        v = v * (1 - s) + v_reset * s
    elif reset == "subtract":
        v = v - s * v_threshold
    else:
        raise InvalidParameterError(f"reset={reset!r} is unknown; use 'hard' or 'subtract'")
    return s, LIFState(v)


def lif_step(x: Tensor, state: LIFState, *, tau: Tensor | float, r: Tensor | float,
             v_leak: Tensor | float, v_threshold: Tensor | float,
             v_reset: Tensor | float = 0.0, dt: float = 1.0, compare: str = ">",
             reset: str = "hard") -> tuple[Tensor, LIFState]:
    """NIR LIF, forward Euler: ``v ← v + (dt/τ)(v_leak − v + R·x)``, fire, reset.

    ``reset="hard"`` sets ``v ← v_reset`` where it fired (NIR's only reset);
    ``reset="subtract"`` sets ``v ← v − s·v_th`` (snnTorch/Norse/SpikingJelly soft reset).
    """
    v = state.v + (dt / tau) * (v_leak - state.v + r * x)
    return fire_and_reset(v, v_threshold, v_reset, compare, reset)


def if_step(x: Tensor, state: LIFState, *, r: Tensor | float, v_threshold: Tensor | float,
            v_reset: Tensor | float = 0.0, compare: str = ">",
            reset: str = "hard") -> tuple[Tensor, LIFState]:
    """NIR IF: ``v ← v + R·x``, fire, reset (hard to ``v_reset`` or subtractive)."""
    v = state.v + r * x
    return fire_and_reset(v, v_threshold, v_reset, compare, reset)


def li_step(x: Tensor, state: LIFState, *, tau: Tensor | float, r: Tensor | float,
            v_leak: Tensor | float, dt: float = 1.0) -> tuple[Tensor, LIFState]:
    """NIR LI (no fire): ``v ← v + (dt/τ)(v_leak − v + R·x)``; the output is ``v``."""
    v = state.v + (dt / tau) * (v_leak - state.v + r * x)
    return v, LIFState(v)


def i_step(x: Tensor, state: LIFState, *, r: Tensor | float,
           dt: float = 1.0) -> tuple[Tensor, LIFState]:
    """NIR I (integrator): ``v ← v + dt·R·x``; the output is ``v``."""
    v = state.v + dt * r * x
    return v, LIFState(v)


def _cuba(x: Tensor, state: CubaLIFState, tau_syn: Any, tau_mem: Any, r: Any, v_leak: Any,
          w_in: Any, dt: float) -> tuple[Tensor, Tensor]:
    i = state.i + (dt / tau_syn) * (-state.i + w_in * x)
    v = state.v + (dt / tau_mem) * (v_leak - state.v + r * i)
    return v, i


def cubalif_step(x: Tensor, state: CubaLIFState, *, tau_syn: Tensor | float,
                 tau_mem: Tensor | float, r: Tensor | float, v_leak: Tensor | float,
                 v_threshold: Tensor | float, v_reset: Tensor | float = 0.0,
                 w_in: Tensor | float = 1.0, dt: float = 1.0,
                 compare: str = ">") -> tuple[Tensor, CubaLIFState]:
    """NIR CubaLIF, forward Euler; the membrane is driven by the *updated* current:

    ``i ← i + (dt/τ_syn)(−i + w_in·x)``; ``v ← v + (dt/τ_mem)(v_leak − v + R·i)``.
    """
    v, i = _cuba(x, state, tau_syn, tau_mem, r, v_leak, w_in, dt)
    s = spike(v - v_threshold, compare)
    v = v * (1 - s) + v_reset * s
    return s, CubaLIFState(v, i)


def cubali_step(x: Tensor, state: CubaLIFState, *, tau_syn: Tensor | float,
                tau_mem: Tensor | float, r: Tensor | float, v_leak: Tensor | float,
                w_in: Tensor | float = 1.0, dt: float = 1.0) -> tuple[Tensor, CubaLIFState]:
    """NIR CubaLI: CubaLIF without fire; the output is ``v``."""
    v, i = _cuba(x, state, tau_syn, tau_mem, r, v_leak, w_in, dt)
    return v, CubaLIFState(v, i)


def _v_init(node: nir.NIRNode, x0: Tensor) -> LIFState:
    # Models that start at v_reset (SpikingJelly's PLIF) record it; NIR's default is 0.
    v0 = (getattr(node, "metadata", None) or {}).get("v_init")
    if v0 is None:
        return LIFState(torch.zeros_like(x0))
    return LIFState(torch.as_tensor(np.asarray(v0), dtype=x0.dtype, device=x0.device)
                    .expand_as(x0).clone())


# ---------------------------------------------------------------------------- modules
def _check_reset(reset: str, owner: str) -> str:
    if reset not in ("hard", "subtract"):
        raise InvalidParameterError(f"{owner} reset={reset!r}; use 'hard' or 'subtract'")
    return reset


class LIF(NeuronModule):
    """Leaky integrate-and-fire, NIR's forward-Euler form, hard or subtractive reset.

    ``v ← v + (dt/τ)(v_leak − v + R·x)``; fire on ``v > v_th`` (or ``>=``); reset hard to
    ``v_reset`` (exported as ``nir.LIF``) or ``v ← v − s·v_th`` (custom ``SubtractiveLIF``).
    State starts at ``v = 0``. ``tau`` is in the units of ``dt`` (the module's own step).
    """

    def __init__(self, tau: Param = 2.0, v_threshold: Param = 1.0, v_leak: Param = 0.0,
                 v_reset: Param = 0.0, r: Param = 1.0, *, reset: str = "hard",
                 compare: str = ">", dt: float = 1.0, learn_tau: bool = False) -> None:
        super().__init__()
        self.reset = _check_reset(reset, "LIF")
        self.compare = check_compare(compare)
        self.dt = float(dt)
        self.add_param("tau", tau, learn_tau)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_leak", v_leak)
        self.add_param("v_reset", v_reset)
        self.add_param("r", r)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return lif_step(
            x, state, tau=self.p("tau", x), r=self.p("r", x), v_leak=self.p("v_leak", x),
            v_threshold=self.p("v_threshold", x), v_reset=self.p("v_reset", x), dt=self.dt,
            compare=self.compare, reset=self.reset,
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        # Keep dt/τ identical when the graph's dt differs from the module's own.
        tau = check_positive(full(self.tau, shape, "tau"), "tau", "LIF")
        kw = dict(tau=tau * dt_scale(dt, self.dt), r=full(self.r, shape, "r"),
                  v_leak=full(self.v_leak, shape, "v_leak"),
                  v_threshold=full(self.v_threshold, shape, "v_threshold"))
        if self.reset == "subtract":
            return NEURONS["SubtractiveLIF"].node(**kw, compare=self.compare)
        return nir.LIF(**kw, v_reset=full(self.v_reset, shape, "v_reset"),
                       metadata=compare_meta(self.compare))

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}, compare={self.compare!r}, dt={self.dt}"


class IF(NeuronModule):
    """Integrate-and-fire: ``v ← v + R·x``; fire; reset hard to ``v_reset`` or ``v − s·v_th``.

    Hard reset exports as ``nir.IF``; subtractive reset as the custom ``DALIF`` node with
    ``alpha = R``, ``beta = 1``, ``reset = "soft"`` (the same equations). State starts at 0.
    """

    def __init__(self, v_threshold: Param = 1.0, v_reset: Param = 0.0, r: Param = 1.0, *,
                 reset: str = "hard", compare: str = ">") -> None:
        super().__init__()
        self.reset = _check_reset(reset, "IF")
        self.compare = check_compare(compare)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_reset", v_reset)
        self.add_param("r", r)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return if_step(
            x, state, r=self.p("r", x), v_threshold=self.p("v_threshold", x),
            v_reset=self.p("v_reset", x), compare=self.compare, reset=self.reset,
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        r = full(self.r, shape, "r")
        vth = full(self.v_threshold, shape, "v_threshold")
        if self.reset == "subtract":
            return NEURONS["DALIF"].node(alpha=r, beta=np.ones_like(r), v_threshold=vth,
                                         reset="soft", compare=self.compare)
        return nir.IF(r=r, v_threshold=vth, v_reset=full(self.v_reset, shape, "v_reset"),
                      metadata=compare_meta(self.compare))

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}, compare={self.compare!r}"


class LI(NeuronModule):
    """Leaky integrator (no fire): ``v ← v + (dt/τ)(v_leak − v + R·x)``; the output is ``v``.

    Exported as ``nir.LI``. State starts at 0. Typical read-out layer.
    """

    def __init__(self, tau: Param = 2.0, v_leak: Param = 0.0, r: Param = 1.0, *,
                 dt: float = 1.0, learn_tau: bool = False) -> None:
        super().__init__()
        self.dt = float(dt)
        self.add_param("tau", tau, learn_tau)
        self.add_param("v_leak", v_leak)
        self.add_param("r", r)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return li_step(x, state, tau=self.p("tau", x), r=self.p("r", x),
                       v_leak=self.p("v_leak", x), dt=self.dt)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        tau = check_positive(full(self.tau, shape, "tau"), "tau", "LI")
        return nir.LI(tau=tau * dt_scale(dt, self.dt), r=full(self.r, shape, "r"),
                      v_leak=full(self.v_leak, shape, "v_leak"))

    def extra_repr(self) -> str:
        return f"dt={self.dt}"


class I(NeuronModule):  # noqa: E742 - NIR's name for the integrator node
    """Integrator (no leak, no fire): ``v ← v + dt·R·x``; the output is ``v``.

    Exported as ``nir.I`` with ``r`` scaled so that ``dt·R`` stays the module's.
    """

    def __init__(self, r: Param = 1.0, *, dt: float = 1.0) -> None:
        super().__init__()
        self.dt = float(dt)
        self.add_param("r", r)

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return i_step(x, state, r=self.p("r", x), dt=self.dt)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        return nir.I(r=full(self.r, shape, "r") / dt_scale(dt, self.dt))

    def extra_repr(self) -> str:
        return f"dt={self.dt}"


class CubaLIF(NeuronModule):
    """Current-based LIF (NIR ``CubaLIF``), forward Euler; the membrane sees the new current.

    ``i ← i + (dt/τ_syn)(−i + w_in·x)``; ``v ← v + (dt/τ_mem)(v_leak − v + R·i)``; fire;
    hard reset to ``v_reset``. State ``(v, i)`` starts at 0. ``spiking=False`` is NIR's
    ``CubaLI`` (no fire; the output is ``v``); use :class:`CubaLI`.
    """

    spiking = True

    def __init__(self, tau_syn: Param = 2.0, tau_mem: Param = 2.0, v_threshold: Param = 1.0,
                 v_leak: Param = 0.0, v_reset: Param = 0.0, r: Param = 1.0,
                 w_in: Param = 1.0, *, compare: str = ">", dt: float = 1.0,
                 learn_tau: bool = False) -> None:
        super().__init__()
        self.compare = check_compare(compare)
        self.dt = float(dt)
        self.add_param("tau_syn", tau_syn, learn_tau)
        self.add_param("tau_mem", tau_mem, learn_tau)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_leak", v_leak)
        self.add_param("v_reset", v_reset)
        self.add_param("r", r)
        self.add_param("w_in", w_in)

    def initial_state(self, x: torch.Tensor) -> CubaLIFState:
        return CubaLIFState(torch.zeros_like(x), torch.zeros_like(x))

    def _common(self, x: torch.Tensor) -> dict[str, Any]:
        return dict(tau_syn=self.p("tau_syn", x), tau_mem=self.p("tau_mem", x),
                    r=self.p("r", x), v_leak=self.p("v_leak", x), w_in=self.p("w_in", x),
                    dt=self.dt)

    def forward(self, x: torch.Tensor, state: CubaLIFState | None = None):
        state = self.initial_state(x) if state is None else state
        if not self.spiking:
            return cubali_step(x, state, **self._common(x))
        return cubalif_step(x, state, v_threshold=self.p("v_threshold", x),
                            v_reset=self.p("v_reset", x), compare=self.compare,
                            **self._common(x))

    def _tau_fields(self, shape: tuple[int, ...], dt: float) -> dict[str, np.ndarray]:
        scale = dt_scale(dt, self.dt)
        owner = type(self).__name__
        return dict(
            tau_syn=check_positive(full(self.tau_syn, shape, "tau_syn"), "tau_syn",
                                   owner) * scale,
            tau_mem=check_positive(full(self.tau_mem, shape, "tau_mem"), "tau_mem",
                                   owner) * scale,
            r=full(self.r, shape, "r"), v_leak=full(self.v_leak, shape, "v_leak"),
            w_in=full(self.w_in, shape, "w_in"))

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        return nir.CubaLIF(**self._tau_fields(shape, dt),
                           v_threshold=full(self.v_threshold, shape, "v_threshold"),
                           v_reset=full(self.v_reset, shape, "v_reset"),
                           metadata=compare_meta(self.compare))

    def extra_repr(self) -> str:
        return f"compare={self.compare!r}, dt={self.dt}"


class CubaLI(CubaLIF):
    """Current-based leaky integrator (NIR ``CubaLI``): CubaLIF's two traces, no fire; the
    output is ``v``. ``v_threshold``, ``v_reset`` and ``compare`` are unused."""

    spiking = False

    def __init__(self, tau_syn: Param = 2.0, tau_mem: Param = 2.0, v_leak: Param = 0.0,
                 r: Param = 1.0, w_in: Param = 1.0, *, dt: float = 1.0,
                 learn_tau: bool = False) -> None:
        super().__init__(tau_syn, tau_mem, v_leak=v_leak, r=r, w_in=w_in, dt=dt,
                         learn_tau=learn_tau)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        return nir.CubaLI(**self._tau_fields(shape, dt))

    def extra_repr(self) -> str:
        return f"dt={self.dt}"


# ------------------------------------------------------------------------- registry
_CMP = {"compare": compare_of}
_FIRE_DEFAULTS = {"v_reset": 0.0}
_CUBA_DEFAULTS = {"v_reset": 0.0, "w_in": 1.0}

register(NeuronSpec(
    node=nir.LIF, step=lif_step, state=LIFState, init=_v_init,
    kwargs=node_kwargs("tau", "r", "v_leak", "v_threshold", "v_reset", dt=True,
                       defaults=_FIRE_DEFAULTS, flags=_CMP),
    example=lambda s, pc: LIF(tau=example_value(s, pc, 2.0, 3.0), v_threshold=0.4,
                              v_leak=0.05, r=example_value(s, pc, 1.2, 1.0)),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    frac_bits={"lif": 6},
    description="NIR LIF (forward Euler, hard reset)",
    ranges={"tau": "time_constant", "v_threshold": "threshold_reset:v_reset"}))
register(NeuronSpec(
    node=nir.IF, step=if_step, state=LIFState, init=_v_init,
    kwargs=node_kwargs("r", "v_threshold", "v_reset", defaults=_FIRE_DEFAULTS, flags=_CMP),
    example=lambda s, pc: IF(v_threshold=1.0, r=example_value(s, pc, 0.7, 1.1)),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    frac_bits={"if": 6},
    description="NIR IF (integrate and fire, hard reset)",
    ranges={"v_threshold": "threshold_reset:v_reset"}))
register(NeuronSpec(
    node=nir.LI, step=li_step, state=LIFState, spiking=False,
    kwargs=node_kwargs("tau", "r", "v_leak", dt=True),
    example=lambda s, pc: LI(tau=example_value(s, pc, 4.0, 6.0), r=1.0),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    frac_bits={"li": 6},
    description="NIR LI (leaky integrator, output v)",
    ranges={"tau": "time_constant"}))
register(NeuronSpec(
    node=nir.I, step=i_step, state=LIFState, spiking=False,
    kwargs=node_kwargs("r", dt=True),
    example=lambda s, pc: I(r=example_value(s, pc, 0.5, 0.25)),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    description="NIR I (integrator, output v)"))
register(NeuronSpec(
    node=nir.CubaLIF, step=cubalif_step, state=CubaLIFState,
    kwargs=node_kwargs("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in",
                       dt=True, defaults=_CUBA_DEFAULTS, flags=_CMP),
    example=lambda s, pc: CubaLIF(tau_syn=example_value(s, pc, 2.0, 3.0), tau_mem=2.0,
                                  v_threshold=0.15),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    frac_bits={"cubalif": 6},
    description="NIR CubaLIF (current-based LIF, hard reset)",
    ranges={"tau_syn": "time_constant", "tau_mem": "time_constant",
            "v_threshold": "threshold_reset:v_reset"}))
register(NeuronSpec(
    node=nir.CubaLI, step=cubali_step, state=CubaLIFState, spiking=False,
    kwargs=node_kwargs("tau_syn", "tau_mem", "r", "v_leak", "w_in", dt=True,
                       defaults=_CUBA_DEFAULTS),
    example=lambda s, pc: CubaLI(tau_syn=example_value(s, pc, 2.0, 3.0), tau_mem=4.0),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    description="NIR CubaLI (current-based leaky integrator, output v)",
    ranges={"tau_syn": "time_constant", "tau_mem": "time_constant"}))


__all__ = [
    "I",
    "IF",
    "LI",
    "LIF",
    "CubaLI",
    "CubaLIF",
    "CubaLIFState",
    "LIFState",
    "cubali_step",
    "cubalif_step",
    "fire_and_reset",
    "i_step",
    "if_step",
    "li_step",
    "lif_step",
]
