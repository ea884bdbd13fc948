"""The agreement matrix: every requested backend against the float64 reference, layer by
layer, judged by the backend's own tolerance (:func:`verify`).

The reference runs once (float64, every node recorded). Each backend is asked
``check(graph)`` first; one that cannot run is listed with its reasons. The others run
with every node recorded at the same dt and are compared per layer (every neuron node and
every Output; :class:`~nirbridge.verify.pairwise.LayerComparison`): spikes exactly
(identical fraction, first divergent step, spike counts), graded values by their largest
absolute and relative difference (relative to the layer's largest ``|reference|``).

A backend's ``reading(graph)`` notes (where it departs from the NIR spec) are reported
with it; where the reading gives the graph the backend computes instead, the backend is
also compared with the reference run of *that* graph: whether it "agrees with its own
reading" shows whether the named departure is the whole difference.

Verdicts, by the backend's :class:`~nirbridge.backends.Tolerance`:

- ``"exact"``: every spike identical, and every graded layer within ``graded_rel``;
- ``"bound"``: the mean identical fraction over the spiking layers at least
  ``min_spike_agreement`` (and graded within ``graded_rel``);
- ``"rounding"``: the earliest divergence (the first divergent step over the layers, at
  the layers where it starts: those with no divergent layer upstream in the same step)
  involves only entries within float rounding of a threshold
  (:mod:`nirbridge.verify.rounding`); later divergence is its consequence. Graded layers
  agree within ``graded_rel`` before that step.

A backend whose reading has notes and that does not agree fails with the notes as the
first reasons.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np

import nirbridge.verify.render as render
from nirbridge.backends import Backend, RunResult, Tolerance, get, names
from nirbridge.errors import InputError, NirbridgeError
from nirbridge.graph import execution_order, feedback_edges, flatten_subgraphs, predecessors
from nirbridge.passes import graph_dt, with_dt
from nirbridge.profile.spiking import payload_tags
from nirbridge.sanity import Finding, check
from nirbridge.verify.pairwise import (
    LayerComparison,
    _numpy,
    checked_inputs,
    compare_layers,
    compare_values,
    predictions,
    spike_agreement,
)
from nirbridge.verify.rounding import NearThreshold, near_threshold_layers

log = logging.getLogger(__name__)

#: The values of :attr:`Agreement.status`, per layer.
STATUSES = {
    "ok": "agrees within the tolerance",
    "FAIL": "differs beyond the tolerance",
    "rounding": "its first divergence is only at entries within rounding of a threshold",
    "after": "diverges after the first divergence (its consequence)",
    "below": "fewer identical spikes than the bound (the bound holds the mean)",
    "missing": "not recorded by one of the runs",
}


@dataclass
class Agreement:
    """One backend's run against one reference run (``against``: ``"reference"`` or
    ``"own reading"``), per layer in execution order, and its tolerance's verdict.

    ``first_divergent_step``: the earliest step any spiking layer differs;
    ``first_divergent_layers``: where it starts (no divergent layer upstream in that
    step); ``status``: per layer, a key of :data:`STATUSES`."""

    against: str
    layers: list[LayerComparison]
    first_divergent_step: int | None
    first_divergent_layers: list[str]
    prediction_agreement: float | None
    passed: bool
    reasons: list[str]
    status: dict[str, str] = field(default_factory=dict)

    @property
    def spike_agreement(self) -> float:
        """Mean identical fraction over the measured spiking neuron layers (1 without)."""
        return spike_agreement([la for la in self.layers if la.op != "Output"])

    def to_dict(self) -> dict[str, Any]:
        layers = []
        for la in self.layers:
            d = dict(la.__dict__)
            d["status"] = self.status.get(la.node)
            layers.append(d)
        return {"against": self.against, "passed": self.passed, "reasons": self.reasons,
                "first_divergent_step": self.first_divergent_step,
                "first_divergent_layers": self.first_divergent_layers,
                "spike_agreement": self.spike_agreement,
                "prediction_agreement": self.prediction_agreement, "layers": layers}


@dataclass
class BackendVerification:
    """One row group of the matrix: a backend that ran (or tried to)."""

    backend: str
    description: str
    tolerance: Tolerance
    notes: list[str] = field(default_factory=list)  #: its reading's departures from NIR
    agreement: Agreement | None = None  #: against the reference (None: the run failed)
    own_reading: Agreement | None = None  #: against the reference run of its reading
    accuracy: float | None = None
    error: str | None = None  #: why the run failed
    seconds: float | None = None
    ground_truth: bool = False  #: the reference's own run, listed as a row
    result: RunResult | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return self.error is None and self.agreement is not None and self.agreement.passed

    @property
    def reasons(self) -> list[str]:
        """Why it failed (empty when it passed): the run's error, or its reading's notes
        then the tolerance's reasons, then whether it agrees with its own reading."""
        if self.error is not None:
            return [f"its run failed: {self.error}"]
        if self.passed or self.agreement is None:
            return []
        out = [f"it reads the file differently from the NIR spec: {n}" for n in self.notes]
        out += self.agreement.reasons
        if self.own_reading is not None:
            out.append("it agrees with its own reading (the noted departure is the whole "
                       "difference)" if self.own_reading.passed else
                       "it does not agree with its own reading either: "
                       + "; ".join(self.own_reading.reasons))
        return out

    def to_dict(self) -> dict[str, Any]:
        t = self.tolerance
        return {
            "backend": self.backend, "description": self.description,
            "tolerance": {"spikes": t.spikes, "graded_rel": t.graded_rel,
                          "min_spike_agreement": t.min_spike_agreement, "why": t.why},
            "ground_truth": self.ground_truth, "passed": self.passed,
            "reasons": self.reasons, "notes": list(self.notes), "error": self.error,
            "seconds": self.seconds, "accuracy": self.accuracy,
            "agreement": None if self.agreement is None else self.agreement.to_dict(),
            "own_reading": None if self.own_reading is None else self.own_reading.to_dict(),
        }


