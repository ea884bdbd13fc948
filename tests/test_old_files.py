"""Old NIR files (issue 9): NIR 0.x files, as Rockpool and the NIR paper wrote them, read
with their redundant batch/time dimensions normalised; a real Input/Output mismatch names
both shapes and the likely cause; Rockpool's files run with --from rockpool. The files are
built by hand with h5py in the layout those versions wrote (no v_reset, no metadata, Input
and Output under 'shape', byte-string types)."""

from __future__ import annotations

import h5py
import nir
import numpy as np
import pytest
import torch

import nirbridge
from nirbridge.backends import get
from nirbridge.cli import main
from nirbridge.errors import ShapeMismatchError, UnsupportedLayerError
from nirbridge.export.frontends import frontend
from nirbridge.passes import IMPORT_KEY, resolve_dt

ROCKPOOL_DT = 1e-4
TAU = 2.5e-3


def _old_file(path, nodes: dict[str, dict], edges: list[tuple[str, str]],
              version: str = "0.2.0") -> None:
    """A file in NIR 0.x's layout: ``version``, ``node/type``, ``node/nodes/<n>/<field>``,
    ``node/edges`` as byte strings; no metadata anywhere."""
    with h5py.File(path, "w") as f:
        f.create_dataset("version", data=version.encode())
        g = f.create_group("node")
        g.create_dataset("type", data=b"NIRGraph")
        g.create_dataset("edges", data=np.array([[a.encode(), b.encode()] for a, b in edges],
                                                dtype=object), dtype=h5py.string_dtype())
        nodes_group = g.create_group("nodes")
        for name, fields in nodes.items():
            ng = nodes_group.create_group(name)
            for key, value in fields.items():
                ng.create_dataset(key, data=value.encode() if key == "type" else value)


def _rockpool_lif_file(path, output_shape=(1, 1, 1), n: int = 1) -> None:
    """Rockpool 2.7's export of LinearTorch → LIFNeuronTorch (the NIR paper's LIF file):
    ``r = τ·exp(−dt/τ)/dt``, Output declared with the sample's [B, T, N]."""
    r = TAU * np.exp(-ROCKPOOL_DT / TAU) / ROCKPOOL_DT
    _old_file(path, {
        "input": {"type": "Input", "shape": np.array([n])},
        "0_LinearTorch": {"type": "Linear", "weight": np.full((n, n), 0.04, np.float32)},
        "1_LIFNeuronTorch": {"type": "LIF", "tau": np.full(n, TAU, np.float32),
                             "r": np.full(n, r, np.float32),
                             "v_leak": np.zeros(n, np.float32),
                             "v_threshold": np.full(n, 0.1, np.float32)},
        "output": {"type": "Output", "shape": np.array(output_shape)},
    }, [("0_LinearTorch", "1_LIFNeuronTorch"), ("1_LIFNeuronTorch", "output"),
        ("input", "0_LinearTorch")])


def test_rockpool_file_reads_with_its_batch_and_time_dims_normalised(tmp_path):
    _rockpool_lif_file(tmp_path / "lif_rockpool.nir")
    g = nirbridge.read(tmp_path / "lif_rockpool.nir")
    assert list(g.nodes["output"].input_type["input"]) == [1]
    lif = g.nodes["1_LIFNeuronTorch"]
    assert np.all(lif.v_reset == 0) and g.metadata == {}  # NIR's defaults for 0.2's gaps
    x = np.zeros((20, 1, 1))
    x[::2] = 60.0
    out = get("reference").run(g, x, dt=ROCKPOOL_DT).outputs
    assert out.shape == (20, 1, 1) and out.sum() > 0


def test_redundant_leading_dims_on_input_and_output_are_normalised(tmp_path):
    _old_file(tmp_path / "f.nir", {
        "input": {"type": "Input", "shape": np.array([4, 1, 3])},  # [B, T, N]
        "fc": {"type": "Affine", "weight": np.ones((2, 3)), "bias": np.zeros(2)},
        "if": {"type": "IF", "r": np.ones(2), "v_threshold": np.ones(2)},
        "output": {"type": "Output", "shape": np.array([2])},
    }, [("input", "fc"), ("fc", "if"), ("if", "output")])
    g = nirbridge.read(tmp_path / "f.nir")
    assert list(g.nodes["input"].output_type["output"]) == [3]
    out = get("reference").run(g, np.ones((3, 2, 3)), dt=1.0).outputs
    assert out.shape == (3, 2, 2)


