"""Non-zero counts of ``[T, B, ...]`` values, the one primitive every event count reads:
per element over the batch (:func:`nonzero_by_element`) and per time step
(:func:`nonzero_per_step`). Exact: every count is a whole number below 2^53."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

#: Elements per block when counting non-zeros (:func:`nonzero_by_element`): a block of
#: time steps whose comparison buffer stays in cache while it is summed.
COUNT_BLOCK_ELEMENTS = 1 << 16


def _nonzero_blocks(x: torch.Tensor, limit: int):
    """``(a, e, nz)`` per block of time steps ``a:e`` of ``x``: ``nz = (x[a:e] ≠ 0)`` as 0/1
    written into one small buffer (float32 while sums of up to ``limit`` ones are exact,
    below 2^24; float64 beyond), so that each block is summed while it is in cache."""
    t = int(x.shape[0])
    per_step = max(int(np.prod(x.shape[1:], dtype=np.int64)), 1)
    acc = torch.float32 if limit < (1 << 24) else torch.float64
    k = max(1, min(t, COUNT_BLOCK_ELEMENTS // per_step))
    buf = torch.empty((k, *x.shape[1:]), dtype=acc, device=x.device)
    for a in range(0, t, k):
        e = min(a + k, t)
        nz = buf[:e - a]
        torch.ne(x[a:e], 0, out=nz)
        yield a, e, nz


#: Elements from which a count runs as one compiled loop (:func:`_count_kernels`): below
#: it torch's comparison and reduction cost little, and nothing is compiled.
COMPILED_FROM = 1 << 15


@cache
def _count_kernels():
    """numba loops (compiled at their first call in a process, ~0.2 s; no cache file) that
    count in one pass over the values, with no comparison buffer: on this 2-core machine
    3-15x torch's ``ne`` + ``sum`` on a block in cache, 2.5-3.5x on one in memory (a
    hand-written loop because no library counts non-zeros per element over an axis in
    one pass)."""
    import numba

    @numba.njit(cache=False, nogil=True)
    def by_element(x, out):  # x [T, B, N], out [T, N] zeroed
        for t in range(x.shape[0]):
            for b in range(x.shape[1]):
                for i in range(x.shape[2]):
                    out[t, i] += x[t, b, i] != 0.0

    @numba.njit(cache=False, nogil=True)
    def per_step(x, out):  # x [T, M], out [T]
        for t in range(x.shape[0]):
            c = 0
            for i in range(x.shape[1]):
                c += x[t, i] != 0.0
            out[t] = c

    return by_element, per_step


def _compiled(x: torch.Tensor) -> np.ndarray | None:
    """``x`` as a numpy view when the compiled loops should count it: large enough, on the
    CPU, contiguous, float32 or float64; else None (torch counts it)."""
    if x.numel() < COMPILED_FROM or x.device.type != "cpu" or not x.is_contiguous() \
            or x.dtype not in (torch.float64, torch.float32) or x.requires_grad:
        return None
    return x.numpy()


def nonzero_by_element(x: torch.Tensor) -> torch.Tensor:
    """``C[t, ...] = Σ_b (x[t, b, ...] ≠ 0)``, float64 ``[T, ...]`` on the CPU: the non-zero
    count of every input element over the batch, all that the SOPs of any downstream
    synapse (``Σ_i C[t, i]·fanout_i``), the spike counts and the events need of ``x``.

    One pass over ``x``, a block of time steps at a time, with no whole-tensor copy: the
    comparison is written into a small buffer and summed over the batch there. Exact:
    every partial sum is an integer ≤ B (see :func:`_nonzero_blocks`).
    """
    if x.shape[1] == 1:  # nothing to sum over: one comparison (a reduction costs more)
        return (x[:, 0] != 0).to(device="cpu", dtype=torch.float64)
    arr = _compiled(x)
    if arr is not None:
        out = np.zeros((x.shape[0], arr[0, 0].size), dtype=np.float64)
        _count_kernels()[0](arr.reshape(x.shape[0], x.shape[1], -1), out)
        return torch.from_numpy(out).reshape(x.shape[0], *x.shape[2:])
    out = torch.empty((x.shape[0], *x.shape[2:]), dtype=torch.float64, device=x.device)
    for a, e, nz in _nonzero_blocks(x, int(x.shape[1])):
        torch.sum(nz, 1, dtype=torch.float64, out=out[a:e])
    return out.cpu()


def nonzero_per_step(x: torch.Tensor) -> torch.Tensor:
    """``[T]`` int64 on the CPU: the non-zero elements of each time step of ``x``, blocked
    as :func:`nonzero_by_element` (``count_nonzero`` with ``dim`` over a whole ``[T, ·]``
    tensor is several times slower, except on a tensor small enough to stay in cache)."""
    if x.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    arr = _compiled(x)
    if arr is not None:
        steps = np.empty(x.shape[0], dtype=np.int64)
        _count_kernels()[1](arr.reshape(x.shape[0], -1), steps)
        return torch.from_numpy(steps)
    if x.numel() <= COUNT_BLOCK_ELEMENTS:  # in cache as it is: one call
        return torch.count_nonzero(x.reshape(x.shape[0], -1), dim=1).cpu()
    out = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    per_step = int(np.prod(x.shape[1:], dtype=np.int64))
    for a, e, nz in _nonzero_blocks(x, per_step):
        torch.sum(nz.reshape(e - a, -1), 1, dtype=torch.float64, out=out[a:e])
    return out.cpu().to(torch.int64)  # whole numbers below 2^53: exact


__all__ = ["COMPILED_FROM", "COUNT_BLOCK_ELEMENTS", "nonzero_by_element", "nonzero_per_step"]
