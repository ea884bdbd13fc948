"""Recipes are code, and write only where they may (issue 13, item 6): no factory runs
before validation ends; a standard-library callable is never a factory; a ``.py`` factory
resolves against the recipe's folder; ``output.dir`` and the checkpoint ``train`` writes
stay inside the recipe's folder; ``train`` leaves an existing checkpoint untouched
without ``--overwrite``."""

import os

import pytest
import torch
from test_recipes import _recipe

from nirbridge.cli import main
from nirbridge.errors import RecipeError
from nirbridge.recipes import load_recipe

FACTORY = '''\
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("module ran")


def make(**kwargs):
    pathlib.Path(__file__).with_name("CALLED").write_text("factory ran")
    from nirbridge.examples import DigitsConvSNN
    return DigitsConvSNN("lif")
'''


def _with_file_factory(tmp_path, *, replace=None):
    (tmp_path / "models.py").write_text(FACTORY)
    path = _recipe(tmp_path, replace=replace)
    text = path.read_text().replace('factory = "nirbridge.examples:digits_conv_snn"',
                                    'factory = "models.py:make"')
    path.write_text(text.replace('kwargs = { neuron = "lif" }\n', ""))
    return path


def test_no_factory_code_runs_when_validation_fails(tmp_path):
    path = _with_file_factory(tmp_path, replace=("steps = 4", 'steps = "four"'))
    with pytest.raises(RecipeError, match="simulation.steps"):
        load_recipe(path)
    assert not (tmp_path / "IMPORTED").exists() and not (tmp_path / "CALLED").exists()


def test_a_bad_output_dir_is_refused_before_any_factory_code(tmp_path):
    path = _with_file_factory(tmp_path)
    path.write_text(path.read_text().replace(f'dir = "{tmp_path / "out"}"', 'dir = "/tmp"'))
    with pytest.raises(RecipeError, match="output.dir"):
        load_recipe(path)
    assert not (tmp_path / "IMPORTED").exists()


def test_a_py_factory_resolves_against_the_recipe_folder(tmp_path, monkeypatch):
    path = _with_file_factory(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the current folder has no models.py
    r = load_recipe(path)
    assert r.model.factory == f"{(tmp_path / 'models.py').resolve()}:make"
    assert (tmp_path / "CALLED").read_text() == "factory ran"  # after validation: it did


@pytest.mark.parametrize("spec", ["os:system", "subprocess:run", "runpy:run_path",
                                  "builtins:open", "shutil:rmtree"])
def test_a_standard_library_callable_is_refused_and_never_called(tmp_path, spec):
    marker = tmp_path / "PWNED"
    path = _recipe(tmp_path)
    text = path.read_text().replace('"nirbridge.examples:digits_conv_snn"', f'"{spec}"')
    text = text.replace('kwargs = { neuron = "lif" }',
                        f'kwargs = {{ command = "touch {marker}", file = "{marker}", '
                        f'mode = "w", args = ["touch", "{marker}"], path = "{marker}" }}')
    path.write_text(text)
    with pytest.raises(RecipeError, match="standard library"):
        load_recipe(path)
    assert not marker.exists()


@pytest.mark.parametrize("value", ["/tmp/nirbridge-escape", "../escape", "out/../../escape"])
def test_output_dir_outside_the_recipe_folder_is_refused(tmp_path, value):
    sub = tmp_path / "recipe"
    sub.mkdir()
    path = _recipe(sub)
    path.write_text(path.read_text().replace(f'dir = "{sub / "out"}"', f'dir = "{value}"'))
    with pytest.raises(RecipeError, match="field 'output.dir'.*outside the recipe's folder"):
        load_recipe(path)


def test_a_symlink_out_of_the_recipe_folder_is_refused(tmp_path):
    sub, outside = tmp_path / "recipe", tmp_path / "outside"
    sub.mkdir()
    outside.mkdir()
    os.symlink(outside, sub / "link")
    path = _recipe(sub)
    path.write_text(path.read_text().replace(f'dir = "{sub / "out"}"', 'dir = "link/out"'))
    with pytest.raises(RecipeError, match="output.dir"):
        load_recipe(path)
    path.write_text(path.read_text().replace('dir = "link/out"', 'dir = "results/here"'))
    assert load_recipe(path).output_dir == (sub / "results" / "here").resolve()


def test_train_leaves_an_existing_checkpoint_untouched_without_overwrite(tmp_path, capsys):
    path = _recipe(tmp_path)  # writes tiny.pt, the recipe's model.checkpoint
    ckpt = tmp_path / "tiny.pt"
    before = ckpt.read_bytes()
    assert main(["train", str(path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and "already exists" in err[0]
    other = tmp_path / "other.pt"
    other.write_bytes(b"keep me")
    assert main(["train", str(path), "--epochs", "1", "-o", str(other)]) == 2
    capsys.readouterr()
    assert ckpt.read_bytes() == before and other.read_bytes() == b"keep me"
    assert main(["train", str(path), "--epochs", "1", "--overwrite"]) == 0
    assert ckpt.read_bytes() != before
    torch.load(ckpt, weights_only=True)  # a real checkpoint replaced it


def test_train_refuses_a_checkpoint_outside_the_recipe_folder(tmp_path, capsys):
    sub = tmp_path / "recipe"
    sub.mkdir()
    path = _recipe(sub, checkpoint=False)
    path.write_text(path.read_text().replace('checkpoint = "tiny.pt"',
                                             'checkpoint = "../escaped.pt"'))
    assert main(["train", str(path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "model.checkpoint" in err and "outside the recipe's folder" in err
    assert not (tmp_path / "escaped.pt").exists()
