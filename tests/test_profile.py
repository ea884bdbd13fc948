"""Tests of nirbridge.profile: exact event counts, NeuroBench equality, pricing, profiles,
chip mapping. Expected counts are computed by hand or by explicit loops, never by the
convolution trick the module itself uses."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from nirbridge.backends.reference import run_reference
from nirbridge.errors import InputError, ProfileError
from nirbridge.profile import (
    PROFILES_DIR,
    count_events,
    count_run,
    estimate_energy,
    fanout_map,
    list_profiles,
    load_profile,
    map_to_chip,
    payload_tags,
    synapse_kind,
)

SHIPPED = ["cmos45-fp32", "cmos45-int8", "loihi", "loihi2", "truenorth", "speck",
           "xylo-audio2", "gpu-h100"]


# ------------------------------------------------------------------------------ helpers
def lif(shape, tau=2.0, r=2.0, vth=1.0):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return nir.LIF(tau=np.full(shape, tau), r=np.full(shape, r), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, vth), v_reset=np.zeros(shape))


def graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


def conv_loops(x, w, stride, pad):
    """Effective (x≠0, w≠0) pairs of a 2-D convolution by explicit loops.

    ``x``: [C, H, W]; ``w``: [F, C, K, K]. Returns (effective, dense)."""
    c_in, h, wd = x.shape
    f, _, k, _ = w.shape
    oh = (h + 2 * pad - k) // stride + 1
    ow = (wd + 2 * pad - k) // stride + 1
    eff = dense = 0
    for o in range(f):
        for oy in range(oh):
            for ox in range(ow):
                for c in range(c_in):
                    for ky in range(k):
                        for kx in range(k):
                            iy, ix = oy * stride - pad + ky, ox * stride - pad + kx
                            if 0 <= iy < h and 0 <= ix < wd:
                                dense += 1
                                if x[c, iy, ix] != 0 and w[o, c, ky, kx] != 0:
                                    eff += 1
    return eff, dense


def conv_graph(weight, hw, stride=2, pad=1, spiking_input=True):
    f = weight.shape[0]
    conv = nir.Conv2d(input_shape=hw, weight=weight, stride=stride, padding=pad, dilation=1,
                      groups=1, bias=np.zeros(f))
    oh = (hw[0] + 2 * pad - weight.shape[2]) // stride + 1
    ow = (hw[1] + 2 * pad - weight.shape[3]) // stride + 1
    nodes = {"in": nir.Input(np.array([weight.shape[1], *hw])), "conv": conv,
             "lif": lif((f, oh, ow)), "out": nir.Output(np.array([f, oh, ow]))}
    if spiking_input:  # a spiking layer in front, so the conv is AC
        nodes["pre"] = nir.IF(r=np.ones((weight.shape[1], *hw)),
                              v_threshold=np.full((weight.shape[1], *hw), 0.5),
                              v_reset=np.zeros((weight.shape[1], *hw)))
        edges = [("in", "pre"), ("pre", "conv"), ("conv", "lif"), ("lif", "out")]
    else:
        edges = [("in", "conv"), ("conv", "lif"), ("lif", "out")]
    return graph(nodes, edges)


# ------------------------------------------------------------------------ conv counting
def test_conv_3x3_pad1_stride2_hand_count():
    # 4×4 input, 3×3 kernel, padding 1, stride 2 → 2×2 output windows covering rows/cols
    # {-1..1, 1..3}. A spike at (0,0) lies in 1 window, at (1,1) in all 4: 5 pairs.
    # Dense: in-bounds window sizes 4 + 6 + 6 + 9 = 25.
    w = np.ones((1, 1, 3, 3))
    g = conv_graph(w, (4, 4))
    x = torch.zeros(1, 1, 1, 4, 4, dtype=torch.float64)  # IF passes 1.0 > 0.5 as a spike
    x[0, 0, 0, 0, 0] = 1.0
    x[0, 0, 0, 1, 1] = 1.0
    _, c = count_run(g, x)
    s = c.synapses["conv"]
    assert s.kind == "AC"
    assert s.effective == 5
    assert s.dense == 25
    assert s.synapses == 25 and s.connections == 25


def test_conv_counts_match_explicit_loops():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 2, 3, 3))
    w[rng.random(w.shape) < 0.3] = 0.0  # some zero weights
    T, B, H, W = 3, 2, 7, 6
    spikes = (rng.random((T, B, 2, H, W)) < 0.35).astype(np.float64)
    g = conv_graph(w, (H, W))
    _, c = count_run(g, torch.from_numpy(spikes))
    exp_eff = exp_dense = 0
    per_step = np.zeros(T)
    for t in range(T):
        for b in range(B):
            e, d = conv_loops(spikes[t, b], w, stride=2, pad=1)
            exp_eff += e
            exp_dense += d
            per_step[t] += e
    s = c.synapses["conv"]
    assert s.effective == pytest.approx(exp_eff / B, abs=0)
    assert s.dense == pytest.approx(exp_dense / B, abs=0)
    np.testing.assert_array_equal(s.effective_per_step, per_step / B)
    assert s.effective_per_step.sum() == pytest.approx(s.effective)
    # the fan-out map equals the loops' per-position count too
    fm = fanout_map(g.nodes["conv"], (2, H, W))
    one = np.zeros((2, H, W))
    one[1, 0, 5] = 1.0
    assert fm[1, 0, 5].item() == conv_loops(one, w, 2, 1)[0]


def test_pooling_and_conv1d_counts_match_loops():
    rng = np.random.default_rng(4)
    T, B, C, H, W = 2, 3, 2, 5, 6
    spikes = (rng.random((T, B, C, H, W)) < 0.4).astype(np.float64)
    for cls in (nir.SumPool2d, nir.AvgPool2d):
        pool = cls(kernel_size=np.array([3, 3]), stride=np.array([2, 2]),
                   padding=np.array([1, 1]))
        g = graph({"in": nir.Input(np.array([C, H, W])),
                   "pre": nir.IF(r=np.ones((C, H, W)), v_threshold=np.full((C, H, W), 0.5),
                                 v_reset=np.zeros((C, H, W))),
                   "pool": pool, "out": nir.Output(np.array([C, 3, 3]))},
                  [("in", "pre"), ("pre", "pool"), ("pool", "out")])
        _, c = count_run(g, torch.from_numpy(spikes))
        ones = np.ones((1, 1, 3, 3))
        eff = dense = 0
        for t in range(T):
            for b in range(B):
                for ch in range(C):  # a pooling window sees one channel
                    e, d = conv_loops(spikes[t, b, ch:ch + 1], ones, stride=2, pad=1)
                    eff, dense = eff + e, dense + d
        s = c.synapses["pool"]
        assert (s.kind, s.neurobench) == ("AC", False)
        assert s.effective == eff / B and s.dense == dense / B
        assert c.neurobench()["Dense"] == 0  # NeuroBench does not count pooling
    # Conv1d: kernel 3, stride 2, padding 1, dilation 2, explicit loops
    w = rng.normal(size=(2, 2, 3))
    w[0, 1, 2] = 0.0
    conv = nir.Conv1d(input_shape=9, weight=w, stride=2, padding=1, dilation=2, groups=1,
                      bias=np.zeros(2))
    L = 9
    out_len = (L + 2 - 2 * 2 - 1) // 2 + 1
    x = (rng.random((T, B, 2, L)) < 0.5) * rng.normal(size=(T, B, 2, L))
    g = graph({"in": nir.Input(np.array([2, L])), "conv": conv,
               "out": nir.Output(np.array([2, out_len]))}, [("in", "conv"), ("conv", "out")])
    _, c = count_run(g, torch.from_numpy(x))
    eff = dense = 0
    for t in range(T):
        for b in range(B):
            for o in range(2):
                for p in range(out_len):
                    for ch in range(2):
                        for k in range(3):
                            i = p * 2 - 1 + k * 2
                            if 0 <= i < L:
                                dense += 1
                                eff += int(x[t, b, ch, i] != 0 and w[o, ch, k] != 0)
    s = c.synapses["conv"]
    assert s.kind == "MAC"
    assert s.effective == eff / B and s.dense == dense / B


# ---------------------------------------------------------------------- affine counting
def test_affine_with_zero_weights_hand_count():
    # columns (inputs) have 2, 0, 3, 1 non-zero weights
    W = np.array([[1.0, 0.0, 2.0, 0.0],
                  [0.0, 0.0, -1.0, 0.0],
                  [3.0, 0.0, 0.5, 4.0]])
    g = graph({"in": nir.Input(np.array([4])), "pre": lif(4, tau=1.0, r=1.0, vth=0.5),
               "fc": nir.Affine(W, np.array([9.0, 9.0, 9.0])), "post": lif(3),
               "out": nir.Output(np.array([3]))},
              [("in", "pre"), ("pre", "fc"), ("fc", "post"), ("post", "out")])
    # tau = r = dt = 1: v = x, so an input of 1 spikes and 0 does not
    x = torch.tensor([[[1, 1, 0, 0], [0, 0, 1, 1]],     # t=0: b0 → 2+0, b1 → 3+1
                      [[1, 1, 1, 1], [0, 0, 0, 0]]],    # t=1: b0 → 6, b1 → 0
                     dtype=torch.float64)
    _, c = count_run(g, x)
    s = c.synapses["fc"]
    assert s.kind == "AC"
    assert s.effective == (2 + 4 + 6 + 0) / 2          # bias excluded
    assert s.dense == 2 * 12                             # 12 per step per sample
    np.testing.assert_array_equal(s.effective_per_step, [3.0, 3.0])
    assert s.synapses == 6 and s.connections == 12
    assert c.params["fc"].weights == 12 and c.params["fc"].nonzero_weights == 6
    assert c.params["fc"].biases == 3


# ------------------------------------------------------------------------ AC/MAC tagging
def test_residual_add_with_graded_predecessor_is_mac():
    rng = np.random.default_rng(0)
    nodes = {
        "in": nir.Input(np.array([5])),
        "fc0": nir.Affine(rng.normal(size=(5, 5)), np.zeros(5)),
        "lif1": lif(5),
        "lif2": lif(5),
        "flat": nir.Flatten(input_type={"input": np.array([5])}, start_dim=0, end_dim=-1),
        "res": nir.Affine(rng.normal(size=(5, 5)), np.zeros(5)),       # lif1 + in (graded)
        "both": nir.Affine(rng.normal(size=(5, 5)), np.zeros(5)),      # lif1 + lif2
        "after_flat": nir.Affine(rng.normal(size=(5, 5)), np.zeros(5)),  # lif1 → flat → fc
        "li": nir.LI(tau=np.full(5, 2.0), r=np.ones(5), v_leak=np.zeros(5)),
        "from_li": nir.Affine(rng.normal(size=(5, 5)), np.zeros(5)),   # graded LI output
        "o1": nir.Output(np.array([5])), "o2": nir.Output(np.array([5])),
        "o3": nir.Output(np.array([5])), "o4": nir.Output(np.array([5])),
    }
    edges = [("in", "fc0"), ("fc0", "lif1"), ("fc0", "lif2"),
             ("lif1", "res"), ("in", "res"), ("res", "o1"),
             ("lif1", "both"), ("lif2", "both"), ("both", "o2"),
             ("lif1", "flat"), ("flat", "after_flat"), ("after_flat", "o3"),
             ("fc0", "li"), ("li", "from_li"), ("from_li", "o4")]
    g = graph(nodes, edges)
    assert synapse_kind(g, "res") == "MAC"
    assert synapse_kind(g, "both") == "AC"
    assert synapse_kind(g, "after_flat") == "AC"
    assert synapse_kind(g, "from_li") == "MAC"
    assert synapse_kind(g, "fc0") == "MAC"
    x = torch.rand(4, 3, 5, dtype=torch.float64) * 3
    _, c = count_run(g, x)
    assert c.synapses["res"].kind == "MAC"
    # the residual node counts pairs on its summed input (spikes + graded input)
    _, rec = run_reference(g, x, record=True)
    nz = (rec["res"].input != 0).double()
    col = torch.as_tensor((np.asarray(nodes["res"].weight) != 0).sum(0), dtype=torch.float64)
    assert c.synapses["res"].effective == pytest.approx(float((nz * col).sum()) / 3)


def test_first_layer_under_real_input_is_mac_whatever_the_values():
    W = np.ones((2, 3))
    g = graph({"in": nir.Input(np.array([3])), "fc": nir.Affine(W, np.zeros(2)),
               "lif": lif(2), "out": nir.Output(np.array([2]))},
              [("in", "fc"), ("fc", "lif"), ("lif", "out")])
    real = torch.tensor([[[0.3, 0.0, 2.5]]], dtype=torch.float64)
    binary = torch.tensor([[[1.0, 0.0, 1.0]]], dtype=torch.float64)
    for x in (real, binary):  # tagged from the graph, never from the values
        _, c = count_run(g, x)
        assert c.synapses["fc"].kind == "MAC"
        assert c.synapses["fc"].effective == 4
        assert c.sop_mac == 4 and c.sop_ac == 0
    _, c = count_run(g, binary, spike_inputs=True)  # declared event input
    assert c.synapses["fc"].kind == "AC"
    assert payload_tags(g, spike_inputs=["in"])["in"] == "spike"


# ------------------------------------------------------------------ neurons and spikes
def test_neuron_updates_spikes_and_footprint():
    W = np.eye(3)
    g = graph({"in": nir.Input(np.array([3])), "fc": nir.Affine(W, np.zeros(3)),
               "lif": lif(3, tau=1.0, r=1.0, vth=0.5), "out": nir.Output(np.array([3]))},
              [("in", "fc"), ("fc", "lif"), ("lif", "out")])
    x = torch.tensor([[[1.0, 0.0, 0.0]], [[1.0, 1.0, 0.0]], [[0.0, 0.0, 0.0]],
                      [[0.2, 0.0, 0.0]]], dtype=torch.float64)  # T=4, B=1
    _, c = count_run(g, x)
    n = c.neurons["lif"]
    assert n.neurons == 3 and n.spiking
    assert n.updates_dense == 12
    assert n.updates_driven == 4            # 1 + 2 + 0 + 1 neuron-steps with input
    np.testing.assert_array_equal(n.driven_per_step, [1, 2, 0, 1])
    assert n.spikes == 3                     # 0.2 stays below 0.5
    np.testing.assert_array_equal(n.spikes_per_step, [1, 2, 0, 0])
    assert n.rate == pytest.approx(3 / 12)
    assert n.sparsity == pytest.approx(9 / 12)
    assert c.nu_dense == 12 and c.nu_driven == 4 and c.spikes == 3
    # footprint: 9 weights + 3 biases + 5 LIF parameters × 3 neurons
    assert c.params["lif"].neuron_params == 15
    assert c.footprint_bytes() == (9 + 3 + 15) * 4
    assert c.footprint_bytes(weight_bits=8, other_bits=32) == 9 + (3 + 15) * 4


def test_missing_record_is_a_clear_error():
    g = graph({"in": nir.Input(np.array([2])), "fc": nir.Affine(np.eye(2), np.zeros(2)),
               "out": nir.Output(np.array([2]))}, [("in", "fc"), ("fc", "out")])
    # fc's input is neither recorded nor derivable: its predecessor's output is missing too
    _, rec = run_reference(g, torch.ones(2, 1, 2, dtype=torch.float64), record=["out"])
    with pytest.raises(InputError, match="'in'.*record=True"):
        count_events(g, rec)


# ---------------------------------------------------------------- NeuroBench equality
def _neurobench_synops(net, data):
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import SNNTorchModel
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(data, torch.zeros(data.shape[0])),
                        batch_size=data.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench = Benchmark(SNNTorchModel(net), loader, [], [], [[], [SynapticOperations]])
        return bench.run(quiet=True)["SynapticOperations"]


def _dyadic(t: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Round to multiples of 1/16 so float32 (snnTorch) and float64 (reference) agree
    exactly; with beta = 0.5 every membrane value stays exactly representable."""
    return torch.round(t * scale * 16) / 16


