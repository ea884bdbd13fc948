"""Issue 2's fidelity bar, for every neuron model: the torch module over T = 16 random
steps equals the float64 reference executor after export → write → read — spikes
identical, states within 1e-12 — with per-channel parameters (conv layer) and scalar
parameters (linear layer) in the same network."""

from collections.abc import Callable

import nir
import pytest
import torch
from torch import nn

import nirbridge
from nirbridge.backends.reference import run_reference
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
)
from nirbridge.nodes import CustomNeuron


def ch(*values: float) -> torch.Tensor:
    """A per-channel parameter for 3 feature maps."""
    return torch.tensor(values, dtype=torch.float64).view(3, 1, 1)


# (per-channel layer, scalar layer) per neuron model and variant
CASES: dict[str, Callable[[], tuple[NeuronModule, NeuronModule]]] = {
    "lif-hard": lambda: (LIF(tau=ch(2, 3, 4), v_threshold=ch(0.4, 0.5, 0.6)),
                         LIF(tau=2.0, v_threshold=0.5)),
    "lif-subtract": lambda: (LIF(tau=ch(2, 3, 4), v_threshold=0.5, reset="subtract"),
                             LIF(tau=3.0, v_threshold=0.5, reset="subtract", compare=">=")),
    "if": lambda: (IF(v_threshold=ch(0.5, 0.75, 1.0)), IF(v_threshold=0.5)),
    "cubalif": lambda: (CubaLIF(tau_syn=ch(2, 3, 4), tau_mem=ch(2, 2, 3), v_threshold=0.3),
                        CubaLIF(tau_syn=2.0, tau_mem=3.0, v_threshold=0.3)),
    "plif": lambda: (PLIF(init_tau=ch(2, 3, 4), v_threshold=0.5), PLIF(init_tau=2.0)),
    "klif-hard": lambda: (KLIF(tau=ch(2, 3, 4), v_threshold=ch(0.5, 0.6, 0.7), k=1.5),
                          KLIF(tau=2.0, v_threshold=0.5, k=0.8)),
    "klif-soft": lambda: (KLIF(tau=ch(2, 3, 4), v_threshold=0.5, v_reset=None, k=1.2,
                               scale_reset=True),
                          KLIF(tau=2.0, v_threshold=0.5, v_reset=None, decay_input=False)),
    "dalif-hard": lambda: (DALIF(alpha=ch(1, 0.8, 1.2), beta=ch(0.5, 0.7, 0.9), v_threshold=0.5),
                           DALIF(alpha=1.0, beta=0.6, v_threshold=0.5)),
    "dalif-soft": lambda: (DALIF(alpha=ch(1, 0.8, 1.2), beta=ch(0.5, 0.7, 1.0), v_threshold=0.5,
                                 reset="soft"),
                           DALIF(alpha=1.0, beta=0.6, v_threshold=0.5, reset="soft")),
    "arlif": lambda: (ARLIF(decay=ch(0.5, 0.5, 0.2), v_threshold=0.5, a=ch(0.3, -0.2, 0.5),
                            c=ch(1.0, 0.5, 2.0)),
                      ARLIF(decay=0.5, v_threshold=0.5, a=0.4, c=1.0)),
    "arlif-memoryless": lambda: (ARLIF(decay=0.2, v_threshold=ch(0.4, 0.5, 0.6),
                                       a=ch(0.3, 0.1, 0.2), memoryless_m=True, compare=">"),
                                 ARLIF(decay=0.2, v_threshold=0.5, a=0.3, memoryless_m=True,
                                       compare=">")),
    "clif": lambda: (CLIF(tau=2.0, v_threshold=ch(0.4, 0.5, 0.6)), CLIF(tau=2.0, v_threshold=0.5)),
    "alif": lambda: (ALIF(tau_mem=ch(5, 10, 20), tau_adapt=ch(50, 100, 200), v_threshold=0.3,
                          beta=ch(0.5, 1.0, 1.8)),
                     ALIF(tau_mem=10.0, tau_adapt=100.0, v_threshold=0.3, beta=1.0)),
    "li-readout": lambda: (LIF(tau=ch(2, 3, 4), v_threshold=0.5),
                           LI(tau=torch.tensor([2.0, 3.0, 4.0, 5.0], dtype=torch.float64))),
}


def _run_module(model: StatefulSequential, x: torch.Tensor, layers: list[int]):
    """Per neuron layer: outputs [T, B, ...] and each state field [T, B, ...]."""
    outs: dict[int, list] = {i: [] for i in layers}
    states: dict[int, list] = {i: [] for i in layers}
    state = None
    for xt in x:
        h = xt
        new_state = []
        for i, layer in enumerate(model):
            if isinstance(layer, NeuronModule):
                h, s = layer(h, None if state is None else state[i])
                outs[i].append(h)
                states[i].append(s)
                new_state.append(s)
            else:
                h = layer(h)
                new_state.append(None)
        state = tuple(new_state)
    stacked = {}
    for i in layers:
        fields = type(states[i][0])._fields
        stacked[i] = (torch.stack(outs[i]),
                      {f: torch.stack([getattr(s, f) for s in states[i]]) for f in fields})
    return stacked


@pytest.mark.parametrize("case", sorted(CASES))
def test_module_equals_reference_after_file_round_trip(case, tmp_path):
    torch.manual_seed(7)
    first, second = CASES[case]()
    model = StatefulSequential(
        nn.Conv2d(2, 3, 3, padding=1), first, nn.Flatten(), nn.Linear(3 * 5 * 5, 4), second,
    ).double().eval()
    with torch.no_grad():
        model[0].weight.mul_(2.0)
        model[3].weight.mul_(3.0)
    x = torch.rand(16, 3, 2, 5, 5, dtype=torch.float64) * 1.5
    with torch.no_grad():
        expected = _run_module(model, x, [1, 4])

    path = tmp_path / f"{case}.nir"
    nirbridge.write(path, nirbridge.to_nir(model, x[0].float()))
    graph = nirbridge.read(path)
    neuron_nodes = [n for n, node in graph.nodes.items()
                    if isinstance(node, (CustomNeuron, nir.LIF, nir.IF, nir.LI, nir.CubaLIF))]
    assert len(neuron_nodes) == 2
    _, records = run_reference(graph, x, record=True)

    for layer, name in zip([1, 4], neuron_nodes, strict=True):
        out, states = expected[layer]
        got = records[name]
        spiking = not isinstance(model[layer], LI)
        if spiking:
            assert 0 < float(out.mean()) < 1, f"{case}/{name}: layer must spike, but not always"
            assert torch.equal(got.output, out), f"{case}/{name}: spikes differ"
        else:
            torch.testing.assert_close(got.output, out, rtol=0, atol=1e-12)
        assert set(states) <= set(got.states), (case, name, set(states), set(got.states))
        for field, value in states.items():
            torch.testing.assert_close(got.states[field], value.expand_as(got.states[field]),
                                       rtol=0, atol=1e-12, msg=f"{case}/{name}.{field}")
