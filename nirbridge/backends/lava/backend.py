"""The Lava backends of :data:`nirbridge.backends.BACKENDS`: ``lava-float`` and
``lava-fixed`` (one :class:`LavaBackend` per mode), and :func:`run`, the older entry that
:func:`nirbridge.run` calls with ``backend="lava"``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.backends._base import (
    EXACT,
    Reading,
    RunResult,
    check_options,
    error_reason,
    graph_issues,
    to_numpy,
)
from nirbridge.backends.fixed import FIXED_TOLERANCE, QUANT_OPTIONS, quantized_for
from nirbridge.backends.lava.linear import LINEAR_NODES
from nirbridge.backends.lava.lower import lower
from nirbridge.backends.lava.network import MODES
from nirbridge.backends.lava.runner import run_lava
from nirbridge.errors import LoweringError, NirbridgeError
from nirbridge.graph import flatten_subgraphs
from nirbridge.neurons import is_neuron


def run(graph: nir.NIRGraph, inputs: Any, *, record: bool | Iterable[str] = False,
        mode: str = "floating_pt", **options: Any):
    """The reference-shaped entry :func:`nirbridge.run` has always called (``backend=
    "lava"``): the outputs as float64 torch tensors ``[T, B, ...]`` (a dict for several
    Output nodes), and ``(outputs, records)`` when ``record`` is set. ``options`` go to
    :func:`run_lava`. New code uses :data:`FLOAT_BACKEND`/:data:`FIXED_BACKEND`."""
    res = run_lava(graph, inputs, mode, record=record, **options)
    if isinstance(res.outputs, dict):
        out: Any = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in res.outputs.items()}
    else:
        out = torch.from_numpy(np.ascontiguousarray(res.outputs))
    return (out, res.records or {}) if record else out


#: Options of :func:`lower` and of :func:`run_lava` the Lava backends pass on.
_LOWER_OPTIONS = ("sparse",)
_FIXED_LOWER_OPTIONS = ("sparse", "stock_lif")
_RUN_OPTIONS = ("timeout_s", "samples_per_run", "progress", "workers", "cluster")


def lava_available() -> bool:
    """Whether lava-nc is installed (found, not imported)."""
    try:
        return importlib.util.find_spec("lava.magma") is not None
    except ImportError:
        return False


class LavaBackend:
    """A Lava backend (:class:`~nirbridge.backends.Backend`) for one ``mode``.

    Options: ``sparse`` (see :func:`lower`), ``timeout_s``, ``samples_per_run``,
    ``progress``, ``workers`` (shards of the samples run side by side) and ``cluster``
    (``"local"`` or a Dask scheduler's address: the shards on Dask distributed), see
    :func:`run_lava`; fixed_pt also ``stock_lif`` and the quantization
    options of :func:`nirbridge.backends.fixed.quantized_for` (by default the ``loihi2``
    profile with the input format fitted to the data, as the ``fixed`` backend picks it:
    the two then compute the same integers).
    """

    def __init__(self, name: str, mode: str, description: str) -> None:
        if mode not in MODES:
            raise LoweringError(f"mode={mode!r}; use one of {MODES}")
        self.name, self.mode, self.description = name, mode, description
        #: floating_pt calls the reference's own torch steps; fixed_pt is the integers
        #: of ``fixed``, so it promises what fixed point does
        self.tolerance = EXACT if mode == "floating_pt" else FIXED_TOLERANCE

    def reading(self, graph: nir.NIRGraph, **options: Any) -> Reading:
        """Lava computes the graph as NIR defines it (fixed_pt on the target's integer
        grids: its tolerance, not its reading)."""
        return Reading()

    def _split(self, options: Mapping[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        fixed = self.mode == "fixed_pt"
        lower_names = _FIXED_LOWER_OPTIONS if fixed else _LOWER_OPTIONS
        quant_names = QUANT_OPTIONS if fixed else ()
        check_options(self.name, options, (*lower_names, *_RUN_OPTIONS, *quant_names))
        return ({k: v for k, v in options.items() if k in lower_names},
                {k: v for k, v in options.items() if k in _RUN_OPTIONS},
                {k: v for k, v in options.items() if k in quant_names})

    def check(self, graph: nir.NIRGraph, **options: Any) -> list[str]:
        """Why Lava cannot run ``graph`` in this mode: lava-nc missing, the graph's
        structure, nodes without a Lava lowering, or what lowering (and, in fixed_pt,
        quantizing) refuses (a loop Lava's synapse delays cannot match, a ``nir.Delay``
        longer than 62 steps: one line naming the nodes), ``cluster=`` without Dask.
        Recurrent graphs and delays are fine otherwise. Lowers the graph; starts no Lava process."""
        lower_kw, _, quant_kw = self._split(options)
        reasons = [] if lava_available() else ["lava-nc is not installed (pip install lava-nc)"]
        if options.get("cluster") is not None and importlib.util.find_spec("distributed") is None:
            reasons.append("cluster= runs shards on Dask distributed, which is not installed "
                           "(pip install 'nirbridge[cluster]')")
        structure = graph_issues(graph)
        if structure:
            return reasons + structure
        graph = flatten_subgraphs(graph)  # graph_issues has checked that it flattens
        if self.mode == "floating_pt":  # every unmappable node, not just the first
            unmapped = []
            for name, node in graph.nodes.items():
                if isinstance(node, (nir.Input, nir.Output, nir.Flatten, nir.Scale,
                                     nir.Threshold, nir.Delay, *LINEAR_NODES)):
                    continue
                if not is_neuron(node):  # every registered neuron lowers (FloatNeuron)
                    unmapped.append(f"node '{name}' ({type(node).__name__}) has no Lava "
                                    "lowering")
            if unmapped:
                return reasons + unmapped
        try:
            quant = None
            if self.mode == "fixed_pt":
                quant = quantized_for(graph, None, **quant_kw)
            lower(graph, self.mode, quant=quant, **lower_kw)
        except NirbridgeError as exc:
            reasons.append(error_reason(exc))
        return reasons

    def run(self, graph: nir.NIRGraph, inputs: Any, *,
            record: bool | Iterable[str] | None = False, dt: float | None = None,
            **options: Any) -> RunResult:
        """Lower ``graph`` (quantized first in fixed_pt) and run it with :func:`run_lava`;
        a :class:`~nirbridge.backends.RunResult`. In fixed_pt the quantization (the
        input format fitted to ``inputs``) is chosen here, once for all samples, before
        ``workers``/``cluster`` cut them into shards: every shard runs the same integers."""
        lower_kw, run_kw, quant_kw = self._split(options)
        quant = None
        if self.mode == "fixed_pt":
            quant = quantized_for(graph, inputs, dt=dt, **quant_kw)
        net = lower(graph, self.mode, dt=dt, quant=quant, **lower_kw)
        res = run_lava(net, inputs, record=record or False, **run_kw)
        info: dict[str, Any] = {
            "backend": self.name, "mode": self.mode, "dt": net.dt, "seconds": dict(res.seconds),
            "runs": res.runs, "steps": res.steps, "child_pids": list(res.child_pids),
            "counts": res.counts, "workers": int(run_kw.get("workers", 1)),
            "cluster": run_kw.get("cluster"), "shards": list(res.shards),
        }
        if self.mode == "fixed_pt":
            info.update(quantized=net.quant, quantization=res.quantization,
                        saturations=res.saturations, fixed_records=res.fixed_records)
        return RunResult(to_numpy(res.outputs), dict(res.records or {}), info)


#: Lava floating_pt and bit-accurate fixed_pt, as listed in
#: :data:`nirbridge.backends.BACKENDS`.
FLOAT_BACKEND = LavaBackend("lava-float", "floating_pt",
                            "Lava floating_pt simulation (spike-exact against the reference)")
FIXED_BACKEND = LavaBackend("lava-fixed", "fixed_pt",
                            "Lava bit-accurate fixed_pt simulation of Loihi 2 (integer-exact "
                            "against fixed)")


__all__ = ["FIXED_BACKEND", "FLOAT_BACKEND", "LavaBackend", "lava_available", "run"]
