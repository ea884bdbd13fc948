"""Recurrent graphs and delays in the reference executor, and the graph utilities behind
them (:mod:`nirbridge.graph`): feedback edges carry the previous step's value (zero at
t = 0, so a recurrent Affine's bias first counts at t = 1), algebraic loops are refused
naming exactly their nodes, nested subgraphs are flattened, feed-forward graphs run as
before, and the commands that cannot run cycles yet refuse them in one line."""

from __future__ import annotations

import re

import nir
import numpy as np
import pytest
import torch

from nirbridge import graph as G
from nirbridge.backends.reference import (
    ReferenceExecutor,
    apply_synapse,
    neuron_runner,
    run_reference,
)
from nirbridge.errors import GraphError, InvalidParameterError

T, B, N_IN, N = 24, 3, 4, 5
DT = 1e-3


def _lif(n: int = N, tau: float = 2e-3, vth: float = 0.6) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.full(n, vth), v_reset=np.zeros(n))


def _params(seed: int = 0, rec_bias: float = 0.2):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(N, N_IN))
    b = rng.normal(size=N) * 0.1
    wr = rng.normal(size=(N, N)) * 0.5
    br = np.full(N, rec_bias)
    return w, b, wr, br


def _recurrent(w, b, wr, br, *, order: str = "natural") -> nir.NIRGraph:
    """Input → fc → lif → rec → (back to lif), lif → output."""
    nodes = {"input": nir.Input(input_type=np.array([N_IN])), "fc": nir.Affine(w, b),
             "lif": _lif(), "rec": nir.Affine(wr, br),
             "output": nir.Output(output_type=np.array([N]))}
    if order == "reversed":  # dict order must not decide which edge closes the cycle
        nodes = dict(reversed(list(nodes.items())))
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)


def _inputs(seed: int = 1, scale: float = 1.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, N_IN, generator=g, dtype=torch.float64) * scale


def _explicit_loop(x, w, b, wr, br, *, tau=2e-3, vth=0.6):
    """The recurrent LIF layer written out step by step: the recurrent input at t is
    ``wr·s[t-1] + br`` and zero (bias included) at t = 0."""
    w, b, wr, br = (torch.as_tensor(a, dtype=torch.float64) for a in (w, b, wr, br))
    k = DT / torch.full((N,), tau, dtype=torch.float64)
    v = torch.zeros(x.shape[1], N, dtype=torch.float64)
    s_prev = None
    spikes, volts, drives = [], [], []
    for t in range(x.shape[0]):
        drive = x[t] @ w.T + b
        if s_prev is not None:
            drive = drive + (s_prev @ wr.T + br)
        v = v + k * (0.0 - v + 1.0 * drive)
        s = (v - vth > 0).to(torch.float64)
        v = v * (1 - s) + 0.0 * s
        spikes.append(s)
        volts.append(v)
        drives.append(drive)
        s_prev = s
    return torch.stack(spikes), torch.stack(volts), torch.stack(drives)


# ---------------------------------------------------------------- the reference's loop
@pytest.mark.parametrize("order", ["natural", "reversed"])
def test_recurrent_lif_equals_an_explicit_step_by_step_loop(order):
    w, b, wr, br = _params()
    graph = _recurrent(w, b, wr, br, order=order)
    x = _inputs()
    out, rec = run_reference(graph, x, record=True)
    spikes, volts, drives = _explicit_loop(x, w, b, wr, br)
    assert 0 < float(spikes.mean()) < 1  # the layer spikes, and not always
    torch.testing.assert_close(out, spikes, rtol=0, atol=0)
    torch.testing.assert_close(rec["lif"].states["v"], volts, rtol=0, atol=1e-13)
    torch.testing.assert_close(rec["lif"].input, drives, rtol=0, atol=1e-13)
    # records inside the component look like any other node's
    assert set(rec) == set(graph.nodes)
    assert rec["rec"].output.shape == (T, B, N) and rec["rec"].states == {}
    torch.testing.assert_close(rec["rec"].input, spikes, rtol=0, atol=0)


