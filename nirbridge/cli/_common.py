"""What the commands share: reading inputs and graphs, warnings, common options."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from nirbridge.errors import InputError, NirbridgeError


def _number(text: str, kind: type, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (``--steps``, ``--samples``, ``--batch``, ...)."""
    value = _number(text, int, "a whole number (e.g. 100; no exponent)")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer ≥ 0 (``--lava-samples``: 0 runs no Lava)."""
    value = _number(text, int, "a whole number (e.g. 100; no exponent)")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def positive_finite_float(text: str) -> float:
    """argparse type: a finite number > 0 (``--timeout``, ``--dt``): NaN and inf refused,
    so a limit cannot be switched off by accident."""
    value = _number(text, float, "a number")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise InputError(f"--input-shape {text!r} is not a comma-separated list of integers "
                         "(e.g. 1,28,28)") from None
    if not shape or any(s <= 0 for s in shape):
        raise InputError(f"--input-shape {text!r} must list positive sizes (e.g. 1,28,28)")
    return shape


def load_array(path: str, what: str = "--input") -> Any:
    import numpy as np

    if not Path(path).is_file():
        raise InputError(f"{what} file '{path}' does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{what} file '{path}' is not a .npy array: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{what} file '{path}' holds several arrays; give one .npy array")
    from nirbridge.backends.inputs import check_dtype, check_series

    check_dtype(arr.dtype, f"{what} file '{path}'")
    if what == "--input":  # a time series [T, B, ...]; labels and others are not
        check_series(arr.shape, f"{what} file '{path}'")
    if what == "--labels":
        _check_labels(arr, f"{what} file '{path}'")
    return arr


def load_calibration(path: str) -> Any:
    """``--calibrate X.npy``: calibration inputs ``[T, B, ...]``, finite, as float64."""
    import numpy as np

    x = np.asarray(load_array(path, "--calibrate"), dtype=np.float64)
    if x.ndim < 3:
        raise InputError(f"--calibrate '{path}' has shape {x.shape}; expected [T, B, ...] "
                         "(time first, then samples)")
    if not np.isfinite(x).all():
        raise InputError(f"--calibrate '{path}' contains NaN or inf")
    return x


def _check_labels(arr: Any, what: str) -> None:
    """Class labels: one whole number ≥ 0 per sample."""
    import numpy as np

    values = arr.reshape(-1).astype(np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{what}: label {arr.reshape(-1)[i]!r} at sample {i} is not a class "
                         "number "
                         "(a whole number ≥ 0)")


def warn(args: argparse.Namespace, message: str) -> None:
    """One warning line on stderr, named like the command's errors."""
    print(f"nirbridge {args.command}: warning: {message}", file=sys.stderr)


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12,
          "tib": 2**40}


def parse_bytes(text: str, option: str = "--max-bytes") -> int:
    """``4GiB``, ``500MB``, ``3e9`` ... as a number of bytes (>= 0)."""
    raw = text.strip().lower().replace(" ", "")
    num = raw.rstrip("kmgtib")
    unit = raw[len(num):]
    try:
        value = float(num) * _UNITS[unit]
    except (ValueError, KeyError):
        raise InputError(f"{option} {text!r} is not a size; give bytes, e.g. 4GiB, 500MB or "
                         "3000000000") from None
    if not (0 <= value < float("inf")):
        raise InputError(f"{option} {text!r} must be a finite size >= 0")
    return int(value)


def read_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``--max-bytes`` and ``--read-timeout`` as :func:`nirbridge.io.read`'s keywords."""
    out: dict[str, Any] = {}
    if getattr(args, "max_bytes", None) is not None:
        out["max_bytes"] = parse_bytes(args.max_bytes)
    timeout = getattr(args, "read_timeout", None)
    if timeout is not None:
        if not (0 < timeout < float("inf")):
            raise InputError(f"--read-timeout {timeout!r} must be a positive, finite number "
                             "of seconds")
        out["timeout_s"] = timeout
    return out


def read_options(p: argparse.ArgumentParser) -> None:
    """``--max-bytes`` and ``--read-timeout``: the bounds on reading an untrusted file."""
    p.add_argument("--max-bytes", metavar="SIZE",
                   help="refuse a .nir file declaring more data than this (default 2GiB; "
                        "e.g. 8GiB for a large file you trust)")
    p.add_argument("--read-timeout", type=float, metavar="SECONDS",
                   help="stop reading the .nir file after this long (default 10 s plus 1 s "
                        "per 50 MB it declares plus 1 ms per entry)")


