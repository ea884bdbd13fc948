"""The snnTorch front-end: snnTorch models through :func:`nirbridge.to_nir`, and the
files snnTorch's own ``export_to_nir`` writes, read as snnTorch itself reads them.

**Direct route** (:func:`adapt`). ``Leaky`` and ``Lapicque`` become the custom neuron
``SnnTorchLeaky``, ``Synaptic`` ``SnnTorchSynaptic``, ``Alpha`` ``SnnTorchAlpha``
(:mod:`nirbridge.neurons.snntorch_leaky`, ``snntorch_synaptic``, ``snntorch_alpha``):
snnTorch's step to the last operation, its reset at the next step from the previous
membrane (``reset_mechanism`` "subtract", "zero", "none"; ``reset_delay`` on or off), its
``graded_spikes_factor``, scalar, per-neuron and learnable ``beta``/``alpha``/``threshold``
(their effective values, clamped as snnTorch's forward clamps them). No standard NIR node
is exact: NIR's LIF and CubaLIF reset at once and hold the membrane after the reset. The
surrogate only shapes gradients: the forward is ``H(mem − θ) = (mem − θ > 0)``, NIR's
``>``. snnTorch is a per-step model (β, not τ), so the graph's dt changes no parameter.
With ``init_hidden=True`` (and ``output=False``) the stand-in returns the spikes only;
otherwise snnTorch's tuple, ``(spk, mem)``, ``(spk, syn, mem)`` or ``(spk, syn_exc,
syn_inh, mem)``, so ``spk, mem = lif(x, mem)`` traces as written.

Recurrent ``RLeaky``/``RSynaptic`` become a :class:`nirbridge.layers.Recurrent` around the
same stand-in: snnTorch computes ``β·mem + x + V(spk)`` (``RSynaptic``: ``α·syn + x +
V(spk)``) with ``spk`` the previous step's output, zero before the first. All-to-all
(``linear_features``: an ``nn.Linear`` *with* bias) adds the recurrent bias at t = 0 too,
which NIR's reading of a feedback edge does not (docs/recurrence.md), so it exports as a
recurrent ``nir.Linear(W)`` and the bias moves into the feed-forward path (added to the
bias of the ``Linear`` before the layer): snnTorch's forward at every step, t = 0 included,
the sum associated differently (equal to rounding, ~1e-16). One-to-one (``all_to_all=False``,
``V``) exports as a recurrent ``nir.Scale(V)``. ``RSynaptic``'s ``reset_delay=False`` has no
effect in snnTorch 1.0 (its immediate reset assigns a local variable that is then dropped),
so it exports the delayed reset its forward computes. A convolutional recurrence
(``conv2d_channels``/``kernel_size``) is refused.

Refused, with the reason: ``SLSTM``/``SConv2dLSTM``, ``LeakyParallel``, a convolutional
``RLeaky``/``RSynaptic``, and every other snnTorch module; ``inhibition``, ``state_quant``
and a ``spike_grad`` from outside ``snntorch.surrogate`` (its forward may not be the step).

**File route** (:func:`from_file`). snnTorch's exporter writes ``Leaky`` as ``nir.LIF``
(``τ = dt/(1−β)``, ``r = τ/dt``) and ``Synaptic`` as ``nir.CubaLIF`` at ``dt = 1e-4``
whatever their reset; its reader (``snntorch.import_from_nir``) turns them back into
``Leaky``/``Synaptic`` with ``β = 1 − dt/τ``, reset to zero at once (``reset_delay=False``),
the threshold divided by the input scale, every parameter in float32. :func:`from_file`
returns the nirbridge graph of that reading, to the bit, and notes where it departs from
the file (and so from the original model).

A recurrent file (``RLeaky``/``RSynaptic``, written as a neuron and its recurrent
``Affine``/``Linear`` with a feedback edge) has no snnTorch reading: snnTorch 1.0's
``import_from_nir`` crashes on it (``AttributeError: 'GraphModule' object has no attribute
'items'``, after regrouping the cycle into a subgraph). :func:`from_file` then reads the
whole file as NIR defines it — the reading of nirbridge's reference, nirtorch and Norse's
``from_nir`` (docs/recurrence.md) — at snnTorch's dt 1e-4, and says so in a note.
"""

from __future__ import annotations

