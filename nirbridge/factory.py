"""Model factories and checkpoints: ``MODULE_OR_FILE:FACTORY`` specs and ``state_dict`` files.

Shared by the CLI (``nirbridge export``), the deployment recipes and training, so that
none of them has to import another to build a model.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nirbridge.errors import ExportError, NirbridgeError


def load_factory(spec: str) -> Callable[..., Any]:
    """``module.path:factory`` or ``path/to/file.py:factory`` → the factory callable.

    Importing a module runs its code, and the caller then calls the factory: a spec is
    trusted as code. A callable of Python's standard library (``os:system``,
    ``builtins:open``, ...) is refused before any import. Raises
    :class:`~nirbridge.errors.ExportError` when the spec is malformed or names the standard
    library, or the module does not import or has no callable of that name.
    """
    if ":" not in spec:
        raise ExportError(f"model {spec!r} must be MODULE_OR_FILE:FACTORY "
                          "(e.g. mymodels.py:make_net)")
    target, _, name = spec.rpartition(":")
    file_spec = target.endswith(".py") or os.path.sep in target
    if not file_spec and target.partition(".")[0] in (*sys.stdlib_module_names, "builtins"):
        # os:system, subprocess:run, builtins:open... are never model factories; a recipe
        # or --model naming one is refused before anything is imported or called
        raise ExportError(f"model {spec!r} names a callable of Python's standard library "
                          f"('{target}'), not a model factory; name a function or class "
                          "that builds a torch.nn.Module (e.g. mymodels.py:make_net)")
    try:
        if file_spec:
            file = Path(target)
            if not file.is_file():
                raise ExportError(f"model file '{file}' does not exist")
            mspec = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(mspec)  # type: ignore[arg-type]
            # Registered before it runs, so the file's own classes pickle and resolve.
            sys.modules.setdefault(file.stem, module)
            mspec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(target)
    except NirbridgeError:
        raise
    except Exception as exc:
        raise ExportError(f"cannot import model module '{target}': "
                          f"{type(exc).__name__}: {exc}") from exc
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ExportError(f"'{target}' has no callable '{name}'")
    return factory


def load_weights(model: Any, ckpt: str | Path) -> None:
    """Load the ``state_dict`` in ``ckpt`` into ``model`` (``torch.load(weights_only=True)``).

    A checkpoint that wraps the state under ``state_dict``, ``model_state_dict`` or
    ``model`` is unwrapped. Raises :class:`~nirbridge.errors.ExportError` when the file is
    missing, does not load, or does not fit the model.
    """
    import torch

    if not Path(ckpt).is_file():
        raise ExportError(f"checkpoint '{ckpt}' does not exist")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExportError(f"cannot load checkpoint '{ckpt}' with weights_only=True: "
                          f"{type(exc).__name__}: {exc}") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise ExportError(f"checkpoint '{ckpt}' does not fit the model: {exc}") from exc


__all__ = ["load_factory", "load_weights"]
