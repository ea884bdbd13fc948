"""How faithfully one backend runs a graph compared with another, layer by layer
(the pairwise core of :mod:`nirbridge.verify`; its matrix builds on these pieces).

:func:`compare` runs the same inputs through two backends of
:data:`nirbridge.backends.BACKENDS` (by default the float64 ``reference`` and
``lava-float``) and measures, per spiking neuron layer, the spikes of both, the fraction
of identical spikes and the first step where they diverge; for fixed-point runs also what
the quantization clipped and what saturated; for the output, the fraction of identical
values, the largest difference and how often both predict the same class; with labels,
the accuracy of both. It also records the dt both ran with and the sanity findings
(:mod:`nirbridge.sanity`) of the graph at that dt and of run ``a`` (the ground truth): a
diverged or silent reference makes every agreement meaningless. Classification reads the
graph's output summed over time (spike counts or integrated read-out), arg-max over the
last axis (:func:`predictions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.backends import RunResult, get
from nirbridge.errors import InputError
from nirbridge.neurons import is_neuron, spec_of
from nirbridge.passes import graph_dt
from nirbridge.sanity import Finding, check

#: Output values closer than this count as identical.
OUTPUT_TOLERANCE = 1e-9

#: Graded (non-spike) entries whose difference is at most this fraction of the layer's
#: scale (:attr:`LayerComparison.scale`) count as matching in ``identical`` and
#: ``first_divergent_step``: float32 rounding of a value stays far below it (2^-24 per
#: operation), a different computation does not. The verdicts of ``verify`` use
#: ``max_rel_diff`` against each backend's own tolerance instead.
GRADED_MATCH_REL = 1e-5

#: What a layer emits: 0/1 spikes, event counts >= 0 (multi-spike neurons), graded values.
KINDS = ("spike", "count", "graded")


@dataclass
class LayerComparison:
    """Agreement of one layer (a neuron node, or an Output) between backends ``a`` and
    ``b``.

    Spikes and counts (``kind`` ``"spike"``/``"count"``) are compared exactly; graded values
    within :data:`GRADED_MATCH_REL` of ``scale``. ``scale`` is the largest ``|a|`` of the
    layer over every step, sample and neuron (1 where ``a`` is all zero), the denominator
    of ``max_rel_diff``: a relative difference per entry would make every value near zero
    look wrong. ``missing`` names the run(s) that did not record the layer (``"a"``,
    ``"b"`` or ``"both"``); the measured fields are then None.
    """

    node: str
    op: str
    spikes_a: float | None  #: per sample, summed over time (None: graded or missing)
    spikes_b: float | None
    identical: float | None  #: fraction of (step, sample, neuron) entries that match
    first_divergent_step: int | None  #: earliest step with any difference (None: never)
    clipped: int | None = None  #: values the quantization clipped (fixed point)
    saturated: int | None = None  #: state saturations during the run (fixed point)
    kind: str = "spike"  #: one of :data:`KINDS`
    max_abs_diff: float | None = None  #: largest ``|a − b|``
    max_rel_diff: float | None = None  #: ``max_abs_diff / scale``
    scale: float | None = None
    missing: str | None = None
    near_threshold: int | None = None  #: entries of ``a`` within rounding of a threshold
    divergence_explained: bool | None = None  #: first divergence only at such entries

    @property
    def spiking(self) -> bool:
        """The layer emits events (spikes or counts), compared exactly."""
        return self.kind != "graded"


@dataclass
class Comparison:
    """What :func:`compare` measures; ``result_a``/``result_b`` are the two runs."""

    a: str
    b: str
    steps: int
    samples: int
    layers: list[LayerComparison]
    output_identical: float  #: fraction of identical output values (:data:`OUTPUT_TOLERANCE`)
    output_max_abs_diff: float
    prediction_agreement: float  #: fraction of samples with the same predicted class
    accuracy_a: float | None = None
    accuracy_b: float | None = None
    result_a: RunResult | None = field(default=None, repr=False)
    result_b: RunResult | None = field(default=None, repr=False)
    dt: float | None = None  #: the time step both backends ran with
    findings: list[Finding] = field(default_factory=list)  #: sanity of the graph and of ``a``

    @property
    def sound(self) -> bool:
        """No sanity finding: run ``a`` neither diverged nor left a spiking layer silent,
        and no forward-Euler step has dt/τ > 1."""
        return not self.findings

    @property
    def outputs_a(self) -> np.ndarray:
        return self.result_a.output() if self.result_a is not None else np.empty(0)

    @property
    def outputs_b(self) -> np.ndarray:
        return self.result_b.output() if self.result_b is not None else np.empty(0)

    @property
    def accuracy_drop(self) -> float | None:
        """Accuracy of ``a`` minus that of ``b`` (None without labels)."""
        if self.accuracy_a is None or self.accuracy_b is None:
            return None
        return self.accuracy_a - self.accuracy_b

    @property
    def spike_agreement(self) -> float:
        """Mean fraction of identical spikes over the spiking layers (1 without any)."""
        return spike_agreement(self.layers)

    @property
    def quantization(self) -> list[dict[str, Any]] | None:
        """The quantization report of the fixed-point run (``b``'s, else ``a``'s)."""
        for res in (self.result_b, self.result_a):
            if res is not None and res.info.get("quantization"):
                return res.info["quantization"]
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: every field but the runs, plus the derived numbers."""
        d = {k: v for k, v in asdict(self).items() if k not in ("result_a", "result_b")}
        d["accuracy_drop"] = self.accuracy_drop
        d["spike_agreement"] = self.spike_agreement
        d["sound"] = self.sound
        return d


