"""Diagnosis: what NIR cannot express in a traced model, each with what to do instead.

Every unsupported layer or operation is collected first, so that one
:class:`~nirbridge.errors.UnsupportedLayerError` lists them all; the texts here are what
users read when a model cannot be exported.
"""

from __future__ import annotations

import operator

from torch import nn
from torch.fx import Node

from nirbridge.errors import ExportError, UnsupportedLayerError
from nirbridge.export.tables import BATCHNORMS, MAPPED_MODULES, SPIKE_POOLS
from nirbridge.export.trace import Shape, TracedModel, op_label, op_name, user_frame, where
from nirbridge.geometry import as_ints, conv_geometry_of
from nirbridge.layers import SumPool2d
from nirbridge.neurons import NeuronModule

# ------------------------------------------------------------------------------ hints
_SUPPORTED = (
    "supported layers are Linear, Conv1d, Conv2d, AvgPool2d, nirbridge.layers.SumPool2d, "
    "AdaptiveAvgPool2d to a size dividing its input's, MaxPool2d of a spiking neuron's "
    "spikes, Flatten, BatchNorm1d/2d right after a "
    "Linear/Conv (folded), Dropout and Identity (removed) and nirbridge neuron modules, "
    "joined by additions (x + y)"
)
_ACTIVATION_HINT = (
    "NIR layers pass spikes or currents, not activations: replace it with a spiking neuron "
    "module (nirbridge.neurons, e.g. LIF or IF); apply softmax/argmax readouts outside "
    "the model"
)
_MAXPOOL_HINT = (
    "NIR has no max pooling; nirbridge exports nn.MaxPool2d of a spiking neuron's spikes "
    "only (as SumPool2d then Threshold): otherwise replace it with nn.AvgPool2d or "
    "nirbridge.layers.SumPool2d (same kernel_size and stride) and fine-tune"
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


# ---------------------------------------------------------------------- reporting
class Problems:
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


def _own_forward(mod: nn.Module, bases: tuple[type[nn.Module], ...]) -> type[nn.Module] | None:
    """The base class of ``mod`` in ``bases`` whose forward it runs unchanged, else None."""
    for base in bases:
        if isinstance(mod, base) and type(mod).forward is base.forward:
            return base
    return None


def module_hint(mod: nn.Module) -> str:
    """What to do about a module that has no NIR node."""
    for types, hint in _MODULE_HINTS:
        if isinstance(mod, types):
            return hint
    if isinstance(mod, (*MAPPED_MODULES, *BATCHNORMS)):
        return (f"it subclasses {type(mod).__mro__[1].__name__} with its own forward, whose "
                "meaning nirbridge cannot know; use the torch class itself")
    return f"it has no NIR equivalent; {_SUPPORTED}"


# ----------------------------------------------------------------- what NIR expresses
def check_graph(traced: TracedModel) -> None:
    """Raise listing every node of the cleaned graph that has no NIR equivalent."""
    problems = Problems()
    _check_hidden_reuse(traced, problems)
    for n in traced.graph.nodes:
        if n.op in ("placeholder", "output"):
            continue
        if n.op == "get_attr":
            problems.add(f"{n.target} (tensor used in forward{where(n)})",
                         "tensors used directly in forward have no NIR node; put the "
                         "operation in a layer (e.g. a Linear/Conv bias)")
        elif n.op == "call_module":
            _check_module(traced, n, problems)
        elif n.op == "call_function" and n.target is operator.add:
            a, b = n.args[0], n.args[1]
            if not (isinstance(a, Node) and isinstance(b, Node)) or n.kwargs:
                problems.add(op_label(n), "only the sum of two tensors is exportable (no "
                             "constants, no alpha); fold constants into a layer's bias")
            elif a is b:
                problems.add(op_label(n), "adds a tensor to itself (x + x); NIR sums "
                             "each edge once: scale the weights of a layer instead")
        elif n.op == "call_function" and n.target is operator.getitem:
            _check_getitem(traced, n, problems)
        else:
            name = op_name(n)
            if name in ("add", "add_", "iadd", "__add__", "__iadd__", "__radd__"):
                hint = ("only the sum of two tensors is exportable (no constants, no "
                        "alpha); fold constants into a layer's bias")
            else:
                hint = _FUNCTION_HINTS.get(name, _ADD_ONLY_HINT)
            problems.add(op_label(n), hint)
    problems.raise_if_any()


def _check_hidden_reuse(traced: TracedModel, problems: Problems) -> None:
    """A neuron keeping its state inside may be called once per step: two calls share one
    state in torch, while every call is its own population in NIR (and in any SNN)."""
    calls: dict[str, list[Node]] = {}
    for n in traced.graph.nodes:
        if n.op == "call_module":
            mod = traced.module(n)
            if isinstance(mod, NeuronModule) and not getattr(mod, "returns_state", True):
                calls.setdefault(str(n.target), []).append(n)
    for nodes in calls.values():
        if len(nodes) < 2:
            continue
        frames = [user_frame(n.stack_trace or "") for n in nodes]
        sites = f" (at {', '.join(frames)})" if all(frames) else ""
        problems.add(traced.label(nodes[0]), (
            f"this neuron keeps its state inside and is called {len(nodes)} times per "
            f"step{sites}: in torch the calls update one shared state, while NIR makes "
            "each call its own population with its own state, so the graph would not "
            "compute the model. Give each call its own neuron module "
            "(nirbridge.neurons.swap_activations does, e.g. for torchvision's BasicBlock, "
            "which calls self.relu twice)"))


def _check_module(traced: TracedModel, n: Node, problems: Problems) -> None:
    mod = traced.module(n)
    label = traced.label(n)
    if isinstance(mod, NeuronModule):
        if not getattr(mod, "returns_state", True):  # a stand-in keeping its state inside
            return
        for user in n.users:
            if not (user.op == "call_function" and user.target is operator.getitem):
                problems.add(label, "its (spikes, state) output is used as a whole; "
                             "unpack it: spikes, state = neuron(x, state) (in a "
                             "sequence use nirbridge.neurons.StatefulSequential); to use "
                             "a neuron as a plain module (y = neuron(x), e.g. in place of "
                             "nn.ReLU) wrap it: nirbridge.neurons.HiddenNeuron(LIF()), or "
                             "nirbridge.neurons.swap_activations(model, LIF)")
        return
    if _own_forward(mod, (*MAPPED_MODULES, *BATCHNORMS)) is None:
        problems.add(label, module_hint(mod))
        return
    if len(n.args) != 1 or n.kwargs or not isinstance(n.args[0], Node):
        problems.add(label, "it must be called on one tensor only")
        return
    if isinstance(mod, BATCHNORMS):
        reason = _fold_blocker(traced, n, mod)
        if reason:
            problems.add(label, reason)
    elif isinstance(mod, SPIKE_POOLS):
        for reason in _maxpool_blockers(traced, n, mod):
            problems.add(label, reason)


def adaptive_window(mod: nn.AdaptiveAvgPool2d, in_shape: Shape) -> tuple[int, int] | None:
    """The kernel (= stride) of the AvgPool2d equal to ``mod`` on ``[C, H, W]`` inputs,
    or None when H or W is not a multiple of the output size (torch's adaptive windows
    then differ in size or overlap, which no AvgPool2d expresses)."""
    size = mod.output_size
    out = (size, size) if isinstance(size, int) else tuple(size)
    window = []
    for have, want in zip(in_shape[-2:], out, strict=True):
        want = have if want is None else int(want)
        if want < 1 or have % want:
            return None
        window.append(have // want)
    return window[0], window[1]


# ------------------------------------------------------------------- max pooling
def spike_source(traced: TracedModel, n: Node) -> Node | None:
    """The neuron call whose spikes are the input of the layer at ``n``, through layers
    that keep values 0/1 (Flatten, max pooling of spikes); None when the input is anything
    else (the network input, a synapse, a sum...). Whether that neuron spikes is its NIR
    node's to say (:func:`nirbridge.neurons.spec_of`), known once it is converted."""
    cur = n.args[0] if n.args else None
    while isinstance(cur, Node):
        if cur.op == "call_function" and cur.target is operator.getitem:
            src = cur.args[0]
            if (cur.args[1] == 0 and isinstance(src, Node) and src.op == "call_module"
                    and isinstance(traced.module(src), NeuronModule)
                    and getattr(traced.module(src), "returns_state", True)):
                return src
            return None
        if cur.op != "call_module" or len(cur.args) != 1:
            return None
        mod = traced.module(cur)
        if isinstance(mod, NeuronModule):  # a stand-in returning its output only
            return None if getattr(mod, "returns_state", True) else cur
        if _own_forward(mod, (nn.Flatten, *SPIKE_POOLS)) is None:
            return None
        cur = cur.args[0]
    return None


def graded_maxpool_reason(source: str) -> str:
    """Why a MaxPool2d whose input is ``source`` (e.g. 'features.0 (Conv2d)') is refused."""
    return (f"its input ({source}) is not binary spikes, and the max of graded values has "
            "no NIR node: nirbridge exports MaxPool2d only on a spiking neuron's 0/1 spikes "
            "(as SumPool2d then Threshold, the OR of each window). Pool after the neuron "
            "(e.g. Conv2d -> LIF -> MaxPool2d), or use nn.AvgPool2d or "
            "nirbridge.layers.SumPool2d (same kernel_size and stride) and fine-tune")


def _maxpool_blockers(traced: TracedModel, n: Node, mod: nn.Module) -> list[str]:
    """Why the max pooling at ``n`` cannot be exported exactly (empty: it can)."""
    reasons = []
    if as_ints(mod.dilation, 2, "dilation") != (1, 1):
        reasons.append(f"dilation={mod.dilation}; NIR's SumPool2d has no dilation: use "
                       "dilation=1")
    if mod.ceil_mode:
        reasons.append("ceil_mode=True adds windows past the input's edge, which NIR's "
                       "SumPool2d (floor) does not have: use ceil_mode=False")
    if mod.return_indices:
        reasons.append("return_indices=True returns the positions of the maxima, which "
                       "have no NIR node: use return_indices=False")
    if spike_source(traced, n) is None:
        arg = n.args[0]
        source = "the network input" if arg.op == "placeholder" else traced.label(arg)
        reasons.append(graded_maxpool_reason(source))
    return reasons


def _fold_blocker(traced: TracedModel, n: Node, bn: nn.Module) -> str | None:
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
    syn = traced.module(prev)
    ok = (isinstance(bn, nn.BatchNorm2d) and _own_forward(syn, (nn.Conv2d,))) or (
        isinstance(bn, nn.BatchNorm1d) and _own_forward(syn, (nn.Conv1d, nn.Linear))
    )
    if not ok:
        return f"its input comes from {traced.label(prev)}, not a Linear/Conv; {fix}"
    if len(prev.users) != 1:
        return (f"the output of {traced.label(prev)} is also used without the "
                f"batch-norm; {fix}")
    return None


def _check_getitem(traced: TracedModel, n: Node, problems: Problems) -> None:
    src, index = n.args[0], n.args[1]
    if (isinstance(src, Node) and src.op == "call_module"
            and isinstance(traced.module(src), NeuronModule)):
        if index != 0:
            problems.add(f"state of {traced.label(src)}{where(n)}",
                         "a neuron's state is used to compute the output; NIR neurons "
                         "emit spikes only: use the spikes (or an LI neuron for a "
                         "membrane readout)")
        return
    problems.add(op_label(n), _FUNCTION_HINTS["getitem"])


def check_layer_settings(traced: TracedModel, batch: int) -> None:
    """Raise listing every layer setting NIR cannot express exactly (needs the shapes),
    then check that every layer keeps the ``batch`` dimension first."""
    problems = Problems()
    for n in traced.graph.nodes:
        if n.op != "call_module":
            continue
        mod, label, shape = traced.module(n), traced.label(n), traced.in_shape(n)
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
            if conv_geometry_of(mod).explicit_padding() is None:
                problems.add(label, "padding='same' with an even kernel pads unevenly; "
                             "NIR needs symmetric padding: use an odd kernel or integers")
        elif isinstance(mod, nn.AvgPool2d):
            if mod.ceil_mode or not mod.count_include_pad or mod.divisor_override:
                problems.add(label, "NIR's AvgPool2d is exact only with "
                             "count_include_pad=True, ceil_mode=False and no "
                             "divisor_override: set those (or use SumPool2d)")
            if len(shape) != 3:
                problems.add(label, f"its input has shape {shape}; NIR pools [C, H, W]")
        elif isinstance(mod, nn.AdaptiveAvgPool2d):
            if len(shape) != 3:
                problems.add(label, f"its input has shape {shape}; NIR pools [C, H, W]")
            elif adaptive_window(mod, shape) is None:
                problems.add(label, (
                    f"output_size={mod.output_size} on a {shape[1]}x{shape[2]} input: the "
                    "input size is not a multiple of the output size, so torch's adaptive "
                    "windows differ in size or overlap, and NIR's AvgPool2d (one window "
                    "size, one stride) cannot compute it; give the model an input whose "
                    "height and width are multiples of the output size, or use "
                    "nn.AvgPool2d"))
        elif isinstance(mod, (SumPool2d, *SPIKE_POOLS)) and len(shape) != 3:
            problems.add(label, f"its input has shape {shape}; NIR pools [C, H, W]")
        elif isinstance(mod, nn.Flatten):
            nd = len(shape) + 1
            if mod.start_dim % nd == 0:
                problems.add(label, "it flattens the batch dimension; use start_dim=1")
    problems.raise_if_any()
    for n, shape in traced.shapes.items():
        if n.op == "call_module" and (not shape or shape[0] != batch):
            raise ExportError(
                f"{traced.label(n)} returns shape {shape}, which does not keep the "
                f"batch dimension {batch} of sample_input first"
            )


__all__ = ["Problems", "adaptive_window", "check_graph", "check_layer_settings",
           "graded_maxpool_reason", "module_hint", "spike_source"]