import copy
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from nirbridge.export.frontends import HiddenState, unsupported
from nirbridge.graph import flatten_subgraphs, is_recurrent
from nirbridge.layers import Recurrent
from nirbridge.neurons import NeuronModule
from nirbridge.neurons.snntorch_alpha import SnnTorchAlpha
from nirbridge.neurons.snntorch_leaky import SnnTorchLeaky, SnnTorchLeakyNode
from nirbridge.neurons.snntorch_synaptic import SnnTorchSynaptic, SnnTorchSynapticNode

#: The framework's name in messages.
FRAMEWORK = "snnTorch"
#: What works for a module this front-end cannot export.
ROUTE = ("build the layer with snnTorch's Leaky, Synaptic, Lapicque, Alpha, RLeaky or "
         "RSynaptic (init_hidden on or off; RLeaky/RSynaptic with linear_features or "
         "all_to_all=False) or with a nirbridge neuron (nirbridge.neurons, "
         "nirbridge.layers.Recurrent), then call nirbridge.to_nir")
#: The dt snnTorch's ``export_to_nir`` and ``import_from_nir`` assume (it writes none).
DT = 1e-4

#: ``state_function`` of an snnTorch neuron → the reset it computes, per class.
_LEAKY_RESETS = {"_base_sub": "subtract", "_base_zero": "zero_previous", "_base_int": "none"}
_UPDATED_RESETS = {"_base_sub": "subtract", "_base_zero": "zero_updated", "_base_int": "none"}
_ALPHA_RESETS = {"_base_sub": "subtract", "_base_zero": "zero", "_base_int": "none"}
#: snnTorch's ``reset_mechanism_val`` (used by its immediate reset) → its name.
_MECHANISMS = ("subtract", "zero", "none")

#: Why snnTorch modules without an exact form are refused (by class name).
_WHY = {
    "SLSTM": "a spiking LSTM: its gates have no NIR node",
    "SConv2dLSTM": "a spiking convolutional LSTM: its gates have no NIR node",
    "LeakyParallel": "it runs every time step at once (an nn.RNN inside), not one step",
    "BatchNormTT1d": "a batch-norm with one set of statistics per time step",
    "BatchNormTT2d": "a batch-norm with one set of statistics per time step",
}


# ===================================================================== direct route
class CalledNeuron(NeuronModule):
    """The stand-in of an snnTorch neuron called as ``spk, *state = lif(x, *state)``
    (``init_hidden=False``, or ``output=True``): returns snnTorch's tuple, ``(out, mem)``
    or ``(out, syn, mem)``. ``reset_mem()`` (and snnTorch's older ``init_*`` names) return
    ``None``, the initial state, so a forward that starts from them traces."""

    def __init__(self, neuron: NeuronModule) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, x: torch.Tensor, *state: Any) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        out, new = self.neuron(x, None)
        return (out, *new)

    def initial_state(self, x: torch.Tensor) -> Any:
        return self.neuron.initial_state(x)

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        return self.neuron.to_nir_node(shape, dt)

    def reset_mem(self) -> None:
        return None

    init_leaky = init_synaptic = init_lapicque = init_alpha = reset_mem

    def extra_repr(self) -> str:
        return "called as snnTorch's spk, *state = neuron(x, *state)"


class CalledRecurrent(CalledNeuron):
    """The stand-in of an ``RLeaky``/``RSynaptic`` called as ``spk, mem = lif(x, spk, mem)``
    (``spk, syn, mem = ...``): a :class:`~nirbridge.layers.Recurrent` returning snnTorch's
    tuple. ``reset_mem()``/``init_rleaky()``/``init_rsynaptic()`` return one ``None`` per
    value of that tuple (the initial state)."""

    def __init__(self, neuron: Recurrent, n_states: int) -> None:
        super().__init__(neuron)
        self.n_states = int(n_states)

    def forward(self, x: torch.Tensor, *state: Any) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        out, new = self.neuron(x, None)
        return (out, *new.neuron)

    def reset_mem(self) -> tuple[None, ...]:  # type: ignore[override]
        return (None,) * self.n_states

    init_rleaky = init_rsynaptic = reset_mem

    def extra_repr(self) -> str:
        return "called as snnTorch's spk, *state = neuron(x, spk, *state)"


def _detached(t: Any) -> Any:
    return t.detach().clone() if torch.is_tensor(t) else t


