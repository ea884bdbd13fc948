"""``nirbridge train``: train a recipe's model and write its checkpoint."""

from __future__ import annotations

import argparse
from typing import Any

from nirbridge.cli._common import positive_int


def run_command(args: argparse.Namespace) -> int:
    from nirbridge.recipes import load_recipe
    from nirbridge.train import train_recipe

    recipe = load_recipe(args.recipe, require_checkpoint=False)
    train_recipe(recipe, echo=print, epochs=args.epochs, output=args.output,
                 threads=args.threads, overwrite=args.overwrite)
    return 0


def add_parser(sub: Any) -> None:
    t = sub.add_parser("train", help="train a recipe's model (BPTT, surrogate gradient) "
                       "and write its checkpoint",
                       description="Train a recipe's model and write its checkpoint. A "
                       "recipe runs the Python factory it names ([model] factory): trust a "
                       "recipe as code, like a Makefile.")
    t.add_argument("recipe", help="deployment recipe RECIPE.toml (its [train] table)")
    t.add_argument("--epochs", type=positive_int, help="override [train] epochs")
    t.add_argument("-o", "--output", help="checkpoint path (default: model.checkpoint)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace an existing checkpoint (without it, training refuses to)")
    t.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    t.set_defaults(func=run_command)
