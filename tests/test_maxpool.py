"""Max pooling of spikes: ``nn.MaxPool2d`` after a spiking neuron is exported as
``nir.SumPool2d`` followed by ``nir.Threshold(0.5)`` (the OR of each window) and runs
exactly in the reference, Lava floating_pt, the integer executor and Lava fixed_pt; max
pooling of graded values is refused with the reason.

Tests marked ``lava`` run Lava (one small graph each).
"""

from __future__ import annotations

import copy

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nirbridge.backends.fixed import quantized_for
from nirbridge.backends.reference import run_reference
from nirbridge.errors import QuantizationError, UnsupportedLayerError
from nirbridge.export import to_nir
from nirbridge.io import read, write
from nirbridge.neurons import LI, LIF, StatefulSequential
from nirbridge.profile import count_events, fanout_map, map_to_chip
from nirbridge.quantize import QuantConfig, QuantizedThreshold, quantize, run_fixed_point

T, B = 20, 3


class PoolNet(nn.Module):
    """conv → LIF → MaxPool2d(2) → conv → LIF → MaxPool2d(3, stride 2, padding 1) →
    flatten → linear → LIF, on a 2×6×6 input."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.lif1 = LIF(tau=2.0, v_threshold=0.4)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.lif2 = LIF(tau=3.0, v_threshold=0.3)
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(16, 3)
        self.lif3 = LIF(tau=2.0, v_threshold=0.2)
        with torch.no_grad():  # every layer fires 10-55 % of the time
            self.conv1.weight.mul_(3.0)
            self.conv1.bias.add_(0.1)
            self.conv2.weight.mul_(3.0)
            self.conv2.bias.add_(0.1)
            self.fc.weight.mul_(2.0)
            self.fc.bias.add_(0.1)

    def forward(self, x, state=None):
        s1, s2, s3 = (None, None, None) if state is None else state
        y, s1 = self.lif1(self.conv1(x), s1)
        y, s2 = self.lif2(self.conv2(self.pool1(y)), s2)
        y, s3 = self.lif3(self.fc(self.flat(self.pool2(y))), s3)
        return y, (s1, s2, s3)


def _inputs(seed: int, t: int = T, b: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((t, b, 2, 6, 6), generator=g, dtype=torch.float64) * 1.5


def _torch_run(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's own forward over ``x`` [T, B, ...] (float64), and what its max poolings
    returned at every step."""
    model = copy.deepcopy(model).double().eval()
    seen: dict[str, list[torch.Tensor]] = {"pool1": [], "pool2": []}
    for name in seen:
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: seen[name].append(out.detach().clone()))
    state, outs = None, []
    with torch.no_grad():
        for xt in x:
            y, state = model(xt, state)
            outs.append(y)
    return torch.stack(outs), {k: torch.stack(v) for k, v in seen.items()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[PoolNet, nir.NIRGraph]:
    model = PoolNet()
    graph = to_nir(model, torch.zeros(1, 2, 6, 6))
    path = tmp_path_factory.mktemp("maxpool") / "net.nir"
    write(path, graph)
    return model, read(path)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# ------------------------------------------------------------------------------ export
def test_maxpool_of_spikes_is_a_sumpool_then_a_threshold(exported):
    _, graph = exported
    for pool, (k, s, p) in (("pool1", (2, 2, 0)), ("pool2", (3, 2, 1))):
        node, thr = graph.nodes[pool], graph.nodes[f"{pool}_threshold"]
        assert isinstance(node, nir.SumPool2d) and isinstance(thr, nir.Threshold)
        assert list(node.kernel_size) == [k, k] and list(node.stride) == [s, s]
        assert list(node.padding) == [p, p]
        np.testing.assert_array_equal(thr.threshold, np.full(thr.threshold.shape, 0.5))
        assert (pool, f"{pool}_threshold") in graph.edges
    assert ("lif1", "pool1") in graph.edges and ("pool1_threshold", "conv2") in graph.edges
    assert ("pool2_threshold", "flat") in graph.edges
    assert tuple(graph.nodes["pool2_threshold"].threshold.shape) == (4, 2, 2)


def test_reference_equals_the_torch_model_with_maxpool(exported):
    model, graph = exported
    x = _inputs(0)
    want, pooled = _torch_run(model, x)
    out, rec = run_reference(graph, x, record=True)
    for name in ("lif1", "lif2", "lif3"):
        rate = float(rec[name].output.mean())
        assert 0.05 < rate < 0.95, f"{name} fires at {rate:.2f}; retune the test"
    assert torch.equal(out, want)
    for pool in ("pool1", "pool2"):
        # the Threshold's output is exactly what nn.MaxPool2d returned, at every step
        assert torch.equal(rec[f"{pool}_threshold"].output, pooled[pool]), pool
        assert 0 < float(pooled[pool].mean()) < 1
    # the window count: max pooling with padding -inf equals the OR of the 0/1 counts
    lif2 = rec["lif2"].output.flatten(0, 1)
    count = F.avg_pool2d(lif2, 3, 2, 1, count_include_pad=True, divisor_override=1)
    assert torch.equal(rec["pool2"].output, count.reshape(rec["pool2"].output.shape))


def test_maxpool_in_a_sequence_and_after_flatten_free_paths():
    torch.manual_seed(0)
    net = StatefulSequential(nn.Conv2d(1, 3, 3), LIF(tau=2.0, v_threshold=0.2),
                             nn.MaxPool2d(2), nn.MaxPool2d(2, stride=1)).double()
    graph = to_nir(net, torch.zeros(1, 1, 8, 8, dtype=torch.float64))
    assert [type(graph.nodes[n]).__name__ for n in ("maxpool2d_2", "maxpool2d_2_threshold",
                                                    "maxpool2d_3", "maxpool2d_3_threshold")] \
        == ["SumPool2d", "Threshold", "SumPool2d", "Threshold"]
    x = torch.rand((16, 2, 1, 8, 8), dtype=torch.float64) * 2
    want = torch.stack([y for y in _steps(net, x)])
    assert torch.equal(run_reference(graph, x), want)
    assert 0 < float(want.mean()) < 1


def test_maxpool_after_a_neuron_that_returns_its_output_only():
    from nirbridge.export.frontends import HiddenState  # a framework neuron's stand-in

    net = nn.Sequential(nn.Conv2d(1, 2, 3), HiddenState(LIF()), nn.MaxPool2d(2))
    graph = to_nir(net, torch.zeros(1, 1, 8, 8))
    assert isinstance(graph.nodes["maxpool2d_2"], nir.SumPool2d)
    assert isinstance(graph.nodes["maxpool2d_2_threshold"], nir.Threshold)
    graded = nn.Sequential(nn.Conv2d(1, 2, 3), HiddenState(LI()), nn.MaxPool2d(2))
    with pytest.raises(UnsupportedLayerError, match="LI emits graded values"):
        to_nir(graded, torch.zeros(1, 1, 8, 8))


def _steps(model: nn.Module, x: torch.Tensor):
    state = None
    with torch.no_grad():
        for xt in x:
            y, state = model(xt, state)
            yield y


def test_every_backend_accepts_the_exported_graph(exported):
    from nirbridge import backends

    _, graph = exported
    for name in backends.names():  # checks lower and quantize; nothing is started
        reasons = backends.get(name).check(graph)
        # the frameworks' readers have no nir.Threshold (max pooling of spikes exports one)
        if name == "snntorch":
            assert reasons and all("no module for nir.Threshold" in r for r in reasons), reasons
            continue
        if name in ("norse", "sinabs"):
            assert reasons and any("(Threshold)" in r for r in reasons), reasons
            continue
        assert reasons == [], name


# ------------------------------------------------------------------------------ refusals
def test_maxpool_of_graded_values_is_refused_with_the_reason():
    cases = {
        "conv": (StatefulSequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), LIF()),
                 "0 (Conv2d)"),
        "input": (StatefulSequential(nn.MaxPool2d(2), nn.Conv2d(1, 2, 3), LIF()),
                  "the network input"),
        "li": (StatefulSequential(nn.Conv2d(1, 2, 3), LI(), nn.MaxPool2d(2)),
               "whose NIR node LI emits graded values"),
    }
    for name, (net, source) in cases.items():
        with pytest.raises(UnsupportedLayerError) as info:
            to_nir(net, torch.zeros(1, 1, 8, 8))
        msg = str(info.value)
        assert "(MaxPool2d)" in msg and source in msg, name
        assert "the max of graded values has no NIR node" in msg, name
        assert "AvgPool2d" in msg and "SumPool2d" in msg and "after the neuron" in msg, name


