"""Tests of the trainable neuron modules of :mod:`nirbridge.neurons`.

Expected values are worked out by hand from the equations of specs/neurons.md (dyadic
numbers where possible so float equality is exact; ``math`` for σ and tanh), never by
calling :mod:`nirbridge.neurons.functional`.
"""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch

from nirbridge import nodes as N
from nirbridge.errors import InvalidParameterError
from nirbridge.neurons import (
    ALIF,
    ARLIF,
    CLIF,
    DALIF,
    IF,
    KLIF,
    LI,
    LIF,
    PLIF,
    CubaLIF,
    NeuronModule,
    StatefulSequential,
    functional,
    run_steps,
)


def sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def run(mod: torch.nn.Module, xs: list[float], dtype: torch.dtype = torch.float64):
    """Step a one-neuron module over scalar inputs: (outputs, states) as Python values."""
    mod = mod.to(dtype)
    state = None
    outs, states = [], []
    for value in xs:
        y, state = mod(torch.tensor([[value]], dtype=dtype), state)
        outs.append(y.item())
        states.append(tuple(t.item() for t in state))
    return outs, states


def v_of(states):
    return [s[0] for s in states]


# ------------------------------------------------------------------ hand-computed: LIF family
def test_lif_hard_hand():
    s, st = run(LIF(tau=2.0, v_threshold=1.0), [1.0, 1.0, 1.5, 0.5])
    # v: 0.5·1 = 0.5; 0.5 + 0.5(1 − 0.5) = 0.75; 0.75 + 0.5(1.5 − 0.75) = 1.125 > 1 → 0; 0.25
    assert s == [0.0, 0.0, 1.0, 0.0]
    assert v_of(st) == [0.5, 0.75, 0.0, 0.25]


def test_lif_leak_r_dt_and_reset_value_hand():
    # dt/τ = 2/4 = 0.5; v_leak = 0.25, R = 2, v_reset = −0.5
    mod = LIF(tau=4.0, v_leak=0.25, r=2.0, v_reset=-0.5, dt=2.0)
    s, st = run(mod, [0.5, 0.5, 0.5])
    # 0 + 0.5(0.25 + 1) = 0.625; 0.625 + 0.5(0.25 − 0.625 + 1) = 0.9375;
    # 0.9375 + 0.5(0.25 − 0.9375 + 1) = 1.09375 > 1 → v_reset
    assert s == [0.0, 0.0, 1.0]
    assert v_of(st) == [0.625, 0.9375, -0.5]


def test_lif_subtract_hand():
    s, st = run(LIF(tau=2.0, reset="subtract"), [3.0, 0.0])
    # 1.5 → fires, 1.5 − 1 = 0.5; 0.5 + 0.5(−0.5) = 0.25
    assert s == [1.0, 0.0]
    assert v_of(st) == [0.5, 0.25]


@pytest.mark.parametrize("compare,spikes,v", [(">", [0.0], [1.0]), (">=", [1.0], [0.0])])
def test_lif_tie(compare, spikes, v):
    s, st = run(LIF(tau=2.0, compare=compare), [2.0])  # v = 0.5·2 = 1.0 == v_th
    assert s == spikes and v_of(st) == v


def test_if_hard_hand_and_tie():
    s, st = run(IF(r=0.5), [1.0, 1.0, 1.0])
    # 0.5; 1.0 (tie: '>' does not fire); 1.5 → 0
    assert s == [0.0, 0.0, 1.0]
    assert v_of(st) == [0.5, 1.0, 0.0]
    s, st = run(IF(r=0.5, compare=">="), [1.0, 1.0, 1.0])
    assert s == [0.0, 1.0, 0.0]
    assert v_of(st) == [0.5, 0.0, 0.5]


def test_if_subtract_and_reset_value_hand():
    s, st = run(IF(reset="subtract"), [1.5, 0.75])
    assert s == [1.0, 1.0]  # 1.5 → 0.5; 1.25 → 0.25
    assert v_of(st) == [0.5, 0.25]
    s, st = run(IF(v_reset=-0.25), [1.5, 0.5])
    assert s == [1.0, 0.0] and v_of(st) == [-0.25, 0.25]


def test_li_hand():
    out, st = run(LI(tau=2.0), [1.0, 1.0, 0.0])
    assert out == [0.5, 0.75, 0.375]  # the output is the membrane itself
    assert v_of(st) == out
    out, _ = run(LI(tau=2.0, v_leak=1.0, r=0.5), [1.0])
    assert out == [0.5 * (1.0 + 0.5)]


