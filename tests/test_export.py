"""Tests of torch → NIR export (nirbridge.export) and nirbridge.layers."""

from __future__ import annotations

import copy

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nirbridge
import nirbridge.neurons
from nirbridge.backends.reference import run_reference
from nirbridge.errors import (
    ExportError,
    InputError,
    InvalidParameterError,
    UnsupportedLayerError,
)
from nirbridge.export import to_nir
from nirbridge.io import read, write
from nirbridge.layers import SumPool2d
from nirbridge.neurons import LIF, StatefulSequential, run_steps


def node_types(graph: nir.NIRGraph) -> dict[str, str]:
    return {k: type(v).__name__ for k, v in graph.nodes.items()}


def preds(graph: nir.NIRGraph, name: str) -> set[str]:
    return {a for a, b in graph.edges if b == name}


def run_both(model: nn.Module, graph: nir.NIRGraph, x: torch.Tensor, **kw):
    """(reference outputs, torch outputs) for inputs x [T, B, ...], both in float64."""
    got = run_reference(graph, x.double(), **kw)
    model64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        want = run_steps(model64, x.double())
    return got, want


# ----------------------------------------------------------------------------- models
class ResBlock(nn.Module):
    """conv-bn-LIF-conv-bn (+ skip) - LIF, state as a tuple."""

    def __init__(self, c: int, tau: torch.Tensor) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.lif1 = LIF(tau=tau, v_threshold=0.5)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c)
        self.lif2 = LIF(tau=tau, v_threshold=0.5)

    def forward(self, x, state=None):
        s1, s2 = (None, None) if state is None else state
        y, s1 = self.lif1(self.bn1(self.conv1(x)), s1)
        out, s2 = self.lif2(self.bn2(self.conv2(y)) + x, s2)
        return out, (s1, s2)


class ResNet(nn.Module):
    """Stem, two residual blocks, pooling, flatten, dropout, linear readout, LIF output."""

    def __init__(self, c: int = 4, pool: str = "avg", readout_neuron: bool = True) -> None:
        super().__init__()
        tau = torch.linspace(1.5, 4.0, c).view(c, 1, 1)  # per channel
        self.stem = nn.Conv2d(2, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.lif = LIF(tau=tau, v_threshold=0.5)
        self.block1 = ResBlock(c, tau)
        self.block2 = ResBlock(c, tau)
        self.pool = nn.AvgPool2d(2) if pool == "avg" else SumPool2d(2)
        self.flat = nn.Flatten()
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(c * 4 * 4, 10)
        self.out = LIF(tau=2.0, v_threshold=0.5) if readout_neuron else None

    def forward(self, x, state=None):
        st = {} if state is None else state
        y, s0 = self.lif(self.bn(self.stem(x)), st.get("lif"))
        y, s1 = self.block1(y, st.get("block1"))
        y, s2 = self.block2(y, st.get("block2"))
        z = self.fc(self.drop(self.flat(self.pool(y))))
        new = {"lif": s0, "block1": s1, "block2": s2}
        if self.out is None:
            return z, new
        o, new["out"] = self.out(z, st.get("out"))
        return o, new


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random batch-norm statistics and weights strong enough for every layer to spike."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                if m.affine:
                    m.weight.uniform_(1.0, 2.5)
                    m.bias.uniform_(0.2, 0.6)
            elif isinstance(m, nn.Conv2d):
                m.weight.add_(0.03)
            elif isinstance(m, nn.Linear):
                m.weight.mul_(4.0)
                m.bias.add_(0.3)
    return model.eval()


def spike_input(t: int = 16, b: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, 2, 8, 8, generator=g) < 0.5).float()


# ----------------------------------------------------------------------------- structure
def test_sequential_linear_keeps_bias_and_names_nodes():
    net = StatefulSequential(nn.Linear(3, 4), LIF(), nn.Linear(4, 2, bias=False), LIF())
    g = to_nir(net, torch.randn(5, 3))
    assert node_types(g) == {"input": "Input", "linear_0": "Affine", "lif_1": "LIF",
                             "linear_2": "Linear", "lif_3": "LIF", "output": "Output"}
    assert g.edges == [("input", "linear_0"), ("linear_0", "lif_1"), ("lif_1", "linear_2"),
                       ("linear_2", "lif_3"), ("lif_3", "output")]
    np.testing.assert_array_equal(g.nodes["linear_0"].bias, net[0].bias.detach().double())
    np.testing.assert_array_equal(g.nodes["linear_0"].weight, net[0].weight.detach().double())
    assert g.nodes["linear_0"].weight.dtype == np.float64
    np.testing.assert_array_equal(g.nodes["input"].input_type["input"], [3])
    np.testing.assert_array_equal(g.nodes["output"].output_type["output"], [2])
    assert g.metadata == {"dt": 1.0, "nirbridge_version": nirbridge.__version__,
                          "source": "nirbridge.export", "time_unit": "step"}
    assert g.check_types()


