"""Recurrent layers of the frameworks (issue 10, part 5): snnTorch's ``RLeaky`` and
``RSynaptic`` and Norse's ``LIFRecurrentCell`` through :func:`nirbridge.to_nir`, and the
files snnTorch's own ``export_to_nir`` writes for them.

Direct route: reference (after a file round trip) = the framework's forward in float64
over T = 40 steps: spikes identical, states within 1e-9 (the recurrent input is summed in
another association, ``x + (W·s + b)`` against ``(x + b) + W·s``: equal to rounding).

File route (snnTorch): snnTorch 1.0's own ``import_from_nir`` crashes on a recurrent file;
``from_file`` reads it as NIR defines it, which is what ``norse.torch.from_nir`` computes on
an ``RSynaptic`` (CubaLIF) file, spike for spike, and what the snnTorch model computed where
its conventions are NIR's (immediate reset to zero, no recurrent bias at t = 0).
"""

from __future__ import annotations

import logging
from typing import Any

import nir
import numpy as np
import pytest
import torch
from torch import nn

import nirbridge
from nirbridge.backends.reference import run_reference
from nirbridge.errors import UnsupportedLayerError
from nirbridge.export.frontends import frontend
from nirbridge.graph import feedback_edges

snn = pytest.importorskip("snntorch")
from snntorch.export_nir import export_to_nir  # noqa: E402
from snntorch.import_nir import import_from_nir  # noqa: E402

# the frameworks' own exporters and readers call nirtorch's old entry points
pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.*deprecated:DeprecationWarning")

T, B, N_IN, H, N_OUT = 40, 2, 5, 8, 3
TOL = 1e-9
FE = frontend("snntorch")


def _inputs(seed: int = 0, n: int = N_IN, scale: float = 1.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, n, generator=g, dtype=torch.float64) * scale


def _round_trip(graph: nir.NIRGraph, tmp_path) -> nir.NIRGraph:
    path = tmp_path / "model.nir"
    nirbridge.write(path, graph)
    return nirbridge.read(path)


# ===================================================================== snnTorch, direct
def _to_double(module: nn.Module, args: Any, out: Any) -> Any:
    return tuple(o.double() for o in out) if isinstance(out, tuple) else out.double()


def _float64(model: nn.Module) -> nn.Module:
    """``model`` in float64, its spikes too: snnTorch's spike function returns float32, and
    the float32 spikes it keeps would meet the float64 recurrent Linear."""
    model.double()
    for m in model.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.register_forward_hook(_to_double)
        if isinstance(m, (snn.RLeaky, snn.RSynaptic)):
            m.recurrent.register_forward_pre_hook(
                lambda mod, args: tuple(a.double() for a in args))
    return model


