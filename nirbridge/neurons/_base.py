"""What every neuron file shares: the spike function, parameter helpers, the trainable
module base, and the base of nirbridge's custom NIR nodes.

A neuron file (``nirbridge/neurons/<name>.py``) builds on these and registers one
:class:`~nirbridge.neurons._registry.NeuronSpec`; nothing here names a neuron.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import nir
import numpy as np
import torch

from nirbridge.errors import InvalidParameterError, MissingParameterError

Tensor = torch.Tensor
COMPARES = (">", ">=")

#: A neuron parameter: one value per layer (float) or a tensor broadcastable to the
#: neuron shape (per channel, e.g. ``[C, 1, 1]`` for conv feature maps, or per neuron).
Param = float | torch.Tensor


# ------------------------------------------------------------------------------ spikes
class SurrogateSpike(torch.autograd.Function):
    """Heaviside step in the forward pass, arctan surrogate gradient in the backward pass.

    The surrogate (Fang et al. 2021, SpikingJelly's ``ATan``) only shapes gradients; the
    forward value is the exact step function with the model's own tie convention.
    """

    @staticmethod
    def forward(ctx, z: Tensor, inclusive: bool, alpha: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.alpha = alpha
        return (z >= 0).to(z.dtype) if inclusive else (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        a = ctx.alpha
        g = a / 2 / (1 + (math.pi / 2 * a * z) ** 2)
        return grad * g, None, None


def check_compare(compare: str) -> str:
    """``compare`` unchanged if it is ``">"`` or ``">="``, else an error."""
    if compare not in COMPARES:
        raise InvalidParameterError(
            f"compare={compare!r} is not a firing convention; use '>' or '>='"
        )
    return compare


def spike(z: Tensor, compare: str, alpha: float = 2.0) -> Tensor:
    """H(z) with the tie at ``z == 0`` decided by ``compare`` (``>=`` fires on the tie).

    It goes through torch's override protocol (``__torch_function__``), so that a tracer
    standing in for ``z`` (the ONNX exporter's, :mod:`nirbridge.export_onnx`) sees
    ``spike(z, compare)`` itself rather than the autograd Function inside it.
    """
    inclusive = check_compare(compare) == ">="
    if torch.overrides.has_torch_function_unary(z):
        return torch.overrides.handle_torch_function(spike, (z,), z, compare, alpha)
    return SurrogateSpike.apply(z, inclusive, alpha)


# -------------------------------------------------------------------------- parameters
def to_tensor(value: Param, name: str = "parameter") -> torch.Tensor:
    """A float or tensor as a detached floating-point tensor (default dtype for numbers).

    Raises :class:`InvalidParameterError` naming ``name`` when it is not numeric or holds
    NaN/inf.
    """
    try:
        if torch.is_tensor(value):
            t = value.detach().clone()
            if not t.is_floating_point():
                t = t.to(torch.get_default_dtype())
        else:
            t = torch.as_tensor(value, dtype=torch.get_default_dtype()).clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidParameterError(f"parameter '{name}' = {value!r} is not numeric") from exc
    if not bool(torch.isfinite(t).all()):
        raise InvalidParameterError(f"parameter '{name}' holds NaN or inf: {value!r}")
    return t


def full(
    value: torch.Tensor | float, shape: tuple[int, ...], name: str = "parameter"
) -> np.ndarray:
    """Effective parameter broadcast to the neuron ``shape`` as float64 (NIR stores arrays).

    Raises :class:`InvalidParameterError` naming ``name`` when it does not broadcast to the
    neuron shape or is not finite.
    """
    if torch.is_tensor(value):
        arr = value.detach().cpu().double().numpy()
    else:
        arr = np.asarray(value, dtype=np.float64)
    shape = tuple(int(d) for d in shape)
    try:
        out = np.array(np.broadcast_to(arr, shape), dtype=np.float64)
    except ValueError as exc:
        raise InvalidParameterError(
            f"parameter '{name}' of shape {np.shape(arr)} does not broadcast to neuron "
            f"shape {shape}"
        ) from exc
    if not np.all(np.isfinite(out)):
        raise InvalidParameterError(f"parameter '{name}' holds NaN or inf")
    return out


def compare_meta(compare: str) -> dict[str, str]:
    """Metadata recording a standard node's firing convention (NIR's own is '>')."""
    return {"compare": check_compare(compare)}


def check_positive(arr: np.ndarray, name: str, owner: str) -> np.ndarray:
    """``arr`` unchanged if every entry is > 0, else an error naming ``owner.name``."""
    if not np.all(arr > 0):
        raise InvalidParameterError(
            f"{owner}: parameter '{name}' must be > 0 for export; got minimum "
            f"{float(np.min(arr))!r}"
        )
    return arr


def dt_scale(dt_graph: float, dt_module: float) -> float:
    """Factor turning a module's time constant into the graph's, keeping ``dt/τ`` fixed."""
    if not (math.isfinite(dt_graph) and dt_graph > 0):
        raise InvalidParameterError(f"graph dt={dt_graph!r} must be a finite number > 0")
    return dt_graph / dt_module


def node_param(node: nir.NIRNode, name: str, dtype: torch.dtype, device: Any = None,
               default: float | None = None) -> torch.Tensor:
    """Parameter ``name`` of a node as a tensor (``default`` where a file omits it)."""
    value = getattr(node, name, None)
    if value is None:
        if default is None:
            raise MissingParameterError(
                f"{type(node).__name__}: parameter '{name}' is missing; give a value")
        value = default
    return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)


def param_reader(node: nir.NIRNode, shape: tuple[int, ...]) -> Callable[[str], np.ndarray]:
    """``p(name)``: parameter ``name`` of ``node`` as a float64 array of the neuron
    ``shape`` (what a quantizer plan rounds)."""
    def p(name: str) -> np.ndarray:
        return np.array(np.broadcast_to(np.asarray(getattr(node, name), np.float64), shape))

    return p


def compare_of(node: nir.NIRNode) -> str:
    """The firing convention of a neuron node: its field, else metadata, else NIR's ``>``."""
    if isinstance(node, CustomNeuron):
        return node.compare
    meta = getattr(node, "metadata", None) or {}
    cmp = meta.get("compare", ">")
    return cmp.decode() if isinstance(cmp, bytes) else str(cmp)


# ------------------------------------------------------------------------ torch module
class NeuronModule(torch.nn.Module):
    """A single-step spiking neuron with explicit state (Norse style).

    ``forward(x, state=None) -> (out, new_state)``: ``x`` is one step's input current
    ``[B, *shape]``; ``state`` is ``None`` at the first step (the model's own initial
    state is used) or what the previous call returned. Parameters may be Python floats
    (one per layer) or tensors broadcastable to the neuron shape (per channel: e.g.
    ``[C, 1, 1]`` for conv feature maps). Trainable parameters are ``nn.Parameter`` in the
    training parametrisation, fixed ones are buffers (so ``.to(device)`` and ``.double()``
    move them); both are cast to the input's dtype and device at every step.
    :meth:`to_nir_node` exports their *effective* values.
    """

    #: nirtorch treats these as leaves of the traced graph.
    _is_leaf_module = True

    def add_param(self, name: str, value: Param, learn: bool = False) -> None:
        """Register ``value`` as ``nn.Parameter`` ``name`` when ``learn``, else as a buffer."""
        t = to_tensor(value, name)
        if learn:
            self.register_parameter(name, torch.nn.Parameter(t))
        else:
            self.register_buffer(name, t)

    def p(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Parameter or buffer ``name`` cast to ``x``'s dtype and device (differentiably)."""
        return getattr(self, name).to(x)

    def initial_state(self, x: torch.Tensor) -> Any:  # pragma: no cover - abstract
        """The state before the first step, for a batch like ``x`` ([B, *shape])."""
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


def example_value(shape: tuple[int, ...], per_channel: bool, lo: float, hi: float) -> Param:
    """An example parameter for the registry's examples: ``lo`` for the whole layer, or
    spread from ``lo`` to ``hi`` over the channels (the first axis of ``shape``)."""
    if not per_channel:
        return lo
    c = shape[0]
    return torch.linspace(lo, hi, c, dtype=torch.float64).reshape(c, *([1] * (len(shape) - 1)))


# ----------------------------------------------------------------------- custom nodes
def as_bool(value: Any) -> bool:
    """A flag read from a file (bytes, str, numpy scalar or bool) as a bool."""
    if isinstance(value, (bytes, str)):
        text = value.decode() if isinstance(value, bytes) else value
        return text.strip().lower() in ("1", "true", "yes")
    return bool(np.asarray(value).item())


def as_str(value: Any) -> str:
    """A flag read from a file (bytes, str or numpy scalar) as a str."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return as_str(value.item())
    return str(value)


@dataclass(eq=False)
class CustomNeuron(nir.NIRNode):
    """Base of nirbridge's custom neuron nodes (dataclasses, as ``nir`` defines its own).

    Subclasses list their array parameters in ``PARAMS`` and their scalar flags in
    ``FLAGS`` (name → converter from what a file holds); every subclass has a ``compare``
    flag. Parameters are stored as float64 arrays of the neuron shape. ``TYPE`` is the
    node's type name in ``.nir`` files; the registry sets the class ``__name__`` to it
    because NIR (and every reader) identifies a node by ``type(node).__name__``.
    """

    TYPE: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[str, ...]] = ()
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {}
    #: The node's registry entry (a ``NeuronSpec``), set when it is registered.
    SPEC: ClassVar[Any] = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        arrays = {}
        for p in self.PARAMS:
            value = getattr(self, p)
            if value is None:
                raise MissingParameterError(f"{name}: parameter '{p}' is missing; give a value")
            try:
                arrays[p] = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(
                    f"{name}: parameter '{p}' = {value!r} is not numeric") from exc
        try:
            shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
        except ValueError as exc:
            shapes = {k: a.shape for k, a in arrays.items()}
            raise InvalidParameterError(
                f"{name}: parameter shapes {shapes} do not broadcast together") from exc
        for p, arr in arrays.items():
            setattr(self, p, np.array(np.broadcast_to(arr, shape)))
        for f, conv in self.FLAGS.items():
            setattr(self, f, conv(getattr(self, f)))
        if self.compare not in COMPARES:
            raise InvalidParameterError(f"{name}: compare={self.compare!r}; use '>' or '>='")
        self.input_type = {"input": np.array(shape, dtype=np.int64)}
        self.output_type = {"output": np.array(shape, dtype=np.int64)}

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input_type["input"])

    @classmethod
    def from_dict(cls, kwargs: dict[str, Any]) -> CustomNeuron:
        """The node from the fields a file holds (unknown or missing fields: an error)."""
        kwargs = dict(kwargs)
        kwargs.pop("type", None)
        known = set(cls.PARAMS) | set(cls.FLAGS) | {"metadata"}
        unknown = set(kwargs) - known
        if unknown:
            raise InvalidParameterError(
                f"{cls.__name__}: unexpected field(s) {sorted(unknown)}; "
                f"known fields are {sorted(known)}")
        missing = [p for p in cls.PARAMS if p not in kwargs]
        if missing:
            raise MissingParameterError(
                f"{cls.__name__}: parameter '{missing[0]}' is missing from the file")
        return cls(**kwargs)

    def _spec(self) -> Any:
        if type(self).SPEC is None:
            raise InvalidParameterError(f"{type(self).__name__} is not a registered neuron; "
                                        "register its NeuronSpec first")
        return type(self).SPEC

    # --- semantics, from the registry entry (conveniences for tests and tools)
    def step_kwargs(self, dt: float, dtype: torch.dtype, device: Any = None) -> dict[str, Any]:
        """Keyword arguments of the torch step as tensors of ``dtype`` on ``device``."""
        return self._spec().kwargs(self, dt, dtype, device)

    def initial_state(self, batch: int, dtype: torch.dtype, device: Any = None) -> Any:
        """The state before the first step, of shape ``[batch, *shape]``."""
        x0 = torch.zeros((batch, *self.shape), dtype=dtype, device=device)
        return self._spec().initial_state(self, x0)

    def step(self, x: torch.Tensor, state: Any, dt: float = 1.0) -> tuple[torch.Tensor, Any]:
        """One step of this neuron on ``x`` (``[B, *shape]``)."""
        return self._spec().step(x, state, **self.step_kwargs(dt, x.dtype, x.device))

    def fields(self) -> dict[str, Any]:
        """Parameters (arrays), flags and metadata, as a file stores them."""
        data: dict[str, Any] = {p: np.asarray(getattr(self, p)) for p in self.PARAMS}
        data.update({f: getattr(self, f) for f in self.FLAGS})
        data["metadata"] = dict(self.metadata or {})
        return data


#: Dataclass fields of a NIR node that are not parameters.
_NOT_PARAMS = ("input_type", "output_type", "metadata")


def numeric_fields(node: nir.NIRNode) -> list[tuple[str, Any]]:
    """``(name, value)`` of each parameter of a neuron node that may hold numbers: a
    :class:`CustomNeuron`'s ``PARAMS``, else the node's dataclass fields but its types and
    metadata; values that are None, text or a bool (a flag) are left out. Values are
    returned as stored: callers convert and check them with their own errors."""
    names = list(type(node).PARAMS) if isinstance(node, CustomNeuron) else [
        f for f in getattr(node, "__dataclass_fields__", {}) if f not in _NOT_PARAMS]
    out = []
    for f in names:
        value = getattr(node, f, None)
        if value is None or isinstance(value, (str, bytes, bool)):
            continue
        out.append((f, value))
    return out


# ----------------------------------------------------------------- lossy approximation
#: Smallest 1 − β a lossy leaky node may have (β ≥ 1 cannot leak in NIR's LIF).
LOSSY_EPS = 1e-12


def leaky_standard_node(beta: Any, gain: Any, const: Any, v_threshold: Any, v_reset: Any,
                        dt: float, metadata: dict[str, Any]) -> tuple[nir.NIRNode, str]:
    """The standard node whose sub-threshold step is ``v ← β·v + gain·x + const`` at ``dt``.

    NIR's LIF step is ``v ← v + (dt/τ)(v_leak − v + R·x)``, so ``τ = dt/(1−β)``,
    ``R = gain/(1−β)``, ``v_leak = const/(1−β)``. ``β = 1`` everywhere with no constant is
    ``nir.IF(r = gain)`` (IF integrates ``v ← v + R·x``, specs/neurons.md). Returns the node
    and a note (non-empty when ``β ≥ 1`` had to be clamped to ``1 − LOSSY_EPS``).
    """
    shape = np.broadcast_shapes(*(np.shape(a) for a in (beta, gain, const, v_threshold,
                                                        v_reset)))

    def fill(a: Any) -> np.ndarray:
        return np.array(np.broadcast_to(np.asarray(a, dtype=np.float64), shape))

    beta, gain, const = fill(beta), fill(gain), fill(const)
    v_threshold, v_reset = fill(v_threshold), fill(v_reset)
    one_minus = 1.0 - beta
    if np.all(one_minus == 0) and np.all(const == 0):
        return nir.IF(r=gain, v_threshold=v_threshold, v_reset=v_reset,
                      metadata=metadata), ""
    note = ""
    if np.any(one_minus < LOSSY_EPS):
        note = (f"; {int((one_minus < LOSSY_EPS).sum())} neuron(s) have decay ≥ 1, clamped to "
                f"1 − {LOSSY_EPS:g}")
        one_minus = np.maximum(one_minus, LOSSY_EPS)
    node = nir.LIF(tau=dt / one_minus, r=gain / one_minus, v_leak=const / one_minus,
                   v_threshold=v_threshold, v_reset=v_reset, metadata=metadata)
    return node, note


__all__ = [
    "COMPARES",
    "CustomNeuron",
    "LOSSY_EPS",
    "NeuronModule",
    "Param",
    "StatefulSequential",
    "SurrogateSpike",
    "as_bool",
    "as_str",
    "check_compare",
    "check_positive",
    "compare_meta",
    "compare_of",
    "dt_scale",
    "example_value",
    "full",
    "leaky_standard_node",
    "node_param",
    "param_reader",
    "numeric_fields",
    "run_steps",
    "spike",
    "to_tensor",
]
