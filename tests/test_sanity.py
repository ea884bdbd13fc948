"""Sanity checks (issue 9, nirbridge.sanity): forward-Euler steps with dt/τ > 1 warn (and
refuse with --strict), a reference run whose states explode or go NaN, or whose spiking
layers never spike, warns naming the layer; deploy reports these instead of a success."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
from tiny_graph import needs_lava

import nirbridge
from nirbridge.backends import get
from nirbridge.cli import main
from nirbridge.errors import InvalidParameterError
from nirbridge.neurons import CLIF, KLIF
from nirbridge.sanity import (
    STATE_BOUND,
    check,
    check_run,
    check_time_step,
    euler_ratios,
    refuse,
)
from nirbridge.verify import compare

N = 3


def _graph(neuron: nir.NIRNode, dt: float = 1.0, n_in: int = 2) -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([n_in])),
               "fc": nir.Affine(rng.uniform(0.2, 1.0, (N, n_in)), np.full(N, 0.1)),
               "neu": neuron, "output": nir.Output(np.array([N]))},
        edges=[("input", "fc"), ("fc", "neu"), ("neu", "output")],
        metadata={"dt": dt}, type_check=False)


def _lif(tau: float = 2.0, vth: float = 0.3) -> nir.LIF:
    return nir.LIF(tau=np.full(N, tau), r=np.ones(N), v_leak=np.zeros(N),
                   v_threshold=np.full(N, vth), v_reset=np.zeros(N))


def _li(tau: float) -> nir.LI:
    return nir.LI(tau=np.full(N, tau), r=np.ones(N), v_leak=np.zeros(N))


def _x(t: int = 8) -> np.ndarray:
    return np.random.default_rng(1).random((t, 2, 2)) + 0.5


# ------------------------------------------------------------------------ time step
def test_forward_euler_nodes_with_dt_over_tau_above_one_are_named():
    (f,) = check_time_step(_graph(_lif(tau=1e-5), dt=1e-3), 1e-3)
    assert f.kind == "euler_step" and f.node == "neu" and f.value == pytest.approx(100.0)
    assert "'neu' (LIF)" in f.message and "dt/tau = 100" in f.message and "\n" not in f.message
    cuba = nir.CubaLIF(tau_syn=np.full(N, 0.5), tau_mem=np.full(N, 4.0), r=np.ones(N),
                       v_leak=np.zeros(N), v_threshold=np.ones(N), v_reset=np.zeros(N))
    (f,) = check_time_step(_graph(cuba), 1.0)
    assert "dt/tau_syn = 2" in f.message
    assert check_time_step(_graph(_lif(tau=1.0)), 1.0) == []  # dt/τ = 1: memoryless, fine
    assert check_time_step(_graph(_lif(tau=2.0)), 1.0) == []
    assert set(euler_ratios(cuba, 1.0)) == {"tau_syn", "tau_mem"}


def test_neurons_without_a_forward_euler_step_are_not_checked():
    for mod in (KLIF(), CLIF()):  # their τ is per step: dt never enters
        node = mod.to_nir_node((N,), 1.0)
        assert euler_ratios(node, 1e3) == {}
    assert euler_ratios(nir.IF(r=np.ones(N), v_threshold=np.ones(N)), 5.0) == {}


def test_strict_refuses_and_the_cli_warns_naming_the_node(tmp_path, capsys):
    graph = _graph(_lif(tau=0.25))
    with pytest.raises(InvalidParameterError, match="'neu'.*--strict"):
        refuse(check_time_step(graph, 1.0))
    refuse(check_time_step(_graph(_lif()), 1.0))  # nothing to refuse
    nirbridge.write(tmp_path / "f.nir", graph)
    np.save(tmp_path / "x.npy", _x())
    out = tmp_path / "o.npz"
    argv = ["run", str(tmp_path / "f.nir"), "--input", str(tmp_path / "x.npy"), "-o", str(out)]
    assert main([*argv, "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dt/tau = 4" in err and "--strict" in err
    assert not out.exists()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: node 'neu' (LIF): dt/tau = 4" in err and out.exists()


# ------------------------------------------------------------------------------ runs
def test_exploding_nan_and_silent_runs_are_named():
    diverging = _graph(_li(tau=1 / 3))  # v ← −2v + 3x: |v| doubles every step
    res = get("reference").run(diverging, _x(40), record=True)
    (f,) = check_run(diverging, res.records)
    assert f.kind == "exploded" and f.node == "neu" and f.value > STATE_BOUND
    assert "layer 'neu' (LI)" in f.message and "diverged" in f.message
    nan = _graph(_li(tau=1e-200))
    res = get("reference").run(nan, _x(5), record=True)
    (f,) = check_run(nan, res.records)
    assert f.kind == "non_finite" and "NaN/inf" in f.message
    silent = _graph(_lif(vth=1e6))
    res = get("reference").run(silent, _x(), record=True)
    (f,) = check_run(silent, res.records)
    assert f.kind == "silent" and "'neu' (LIF) never spiked in 8 steps × 2 samples" in f.message
    healthy = _graph(_lif())
    res = get("reference").run(healthy, _x(), record=True)
    assert res.outputs.sum() > 0 and check(healthy, 1.0, res.records) == []


def test_run_checks_read_numpy_records_of_any_dtype_in_place():
    """Records of other backends (numpy, float32 or integer): the same findings, the
    first bad step and the peak named, as from the reference's tensors."""
    from nirbridge.backends.reference import RunRecord

    g = _graph(_lif())
    v = np.zeros((6, 2, 1), dtype=np.float32)
    v[4, 1, 0] = -3e6
    (f,) = check_run(g, {"neu": RunRecord(output=np.ones((6, 2, 1)), states={"v": v})})
    assert f.kind == "exploded" and f.value == 3e6 and "first at step 4" in f.message
    v[2, 0, 0] = np.inf
    (f,) = check_run(g, {"neu": RunRecord(output=np.ones((6, 2, 1)), states={"v": v})})
    assert f.kind == "non_finite" and "at step 2" in f.message
    quiet = {"neu": RunRecord(output=np.zeros((6, 2, 1), dtype=np.int64),
                              states={"v": np.full((6, 2, 1), 7, dtype=np.int64)})}
    (f,) = check_run(g, quiet)
    assert f.kind == "silent" and "never spiked in 6 steps × 2 samples" in f.message
    # the run's spike counts, when given, say it instead of the output
    assert check_run(g, quiet, spikes={"neu": 0.5}) == []
    loud = {"neu": RunRecord(output=np.ones((6, 2, 1)), states={"v": np.zeros((6, 2, 1))})}
    assert check_run(g, loud) == []
    assert [f.kind for f in check_run(g, loud, spikes={"neu": 0.0})] == ["silent"]
    assert check_run(g, loud, spikes={"other": 0.0}) == []


