"""Neurons used as plain modules: ``y = neuron(x)``, the state kept inside between calls
(like snnTorch's ``init_hidden=True``), so that a neuron can stand where an activation
stands in an existing network (torchvision's ``nn.ReLU``).

:class:`HiddenNeuron` wraps any :class:`~nirbridge.neurons.NeuronModule`;
:func:`swap_activations` puts one in place of every activation *call* of a model (a
module that calls the same ``nn.ReLU`` twice, as torchvision's ResNet blocks do, gets one
neuron per call: a stateful neuron called twice would be one state shared by two
populations); :func:`reset_hidden` clears the states before a new sample.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import nir
import torch
import torch.fx
from torch import nn

from nirbridge.errors import ExportError
from nirbridge.neurons._base import NeuronModule


class HiddenNeuron(NeuronModule):
    """``neuron`` called as ``y = module(x)``: each call is one time step, the state is
    kept in :attr:`state` between calls (``None``: the neuron's initial state, again after
    :meth:`reset`). It exports as ``neuron`` does; to_nir starts it from its initial state
    whatever :attr:`state` holds (as NIR starts every neuron)."""

    #: ``forward`` returns the output only (the exporter's convention for neurons whose
    #: state lives inside).
    returns_state = False

    def __init__(self, neuron: NeuronModule) -> None:
        super().__init__()
        if not isinstance(neuron, NeuronModule):
            raise ExportError(f"HiddenNeuron wraps a nirbridge neuron module, not a "
                              f"{type(neuron).__name__}")
        self.neuron = neuron
        #: The state after the last call (None before the first).
        self.state: Any = None
        #: The node name's stem in the exported graph (e.g. ``lif``).
        self.export_name = type(neuron).__name__

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out, self.state = self.neuron(x, self.state)
        return out

    def reset(self) -> None:
        """Forget the state: the next call starts from the neuron's initial state."""
        self.state = None

    def initial_state(self, x: torch.Tensor) -> Any:
        return self.neuron.initial_state(x)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        return self.neuron.to_nir_node(shape, dt)

    def extra_repr(self) -> str:
        return "state kept inside between calls"


def reset_hidden(model: nn.Module) -> None:
    """:meth:`HiddenNeuron.reset` every hidden-state neuron of ``model``."""
    for m in model.modules():
        if isinstance(m, HiddenNeuron):
            m.reset()


def swap_activations(model: nn.Module, make_neuron: Callable[[], NeuronModule],
                     types: tuple[type[nn.Module], ...] = (nn.ReLU,)) -> torch.fx.GraphModule:
    """A copy of ``model`` with every call of a module of ``types`` replaced by its own
    ``HiddenNeuron(make_neuron())``.

    The copy is ``model``'s torch.fx graph (``torch.fx.symbolic_trace``; ``model`` must
    be traceable) holding deep copies of its layers; ``model`` is not changed. One neuron
    per *call*: torchvision's ``BasicBlock`` calls ``self.relu`` twice, and gets
    ``relu`` and ``relu_1``, two populations with their own states (the same stateful
    module called twice would share one state between them, which no SNN or NIR graph
    expresses; :func:`nirbridge.to_nir` refuses it). Call :func:`reset_hidden` on the
    result before each new sample.
    """
    copied = copy.deepcopy(model)
    try:
        gm = torch.fx.symbolic_trace(copied)
    except Exception as exc:
        raise ExportError(
            f"swap_activations: torch.fx could not trace {type(model).__name__} "
            f"({type(exc).__name__}: {exc}); replace its activations by hand with "
            "HiddenNeuron(...) modules, one per call") from exc
    used: dict[str, int] = {}
    calls = [node for node in gm.graph.nodes
             if node.op == "call_module" and isinstance(gm.get_submodule(node.target), types)]
    for node in calls:
        k = used.get(node.target, 0)
        used[node.target] = k + 1
        name = node.target if k == 0 else f"{node.target}_{k}"
        while k and _has_submodule(gm, name):
            k += 1
            name = f"{node.target}_{k}"
        gm.add_submodule(name, HiddenNeuron(make_neuron()))
        node.target = name
    if not used:
        raise ExportError(f"swap_activations: {type(model).__name__} calls no "
                          f"{' or '.join(t.__name__ for t in types)} module")
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _has_submodule(gm: nn.Module, name: str) -> bool:
    try:
        gm.get_submodule(name)
    except AttributeError:
        return False
    return True


__all__ = ["HiddenNeuron", "reset_hidden", "swap_activations"]
