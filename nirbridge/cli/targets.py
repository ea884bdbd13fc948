"""``nirbridge targets``: the target profiles and their evidence."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nirbridge.textfmt import text_table


def run_command(args: argparse.Namespace) -> int:
    from nirbridge.profile import list_profiles, load_profile

    rows = [("target", "kind", "prices", "evidence", "description")]
    for name in list_profiles():
        p = load_profile(name)
        rows.append(tuple(map(str, (name, p.kind, p.prices, p.evidence, p.description))))
    if args.json:
        print(json.dumps([load_profile(n).to_dict() for n in list_profiles()], indent=2,
                         default=str))
        return 0
    print(text_table(rows, free_last=True))
    return 0


def add_parser(sub: Any) -> None:
    tg = sub.add_parser("targets", help="list the target profiles and their evidence")
    tg.add_argument("--json", action="store_true")
    tg.set_defaults(func=run_command)
