"""netx's weight packing, transcribed (:func:`netx_dense_packing`,
:func:`netx_dense_rec_packing`), so that the writer can check that Lava will use exactly
the integer weights the file holds."""

from __future__ import annotations

import numpy as np

from nirbridge.errors import LoweringError

#: Loihi's 8-bit mixed-sign synaptic weights (plus the sign), as Lava Dense clips them.
LAVA_WEIGHT_RANGE = (-256, 255)


def _netx_optimize(weight: np.ndarray) -> tuple[np.ndarray, int, int]:
    """lava-dl 0.6.0 ``netx/utils.py:optimize_weight_bits``: ``(weights scaled up,
    num_weight_bits, weight_exp)``."""
    w = np.asarray(weight).astype(np.int64)
    if not np.any(w):
        raise LoweringError("all weights are zero; lava-dl netx's optimize_weight_bits "
                            "divides by the largest weight and crashes")
    wmax, wmin = int(w.max()), int(w.min())
    if wmax > 254 and wmin < 0:
        w = np.clip(w, -256, 254)
        wmax = int(w.max())
    if wmin < -256 and wmax > 0:
        w = np.clip(w, -256, 254)
        wmin = int(w.min())
    if wmax < 0:
        signed, scale = 0, -256.0 / wmin
    elif wmin >= 0:
        signed, scale = 0, 255.0 / wmax
    else:
        signed = 1
        scale = min(127.0 / wmax if wmax else np.inf, -128.0 / wmin)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.sum(np.abs(w / 2.0 ** n - np.round(w / 2.0 ** n))) != 0:
        n -= 1
    n -= signed
    num_weight_bits = 8 - scale_bits - n
    if scale_bits < 0:
        raise LoweringError(f"weights up to {wmax} do not fit netx's 8-bit packing")
    return w << scale_bits, num_weight_bits, -scale_bits


def _lava_dense_weights(w: np.ndarray, num_weight_bits: int) -> np.ndarray:
    """Lava Dense (``PyDenseModelBitAcc``, first ``run_spk``) on the weights netx hands
    it: sign mode of these weights, ``clip_weights(num_bits=8)``, ``truncate_weights``."""
    if w.min() >= 0:
        mode = "exc"
    elif w.max() <= 0:
        mode = "inh"
    else:
        mode = "mixed"
    mixed = int(mode == "mixed")
    if mode == "inh":
        w = -w
    w = np.clip(w, -(1 << 8) * mixed, (1 << 8) - 1)
    n_trunc = 8 - num_weight_bits + mixed
    if n_trunc < 0:
        raise LoweringError(f"netx packs these weights with a negative truncation "
                            f"({n_trunc} bits); Lava's result is undefined")
    w = (w >> n_trunc) << n_trunc
    if mode == "inh":
        w = -w
    return w


def netx_dense_packing(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """The integer weights and ``weight_exp`` Lava's Dense ends up using for a netx
    ``dense`` layer whose file holds ``weight``: transcribed from lava-dl 0.6.0
    ``netx/utils.py:optimize_weight_bits`` and lava-nc 0.10.0
    ``lava/utils/weightutils.py`` (``determine_sign_mode``, ``clip_weights(num_bits=8)``,
    ``truncate_weights``), as ``netx.blocks.process.Dense`` chains them. Lava then delivers
    ``(Σ w·s) << weight_exp`` (``>>`` for negative exponents). Raises
    :class:`LoweringError` where netx itself would crash (all-zero weights) or shift by a
    negative count (a layer it cannot pack)."""
    w, bits, exp = _netx_optimize(weight)
    return _lava_dense_weights(w, bits), exp


def netx_dense_rec_packing(weight: np.ndarray, weight_rec: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, int]:
    """As :func:`netx_dense_packing` for a ``dense_rec`` layer: netx packs the input and
    recurrent weights side by side (``optimize_weight_bits`` of ``hstack((weight,
    weight_rec))``, one ``weight_exp`` and bit width), then each goes to its own Lava
    Dense, which picks its own sign mode. Returns ``(weights, recurrent weights,
    weight_exp)`` as Lava uses them."""
    w = np.asarray(weight).astype(np.int64)
    both, bits, exp = _netx_optimize(np.hstack((w, np.asarray(weight_rec).astype(np.int64))))
    return (_lava_dense_weights(both[:, :w.shape[1]], bits),
            _lava_dense_weights(both[:, w.shape[1]:], bits), exp)


def dense_exact(weight: np.ndarray, weight_rec: np.ndarray | None = None) -> bool:
    """True if netx + Lava Dense deliver exactly ``Σ weight·s`` (and ``Σ weight_rec·s``
    for a ``dense_rec`` layer)."""
    if weight_rec is None:
        packed, exp = netx_dense_packing(weight)
        return exp <= 0 and np.array_equal(packed, np.asarray(weight, dtype=np.int64) << -exp)
    packed, packed_rec, exp = netx_dense_rec_packing(weight, weight_rec)
    return exp <= 0 and all(np.array_equal(p, np.asarray(w, dtype=np.int64) << -exp)
                            for p, w in ((packed, weight), (packed_rec, weight_rec)))


__all__ = ["LAVA_WEIGHT_RANGE", "dense_exact", "netx_dense_packing", "netx_dense_rec_packing"]
