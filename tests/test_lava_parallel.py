"""Lava runs in shards: ``workers=N`` (side by side, each shard its own safe-runner
process) and ``cluster=`` (Dask distributed) give a one-process run's results exactly:
outputs, records, counts, and in fixed_pt the integers, saturations and quantization rows.
A failing or hanging shard names itself, and nothing of any shard is left behind.

Tiny graphs (T ≤ 12, B ≤ 4); the ``lava`` tests start Lava processes.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
from pathlib import Path

import nir
import numpy as np
import pytest

import nirbridge  # noqa: F401 - installs the Lava import fix before any `import lava`
from nirbridge.backends import get
from nirbridge.backends import lava as lava_backend
from nirbridge.backends.lava.cluster import check_address
from nirbridge.backends.lava.shards import run_shard, split_samples
from nirbridge.errors import InputError, SimulationError, SimulationTimeout
from nirbridge.nodes import DALIF
from nirbridge.quantize import QuantConfig

sys.path.insert(0, str(Path(__file__).parent))  # tests/lava_fault_procs, test_lava_float
from test_lava_float import (  # noqa: E402
    _branch_graph,
    _inputs,
    _shm,
    _wait_gone,
    _wait_no_new_shm,
)

T = 8


def _assert_nothing_left(before_shm: set[str], pids: list[int]) -> None:
    assert multiprocessing.active_children() == []
    for pid in pids:
        assert _wait_gone(pid) == [], f"processes of run {pid} still alive"
    assert _wait_no_new_shm(before_shm) == set()


def _assert_same_float(one, many) -> None:
    np.testing.assert_array_equal(many.outputs, one.outputs)
    assert set(many.info["counts"]) == set(one.info["counts"])
    for k, v in one.info["counts"].items():
        np.testing.assert_array_equal(many.info["counts"][k], v, err_msg=k)
    assert set(many.records) == set(one.records) and one.records
    for k, r in one.records.items():
        m = many.records[k]
        np.testing.assert_array_equal(m.output.numpy(), r.output.numpy(), err_msg=k)
        if r.input is not None:
            np.testing.assert_array_equal(m.input.numpy(), r.input.numpy(), err_msg=k)
        assert set(m.states) == set(r.states), k
        for f, v in r.states.items():
            np.testing.assert_array_equal(m.states[f].numpy(), v.numpy(), err_msg=(k, f))


# ------------------------------------------------------------ shards (no Lava started)
def test_samples_split_into_contiguous_shards_of_near_equal_size():
    shards = split_samples(7, chunk=100, workers=3)
    assert [(s.start, s.stop) for s in shards] == [(0, 3), (3, 5), (5, 7)]
    assert shards[1].label() == "shard 2 of 3 (samples 3-4)"
    # runs of at most `chunk` samples, and never more shards than samples
    assert [(s.start, s.stop) for s in split_samples(5, chunk=2)] == [(0, 2), (2, 4), (4, 5)]
    assert len(split_samples(2, chunk=100, workers=8)) == 2
    assert len(split_samples(4, chunk=4, workers=np.int64(2))) == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="workers"):
            split_samples(4, chunk=4, workers=bad)
    with pytest.raises(InputError, match="Ray"):
        check_address("ray://head:10001")
    with pytest.raises(InputError, match="workers"):
        get("lava-float").run(_branch_graph("lif>"), _inputs("lif>", t=T), workers=0)


def _in_daemon(queue) -> None:
    net = lava_backend.lower(_branch_graph("lif>"))
    try:
        run_shard(net, {"input": _inputs("lif>", t=T)}, set(), 30)
        queue.put("ran")
    except SimulationError as exc:
        queue.put(str(exc))


def test_a_shard_sent_to_a_daemon_worker_says_how_to_start_workers():
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_in_daemon, args=(queue,), daemon=True)
    proc.start()
    msg = queue.get(timeout=60)
    proc.join(timeout=10)
    assert "daemon" in msg and "DASK_DISTRIBUTED__WORKER__DAEMON=False" in msg


# ----------------------------------------------------------------- Lava: same results
@pytest.mark.lava
def test_two_workers_give_the_one_process_run_floating_pt():
    before = _shm()
    graph = _branch_graph("arlif")
    x = _inputs("arlif", t=T, b=4)
    backend = get("lava-float")
    one = backend.run(graph, x, record=True, timeout_s=120)
    two = backend.run(graph, x, record=True, timeout_s=120, workers=2)
    assert one.info["shards"] == [(0, 4)] and two.info["shards"] == [(0, 2), (2, 4)]
    assert two.info["runs"] == 2 and two.info["steps"] == one.info["steps"] + 1
    assert np.any(one.outputs != 0)
    _assert_same_float(one, two)
    _assert_nothing_left(before, one.info["child_pids"] + two.info["child_pids"])


def _fixed_graph() -> nir.NIRGraph:
    """Input → Affine → DA-LIF (driven out of its 24-bit range: saturations) → Affine →
    LIF (Lava's own) → Output."""
    rng = np.random.default_rng(5)
    o, n = np.ones(6), 5
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([3])}),
               "fc": nir.Affine(weight=rng.normal(0, 40.0, (6, 3)), bias=np.zeros(6)),
               "dalif": DALIF(alpha=o, beta=o, v_threshold=o, reset="hard"),
               "fc2": nir.Affine(weight=rng.normal(0.3, 0.8, (n, 6)), bias=np.full(n, 0.2)),
               "lif": nir.LIF(tau=np.full(n, 4e-3), r=np.ones(n), v_leak=np.zeros(n),
                              v_threshold=np.full(n, 0.5), v_reset=np.zeros(n)),
               "output": nir.Output(output_type={"output": np.array([n])})},
        edges=[("input", "fc"), ("fc", "dalif"), ("dalif", "fc2"), ("fc2", "lif"),
               ("lif", "output")], metadata={"dt": 1e-3})


