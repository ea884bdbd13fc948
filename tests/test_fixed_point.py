"""Integer golden models (each neuron file's integer model), the quantization pass and the integer
executor (nirbridge.quantize).

The stock-LIF golden model is checked against Lava's own ``PyLifModelBitAcc`` class (its
methods run without a Lava runtime) and against a literal transcription of its formula;
Dense against ``PyDenseModelBitAcc``. Agreement with the float64 reference is measured
per neuron type on Input → Affine → neuron graphs (64 neurons, B = 8, T = 8).
"""

from __future__ import annotations

import functools

import nir
import numpy as np
import pytest
import torch

from nirbridge import fixed_point as fx
from nirbridge import nodes as N
from nirbridge.backends.reference import run_reference
from nirbridge.errors import ProfileError, QuantizationError
from nirbridge.neurons.alif import ALIFParams, alif_int_step
from nirbridge.neurons.arlif import ARLIFParams, arlif_int_step
from nirbridge.neurons.clif import CLIFParams, clif_int_step
from nirbridge.neurons.klif import KLIFParams, klif_int_step
from nirbridge.neurons.lava_lif import LavaLIFParams, lava_lif_step
from nirbridge.neurons.sublif import LinearLIFParams, linear_lif_step
from nirbridge.quantize import (
    DEFAULT_FRAC_BITS,
    QuantConfig,
    quantize,
    run_fixed_point,
    saturation_counts,
)

T, B, NI, NO = 8, 8, 32, 64
PROFILE_TABLE = {
    "weight_bits": 8, "weight_exp_min": -8, "weight_exp_max": 7, "state_bits": 24,
    "decay_bits": 12, "frac_bits": dict(DEFAULT_FRAC_BITS), "lut_step_log2": -8,
    "lut_min": -8.0, "lut_max": 8.0,
}


def _import_lava(module: str):
    """Import a Lava module, or skip when Lava is not installed.

    Lava's first import calls ``multiprocessing.set_start_method('fork')``, which raises
    if anything earlier in the session set a start method: clear it for that import and
    restore it afterwards.
    """
    import multiprocessing
    import sys

    import nirbridge  # noqa: F401  (installs the Python 3.11 import fix before lava)

    lava_mp = "lava.magma.runtime.message_infrastructure.multiprocessing"
    prev = multiprocessing.get_start_method(allow_none=True)
    if lava_mp in sys.modules or prev is None:
        return pytest.importorskip(module)
    multiprocessing.set_start_method(None, force=True)
    try:
        return pytest.importorskip(module)
    finally:
        multiprocessing.set_start_method(prev, force=True)


def _lava_lif_model():
    """Lava's bit-accurate LIF model class."""
    return _import_lava("lava.proc.lif.models").PyLifModelBitAcc


# ------------------------------------------------------------------ Lava stock LIF
def _transcribed_lava_lif(u, v, a_in, du, dv, bias, vth):
    """Literal transcription of lava-nc 0.10.0 lava/proc/lif/models.py,
    AbstractPyLifModelFixed.subthr_dynamics (lines ~138-186) and PyLifModelBitAcc
    (scale_threshold: vth << 6; spiking_activation: v > effective_vth), reset v = 0."""
    max_uv = 2 ** 23
    decayed_curr = np.int64(u) * (4096 - (du + 1))
    decayed_curr = np.sign(decayed_curr) * np.right_shift(np.abs(decayed_curr), 12)
    decayed_curr = np.int32(decayed_curr)
    decayed_curr = decayed_curr + np.left_shift(a_in, 6)
    wrapped = np.where(decayed_curr > max_uv, decayed_curr - 2 * max_uv, decayed_curr)
    wrapped = np.where(wrapped <= -max_uv, decayed_curr + 2 * max_uv, wrapped)
    u = wrapped
    decayed_volt = np.int64(v) * (4096 - dv)
    decayed_volt = np.sign(decayed_volt) * np.right_shift(np.abs(decayed_volt), 12)
    decayed_volt = np.int32(decayed_volt)
    v = np.clip(decayed_volt + u + bias, -max_uv + 1, max_uv - 1)
    s = v > (vth << 6)
    v = np.where(s, 0, v)
    return u, v, s


