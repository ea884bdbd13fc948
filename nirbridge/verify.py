"""How faithfully one backend runs a graph compared with another, layer by layer.

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
from nirbridge.neurons import is_neuron
from nirbridge.passes import graph_dt
from nirbridge.profile.spiking import is_spiking
from nirbridge.sanity import Finding, check

#: Output values closer than this count as identical.
OUTPUT_TOLERANCE = 1e-9


@dataclass
class LayerComparison:
    """Agreement of one spiking neuron layer between backends ``a`` and ``b``."""

    node: str
    op: str
    spikes_a: float  #: per sample, summed over time
    spikes_b: float
    identical: float  #: fraction of (step, sample, neuron) entries that are equal
    first_divergent_step: int | None  #: earliest step with any difference (None: never)
    clipped: int | None = None  #: values the quantization clipped (fixed point)
    saturated: int | None = None  #: state saturations during the run (fixed point)


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
        if not self.layers:
            return 1.0
        return float(np.mean([la.identical for la in self.layers]))

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


def compare_layers(graph: nir.NIRGraph, records_a: Mapping[str, Any],
                   records_b: Mapping[str, Any]) -> list[LayerComparison]:
    """Per spiking neuron layer recorded by both: spikes of each (per sample), identical
    fraction, first divergent step."""
    layers = []
    for name, node in graph.nodes.items():
        if not (is_neuron(node) and is_spiking(node)) or name not in records_a \
                or name not in records_b:
            continue
        a = _numpy(records_a[name].output)
        b = _numpy(records_b[name].output)
        batch = a.shape[1]
        layers.append(LayerComparison(
            node=name, op=type(node).__name__,
            spikes_a=float((a != 0).sum()) / batch, spikes_b=float((b != 0).sum()) / batch,
            identical=float((a == b).mean()), first_divergent_step=first_divergent_step(a, b),
        ))
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
    x = _numpy(inputs).astype(np.float64, copy=False)
    if x.ndim < 3:
        raise InputError(f"inputs have shape {x.shape}; expected [T, B, ...]")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != x.shape[1]:
            raise InputError(f"{labels.shape[0]} labels for {x.shape[1]} samples")
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


__all__ = ["OUTPUT_TOLERANCE", "Comparison", "LayerComparison", "compare", "compare_layers",
           "first_divergent_step", "predictions"]
