"""Torch layers that have an exact NIR form but no ``torch.nn`` counterpart: sum pooling
and a recurrent layer around any nirbridge neuron."""

from __future__ import annotations

from typing import Any, NamedTuple

import nir
import numpy as np
import torch
import torch.nn.functional as F

from nirbridge.errors import InvalidParameterError, UnsupportedLayerError
from nirbridge.geometry import pool_geometry
from nirbridge.neurons._base import NeuronModule, Param, full, to_tensor

IntPair = int | tuple[int, int]


class SumPool2d(torch.nn.Module):
    """2-d sum pooling: the sum of each window, zero padding included (``nir.SumPool2d``).

    Equal to ``AvgPool2d(count_include_pad=True) · kh·kw`` but computed as an exact sum
    (``avg_pool2d`` with ``divisor_override=1``), so float64 results have no division
    round-off. Unlike max pooling, it maps to spikes linearly and runs on neuromorphic
    hardware as a convolution with a ones kernel.

    Args:
        kernel_size: window ``(kh, kw)`` or one int for both.
        stride: step of the window; ``None`` (default) means ``kernel_size``.
        padding: zeros added on each side, at most half the kernel (as in torch).
    """

    #: A leaf of the traced graph (it maps to one NIR node).
    _is_leaf_module = True

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None,
                 padding: IntPair = 0) -> None:
        super().__init__()
        try:
            geometry = pool_geometry(kernel_size, stride, padding)
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"SumPool2d: {exc}") from None
        self.kernel_size: tuple[int, int] = (geometry.kernel_size[0], geometry.kernel_size[1])
        self.stride: tuple[int, int] = (geometry.stride[0], geometry.stride[1])
        self.padding: tuple[int, int] = (geometry.padding[0], geometry.padding[1])
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise InvalidParameterError(
                f"SumPool2d: kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}; kernel and stride must be >= 1, padding >= 0"
            )
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise InvalidParameterError(
                f"SumPool2d: padding={self.padding} exceeds half of kernel_size="
                f"{self.kernel_size}; use padding <= kernel_size // 2"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Window sums of ``x`` ([B, C, H, W] or [C, H, W])."""
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, ceil_mode=False,
                            count_include_pad=True, divisor_override=1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class RecurrentState(NamedTuple):
    """State of a :class:`Recurrent` layer: the wrapped neuron's state and its previous
    output (``None`` before the first step: no recurrent input yet)."""

    neuron: Any
    out: torch.Tensor | None


class Recurrent(NeuronModule):
    """A recurrent layer: any nirbridge neuron whose output feeds back into its own input.

    ``out, state = rec(x, state)`` runs one step of the wrapped neuron on the current

        ``x[t] + W·out[t-1] + b``   (t >= 1),   ``x[0]``   (t = 0)

    which is the reading of a recurrent NIR graph that nirbridge's reference executor, nirtorch
    and Norse share (docs/recurrence.md): the feedback edge carries the previous step's
    value, zero at t = 0, the recurrent bias included. ``bias_at_start=True`` adds ``b`` at
    t = 0 too (``x[0] + b``), snnTorch's ``RLeaky``/``RSynaptic`` convention (their
    ``nn.Linear`` recurrence is applied to zero spikes at the first step).

    Args:
        neuron: the neuron (any :class:`~nirbridge.neurons.NeuronModule`: LIF, CubaLIF,
            AR-LIF, KLIF, DA-LIF, ALIF, a framework stand-in, ...).
        recurrent: the recurrent weights: an ``nn.Linear(n, n)`` for all-to-all recurrence
            (with or without bias; the neuron layer must then be 1-d of size ``n``), or a
            tensor or float for one-to-one recurrence (``w ⊙ out[t-1]``, broadcast to the
            neuron shape: one weight per neuron, per channel or per layer).
        learn: whether one-to-one weights are trained (an ``nn.Parameter``); an
            ``nn.Linear``'s parameters are trained as the module's own.
        bias_at_start: add the recurrent bias at t = 0 as well (snnTorch's convention).

    The state carries the previous output, not detached: surrogate gradients flow through
    the recurrence (backpropagation through time). ``None`` starts from the neuron's own
    initial state with no recurrent input. Usable inside
    :class:`~nirbridge.neurons.StatefulSequential`.

    Export (:func:`nirbridge.to_nir`): a layer named ``rec`` becomes the neuron node
    ``rec.neuron`` and the recurrent synapse ``rec.w_rec`` (``nir.Affine``/``nir.Linear``
    for all-to-all, ``nir.Scale`` for one-to-one) with the feedback edge
    ``rec.w_rec → rec.neuron``. With ``bias_at_start`` the recurrent synapse is written
    without its bias (``nir.Linear``) and the bias goes into the feed-forward path: added
    to the bias of the ``Linear``/``Affine`` feeding the layer when that feeds nothing
    else, else a node ``rec.bias`` (``nir.Affine(I, b)``) before the neuron.
    """

    def __init__(self, neuron: NeuronModule, recurrent: torch.nn.Linear | Param, *,
                 learn: bool = True, bias_at_start: bool = False) -> None:
        super().__init__()
        if not isinstance(neuron, NeuronModule):
            raise InvalidParameterError(
                f"Recurrent: neuron is a {type(neuron).__name__}; wrap a "
                "nirbridge.neurons.NeuronModule")
        self.neuron = neuron
        self.bias_at_start = bool(bias_at_start)
        self.recurrent: torch.nn.Linear | None = None
        if isinstance(recurrent, torch.nn.Linear):
            if recurrent.in_features != recurrent.out_features:
                raise InvalidParameterError(
                    f"Recurrent: the recurrent Linear maps {recurrent.in_features} to "
                    f"{recurrent.out_features} features; it must be square (n -> n)")
            self.recurrent = recurrent
        elif isinstance(recurrent, torch.nn.Module):
            raise InvalidParameterError(
                f"Recurrent: recurrent is a {type(recurrent).__name__}; give an nn.Linear "
                "(all-to-all) or a tensor of weights (one-to-one)")
        else:
            self.add_param("weight", to_tensor(recurrent, "Recurrent.weight"), learn)

    @property
    def one_to_one(self) -> bool:
        """Whether each neuron feeds back only into itself (a weight per neuron)."""
        return self.recurrent is None

    def feedback(self, out: torch.Tensor) -> torch.Tensor:
        """The recurrent input that the output ``out`` of one step gives the next."""
        if self.recurrent is None:
            return out * self.p("weight", out)
        w = self.recurrent.weight.to(out)
        b = None if self.recurrent.bias is None else self.recurrent.bias.to(out)
        return F.linear(out, w, b)

    def _start_bias(self, x: torch.Tensor) -> torch.Tensor | None:
        if not self.bias_at_start or self.recurrent is None or self.recurrent.bias is None:
            return None
        return self.recurrent.bias.to(x)

    def initial_state(self, x: torch.Tensor) -> RecurrentState:
        return RecurrentState(self.neuron.initial_state(x), None)

    def forward(self, x: torch.Tensor, state: RecurrentState | None = None  # type: ignore[override]
                ) -> tuple[torch.Tensor, RecurrentState]:
        inner, prev = (None, None) if state is None else state
        b0 = self._start_bias(x)
        if prev is None:
            current = x if b0 is None else x + b0
        elif b0 is not None:
            # as exported: (x + b) + W·out[t-1], the feed-forward bias first
            assert self.recurrent is not None
            current = (x + b0) + F.linear(prev, self.recurrent.weight.to(prev))
        else:
            current = x + self.feedback(prev)
        out, inner = self.neuron(current, inner)
        return out, RecurrentState(inner, out)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRGraph:
        """The subgraph ``input → neuron ⇄ w_rec``, ``neuron → output`` (see the class
        docstring); the exporter flattens it into the graph."""
        return self.subgraph(shape, dt)

    def subgraph(self, shape: tuple[int, ...], dt: float,
                 input_synapse: nir.NIRNode | None = None) -> nir.NIRGraph:
        """The layer's NIR subgraph for neurons of ``shape`` at ``dt``; ``input_synapse``
        (a synapse node with its types set, output of ``shape``), when given, is node
        ``w_in`` between the subgraph's Input and the neuron (a framework cell that holds
        its input weights, as Norse's ``LIFRecurrentCell``)."""
        shape = tuple(int(d) for d in shape)
        neuron = self.neuron.to_nir_node(shape, dt)
        io = np.array(shape, dtype=np.int64)
        bias_node: nir.NIRNode | None = None
        if self.recurrent is None:
            w_rec: nir.NIRNode = nir.Scale(scale=full(self.weight, shape, "Recurrent.weight"))
        else:
            n = self.recurrent.in_features
            if shape != (n,):
                raise UnsupportedLayerError(
                    f"Recurrent: an all-to-all recurrent Linear({n}, {n}) needs a 1-d neuron "
                    f"layer of {n} neurons, got shape {shape}; flatten before the layer or "
                    "use one-to-one weights")
            weight = _array(self.recurrent.weight, "recurrent weight")
            bias = (None if self.recurrent.bias is None
                    else _array(self.recurrent.bias, "recurrent bias"))
            if bias is None:
                w_rec = nir.Linear(weight=weight)
            elif self.bias_at_start:
                w_rec = nir.Linear(weight=weight)
                bias_node = nir.Affine(weight=np.eye(n), bias=bias)
            else:
                w_rec = nir.Affine(weight=weight, bias=bias)
        for node in (w_rec, bias_node):
            if node is not None:
                node.input_type = {"input": io.copy()}
                node.output_type = {"output": io.copy()}
        chain: list[tuple[str, nir.NIRNode]] = []
        in_type = io
        if input_synapse is not None:
            chain.append(("w_in", input_synapse))
            in_type = np.asarray(input_synapse.input_type["input"], dtype=np.int64)
        if bias_node is not None:
            chain.append(("bias", bias_node))
        nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=in_type)}
        edges: list[tuple[str, str]] = []
        last = "input"
        for name, node in chain:
            nodes[name] = node
            edges.append((last, name))
            last = name
        nodes.update(neuron=neuron, w_rec=w_rec, output=nir.Output(output_type=io))
        edges += [(last, "neuron"), ("neuron", "w_rec"), ("w_rec", "neuron"),
                  ("neuron", "output")]
        return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)

    def extra_repr(self) -> str:
        kind = "one-to-one" if self.recurrent is None else "all-to-all"
        return kind + (", bias at t = 0" if self.bias_at_start else "")


def _array(t: torch.Tensor, name: str) -> np.ndarray:
    arr = t.detach().cpu().to(torch.float64).numpy().copy()
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(f"Recurrent: {name} contains NaN or inf values")
    return arr


__all__ = ["Recurrent", "RecurrentState", "SumPool2d"]