def test_maxpool_settings_nir_cannot_express_are_named():
    net = StatefulSequential(nn.Conv2d(1, 2, 3), LIF(),
                             nn.MaxPool2d(2, ceil_mode=True, dilation=2))
    with pytest.raises(UnsupportedLayerError) as info:
        to_nir(net, torch.zeros(1, 1, 9, 9))
    msg = str(info.value)
    assert "ceil_mode=True" in msg and "dilation=2" in msg
    with pytest.raises(UnsupportedLayerError, match="NIR has no max pooling"):
        to_nir(StatefulSequential(nn.Conv1d(1, 2, 3), LIF(), nn.MaxPool1d(2)),
               torch.zeros(1, 1, 8))


# ------------------------------------------------------------------------- fixed point
def test_the_integer_threshold_is_the_or_of_the_fixed_point_spikes(exported):
    _, graph = exported
    x = (_inputs(1) > 0.75).double()
    qgraph = quantized_for(graph, x)
    layer = qgraph.layers["pool1_threshold"]
    assert isinstance(layer, QuantizedThreshold)
    assert layer.in_frac == 0 and np.all(layer.threshold == 0)  # count > 0
    assert qgraph.report["pool1_threshold"].kind == "threshold"
    _, rec = run_fixed_point(qgraph, x)
    for lif, pool, (k, s, p) in (("lif1", "pool1", (2, 2, 0)), ("lif2", "pool2", (3, 2, 1))):
        spikes = torch.from_numpy(rec[lif].output).double()
        assert 0 < float(spikes.mean()) < 1, lif
        want = F.max_pool2d(spikes.flatten(0, 1), k, s, p)
        got = rec[f"{pool}_threshold"].output
        np.testing.assert_array_equal(got, _np(want).reshape(got.shape).astype(np.int64))
        assert got.dtype == np.int64


