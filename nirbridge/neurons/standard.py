"""NIR's own neurons — LIF, IF, LI, I, CubaLIF, CubaLI — in one file: their torch steps
and trainable modules, and their one integer model, Lava's bit-accurate LIF.

Forward Euler at the graph's ``dt`` (specs/neurons.md). LIF and IF fire on ``>`` unless
the node's ``metadata["compare"]`` says ``">="``; LIF/IF nodes may carry
``metadata["v_init"]`` (a start other than 0, e.g. SpikingJelly's PLIF). A module whose
reset NIR cannot express (subtractive) exports the matching custom node, looked up in the
registry by name (``SubtractiveLIF``, ``DALIF``).

Fixed point: all six map onto Lava's LIF arithmetic (``PyLifModelBitAcc``, transcribed in
:func:`lava_lif_step`), which Lava's own ``LIF`` Process runs where the quantized layer is
stock-compatible (:func:`stock_lava`); LI, I and CubaLI are its non-spiking form (the
output is ``v``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import nir
import numpy as np
import torch

from nirbridge import fixed_point as fx
from nirbridge.errors import InvalidParameterError, QuantizationError
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
from nirbridge.neurons._registry import (
    NEURONS,
    IntegerModel,
    NeuronSpec,
    QuantPlan,
    StockLava,
    node_kwargs,
    register,
)

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


# ------------------------------------------------------------- integer model: Lava LIF
class LavaLIFState(NamedTuple):
    """Lava LIF state: current ``u`` and voltage ``v`` (24-bit integers)."""

    u: np.ndarray
    v: np.ndarray


@dataclass
class LavaLIFParams:
    """Integer parameters of Lava's ``LIF`` process (``PyLifModelBitAcc``).

    ``du``, ``dv``: 12-bit decays (the current keeps ``4096 − (du + 1)``, the voltage
    ``4096 − dv``, of 4096); ``bias_mant``/``bias_exp``: the bias ``mant << exp`` (or
    ``>> −exp``) added to ``v`` each step; ``vth``: threshold, compared as
    ``vth << vth_shift``; ``vth=None`` means the neuron never fires and outputs ``v`` (LI).
    ``u_init``/``v_init``: initial state (Lava Vars ``u`` and ``v``).

    Not in stock Lava (they exist for graphs Lava cannot express exactly; see
    :attr:`lava_issues`): ``compare=">="``, ``in_gain`` (``a_in`` times a constant with
    ``gain_frac`` fractional bits, where a gain could not be folded into the weights) and
    ``a_bias`` (a constant added to ``a_in``, e.g. a CubaLIF's synaptic bias).
    """

    du: Any
    dv: Any
    bias_mant: Any = 0
    bias_exp: Any = 0
    vth: Any = None
    compare: str = ">"
    frac_bits: int = 6
    vth_shift: int = fx.LAVA_VTH_SHIFT
    act_shift: int = fx.LAVA_ACT_SHIFT
    state_bits: int = fx.LAVA_STATE_BITS
    decay_bits: int = fx.LAVA_DECAY_SHIFT
    u_init: Any = 0
    v_init: Any = 0
    in_gain: Any = None
    gain_frac: int = 12
    a_bias: Any = None

    @property
    def effective_bias(self) -> np.ndarray:
        """Lava's ``scale_bias``: ``mant << exp`` where ``exp ≥ 0``, else ``mant >> −exp``."""
        mant = fx.as_int(self.bias_mant)
        exp = fx.as_int(self.bias_exp)
        return np.where(exp >= 0, mant << np.maximum(exp, 0), mant >> np.maximum(-exp, 0))

    @property
    def spiking(self) -> bool:
        """False for a leaky integrator (``vth is None``), whose output is ``v``."""
        return self.vth is not None

    def state_frac(self, name: str) -> int:
        """Fractional bits of state field ``name`` (both ``u`` and ``v``: the state's)."""
        return self.frac_bits

    @property
    def lava_issues(self) -> list[str]:
        """Why stock Lava ``LIF`` (fixed_pt) could not run these parameters exactly."""
        issues = []
        if self.compare != ">":
            issues.append("fires on '>=' (Lava's LIF fires on '>')")
        if self.vth_shift != fx.LAVA_VTH_SHIFT or self.act_shift != fx.LAVA_ACT_SHIFT:
            issues.append(f"shifts {self.vth_shift}/{self.act_shift} (Lava's are 6/6)")
        if self.decay_bits != fx.LAVA_DECAY_SHIFT or self.state_bits != fx.LAVA_STATE_BITS:
            issues.append("decay or state width differs from Lava's 12/24 bits")
        for name in ("du", "dv", "vth"):
            val = getattr(self, name)
            if val is not None and np.unique(fx.as_int(val)).size > 1:
                issues.append(f"{name} varies per neuron (a scalar in Lava)")
        if self.vth is not None:
            vth = fx.as_int(self.vth)
            if np.any(vth < 0) or np.any(vth > (1 << 17) - 1):
                issues.append("vth outside Lava's unsigned 17 bits")
        mant, exp = fx.as_int(self.bias_mant), fx.as_int(self.bias_exp)
        if np.any(mant > 4095) or np.any(mant < -4096) or np.any(exp > 7) or np.any(exp < 0):
            issues.append("bias outside Lava's 13-bit mantissa / 3-bit exponent")
        if self.in_gain is not None:
            issues.append("input gain not folded into the weights")
        if self.a_bias is not None and np.any(fx.as_int(self.a_bias) != 0):
            issues.append("constant synaptic input (a_bias) needs an extra source in Lava")
        return issues

    def initial_state(self, batch: int, shape: tuple[int, ...]) -> LavaLIFState:
        """The state at the start of a sample, ``[batch, *shape]``."""
        return LavaLIFState(fx.full_int(self.u_init, batch, shape),
                            fx.full_int(self.v_init, batch, shape))


def lava_lif_step(a_in: np.ndarray, state: LavaLIFState, p: LavaLIFParams,
                  sat: fx.SaturationCounter | None = None) -> tuple[np.ndarray, LavaLIFState]:
    """One step of Lava's bit-accurate LIF (``lava/proc/lif/models.py``, lava-nc 0.10.0,
    ``AbstractPyLifModelFixed.subthr_dynamics`` + ``PyLifModelBitAcc``)::

        u ← wrap24( sign·(|u·(4096 − (du + 1))| >> 12) + (a_in << 6) )
        v ← clip( sign·(|v·(4096 − dv)| >> 12) + u + bias, ±(2^23 − 1) )
        s = v > (vth << 6);   v ← 0 where s

    Returns ``(spikes, state)``, or ``(v, state)`` when ``vth is None`` (a leaky
    integrator). Lava computes in int32 after the int64 product; int64 here gives the same
    result whenever Lava's int32 does not overflow (always, for 24-bit states and 16-bit
    ``a_in``).
    """
    unity = 1 << p.decay_bits
    a = np.asarray(a_in, dtype=np.int64)
    if p.in_gain is not None:
        a = fx.mul_round(a, p.in_gain, p.gain_frac)
    if p.a_bias is not None:
        a = a + fx.as_int(p.a_bias)
    u = fx.mul_trunc(state.u, unity - (fx.as_int(p.du) + 1), p.decay_bits) + (a << p.act_shift)
    u = fx.lava_wrap(u, p.state_bits, sat, "u")
    v = fx.mul_trunc(state.v, unity - fx.as_int(p.dv), p.decay_bits) + u + p.effective_bias
    v = fx.saturate(v, p.state_bits, sat, "v")
    if p.vth is None:
        return v, LavaLIFState(u, v)
    s = fx.fires(v, fx.as_int(p.vth) << p.vth_shift, p.compare)
    v = np.where(s.astype(bool), 0, v)
    return s, LavaLIFState(u, v)


#: Lava's own LIF with periodic reset (the runner sets ``reset_interval``/``offset``).
LAVA_LIF_PROCESS = "lava.proc.lif.process:LIFReset"


def _scalar(value: Any, name: str, layer: Any) -> int:
    arr = np.unique(fx.as_int(value))
    if arr.size != 1:  # excluded by the issues check
        raise QuantizationError(f"node '{layer.name}': {name} varies per neuron")
    return int(arr[0])


def stock_lava(layer: Any) -> StockLava | list[str]:
    """Lava's own ``LIFReset`` for a quantized layer it runs exactly, else why not."""
    p = layer.params
    issues = list(p.lava_issues)
    if not p.spiking:
        issues.append("does not spike (its output is v; Lava's LIF sends spikes)")
    if np.any(fx.as_int(p.u_init) != 0) or np.any(fx.as_int(p.v_init) != 0):
        issues.append("non-zero initial state (Lava's LIFReset resets u, v to 0)")
    if issues:
        return issues

    def flat(v: Any) -> np.ndarray:
        return np.broadcast_to(fx.as_int(v), layer.shape).ravel().copy()

    return StockLava(LAVA_LIF_PROCESS,
                     dict(du=_scalar(p.du, "du", layer), dv=_scalar(p.dv, "dv", layer),
                          bias_mant=flat(p.bias_mant), bias_exp=flat(p.bias_exp),
                          vth=_scalar(p.vth, "vth", layer)),
                     state_vars=("u", "v"))


LAVA_LIF_MODEL = IntegerModel("lava_lif", lava_lif_step, LavaLIFParams, ("u", "v"),
                              stock_lava=stock_lava, stock_name="Lava LIF",
                              input_shift_is_frac=True)


def lava_bias(fq: fx.Rounder, bias: np.ndarray, S: int) -> tuple[np.ndarray, np.ndarray]:
    """Lava's bias ``mant << exp`` (13-bit signed mantissa, smallest exponent ≥ 0)."""
    b = np.asarray(bias, dtype=np.float64)
    if not np.all(np.isfinite(b)):
        raise QuantizationError(f"node '{fq.name}': bias holds NaN or inf")
    lim = fx.sat_limit(fq.state_bits)
    exact = np.floor(b * 2.0 ** S + 0.5)
    if np.any(np.abs(exact) > lim):
        bad = float(b[np.abs(exact) > lim].flat[0])
        raise QuantizationError(f"node '{fq.name}': bias = {bad:g} does not fit the "
                                f"{fq.state_bits}-bit state with {S} fractional bits")
    exp = np.zeros(b.shape, dtype=np.int64)
    mant = exact.astype(np.int64)
    for e in range(1, fq.state_bits):
        big = (mant > 4095) | (mant < -4096)
        if not big.any():
            break
        exp = np.where(big, e, exp)
        mant = np.where(big, np.floor(b * 2.0 ** (S - e) + 0.5).astype(np.int64), mant)
    eff = mant.astype(np.float64) * 2.0 ** exp.astype(np.float64) * 2.0 ** -S
    fq.report("bias", b, mant, S, 0, np.abs(eff - b))
    return mant, exp


def quantize_standard(name: str, node: nir.NIRNode, dt: float, shape: tuple[int, ...],
                      cfg: Any) -> QuantPlan:
    """The Lava-LIF form of any of NIR's own neurons (see the quantizer's docstring)."""
    def fill(v: Any) -> np.ndarray:
        return np.array(np.broadcast_to(np.asarray(v, dtype=np.float64), shape))

    def p(f: str) -> np.ndarray:
        return fill(getattr(node, f))

    cmp = compare_of(node)
    zeros = np.zeros(shape)
    q = cfg.decay_bits
    spiking = isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF))
    cuba = isinstance(node, (nir.CubaLIF, nir.CubaLI))
    if isinstance(node, (nir.IF, nir.I)):
        gm = zeros
        gain = p("r") * (dt if isinstance(node, nir.I) else 1.0)
    else:
        gm = dt / p("tau_mem" if cuba else "tau")
        gain = gm * p("r")
    gs = dt / p("tau_syn") if cuba else None
    if cuba:
        gain = gain * gs * p("w_in")
    v_r = p("v_reset") if spiking else zeros
    v_leak = p("v_leak") if hasattr(node, "v_leak") else zeros
    own = gm * (v_leak - v_r)
    theta = p("v_threshold") - v_r if spiking else None
    v0 = (getattr(node, "metadata", None) or {}).get("v_init") \
        if isinstance(node, (nir.LIF, nir.IF)) else None
    v_init = (fill(v0) if v0 is not None else zeros) - v_r

    def build(fq: fx.Rounder, S: int, a: int, k: int, in_gain: Any, gain_frac: int,
              const: np.ndarray) -> LavaLIFParams:
        dv = fq.fixed("dv", gm, q, lo=0, hi=(1 << q) - 1, clip=True,
                      what="Lava dv, 12-bit unsigned")
        if cuba:
            du = fq.fixed("du", gs, q, lo=1, hi=1 << q, clip=True,
                          what="Lava du + 1, 12-bit") - 1
            v_bias, a_bias = own, const
        else:
            du, v_bias, a_bias = np.int64((1 << q) - 1), own + const, None
        mant, exp = lava_bias(fq, v_bias, S)
        vth = None
        if theta is not None:
            lim = fx.sat_limit(cfg.state_bits) >> a
            vth = fq.fixed("v_threshold", theta, k, lo=-lim, hi=lim,
                           what=f"{cfg.state_bits}-bit state >> {a}")
        ab = None
        if a_bias is not None and np.any(a_bias != 0):
            ab = fq.fixed("a_bias", a_bias, S - a)
        return LavaLIFParams(
            du=du, dv=dv, bias_mant=mant, bias_exp=exp, vth=vth, compare=cmp,
            frac_bits=S, vth_shift=a, act_shift=a, state_bits=cfg.state_bits,
            decay_bits=q, u_init=0, v_init=fq.fixed("v_init", v_init, S),
            in_gain=in_gain, gain_frac=gain_frac, a_bias=ab)

    tmax = float(np.max(np.abs(theta))) if theta is not None else 0.0
    tmax = max(tmax, float(np.max(np.abs(v_init), initial=0.0)))
    key = _FRAC_KEY[type(node)]
    return QuantPlan(LAVA_LIF_MODEL, key, True, spiking, gain, own, tmax,
                     float(np.min(gm, initial=1.0)), build)


