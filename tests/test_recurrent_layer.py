"""nirbridge's own recurrent layer (:class:`nirbridge.layers.Recurrent`): its forward is the
reference's reading of the graph it exports (docs/recurrence.md), for every kind of neuron,
all-to-all and one-to-one, and it trains through the recurrence."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from torch import nn

import nirbridge
from nirbridge.backends.reference import run_reference
from nirbridge.errors import InvalidParameterError, UnsupportedLayerError
from nirbridge.layers import Recurrent, RecurrentState
from nirbridge.neurons import LIF, NEURONS, StatefulSequential, run_steps

N_IN, N, N_OUT, T, B = 5, 8, 3, 40, 2
NEURON_KINDS = ("LIF", "ARLIF", "KLIF", "DALIF", "ALIF", "CubaLIF")
RECURRENCE = ("all_to_all", "all_to_all_no_bias", "one_to_one")


def _recurrence(kind: str, seed: int) -> nn.Linear | torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "one_to_one":
        return torch.rand(N, generator=g, dtype=torch.float64) * 0.8 - 0.4
    lin = nn.Linear(N, N, bias=kind == "all_to_all").double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(N, N, generator=g, dtype=torch.float64) * 0.5)
        if lin.bias is not None:
            lin.bias.copy_(torch.randn(N, generator=g, dtype=torch.float64) * 0.2)
    return lin


def _model(neuron: str, kind: str, seed: int = 0, *, bias_at_start: bool = False,
           per_channel: bool = False) -> StatefulSequential:
    torch.manual_seed(seed)
    fc = nn.Linear(N_IN, N).double()
    with torch.no_grad():
        fc.weight.normal_(0.0, 0.8)
        fc.bias.normal_(0.3, 0.2)
    cell = NEURONS[neuron].example((N,), per_channel).double()
    rec = Recurrent(cell, _recurrence(kind, seed + 1), bias_at_start=bias_at_start)
    return StatefulSequential(fc, rec, nn.Linear(N, N_OUT).double())


def _inputs(seed: int = 1, n: int = N_IN) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0.3, 1.0, (T, B, n)))


def _states(model: StatefulSequential, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The recurrent layer's output and its neuron's states, [T, B, N] each."""
    state = None
    outs, trace = [], {}
    with torch.no_grad():
        for xt in x:
            _, state = model(xt, state)
            rec: RecurrentState = state[1]
            outs.append(rec.out)
            for f in rec.neuron._fields:
                trace.setdefault(f, []).append(getattr(rec.neuron, f))
    return torch.stack(outs), {f: torch.stack(v) for f, v in trace.items()}


@pytest.mark.parametrize("kind", RECURRENCE)
@pytest.mark.parametrize("neuron", NEURON_KINDS)
def test_the_reference_after_a_file_round_trip_equals_the_layer(neuron, kind, tmp_path):
    model = _model(neuron, kind, seed=NEURON_KINDS.index(neuron))
    graph = nirbridge.to_nir(model, torch.zeros(1, N_IN, dtype=torch.float64))
    assert nirbridge.graph.feedback_edges(graph) == [("recurrent_1.w_rec",
                                                     "recurrent_1.neuron")]
    w_rec = graph.nodes["recurrent_1.w_rec"]
    want_type = {"all_to_all": nir.Affine, "all_to_all_no_bias": nir.Linear,
                 "one_to_one": nir.Scale}[kind]
    assert type(w_rec) is want_type
    assert type(graph.nodes["recurrent_1.neuron"]).__name__ == neuron
    path = tmp_path / "rec.nir"
    nirbridge.write(path, graph)
    back = nirbridge.read(path)
    x = _inputs()
    spikes, states = _states(model, x)
    with torch.no_grad():
        want = run_steps(model, x)
    got, records = run_reference(back, x, record=True)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    rec = records["recurrent_1.neuron"]
    assert torch.equal(rec.output, spikes), f"{neuron}/{kind}: spikes differ"
    for f, v in states.items():
        torch.testing.assert_close(rec.states[f], v, rtol=0, atol=1e-9, msg=f"{neuron}.{f}")
    if NEURONS[neuron].spiking:
        rate = float(spikes.mean())
        assert 0.02 < rate < 0.98, f"{neuron}/{kind}: firing rate {rate:.2f}"


