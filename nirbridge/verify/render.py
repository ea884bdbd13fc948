"""The agreement matrix as text, JSON and a self-contained HTML heat map.

Everything here reads the JSON document of
:meth:`~nirbridge.verify.matrix.Verification.to_dict` (so a saved ``--json`` renders the
same way) and writes files atomically (:mod:`nirbridge._files`).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nirbridge._files import write_bytes
from nirbridge.textfmt import text_table

#: The matrix's columns, in the terminal and in the HTML table.
COLUMNS = ("backend", "layer", "type", "identical", "first diff", "max |Δ|", "max rel Δ",
           "near-thr.", "verdict")


def plain(x: Any) -> Any:
    """JSON values: numpy scalars unwrapped, tuples as lists, non-finite floats as None
    (strict JSON has no inf; an infinite ``graded_rel`` means "not held")."""
    if isinstance(x, Mapping):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _num(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def layer_cells(la: Mapping[str, Any]) -> list[str]:
    """One layer's cells of :data:`COLUMNS` after ``backend`` and ``layer``."""
    if la.get("missing"):
        return [f"{la['op']} {la['kind']}", "not recorded", "-", "-", "-", "-", "missing"]
    return [f"{la['op']} {la['kind']}", _pct(la["identical"]),
            _num(la["first_divergent_step"], "d"), _num(la["max_abs_diff"]),
            _num(la["max_rel_diff"]), _num(la["near_threshold"], "d"), la.get("status") or "-"]


def matrix_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """The matrix (rows = backends × layers), header first."""
    rows = [list(COLUMNS)]
    for b in doc["backends"]:
        name = b["backend"] + (" (ground truth)" if b["ground_truth"] else "")
        if b["agreement"] is None:
            rows.append([name, "-", "-", "-", "-", "-", "-", "-", "run FAILED"])
            continue
        for i, la in enumerate(b["agreement"]["layers"]):
            rows.append([name if i == 0 else "", la["node"], *layer_cells(la)])
    return rows


def _tolerance(t: Mapping[str, Any]) -> str:
    if t["spikes"] == "bound":
        return f"bound: ≥ {_pct(t['min_spike_agreement'])} of spikes identical"
    rel = "not held" if t["graded_rel"] is None else f"{t['graded_rel']:g}"
    return f"{t['spikes']}, graded rel ≤ {rel}"


def verdict_lines(b: Mapping[str, Any]) -> list[str]:
    """One backend's verdict, what it measured overall, and its reasons."""
    a = b["agreement"]
    head = f"{b['backend']}: {'PASS' if b['passed'] else 'FAIL'} ({_tolerance(b['tolerance'])}"
    head += f"; {b['tolerance']['why']})" if b["tolerance"].get("why") else ")"
    lines = [head]
    if a is not None:
        first = "never" if a["first_divergent_step"] is None else (
            f"step {a['first_divergent_step']} in {', '.join(a['first_divergent_layers'])}")
        lines.append(f"    spikes identical {_pct(a['spike_agreement'])}, first divergence "
                     f"{first}, same prediction {_pct(a['prediction_agreement'])}"
                     + (f", accuracy {_pct(b['accuracy'])}" if b["accuracy"] is not None
                        else ""))
    own = b.get("own_reading")
    if own is not None:
        lines.append("    against its own reading: " + (
            "agrees" if own["passed"] else "does not agree: " + "; ".join(own["reasons"])))
    lines += [f"    - {r}" for r in b["reasons"]]
    return lines


def text(doc: Mapping[str, Any]) -> str:
    """The terminal form: heading, the matrix, verdicts, what could not run, the reading
    notes, the reference's sanity warnings and the overall result."""
    ref = doc["reference"]
    lines = [f"verify {doc['model'] or 'graph'}: T = {doc['steps']}, B = {doc['samples']}, "
             f"dt = {doc['dt']:g}; every backend against the float64 reference"
             + (f" (accuracy {_pct(ref['accuracy'])})" if ref["accuracy"] is not None
                else "")]
    if len(matrix_rows(doc)) > 1:
        lines += ["", text_table(matrix_rows(doc))]
    lines += ["", *[ln for b in doc["backends"] for ln in verdict_lines(b)]]
    for name, reasons in doc["could_not_run"].items():
        lines += [f"could not run: {name} — {r}" for r in reasons]
    for b in doc["backends"]:
        lines += [f"reading note: {b['backend']}: {n}" for n in b["notes"]]
    for layer, why in ref["near_threshold_reasons"].items():
        lines.append(f"near-threshold analysis: layer '{layer}' not analysed: {why}")
    lines += [f"warning: {f['message']}" for f in ref["findings"]]
    lines.append(f"verify: {'PASS' if doc['passed'] else 'FAIL'}: {doc['summary']}")
    return "\n".join(lines)


