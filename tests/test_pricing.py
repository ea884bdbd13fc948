"""Pricing per target: every shipped target prices a tiny run to a
total or an explicit lower bound, each figure checked against a hand computation from the
profile's published constants; static and dynamic parts; the time step (argument, CLI,
recipe, the profile's published one); event semantics of pooled inputs (``events`` vs
``values``), counted by explicit loops over the input, never by the module's own
convolution trick."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from nirbridge.cli import main
from nirbridge.errors import InputError, ProfileError, RecipeError
from nirbridge.profile import count_run, estimate_energy, list_profiles, load_profile
from nirbridge.profile.spiking import event_scales, payload_tags
from nirbridge.report import build_report, format_table, validate_report

PJ = 1e-12
T, B = 4, 2


def lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2e-3), r=np.full(n, 1.0), v_leak=np.zeros(n),
                   v_threshold=np.full(n, 0.5), v_reset=np.zeros(n))


#: The Affine's weights: column 2 has one zero weight, column 3 two.
W = np.array([[0.4, 0.3, 0.0, 0.0],
              [0.2, -0.5, 0.6, 0.0]])


def pooled_graph(pool: str = "sum") -> nir.NIRGraph:
    """Input [1, 4, 4] (spikes) → 2×2 pooling (stride 2) → Flatten → Affine(4 → 2) → LIF."""
    k = np.array([2, 2])
    p = (nir.SumPool2d(k, k, np.array([0, 0])) if pool == "sum"
         else nir.AvgPool2d(k, k, np.array([0, 0])))
    nodes = {"in": nir.Input(np.array([1, 4, 4])), "pool": p,
             "flat": nir.Flatten(start_dim=0, end_dim=-1,
                                 input_type={"input": np.array([1, 2, 2])}),
             "fc": nir.Affine(W, np.zeros(2)), "lif": lif(2), "out": nir.Output(np.array([2]))}
    edges = [("in", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def spikes_in() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((T, B, 1, 4, 4)) < 0.5).astype(np.float64)


@pytest.fixture(scope="module")
def tiny():
    """The run and every count the prices need, by hand from the input and the output."""
    x = spikes_in()
    g = pooled_graph()
    out, c = count_run(g, torch.from_numpy(x), spike_inputs=True)
    # 2×2 window sums of each sample by reshaping (no pooling routine involved)
    win = x.reshape(T, B, 2, 2, 2, 2).sum(axis=(3, 5)).reshape(T, B, 4)
    fan = (W != 0).sum(axis=0)                                   # [4]: 2, 2, 1, 0
    hand = {
        "pool_sop": x.sum() / B,                       # every input spike, one window
        "fc_values": ((win != 0) * fan).sum() / B,     # one op per non-zero value
        "fc_events": (win * fan).sum() / B,            # one op per event routed
        "spikes": np.asarray(out).sum() / B,
        "nu_dense": 2.0 * T,
        # neuron-steps whose input (the Affine's output; no bias) is non-zero
        "nu_driven": (np.abs(win @ W.T) > 1e-12).sum() / B,
    }
    return g, c, hand


def test_counts_by_hand(tiny):
    g, c, h = tiny
    assert c.synapses["pool"].kind == "AC" and c.synapses["fc"].kind == "MAC"
    assert c.synapses["pool"].effective == h["pool_sop"]
    assert c.synapses["pool"].effective_events == h["pool_sop"]  # spikes: the same
    assert c.synapses["fc"].effective == h["fc_values"]
    assert c.synapses["fc"].effective_events == h["fc_events"]
    # the pooled values go up to 4, so the two counts differ (the 1.26-1.37x)
    assert h["fc_events"] > h["fc_values"] > 0
    assert c.spikes == h["spikes"] and c.spikes > 0
    assert c.nu_driven == h["nu_driven"] and 0 < c.nu_driven < h["nu_dense"]
    scales = event_scales(g, payload_tags(g, True))
    assert scales["pool"] == scales["flat"] == 1.0 and scales["fc"] is None


def test_avgpool_events_scale_by_area():
    x = spikes_in()
    g = pooled_graph("avg")
    _, c = count_run(g, torch.from_numpy(x), spike_inputs=True)
    win = x.reshape(T, B, 2, 2, 2, 2).sum(axis=(3, 5)).reshape(T, B, 4)
    fan = (W != 0).sum(axis=0)
    assert event_scales(g, payload_tags(g, True))["pool"] == 4.0
    assert c.synapses["fc"].effective_events == pytest.approx((win * fan).sum() / B)
    # a graded (undeclared) input: the pooled values are not events, none are counted
    _, c2 = count_run(g, torch.from_numpy(x))
    assert c2.synapses["pool"].effective_events is None
    assert c2.synapses["fc"].effective_events is None


def _speck_static(ts: float) -> float:
    return 0.42e-3 * T * ts


def test_every_target_priced_by_hand(tiny):
    """Each shipped target on the tiny run with a 1 ms step: the total (or the known
    terms, when the total is a labelled lower bound) from the published constants."""
    _, c, h = tiny
    ts = 1e-3
    nu_driven = h["nu_driven"]
    nu_idle = h["nu_dense"] - nu_driven
    ac, mac, spk = h["pool_sop"], h["fc_values"], h["spikes"]
    l2_step = 1.528454e-4
    want = {  # profile: (total or None, known terms, static part or None)
        # Speck: rest power + a derived all-in energy per spike; the pooled fc input is
        # priced as events (not charged: folded into the per-spike figure)
        "speck": (4420 * PJ * spk + _speck_static(ts), None, _speck_static(ts)),
        # Loihi 2 charges the argument's time step; fc's graded op has no published price
        "loihi2": (None, (23.6 * ac + 81 * nu_driven + 52 * nu_idle + 1.7 * spk) * PJ
                   + 0.232078 * T * ts, 0.232078 * T * ts),
        "loihi": (None, (23.6 * ac + 81 * nu_driven + 52 * nu_idle + 1.7 * spk) * PJ, None),
        "loihi-sanafe": (None, (35.5 * ac + 72.8 * nu_driven + 51.2 * nu_idle
                                + 180.3 * spk) * PJ, None),
        "xylo-audio2": (None, 0.0002501 * T * ts, 0.0002501 * T * ts),
        "seneca": (None, 2.8 * ac * PJ, None),
        "cmos45-fp32": ((0.9 * ac + 4.6 * mac) * PJ, None, 0.0),
        "cmos45-int8": ((0.03 * ac + 0.23 * mac) * PJ, None, 0.0),
        "cmos45-fp32-sram": ((60.9 * ac + 64.6 * mac + 45.5 * h["nu_dense"] + 20 * spk)
                             * PJ, None, 0.0),
        "gpu-h100": (1.415 * (16 + 8) * T * PJ, None, 0.0),  # dense: 16 + 4·2 per step
        "truenorth": (None, 26.0 * ac * PJ, 0.0),
        "odin": (None, 12.7 * ac * PJ, None),
    }
    assert set(want) == set(list_profiles())
    for name, (total, known, static) in want.items():
        r = estimate_energy(c, name, time_step_s=ts)
        if total is not None:
            assert r.total_j == pytest.approx(total, rel=1e-12), name
            assert not r.lower_bound and r.missing == []
        else:
            assert r.total_j is None and r.lower_bound and r.missing, name
            assert r.known_j == pytest.approx(known, rel=1e-12), name
        if static is None:
            assert r.static_j is None or r.terms["static"].charged is False, name
        else:
            assert r.static_j == pytest.approx(static, rel=1e-12), name
        # the parts add up to what is known
        dyn = r.dynamic_j if r.dynamic_j is not None else r.dynamic_known_j
        assert dyn + (r.static_j or 0.0) == pytest.approx(r.known_j, rel=1e-12), name
    # Loihi 2 without the argument: its published step time (152.8 us, PilotNet LIF)
    r = estimate_energy(c, "loihi2")
    assert r.time_step_s == l2_step and "pilotnet" in r.time_step_source
    assert r.static_j == pytest.approx(0.232078 * T * l2_step)
    assert r.terms["static"].evidence == "derived"  # measured power × derived step time
    assert estimate_energy(c, "loihi2", time_step_s=ts).time_step_source == "argument"


def test_static_dynamic_and_dominance(tiny):
    _, c, h = tiny
    sp = estimate_energy(c, "speck", time_step_s=1e-3)
    dyn = 4420 * PJ * h["spikes"]
    assert sp.dynamic_j == pytest.approx(dyn) and sp.static_j == pytest.approx(_speck_static(
        1e-3))
    assert sp.dominant == ("static" if _speck_static(1e-3) > dyn else "dynamic")
    assert any("dominates" in n for n in sp.notes)
    # a short step: the dynamic part dominates
    sp2 = estimate_energy(c, "speck", time_step_s=1e-9)
    assert sp2.dominant == "dynamic"
    # Loihi 2: static ≫ the known dynamic terms, but a dynamic term is unknown: undecided
    l2 = estimate_energy(c, "loihi2", time_step_s=1e-3)
    assert l2.dominant is None and l2.static_j > l2.dynamic_known_j
    assert any("cannot be said" in n and "e_mac_pj" in n for n in l2.notes)
    # a model without static power: the dynamic part is all there is
    assert estimate_energy(c, "cmos45-fp32").dominant == "dynamic"
    # no time step for a target with static power: the static part is missing
    x = estimate_energy(c, "xylo-audio2")
    assert x.static_j is None and "time_step_s" in x.missing
    assert any("--time-step SECONDS" in n for n in x.notes)


def test_graded_inputs_semantics_pick_the_count(tmp_path, tiny):
    _, c, h = tiny
    base = PJ_PROFILE.replace("@GRADED@", "events")
    ev = tmp_path / "ev.toml"
    ev.write_text(base)
    va = tmp_path / "va.toml"
    va.write_text(base.replace('graded_inputs = "events"', 'graded_inputs = "values"')
                  .replace('name = "ev"', 'name = "va"'))
    r_ev, r_va = estimate_energy(c, ev), estimate_energy(c, va)
    assert r_ev.priced_as_events == ["fc"] and r_va.priced_as_events == []
    assert r_ev.terms["ac"].count == h["pool_sop"] + h["fc_events"]
    assert r_ev.terms["mac"].count == 0
    assert r_ev.total_j == pytest.approx(2.0 * (h["pool_sop"] + h["fc_events"]) * PJ)
    assert r_va.total_j == pytest.approx((2.0 * h["pool_sop"] + 5.0 * h["fc_values"]) * PJ)
    assert any("one per non-zero value would count" in n for n in r_ev.notes)
    # a graded input that is not pooled events stays a MAC under either semantics
    _, c2 = count_run(pooled_graph(), torch.from_numpy(spikes_in()))
    assert estimate_energy(c2, ev).priced_as_events == []
    assert load_profile("speck").graded_inputs == "events"
    assert load_profile("loihi2").graded_inputs == "values"


PJ_PROFILE = """\
name = "ev"
description = "test"
kind = "neuromorphic"
scope = "per_op"
prices = "events"
graded_inputs = "@GRADED@"
includes = "test"

