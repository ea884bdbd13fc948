"""Common interface of nirbridge's trainable neuron modules and a state-threading container.

Also the helpers every neuron module shares: registering a parameter as an
``nn.Parameter`` (trainable) or a buffer (fixed, but moved by ``.to()``/``.double()``),
and turning an effective parameter into the float64 array of the neuron shape that a
NIR node stores.
"""

from __future__ import annotations

import math
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.errors import InvalidParameterError
from nirbridge.neurons import functional as F

#: A neuron parameter: one value per layer (float) or a tensor broadcastable to the
#: neuron shape (per channel, e.g. ``[C, 1, 1]`` for conv feature maps, or per neuron).
Param = float | torch.Tensor


def to_tensor(value: Param, name: str = "parameter") -> torch.Tensor:
    """A float or tensor as a detached floating-point tensor (default dtype for numbers).

    Raises :class:`InvalidParameterError` naming ``name`` when it is not numeric or holds
    NaN/inf.
    """
    try:
        if torch.is_tensor(value):
            t = value.detach().clone()
            if not t.is_floating_point():
                t = t.to(torch.get_default_dtype())
        else:
            t = torch.as_tensor(value, dtype=torch.get_default_dtype()).clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidParameterError(f"parameter '{name}' = {value!r} is not numeric") from exc
    if not bool(torch.isfinite(t).all()):
        raise InvalidParameterError(f"parameter '{name}' holds NaN or inf: {value!r}")
    return t


def full(
    value: torch.Tensor | float, shape: tuple[int, ...], name: str = "parameter"
) -> np.ndarray:
    """Effective parameter broadcast to the neuron ``shape`` as float64 (NIR stores arrays).

    Raises :class:`InvalidParameterError` naming ``name`` when it does not broadcast to the
    neuron shape or is not finite.
    """
    if torch.is_tensor(value):
        arr = value.detach().cpu().double().numpy()
    else:
        arr = np.asarray(value, dtype=np.float64)
    shape = tuple(int(d) for d in shape)
    try:
        out = np.array(np.broadcast_to(arr, shape), dtype=np.float64)
    except ValueError as exc:
        raise InvalidParameterError(
            f"parameter '{name}' of shape {np.shape(arr)} does not broadcast to neuron "
            f"shape {shape}"
        ) from exc
    if not np.all(np.isfinite(out)):
        raise InvalidParameterError(f"parameter '{name}' holds NaN or inf")
    return out


def compare_meta(compare: str) -> dict[str, str]:
    """Metadata recording a standard node's firing convention (NIR's own is '>')."""
    return {"compare": F.check_compare(compare)}


def check_positive(arr: np.ndarray, name: str, owner: str) -> np.ndarray:
    """``arr`` unchanged if every entry is > 0, else an error naming ``owner.name``."""
    if not np.all(arr > 0):
        raise InvalidParameterError(
            f"{owner}: parameter '{name}' must be > 0 for export; got minimum "
            f"{float(np.min(arr))!r}"
        )
    return arr


def dt_scale(dt_graph: float, dt_module: float) -> float:
    """Factor turning a module's time constant into the graph's, keeping ``dt/τ`` fixed."""
    if not (math.isfinite(dt_graph) and dt_graph > 0):
        raise InvalidParameterError(f"graph dt={dt_graph!r} must be a finite number > 0")
    return dt_graph / dt_module


class NeuronModule(torch.nn.Module):
    """A single-step spiking neuron with explicit state (Norse style).

    ``forward(x, state=None) -> (out, new_state)``: ``x`` is one step's input current
    ``[B, *shape]``; ``state`` is ``None`` at the first step (the model's own initial
    state is used) or what the previous call returned. Parameters may be Python floats
    (one per layer) or tensors broadcastable to the neuron shape (per channel: e.g.
    ``[C, 1, 1]`` for conv feature maps). Trainable parameters are ``nn.Parameter`` in the
    training parametrisation, fixed ones are buffers (so ``.to(device)`` and ``.double()``
    move them); both are cast to the input's dtype and device at every step.
    :meth:`to_nir_node` exports their *effective* values.
    """

    #: nirtorch treats these as leaves of the traced graph.
    _is_leaf_module = True

    def add_param(self, name: str, value: Param, learn: bool = False) -> None:
        """Register ``value`` as ``nn.Parameter`` ``name`` when ``learn``, else as a buffer."""
        t = to_tensor(value, name)
        if learn:
            self.register_parameter(name, torch.nn.Parameter(t))
        else:
            self.register_buffer(name, t)

    def p(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Parameter or buffer ``name`` cast to ``x``'s dtype and device (differentiably)."""
        return getattr(self, name).to(x)

    def initial_state(self, x: torch.Tensor) -> Any:  # pragma: no cover - abstract
        """The state before the first step, for a batch like ``x`` ([B, *shape])."""
        raise NotImplementedError

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        """The NIR node (standard when exact, else custom) for neurons of ``shape``
        (no batch dimension) in a graph whose time step is ``dt``."""
        raise NotImplementedError  # pragma: no cover - abstract


class StatefulSequential(torch.nn.Sequential):
    """``nn.Sequential`` that threads the state of every :class:`NeuronModule` it holds.

    ``forward(x, state=None) -> (out, state)`` where ``state`` is a tuple with one entry per
    layer (``None`` for stateless layers). It traces with ``torch.fx`` for export.
    """

    def forward(self, x: torch.Tensor, state: tuple | None = None):  # type: ignore[override]
        new_state = []
        for i, layer in enumerate(self):
            if isinstance(layer, NeuronModule):
                x, s = layer(x, None if state is None else state[i])
                new_state.append(s)
            else:
                x = layer(x)
                new_state.append(None)
        return x, tuple(new_state)


def run_steps(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Run a single-step model ``model(x, state) -> (out, state)`` over ``inputs`` [T, B, …]."""
    state = None
    outs = []
    for x in inputs:
        y, state = model(x, state)
        outs.append(y)
    return torch.stack(outs)


__all__ = [
    "NeuronModule",
    "Param",
    "StatefulSequential",
    "check_positive",
    "compare_meta",
    "dt_scale",
    "full",
    "run_steps",
    "to_tensor",
]
