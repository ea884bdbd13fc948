"""A 10,000-node graph inspects, runs and profiles (issue 13, item 7): no quadratic pass.

The chain alternates ``Scale(1)`` and a LIF with ``dt = τ`` and ``r = 1``, whose step is
``v = x`` and spike ``x > 0.5``: on 0/1 inputs every LIF repeats its input, so the whole
chain's output equals its input exactly (the closed form checked here), and every layer
of the profile counts exactly the input's spikes. The commands run in one child process
under a generous time limit, a guard against a hang only: no timing is asserted (the
measured times are printed, ``pytest -s`` shows them).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

NODES = 10_000
WIDTH = 2

SCRIPT = r"""
import json, sys, time
import nir, numpy as np
from nirbridge.api import write
from nirbridge.cli import main

n, width, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
nodes, edges, prev = {"in": nir.Input(np.array([width]))}, [], "in"
for i in range(n - 2):
    name = f"s{i}" if i % 2 == 0 else f"lif{i}"
    nodes[name] = (nir.Scale(np.ones(width)) if i % 2 == 0 else
                   nir.LIF(tau=np.ones(width), r=np.ones(width), v_leak=np.zeros(width),
                           v_threshold=np.full(width, 0.5), v_reset=np.zeros(width)))
    edges.append((prev, name))
    prev = name
nodes["out"] = nir.Output(np.array([width]))
edges.append((prev, "out"))
graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)
times = {}
t = time.perf_counter(); write(f"{d}/chain.nir", graph); times["write"] = time.perf_counter() - t
for name, argv in [
    ("inspect", ["inspect", f"{d}/chain.nir", "--json"]),
    ("run", ["run", f"{d}/chain.nir", "--input", f"{d}/x.npy", "-o", f"{d}/out.npz"]),
    ("profile", ["profile", f"{d}/chain.nir", "--input", f"{d}/x.npy", "--json",
                 f"{d}/profile.json"]),
]:
    t = time.perf_counter()
    code = main(argv)
    times[name] = time.perf_counter() - t
    assert code == 0, (name, code)
print("TIMES " + json.dumps(times))
"""


def test_a_10000_node_chain_inspects_runs_and_profiles_exactly(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((8, 3, WIDTH)) < 0.5).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(NODES), str(WIDTH),
                           str(tmp_path)], capture_output=True, text=True, timeout=900,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("TIMES "))
    print("10,000-node chain, seconds:", line[6:])
    out = np.load(tmp_path / "out.npz")["output"]
    np.testing.assert_array_equal(out, x)  # the closed form: the chain repeats its input
    doc = json.loads((tmp_path / "profile.json").read_text())
    neurons = doc["counts"]["neurons"]
    assert len(neurons) == (NODES - 2) // 2
    per_sample = x.sum() / x.shape[1]
    assert all(c["spikes"] == per_sample for c in neurons.values())
    assert len(doc["counts"]["synapses"]) == (NODES - 2) // 2
