"""Quantization-aware fine-tuning (QAT): training through the deployment's own fixed point.

Why this design (and not a re-implementation of every neuron's integer model in torch):
the deployment quantizer (:func:`nirbridge.quantize.quantize`) and the emulator (the
``fixed`` backend, equal to Lava ``fixed_pt`` integer by integer) already define exactly
what runs on the target. A torch copy of the integer arithmetic of every registered neuron
would be a second specification that can drift from the first. So each fine-tuning step

1. exports the model to NIR and quantizes it for the target (the grids of this step:
   each layer's mantissa precision and exponent, the neurons' integer parameters);
2. runs the emulator on the batch, recording every neuron's integer output;
3. runs the torch model in float, with each neuron layer's output replaced *in value* by
   the emulator's (``s = s_float + (s_fixed − s_float).detach()``) and the read-out by the
   emulator's read-out: the loss is the deployed model's loss, exactly; the gradient is the
   float model's surrogate gradient, evaluated on the deployed spikes (a straight-through
   estimator through the weight rounding, the state rounding and saturation of each layer).

The loss (:func:`qat_finetune`) is distillation from the original float model plus an
agreement term: each float neuron layer's own output against the integers' on the same
inputs, so that the float model learns to decide as the deployed one does.

At the end the weights are *snapped*: the torch weights are set so that the exported NIR
weights, times the gain the quantizer folds into them, lie exactly on the grid the
quantizer chose (``mant · 2^-P``). The deployment then quantizes them losslessly (the same
mantissas, checked by :func:`snap_weights`), and the float model is the fixed-point model
up to state rounding, decay and table quantization: what is trained is what is deployed,
and the float reference of the checkpoint agrees with it spike for spike nearly everywhere.

Limits, said: the torch weights are float32, so the exported float64 weights lie on the
grid up to float32 rounding (relative 2^-24: the mantissas are unchanged, the float
reference moves by that much); neuron parameters (decays, thresholds) are not trained
here (frozen: their grids are the neuron's own and the recipes' values already lie on
them); batch-norm runs on its running statistics (as exported).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from nirbridge.errors import QuantizationError, RecipeError

log = logging.getLogger(__name__)


def _readable(path: str, module: torch.nn.Module) -> str:
    """The name the exporter gives a module called once (``conv1``, ``block_conv``, a
    ``Sequential`` child: ``linear_0``)."""
    base = path.replace(".", "_")
    if not base or base[0].isdigit():
        stem = getattr(module, "export_name", None) or type(module).__name__
        base = f"{stem.lower()}_{base}".rstrip("_")
    return base


def module_of(model: torch.nn.Module, node: str) -> torch.nn.Module:
    """The torch module that exported NIR node ``node`` (``conv1``, ``linear_0``; in a
    recurrent layer ``<layer>.neuron`` is its neuron and ``<layer>.w_rec`` its
    ``recurrent`` Linear). Raises :class:`QuantizationError` naming the node when no
    module of the model exported it."""
    layer, _, part = node.rpartition(".")
    if layer and part not in ("neuron", "w_rec"):
        layer, part = "", node
    names = {_readable(p, m): m for p, m in model.named_modules() if p}
    mod = names.get(layer or node)
    if mod is not None and layer:
        mod = getattr(mod, "neuron" if part == "neuron" else "recurrent", None)
    if not isinstance(mod, torch.nn.Module):
        raise QuantizationError(f"node '{node}': no module of {type(model).__name__} "
                                "exported it (QAT maps each NIR node to the module that "
                                "exported it; a module called twice has no single one)")
    return mod


def export_quantized(model: torch.nn.Module, example: torch.Tensor, config: Any, dt: float
                     ) -> tuple[nir.NIRGraph, Any]:
    """The model's NIR graph (exported from ``example``, one step ``[B, ...]``) and its
    :class:`~nirbridge.quantize.QuantizedGraph` for ``config`` (a ``QuantConfig``)."""
    from nirbridge.api import to_nir
    from nirbridge.quantize import quantize

    graph = to_nir(model, example[:1].float(), dt=dt)
    return graph, quantize(graph, config, dt=dt)


def _synapses(quant: Any) -> dict[str, Any]:
    from nirbridge.quantize import QuantizedSynapse

    return {n: layer for n, layer in quant.layers.items() if isinstance(layer, QuantizedSynapse)}


def _folded_scale(name: str, w: np.ndarray, layer: Any) -> np.ndarray:
    """The factor the quantizer multiplies the NIR weight ``w`` by before rounding it
    (``w_eff = w · scale``): the folded gain rows (``layer.gain``) times a constant
    pooling factor ``1/n`` (average pooling folded into the weights), which is read off
    the mantissas (``mant · 2^-P ≈ w · scale``, within half a grid step) and rounded to
    the nearest ``1/n``. :func:`snap_weights` then proves the result by requantizing."""
    rows = np.ones(w.shape[0]) if layer.gain is None else np.asarray(layer.gain, np.float64)
    rows = np.broadcast_to(rows.reshape(-1), (w.shape[0],)).reshape(-1, *([1] * (w.ndim - 1)))
    base = w * rows
    real = layer.mant * 2.0 ** -layer.mant_frac
    big = np.abs(layer.mant) >= 16  # relative rounding error at most 1/32
    if not big.any():
        return np.broadcast_to(rows, w.shape).astype(np.float64)
    ratio = float(np.median(real[big] / base[big]))
    n = round(1.0 / ratio) if ratio > 0 else 0
    if n < 1 or abs(ratio * n - 1.0) > 0.05:
        raise QuantizationError(f"weighted layer '{name}': the quantizer scales its weights "
                                f"by {ratio:g}, not a folded gain times 1/n; QAT cannot snap it")
    return np.broadcast_to(rows / n, w.shape).astype(np.float64)


def snap_weights(model: torch.nn.Module, example: torch.Tensor, config: Any, dt: float
                 ) -> Any:
    """Set ``model``'s weights (in place) so that the exported weights lie on the grids
    the quantizer chooses for them; return the :class:`QuantizedGraph` of the snapped
    export.

    Raises :class:`QuantizationError` naming the layer when the snapped export does not
    quantize losslessly (a mantissa or a mantissa precision differs from the one snapped
    to): the deployment's weight quantization of the result is exact by construction and
    by this check.
    """
    graph, quant = export_quantized(model, example, config, dt)
    syn = _synapses(quant)
    for name, layer in syn.items():
        w = np.asarray(graph.nodes[name].weight, dtype=np.float64)
        target = layer.mant * 2.0 ** -layer.mant_frac / _folded_scale(name, w, layer)
        param = module_of(model, name).weight
        w_t = param.detach().double().numpy()
        if w_t.shape != w.shape:
            raise QuantizationError(f"weighted layer '{name}': torch weight {w_t.shape} vs "
                                    f"NIR weight {w.shape}; QAT cannot map it")
        # the export multiplies the torch weight by a per-row constant (batch-norm folding)
        c = np.divide(w, w_t, out=np.ones_like(w), where=w_t != 0)
        new = np.where(w_t != 0, target / c, 0.0)
        with torch.no_grad():
            param.copy_(torch.from_numpy(new).to(param.dtype))
    _, snapped = export_quantized(model, example, config, dt)
    bad = [f"'{n}' (mantissa precision {syn[n].mant_frac} → {layer.mant_frac}, "
           f"{int(np.sum(layer.mant != syn[n].mant))} mantissas differ)"
           for n, layer in _synapses(snapped).items()
           if layer.mant_frac != syn[n].mant_frac or not np.array_equal(layer.mant, syn[n].mant)]
    if bad:
        raise QuantizationError("snapped weights do not quantize losslessly: " + ", ".join(bad))
    return snapped


def mantissa_mismatches(a: Any, b: Any) -> list[str]:
    """Weighted layers whose mantissas or precision differ between two QuantizedGraphs."""
    sa, sb = _synapses(a), _synapses(b)
    return [n for n in sa if n not in sb or sa[n].mant_frac != sb[n].mant_frac
            or not np.array_equal(sa[n].mant, sb[n].mant)]


@contextmanager
def _replaced_outputs(model: torch.nn.Module, values: dict[str, torch.Tensor],
                      gaps: list[torch.Tensor] | None = None) -> Iterator[None]:
    """While active, the output of each module exporting node ``n`` at its ``t``-th call
    is ``out + (values[n][t] − out).detach()``: the value of ``values``, the gradient of
    the float module. With ``gaps``, each call appends ``Σ (out − values[n][t])²``: where
    the float layer, fed the deployed inputs, decides otherwise than the integers."""
    handles = []
    for node, val in values.items():
        step = [0]

        def hook(mod: Any, args: Any, out: Any, val: torch.Tensor = val,
                 step: list[int] = step) -> Any:
            y = out[0] if isinstance(out, tuple) else out
            v = val[step[0]].to(y)
            step[0] += 1
            if gaps is not None:
                gaps.append(((y - v) ** 2).sum())
            y = y + (v - y).detach()
            return (y, *out[1:]) if isinstance(out, tuple) else y

        handles.append(module_of(model, node).register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def fixed_forward(model: torch.nn.Module, x: torch.Tensor, config: Any, dt: float = 1.0,
                  gaps: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, Any]:
    """The model's read-out over ``x`` ``[T, B, ...]`` with the values of the target's
    fixed point (the emulator's, exactly) and the gradients of the float model.

    Returns ``(outputs [T, B, ...], quant)``; ``quant`` is the :class:`QuantizedGraph`
    of this forward (the grids of the model's current weights). The outputs equal the
    ``fixed`` backend's output on the same graph and config bit for bit (in real units).
    ``gaps`` (a list) receives, per neuron layer and step, the squared difference between
    the float layer's own output and the integers' (differentiable: an agreement loss).
    """
    from nirbridge.backends import get
    from nirbridge.neurons import is_neuron, run_steps

    graph, quant = export_quantized(model, x[0], config, dt)
    res = get("fixed").run(graph, x.detach().double().numpy(), record=True, dt=dt,
                           quant=quant)
    values = {n: torch.from_numpy(np.asarray(r.output, dtype=np.float64))
              for n, r in res.records.items()
              if n in quant.graph.nodes and is_neuron(quant.graph.nodes[n])
              and r.output is not None}
    with _replaced_outputs(model, values, gaps):
        out = run_steps(model, x.to(next(model.parameters()).dtype))
    # float64: the read-out's integers at its fractional bits exceed float32's significand
    out = out.double()
    target = torch.from_numpy(np.asarray(res.output(), dtype=np.float64))
    return out + (target - out).detach(), quant


@dataclass
class QATResult:
    """What a fine-tuning run measured (accuracies in percent on the recipe's test
    samples; ``agreement``: fixed-vs-float64-reference identical spike entries, mean over
    spiking layers, in percent)."""

    checkpoint: Path
    epochs: int
    seconds: float  #: fine-tuning and the final snap and evaluation (wall time)
    original_float_accuracy: float  #: the trained checkpoint, as it is
    float_accuracy_before: float  #: the trained checkpoint snapped, before fine-tuning
    fixed_accuracy_before: float
    agreement_before: float
    float_accuracy: float  #: the QAT checkpoint (fine-tuned and snapped)
    fixed_accuracy: float
    agreement: float
    lossless: bool  #: the snapped export quantizes to the mantissas it was snapped to


def evaluate(model: torch.nn.Module, x: np.ndarray, labels: np.ndarray, config: Any,
             dt: float = 1.0) -> tuple[float, float, float]:
    """``(float accuracy, fixed accuracy, spike agreement)`` in percent of the exported
    model: the float64 reference and the ``fixed`` backend (same graph, same config),
    as the recipes measure them."""
    from nirbridge.backends import get
    from nirbridge.verify import compare_layers, predictions

    graph, quant = export_quantized(model, torch.from_numpy(x[0]), config, dt)
    ref = get("reference").run(graph, x, record=True, dt=dt)
    fix = get("fixed").run(graph, x, record=True, dt=dt, quant=quant)
    layers = compare_layers(graph, ref.records, fix.records)
    agree = 100.0 * float(np.mean([la.identical for la in layers])) if layers else 100.0
    return (100.0 * float(np.mean(predictions(ref.output()) == labels)),
            100.0 * float(np.mean(predictions(fix.output()) == labels)), agree)


def qat_finetune(recipe: Any, *, epochs: int | None = None, lr: float | None = None,
                 output: str | Path | None = None, overwrite: bool = False,
                 echo: Any = lambda s: None, threads: int | None = 2,
                 distill: float = 1.0, agreement: float | None = None) -> QATResult:
    """Fine-tune the recipe's trained checkpoint through its target's fixed point and
    write the snapped result to ``output`` (default: ``[model] qat_checkpoint``).

    Adam, constant learning rate ``lr`` (default ``[train] qat_lr``), ``epochs`` passes
    (default ``[train] qat_epochs``) over the training split in the recipe's encoding,
    seeded by ``[train] seed``. The loss: distillation from the original float model
    (weight ``distill``; the rest cross-entropy) of the fixed-point read-out averaged
    over time, plus ``agreement`` (default ``[train] qat_agreement``) times the mean
    squared difference between each float neuron layer's output and the integers' on the
    same inputs (it trains the float model to decide as the deployed one). Neuron
    parameters are frozen; batch-norm uses its running statistics. Refuses to overwrite
    an existing file unless ``overwrite``.
    """
    from nirbridge._files import atomic_path
    from nirbridge.backends.fixed import input_quant_config
    from nirbridge.data import encode, load_split
    from nirbridge.neurons import NeuronModule, run_steps
    from nirbridge.recipes.execute import _build_model, recipe_inputs
    from nirbridge.train import checkpoint_path, torch_threads

    spec, tr, sim = recipe.model, recipe.train, recipe.simulation
    if spec.factory is None or spec.checkpoint is None:
        raise RecipeError(f"{recipe.path}: field 'model.factory': QAT fine-tunes a factory's "
                          "trained checkpoint (this recipe deploys a .nir file)")
    out = checkpoint_path(recipe, output, overwrite, field="model.qat_checkpoint",
                          verb="fine-tuning")
    n_epochs = epochs if epochs is not None else tr.qat_epochs
    rate = lr if lr is not None else tr.qat_lr
    agree_w = agreement if agreement is not None else tr.qat_agreement
    if n_epochs < 1 or not rate > 0:
        raise RecipeError(f"QAT epochs {n_epochs}, lr {rate}: give epochs >= 1 and lr > 0")
    dt = spec.dt or 1.0
    with torch_threads(threads):
        torch.manual_seed(tr.seed)
        rng = np.random.default_rng(tr.seed)
        model = _build_model(recipe)
        x_test, y_test = recipe_inputs(recipe, None)
        # the deployment's input format: chosen from the first batch of the recipe's split
        cfg = input_quant_config(sim.target, x_test[:, : sim.batch_size])
        teacher = copy.deepcopy(model)
        before = copy.deepcopy(model)
        snap_weights(before, torch.from_numpy(x_test[0]), cfg, dt)
        fb, xb_, ab = evaluate(before, x_test, y_test, cfg, dt)
        f0, _, _ = evaluate(model, x_test, y_test, cfg, dt)
        echo(f"QAT {recipe.name}: original float {f0:.2f}%; snapped before fine-tuning: "
             f"float {fb:.2f}%, fixed {xb_:.2f}%, spikes {ab:.2f}% identical")
        for m in model.modules():
            if isinstance(m, NeuronModule) and not hasattr(m, "recurrent"):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=rate)
        train = load_split(recipe.data.dataset, "train")
        y_train = torch.from_numpy(train.labels)
        t_start = time.perf_counter()
        model.eval()  # batch-norm on running statistics, as exported
        for epoch in range(n_epochs):
            x_all = encode(train.images, recipe.data.encoding, sim.steps, rng=rng)
            order = rng.permutation(len(train))
            total, correct = 0.0, 0
            for s in range(0, len(train), tr.batch_size):
                idx = order[s: s + tr.batch_size]
                xb = torch.from_numpy(np.ascontiguousarray(x_all[:, idx])).float()
                gaps: list[torch.Tensor] = []
                logits, _ = fixed_forward(model, xb, cfg, dt, gaps if agree_w else None)
                mean = logits.mean(0).float()
                with torch.no_grad():
                    soft = torch.softmax(run_steps(teacher, xb).mean(0), -1)
                # distillation from the original float model: the training split is fitted
                # already (cross-entropy alone only widens margins and overfits); matching
                # the original's outputs keeps its generalisation
                loss = torch.nn.functional.kl_div(torch.log_softmax(mean, -1), soft,
                                                  reduction="batchmean")
                if distill < 1.0:
                    loss = distill * loss + (1.0 - distill) * \
                        torch.nn.functional.cross_entropy(mean, y_train[idx])
                if agree_w and gaps:
                    loss = loss + agree_w * torch.stack(gaps).sum() / len(idx)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                correct += int((logits.sum(0).argmax(-1) == y_train[idx]).sum())
            echo(f"  QAT epoch {epoch + 1}/{n_epochs}: loss {total / len(train):.4f}, train "
                 f"(fixed point) {100.0 * correct / len(train):.2f}% "
                 f"({time.perf_counter() - t_start:.0f} s)")
        snapped = snap_weights(model, torch.from_numpy(x_test[0]), cfg, dt)
        _, again = export_quantized(model, torch.from_numpy(x_test[0]), cfg, dt)
        lossless = not mantissa_mismatches(snapped, again)
        fa, xa, aa = evaluate(model, x_test, y_test, cfg, dt)
        seconds = time.perf_counter() - t_start
        with atomic_path(out, make_parents=True) as tmp:
            torch.save(model.state_dict(), tmp)
    echo(f"wrote {out}: float {fa:.2f}% (original {f0:.2f}%), fixed {xa:.2f}%, spikes "
         f"{aa:.2f}% identical, on {x_test.shape[1]} samples; fine-tuned in {seconds:.0f} s")
    return QATResult(out, n_epochs, seconds, f0, fb, xb_, ab, fa, xa, aa, lossless)


__all__ = ["QATResult", "evaluate",
           "export_quantized", "fixed_forward", "mantissa_mismatches", "module_of",
           "qat_finetune", "snap_weights"]
