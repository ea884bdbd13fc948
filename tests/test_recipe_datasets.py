"""Whole data sets in recipes (issue 12): the digits test split scored in fixed point by the
emulator, batch by batch, equal to one run over every sample and confirmed on Lava integer
by integer; a tonic data set read from a folder in tonic's own on-disk format (SHD, made
here); ``.npz`` frames and events; a ``MODULE:FACTORY`` torch Dataset; the Lava options
``workers``/``cluster`` reaching the backend's ``run``."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import nirbridge  # noqa: F401  (before any Lava import)
from nirbridge.backends import get
from nirbridge.cli import main
from nirbridge.errors import InputError, RecipeError
from nirbridge.profile import count_events
from nirbridge.recipes import execute_recipe, load_recipe, recipe_inputs, stage_rows
from nirbridge.recipes.execute import recipe_batches
from nirbridge.verify import compare_layers, predictions

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TESTS = Path(__file__).resolve().parent

RECIPE = """\
name = "{name}"

[model]
factory = "{factory}"
kwargs = {kwargs}
checkpoint = "{checkpoint}"

[data]
dataset = "{dataset}"
encoding = "{encoding}"
{data_extra}

[simulation]
steps = {steps}
modes = ["fixed_pt"]
batch_size = {batch}
lava_samples = {lava}
timeout_s = 120

[profile]
targets = ["loihi2"]