def test_a_recurrent_affine_adds_its_bias_from_t1_not_at_t0():
    w, b, wr, _ = _params()
    graph = _recurrent(np.zeros_like(w), np.zeros_like(b), np.zeros_like(wr),
                       np.full(N, 3.0))
    out, rec = run_reference(graph, _inputs(), record=True)
    # zero feed-forward drive: the only input is the recurrent bias, which arrives at t = 1
    assert torch.all(rec["lif"].input[0] == 0)
    assert torch.all(rec["lif"].input[1:] == 3.0)
    assert torch.all(out[0] == 0) and torch.all(out[1] == 1)
    _, volts, _ = _explicit_loop(_inputs() * 0, np.zeros_like(w), np.zeros_like(b),
                                 np.zeros_like(wr), np.full(N, 3.0))
    torch.testing.assert_close(rec["lif"].states["v"], volts, rtol=0, atol=1e-13)


def test_one_to_one_recurrence_through_scale_and_a_self_loop():
    # lif → Scale(v) → lif (snnTorch's all_to_all=False), and a neuron fed back onto itself
    w, b, _, _ = _params(3)
    v = np.linspace(-0.4, 0.4, N)
    for rec_node, edges in (
        (nir.Scale(v), [("lif", "rec"), ("rec", "lif")]),
        (None, [("lif", "lif")]),
    ):
        nodes = {"input": nir.Input(input_type=np.array([N_IN])), "fc": nir.Affine(w, b),
                 "lif": _lif(), "output": nir.Output(output_type=np.array([N]))}
        if rec_node is not None:
            nodes["rec"] = rec_node
        graph = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), *edges,
                                                 ("lif", "output")],
                             metadata={"dt": DT}, type_check=False)
        x = _inputs(4)
        wr = np.diag(v) if rec_node is not None else np.eye(N)
        spikes, _, _ = _explicit_loop(x, w, b, wr, np.zeros(N))
        assert spikes.sum() > 0
        torch.testing.assert_close(run_reference(graph, x), spikes, rtol=0, atol=0)


# ----------------------------------------------------------------------------- delays
def _delay_graph(delay, n: int = N) -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n])), "d": nir.Delay(np.asarray(delay)),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "d"), ("d", "output")], metadata={"dt": DT}, type_check=False)


def test_a_delay_line_shifts_by_whole_steps_per_element():
    x = torch.rand(T, B, N, dtype=torch.float64)
    out = run_reference(_delay_graph(np.full(N, 3 * DT)), x)
    assert torch.all(out[:3] == 0) and torch.equal(out[3:], x[:-3])
    steps = np.array([1, 2, 5, 2, T + 4])
    out = run_reference(_delay_graph(steps * DT), x)
    for i, d in enumerate(steps):
        want = torch.zeros(T, B, dtype=torch.float64)
        if d < T:  # a delay longer than the run gives zeros
            want[d:] = x[:T - d, :, i]
        assert torch.equal(out[:, :, i], want), i
    for bad in (0.0, 2.5 * DT, -DT):
        with pytest.raises(InvalidParameterError, match=r"node 'd' \(Delay\).*whole number"):
            ReferenceExecutor(_delay_graph(np.full(N, bad)))


def test_a_delay_on_a_cycle_adds_to_the_feedback_step():
    # input → acc (Scale 1) → d (Delay k) → back to acc: acc[t] = x[t] + acc[t-1-k]
    k = 2
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([N])), "acc": nir.Scale(np.ones(N)),
               "d": nir.Delay(np.full(N, k * DT)), "output": nir.Output(output_type=np.array([N]))},
        edges=[("input", "acc"), ("acc", "d"), ("d", "acc"), ("acc", "output")],
        metadata={"dt": DT}, type_check=False)
    assert G.feedback_edges(graph) == [("d", "acc")] and G.algebraic_loops(graph) == []
    x = torch.rand(T, B, N, dtype=torch.float64)
    want = torch.zeros_like(x)
    for t in range(T):
        want[t] = x[t] + (want[t - 1 - k] if t - 1 - k >= 0 else 0)
    torch.testing.assert_close(run_reference(graph, x), want, rtol=0, atol=0)


