"""The Backend protocol: every entry of BACKENDS runs a tiny graph and returns a RunResult
that agrees with the reference (spike-exact for lava-float; lava-fixed integer-exact equal
to fixed); ``check`` gives reasons without running; the verify core compares any two."""

import nir
import numpy as np
import pytest
import torch

from nirbridge.backends import (
    ALIASES,
    BACKENDS,
    Backend,
    RunResult,
    get,
    names,
    run_backend,
    run_compat,
)
from nirbridge.backends.reference import RunRecord, run_reference
from nirbridge.deploy import DeployResult
from nirbridge.errors import InputError
from nirbridge.quantize import quantize, run_fixed_point
from nirbridge.verify import compare

T, B = 6, 2


def _tiny() -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    n = 4
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([3])),
            "fc": nir.Affine(rng.normal(0, 0.8, (n, 3)), rng.normal(0, 0.1, n)),
            "lif": nir.LIF(tau=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n),
                           v_threshold=np.full(n, 0.3), v_reset=np.zeros(n)),
            "fc2": nir.Affine(rng.normal(0, 0.5, (2, n)), np.full(2, 0.25)),
            "output": nir.Output(np.array([2])),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "output")],
        metadata={"dt": 1.0}, type_check=False,
    )


def _inputs() -> np.ndarray:
    # graded, on a 1/16 grid: the fitted fixed-point input format holds it exactly
    return np.round(np.random.default_rng(1).random((T, B, 3)) * 2 * 16) / 16


def _unsupported() -> nir.NIRGraph:
    """A delay of 100 steps: the reference and the integer executor run it, Lava (at most
    62 steps per delay line) cannot."""
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])), "d": nir.Delay(np.full(3, 100.0)),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "d"), ("d", "output")], metadata={"dt": 1.0}, type_check=False)


def _recurrent() -> nir.NIRGraph:
    graph = _tiny()
    graph.nodes["rec"] = nir.Affine(np.random.default_rng(1).normal(0, 0.3, (4, 4)),
                                    np.zeros(4))
    graph.edges += [("lif", "rec"), ("rec", "lif")]
    return graph


# ------------------------------------------------------------------- the table, no Lava
def test_table_is_explicit_and_every_entry_is_a_backend():
    assert names() == list(BACKENDS) == ["reference", "lava-float", "lava-fixed", "fixed",
                                         "norse", "sinabs", "snntorch", "onnx"]
    for name, backend in BACKENDS.items():
        assert isinstance(backend, Backend) and backend.name == name and backend.description
    assert get("lava") is BACKENDS["lava-float"] and ALIASES == {"lava": "lava-float"}
    with pytest.raises(InputError, match="unknown backend 'x'; available: reference"):
        get("x")


def test_check_gives_reasons_without_running():
    graph = _tiny()
    assert get("reference").check(graph) == [] and get("fixed").check(graph) == []
    for name in BACKENDS:
        reasons = get(name).check(_unsupported())
        if name in ("reference", "fixed", "onnx"):  # these run delays (ONNX: a state buffer)
            assert reasons == [], (name, reasons)
            continue
        # Lava: at most 62 steps; Norse's, Sinabs' and snnTorch's readers map no Delay
        why = {"norse": "Delay", "sinabs": "Delay", "snntorch": "no module for nir.Delay"
               }.get(name, "62")
        assert reasons and any("'d'" in r and why in r for r in reasons), (name, reasons)
    for name in BACKENDS:  # recurrent graphs run everywhere (issue 10) but in Sinabs, snnTorch
        reasons = get(name).check(_recurrent())
        if name == "sinabs":  # one call for the whole sequence: a feedback edge is empty
            assert reasons and all("closes a cycle" in r for r in reasons), reasons
            continue
        if name == "snntorch":  # its reader crashes on them or miswires them
            assert len(reasons) == 1 and "crashes upstream" in reasons[0], reasons
            continue
        assert reasons == [], name
    looped = _recurrent()
    looped.nodes["s"] = nir.Scale(np.ones(4))
    looped.edges += [("rec", "s"), ("s", "rec")]
    for name in BACKENDS:
        assert any("algebraic loop" in r for r in get(name).check(looped)), name
    with pytest.raises(InputError, match="no option 'bogus'"):
        get("fixed").check(graph, bogus=1)


