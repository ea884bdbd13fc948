"""Lava floating_pt backend against the float64 reference executor.

The reference is the ground truth: for every neuron model, Lava's spikes must equal the
reference's spikes exactly (after aligning Lava's synaptic delays), graded outputs must
agree to rounding, and spike counts must agree. Networks are tiny (every Lava run starts
one OS process per Lava Process). Also: the runner's failure handling (a model that
raises, a run past its time limit) leaves no process and no shared memory behind.

Tests marked ``lava`` run Lava; the others check the lowering without starting anything.
(Lava's floating_pt neuron runs each neuron's own torch step, the reference's: there is no
second copy of the equations to compare.)
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import nirbridge  # installs the Lava import fix before any `import lava`
from nirbridge.backends import lava as lava_backend
from nirbridge.backends.lava.groups import shm_mapped_by
from nirbridge.backends.reference import run_reference
from nirbridge.errors import InputError, LoweringError, SimulationError, SimulationTimeout
from nirbridge.nodes import ALIF, ARLIF, CLIF, DALIF, KLIF, SubtractiveLIF

sys.path.insert(0, str(Path(__file__).parent))  # tests/lava_fault_procs (for the child too)

T, B, N_IN, N = 12, 2, 5, 8


# ----------------------------------------------------------------------------- builders
def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _neuron(kind: str, n: int, rng: np.random.Generator) -> nir.NIRNode:
    """One neuron node of each supported kind, with per-neuron parameters."""
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    ones, zeros = np.ones(n), np.zeros(n)
    if kind in ("lif>", "lif>="):
        return nir.LIF(tau=u(2e-3, 8e-3), r=u(0.8, 1.5), v_leak=u(-0.1, 0.1),
                       v_threshold=u(0.5, 1.0), v_reset=u(-0.2, 0.0),
                       metadata={"compare": kind[3:]})
    if kind == "if":
        return nir.IF(r=u(0.5, 1.0), v_threshold=u(1.0, 2.0), v_reset=zeros)
    if kind == "cubalif":
        return nir.CubaLIF(tau_syn=u(2e-3, 5e-3), tau_mem=u(3e-3, 8e-3), r=u(1.0, 2.0),
                           v_leak=zeros, v_threshold=u(0.3, 0.6), v_reset=zeros,
                           w_in=u(0.8, 1.2))
    if kind == "sublif":
        return SubtractiveLIF(tau=u(2e-3, 8e-3), r=u(0.8, 1.5), v_leak=zeros,
                              v_threshold=u(0.5, 1.0))
    if kind in ("arlif", "arlif_memoryless"):
        memoryless = kind == "arlif_memoryless"
        return ARLIF(decay=u(0.2, 0.6), v_threshold=ones, tanh_a=u(-0.5, 0.5), c=u(-2, 2),
                     memoryless_m=memoryless, compare=">" if memoryless else ">=")
    if kind in ("klif_hard", "klif_soft"):
        return KLIF(tau=u(1.5, 3.0), k=u(0.8, 1.5), v_threshold=ones, v_reset=u(-0.1, 0.1),
                    soft_reset=kind == "klif_soft", scale_reset=kind == "klif_soft")
    if kind == "dalif_soft":
        return DALIF(alpha=u(0.5, 1.5), beta=u(0.3, 0.9), v_threshold=ones, reset="soft")
    if kind == "clif":
        return CLIF(tau=np.full(n, 2.0), v_threshold=ones)
    if kind == "alif":
        return ALIF(alpha=u(0.6, 0.9), rho=u(0.8, 0.95), v_threshold=u(0.1, 0.3),
                    beta=u(0.5, 1.5))
    if kind == "li":
        return nir.LI(tau=u(2e-3, 8e-3), r=u(0.8, 1.2), v_leak=zeros)
    raise ValueError(kind)


SPIKING = ["lif>", "lif>=", "if", "cubalif", "sublif", "arlif", "arlif_memoryless",
           "klif_hard", "klif_soft", "dalif_soft", "clif", "alif"]

#: Input scale per kind so that every neuron fires a fair amount.
SCALE = {"if": 1.5, "cubalif": 1.5, "alif": 2.0, "klif_hard": 1.5, "klif_soft": 1.5}


def _branch_graph(kind: str, seed: int = 0) -> nir.NIRGraph:
    """Input → Affine → neuron → Output (LI: Input → Affine → LIF → Affine → LI)."""
    rng = _rng(seed)
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array([N_IN])}),
        "fc": nir.Affine(weight=rng.normal(0, 0.8, (N, N_IN)), bias=rng.normal(0.2, 0.2, N)),
    }
    if kind == "li":
        nodes["hidden"] = _neuron("lif>", N, rng)
        nodes["fc2"] = nir.Affine(weight=rng.normal(0, 0.5, (3, N)), bias=rng.normal(0, 0.1, 3))
        nodes["neuron"] = _neuron("li", 3, rng)
        nodes["output"] = nir.Output(output_type={"output": np.array([3])})
        edges = [("input", "fc"), ("fc", "hidden"), ("hidden", "fc2"), ("fc2", "neuron"),
                 ("neuron", "output")]
    else:
        nodes["neuron"] = _neuron(kind, N, rng)
        nodes["output"] = nir.Output(output_type={"output": np.array([N])})
        edges = [("input", "fc"), ("fc", "neuron"), ("neuron", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def _inputs(kind: str, seed: int = 1, t: int = T, b: int = B) -> np.ndarray:
    return _rng(seed).normal(0.0, 1.0, (t, b, N_IN)) * SCALE.get(kind, 1.0)


def _conv_graph(seed: int = 3) -> nir.NIRGraph:
    """Conv → LIF, a residual block (two paths of different depth meeting at a LIF), a
    SumPool2d, an AvgPool2d, Flatten, Affine → Affine without a neuron between, LI."""
    rng = _rng(seed)
    c = 3

    def conv(cin: int, cout: int, scale: float) -> nir.Conv2d:
        return nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0, scale, (cout, cin, 3, 3)),
                          stride=1, padding=1, dilation=1, groups=1,
                          bias=rng.normal(0.1, 0.1, cout))

    def lif(shape: tuple[int, ...], cmp: str = ">") -> nir.LIF:
        return nir.LIF(tau=rng.uniform(2.0, 4.0, shape), r=np.ones(shape),
                       v_leak=np.zeros(shape), v_threshold=rng.uniform(0.3, 0.6, shape),
                       v_reset=np.zeros(shape), metadata={"compare": cmp})

    k2 = np.array([2, 2])
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv1": conv(2, c, 0.6),
        "lif1": lif((c, 6, 6)),
        "conv2": conv(c, c, 0.5),
        "lif2": lif((c, 6, 6), ">="),
        "conv3": conv(c, c, 0.5),
        "lif3": lif((c, 6, 6)),                     # conv3 path (latency 3) + skip (latency 1)
        "sumpool": nir.SumPool2d(kernel_size=k2, stride=k2, padding=np.array([0, 0])),
        "if4": nir.IF(r=np.full((c, 3, 3), 0.7), v_threshold=np.full((c, 3, 3), 1.0),
                      v_reset=np.zeros((c, 3, 3))),
        "avgpool": nir.AvgPool2d(kernel_size=k2, stride=k2, padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([c, 3, 3])}, start_dim=0),
        "fc_a": nir.Affine(weight=rng.normal(0, 0.6, (6, c * 9)), bias=rng.normal(0, 0.1, 6)),
        "fc_b": nir.Affine(weight=rng.normal(0, 0.6, (4, 6)), bias=rng.normal(0, 0.1, 4)),
        "li": nir.LI(tau=np.full(4, 3.0), r=np.ones(4), v_leak=np.zeros(4)),
        "out_spikes": nir.Output(output_type={"output": np.array([c, 3, 3])}),
        "out_li": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "conv1"), ("conv1", "lif1"), ("lif1", "conv2"), ("conv2", "lif2"),
             ("lif2", "conv3"), ("conv3", "lif3"), ("lif1", "lif3"),
             ("lif3", "sumpool"), ("sumpool", "if4"), ("if4", "out_spikes"),
             ("lif3", "avgpool"), ("avgpool", "flat"), ("flat", "fc_a"), ("fc_a", "fc_b"),
             ("fc_b", "li"), ("li", "out_li")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0})


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ----------------------------------------------------------- lowering (no Lava started)
def test_lowering_balances_the_residual_paths_and_maps_every_node():
    net = lava_backend.lower(_conv_graph())
    lat = {name: net.streams[name].latency for name in net.streams}
    assert lat["input"] == 0 and lat["lif1"] == 1 and lat["lif2"] == 2
    assert lat["lif3"] == 3            # conv3 path; the skip from lif1 is delayed by 2
    assert lat["if4"] == 4 and lat["li"] == 6 and lat["out_li"] == 6
    delays = [s for s in net.procs.values() if s.process.endswith(":Delay")]
    assert [d.kwargs["delay"] for d in delays] == [2]
    assert net.max_latency == 6
    assert "lif3" in net.describe() and "Delay" in net.describe()


def test_linear_maps_equal_the_reference_layers():
    graph = _conv_graph()
    rng = _rng(5)
    cases = [(graph.nodes["conv1"], (2, 6, 6), False),
             (graph.nodes["sumpool"], (3, 6, 6), True), (graph.nodes["avgpool"], (3, 6, 6), True),
             (nir.Conv1d(input_shape=8, weight=rng.normal(size=(3, 2, 3)), stride=2, padding=1,
                         dilation=1, groups=1, bias=rng.normal(size=3)), (2, 8), False),
             (nir.Conv2d(input_shape=(5, 5), weight=rng.normal(size=(4, 1, 3, 3)), stride=1,
                         padding=0, dilation=2, groups=2, bias=np.zeros(4)), (2, 5, 5), False),
             (nir.Affine(weight=rng.normal(size=(4, 5)), bias=rng.normal(size=4)), (3, 5),
              False)]
    for node, shape, spikes in cases:
        name = type(node).__name__
        xin = rng.integers(0, 2, shape).astype(float) if spikes else rng.normal(size=shape)
        ref = run_reference(
            nir.NIRGraph(nodes={"i": nir.Input(input_type={"input": np.array(shape)}),
                                "n": node,
                                "o": nir.Output(output_type={"output": np.array([1])})},
                         edges=[("i", "n"), ("n", "o")], type_check=False),
            xin[None, None], dt=1.0)
        lin = lava_backend.linear_map(node, shape)
        y = lin.matrix @ xin.ravel()
        for op, val in lin.post_ops:
            y = y + val if op == "add" else y * val if op == "mul" else y / val
        if lin.bias is not None:
            y = y + lin.bias
        want = _np(ref)[0, 0].ravel()
        if spikes:
            np.testing.assert_array_equal(y, want)  # spike inputs: exact
        else:
            np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-13, err_msg=name)


def test_unsupported_node_is_a_lowering_error():
    g = _branch_graph("lif>")
    # Delay lowers (tests/test_recurrence_lava.py), up to Lava's 62 steps: 1 s at dt = 1 ms
    # is 1000 (Threshold lowers too: test_maxpool.py)
    g.nodes["neuron"] = nir.Delay(delay=np.ones(N))
    with pytest.raises(LoweringError, match=r"^node 'neuron' \(Delay\): 1000 time steps at "
                                            r"dt = 0.001; Lava delays hold at most 62 steps$"):
        lava_backend.lower(g)


# ------------------------------------------------------------------------ Lava: exactness
def _firing_rate(spikes: np.ndarray) -> float:
    return float(np.mean(spikes))


@pytest.mark.lava
@pytest.mark.parametrize("kind", SPIKING)
def test_lava_spikes_equal_reference_spikes(kind):
    graph = _branch_graph(kind)
    x = _inputs(kind)
    ref_out, ref_rec = run_reference(graph, x, record=True)
    res = lava_backend.run_lava(graph, x, record=True, timeout_s=120)
    ref_spikes = _np(ref_out)
    rate = _firing_rate(ref_spikes)
    assert 0.05 < rate < 0.95, f"{kind}: reference firing rate {rate:.2f}; retune the test"
    assert res.outputs.shape == ref_spikes.shape
    np.testing.assert_array_equal(res.outputs, ref_spikes)
    np.testing.assert_array_equal(res.counts["neuron"], ref_spikes.sum(axis=0))
    # per-node records: the neuron's input current agrees to rounding, its states too
    rec = res.records["neuron"]
    np.testing.assert_allclose(_np(rec.input), _np(ref_rec["neuron"].input), rtol=1e-12,
                               atol=1e-12)
    for s, val in ref_rec["neuron"].states.items():
        np.testing.assert_allclose(_np(rec.states[s]), _np(val), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(_np(res.records["fc"].output), _np(ref_rec["fc"].output),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.lava
def test_lava_li_readout_equals_reference():
    graph = _branch_graph("li")
    x = _inputs("li")
    ref_out, ref_rec = run_reference(graph, x, record=True)
    out, records = nirbridge.run(graph, x, backend="lava", record=True, timeout_s=120)
    hidden = _np(ref_rec["hidden"].output)
    assert 0.05 < hidden.mean() < 0.95
    np.testing.assert_array_equal(_np(records["hidden"].output), hidden)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(_np(out), _np(ref_out), rtol=1e-12, atol=1e-12)


@pytest.mark.lava
def test_lava_conv_residual_pool_network_equals_reference_after_alignment():
    graph = _conv_graph()
    x = _rng(4).normal(0.3, 1.0, (10, 2, 2, 6, 6))
    ref_out, ref_rec = run_reference(graph, x, record=True)
    net = lava_backend.lower(graph, sparse=True)  # conv/pool as Sparse, Affine as Dense
    kinds = {s.process.rsplit(":", 1)[1] for s in net.procs.values()}
    assert {"Sparse", "Dense", "Delay", "PassThrough"} <= kinds
    res = lava_backend.run_lava(net, x, record=True, timeout_s=120)
    for name in ("lif1", "lif2", "lif3", "if4"):
        want = _np(ref_rec[name].output)
        assert 0.02 < want.mean() < 0.95, f"{name} fires at {want.mean():.2f}; retune"
        np.testing.assert_array_equal(_np(res.records[name].output), want, err_msg=name)
        np.testing.assert_array_equal(res.counts[name], want.sum(axis=0), err_msg=name)
    np.testing.assert_array_equal(res.outputs["out_spikes"], _np(ref_out["out_spikes"]))
    np.testing.assert_allclose(res.outputs["out_li"], _np(ref_out["out_li"]), rtol=1e-12,
                               atol=1e-12)
    for name in ("conv1", "conv3", "sumpool", "avgpool", "flat", "fc_a", "fc_b"):
        np.testing.assert_allclose(_np(res.records[name].output), _np(ref_rec[name].output),
                                   rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.lava
def test_lava_runs_samples_in_several_runs_and_leaves_nothing_behind():
    before = _shm()
    graph = _branch_graph("arlif")
    x = _inputs("arlif", b=3) > 0.3  # bool spikes as input
    res = lava_backend.run_lava(graph, x, samples_per_run=2, timeout_s=120)
    np.testing.assert_array_equal(res.outputs, _np(run_reference(graph, x.astype(float))))
    np.testing.assert_array_equal(res.counts["input"], x.sum(axis=0))
    assert res.runs == 2 and len(res.child_pids) == 2
    assert res.steps == 2 * T + 1 + 1 * T + 1  # B·T + latency per run
    assert multiprocessing.active_children() == []
    for pid in res.child_pids:
        assert _wait_gone(pid) == []
    assert _wait_no_new_shm(before) == set()


def test_bad_inputs_are_rejected_before_anything_starts():
    graph = _branch_graph("lif>")
    with pytest.raises(InputError, match="per-step shape"):
        lava_backend.run_lava(graph, np.zeros((T, B, N_IN + 1)))
    with pytest.raises(InputError, match="NaN"):
        lava_backend.run_lava(graph, np.full((T, B, N_IN), np.nan))
    with pytest.raises(InputError, match=r"\[T, B, ...\]"):
        lava_backend.run_lava(graph, np.zeros((T, N_IN)))
    with pytest.raises(LoweringError, match="mode"):
        lava_backend.lower(graph, mode="analog")


# ----------------------------------------------------------------------- Lava: failures
def _shm() -> set[str]:
    return {e for e in os.listdir("/dev/shm") if e.startswith("psm_")}


def _wait_gone(pgid: int, seconds: float = 5.0) -> list[int]:
    """Live processes of the run's process group, after waiting up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while (alive := lava_backend.process_group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def _orphaned_shm(before: set[str]) -> set[str]:
    """New /dev/shm segments that no live process maps or holds open (a concurrent Lava
    run elsewhere on the machine holds its own)."""
    new = _shm() - before
    if new:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        new -= shm_mapped_by(pids)
    return new


