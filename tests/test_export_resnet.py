"""torchvision's resnet18 with its ReLUs swapped for neurons exports and computes the torch
model step by step; neurons used as plain modules; adaptive average pooling; how .nir
files store per-layer and per-channel parameters (unbroadcast where the node allows)."""

from __future__ import annotations

import copy

import h5py
import nir
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from nirbridge.backends.reference import run_reference
from nirbridge.errors import UnsupportedLayerError
from nirbridge.export import to_nir
from nirbridge.io import read, write
from nirbridge.io.write import BROADCAST_ATTR
from nirbridge.neurons import LIF, HiddenNeuron, reset_hidden, swap_activations


def strong_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Batch-norm statistics that make every layer of an untrained network spike."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(1.0, 2.0)
                m.bias.uniform_(0.2, 0.6)
    return model.eval()


def torch_steps(model: nn.Module, x: torch.Tensor,
                rates: dict[str, list[float]] | None = None) -> torch.Tensor:
    """The float64 model run step by step over x [T, B, ...] from reset states."""
    m64 = copy.deepcopy(model).double().eval()
    reset_hidden(m64)
    hooks = []
    if rates is not None:
        for name, mod in m64.named_modules():
            if isinstance(mod, HiddenNeuron):
                hooks.append(mod.register_forward_hook(
                    lambda _m, _i, out, name=name: rates.setdefault(name, []).append(
                        float(out.mean()))))
    with torch.no_grad():
        out = torch.stack([m64(xt) for xt in x])
    for h in hooks:
        h.remove()
    return out


# --------------------------------------------------------------------- torchvision
def test_torchvision_resnet18_with_lif_exports_and_matches_torch_step_by_step(tmp_path):
    net = strong_bn(torchvision.models.resnet18(weights=None))
    model = swap_activations(net, lambda: LIF(tau=2.0, v_threshold=0.5))
    x = (torch.rand(3, 2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) < 0.5)
    x = x.double()
    graph = to_nir(model, x[0])
    types = {k: type(v).__name__ for k, v in graph.nodes.items()}
    # 17 ReLU calls (the stem's and two per BasicBlock): 17 populations
    assert sum(t == "LIF" for t in types.values()) == 17
    assert types["layer1_0_relu"] == types["layer1_0_relu_1"] == "LIF"
    assert (types["maxpool"], types["maxpool_threshold"]) == ("SumPool2d", "Threshold")
    assert types["avgpool"] == "AvgPool2d"
    assert types["fc"] == "Affine"
    rates: dict[str, list[float]] = {}
    want = torch_steps(model, x, rates)
    assert len(rates) == 17 and all(0 < max(r) < 1 for r in rates.values()), rates
    assert want.shape == (3, 2, 1000) and not torch.equal(want[0], want[1])
    got = run_reference(graph, x)
    assert torch.equal(got, want)
    path = tmp_path / "resnet18.nir"
    write(path, graph)
    assert torch.equal(run_reference(read(path), x), want)
    # every node is a standard NIR node: stock nir.read loads the file
    assert set(nir.read(path).nodes) == set(graph.nodes)


def test_the_same_stateful_neuron_called_twice_is_refused_with_its_call_sites():
    net = torchvision.models.resnet18(weights=None).eval()
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, HiddenNeuron(LIF()))
    with pytest.raises(UnsupportedLayerError) as err:
        to_nir(net, torch.rand(1, 3, 32, 32))
    text = str(err.value)
    assert "8 layers" in text  # the BasicBlocks' relu; the stem's is called once
    assert "layer1.0.relu (HiddenNeuron): this neuron keeps its state inside and is called " \
           "2 times per step (at resnet.py:" in text
    assert "swap_activations" in text


def test_a_neuron_whose_tuple_output_is_not_unpacked_names_hidden_neuron():
    model = nn.Sequential(nn.Linear(3, 4), LIF(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedLayerError, match="HiddenNeuron"):
        to_nir(model, torch.rand(2, 3))


# --------------------------------------------------------------- adaptive pooling
class Small(nn.Module):
    def __init__(self, out: int | tuple) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.lif = HiddenNeuron(LIF(tau=torch.linspace(2, 3, 4).view(4, 1, 1),
                                    v_threshold=0.3))
        self.pool = nn.AdaptiveAvgPool2d(out)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 2 * 3, 3)
        self.out = HiddenNeuron(LIF(v_threshold=0.2))

    def forward(self, x):
        return self.out(self.fc(self.flat(self.pool(self.lif(self.conv(x))))))


