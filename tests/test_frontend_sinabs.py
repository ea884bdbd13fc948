"""Sinabs models and files through nirbridge, exactly (issue 9).

Direct route: models built with ``sinabs.layers`` export with :func:`nirbridge.to_nir`;
the float64 reference on ``[T, B, ...]`` equals Sinabs' own forward on the same data in
Sinabs' layout (``[B, T, ...]``, or ``[B·T, ...]`` for the ``*Squeeze`` layers) over
T ≥ 16 steps: outputs identical, every layer's ``v_mem`` within 1e-9. File route: a file
written by ``sinabs.to_nir``, read with :func:`nirbridge.read` and the front-end's
``from_file``, equals ``sinabs.from_nir`` of the same file.

Sinabs' spike functions return float32 (``.float()``) whatever the model's dtype; the
values are small integer counts, so the Sinabs models here cast every layer's input back
to float64 (exact) and otherwise run Sinabs' own code. One float32 product remains in a
float64 Sinabs run: the reset ``spikes · d`` is computed in float32 when ``d`` is a
Python float (``subtract_value``) or a 0-dim threshold (type promotion keeps the
dimensioned float32 operand), so scalar thresholds and subtract values here are short
binary fractions, whose small multiples float32 holds exactly; nirbridge computes the
product in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nirbridge
import nirbridge.passes
from nirbridge.errors import UnsupportedLayerError
from nirbridge.export.frontends import frontend
from nirbridge.neurons import NEURONS
from nirbridge.passes import topological_order

sl = pytest.importorskip("sinabs.layers")
sinabs = pytest.importorskip("sinabs")
from sinabs.activation import (  # noqa: E402
    MaxSpike,
    MembraneReset,
    MembraneSubtract,
    MultiSpike,
    SingleSpike,
)

T, B, N_IN, N = 24, 3, 8, 12
pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.*deprecated:DeprecationWarning")
FE = frontend("sinabs")


# ------------------------------------------------------------------------ helpers
def _cast(_mod: nn.Module, args: tuple) -> tuple:
    return tuple(a.double() if torch.is_tensor(a) and a.is_floating_point() else a
                 for a in args)


def _float64(model: nn.Module) -> nn.Module:
    """``model`` in float64, each leaf's input cast to float64 (Sinabs' float32 counts)."""
    model.double()
    for mod in model.modules():
        if not list(mod.children()):
            mod.register_forward_pre_hook(_cast)
    return model


def _stateful(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, sl.StatefulLayer)]


def _sinabs_run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Sinabs' forward from reset states, recording every layer's v_mem."""
    for layer in _stateful(model):
        layer.record_states = True
        layer.reset_states()
    with torch.no_grad():
        out = model(x)
    return out[0] if isinstance(out, tuple) else out


def _neuron_nodes(graph) -> list[str]:
    return [n for n in topological_order(graph) if type(graph.nodes[n]).__name__ in NEURONS]


def _through_a_file(graph, tmp_path, name="model"):
    path = tmp_path / f"{name}.nir"
    nirbridge.write(path, graph)
    return nirbridge.read(path)


def _assert_equal_runs(graph, model: nn.Module, x_ref: torch.Tensor, out_sinabs: torch.Tensor,
                       to_ref) -> dict:
    """Reference outputs identical to Sinabs', every layer's v_mem within 1e-9; returns
    the reference records."""
    out, records = nirbridge.run(graph, x_ref, record=True)
    assert torch.equal(out, to_ref(out_sinabs).to(out.dtype)), "outputs differ from Sinabs'"
    nodes, layers = _neuron_nodes(graph), _stateful(model)
    assert len(nodes) == len(layers), (nodes, layers)
    for node, layer in zip(nodes, layers, strict=True):
        want = to_ref(layer.recordings["v_mem"])
        got = records[node].states["v"]
        torch.testing.assert_close(got, want.to(got.dtype), rtol=0, atol=1e-9,
                                   msg=lambda m, n=node: f"{n}: v_mem: {m}")
        if "i_syn" in layer.recordings:
            want, got = to_ref(layer.recordings["i_syn"]), records[node].states["i"]
            torch.testing.assert_close(got, want.to(got.dtype), rtol=0, atol=1e-9,
                                       msg=lambda m, n=node: f"{n}: i_syn: {m}")
    return records


