"""Pricing event counts with a target profile (:func:`estimate_energy`)::

    E = e_ac·SOP_ac + e_mac·SOP_mac + e_nu·NU + e_spike·spikes + P_static·t

A constant that no source gives is ``None`` (never 0): the total is then ``None``, the
report names the missing terms and the known terms stand as a lower bound
(``known_j``; every term is an energy ≥ 0). Every figure is labelled ``"model estimate
(profile X, evidence Y)"``. The static part ``P_static·t`` and the dynamic part (the
event terms) are reported apart (``static_j``, ``dynamic_j``) with the one that
dominates; ``t`` is ``T ×`` the time step given (``time_step_s=``, the CLI's
``--time-step``, a recipe's ``[profile] time_step_s``) or the profile's published one.
A profile with ``graded_inputs = "events"`` prices a synapse fed by pooled events at
one operation per event routed
(:attr:`~nirbridge.profile.counting.SynapseCount.effective_events`) instead of one per
non-zero value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nirbridge.errors import InputError
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
    #: static part ``P_static·t`` (J; None: unknown; 0 when the model charges none)
    static_j: float | None = None
    #: dynamic part, the event terms (J; None when one of them is unknown)
    dynamic_j: float | None = None
    #: the known event terms (a lower bound of the dynamic part)
    dynamic_known_j: float = 0.0
    #: ``"static"``, ``"dynamic"`` or None (undecidable: an unknown part could dominate)
    dominant: str | None = None
    #: the time step used (s), and where it came from: ``"argument"`` (the caller, the
    #: CLI's --time-step, a recipe), the profile's source text, or None
    time_step_s: float | None = None
    time_step_source: str | None = None
    #: the profile's ``graded_inputs`` and the synapse nodes it priced as events
    graded_inputs: str = "values"
    priced_as_events: list[str] = field(default_factory=list)
    #: one sentence: what this profile's model includes
    includes: str = ""

    @property
    def lower_bound(self) -> bool:
        """Whether the total is unknown and ``known_j`` is only a lower bound."""
        return self.total_j is None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per"] = "sample"
        d["lower_bound"] = self.lower_bound
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
    overrides the profile's, and must be a finite number > 0). ``scope = "all_in"``
    charges the SOP term(s) only. ``graded_inputs = "events"``: a synapse whose input is
    pooled events (``effective_events`` not None, tagged MAC) is priced as accumulates at
    ``e_ac``, one per event.

    A charged constant that is ``None`` makes its term and the total ``None`` (listed in
    ``missing``) unless the term counted nothing. ``known_j`` is the sum of the known
    terms (a lower bound of the total). ``static_j`` and ``dynamic_j`` split the total;
    ``dominant`` names the larger where it is decidable. The ANN-equivalent prices the
    dense SOP count at this profile's MAC price.
    """
    if time_step_s is not None and (isinstance(time_step_s, bool)
                                    or not isinstance(time_step_s, (int, float))
                                    or not math.isfinite(time_step_s) or time_step_s <= 0):
        raise InputError(f"estimate_energy(): time_step_s = {time_step_s!r} must be a "
                         "finite number of seconds > 0 (or None: the profile's own)")
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
    as_events: list[str] = []
    by_value = by_event = 0.0  # those synapses' SOPs: one per non-zero value, per event
    for name, s in counts.synapses.items():
        if dense:
            key, cnt = "mac", s.dense
        elif (prof.graded_inputs == "events" and s.kind == "MAC"
              and s.effective_events is not None):
            key, cnt = "ac", s.effective_events
            as_events.append(name)
            by_value += s.effective
            by_event += cnt
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
    if time_step_s is not None:
        ts, ts_source = float(time_step_s), "argument"
    elif prof.time_step is not None:
        ts, ts_source = prof.time_step.value, prof.time_step.source
    else:
        ts, ts_source = None, None
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
        notes.append(f"profile {prof.name} publishes no time step: static energy needs the "
                     "run's duration; give one with --time-step SECONDS (nirbridge "
                     "profile), [profile] time_step_s in a recipe, or "
                     "estimate_energy(..., time_step_s=)")
    elif (charged("p_static_w", False) and ts_source != "argument"
          and prof.time_step is not None and prof.time_step.evidence != "unknown"):
        st = terms["static"]
        st.evidence = weakest_evidence([st.evidence, prof.time_step.evidence])
        st.source += f" | time step {ts:g} s: {prof.time_step.source}"
    if use_idle:
        assert nu_idle is not None
        terms["nu"].source += f" | idle steps: {nu_idle.value} pJ ({nu_idle.source})"
        terms["nu"].evidence = weakest_evidence([c_nu.evidence, nu_idle.evidence])

    not_charged = [t.constant for t in terms.values() if not t.charged]
    known = sum(t.energy_j for t in terms.values() if t.charged and t.energy_j is not None)
    total = None if missing else known
    # --- static and dynamic parts, and which dominates
    st = terms["static"]
    static_known = st.energy_j if st.charged else 0.0
    static = static_known if (not st.charged or st.energy_j is not None) else None
    dyn_terms = [t for n, t in terms.items() if n != "static" and t.charged]
    dyn_known = sum(t.energy_j for t in dyn_terms if t.energy_j is not None)
    dynamic = None if any(t.energy_j is None for t in dyn_terms) else dyn_known
    dominant = _dominant(static, dynamic, dyn_known, st.charged)
    if st.charged and static is not None:
        notes.append(_dominance_note(static, dynamic, dyn_known, dominant, missing))
    evidence = weakest_evidence(t.evidence for t in terms.values()
                                if t.charged and t.energy_j)
    if evidence == "unknown":
        evidence = prof.evidence

    if as_events:
        notes.append(f"graded_inputs = events: {', '.join(as_events)} take pooled events "
                     f"and are priced one operation per event routed, "
                     f"{by_event:.6g} SOPs per sample at e_ac_pj "
                     f"(one per non-zero value would count {by_value:.6g})")
    if not dense and sop_count["mac"] > 0 and prof.kind == "neuromorphic":
        notes.append(f"{sop_count['mac']:.6g} SOPs per sample have graded (MAC) input; "
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
                "time_steps": counts.time_steps},
        static_j=static, dynamic_j=dynamic, dynamic_known_j=dyn_known, dominant=dominant,
        time_step_s=ts, time_step_source=ts_source, graded_inputs=prof.graded_inputs,
        priced_as_events=as_events, includes=prof.includes)


