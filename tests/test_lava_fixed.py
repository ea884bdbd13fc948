"""Lava fixed_pt backend against the integer golden model (nirbridge.quantize).

The golden model is :func:`nirbridge.quantize.run_fixed_point`; its stock-LIF arithmetic
is itself checked against Lava's ``PyLifModelBitAcc`` in test_fixed_point.py. A fixed_pt
Lava run of the same quantized graph must give the same integers step for step: spikes,
neuron inputs ``a_in`` and every state (``u``/``v`` of Lava's own LIF, read by reference;
``v``, ``m``, ``b``, ``z`` of nirbridge's integer Processes), synapse outputs, saturation
counts. Networks are tiny (≤ 16 neurons per layer, T ≤ 10, B ≤ 2).

Tests marked ``lava`` run Lava; the others check the lowering without starting anything.
"""

from __future__ import annotations

import multiprocessing
import sys

import nir
import numpy as np
import pytest
import torch

import nirbridge  # installs the Lava import fix before any `import lava`
from nirbridge.backends import lava as lava_backend
from nirbridge.backends.lava import dense_weights, neuron_mapping, stock_lif_issues
from nirbridge.errors import LoweringError, QuantizationError
from nirbridge.nodes import ALIF, ARLIF, CLIF, DALIF, KLIF, SubtractiveLIF
from nirbridge.quantize import QuantConfig, quantize, run_fixed_point

T, B, N_IN, N = 10, 2, 6, 10


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _spikes(seed: int, shape: tuple[int, ...], p: float = 0.5) -> np.ndarray:
    return (_rng(seed).random(shape) < p).astype(np.float64)


def _assert_same(lava_rec, gold_rec, node: str) -> None:
    """Outputs, inputs and every state of ``node``: identical integers."""
    lr, gr = lava_rec[node], gold_rec[node]
    assert lr.output.dtype == np.int64
    np.testing.assert_array_equal(lr.output, gr.output, err_msg=f"{node}: output")
    if gr.input is not None:
        np.testing.assert_array_equal(lr.input, gr.input, err_msg=f"{node}: input")
    assert set(lr.states) == set(gr.states), node
    for k, v in gr.states.items():
        np.testing.assert_array_equal(lr.states[k], v, err_msg=f"{node}: state {k}")
    for k, v in gr.frac_bits.items():
        assert lr.frac_bits[k] == v, (node, k)


def _assert_fires(spikes: np.ndarray, node: str) -> None:
    rate = float(np.mean(spikes))
    assert 0.03 < rate < 0.95, f"{node}: firing rate {rate:.2f}; retune the test"


