"""Whole data sets for the recipes, streamed in batches (never loaded whole).

A recipe's ``[data] dataset`` names one of four kinds of source (:func:`open_source`):

- ``"digits"``: scikit-learn's handwritten digits (:mod:`nirbridge.data`; 360 test samples,
  bundled). Its encoding is drawn over the whole split first, as it always was, so that
  the first ``n`` samples get the same spikes whatever ``n`` and the batch size are.
- ``"npz:PATH"``: a NumPy ``.npz`` file (path relative to the recipe), one of two layouts:

  * **frames or images**: ``x`` ``[N, ...]`` float and ``y`` ``[N]`` integer labels. With
    ``encoding = "frames"`` each sample is ``[T, ...]``, one frame per step (``T`` must be
    the recipe's steps); with the other encodings each sample is a static image in [0, 1]
    encoded as digits are (``direct``, ``rate``, ``latency``, ``rows``);
  * **events**: ``events`` ``[E, 4]`` integers, one row ``(t, x, y, p)`` per event (``t``
    in microseconds, the samples' events one after the other), ``lengths`` ``[N]`` (events
    per sample), ``y`` ``[N]`` labels and ``sensor_size`` ``[3]`` ``(W, H, P)``. Each
    sample is binned by tonic's own ``ToFrame(sensor_size, n_time_bins=steps)`` into
    frames ``[T, P, H, W]`` of event counts (``encoding = "frames"``; needs ``tonic``).

  ``x`` and ``events`` are read from the archive a batch at a time (the members may be
  compressed, ``np.savez_compressed``); ``y``, ``lengths`` and ``sensor_size`` are small and
  read whole.
- ``"tonic:NAME"`` with ``root = "FOLDER"``: ``tonic.datasets.NAME`` read from ``FOLDER``
  (tonic's own layout, ``FOLDER/NAME/...``), the ``test`` split as ``train=False``, each
  sample's events binned by ``tonic.transforms.ToFrame(sensor_size=NAME.sensor_size,
  n_time_bins=steps)`` (``encoding = "frames"``). Nothing is downloaded: tonic 1.6 has no
  ``download=False``, so the class is run with a ``download`` that refuses, naming the
  folder it expected.
- ``"MODULE:FACTORY"`` (or ``path/file.py:FACTORY``): ``FACTORY()`` returns a map-style
  torch ``Dataset`` (``len`` and ``ds[i] -> (sample, label)``); a sample is ``[T, ...]``
  with ``encoding = "frames"``, else a static image encoded as above.

Labels are one integer class per sample. The ``rate`` encoding of the sources other than
digits draws each sample from ``numpy.random.default_rng([seed, index])``: the same spikes
whatever the batch size.
"""

from __future__ import annotations

import inspect
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nirbridge.data import encode, load_split
from nirbridge.errors import InputError, NirbridgeError

#: The dataset spellings :func:`open_source` reads (the first is the bundled set).
KINDS = ("digits", "npz:PATH", "tonic:NAME", "MODULE:FACTORY")


class Source:
    """A data set split: its length and its samples, encoded, in batches."""

    name: str

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, n: int, batch_size: int, encoding: str, steps: int,
                seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The first ``n`` samples as ``(inputs [T, B, ...] float64, labels [B] int64)``
        batches of at most ``batch_size`` samples, in order."""
        raise NotImplementedError


def _encoded(raw: np.ndarray, encoding: str, steps: int, seed: int, start: int
             ) -> np.ndarray:
    """``[T, B, ...]`` from raw samples ``[B, ...]`` (frames, or images to encode)."""
    if encoding != "rate":
        return encode(raw, encoding, steps)
    parts = [encode(raw[i: i + 1], "rate", steps,
                    rng=np.random.default_rng([seed, start + i])) for i in range(len(raw))]
    return np.concatenate(parts, axis=1)


def _labels(y: Any, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{what}: labels must be integers [N]; got {y.dtype} {y.shape}")
    return y.astype(np.int64)


@dataclass
class DigitsSource(Source):
    """scikit-learn's digits (see the module's documentation)."""

    split: str = "test"
    name: str = "digits"

    def __post_init__(self) -> None:
        self._data = load_split("digits", self.split)

    def __len__(self) -> int:
        return len(self._data)

    def batches(self, n: int, batch_size: int, encoding: str, steps: int,
                seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x = encode(self._data.images, encoding, steps, seed=seed)
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            yield np.ascontiguousarray(x[:, s:e]), self._data.labels[s:e]


class _Member:
    """One array of an ``.npz``, read row by row in order (a ``.npy`` inside the zip)."""

    def __init__(self, zf: zipfile.ZipFile, key: str, what: str) -> None:
        self._fh = zf.open(f"{key}.npy")
        version = np.lib.format.read_magic(self._fh)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        self.shape, fortran, self.dtype = read(self._fh)
        if fortran or self.dtype.hasobject or not self.shape:
            raise InputError(f"{what}: array '{key}' must be a C-ordered numeric array with a "
                             "sample axis (save it with np.savez from np.ascontiguousarray)")
        self._row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self, rows: int) -> np.ndarray:
        buf = self._fh.read(rows * self._row)
        if len(buf) != rows * self._row:
            raise InputError(f"array of shape {self.shape} ended early")
        return np.frombuffer(buf, self.dtype).reshape(rows, *self.shape[1:])


def _to_frame(sensor_size: tuple[int, int, int], steps: int) -> Any:
    try:
        from tonic.transforms import ToFrame
    except ImportError as exc:
        raise InputError("event data are binned into frames by tonic's ToFrame: "
                         "pip install 'nirbridge[data]' (tonic 1.6.0)") from exc
    return ToFrame(sensor_size=tuple(int(v) for v in sensor_size), n_time_bins=steps)


def _events_array(rows: np.ndarray) -> np.ndarray:
    """``[E, 4]`` ``(t, x, y, p)`` rows as the structured array tonic's transforms take."""
    ev = np.zeros(len(rows), dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))
    for i, k in enumerate(("t", "x", "y", "p")):
        ev[k] = rows[:, i]
    return ev


