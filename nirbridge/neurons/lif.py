"""LIF-family neurons that NIR expresses (LIF, IF, LI, CubaLIF, PLIF) plus soft-reset variants.

Each module steps with the functions of :mod:`nirbridge.neurons.functional` and exports a
standard NIR node when that is exact, else the matching custom node of
:mod:`nirbridge.nodes` (subtractive reset).
"""

from __future__ import annotations

import nir
import numpy as np
import torch

from nirbridge import nodes as N  # module alias: nirbridge.nodes imports this package
from nirbridge.errors import InvalidParameterError
from nirbridge.neurons import functional as F
from nirbridge.neurons.base import (
    NeuronModule,
    Param,
    check_positive,
    compare_meta,
    dt_scale,
    full,
    to_tensor,
)


def as_param(value: Param, learn: bool) -> torch.Tensor:
    """A float or tensor as a tensor; an ``nn.Parameter`` when ``learn``.

    Kept for compatibility; it does *not* register anything on a module (a plain tensor
    attribute is not moved by ``.to()``/``.double()``): modules use
    :meth:`NeuronModule.add_param` instead.
    """
    t = to_tensor(value)
    return torch.nn.Parameter(t) if learn else t


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

    def __init__(
        self,
        tau: Param = 2.0,
        v_threshold: Param = 1.0,
        v_leak: Param = 0.0,
        v_reset: Param = 0.0,
        r: Param = 1.0,
        *,
        reset: str = "hard",
        compare: str = ">",
        dt: float = 1.0,
        learn_tau: bool = False,
    ) -> None:
        super().__init__()
        self.reset = _check_reset(reset, "LIF")
        self.compare = F.check_compare(compare)
        self.dt = float(dt)
        self.add_param("tau", tau, learn_tau)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_leak", v_leak)
        self.add_param("v_reset", v_reset)
        self.add_param("r", r)

    def initial_state(self, x: torch.Tensor) -> F.LIFState:
        return F.LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: F.LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return F.lif_step(
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
            return N.SubtractiveLIF(**kw, compare=self.compare)
        return nir.LIF(**kw, v_reset=full(self.v_reset, shape, "v_reset"),
                       metadata=compare_meta(self.compare))

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}, compare={self.compare!r}, dt={self.dt}"


class IF(NeuronModule):
    """Integrate-and-fire: ``v ← v + R·x``; fire; reset hard to ``v_reset`` or ``v − s·v_th``.

    Hard reset exports as ``nir.IF``; subtractive reset as the custom ``DALIF`` node with
    ``alpha = R``, ``beta = 1``, ``reset = "soft"`` (the same equations). State starts at 0.
    """

    def __init__(
        self,
        v_threshold: Param = 1.0,
        v_reset: Param = 0.0,
        r: Param = 1.0,
        *,
        reset: str = "hard",
        compare: str = ">",
    ) -> None:
        super().__init__()
        self.reset = _check_reset(reset, "IF")
        self.compare = F.check_compare(compare)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_reset", v_reset)
        self.add_param("r", r)

    def initial_state(self, x: torch.Tensor) -> F.LIFState:
        return F.LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: F.LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return F.if_step(
            x, state, r=self.p("r", x), v_threshold=self.p("v_threshold", x),
            v_reset=self.p("v_reset", x), compare=self.compare, reset=self.reset,
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        r = full(self.r, shape, "r")
        vth = full(self.v_threshold, shape, "v_threshold")
        if self.reset == "subtract":
            return N.DALIF(alpha=r, beta=np.ones_like(r), v_threshold=vth, reset="soft",
                           compare=self.compare)
        return nir.IF(r=r, v_threshold=vth, v_reset=full(self.v_reset, shape, "v_reset"),
                      metadata=compare_meta(self.compare))

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}, compare={self.compare!r}"


