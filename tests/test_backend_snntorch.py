"""The ``snntorch`` backend (issue 11): snnTorch 1.0's own ``import_from_nir``, stepped.

- On files snnTorch's own exporter wrote, the backend's outputs and per-node records are
  those of snnTorch's reading run directly (as tests/test_frontend_snntorch.py runs it),
  and those of the reference on ``reading().graph``: the backend adds nothing.
- On graphs snnTorch reads as NIR defines them (LIF/CubaLIF with v_leak = v_reset = 0,
  r = τ/dt, dt = 1e-4), it equals the reference on the graph itself within its stated
  tolerance; with float32-valued parameters and weights, to the bit.
- Where snnTorch reads a graph otherwise (another dt, v_reset ≠ 0, per-neuron input
  scales, IF), ``reading()`` names the node and field and ``verify.compare`` measures a
  difference.
- ``check()`` refuses recurrent graphs (snnTorch's reader crashes on them: asserted
  against snnTorch itself), custom nodes, several outputs, names nirtorch merges, and
  what snnTorch's reader refuses; ``nirbridge run --backend snntorch`` runs a file.
"""

from __future__ import annotations

import copy
import importlib

import nir
import numpy as np
import pytest
import torch

import nirbridge
from nirbridge.backends import get
from nirbridge.backends.reference import run_reference
from nirbridge.backends.snntorch import BACKEND, DT
from nirbridge.cli import main
from nirbridge.errors import InputError, UnsupportedLayerError
from nirbridge.verify import compare

snn = pytest.importorskip("snntorch")
from snntorch.import_nir import import_from_nir  # noqa: E402

FE = importlib.import_module("test_frontend_snntorch")  # its models, files and helpers
T, B, N_IN, N = 16, 3, 8, 12


# ----------------------------------------------------------------------------- graphs
def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def _graph(neuron: nir.NIRNode, *, dt: float = DT, seed: int = 0, f32: bool = True,
           gain: float = 1.0) -> nir.NIRGraph:
    """Input(8) → Affine → ``neuron`` (N) → Affine → Output(4)."""
    rng = np.random.default_rng(seed)
    w, b = rng.normal(0.2, 0.6, (N, N_IN)) * gain, rng.normal(0.0, 0.1, N) * gain
    w2, b2 = rng.normal(0.0, 0.5, (4, N)), rng.normal(0.0, 0.1, 4)
    if f32:
        w, b, w2, b2 = map(_f32, (w, b, w2, b2))
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([N_IN])), "fc": nir.Affine(w, b), "lif": neuron,
               "fc2": nir.Affine(w2, b2), "output": nir.Output(np.array([4]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "output")],
        metadata={"dt": dt}, type_check=False)


def _lif(beta, *, dt: float = DT, v_reset: float = 0.0, r_factor=1.0) -> nir.LIF:
    """NIR's LIF that is ``v ← β·v + x`` at ``dt`` (τ = dt/(1−β), r = τ/dt)."""
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), (N,))
    tau = dt / (1 - beta)
    return nir.LIF(tau=tau, r=tau / dt * r_factor, v_leak=np.zeros(N),
                   v_threshold=np.full(N, 0.5), v_reset=np.full(N, v_reset))


def _cubalif(alpha, beta) -> nir.CubaLIF:
    tau_syn, tau_mem = DT / (1 - alpha), DT / (1 - beta)
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / DT, v_leak=np.zeros(N),
                       v_threshold=np.full(N, 0.5), v_reset=np.zeros(N), w_in=tau_syn / DT)


def _x(seed: int = 5, shape: tuple[int, ...] = (N_IN,)) -> np.ndarray:
    return np.random.default_rng(seed).random((T, B, *shape))


def _recurrent() -> nir.NIRGraph:
    graph = _graph(_lif(0.75))
    graph.nodes["rec"] = nir.Affine(_f32(np.random.default_rng(1).normal(0, 0.3, (N, N))),
                                    np.zeros(N))
    graph.edges += [("lif", "rec"), ("rec", "lif")]
    return graph