# --------------------------------------------------------------------- algebraic loops
def test_an_algebraic_loop_names_exactly_its_nodes():
    w, b, wr, br = _params()
    graph = _recurrent(w, b, wr, br)
    # a loop of two synapses hung after the neuron: no state on it
    graph.nodes["a"] = nir.Affine(np.eye(N), np.zeros(N))
    graph.nodes["b"] = nir.Scale(np.full(N, 0.5))
    graph.edges += [("lif", "a"), ("a", "b"), ("b", "a"), ("a", "output")]
    assert G.algebraic_loops(graph) == [["a", "b"]]
    assert sorted(map(sorted, G.cyclic_components(graph))) == [["a", "b"], ["lif", "rec"]]
    with pytest.raises(GraphError) as err:
        ReferenceExecutor(graph)
    msg = str(err.value)
    assert "\n" not in msg and "(a -> b -> a)" in msg
    named = set(re.findall(r"\(([^)]*)\)", msg)[0].split(" -> "))
    assert named == {"a", "b"}
    for other in ("fc", "lif", "rec", "input", "output"):
        assert f"'{other}'" not in msg and f" {other} " not in msg
    # the recurrent loop alone is fine: the neuron holds state
    assert G.algebraic_loops(_recurrent(w, b, wr, br)) == []


# -------------------------------------------------------------------------- subgraphs
def _nested(w, b, wr, br, *, dotted_ports: bool) -> nir.NIRGraph:
    sub = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([N])), "lif": _lif(),
               "w_rec": nir.Affine(wr, br), "output": nir.Output(output_type=np.array([N]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False)
    into, out_of = ("rnn.input", "rnn.output") if dotted_ports else ("rnn", "rnn")
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([N_IN])), "fc": nir.Affine(w, b),
               "rnn": sub, "output": nir.Output(output_type=np.array([N]))},
        edges=[("input", "fc"), ("fc", into), (out_of, "output")],
        metadata={"dt": DT}, type_check=False)


@pytest.mark.parametrize("dotted_ports", [False, True])
def test_a_nested_subgraph_is_flattened(dotted_ports):
    w, b, wr, br = _params(5)
    nested = _nested(w, b, wr, br, dotted_ports=dotted_ports)
    flat = G.flatten_subgraphs(nested)
    assert list(flat.nodes) == ["input", "fc", "rnn.lif", "rnn.w_rec", "output"]
    # an edge through a port takes the place of the port's edge inside the subgraph
    assert flat.edges == [("fc", "rnn.lif"), ("rnn.lif", "rnn.w_rec"), ("rnn.w_rec", "rnn.lif"),
                          ("input", "fc"), ("rnn.lif", "output")]
    assert flat.metadata == {"dt": DT} and G.feedback_edges(flat) == [("rnn.w_rec", "rnn.lif")]
    x = _inputs(6)
    out, rec = run_reference(nested, x, record=True)
    torch.testing.assert_close(out, run_reference(_recurrent(w, b, wr, br), x), rtol=0, atol=0)
    assert set(rec) == set(flat.nodes) and out.sum() > 0
    assert G.flatten_subgraphs(flat) is flat  # nothing to flatten: the same graph


