"""Conversion: each layer of the cleaned, checked graph becomes one NIR node, and the graph
becomes a ``nir.NIRGraph`` (through ``nirtorch.torch_to_nir`` with nirbridge's module map).

Neurons convert themselves (:meth:`NeuronModule.to_nir_node`); every other mapped torch
layer has one converter in :data:`CONVERTERS`, found through the layer's class hierarchy
(a subclass that keeps its base's ``forward`` converts as its base).

Max pooling of spikes is the one layer that becomes two NIR nodes. Before nirtorch runs,
a :class:`WindowOr` layer is inserted in the traced graph after every ``nn.MaxPool2d``
(whose input the diagnosis found to be a neuron's output); the MaxPool2d converts to
``nir.SumPool2d`` (its window count) and the WindowOr to ``nir.Threshold(0.5)``, so that
nirtorch still makes one node per module and the naming and edges need nothing special:
``pool`` and ``pool_threshold``. Once the neurons are converted, the neuron feeding each
max pooling must be a spiking one (its node's registry entry): max of 0/1 values = (count
> 0.5), padding included (torch pads max pooling with −inf, NIR's SumPool2d with 0: both
leave the max of a window holding at least one real 0/1 value unchanged).

A recurrent layer (:class:`nirbridge.layers.Recurrent` and the front-ends' recurrent
stand-ins) converts to a ``nir.NIRGraph`` subgraph (``input → neuron ⇄ w_rec → output``),
still one node per module for nirtorch; :func:`_finish` flattens it into nodes
``<layer>.neuron``, ``<layer>.w_rec`` (:func:`nirbridge.graph.flatten_subgraphs`) and folds
a bias that snnTorch adds at t = 0 into the Linear before the layer
(:func:`fold_start_biases`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import nir
import numpy as np
import torch
import torch.fx
from nirtorch import torch_to_nir
from torch import nn
from torch.fx import Node

from nirbridge._version import __version__
from nirbridge.errors import (
    ExportError,
    InvalidParameterError,
    NirbridgeError,
    UnsupportedLayerError,
)
from nirbridge.export.diagnosis import (
    Problems,
    adaptive_window,
    graded_maxpool_reason,
    module_hint,
    spike_source,
)
from nirbridge.export.tables import SPIKE_POOLS
from nirbridge.export.trace import Shape, TracedModel
from nirbridge.geometry import conv_geometry_of, pool_geometry_of
from nirbridge.graph import flatten_subgraphs, has_subgraphs, predecessors, successors
from nirbridge.layers import SumPool2d
from nirbridge.neurons import NeuronModule, spec_of


@dataclass
class Layer:
    """What a converter needs to know about one call site."""

    name: str  # node name in the NIR graph
    label: str  # for messages: "features.3 (Conv2d)"
    in_shape: Shape  # without batch
    out_shape: Shape


# -------------------------------------------------------------------------- converters
def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()


def _finite(label: str, name: str, arr: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(f"{label}: {name} contains NaN or inf values")
    return arr


def _linear(mod: nn.Linear, layer: Layer) -> nir.NIRNode:
    weight = _finite(layer.label, "weight", _np(mod.weight))
    if mod.bias is None:
        return nir.Linear(weight=weight)
    return nir.Affine(weight=weight, bias=_finite(layer.label, "bias", _np(mod.bias)))


def _conv(mod: nn.Conv1d | nn.Conv2d, layer: Layer) -> nir.NIRNode:
    weight = _finite(layer.label, "weight", _np(mod.weight))
    bias = (np.zeros(mod.out_channels) if mod.bias is None
            else _finite(layer.label, "bias", _np(mod.bias)))
    geometry = conv_geometry_of(mod)
    padding = geometry.explicit_padding()
    assert padding is not None  # uneven 'same' is rejected by check_layer_settings
    shape = layer.in_shape
    if isinstance(mod, nn.Conv1d):  # NIR's Conv1d holds plain ints
        return nir.Conv1d(input_shape=int(shape[1]), weight=weight,
                          stride=geometry.stride[0], padding=padding[0],
                          dilation=geometry.dilation[0], groups=geometry.groups, bias=bias)
    return nir.Conv2d(input_shape=(int(shape[1]), int(shape[2])), weight=weight,
                      stride=geometry.stride, padding=padding, dilation=geometry.dilation,
                      groups=geometry.groups, bias=bias)


def _pool(cls: type[nir.AvgPool2d] | type[nir.SumPool2d]
          ) -> Callable[[nn.Module, Layer], nir.NIRNode]:
    def convert(mod: nn.Module, layer: Layer) -> nir.NIRNode:
        kernel, stride, padding = pool_geometry_of(mod)
        return cls(kernel_size=np.array(kernel, dtype=np.int64),
                   stride=np.array(stride, dtype=np.int64),
                   padding=np.array(padding, dtype=np.int64))

    return convert


def _adaptive(mod: nn.AdaptiveAvgPool2d, layer: Layer) -> nir.NIRNode:
    window = adaptive_window(mod, layer.in_shape)
    assert window is not None  # check_layer_settings refuses the others
    return nir.AvgPool2d(kernel_size=np.array(window, dtype=np.int64),
                         stride=np.array(window, dtype=np.int64),
                         padding=np.zeros(2, dtype=np.int64))


class WindowOr(nn.Module):
    """``x > 0.5``: 1 where a window count of 0/1 spikes holds a spike (the second half of
    a max pooling of spikes; inserted by the exporter, see the module docstring)."""

    #: Counts are whole numbers: any threshold in [0, 1) gives count >= 1; 0.5 is exact.
    threshold = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > self.threshold).to(x.dtype)


def _threshold(mod: WindowOr, layer: Layer) -> nir.NIRNode:
    return nir.Threshold(threshold=np.full(layer.out_shape, mod.threshold, dtype=np.float64))


def _flatten(mod: nn.Flatten, layer: Layer) -> nir.NIRNode:
    # torch's dims count the batch, NIR's do not
    shape = layer.in_shape
    nd = len(shape) + 1
    start, end = mod.start_dim % nd, mod.end_dim % nd
    return nir.Flatten(input_type={"input": np.array(shape, dtype=np.int64)},
                       start_dim=start - 1, end_dim=-1 if end == nd - 1 else end - 1)


Converter = Callable[[nn.Module, Layer], nir.NIRNode]
#: One converter per type of :data:`nirbridge.export.tables.MAPPED_MODULES`.
CONVERTERS: dict[type[nn.Module], Converter] = {
    nn.Linear: _linear,
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.AvgPool2d: _pool(nir.AvgPool2d),
    SumPool2d: _pool(nir.SumPool2d),
    nn.MaxPool2d: _pool(nir.SumPool2d),  # the window count; WindowOr follows it
    nn.AdaptiveAvgPool2d: _adaptive,
    nn.Flatten: _flatten,
}


def layer_to_node(mod: nn.Module, layer: Layer, dt: float) -> nir.NIRNode:
    """The NIR node of one layer, with its input and output types set."""
    if isinstance(mod, NeuronModule):
        return mod.to_nir_node(tuple(layer.in_shape), dt)
    # not a model's layer (the exporter inserts it), so not in CONVERTERS
    converter = _threshold if isinstance(mod, WindowOr) else next(
        (CONVERTERS[c] for c in type(mod).__mro__ if c in CONVERTERS), None)
    if converter is None:  # pragma: no cover - excluded by check_graph
        raise UnsupportedLayerError(f"{layer.label}: {module_hint(mod)}")
    node = converter(mod, layer)
    node.input_type = {"input": np.array(layer.in_shape, dtype=np.int64)}
    node.output_type = {"output": np.array(layer.out_shape, dtype=np.int64)}
    return node


# ------------------------------------------------------------------------------ graph
def _readable(traced: TracedModel, n: Node) -> str:
    """The NIR name of a layer before de-duplication (``fc1``, ``linear_0``)."""
    if n in traced.names:
        return traced.names[n]
    base = str(n.target).replace(".", "_")
    if not base or base[0].isdigit():
        mod = traced.module(n)
        stem = getattr(mod, "export_name", None) or type(mod).__name__
        base = f"{stem.lower()}_{base}".rstrip("_")
    return base


@dataclass
class _SpikePool:
    """A max pooling of spikes, split in two: its label, the neuron call feeding it and
    that call's label."""

    label: str
    source: Node
    source_label: str