def test_qualified_names_repeated_calls_and_reserved_names():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.ModuleDict({"fc": nn.Linear(4, 4)})
            self.lif = LIF()
            self.output = nn.Linear(4, 2)

        def forward(self, x):
            a, _ = self.lif(self.body["fc"](x))
            b, _ = self.lif(self.body["fc"](a))
            return self.output(b)

    g = to_nir(Net(), torch.randn(2, 4))
    assert set(g.nodes) == {"input", "body_fc", "lif", "body_fc_1", "lif_1", "output_1",
                            "output"}
    assert preds(g, "output") == {"output_1"}
    assert preds(g, "body_fc_1") == {"lif"}
    assert isinstance(g.nodes["output"], nir.Output)


def test_single_layer_models():
    g = to_nir(LIF(), torch.randn(2, 3))
    assert node_types(g) == {"input": "Input", "lif": "LIF", "output": "Output"}
    g = to_nir(nn.Linear(3, 2), torch.randn(2, 3))
    assert node_types(g) == {"input": "Input", "linear": "Affine", "output": "Output"}


def test_conv_parameters_and_shapes():
    net = StatefulSequential(
        nn.Conv2d(2, 4, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2,
                  bias=False),
        LIF(),
    )
    g = to_nir(net, torch.randn(1, 2, 9, 10))
    conv = g.nodes["conv2d_0"]
    assert isinstance(conv, nir.Conv2d)
    assert tuple(conv.input_shape) == (9, 10)
    assert tuple(conv.stride) == (2, 1)
    assert tuple(conv.padding) == (1, 2)
    assert tuple(conv.dilation) == (1, 2)
    assert conv.groups == 2
    np.testing.assert_array_equal(conv.bias, np.zeros(4))
    with torch.no_grad():
        out_shape = net[0](torch.zeros(1, 2, 9, 10)).shape[1:]
    np.testing.assert_array_equal(conv.output_type["output"], out_shape)
    np.testing.assert_array_equal(g.nodes["lif_1"].input_type["input"], out_shape)


def test_conv1d_and_same_padding():
    net = StatefulSequential(nn.Conv1d(2, 3, 5, padding="same", stride=1), LIF(),
                             nn.Conv1d(3, 3, 3, padding="valid", stride=2))
    g = to_nir(net, torch.randn(2, 2, 11))
    c0, c2 = g.nodes["conv1d_0"], g.nodes["conv1d_2"]
    assert isinstance(c0, nir.Conv1d) and c0.input_shape == 11 and c0.padding == 2
    assert c2.padding == 0 and c2.stride == 2
    np.testing.assert_array_equal(g.nodes["output"].output_type["output"], [3, 5])
    got, want = run_both(net, g, torch.randn(6, 2, 2, 11))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_batchnorm2d_folded_into_conv_float64():
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    trained_like(nn.Sequential(conv, bn))
    net = StatefulSequential(conv, bn, LIF())
    g = to_nir(net, torch.randn(2, 3, 6, 6))
    assert node_types(g) == {"input": "Input", "conv2d_0": "Conv2d", "lif_2": "LIF",
                             "output": "Output"}
    node = g.nodes["conv2d_0"]
    x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        want = nn.Sequential(copy.deepcopy(conv), copy.deepcopy(bn)).double().eval()(x)
    got = F.conv2d(x, torch.from_numpy(node.weight), torch.from_numpy(node.bias), padding=1)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_batchnorm1d_folded_into_linear_and_conv1d():
    lin, bn = nn.Linear(5, 3, bias=False), nn.BatchNorm1d(3, affine=False)
    trained_like(bn)
    g = to_nir(nn.Sequential(lin, bn), torch.randn(2, 5))
    assert node_types(g) == {"input": "Input", "linear_0": "Affine", "output": "Output"}
    x = torch.randn(4, 5, dtype=torch.float64)
    aff = g.nodes["linear_0"]
    with torch.no_grad():
        want = nn.Sequential(copy.deepcopy(lin), copy.deepcopy(bn)).double().eval()(x)
    torch.testing.assert_close(x @ torch.from_numpy(aff.weight).T + torch.from_numpy(aff.bias),
                               want, rtol=1e-13, atol=1e-13)

    net = trained_like(StatefulSequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), LIF()))
    g = to_nir(net, torch.randn(2, 2, 7))
    assert [type(n).__name__ for n in g.nodes.values()] == ["Input", "Conv1d", "LIF", "Output"]
    got, want = run_both(net, g, torch.randn(8, 2, 2, 7) * 3)
    assert torch.equal(got, want)


