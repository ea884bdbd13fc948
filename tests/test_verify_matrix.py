"""``nirbridge verify``, the agreement matrix (issue 11, item 5): every backend against the
float64 reference per layer, judged by its own tolerance; the near-threshold analysis that
a float32 run's ``"rounding"`` tolerance rests on; a backend's reading compared with the
graph it says it computes; the CLI's exit codes, JSON and HTML heat map.

The float32 runs are real ones (the reference executor in float32); the test-only
backends run the reference on a graph they changed, so their differences are real
computations too."""

from __future__ import annotations

import copy
import json

import nir
import numpy as np
import pytest
import torch
from tiny_graph import LAVA, tiny_graph, tiny_inputs

import nirbridge  # noqa: F401  (before any Lava import)
from nirbridge.backends import Backend, Reading, Tolerance, get
from nirbridge.cli import main
from nirbridge.errors import InputError
from nirbridge.verify import near_threshold_layers, verify

FLOAT32 = Tolerance("rounding", 1e-5, why="float32 arithmetic")


def tie_graph(extra_li: bool = False) -> nir.NIRGraph:
    """Input(2) → identity Affine → IF(θ = 0.3) → Output. With inputs 0.1, float64 sums
    0.1 + 0.1 + 0.1 to 0.30000000000000004 > 0.3 (a spike at step 2) while float32 rounds
    the sum to float32(0.3), the threshold itself (no spike): an exact tie that float
    rounding decides. ``extra_li``: a graded LI read-out after the IF."""
    nodes = {
        "input": nir.Input(np.array([2])),
        "fc": nir.Affine(np.eye(2), np.zeros(2)),
        "if": nir.IF(r=np.ones(2), v_threshold=np.full(2, 0.3)),
        "output": nir.Output(np.array([2])),
    }
    edges = [("input", "fc"), ("fc", "if")]
    if extra_li:
        nodes["li"] = nir.LI(tau=np.full(2, 4.0), r=np.ones(2), v_leak=np.zeros(2))
        edges += [("if", "li"), ("li", "output")]
    else:
        edges.append(("if", "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


def tie_inputs() -> np.ndarray:
    """[T=8, B=2, 2]: sample 0 at the tie (0.1), sample 1 far from it (0.07)."""
    x = np.full((8, 2, 2), 0.1)
    x[:, 1, :] = 0.07
    return x


class Changed:
    """A test backend: the reference (in ``dtype``) run on the graph with ``change``
    applied; ``tell`` decides whether its reading names the change (and gives the graph)."""

    description = "the reference on a changed graph (test only)"

    def __init__(self, name, change=None, *, dtype=torch.float64, tolerance=FLOAT32,
                 tell=False, reasons=()):
        self.name, self.change, self.dtype, self.tell = name, change, dtype, tell
        self.tolerance, self.reasons = tolerance, list(reasons)

    def changed(self, graph):
        g = copy.deepcopy(graph)
        if self.change is not None:
            self.change(g)
        return g

    def check(self, graph, **options):
        return list(self.reasons)

    def reading(self, graph, **options):
        if not self.tell or self.change is None:
            return Reading()
        return Reading(["node 'if': reads v_threshold 0.3 as 0.25"], self.changed(graph))

    def run(self, graph, inputs, *, record=False, dt=None, **options):
        res = get("reference").run(self.changed(graph), inputs, record=record, dt=dt,
                                   dtype=self.dtype)
        res.info["backend"] = self.name
        return res


def _weight(g):
    g.nodes["fc"].weight = np.array([[1.0, 0.0], [0.0, 1.1]])


def _threshold(g):
    g.nodes["if"].v_threshold = np.full(2, 0.25)


def float32(name="float32", change=None, **kw):
    return Changed(name, change, dtype=torch.float32, **kw)


# ----------------------------------------------------------------------------- exactness
def test_reference_and_fixed_on_the_tiny_graph_pass_with_every_column():
    v = verify(tiny_graph(), tiny_inputs(), ["reference", "fixed"], labels=np.array([1]))
    assert [b.backend for b in v.backends] == ["reference", "fixed"] and v.passed
    ref, fixed = v.backends
    assert ref.ground_truth and not fixed.ground_truth and v.verified == [fixed]
    assert fixed.tolerance.spikes == "bound" and fixed.agreement.passed
    names = [la.node for la in fixed.agreement.layers]
    assert names == ["lif", "output"]  # every neuron layer and the Output, in order
    lif = fixed.agreement.layers[0]
    assert lif.kind == "spike" and lif.spikes_a > 0 and lif.identical is not None
    assert fixed.agreement.spike_agreement >= fixed.tolerance.min_spike_agreement
    assert fixed.accuracy is not None and v.reference_accuracy is not None
    assert v.exit_code == 0 and v.problems() == []


def test_a_changed_threshold_fails_exact_and_bound_naming_the_layer():
    exact = Changed("exact64", _threshold, tolerance=Tolerance("exact"))
    bound = Changed("bound64", _threshold, tolerance=Tolerance("bound", float("inf"), 0.99))
    v = verify(tie_graph(), tie_inputs(), [exact, bound])
    assert not v.passed and v.exit_code == 3
    for row in v.backends:
        assert not row.passed and row.agreement.status["if"] in ("FAIL", "below")
    assert "layer 'if' (IF)" in v.backends[0].reasons[0]
    assert "tolerance 'exact'" in v.backends[0].reasons[0]
    assert "< 99.000 %" in v.backends[1].reasons[0]


@pytest.mark.parametrize("_lava", [pytest.param(0, marks=LAVA)])
def test_lava_float_is_exact_against_the_reference(_lava):
    v = verify(tiny_graph(), tiny_inputs(), ["lava-float"],
               options={"lava-float": {"timeout_s": 120}})
    (row,) = v.backends
    assert row.tolerance.spikes == "exact" and row.passed, row.reasons
    assert all(la.identical == 1.0 for la in row.agreement.layers if la.missing is None)


# ---------------------------------------------------------------------------- rounding
def test_the_tie_is_found_near_threshold_and_float32_passes_rounding():
    g, x = tie_graph(), tie_inputs()
    ref = get("reference").run(g, x, record=True)
    near = near_threshold_layers(g, ref.records, 1.0)["if"]
    # the tie entries (sample 0, steps 2 and 5, both neurons) and only them
    assert near.count == 4 and near.mask[[2, 5], 0].all() and not near.mask[:, 1].any()
    v = verify(g, x, [float32(), float32("float32-exact", tolerance=Tolerance("exact"))])
    rounding, exact = v.backends
    la = rounding.agreement.layers[0]
    assert la.node == "if" and la.identical < 1.0  # float32 really decides otherwise
    assert la.first_divergent_step == 2 and la.near_threshold == 4
    assert la.divergence_explained is True and rounding.agreement.status["if"] == "rounding"
    assert rounding.agreement.status["output"] == "after"
    assert rounding.agreement.first_divergent_layers == ["if"]
    assert rounding.passed, rounding.reasons
    assert not exact.passed  # the same run is not spike-exact
    assert v.near_threshold == {"if": 4}


def test_a_genuine_difference_in_a_float32_run_fails_rounding():
    v = verify(tie_graph(), tie_inputs(), [float32("weight32", _weight)])
    (row,) = v.backends
    assert not row.passed and row.agreement.status["if"] == "FAIL"
    (reason,) = row.reasons
    assert "sample 1, step 3" in reason and "genuine difference" in reason


def test_graded_layers_are_held_to_graded_rel_before_the_divergence():
    g, x = tie_graph(extra_li=True), tie_inputs()
    v = verify(g, x, [float32(), Changed("li64", lambda g: setattr(
        g.nodes["li"], "tau", np.full(2, 4.1)), tolerance=Tolerance("exact"))])
    ok, bad = v.backends
    li = next(la for la in ok.agreement.layers if la.node == "li")
    assert li.kind == "graded" and li.spikes_a is None and li.scale > 0
    assert ok.passed and ok.agreement.status["li"] == "ok", ok.reasons
    assert not bad.passed and bad.agreement.status["li"] == "FAIL"
    assert any("layer 'li' (LI): max relative |Δ|" in r for r in bad.reasons)


# ----------------------------------------------------------------------------- readings
def test_a_reading_with_notes_that_disagrees_fails_with_the_notes_and_its_own_reading():
    told = Changed("misreader", _threshold, tolerance=Tolerance("exact"), tell=True)
    v = verify(tie_graph(), tie_inputs(), [told])
    (row,) = v.backends
    assert row.notes == ["node 'if': reads v_threshold 0.3 as 0.25"]
    assert not row.passed and row.reasons[0].startswith(
        "it reads the file differently from the NIR spec: node 'if'")
    assert row.own_reading is not None and row.own_reading.passed  # the whole difference
    assert "it agrees with its own reading" in row.reasons[-1]
    text = v.to_text()
    assert "reading note: misreader: node 'if': reads v_threshold 0.3 as 0.25" in text
    hidden = verify(tie_graph(), tie_inputs(), [Changed("hider", _threshold,
                                                        tolerance=Tolerance("exact"))])
    assert hidden.backends[0].own_reading is None and not hidden.backends[0].notes


def test_a_backend_that_cannot_run_is_listed_with_its_reason_not_failed():
    cannot = Changed("picky", reasons=["node 'if' (IF): no such neuron here"])
    v = verify(tiny_graph(), tiny_inputs(), ["fixed", cannot])
    assert v.could_not_run == {"picky": ["node 'if' (IF): no such neuron here"]}
    assert v.passed and [b.backend for b in v.backends] == ["fixed"]
    assert "could not run: picky — node 'if' (IF): no such neuron here" in v.to_text()
    alone = verify(tiny_graph(), tiny_inputs(), [cannot])
    assert not alone.passed and "nothing was verified" in alone.problems()[0]


def test_bad_requests_are_input_errors():
    with pytest.raises(InputError, match="unknown backend 'nope'"):
        verify(tiny_graph(), tiny_inputs(), ["nope"])
    with pytest.raises(InputError, match="requested twice"):
        verify(tiny_graph(), tiny_inputs(), ["fixed", "fixed"])
    with pytest.raises(InputError, match="2 labels for 1 samples"):
        verify(tiny_graph(), tiny_inputs(), ["fixed"], labels=[0, 1])
    with pytest.raises(InputError, match="not requested: lava-float"):
        verify(tiny_graph(), tiny_inputs(), ["fixed"], options={"lava-float": {}})
    assert isinstance(Changed("x"), Backend)


# ---------------------------------------------------------------------------------- CLI
@pytest.fixture
def files(tmp_path):
    nirbridge.write(tmp_path / "t.nir", tiny_graph())
    np.save(tmp_path / "x.npy", tiny_inputs())
    np.save(tmp_path / "y.npy", np.array([1]))
    return tmp_path


def test_cli_verify_passes_and_writes_json_and_the_heat_map(files, capsys):
    js, page = files / "v.json", files / "v.html"
    assert main(["verify", str(files / "t.nir"), "--input", str(files / "x.npy"),
                 "--backends", "reference,fixed", "--labels", str(files / "y.npy"),
                 "--json", str(js), "--report", str(page)]) == 0
    out = capsys.readouterr().out
    for column in ("identical", "first diff", "max |Δ|", "near-thr.", "verdict"):
        assert column in out
    assert "fixed: PASS" in out and "verify: PASS" in out
    doc = json.loads(js.read_text())
    assert doc["kind"] == "verification" and doc["passed"] is True and doc["exit_code"] == 0
    assert {"steps", "samples", "dt", "reference", "backends", "could_not_run",
            "problems"} <= set(doc)
    fixed = doc["backends"][1]
    assert fixed["backend"] == "fixed" and fixed["tolerance"]["graded_rel"] is None  # inf
    layer = fixed["agreement"]["layers"][0]
    assert {"node", "kind", "identical", "first_divergent_step", "max_abs_diff",
            "max_rel_diff", "near_threshold", "status"} <= set(layer)
    html = page.read_text()
    assert "<table class='heat'>" in html and "background:hsl(" in html
    assert "First divergence per layer" in html and "http" not in html  # self contained


def test_cli_verify_exit_codes(files, capsys):
    nir_file, x = str(files / "t.nir"), str(files / "x.npy")
    assert main(["verify", nir_file, "--input", x, "--backends", "reference"]) == 3
    assert "nothing was verified" in capsys.readouterr().err
    assert main(["verify", nir_file, "--input", x, "--backends", "fixed,nope"]) == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err
    assert main(["verify", nir_file, "--input", str(files / "missing.npy")]) == 2
    np.save(files / "flat.npy", np.zeros((4, 2)))
    assert main(["verify", nir_file, "--input", str(files / "flat.npy")]) == 2
    assert "expected [T, B, ...]" in capsys.readouterr().err
