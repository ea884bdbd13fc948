"""Common interface of nirbridge's trainable neuron modules and a state-threading container."""

from __future__ import annotations

from typing import Any

import nir
import torch


class NeuronModule(torch.nn.Module):
    """A single-step spiking neuron with explicit state (Norse style).

    ``forward(x, state=None) -> (out, new_state)``: ``x`` is one step's input current
    ``[B, *shape]``; ``state`` is ``None`` at the first step (the model's own initial
    state is used) or what the previous call returned. Parameters may be Python floats
    (one per layer) or tensors broadcastable to the neuron shape (per channel: e.g.
    ``[C, 1, 1]`` for conv feature maps). Trainable parameters are ``nn.Parameter`` in the
    training parametrisation; :meth:`to_nir_node` exports their *effective* values.
    """

    #: nirtorch treats these as leaves of the traced graph.
    _is_leaf_module = True

    def initial_state(self, x: torch.Tensor) -> Any:  # pragma: no cover - abstract
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
