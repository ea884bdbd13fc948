"""The batched emulator (``nirbridge.quantize.emulator``, the ``fixed`` backend) equals the
numpy golden model :func:`nirbridge.quantize.run_fixed_point` integer by integer: every
recorded node's input, output and states, the saturation counts, the outputs, on every
registered neuron (the test-only FloorLIF included, recurrent branches too), the digits
conv net, a recurrent graph with delays, in chunks of any size; and its exact integer
kernels equal int64 arithmetic where no float kernel would be exact. (Lava fixed_pt
equals the golden model: tests/test_lava_fixed.py, test_registry.py.)"""

from __future__ import annotations

import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import nirbridge
from nirbridge import fixed_point as fx
from nirbridge.backends import get
from nirbridge.errors import InputError, InvalidParameterError
from nirbridge.examples import DigitsConvSNN
from nirbridge.neurons import NEURONS
from nirbridge.quantize import QuantConfig, quantize, run_fixed_point
from nirbridge.quantize.emulator import (
    _quantize_input,
    _synapse,
    int_conv,
    int_linear,
    run_emulated,
)
from nirbridge.quantize.executor import _int_conv, quantize_input
from nirbridge.quantize.graph import QuantizedInput, QuantizedSynapse

sys.path.insert(0, str(Path(__file__).parent))
import example_neuron  # noqa: E402, F401  (registers FloorLIF)
from test_recurrence_lava import recurrent_graph  # noqa: E402
from test_registry import _model, _side_by_side, _with_recurrence  # noqa: E402


def _assert_equal_runs(gold_out, gold, emu) -> None:
    if isinstance(gold_out, dict):
        assert gold_out.keys() == emu.outputs.keys()
        for k in gold_out:
            np.testing.assert_array_equal(emu.outputs[k], gold_out[k], err_msg=k)
    else:
        np.testing.assert_array_equal(emu.outputs, gold_out)
    assert emu.records.keys() == gold.keys()
    for n, g in gold.items():
        e = emu.records[n]
        assert e.output.dtype == np.int64, n
        np.testing.assert_array_equal(e.output, g.output, err_msg=f"{n}: output")
        if g.input is None:
            assert e.input is None, n
        else:
            np.testing.assert_array_equal(e.input, g.input, err_msg=f"{n}: input")
        assert e.states.keys() == g.states.keys(), n
        for f, v in g.states.items():
            np.testing.assert_array_equal(e.states[f], v, err_msg=f"{n}: state {f}")
        assert e.frac_bits == g.frac_bits, n
        assert e.saturations == g.saturations, n
        if n in emu.saturations:
            assert emu.saturations[n] == g.saturations, n


@pytest.mark.parametrize("kind", ["scalar", "per_channel"])
def test_every_registered_neuron_with_and_without_recurrence(kind):
    models = {name: _model(name, kind, seed=i) for i, name in enumerate(sorted(NEURONS))}
    graphs = {name: nirbridge.to_nir(m, torch.zeros(1, 4, dtype=torch.float64), dt=1.0)
              for name, m in models.items()}
    graph = _with_recurrence(_side_by_side(graphs), list(graphs))
    x = np.random.default_rng(1).normal(0.3, 1.0, (10, 3, 4))
    q = quantize(graph, QuantConfig.from_profile("loihi2", input_frac_bits=8))
    gold_out, gold = run_fixed_point(q, x)
    emu = run_emulated(q, x, record=True, batch_size=2)  # two chunks: 2 + 1 samples
    _assert_equal_runs(gold_out, gold, emu)
    assert "n_FloorLIF" in emu.records and "nr_FloorLIF" in emu.records
    spiking = [f"n_{n}" for n, s in NEURONS.items() if s.spiking]
    assert all(0 < emu.records[n].output.mean() < 1 for n in spiking)


@pytest.mark.parametrize("neuron", ["lif", "arlif", "klif", "dalif", "clif"])
def test_digits_conv_net_in_uneven_chunks(neuron):
    torch.manual_seed(0)
    graph = nirbridge.to_nir(DigitsConvSNN(neuron).eval(), torch.zeros(1, 1, 8, 8))
    x = np.floor(np.random.default_rng(2).random((8, 5, 1, 8, 8)) * 17) / 16 * 2
    q = quantize(graph, QuantConfig.from_profile("loihi2", input_frac_bits=8))
    gold_out, gold = run_fixed_point(q, x)
    for bs in (None, 2, 5):
        _assert_equal_runs(gold_out, gold, run_emulated(q, x, record=True, batch_size=bs))
    spikes = [n for n in gold if n.startswith("sn")]
    assert sum(int(gold[n].output.sum()) for n in spikes) > 0


