"""Event counts from a Lava run equal the counts from the reference run (issue 4)."""

import numpy as np
import pytest
import torch

import nirbridge
from nirbridge.examples import DigitsConvSNN
from nirbridge.profile import count_events

pytestmark = pytest.mark.lava


def test_reference_and_lava_counts_are_equal_on_a_residual_conv_net():
    torch.manual_seed(0)
    model = DigitsConvSNN("lif", channels=3).eval()
    with torch.no_grad():
        for conv in (model.conv1, model.conv2, model.conv3):
            conv.weight.mul_(3.0)
    graph = nirbridge.to_nir(model, torch.zeros(1, 1, 8, 8))
    x = torch.rand(6, 2, 1, 8, 8, dtype=torch.float64) * 2
    _, ref_records = nirbridge.run(graph, x, record=True)
    _, lava_records = nirbridge.run(graph, x, backend="lava", record=True)
    ref = count_events(graph, ref_records)
    lava = count_events(graph, lava_records)
    # the comparison means something only if every spiking layer fired and AC ops happened
    assert all(c.spikes > 0 for c in ref.neurons.values())
    assert ref.sop_ac > 0 and ref.sop_mac > 0
    assert lava.to_dict() == ref.to_dict()
    for name, syn in ref.synapses.items():
        assert lava.synapses[name].effective == syn.effective
        np.testing.assert_array_equal(lava.synapses[name].effective_per_step,
                                      syn.effective_per_step)