def test_flatten_dims_are_batch_free():
    net = StatefulSequential(nn.Conv2d(1, 2, 3), LIF(), nn.Flatten())
    g = to_nir(net, torch.randn(2, 1, 8, 8))
    flat = g.nodes["flatten_2"]
    assert (flat.start_dim, flat.end_dim) == (0, -1)
    np.testing.assert_array_equal(flat.input_type["input"], [2, 6, 6])
    np.testing.assert_array_equal(flat.output_type["output"], [72])

    net = StatefulSequential(nn.Conv2d(1, 2, 3), LIF(), nn.Flatten(2))
    g = to_nir(net, torch.randn(2, 1, 8, 8))
    flat = g.nodes["flatten_2"]
    assert (flat.start_dim, flat.end_dim) == (1, -1)
    np.testing.assert_array_equal(flat.output_type["output"], [2, 36])
    got, want = run_both(net, g, torch.randn(5, 2, 1, 8, 8) * 2)
    assert torch.equal(got, want)

    net = StatefulSequential(nn.Conv2d(1, 2, 3), nn.Flatten(1, 2))
    flat = to_nir(net, torch.randn(2, 1, 8, 8)).nodes["flatten_1"]
    assert (flat.start_dim, flat.end_dim) == (0, 1)
    np.testing.assert_array_equal(flat.output_type["output"], [12, 6])


def test_torch_flatten_function_becomes_flatten_node():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(72, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(x), 1))

    g = to_nir(Net(), torch.randn(2, 1, 8, 8))
    assert node_types(g)["flatten"] == "Flatten"
    assert g.edges == [("input", "conv"), ("conv", "flatten"), ("flatten", "fc"),
                       ("fc", "output")]


def test_pooling_parameters():
    net = StatefulSequential(nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(2),
                             SumPool2d(3, stride=2, padding=1))
    g = to_nir(net, torch.randn(2, 1, 8, 8))
    avg, sp = g.nodes["avgpool2d_1"], g.nodes["sumpool2d_2"]
    assert isinstance(avg, nir.AvgPool2d) and isinstance(sp, nir.SumPool2d)
    np.testing.assert_array_equal(avg.kernel_size, [2, 2])
    np.testing.assert_array_equal(avg.stride, [2, 2])
    np.testing.assert_array_equal(avg.padding, [0, 0])
    np.testing.assert_array_equal(sp.kernel_size, [3, 3])
    np.testing.assert_array_equal(sp.stride, [2, 2])
    np.testing.assert_array_equal(sp.padding, [1, 1])
    np.testing.assert_array_equal(avg.output_type["output"], [2, 4, 4])
    np.testing.assert_array_equal(sp.output_type["output"], [2, 2, 2])
    got, want = run_both(net, g, torch.randn(4, 2, 1, 8, 8))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kw", [{"count_include_pad": False, "padding": 1},
                                {"ceil_mode": True}, {"divisor_override": 3}])
def test_inexact_avgpool_is_rejected(kw):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, **kw))
    with pytest.raises(UnsupportedLayerError, match=r"1 \(AvgPool2d\).*count_include_pad"):
        to_nir(net, torch.randn(2, 1, 9, 9))


def test_dropout_and_identity_vanish():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(3, 4)
            self.drop = nn.Dropout(0.5)
            self.ident = nn.Identity()
            self.lif = LIF()
            self.fc2 = nn.Linear(4, 2)

        def forward(self, x, state=None):
            s, state = self.lif(self.ident(self.drop(self.fc1(x))), state)
            return self.fc2(F.dropout(s, 0.3, self.training)), state

    net = Net().train()
    g = to_nir(net, torch.randn(2, 3))
    assert set(g.nodes) == {"input", "fc1", "lif", "fc2", "output"}
    assert g.edges == [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "output")]