def _reset_of(module: nn.Module, name: str, resets: dict[str, str]) -> str:
    """The reset the neuron's forward computes (its ``state_function``, chosen when it was
    built), checked against the one its immediate reset uses."""
    fn = getattr(getattr(module, "state_function", None), "__name__", "")
    if fn not in resets:
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          f"its state function {fn or '?'} is not one of snnTorch's own")
    reset = resets[fn]
    if not getattr(module, "reset_delay", True):
        val = int(getattr(module, "reset_mechanism_val", 0))
        if _MECHANISMS[val] != {"zero_previous": "zero", "zero_updated": "zero"}.get(reset, reset):
            raise unsupported(module, name, FRAMEWORK, ROUTE,
                              "reset_mechanism was changed after the neuron was built: its "
                              f"delayed reset is {fn} but its immediate reset is "
                              f"{_MECHANISMS[val]!r}; build it with the reset it should have")
    return reset


def _check_forward(module: nn.Module, name: str) -> None:
    """Refuse what makes the forward something else than the per-neuron step."""
    if getattr(module, "inhibition", False):
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          "inhibition=True lets only the largest membrane of each sample "
                          "fire, which no per-neuron node expresses")
    if getattr(module, "state_quant", False):
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          "state_quant quantizes the membrane inside the forward; export "
                          "the float model and quantize with nirbridge's own quantizer")
    grad = getattr(module, "spike_grad", None)
    # a surrogate function, or the apply of one of snnTorch's autograd Functions
    owner = getattr(grad, "__self__", None)
    origin = getattr(grad, "__module__", None) or getattr(owner, "__module__", "") or ""
    if not origin.startswith(("snntorch.surrogate", "snntorch._neurons")):
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          f"spike_grad {getattr(grad, '__name__', grad)!r} is not from "
                          "snntorch.surrogate, so its forward may not be the Heaviside step")


def _leaky(module: nn.Module, name: str) -> SnnTorchLeaky:
    return SnnTorchLeaky(
        beta=_detached(module.beta), threshold=_detached(module.threshold),
        graded=_detached(module.graded_spikes_factor),
        reset=_reset_of(module, name, _LEAKY_RESETS),
        reset_delay=bool(getattr(module, "reset_delay", True)))


def _lapicque(module: nn.Module, name: str) -> SnnTorchLeaky:
    # snnTorch's forward: x·R·(1/(RC))·Δt + (1 − Δt/(RC))·mem (its beta is not used).
    r, c, step = (torch.as_tensor(getattr(module, k)).detach().double()
                  for k in ("R", "C", "time_step"))
    return SnnTorchLeaky(
        beta=1 - (step / (r * c)), gain=r * (1 / (r * c)) * step,
        threshold=_detached(module.threshold),
        graded=_detached(module.graded_spikes_factor),
        reset=_reset_of(module, name, _UPDATED_RESETS), reset_delay=True, clamp_beta=False)


def _synaptic(module: nn.Module, name: str) -> SnnTorchSynaptic:
    return SnnTorchSynaptic(
        alpha=_detached(module.alpha), beta=_detached(module.beta),
        threshold=_detached(module.threshold),
        graded=_detached(module.graded_spikes_factor),
        reset=_reset_of(module, name, _UPDATED_RESETS),
        reset_delay=bool(getattr(module, "reset_delay", True)))


def _alpha(module: nn.Module, name: str) -> SnnTorchAlpha:
    return SnnTorchAlpha(
        alpha=_detached(module.alpha), beta=_detached(module.beta),
        threshold=_detached(module.threshold),
        graded=_detached(module.graded_spikes_factor),
        reset=_reset_of(module, name, _ALPHA_RESETS))


def _rleaky(module: nn.Module, name: str) -> SnnTorchLeaky:
    return SnnTorchLeaky(
        beta=_detached(module.beta), threshold=_detached(module.threshold),
        graded=_detached(module.graded_spikes_factor),
        reset=_reset_of(module, name, _UPDATED_RESETS),
        reset_delay=bool(getattr(module, "reset_delay", True)))


def _rsynaptic(module: nn.Module, name: str) -> SnnTorchSynaptic:
    # snnTorch 1.0's RSynaptic.forward computes its immediate reset into a local variable
    # and returns self.mem: whatever reset_delay says, the reset is the delayed one
    return SnnTorchSynaptic(
        alpha=_detached(module.alpha), beta=_detached(module.beta),
        threshold=_detached(module.threshold),
        graded=_detached(module.graded_spikes_factor),
        reset=_reset_of(module, name, _UPDATED_RESETS), reset_delay=True)


