"""Profiling reports: a JSON document with a documented schema, a terminal table, and
Markdown or HTML pages embedding matplotlib plots.

The JSON document (:func:`build_report`) holds the raw counts of one run, the energy
estimate for each target profile and the mapping estimate for each chip; its schema is
:data:`REPORT_SCHEMA` (JSON Schema, draft 2020-12), checked by :func:`validate_report`
(with the ``jsonschema`` package when installed, else a built-in validator of the
keywords the schema uses). Every energy figure carries its label
``"model estimate (profile X, evidence Y)"``; raw counts are always beside it.

Plots (:func:`make_plots`, PNG bytes): SOPs per layer (effective AC/MAC and dense),
energy per target (known part shaded when the total is unknown), firing rate per layer,
and a spike raster of one layer of one sample.

Files are written atomically (a temporary file renamed into place), so a failure never
leaves a partial report behind.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Any

import numpy as np

from nirbridge._files import write_bytes
from nirbridge.errors import NirbridgeError
from nirbridge.profile import Counts, EnergyReport, Mapping
from nirbridge.textfmt import markdown_table, text_table
from nirbridge.units import format_energy

SCHEMA_VERSION = "1"

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_INT = {"type": "integer", "minimum": 0}
_STRS = {"type": "array", "items": {"type": "string"}}
_NUMS_OR_NULL = {"type": ["array", "null"], "items": _NUM}

_SYNAPSE = {
    "type": "object",
    "required": ["op", "kind", "predecessors", "neurobench", "in_shape", "effective",
                 "dense", "effective_per_step", "dense_per_step", "synapses",
                 "connections"],
    "properties": {
        "op": {"type": "string"},
        "kind": {"enum": ["AC", "MAC"]},
        "predecessors": _STRS,
        "neurobench": {"type": "boolean"},
        "in_shape": {"type": "array", "items": _INT},
        "effective": _NUM, "dense": _NUM,
        "effective_per_step": {"type": "array", "items": _NUM},
        "dense_per_step": _NUM, "synapses": _INT, "connections": _INT,
        "effective_events": _NUM_OR_NULL,
    },
    "additionalProperties": False,
}
_NEURON = {
    "type": "object",
    "required": ["op", "spiking", "neurons", "updates_dense", "updates_driven",
                 "driven_per_step", "spikes", "spikes_per_step", "rate", "sparsity"],
    "properties": {
        "op": {"type": "string"}, "spiking": {"type": "boolean"}, "neurons": _INT,
        "updates_dense": _NUM, "updates_driven": _NUM,
        "driven_per_step": {"type": "array", "items": _NUM},
        "spikes": _NUM_OR_NULL, "spikes_per_step": _NUMS_OR_NULL,
        "rate": _NUM_OR_NULL, "sparsity": _NUM_OR_NULL,
    },
    "additionalProperties": False,
}
_TERM = {
    "type": "object",
    "required": ["name", "constant", "count", "unit", "energy_j", "charged", "evidence",
                 "source"],
    "properties": {
        "name": {"enum": ["ac", "mac", "nu", "spike", "static"]},
        "constant": {"type": "string"}, "count": _NUM_OR_NULL, "unit": _NUM_OR_NULL,
        "energy_j": _NUM_OR_NULL, "charged": {"type": "boolean"},
        "evidence": {"enum": ["measured", "simulated", "derived", "proxy", "unknown"]},
        "source": {"type": "string"},
    },
    "additionalProperties": False,
}
_ENERGY = {
    "type": "object",
    "required": ["profile", "label", "evidence", "scope", "prices", "terms", "per_layer",
                 "total_j", "known_j", "missing", "not_charged", "time_s",
                 "ann_equivalent_j", "notes", "counts", "per"],
    "properties": {
        "profile": {"type": "string"},
        "label": {"type": "string", "pattern": "^model estimate \\(profile "},
        "evidence": {"enum": ["measured", "simulated", "derived", "proxy", "unknown"]},
        "scope": {"enum": ["per_op", "all_in"]},
        "prices": {"enum": ["events", "dense_mac"]},
        "terms": {"type": "object", "additionalProperties": _TERM},
        "per_layer": {"type": "object",
                      "additionalProperties": {"type": "object",
                                               "additionalProperties": _NUM_OR_NULL}},
        "total_j": _NUM_OR_NULL, "known_j": _NUM, "missing": _STRS, "not_charged": _STRS,
        "time_s": _NUM_OR_NULL, "ann_equivalent_j": _NUM_OR_NULL, "notes": _STRS,
        "counts": {"type": "object", "additionalProperties": _NUM},
        "per": {"const": "sample"},
        "static_j": _NUM_OR_NULL, "dynamic_j": _NUM_OR_NULL, "dynamic_known_j": _NUM,
        "dominant": {"enum": ["static", "dynamic", None]},
        "time_step_s": _NUM_OR_NULL, "time_step_source": {"type": ["string", "null"]},
        "graded_inputs": {"enum": ["events", "values"]}, "priced_as_events": _STRS,
        "includes": {"type": "string"}, "lower_bound": {"type": "boolean"},
    },
    "additionalProperties": False,
}
_USAGE = {
    "type": "object",
    "additionalProperties": {
        "type": "object", "required": ["need", "limit", "ratio"],
        "properties": {"need": _NUM, "limit": {"type": ["number", "array", "null"]},
                       "ratio": _NUM_OR_NULL},
    },
}
_LAYER_MAP = {
    "type": "object",
    "required": ["name", "neuron_node", "synapse_nodes", "neurons", "synapses", "fan_in",
                 "cores", "usage", "binding", "fits", "notes"],
    "properties": {
        "name": {"type": "string"}, "neuron_node": {"type": ["string", "null"]},
        "synapse_nodes": _STRS, "neurons": _INT,
        "synapses": {"type": ["integer", "null"]}, "fan_in": {"type": ["integer", "null"]},
        "cores": {"type": ["integer", "null"]}, "usage": _USAGE,
        "binding": {"type": ["string", "null"]}, "fits": {"type": "boolean"},
        "notes": _STRS, "split": {"type": ["object", "null"]},
    },
    "additionalProperties": False,
}
_MAPPING = {
    "type": "object",
    "required": ["profile", "label", "layers", "cores_used", "cores_available",
                 "chips_needed", "fits", "binding", "assumptions", "unchecked", "notes"],
    "properties": {
        "profile": {"type": "string"}, "label": {"type": "string"},
        "layers": {"type": "array", "items": _LAYER_MAP},
        "cores_used": {"type": ["integer", "null"]},
        "cores_available": _NUM_OR_NULL, "chips_needed": {"type": ["integer", "null"]},
        "fits": {"type": "boolean"}, "binding": {"type": ["string", "null"]},
        "assumptions": _STRS, "unchecked": _STRS, "notes": _STRS,
        "chip_usage": _USAGE,
    },
    "additionalProperties": False,
}

#: JSON Schema of the profiling report (all energies per sample, in joules; counts per
#: sample summed over time steps; ``null`` = unknown, never 0).
REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "nirbridge profiling report",
    "type": "object",
    "required": ["schema_version", "generator", "model", "meta", "counts", "energy",
                 "mapping"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "generator": {"type": "string"},
        "model": {"type": ["string", "null"]},
        "meta": {"type": "object"},
        "counts": {
            "type": "object",
            "required": ["time_steps", "batch", "per", "totals", "neurobench", "synapses",
                         "neurons", "params", "input_events"],
            "properties": {
                "time_steps": _INT, "batch": _INT, "per": {"type": "string"},
                "totals": {
                    "type": "object",
                    "required": ["sop_ac", "sop_mac", "sop_effective", "sop_dense",
                                 "nu_dense", "nu_driven", "spikes", "footprint_bytes_fp32"],
                    "additionalProperties": _NUM,
                },
                "neurobench": {
                    "type": "object",
                    "required": ["Effective_MACs", "Effective_ACs", "Dense"],
                    "additionalProperties": _NUM,
                },
                "synapses": {"type": "object", "additionalProperties": _SYNAPSE},
                "neurons": {"type": "object", "additionalProperties": _NEURON},
                "params": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["weights", "nonzero_weights", "biases",
                                     "neuron_params"],
                        "additionalProperties": _INT,
                    },
                },
                "input_events": {"type": "object", "additionalProperties": _NUM},
            },
            "additionalProperties": False,
        },
        "energy": {"type": "array", "items": _ENERGY},
        "mapping": {"type": "array", "items": _MAPPING},
    },
    "additionalProperties": False,
}


# ----------------------------------------------------------------------- JSON document
def _jsonable(x: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays unwrapped, tuples as lists, and
    non-finite floats as ``None`` (strict JSON has no inf/NaN; an infinite usage ratio
    means a zero limit)."""
    if isinstance(x, MappingABC):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def build_report(counts: Counts, energies: Sequence[EnergyReport] = (),
                 mappings: Sequence[Mapping] = (), *, model: str | None = None,
                 meta: MappingABC[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report document (see :data:`REPORT_SCHEMA`)."""
    from nirbridge import __version__

    doc = {
        "schema_version": SCHEMA_VERSION,
        "generator": f"nirbridge {__version__}",
        "model": model,
        "meta": dict(meta or {}),
        "counts": counts.to_dict(),
        "energy": [e.to_dict() for e in energies],
        "mapping": [m.to_dict() for m in mappings],
    }
    return _jsonable(doc)


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def _validate(value: Any, schema: MappingABC[str, Any], path: str, errors: list[str]) -> None:
    """A validator for the JSON Schema keywords :data:`REPORT_SCHEMA` uses."""
    import re

    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            errors.append(f"{path or '/'}: {value!r:.60} is not of type {'/'.join(types)}")
            return
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path or '/'}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path or '/'}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        errors.append(f"{path or '/'}: {value} is below {schema['minimum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"],
                                                                         value):
        errors.append(f"{path or '/'}: {value!r} does not match {schema['pattern']!r}")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                errors.append(f"{path or '/'}: missing required property '{key}'")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, v in value.items():
            if key in props:
                _validate(v, props[key], f"{path}/{key}", errors)
            elif extra is False:
                errors.append(f"{path or '/'}: unexpected property '{key}'")
            elif isinstance(extra, dict):
                _validate(v, extra, f"{path}/{key}", errors)
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            _validate(v, schema["items"], f"{path}/{i}", errors)


def validate_report(doc: Any, *, use_jsonschema: bool | None = None) -> list[str]:
    """Problems of ``doc`` against :data:`REPORT_SCHEMA` (empty when valid).

    Uses the ``jsonschema`` package when it is installed (``use_jsonschema=None``),
    else the built-in validator.
    """
    if use_jsonschema is not False:
        try:
            import jsonschema
        except ImportError:
            if use_jsonschema:
                raise
        else:
            validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
            return [f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
                    for e in validator.iter_errors(doc)]
    errors: list[str] = []
    _validate(doc, REPORT_SCHEMA, "", errors)
    return errors


def _atomic_write(path: str | Path, data: bytes) -> Path:
    return write_bytes(path, data, make_parents=True)


def write_json(doc: MappingABC[str, Any], path: str | Path) -> Path:
    """Write the report document as strict JSON (atomically)."""
    text = json.dumps(doc, indent=2, allow_nan=False)
    return _atomic_write(path, (text + "\n").encode())


# --------------------------------------------------------------------------------- plots
def raster_from_records(records: MappingABC[str, Any], node: str, sample: int = 0
                        ) -> np.ndarray:
    """Spikes ``[T, N]`` of ``node`` for one sample, from reference-run records."""
    rec = records.get(node)
    out = None if rec is None else getattr(rec, "output", None)
    if out is None:
        raise KeyError(f"no recorded output for node '{node}'")
    arr = np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out)
    return arr[:, sample].reshape(arr.shape[0], -1)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "null"
    if v == 0:
        return f"0{unit}"
    return f"{v:.4g}{unit}"


def _energy_si(j: float | None) -> str:
    # 4 digits and "null" (the JSON word) as this report always printed; see format_energy
    return format_energy(j, digits=4, none="null")


def _total_cell(e: MappingABC[str, Any]) -> str:
    """The total, or ``≥ known`` (a lower bound) when a charged term is unknown."""
    if e["total_j"] is not None:
        return _energy_si(e["total_j"])
    return f"≥ {_energy_si(e['known_j'])} (lower bound)"


def _part_cell(j: float | None, known: float | None) -> str:
    """A static or dynamic part: its value, ``≥ known`` where only part of it is known,
    or ``null``."""
    if j is not None:
        return _energy_si(j)
    return f"≥ {_energy_si(known)}" if known else "null"


def make_plots(doc: MappingABC[str, Any], raster: np.ndarray | None = None,
               raster_node: str | None = None) -> dict[str, bytes]:
    """PNG plots of a report document: ``sops``, ``energy`` (if any targets),
    ``rates`` (if any spiking layer) and ``raster`` (if ``raster`` [T, N] is given)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plots: dict[str, bytes] = {}
    counts = doc["counts"]
    syn = counts["synapses"]
    if syn:
        names = list(syn)
        x = np.arange(len(names))
        ac = [s["effective"] if s["kind"] == "AC" else 0 for s in syn.values()]
        mac = [s["effective"] if s["kind"] == "MAC" else 0 for s in syn.values()]
        dense = [s["dense"] for s in syn.values()]
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(names) + 2), 3.2))
        ax.bar(x - 0.2, ac, 0.4, label="effective AC")
        ax.bar(x - 0.2, mac, 0.4, bottom=ac, label="effective MAC")
        ax.bar(x + 0.2, dense, 0.4, label="dense", color="0.7")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel("SOPs per sample")
        positive = [v for v in (*ac, *mac, *dense) if v > 0]
        if positive:
            ax.set_yscale("log")
            ax.set_ylim(bottom=min(positive) / 3)
        ax.set_title(f"Synaptic operations per layer (T = {counts['time_steps']})")
        ax.legend(fontsize=8)
        plots["sops"] = _png(fig)
    if doc["energy"]:
        en = doc["energy"]
        fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(en) + 2), 3.2))
        x = np.arange(len(en))
        for i, e in enumerate(en):
            if e["total_j"] is not None:
                ax.bar(i, e["total_j"], color="C0")
            else:
                ax.bar(i, e["known_j"], color="C1", hatch="//", alpha=0.6)
        positive = [v for e in en for v in (e["total_j"], e["known_j"]) if v]
        if positive:
            ax.set_yscale("log")
            ax.set_ylim(bottom=min(positive) / 3)
        for i, e in enumerate(en):
            if e["total_j"] is None:  # written inside the axes, whatever the bar height
                ax.text(i, 0.02, "lower\nbound", ha="center", va="bottom", fontsize=7,
                        transform=ax.get_xaxis_transform())
        ax.set_xticks(x, [e["profile"] for e in en], rotation=30, ha="right")
        ax.set_ylabel("J per sample")
        ax.set_title("Energy per target (model estimates; hatched: known terms only)",
                     fontsize=9)
        plots["energy"] = _png(fig)
    spiking = {k: n for k, n in counts["neurons"].items() if n["rate"] is not None}
    if spiking:
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(spiking) + 2), 3.2))
        ax.bar(range(len(spiking)), [n["rate"] for n in spiking.values()])
        ax.set_xticks(range(len(spiking)), list(spiking), rotation=30, ha="right")
        ax.set_ylabel("spikes / neuron / step")
        ax.set_title("Firing rate per layer")
        plots["rates"] = _png(fig)
    if raster is not None:
        r = np.asarray(raster).reshape(np.shape(raster)[0], -1)
        t_idx, n_idx = np.nonzero(r)
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.scatter(t_idx, n_idx, s=4, marker="|", color="k")
        ax.set_xlim(-0.5, r.shape[0] - 0.5)
        ax.set_ylim(-0.5, r.shape[1] - 0.5)
        ax.set_xlabel("time step")
        ax.set_ylabel("neuron")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_title(f"Spike raster{f' of {raster_node}' if raster_node else ''}")
        plots["raster"] = _png(fig)
    return plots


