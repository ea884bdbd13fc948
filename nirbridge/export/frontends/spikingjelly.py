"""SpikingJelly (``spikingjelly.activation_based``, 2.0) front-end: its models and files,
exactly.

Direct route (:func:`adapt`, through :func:`nirbridge.to_nir`): every neuron becomes a
stand-in computing SpikingJelly's own step to the last bit (``_ops/*/reference.py``: the
charge in SpikingJelly's operation order, fire on ``h ≥ v_th``, hard reset to ``v_r`` or
soft reset ``h − s·v_th``, start at ``v = v_r``, 0 for soft reset):

- ``IFNode``: ``nir.IF`` (``r = 1``, ``metadata`` ``compare=">="``, ``v_init = v_r``);
  soft reset: ``DALIF`` (``α = β = 1``);
- ``LIFNode``: :class:`~nirbridge.neurons.sjlif.SJLIF` (``nir.LIF``/``SubtractiveLIF``
  where exact: ``τ`` a power of two and ``decay_input``; else the ``SJLIF`` node);
- ``ParametricLIFNode``: :class:`~nirbridge.neurons.sjplif.SJPLIF` (the same with
  ``σ(w)``);
- ``KLIFNode``: nirbridge's :class:`~nirbridge.neurons.KLIF` (same operations), except
  soft reset with ``scale_reset`` (SpikingJelly subtracts ``v_th/k`` from ``h/k``, KLIF
  divides ``h − v_th`` by ``k``: not the same last bit), which is refused.

Layer wrappers (``layer.Linear``, ``Conv1d``/``Conv2d``, ``BatchNorm1d``/``2d``,
``Flatten``, ``AvgPool2d``, ``MaxPool2d``...) become the torch layer they wrap (their
single-step forward) where the exporter maps that layer (``MaxPool2d``: where it pools
spikes, as the exporter decides), and are refused with the exporter's reason otherwise;
dropout disappears, and ``SeqToANNContainer``, ``MultiStepContainer``,
``StepModeContainer`` (and their T-last forms) become ``nn.Sequential``: a model in step
mode ``m`` (``[T, B, ...] → [T, B, ...]``) exports its single-step form, which is what a
NIR graph is. ``to_nir``'s sample input is then one step, ``[B, ...]``. Plain torch layers
of the model are taken as single-step layers.

File route (:func:`from_file`): SpikingJelly's ``export_to_nir`` writes ``IF`` as
``r = 1/dt``, ``LIF`` as ``τ·dt`` (``r = τ`` without ``decay_input``) at ``dt = 1e-4`` and
records no dt; its ``import_from_nir`` reads them back as per-step ``IFNode``/``LIFNode``.
:func:`from_file` builds the nirbridge graph of that reading.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from nirbridge.errors import InvalidParameterError, UnsupportedLayerError
from nirbridge.export.diagnosis import module_hint
from nirbridge.export.frontends import HiddenState, unsupported
from nirbridge.export.tables import BATCHNORMS, MAPPED_MODULES, NOOP_MODULES
from nirbridge.neurons import IF, KLIF, NeuronModule, full
from nirbridge.neurons.sjlif import SJLIF
from nirbridge.neurons.sjplif import SJPLIF
from nirbridge.neurons.standard import LIFState

FRAMEWORK = "SpikingJelly"
ROUTE = ("nirbridge exports SpikingJelly's IFNode, LIFNode, ParametricLIFNode and KLIFNode, "
         "its layer wrappers of Linear, Conv1d/Conv2d, BatchNorm1d/2d (after a synapse), "
         "Flatten, AvgPool2d and Dropout, and SeqToANNContainer, MultiStepContainer and "
         "StepModeContainer; rebuild this part with those, or with nirbridge.neurons "
         "modules (README: importing models, SpikingJelly)")
#: The dt SpikingJelly's ``export_to_nir`` writes with and ``import_from_nir`` reads at.
DT = 1e-4

#: Why some SpikingJelly modules are refused (by class name); others get a generic reason.
_WHY = {
    "LIAFNode": "it outputs act(h), an analog value, not spikes",
    "CUBALIFNode": "its step i ← c_decay·i + x, v ← v_decay·v + i has no exact "
                   "nirbridge node",
    "SimpleIFNode": "the teaching nodes start at v = 0 and charge in another operation "
                    "order; use IFNode",
    "SimpleLIFNode": "the teaching nodes start at v = 0 and charge in another operation "
                     "order (v + (v_r − v + x)/τ); use LIFNode",
    "ElementWiseRecurrentContainer": "recurrent containers feed a layer's output back "
                                     "inside the module; to_nir exports feed-forward "
                                     "models",
    "LinearRecurrentContainer": "recurrent containers feed a layer's output back inside "
                                "the module; to_nir exports feed-forward models",
    "WSLinear": "it standardises its weight in forward; export a layer.Linear holding "
                "the standardised weight",
    "WSConv2d": "it standardises its weight in forward; export a layer.Conv2d holding "
                "the standardised weight",
}
#: Surrogates whose forward is not the Heaviside step (random, or several levels).
_NOT_HEAVISIDE = ("PoissonPass", "MultiLevelSpikeCount")


# --------------------------------------------------------------------------- helpers
def _f64(value: Any) -> torch.Tensor:
    """A node attribute (float or tensor) as a float64 tensor: the exported numbers are
    SpikingJelly's own, not their float32 rounding."""
    if torch.is_tensor(value):
        return value.detach().to(torch.float64).clone()
    return torch.tensor(float(value), dtype=torch.float64)