def test_user_model_is_not_mutated():
    net = ResNet().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modules = [(name, type(m)) for name, m in net.named_modules()]
    to_nir(net, torch.randn(2, 2, 8, 8))
    assert net.training and all(m.training for m in net.modules())
    assert [(name, type(m)) for name, m in net.named_modules()] == modules
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_residual_add_becomes_edges_into_one_node():
    net = ResNet()
    g = to_nir(net, torch.randn(2, 2, 8, 8))
    assert preds(g, "block1_lif2") == {"block1_conv2", "lif"}
    assert preds(g, "block2_lif2") == {"block2_conv2", "block1_lif2"}
    assert not any("bn" in name or "drop" in name for name in g.nodes)
    np.testing.assert_array_equal(g.nodes["lif"].tau[:, 0, 0],
                                  torch.linspace(1.5, 4.0, 4).double().numpy())
    assert g.check_types()


def test_add_feeding_the_output_and_skip_from_input():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 4)
            self.lif = LIF(v_threshold=0.3)
            self.fc2 = nn.Linear(4, 3)
            self.fc3 = nn.Linear(4, 3)

        def forward(self, x, state=None):
            s, state = self.lif(self.fc1(x) + x, state)
            return torch.add(self.fc2(s), self.fc3(x)), state

    net = Net()
    g = to_nir(net, torch.randn(2, 4))
    assert preds(g, "lif") == {"fc1", "input"}
    assert preds(g, "output") == {"fc2", "fc3"}
    got, want = run_both(net, g, torch.randn(10, 3, 4) * 2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_edges_are_deterministic_and_in_graph_order():
    net = ResNet()
    graphs = [to_nir(net, torch.randn(2, 2, 8, 8)) for _ in range(3)]
    assert graphs[0].edges == graphs[1].edges == graphs[2].edges
    names = list(graphs[0].nodes)
    positions = [(names.index(a), names.index(b)) for a, b in graphs[0].edges]
    assert positions == sorted(positions)


def test_neuron_output_returned_directly():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = nn.Linear(3, 3), LIF()

        def forward(self, x, state=None):
            return self.lif(self.fc(x), state)  # (spikes, state) straight from the neuron

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, x, state=None):
            return self.block(x, state)

    assert to_nir(Block(), torch.randn(2, 3)).edges == [
        ("input", "fc"), ("fc", "lif"), ("lif", "output")]
    assert to_nir(Net(), torch.randn(2, 3)).edges == [
        ("input", "block_fc"), ("block_fc", "block_lif"), ("block_lif", "output")]


NEURON_CLASSES = sorted(
    (obj for obj in vars(nirbridge.neurons).values()
     if isinstance(obj, type) and issubclass(obj, nirbridge.neurons.NeuronModule)
     and obj is not nirbridge.neurons.NeuronModule),
    key=lambda c: c.__name__,
)


@pytest.mark.parametrize("cls", NEURON_CLASSES, ids=lambda c: c.__name__)
def test_every_neuron_module_exports_through_its_interface(cls, tmp_path):
    """Export uses only ``to_nir_node``; the reference reproduces each neuron's run, also
    after writing and reading the file."""
    try:
        neuron, neuron2 = cls(), cls()
    except TypeError as exc:  # pragma: no cover - a neuron without defaults
        pytest.skip(f"{cls.__name__} has no default constructor: {exc}")
    torch.manual_seed(0)
    net = StatefulSequential(nn.Linear(6, 5), neuron, nn.Linear(5, 4), neuron2)
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[2].weight.mul_(3)
    x = torch.rand(12, 3, 6) * 2
    g = to_nir(net, x[0])
    assert list(g.nodes) == ["input", "linear_0", f"{cls.__name__.lower()}_1", "linear_2",
                             f"{cls.__name__.lower()}_3", "output"]
    got, want = run_both(net, g, x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    write(tmp_path / "net.nir", g)
    got, _ = run_both(net, read(tmp_path / "net.nir"), x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- errors
def test_maxpool_is_rejected_with_name_and_alternative():
    # max pooling of graded values (of spikes it is exported: tests/test_maxpool.py)
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 2, 3), LIF(), nn.Identity(),
                                          nn.MaxPool2d(2))

        def forward(self, x):
            y = self.features[0](x)
            s, _ = self.features[1](y)
            return self.features[3](y + s)

    with pytest.raises(UnsupportedLayerError) as info:
        to_nir(Net(), torch.randn(1, 1, 8, 8))
    msg = str(info.value)
    assert "features.3 (MaxPool2d)" in msg
    assert "AvgPool2d" in msg and "SumPool2d" in msg
    assert "not binary spikes" in msg

    net = StatefulSequential(nn.Conv2d(1, 2, 3))
    net.add_module("pool", nn.MaxPool2d(2))
    net.add_module("lif", LIF())
    with pytest.raises(UnsupportedLayerError, match=r"pool \(MaxPool2d\)"):
        to_nir(net, torch.randn(1, 1, 8, 8))