def test_nir_0_1_and_0_0_layouts_read(tmp_path):
    """0.1: Conv2d without input_shape, Flatten with a bare input_type array, IF and
    CubaLIF without v_reset/w_in; 0.0: ``weights`` and a Linear with a bias."""
    rng = np.random.default_rng(0)
    _old_file(tmp_path / "cnn.nir", {
        "input": {"type": "Input", "shape": np.array([1, 6, 6])},
        "conv": {"type": "Conv2d", "weights": rng.normal(size=(2, 1, 3, 3)),
                 "stride": np.array([1, 1]), "padding": np.array([0, 0]),
                 "dilation": np.array([1, 1]), "groups": 1, "bias": np.zeros(2)},
        "if": {"type": "IF", "r": np.ones((2, 4, 4)), "v_threshold": np.ones((2, 4, 4))},
        "flat": {"type": "Flatten", "start_dim": 0, "end_dim": -1,
                 "input_type": np.array([2, 4, 4])},
        "fc": {"type": "Linear", "weights": rng.normal(size=(3, 32)), "bias": np.ones(3)},
        "lif": {"type": "CubaLIF", "tau_syn": np.full(3, 2.0), "tau_mem": np.full(3, 4.0),
                "r": np.ones(3), "v_leak": np.zeros(3), "v_threshold": np.ones(3)},
        "output": {"type": "Output", "shape": np.array([3])},
    }, [("input", "conv"), ("conv", "if"), ("if", "flat"), ("flat", "fc"), ("fc", "lif"),
        ("lif", "output")], version="0.1.1")
    g = nirbridge.read(tmp_path / "cnn.nir")
    assert isinstance(g.nodes["fc"], nir.Affine) and np.all(g.nodes["fc"].bias == 1)
    assert tuple(g.nodes["conv"].input_shape) == (6, 6)
    assert np.all(g.nodes["lif"].w_in == 1) and np.all(g.nodes["if"].v_reset == 0)
    out = get("reference").run(g, rng.random((4, 2, 1, 6, 6)) * 2, dt=1.0).outputs
    assert out.shape == (4, 2, 3)


def test_a_real_output_mismatch_names_both_shapes_and_the_likely_cause(tmp_path, capsys):
    _rockpool_lif_file(tmp_path / "bad.nir", output_shape=(1, 1, 4), n=3)
    with pytest.raises(ShapeMismatchError) as exc:
        nirbridge.read(tmp_path / "bad.nir")
    msg = str(exc.value)
    assert "[3]" in msg and "[1, 1, 4]" in msg and "Output" in msg
    assert "declaration" in msg and "NIR 0.2.0" in msg and "fix the layer sizes" not in msg
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 3)))
    out = tmp_path / "o.npz"
    assert main(["run", str(tmp_path / "bad.nir"), "--input", str(tmp_path / "x.npy"),
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "[1, 1, 4]" in err and not out.exists()


def test_a_layer_mismatch_in_an_old_file_keeps_the_layer_message(tmp_path):
    _old_file(tmp_path / "f.nir", {
        "input": {"type": "Input", "shape": np.array([3])},
        "fc": {"type": "Affine", "weight": np.ones((4, 3)), "bias": np.zeros(4)},
        "fc2": {"type": "Affine", "weight": np.ones((2, 5)), "bias": np.zeros(2)},
        "output": {"type": "Output", "shape": np.array([2])},
    }, [("input", "fc"), ("fc", "fc2"), ("fc2", "output")])
    with pytest.raises(ShapeMismatchError, match=r"\[4\].*\[5\].*\[out, in\]"):
        nirbridge.read(tmp_path / "f.nir")


# -------------------------------------------------------------------------- Rockpool
def test_from_rockpool_reads_the_dt_back_from_the_neurons(tmp_path, capsys):
    _rockpool_lif_file(tmp_path / "rp.nir")
    fe = frontend("rockpool")
    assert fe.DT is None and "τ/(1+r)" in fe.DT_RULE
    g, notes = fe.from_file(nirbridge.read(tmp_path / "rp.nir"))
    r = TAU * np.exp(-ROCKPOOL_DT / TAU) / ROCKPOOL_DT
    assert g.metadata["dt"] == pytest.approx(TAU / (1 + r), rel=1e-6)  # Rockpool's reading
    assert g.metadata["dt"] == pytest.approx(ROCKPOOL_DT, rel=1e-3) and notes
    out = tmp_path / "imported.nir"
    assert main(["import", str(tmp_path / "rp.nir"), "--from", "rockpool", "-o",
                 str(out)]) == 0
    assert "--from rockpool: dt = " in capsys.readouterr().out
    back = nirbridge.read(out)
    assert back.metadata[IMPORT_KEY]["from"] == "rockpool"
    step = resolve_dt(back, require=True)
    assert step.dt == pytest.approx(TAU / (1 + r), rel=1e-6)
    assert step.source == "Rockpool's reading, --from rockpool"


def test_rockpool_modules_are_refused_naming_the_file_route():
    RockpoolModule = type("LIFTorch", (torch.nn.Module,), {
        "__module__": "rockpool.nn.modules.torch", "forward": lambda self, x: x})
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), RockpoolModule())
    with pytest.raises(UnsupportedLayerError, match="Rockpool.*--from rockpool"):
        nirbridge.to_nir(model, torch.zeros(1, 2))