def test_fixed_point_threshold_after_average_pooling_and_its_refusals():
    thr = np.full((1, 2, 2), 0.3)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([1, 4, 4])),
               "avg": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                    padding=np.array([0, 0])),
               "thr": nir.Threshold(threshold=thr),
               "output": nir.Output(output_type=np.array([1, 2, 2]))},
        edges=[("input", "avg"), ("avg", "thr"), ("thr", "output")], type_check=False)
    x = (np.random.default_rng(0).random((8, 2, 1, 4, 4)) < 0.3).astype(np.float64)
    qgraph = quantize(graph, QuantConfig(input_frac_bits=0))
    assert np.all(qgraph.layers["thr"].threshold == 1)  # window sum > floor(0.3·4)
    out, _ = run_fixed_point(qgraph, x)
    np.testing.assert_array_equal(out, _np(run_reference(graph, x)))
    assert 0 < out.mean() < 1

    weighted = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([3])),
               "fc": nir.Linear(weight=np.ones((2, 3))),
               "thr": nir.Threshold(threshold=np.full(2, 0.5)),
               "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "fc"), ("fc", "thr"), ("thr", "output")], type_check=False)
    with pytest.raises(QuantizationError, match="threshold 'thr' is fed through weighted"):
        quantize(weighted)


# ------------------------------------------------------------------------------ profile
def test_profile_counts_the_pooling_as_an_event_stage(exported):
    _, graph = exported
    x = _inputs(2)
    _, rec = run_reference(graph, x, record=True)
    counts = count_events(graph, rec)
    b = x.shape[1]
    # pool1 (2×2, stride 2): every spike of lif1 reaches one window, an AC each
    pool1 = counts.synapses["pool1"]
    assert pool1.op == "SumPool2d" and pool1.kind == "AC"
    assert pool1.effective == float(rec["lif1"].output.sum()) / b
    # the Threshold emits spikes: the synapses after it do ACs on its events
    conv2 = counts.synapses["conv2"]
    assert conv2.kind == "AC" and counts.synapses["pool2"].kind == "AC"
    fan = fanout_map(graph.nodes["conv2"], (4, 3, 3))
    thr = rec["pool1_threshold"].output
    assert conv2.effective == pytest.approx(float(((thr != 0) * fan).sum()) / b, abs=1e-9)
    # spikes are the neurons' (the Threshold is stateless: no neuron updates of its own)
    assert set(counts.neurons) == {"lif1", "lif2", "lif3"}
    assert counts.spikes == pytest.approx(
        sum(float(rec[n].output.sum()) for n in ("lif1", "lif2", "lif3")) / b)
    # the mapping groups each pooling with the layer it feeds, through the Threshold
    layers = {lm.neuron_node: lm for lm in map_to_chip(graph, "loihi2", counts).layers}
    assert layers["lif2"].synapse_nodes == ["pool1", "conv2"]
    assert layers["lif3"].synapse_nodes == ["pool2", "fc"]


# --------------------------------------------------------------------------------- Lava
@pytest.mark.lava
def test_lava_floating_pt_equals_the_reference(exported):
    from nirbridge.backends import lava as lava_backend

    _, graph = exported
    x = _inputs(3, t=16, b=2)
    ref, rec = run_reference(graph, x, record=True)
    res = lava_backend.run_lava(graph, _np(x), record=True, timeout_s=180)
    for name in ("lif1", "pool1_threshold", "lif2", "pool2_threshold", "lif3"):
        want = _np(rec[name].output)
        assert 0 < want.mean() < 1, name
        np.testing.assert_array_equal(_np(res.records[name].output), want, err_msg=name)
    np.testing.assert_array_equal(res.outputs, _np(ref))


@pytest.mark.lava
def test_lava_fixed_pt_equals_the_integer_executor(exported):
    from nirbridge.backends import lava as lava_backend

    _, graph = exported
    x = _np((_inputs(4, t=16, b=2) > 0.75).double())
    qgraph = quantized_for(graph, x)
    gold_out, gold = run_fixed_point(qgraph, x)
    net = lava_backend.lower(graph, "fixed_pt", quant=qgraph)
    res = lava_backend.run_lava(net, x, record=True, timeout_s=180)
    assert res.fixed_records is not None
    for name in ("lif1", "pool1", "pool1_threshold", "lif2", "pool2_threshold", "lif3"):
        np.testing.assert_array_equal(res.fixed_records[name].output, gold[name].output,
                                      err_msg=name)
    for name in ("pool1_threshold", "pool2_threshold"):
        assert 0 < gold[name].output.mean() < 1, name
    np.testing.assert_array_equal(res.outputs, gold_out)