def _dominance_note(static: float, dynamic: float | None, dyn_known: float,
                    dominant: str | None, missing: list[str]) -> str:
    """One sentence: which part dominates, by how much, or why it cannot be said."""
    from nirbridge.units import format_energy

    st, dk = format_energy(static, digits=4), format_energy(dyn_known, digits=4)
    if dominant is None:
        unknown = [m for m in missing if m != "time_step_s"]
        return (f"static {st} exceeds the known dynamic terms ({dk}), but "
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} unknown: "
                "which part dominates cannot be said")
    total = static + (dynamic if dynamic is not None else dyn_known)
    share = (static if dominant == "static" else total - static) / total if total else 0.0
    part = "static" if dominant == "static" else "dynamic"
    return (f"{part} energy dominates: {share:.1%} of "
            f"{'the' if dynamic is not None else 'the known'} total (static {st}, dynamic "
            f"{'' if dynamic is not None else '≥ '}{dk})")


def _dominant(static: float | None, dynamic: float | None, dyn_known: float,
              static_charged: bool) -> str | None:
    """Which part is larger, where the known figures decide it: both known → the larger;
    the dynamic part unknown but its known terms already above a known static part →
    dynamic; a model without static power → dynamic; otherwise None."""
    if not static_charged:
        return "dynamic"
    if static is None:
        return None
    if dynamic is not None:
        return "static" if static > dynamic else "dynamic"
    return "dynamic" if dyn_known > static else None


__all__ = ["EnergyReport", "EnergyTerm", "estimate_energy"]