@pytest.mark.lava
def test_two_workers_give_the_one_process_run_fixed_pt_integer_for_integer():
    before = _shm()
    graph = _fixed_graph()
    rng = np.random.default_rng(6)
    # samples 0-1 whole counts, samples 2-3 graded and larger: fitted shard by shard, the
    # two halves would get other input formats (so other integers); fitted once, the same
    x = np.concatenate([rng.integers(0, 3, (T, 2, 3)).astype(float),
                        rng.normal(0, 3.0, (T, 2, 3))], axis=1)
    fixed = get("fixed")
    half = fixed.run(graph, x[:, :2], record=True).info["fixed_records"]["input"]
    whole = fixed.run(graph, x, record=True).info["fixed_records"]["input"]
    assert half.frac_bits != whole.frac_bits
    backend = get("lava-fixed")
    one = backend.run(graph, x, record=True, timeout_s=120)
    two = backend.run(graph, x, record=True, timeout_s=120, workers=2)
    assert two.info["shards"] == [(0, 2), (2, 4)]
    _assert_same_fixed(one, two, fixed.run(graph, x, record=True))
    # no headroom: the DA-LIF saturates in every sample, counted over both shards
    kw = {"quant": QuantConfig(headroom=1.0)}
    one = backend.run(graph, x, record=True, timeout_s=120, **kw)
    two = backend.run(graph, x, record=True, timeout_s=120, workers=2, **kw)
    assert sum(one.info["saturations"]["dalif"].values()) > 0
    _assert_same_fixed(one, two, fixed.run(graph, x, record=True, **kw))
    _assert_nothing_left(before, one.info["child_pids"] + two.info["child_pids"])


def _assert_same_fixed(one, two, gold) -> None:
    _assert_same_float(one, two)
    assert two.info["saturations"] == one.info["saturations"]
    # nirbridge's integer neurons report them (Lava's own LIF does not): the golden counts
    assert "dalif" in two.info["saturations"]
    for k, v in two.info["saturations"].items():
        assert v == gold.info["saturations"][k], k
    assert len(two.info["quantization"]) == len(one.info["quantization"])
    for a, b in zip(one.info["quantization"], two.info["quantization"], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(np.asarray(b[k], dtype=object),
                                          np.asarray(a[k], dtype=object), err_msg=k)
    np.testing.assert_array_equal(two.outputs, gold.outputs)
    for k, rec in one.info["fixed_records"].items():
        m = two.info["fixed_records"][k]
        assert m.output.dtype == np.int64
        np.testing.assert_array_equal(m.output, rec.output, err_msg=k)
        np.testing.assert_array_equal(m.output, gold.info["fixed_records"][k].output,
                                      err_msg=k)
        for f, v in rec.states.items():
            np.testing.assert_array_equal(m.states[f], v, err_msg=(k, f))
        assert m.frac_bits == rec.frac_bits and m.saturations == rec.saturations, k


@pytest.mark.lava
def test_a_local_dask_cluster_gives_the_one_process_run():
    pytest.importorskip("distributed", reason="cluster= needs Dask distributed "
                        "(scripts/setup.sh installs it)")
    before = _shm()
    tmp = Path(tempfile.gettempdir())
    folders = set(tmp.glob("nirbridge-dask-*")) | set(tmp.glob("dask-scratch-space"))
    graph = _branch_graph("cubalif")
    x = _inputs("cubalif", t=T, b=3)
    backend = get("lava-float")
    one = backend.run(graph, x, record=True, timeout_s=120)
    dist = backend.run(graph, x, record=True, timeout_s=120, workers=2, cluster="local")
    assert dist.info["cluster"] == "local" and dist.info["shards"] == [(0, 2), (2, 3)]
    assert np.any(one.outputs != 0)
    _assert_same_float(one, dist)
    # the run processes were the workers' children: the workers are gone, and so are they
    _assert_nothing_left(before, one.info["child_pids"] + dist.info["child_pids"])
    # and the cluster's folders are gone with it
    assert set(tmp.glob("nirbridge-dask-*")) | set(tmp.glob("dask-scratch-space")) <= folders


# ------------------------------------------------------------------ Lava: failures
@pytest.mark.lava
@pytest.mark.parametrize("kind", ["raise", "hang"])
def test_a_failing_shard_is_named_and_every_shard_is_ended(kind):
    """3 samples in 2 shards: shard 1 (2 samples, 2·12 + 1 steps) reaches the fault at
    step 20, shard 2 (13 steps) does not; the error names shard 1, and no process of
    either shard is left."""
    before = _shm()
    net = lava_backend.lower(_branch_graph("lif>"))
    net.replace_process("neuron", "lava_fault_procs.faulty:FaultyNeuron", kind=kind, at=20)
    err_type = SimulationTimeout if kind == "hang" else SimulationError
    with pytest.raises(err_type) as info:
        lava_backend.run_lava(net, _inputs("lif>", b=3), timeout_s=6, workers=2)
    msg = str(info.value)
    assert msg.startswith("shard 1 of 2 (samples 0-1): ")
    assert ("time limit" in msg) if kind == "hang" else ("at step 20" in msg)
    assert len(info.value.child_pids) == 2
    _assert_nothing_left(before, info.value.child_pids)
    assert not (set(info.value.shm_segments) & _shm())