# --------------------------------------------------------------- (a) Lava's own LIF
def _stock_graph(seed: int = 0) -> nir.NIRGraph:
    """Input → Affine → LIF → Affine → LIF → Output, LIF parameters shared per layer so
    that each layer is exactly stock Lava LIF (scalar du, dv, vth; '>'; reset to 0)."""
    rng = _rng(seed)

    def lif(n: int, tau: float, th: float) -> nir.LIF:
        o = np.ones(n)
        return nir.LIF(tau=tau * o, r=o, v_leak=0 * o, v_threshold=th * o, v_reset=0 * o)

    n2 = 8
    nodes = {
        "input": nir.Input(input_type={"input": np.array([N_IN])}),
        "fc1": nir.Affine(weight=rng.normal(0.3, 0.8, (N, N_IN)), bias=rng.normal(0.2, 0.3, N)),
        "lif1": lif(N, 4e-3, 0.6),
        "fc2": nir.Affine(weight=rng.normal(0.3, 0.9, (n2, N)), bias=rng.normal(0.1, 0.2, n2)),
        "lif2": lif(n2, 3e-3, 0.5),
        "output": nir.Output(output_type={"output": np.array([n2])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def test_stock_lif_layers_lower_to_lavas_own_lif():
    graph = _stock_graph()
    net = lava_backend.lower(graph, "fixed_pt")
    for name in ("lif1", "lif2"):
        assert net.quant.layers[name].lava_issues == []
        assert stock_lif_issues(net.quant.layers[name]) == []
        spec = net.procs[name]
        assert spec.process == "lava.proc.lif.process:LIFReset"
        assert isinstance(spec.kwargs["du"], int) and spec.kwargs["du"] == 4095
        assert np.all(spec.kwargs["vth"] == net.quant.layers[name].params.vth)
    assert neuron_mapping(net) == {"lif1": "LIFReset", "lif2": "LIFReset"}
    custom = lava_backend.lower(graph, "fixed_pt", stock_lif=False)
    assert neuron_mapping(custom) == {"lif1": "FixedNeuron(lava_lif)",
                                      "lif2": "FixedNeuron(lava_lif)"}


@pytest.mark.lava
def test_lavas_own_lif_gives_the_golden_integers():
    graph = _stock_graph()
    x = _spikes(1, (T, B, N_IN))
    net = lava_backend.lower(graph, "fixed_pt")
    gold_out, gold = run_fixed_point(net.quant, x)
    res = lava_backend.run_lava(net, x, record=True, timeout_s=120)
    assert res.fixed_records is not None
    for name in ("lif1", "lif2"):
        _assert_fires(gold[name].output, name)
        _assert_same(res.fixed_records, gold, name)  # spikes, a_in, u and v
        np.testing.assert_array_equal(res.counts[name], gold[name].output.sum(axis=0))
    _assert_same(res.fixed_records, gold, "fc1")
    _assert_same(res.fixed_records, gold, "fc2")
    np.testing.assert_array_equal(res.outputs, gold_out)
    # real units in the float records, as the golden record's real()
    np.testing.assert_array_equal(res.records["lif1"].states["v"].numpy(),
                                  gold["lif1"].real("v"))
    assert res.saturations.get("lif1") is None  # Lava's LIF does not report saturation
    rows = {r["node"]: r for r in res.quantization}
    assert rows["lif1"]["lava_process"] == "LIFReset" and rows["lif1"]["saturated"] is None
    assert rows["fc1"]["clipped"] == 0 and rows["fc1"]["scale"]["w_exp"] == net.quant.layers[
        "fc1"].w_exp
    # one sample per Lava run, and nirbridge's integer LIF instead of Lava's: the same
    again = lava_backend.run_lava(graph, x, "fixed_pt", samples_per_run=1, stock_lif=False,
                                  record=["lif2"], timeout_s=120)
    assert again.runs == 2
    _assert_same(again.fixed_records, gold, "lif2")
    np.testing.assert_array_equal(again.outputs, gold_out)


# ------------------------------------------------------- (b) the custom integer models
def _neuron(kind: str, n: int, rng: np.random.Generator) -> nir.NIRNode:
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    ones, zeros = np.ones(n), np.zeros(n)
    if kind == "arlif":
        return ARLIF(decay=u(0.2, 0.6), v_threshold=ones, tanh_a=u(-0.5, 0.5), c=u(-2, 2))
    if kind == "arlif_memoryless":
        return ARLIF(decay=u(0.2, 0.6), v_threshold=ones, tanh_a=u(-0.5, 0.5), c=u(-2, 2),
                     memoryless_m=True, compare=">")
    if kind in ("klif_hard", "klif_soft"):
        soft = kind == "klif_soft"
        return KLIF(tau=u(1.5, 3.0), k=u(0.8, 1.5), v_threshold=ones, v_reset=u(-0.1, 0.1),
                    soft_reset=soft, scale_reset=soft)
    if kind == "dalif_soft":
        return DALIF(alpha=u(0.5, 1.5), beta=u(0.3, 0.9), v_threshold=ones, reset="soft")
    if kind == "clif":
        return CLIF(tau=np.full(n, 2.0), v_threshold=ones)
    if kind == "alif":
        return ALIF(alpha=u(0.6, 0.9), rho=u(0.8, 0.95), v_threshold=u(0.1, 0.3),
                    beta=u(0.5, 1.5))
    if kind == "sublif":
        return SubtractiveLIF(tau=u(2e-3, 8e-3), r=u(0.8, 1.5), v_leak=zeros,
                              v_threshold=u(0.5, 1.0))
    if kind == "lif>=":  # Lava's LIF arithmetic, but '>=' and per-neuron τ: not stock
        return nir.LIF(tau=u(2e-3, 8e-3), r=u(0.8, 1.5), v_leak=u(-0.1, 0.1),
                       v_threshold=u(0.5, 1.0), v_reset=u(-0.2, 0.0), metadata={"compare": ">="})
    if kind == "cubalif":
        return nir.CubaLIF(tau_syn=u(2e-3, 5e-3), tau_mem=u(3e-3, 8e-3), r=u(1.0, 2.0),
                           v_leak=zeros, v_threshold=u(0.3, 0.6), v_reset=zeros,
                           w_in=u(0.8, 1.2))
    raise ValueError(kind)


#: Integer Process (and integer model) each kind must land on.
CUSTOM = {"arlif": "FixedNeuron(arlif)", "arlif_memoryless": "FixedNeuron(arlif)",
          "klif_hard": "FixedNeuron(klif)", "klif_soft": "FixedNeuron(klif)",
          "dalif_soft": "FixedNeuron(linear_lif)", "clif": "FixedNeuron(clif)",
          "alif": "FixedNeuron(alif)", "sublif": "FixedNeuron(linear_lif)",
          "lif>=": "FixedNeuron(lava_lif)", "cubalif": "FixedNeuron(lava_lif)"}
SCALE = {"alif": 2.0, "klif_hard": 1.5, "klif_soft": 1.5, "cubalif": 1.5, "lif>=": 2.0}


def _branch_graph(kind: str, seed: int = 0) -> nir.NIRGraph:
    """Input → Affine → neuron → Output."""
    rng = _rng(seed)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([N_IN])}),
        "fc": nir.Affine(weight=rng.normal(0, 0.8, (N, N_IN)), bias=rng.normal(0.2, 0.2, N)),
        "neuron": _neuron(kind, N, rng),
        "output": nir.Output(output_type={"output": np.array([N])}),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "neuron"),
                                            ("neuron", "output")], metadata={"dt": 1e-3})