def _recurrent(module: nn.Module, name: str, neuron: NeuronModule) -> Recurrent:
    """``neuron`` inside the recurrence of an ``RLeaky``/``RSynaptic``."""
    rec = getattr(module, "recurrent", None)
    if getattr(module, "all_to_all", True):
        if not isinstance(rec, nn.Linear):
            raise unsupported(module, name, FRAMEWORK, ROUTE,
                              f"its recurrence is a {type(rec).__name__} (conv2d_channels/"
                              "kernel_size); nirbridge exports a linear (linear_features) or "
                              "one-to-one (all_to_all=False) recurrence")
        # the bias counts at t = 0 too in snnTorch: see the module docstring
        return Recurrent(neuron, copy.deepcopy(rec), bias_at_start=True)
    v = getattr(rec, "V", getattr(module, "V", None))
    if v is None:
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          "its one-to-one recurrence holds no V")
    return Recurrent(neuron, _detached(torch.as_tensor(v)), learn=False)


def adapt(module: nn.Module, name: str) -> nn.Module | None:
    """The stand-in of an snnTorch module (see the module docstring), or an error naming
    the module, snnTorch and the route that works."""
    import snntorch

    makers = {snntorch.Leaky: _leaky, snntorch.Synaptic: _synaptic,
              snntorch.Lapicque: _lapicque, snntorch.Alpha: _alpha,
              snntorch.RLeaky: _rleaky, snntorch.RSynaptic: _rsynaptic}
    make = makers.get(type(module))
    if make is None:
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          _WHY.get(type(module).__name__,
                                   "nirbridge has no exact form of this snnTorch module"))
    _check_forward(module, name)
    neuron = make(module, name)
    hidden = getattr(module, "init_hidden", False) and not getattr(module, "output", False)
    cls = type(module).__name__
    if isinstance(module, (snntorch.RLeaky, snntorch.RSynaptic)):
        rec = _recurrent(module, name, neuron)
        if hidden:
            return HiddenState(rec, cls)
        return _named(CalledRecurrent, cls)(rec, 3 if cls == "RSynaptic" else 2)
    if hidden:  # HiddenState names its node itself (export_name)
        return HiddenState(neuron, cls)
    return _named(CalledNeuron, cls)(neuron)


_NAMED: dict[tuple[type, str], type] = {}


def _named(base: type, name: str) -> type:
    """``base`` under the snnTorch class's name, so that graph nodes are named after it
    (``leaky_3``, not ``calledneuron_3``)."""
    key = (base, name)
    if key not in _NAMED:
        _NAMED[key] = type(name, (base,), {"__module__": __name__,
                                           "__doc__": f"snnTorch {name}: {base.__doc__}"})
    return _NAMED[key]


# ======================================================================= file route
def _held(value: Any) -> np.ndarray:
    """What snnTorch's reader holds for ``value``: ``torch.as_tensor`` of it, cast to
    float32 (nirtorch builds the reading in float32), as float64."""
    return torch.as_tensor(value).to(torch.float32).double().numpy()


def _f32(value: Any) -> np.ndarray:
    """An array as ``torch.Tensor(array)`` (float32) holds it, as float64."""
    return np.asarray(value, dtype=np.float32).astype(np.float64)


def _refuse(name: str, node: Any, why: str) -> Exception:
    from nirbridge.errors import UnsupportedLayerError

    return UnsupportedLayerError(
        f"node '{name}' ({type(node).__name__}): snnTorch's reader (import_from_nir) "
        f"{why}; this file has no snnTorch reading to reproduce")


def _one_value(name: str, node: Any, field: str, value: np.ndarray) -> Any:
    values = np.unique(value)
    if values.size != 1:
        raise _refuse(name, node, f"requires one {field} for the whole layer (got "
                                  f"{values.size} values)")
    return values[0]