@pytest.mark.parametrize("du,dv,vth", [(0, 0, 10), (4095, 200, 100), (100, 4095, 5000),
                                       (2047, 1, 131071)])
def test_lava_lif_matches_transcribed_formula(du, dv, vth):
    rng = np.random.default_rng(du + dv)
    n = 500
    mant = rng.integers(-4096, 4096, n)
    exp = rng.integers(0, 8, n)
    p = LavaLIFParams(du=du, dv=dv, bias_mant=mant, bias_exp=exp, vth=vth)
    state = p.initial_state(1, (n,))
    u, v = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for t in range(40):
        # large inputs drive u to wrap around and v to clip
        a_in = rng.integers(-2 ** 15, 2 ** 15, n) if t % 7 == 3 else rng.integers(-300, 300, n)
        s, state = lava_lif_step(a_in[None], state, p)
        u, v, s_ref = _transcribed_lava_lif(u, v, a_in, du, dv, p.effective_bias, vth)
        np.testing.assert_array_equal(state.u[0], u)
        np.testing.assert_array_equal(state.v[0], v)
        np.testing.assert_array_equal(s[0], s_ref.astype(np.int64))


def test_lava_lif_matches_lava_model_class():
    """Runs the methods of Lava's own PyLifModelBitAcc (no runtime needed) step by step."""
    model_cls = _lava_lif_model()
    rng = np.random.default_rng(7)
    n = 300
    for du, dv, vth in [(0, 0, 3), (4095, 300, 40), (1000, 4000, 2 ** 16)]:
        mant = rng.integers(-4096, 4096, n).astype(np.int16)
        exp = rng.integers(0, 8, n).astype(np.int16)
        lava = model_cls({})
        lava.u = np.zeros(n, np.int32)
        lava.v = np.zeros(n, np.int32)
        lava.du, lava.dv, lava.vth = du, dv, vth
        lava.bias_mant, lava.bias_exp = mant, exp
        lava.scale_bias()
        lava.scale_threshold()
        p = LavaLIFParams(du=du, dv=dv, bias_mant=mant, bias_exp=exp, vth=vth)
        state = p.initial_state(1, (n,))
        sat = fx.SaturationCounter()
        for t in range(50):
            big = t % 9 == 4
            a_in = rng.integers(-2 ** 15, 2 ** 15, n) if big else rng.integers(-500, 500, n)
            lava.subthr_dynamics(activation_in=a_in.astype(np.int32))
            s_lava = lava.spiking_activation()
            lava.reset_voltage(spike_vector=s_lava)
            s, state = lava_lif_step(a_in[None], state, p, sat)
            np.testing.assert_array_equal(state.u[0], lava.u)
            np.testing.assert_array_equal(state.v[0], lava.v)
            np.testing.assert_array_equal(s[0].astype(bool), s_lava)
        assert sat.counts["u"] > 0 or du != 0  # the wrap-around was exercised


def test_dense_golden_matches_lava_dense_model():
    """The golden synapse equals Lava's PyDenseModelBitAcc fed 2·mant, weight_exp − 1."""
    dense_models = _import_lava("lava.proc.dense.models")

    class _In:
        def __init__(self, v):
            self.v = v

        def recv(self):
            return self.v

    class _Out:
        def send(self, v):
            self.v = v

    rng = np.random.default_rng(3)
    mant = rng.integers(-128, 128, (6, 9))
    for w_exp in (-8, -3, 0, 1, 5):
        dense = dense_models.PyDenseModelBitAcc({"weight_exp": w_exp - 1, "num_weight_bits": 8})
        dense.weights = (2 * mant).astype(np.int32)
        dense.num_message_bits = np.array(0)
        dense.a_buff = np.zeros(6, np.int32)
        s = rng.random(9) < 0.5
        dense.s_in, dense.a_out = _In(s), _Out()
        dense.run_spk()
        golden = fx.shift_floor(mant @ s.astype(np.int64), w_exp)
        np.testing.assert_array_equal(dense.a_buff, golden)