def test_cubalif_hand_and_tie():
    mod = CubaLIF(tau_syn=2.0, tau_mem=2.0)
    s, st = run(mod, [2.0, 2.0, 0.0, 0.0])
    # i: 1, 1.5, 0.75, 0.375; v driven by the *updated* i:
    # 0.5·1 = 0.5; 0.5 + 0.5(−0.5 + 1.5) = 1.0 (tie, '>' silent); 1 + 0.5(−1 + 0.75) = 0.875;
    # 0.875 + 0.5(−0.875 + 0.375) = 0.625
    assert s == [0.0, 0.0, 0.0, 0.0]
    assert st == [(0.5, 1.0), (1.0, 1.5), (0.875, 0.75), (0.625, 0.375)]
    s, st = run(CubaLIF(tau_syn=2.0, tau_mem=2.0, compare=">="), [2.0, 2.0, 0.0])
    assert s == [0.0, 1.0, 0.0]
    assert st == [(0.5, 1.0), (0.0, 1.5), (0.375, 0.75)]
    # w_in scales the input of the current
    _, st = run(CubaLIF(tau_syn=2.0, tau_mem=2.0, w_in=0.5), [2.0])
    assert st == [(0.25, 0.5)]


def test_plif_hand_and_tie():
    mod = PLIF(init_tau=2.0)  # w = −log(1) = 0, σ(w) = 0.5
    assert mod.decay().item() == 0.5
    s, st = run(mod, [1.0, 1.0, 1.0])
    assert s == [0.0, 0.0, 0.0] and v_of(st) == [0.5, 0.75, 0.875]
    s, st = run(PLIF(init_tau=2.0), [2.0])  # v = 0.5·2 = 1.0 == v_th: '>=' fires
    assert s == [1.0] and v_of(st) == [0.0]
    s, st = run(PLIF(init_tau=2.0, compare=">"), [2.0])
    assert s == [0.0] and v_of(st) == [1.0]


def test_plif_reset_value_and_start():
    mod = PLIF(init_tau=2.0, v_reset=-0.5).double()
    assert mod.initial_state(torch.zeros(2, 3, dtype=torch.float64)).v.eq(-0.5).all()
    s, st = run(mod, [1.5, 3.0])
    # starts at v_r = −0.5: −0.5 + 0.5(1.5 − 0) = 0.25; 0.25 + 0.5(3 − 0.75) = 1.375 → v_r
    assert s == [0.0, 1.0] and v_of(st) == [0.25, -0.5]


def test_plif_soft_reset_and_init_tau():
    s, st = run(PLIF(init_tau=2.0, v_reset=None), [3.0, 0.0])
    assert s == [1.0, 0.0] and v_of(st) == [0.5, 0.25]
    assert PLIF(init_tau=4.0).decay().item() == pytest.approx(0.25, rel=1e-6)
    with pytest.raises(InvalidParameterError, match="init_tau"):
        PLIF(init_tau=1.0)


# ------------------------------------------------------------------------------ KLIF
def test_klif_hard_hand_relu_floor():
    s, st = run(KLIF(tau=2.0, k=1.0), [1.0, 1.0, 1.0, -4.0])
    # h: 0.5; 0.5 + 0.25 = 0.75; 0.875; 0.875 + (−4 − 0.875)/2 = −1.5625 → relu → 0
    assert s == [0.0, 0.0, 0.0, 0.0]
    assert v_of(st) == [0.5, 0.75, 0.875, 0.0]


def test_klif_k_and_tie():
    s, st = run(KLIF(k=2.0), [1.0, 0.5])
    # h = 0.5, f = relu(2·0.5) = 1.0 == v_th: '>=' fires → v_r = 0; h = 0.25, f = 0.5
    assert s == [1.0, 0.0] and v_of(st) == [0.0, 0.5]
    s, st = run(KLIF(k=2.0, compare=">"), [1.0])
    assert s == [0.0] and v_of(st) == [1.0]


def test_klif_soft_reset_hand():
    s, st = run(KLIF(k=2.0, v_reset=None), [1.5, 0.0])
    # h = 0.75, f = 1.5 → fires, v = 1.5 − 1 = 0.5; h = 0.5 − 0.5/2 = 0.25, f = 0.5
    assert s == [1.0, 0.0] and v_of(st) == [0.5, 0.5]


def test_klif_scale_reset_hand():
    # soft: (f − s·v_th)/k
    s, st = run(KLIF(k=2.0, v_reset=None, scale_reset=True), [1.5])
    assert s == [1.0] and v_of(st) == [0.25]
    # hard: only the f term is divided by k; starts at v_r = 0.5
    s, st = run(KLIF(k=2.0, v_reset=0.5, scale_reset=True), [1.5, -0.5])
    # h = 0.5 + (1.5 − 0)/2 = 1.25, f = 2.5 → fires → v = 0/2 + 0.5 = 0.5
    # h = 0.5 + (−0.5 − 0)/2 = 0.25, f = 0.5, silent → v = 0.5/2 = 0.25
    assert s == [1.0, 0.0] and v_of(st) == [0.5, 0.25]