def _leaky(snn, output=False):
    # reset to zero, delayed reset: v_t = 0.5·v_{t-1}·(1 − s_{t-1}) + x_t, fire on v > 1,
    # which is NIR's LIF with dt/tau = 0.5, r = 2, hard reset to 0
    return snn.Leaky(beta=0.5, init_hidden=True, reset_mechanism="zero", output=output)


def _snn_spikes(net, data):
    from snntorch import utils

    utils.reset(net)
    with torch.no_grad():
        return torch.stack([net(data[:, t])[0] for t in range(data.shape[1])])


def test_counts_equal_neurobench_on_snntorch_mlp():
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("neurobench")
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(6, 10), _leaky(snn), torch.nn.Linear(10, 4),
                              _leaky(snn, output=True))
    with torch.no_grad():
        for lin in (net[0], net[2]):
            lin.weight.copy_(_dyadic(lin.weight, 3))
            lin.bias.copy_(_dyadic(lin.bias))
    assert (net[0].weight == 0).any()  # some zero weights
    B, T = 5, 12
    data = torch.relu(_dyadic(torch.rand(B, T, 6) * 2 - 0.5))  # real-valued, some zeros
    nb = _neurobench_synops(net, data)

    def aff(lin):
        return nir.Affine(lin.weight.detach().double().numpy(),
                          lin.bias.detach().double().numpy())

    g = graph({"in": nir.Input(np.array([6])), "fc1": aff(net[0]), "lif1": lif(10),
               "fc2": aff(net[2]), "lif2": lif(4), "out": nir.Output(np.array([4]))},
              [("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
               ("lif2", "out")])
    out, c = count_run(g, data.transpose(0, 1).double())
    assert torch.equal(out, _snn_spikes(net, data).double())  # same spikes, same run
    assert c.spikes > 0 and c.sop_ac > 0 and c.sop_mac > 0
    ours = c.neurobench()
    assert ours["Effective_MACs"] == pytest.approx(float(nb["Effective_MACs"]), abs=1e-9)
    assert ours["Effective_ACs"] == pytest.approx(float(nb["Effective_ACs"]), abs=1e-9)
    assert ours["Dense"] == pytest.approx(float(nb["Dense"]), abs=1e-9)


def test_counts_equal_neurobench_on_snntorch_conv():
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("neurobench")
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, stride=2, padding=1), _leaky(snn),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 3, 5), _leaky(snn, output=True))
    with torch.no_grad():
        for lin in (net[0], net[3]):
            lin.weight.copy_(_dyadic(lin.weight, 4))
            lin.bias.copy_(_dyadic(lin.bias))
    B, T = 3, 6
    data = torch.relu(_dyadic(torch.rand(B, T, 2, 7, 6) * 3 - 1))
    nb = _neurobench_synops(net, data)

    conv = nir.Conv2d(input_shape=(7, 6), weight=net[0].weight.detach().double().numpy(),
                      stride=2, padding=1, dilation=1, groups=1,
                      bias=net[0].bias.detach().double().numpy())
    g = graph({"in": nir.Input(np.array([2, 7, 6])), "conv": conv, "lif1": lif((4, 4, 3)),
               "flat": nir.Flatten(input_type={"input": np.array([4, 4, 3])}, start_dim=0,
                                   end_dim=-1),
               "fc": nir.Affine(net[3].weight.detach().double().numpy(),
                                net[3].bias.detach().double().numpy()),
               "lif2": lif(5), "out": nir.Output(np.array([5]))},
              [("in", "conv"), ("conv", "lif1"), ("lif1", "flat"), ("flat", "fc"),
               ("fc", "lif2"), ("lif2", "out")])
    out, c = count_run(g, data.transpose(0, 1).double())
    assert torch.equal(out, _snn_spikes(net, data).double())
    assert c.synapses["conv"].kind == "MAC" and c.synapses["fc"].kind == "AC"
    assert c.sop_ac > 0
    ours = c.neurobench()
    for key in ("Effective_MACs", "Effective_ACs", "Dense"):
        assert ours[key] == pytest.approx(float(nb[key]), abs=1e-9), key


