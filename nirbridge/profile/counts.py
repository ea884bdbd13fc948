"""The counts of one run (:class:`Counts`, per node), and :func:`merge_counts` of runs on
disjoint batches. How they are counted: :mod:`nirbridge.profile.counting`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.errors import InputError
from nirbridge.neurons import is_neuron


@dataclass
class SynapseCount:
    """Synaptic operations of one synapse node; per-sample values are summed over time."""

    node: str
    op: str                      #: node type name (Affine, Conv2d, ...)
    kind: str                    #: "AC" (all inputs spikes) or "MAC" (graded input)
    predecessors: list[str]
    neurobench: bool             #: whether NeuroBench counts this node type
    in_shape: tuple[int, ...]
    effective: float             #: per sample: pairs (non-zero input, non-zero weight)
    dense: float                 #: per sample: every input and weight taken as 1
    effective_per_step: np.ndarray  #: [T], per sample
    dense_per_step: float        #: per sample, the same every step
    synapses: int                #: non-zero-weight connections (stored synapses)
    connections: int             #: all connections (dense synapses)
    #: per sample: the SOPs when each input value is taken as the events it stands for
    #: (:func:`~nirbridge.profile.spiking.event_scales`: a SumPool output of 3 is 3
    #: events, the count a chip that routes spikes through pooling performs); equal to
    #: ``effective`` on spike inputs, None where the input is real-valued
    effective_events: float | None = None


@dataclass
class NeuronCount:
    """Updates and spikes of one neuron node; per-sample values are summed over time."""

    node: str
    op: str
    spiking: bool
    neurons: int                 #: neurons per sample
    updates_dense: float         #: per sample: neurons × T
    updates_driven: float        #: per sample: neuron-steps with non-zero input
    driven_per_step: np.ndarray  #: [T], per sample
    spikes: float | None         #: per sample (None for graded neurons)
    spikes_per_step: np.ndarray | None

    @property
    def rate(self) -> float | None:
        """Spikes per neuron per time step."""
        if self.spikes is None or self.updates_dense == 0:
            return None
        return self.spikes / self.updates_dense

    @property
    def sparsity(self) -> float | None:
        """Fraction of neuron-steps without a spike (NeuroBench activation sparsity)."""
        r = self.rate
        return None if r is None else 1.0 - r


@dataclass
class ParamCount:
    """Parameters of one node (weights, biases, neuron parameters), as element counts."""

    node: str
    weights: int
    nonzero_weights: int
    biases: int
    neuron_params: int

    @property
    def total(self) -> int:
        return self.weights + self.biases + self.neuron_params


@dataclass
class Counts:
    """Target-independent event counts of one run (per sample, summed over T)."""

    time_steps: int
    batch: int
    synapses: dict[str, SynapseCount]
    neurons: dict[str, NeuronCount]
    params: dict[str, ParamCount]
    input_events: dict[str, float]   #: per Input node, non-zero input elements per sample

    # --- totals (per sample)
    @property
    def sop_ac(self) -> float:
        return sum(s.effective for s in self.synapses.values() if s.kind == "AC")

    @property
    def sop_mac(self) -> float:
        return sum(s.effective for s in self.synapses.values() if s.kind == "MAC")

    @property
    def sop_effective(self) -> float:
        return self.sop_ac + self.sop_mac

    @property
    def sop_dense(self) -> float:
        return sum(s.dense for s in self.synapses.values())

    @property
    def nu_dense(self) -> float:
        return sum(n.updates_dense for n in self.neurons.values())

    @property
    def nu_driven(self) -> float:
        return sum(n.updates_driven for n in self.neurons.values())

    @property
    def spikes(self) -> float:
        return sum(n.spikes for n in self.neurons.values() if n.spikes is not None)

    def neurobench(self) -> dict[str, float]:
        """NeuroBench's ``SynapticOperations`` (Linear/Conv nodes only, per sample).

        Equal to NeuroBench's numbers on the same model and data (tested), with one
        difference of method: NeuroBench calls a layer AC when the values it sees all lie
        in {-1, 0, 1}; nirbridge tags from the graph. They agree except where an Input
        node carries binary data: declare it with ``count_events(spike_inputs=...)``.
        """
        nb = [s for s in self.synapses.values() if s.neurobench]
        return {"Effective_MACs": sum(s.effective for s in nb if s.kind == "MAC"),
                "Effective_ACs": sum(s.effective for s in nb if s.kind == "AC"),
                "Dense": sum(s.dense for s in nb)}

    def footprint_bytes(self, weight_bits: float = 32, other_bits: float = 32) -> float:
        """Parameter memory: weights at ``weight_bits``, biases and neuron parameters at
        ``other_bits`` (float32 everywhere by default, as NeuroBench's Footprint)."""
        w = sum(p.weights for p in self.params.values())
        o = sum(p.biases + p.neuron_params for p in self.params.values())
        return (w * weight_bits + o * other_bits) / 8

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (per-step arrays as lists)."""

        def arr(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else [float(v) for v in a]

        return {
            "time_steps": self.time_steps,
            "batch": self.batch,
            "per": "sample, summed over time steps",
            "totals": {"sop_ac": self.sop_ac, "sop_mac": self.sop_mac,
                       "sop_effective": self.sop_effective, "sop_dense": self.sop_dense,
                       "nu_dense": self.nu_dense, "nu_driven": self.nu_driven,
                       "spikes": self.spikes,
                       "footprint_bytes_fp32": self.footprint_bytes()},
            "neurobench": self.neurobench(),
            "synapses": {
                k: {"op": s.op, "kind": s.kind, "predecessors": list(s.predecessors),
                    "neurobench": s.neurobench, "in_shape": list(s.in_shape),
                    "effective": s.effective, "dense": s.dense,
                    "effective_per_step": arr(s.effective_per_step),
                    "dense_per_step": s.dense_per_step, "synapses": s.synapses,
                    "connections": s.connections, "effective_events": s.effective_events}
                for k, s in self.synapses.items()},
            "neurons": {
                k: {"op": n.op, "spiking": n.spiking, "neurons": n.neurons,
                    "updates_dense": n.updates_dense, "updates_driven": n.updates_driven,
                    "driven_per_step": arr(n.driven_per_step), "spikes": n.spikes,
                    "spikes_per_step": arr(n.spikes_per_step), "rate": n.rate,
                    "sparsity": n.sparsity}
                for k, n in self.neurons.items()},
            "params": {k: {"weights": p.weights, "nonzero_weights": p.nonzero_weights,
                           "biases": p.biases, "neuron_params": p.neuron_params}
                       for k, p in self.params.items()},
            "input_events": dict(self.input_events),
        }


_NON_PARAM_FIELDS = {"input_type", "output_type", "metadata", "input_shape", "stride",
                     "padding", "dilation", "groups", "kernel_size", "start_dim", "end_dim",
                     "compare", "delay"}


def _param_count(name: str, node: nir.NIRNode) -> ParamCount | None:
    weight_attr = {nir.Affine: "weight", nir.Linear: "weight", nir.Conv1d: "weight",
                   nir.Conv2d: "weight", nir.Scale: "scale"}
    wa = next((a for t, a in weight_attr.items() if isinstance(node, t)), None)
    if wa is not None:
        w = np.asarray(getattr(node, wa))
        bias = getattr(node, "bias", None)
        nb = 0 if bias is None else int(np.size(bias))
        if isinstance(node, (nir.Conv1d, nir.Conv2d)) and bias is not None \
                and not np.any(np.asarray(bias)):
            nb = 0  # NIR writes a zero bias for bias-free convolutions
        # torch's count: numpy's is several times slower on float arrays
        return ParamCount(name, int(w.size), int(torch.count_nonzero(torch.as_tensor(w))),
                          nb, 0)
    if is_neuron(node):
        n = 0
        for fname, val in vars(node).items():
            if fname in _NON_PARAM_FIELDS:
                continue
            a = np.asarray(val) if isinstance(val, (np.ndarray, float, int)) and \
                not isinstance(val, bool) else None
            if a is not None and a.dtype.kind in "fiu":
                n += int(a.size)
        return ParamCount(name, 0, 0, 0, n)
    return None


def merge_counts(parts: list[Counts]) -> Counts:
    """The counts of one run over all the samples of ``parts`` (runs of the same graph and
    steps on disjoint batches): every per-sample value is the batch-weighted mean, so the
    result equals :func:`count_events` of one run over all those samples."""
    if not parts:
        raise InputError("merge_counts() needs at least one Counts")
    first = parts[0]
    if any(c.time_steps != first.time_steps or c.synapses.keys() != first.synapses.keys()
           or c.neurons.keys() != first.neurons.keys() for c in parts):
        raise InputError("merge_counts(): the parts count different graphs or time steps")
    w = np.array([c.batch for c in parts], dtype=np.float64)
    w = w / w.sum()

    def mean(values: list[Any]) -> Any:
        if values[0] is None:
            return None
        return sum(wi * np.asarray(v, dtype=np.float64) for wi, v in zip(w, values,
                                                                          strict=True))

    def events(k: str) -> float | None:
        v = [c.synapses[k].effective_events for c in parts]
        return None if any(e is None for e in v) else float(mean(v))

    synapses = {k: replace(s, effective=float(mean([c.synapses[k].effective for c in parts])),
                           effective_per_step=mean([c.synapses[k].effective_per_step
                                                    for c in parts]),
                           effective_events=events(k))
                for k, s in first.synapses.items()}
    neurons = {}
    for k, n in first.neurons.items():
        spikes = mean([c.neurons[k].spikes for c in parts])
        neurons[k] = replace(
            n, updates_driven=float(mean([c.neurons[k].updates_driven for c in parts])),
            driven_per_step=mean([c.neurons[k].driven_per_step for c in parts]),
            spikes=None if spikes is None else float(spikes),
            spikes_per_step=mean([c.neurons[k].spikes_per_step for c in parts]))
    inputs = {k: float(mean([c.input_events[k] for c in parts])) for k in first.input_events}
    return Counts(time_steps=first.time_steps, batch=int(sum(c.batch for c in parts)),
                  synapses=synapses, neurons=neurons, params=dict(first.params),
                  input_events=inputs)


__all__ = ["Counts", "NeuronCount", "ParamCount", "SynapseCount", "merge_counts"]