def _neurons(graph: nir.NIRGraph) -> list[str]:
    return [n for n, v in graph.nodes.items() if type(v).__name__.startswith("SnnTorch")]


# ------------------------------------------------------- snnTorch's own files, exactly
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_a_snntorch_file_runs_as_snntorchs_own_reading(reset, tmp_path, capsys):
    x = FE._inputs(8)[:T]
    path = FE._snntorch_file(FE._file_model(reset), x[0, 0], tmp_path)
    graph = nirbridge.read(path)
    assert BACKEND.check(graph) == []
    res = BACKEND.run(graph, x.numpy(), record=True)
    assert res.info["dt"] == DT and res.info["batched"] and res.info["snntorch"] == "1.0.0"
    assert res.outputs.dtype == np.float64 and res.outputs.shape == (T, FE.B, 4)

    # snnTorch's reading run directly, as the front-end test runs it
    want, states = FE._run_reading(FE._reading(path), x)
    np.testing.assert_array_equal(res.outputs, want.numpy())
    reading = BACKEND.reading(graph)
    names = _neurons(reading.graph)
    assert names == ["1", "3"] and len(states) == 2
    for name, held in zip(names, states, strict=True):
        for field, value in held.items():
            assert torch.equal(res.records[name].states[field], value), (name, field)
    assert 0 < float(res.records["1"].output.mean()) < 1
    assert 0 < float(res.records["3"].output.mean()) < 1

    # and the reference on the graph from_file says snnTorch computes
    ref, recs = run_reference(reading.graph, x, record=True)
    np.testing.assert_array_equal(res.outputs, ref.numpy())
    _assert_same_records(reading.graph, res.records, recs)


def _assert_same_records(graph: nir.NIRGraph, got, want) -> None:
    """Every node's records: spikes identical; graded values and states equal to the last
    bits of the sums (the reference applies an Affine to all T·B rows at once, snnTorch to
    B rows per step, and BLAS may sum them in another order: measured 1 ulp, 2.2e-16 on
    values up to 1.4; membranes 8.9e-16)."""
    assert set(got) == set(want)
    for name, rec in want.items():
        for field in ("input", "output"):
            a, b = getattr(got[name], field), getattr(rec, field)
            assert (a is None) == (b is None), (name, field)
            if b is None:
                continue
            if name in _neurons(graph) and field == "output":
                assert torch.equal(a, b), f"{name}: spikes differ"
            else:
                err = float((a - b).abs().max())
                assert err <= 1e-15 * max(1.0, float(b.abs().max())), (name, field, err)
        assert set(got[name].states) == set(rec.states), name
        for field, value in rec.states.items():
            err = float((got[name].states[field] - value).abs().max())
            assert err <= 1e-14, (name, field, err)


def test_a_snntorch_conv_file_with_flatten0_runs_one_sample_at_a_time(tmp_path, capsys):
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        snn.Leaky(beta=torch.full((2, 5, 5), 0.8), threshold=torch.full((2, 5, 5), 0.25),
                  init_hidden=True),
        torch.nn.Flatten(0), torch.nn.Linear(2 * 5 * 5, 4),
        snn.Leaky(beta=torch.full((4,), 0.7), threshold=torch.full((4,), 0.125),
                  init_hidden=True, output=True))
    x = FE._inputs(9, (1, 5, 5))[:T]
    path = FE._snntorch_file(model, x[0, 0], tmp_path)
    graph = nirbridge.read(path)
    res = BACKEND.run(graph, x, record=["1", "4"])
    # torch's nn.Flatten(0) on a batch would fold the batch in: run unbatched
    assert not res.info["batched"] and sorted(res.records) == ["1", "4"]
    reading = FE._reading(path)
    for b in range(FE.B):
        want, states = FE._run_reading(reading, x[:, b])
        np.testing.assert_array_equal(res.outputs[:, b], want.numpy())
        assert torch.equal(res.records["1"].states["v"][:, b], states[0]["v"])
    ref = run_reference(BACKEND.reading(graph).graph, x).numpy()
    np.testing.assert_array_equal(res.outputs, ref)
    assert res.outputs.sum() > 0