def _wait_no_new_shm(before: set[str], seconds: float = 5.0) -> set[str]:
    deadline = time.monotonic() + seconds
    while (new := _orphaned_shm(before)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return new


def _assert_nothing_left(before_shm: set[str], exc: SimulationError) -> None:
    assert multiprocessing.active_children() == []
    assert exc.child_pid is not None
    alive = _wait_gone(exc.child_pid)
    assert not alive, f"processes of the run still alive: {alive}"
    assert exc.shm_segments, "the runner saw no shared memory of the failed run"
    assert not (set(exc.shm_segments) & _shm()), "the run's shared memory is still there"
    leaked = _wait_no_new_shm(before_shm)
    assert not leaked, f"new /dev/shm segments left behind: {sorted(leaked)}"


def _faulty_net(kind: str):
    net = lava_backend.lower(_branch_graph("lif>"))
    net.replace_process("neuron", "lava_fault_procs.faulty:FaultyNeuron", kind=kind, at=4)
    return net


@pytest.mark.lava
def test_a_raising_process_model_surfaces_its_own_traceback():
    before = _shm()
    with pytest.raises(SimulationError) as info:
        lava_backend.run_lava(_faulty_net("raise"), _inputs("lif>"), timeout_s=60)
    assert not isinstance(info.value, SimulationTimeout)
    msg = str(info.value)
    assert "deliberate fault in FaultyNeuron model at step 4" in msg
    assert "faulty.py" in msg and "run_spk" in msg  # the model's own traceback
    _assert_nothing_left(before, info.value)


@pytest.mark.lava
def test_a_run_past_its_time_limit_is_stopped_within_the_limit():
    before = _shm()
    limit = 4.0
    t0 = time.monotonic()
    with pytest.raises(SimulationTimeout) as info:
        lava_backend.run_lava(_faulty_net("hang"), _inputs("lif>"), timeout_s=limit)
    elapsed = time.monotonic() - t0
    assert elapsed < limit + 4.0, f"took {elapsed:.1f} s for a {limit} s limit"
    assert "time limit" in str(info.value)
    _assert_nothing_left(before, info.value)
