"""The verify core (:func:`nirbridge.verify.compare`) against every backend of the table
on one tiny graph: the reference and lava-float agree with the reference spike for spike;
the fixed-point backends report their quantization."""

import numpy as np
import pytest
from tiny_graph import T, backend_params, tiny_graph, tiny_inputs

import nirbridge  # noqa: F401  (before any Lava import)
from nirbridge.backends import get, names
from nirbridge.errors import InputError
from nirbridge.verify import compare, predictions

EXACT = ("reference", "lava-float")  #: spike-exact against the reference


@pytest.fixture(scope="module")
def reference():
    return get("reference").run(tiny_graph(), tiny_inputs(), record=True)


@pytest.mark.parametrize("name", backend_params(names()))
def test_compare_runs_every_backend_against_the_reference(name, reference):
    options = {"timeout_s": 120} if name.startswith("lava") else {}
    cmp = compare(tiny_graph(), tiny_inputs(), "reference", name, options_b=options,
                  result_a=reference)
    assert (cmp.a, cmp.b, cmp.steps, cmp.samples) == ("reference", name, T, 1)
    assert cmp.result_a is reference and cmp.result_b.info["backend"] == name
    (layer,) = cmp.layers
    assert layer.node == "lif" and layer.op == "LIF" and layer.spikes_a > 0
    assert 0.0 <= layer.identical <= 1.0 and 0.0 <= cmp.spike_agreement <= 1.0
    if name in EXACT:
        assert layer.identical == 1.0 and cmp.spike_agreement == 1.0
        assert layer.first_divergent_step is None and layer.spikes_b == layer.spikes_a
        assert cmp.output_identical == 1.0 and cmp.prediction_agreement == 1.0
    elif name == "snntorch":  # snnTorch reads τ at dt = 1e-4, not the tiny graph's dt = 1
        notes = get(name).reading(tiny_graph()).notes
        assert any("node 'lif' (LIF) tau" in n and "dt = 1" in n for n in notes), notes
        assert layer.identical < 1.0 and cmp.quantization is None
    elif name == "norse":  # Norse reads nir.LIF as NIR does (r = 1, v_reset = 0 here)
        assert layer.identical == 1.0 and cmp.output_identical == 1.0
    elif name == "sinabs":  # Sinabs reads it as its multi-spike LIF: named, and different
        notes = get(name).reading(tiny_graph()).notes
        assert any(n.startswith("lif:") and "multi-spike" in n for n in notes), notes
        assert cmp.output_max_abs_diff > 0 and cmp.quantization is None
    elif name == "onnx":  # float32: identical here (no value within rounding of threshold)
        assert layer.identical == 1.0 and cmp.output_identical == 1.0
    else:  # fixed point: what was quantized, per layer
        assert cmp.quantization and layer.clipped is not None


def test_every_backend_of_the_table_is_covered():
    assert set(EXACT) <= set(names())
    with pytest.raises(InputError, match="unknown backend 'nope'"):
        compare(tiny_graph(), tiny_inputs(), "reference", "nope")


def test_predictions_sum_over_time_then_arg_max():
    out = np.zeros((3, 2, 4))
    out[:, 0, 2] = 1.0
    out[0, 1, 1], out[1:, 1, 3] = 5.0, 1.0
    np.testing.assert_array_equal(predictions(out), [2, 1])
