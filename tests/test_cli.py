"""The nirbridge command: export → inspect → run (every backend of the table), and
one-line errors with no output file."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from tiny_graph import B, N, T, backend_params, needs_lava, tiny_graph, tiny_inputs

import nirbridge
from nirbridge.backends import ALIASES, BACKENDS, RunResult, names
from nirbridge.cli import main
from nirbridge.io.decode import unseal
from nirbridge.textfmt import markdown_table, text_table

MODEL_FILE = textwrap.dedent(
    """
    import torch
    from nirbridge.neurons import LIF, StatefulSequential

    def make():
        torch.manual_seed(0)
        return StatefulSequential(
            torch.nn.Linear(4, 6), LIF(tau=2.0, v_threshold=0.3),
            torch.nn.Linear(6, 3), LIF(tau=4.0, v_threshold=0.2, reset="subtract"),
        )

    def make_maxpool():
        return StatefulSequential(
            torch.nn.Conv2d(1, 2, 3), torch.nn.MaxPool2d(2), LIF(tau=2.0),
        )

    def not_a_model():
        return 42
    """
)


@pytest.fixture()
def model_file(tmp_path):
    path = tmp_path / "mymodels.py"
    path.write_text(MODEL_FILE)
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "Traceback" not in err
    return err


def test_export_inspect_run_round_trip(model_file, tmp_path, capsys):
    out = tmp_path / "m.nir"
    assert main(["export", f"{model_file}:make", "--input-shape", "4", "-o", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    types = sorted(n["type"] for n in info["nodes"])
    assert types.count("Affine") == 2
    assert "SubtractiveLIF" in info["custom_nodes"] or any(
        n["type"] == "SubtractiveLIF" for n in info["nodes"])
    assert info["dt"] == 1.0
    assert main(["inspect", str(out)]) == 0
    table = capsys.readouterr().out
    assert "SubtractiveLIF *" in table and "dt = 1.0" in table

    x = (np.random.default_rng(0).random((12, 2, 4)) * 2).astype(np.float64)
    np.save(tmp_path / "in.npy", x)
    res = tmp_path / "res.npz"
    assert main(["run", str(out), "--input", str(tmp_path / "in.npy"), "-o", str(res)]) == 0
    got = np.load(res)["output"]
    expected = nirbridge.run(nirbridge.read(out), torch.from_numpy(x)).numpy()
    assert got.shape == (12, 2, 3)
    np.testing.assert_array_equal(got, expected)
    assert float(np.load(res)["dt"]) == 1.0  # the dt used is recorded
    assert "dt = 1 (the file's metadata)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv_tail", "needle"),
    [
        (["make_maxpool", "--input-shape", "1,8,8"], "MaxPool2d"),
        (["not_a_model", "--input-shape", "4"], "not a torch.nn.Module"),
        (["missing_factory", "--input-shape", "4"], "missing_factory"),
        (["make", "--input-shape", "4,a"], "--input-shape"),
    ],
)
def test_export_errors_are_one_line_and_leave_no_file(model_file, tmp_path, capsys,
                                                      argv_tail, needle):
    out = tmp_path / "bad.nir"
    rc = main(["export", f"{model_file}:{argv_tail[0]}", *argv_tail[1:], "-o", str(out)])
    assert rc != 0
    assert needle in _one_line_error(capsys)
    assert not out.exists()
    assert list(tmp_path.glob("*.tmp")) == []


def test_export_with_weights_loads_checkpoint(model_file, tmp_path):
    sys.path.insert(0, str(tmp_path))
    try:
        import mymodels  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    model = mymodels.make()
    with torch.no_grad():
        model[0].weight.fill_(0.125)
    ckpt = tmp_path / "w.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    out = tmp_path / "w.nir"
    assert main(["export", f"{model_file}:make", "--input-shape", "4", "--weights", str(ckpt),
                 "-o", str(out)]) == 0
    graph = nirbridge.read(out)
    weights = [n.weight for n in graph.nodes.values() if type(n).__name__ == "Affine"]
    assert any(np.all(w == 0.125) for w in weights)


def test_run_errors_leave_no_output(model_file, tmp_path, capsys):
    nir_path = tmp_path / "m.nir"
    assert main(["export", f"{model_file}:make", "--input-shape", "4", "-o", str(nir_path)]) == 0
    capsys.readouterr()
    np.save(tmp_path / "bad.npy", np.zeros((5, 2, 7)))
    res = tmp_path / "res.npz"
    rc = main(["run", str(nir_path), "--input", str(tmp_path / "bad.npy"), "-o", str(res)])
    assert rc != 0
    assert "(7,)" in _one_line_error(capsys)
    assert not res.exists()
    rc = main(["run", str(nir_path), "--input", str(tmp_path / "nope.npy"), "-o", str(res)])
    assert rc != 0 and "nope.npy" in _one_line_error(capsys)
    rc = main(["run", str(nir_path), "--input", str(tmp_path / "bad.npy"), "--backend", "x",
               "-o", str(res)])
    err = _one_line_error(capsys)
    assert rc != 0 and "unknown backend" in err
    assert rc == 2 and "'x'" in err and all(name in err for name in names())
    assert not res.exists()


def test_inspect_of_a_non_nir_file_fails_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    assert main(["inspect", str(bad)]) != 0
    assert "bad.nir" in _one_line_error(capsys)


def test_console_script_exit_code_and_message(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 10)  # an HDF5 signature, then nothing
    proc = subprocess.run([sys.executable, "-m", "nirbridge.cli", "inspect", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "bad.nir" in proc.stderr


def test_python_dash_m_nirbridge_runs_the_cli(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    proc = subprocess.run([sys.executable, "-m", "nirbridge", "inspect", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("nirbridge inspect: error:") and "bad.nir" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "nirbridge", "targets"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "loihi2" in proc.stdout


def test_version_is_the_package_version():
    proc = subprocess.run([sys.executable, "-m", "nirbridge", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"nirbridge {nirbridge.__version__}"


def test_load_factory_is_still_importable_from_the_cli():
    from nirbridge.cli import load_factory as from_cli
    from nirbridge.factory import load_factory

    assert from_cli is load_factory
    assert load_factory("nirbridge.examples:digits_conv_snn")().__class__.__name__ == (
        "DigitsConvSNN")


def test_profile_writes_json_and_html_and_fails_cleanly(model_file, tmp_path, capsys):
    from nirbridge.report import validate_report

    nir_path = tmp_path / "m.nir"
    assert main(["export", f"{model_file}:make", "--input-shape", "4", "-o", str(nir_path)]) == 0
    np.save(tmp_path / "in.npy", np.random.default_rng(1).random((10, 3, 4)) * 2)
    js, page = tmp_path / "p.json", tmp_path / "p.html"
    argv = ["profile", str(nir_path), "--input", str(tmp_path / "in.npy"), "--target", "loihi2",
            "--target", "cmos45-fp32", "--json", str(js), "--report", str(page)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "model estimate (profile cmos45-fp32, evidence derived)" in table
    doc = json.loads(js.read_text())
    assert validate_report(doc) == []
    assert [e["profile"] for e in doc["energy"]] == ["loihi2", "cmos45-fp32"]
    assert page.read_text().count("data:image/png;base64,") >= 3

    bad = [a if a != "loihi2" else "no-such-chip" for a in argv]
    js.unlink()
    assert main(bad) != 0
    assert "no-such-chip" in _one_line_error(capsys)
    assert not js.exists()


def test_targets_lists_every_profile_with_evidence(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in ("cmos45-fp32", "cmos45-int8", "loihi", "loihi2", "truenorth", "speck",
                 "xylo-audio2", "gpu-h100"):
        assert name in out
    assert "proxy" in out and "measured" in out


def _bad_file(kind: str, path) -> str:
    """Write a .nir file broken in one way; return the name the error must mention."""
    import h5py
    import nir

    from nirbridge.io import write

    nodes = {
        "input": nir.Input(np.array([3])),
        "fc": nir.Affine(np.ones((4, 3)), np.zeros(4)),
        "lif": nir.LIF(tau=np.full(4, 2.0), r=np.ones(4), v_leak=np.zeros(4),
                       v_threshold=np.ones(4), v_reset=np.zeros(4)),
        "output": nir.Output(np.array([4])),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    needle = "fc"
    if kind == "nan":
        nodes["fc"].weight[1, 2] = np.nan
    elif kind == "edge":
        edges.append(("lif", "ghost"))
        needle = "ghost"
    elif kind == "shape":
        nodes["fc"] = nir.Affine(np.ones((5, 3)), np.zeros(5))
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)
    write(path, graph, check=False)
    if kind == "unknown":
        with h5py.File(path, "r+") as f:
            unseal(f)  # a hand edit: the file is no longer nirbridge's own
            del f["node/nodes/lif/type"]
            f["node/nodes/lif"].create_dataset("type", data="FancyLIF",
                                               dtype=h5py.string_dtype())
        needle = "FancyLIF"
    elif kind == "missing":
        with h5py.File(path, "r+") as f:
            unseal(f)  # a hand edit: the file is no longer nirbridge's own
            del f["node/nodes/lif/tau"]
        needle = "tau"
    return needle


@pytest.mark.parametrize("kind", ["nan", "edge", "shape", "unknown", "missing"])
def test_run_on_a_broken_file_is_one_line_with_no_output(kind, tmp_path, capsys):
    path = tmp_path / "broken.nir"
    needle = _bad_file(kind, path)
    np.save(tmp_path / "x.npy", np.ones((4, 1, 3)))
    res = tmp_path / "res.npz"
    rc = main(["run", str(path), "--input", str(tmp_path / "x.npy"), "-o", str(res)])
    assert rc != 0
    err = _one_line_error(capsys)
    assert needle in err and "broken.nir" in err
    assert not res.exists()
    assert list(tmp_path.glob("*.tmp")) == []


# ------------------------------------------------------------ every backend, one graph
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``nirbridge run --backend NAME`` on the tiny graph: NAME → the saved ``output``,
    each backend run once for the whole module."""
    tmp = tmp_path_factory.mktemp("tiny")
    nirbridge.write(tmp / "tiny.nir", tiny_graph())
    np.save(tmp / "x.npy", tiny_inputs())
    outputs: dict[str, np.ndarray] = {}

    def run(name: str) -> np.ndarray:
        if name not in outputs:
            res = tmp / f"{name}.npz"
            assert main(["run", str(tmp / "tiny.nir"), "--input", str(tmp / "x.npy"),
                         "--backend", name, "-o", str(res)]) == 0
            with np.load(res) as z:
                assert list(z) == ["output", "dt"] and float(z["dt"]) == 1.0  # dt recorded
                outputs[name] = z["output"]
        return outputs[name]

    return run


