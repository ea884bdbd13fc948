"""The file route end to end through the command line (issue 9): a file written by each
framework's OWN exporter (snnTorch, Norse, SpikingJelly, Sinabs; built in
:mod:`framework_files`) and

- ``nirbridge run FILE --from FW`` equals the framework's own reading of the file
  (``snntorch.import_from_nir``, ``norse.torch.from_nir``, SpikingJelly's
  ``import_from_nir``, ``sinabs.from_nir``) on the same input, and the npz records the dt;
- ``nirbridge import FILE --from FW`` writes a file that ``nirbridge run`` reads the same
  way with neither ``--from`` nor ``--dt``;
- ``nirbridge deploy FILE`` without either is refused in one line naming the frameworks'
  conventions, before anything runs or is written; with ``--from FW`` it deploys on Lava
  floating_pt with every spike identical and reports the dt (marked ``lava``).

No tolerance anywhere: every reading runs in float64 with the parameters the framework's
reader builds (float32 values: snnTorch's, Norse's and Sinabs' readers build them in
float32, SpikingJelly's in the dtype it is asked for, float64 here), and nirbridge's
reading holds exactly those values; the outputs are spikes (snnTorch, Norse, SpikingJelly)
and a leaky read-out's values (Sinabs' ExpLeak), all identical.

Also here: :func:`nirbridge.to_nir` on an snnTorch model right after a forward with
gradients (its hidden states are then part of an autograd graph, which ``deepcopy``
refuses).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from framework_files import FRAMEWORKS, FrameworkFile, framework_file
from tiny_graph import needs_lava
from torch import nn

import nirbridge
from nirbridge.cli import main
from nirbridge.export.frontends import frontend
from nirbridge.passes import IMPORT_KEY

# the frameworks' own exporters and readers call nirtorch's old entry points
pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.*deprecated:DeprecationWarning")


@pytest.fixture(scope="module", params=FRAMEWORKS)
def fw_file(request, tmp_path_factory) -> FrameworkFile:
    """One framework's own file (written once per framework), its inputs and reading."""
    return framework_file(request.param, tmp_path_factory.mktemp(request.param))


def _dt_line(framework: str) -> str:
    fe = frontend(framework)
    return f"dt = {fe.DT:g} ({fe.FRAMEWORK}'s convention, --from {framework})"


def _run(path, x_path, out, *options: str) -> tuple[np.ndarray, float]:
    assert main(["run", str(path), "--input", str(x_path), *options, "-o", str(out)]) == 0
    with np.load(out) as z:
        return z["output"], float(z["dt"])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------- run --from
def test_run_from_equals_the_frameworks_own_reading(fw_file, tmp_path, capsys):
    fw = fw_file.framework
    np.save(tmp_path / "x.npy", fw_file.x)
    got, dt = _run(fw_file.path, tmp_path / "x.npy", tmp_path / "o.npz", "--from", fw)
    text = capsys.readouterr().out
    assert f"--from {fw}: " in text, text  # the notes saying what the reading changed
    assert _dt_line(fw) in text, text
    assert dt == frontend(fw).DT
    want = fw_file.reading(fw_file.x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want, err_msg=f"run --from {fw} vs {fw}'s reading")
    assert got.std() > 0, "the output never changes: the comparison would be empty"


# --------------------------------------------------------------------------- import
def test_import_then_run_needs_neither_from_nor_dt(fw_file, tmp_path, capsys):
    fw = fw_file.framework
    np.save(tmp_path / "x.npy", fw_file.x)
    imported = tmp_path / "imported.nir"
    assert main(["import", str(fw_file.path), "--from", fw, "-o", str(imported)]) == 0
    assert "later commands need neither --dt nor --from" in capsys.readouterr().out
    meta = nirbridge.read(imported).metadata
    assert meta["dt"] == frontend(fw).DT and meta[IMPORT_KEY]["from"] == fw

    got, dt = _run(imported, tmp_path / "x.npy", tmp_path / "o.npz")
    text = capsys.readouterr().out
    assert _dt_line(fw) in text and "--from" not in text.replace(_dt_line(fw), ""), text
    with_from, dt_from = _run(fw_file.path, tmp_path / "x.npy", tmp_path / "f.npz",
                              "--from", fw)
    assert dt == dt_from
    np.testing.assert_array_equal(got, with_from)
    np.testing.assert_array_equal(got, fw_file.reading(fw_file.x))


# --------------------------------------------------------------------------- deploy
def test_deploy_without_dt_or_from_is_refused_in_one_line(fw_file, tmp_path, capsys):
    np.save(tmp_path / "x.npy", fw_file.x[:16, :1])
    outputs = [tmp_path / "d.npz", tmp_path / "d.json"]
    assert main(["deploy", str(fw_file.path), "--input", str(tmp_path / "x.npy"),
                 "-o", str(outputs[0]), "--json", str(outputs[1])]) == 2
    err = _one_line(capsys)
    assert "no dt" in err and "--dt" in err and "--from FRAMEWORK" in err, err
    for name in FRAMEWORKS:  # every framework's convention, this file's among them
        fe = frontend(name)
        assert f"{fe.FRAMEWORK} writes dt = {fe.DT:g} (--from {name})" in err, err
    assert not any(p.exists() for p in outputs)


