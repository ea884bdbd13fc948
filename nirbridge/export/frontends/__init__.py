"""Front-ends: models built with another framework's neurons (snnTorch, Norse,
SpikingJelly, Sinabs) export through :func:`nirbridge.to_nir` like nirbridge's own.

Before tracing, :func:`adapt_model` walks the (copied) model and hands every module that
belongs to a known framework to that framework's front-end module (``FRONTENDS``: top-level
package name → front-end module, imported only when the model holds such a module, so the
framework stays an optional dependency). A front-end returns a stand-in — a nirbridge
:class:`~nirbridge.neurons.NeuronModule` computing exactly the framework's step and
exporting the node that is exactly equal (a standard NIR node where one exists, else a
registered custom node) — or a plain torch layer for a framework's wrapper of one, or
``None`` to look inside the module. A module it cannot export raises
:class:`~nirbridge.errors.UnsupportedLayerError` naming the module, the framework and the
route that works.

Stand-ins of modules that keep their state inside (snnTorch ``init_hidden=True``,
SpikingJelly nodes, Sinabs layers: ``forward(x)`` returns the output only) are wrapped in
:class:`HiddenState`, whose output is the neuron's output itself; stand-ins of modules
called as ``out, state = neuron(x, state)`` (Norse cells, snnTorch without
``init_hidden``) are the neuron modules themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import nir
import torch
from torch import nn

from nirbridge.errors import UnsupportedLayerError
from nirbridge.neurons import NeuronModule

#: Top-level package of a framework → the nirbridge module holding its front-end: a module
#: with ``FRAMEWORK`` (its name), ``ROUTE`` (what works for a module it cannot export),
#: ``DT`` (the dt its own NIR exporter writes with, or None), ``adapt(module, name)`` (the
#: direct route, see the module docstring) and ``from_file(graph)`` (the file route: the
#: graph its own exporter wrote → the exact nirbridge form of the framework's reading of
#: it, with a list of notes saying what was changed).
FRONTENDS: dict[str, str] = {
    "snntorch": "nirbridge.export.frontends.snntorch",
    "norse": "nirbridge.export.frontends.norse",
    "spikingjelly": "nirbridge.export.frontends.spikingjelly",
    "sinabs": "nirbridge.export.frontends.sinabs",
    "rockpool": "nirbridge.export.frontends.rockpool",
}

#: ``adapt(module, name) -> replacement | None`` of one front-end module.
Adapter = Callable[[nn.Module, str], nn.Module | None]


class HiddenState(NeuronModule):
    """A neuron whose framework module keeps its state inside: ``forward(x)`` returns the
    output only (one step from the initial state, which is all tracing needs); it exports
    as the wrapped neuron."""

    returns_state = False

    def __init__(self, neuron: NeuronModule, name: str | None = None) -> None:
        super().__init__()
        self.neuron = neuron
        #: The node name's stem in the exported graph (the framework class, e.g. ``IAF``).
        self.export_name = name or type(neuron).__name__

    def forward(self, x: torch.Tensor, state: Any = None) -> torch.Tensor:  # type: ignore[override]
        return self.neuron(x, state)[0]

    def initial_state(self, x: torch.Tensor) -> Any:
        return self.neuron.initial_state(x)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        return self.neuron.to_nir_node(shape, dt)

    def extra_repr(self) -> str:
        return "state kept inside, as the framework's module did"


def framework_of(module: nn.Module) -> str | None:
    """The top-level package that defines ``module``'s class, when it has a front-end."""
    top = type(module).__module__.partition(".")[0]
    return top if top in FRONTENDS else None


def frontend(framework: str) -> Any:
    """The front-end module of ``framework`` (a key of :data:`FRONTENDS`)."""
    if framework not in FRONTENDS:
        raise UnsupportedLayerError(f"no front-end for framework {framework!r}; known: "
                                    f"{', '.join(sorted(FRONTENDS))}")
    return importlib.import_module(FRONTENDS[framework])


def _adapt(module: nn.Module, name: str) -> nn.Module | None:
    framework = framework_of(module)
    if framework is None or isinstance(module, NeuronModule):
        return None
    fe = frontend(framework)
    return fe.adapt(module, name)


def adapt_model(model: nn.Module) -> nn.Module:
    """``model`` with every framework module replaced by its stand-in (in place: call it on
    a copy); the model itself when it is one framework module."""
    top = _adapt(model, "")
    if top is not None:
        return top
    _adapt_children(model, "")
    return model


def _adapt_children(parent: nn.Module, prefix: str) -> None:
    for name, child in list(parent.named_children()):
        path = f"{prefix}{name}"
        new = _adapt(child, path)
        if new is None:
            _adapt_children(child, f"{path}.")
        else:
            parent._modules[name] = new


def unsupported(module: nn.Module, name: str, framework: str, route: str,
                why: str = "") -> UnsupportedLayerError:
    """The error for a framework module no front-end exports: names the module, the
    framework and the route that works."""
    where = f"{name} ({type(module).__name__})" if name else type(module).__name__
    detail = f": {why}" if why else ""
    return UnsupportedLayerError(
        f"cannot export {where}, a {framework} module, with nirbridge.to_nir{detail}; "
        f"{route}")


__all__ = ["FRONTENDS", "HiddenState", "adapt_model", "framework_of", "frontend", "unsupported"]
