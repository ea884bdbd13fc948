"""Training the models of the deployment recipes: ``nirbridge train RECIPE.toml``.

Backpropagation through time with the neurons' surrogate gradient (arctan): the model
runs ``steps`` steps on the recipe's encoding of the training split, its read-out is
averaged over time, and cross-entropy is minimised with Adam (cosine-annealed learning
rate). Seeded (``[train] seed``): the same recipe on the same machine and thread count
gives the same checkpoint. Rate-encoded recipes draw fresh spikes every epoch (from the
same seed) and are evaluated on the fixed test spikes the deployment uses.

The checkpoint is the model's ``state_dict`` (a few tens of kB), written atomically to
the recipe's ``model.checkpoint``; the deployment loads it with ``weights_only=True``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nirbridge._files import atomic_path
from nirbridge.data import encode, load_split
from nirbridge.errors import RecipeError
from nirbridge.factory import load_factory
from nirbridge.recipes import Echo, Recipe, recipe_inputs
from nirbridge.recipes.schema import kwargs_text


@dataclass
class TrainResult:
    """What a training run produced."""

    checkpoint: Path
    test_accuracy: float  #: percent, on the recipe's test samples and encoding
    train_accuracy: float  #: percent, last epoch (training mode, running)
    epochs: int
    seconds: float
    parameters: int


def _accuracy(model, x: np.ndarray, labels: np.ndarray, batch: int = 512) -> float:
    import torch

    from nirbridge.neurons import run_steps

    correct = 0
    model.eval()
    with torch.no_grad():
        for s in range(0, x.shape[1], batch):
            xb = torch.from_numpy(x[:, s: s + batch]).float()
            pred = run_steps(model, xb).sum(0).argmax(-1).numpy()
            correct += int((pred == labels[s: s + batch]).sum())
    return 100.0 * correct / x.shape[1]


def checkpoint_path(recipe: Recipe, output: str | Path | None, overwrite: bool, *,
                    field: str = "model.checkpoint", verb: str = "training") -> Path:
    """Where a training command writes: ``output`` (the caller's path), else the recipe's
    ``field`` (``model.checkpoint``, or ``model.qat_checkpoint`` for ``--qat``), which must
    lie inside the recipe's folder; an existing file only with ``overwrite``."""
    if output:
        out, what = Path(output), "-o"
    else:
        default = getattr(recipe.model, field.split(".")[-1])
        if default is None:
            raise RecipeError(f"{recipe.path}: field '{field}': missing; give it in the "
                              "recipe or -o PATH")
        out, what = Path(default), field
        base = Path(recipe.path).resolve().parent
        if not out.resolve().is_relative_to(base):
            raise RecipeError(f"{recipe.path}: field '{field}': '{out}' is outside "
                              f"the recipe's folder '{base}': a recipe writes only inside "
                              f"its folder; give -o PATH to write to another place")
    if out.exists() and not overwrite:
        raise RecipeError(f"{recipe.path}: {what} '{out}' already exists; {verb} would "
                          "replace it: give --overwrite to replace it, or -o NEW.pt")
    return out


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (None or 0: unchanged) inside the
    block, and restored after it."""
    import torch

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_recipe(recipe: Recipe, *, echo: Echo = lambda s: None, epochs: int | None = None,
                 output: str | Path | None = None, threads: int | None = 2,
                 overwrite: bool = False) -> TrainResult:
    """Train the recipe's model from its factory and write the checkpoint.

    ``epochs`` overrides ``[train] epochs``; ``output`` the checkpoint path (default the
    recipe's ``model.checkpoint``, which must lie inside the recipe's folder); an existing
    checkpoint is replaced only with ``overwrite`` (:class:`RecipeError` otherwise);
    ``threads`` sets torch's intra-op threads for the run (None: leave as is).
    """
    import torch

    from nirbridge.neurons import run_steps

    spec, tr, sim = recipe.model, recipe.train, recipe.simulation
    if spec.factory is None:
        raise RecipeError(f"{recipe.path}: field 'model.factory': training needs a factory "
                          "(this recipe deploys a .nir file)")
    out = checkpoint_path(recipe, output, overwrite)
    n_epochs = epochs if epochs is not None else tr.epochs
    if n_epochs < 1:
        raise RecipeError(f"--epochs {n_epochs}: give at least 1")
    with torch_threads(threads):
        torch.manual_seed(tr.seed)
        rng = np.random.default_rng(tr.seed)
        model = load_factory(spec.factory)(**spec.kwargs)
        n_params = sum(p.numel() for p in model.parameters())
        train = load_split(recipe.data.dataset, "train")
        x_test, y_test = recipe_inputs(recipe, None)
        y_train = torch.from_numpy(train.labels)
        opt = torch.optim.Adam(model.parameters(), lr=tr.lr)
        batches = -(-len(train) // tr.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_epochs * batches)
        echo(f"training {recipe.name}: {spec.factory}({kwargs_text(spec.kwargs)}), "
             f"{n_params} parameters, {len(train)} {recipe.data.dataset} training samples, "
             f"{recipe.data.encoding} encoding, T = {sim.steps}, {n_epochs} epochs, "
             f"batch {tr.batch_size}, Adam lr {tr.lr:g}, seed {tr.seed}")
        t_start = time.perf_counter()
        train_acc = test_acc = 0.0
        for epoch in range(n_epochs):
            model.train()
            x_all = encode(train.images, recipe.data.encoding, sim.steps, rng=rng)
            order = torch.from_numpy(rng.permutation(len(train)))
            total_loss, correct = 0.0, 0
            for b in range(batches):
                idx = order[b * tr.batch_size: (b + 1) * tr.batch_size]
                xb = torch.from_numpy(x_all[:, idx.numpy()]).float()
                logits = run_steps(model, xb).mean(0)
                loss = torch.nn.functional.cross_entropy(logits, y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total_loss += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(-1) == y_train[idx]).sum())
            train_acc = 100.0 * correct / len(train)
            test_acc = _accuracy(model, x_test, y_test)
            echo(f"  epoch {epoch + 1:3d}/{n_epochs}: loss {total_loss / len(train):.4f}, "
                 f"train {train_acc:.2f}%, test {test_acc:.2f}% "
                 f"({time.perf_counter() - t_start:.0f} s)")
        seconds = time.perf_counter() - t_start
        model.eval()
        with atomic_path(out, make_parents=True) as tmp:
            torch.save(model.state_dict(), tmp)
    echo(f"wrote {out} ({out.stat().st_size / 1024:.1f} kB): torch test accuracy "
         f"{test_acc:.2f}% on {x_test.shape[1]} samples, trained in {seconds:.0f} s")
    return TrainResult(checkpoint=out, test_accuracy=test_acc, train_accuracy=train_acc,
                       epochs=n_epochs, seconds=seconds, parameters=n_params)


__all__ = ["TrainResult", "train_recipe"]