def spike_agreement(layers: list[LayerComparison]) -> float:
    """Mean fraction of identical entries over the measured spiking layers (1 without
    any): the number a ``"bound"`` tolerance holds."""
    values = [la.identical for la in layers if la.spiking and la.identical is not None]
    return float(np.mean(values)) if values else 1.0


def predictions(out: np.ndarray) -> np.ndarray:
    """Class per sample: arg-max of the output summed over time."""
    return np.asarray(out).sum(axis=0).reshape(out.shape[1], -1).argmax(axis=1)


def first_divergent_step(a: np.ndarray, b: np.ndarray) -> int | None:
    """The first step (axis 0) where ``a`` and ``b`` differ anywhere (None: never)."""
    diff = (a != b).reshape(a.shape[0], -1).any(axis=1)
    idx = np.flatnonzero(diff)
    return int(idx[0]) if idx.size else None


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def layer_kind(node: nir.NIRNode) -> str:
    """What a neuron node emits (one of :data:`KINDS`), from its registry entry."""
    spec = spec_of(node)
    if spec is None or not spec.spiking:
        return "graded"
    return "spike" if spec.binary(node) else "count"


def compare_values(node: str, op: str, kind: str, a: Any, b: Any) -> LayerComparison:
    """Compare one layer's outputs ``a`` and ``b`` (``[T, B, ...]``) as ``kind`` emits
    them (see :class:`LayerComparison`)."""
    a = _numpy(a).astype(np.float64, copy=False)
    b = _numpy(b).astype(np.float64, copy=False)
    if a.shape != b.shape:
        raise InputError(f"layer '{node}': the runs have shapes {a.shape} and {b.shape}")
    diff = np.abs(a - b)
    peak = float(np.abs(a).max()) if a.size else 0.0
    scale = peak if peak > 0 else 1.0
    max_abs = float(diff.max()) if diff.size else 0.0
    batch = a.shape[1]
    if kind == "graded":
        differs = diff > GRADED_MATCH_REL * scale
        spikes_a = spikes_b = None
    else:
        differs = a != b
        spikes_a, spikes_b = float((a != 0).sum()) / batch, float((b != 0).sum()) / batch
    steps = np.flatnonzero(differs.reshape(a.shape[0], -1).any(axis=1))
    return LayerComparison(
        node=node, op=op, spikes_a=spikes_a, spikes_b=spikes_b,
        identical=float(1.0 - differs.mean()) if differs.size else 1.0,
        first_divergent_step=int(steps[0]) if steps.size else None, kind=kind,
        max_abs_diff=max_abs, max_rel_diff=max_abs / scale, scale=scale)


