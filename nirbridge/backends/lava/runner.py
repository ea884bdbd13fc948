"""Run a lowered network on Lava: :func:`run_lava`.

Each chunk of samples runs in its own child process (:mod:`.child`) that builds the Lava
Processes, compiles once, runs all samples of the chunk back to back (sample ``b`` at
steps ``b·T .. b·T + T − 1``, see :mod:`.network` for the latency alignment) and stops
the runtime. Probes (inside the neuron models, or small ``Monitor`` processes) record
aligned outputs, states and spike counts in numpy and write them once to a temporary
``.npz`` file (``Var.get()`` moves one element per message); :mod:`.results` assembles
them. Nothing is left behind: no process, no ``/dev/shm`` segment, no temporary file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import Any

import nir
import numpy as np
import torch

from nirbridge import fixed_point as fx
from nirbridge.backends.lava.child import Observed, RunPlan, preload_lava, run_in_child
from nirbridge.backends.lava.lower import lower
from nirbridge.backends.lava.network import LIF_MONITOR, MONITOR, LavaNetwork
from nirbridge.backends.lava.results import LavaResult, Parts, assemble
from nirbridge.errors import InputError, LoweringError, SimulationError
from nirbridge.neurons import is_neuron
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


def _plan_run(net: LavaNetwork, inputs: Mapping[str, np.ndarray], record_nodes: set[str],
              tmpdir: str) -> RunPlan:
    t, b = next(iter(inputs.values())).shape[:2]
    total = b * t + net.max_latency
    nodes = net.graph.nodes
    fixed = net.mode == "fixed_pt"
    want = (set(net.outputs) | set(net.neurons) | record_nodes) - set(net.inputs)
    observed: dict[str, Observed] = {}
    node_probe: dict[str, str] = {}
    monitors: list[tuple[str, str, int, np.ndarray | None]] = []
    for name in sorted(want, key=list(net.streams).index):
        stream = net.streams[name]
        spec = net.procs[stream.proc]
        if spec.probe and stream.bias is None:
            key = stream.proc
        else:  # a monitor, shared by the nodes that see this process with the same bias
            key = ""
            for mkey, src, _, bias in monitors:
                same = (bias is None and stream.bias is None) or (
                    bias is not None and stream.bias is not None
                    and np.array_equal(bias, stream.bias))
                if src == stream.proc and same:
                    key = mkey
                    break
            if not key:
                n = sum(src == stream.proc for _, src, _, _ in monitors)
                key = f"{stream.proc}/monitor" + (f"{n}" if n else "")
                monitors.append((key, stream.proc, stream.size, stream.bias))
        obs = observed.setdefault(key, Observed(key, stream.latency, False, False, []))
        obs.nodes.append(name)
        obs.record |= name in net.outputs or name in record_nodes
        obs.states |= name in record_nodes and is_neuron(nodes[name])
        node_probe[name] = key
    for i, obs in enumerate(observed.values()):
        obs.path = os.path.join(tmpdir, f"probe{i}.npz")
    probe_cfg = {k: dict(path=o.path, offset=o.offset, period=t, samples=b, total=total,
                         record=o.record, states=o.states,
                         dtype="int64" if fixed else "float64") for k, o in observed.items()}
    procs: list[tuple[str, str, dict[str, Any]]] = []
    for spec in net.procs.values():
        kw = dict(spec.kwargs)
        if spec.role == "source":
            x = inputs[spec.key]
            data = np.zeros((spec.size, total), dtype=np.int32 if fixed else np.float64)
            data[:, : b * t] = x.reshape(t, b, spec.size).transpose(2, 1, 0).reshape(spec.size,
                                                                                   b * t)
            kw["data"] = data
        if spec.stateful:
            if spec.process.endswith(":LIFReset"):  # Lava's own: resets u, v to 0
                kw.update(reset_interval=t, reset_offset=(spec.latency + 1) % t)
            else:
                kw.update(period=t, offset=spec.latency)
        if spec.key in probe_cfg:
            kw["probe"] = probe_cfg[spec.key]
        procs.append((spec.key, spec.process, kw))
    ports = {s.key: (s.out_port, s.in_port) for s in net.procs.values()}
    connections = [(a, ports[a][0], z, ports[z][1]) for a, z in net.connections]
    var_refs: list[tuple[str, str, str, str]] = []
    for key, src, size, bias in monitors:
        kw = dict(shape=(size,), probe=probe_cfg[key])
        spec = net.procs[src]
        if spec.state_vars and probe_cfg[key]["states"]:
            # Lava's own LIF: spikes, input (its sources again) and u, v by reference
            if tuple(spec.state_vars) != ("u", "v") or bias is not None:
                raise LoweringError(f"process '{src}': cannot monitor states "
                                    f"{spec.state_vars}")
            procs.append((key, LIF_MONITOR, kw))
            connections.append((src, ports[src][0], key, "a_in"))
            for a, z in net.connections:
                if z == src:
                    connections.append((a, ports[a][0], key, "x_in"))
            var_refs += [(key, "ref_u", src, "u"), (key, "ref_v", src, "v")]
            continue
        if bias is not None:
            kw["bias"] = bias
        procs.append((key, MONITOR, kw))
        connections.append((src, ports[src][0], key, "a_in"))
    return RunPlan(procs, connections, observed, node_probe, t, b, total, var_refs)



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
             stock_lif: bool = True) -> LavaResult:
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
    (:func:`~nirbridge.quantize.quantize_input`).

    Raises :class:`SimulationTimeout` past the limit, :class:`SimulationError` with the
    failing process model's own traceback, :class:`LoweringError`/:class:`InputError`
    (and :class:`~nirbridge.errors.QuantizationError` in fixed_pt) before starting
    anything.
    """
    if target is not None:
        if quant is not None:
            raise LoweringError("give quant= or target=, not both")
        if mode == "fixed_pt":
            quant = target
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
    if chunk < 1:
        raise InputError(f"samples_per_run={samples_per_run}; give a positive number")
    starts = list(range(0, b, chunk))
    total_steps = sum(min(chunk, b - s) * t + net.max_latency for s in starts)
    preload_lava()
    from tqdm import tqdm

    wall = time.perf_counter()
    seconds = {"compile": 0.0, "run": 0.0, "stop": 0.0}
    parts: Parts = []
    pids: list[int] = []
    with tqdm(total=total_steps, unit="step", desc=f"lava {net.mode}", leave=False,
              disable=None if progress is None else not progress) as bar:
        for s in starts:
            sub = {k: v[:, s: s + chunk] for k, v in x.items()}
            tmpdir = tempfile.mkdtemp(prefix="nirbridge-lava-")
            try:
                plan = _plan_run(net, sub, rec_nodes, tmpdir)
                times = run_in_child(plan, net.mode, timeout_s, bar.update)
                pids.append(int(times["pid"]))
                for k in seconds:
                    seconds[k] += float(times.get(k, 0.0))
                parts.append(_read_probes(net, plan))
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
    seconds["wall"] = time.perf_counter() - wall
    result = assemble(net, x, parts, rec_nodes, len(starts), total_steps, seconds, input_sat)
    result.child_pids = pids
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


def _read_probes(net: LavaNetwork, plan: RunPlan) -> dict[str, dict[str, np.ndarray]]:
    files: dict[str, dict[str, np.ndarray]] = {}
    for key, obs in plan.observed.items():
        if not os.path.exists(obs.path):
            raise SimulationError(f"the Lava run finished but probe '{key}' wrote nothing "
                                  f"({obs.path})")
        with np.load(obs.path) as data:
            files[key] = {k: data[k] for k in data.files}
    per_node: dict[str, dict[str, np.ndarray]] = {}
    for node, key in plan.node_probe.items():
        per_node[node] = files[key]
    return per_node


__all__ = ["run_lava"]