@pytest.mark.lava
@needs_lava
def test_deploy_from_is_identical_on_lava_and_records_the_dt(fw_file, tmp_path, capsys):
    fw = fw_file.framework
    dt = frontend(fw).DT
    x = fw_file.x[:16, :1]  # T = 16, one sample: one short Lava run per framework
    np.save(tmp_path / "x.npy", x)
    npz, js = tmp_path / "d.npz", tmp_path / "d.json"
    assert main(["deploy", str(fw_file.path), "--from", fw, "--input",
                 str(tmp_path / "x.npy"), "-o", str(npz), "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert _dt_line(fw) in text and f"T = 16, dt = {dt:g}" in text, text
    assert "output: 100.000% identical values" in text, text
    report = json.loads(js.read_text())
    assert report["dt"] == dt and report["dt_source"] == f"{frontend(fw).FRAMEWORK}'s " \
        f"convention, --from {fw}"
    assert report["sound"] and report["findings"] == []
    assert report["layers"], "no spiking layer was compared"
    for layer in report["layers"]:
        assert layer["identical"] == 1.0 and layer["reference_spikes"] > 0, layer
        assert layer["lava_spikes"] == layer["reference_spikes"], layer
    assert report["spike_agreement"] == 1.0 and report["output_identical"] == 1.0
    with np.load(npz) as z:
        assert float(z["dt"]) == dt
        # the reference Lava was held to is the framework's own reading
        np.testing.assert_array_equal(z["reference"], fw_file.reading(x))
        np.testing.assert_array_equal(z["output"], z["reference"])


# ---------------------------------------------- to_nir right after a BPTT forward
def test_to_nir_exports_an_snntorch_model_holding_autograd_states(tmp_path):
    """After a forward with gradients, snnTorch's init_hidden states (``mem``, ``syn``,
    buffers) are part of an autograd graph; to_nir copies them as values, leaves the
    model (graph included) as it was, and exports what it exports after a reset."""
    snn = pytest.importorskip("snntorch")
    import test_frontend_snntorch as t
    from snntorch.utils import reset

    torch.manual_seed(21)
    model = nn.Sequential(
        nn.Linear(t.N_IN, 10),
        snn.Leaky(beta=torch.full((10,), 0.8), threshold=0.75, learn_beta=True,
                  learn_threshold=True, init_hidden=True),
        nn.Linear(10, 3),
        snn.Synaptic(alpha=torch.full((3,), 0.6), beta=torch.full((3,), 0.7), threshold=1.0,
                     learn_alpha=True, learn_beta=True, init_hidden=True, output=True))
    neurons = t._neurons(model)
    data, target = torch.rand(16, 8, t.N_IN) * 1.5, torch.rand(8, 3) * 8
    opt = torch.optim.Adam(model.parameters(), lr=0.02)

    def loss_of_a_forward() -> torch.Tensor:
        counts = sum(model(xt)[0] for xt in data)
        return ((counts - target) ** 2).mean()

    for _ in range(4):  # BPTT, as a user trains snnTorch
        reset(model)
        loss = loss_of_a_forward()
        opt.zero_grad()
        loss.backward()
        opt.step()
    reset(model)
    loss = loss_of_a_forward()  # e.g. a validation loss: its graph is still alive
    held = [(m, m.mem, getattr(m, "syn", None)) for m in neurons]
    assert all(mem.grad_fn is not None for _, mem, _ in held)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    graph = nirbridge.to_nir(model, torch.zeros(1, t.N_IN), dt=1e-3)
    # nodes named after snnTorch's classes, init_hidden stand-ins included
    assert list(graph.nodes) == ["input", "linear_0", "leaky_1", "linear_2", "synaptic_3",
                                 "output"]

    for m, mem, syn in held:  # the user's model: the same tensors, in the same graph
        assert m.mem is mem and mem.grad_fn is not None
        assert getattr(m, "syn", None) is syn
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert all(p.requires_grad and p.is_leaf for p in model.parameters())
    opt.zero_grad()
    loss.backward()  # the user's autograd graph still works
    assert model[1].beta.grad is not None

    reset(model)
    fresh = nirbridge.to_nir(model, torch.zeros(1, t.N_IN), dt=1e-3)
    assert list(graph.nodes) == list(fresh.nodes) and graph.edges == fresh.edges
    for name, node in graph.nodes.items():
        other = fresh.nodes[name]
        assert type(node) is type(other), name
        for field, value in vars(node).items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, vars(other)[field], err_msg=name)
    # and it is the trained snnTorch model, spike for spike
    x = t._inputs(4)
    path = tmp_path / "trained.nir"
    nirbridge.write(path, graph)
    want, states = t._run_snntorch(t._float64(model), x)
    t._assert_equal_runs(nirbridge.read(path), x, want, states, check_rates=False)
    assert 0 < float(want.mean()) < 1


class _Slotted:
    __slots__ = ("state",)


class _OutOfReach(nn.Module):
    """A state in the autograd graph where the copy cannot see it (a slotted object)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.box = _Slotted()
        self.box.state = self.fc(torch.ones(1, 3))

    def forward(self, x):
        return self.fc(x)


def test_a_graph_state_out_of_reach_names_the_reset():
    from nirbridge.errors import ExportError

    with pytest.raises(ExportError, match=r"reset the model's states first \(snnTorch: "
                                          r"snntorch\.utils\.reset\(net\)"):
        nirbridge.to_nir(_OutOfReach(), torch.zeros(1, 3))
