"""Command line: `prefixlab --version`,
`prefixlab run-notebooks [--fast] [--inplace] [--out DIR] [--notebook-timeout SECONDS]`,
`prefixlab train --out DIR [--model M] [--method X] [--steps N] [--recipe li-liang-e2e] ...`
(on one device, or on many with `accelerate launch -m prefixlab train ...`)."""

from __future__ import annotations

import argparse
import sys

from prefixlab._version import __version__
from prefixlab.cli_train import add_train_parser, run_train
from prefixlab.runner import NOTEBOOK_TIMEOUT, check_notebook_timeout, run_notebooks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefixlab",
        description="prefix tuning vs prompt tuning on a frozen language model: the lab's tools.",
    )
    parser.add_argument("--version", action="version", version=f"prefixlab {__version__}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run-notebooks", help="execute the notebook series headless, write HTML")
    run.add_argument("--fast", action="store_true", help="use the FAST preset (seconds per run)")
    run.add_argument("--out", default="notebooks-html", help="folder for the executed HTML")
    run.add_argument(
        "--inplace",
        action="store_true",
        help="also write each executed notebook back (outputs kept, widget state stripped): "
        "how the committed series is made",
    )
    run.add_argument(
        "--notebook-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wall-clock limit per notebook; a notebook still running then fails, naming the "
        f"cell it was in (default: {NOTEBOOK_TIMEOUT})",
    )
    run.add_argument("notebooks", nargs="*", help="notebook files (default: the whole series)")
    add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run-notebooks":
        limit = NOTEBOOK_TIMEOUT if args.notebook_timeout is None else args.notebook_timeout
        try:
            check_notebook_timeout(limit)
        except ValueError:
            parser.error(f"--notebook-timeout must be a number of seconds > 0, got {limit:g}.")
        return run_notebooks(
            args.notebooks or None,
            out=args.out,
            fast=args.fast,
            inplace=args.inplace,
            notebook_timeout=limit,
        )
    if args.command == "train":
        return run_train(args, parser)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
