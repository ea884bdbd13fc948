"""Values in the ranges their equations need (issue 13, item 3): every invalid value is
refused by :func:`nirbridge.passes.validate` (so by every command) with one line naming
node, field and value; values the equations allow, even unusual ones, still pass."""

import copy
import dataclasses

import nir
import numpy as np
import pytest

from nirbridge.cli import main
from nirbridge.errors import InputError, InvalidParameterError
from nirbridge.neurons import NEURONS
from nirbridge.passes import validate
from nirbridge.validate_values import RULES

N = 3


def _graph(neuron: nir.NIRNode, dt: float = 1.0, name: str = "lif1") -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={"in": nir.Input(np.array([N])),
               "fc": nir.Affine(np.eye(N) * 0.5, np.zeros(N)),
               name: neuron,
               "out": nir.Output(np.array([N]))},
        edges=[("in", "fc"), ("fc", name), (name, "out")], metadata={"dt": dt},
        type_check=False)


def _lif(**kw) -> nir.LIF:
    p = dict(tau=np.full(N, 2.0), r=np.ones(N), v_leak=np.zeros(N),
             v_threshold=np.full(N, 1.0), v_reset=np.zeros(N))
    p.update({k: np.broadcast_to(np.asarray(v, float), (N,)).copy() for k, v in kw.items()})
    return nir.LIF(**p)


def _example(type_name: str) -> nir.NIRNode:
    """The registered neuron's own example node (non-trivial, valid parameters)."""
    return NEURONS[type_name].example((N,), False).to_nir_node((N,), 1.0)


def _refused(graph: nir.NIRGraph, *words: str) -> str:
    with pytest.raises(InvalidParameterError) as err:
        validate(graph)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


# ----------------------------------------------------------------- standard neurons
@pytest.mark.parametrize("tau", [-1.0, 0.0])
def test_a_time_constant_at_or_below_zero_is_refused_naming_node_field_and_value(tau):
    msg = _refused(_graph(_lif(tau=tau)), "node 'lif1'", "field 'tau'", repr(tau), "≤ 0")
    assert "time constant must be positive" in msg


@pytest.mark.parametrize("node, field", [
    (nir.CubaLIF(tau_syn=np.full(N, -2.0), tau_mem=np.full(N, 2.0), r=np.ones(N),
                 v_leak=np.zeros(N), v_threshold=np.ones(N), v_reset=np.zeros(N),
                 w_in=np.ones(N)), "tau_syn"),
    (nir.LI(tau=np.array([2.0, 0.0, 2.0]), r=np.ones(N), v_leak=np.zeros(N)), "tau"),
])
def test_time_constants_of_every_standard_neuron_are_checked(node, field):
    _refused(_graph(node, name="n"), "node 'n'", f"field '{field}'")


def test_the_first_bad_element_is_named_with_its_index_and_count():
    msg = _refused(_graph(_lif(tau=[2.0, -3.0, -4.0])), "-3.0", "at index 1", "2 of 3")
    assert "field 'tau'" in msg


def test_a_threshold_below_the_reset_value_is_refused_but_biological_units_pass():
    _refused(_graph(_lif(v_threshold=-1.0)), "field 'v_threshold'", "-1.0", "v_reset = 0.0")
    # mV-like values: threshold −50 above reset −70, rest −65: a meaningful neuron
    validate(_graph(_lif(v_threshold=-50.0, v_reset=-70.0, v_leak=-65.0)))
    # '>' at a threshold equal to the reset value does not fire at the reset value
    validate(_graph(_lif(v_threshold=0.0)))


@pytest.mark.parametrize("dt", [float("nan"), 0.0, -1.0])
def test_a_bad_metadata_dt_is_refused_by_validate(dt):
    with pytest.raises(InvalidParameterError, match="'dt'"):
        validate(_graph(_lif(), dt=dt))


def test_nan_and_inf_parameters_name_node_and_field():
    for bad in (np.nan, np.inf, -np.inf):
        msg = _refused(_graph(_lif(r=[1.0, bad, 1.0])), "'lif1'", "'r'")
        assert "non-finite" in msg


