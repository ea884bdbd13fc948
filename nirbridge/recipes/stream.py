"""The streamed stages of a recipe: every sample of the data set, a batch at a time,
through the torch model, the float64 reference and the fixed-point emulator (the
``fixed`` backend), with the event counts and the sanity checks of the reference
(:func:`stream_stages`); and the confirmation of the emulator's integers on Lava fixed_pt
for the first samples (:func:`lava_identical`).

Nothing holds the whole data set: each batch is dropped once its predictions, output
differences, per-layer agreements and event counts are tallied. The first
``lava_samples`` samples are kept for the Lava stages.

The fixed-point quantization is chosen once, from the first batch (its input format:
integer inputs stay integers, graded ones get 8 fractional bits; the range estimate from
its largest value, at least 1), and every batch and the Lava runs use that same
:class:`~nirbridge.quantize.QuantizedGraph`: a later batch with larger inputs saturates
(counted in the quantization report) rather than being quantized differently.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nirbridge.errors import InputError


@dataclass
class LayerTally:
    """One spiking layer's agreement, fixed point vs reference, summed over batches."""

    node: str
    op: str
    entries: int = 0
    identical: int = 0
    spikes_a: float = 0.0  #: summed over samples
    spikes_b: float = 0.0
    first_divergent_step: int | None = None

    def add(self, la: Any, batch: int, size: int) -> None:
        self.entries += size
        self.identical += int(round(la.identical * size))
        self.spikes_a += (la.spikes_a or 0.0) * batch
        self.spikes_b += (la.spikes_b or 0.0) * batch
        if la.first_divergent_step is not None:
            self.first_divergent_step = min(la.first_divergent_step,
                                            self.first_divergent_step or la.first_divergent_step)


@dataclass
class StreamResult:
    """What the streamed stages measured over ``n`` samples."""

    n: int
    labels: np.ndarray
    torch_pred: np.ndarray | None
    reference_pred: np.ndarray
    fixed_pred: np.ndarray | None
    torch_diff: float | None
    counts: Any
    findings: list[Any]
    first_records: dict[str, Any]
    fixed_layers: list[LayerTally] = field(default_factory=list)
    quant: Any = None  #: the QuantizedGraph of every fixed-point run
    saturated: int = 0  #: fixed-point saturation events over every sample
    seconds: dict[str, float] = field(default_factory=dict)
    lava_x: np.ndarray | None = None  #: the first samples, kept for Lava
    lava_labels: np.ndarray | None = None

    @property
    def fixed_spike_agreement(self) -> float | None:
        """Mean over spiking layers of the fraction of identical entries (1 without any)."""
        if self.fixed_pred is None:
            return None
        vals = [t.identical / t.entries for t in self.fixed_layers if t.entries]
        return float(np.mean(vals)) if vals else 1.0


def _merge_findings(per_batch: list[list[Any]]) -> list[Any]:
    """Findings of every batch, one per (kind, node); a silent layer only when it is silent
    in every batch (it spikes in the data set if it spikes in any batch)."""
    out: dict[tuple[str, str], Any] = {}
    for fs in per_batch:
        for f in fs:
            out.setdefault((f.kind, f.node), f)
    return [f for key, f in out.items() if f.kind != "silent" or all(
        any((g.kind, g.node) == key for g in fs) for fs in per_batch)]