def test_recurrent_graph_with_delays():
    graph = recurrent_graph()
    x = np.random.default_rng(1).normal(0.4, 1.0, (12, 3, graph.nodes["input"].input_type[
        "input"][0]))
    q = quantize(graph, QuantConfig.from_profile("loihi2", input_frac_bits=8))
    gold_out, gold = run_fixed_point(q, x)
    _assert_equal_runs(gold_out, gold, run_emulated(q, x, record=True, batch_size=2))


def test_saturation_counts_through_the_backend():
    """Inputs beyond the input format and drives beyond the state width: the ``fixed``
    backend's per-node counts and quantization rows equal the golden model's."""
    rng = np.random.default_rng(3)
    lif = nir.LIF(tau=np.full(5, 4.0), r=np.ones(5), v_leak=np.zeros(5),
                  v_threshold=np.full(5, 1.0), v_reset=np.zeros(5))
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])),
               "fc": nir.Affine(rng.normal(0, 40.0, (5, 3)), np.zeros(5)), "lif": lif,
               "output": nir.Output(np.array([5]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], metadata={"dt": 1.0},
        type_check=False)
    cfg = QuantConfig.from_profile("loihi2", input_frac_bits=8, input_max=1.0)
    x = rng.normal(0, 150.0, (6, 4, 3))  # the 16-bit input holds ±128
    q = quantize(graph, cfg)
    gold_out, gold = run_fixed_point(q, x)
    res = get("fixed").run(graph, x, quant=q, batch_size=3, record=True)
    assert gold["input"].saturations["input"] > 0 and gold["lif"].n_saturations > 0
    assert res.info["saturations"] == {"lif": gold["lif"].saturations}
    rows = {r["node"]: r["saturated"] for r in res.info["quantization"]}
    assert rows["input"] == gold["input"].n_saturations and rows["lif"] == gold["lif"].n_saturations
    np.testing.assert_array_equal(res.outputs, gold_out)
    _assert_equal_runs(gold_out, gold, run_emulated(q, x, record=True, batch_size=3))


def test_exact_kernels_beyond_float64():
    """Operands whose sums pass 2^53: the limb path equals int64 arithmetic, dense and
    conv (a float64 kernel alone would round them)."""
    rng = np.random.default_rng(4)
    w = rng.integers(-255, 256, (7, 40))
    x = rng.integers(-(1 << 45), 1 << 45, (9, 40))
    np.testing.assert_array_equal(int_linear(torch.from_numpy(x), w).numpy(), x @ w.T)
    wc = rng.integers(-255, 256, (4, 2, 3, 3))
    xc = rng.integers(-(1 << 44), 1 << 44, (3, 2, 6, 6))
    syn = type("Syn", (), dict(mant=wc, padding=(1, 1), stride=(2, 1), dilation=(1, 2),
                               groups=1))()
    got = int_conv(torch.from_numpy(xc), wc, stride=(2, 1), padding=(1, 1), dilation=(1, 2),
                   groups=1).numpy()
    np.testing.assert_array_equal(got, _int_conv(xc, syn))
    assert float(np.abs(got).max()) > 2.0 ** 53


def test_device_and_batch_size_are_checked():
    graph = nirbridge.to_nir(DigitsConvSNN("lif").eval(), torch.zeros(1, 1, 8, 8))
    q = quantize(graph, QuantConfig.from_profile("loihi2", input_frac_bits=8))
    x = np.zeros((2, 1, 1, 8, 8))
    with pytest.raises(InvalidParameterError, match="batch_size"):
        run_emulated(q, x, batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="CUDA"):
            run_emulated(q, x, device="cuda")
        assert "CUDA" in get("fixed").check(graph, device="cuda")[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_the_golden_model():
    torch.manual_seed(0)
    graph = nirbridge.to_nir(DigitsConvSNN("lif").eval(), torch.zeros(1, 1, 8, 8))
    x = np.floor(np.random.default_rng(2).random((8, 4, 1, 8, 8)) * 17) / 16 * 2
    q = quantize(graph, QuantConfig.from_profile("loihi2", input_frac_bits=8))
    gold_out, gold = run_fixed_point(q, x)
    _assert_equal_runs(gold_out, gold, run_emulated(q, x, record=True, device="cuda"))


@pytest.mark.parametrize("w_exp", [-40, -3, 0, 2, 30])
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float64, torch.int64])
def test_weighted_layers_in_float_equal_int64(w_exp, x_dtype):
    """A weighted layer's shift and bias done in the kernel's float (where the bound holds)
    or in int64 (where it does not: w_exp = 30 passes 2^53 in float64): either way the
    integers of int64 arithmetic, ``shift_floor(x ⊛ mant, w_exp) + bias``."""
    rng = np.random.default_rng([w_exp + 50, x_dtype.itemsize])
    cases = [(nir.Affine(np.zeros((6, 9)), np.zeros(6)), rng.integers(-127, 128, (6, 9)),
              rng.integers(-50, 50, (4, 3, 9)), rng.integers(-999, 999, 6)),
             (nir.Conv2d(None, np.zeros((4, 2, 3, 3)), 1, 1, 1, 1, np.zeros(4)),
              rng.integers(-127, 128, (4, 2, 3, 3)), rng.integers(-50, 50, (4, 3, 2, 5, 5)),
              rng.integers(-999, 999, (4, 5, 5)))]
    for node, mant, x, bias in cases:
        conv = mant.ndim == 4
        layer = QuantizedSynapse("syn", "Affine", mant, w_exp, 0, 0, 0, "lif",
                                 stride=(1, 1) if conv else (), padding=(1, 1) if conv else (),
                                 dilation=(1, 1) if conv else (), bias=bias)
        if conv:
            prod = _int_conv(x.reshape(-1, *x.shape[2:]), layer).reshape(4, 3, 4, 5, 5)
        else:
            prod = x @ mant.T
        want = (prod << w_exp if w_exp >= 0 else prod >> -w_exp) + bias
        y, bound = _synapse(node, layer, torch.from_numpy(x).to(x_dtype), None, {})
        assert (y.dtype == torch.int64) == (w_exp == 30)
        np.testing.assert_array_equal(y.to(torch.int64).numpy(), want)
        assert float(np.abs(want).max()) <= bound


