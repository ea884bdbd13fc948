"""Files nirbridge writes: whole or not at all, and temporary files that nothing outlives.

* :func:`atomic_path` / :func:`write_bytes` / :func:`save_npz`: one output file appears
  whole or not at all; :func:`write_files`: several (a Markdown report and its PNGs)
  appear together or not at all.
* Every temporary file or folder carries the writing process's id in its name:
  ``nirbridge-<pid>-<purpose>-XXXX`` in the temporary directory (:func:`make_temp_dir`),
  ``.<name>.nirbridge-<pid>-XXXX.tmp`` beside an output. They are removed when the
  command ends, by an error or by SIGTERM/SIGINT (which the CLI turns into exceptions,
  so that ``finally`` blocks run). A SIGKILL leaves them; :func:`sweep_stale` (which
  every ``nirbridge`` command runs when it starts, and which :func:`atomic_path` runs on
  the target's folder) removes those whose process is gone.

A process id can be reused, so a leftover whose id now belongs to a live process waits
for a later sweep: the sweep never removes what a live process may still use.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nirbridge.errors import InputError, NirbridgeError

#: Every temporary name starts with this, then the owner's pid and a dash.
TEMP_PREFIX = "nirbridge-"
#: ``nirbridge-<pid>-<purpose>-XXXXXXXX`` (a folder in the temporary directory) and
#: ``.<name>.nirbridge-<pid>-w-XXXXXXXX.tmp`` (beside an output); XXXXXXXX is tempfile's.
_OWNED = re.compile(r"nirbridge-(\d+)-[a-z0-9]+-[a-z0-9_]{8}")
_IN_TMP = re.compile(_OWNED.pattern + r"\Z")
_BESIDE = re.compile(r"\..+\." + _OWNED.pattern + r"\.tmp\Z", re.DOTALL)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[-1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_prefix(purpose: str, pid: int | None = None) -> str:
    """``nirbridge-<pid>-<purpose>-``: the start of a temporary name of this process."""
    return f"{TEMP_PREFIX}{os.getpid() if pid is None else pid}-{purpose}-"


def make_temp_dir(purpose: str, folder: str | os.PathLike[str] | None = None) -> str:
    """A new private folder ``nirbridge-<pid>-<purpose>-XXXX`` in ``folder`` (default:
    the temporary directory); the caller removes it (:func:`remove_tree`)."""
    return tempfile.mkdtemp(prefix=temp_prefix(purpose), dir=folder)


def new_temp_dir_path(purpose: str) -> str:
    """The path of a folder :func:`make_temp_dir` would make, not made: for a folder
    that another process (a Lava run's, which removes it whatever happens to this one)
    creates, so that no moment exists where this process alone owns it. The name is
    as unguessable as tempfile's (8 random characters of the same alphabet)."""
    rand = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789_") for _ in range(8))
    return os.path.join(tempfile.gettempdir(), temp_prefix(purpose) + rand)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a folder or file if it exists, ignoring what is already gone."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            p.unlink()


@contextlib.contextmanager
def temp_dir(purpose: str) -> Iterator[str]:
    """A :func:`make_temp_dir` folder for the block, removed after it (also on errors
    and on the CLI's SIGTERM/SIGINT exceptions)."""
    path = make_temp_dir(purpose)
    try:
        yield path
    finally:
        remove_tree(path)


def owner_pid(name: str) -> int | None:
    """The pid a temporary ``name`` of nirbridge carries, else None."""
    m = _IN_TMP.match(name) or _BESIDE.match(name)
    return int(m.group(1)) if m else None


def stale_temp_paths(folder: str | os.PathLike[str] | None = None,
                     target: str | None = None) -> list[Path]:
    """nirbridge's temporary files and folders in ``folder`` (default: the temporary
    directory) whose process is gone; ``target``: only the hidden ones beside the
    output of that name."""
    where = Path(folder if folder is not None else tempfile.gettempdir())
    try:
        names = os.listdir(where)
    except OSError:
        return []
    want = None if target is None else f".{target}.{TEMP_PREFIX}"
    out = []
    for name in names:
        if want is not None and not name.startswith(want):
            continue
        pid = owner_pid(name)
        if pid is not None and pid != os.getpid() and not pid_alive(pid):
            out.append(where / name)
    return out


def sweep_stale(folder: str | os.PathLike[str] | None = None,
                target: str | None = None) -> list[Path]:
    """Remove :func:`stale_temp_paths`; returns what was removed."""
    stale = stale_temp_paths(folder, target)
    for path in stale:
        remove_tree(path)
    return stale


def _hidden_temp(parent: Path, name: str, *, folder: bool = False) -> Path:
    prefix = f".{name}.{temp_prefix('w')}"
    try:
        if folder:
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=parent)
    except OSError as exc:
        raise NirbridgeError(f"cannot write {parent / name}: {exc.strerror or exc}") from exc
    os.close(fd)
    return Path(tmp)


def _check_parent(target: Path, make_parents: bool) -> None:
    parent = target.parent
    if make_parents:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NirbridgeError(f"cannot write {target}: {exc.strerror or exc}") from exc
    if not parent.is_dir():
        raise InputError(f"cannot write {target}: directory {parent} does not exist; "
                         "create it first")
    sweep_stale(parent, target.name)


