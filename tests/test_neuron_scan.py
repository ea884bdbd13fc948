"""Every integer model with a whole-sequence ``scan`` equals its own ``step`` run in a loop
(the specification), bit for bit: outputs, final state, the state after every step, and
the saturation counts, on random integer inputs large enough to clip and wrap, with
per-neuron and scalar parameters, both firing conventions, input gains and biases. A model
without ``scan`` (FloorLIF, a test-only neuron) keeps the per-step path in the emulator
(tests/test_emulator.py runs it against the golden model)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nirbridge import fixed_point as fx
from nirbridge.errors import InvalidParameterError
from nirbridge.neurons import NEURONS
from nirbridge.neurons.lava_lif import LAVA_LIF_MODEL, LavaLIFParams
from nirbridge.neurons.sublif import LINEAR_LIF_MODEL, LinearLIFParams

sys.path.insert(0, str(Path(__file__).parent))
import example_neuron  # noqa: E402, F401  (registers FloorLIF)

SHAPE = (3, 5)
BATCH = 3
STEPS = 12


def _arr(rng, lo, hi, per_neuron):
    return rng.integers(lo, hi, SHAPE) if per_neuron else np.int64(rng.integers(lo, hi))


def _lava_params(rng, variant: int) -> LavaLIFParams:
    pn = variant % 2 == 0
    return LavaLIFParams(
        du=_arr(rng, 0, 4096, pn), dv=_arr(rng, 0, 4096, pn),
        bias_mant=_arr(rng, -4096, 4096, pn), bias_exp=_arr(rng, 0, 8, pn),
        vth=None if variant == 3 else _arr(rng, 0, 1 << 17, pn),
        compare=">=" if variant % 3 == 1 else ">",
        in_gain=_arr(rng, -6000, 6000, pn) if variant >= 2 else None,
        gain_frac=(12, 0, 5, 12)[variant],
        a_bias=_arr(rng, -2000, 2000, pn) if variant in (1, 2) else None,
        u_init=_arr(rng, -1000, 1000, pn), v_init=_arr(rng, -1000, 1000, pn))


def _linear_params(rng, variant: int) -> LinearLIFParams:
    pn = variant % 2 == 0
    return LinearLIFParams(
        frac_bits=8, act_shift=(0, 3, 6, 1)[variant], decay=_arr(rng, 0, 4097, pn),
        theta=_arr(rng, 1, 1 << 20, pn), reset=("soft", "hard", "subtract", "hard")[variant],
        v_reset=_arr(rng, -100, 100, pn), v_init=_arr(rng, -1 << 20, 1 << 20, pn),
        bias=_arr(rng, -(1 << 18), 1 << 18, pn), compare=">=" if variant % 2 else ">",
        in_gain=_arr(rng, -9000, 9000, pn) if variant >= 2 else None,
        gain_frac=(12, 12, 0, 7)[variant])


#: Random parameters for every model that has a scan (a new scan needs an entry here).
PARAMS = {LAVA_LIF_MODEL.kind: _lava_params, LINEAR_LIF_MODEL.kind: _linear_params}


def _models():
    return sorted({s.integer.kind: s.integer for s in NEURONS.values()
                   if s.integer is not None and s.integer.scan is not None}.items())


def test_every_model_with_a_scan_is_tested_and_floor_lif_has_none():
    kinds = [k for k, _ in _models()]
    assert set(kinds) == set(PARAMS), "give every model with a scan random parameters here"
    assert NEURONS["FloorLIF"].integer.scan is None


def _step_loop(model, a, params):
    sat = fx.SaturationCounter()
    state = params.initial_state(a.shape[1], a.shape[2:])
    outs, traces = [], {f: [] for f in model.state_fields}
    for x in a:
        y, state = model.step(x, state, params, sat)
        outs.append(np.asarray(y))
        for f in model.state_fields:
            traces[f].append(np.asarray(getattr(state, f)))
    return np.stack(outs), state, {f: np.stack(v) for f, v in traces.items()}, sat.counts


@pytest.mark.parametrize("kind", sorted(PARAMS))
@pytest.mark.parametrize("variant", range(4))
@pytest.mark.parametrize("scale", [1 << 6, 1 << 17, 1 << 24])
def test_scan_equals_the_step_loop(kind, variant, scale):
    model = dict(_models())[kind]
    rng = np.random.default_rng([variant, scale])
    params = PARAMS[kind](rng, variant)
    a = rng.integers(-scale, scale, (STEPS, BATCH, *SHAPE))
    gold_out, gold_state, gold_trace, gold_sat = _step_loop(model, a, params)
    sat = fx.SaturationCounter()
    state0 = params.initial_state(BATCH, SHAPE)
    out, state, trace = model.scan(a, state0, params, sat, True)
    assert out.dtype == np.int64 and out.shape == gold_out.shape
    np.testing.assert_array_equal(out, gold_out)
    for f in model.state_fields:
        np.testing.assert_array_equal(getattr(state, f), getattr(gold_state, f), err_msg=f)
        np.testing.assert_array_equal(trace[f], gold_trace[f], err_msg=f)
    assert sat.counts == gold_sat
    # the state passed in is not written into, and no trace is made unless asked for
    np.testing.assert_array_equal(state0[0], params.initial_state(BATCH, SHAPE)[0])
    out2, _, none = model.scan(a, state0, params, None, False)
    np.testing.assert_array_equal(out2, gold_out)
    assert none == {}


def test_saturating_inputs_are_counted():
    rng = np.random.default_rng(7)
    params = _lava_params(rng, 0)
    a = rng.integers(-(1 << 24), 1 << 24, (STEPS, BATCH, *SHAPE))
    sat = fx.SaturationCounter()
    LAVA_LIF_MODEL.scan(a, params.initial_state(BATCH, SHAPE), params, sat, False)
    assert sat.counts["u"] > 0 and sat.counts["v"] > 0


def test_empty_sequence_and_bad_settings():
    rng = np.random.default_rng(3)
    params = _linear_params(rng, 0)
    sat = fx.SaturationCounter()
    a = np.zeros((0, BATCH, *SHAPE), dtype=np.int64)
    out, state, _ = LINEAR_LIF_MODEL.scan(a, params.initial_state(BATCH, SHAPE), params, sat,
                                          False)
    assert out.shape == a.shape and sat.counts == {}
    params.reset = "sideways"
    a = np.zeros((2, BATCH, *SHAPE), dtype=np.int64)
    with pytest.raises(InvalidParameterError, match="reset"):
        LINEAR_LIF_MODEL.scan(a, params.initial_state(BATCH, SHAPE), params, sat, False)
    lava = _lava_params(rng, 0)
    lava.compare = "=="
    with pytest.raises(InvalidParameterError, match="compare"):
        LAVA_LIF_MODEL.scan(a, lava.initial_state(BATCH, SHAPE), lava, sat, False)


@pytest.mark.parametrize("kind", sorted(PARAMS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scan_reads_float_integers_and_writes_float_spikes(kind, dtype):
    """The emulator's float synapse output (integers a float holds exactly) read as it is,
    and spikes written as float32: the same integers as the int64 scan."""
    model = dict(_models())[kind]
    rng = np.random.default_rng([5, np.dtype(dtype).itemsize])
    for variant in range(4):
        params = PARAMS[kind](rng, variant)
        a = rng.integers(-(1 << 23), 1 << 23, (STEPS, BATCH, *SHAPE))
        state0 = params.initial_state(BATCH, SHAPE)
        sat, sat_f = fx.SaturationCounter(), fx.SaturationCounter()
        gold, gold_state, gold_trace = model.scan(a, state0, params, sat, True)
        out, state, trace = model.scan(a.astype(dtype), state0, params, sat_f, True,
                                       np.float32)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out.astype(np.int64), gold)
        for f in model.state_fields:
            np.testing.assert_array_equal(getattr(state, f), getattr(gold_state, f))
            np.testing.assert_array_equal(trace[f], gold_trace[f])
        assert sat_f.counts == sat.counts


def test_scan_refuses_an_output_dtype_that_would_round():
    rng = np.random.default_rng(8)
    graded = _lava_params(rng, 3)  # vth None: the output is v, up to 2^(state_bits-1)
    a = rng.integers(-100, 100, (STEPS, BATCH, *SHAPE))
    out, _, _ = LAVA_LIF_MODEL.scan(a, graded.initial_state(BATCH, SHAPE), graded, None,
                                    False, np.float32)  # 24-bit state: float32 holds it
    gold, _, _ = LAVA_LIF_MODEL.scan(a, graded.initial_state(BATCH, SHAPE), graded)
    np.testing.assert_array_equal(out.astype(np.int64), gold)
    graded.state_bits = 32
    with pytest.raises(InvalidParameterError, match="out_dtype"):
        LAVA_LIF_MODEL.scan(a, graded.initial_state(BATCH, SHAPE), graded, None, False,
                            np.float32)
    spiking = _linear_params(rng, 0)
    with pytest.raises(InvalidParameterError, match="out_dtype"):
        LINEAR_LIF_MODEL.scan(a, spiking.initial_state(BATCH, SHAPE), spiking, None, False,
                              np.float16)
