"""The one way to lay out a table as text: aligned plain-text columns for a terminal, or
a Markdown table.

Every command and report that prints a table calls these, so that their tables look the
same and the layout is written once.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Between two columns.
GAP = "  "


def text_table(rows: Sequence[Sequence[str]], *, indent: str = "",
               free_last: bool = False) -> str:
    """``rows`` (the header first, every row as long as it) as left-aligned columns
    separated by two spaces, with a rule of dashes under the header; trailing blanks
    are stripped from each line.

    ``indent`` prefixes every line. ``free_last``: the last column is neither padded
    nor stripped (long free text, such as a description), and its rule is as wide as
    its header.
    """
    n = len(rows[0])
    padded = n - 1 if free_last else n
    widths = [max(len(r[i]) for r in rows) for i in range(padded)]
    rule = [*("-" * w for w in widths), *(["-" * len(rows[0][-1])] if free_last else [])]
    lines = []
    for j, r in enumerate(rows):
        line = GAP.join(c.ljust(w) for c, w in zip(r[:padded], widths, strict=True))
        lines.append(indent + (line + GAP + r[-1] if free_last else line.rstrip()))
        if j == 0:
            lines.append(indent + GAP.join(rule))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` (the header first) as a Markdown table."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


__all__ = ["GAP", "markdown_table", "text_table"]