# ---------------------------------------------------------------------- arithmetic
def test_rounding_conventions():
    x = np.array([5, -5, 6, -6, 7, -7])
    np.testing.assert_array_equal(fx.mul_trunc(x, 2048, 12), [2, -2, 3, -3, 3, -3])
    np.testing.assert_array_equal(fx.mul_round(x, 2048, 12), [3, -2, 3, -3, 4, -3])
    np.testing.assert_array_equal(fx.shift_floor(np.array([-3, 3]), -1), [-2, 1])
    np.testing.assert_array_equal(fx.shift_floor(np.array([-3, 3]), 2), [-12, 12])
    np.testing.assert_array_equal(fx.shift_round(np.array([3, -3]), -2), [12, -12])


def test_saturation_at_24_bits():
    lim = 2 ** 23 - 1
    p = LinearLIFParams(frac_bits=12, decay=4096, theta=2 ** 30, compare=">=")
    state = p.initial_state(1, (3,))
    sat = fx.SaturationCounter()
    for _ in range(3):
        _, state = linear_lif_step(np.array([[2 ** 22, -2 ** 22, 5]]), state, p, sat)
    np.testing.assert_array_equal(state.v[0], [lim, -lim, 15])
    assert sat.counts["v"] == 2 * 2  # steps 2 and 3 clip two neurons each
    # the drive itself saturates too
    _, state = linear_lif_step(np.array([[2 ** 40, 0, 0]]), state, p, sat)
    assert sat.counts["x"] == 1 and state.v[0, 0] == lim
    # Lava's u wraps around instead (asymmetrically, as in Lava)
    np.testing.assert_array_equal(fx.lava_wrap(np.array([2 ** 23, 2 ** 23 + 1, -2 ** 23])),
                                  [2 ** 23, -2 ** 23 + 1, 2 ** 23])


def _luts(S=12):
    return fx.tanh_lut(S), fx.sigmoid_lut(S)


def test_lut_error_bounds():
    S = 12
    tanh, sig = _luts(S)
    x = np.linspace(-8, 8, 200_001)
    xi = np.floor(x * 2 ** S + 0.5).astype(np.int64)
    xr = xi / 2 ** S
    lsb = 2.0 ** -S
    # nearest entry on a 2^-8 grid: |f'| · 2^-9 plus half an output LSB (+ input rounding)
    err_t = np.abs(tanh(xi, S) * lsb - np.tanh(xr)).max()
    err_s = np.abs(sig(xi, S) * lsb - fx.sigmoid(xr)).max()
    assert err_t <= 1.0 * 2 ** -9 + lsb / 2 + 1e-12
    assert err_s <= 0.25 * 2 ** -9 + lsb / 2 + 1e-12
    assert err_t > 2 ** -11  # it really is a table, not the function
    # beyond the range the tables clamp: the error is that of the edge value
    far = np.array([20 * 2 ** S, -20 * 2 ** S])
    np.testing.assert_allclose(sig(far, S) * lsb, [1, 0], atol=fx.sigmoid(-8.0) + lsb)
    np.testing.assert_allclose(tanh(far, S) * lsb, [1, -1], atol=1 - np.tanh(8.0) + lsb)
    # the table indexes correctly from other input formats too
    np.testing.assert_array_equal(tanh(np.array([3 << 16]), 16), tanh(np.array([3 << 12]), 12))
    assert tanh.table.size == 4097 and tanh.x_min == -8.0 and tanh.x_max == 8.0


