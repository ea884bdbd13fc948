"""Samples in shards: :func:`split_samples`, :func:`run_shard` and :func:`run_local`.

A run of ``B`` samples is cut along the batch axis into contiguous shards; each shard is
one Lava run in its own safe-runner process (:class:`~.child.ChildRun`: its own time
limit, the failing model's traceback, nothing left behind). Every sample starts from the
network's initial state (the neurons reset at each sample's first step), so a sample's
result does not depend on which shard ran it, and the shards' probe arrays joined in
sample order (:func:`~.results.assemble`) are a one-process run's. In fixed_pt the
inputs are quantized once, for all samples, before they are cut: every shard runs the
same integers.

:func:`run_local` runs up to ``workers`` shards side by side from this process;
:func:`run_shard` runs one where it is called (a worker of a cluster, :mod:`.cluster`).
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nirbridge._files import new_temp_dir_path, remove_tree
from nirbridge.backends.lava.child import ChildRun, preload_lava, run_in_child
from nirbridge.backends.lava.network import LavaNetwork
from nirbridge.backends.lava.plan import plan_run, read_probes
from nirbridge.errors import InputError, SimulationError

#: What one shard's run gives back: its probes' arrays per node, and its times.
ShardResult = tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]


@dataclass(frozen=True)
class Shard:
    """Samples ``start .. stop - 1`` of a run, shard ``index`` (from 0) of ``count``."""

    index: int
    count: int
    start: int
    stop: int

    def label(self) -> str:
        """How errors name it: ``shard 2 of 4 (samples 8-15)``."""
        return (f"shard {self.index + 1} of {self.count} (samples {self.start}-"
                f"{self.stop - 1})")


def split_samples(b: int, chunk: int, workers: int = 1) -> list[Shard]:
    """``b`` samples in shards of at most ``chunk`` samples, at least ``workers`` of them
    where there are enough samples, of sizes that differ by one at most."""
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise InputError(f"workers={workers!r}; give a positive whole number of processes")
    workers = int(workers)
    if b < 1:
        raise InputError("the inputs hold no sample (B = 0)")
    if chunk < 1:
        raise InputError(f"samples_per_run={chunk}; give a positive number")
    count = min(b, max(workers, math.ceil(b / chunk)))
    base, extra = divmod(b, count)
    shards, start = [], 0
    for i in range(count):
        stop = start + base + (i < extra)
        shards.append(Shard(i, count, start, stop))
        start = stop
    return shards


def _sub(x: Mapping[str, np.ndarray], shard: Shard) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[:, shard.start: shard.stop]) for k, v in x.items()}


def shard_error(exc: SimulationError, shard: Shard) -> SimulationError:
    """``exc`` (of its own type: a timeout stays a timeout) with the shard named first
    (where there are several)."""
    err = type(exc)(f"{shard.label()}: {exc}" if shard.count > 1 else str(exc))
    err.__dict__.update(exc.__dict__)  # child_pid, shm_segments
    err.shard = shard  # type: ignore[attr-defined]
    return err


def run_shard(net: LavaNetwork, x: Mapping[str, np.ndarray], rec_nodes: set[str],
              timeout_s: float | None,
              on_progress: Callable[[int], None] | None = None) -> ShardResult:
    """Run the samples ``x`` (one shard, quantized in fixed_pt) of ``net`` here, in one
    safe-runner process; its probes' arrays and times. What a cluster worker calls: it
    must be allowed children (Lava forks its processes)."""
    if multiprocessing.current_process().daemon:
        raise SimulationError(
            f"process {multiprocessing.current_process().name} is a daemon, and daemons "
            "may not start processes, which Lava needs: start Dask workers with "
            "DASK_DISTRIBUTED__WORKER__DAEMON=False (or `dask worker --no-nanny`)")
    preload_lava()
    tmpdir = new_temp_dir_path("lava")  # made and always removed by the run's process
    try:
        plan = plan_run(net, x, rec_nodes, tmpdir)
        times, probes = run_in_child(plan, net.mode, timeout_s, on_progress or (lambda n: None),
                                     scratch=tmpdir, collect=lambda: read_probes(net, plan))
        assert probes is not None  # run_in_child raises unless the run succeeded
        return probes, times
    finally:
        remove_tree(tmpdir)


@dataclass
class _Going:
    run: ChildRun | None  # None while it is being planned
    plan: Any
    tmpdir: str


def _close(going: _Going) -> None:
    try:
        if going.run is not None and going.run.pid is not None:
            going.run.cancel("cancelled")
            going.run.finish()
    except SimulationError:
        pass
    finally:
        remove_tree(going.tmpdir)


def run_local(net: LavaNetwork, x: Mapping[str, np.ndarray], shards: list[Shard],
              rec_nodes: set[str], timeout_s: float | None, workers: int,
              on_progress: Callable[[int], None]) -> tuple[list[ShardResult], list[int]]:
    """Run ``shards`` of the samples ``x``, up to ``workers`` at once, each in its own
    safe-runner process started here; their results in shard order and the processes'
    ids. The first shard that fails stops the others and raises its error with the shard
    named (:func:`shard_error`; ``child_pids`` on it lists every run started)."""
    results: list[ShardResult | None] = [None] * len(shards)
    pids: list[int] = []
    pending = list(shards)
    going: dict[int, _Going] = {}
    try:
        while pending or going:
            while pending and len(going) < workers:
                shard = pending.pop(0)
                tmpdir = new_temp_dir_path("lava")  # made and removed by the run's process
                going[shard.index] = _Going(None, None, tmpdir)  # removed if planning fails
                plan = plan_run(net, _sub(x, shard), rec_nodes, tmpdir)
                run = ChildRun(plan, net.mode, timeout_s, on_progress, scratch=tmpdir)
                going[shard.index] = _Going(run, plan, tmpdir)
                run.start(others=[g.run for g in going.values()
                                  if g.run is not None and g.run is not run])
                pids.append(int(run.pid or 0))
            multiprocessing.connection.wait([g.run.sentinel for g in going.values()
                                             if g.run is not None], timeout=0.25)
            for index in [i for i, g in going.items() if g.run is not None and g.run.poll()]:
                g = going[index]  # in `going` until finished: an interrupt finishes it below
                assert g.run is not None
                try:
                    try:  # read before finish(): that releases the run, which removes them
                        probes = read_probes(net, g.plan) if g.run.succeeded else None
                    finally:
                        times = g.run.finish()
                    assert probes is not None  # finish() raises unless the run succeeded
                    results[index] = (probes, times)
                except SimulationError as exc:
                    err = shard_error(exc, shards[index])
                    err.child_pids = list(pids)  # type: ignore[attr-defined]
                    raise err from None
                finally:
                    going.pop(index, None)
                    remove_tree(g.tmpdir)
    finally:  # a failure or an interrupt: the shards still going are stopped
        for g in going.values():
            _close(g)
    return [r for r in results if r is not None], pids


__all__ = ["Shard", "ShardResult", "run_local", "run_shard", "shard_error", "split_samples"]
