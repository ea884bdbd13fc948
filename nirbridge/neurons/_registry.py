"""The neuron registry: one :class:`NeuronSpec` per NIR node type, keyed by its type name.

Every stage that meets a neuron (the reference executor, the lossy writer, the quantizer,
the integer executor, the Lava float and fixed lowerings, the profiler) asks this registry
instead of naming neurons. A neuron file declares its spec and calls :func:`register`
once at import; :mod:`nirbridge.neurons` imports every built-in neuron file, and a user's
neuron registers the same way (the tests register one that lives only in a test file).

What a spec says (see :class:`NeuronSpec`): the node class; the torch step with its state
type, its parameters as tensors and its initial state (one definition of the equations,
used by the trainable module, the reference and Lava ``floating_pt``); whether it spikes;
its lossy standard-NIR approximation; its integer model and quantizer plan (fixed point,
used by the integer executor and Lava ``fixed_pt``); and an example trainable module that
exports to it (the registry test runs every spec through every stage with it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.errors import InvalidParameterError, UnknownNodeError
from nirbridge.neurons._base import CustomNeuron, NeuronModule, node_param

#: ``kwargs(node, dt, dtype, device) -> dict``: the step's keyword arguments as tensors.
StepKwargs = Callable[[nir.NIRNode, float, torch.dtype, Any], dict[str, Any]]
#: ``init(node, x0) -> state`` for a batch like ``x0`` (``[B, *shape]``).
InitState = Callable[[nir.NIRNode, torch.Tensor], Any]
#: ``lossy(node, dt, metadata) -> (standard node, what is lost)``.
Lossy = Callable[[Any, float, dict[str, Any]], tuple[nir.NIRNode, str]]


#: ``scan(a_in, state, params, sat, trace, out_dtype=np.int64) -> (out, final_state,
#: traces)``: ``a_in`` integers ``[T, B, *shape]`` (int64, or float32/float64 holding
#: integers exactly: :func:`nirbridge.fixed_point.scan_input`), ``state`` the state before
#: step 0 (``[B, *shape]`` per field); ``out`` ``[T, B, *shape]`` in ``out_dtype`` (int64,
#: or a float that holds every output exactly, e.g. float32 spikes; refused otherwise);
#: ``traces`` the state after every step by field (``[T, B, *shape]``, int64) when
#: ``trace`` is true, else ``{}``; ``sat`` gets the counts that ``T`` calls of ``step``
#: would have added.
Scan = Callable[..., tuple[np.ndarray, Any, dict[str, np.ndarray]]]


@dataclass(frozen=True)
class StockLava:
    """A Lava-shipped Process that runs an integer model exactly (e.g. Lava's own LIF):
    ``process`` (``"module:Class"``), its keyword arguments, and the state Vars a monitor
    reads by reference (the Process has no in-model probe)."""

    process: str
    params: dict[str, Any]
    state_vars: tuple[str, ...] = ()


@dataclass(frozen=True)
class IntegerModel:
    """A fixed-point (bit-accurate) neuron model.

    ``kind`` names it in quantization reports; ``step(a_in, state, params, sat)`` returns
    ``(output, new_state)`` on int64 arrays; ``params`` is its parameter dataclass (a
    :class:`~nirbridge.fixed_point.NeuronParams`, whose ``initial_state`` gives the state);
    ``state_fields`` the state's field names. ``stock_lava(layer)``, where set, is the
    Lava-shipped Process that runs a quantized layer of this model exactly, or the list of
    reasons it cannot (then nirbridge's generic integer Process runs it); ``stock_name``
    names that Process in quantization notes (its parameters then have ``lava_issues``).
    ``input_shift_is_frac``: the model shifts its input left by its base fractional bits
    (Lava's LIF: ``a_in << 6``), so the quantizer sets ``act_shift`` to them and bounds the
    state format by the synapses' exponent range.

    ``scan`` (optional, see :data:`Scan`): the same model over a whole sequence in one
    call, bit for bit equal to ``step`` in a loop (outputs, final state, per-step states,
    saturation counts); the batched emulator uses it where set. ``step`` stays the
    specification; a model without ``scan`` is stepped once per time step.
    """

    kind: str
    step: Callable[..., tuple[np.ndarray, Any]]
    params: type
    state_fields: tuple[str, ...] = ("v",)
    stock_lava: Callable[[Any], StockLava | list[str]] | None = None
    stock_name: str = ""
    input_shift_is_frac: bool = False
    scan: Scan | None = None


@dataclass
class QuantPlan:
    """A neuron in "Lava form" (``state ← decay(state) + gain·x + bias``) before its state
    format is chosen; made by a spec's ``quantize`` and completed by the quantizer.

    ``key``: its entry in the profile's ``[quantization.frac_bits]``; ``homogeneous``:
    scaling x, v and the thresholds together leaves the spikes unchanged (the quantizer may
    then pick a layer scale); ``gain``: the input gain (folded into the weights where it
    commutes); ``own_bias``: constant drive of its own; ``theta_max``: its largest
    threshold-like magnitude (range estimate); ``leak``: ``1 − decay`` for the range of
    non-spiking integrators; ``build(rounder, S, a, k, in_gain, gain_frac, const)`` returns
    the integer parameters for state format ``S``, activation shift ``a``, scale ``k``.
    """

    model: IntegerModel
    key: str
    homogeneous: bool
    spiking: bool
    gain: np.ndarray
    own_bias: np.ndarray
    theta_max: float
    leak: float
    build: Callable[..., Any]

    @property
    def kind(self) -> str:
        return self.model.kind


#: ``quantize(name, node, dt, shape, config) -> QuantPlan``.
Quantize = Callable[[str, Any, float, tuple[int, ...], Any], QuantPlan]


def zero_state(state: type) -> InitState:
    """``init`` giving every field of ``state`` zeros like the input."""
    def init(node: nir.NIRNode, x0: torch.Tensor) -> Any:
        return state(*(torch.zeros_like(x0) for _ in state._fields))

    return init


@dataclass(frozen=True)
class NeuronSpec:
    """Everything nirbridge knows about one neuron node type (see the module docstring).

    ``node``: the NIR node class (``nir.LIF``…, or a :class:`CustomNeuron` subclass);
    ``step(x, state, **kwargs) -> (out, new_state)``: the torch step; ``state``: its
    NamedTuple; ``kwargs``: the step's keyword arguments from a node; ``init``: the state
    before the first step (zeros by default); ``spiking``: the output is spikes (else a
    graded membrane); ``lossy``: the standard-NIR approximation (``None`` for NIR's own
    nodes); ``integer`` and ``quantize``: the fixed-point model and quantizer plan
    (``None``: no fixed point); ``frac_bits``: the ``[quantization.frac_bits]`` entries
    this neuron introduces, with their default fractional bits (a neuron may instead reuse
    an existing entry as its plan's ``key``); ``events(node)``: for a spiking output that is
    an event *count* ≥ 0 rather than a 0/1 spike (Sinabs' multi-spike IAF), the most events
    per neuron and step (``None``: unbounded); unset: binary spikes;
    ``example(shape, per_channel)``: a trainable
    module with non-trivial parameters that exports to this node type; ``description``:
    one line; ``ranges``: field → the value rule(s) its equation needs (names of
    :data:`nirbridge.validate_values.RULES` or its threshold rules; a callable of the node
    where the rule depends on a flag), checked by :func:`nirbridge.passes.validate`.
    """

    node: type[nir.NIRNode]
    step: Callable[..., tuple[torch.Tensor, Any]]
    state: type
    kwargs: StepKwargs
    example: Callable[[tuple[int, ...], bool], NeuronModule]
    spiking: bool = True
    init: InitState | None = None
    lossy: Lossy | None = None
    integer: IntegerModel | None = None
    quantize: Quantize | None = None
    frac_bits: Mapping[str, int] = field(default_factory=dict)
    events: Callable[[Any], int | None] | None = None
    description: str = ""
    ranges: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The node type name (as written in ``.nir`` files)."""
        return self.node.__name__

    @property
    def custom(self) -> bool:
        """A nirbridge custom node (not one of NIR's own)."""
        return issubclass(self.node, CustomNeuron)

    @property
    def state_fields(self) -> tuple[str, ...]:
        return tuple(self.state._fields)

    def event_bound(self, node: nir.NIRNode) -> int | None:
        """Events per neuron and step ``node`` can emit: 1 for binary spikes, ``None`` for
        an unbounded count."""
        return 1 if self.events is None else self.events(node)

    def binary(self, node: nir.NIRNode) -> bool:
        """Whether ``node``'s output is binary spikes (0/1)."""
        return self.spiking and self.event_bound(node) == 1

    def initial_state(self, node: nir.NIRNode, x0: torch.Tensor) -> Any:
        """The state before the first step for a batch like ``x0`` (``[B, *shape]``)."""
        return (self.init or zero_state(self.state))(node, x0)

    def runner(self, node: nir.NIRNode, dt: float
               ) -> tuple[Callable[[torch.Tensor], Any], Callable[[torch.Tensor, Any], Any]]:
        """``(init(x0), step(x, state))`` for ``node``: its parameters are made tensors of
        the run's dtype and device once, at the first step."""
        made: dict[str, Any] = {}

        def init(x0: torch.Tensor) -> Any:
            return self.initial_state(node, x0)

        def step(x: torch.Tensor, s: Any) -> Any:
            if not made:
                made.update(self.kwargs(node, dt, x.dtype, x.device))
            return self.step(x, s, **made)

        return init, step


#: The registry: spec by node type name. Filled at import by :func:`register` (each neuron
#: file registers itself once); read-only afterwards.
NEURONS: dict[str, NeuronSpec] = {}
_BY_CLASS: dict[type, NeuronSpec] = {}


def register(spec: NeuronSpec) -> NeuronSpec:
    """Add ``spec`` to :data:`NEURONS` (its custom node class gets the name ``TYPE``)."""
    if spec.custom:
        type_name = spec.node.TYPE or spec.node.__name__
        spec.node.__name__ = type_name
        spec.node.SPEC = spec
    name = spec.name
    old = NEURONS.get(name)
    if old is not None and old.node is not spec.node:
        raise InvalidParameterError(f"neuron type '{name}' is registered twice "
                                    f"({old.node.__module__} and {spec.node.__module__})")
    NEURONS[name] = spec
    _BY_CLASS[spec.node] = spec
    return spec


def default_frac_bits() -> dict[str, int]:
    """The ``[quantization.frac_bits]`` defaults of every registered neuron."""
    out: dict[str, int] = {}
    for spec in NEURONS.values():
        out.update(spec.frac_bits)
    return out


def spec_of(node: nir.NIRNode) -> NeuronSpec | None:
    """The spec of ``node``'s type (or of a registered base class), or None: not a neuron."""
    for cls in type(node).__mro__:
        spec = _BY_CLASS.get(cls)
        if spec is not None:
            return spec
    return None


def is_neuron(node: nir.NIRNode) -> bool:
    """Whether ``node`` is a registered neuron (it carries state and fires or integrates)."""
    return spec_of(node) is not None


def custom_nodes() -> Mapping[str, type[CustomNeuron]]:
    """The registered custom node classes by type name."""
    return {n: s.node for n, s in NEURONS.items() if s.custom}  # type: ignore[misc]


def custom_node_class(type_name: str) -> type[CustomNeuron]:
    """The registered custom node class for ``type_name``, or a clear error."""
    spec = NEURONS.get(type_name)
    if spec is None or not spec.custom:
        raise UnknownNodeError(
            f"node type '{type_name}' is neither a NIR node nor a nirbridge custom node "
            f"(custom nodes: {', '.join(sorted(custom_nodes()))})")
    return spec.node  # type: ignore[return-value]


def node_kwargs(*params: str, defaults: Mapping[str, float] | None = None,
                flags: Mapping[str, Any] | None = None, dt: bool = False) -> StepKwargs:
    """A ``kwargs`` function for the usual case: the named node parameters as tensors,
    ``flags`` (name → value, or callable of the node) passed as they are, and the graph's
    ``dt`` when ``dt`` is true. ``defaults`` fill parameters a file may omit."""
    defaults = dict(defaults or {})
    flags = dict(flags or {})

    def kwargs(node: nir.NIRNode, step_dt: float, dtype: torch.dtype, device: Any = None
               ) -> dict[str, Any]:
        out: dict[str, Any] = {p: node_param(node, p, dtype, device, defaults.get(p))
                               for p in params}
        for f, v in flags.items():
            out[f] = v(node) if callable(v) else v
        if dt:
            out["dt"] = step_dt
        return out

    return kwargs


__all__ = [
    "IntegerModel",
    "NEURONS",
    "NeuronSpec",
    "QuantPlan",
    "Scan",
    "StockLava",
    "custom_node_class",
    "custom_nodes",
    "default_frac_bits",
    "is_neuron",
    "node_kwargs",
    "register",
    "spec_of",
    "zero_state",
]
