"""Run a lowered network on Lava: :func:`run_lava`.

Each chunk of samples runs in its own child process (:mod:`.child`) that builds the Lava
Processes, compiles once, runs all samples of the chunk back to back (sample ``b`` at
steps ``b·T .. b·T + T − 1``, see :mod:`.network` for the latency alignment) and stops
the runtime. Probes (inside the neuron models, or small ``Monitor`` processes) record
aligned outputs, states and spike counts in numpy and write them once to a temporary
``.npz`` file (``Var.get()`` moves one element per message); :mod:`.results` assembles
them. Nothing is left behind: no process, no ``/dev/shm`` segment, no temporary file.
The chunks (shards) run one after the other, ``workers`` at a time (:mod:`.shards`), or
on a Dask cluster (:mod:`.cluster`); :mod:`.plan` plans each run and reads its probes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import nir
import numpy as np
import torch

from nirbridge import fixed_point as fx
from nirbridge.backends.lava.child import preload_lava
from nirbridge.backends.lava.cluster import check_address, run_on_cluster
from nirbridge.backends.lava.lower import lower
from nirbridge.backends.lava.network import LavaNetwork
from nirbridge.backends.lava.results import LavaResult, Parts, assemble
from nirbridge.backends.lava.shards import run_local, split_samples
from nirbridge.errors import InputError, LoweringError
from nirbridge.quantize import quantize_input


def _check_inputs(net: LavaNetwork, inputs: Any) -> dict[str, np.ndarray]:
    if not isinstance(inputs, Mapping):
        if len(net.inputs) != 1:
            raise InputError(f"graph has inputs {net.inputs}; pass a dict by name")
        inputs = {net.inputs[0]: inputs}
    out: dict[str, np.ndarray] = {}
    tb = None
    for name in net.inputs:
        if name not in inputs:
            raise InputError(f"no input given for Input node '{name}'")
        x = inputs[name]
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if x.ndim < 3:
            raise InputError(f"input for node '{name}' has shape {x.shape}; expected "
                             "[T, B, ...] with time first, then batch")
        want = net.streams[name].shape
        if tuple(x.shape[2:]) != want:
            raise InputError(f"input for node '{name}' has per-step shape {x.shape[2:]}; "
                             f"the graph expects {want}")
        if x.dtype.kind not in "biuf" or not np.all(np.isfinite(x)):
            raise InputError(f"input for node '{name}' is not numeric or contains NaN/inf")
        if tb is not None and x.shape[:2] != tb:
            raise InputError(f"inputs disagree on [T, B]: {tb} and {x.shape[:2]} ('{name}')")
        tb = x.shape[:2]
        out[name] = x.astype(np.float64, copy=False)
    return out


def _default_chunk(net: LavaNetwork, t: int, b: int, record: bool) -> int:
    per_sample = sum(net.streams[n].size for n in net.inputs)
    if record:
        per_sample += 3 * sum(s.size for s in net.streams.values())
    else:
        per_sample += sum(net.streams[n].size for n in net.outputs)
    per_sample *= 8 * t
    return max(1, min(b, (256 << 20) // max(per_sample, 1)))


def _record_set(net: LavaNetwork, record: bool | Iterable[str]) -> set[str]:
    if record is True:
        return set(net.streams)
    if not record:
        return set()
    return set(record) & set(net.streams)


def run_lava(graph_or_lowered: nir.NIRGraph | LavaNetwork, inputs: Any,
             mode: str = "floating_pt", *, timeout_s: float | None = 600.0,
             record: bool | Iterable[str] = False, dt: float | None = None,
             samples_per_run: int | None = None, progress: bool | None = None,
             sparse: bool | str = "auto", quant: Any = None, target: Any = None,
             stock_lif: bool = True, workers: int = 1,
             cluster: str | None = None) -> LavaResult:
    """Run a graph (lowered here for ``mode``) or a :class:`LavaNetwork` on ``inputs``.

    ``inputs``: ``[T, B, ...]`` numpy/torch (a dict by Input node for several inputs).
    Samples are run back to back in one compiled network per run of ``samples_per_run``
    samples (default: as many as fit in ~256 MB of buffers), each run in its own child
    process limited to ``timeout_s`` seconds (None: no limit). ``record``: True or node
    names, for per-node outputs (and neuron states/inputs) in ``LavaResult.records``.
    ``progress``: a tqdm bar (None: only on a terminal). ``quant``/``stock_lif``: see
    :func:`lower` (fixed_pt; ignored when a :class:`LavaNetwork` is given); ``target``: a
    target profile name or TOML path, the same as ``quant=`` given a profile. In fixed_pt
    the inputs are quantized as the golden run quantizes them
    (:func:`~nirbridge.quantize.quantize_input`), once for all samples.

    ``workers``: the samples are cut into at least that many shards (contiguous along
    the batch axis, :mod:`.shards`), run side by side, each in its own child process;
    ``cluster``: run the shards on Dask distributed instead (:mod:`.cluster`):
    ``"local"`` starts a cluster of ``workers`` processes on this machine for the call,
    ``"tcp://host:port"`` uses a running scheduler. The results are merged in sample
    order and equal a one-process run's.

    Raises :class:`SimulationTimeout` past the limit, :class:`SimulationError` with the
    failing process model's own traceback (naming the shard, when there are several),
    :class:`LoweringError`/:class:`InputError` (and
    :class:`~nirbridge.errors.QuantizationError` in fixed_pt) before starting anything.
    """
    if target is not None:
        if quant is not None:
            raise LoweringError("give quant= or target=, not both")
        if mode == "fixed_pt":
            quant = target
    if cluster is not None:
        check_address(cluster)
    if isinstance(graph_or_lowered, LavaNetwork):
        net = graph_or_lowered
    else:
        net = lower(graph_or_lowered, mode, dt=dt, sparse=sparse, quant=quant,
                    stock_lif=stock_lif)
    x = _check_inputs(net, inputs)
    input_sat: dict[str, int] = {}
    if net.mode == "fixed_pt":
        x, input_sat = _quantize_inputs(net, x)
    t, b = next(iter(x.values())).shape[:2]
    rec_nodes = _record_set(net, record)
    chunk = int(samples_per_run) if samples_per_run else _default_chunk(net, t, b,
                                                                        bool(rec_nodes))
    shards = split_samples(b, chunk, workers)
    total_steps = sum((s.stop - s.start) * t + net.max_latency for s in shards)
    from tqdm import tqdm

    wall = time.perf_counter()
    with tqdm(total=total_steps, unit="step", desc=f"lava {net.mode}", leave=False,
              disable=None if progress is None else not progress) as bar:
        if cluster is None:
            preload_lava()
            done, pids = run_local(net, x, shards, rec_nodes, timeout_s, workers, bar.update)
        else:
            done, pids = run_on_cluster(
                cluster, net, x, shards, rec_nodes, timeout_s, workers,
                lambda s: bar.update((s.stop - s.start) * t + net.max_latency))
    seconds = {k: sum(float(times.get(k, 0.0)) for _, times in done)
               for k in ("compile", "run", "stop")}
    seconds["wall"] = time.perf_counter() - wall
    parts: Parts = [part for part, _ in done]
    result = assemble(net, x, parts, rec_nodes, len(shards), total_steps, seconds, input_sat)
    result.child_pids = pids
    result.shards = [(s.start, s.stop) for s in shards]
    return result


def _quantize_inputs(net: LavaNetwork, x: Mapping[str, np.ndarray]
                     ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """fixed_pt: the inputs as the golden run's integers, and their saturation events."""
    out: dict[str, np.ndarray] = {}
    sat: dict[str, int] = {}
    for name, xi in x.items():
        counter = fx.SaturationCounter()
        q = quantize_input(xi, net.quant.layers[name], counter)
        if np.any(np.abs(q) > np.iinfo(np.int32).max):
            raise InputError(f"input for node '{name}' does not fit Lava's int32 source")
        out[name] = q
        sat[name] = counter.total
    return out, sat


__all__ = ["run_lava"]