def _write_error(target: Path, exc: BaseException) -> NirbridgeError:
    if isinstance(exc, OSError) and exc.strerror:
        what = exc.strerror + (" (the disk is full or a file-size limit was reached)"
                               if exc.errno in (27, 28) else "")
    else:
        what = f"{type(exc).__name__}: {exc}"
    return NirbridgeError(f"cannot write {target}: {what}".splitlines()[0])


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, make_parents: bool = False
                ) -> Iterator[Path]:
    """A temporary path beside ``path`` (``.NAME.nirbridge-<pid>-w-XXXX.tmp``) that
    replaces it only if the block succeeds.

    The temporary file is removed on any failure, SIGTERM/SIGINT included (an existing
    ``path`` is left untouched). Any non-nirbridge exception raised while writing
    becomes a one-line :class:`NirbridgeError` naming the target (a full disk too). A
    missing directory is an :class:`InputError` unless ``make_parents``.
    """
    target = Path(path)
    _check_parent(target, make_parents)
    tmp = _hidden_temp(target.parent, target.name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, target)
    except NirbridgeError:
        raise
    except Exception as exc:
        raise _write_error(target, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, make_parents: bool = False
                ) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path, make_parents=make_parents) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextlib.contextmanager
def atomic_hdf5(path: str | os.PathLike[str], **kwargs: Any) -> Iterator[Any]:
    """An ``h5py.File`` (``kwargs`` as for it) built in memory and written to ``path``
    atomically after the block (:func:`write_bytes`).

    libhdf5 never writes to the disk itself: on a full disk it fails inside its own
    close and dealloc calls, printing errors and sometimes crashing the interpreter;
    here the only disk write is one ordinary file write, whose failure is one
    :class:`NirbridgeError` line naming ``path``."""
    import io

    import h5py

    target = Path(path)
    _check_parent(target, False)
    buf = io.BytesIO()
    with h5py.File(buf, "w", **kwargs) as f:
        yield f
    write_bytes(target, buf.getvalue())


def save_npz(path: str | os.PathLike[str], arrays: Mapping[str, Any]) -> Path:
    """``arrays`` as an uncompressed ``.npz`` (what :func:`numpy.load` reads), written
    atomically; a failed write (a full disk) is one :class:`NirbridgeError` line.

    The zip archive is closed in this block whatever happens (``numpy.savez`` leaves
    it to the garbage collector after a failed write, which then reports a second
    error on stderr)."""
    import numpy as np

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        for key, value in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
    return Path(path)


def write_files(files: Mapping[str | os.PathLike[str], bytes],
                main: str | os.PathLike[str], *, make_parents: bool = False) -> Path:
    """Write several files so that they appear together or not at all: ``main`` (one of
    ``files``' keys, e.g. a Markdown report) last, after the others (its images).

    Everything is written into a hidden folder beside ``main`` first; then each file
    replaces its target (an existing one is kept aside); if any step fails, or SIGTERM/
    SIGINT arrives, the targets already replaced get their old contents back (or are
    removed) and the error is one :class:`NirbridgeError` line naming the file."""
    main_path = Path(main)
    paths = {Path(p): data for p, data in files.items()}
    if main_path not in paths:
        raise NirbridgeError(f"write_files: {main_path} is not among the files to write")
    _check_parent(main_path, make_parents)
    order = [p for p in paths if p != main_path] + [main_path]
    for p in order:
        if p.parent.resolve() != main_path.parent.resolve():
            raise NirbridgeError(f"write_files: {p} is not in {main_path.parent}")
        if p.is_dir():
            part = "" if p == main_path else f" (its file {p.name})"
            raise NirbridgeError(f"cannot write {main_path}{part}: it is a directory")
    stage = _hidden_temp(main_path.parent, main_path.name, folder=True)
    moved: list[tuple[Path, Path | None]] = []
    current = main_path
    try:
        for i, p in enumerate(order):
            current = p
            (stage / f"new{i}").write_bytes(paths[p])
            os.chmod(stage / f"new{i}", 0o666 & ~_umask())
        for i, p in enumerate(order):
            current = p
            old = None
            if p.exists():
                old = stage / f"old{i}"
                os.replace(p, old)
            moved.append((p, old))
            os.replace(stage / f"new{i}", p)
        moved.clear()
        return main_path
    except BaseException as exc:
        for p, old in reversed(moved):  # undo: the old files back, the new ones gone
            with contextlib.suppress(OSError):
                if old is not None:
                    os.replace(old, p)
                else:
                    p.unlink(missing_ok=True)
        if isinstance(exc, NirbridgeError) or not isinstance(exc, Exception):
            raise
        err = _write_error(main_path, exc)
        if current != main_path:  # name the part that failed too
            err = NirbridgeError(str(err).replace(f"{main_path}:", f"{main_path} (its file "
                                                  f"{current.name}):", 1))
        raise err from exc
    finally:
        remove_tree(stage)


__all__ = ["TEMP_PREFIX", "atomic_hdf5", "atomic_path", "make_temp_dir", "new_temp_dir_path",
           "owner_pid", "pid_alive", "remove_tree", "save_npz", "stale_temp_paths", "sweep_stale",
           "temp_dir", "temp_prefix", "write_bytes", "write_files"]
