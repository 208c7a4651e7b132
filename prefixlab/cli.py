"""Command line: `prefixlab --version`, `prefixlab run-notebooks [--fast] [--inplace] [--out DIR]`."""

from __future__ import annotations

import argparse
import sys

from prefixlab._version import __version__
from prefixlab.runner import run_notebooks


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
    run.add_argument("notebooks", nargs="*", help="notebook files (default: the whole series)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run-notebooks":
        return run_notebooks(
            args.notebooks or None, out=args.out, fast=args.fast, inplace=args.inplace
        )
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
