"""Compiled loops of the batched emulator (:mod:`nirbridge.quantize.emulator`): numba,
compiled at their first call in a process (no cache file is written)."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from nirbridge.errors import InputError


@cache
def _quantize_kernel():
    import numba

    @numba.njit(cache=False, nogil=True)
    def kernel(x, n_batch, n, lo, scale, lim, out, res):
        # as executor.quantize_input on one value: floor(x·2^f + 0.5) in float64 (the
        # product by a power of two is exact, so no rounding differs), saturated to ±lim
        flim = np.float64(lim)
        n_sat = np.int64(0)
        peak = 0.0
        n_t, row = out.shape
        for t in range(n_t):
            src = (t * n_batch + lo) * n
            for i in range(row):
                v = x[src + i]
                if not np.isfinite(v):
                    res[0] = 1
                    return
                q = np.floor(v * scale + 0.5)
                c = min(max(q, -flim), flim)  # saturated to ±lim, counted
                n_sat += c != q
                q = c
                peak = max(peak, abs(q))
                out[t, i] = q
        res[1] = n_sat
        res[2] = np.int64(peak)

    return kernel


@cache
def _round_kernel():
    import numba

    @numba.njit(cache=False, nogil=True)
    def kernel(x, n_batch, n, lo, scale, out):
        # the loop of _quantize_kernel where nothing saturates: branch-free over
        # contiguous rows, so it vectorizes (about 5x faster)
        n_t, row = out.shape
        for t in range(n_t):
            src = (t * n_batch + lo) * n
            for i in range(row):
                out[t, i] = np.floor(x[src + i] * scale + 0.5)

    return kernel


def input_peak(x: torch.Tensor, name: str) -> float:
    """``max|x|`` in one vectorized reduction, which also finds NaN and inf (min and max
    propagate NaN: :class:`~nirbridge.errors.InputError` naming the Input node ``name``)."""
    if not x.numel():
        return 0.0
    lo, hi = torch.aminmax(x)
    peak = max(-float(lo), float(hi))
    if not np.isfinite(peak):
        raise InputError(f"input for node '{name}' contains NaN or inf")
    return peak


def quantize_float(x: np.ndarray, lo: int, hi: int, frac_bits: int, lim: int, dtype: type,
                   name: str, peak: float) -> tuple[np.ndarray, int, int]:
    """Samples ``lo:hi`` of the real input ``x`` ``[T, B, ...]`` (C-contiguous float64) →
    the integers ``round_half_up(x·2^frac_bits)`` saturated to ``±lim``, ``[T, hi − lo,
    ...]``, contiguous, in float ``dtype`` (the caller ensures ``lim`` is below its
    ``2^p``: every value is then exact), in one pass over the chunk where it lies (no copy
    first: each step's samples are one contiguous run of ``x``). Returns ``(q, saturated
    count, a bound on max|q|)``; ``peak``: ``max|x|`` of the whole input
    (:func:`input_peak`, finite): where it shows that nothing saturates, the pass is
    branch-free. NaN or inf raises :class:`~nirbridge.errors.InputError` naming the Input
    node ``name``."""
    assert x.dtype == np.float64 and x.flags.c_contiguous
    n_t, n_batch = x.shape[:2]
    n = int(np.prod(x.shape[2:], dtype=np.int64))  # values per sample and step
    out = np.empty((n_t, hi - lo, *x.shape[2:]), dtype=dtype)
    flat, rows = x.reshape(-1), out.reshape(n_t, -1) if out.size else out.reshape(n_t, 0)
    scale = 2.0 ** frac_bits
    # |floor(x·s + 0.5)| ≤ floor(|x|·s + 0.5) for either sign of x
    top = np.floor(peak * scale + 0.5)
    if top <= lim:
        _round_kernel()(flat, n_batch, n, lo, scale, rows)
        return out, 0, int(top)
    res = np.zeros(3, dtype=np.int64)
    _quantize_kernel()(flat, n_batch, n, lo, scale, lim, rows, res)
    if res[0]:
        raise InputError(f"input for node '{name}' contains NaN or inf")
    return out, int(res[1]), int(res[2])


__all__ = ["input_peak", "quantize_float"]
