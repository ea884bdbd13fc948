"""The kill cases of ``tests/test_kill.py`` and ``scripts/soak_kills.py``: the files they
run on, the seeded cases per command and the check that an output is whole."""

from __future__ import annotations

import re
import signal
import textwrap
import time
from pathlib import Path

import numpy as np
from kill_harness import START_S, Case, Outcome, run_case, run_cases
from tiny_graph import tiny_graph, tiny_inputs

import nirbridge

COMMANDS = ("export", "run", "profile", "deploy")
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGKILL)
#: Steps of the long Lava runs: far more than a run gets through before its signal.
LONG_T = 40_000

MODEL_FILE = textwrap.dedent(
    """
    import torch
    from nirbridge.neurons import LIF, StatefulSequential

    def make():
        torch.manual_seed(0)
        return StatefulSequential(torch.nn.Linear(4, 6), LIF(tau=2.0, v_threshold=0.3),
                                  torch.nn.Linear(6, 3), LIF(tau=4.0, v_threshold=0.2))
    """
)


def make_files(folder: Path) -> Path:
    """The inputs every case reads, in ``folder``: a model factory, a small exported
    graph with inputs, the tiny Lava graph with short and long inputs."""
    import torch

    from nirbridge.neurons import LIF, StatefulSequential

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.py").write_text(MODEL_FILE)
    torch.manual_seed(0)
    model = StatefulSequential(torch.nn.Linear(4, 6), LIF(tau=2.0, v_threshold=0.3),
                               torch.nn.Linear(6, 3), LIF(tau=4.0, v_threshold=0.2))
    nirbridge.write(folder / "m.nir", nirbridge.to_nir(model, torch.zeros(2, 4), dt=1.0))
    np.save(folder / "x.npy", np.random.default_rng(0).random((12, 2, 4)))
    nirbridge.write(folder / "tiny.nir", tiny_graph())
    np.save(folder / "tiny_x.npy", tiny_inputs())
    rng = np.random.default_rng(3)
    np.save(folder / "long_x.npy", np.round(rng.random((LONG_T, 1, 2)) * 32) / 16)
    return folder


def argv(command: str, files: Path, lava: bool) -> tuple[list[str], list[str]]:
    """The command line of a case and the outputs it writes."""
    f = str(files)
    if command == "export":
        return (["export", f"{f}/models.py:make", "--input-shape", "4", "-o", "out.nir"],
                ["out.nir"])
    if command == "run":
        if lava:
            return (["run", f"{f}/tiny.nir", "--input", f"{f}/long_x.npy", "--backend",
                     "lava-float", "--timeout", "120", "-o", "out.npz"], ["out.npz"])
        return ["run", f"{f}/m.nir", "--input", f"{f}/x.npy", "-o", "out.npz"], ["out.npz"]
    if command == "profile":
        if lava:
            return (["profile", f"{f}/tiny.nir", "--input", f"{f}/long_x.npy", "--backend",
                     "lava-float", "--timeout", "120", "--report", "out.md"], ["out.md"])
        return (["profile", f"{f}/m.nir", "--input", f"{f}/x.npy", "--report", "out.md",
                 "--json", "out.json"], ["out.md", "out.json"])
    if command == "deploy":
        x = "long_x.npy" if lava else "tiny_x.npy"
        return (["deploy", f"{f}/tiny.nir", "--input", f"{f}/{x}", "--timeout", "120",
                 "-o", "out.npz", "--json", "out.json"], ["out.npz", "out.json"])
    raise ValueError(command)


def whole(path: Path) -> str | None:
    """Why the output ``path`` is not whole (None: it is)."""
    try:
        if path.suffix == ".nir":
            nirbridge.read(path)
        elif path.suffix == ".npz":
            with np.load(path) as z:
                for key in z.files:
                    z[key]
        elif path.suffix == ".json":
            import json

            json.loads(path.read_text())
        elif path.suffix == ".md":
            text = path.read_text()
            for img in re.findall(r"\]\(([^)]+\.png)\)", text):
                data = (path.parent / img).read_bytes()
                if not (data.startswith(b"\x89PNG") and b"IEND" in data[-12:]):
                    return f"its image {img} is not a whole PNG"
            if "]" not in text:
                return "no content"
    except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
        return f"{type(exc).__name__}: {exc}"
    return None


def pngs_without_report(folder: Path) -> list[str]:
    """Images of a Markdown report whose report is missing (they must come together)."""
    pngs = sorted(p.name for p in folder.glob("out_*.png"))
    return pngs if pngs and not (folder / "out.md").exists() else []


def baseline(command: str, files: Path, folder: Path) -> float:
    """Seconds one unsignalled run of ``command`` takes here (its outputs are checked)."""
    args, outs = argv(command, files, lava=False)
    case = Case(f"{command}-baseline", args, signal.SIGTERM, 1e9, outputs=outs)
    t0 = time.monotonic()
    out = run_case(case, folder, whole)
    seconds = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert not out.problems, out.problems
    for o in outs:
        assert (folder / o).exists(), f"the baseline {command} wrote no {o}"
    return seconds


def cases(command: str, files: Path, root: Path, count: int, seconds: float,
          seed: int, lava_share: float) -> list[tuple[Case, Path]]:
    """``count`` seeded cases of ``command``: signals mixed; a share ``lava_share`` of
    them signalled during a long Lava run (after its process appeared), the others at a
    uniform point of a normal run of ``seconds``."""
    rng = np.random.default_rng(seed)
    n_lava = round(count * lava_share)
    out = []
    for i in range(count):
        lava = i < n_lava
        sig = SIGNALS[i % len(SIGNALS)] if i < len(SIGNALS) * 2 else SIGNALS[
            int(rng.integers(len(SIGNALS)))]
        args, outs = argv(command, files, lava)
        delay = (float(rng.uniform(0.0, 1.0)) if lava
                 else float(rng.uniform(START_S, max(1.1 * seconds, START_S + 0.1))))
        name = f"{command}-{i:03d}"
        out.append((Case(name, args, int(sig), delay, after_child=lava, outputs=outs),
                    root / name))
    for _, folder in out:
        folder.mkdir(parents=True)
    return out


def run_command_cases(command: str, files: Path, root: Path, count: int, seed: int,
                      lava_share: float, parallel: int = 2) -> list[Outcome]:
    """Baseline, then ``count`` signalled cases of ``command``; their outcomes, with the
    report/images check added to each one's problems."""
    seconds = baseline(command, files, root / f"{command}-baseline")
    todo = cases(command, files, root, count, seconds, seed, lava_share)
    outcomes = run_cases(todo, whole, parallel=parallel)
    for (_, folder), outcome in zip(todo, outcomes, strict=True):
        lone = pngs_without_report(folder)
        if lone:
            outcome.problems.append(f"report images without their report: {lone}")
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    lines = []
    for o in outcomes:
        c = o.case
        lines.append(f"{c.name:12s} {signal.Signals(c.sig).name:8s} delay {c.delay:6.2f}"
                     f"{' after Lava start' if c.after_child else '':18s} rc {o.returncode!s:>4} "
                     f"lava-seen {o.child_seen!s:5} stop "
                     f"{'-' if o.stop_s is None else f'{o.stop_s:.2f}s':>6} "
                     f"{'; '.join(o.problems) or 'ok'}")
    return "\n".join(lines)
