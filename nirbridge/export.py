"""Export a trained single-step PyTorch spiking network to a NIR graph.

:func:`to_nir` traces the model with torch.fx (through nirtorch's tracer, nirbridge neuron
modules being leaves), cleans the traced graph (drops eval no-ops, folds batch-norm into
the preceding synapse, rejects what NIR cannot express with a message naming the layer),
measures every layer's shapes on one sample step, and hands the graph to
``nirtorch.torch_to_nir`` with nirbridge's own module map.

Conventions of the graph it returns:

- Node names are the modules' qualified names with ``.`` replaced by ``_`` (``fc1``,
  ``features_3``, ``block1_conv1``); children of ``nn.Sequential`` (names that start with a
  digit) are prefixed with their class (``linear_0``, ``lif_1``); a module called twice
  gets ``_1``, ``_2`` suffixes; a ``torch.flatten`` call is named after its fx node
  (``flatten``). The graph's input and output nodes are ``input`` and ``output``.
- Shapes carry no batch dimension. ``nir.Flatten``'s ``start_dim``/``end_dim`` index the
  batch-free shape: torch ``Flatten(start_dim=1, end_dim=-1)`` becomes NIR
  ``start_dim=0, end_dim=-1``.
- Weights and every parameter are float64 arrays; batch-norm is folded in float64.
- Residual sums (``x + y``, ``torch.add``) become several edges into the same node
  (NIR sums the incoming edges).
- ``graph.metadata`` holds ``dt``, ``time_unit = "step"``, ``source`` and the
  ``nirbridge_version``.
"""

from __future__ import annotations

import copy
import inspect
import logging
import operator
import os
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nir
import nirtorch
import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from nirtorch import torch_to_nir
from nirtorch.torch_tracer import NIRTorchTracer
from torch import nn
from torch.fx import Node
from torch.nn.modules.utils import _pair
from torch.nn.utils.fusion import fuse_conv_bn_weights

import nirbridge
from nirbridge.errors import (
    ExportError,
    InputError,
    InvalidParameterError,
    NirbridgeError,
    UnsupportedLayerError,
)
from nirbridge.layers import SumPool2d
from nirbridge.neurons.base import NeuronModule

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- tables
#: Layers removed from the graph: no-ops at inference (eval mode).
NOOP_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
#: Synapses a batch-norm can be folded into.
SYNAPSES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
BATCHNORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)
#: Layers with a NIR node (besides :class:`NeuronModule` subclasses).
MAPPED_MODULES: tuple[type[nn.Module], ...] = (*SYNAPSES, nn.AvgPool2d, SumPool2d, nn.Flatten)

_DROPOUT_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                      F.feature_alpha_dropout)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add, torch.Tensor.add, torch.Tensor.add_)
_ADD_METHODS = ("add", "add_", "__add__", "__iadd__", "__radd__")
_NOOP_METHODS = ("contiguous",)