def _graded(kind: str, seed: int = 1) -> np.ndarray:
    return _rng(seed).normal(0.0, 1.0, (T, B, N_IN)) * SCALE.get(kind, 1.0)


@pytest.mark.lava
@pytest.mark.parametrize("kind", list(CUSTOM))
def test_custom_integer_models_equal_the_golden_model_step_for_step(kind):
    graph = _branch_graph(kind)
    cfg = QuantConfig.from_profile("loihi2", input_frac_bits=8)  # real-valued inputs
    x = _graded(kind)
    net = lava_backend.lower(graph, "fixed_pt", quant=cfg)
    assert neuron_mapping(net) == {"neuron": CUSTOM[kind]}
    gold_out, gold = run_fixed_point(net.quant, x)
    _assert_fires(gold["neuron"].output, kind)
    res = lava_backend.run_lava(net, x, record=True, timeout_s=120)
    _assert_same(res.fixed_records, gold, "neuron")
    _assert_same(res.fixed_records, gold, "fc")
    _assert_same(res.fixed_records, gold, "input")
    assert res.fixed_records["neuron"].saturations == gold["neuron"].saturations
    assert res.saturations["neuron"] == gold["neuron"].saturations
    np.testing.assert_array_equal(res.outputs, gold_out)
    np.testing.assert_array_equal(res.counts["neuron"], gold["neuron"].output.sum(axis=0))