def test_klif_no_decay_input_hand():
    s, st = run(KLIF(decay_input=False), [0.5, 0.5, 0.5, 0.625])
    # h = v − v/2 + x: 0.5; 0.75; 0.875; 0.4375 + 0.625 = 1.0625 → fires → 0
    assert s == [0.0, 0.0, 0.0, 1.0] and v_of(st) == [0.5, 0.75, 0.875, 0.0]
    s, st = run(KLIF(decay_input=True), [0.5, 0.5])
    assert v_of(st) == [0.25, 0.375]  # differs: the input is divided by τ


def test_klif_starts_at_v_reset():
    mod = KLIF(v_reset=0.5)
    assert mod.initial_state(torch.zeros(4, 2)).v.eq(0.5).all()
    _, st = run(KLIF(v_reset=0.5), [0.5])
    assert v_of(st) == [0.75]  # 0.5 + (0.5 − 0)/2


# ------------------------------------------------------------------------------ DA-LIF
def test_dalif_hard_hand_and_tie():
    s, st = run(DALIF(alpha=0.5, beta=0.5), [2.0, 1.0, 1.0])
    # v = 0.5·2 = 1.0 == v_th, '>=' fires → 0; 0.5; 0.25 + 0.5 = 0.75
    assert s == [1.0, 0.0, 0.0] and v_of(st) == [0.0, 0.5, 0.75]
    s, st = run(DALIF(alpha=0.5, beta=0.5, compare=">"), [2.0, 1.0])
    assert s == [0.0, 0.0] and v_of(st) == [1.0, 1.0]  # 0.5·1 + 0.5·1 = 1.0 again


def test_dalif_soft_hand():
    s, st = run(DALIF(alpha=1.0, beta=0.5, reset="soft"), [1.5, 0.5])
    assert s == [1.0, 0.0] and v_of(st) == [0.5, 0.75]  # 1.5 − 1; 0.25 + 0.5
    s, st = run(DALIF(alpha=1.0, beta=0.5, reset="hard"), [1.5, 0.5])
    assert s == [1.0, 0.0] and v_of(st) == [0.0, 0.5]


def test_dalif_per_channel_forward():
    mod = DALIF(alpha=torch.tensor([[1.0], [0.5]]), beta=torch.tensor([[0.5], [0.25]])).double()
    x = torch.ones(1, 2, 3, dtype=torch.float64)
    _, st = mod(x)
    _, st = mod(x, st)
    assert st.v[0, 0].tolist() == [0.0] * 3  # 1 → fires; channel 0: 0·0.5 + 1 = 1 → fires
    assert st.v[0, 1].tolist() == [0.625] * 3  # 0.5 then 0.125 + 0.5


# ------------------------------------------------------------------------------ AR-LIF
def test_arlif_memory_hand():
    mod = ARLIF(decay=0.5, v_threshold=1.0, a=0.0, c=0.0)  # tanh_a = 0, g = σ(0) = 0.5
    s, st = run(mod, [2.0, 0.0, 0.0])
    m1 = sig(2.0)  # fired: m = 0 + (2·1 − 1)σ(2)
    v1 = 2.0 - (1.0 + sig(m1))  # v − s(θ + σ(m)), θ = 1
    m2 = m1 * 0.5 - 0.5  # m > 0: m·σ(c·x) = m/2; silent: − σ(0)
    m3 = m2 * 0.5 - 0.5  # m < 0: m·σ(−c·x) = m/2
    assert s == [1.0, 0.0, 0.0]
    assert [x[0] for x in st] == pytest.approx([v1, 0.5 * v1, 0.25 * v1], abs=1e-15)
    assert [x[1] for x in st] == pytest.approx([m1, m2, m3], abs=1e-15)


def test_arlif_adaptive_threshold_and_gate_hand():
    a = torch.tensor(math.atanh(0.5), dtype=torch.float64)  # tanh_a = 0.5; a float64 tensor
    mod = ARLIF(decay=0.5, a=a, c=2.0)  # keeps its precision (a float would be rounded)
    s, st = run(mod, [1.0, 1.0])
    th = 1.0 + 0.5 * math.tanh(1.0)
    # step 1: v = 1 < θ = 1.38: silent (a plain '>=' LIF at v_th = 1 would fire)
    m1 = -sig(1.0)
    # step 2: v = 0.5 + 1 = 1.5 >= θ: fires; m < 0 → m·(1 − σ(2)); then + σ(1)
    m2 = m1 * (1.0 - sig(2.0)) + sig(1.0)
    v2 = 1.5 - (th + sig(m2))
    assert s == [0.0, 1.0]
    assert st[0][0] == 1.0 and st[0][1] == pytest.approx(m1, abs=1e-15)
    assert st[1][0] == pytest.approx(v2, abs=1e-15)
    assert st[1][1] == pytest.approx(m2, abs=1e-15)


