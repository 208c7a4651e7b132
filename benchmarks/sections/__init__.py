"""The benchmark's sections, in the order RESULTS.md shows them.

A section is a module with `run(ctx: benchmarks.context.Run)`, which measures and appends its
markdown to `ctx.report` and its numbers to `ctx.results`. It may also define
`goals(results) -> list[Goal]` (rows of the goals table) and `notes(results) -> list[str]`
(the lettered notes under it), both computed from `results` only.

To add a section (per-user serving, for example), write a module here and put it in
SECTIONS where its output belongs; bench.py needs no change.
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