# ------------------------------------------------------------------------ text outputs
def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[list[str]]:
    return [list(header), *[[str(c) for c in r] for r in rows]]


def _sections(doc: MappingABC[str, Any]) -> list[tuple[str, list[list[str]], list[str]]]:
    """(title, table rows with header first, notes) of each report section."""
    c = doc["counts"]
    out: list[tuple[str, list[list[str]], list[str]]] = []
    tot = c["totals"]
    nb = c["neurobench"]
    out.append(("Totals (per sample, summed over time steps)", _table(
        ["SOP AC", "SOP MAC", "SOP dense", "NU dense", "NU driven", "spikes",
         "params (fp32 bytes)"],
        [[_fmt(tot["sop_ac"]), _fmt(tot["sop_mac"]), _fmt(tot["sop_dense"]),
          _fmt(tot["nu_dense"]), _fmt(tot["nu_driven"]), _fmt(tot["spikes"]),
          _fmt(tot["footprint_bytes_fp32"])]]),
        [f"NeuroBench SynapticOperations: Effective_MACs {_fmt(nb['Effective_MACs'])}, "
         f"Effective_ACs {_fmt(nb['Effective_ACs'])}, Dense {_fmt(nb['Dense'])}",
         f"T = {c['time_steps']}, batch = {c['batch']}"]))
    out.append(("Synaptic operations per layer", _table(
        ["node", "op", "kind", "effective", "dense", "synapses"],
        [[k, s["op"], s["kind"], _fmt(s["effective"]), _fmt(s["dense"]), s["synapses"]]
         for k, s in c["synapses"].items()]), []))
    out.append(("Neurons per layer", _table(
        ["node", "op", "neurons", "spikes", "rate", "NU driven"],
        [[k, n["op"], n["neurons"], _fmt(n["spikes"]), _fmt(n["rate"]),
          _fmt(n["updates_driven"])] for k, n in c["neurons"].items()]), []))
    if doc["energy"]:
        notes = []
        for e in doc["energy"]:
            if e.get("includes"):
                notes.append(f"{e['profile']} includes: {e['includes']}")
            if e["missing"]:
                notes.append(f"{e['profile']}: total null; missing {', '.join(e['missing'])}"
                             f" (≥ {_energy_si(e['known_j'])} is a lower bound: the known "
                             "terms)")
            if e["not_charged"]:
                notes.append(f"{e['profile']}: not charged by this model: "
                             f"{', '.join(e['not_charged'])}")
            if e.get("time_s") is not None and e["terms"]["static"]["charged"]:
                src = e.get("time_step_source")
                notes.append(f"{e['profile']}: static power over {e['time_s']:.4g} s = T × "
                             f"{e['time_step_s']:.4g} s per step ("
                             + ("--time-step / time_step_s given" if src == "argument"
                                else f"profile: {src}") + ")")
            notes.extend(f"{e['profile']}: {n}" for n in e["notes"])
        out.append(("Energy per target (per sample)", _table(
            ["profile", "total", "dynamic", "static", "dominant", "ANN-equivalent", "label"],
            [[e["profile"], _total_cell(e), _part_cell(e.get("dynamic_j"),
                                                       e.get("dynamic_known_j")),
              _part_cell(e.get("static_j"), None) if "time_step_s" not in e["missing"]
              else "null (no time step)", e.get("dominant") or "?",
              _energy_si(e["ann_equivalent_j"]), e["label"]] for e in doc["energy"]]),
            notes))
    if doc["mapping"]:
        notes = []
        for m in doc["mapping"]:
            notes.extend(f"{m['profile']}: assumption: {a}" for a in m["assumptions"])
            notes.extend(f"{m['profile']}: {n}" for n in m["notes"])
            for lm in m["layers"]:
                notes.extend(f"{m['profile']} / {lm['name']}: {n}" for n in lm["notes"])
        out.append(("Chip mapping", _table(
            ["profile", "fits", "cores used", "cores/chip", "chips", "binding", "label"],
            [[m["profile"], "yes" if m["fits"] else "NO", _fmt(m["cores_used"]),
              _fmt(m["cores_available"]), _fmt(m["chips_needed"]), m["binding"] or "-",
              m["label"]] for m in doc["mapping"]]), notes))
    return out