@pytest.mark.lava
def test_saturation_counts_and_leaky_readout_through_the_backend_entry():
    """A DA-LIF driven out of its 24-bit range (saturation counted as the golden run
    counts it) and an LI read-out (graded, real units) via ``nirbridge.run``."""
    o = np.ones(4)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([2])}),
               "fc": nir.Affine(weight=np.full((4, 2), -100.0), bias=np.zeros(4)),
               "neuron": DALIF(alpha=o, beta=o, v_threshold=o, reset="hard"),
               "fc2": nir.Affine(weight=_rng(2).normal(0, 0.5, (3, 4)), bias=np.full(3, 0.3)),
               "li": nir.LI(tau=np.full(3, 3e-3), r=np.ones(3), v_leak=np.zeros(3)),
               "output": nir.Output(output_type={"output": np.array([3])})},
        edges=[("input", "fc"), ("fc", "neuron"), ("neuron", "fc2"), ("fc2", "li"),
               ("li", "output")], metadata={"dt": 1e-3})
    qg = quantize(graph, QuantConfig(headroom=1.0))
    x = np.ones((T, 1, 2))
    gold_out, gold = run_fixed_point(qg, x)
    assert gold["neuron"].saturations["v"] > 0
    out, records = nirbridge.run(graph, x, backend="lava", mode="fixed_pt", quant=qg,
                                 record=["neuron", "li"], timeout_s=120)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), gold_out)
    assert np.any(gold_out != 0)
    np.testing.assert_array_equal(records["li"].states["v"].numpy(), gold["li"].real("v"))
    res = lava_backend.run_lava(graph, x, "fixed_pt", target="loihi2", timeout_s=120)
    assert res.fixed_records is None and res.quantization is not None
    np.testing.assert_array_equal(res.outputs, run_fixed_point(quantize(graph), x)[0])
    res = lava_backend.run_lava(graph, x, "fixed_pt", quant=qg, timeout_s=120)
    assert res.saturations["neuron"] == gold["neuron"].saturations
    rows = {r["node"]: r for r in res.quantization}
    assert rows["neuron"]["saturated"] == gold["neuron"].n_saturations > 0
    assert rows["neuron"]["lava_process"] == "FixedNeuron(linear_lif)"


# ------------------------------------------------------------------- (c) conv network
def _conv_graph(seed: int = 3) -> nir.NIRGraph:
    """Conv → LIF (stock), Conv → LIF ('>='), a residual block (conv path + skip meeting
    at a LIF), SumPool2d → IF, AvgPool2d → Flatten → Affine → LI, and an Affine straight
    into an Output (its bias is added there)."""
    rng = _rng(seed)
    c = 3

    def conv(cin: int, cout: int, scale: float) -> nir.Conv2d:
        return nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0.05, scale, (cout, cin, 3, 3)),
                          stride=1, padding=1, dilation=1, groups=1,
                          bias=rng.normal(0.1, 0.1, cout))

    def lif(cmp: str = ">", uniform: bool = False) -> nir.LIF:
        shape = (c, 6, 6)
        tau = np.full(shape, 3.0) if uniform else rng.uniform(2.0, 4.0, shape)
        th = np.full(shape, 0.4) if uniform else rng.uniform(0.3, 0.6, shape)
        return nir.LIF(tau=tau, r=np.ones(shape), v_leak=np.zeros(shape), v_threshold=th,
                       v_reset=np.zeros(shape), metadata={"compare": cmp})

    k2 = np.array([2, 2])
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv1": conv(2, c, 0.6),
        "lif1": lif(uniform=True),
        "conv2": conv(c, c, 0.5),
        "lif2": lif(">="),
        "conv3": conv(c, c, 0.5),
        "lif3": lif(),                              # conv3 path (latency 3) + skip (latency 1)
        "sumpool": nir.SumPool2d(kernel_size=k2, stride=k2, padding=np.array([0, 0])),
        "if4": nir.IF(r=np.full((c, 3, 3), 0.7), v_threshold=np.full((c, 3, 3), 1.0),
                      v_reset=np.zeros((c, 3, 3))),
        "avgpool": nir.AvgPool2d(kernel_size=k2, stride=k2, padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([c, 3, 3])}, start_dim=0),
        "fc_a": nir.Affine(weight=rng.normal(0, 0.6, (6, c * 9)), bias=rng.normal(0, 0.1, 6)),
        "li": nir.LI(tau=np.full(6, 3.0), r=np.ones(6), v_leak=np.zeros(6)),
        "fc_o": nir.Affine(weight=rng.normal(0, 0.6, (4, c * 9)), bias=rng.normal(0, 0.5, 4)),
        "out_spikes": nir.Output(output_type={"output": np.array([c, 3, 3])}),
        "out_li": nir.Output(output_type={"output": np.array([6])}),
        "out_fc": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "conv1"), ("conv1", "lif1"), ("lif1", "conv2"), ("conv2", "lif2"),
             ("lif2", "conv3"), ("conv3", "lif3"), ("lif1", "lif3"),
             ("lif3", "sumpool"), ("sumpool", "if4"), ("if4", "out_spikes"),
             ("lif3", "avgpool"), ("avgpool", "flat"), ("flat", "fc_a"), ("fc_a", "li"),
             ("li", "out_li"), ("flat", "fc_o"), ("fc_o", "out_fc")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0})


