"""The tiny graph the CLI and verify tests run through every backend:
Input(2) → Affine → LIF(3) → Output, T = 4 steps, one sample (each Lava run starts
processes, so it is as small as a graph with spikes gets)."""

from __future__ import annotations

import importlib.util

import nir
import numpy as np
import pytest

T, B, N = 4, 1, 3

#: Skips a test where Lava is not installed.
needs_lava = pytest.mark.skipif(importlib.util.find_spec("lava") is None,
                                reason="Lava is not installed")
#: Marks of a test that runs Lava: slow, and skipped where Lava is not installed.
LAVA = (pytest.mark.lava, needs_lava)


def backend_params(names: list[str]) -> list:
    """``names`` as pytest parameters, the Lava backends marked :data:`LAVA`."""
    return [pytest.param(n, marks=LAVA if n.startswith("lava") else ()) for n in names]


def tiny_graph() -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([2])),
            "fc": nir.Affine(np.array([[0.5, 0.25], [0.75, -0.5], [0.25, 0.5]]),
                             np.array([0.0, 0.125, -0.0625])),
            "lif": nir.LIF(tau=np.full(N, 2.0), r=np.ones(N), v_leak=np.zeros(N),
                           v_threshold=np.full(N, 0.3), v_reset=np.zeros(N)),
            "output": nir.Output(np.array([N])),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata={"dt": 1.0}, type_check=False,
    )


def tiny_inputs() -> np.ndarray:
    """``[T, B, 2]`` graded inputs on a 1/16 grid: the fitted fixed-point input format
    holds them exactly."""
    return np.round(np.random.default_rng(3).random((T, B, 2)) * 2 * 16) / 16
