"""The neuron updates of :mod:`nirbridge.neurons.functional` in float64 numpy.

Every function here performs the same IEEE operations, in the same order, as its
counterpart in ``functional.py`` run by the float64 reference executor, so that given the
same input current ``x`` the new state is bit-identical (elementary functions aside:
numpy's ``tanh``/``exp`` may differ from torch's in the last bit). Parameters that the
reference derives from the node on every step (``dt / tau`` in torch is
``reciprocal(tau) * dt``) are derived once by the lowering with the same operations and
passed in ready to use.

Signature of every update: ``fn(x, st, pa, fl) -> out`` where ``x`` is this step's input
current (flat float64 array), ``st`` maps state names to arrays that are updated *in
place*, ``pa`` maps parameter names to arrays and ``fl`` maps flag names to values
(``compare`` is ``">"`` or ``">="``). ``out`` is the spike vector (0.0/1.0) or, for the
non-spiking LI/I/CubaLI, the membrane value.

No Lava import here: these functions are tested directly against the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import numpy as np

State = MutableMapping[str, np.ndarray]
Params = Mapping[str, np.ndarray]
Flags = Mapping[str, Any]


def spike(z: np.ndarray, compare: str) -> np.ndarray:
    """H(z) as float64, the tie ``z == 0`` firing only for ``compare == ">="``."""
    if compare == ">=":
        return (z >= 0).astype(np.float64)
    if compare == ">":
        return (z > 0).astype(np.float64)
    raise ValueError(f"compare={compare!r}; use '>' or '>='")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-x))`` (as torch computes it, up to ``exp``)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _reset(v: np.ndarray, s: np.ndarray, pa: Params, mode: str) -> np.ndarray:
    if mode == "hard":
        return v * (1 - s) + pa["v_reset"] * s
    if mode == "subtract":
        return v - s * pa["v_threshold"]
    raise ValueError(f"reset={mode!r}; use 'hard' or 'subtract'")


def lif(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """NIR LIF (``fl["reset"]`` hard or subtract); ``pa["dt_tau"] = reciprocal(tau)·dt``."""
    v = st["v"] + pa["dt_tau"] * (pa["v_leak"] - st["v"] + pa["r"] * x)
    s = spike(v - pa["v_threshold"], fl["compare"])
    st["v"][:] = _reset(v, s, pa, fl.get("reset", "hard"))
    return s


def if_(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """NIR IF: ``v ← v + R·x``, fire, reset."""
    v = st["v"] + pa["r"] * x
    s = spike(v - pa["v_threshold"], fl["compare"])
    st["v"][:] = _reset(v, s, pa, fl.get("reset", "hard"))
    return s


def li(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """NIR LI: the output is the membrane ``v``."""
    v = st["v"] + pa["dt_tau"] * (pa["v_leak"] - st["v"] + pa["r"] * x)
    st["v"][:] = v
    return v


def integrator(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """NIR I: ``v ← v + (dt·R)·x``; the output is ``v``."""
    v = st["v"] + pa["dt_r"] * x
    st["v"][:] = v
    return v


def _cuba_current(x: np.ndarray, st: State, pa: Params) -> np.ndarray:
    i = st["i"] + pa["dt_tau_syn"] * (-st["i"] + pa["w_in"] * x)
    v = st["v"] + pa["dt_tau_mem"] * (pa["v_leak"] - st["v"] + pa["r"] * i)
    st["i"][:] = i
    return v


def cubalif(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """NIR CubaLIF: the membrane is driven by the updated current; hard reset."""
    v = _cuba_current(x, st, pa)
    s = spike(v - pa["v_threshold"], fl["compare"])
    st["v"][:] = v * (1 - s) + pa["v_reset"] * s
    return s


def cubali(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """NIR CubaLI: CubaLIF without fire; the output is ``v``."""
    v = _cuba_current(x, st, pa)
    st["v"][:] = v
    return v


def arlif(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """AR-LIF (``fl["memoryless_m"]`` zeroes ``m`` before every step)."""
    v = pa["decay"] * st["v"] + x
    theta = pa["v_threshold"] + pa["tanh_a"] * np.tanh(x)
    s = spike(v - theta, fl["compare"])
    if fl.get("memoryless_m", False):
        m = np.zeros_like(st["m"])
    else:
        g = sigmoid(pa["c"] * x)
        m = relu(st["m"]) * g - relu(-st["m"]) * (1 - g)
    m = m + (2 * s - 1) * sigmoid(x)
    st["v"][:] = v - s * (theta + sigmoid(m))
    st["m"][:] = m
    return s


def klif(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """KLIF (``fl["soft_reset"]`` replaces ``v_reset = None`` of the reference)."""
    soft = fl.get("soft_reset", False)
    vr = 0.0 if soft else pa["v_reset"]
    v0 = st["v"]
    if fl.get("decay_input", True):
        h = v0 + (x - (v0 - vr)) / pa["tau"]
    else:
        h = v0 - (v0 - vr) / pa["tau"] + x
    f = relu(pa["k"] * h)
    s = spike(f - pa["v_threshold"], fl["compare"])
    if soft:
        v = f - s * pa["v_threshold"]
        if fl.get("scale_reset", False):
            v = v / pa["k"]
    else:
        kept = f * (1 - s)
        if fl.get("scale_reset", False):
            kept = kept / pa["k"]
        v = kept + pa["v_reset"] * s
    st["v"][:] = v
    return s


def dalif(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """DA-LIF: ``v ← β·v + α·x``; reset hard (to 0) or soft."""
    v = pa["beta"] * st["v"] + pa["alpha"] * x
    s = spike(v - pa["v_threshold"], fl["compare"])
    reset = fl.get("reset", "soft")
    if reset == "hard":
        v = v * (1 - s)
    elif reset == "soft":
        v = v - s * pa["v_threshold"]
    else:
        raise ValueError(f"DA-LIF reset={reset!r}; use 'hard' or 'soft'")
    st["v"][:] = v
    return s


def clif(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """CLIF; ``pa["leak"] = 1 − reciprocal(tau)`` as the reference forms ``1 − 1/τ``."""
    v = pa["leak"] * st["v"] + x
    m = st["m"] * sigmoid(v / pa["tau"])
    s = spike(v - pa["v_threshold"], fl["compare"])
    m = m + s
    st["v"][:] = v - s * pa["v_threshold"] - s * sigmoid(m)
    st["m"][:] = m
    return s


def alif(x: np.ndarray, st: State, pa: Params, fl: Flags) -> np.ndarray:
    """ALIF (Bellec et al.), the reference's ordering (adaptation and reset use z_prev)."""
    z_prev = st["z"]
    b = pa["rho"] * st["b"] + (1 - pa["rho"]) * z_prev
    a_thr = pa["v_threshold"] + pa["beta"] * b
    v = pa["alpha"] * st["v"] + (1 - pa["alpha"]) * x - z_prev * a_thr
    z = spike(v - a_thr, fl["compare"])
    st["v"][:] = v
    st["b"][:] = b
    st["z"][:] = z
    return z


#: Update function by equation name (the ``equation`` of a neuron Process).
EQUATIONS: dict[str, Callable[[np.ndarray, State, Params, Flags], np.ndarray]] = {
    "lif": lif,
    "if": if_,
    "li": li,
    "i": integrator,
    "cubalif": cubalif,
    "cubali": cubali,
    "arlif": arlif,
    "klif": klif,
    "dalif": dalif,
    "clif": clif,
    "alif": alif,
}
