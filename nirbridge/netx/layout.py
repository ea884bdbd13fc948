"""Lava's array layout and netx's latency: inputs for a netx network and its recorded
outputs aligned with the golden model (see *Data layout, latency and reset* in
:mod:`nirbridge.netx`)."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from nirbridge.errors import InputError
from nirbridge.netx.structure import NETX_WEIGHTED, on_cycles
from nirbridge.quantize import QuantizedGraph, quantize_input


def netx_depth(qgraph: QuantizedGraph, node: str | None = None) -> int:
    """Steps by which ``node``'s netx output (default: the network output) lags the golden
    model: the number of dense/conv layers up to it (each Lava synapse sends the previous
    step's accumulation)."""
    if node is None:
        node = qgraph.outputs[0]
    if node not in qgraph.graph.nodes:
        raise InputError(f"node '{node}' is not in the graph")
    looped = on_cycles(qgraph.graph)  # a recurrent synapse adds no layer
    depth = 0
    for name in qgraph.order:
        depth += isinstance(qgraph.graph.nodes[name], NETX_WEIGHTED) and name not in looped
        if name == node:
            return depth
    raise InputError(f"node '{node}' is not in the graph")  # pragma: no cover


def netx_latency(qgraph: QuantizedGraph) -> int:
    """Steps by which the netx network's output lags the golden model: one per dense/conv
    layer."""
    return netx_depth(qgraph)


def to_netx_layout(x: Any) -> np.ndarray:
    """NIR ``[T, *shape]`` → Lava ``(*reversed(shape), T)`` (e.g. ``[T, C, H, W]`` →
    ``(W, H, C, T)``): all axes reversed. Its own inverse."""
    return np.ascontiguousarray(np.transpose(np.asarray(x)))


def netx_input(qgraph: QuantizedGraph, x: Any) -> np.ndarray:
    """Inputs ``[T, *in_shape]`` or ``[T, B, *in_shape]`` in real units → the integers a
    ``RingBuffer`` feeds the netx network, shaped ``(*port_shape, B·T)``: the ``B``
    samples one after the other (load the network with ``reset_interval=T`` to run them
    independently, see the module docstring).

    Inputs are rounded and saturated exactly as :func:`run_fixed_point` does; the port is
    flat (C order) when the first layer is dense, ``(W, H, C)`` when it is a conv. Append
    :func:`netx_latency` silent steps to see the last sample's end at the output. A
    network with a recurrent layer runs one sample per run (module docstring): ``B``
    must be 1.
    """
    name = qgraph.inputs[0]
    shape = tuple(qgraph.shapes[name])
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    if arr.ndim == len(shape) + 1:
        arr = arr[:, None]
    if arr.ndim != len(shape) + 2 or tuple(arr.shape[2:]) != shape:
        raise InputError(f"input has shape {arr.shape}; expected [T, *{shape}] or "
                         f"[T, B, *{shape}]")
    looped = on_cycles(qgraph.graph)
    if looped and arr.shape[1] > 1:
        raise InputError(f"{arr.shape[1]} samples for a netx network with a recurrent layer "
                         f"({', '.join(sorted(looped))}): netx's reset does not clear the "
                         "recurrent synapse, so samples run back to back would leak into "
                         "each other; run one sample per Network")
    ints = quantize_input(arr, qgraph.layers[name])
    ints = np.swapaxes(ints, 0, 1).reshape(-1, *shape)  # samples back to back
    first = next(n for n in qgraph.order
                 if isinstance(qgraph.graph.nodes[n], NETX_WEIGHTED) and n not in looped)
    if isinstance(qgraph.graph.nodes[first], nir.Conv2d):
        return to_netx_layout(ints)
    return np.ascontiguousarray(ints.reshape(ints.shape[0], -1).T)


def netx_output(qgraph: QuantizedGraph, y: Any, node: str | None = None) -> np.ndarray:
    """A recorded Lava array ``(*port_shape, T')`` of ``node``'s neurons (default: the
    network output) → NIR layout ``[T', *shape]`` (latency not removed)."""
    if node is None:
        node = qgraph.preds[qgraph.outputs[0]][0]
    arr = to_netx_layout(y)
    return arr.reshape(arr.shape[0], *qgraph.shapes[node])


def align_netx_output(qgraph: QuantizedGraph, y: Any, steps: int, node: str | None = None
                      ) -> np.ndarray:
    """A recorded Lava array ``(*port_shape, B·steps + d)`` of ``node``'s neurons (default:
    the network output) → ``[steps, B, *shape]`` aligned with the golden model: sample
    ``b``'s step ``t`` is recorded at index ``b·steps + t + d``, ``d`` =
    :func:`netx_depth`."""
    if node is None:
        node = qgraph.preds[qgraph.outputs[0]][0]
    depth = netx_depth(qgraph, node)
    arr = netx_output(qgraph, y, node)
    n = (arr.shape[0] - depth) // steps
    if n < 1:
        raise InputError(f"{arr.shape[0]} recorded steps hold no whole sample of {steps} "
                         f"steps after the latency of {depth}")
    arr = arr[depth:depth + n * steps].reshape(n, steps, *arr.shape[1:])
    return np.swapaxes(arr, 0, 1)


__all__ = ["align_netx_output", "netx_depth", "netx_input", "netx_latency", "netx_output",
           "to_netx_layout"]