def test_arlif_memoryless_hand():
    mod = ARLIF(decay=0.5, a=0.0, c=0.0, memoryless_m=True)
    s, st = run(mod, [2.0, 0.0, 0.0])
    v1 = 2.0 - (1.0 + sig(sig(2.0)))
    assert s == [1.0, 0.0, 0.0]
    # m_t = (2s − 1)σ(x_t): no memory (the stateful variant gives σ(2)/2 − 0.5 at step 2)
    assert [x[1] for x in st] == pytest.approx([sig(2.0), -0.5, -0.5], abs=1e-15)
    assert [x[0] for x in st] == pytest.approx([v1, 0.5 * v1, 0.25 * v1], abs=1e-15)


@pytest.mark.parametrize("memoryless", [False, True])
def test_arlif_tie(memoryless):
    # x = 1, a = 0: v = 1.0 == θ = 1.0
    s, st = run(ARLIF(a=0.0, memoryless_m=memoryless, compare=">"), [1.0])
    assert s == [0.0] and st[0][0] == 1.0 and st[0][1] == pytest.approx(-sig(1.0), abs=1e-15)
    s, st = run(ARLIF(a=0.0, memoryless_m=memoryless, compare=">="), [1.0])
    assert s == [1.0]
    assert st[0][0] == pytest.approx(1.0 - (1.0 + sig(sig(1.0))), abs=1e-15)


# -------------------------------------------------------------------------- CLIF, ALIF
def test_clif_hand_and_tie():
    s, st = run(CLIF(tau=2.0), [1.0, 1.5, 0.0])
    # 1: v = 1.0 (tie, '>=' fires); m = 0·σ(0.5) + 1 = 1; v = 1 − 1 − σ(1)
    v1 = -sig(1.0)
    # 2: v = 0.5·v1 + 1.5; m = 1·σ(v/2) (+1, fires); v −= 1 + σ(m)
    v2 = 0.5 * v1 + 1.5
    m2 = sig(v2 / 2) + 1.0
    v2r = v2 - 1.0 - sig(m2)
    # 3: v = 0.5·v2r (silent); m = m2·σ(v/2)
    v3 = 0.5 * v2r
    m3 = m2 * sig(v3 / 2)
    assert s == [1.0, 1.0, 0.0]
    assert [x[0] for x in st] == pytest.approx([v1, v2r, v3], abs=1e-15)
    assert [x[1] for x in st] == pytest.approx([1.0, m2, m3], abs=1e-15)
    s, st = run(CLIF(tau=2.0, compare=">"), [1.0, 1.5])
    # 1: silent at the tie; 2: v = 0.5 + 1.5 = 2.0, m = 0 → 1, v = 2 − 1 − σ(1)
    assert s == [0.0, 1.0]
    assert st[0] == (1.0, 0.0)
    assert st[1] == pytest.approx((1.0 - sig(1.0), 1.0), abs=1e-15)


def test_alif_effective_params():
    mod = ALIF(tau_mem=20.0, tau_adapt=200.0, dt=1.0)
    assert mod.alpha.item() == pytest.approx(math.exp(-1 / 20), rel=1e-7)
    assert mod.rho.item() == pytest.approx(math.exp(-1 / 200), rel=1e-7)
    assert ALIF(tau_mem=20.0, dt=2.0).alpha.item() == pytest.approx(math.exp(-2 / 20), rel=1e-7)
    assert {"alpha", "rho"} <= dict(mod.named_buffers()).keys()


def test_alif_ordering_hand():
    mod = ALIF(tau_mem=4.0, tau_adapt=8.0, v_threshold=1.0, beta=0.5).double()
    al, rho = mod.alpha.item(), mod.rho.item()
    # step 1: b = 0, A = 1, v = (1 − α)x1 = 2 → z = 1 in the *same* step (no latency);
    #         v is not reset yet (the reset uses z_prev at the next step)
    x1 = 2.0 / (1.0 - al)
    v1 = (1.0 - al) * x1
    # step 2: b = (1 − ρ)·1, A = 1 + 0.5b, v = α·v1 + (1 − α)x2 − 1·A; x2 is chosen so that
    #         v lands between v_th = 1 and A: the adapted threshold keeps it silent
    b2 = 1.0 - rho
    a2 = 1.0 + 0.5 * b2
    v2 = 1.0 + 0.25 * b2
    x2 = (v2 - al * v1 + a2) / (1.0 - al)
    # step 3: b = ρ·b2, v = α·v2 (z_prev = 0, no input)
    b3 = rho * b2
    v3 = al * v2
    s, st = run(mod, [x1, x2, 0.0])
    assert s == [1.0, 0.0, 0.0]
    assert st[0] == pytest.approx((v1, 0.0, 1.0), abs=1e-14)
    assert st[1] == pytest.approx((v2, b2, 0.0), abs=1e-12)
    assert st[2] == pytest.approx((v3, b3, 0.0), abs=1e-12)


