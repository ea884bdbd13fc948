"""nirbridge's NIR → ONNX converter and the ``onnx`` backend (issue 11, item 4).

A graph holding every standard node the reference runs (Affine, Linear, Scale, Conv1d
with asymmetric "same" padding, Conv2d, SumPool2d, AvgPool2d, Flatten, Threshold, a
per-element Delay, a fan-in sum, a recurrent Affine feedback, a subgraph) runs in
onnxruntime as it does in the float64 reference (``tests/onnx_agreement.py`` says how
they are compared: graded values within 1e-5 of the tensor's largest magnitude, spikes
identical but at decisions within 1e-5 of their boundary). The step model run step by
step and the Scan model give the same values; the models pass ``onnx.checker`` with
``full_check`` and use the standard domain only; a file runs in a fresh Python that
imports onnxruntime and numpy only. Every registered neuron is covered by the registry
walk (``tests/test_registry.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nir
import numpy as np
import onnx
import pytest
import torch

import nirbridge
from nirbridge.backends import get
from nirbridge.cli import main
from nirbridge.errors import InputError, LoweringError
from nirbridge.export_onnx import convert, layout, to_onnx, write_onnx
from nirbridge.neurons import NEURONS, spike

sys.path.insert(0, str(Path(__file__).parent))
from onnx_agreement import assert_agrees  # noqa: E402

T, B = 12, 3


def every_node_graph() -> nir.NIRGraph:
    rng = np.random.default_rng(7)
    n = 5

    def lif(shape, tau=3.0, th=0.4):
        return nir.LIF(tau=np.full(shape, tau), r=np.ones(shape), v_leak=np.zeros(shape),
                       v_threshold=np.full(shape, th), v_reset=np.zeros(shape))

    sub = nir.NIRGraph(nodes={
        "input": nir.Input(np.array([32])),
        "fc": nir.Affine(rng.normal(0, 0.3, (n, 32)), rng.normal(0.1, 0.1, n)),
        "if": nir.IF(r=np.ones(n), v_threshold=np.full(n, 0.5), v_reset=np.zeros(n)),
        "output": nir.Output(np.array([n]))},
        edges=[("input", "fc"), ("fc", "if"), ("if", "output")], type_check=False)
    nodes = {
        "x": nir.Input(np.array([1, 6, 6])),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0, 0.6, (2, 1, 3, 3)),
                           stride=1, padding=1, dilation=1, groups=1,
                           bias=np.array([0.2, 0.1])),
        "lif1": lif((2, 6, 6), th=0.3),
        "sumpool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                 padding=np.array([0, 0])),
        "avgpool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]),
                                 padding=np.array([1, 1])),
        "flat": nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0),
        "fc": nir.Affine(rng.normal(0, 0.4, (n, 32)), rng.normal(0.2, 0.1, n)),
        "lif2": lif(n),
        "rec": nir.Affine(rng.normal(0, 0.4, (n, n)), rng.normal(0, 0.05, n)),
        "delay": nir.Delay(np.array([1.0, 2.0, 2.0, 3.0, 1.0])),
        "scale": nir.Scale(np.linspace(0.5, 1.5, n)),
        "lin": nir.Linear(rng.normal(0, 0.2, (n, 32))),
        "thr": nir.Threshold(np.full(n, 0.35)),
        "sub": sub,
        "out": nir.Output(np.array([n])),
        "out_sub": nir.Output(np.array([n])),
        "y": nir.Input(np.array([2, 8])),
        "conv1": nir.Conv1d(input_shape=8, weight=rng.normal(0, 0.5, (3, 2, 4)), stride=1,
                            padding="same", dilation=1, groups=1, bias=np.zeros(3)),
        "flat1": nir.Flatten(input_type={"input": np.array([3, 8])}, start_dim=0),
        "li": nir.LI(tau=np.full(24, 4.0), r=np.ones(24), v_leak=np.full(24, 0.1)),
        "out_li": nir.Output(np.array([24])),
    }
    edges = [("x", "conv"), ("conv", "lif1"), ("lif1", "sumpool"), ("sumpool", "avgpool"),
             ("avgpool", "flat"), ("flat", "fc"), ("fc", "lif2"), ("lif2", "rec"),
             ("rec", "lif2"), ("lif2", "delay"), ("delay", "scale"), ("scale", "thr"),
             ("flat", "lin"), ("lin", "thr"), ("thr", "out"), ("flat", "sub"),
             ("sub", "out_sub"), ("y", "conv1"), ("conv1", "flat1"), ("flat1", "li"),
             ("li", "out_li")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


def every_node_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"x": rng.normal(0.3, 1.0, (T, B, 1, 6, 6)), "y": rng.normal(0.0, 1.0, (T, B, 2, 8))}


@pytest.fixture(scope="module")
def runs():
    graph, x = every_node_graph(), every_node_inputs()
    return (graph, x, get("reference").run(graph, x, record=True),
            get("onnx").run(graph, x, record=True))


def test_every_standard_node_equals_the_reference(runs):
    graph, x, ref, got = runs
    rep = assert_agrees(graph, ref, got, 1.0)
    for node in ("conv", "lif1", "sumpool", "avgpool", "flat", "fc", "lif2", "rec", "delay",
                 "scale", "lin", "thr", "sub.fc", "sub.if", "conv1", "flat1", "li"):
        assert node in rep.max_rel, node
    for out in ("out", "out_sub", "out_li"):  # not a silent graph
        assert 0 < np.abs(ref.outputs[out]).sum(), out
    assert 0.05 < float(ref.records["lif2"].output.mean()) < 0.95
    for out, value in ref.outputs.items():
        assert got.outputs[out].dtype == np.float64 and got.outputs[out].shape == value.shape


def test_the_scan_model_equals_the_step_model(runs):
    graph, x, _, got = runs
    seq = get("onnx").run(graph, x, sequence=True, record=True)
    for out, value in got.outputs.items():
        np.testing.assert_array_equal(seq.outputs[out], value, err_msg=out)
    for name, rec in got.records.items():
        np.testing.assert_array_equal(seq.records[name].output.numpy(), rec.output.numpy(),
                                      err_msg=name)
        assert seq.records[name].states == {}  # the Scan model exposes no state trace
    assert seq.info["model"] == "sequence" and got.info["model"] == "step"


def _domains(g: onnx.GraphProto) -> set[str]:
    out = set()
    for node in g.node:
        out.add(node.domain)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                out |= _domains(attr.g)
    return out


@pytest.mark.parametrize("sequence", [False, True])
def test_models_pass_the_full_checker_with_standard_operators_only(sequence):
    model, plan = convert(every_node_graph(), sequence=sequence)
    onnx.checker.check_model(model, full_check=True)
    assert _domains(model.graph) == {""} and model.opset_import[0].version == 17
    assert [o.domain for o in model.opset_import] == [""]
    names = {i.name for i in model.graph.input}
    defaults = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert {"x", "y"} <= names
    expected = {"state.lif1.v", "state.lif2.v", "state.sub.if.v", "state.li.v",
                "state.rec.output", "state.delay.buffer"}
    assert {s.name for s in plan.states} == expected
    for s in plan.states:  # every state is an input with a default, batch axis 1 wide
        assert s.name in names and defaults[s.name].shape == tuple(s.full_shape(1))
        np.testing.assert_array_equal(defaults[s.name], plan.initial[s.name])
    assert defaults["state.delay.buffer"].shape == (3, 1, 5)  # the longest delay, 3 steps
    assert layout(model)["model"] == ("sequence" if sequence else "step")
    if not sequence:
        batch = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch.dim_param == "batch"


def test_initial_states_are_the_neurons_own():
    """Norse's LIF starts at v_leak (not 0): the default of its state input says so."""
    graph = nirbridge.to_nir(torch.nn.Sequential(
        torch.nn.Linear(3, 4), NEURONS["NorseLIF"].example((4,), True)).double(),
        torch.zeros(1, 3, dtype=torch.float64), dt=1.0)
    model, plan = convert(graph)
    (name, node), = [(n, v) for n, v in plan.graph.nodes.items() if type(v).__name__ ==
                     "NorseLIF"]
    want = NEURONS["NorseLIF"].initial_state(node, torch.zeros(1, 4))
    np.testing.assert_array_equal(plan.initial[f"state.{name}.v"], want.v.numpy())
    assert np.any(plan.initial[f"state.{name}.v"] != 0)
    x = np.random.default_rng(0).normal(0.5, 1.0, (T, B, 3))
    assert_agrees(graph, get("reference").run(graph, x, record=True),
                  get("onnx").run(graph, x, record=True), 1.0)