# --------------------------------------------------------------------------- profiles
def test_every_shipped_profile_loads():
    names = list_profiles()
    assert set(SHIPPED) <= set(names)
    for name in names:
        p = load_profile(name)
        assert p.name == name
        assert p.path is not None and p.path.parent == PROFILES_DIR
        assert set(p.energy) >= {"e_ac_pj", "e_mac_pj", "e_nu_pj", "e_spike_pj",
                                 "p_static_w"}
        for c in p.energy.values():
            assert c.source
            assert (c.value is None) == (c.evidence == "unknown") or not c.charged
        assert p.label.startswith(f"model estimate (profile {name}, evidence ")
    assert load_profile(PROFILES_DIR / "loihi.toml").name == "loihi"


def test_profile_constants_match_their_sources():
    fp32, int8 = load_profile("cmos45-fp32"), load_profile("cmos45-int8")
    assert (fp32.energy["e_ac_pj"].value, fp32.energy["e_mac_pj"].value) == (0.9, 4.6)
    assert (int8.energy["e_ac_pj"].value, int8.energy["e_mac_pj"].value) == (0.03, 0.23)
    lo = load_profile("loihi")
    assert lo.energy["e_ac_pj"].value == 23.6
    assert (lo.energy["e_nu_pj"].value, lo.energy["e_nu_idle_pj"].value) == (81.0, 52.0)
    assert lo.energy["e_spike_pj"].value == 1.7
    assert lo.energy["e_mac_pj"].value is None and lo.energy["p_static_w"].value is None
    assert lo.limit("neurons_per_core") == 1024 and lo.limit("cores_per_chip") == 128
    l2 = load_profile("loihi2")
    assert l2.evidence == "proxy"
    assert all(c.evidence in ("proxy", "unknown") for k, c in l2.energy.items()
               if k != "p_static_w")  # per-event costs: Loihi 1 proxies
    assert l2.energy["p_static_w"].evidence == "measured"  # Intel's PilotNet benchmark
    assert l2.limits["neurons_per_core"].assumption
    q = l2.quantization
    assert q is not None
    assert (q.weight_bits, q.weight_exp_min, q.weight_exp_max) == (8, -8, 7)
    assert (q.state_bits, q.decay_bits, q.lut_step_log2) == (24, 12, -8)
    assert (q.lut_min, q.lut_max) == (-8.0, 8.0)
    assert q.frac_bits == {"lif": 6, "sublif": 12, "dalif": 12, "klif": 12, "arlif": 12,
                           "clif": 12, "alif": 12, "if": 6, "li": 6, "cubalif": 6}
    tn = load_profile("truenorth")
    assert tn.scope == "all_in" and tn.energy["e_ac_pj"].value == 26.0
    assert tn.evidence == "measured"
    sp = load_profile("speck")
    assert sp.energy["p_static_w"].value == pytest.approx(0.42e-3)
    assert sp.energy["e_ac_pj"].value is None
    gpu = load_profile("gpu-h100")
    assert gpu.prices == "dense_mac"
    assert gpu.energy["e_mac_pj"].value == pytest.approx(2 * 700 / 989.4e12 * 1e12, rel=1e-3)