#: The ``[quantization.frac_bits]`` key of each node type (I shares IF's, CubaLI CubaLIF's).
_FRAC_KEY: dict[type, str] = {nir.LIF: "lif", nir.IF: "if", nir.I: "if", nir.LI: "li",
                              nir.CubaLIF: "cubalif", nir.CubaLI: "cubalif"}


# ------------------------------------------------------------------------- registry
_CMP = {"compare": compare_of}
_FIRE_DEFAULTS = {"v_reset": 0.0}
_CUBA_DEFAULTS = {"v_reset": 0.0, "w_in": 1.0}

register(NeuronSpec(
    node=nir.LIF, step=lif_step, state=LIFState, init=_v_init,
    kwargs=node_kwargs("tau", "r", "v_leak", "v_threshold", "v_reset", dt=True,
                       defaults=_FIRE_DEFAULTS, flags=_CMP),
    example=lambda s, pc: LIF(tau=example_value(s, pc, 3.0, 5.0), v_threshold=0.8, v_leak=0.05,
                              r=example_value(s, pc, 1.2, 0.9)),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    frac_bits={"lif": 6},
    description="NIR LIF (forward Euler, hard reset)"))
register(NeuronSpec(
    node=nir.IF, step=if_step, state=LIFState, init=_v_init,
    kwargs=node_kwargs("r", "v_threshold", "v_reset", defaults=_FIRE_DEFAULTS, flags=_CMP),
    example=lambda s, pc: IF(v_threshold=1.0, r=example_value(s, pc, 0.7, 1.1)),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    frac_bits={"if": 6},
    description="NIR IF (integrate and fire, hard reset)"))