@dataclass
class Verification:
    """What :func:`verify` measured: the matrix (``backends``), the backends that could
    not run (name → reasons), the reference's accuracy, its near-threshold counts per
    spiking layer (``near_threshold``; None where not analysable, the reason in
    ``near_threshold_reasons``) and its sanity findings."""

    steps: int
    samples: int
    dt: float
    backends: list[BackendVerification]
    could_not_run: dict[str, list[str]]
    reference_accuracy: float | None = None
    near_threshold: dict[str, int | None] = field(default_factory=dict)
    near_threshold_reasons: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    model: str | None = None
    reference: RunResult | None = field(default=None, repr=False)

    @property
    def verified(self) -> list[BackendVerification]:
        """The rows that measured a backend (the reference's own row left out)."""
        return [b for b in self.backends if not b.ground_truth]

    @property
    def passed(self) -> bool:
        """At least one backend besides the reference ran, and every one that ran agrees
        within its tolerance (a backend that could not run is listed, not failed)."""
        return bool(self.verified) and all(b.passed for b in self.backends)

    @property
    def exit_code(self) -> int:
        """What ``nirbridge verify`` exits with: 0 when :attr:`passed`, else 3."""
        return 0 if self.passed else 3

    def problems(self) -> list[str]:
        """One line per failure: ``backend: reason``; or that nothing was verified."""
        out = [f"{b.backend}: {r}" for b in self.backends for r in b.reasons]
        if not self.verified:
            tried = ", ".join(self.could_not_run) or "none requested"
            out.append(f"no backend besides the float64 reference could run the graph "
                       f"(could not run: {tried}): nothing was verified")
        return out

    def summary(self) -> str:
        """The verdict in one line, naming the backends that failed and the kind of
        failure (their reasons are in :meth:`problems` and the matrix)."""
        if self.passed:
            return "every backend that ran agrees within its tolerance"
        if not self.verified:
            return self.problems()[-1]
        parts = []
        for b in self.backends:
            if b.passed:
                continue
            why = ("its run failed" if b.error is not None else
                   f"it reads {len(b.notes)} node(s) differently from the NIR spec"
                   + ("; it agrees with its own reading" if b.own_reading is not None
                      and b.own_reading.passed else "") if b.notes else
                   "beyond its tolerance")
            parts.append(f"{b.backend} ({why})")
        return ("disagree with the float64 reference: " + ", ".join(parts)
                + " (the reasons are in the matrix)")

    def to_dict(self) -> dict[str, Any]:
        """The whole matrix as JSON values (non-finite numbers as null)."""
        return render.plain({
            "kind": "verification", "model": self.model, "steps": self.steps,
            "samples": self.samples, "dt": self.dt, "passed": self.passed,
            "exit_code": self.exit_code, "summary": self.summary(),
            "problems": self.problems(),
            "reference": {"backend": "reference", "dtype": "float64",
                          "accuracy": self.reference_accuracy,
                          "near_threshold": dict(self.near_threshold),
                          "near_threshold_reasons": dict(self.near_threshold_reasons),
                          "findings": [f.to_dict() for f in self.findings]},
            "backends": [b.to_dict() for b in self.backends],
            "could_not_run": {k: list(v) for k, v in self.could_not_run.items()},
        })

    def to_text(self) -> str:
        """The terminal form: the matrix, the verdicts, what could not run, the notes."""
        return render.text(self.to_dict())

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as strict JSON, atomically."""
        return render.write_json(self.to_dict(), path)

    def write_html(self, path: str | Path) -> Path:
        """Write the self-contained HTML report (the matrix as a heat map), atomically."""
        return render.write_html(self.to_dict(), path)


# ------------------------------------------------------------------------------ judging
def _same_step_ancestors(graph: nir.NIRGraph) -> dict[str, set[str]]:
    """Per node, the nodes whose value at a step feeds its value at the same step: over
    every edge but the feedback edges (they carry the previous step) and not through a
    Delay (it carries an earlier step)."""
    back = set(feedback_edges(graph))
    preds = {n: [p for p in ps if (p, n) not in back
                 and not isinstance(graph.nodes.get(p), nir.Delay)]
             for n, ps in predecessors(graph).items()}
    out: dict[str, set[str]] = {}
    for name in graph.nodes:
        seen: set[str] = set()
        stack = list(preds.get(name, ()))
        while stack:
            p = stack.pop()
            if p not in seen:
                seen.add(p)
                stack.extend(preds.get(p, ()))
        out[name] = seen - {name}
    return out


def _outputs(graph: nir.NIRGraph, res: RunResult) -> dict[str, np.ndarray]:
    outs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if isinstance(res.outputs, Mapping):
        return {k: np.asarray(v, dtype=np.float64) for k, v in res.outputs.items()}
    return {outs[0]: np.asarray(res.outputs, dtype=np.float64)} if outs else {}


def _output_kind(graph: nir.NIRGraph, name: str, tags: Mapping[str, str]) -> str:
    """An Output emits what its sources emit (the most general of them)."""
    rank = {"spike": 0, "count": 1, "graded": 2}
    kinds = [tags.get(p, "graded") for p in predecessors(graph)[name]]
    return max(kinds, key=rank.__getitem__) if kinds else "graded"


def _pairs(graph: nir.NIRGraph, ref: RunResult, res: RunResult
           ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer measured in both runs: its two output arrays."""
    out = {}
    for name in graph.nodes:
        a, b = ref.records.get(name), res.records.get(name)
        if a is not None and b is not None and a.output is not None and b.output is not None:
            out[name] = (_numpy(a.output).astype(np.float64), _numpy(b.output).astype(np.float64))
    oa, ob = _outputs(graph, ref), _outputs(graph, res)
    for name in oa:
        if name in ob:
            out[name] = (oa[name], ob[name])
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.3f} %"


