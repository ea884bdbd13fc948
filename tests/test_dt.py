"""dt end to end (issue 9): one place owns the dt rules (nirbridge.passes.resolve_dt); every
command and API that runs or lowers a graph takes --dt/dt=, prints the dt and records it
in its outputs; deploy, profile and export-netx refuse a file without a dt, naming the
frameworks' conventions; --from FRAMEWORK and `nirbridge import` apply a framework's
reading of its own files. A fake front-end stands in for the frameworks' own."""

from __future__ import annotations

import json
import logging
import sys
import types

import h5py
import nir
import numpy as np
import pytest

import nirbridge
from nirbridge.backends import get
from nirbridge.cli import main
from nirbridge.deploy import deploy_graph
from nirbridge.errors import InputError, InvalidParameterError, UnsupportedLayerError
from nirbridge.export.frontends import FRONTENDS
from nirbridge.io.read import from_framework, import_graph
from nirbridge.netx import quantize_for_netx
from nirbridge.passes import (
    DT_FALLBACK,
    FRAMEWORK_DT,
    IMPORT_KEY,
    dt_conventions,
    graph_dt,
    metadata_dt,
    resolve_dt,
)
from nirbridge.verify import compare

FAKE_DT = 2.5e-4
N = 3


def _graph(dt: float | None = None, tau: float = 2.0) -> nir.NIRGraph:
    """Input(2) → Affine → LIF(3) → Output; ``dt`` None: no metadata dt (a foreign file)."""
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([2])),
            "fc": nir.Affine(np.array([[0.5, 0.25], [0.75, -0.5], [0.25, 0.5]]),
                             np.array([0.0, 0.125, -0.0625])),
            "lif": nir.LIF(tau=np.full(N, tau), r=np.ones(N), v_leak=np.zeros(N),
                           v_threshold=np.full(N, 0.3), v_reset=np.zeros(N)),
            "output": nir.Output(np.array([N])),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata={} if dt is None else {"dt": dt}, type_check=False,
    )


def _inputs(t: int = 6) -> np.ndarray:
    return np.round(np.random.default_rng(3).random((t, 2, 2)) * 2 * 16) / 16


@pytest.fixture()
def fake_frontend(monkeypatch):
    """A front-end 'fakenn' (FakeNN: exporter dt 2.5e-4; its reading of a file scales
    every LIF's tau by 1e-3 and says so), registered in FRONTENDS for one test."""
    mod = types.ModuleType("fake_nirbridge_frontend")
    mod.FRAMEWORK = "FakeNN"
    mod.ROUTE = "use the fake exporter"
    mod.DT = FAKE_DT

    def from_file(graph):
        for node in graph.nodes.values():
            if isinstance(node, nir.LIF):
                node.tau = np.asarray(node.tau) * 1e-3
        return graph, ["LIF tau read in seconds (× 1e-3)"]

    mod.from_file = from_file
    mod.adapt = lambda module, name: None
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(FRONTENDS, "fakenn", mod.__name__)
    return mod


def _write(path, graph) -> None:
    nirbridge.write(path, graph)


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- rules
def test_resolve_dt_explicit_then_metadata_then_refuse_or_fall_back(fake_frontend, caplog):
    g = _graph(0.5)
    assert resolve_dt(g, 0.25).dt == 0.25 and resolve_dt(g, 0.25).source == "dt"
    step = resolve_dt(g)
    assert (step.dt, step.source) == (0.5, "the file's metadata")
    assert step.line == "dt = 0.5 (the file's metadata)"
    bare = _graph()
    assert metadata_dt(bare) is None
    with pytest.raises(InputError, match="no dt") as exc:
        resolve_dt(bare, require=True, option="--dt")
    msg = str(exc.value)
    assert "--dt" in msg and "--from FRAMEWORK" in msg and "\n" not in msg
    assert "FakeNN writes dt = 0.00025 (--from fakenn)" in msg
    with caplog.at_level(logging.WARNING):
        step = resolve_dt(bare)
    assert step.dt == DT_FALLBACK == graph_dt(bare) and "fallback" in step.source
    assert "no 'dt'" in caplog.text
    with pytest.raises(InvalidParameterError, match="--dt"):
        resolve_dt(g, -1.0, option="--dt")
    with pytest.raises(InvalidParameterError, match="'dt'"):
        resolve_dt(_graph("fast"))  # type: ignore[arg-type]