class SJIF(IF):
    """SpikingJelly's ``IFNode``: nirbridge's IF (``v ← v + 1·x`` is ``v + x`` exactly),
    fire on ``>=``, starting at ``v = v_r`` (hard reset; recorded in the exported node's
    ``metadata["v_init"]``) or 0 (soft reset, exported as ``DALIF``)."""

    def __init__(self, v_threshold: Any, v_reset: Any | None) -> None:
        super().__init__(v_threshold=_f64(v_threshold),
                         v_reset=_f64(0.0 if v_reset is None else v_reset),
                         r=_f64(1.0), reset="subtract" if v_reset is None else "hard",
                         compare=">=")

    def initial_state(self, x: torch.Tensor) -> LIFState:
        return LIFState(torch.zeros_like(x) + self.p("v_reset", x))

    def to_nir_node(self, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
        node = super().to_nir_node(shape, dt)
        v_r = full(self.v_reset, shape, "v_reset")
        if self.reset == "hard" and np.any(v_r != 0):
            node.metadata = {**node.metadata, "v_init": v_r}
        return node


def _check_fires(module: nn.Module, name: str) -> None:
    """Refuse a node whose forward is not SpikingJelly's plain spiking step."""
    from spikingjelly.activation_based import surrogate

    sf = getattr(module, "surrogate_function", None)
    if not (isinstance(sf, surrogate.SurrogateFunctionBase)
            and type(sf).__module__ == surrogate.__name__
            and type(sf).__name__ not in _NOT_HEAVISIDE and getattr(sf, "spiking", False)):
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          f"its surrogate_function {type(sf).__name__} does not fire with "
                          "the Heaviside step in forward (use a SpikingJelly surrogate with "
                          "spiking=True)")
    if getattr(module, "_neuron_precision", None) is not None:
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          "it runs with a reduced neuron precision (set_neuron_precision); "
                          "export it in full precision")


def _neuron(module: nn.Module, name: str) -> NeuronModule | None:
    """The stand-in of one of the SpikingJelly neurons nirbridge reproduces, else None."""
    from spikingjelly.activation_based import neuron

    kind = type(module)  # exact classes: subclasses (LIAFNode, ILIFNode...) compute more
    if kind not in (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode,
                    neuron.KLIFNode):
        return None
    _check_fires(module, name)
    v_th, v_r = module.v_threshold, module.v_reset
    if kind is neuron.IFNode:
        return SJIF(v_th, v_r)
    v_reset = None if v_r is None else _f64(v_r)
    if kind is neuron.LIFNode:
        return SJLIF(_f64(module.tau), _f64(v_th), v_reset,
                     decay_input=bool(module.decay_input))
    if kind is neuron.ParametricLIFNode:
        return SJPLIF(v_threshold=_f64(v_th), v_reset=v_reset, w=_f64(module.w),
                      decay_input=bool(module.decay_input), learn=False)
    if v_r is None and module.scale_reset:
        raise unsupported(module, name, FRAMEWORK, ROUTE,
                          "soft reset with scale_reset computes h/k − v_th/k, nirbridge's "
                          "KLIF (h − v_th)/k: not the same last bit; use scale_reset=False "
                          "or a hard reset")
    return KLIF(tau=_f64(module.tau), v_threshold=_f64(v_th), v_reset=v_reset,
                k=_f64(module.k), learn_k=False, decay_input=bool(module.decay_input),
                scale_reset=bool(module.scale_reset))


def _torch_base(kind: type) -> type[nn.Module] | None:
    """The torch layer a SpikingJelly wrapper (``layer.Conv2d(nn.Conv2d, StepModule)``)
    wraps, when its forward is that layer's in single-step mode."""
    from spikingjelly.activation_based import base

    if not issubclass(kind, base.StepModule) or kind.__name__ in _WHY:
        return None
    parent = kind.__mro__[1]
    return parent if parent.__module__.startswith("torch.nn.") else None


