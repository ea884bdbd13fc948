"""Norse models through nirbridge: the direct route (``nirbridge.to_nir`` on Norse cells)
and the file route (``from_file``: Norse's own reading of the files its exporter writes).

Every comparison is against Norse's own forward in float64 over T ≥ 16 steps, from the
state Norse returns: spikes identical, states (v, i) within 1e-9.
"""

from __future__ import annotations

import logging

import nir
import numpy as np
import pytest
import torch
from torch import nn

import nirbridge
from nirbridge.backends.reference import run_reference
from nirbridge.errors import UnsupportedLayerError
from nirbridge.export.frontends import frontend

norse = pytest.importorskip("norse.torch")

T, B, N_IN, N = 24, 3, 5, 7
TOL = 1e-9


@pytest.fixture(autouse=True)
def _quiet_norse():
    # Norse's from_nir logs a warning per ignored parameter; the tests check the notes
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _lin(n_in: int, n_out: int, seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(n_in, n_out)
    with torch.no_grad():
        lin.weight.normal_(0.0, 1.0)
        lin.bias.normal_(0.5, 0.2)
    return lin


def _inputs(seed: int = 1, n: int = N_IN) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, n, generator=g, dtype=torch.float64) * 2


def _span(lo: float, hi: float, n: int = N, dtype: torch.dtype = torch.float32):
    return torch.linspace(lo, hi, n, dtype=dtype)


def _norse_run(model: nn.Module, x: torch.Tensor):
    """Norse's forward step by step: outputs [T, ...] and the state after every step."""
    state, outs, states = None, [], []
    with torch.no_grad():
        for xt in x:
            y, state = model(xt, state)
            outs.append(y)
            states.append(list(state) if isinstance(state, list) else state)
    return torch.stack(outs), states


def _export(model: nn.Module, x: torch.Tensor, dt: float, tmp_path) -> nir.NIRGraph:
    graph = nirbridge.to_nir(model, x[0], dt=dt)
    path = tmp_path / "model.nir"
    nirbridge.write(path, graph)
    return nirbridge.read(path)


def _neurons(graph: nir.NIRGraph) -> list[str]:
    from nirbridge.neurons import is_neuron
    from nirbridge.passes import topological_order

    return [n for n in topological_order(graph) if is_neuron(graph.nodes[n])]


def _check_states(rec, norse_states: list, field_map: dict[str, str], what: str) -> None:
    for norse_field, ours in field_map.items():
        want = torch.stack([torch.as_tensor(getattr(s, norse_field)).double()
                            .expand_as(rec.output[0]) for s in norse_states])
        err = float((rec.states[ours] - want).abs().max())
        assert err <= TOL, f"{what}: state {ours} differs by {err:g}"


# ----------------------------------------------------------------- the direct route
def _variants():
    f64 = torch.float64
    return {
        # LIFCell: per-neuron float32 parameters (Norse's default dtype), v_leak, v_reset
        "LIFCell": (lambda: norse.LIFCell(norse.LIFParameters(
            tau_syn_inv=_span(150, 250), tau_mem_inv=_span(80, 120),
            v_th=torch.tensor(0.06), v_leak=torch.tensor(0.01),
            v_reset=torch.tensor(-0.02))), 1e-3, "NorseLIF", {"v": "v", "i": "i"}),
        # float64 parameters, another surrogate, a graph dt that is not the cell's
        "LIFCell-f64-dt1": (lambda: norse.LIFCell(norse.LIFParameters(
            tau_syn_inv=_span(150, 250, dtype=f64), tau_mem_inv=_span(80, 120, dtype=f64),
            v_th=torch.tensor(0.06, dtype=f64), method="tanh")), 1.0, "NorseLIF",
            {"v": "v", "i": "i"}),
        "LICell": (lambda: norse.LICell(norse.LIParameters(
            tau_syn_inv=_span(150, 250), tau_mem_inv=_span(80, 120),
            v_leak=torch.tensor(0.1))), 1e-3, "NorseLI", {"v": "v", "i": "i"}),
        "LIFBoxCell": (lambda: norse.LIFBoxCell(norse.LIFBoxParameters(
            tau_mem_inv=_span(80, 160), v_th=torch.tensor(0.3), v_leak=torch.tensor(0.05),
            v_reset=torch.tensor(-0.1), method="heaviside")), 1e-3, "LIF", {"v": "v"}),
        "LIFBoxCell-subtract": (lambda: norse.LIFBoxCell(norse.LIFBoxParameters(
            tau_mem_inv=_span(80, 160), v_th=torch.tensor(0.3),
            reset_method=norse.reset_subtract)), 1e-3, "SubtractiveLIF", {"v": "v"}),
        "LIBoxCell": (lambda: norse.LIBoxCell(norse.LIBoxParameters(
            tau_mem_inv=_span(80, 160), v_leak=torch.zeros(N))), 1e-3, "LI", {"v": "v"}),
        "LIBoxCell-leak": (lambda: norse.LIBoxCell(norse.LIBoxParameters(
            tau_mem_inv=_span(80, 160), v_leak=torch.tensor(0.2))), 1e-3, "NorseLI",
            {"v": "v"}),
        "IAFCell": (lambda: norse.IAFCell(norse.IAFParameters(
            v_th=torch.tensor(1.5), v_reset=torch.tensor(0.2))), 1e-3, "IF", {"v": "v"}),
    }


