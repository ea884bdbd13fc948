"""The optional ``[verify] backends = [...]`` stage of a recipe (issue 11, item 5): it runs
the agreement matrix on the recipe's test inputs after the other stages, its verdict is a
check of the recipe and its matrix goes into the JSON and HTML reports."""

import json

import pytest
from test_recipes import DEPLOY, _recipe

from nirbridge.errors import CheckFailed, RecipeError
from nirbridge.recipes import load_recipe, run_recipe
from nirbridge.report import validate_report


def _verify_recipe(tmp_path, backends: str):
    """The tiny recipe with no Lava stage, the shipped trained LIF checkpoint (an
    untrained one leaves a layer silent, which the sanity check rightly fails) and
    ``[verify] backends``."""
    path = _recipe(tmp_path, modes="[]", checks="", replace=(
        "[output]", f"[verify]\nbackends = {backends}\n\n[output]"))
    trained = DEPLOY / "checkpoints" / "digits_lif.pt"
    path.write_text(path.read_text().replace('"tiny.pt"', f'"{trained}"'))
    return path


def test_verify_stage_is_a_check_and_lands_in_the_reports(tmp_path, capsys):
    path = _verify_recipe(tmp_path, '["reference", "fixed"]')
    assert load_recipe(path).verify == ("reference", "fixed")
    js, page = tmp_path / "r.json", tmp_path / "r.html"
    assert run_recipe(path, echo=print, json_path=js, report_path=page) == 0
    out = capsys.readouterr().out
    assert "verify: reference, fixed against the reference" in out
    assert "check PASS: verify: reference, fixed within their tolerances" in out
    doc = json.loads(js.read_text())
    assert validate_report(doc) == []
    meta = doc["meta"]
    assert meta["passed"] is True and meta["recipe"]["verify"] == {
        "backends": ["reference", "fixed"]}
    v = meta["verify"]
    assert v["kind"] == "verification" and v["samples"] == 4 and v["passed"] is True
    fixed = v["backends"][1]
    assert fixed["backend"] == "fixed" and fixed["agreement"]["layers"]
    assert [c["check"] for c in meta["checks"]] == ["verify"]
    assert "Verify: agreement with the reference" in page.read_text()


def test_verify_stage_that_verifies_nothing_fails_the_recipe(tmp_path):
    path = _verify_recipe(tmp_path, '["reference"]')
    with pytest.raises(CheckFailed, match="verify"):
        run_recipe(path, echo=lambda s: None)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["meta"]["passed"] is False and doc["meta"]["verify"]["passed"] is False


@pytest.mark.parametrize("backends, field, words", [
    ('["fixed", "nope"]', "verify.backends[1]", "unknown backend 'nope'"),
    ("[]", "verify.backends", "is empty"),
])
def test_bad_verify_table_names_the_field(tmp_path, backends, field, words):
    with pytest.raises(RecipeError) as info:
        load_recipe(_verify_recipe(tmp_path, backends))
    assert f"field '{field}'" in str(info.value) and words in str(info.value)