[output]
dir = "{out}"
"""


def _write(tmp_path: Path, *, dataset: str, encoding: str = "frames", steps: int = 6,
           batch: int = 2, lava: int = 0, factory: str | None = None, kwargs: str = "{}",
           data_extra: str = "", checkpoint: Path | None = None, inputs: int = 0,
           name: str = "data") -> Path:
    if factory is None:
        factory = f"{TESTS / 'recipe_data.py'}:tiny_mlp"
        kwargs = f"{{ inputs = {inputs} }}"
    if checkpoint is None:
        from recipe_data import TinyMLP

        torch.manual_seed(0)
        model = TinyMLP(inputs)
        with torch.no_grad():  # enough drive that the hidden layer spikes
            model.fc1.weight.abs_().mul_(3.0)
        checkpoint = tmp_path / f"{name}.pt"
        torch.save(model.state_dict(), checkpoint)
    path = tmp_path / f"{name}.toml"
    path.write_text(RECIPE.format(name=name, factory=factory, kwargs=kwargs,
                                  checkpoint=checkpoint, dataset=dataset, encoding=encoding,
                                  data_extra=data_extra, steps=steps, batch=batch, lava=lava,
                                  out=tmp_path / "out" / name))
    return path


def _one_shot(run, x: np.ndarray, y: np.ndarray) -> None:
    """The streamed run's numbers equal those of one reference and one emulator run over
    every sample at once (batching changes nothing)."""
    graph = nirbridge.read(run.nir_path)
    ref = get("reference").run(graph, x, record=True, dt=run.dt)
    assert run.metrics["reference_accuracy"] == pytest.approx(
        100 * (predictions(ref.output()) == y).mean(), abs=1e-12)
    counts = count_events(graph, ref.records)
    assert run.counts.batch == counts.batch == len(y)
    assert run.counts.sop_effective == pytest.approx(counts.sop_effective, rel=1e-12)
    assert run.counts.spikes == pytest.approx(counts.spikes, rel=1e-12)
    fx = get("fixed").run(graph, x, record=True, dt=run.dt, quant=run.stream.quant)
    np.testing.assert_array_equal(run.stream.fixed_pred, predictions(fx.output()))
    layers = compare_layers(graph, ref.records, fx.records)
    want = 100 * np.mean([la.identical for la in layers]) if layers else 100.0
    assert run.metrics["fixed_spike_agreement"] == pytest.approx(want, abs=1e-9)


# ------------------------------------------------------------------- digits, whole split
@pytest.mark.lava
def test_recipe_scores_the_whole_digits_test_split_with_the_emulator(tmp_path, capsys):
    path = _write(tmp_path, dataset="digits", encoding="direct", steps=4, batch=100, lava=2,
                  factory="nirbridge.examples:digits_conv_snn", kwargs='{ neuron = "lif" }',
                  checkpoint=DEPLOY / "checkpoints" / "digits_lif.pt", name="whole")
    recipe = load_recipe(path)
    assert recipe.simulation.samples is None  # no samples: the whole split
    run = execute_recipe(recipe, echo=print)
    assert run.samples == 360 and run.lava_samples == 2
    x, y = recipe_inputs(recipe)
    assert x.shape == (4, 360, 1, 8, 8)
    _one_shot(run, x, y)
    assert run.metrics["fixed_accuracy"] > 85.0  # the trained checkpoint, in fixed point
    # Lava fixed_pt holds the emulator's integers on every confirmed sample
    assert run.metrics["lava_fixed_identical"] == 100.0 and run.lava_fixed_mismatch == []
    (check,) = [c for c in run.checks if c.key == "lava_fixed_identical"]
    assert check.passed
    rows = {r[0]: r for r in stage_rows(run)}
    assert rows["fixed point (emulator)"][1] == "360" and rows["Lava fixed_pt"][1] == "2"
    assert rows["Lava fixed_pt"][6] == "100.00%"
    from nirbridge.recipes import write_recipe_reports

    (js,) = write_recipe_reports(run, tmp_path / "r.json", None)
    meta = json.loads(js.read_text())["meta"]
    assert meta["samples"] == 360 and meta["lava_samples"] == 2
    assert meta["lava_fixed_mismatch"] == [] and meta["emulator"]["samples"] == 360
    assert [la["node"] for la in meta["emulator"]["layers"]] == [
        la.node for la in run.stream.fixed_layers]
    out = capsys.readouterr().out
    assert "360 digits test samples (direct, T = 4, batches of 100)" in out
    assert "integers identical to the emulator on 100.00% of 2 samples" in out


# ----------------------------------------------------------------------- tonic (SHD)
def _write_shd(root: Path, n: int = 5) -> None:
    """tonic's on-disk SHD test split: ``root/SHD/shd_test.h5`` (the Heidelberg layout:
    ``spikes/times`` in seconds and ``spikes/units`` per sample, ``labels``, ``extra``)
    beside the archive ``shd_test.h5.zip``, whose presence tonic checks (not its md5)."""
    import h5py

    d = root / "SHD"
    d.mkdir(parents=True)
    (d / "shd_test.h5.zip").write_bytes(b"")
    rng = np.random.default_rng(1)
    with h5py.File(d / "shd_test.h5", "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            k = int(rng.integers(40, 80))
            times[i] = np.sort(rng.uniform(0.0, 0.1, k)).astype(np.float32)
            units[i] = rng.integers(0, 700, k).astype(np.uint16)
        f["labels"] = rng.integers(0, 3, n).astype(np.uint16)
        f["extra/keys"] = np.array([b"zero", b"one", b"two"])
        f["extra/speaker"] = np.zeros(n, np.uint16)


@pytest.mark.lava
def test_tonic_recipe_reads_an_shd_folder_in_tonics_format(tmp_path):
    tonic = pytest.importorskip("tonic")
    from tonic.transforms import ToFrame

    _write_shd(tmp_path / "tonicdata")
    path = _write(tmp_path, dataset="tonic:SHD", data_extra='root = "tonicdata"',
                  inputs=700, lava=2, name="shd")
    recipe = load_recipe(path)
    x, y = recipe_inputs(recipe)
    # tonic's own loader and ToFrame, sample by sample
    ds = tonic.datasets.SHD(str(tmp_path / "tonicdata"), train=False,
                            transform=ToFrame(sensor_size=(700, 1, 1), n_time_bins=6))
    want = np.stack([ds[i][0] for i in range(len(ds))]).astype(np.float64)
    np.testing.assert_array_equal(x, np.swapaxes(want, 0, 1))
    np.testing.assert_array_equal(y, [int(ds[i][1]) for i in range(len(ds))])
    assert x.shape == (6, 5, 1, 700) and x.sum() > 0
    run = execute_recipe(recipe)  # 5 samples in batches of 2
    assert run.samples == 5 and not run.errors
    _one_shot(run, x, y)
    assert run.metrics["lava_fixed_identical"] == 100.0


def test_tonic_folder_without_the_data_is_refused_not_downloaded(tmp_path):
    pytest.importorskip("tonic")
    (tmp_path / "empty").mkdir()
    path = _write(tmp_path, dataset="tonic:SHD", data_extra='root = "empty"', inputs=700)
    with pytest.raises(RecipeError, match=r"data.dataset.*never downloads"):
        load_recipe(path)
    nope = _write(tmp_path, dataset="tonic:NOPE", data_extra='root = "empty"', inputs=700,
                  name="nope")
    with pytest.raises(RecipeError, match=r"data.dataset.*no data set 'NOPE'.*NMNIST"):
        load_recipe(nope)
    no_root = _write(tmp_path, dataset="tonic:SHD", inputs=700, name="noroot")
    with pytest.raises(RecipeError, match=r"data.root.*missing"):
        load_recipe(no_root)


# ------------------------------------------------------------------------------- npz
def test_npz_frames_recipe_streams_every_sample(tmp_path, capsys):
    rng = np.random.default_rng(2)
    frames = rng.poisson(0.7, (7, 5, 2, 3, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 7)
    np.savez(tmp_path / "frames.npz", x=frames, y=labels)
    path = _write(tmp_path, dataset="npz:frames.npz", steps=5, batch=3, inputs=18,
                  name="npzf")
    recipe = load_recipe(path)
    n, it = recipe_batches(recipe)
    parts = list(it)
    assert n == 7 and [p[0].shape[1] for p in parts] == [3, 3, 1]  # streamed in batches
    x, y = recipe_inputs(recipe)
    np.testing.assert_array_equal(x, np.swapaxes(frames, 0, 1))
    np.testing.assert_array_equal(y, labels)
    # through the CLI, emulator only (lava_samples = 0 on the command line)
    assert main(["deploy", str(path), "--lava-samples", "0"]) in (0, 3)
    out = capsys.readouterr().out
    assert "Lava not run" in out
    assert re.search(r"fixed point \(emulator\) +7 ", out)
    run = execute_recipe(recipe, lava_samples=0)
    assert run.samples == 7 and run.lava_samples == 0 and not run.deploys
    assert all(c.key != "lava_fixed_identical" for c in run.checks)
    _one_shot(run, x, y)


def test_npz_events_are_binned_by_tonics_to_frame(tmp_path):
    pytest.importorskip("tonic")
    from tonic.transforms import ToFrame

    rng = np.random.default_rng(3)
    lengths = np.array([30, 12, 25, 40])
    samples = []
    for k in lengths:
        t = np.sort(rng.integers(0, 50_000, k))
        samples.append(np.stack([t, rng.integers(0, 4, k), rng.integers(0, 3, k),
                                 rng.integers(0, 2, k)], axis=1))
    events = np.concatenate(samples).astype(np.int64)
    np.savez_compressed(tmp_path / "ev.npz", events=events, lengths=lengths,
                        y=np.array([0, 1, 2, 1]), sensor_size=np.array([4, 3, 2]))
    path = _write(tmp_path, dataset="npz:ev.npz", steps=4, batch=3, inputs=24, name="npze")
    x, y = recipe_inputs(load_recipe(path))
    to_frame = ToFrame(sensor_size=(4, 3, 2), n_time_bins=4)
    for i, ev in enumerate(samples):
        s = np.zeros(len(ev), dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
        s["t"], s["x"], s["y"], s["p"] = ev[:, 0], ev[:, 1], ev[:, 2], ev[:, 3]
        np.testing.assert_array_equal(x[:, i], to_frame(s))  # [T, P, H, W]
    assert x.shape == (4, 4, 2, 3, 4)
    # tonic's n_time_bins windows are (t_last - t_first) // T long: the events from
    # t_first + T·window on (the last timestamp at least) fall in no frame
    kept = [int((ev[:, 0] < ev[0, 0] + 4 * ((ev[-1, 0] - ev[0, 0]) // 4)).sum())
            for ev in samples]
    np.testing.assert_array_equal(x.sum(axis=(0, 2, 3, 4)), kept)
    assert sum(kept) < lengths.sum()
    np.testing.assert_array_equal(y, [0, 1, 2, 1])


def test_npz_images_rate_encoding_does_not_depend_on_the_batch_size(tmp_path):
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "img.npz", x=rng.random((5, 1, 4, 4)), y=np.arange(5) % 3)
    path = _write(tmp_path, dataset="npz:img.npz", encoding="rate", steps=6, inputs=16,
                  name="npzr")
    recipe = load_recipe(path)
    a = np.concatenate([b[0] for b in recipe_batches(recipe, batch_size=2)[1]], axis=1)
    b = np.concatenate([b[0] for b in recipe_batches(recipe, batch_size=5)[1]], axis=1)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1.0} and a.shape == (6, 5, 1, 4, 4)


def test_npz_layout_errors_name_the_field(tmp_path):
    np.savez(tmp_path / "bad.npz", frames=np.zeros((2, 3)))
    path = _write(tmp_path, dataset="npz:bad.npz", inputs=4, name="bad")
    with pytest.raises(RecipeError, match=r"field 'data.dataset'.*no array 'x', 'y'"):
        load_recipe(path)
    gone = _write(tmp_path, dataset="npz:gone.npz", inputs=4, name="gone")
    with pytest.raises(RecipeError, match=r"data.dataset.*does not exist"):
        load_recipe(gone)


# ---------------------------------------------------------------------- MODULE:FACTORY
def test_factory_dataset_recipe(tmp_path):
    from recipe_data import FramesDataset

    path = _write(tmp_path, dataset=f"{TESTS / 'recipe_data.py'}:frames_dataset", steps=4,
                  batch=3, inputs=18, name="factory")
    recipe = load_recipe(path)
    x, y = recipe_inputs(recipe)
    ds = FramesDataset()
    np.testing.assert_array_equal(x, np.swapaxes(ds.x.numpy(), 0, 1))
    np.testing.assert_array_equal(y, ds.y)
    run = execute_recipe(recipe, lava_samples=0)
    assert run.samples == 7
    _one_shot(run, x, y)
    wrong = _write(tmp_path, dataset=f"{TESTS / 'recipe_data.py'}:frames_dataset", steps=5,
                   inputs=18, name="wrongsteps")
    with pytest.raises(RecipeError, match=r"4 frames.*steps = 5"):
        execute_recipe(load_recipe(wrong), lava_samples=0)


# ----------------------------------------------------------------- workers / cluster
@pytest.mark.lava
def test_workers_option_reaches_the_lava_backends_run(tmp_path):
    """``--workers`` is passed to the Lava backend's ``run`` as the option ``workers``.
    Until the backend takes it, its own option check refuses it by name (proving it got
    there); once it does, the sharded run equals the one-process run."""
    from nirbridge.backends.lava.backend import _RUN_OPTIONS
    from nirbridge.deploy import deploy_graph

    graph = nirbridge.read(_tiny_nir(tmp_path))
    x = np.random.default_rng(5).random((4, 3, 18))
    if "workers" not in _RUN_OPTIONS:
        with pytest.raises(InputError, match=r"lava-float' has no option 'workers'"):
            deploy_graph(graph, x, workers=2, dt=1.0)
        with pytest.raises(InputError, match=r"lava-fixed' has no option 'cluster'"):
            deploy_graph(graph, x, mode="fixed_pt", cluster="127.0.0.1:1", dt=1.0)
        return
    one = deploy_graph(graph, x, dt=1.0)
    two = deploy_graph(graph, x, workers=2, dt=1.0)
    np.testing.assert_array_equal(one.outputs_lava, two.outputs_lava)


def _tiny_nir(tmp_path: Path) -> Path:
    from recipe_data import TinyMLP

    torch.manual_seed(0)
    model = TinyMLP(18)
    p = tmp_path / "tiny.nir"
    nirbridge.write(p, nirbridge.to_nir(model, torch.zeros(1, 18)))
    return p


def test_lava_options_are_passed_only_when_given():
    from nirbridge.recipes.execute import lava_options

    assert lava_options() == {}
    assert lava_options(workers=2) == {"workers": 2}
    assert lava_options(cluster="tcp://h:8786") == {"cluster": "tcp://h:8786"}
    with pytest.raises(RecipeError, match="--workers 0"):
        lava_options(workers=0)