_SUPPORTED = (
    "supported layers are Linear, Conv1d, Conv2d, AvgPool2d, nirbridge.layers.SumPool2d, "
    "Flatten, BatchNorm1d/2d right after a Linear/Conv (folded), Dropout and Identity "
    "(removed) and nirbridge neuron modules, joined by additions (x + y)"
)
_ACTIVATION_HINT = (
    "NIR layers pass spikes or currents, not activations: replace it with a spiking neuron "
    "module (nirbridge.neurons, e.g. LIF or IF); apply softmax/argmax readouts outside "
    "the model"
)
_MAXPOOL_HINT = (
    "NIR has no max pooling: replace it with nn.AvgPool2d or nirbridge.layers.SumPool2d "
    "(same kernel_size and stride) and fine-tune"
)
_ADD_ONLY_HINT = (
    "the only operation between layers that NIR expresses is the sum of tensors "
    "(x + y, torch.add); do everything else with layers"
)
_RESHAPE_HINT = (
    "reshape with nn.Flatten(start_dim=1) (or torch.flatten(x, 1)); other reshapes and "
    "permutations have no NIR node"
)
_MODULE_HINTS: tuple[tuple[tuple[type[nn.Module], ...], str], ...] = (
    ((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
      nn.AdaptiveMaxPool3d), _MAXPOOL_HINT),
    ((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
     "replace it with nn.AvgPool2d whose kernel_size and stride match your input size"),
    ((nn.AvgPool1d, nn.AvgPool3d, nn.LPPool1d, nn.LPPool2d),
     "NIR defines 2-d pooling only: use nn.AvgPool2d or nirbridge.layers.SumPool2d"),
    ((nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
     "NIR defines Conv1d and Conv2d only"),
    ((nn.RNNBase, nn.RNNCellBase),
     "NIR has no analog recurrent cells: build the recurrence from spiking neurons "
     "(nirbridge.neurons) instead"),
    ((nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
      nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish,
      nn.Softplus, nn.Softsign, nn.Softmax, nn.LogSoftmax, nn.Threshold, nn.LogSigmoid),
     _ACTIVATION_HINT),
    ((nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
      nn.LocalResponseNorm, nn.BatchNorm3d),
     "only BatchNorm1d/2d right after a Linear/Conv can be folded into its weights: remove "
     "this normalization or fold it into the weights yourself"),
    ((nn.Unflatten,), _RESHAPE_HINT),
)
_FUNCTION_HINTS: dict[str, str] = {
    **dict.fromkeys(("cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack"),
                    "NIR has no concatenation: merge the branches by addition (x + y) or "
                    "give them one layer"),
    **dict.fromkeys(("relu", "relu_", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu",
                     "silu", "mish", "sigmoid", "tanh", "hardtanh", "hardsigmoid",
                     "hardswish", "softplus", "softmax", "log_softmax", "threshold"),
                    _ACTIVATION_HINT),
    **dict.fromkeys(("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
                     "adaptive_max_pool1d", "adaptive_max_pool2d", "boolean_dispatch"),
                    _MAXPOOL_HINT),
    **dict.fromkeys(("avg_pool2d", "linear", "conv1d", "conv2d", "batch_norm"),
                    "use the module form (nn.AvgPool2d, nn.Linear, nn.Conv1d, nn.Conv2d, "
                    "nn.BatchNorm2d) so that it is a layer of the graph"),
    **dict.fromkeys(("view", "reshape", "size", "squeeze", "unsqueeze", "permute",
                     "transpose", "flatten", "expand", "repeat"), _RESHAPE_HINT),
    "getitem": "indexing or slicing a tensor has no NIR node",
    "getattr": "reading attributes (e.g. of a neuron state) inside forward has no NIR node; "
               "return states as the neuron modules give them",
}


@dataclass
class _Layer:
    """What the module map needs to know about one call site."""

    name: str  # node name in the NIR graph
    label: str  # for messages: "features.3 (Conv2d)"
    in_shape: tuple[int, ...]  # without batch
    out_shape: tuple[int, ...]


class _Problems:
    """Collects every unsupported construct so that one error lists them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, what: str, why: str) -> None:
        entry = f"{what}: {why}"
        if entry not in self.items:
            self.items.append(entry)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            raise UnsupportedLayerError(f"cannot export {self.items[0]}")
        lines = "\n".join(f"  - {item}" for item in self.items)
        raise UnsupportedLayerError(
            f"cannot export {len(self.items)} layers/operations of the model:\n{lines}"
        )


class _Tracer(NIRTorchTracer):
    """nirtorch's tracer that also remembers which module it was tracing when it failed."""

    def __init__(self) -> None:
        super().__init__(custom_leaf_modules=(*MAPPED_MODULES, *BATCHNORMS, *NOOP_MODULES,
                                              NeuronModule))
        self.record_stack_traces = True
        self._stack: list[str] = []
        self.failed_in: str | None = None

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        try:
            name = self.path_of_module(m)
        except NameError:
            name = "?"
        self._stack.append(f"{name or '<model>'} ({type(m).__name__})")
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self._stack[-1]
            raise
        finally:
            self._stack.pop()


class _LeafRoot(nn.Module):
    """Wraps a model that is itself a single layer so that it can be traced."""

    def __init__(self, name: str, module: nn.Module) -> None:
        super().__init__()
        self.add_module(name, module)
        self._leaf_name = name

    def forward(self, x: torch.Tensor) -> Any:
        return getattr(self, self._leaf_name)(x)


class _ShapeRecorder(torch.fx.Interpreter):
    """Runs the traced graph once and records each node's output shape (batch included)."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[Node, tuple[int, ...]] = {}
        self.current: Node | None = None

    def run_node(self, n: Node) -> Any:
        self.current = n
        result = super().run_node(n)
        value = result[0] if isinstance(result, tuple) and result else result
        if torch.is_tensor(value):
            self.shapes[n] = tuple(int(d) for d in value.shape)
        return result


# ----------------------------------------------------------------------------- helpers
def _type_name(t: Any) -> str:
    return t.__name__ if isinstance(t, type) else str(t).rsplit(".", 1)[-1]


def _where(node: Node) -> str:
    """' in block1 (ResBlock) at model.py:27' for messages about a traced operation."""
    text = ""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, mtype = list(stack.values())[-1]
        if path:
            text += f" in {path} ({_type_name(mtype)})"
    frame = _user_frame(node.stack_trace or "")
    if frame:
        text += f" at {frame}"
    return text


_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (torch, nirtorch)
)


def _user_frame(stack_trace: str) -> str:
    """'model.py:27' for the innermost frame of ``stack_trace`` outside torch and nirtorch."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', stack_trace)
    for path, line in reversed(frames):
        full = os.path.abspath(path)
        if not full.startswith(_LIBRARY_DIRS) and full != os.path.abspath(__file__):
            return f"{os.path.basename(path)}:{line}"
    return ""


def _op_name(node: Node) -> str:
    """Short name of a call_function/call_method target (for hints)."""
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


def _op_label(node: Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}(){_where(node)}"
    target = node.target
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    if module == "_operator":
        module = "operator"
    prefix = f"{module}." if module else ""
    return f"{prefix}{name}{_where(node)}"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()


def _finite(label: str, name: str, arr: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(f"{label}: {name} contains NaN or inf values")
    return arr


def _own_forward(mod: nn.Module, bases: tuple[type[nn.Module], ...]) -> type[nn.Module] | None:
    """The base class of ``mod`` in ``bases`` whose forward it runs unchanged, else None."""
    for base in bases:
        if isinstance(mod, base) and type(mod).forward is base.forward:
            return base
    return None


def _module_hint(mod: nn.Module) -> str:
    for types, hint in _MODULE_HINTS:
        if isinstance(mod, types):
            return hint
    if isinstance(mod, (*MAPPED_MODULES, *BATCHNORMS)):
        return (f"it subclasses {type(mod).__mro__[1].__name__} with its own forward, whose "
                "meaning nirbridge cannot know; use the torch class itself")
    return f"it has no NIR equivalent; {_SUPPORTED}"


def _conv_padding(mod: nn.Conv1d | nn.Conv2d) -> tuple[int, ...] | None:
    """Explicit symmetric padding of a conv, or None when torch pads asymmetrically."""
    nd = len(mod.kernel_size)
    if mod.padding == "valid":
        return (0,) * nd
    if mod.padding == "same":
        total = [d * (k - 1) for d, k in zip(mod.dilation, mod.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            return None
        return tuple(t // 2 for t in total)
    return tuple(int(p) for p in mod.padding)


def _check_dt(dt: float) -> float:
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"dt={dt!r} is not a number; give the time step") from None
    if not np.isfinite(value) or value <= 0:
        raise InvalidParameterError(f"dt={dt!r}; the time step must be finite and > 0")
    return value


# ----------------------------------------------------------------------------- exporter
class _Exporter:
    def __init__(self, model: nn.Module, sample_input: torch.Tensor, dt: float) -> None:
        self.sample = sample_input
        self.dt = dt
        try:
            self.model = copy.deepcopy(model)
        except Exception as exc:
            raise ExportError(
                f"cannot copy the model to export it ({type(exc).__name__}: {exc}); "
                "to_nir never changes the model it is given, so it must be deep-copyable"
            ) from exc
        self.model.eval()
        self.overrides: dict[Node, nn.Module] = {}  # folded synapses, converted flattens
        self.labels: dict[Node, str] = {}
        self.names: dict[Node, str] = {}
        self.shapes: dict[Node, tuple[int, ...]] = {}
        self._graph: torch.fx.Graph | None = None
        self._order: dict[str, int] = {}  # NIR node name -> position in the traced graph

    # --- 1. trace
    def trace(self) -> torch.fx.GraphModule:
        tracer = _Tracer()
        root = self.model
        if tracer.is_leaf_module(root, ""):
            root = _LeafRoot(type(root).__name__.lower(), root)
        concrete = self._concrete_args(root)
        try:
            graph = tracer.trace(root, concrete_args=concrete or None)
        except NirbridgeError:
            raise
        except Exception as exc:
            where = tracer.failed_in or f"{type(root).__name__}.forward"
            frame = _user_frame("".join(traceback.format_tb(exc.__traceback__)))
            where += f" at {frame}" if frame else ""
            raise ExportError(
                f"torch.fx could not trace {where}: {type(exc).__name__}: {_first_line(exc)}. "
                "The model must be traceable by torch.fx: no Python control flow on tensor "
                "values, no .item()/len() of traced tensors, and neuron states passed as given "
                "(None at the first step)"
            ) from exc
        gm = torch.fx.GraphModule(tracer.root, graph)
        gm.eval()
        return gm

    @staticmethod
    def _concrete_args(root: nn.Module) -> dict[str, Any]:
        params = list(inspect.signature(root.forward).parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not params or params[0].kind not in positional:
            raise ExportError(
                f"{type(root).__name__}.forward must take the input tensor as its first "
                "argument"
            )
        concrete: dict[str, Any] = {}
        for p in params[1:]:
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            if p.default is not inspect.Parameter.empty:
                concrete[p.name] = p.default
            elif p.name == "state":
                concrete[p.name] = None
            else:
                raise ExportError(
                    f"{type(root).__name__}.forward requires argument '{p.name}' besides the "
                    "input; to_nir calls model(x) or model(x, state=None): give it a default"
                )
        return concrete

    def module(self, gm: torch.fx.GraphModule, node: Node) -> nn.Module:
        if node in self.overrides:
            return self.overrides[node]
        return gm.get_submodule(str(node.target))

    def label(self, gm: torch.fx.GraphModule, node: Node) -> str:
        if node in self.labels:
            return self.labels[node]
        if node.op == "call_module":
            return f"{node.target} ({type(self.module(gm, node)).__name__})"
        return _op_label(node)

    # --- 2. clean the graph
    def clean(self, gm: torch.fx.GraphModule) -> None:
        g = gm.graph
        placeholders = [n for n in g.nodes if n.op == "placeholder"]
        for n in list(g.nodes):
            if n.op == "call_function" and _op_name(n) == "_assert_is_none":
                g.erase_node(n)
        for p in placeholders[1:]:
            if p.users:
                raise ExportError(
                    f"forward argument '{p.target}' is used in the computation; to_nir "
                    "feeds the input tensor only (and state=None)"
                )
            g.erase_node(p)
        self._select_signal_output(gm)
        self._detach_neuron_states(gm)
        self._normalize_ops(gm)
        g.eliminate_dead_code()
        if not placeholders[0].users:
            raise ExportError("the model's output does not depend on its input")
        if not any(n.op == "call_module" for n in g.nodes):
            raise ExportError("the model has no layers to export")

    def _select_signal_output(self, gm: torch.fx.GraphModule) -> None:
        g = gm.graph
        out = next(n for n in g.nodes if n.op == "output")
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
        if value.op == "call_module" and isinstance(self.module(gm, value), NeuronModule):
            with g.inserting_after(value):
                value = g.call_function(operator.getitem, (value, 0))
        out.args = (value,)

    def _detach_neuron_states(self, gm: torch.fx.GraphModule) -> None:
        """Neuron calls keep their input current only: NIR starts every neuron from its
        own initial state, which is what the model does with ``state=None``."""
        for n in gm.graph.nodes:
            if n.op != "call_module" or not isinstance(self.module(gm, n), NeuronModule):
                continue
            values = list(n.args) + list(n.kwargs.values())
            if not values:
                continue
            signal, extra = values[0], values[1:]
            if any(isinstance(a, Node) for e in extra for a in _nodes_in(e)):
                logger.warning(
                    "%s: the state given to this neuron at the first step is computed in "
                    "forward; the NIR graph starts it from the neuron's own initial state",
                    self.label(gm, n),
                )
            n.args = (signal,)
            n.kwargs = {}

    def _normalize_ops(self, gm: torch.fx.GraphModule) -> None:
        g = gm.graph
        for n in list(g.nodes):
            if n.op == "call_module":
                mod = self.module(gm, n)
                if type(mod) in NOOP_MODULES and n.args:
                    logger.debug("removing %s (no-op at inference)", self.label(gm, n))
                    n.replace_all_uses_with(n.args[0])
                    g.erase_node(n)
            elif n.op == "call_function" and n.target in _DROPOUT_FUNCTIONS:
                training = n.kwargs.get("training", n.args[2] if len(n.args) > 2 else True)
                if training is False and n.args:
                    n.replace_all_uses_with(n.args[0])
                    g.erase_node(n)
            elif n.op == "call_method" and n.target in _NOOP_METHODS and n.args:
                n.replace_all_uses_with(n.args[0])
                g.erase_node(n)
            elif (n.op == "call_function" and n.target in _ADD_FUNCTIONS) or (
                n.op == "call_method" and n.target in _ADD_METHODS
            ):
                self._normalize_add(g, n)
            elif (n.op == "call_function" and n.target is torch.flatten) or (
                n.op == "call_method" and n.target == "flatten"
            ):
                self._flatten_to_module(gm, n)

    @staticmethod
    def _normalize_add(g: torch.fx.Graph, n: Node) -> None:
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

    def _flatten_to_module(self, gm: torch.fx.GraphModule, n: Node) -> None:
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
        self.names[new] = n.name
        self.labels[new] = f"{n.name} ({_op_label(n)})"
        n.replace_all_uses_with(new)
        gm.graph.erase_node(n)

    # --- 3. check what NIR can express
    def check(self, gm: torch.fx.GraphModule) -> None:
        problems = _Problems()
        for n in gm.graph.nodes:
            if n.op in ("placeholder", "output"):
                continue
            if n.op == "get_attr":
                problems.add(f"{n.target} (tensor used in forward{_where(n)})",
                             "tensors used directly in forward have no NIR node; put the "
                             "operation in a layer (e.g. a Linear/Conv bias)")
            elif n.op == "call_module":
                self._check_module(gm, n, problems)
            elif n.op == "call_function" and n.target is operator.add:
                a, b = n.args[0], n.args[1]
                if not (isinstance(a, Node) and isinstance(b, Node)) or n.kwargs:
                    problems.add(_op_label(n), "only the sum of two tensors is exportable (no "
                                 "constants, no alpha); fold constants into a layer's bias")
                elif a is b:
                    problems.add(_op_label(n), "adds a tensor to itself (x + x); NIR sums "
                                 "each edge once: scale the weights of a layer instead")
            elif n.op == "call_function" and n.target is operator.getitem:
                self._check_getitem(gm, n, problems)
            else:
                what = _op_label(n)
                name = _op_name(n)
                if name in ("add", "add_", "iadd", "__add__", "__iadd__", "__radd__"):
                    hint = ("only the sum of two tensors is exportable (no constants, no "
                            "alpha); fold constants into a layer's bias")
                else:
                    hint = _FUNCTION_HINTS.get(name, _ADD_ONLY_HINT)
                problems.add(what, hint)
        problems.raise_if_any()

    def _check_module(self, gm: torch.fx.GraphModule, n: Node, problems: _Problems) -> None:
        mod = self.module(gm, n)
        label = self.label(gm, n)
        if isinstance(mod, NeuronModule):
            for user in n.users:
                if not (user.op == "call_function" and user.target is operator.getitem):
                    problems.add(label, "its (spikes, state) output is used as a whole; "
                                 "unpack it: spikes, state = neuron(x, state) (in a "
                                 "sequence use nirbridge.neurons.StatefulSequential)")
            return
        if _own_forward(mod, (*MAPPED_MODULES, *BATCHNORMS)) is None:
            problems.add(label, _module_hint(mod))
            return
        if len(n.args) != 1 or n.kwargs or not isinstance(n.args[0], Node):
            problems.add(label, "it must be called on one tensor only")
            return
        if isinstance(mod, BATCHNORMS):
            reason = self._fold_blocker(gm, n, mod)
            if reason:
                problems.add(label, reason)

    def _fold_blocker(self, gm: torch.fx.GraphModule, n: Node, bn: nn.Module) -> str | None:
        """Why the batch-norm at ``n`` cannot be folded, or None when it can."""
        fix = ("place BatchNorm directly after the Linear/Conv whose output it normalizes "
               "(and use that output nowhere else), or fold it into the weights yourself")
        if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
            return ("it has no running statistics (track_running_stats=False), so it "
                    "normalizes with batch statistics at inference; NIR cannot express "
                    "that: train with track_running_stats=True")
        prev = n.args[0]
        if prev.op != "call_module":
            return f"its input is not a Linear/Conv layer; {fix}"
        syn = self.module(gm, prev)
        ok = (isinstance(bn, nn.BatchNorm2d) and _own_forward(syn, (nn.Conv2d,))) or (
            isinstance(bn, nn.BatchNorm1d) and _own_forward(syn, (nn.Conv1d, nn.Linear))
        )
        if not ok:
            return f"its input comes from {self.label(gm, prev)}, not a Linear/Conv; {fix}"
        if len(prev.users) != 1:
            return (f"the output of {self.label(gm, prev)} is also used without the "
                    f"batch-norm; {fix}")
        return None

    def _check_getitem(self, gm: torch.fx.GraphModule, n: Node, problems: _Problems) -> None:
        src, index = n.args[0], n.args[1]
        if (isinstance(src, Node) and src.op == "call_module"
                and isinstance(self.module(gm, src), NeuronModule)):
            if index != 0:
                problems.add(f"state of {self.label(gm, src)}{_where(n)}",
                             "a neuron's state is used to compute the output; NIR neurons "
                             "emit spikes only: use the spikes (or an LI neuron for a "
                             "membrane readout)")
            return
        problems.add(_op_label(n), _FUNCTION_HINTS["getitem"])

    # --- 4. shapes
    def infer_shapes(self, gm: torch.fx.GraphModule) -> None:
        gm.recompile()
        recorder = _ShapeRecorder(gm)
        try:
            with torch.no_grad():
                recorder.run(self.sample)
        except NirbridgeError:
            raise
        except Exception as exc:
            where = ""
            if recorder.current is not None and recorder.current.op != "placeholder":
                where = f" at {self.label(gm, recorder.current)}"
            raise ExportError(
                f"running the model on sample_input of shape {tuple(self.sample.shape)} "
                f"failed{where}: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        self.shapes = recorder.shapes

    def in_shape(self, n: Node) -> tuple[int, ...]:
        return self.shapes[n.args[0]][1:]

    def out_shape(self, n: Node) -> tuple[int, ...]:
        return self.shapes[n][1:]

    def check_configs(self, gm: torch.fx.GraphModule) -> None:
        """Layer settings NIR cannot express exactly (needs the shapes)."""
        problems = _Problems()
        for n in gm.graph.nodes:
            if n.op != "call_module":
                continue
            mod, label, shape = self.module(gm, n), self.label(gm, n), self.in_shape(n)
            if isinstance(mod, nn.Linear) and len(shape) != 1:
                problems.add(label, f"its input has shape {shape} (without batch); NIR's "
                             "Affine/Linear act on vectors: put nn.Flatten before it")
            elif isinstance(mod, (nn.Conv1d, nn.Conv2d)):
                nd = 1 if isinstance(mod, nn.Conv1d) else 2
                if len(shape) != nd + 1:
                    problems.add(label, f"its input has shape {shape} without batch; give "
                                 "sample_input with a batch dimension first")
                if mod.padding_mode != "zeros":
                    problems.add(label, f"padding_mode={mod.padding_mode!r}; NIR convolutions "
                                 "pad with zeros: use padding_mode='zeros'")
                if _conv_padding(mod) is None:
                    problems.add(label, "padding='same' with an even kernel pads unevenly; "
                                 "NIR needs symmetric padding: use an odd kernel or integers")
            elif isinstance(mod, nn.AvgPool2d):
                if mod.ceil_mode or not mod.count_include_pad or mod.divisor_override:
                    problems.add(label, "NIR's AvgPool2d is exact only with "
                                 "count_include_pad=True, ceil_mode=False and no "
                                 "divisor_override: set those (or use SumPool2d)")
                if len(shape) != 3:
                    problems.add(label, f"its input has shape {shape}; NIR pools [C, H, W]")
            elif isinstance(mod, SumPool2d) and len(shape) != 3:
                problems.add(label, f"its input has shape {shape}; NIR pools [C, H, W]")
            elif isinstance(mod, nn.Flatten):
                nd = len(shape) + 1
                if mod.start_dim % nd == 0:
                    problems.add(label, "it flattens the batch dimension; use start_dim=1")
        problems.raise_if_any()
        batch = int(self.sample.shape[0])
        for n, shape in self.shapes.items():
            if n.op == "call_module" and (not shape or shape[0] != batch):
                raise ExportError(
                    f"{self.label(gm, n)} returns shape {shape}, which does not keep the "
                    f"batch dimension {batch} of sample_input first"
                )

    # --- 5. fold batch-norm
    def fold_batchnorms(self, gm: torch.fx.GraphModule) -> None:
        g = gm.graph
        for n in list(g.nodes):
            if n.op != "call_module":
                continue
            bn = self.module(gm, n)
            if not isinstance(bn, BATCHNORMS):
                continue
            prev = n.args[0]
            syn64 = copy.deepcopy(self.module(gm, prev)).to(torch.float64)
            bn64 = copy.deepcopy(bn).to(torch.float64)
            weight, bias = fuse_conv_bn_weights(
                syn64.weight, syn64.bias, bn64.running_mean, bn64.running_var, bn64.eps,
                bn64.weight, bn64.bias,
            )
            syn64.weight, syn64.bias = weight, bias
            self.overrides[prev] = syn64
            logger.info("folded %s into %s", self.label(gm, n), self.label(gm, prev))
            n.replace_all_uses_with(prev)
            g.erase_node(n)

    # --- 6. convert with nirtorch
    def _readable(self, gm: torch.fx.GraphModule, n: Node) -> str:
        if n in self.names:
            return self.names[n]
        base = str(n.target).replace(".", "_")
        if not base or base[0].isdigit():
            base = f"{type(self.module(gm, n)).__name__.lower()}_{base}".rstrip("_")
        return base

    def convert(self, gm: torch.fx.GraphModule) -> nir.NIRGraph:
        g = gm.graph
        root = nn.Module()
        layers: dict[int, _Layer] = {}
        used = {"input", "output"}
        calls = [n for n in g.nodes if n.op == "call_module"]
        for i, n in enumerate(calls):
            mod = self.module(gm, n)
            if id(mod) in layers:  # called twice: one NIR node per call
                mod = copy.copy(mod)
            base = name = self._readable(gm, n)
            k = 0
            while name in used:
                k += 1
                name = f"{base}_{k}"
            used.add(name)
            self._order[name] = i
            layers[id(mod)] = _Layer(name, self.label(gm, n), self.in_shape(n),
                                     self.out_shape(n))
            root.add_module(f"m{i}", mod)
            n.target = f"m{i}"
        self.overrides.clear()
        flat = torch.fx.GraphModule(root, g)

        made: dict[int, str] = {}

        def convert_one(mod: nn.Module) -> nir.NIRNode:
            layer = layers[id(mod)]
            try:
                node = self._to_node(mod, layer)
            except NirbridgeError as exc:
                raise type(exc)(f"{layer.label}: {exc}") from exc
            except Exception as exc:
                raise ExportError(
                    f"{layer.label}: conversion to NIR failed: {type(exc).__name__}: {exc}"
                ) from exc
            made[id(node)] = layer.name
            return node

        module_map = {type(m): convert_one for m in root.children()}
        stateful = {type(m) for m in root.children() if isinstance(m, NeuronModule)}
        try:
            raw = torch_to_nir(flat, module_map, default_dict=None, type_check=False,
                               stateful_modules=stateful)
        except NirbridgeError:
            raise
        except Exception as exc:
            names = ", ".join(layer.label for layer in layers.values())
            raise ExportError(
                f"nirtorch could not convert the traced graph of [{names}]: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return self._finish(raw, made, len(calls))

    def _to_node(self, mod: nn.Module, layer: _Layer) -> nir.NIRNode:
        label, shape = layer.label, layer.in_shape
        if isinstance(mod, NeuronModule):
            return mod.to_nir_node(tuple(shape), self.dt)
        if isinstance(mod, nn.Linear):
            weight = _finite(label, "weight", _np(mod.weight))
            if mod.bias is None:
                node: nir.NIRNode = nir.Linear(weight=weight)
            else:
                node = nir.Affine(weight=weight, bias=_finite(label, "bias", _np(mod.bias)))
        elif isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            weight = _finite(label, "weight", _np(mod.weight))
            bias = (np.zeros(mod.out_channels) if mod.bias is None
                    else _finite(label, "bias", _np(mod.bias)))
            padding = _conv_padding(mod)
            assert padding is not None  # checked in check_configs
            if isinstance(mod, nn.Conv1d):
                node = nir.Conv1d(input_shape=int(shape[1]), weight=weight,
                                  stride=int(mod.stride[0]), padding=int(padding[0]),
                                  dilation=int(mod.dilation[0]), groups=int(mod.groups),
                                  bias=bias)
            else:
                node = nir.Conv2d(input_shape=(int(shape[1]), int(shape[2])), weight=weight,
                                  stride=tuple(int(s) for s in mod.stride),
                                  padding=tuple(int(p) for p in padding),
                                  dilation=tuple(int(d) for d in mod.dilation),
                                  groups=int(mod.groups), bias=bias)
        elif isinstance(mod, (nn.AvgPool2d, SumPool2d)):
            kernel = _pair(mod.kernel_size)
            stride = _pair(mod.stride if mod.stride is not None else mod.kernel_size)
            cls = nir.AvgPool2d if isinstance(mod, nn.AvgPool2d) else nir.SumPool2d
            node = cls(kernel_size=np.array(kernel, dtype=np.int64),
                       stride=np.array(stride, dtype=np.int64),
                       padding=np.array(_pair(mod.padding), dtype=np.int64))
        elif isinstance(mod, nn.Flatten):
            nd = len(shape) + 1
            start, end = mod.start_dim % nd, mod.end_dim % nd
            node = nir.Flatten(input_type={"input": np.array(shape, dtype=np.int64)},
                               start_dim=start - 1, end_dim=-1 if end == nd - 1 else end - 1)
        else:  # pragma: no cover - excluded by check()
            raise UnsupportedLayerError(f"{label}: {_module_hint(mod)}")
        node.input_type = {"input": np.array(shape, dtype=np.int64)}
        node.output_type = {"output": np.array(layer.out_shape, dtype=np.int64)}
        return node

    def _finish(self, raw: nir.NIRGraph, made: dict[int, str], n_layers: int) -> nir.NIRGraph:
        in_shape = np.array(self.sample.shape[1:], dtype=np.int64)
        assert self._graph is not None
        out_node = next(n for n in self._graph.nodes if n.op == "output")
        out_shape = np.array(self.shapes[out_node.args[0]][1:], dtype=np.int64)
        nodes: dict[str, nir.NIRNode] = {}
        rename: dict[str, str] = {}
        for old, node in raw.nodes.items():
            if isinstance(node, nir.Input):
                new, node = "input", nir.Input(input_type=in_shape)
            elif isinstance(node, nir.Output):
                new, node = "output", nir.Output(output_type=out_shape)
            elif id(node) in made:
                new = made[id(node)]
            else:
                raise ExportError(f"nirtorch produced an unexpected node '{old}' "
                                  f"({type(node).__name__})")
            if new in nodes:
                raise ExportError(f"two nodes named '{new}' (the model has several inputs "
                                  "or outputs?); to_nir exports one input and one output")
            rename[old] = new
            nodes[new] = node
        if len(nodes) != n_layers + 2:
            raise ExportError(f"nirtorch returned {len(nodes) - 2} layer nodes for "
                              f"{n_layers} traced layers")
        # nirtorch collects the users of a sum in a set: sort for a deterministic graph
        order = {"input": -1, **self._order, "output": len(self._order)}
        edges = sorted(((rename[a], rename[b]) for a, b in raw.edges),
                       key=lambda e: (order[e[0]], order[e[1]]))
        seen: set[tuple[str, str]] = set()
        for edge in edges:
            if edge in seen:
                raise UnsupportedLayerError(
                    f"cannot export: the output of '{edge[0]}' reaches '{edge[1]}' twice "
                    "through additions (e.g. x + x); NIR sums each edge once: scale the "
                    "weights of a layer instead"
                )
            seen.add(edge)
        metadata = {
            "dt": self.dt,
            "nirbridge_version": nirbridge.__version__,
            "source": "nirbridge.export",
            "time_unit": "step",
        }
        graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)
        try:
            graph.check_types()
        except ValueError as exc:
            raise ExportError(f"the exported graph has inconsistent shapes: {exc}") from exc
        return graph

    def run(self) -> nir.NIRGraph:
        gm = self.trace()
        self._graph = gm.graph
        self.clean(gm)
        self.check(gm)
        self.infer_shapes(gm)
        self.check_configs(gm)
        self.fold_batchnorms(gm)
        return self.convert(gm)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _nodes_in(value: Any) -> list[Node]:
    found: list[Node] = []
    torch.fx.node.map_arg(value, lambda n: found.append(n) or n)
    return found


# ----------------------------------------------------------------------------- public API
def to_nir(model: nn.Module, sample_input: torch.Tensor, dt: float = 1.0) -> nir.NIRGraph:
    """Export a single-step spiking network to a NIR graph.

    Args:
        model: the trained network; ``model(x)`` or ``model(x, state)`` runs one time step
            and returns ``out`` or ``(out, state)`` (state ``None`` at the first step).
            Neurons are :class:`nirbridge.neurons.base.NeuronModule` instances; synapses are
            ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``; also ``nn.AvgPool2d``,
            :class:`nirbridge.layers.SumPool2d`, ``nn.Flatten``, batch-norm right after a
            synapse (folded), dropout and identity (removed), and sums of tensors. The model
            is deep-copied and never changed.
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
    return _Exporter(model, sample_input, _check_dt(dt)).run()


__all__ = ["BATCHNORMS", "MAPPED_MODULES", "NOOP_MODULES", "SYNAPSES", "to_nir"]
