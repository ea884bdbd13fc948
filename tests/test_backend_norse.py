"""The ``norse`` backend: Norse 1.1's own ``from_nir`` executor, measured against the
float64 reference.

- On nodes Norse reads as NIR defines them (LIF with r = 1, v_reset = 0, v_leak = 0, IF,
  Affine, Linear, Conv2d, Flatten, SumPool2d) the spikes equal the reference's; graded
  values differ by Norse's float32 parameters only (measured, within the stated
  tolerance), and not at all where every array is a float32 value and dt/τ exact.
- Where Norse reads a node differently (CubaLIF with v_leak ≠ 0, LIF with r ≠ 1 or
  v_leak ≠ 0, IF with v_reset ≠ 0, a join nirtorch runs out of order) the spikes differ
  from the reference (measured), ``reading()`` names node and field, and the reference
  run of ``reading().graph`` equals the backend: the named difference is the whole one.
- Custom nodes run through nirbridge's step plugged into Norse's executor.
"""

from __future__ import annotations

import logging

import nir
import numpy as np
import pytest
import torch

from nirbridge.backends import get
from nirbridge.backends.reference import run_reference
from nirbridge.errors import LoweringError
from nirbridge.neurons import NEURONS

pytest.importorskip("norse.torch")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

T, B, N_IN, N = 16, 3, 5, 6
NORSE = get("norse")


@pytest.fixture(autouse=True)
def _quiet():
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def _graph(nodes: dict, chain: list[str], n_in: int = N_IN, dt: float = 1.0,
           extra: list | None = None) -> nir.NIRGraph:
    nodes = {"input": nir.Input(np.array([n_in])), **nodes,
             "output": nir.Output(np.array([1]))}
    names = ["input", *chain, "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:], strict=False))
                        + (extra or []),
                        metadata={"dt": dt}, type_check=False)


def _lif(n: int, **kw) -> nir.LIF:
    p = dict(tau=np.linspace(2.0, 5.0, n), r=np.ones(n), v_leak=np.zeros(n),
             v_threshold=np.full(n, 0.5), v_reset=np.zeros(n))
    p.update(kw)
    return nir.LIF(**p)


def _dense(rounded: bool = False) -> nir.NIRGraph:
    """Affine → LIF → Linear → IF, per the spec; ``rounded``: float32 arrays, τ powers of
    two (Norse reads them without any change)."""
    rng = _rng(1)
    w1, b1, w2 = rng.normal(0, 1.0, (N, N_IN)), rng.normal(0.3, 0.1, N), rng.normal(0, 0.8, (4, N))
    lif = _lif(N)
    if rounded:
        w1, b1, w2 = _f32(w1), _f32(b1), _f32(w2)
        lif = _lif(N, tau=np.array([2.0, 4.0, 2.0, 8.0, 4.0, 2.0]))
    return _graph({"fc": nir.Affine(w1, b1), "lif": lif, "fc2": nir.Linear(w2),
                   "if": nir.IF(r=np.ones(4), v_threshold=np.full(4, 0.75),
                                v_reset=np.zeros(4))}, ["fc", "lif", "fc2", "if"])


def _conv(start_dim: int | None = None) -> nir.NIRGraph:
    """Conv2d → IF → SumPool2d → Conv2d → LIF (one channel 6x6 input); with
    ``start_dim``, → Flatten(start_dim) → Affine → LIF after the pool instead."""
    rng = _rng(2)
    conv = nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0, 0.6, (3, 1, 3, 3)),
                      stride=1, padding=1, dilation=1, groups=1, bias=np.full(3, 0.1))
    nodes = {"conv": conv,
             "if": nir.IF(r=np.ones((3, 6, 6)), v_threshold=np.full((3, 6, 6), 0.5),
                          v_reset=np.zeros((3, 6, 6))),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                   padding=np.array([0, 0]))}
    if start_dim is None:
        nodes["conv2"] = nir.Conv2d(input_shape=(3, 3), weight=rng.normal(0, 0.4, (2, 3, 3, 3)),
                                    stride=1, padding=0, dilation=1, groups=1,
                                    bias=np.zeros(2))
        nodes["lif"] = _lif(2, v_threshold=np.full(2, 0.3))
    else:
        nodes["flat"] = nir.Flatten(input_type={"input": np.array([3, 3, 3])},
                                    start_dim=start_dim)
        nodes["fc"] = nir.Affine(rng.normal(0, 0.4, (N, 27)), np.zeros(N))
        nodes["lif"] = _lif(N, v_threshold=np.full(N, 0.3))
    graph = _graph(nodes, list(nodes))
    graph.nodes["input"] = nir.Input(np.array([1, 6, 6]))
    return graph


def _x(shape: tuple[int, ...] = (N_IN,), seed: int = 3) -> np.ndarray:
    return _rng(seed).random((T, B, *shape)) * 1.5