def test_a_negative_delay_and_a_zero_stride_and_shape_are_refused():
    g = _graph(_lif())
    g.nodes["d"] = nir.Delay(np.full(N, -1.0))
    g.edges = [("in", "d"), ("d", "fc"), ("fc", "lif1"), ("lif1", "out")]
    _refused(g, "node 'd'", "field 'delay'", "-1.0")
    conv = nir.Conv2d(input_shape=(4, 4), weight=np.ones((1, 1, 2, 2)), stride=(1, 1),
                      padding=(0, 0), dilation=(1, 1), groups=1, bias=np.zeros(1))
    conv.stride = (0, 1)  # nir's constructor cannot even compute its output with it
    g2 = nir.NIRGraph(nodes={"in": nir.Input(np.array([1, 4, 4])), "conv": conv,
                             "out": nir.Output(np.array([1, 3, 3]))},
                      edges=[("in", "conv"), ("conv", "out")], metadata={"dt": 1.0},
                      type_check=False)
    _refused(g2, "node 'conv'", "field 'stride': 0 is not an integer ≥ 1")
    g3 = _graph(_lif())
    g3.nodes["in"] = nir.Input(np.array([0]))
    _refused(g3, "node 'in'", "input_type", "0 is not an integer ≥ 1", "positive sizes")


# ------------------------------------------------------------------- custom neurons
@pytest.mark.parametrize("type_name, field, value, words", [
    ("SnnTorchLeaky", "beta", 1.5, "outside [0, 1]"),
    ("SnnTorchSynaptic", "alpha", -0.1, "outside [0, 1]"),
    ("DALIF", "beta", -0.5, "< 0"),
    ("ARLIF", "tanh_a", 1.5, "tanh(a)"),
    ("ARLIF", "decay", -0.5, "outside [0, 1]"),
    ("KLIF", "k", -1.0, "≤ 0"),
    ("KLIF", "tau", 0.5, "≤ 1"),
    ("SJLIF", "tau", 1.0, "≤ 1"),
    ("CLIF", "tau", 0.5, "< 1"),
    ("NorseLIF", "tau_mem_inv", -10.0, "inverse time constant"),
    ("SinabsIAF", "v_threshold", 0.0, "Sinabs counts spikes"),
    ("SubtractiveLIF", "v_threshold", 0.0, "subtractive reset"),
    ("ALIF", "v_threshold", -0.5, "subtractive reset"),
    ("CLIF", "v_threshold", 0.0, "rests at 0"),
    ("ALIF", "rho", 1.2, "outside [0, 1]"),
])
def test_custom_neuron_values_outside_their_equations_ranges_are_refused(
        type_name, field, value, words):
    node = _example(type_name)
    validate(_graph(node, name="n"))  # the example itself is valid
    shape = np.shape(getattr(node, field))
    bad = copy.deepcopy(node)
    # set after construction: some node classes refuse such values themselves already
    object.__setattr__(bad, field, np.full(shape, value))
    _refused(_graph(bad, name="n"), "node 'n'", f"field '{field}'", repr(float(value)), words)


def test_the_threshold_rule_follows_the_reset_mode():
    # snnTorch's zero reset at a threshold of 0 with '>': v = 0 does not fire, allowed;
    # a subtractive reset by 0 never lowers v: refused
    node = _example("SnnTorchLeaky")
    zero = dataclasses.replace(node, reset="zero_previous", v_threshold=np.zeros(N))
    validate(_graph(zero, name="n"))
    sub = dataclasses.replace(node, reset="subtract", v_threshold=np.zeros(N))
    _refused(_graph(sub, name="n"), "subtractive reset")


def test_every_registered_neuron_names_known_rules_and_its_example_validates():
    for name, spec in NEURONS.items():
        node = _example(name)
        validate(_graph(node, name="n"))
        for field, entry in spec.ranges.items():
            assert hasattr(node, field), (name, field)
            rules = entry(node) if callable(entry) else entry
            for rule in (rules,) if isinstance(rules, str) else rules:
                assert rule in RULES or rule in ("threshold_soft", "threshold_rest") or \
                    rule.startswith("threshold_reset:"), (name, rule)


# ----------------------------------------------------------------------- the CLI
def _write_unchecked(path, graph):
    nir.write(str(path), graph)  # NIR's own writer: no validation, like a foreign tool


