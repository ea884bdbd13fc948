"""Tests of nirbridge.report: the JSON document and its schema, tables, Markdown/HTML
pages with plots."""

from __future__ import annotations

import json
import math

import nir
import numpy as np
import pytest
import torch

from nirbridge.backends.reference import run_reference
from nirbridge.errors import NirbridgeError
from nirbridge.profile import count_events, estimate_energy, list_profiles, map_to_chip
from nirbridge.report import (
    REPORT_SCHEMA,
    build_report,
    format_table,
    make_plots,
    raster_from_records,
    render_markdown,
    validate_report,
    write_report,
)


def lif(n):
    return nir.LIF(tau=np.full(n, 2.0), r=np.full(n, 2.0), v_leak=np.zeros(n),
                   v_threshold=np.ones(n), v_reset=np.zeros(n))


@pytest.fixture(scope="module")
def run():
    rng = np.random.default_rng(0)
    g = nir.NIRGraph(
        nodes={"in": nir.Input(np.array([8])),
               "fc1": nir.Affine(rng.normal(size=(20, 8)) * 1.5, np.zeros(20)),
               "lif1": lif(20),
               "fc2": nir.Affine(rng.normal(size=(4, 20)), np.zeros(4)), "lif2": lif(4),
               "out": nir.Output(np.array([4]))},
        edges=[("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
               ("lif2", "out")],
        metadata={"dt": 1.0}, type_check=False)
    x = torch.relu(torch.randn(10, 3, 8, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(1)) * 2)
    _, records = run_reference(g, x, record=True)
    counts = count_events(g, records)
    energies = [estimate_energy(counts, p) for p in list_profiles()]
    mappings = [map_to_chip(g, p, counts) for p in ("loihi", "loihi2", "speck",
                                                    "xylo-audio2")]
    doc = build_report(counts, energies, mappings, model="mlp", meta={"inputs": "random"})
    return g, records, counts, doc


def test_report_matches_schema_and_is_strict_json(run):
    _, _, counts, doc = run
    assert validate_report(doc) == []
    assert validate_report(doc, use_jsonschema=False) == []
    text = json.dumps(doc, allow_nan=False)  # no inf/NaN anywhere
    back = json.loads(text)
    assert back["counts"]["totals"]["sop_ac"] == pytest.approx(counts.sop_ac)
    assert back["counts"]["neurobench"] == pytest.approx(counts.neurobench())
    assert {e["profile"] for e in back["energy"]} == set(list_profiles())
    for e in back["energy"]:
        assert e["label"].startswith(f"model estimate (profile {e['profile']}, evidence ")
        assert (e["total_j"] is None) == bool(e["missing"])
    assert REPORT_SCHEMA["properties"]["schema_version"]["const"] == doc["schema_version"]


def test_validator_reports_problems(run):
    doc = json.loads(json.dumps(run[3]))
    doc["energy"][0]["evidence"] = "guessed"
    del doc["counts"]["totals"]["spikes"]
    doc["mapping"][0]["fits"] = "yes"
    doc["extra"] = 1
    for use in (False, None):
        problems = " | ".join(validate_report(doc, use_jsonschema=use))
        assert "guessed" in problems
        assert "spikes" in problems
        assert "extra" in problems
        assert "yes" in problems


def test_table_and_markdown_mention_labels_and_missing_terms(run):
    _, _, _, doc = run
    table = format_table(doc)
    assert "model estimate (profile loihi, evidence simulated)" in table
    assert "loihi: total null; missing" in table
    assert "Effective_ACs" in table
    md = render_markdown(doc, {"sops": "r_sops.png"})
    assert "![SOPs per layer](r_sops.png)" in md
    assert "| fc1 | Affine | MAC |" in md
    assert "assumption: neurons_per_core" in md


def test_plots_and_files(run, tmp_path):
    _, records, _, doc = run
    raster = raster_from_records(records, "lif1", sample=1)
    assert raster.shape == (10, 20)
    plots = make_plots(doc, raster, "lif1")
    assert set(plots) == {"sops", "energy", "rates", "raster"}
    assert all(p.startswith(b"\x89PNG") for p in plots.values())
    import io as _io

    import matplotlib.image as mpimg

    for name, png in plots.items():  # each decodes to a non-blank picture
        img = mpimg.imread(_io.BytesIO(png), format="png")
        assert img.shape[0] > 100 and img.shape[1] > 100, name
        assert float(img[..., :3].std()) > 0.01, name
    j = write_report(doc, tmp_path / "r.json")
    assert json.loads(j.read_text())["model"] == "mlp"
    md = write_report(doc, tmp_path / "r.md", raster=raster, raster_node="lif1")
    assert (tmp_path / "r_raster.png").read_bytes().startswith(b"\x89PNG")
    assert "r_energy.png" in md.read_text()
    h = write_report(doc, tmp_path / "r.html", raster=raster, raster_node="lif1")
    page = h.read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "model estimate (profile loihi2, evidence proxy)" in page
    with pytest.raises(NirbridgeError, match="unknown report format"):
        write_report(doc, tmp_path / "r.pdf")
    assert not (tmp_path / "r.pdf").exists()
    # an invalid document writes nothing
    bad = dict(doc, schema_version="0")
    with pytest.raises(NirbridgeError, match="schema"):
        write_report(bad, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_infinite_ratio_becomes_null(run):
    g, _, counts, _ = run
    m = map_to_chip(g, "loihi", counts)
    m.layers[0].usage["neurons_per_core"]["ratio"] = math.inf
    doc = build_report(counts, [], [m])
    assert doc["mapping"][0]["layers"][0]["usage"]["neurons_per_core"]["ratio"] is None
    assert validate_report(doc) == []