@pytest.mark.parametrize("variant", sorted(_variants()))
def test_each_cell_equals_norse_in_a_sequential_state(variant, tmp_path):
    make, dt, node_type, fields = _variants()[variant]
    model = norse.SequentialState(_lin(N_IN, N, seed=3), make()).double()
    x = _inputs()
    want, states = _norse_run(model, x)
    graph = _export(model, x, dt, tmp_path)
    (name,) = _neurons(graph)
    assert type(graph.nodes[name]).__name__ == node_type
    out, rec = run_reference(graph, x, record=True)
    if node_type in ("NorseLI", "LI"):
        assert float((out - want).abs().max()) <= TOL, variant
    else:
        assert torch.equal(out, want), f"{variant}: spikes differ from Norse's"
        assert 0.05 < float(want.mean()) < 0.95, f"{variant}: rate {float(want.mean()):.2f}"
    _check_states(rec[name], [s[1] for s in states], fields, variant)


def test_lifcell_is_not_nir_cubalif_and_norse_writes_it_as_one():
    # Norse's own exporter writes LIFCell as a CubaLIF (w_in = 1): NIR's CubaLIF at the
    # cell's dt is not what the cell computed; nirbridge's NorseLIF is
    p = norse.LIFParameters(tau_syn_inv=_span(150, 250), tau_mem_inv=_span(80, 120),
                            v_th=torch.full((N,), 0.06), v_leak=torch.zeros(N))
    model = norse.SequentialState(_lin(N_IN, N, seed=3), norse.LIFCell(p)).double()
    x = _inputs()
    want, _ = _norse_run(model, x)
    written = norse.to_nir(model, x[0])
    assert isinstance(written.nodes["1"], nir.CubaLIF)
    ours = nirbridge.to_nir(model, x[0], dt=1e-3)
    assert torch.equal(run_reference(ours, x), want)
    cuba = nir.NIRGraph(nodes={k: v for k, v in written.nodes.items()},
                        edges=written.edges, metadata={"dt": 1e-3}, type_check=False)
    cuba.nodes["input"] = nir.Input(input_type={"input": np.array([N_IN])})
    cuba.nodes["output"] = nir.Output(output_type={"output": np.array([N])})
    assert not torch.equal(run_reference(cuba, x), want)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:96] / 16.0, dtype=torch.float32).unsqueeze(1)
    return x, torch.tensor(d.target[:96])