FRESH = textwrap.dedent("""
    import sys, numpy as np, onnxruntime as ort
    model, data, out = sys.argv[1:4]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = dict(np.load(data))
    # state inputs have defaults: onnxruntime lists them as overridable initializers
    states = [i.name for i in sess.get_overridable_initializers()]
    assert states and all(s.startswith("state.") for s in states)
    names = [o.name for o in sess.get_outputs()]
    steps = next(iter(feeds.values())).shape[0]
    state, outs = {}, {n: [] for n in names if not n.startswith("state.")}
    for t in range(steps):  # no state at t = 0: the model's defaults
        res = dict(zip(names, sess.run(None, {**{k: v[t] for k, v in feeds.items()},
                                              **state})))
        state = {s: res[s + ".next"] for s in states}
        for n in outs:
            outs[n].append(res[n])
    assert not any(m == "nirbridge" or m.startswith("nirbridge.") for m in sys.modules)
    assert "torch" not in sys.modules
    np.savez(out, **{n: np.stack(v) for n, v in outs.items()})
""")


def test_the_file_runs_in_a_fresh_process_without_nirbridge(tmp_path, runs):
    graph, x, ref, _ = runs
    write_onnx(graph, tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", **{k: v.astype(np.float32) for k, v in x.items()})
    subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "m.onnx"),
                    str(tmp_path / "x.npz"), str(tmp_path / "out.npz")], check=True,
                   cwd=tmp_path, timeout=120)
    with np.load(tmp_path / "out.npz") as z:
        assert sorted(z) == ["out", "out_li", "out_sub"]
        for name in z:
            want = ref.outputs[name]
            if name == "out_li":  # graded
                np.testing.assert_allclose(z[name], want, rtol=0,
                                           atol=1e-5 * np.abs(want).max())
            else:  # spikes: the same as the backend's, which equal the reference's
                np.testing.assert_array_equal(z[name], want)