def _btn_to_tbn(y: torch.Tensor) -> torch.Tensor:
    return y.transpose(0, 1)


# ------------------------------------------------------------------- direct route
def _two_layer(layer: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(N_IN, N), layer, nn.Linear(N, 6),
                          sl.IAF(spike_threshold=0.5, min_v_mem=-0.5))
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[2].weight.mul_(2.0)
    return _float64(model)


VARIANTS = {
    # name: (layer factory, exported node type, emits several spikes per step)
    "iaf_default": (lambda: sl.IAF(), "SinabsIAF", True),
    "iaf_floor_per_neuron_threshold": (
        lambda: sl.IAF(spike_threshold=torch.linspace(0.5, 1.5, N), min_v_mem=-0.5),
        "SinabsIAF", True),
    "iaf_maxspike_subtract_value": (
        lambda: sl.IAF(spike_fn=MaxSpike(2), reset_fn=MembraneSubtract(subtract_value=0.75),
                       spike_threshold=0.625), "SinabsIAF", True),
    "iaf_single_reset_is_nir_if": (
        lambda: sl.IAF(spike_fn=SingleSpike, reset_fn=MembraneReset()), "IF", False),
    "iaf_single_subtract_floor": (
        lambda: sl.IAF(spike_fn=SingleSpike, min_v_mem=-1.0), "SinabsIAF", False),
    "iaf_multi_reset_value": (
        lambda: sl.IAF(reset_fn=MembraneReset(reset_value=0.1), min_v_mem=-0.3,
                       spike_threshold=0.4), "SinabsIAF", True),
    "lif_default": (lambda: sl.LIF(tau_mem=5.0, spike_threshold=0.25), "SinabsLIF", True),
    "lif_no_norm_single_reset_floor": (
        lambda: sl.LIF(tau_mem=torch.linspace(2.0, 8.0, N), norm_input=False,
                       spike_fn=SingleSpike, reset_fn=MembraneReset(), min_v_mem=-0.5),
        "SinabsLIF", False),
    "lif_train_alphas": (
        lambda: sl.LIF(tau_mem=torch.linspace(3.0, 6.0, N), train_alphas=True,
                       spike_threshold=0.375, spike_fn=MultiSpike), "SinabsLIF", True),
    "lif_without_spike_fn": (
        lambda: sl.LIF(tau_mem=3.0, spike_fn=None, min_v_mem=-0.2), "SinabsExpLeak", False),
    "iaf_tau_syn": (lambda: sl.IAF(tau_syn=3.0, min_v_mem=-0.5), "SinabsSynLIF", True),
    "lif_tau_syn_per_neuron": (
        lambda: sl.LIF(tau_mem=6.0, tau_syn=torch.linspace(2.0, 4.0, N), spike_threshold=0.125,
                       reset_fn=MembraneReset()), "SinabsSynLIF", True),
    "lif_tau_syn_train_alphas_single": (
        lambda: sl.LIF(tau_mem=4.0, tau_syn=2.0, train_alphas=True, norm_input=False,
                       spike_fn=SingleSpike), "SinabsSynLIF", False),
    "expleak_floor": (lambda: sl.ExpLeak(tau_mem=4.0, min_v_mem=-0.3), "SinabsExpLeak", False),
    "expleak_norm_input": (
        lambda: sl.ExpLeak(tau_mem=torch.linspace(2.0, 6.0, N), norm_input=True),
        "SinabsExpLeak", False),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_direct_route_equals_sinabs(variant, tmp_path):
    factory, node_type, multi = VARIANTS[variant]
    model = _two_layer(factory(), seed=sorted(VARIANTS).index(variant))
    if variant == "lif_train_alphas":  # a trained α, not exp(−1/τ) of a round τ
        with torch.no_grad():
            model[1].alpha_mem.sub_(torch.linspace(0.0, 0.05, N, dtype=torch.float64))
    graph = nirbridge.to_nir(model, torch.zeros(1, N_IN), dt=1.0)
    assert type(graph.nodes[_neuron_nodes(graph)[0]]).__name__ == node_type
    graph = _through_a_file(graph, tmp_path)

    x = torch.randn(B, T, N_IN, generator=torch.Generator().manual_seed(7),
                    dtype=torch.float64) + 0.3
    out = _sinabs_run(model, x)
    _assert_equal_runs(graph, model, _btn_to_tbn(x), out, _btn_to_tbn)
    first = _btn_to_tbn(model[1].recordings["v_mem"])
    assert float(first.abs().max()) > 0
    spikes = _neuron_output(model, x)
    if multi:
        assert float(spikes.max()) >= 2, "the test never fires several spikes in one step"
    assert 0 < float(out.mean()), "the last layer never fires"


def _neuron_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The first Sinabs layer's output on ``x`` (from reset states)."""
    for layer in _stateful(model):
        layer.reset_states()
    with torch.no_grad():
        return model[1](model[0](x))


def _digits(n: int) -> torch.Tensor:
    """``n`` scikit-learn digits as input currents ``[n, T, 1, 8, 8]``, with noise."""
    from sklearn.datasets import load_digits

    images = torch.as_tensor(load_digits().images[:n] / 16.0, dtype=torch.float64)
    noise = torch.randn(n, T, 1, 8, 8, generator=torch.Generator().manual_seed(3),
                        dtype=torch.float64)
    return images[:, None, None] * 1.5 + 0.3 * noise


def test_squeeze_layers_on_digits_equal_sinabs(tmp_path):
    torch.manual_seed(11)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), sl.IAFSqueeze(batch_size=B, min_v_mem=-1.0),
        sl.SumPool2d(2), nn.Conv2d(4, 6, 3),
        sl.LIFSqueeze(num_timesteps=T, tau_mem=torch.full((6, 2, 2), 3.0),
                      spike_fn=MaxSpike(3), spike_threshold=0.25),
        nn.Flatten(), nn.Linear(24, 10),
        sl.ExpLeakSqueeze(batch_size=B, tau_mem=5.0, min_v_mem=-0.5),
        nn.Linear(10, 10), sl.IAFSqueeze(batch_size=B, spike_fn=SingleSpike))
    with torch.no_grad():
        model[0].weight.mul_(2.0)
        model[3].weight.mul_(3.0)
    model = _float64(model)
    graph = nirbridge.to_nir(model, torch.zeros(1, 1, 8, 8), dt=1.0)
    kinds = [type(graph.nodes[n]).__name__ for n in topological_order(graph)]
    assert kinds.count("SumPool2d") == 1 and "SinabsIAF" in kinds and "SinabsLIF" in kinds
    graph = _through_a_file(graph, tmp_path)

    x = _digits(B)  # [B, T, 1, 8, 8]
    out = _sinabs_run(model, x.flatten(0, 1))  # Sinabs' squeezed layout [B·T, ...]

    def to_ref(y):
        return y.reshape(B, T, *y.shape[1:]).transpose(0, 1) if y.shape[0] == B * T \
            else y.transpose(0, 1)

    _assert_equal_runs(graph, model, x.transpose(0, 1), out, to_ref)
    iaf = model[1].recordings["v_mem"]
    assert bool((iaf == -1.0).any()), "the floor min_v_mem is never reached"


