"""`nirbridge deploy FILE.nir`: agreement table, reports, and clean failures (issue 3)."""

import json

import nir
import numpy as np
import pytest

import nirbridge
from nirbridge.cli import main
from nirbridge.deploy import deploy_graph, prepare_inputs
from nirbridge.errors import InputError
from nirbridge.profile import load_profile

pytestmark = pytest.mark.lava


def _graph(neuron: nir.NIRNode) -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([4])),
            "fc": nir.Affine(rng.normal(0, 0.8, (6, 4)), rng.normal(0, 0.1, 6)),
            "lif": neuron,
            "output": nir.Output(np.array([6])),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata={"dt": 1.0}, type_check=False,
    )


def _lif(n: int = 6) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.full(n, 0.3), v_reset=np.zeros(n))


def test_deploy_graph_float_agrees_and_reports_accuracy():
    graph = _graph(_lif())
    x = np.random.default_rng(1).random((1, 3, 4)) * 2
    labels = np.array([0, 1, 2])
    res = deploy_graph(graph, x, steps=6, labels=labels)
    assert res.steps == 6 and res.samples == 3
    (layer,) = res.layers
    assert layer.reference_spikes > 0
    assert layer.identical == 1.0 and layer.first_divergent_step is None
    assert res.output_identical == 1.0 and res.prediction_agreement == 1.0
    assert res.reference_accuracy == res.lava_accuracy
    assert res.accuracy_drop == 0.0


def test_prepare_inputs_repeats_or_truncates_and_rejects_bad_steps():
    x = np.arange(6, dtype=float).reshape(1, 2, 3)
    assert prepare_inputs(x, 4).shape == (4, 2, 3)
    assert np.all(prepare_inputs(x, 4)[3] == x[0])
    y = np.zeros((5, 2, 3))
    assert prepare_inputs(y, 2).shape == (2, 2, 3)
    with pytest.raises(InputError, match="--steps 9"):
        prepare_inputs(y, 9)
    with pytest.raises(InputError, match="NaN"):
        prepare_inputs(np.full((2, 1, 3), np.nan), None)


def test_cli_deploy_writes_reports(tmp_path, capsys):
    path = tmp_path / "g.nir"
    nirbridge.write(path, _graph(_lif()))
    np.save(tmp_path / "x.npy", np.random.default_rng(2).random((5, 2, 4)) * 2)
    js, npz = tmp_path / "r.json", tmp_path / "o.npz"
    assert main(["deploy", str(path), "--input", str(tmp_path / "x.npy"), "--json", str(js),
                 "-o", str(npz)]) == 0
    out = capsys.readouterr().out
    assert "identical" in out and "100.000%" in out
    doc = json.loads(js.read_text())
    assert doc["mode"] == "floating_pt" and doc["layers"][0]["identical"] == 1.0
    saved = np.load(npz)
    np.testing.assert_array_equal(saved["output"], saved["reference"])
    assert "dt = 1 (the file's metadata)" in out and "NOT a sound" not in out
    assert doc["dt"] == 1.0 and doc["sound"] is True and doc["findings"] == []
    assert float(saved["dt"]) == 1.0


def test_cli_deploy_of_a_file_without_dt_refuses_then_deploys_with_dt(tmp_path, capsys):
    graph = _graph(_lif())
    graph.metadata = {}
    path = tmp_path / "g.nir"
    nirbridge.write(path, graph)
    np.save(tmp_path / "x.npy", np.random.default_rng(2).random((5, 2, 4)) * 2)
    js, npz = tmp_path / "r.json", tmp_path / "o.npz"
    argv = ["deploy", str(path), "--input", str(tmp_path / "x.npy"), "--json", str(js),
            "-o", str(npz)]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no dt" in err and "--dt" in err and "\n" not in err
    assert not js.exists() and not npz.exists()
    assert main([*argv, "--dt", "0.5"]) == 0
    assert "dt = 0.5 (--dt)" in capsys.readouterr().out
    doc = json.loads(js.read_text())
    assert doc["dt"] == 0.5 and doc["dt_source"] == "--dt" and doc["sound"] is True
    assert doc["layers"][0]["identical"] == 1.0 and doc["layers"][0]["reference_spikes"] > 0
    assert float(np.load(npz)["dt"]) == 0.5
    res = deploy_graph(graph, np.load(tmp_path / "x.npy"), dt=0.5)
    assert res.dt == 0.5 and res.dt_source == "dt" and res.sound


def _fails_cleanly(argv, capsys, needle, *outputs):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert needle in err and "\n" not in err and "Traceback" not in err
    for p in outputs:
        assert not p.exists()