def judge(graph: nir.NIRGraph, ref: RunResult, res: RunResult, tolerance: Tolerance,
          near: Mapping[str, NearThreshold], *, against: str = "reference") -> Agreement:
    """Compare run ``res`` with reference run ``ref`` of (flattened) ``graph`` per layer
    and judge it by ``tolerance`` (see the module documentation); ``near``: the
    near-threshold analysis of ``ref``
    (:func:`~nirbridge.verify.rounding.near_threshold_layers`)."""
    order = {n: i for i, n in enumerate(execution_order(graph))}
    layers = compare_layers(graph, ref.records, res.records, graded=True, missing=True)
    pairs = _pairs(graph, ref, res)
    tags = payload_tags(graph)
    outs_b = _outputs(graph, res)
    for name in _outputs(graph, ref):
        if name not in outs_b:
            raise InputError(f"backend run has no output '{name}' (it has "
                             f"{', '.join(outs_b) or 'none'})")
        a, b = pairs[name]
        layers.append(compare_values(name, "Output", _output_kind(graph, name, tags), a, b))
    layers.sort(key=lambda la: order.get(la.node, len(order)))
    measured = [la for la in layers if la.missing is None]
    starts = _starts([la for la in measured if la.spiking], pairs,
                     _same_step_ancestors(graph))
    t_d = min((t for t, _ in starts.values()), default=None)
    origins = [la.node for la in measured
               if any(t == t_d and la.node in ns for t, ns in starts.values())]
    bad = _unexplained(starts, pairs, near)
    for la in layers:
        if la.spiking and la.node in near:
            la.near_threshold = near[la.node].count
        if any(la.node in ns for _, ns in starts.values()):
            la.divergence_explained = la.node not in bad
    kind = tolerance.spikes
    if kind not in ("exact", "bound", "rounding"):
        raise InputError(f"tolerance spikes={kind!r} is unknown; use 'exact', 'bound' or "
                         "'rounding'")
    reasons: list[str] = []
    status: dict[str, str] = {}
    for la in layers:
        if la.missing is not None:
            status[la.node] = "missing"
        elif not la.spiking:
            status[la.node] = _graded(la, pairs[la.node], tolerance, starts, reasons)
        elif la.first_divergent_step is None:
            status[la.node] = "ok"
        elif kind == "exact":
            status[la.node] = "FAIL"
            reasons.append(f"layer '{la.node}' ({la.op}): {_pct(la.identical)} of entries "
                           f"identical, first divergent step {la.first_divergent_step}; "
                           "tolerance 'exact' wants every spike identical")
        elif kind == "bound":
            status[la.node] = "ok" if la.identical >= tolerance.min_spike_agreement else "below"
        elif la.divergence_explained is None:
            status[la.node] = "after"
        else:
            status[la.node] = "rounding" if la.divergence_explained else "FAIL"
            if not la.divergence_explained:
                reasons.append(f"layer '{la.node}' ({la.op}): {bad[la.node]}")
    if kind == "bound":
        agree = spike_agreement([la for la in layers if la.op != "Output"])
        if agree < tolerance.min_spike_agreement:
            reasons.append(f"spikes identical {_pct(agree)} (mean over the spiking layers) "
                           f"< {_pct(tolerance.min_spike_agreement)}, the tolerance's bound")
    outs = [la.node for la in measured if la.op == "Output"]
    agreement = None
    if len(outs) == 1 and len(_outputs(graph, ref)) == 1:
        a, b = pairs[outs[0]]
        agreement = float((predictions(a) == predictions(b)).mean())
    return Agreement(against, layers, t_d, origins, agreement, not reasons, reasons, status)