def _spiking(graph: nir.NIRGraph) -> list[str]:
    return [n for n, node in graph.nodes.items() if isinstance(node, (nir.LIF, nir.IF,
                                                                      nir.CubaLIF))]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference relative to the layer's largest value."""
    return float((a - b).abs().max() / b.abs().max())


def _equal_to_reading(graph: nir.NIRGraph, x: np.ndarray):
    """The backend's run equals the reference run of its ``reading().graph``: spikes
    identical, graded values within summation rounding (1e-12)."""
    reading = NORSE.reading(graph)
    res = NORSE.run(graph, x, record=True)
    _, ref = run_reference(reading.graph, x, record=True)
    for name in graph.nodes:
        if name == "input":
            continue
        got, want = res.records[name].output, ref[name].output
        if name in _spiking(graph):
            assert torch.equal(got, want), name
        else:
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)
    return reading, res


# ------------------------------------------------------------------ read per the spec
@pytest.mark.parametrize("make,shape", [(_dense, (N_IN,)), (_conv, (1, 6, 6))],
                         ids=["dense", "conv"])
def test_nodes_norse_reads_per_spec_equal_the_reference(make, shape):
    graph, x = make(), _x(shape)
    assert NORSE.check(graph) == []
    reading, res = _equal_to_reading(graph, x)
    _, ref = run_reference(graph, x, record=True)
    for name in _spiking(graph):  # spikes identical to the spec's, and the layer is active
        spikes = res.records[name].output
        assert torch.equal(spikes, ref[name].output), name
        assert 0.05 < float(spikes.mean()) < 0.95, (name, float(spikes.mean()))
    graded = [n for n in graph.nodes if n not in _spiking(graph) and n != "input"]
    worst = max(_rel(res.records[n].output, ref[n].output) for n in graded)
    assert 0 < worst <= NORSE.tolerance.graded_rel, worst  # float32 parameters: measured
    logging.getLogger(__name__).info("norse vs reference, graded: %.2e relative", worst)
    # every note is a float32 rounding of a named node and field
    assert reading.notes and all("float32" in n and n.split(":")[0] in graph.nodes
                                 for n in reading.notes), reading.notes


def test_float32_values_and_exact_factors_are_read_exactly():
    graph, x = _dense(rounded=True), _x()
    assert NORSE.reading(graph).notes == []
    res = NORSE.run(graph, x)
    np.testing.assert_array_equal(res.outputs, run_reference(graph, x).numpy())
    assert res.info["dtype"] == "float64" and res.info["dt"] == 1.0


def test_float32_option_runs_norse_natively():
    graph, x = _dense(), _x()
    res = NORSE.run(graph, x, record=["lif"], dtype="float32")
    ref = run_reference(graph, x, record=["lif"])[1]
    assert res.info["dtype"] == "float32"
    identical = float((res.records["lif"].output == ref["lif"].output).float().mean())
    assert identical >= 0.99, identical


# ------------------------------------------------------------- read differently
def _cubalif(n: int) -> nir.CubaLIF:
    return nir.CubaLIF(tau_syn=np.full(n, 2.0), tau_mem=np.full(n, 4.0), r=np.ones(n),
                       v_leak=np.full(n, 0.2), v_threshold=np.full(n, 0.5),
                       v_reset=np.zeros(n), w_in=np.full(n, 2.0))


DIFFERENT = {
    # node, the words a note must say about it
    "cubalif_v_leak": (lambda: _cubalif(N), "leaks to v_leak"),
    "lif_r": (lambda: _lif(N, r=np.full(N, 2.0)), "r ignored"),
    "lif_v_leak": (lambda: _lif(N, v_leak=np.full(N, 0.3)), "v starts at v_leak"),
    "if_v_reset": (lambda: nir.IF(r=np.ones(N), v_threshold=np.full(N, 0.5),
                                  v_reset=np.full(N, -0.5)), "v_reset ignored"),
}


@pytest.mark.parametrize("kind", sorted(DIFFERENT))
def test_readings_that_differ_are_measured_and_named(kind):
    make, words = DIFFERENT[kind]
    rng = _rng(4)
    graph = _graph({"fc": nir.Affine(_f32(rng.normal(0.2, 0.6, (N, N_IN))), np.zeros(N)),
                    "n": make()}, ["fc", "n"])
    x = _x()
    assert NORSE.check(graph) == []
    reading, res = _equal_to_reading(graph, x)  # the named difference is the whole one
    assert any(note.startswith("n") and words in note for note in reading.notes), \
        reading.notes
    spikes = res.records["n"].output
    agreement = float((spikes == run_reference(graph, x, record=["n"])[1]["n"].output)
                      .double().mean())
    assert agreement < 1.0 and float(spikes.mean()) > 0.05, (kind, agreement)


