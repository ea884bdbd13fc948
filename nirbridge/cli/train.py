"""``nirbridge train``: train a recipe's model and write its checkpoint."""

from __future__ import annotations

import argparse
from typing import Any

from nirbridge.cli._common import positive_finite_float, positive_int


def run_command(args: argparse.Namespace) -> int:
    from nirbridge.errors import InputError
    from nirbridge.recipes import load_recipe
    from nirbridge.train import train_recipe

    if not args.qat and args.lr is not None:
        raise InputError("--lr applies to --qat only; plain training takes [train] lr")
    recipe = load_recipe(args.recipe, require_checkpoint=args.qat)
    if args.qat:
        from nirbridge.qat import qat_finetune

        qat_finetune(recipe, echo=print, epochs=args.epochs, lr=args.lr, output=args.output,
                     overwrite=args.overwrite, threads=args.threads)
        return 0
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
    t.add_argument("--epochs", type=positive_int, help="override [train] epochs (with --qat: "
                   "[train] qat_epochs)")
    t.add_argument("--qat", action="store_true",
                   help="quantization-aware fine-tuning of the trained checkpoint through the "
                   "target's fixed point; writes [model] qat_checkpoint (docs/qat.md)")
    t.add_argument("--lr", type=positive_finite_float,
                   help="with --qat: override [train] qat_lr")
    t.add_argument("--overwrite", action="store_true",
                   help="replace an existing checkpoint (plain or QAT; without it, training "
                        "refuses to)")
    t.add_argument("-o", "--output", help="checkpoint path (default: model.checkpoint; with "
                   "--qat: model.qat_checkpoint)")
    t.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    t.set_defaults(func=run_command)