register(NeuronSpec(
    node=nir.LI, step=li_step, state=LIFState, spiking=False,
    kwargs=node_kwargs("tau", "r", "v_leak", dt=True),
    example=lambda s, pc: LI(tau=example_value(s, pc, 4.0, 6.0), r=1.0),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    frac_bits={"li": 6},
    description="NIR LI (leaky integrator, output v)"))
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
    example=lambda s, pc: CubaLIF(tau_syn=example_value(s, pc, 2.0, 3.0), tau_mem=4.0,
                                  v_threshold=0.5),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    frac_bits={"cubalif": 6},
    description="NIR CubaLIF (current-based LIF, hard reset)"))
register(NeuronSpec(
    node=nir.CubaLI, step=cubali_step, state=CubaLIFState, spiking=False,
    kwargs=node_kwargs("tau_syn", "tau_mem", "r", "v_leak", "w_in", dt=True,
                       defaults=_CUBA_DEFAULTS),
    example=lambda s, pc: CubaLI(tau_syn=example_value(s, pc, 2.0, 3.0), tau_mem=4.0),
    integer=LAVA_LIF_MODEL, quantize=quantize_standard,
    description="NIR CubaLI (current-based leaky integrator, output v)"))


__all__ = [
    "I",
    "IF",
    "LAVA_LIF_MODEL",
    "LI",
    "LIF",
    "CubaLI",
    "CubaLIF",
    "CubaLIFState",
    "LIFState",
    "LavaLIFParams",
    "LavaLIFState",
    "cubali_step",
    "cubalif_step",
    "fire_and_reset",
    "i_step",
    "if_step",
    "lava_bias",
    "lava_lif_step",
    "li_step",
    "lif_step",
    "quantize_standard",
]
