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
    def kernel(x, scale, lim, out, res):
        # as executor.quantize_input on one value: floor(x·2^f + 0.5) in float64 (the
        # product by a power of two is exact, so no rounding differs), saturated to ±lim
        flim = np.float64(lim)
        n_sat = np.int64(0)
        peak = 0.0
        for t in range(x.shape[0]):
            for b in range(x.shape[1]):
                for i in range(x.shape[2]):
                    v = x[t, b, i]
                    if not np.isfinite(v):
                        res[0] = 1
                        return
                    q = np.floor(v * scale + 0.5)
                    if q > flim:
                        q = flim
                        n_sat += 1
                    elif q < -flim:
                        q = -flim
                        n_sat += 1
                    peak = max(peak, abs(q))
                    out[t, b, i] = q
        res[1] = n_sat
        res[2] = np.int64(peak)

    return kernel


@cache
def _round_kernel():
    import numba

    @numba.njit(cache=False, nogil=True)
    def kernel(x, scale, out):
        # the loop of _quantize_kernel where nothing saturates: branch-free, so it
        # vectorizes (about 5x faster)
        for t in range(x.shape[0]):
            for b in range(x.shape[1]):
                for i in range(x.shape[2]):
                    out[t, b, i] = np.floor(x[t, b, i] * scale + 0.5)

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


def quantize_float(x: np.ndarray, frac_bits: int, lim: int, dtype: type, name: str,
                   peak: float) -> tuple[np.ndarray, int, int]:
    """Real input ``x`` ``[T, B, ...]`` → the integers ``round_half_up(x·2^frac_bits)``
    saturated to ``±lim``, in float ``dtype`` (the caller ensures ``lim`` is below its
    ``2^p``: every value is then exact), contiguous, in one pass that reads ``x`` where it
    lies (a chunk of samples is a strided view: no copy first). Returns ``(q, saturated
    count, a bound on max|q|)``; ``peak``: ``max|x|`` over ``x`` or a whole input it is a
    chunk of (:func:`input_peak`, finite): where it shows that nothing saturates, the pass
    is branch-free. NaN or inf raises :class:`~nirbridge.errors.InputError` naming the
    Input node ``name``."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.size and not arr[0, 0].flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    out = np.empty(arr.shape, dtype=dtype)
    scale = 2.0 ** frac_bits
    # |floor(x·s + 0.5)| ≤ floor(|x|·s + 0.5) for either sign of x
    top = np.floor(peak * scale + 0.5)
    if top <= lim:
        _round_kernel()(_3d(arr), scale, _3d(out))
        return out, 0, int(top)
    res = np.zeros(3, dtype=np.int64)
    _quantize_kernel()(_3d(arr), scale, lim, _3d(out), res)
    if res[0]:
        raise InputError(f"input for node '{name}' contains NaN or inf")
    return out, int(res[1]), int(res[2])


def _3d(a: np.ndarray) -> np.ndarray:
    """``[T, B, ...]`` as ``[T, B, n]``, a view (each sample's values are contiguous)."""
    return a.reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:], dtype=np.int64)))


__all__ = ["input_peak", "quantize_float"]
