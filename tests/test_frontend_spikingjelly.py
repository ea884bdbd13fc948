"""SpikingJelly (``activation_based``) models and files through nirbridge, exactly.

Direct route: every neuron variant (IFNode, LIFNode, ParametricLIFNode, KLIFNode; hard
and soft reset, ``v_reset`` 0 and not, ``decay_input`` on and off) in step modes ``s``
and ``m`` is exported with :func:`nirbridge.to_nir`, written and read back, and the
float64 reference equals SpikingJelly's own forward over T = 20 steps: spikes identical,
``v`` within 1e-9 (a neuron alone: ``v`` identical, bit for bit). Layer wrappers,
batch-norm, dropout and containers likewise. File route: a file written by SpikingJelly's
``export_to_nir``, read with :func:`~nirbridge.export.frontends.spikingjelly.from_file`,
equals SpikingJelly's ``import_from_nir`` of it. Lava floating_pt equals the reference on
one graph holding every neuron kind. Unsupported modules name the module, SpikingJelly and
the route that works.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from torch import nn

import nirbridge
from nirbridge.errors import InvalidParameterError, UnsupportedLayerError
from nirbridge.neurons import is_neuron

pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: E402
from spikingjelly.activation_based.nir_exchange import (  # noqa: E402
    export_to_nir,
    import_from_nir,
)

from nirbridge.export.frontends import spikingjelly as sj_frontend  # noqa: E402

T, B, N_IN, N_HID, N_OUT = 20, 3, 6, 10, 5
MODES = ("s", "m")
#: The graphs' dt: SpikingJelly's neurons count steps, so any dt is exact; 1e-3 rather
#: than 1 because at dt = 1 every σ(w) has a standard nir.LIF (dt/(dt/σ) == σ there).
DT = 1e-3


def _plif_w_without_standard_node() -> float:
    """A PLIF weight whose σ(w) no τ reproduces through NIR's dt/τ (at :data:`DT`)."""
    for w in np.linspace(-1.0, 1.0, 2001):
        # the node's w is float32 (SpikingJelly's), then the model is made float64
        q = float(torch.sigmoid(torch.tensor(w, dtype=torch.float32).double()))
        if DT / (DT / q) != q:
            return float(w)
    raise AssertionError("no such w")  # pragma: no cover


def _plif(w: float | None = None, **kw) -> neuron.ParametricLIFNode:
    node = neuron.ParametricLIFNode(**kw)
    if w is not None:
        with torch.no_grad():
            node.w.fill_(w)
    return node


def _klif(k: float, **kw) -> neuron.KLIFNode:
    node = neuron.KLIFNode(**kw)
    with torch.no_grad():
        node.k.fill_(k)
    return node


#: variant → (a factory of the SpikingJelly node, the node types it may export as)
VARIANTS = {
    "if": (lambda: neuron.IFNode(v_threshold=0.8), {"IF"}),
    "if_v_reset": (lambda: neuron.IFNode(v_threshold=0.8, v_reset=-0.1), {"IF"}),
    "if_soft": (lambda: neuron.IFNode(v_threshold=0.8, v_reset=None), {"DALIF"}),
    "lif": (lambda: neuron.LIFNode(tau=3.0, v_threshold=0.6), {"SJLIF"}),
    "lif_tau2_v_reset": (lambda: neuron.LIFNode(tau=2.0, v_threshold=0.6, v_reset=-0.1,
                                                detach_reset=True), {"LIF"}),
    "lif_soft": (lambda: neuron.LIFNode(tau=3.0, v_threshold=0.6, v_reset=None), {"SJLIF"}),
    "lif_soft_tau4": (lambda: neuron.LIFNode(tau=4.0, v_threshold=0.6, v_reset=None),
                      {"SubtractiveLIF"}),
    "lif_no_decay_input": (lambda: neuron.LIFNode(tau=3.0, decay_input=False,
                                                  v_threshold=1.5, v_reset=0.1), {"SJLIF"}),
    "lif_soft_no_decay_input": (lambda: neuron.LIFNode(tau=2.0, decay_input=False,
                                                       v_threshold=1.5, v_reset=None),
                                {"SJLIF"}),
    "plif_tau2": (lambda: _plif(init_tau=2.0, v_threshold=0.6), {"LIF"}),
    "plif_trained": (lambda: _plif(_plif_w_without_standard_node(), v_threshold=0.6),
                     {"SJPLIF"}),
    "plif_soft": (lambda: _plif(init_tau=3.0, v_threshold=0.6, v_reset=None),
                  {"SubtractiveLIF", "SJPLIF"}),
    "plif_no_decay_input": (lambda: _plif(init_tau=3.0, decay_input=False, v_threshold=1.5,
                                          v_reset=-0.1), {"SJPLIF"}),
    "klif": (lambda: _klif(1.3, tau=3.0, v_threshold=0.6), {"KLIF"}),
    "klif_soft": (lambda: _klif(0.8, tau=3.0, v_threshold=0.4, v_reset=None), {"KLIF"}),
    "klif_scale_reset": (lambda: _klif(1.2, scale_reset=True, tau=2.0, decay_input=False,
                                       v_threshold=1.0), {"KLIF"}),
}