def _frames(frames: list[np.ndarray], steps: int, what: str) -> np.ndarray:
    """Stack per-sample frames ``[T', ...]`` into ``[B, T, ...]``: ToFrame gives fewer bins
    than asked for a sample without events in its last bins; those steps get zeros."""
    out = np.zeros((len(frames), steps, *frames[0].shape[1:]))
    for i, f in enumerate(frames):
        if f.shape[0] > steps or f.shape[1:] != frames[0].shape[1:]:
            raise InputError(f"{what}: sample frames have shape {f.shape}; expected "
                             f"[{steps}, {', '.join(map(str, frames[0].shape[1:]))}]")
        out[i, : f.shape[0]] = f
    return out


class NpzSource(Source):
    """An ``.npz`` file in one of the layouts of the module's documentation."""

    def __init__(self, path: Path) -> None:
        self.path, self.name = Path(path), f"npz:{path}"
        try:
            with np.load(self.path) as f:
                keys = set(f.files)
                self._events = "events" in keys
                need = ("events", "lengths", "y", "sensor_size") if self._events else ("x", "y")
                missing = [k for k in need if k not in keys]
                if missing:
                    raise InputError(f"{self.path}: no array {', '.join(map(repr, missing))}; "
                                     "an .npz data set holds x and y (frames or images) or "
                                     "events, lengths, y and sensor_size (see "
                                     "nirbridge.datasets)")
                self._y = _labels(f["y"], str(self.path))
                if self._events:
                    self._lengths = np.asarray(f["lengths"], dtype=np.int64)
                    self._sensor = tuple(int(v) for v in np.asarray(f["sensor_size"]))
                    if len(self._lengths) != len(self._y) or len(self._sensor) != 3:
                        raise InputError(f"{self.path}: lengths must be [N] like y, "
                                         "sensor_size (W, H, P)")
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"{self.path}: not a readable .npz file ({exc})") from exc

    def __len__(self) -> int:
        return len(self._y)

    def batches(self, n: int, batch_size: int, encoding: str, steps: int,
                seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        what = str(self.path)
        if self._events and encoding != "frames":
            raise InputError(f"{what}: event data are binned into frames; give encoding = "
                             "'frames'")
        to_frame = _to_frame(self._sensor, steps) if self._events else None
        with zipfile.ZipFile(self.path) as zf:
            member = _Member(zf, "events" if self._events else "x", what)
            if self._events and (len(member.shape) != 2 or member.shape[1] != 4):
                raise InputError(f"{what}: events must be [E, 4] rows (t, x, y, p); got "
                                 f"{member.shape}")
            if not self._events and member.shape[0] != len(self._y):
                raise InputError(f"{what}: x has {member.shape[0]} samples, y {len(self._y)}")
            for s in range(0, n, batch_size):
                e = min(n, s + batch_size)
                if to_frame is None:
                    raw = member.read(e - s).astype(np.float64)
                else:
                    frames = [to_frame(_events_array(member.read(int(k))))
                              for k in self._lengths[s:e]]
                    raw = _frames(frames, steps, what)
                yield _encoded(raw, encoding, steps, seed, s), self._y[s:e]


class _IndexedSource(Source):
    """A map-style data set ``ds[i] -> (sample, label)``; samples are encoded (or taken as
    frames ``[T, ...]``)."""

    def __init__(self, name: str, ds: Any) -> None:
        self.name, self._ds = name, ds

    def __len__(self) -> int:
        return len(self._ds)

    def _frames_of(self, steps: int) -> Any:
        """What turns one raw sample into frames ``[T', ...]`` (None: used as it is)."""
        return None

    def batches(self, n: int, batch_size: int, encoding: str, steps: int,
                seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        transform = self._frames_of(steps) if encoding == "frames" else None
        for s in range(0, n, batch_size):
            xs, ys = [], []
            for i in range(s, min(n, s + batch_size)):
                x, y = self._ds[i]
                if transform is not None:
                    x = transform(x)
                xs.append(x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x))
                ys.append(int(y))
            if transform is not None:
                raw = _frames(xs, steps, self.name)
            else:
                try:
                    raw = np.stack(xs).astype(np.float64)
                except ValueError as exc:
                    raise InputError(f"{self.name}: samples {s}.. differ in shape "
                                     f"({exc})") from exc
            yield _encoded(raw, encoding, steps, seed, s), _labels(ys, self.name)


class _TonicSource(_IndexedSource):
    """A tonic data set: events binned by ``ToFrame(sensor_size, n_time_bins=steps)``."""

    def __init__(self, name: str, ds: Any, sensor_size: tuple[int, int, int]) -> None:
        super().__init__(name, ds)
        self._sensor = sensor_size

    def _frames_of(self, steps: int) -> Any:
        return _to_frame(self._sensor, steps)

    def batches(self, n: int, batch_size: int, encoding: str, steps: int,
                seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if encoding != "frames":
            raise InputError(f"{self.name}: events are binned into frames; give encoding = "
                             "'frames'")
        return super().batches(n, batch_size, encoding, steps, seed)


def _tonic_source(name: str, root: Path, split: str) -> Source:
    try:
        import tonic.datasets
    except ImportError as exc:
        raise InputError(f"dataset 'tonic:{name}' needs tonic: pip install 'nirbridge[data]' "
                         "(tonic 1.6.0)") from exc
    cls = getattr(tonic.datasets, name, None)
    if not isinstance(cls, type):
        known = sorted(k for k, v in vars(tonic.datasets).items()
                       if isinstance(v, type) and k[:1].isupper())
        raise InputError(f"tonic has no data set {name!r}; known: {', '.join(known)}")

    def refuse(self: Any) -> None:
        raise InputError(f"tonic:{name}: the files are not in {self.location_on_system} "
                         f"(expected {getattr(self, 'filename', '')} and its extracted data, "
                         "tonic's layout); nirbridge never downloads: fetch them with tonic "
                         "first")

    # Same class name: tonic keeps its folder (root/NAME); only download() changes.
    local = type(cls.__name__, (cls,), {"download": refuse})
    params = inspect.signature(cls.__init__).parameters
    kw: dict[str, Any] = {}
    if "train" in params:
        kw["train"] = split == "train"
    elif "split" in params:
        kw["split"] = split
    try:
        ds = local(save_to=str(root), **kw)
    except NirbridgeError:
        raise
    except Exception as exc:
        raise InputError(f"tonic:{name} in {root}: {type(exc).__name__}: {exc}") from exc
    return _TonicSource(f"tonic:{name}", ds, tuple(cls.sensor_size))


def open_source(dataset: str, split: str = "test", *, root: Path | None = None,
                base: Path | None = None) -> Source:
    """The :class:`Source` a recipe's ``[data] dataset`` names (see the module's
    documentation); relative paths are resolved against ``base`` (the recipe's folder)."""
    def resolve(p: str | Path) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() or base is None else (base / q).resolve()

    if dataset == "digits":
        return DigitsSource(split)
    if dataset.startswith("npz:"):
        path = resolve(dataset[4:])
        if not path.is_file():
            raise InputError(f"dataset {dataset!r}: file '{path}' does not exist")
        if split != "test":
            raise InputError(f"dataset {dataset!r}: an .npz file is one split; give "
                             "split = 'test' (one file per split)")
        return NpzSource(path)
    if dataset.startswith("tonic:"):
        if root is None:
            raise InputError(f"dataset {dataset!r} needs root = FOLDER (tonic's save_to)")
        return _tonic_source(dataset[6:], resolve(root), split)
    if ":" in dataset:
        from nirbridge.factory import load_factory

        try:
            ds = load_factory(dataset)()
        except NirbridgeError as exc:
            raise InputError(f"dataset {dataset!r}: {exc}") from exc
        if not (hasattr(ds, "__len__") and hasattr(ds, "__getitem__")):
            raise InputError(f"dataset {dataset!r} returned {type(ds).__name__}; expected a "
                             "map-style torch Dataset (len and ds[i] -> (sample, label))")
        return _IndexedSource(dataset, ds)
    raise InputError(f"dataset {dataset!r} is unknown; give one of {', '.join(KINDS)}")


__all__ = ["KINDS", "DigitsSource", "NpzSource", "Source", "open_source"]