def _split_spike_pools(traced: TracedModel) -> list[_SpikePool]:
    """Insert a :class:`WindowOr` after every max pooling (the diagnosis admitted only
    those fed by a neuron), named after the pooling with ``_threshold``."""
    g, gm = traced.graph, traced.gm
    pools = [n for n in g.nodes
             if n.op == "call_module" and isinstance(traced.module(n), SPIKE_POOLS)]
    found = []
    for n in pools:
        source = spike_source(traced, n)
        assert source is not None  # check_graph refuses max pooling of anything else
        found.append(_SpikePool(traced.label(n), source, traced.label(source)))
    for k, n in enumerate(pools):
        target = f"_nirbridge_window_or_{k}"
        gm.add_submodule(target, WindowOr())
        with g.inserting_after(n):
            new = g.call_module(target, (n,))
        n.replace_all_uses_with(new, delete_user_cb=lambda user, new=new: user is not new)
        new.meta = dict(n.meta)
        traced.shapes[new] = traced.shapes[n]
        traced.names[new] = f"{_readable(traced, n)}_threshold"
        traced.labels[new] = f"{traced.label(n)}, its Threshold"
    return found


def _one_module_per_call(traced: TracedModel) -> tuple[nn.Module, dict[int, Layer],
                                                       dict[str, int], dict[Node, str]]:
    """Re-root the graph on a module holding one submodule per call (``m0``, ``m1``...),
    so that nirtorch makes one node per call; the layers by ``id`` of their module, the
    position of each NIR name in the traced graph, and the NIR name of each call."""
    root = nn.Module()
    layers: dict[int, Layer] = {}
    order: dict[str, int] = {}
    names: dict[Node, str] = {}
    used = {"input", "output"}
    calls = [n for n in traced.graph.nodes if n.op == "call_module"]
    for i, n in enumerate(calls):
        mod = traced.module(n)
        if id(mod) in layers:  # called twice: one NIR node per call
            mod = copy.copy(mod)
        base = name = _readable(traced, n)
        k = 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        order[name] = i
        names[n] = name
        layers[id(mod)] = Layer(name, traced.label(n), traced.in_shape(n), traced.out_shape(n))
        root.add_module(f"m{i}", mod)
        n.target = f"m{i}"
    traced.overrides.clear()  # the folded synapses now live in root
    return root, layers, order, names


