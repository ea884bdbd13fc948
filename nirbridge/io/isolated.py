"""Run a function on untrusted input in a forked child with a time and memory limit.

libhdf5 can spin in C on a corrupt file (Python's signal handlers never run there) and a
filter can allocate past what a file declares, so the reader runs in a child process:
:func:`call_isolated` forks, the child runs the function and sends its result back
through a pipe, and the parent kills the child when the time limit passes. A fork costs
~2-10 ms even in a process that has imported torch (copy-on-write page tables; measured
in docs/file_safety.md), against ~0.5 s for a fresh interpreter (``spawn``), and the
child touches only h5py and numpy, which are safe to use after a fork.

The child never outlives the parent: it asks the kernel for SIGKILL when the parent dies
(``PR_SET_PDEATHSIG``), arms its own ``alarm`` (default action: terminate, which needs
no Python code to run) a little past the parent's limit, resets the parent's signal
handlers (so that a SIGTERM or Ctrl-C never runs the parent's cleanup code in the child)
and exits with ``os._exit``. Its address space is capped (``RLIMIT_AS``) at what it has
plus ``memory_bytes``, so an allocation past that fails in the child instead of taking
the machine's memory.

The result comes back pickled (protocol 5, arrays out of band: no copy of their data),
and the parent unpickles it with an allow-list of numpy's array constructors only.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import math
import os
import pickle
import select
import signal
import struct
import time
from collections.abc import Callable
from typing import Any

from nirbridge import errors
from nirbridge._critical import signals_deferred
from nirbridge.errors import FileFormatError, NirbridgeError, UnsafeFileError

_HEADER = struct.Struct("<cQ")
_PR_SET_PDEATHSIG = 1
_IN_BAND_BYTES = 64 * 1024
_ALLOWED = {
    ("builtins", "complex"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _frame(fd: int, kind: bytes, payload: bytes | memoryview) -> None:
    _write_all(fd, _HEADER.pack(kind, memoryview(payload).nbytes))
    _write_all(fd, payload)


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child_setup(parent: int, memory_bytes: int | None) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM,
                signal.SIGPIPE, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the alarm below still ends the child
        pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    if memory_bytes is not None:
        try:
            import resource

            vm = _vm_size()
            if vm:
                cap = vm + memory_bytes + 256 * 2**20
                resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        except (ImportError, ValueError, OSError):
            pass


def _child(fd: int, parent: int, fn: Callable[..., Any], args: tuple[Any, ...],
           first_limit_s: float, budget: Callable[[Any], float],
           memory_bytes: int | None) -> None:
    try:
        _child_setup(parent, memory_bytes)
        signal.alarm(int(math.ceil(first_limit_s)) + 2)

        def progress(value: Any) -> None:
            signal.alarm(int(math.ceil(budget(value))) + 2)
            _frame(fd, b"P", json.dumps(value).encode())

        result = fn(progress, *args)
        buffers: list[pickle.PickleBuffer] = []

        def out_of_band(buf: pickle.PickleBuffer) -> bool:
            # small arrays go in band: a frame each (two writes, a poll and a read in
            # the parent) cost more than their copy; 30,000 on a 10,000-node graph
            if buf.raw().nbytes < _IN_BAND_BYTES:
                return True
            buffers.append(buf)
            return False

        data = pickle.dumps(result, protocol=5, buffer_callback=out_of_band)
        _frame(fd, b"R", struct.pack("<Q", len(buffers)) + data)
        for buf in buffers:
            _frame(fd, b"B", buf.raw())
    except MemoryError:
        _frame(fd, b"E", json.dumps({"cls": "UnsafeFileError", "msg": (
            "reading it needs more memory than the read limit allows (a decompression "
            "bomb or a corrupt size); if you trust the file, raise --max-bytes")}).encode())
    except NirbridgeError as exc:
        _frame(fd, b"E", json.dumps({"cls": type(exc).__name__, "msg": str(exc)}).encode())
    except BaseException as exc:  # noqa: BLE001 - everything goes back as one message
        # h5py's errors carry libhdf5's reason ("bad object header version number")
        detail = str(exc.args[0]) if isinstance(exc, (OSError, KeyError, ValueError,
                                                      RuntimeError)) and exc.args else \
            f"{type(exc).__name__}: {exc}"
        msg = (f"could not be read ({detail}); the file is truncated, corrupt or written by "
               "an incompatible tool")
        _frame(fd, b"E", json.dumps({"cls": "FileFormatError", "msg": msg}).encode())


class _Receiver:
    def __init__(self, fd: int, deadline: float) -> None:
        self.fd = fd
        self.deadline = deadline
        self.poll = select.poll()
        self.poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    def exact(self, n: int) -> bytearray | None:
        """``n`` bytes, None at end of file; raises TimeoutError past the deadline."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            left = self.deadline - time.monotonic()
            if left <= 0 or not self.poll.poll(max(1, int(left * 1000))):
                if time.monotonic() >= self.deadline:
                    raise TimeoutError
                continue
            k = os.readv(self.fd, [view[got:]])
            if k == 0:
                return None
            got += k
        return buf

    def frame(self) -> tuple[bytes, bytearray] | None:
        head = self.exact(_HEADER.size)
        if head is None:
            return None
        kind, n = _HEADER.unpack(head)
        body = self.exact(n)
        if body is None:
            return None
        return kind, body


