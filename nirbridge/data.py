"""Data sets of the deployment recipes, shipped offline, and their spike encodings.

``digits``: scikit-learn's handwritten digits (1,797 real 8×8 scans of 16 grey levels,
bundled with scikit-learn: nothing is downloaded). The split is fixed and deterministic:
the **last 360 samples are the test split**, the first 1,437 the training split (the
data set cycles through the ten classes, so both are balanced to within a few samples).

Encodings turn images ``[N, C, H, W]`` in [0, 1] into inputs ``[T, N, C, H, W]``
(``rows``: ``[T, N, C·W]``):

- ``direct``: the real-valued image repeated at every step (the first layer then does
  graded multiply-accumulates);
- ``rate``: at each step a pixel spikes with probability equal to its intensity
  (Bernoulli, drawn from ``numpy.random.default_rng(seed)``: the same spikes every run);
- ``latency``: one spike per pixel, earlier for brighter pixels, at step
  ``round((1 − x)·(T − 1))``; pixels at 0 never spike;
- ``frames``: the data are already one frame per step (``[N, T, ...]``, event frames of a
  neuromorphic data set): taken as they are, ``T`` must equal the recipe's steps;
- ``rows``: the image presented row by row, the sequential-digits task of recurrent
  networks: step ``t`` gets row ``t`` (its ``C·W`` pixel values, channel-major, in [0, 1],
  graded like ``direct``), so a network sees one 8-pixel row per step and must remember
  the earlier rows to classify. It needs ``T ≥ H`` (the image's height, 8 for digits);
  steps after the last row get zeros (time for the last rows to reach the read-out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nirbridge.backends.inputs import check_allocation
from nirbridge.errors import InputError

#: Size of the fixed test split of ``digits`` (its last samples).
DIGITS_TEST = 360
ENCODINGS = ("direct", "rate", "latency", "rows", "frames")


@dataclass(frozen=True)
class Split:
    """Images ``[N, C, H, W]`` (float64 in [0, 1]) and integer labels ``[N]``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int | None) -> Split:
        """The first ``n`` samples (all when ``n`` is None)."""
        if n is None:
            return self
        if n < 1:
            raise InputError(f"samples={n}; give a positive number of samples")
        return Split(self.images[:n], self.labels[:n])


def load_digits_split(split: str) -> Split:
    """scikit-learn's digits, ``split`` ``"train"`` (first 1,437) or ``"test"`` (last 360),
    scaled to [0, 1] and shaped ``[N, 1, 8, 8]``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float64)[:, None]
    labels = d.target.astype(np.int64)
    cut = len(labels) - DIGITS_TEST
    if split == "train":
        return Split(images[:cut], labels[:cut])
    if split == "test":
        return Split(images[cut:], labels[cut:])
    raise InputError(f"split {split!r} is unknown; use 'train' or 'test'")


#: Data set name → loader of a split.
DATASETS: dict[str, Callable[[str], Split]] = {"digits": load_digits_split}
#: Data set name → shape ``(C, H, W)`` of one image (known without loading the data).
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {"digits": (1, 8, 8)}


def load_split(dataset: str, split: str) -> Split:
    """Split ``split`` of data set ``dataset`` (one of :data:`DATASETS`)."""
    if dataset not in DATASETS:
        raise InputError(f"data set {dataset!r} is unknown; available: "
                         f"{', '.join(sorted(DATASETS))}")
    return DATASETS[dataset](split)


def encode(images: np.ndarray, encoding: str, steps: int, *, seed: int = 0,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """Inputs ``[T, N, ...]`` (float64) from ``images`` ``[N, ...]`` in [0, 1].

    ``rate`` draws from ``rng`` if given, else from ``default_rng(seed)``.
    """
    if steps < 1:
        raise InputError(f"steps={steps}; give at least 1 time step")
    x = np.clip(np.asarray(images, dtype=np.float64), 0.0, 1.0)
    check_allocation(steps * x.nbytes, f"steps = {steps} × {x.shape[0]} samples encoded")
    if encoding == "direct":
        return np.broadcast_to(x, (steps, *x.shape)).copy()
    if encoding == "rate":
        gen = np.random.default_rng(seed) if rng is None else rng
        return (gen.random((steps, *x.shape)) < x).astype(np.float64)
    if encoding == "rows":
        return _rows(x, steps)
    if encoding == "frames":
        return _frames(np.asarray(images, dtype=np.float64), steps)
    if encoding == "latency":
        t_spike = np.rint((1.0 - x) * (steps - 1)).astype(np.int64)
        out = np.zeros((steps, *x.shape))
        for t in range(steps):
            out[t] = (t_spike == t) & (x > 0)
        return out
    raise InputError(f"encoding {encoding!r} is unknown; use one of {', '.join(ENCODINGS)}")


def min_steps(encoding: str, image_shape: tuple[int, ...]) -> int:
    """The fewest time steps ``encoding`` needs for images of ``image_shape`` ``(C, H, W)``:
    ``H`` for ``rows`` (one row per step), else 1."""
    return int(image_shape[-2]) if encoding == "rows" else 1


def _rows(x: np.ndarray, steps: int) -> np.ndarray:
    """``[T, N, C·W]``: row ``t`` of every image at step ``t``, zeros after the last row."""
    if x.ndim != 4:
        raise InputError(f"encoding 'rows' needs images [N, C, H, W]; got shape {x.shape}")
    n, c, h, w = x.shape
    if steps < h:
        raise InputError(f"steps={steps}; encoding 'rows' presents one image row per step "
                         f"and these images have {h} rows: give at least {h} time steps")
    out = np.zeros((steps, n, c * w))
    # [N, C, H, W] -> [H, N, C, W] -> [H, N, C·W]: step t holds row t of each channel
    out[:h] = x.transpose(2, 0, 1, 3).reshape(h, n, c * w)
    return out


def _frames(x: np.ndarray, steps: int) -> np.ndarray:
    """``[T, N, ...]`` from frames ``[N, T, ...]``, unclipped (event counts may exceed 1)."""
    if x.ndim < 3:
        raise InputError(f"encoding 'frames' needs samples [N, T, ...] (one frame per step); "
                         f"got shape {x.shape}")
    if x.shape[1] != steps:
        raise InputError(f"encoding 'frames': the samples have {x.shape[1]} frames and the "
                         f"recipe runs steps = {steps}; give steps = {x.shape[1]} (or bin "
                         "the events into that many frames)")
    return np.ascontiguousarray(np.swapaxes(x, 0, 1))


def is_spike_encoding(encoding: str) -> bool:
    """Whether ``encoding`` produces binary events (the first layer then counts as AC)."""
    return encoding in ("rate", "latency")


__all__ = ["DATASETS", "DIGITS_TEST", "ENCODINGS", "IMAGE_SHAPES", "Split", "encode",
           "is_spike_encoding", "load_digits_split", "load_split", "min_steps"]