@pytest.mark.parametrize("bits", [8, 16, 40, 60])
def test_input_quantization_equals_the_golden_model(bits):
    """Rounding half up and saturation, in float (float32 below 2^24, float64 below 2^53)
    or int64: the golden model's integers and counts, NaN and inf refused."""
    rng = np.random.default_rng(bits)
    layer = QuantizedInput("input", 6, bits)
    lim = (1 << (bits - 1)) - 1
    for x in (np.round(rng.normal(0, 4, (5, 3, 7)) * 128) / 128,  # ties: k + 1/2 at 2^6
              rng.normal(0, lim * 2.0 ** -6 * 1.5, (5, 3, 7)),  # saturates
              np.array([1e300, -1e300, 2.0 ** 70, -0.0, 0.5 / 64]).reshape(1, 1, 5)):
        gold_sat, sat = fx.SaturationCounter(), fx.SaturationCounter()
        gold = quantize_input(x, layer, gold_sat)
        q, bound = _quantize_input(torch.from_numpy(x), layer, sat)
        # a chunk of samples, read where it lies: the golden model's integers for them
        part, _ = _quantize_input(torch.from_numpy(x), layer, fx.SaturationCounter(),
                                  None, 1, 3)
        np.testing.assert_array_equal(part.to(torch.int64).numpy(), gold[:, 1:3])
        assert q.dtype == (torch.float32 if bits <= 24 else torch.float64 if bits <= 53
                           else torch.int64)
        np.testing.assert_array_equal(q.to(torch.int64).numpy(), gold)
        assert sat.counts == gold_sat.counts
        assert np.abs(gold).max() <= bound
    for bad in (np.nan, np.inf):
        with pytest.raises(InputError, match="'input'.*NaN or inf"):
            _quantize_input(torch.full((2, 1, 3), bad), layer, fx.SaturationCounter())


def test_aligned_sums_in_float_equal_int64():
    """A neuron summing inputs of different formats (a residual edge): aligned in float
    (left shifts as products, rounding right shifts as floors) where every step is exact,
    float64 where float32's 2^24 would round, int64 where even float64's would."""
    from types import SimpleNamespace

    from nirbridge.quantize.emulator import _align, _Chunk

    rng = np.random.default_rng(9)
    spikes = rng.integers(0, 2, (5, 3, 7))
    cases = [(1 << 12, torch.float32, 10, torch.float32),  # right shift by 2, float32
             ((1 << 23) - 1, torch.float32, 4, torch.float64),  # << 4 passes 2^24
             (1 << 50, torch.float64, 4, None)]  # << 4 passes 2^53: int64
    for big, dtype, frac, want_dtype in cases:
        graded = rng.integers(-big, big, (5, 3, 7))
        graded[0, 0, :4] = [2, -2, 6, -6]  # ties of a rounding right shift by 2
        q = SimpleNamespace(graph=SimpleNamespace(nodes={}), preds={"n": ["s", "g"]})
        chunk = _Chunk(q, set(), torch.device("cpu"), {"s": 1.0, "g": float(big)}, {})
        chunk.values = {"s": (torch.from_numpy(spikes).float(), 6),
                        "g": (torch.from_numpy(graded).to(dtype), frac)}
        want = (_align(torch.from_numpy(spikes), 6, 8)
                + _align(torch.from_numpy(graded), frac, 8))
        got = chunk._float_sum("n", 8)
        if want_dtype is None:
            assert got is None
            got = chunk._sum("n", 8)
        assert got.dtype == (want_dtype or torch.int64)
        np.testing.assert_array_equal(got.to(torch.int64).numpy(), want.numpy())