def _starts(layers: Sequence[LayerComparison], pairs: Mapping[str, Any],
            ancestors: Mapping[str, set[str]]) -> dict[int, tuple[int, list[str]]]:
    """Per sample that diverges anywhere (samples never interact, so each is judged on
    its own): its earliest divergent step and the layers (of ``layers``, in their order)
    where the divergence starts: divergent then, with no divergent layer upstream in
    that step."""
    firsts: dict[str, np.ndarray] = {}
    steps = 0
    for la in layers:
        if la.first_divergent_step is None:
            continue
        a, b = pairs[la.node]
        d = (a != b).reshape(a.shape[0], a.shape[1], -1).any(axis=2)  # [T, B]
        steps = a.shape[0]
        firsts[la.node] = np.where(d.any(axis=0), d.argmax(axis=0), steps)
    out: dict[int, tuple[int, list[str]]] = {}
    if not firsts:
        return out
    for s in range(len(next(iter(firsts.values())))):
        t = min(int(f[s]) for f in firsts.values())
        if t >= steps:
            continue
        at = {n for n, f in firsts.items() if f[s] == t}
        out[s] = (t, [la.node for la in layers
                      if la.node in at and not ancestors.get(la.node, set()) & at])
    return out


def _unexplained(starts: Mapping[int, tuple[int, list[str]]], pairs: Mapping[str, Any],
                 near: Mapping[str, NearThreshold]) -> dict[str, str]:
    """Per layer where some sample's divergence starts at an entry that is not within
    float rounding of a threshold (or that cannot be analysed): why, in words."""
    bad: dict[str, list[tuple[int, int, int, int]]] = {}
    cannot: dict[str, str] = {}
    for s, (t, nodes) in starts.items():
        for n in nodes:
            analysis = near.get(n)
            if analysis is None or analysis.mask is None:
                cannot.setdefault(n, analysis.reason if analysis is not None else
                                  "it is not a spiking neuron")
                continue
            a, b = pairs[n]
            differs = a[t, s] != b[t, s]
            k = int((differs & ~analysis.mask[t, s]).sum())
            if k:
                bad.setdefault(n, []).append((s, t, k, int(differs.sum())))
    out = {n: (f"the divergence starts here and cannot be told from float rounding "
               f"(first at step {min(t for t, ns in starts.values() if n in ns)}): {why}")
           for n, why in cannot.items()}
    for n, cases in bad.items():
        s, t, k, d = cases[0]
        out[n] = (f"the divergence starts here in {len(cases)} sample(s) at entries not "
                  f"within float rounding of a threshold (first: sample {s}, step {t}: {k} "
                  f"of {d} divergent entries): a genuine difference")
    return out