def test_framework_conventions_come_from_the_front_ends(fake_frontend):
    assert FRAMEWORK_DT["fakenn"] == FAKE_DT and "fakenn" in list(FRAMEWORK_DT)
    assert "FakeNN writes dt = 0.00025" in dt_conventions()
    assert "Rockpool" in dt_conventions()  # its dt is read from the file: named by rule
    with pytest.raises(KeyError):
        FRAMEWORK_DT["nope"]
    from nirbridge.backends.reference import FRAMEWORK_DT as compat

    assert compat is FRAMEWORK_DT  # still importable from the reference module


# --------------------------------------------------------------------------- the API
def test_from_framework_applies_the_reading_and_records_dt_and_provenance(fake_frontend):
    g, notes = from_framework(_graph(), "fakenn")
    assert np.allclose(g.nodes["lif"].tau, 2e-3)
    assert g.metadata["dt"] == FAKE_DT
    assert any("× 1e-3" in n for n in notes) and any("0.00025" in n for n in notes)
    prov = g.metadata[IMPORT_KEY]
    assert prov["from"] == "fakenn" and prov["notes"] == notes
    assert resolve_dt(g).source == "FakeNN's convention, --from fakenn"
    g2, _ = from_framework(_graph(), "fakenn", dt=1e-3)
    assert g2.metadata["dt"] == 1e-3
    with pytest.raises(UnsupportedLayerError, match="known: .*fakenn.*rockpool"):
        from_framework(_graph(), "nope")


def test_import_graph_round_trips_dt_and_provenance(fake_frontend, tmp_path):
    _write(tmp_path / "f.nir", _graph())
    g, _ = import_graph(tmp_path / "f.nir", "fakenn")
    _write(tmp_path / "g.nir", g)
    back = nirbridge.read(tmp_path / "g.nir")
    assert back.metadata["dt"] == FAKE_DT and back.metadata[IMPORT_KEY]["from"] == "fakenn"
    assert resolve_dt(back, require=True).source == "FakeNN's convention, --from fakenn"
    g, notes = import_graph(tmp_path / "f.nir", dt=1e-3)
    assert g.metadata["dt"] == 1e-3 and g.metadata[IMPORT_KEY]["from"] is None
    with pytest.raises(InputError, match="framework or a dt"):
        import_graph(tmp_path / "f.nir")


def test_deploy_graph_refuses_a_graph_without_dt_before_running():
    with pytest.raises(InputError, match="no dt"):
        deploy_graph(_graph(), _inputs())


def test_compare_records_the_dt_both_backends_ran_with():
    cmp = compare(_graph(1.0), _inputs(), "reference", "fixed", dt=0.5)
    assert cmp.dt == 0.5 and cmp.result_a.info["dt"] == 0.5 == cmp.result_b.info["dt"]
    assert cmp.to_dict()["dt"] == 0.5
    ref = get("reference").run(_graph(1.0), _inputs(), record=True)
    with pytest.raises(InputError, match="dt = 1.0"):
        compare(_graph(1.0), _inputs(), "reference", "fixed", dt=0.5, result_a=ref)


def test_quantize_for_netx_needs_a_dt_and_quantizes_with_it():
    with pytest.raises(InputError, match="no dt"):
        quantize_for_netx(_graph())
    assert quantize_for_netx(_graph(), dt=0.5).dt == 0.5
    assert quantize_for_netx(_graph(1.0)).dt == 1.0


