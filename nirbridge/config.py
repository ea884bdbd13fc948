"""The one checker of TOML files (target profiles, deployment recipes): load a file, then
read its fields with their types checked, every error naming the file and the field.

Usage::

    from nirbridge.config import load_toml
    from nirbridge.errors import RecipeError

    root = load_toml(path, error=RecipeError, what="recipe")   # a Table of the whole file
    root.reject_unknown(("name", "model", "simulation"))
    name = root.string("name")
    sim = root.table("simulation", known=("steps", "modes", "timeout_s"))
    steps = sim.integer("steps", minimum=1)                      # field 'simulation.steps'
    timeout = sim.number("timeout_s", required=False, default=600.0, above=0)
    modes = sim.strings("modes", required=False, default=["fixed_pt"],
                        choices=("floating_pt", "fixed_pt"))
    if steps > 1000:
        raise sim.fail("steps", "at most 1000 steps")             # a custom check

Every error is an instance of the ``error`` class given (a :class:`NirbridgeError`
subclass such as :class:`~nirbridge.errors.ProfileError`) and reads::

    <file>: field '<dotted.field>': <what is wrong; what to give>

for example ``deploy/x.toml: field 'simulation.steps': has type str ('4'); expected an
integer``. A table built from data that came from no file (``source=None``) drops the
``<file>: `` prefix. The wording of each check:

===================  ========================================================
missing field        ``missing; give <kind>``
wrong type           ``has type <T> (<repr>); expected <kind>``
number out of range  ``<v> must be a finite number ≥ 0`` / ``> 0`` / ``in [a, b]``
integer out of range ``<v> must be at least <min>`` / ``at most`` / ``in [a, b]``
missing choice       ``missing; give one of a|b|c`` (``expected one of a|b|c``)
unknown choice       ``'<v>' is unknown; use one of a, b, c``
unknown field        ``unknown field; known fields here: a, b, c``
===================  ========================================================

Types follow TOML, strictly: ``true`` is never an integer or a number (Python's ``bool``
is an ``int``, so this is checked explicitly); an integer is accepted where a number is
asked for and returned as ``float``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nirbridge.errors import NirbridgeError

#: How the messages name each accepted type (``missing; give an integer``).
TYPE_NAMES: dict[type, str] = {int: "an integer", float: "a number", str: "a string",
                               bool: "true/false", dict: "a table", Mapping: "a table",
                               list: "an array"}


def type_names(types: Sequence[type]) -> str:
    """``"an integer or a number"`` for ``(int, float)``: how messages name ``types``."""
    return " or ".join(TYPE_NAMES.get(t, t.__name__) for t in types)


def load_toml(path: str | Path, *, error: type[NirbridgeError],
              what: str = "TOML") -> Table:
    """Read the TOML file ``path`` and return its top-level :class:`Table`.

    ``what`` names the kind of file in the not-found message. Raises ``error`` with
    ``"<path>: <what> file not found"``, ``"<path>: not valid TOML: <parser message>"`` or
    ``"<path>: cannot read: <OS message>"``. The parsed dict is the table's ``data``.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid TOML: not UTF-8 text (byte {exc.start}); save the "
                    "file as UTF-8") from None
    except RecursionError:
        raise error(f"{path}: not valid TOML: nested too deeply for the parser; flatten "
                    "its arrays and tables") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc}") from exc
    return Table(data, source=path, error=error)