def format_table(doc: MappingABC[str, Any]) -> str:
    """The report as plain-text tables for a terminal."""
    lines: list[str] = []
    for title, rows, notes in _sections(doc):
        lines += [title, text_table(rows, indent="  ")]
        lines.extend(f"  * {n}" for n in notes)
        lines.append("")
    return "\n".join(lines)


_PLOT_TITLES = {"accuracy": "Accuracy per stage",
                "agreement": "Spike agreement per layer", "sops": "SOPs per layer",
                "energy": "Energy per target", "rates": "Firing rate per layer",
                "raster": "Spike raster"}


#: A report section: (title, table rows with the header first, notes).
Section = tuple[str, list[list[str]], list[str]]


def render_markdown(doc: MappingABC[str, Any], plot_files: MappingABC[str, str] | None = None,
                    *, sections: Sequence[Section] = (), title: str | None = None) -> str:
    """The report as Markdown; ``plot_files`` maps plot names to image paths;
    ``sections`` come before the profile's own; ``title`` replaces the heading."""
    heading = title or f"nirbridge profile{': ' + doc['model'] if doc['model'] else ''}"
    lines = [f"# {heading}", "",
             f"Generated by {doc['generator']}. Energies are model estimates, each labelled "
             "with its profile and evidence; raw counts are given beside them.", ""]
    for sec_title, rows, notes in [*sections, *_sections(doc)]:
        lines += [f"## {sec_title}", ""]
        lines += [markdown_table([[c.replace("|", "\\|") for c in r] for r in rows]), ""]
        lines += [f"- {n}" for n in notes]
        if notes:
            lines.append("")
    if plot_files:
        lines += ["## Plots", ""]
        for name, file in plot_files.items():
            lines += [f"![{_PLOT_TITLES.get(name, name)}]({file})", ""]
    return "\n".join(lines)