# ------------------------------------------------- what snnTorch reads as NIR defines it
def test_exact_parameters_equal_the_reference_to_the_bit():
    # β = 1/2, 3/4, 7/8 and float32 weights: nothing for float32 to round
    beta = np.resize([0.5, 0.75, 0.875], N)
    for graph in (_graph(_lif(beta)), _graph(_cubalif(np.resize([0.5, 0.75], N), beta))):
        reading = BACKEND.reading(graph)
        assert reading.faithful, reading.notes
        x = _x()
        res = BACKEND.run(graph, x, record=True)
        ref, recs = run_reference(graph, x, record=True)
        np.testing.assert_array_equal(res.outputs, ref.numpy())
        assert torch.equal(res.records["lif"].output, recs["lif"].output)
        assert 0.05 < float(recs["lif"].output.mean()) < 0.95
        # the same membrane, summed in another order: NIR's v + (dt/τ)(−v + r·x) against
        # snnTorch's β·v + x
        err = float((res.records["lif"].states["v"] - recs["lif"].states["v"]).abs().max())
        assert err <= 1e-14, err


@pytest.mark.parametrize("kind", ["LIF", "CubaLIF"])
@pytest.mark.parametrize("f32", [True, False], ids=["float32_weights", "float64_weights"])
def test_graphs_read_per_spec_agree_within_the_tolerance(kind, f32):
    tol = BACKEND.tolerance
    assert tol.spikes == "rounding" and tol.graded_rel == 1e-6 and "float32" in tol.why
    worst = 0.0
    for seed in range(4):
        rng = np.random.default_rng(seed)
        beta = rng.uniform(0.5, 0.95, N)
        neuron = _lif(beta) if kind == "LIF" else _cubalif(rng.uniform(0.5, 0.9, N), beta)
        graph = _graph(neuron, seed=seed, f32=f32)
        notes = BACKEND.reading(graph).notes
        # the only departure is float32 rounding, and it is named
        assert notes and all("held in float32" in n for n in notes), notes
        assert any(n.startswith("node 'lif'") and "β = 1 − dt/τ" in n for n in notes), notes
        assert any(n.startswith("node 'fc'") for n in notes) == (not f32), notes
        cmp = compare(graph, _x(seed), "reference", "snntorch")
        (layer,) = cmp.layers
        assert layer.identical == 1.0 and layer.spikes_a > 0, layer
        ref = np.abs(cmp.outputs_a).max()
        worst = max(worst, cmp.output_max_abs_diff / ref)
    assert worst <= tol.graded_rel
    # graded outputs follow the spikes: with float32 weights nothing else differs
    assert (worst == 0.0) == f32, worst


def test_float32_dtype_runs_snntorchs_native_arithmetic():
    graph = _graph(_lif(np.linspace(0.5, 0.95, N)), f32=False)
    x = _x()
    res32 = BACKEND.run(graph, x, record=["lif"], dtype="float32")
    res64 = BACKEND.run(graph, x, record=["lif"])
    assert res32.info["dtype"] == "float32" and res64.info["dtype"] == "float64"
    assert res32.outputs.dtype == np.float64  # as every backend returns them
    v32, v64 = res32.records["lif"].states["v"], res64.records["lif"].states["v"]
    assert not torch.equal(v32, v64)  # float32 arithmetic does round
    assert float((v32 - v64).abs().max()) <= 1e-5
    with pytest.raises(InputError, match="dtype='float16'"):
        BACKEND.run(graph, x, dtype="float16")


# ---------------------------------------------------- where snnTorch reads otherwise
def _measured(graph: nir.NIRGraph):
    (layer,) = compare(graph, _x(), "reference", "snntorch").layers
    return layer