# --------------------------------------------------------------------------- helpers
def _boost(net: nn.Module, seed: int) -> nn.Module:
    """Random weights strong enough that every layer spikes, in float64, in eval mode
    (what to_nir exports: batch-norm statistics, no dropout)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.normal_(0.0, 1.5 / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.uniform_(0.1, 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.8, 1.5)
                m.bias.uniform_(0.0, 0.3)
    return net.double().eval()


def _nodes(net: nn.Module) -> list[nn.Module]:
    """The SpikingJelly neurons of ``net``, in order, recording ``v`` at every step."""
    nodes = [m for m in net.modules() if isinstance(m, neuron.BaseNode)]
    for m in nodes:
        m.store_v_seq = True
    return nodes


def _run_sj(net: nn.Module, x: torch.Tensor, mode: str) -> tuple[torch.Tensor, list]:
    """SpikingJelly's own forward over ``x`` [T, B, ...] from reset: spikes and every
    neuron's ``v`` [T, B, ...] (its ``v_seq``, the ``v`` after each step)."""
    nodes = _nodes(net)
    functional.reset_net(net)
    with torch.no_grad():
        out = net(x) if mode == "m" else torch.stack([net(xt) for xt in x])
    for m in nodes:  # the last step's v is node.v itself
        assert torch.equal(m.v_seq[-1], m.v)
    return out, [m.v_seq for m in nodes]


def _export(net: nn.Module, x: torch.Tensor, tmp_path, dt: float = DT) -> nir.NIRGraph:
    graph = nirbridge.to_nir(net, x[0], dt=dt)
    path = tmp_path / "model.nir"
    nirbridge.write(path, graph)
    return nirbridge.read(path)


def _neuron_names(graph: nir.NIRGraph) -> list[str]:
    return [n for n, v in graph.nodes.items() if is_neuron(v)]


def _check(graph: nir.NIRGraph, x: torch.Tensor, want: torch.Tensor, vs: list,
           exact_v: bool = False) -> None:
    got, records = nirbridge.run(graph, x, record=True)
    assert torch.equal(got, want), "reference spikes differ from SpikingJelly's"
    names = _neuron_names(graph)
    assert len(names) == len(vs)
    for name, v in zip(names, vs, strict=True):
        mine = records[name].states["v"]
        if exact_v:
            assert torch.equal(mine, v), f"{name}: v differs from SpikingJelly's"
        else:
            torch.testing.assert_close(mine, v, rtol=0, atol=1e-9, msg=name)


def _mlp(make, mode: str, seed: int = 0) -> nn.Module:
    net = nn.Sequential(layer.Linear(N_IN, N_HID), make(), layer.Linear(N_HID, N_OUT), make())
    functional.set_step_mode(net, mode)
    return _boost(net, seed)


def _inputs(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0.3, 1.0, (T, B, *shape)))


# ----------------------------------------------------------------------- direct route
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_neuron_variant_equals_spikingjelly(variant, mode, tmp_path):
    make, types = VARIANTS[variant]
    net = _mlp(make, mode)
    x = _inputs(N_IN)
    want, vs = _run_sj(net, x, mode)
    assert 0.02 < float(want.mean()) < 0.98, f"{variant}: firing rate {float(want.mean())}"
    graph = _export(net, x, tmp_path)
    kinds = {type(graph.nodes[n]).__name__ for n in _neuron_names(graph)}
    assert kinds <= types, f"{variant} exported as {kinds}"
    _check(graph, x, want, vs)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_neuron_alone_is_exact_to_the_last_bit(variant, tmp_path):
    make, _ = VARIANTS[variant]
    net = nn.Sequential(make()).double()
    x = 1.5 * _inputs(N_HID, seed=3)
    want, vs = _run_sj(net, x, "s")
    assert want.sum() > 0
    _check(_export(net, x, tmp_path), x, want, vs, exact_v=True)


