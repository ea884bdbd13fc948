"""The run's own process: the plan it builds, the watchdog, and the cleanup after it.

:func:`run_in_child` (or :class:`ChildRun`, which several runs side by side use) runs
one :class:`RunPlan` in a child process (``fork``) that
becomes the leader of its own process group, builds the Lava Processes from their
``"module:Class"`` recipes (importing Lava there, after :mod:`nirbridge._lava_compat` is
installed), compiles once, runs all steps and stops the runtime. Lava only logs an
exception of a process model and then hangs, so a watchdog thread in the child reports
it with that model's own traceback; on any failure or on the parent's time limit
everything in the process group is killed, the shared-memory segments it mapped are
unlinked, and :class:`~nirbridge.errors.SimulationError` /
:class:`~nirbridge.errors.SimulationTimeout` is raised. No process and no ``/dev/shm``
segment is left.

The run's process also ends everything by itself when its parent dies (it holds none of
the parent's pipe ends, so its command pipe reads end-of-file; Linux sends it SIGTERM by
``PR_SET_PDEATHSIG``; its watchdog polls ``os.getppid()``) and when its own time limit
(the parent's + 2 s) passes. Its scratch folder (the probes' files, and
multiprocessing's sockets, ``pymp-*`` otherwise) is its own from first to last: it makes
it, and removes it on a failure, when the parent is gone, or, after a success, once the
parent has read the probes and sent ``release`` (:meth:`ChildRun.finish`), so that no
SIGKILL of the parent leaves it. See docs/processes.md.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nirbridge._critical import signals_deferred
from nirbridge._files import temp_prefix
from nirbridge.backends.lava.groups import (
    kill_pids,
    process_group_members,
    shm_mapped_by,
    unlink_shm,
)
from nirbridge.backends.lava.network import PROCS
from nirbridge.errors import InputError, SimulationError, SimulationTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")

_LAVA_RUNTIME_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"


# ---------------------------------------------------------------------- the plan
@dataclass
class Observed:
    """One probe of a run: a process that probes itself, or a Monitor."""

    key: str
    offset: int
    record: bool
    states: bool
    nodes: list[str]
    path: str = ""


@dataclass
class RunPlan:
    """One Lava run, as the child builds it: ``(key, "module:Class", kwargs)`` per
    process, ``(src, port, dst, port)`` connections and ``(monitor, ref port, process,
    Var)`` references; the probes and which one observes each node; samples' length
    ``period``, ``samples`` and ``total`` steps."""

    procs: list[tuple[str, str, dict[str, Any]]]
    connections: list[tuple[str, str, str, str]]
    observed: dict[str, Observed]
    node_probe: dict[str, str]
    period: int
    samples: int
    total: int
    var_refs: list[tuple[str, str, str, str]] = field(default_factory=list)


# ------------------------------------------------------------------ the run's process
class _Watchdog(threading.Thread):
    """In the run's process: reports a dead Lava process (with its model's traceback),
    obeys the parent's ``terminate`` (its time limit, an interrupt), and ends the run
    when the parent is gone (its command pipe at end of file, a new parent process id,
    or the parent-death signal) or when the run passes its own time limit."""

    def __init__(self, holder: dict[str, Any], cmd: Any, die: Callable[[str, str, int], None],
                 parent: int, deadline: float | None, signalled: threading.Event) -> None:
        super().__init__(name="nirbridge-lava-watchdog", daemon=True)
        self.holder, self.cmd, self.die = holder, cmd, die
        self.parent, self.deadline = parent, deadline
        self.lock = threading.Lock()
        self.stopping = False  # the run has ended: Lava's processes exit on purpose
        self.signalled = signalled  # SIGTERM/SIGHUP (the parent-death signal)
        self.first = ""  # the first model exception's own line, once reported

    def actors(self) -> list[Any]:
        root = self.holder.get("root")
        runtime = getattr(root, "_runtime", None)
        infra = getattr(runtime, "_messaging_infrastructure", None)
        try:
            return list(getattr(infra, "actors", None) or [])
        except TypeError:
            return []

    @staticmethod
    def _exited(actor: Any) -> bool:
        try:
            return bool(multiprocessing.connection.wait([actor.sentinel], timeout=0))
        except (ValueError, OSError, AttributeError):
            return False

    def labels(self) -> list[str]:
        """Names of the actors, in Lava's order: one per process model, then services."""
        root = self.holder.get("root")
        executable = getattr(getattr(root, "_runtime", None), "_executable", None)
        builders = getattr(executable, "proc_builders", None) or {}
        out = []
        for proc, builder in builders.items():
            model = getattr(getattr(builder, "proc_model", None), "__name__", "?")
            out.append(f"{model} (process '{getattr(proc, 'name', '?')}')")
        return out

    def report(self, dead: Iterable[Any] = ()) -> str:
        """Tracebacks of every Lava process that raised, and notes on silent deaths."""
        texts = []
        dead = list(dead)
        labels = self.labels()
        for i, actor in enumerate(self.actors()):
            exc = getattr(actor, "_exception", None)
            if exc is None and not getattr(actor, "_is_done", True):
                try:
                    if actor._pconn.poll():
                        exc = actor._pconn.recv()
                        actor._exception = exc
                except (OSError, EOFError, ValueError):
                    exc = None
            who = labels[i] if i < len(labels) else "runtime service"
            if exc:
                self.first = self.first or _last_line(exc[1])
                texts.append(f"--- exception in Lava process {who} ---\n{exc[1].rstrip()}")
            elif actor in dead:
                texts.append(f"--- Lava process {who} ended without a Python exception ---")
        return "\n".join(texts)

    def run(self) -> None:
        while True:
            try:
                if self.cmd.poll(0.05):
                    order = self.cmd.recv()
                    if order == "terminate":
                        self.die("timeout", self.report(), 2)
                    elif order == "release":  # the parent has read the probes
                        self.die("released", "", 0)
            except (EOFError, OSError):
                self.die("orphaned", "the parent process went away", 3)
            if self.signalled.is_set() or os.getppid() != self.parent:
                self.die("orphaned", "the parent process went away (or sent SIGTERM)", 3)
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                self.die("timeout", "the run passed its time limit (seen by the run's "
                         "own process)\n" + self.report(), 2)
            with self.lock:
                if self.stopping:
                    continue
                dead = [a for a in self.actors() if self._exited(a)]
            if dead:
                time.sleep(0.3)  # let Lava's own join read what it will
                self.die("model", self.report(dead), 1)

    def stop(self) -> None:
        """The run has ended: from now on only the parent and the time limit count."""
        with self.lock:
            self.stopping = True

    def succeeded(self) -> None:
        """The run has stopped and its probes are written: no time limit any more (the
        parent may take its time reading them); only the parent's release or its
        death ends this process now."""
        self.deadline = None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _prepare_lava_import() -> None:
    """Lava sets the start method to 'fork' at import and fails if one is set: make its
    import possible here (the run's own process), whatever the parent had chosen."""
    if _LAVA_RUNTIME_MODULE not in sys.modules:
        multiprocessing.set_start_method(None, force=True)
    else:
        multiprocessing.set_start_method("fork", force=True)
    from nirbridge import _lava_compat

    _lava_compat.install()


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _make(path: str, key: str, kwargs: dict[str, Any]) -> Any:
    """Instantiate Process ``path`` with ``kwargs``, named ``key`` where it takes a name."""
    cls = _resolve(path)
    params = inspect.signature(cls.__init__).parameters
    if "name" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = dict(kwargs, name=key)
    return cls(**kwargs)