def _graded(la: LayerComparison, pair: tuple[np.ndarray, np.ndarray], tolerance: Tolerance,
            starts: Mapping[int, tuple[int, list[str]]], reasons: list[str]) -> str:
    """A graded layer's status; its reason appended when it fails. Under ``"rounding"``
    only the steps before each sample's first divergence count (after it the values
    follow spikes that legitimately differ)."""
    a, b = pair
    diff = np.abs(a - b)
    where = ""
    if tolerance.spikes == "rounding" and starts:
        keep = np.ones(diff.shape[:2], dtype=bool)
        for s, (t, _) in starts.items():
            keep[t:, s] = False
        diff = diff[keep]
        where = " before each sample's first spike divergence"
    rel = float(diff.max()) / la.scale if diff.size else 0.0
    if rel <= tolerance.graded_rel:
        return "ok"
    reasons.append(f"layer '{la.node}' ({la.op}): max relative |Δ|{where} {rel:.3g} (of its "
                   f"max |reference| {la.scale:.3g}) > graded_rel {tolerance.graded_rel:g}")
    return "FAIL"


# ------------------------------------------------------------------------------ verify
def _resolve(backends: Sequence[str | Backend] | None) -> list[tuple[str, Backend]]:
    out = []
    for b in (names() if backends is None else backends):
        if isinstance(b, str):
            backend = get(b)  # an unknown name: InputError naming the known ones
            out.append((backend.name, backend))
        elif isinstance(b, Backend):
            out.append((b.name, b))
        else:
            raise InputError(f"backend {b!r} is neither a name ({', '.join(names())}) nor a "
                             "Backend object")
    labels = [n for n, _ in out]
    dup = sorted({n for n in labels if labels.count(n) > 1})
    if dup:
        raise InputError(f"backend(s) {', '.join(dup)} requested twice")
    return out


def _accuracy(res: RunResult, labels: np.ndarray | None) -> float | None:
    if labels is None or isinstance(res.outputs, Mapping):
        return None
    return float((predictions(np.asarray(res.outputs)) == labels).mean())


