"""Recipe reports: the JSON document (the profiling report with the deployment under
``meta``) and the HTML or Markdown page with its plots (:func:`write_recipe_reports`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nirbridge.recipes.execute import RecipeRun
from nirbridge.recipes.schema import format_value
from nirbridge.recipes.tables import stage_rows


def build_recipe_report(run: RecipeRun) -> dict[str, Any]:
    """The JSON document: the profiling report (:data:`nirbridge.report.REPORT_SCHEMA`)
    of the reference run, with the recipe, the stage metrics, the per-layer Lava
    agreement and the checks under ``meta``."""
    from nirbridge.report import build_report

    meta = {
        "kind": "deployment",
        "recipe": run.recipe.to_dict(),
        "samples": run.samples,
        "lava_samples": run.lava_samples,
        "lava_fixed_mismatch": list(run.lava_fixed_mismatch),
        "emulator": _emulator_dict(run),
        "summary": run.summary(),
        "deploy": {mode: res.to_dict() for mode, res in run.deploys.items()},
        "errors": dict(run.errors),
        "checks": [c.to_dict() for c in run.checks],
        "passed": not run.failed,
        "nir": None if run.nir_path is None else str(run.nir_path),
        "dt": run.dt, "dt_source": run.dt_source,
        "sanity": [f.to_dict() for f in run.findings],
        "verify": None if run.verification is None else run.verification.to_dict(),
    }
    return build_report(run.counts, run.energies, run.mappings, model=run.recipe.name,
                        meta=meta)


def _emulator_dict(run: RecipeRun) -> dict[str, Any] | None:
    """The fixed-point emulator's per-layer agreement with the reference, every sample."""
    st = run.stream
    if st is None or st.fixed_pred is None:
        return None
    return {"samples": st.n, "saturated": st.saturated, "layers": [
        {"node": t.node, "op": t.op, "identical": t.identical / t.entries if t.entries else 1.0,
         "spikes_reference": t.spikes_a / st.n, "spikes_emulator": t.spikes_b / st.n,
         "first_divergent_step": t.first_divergent_step} for t in st.fixed_layers]}


def _report_sections(run: RecipeRun) -> list[tuple[str, list[list[str]], list[str]]]:
    sections: list[tuple[str, list[list[str]], list[str]]] = []
    r = run.recipe
    sections.append(("Deployment summary", stage_rows(run), [
        f"{r.data.dataset} {r.data.split} split, {run.samples} samples (the first "
        f"{run.lava_samples} on Lava), T = {r.simulation.steps}, {r.data.encoding} encoding; "
        f"Lava simulates {r.simulation.target}",
        f"dt = {run.dt:g} ({run.dt_source})" if run.dt is not None else "dt unknown",
        "spikes identical: fraction of (step, sample, neuron) entries of every spiking "
        "layer equal to the reference's", *[f"stage failed: {s}: {e}"
                                            for s, e in run.errors.items()],
        *[f"sanity: {f.message}" for f in run.findings]]))
    if run.checks:
        sections.append(("Checks", [["check", "condition", "measured", "result"], *[
            [c.key, c.text, format_value(c.value, c.key), "pass" if c.passed else "FAIL"]
            for c in run.checks]], []))
    emu = _emulator_dict(run)
    if emu is not None:
        sections.append((f"Fixed-point emulator: agreement per layer ({emu['samples']} "
                         "samples, spikes per sample)", [
            ["layer", "type", "spikes ref", "spikes emulator", "identical", "first diff"],
            *[[la["node"], la["op"], f"{la['spikes_reference']:.1f}",
               f"{la['spikes_emulator']:.1f}", f"{100 * la['identical']:.3f}%",
               "-" if la["first_divergent_step"] is None else str(la["first_divergent_step"])]
              for la in emu["layers"]]],
            [f"saturation events over every sample: {emu['saturated']}"]))
    fixed = run.deploys.get("fixed_pt")
    if fixed is not None and fixed.quantization:
        sections.append(_quantization_section(fixed.quantization))
    for mode, res in run.deploys.items():
        rows = [["layer", "type", "spikes ref", "spikes Lava", "identical", "first diff"]]
        rows += [[la.node, la.op, f"{la.reference_spikes:.1f}", f"{la.lava_spikes:.1f}",
                  f"{100 * la.identical:.3f}%",
                  "-" if la.first_divergent_step is None else str(la.first_divergent_step)]
                 for la in res.layers]
        sections.append((f"Lava {mode}: agreement per layer (spikes per sample)", rows, [
            f"output: {100 * res.output_identical:.3f}% identical values, max |Δ| "
            f"{res.output_max_abs_diff:.3g}"]))
    if run.verification is not None:
        from nirbridge.verify.render import matrix_rows, verdict_lines

        doc = run.verification.to_dict()
        notes = [ln.strip() for b in doc["backends"] for ln in verdict_lines(b)]
        notes += [f"could not run: {n} — {r}" for n, rs in doc["could_not_run"].items()
                  for r in rs]
        notes += [f"reading note: {b['backend']}: {n}" for b in doc["backends"]
                  for n in b["notes"]]
        sections.append(("Verify: agreement with the reference per backend and layer",
                         matrix_rows(doc), notes))
    return sections