def test_cli_run_and_profile_warn_about_a_silent_reference(tmp_path, capsys):
    nirbridge.write(tmp_path / "f.nir", _graph(_lif(vth=1e6)))
    np.save(tmp_path / "x.npy", _x())
    assert main(["run", str(tmp_path / "f.nir"), "--input", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "o.npz")]) == 0
    assert "warning: reference run: spiking layer 'neu'" in capsys.readouterr().err
    js = tmp_path / "p.json"
    assert main(["profile", str(tmp_path / "f.nir"), "--input", str(tmp_path / "x.npy"),
                 "--json", str(js)]) == 0
    assert "never spiked" in capsys.readouterr().err
    (f,) = json.loads(js.read_text())["meta"]["sanity"]
    assert f["kind"] == "silent" and f["node"] == "neu"


def test_compare_reports_the_findings_of_the_reference():
    cmp = compare(_graph(_lif(vth=1e6)), _x(), "reference", "fixed")
    assert not cmp.sound and [f.kind for f in cmp.findings] == ["silent"]
    assert cmp.to_dict()["findings"][0]["node"] == "neu" and cmp.to_dict()["sound"] is False
    assert compare(_graph(_lif()), _x(), "reference", "fixed").sound


@pytest.mark.lava
@needs_lava
def test_deploy_of_a_silent_or_diverging_reference_exits_3_with_the_findings(tmp_path,
                                                                             capsys):
    nirbridge.write(tmp_path / "f.nir", _graph(_lif(tau=0.25, vth=1e6)))
    np.save(tmp_path / "x.npy", _x(4))
    js, npz = tmp_path / "r.json", tmp_path / "o.npz"
    rc = main(["deploy", str(tmp_path / "f.nir"), "--input", str(tmp_path / "x.npy"),
               "--timeout", "120", "--json", str(js), "-o", str(npz)])
    cap = capsys.readouterr()
    assert rc == 3
    assert "NOT a sound deployment" in cap.out and "dt/tau = 4" in cap.out
    assert "never spiked" in cap.out
    err = cap.err.strip()
    assert err.count("\n") == 0 and "not a sound deployment" in err
    doc = json.loads(js.read_text())  # the reports are written before failing
    assert doc["sound"] is False and doc["dt"] == 1.0
    assert [f["kind"] for f in doc["findings"]] == ["euler_step", "silent"]
    with np.load(npz) as z:
        assert float(z["dt"]) == 1.0