# ------------------------------------------------------------------- exact ties
def _tie_cases():
    """(name, step, params, state, a_in) where v (or f) lands exactly on the threshold."""
    th = 1 << 12
    tanh, sig = _luts()
    yield ("lava_lif", lava_lif_step,
           lambda c: LavaLIFParams(du=4095, dv=0, vth=64, compare=c),
           lambda p: p.initial_state(1, (1,)), 64)  # v = 64 << 6 == vth << 6
    yield ("linear_lif", linear_lif_step,
           lambda c: LinearLIFParams(frac_bits=12, decay=4096, theta=th, compare=c),
           lambda p: p.initial_state(1, (1,)), th)
    yield ("klif", klif_int_step,
           lambda c: KLIFParams(frac_bits=12, kd=2048, theta=th, compare=c),
           lambda p: p.initial_state(1, (1,)), th)
    yield ("arlif", arlif_int_step,
           lambda c: ARLIFParams(frac_bits=12, decay=2048, theta=th, tanh_a=0, c=0,
                                    compare=c, tanh=tanh, sigmoid=sig),
           lambda p: p.initial_state(1, (1,)), th)
    yield ("clif", clif_int_step,
           lambda c: CLIFParams(frac_bits=12, decay=2048, inv_tau=2048, theta=th,
                                   compare=c, sigmoid=sig),
           lambda p: p.initial_state(1, (1,)), th)
    yield ("alif", alif_int_step,
           lambda c: ALIFParams(frac_bits=12, alpha=2048, rho=2048, omr=2048,
                                   theta=th, beta=th, compare=c),
           lambda p: p.initial_state(1, (1,)), th)


@pytest.mark.parametrize("case", list(_tie_cases()), ids=lambda c: c[0])
def test_ties_follow_each_nodes_compare(case):
    _, step, make, init, a_in = case
    fired = {}
    for cmp in (">", ">="):
        p = make(cmp)
        s, _ = step(np.array([[a_in]]), init(p), p)
        fired[cmp] = int(s[0, 0])
        s, _ = step(np.array([[a_in + 1]]), init(p), p)
        assert s[0, 0] == 1  # one LSB above fires under both
        s, _ = step(np.array([[a_in - 1]]), init(p), p)
        assert s[0, 0] == 0
    assert fired == {">": 0, ">=": 1}


def test_tie_survives_quantization_end_to_end():
    """v = θ exactly after quantization: '>=' fires, '>' does not, like the reference."""
    for cmp in (">", ">="):
        g = _graph(N.DALIF(alpha=[1.0], beta=[0.5], v_threshold=[1.0], reset="hard",
                           compare=cmp), np.array([[0.5, 0.5]]), np.zeros(1), n_in=2, n_out=1)
        x = np.ones((1, 1, 2))  # v = 0.5 + 0.5 = 1.0 = v_th exactly
        ref = run_reference(g, x).numpy()
        out, _ = run_fixed_point(quantize(g), x)
        assert out[0, 0, 0] == ref[0, 0, 0] == (1.0 if cmp == ">=" else 0.0)


# --------------------------------------------------------------- agreement study
def _graph(neuron, w, b, n_in=NI, n_out=NO):
    nodes = {"in": nir.Input(np.array([n_in])), "fc": nir.Affine(w, b), "neu": neuron,
             "out": nir.Output(np.array([n_out]))}
    return nir.NIRGraph(nodes, [("in", "fc"), ("fc", "neu"), ("neu", "out")],
                        metadata={"dt": 1.0})


def _q12(x):
    return np.round(np.asarray(x, dtype=np.float64) * 4096) / 4096


