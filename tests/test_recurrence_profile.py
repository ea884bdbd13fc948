"""Profiling recurrent graphs (issue 10, part 4): event counts, chip mapping, netx.

A recurrent synapse's events at step t are the spikes of step t − 1 × its fan-out (none at
t = 0), as the reference runs a feedback edge; feed-forward synapses count as before;
counts from the reference's records equal counts from output-only records (what Lava
gives); recurrent layers map on chip (their weights on the cores of the neurons they
feed); netx writes the recurrent dense layers it can run and refuses every other cycle in
one line naming its nodes. Expected counts come from explicit loops over the recorded
spikes, never from the module's own fan-out maps.
"""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch

from nirbridge.backends.reference import RunRecord, run_reference
from nirbridge.errors import LoweringError
from nirbridge.graph import feedback_edges
from nirbridge.netx import check_netx_structure, recurrent_layers
from nirbridge.nodes import ARLIF
from nirbridge.profile import count_events, count_run, map_to_chip, recurrent_synapses

T, B, N_IN, N = 16, 2, 4, 5
DT = 1e-3


# ------------------------------------------------------------------------------ graphs
def _lif(n: int = N, vth: float = 0.5) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.full(n, vth), v_reset=np.zeros(n))


def _graph(nodes: dict, edges: list) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)