def verify(graph: nir.NIRGraph, inputs: Any, backends: Sequence[str | Backend] | None = None,
           *, dt: float | None = None, labels: Any = None,
           options: Mapping[str, Mapping[str, Any]] | None = None,
           reference: RunResult | None = None, model: str | None = None) -> Verification:
    """Run ``graph`` on ``inputs`` ``[T, B, ...]`` in every backend of ``backends`` (names
    of :data:`~nirbridge.backends.BACKENDS` or :class:`~nirbridge.backends.Backend`
    objects; default: the whole table) that can run it, and compare each with the float64
    reference per layer (see the module documentation).

    ``dt``: the time step of every run (default the graph's). ``labels``: a class per
    sample (accuracies). ``options``: per backend name, its options (``timeout_s`` for
    Lava ...), given to ``check``, ``reading`` and ``run``. ``reference``: a float64
    reference run of these inputs at this dt with every node recorded, reused instead of
    running it again. ``model``: what the reports call the graph (a file name).
    """
    requested = _resolve(backends)
    options = {k: dict(v) for k, v in (options or {}).items()}
    unknown = sorted(set(options) - {n for n, _ in requested})
    if unknown:
        raise InputError(f"options given for backend(s) not requested: {', '.join(unknown)}")
    x, labels = checked_inputs(inputs, labels)
    dt = graph_dt(graph, dt)
    # the readings see the run's dt even where it came from the caller, not the file
    graph = with_dt(graph, dt)
    flat = flatten_subgraphs(graph)
    ref_backend = get("reference")
    if reference is None:
        reference = ref_backend.run(graph, x, record=True, dt=dt)
    elif reference.info.get("dt") is not None and float(reference.info["dt"]) != dt:
        raise InputError(f"the reference run given ran with dt = {reference.info['dt']}, "
                         f"not dt = {dt}")
    near = near_threshold_layers(flat, reference.records, dt)
    out = Verification(
        steps=int(x.shape[0]), samples=int(x.shape[1]), dt=dt, backends=[],
        could_not_run={}, reference_accuracy=_accuracy(reference, labels),
        near_threshold={n: a.count for n, a in near.items()},
        near_threshold_reasons={n: a.reason for n, a in near.items() if a.reason},
        findings=check(graph, dt, reference.records, where="reference run"), model=model,
        reference=reference)
    for name, backend in requested:
        opts = options.get(name, {})
        row = BackendVerification(name, backend.description, backend.tolerance)
        if backend is ref_backend and not opts:  # the ground truth itself: not run again
            row.ground_truth, row.result = True, reference
            row.agreement = judge(flat, reference, reference, backend.tolerance, near)
            row.accuracy = out.reference_accuracy
            out.backends.append(row)
            continue
        try:
            reasons = list(backend.check(graph, **opts))
        except NirbridgeError as exc:
            reasons = [str(exc).splitlines()[0]]
        if reasons:
            out.could_not_run[name] = reasons
            continue
        log.info("verify: running %s", name)
        t0 = time.perf_counter()
        try:
            reading = backend.reading(graph, **opts)
            res = backend.run(graph, x, record=True, dt=dt, **opts)
        except NirbridgeError as exc:
            row.error = str(exc).splitlines()[0]
            out.backends.append(row)
            continue
        row.seconds = time.perf_counter() - t0
        row.notes, row.result = list(reading.notes), res
        row.agreement = judge(flat, reference, res, backend.tolerance, near)
        row.accuracy = _accuracy(res, labels)
        if reading.graph is not None:
            own_flat = flatten_subgraphs(reading.graph)
            own = ref_backend.run(reading.graph, x, record=True, dt=dt)
            row.own_reading = judge(own_flat, own, res, backend.tolerance,
                                    near_threshold_layers(own_flat, own.records, dt),
                                    against="own reading")
        out.backends.append(row)
    return out


__all__ = ["STATUSES", "Agreement", "BackendVerification", "Verification", "judge", "verify"]