def _neuron_node(node: nir.NIRNode) -> nir.NIRNode:
    """The neuron of a recurrent layer's subgraph (``neuron``), else the node itself."""
    if isinstance(node, nir.NIRGraph) and "neuron" in node.nodes:
        return node.nodes["neuron"]
    return node


def _check_spike_pools(pools: list[_SpikePool], names: dict[Node, str],
                       nodes: dict[str, nir.NIRNode]) -> None:
    """Raise listing every max pooling whose neuron does not emit spikes."""
    problems = Problems()
    for pool in pools:
        node = _neuron_node(nodes[names[pool.source]])
        spec = spec_of(node)
        if spec is None or not spec.spiking:
            problems.add(pool.label, graded_maxpool_reason(
                f"{pool.source_label}, whose NIR node {type(node).__name__} emits graded "
                "values"))
    problems.raise_if_any()


def convert(traced: TracedModel, in_shape: Shape, dt: float) -> nir.NIRGraph:
    """The NIR graph of the traced model (``in_shape``: the input's shape without batch)."""
    out_shape = traced.shapes[traced.output_node().args[0]][1:]
    pools = _split_spike_pools(traced)
    root, layers, order, call_names = _one_module_per_call(traced)
    flat = torch.fx.GraphModule(root, traced.graph)
    made: dict[int, str] = {}
    by_name: dict[str, nir.NIRNode] = {}

    def convert_one(mod: nn.Module) -> nir.NIRNode:
        layer = layers[id(mod)]
        try:
            node = layer_to_node(mod, layer, dt)
        except NirbridgeError as exc:
            raise type(exc)(f"{layer.label}: {exc}") from exc
        except Exception as exc:
            raise ExportError(
                f"{layer.label}: conversion to NIR failed: {type(exc).__name__}: {exc}"
            ) from exc
        made[id(node)] = layer.name
        by_name[layer.name] = node
        return node

    module_map = {type(m): convert_one for m in root.children()}
    stateful = {type(m) for m in root.children() if isinstance(m, NeuronModule)
                and getattr(m, "returns_state", True)}
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
    _check_spike_pools(pools, call_names, by_name)
    return _finish(raw, made, order, in_shape, out_shape, dt)


