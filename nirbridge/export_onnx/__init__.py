"""NIR → ONNX: a NIR graph as a standard ONNX model that onnxruntime (or any ONNX runtime)
runs without nirbridge.

Two forms (``docs/onnx.md`` has the details):

- the **step model** (default): one time step, the streaming form an edge runtime
  needs. Inputs: each Input node by its name, ``[batch, ...]``, then one input per state
  tensor, ``state.<node>.<field>``; outputs: each Output node by its name, then each
  state's next value, ``state.<node>.<field>.next``. States are every neuron's state
  fields, ``state.<node>.output`` for a node read over a feedback edge (its previous
  output; zero at t = 0, the reference's rule) and ``state.<node>.buffer``
  (``[D, batch, ...]``, the last D inputs, newest first) for a Delay of up to D steps.
  Every state input has a default, an initializer of the same name shaped
  ``[1, ...]`` (``[D, 1, ...]``): the neuron's own initial state (some start at
  ``v_leak`` or ``v_reset``, not 0), which broadcasts against the batch, so a runtime may
  omit the states at t = 0.
- the **sequence model** (``sequence=True``): the step graph as the body of one ONNX
  ``Scan`` over inputs ``[time, batch, ...]``; outputs ``[time, batch, ...]`` and the
  states after the last step (``.next``); the initial states are optional inputs as above.

``expose=True`` adds every node's summed input ``input.<node>`` and output
``value.<node>`` as outputs (what the ``onnx`` backend records). Every value is float32;
opset 17 by default (13 or later); standard operators only (no custom domain). Neurons
are not written here one by one: each registered neuron's own torch step is traced
(:mod:`nirbridge.export_onnx._trace`), so a newly registered neuron converts too.

API: :func:`to_onnx`, :func:`write_onnx`, :func:`layout` (a model's interface, from its
metadata), :class:`StateInfo`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nir
import onnx

from nirbridge._files import atomic_path
from nirbridge.errors import FileFormatError, InputError
from nirbridge.export_onnx._model import (
    MIN_OPSET,
    Plan,
    StateInfo,
    make_plan,
    sequence_model,
    step_model,
)

#: The opset written unless another is asked for.
DEFAULT_OPSET = 17


def _check_opset(opset: int) -> int:
    latest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise InputError(f"opset={opset!r}; the ONNX exporter writes opsets {MIN_OPSET} to "
                         f"{latest} (default {DEFAULT_OPSET})")
    return opset


def convert(graph: nir.NIRGraph, *, sequence: bool = False, dt: float | None = None,
            expose: bool = False, opset: int = DEFAULT_OPSET) -> tuple[onnx.ModelProto, Plan]:
    """:func:`to_onnx`, with the conversion's :class:`~nirbridge.export_onnx._model.Plan`
    (shapes, states and their initial values) that the ``onnx`` backend runs by."""
    opset = _check_opset(opset)
    plan = make_plan(graph, dt)
    build = sequence_model if sequence else step_model
    model = build(plan, expose=expose, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    return model, plan


def to_onnx(graph: nir.NIRGraph, *, sequence: bool = False, dt: float | None = None,
            expose: bool = False, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """``graph`` as an ONNX model (see the module docstring): the step model, or with
    ``sequence`` the Scan model over ``[T, B, ...]``; ``dt``: the time step (default the
    graph's ``metadata["dt"]``, as the reference); ``expose``: every node's input and
    output as extra outputs. The model passes ``onnx.checker.check_model(full_check=True)``.

    Raises :class:`~nirbridge.errors.LoweringError` naming the node (and, for a neuron,
    the torch function its step calls that the tracer does not know)."""
    return convert(graph, sequence=sequence, dt=dt, expose=expose, opset=opset)[0]


def write_onnx(graph: nir.NIRGraph, path: str | os.PathLike[str], **options: Any) -> Path:
    """Write :func:`to_onnx` of ``graph`` (``options`` as there) to ``path``, atomically: a
    failed conversion or write leaves no file."""
    model = to_onnx(graph, **options)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    return Path(path)


def layout(model: onnx.ModelProto | str | os.PathLike[str]) -> dict[str, Any]:
    """The interface a nirbridge model records in its metadata: ``model`` (``"step"`` or
    ``"sequence"``), ``dt``, ``inputs`` and ``outputs`` (name → per-sample shape) and
    ``states`` (one dict per state, the fields of :class:`StateInfo`)."""
    if not isinstance(model, onnx.ModelProto):
        try:
            model = onnx.load_model(str(model), load_external_data=False)
        except Exception as exc:
            raise FileFormatError(f"{model}: not an ONNX model ({exc})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if "nirbridge.layout" not in props:
        raise FileFormatError("the ONNX model was not written by nirbridge (no "
                              "'nirbridge.layout' metadata)")
    return {"model": props.get("nirbridge.model"), **json.loads(props["nirbridge.layout"])}


__all__ = ["DEFAULT_OPSET", "StateInfo", "convert", "layout", "to_onnx", "write_onnx"]
