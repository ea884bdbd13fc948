"""Every error is one line naming the input (issue 13, item 5): the cases that ended in a
generic ``internal error: ExcType`` (T = 0, B = 0, string inputs, ``--steps`` past memory,
``--raster`` naming no node, non-UTF-8 or deeply nested TOML, bad labels...) now end in one
``nirbridge CMD: error: ...`` line and exit code 2; warnings before an error are one line
each."""

import warnings

import nir
import numpy as np
import pytest

import nirbridge.cli.inspect as inspect_cmd
from nirbridge.cli import main
from nirbridge.errors import InputError

N = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("messages")
    g = nir.NIRGraph(
        nodes={"in": nir.Input(np.array([N])),
               "fc": nir.Affine(np.eye(N), np.zeros(N)),
               "lif1": nir.LIF(tau=np.full(N, 2.0), r=np.ones(N), v_leak=np.zeros(N),
                               v_threshold=np.full(N, 0.5), v_reset=np.zeros(N)),
               "out": nir.Output(np.array([N]))},
        edges=[("in", "fc"), ("fc", "lif1"), ("lif1", "out")], metadata={"dt": 1.0})
    nir.write(str(d / "ok.nir"), g)
    arrays = {"x": np.ones((4, 2, N)), "x1": np.ones((1, 2, N)), "t0": np.ones((0, 2, N)),
              "b0": np.ones((4, 0, N)), "str": np.full((4, 2, N), "a"),
              "obj": np.array([[[None] * N] * 2] * 4, dtype=object),
              "lab_str": np.array(["a", "b"]), "lab_neg": np.array([-1, 0]),
              "lab_frac": np.array([0.5, 1.0])}
    for k, v in arrays.items():
        np.save(d / f"{k}.npy", v, allow_pickle=True)
    (d / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    (d / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    (d / "deep_tables.toml").write_text("a = " + "{x=" * 2000 + "1" + "}" * 2000 + "\n")
    return d


def _cases(d):
    ok, x = str(d / "ok.nir"), str(d / "x.npy")
    run = ["run", ok, "-o", str(d / "o.npz"), "--input"]
    return [
        (run + [str(d / "t0.npy")], "T = 0"),
        (run + [str(d / "b0.npy")], "B = 0"),
        (run + [str(d / "str.npy")], "strings"),
        (run + [str(d / "obj.npy")], "not a .npy array"),  # pickled objects: never loaded
        (["profile", ok, "--input", str(d / "t0.npy")], "T = 0"),
        (["verify", ok, "--input", str(d / "b0.npy")], "B = 0"),
        (["deploy", ok, "--input", str(d / "str.npy")], "strings"),
        (["deploy", ok, "--input", str(d / "x1.npy"), "--steps", str(10 ** 12)],
         "--steps"),
        (["profile", ok, "--input", x, "--raster", "nope"], "--raster 'nope'"),
        (["verify", ok, "--input", x, "--labels", str(d / "lab_str.npy")], "--labels"),
        (["verify", ok, "--input", x, "--labels", str(d / "lab_neg.npy")], "label -1"),
        (["verify", ok, "--input", x, "--labels", str(d / "lab_frac.npy")], "label 0.5"),
        (["deploy", str(d / "latin1.toml")], "not UTF-8"),
        (["train", str(d / "latin1.toml")], "not UTF-8"),
        (["deploy", str(d / "deep.toml")], "nested too deeply"),
        (["deploy", str(d / "deep_tables.toml")], "nested too deeply"),
        (["profile", ok, "--input", x, "--target", str(d / "deep.toml")],
         "nested too deeply"),
        (["profile", ok, "--input", x, "--target", str(d / "latin1.toml")], "not UTF-8"),
        (["export", "os:system", "--input-shape", "3", "-o", str(d / "e.nir")],
         "standard library"),
        (["export", "builtins:open", "--input-shape", "3", "-o", str(d / "e.nir")],
         "standard library"),
    ]


def test_each_former_internal_error_is_one_line_naming_the_input(files, capsys):
    for argv, words in _cases(files):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(err) == 1, (argv, err)
        assert err[0].startswith(f"nirbridge {argv[0]}: error: "), (argv, err)
        assert "internal error" not in err[0] and words in err[0], (argv, err)
    assert not (files / "o.npz").exists() and not (files / "e.nir").exists()


def test_a_library_warning_before_an_error_is_one_line(monkeypatch, capsys, files):
    def noisy(args):
        warnings.warn("first line\nsecond line", RuntimeWarning, stacklevel=1)
        raise InputError("the error\nwith a second line")

    monkeypatch.setattr(inspect_cmd, "run_command", noisy)
    assert main(["inspect", str(files / "ok.nir")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nirbridge inspect: warning: RuntimeWarning: first line",
                   "nirbridge inspect: error: the error"]


def test_a_recipe_whose_steps_cannot_fit_in_memory_names_the_field(tmp_path, capsys):
    from test_recipes import _recipe

    path = _recipe(tmp_path, replace=("steps = 4", f"steps = {10 ** 12}"))
    assert main(["deploy", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "field 'simulation.steps'" in err[0] and "GiB" in err[0], err