def test_flattening_refuses_ambiguous_or_clashing_names():
    w, b, wr, br = _params()
    nested = _nested(w, b, wr, br, dotted_ports=False)
    nested.nodes["rnn"].nodes["input2"] = nir.Input(input_type=np.array([N]))
    with pytest.raises(GraphError, match="subgraph 'rnn', which has 2 Input nodes"):
        G.flatten_subgraphs(nested)
    nested = _nested(w, b, wr, br, dotted_ports=False)
    nested.nodes["rnn.lif"] = _lif()
    with pytest.raises(GraphError, match="'rnn.lif', which the graph already has"):
        G.flatten_subgraphs(nested)


# ---------------------------------------------------------------------- feed-forward
def _previous_executor(graph: nir.NIRGraph, x: torch.Tensor, dt: float):
    """The executor as it was before recurrence: topological order, every node over the
    whole time axis, neurons looping over time (outputs and records)."""
    preds = G.predecessors(graph)
    values, records = {}, {}
    for name in G.topological_order(graph):
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            values[name] = x
            continue
        v = values[preds[name][0]]
        for q in preds[name][1:]:
            v = v + values[q]
        runner = neuron_runner(node, dt)
        if isinstance(node, nir.Output):
            y, states = v, {}
        elif runner is None:
            y, states = apply_synapse(node, v), {}
        else:
            init, step = runner
            state, ys, trace = init(v[0]), [], []
            for xt in v:
                yt, state = step(xt, state)
                ys.append(yt)
                trace.append(state)
            y = torch.stack(ys)
            states = {f: torch.stack([getattr(s, f) for s in trace]) for f in trace[0]._fields}
        values[name] = y
        records[name] = (v, y, states)
    return values, records


@pytest.mark.parametrize("kind", ["lif", "arlif"])
def test_a_feed_forward_graph_runs_as_before(kind):
    import nirbridge
    from nirbridge.examples import DigitsConvSNN

    torch.manual_seed(0)
    graph = nirbridge.to_nir(DigitsConvSNN(kind, channels=8).eval(), torch.zeros(1, 1, 8, 8))
    assert not G.is_recurrent(graph) and G.feedback_edges(graph) == []
    order = G.topological_order(graph)
    assert G.execution_order(graph) == order
    units = G.schedule(graph)
    assert [u.nodes for u in units] == [(n,) for n in order]
    assert not any(u.cyclic for u in units)
    x = torch.rand(6, 2, 1, 8, 8, dtype=torch.float64) * 2
    ex = ReferenceExecutor(graph)
    out, rec = ex(x, record=True)
    values, old = _previous_executor(graph, x, ex.dt)
    (out_name,) = ex.outputs
    assert torch.equal(out, values[out_name])
    for name, (inp, y, states) in old.items():
        assert torch.equal(rec[name].output, y), name
        assert torch.equal(rec[name].input, inp), name
        assert rec[name].states.keys() == states.keys(), name
        for f in states:
            assert torch.equal(rec[name].states[f], states[f]), (name, f)
    assert any(r.output.sum() > 0 for n, r in rec.items() if r.states)


# --------------------------------------------------------------------- graph utilities
def test_feedback_edges_start_from_the_inputs_whatever_the_node_order():
    w, b, wr, br = _params()
    for order in ("natural", "reversed"):
        graph = _recurrent(w, b, wr, br, order=order)
        assert G.feedback_edges(graph) == [("rec", "lif")]
        assert G.execution_order(graph) == ["input", "fc", "lif", "rec", "output"]
        assert G.cyclic_components(graph) == [["lif", "rec"]]
        assert G.find_cycle(graph) == ["lif", "rec"] and G.is_recurrent(graph)
        # every node follows its non-feedback predecessors
        pos = {n: i for i, n in enumerate(G.execution_order(graph))}
        fb = set(G.feedback_edges(graph))
        assert all(pos[s] < pos[d] for s, d in graph.edges if (s, d) not in fb)