def _neuron(kind, rng):
    o = np.ones(NO)
    if kind == "LIF":
        return nir.LIF(tau=4096 / rng.integers(512, 3584, NO), r=o, v_leak=0 * o,
                       v_threshold=o, v_reset=0 * o)
    if kind == "IF":
        return nir.IF(r=o, v_threshold=o, v_reset=0 * o)
    if kind == "SubtractiveLIF":
        return N.SubtractiveLIF(tau=2 * o, r=2 * o, v_leak=0 * o, v_threshold=o)
    if kind.startswith("DALIF"):
        return N.DALIF(alpha=o, beta=_q12(rng.uniform(0.5, 0.95, NO)), v_threshold=o,
                       reset=kind.split("-")[1])
    if kind.startswith("KLIF"):
        return N.KLIF(tau=2 * o, k=_q12(rng.uniform(0.8, 1.5)) * o, v_threshold=o,
                      v_reset=0 * o, soft_reset=kind.endswith("soft"))
    if kind == "ARLIF":
        return N.ARLIF(decay=0.5 * o, v_threshold=o, tanh_a=_q12(rng.uniform(-0.8, 0.8, NO)),
                       c=_q12(rng.uniform(-2, 2, NO)))
    if kind == "ARLIF-memoryless":
        return N.ARLIF(decay=0.2 * o, v_threshold=o, tanh_a=_q12(rng.uniform(-0.8, 0.8, NO)),
                       c=_q12(rng.uniform(-2, 2, NO)), memoryless_m=True, compare=">")
    if kind == "CLIF":
        return N.CLIF(tau=2 * o, v_threshold=o)
    if kind == "ALIF":
        return N.ALIF(alpha=_q12(rng.uniform(0.6, 0.95, NO)),
                      rho=_q12(rng.uniform(0.8, 0.99, NO)), v_threshold=o,
                      beta=_q12(rng.uniform(0, 1, NO)))
    raise AssertionError(kind)


@functools.cache
def _agreement(kind: str, snapped: bool, graded: bool, seeds: int = 10) -> float:
    """Fraction of identical spikes, fixed point vs float64 reference, over ``seeds``
    random Input→Affine→neuron graphs (64 neurons, B = 8, T = 8).

    ``snapped``: the float weights are put on the 8-bit mantissa grid the quantizer picks
    (and the biases on a 2^-12 grid) so that the measurement isolates the neuron's integer
    arithmetic (state rounding, 12-bit decays, LUTs); otherwise the weights are raw
    N(0, 0.3) floats and the 8-bit weight mantissa adds its own error.
    ``graded``: real-valued inputs on a 2^-8 grid (input_frac_bits = 8), else spikes.
    """
    same = total = 0
    cfg = QuantConfig(input_frac_bits=8) if graded else QuantConfig()
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        neuron = _neuron(kind, rng)
        w = rng.normal(0, 0.3, (NO, NI))
        b = rng.normal(0.1, 0.1, NO)
        if graded:
            x = np.floor(rng.random((T, B, NI)) * 256) / 256
        else:
            x = (rng.random((T, B, NI)) < 0.3).astype(np.float64)
        g = _graph(neuron, w, b)
        qg = quantize(g, cfg)
        if snapped:
            syn = qg.layers["fc"]
            gain = syn.gain if syn.gain is not None else np.ones(NO)
            g = _graph(neuron, syn.mant * 2.0 ** -syn.mant_frac / gain[:, None], _q12(b))
            qg = quantize(g, cfg)
            assert qg.report["fc"].max_abs_error < 1e-12
        ref = run_reference(g, x).numpy()
        out, _ = run_fixed_point(qg, x)
        same += int((ref == out).sum())
        total += ref.size
    return same / total


KINDS = ["LIF", "IF", "SubtractiveLIF", "DALIF-hard", "DALIF-soft", "KLIF-hard", "KLIF-soft",
         "ARLIF", "ARLIF-memoryless", "CLIF", "ALIF"]
#: Required agreement of the integer arithmetic (snapped weights) at T = 8.
FLOOR = {"ARLIF": 0.995, "ARLIF-memoryless": 0.995, "CLIF": 0.995}


@pytest.mark.parametrize("graded", [False, True], ids=["spikes", "real"])
@pytest.mark.parametrize("kind", KINDS)
def test_agreement_with_reference_integer_arithmetic(kind, graded):
    """Integer neuron arithmetic vs float64: ≥ 99.9 % identical spikes (LIF family, DA-LIF,
    KLIF, ALIF), ≥ 99.5 % (AR-LIF, CLIF). Measured (10 graphs each): all ≥ 99.98 %."""
    assert _agreement(kind, True, graded) >= FLOOR.get(kind, 0.999)


