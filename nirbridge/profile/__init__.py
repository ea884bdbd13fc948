"""Counting events, pricing them with a target profile, and estimating a chip mapping.

Three steps, kept apart on purpose (specs/energy.md), one submodule each:

1. :func:`count_events` (:mod:`~nirbridge.profile.counting`) counts what a run did,
   *exactly and independently of any target*: synaptic operations, neuron updates,
   spikes, the parameter footprint, per sample and summed over time steps as NeuroBench
   does; :meth:`Counts.neurobench` gives NeuroBench's three numbers. Recurrent graphs
   count as the reference runs them: a recurrent synapse's events at step t are the
   spikes of step t − 1 × its fan-out.
2. :func:`estimate_energy` (:mod:`~nirbridge.profile.energy`) prices the counts with a
   :class:`Profile` (one TOML file in ``nirbridge/profiles/``, loaded and schema-checked
   by :func:`load_profile` in :mod:`~nirbridge.profile.targets`, which documents the
   schema)::

       E = e_ac·SOP_ac + e_mac·SOP_mac + e_nu·NU + e_spike·spikes + P_static·t

   A constant that no source gives is ``None`` (never 0): the total is then ``None``
   and the report names the missing terms. Every figure is labelled
   ``"model estimate (profile X, evidence Y)"``.
3. :func:`map_to_chip` (:mod:`~nirbridge.profile.mapping`) estimates the cores a graph
   needs on a chip (Loihi, Loihi 2, TrueNorth, Speck, Xylo Audio 2), which limit binds
   and whether it fits; limits that no source publishes are flagged as assumptions. A
   recurrent synapse's weights sit on the cores of the neurons it feeds.

:mod:`~nirbridge.profile.spiking` says which node types spike (:func:`is_spiking`) and
tags every node's output as spikes or graded values (:func:`payload_tags`), from which a
synapse is AC or MAC, and says which outputs are pooled events (:func:`event_scales`:
a SumPool of spikes outputs event counts), from which a profile with
``graded_inputs = "events"`` prices one operation per event.
"""

from __future__ import annotations

from nirbridge.profile.counting import (
    Counts,
    EventCounter,
    NeuronCount,
    ParamCount,
    SynapseCount,
    count_events,
    count_run,
    fanout_map,
    merge_counts,
    recurrent_synapses,
)
from nirbridge.profile.energy import EnergyReport, EnergyTerm, estimate_energy
from nirbridge.profile.mapping import LayerMapping, Mapping, map_to_chip
from nirbridge.profile.spiking import (
    NEUROBENCH_TYPES,
    PASS_THROUGH,
    SPIKING_STANDARD,
    SYNAPSE_TYPES,
    event_scales,
    is_spiking,
    payload_tags,
    synapse_kind,
)
from nirbridge.profile.targets import (
    ENERGY_KEYS,
    EVIDENCE,
    GRADED_INPUTS,
    KINDS,
    LIMIT_KEYS,
    MAPPERS,
    NU_BASES,
    OPTIONAL_ENERGY_KEYS,
    PRICES,
    PROFILES_DIR,
    QUANT_FLOAT_KEYS,
    QUANT_INT_KEYS,
    REQUIRED_LIMITS,
    SCOPES,
    Constant,
    Limit,
    Profile,
    Quantization,
    energy_label,
    list_profiles,
    load_profile,
    weakest_evidence,
)

__all__ = [
    "ENERGY_KEYS",
    "EVIDENCE",
    "GRADED_INPUTS",
    "KINDS",
    "LIMIT_KEYS",
    "MAPPERS",
    "NEUROBENCH_TYPES",
    "NU_BASES",
    "OPTIONAL_ENERGY_KEYS",
    "PASS_THROUGH",
    "PRICES",
    "PROFILES_DIR",
    "QUANT_FLOAT_KEYS",
    "QUANT_INT_KEYS",
    "REQUIRED_LIMITS",
    "SCOPES",
    "SPIKING_STANDARD",
    "SYNAPSE_TYPES",
    "Constant",
    "Counts",
    "EnergyReport",
    "EventCounter",
    "EnergyTerm",
    "LayerMapping",
    "Limit",
    "Mapping",
    "NeuronCount",
    "ParamCount",
    "Profile",
    "Quantization",
    "SynapseCount",
    "count_events",
    "count_run",
    "merge_counts",
    "energy_label",
    "estimate_energy",
    "event_scales",
    "fanout_map",
    "is_spiking",
    "list_profiles",
    "load_profile",
    "map_to_chip",
    "payload_tags",
    "recurrent_synapses",
    "synapse_kind",
    "weakest_evidence",
]