def test_conv_lowering_structure():
    net = lava_backend.lower(_conv_graph(), "fixed_pt", sparse=True)
    assert neuron_mapping(net) == {"lif1": "LIFReset", "lif2": "FixedNeuron(lava_lif)",
                                   "lif3": "FixedNeuron(lava_lif)", "if4": "FixedNeuron(lava_lif)",
                                   "li": "FixedNeuron(lava_lif)"}
    kinds = {k: s.class_name for k, s in net.procs.items()}
    assert kinds["conv1"] == kinds["sumpool"] == "Sparse" and kinds["fc_a"] == "Dense"
    # the skip arrives 2 steps early and in spike units: delayed, then shifted to a_in bits
    assert net.procs["lif3/delay<lif1"].kwargs["delay"] == 2
    (op, shift), = net.procs["lif3/align<lif1"].kwargs["ops"]
    assert op == "shl" and shift == net.quant.layers["lif3"].in_frac
    assert net.streams["out_fc"].bias is not None  # Output bias, added by its monitor
    # weights: the golden mantissas (doubled for mixed sign, Lava drops the LSB)
    syn = net.quant.layers["fc_a"]
    np.testing.assert_array_equal(net.procs["fc_a"].kwargs["weights"], 2 * syn.mant)
    assert net.procs["fc_a"].kwargs["weight_exp"] == syn.w_exp - 1
    assert net.procs["sumpool"].kwargs["weights"].max() == 1


@pytest.mark.lava
def test_conv_pool_residual_network_equals_the_golden_model():
    graph = _conv_graph()
    x = _spikes(4, (8, B, 2, 6, 6), p=0.4)
    net = lava_backend.lower(graph, "fixed_pt", sparse=True)
    gold_out, gold = run_fixed_point(net.quant, x)
    res = lava_backend.run_lava(net, x, record=True, timeout_s=120)
    for name in ("lif1", "lif2", "lif3", "if4"):
        _assert_fires(gold[name].output, name)
    for name in gold:
        _assert_same(res.fixed_records, gold, name)
    for name, want in gold_out.items():
        np.testing.assert_array_equal(res.outputs[name], want, err_msg=name)
    assert np.any(gold_out["out_li"] != 0) and np.any(gold_out["out_fc"] != 0)