def test_layout_wrappers_export_as_one_step(tmp_path):
    torch.manual_seed(5)
    model = _float64(nn.Sequential(
        sl.Repeat(nn.Conv2d(1, 4, 3)), sl.IAF(min_v_mem=-0.5, spike_threshold=0.5),
        sl.FlattenTime(), sl.SumPool2d(2, stride=2), sl.UnflattenTime(B),
        sl.LIF(tau_mem=4.0, norm_input=False)))
    graph = _through_a_file(nirbridge.to_nir(model, torch.zeros(1, 1, 8, 8), dt=1.0), tmp_path)
    x = _digits(B)
    out = _sinabs_run(model, x)
    _assert_equal_runs(graph, model, x.transpose(0, 1), out, _btn_to_tbn)


def test_a_sinabs_network_exports_its_spiking_model():
    network = pytest.importorskip("sinabs.network")
    net = network.Network(spiking_model=nn.Sequential(nn.Linear(3, 4), sl.IAF()))
    graph = nirbridge.to_nir(net, torch.zeros(1, 3))
    assert [type(graph.nodes[n]).__name__ for n in topological_order(graph)] == \
        ["Input", "Affine", "SinabsIAF", "Output"]


# ---------------------------------------------------------------------- file route
def _sinabs_file_model() -> nn.Module:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Linear(N_IN, N), sl.IAF(spike_threshold=torch.full((N,), 0.5)),
        nn.Linear(N, 8), sl.LIF(tau_mem=torch.linspace(2.0, 6.0, 8),
                                spike_threshold=torch.full((8,), 0.2)),
        nn.Linear(8, 4), sl.ExpLeak(tau_mem=torch.full((4,), 4.0)))
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[2].weight.mul_(3.0)
    return model


