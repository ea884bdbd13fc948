"""Deploy a NIR graph to Loihi 2 simulation (Lava) and measure how faithfully it runs.

:func:`deploy_graph` runs the float64 reference and the Lava backend (floating_pt, or
bit-accurate fixed_pt) on the same inputs, and compares them layer by layer: spike counts,
the fraction of identical spikes, the first step where they diverge, and (fixed point)
what the quantization clipped and what saturated during the run. With labels it also
reports the task accuracy of both. Classification reads the graph's output summed over
time (spike counts or integrated read-out), arg-max over the last axis.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.backends.reference import run_reference
from nirbridge.errors import InputError
from nirbridge.nodes import is_neuron
from nirbridge.profile import is_spiking

log = logging.getLogger(__name__)

MODES = ("floating_pt", "fixed_pt")


@dataclass
class LayerAgreement:
    """Agreement of one neuron layer between the reference and Lava."""

    node: str
    op: str
    reference_spikes: float  #: per sample, summed over time
    lava_spikes: float
    identical: float  #: fraction of (step, sample, neuron) entries that are equal
    first_divergent_step: int | None  #: earliest step with any difference (None: never)
    clipped: int | None = None  #: values the quantization clipped (fixed point)
    saturated: int | None = None  #: state saturations during the run (fixed point)


@dataclass
class DeployResult:
    """Everything ``nirbridge deploy`` prints and writes."""

    mode: str
    target: str
    steps: int
    samples: int
    layers: list[LayerAgreement]
    output_identical: float  #: fraction of identical output values (tolerance 1e-9)
    output_max_abs_diff: float
    prediction_agreement: float  #: fraction of samples with the same predicted class
    reference_accuracy: float | None = None
    lava_accuracy: float | None = None
    lava_seconds: dict[str, float] = field(default_factory=dict)
    quantization: list[dict[str, Any]] | None = None
    outputs_reference: np.ndarray | None = None
    outputs_lava: np.ndarray | None = None

    @property
    def accuracy_drop(self) -> float | None:
        if self.reference_accuracy is None or self.lava_accuracy is None:
            return None
        return self.reference_accuracy - self.lava_accuracy

    @property
    def spike_agreement(self) -> float:
        """Identical spikes over every neuron layer, weighted by layer size."""
        if not self.layers:
            return 1.0
        return float(np.mean([la.identical for la in self.layers]))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("outputs_reference")
        d.pop("outputs_lava")
        d["accuracy_drop"] = self.accuracy_drop
        d["spike_agreement"] = self.spike_agreement
        return d


def prepare_inputs(x: np.ndarray, steps: int | None) -> np.ndarray:
    """``[T, B, ...]`` inputs with ``steps`` steps: truncated, or a single step repeated
    (direct encoding of a static input)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 3:
        raise InputError(f"inputs have shape {x.shape}; expected [T, B, ...]")
    if not np.isfinite(x).all():
        raise InputError("inputs contain NaN or inf")
    if steps is None or steps == x.shape[0]:
        return x
    if steps < 1:
        raise InputError(f"--steps {steps} must be at least 1")
    if steps < x.shape[0]:
        return x[:steps]
    if x.shape[0] == 1:
        return np.repeat(x, steps, axis=0)
    raise InputError(f"--steps {steps} exceeds the input's {x.shape[0]} steps; give a "
                     "single-step input to repeat it, or more steps")


def predictions(out: np.ndarray) -> np.ndarray:
    """Class per sample: arg-max of the output summed over time."""
    return np.asarray(out).sum(axis=0).reshape(out.shape[1], -1).argmax(axis=1)


def _first_divergent(a: np.ndarray, b: np.ndarray) -> int | None:
    diff = (a != b).reshape(a.shape[0], -1).any(axis=1)
    idx = np.flatnonzero(diff)
    return int(idx[0]) if idx.size else None


def compare_layers(graph: nir.NIRGraph, ref: dict[str, Any], lava: dict[str, Any]
                   ) -> list[LayerAgreement]:
    """Per spiking layer: spikes of both runs, identical fraction, first divergent step."""
    layers = []
    for name, node in graph.nodes.items():
        if not (is_neuron(node) and is_spiking(node)) or name not in ref or name not in lava:
            continue
        a = ref[name].output.numpy() if torch.is_tensor(ref[name].output) else ref[name].output
        b = lava[name].output
        b = b.numpy() if torch.is_tensor(b) else np.asarray(b)
        batch = a.shape[1]
        layers.append(LayerAgreement(
            node=name, op=type(node).__name__,
            reference_spikes=float((a != 0).sum()) / batch,
            lava_spikes=float((b != 0).sum()) / batch,
            identical=float((a == b).mean()),
            first_divergent_step=_first_divergent(a, b),
        ))
    return layers