def test_cat_and_other_operations_are_listed():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)
            self.act = nn.ReLU()

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x)], dim=1)
            return self.act(y * 2.0)

    with pytest.raises(UnsupportedLayerError) as info:
        to_nir(Net(), torch.randn(2, 3))
    msg = str(info.value)
    assert "torch.cat" in msg and "concatenation" in msg
    assert "operator.mul" in msg
    assert "act (ReLU)" in msg and "neuron" in msg
    assert "test_export.py:" in msg  # points at the user's line


@pytest.mark.parametrize("body, pattern", [
    (lambda m, x: m.fc(x) + 1.0, "sum of two tensors"),
    (lambda m, x: torch.add(m.fc(x), m.fc2(x), alpha=2), "alpha"),
    (lambda m, x: m.fc(x) + m.fc(x) * 0 + m.fc2(x).relu(), "relu"),
    (lambda m, x: m.fc(x).view(x.shape[0], -1), "nn.Flatten"),
    (lambda m, x: m.fc(x)[:, :2], "indexing"),
    (lambda m, x: (lambda y: y + y)(m.fc(x)), "itself"),
])
def test_unsupported_operations(body, pattern):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.fc2 = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return body(self, x)

    with pytest.raises(UnsupportedLayerError, match=pattern):
        to_nir(Net(), torch.randn(2, 3))


def test_unfoldable_batchnorm_is_rejected():
    class AfterNeuron(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif, self.bn = nn.Linear(3, 3), LIF(), nn.BatchNorm1d(3)

        def forward(self, x):
            s, _ = self.lif(self.fc(x))
            return self.bn(s)

    with pytest.raises(UnsupportedLayerError, match=r"bn \(BatchNorm1d\).*not a Linear/Conv"):
        to_nir(AfterNeuron(), torch.randn(2, 3))

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)

        def forward(self, x):
            y = self.conv(x)
            return self.norm(y) + y

    with pytest.raises(UnsupportedLayerError, match=r"norm \(BatchNorm2d\).*also used"):
        to_nir(Shared(), torch.randn(2, 1, 4, 4))

    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(UnsupportedLayerError, match="track_running_stats"):
        to_nir(net, torch.randn(2, 3))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_layer_settings_rejected():
    with pytest.raises(UnsupportedLayerError, match=r"1 \(Linear\).*nn.Flatten"):
        to_nir(nn.Sequential(nn.Conv1d(1, 2, 3), nn.Linear(4, 2)), torch.randn(2, 1, 6))
    with pytest.raises(UnsupportedLayerError, match="batch dimension"):
        to_nir(nn.Sequential(nn.Flatten(0)), torch.randn(2, 1, 6))
    with pytest.raises(UnsupportedLayerError, match="padding_mode"):
        to_nir(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), torch.randn(2, 1, 6, 6))
    with pytest.raises(UnsupportedLayerError, match="unevenly"):
        to_nir(nn.Conv1d(1, 2, 4, padding="same"), torch.randn(2, 1, 6))
    with pytest.raises(UnsupportedLayerError, match="LSTM"):
        to_nir(nn.Sequential(nn.LSTM(3, 3)), torch.randn(2, 4, 3))


def test_neuron_state_used_in_output_is_rejected():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = nn.Linear(3, 3), LIF()

        def forward(self, x):
            _, state = self.lif(self.fc(x))
            return state.v

    with pytest.raises(UnsupportedLayerError, match="lif"):
        to_nir(Net(), torch.randn(2, 3))


