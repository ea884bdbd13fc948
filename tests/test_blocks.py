"""Feed-forward regions run in blocks of time steps (nirbridge.backends.blocks) give the bits
of the node-by-node run: conv nets (a residual one among them) and MLPs, float32 and
float64, several batch sizes and block sizes (odd ones included)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from nirbridge.backends import blocks, reference
from nirbridge.backends.reference import ReferenceExecutor


def _lif(shape: tuple[int, ...], v_th: float) -> nir.LIF:
    return nir.LIF(tau=np.full(shape, 5e-3), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, v_th), v_reset=np.zeros(shape))


def _conv_net() -> nir.NIRGraph:
    """Conv → LIF → SumPool → Conv → LIF → Flatten → Affine → LIF: one chain."""
    rng = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(np.array([1, 8, 8])),
        "c1": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 0.8, (4, 1, 3, 3)),
                         stride=1, padding=1, dilation=1, groups=1, bias=rng.normal(0, .1, 4)),
        "l1": _lif((4, 8, 8), 0.3),
        "p1": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                            padding=np.array([0, 0])),
        "c2": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 0.5, (6, 4, 3, 3)),
                         stride=1, padding=1, dilation=1, groups=1, bias=rng.normal(0, .1, 6)),
        "l2": _lif((6, 4, 4), 0.3),
        "flat": nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([6, 4, 4])}),
        "fc": nir.Affine(rng.normal(0, 0.3, (5, 96)), rng.normal(0, 0.1, 5)),
        "l3": _lif((5,), 0.3),
        "output": nir.Output(np.array([5])),
    }
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:], strict=True)),
                        metadata={"dt": 1e-3}, type_check=False)


def _residual_net() -> nir.NIRGraph:
    """Conv → LIF (s1) → Conv → LIF → Conv, summed with s1 into a LIF → SumPool → Conv:
    s1 read by two nodes (fan-out), a node summing two inputs, one region."""
    rng = np.random.default_rng(2)

    def conv(cin: int, cout: int, size: int, k: int = 3, pad: int = 1) -> nir.Conv2d:
        return nir.Conv2d(input_shape=(size, size), weight=rng.normal(0, 0.6, (cout, cin, k, k)),
                          stride=1, padding=pad, dilation=1, groups=1,
                          bias=rng.normal(0, .1, cout))

    nodes = {
        "input": nir.Input(np.array([1, 6, 6])),
        "c1": conv(1, 3, 6), "s1": _lif((3, 6, 6), 0.3),
        "c2": conv(3, 3, 6), "s2": _lif((3, 6, 6), 0.3),
        "c3": conv(3, 3, 6), "s3": _lif((3, 6, 6), 0.3),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "head": conv(3, 4, 3, k=3, pad=0),
        "output": nir.Output(np.array([4, 1, 1])),
    }
    edges = [("input", "c1"), ("c1", "s1"), ("s1", "c2"), ("c2", "s2"), ("s2", "c3"),
             ("c3", "s3"), ("s1", "s3"), ("s3", "pool"), ("pool", "head"), ("head", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3}, type_check=False)


def _mlp() -> nir.NIRGraph:
    rng = np.random.default_rng(1)
    sizes = [12, 9, 7]
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array([12]))}
    edges, prev = [], "input"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        nodes[f"fc{i}"] = nir.Affine(rng.normal(0, 1.0, (b, a)), rng.normal(0, 0.1, b))
        nodes[f"lif{i}"] = _lif((b,), 0.4)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["output"] = nir.Output(np.array([7]))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3}, type_check=False)


def _runs(graph: nir.NIRGraph, x: torch.Tensor, dtype: torch.dtype, monkeypatch):
    ex = ReferenceExecutor(graph, dtype=dtype)
    assert ex._regions  # the graph has a region to block
    with torch.no_grad():
        blocked = ex(x)
        rec_out, _ = ex(x, record={"output"})  # Output is no chain member: still blocked
        monkeypatch.setattr(reference, "find_regions", lambda *a, **k: {})
        plain = ReferenceExecutor(graph, dtype=dtype)(x)
        monkeypatch.undo()
        recorded, records = ex(x, record=True)  # every node recorded: node by node
    return blocked, rec_out, plain, recorded, records


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 3, 260])
@pytest.mark.parametrize("block_bytes", [1, 700, 1 << 20])
def test_blocked_regions_give_the_bits_of_the_node_by_node_run(dtype, batch, block_bytes,
                                                              monkeypatch):
    steps = 9  # odd: blocks of one step and more, of unequal sizes
    gen = torch.Generator().manual_seed(batch)
    for graph, shape in ((_conv_net(), (1, 8, 8)), (_mlp(), (12,)),
                         (_residual_net(), (1, 6, 6))):
        x = (torch.rand(steps, batch, *shape, generator=gen) * 1.5).to(torch.float64)
        with monkeypatch.context() as m:
            m.setattr(blocks, "BLOCK_BYTES", block_bytes)
            blocked, rec_out, plain, recorded, records = _runs(graph, x, dtype, m)
        assert blocked.dtype == dtype and blocked.shape[:2] == (steps, batch)
        assert torch.equal(blocked, plain)
        assert torch.equal(blocked, recorded)
        assert torch.equal(blocked, rec_out)
        spiking = next(n for n in ("l1", "lif0", "s3") if n in records)
        assert records[spiking].output.sum() > 0  # spikes occur


def test_block_cuts_keep_enough_samples_per_block():
    for steps, batch, per_step, rows in ((100, 1, 10, 256), (9, 3, 1, 2), (100, 256, 1 << 21, 256),
                                         (7, 1, 1, 2)):
        cuts = blocks.block_cuts(steps, batch, per_step, rows)
        assert cuts[0] == 0 and cuts[-1] == steps
        assert all((b - a) * batch >= min(rows, steps * batch) for a, b in
                   zip(cuts[:-1], cuts[1:], strict=True))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matrix_products_and_convolutions_over_a_block_give_the_bits_of_all_rows(dtype):
    """The premise, on this machine's kernels: a block of MIN_LINEAR_ROWS rows or more of a
    linear layer, and of two samples or more of a convolution, equals the same rows of one
    call over all of them."""
    gen = torch.Generator().manual_seed(2)
    for k, n in ((700, 256), (256, 20), (33, 7)):
        w, b = torch.randn(n, k, generator=gen).to(dtype), torch.randn(n, generator=gen).to(dtype)
        x = torch.randn(2600, k, generator=gen).to(dtype)
        full = tF.linear(x, w, b)
        for a, m in ((0, blocks.MIN_LINEAR_ROWS), (257, 300), (2600 - 513, 513)):
            assert torch.equal(tF.linear(x[a:a + m], w, b), full[a:a + m]), (k, n, a, m)
    w = torch.randn(8, 4, 3, 3, generator=gen).to(dtype)
    x = torch.randn(41, 4, 8, 8, generator=gen).to(dtype)
    full = tF.conv2d(x, w, padding=1)
    for a, m in ((0, 2), (3, 5), (38, 3)):
        assert torch.equal(tF.conv2d(x[a:a + m], w, padding=1), full[a:a + m])


def test_the_residual_net_is_one_region_keeping_only_what_is_read_after_it():
    ex = ReferenceExecutor(_residual_net())
    assert ex._regions == {"c1": (("c1", "s1", "c2", "s2", "c3", "s3", "pool", "head"),
                                  frozenset({"head"}))}