def test_reference_and_fixed_always_return_a_run_result():
    graph, x = _tiny(), _inputs()
    for name in ("reference", "fixed"):
        res = run_backend(graph, x, name)
        assert isinstance(res, RunResult) and res.records == {}
        assert isinstance(res.outputs, np.ndarray) and res.outputs.dtype == np.float64
        assert res.outputs.shape == (T, B, 2)
        assert res.info["backend"] == name and res.info["dt"] == 1.0
        assert "wall" in res.info["seconds"]
    ref = get("reference").run(graph, torch.from_numpy(x), record=["lif"])
    assert list(ref.records) == ["lif"] and isinstance(ref.records["lif"], RunRecord)
    np.testing.assert_array_equal(ref.outputs, run_reference(graph, x).numpy())
    with pytest.raises(InputError, match="no option 'timeout_s'"):
        get("reference").run(graph, x, timeout_s=1)


def test_fixed_is_the_golden_model_and_reports_its_quantization():
    graph, x = _tiny(), _inputs()
    res = get("fixed").run(graph, x, record=True)
    qgraph = res.info["quantized"]
    assert qgraph.config.input_frac_bits == 8  # graded inputs: the deploy rule
    gold_out, gold = run_fixed_point(quantize(graph, qgraph.config), x)
    np.testing.assert_array_equal(res.outputs, gold_out)
    np.testing.assert_array_equal(res.info["fixed_records"]["lif"].states["v"],
                                  gold["lif"].states["v"])
    np.testing.assert_array_equal(res.records["lif"].states["v"].numpy(),
                                  gold["lif"].real("v"))
    rows = {r["node"]: r for r in res.info["quantization"]}
    assert rows["lif"]["saturated"] == 0 and rows["input"]["scale"]["frac_bits"] == 8
    assert res.info["saturations"]["lif"] == gold["lif"].saturations
    spikes = (x > 1).astype(float)
    assert get("fixed").run(graph, spikes).info["quantized"].config.input_frac_bits == 0
    fixed4 = get("fixed").run(graph, x, input_frac_bits=4)
    assert fixed4.info["quantized"].config.input_frac_bits == 4
    with pytest.raises(InputError, match="not both"):
        get("fixed").run(graph, x, quant=qgraph.config, target="loihi2")


def test_compare_reference_with_fixed():
    graph, x = _tiny(), _inputs()
    labels = np.array([0, 1])
    cmp = compare(graph, x, "reference", "fixed", labels=labels)
    (layer,) = cmp.layers
    assert layer.node == "lif" and layer.spikes_a > 0
    assert layer.identical >= 0.9 and layer.clipped == 0 and layer.saturated == 0
    assert cmp.output_max_abs_diff == np.abs(cmp.outputs_a - cmp.outputs_b).max()
    assert cmp.steps == T and cmp.samples == B
    assert cmp.accuracy_a is not None and cmp.accuracy_drop == cmp.accuracy_a - cmp.accuracy_b
    again = compare(graph, x, "reference", "fixed", result_a=cmp.result_a)
    assert again.result_a is cmp.result_a and again.to_dict() == {
        **cmp.to_dict(), "accuracy_a": None, "accuracy_b": None, "accuracy_drop": None}
    with pytest.raises(InputError, match="3 labels for 2 samples"):
        compare(graph, x, "reference", "fixed", labels=np.zeros(3))


def test_compat_run_keeps_the_old_shapes():
    graph, x = _tiny(), torch.from_numpy(_inputs())
    out = run_compat(graph, x)
    assert torch.is_tensor(out) and out.dtype == torch.float64
    torch.testing.assert_close(out, run_reference(graph, x), rtol=0, atol=0)
    out, records = run_compat(graph, x, "fixed", record=["lif"])
    assert torch.is_tensor(out) and list(records) == ["lif"]