def _leaky_of_lif(name: str, node: nir.LIF, notes: list[str]) -> SnnTorchLeakyNode:
    dt = DT
    if not np.allclose(node.v_leak, 0.0):
        raise _refuse(name, node, "refuses v_leak ≠ 0")
    _one_value(name, node, "v_threshold", node.v_threshold)
    beta = 1 - (dt / node.tau)
    vthr = node.v_threshold
    w_scale = node.r * dt / node.tau
    if not np.allclose(w_scale, 1.0):
        scale = np.unique(w_scale)[0]
        vthr = vthr / scale
        notes.append(f"{name}: input scale r·dt/τ ≠ 1: snnTorch divides the threshold by "
                     f"{float(scale):g} instead (its smallest value)")
    threshold = _one_value(name, node, "threshold after scaling", vthr)
    if not np.allclose(getattr(node, "v_reset", 0.0), 0.0):
        notes.append(f"{name}: v_reset ≠ 0 is ignored: snnTorch resets to 0")
    shape = np.shape(node.tau)
    return SnnTorchLeakyNode(
        beta=np.clip(np.broadcast_to(_held(beta), shape), 0, 1), gain=np.ones(shape),
        v_threshold=np.full(shape, _held(threshold)), graded=np.ones(shape),
        reset="zero_previous", reset_delay=False)


def _synaptic_of_cubalif(name: str, node: nir.CubaLIF, notes: list[str]
                         ) -> SnnTorchSynapticNode:
    dt = DT
    if not np.allclose(node.v_leak, 0):
        raise _refuse(name, node, "refuses v_leak ≠ 0")
    if not np.allclose(node.r, node.tau_mem / dt):
        raise _refuse(name, node, "requires r = tau_mem/dt (its membrane gain is 1)")
    alpha = 1 - (dt / node.tau_syn)
    beta = 1 - (dt / node.tau_mem)
    vthr = node.v_threshold
    w_scale = node.w_in * (dt / node.tau_syn)
    if not np.allclose(w_scale, 1.0):
        vthr = vthr / w_scale
        notes.append(f"{name}: input scale w_in·dt/τ_syn ≠ 1: snnTorch divides the threshold "
                     "by it instead")
    threshold = float(_one_value(name, node, "threshold after scaling", vthr))
    if np.unique(alpha).size == 1:
        alpha = float(np.unique(alpha)[0])
    if np.unique(beta).size == 1:
        beta = float(np.unique(beta)[0])
    if not np.allclose(getattr(node, "v_reset", 0.0), 0.0):
        notes.append(f"{name}: v_reset ≠ 0 is ignored: snnTorch resets to 0")
    shape = np.shape(node.tau_mem)
    return SnnTorchSynapticNode(
        alpha=np.clip(np.broadcast_to(_held(alpha), shape), 0, 1),
        beta=np.clip(np.broadcast_to(_held(beta), shape), 0, 1),
        v_threshold=np.full(shape, _held(threshold)), graded=np.ones(shape),
        reset="zero_updated", reset_delay=False)


def _leaky_of_if(name: str, node: nir.IF, last: bool, notes: list[str]) -> SnnTorchLeakyNode:
    vthr = _one_value(name, node, "v_threshold", node.v_threshold)
    r = _one_value(name, node, "r", node.r)
    if r != 1:
        raise _refuse(name, node, "supports IF only with r = 1")
    if not last:
        raise _refuse(name, node, "reads IF as a Leaky with init_hidden=False, whose "
                                  "(spk, mem) tuple its graph executor hands on to the next "
                                  "layer, which fails")
    notes.append(f"{name}: snnTorch reads IF as a Leaky with beta = 0.9 (a leak the file "
                 "does not have) and subtractive reset")
    shape = np.shape(node.v_threshold)
    return SnnTorchLeakyNode(
        beta=np.full(shape, _held(0.9)), gain=np.ones(shape),
        v_threshold=np.full(shape, _held(vthr * r)), graded=np.ones(shape),
        reset="subtract", reset_delay=False)


def _synapse(node: nir.NIRNode) -> nir.NIRNode:
    """A stateless node with its weights as snnTorch's float32 reading holds them."""
    if isinstance(node, nir.Affine):
        return nir.Affine(weight=_f32(node.weight), bias=_f32(node.bias))
    if isinstance(node, nir.Linear):
        return nir.Linear(weight=_f32(node.weight))
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        bias = getattr(node, "bias", None)
        out = type(node)(input_shape=node.input_shape, weight=_f32(node.weight),
                         stride=node.stride, padding=node.padding, dilation=node.dilation,
                         groups=node.groups,
                         bias=_f32(np.zeros(node.weight.shape[0]) if bias is None else bias))
        out.input_type, out.output_type = node.input_type, node.output_type
        return out
    return node


#: Node types snnTorch's reader maps with nirtorch's defaults or its own modules, kept as
#: they are (weights rounded to float32).
_KEPT = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.Flatten,
         nir.AvgPool2d)