def _quantization_section(layers: list[dict[str, Any]]
                          ) -> tuple[str, list[list[str]], list[str]]:
    """The per-layer quantization report (:class:`~nirbridge.quantize.LayerReport` as a
    dict) as a report table: formats, grid usage, clipped, zeroed and saturated values,
    and what calibration chose with the agreement before and after it."""

    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    rows = [["layer", "type", "format", "rounding", "grid usage", "clipped", "zeroed",
             "saturated", "calibration: spikes identical before → after (first diff)"]]
    for q in layers:
        scale = q.get("scale") or {}
        fmt = (f"w_exp {scale['w_exp']}, {scale.get('mantissa_frac_bits')} frac bits"
               if "w_exp" in scale else f"{scale.get('frac_bits', '-')} frac bits")
        cal = q.get("calibration")
        if cal:
            b, a = cal.get("before") or {}, cal.get("after") or {}
            note = (f"{cal.get('choice')}: {pct(b.get('spike_agreement'))} → "
                    f"{pct(a.get('spike_agreement'))} (step {b.get('first_divergent_step')}"
                    f" → {a.get('first_divergent_step')})")
        else:
            note = "-"
        rows.append([str(q.get("name")), str(q.get("node_type")), fmt,
                     str(scale.get("rounding", "-")), pct(q.get("grid_usage")),
                     str(q.get("clipped", 0)), str(q.get("zeroed", 0)),
                     "-" if q.get("saturated") is None else str(q["saturated"]), note])
    return ("Fixed-point quantization report (per layer)", rows, [
        "grid usage: the fraction of the weight mantissa range the layer's largest weight "
        "uses; clipped / zeroed: values the target's grid clipped or rounded to 0; "
        "saturated: state saturations in the Lava fixed_pt run; calibration: spike "
        "agreement with the float64 reference on the calibration samples (training split) "
        "with the plain rule and with the choice kept (docs/quantization.md)"])


def _accuracy_plot(run: RecipeRun) -> bytes | None:
    names, values = [], []
    for key, label in (("torch_accuracy", "torch"), ("reference_accuracy", "reference"),
                       ("float_accuracy", "Lava float"), ("fixed_accuracy", "Lava fixed")):
        if run.metrics.get(key) is not None:
            names.append(label)
            values.append(run.metrics[key])
    if not names:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from nirbridge.report import _png

    fig, ax = plt.subplots(figsize=(5, 3.2))
    bars = ax.bar(range(len(names)), values, color=["C0", "C1", "C2", "C3"][:len(names)])
    for b, v in zip(bars, values, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom",
                fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(max(0.0, min(values) - 10), 100.5)
    ax.set_ylabel("accuracy, %")
    ax.set_title(f"{run.recipe.name}: accuracy per stage ({run.samples} samples)")
    return _png(fig)


def _agreement_plot(run: RecipeRun) -> bytes | None:
    if not run.deploys:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from nirbridge.report import _png

    fig, ax = plt.subplots(figsize=(5, 3.2))
    width = 0.8 / len(run.deploys)
    lows = []
    for i, (mode, res) in enumerate(run.deploys.items()):
        vals = [100 * la.identical for la in res.layers]
        lows += vals
        ax.bar(np.arange(len(vals)) + (i - (len(run.deploys) - 1) / 2) * width, vals,
               width, label=f"Lava {mode}")
        ax.set_xticks(range(len(vals)), [la.node for la in res.layers])
    ax.set_ylim(max(0.0, min(lows, default=100.0) - 2), 100.2)
    ax.set_ylabel("identical spikes, %")
    ax.set_title("Spike agreement with the reference per layer")
    ax.legend(fontsize=8, loc="lower left")
    return _png(fig)


def write_recipe_reports(run: RecipeRun, json_path: str | Path | None,
                         html_path: str | Path | None) -> list[Path]:
    """Write the JSON and/or HTML (or Markdown) report of a run; returns the paths."""
    from nirbridge.report import write_report

    doc = build_recipe_report(run)
    written = []
    if json_path:
        written.append(write_report(doc, json_path))
    if html_path:
        plots = {}
        for key, make in (("accuracy", _accuracy_plot), ("agreement", _agreement_plot)):
            png = make(run)
            if png is not None:
                plots[key] = png
        written.append(write_report(doc, html_path, raster=run.raster,
                                    raster_node=run.raster_node,
                                    sections=_report_sections(run), extra_plots=plots,
                                    title=f"nirbridge deployment: {run.recipe.name}"))
    return written


__all__ = ["build_recipe_report", "write_recipe_reports"]