def _parent_death_signal(sig: int) -> None:
    """Linux: have the kernel send ``sig`` to this process when the thread that forked
    it ends (``prctl(PR_SET_PDEATHSIG)``); elsewhere nothing (the watchdog still polls)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no libc symbol
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable")


#: Longest folder for multiprocessing's sockets (``listener-XXXXXXXX``) within AF_UNIX's
#: 108-byte limit on a socket's path.
_SOCKET_FOLDER_MAX = 107 - len("/listener-XXXXXXXX")


def _own_temp_dir(scratch: str | None) -> str | None:
    """Lava's processes make multiprocessing's listener sockets in a ``pymp-*`` folder
    of the temporary directory and leave it when they are killed: give this process
    (and so the processes it forks, which inherit it) the run's scratch folder instead,
    removed with the run. Where its path is too long for a socket, a short folder of
    the same naming in ``/tmp``; returns that one (None: the scratch folder)."""
    if scratch is None:
        return None
    folder, own = scratch, None
    if len(scratch) > _SOCKET_FOLDER_MAX and os.path.isdir("/tmp"):
        folder = own = tempfile.mkdtemp(prefix=temp_prefix("lavamp"), dir="/tmp")
    tempfile.tempdir = folder
    # multiprocessing.util.get_temp_dir() reads this before making a pymp-* folder
    config = getattr(multiprocessing.current_process(), "_config", None)
    if isinstance(config, dict):
        config["tempdir"] = folder
    return own


def _hold_if(event: threading.Event) -> None:
    while event.is_set():  # this process is ending: never fork again
        time.sleep(1)


def _track_segments(stop: threading.Event, lock: threading.Lock, names: set[str]) -> None:
    """In the run's process only: note the name of every ``SharedMemory`` segment it
    creates (Lava's channels are made here, by the main thread, while the watchdog may
    be ending the run), and once ``stop`` is set, make none: a thread that tries waits
    for the end. Then ending the run misses no segment made a moment before."""
    from multiprocessing import shared_memory

    original = shared_memory.SharedMemory.__init__

    def init(self: Any, name: str | None = None, create: bool = False, size: int = 0) -> None:
        with lock:
            if not stop.is_set():
                original(self, name, create, size)
                if create:
                    names.add(self.name.lstrip("/"))
                return
        _hold_if(stop)

    shared_memory.SharedMemory.__init__ = init  # type: ignore[method-assign]


def _default_term_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _child_main(plan: RunPlan, mode: str, result: Any, cmd: Any, steps_per_call: int,
                close: tuple[Any, ...] = (), parent: int = 0,
                deadline: float | None = None, scratch: str | None = None) -> None:
    """Body of the run's process (forked); never returns (``os._exit``). ``close``: the
    parent's pipe ends it inherited, its own run's and other runs' (they must be the
    parent's alone, or a run would not see its parent go); ``parent``: the parent's
    pid; ``deadline``: the time limit (``time.monotonic()``, the same clock in both
    processes) that this process enforces too; ``scratch``: the run's folder, which
    this process creates (the parent only names it) and always removes: after a
    failure, after the parent's ``release`` (it has read the probes) or when the
    parent is gone, so that no moment exists where a SIGKILL of the parent leaves it."""
    os.setsid()  # own process group: everything Lava starts can be found and ended
    signalled = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # the watchdog acts on them
        signal.signal(sig, lambda signum, frame: signalled.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _parent_death_signal(signal.SIGTERM)
    for conn in close:
        try:
            conn.close()
        except OSError:
            pass
    if scratch is not None:
        os.makedirs(scratch, mode=0o700, exist_ok=True)
    sockets = _own_temp_dir(scratch)
    send_lock, dying, no_forks = threading.Lock(), threading.Lock(), threading.Event()
    created: set[str] = set()  # the segments this process made (Lava's channels)
    creating = threading.Lock()

    def send(msg: Any) -> None:
        with send_lock:
            result.send(msg)

    def die(kind: str, text: str, code: int, summary: str = "") -> None:
        if not dying.acquire(blocking=False):
            while True:  # the other thread is ending this process
                time.sleep(1)
        no_forks.set()  # Lava's start-up in the main thread forks no more processes
        with creating:  # and makes no more shared memory (one under way ends first)
            shm = set(created)
        me = os.getpid()
        shm |= shm_mapped_by([me])
        empty = 0
        for _ in range(100):  # again, for a fork that was under way when we looked
            members = [p for p in process_group_members(os.getpgrp()) if p != me]
            if not members:
                empty += 1
                if empty == 2:
                    break
                time.sleep(0.05)
                continue
            empty = 0
            shm |= kill_pids(members)
            for pid in members:  # Lava's processes are this process's children: reap
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
        unlink_shm(shm | shm_mapped_by([me]))
        for folder in (scratch, sockets):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        if kind not in ("orphaned", "released") and send_lock.acquire(timeout=1.0):
            try:
                result.send(("error", {"kind": kind, "text": text, "shm": sorted(shm),
                                       "summary": summary or watchdog.first
                                       or _last_line(text)}))
            except Exception:  # noqa: BLE001 - the parent may be gone
                pass
        os._exit(code)

    holder: dict[str, Any] = {}
    watchdog = _Watchdog(holder, cmd, die, parent or os.getppid(), deadline, signalled)
    # Lava's own processes, forked from here, keep the default (no watchdog there); once
    # the run is being ended, a thread about to fork waits here for the end instead
    _track_segments(no_forks, creating, created)
    os.register_at_fork(before=lambda: _hold_if(no_forks),
                        after_in_child=_default_term_signals)
    watchdog.start()
    try:
        _prepare_lava_import()
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        procs = {key: _make(cls, key, kw) for key, cls, kw in plan.procs}
        for a, pa, z, pz in plan.connections:
            getattr(procs[a], pa).connect(getattr(procs[z], pz))
        for a, ref, z, var in plan.var_refs:
            getattr(procs[a], ref).connect_var(getattr(procs[z], var))
        root = procs[plan.procs[0][0]]
        holder["root"] = root
        t0 = time.perf_counter()
        root.create_runtime(run_cfg=Loihi2SimCfg(select_tag=mode))
        t1 = time.perf_counter()
        done = 0
        while done < plan.total:
            n = min(steps_per_call, plan.total - done)
            root.run(condition=RunSteps(num_steps=n))
            done += n
            send(("progress", done))
        t2 = time.perf_counter()
        watchdog.stop()
        root.stop()
        t3 = time.perf_counter()
        watchdog.succeeded()
        send(("ok", {"compile": t1 - t0, "run": t2 - t1, "stop": t3 - t2}))
        watchdog.join()  # it ends this process (release, orphaned); should it fail:
        die("orphaned", "the run's watchdog stopped", 3)
    except BaseException:  # noqa: BLE001 - everything goes to the parent
        text = traceback.format_exc()
        models = watchdog.report() if holder.get("root") is not None else ""
        die("runtime", f"{models}\n--- in the run's main thread ---\n{text}".strip(), 1,
            summary=watchdog.first or _last_line(text))


def preload_lava() -> None:
    """Import Lava here once so forked runs need not, when that has no side effect
    beyond Lava's own (it sets the multiprocessing start method to 'fork')."""
    if _LAVA_RUNTIME_MODULE in sys.modules:
        return
    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork"):
        return  # Lava's import would fail here; the run's process imports it instead
    try:
        for mod in ("lava.magma.core.run_configs", "lava.magma.core.run_conditions",
                    "lava.proc.io.source", "lava.proc.dense.process",
                    "lava.proc.sparse.process", "lava.proc.lif.process", f"{PROCS}.neurons",
                    f"{PROCS}.plumbing", f"{PROCS}.fixed"):
            importlib.import_module(mod)
    except Exception as exc:  # noqa: BLE001 - the run will report it properly
        log.debug("could not preload Lava: %s", exc)