def load_graph(args: argparse.Namespace, *, require_dt: bool, warn_findings: bool = True
               ) -> tuple[Any, Any, list[Any]]:
    """``args.file`` read, with ``--from``'s reading applied (its notes printed), the dt
    resolved (``--dt``, else the file's; ``require_dt``: refuse a file without one) and
    printed, and the time-step sanity findings warned about (``--strict``: refused).
    Returns ``(graph, TimeStep, findings)``."""
    from nirbridge.io.read import from_framework, read
    from nirbridge.passes import resolve_dt
    from nirbridge.sanity import check_time_step, refuse

    graph = read(args.file, **read_kwargs(args))
    try:
        if getattr(args, "framework", None):
            graph, notes = from_framework(graph, args.framework, dt=args.dt)
            for note in notes:
                print(f"--from {args.framework}: {note}")
        step = resolve_dt(graph, args.dt, require=require_dt, option="--dt")
    except NirbridgeError as exc:
        raise type(exc)(f"{args.file}: {exc}") from exc
    print(step.line)
    findings = check_time_step(graph, step.dt)
    if getattr(args, "strict", False):
        refuse(findings)
    if warn_findings:
        for f in findings:
            warn(args, f.message)
    return graph, step, findings


def warn_reading(args: argparse.Namespace, backend: Any, graph: Any, dt: float) -> None:
    """Say where ``backend`` computes something other than NIR's meaning of ``graph``
    (its :meth:`reading` notes, at most 5 here; ``nirbridge verify`` measures them)."""
    from nirbridge.passes import with_dt

    notes = backend.reading(with_dt(graph, dt)).notes
    for note in notes[:5]:
        warn(args, f"{backend.name} departs from the NIR spec: {note}")
    if len(notes) > 5:
        warn(args, f"{backend.name}: {len(notes) - 5} more departures (nirbridge verify "
                   "lists and measures them)")


def run_section(backend: str, step: Any, findings: list[Any]) -> tuple[str, list[list[str]],
                                                                      list[str]]:
    """The report section of a run: backend, dt and where it came from, findings."""
    rows = [["backend", "dt", "dt from", "sanity"],
            [backend, f"{step.dt:g}", step.source,
             "ok" if not findings else f"{len(findings)} finding(s)"]]
    return "Run", rows, [f.message for f in findings]



def lava_parallel_options(p: argparse.ArgumentParser, *, recipes: bool) -> None:
    """``--workers``/``--cluster`` (passed to the Lava backends' run only when given) and,
    for recipes, ``--lava-samples``."""
    if recipes:
        p.add_argument("--lava-samples", type=nonnegative_int,
                       help="recipes: samples Lava confirms (default: the recipe's "
                            "[simulation] lava_samples, else all up to 360)")
    p.add_argument("--workers", type=positive_int,
                   help="Lava: shard the samples over N child processes")
    p.add_argument("--cluster", help="Lava: run the shards on this distributed cluster "
                                     "(its scheduler ADDRESS)")


def backend_help(what: str) -> str:
    """``--backend``'s help: every name of the backend table and its aliases. The option
    stays free text so that an unknown name gets the backends' own one-line error."""
    from nirbridge.backends import ALIASES, names

    aliases = ", ".join(f"{a} = {b}" for a, b in ALIASES.items())
    return (f"{what}: {', '.join(names())}" + (f" ({aliases})" if aliases else "") +
            "; default reference")


def backend_names() -> list[str]:
    from nirbridge.backends import names

    return names()


def frameworks() -> str:
    from nirbridge.export.frontends import FRONTENDS

    return "|".join(FRONTENDS)


def dt_options(p: argparse.ArgumentParser, *, strict: bool = True,
                dt_help: str = "time step (default: the file's metadata['dt'])") -> None:
    """``--dt``, ``--from FRAMEWORK``, (``strict``) ``--strict``, and the read bounds
    (:func:`read_options`). ``--from`` stays free text so that an unknown name gets the
    one-line error listing the known ones."""
    p.add_argument("--dt", type=positive_finite_float, help=dt_help)
    p.add_argument("--from", dest="framework", metavar="FRAMEWORK",
                   help=f"read the file as {frameworks()} wrote it: that framework's dt "
                        "convention and its known semantic differences (notes printed)")
    if strict:
        p.add_argument("--strict", action="store_true",
                       help="refuse a forward-Euler neuron with dt/τ > 1 instead of warning")
    read_options(p)  # every command that reads a .nir file takes dt_options

