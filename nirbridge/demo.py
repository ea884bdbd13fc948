"""The main job's demo: export built-in SNNs → .nir → read back → float64 reference run,
checked against the PyTorch model on real data (scikit-learn's handwritten digits).

Later stages (Lava deployment, profiling) extend this through ``nirbridge deploy``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from nirbridge.api import read, run, to_nir, write
from nirbridge.examples import DigitsConvSNN
from nirbridge.neurons import run_steps
from nirbridge.nodes import CustomNeuron

DEMO_NEURONS = ("lif", "arlif", "klif", "dalif", "clif", "plif")


def digits_inputs(n: int = 32, steps: int = 8) -> torch.Tensor:
    """``n`` real digit scans from scikit-learn, direct-encoded: ``[T, n, 1, 8, 8]`` in [0, 1]."""
    from sklearn.datasets import load_digits

    images = load_digits().images[-n:] / 16.0  # the last samples: never used for training
    x = torch.from_numpy(images).to(torch.float64).unsqueeze(1)
    return x.unsqueeze(0).expand(steps, *x.shape).contiguous()


def run_demo(out_dir: Path, echo: Callable[[str], None] = print, samples: int = 32,
             steps: int = 8) -> int:
    """Export each built-in model, round-trip it through a file and compare the float64
    reference run with the torch model; returns 0 when every comparison is exact."""
    out_dir.mkdir(parents=True, exist_ok=True)
    x = digits_inputs(samples, steps)
    rows = []
    ok = True
    for kind in tqdm(DEMO_NEURONS, desc="export + verify", disable=None):
        torch.manual_seed(0)
        model = DigitsConvSNN(kind).eval()
        with torch.no_grad():  # non-trivial batch-norm statistics, so folding is exercised
            for bn in (model.bn1, model.bn2, model.bn3):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
        path = out_dir / f"digits_{kind}.nir"
        write(path, to_nir(model, x[0, :1].float()))
        graph = read(path)
        with torch.no_grad():
            expected = run_steps(model.double(), x)
        got, records = run(graph, x, record=True)
        spikes = sum(float(r.output.sum()) for n, r in records.items()
                     if isinstance(graph.nodes[n], CustomNeuron) or "LIF" in type(
                         graph.nodes[n]).__name__)
        err = float((got - expected).abs().max())
        exact = err <= 1e-9
        ok &= exact
        custom = sorted({type(n).__name__ for n in graph.nodes.values()
                         if isinstance(n, CustomNeuron)})
        rows.append((kind, str(len(graph.nodes)), ", ".join(custom) or "-",
                     f"{spikes / samples:.0f}", f"{err:.1e}", "yes" if exact else "NO"))
    header = ("neuron", "nodes", "custom nodes", "spikes/sample", "max |Δ| vs torch", "exact")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    echo("  ".join("-" * w for w in widths))
    for r in rows:
        echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    echo(f"\n{samples} digit scans, T = {steps}, float64; graphs written to {out_dir}/")
    return 0 if ok else 1


__all__ = ["DEMO_NEURONS", "digits_inputs", "run_demo"]
