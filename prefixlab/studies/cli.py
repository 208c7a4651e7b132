"""Command line of the studies:

    python -m prefixlab.studies list
    python -m prefixlab.studies run prefix_vs_prompt [--preset cpu|fast|gpu] [--out results/]
                                    [--no-cache] [--threads 1] [--quiet]
                                    [--only AXIS=VALUE] [--journal DIR [--arm LABEL]]
    python -m prefixlab.studies show prefix_vs_prompt [--results results/]
    python -m prefixlab.studies status mlp_stability --journal results/journal/mlp_stability

`run` writes results/<name>.csv, .json, .tables.npz and .adapters.safetensors; `show` prints the verdict table of the
committed files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefixlab.config import PRESETS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prefixlab.studies",
        description="Named studies under the measurement protocol: run them, list them, show "
        "their verdicts.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="the registered studies, one line each")
    run = sub.add_parser("run", help="run a study and write its results files")
    run.add_argument("name", help="a registered study (see `list`)")
    run.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)} "
                     "(default: the study's own)")  # fmt: skip
    run.add_argument("--out", default=None, help="folder for the files (default: results/)")
    run.add_argument("--no-cache", action="store_true", help="retrain every run (honest timing)")
    run.add_argument("--threads", default="1", help="torch threads (default 1)")
    run.add_argument("--quiet", action="store_true", help="no line per run")
    run.add_argument("--only", action="append", default=None, metavar="AXIS=VALUE[,VALUE]",
                     help="run only these axis points and merge them into the results already "
                     "in --out (repeatable), e.g. --only model=mini")  # fmt: skip
    run.add_argument("--journal", default=None, metavar="DIR",
                     help="keep every finished run as small files in DIR and read them back "
                     "when run again (a study that spans sessions; commit DIR)")  # fmt: skip
    run.add_argument("--arm", action="append", default=None, metavar="LABEL",
                     help="run only this arm (repeatable) into --journal, writing no results "
                     "files: two processes can share one axis point; run again without --arm "
                     "to write them")  # fmt: skip
    merge = sub.add_parser("merge", help="merge parts run into other folders (run --only ... "
                           "--out DIR) into the study's results")  # fmt: skip
    merge.add_argument("name", help="a registered study (see `list`)")
    merge.add_argument("parts", nargs="+", help="folders holding parts of the study")
    merge.add_argument("--out", default=None, help="folder to merge into (default: results/)")
    status = sub.add_parser("status", help="how far a study's journal has come, per axis "
                            "point and arm")  # fmt: skip
    status.add_argument("name", help="a registered study (see `list`)")
    status.add_argument("--journal", required=True, metavar="DIR", help="the study's journal")
    show = sub.add_parser("show", help="print the verdict table of a study's committed results")
    show.add_argument("name", help="a registered study (see `list`)")
    show.add_argument("--results", default=None, help="folder of the files (default: results/)")
    return parser


def _folder(parser, option: str, value):
    """A folder path from the command line (None = the default); a file there is an error."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if not str(value).strip() or path.is_file():
        parser.error(f"{option} must be a folder, got {value!r}.")
    return path


def _only(parser, items):
    """--only AXIS=V1,V2 options as {axis: [values]} (None when not given)."""
    if not items:
        return None
    only = {}
    for item in items:
        axis, sep, values = item.partition("=")
        if not sep or not axis.strip() or not values.strip():
            parser.error(f"--only takes AXIS=VALUE[,VALUE], got {item!r} (e.g. model=mini).")
        only.setdefault(axis.strip(), []).extend(v.strip() for v in values.split(",") if v.strip())
    return only


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from prefixlab.studies.registry import STUDIES, get_study

    if args.command == "list":
        from prefixlab.studies.registry import cpu_estimate

        for study in STUDIES.values():
            problems = study.protocol_problems()
            note = f"  [below the protocol: {'; '.join(problems)}]" if problems else ""
            cost = cpu_estimate(study)
            print(f"{study.name} ({cost['runs']} runs, about {cost['hours']:g} CPU-hours): "
                  f"{study.description}{note}")  # fmt: skip
        return 0
    try:
        study = get_study(args.name)
    except ValueError as err:
        parser.error(str(err))
    if args.command == "status":
        import pandas as pd

        from prefixlab.studies.journal import journal_status

        folder = _folder(parser, "--journal", args.journal)
        if not folder.is_dir():
            parser.error(f"--journal {folder} is not a folder (no run of the study is there).")
        table = journal_status(study, folder)
        with pd.option_context("display.width", 200, "display.max_rows", 500):
            print(table.to_string(index=False))
        done = table["tune_done"].sum() + table["seeds_done"].sum()
        planned = table["tune_planned"].sum() + table["seeds_planned"].sum()
        print(
            f"{study.name}: {done} runs in the journal of about {planned} planned; "
            f"{int(table['done'].sum())} of {len(table)} point-arms complete"
        )
        return 0
    if args.command == "show":
        import pandas as pd

        from prefixlab.studies.analysis import verdict_table

        try:
            table = verdict_table(study, _folder(parser, "--results", args.results))
        except FileNotFoundError as err:
            parser.error(str(err))
        with pd.option_context("display.width", 200, "display.max_columns", 30,
                               "display.max_rows", 500):  # fmt: skip
            print(
                table.drop(columns="interval").to_string(index=False, float_format="{:.4g}".format)
            )
        return 0
    if args.command == "merge":
        from prefixlab.studies.protocol import merge_parts

        parts = [_folder(parser, "a part", value) for value in args.parts]
        try:
            results = merge_parts(study, parts, _folder(parser, "--out", args.out))
        except (ValueError, FileNotFoundError) as err:
            parser.error(str(err))
        info = results.provenance
        print(f"{study.name}: {info['runs']} runs from {len(info.get('parts', [1]))} parts; "
              f"wrote {', '.join(str(p) for p in results.paths.values())}")  # fmt: skip
        return 0
    # run
    if args.preset is not None and args.preset not in PRESETS:
        parser.error(f"--preset must be one of {', '.join(PRESETS)}, got {args.preset!r}.")
    try:
        threads = int(args.threads)
    except ValueError:
        threads = 0
    if threads < 1:
        parser.error(f"--threads must be an int >= 1, got {args.threads!r}.")
    out = _folder(parser, "--out", args.out)
    journal = _folder(parser, "--journal", args.journal)
    only = _only(parser, args.only)
    import torch

    from prefixlab.studies.protocol import (
        check_eval_tables,
        run_study,
        select_arms,
        select_points,
    )

    try:
        if only is not None:
            select_points(study, only)
        select_arms(study, args.arm, journal)
    except ValueError as err:
        parser.error(str(err))

    try:
        check_eval_tables(study, study.base_config(args.preset))
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(threads)
    results = run_study(study, preset=args.preset, out=out, cache=not args.no_cache,
                        progress=not args.quiet, only=only, journal=journal,
                        arms=args.arm)  # fmt: skip
    if results is None:  # --arm: only the journal was written
        return 0
    info = results.provenance
    print(
        f"{study.name}: {info['runs']} runs ({info['cached_runs']} from the cache) in "
        f"{info['wall_seconds']:.0f} s; wrote {', '.join(str(p) for p in results.paths.values())}"
    )
    return 0
