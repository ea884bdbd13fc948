"""Counting while the reference runs (``count_run``, ``EventCounter``) gives exactly the
counts ``count_events`` finds in the full records of the same run, on every registered
neuron, conv and pooling layers, a recurrent layer and delays; the chunked convolution and
the freed values leave the reference's outputs and records unchanged bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as tF

import nirbridge
from nirbridge.backends import reference
from nirbridge.backends.reference import ReferenceExecutor, run_reference
from nirbridge.neurons import NEURONS, StatefulSequential
from nirbridge.profile import EventCounter, count_events, count_run

sys.path.insert(0, str(Path(__file__).parent))
import example_neuron  # noqa: E402,F401  (registers FloorLIF: the test-only neuron)

T, B = 12, 3


def _lif(shape, tau=2.0, vth=0.6) -> nir.LIF:
    return nir.LIF(tau=np.full(shape, tau), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, vth), v_reset=np.zeros(shape))


def _same_counts(graph, x, spike_inputs=False) -> dict:
    """Both ways of counting one run; asserts they agree exactly and returns the counts."""
    (out, records) = run_reference(graph, x, record=True)
    full = count_events(graph, records, spike_inputs=spike_inputs).to_dict()
    out_in_run, counts = count_run(graph, x, spike_inputs=spike_inputs)
    assert torch.equal(out_in_run, out)
    assert counts.to_dict() == full
    return full


@pytest.mark.parametrize("name", sorted(NEURONS))
def test_every_neuron_counts_the_same_in_the_run_as_from_records(name):
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 6)
    with torch.no_grad():
        lin.weight.normal_(0.0, 0.8)
        lin.bias.normal_(0.3, 0.2)
        lin.weight[0, :2] = 0.0  # zero weights: effective < dense
    lin2 = torch.nn.Linear(6, 5)
    model = StatefulSequential(lin, NEURONS[name].example((6,), True), lin2,
                               NEURONS[name].example((5,), False)).double()
    graph = nirbridge.to_nir(model, torch.zeros(1, 4, dtype=torch.float64), dt=1.0)
    x = np.random.default_rng(1).normal(0.3, 1.0, (T, B, 4))
    x[:, :, 3] = 0.0  # an input channel that never drives
    counts = _same_counts(graph, x)
    assert counts["totals"]["sop_effective"] > 0
    assert counts["totals"]["nu_driven"] > 0


def _conv_graph() -> nir.NIRGraph:
    rng = np.random.default_rng(2)
    w1 = rng.normal(0, 0.6, (4, 1, 3, 3))
    w1[0, 0, 1] = 0.0
    w2 = rng.normal(0, 0.5, (4, 4, 3, 3))
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 8, 8])),
               "conv1": nir.Conv2d(input_shape=(8, 8), weight=w1, stride=2, padding=1,
                                   dilation=1, groups=1, bias=rng.normal(0, 0.1, 4)),
               "sn1": _lif((4, 4, 4)),
               "conv2": nir.Conv2d(input_shape=(4, 4), weight=w2, stride=1, padding=1,
                                   dilation=1, groups=1, bias=np.zeros(4)),
               "sn2": _lif((4, 4, 4)),
               "sum": nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
               "avg": nir.AvgPool2d(np.array([2, 2]), np.array([1, 1]), np.array([0, 0])),
               "flat": nir.Flatten(start_dim=0, end_dim=-1,
                                   input_type={"input": np.array([4, 1, 1])}),
               "fc": nir.Affine(rng.normal(0, 1.0, (3, 4)), np.zeros(3)),
               "sn3": _lif((3,)),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "conv1"), ("conv1", "sn1"), ("sn1", "conv2"), ("conv2", "sn2"),
               ("sn1", "sn2"), ("sn2", "sum"), ("sum", "avg"), ("avg", "flat"),
               ("flat", "fc"), ("fc", "sn3"), ("sn3", "output")],
        metadata={"dt": 1.0}, type_check=False)


def test_conv_and_pooling_count_the_same_in_the_run_as_from_records():
    x = (torch.rand(T, B, 1, 8, 8, generator=torch.Generator().manual_seed(3)) < 0.4)
    counts = _same_counts(_conv_graph(), x.to(torch.float64), spike_inputs=True)
    assert set(counts["synapses"]) == {"conv1", "conv2", "sum", "avg", "fc"}
    assert counts["synapses"]["conv1"]["kind"] == "AC"


def _recurrent_graph(delay_on_loop: bool) -> nir.NIRGraph:
    rng = np.random.default_rng(4)
    n = 6
    nodes = {"input": nir.Input(np.array([4])),
             "fc": nir.Affine(rng.normal(0, 1.0, (n, 4)), rng.normal(0.2, 0.1, n)),
             "lif": _lif((n,), tau=2.0, vth=0.5),
             "rec": nir.Affine(rng.normal(0, 0.4, (n, n)), np.full(n, 0.1)),
             "d": nir.Delay(np.array([2.0, 1.0, 3.0, 1.0, 2.0, 1.0])),
             "out_fc": nir.Affine(rng.normal(0, 1.0, (2, n)), np.zeros(2)),
             "output": nir.Output(np.array([2]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("lif", "d"), ("d", "out_fc"),
             ("out_fc", "output")]
    if delay_on_loop:
        nodes["d_loop"] = nir.Delay(np.ones(n))
        edges += [("rec", "d_loop"), ("d_loop", "lif")]
    else:
        edges.append(("rec", "lif"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


@pytest.mark.parametrize("delay_on_loop", [False, True])
def test_recurrent_layer_and_delays_count_the_same_in_the_run(delay_on_loop):
    x = torch.rand(T, B, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    counts = _same_counts(_recurrent_graph(delay_on_loop), x * 2.0)
    assert counts["synapses"]["rec"]["effective_per_step"][0] == 0  # nothing at t = 0
    assert counts["neurons"]["lif"]["spikes"] > 0


def test_counter_refuses_runs_of_different_shapes():
    graph = _conv_graph()
    counter = EventCounter(graph)
    counter("input", None, torch.zeros(T, B, 1, 8, 8))
    with pytest.raises(nirbridge.errors.InputError, match="conv1"):
        counter("conv1", torch.zeros(T + 1, B, 1, 8, 8), None)


def test_chunked_convolution_and_freed_values_change_no_bit(monkeypatch):
    graph = _conv_graph()
    # T·B = 39, odd: the chunks of two samples or more cannot all have the same size
    x = torch.rand(T + 1, B, 1, 8, 8, generator=torch.Generator().manual_seed(6),
                   dtype=torch.float64) * 1.5
    for dtype in (torch.float64, torch.float32):
        ex = ReferenceExecutor(graph, dtype=dtype)
        with torch.no_grad():
            whole, rec_whole = ex(x, record=True)
            monkeypatch.setattr(reference, "CONV_CHUNK_BYTES", 1)  # the fewest samples a call
            chunked, rec_chunked = ex(x, record=True)
            part = ex(x, record={"sn2"})[1]
            monkeypatch.undo()
        assert torch.equal(whole, chunked)
        assert set(part) == {"sn2"}
        for n, r in rec_whole.items():
            for f in ("input", "output"):
                a, b = getattr(r, f), getattr(rec_chunked[n], f)
                assert (a is None and b is None) or torch.equal(a, b), (n, f)
            assert r.states.keys() == rec_chunked[n].states.keys()
            assert all(torch.equal(v, rec_chunked[n].states[k]) for k, v in r.states.items())
        assert torch.equal(part["sn2"].states["v"], rec_whole["sn2"].states["v"])
        # the conv layer's output is torch's own conv2d over all T·B samples at once
        node = graph.nodes["conv1"]
        want = tF.conv2d(x.to(dtype).reshape(-1, 1, 8, 8),
                         torch.as_tensor(node.weight, dtype=dtype),
                         torch.as_tensor(node.bias, dtype=dtype), stride=2, padding=1)
        assert torch.equal(rec_chunked["conv1"].output.reshape(want.shape), want)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("block", [1, 7, 1 << 16])
def test_nonzero_counts_by_element_and_step_equal_count_nonzero(monkeypatch, block, batch,
                                                                compiled, dtype):
    """The blocked counts (odd block sizes: a last block shorter than the others) and the
    compiled loops equal torch's own count_nonzero, on graded values of both signs, exact
    zeros and -0.0, in float64 and float32."""
    from nirbridge.profile import counting, nonzero

    monkeypatch.setattr(nonzero, "COUNT_BLOCK_ELEMENTS", block)
    monkeypatch.setattr(nonzero, "COMPILED_FROM", 0 if compiled else 1 << 60)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, batch, 2, 5, generator=g, dtype=torch.float64).to(dtype)
    x[x.abs() < 0.7] = 0.0
    x[0, 0, 0, 0] = -0.0
    c = counting.nonzero_by_element(x)
    assert c.dtype == torch.float64 and c.shape == (9, 2, 5)
    assert torch.equal(c.to(torch.int64), torch.count_nonzero(x, dim=1))
    assert torch.equal(counting.nonzero_per_step(x),
                       torch.count_nonzero(x.reshape(9, -1), dim=1))
    assert counting.nonzero_per_step(x[:0]).shape == (0,)


def test_neuron_writing_over_its_input_changes_no_value():
    """A neuron may write its outputs over its input when nothing reads that after it: the
    same bits as a run that keeps every value (the observer's), no value it still needs
    overwritten (a Flatten's view of a value also read elsewhere, the caller's input),
    and a state holding a view of the input stops it."""
    rng = np.random.default_rng(5)

    def lif(n, vth=0.4):
        return nir.LIF(tau=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=np.full(n, vth), v_reset=np.zeros(n))

    # flat: a view of the caller's input; view: fc's own tensor, which mix reads after d
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2, 3])),
               "flat": nir.Flatten(start_dim=0, end_dim=-1,
                                   input_type={"input": np.array([2, 3])}),
               "fc": nir.Affine(rng.normal(0, 1, (6, 6)), rng.normal(0, .1, 6)),
               "view": nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([6])}),
               "a": lif(6), "d": lif(6), "e": lif(6), "f": lif(6, 0.6),
               "mix": nir.Affine(np.eye(6), np.zeros(6)),
               "graded": nir.Output(np.array([6])), "spikes": nir.Output(np.array([6]))},
        edges=[("input", "flat"), ("flat", "a"), ("flat", "fc"), ("fc", "view"), ("view", "d"),
               ("fc", "mix"), ("d", "mix"), ("a", "mix"), ("mix", "graded"), ("mix", "e"),
               ("e", "f"), ("f", "spikes")],
        type_check=False)
    x = torch.as_tensor(rng.normal(0, 1, (7, 3, 2, 3)))
    x0 = x.clone()
    plain = run_reference(g, x)
    kept = run_reference(g, x, observe=lambda *a: None)
    assert plain["spikes"].sum() > 0 and torch.equal(x, x0)
    assert all(torch.equal(plain[k], kept[k]) for k in ("graded", "spikes"))
    # counted in the run (inputs read before a neuron writes over them; a spiking
    # neuron's counts not reused once the next neuron has written over its output)
    _, counts = count_run(g, x)
    assert 0 < counts.neurons["f"].spikes < counts.neurons["e"].spikes
    assert counts.to_dict() == count_events(g, run_reference(g, x, record=True)[1]).to_dict()

    spec = NEURONS["LIF"]
    init, step = spec.runner(lif(4), 1.0)

    def holding(xt, s):  # from step 2 on, the state keeps a view of the input it reads
        v, prev, t = s
        y, v = step(xt + (0 if prev is None else prev), v)
        return y, (v, xt if t >= 1 else None, t + 1)

    xin = torch.as_tensor(rng.normal(0, 1, (5, 2, 4)))
    runner = (lambda x0: (init(x0), None, 0), holding)
    want = reference._run_neuron(runner, xin.clone(), None)
    got = reference._run_neuron(runner, xin.clone(), None, donated=True)
    assert torch.equal(want, got)
