"""The top-level :func:`to_nir`: checks its arguments, then runs the phases of the export
(trace, clean, diagnose, measure shapes, fold batch-norms, convert) on a copy of the model.
"""

from __future__ import annotations

import copy
import types
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from nirbridge.errors import ExportError, InputError, InvalidParameterError
from nirbridge.export.clean import clean, fold_batchnorms
from nirbridge.export.convert import convert
from nirbridge.export.diagnosis import check_graph, check_layer_settings
from nirbridge.export.frontends import adapt_model
from nirbridge.export.trace import record_shapes, trace
from nirbridge.neurons import reset_hidden


def _check_dt(dt: float) -> float:
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"dt={dt!r} is not a number; give the time step") from None
    if not np.isfinite(value) or value <= 0:
        raise InvalidParameterError(f"dt={dt!r}; the time step must be finite and > 0")
    return value


def _graph_tensors(root: object) -> dict[int, torch.Tensor]:
    """Every tensor reachable from ``root`` that is part of an autograd graph (not a leaf),
    by ``id``: the states a framework neuron keeps after a forward with gradients (snnTorch's
    hidden ``mem``, SpikingJelly's ``v``), which ``copy.deepcopy`` refuses to copy.

    Walks what ``deepcopy`` would reach in a model: modules, the builtin containers and
    the ``__dict__`` of plain objects (classes, functions and modules are copied by
    reference, so they are not entered)."""
    found: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if torch.is_tensor(obj):
            if not obj.is_leaf:
                found[id(obj)] = obj
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif not isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType,
                                  types.MethodType, types.ModuleType, str, bytes)):
            try:
                attrs = vars(obj)
            except TypeError:  # no __dict__ (a number, a slotted object): nothing inside
                continue
            stack.extend(attrs.values())
    return found


def _eval_copy(model: nn.Module) -> nn.Module:
    # A state left by a forward with gradients is copied as its value, detached from the
    # autograd graph (deepcopy refuses such tensors): the export needs values only, and
    # the user's model, graph included, stays as it was. Leaves (parameters, buffers that
    # are leaves) are left to deepcopy, which copies them exactly.
    memo: dict[int, Any] = {i: t.detach().clone() for i, t in _graph_tensors(model).items()}
    try:
        copied = copy.deepcopy(model, memo)
    except Exception as exc:
        hint = ("; a state held from a forward with gradients is in the way: reset the "
                "model's states first (snnTorch: snntorch.utils.reset(net); SpikingJelly: "
                "functional.reset_net(net))" if "graph leaves" in str(exc) else "")
        raise ExportError(
            f"cannot copy the model to export it ({type(exc).__name__}: {exc}); "
            f"to_nir never changes the model it is given, so it must be deep-copyable{hint}"
        ) from exc
    copied.eval()
    # neurons keeping their state inside start the shape run (and NIR) from their initial
    # state, whatever batch the user ran last
    reset_hidden(copied)
    return copied


def to_nir(model: nn.Module, sample_input: torch.Tensor, dt: float = 1.0) -> nir.NIRGraph:
    """Export a single-step spiking network to a NIR graph.

    Args:
        model: the trained network; ``model(x)`` or ``model(x, state)`` runs one time step
            and returns ``out`` or ``(out, state)`` (state ``None`` at the first step).
            Neurons are :class:`nirbridge.neurons.NeuronModule` instances, or the neurons of
            a framework with a front-end (:mod:`nirbridge.export.frontends`); synapses are
            ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``; neurons used as plain modules
            (``y = neuron(x)``: :class:`nirbridge.neurons.HiddenNeuron`,
            :func:`nirbridge.neurons.swap_activations`), each called once per step; also
            ``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d`` on an input whose size is a
            multiple of its output size (an AvgPool2d), ``nn.MaxPool2d`` of spikes,
            :class:`nirbridge.layers.SumPool2d`, ``nn.Flatten``, batch-norm right after a
            synapse (folded), dropout and identity (removed), and sums of tensors; recurrent
            layers (:class:`nirbridge.layers.Recurrent`, snnTorch's ``RLeaky``/``RSynaptic``,
            Norse's ``LIFRecurrentCell``) become their neuron node ``<layer>.neuron`` and
            recurrent synapse ``<layer>.w_rec`` with a feedback edge. The model
            is deep-copied and never changed; states it holds from a forward with
            gradients (snnTorch's ``init_hidden`` ``mem``) are copied as their values.
        sample_input: one step's input batch ``[B, ...]``; the model runs once on it to
            measure every layer's shape.
        dt: the graph's time step (stored in ``graph.metadata["dt"]``, passed to each
            neuron's ``to_nir_node``).

    Returns:
        A ``nir.NIRGraph`` with nodes named after the model's modules, one ``input`` and one
        ``output`` node, and metadata ``dt``, ``time_unit``, ``source``,
        ``nirbridge_version``.

    Raises:
        UnsupportedLayerError: a layer or operation has no NIR equivalent (all of them are
            listed, each with what to do instead).
        ExportError: tracing or converting failed for another reason.
        InputError: ``sample_input`` is not a batched tensor.
        InvalidParameterError: ``dt`` is not positive, or a weight is NaN/inf.
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"model is a {type(model).__name__}, not a torch.nn.Module")
    if not torch.is_tensor(sample_input):
        raise InputError(f"sample_input is a {type(sample_input).__name__}; give one time "
                         "step's input batch as a tensor [B, ...]")
    if sample_input.dim() < 2 or sample_input.shape[0] < 1:
        raise InputError(f"sample_input has shape {tuple(sample_input.shape)}; give one time "
                         "step's input batch [B, ...] (batch dimension first)")
    # Trace in the model's own floating dtype (a float64 model with a float32 sample, or
    # the reverse, is the same network; torch would refuse to mix them).
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None and sample_input.is_floating_point():
        sample_input = sample_input.to(dtype)
    dt = _check_dt(dt)
    traced = trace(adapt_model(_eval_copy(model)))
    clean(traced)
    check_graph(traced)
    record_shapes(traced, sample_input)
    check_layer_settings(traced, int(sample_input.shape[0]))
    fold_batchnorms(traced)
    in_shape = tuple(int(d) for d in sample_input.shape[1:])
    return convert(traced, in_shape, dt)


__all__ = ["to_nir"]
