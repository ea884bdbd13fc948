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
        for i in range(x.size):
            v = x[i]
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
            out[i] = q
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
        for i in range(x.size):
            out[i] = np.floor(x[i] * scale + 0.5)

    return kernel


def quantize_float(x: np.ndarray, frac_bits: int, lim: int, dtype: type, name: str
                   ) -> tuple[np.ndarray, int, int]:
    """Real input ``x`` → the integers ``round_half_up(x·2^frac_bits)`` saturated to
    ``±lim``, in float ``dtype`` (the caller ensures ``lim`` is below its ``2^p``: every
    value is then exact), in one pass. Returns ``(q, saturated count, max|q|)``; NaN or
    inf raises :class:`~nirbridge.errors.InputError` naming the Input node ``name``."""
    arr = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty(arr.shape, dtype=dtype)
    scale = 2.0 ** frac_bits
    if arr.size:
        # one vectorized reduction finds NaN/inf (min and max propagate NaN) and bounds
        # the integers: |floor(x·s + 0.5)| ≤ floor(|x|·s + 0.5) for either sign of x
        lo, hi = torch.aminmax(torch.from_numpy(arr))
        peak = max(-float(lo), float(hi))
        if not np.isfinite(peak):
            raise InputError(f"input for node '{name}' contains NaN or inf")
        top = np.floor(peak * scale + 0.5)
        if top <= lim:
            _round_kernel()(arr.reshape(-1), scale, out.reshape(-1))
            return out, 0, int(top)
    res = np.zeros(3, dtype=np.int64)
    _quantize_kernel()(arr.reshape(-1), scale, lim, out.reshape(-1), res)
    if res[0]:
        raise InputError(f"input for node '{name}' contains NaN or inf")
    return out, int(res[1]), int(res[2])


__all__ = ["quantize_float"]
