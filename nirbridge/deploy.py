"""Deploy a NIR graph to Loihi 2 simulation (Lava) and measure how faithfully it runs.

:func:`deploy_graph` compares the float64 ``reference`` with Lava (``lava-float``, or the
bit-accurate ``lava-fixed``) on the same inputs through :func:`nirbridge.verify.compare`:
per layer the spike counts, the fraction of identical spikes, the first step where they
diverge, and (fixed point) what the quantization clipped and what saturated during the
run. With labels it also reports the task accuracy of both. Classification reads the
graph's output summed over time (spike counts or integrated read-out), arg-max over the
last axis. This module keeps the deployment's own report (:class:`DeployResult`, its
JSON fields and :func:`format_deploy`'s table) and the CLI's input handling.

A deployment needs a dt: the graph's ``metadata["dt"]`` or ``dt=`` (a file without one is
refused, naming the frameworks' conventions: :func:`nirbridge.passes.resolve_dt`). The
result records it, and the sanity findings of the graph at that dt and of the reference
run (:mod:`nirbridge.sanity`): a deployment with findings is not :attr:`~DeployResult.sound`
and the CLI exits with code 3 instead of reporting agreement with a diverged or silent
reference as a success.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import nir
import numpy as np

from nirbridge.backends import RunResult
from nirbridge.backends.fixed import GRADED_INPUT_FRAC_BITS, input_quant_config
from nirbridge.backends.inputs import check_allocation
from nirbridge.errors import InputError
from nirbridge.passes import resolve_dt
from nirbridge.sanity import check_time_step, refuse
from nirbridge.textfmt import text_table
from nirbridge.verify import Comparison, LayerComparison, compare, predictions
from nirbridge.verify import compare_layers as _compare_layers

log = logging.getLogger(__name__)

MODES = ("floating_pt", "fixed_pt")
#: The Lava backend of each mode.
BACKEND_OF_MODE = {"floating_pt": "lava-float", "fixed_pt": "lava-fixed"}


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
    dt: float | None = None  #: the time step of both runs
    dt_source: str | None = None  #: where it came from (``dt=``, the file's metadata ...)
    findings: list[dict[str, Any]] = field(default_factory=list)  #: :mod:`nirbridge.sanity`

    @property
    def sound(self) -> bool:
        """No sanity finding: the reference neither diverged nor left a spiking layer
        silent, and no forward-Euler step has dt/τ > 1."""
        return not self.findings

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
        d["sound"] = self.sound
        return d

    @classmethod
    def from_comparison(cls, cmp: Comparison, mode: str, target: str) -> DeployResult:
        """The deployment report of a reference (``a``) vs Lava (``b``) comparison."""
        return cls(
            mode=mode, target=target, steps=cmp.steps, samples=cmp.samples,
            layers=[_agreement(la) for la in cmp.layers],
            output_identical=cmp.output_identical,
            output_max_abs_diff=cmp.output_max_abs_diff,
            prediction_agreement=cmp.prediction_agreement,
            reference_accuracy=cmp.accuracy_a, lava_accuracy=cmp.accuracy_b,
            lava_seconds=dict(cmp.result_b.info.get("seconds", {})) if cmp.result_b else {},
            quantization=cmp.result_b.info.get("quantization") if cmp.result_b else None,
            outputs_reference=cmp.outputs_a, outputs_lava=cmp.outputs_b, dt=cmp.dt,
            findings=[f.to_dict() for f in cmp.findings],
        )


def _agreement(la: LayerComparison) -> LayerAgreement:
    return LayerAgreement(node=la.node, op=la.op, reference_spikes=la.spikes_a,
                          lava_spikes=la.spikes_b, identical=la.identical,
                          first_divergent_step=la.first_divergent_step, clipped=la.clipped,
                          saturated=la.saturated)


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
        check_allocation(steps * x.nbytes, f"--steps {steps} (the input repeated {steps} "
                                           "times)")
        return np.repeat(x, steps, axis=0)
    raise InputError(f"--steps {steps} exceeds the input's {x.shape[0]} steps; give a "
                     "single-step input to repeat it, or more steps")


def compare_layers(graph: nir.NIRGraph, ref: dict[str, Any], lava: dict[str, Any]
                   ) -> list[LayerAgreement]:
    """Per spiking layer: spikes of both runs, identical fraction, first divergent step
    (:func:`nirbridge.verify.compare_layers` under the deployment's field names)."""
    return [_agreement(la) for la in _compare_layers(graph, ref, lava)]


def deploy_graph(graph: nir.NIRGraph, inputs: np.ndarray, *, mode: str = "floating_pt",
                 target: str = "loihi2", labels: np.ndarray | None = None,
                 steps: int | None = None, timeout_s: float = 600.0,
                 progress: bool | None = None,
                 reference: RunResult | None = None, dt: float | None = None,
                 strict: bool = False, workers: int | None = None,
                 cluster: str | None = None,
                 calibration: np.ndarray | None = None) -> DeployResult:
    """Run ``graph`` in the reference and in Lava (``mode``) and compare them.

    In fixed_pt the ``target``'s quantization is used with the input format fitted to
    the inputs (:func:`~nirbridge.backends.fixed.input_quant_config`). ``reference``: a
    reference run of these inputs (after ``steps``) with every node recorded, to reuse.
    ``dt``: the time step (default the graph's ``metadata["dt"]``; a graph without one is
    refused with :class:`InputError`). ``strict``: refuse a forward-Euler step with
    dt/τ > 1 (:func:`nirbridge.sanity.refuse`) instead of reporting it. ``workers``,
    ``cluster``: the Lava backend's options of those names, passed only when given.
    ``calibration``: inputs ``[T, B, ...]`` to choose each layer's mantissas on
    (:func:`nirbridge.quantize.calibrate.calibrate`, fixed_pt only; the input format is
    still fitted to ``inputs``, which Lava runs); the report's quantization rows then
    hold each layer's calibration figures.
    """
    if mode not in MODES:
        raise InputError(f"mode {mode!r} is unknown; use one of {MODES}")
    step = resolve_dt(graph, dt, require=True)
    if strict:
        refuse(check_time_step(graph, step.dt), "strict=True")
    x = prepare_inputs(inputs, steps)
    if sum(isinstance(n, nir.Output) for n in graph.nodes.values()) > 1:
        raise InputError("deploy compares graphs with one Output node")
    options: dict[str, Any] = dict(timeout_s=timeout_s, progress=progress)
    options.update({k: v for k, v in (("workers", workers), ("cluster", cluster))
                    if v is not None})
    if calibration is not None and mode != "fixed_pt":
        raise InputError("calibration chooses the fixed-point mantissas: it needs "
                         "mode='fixed_pt'")
    if mode == "fixed_pt" and calibration is not None:
        from nirbridge.quantize.calibrate import calibrate

        options["quant"] = calibrate(graph, calibration, input_quant_config(target, x),
                                     dt=step.dt)
    elif mode == "fixed_pt":
        options["target"] = target
    cmp = compare(graph, x, "reference", BACKEND_OF_MODE[mode], labels=labels,
                  options_b=options, result_a=reference, dt=step.dt)
    result = DeployResult.from_comparison(cmp, mode, target)
    result.dt_source = step.source
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
    dt = "" if result.dt is None else f", dt = {result.dt:g}"
    lines = [f"Lava {result.mode} on {result.target} simulation: {result.samples} samples, "
             f"T = {result.steps}{dt} (spikes per sample)", text_table(rows)]
    lines.append(f"output: {100 * result.output_identical:.3f}% identical values, max |Δ| "
                 f"{result.output_max_abs_diff:.3g}; same prediction for "
                 f"{100 * result.prediction_agreement:.2f}% of samples")
    if result.reference_accuracy is not None:
        lines.append(f"accuracy: reference {100 * result.reference_accuracy:.2f}%, Lava "
                     f"{100 * result.lava_accuracy:.2f}% (drop "
                     f"{100 * result.accuracy_drop:.2f} points)")
    for q in result.quantization or ():
        cal = q.get("calibration")
        if cal and cal["after"].get("spike_agreement") is not None:
            from nirbridge.quantize.report import calibration_text

            lines.append(f"calibrated {q['node']} on {cal['samples']} samples: "
                         f"{calibration_text(cal)} on the calibration inputs")
    lines += [f"warning: {f['message']}" for f in result.findings]
    if not result.sound:
        lines.append(f"NOT a sound deployment: {len(result.findings)} sanity finding(s) "
                     "above; agreement with an unstable, diverged or silent reference "
                     "proves nothing")
    return "\n".join(lines)


__all__ = ["BACKEND_OF_MODE", "GRADED_INPUT_FRAC_BITS", "MODES", "DeployResult", "LayerAgreement",
           "compare_layers", "deploy_graph", "format_deploy", "input_quant_config",
           "predictions", "prepare_inputs"]
