"""Deployment recipes (issue 5): loading and validation, data encodings, a tiny recipe end
to end (export → reference → Lava float/fixed → profile → reports), failing checks, the
shipped recipes and checkpoints, and training."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nirbridge  # before any Lava import
from nirbridge.cli import main
from nirbridge.data import DIGITS_TEST, encode, load_split
from nirbridge.errors import CheckFailed, RecipeError
from nirbridge.examples import DigitsConvSNN
from nirbridge.recipes import (
    execute_recipe,
    load_recipe,
    run_recipe,
    summary_table,
)
from nirbridge.report import validate_report

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SHIPPED = ("digits_lif", "digits_arlif", "digits_klif", "digits_dalif", "digits_arlif_rate",
           "digits_seq_alif", "digits_seq_cubalif")

TINY = """\
name = "tiny"

[model]
factory = "nirbridge.examples:digits_conv_snn"
kwargs = {{ neuron = "{neuron}" }}
checkpoint = "tiny.pt"

[data]
dataset = "digits"
encoding = "{encoding}"

[simulation]
steps = 4
samples = 4
modes = {modes}
target = "loihi2"
timeout_s = 120

[profile]
targets = ["loihi2", "cmos45-fp32"]

[checks]
{checks}

[output]
dir = "{out}"
"""


def _recipe(tmp_path: Path, *, neuron: str = "lif", encoding: str = "direct",
            modes: str = '["floating_pt", "fixed_pt"]',
            checks: str = "min_float_spike_agreement = 100.0", name: str = "tiny.toml",
            replace: tuple[str, str] | None = None, checkpoint: bool = True) -> Path:
    if checkpoint:
        torch.manual_seed(0)
        torch.save(DigitsConvSNN(neuron).state_dict(), tmp_path / "tiny.pt")
    text = TINY.format(neuron=neuron, encoding=encoding, modes=modes, checks=checks,
                       out=tmp_path / "out")
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------- validation
def test_tiny_recipe_loads_with_defaults(tmp_path):
    r = load_recipe(_recipe(tmp_path))
    assert r.name == "tiny" and r.model.neuron == "lif"
    assert r.model.checkpoint == (tmp_path / "tiny.pt").resolve()  # relative to the recipe
    assert r.data.split == "test" and r.simulation.steps == 4
    assert r.simulation.modes == ("floating_pt", "fixed_pt")
    assert r.targets == ("loihi2", "cmos45-fp32")
    (check,) = r.checks
    assert (check.kind, check.metric, check.bound) == ("min", "float_spike_agreement", 100.0)
    assert r.train.epochs >= 1 and r.output_dir == tmp_path / "out"


@pytest.mark.parametrize("replace, field, words", [
    (("steps = 4\n", ""), "simulation.steps", "missing"),
    (('dataset = "digits"\n', ""), "data.dataset", "missing"),
    (("steps = 4", 'steps = "four"'), "simulation.steps", "has type str"),
    (("samples = 4", "samples = 4.5"), "simulation.samples", "has type float"),
    (("timeout_s = 120", "timeout_s = true"), "simulation.timeout_s", "has type bool"),
    (('targets = ["loihi2", "cmos45-fp32"]', 'targets = ["loihi2", "loihi9"]'),
     "profile.targets[1]", "unknown target 'loihi9'"),
    (('target = "loihi2"', 'target = "loihi9"'), "simulation.target", "unknown target"),
    (('target = "loihi2"', 'target = "cmos45-fp32"'), "simulation.target",
     "no [quantization]"),
    (('checkpoint = "tiny.pt"', 'checkpoint = "missing.pt"'), "model.checkpoint",
     "does not exist"),
    (('encoding = "direct"', 'encoding = "phase"'), "data.encoding", "'phase' is unknown"),
    (('neuron = "lif"', 'neuron = "hodgkin"'), "model.kwargs.neuron", "hodgkin"),
    (("nirbridge.examples:digits_conv_snn", "nirbridge.examples:nope"), "model.factory",
     "no callable 'nope'"),
    (('modes = ["floating_pt", "fixed_pt"]', 'modes = ["fixed"]'), "simulation.modes[0]",
     "unknown"),
    (("min_float_spike_agreement", "min_spike_count"), "checks.min_spike_count",
     "unknown check"),
    (("steps = 4", "stepz = 4"), "simulation.stepz", "unknown field"),
])
def test_recipe_errors_name_the_file_and_field(tmp_path, replace, field, words):
    path = _recipe(tmp_path, replace=replace)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    msg = str(info.value)
    assert str(path) in msg and f"field '{field}'" in msg and words in msg, msg


def test_check_on_a_mode_not_run_is_rejected(tmp_path):
    path = _recipe(tmp_path, modes='["floating_pt"]', checks="max_fixed_accuracy_drop = 1")
    with pytest.raises(RecipeError, match=r"checks.max_fixed_accuracy_drop.*fixed_pt"):
        load_recipe(path)


def test_cli_deploy_bad_recipe_is_one_line_naming_the_field(tmp_path, capsys):
    path = _recipe(tmp_path, replace=('checkpoint = "tiny.pt"', 'checkpoint = "gone.pt"'))
    assert main(["deploy", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.checkpoint" in err and "gone.pt" in err
    assert not (tmp_path / "out").exists()


def test_more_samples_than_the_split_holds_names_the_field(tmp_path):
    from nirbridge.recipes import recipe_inputs

    r = load_recipe(_recipe(tmp_path, replace=("samples = 4", "samples = 400")))
    with pytest.raises(RecipeError, match=r"simulation.samples.*400.*has 360"):
        recipe_inputs(r)
    x, y = recipe_inputs(r, 3)
    assert x.shape == (4, 3, 1, 8, 8) and y.shape == (3,)


def test_missing_recipe_file_and_bad_toml(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad)


# ------------------------------------------------------------------------------- data
def test_digits_split_is_fixed_and_encodings_are_deterministic():
    test, train = load_split("digits", "test"), load_split("digits", "train")
    assert len(test) == DIGITS_TEST == 360 and len(train) == 1797 - 360
    assert test.images.shape == (360, 1, 8, 8) and 0 <= test.images.min() <= 1
    assert sorted(np.unique(test.labels)) == list(range(10))
    x = test.images[:20]
    direct = encode(x, "direct", 5)
    assert direct.shape == (5, 20, 1, 8, 8) and np.all(direct == x)
    rate = encode(x, "rate", 200, seed=3)
    assert set(np.unique(rate)) <= {0.0, 1.0}
    np.testing.assert_array_equal(rate, encode(x, "rate", 200, seed=3))
    assert abs(rate.mean(0) - x).max() < 0.15  # spike probability = intensity
    lat = encode(x, "latency", 8)
    assert np.all(lat.sum(0) == (x > 0))  # one spike per lit pixel
    first = lat.argmax(0)
    bright, dim = x >= 0.99, (x > 0) & (x < 0.2)
    assert np.all(first[bright] == 0) and np.all(first[dim] >= 6)


# ---------------------------------------------------------------------- end to end
@pytest.mark.lava
def test_tiny_recipe_end_to_end_writes_json_and_html(tmp_path, capsys):
    path = _recipe(tmp_path, neuron="arlif", checks="min_float_spike_agreement = 100.0\n"
                   "max_reference_torch_diff = 1e-9\nmin_fixed_spike_agreement = 50.0")
    js, html = tmp_path / "r.json", tmp_path / "r.html"
    assert run_recipe(path, echo=print, json_path=js, report_path=html) == 0
    out = capsys.readouterr().out
    for stage in ("torch", "reference", "Lava floating_pt", "Lava fixed_pt", "profile"):
        assert stage in out
    assert "check PASS: float_spike_agreement ≥ 100%" in out
    doc = json.loads(js.read_text())
    assert validate_report(doc) == []
    meta = doc["meta"]
    assert meta["kind"] == "deployment" and meta["passed"] is True
    assert meta["samples"] == 4 and meta["recipe"]["simulation"]["steps"] == 4
    s = meta["summary"]
    assert s["reference_accuracy"] == s["torch_accuracy"]
    assert s["reference_torch_diff"] <= 1e-9 and s["float_spike_agreement"] == 100.0
    assert set(meta["deploy"]) == {"floating_pt", "fixed_pt"}
    assert {e["profile"] for e in doc["energy"]} == {"loihi2", "cmos45-fp32"}
    assert doc["counts"]["time_steps"] == 4 and doc["counts"]["batch"] == 4
    page = html.read_text()
    assert "Deployment summary" in page and "Checks" in page and "data:image/png" in page
    assert (tmp_path / "out" / "model.nir").is_file()
    # the quantization report: in the JSON, and the same figures in the HTML
    quant = meta["deploy"]["fixed_pt"]["quantization"]
    weighted = [q for q in quant if q.get("grid_usage") is not None]
    assert weighted and "Fixed-point quantization report (per layer)" in page
    for q in weighted:
        assert 0 < q["grid_usage"] <= 1
        assert f"{100 * q['grid_usage']:.2f}%" in page


@pytest.mark.lava
def test_failing_check_exits_3_after_writing_reports(tmp_path, capsys):
    path = _recipe(tmp_path, encoding="rate", modes='["floating_pt"]',
                   checks="min_reference_accuracy = 101.0\nmin_float_spike_agreement = 100")
    js, html = tmp_path / "r.json", tmp_path / "r.html"
    assert main(["deploy", str(path), "--json", str(js), "--report", str(html),
                 "--samples", "3"]) == 3
    cap = capsys.readouterr()
    assert "check FAIL: reference_accuracy ≥ 101%" in cap.out
    assert "check PASS: float_spike_agreement" in cap.out
    err = cap.err.strip()
    assert len(err.splitlines()) == 1 and "min_reference_accuracy" in err
    assert "min_float_spike_agreement" not in err
    doc = json.loads(js.read_text())  # the reports are written before failing
    assert doc["meta"]["passed"] is False and doc["meta"]["samples"] == 3
    failed = [c for c in doc["meta"]["checks"] if not c["passed"]]
    assert [c["check"] for c in failed] == ["min_reference_accuracy"]
    assert html.is_file()
    assert doc["counts"]["input_events"]  # rate encoding: binary input events counted
    with pytest.raises(CheckFailed, match="min_reference_accuracy"):
        run_recipe(path, echo=lambda s: None, samples=2)


@pytest.mark.lava
def test_recipe_of_a_nir_file_skips_the_torch_stage(tmp_path, capsys):
    # the trained KLIF model: an untrained one leaves a layer silent, which the sanity
    # check (rightly) fails
    from nirbridge.recipes import _build_model

    model = _build_model(load_recipe(DEPLOY / "digits_klif.toml"))
    nirbridge.write(tmp_path / "m.nir", nirbridge.to_nir(model, torch.zeros(1, 1, 8, 8)))
    path = _recipe(tmp_path, modes='["floating_pt"]', replace=(
        'factory = "nirbridge.examples:digits_conv_snn"\nkwargs = { neuron = "lif" }\n'
        'checkpoint = "tiny.pt"', 'nir = "m.nir"'))
    assert run_recipe(path, echo=print, samples=2) == 0
    out = capsys.readouterr().out
    assert "torch (trained module)" not in out and "Lava floating_pt" in out
    assert json.loads((tmp_path / "out" / "report.json").read_text())["meta"]["passed"]
    bad = _recipe(tmp_path, name="bad.toml", modes='["floating_pt"]', checks=(
        "min_torch_accuracy = 50"), replace=(
        'factory = "nirbridge.examples:digits_conv_snn"\nkwargs = { neuron = "lif" }\n'
        'checkpoint = "tiny.pt"', 'nir = "m.nir"'))
    with pytest.raises(RecipeError, match="checks.min_torch_accuracy.*needs a torch model"):
        load_recipe(bad)


@pytest.mark.lava
def test_summary_table_has_the_readme_columns(tmp_path):
    run = execute_recipe(load_recipe(_recipe(tmp_path, modes='["floating_pt"]')),
                         samples=2)
    table = summary_table([run], markdown=True)
    for col in ("torch", "reference", "Lava float", "Lava fixed", "spikes identical",
                "SOPs/sample", "energy loihi2", "energy cmos45-fp32"):
        assert col in table
    assert "| tiny | lif | direct, T=4 | 2 / 2 |" in table


# ----------------------------------------------------------------- shipped recipes
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipes_load_and_checkpoints_are_small(name):
    r = load_recipe(DEPLOY / f"{name}.toml")
    assert r.simulation.samples >= 300 and r.data.dataset == "digits"
    assert r.model.checkpoint.stat().st_size < 100_000
    assert {"fixed_pt", "floating_pt"} <= set(r.simulation.modes)


def test_shipped_checkpoint_reaches_its_accuracy():
    """The committed LIF checkpoint classifies the test split as trained (torch only)."""
    from nirbridge.recipes import _build_model, recipe_inputs

    r = load_recipe(DEPLOY / "digits_lif.toml")
    model = _build_model(r)
    x, y = recipe_inputs(r)
    from nirbridge.neurons import run_steps

    with torch.no_grad():
        pred = run_steps(model, torch.from_numpy(x).float()).sum(0).argmax(-1).numpy()
    assert (pred == y).mean() >= 0.9


def test_cli_train_one_epoch_writes_a_loadable_checkpoint(tmp_path, capsys):
    path = _recipe(tmp_path, checkpoint=False)
    ckpt = tmp_path / "trained.pt"
    assert main(["train", str(path), "--epochs", "1", "-o", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "epoch   1/1" in out and "torch test accuracy" in out
    state = torch.load(ckpt, weights_only=True)
    DigitsConvSNN("lif").load_state_dict(state)


def test_stage_times_count_each_second_once(tmp_path):
    """The stage-time table's total adds the stages' wall times without overlap: the
    calibration happens inside the streamed stage and is not added again (it was, and
    the QAT stage's Lava run was counted in both "QAT streamed" and "Lava QAT")."""
    import time

    from nirbridge.recipes.execute import execute_recipe

    recipe = load_recipe(_recipe(tmp_path, modes='["fixed_pt"]',
                                 checks="min_fixed_spike_agreement = 50.0"))
    t0 = time.perf_counter()
    run = execute_recipe(recipe, samples=8, lava_samples=0, progress=False)
    wall = time.perf_counter() - t0
    assert run.seconds["calibration"] > 0 and run.seconds["stream"] >= run.seconds["calibration"]
    assert run.total_seconds <= wall
    assert run.total_seconds == pytest.approx(sum(
        v for k, v in run.seconds.items() if k in ("export", "stream", "profile")))
