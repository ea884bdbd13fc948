"""Tracing: the torch.fx graph of a model (nirtorch's tracer, mapped layers and neurons as
leaves), the state every later phase shares, and each layer's shapes on one sample step.

Also where a traced operation came from (``in block1 (ResBlock) at model.py:27``), which
every message about the traced graph uses.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nirtorch
import torch
import torch.fx
from nirtorch.torch_tracer import NIRTorchTracer
from torch import nn
from torch.fx import Node

from nirbridge.errors import ExportError, NirbridgeError
from nirbridge.export.tables import BATCHNORMS, MAPPED_MODULES, NOOP_MODULES
from nirbridge.neurons import NeuronModule

Shape = tuple[int, ...]


# ------------------------------------------------------------------ where things came from
def _type_name(t: Any) -> str:
    return t.__name__ if isinstance(t, type) else str(t).rsplit(".", 1)[-1]


# Frames inside these folders are the machinery, not the user's model: messages point past
# them to the user's own line.
_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (torch, nirtorch)
) + (os.path.dirname(os.path.abspath(__file__)) + os.sep,)


def user_frame(stack_trace: str) -> str:
    """'model.py:27' for the innermost frame of ``stack_trace`` outside torch, nirtorch and
    this package; '' when there is none."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', stack_trace)
    for path, line in reversed(frames):
        if not os.path.abspath(path).startswith(_LIBRARY_DIRS):
            return f"{os.path.basename(path)}:{line}"
    return ""


def caller_frame() -> str:
    """``File "model.py", line 27, in forward`` for the innermost frame of the running
    Python stack outside torch, nirtorch and this package ('' when there is none): what
    :func:`user_frame` finds in a node's stack trace, found by walking the frames.

    torch.fx's own ``record_stack_traces`` symbolizes the whole stack through
    ``torch.utils._traceback``, which imports torch._dynamo and torch._inductor (about
    1.5-10 s at the first export in a process); messages need this one frame only."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not os.path.abspath(path).startswith(_LIBRARY_DIRS):
            return f'File "{path}", line {frame.f_lineno}, in {frame.f_code.co_name}'
        frame = frame.f_back
    return ""


def where(node: Node) -> str:
    """' in block1 (ResBlock) at model.py:27' for messages about a traced operation."""
    text = ""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, mtype = list(stack.values())[-1]
        if path:
            text += f" in {path} ({_type_name(mtype)})"
    frame = user_frame(node.stack_trace or "")
    if frame:
        text += f" at {frame}"
    return text


def op_name(node: Node) -> str:
    """Short name of a call_function/call_method target (for hints)."""
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


def op_label(node: Node) -> str:
    """'torch.cat in block1 (ResBlock) at model.py:27': a traced operation, for messages."""
    if node.op == "call_method":
        return f"Tensor.{node.target}(){where(node)}"
    target = node.target
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    if module == "_operator":
        module = "operator"
    prefix = f"{module}." if module else ""
    return f"{prefix}{name}{where(node)}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------------ shared state
@dataclass
class TracedModel:
    """The traced graph and what the phases of the export learn about its nodes."""

    gm: torch.fx.GraphModule
    #: Replacements of a call's module: folded synapses (float64).
    overrides: dict[Node, nn.Module] = field(default_factory=dict)
    #: Labels and NIR names of nodes that are not the model's own modules (converted
    #: ``torch.flatten`` calls).
    labels: dict[Node, str] = field(default_factory=dict)
    names: dict[Node, str] = field(default_factory=dict)
    #: Output shape of every node that returns a tensor, batch dimension included.
    shapes: dict[Node, Shape] = field(default_factory=dict)

    @property
    def graph(self) -> torch.fx.Graph:
        return self.gm.graph

    def module(self, node: Node) -> nn.Module:
        """The module a call_module node runs (its folded replacement, if any)."""
        if node in self.overrides:
            return self.overrides[node]
        return self.gm.get_submodule(str(node.target))

    def label(self, node: Node) -> str:
        """'features.3 (Conv2d)' for a layer, the operation's label otherwise."""
        if node in self.labels:
            return self.labels[node]
        if node.op == "call_module":
            return f"{node.target} ({type(self.module(node)).__name__})"
        return op_label(node)

    def in_shape(self, node: Node) -> Shape:
        """Shape of the node's (first) input, without batch."""
        return self.shapes[node.args[0]][1:]

    def out_shape(self, node: Node) -> Shape:
        """Shape of the node's output, without batch."""
        return self.shapes[node][1:]

    def output_node(self) -> Node:
        return next(n for n in self.graph.nodes if n.op == "output")