def fold_start_biases(graph: nir.NIRGraph) -> nir.NIRGraph:
    """``graph`` with every recurrent layer's feed-forward bias node (``<rec>.bias``,
    ``nir.Affine(I, b)``: a :class:`~nirbridge.layers.Recurrent` with ``bias_at_start``)
    added to the bias of the ``Linear``/``Affine`` feeding it, when that node feeds
    nothing else; such a node is removed and its edges go straight to the neuron.

    The neuron then sees ``W·x + (b_ff + b)`` instead of ``(W·x + b_ff) + b``: the same
    sum associated differently (equal to rounding, ~1e-16 relative in float64)."""
    pred, succ = predecessors(graph), successors(graph)
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    for name, node in graph.nodes.items():
        if not (name.endswith(".bias") and f"{name[:-5]}.neuron" in nodes
                and isinstance(node, nir.Affine) and len(pred[name]) == 1):
            continue
        src = pred[name][0]
        before = nodes[src]
        if len(succ[src]) != 1 or not isinstance(before, (nir.Affine, nir.Linear)) \
                or np.shape(before.weight)[0] != np.shape(node.bias)[0]:
            continue
        old = np.zeros(np.shape(before.weight)[0]) if isinstance(before, nir.Linear) \
            else np.asarray(before.bias, dtype=np.float64)
        merged = nir.Affine(weight=np.asarray(before.weight, dtype=np.float64).copy(),
                            bias=old + np.asarray(node.bias, dtype=np.float64))
        merged.input_type, merged.output_type = before.input_type, before.output_type
        nodes[src] = merged
        del nodes[name]
        edges = [(a, b) for a, b in edges if (a, b) != (src, name)]
        edges = [(src, b) if a == name else (a, b) for a, b in edges]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata, type_check=False)


def _finish(raw: nir.NIRGraph, made: dict[int, str], order: dict[str, int], in_shape: Shape,
            out_shape: Shape, dt: float) -> nir.NIRGraph:
    """nirtorch's graph with nirbridge's node names, sorted edges and metadata."""
    nodes: dict[str, nir.NIRNode] = {}
    rename: dict[str, str] = {}
    for old, node in raw.nodes.items():
        if isinstance(node, nir.Input):
            new, node = "input", nir.Input(input_type=np.array(in_shape, dtype=np.int64))
        elif isinstance(node, nir.Output):
            new, node = "output", nir.Output(output_type=np.array(out_shape, dtype=np.int64))
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
    if len(nodes) != len(order) + 2:
        raise ExportError(f"nirtorch returned {len(nodes) - 2} layer nodes for "
                          f"{len(order)} traced layers")
    # nirtorch collects the users of a sum in a set: sort for a deterministic graph
    position = {"input": -1, **order, "output": len(order)}
    edges = sorted(((rename[a], rename[b]) for a, b in raw.edges),
                   key=lambda e: (position[e[0]], position[e[1]]))
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
        "dt": dt,
        "nirbridge_version": __version__,
        "source": "nirbridge.export",
        "time_unit": "step",
    }
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)
    if has_subgraphs(graph):  # recurrent layers: their neuron and synapse nodes, in place
        graph = fold_start_biases(flatten_subgraphs(graph))
        # flattening appends the outer edges after the inner ones: back in layer order
        # (a stable sort, so the edges into one node keep the order they are summed in)
        graph.edges = sorted(graph.edges, key=lambda e: (position[e[0].split(".")[0]],
                                                         position[e[1].split(".")[0]]))
    try:
        graph.check_types()
    except ValueError as exc:
        raise ExportError(f"the exported graph has inconsistent shapes: {exc}") from exc
    return graph


__all__ = ["CONVERTERS", "Converter", "Layer", "WindowOr", "convert", "fold_start_biases",
           "layer_to_node"]