# ----------------------------------------------------------------------------- export
def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def _random_inputs(shape, steps=20, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(steps, 4, *shape, generator=g, dtype=torch.float64) * scale + 0.3


def _run_module(mod, xs):
    state, outs, vs = None, [], []
    for x in xs:
        y, state = mod(x, state)
        outs.append(y)
        vs.append(state[0])
    return torch.stack(outs), torch.stack(vs)


def _run_fn(step, xs, v0):
    state, outs, vs = functional.LIFState(v0), [], []
    for x in xs:
        y, state = step(x, state)
        outs.append(y)
        vs.append(state.v)
    return torch.stack(outs), torch.stack(vs)


SHAPE = (3, 2, 2)


def _per_channel(values):
    return torch.tensor(values, dtype=torch.float64).view(3, 1, 1)


def test_export_lif_hard_exact():
    mod = LIF(tau=_per_channel([2.0, 3.0, 5.0]), v_threshold=_per_channel([0.5, 1.0, 1.5]),
              v_leak=0.125, v_reset=-0.25, r=1.5, compare=">=").double()
    node = mod.to_nir_node(SHAPE, dt=1.0)
    assert type(node) is nir.LIF and node.metadata == {"compare": ">="}
    assert node.tau.shape == SHAPE and node.tau.dtype == np.float64
    assert node.tau[1].tolist() == [[3.0, 3.0], [3.0, 3.0]]
    assert node.v_reset.shape == SHAPE and np.all(node.v_reset == -0.25)
    xs = _random_inputs(SHAPE)
    ref_s, ref_v = _run_module(mod, xs)
    s, v = _run_fn(lambda x, st: functional.lif_step(
        x, st, tau=_t(node.tau), r=_t(node.r), v_leak=_t(node.v_leak),
        v_threshold=_t(node.v_threshold), v_reset=_t(node.v_reset), dt=1.0,
        compare=node.metadata["compare"]), xs, torch.zeros_like(xs[0]))
    assert ref_s.sum() > 0 and torch.equal(s, ref_s) and torch.equal(v, ref_v)


def test_export_lif_dt_keeps_dt_over_tau():
    mod = LIF(tau=4.0, dt=1.0)
    node = mod.to_nir_node((2,), dt=1e-3)
    assert np.allclose(1e-3 / node.tau, 1.0 / 4.0, rtol=1e-15)
    assert node.metadata == {"compare": ">"}
    sub = LIF(tau=4.0, reset="subtract").to_nir_node((2,), dt=1.0)
    assert type(sub) is N.SubtractiveLIF and sub.compare == ">"
    with pytest.raises(InvalidParameterError, match="tau"):
        LIF(tau=-1.0).to_nir_node((2,), dt=1.0)
    with pytest.raises(InvalidParameterError, match="v_threshold"):
        LIF(v_threshold=torch.ones(3)).to_nir_node((2,), dt=1.0)


def test_export_plif_exact():
    w_tau = _per_channel([2.0, 3.5, 7.0])
    mod = PLIF(init_tau=w_tau, v_threshold=0.8).double()
    with torch.no_grad():
        mod.w.add_(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64).view(3, 1, 1))
    node = mod.to_nir_node(SHAPE, dt=1.0)
    assert type(node) is nir.LIF and node.metadata == {"compare": ">="}
    k = torch.sigmoid(mod.w.detach()).expand(SHAPE).numpy()
    assert np.array_equal(node.tau, 1.0 / k)
    assert np.all(node.r == 1.0) and np.all(node.v_leak == 0.0) and np.all(node.v_reset == 0.0)
    xs = _random_inputs(SHAPE)
    ref_s, ref_v = _run_module(mod, xs)
    s, v = _run_fn(lambda x, st: functional.lif_step(
        x, st, tau=_t(node.tau), r=_t(node.r), v_leak=_t(node.v_leak),
        v_threshold=_t(node.v_threshold), v_reset=_t(node.v_reset), dt=1.0,
        compare=node.metadata["compare"]), xs, torch.zeros_like(xs[0]))
    assert ref_s.sum() > 0 and torch.equal(s, ref_s) and torch.equal(v, ref_v)