def test_components_run_after_everything_feeding_them():
    # the cycle {a, b} also takes a long path from the input into b: the whole cycle must
    # wait for it, although a alone could run earlier
    n = 2
    aff = lambda: nir.Affine(np.eye(n), np.zeros(n))  # noqa: E731
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n])), "a": _lif(n), "b": aff(),
               "p1": aff(), "p2": aff(), "p3": aff(), "output": nir.Output(np.array([n]))},
        edges=[("input", "a"), ("a", "b"), ("b", "a"), ("input", "p1"), ("p1", "p2"),
               ("p2", "p3"), ("p3", "b"), ("a", "output")], type_check=False)
    units = [u.nodes for u in G.schedule(graph)]
    assert units.index(("a", "b")) > units.index(("p3",))
    assert G.strongly_connected_components(graph) == [list(u) for u in units]


def test_topological_order_names_exactly_the_cycle():
    w, b, wr, br = _params()
    graph = _recurrent(w, b, wr, br)
    graph.nodes["fc2"] = nir.Affine(np.eye(N), np.zeros(N))
    graph.edges += [("lif", "fc2"), ("fc2", "output")]
    with pytest.raises(GraphError) as err:
        G.topological_order(graph)
    assert "(lif -> rec -> lif)" in str(err.value)
    assert "fc2" not in str(err.value) and "output" not in str(err.value)
    assert G.topological_order(graph, strict=False) == G.execution_order(graph)


def test_every_stage_runs_a_recurrent_graph_and_netx_names_what_it_lacks():
    from nirbridge.backends.lava.lower_float import FloatLowerer
    from nirbridge.errors import LoweringError
    from nirbridge.netx import check_netx_structure
    from nirbridge.profile import count_run
    from nirbridge.profile.mapping import map_to_chip
    from nirbridge.quantize import quantize

    w, b, wr, br = _params()
    graph = _recurrent(w, b, wr, br)
    FloatLowerer(graph, DT, "auto")  # builds: no refusal of the cycle any more
    assert quantize(graph).feedback
    x = np.random.default_rng(3).normal(0.5, 1.0, (T, B, N_IN))
    _, counts = count_run(graph, x)
    assert counts.synapses["rec"].effective > 0
    assert map_to_chip(graph, "loihi2").layers
    with pytest.raises(LoweringError, match=r"netx: recurrent nodes \('lif', 'rec'\) cannot "
                       r"be written: node 'rec' \(Affine\) has a bias"):
        check_netx_structure(graph)


def test_the_reference_backend_checks_structure_but_accepts_cycles():
    from nirbridge.backends import get

    w, b, wr, br = _params()
    assert get("reference").check(_recurrent(w, b, wr, br)) == []
    looped = _recurrent(w, b, wr, br)
    looped.nodes["s"] = nir.Scale(np.ones(N))
    looped.edges += [("rec", "s"), ("s", "rec")]
    (reason,) = get("reference").check(looped)
    assert "algebraic loop (rec -> s -> rec)" in reason
    assert get("reference").check(_delay_graph(np.full(N, 0.5 * DT)))[0].startswith(
        "node 'd' (Delay)")


# ------------------------------------------------------------------------ the ecosystem
def test_norse_from_nir_on_a_recurrent_file_equals_the_reference(tmp_path):
    norse = pytest.importorskip("norse.torch")
    import nirbridge

    w, b, wr, br = (a.astype(np.float32) for a in _params(7, rec_bias=0.3))
    path = tmp_path / "recurrent.nir"
    nir.write(path, _recurrent(w, b, wr, br))
    x = _inputs(8).float()
    model = norse.from_nir(nir.read(path), dt=DT)  # nirtorch.load's graph executor
    state, outs = None, []
    with torch.no_grad():
        for xt in x:
            y, state = model(xt, state)
            outs.append(y)
    want = torch.stack(outs).double()
    got = run_reference(nirbridge.read(path), x.double(), dt=DT)
    assert want.sum() > 0 and 0 < float(want.mean()) < 1
    torch.testing.assert_close(got, want, rtol=0, atol=0)