class ChildRun:
    """One :class:`RunPlan` in its own forked process, watched from the parent without
    blocking, so that several can run side by side (:mod:`.shards`).

    :meth:`start` forks it; :meth:`poll` reads what it sent and says whether it has
    ended (it also enforces the time limit); :meth:`finish` ends and cleans up whatever
    is left (the process group, its ``/dev/shm`` segments) and returns the run's times,
    or raises its :class:`SimulationError`/:class:`SimulationTimeout`; :meth:`cancel`
    makes :meth:`finish` stop a run that has not ended.
    """

    def __init__(self, plan: RunPlan, mode: str, timeout_s: float | None,
                 on_progress: Callable[[int], None], scratch: str | None = None) -> None:
        if timeout_s is not None and not (isinstance(timeout_s, (int, float))
                                          and math.isfinite(timeout_s) and timeout_s > 0):
            raise InputError(f"timeout_s={timeout_s!r}: the time limit of a Lava run must "
                             "be a finite number of seconds > 0 (or None for no limit)")
        self.plan, self.mode, self.timeout_s = plan, mode, timeout_s
        self.on_progress, self.scratch = on_progress, scratch
        self.outcome: tuple[str, Any] | None = None
        self.last = 0
        self.shm: set[str] = set()
        self.pid: int | None = None
        self._deadline: float | None = None
        self._finished: dict[str, float] | SimulationError | None = None

    def start(self, others: Iterable[ChildRun] = ()) -> None:
        """Fork the run's process; ``others``: runs still going, whose pipes it closes
        (as it closes this run's parent ends: only then does it see the parent go).
        A stop signal during it is handled once the pid is recorded (so that
        :meth:`finish` can end what was forked)."""
        with signals_deferred():
            self._start(others)

    def _start(self, others: Iterable[ChildRun]) -> None:
        ctx = multiprocessing.get_context("fork")
        self._res_recv, res_send = ctx.Pipe(duplex=False)
        cmd_recv, self._cmd_send = ctx.Pipe(duplex=False)
        close = tuple(conn for run in (*others, self) for conn in run._conns())
        steps_per_call = max(200, self.plan.total // 50)
        if self.timeout_s is not None:
            self._deadline = time.monotonic() + float(self.timeout_s)
        # the child's own limit comes a little later: the parent's report comes first
        child_deadline = None if self._deadline is None else self._deadline + 2.0
        self._proc = ctx.Process(target=_child_main, name="nirbridge-lava-run",
                                 args=(self.plan, self.mode, res_send, cmd_recv,
                                       steps_per_call, close, os.getpid(), child_deadline,
                                       self.scratch))
        self._proc.start()
        self.pid = self._proc.pid
        res_send.close()
        cmd_recv.close()

    def _conns(self) -> list[Any]:
        conns = [getattr(self, "_res_recv", None), getattr(self, "_cmd_send", None)]
        return [c for c in conns if c is not None and not c.closed]

    @property
    def succeeded(self) -> bool:
        """Whether the run has ended well: its probes can be read (before
        :meth:`finish`, which releases its process, and that removes its folder)."""
        return self.outcome is not None and self.outcome[0] == "ok"

    @property
    def sentinel(self) -> Any:
        """What :func:`multiprocessing.connection.wait` waits on for news of this run."""
        return self._res_recv

    def _take(self, msg: Any) -> tuple[str, Any] | None:
        kind, payload = msg
        if kind == "progress":
            self.on_progress(payload - self.last)
            self.last = payload
            return None
        if kind == "error":
            self.shm.update(payload.get("shm", ()))
            if payload.get("kind") == "timeout":  # the child's own limit
                return "timeout", payload
        return kind, payload

    def poll(self, wait: float = 0.0) -> bool:
        """Read the run's messages for up to ``wait`` seconds; True once it has ended."""
        if self.outcome is not None:
            return True
        if self._deadline is not None:
            wait = max(0.0, min(wait, self._deadline - time.monotonic()))
        while self.outcome is None and self._res_recv.poll(wait):
            wait = 0.0
            try:
                self.outcome = self._take(self._res_recv.recv())
            except EOFError:
                self.outcome = ("died", None)
        if self.outcome is None:
            if not self._proc.is_alive() and not self._res_recv.poll(0):
                self.outcome = ("died", None)
            elif self._deadline is not None and time.monotonic() >= self._deadline:
                self.outcome = ("timeout", None)
        return self.outcome is not None

    def cancel(self, why: str = "interrupted") -> None:
        """Have :meth:`finish` stop this run (if it has not ended) as ``why``."""
        if self.outcome is None:
            self.outcome = (why, None)

    def finish(self) -> dict[str, float]:
        """End and clean up the run; its times (``compile``, ``run``, ``stop``, ``pid``),
        or its error. A stop signal during it is handled after it (a run half ended
        would be nobody's to end); a second call gives the first one's answer."""
        if self._finished is None:
            with signals_deferred():
                try:
                    self._finished = self._finish()
                except SimulationError as exc:
                    self._finished = exc
        if isinstance(self._finished, SimulationError):
            raise self._finished
        return self._finished

    def _finish(self) -> dict[str, float]:
        if self.pid is None:  # start() failed before the fork
            raise SimulationError("the Lava run's process could not be started")
        if self.outcome is None:
            self.poll(0.0)  # what it said before (its own time limit, say) comes first
        if self.outcome is None:
            self.cancel()
        outcome = self.outcome
        proc, res_recv = self._proc, self._res_recv
        if outcome[0] == "ok":
            with contextlib.suppress(OSError):
                self._cmd_send.send("release")
        else:
            try:
                self._cmd_send.send("terminate")
            except OSError:
                pass
            grace = time.monotonic() + 3.0
            while proc.is_alive() and time.monotonic() < grace:
                try:
                    if res_recv.poll(0.05):
                        msg = self._take(res_recv.recv())
                        if outcome[0] == "timeout" and msg and msg[0] == "error":
                            outcome = ("timeout", msg[1])
                except (EOFError, OSError):
                    time.sleep(0.05)
        proc.join(timeout=5.0 if outcome[0] == "ok" else 0.5)
        # the leader is gone or stuck: end every process still in the run's group
        if proc.is_alive():
            leftover = process_group_members(proc.pid) or [proc.pid]
        else:
            leftover = process_group_members(proc.pid)
        if leftover and os.getpgid(0) != proc.pid:
            self.shm |= kill_pids(leftover)
        proc.join(timeout=5.0)
        unlink_shm(self.shm)
        for conn in (res_recv, self._cmd_send):
            conn.close()
        exitcode = proc.exitcode
        if exitcode is not None:
            proc.close()
        self.outcome = outcome
        return self._result(outcome, exitcode)

    def _result(self, outcome: tuple[str, Any], exitcode: int | None) -> dict[str, float]:
        kind, payload = outcome
        plan, last = self.plan, self.last
        if kind == "ok":
            return dict(payload, pid=self.pid)
        if kind == "timeout":
            err: SimulationError = SimulationTimeout(
                f"the Lava run exceeded its time limit of {self.timeout_s:g} s ({last} of "
                f"{plan.total} steps done); it was stopped and its processes ended"
                + (f"\n{payload['text']}" if payload and payload.get("text") else ""))
        elif kind == "died":
            err = SimulationError(f"the Lava run's process ended unexpectedly (exit code "
                                  f"{exitcode}; {last} of {plan.total} steps done)")
        elif kind == "cancelled":
            err = SimulationError(f"the Lava run was stopped because another shard failed "
                                  f"({last} of {plan.total} steps done)")
        elif kind == "interrupted":
            err = SimulationError("the Lava run was interrupted")
        else:
            text = payload.get("text", "")
            what = ("a Lava process model raised" if "--- exception in Lava process" in text
                    else "the Lava run failed:")
            err = SimulationError(f"{what} {payload.get('summary', '')} ({self.mode}; "
                                  f"{last} of {plan.total} steps done)\n{text}")
        err.child_pid = self.pid  # type: ignore[attr-defined]
        err.shm_segments = sorted(self.shm)  # type: ignore[attr-defined]
        raise err


def run_in_child(plan: RunPlan, mode: str, timeout_s: float | None,
                 on_progress: Callable[[int], None], scratch: str | None = None,
                 collect: Callable[[], T] | None = None) -> tuple[dict[str, float], T | None]:
    """Run ``plan`` in its own process (see :class:`ChildRun`) and wait for it; its
    times and what ``collect()`` returned, called once it has succeeded and before its
    process is released (and removes ``scratch``, where its probes are)."""
    run = ChildRun(plan, mode, timeout_s, on_progress, scratch)
    collected = None
    try:
        run.start()
        while not run.poll(0.25):
            pass
        if run.succeeded and collect is not None:
            collected = collect()
    except BaseException:  # an interrupt: nothing of the run is left, then it goes on
        run.cancel()
        try:
            run.finish()
        except SimulationError:
            pass
        raise
    return run.finish(), collected


__all__ = ["ChildRun", "Observed", "RunPlan", "preload_lava", "process_group_members",
           "run_in_child"]