#: Fractional bits given to real-valued (graded) network inputs in fixed point: the
#: payload of a Loihi 2 graded spike is wide enough, and 8 bits represent the digits'
#: 1/16 grey levels exactly.
GRADED_INPUT_FRAC_BITS = 8


def input_quant_config(target: Any, x: np.ndarray) -> Any:
    """The target's quantization settings with an input format fitted to ``x``: integer
    inputs (spikes, counts) stay integers; real-valued inputs get
    :data:`GRADED_INPUT_FRAC_BITS` fractional bits."""
    from nirbridge.quantize import QuantConfig

    graded = not np.array_equal(x, np.round(x))
    return QuantConfig.from_profile(
        target, input_frac_bits=GRADED_INPUT_FRAC_BITS if graded else 0,
        input_max=float(max(1.0, np.abs(x).max())))


def deploy_graph(graph: nir.NIRGraph, inputs: np.ndarray, *, mode: str = "floating_pt",
                 target: str = "loihi2", labels: np.ndarray | None = None,
                 steps: int | None = None, timeout_s: float = 600.0,
                 progress: bool | None = None) -> DeployResult:
    """Run ``graph`` in the reference and in Lava (``mode``) and compare them."""
    from nirbridge.backends.lava import run_lava

    if mode not in MODES:
        raise InputError(f"mode {mode!r} is unknown; use one of {MODES}")
    x = prepare_inputs(inputs, steps)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != x.shape[1]:
            raise InputError(f"{labels.shape[0]} labels for {x.shape[1]} samples")
    ref_out, ref_records = run_reference(graph, torch.from_numpy(x), record=True)
    options: dict[str, Any] = {}
    if mode == "fixed_pt":
        options["quant"] = input_quant_config(target, x)
    res = run_lava(graph, x, mode, timeout_s=timeout_s, record=True, progress=progress,
                   **options)
    if isinstance(ref_out, dict) or isinstance(res.outputs, dict):
        raise InputError("deploy compares graphs with one Output node")
    a = ref_out.numpy()
    b = res.outputs.numpy() if torch.is_tensor(res.outputs) else np.asarray(res.outputs)
    layers = compare_layers(graph, ref_records, res.records or {})
    quant = getattr(res, "quantization", None)
    if quant:
        by_node = {q.get("node"): q for q in quant}
        for la in layers:
            q = by_node.get(la.node, {})
            la.clipped = q.get("clipped")
            la.saturated = q.get("saturated")
    pa, pb = predictions(a), predictions(b)
    result = DeployResult(
        mode=mode, target=target, steps=int(x.shape[0]), samples=int(x.shape[1]),
        layers=layers, output_identical=float((np.abs(a - b) <= 1e-9).mean()),
        output_max_abs_diff=float(np.abs(a - b).max()) if a.size else 0.0,
        prediction_agreement=float((pa == pb).mean()), lava_seconds=dict(res.seconds),
        quantization=quant, outputs_reference=a, outputs_lava=b,
    )
    if labels is not None:
        result.reference_accuracy = float((pa == labels).mean())
        result.lava_accuracy = float((pb == labels).mean())
    return result


def format_deploy(result: DeployResult) -> str:
    """The terminal table of a deployment."""
    header = ("layer", "type", "spikes ref", "spikes lava", "identical", "first diff",
              "clipped", "saturated")
    rows = [header]
    for la in result.layers:
        rows.append((la.node, la.op, f"{la.reference_spikes:.1f}", f"{la.lava_spikes:.1f}",
                     f"{100 * la.identical:.3f}%",
                     "-" if la.first_divergent_step is None else str(la.first_divergent_step),
                     "-" if la.clipped is None else str(la.clipped),
                     "-" if la.saturated is None else str(la.saturated)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"Lava {result.mode} on {result.target} simulation: {result.samples} samples, "
             f"T = {result.steps} (spikes per sample)"]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"output: {100 * result.output_identical:.3f}% identical values, max |Δ| "
                 f"{result.output_max_abs_diff:.3g}; same prediction for "
                 f"{100 * result.prediction_agreement:.2f}% of samples")
    if result.reference_accuracy is not None:
        lines.append(f"accuracy: reference {100 * result.reference_accuracy:.2f}%, Lava "
                     f"{100 * result.lava_accuracy:.2f}% (drop "
                     f"{100 * result.accuracy_drop:.2f} points)")
    return "\n".join(lines)