def _as_plain(module: nn.Module, cls: type[nn.Module]) -> nn.Module:
    # The copy keeps its weights and statistics under the torch class it wraps, whose
    # forward is the wrapper's single-step forward.
    module.__class__ = cls
    return module


def _containers() -> tuple[type, ...]:
    from spikingjelly.activation_based import layer

    return (layer.SeqToANNContainer, layer.MultiStepContainer, layer.StepModeContainer,
            layer.TLastSeqToANNContainer, layer.TLastMultiStepContainer)


# ------------------------------------------------------------------------ direct route
def adapt(module: nn.Module, name: str) -> nn.Module | None:
    """The stand-in of a SpikingJelly module (see the module docstring), ``None`` after
    turning a container into ``nn.Sequential`` (its children are then adapted), or an
    :class:`~nirbridge.errors.UnsupportedLayerError` naming it, the framework and the
    route that works."""
    from spikingjelly.activation_based import layer

    stand_in = _neuron(module, name)
    if stand_in is not None:
        return HiddenState(stand_in, type(module).__name__)
    kind = type(module)
    if kind in _containers():
        _as_plain(module, nn.Sequential)
        return None
    if kind in (layer.Dropout, layer.Dropout2d):
        return nn.Identity()  # dropout is off at inference (to_nir exports in eval mode)
    plain = _torch_base(kind)
    if plain is not None and plain in (*MAPPED_MODULES, *BATCHNORMS, *NOOP_MODULES):
        return _as_plain(module, plain)
    why = _WHY.get(kind.__name__)
    if why is None:
        why = (module_hint(module) if plain is not None
               else "nirbridge has no exact equivalent of it")
    raise unsupported(module, name, FRAMEWORK, ROUTE, why)


# -------------------------------------------------------------------------- file route
def _uniform(value: Any, what: str) -> float:
    # SpikingJelly's reader keeps one value per layer and refuses files with more
    unique = np.unique(np.asarray(value, dtype=np.float64))
    if unique.size != 1:
        raise InvalidParameterError(f"{what} differs between neurons; SpikingJelly's "
                                    "import_from_nir reads one value per layer")
    return float(unique.item())


def _close(value: float, expected: float) -> bool:
    """SpikingJelly's tolerance when it recognises a parameter (``_is_close_finite``)."""
    return bool(np.isfinite(value) and np.isfinite(expected)
                and np.isclose(value, expected, rtol=1e-6, atol=1e-12))


def _shape(node: nir.NIRNode) -> tuple[int, ...]:
    return tuple(int(d) for d in np.asarray(node.input_type["input"]).reshape(-1))


def _read_if(name: str, node: nir.IF, dt: float, notes: list[str]) -> nir.NIRNode:
    r = _uniform(node.r, f"node '{name}' (IF): r")
    if not _close(r, 1.0 / dt):
        raise InvalidParameterError(
            f"node '{name}' (IF): r = {r:g}, SpikingJelly's import_from_nir requires r = 1/dt "
            f"= {1.0 / dt:g}; give the dt the file was exported with")
    v_th = _uniform(node.v_threshold, f"node '{name}' (IF): v_threshold")
    v_r = _uniform(node.v_reset, f"node '{name}' (IF): v_reset")
    notes.append(f"node '{name}' (IF): read as SpikingJelly's IFNode(v_threshold={v_th!r}, "
                 f"v_reset={v_r!r}): v ← v + x per step (r = 1/dt dropped), fires on "
                 "v ≥ v_th, starts at v_reset")
    return SJIF(v_th, v_r).to_nir_node(_shape(node), dt)


def _read_lif(name: str, node: nir.LIF, dt: float, notes: list[str]) -> nir.NIRNode:
    tau = _uniform(node.tau, f"node '{name}' (LIF): tau") / dt
    if not (np.isfinite(tau) and tau > 1.0):
        raise InvalidParameterError(
            f"node '{name}' (LIF): tau/dt = {tau:g}; SpikingJelly's import_from_nir requires "
            "tau/dt > 1 (give the dt the file was exported with)")
    r = _uniform(node.r, f"node '{name}' (LIF): r")
    if _close(r, 1.0):
        decay_input = True
    elif _close(r, tau):
        decay_input = False
    else:
        raise InvalidParameterError(
            f"node '{name}' (LIF): r = {r:g}; SpikingJelly's import_from_nir requires r = 1 "
            f"(decay_input) or r = tau/dt = {tau:g}")
    v_r = _uniform(node.v_reset, f"node '{name}' (LIF): v_reset")
    v_leak = _uniform(node.v_leak, f"node '{name}' (LIF): v_leak")
    if not _close(v_leak, v_r):
        raise InvalidParameterError(
            f"node '{name}' (LIF): v_leak = {v_leak:g} differs from v_reset = {v_r:g}; "
            "SpikingJelly's import_from_nir requires them equal")
    v_th = _uniform(node.v_threshold, f"node '{name}' (LIF): v_threshold")
    new = SJLIF(_f64(tau), _f64(v_th), _f64(v_r), decay_input=decay_input).to_nir_node(
        _shape(node), dt)
    charge = "v + (x − (v − v_r))/τ" if decay_input else "v − (v − v_r)/τ + x"
    notes.append(f"node '{name}' (LIF): read as SpikingJelly's LIFNode(tau={tau!r}, "
                 f"decay_input={decay_input}, v_threshold={v_th!r}, v_reset={v_r!r}): "
                 f"h = {charge} per step, fires on h ≥ v_th, starts at v_reset; written "
                 f"as {type(new).__name__}")
    return new