def stream_stages(graph: Any, batches: Iterator[tuple[np.ndarray, np.ndarray]], *,
                  n: int, dt: float, model: Any = None, fixed: bool = True,
                  target: str = "loihi2", spike_inputs: bool = False, lava_n: int = 0,
                  progress: bool | None = None, calibration: np.ndarray | None = None
                  ) -> StreamResult:
    """Run every batch through ``model`` (a torch module, or None), the reference (every
    node recorded: counts, sanity) and, with ``fixed``, the emulator; keep the first
    ``lava_n`` samples. ``n``: the number of samples the batches hold (the bar's total).
    ``calibration``: inputs ``[T, B, ...]`` the fixed-point mantissas are calibrated on
    (:func:`nirbridge.quantize.calibrate.calibrate`; None: the plain rule)."""
    import torch
    from tqdm import tqdm

    from nirbridge.backends import get
    from nirbridge.backends.fixed import input_quant_config, quantized_for
    from nirbridge.neurons import run_steps
    from nirbridge.profile import count_events, merge_counts
    from nirbridge.quantize.calibrate import calibrate
    from nirbridge.sanity import check
    from nirbridge.verify import compare_layers, predictions

    ref_backend, fixed_backend = get("reference"), get("fixed")
    torch_model = None if model is None else copy.deepcopy(model).double()
    labels, tp, rp, fp, counts, findings = [], [], [], [], [], []
    tallies: dict[str, LayerTally] = {}
    seconds = {"torch": 0.0, "reference": 0.0, "emulator": 0.0, "counting": 0.0}
    torch_diff: float | None = None if model is None else 0.0
    quant, first_records, saturated = None, {}, 0
    kept_x: list[np.ndarray] = []
    kept = 0
    with tqdm(total=n, unit="sample", desc="reference + emulator", leave=False,
              disable=None if progress is None else not progress) as bar:
        for x, y in batches:
            b = int(x.shape[1])
            labels.append(y)
            t0 = time.perf_counter()
            ref = ref_backend.run(graph, x, record=True, dt=dt)
            out = ref.output()
            rp.append(predictions(out))
            t1 = time.perf_counter()
            seconds["reference"] += t1 - t0
            if torch_model is not None:
                with torch.no_grad():
                    t_out = run_steps(torch_model, torch.from_numpy(x)).numpy()
                tp.append(predictions(t_out))
                torch_diff = max(torch_diff or 0.0, float(np.abs(out - t_out).max()))
                seconds["torch"] += time.perf_counter() - t1
            t2 = time.perf_counter()
            counts.append(count_events(graph, ref.records, spike_inputs=spike_inputs))
            findings.append(check(graph, dt, ref.records))
            if not first_records:
                first_records = ref.records
            seconds["counting"] += time.perf_counter() - t2
            if fixed:
                t3 = time.perf_counter()
                if quant is None and calibration is not None:
                    quant = calibrate(graph, calibration, input_quant_config(target, x),
                                      dt=dt)
                    seconds["calibration"] = time.perf_counter() - t3
                    t3 = time.perf_counter()
                elif quant is None:
                    quant = quantized_for(graph, x, target=target, dt=dt)
                fx = fixed_backend.run(graph, x, record=True, dt=dt, quant=quant)
                fp.append(predictions(fx.output()))
                saturated += sum(sum(v.values()) for v in fx.info["saturations"].values())
                for la in compare_layers(graph, ref.records, fx.records):
                    size = int(np.prod(ref.records[la.node].output.shape))
                    tallies.setdefault(la.node, LayerTally(la.node, la.op)).add(la, b, size)
                seconds["emulator"] += time.perf_counter() - t3
            if kept < lava_n:
                take = min(b, lava_n - kept)
                kept_x.append(x[:, :take])
                kept += take
            bar.update(b)
    if not labels:
        raise InputError("the data set gave no samples")
    all_labels = np.concatenate(labels)
    return StreamResult(
        n=int(all_labels.shape[0]), labels=all_labels,
        torch_pred=np.concatenate(tp) if tp else None, reference_pred=np.concatenate(rp),
        fixed_pred=np.concatenate(fp) if fp else None, torch_diff=torch_diff,
        counts=merge_counts(counts), findings=_merge_findings(findings),
        first_records=first_records, fixed_layers=list(tallies.values()), quant=quant,
        saturated=saturated, seconds=seconds,
        lava_x=np.concatenate(kept_x, axis=1) if kept_x else None,
        lava_labels=all_labels[:kept] if kept else None)


def identical_samples(a: Any, b: Any) -> np.ndarray:
    """Per sample: whether two fixed-point runs (``RunResult`` of ``fixed`` and
    ``lava-fixed``, every node recorded) hold the same integers at every node and field
    both recorded, and the same outputs."""
    ra, rb = a.info.get("fixed_records") or {}, b.info.get("fixed_records") or {}
    out_a, out_b = a.output(), b.output()
    ok = (out_a == out_b).reshape(out_a.shape[0], out_a.shape[1], -1).all(axis=(0, 2))
    for node in ra.keys() & rb.keys():
        fa, fb = ra[node], rb[node]
        pairs = [(fa.output, fb.output), (fa.input, fb.input)]
        pairs += [(fa.states[k], fb.states[k]) for k in fa.states.keys() & fb.states.keys()]
        for va, vb in pairs:
            if va is None or vb is None:
                continue
            if va.shape != vb.shape:
                return np.zeros_like(ok)
            ok &= (va == vb).reshape(va.shape[0], va.shape[1], -1).all(axis=(0, 2))
    return ok


__all__ = ["LayerTally", "StreamResult", "identical_samples", "stream_stages"]