# ------------------------------------------------------------------------------ CLI
def test_run_falls_back_with_a_warning_and_records_the_dt(tmp_path, capsys, caplog):
    _write(tmp_path / "f.nir", _graph())
    np.save(tmp_path / "x.npy", _inputs())
    out = tmp_path / "o.npz"
    assert main(["run", str(tmp_path / "f.nir"), "--input", str(tmp_path / "x.npy"),
                 "-o", str(out)]) == 0
    cap = capsys.readouterr()
    assert "dt = 1 (fallback: the file has no dt)" in cap.out
    assert "no 'dt'" in caplog.text  # the logged warning (stderr outside pytest)
    with np.load(out) as z:
        assert float(z["dt"]) == 1.0
    assert main(["run", str(tmp_path / "f.nir"), "--input", str(tmp_path / "x.npy"),
                 "--dt", "0.5", "-o", str(out)]) == 0
    assert "dt = 0.5 (--dt)" in capsys.readouterr().out
    with np.load(out) as z:
        assert float(z["dt"]) == 0.5
        expected = get("reference").run(_graph(), _inputs(), dt=0.5).outputs
        np.testing.assert_array_equal(z["output"], expected)


@pytest.mark.parametrize("command", ["deploy", "profile", "export-netx"])
def test_lowering_commands_refuse_a_file_without_dt(command, fake_frontend, tmp_path,
                                                    capsys):
    _write(tmp_path / "f.nir", _graph())
    np.save(tmp_path / "x.npy", _inputs())
    outputs = {"deploy": ["--json", "r.json", "-o", "o.npz"],
               "profile": ["--json", "r.json", "--report", "r.html"],
               "export-netx": ["-o", "m.net"]}[command]
    argv = [command, str(tmp_path / "f.nir"), *(
        ["--input", str(tmp_path / "x.npy")] if command != "export-netx" else []),
        *[str(tmp_path / a) if "." in a else a for a in outputs]]
    assert main(argv) == 2
    err = _err(capsys)
    assert "no dt" in err and "--dt" in err and "--from FRAMEWORK" in err
    assert "FakeNN writes dt = 0.00025" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.nir", "x.npy"]


def test_profile_and_export_netx_record_the_dt(tmp_path, capsys):
    _write(tmp_path / "f.nir", _graph())
    np.save(tmp_path / "x.npy", _inputs())
    js, md = tmp_path / "p.json", tmp_path / "p.md"
    assert main(["profile", str(tmp_path / "f.nir"), "--input", str(tmp_path / "x.npy"),
                 "--dt", "0.5", "--json", str(js), "--report", str(md)]) == 0
    assert "dt = 0.5 (--dt)" in capsys.readouterr().out
    meta = json.loads(js.read_text())["meta"]
    assert meta["dt"] == 0.5 and meta["dt_source"] == "--dt" and meta["sanity"] == []
    page = md.read_text()
    assert "## Run" in page and "| reference | 0.5 | --dt | ok |" in page
    net = tmp_path / "m.net"
    assert main(["export-netx", str(tmp_path / "f.nir"), "--dt", "0.5", "-o", str(net)]) == 0
    assert "dt = 0.5" in capsys.readouterr().out
    with h5py.File(net) as f:
        assert f.attrs["dt"] == 0.5


