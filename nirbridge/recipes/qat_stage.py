"""The recipe stage of the quantization-aware fine-tuned checkpoint (``[model]
qat_checkpoint``, written by ``nirbridge train --qat``: :mod:`nirbridge.qat`).

The QAT model is exported and streamed over every sample like the trained one (torch,
float64 reference, the ``fixed`` emulator), and Lava fixed_pt confirms the emulator's
integers on the recipe's Lava samples. Its figures are the trained model's metric names
with the prefix ``qat_`` (``qat_fixed_spike_agreement``, ...), next to the post-training
ones, plus ``qat_reference_accuracy_loss``: the trained model's float64 accuracy minus the
fine-tuned one's (points; negative: the fine-tuned model is more accurate).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nirbridge.errors import NirbridgeError


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * float(x)


def qat_stage(run: Any, first: tuple[np.ndarray, np.ndarray], batches: tuple[int, Any], *,
              n_lava: int, progress: bool | None, parallel: dict[str, Any],
              lava_stage: Callable[..., None] | None = None) -> str:
    """Run the QAT checkpoint of ``run.recipe`` through the streamed stages (``batches``:
    ``(n, iterator)`` of the recipe's samples, as ``recipe_batches`` gives them) and,
    with ``lava_stage`` (the recipe's own Lava stage function), Lava fixed_pt on the
    first ``n_lava`` samples; record its ``qat_*`` metrics in ``run`` and return the
    stage's one-line summary. A failed Lava run is recorded in ``run.errors['lava_qat']``,
    as the other Lava stages are."""
    import torch

    from nirbridge.api import to_nir
    from nirbridge.factory import load_factory, load_weights
    from nirbridge.recipes.stream import stream_stages

    recipe, m = run.recipe, run.metrics
    spec, sim = recipe.model, recipe.simulation
    t_stream = time.perf_counter()
    model = load_factory(spec.factory)(**spec.kwargs)
    load_weights(model, spec.qat_checkpoint)
    model.eval()
    graph = to_nir(model, torch.from_numpy(first[0][0, :1]).float(), dt=run.dt)
    n, it = batches
    res = stream_stages(graph, it, n=n, dt=run.dt, model=model, fixed=True,
                        target=sim.target, lava_n=n_lava, progress=progress)
    # wall time of loading, exporting and streaming (torch, reference, emulator); the
    # Lava run below is "lava_qat", so the two add up to the stage without overlap
    run.seconds["qat"] = time.perf_counter() - t_stream
    labels = res.labels
    if res.torch_pred is not None:
        m["qat_torch_accuracy"] = _pct((res.torch_pred == labels).mean())
    m["qat_reference_accuracy"] = _pct((res.reference_pred == labels).mean())
    m["qat_fixed_accuracy"] = _pct((res.fixed_pred == labels).mean())
    m["qat_fixed_accuracy_drop"] = m["qat_reference_accuracy"] - m["qat_fixed_accuracy"]
    m["qat_fixed_spike_agreement"] = _pct(res.fixed_spike_agreement)
    m["qat_fixed_prediction_agreement"] = _pct((res.fixed_pred == res.reference_pred).mean())
    if "reference_accuracy" in m:
        m["qat_reference_accuracy_loss"] = m["reference_accuracy"] - m["qat_reference_accuracy"]
    text = (f"reference {m['qat_reference_accuracy']:.2f}%, emulator "
            f"{m['qat_fixed_accuracy']:.2f}%, spikes identical to the reference "
            f"{m['qat_fixed_spike_agreement']:.3f}% (post-training: "
            f"{m.get('fixed_spike_agreement') or 0.0:.3f}%)")
    if lava_stage is not None and n_lava and res.lava_x is not None and \
            "fixed_pt" in sim.modes:
        # the trained model's own Lava stage, on a scratch run: its metrics get the prefix
        sub = type(run)(recipe=recipe, samples=n, lava_samples=n_lava, dt=run.dt,
                        dt_source=run.dt_source)
        t0 = time.perf_counter()
        try:
            from nirbridge.backends import get

            ref = get("reference").run(graph, res.lava_x, record=True, dt=run.dt)
            lava_stage(sub, graph, "fixed_pt", res.lava_x, res.lava_labels, ref, res.quant,
                        progress, parallel)
        except NirbridgeError as exc:
            run.errors["lava_qat"] = str(exc).splitlines()[0]
            return text + f"; Lava fixed_pt FAILED: {run.errors['lava_qat']}"
        run.seconds["lava_qat"] = time.perf_counter() - t0
        for key in ("lava_fixed_accuracy", "lava_fixed_spike_agreement",
                    "lava_fixed_identical"):
            m[f"qat_{key}"] = sub.metrics.get(key)
        text += (f"; Lava fixed_pt on {n_lava} samples: integers identical to the emulator "
                 f"on {m['qat_lava_fixed_identical']:.2f}%")
    return text


__all__ = ["qat_stage"]