[energy]
e_ac_pj = { value = 2.0, evidence = "measured", source = "s" }
e_mac_pj = { value = 5.0, evidence = "measured", source = "s" }
e_nu_pj = { evidence = "unknown", charged = false, source = "s" }
e_spike_pj = { evidence = "unknown", charged = false, source = "s" }
p_static_w = { evidence = "unknown", charged = false, source = "s" }

[limits]
cores_per_chip = { source = "s" }
neurons_per_core = { source = "s" }
synapse_memory_bytes_per_core = { source = "s" }
weight_bits = { source = "s" }
state_bits = { source = "s" }
decay_bits = { source = "s" }
max_kernel = { source = "s" }
max_features = { source = "s" }
input_axons_per_core = { source = "s" }
output_axons_per_core = { source = "s" }
"""


def test_schema_time_step_and_graded_inputs(tmp_path):
    def write(text: str) -> Path:
        p = tmp_path / "p.toml"
        p.write_text(text)
        return p

    base = PJ_PROFILE.replace("@GRADED@", "events")
    with pytest.raises(ProfileError, match="graded_inputs"):
        load_profile(write(base.replace('graded_inputs = "events"',
                                        'graded_inputs = "spikes"')))
    with_ts = base.replace('includes = "test"', 'includes = "test"\ntime_step_s = '
                           '{ value = 2e-3, evidence = "derived", source = "src" }')
    p = load_profile(write(with_ts))
    assert p.time_step_s == 2e-3 and p.time_step.source == "src"
    for bad, what in (("value = 0.0", "time_step_s"), ('evidence = "unknown"', "evidence")):
        text = with_ts.replace("value = 2e-3", bad) if "value" in bad else \
            with_ts.replace('evidence = "derived", source = "src"', f'{bad}, source = "s"')
        with pytest.raises(ProfileError, match=what):
            load_profile(write(text))
    assert load_profile(write(base.replace('includes = "test"', "time_step_s = 1e-3"))
                        ).time_step_s == 1e-3
    with pytest.raises(InputError, match="time_step_s"):
        estimate_energy(count_run(pooled_graph(), torch.zeros(2, 1, 1, 4, 4,
                                                             dtype=torch.float64))[1],
                        "speck", time_step_s=-1.0)


def test_every_shipped_constant_names_a_source():
    for name in list_profiles():
        p = load_profile(name)
        assert p.includes, name  # the report's sentence on what the model includes
        for k, const in p.energy.items():
            assert const.source.strip(), (name, k)
            if const.evidence == "derived" and const.value is not None:
                # a derived figure says what it is derived from
                assert any(w in const.source for w in ("derived", "->", "+", "/", " x ",
                                                       "Horowitz", "SANA-FE", "datasheet")), \
                    (name, k)


def test_report_table_and_schema(tiny):
    _, c, _ = tiny
    es = [estimate_energy(c, t, time_step_s=1e-3) for t in
          ("speck", "loihi2", "xylo-audio2", "cmos45-fp32", "cmos45-fp32-sram")]
    doc = build_report(c, es)
    assert validate_report(doc) == []
    table = format_table(doc)
    assert "dynamic" in table and "static" in table and "dominant" in table
    assert "(lower bound)" in table  # loihi2, xylo: a labelled lower bound
    assert "loihi2: total null; missing e_mac_pj" in table
    assert "cmos45-fp32 includes: arithmetic only" in table
    assert "cmos45-fp32-sram includes:" in table
    e = doc["energy"][0]
    assert e["static_j"] is not None and e["lower_bound"] is False


def test_cli_time_step(tmp_path, capsys):
    g = pooled_graph()
    f = tmp_path / "g.nir"
    nir.write(f, g)
    np.save(tmp_path / "x.npy", spikes_in())
    args = ["profile", str(f), "--input", str(tmp_path / "x.npy"), "--spike-inputs",
            "--target", "speck", "--target", "loihi2", "--target", "xylo-audio2",
            "--target", "cmos45-fp32"]
    assert main(args + ["--time-step", "1e-3", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "static power over 0.004 s = T × 0.001 s per step" in out
    import json

    doc = json.loads((tmp_path / "r.json").read_text())
    for e in doc["energy"]:  # a total, or a labelled lower bound naming what is missing
        assert e["total_j"] is not None or (e["lower_bound"] and e["missing"])
        assert e["time_step_s"] == 1e-3
    sp = next(e for e in doc["energy"] if e["profile"] == "speck")
    assert sp["total_j"] is not None and sp["static_j"] == pytest.approx(0.42e-3 * T * 1e-3)
    for bad in ("0", "-1e-3", "nan", "abc"):
        with pytest.raises(SystemExit):
            main(args + ["--time-step", bad])
        assert "--time-step" in capsys.readouterr().err


def test_recipe_time_step(tmp_path):
    from nirbridge.examples import DigitsConvSNN
    from nirbridge.recipes import load_recipe

    torch.manual_seed(0)
    torch.save(DigitsConvSNN("lif").state_dict(), tmp_path / "tiny.pt")
    text = RECIPE.format(out=tmp_path / "out")
    p = tmp_path / "r.toml"
    p.write_text(text.replace("@TS@", "time_step_s = 2e-3"))
    r = load_recipe(p)
    assert r.time_step_s == 2e-3 and r.to_dict()["time_step_s"] == 2e-3
    p.write_text(text.replace("@TS@", ""))
    assert load_recipe(p).time_step_s is None
    for bad in ("0", "-1", "inf"):
        p.write_text(text.replace("@TS@", f"time_step_s = {bad}"))
        with pytest.raises(RecipeError, match="time_step_s"):
            load_recipe(p)


RECIPE = """\
name = "tiny"

[model]
factory = "nirbridge.examples:digits_conv_snn"
kwargs = {{ neuron = "lif" }}
checkpoint = "tiny.pt"

[data]
dataset = "digits"
encoding = "direct"

[simulation]
steps = 4
samples = 4

[profile]
targets = ["speck", "cmos45-fp32"]
@TS@

[output]
dir = "{out}"
"""
