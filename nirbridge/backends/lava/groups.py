"""A Lava run's processes as the kernel sees them: its process group and the ``/dev/shm``
segments they use (Linux ``/proc``), and ending them all (:func:`kill_pids`): frozen
first (SIGSTOP), their segments noted, then SIGKILL, so that none forks or maps another
meanwhile. Used by the run's own process (:mod:`.child`) and by its parent."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable

log = logging.getLogger(__name__)


def process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid`` (Linux ``/proc``)."""
    pids = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def shm_mapped_by(pids: Iterable[int]) -> set[str]:
    """Names of the ``/dev/shm`` files that ``pids`` map or hold open."""
    names: set[str] = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as fh:
                for line in fh:
                    parts = line.split(None, 5)
                    if len(parts) == 6 and parts[5].startswith("/dev/shm/"):
                        path = parts[5].strip()
                        if not path.endswith("(deleted)"):
                            names.add(os.path.basename(path))
        except OSError:
            pass
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("/dev/shm/") and not target.endswith("(deleted)"):
                    names.add(os.path.basename(target))
        except OSError:
            pass
    return {n for n in names if not n.startswith("sem.")}


def unlink_shm(names: Iterable[str]) -> None:
    for name in names:
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - permissions
            log.warning("could not remove /dev/shm/%s: %s", name, exc)


def kill_pids(pids: list[int]) -> set[str]:
    """Freeze ``pids``, note the shared memory they use, kill them; returns the names."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    shm = shm_mapped_by(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return shm


__all__ = ["kill_pids", "process_group_members", "shm_mapped_by", "unlink_shm"]
