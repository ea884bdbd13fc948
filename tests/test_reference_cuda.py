"""The reference executor runs on any device: on CUDA (when present) it gives the same
float64 spikes and states as on the CPU. Skipped on machines without a GPU."""

import pytest
import torch

import nirbridge
from nirbridge.backends.reference import ReferenceExecutor
from nirbridge.examples import DigitsConvSNN

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("kind", ["lif", "arlif", "klif", "dalif", "clif"])
def test_cuda_reference_equals_cpu_reference(kind):
    torch.manual_seed(0)
    graph = nirbridge.to_nir(DigitsConvSNN(kind).eval(), torch.zeros(1, 1, 8, 8))
    x = torch.rand(8, 4, 1, 8, 8, dtype=torch.float64) * 2
    ex = ReferenceExecutor(graph)
    out_cpu, rec_cpu = ex(x, record=True)
    out_gpu, rec_gpu = ex(x.cuda(), record=True)
    assert out_gpu.device.type == "cuda"
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=0, atol=1e-10)
    spiking = [n for n in rec_cpu if n.startswith("sn")]
    assert sum(float(rec_cpu[n].output.sum()) for n in spiking) > 0
    for n in spiking:
        assert torch.equal(rec_gpu[n].output.cpu(), rec_cpu[n].output), n
        for field, value in rec_cpu[n].states.items():
            torch.testing.assert_close(rec_gpu[n].states[field].cpu(), value, rtol=0,
                                       atol=1e-10, msg=f"{n}.{field}")