@pytest.mark.parametrize("graded", [False, True], ids=["spikes", "real"])
@pytest.mark.parametrize("kind", KINDS)
def test_agreement_with_reference_raw_weights(kind, graded):
    """Raw float weights rounded to 8-bit mantissas: measured 98.9-99.9 % (see report);
    this guards against regressions, the figure itself goes to the README."""
    assert _agreement(kind, False, graded) >= 0.985


# --------------------------------------------------------------- graph features
def test_conv_pool_flatten_graph():
    rng = np.random.default_rng(1)
    conv = nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 0.4, (4, 2, 3, 3)), stride=1,
                      padding=1, dilation=1, groups=1, bias=rng.normal(0, 0.1, 4))
    tau = np.array(np.broadcast_to(np.array([2.0, 4.0, 2.0, 8.0])[:, None, None], (4, 4, 4)))
    o = np.ones((4, 4, 4))
    nodes = {
        "in": nir.Input(np.array([2, 8, 8])), "conv": conv,
        "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "lif": nir.LIF(tau=tau, r=o, v_leak=0 * o, v_threshold=0.3 * o, v_reset=0 * o),
        "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(rng.normal(0, 0.3, (10, 64)), rng.normal(0, 0.1, 10)),
        "li": nir.LI(tau=4 * np.ones(10), r=np.ones(10), v_leak=np.zeros(10)),
        "out": nir.Output(np.array([10])),
    }
    edges = [("in", "conv"), ("conv", "pool"), ("pool", "lif"), ("lif", "flat"),
             ("flat", "fc"), ("fc", "li"), ("li", "out")]
    g = nir.NIRGraph(nodes, edges, metadata={"dt": 1.0})
    x = (rng.random((T, B, 2, 8, 8)) < 0.4).astype(np.float64)
    qg = quantize(g)
    # the per-channel gain dt/τ and the 1/4 of average pooling fold into the conv weights
    assert qg.layers["conv"].gain is not None and qg.layers["lif"].params.in_gain is None
    assert not qg.layers["lif"].lava_issues or all("varies" in i
                                                   for i in qg.layers["lif"].lava_issues)
    out, rec = run_fixed_point(qg, x)
    _, ref_rec = run_reference(g, x, record=True)
    ref_s = ref_rec["lif"].output.numpy()
    assert (rec["lif"].output == ref_s).mean() > 0.99
    # the LI readout, fed the same spikes, differs only by the 8-bit weights and rounding
    tail = nir.NIRGraph({"in": nir.Input(np.array([64])), "fc": nodes["fc"],
                         "li": nodes["li"], "out": nodes["out"]},
                        [("in", "fc"), ("fc", "li"), ("li", "out")], metadata={"dt": 1.0})
    ref_out = run_reference(tail, rec["lif"].output.reshape(T, B, 64).astype(float)).numpy()
    assert np.abs(out - ref_out).max() < 0.02 * np.abs(ref_out).max()
    # integer conv equals torch's on the same integers
    syn = qg.layers["conv"]
    xi = rec["conv"].input[0]
    want = torch.nn.functional.conv2d(torch.as_tensor(xi, dtype=torch.float64),
                                      torch.as_tensor(syn.mant, dtype=torch.float64), padding=1)
    np.testing.assert_array_equal(rec["conv"].output[0],
                                  fx.shift_floor(want.numpy().astype(np.int64), syn.w_exp))