class Table:
    """One TOML table (or any mapping of field names) with typed, checked access.

    ``source``: the file it came from (named in every error; ``None`` for data that came
    from no file); ``error``: the exception class raised; ``name``: the table's dotted
    name inside the file (``""`` for the top level), which prefixes every field name.
    Accessors take the key *inside this table*; their errors name the full dotted field.
    ``required=False`` returns ``default`` when the key is absent (never when it has the
    wrong type). ``key in table``, ``len(table)`` and iteration over keys work as on the
    underlying mapping, which is available as ``data``.
    """

    def __init__(self, data: Mapping[str, Any], *, source: str | Path | None,
                 error: type[NirbridgeError], name: str = "") -> None:
        self.data = data
        self.source = source
        self.error = error
        self.name = name

    # --------------------------------------------------------------------- naming, errors
    def dotted(self, key: str) -> str:
        """The full field name of ``key`` (``"energy.e_ac_pj"``; ``"modes[0]"`` for an
        array element key ``"[0]"``)."""
        if not self.name:
            return key
        return f"{self.name}{key}" if key.startswith("[") else f"{self.name}.{key}"

    def fail(self, key: str, message: str) -> NirbridgeError:
        """The error (to ``raise``) saying that field ``key`` of this table is wrong."""
        where = f"field '{self.dotted(key)}': {message}"
        return self.error(where if self.source is None else f"{self.source}: {where}")

    # ------------------------------------------------------------------- mapping protocol
    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def keys(self) -> list[str]:
        """The field names present, in file order."""
        return list(self.data)

    # ----------------------------------------------------------------------------- checks
    def reject_unknown(self, known: Sequence[str]) -> None:
        """Raise for the first field (alphabetically) that is not in ``known``."""
        extra = sorted(set(self.data) - set(known))
        if extra:
            raise self.fail(extra[0], "unknown field; known fields here: "
                                      f"{', '.join(sorted(known))}")

    def typed(self, key: str, types: tuple[type, ...], *, required: bool = True,
              default: Any = None, what: str = "") -> Any:
        """The value of ``key`` if it is an instance of one of ``types`` (``bool`` only
        when listed). ``what`` replaces the type names in messages (``"a table {value,
        source}"``). The value is returned as is (no conversion)."""
        if key not in self.data:
            if required:
                raise self.fail(key, f"missing; give {what or type_names(types)}")
            return default
        v = self.data[key]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise self.fail(key, f"has type {type(v).__name__} ({v!r}); expected "
                                 f"{what or type_names(types)}")
        return v

    def string(self, key: str, *, required: bool = True,
               default: str | None = None) -> str | None:
        """A string."""
        return self.typed(key, (str,), required=required, default=default)

    def boolean(self, key: str, *, required: bool = True,
                default: bool | None = None) -> bool | None:
        """``true`` or ``false``."""
        return self.typed(key, (bool,), required=required, default=default)

    def integer(self, key: str, *, required: bool = True, default: int | None = None,
                minimum: int | None = None, maximum: int | None = None) -> int | None:
        """An integer (``true``/``false`` rejected) within ``[minimum, maximum]`` (either
        bound optional). ``default`` is returned unchecked."""
        if key not in self.data and not required:
            return default
        v = self.typed(key, (int,))
        low = minimum is not None and v < minimum
        high = maximum is not None and v > maximum
        if low or high:
            if minimum is not None and maximum is not None:
                bound = f"in [{minimum}, {maximum}]"
            else:
                bound = f"at least {minimum}" if low else f"at most {maximum}"
            raise self.fail(key, f"{v} must be {bound}")
        return v

    def number(self, key: str, *, required: bool = True, default: float | None = None,
               minimum: float | None = None, above: float | None = None,
               maximum: float | None = None) -> float | None:
        """A finite number (an integer is accepted), returned as ``float``: ``≥ minimum``,
        ``> above`` (``above=0``: positive), ``≤ maximum``, each bound optional. NaN and
        infinities are always rejected. ``default`` is returned unchecked."""
        if key not in self.data and not required:
            return default
        v = float(self.typed(key, (int, float)))
        bounds = [(minimum, "≥", v >= minimum if minimum is not None else True),
                  (above, ">", v > above if above is not None else True),
                  (maximum, "≤", v <= maximum if maximum is not None else True)]
        if not math.isfinite(v) or not all(ok for _, _, ok in bounds):
            parts = [f"{op} {b:g}" for b, op, _ in bounds if b is not None]
            if minimum is not None and maximum is not None and above is None:
                parts = [f"in [{minimum:g}, {maximum:g}]"]
            raise self.fail(key, f"{v} must be a finite number"
                                 + (" " + " and ".join(parts) if parts else ""))
        return v

    def choice(self, key: str, choices: Sequence[str], *, required: bool = True,
               default: str | None = None) -> str | None:
        """One string of ``choices``."""
        v = self.typed(key, (str,), required=required, default=None,
                       what="one of " + "|".join(choices))
        if v is None:
            return default
        if v not in choices:
            raise self.fail(key, f"'{v}' is unknown; use one of {', '.join(choices)}")
        return v

    def strings(self, key: str, *, required: bool = True, default: list[str] | None = None,
                choices: Sequence[str] | None = None) -> list[str] | None:
        """An array of strings (each one of ``choices`` if given); an element's error
        names it as ``key[i]``. Returns a new list (``default`` unchecked)."""
        v = self.typed(key, (list,), required=required, default=None)
        if v is None:
            return default
        for i, s in enumerate(v):
            if not isinstance(s, str):
                raise self.fail(f"{key}[{i}]", f"has type {type(s).__name__} ({s!r}); "
                                               "expected a string")
            if choices is not None and s not in choices:
                raise self.fail(f"{key}[{i}]", f"'{s}' is unknown; use one of "
                                               f"{', '.join(choices)}")
        return list(v)

    def table(self, key: str, *, required: bool = True, known: Sequence[str] | None = None,
              what: str = "") -> Table:
        """The sub-table ``key`` as a :class:`Table` named ``<this>.<key>``; with
        ``known``, a field outside it is rejected. Absent and not required: an empty
        table (test ``key in parent`` to tell the two apart)."""
        v = self.typed(key, (Mapping,), required=required, default={}, what=what)
        sub = Table(v, source=self.source, error=self.error, name=self.dotted(key))
        if known is not None:
            sub.reject_unknown(known)
        return sub


__all__ = ["TYPE_NAMES", "Table", "load_toml", "type_names"]
