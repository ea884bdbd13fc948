"""Counting a block of time steps at a time (the reference's feed-forward regions, with the
event counter as observer) gives exactly the counts of counting node by node and of
counting the full records; regions with a matrix product are counted node by node; and
the transposed-convolution fan-outs equal the autograd ones on every geometry tried."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from nirbridge.backends import blocks
from nirbridge.backends.reference import run_reference
from nirbridge.profile import EventCounter, count_events
from nirbridge.profile import fanout as fan

sys.path.insert(0, str(Path(__file__).parent))
from test_counting_in_run import _conv_graph, _lif  # noqa: E402


class NodeByNode(EventCounter):
    """The same counter, given whole nodes only (the executor then runs no region)."""

    by_block = False


def _mlp(reuse_input: bool) -> nir.NIRGraph:
    rng = np.random.default_rng(7)
    nodes = {"input": nir.Input(np.array([12])),
             "fc1": nir.Affine(rng.normal(0, 0.8, (10, 12)), rng.normal(0.1, 0.1, 10)),
             "lif1": _lif((10,), vth=0.5),
             "fc2": nir.Linear(rng.normal(0, 0.8, (6, 10))),
             "lif2": _lif((6,), vth=0.4),
             "output": nir.Output(np.array([6]))}
    nodes["fc1"].weight[:, 0] = 0.0  # an input element with no fan-out
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "output")]
    if reuse_input:  # a second reader of the input, summed into lif2
        nodes["skip"] = nir.Linear(rng.normal(0, 0.3, (6, 12)))
        edges += [("input", "skip"), ("skip", "lif2")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


def _conv_only() -> nir.NIRGraph:
    """The conv test graph with its Affine read-out replaced by a Scale (no matrix product:
    its region runs in blocks with the counter)."""
    g = _conv_graph()
    nodes = dict(g.nodes)
    nodes["fc"] = nir.Scale(np.array([1.0, 0.0, -2.0, 1.5]))
    nodes["sn3"] = _lif((4,))
    nodes["output"] = nir.Output(np.array([4]))
    return nir.NIRGraph(nodes=nodes, edges=g.edges, metadata=g.metadata, type_check=False)


def _three_ways(graph, x, monkeypatch, spike_inputs=False, blocked=True):
    """Counts by block (asserting regions ran with the counter, or, ``blocked`` false,
    that none did), node by node and from records; asserts all three and the outputs are
    identical."""
    calls = []
    real = blocks.run_region

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr("nirbridge.backends.reference.run_region", spy)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1)  # the smallest blocks allowed
    by_block = EventCounter(graph, spike_inputs=spike_inputs)
    out_b = run_reference(graph, x, observe=by_block)
    assert bool(calls) == blocked, f"regions run with the counter: {calls}"
    monkeypatch.setattr("nirbridge.backends.reference.run_region", real)
    node = NodeByNode(graph, spike_inputs=spike_inputs)
    out_n = run_reference(graph, x, observe=node)
    out, records = run_reference(graph, x, record=True)
    full = count_events(graph, records, spike_inputs=spike_inputs).to_dict()
    assert torch.equal(out_b, out) and torch.equal(out_n, out)
    assert by_block.counts().to_dict() == full
    assert node.counts().to_dict() == full
    return full


def test_conv_residual_pool_flatten_count_the_same_by_block(monkeypatch):
    x = torch.rand(20, 3, 1, 8, 8, generator=torch.Generator().manual_seed(8)) < 0.4
    full = _three_ways(_conv_only(), x.to(torch.float64), monkeypatch, spike_inputs=True)
    assert full["synapses"]["fc"]["effective"] > 0
    # with the Affine read-out: a region with a matrix product is counted node by node
    x = torch.rand(90, 6, 1, 8, 8, generator=torch.Generator().manual_seed(8)) < 0.4
    _three_ways(_conv_graph(), x.to(torch.float64), monkeypatch, spike_inputs=True,
                blocked=False)


@pytest.mark.parametrize("reuse_input", [False, True])
def test_mlp_counts_the_same_node_by_node(monkeypatch, reuse_input):
    # T·B = 1024 rows: enough for a block of a region with a matrix product, which runs
    # node by node all the same when counted (and when B < 256)
    rng = np.random.default_rng(9)
    x = rng.normal(0.4, 1.0, (64, 16, 12)) * (rng.random((64, 16, 12)) < 0.5)
    full = _three_ways(_mlp(reuse_input), x, monkeypatch, blocked=False)
    assert full["neurons"]["lif2"]["spikes"] > 0
    assert full["synapses"]["fc1"]["effective"] < full["synapses"]["fc1"]["dense"]


def test_input_fed_to_a_neuron_directly_counts_the_same(monkeypatch):
    rng = np.random.default_rng(10)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([5])), "lif0": _lif((5,), vth=0.3),
               "s": nir.Scale(np.array([1.0, 0.0, 2.0, 1.5, 0.5])),
               "lif1": _lif((5,), vth=0.5), "output": nir.Output(np.array([5]))},
        edges=[("input", "lif0"), ("lif0", "s"), ("s", "lif1"), ("lif1", "output")],
        metadata={"dt": 1.0}, type_check=False)
    x = rng.normal(0.2, 0.8, (30, 4, 5)) * (rng.random((30, 4, 5)) < 0.6)
    full = _three_ways(graph, x, monkeypatch)
    assert full["synapses"]["s"]["effective"] < full["synapses"]["s"]["dense"]


def _autograd_fanout(node, shape, ones):
    with torch.enable_grad():
        x = torch.zeros((1, *shape), dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(fan.connect(node, x, ones).sum(), x)
    return g[0]


def test_transposed_fanouts_equal_autograd_on_every_geometry():
    rng = np.random.default_rng(11)
    tried = 0
    for k, s, p, d, g, h in itertools.product((1, 2, 3), (1, 2, 3), (0, 1, 2), (1, 2),
                                              (1, 2), (5, 8)):
        if d * (k - 1) + 1 > h + 2 * p:
            continue
        w = rng.normal(size=(4, 4 // g, k, k)) * (rng.random((4, 4 // g, k, k)) < 0.6)
        conv = nir.Conv2d(input_shape=(h, h), weight=w, stride=s, padding=p, dilation=d,
                          groups=g, bias=np.zeros(4))
        for ones in (False, True):
            got = fan._transposed(conv, (4, h, h), ones)
            assert got is not None and torch.equal(got, _autograd_fanout(conv, (4, h, h),
                                                                         ones)), (k, s, p, d)
            tried += 1
        pool = nir.SumPool2d(np.array([k, k]), np.array([s, s]), np.array([min(p, k // 2)] * 2))
        assert torch.equal(fan.fanout_map(pool, (4, h, h)),
                           _autograd_fanout(pool, (4, h, h), False))
        tried += 1
    w1 = rng.normal(size=(3, 2, 4)) * (rng.random((3, 2, 4)) < 0.5)
    conv1 = nir.Conv1d(input_shape=9, weight=w1, stride=2, padding=1, dilation=1,
                       groups=1, bias=np.zeros(3))
    assert torch.equal(fan.fanout_map(conv1, (2, 9)), _autograd_fanout(conv1, (2, 9), False))
    # an uneven "same" padding has no transposed form: the autograd route gives it
    same = nir.Conv2d(input_shape=(6, 6), weight=np.ones((2, 2, 2, 2)), stride=1,
                      padding="same", dilation=1, groups=1, bias=np.zeros(2))
    assert fan._transposed(same, (2, 6, 6), False) is None
    assert torch.equal(fan.fanout_map(same, (2, 6, 6)), _autograd_fanout(same, (2, 6, 6),
                                                                          False))
    assert tried > 300


@pytest.mark.parametrize("batch, blocked", [(16, False), (256, True)])
def test_a_region_with_a_matrix_product_is_blocked_only_where_a_step_fills_a_block(
        monkeypatch, batch, blocked):
    calls = []
    real = blocks.run_region

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    rng = np.random.default_rng(12)
    x = rng.normal(0.4, 1.0, (4, batch, 12))  # T·B ≥ 2 · 256 rows only at B = 256
    x = np.concatenate([x] * (1 if batch == 256 else 40))
    graph = _mlp(False)
    whole = run_reference(graph, x, observe=NodeByNode(graph))  # no region at all
    monkeypatch.setattr("nirbridge.backends.reference.run_region", spy)
    got = run_reference(graph, x)
    assert bool(calls) == blocked
    assert torch.equal(got, whole)