def _write_variant(tmp_path: Path, old: str, new: str, name="bad.toml") -> Path:
    text = (PROFILES_DIR / "loihi.toml").read_text()
    assert old in text
    p = tmp_path / name
    p.write_text(text.replace(old, new, 1))
    return p


@pytest.mark.parametrize("old,new,field", [
    ('kind = "neuromorphic"\n', "", "kind"),
    ('e_ac_pj = { value = 23.6, evidence = "simulated", ',
     'e_ac_pj = { value = "23.6", evidence = "simulated", ', "energy.e_ac_pj.value"),
    ('e_nu_pj = { value = 81.0, evidence = "simulated", ',
     'e_nu_pj = { value = 81.0, evidence = "guessed", ', "energy.e_nu_pj.evidence"),
    ('e_spike_pj = { value = 1.7, evidence = "simulated", source = ',
     'e_spike_pj = { value = 1.7, evidence = "simulated", sauce = ', "energy.e_spike_pj"),
    ('cores_per_chip = { value = 128, ', 'cores_per_chip = { value = true, ',
     "limits.cores_per_chip.value"),
    ('scope = "per_op"', "scope = 3", "scope"),
    ('scope = "per_op"', 'scope = "everything"', "scope"),
    ("[limits]\ncores_per_chip", "[limits]\ncores_per_chipp = { source = \"x\" }\n"
     "cores_per_chip", "limits.cores_per_chipp"),
])
def test_bad_profile_names_file_and_field(tmp_path, old, new, field):
    p = _write_variant(tmp_path, old, new)
    with pytest.raises(ProfileError) as exc:
        load_profile(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert f"'{field}" in msg


def test_profile_missing_energy_entry_and_unknown_key(tmp_path):
    p = _write_variant(tmp_path, "p_static_w = {", "p_static_x = {")
    with pytest.raises(ProfileError, match=r"bad\.toml.*energy\.p_static_x"):
        load_profile(p)
    text = (PROFILES_DIR / "loihi.toml").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("p_static_w")]
    q = tmp_path / "missing.toml"
    q.write_text("\n".join(lines))
    with pytest.raises(ProfileError, match=r"missing\.toml.*'energy\.p_static_w'.*missing"):
        load_profile(q)