class LI(NeuronModule):
    """Leaky integrator (no fire): ``v ← v + (dt/τ)(v_leak − v + R·x)``; the output is ``v``.

    Exported as ``nir.LI``. State starts at 0. Typical read-out layer.
    """

    def __init__(
        self,
        tau: Param = 2.0,
        v_leak: Param = 0.0,
        r: Param = 1.0,
        *,
        dt: float = 1.0,
        learn_tau: bool = False,
    ) -> None:
        super().__init__()
        self.dt = float(dt)
        self.add_param("tau", tau, learn_tau)
        self.add_param("v_leak", v_leak)
        self.add_param("r", r)

    def initial_state(self, x: torch.Tensor) -> F.LIFState:
        return F.LIFState(torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: F.LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return F.li_step(x, state, tau=self.p("tau", x), r=self.p("r", x),
                         v_leak=self.p("v_leak", x), dt=self.dt)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        tau = check_positive(full(self.tau, shape, "tau"), "tau", "LI")
        return nir.LI(tau=tau * dt_scale(dt, self.dt), r=full(self.r, shape, "r"),
                      v_leak=full(self.v_leak, shape, "v_leak"))

    def extra_repr(self) -> str:
        return f"dt={self.dt}"


class CubaLIF(NeuronModule):
    """Current-based LIF (NIR ``CubaLIF``), forward Euler; the membrane sees the new current.

    ``i ← i + (dt/τ_syn)(−i + w_in·x)``; ``v ← v + (dt/τ_mem)(v_leak − v + R·i)``; fire;
    hard reset to ``v_reset``. State ``(v, i)`` starts at 0.
    """

    def __init__(
        self,
        tau_syn: Param = 2.0,
        tau_mem: Param = 2.0,
        v_threshold: Param = 1.0,
        v_leak: Param = 0.0,
        v_reset: Param = 0.0,
        r: Param = 1.0,
        w_in: Param = 1.0,
        *,
        compare: str = ">",
        dt: float = 1.0,
        learn_tau: bool = False,
    ) -> None:
        super().__init__()
        self.compare = F.check_compare(compare)
        self.dt = float(dt)
        self.add_param("tau_syn", tau_syn, learn_tau)
        self.add_param("tau_mem", tau_mem, learn_tau)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_leak", v_leak)
        self.add_param("v_reset", v_reset)
        self.add_param("r", r)
        self.add_param("w_in", w_in)

    def initial_state(self, x: torch.Tensor) -> F.CubaLIFState:
        return F.CubaLIFState(torch.zeros_like(x), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: F.CubaLIFState | None = None):
        state = self.initial_state(x) if state is None else state
        return F.cubalif_step(
            x, state, tau_syn=self.p("tau_syn", x), tau_mem=self.p("tau_mem", x),
            r=self.p("r", x), v_leak=self.p("v_leak", x), v_threshold=self.p("v_threshold", x),
            v_reset=self.p("v_reset", x), w_in=self.p("w_in", x), dt=self.dt,
            compare=self.compare,
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        scale = dt_scale(dt, self.dt)
        tau_syn = check_positive(full(self.tau_syn, shape, "tau_syn"), "tau_syn", "CubaLIF")
        tau_mem = check_positive(full(self.tau_mem, shape, "tau_mem"), "tau_mem", "CubaLIF")
        return nir.CubaLIF(
            tau_syn=tau_syn * scale, tau_mem=tau_mem * scale, r=full(self.r, shape, "r"),
            v_leak=full(self.v_leak, shape, "v_leak"),
            v_threshold=full(self.v_threshold, shape, "v_threshold"),
            v_reset=full(self.v_reset, shape, "v_reset"), w_in=full(self.w_in, shape, "w_in"),
            metadata=compare_meta(self.compare),
        )

    def extra_repr(self) -> str:
        return f"compare={self.compare!r}, dt={self.dt}"


class PLIF(NeuronModule):
    """Parametric LIF (SpikingJelly ``ParametricLIFNode``, decay_input): trainable decay.

    ``v ← v + (x − (v − v_r))·σ(w)``; fire on ``v >= v_th`` (SpikingJelly); hard reset to
    ``v_r``; state starts at ``v_r`` (SpikingJelly). ``w`` is initialised as SpikingJelly
    does, ``w = −log(init_tau − 1)`` so that ``σ(w) = 1/init_tau`` (``init_tau > 1``).
    ``v_reset=None`` is SpikingJelly's soft reset (``v ← v − s·v_th``, leak towards 0).

    The step is NIR's LIF with ``τ = dt/σ(w)``, ``R = 1``, ``v_leak = v_r`` (computed by
    :func:`functional.lif_step`, so the export is exact to the last bit when the graph's dt
    is the module's); hard reset exports as ``nir.LIF(tau=dt/σ(w), r=1, v_leak=v_r,
    v_reset=v_r, metadata={"compare": ">="})``, soft reset as ``SubtractiveLIF``.
    Note: standard NIR nodes start at ``v = 0``, so with ``v_r ≠ 0`` the first steps of the
    exported hard-reset node differ from SpikingJelly's start at ``v_r``.
    """

    def __init__(
        self,
        init_tau: Param = 2.0,
        v_threshold: Param = 1.0,
        v_reset: Param | None = 0.0,
        *,
        compare: str = ">=",
        dt: float = 1.0,
        learn: bool = True,
    ) -> None:
        super().__init__()
        init_tau = to_tensor(init_tau, "init_tau")
        if not bool((init_tau > 1).all()):
            raise InvalidParameterError(f"PLIF: init_tau must be > 1; got {init_tau.tolist()}")
        self.compare = F.check_compare(compare)
        self.dt = float(dt)
        self.soft_reset = v_reset is None
        self.add_param("w", -torch.log(init_tau - 1), learn)
        self.add_param("v_threshold", v_threshold)
        self.add_param("v_reset", 0.0 if v_reset is None else v_reset)

    def decay(self) -> torch.Tensor:
        """The effective per-step decay ``σ(w)`` (``= dt/τ``)."""
        return torch.sigmoid(self.w)

    def initial_state(self, x: torch.Tensor) -> F.LIFState:
        return F.LIFState(torch.zeros_like(x) + self.p("v_reset", x).detach())

    def forward(self, x: torch.Tensor, state: F.LIFState | None = None):
        state = self.initial_state(x) if state is None else state
        tau = self.dt / torch.sigmoid(self.p("w", x))
        vr = self.p("v_reset", x)
        return F.lif_step(
            x, state, tau=tau, r=1.0, v_leak=vr, v_threshold=self.p("v_threshold", x),
            v_reset=vr, dt=self.dt, compare=self.compare,
            reset="subtract" if self.soft_reset else "hard",
        )

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        dt_scale(dt, self.dt)  # validates dt
        k = full(torch.sigmoid(self.w.detach().double()), shape, "w")
        kw = dict(tau=dt / k, r=np.ones_like(k),
                  v_leak=full(self.v_reset, shape, "v_reset"),
                  v_threshold=full(self.v_threshold, shape, "v_threshold"))
        if self.soft_reset:
            return N.SubtractiveLIF(**kw, compare=self.compare)
        meta: dict = compare_meta(self.compare)
        v_r = full(self.v_reset, shape, "v_reset")
        if np.any(v_r != 0):  # SpikingJelly starts at v_r; NIR readers start at 0
            meta["v_init"] = v_r
        return nir.LIF(**kw, v_reset=v_r, metadata=meta)

    def extra_repr(self) -> str:
        return f"soft_reset={self.soft_reset}, compare={self.compare!r}, dt={self.dt}"


__all__ = ["IF", "LI", "LIF", "PLIF", "CubaLIF", "as_param", "compare_meta", "full"]
