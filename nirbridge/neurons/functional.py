"""The neuron equations of specs/neurons.md as pure single-step functions.

This module is the one place where the dynamics are written. The trainable modules in
:mod:`nirbridge.neurons` and the float64 reference executor both call these functions, so
a neuron means the same thing everywhere; the tests check them against hand-computed
values taken from the spec, not only against each other.

Conventions (Norse style): every step takes the input current ``x`` of this step and the
previous state (a NamedTuple of tensors), and returns ``(spikes, new_state)``. Parameters
are tensors (or floats) broadcastable to ``x``'s neuron shape, already in their
*effective* form (e.g. ``tanh_a = tanh(a)``). ``compare`` is ``">"`` or ``">="``: the
model's own firing convention.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from nirbridge.errors import InvalidParameterError

Tensor = torch.Tensor
COMPARES = (">", ">=")


class SurrogateSpike(torch.autograd.Function):
    """Heaviside step in the forward pass, arctan surrogate gradient in the backward pass.

    The surrogate (Fang et al. 2021, SpikingJelly's ``ATan``) only shapes gradients; the
    forward value is the exact step function with the model's own tie convention.
    """

    @staticmethod
    def forward(ctx, z: Tensor, inclusive: bool, alpha: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.alpha = alpha
        return (z >= 0).to(z.dtype) if inclusive else (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        a = ctx.alpha
        g = a / 2 / (1 + (math.pi / 2 * a * z) ** 2)
        return grad * g, None, None


def check_compare(compare: str) -> str:
    if compare not in COMPARES:
        raise InvalidParameterError(
            f"compare={compare!r} is not a firing convention; use '>' or '>='"
        )
    return compare


def spike(z: Tensor, compare: str, alpha: float = 2.0) -> Tensor:
    """H(z) with the tie at ``z == 0`` decided by ``compare`` (``>=`` fires on the tie)."""
    return SurrogateSpike.apply(z, check_compare(compare) == ">=", alpha)


# ----------------------------------------------------------------------------- states
class LIFState(NamedTuple):
    v: Tensor


class CubaLIFState(NamedTuple):
    v: Tensor
    i: Tensor


class ARLIFState(NamedTuple):
    v: Tensor
    m: Tensor


class CLIFState(NamedTuple):
    v: Tensor
    m: Tensor


class ALIFState(NamedTuple):
    v: Tensor
    b: Tensor
    z: Tensor  # spikes of the previous step (z_prev)


# ---------------------------------------------------------------- standard NIR neurons
def _fire_and_reset(v: Tensor, v_threshold: Tensor | float, v_reset: Tensor | float,
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


def lif_step(
    x: Tensor,
    state: LIFState,
    *,
    tau: Tensor | float,
    r: Tensor | float,
    v_leak: Tensor | float,
    v_threshold: Tensor | float,
    v_reset: Tensor | float = 0.0,
    dt: float = 1.0,
    compare: str = ">",
    reset: str = "hard",
) -> tuple[Tensor, LIFState]:
    """NIR LIF, forward Euler: ``v ← v + (dt/τ)(v_leak − v + R·x)``, fire, reset.

    ``reset="hard"`` sets ``v ← v_reset`` where it fired (NIR's only reset);
    ``reset="subtract"`` sets ``v ← v − s·v_th`` (snnTorch/Norse/SpikingJelly soft reset).
    """
    v = state.v + (dt / tau) * (v_leak - state.v + r * x)
    return _fire_and_reset(v, v_threshold, v_reset, compare, reset)


def if_step(
    x: Tensor,
    state: LIFState,
    *,
    r: Tensor | float,
    v_threshold: Tensor | float,
    v_reset: Tensor | float = 0.0,
    compare: str = ">",
    reset: str = "hard",
) -> tuple[Tensor, LIFState]:
    """NIR IF: ``v ← v + R·x``, fire, reset (hard to ``v_reset`` or subtractive)."""
    v = state.v + r * x
    return _fire_and_reset(v, v_threshold, v_reset, compare, reset)


def li_step(
    x: Tensor,
    state: LIFState,
    *,
    tau: Tensor | float,
    r: Tensor | float,
    v_leak: Tensor | float,
    dt: float = 1.0,
) -> tuple[Tensor, LIFState]:
    """NIR LI (no fire): ``v ← v + (dt/τ)(v_leak − v + R·x)``; the output is ``v``."""
    v = state.v + (dt / tau) * (v_leak - state.v + r * x)
    return v, LIFState(v)


def cubalif_step(
    x: Tensor,
    state: CubaLIFState,
    *,
    tau_syn: Tensor | float,
    tau_mem: Tensor | float,
    r: Tensor | float,
    v_leak: Tensor | float,
    v_threshold: Tensor | float,
    v_reset: Tensor | float = 0.0,
    w_in: Tensor | float = 1.0,
    dt: float = 1.0,
    compare: str = ">",
) -> tuple[Tensor, CubaLIFState]:
    """NIR CubaLIF, forward Euler; the membrane is driven by the *updated* current:

    ``i ← i + (dt/τ_syn)(−i + w_in·x)``; ``v ← v + (dt/τ_mem)(v_leak − v + R·i)``.
    """
    i = state.i + (dt / tau_syn) * (-state.i + w_in * x)
    v = state.v + (dt / tau_mem) * (v_leak - state.v + r * i)
    s = spike(v - v_threshold, compare)
    v = v * (1 - s) + v_reset * s
    return s, CubaLIFState(v, i)


# ------------------------------------------------------------------------ custom nodes
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


def klif_step(
    x: Tensor,
    state: LIFState,
    *,
    tau: Tensor | float,
    k: Tensor | float,
    v_threshold: Tensor | float,
    v_reset: Tensor | float | None = 0.0,
    decay_input: bool = True,
    scale_reset: bool = False,
    compare: str = ">=",
) -> tuple[Tensor, LIFState]:
    """KLIF (arXiv 2302.09238, SpikingJelly KLIFNode); ``v_reset=None`` is soft reset."""
    vr = 0.0 if v_reset is None else v_reset
    if decay_input:
        h = state.v + (x - (state.v - vr)) / tau
    else:
        h = state.v - (state.v - vr) / tau + x
    f = torch.relu(k * h)
    s = spike(f - v_threshold, compare)
    if v_reset is None:
        v = f - s * v_threshold
        if scale_reset:
            v = v / k
    else:
        kept = f * (1 - s)
        if scale_reset:
            kept = kept / k
        v = kept + v_reset * s
    return s, LIFState(v)


def dalif_step(
    x: Tensor,
    state: LIFState,
    *,
    alpha: Tensor | float,
    beta: Tensor | float,
    v_threshold: Tensor | float,
    reset: str = "hard",
    compare: str = ">=",
) -> tuple[Tensor, LIFState]:
    """DA-LIF (arXiv 2502.10422): ``v ← β·v + α·x``; hard reset to 0 or soft ``v − s·v_th``."""
    v = beta * state.v + alpha * x
    s = spike(v - v_threshold, compare)
    if reset == "hard":
        v = v * (1 - s)
    elif reset == "soft":
        v = v - s * v_threshold
    else:
        raise InvalidParameterError(f"DA-LIF reset={reset!r} is unknown; use 'hard' or 'soft'")
    return s, LIFState(v)


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


def alif_step(
    x: Tensor,
    state: ALIFState,
    *,
    alpha: Tensor | float,
    rho: Tensor | float,
    v_threshold: Tensor | float,
    beta: Tensor | float,
    compare: str = ">",
) -> tuple[Tensor, ALIFState]:
    """ALIF (Bellec et al. 2018) with ``α = exp(−dt/τ)``, ``ρ = exp(−dt/τ_a)``.

    Ordering chosen here (documented in specs/neurons.md): the adaptation and the reset use
    the previous step's spikes ``z_prev``; this step's spike is computed from the *updated*
    voltage: ``b ← ρb + (1−ρ)z_prev; A = thr + βb; v ← αv + (1−α)x − z_prev·A;
    z = H(v − A)``. (Bellec's code computes z from the voltage before the update, which
    shifts spikes by one step; this ordering has no such latency.)
    """
    b = rho * state.b + (1 - rho) * state.z
    a_thr = v_threshold + beta * b
    v = alpha * state.v + (1 - alpha) * x - state.z * a_thr
    z = spike(v - a_thr, compare)
    return z, ALIFState(v, b, z)
