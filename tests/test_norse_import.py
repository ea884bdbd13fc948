"""A graph exported by Norse's own ``to_nir`` runs in the reference executor exactly."""

import nir
import pytest
import torch

import nirbridge
from nirbridge.backends.reference import FRAMEWORK_DT, run_reference

norse = pytest.importorskip("norse.torch")


def _norse_net(dt: float) -> torch.nn.Module:
    torch.manual_seed(3)
    # per-neuron parameters: the stock NIR writer cannot gzip the 0-d arrays of scalars
    lif = norse.LIFBoxParameters(tau_mem_inv=torch.linspace(0.2, 0.6, 7) / dt,
                                 v_th=torch.full((7,), 0.5), v_leak=torch.zeros(7))
    li = norse.LIBoxParameters(tau_mem_inv=torch.full((3,), 0.25 / dt), v_leak=torch.zeros(3))
    return norse.SequentialState(
        torch.nn.Linear(5, 7),
        norse.LIFBoxCell(lif, dt=dt),
        torch.nn.Linear(7, 3),
        norse.LIBoxCell(li, dt=dt),
    ).double()


def _norse_run(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    state, outs = None, []
    for xt in x:
        y, state = model(xt, state)
        outs.append(y)
    return torch.stack(outs)


def _write_read(graph: nir.NIRGraph, tmp_path) -> nir.NIRGraph:
    path = tmp_path / "norse.nir"
    nir.write(path, graph)  # as Norse users do: the stock NIR writer
    return nirbridge.read(path)


def test_norse_export_at_unit_dt_matches_the_norse_model(tmp_path):
    model = _norse_net(dt=1.0)
    x = torch.rand(20, 4, 5, dtype=torch.float64) * 2
    expected = _norse_run(model, x)
    graph = norse.to_nir(model, x[0], dt=1.0)
    graph = _write_read(graph, tmp_path)
    types = {type(n).__name__ for n in graph.nodes.values()}
    assert {"Affine", "LIF", "LI"} <= types
    out = run_reference(graph, x, dt=1.0)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # the LIF layer really spiked, so the comparison is not vacuous
    _, rec = run_reference(graph, x, dt=1.0, record=True)
    lif_name = next(k for k, n in graph.nodes.items() if isinstance(n, nir.LIF))
    assert rec[lif_name].output.sum() > 0


def test_norse_export_at_its_own_dt_matches_norse_running_the_graph(tmp_path):
    # Norse 1.1.0 writes tau = dt / tau_mem_inv and reads tau_mem_inv = 1 / tau, so what a
    # Norse file means is "Norse's from_nir run at dt = 1e-3": the reference must run it
    # with Norse's dt convention and agree with that run.
    dt = FRAMEWORK_DT["norse"]
    torch.manual_seed(5)
    lif1 = norse.LIFBoxParameters(tau_mem_inv=torch.linspace(0.2, 0.6, 7),
                                  v_th=torch.full((7,), 0.3), v_leak=torch.zeros(7))
    lif2 = norse.LIFBoxParameters(tau_mem_inv=torch.full((3,), 0.5),
                                  v_th=torch.full((3,), 0.2), v_leak=torch.zeros(3))
    model = norse.SequentialState(
        torch.nn.Linear(5, 7), norse.LIFBoxCell(lif1, dt=dt),
        torch.nn.Linear(7, 3), norse.LIFBoxCell(lif2, dt=dt),
    ).double()
    x = torch.rand(20, 4, 5, dtype=torch.float64) * 2
    graph = _write_read(norse.to_nir(model, x[0], dt=dt), tmp_path)
    norse_model = norse.from_nir(graph, dt=dt)  # Norse runs imported graphs in float32
    state, outs = None, []
    with torch.no_grad():
        for xt in x.float():
            y, state = norse_model(xt, state)
            outs.append(y)
    expected = torch.stack(outs).double()
    out = run_reference(graph, x, dt=dt)
    assert expected.sum() > 0  # spikes reach the output, so equality means something
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