def test_the_step_model_streams_with_explicit_states(runs):
    """Feeding every state explicitly from zeros of the batch's shape at t = 0 (the
    defaults broadcast) gives what omitting them gives."""
    import onnxruntime as ort

    graph, x, _, got = runs
    model, plan = convert(graph)
    sess = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    state = {s.name: np.ascontiguousarray(np.broadcast_to(
        plan.initial[s.name], s.full_shape(B)), np.float32) for s in plan.states}
    outs = []
    for t in range(T):
        res = dict(zip(names, sess.run(None, {"x": x["x"][t].astype(np.float32),
                                               "y": x["y"][t].astype(np.float32), **state}),
                       strict=True))
        state = {s.name: res[s.next_name] for s in plan.states}
        outs.append(res["out"])
    np.testing.assert_array_equal(np.stack(outs), got.outputs["out"])


def test_an_unknown_torch_function_in_a_step_is_refused_by_name():
    from nirbridge.export_onnx._builder import Builder
    from nirbridge.export_onnx._trace import trace_step
    from nirbridge.neurons.standard import LIFState

    def atan_step(x, state):
        v = state.v + torch.atan(x)
        return spike(v - 1.0, ">"), LIFState(v)

    with pytest.raises(LoweringError, match=r"neuron 'n' \(Atan\).*'atan'.*OPS table"):
        trace_step(Builder(), "neuron 'n' (Atan)", "n", atan_step, "x", ["v"], ("v",),
                   LIFState, {})

    def branchy(x, state):
        if (x > 0).any():
            return x, state
        return x, state

    with pytest.raises(LoweringError, match="any"):
        trace_step(Builder(), "neuron 'n' (Branchy)", "n", branchy, "x", ["v"], ("v",),
                   LIFState, {})


