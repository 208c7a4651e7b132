"""The benchmark's sections, in the order RESULTS.md shows them.

A section is a module with `run(ctx: benchmarks.context.Run)`, which measures and appends its
markdown to `ctx.report` and its numbers to `ctx.results`. It may also define
`goals(results) -> list[Goal]` (rows of the goals table) and `notes(results) -> list[str]`
(the lettered notes under it), both computed from `results` only.

A section may also define `data(results) -> dict`: its numbers for other programs, written
as JSON next to RESULTS.md (`serving.json`, read by notebook 09).

To add a section, write a module here and put it in SECTIONS where its output belongs;
bench.py needs no change. A section is named after its module (`--sections serving`).
"""

from __future__ import annotations

from benchmarks.sections import (
    attention,
    inference,
    memory,
    prefix_length,
    scaling,
    serving,
    training,
)

SECTIONS = (training, attention, inference, prefix_length, scaling, memory, serving)

# The goals table and its notes are computed from these sections' results together (section 5
# measures the GPT-2-small rows of section 1's goals), so they are measured together or not at
# all: `--sections` takes all of them or none.
GOAL_SECTIONS = (training, attention, inference, prefix_length, scaling)


def section_name(section) -> str:
    """The name `--sections` and RESULTS.md use for a section: its module's name."""
    return section.__name__.rsplit(".", 1)[-1]


NAMES = tuple(section_name(s) for s in SECTIONS)