@pytest.mark.parametrize("kind", RECURRENCE)
def test_per_channel_parameters_and_a_layer_that_starts_the_model(kind):
    torch.manual_seed(3)
    cell = NEURONS["ALIF"].example((N,), True).double()
    model = StatefulSequential(Recurrent(cell, _recurrence(kind, 4)),
                               nn.Linear(N, N_OUT).double())
    graph = nirbridge.to_nir(model, torch.zeros(1, N, dtype=torch.float64))
    x = _inputs(n=N) * 2
    with torch.no_grad():
        want = run_steps(model, x)
    np.testing.assert_array_equal(run_reference(graph, x).numpy(), want.numpy())


def test_the_recurrent_bias_first_counts_at_t1():
    rec = Recurrent(LIF(tau=2.0, v_threshold=100.0), _recurrence("all_to_all", 0)).double()
    x = torch.zeros(1, N, dtype=torch.float64)
    _, s0 = rec(x)
    assert torch.equal(s0.neuron.v, torch.zeros_like(x))  # nothing at t = 0
    _, s1 = rec(x, s0)
    assert rec.recurrent is not None
    # v = v + (dt/tau)(-v + b): spikes were zero, the bias alone enters at t = 1
    torch.testing.assert_close(s1.neuron.v[0], 0.5 * rec.recurrent.bias.detach(),
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("fold", [True, False])
def test_bias_at_start_exports_the_bias_on_the_feed_forward_path(fold):
    """snnTorch's convention: the recurrent bias also at t = 0. Exported as a recurrent
    Linear and the bias added to the Linear before the layer (``fold``), or a node
    ``<rec>.bias`` where the layer starts the model."""
    torch.manual_seed(5)
    cell = NEURONS["LIF"].example((N,), False).double()
    rec = Recurrent(cell, _recurrence("all_to_all", 6), bias_at_start=True)
    if fold:
        model = _model("LIF", "all_to_all", 7, bias_at_start=True)
        n_in = N_IN
    else:
        model = StatefulSequential(rec, nn.Linear(N, N_OUT).double())
        n_in = N
    graph = nirbridge.to_nir(model, torch.zeros(1, n_in, dtype=torch.float64))
    name = "recurrent_1" if fold else "recurrent_0"
    assert isinstance(graph.nodes[f"{name}.w_rec"], nir.Linear)
    assert (f"{name}.bias" in graph.nodes) is not fold
    x = _inputs(n=n_in) * 1.5
    with torch.no_grad():
        want = run_steps(model, x)
    got = run_reference(graph, x)
    # folded: W·x + (b_ff + b) against (W·x + b_ff) + b, equal to rounding; spikes equal
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_bptt_trains_through_the_recurrence():
    torch.manual_seed(0)
    model = _model("ARLIF", "all_to_all", 2)
    x = _inputs()
    out = run_steps(model, x)
    loss = out.pow(2).mean()
    loss.backward()
    rec = model[1]
    assert rec.recurrent is not None and rec.recurrent.weight.grad is not None
    assert float(rec.recurrent.weight.grad.abs().sum()) > 0
    one = _model("KLIF", "one_to_one", 3)
    run_steps(one, x).sum().backward()
    assert one[1].weight.grad is not None and float(one[1].weight.grad.abs().sum()) > 0
    # the gradient of an early step's output reaches through the feedback
    two = _model("LIF", "one_to_one", 4)
    state = None
    xs = x.clone().requires_grad_(True)
    outs = []
    for xt in xs:
        y, state = two(xt, state)
        outs.append(y)
    outs[-1].sum().backward()
    assert float(xs.grad[0].abs().sum()) > 0


def test_refusals_name_the_problem():
    with pytest.raises(InvalidParameterError, match="square"):
        Recurrent(LIF(), nn.Linear(3, 4))
    with pytest.raises(InvalidParameterError, match="NeuronModule"):
        Recurrent(nn.ReLU(), nn.Linear(3, 3))  # type: ignore[arg-type]
    model = StatefulSequential(nn.Conv1d(1, 2, 3), Recurrent(LIF(), nn.Linear(4, 4)))
    with pytest.raises(UnsupportedLayerError, match="1-d neuron layer"):
        nirbridge.to_nir(model, torch.zeros(1, 1, 6))