def test_nirs_own_lif_step_is_not_exact_where_sjlif_is_used():
    """Why τ = 3 needs the SJLIF node: NIR LIF's (dt/τ)·(...) is not SpikingJelly's (...)/τ."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(100_000, generator=g, dtype=torch.float64)
    x = torch.randn(100_000, generator=g, dtype=torch.float64)
    sj = v + (x - v) / 3.0
    nir_lif = v + (1.0 / 3.0) * (0.0 - v + 1.0 * x)
    assert not torch.equal(sj, nir_lif)


@pytest.mark.parametrize("mode", MODES)
def test_conv_model_with_layer_wrappers_and_batchnorm(mode, tmp_path):
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1), layer.BatchNorm2d(4),
        neuron.LIFNode(tau=3.0, v_threshold=0.5),
        layer.AvgPool2d(2), layer.Dropout(0.3), layer.Flatten(),
        layer.Linear(4 * 4 * 4, N_OUT), layer.Dropout(0.2),
        _plif(init_tau=3.0, decay_input=False, v_threshold=1.0, v_reset=None),
    )
    functional.set_step_mode(net, mode)
    net = _boost(net, seed=4)
    x = _inputs(2, 8, 8)
    want, vs = _run_sj(net, x, mode)
    assert 0.02 < float(want.mean()) < 0.98
    graph = _export(net, x, tmp_path)
    kinds = [type(v).__name__ for v in graph.nodes.values()]
    assert "AvgPool2d" in kinds and "Flatten" in kinds and "BatchNorm2d" not in kinds
    _check(graph, x, want, vs)  # batch-norm folded into the conv: v to ~1e-15


@pytest.mark.parametrize("mode", MODES)
def test_max_pooling_of_spikes(mode, tmp_path):
    from nirbridge.export.tables import MAPPED_MODULES

    if nn.MaxPool2d not in MAPPED_MODULES:
        pytest.skip("this nirbridge does not export max pooling of spikes")
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1), neuron.IFNode(v_threshold=0.8),
        layer.MaxPool2d(2), layer.Flatten(), layer.Linear(4 * 4 * 4, N_OUT),
        neuron.LIFNode(tau=2.0, v_threshold=0.5),
    )
    functional.set_step_mode(net, mode)
    net = _boost(net, seed=10)
    x = _inputs(2, 8, 8)
    want, vs = _run_sj(net, x, mode)
    assert 0.02 < float(want.mean()) < 0.98
    _check(_export(net, x, tmp_path), x, want, vs)
    graded = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), layer.MaxPool2d(2)).double()
    with pytest.raises(UnsupportedLayerError, match="MaxPool2d"):
        nirbridge.to_nir(graded, x[0])


def test_multi_step_containers(tmp_path):
    net = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)),
        neuron.IFNode(v_threshold=0.8, step_mode="m"),
        layer.SeqToANNContainer(nn.AvgPool2d(2), nn.Flatten()),
        layer.MultiStepContainer(nn.Linear(4 * 4 * 4, N_HID),
                                 neuron.LIFNode(tau=2.0, v_threshold=0.6)),
        layer.StepModeContainer(False, "m", layer.Linear(N_HID, N_OUT)),
        layer.StepModeContainer(True, "m", _klif(1.1, tau=3.0, v_threshold=0.5)),
    )
    net = _boost(net, seed=5)
    x = _inputs(2, 8, 8)
    want, vs = _run_sj(net, x, "m")
    assert 0.02 < float(want.mean()) < 0.98
    _check(_export(net, x, tmp_path), x, want, vs)


def test_a_lone_node_and_a_float32_model_export():
    graph = nirbridge.to_nir(neuron.LIFNode(tau=2.0), torch.zeros(1, 3))
    assert [type(v).__name__ for v in graph.nodes.values()] == ["Input", "LIF", "Output"]
    node = graph.nodes[_neuron_names(graph)[0]]
    assert node.metadata["compare"] == ">=" and "v_init" not in node.metadata
    net = nn.Sequential(layer.Linear(3, 4), neuron.LIFNode(tau=3.0, v_threshold=0.3))
    graph = nirbridge.to_nir(net, torch.zeros(1, 3))
    lif = graph.nodes[_neuron_names(graph)[0]]
    # the parameters are SpikingJelly's Python floats, not their float32 rounding
    np.testing.assert_array_equal(lif.v_threshold, np.full(4, 0.3))


def test_to_nir_leaves_the_spikingjelly_model_unchanged():
    net = _mlp(VARIANTS["lif"][0], "m")
    before = [type(m) for m in net.modules()]
    nirbridge.to_nir(net, torch.zeros(1, N_IN, dtype=torch.float64))
    assert [type(m) for m in net.modules()] == before
    assert net[1].step_mode == "m"


# ------------------------------------------------------------------------- file route
def _sj_file(tmp_path, dt: float | None = None) -> tuple[nn.Module, object]:
    net = nn.Sequential(
        layer.Linear(N_IN, N_HID), neuron.LIFNode(tau=3.0, v_threshold=0.6),
        layer.Linear(N_HID, N_HID), neuron.IFNode(v_threshold=0.8, v_reset=0.1),
        layer.Linear(N_HID, N_HID), neuron.LIFNode(tau=2.0, decay_input=False,
                                                   v_threshold=1.5, v_reset=-0.1),
        layer.Linear(N_HID, N_OUT), _plif(init_tau=3.0, v_threshold=0.6),
    )
    net = _boost(net, seed=6)
    path = tmp_path / "sj.nir"
    kw = {} if dt is None else {"dt": dt}
    nir.write(path, export_to_nir(net, torch.zeros(1, N_IN, dtype=torch.float64), **kw))
    return net, path


def _run_sj_import(path, x: torch.Tensor, dt: float) -> tuple[torch.Tensor, list]:
    gm = import_from_nir(path, dt=dt, dtype=torch.float64)
    state, outs, vs = None, [], []
    with torch.no_grad():
        for xt in x:
            y, state = gm(xt, state)
            outs.append(y)
            vs.append({k: s[0].clone() for k, s in state.items() if isinstance(s, tuple)})
    names = sorted(vs[0], key=lambda k: int(k.strip("_")))
    return torch.stack(outs), [torch.stack([v[k] for v in vs]) for k in names]


@pytest.mark.parametrize("dt", [None, 1e-3])
def test_a_spikingjelly_file_reads_as_spikingjelly_reads_it(dt, tmp_path):
    _, path = _sj_file(tmp_path, dt)
    step = sj_frontend.DT if dt is None else dt
    graph, notes = sj_frontend.from_file(nirbridge.read(path), dt)
    assert graph.metadata["dt"] == step and sj_frontend.DT == 1e-4
    assert any("IFNode" in n and "r = 1/dt dropped" in n for n in notes)
    kinds = [type(graph.nodes[n]).__name__ for n in _neuron_names(graph)]
    assert kinds[1] == "IF" and kinds[2] == "SJLIF"
    x = _inputs(N_IN, seed=7)
    want, vs = _run_sj_import(path, x, step)
    assert 0.02 < float(want.mean()) < 0.98
    _check(graph, x, want, vs)
    # the file route's result is a nirbridge file like any other
    out = tmp_path / "read.nir"
    nirbridge.write(out, graph)
    assert torch.equal(nirbridge.run(nirbridge.read(out), x), want)


def test_the_plain_nir_reading_of_a_spikingjelly_file_is_not_spikingjellys(tmp_path):
    _, path = _sj_file(tmp_path)
    x = _inputs(N_IN, seed=7)
    want, _ = _run_sj_import(path, x, sj_frontend.DT)
    plain = nirbridge.read(path)  # IF r = 1/dt = 1e4: v ← v + 1e4·x
    assert not torch.equal(nirbridge.run(plain, x, dt=sj_frontend.DT), want)


def _file(node: nir.NIRNode, n: int = 3) -> nir.NIRGraph:
    return nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([n])), "n": node,
                               "output": nir.Output(output_type=np.array([n]))},
                        edges=[("input", "n"), ("n", "output")], type_check=False)


def test_the_file_route_refuses_what_spikingjelly_cannot_read():
    ones = np.ones(3)
    cases = [
        (nir.IF(r=ones, v_threshold=ones, v_reset=0 * ones), InvalidParameterError,
         "r = 1/dt"),
        (nir.LIF(tau=3e-4 * ones, r=2 * ones, v_leak=0 * ones, v_threshold=ones,
                 v_reset=0 * ones), InvalidParameterError, "r = 1"),
        (nir.LIF(tau=3e-4 * ones, r=ones, v_leak=0 * ones,
                 v_threshold=np.array([1.0, 2.0, 1.0]), v_reset=0 * ones),
         InvalidParameterError, "one value per layer"),
        (nir.LIF(tau=1e-4 * ones, r=ones, v_leak=0 * ones, v_threshold=ones,
                 v_reset=0 * ones), InvalidParameterError, "tau/dt > 1"),
        (nir.CubaLIF(tau_syn=2e-4 * ones, tau_mem=3e-4 * ones, r=3 * ones, v_leak=0 * ones,
                     v_threshold=ones, v_reset=0 * ones, w_in=2 * ones),
         UnsupportedLayerError, "CUBALIFNode"),
        (nir.LI(tau=ones, r=ones, v_leak=0 * ones), UnsupportedLayerError,
         "does not read this node type"),
    ]
    for node, error, text in cases:
        with pytest.raises(error, match=text):
            sj_frontend.from_file(_file(node))


# ------------------------------------------------------------------- what is refused
def test_unsupported_modules_name_module_framework_and_route():
    liaf = neuron.LIAFNode(torch.relu, False, tau=2.0)
    cases = [
        (liaf, "LIAFNode", "analog value"),
        (layer.ElementWiseRecurrentContainer(neuron.IFNode(), element_wise_function=torch.add),
         "ElementWiseRecurrentContainer", "recurrent"),
        (neuron.LIFNode(surrogate_function=surrogate.ATan(spiking=False)), "LIFNode",
         "Heaviside"),
        (neuron.KLIFNode(scale_reset=True, v_reset=None), "KLIFNode", "last bit"),
        (neuron.CUBALIFNode(), "CUBALIFNode", "no exact"),
        (layer.Conv3d(1, 2, 3), "Conv3d", "Conv1d and Conv2d only"),
        (layer.SynapseFilter(), "SynapseFilter", "no exact equivalent"),
    ]
    from nirbridge.export.tables import MAPPED_MODULES

    if nn.MaxPool2d not in MAPPED_MODULES:
        cases.append((layer.MaxPool2d(2), "MaxPool2d", "max pooling"))
    for module, cls, why in cases:
        net = nn.Sequential(nn.Identity(), module)
        with pytest.raises(UnsupportedLayerError) as err:
            nirbridge.to_nir(net, torch.zeros(1, 1, 4, 4, 4))
        msg = str(err.value)
        assert f"1 ({cls})" in msg and "a SpikingJelly module" in msg, msg
        assert why in msg and "nirbridge exports SpikingJelly's IFNode" in msg, msg


# ------------------------------------------------------------------------------ Lava
@pytest.mark.lava
def test_lava_floating_pt_equals_the_reference(tmp_path):
    net = nn.Sequential(
        layer.Linear(N_IN, N_HID), neuron.IFNode(v_threshold=0.8, v_reset=-0.1),
        layer.Linear(N_HID, N_HID), neuron.LIFNode(tau=3.0, v_threshold=0.6, v_reset=None),
        layer.Linear(N_HID, N_HID), neuron.LIFNode(tau=2.0, v_threshold=0.6, v_reset=0.1),
        layer.Linear(N_HID, N_HID), _plif(init_tau=3.0, decay_input=False, v_threshold=1.5),
        layer.Linear(N_HID, N_HID), _plif(_plif_w_without_standard_node(), v_threshold=0.6),
        layer.Linear(N_HID, N_OUT), _klif(1.3, tau=3.0, v_threshold=0.6),
    )
    net = _boost(net, seed=8)
    x = _inputs(N_IN, seed=9)
    want, _ = _run_sj(net, x, "s")
    graph = _export(net, x, tmp_path)
    kinds = {type(graph.nodes[n]).__name__ for n in _neuron_names(graph)}
    assert {"IF", "SJLIF", "LIF", "SJPLIF", "KLIF"} <= kinds
    ref = nirbridge.run(graph, x)
    assert torch.equal(ref, want)
    from nirbridge.backends.lava import run_lava

    res = run_lava(graph, x.numpy(), "floating_pt", timeout_s=300)
    out = res.outputs["output"] if isinstance(res.outputs, dict) else res.outputs
    np.testing.assert_array_equal(out, ref.numpy())