# ---------------------------------------------------------------- Lava, run once each
@pytest.fixture(scope="module")
def lava_runs():
    """reference, lava-float, fixed and lava-fixed on one tiny graph: two Lava runs."""
    graph, x = _tiny(), _inputs()
    ref = get("reference").run(graph, x, record=True)
    fixed = get("fixed").run(graph, x, record=True)
    opts = {"timeout_s": 120}
    return {
        "graph": graph,
        "float": compare(graph, x, "reference", "lava-float", options_b=opts, result_a=ref),
        "fixed": compare(graph, x, "fixed", "lava-fixed", options_b=opts, result_a=fixed),
    }


@pytest.mark.lava
def test_every_backend_returns_a_run_result_through_the_protocol(lava_runs):
    results = {c.result_a.info["backend"]: c.result_a for c in lava_runs.values()
               if not isinstance(c, nir.NIRGraph)}
    results.update({c.result_b.info["backend"]: c.result_b for c in lava_runs.values()
                    if not isinstance(c, nir.NIRGraph)})
    # the reference, Lava and fixed point here; the framework and ONNX backends have their
    # own protocol tests (tests/test_backend_*.py, tests/test_onnx.py)
    assert sorted(results) == ["fixed", "lava-fixed", "lava-float", "reference"]
    for name, res in results.items():
        assert isinstance(res, RunResult), name
        assert res.outputs.dtype == np.float64 and res.outputs.shape == (T, B, 2), name
        assert isinstance(res.records["lif"], RunRecord), name
        assert res.records["lif"].output.shape == (T, B, 4), name
        assert res.info["dt"] == 1.0 and "wall" in res.info["seconds"], name
    assert results["lava-fixed"].info["mode"] == "fixed_pt"
    assert results["lava-float"].info["runs"] >= 1


@pytest.mark.lava
def test_lava_float_is_spike_exact_against_the_reference(lava_runs):
    cmp = lava_runs["float"]
    (layer,) = cmp.layers
    assert layer.spikes_a > 0 and layer.identical == 1.0
    assert layer.first_divergent_step is None
    assert cmp.output_identical == 1.0 and cmp.prediction_agreement == 1.0
    assert cmp.quantization is None and layer.clipped is None
    dep = DeployResult.from_comparison(cmp, "floating_pt", "loihi2")
    assert dep.layers[0].reference_spikes == layer.spikes_a
    assert dep.lava_seconds == cmp.result_b.info["seconds"]
    np.testing.assert_array_equal(dep.outputs_lava, cmp.outputs_b)


@pytest.mark.lava
def test_lava_fixed_computes_the_integers_of_fixed(lava_runs):
    cmp = lava_runs["fixed"]
    fixed, lava = cmp.result_a, cmp.result_b
    np.testing.assert_array_equal(lava.outputs, fixed.outputs)
    for node in ("input", "lif", "output"):
        a, b = fixed.info["fixed_records"][node], lava.info["fixed_records"][node]
        np.testing.assert_array_equal(b.output, a.output, err_msg=node)
        assert b.frac_bits["output"] == a.frac_bits["output"], node
    for f in ("u", "v"):
        np.testing.assert_array_equal(lava.info["fixed_records"]["lif"].states[f],
                                      fixed.info["fixed_records"]["lif"].states[f])
    (layer,) = cmp.layers
    assert layer.spikes_a > 0 and layer.identical == 1.0 and cmp.output_max_abs_diff == 0.0
    assert lava.info["quantized"].config == fixed.info["quantized"].config


def test_reference_refuses_nan_and_inf_inputs_but_not_a_sum_that_overflows():
    g, x = _tiny(), torch.as_tensor(_inputs())
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[1, 0, 0] = bad
        with pytest.raises(InputError, match="contains NaN or inf"):
            run_reference(g, y)
    huge = torch.zeros_like(x)
    huge[:, :, 0] = 1e308  # every value finite, their sum is not
    assert not torch.isfinite(huge.sum())
    out = run_reference(g, huge)
    assert out.shape[:2] == x.shape[:2]
