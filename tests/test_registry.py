"""Every registered neuron through every stage, by walking the registry.

For each entry of :data:`nirbridge.neurons.NEURONS` (the built-in ones and the test-only
``FloorLIF`` of ``tests/example_neuron.py``, which the package does not know), with scalar
and with per-channel parameters: export of its example module → file round trip → lossy
fallback (read by stock ``nir.read``, restored exactly) → reference = the torch module →
Lava floating_pt = reference (spike-exact) → integer model = Lava fixed_pt
(integer-exact) → a profile (event counts). A neuron registered without one of these
fails with its name.

Every neuron also runs in a recurrent layer (its branch gets a recurrent Affine, with a
bias, back to itself: ``docs/recurrence.md``): file round trip, reference = the torch
module stepped with the recurrent input written out (zero at t = 0, bias included),
Lava floating_pt = reference, integer model = Lava fixed_pt.

Lava is slow to start, so every neuron is one branch of one graph (Input → Affine_i →
neuron_i → Output_i), and its recurrent branch another branch of the same graph: one
Lava run per mode and parameter kind covers them all.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import nirbridge
import nirbridge.io
from nirbridge.neurons import NEURONS, StatefulSequential, run_steps

sys.path.insert(0, str(Path(__file__).parent))
import example_neuron  # noqa: E402  (registers FloorLIF: the test-only neuron)

N_IN, N, T, B = 4, 6, 10, 2
SHAPE = (N,)
KINDS = ("scalar", "per_channel")


def _model(name: str, kind: str, seed: int) -> StatefulSequential:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(N_IN, N)
    with torch.no_grad():
        lin.weight.normal_(0.0, 0.8)
        lin.bias.normal_(0.3, 0.2)
    neuron = NEURONS[name].example(SHAPE, kind == "per_channel")
    return StatefulSequential(lin, neuron).double()


def _inputs(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.3, 1.0, (T, B, N_IN))


@pytest.fixture(scope="module", params=KINDS)
def branches(request):
    """Per neuron: its module, its graph (one branch, read back from a file), the graph
    of every branch side by side, and that graph with every neuron's recurrent branch
    added (and the recurrent Affines by neuron)."""
    kind = request.param
    models, graphs = {}, {}
    for i, name in enumerate(sorted(NEURONS)):
        models[name] = _model(name, kind, seed=i)
        graphs[name] = nirbridge.to_nir(models[name], torch.zeros(1, N_IN, dtype=torch.float64),
                                        dt=1.0)
    side = _side_by_side(graphs)
    return kind, models, graphs, side, _with_recurrence(side, list(graphs))


def _recurrent_affine(name: str, seed: int) -> nir.Affine:
    """The recurrent Affine of neuron ``name``: all-to-all, with a bias; smaller for the
    graded neurons, whose output feeds back a value rather than a spike."""
    rng = np.random.default_rng(1000 + seed)
    scale = 0.5 if NEURONS[name].spiking else 0.1
    return nir.Affine(weight=rng.normal(-0.05, scale, (N, N)), bias=rng.normal(0.05, 0.05, N))


def _with_recurrence(side: nir.NIRGraph, names: list[str]) -> nir.NIRGraph:
    """``side`` plus, per neuron, Input → fcr_i → nr_i → Output outr_i with nr_i →
    rec_i → nr_i (the same feed-forward Affine and neuron node as its branch)."""
    nodes, edges = dict(side.nodes), list(side.edges)
    for i, name in enumerate(names):
        nodes[f"fcr_{name}"] = side.nodes[f"fc_{name}"]
        nodes[f"nr_{name}"] = side.nodes[f"n_{name}"]
        nodes[f"rec_{name}"] = _recurrent_affine(name, i)
        nodes[f"outr_{name}"] = nir.Output(output_type={"output": np.array([N])})
        edges += [("input", f"fcr_{name}"), (f"fcr_{name}", f"nr_{name}"),
                  (f"nr_{name}", f"rec_{name}"), (f"rec_{name}", f"nr_{name}"),
                  (f"nr_{name}", f"outr_{name}")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


def _recurrent_module_run(model: StatefulSequential, rec: nir.Affine,
                          x: torch.Tensor) -> torch.Tensor:
    """The torch module of a branch stepped with its recurrent input written out: the
    neuron sees ``lin(x[t]) + (W·y[t-1] + b)``, the second term zero at t = 0."""
    lin, neuron = model[0], model[1]
    w = torch.as_tensor(np.asarray(rec.weight), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(rec.bias), dtype=torch.float64)
    state, prev, outs = None, None, []
    with torch.no_grad():
        drive = lin(x)  # over [T, B] at once, as the reference's batched Affine
        for t in range(x.shape[0]):
            xt = drive[t] if prev is None else drive[t] + torch.nn.functional.linear(prev, w, b)
            y, state = neuron(xt, state)
            outs.append(y)
            prev = y
    return torch.stack(outs)


def _neuron_node(graph: nir.NIRGraph) -> tuple[str, nir.NIRNode]:
    (name, node), = [(n, v) for n, v in graph.nodes.items()
                     if type(v).__name__ in NEURONS]
    return name, node


def _side_by_side(graphs: dict[str, nir.NIRGraph]) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([N_IN])})}
    edges = []
    for name, g in graphs.items():
        syn = next(v for v in g.nodes.values() if isinstance(v, nir.Affine))
        nodes[f"fc_{name}"] = syn
        nodes[f"n_{name}"] = _neuron_node(g)[1]
        nodes[f"out_{name}"] = nir.Output(output_type={"output": np.array([N])})
        edges += [("input", f"fc_{name}"), (f"fc_{name}", f"n_{name}"),
                  (f"n_{name}", f"out_{name}")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


def test_the_test_only_neuron_is_registered_from_its_own_file():
    spec = NEURONS["FloorLIF"]
    assert spec.node is example_neuron.FloorLIFNode and spec.custom
    assert "FloorLIF" in nirbridge.neurons.custom_nodes()
    assert not any("FloorLIF" in p.read_text() or "floorlif" in p.read_text()
                   for p in Path(nirbridge.__file__).parent.rglob("*.py"))


@pytest.mark.parametrize("name", sorted(NEURONS))
def test_every_neuron_declares_every_stage(name):
    spec = NEURONS[name]
    missing = [what for what, ok in (
        ("an example module", callable(spec.example)),
        ("an integer model", spec.integer is not None),
        ("a quantizer plan", spec.quantize is not None),
        ("a lossy approximation", spec.lossy is not None or not spec.custom),
        ("a description", bool(spec.description)),
    ) if not ok]
    assert not missing, f"neuron {name} has no " + ", no ".join(missing)


def test_export_and_file_round_trip(branches, tmp_path):
    kind, models, graphs, _, _ = branches
    for name, graph in graphs.items():
        node_name, node = _neuron_node(graph)
        assert type(node).__name__ == name, f"{name}: its example exports {type(node).__name__}"
        path = tmp_path / f"{name}-{kind}.nir"
        nirbridge.write(path, graph)
        back = nirbridge.read(path)
        again = back.nodes[node_name]
        assert type(again) is type(node), name
        for f in getattr(node, "PARAMS", ()) or [
                f for f in node.__dataclass_fields__
                if f not in ("input_type", "output_type", "metadata")]:
            np.testing.assert_array_equal(np.asarray(getattr(again, f)),
                                          np.asarray(getattr(node, f)), err_msg=f"{name}.{f}")
        x = torch.from_numpy(_inputs())
        np.testing.assert_array_equal(nirbridge.run(back, x).numpy(),
                                      nirbridge.run(graph, x).numpy(), err_msg=name)


def test_lossy_fallback_reads_in_stock_nir_and_restores_exactly(branches, tmp_path):
    _, _, graphs, _, _ = branches
    for name, graph in graphs.items():
        path = tmp_path / f"{name}.nir"
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            nirbridge.write(path, graph, compat="lossy")
        lossy = [w for w in seen if issubclass(w.category, nirbridge.io.LossyExportWarning)]
        assert bool(lossy) == NEURONS[name].custom, f"{name}: lossy warnings {lossy}"
        stock = nir.read(str(path))
        assert all(type(v).__name__ not in nirbridge.neurons.custom_nodes()
                   for v in stock.nodes.values()), name
        restored = nirbridge.io.read(path, restore_lossy=True)
        x = torch.from_numpy(_inputs())
        np.testing.assert_array_equal(nirbridge.run(restored, x).numpy(),
                                      nirbridge.run(graph, x).numpy(), err_msg=name)


def test_reference_equals_the_torch_module(branches):
    _, models, graphs, _, _ = branches
    x = torch.from_numpy(_inputs())
    for name, graph in graphs.items():
        with torch.no_grad():
            want = run_steps(models[name], x)
        got = nirbridge.run(graph, x)
        if not NEURONS[name].spiking:  # the synapse's BLAS on [T·B] vs [B] rows: 1 ulp
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)
            continue
        assert torch.equal(got, want), f"{name}: reference spikes differ from the module's"
        if NEURONS[name].spiking:
            rate = float(want.mean())
            assert 0.05 < rate < 0.95, f"{name}: firing rate {rate:.2f}; retune its example"


def test_a_profile_counts_every_neuron(branches):
    _, _, _, graph, _ = branches
    from nirbridge.profile import count_events, estimate_energy, load_profile

    x = torch.from_numpy(_inputs())
    out, records = nirbridge.run(graph, x, record=True)
    counts = count_events(graph, records)
    for name, spec in NEURONS.items():
        c = counts.neurons[f"n_{name}"]
        assert c.neurons == N and c.updates_dense == N * T, name
        assert c.spiking == spec.spiking, name
        if spec.spiking:
            assert c.spikes == float(out[f"out_{name}"].sum()) / B, name
    energy = estimate_energy(counts, load_profile("loihi2"))
    assert energy.terms, "the loihi2 profile priced nothing"


def test_recurrent_graph_file_round_trip(branches, tmp_path):
    kind, _, _, _, graph = branches
    path = tmp_path / f"recurrent-{kind}.nir"
    nirbridge.write(path, graph)
    back = nirbridge.read(path)
    assert set(back.nodes) == set(graph.nodes) and sorted(back.edges) == sorted(graph.edges)
    for name in NEURONS:
        assert (f"rec_{name}", f"nr_{name}") in back.edges, name
    x = torch.from_numpy(_inputs())
    got, want = nirbridge.run(back, x), nirbridge.run(graph, x)
    for out in want:
        np.testing.assert_array_equal(got[out].numpy(), want[out].numpy(), err_msg=out)


def test_reference_of_the_recurrent_layer_equals_the_torch_module(branches):
    _, models, _, _, graph = branches
    x = torch.from_numpy(_inputs())
    got = nirbridge.run(graph, x)
    for name in NEURONS:
        want = _recurrent_module_run(models[name], graph.nodes[f"rec_{name}"], x)
        out = got[f"outr_{name}"]
        if not NEURONS[name].spiking:
            torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12, msg=name)
            continue
        assert torch.equal(out, want), f"{name}: recurrent reference spikes differ"
        rate = float(want.mean())
        assert 0.05 < rate < 0.95, f"{name}: recurrent firing rate {rate:.2f}; retune it"
        assert not torch.equal(out, got[f"out_{name}"]), f"{name}: the recurrence does nothing"


@pytest.mark.lava
def test_lava_floating_pt_equals_the_reference(branches):
    _, _, _, _, graph = branches  # every neuron's branch and its recurrent branch
    from nirbridge.backends.lava import run_lava

    x = _inputs()
    want = nirbridge.run(graph, torch.from_numpy(x))
    res = run_lava(graph, x, "floating_pt", timeout_s=300)
    for name, spec in NEURONS.items():
        for out in (f"out_{name}", f"outr_{name}"):
            a, b = res.outputs[out], want[out].numpy()
            if spec.spiking:
                np.testing.assert_array_equal(a, b, err_msg=f"{out}: Lava floating_pt spikes")
            else:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=out)


@pytest.mark.lava
def test_lava_fixed_pt_equals_the_integer_model(branches):
    _, _, _, _, graph = branches  # every neuron's branch and its recurrent branch
    from nirbridge.backends.lava import lower, run_lava
    from nirbridge.quantize import QuantConfig, run_fixed_point

    x = _inputs()
    cfg = QuantConfig.from_profile("loihi2", input_frac_bits=8)
    net = lower(graph, "fixed_pt", quant=cfg)
    gold_out, gold = run_fixed_point(net.quant, x)
    res = run_lava(net, x, record=True, timeout_s=300)
    for name, spec in NEURONS.items():
        for node in (f"n_{name}", f"nr_{name}", f"rec_{name}"):
            lr, gr = res.fixed_records[node], gold[node]
            np.testing.assert_array_equal(lr.output, gr.output, err_msg=f"{node}: output")
            assert set(lr.states) == set(gr.states), node
            for k, v in gr.states.items():
                np.testing.assert_array_equal(lr.states[k], v, err_msg=f"{node}: state {k}")
            if spec.spiking and node != f"rec_{name}":
                assert 0 < float(np.mean(gr.output)) < 1, f"{node}: no spikes in fixed point"
        np.testing.assert_array_equal(res.outputs[f"outr_{name}"], gold_out[f"outr_{name}"],
                                      err_msg=name)


# ------------------------------------------------------------------------------ ONNX
def test_onnx_equals_the_reference_for_every_neuron(branches):
    """Every neuron (feed-forward and recurrent branch) through nirbridge's ONNX
    converter, run by onnxruntime in float32: graded values within 1e-5 of the float64
    reference (normwise), spikes identical but where a decision of the reference lies
    within 1e-5 of its boundary (counted; ``tests/onnx_agreement.py``)."""
    from onnx_agreement import assert_agrees

    from nirbridge.backends import get

    kind, _, _, _, graph = branches
    x = _inputs()
    ref = get("reference").run(graph, x, record=True)
    got = get("onnx").run(graph, x, record=True)
    rep = assert_agrees(graph, ref, got, 1.0)
    for name in NEURONS:
        for prefix in ("n_", "nr_"):
            assert f"{prefix}{name}" in rep.max_rel, (name, sorted(rep.max_rel))
    seq = get("onnx").run(graph, x, sequence=True)
    for out, value in got.outputs.items():  # the Scan model computes the step model's values
        np.testing.assert_array_equal(seq.outputs[out], value, err_msg=out)
