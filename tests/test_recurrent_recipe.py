"""The recurrent recipe's pieces (issue 10, part 6): the ``rows`` encoding (sequential digits,
one image row per step), the recurrent digits model ``digits_recurrent_snn`` (its export has
the feedback edge, the reference reproduces its forward spike for spike), recipe validation
of the encoding, and the committed checkpoints of ``deploy/digits_seq_*.toml``."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import nirbridge  # noqa: F401  (before any Lava import)
from nirbridge.api import run_backend, to_nir
from nirbridge.data import ENCODINGS, encode, is_spike_encoding, load_split, min_steps
from nirbridge.errors import InputError, InvalidParameterError, RecipeError
from nirbridge.examples import RECURRENT_NEURON_KINDS, DigitsRecurrentSNN, digits_recurrent_snn
from nirbridge.graph import feedback_edges
from nirbridge.layers import Recurrent
from nirbridge.neurons import run_steps
from nirbridge.recipes import load_recipe

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SEQ_RECIPES = ("digits_seq_alif", "digits_seq_cubalif")

RECIPE = """\
name = "seq"

[model]
factory = "nirbridge.examples:digits_recurrent_snn"
kwargs = {{ neuron = "alif", hidden = 16 }}
checkpoint = "seq.pt"

[data]
dataset = "digits"
encoding = "{encoding}"

[simulation]
steps = {steps}
samples = 4

[profile]
targets = ["loihi2"]
"""


# ----------------------------------------------------------------------- encoding
def test_rows_encoding_presents_one_image_row_per_step():
    images = load_split("digits", "test").images[:5]
    assert "rows" in ENCODINGS and not is_spike_encoding("rows")
    x = encode(images, "rows", 8)
    assert x.shape == (8, 5, 8) and x.dtype == np.float64
    for t in range(8):
        np.testing.assert_array_equal(x[t], images[:, 0, t, :])
    assert 0.0 <= x.min() and x.max() <= 1.0
    longer = encode(images, "rows", 11)  # steps after the last row get zeros
    assert longer.shape == (11, 5, 8)
    np.testing.assert_array_equal(longer[:8], x)
    assert not longer[8:].any()


def test_rows_encoding_is_channel_major_and_needs_a_step_per_row():
    images = np.random.default_rng(0).random((3, 2, 4, 5))
    x = encode(images, "rows", 4)
    assert x.shape == (4, 3, 10)
    np.testing.assert_array_equal(x[2, 1], np.concatenate([images[1, 0, 2], images[1, 1, 2]]))
    assert min_steps("rows", (1, 8, 8)) == 8 and min_steps("direct", (1, 8, 8)) == 1
    with pytest.raises(InputError, match=r"steps=7.*one image row per step.*8 rows"):
        encode(np.zeros((2, 1, 8, 8)), "rows", 7)
    with pytest.raises(InputError, match=r"images \[N, C, H, W\]"):
        encode(np.zeros((2, 8, 8)), "rows", 8)


# ---------------------------------------------------------------------- validation
def _write(tmp_path: Path, encoding: str, steps: int) -> Path:
    torch.save(digits_recurrent_snn("alif", 16).state_dict(), tmp_path / "seq.pt")
    path = tmp_path / "seq.toml"
    path.write_text(RECIPE.format(encoding=encoding, steps=steps))
    return path


def test_recipe_with_rows_encoding_loads():
    r = load_recipe(DEPLOY / "digits_seq_alif.toml")
    assert r.data.encoding == "rows" and r.simulation.steps == 8
    assert r.model.kwargs["neuron"] == "alif"


def test_recipe_rows_with_too_few_steps_names_the_field(tmp_path):
    path = _write(tmp_path, "rows", 6)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and str(path) in msg
    assert "field 'simulation.steps'" in msg and "'rows'" in msg and "steps >= 8" in msg
    assert load_recipe(_write(tmp_path, "rows", 10)).simulation.steps == 10


def test_recipe_unknown_encoding_lists_rows(tmp_path):
    with pytest.raises(RecipeError, match=r"field 'data.encoding'.*'columns'.*rows"):
        load_recipe(_write(tmp_path, "columns", 8))


# ------------------------------------------------------------------------ factory
def test_factory_builds_the_recurrent_model_and_refuses_unknown_neurons():
    m = digits_recurrent_snn("cubalif", hidden=32)
    assert isinstance(m, DigitsRecurrentSNN) and isinstance(m.rec, Recurrent)
    assert (m.fc_in.in_features, m.fc_in.out_features, m.fc_out.out_features) == (8, 32, 10)
    assert m.rec.recurrent is not None and m.rec.recurrent.bias is None
    with pytest.raises(InvalidParameterError, match="'lif' is unknown.*alif"):
        digits_recurrent_snn("lif")


def _rows(n: int) -> torch.Tensor:
    return torch.from_numpy(encode(load_split("digits", "test").images[:n], "rows", 8))


@pytest.mark.parametrize("neuron", RECURRENT_NEURON_KINDS)
def test_export_has_the_feedback_edge_and_reference_equals_torch(neuron):
    torch.manual_seed(0)
    model = digits_recurrent_snn(neuron, hidden=24).eval()
    with torch.no_grad():  # strong enough that the recurrence drives spikes
        model.fc_in.weight.mul_(4.0)
        model.rec.recurrent.weight.mul_(4.0)
    x = _rows(6)
    graph = to_nir(model, x[0, :1].float(), dt=1.0)
    assert set(feedback_edges(graph)) == {("rec.w_rec", "rec.neuron")}
    torch_model = copy.deepcopy(model).double()
    spikes, state = [], None
    with torch.no_grad():
        for xt in x:
            _, state = torch_model(xt, state)
            spikes.append(state.out)
        out = run_steps(torch_model, x).numpy()
    spikes_t = torch.stack(spikes).numpy()
    res = run_backend(graph, x, record=["rec.neuron"])
    ref_spikes = res.records["rec.neuron"].output.numpy()
    assert 0 < spikes_t.mean() < 0.9  # spiking, not saturated
    np.testing.assert_array_equal(ref_spikes, spikes_t)
    assert np.abs(res.output() - out).max() <= 1e-9


# ------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("name", SEQ_RECIPES)
def test_committed_checkpoints_classify_sequential_digits(name):
    from nirbridge.recipes import _build_model, recipe_inputs

    r = load_recipe(DEPLOY / f"{name}.toml")
    assert r.model.checkpoint.stat().st_size < 100_000
    model = _build_model(r)
    x, y = recipe_inputs(r)
    with torch.no_grad():
        pred = run_steps(model, torch.from_numpy(x).float()).sum(0).argmax(-1).numpy()
    assert len(y) == 360 and (pred == y).mean() >= 0.80


@pytest.mark.lava
def test_recipe_deploys_through_both_lava_modes(tmp_path):
    """The ALIF recipe end to end on a few samples: Lava floating_pt reproduces every spike
    of the recurrent layer, fixed_pt runs (its checks are the recipe's, on 360 samples)."""
    from nirbridge.recipes import execute_recipe

    run = execute_recipe(load_recipe(DEPLOY / "digits_seq_alif.toml"), samples=4,
                         out_dir=tmp_path)
    assert not run.errors and not run.findings
    m = run.metrics
    assert m["reference_torch_diff"] == 0.0 and m["float_spike_agreement"] == 100.0
    assert m["fixed_spike_agreement"] >= 90.0
    assert run.counts is not None and run.sops > 0
