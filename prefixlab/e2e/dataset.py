"""The `E2EDataset`: (mr, ref) pairs grouped by MR, with low-data subsets; the split names.

Both the synthetic generator (`prefixlab.e2e.synthetic`) and the loaders of real data
(`prefixlab.e2e.load`) return one.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "validation", "test")


def check_split(split: str) -> str:
    """`split` itself when it is one of `SPLITS`; else a ValueError listing them."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    return split


@dataclass
class E2EDataset:
    """(mr, ref) pairs. An MR usually has several references, on consecutive or scattered rows."""

    pairs: list[tuple[str, str]]  # (mr, ref), mr in canonical E2E form
    name: str = "e2e"  # where it came from, e.g. "synthetic-train(seed=0)" or a file name
    skipped: int = 0  # rows dropped while loading (malformed MR, empty ref); also warned about
    skipped_reasons: dict[str, int] = field(default_factory=dict)  # reason -> count

    def __post_init__(self):
        self.pairs = [(str(mr), str(ref)) for mr, ref in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    def __getitem__(self, index: int) -> tuple[str, str]:
        return self.pairs[index]

    def grouped(self) -> dict[str, list[str]]:
        """{mr: [ref, ...]} in first-seen order, for multi-reference evaluation."""
        groups: dict[str, list[str]] = {}
        for mr, ref in self.pairs:
            groups.setdefault(mr, []).append(ref)
        return groups

    @property
    def mrs(self) -> list[str]:
        """The distinct MRs, in first-seen order."""
        return list(self.grouped())

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the pairs as a CSV in the E2E release format (header `mr,ref`, one
        reference per row), which `load_csv` / `load_e2e` read back unchanged."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["mr", "ref"])
            writer.writerows(self.pairs)
        return path

    def subset(self, n_mrs: int | None, seed: int = 0) -> E2EDataset:
        """A low-data subset: `n_mrs` MRs chosen at random (by `seed`) with all their references.

        Subsets with one seed are nested: subset(50) is inside subset(100). Row order is kept.
        `n_mrs=None` returns all of it.
        """
        mrs = self.mrs
        if n_mrs is None:
            return E2EDataset(list(self.pairs), self.name, self.skipped, dict(self.skipped_reasons))
        if isinstance(n_mrs, bool) or not isinstance(n_mrs, int) or n_mrs < 1:
            raise ValueError(f"n_mrs must be an int >= 1 or None (all), got {n_mrs!r}.")
        if n_mrs > len(mrs):
            raise ValueError(
                f"n_mrs={n_mrs} but {self.name} has only {len(mrs)} distinct MRs; "
                f"pass n_mrs <= {len(mrs)} or None for all."
            )
        order = list(mrs)
        random.Random(f"subset:{seed}").shuffle(order)
        keep = set(order[:n_mrs])
        pairs = [(mr, ref) for mr, ref in self.pairs if mr in keep]
        return E2EDataset(pairs, f"{self.name}[{n_mrs} MRs, seed={seed}]")