def _rneuron(cls: str, recurrence: str, *, hidden: bool, reset: str = "subtract",
             delay: bool = True, seed: int = 0, learn: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    kw: dict[str, Any] = dict(threshold=0.5, init_hidden=hidden, reset_mechanism=reset,
                              reset_delay=delay, learn_recurrent=learn)
    if recurrence == "all_to_all":
        kw["linear_features"] = H
    else:
        kw.update(all_to_all=False, V=torch.linspace(-0.4, 0.6, H))
    if cls == "RLeaky":
        neuron = snn.RLeaky(beta=torch.linspace(0.6, 0.9, H), **kw)
    else:
        neuron = snn.RSynaptic(alpha=0.7, beta=torch.linspace(0.6, 0.9, H), **kw)
    if recurrence == "all_to_all":
        with torch.no_grad():
            neuron.recurrent.weight.normal_(0.0, 0.4)
            neuron.recurrent.bias.normal_(0.05, 0.2)
    return neuron


class _Net(nn.Module):
    """fc → recurrent snnTorch neuron → fc, one step per call."""

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        self.fc1 = nn.Linear(N_IN, H)
        self.lif = neuron
        self.fc2 = nn.Linear(H, N_OUT)
        self.hidden = neuron.init_hidden
        self.synaptic = isinstance(neuron, snn.RSynaptic)

    def forward(self, x: torch.Tensor, state: Any = None):
        cur = self.fc1(x)
        if self.hidden:
            return self.fc2(self.lif(cur))
        if self.synaptic:
            spk, syn, mem = self.lif.init_rsynaptic() if state is None else state
            spk, syn, mem = self.lif(cur, spk, syn, mem)
            return self.fc2(spk), (spk, syn, mem)
        spk, mem = self.lif.init_rleaky() if state is None else state
        spk, mem = self.lif(cur, spk, mem)
        return self.fc2(spk), (spk, mem)


def _run_snntorch(model: _Net, x: torch.Tensor):
    """snnTorch's forward over ``x``: outputs, the recurrent layer's spikes and states."""
    model.lif.reset_mem()
    outs, spikes, states = [], [], {"v": [], "syn": []}
    carried: Any = None
    with torch.no_grad():
        for xt in x:
            if model.hidden:
                y = model(xt)
                mem, syn = model.lif.mem, getattr(model.lif, "syn", None)
                spk = model.lif.spk.double()
            else:
                # the first step from zero spikes, as init_rleaky's empty tensors become
                if carried is None:
                    zeros = torch.zeros(B, H, dtype=torch.float64)
                    carried = (zeros, zeros, zeros) if model.synaptic else (zeros, zeros)
                y, carried = model(xt, carried)
                spk, mem = carried[0], carried[-1]
                syn = carried[1] if model.synaptic else None
            outs.append(y)
            spikes.append(spk)
            states["v"].append(mem.clone())
            if syn is not None:
                states["syn"].append(syn.clone())
    return (torch.stack(outs), torch.stack(spikes),
            {k: torch.stack(v) for k, v in states.items() if v})


def _check(graph: nir.NIRGraph, model: _Net, x: torch.Tensor, neuron_type: str) -> None:
    want, spikes, states = _run_snntorch(model, x)
    assert type(graph.nodes["lif.neuron"]).__name__ == neuron_type
    assert feedback_edges(graph) == [("lif.w_rec", "lif.neuron")]
    out, records = run_reference(graph, x, record=True)
    rec = records["lif.neuron"]
    assert torch.equal(rec.output, spikes), "recurrent layer: spikes differ from snnTorch's"
    rate = float(spikes.mean())
    assert 0.05 < rate < 0.95, f"firing rate {rate:.2f}: the comparison would be empty"
    for field, value in states.items():
        err = float((rec.states[field] - value).abs().max())
        assert err <= TOL, f"lif.{field}: |reference − snnTorch| = {err:g}"
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("hidden", [True, False], ids=["init_hidden", "explicit_state"])
@pytest.mark.parametrize("recurrence", ["all_to_all", "one_to_one"])
@pytest.mark.parametrize("cls", ["RLeaky", "RSynaptic"])
def test_snntorch_recurrent_neurons_equal_snntorch(cls, recurrence, hidden, tmp_path):
    model = _float64(_Net(_rneuron(cls, recurrence, hidden=hidden, seed=3)))
    x = _inputs(1)
    graph = _round_trip(nirbridge.to_nir(model, x[0], dt=1e-3), tmp_path)
    w_rec = graph.nodes["lif.w_rec"]
    if recurrence == "all_to_all":
        # snnTorch's recurrent bias counts at t = 0: it moved into fc1's bias
        assert isinstance(w_rec, nir.Linear) and "lif.bias" not in graph.nodes
        lin = model.lif.recurrent
        np.testing.assert_array_equal(graph.nodes["fc1"].bias,
                                      (model.fc1.bias + lin.bias).detach().numpy())
    else:
        assert isinstance(w_rec, nir.Scale)
        np.testing.assert_array_equal(w_rec.scale, model.lif.V.detach().numpy())
    _check(graph, model, x, "SnnTorchLeaky" if cls == "RLeaky" else "SnnTorchSynaptic")


@pytest.mark.parametrize("reset,delay", [("subtract", False), ("zero", True),
                                         ("zero", False), ("none", True)])
@pytest.mark.parametrize("cls", ["RLeaky", "RSynaptic"])
def test_snntorch_recurrent_resets_equal_snntorch(cls, reset, delay, tmp_path):
    """Every reset; ``RSynaptic`` with ``reset_delay=False`` computes the delayed reset
    (snnTorch 1.0 drops its immediate reset), and it fails with init_hidden, so it runs
    with explicit states."""
    hidden = not (cls == "RSynaptic" and not delay)
    model = _float64(_Net(_rneuron(cls, "all_to_all", hidden=hidden, reset=reset,
                                   delay=delay, seed=5)))
    x = _inputs(2, scale=1.0 if reset == "none" else 1.5)
    graph = _round_trip(nirbridge.to_nir(model, x[0]), tmp_path)
    node = graph.nodes["lif.neuron"]
    assert node.reset_delay == (delay or cls == "RSynaptic")
    _check(graph, model, x, type(node).__name__)


def test_a_trained_snntorch_recurrent_network_equals_snntorch(tmp_path):
    """Learnable recurrence, β and threshold, trained by BPTT in snnTorch, then exported."""
    torch.manual_seed(11)
    neuron = snn.RSynaptic(alpha=0.8, beta=0.85, threshold=0.6, linear_features=H,
                           init_hidden=True, learn_beta=True, learn_threshold=True,
                           learn_recurrent=True)
    model = _Net(neuron)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    x = _inputs(7).float()
    target = torch.rand(T, B, N_OUT, generator=torch.Generator().manual_seed(8))
    for _ in range(3):
        model.lif.reset_mem()
        loss = sum(((model(xt) - yt) ** 2).mean() for xt, yt in zip(x, target, strict=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.lif.recurrent.weight.grad is not None
    model = _float64(model)
    graph = _round_trip(nirbridge.to_nir(model, x[0].double()), tmp_path)
    _check(graph, model, x.double(), "SnnTorchSynaptic")


def test_a_convolutional_snntorch_recurrence_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1),
                          snn.RLeaky(beta=0.9, conv2d_channels=2, kernel_size=3,
                                     init_hidden=True))
    with pytest.raises(UnsupportedLayerError) as err:
        nirbridge.to_nir(model, torch.zeros(1, 1, 4, 4))
    text = str(err.value)
    assert "1 (RLeaky)" in text and "snnTorch" in text and "Conv2d" in text, text
    assert "linear_features" in text and "all_to_all=False" in text, text


# ======================================================================= snnTorch, file
def _braille_like(seed: int = 0) -> nn.Module:
    """The NIR paper's Braille network in small: fc → RSynaptic (all-to-all) → fc →
    Synaptic, snnTorch's per-neuron parameters (its exporter needs vectors)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(N_IN, H),
        snn.RSynaptic(alpha=torch.full((H,), 0.8), beta=torch.full((H,), 0.85),
                      threshold=torch.full((H,), 0.5), linear_features=H, init_hidden=True,
                      reset_mechanism="zero"),
        nn.Linear(H, N_OUT),
        snn.Synaptic(alpha=torch.full((N_OUT,), 0.7), beta=torch.full((N_OUT,), 0.8),
                     threshold=torch.full((N_OUT,), 0.5), init_hidden=True, output=True,
                     reset_mechanism="zero", reset_delay=False))


def _consistent(one_to_one: bool, seed: int = 0) -> nn.Module:
    """An ``RLeaky`` network whose conventions are NIR's: reset to zero at the spike
    (``reset_delay=False``), no recurrent bias (one-to-one, or a zero bias)."""
    torch.manual_seed(seed)
    kw: dict[str, Any] = (dict(all_to_all=False, V=torch.linspace(-0.3, 0.5, H))
                          if one_to_one else dict(linear_features=H))
    rec = snn.RLeaky(beta=torch.full((H,), 0.85), threshold=torch.full((H,), 0.5),
                     init_hidden=True, reset_mechanism="zero", reset_delay=False, **kw)
    if not one_to_one:
        with torch.no_grad():
            rec.recurrent.bias.zero_()
    return nn.Sequential(
        nn.Linear(N_IN, H), rec, nn.Linear(H, N_OUT),
        snn.Synaptic(alpha=torch.full((N_OUT,), 0.7), beta=torch.full((N_OUT,), 0.8),
                     threshold=torch.full((N_OUT,), 0.5), init_hidden=True, output=True,
                     reset_mechanism="zero", reset_delay=False))


def _snntorch_file(model: nn.Module, tmp_path) -> str:
    path = str(tmp_path / "snntorch_recurrent.nir")
    nir.write(path, export_to_nir(model, torch.rand(N_IN)))
    return path


def _snntorch_spikes(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """snnTorch's own forward (float32, as trained): output and recurrent-layer spikes."""
    for m in model.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_mem()
    hidden: list[torch.Tensor] = []
    hook = model[1].register_forward_hook(lambda mod, i, o: hidden.append(o))
    with torch.no_grad():
        out = torch.stack([model(xt)[0] for xt in x])
    hook.remove()
    return out, torch.stack(hidden)


def _norse_spikes(path: str, x: torch.Tensor, dt: float) -> torch.Tensor:
    norse = pytest.importorskip("norse.torch")
    logging.disable(logging.WARNING)  # one warning per parameter Norse ignores
    try:
        model = norse.from_nir(nir.read(path), dt=dt)
    finally:
        logging.disable(logging.NOTSET)
    state, outs = None, []
    with torch.no_grad():
        for xt in x:
            y, state = model(xt, state)
            outs.append(y)
    return torch.stack(outs)


def test_snntorchs_own_reader_crashes_on_its_recurrent_files(tmp_path, capsys):
    path = _snntorch_file(_braille_like(), tmp_path)
    with pytest.raises(AttributeError, match="'GraphModule' object has no attribute 'items'"):
        import_from_nir(nir.read(path))


def test_a_snntorch_rsynaptic_file_reads_as_norse_reads_it(tmp_path, capsys):
    model = _braille_like(1)
    path = _snntorch_file(model, tmp_path)
    graph, notes = FE.from_file(nirbridge.read(path))
    assert graph.metadata["dt"] == FE.DT == 1e-4
    assert any("import_from_nir crashes" in n and "as NIR defines it" in n for n in notes)
    assert isinstance(graph.nodes["1.lif"], nir.CubaLIF)
    assert feedback_edges(graph) == [("1.w_rec", "1.lif")]
    x = _inputs(3, scale=1.2).float()
    got, records = run_reference(graph, x.double(), record=True)
    want = _norse_spikes(path, x, dt=FE.DT)
    assert 0.05 < float(records["1.lif"].output.mean()) < 0.95
    assert 0 < float(want.mean()) < 1
    assert torch.equal(got, want.double()), "reference ≠ norse.torch.from_nir on the file"

    # ... and not what the snnTorch model computed: its RSynaptic resets one step late
    # (snnTorch 1.0 ignores reset_delay=False there) and adds the recurrent bias at t = 0
    out, hidden = _snntorch_spikes(model, x)
    assert not torch.equal(records["1.lif"].output, hidden.double())


@pytest.mark.parametrize("one_to_one", [False, True], ids=["all_to_all", "one_to_one"])
def test_a_snntorch_rleaky_file_equals_the_model_where_conventions_agree(one_to_one,
                                                                        tmp_path, capsys):
    model = _consistent(one_to_one, 2)
    path = _snntorch_file(model, tmp_path)
    graph, _ = FE.from_file(nirbridge.read(path))
    x = _inputs(4, scale=1.2).float()
    got, records = run_reference(graph, x.double(), record=True)
    want, hidden = _snntorch_spikes(model, x)
    assert 0.05 < float(hidden.mean()) < 0.95
    assert torch.equal(records["1.lif"].output, hidden.double())
    assert torch.equal(got, want.double())
    # Norse reads nir.LIF ignoring its r (snnTorch writes r = 1/(1 − β)): not this reading
    assert not torch.equal(_norse_spikes(path, x, dt=FE.DT).double(), got)


def test_run_from_snntorch_on_a_recurrent_file(tmp_path, capsys):
    from nirbridge.cli import main

    model = _braille_like(1)
    path = _snntorch_file(model, tmp_path)
    x = _inputs(3, scale=1.2).float()
    np.save(tmp_path / "x.npy", x.double().numpy())
    out = tmp_path / "o.npz"
    assert main(["run", path, "--input", str(tmp_path / "x.npy"), "--from", "snntorch",
                 "-o", str(out)]) == 0
    assert "import_from_nir crashes" in capsys.readouterr().out
    with np.load(out) as z:
        assert float(z["dt"]) == FE.DT
        np.testing.assert_array_equal(z["output"], _norse_spikes(path, x, FE.DT).numpy())


# ============================================================================== Norse
def _norse_model(autapses: bool, seed: int = 0) -> nn.Module:
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(seed)
    p = norse.LIFParameters(tau_syn_inv=torch.linspace(150, 250, H),
                            tau_mem_inv=torch.linspace(80, 120, H), v_th=torch.tensor(0.3),
                            v_leak=torch.tensor(0.05), v_reset=torch.tensor(-0.05))
    cell = norse.LIFRecurrentCell(N_IN, H, p, autapses=autapses)
    return norse.SequentialState(nn.Linear(3, N_IN), cell, nn.Linear(H, N_OUT)).double()


@pytest.mark.parametrize("autapses", [False, True])
def test_norse_lif_recurrent_cell_equals_norse(autapses, tmp_path):
    model = _norse_model(autapses, seed=4)
    x = _inputs(5, n=3, scale=3.0)
    graph = _round_trip(nirbridge.to_nir(model, x[0], dt=1e-3), tmp_path)
    name = "lifrecurrentcell_1"
    assert [type(graph.nodes[f"{name}.{k}"]).__name__ for k in ("w_in", "neuron", "w_rec")] \
        == ["Linear", "NorseLIF", "Linear"]
    assert feedback_edges(graph) == [(f"{name}.w_rec", f"{name}.neuron")]
    w_rec = graph.nodes[f"{name}.w_rec"].weight
    assert (np.diag(w_rec) == 0).all() != autapses
    state, outs, spikes, vs, cur = None, [], [], [], []
    with torch.no_grad():
        for xt in x:
            y, state = model(xt, state)
            outs.append(y)
            spikes.append(state[1].z)
            vs.append(state[1].v)
            cur.append(state[1].i)
    got, records = run_reference(graph, x, record=True)
    rec = records[f"{name}.neuron"]
    assert torch.equal(rec.output, torch.stack(spikes)), "spikes differ from Norse's"
    assert 0.05 < float(rec.output.mean()) < 0.95
    for field, want in (("v", vs), ("i", cur)):
        err = float((rec.states[field] - torch.stack(want).double()).abs().max())
        assert err <= TOL, f"{field}: |reference − Norse| = {err:g}"
    torch.testing.assert_close(got, torch.stack(outs), rtol=0, atol=1e-12)


def test_norse_recurrent_cells_without_an_exact_neuron_are_refused():
    norse = pytest.importorskip("norse.torch")
    model = norse.SequentialState(nn.Linear(N_IN, H), norse.LSNNRecurrentCell(H, H))
    with pytest.raises(UnsupportedLayerError, match="no exact NIR node"):
        nirbridge.to_nir(model, torch.zeros(1, N_IN))
    model = norse.SequentialState(nn.Linear(N_IN, H), norse.LIFRecurrent(H, H))
    with pytest.raises(UnsupportedLayerError, match="LIFRecurrentCell"):
        nirbridge.to_nir(model, torch.zeros(1, N_IN))


# =============================================================================== Lava
class _TwoRecurrentLayers(nn.Module):
    """nirbridge's Recurrent (one-to-one ALIF) and snnTorch's RLeaky (all-to-all, its bias
    moved forward) in a row."""

    def __init__(self) -> None:
        from nirbridge.layers import Recurrent
        from nirbridge.neurons import NEURONS

        super().__init__()
        self.fc1 = nn.Linear(N_IN, H)
        self.rec = Recurrent(NEURONS["ALIF"].example((H,), False),
                             torch.linspace(-0.3, 0.4, H))
        self.fc2 = nn.Linear(H, H)
        self.rleaky = snn.RLeaky(beta=0.8, threshold=0.5, linear_features=H,
                                 init_hidden=True)
        self.fc3 = nn.Linear(H, N_OUT)

    def forward(self, x: torch.Tensor, state: Any = None):
        s, state = self.rec(self.fc1(x), state)
        return self.fc3(self.rleaky(self.fc2(s))), state


def _lava_graph() -> tuple[nir.NIRGraph, torch.Tensor]:
    torch.manual_seed(21)
    x = _inputs(9)[:32]
    return nirbridge.to_nir(_TwoRecurrentLayers().double(), x[0], dt=1e-3), x


def _lava_refuses_recurrence() -> str:
    """The Lava floating_pt backend's reasons not to run the test graph ('' when none)."""
    from nirbridge.backends import get

    graph = _lava_graph()[0]
    try:
        return "; ".join(get("lava-float").check(graph))
    except ImportError as exc:
        return f"Lava is not installed ({exc})"


@pytest.mark.lava
@pytest.mark.skipif(bool(_lava_refuses_recurrence()),
                    reason=f"Lava floating_pt: {_lava_refuses_recurrence()}")
def test_lava_floating_pt_equals_the_reference_on_recurrent_front_ends():
    from nirbridge.backends.lava import run_lava

    graph, x = _lava_graph()
    want, records = nirbridge.run(graph, x, record=True)
    for name in ("rec.neuron", "rleaky.neuron"):
        assert 0 < float(records[name].output.mean()) < 1, name
    res = run_lava(graph, x.numpy(), "floating_pt", timeout_s=300)
    np.testing.assert_array_equal(res.outputs, want.numpy())


@pytest.mark.lava
def test_lava_runs_the_snntorch_rsynaptic_file_float_exactly_and_fixed_as_the_integer_model(
        tmp_path):
    """The Braille-like RSynaptic file (snnTorch's own export, read as NIR defines it):
    Lava floating_pt = the reference spike for spike; Lava fixed_pt = the integer executor
    integer for integer, and its spikes agree with the reference as stated below."""
    from nirbridge.backends.lava import lower, run_lava
    from nirbridge.quantize import QuantConfig, run_fixed_point

    graph, _ = FE.from_file(nirbridge.read(_snntorch_file(_braille_like(1), tmp_path)))
    x = _inputs(3, scale=1.2).double()[:, :2]
    want, records = run_reference(graph, x, record=True)
    assert 0.05 < float(records["1.lif"].output.mean()) < 0.95
    res = run_lava(graph, x.numpy(), "floating_pt", timeout_s=300, record=["1.lif"])
    np.testing.assert_array_equal(res.outputs, want.numpy())
    np.testing.assert_array_equal(res.records["1.lif"].output.numpy(),
                                  records["1.lif"].output.numpy())
    net = lower(graph, "fixed_pt", quant=QuantConfig.from_profile("loihi2", input_frac_bits=8))
    gold_out, gold = run_fixed_point(net.quant, x.numpy())
    fixed = run_lava(net, x.numpy(), record=True, timeout_s=300)
    np.testing.assert_array_equal(fixed.fixed_records["1.lif"].output, gold["1.lif"].output)
    np.testing.assert_array_equal(fixed.outputs, gold_out)
    agree = float(np.mean(gold["1.lif"].output == records["1.lif"].output.numpy()))
    assert agree >= 0.95, f"fixed-point spikes agree {agree:.3f} with the reference"
