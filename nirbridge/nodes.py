"""Custom NIR nodes for the neurons standard NIR cannot express exactly, and their registry.

Each custom node is a dataclass subclass of :class:`nir.NIRNode` (as ``nir`` defines its
own nodes), holding the *effective* parameter values used at inference as float64 arrays
of the neuron shape, plus scalar flags. A node knows which single-step function of
:mod:`nirbridge.neurons.functional` gives its semantics and how to make its initial
state, so the reference executor (and any other backend) needs no per-neuron switch:
adding a neuron is adding one class here with ``@register_node``.

The firing convention (``compare``: ``">"`` or ``">="``) is a field of every custom node.
Standard NIR neurons (LIF, IF, CubaLIF) fire on ``>`` unless their ``metadata`` says
``{"compare": ">="}``; :func:`compare_of` reads either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import nir
import numpy as np
import torch

from nirbridge.errors import InvalidParameterError, MissingParameterError, UnknownNodeError
from nirbridge.neurons import functional as F

#: Registry of custom node classes by their type name (as written in ``.nir`` files).
#: Filled once at import by ``@register_node``; read-only afterwards.
CUSTOM_NODES: dict[str, type[CustomNeuron]] = {}

#: Standard NIR neuron node types (they carry state and fire, or integrate).
STANDARD_NEURONS: tuple[type[nir.NIRNode], ...] = (nir.LIF, nir.IF, nir.LI, nir.CubaLIF, nir.I,
                                                   nir.CubaLI)


def register_node(cls: type[CustomNeuron]) -> type[CustomNeuron]:
    """Class decorator adding a custom node class to :data:`CUSTOM_NODES`."""
    CUSTOM_NODES[cls.__name__] = cls
    return cls


def node_type_name(node: nir.NIRNode) -> str:
    return type(node).__name__


def compare_of(node: nir.NIRNode) -> str:
    """The firing convention of a neuron node: its field, else metadata, else NIR's ``>``."""
    if isinstance(node, CustomNeuron):
        return node.compare
    meta = getattr(node, "metadata", None) or {}
    cmp = meta.get("compare", ">")
    return cmp.decode() if isinstance(cmp, bytes) else str(cmp)


def is_neuron(node: nir.NIRNode) -> bool:
    return isinstance(node, (CustomNeuron, *STANDARD_NEURONS))


def _as_bool(value: Any) -> bool:
    if isinstance(value, (bytes, str)):
        text = value.decode() if isinstance(value, bytes) else value
        return text.strip().lower() in ("1", "true", "yes")
    return bool(np.asarray(value).item())


def _as_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return _as_str(value.item())
    return str(value)


