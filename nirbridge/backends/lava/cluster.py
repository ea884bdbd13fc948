"""Shards on a Dask distributed cluster: :func:`run_on_cluster`.

Each shard (:mod:`.shards`) is one Dask task, :func:`~.shards.run_shard`, run on a
worker in its own safe-runner process as it would run here; the results come back in
shard order and are assembled as a one-process run's. The network is sent to every
worker once (``scatter``); each task carries only its shard's inputs.

Lava forks its processes, and the processes Dask's nannies start are daemons by default,
which may not have children: a local cluster is started with
``distributed.worker.daemon = False``; workers of an existing cluster must be started so
(``DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker ADDRESS``, or ``--no-nanny``), and
a shard sent to a daemon says so. Every worker needs nirbridge and lava-nc installed.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nirbridge._files import temp_prefix
from nirbridge.backends.lava.network import LavaNetwork
from nirbridge.backends.lava.shards import Shard, ShardResult, run_shard, shard_error
from nirbridge.errors import InputError, LoweringError, SimulationError

log = logging.getLogger(__name__)

#: How long connecting to an existing scheduler may take (seconds).
CONNECT_TIMEOUT_S = 30


def _dask() -> Any:
    try:
        import dask
        import distributed
    except ImportError as exc:
        raise LoweringError("cluster= runs shards on Dask distributed, which is not "
                            "installed: pip install 'nirbridge[cluster]' (dask and "
                            f"distributed 2026.8.0) ({exc})") from None
    return dask, distributed


def check_address(address: str) -> None:
    """Refuse an address that is neither ``"local"`` nor a Dask scheduler's."""
    if not isinstance(address, str) or not address:
        raise InputError(f"cluster={address!r}; give 'local' or a Dask scheduler address "
                         "such as 'tcp://host:8786'")
    if address.startswith("ray://"):
        raise InputError(f"cluster={address!r}: nirbridge runs shards on Dask distributed, "
                         "not Ray; give a Dask scheduler address ('tcp://host:8786') or "
                         "'local'")


def run_on_cluster(address: str, net: LavaNetwork, x: Mapping[str, np.ndarray],
                   shards: list[Shard], rec_nodes: set[str], timeout_s: float | None,
                   workers: int, on_done: Callable[[Shard], None]
                   ) -> tuple[list[ShardResult], list[int]]:
    """Run ``shards`` of the samples ``x`` on the Dask cluster at ``address``
    (``"local"``: a cluster of ``workers`` worker processes on this machine, started for
    this call and closed after it); the results in shard order and the run processes'
    ids (on the workers' machines). ``on_done`` is called as each shard ends. The first
    shard that fails raises its error with the shard named; the other shards are
    cancelled (one already running on an existing cluster runs to its end or its time
    limit: Dask does not stop a running task)."""
    check_address(address)
    dask, distributed = _dask()
    scratch = None
    config: dict[str, Any] = {"distributed.worker.daemon": False}
    if address == "local":
        # the workers' folders and Dask's lock files, removed with the cluster
        scratch = tempfile.TemporaryDirectory(prefix=temp_prefix("dask"))
        config["temporary-directory"] = scratch.name
    with dask.config.set(config):
        if address == "local":
            try:
                cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=logging.ERROR,
                    local_directory=scratch.name)
            except Exception as exc:  # noqa: BLE001 - Dask says only "Nanny failed to start"
                scratch.cleanup()
                raise SimulationError(
                    f"the local Dask cluster did not start ({type(exc).__name__}: {exc}); "
                    "Dask starts its workers with 'spawn', which runs the calling script "
                    "again: a script that uses cluster='local' must start its work under "
                    "`if __name__ == \"__main__\":`") from exc
            client = distributed.Client(cluster)
        else:
            cluster = None
            try:
                client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
            except OSError as exc:
                raise SimulationError(f"cannot reach the Dask scheduler at {address!r} "
                                      f"({exc}); is it running?") from None
    try:
        return _run(client, distributed, net, x, shards, rec_nodes, timeout_s, on_done)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        if scratch is not None:
            scratch.cleanup()


def _run(client: Any, distributed: Any, net: LavaNetwork, x: Mapping[str, np.ndarray],
         shards: list[Shard], rec_nodes: set[str], timeout_s: float | None,
         on_done: Callable[[Shard], None]) -> tuple[list[ShardResult], list[int]]:
    tag = uuid.uuid4().hex[:8]
    net_f = client.scatter(net, broadcast=True)
    futures = {}
    for shard in shards:
        sub = {k: np.ascontiguousarray(v[:, shard.start: shard.stop]) for k, v in x.items()}
        fut = client.submit(run_shard, net_f, sub, rec_nodes, timeout_s, pure=False,
                            key=f"nirbridge-lava-{tag}-shard{shard.index}", retries=0)
        futures[fut] = shard
    results: list[ShardResult | None] = [None] * len(shards)
    try:
        for fut in distributed.as_completed(list(futures)):
            shard = futures[fut]
            try:
                results[shard.index] = fut.result()
            except SimulationError as exc:
                raise shard_error(exc, shard) from None
            except Exception as exc:  # noqa: BLE001 - a worker lost, a pickling failure
                raise SimulationError(f"{shard.label()} failed on the cluster: "
                                      f"{type(exc).__name__}: {exc}") from exc
            on_done(shard)
    finally:
        client.cancel(list(futures))
    done = [r for r in results if r is not None]
    return done, [int(times["pid"]) for _, times in done]


__all__ = ["CONNECT_TIMEOUT_S", "check_address", "run_on_cluster"]
