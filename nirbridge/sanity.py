"""Sanity checks of a graph at its dt and of a reference run, each naming the node.

- **Time step** (:func:`check_time_step`): a neuron stepped by forward Euler — its torch
  step takes ``dt`` and time constants ``tau``/``tau_*``, as NIR's LIF, LI, CubaLIF and
  CubaLI and the nodes built on them do: ``v ← v + (dt/τ)(…)`` — with ``dt/τ > 1``
  overshoots its fixed point at every step: it oscillates (``1 < dt/τ < 2``) or diverges
  (``dt/τ ≥ 2``), which no continuous-time model means. The dt is then usually wrong: a
  framework's file run at dt = 1 instead of its convention.
- **A run** (:func:`check_run`): a neuron whose state left :data:`STATE_BOUND` or became
  NaN/inf (the run diverged), and a spiking layer that never spiked (its outputs, and so
  any agreement measured on them, say nothing).

Findings are warnings (:class:`Finding`): the commands print them; with ``--strict`` the
time-step findings refuse the graph before it runs (:func:`refuse`); ``nirbridge deploy``
reports every finding in its table and JSON and exits with code 3 instead of reporting a
diverged or silent reference as a successful deployment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.errors import InvalidParameterError
from nirbridge.neurons import is_neuron, spec_of
from nirbridge.passes import iter_nodes
from nirbridge.profile.spiking import is_spiking

#: A state magnitude no sound run reaches (in the graph's units: a trained network's
#: membranes stay within a few thresholds, and thresholds are O(1)–O(100)); beyond it the
#: run counts as diverged.
STATE_BOUND = 1e6

#: The kinds of finding: a forward-Euler step with dt/τ > 1, a state beyond
#: :data:`STATE_BOUND`, a NaN/inf state, a spiking layer that never spiked.
KINDS = ("euler_step", "exploded", "non_finite", "silent")


@dataclass(frozen=True)
class Finding:
    """One sanity problem: its ``kind`` (one of :data:`KINDS`), the ``node`` it is
    about, the ``message`` (one line naming the node and the value) and the ``value``
    (dt/τ, the largest |state|, or None)."""

    kind: str
    node: str
    message: str
    value: float | None = None

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def euler_ratios(node: nir.NIRNode, dt: float) -> dict[str, np.ndarray]:
    """``dt/τ`` per time constant of a neuron stepped by forward Euler (its registered
    step takes ``dt`` and fields ``tau``/``tau_*``); empty for any other node."""
    spec = spec_of(node)
    if spec is None:
        return {}
    try:
        kwargs = spec.kwargs(node, dt, torch.float64, "cpu")
    except Exception:  # a node whose parameters do not even convert: validate reports it
        return {}
    if "dt" not in kwargs:
        return {}
    out = {}
    for key, value in kwargs.items():
        if key == "tau" or key.startswith("tau_"):
            tau = np.asarray(torch.as_tensor(value).detach().cpu().numpy(), dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[key] = np.where(tau > 0, dt / np.where(tau > 0, tau, 1.0), np.inf)
    return out


def check_time_step(graph: nir.NIRGraph, dt: float) -> list[Finding]:
    """A finding per forward-Euler neuron with ``dt/τ > 1`` (or ``τ ≤ 0``) at ``dt``."""
    found = []
    for name, node in iter_nodes(graph):
        for key, ratio in euler_ratios(node, dt).items():
            worst = float(np.max(ratio)) if ratio.size else 0.0
            if worst <= 1.0:
                continue
            if np.isinf(worst):
                detail = f"{key} ≤ 0"
            else:
                tau = dt / worst
                detail = f"dt/{key} = {worst:.3g} (dt = {dt:g}, {key} = {tau:.3g})"
            found.append(Finding(
                "euler_step", name, value=worst,
                message=f"node {name!r} ({type(node).__name__}): {detail} > 1: its "
                        "forward-Euler step overshoots (it oscillates for 1 < dt/τ < 2 and "
                        "diverges from 2); the dt is likely wrong for this file (give --dt, "
                        "or --from FRAMEWORK for its exporter's convention)"))
    return found


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _values(x: Any) -> Any:
    """A record as it is (a tensor, or a numpy array without a copy): read in place."""
    if torch.is_tensor(x):
        return x if x.is_floating_point() else x.to(torch.float64)
    a = np.asarray(x)
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def _size(x: Any) -> int:
    return int(x.numel()) if torch.is_tensor(x) else int(np.size(x))


def _any_nonzero(x: Any) -> bool:
    return bool(torch.count_nonzero(x) if torch.is_tensor(x) else np.count_nonzero(x))


def _first_step(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])


def _state_findings(name: str, op: str, field: str, values: Any, where: str,
                    bound: float) -> list[Finding]:
    if _size(values) == 0 or values.ndim < 1:
        return []
    # one pass, no copy: the extremes say whether anything is NaN/inf (NaN propagates to
    # both) or beyond the bound; the element-wise masks are made only for a finding
    if torch.is_tensor(values):
        lo, hi = (float(v) for v in torch.aminmax(values.detach()))
    else:
        lo, hi = float(np.min(values)), float(np.max(values))
    if np.isfinite(lo) and np.isfinite(hi) and max(-lo, hi) <= bound:
        return []
    a = _numpy(values)
    finite = np.isfinite(a)
    if not finite.all():
        step = _first_step(~finite)
        return [Finding("non_finite", name, value=None,
                        message=f"{where}: layer {name!r} ({op}): state '{field}' became "
                                f"NaN/inf at step {step}: the run diverged")]
    peak = float(np.abs(a).max())
    if peak > bound:
        step = _first_step(np.abs(a) > bound)
        return [Finding("exploded", name, value=peak,
                        message=f"{where}: layer {name!r} ({op}): |{field}| reached "
                                f"{peak:.3g} (> {bound:g}, first at step {step}): the run "
                                "diverged (check the dt and the time constants)")]
    return []


def check_run(graph: nir.NIRGraph, records: Mapping[str, Any], *,
              where: str = "reference run", bound: float = STATE_BOUND,
              spikes: Mapping[str, float | None] | None = None) -> list[Finding]:
    """Findings of a run's ``records`` (node → :class:`~nirbridge.backends.reference.RunRecord`):
    per recorded neuron, a state beyond ``bound`` or NaN/inf, and a spiking layer that
    never spiked. ``where`` names the run in the messages. ``spikes`` (node → spikes of
    the run, e.g. ``{n: c.spikes for n, c in counts.neurons.items()}`` of its
    :class:`~nirbridge.profile.Counts`) says whether a layer spiked without reading its
    output again; layers it does not name are read."""
    found: list[Finding] = []
    for name, node in graph.nodes.items():
        rec = records.get(name)
        if rec is None or not is_neuron(node):
            continue
        op = type(node).__name__
        states = dict(getattr(rec, "states", None) or {})
        if not states and getattr(rec, "output", None) is not None and not is_spiking(node):
            states = {"output": rec.output}
        problems: list[Finding] = []
        for field, values in states.items():
            problems += _state_findings(name, op, field, _values(values), where, bound)
        found += problems[:1]  # the first diverging state says it; the others follow it
        out = getattr(rec, "output", None)
        if not problems and is_spiking(node) and out is not None:
            seen = out if torch.is_tensor(out) else np.asarray(out)
            counted = None if spikes is None else spikes.get(name)
            silent = (counted == 0 if counted is not None
                      else not _any_nonzero(seen))
            if _size(seen) and silent:
                t = seen.shape[0]
                b = seen.shape[1] if seen.ndim > 1 else 1
                found.append(Finding(
                    "silent", name, value=0.0,
                    message=f"{where}: spiking layer {name!r} ({op}) never spiked in {t} "
                            f"steps × {b} samples: its outputs (and any agreement measured "
                            "on them) say nothing (check the dt, the inputs and the "
                            "thresholds)"))
    return found


def neuron_names(graph: nir.NIRGraph) -> list[str]:
    """The neuron nodes of ``graph`` (what a run records for :func:`check_run`)."""
    return [name for name, node in graph.nodes.items() if is_neuron(node)]


def check(graph: nir.NIRGraph, dt: float, records: Mapping[str, Any] | None = None, *,
          where: str = "reference run") -> list[Finding]:
    """:func:`check_time_step` at ``dt``, then :func:`check_run` of ``records``."""
    return check_time_step(graph, dt) + (check_run(graph, records, where=where)
                                         if records else [])


def refuse(findings: Iterable[Finding], option: str = "--strict") -> None:
    """Raise :class:`InvalidParameterError` for the first time-step finding (what
    ``--strict`` refuses); nothing when there is none."""
    for f in findings:
        if f.kind == "euler_step":
            raise InvalidParameterError(f"{f.message}; refused ({option})")


__all__ = ["KINDS", "STATE_BOUND", "Finding", "check", "check_run", "check_time_step",
           "euler_ratios", "neuron_names", "refuse"]