def _read_graph(graph: nir.NIRGraph, prefix: str, notes: list[str]) -> nir.NIRGraph:
    into_output = {a for a, b in graph.edges if isinstance(graph.nodes.get(b), nir.Output)}
    nodes: dict[str, nir.NIRNode] = {}
    for key, node in graph.nodes.items():
        name = f"{prefix}{key}"
        if isinstance(node, nir.NIRGraph):
            nodes[key] = _read_graph(node, f"{name}.", notes)
        elif isinstance(node, nir.LIF):
            nodes[key] = _leaky_of_lif(name, node, notes)
        elif isinstance(node, nir.CubaLIF):
            nodes[key] = _synaptic_of_cubalif(name, node, notes)
        elif isinstance(node, nir.IF):
            nodes[key] = _leaky_of_if(name, node, key in into_output, notes)
        elif isinstance(node, nir.SumPool2d) and not np.any(np.asarray(node.padding)):
            nodes[key] = node  # nirtorch's LPPool2d(norm_type=1): a sum, without padding
        elif isinstance(node, nir.AvgPool2d) and any(
                np.ndim(getattr(node, f)) == 0 for f in ("kernel_size", "stride", "padding")):
            raise _refuse(name, node, "fails on a single-number kernel_size, stride or "
                                      "padding (it calls tuple() on them)")
        elif isinstance(node, _KEPT):
            nodes[key] = _synapse(node)
        else:
            raise _refuse(name, node, f"has no module for nir.{type(node).__name__}")
    meta = dict(graph.metadata or {})
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=meta,
                        type_check=False)


def from_file(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
    """The nirbridge graph of snnTorch's own reading of ``graph`` (a file written by
    ``snntorch.export_nir.export_to_nir``, as ``snntorch.import_from_nir`` reads it), with
    ``metadata["dt"] = DT``, and notes saying what the reading changes.

    A recurrent file, on which snnTorch's reader crashes, is read as NIR defines it (the
    reference's reading, Norse's ``from_nir``'s), subgraphs flattened, at ``dt = DT``.

    Raises :class:`~nirbridge.errors.UnsupportedLayerError` where snnTorch's reader fails
    or refuses a feed-forward file (``v_leak ≠ 0``, a threshold that differs between
    neurons, a node type it has no module for), naming the node and the reason.
    """
    notes: list[str] = []
    flat = flatten_subgraphs(graph)
    if is_recurrent(flat):
        notes.append(
            "the graph is recurrent (snnTorch's RLeaky/RSynaptic export), and snnTorch 1.0's "
            "import_from_nir crashes on recurrent files (AttributeError: 'GraphModule' "
            "object has no attribute 'items'): read as NIR defines it, as Norse's from_nir "
            "and nirtorch read it (a feedback edge carries the previous step, the recurrent "
            f"bias from t = 1; docs/recurrence.md), at snnTorch's dt = {DT:g}")
        return _at_dt(graph, flat, notes)
    out = _read_graph(graph, "", notes)
    neurons = [n for n, v in out.nodes.items()
               if isinstance(v, (SnnTorchLeakyNode, SnnTorchSynapticNode))]
    if neurons:
        notes.insert(0, "snnTorch reads LIF as Leaky and CubaLIF as Synaptic with β = 1 − "
                        "dt/τ (α = 1 − dt/τ_syn) at dt = 1e-4, reset to zero at the spike "
                        "(reset_delay=False) whatever the original reset, parameters and "
                        f"weights in float32 ({', '.join(neurons)})")
    return _at_dt(graph, out, notes)


def _at_dt(graph: nir.NIRGraph, out: nir.NIRGraph, notes: list[str]
           ) -> tuple[nir.NIRGraph, list[str]]:
    """``out`` (a new graph, not the file's) with ``metadata["dt"] = DT``, noting a file dt
    that differs."""
    old = (graph.metadata or {}).get("dt")
    if old is not None and not np.isclose(float(np.asarray(old)), DT):
        notes.append(f"the file's dt = {float(np.asarray(old)):g} is not used: snnTorch's "
                     f"reader assumes dt = {DT:g}")
    meta = dict(out.metadata or {})
    meta["dt"] = DT
    return nir.NIRGraph(nodes=dict(out.nodes), edges=list(out.edges), metadata=meta,
                        type_check=False), notes


__all__ = ["DT", "FRAMEWORK", "ROUTE", "CalledNeuron", "CalledRecurrent", "adapt", "from_file"]