def test_cli_deploy_refuses_an_unmappable_node(tmp_path, capsys):
    # Threshold (MaxPool on spikes) and short delays lower now; a 100-step delay line does
    # not fit Lava's (at most 62 steps): the one node Lava cannot map
    graph = _graph(nir.Delay(delay=np.full(6, 100.0)))
    path = tmp_path / "t.nir"
    nirbridge.write(path, graph)
    np.save(tmp_path / "x.npy", np.ones((3, 1, 4)))
    js, npz = tmp_path / "r.json", tmp_path / "o.npz"
    _fails_cleanly(["deploy", str(path), "--input", str(tmp_path / "x.npy"), "--json", str(js),
                    "-o", str(npz)], capsys, "lif", js, npz)


def test_cli_deploy_rejects_a_profile_missing_a_field(tmp_path, capsys):
    src = load_profile("loihi2").path.read_text()
    lines = [ln for ln in src.splitlines() if not ln.strip().startswith("state_bits")]
    assert len(lines) < len(src.splitlines())
    bad = tmp_path / "myloihi.toml"
    bad.write_text("\n".join(lines))
    path = tmp_path / "g.nir"
    nirbridge.write(path, _graph(_lif()))
    np.save(tmp_path / "x.npy", np.ones((3, 1, 4)))
    js = tmp_path / "r.json"
    _fails_cleanly(["deploy", str(path), "--input", str(tmp_path / "x.npy"), "--target",
                    str(bad), "--json", str(js)], capsys, "state_bits", js)


def test_deploy_graph_fixed_point_reports_agreement_and_quantization():
    from nirbridge.deploy import input_quant_config

    graph = _graph(_lif())
    x = np.round(np.random.default_rng(3).random((1, 4, 4)) * 2 * 16) / 16  # real-valued
    assert input_quant_config("loihi2", x).input_frac_bits == 8
    assert input_quant_config("loihi2", (x > 1).astype(float)).input_frac_bits == 0
    res = deploy_graph(graph, x, steps=8, mode="fixed_pt")
    (layer,) = res.layers
    assert layer.reference_spikes > 0
    assert layer.identical >= 0.95  # 8-bit weights: close to the float64 reference
    assert layer.clipped == 0  # Lava's own LIF runs this layer: it reports no saturation
    assert res.quantization and any(q.get("node") == "fc" for q in res.quantization)

    from nirbridge.nodes import SubtractiveLIF

    sub = SubtractiveLIF(tau=np.full(6, 2.0), r=np.ones(6), v_leak=np.zeros(6),
                         v_threshold=np.full(6, 0.3))
    res = deploy_graph(_graph(sub), x, steps=8, mode="fixed_pt")
    (layer,) = res.layers
    assert layer.reference_spikes > 0 and layer.identical >= 0.95
    assert layer.saturated == 0 and layer.clipped == 0  # nirbridge's own integer process


def test_deploy_calibrates_the_mantissas_it_runs_in_lava(tmp_path, capsys):
    """``deploy FILE.nir --fixed-point --calibrate X.npy``: Lava runs the calibrated
    integers (its outputs equal the emulator's on the same calibrated graph), and the
    report's quantization rows carry each layer's calibration figures."""
    from nirbridge.backends import get
    from nirbridge.deploy import input_quant_config
    from nirbridge.quantize.calibrate import calibrate

    graph = _graph(_lif())
    rng = np.random.default_rng(5)
    x = np.round(rng.random((8, 4, 4)) * 2 * 16) / 16
    xc = np.round(rng.random((8, 16, 4)) * 2 * 16) / 16
    res = deploy_graph(graph, x, mode="fixed_pt", calibration=xc)
    rows = {q["node"]: q for q in res.quantization}
    # the figures are the sink's (the neuron whose spikes the choice of fc's mantissas set)
    assert rows["lif"].get("calibration") and rows["lif"]["calibration"]["samples"] == 16
    q = calibrate(graph, xc, input_quant_config("loihi2", x), dt=1.0)
    emulated = get("fixed").run(graph, x, dt=1.0, quant=q).output()
    np.testing.assert_array_equal(res.outputs_lava, emulated)

    nirbridge.write(tmp_path / "g.nir", graph)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "xc.npy", xc)
    js = tmp_path / "d.json"
    argv = ["deploy", str(tmp_path / "g.nir"), "--input", str(tmp_path / "x.npy"),
            "--calibrate", str(tmp_path / "xc.npy")]
    assert main(argv + ["--json", str(js)]) == 2  # without --fixed-point: refused
    assert "add --fixed-point" in capsys.readouterr().err and not js.exists()
    assert main(argv + ["--fixed-point", "--json", str(js)]) == 0
    assert "calibrated lif on 16 samples" in capsys.readouterr().out
    doc = json.loads(js.read_text())
    assert {q["node"]: q.get("calibration") for q in doc["quantization"]}["lif"] == \
        json.loads(json.dumps(rows["lif"]["calibration"], default=float))
    np.save(tmp_path / "bad.npy", xc[0])  # no time axis
    assert main(argv[:-1] + [str(tmp_path / "bad.npy"), "--fixed-point"]) == 2
    assert "expected [T, B, ...]" in capsys.readouterr().err