# ---------------------------------------------------------------------------- tracing
class _Tracer(NIRTorchTracer):
    """nirtorch's tracer that also remembers which module it was tracing when it failed."""

    def __init__(self) -> None:
        super().__init__(custom_leaf_modules=(*MAPPED_MODULES, *BATCHNORMS, *NOOP_MODULES,
                                              NeuronModule))
        # the stack frame is recorded by create_node below, not by torch.fx (see
        # caller_frame: torch.fx's recording imports torch._dynamo)
        self.record_stack_traces = False
        self._stack: list[str] = []
        self.failed_in: str | None = None

    def create_node(self, kind: str, target: Any, args: tuple[Any, ...],
                    kwargs: dict[str, Any], name: str | None = None,
                    type_expr: Any | None = None) -> Node:
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if not node.stack_trace:
            node.stack_trace = caller_frame() or None
        return node

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


def _concrete_args(root: nn.Module) -> dict[str, Any]:
    """Values of the forward arguments after the input: their defaults, ``state=None``."""
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


def trace(model: nn.Module) -> TracedModel:
    """The torch.fx graph of ``model`` (an eval-mode copy: tracing may change it)."""
    tracer = _Tracer()
    root = model
    if tracer.is_leaf_module(root, ""):
        root = _LeafRoot(type(root).__name__.lower(), root)
    concrete = _concrete_args(root)
    try:
        graph = tracer.trace(root, concrete_args=concrete or None)
    except NirbridgeError:
        raise
    except Exception as exc:
        location = tracer.failed_in or f"{type(root).__name__}.forward"
        frame = user_frame("".join(traceback.format_tb(exc.__traceback__)))
        location += f" at {frame}" if frame else ""
        raise ExportError(
            f"torch.fx could not trace {location}: {type(exc).__name__}: {first_line(exc)}. "
            "The model must be traceable by torch.fx: no Python control flow on tensor "
            "values, no .item()/len() of traced tensors, and neuron states passed as given "
            "(None at the first step)"
        ) from exc
    gm = torch.fx.GraphModule(tracer.root, graph)
    gm.eval()
    return TracedModel(gm)


# ----------------------------------------------------------------------------- shapes
class _ShapeRecorder(torch.fx.Interpreter):
    """Runs the traced graph once and records each node's output shape (batch included)."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[Node, Shape] = {}
        self.current: Node | None = None

    def run_node(self, n: Node) -> Any:
        self.current = n
        result = super().run_node(n)
        value = result[0] if isinstance(result, tuple) and result else result
        if torch.is_tensor(value):
            self.shapes[n] = tuple(int(d) for d in value.shape)
        return result


def record_shapes(traced: TracedModel, sample: torch.Tensor) -> None:
    """Run the (cleaned) graph on ``sample`` once and store every node's output shape."""
    traced.gm.recompile()
    recorder = _ShapeRecorder(traced.gm)
    try:
        with torch.no_grad():
            recorder.run(sample)
    except NirbridgeError:
        raise
    except Exception as exc:
        location = ""
        if recorder.current is not None and recorder.current.op != "placeholder":
            location = f" at {traced.label(recorder.current)}"
        raise ExportError(
            f"running the model on sample_input of shape {tuple(sample.shape)} "
            f"failed{location}: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    traced.shapes = recorder.shapes


__all__ = ["Shape", "TracedModel", "caller_frame", "first_line", "op_label", "op_name",
           "record_shapes", "trace", "user_frame", "where"]
