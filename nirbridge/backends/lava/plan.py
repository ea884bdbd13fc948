"""One Lava run's plan and what its probes wrote: :func:`plan_run`, :func:`read_probes`.

:func:`plan_run` turns a :class:`~.network.LavaNetwork` and the (already quantized, in
fixed_pt) inputs of a chunk of samples into the :class:`~.child.RunPlan` the run's
process builds; its probes write their arrays under a temporary folder, which
:func:`read_probes` reads back per node. Both run where the run runs (this process, or
a worker of a cluster, :mod:`.cluster`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from nirbridge.backends.lava.child import Observed, RunPlan
from nirbridge.backends.lava.network import LIF_MONITOR, MONITOR, LavaNetwork
from nirbridge.errors import LoweringError, SimulationError
from nirbridge.neurons import is_neuron


def plan_run(net: LavaNetwork, inputs: Mapping[str, np.ndarray], record_nodes: set[str],
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


def read_probes(net: LavaNetwork, plan: RunPlan) -> dict[str, dict[str, np.ndarray]]:
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


__all__ = ["plan_run", "read_probes"]
