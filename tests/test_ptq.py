"""Calibrated post-training quantization (:mod:`nirbridge.quantize.calibrate`), its
report, and ``nirbridge quantize``."""

from __future__ import annotations

import dataclasses
import json

import nir
import numpy as np
import pytest
from tiny_graph import needs_lava

from nirbridge.backends.reference import run_reference
from nirbridge.cli import main
from nirbridge.quantize import QuantConfig, quantize, run_fixed_point
from nirbridge.quantize.calibrate import calibrate
from nirbridge.quantize.report import load_report, quantization_report, save_quantized
from nirbridge.quantize.synapses import WeightChoice

T, B = 12, 6


def _mlp(seed: int = 0, n_in: int = 16, h1: int = 24, h2: int = 12, tau: float = 3.0
         ) -> nir.NIRGraph:
    """Input → Affine → LIF → Affine → LIF → Affine → Output, random weights (not on any
    grid), thresholds where many neurons sit close to them."""
    rng = np.random.default_rng(seed)

    def lif(n: int) -> nir.LIF:
        return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=np.full(n, 0.5), v_reset=np.zeros(n))

    nodes = {
        "input": nir.Input(np.array([n_in])),
        "fc1": nir.Affine(rng.normal(0.05, 0.4, (h1, n_in)), rng.normal(0.0, 0.05, h1)),
        "lif1": lif(h1),
        "fc2": nir.Affine(rng.normal(0.05, 0.4, (h2, h1)), rng.normal(0.0, 0.05, h2)),
        "lif2": lif(h2),
        "fc3": nir.Linear(rng.normal(0.0, 0.5, (4, h2))),
        "output": nir.Output(np.array([4])),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "fc3"), ("fc3", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


def _spikes(seed: int, shape: tuple[int, ...], p: float = 0.4) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float64)


def _agreement(graph: nir.NIRGraph, q, x: np.ndarray, node: str) -> float:
    _, ref = run_reference(graph, x, record=[node])
    _, rec = run_fixed_point(q, x, record=[node])
    return float(np.mean(ref[node].output.numpy() == rec[node].real("output")))


def test_calibration_reduces_spike_flips_of_the_plain_rule():
    graph = _mlp()
    x = _spikes(1, (T, 32, 16))
    # coarse mantissas: the plain rule flips spikes at both layers
    cfg = dataclasses.replace(QuantConfig.from_profile("loihi2"), weight_bits=5)
    plain = quantize(graph, cfg)
    q = calibrate(graph, x, cfg)
    before = {n: _agreement(graph, plain, x, n) for n in ("lif1", "lif2")}
    after = {n: _agreement(graph, q, x, n) for n in ("lif1", "lif2")}
    assert before["lif1"] < 1.0 and before["lif2"] < 1.0  # the case flips spikes
    assert after["lif1"] >= before["lif1"]  # the plain rule is one of the candidates
    assert sum(after.values()) > sum(before.values())
    # the report holds the same figures, measured by the emulator on the same inputs
    for n in ("lif1", "lif2"):
        cal = q.report[n].calibration
        assert cal["after"]["spike_agreement"] == pytest.approx(after[n], abs=1e-12)
        assert cal["before"]["spike_agreement"] == pytest.approx(before[n], abs=1e-12)
        assert cal["samples"] == 32
    assert q.report["output"].calibration["after"]["mse"] is not None
    # the layout is the plain one: same state formats, only mantissas and precisions move
    for n, qn in q.neurons().items():
        assert qn.kind == plain.neurons()[n].kind


def test_report_counts_match_hand_counts():
    w = np.array([[1.0, 0.001, 0.5], [-0.3, 0.0, 2.0]])
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])), "fc": nir.Linear(w),
               "li": nir.IF(r=np.ones(2), v_threshold=np.full(2, 1e3), v_reset=np.zeros(2)),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "fc"), ("fc", "li"), ("li", "output")],
        metadata={"dt": 1.0}, type_check=False)
    cfg = QuantConfig.from_profile("loihi2")
    # plain: max|w| = 2 → P = 5 (2·2^5 = 64 ≤ 127 < 128): 0.001 → 0 (zeroed), nothing clips
    syn = quantize(graph, cfg).report["fc"]
    assert syn.scale["mantissa_frac_bits"] == 5
    assert (syn.clipped, syn.zeroed) == (0, 1)
    assert syn.grid_usage == pytest.approx(64 / 127)
    # one extra bit: 2·2^6 = 128 clips to 127, 0.001·64 still rounds to 0
    q = quantize(graph, cfg, choices={"fc": WeightChoice(extra_bits=1)})
    rep = q.report["fc"]
    assert rep.scale["mantissa_frac_bits"] == 6
    assert (rep.clipped, rep.zeroed) == (1, 1)
    assert rep.grid_usage == 1.0
    np.testing.assert_array_equal(q.layers["fc"].mant, [[64, 0, 32], [-19, 0, 127]])
    # saturated states: the calibration's count is the golden model's on the same inputs
    x = np.full((T, 2, 3), -400.0)  # far beyond the range the format was sized for
    qc = calibrate(graph, x, cfg)
    _, rec = run_fixed_point(qc, x)
    sat = qc.report["li"].calibration["after"]["saturated"]
    assert sat == rec["li"].n_saturations > 0
    row = next(r for r in quantization_report(qc)["layers"] if r["name"] == "fc")
    assert row["grid_usage"] == qc.report["fc"].grid_usage and "calibration" in row