def render_html(doc: MappingABC[str, Any], plots: MappingABC[str, bytes] | None = None, *,
                sections: Sequence[Section] = (), title: str | None = None) -> str:
    """The report as one self-contained HTML page (plots embedded as base64 PNG);
    ``sections`` come before the profile's own; ``title`` replaces the heading."""
    e = html.escape
    heading = title or f"nirbridge profile{': ' + doc['model'] if doc['model'] else ''}"
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             f"<title>{e(heading)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;"
             "padding:2px 8px;text-align:left}th{background:#eee}"
             "li{font-size:90%}</style></head><body>",
             f"<h1>{e(heading)}</h1>",
             f"<p>Generated by {e(doc['generator'])}. Energies are model estimates, each "
             "labelled with its profile and evidence; raw counts are given beside them.</p>"]
    for sec_title, rows, notes in [*sections, *_sections(doc)]:
        parts.append(f"<h2>{e(sec_title)}</h2><table>")
        parts.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in rows[0]) + "</tr>")
        for r in rows[1:]:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>")
        parts.append("</table>")
        if notes:
            parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    if plots:
        parts.append("<h2>Plots</h2>")
        for name, png in plots.items():
            b64 = base64.b64encode(png).decode()
            parts.append(f"<figure><img alt='{e(_PLOT_TITLES.get(name, name))}' "
                         f"src='data:image/png;base64,{b64}'><figcaption>"
                         f"{e(_PLOT_TITLES.get(name, name))}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(doc: MappingABC[str, Any], path: str | Path, *,
                 raster: np.ndarray | None = None, raster_node: str | None = None,
                 sections: Sequence[Section] = (),
                 extra_plots: MappingABC[str, bytes] | None = None,
                 title: str | None = None) -> Path:
    """Write ``doc`` by the suffix of ``path``: ``.json``, ``.md`` (plots as PNG files
    beside it, named ``<stem>_<plot>.png``) or ``.html`` (plots embedded).

    ``sections`` (title, rows, notes) are placed before the profile's own sections,
    ``extra_plots`` (name → PNG bytes) before its plots, and ``title`` replaces the
    heading (Markdown and HTML only; the JSON is ``doc`` itself)."""
    path = Path(path)
    problems = validate_report(doc)
    if problems:
        raise NirbridgeError("report does not match REPORT_SCHEMA: " + "; ".join(problems[:5]))
    suffix = path.suffix.lower()
    if suffix == ".json":
        return write_json(doc, path)
    plots = {**(extra_plots or {}), **make_plots(doc, raster, raster_node)}
    if suffix in (".md", ".markdown"):
        files = {}
        for name, png in plots.items():
            img = path.with_name(f"{path.stem}_{name}.png")
            _atomic_write(img, png)
            files[name] = img.name
        return _atomic_write(path, render_markdown(doc, files, sections=sections,
                                                   title=title).encode())
    if suffix in (".html", ".htm"):
        return _atomic_write(path, render_html(doc, plots, sections=sections,
                                               title=title).encode())
    raise NirbridgeError(f"{path}: unknown report format '{suffix}'; use .json, .md or "
                         ".html")


__all__ = [
    "REPORT_SCHEMA",
    "SCHEMA_VERSION",
    "build_report",
    "format_table",
    "make_plots",
    "raster_from_records",
    "render_html",
    "render_markdown",
    "validate_report",
    "write_json",
    "write_report",
]
