"""Rockpool: the file route only (``--from rockpool``), for the files its exporter writes.

Rockpool's ``to_nir`` writes no dt: it folds the dt into each neuron's ``r``
(``r = τ·exp(−dt/τ)/dt`` for its ``LIFTorch``/``ExpSynTorch``, exported as
``CubaLIF``/``LI``; the NIR paper's ``LIFNeuronTorch`` file as ``LIF``), and its
``from_nir`` reads the dt back as ``min τ/(1+r)`` over a node's neurons. :func:`from_file`
applies that same reading: the smallest ``τ/(1+r)`` over every LIF, CubaLIF and LI node
(``τ_mem`` for the CubaLIF) becomes ``metadata["dt"]``. The nodes themselves are left as
they are and run as NIR defines them (forward Euler).

Direct export of Rockpool modules is not supported (Rockpool is not a test dependency
here): :func:`adapt` refuses them, naming the file route.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
from torch import nn

from nirbridge.export.frontends import unsupported

FRAMEWORK = "Rockpool"
#: What works for a Rockpool module :func:`adapt` refuses.
ROUTE = ("export it with Rockpool's own rockpool.nn.modules.torch.nir.to_nir, then run "
         "the file with --from rockpool (or `nirbridge import FILE.nir --from rockpool`)")
#: Rockpool's exporter writes no dt and has no fixed one: it is read from the neurons.
DT: float | None = None
#: How the dt of a Rockpool file is found (for the messages naming the conventions).
DT_RULE = "dt read from the neurons as its from_nir does (min τ/(1+r))"


def adapt(module: nn.Module, name: str) -> nn.Module | None:
    """Rockpool modules are not exported directly (see :data:`ROUTE`)."""
    raise unsupported(module, name, FRAMEWORK, ROUTE,
                      "nirbridge has no Rockpool front-end for the direct route")


def _tau_r(node: nir.NIRNode) -> tuple[np.ndarray, np.ndarray] | None:
    if isinstance(node, nir.CubaLIF):
        return np.asarray(node.tau_mem, dtype=np.float64), np.asarray(node.r, np.float64)
    if isinstance(node, (nir.LIF, nir.LI)):
        return np.asarray(node.tau, dtype=np.float64), np.asarray(node.r, np.float64)
    return None


def file_dt(graph: nir.NIRGraph) -> float | None:
    """The dt Rockpool's ``from_nir`` reads from ``graph``: ``min τ/(1+r)`` over its
    LIF, CubaLIF and LI nodes (subgraphs included); None without such a node."""
    found = []
    for node in graph.nodes.values():
        if isinstance(node, nir.NIRGraph):
            sub = file_dt(node)
            if sub is not None:
                found.append(sub)
            continue
        pair = _tau_r(node)
        if pair is not None and pair[0].size:
            found.append(float(np.min(pair[0] / (1.0 + pair[1]))))
    return min(found) if found else None


def from_file(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
    """Rockpool's reading of a file its exporter wrote: the dt read back from the
    neurons (``metadata["dt"]``, unless the file has one); the nodes are unchanged."""
    meta: dict[str, Any] = dict(graph.metadata or {})
    if meta.get("dt") is not None:
        return graph, [f"the file has its own dt = {float(meta['dt']):g}; kept"]
    dt = file_dt(graph)
    if dt is None:
        return graph, ["no LIF, CubaLIF or LI node to read Rockpool's dt from; give --dt"]
    meta["dt"] = dt
    graph.metadata = meta
    return graph, [f"dt = {dt:.6g} read from the neurons (min τ/(1+r)), as Rockpool's "
                   "from_nir does; the nodes are unchanged and run as NIR defines them "
                   "(forward Euler at that dt)"]


__all__ = ["DT", "DT_RULE", "FRAMEWORK", "ROUTE", "adapt", "file_dt", "from_file"]
