"""Backends: each runs a NIR graph and returns a :class:`RunResult` (outputs, per-node
records, run information), through one :class:`Backend` protocol.

:data:`BACKENDS` lists every backend by name:

============== ==========================================================================
``reference``  float64 reference executor (torch), the ground truth
``lava-float`` Lava floating_pt simulation: spikes equal the reference's
``lava-fixed`` Lava bit-accurate fixed_pt simulation of Loihi 2
``fixed``      numpy integer executor of the quantized graph: the golden model of
               ``lava-fixed``, integer for integer
``norse``      Norse 1.1's own ``from_nir`` reading and executor (nirbridge's steps for
               custom neurons): what Norse computes from the file
``sinabs``     Sinabs 3.1's own ``from_nir`` reading (what Sinabs, and so Speck,
               computes from the file)
``snntorch``   snnTorch 1.0's own ``import_from_nir`` of the graph (its Leaky/Synaptic
               reading at dt = 1e-4), stepped in float64: what snnTorch computes
``onnx``       the graph as a float32 ONNX step model (:mod:`nirbridge.export_onnx`)
               run by onnxruntime on the CPU
============== ==========================================================================

Usage::

    from nirbridge.backends import get
    problems = get("lava-fixed").check(graph)        # [] when it can run
    res = get("lava-fixed").run(graph, x, record=True, target="loihi2")
    res.outputs, res.records["lif"].output, res.info["seconds"]

:func:`nirbridge.verify.compare` compares any two of them layer by layer.

The table names each backend's module and object and imports it on first use, so that
importing one backend (or the quantizer, which uses the reference's synapses) does not
import the others. ``lava`` is accepted as an alias of ``lava-float`` (``mode="fixed_pt"``
selects ``lava-fixed`` in :func:`run_compat`, the older entry).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from nirbridge.backends._base import EXACT, Backend, Reading, Record, RunResult, Tolerance
from nirbridge.errors import InputError, LoweringError

if TYPE_CHECKING:  # listing the backends imports neither torch nor NIR
    import nir

#: Where each backend lives: name → (module, attribute). Explicit: a new backend is added
#: here, not discovered from file names.
_WHERE: dict[str, tuple[str, str]] = {
    "reference": ("nirbridge.backends.reference", "BACKEND"),
    "lava-float": ("nirbridge.backends.lava", "FLOAT_BACKEND"),
    "lava-fixed": ("nirbridge.backends.lava", "FIXED_BACKEND"),
    "fixed": ("nirbridge.backends.fixed", "BACKEND"),
    "norse": ("nirbridge.backends.norse", "BACKEND"),
    "sinabs": ("nirbridge.backends.sinabs", "BACKEND"),
    "snntorch": ("nirbridge.backends.snntorch", "BACKEND"),
    "onnx": ("nirbridge.backends.onnx", "BACKEND"),
}

#: Other names accepted for a backend.
ALIASES: dict[str, str] = {"lava": "lava-float"}


class _Table(Mapping[str, Backend]):
    """The read-only backend table: names in a fixed order, objects imported on access."""

    def __init__(self, where: Mapping[str, tuple[str, str]]) -> None:
        self._where = dict(where)
        self._loaded: dict[str, Backend] = {}

    def __getitem__(self, name: str) -> Backend:
        if name not in self._loaded:
            module, attr = self._where[name]
            self._loaded[name] = getattr(importlib.import_module(module), attr)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __repr__(self) -> str:
        return f"BACKENDS({', '.join(self._where)})"


#: Every backend by name (see the module's documentation).
BACKENDS: Mapping[str, Backend] = _Table(_WHERE)


def names() -> list[str]:
    """The names in :data:`BACKENDS`, in table order."""
    return list(BACKENDS)


def get(name: str) -> Backend:
    """The backend called ``name`` (or an alias of it); ``InputError`` naming the known
    ones otherwise."""
    key = ALIASES.get(name, name)
    if key not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return BACKENDS[key]


def run_backend(graph: nir.NIRGraph, inputs: Any, backend: str = "reference", *,
                record: Record = False, dt: float | None = None,
                **options: Any) -> RunResult:
    """Run ``graph`` on ``inputs`` ``[T, B, ...]`` with ``backend``: a :class:`RunResult`."""
    return get(backend).run(graph, inputs, record=record, dt=dt, **options)


def _legacy_lava(options: dict[str, Any]) -> str:
    """The backend and options that reproduce the old ``backend="lava"`` entry: ``mode``
    picks the backend, and in fixed_pt the quantization is the profile's own, unfitted
    (``target=`` meant a profile given as ``quant=``)."""
    mode = options.pop("mode", "floating_pt")
    if mode == "floating_pt":
        return "lava-float"
    if mode != "fixed_pt":
        raise LoweringError(f"mode={mode!r}; use one of ('floating_pt', 'fixed_pt')")
    quant, target = options.pop("quant", None), options.pop("target", None)
    if quant is not None and target is not None:
        raise LoweringError("give quant= or target=, not both")
    options["quant"] = quant if quant is not None else (target or "loihi2")
    return "lava-fixed"


def _tensors(outputs: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(outputs, dict):
        return {k: _tensors(v) for k, v in outputs.items()}
    return torch.from_numpy(np.ascontiguousarray(outputs))


def run_compat(graph: nir.NIRGraph, inputs: Any, backend: str = "reference",
               record: bool | Iterable[str] = False, **options: Any) -> Any:
    """What :func:`nirbridge.run` has always returned: the outputs as float64 torch tensors
    ``[T, B, ...]`` (a dict for several Output nodes), and ``(outputs, records)`` when
    ``record`` is set. ``backend="lava"`` takes ``mode=`` as before."""
    options = dict(options)
    if backend == "lava":
        backend = _legacy_lava(options)
    elif ALIASES.get(backend, backend) == "reference":
        # as before: tensors on the inputs' device, in the run's dtype
        from nirbridge.backends.reference import run_reference

        return run_reference(graph, inputs, record=record, **options)
    dt = options.pop("dt", None)
    res = run_backend(graph, inputs, backend, record=record, dt=dt, **options)
    out = _tensors(res.outputs)
    return (out, res.records) if record else out


__all__ = ["ALIASES", "BACKENDS", "EXACT", "Backend", "Reading", "RunResult", "Tolerance", "get",
           "names", "run_backend", "run_compat"]