@pytest.mark.parametrize("name", backend_params(names()))
def test_run_works_with_every_backend_of_the_table(name, tiny_run, capsys):
    out = tiny_run(name)
    assert out.dtype == np.float64 and out.shape == (T, B, N)
    if name == "sinabs":  # Sinabs reads NIR's LIF as its multi-spike LIF: spike counts
        assert np.array_equal(out, np.floor(out)) and out.min() >= 0
    else:
        assert set(np.unique(out)) <= {0.0, 1.0}  # spikes
    assert f"output {(T, B, N)}" in capsys.readouterr().out


def test_reference_run_of_the_cli_is_the_api_s(tiny_run):
    out = tiny_run("reference")
    assert out.sum() > 0  # the equalities below compare spikes, not silence
    np.testing.assert_array_equal(out, nirbridge.run(tiny_graph(), tiny_inputs()).numpy())


@pytest.mark.lava
@needs_lava
def test_run_lava_backends_match_their_golden_models(tiny_run):
    np.testing.assert_array_equal(tiny_run("lava-fixed"), tiny_run("fixed"))
    np.testing.assert_array_equal(tiny_run("lava-float"), tiny_run("reference"))


@pytest.mark.parametrize("command", ["run", "profile"])
def test_backend_help_lists_every_backend_and_alias(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: no hyphen breaks
    with pytest.raises(SystemExit):
        main([command, "--help"])
    line = next(ln for ln in capsys.readouterr().out.splitlines()
                if ln.strip().startswith("--backend"))
    for name in [*BACKENDS, *ALIASES]:
        assert name in line, (name, line)


@pytest.mark.parametrize("command", ["run", "profile", "deploy", "export-netx", "inspect",
                                     "import"])
def test_dt_and_from_options_on_every_command_that_runs_or_lowers(command, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "--dt DT" in text and "--from FRAMEWORK" in text
    for name in ("snntorch", "norse", "spikingjelly", "sinabs", "rockpool"):
        assert name in text
    assert ("--strict" in text) == (command != "inspect")


def test_top_level_api_lists_and_runs_the_table_s_backends():
    assert nirbridge.available_backends() == names()
    res = nirbridge.run_backend(tiny_graph(), tiny_inputs(), "fixed", record=True)
    assert isinstance(res, RunResult) and res.info["backend"] == "fixed"
    assert res.outputs.dtype == np.float64 and "lif" in res.records
    out = nirbridge.run(tiny_graph(), tiny_inputs(), backend="fixed")
    assert torch.is_tensor(out)
    np.testing.assert_array_equal(out.numpy(), res.outputs)


def test_describe_is_a_library_function_still_importable_from_the_cli():
    from nirbridge.cli import describe as from_cli
    from nirbridge.describe import describe

    assert from_cli is describe
    info = describe(tiny_graph())
    assert [n["name"] for n in info["nodes"]] == ["input", "fc", "lif", "output"]
    assert info["parameters"] == 6 + 3 + 5 * N and info["custom_nodes"] == []
    assert info["nodes"][2]["compare"] and info["dt"] == 1.0


def test_text_tables():
    rows = [("a", "bb", "c"), ("long", "", "x y")]
    assert text_table(rows) == "a     bb  c\n----  --  ---\nlong      x y"
    assert text_table(rows, indent="  ").splitlines()[1] == "  ----  --  ---"
    assert text_table(rows, free_last=True) == ("a     bb  c\n----  --  -\n"
                                                "long      x y")
    assert markdown_table(rows) == "| a | bb | c |\n|---|---|---|\n| long |  | x y |"
