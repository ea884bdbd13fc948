"""The small public API re-exported at the top level of :mod:`nirbridge`.

Each function imports its implementation when called, so that ``import nirbridge`` stays
cheap (no torch or Lava until they are needed). The implementations never import
this module or the top-level package, so these imports make no cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nir

if TYPE_CHECKING:
    from nirbridge.backends import RunResult


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
    """The backend names :func:`run` and :func:`run_backend` take: those of
    :data:`nirbridge.backends.BACKENDS`, in table order (``lava`` is also accepted, as an
    alias of ``lava-float``)."""
    from nirbridge.backends import names

    return names()


def run_backend(graph: nir.NIRGraph, inputs: Any, backend: str = "reference", *,
                record: bool | Iterable[str] | None = False, dt: float | None = None,
                **options: Any) -> RunResult:
    """Run ``graph`` on ``inputs`` ``[T, B, ...]`` (numpy or torch) with ``backend``, a
    name of :func:`available_backends`: a :class:`~nirbridge.backends.RunResult` with the
    outputs as float64 numpy arrays, the records of the nodes ``record`` names (``True``:
    every node) and how the run went (``info``). ``options`` are the backend's own
    (``target=`` for the fixed-point ones, ``timeout_s=`` for Lava ...)."""
    from nirbridge.backends import run_backend as _run_backend

    return _run_backend(graph, inputs, backend, record=record, dt=dt, **options)


def run(graph: nir.NIRGraph, inputs: Any, backend: str = "reference", record: Any = False,
        **options: Any) -> Any:
    """Run ``graph`` on ``inputs`` ``[T, B, ...]`` with ``backend``: the compatibility form
    of :func:`run_backend`, returning what it always has.

    Returns the outputs as torch tensors ``[T, B, ...]`` (a dict by Output node for
    several), and ``(outputs, records)`` when ``record`` is set (``True`` for every
    node, or an iterable of node names). ``backend="lava"`` takes ``mode="fixed_pt"``
    for the bit-accurate simulation. New code uses :func:`run_backend`.
    """
    from nirbridge.backends import run_compat

    return run_compat(graph, inputs, backend, record=record, **options)