class DigitsNet(nn.Module):
    """Conv → LIFCell → Flatten → Linear → LICell, stepped by the user's own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.lif = norse.LIFCell(norse.LIFParameters(
            tau_syn_inv=torch.full((4, 1, 1), 200.0), tau_mem_inv=torch.full((4, 1, 1), 100.0),
            v_th=torch.tensor(0.3)))
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 6 * 6, 10)
        self.out = norse.LICell(norse.LIParameters(tau_mem_inv=torch.tensor(50.0)))

    def forward(self, x, state=None):
        s1, s2 = (None, None) if state is None else state
        z, s1 = self.lif(self.conv(x), s1)
        v, s2 = self.out(self.fc(self.flat(z)), s2)
        return v, (s1, s2)


def test_a_norse_model_trained_on_digits_exports_exactly(tmp_path):
    torch.manual_seed(0)
    net = DigitsNet()
    x, y = _digits()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(15):  # constant-current input for 16 steps; read-out: max over time
        state, vs = None, []
        for _t in range(16):
            v, state = net(x * 4, state)
            vs.append(v)
        loss = nn.functional.cross_entropy(torch.stack(vs).max(0).values, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net = net.double()
    xs = (x[:8].double() * 4).expand(16, -1, -1, -1, -1).contiguous()
    want, states = _norse_run(net, xs)
    graph = _export(net, xs, 1e-3, tmp_path)
    assert [type(graph.nodes[n]).__name__ for n in _neurons(graph)] == ["NorseLIF", "NorseLI"]
    out, rec = run_reference(graph, xs, record=True)
    assert float((out - want).abs().max()) <= TOL
    lif, li = _neurons(graph)
    spikes = rec[lif].output
    assert 0.02 < float(spikes.mean()) < 0.98
    _check_states(rec[lif], [s[0] for s in states], {"v": "v", "i": "i"}, "LIFCell")
    _check_states(rec[li], [s[1] for s in states], {"v": "v", "i": "i"}, "LICell")


@pytest.mark.lava
def test_lava_floating_pt_equals_the_reference_on_every_norse_cell(tmp_path):
    from nirbridge.backends.lava import run_lava

    cells = [norse.LIFCell(norse.LIFParameters(tau_syn_inv=_span(150, 250, 6),
                                               tau_mem_inv=_span(80, 120, 6),
                                               v_th=torch.tensor(0.06),
                                               v_leak=torch.tensor(0.01))),
             norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=_span(80, 160, 6),
                                                     v_th=torch.tensor(0.1),
                                                     v_leak=torch.tensor(0.05))),
             norse.IAFCell(norse.IAFParameters(v_th=torch.tensor(0.5),
                                               v_reset=torch.tensor(0.2))),
             norse.LIBoxCell(norse.LIBoxParameters(tau_mem_inv=_span(80, 160, 6),
                                                   v_leak=torch.tensor(0.2))),
             norse.LICell(norse.LIParameters(tau_mem_inv=_span(80, 120, 6)))]
    layers: list[nn.Module] = []
    for k, cell in enumerate(cells):
        layers += [_lin(N_IN if k == 0 else 6, 6, seed=10 + k), cell]
    model = norse.SequentialState(*layers).double()
    x = _inputs(n=N_IN)[:16]
    graph = _export(model, x, 1e-3, tmp_path)
    types = [type(graph.nodes[n]).__name__ for n in _neurons(graph)]
    assert types == ["NorseLIF", "LIF", "IF", "NorseLI", "NorseLI"]
    want, rec = run_reference(graph, x, record=True)
    res = run_lava(graph, x.numpy(), "floating_pt", record=True, timeout_s=300)
    for name in _neurons(graph)[:3]:
        spikes = rec[name].output.numpy()
        assert 0 < spikes.mean() < 1, f"{name}: no activity"
        np.testing.assert_array_equal(np.asarray(res.records[name].output), spikes,
                                      err_msg=f"{name}: Lava floating_pt spikes")
    np.testing.assert_allclose(np.asarray(res.outputs), want.numpy(), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------ refusals
def _refused():
    return {
        "LSNNRecurrentCell": lambda: norse.LSNNRecurrentCell(N, N),
        "LSNNCell": lambda: norse.LSNNCell(),
        "LIFAdExCell": lambda: norse.LIFAdExCell(),
        "IzhikevichCell": lambda: norse.IzhikevichCell(norse.tonic_spiking),
        "LIF": lambda: norse.LIF(),
        "Lift": lambda: norse.Lift(nn.Linear(N, N)),
    }


@pytest.mark.parametrize("module", sorted(_refused()))
def test_unsupported_norse_modules_name_module_framework_and_route(module):
    model = norse.SequentialState(nn.Linear(N_IN, N), _refused()[module]())
    with pytest.raises(UnsupportedLayerError) as err:
        nirbridge.to_nir(model, torch.zeros(1, N_IN))
    text = str(err.value)
    assert f"1 ({module})" in text and "a Norse module" in text, text
    assert "LIFCell, LIFBoxCell, LICell, LIBoxCell, IAFCell and LIFRecurrentCell" in text, text
    why = {"LIFAdExCell": "exp((v − v_th)/Δ_T)",
           "LSNNRecurrentCell": "its recurrence would export", "LIF": "LIFCell(p, dt=...)",
           "Lift": "whole sequence"}.get(module, "no exact NIR node")
    assert why in text, text


def test_sequential_state_returning_hidden_layers_is_refused():
    model = norse.SequentialState(nn.Linear(N_IN, N), norse.LIFCell(), return_hidden=True)
    with pytest.raises(UnsupportedLayerError, match="return_hidden=True"):
        nirbridge.to_nir(model, torch.zeros(1, N_IN))


# ---------------------------------------------------------------------- the file route
def _file_model(v_leak: float) -> nn.Module:
    # time constants that Norse's reading (a factor 1/tau_inv·dt⁻¹ larger per step) keeps
    # stable; per-neuron parameters, which the stock NIR writer needs
    dt = 1e-3
    lif = norse.LIFParameters(tau_syn_inv=_span(0.3, 0.6), tau_mem_inv=_span(0.2, 0.5),
                              v_th=torch.full((N,), 0.1), v_leak=torch.full((N,), v_leak))
    box = norse.LIFBoxParameters(tau_mem_inv=_span(0.2, 0.5, 4), v_th=torch.full((4,), 0.2),
                                 v_leak=torch.full((4,), v_leak))
    iaf = norse.IAFParameters(v_th=torch.full((3,), 0.5))
    return norse.SequentialState(_lin(N_IN, N, 5), norse.LIFCell(lif, dt=dt), _lin(N, 4, 6),
                                 norse.LIFBoxCell(box, dt=dt), _lin(4, 3, 7),
                                 norse.IAFCell(iaf, dt=dt))


def _norse_file(model: nn.Module, x: torch.Tensor, tmp_path) -> nir.NIRGraph:
    path = tmp_path / "norse.nir"
    nir.write(path, norse.to_nir(model, x[0]))  # as Norse users do
    return nirbridge.read(path)


def _run_norse_reading(graph: nir.NIRGraph, x: torch.Tensor):
    """``norse.torch.from_nir(graph)`` in float64: outputs and every node's per-step
    output and state (Norse's GraphExecutorState)."""
    model = norse.from_nir(graph).double()
    state, outs, caches, states = None, [], [], []
    with torch.no_grad():
        for xt in x:
            y, state = model(xt, state)
            outs.append(y)
            caches.append(dict(state.cache))
            states.append(dict(state.state))
    return torch.stack(outs), caches, states


@pytest.mark.parametrize("v_leak", [0.0, 0.1])
def test_a_norse_file_read_with_from_file_equals_norse_from_nir(v_leak, tmp_path):
    model = _file_model(v_leak).double()
    x = _inputs()
    graph = _norse_file(model, x, tmp_path)
    ours, notes = frontend("norse").from_file(graph)
    assert ours.metadata["dt"] == 1e-3 and any("float32" in n for n in notes)
    want, caches, states = _run_norse_reading(graph, x)
    out, rec = run_reference(ours, x, record=True)
    assert torch.equal(out, want), "output spikes differ from Norse's reading"
    for name in ("1", "3", "5"):  # every neuron layer, spike for spike
        norse_out = torch.stack([c[name] for c in caches]).double()
        assert torch.equal(rec[name].output, norse_out), name
        assert 0.02 < float(norse_out.mean()) < 0.98, f"{name}: rate {norse_out.mean():.2f}"
    # states: the CubaLIF's synapse and membrane, the LIFBoxCell's v
    syn = torch.stack([s["1"][0][0].v for s in states]).double()
    mem = torch.stack([s["1"][0][1].v for s in states]).double()
    if v_leak == 0:
        assert type(ours.nodes["1"]).__name__ == "CubaLIF"
        ours_syn = rec["1"].states["i"]
    else:
        assert type(ours.nodes["1_synapse"]).__name__ == "NorseLI"
        assert any("leaks to v_leak" in n for n in notes)
        ours_syn = rec["1_synapse"].states["v"]
    assert float((ours_syn - syn).abs().max()) <= TOL
    assert float((rec["1"].states["v"] - mem).abs().max()) <= TOL
    box = torch.stack([s["3"][0].v for s in states]).double()
    assert float((rec["3"].states["v"] - box).abs().max()) <= TOL


def test_norse_reading_of_its_file_is_not_the_original_model(tmp_path):
    # where Norse's reading differs from the model it exported (the README says so):
    # tau = dt/tau_inv written, 1/tau read back at dt again, so each per-step factor is
    # tau_inv instead of dt·tau_inv; and LIFCell comes back as a leaky synapse + LIFBoxCell
    model = _file_model(0.0).double()
    x = _inputs()
    original, _ = _norse_run(model, x)
    graph = _norse_file(model, x, tmp_path)
    reading, _, _ = _run_norse_reading(graph, x)
    assert not torch.equal(reading, original)


def test_readme_dt_rule_gives_norse_reading_not_the_original(tmp_path):
    # A file of LIFBoxCells only (no LIFCell): read as plain NIR at --dt 0.001 it is
    # Norse's reading; the original model is the file at dt = cell dt × export dt (1e-6)
    cell_dt = 1e-3
    box = norse.LIFBoxParameters(tau_mem_inv=_span(100, 400), v_th=torch.full((N,), 0.2),
                                 v_leak=torch.zeros(N))
    model = norse.SequentialState(_lin(N_IN, N, 5), norse.LIFBoxCell(box, dt=cell_dt)).double()
    x = _inputs()
    original, _ = _norse_run(model, x)
    graph = _norse_file(model, x, tmp_path)
    reading, _, _ = _run_norse_reading(graph, x)
    ours, _ = frontend("norse").from_file(graph)
    assert torch.equal(run_reference(ours, x), reading)
    as_nir_1e3 = run_reference(graph, x, dt=1e-3)
    assert torch.equal(as_nir_1e3, reading)  # Norse reads float32, the file holds float32
    assert not torch.equal(as_nir_1e3, original)
    as_nir_1e6 = run_reference(graph, x, dt=cell_dt * 1e-3)
    assert torch.equal(as_nir_1e6, original) and float(original.mean()) > 0.05


def test_norse_cannot_read_its_own_li_export_and_from_file_says_how_it_reads_it(tmp_path):
    li = norse.LIBoxParameters(tau_mem_inv=_span(0.2, 0.5, 3), v_leak=torch.zeros(3))
    model = norse.SequentialState(_lin(N_IN, 3, 5), norse.LIBoxCell(li),
                                  _lin(3, 2, 6)).double()
    x = _inputs()
    graph = _norse_file(model, x, tmp_path)
    assert isinstance(graph.nodes["1"], nir.LI)
    try:  # Norse maps LI to nothing; its executor then starts at the input or after the LI
        _, caches, _ = _run_norse_reading(graph, x)
    except (RuntimeError, ValueError):
        pass
    else:
        assert "1" not in caches[0], "Norse's reading ran the LI layer"
    ours, notes = frontend("norse").from_file(graph)
    assert any("does not read LI" in n for n in notes)
    # read as Norse reads LIF: an LIBoxCell(tau_mem_inv = 1/tau) at dt 1e-3
    as_norse = norse.SequentialState(
        model[0], norse.LIBoxCell(norse.LIBoxParameters(
            tau_mem_inv=1 / torch.from_numpy(np.asarray(graph.nodes["1"].tau)).float(),
            v_leak=torch.zeros(3))), model[2])
    want, _ = _norse_run(as_norse, x)
    assert float((run_reference(ours, x) - want).abs().max()) <= TOL


def test_from_file_refuses_what_norse_cannot_read():
    fe = frontend("norse")
    base = {"input": nir.Input(input_type={"input": np.array([4])}),
            "output": nir.Output(output_type={"output": np.array([4])})}
    pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                         padding=np.array([0, 0]))
    graph = nir.NIRGraph(nodes={**base, "p": pool}, edges=[("input", "p"), ("p", "output")],
                         type_check=False)
    with pytest.raises(UnsupportedLayerError, match="'p' \\(AvgPool2d\\).*does not read"):
        fe.from_file(graph)
    flat = nir.Flatten(input_type={"input": np.array([2, 2])}, start_dim=0)
    graph = nir.NIRGraph(nodes={**base, "f": flat}, edges=[("input", "f"), ("f", "output")],
                         type_check=False)
    with pytest.raises(UnsupportedLayerError, match="batch axis"):
        fe.from_file(graph)
