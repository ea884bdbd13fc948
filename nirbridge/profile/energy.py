"""Pricing event counts with a target profile (:func:`estimate_energy`)::

    E = e_ac·SOP_ac + e_mac·SOP_mac + e_nu·NU + e_spike·spikes + P_static·t

A constant that no source gives is ``None`` (never 0): the total is then ``None`` and
the report names the missing terms. Every figure is labelled ``"model estimate (profile
X, evidence Y)"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nirbridge.profile.counting import Counts
from nirbridge.profile.targets import (
    Constant,
    Profile,
    energy_label,
    load_profile,
    weakest_evidence,
)
from nirbridge.units import PJ


@dataclass
class EnergyTerm:
    """One term of the energy sum: ``count × unit`` (J), or ``None`` when unknown."""

    name: str            #: ac | mac | nu | spike | static
    constant: str        #: the profile entry that prices it
    count: float | None  #: events per sample (seconds for static; None if unknown)
    unit: float | None   #: pJ per event (W for static)
    energy_j: float | None
    charged: bool
    evidence: str
    source: str


@dataclass
class EnergyReport:
    """Energy per sample of one run on one target: per term, per layer and in total."""

    profile: str
    label: str
    evidence: str
    scope: str
    prices: str
    terms: dict[str, EnergyTerm]
    per_layer: dict[str, dict[str, float | None]]
    total_j: float | None
    known_j: float
    missing: list[str]
    not_charged: list[str]
    time_s: float | None
    ann_equivalent_j: float | None
    notes: list[str]
    counts: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per"] = "sample"
        return d


def _term_energy(count: float, unit: float | None, scale: float) -> float | None:
    if count == 0:
        return 0.0  # nothing happened: 0 events cost 0 whatever the constant
    return None if unit is None else count * unit * scale


def estimate_energy(counts: Counts, profile: Profile | str | Path, *,
                    time_step_s: float | None = None) -> EnergyReport:
    """Price ``counts`` with ``profile``: per term, per layer (node) and in total, per sample.

    ``prices = "events"``: ``e_ac·SOP_ac + e_mac·SOP_mac`` on effective SOPs;
    ``prices = "dense_mac"`` (GPU/CPU): every synapse op dense, as a MAC. Neuron updates
    are charged on the profile's basis (``dense``: every neuron every step, with
    ``e_nu_idle_pj`` for the steps without input if given; ``driven``: only steps with
    input); spikes at ``e_spike``; static power over ``T × time_step_s`` (the argument
    overrides the profile). ``scope = "all_in"`` charges the SOP term(s) only.

    A charged constant that is ``None`` makes its term and the total ``None`` (listed in
    ``missing``) unless the term counted nothing. ``known_j`` is the sum of the known
    terms. The ANN-equivalent prices the dense SOP count at this profile's MAC price.
    """
    prof = load_profile(profile)
    notes: list[str] = []
    e = prof.energy
    all_in = prof.scope == "all_in"
    dense = prof.prices == "dense_mac"

    def const(key: str) -> Constant:
        return e[key]

    def charged(key: str, is_sop: bool) -> bool:
        if all_in and not is_sop:
            return False
        return const(key).charged

    # --- synapse terms, per node
    per_layer: dict[str, dict[str, float | None]] = {}
    sop_count = {"ac": 0.0, "mac": 0.0}
    for name, s in counts.synapses.items():
        if dense:
            key, cnt = "mac", s.dense
        else:
            key, cnt = s.kind.lower(), s.effective
        sop_count[key] += cnt
        c = const(f"e_{key}_pj")
        val = _term_energy(cnt, c.value, PJ) if charged(f"e_{key}_pj", True) else 0.0
        per_layer[name] = {key: val, "total": val}

    # --- neuron terms, per node
    nu_idle = e.get("e_nu_idle_pj")
    use_idle = (prof.neuron_updates == "dense" and nu_idle is not None
                and nu_idle.charged and not all_in)
    nu_count = 0.0
    spike_count = 0.0
    nu_energy_sum: float | None = 0.0
    c_nu, c_spk = const("e_nu_pj"), const("e_spike_pj")
    nu_on, spk_on = charged("e_nu_pj", False), charged("e_spike_pj", False)
    for name, n in counts.neurons.items():
        if prof.neuron_updates == "driven":
            nu_n = n.updates_driven
            e_nu = _term_energy(nu_n, c_nu.value, PJ)
        elif use_idle:
            assert nu_idle is not None
            nu_n = n.updates_dense
            a = _term_energy(n.updates_driven, c_nu.value, PJ)
            i = _term_energy(n.updates_dense - n.updates_driven, nu_idle.value, PJ)
            e_nu = None if a is None or i is None else a + i
        else:
            nu_n = n.updates_dense
            e_nu = _term_energy(nu_n, c_nu.value, PJ)
        nu_count += nu_n
        sp = n.spikes or 0.0
        spike_count += sp
        e_nu = e_nu if nu_on else 0.0
        e_sp = _term_energy(sp, c_spk.value, PJ) if spk_on else 0.0
        tot = None if e_nu is None or e_sp is None else e_nu + e_sp
        per_layer[name] = {"nu": e_nu, "spike": e_sp, "total": tot}
        if nu_energy_sum is not None:
            nu_energy_sum = None if e_nu is None else nu_energy_sum + e_nu

    # --- time
    ts = time_step_s if time_step_s is not None else prof.time_step_s
    time_s = None if ts is None else counts.time_steps * ts

    terms: dict[str, EnergyTerm] = {}
    missing: list[str] = []

    def add(name: str, key: str, count: float | None, energy: float | None,
            is_sop: bool) -> None:
        c = const(key)
        on = charged(key, is_sop)
        terms[name] = EnergyTerm(name=name, constant=key, count=count, unit=c.value,
                                 energy_j=energy if on else None, charged=on,
                                 evidence=c.evidence, source=c.source)
        if on and energy is None:
            missing.append(key)

    add("ac", "e_ac_pj", sop_count["ac"], _term_energy(sop_count["ac"],
        const("e_ac_pj").value, PJ), True)
    add("mac", "e_mac_pj", sop_count["mac"], _term_energy(sop_count["mac"],
        const("e_mac_pj").value, PJ), True)
    add("nu", "e_nu_pj", nu_count, nu_energy_sum, False)
    if use_idle and nu_energy_sum is None:
        assert nu_idle is not None
        missing[:] = [m for m in missing if m != "e_nu_pj"]
        missing.extend(k for k, c in (("e_nu_pj", c_nu), ("e_nu_idle_pj", nu_idle))
                       if c.value is None)
    add("spike", "e_spike_pj", spike_count, _term_energy(spike_count, c_spk.value, PJ),
        False)
    p = const("p_static_w")
    static = None if time_s is None else _term_energy(time_s, p.value, 1.0)
    add("static", "p_static_w", time_s, static, False)
    if charged("p_static_w", False) and time_s is None:
        if p.value is not None:
            missing[:] = [m for m in missing if m != "p_static_w"]
        missing.append("time_step_s")
        notes.append(f"profile {prof.name} gives no time_step_s: static energy needs the "
                     "run's duration (pass time_step_s=)")
    if use_idle:
        assert nu_idle is not None
        terms["nu"].source += f" | idle steps: {nu_idle.value} pJ ({nu_idle.source})"
        terms["nu"].evidence = weakest_evidence([c_nu.evidence, nu_idle.evidence])

    not_charged = [t.constant for t in terms.values() if not t.charged]
    known = sum(t.energy_j for t in terms.values() if t.charged and t.energy_j is not None)
    total = None if missing else known
    evidence = weakest_evidence(t.evidence for t in terms.values()
                                if t.charged and t.energy_j)
    if evidence == "unknown":
        evidence = prof.evidence

    if not dense and counts.sop_mac > 0 and prof.kind == "neuromorphic":
        notes.append(f"{counts.sop_mac:.6g} SOPs per sample have graded (MAC) input; "
                     f"{prof.name} prices them at e_mac_pj "
                     f"({'unknown' if const('e_mac_pj').value is None else 'given'})")
    if all_in:
        notes.append(f"scope all_in: {prof.name}'s figure per synaptic event includes "
                     "neuron updates, spikes and static power; nothing else is charged")
    mac = const("e_mac_pj").value
    ann = None if mac is None else counts.sop_dense * mac * PJ
    return EnergyReport(
        profile=prof.name, label=energy_label(prof.name, evidence), evidence=evidence,
        scope=prof.scope,
        prices=prof.prices, terms=terms, per_layer=per_layer, total_j=total, known_j=known,
        missing=missing, not_charged=not_charged, time_s=time_s, ann_equivalent_j=ann,
        notes=notes,
        counts={"sop_ac": counts.sop_ac, "sop_mac": counts.sop_mac,
                "sop_dense": counts.sop_dense, "nu_dense": counts.nu_dense,
                "nu_driven": counts.nu_driven, "spikes": counts.spikes,
                "time_steps": counts.time_steps})


__all__ = ["EnergyReport", "EnergyTerm", "estimate_energy"]