@pytest.fixture(scope="module")
def sinabs_file(tmp_path_factory):
    """A file written by Sinabs' own exporter (float32, as Sinabs models are), its model."""
    model = _sinabs_file_model()
    sample = torch.zeros(B, T, N_IN)
    model(sample)
    path = tmp_path_factory.mktemp("sinabs") / "sinabs.nir"
    import nir

    nir.write(str(path), sinabs.to_nir(model, sample))
    return path, model


def test_file_route_equals_sinabs_reading(sinabs_file, tmp_path):
    import nir

    path, _ = sinabs_file
    read = nirbridge.read(path)
    graph, notes = FE.from_file(read)
    assert graph.metadata["dt"] == FE.DT == 1.0
    assert any(n.startswith("IF read as Sinabs IAF") for n in notes), notes
    assert [type(graph.nodes[n]).__name__ for n in _neuron_nodes(graph)] == \
        ["SinabsIAF", "SinabsLIF", "SinabsExpLeak"]
    graph = _through_a_file(graph, tmp_path, "imported")

    theirs = _float64(sinabs.from_nir(nir.read(str(path), type_check=False), batch_size=B))
    x = torch.randn(B, T, N_IN, generator=torch.Generator().manual_seed(9),
                    dtype=torch.float64) + 0.4
    out = _sinabs_run(theirs, x.flatten(0, 1))

    def to_ref(y):
        return y.reshape(B, T, *y.shape[1:]).transpose(0, 1) if y.shape[0] == B * T \
            else y.transpose(0, 1)

    _assert_equal_runs(graph, theirs, x.transpose(0, 1), out, to_ref)


def test_sinabs_reading_differs_from_nir_reading_and_from_the_model(sinabs_file):
    """What the README reports: NIR's reading of Sinabs' file (IF fires once and resets
    hard, LIF is forward Euler) is not Sinabs' reading, and Sinabs' reading is not the
    model it exported (its IAF had no floor, its LIF normalised the input)."""
    path, model = sinabs_file
    x = torch.randn(B, T, N_IN, generator=torch.Generator().manual_seed(9),
                    dtype=torch.float64) + 0.4
    sinabs_reading = nirbridge.run(FE.from_file(nirbridge.read(path))[0], x.transpose(0, 1))
    nir_reading = nirbridge.run(nirbridge.read(path), x.transpose(0, 1), dt=1.0)
    original = _sinabs_run(_float64(model), x).transpose(0, 1)
    assert not torch.allclose(sinabs_reading, nir_reading)
    assert not torch.allclose(sinabs_reading, original)


