"""RESULTS.md as parts a run can replace one at a time: its head, goals and sections.

A full run writes every part; `bench.py --sections serving` measures one section and
rewrites only that section's part, keeping the other sections' text as it is. The file is
plain markdown with HTML comments (invisible when rendered) around each part:

    # prefixlab benchmarks ...          head: title, command, machine (the latest run)
    <!-- measured -->                   one row per section: when, at which commit, load
    <!-- goals -->                      the goals table and its lettered notes
    <!-- section: training -->          one part per section, in SECTIONS order
    ...
    <!-- end section: training -->

Nothing here measures: `tests/test_bench_harness.py` checks it on strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from benchmarks.report import table

MEASURED_HEADERS = [
    "section",
    "measured (UTC)",
    "prefixlab commit",
    "torch / transformers / peft",
    "threads",
    "load average at start",
    "section wall time",
]
_MEASURED = ("<!-- measured -->", "<!-- end measured -->")
_GOALS = ("<!-- goals -->", "<!-- end goals -->")


def _section_marks(name: str) -> tuple[str, str]:
    return f"<!-- section: {name} -->", f"<!-- end section: {name} -->"


@dataclass
class ResultsFile:
    """The parts of RESULTS.md. `sections` maps a section name to its markdown."""

    head: str
    measured: dict[str, list[str]] = field(default_factory=dict)  # name -> row after the name
    goals: str = ""
    sections: dict[str, str] = field(default_factory=dict)

    def render(self, order: list[str]) -> str:
        """The whole file; sections in `order` (names not in `order` go last, sorted)."""
        rows = [[name, *self.measured[name]] for name in _ordered(self.measured, order)]
        parts = [
            self.head.strip(),
            _wrap(_MEASURED, "## Sections measured\n\n" + table(MEASURED_HEADERS, rows)),
            _wrap(_GOALS, self.goals.strip()),
        ]
        parts += [
            _wrap(_section_marks(name), self.sections[name].strip())
            for name in _ordered(self.sections, order)
        ]
        return "\n\n".join(parts) + "\n"


def parse(text: str) -> ResultsFile:
    """Split a RESULTS.md written by `ResultsFile.render` into its parts.

    Raises ValueError for a file without the part marks (written before they existed): run
    the full benchmark once to rewrite it.
    """
    measured = _between(text, _MEASURED)
    goals = _between(text, _GOALS)
    if measured is None or goals is None:
        raise ValueError(
            "This RESULTS.md has no part marks (<!-- measured -->, <!-- goals -->), so its "
            "sections cannot be told apart: run the full benchmark once (without --sections) "
            "to rewrite it."
        )
    head = text[: text.index(_MEASURED[0])].strip()
    rows = {}
    for line in measured.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("section", "") and not line.startswith("|-"):
            rows[cells[0]] = cells[1:]
    sections = {
        m.group(1): _between(text, _section_marks(m.group(1)))
        for m in re.finditer(r"<!-- section: ([\w-]+) -->", text)
    }
    missing = [name for name, body in sections.items() if body is None]
    if missing:
        raise ValueError(f"RESULTS.md: section {missing[0]!r} has no end mark; rerun it.")
    return ResultsFile(head=head, measured=rows, goals=goals, sections=sections)


def update(old: ResultsFile, new: ResultsFile) -> ResultsFile:
    """`old` with `new`'s head and `new`'s sections (and their measured rows) in place.

    The goals part is `new`'s when `new` has one (the run measured every section the goals
    are computed from), else `old`'s as it was.
    """
    return ResultsFile(
        head=new.head,
        measured={**old.measured, **new.measured},
        goals=new.goals or old.goals,
        sections={**old.sections, **new.sections},
    )


def _wrap(marks: tuple[str, str], body: str) -> str:
    return f"{marks[0]}\n\n{body}\n\n{marks[1]}"


def _between(text: str, marks: tuple[str, str]) -> str | None:
    start, end = text.find(marks[0]), text.find(marks[1])
    if start < 0 or end < start:
        return None
    return text[start + len(marks[0]) : end].strip()


def _ordered(names, order: list[str]) -> list[str]:
    known = [n for n in order if n in names]
    return known + sorted(n for n in names if n not in order)
