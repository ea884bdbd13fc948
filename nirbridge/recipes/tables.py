"""Recipe results as text: one run's stage table (:func:`format_run`) and the summary
table of several runs (:func:`summary_table`, the README's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nirbridge.recipes.execute import RecipeRun
from nirbridge.recipes.schema import MODE_SHORT, format_value, kwargs_text
from nirbridge.textfmt import markdown_table, text_table
from nirbridge.units import format_energy


def energy_cell(e: Any) -> str:
    """An energy per sample for a table: the total, or ``≥ known terms`` when a charged
    constant is unpublished (the total is then unknown), or ``n/a``."""
    if e is None:
        return "n/a"
    if e.total_j is not None:
        return format_energy(e.total_j)
    return f"≥ {format_energy(e.known_j)}" if e.known_j else "n/a"


def _p(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}%"


def _grid(rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    return markdown_table(rows) if markdown else text_table(rows)


def stage_rows(run: RecipeRun) -> list[list[str]]:
    """The per-stage summary of one run: header first. The streamed stages (torch,
    reference, emulator) saw every sample; Lava the first ``run.lava_samples``."""
    m, n, nl, sec = run.metrics, str(run.samples), str(run.lava_samples), run.seconds
    rows = [["stage", "samples", "accuracy", "Δ vs reference", "spikes identical",
             "same prediction", "integers = emulator", "seconds"]]
    if "torch_accuracy" in m:
        rows.append(["torch (trained module)", n, _p(m["torch_accuracy"]),
                     f"max |Δ| {m.get('reference_torch_diff', 0.0):.1g}", "-", "-", "-",
                     f"{sec.get('torch', 0.0):.1f}"])
    rows.append(["reference (.nir, float64)", n, _p(m.get("reference_accuracy")), "-", "-",
                 "-", "-", f"{sec.get('reference', 0.0):.1f}"])
    if "fixed_accuracy" in m:
        rows.append(["fixed point (emulator)", n, _p(m["fixed_accuracy"]),
                     f"{0.0 - m['fixed_accuracy_drop']:+.2f} pt",
                     _p(m.get("fixed_spike_agreement"), 3),
                     _p(m.get("fixed_prediction_agreement")), "-",
                     f"{sec.get('emulator', 0.0):.1f}"])
    if "qat_fixed_accuracy" in m:  # the QAT checkpoint against its own reference
        rows.append(["QAT: reference (float64)", n, _p(m.get("qat_reference_accuracy")), "-",
                     "-", "-", "-", "-"])
        rows.append(["QAT: fixed point (emulator)", n, _p(m["qat_fixed_accuracy"]),
                     f"{0.0 - m['qat_fixed_accuracy_drop']:+.2f} pt",
                     _p(m.get("qat_fixed_spike_agreement"), 3),
                     _p(m.get("qat_fixed_prediction_agreement")), "-",
                     f"{sec.get('qat', 0.0):.1f}"])
        if m.get("qat_lava_fixed_identical") is not None:
            rows.append(["QAT: Lava fixed_pt", nl, _p(m.get("qat_lava_fixed_accuracy")), "-",
                         _p(m.get("qat_lava_fixed_spike_agreement"), 3), "-",
                         _p(m.get("qat_lava_fixed_identical")),
                         f"{sec.get('lava_qat', 0.0):.1f}"])
    for mode in run.recipe.simulation.modes:
        short = MODE_SHORT[mode]
        secs = f"{sec.get(f'lava_{short}', 0.0):.1f}"
        if f"lava_{short}" in run.errors:
            rows.append([f"Lava {mode}", nl, "FAILED", run.errors[f"lava_{short}"][:40], "-",
                         "-", "-", secs])
            continue
        res = run.deploys.get(mode)
        if res is None:
            continue
        drop = res.accuracy_drop
        rows.append([f"Lava {mode}", nl, _p(m.get(f"lava_{short}_accuracy")),
                     "-" if drop is None else f"{0.0 - 100 * drop:+.2f} pt",
                     _p(m.get(f"lava_{short}_spike_agreement"), 3),
                     _p(100 * res.prediction_agreement),
                     _p(m.get("lava_fixed_identical")) if mode == "fixed_pt" else "-", secs])
    return rows


#: The stages :func:`timing_table` lists: key in ``RecipeRun.seconds`` → column.
TIMED = (("export", "export"), ("torch", "torch"), ("reference", "reference"),
         ("counting", "counting"), ("calibration", "calibration"), ("emulator", "emulator"),
         ("lava_float", "Lava float"), ("lava_fixed", "Lava fixed"), ("qat", "QAT streamed"),
         ("lava_qat", "Lava QAT"), ("profile", "profile"), ("verify", "verify"))


def timing_table(runs: Sequence[RecipeRun], *, markdown: bool = False) -> str:
    """Seconds each stage took, one row per run (the streamed stages' own times, Lava's
    including its compile and the emulator's confirmation run)."""
    cols = [(k, c) for k, c in TIMED if any(k in r.seconds for r in runs)]
    rows = [["recipe", "samples / Lava", *[c for _, c in cols], "total"]]
    for r in runs:
        rows.append([r.recipe.name, f"{r.samples} / {r.lava_samples}",
                     *[f"{r.seconds[k]:.1f}" if k in r.seconds else "-" for k, _ in cols],
                     f"{r.total_seconds:.1f}"])
    return _grid(rows, markdown)


def format_run(run: RecipeRun) -> str:
    """One recipe's summary: the stage table, SOPs and energy, and the checks."""
    r = run.recipe
    dt = "" if run.dt is None else f", dt = {run.dt:g}"
    lines = [f"{r.name}: {r.model.factory or r.model.nir}"
             f"{' (' + kwargs_text(r.model.kwargs) + ')' if r.model.kwargs else ''}, "
             f"{r.data.dataset} {r.data.split} split, {run.samples} samples "
             f"({run.lava_samples} on Lava), "
             f"T = {r.simulation.steps}{dt}, {r.data.encoding} encoding",
             _grid(stage_rows(run))]
    if run.counts is not None:
        c = run.counts
        lines.append(f"per sample: {c.sop_effective:.4g} SOPs ({c.sop_ac:.4g} AC, "
                     f"{c.sop_mac:.4g} MAC; dense {c.sop_dense:.4g}), {c.spikes:.4g} spikes")
        lines.append("energy per sample (model estimates): " + "; ".join(
            f"{e.profile} {energy_cell(e)}" + (f" (known terms; unpublished: "
                                              f"{', '.join(e.missing)})" if e.missing else "")
            for e in run.energies))
    for cr in run.checks:
        lines.append(f"check {'PASS' if cr.passed else 'FAIL'}: {cr.text} "
                     f"(measured {format_value(cr.value, cr.key)})")
    if run.lava_fixed_mismatch:
        shown = ", ".join(map(str, run.lava_fixed_mismatch[:20]))
        more = len(run.lava_fixed_mismatch) - 20
        lines.append(f"Lava fixed_pt differs from the emulator on samples {shown}"
                     + (f" (and {more} more)" if more > 0 else ""))
    for s, e in run.errors.items():
        lines.append(f"stage FAILED: {s}: {e}")
    for f in run.findings:
        lines.append(f"sanity FAILED: {f.message}")
    return "\n".join(lines)


def summary_table(runs: Sequence[RecipeRun], targets: Sequence[str] | None = None, *,
                  markdown: bool = False) -> str:
    """One row per run: the README's table (accuracies in %: torch, reference and the
    fixed-point emulator on every sample, Lava floating_pt on the confirmed ones; Lava
    fixed_pt confirmed samples whose integers equal the emulator's; spikes identical to
    the reference, Lava float / emulator; SOPs and energy per sample on each target;
    ``≥`` marks a total of which only the known terms could be priced)."""
    if targets is None:
        targets = list(dict.fromkeys(e.profile for r in runs for e in r.energies))
    header = ["recipe", "neuron", "input", "samples / Lava", "torch", "reference",
              "fixed point", "Lava float", "Lava fixed = emulator",
              "spikes identical float / fixed", "QAT fixed point / spikes identical",
              "SOPs/sample",
              *[f"energy {t}" for t in targets]]
    rows = [header]
    for r in runs:
        m = r.metrics
        same = m.get("lava_fixed_identical")
        rows.append([
            r.recipe.name, r.recipe.model.neuron or "-",
            f"{r.recipe.data.encoding}, T={r.recipe.simulation.steps}",
            f"{r.samples} / {r.lava_samples}",
            _p(m.get("torch_accuracy")), _p(m.get("reference_accuracy")),
            _p(m.get("fixed_accuracy")), _p(m.get("float_accuracy")),
            "-" if same is None else
            f"{round(same * r.lava_samples / 100)}/{r.lava_samples}",
            f"{_p(m.get('float_spike_agreement'))} / {_p(m.get('fixed_spike_agreement'))}",
            "-" if m.get("qat_fixed_accuracy") is None else
            f"{_p(m.get('qat_fixed_accuracy'))} / {_p(m.get('qat_fixed_spike_agreement'))}",
            "-" if r.sops is None else f"{r.sops:,.0f}",
            *[energy_cell(r.energy_report(t)) for t in targets],
        ])
    return _grid(rows, markdown)


__all__ = ["TIMED", "energy_cell", "format_run", "stage_rows", "summary_table",
           "timing_table"]
