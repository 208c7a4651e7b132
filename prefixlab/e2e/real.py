"""The real E2E data on this machine: where its dev split is, and a split of it by MR.

The real E2E release is not part of this repository (its references are CC BY-SA text by
other people). When a copy of its dev split is on the machine, `find_devset` finds it, and
`split_by_mr` cuts it into parts that never share an MR, so that tuning on one part and
scoring on another measures how well a method transfers to tables it has not seen:

    >>> dev = load_csv(find_devset())
    >>> parts = split_by_mr(dev, {"train": 0.7, "validation": 0.1, "test": 0.2})
    >>> folder = write_release(parts, "/tmp/e2e-dev-split")   # load_e2e(folder, "test") reads it

Which part an MR lands in depends only on the MR (a hash), not on the file's row order.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from prefixlab.e2e.dataset import SPLITS, E2EDataset
from prefixlab.e2e.load import RELEASE_FILES

DEVSET_ENV = "PREFIXLAB_E2E_DEVSET"
DEVSET_BESIDE_REPO = Path("shared") / "data" / "e2e" / "devset.csv"  # from the repo's parent
TRANSFER_SHARES = {"train": 0.7, "validation": 0.1, "test": 0.2}


def find_devset(repo: str | os.PathLike | None = None) -> Path | None:
    """The real E2E dev split: `$PREFIXLAB_E2E_DEVSET` when set, else
    `../shared/data/e2e/devset.csv` beside the repository (or beside the repository's parent
    folder, as for a git worktree). None when it is in none of these places.

    Args:
        repo: the repository root to look beside; default: the checkout this package is in.
    """
    env = os.environ.get(DEVSET_ENV)
    if env:
        path = Path(env).expanduser()
        return path if path.is_file() else None
    root = Path(repo) if repo is not None else Path(__file__).resolve().parents[2]
    for base in (root.parent, root.parent.parent):
        if (base / DEVSET_BESIDE_REPO).is_file():
            return base / DEVSET_BESIDE_REPO
    return None


def _share_point(mr: str, salt: str) -> float:
    """A number in [0, 1) fixed by the MR and the salt."""
    digest = hashlib.blake2b(f"{salt}:{mr}".encode(), digest_size=8).hexdigest()
    return int(digest, 16) / 2**64


def split_by_mr(
    data: E2EDataset, shares: Mapping[str, float] | None = None, *, salt: str = "prefixlab"
) -> dict[str, E2EDataset]:
    """Cut a dataset into parts by MR: every reference of an MR goes to the same part.

    Args:
        data: the dataset to cut (e.g. the real dev split, `load_csv(find_devset())`).
        shares: {part: share}, shares > 0 summing to 1; default `TRANSFER_SHARES`
            (train 0.7, validation 0.1, test 0.2). Parts named like `SPLITS` can be written
            with `write_release`.
        salt: another salt, another (equally random) assignment of MRs to parts.

    Returns:
        {part: E2EDataset}, rows in their original order, named "<data.name>[<part>]".
    """
    shares = dict(TRANSFER_SHARES if shares is None else shares)
    if not shares or any(
        isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in shares.values()
    ):
        raise ValueError(
            f"shares must map part names to positive numbers, got {shares!r}; "
            "e.g. {'train': 0.7, 'validation': 0.1, 'test': 0.2}."
        )
    if abs(sum(shares.values()) - 1.0) > 1e-9:
        raise ValueError(f"shares must sum to 1, got {sum(shares.values()):g} from {shares!r}.")
    if not isinstance(salt, str):
        raise ValueError(f"salt must be a string, got {salt!r}.")
    bounds, total = [], 0.0
    for part, share in shares.items():
        total += share
        bounds.append((total, part))
    out: dict[str, list[tuple[str, str]]] = {part: [] for part in shares}
    for mr, ref in data.pairs:
        point = _share_point(mr, salt)
        part = next((p for bound, p in bounds if point < bound), bounds[-1][1])
        out[part].append((mr, ref))
    return {part: E2EDataset(pairs, f"{data.name}[{part}]") for part, pairs in out.items()}


def write_release(parts: Mapping[str, E2EDataset], folder: str | os.PathLike) -> Path:
    """Write parts named like `SPLITS` as the release's files (trainset.csv, devset.csv,
    testset_w_refs.csv) in `folder`, so `load_e2e(folder, split)` and a RunConfig with
    `data=str(folder)` read them. Keep such a folder outside the repository."""
    unknown = set(parts) - set(SPLITS)
    if unknown:
        raise ValueError(f"Parts {sorted(unknown)} have no release file; name parts {SPLITS}.")
    folder = Path(folder)
    for split, part in parts.items():
        part.to_csv(folder / RELEASE_FILES[split][0])
    return folder