def test_file_route_refuses_what_sinabs_cannot_read():
    import nir

    lin = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}),
                              "lin": nir.Linear(weight=np.ones((2, 2))),
                              "output": nir.Output(output_type={"output": np.array([2])})},
                       edges=[("input", "lin"), ("lin", "output")])
    with pytest.raises(UnsupportedLayerError, match=r"'lin' \(Linear\).*sinabs.from_nir"):
        FE.from_file(lin)
    lif = nir.LIF(tau=np.full(2, 3.0), r=np.ones(2), v_leak=np.full(2, 0.1),
                  v_threshold=np.ones(2))
    leaky = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}),
                                "lif": lif,
                                "output": nir.Output(output_type={"output": np.array([2])})},
                         edges=[("input", "lif"), ("lif", "output")])
    with pytest.raises(UnsupportedLayerError, match="v_leak"):
        FE.from_file(leaky)


# ------------------------------------------------------------------ refused modules
class _OwnSpike(torch.autograd.Function):
    required_states = ["v_mem"]

    @staticmethod
    def forward(ctx, v, threshold, surrogate):
        return (v > threshold).float()


REFUSED = {
    "ALIF": (lambda: sl.ALIF(tau_mem=3.0, tau_adapt=5.0), "adaptive"),
    "LIF": (lambda: sl.LIF(tau_mem=3.0, tau_syn=2.0, spike_fn=None), "tau_syn"),
    "IAF": (lambda: sl.IAF(spike_fn=_OwnSpike), "spike_fn _OwnSpike"),
    "SumPool2d": (lambda: sl.SumPool2d(3), "3x3"),
    "SpikingMaxPooling2dLayer": (lambda: sl.SpikingMaxPooling2dLayer((2, 2)), "cumulative"),
    "Img2SpikeLayer": (lambda: sl.Img2SpikeLayer((1, 8, 8)), "random"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_unsupported_modules_name_module_framework_and_route(kind):
    factory, why = REFUSED[kind]
    model = nn.Sequential(nn.Identity(), factory())
    sample = torch.zeros(1, 1, 8, 8) if "Pool" in kind or "Img" in kind else torch.zeros(1, N)
    with pytest.raises(UnsupportedLayerError) as err:
        nirbridge.to_nir(model, sample)
    msg = str(err.value)
    assert f"1 ({kind})" in msg and "a Sinabs module" in msg, msg
    assert why in msg and "what exports: sinabs.layers IAF" in msg, msg


def test_recurrent_layers_are_refused():
    # not through to_nir: Sinabs' IAFRecurrent cannot be deep-copied, and to_nir copies
    # the model before any front-end sees it
    layer = sl.IAFRecurrent(rec_connect=nn.Linear(N, N))
    with pytest.raises(UnsupportedLayerError, match=r"rec \(IAFRecurrent\), a Sinabs.*"
                       "recurrent connection"):
        FE.adapt(layer, "rec")


# ----------------------------------------------------------- integer and profiler
def test_division_by_a_constant_is_exact_over_the_whole_state_range():
    from nirbridge.neurons.sinabs_iaf import divide_by_constant

    bits = 23
    n = np.arange(1 << bits, dtype=np.int64)
    for theta in (1, 2, 3, 7, 64, 100, 4095, 12345, (1 << 22) + 1, (1 << bits) - 1):
        mul, shift = divide_by_constant(np.int64(theta), bits)
        np.testing.assert_array_equal((n * mul) >> shift, n // theta, err_msg=str(theta))


def _dyadic_model() -> nn.Module:
    """Weights, biases, thresholds and floors on a 1/16 grid: fixed point is exact."""
    torch.manual_seed(4)
    lin1, lin2 = nn.Linear(4, 6), nn.Linear(6, 3)
    with torch.no_grad():
        for lin in (lin1, lin2):
            lin.weight.copy_(torch.randint(-16, 17, lin.weight.shape) / 16.0)
            lin.bias.copy_(torch.randint(-4, 5, lin.bias.shape) / 16.0)
    return _float64(nn.Sequential(lin1, sl.IAF(spike_threshold=0.5, min_v_mem=-0.75), lin2,
                                  sl.IAF(spike_threshold=0.25, min_v_mem=-1.0)))


def _dyadic_inputs() -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.as_tensor(rng.integers(-8, 17, (T, B, 4)) / 8.0)


def test_integer_model_gives_the_same_spike_counts():
    from nirbridge.quantize import QuantConfig, quantize, run_fixed_point

    graph = nirbridge.to_nir(_dyadic_model(), torch.zeros(1, 4))
    x = _dyadic_inputs()
    want, records = nirbridge.run(graph, x, record=True)
    q = quantize(graph, QuantConfig.from_profile("loihi2", input_frac_bits=8))
    got, _ = run_fixed_point(q, x.numpy())
    first = records[_neuron_nodes(graph)[0]].output
    assert float(first.max()) >= 2 and float(want.max()) >= 2, "no multi-spike counts"
    np.testing.assert_array_equal(got, want.numpy())


def test_profiler_counts_every_spike_of_a_multi_spike_step():
    from nirbridge.profile import count_events

    graph = nirbridge.to_nir(_dyadic_model(), torch.zeros(1, 4))
    out, records = nirbridge.run(graph, _dyadic_inputs(), record=True)
    counts = count_events(graph, records)
    node = _neuron_nodes(graph)[-1]
    assert counts.neurons[node].spikes == float(out.sum()) / B
    first = _neuron_nodes(graph)[0]
    spikes_in = records[first].output
    assert float(spikes_in.max()) >= 2, "no multi-spike counts"
    # the synapse after a multi-spike layer does one event per spike, not per active neuron
    (syn,) = [n for n, p in nirbridge.passes.predecessors(graph).items()
              if p == [first] and n in counts.synapses]
    fanout = np.asarray(graph.nodes[syn].weight).shape[0]
    assert counts.synapses[syn].kind == "AC"
    assert counts.synapses[syn].effective == float(spikes_in.sum()) * fanout / B


# -------------------------------------------------------------------------- Lava
@pytest.fixture(scope="module")
def lava_run():
    """One Lava floating_pt run of Sinabs neurons side by side (several spikes per step),
    one of them feeding a second layer through a synapse."""
    from nirbridge.backends.lava import run_lava

    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(4, 6), sl.IAF(spike_threshold=0.4, min_v_mem=-0.5),
                          nn.Linear(6, 5), sl.LIF(tau_mem=3.0, spike_threshold=0.1))
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[2].weight.mul_(2.0)
    graph = nirbridge.to_nir(_float64(model), torch.zeros(1, 4))
    import nir

    nodes = dict(graph.nodes)
    iaf, lif = _neuron_nodes(graph)
    extra = {"leak": nir.Output(output_type={"output": np.array([6])}),
             "iaf_out": nir.Output(output_type={"output": np.array([6])})}
    nodes.update(extra)
    leak = NEURONS["SinabsExpLeak"].example((6,), True).to_nir_node((6,), 1.0)
    lif_b = NEURONS["SinabsLIF"].example((6,), False).to_nir_node((6,), 1.0)
    nodes.update({"n_leak": leak, "n_lif_b": lif_b,
                  "lif_b_out": nir.Output(output_type={"output": np.array([6])})})
    fc = next(n for n in topological_order(graph) if isinstance(graph.nodes[n], nir.Affine))
    edges = list(graph.edges) + [(iaf, "iaf_out"), (fc, "n_leak"), ("n_leak", "leak"),
                                 (fc, "n_lif_b"), ("n_lif_b", "lif_b_out")]
    side = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)
    x = _dyadic_inputs().numpy() * 2
    want = nirbridge.run(side, torch.from_numpy(x))
    res = run_lava(side, x, "floating_pt", timeout_s=300)
    return want, res.outputs


@pytest.mark.lava
def test_lava_floating_pt_passes_spike_counts_through(lava_run):
    want, got = lava_run
    assert float(want["iaf_out"].max()) >= 2, "no multi-spike counts"
    for name in ("iaf_out", "lif_b_out"):
        np.testing.assert_array_equal(got[name], want[name].numpy(), err_msg=name)
    np.testing.assert_allclose(got["leak"], want["leak"].numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.lava
def test_lava_floating_pt_carries_counts_through_a_synapse(lava_run):
    want, got = lava_run
    np.testing.assert_array_equal(got["output"], want["output"].numpy())