# ---------------------------------------------------------------- (d) bad input
def test_values_and_nodes_fixed_point_cannot_take_are_named():
    graph = _branch_graph("alif")
    with pytest.raises(LoweringError, match=r"'fc'.*8-bit"):
        lava_backend.lower(graph, "fixed_pt", quant=QuantConfig(weight_bits=12))
    bad = _branch_graph("alif")
    bad.nodes["fc"].weight[2, 3] = np.nan
    with pytest.raises(QuantizationError, match=r"'fc'.*NaN"):
        lava_backend.lower(bad, "fixed_pt")
    big = _branch_graph("clif")
    big.nodes["fc"].bias[:] = 1e6  # overflows the 24-bit state
    with pytest.raises(QuantizationError, match=r"'neuron'.*bias"):
        lava_backend.run_lava(big, _graded("clif"), "fixed_pt")
    scaled = _branch_graph("alif")
    scaled.nodes["sc"] = nir.Scale(scale=np.ones(N))
    scaled.edges = [("input", "fc"), ("fc", "sc"), ("sc", "neuron"), ("neuron", "output")]
    with pytest.raises(QuantizationError, match="'sc'"):
        lava_backend.lower(scaled, "fixed_pt")
    unknown = _branch_graph("alif")
    unknown.nodes["neuron"] = nir.Threshold(threshold=np.zeros(N))
    with pytest.raises(LoweringError, match="'neuron'"):
        lava_backend.lower(unknown, "fixed_pt")
    with pytest.raises(LoweringError, match="fixed_pt. only"):
        lava_backend.lower(graph, "floating_pt", quant=QuantConfig())
    with pytest.raises(LoweringError, match="not both"):
        lava_backend.run_lava(graph, _graded("alif"), "fixed_pt", quant=QuantConfig(),
                              target="loihi2")
    with pytest.raises(LoweringError, match="another graph"):
        lava_backend.lower(graph, "fixed_pt", quant=quantize(_stock_graph()))


def _dense_model():
    """Lava's bit-accurate Dense model class (importing Lava in this process)."""
    import nirbridge._lava_compat as compat

    compat.install()
    lava_mp = "lava.magma.runtime.message_infrastructure.multiprocessing"
    prev = multiprocessing.get_start_method(allow_none=True)
    if lava_mp in sys.modules or prev is None:
        return pytest.importorskip("lava.proc.dense.models").PyDenseModelBitAcc
    multiprocessing.set_start_method(None, force=True)
    try:
        return pytest.importorskip("lava.proc.dense.models").PyDenseModelBitAcc
    finally:
        multiprocessing.set_start_method(prev, force=True)


@pytest.mark.parametrize("signs", ["mixed", "excitatory", "inhibitory"])
def test_dense_weights_give_the_golden_synapse_in_lavas_dense(signs):
    """Lava's PyDenseModelBitAcc (methods run without a runtime) fed dense_weights()."""
    from nirbridge import fixed_point as fx

    model_cls = _dense_model()
    rng = _rng(5)
    mant = rng.integers(-128, 128, (7, 9))
    if signs == "excitatory":
        mant = np.abs(mant).clip(0, 127)
        mant[0, 0] = 127
    elif signs == "inhibitory":
        mant = -np.abs(mant)
        mant[0, 0] = -128  # Lava's inhibitory range stops at -255 for doubled weights

    class _Port:
        def __init__(self, v=None):
            self.v = v

        def recv(self):
            return self.v

        def send(self, v):
            self.v = v

    for w_exp in (-8, -3, 0, 2, 7):
        weights, weight_exp = dense_weights(mant, w_exp)
        for graded in (False, True):
            dense = model_cls({"weight_exp": weight_exp, "num_weight_bits": 8})
            dense.weights = np.asarray(weights, dtype=np.int32)
            dense.num_message_bits = np.array(24 if graded else 0)
            dense.a_buff = np.zeros(7, np.int32)
            s = rng.integers(-300, 300, 9) if graded else (rng.random(9) < 0.5)
            dense.s_in, dense.a_out = _Port(s), _Port()
            dense.run_spk()
            golden = fx.shift_floor(mant @ np.asarray(s, dtype=np.int64), w_exp)
            np.testing.assert_array_equal(dense.a_buff, golden, err_msg=f"{w_exp} {graded}")
