"""Tests of :mod:`nirbridge.io` (reading and writing ``.nir`` files) and of the checks and
shape inference of :mod:`nirbridge.passes`."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
import pytest
import torch

from nirbridge import io
from nirbridge import nodes as N
from nirbridge.errors import (
    FileFormatError,
    GraphError,
    InvalidParameterError,
    MissingParameterError,
    NirbridgeError,
    ShapeMismatchError,
    UnknownNodeError,
)
from nirbridge.io.decode import unseal
from nirbridge.neurons import functional as F
from nirbridge.passes import infer_shapes, validate

H = 6  # width of the neuron layers of the test graph
CUSTOM_NAMES = ["arlif", "klif_soft", "klif_hard", "dalif", "clif", "alif", "sublif"]


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _custom_nodes(rng: np.random.Generator) -> dict[str, N.CustomNeuron]:
    u = lambda lo, hi: rng.uniform(lo, hi, H)  # noqa: E731
    return {
        "arlif": N.ARLIF(decay=u(0.2, 0.8), v_threshold=u(0.8, 1.2), tanh_a=u(-0.5, 0.5),
                         c=u(-1, 1), memoryless_m=True, compare=">",
                         metadata={"source": "test", "layer": 3}),
        "klif_soft": N.KLIF(tau=u(1.5, 3), k=u(0.5, 1.5), v_threshold=u(0.8, 1.2),
                            v_reset=np.zeros(H), soft_reset=True, scale_reset=True),
        "klif_hard": N.KLIF(tau=u(1.5, 3), k=u(0.5, 1.5), v_threshold=u(0.8, 1.2),
                            v_reset=u(-0.2, 0.0), decay_input=False),
        "dalif": N.DALIF(alpha=u(0.5, 2), beta=u(0.1, 0.9), v_threshold=u(0.8, 1.2)),
        "clif": N.CLIF(tau=u(1.5, 3), v_threshold=u(0.8, 1.2)),
        "alif": N.ALIF(alpha=u(0.7, 0.95), rho=u(0.9, 0.99), v_threshold=u(0.5, 1),
                       beta=u(0.5, 2)),
        "sublif": N.SubtractiveLIF(tau=u(2, 5), r=u(0.5, 2), v_leak=u(-0.1, 0.1),
                                   v_threshold=u(0.8, 1.2), compare=">="),
    }


def full_graph(dt: float = 0.001) -> nir.NIRGraph:
    """Every custom node class and the common standard nodes in one chain."""
    rng = _rng()
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, shape or (H,))  # noqa: E731
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type=np.array([1, 8, 8])),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=u(-1, 1, 2, 1, 3, 3), stride=1,
                           padding=1, dilation=1, groups=1, bias=u(-1, 1, 2)),
        "sumpool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                 padding=np.array([0, 0])),
        "avgpool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                 padding=np.array([0, 0])),
        "lif": nir.LIF(tau=u(2, 5, 2, 2, 2), r=np.ones((2, 2, 2)), v_leak=np.zeros((2, 2, 2)),
                       v_threshold=np.ones((2, 2, 2)), v_reset=np.zeros((2, 2, 2)),
                       metadata={"compare": ">="}),
        "flatten": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
        "fc": nir.Affine(weight=u(-1, 1, H, 8), bias=u(-1, 1, H)),
    }
    nodes.update(_custom_nodes(rng))
    nodes.update({
        "lin": nir.Linear(weight=u(-1, 1, H, H)),
        "if": nir.IF(r=u(0.5, 1), v_threshold=np.ones(H), v_reset=np.zeros(H)),
        "li": nir.LI(tau=u(2, 4), r=np.ones(H), v_leak=np.zeros(H)),
        "cuba": nir.CubaLIF(tau_syn=u(2, 4), tau_mem=u(2, 4), r=np.ones(H), v_leak=np.zeros(H),
                            v_threshold=np.ones(H), v_reset=np.zeros(H), w_in=u(0.5, 1.5)),
        "output": nir.Output(output_type=np.array([H])),
    })
    names = list(nodes)
    edges = list(zip(names[:-1], names[1:], strict=True))
    metadata = {
        "dt": dt, "steps": 25, "source": "nirbridge tests", "normalised": True,
        "scale": np.array([0.5, 2.0], dtype=np.float32), "classes": ["a", "b", "c"],
        "window": (3, 4), "nothing": None, "nested": {"seed": 7, "lr": 1e-3, "deep": {"ok": False}},
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal values of identical types, recursively (arrays: dtype, shape and values)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_graph(a: nir.NIRGraph, b: nir.NIRGraph) -> None:
    assert list(a.nodes) == list(b.nodes)
    for name in a.nodes:
        assert type(a.nodes[name]) is type(b.nodes[name]), name
        assert_same(a.nodes[name].to_dict(), b.nodes[name].to_dict(), name)
    assert [tuple(e) for e in a.edges] == [tuple(e) for e in b.edges]
    assert_same(dict(a.metadata), dict(b.metadata), "metadata")


# ------------------------------------------------------------------------- round trips
def test_native_round_trip_is_exact_for_every_node_class(tmp_path):
    graph = full_graph()
    path = tmp_path / "model.nir"
    io.write(path, graph)
    back = io.read(path)
    assert_same_graph(graph, back)
    for name in CUSTOM_NAMES:
        assert type(back.nodes[name]) is type(graph.nodes[name])
    assert back.nodes["klif_soft"].soft_reset is True
    assert back.nodes["klif_hard"].decay_input is False
    assert back.nodes["arlif"].memoryless_m is True and back.nodes["arlif"].compare == ">"
    assert back.metadata["dt"] == 0.001 and type(back.metadata["dt"]) is float
    assert N.compare_of(back.nodes["lif"]) == ">="
    # read inferred the shapes NIR leaves unknown
    assert list(back.nodes["avgpool"].output_type["output"]) == [2, 2, 2]
    # NIR's standard layout
    with h5py.File(path, "r") as f:
        assert f["version"][()].decode() == nir.version
        assert f["node/type"][()] == b"NIRGraph"
        assert f["node/nodes/klif_soft/type"][()] == b"KLIF"
        assert f["node/edges"].shape == (len(graph.edges), 2)
        assert f["node/metadata/dt"][()] == 0.001


def test_round_trip_of_a_read_graph_is_stable(tmp_path):
    io.write(tmp_path / "a.nir", full_graph())
    first = io.read(tmp_path / "a.nir")
    io.write(tmp_path / "b.nir", first)
    assert_same_graph(first, io.read(tmp_path / "b.nir"))


def standard_graph() -> nir.NIRGraph:
    """:func:`full_graph` without its custom nodes (``fc`` feeds ``lin``)."""
    graph = full_graph()
    for name in CUSTOM_NAMES:
        del graph.nodes[name]
    graph.edges = [e for e in graph.edges if not set(e) & set(CUSTOM_NAMES)] + [("fc", "lin")]
    return graph


def test_standard_only_native_file_loads_in_stock_nir(tmp_path):
    graph = standard_graph()
    path = tmp_path / "std.nir"
    io.write(path, graph)
    stock = nir.read(path)
    assert {type(n).__name__ for n in stock.nodes.values()} >= {"Conv2d", "CubaLIF", "LIF"}
    np.testing.assert_array_equal(stock.nodes["fc"].weight, graph.nodes["fc"].weight)


def test_read_a_file_written_by_stock_nir(tmp_path):
    graph = standard_graph()
    graph.metadata = {"dt": 1e-4, "framework": "snntorch"}
    path = tmp_path / "stock.nir"
    nir.write(path, graph)
    back = io.read(path)
    assert list(back.nodes) == sorted(graph.nodes)  # stock NIR does not keep node order
    for name, node in graph.nodes.items():
        assert type(back.nodes[name]) is type(node)
        for field in ("weight", "bias", "tau", "r", "v_threshold", "w_in", "kernel_size"):
            if hasattr(node, field):
                np.testing.assert_array_equal(getattr(back.nodes[name], field),
                                              getattr(node, field))
    assert sorted(back.edges) == sorted(graph.edges)
    assert back.metadata["dt"] == 1e-4 and back.metadata["framework"] == "snntorch"
    assert N.compare_of(back.nodes["lif"]) == ">="


# ---------------------------------------------------------------------------- lossy
def test_lossy_file_loads_in_stock_nir_and_warns_for_each_custom_node(tmp_path):
    graph = full_graph()
    path = tmp_path / "lossy.nir"
    with pytest.warns(io.LossyExportWarning) as record:
        io.write(path, graph, compat="lossy")
    messages = [str(w.message) for w in record if issubclass(w.category, io.LossyExportWarning)]
    assert len(messages) == len(CUSTOM_NAMES)
    for name in CUSTOM_NAMES:
        typ = type(graph.nodes[name]).__name__
        assert any(f"'{name}'" in m and typ in m for m in messages), name
    stock = nir.read(path)  # stock NIR, with its own type check
    for name in CUSTOM_NAMES:
        node = stock.nodes[name]
        assert isinstance(node, (nir.LIF, nir.IF)), name
        assert node.metadata[io.LOSSY_KEY] == type(graph.nodes[name]).__name__
        assert node.metadata["compare"] == graph.nodes[name].compare
    assert set(stock.metadata[io.LOSSY_KEY]) == set(CUSTOM_NAMES)
    # the original graph is untouched
    assert isinstance(graph.nodes["arlif"], N.ARLIF)


def test_lossy_file_restores_exactly_with_nirbridge(tmp_path):
    graph = full_graph()
    path = tmp_path / "lossy.nir"
    with pytest.warns(io.LossyExportWarning):
        io.write(path, graph, compat="lossy")
    plain = io.read(path)
    assert isinstance(plain.nodes["clif"], nir.LIF)
    restored = io.read(path, restore_lossy=True)
    assert_same_graph(graph, restored)


def test_dalif_with_unit_beta_becomes_if(tmp_path):
    node = N.DALIF(alpha=np.full(3, 0.5), beta=np.ones(3), v_threshold=np.ones(3), reset="hard")
    graph = nir.NIRGraph(nodes={"i": nir.Input(np.array([3])), "d": node,
                                "o": nir.Output(np.array([3]))},
                         edges=[("i", "d"), ("d", "o")], type_check=False)
    new, notes = io.lossy_graph(graph)
    assert isinstance(new.nodes["d"], nir.IF)
    np.testing.assert_array_equal(new.nodes["d"].r, 0.5)
    assert "exact" in notes[0]


def _lif_of(node: nir.LIF):
    p = {k: torch.as_tensor(getattr(node, k)) for k in ("r", "v_threshold", "v_reset", "tau",
                                                         "v_leak")}
    return lambda x, s, dt: F.lif_step(x, s, dt=dt, compare=N.compare_of(node), **p)


@pytest.mark.parametrize("dt", [1.0, 0.25])
@pytest.mark.parametrize("name", CUSTOM_NAMES)
def test_lossy_approximation_is_exact_below_threshold(name, dt):
    """Below threshold (no spikes) each approximation follows the custom node exactly at
    the graph's dt, under NIR's forward-Euler LIF step."""
    node = _custom_nodes(_rng())[name]
    node.v_threshold = np.full(H, 1e6)  # never fires
    graph = nir.NIRGraph(nodes={"n": node}, edges=[], metadata={"dt": dt}, type_check=False)
    approx = io.lossy_graph(graph)[0].nodes["n"]
    assert isinstance(approx, nir.LIF)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(12, 1, H, dtype=torch.float64, generator=gen) + 0.2  # keeps KLIF's h > 0
    zeros = torch.zeros(1, H, dtype=torch.float64)
    state = node.initial_state(1, torch.float64)
    if name == "klif_hard":  # KLIF starts at v_r, the LIF at 0: compare from the same start
        state = F.LIFState(zeros)
    lif_state = F.LIFState(zeros)
    step = _lif_of(approx)
    for t in range(x.shape[0]):
        _, state = node.step(x[t], state, dt=dt)
        _, lif_state = step(x[t], lif_state, dt)
        torch.testing.assert_close(lif_state.v, state.v, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------ bad input
def _small_graph(weight2: np.ndarray | None = None) -> nir.NIRGraph:
    w1 = np.arange(12, dtype=np.float64).reshape(4, 3) / 10
    w2 = np.ones((2, 4)) if weight2 is None else weight2
    nodes = {
        "input": nir.Input(np.array([3])),
        "fc1": nir.Affine(weight=w1, bias=np.zeros(4)),
        "lif1": N.SubtractiveLIF(tau=np.full(4, 2.0), r=np.ones(4), v_leak=np.zeros(4),
                                 v_threshold=np.ones(4)),
        "fc2": nir.Affine(weight=w2, bias=np.zeros(w2.shape[0])),
        "output": nir.Output(np.array([w2.shape[0]])),
    }
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:], strict=True)),
                        metadata={"dt": 1.0}, type_check=False)


@pytest.fixture
def small_file(tmp_path) -> Path:
    path = tmp_path / "small.nir"
    io.write(path, _small_graph())
    return path


def test_missing_file(tmp_path):
    path = tmp_path / "absent.nir"
    with pytest.raises(FileFormatError, match="absent.nir"):
        io.read(path)


def test_truncated_file(small_file):
    data = small_file.read_bytes()
    small_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError) as err:
        io.read(small_file)
    assert "small.nir" in str(err.value)


def test_text_file_is_not_hdf5(tmp_path):
    path = tmp_path / "notes.nir"
    path.write_text("this is not a NIR graph\n")
    with pytest.raises(FileFormatError, match=r"notes\.nir.*HDF5"):
        io.read(path)


def test_hdf5_without_nir_graph(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(3))
    with pytest.raises(FileFormatError, match=r"other\.h5.*'node'"):
        io.read(path)


def test_unknown_node_type(small_file):
    with h5py.File(small_file, "r+") as f:
        unseal(f)  # a hand edit: the file is no longer nirbridge's own
        del f["node/nodes/lif1/type"]
        f["node/nodes/lif1"].create_dataset("type", data="FancyLIF", dtype=h5py.string_dtype())
    with pytest.raises(UnknownNodeError) as err:
        io.read(small_file)
    msg = str(err.value)
    assert "small.nir" in msg and "'lif1'" in msg and "FancyLIF" in msg and "'type'" in msg


@pytest.mark.parametrize(("node", "field"), [("fc2", "weight"), ("lif1", "v_threshold")])
def test_missing_parameter(small_file, node, field):
    with h5py.File(small_file, "r+") as f:
        unseal(f)  # a hand edit: the file is no longer nirbridge's own
        del f[f"node/nodes/{node}/{field}"]
    with pytest.raises(MissingParameterError) as err:
        io.read(small_file)
    msg = str(err.value)
    assert "small.nir" in msg and f"'{node}'" in msg and f"'{field}'" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weight(tmp_path, bad):
    graph = _small_graph()
    graph.nodes["fc2"].weight[1, 2] = bad
    with pytest.raises(InvalidParameterError, match=r"'fc2'.*'weight'"):
        validate(graph)
    path = tmp_path / "bad.nir"
    with pytest.raises(InvalidParameterError):
        io.write(path, graph)  # write checks first: no file
    assert not path.exists()
    io.write(path, graph, check=False)
    with pytest.raises(InvalidParameterError) as err:
        io.read(path)
    msg = str(err.value)
    assert "bad.nir" in msg and "'fc2'" in msg and "'weight'" in msg
    assert ("NaN" if np.isnan(bad) else "inf") in msg


def test_edge_to_missing_node(small_file):
    with h5py.File(small_file, "r+") as f:
        unseal(f)  # a hand edit: the file is no longer nirbridge's own
        edges = f["node/edges"].asstr()[()].tolist() + [["fc2", "ghost"]]
        del f["node/edges"]
        f["node"].create_dataset("edges", data=np.array(edges, dtype=object),
                                 dtype=h5py.string_dtype())
    with pytest.raises(GraphError) as err:
        io.read(small_file)
    msg = str(err.value)
    assert "small.nir" in msg and "'ghost'" in msg and "'edges'" in msg


def test_shape_mismatch(tmp_path):
    graph = _small_graph(weight2=np.ones((2, 5)))  # fc1 gives 4, fc2 expects 5
    graph.nodes.pop("lif1")
    graph.edges = [("input", "fc1"), ("fc1", "fc2"), ("fc2", "output")]
    with pytest.raises(ShapeMismatchError):
        validate(graph)
    path = tmp_path / "mismatch.nir"
    io.write(path, graph, check=False)
    with pytest.raises(ShapeMismatchError) as err:
        io.read(path)
    msg = str(err.value)
    assert "mismatch.nir" in msg and "'fc1'" in msg and "'fc2'" in msg
    assert "[4]" in msg and "[5]" in msg and "input_type" in msg


def test_graph_without_input_node():
    graph = _small_graph()
    graph.nodes.pop("input")
    graph.edges = graph.edges[1:]
    with pytest.raises(GraphError, match="no Input node"):
        validate(graph)


def test_failing_write_leaves_no_file(tmp_path):
    graph = _small_graph()
    graph.metadata["callback"] = object()
    path = tmp_path / "out.nir"
    with pytest.raises(InvalidParameterError, match=r"'metadata\.callback'"):
        io.write(path, graph)
    assert list(tmp_path.iterdir()) == []
    # and an existing file is left untouched
    io.write(path, _small_graph())
    before = path.read_bytes()
    with pytest.raises(InvalidParameterError):
        io.write(path, graph)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_unserialisable_node_field_is_named(tmp_path):
    graph = _small_graph()
    graph.nodes["fc1"].metadata = {"opts": {"fn": print}}
    with pytest.raises(InvalidParameterError, match=r"'fc1'.*'metadata\.opts\.fn'"):
        io.write(tmp_path / "x.nir", graph)
    assert list(tmp_path.iterdir()) == []


def test_bad_compat_and_missing_directory(tmp_path):
    with pytest.raises(InvalidParameterError, match="compat"):
        io.write(tmp_path / "x.nir", _small_graph(), compat="fast")
    with pytest.raises(NirbridgeError, match="does not exist"):
        io.write(tmp_path / "no" / "x.nir", _small_graph())


# --------------------------------------------------------------------------- passes
def test_infer_shapes_fills_pooling_and_conv():
    graph = full_graph()
    graph.nodes["conv"] = nir.Conv2d(input_shape=None, weight=np.ones((2, 1, 3, 3)), stride=1,
                                     padding=1, dilation=1, groups=1, bias=np.zeros(2))
    assert graph.nodes["sumpool"].input_type["input"] is None
    infer_shapes(graph)
    assert graph.nodes["conv"].input_shape == (8, 8)
    assert list(graph.nodes["sumpool"].output_type["output"]) == [2, 4, 4]
    assert list(graph.nodes["avgpool"].output_type["output"]) == [2, 2, 2]
    validate(graph)


def test_validate_accepts_the_full_graph():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(full_graph())


def test_foreign_batch_dimension_and_scalar_neurons_are_accepted(tmp_path):
    """nirtorch-based exporters (Norse, snnTorch) write Input/Output shapes with the sample's
    batch dimension and scalar neuron parameters; such files read without error."""
    nodes = {
        "input": nir.Input(np.array([4, 5])),
        "0": nir.Affine(weight=np.ones((7, 5)), bias=np.zeros(7)),
        "1": nir.LIF(tau=np.array(2.0), r=np.array(1.0), v_leak=np.array(0.0),
                     v_threshold=np.array(1.0), v_reset=np.array(0.0)),
        "2": nir.Affine(weight=np.ones((3, 7)), bias=np.zeros(3)),
        "output": nir.Output(np.array([4, 3])),
    }
    edges = [("0", "1"), ("input", "0"), ("1", "2"), ("2", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    validate(graph)
    path = tmp_path / "norse_like.nir"
    io.write(path, graph)
    back = io.read(path)
    assert list(back.nodes) == list(nodes)
    assert list(back.nodes["input"].output_type["output"]) == [5]  # batch dimension removed
    assert list(back.nodes["output"].input_type["input"]) == [3]
    # a batch-like extra dimension between two inner layers is still a mismatch
    graph.nodes["2"] = nir.Affine(weight=np.ones((3, 7)), bias=np.zeros(3))
    graph.nodes["1"] = nir.LIF(tau=np.full((2, 7), 2.0), r=np.ones((2, 7)),
                               v_leak=np.zeros((2, 7)), v_threshold=np.ones((2, 7)),
                               v_reset=np.zeros((2, 7)))
    with pytest.raises(ShapeMismatchError, match="'1'"):
        validate(graph)


def test_infer_shapes_strips_a_batch_dimension_of_the_input():
    conv = nir.Conv2d(input_shape=None, weight=np.ones((2, 1, 3, 3)), stride=1, padding=0,
                      dilation=1, groups=1, bias=np.zeros(2))
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([8, 1, 6, 6])), "conv": conv,
                                "output": nir.Output(np.array([2, 4, 4]))},
                         edges=[("input", "conv"), ("conv", "output")], type_check=False)
    infer_shapes(graph)
    assert conv.input_shape == (6, 6)
    assert list(conv.output_type["output"]) == [2, 4, 4]
    validate(graph)


@pytest.mark.parametrize("dt", [1.0, 0.25])
@pytest.mark.parametrize("name", [n for n in CUSTOM_NAMES if n != "arlif"])
def test_lossy_approximation_fires_first_at_the_same_step(name, dt):
    """Up to each neuron's first spike the approximation is exact, threshold and firing
    convention included (AR-LIF's threshold depends on the input, so it is excluded)."""
    node = _custom_nodes(_rng())[name]
    graph = nir.NIRGraph(nodes={"n": node}, edges=[], metadata={"dt": dt}, type_check=False)
    step = _lif_of(io.lossy_graph(graph)[0].nodes["n"])
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(40, 1, H, dtype=torch.float64, generator=gen) * 2 + 0.2
    zeros = torch.zeros(1, H, dtype=torch.float64)
    state = F.LIFState(zeros) if name == "klif_hard" else node.initial_state(1, torch.float64)
    lif_state = F.LIFState(zeros)
    first = torch.full((2, H), -1)
    for t in range(x.shape[0]):
        s_custom, state = node.step(x[t], state, dt=dt)
        s_lif, lif_state = step(x[t], lif_state, dt)
        for row, s in enumerate((s_custom[0], s_lif[0])):
            first[row] = torch.where((first[row] < 0) & (s > 0), t, first[row])
    assert (first[0] >= 0).any(), "the test input never made the neuron fire"
    assert torch.equal(first[0], first[1])