@dataclass(eq=False)
class CustomNeuron(nir.NIRNode):
    """Base of nirbridge's custom neuron nodes.

    Subclasses list their array parameters in ``PARAMS`` and their scalar flags in
    ``FLAGS`` (name → converter), and name their step function and state type.
    """

    PARAMS: ClassVar[tuple[str, ...]] = ()
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {}
    STATE: ClassVar[type] = F.LIFState
    step_fn: ClassVar[Callable[..., Any]]
    #: The standard node a lossy (stock-NIR) file writes instead of this one.
    description: ClassVar[str] = ""

    def __post_init__(self) -> None:
        arrays = {}
        for name in self.PARAMS:
            value = getattr(self, name)
            if value is None:
                raise MissingParameterError(
                    f"{type(self).__name__}: parameter '{name}' is missing; give a value"
                )
            try:
                arrays[name] = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(
                    f"{type(self).__name__}: parameter '{name}' = {value!r} is not numeric"
                ) from exc
        try:
            shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
        except ValueError as exc:
            shapes = {k: a.shape for k, a in arrays.items()}
            raise InvalidParameterError(
                f"{type(self).__name__}: parameter shapes {shapes} do not broadcast together"
            ) from exc
        for name, arr in arrays.items():
            setattr(self, name, np.array(np.broadcast_to(arr, shape)))
        for name, conv in self.FLAGS.items():
            setattr(self, name, conv(getattr(self, name)))
        if self.compare not in F.COMPARES:
            raise InvalidParameterError(
                f"{type(self).__name__}: compare={self.compare!r}; use '>' or '>='"
            )
        self.input_type = {"input": np.array(shape, dtype=np.int64)}
        self.output_type = {"output": np.array(shape, dtype=np.int64)}

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input_type["input"])

    @classmethod
    def from_dict(cls, kwargs: dict[str, Any]) -> CustomNeuron:
        kwargs = dict(kwargs)
        kwargs.pop("type", None)
        known = set(cls.PARAMS) | set(cls.FLAGS) | {"metadata"}
        unknown = set(kwargs) - known
        if unknown:
            raise InvalidParameterError(
                f"{cls.__name__}: unexpected field(s) {sorted(unknown)}; "
                f"known fields are {sorted(known)}"
            )
        missing = [p for p in cls.PARAMS if p not in kwargs]
        if missing:
            raise MissingParameterError(
                f"{cls.__name__}: parameter '{missing[0]}' is missing from the file"
            )
        return cls(**kwargs)

    # --- semantics, shared by every torch-based backend
    def step_kwargs(self, dt: float, dtype: torch.dtype, device: Any = None) -> dict[str, Any]:
        """Keyword arguments of :attr:`step_fn` as tensors of ``dtype`` on ``device``."""
        out: dict[str, Any] = {
            p: torch.as_tensor(getattr(self, p), dtype=dtype, device=device) for p in self.PARAMS
        }
        out.update({f: getattr(self, f) for f in self.FLAGS})
        return out

    def initial_state(self, batch: int, dtype: torch.dtype, device: Any = None) -> Any:
        """Zero state of shape ``[batch, *shape]`` (subclasses override non-zero starts)."""
        zeros = torch.zeros((batch, *self.shape), dtype=dtype, device=device)
        return self.STATE(*([zeros] * len(self.STATE._fields)))

    def step(self, x: torch.Tensor, state: Any, dt: float = 1.0) -> tuple[torch.Tensor, Any]:
        """One step of this neuron on ``x`` ([B, *shape]); convenience for tests/backends."""
        return type(self).step_fn(x, state, **self.step_kwargs(dt, x.dtype, x.device))


def _flag_compare(v: Any) -> str:
    return _as_str(v)


@register_node
@dataclass(eq=False)
class SubtractiveLIF(CustomNeuron):
    """LIF (NIR's forward-Euler form) with subtractive reset ``v ← v − s·v_th``.

    The soft-reset LIF of snnTorch, Norse and SpikingJelly; NIR (≥ 1.0.6) only resets hard.
    """

    tau: np.ndarray
    r: np.ndarray
    v_leak: np.ndarray
    v_threshold: np.ndarray
    compare: str = ">"
    PARAMS: ClassVar[tuple[str, ...]] = ("tau", "r", "v_leak", "v_threshold")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"compare": _flag_compare}
    step_fn = staticmethod(F.lif_step)

    def step_kwargs(self, dt: float, dtype: torch.dtype, device: Any = None) -> dict[str, Any]:
        kw = super().step_kwargs(dt, dtype, device)
        kw.update(dt=dt, reset="subtract")
        return kw


@register_node
@dataclass(eq=False)
class ARLIF(CustomNeuron):
    """AR-LIF (arXiv 2507.20746): input-driven threshold and adaptive soft reset via ``m``."""

    decay: np.ndarray
    v_threshold: np.ndarray
    tanh_a: np.ndarray
    c: np.ndarray
    memoryless_m: bool = False
    compare: str = ">="
    PARAMS: ClassVar[tuple[str, ...]] = ("decay", "v_threshold", "tanh_a", "c")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "memoryless_m": _as_bool,
        "compare": _flag_compare,
    }
    STATE: ClassVar[type] = F.ARLIFState
    step_fn = staticmethod(F.arlif_step)