def test_another_dt_is_named_and_measured():
    # NIR's LIF at dt = 1e-3 is v ← β·v + x; snnTorch reads τ at 1e-4: β' = 1 − (1 − β)/10
    graph = _graph(_lif(np.linspace(0.5, 0.9, N), dt=1e-3), dt=1e-3)
    notes = BACKEND.reading(graph).notes
    assert any("node 'lif' (LIF) tau" in n and "not the graph's dt = 0.001" in n
               and "other dynamics" in n for n in notes), notes
    assert any("input scale r·dt/τ = 0.1" in n for n in notes), notes
    assert BACKEND.check(graph) == []  # it runs; the difference is measured
    layer = _measured(graph)
    assert layer.first_divergent_step is not None and layer.identical < 0.9, layer
    assert BACKEND.reading(graph, dt=1e-4).notes != notes  # the dt asked for decides


def test_v_reset_per_neuron_scale_and_if_are_named_and_measured():
    beta = np.linspace(0.5, 0.9, N)
    cases = {
        "v_reset = -0.2: snnTorch resets to 0": _graph(_lif(beta, v_reset=-0.2)),
        "differs between neurons": _graph(_lif(beta, r_factor=np.linspace(1, 3, N)),
                                          gain=0.5),
    }
    graph = _graph(nir.IF(r=np.ones(N), v_threshold=np.full(N, 1.0), v_reset=np.zeros(N)))
    graph.nodes.pop("fc2")
    graph.nodes["output"] = nir.Output(np.array([N]))
    graph.edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    cases["IF as a Leaky with β = 0.9"] = graph
    for needle, graph in cases.items():
        notes = BACKEND.reading(graph).notes
        assert any(n.startswith("node 'lif'") and needle in n for n in notes), (needle, notes)
        layer = _measured(graph)
        assert layer.identical < 1.0 and layer.first_divergent_step is not None, (needle, layer)


def test_a_uniform_input_scale_folded_into_the_threshold_keeps_the_spikes():
    graph = _graph(nir.LIF(tau=np.full(N, 4e-4), r=np.full(N, 8.0), v_leak=np.zeros(N),
                           v_threshold=np.full(N, 1.0), v_reset=np.zeros(N)), gain=0.5)
    reading = BACKEND.reading(graph)
    assert reading.notes == [
        "node 'lif' (LIF) r: the input scale r·dt/τ = 2 is folded into the threshold "
        "(v_threshold/2): the same spikes up to rounding, and the membrane held is NIR's v/2"]
    res = BACKEND.run(graph, _x(), record=["lif"])
    ref, recs = run_reference(graph, _x(), record=["lif"])
    assert torch.equal(res.records["lif"].output, recs["lif"].output)
    assert float(recs["lif"].output.mean()) > 0.05
    torch.testing.assert_close(res.records["lif"].states["v"] * 2, recs["lif"].states["v"],
                               rtol=0, atol=1e-14)


# ---------------------------------------------------------------------- check, refusals
def test_check_refuses_recurrent_graphs_as_snntorch_cannot_read_them(tmp_path, capsys):
    rec = torch.nn.Sequential(
        torch.nn.Linear(4, 5),
        snn.RLeaky(beta=torch.full((5,), 0.8), V=torch.full((5,), 0.5), all_to_all=False,
                   init_hidden=True, output=True))
    own = nirbridge.read(FE._snntorch_file(rec, torch.rand(4), tmp_path))
    with pytest.raises(AttributeError, match="no attribute 'items'"):  # snnTorch 1.0 itself
        import_from_nir(copy.deepcopy(own))
    graph = _recurrent()
    for g in (own, graph):
        (reason,) = BACKEND.check(g)
        assert "recurrent" in reason and "crashes upstream" in reason
        assert "AttributeError: 'GraphModule' object has no attribute 'items'" in reason
        assert "neuron(W_rec·(x + s[t−1]) + b_rec)" in reason
        with pytest.raises(UnsupportedLayerError, match="recurrent"):
            BACKEND.run(g, _x(shape=(4,)) if g is own else _x())
        with pytest.raises(UnsupportedLayerError, match="recurrent"):
            BACKEND.reading(g)
        assert get("reference").check(g) == []  # the reference runs it

    # where the node order spares the crash, snnTorch computes the miswired recurrence
    model = import_from_nir(copy.deepcopy(graph)).double()
    for m in model.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.register_forward_hook(FE._cast)
    x = torch.from_numpy(_x())
    got, _ = FE._run_snntorch(model, x, lambda m, xt, state: m(xt, state))
    nodes = graph.nodes
    w, b = (torch.from_numpy(np.asarray(getattr(nodes["fc"], f))) for f in ("weight", "bias"))
    wr = torch.from_numpy(nodes["rec"].weight)
    w2, b2 = (torch.from_numpy(np.asarray(getattr(nodes["fc2"], f))) for f in ("weight", "bias"))
    s, v, want = torch.zeros(B, N, dtype=torch.float64), torch.zeros(B, N, dtype=torch.float64), []
    for xt in x:
        v = 0.75 * v + (xt @ w.T + b + s) @ wr.T  # b_rec = 0
        s = (v > 0.5).double()
        v = v * (1 - s)
        want.append(s @ w2.T + b2)
    np.testing.assert_array_equal(got.numpy(), torch.stack(want).numpy())
    assert not np.array_equal(got.numpy(), run_reference(graph, x).numpy())