def test_profile_value_without_evidence_and_unknown_with_value(tmp_path):
    p = _write_variant(tmp_path, 'e_ac_pj = { value = 23.6, evidence = "simulated"',
                       'e_ac_pj = { value = 23.6, evidence = "unknown"')
    with pytest.raises(ProfileError, match="energy.e_ac_pj.evidence"):
        load_profile(p)
    p = _write_variant(tmp_path, 'e_ac_pj = { value = 23.6, evidence = "simulated"',
                       'e_ac_pj = { evidence = "simulated"', name="b2.toml")
    with pytest.raises(ProfileError, match="energy.e_ac_pj.value"):
        load_profile(p)


def test_profile_not_found_and_bad_toml(tmp_path):
    with pytest.raises(ProfileError, match="no profile named 'loihi9'.*loihi2"):
        load_profile("loihi9")
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "nope.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(ProfileError, match=r"broken\.toml.*not valid TOML"):
        load_profile(bad)


# ---------------------------------------------------------------------------- pricing
def _profile(tmp_path: Path, energy: dict, **top) -> Path:
    head = {"name": "t", "description": "test", "kind": "cmos", "scope": "per_op",
            "prices": "events", **top}
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in head.items()]
    lines.append("[energy]")
    for key in ("e_ac_pj", "e_mac_pj", "e_nu_pj", "e_spike_pj", "p_static_w",
                "e_nu_idle_pj"):
        if key not in energy:
            if key == "e_nu_idle_pj":
                continue
            lines.append(f'{key} = {{ evidence = "unknown", source = "s" }}')
            continue
        v = energy[key]
        if isinstance(v, tuple):  # (value or None, charged)
            val, charged = v
            body = 'evidence = "unknown"' if val is None else \
                f'value = {val}, evidence = "derived"'
            lines.append(f'{key} = {{ {body}, charged = {str(charged).lower()}, '
                         'source = "s" }')
        else:
            lines.append(f'{key} = {{ value = {v}, evidence = "measured", source = "s" }}')
    p = tmp_path / f"{head['name']}.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.fixture