@register_node
@dataclass(eq=False)
class KLIF(CustomNeuron):
    """KLIF (arXiv 2302.09238): relu(k·h) membrane; ``soft_reset`` replaces ``v_r = None``."""

    tau: np.ndarray
    k: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray
    soft_reset: bool = False
    decay_input: bool = True
    scale_reset: bool = False
    compare: str = ">="
    PARAMS: ClassVar[tuple[str, ...]] = ("tau", "k", "v_threshold", "v_reset")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "soft_reset": _as_bool,
        "decay_input": _as_bool,
        "scale_reset": _as_bool,
        "compare": _flag_compare,
    }
    step_fn = staticmethod(F.klif_step)

    def step_kwargs(self, dt: float, dtype: torch.dtype, device: Any = None) -> dict[str, Any]:
        kw = super().step_kwargs(dt, dtype, device)
        if kw.pop("soft_reset"):
            kw["v_reset"] = None
        return kw

    def initial_state(self, batch: int, dtype: torch.dtype, device: Any = None) -> Any:
        v0 = 0.0 if self.soft_reset else self.v_reset
        v = torch.as_tensor(v0, dtype=dtype, device=device).expand(batch, *self.shape).clone()
        return F.LIFState(v)


@register_node
@dataclass(eq=False)
class DALIF(CustomNeuron):
    """DA-LIF (arXiv 2502.10422) with soft reset (hard reset is exported as ``nir.LIF``)."""

    alpha: np.ndarray
    beta: np.ndarray
    v_threshold: np.ndarray
    reset: str = "soft"
    compare: str = ">="
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "beta", "v_threshold")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"reset": _as_str, "compare": _flag_compare}
    step_fn = staticmethod(F.dalif_step)


@register_node
@dataclass(eq=False)
class CLIF(CustomNeuron):
    """CLIF (ICML 2024): complementary-LIF with state ``m`` that deepens the reset."""

    tau: np.ndarray
    v_threshold: np.ndarray
    compare: str = ">="
    PARAMS: ClassVar[tuple[str, ...]] = ("tau", "v_threshold")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"compare": _flag_compare}
    STATE: ClassVar[type] = F.CLIFState
    step_fn = staticmethod(F.clif_step)


@register_node
@dataclass(eq=False)
class ALIF(CustomNeuron):
    """ALIF (Bellec et al. 2018); ``alpha = exp(−dt/τ_m)``, ``rho = exp(−dt/τ_a)`` stored."""

    alpha: np.ndarray
    rho: np.ndarray
    v_threshold: np.ndarray
    beta: np.ndarray
    compare: str = ">"
    PARAMS: ClassVar[tuple[str, ...]] = ("alpha", "rho", "v_threshold", "beta")
    FLAGS: ClassVar[dict[str, Callable[[Any], Any]]] = {"compare": _flag_compare}
    STATE: ClassVar[type] = F.ALIFState
    step_fn = staticmethod(F.alif_step)


def custom_node_class(type_name: str) -> type[CustomNeuron]:
    """The registered class for ``type_name``, or a clear :class:`UnknownNodeError`."""
    try:
        return CUSTOM_NODES[type_name]
    except KeyError:
        raise UnknownNodeError(
            f"node type '{type_name}' is neither a NIR node nor a nirbridge custom node "
            f"(custom nodes: {', '.join(sorted(CUSTOM_NODES))})"
        ) from None


__all__ = [
    "ALIF",
    "ARLIF",
    "CLIF",
    "CUSTOM_NODES",
    "CustomNeuron",
    "DALIF",
    "KLIF",
    "STANDARD_NEURONS",
    "SubtractiveLIF",
    "compare_of",
    "custom_node_class",
    "field",
    "is_neuron",
    "register_node",
]
