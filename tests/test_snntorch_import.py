"""A graph exported by snnTorch's ``export_to_nir`` runs in the reference executor with
snnTorch's dt convention (1e-4) and reproduces snnTorch's own spikes."""

import nir
import numpy as np
import pytest
import torch

import nirbridge
from nirbridge.backends.reference import FRAMEWORK_DT, run_reference

snn = pytest.importorskip("snntorch")
from snntorch.export_nir import export_to_nir  # noqa: E402


def test_snntorch_leaky_zero_reset_graph_matches_snntorch(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        # per-neuron beta and threshold: snnTorch's exporter gives scalars a shape of ()
        # that nir 1.0.8's type check rejects
        snn.Leaky(beta=torch.linspace(0.5, 0.9, 8), threshold=torch.full((8,), 0.5),
                  init_hidden=True, reset_mechanism="zero"),
        torch.nn.Linear(8, 4),
        snn.Leaky(beta=torch.full((4,), 0.5), threshold=torch.full((4,), 0.25),
                  init_hidden=True, reset_mechanism="zero", output=True),
    )
    x = torch.rand(24, 3, 6) * 1.5
    graph = export_to_nir(net, x[0, 0])  # snnTorch wants one sample without batch
    path = tmp_path / "snntorch.nir"
    nir.write(path, graph)
    graph = nirbridge.read(path)

    from snntorch import utils as snn_utils

    snn_utils.reset(net)
    expected = []
    with torch.no_grad():
        for xt in x:
            spk, _ = net(xt)
            expected.append(spk)
    expected = torch.stack(expected).double()
    assert expected.sum() > 0

    out = run_reference(graph, x.double(), dt=FRAMEWORK_DT["snntorch"])
    # snnTorch computes in float32 and writes tau = dt/(1-beta), r = tau/dt; the graph
    # reproduces its spikes (a tie within float32 rounding would show here as a mismatch)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
