"""Benchmark (run by hand, never in the tests): export of a ResNet-18-sized SNN, end to end
(``to_nir`` + ``write`` + ``read``), each run in a fresh Python process so that first-call
costs (imports, lazy initialisation) count.

    .venv/bin/python bench/export_resnet18.py [--baseline REV] [--repeats 5] [--size 224]
        [--torchvision]

The network is ResNet-18 (BasicBlocks [2, 2, 2, 2], 64-512 channels, a 1000-way readout:
11.7 M parameters) with every ReLU a :class:`nirbridge.neurons.LIF` (per-channel ``tau``,
one threshold per layer) and explicit states, on a ``3 × size × size`` input (2.3 M neurons
at 224). ``--baseline REV`` runs the same script's worker with the nirbridge of git revision
``REV`` (checked out with ``git worktree`` into a temporary folder), alternating with the
current code, repeat by repeat. ``--torchvision`` also times torchvision's own ``resnet18``
with its ReLUs swapped for LIF (current code only: the baseline refused it).

Each worker prints one JSON line: the seconds of ``import nirbridge``, ``to_nir``, ``write``,
``read`` (each the first call in its process) and the file's size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: HEAD of the branch's base (before the export speed-ups).
BASELINE = "137c371"


def _model(torchvision_model: bool):  # noqa: ANN202 - runs in the worker only
    import torch
    from torch import nn

    from nirbridge.neurons import LIF

    def lif(c: int) -> LIF:
        return LIF(tau=torch.linspace(2.0, 4.0, c).view(c, 1, 1), v_threshold=0.5)

    if torchvision_model:
        import torchvision

        from nirbridge.neurons import swap_activations

        net = torchvision.models.resnet18(weights=None).eval()
        return swap_activations(net, lambda: LIF(tau=3.0, v_threshold=0.5))

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.lif1 = lif(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.lif2 = lif(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

        def forward(self, x, state=None):  # noqa: ANN001, ANN202
            s1, s2 = (None, None) if state is None else state
            y, s1 = self.lif1(self.bn1(self.conv1(x)), s1)
            skip = x if self.down is None else self.down(x)
            out, s2 = self.lif2(self.bn2(self.conv2(y)) + skip, s2)
            return out, (s1, s2)

    class ResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.lif = lif(64)
            self.pool = nn.AvgPool2d(3, 2, 1)
            chans = [(64, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2),
                     (256, 256, 1), (256, 512, 2), (512, 512, 1)]
            self.blocks = nn.ModuleList(Block(*c) for c in chans)
            self.avg = nn.AvgPool2d(7)
            self.flat = nn.Flatten()
            self.fc = nn.Linear(512, 1000)

        def forward(self, x, state=None):  # noqa: ANN001, ANN202
            st = [None] * (len(self.blocks) + 1) if state is None else state
            y, s0 = self.lif(self.bn1(self.conv1(x)), st[0])
            new = [s0]
            y = self.pool(y)
            for k, block in enumerate(self.blocks):
                y, s = block(y, st[k + 1])
                new.append(s)
            return self.fc(self.flat(self.avg(y))), new

    torch.manual_seed(0)
    return ResNet18().eval()


def worker(size: int, torchvision_model: bool, path: str) -> None:
    """One fresh-process measurement; prints one JSON line."""
    t0 = time.perf_counter()
    import torch

    import nirbridge
    from nirbridge.io import read, write

    t_import = time.perf_counter() - t0
    model = _model(torchvision_model)
    params = sum(p.numel() for p in model.parameters())
    x = torch.rand(1, 3, size, size)
    t0 = time.perf_counter()
    graph = nirbridge.to_nir(model, x)
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    write(path, graph)
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = read(path)
    t_read = time.perf_counter() - t0
    print(json.dumps({"import": t_import, "to_nir": t_export, "write": t_write,
                      "read": t_read, "bytes": os.path.getsize(path), "params": params,
                      "nodes": len(back.nodes)}))


def run_worker(code_root: Path, size: int, torchvision_model: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(size),
               *(["--torchvision"] if torchvision_model else []), "--out",
               str(Path(tmp) / "net.nir")]
        env = {**os.environ, "PYTHONPATH": str(code_root)}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"worker failed ({code_root}):\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=BASELINE, help="git revision ('' : none)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--torchvision", action="store_true")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        worker(args.worker, args.torchvision, args.out)
        return
    contenders: dict[str, tuple[Path, bool]] = {"after": (ROOT, False)}
    tmp = None
    if args.baseline:
        tmp = tempfile.mkdtemp(prefix="nirbridge-baseline-")
        subprocess.run(["git", "worktree", "add", "--detach", tmp, args.baseline], cwd=ROOT,
                       check=True, capture_output=True)
        contenders = {f"before ({args.baseline})": (Path(tmp), False), **contenders}
    if args.torchvision:
        contenders["after, torchvision resnet18"] = (ROOT, True)
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    try:
        for _ in range(args.repeats):
            for name, (root, tv) in contenders.items():
                runs[name].append(run_worker(root, args.size, tv))
    finally:
        if tmp is not None:
            subprocess.run(["git", "worktree", "remove", "--force", tmp], cwd=ROOT,
                           check=False, capture_output=True)
    keys = ("import", "to_nir", "write", "read")
    print(f"input 3x{args.size}x{args.size}, {args.repeats} fresh processes each, "
          "seconds: min / median")
    print("| code | " + " | ".join(keys) + " | to_nir+write+read | file MiB |")
    print("|---" * (len(keys) + 3) + "|")
    totals = {}
    for name, rs in runs.items():
        cells = []
        for k in keys:
            v = [r[k] for r in rs]
            cells.append(f"{min(v):.2f} / {statistics.median(v):.2f}")
        tot = [r["to_nir"] + r["write"] + r["read"] for r in rs]
        totals[name] = tot
        cells.append(f"**{min(tot):.2f} / {statistics.median(tot):.2f}**")
        cells.append(f"{rs[0]['bytes'] / 2**20:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    names = list(totals)
    if len(names) > 1 and names[0].startswith("before"):
        ratio = statistics.median(totals[names[0]]) / statistics.median(totals["after"])
        print(f"\nend to end, before / after (medians): {ratio:.2f}x; "
              f"parameters: {runs['after'][0]['params']:,}")


if __name__ == "__main__":
    main()
