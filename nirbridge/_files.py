"""Atomic file output: every file nirbridge writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nirbridge.errors import InputError, NirbridgeError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, make_parents: bool = False
                ) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block succeeds.

    The temporary file is removed on any failure (and an existing ``path`` is left
    untouched). Any non-nirbridge exception raised while writing becomes a
    :class:`NirbridgeError` naming the target. A missing directory is an
    :class:`InputError` unless ``make_parents``.
    """
    target = Path(path)
    parent = target.parent
    if make_parents:
        parent.mkdir(parents=True, exist_ok=True)
    if not parent.is_dir():
        raise InputError(f"cannot write {target}: directory {parent} does not exist; "
                         "create it first")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise NirbridgeError(f"cannot write {target}: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, target)
    except NirbridgeError:
        raise
    except Exception as exc:
        raise NirbridgeError(f"cannot write {target}: {type(exc).__name__}: {exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, make_parents: bool = False
                ) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path, make_parents=make_parents) as tmp:
        tmp.write_bytes(data)
    return Path(path)