def compare_layers(graph: nir.NIRGraph, records_a: Mapping[str, Any],
                   records_b: Mapping[str, Any], *, graded: bool = False,
                   missing: bool = False) -> list[LayerComparison]:
    """Per spiking neuron layer recorded by both, in the graph's node order: spikes of
    each (per sample), identical fraction, first divergent step, largest difference.

    ``graded``: also the graded neuron layers (LI, I, CubaLI ...). ``missing``: also the
    layers one run did not record, with :attr:`LayerComparison.missing` set (otherwise
    they are left out)."""
    layers = []
    for name, node in graph.nodes.items():
        kind = layer_kind(node) if is_neuron(node) else None
        if kind is None or (kind == "graded" and not graded):
            continue
        rec_a, rec_b = records_a.get(name), records_b.get(name)
        has_a = rec_a is not None and rec_a.output is not None
        has_b = rec_b is not None and rec_b.output is not None
        if has_a and has_b:
            layers.append(compare_values(name, type(node).__name__, kind, rec_a.output,
                                         rec_b.output))
        elif missing:
            who = "both" if not (has_a or has_b) else "a" if not has_a else "b"
            layers.append(LayerComparison(name, type(node).__name__, None, None, None, None,
                                          kind=kind, missing=who))
    return layers


def _add_quantization(layers: list[LayerComparison],
                      quant: list[dict[str, Any]] | None) -> None:
    if not quant:
        return
    by_node = {q.get("node"): q for q in quant}
    for la in layers:
        q = by_node.get(la.node, {})
        la.clipped = q.get("clipped")
        la.saturated = q.get("saturated")


def checked_inputs(inputs: Any, labels: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs ``[T, B, ...]`` as float64 numpy and labels as one class per sample, or an
    ``InputError`` saying what is wrong."""
    x = _numpy(inputs).astype(np.float64, copy=False)
    if x.ndim < 3:
        raise InputError(f"inputs have shape {x.shape}; expected [T, B, ...]")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != x.shape[1]:
            raise InputError(f"{labels.shape[0]} labels for {x.shape[1]} samples")
    return x, labels


def compare(graph: nir.NIRGraph, inputs: Any, a: str = "reference", b: str = "lava-float",
            *, labels: np.ndarray | None = None, options_a: Mapping[str, Any] | None = None,
            options_b: Mapping[str, Any] | None = None, dt: float | None = None,
            result_a: RunResult | None = None) -> Comparison:
    """Run ``graph`` on ``inputs`` ``[T, B, ...]`` in backends ``a`` and ``b`` (names in
    :data:`~nirbridge.backends.BACKENDS`) and compare them layer by layer.

    ``options_a``/``options_b``: each backend's options (``timeout_s`` for Lava,
    ``target`` for the fixed-point ones ...). ``result_a``: a run of ``a`` already made
    on these inputs with every node recorded (it is not run again). ``labels``: one
    class per sample, for the accuracies. ``dt``: the time step (default: the graph's,
    :func:`nirbridge.passes.graph_dt`). The graph must have one Output node.
    """
    backend_a, backend_b = get(a), get(b)
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(outputs) > 1:
        raise InputError(f"compare() needs a graph with one Output node (it has "
                         f"{', '.join(outputs)})")
    x, labels = checked_inputs(inputs, labels)
    dt = graph_dt(graph, dt)
    if result_a is None:
        result_a = backend_a.run(graph, x, record=True, dt=dt, **dict(options_a or {}))
    elif result_a.info.get("dt") is not None and float(result_a.info["dt"]) != dt:
        raise InputError(f"result_a ran with dt = {result_a.info['dt']}, not dt = {dt}")
    result_b = backend_b.run(graph, x, record=True, dt=dt, **dict(options_b or {}))
    out_a, out_b = result_a.output(), result_b.output()
    layers = compare_layers(graph, result_a.records, result_b.records)
    cmp = Comparison(
        a=a, b=b, steps=int(x.shape[0]), samples=int(x.shape[1]), layers=layers,
        output_identical=float((np.abs(out_a - out_b) <= OUTPUT_TOLERANCE).mean()),
        output_max_abs_diff=float(np.abs(out_a - out_b).max()) if out_a.size else 0.0,
        prediction_agreement=float((predictions(out_a) == predictions(out_b)).mean()),
        result_a=result_a, result_b=result_b, dt=dt,
        findings=check(graph, dt, result_a.records, where=f"{a} run"),
    )
    _add_quantization(layers, cmp.quantization)
    if labels is not None:
        cmp.accuracy_a = float((predictions(out_a) == labels).mean())
        cmp.accuracy_b = float((predictions(out_b) == labels).mean())
    return cmp


__all__ = ["GRADED_MATCH_REL", "KINDS", "OUTPUT_TOLERANCE", "Comparison", "LayerComparison",
           "compare", "compare_layers", "compare_values", "first_divergent_step", "layer_kind",
           "predictions", "spike_agreement"]