#: Node types SpikingJelly's import_from_nir reads with the NIR meaning nirbridge gives them.
_AS_NIR = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d,
           nir.AvgPool2d, nir.Flatten)


def _read_graph(graph: nir.NIRGraph, dt: float, notes: list[str], prefix: str = ""
                ) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {}
    for name, node in graph.nodes.items():
        qname = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            nodes[name] = _read_graph(node, dt, notes, f"{qname}.")
        elif type(node) is nir.IF:
            nodes[name] = _read_if(qname, node, dt, notes)
        elif type(node) is nir.LIF:
            nodes[name] = _read_lif(qname, node, dt, notes)
        elif type(node) in _AS_NIR:
            nodes[name] = node
        elif type(node) is nir.CubaLIF:
            raise UnsupportedLayerError(
                f"node '{qname}' (CubaLIF): SpikingJelly's import_from_nir reads it as its "
                "CUBALIFNode (i ← c_decay·i + x, v ← v_decay·v + i), which nirbridge does "
                "not reproduce exactly; read the file without the SpikingJelly reading (as "
                "NIR's CubaLIF, with --dt)")
        else:
            raise UnsupportedLayerError(
                f"node '{qname}' ({type(node).__name__}): SpikingJelly's import_from_nir does "
                "not read this node type (it reads Affine, Linear, Conv1d, Conv2d, "
                "AvgPool2d, Flatten, IF, LIF and CubaLIF), so the file has no SpikingJelly "
                "reading; read it as plain NIR")
    meta = dict(graph.metadata or {})
    return nir.NIRGraph(nodes=nodes, edges=[tuple(e) for e in graph.edges], metadata=meta,
                        type_check=False)


def from_file(graph: nir.NIRGraph, dt: float | None = None
              ) -> tuple[nir.NIRGraph, list[str]]:
    """The nirbridge graph of SpikingJelly's own reading of ``graph`` (what
    ``import_from_nir(graph, dt)`` builds), and notes saying what was changed.

    ``dt``: the step SpikingJelly exported and reads with (default :data:`DT`, its
    ``export_to_nir``/``import_from_nir`` default; the files record none). Each ``IF`` node
    becomes SpikingJelly's per-step ``IFNode`` (``r = 1/dt`` is dropped), each ``LIF`` its
    ``LIFNode`` with ``τ = tau/dt`` (``decay_input`` when ``r = 1``, not when ``r = τ``),
    both firing on ``>=``, resetting hard and starting at ``v_reset``, exactly as nirbridge
    exports these nodes directly. Synapses, pooling and flatten keep their NIR meaning.
    The result's ``metadata["dt"]`` is ``dt``. Raises what SpikingJelly's reader raises
    (non-uniform parameters, ``r`` not ``1/dt``...) with a nirbridge error, and
    :class:`~nirbridge.errors.UnsupportedLayerError` for node types it does not read.
    """
    step = DT if dt is None else float(dt)
    if not (np.isfinite(step) and step > 0):
        raise InvalidParameterError(f"dt={dt!r}; the time step must be finite and > 0")
    old = (graph.metadata or {}).get("dt")
    notes = [f"dt = {step:g}: " + ("SpikingJelly's export_to_nir/import_from_nir default "
                                   "(its files record no dt)" if dt is None
                                   else "as given")]
    if old is not None and float(np.asarray(old)) != step:
        notes.append(f"the file's metadata dt = {float(np.asarray(old)):g} is replaced: "
                     "SpikingJelly's reader ignores it")
    out = _read_graph(graph, step, notes)
    out.metadata = {**out.metadata, "dt": step, "imported_from": "spikingjelly"}
    return out, notes


__all__ = ["DT", "FRAMEWORK", "ROUTE", "SJIF", "adapt", "from_file"]
