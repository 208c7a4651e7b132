"""What the sections share: the run's settings and report, and the numbers they measured."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from benchmarks.harness import Ratio
from benchmarks.report import Report
from benchmarks.variants import Settings


@dataclass
class Results:
    """Every number the goals table and its notes are computed from."""

    sources: dict[str, str] = field(default_factory=dict)  # model -> where it came from
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # model -> variant
    memory: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # model -> variant
    ratios: dict[tuple[str, str, str], Ratio] = field(default_factory=dict)  # (model, a, b)
    attention: dict[str, dict[str, Ratio]] = field(default_factory=dict)  # model -> ratio name
    generate: dict[tuple[str, int], Ratio] = field(default_factory=dict)  # (model, batch)
    # model -> variant -> phase -> seconds (and the matmul share)
    phases: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    p_sweep: dict[tuple[str, int, str], float] = field(default_factory=dict)  # (model, P, v)
    serving: list[dict] = field(default_factory=list)  # one dict per user count N (section 6)


@dataclass
class Run:
    """Handed to every section's `run`: what to measure, on what, and where to write it."""

    settings: Settings
    threads: int  # torch threads, also passed to child processes
    tiny: nn.Module  # the embedded tiny model, built once (results.sources["tiny"] says so)
    report: Report = field(default_factory=Report)
    results: Results = field(default_factory=Results)
