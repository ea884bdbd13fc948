"""Clean-up of the traced graph before it is checked and converted: keep the signal path
only (no states, no extra inputs), drop eval no-ops, write every sum as ``operator.add``
and every ``torch.flatten`` as an ``nn.Flatten`` layer; later, fold batch-norms into the
synapse before them.
"""

from __future__ import annotations

import copy
import logging
import operator
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.fx import Node
from torch.nn.utils.fusion import fuse_conv_bn_weights

from nirbridge.errors import ExportError
from nirbridge.export.tables import (
    ADD_FUNCTIONS,
    ADD_METHODS,
    BATCHNORMS,
    DROPOUT_FUNCTIONS,
    NOOP_METHODS,
    NOOP_MODULES,
)
from nirbridge.export.trace import TracedModel, op_label, op_name
from nirbridge.neurons import NeuronModule

logger = logging.getLogger("nirbridge.export")


def clean(traced: TracedModel) -> None:
    """Reduce the traced graph to the signal path from the input to the output."""
    g = traced.graph
    placeholders = [n for n in g.nodes if n.op == "placeholder"]
    for n in list(g.nodes):
        if n.op == "call_function" and op_name(n) == "_assert_is_none":
            g.erase_node(n)
    for p in placeholders[1:]:
        if p.users:
            raise ExportError(
                f"forward argument '{p.target}' is used in the computation; to_nir "
                "feeds the input tensor only (and state=None)"
            )
        g.erase_node(p)
    _select_signal_output(traced)
    _detach_neuron_states(traced)
    _normalize_ops(traced)
    g.eliminate_dead_code()
    if not placeholders[0].users:
        raise ExportError("the model's output does not depend on its input")
    if not any(n.op == "call_module" for n in g.nodes):
        raise ExportError("the model has no layers to export")


def _select_signal_output(traced: TracedModel) -> None:
    """``out`` of ``(out, state)``; the spikes of a neuron that is the output itself."""
    g = traced.graph
    out = traced.output_node()
    value = out.args[0]
    if isinstance(value, (tuple, list)):
        if not value:
            raise ExportError("forward returns an empty tuple; return out or (out, state)")
        value = value[0]
    if not isinstance(value, Node):
        raise ExportError(
            f"forward returns {type(value).__name__} as its output; return a tensor "
            "(out) or (out, state)"
        )
    if value.op == "call_module" and isinstance(traced.module(value), NeuronModule) \
            and getattr(traced.module(value), "returns_state", True):
        with g.inserting_after(value):
            value = g.call_function(operator.getitem, (value, 0))
    out.args = (value,)


def _nodes_in(value: Any) -> list[Node]:
    found: list[Node] = []
    torch.fx.node.map_arg(value, lambda n: found.append(n) or n)
    return found


def _detach_neuron_states(traced: TracedModel) -> None:
    """Neuron calls keep their input current only: NIR starts every neuron from its
    own initial state, which is what the model does with ``state=None``."""
    for n in traced.graph.nodes:
        if n.op != "call_module" or not isinstance(traced.module(n), NeuronModule):
            continue
        values = list(n.args) + list(n.kwargs.values())
        if not values:
            continue
        signal, extra = values[0], values[1:]
        if any(isinstance(a, Node) for e in extra for a in _nodes_in(e)):
            logger.warning(
                "%s: the state given to this neuron at the first step is computed in "
                "forward; the NIR graph starts it from the neuron's own initial state",
                traced.label(n),
            )
        n.args = (signal,)
        n.kwargs = {}


def _normalize_ops(traced: TracedModel) -> None:
    g = traced.graph
    for n in list(g.nodes):
        if n.op == "call_module":
            mod = traced.module(n)
            if type(mod) in NOOP_MODULES and n.args:
                logger.debug("removing %s (no-op at inference)", traced.label(n))
                n.replace_all_uses_with(n.args[0])
                g.erase_node(n)
        elif n.op == "call_function" and n.target in DROPOUT_FUNCTIONS:
            training = n.kwargs.get("training", n.args[2] if len(n.args) > 2 else True)
            if training is False and n.args:
                n.replace_all_uses_with(n.args[0])
                g.erase_node(n)
        elif n.op == "call_method" and n.target in NOOP_METHODS and n.args:
            n.replace_all_uses_with(n.args[0])
            g.erase_node(n)
        elif (n.op == "call_function" and n.target in ADD_FUNCTIONS) or (
            n.op == "call_method" and n.target in ADD_METHODS
        ):
            _normalize_add(g, n)
        elif (n.op == "call_function" and n.target is torch.flatten) or (
            n.op == "call_method" and n.target == "flatten"
        ):
            _flatten_to_module(traced, n)


def _normalize_add(g: torch.fx.Graph, n: Node) -> None:
    """``torch.add(x, y)``, ``x.add_(y)``, ``x += y`` → ``operator.add(x, y)``."""
    kwargs = dict(n.kwargs)
    args = list(n.args)
    if "input" in kwargs:
        args.insert(0, kwargs.pop("input"))
    if "other" in kwargs:
        args.insert(1, kwargs.pop("other"))
    alpha = kwargs.pop("alpha", args[2] if len(args) > 2 else 1)
    if kwargs or len(args) < 2 or alpha != 1 or not all(isinstance(a, Node) for a in args[:2]):
        return  # left as is: reported as unsupported
    with g.inserting_before(n):
        new = g.call_function(operator.add, (args[0], args[1]))
    new.meta = dict(n.meta)
    n.replace_all_uses_with(new)
    g.erase_node(n)


def _flatten_to_module(traced: TracedModel, n: Node) -> None:
    """A ``torch.flatten`` call becomes an ``nn.Flatten`` layer named after the call."""
    gm = traced.gm
    args = list(n.args)
    start = args[1] if len(args) > 1 else n.kwargs.get("start_dim", 0)
    end = args[2] if len(args) > 2 else n.kwargs.get("end_dim", -1)
    if not args or not isinstance(args[0], Node) or not all(
        isinstance(v, int) for v in (start, end)
    ):
        return  # left as is: reported as unsupported
    flat = nn.Flatten(start_dim=start, end_dim=end)
    target = f"_nirbridge_{n.name}"
    gm.add_submodule(target, flat)
    with gm.graph.inserting_before(n):
        new = gm.graph.call_module(target, (args[0],))
    new.meta = dict(n.meta)
    traced.names[new] = n.name
    traced.labels[new] = f"{n.name} ({op_label(n)})"
    n.replace_all_uses_with(new)
    gm.graph.erase_node(n)


def fold_batchnorms(traced: TracedModel) -> None:
    """Fold every batch-norm (checked foldable) into a float64 copy of the synapse before
    it, and remove it from the graph."""
    g = traced.graph
    for n in list(g.nodes):
        if n.op != "call_module":
            continue
        bn = traced.module(n)
        if not isinstance(bn, BATCHNORMS):
            continue
        prev = n.args[0]
        syn64 = copy.deepcopy(traced.module(prev)).to(torch.float64)
        bn64 = copy.deepcopy(bn).to(torch.float64)
        weight, bias = fuse_conv_bn_weights(
            syn64.weight, syn64.bias, bn64.running_mean, bn64.running_var, bn64.eps,
            bn64.weight, bn64.bias,
        )
        syn64.weight, syn64.bias = weight, bias
        traced.overrides[prev] = syn64
        logger.info("folded %s into %s", traced.label(n), traced.label(prev))
        n.replace_all_uses_with(prev)
        g.erase_node(n)


__all__ = ["clean", "fold_batchnorms"]