def test_flatten_dims_are_read_as_torch_s_and_named():
    # Norse applies torch.nn.Flatten(start_dim, end_dim) to [B, ...]: a NIR start_dim = 0
    # would flatten the batch (refused); start_dim = 1 flattens every per-sample axis
    assert any("batch axis" in r for r in NORSE.check(_conv(start_dim=0)))
    graph = _conv(start_dim=1)
    reading, res = _equal_to_reading(graph, _x((1, 6, 6)))
    assert any(n.startswith("flat: Flatten start_dim = 1") and "start_dim = 0" in n
               for n in reading.notes), reading.notes
    assert float(res.records["lif"].output.mean()) > 0.05


def test_a_join_nirtorch_runs_out_of_order_is_a_named_one_step_delay():
    rng = _rng(5)
    graph = _graph({"fc": nir.Affine(_f32(rng.normal(0.3, 0.5, (N, N_IN))), np.zeros(N)),
                    "lif": _lif(N, tau=np.full(N, 2.0)),
                    "skip": nir.Affine(_f32(rng.normal(0.3, 0.5, (N, N_IN))), np.zeros(N)),
                    "sum": _lif(N, tau=np.full(N, 2.0))}, ["fc", "lif", "sum"],
                   extra=[("input", "skip"), ("skip", "sum")])
    x = _x()
    reading, res = _equal_to_reading(graph, x)
    (note,) = [n for n in reading.notes if "edge skip → sum" in n]
    assert "previous step" in note
    ref = run_reference(graph, x, record=["sum"])[1]["sum"].output
    assert not torch.equal(res.records["sum"].output, ref)


def test_recurrent_lif_equals_the_reference():
    rng = _rng(6)
    graph = _graph({"fc": nir.Affine(_f32(rng.normal(0.3, 0.6, (N, N_IN))), np.zeros(N)),
                    "lif": _lif(N, tau=np.full(N, 2.0)),
                    "rec": nir.Affine(_f32(rng.normal(0, 0.5, (N, N))), _f32(np.full(N, 0.1)))},
                   ["fc", "lif"], extra=[("lif", "rec"), ("rec", "lif")])
    x = _x()
    assert NORSE.reading(graph).notes == []
    res = NORSE.run(graph, x, record=["lif"])
    want = run_reference(graph, x, record=["lif"])[1]["lif"].output
    assert torch.equal(res.records["lif"].output, want) and float(want.mean()) > 0.05


# -------------------------------------------------------------------- custom nodes
@pytest.mark.parametrize("kind", ["KLIF", "NorseLIF", "ARLIF"])
def test_custom_nodes_run_through_the_plug_in_and_equal_the_reference(kind):
    node = NEURONS[kind].example((N,), True).to_nir_node((N,), 1.0)
    rng = _rng(7)
    graph = _graph({"fc": nir.Affine(_f32(rng.normal(0.5, 0.8, (N, N_IN))), np.zeros(N)),
                    "sub": nir.NIRGraph(nodes={"in": nir.Input(np.array([N])), "n": node,
                                               "out": nir.Output(np.array([N]))},
                                        edges=[("in", "n"), ("n", "out")], type_check=False),
                    "fc2": nir.Linear(_f32(rng.normal(0, 0.8, (3, N))))},
                   ["fc", "sub", "fc2"])
    x = _x() * 2
    assert NORSE.check(graph) == [] and NORSE.reading(graph).notes == []
    res = NORSE.run(graph, x, record=True)
    out, ref = run_reference(graph, x, record=True)
    rec = res.records["sub.n"]  # the subgraph's node, by its flattened name
    assert torch.equal(rec.output, ref["sub.n"].output), kind
    assert 0.05 < float(rec.output.mean()) < 0.95, float(rec.output.mean())
    torch.testing.assert_close(rec.input, ref["sub.n"].input, rtol=1e-12, atol=1e-12)
    for f, v in ref["sub.n"].states.items():
        torch.testing.assert_close(rec.states[f], v, rtol=1e-12, atol=1e-12, msg=f)
    np.testing.assert_allclose(res.outputs, out.numpy(), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------ refusals
def test_check_names_what_norse_cannot_run():
    li = nir.LI(tau=np.full(N, 2.0), r=np.ones(N), v_leak=np.zeros(N))
    rng = _rng(8)
    fc = nir.Affine(rng.normal(0, 1, (N, N_IN)), np.zeros(N))
    for extra, words in [({"li": li}, "'li' (LI)"),
                         ({"s": nir.Scale(np.ones(N))}, "'s' (Scale)"),
                         ({"d": nir.Delay(np.ones(N))}, "'d' (Delay)")]:
        graph = _graph({"fc": fc, **extra}, ["fc", *extra])
        reasons = NORSE.check(graph)
        assert reasons and words in reasons[0], reasons
        with pytest.raises(LoweringError, match="norse backend cannot run"):
            NORSE.run(graph, _x())
    two = _graph({"fc": fc}, ["fc"])
    two.nodes["input2"] = nir.Input(np.array([N_IN]))
    two.edges.append(("input2", "fc"))
    assert any("2 Input nodes" in r for r in NORSE.check(two))
