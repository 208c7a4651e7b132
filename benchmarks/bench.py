"""Side-by-side benchmarks of prefixlab against PEFT, LoRA and full fine-tuning, on a CPU.

    python benchmarks/bench.py                          # full run, ~10-15 min on a 2-core CPU
    python benchmarks/bench.py --quick --out /tmp/quick.md   # smoke run, ~1-2 min
    python benchmarks/bench.py --threads 1 --out benchmarks/RESULTS.md

Not part of the test suite; everything runs offline. How it measures: harness.py; what it
compares: variants.py; the sections of RESULTS.md: sections/ (benchmarks/README.md says more).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a plain checkout without installing

import torch  # noqa: E402

from benchmarks.context import Run  # noqa: E402
from benchmarks.report import VERDICT_RULE, load_average, log, machine_description, table  # noqa: E402
from benchmarks.sections import SECTIONS, memory  # noqa: E402
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
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)  # see sections/memory.py
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, with --out relative to the repository."""
    parts = ["python", "benchmarks/bench.py", *(["--quick"] if args.quick else [])]
    out = args.out.resolve()
    with contextlib.suppress(ValueError):
        out = out.relative_to(REPO)
    return " ".join([*parts, "--threads", str(args.threads), "--out", str(out)])


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_libraries()
    if args.rss_child:
        print(json.dumps(memory.child(args.rss_child)))
        return
    settings = Settings.quick_preset() if args.quick else Settings.full()
    started = time.perf_counter()
    machine = machine_description(args.threads, REPO)
    tiny, source = build_model("tiny")
    ctx = Run(settings, args.threads, tiny)
    ctx.results.sources["tiny"] = source
    for section in SECTIONS:
        section.run(ctx)

    goals = [g for s in SECTIONS if hasattr(s, "goals") for g in s.goals(ctx.results)]
    notes = [VERDICT_RULE] + [
        n for s in SECTIONS if hasattr(s, "notes") for n in s.notes(ctx.results)
    ]
    elapsed = time.perf_counter() - started
    machine += [["load average at end", load_average()]]
    machine += [["benchmark wall time", f"{elapsed / 60:.1f} min"]]
    head = [
        "# prefixlab benchmarks" + (" (quick smoke run)" if settings.quick else ""),
        "Written by `benchmarks/bench.py`; what it measures and how: "
        "[benchmarks/README.md](README.md). Reproduce with:",
        f"```bash\n{command_line(args)}\n```",
        "Absolute times are noise on a shared machine; the **ratios**, measured side by side "
        "(interleaved rounds; median of the per-round ratios, [interquartile range]), are the "
        "result.",
        "## Machine",
        table(["", ""], machine),
        "## Goals",
        table(
            ["comparison", "ratio, median [IQR]", "goal", "verdict", "note"],
            [g.row() for g in goals],
        ),
        "\n".join(f"- {note}" for note in notes),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n\n".join(head + ctx.report.sections) + "\n")
    log(f"wrote {args.out} in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