def test_check_names_custom_nodes_and_what_the_reader_refuses():
    graph = _graph(_lif(0.75))
    model = torch.nn.Sequential(torch.nn.Linear(N_IN, N), snn.Leaky(beta=0.75, init_hidden=True))
    exported = nirbridge.to_nir(model, torch.zeros(1, N_IN))
    (custom,) = FE._neuron_nodes(exported)
    graph.nodes["lif"] = exported.nodes[custom]
    kind = type(graph.nodes["lif"]).__name__
    assert kind.startswith("SnnTorch")
    (reason,) = BACKEND.check(graph)
    assert f"'lif' ({kind})" in reason and "custom node" in reason

    leak = _graph(_lif(0.75))
    leak.nodes["lif"].v_leak = np.full(N, 0.1)
    assert any("'lif'" in r and "v_leak" in r for r in BACKEND.check(leak))
    two = _graph(_lif(0.75))
    two.nodes["out2"] = nir.Output(np.array([N]))
    two.edges.append(("lif", "out2"))
    assert any("2 Output nodes" in r for r in BACKEND.check(two))
    clash = _graph(_lif(0.75))
    clash.nodes["f.c"] = nir.Affine(np.eye(4), np.zeros(4))
    clash.nodes["f_c"] = nir.Affine(np.eye(4), np.zeros(4))
    clash.edges += [("fc2", "f.c"), ("f.c", "f_c"), ("f_c", "output")]
    clash.edges.remove(("fc2", "output"))
    assert any("'f.c' and 'f_c' both become 'f_c'" in r for r in BACKEND.check(clash))
    with pytest.raises(InputError, match="no option 'bogus'"):
        BACKEND.check(graph, bogus=1)


def test_run_checks_its_inputs_and_keeps_no_neuron_alive():
    graph = _graph(_lif(0.75))
    before = len(snn.SpikingNeuron.instances)
    for _ in range(3):
        BACKEND.run(graph, _x())
    assert len(snn.SpikingNeuron.instances) == before
    with pytest.raises(InputError, match="per-step shape"):
        BACKEND.run(graph, np.zeros((T, B, 3)))
    with pytest.raises(InputError, match="record= names 'nope'"):
        BACKEND.run(graph, _x(), record=["nope"])


# --------------------------------------------------------------------------------- CLI
def test_nirbridge_run_with_the_snntorch_backend(tmp_path, capsys):
    x = FE._inputs(8)[:T]
    path = FE._snntorch_file(FE._file_model("subtract"), x[0, 0], tmp_path)
    np.save(tmp_path / "x.npy", x.numpy())
    out = tmp_path / "out.npz"
    assert main(["run", path, "--input", str(tmp_path / "x.npy"), "--backend", "snntorch",
                 "--dt", "1e-4", "-o", str(out)]) == 0
    with np.load(out) as z:
        np.testing.assert_array_equal(z["output"], FE._run_reading(FE._reading(path), x)[0])
        assert float(z["dt"]) == 1e-4