def test_weights_already_on_a_grid_are_kept_losslessly():
    graph = _mlp(3, tau=1.0)  # unit input gain: the weights are what is quantized
    rng = np.random.default_rng(4)
    for name in ("fc1", "fc2"):  # multiples of 2^-6 within 8-bit mantissas (QAT output)
        node = graph.nodes[name]
        node.weight = rng.integers(-100, 101, node.weight.shape) / 64.0
    x = _spikes(5, (T, B, 16))
    q = calibrate(graph, x, QuantConfig.from_profile("loihi2"))
    for name in ("fc1", "fc2"):
        syn = q.layers[name]
        np.testing.assert_array_equal(syn.mant * 2.0 ** -syn.mant_frac,
                                      graph.nodes[name].weight)
        assert q.report[name].max_abs_error == 0.0


def test_cli_writes_quantized_graph_and_report(tmp_path):
    from nirbridge.api import write

    path = tmp_path / "mlp.nir"
    write(path, _mlp())
    x = tmp_path / "cal.npy"
    np.save(x, _spikes(7, (T, B, 16)))
    out, rep = tmp_path / "q.npz", tmp_path / "q.json"
    assert main(["quantize", str(path), "--calibrate", str(x), "-o", str(out),
                 "--json", str(rep)]) == 0
    report = json.loads(rep.read_text())
    assert load_report(out) == report
    names = [r["name"] for r in report["layers"]]
    assert names == ["fc1", "lif1", "fc2", "lif2", "fc3", "output"]
    assert report["layers"][1]["calibration"]["samples"] == B
    with np.load(out) as data:
        assert data["fc1/mant"].dtype == np.int64 and data["fc1/mant"].shape == (24, 16)
        assert "lif1/params.vth" in data or any(k.startswith("lif1/params.") for k in data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.npy", "mlp.nir", "q.json",
                                                          "q.npz"]  # no temp files left


@pytest.mark.parametrize("argv_tail, says", [
    (["--calibrate", "missing.npy"], "does not exist"),
    (["--calibrate", "flat.npy"], "expected [T, B, ...]"),
    (["--calibrate", "bad_shape.npy"], "per-step shape"),
    (["-o", "out.txt"], "ending in .npz"),
    (["--target", "nonesuch"], "nonesuch"),
])
def test_cli_refuses_bad_inputs_in_one_line(tmp_path, capsys, monkeypatch, argv_tail, says):
    from nirbridge.api import write

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "mlp.nir", _mlp())
    np.save(tmp_path / "flat.npy", np.zeros((4, 16)))
    np.save(tmp_path / "bad_shape.npy", np.zeros((4, 2, 15)))
    (tmp_path / "keep.npz").write_bytes(b"old")
    rc = main(["quantize", "mlp.nir", "-o", "keep.npz", *argv_tail])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and says in err, err
    assert (tmp_path / "keep.npz").read_bytes() == b"old"  # nothing half-written
    assert not list(tmp_path.glob(".*tmp"))


def test_saved_file_refuses_a_bad_path(tmp_path):
    q = quantize(_mlp(), QuantConfig.from_profile("loihi2"))
    from nirbridge.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        save_quantized(q, tmp_path / "no" / "q.npz")


@pytest.mark.lava
@needs_lava
def test_calibrated_choices_run_on_lava_fixed_pt_integer_for_integer():
    from nirbridge.backends import lava as lava_backend
    from nirbridge.quantize.calibrate import second_moment

    graph = _mlp(5, n_in=6, h1=8, h2=6)
    x = _spikes(8, (8, 2, 6))
    cfg = QuantConfig.from_profile("loihi2")
    _, ref = run_reference(graph, x, record=True)
    # every new choice at once: one more mantissa bit (clipping) and compensated rounding
    choices = {n: WeightChoice(1, second_moment(graph.nodes[n], ref[p].output.numpy()))
               for n, p in (("fc1", "input"), ("fc2", "lif1"), ("fc3", "lif2"))}
    q = quantize(graph, cfg, choices=choices)
    plain = quantize(graph, cfg)
    for n, syn in q.synapses().items():
        assert syn.mant_frac == plain.layers[n].mant_frac + 1
        assert not np.array_equal(syn.mant, plain.layers[n].mant)
    net = lava_backend.lower(graph, "fixed_pt", quant=q)
    _, gold = run_fixed_point(net.quant, x)
    res = lava_backend.run_lava(net, x, record=True, timeout_s=120)
    for name in ("lif1", "lif2"):
        np.testing.assert_array_equal(res.fixed_records[name].output, gold[name].output)
        np.testing.assert_array_equal(res.fixed_records[name].input, gold[name].input)