def test_from_on_the_commands_prints_notes_and_uses_the_convention(fake_frontend, tmp_path,
                                                                   capsys):
    _write(tmp_path / "f.nir", _graph(tau=2.0 / 1e-3 * FAKE_DT))  # read: dt/τ = 0.5
    np.save(tmp_path / "x.npy", _inputs())
    out = tmp_path / "o.npz"
    assert main(["run", str(tmp_path / "f.nir"), "--input", str(tmp_path / "x.npy"),
                 "--from", "fakenn", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "--from fakenn: LIF tau read in seconds" in text
    assert "dt = 0.00025 (FakeNN's convention, --from fakenn)" in text
    read_as, _ = from_framework(nirbridge.read(tmp_path / "f.nir"), "fakenn")
    with np.load(out) as z:
        assert float(z["dt"]) == FAKE_DT
        np.testing.assert_array_equal(z["output"],
                                      get("reference").run(read_as, _inputs()).outputs)
        assert z["output"].sum() > 0
    assert main(["inspect", str(tmp_path / "f.nir"), "--from", "fakenn", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dt"] == FAKE_DT and info["notes"] and info["sanity"] == []
    assert main(["inspect", str(tmp_path / "f.nir")]) == 0
    assert "dt = none in the file" in capsys.readouterr().out
    net = tmp_path / "m.net"
    assert main(["export-netx", str(tmp_path / "f.nir"), "--from", "fakenn",
                 "-o", str(net)]) == 0
    with h5py.File(net) as f:
        assert f.attrs["dt"] == FAKE_DT


def test_unknown_framework_is_one_line_listing_the_known_ones(fake_frontend, tmp_path,
                                                              capsys):
    _write(tmp_path / "f.nir", _graph())
    np.save(tmp_path / "x.npy", _inputs())
    for argv in (["run", "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "o.npz")],
                 ["import", "-o", str(tmp_path / "g.nir")]):
        assert main([argv[0], str(tmp_path / "f.nir"), *argv[1:], "--from", "nope"]) == 2
        err = _err(capsys)
        assert "'nope'" in err and all(name in err for name in FRONTENDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.nir", "x.npy"]


def test_import_writes_dt_and_provenance_so_later_commands_need_nothing(fake_frontend,
                                                                        tmp_path, capsys):
    _write(tmp_path / "f.nir", _graph(tau=2.0 / 1e-3 * FAKE_DT))
    out = tmp_path / "g.nir"
    assert main(["import", str(tmp_path / "f.nir"), "--from", "fakenn", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "--from fakenn: LIF tau read in seconds" in text and "dt = 0.00025" in text
    g = nirbridge.read(out)
    assert g.metadata["dt"] == FAKE_DT and g.metadata[IMPORT_KEY]["from"] == "fakenn"
    np.save(tmp_path / "x.npy", _inputs())
    assert main(["profile", str(out), "--input", str(tmp_path / "x.npy"),
                 "--json", str(tmp_path / "p.json")]) == 0
    assert "dt = 0.00025 (FakeNN's convention, --from fakenn)" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "f.nir"), "-o", str(tmp_path / "h.nir")]) == 2
    assert "--from FRAMEWORK" in _err(capsys) and not (tmp_path / "h.nir").exists()
    assert main(["import", str(tmp_path / "f.nir"), "--dt", "0.001", "-o",
                 str(tmp_path / "h.nir")]) == 0
    assert nirbridge.read(tmp_path / "h.nir").metadata["dt"] == 0.001


# --------------------------------------------------------------------------- recipes
RECIPE = """\
name = "dtrecipe"

[model]
nir = "{nir}"
{model}

[data]
dataset = "digits"
encoding = "direct"

[simulation]
steps = 4
samples = 3
modes = []

[profile]
targets = ["loihi2"]

[output]
dir = "{out}"
"""


def _digits_graph(dt: float | None, vth: float = 0.3) -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 8, 8])),
               "flat": nir.Flatten(start_dim=0, end_dim=-1,
                                   input_type={"input": np.array([1, 8, 8])}),
               "fc": nir.Affine(rng.uniform(0, 0.2, (N, 64)), np.zeros(N)),
               "lif": nir.LIF(tau=np.full(N, 2.0), r=np.ones(N), v_leak=np.zeros(N),
                              v_threshold=np.full(N, vth), v_reset=np.zeros(N)),
               "output": nir.Output(np.array([N]))},
        edges=[("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata={} if dt is None else {"dt": dt}, type_check=False)


def _dt_recipe(tmp_path, graph, model: str = ""):
    from nirbridge.recipes import load_recipe

    nirbridge.write(tmp_path / "m.nir", graph)
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(nir=tmp_path / "m.nir", model=model, out=tmp_path / "out"))
    return load_recipe(path)


def test_recipe_of_a_file_without_dt_needs_model_dt_and_records_it(tmp_path, fake_frontend):
    from nirbridge.errors import RecipeError
    from nirbridge.recipes import execute_recipe, write_recipe_reports

    with pytest.raises(RecipeError, match="model.dt.*no dt.*FakeNN writes"):
        execute_recipe(_dt_recipe(tmp_path, _digits_graph(None)))
    lines: list[str] = []
    run = execute_recipe(_dt_recipe(tmp_path, _digits_graph(None), "dt = 0.5"),
                         echo=lines.append)
    assert run.dt == 0.5 and run.dt_source == "model.dt" and not run.failed
    assert any("reference executor, dt = 0.5 (model.dt)" in ln for ln in lines)
    (js,) = write_recipe_reports(run, tmp_path / "r.json", None)
    meta = json.loads(js.read_text())["meta"]
    assert meta["dt"] == 0.5 and meta["summary"]["dt"] == 0.5 and meta["sanity"] == []
    run = execute_recipe(_dt_recipe(tmp_path, _digits_graph(None), 'from = "fakenn"'))
    assert run.dt == FAKE_DT and run.dt_source == "FakeNN's convention, --from fakenn"
    run = execute_recipe(_dt_recipe(tmp_path, _digits_graph(1.0)), dt=0.25)
    assert (run.dt, run.dt_source) == (0.25, "--dt")


def test_recipe_with_a_silent_reference_fails_with_exit_3(tmp_path, capsys):
    recipe = _dt_recipe(tmp_path, _digits_graph(1.0, vth=1e6))
    assert main(["deploy", str(recipe.path)]) == 3
    cap = capsys.readouterr()
    assert "sanity FAILED: reference run: spiking layer 'lif'" in cap.out
    assert cap.err.strip().count("\n") == 0 and "never spiked" in cap.err
    meta = json.loads((tmp_path / "out" / "report.json").read_text())["meta"]
    assert meta["passed"] is False and meta["sanity"][0]["kind"] == "silent"


# --------------------------------------------------------- a real framework's own file
def test_an_snntorch_file_end_to_end_with_from_and_import(tmp_path, capsys):
    snn = pytest.importorskip("snntorch")
    import torch
    from snntorch.export_nir import export_to_nir

    from nirbridge.export.frontends import frontend

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        snn.Leaky(beta=torch.linspace(0.5, 0.9, 8), threshold=torch.full((8,), 0.5),
                  init_hidden=True, reset_mechanism="zero"),
        torch.nn.Linear(8, 4),
        snn.Leaky(beta=torch.full((4,), 0.5), threshold=torch.full((4,), 0.25),
                  init_hidden=True, reset_mechanism="zero", output=True))
    x = (torch.rand(16, 3, 6) * 1.5).numpy().astype(np.float64)
    nir.write(tmp_path / "snn.nir", export_to_nir(net, torch.zeros(6)))
    np.save(tmp_path / "x.npy", x)
    args = [str(tmp_path / "snn.nir"), "--input", str(tmp_path / "x.npy")]
    assert main(["profile", *args, "--json", str(tmp_path / "p.json")]) == 2
    assert "snnTorch writes dt = 0.0001 (--from snntorch)" in _err(capsys)
    out = tmp_path / "o.npz"
    assert main(["run", *args, "--from", "snntorch", "-o", str(out)]) == 0
    assert "dt = 0.0001 (snnTorch's convention, --from snntorch)" in capsys.readouterr().out
    read_as, _ = frontend("snntorch").from_file(nirbridge.read(tmp_path / "snn.nir"))
    expected = get("reference").run(read_as, x).outputs
    with np.load(out) as z:
        assert float(z["dt"]) == 1e-4 and z["output"].sum() > 0
        np.testing.assert_array_equal(z["output"], expected)
    assert main(["import", str(tmp_path / "snn.nir"), "--from", "snntorch",
                 "-o", str(tmp_path / "imported.nir")]) == 0
    assert main(["run", str(tmp_path / "imported.nir"), "--input", str(tmp_path / "x.npy"),
                 "-o", str(out)]) == 0
    assert "dt = 0.0001 (snnTorch's convention, --from snntorch)" in capsys.readouterr().out
    with np.load(out) as z:
        np.testing.assert_array_equal(z["output"], expected)