def two_layer_counts():
    rng = np.random.default_rng(5)
    W1 = rng.normal(size=(6, 4))
    W1[0, :2] = 0
    g = graph({"in": nir.Input(np.array([4])), "fc1": nir.Affine(W1, np.zeros(6)),
               "lif1": lif(6), "fc2": nir.Affine(rng.normal(size=(3, 6)), np.zeros(3)),
               "lif2": lif(3), "out": nir.Output(np.array([3]))},
              [("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
               ("lif2", "out")])
    x = torch.relu(torch.randn(8, 4, 4, dtype=torch.float64, generator=torch.Generator()
                               .manual_seed(0)) * 2)
    _, c = count_run(g, x)
    assert c.sop_ac > 0 and c.sop_mac > 0 and c.spikes > 0
    assert c.nu_driven < c.nu_dense
    return g, c


def test_energy_arithmetic_per_term(tmp_path, two_layer_counts):
    _, c = two_layer_counts
    p = _profile(tmp_path, {"e_ac_pj": 2.0, "e_mac_pj": 5.0, "e_nu_pj": 3.0,
                            "e_spike_pj": 7.0, "p_static_w": 0.5}, time_step_s=1e-3)
    r = estimate_energy(c, p)
    pj = 1e-12
    assert r.terms["ac"].energy_j == pytest.approx(2.0 * c.sop_ac * pj)
    assert r.terms["mac"].energy_j == pytest.approx(5.0 * c.sop_mac * pj)
    assert r.terms["nu"].energy_j == pytest.approx(3.0 * c.nu_dense * pj)
    assert r.terms["spike"].energy_j == pytest.approx(7.0 * c.spikes * pj)
    assert r.time_s == pytest.approx(8e-3)
    assert r.terms["static"].energy_j == pytest.approx(0.5 * 8e-3)
    expected = (2 * c.sop_ac + 5 * c.sop_mac + 3 * c.nu_dense + 7 * c.spikes) * pj + 4e-3
    assert r.total_j == pytest.approx(expected)
    assert r.known_j == pytest.approx(expected)
    assert r.missing == [] and r.not_charged == []
    assert r.ann_equivalent_j == pytest.approx(5.0 * c.sop_dense * pj)
    assert r.label == "model estimate (profile t, evidence measured)"
    # per layer: synapse nodes carry their SOP term, neuron nodes NU + spikes
    assert r.per_layer["fc2"]["ac"] == pytest.approx(2.0 * c.synapses["fc2"].effective * pj)
    n1 = c.neurons["lif1"]
    assert r.per_layer["lif1"]["total"] == pytest.approx(
        (3.0 * n1.updates_dense + 7.0 * n1.spikes) * pj)
    layer_sum = sum(v["total"] for v in r.per_layer.values())
    assert layer_sum + 4e-3 == pytest.approx(r.total_j)
    # the time step can be overridden
    assert estimate_energy(c, p, time_step_s=2e-3).terms["static"].energy_j == \
        pytest.approx(0.5 * 16e-3)


def test_energy_idle_and_driven_neuron_updates(tmp_path, two_layer_counts):
    _, c = two_layer_counts
    p = _profile(tmp_path, {"e_ac_pj": 1.0, "e_mac_pj": 1.0, "e_nu_pj": 81.0,
                            "e_nu_idle_pj": 52.0, "e_spike_pj": 1.0, "p_static_w": 0.0},
                 time_step_s=1.0)
    r = estimate_energy(c, p)
    assert r.terms["nu"].energy_j == pytest.approx(
        (81 * c.nu_driven + 52 * (c.nu_dense - c.nu_driven)) * 1e-12)
    p2 = _profile(tmp_path, {"e_ac_pj": 1.0, "e_mac_pj": 1.0, "e_nu_pj": 81.0,
                             "e_spike_pj": 1.0, "p_static_w": 0.0}, time_step_s=1.0,
                  neuron_updates="driven", name="t2")
    assert estimate_energy(c, p2).terms["nu"].energy_j == pytest.approx(81 * c.nu_driven
                                                                         * 1e-12)


def test_null_constant_makes_total_null_and_names_it(tmp_path, two_layer_counts):
    g, c = two_layer_counts
    p = _profile(tmp_path, {"e_ac_pj": 2.0, "e_nu_pj": 3.0, "e_spike_pj": 7.0,
                            "p_static_w": 0.5}, time_step_s=1e-3)  # e_mac unknown
    r = estimate_energy(c, p)
    assert r.total_j is None
    assert r.missing == ["e_mac_pj"]
    assert r.terms["mac"].energy_j is None
    assert r.per_layer["fc1"]["total"] is None and r.per_layer["fc2"]["total"] is not None
    assert r.known_j == pytest.approx((2 * c.sop_ac + 3 * c.nu_dense + 7 * c.spikes) * 1e-12
                                      + 0.5 * 8e-3)
    assert r.ann_equivalent_j is None
    # no graded input → no MAC → the unknown constant is not needed
    _, c2 = count_run(g, torch.zeros(3, 2, 4, dtype=torch.float64))
    assert c2.sop_mac == 0
    assert estimate_energy(c2, p).total_j is not None
    # no time step: static needs one
    p3 = _profile(tmp_path, {"e_ac_pj": 2.0, "e_mac_pj": 1.0, "e_nu_pj": 3.0,
                             "e_spike_pj": 7.0, "p_static_w": 0.5}, name="t3")
    r3 = estimate_energy(c, p3)
    assert r3.total_j is None and r3.missing == ["time_step_s"]
    assert estimate_energy(c, p3, time_step_s=1e-3).total_j is not None


def test_not_charged_all_in_and_dense_mac(tmp_path, two_layer_counts):
    _, c = two_layer_counts
    p = _profile(tmp_path, {"e_ac_pj": 0.9, "e_mac_pj": 4.6, "e_nu_pj": (4.6, False),
                            "e_spike_pj": (None, False), "p_static_w": (None, False)})
    r = estimate_energy(c, p)
    assert r.total_j == pytest.approx((0.9 * c.sop_ac + 4.6 * c.sop_mac) * 1e-12)
    assert r.not_charged == ["e_nu_pj", "e_spike_pj", "p_static_w"]
    assert r.missing == []
    # all_in: only SOP terms, whatever the other entries say
    p2 = _profile(tmp_path, {"e_ac_pj": 26.0, "e_mac_pj": 26.0, "e_nu_pj": 9.0,
                             "e_spike_pj": 9.0, "p_static_w": 9.0}, scope="all_in",
                  time_step_s=1e-3, name="allin")
    r2 = estimate_energy(c, p2)
    assert r2.total_j == pytest.approx(26.0 * c.sop_effective * 1e-12)
    assert set(r2.not_charged) == {"e_nu_pj", "e_spike_pj", "p_static_w"}
    # dense_mac: every synapse op dense, at the MAC price
    p3 = _profile(tmp_path, {"e_ac_pj": (None, False), "e_mac_pj": 1.415,
                             "e_nu_pj": (None, False), "e_spike_pj": (None, False),
                             "p_static_w": (None, False)}, scope="all_in",
                  prices="dense_mac", kind="gpu", name="gpu")
    r3 = estimate_energy(c, p3)
    assert r3.total_j == pytest.approx(1.415 * c.sop_dense * 1e-12)
    assert r3.terms["mac"].count == c.sop_dense and r3.terms["ac"].count == 0
    assert r3.ann_equivalent_j == pytest.approx(r3.total_j)


def test_shipped_profiles_price_a_run(two_layer_counts):
    _, c = two_layer_counts
    for name in list_profiles():
        r = estimate_energy(c, name)
        assert r.label.startswith(f"model estimate (profile {name}, evidence ")
        assert (r.total_j is None) == bool(r.missing)
        d = r.to_dict()
        assert d["per"] == "sample"
    lo = estimate_energy(c, "loihi")
    assert lo.total_j is None and "e_mac_pj" in lo.missing and "p_static_w" in lo.missing
    assert lo.evidence == "simulated"
    assert estimate_energy(c, "loihi2").evidence == "proxy"
    tn = estimate_energy(c, "truenorth")
    assert tn.missing == ["e_mac_pj"]
    assert tn.known_j == pytest.approx(26.0 * c.sop_ac * 1e-12)


# ---------------------------------------------------------------------------- mapping
def _mlp(sizes):
    nodes = {"in": nir.Input(np.array([sizes[0]]))}
    edges = []
    prev = "in"
    rng = np.random.default_rng(0)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        nodes[f"fc{i}"] = nir.Affine(rng.normal(size=(b, a)), np.zeros(b))
        nodes[f"lif{i}"] = lif(b)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["out"] = nir.Output(np.array([sizes[-1]]))
    edges.append((prev, "out"))
    return graph(nodes, edges)


def test_map_loihi_neurons_bind():
    g = _mlp([100, 3000, 10])
    m = map_to_chip(g, "loihi")
    l0 = m.layers[0]
    assert l0.neuron_node == "lif0" and l0.neurons == 3000 and l0.synapses == 300000
    # 300000 8-bit synapses = 300000 B → 3 cores of 128 KiB; 3000 neurons → 3 cores
    assert l0.cores == 3
    assert m.layers[1].neurons == 10
    assert m.fits and m.cores_used == sum(lm.cores for lm in m.layers)
    assert m.assumptions == []
    g2 = _mlp([100, 5000, 10])
    m2 = map_to_chip(g2, "loihi")
    assert m2.layers[0].cores == 5 and m2.layers[0].binding == "neurons_per_core"


def test_map_loihi_synapse_memory_and_fan_in_bind():
    g = _mlp([4000, 600, 10])  # 2.4 M synapses: 2.4 MB at 8 bits → 19 cores of 128 KiB
    m = map_to_chip(g, "loihi")
    assert m.layers[0].cores == math.ceil(4000 * 600 / 131072)
    assert m.layers[0].binding == "synapse_memory_bytes_per_core"
    g2 = _mlp([5000, 10])  # dense fan-in above 4096 axons per core
    m2 = map_to_chip(g2, "loihi")
    assert not m2.fits and not m2.layers[0].fits
    assert any("fan-in" in n for n in m2.layers[0].notes)


def test_map_loihi2_flags_assumptions_and_chip_limit():
    g = _mlp([100, 200, 10])
    m = map_to_chip(g, "loihi2")
    assert m.fits
    assumed = " ".join(m.assumptions)
    assert "neurons_per_core" in assumed and "synapse_memory_bytes_per_core" in assumed
    assert "assumed limit" in m.label
    big = _mlp([4000, 4000, 4000, 4000, 4000, 4000])  # 80 M synapses, ~80 MB
    mb = map_to_chip(big, "loihi2")
    assert not mb.fits and mb.chips_needed > 1
    assert mb.binding.startswith("chip: cores_per_chip")


def test_map_speck_kernel_features_and_memory():
    def conv_net(k, f):
        w = np.ones((f, 2, k, k))
        c = nir.Conv2d(input_shape=(32, 32), weight=w, stride=1, padding=k // 2, dilation=1,
                       groups=1, bias=np.zeros(f))
        return graph({"in": nir.Input(np.array([2, 32, 32])), "conv": c,
                      "if": nir.IF(r=np.ones((f, 32, 32)), v_threshold=np.ones((f, 32, 32)),
                                   v_reset=np.zeros((f, 32, 32))),
                      "out": nir.Output(np.array([f, 32, 32]))},
                     [("in", "conv"), ("conv", "if"), ("if", "out")])

    m = map_to_chip(conv_net(3, 8), "speck")
    assert m.fits and m.cores_used == 1
    # sinabs: kernel 2·2^(⌈log2 9⌉+⌈log2 8⌉) = 2·2^7 = 256; neurons 8·2^(5+5) = 8192
    u = m.layers[0].usage
    assert u["kernel_memory_per_core"]["need"] == 256
    assert u["neuron_memory_per_core"]["need"] == 8192
    m2 = map_to_chip(conv_net(17, 4), "speck")
    assert not m2.fits and m2.layers[0].binding == "max_kernel"
    m3 = map_to_chip(conv_net(3, 80), "speck")  # 80·1024 neuron entries > 64 Ki
    assert not m3.fits and m3.layers[0].binding == "neuron_memory_per_core"


def test_map_xylo_hidden_and_output_neurons():
    assert map_to_chip(_mlp([16, 500, 8]), "xylo-audio2").fits
    m = map_to_chip(_mlp([16, 800, 400, 8]), "xylo-audio2")
    assert not m.fits and m.binding == "chip: neurons_per_chip"
    m2 = map_to_chip(_mlp([16, 100, 12]), "xylo-audio2")
    assert not m2.fits and m2.binding == "chip: output_neurons_per_chip"
    m3 = map_to_chip(_mlp([40, 100, 4]), "xylo-audio2")
    assert not m3.fits and m3.binding == "chip: input_channels_per_chip"


def test_map_needs_a_chip_profile():
    with pytest.raises(ProfileError, match="cmos45-fp32.*no chip.*loihi"):
        map_to_chip(_mlp([4, 4]), "cmos45-fp32")


def test_map_loihi_convolution_is_tiled():
    g = conv_graph(np.ones((16, 2, 3, 3)), (128, 128), stride=1)
    m = map_to_chip(g, "loihi")
    conv_layer = next(lm for lm in m.layers if lm.neuron_node == "lif")
    assert conv_layer.neurons == 16 * 128 * 128
    assert conv_layer.cores == 256 and conv_layer.binding == "neurons_per_core"
    # 2×128×128 inputs exceed 4096 axons, but a spatial tile of them does not
    assert conv_layer.fits and conv_layer.usage["input_axons_per_core"]["ratio"] < 1
    assert not m.fits and m.binding == "chip: cores_per_chip" and m.chips_needed == 3
