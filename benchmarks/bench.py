"""Side-by-side benchmarks of prefixlab against PEFT, LoRA and full fine-tuning, on a CPU.

    python benchmarks/bench.py                          # full run, ~10-15 min on a 2-core CPU
    python benchmarks/bench.py --quick --out /tmp/quick.md   # smoke run, ~1-2 min
    python benchmarks/bench.py --threads 1 --out benchmarks/RESULTS.md
    python benchmarks/bench.py --sections serving       # one section; the rest of the file kept

Not part of the test suite; everything runs offline. How it measures: harness.py; what it
compares: variants.py; the sections of RESULTS.md: sections/ (benchmarks/README.md says more).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a plain checkout without installing

import torch  # noqa: E402

from benchmarks.context import Run  # noqa: E402
from benchmarks.report import VERDICT_RULE, load_average, log, machine_description, table  # noqa: E402
from benchmarks.results_file import ResultsFile, parse, update  # noqa: E402
from benchmarks.sections import GOAL_SECTIONS, NAMES, SECTIONS, memory, section_name  # noqa: E402
from benchmarks.variants import Settings, build_model  # noqa: E402


def quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Side-by-side benchmarks of prefixlab vs PEFT, LoRA and full fine-tuning.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run (~1-2 minutes)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md", help="markdown output"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads for every measurement (default 1: on a shared 2-core "
        "machine more threads mostly measure the scheduler)",
    )
    parser.add_argument(
        "--sections",
        help="measure only these sections (comma-separated: " + ", ".join(NAMES) + ") and "
        "rewrite only their part of --out, keeping the other sections' text",
    )
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)  # see sections/memory.py
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:
        args.selected = select_sections(args.sections)
    except ValueError as error:
        parser.error(str(error))
    return args


def select_sections(names: str | None) -> list:
    """The section modules `--sections` names, in report order (all of them for None).

    The sections the goals table is computed from (GOAL_SECTIONS) go together: all or none.
    """
    if names is None:
        return list(SECTIONS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in NAMES]
    if unknown or not wanted:
        raise ValueError(
            f"--sections got {names!r}; name one or more of {', '.join(NAMES)}, "
            "comma-separated (e.g. --sections serving)."
        )
    chosen = [s for s in SECTIONS if section_name(s) in wanted]
    goal_names = [section_name(s) for s in GOAL_SECTIONS]
    some = [n for n in goal_names if n in wanted]
    if some and len(some) < len(goal_names):
        raise ValueError(
            f"--sections {','.join(some)}: the goals table is computed from sections "
            f"{', '.join(goal_names)} together; name all of them (or none), e.g. "
            f"--sections {','.join(goal_names)}."
        )
    return chosen


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, with --out relative to the repository."""
    parts = ["python", "benchmarks/bench.py", *(["--quick"] if args.quick else [])]
    if len(args.selected) < len(SECTIONS):
        parts += ["--sections", ",".join(section_name(s) for s in args.selected)]
    out = args.out.resolve()
    with contextlib.suppress(ValueError):
        out = out.relative_to(REPO)
    return " ".join([*parts, "--threads", str(args.threads), "--out", str(out)])


def goals_part(results, measured_all: bool) -> str:
    """The goals table and its notes, or (without every goal section) a line saying why not."""
    names = ", ".join(section_name(s) for s in GOAL_SECTIONS)
    if not measured_all:
        return (
            f"## Goals\n\nNot measured in this file: the goals come from sections {names} "
            "measured together (run them all: without --sections, or --sections "
            f"{names.replace(', ', ',')})."
        )
    goals = [g for s in SECTIONS if hasattr(s, "goals") for g in s.goals(results)]
    notes = [VERDICT_RULE] + [n for s in SECTIONS if hasattr(s, "notes") for n in s.notes(results)]
    return "\n\n".join(
        [
            "## Goals",
            table(
                ["comparison", "ratio, median [IQR]", "goal", "verdict", "note"],
                [g.row() for g in goals],
            ),
            "\n".join(f"- {note}" for note in notes),
        ]
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_libraries()
    if args.rss_child:
        print(json.dumps(memory.child(args.rss_child)))
        return
    settings = Settings.quick_preset() if args.quick else Settings.full()
    started = time.perf_counter()
    machine = dict(machine_description(args.threads, REPO))
    tiny, source = build_model("tiny")
    ctx = Run(settings, args.threads, tiny)
    ctx.results.sources["tiny"] = source
    new = ResultsFile(head="")
    for section in args.selected:
        name, before = section_name(section), len(ctx.report.sections)
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
        load, section_started = load_average(), time.perf_counter()
        section.run(ctx)
        if len(ctx.report.sections) == before:
            log(f"section {name} measured nothing with these settings; its part is kept as is")
            continue
        minutes = (time.perf_counter() - section_started) / 60
        new.sections[name] = "\n\n".join(ctx.report.sections[before:])
        new.measured[name] = [
            when,
            machine["prefixlab commit"],
            machine["torch / transformers / peft"],
            str(args.threads),
            load,
            f"{minutes:.1f} min" + (" (--quick)" if settings.quick else ""),
        ]
        if hasattr(section, "data"):
            provenance = {"section": name, "measured_utc": when, "quick": settings.quick}
            provenance |= {k: machine[k] for k in ("prefixlab commit", "torch threads", "CPU")}
            path = args.out.parent / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(provenance | section.data(ctx.results), indent=1) + "\n")
            log(f"wrote {path}")

    measured_all = all(s in args.selected for s in GOAL_SECTIONS)
    new.goals = goals_part(ctx.results, measured_all)
    elapsed = time.perf_counter() - started
    new.head = "\n\n".join(
        [
            "# prefixlab benchmarks" + (" (quick smoke run)" if settings.quick else ""),
            "Written by `benchmarks/bench.py`; what it measures and how: "
            "[benchmarks/README.md](README.md). Reproduce everything with:",
            "```bash\npython benchmarks/bench.py --threads 1 --out benchmarks/RESULTS.md\n```",
            "or some sections with `--sections NAME,...` (it rewrites only their parts of "
            "this file); the table below says when and at which commit each section was "
            f"measured. The latest run: `{command_line(args)}`, {elapsed / 60:.1f} min.",
            "Absolute times are noise on a shared machine; the **ratios**, measured side by side "
            "(interleaved rounds; median of the per-round ratios, [interquartile range]), are "
            "the result.",
            "## Machine",
            table(["", ""], [[k, machine[k]] for k in MACHINE_KEYS]),
        ]
    )
    partial = len(args.selected) < len(SECTIONS)
    if partial and args.out.exists():  # the goals part stays as it was unless measured now
        new = update(parse(args.out.read_text()), new if measured_all else replace(new, goals=""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(new.render(list(NAMES)))
    log(f"wrote {args.out} in {elapsed / 60:.1f} min")


# rows of the machine table: the machine itself (when and at which commit is per section)
MACHINE_KEYS = ("CPU", "cores", "memory", "python")


if __name__ == "__main__":
    main()