def write_json(doc: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``doc`` as strict JSON, atomically."""
    return write_bytes(path, (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode(),
                       make_parents=True)


# ------------------------------------------------------------------------------- HTML
def heat_colour(identical: float | None) -> str:
    """A cell's background for an identical fraction: green at 100 %, through yellow to
    red at 50 % and below (agreements of interest lie near 100 %); grey: not measured."""
    if identical is None:
        return "#ddd"
    if identical >= 1.0:
        return "hsl(120,55%,55%)"
    hue = 100 * max(0.0, min(1.0, (identical - 0.5) / 0.5))
    return f"hsl({hue:.0f},75%,60%)"


def _layer_names(doc: Mapping[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for b in doc["backends"]:
        for la in (b["agreement"] or {}).get("layers", []):
            seen.setdefault(la["node"], None)
    return list(seen)


def _heat_map(doc: Mapping[str, Any]) -> list[str]:
    e = html.escape
    layers = _layer_names(doc)
    parts = ["<h2>Agreement heat map</h2><p>Cells: identical entries per layer (graded "
             "layers: within 1e-5 of the layer's scale), and the first divergent step.</p>",
             "<table class='heat'><tr><th>backend</th>"
             + "".join(f"<th>{e(n)}</th>" for n in layers) + "<th>verdict</th></tr>"]
    for b in doc["backends"]:
        by = {la["node"]: la for la in (b["agreement"] or {}).get("layers", [])}
        cells = []
        for n in layers:
            la = by.get(n)
            if la is None or la.get("missing"):
                cells.append(f"<td style='background:{heat_colour(None)}'>-</td>")
                continue
            first = la["first_divergent_step"]
            tip = (f"max |Δ| {_num(la['max_abs_diff'])}, near threshold "
                   f"{_num(la['near_threshold'], 'd')}, {la.get('status')}")
            cells.append(f"<td style='background:{heat_colour(la['identical'])}' "
                         f"title='{e(tip)}'>{_pct(la['identical'])}"
                         f"{'' if first is None else f'<br>t = {first}'}</td>")
        verdict = "PASS" if b["passed"] else "FAIL"
        parts.append(f"<tr><th>{e(b['backend'])}</th>{''.join(cells)}"
                     f"<td class='{verdict.lower()}'>{verdict}</td></tr>")
    parts.append("</table>")
    return parts


def _table(rows: Sequence[Sequence[str]]) -> str:
    e = html.escape
    out = ["<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in rows[0]) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows[1:]]
    return "".join(out) + "</table>"


def _divergence_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    rows = [["backend", "layer", "first divergent step", "near threshold there",
             "start of the divergence"]]
    for b in doc["backends"]:
        a = b["agreement"]
        for la in (a or {}).get("layers", []):
            if la.get("first_divergent_step") is None:
                continue
            explained = la.get("divergence_explained")
            rows.append([b["backend"], la["node"], str(la["first_divergent_step"]),
                         "-" if explained is None else "all" if explained else "not all",
                         "yes" if la["node"] in a["first_divergent_layers"] else "no"])
    return rows


def html_page(doc: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (inline style, no external asset)."""
    e = html.escape
    title = f"nirbridge verify: {doc['model'] or 'graph'}"
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             f"<title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;"
             "padding:2px 8px;text-align:left}th{background:#eee}.heat td{text-align:center;"
             "min-width:5em}.pass{color:#1b5e20;font-weight:bold}.fail{color:#b71c1c;"
             "font-weight:bold}li{font-size:90%}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             f"<p>{e(text(doc).splitlines()[0])}</p>",
             f"<p class='{'pass' if doc['passed'] else 'fail'}'>"
             f"{'PASS' if doc['passed'] else 'FAIL'}</p>"]
    parts += _heat_map(doc)
    parts.append("<h2>Matrix</h2>" + _table(matrix_rows(doc)))
    divergence = _divergence_rows(doc)
    parts.append("<h2>First divergence per layer</h2>" + (
        _table(divergence) if len(divergence) > 1 else "<p>No layer diverges.</p>"))
    parts.append("<h2>Verdicts</h2><ul>" + "".join(
        f"<li>{e(ln)}</li>" for b in doc["backends"] for ln in verdict_lines(b)) + "</ul>")
    extra = [f"could not run: {n} — {r}" for n, rs in doc["could_not_run"].items() for r in rs]
    extra += [f"reading note: {b['backend']}: {n}" for b in doc["backends"] for n in b["notes"]]
    extra += [f"warning: {f['message']}" for f in doc["reference"]["findings"]]
    if extra:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in extra)
                     + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(doc: Mapping[str, Any], path: str | Path) -> Path:
    """Write :func:`html_page` of ``doc``, atomically."""
    return write_bytes(path, html_page(doc).encode(), make_parents=True)


__all__ = ["COLUMNS", "heat_colour", "html_page", "layer_cells", "matrix_rows", "plain",
           "text", "verdict_lines", "write_json", "write_html"]