def test_spike_still_trains_and_dispatches_only_for_tracers():
    z = torch.tensor([0.5, 0.0, -0.5], requires_grad=True)
    s = spike(z, ">=")
    assert s.tolist() == [1.0, 1.0, 0.0] and s.grad_fn is not None
    s.sum().backward()
    assert z.grad is not None and bool((z.grad > 0).all())


class Mystery(nir.NIRNode):
    """A node type neither NIR nor nirbridge defines."""

    def __init__(self) -> None:
        self.input_type = self.output_type = {"input": np.array([32])}
        self.metadata = {}


def test_backend_checks_refuses_and_validates():
    backend = get("onnx")
    graph = every_node_graph()
    assert backend.check(graph) == [] and backend.reading(graph).faithful
    assert backend.tolerance.spikes == "rounding" and backend.tolerance.graded_rel == 1e-5
    bad = every_node_graph()
    bad.nodes["thing"] = Mystery()
    bad.edges.append(("flat", "thing"))
    reasons = backend.check(bad)
    assert reasons and "'thing'" in reasons[0] and "Mystery" in reasons[0], reasons
    with pytest.raises(InputError, match="no option 'bogus'"):
        backend.check(graph, bogus=1)
    x = every_node_inputs()
    with pytest.raises(InputError, match="node 'y' has shape"):
        backend.run(graph, {"x": x["x"], "y": x["y"][..., :4]})
    with pytest.raises(InputError, match="opset=11"):
        to_onnx(graph, opset=11)


def test_cli_export_onnx_writes_a_checked_model(tmp_path, capsys):
    nirbridge.write(tmp_path / "g.nir", every_node_graph())
    for extra in ([], ["--sequence"]):
        out = tmp_path / f"m{len(extra)}.onnx"
        assert main(["export-onnx", str(tmp_path / "g.nir"), "-o", str(out), *extra]) == 0
        model = onnx.load(str(out))
        onnx.checker.check_model(model, full_check=True)
        assert layout(model)["model"] == ("sequence" if extra else "step")
        assert json.loads(json.dumps(layout(model)))["dt"] == 1.0
    assert "6 state tensors" in capsys.readouterr().out


def test_cli_export_onnx_bad_input_one_line_no_file(tmp_path, capsys):
    (tmp_path / "bad.nir").write_bytes(b"not hdf5")
    out = tmp_path / "m.onnx"
    assert main(["export-onnx", str(tmp_path / "bad.nir"), "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("nirbridge export-onnx: error:") and "\n" not in err
    graph = every_node_graph()
    graph.metadata = {}
    nirbridge.write(tmp_path / "nodt.nir", graph)
    assert main(["export-onnx", str(tmp_path / "nodt.nir"), "-o", str(out)]) != 0
    assert "--dt" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []


def test_cli_run_with_the_onnx_backend(tmp_path):
    graph, x = every_node_graph(), every_node_inputs()
    gone = {"y", "conv1", "flat1", "li", "out_li"}  # one Input: `run` takes one array
    for name in gone:
        del graph.nodes[name]
    graph.edges = [e for e in graph.edges if not gone & set(e)]
    nirbridge.write(tmp_path / "g.nir", graph)
    np.save(tmp_path / "x.npy", x["x"])
    assert main(["run", str(tmp_path / "g.nir"), "--input", str(tmp_path / "x.npy"),
                 "--backend", "onnx", "-o", str(tmp_path / "o.npz")]) == 0
    with np.load(tmp_path / "o.npz") as z:
        np.testing.assert_array_equal(z["output_out"],
                                      nirbridge.run(graph, x["x"])["out"].numpy())
