"""The one way to print physical quantities (energies in SI units) and their scales."""

from __future__ import annotations

#: One picojoule in joules (profile constants are given in pJ).
PJ = 1e-12

_SCALES = ((1, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ"), (1e-12, "pJ"))


def format_energy(joules: float | None, *, digits: int = 3, none: str = "n/a") -> str:
    """``joules`` in the largest SI unit from J down to pJ that keeps it ≥ 1, with
    ``digits`` significant digits (``"112.3 nJ"`` with ``digits=4``); ``none`` for
    ``None``.

    Below 1 pJ (zero included) the value is printed in J with 3 significant digits
    whatever ``digits`` is (``"0 J"``, ``"5e-13 J"``): both historical callers, the
    recipe summary (3 digits, ``"n/a"``) and the profiling report (4 digits, ``"null"``),
    print it so, and their output must not change.
    """
    if joules is None:
        return none
    for scale, unit in _SCALES:
        if abs(joules) >= scale:
            return f"{joules / scale:.{digits}g} {unit}"
    return f"{joules:.3g} J"


__all__ = ["PJ", "format_energy"]