def test_every_command_refuses_a_bad_file_in_one_line(tmp_path, capsys):
    f = tmp_path / "bad.nir"
    _write_unchecked(f, _graph(_lif(tau=-1.0)))
    np.save(tmp_path / "x.npy", np.ones((4, 2, N)))
    for argv in (["inspect", str(f)],
                 ["run", str(f), "--input", str(tmp_path / "x.npy"), "-o",
                  str(tmp_path / "o.npz")],
                 ["profile", str(f), "--input", str(tmp_path / "x.npy")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "node 'lif1' field 'tau': -1.0 ≤ 0" in err[0], err
    assert not (tmp_path / "o.npz").exists()


# -------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("x, words", [
    (np.ones((0, 2, N)), "T = 0"),
    (np.ones((4, 0, N)), "B = 0"),
    (np.full((4, 2, N), "a"), "strings"),
    (np.ones((4, 2, N), dtype=complex), "complex"),
    (np.full((4, 2, N), np.nan), "NaN"),
])
def test_inputs_that_cannot_be_meant_are_refused_naming_the_input(tmp_path, capsys, x, words):
    f = tmp_path / "ok.nir"
    _write_unchecked(f, _graph(_lif()))
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(f), "--input", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "internal error" not in err[0], err


def test_the_api_refuses_empty_and_string_inputs():
    from nirbridge.backends.reference import run_reference

    g = _graph(_lif())
    with pytest.raises(InputError, match="T = 0"):
        run_reference(g, np.ones((0, 2, N)))
    with pytest.raises(InputError, match="B = 0"):
        run_reference(g, np.ones((3, 0, N)))
    with pytest.raises(InputError, match="strings"):
        run_reference(g, np.full((3, 2, N), "x"))


def test_fixed_point_inputs_beyond_the_input_format_are_refused():
    from nirbridge.backends.fixed import input_quant_config

    x = np.ones((2, 2, N))
    cfg = input_quant_config("loihi2", x)  # within range: fine
    limit = (2 ** (cfg.input_bits - 1) - 1) / 2 ** cfg.input_frac_bits
    input_quant_config("loihi2", x * limit)
    with pytest.raises(InputError, match="saturate"):
        input_quant_config("loihi2", x * 1e9)
    with pytest.raises(InputError, match="scale the inputs down"):
        input_quant_config("loihi2", x * 0.5 * 1e9)  # graded: fewer integer bits


@pytest.mark.parametrize("argv, words", [
    (["deploy", "f.nir", "--timeout", "nan"], "argument --timeout"),
    (["deploy", "f.nir", "--timeout", "inf"], "argument --timeout"),
    (["deploy", "f.nir", "--timeout", "0"], "argument --timeout"),
    (["deploy", "f.nir", "--steps", "1e9"], "argument --steps"),
    (["deploy", "f.nir", "--steps", "0"], "argument --steps"),
    (["deploy", "f.nir", "--samples", "-3"], "argument --samples"),
    (["deploy", "f.nir", "--workers", "0"], "argument --workers"),
    (["deploy", "f.nir", "--lava-samples", "-1"], "argument --lava-samples"),
    (["run", "f.nir", "--input", "x", "-o", "o", "--dt", "nan"], "argument --dt"),
    (["export", "m:f", "--input-shape", "3", "-o", "o", "--batch", "0"], "argument --batch"),
    (["train", "r.toml", "--epochs", "0"], "argument --epochs"),
    (["demo", "--samples", "0"], "argument --samples"),
])
def test_numeric_options_are_validated_by_the_parser(capsys, argv, words):
    with pytest.raises(SystemExit) as ex:
        main(argv)
    assert ex.value.code == 2
    assert words in capsys.readouterr().err


def test_a_trained_da_lif_beta_above_one_still_validates():
    # the shipped digits_dalif checkpoint learned β up to 1.057: allowed (growth between
    # spikes, bounded by the reset); the recipe's own export is checked the same way
    node = _example("DALIF")
    validate(_graph(dataclasses.replace(node, beta=np.full(np.shape(node.beta), 1.06)),
                    name="n"))