def test_untraceable_model_and_bad_arguments():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(ExportError, match=r"Branchy\.forward at test_export\.py:\d+.*control"):
        to_nir(Branchy(), torch.randn(2, 3))

    class NeedsTwo(nn.Module):
        def forward(self, x, y):
            return x + y

    with pytest.raises(ExportError, match="'y'"):
        to_nir(NeedsTwo(), torch.randn(2, 3))
    with pytest.raises(InputError):
        to_nir(nn.Linear(3, 2), [[1.0, 2.0, 3.0]])
    with pytest.raises(InputError):
        to_nir(nn.Linear(3, 2), torch.randn(3))
    with pytest.raises(InvalidParameterError):
        to_nir(nn.Linear(3, 2), torch.randn(2, 3), dt=0.0)
    with pytest.raises(ExportError, match="no layers"):
        to_nir(nn.Sequential(nn.Identity()), torch.randn(2, 3))
    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight[0, 0] = float("nan")
    with pytest.raises(InvalidParameterError, match=r"linear \(Linear\).*NaN"):
        to_nir(net, torch.randn(2, 3))


# ----------------------------------------------------------------------------- SumPool2d
def test_sumpool2d_is_an_exact_window_sum():
    def window_sums(x):
        return F.pad(x, (1, 1, 1, 1)).unfold(2, 3, 2).unfold(3, 3, 2).sum(dim=(-1, -2))

    pool = SumPool2d(3, stride=2, padding=1)
    # integers (exact in any summation order): no division round-off at all
    x = torch.randint(-50, 50, (2, 3, 7, 7)).double() / 8
    assert torch.equal(pool(x), window_sums(x))
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(pool(x), window_sums(x), rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(pool(x), F.avg_pool2d(x, 3, 2, 1, count_include_pad=True) * 9)
    assert SumPool2d(2)(torch.ones(1, 1, 4, 4)).eq(4).all()
    assert SumPool2d((2, 1)).stride == (2, 1)
    with pytest.raises(InvalidParameterError):
        SumPool2d(2, padding=2)
    with pytest.raises(InvalidParameterError):
        SumPool2d(0)
    with pytest.raises(InvalidParameterError, match="SumPool2d: kernel_size"):
        SumPool2d((2, 2, 2))
    with pytest.raises(InvalidParameterError, match="SumPool2d: stride"):
        SumPool2d(2, stride=1.5)
    assert SumPool2d(np.int64(3), stride=np.array([2, 1])).stride == (2, 1)


def test_every_mapped_module_type_has_one_converter():
    from nirbridge.export import MAPPED_MODULES
    from nirbridge.export.convert import CONVERTERS

    assert set(CONVERTERS) == set(MAPPED_MODULES)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("pool", ["avg", "sum"])
def test_residual_network_matches_reference_exactly(pool):
    net = trained_like(ResNet(pool=pool))
    x = spike_input()
    g = to_nir(net, x[0])
    (got, records) = run_reference(g, x.double(), record=True)
    model64 = copy.deepcopy(net).double()
    spikes: dict[str, list[torch.Tensor]] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: spikes.setdefault(
        name.replace(".", "_"), []).append(o[0])) for name, m in model64.named_modules()
        if isinstance(m, LIF)]
    with torch.no_grad():
        want = run_steps(model64, x.double())
    for h in hooks:
        h.remove()
    assert got.shape == want.shape == (16, 3, 10)
    assert torch.equal(got, want)
    assert 0.02 < want.mean() < 0.9  # the readout spikes: the comparison is not trivial
    assert set(spikes) == {k for k, v in g.nodes.items() if isinstance(v, nir.LIF)}
    for name, per_step in spikes.items():
        layer = torch.stack(per_step)
        assert torch.equal(records[name].output, layer), name
        assert 0.01 < layer.mean() < 0.9, name  # every layer is active


def test_residual_network_linear_readout_and_dt():
    net = trained_like(ResNet(readout_neuron=False))
    x = spike_input(t=8)
    g = to_nir(net, x[0], dt=0.5)
    assert g.metadata["dt"] == 0.5
    got, want = run_both(net, g, x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_residual_network_after_write_and_read(tmp_path):
    net = trained_like(ResNet(pool="sum"), seed=3)
    x = spike_input(seed=4)
    path = tmp_path / "resnet.nir"
    write(path, to_nir(net, x[0]))
    g = read(path)
    assert g.metadata["dt"] == 1.0 and g.metadata["source"] == "nirbridge.export"
    assert {"input", "block2_lif2", "output"} <= set(g.nodes)
    got, want = run_both(net, g, x)
    assert torch.equal(got, want)
    assert want.mean() > 0.02
