"""The small public API re-exported at the top level of :mod:`nirbridge`.

Each function imports its implementation when called, so that ``import nirbridge`` stays
cheap (no torch or Lava until they are needed). The implementations never import
this module or the top-level package, so these imports make no cycle.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import nir

from nirbridge.errors import NirbridgeError


def to_nir(model: Any, sample_input: Any, dt: float = 1.0) -> nir.NIRGraph:
    """Export a single-step torch model to a NIR graph; ``sample_input`` is one step's batch
    ``[B, ...]``. Standard NIR nodes where exact, nirbridge custom nodes otherwise."""
    from nirbridge.export import to_nir as _to_nir

    return _to_nir(model, sample_input, dt=dt)


def write(path: str | Path, graph: nir.NIRGraph, compat: str = "native") -> None:
    """Write ``graph`` to ``path`` (``compat="lossy"``: standard nodes only)."""
    from nirbridge.io import write as _write

    _write(path, graph, compat=compat)


def read(path: str | Path) -> nir.NIRGraph:
    """Read a ``.nir`` file (nirbridge's own, or written by stock NIR or another tool)."""
    from nirbridge.io import read as _read

    return _read(path)


def available_backends() -> list[str]:
    """Names of the backend modules shipped in :mod:`nirbridge.backends`."""
    import nirbridge.backends as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")
                  and m.ispkg is False)


def run(graph: nir.NIRGraph, inputs: Any, backend: str = "reference", record: Any = False,
        **options: Any):
    """Run ``graph`` on ``inputs`` ``[T, B, ...]`` with ``backend``.

    Returns the outputs ``[T, B, ...]``, and ``(outputs, records)`` when ``record`` is set
    (``True`` for every node, or an iterable of node names).
    """
    names = available_backends()
    if backend not in names:
        raise NirbridgeError(f"unknown backend {backend!r}; available: {', '.join(names)}")
    module = importlib.import_module(f"nirbridge.backends.{backend}")
    return module.run(graph, inputs, record=record, **options)