def _weights(seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(1.0, 0.8, (N, N_IN))
    w[0, 1] = w[3, 2] = 0.0  # zero weights: fewer effective synapses than connections
    wr = rng.normal(0.0, 0.6, (N, N))
    wr[:, 4] = 0.0  # neuron 4 drives nothing back
    wr[1:3, 0] = 0.0
    return w, wr


def _rec_layer(w, wr, *, bias: float = 0.0, rec_bias: float | None = None) -> nir.NIRGraph:
    """Input → fc → lif → rec → (back to lif), lif → output. ``rec_bias``: the recurrent
    synapse is an Affine with that bias, else a Linear."""
    rec = nir.Linear(wr) if rec_bias is None else nir.Affine(wr, np.full(N, rec_bias))
    return _graph({"input": nir.Input(np.array([N_IN])),
                   "fc": nir.Affine(w, np.full(N, bias)), "lif": _lif(), "rec": rec,
                   "output": nir.Output(np.array([N]))},
                  [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"),
                   ("lif", "output")])


def _mixed_graph(seed: int = 2) -> nir.NIRGraph:
    """Three kinds of cycle in one graph:

    - ``mix`` sums the Input and ``lif1``'s spikes (the feedback edge ``lif1 → mix`` ends
      at a synapse: its recorded input already holds the previous step);
    - ``lif2 → fb → d → lif1``: a feedback path through another layer and a 2-step Delay
      (the feedback edge is ``d → lif1``; ``fb`` is recurrent through the Delay);
    - ``lif2 → self2 → lif2``: a one-to-one Scale recurrence.
    """
    rng = np.random.default_rng(seed)
    return _graph(
        {"input": nir.Input(np.array([N])), "mix": nir.Affine(rng.normal(0.8, 0.6, (N, N)),
                                                              np.full(N, 0.1)),
         "lif1": _lif(), "fc2": nir.Linear(rng.normal(0.6, 0.6, (N, N))), "lif2": _lif(),
         "fb": nir.Linear(rng.normal(0.0, 0.5, (N, N))),
         "d": nir.Delay(np.full(N, 2 * DT)), "self2": nir.Scale(np.array([0.3, 0, 0.2, 0, 0.4])),
         "output": nir.Output(np.array([N]))},
        [("input", "mix"), ("mix", "lif1"), ("lif1", "mix"), ("lif1", "fc2"), ("fc2", "lif2"),
         ("lif2", "fb"), ("fb", "d"), ("d", "lif1"), ("lif2", "self2"), ("self2", "lif2"),
         ("lif2", "output")])


def _inputs(seed: int = 1, n: int = N_IN) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(T, B, n, generator=g, dtype=torch.float64) * 1.5
    return x * (torch.rand(T, B, n, generator=g, dtype=torch.float64) < 0.7)  # some zeros


def _output_only(records: dict) -> dict:
    """What a backend that records only outputs (Lava) hands the profiler."""
    return {k: RunRecord(output=r.output) for k, r in records.items()}


def _fanout(w: np.ndarray) -> np.ndarray:
    """Non-zero weights per input column, by loops."""
    return np.array([sum(1 for i in range(w.shape[0]) if w[i, j] != 0)
                     for j in range(w.shape[1])])


def _events_per_step(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per step, per sample: Σ over samples and inputs of (x ≠ 0)·fan-out, / B, by loops."""
    fan = _fanout(w)
    out = np.zeros(x.shape[0])
    for t in range(x.shape[0]):
        for b in range(x.shape[1]):
            for j in range(x.shape[2]):
                if x[t, b, j] != 0:
                    out[t] += fan[j]
    return out / x.shape[1]


# ------------------------------------------------------------------------------ counts
def test_recurrent_synapse_counts_spikes_of_the_previous_step():
    w, wr = _weights()
    g = _rec_layer(w, wr)
    x = _inputs()
    _, c = count_run(g, x)
    _, records = run_reference(g, x, record=True)
    spikes = records["lif"].output.numpy()
    assert 0 < spikes.mean() < 1 and spikes[:-1].sum() < spikes.sum()  # last step spikes too

    rec = c.synapses["rec"]
    shifted = np.concatenate([np.zeros((1, B, N)), spikes[:-1]])  # spikes of step t - 1
    want = _events_per_step(shifted, wr)
    assert want[0] == 0 and want.sum() > 0
    np.testing.assert_array_equal(rec.effective_per_step, want)
    assert rec.effective == want.sum()
    assert rec.kind == "AC" and rec.predecessors == ["lif"]
    # spikes of steps 0..T-2, each times its fan-out in wr (the last step's feed no step)
    fan = _fanout(wr)
    assert rec.effective == sum(spikes[t, b, j] * fan[j] for t in range(T - 1)
                                for b in range(B) for j in range(N)) / B
    assert rec.dense == N * N * T and rec.synapses == int((wr != 0).sum())
    assert rec.connections == N * N

    # the feed-forward synapse counts its input as before: this step's non-zero inputs
    fc = c.synapses["fc"]
    assert fc.kind == "MAC"
    np.testing.assert_array_equal(fc.effective_per_step, _events_per_step(x.numpy(), w))
    # and the same count as in the graph without the recurrent edge
    ff = _graph(dict(g.nodes), [e for e in g.edges if e != ("rec", "lif")])
    _, c_ff = count_run(ff, x)
    assert c_ff.to_dict()["synapses"]["fc"] == c.to_dict()["synapses"]["fc"]
    # the neuron: driven when its summed input (fc at t, rec from t - 1) is non-zero
    drive = records["lif"].input.numpy()
    assert c.neurons["lif"].updates_driven == (drive != 0).sum() / B
    assert c.neurons["lif"].spikes == spikes.sum() / B
    assert c.sop_ac == rec.effective and c.sop_mac == fc.effective


def test_which_synapses_are_recurrent():
    w, wr = _weights()
    assert recurrent_synapses(_rec_layer(w, wr)) == {"rec"}
    # fb reaches lif1 through the Delay; mix is fed over the feedback edge (not shifted)
    assert recurrent_synapses(_mixed_graph()) == {"fb", "self2"}
    assert set(feedback_edges(_mixed_graph())) == {("lif1", "mix"), ("d", "lif1"),
                                                   ("self2", "lif2")}
    assert recurrent_synapses(_graph(dict(_rec_layer(w, wr).nodes),
                                     [("input", "fc"), ("fc", "lif"), ("lif", "output")])) \
        == set()


def test_feedback_at_a_synapse_and_through_a_delay_count_as_the_reference_runs_them():
    g = _mixed_graph()
    x = _inputs(3, n=N)
    _, records = run_reference(g, x, record=True)
    c = count_events(g, records)
    s1, s2 = records["lif1"].output.numpy(), records["lif2"].output.numpy()
    assert 0 < s1.mean() < 1 and 0 < s2.mean() < 1
    # mix: this step's input plus lif1's spikes of the step before, summed, then counted
    prev1 = np.concatenate([np.zeros((1, B, N)), s1[:-1]])
    mixed = x.numpy() + prev1
    w_mix = np.asarray(g.nodes["mix"].weight)
    np.testing.assert_array_equal(c.synapses["mix"].effective_per_step,
                                  _events_per_step(mixed, w_mix))
    assert c.synapses["mix"].kind == "MAC"
    # fb: one step late (the feedback edge), the Delay's two steps not added
    prev2 = np.concatenate([np.zeros((1, B, N)), s2[:-1]])
    np.testing.assert_array_equal(c.synapses["fb"].effective_per_step,
                                  _events_per_step(prev2, np.asarray(g.nodes["fb"].weight)))
    np.testing.assert_array_equal(c.synapses["self2"].effective_per_step,
                                  _events_per_step(prev2, np.diag(g.nodes["self2"].scale)))
    assert c.synapses["fb"].kind == c.synapses["self2"].kind == "AC"
    assert c.synapses["fc2"].kind == "AC"


def test_output_only_records_give_the_reference_counts():
    """Lava records outputs only: the profiler rebuilds each input from its sources'
    outputs, over a feedback edge from the previous step, and must land on the same
    counts as from the reference's recorded inputs."""
    w, wr = _weights(4)
    for g, x in ((_rec_layer(w, wr, bias=0.1, rec_bias=0.2), _inputs(5)),
                 (_mixed_graph(6), _inputs(7, n=N))):
        _, records = run_reference(g, x, record=True)
        ref = count_events(g, records)
        only = count_events(g, _output_only(records))
        assert all(n.spikes > 0 for n in ref.neurons.values())
        assert only.to_dict() == ref.to_dict()


def test_nested_recurrent_subgraph_is_counted_and_mapped_flat():
    """snnTorch's RLeaky export: the neuron and its recurrent synapse in a subgraph
    (records keyed ``lif.lif``, ``lif.w_rec``)."""
    w, wr = _weights(8)
    sub = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([N])), "lif": _lif(), "w_rec": nir.Linear(wr),
               "output": nir.Output(np.array([N]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False)
    g = _graph({"input": nir.Input(np.array([N_IN])), "fc": nir.Affine(w, np.zeros(N)),
                "lif": sub, "output": nir.Output(np.array([N]))},
               [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    x = _inputs(9)
    _, records = run_reference(g, x, record=True)
    c = count_events(g, records)
    assert set(c.synapses) == {"fc", "lif.w_rec"} and set(c.neurons) == {"lif.lif"}
    flat = _rec_layer(w, wr)
    _, c_flat = count_run(flat, x)
    assert c.synapses["lif.w_rec"].effective_per_step.tolist() == \
        c_flat.synapses["rec"].effective_per_step.tolist()
    m = map_to_chip(g, "loihi2", c)
    assert m.layers[0].synapse_nodes == ["fc", "lif.w_rec"]


@pytest.mark.lava
def test_lava_counts_equal_reference_counts_on_a_recurrent_graph():
    """A real output-only record set: Lava floating_pt on an all-to-all recurrent layer
    (an Affine with bias) feeding a layer with one-to-one (Scale) recurrence."""
    import nirbridge
    from nirbridge.backends import get

    w, wr = _weights(4)
    rng = np.random.default_rng(12)
    g = _graph({"input": nir.Input(np.array([N_IN])), "fc": nir.Affine(w, np.full(N, 0.1)),
                "lif1": _lif(), "rec": nir.Affine(wr, np.full(N, 0.2)),
                "fc2": nir.Linear(rng.normal(0.6, 0.6, (N, N))), "lif2": _lif(),
                "self2": nir.Scale(np.array([0.3, 0, 0.2, 0, 0.4])),
                "output": nir.Output(np.array([N]))},
               [("input", "fc"), ("fc", "lif1"), ("lif1", "rec"), ("rec", "lif1"),
                ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "self2"), ("self2", "lif2"),
                ("lif2", "output")])
    reasons = get("lava").check(g)
    if any("recurrent graphs are not supported" in r for r in reasons):
        pytest.skip(f"the Lava backend does not run recurrent graphs yet: {reasons[0]}")
    x = _inputs(5)
    _, ref = nirbridge.run(g, x, record=True)
    _, lava = nirbridge.run(g, x, backend="lava", record=True)
    assert lava["rec"].input is None  # Lava records the synapses' outputs only
    want, got = count_events(g, ref), count_events(g, lava)
    assert all(n.spikes > 0 for n in want.neurons.values())
    assert want.synapses["rec"].effective > 0 and want.synapses["self2"].effective > 0
    assert got.to_dict() == want.to_dict()


# ----------------------------------------------------------------------------- mapping
def _two_layers(wr: np.ndarray | None, n1: int = 300, n2: int = 10):
    rng = np.random.default_rng(10)
    nodes = {"input": nir.Input(np.array([N_IN])),
             "fc1": nir.Linear(rng.normal(size=(n1, N_IN))), "lif1": _lif(n1),
             "fc2": nir.Linear(rng.normal(size=(n2, n1))), "lif2": _lif(n2),
             "output": nir.Output(np.array([n2]))}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "output")]
    if wr is not None:
        nodes["rec"] = nir.Linear(wr)
        edges += [("lif1", "rec"), ("rec", "lif1")]
    return _graph(nodes, edges)


def test_map_a_recurrent_layer_on_loihi_cores():
    n1 = 300
    wr = np.random.default_rng(11).normal(size=(n1, n1))
    wr[wr < -1.0] = 0.0
    ff = map_to_chip(_two_layers(None), "loihi")
    m = map_to_chip(_two_layers(wr), "loihi")
    l1, f1 = m.layers[0], ff.layers[0]
    assert l1.neuron_node == "lif1" and l1.synapse_nodes == ["fc1", "rec"]
    # the recurrent weights are stored on lif1's cores; its n1 neurons join the fan-in
    assert l1.synapses == f1.synapses + int((wr != 0).sum())
    assert l1.fan_in == N_IN + n1 and f1.fan_in == N_IN
    assert any("recurrent synapse ['rec']" in n for n in l1.notes)
    # lif1's neurons send axons to lif2's core and to their own: one destination more
    need = l1.usage["output_axons_per_core"]["need"]
    assert need == math.ceil(n1 / l1.cores) * (1 + l1.cores)
    assert f1.usage["output_axons_per_core"]["need"] == math.ceil(n1 / f1.cores) * 1
    assert m.fits and m.layers[1] == ff.layers[1]
    # a recurrent layer too wide for one core's input axons does not fit
    big = 4200
    wide = map_to_chip(_two_layers(np.ones((big, big)), n1=big), "loihi")
    assert not wide.fits and any("fan-in" in n for n in wide.layers[0].notes)


def test_map_a_recurrent_layer_on_speck_and_xylo():
    wr = np.eye(300)
    speck = map_to_chip(_two_layers(wr), "speck")
    layer = speck.layers[0]
    assert not layer.fits and not speck.fits
    assert any("recurrent synapse ['rec']" in n and "Speck" in n for n in layer.notes)
    xylo = map_to_chip(_two_layers(wr, n2=8), "xylo-audio2")
    assert xylo.fits
    assert any("recurrent weight matrix" in n for n in xylo.layers[0].notes)


# -------------------------------------------------------------------------------- netx
def _netx_error(graph: nir.NIRGraph) -> str:
    with pytest.raises(LoweringError) as err:
        check_netx_structure(graph)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("netx: recurrent nodes (")
    return msg


def test_netx_accepts_a_recurrent_dense_layer():
    w, wr = _weights()
    g = _rec_layer(w, wr)
    assert recurrent_layers(g) == {"lif": "rec"}
    check_netx_structure(g)  # a chain once the recurrent loop is one layer
    check_netx_structure(_rec_layer(w, wr, rec_bias=0.0))  # an Affine without bias is fine


def test_netx_refuses_the_recurrent_layers_it_cannot_run_in_one_line():
    w, wr = _weights()
    msg = _netx_error(_rec_layer(w, wr, rec_bias=0.2))
    assert "('lif', 'rec')" in msg and "'rec' (Affine) has a bias" in msg
    assert "t = 1" in msg and "bias-free" in msg

    msg = _netx_error(_mixed_graph())  # the first cycle: mix <-> lif1 through lif2's loop
    assert "'lif1'" in msg and "'mix'" in msg and "'fb'" in msg and "'d'" in msg
    assert "hold 2 neuron layers" in msg and "dense_rec" in msg

    scale = _rec_layer(w, wr)
    scale.nodes["rec"] = nir.Scale(np.full(N, 0.5))
    msg = _netx_error(scale)
    assert "'rec' (Scale)" in msg and "diagonal" in msg

    o = np.ones(N)
    custom = _rec_layer(w, wr)
    custom.nodes["lif"] = ARLIF(decay=0.5 * o, v_threshold=o, tanh_a=0 * o, c=0 * o)
    msg = _netx_error(custom)
    assert "('lif', 'rec')" in msg and "'lif' (ARLIF)" in msg and "CUBA" in msg

    delayed = _rec_layer(w, wr)
    delayed.nodes["d"] = nir.Delay(np.full(N, DT))
    delayed.edges = [e for e in delayed.edges if e != ("rec", "lif")] + [("rec", "d"),
                                                                          ("d", "lif")]
    msg = _netx_error(delayed)
    assert "'d'" in msg and "2 nodes besides the neuron" in msg


def test_cli_export_netx_refuses_a_recurrent_layer_in_one_line(tmp_path, capsys):
    import nirbridge
    from nirbridge.cli import main

    w, wr = _weights()
    src, out = tmp_path / "rec.nir", tmp_path / "rec.net"
    nirbridge.write(src, _rec_layer(w, wr, rec_bias=0.2))
    assert main(["export-netx", str(src), "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert "recurrent nodes ('lif', 'rec')" in err and "bias" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.nir"]
