"""The markdown of RESULTS.md: number formats, tables, goal rows and the machine table."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import Ratio, verdict

VERDICT_RULE = (
    'Verdicts: "met" when the upper quartile of the per-round ratios is within the goal, '
    '"missed" when the lower quartile is beyond it, "within noise" when the quartiles '
    "straddle the goal."
)


def log(message: str) -> None:
    """Progress on stderr (stdout of an RSS child carries its JSON result)."""
    print(message, file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    """Milliseconds with three significant figures up to 100 ms: 0.0123 -> "12.3"."""
    value = seconds * 1e3
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def mib(n_bytes: float) -> str:
    """MiB with about three significant figures: 2**20 -> "1.00"."""
    value = n_bytes / 2**20
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Goal:
    """One row of the goals table: a measured ratio against the most it should be."""

    what: str
    ratio: Ratio | None
    goal: float | None
    note: str = ""

    def row(self) -> list[str]:
        if self.ratio is None:
            return [self.what, "not measured", "-", "-", self.note]
        verdict_text = verdict(self.ratio, self.goal)
        return [self.what, str(self.ratio), f"<= {self.goal}", verdict_text, self.note]


@dataclass
class Report:
    """The sections of RESULTS.md in order; each is markdown chunks joined by blank lines."""

    sections: list[str] = field(default_factory=list)

    def add(self, *chunks: str) -> None:
        self.sections.append("\n\n".join(c for c in chunks if c))


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_description(threads: int, repo: Path) -> list[list[str]]:
    """Rows of the machine table: CPU, cores, memory, versions, commit, date, load."""
    import peft
    import torch
    import transformers

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f"{kib / 2**20:.1f} GiB"
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(repo)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
        commit = head.stdout.strip() + (" (plus uncommitted changes)" if dirty.stdout else "")
    return [
        ["CPU", cpu],
        ["cores", f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable"],
        ["memory", memory],
        ["torch threads", f"{threads} (`torch.set_num_threads`)"],
        ["load average at start (1/5/15 min)", load_average()],
        ["python", platform.python_version()],
        [
            "torch / transformers / peft",
            f"{torch.__version__} / {transformers.__version__} / {peft.__version__}",
        ],
        ["prefixlab commit", commit],
        ["date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")],
    ]