def test_adaptive_avg_pool_is_an_exact_avg_pool_when_the_size_divides():
    model = strong_bn(Small((2, 3)))
    with torch.no_grad():
        model.conv.weight.add_(0.1)
    x = (torch.rand(12, 2, 2, 8, 9, generator=torch.Generator().manual_seed(3)) < 0.5).double()
    graph = to_nir(model, x[0])
    pool = graph.nodes["pool"]
    assert isinstance(pool, nir.AvgPool2d)
    assert list(pool.kernel_size) == list(pool.stride) == [4, 3]
    assert list(pool.padding) == [0, 0]
    rates: dict[str, list[float]] = {}
    want = torch_steps(model, x, rates)
    assert 0 < max(rates["out"]) < 1
    np.testing.assert_allclose(run_reference(graph, x).numpy(), want.numpy(), rtol=0,
                               atol=1e-12)


def test_adaptive_avg_pool_that_does_not_divide_is_refused_with_the_reason():
    with pytest.raises(UnsupportedLayerError,
                       match=r"pool \(AdaptiveAvgPool2d\): output_size=\(2, 3\) on a 7x9 "
                             "input: the input size is not a multiple"):
        to_nir(Small((2, 3)), torch.rand(1, 2, 7, 9))


# --------------------------------------------------------------- file storage
def _conv_lif(reset: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1),
                         HiddenNeuron(LIF(tau=torch.tensor([2.0, 3.0, 5.0]).view(3, 1, 1),
                                          v_threshold=0.4, v_leak=-0.0, reset=reset)))


def _assert_bits_equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a.view(np.uint64), b.view(np.uint64))


def test_custom_node_parameters_are_stored_unbroadcast_and_read_back_exactly(tmp_path):
    model = _conv_lif("subtract")  # SubtractiveLIF, a custom node
    x = (torch.rand(10, 2, 2, 6, 5, generator=torch.Generator().manual_seed(0)) < 0.6).double()
    graph = to_nir(model, x[0])
    node = graph.nodes["lif_1"]
    assert type(node).__name__ == "SubtractiveLIF" and node.tau.shape == (3, 6, 5)
    path = tmp_path / "sub.nir"
    write(path, graph)
    with h5py.File(path, "r") as f:
        group = f["node/nodes/lif_1"]
        tau = group["tau"]
        assert tau.shape == (3, 1, 1) and list(tau.attrs[BROADCAST_ATTR]) == [3, 6, 5]
        # one value for the layer: the HDF5 fill value, no data stored
        assert group["v_threshold"].shape == (3, 6, 5)
        assert group["v_threshold"].id.get_storage_size() == 0
    back = read(path)
    for p in type(node).PARAMS:
        _assert_bits_equal(getattr(back.nodes["lif_1"], p), getattr(node, p))
    assert np.signbit(back.nodes["lif_1"].v_leak).all()  # -0.0 kept bit for bit
    want = torch_steps(model, x)
    assert want.sum() > 0
    assert torch.equal(run_reference(back, x), want)
    assert torch.equal(run_reference(graph, x), want)


def test_standard_node_parameters_stay_full_arrays_for_stock_nir(tmp_path):
    model = _conv_lif("hard")  # nir.LIF: stock readers derive its shape from tau's
    x = (torch.rand(6, 2, 2, 6, 5, generator=torch.Generator().manual_seed(0)) < 0.6).double()
    graph = to_nir(model, x[0])
    path = tmp_path / "lif.nir"
    write(path, graph)
    with h5py.File(path, "r") as f:
        group = f["node/nodes/lif_1"]
        assert BROADCAST_ATTR not in group["tau"].attrs
        assert group["tau"].shape == (3, 6, 5)
        assert group["tau"].compression == "gzip"  # per channel: repeats, compressed
        assert group["v_threshold"].id.get_storage_size() == 0  # one value: fill value
        weight = f["node/nodes/conv2d_0/weight"]
        assert weight.compression is None and weight.fletcher32  # raw, checksummed
    stock = nir.read(path)
    for p in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
        _assert_bits_equal(np.asarray(getattr(stock.nodes["lif_1"], p)),
                           getattr(graph.nodes["lif_1"], p))
    assert torch.equal(run_reference(read(path), x), torch_steps(model, x))


def test_a_corrupted_raw_weight_fails_to_read(tmp_path):
    graph = to_nir(_conv_lif("hard"), torch.rand(1, 2, 6, 5))
    path = tmp_path / "c.nir"
    write(path, graph)
    with h5py.File(path, "r") as f:
        offset = f["node/nodes/conv2d_0/weight"].id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(Exception, match="c.nir"):
        read(path)
