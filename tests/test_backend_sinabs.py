"""The ``sinabs`` backend: Sinabs 3.1's own ``sinabs.from_nir``, on a conv graph written by
Sinabs' own exporter (Conv2d → IAF → SumPool2d → Conv2d → IAF → Flatten → Linear → IAF).

Its run equals the float64 reference run of ``reading().graph`` exactly (outputs, every
node's output and input, every IAF's v_mem); it differs from the reference run of the
file itself (NIR's IF: one spike, hard reset), measured per layer with
:func:`nirbridge.verify.compare`; ``reading()`` names Sinabs' IAF semantics per IF node.
"""

from __future__ import annotations

import logging

import nir
import numpy as np
import pytest
import torch
from torch import nn

import nirbridge
from nirbridge.backends import get
from nirbridge.backends.reference import run_reference
from nirbridge.errors import LoweringError
from nirbridge.neurons import NEURONS
from nirbridge.verify import compare

sinabs = pytest.importorskip("sinabs")
sl = pytest.importorskip("sinabs.layers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

T, B = 12, 3
SINABS = get("sinabs")
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def conv_file(tmp_path_factory):
    """The Sinabs model's own NIR export, written and read back, and inputs [T, B, ...]."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), sl.IAFSqueeze(batch_size=B), sl.SumPool2d(2),
        nn.Conv2d(4, 6, 3), sl.IAFSqueeze(batch_size=B), nn.Flatten(), nn.Linear(24, 5),
        sl.IAFSqueeze(batch_size=B))
    with torch.no_grad():
        for k in (0, 3, 6):
            model[k].weight.mul_(2.0)
    sample = torch.zeros(B * T, 1, 8, 8)
    model(sample)  # Sinabs' exporter reads the shapes its layers last ran with
    path = tmp_path_factory.mktemp("sinabs") / "conv.nir"
    # nirbridge.write: nir.write cannot store the input_shape=None Sinabs gives a Conv2d
    nirbridge.write(path, sinabs.to_nir(model, sample))
    from sklearn.datasets import load_digits

    images = torch.as_tensor(load_digits().images[:B] / 16.0)
    noise = torch.randn(T, B, 1, 8, 8, generator=torch.Generator().manual_seed(3),
                        dtype=torch.float64)
    return nirbridge.read(path), (images[None, :, None] * 1.5 + 0.3 * noise).numpy()


def _ifs(graph: nir.NIRGraph) -> list[str]:
    return [n for n, node in graph.nodes.items() if isinstance(node, nir.IF)]


def test_the_sinabs_file_is_the_conv_graph(conv_file):
    graph, _ = conv_file
    kinds = [type(graph.nodes[n]).__name__ for n in nirbridge.passes.topological_order(graph)]
    assert kinds == ["Input", "Conv2d", "IF", "SumPool2d", "Conv2d", "IF", "Flatten",
                     "Affine", "IF", "Output"]
    assert SINABS.check(graph) == []


def test_reading_names_the_iaf_semantics_of_every_if_node(conv_file):
    graph, _ = conv_file
    notes = SINABS.reading(graph).notes
    for name in _ifs(graph):
        (note,) = [n for n in notes if n.startswith(f"{name}: IF read as Sinabs IAF")]
        assert "multi-spike" in note and "subtractive" in note and "−v_threshold" in note


def test_sinabs_equals_the_reference_of_its_reading_exactly(conv_file):
    graph, x = conv_file
    reading = SINABS.reading(graph)
    res = SINABS.run(graph, x, record=True)
    out, ref = run_reference(reading.graph, x, record=True)
    np.testing.assert_array_equal(res.outputs, out.numpy())
    assert res.outputs.max() >= 2, "no step with several spikes: the IAF reading untested"
    for name in graph.nodes:
        assert torch.equal(res.records[name].output, ref[name].output), name
        if ref[name].input is not None:
            assert torch.equal(res.records[name].input, ref[name].input), name
    for name in _ifs(graph):
        torch.testing.assert_close(res.records[name].states["v"], ref[name].states["v"],
                                   rtol=0, atol=1e-12, msg=name)
    assert res.info["dt"] == 1.0 and res.info["dtype"] == "float64"


def test_sinabs_differs_from_the_file_s_nir_meaning_per_layer(conv_file):
    graph, x = conv_file
    cmp = compare(graph, x, "reference", "sinabs", dt=1.0)
    layers = {la.node: la for la in cmp.layers}
    assert sorted(layers) == sorted(_ifs(graph))
    for name, la in layers.items():
        a = cmp.result_a.records[name].output.numpy()
        b = cmp.result_b.records[name].output.numpy()
        active = (a != 0) | (b != 0)
        log.info("layer %s: identical %.4f, active entries identical %.4f, spikes per "
                 "sample %g (reference) vs %g (sinabs)", name, la.identical,
                 float((a == b)[active].mean()), la.spikes_a, la.spikes_b)
        assert la.identical < 1.0 and la.spikes_a > 0, (name, la)
    assert cmp.output_identical < 1.0


def test_float32_option_runs_sinabs_natively(conv_file):
    graph, x = conv_file
    exact = SINABS.run(graph, x)
    native = SINABS.run(graph, x, dtype="float32")
    assert native.info["dtype"] == "float32"
    assert float((native.outputs == exact.outputs).mean()) >= 0.99


def _graph(node: nir.NIRNode, extra: dict | None = None, edges: list | None = None):
    nodes = {"input": nir.Input(np.array([4])),
             "fc": nir.Affine(np.eye(4), np.zeros(4)), "n": node,
             "output": nir.Output(np.array([4])), **(extra or {})}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "n"), ("n", "output")]
                        + (edges or []), metadata={"dt": 1.0}, type_check=False)


def test_check_names_what_sinabs_cannot_read():
    ones, zeros = np.ones(4), np.zeros(4)
    cases = {
        "SinabsIAF": (NEURONS["SinabsIAF"].example((4,), False).to_nir_node((4,), 1.0),
                      "'n' (SinabsIAFNode)"),
        "CubaLIF": (nir.CubaLIF(tau_syn=ones * 2, tau_mem=ones * 2, r=ones, v_leak=zeros,
                                v_threshold=ones), "'n' (CubaLIF)"),
        "Linear": (nir.Linear(np.eye(4)), "'n' (Linear)"),
        "LIF v_leak": (nir.LIF(tau=ones * 2, r=ones, v_leak=ones * 0.1, v_threshold=ones),
                       "v_leak"),
    }
    for kind, (node, words) in cases.items():
        reasons = SINABS.check(_graph(node))
        assert reasons and any(words.replace("Node", "") in r or words in r
                               for r in reasons), (kind, reasons)
        with pytest.raises(LoweringError, match="sinabs backend cannot run"):
            SINABS.run(_graph(node), np.zeros((2, 1, 4)))
    lif = nir.IF(r=ones, v_threshold=ones)
    rec = _graph(lif, {"rec": nir.Affine(np.eye(4), zeros)}, [("n", "rec"), ("rec", "n")])
    assert any("closes a cycle" in r for r in SINABS.check(rec))


def test_nirbridge_verify_names_the_iaf_difference_and_shows_per_layer_agreement(
        conv_file, tmp_path, capsys):
    """The CLI on the Sinabs-exported conv file: exit 3, each IF node's Sinabs reading named,
    per layer the same agreement as compare() measures, and an exact match with the
    reference of Sinabs' reading (the named difference is the whole difference)."""
    import json

    from nirbridge.cli import main

    graph, x = conv_file
    path, xs = tmp_path / "conv.nir", tmp_path / "x.npy"
    nirbridge.write(path, graph)
    np.save(xs, x)
    out_json, out_html = tmp_path / "v.json", tmp_path / "v.html"
    code = main(["verify", str(path), "--input", str(xs), "--backends", "sinabs,onnx",
                 "--dt", "1", "--json", str(out_json), "--report", str(out_html)])
    text = capsys.readouterr()
    assert code == 3, text.err
    assert "sinabs" in text.err.splitlines()[-1] and len(text.err.strip().splitlines()) == 1
    for name in _ifs(graph):
        assert f"{name}: IF read as Sinabs IAF: multi-spike" in text.out, name
    doc = json.loads(out_json.read_text())
    rows = {b["backend"]: b for b in doc["backends"]}
    assert rows["onnx"]["passed"] and not rows["sinabs"]["passed"]
    assert rows["sinabs"]["own_reading"]["passed"]
    assert rows["sinabs"]["own_reading"]["spike_agreement"] == 1.0
    want = {la.node: la.identical for la in compare(graph, x, "reference", "sinabs",
                                                    dt=1.0).layers}
    got = {la["node"]: la["identical"] for la in rows["sinabs"]["agreement"]["layers"]
           if la["kind"] == "spike" and la["node"] in want}
    assert got == want and all(v < 1.0 for v in got.values()), got
    html = out_html.read_text()
    assert "Agreement heat map" in html and "sinabs" in html


def test_nirbridge_run_with_sinabs_warns_of_its_reading(conv_file, tmp_path, capsys):
    """``run --backend sinabs`` says, on stderr, that Sinabs reads each IF differently;
    the reference says nothing of the kind."""
    from nirbridge.cli import main

    graph, x = conv_file
    path, xs = tmp_path / "conv.nir", tmp_path / "x.npy"
    nirbridge.write(path, graph)
    np.save(xs, x)
    for backend, warned in (("sinabs", True), ("reference", False)):
        out = tmp_path / f"{backend}.npz"
        assert main(["run", str(path), "--input", str(xs), "--backend", backend, "--dt", "1",
                     "-o", str(out)]) == 0
        err = capsys.readouterr().err
        hits = [ln for ln in err.splitlines() if "departs from the NIR spec" in ln]
        assert (len(hits) == len(_ifs(graph))) if warned else not hits, err
        assert out.exists()