def test_residual_sum_reset_and_init():
    """Two weighted paths into one LIF (edges sum), v_reset ≠ 0 and v_init metadata."""
    rng = np.random.default_rng(2)
    o = np.ones(NO)
    lif = nir.LIF(tau=2 * o, r=o, v_leak=0.2 * o, v_threshold=o, v_reset=-0.25 * o,
                  metadata={"v_init": -0.25 * o})
    nodes = {"in": nir.Input(np.array([NI])),
             "a": nir.Affine(rng.normal(0, 0.3, (NO, NI)), rng.normal(0, 0.1, NO)),
             "b": nir.Linear(rng.normal(0, 0.3, (NO, NI))), "lif": lif,
             "out": nir.Output(np.array([NO]))}
    g = nir.NIRGraph(nodes, [("in", "a"), ("in", "b"), ("a", "lif"), ("b", "lif"),
                             ("lif", "out")], metadata={"dt": 1.0})
    x = (rng.random((T, B, NI)) < 0.3).astype(np.float64)
    qg = quantize(g)
    assert qg.layers["a"].out_frac == qg.layers["b"].out_frac == qg.layers["lif"].in_frac
    out, rec = run_fixed_point(qg, x)
    ref = run_reference(g, x).numpy()
    assert (out == ref).mean() > 0.99
    S = qg.layers["lif"].frac_bits
    # v is stored shifted by −v_reset: reference v = int·2^-S + v_reset
    v_ref = run_reference(g, x, record=True)[1]["lif"].states["v"].numpy()
    v_fix = rec["lif"].states["v"] * 2.0 ** -S - 0.25
    close = np.abs(v_fix - v_ref) < 0.05
    assert close.mean() > 0.97


def test_cubalif_and_outputs_real_valued():
    rng = np.random.default_rng(4)
    o = np.ones(NO)
    cuba = nir.CubaLIF(tau_syn=4 * o, tau_mem=2 * o, r=o, v_leak=0 * o, v_threshold=0.5 * o,
                       v_reset=0 * o, w_in=o)
    g = _graph(cuba, rng.normal(0, 0.4, (NO, NI)), rng.normal(0, 0.1, NO))
    x = (rng.random((T, B, NI)) < 0.3).astype(np.float64)
    qg = quantize(g)
    p = qg.layers["neu"].params
    assert np.all(p.du == 1023) and p.a_bias is not None  # gs = 1/4; synapse bias enters u
    out, _ = run_fixed_point(qg, x)
    assert (out == run_reference(g, x).numpy()).mean() > 0.99
    # an Affine straight into an Output: exact integer sums plus the bias
    ga = nir.NIRGraph({"in": nir.Input(np.array([NI])),
                       "fc": nir.Affine(rng.normal(0, 0.4, (5, NI)), rng.normal(0, 1, 5)),
                       "out": nir.Output(np.array([5]))},
                      [("in", "fc"), ("fc", "out")], metadata={"dt": 1.0})
    out, _ = run_fixed_point(quantize(ga), x[:, :, :NI])
    ref = run_reference(ga, x).numpy()
    assert np.abs(out - ref).max() < 0.05


def test_records_and_saturation_counts():
    o = np.ones(4)
    g = _graph(N.DALIF(alpha=o, beta=o, v_threshold=o, reset="hard"),
               np.full((4, 2), -100.0), np.zeros(4), n_in=2, n_out=4)
    qg = quantize(g, QuantConfig(headroom=1.0))
    x = np.ones((40, 2, 2))  # integrates −200 per step, never fires: leaves the range
    _, rec = run_fixed_point(qg, x)
    r = rec["neu"]
    assert set(r.states) == {"v"} and r.states["v"].dtype == np.int64
    assert r.states["v"].shape == (40, 2, 4)
    assert r.saturations["v"] > 0 and saturation_counts(rec)["neu"] == r.n_saturations
    assert r.states["v"].min() == -(2 ** 23 - 1)
    assert r.frac_bits["v"] == qg.layers["neu"].frac_bits
    np.testing.assert_allclose(r.real("input")[0, 0], -200.0)


# ------------------------------------------------------------- report and errors
def test_report_per_layer():
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.3, (NO, NI))
    w[0, 0] = 1e-6  # rounds to zero
    o = np.ones(NO)
    g = _graph(nir.LIF(tau=2 * o, r=o, v_leak=0 * o, v_threshold=o, v_reset=0 * o), w,
               np.zeros(NO))
    qg = quantize(g, QuantConfig.from_profile({"quantization": PROFILE_TABLE}))
    rep = qg.report["fc"]
    assert rep.scale["w_exp"] == qg.layers["fc"].w_exp
    assert rep.zeroed >= 1
    assert 0 < rep.max_abs_error <= 2.0 ** -(rep.scale["mantissa_frac_bits"] + 1) / 0.5 + 1e-12
    assert np.abs(qg.layers["fc"].mant).max() <= 127
    nrep = qg.report["neu"]
    assert nrep.scale["frac_bits"] == qg.layers["neu"].frac_bits
    assert nrep.fields["v_threshold"].max_abs_error == 0.0
    assert {d["name"] for d in qg.summary()} == {"fc", "neu", "out"}
    assert qg.layers["neu"].lava_issues == []  # stock Lava LIF can run it exactly


