"""Which spikes of a run float rounding could decide: the near-threshold analysis.

A float32 backend computes the same equations as the float64 reference, but a value that
lies within rounding of a threshold may fall on the other side of it. Such a flip is not
a different reading of the graph; everything after it (the state was reset, or not) is
its consequence. This module finds those entries, generically, from a recorded run:

For a spiking neuron layer, the neuron's own registered step
(:func:`nirbridge.neurons.spec_of`, ``spec.step`` with ``spec.kwargs``) is run again,
vectorised over every step at once, from the recorded input at ``t`` and the recorded
state after ``t − 1`` (``spec.initial_state`` at ``t = 0``). It must reproduce the
recorded output exactly (otherwise the layer is reported as not analysable). It is then
run with the input and the state perturbed by :data:`ROUNDING_REL` of each one's largest
magnitude in the layer, each alone and all together, up and down; an entry whose output
changes under any of these perturbations is **near threshold**: within rounding of
deciding the other way. Nothing here names a neuron.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.neurons import spec_of

#: The perturbation, relative to the largest magnitude of the input (or of a state field)
#: over the layer. float32 keeps a 24-bit significand (unit rounding 2^-24 of a value);
#: a float32 run adds a few roundings per step (the synapse's sum over its fan-in, the
#: neuron's multiply-adds) and carries them in the state from step to step, so its
#: values stray from float64 by some ulps of the layer's largest magnitude. 2^-20 is 16
#: such ulps: above what a float32 run accumulates on a small layer, and still ~10^5
#: times below a change a genuine difference (a weight, a threshold, a reset) makes.
ROUNDING_REL = 2.0 ** -20


@dataclass
class NearThreshold:
    """The analysis of one spiking layer: ``mask`` (``[T, B, ...]`` bool, the entries
    within rounding of a threshold) or, where it could not be made, None and ``reason``."""

    node: str
    mask: np.ndarray | None = None
    reason: str | None = None

    @property
    def count(self) -> int | None:
        """How many entries are near threshold (None: not analysed)."""
        return None if self.mask is None else int(self.mask.sum())

    def explains(self, step: int, differs: np.ndarray) -> bool | None:
        """Whether every entry in ``differs`` (``[B, ...]`` bool, the divergent entries
        at ``step``) is near threshold (None: not analysed)."""
        if self.mask is None:
            return None
        return bool(self.mask[step][differs].all())


def _tensor(x: Any) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))


def _is_integer(x: torch.Tensor) -> bool:
    """All values whole numbers: float32 holds them exactly (below 2^24), so rounding
    cannot move them (spike memories, counters); perturbing them would invent flips."""
    return bool(torch.all(x == torch.round(x))) and float(x.abs().max()) < 2.0 ** 24


def near_threshold(name: str, node: nir.NIRNode, record: Any, dt: float,
                   rel: float = ROUNDING_REL) -> NearThreshold:
    """The near-threshold entries of spiking neuron ``node`` (called ``name``) in a run's
    ``record`` (a :class:`~nirbridge.backends.reference.RunRecord` with ``input``,
    ``output`` and ``states``) at time step ``dt`` (see the module documentation)."""
    spec = spec_of(node)
    if spec is None or not spec.spiking:
        return NearThreshold(name, reason="not a spiking neuron")
    if record is None or record.input is None or record.output is None:
        return NearThreshold(name, reason="its input or output was not recorded")
    fields = spec.state_fields
    if any(f not in record.states for f in fields):
        return NearThreshold(name, reason="its state was not recorded")
    x = _tensor(record.input).to(torch.float64)
    y = _tensor(record.output).to(torch.float64)
    states = {f: _tensor(record.states[f]).to(torch.float64) for f in fields}
    steps, batch = x.shape[:2]
    init = spec.initial_state(node, x[0])
    prev = {}
    for f in fields:
        s0 = torch.as_tensor(getattr(init, f), dtype=torch.float64)
        s0 = torch.broadcast_to(s0, states[f].shape[1:])
        prev[f] = torch.cat([s0[None], states[f][:-1]]).reshape(steps * batch,
                                                                  *states[f].shape[2:])
    flat_x = x.reshape(steps * batch, *x.shape[2:])
    kwargs = spec.kwargs(node, dt, torch.float64, x.device)

    def run(dx: torch.Tensor | float, ds: Mapping[str, torch.Tensor | float]) -> torch.Tensor:
        state = spec.state(*(prev[f] + ds.get(f, 0.0) for f in fields))
        with torch.no_grad():
            out, _ = spec.step(flat_x + dx, state, **kwargs)
        return out.reshape(y.shape)

    base = run(0.0, {})
    if not torch.equal(base, y):
        return NearThreshold(name, reason="its step, rerun from the recorded input and "
                             "state, does not reproduce the recorded output (max |Δ| "
                             f"{float((base - y).abs().max()):.3g})")
    quantities = {"input": flat_x, **prev}
    eps = {q: rel * float(v.abs().max()) for q, v in quantities.items()
           if v.numel() and not _is_integer(v)}
    eps = {q: e for q, e in eps.items() if e > 0}
    flips = torch.zeros_like(y, dtype=torch.bool)
    trials = [{q: e} for q, e in eps.items()] + ([dict(eps)] if len(eps) > 1 else [])
    for trial in trials:
        for sign in (1.0, -1.0):
            ds = {q: sign * e for q, e in trial.items() if q != "input"}
            flips |= run(sign * trial.get("input", 0.0), ds) != base
    return NearThreshold(name, mask=flips.cpu().numpy())


def near_threshold_layers(graph: nir.NIRGraph, records: Mapping[str, Any], dt: float,
                          rel: float = ROUNDING_REL) -> dict[str, NearThreshold]:
    """:func:`near_threshold` of every spiking neuron layer of ``graph`` (flattened) in a
    run's ``records``."""
    out = {}
    for name, node in graph.nodes.items():
        spec = spec_of(node)
        if spec is not None and spec.spiking:
            out[name] = near_threshold(name, node, records.get(name), dt, rel)
    return out


__all__ = ["ROUNDING_REL", "NearThreshold", "near_threshold", "near_threshold_layers"]