def _died(pid: int) -> str:
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
        return f"the reader process was killed by {name}"
    return f"the reader process exited with status {os.WEXITSTATUS(status)}"


def call_isolated(fn: Callable[..., Any], *args: Any, first_limit_s: float,
                  budget: Callable[[Any], float], what: Callable[[float], str],
                  memory_bytes: int | None = None) -> Any:
    """``fn(progress, *args)`` run in a forked child; its result, or the
    :class:`~nirbridge.errors.NirbridgeError` it raised (same class and message).

    The child may call ``progress(value)`` (a JSON value) any number of times: after
    each call the time limit is ``budget(value)`` seconds from the start (the latest
    value's), before the first ``first_limit_s``. The values come from the child's own
    code, so ``budget`` must bound them (the reader's come from the census, which caps
    the sizes and links it counts).
    Past the limit the child is killed and :class:`~nirbridge.errors.UnsafeFileError`
    raised with ``what(limit)``. Where ``os.fork`` is missing, ``fn`` runs in-process.
    """
    if not hasattr(os, "fork"):
        return fn(lambda value: None, *args)
    start = time.monotonic()
    r, w = os.pipe()
    parent = os.getpid()
    pid = 0
    reaped = False
    limit = first_limit_s
    try:
        with signals_deferred():  # no stop signal between the fork and ``pid`` recorded
            try:
                pid = os.fork()
            except OSError:
                os.close(w)
                raise
            if pid == 0:  # pragma: no cover - the child's exit status is all it says
                try:  # (its _child_setup gives it default handlers first)
                    os.close(r)
                    _child(w, parent, fn, args, first_limit_s, budget, memory_bytes)
                finally:
                    os._exit(0)
            os.close(w)
        rx = _Receiver(r, start + limit)
        while True:
            try:
                got = rx.frame()
            except TimeoutError:
                raise UnsafeFileError(what(limit)) from None
            if got is None:
                reaped = True
                raise FileFormatError(f"could not be read: {_died(pid)} (a crash in "
                                      "libhdf5 on a corrupt file, or out of memory)")
            kind, body = got
            if kind == b"P":
                limit = float(budget(json.loads(body)))
                rx.deadline = start + limit
            elif kind == b"E":
                info = json.loads(body)
                cls = getattr(errors, str(info.get("cls")), None)
                if not (isinstance(cls, type) and issubclass(cls, NirbridgeError)):
                    cls = FileFormatError
                raise cls(str(info.get("msg")))
            elif kind == b"R":
                (count,) = struct.unpack_from("<Q", body)
                buffers = []
                for _ in range(count):
                    try:
                        part = rx.frame()
                    except TimeoutError:
                        raise UnsafeFileError(what(limit)) from None
                    if part is None or part[0] != b"B":
                        raise FileFormatError("could not be read: the reader process "
                                              "stopped while sending the result")
                    buffers.append(part[1])
                return _Unpickler(io.BytesIO(bytes(body[8:])), buffers=buffers).load()
            else:
                raise FileFormatError(f"could not be read: the reader sent {kind!r}")
    finally:
        with contextlib.suppress(OSError):
            os.close(r)
        if pid and not reaped:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)


__all__ = ["call_isolated"]
