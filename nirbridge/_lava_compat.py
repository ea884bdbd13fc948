"""Import-time compatibility fix that lets lava-nc 0.10.0 import on Python >= 3.11.

lava-nc 0.10.0 is archived upstream and declares Python < 3.11. It fails to import on
3.11 in exactly one place: ``lava/magma/compiler/var_model.py`` defines the dataclass
``ByteEncoder`` and uses an instance of it as the default value of fields of other
dataclasses. Python 3.11 rejects unhashable (mutable) defaults, and a plain ``@dataclass``
with ``eq=True`` sets ``__hash__ = None``.

The fix: a meta-path finder that, only while that one module executes, makes the
``dataclass`` decorator add ``unsafe_hash=True`` for the class named ``ByteEncoder``
(so instances are hashable and accepted as defaults), then restores the decorator.
Nothing under site-packages is edited, nothing else is touched, and on Python 3.10 this
is a no-op. It must be installed before the first ``import lava``; ``import nirbridge``
installs it.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.machinery
import sys
from typing import Any

TARGET_MODULE = "lava.magma.compiler.var_model"
TARGET_CLASS = "ByteEncoder"


class _PatchingLoader(importlib.abc.Loader):
    """Wraps the real loader of the target module and patches ``dataclass`` around it."""

    def __init__(self, wrapped: importlib.abc.Loader) -> None:
        self._wrapped = wrapped

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._wrapped.create_module(spec)

    def exec_module(self, module: Any) -> None:
        original = dataclasses.dataclass

        def patched(cls: Any = None, /, **kwargs: Any) -> Any:
            def wrap(c: type) -> Any:
                if c.__name__ == TARGET_CLASS:
                    kwargs.setdefault("unsafe_hash", True)
                return original(c, **kwargs)

            return wrap if cls is None else wrap(cls)

        dataclasses.dataclass = patched  # the module does `from dataclasses import dataclass`
        try:
            self._wrapped.exec_module(module)
        finally:
            dataclasses.dataclass = original


class _LavaCompatFinder(importlib.abc.MetaPathFinder):
    """Finds only the target module, delegating the search to the other finders."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != TARGET_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def install() -> bool:
    """Install the fix once; returns True when it is active (Python >= 3.11)."""
    if sys.version_info < (3, 11):  # noqa: UP036 - a no-op on the Pythons Lava supports
        return False
    if not any(isinstance(f, _LavaCompatFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _LavaCompatFinder())
    return True