def test_export_plif_reset_value_and_soft():
    mod = PLIF(init_tau=3.0, v_reset=-0.25).double()
    node = mod.to_nir_node((5,), dt=0.5)
    assert np.all(node.v_leak == -0.25) and np.all(node.v_reset == -0.25)
    assert np.allclose(0.5 / node.tau, 1.0 / 3.0, rtol=1e-12)
    # Same equations when both start from the module's own start v_r
    xs = _random_inputs((5,))
    ref_s, ref_v = _run_module(mod, xs)
    node1 = mod.to_nir_node((5,), dt=1.0)
    s, v = _run_fn(lambda x, st: functional.lif_step(
        x, st, tau=_t(node1.tau), r=_t(node1.r), v_leak=_t(node1.v_leak),
        v_threshold=_t(node1.v_threshold), v_reset=_t(node1.v_reset), dt=1.0,
        compare=">="), xs, torch.full_like(xs[0], -0.25))
    assert ref_s.sum() > 0 and torch.equal(s, ref_s) and torch.equal(v, ref_v)
    soft = PLIF(v_reset=None).to_nir_node((5,), dt=1.0)
    assert type(soft) is N.SubtractiveLIF and soft.compare == ">="


def test_export_dalif_hard_is_lif():
    mod = DALIF(alpha=_per_channel([1.0, 0.7, 1.3]), beta=_per_channel([0.5, 0.9, 0.2]),
                v_threshold=1.0).double()
    node = mod.to_nir_node(SHAPE, dt=1.0)
    assert type(node) is nir.LIF and node.metadata == {"compare": ">="}
    assert node.tau.shape == SHAPE
    assert np.allclose(node.tau[:, 0, 0], [2.0, 10.0, 1.25])
    assert np.allclose(node.r[:, 0, 0], [2.0, 7.0, 1.3 / 0.8])
    assert np.all(node.v_leak == 0) and np.all(node.v_reset == 0)
    xs = _random_inputs(SHAPE, steps=24)
    ref_s, ref_v = _run_module(mod, xs)
    s, v = _run_fn(lambda x, st: functional.lif_step(
        x, st, tau=_t(node.tau), r=_t(node.r), v_leak=_t(node.v_leak),
        v_threshold=_t(node.v_threshold), v_reset=_t(node.v_reset), dt=1.0,
        compare=node.metadata["compare"]), xs, torch.zeros_like(xs[0]))
    # βv + αx and v + (1−β)(−v + αx/(1−β)) are equal up to rounding: spikes identical
    assert ref_s.sum() > 0 and torch.equal(s, ref_s)
    assert torch.allclose(v, ref_v, rtol=0, atol=1e-12)
    # another graph dt keeps dt/τ = 1 − β
    node2 = mod.to_nir_node(SHAPE, dt=1e-3)
    assert np.allclose(1e-3 / node2.tau[:, 0, 0], [0.5, 0.1, 0.8])


def test_export_dalif_beta_one_is_if():
    mod = DALIF(alpha=_per_channel([1.0, 0.7, 1.3]), beta=1.0, compare=">").double()
    node = mod.to_nir_node(SHAPE, dt=1.0)
    assert type(node) is nir.IF and node.metadata == {"compare": ">"}
    assert node.r.shape == SHAPE and np.all(node.v_reset == 0)
    xs = _random_inputs(SHAPE)
    ref_s, ref_v = _run_module(mod, xs)
    s, v = _run_fn(lambda x, st: functional.if_step(
        x, st, r=_t(node.r), v_threshold=_t(node.v_threshold), v_reset=_t(node.v_reset),
        compare=node.metadata["compare"]), xs, torch.zeros_like(xs[0]))
    assert ref_s.sum() > 0 and torch.equal(s, ref_s) and torch.equal(v, ref_v)


def test_export_dalif_custom_cases():
    mixed = DALIF(beta=_per_channel([1.0, 0.5, 0.5])).to_nir_node(SHAPE, dt=1.0)
    assert type(mixed) is N.DALIF and mixed.reset == "hard" and mixed.compare == ">="
    assert mixed.beta.shape == SHAPE
    above = DALIF(beta=1.5).to_nir_node((2,), dt=1.0)
    assert type(above) is N.DALIF and above.reset == "hard"
    soft = DALIF(beta=0.5, reset="soft").to_nir_node((2,), dt=1.0)
    assert type(soft) is N.DALIF and soft.reset == "soft"


def test_export_if():
    node = IF(r=2.0, v_reset=-1.0).to_nir_node((4,), dt=1.0)
    assert type(node) is nir.IF and np.all(node.v_reset == -1.0)
    assert node.metadata == {"compare": ">"}
    mod = IF(r=_per_channel([1.0, 0.5, 2.0]), reset="subtract", compare=">=").double()
    node = mod.to_nir_node(SHAPE, dt=1.0)
    assert type(node) is N.DALIF and node.reset == "soft" and np.all(node.beta == 1.0)
    _check_custom_node_exact(mod, node, SHAPE)


