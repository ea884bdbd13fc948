"""Benchmark (run by hand, never in the tests): what counting events costs on top of a plain
reference run, side by side in one process.

    .venv/bin/python bench/counting_overhead.py [--nets conv,mlp] [--batches 1,32,256]
        [--steps 100] [--repeats 5] [--threads 1] [--baseline REV]

The networks and inputs are ``bench/reference_vs_norse.py``'s (the digits conv net Norse
reads, the 700-256-256-20 LIF MLP), float64. Contenders, alternating, min and median of
``--repeats`` after one warm-up:

- ``plain``: ``get("reference").run(graph, x)`` (no records);
- ``count_run``: :func:`nirbridge.profile.count_run`, the counts made while it runs;
- ``profile``: what ``nirbridge profile --backend reference`` computes (``count_run``
  recording the neuron nodes, then the sanity check ``check_run`` on those records, told
  the spike counts);
- ``records``: the way before in-run counting: ``run(..., record=True)`` then
  ``count_events`` over every record.

Each row checks that ``count_run``'s counts equal ``count_events`` on full records.
``--baseline REV`` also times, in the same alternation, the three as they were at git
revision ``REV`` (its ``reference.py``, ``counting.py`` and ``sanity.py``, loaded with
``git show``) against that revision's own plain run, and checks its counts equal the
current ones.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from reference_vs_norse import inputs, timings  # noqa: E402

from nirbridge.backends import get  # noqa: E402
from nirbridge.neurons import is_neuron  # noqa: E402
from nirbridge.profile import count_events, count_run  # noqa: E402
from nirbridge.sanity import check_run  # noqa: E402


def load_at(rev: str, path: str) -> types.ModuleType:
    """The module ``path`` as it was at git revision ``rev`` (its own imports resolve to
    the current package; see :func:`baseline`)."""
    src = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType("_baseline_" + Path(path).stem)
    mod.__file__ = f"<{rev}:{path}>"
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 - our own file
    return mod


def baseline(rev: str) -> dict:
    """``plain``, ``count_run`` and ``profile`` as at ``rev``: its reference executor, its
    ``EventCounter`` as the observer, its ``check_run``."""
    ref, cnt, san = (load_at(rev, f"nirbridge/{p}.py")
                     for p in ("backends/reference", "profile/counting", "sanity"))

    def count(graph, x, record=False):
        counter = cnt.EventCounter(graph)
        got = ref.run_reference(graph, x, record=record, observe=counter)
        return got, counter.counts()

    def profile(graph, x, keep):
        (_, records), counts = count(graph, x, record=keep)
        san.check_run(graph, records)
        return counts

    return {"plain": lambda g, x: ref.BACKEND.run(g, x), "count_run": count,
            "profile": profile}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="conv,mlp")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline", default=None)
    args = ap.parse_args()
    old = baseline(args.baseline) if args.baseline else None
    torch.set_num_threads(args.threads)
    ref = get("reference")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} thread(s), float64, "
          f"T = {args.steps}; min and median of {args.repeats}, alternating"
          f"{'; baseline ' + args.baseline if old else ''}\n")
    head = ("| net | B | plain s (min / med) | count_run / plain (min / med) | "
            "profile / plain (min / med) | records + count_events / plain (min / med) | "
            "counts identical |")
    if old:
        head += (" baseline plain s (min / med) | baseline count_run / its plain (min / med) |"
                 " baseline profile / its plain (min / med) | baseline counts identical |")
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for net in args.nets.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            graph, x = inputs(net, args.steps, batch)
            keep = [n for n, node in graph.nodes.items() if is_neuron(node)]

            def profile(graph=graph, x=x, keep=keep):
                (_, records), counts = count_run(graph, x, record=keep)
                check_run(graph, records, spikes={n: c.spikes for n, c in counts.neurons.items()})
                return counts

            def old_way(graph=graph, x=x):
                return count_events(graph, ref.run(graph, x, record=True).records)

            calls = {"plain": lambda g=graph, x=x: ref.run(g, x),
                     "count_run": lambda g=graph, x=x: count_run(g, x),
                     "profile": profile, "records": old_way}
            if old:
                calls.update({
                    "old plain": lambda g=graph, x=x: old["plain"](g, x),
                    "old count_run": lambda g=graph, x=x: old["count_run"](g, x),
                    "old profile": lambda g=graph, x=x, k=keep: old["profile"](g, x, k)})
            t = timings(calls, args.repeats)
            same = count_run(graph, x)[1].to_dict() == old_way().to_dict()
            mn = {k: min(v) for k, v in t.items()}
            md = {k: statistics.median(v) for k, v in t.items()}

            def ratio(k: str, base: str = "plain", mn=mn, md=md) -> str:
                return f"{mn[k] / mn[base]:.2f} / {md[k] / md[base]:.2f}"

            row = (f"| {net} | {batch} | {mn['plain']:.3f} / {md['plain']:.3f} | "
                   f"{ratio('count_run')} | {ratio('profile')} | {ratio('records')} | "
                   f"{same} |")
            if old:
                old_same = old["count_run"](graph, x)[1].to_dict() == \
                    count_run(graph, x)[1].to_dict()
                row += (f" {mn['old plain']:.3f} / {md['old plain']:.3f} | "
                        f"{ratio('old count_run', 'old plain')} | "
                        f"{ratio('old profile', 'old plain')} | {old_same} |")
            print(row, flush=True)


if __name__ == "__main__":
    main()
