"""Value checks: every parameter in the range its equation needs.

:func:`nirbridge.passes.check_finite` refuses NaN and ±inf; this module refuses finite
values that make an equation meaningless: a time constant ≤ 0 (``dt/τ`` flips sign or
divides by zero), a decay factor outside [0, 1], a delay < 0, a shape entry that is not a
positive integer, a convolution stride of 0, and thresholds that make a spiking neuron fire
at every step whatever its input. It runs in :func:`nirbridge.passes.validate` (so every
command, every read and every write gets it) as :func:`check_values`.

Each neuron says which rule applies to which of its fields in its
:class:`~nirbridge.neurons.NeuronSpec`'s ``ranges`` (field → rule name, a tuple of rule
names, or a callable of the node returning them, for rules that depend on a flag such as
the reset mode). The rules are :data:`RULES` here, so that the wording and the maths of a
rule are in one place; a neuron without ``ranges`` gets only the NaN/inf check and, for
fields called ``tau``, ``tau_syn`` or ``tau_mem``, the time-constant rule.

Thresholds are not blanket-positive: NIR's LIF, IF and CubaLIF (and Norse's LIF) may hold
a threshold of any sign (biological units: ``v_threshold = −50`` mV with ``v_reset = −70``
mV), and are refused only where the reset value already passes the threshold. The three
threshold rules, each exact for its equation:

- ``threshold_soft``: a subtractive reset ``v ← v − s·θ`` with ``θ ≤ 0`` never lowers ``v``,
  so a neuron that fired once fires at every later step (unless inhibited): ``θ > 0``.
- ``threshold_rest``: a membrane that starts and rests at 0 already passes a threshold
  ``θ ≤ 0`` (``>=``) or ``θ < 0`` (``>``): it fires at every step without input.
- ``threshold_reset:FIELD``: a hard reset to ``FIELD`` that passes the threshold puts the
  neuron back into firing right after each spike.

Every message is one line: ``node 'lif1' field 'tau': -1.0 ≤ 0; a time constant must be
positive (in seconds, like dt)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from nirbridge.errors import InvalidParameterError
from nirbridge.neurons import spec_of
from nirbridge.neurons._base import compare_of


@dataclass(frozen=True)
class Rule:
    """``bad(values) -> mask`` of the values outside the range; ``says``: how a bad value
    relates to the range (``"≤ 0"``); ``why``: what the equation needs, and what to do."""

    bad: Callable[[np.ndarray], np.ndarray]
    says: str
    why: str


#: The rules a neuron's ``ranges`` may name (threshold rules are :func:`_threshold_rule`).
RULES: dict[str, Rule] = {
    "time_constant": Rule(lambda v: v <= 0, "≤ 0",
                          "a time constant must be positive (in seconds, like dt)"),
    "rate": Rule(lambda v: v <= 0, "≤ 0",
                 "an inverse time constant (1/τ, in 1/s) must be positive"),
    "tau_steps": Rule(lambda v: v <= 1, "≤ 1",
                      "this τ counts time steps and must be > 1 (SpikingJelly asserts "
                      "tau > 1; the leak factor is 1 − 1/τ)"),
    "tau_steps_1": Rule(lambda v: v < 1, "< 1",
                        "this τ counts time steps: the leak factor 1 − 1/τ must lie in "
                        "[0, 1), so τ ≥ 1"),
    "decay": Rule(lambda v: (v < 0) | (v > 1), "is outside [0, 1]",
                  "a decay factor multiplies the state at every step and must lie in [0, 1]"),
    "unit": Rule(lambda v: (v < -1) | (v > 1), "is outside [−1, 1]",
                 "this field holds tanh(a), which lies in [−1, 1]"),
    "positive": Rule(lambda v: v <= 0, "≤ 0", "this neuron's equation needs it positive"),
    "count_threshold": Rule(lambda v: v <= 0, "≤ 0",
                            "Sinabs counts spikes as v // threshold and fires on v >= "
                            "threshold, which needs a positive threshold"),
    "reset_amount": Rule(lambda v: v <= 0, "≤ 0",
                         "a subtractive reset by this amount must lower v, else the neuron "
                         "fires at every step once it has fired; use a positive value"),
    "nonnegative": Rule(lambda v: v < 0, "< 0", "it must be ≥ 0"),
}

#: Fields checked as time constants on neurons that declare no ``ranges``.
_DEFAULT_TIME_CONSTANTS = ("tau", "tau_syn", "tau_mem")


def _first(values: np.ndarray, mask: np.ndarray) -> tuple[str, str]:
    """The first bad value, and where it is (index and count) when the field is an array."""
    if values.ndim == 0:
        return repr(float(values)), ""
    idx = tuple(int(i) for i in np.argwhere(mask)[0])
    at = idx[0] if len(idx) == 1 else idx
    return repr(float(values[idx])), f" (at index {at}; {int(mask.sum())} of {values.size})"


def _fail(name: str, field: str, text: str) -> InvalidParameterError:
    return InvalidParameterError(f"node {name!r} field {field!r}: {text}")


def _numbers(value: Any) -> np.ndarray | None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr


def _compare(node: Any) -> str:
    return ">=" if compare_of(node) == ">=" else ">"


def _threshold_rule(node: Any, name: str, field: str, theta: np.ndarray, rule: str) -> None:
    cmp = _compare(node)
    if rule == "threshold_soft":
        mask = theta <= 0
        if mask.any():
            value, where = _first(theta, mask)
            raise _fail(name, field, f"{value} ≤ 0{where}; with a subtractive reset "
                        "(v ← v − s·threshold) a threshold ≤ 0 never lowers v, so the neuron "
                        "fires at every step once it has fired; use a positive threshold")
    elif rule == "threshold_rest":
        mask = theta <= 0 if cmp == ">=" else theta < 0
        if mask.any():
            says = "≤ 0" if cmp == ">=" else "< 0"
            value, where = _first(theta, mask)
            raise _fail(name, field, f"{value} {says}{where}; the membrane starts "
                        f"and rests at 0, which already fires (v {cmp} threshold), so the "
                        "neuron fires at every step without input; use a positive threshold")
    elif rule.startswith("threshold_reset:"):
        reset_field = rule.partition(":")[2]
        reset = _numbers(getattr(node, reset_field, None))
        if reset is None or reset.dtype.kind not in "fiu":
            return
        try:
            r, t = np.broadcast_arrays(reset, theta)
        except ValueError:
            return  # shapes are check_shapes' (and the neuron's) to report
        mask = r >= t if cmp == ">=" else r > t
        if mask.any():
            idx = tuple(int(i) for i in np.argwhere(mask)[0]) if mask.ndim else ()
            _, where = _first(t, mask)
            rel = "≤" if cmp == ">=" else "<"
            raise _fail(name, field, f"{float(t[idx])!r} {rel} {reset_field} = "
                        f"{float(r[idx])!r}{where}; the reset value already fires "
                        f"({reset_field} {cmp} threshold), so after its first spike the "
                        f"neuron is reset into firing again; use a threshold above "
                        f"{reset_field}")
    else:
        raise InvalidParameterError(f"node {name!r}: unknown range rule {rule!r} for field "
                                    f"{field!r} (rules: {', '.join(sorted(RULES))}, "
                                    "threshold_soft, threshold_rest, threshold_reset:FIELD)")


def check_field(node: Any, name: str, field: str, rules: Iterable[str]) -> None:
    """Check ``node``'s ``field`` against ``rules`` (names of :data:`RULES` or threshold
    rules); raise :class:`InvalidParameterError` naming node, field and value."""
    value = getattr(node, field, None)
    if value is None:
        return
    arr = _numbers(value)
    if arr is None or arr.size == 0:
        return
    if not np.isfinite(arr).all():
        return  # check_finite says it (it runs first)
    for rule in rules:
        if rule.startswith("threshold_"):
            _threshold_rule(node, name, field, arr, rule)
            continue
        spec = RULES.get(rule)
        if spec is None:
            _threshold_rule(node, name, field, arr, rule)  # raises: unknown rule
            continue
        mask = np.asarray(spec.bad(arr))
        if mask.any():
            value, where = _first(arr, mask)
            raise _fail(name, field, f"{value} {spec.says}{where}; {spec.why}")


def _as_rules(entry: Any, node: Any) -> tuple[str, ...]:
    if callable(entry):
        entry = entry(node)
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def check_neuron(name: str, node: Any) -> None:
    """A neuron's fields against its spec's ``ranges`` (or the default time constants)."""
    spec = spec_of(node)
    if spec is None:
        return
    ranges = getattr(spec, "ranges", None) or {f: "time_constant"
                                                for f in _DEFAULT_TIME_CONSTANTS}
    for field, entry in ranges.items():
        check_field(node, name, field, _as_rules(entry, node))


def _integers(name: str, field: str, value: Any, low: int, what: str,
              unknown: bool = False) -> None:
    """Every entry of ``value`` is an integer ≥ ``low`` (``unknown``: NaN entries, which
    some readers use for a size not known yet, pass)."""
    if value is None or isinstance(value, str):
        return
    arr = _numbers(value)
    if arr is None or arr.size == 0:
        return
    finite = np.isfinite(arr)
    safe = np.where(finite, arr, float(low))
    bad = (safe != np.round(safe)) | (safe < low)
    bad = np.asarray(bad | (~finite & ~(unknown & np.isnan(arr))))
    if bad.any():
        value, where = _first(arr, bad)
        if np.isfinite(float(value)) and float(value).is_integer():  # say it as an integer
            value = str(int(float(value)))
        raise _fail(name, field, f"{value} is not an integer ≥ {low}{where}; {what}")


def _shape_entries(types: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(types, dict):
        yield from types.items()
    elif types is not None:
        yield "", types


def check_node(name: str, node: Any) -> None:
    """The value rules of one node (not a subgraph): shapes, NIR's own layers' integer
    fields, Delay, and the neuron's ranges."""
    for tfield in ("input_type", "output_type"):
        for port, shape in _shape_entries(getattr(node, tfield, None)):
            arr = _numbers(shape)
            if arr is None or arr.dtype == object:
                continue
            where = f"{tfield}[{port!r}]" if port else tfield
            _integers(name, where, arr, 1, "a shape lists positive sizes", unknown=True)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        _integers(name, "stride", node.stride, 1, "a convolution moves by ≥ 1 element")
        _integers(name, "dilation", node.dilation, 1, "a dilation is ≥ 1")
        _integers(name, "groups", node.groups, 1, "a convolution has ≥ 1 group")
        _integers(name, "padding", node.padding, 0, "padding is ≥ 0")
    elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        _integers(name, "kernel_size", node.kernel_size, 1, "a pooling window is ≥ 1")
        _integers(name, "stride", node.stride, 1, "a pooling window moves by ≥ 1")
        _integers(name, "padding", node.padding, 0, "padding is ≥ 0")
    elif isinstance(node, nir.Delay):
        check_field(node, name, "delay", ("nonnegative",))
    check_neuron(name, node)


def check_values(graph: nir.NIRGraph, prefix: str = "") -> None:
    """Every node of ``graph`` (not its subgraphs: :func:`~nirbridge.passes.validate`
    visits those) in its ranges; raises :class:`InvalidParameterError` naming node, field
    and value. (``metadata["dt"]`` is :func:`~nirbridge.passes.validate`'s.)"""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            continue
        check_node(f"{prefix}{name}", node)


__all__ = ["RULES", "Rule", "check_field", "check_neuron", "check_node", "check_values"]