def test_export_li_cubalif():
    li = LI(tau=_per_channel([2.0, 4.0, 8.0]), v_leak=0.5).to_nir_node(SHAPE, dt=1.0)
    assert type(li) is nir.LI and li.tau.shape == SHAPE and li.tau[2, 1, 1] == 8.0
    cuba = CubaLIF(tau_syn=2.0, tau_mem=4.0, w_in=0.5, compare=">=").to_nir_node((3,), dt=2.0)
    assert type(cuba) is nir.CubaLIF and cuba.metadata == {"compare": ">="}
    assert np.all(cuba.tau_syn == 4.0) and np.all(cuba.tau_mem == 8.0)
    assert np.all(cuba.w_in == 0.5) and cuba.w_in.shape == (3,)


def _check_custom_node_exact(mod, node, shape, steps=20):
    """The custom node's own step (nodes.py) reproduces the module bit for bit."""
    xs = _random_inputs(shape, steps=steps, scale=1.5)
    state_m, state_n = None, node.initial_state(xs.shape[1], torch.float64)
    n_spikes = 0.0
    for x in xs:
        y_m, state_m = mod(x, state_m)
        y_n, state_n = node.step(x, state_n)
        assert torch.equal(y_m, y_n)
        for a, b in zip(state_m, state_n, strict=True):
            assert torch.equal(a, b)
        n_spikes += float(y_m.detach().sum())
    assert n_spikes > 0


@pytest.mark.parametrize("mod,node_type", [
    (KLIF(tau=_per_channel([2.0, 3.0, 1.5]), k=1.3, v_reset=0.2), N.KLIF),
    (KLIF(v_reset=None, scale_reset=True, decay_input=False, k=0.8), N.KLIF),
    (ARLIF(decay=0.5, a=_per_channel([0.3, -0.4, 0.0]), c=1.2), N.ARLIF),
    (ARLIF(decay=0.2, a=0.5, memoryless_m=True, compare=">"), N.ARLIF),
    (CLIF(tau=2.0, v_threshold=_per_channel([1.0, 0.5, 1.5])), N.CLIF),
    (ALIF(tau_mem=_per_channel([5.0, 10.0, 20.0]), tau_adapt=50.0, beta=0.3), N.ALIF),
    (DALIF(alpha=0.8, beta=_per_channel([0.5, 0.9, 1.0])), N.DALIF),
    (DALIF(alpha=0.8, beta=0.7, reset="soft"), N.DALIF),
    (LIF(tau=_per_channel([2.0, 3.0, 4.0]), reset="subtract"), N.SubtractiveLIF),
])
def test_export_custom_nodes_exact(mod, node_type):
    mod = mod.double()
    node = mod.to_nir_node(SHAPE, dt=1.0)
    assert type(node) is node_type
    assert node.compare == mod.compare
    for name in node.PARAMS:
        arr = getattr(node, name)
        assert arr.shape == SHAPE and arr.dtype == np.float64
    _check_custom_node_exact(mod, node, SHAPE)


def test_export_effective_values():
    arlif = ARLIF(a=_per_channel([0.3, -0.4, 0.0]), c=2.0, memoryless_m=True, compare=">")
    node = arlif.to_nir_node(SHAPE, dt=1.0)
    assert np.allclose(node.tanh_a[:, 0, 0], np.tanh(np.float32([0.3, -0.4, 0.0])))
    assert node.memoryless_m is True and node.compare == ">"
    klif = KLIF(v_reset=None, k=1.5).to_nir_node((2,), dt=1.0)
    assert klif.soft_reset is True and np.all(klif.v_reset == 0.0) and np.all(klif.k == 1.5)
    alif = ALIF(tau_mem=20.0, tau_adapt=200.0).to_nir_node((2,), dt=1e-3)
    assert np.allclose(alif.alpha, math.exp(-1 / 20)) and np.allclose(alif.rho, math.exp(-1 / 200))


@pytest.mark.parametrize("k", [0.0, -0.5])
def test_export_klif_requires_positive_k(k):
    with pytest.raises(InvalidParameterError, match="'k'"):
        KLIF(k=k).to_nir_node((2,), dt=1.0)


def test_bad_parameters():
    with pytest.raises(InvalidParameterError, match="compare"):
        LIF(compare="<")
    with pytest.raises(InvalidParameterError, match="reset"):
        DALIF(reset="subtract")
    with pytest.raises(InvalidParameterError, match="v_threshold"):
        LIF(v_threshold=float("nan"))
    with pytest.raises(InvalidParameterError, match="tau_mem"):
        ALIF(tau_mem=0.0)


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("mod,names", [
    (LIF(learn_tau=True, tau=3.0), ["tau"]),
    (LI(learn_tau=True), ["tau"]),
    (CubaLIF(learn_tau=True), ["tau_syn", "tau_mem"]),
    (PLIF(), ["w"]),
    (KLIF(), ["k"]),
    (DALIF(alpha=_per_channel([1.0, 0.8, 1.2]), beta=0.5), ["alpha", "beta"]),
    (ARLIF(a=0.2, c=1.0), ["a", "c"]),
    (ARLIF(a=0.2, memoryless_m=True, learn_c=False), ["a"]),
])
def test_gradients_flow(mod, names):
    xs = _random_inputs(SHAPE, steps=12, scale=1.5).float()
    out = run_steps(mod, xs)
    loss = (out * torch.linspace(0.5, 1.5, out.numel()).view_as(out)).sum()
    loss.backward()
    params = dict(mod.named_parameters())
    assert sorted(params) == sorted(names)
    for name in names:
        grad = params[name].grad
        assert grad is not None, name
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    if isinstance(mod, DALIF):
        assert params["alpha"].grad.shape == (3, 1, 1)