def test_quantization_errors_name_node_and_field():
    o = np.ones(NO)
    w = np.random.default_rng(0).normal(0, 0.3, (NO, NI))
    lif = nir.LIF(tau=2 * o, r=o, v_leak=0 * o, v_threshold=o, v_reset=0 * o)
    bad = w.copy()
    bad[3, 4] = np.nan
    with pytest.raises(QuantizationError, match=r"'fc'.*weight"):
        quantize(_graph(lif, bad, np.zeros(NO)))
    with pytest.raises(QuantizationError, match=r"'neu'.*v_threshold"):
        quantize(_graph(N.ARLIF(decay=0.5 * o, v_threshold=1e4 * o, tanh_a=0 * o, c=o), w,
                        np.zeros(NO)))
    with pytest.raises(QuantizationError, match=r"'neu'.*tanh_a"):
        quantize(_graph(N.ARLIF(decay=0.5 * o, v_threshold=o, tanh_a=np.inf * o, c=o), w,
                        np.zeros(NO)))
    with pytest.raises(QuantizationError, match=r"'neu'.*bias"):
        quantize(_graph(N.CLIF(tau=2 * o, v_threshold=o), w, np.full(NO, 1e5)))
    g = _graph(lif, w, np.zeros(NO))
    g.nodes["fc2"] = nir.Linear(np.eye(NO))
    g.edges = [("in", "fc"), ("fc", "fc2"), ("fc2", "neu"), ("neu", "out")]
    with pytest.raises(QuantizationError, match="'fc'.*'fc2'"):
        quantize(g)
    g = _graph(lif, w, np.zeros(NO))
    g.nodes["sc"] = nir.Scale(np.ones(NO))
    g.edges = [("in", "fc"), ("fc", "sc"), ("sc", "neu"), ("neu", "out")]
    with pytest.raises(QuantizationError, match="'sc'"):
        quantize(g)


def test_config_from_profile():
    cfg = QuantConfig.from_profile({"quantization": PROFILE_TABLE})
    assert cfg == QuantConfig()
    assert QuantConfig.from_profile(PROFILE_TABLE, input_frac_bits=8).input_frac_bits == 8
    for key in PROFILE_TABLE:
        table = {k: v for k, v in PROFILE_TABLE.items() if k != key}
        with pytest.raises(ProfileError, match=f"quantization.{key}"):
            QuantConfig.from_profile({"quantization": table})
    fb = {k: v for k, v in DEFAULT_FRAC_BITS.items() if k != "klif"}
    with pytest.raises(ProfileError, match="frac_bits.klif"):
        QuantConfig.from_profile({**PROFILE_TABLE, "frac_bits": fb})
    with pytest.raises(ProfileError, match="weight_bits"):
        QuantConfig.from_profile({**PROFILE_TABLE, "weight_bits": "8"})
    with pytest.raises(ProfileError, match="quantization"):
        QuantConfig.from_profile({"energy": {}})
    with pytest.raises(ProfileError, match="not found"):
        QuantConfig.from_profile("no-such-target")


def test_config_from_shipped_loihi2_profile():
    try:
        cfg = QuantConfig.from_profile("loihi2")
    except ProfileError as exc:  # the shipped profile is written by another module
        pytest.skip(f"loihi2 profile not usable: {exc}")
    assert cfg.weight_bits == 8 and cfg.state_bits == 24 and cfg.frac_bits["arlif"] >= 12