def test_surrogate_passes_gradient_to_input():
    x = torch.full((2, 3), 0.9, requires_grad=True)
    s, _ = IF()(x)
    s.sum().backward()
    assert s.eq(0).all() and x.grad.gt(0).all()


# ------------------------------------------------------------------ dtypes, buffers, API
ALL = [LIF, IF, LI, CubaLIF, PLIF, KLIF, DALIF, ARLIF, CLIF, ALIF]


@pytest.mark.parametrize("cls", ALL)
def test_dtypes_and_buffers(cls):
    mod = cls()
    assert isinstance(mod, NeuronModule)
    tensors = list(mod.parameters()) + list(mod.buffers())
    assert tensors and all(t.dtype == torch.float32 for t in tensors)
    assert len(mod.state_dict()) == len(tensors)  # every parameter is registered
    x32 = torch.randn(2, 3, 4)
    y, state = mod(x32)
    assert y.dtype == torch.float32 and y.shape == x32.shape
    assert all(s.dtype == torch.float32 and s.shape == x32.shape for s in state)
    mod = mod.double()
    assert all(t.dtype == torch.float64 for t in list(mod.parameters()) + list(mod.buffers()))
    y64, state64 = mod(x32.double())
    y64, state64 = mod(x32.double(), state64)
    assert y64.dtype == torch.float64 and all(s.dtype == torch.float64 for s in state64)


def test_double_is_exact_float64_semantics():
    # Buffers moved by .double() give float64 arithmetic (dt/τ = 1/3 is not dyadic).
    mod = LIF(tau=3.0).double()
    _, st = mod(torch.tensor([[1.0]], dtype=torch.float64))
    assert st.v.item() == 1.0 / 3.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", ALL)
def test_cuda(cls):
    cpu = cls().double()
    mod = cls().double().cuda()
    xs = _random_inputs((3,), steps=8, scale=1.5)
    out_cpu = run_steps(cpu, xs)
    out = run_steps(mod, xs.cuda())
    assert out.device.type == "cuda"
    assert torch.allclose(out.cpu(), out_cpu, atol=1e-9)
    assert type(mod.to_nir_node((3,), dt=1.0)) is type(cpu.to_nir_node((3,), dt=1.0))


def test_stateful_sequential_and_run_steps():
    torch.manual_seed(0)
    net = StatefulSequential(torch.nn.Linear(4, 5), KLIF(), torch.nn.Linear(5, 2), LI())
    xs = torch.randn(6, 3, 4)
    out = run_steps(net, xs)
    assert out.shape == (6, 3, 2)
    y, state = net(xs[0])
    assert state[0] is None and state[2] is None
    assert isinstance(state[1], functional.LIFState) and state[1].v.shape == (3, 5)
    assert torch.equal(y, out[0])


def test_public_api():
    import nirbridge.neurons as pkg

    for name in ["ALIF", "ARLIF", "CLIF", "DALIF", "IF", "KLIF", "LI", "LIF", "PLIF", "CubaLIF",
                 "NeuronModule", "StatefulSequential", "run_steps", "functional"]:
        assert name in pkg.__all__ and hasattr(pkg, name)
    for cls in ALL:
        assert cls.__doc__ and issubclass(cls, NeuronModule)


def test_plif_with_nonzero_reset_starts_at_v_reset_in_the_reference():

    from nirbridge.backends.reference import run_reference
    from nirbridge.neurons import PLIF

    torch.manual_seed(1)
    m = PLIF(init_tau=2.0, v_threshold=0.5, v_reset=-0.25).double()
    node = m.to_nir_node((3,), 1.0)
    assert np.all(node.metadata["v_init"] == -0.25)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])), "plif": node,
               "output": nir.Output(np.array([3]))},
        edges=[("input", "plif"), ("plif", "output")], metadata={"dt": 1.0}, type_check=False,
    )
    x = torch.rand(16, 2, 3, dtype=torch.float64)
    expected = run_steps(lambda xt, s: m(xt, s), x)
    _, rec = run_reference(graph, x, record=True)
    torch.testing.assert_close(rec["plif"].output, expected, rtol=0, atol=0)
