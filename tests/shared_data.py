"""Data several test files share: an MR with every slot, and where the real E2E dev split is.

The real E2E dev split is not part of this repository. When the checkout sits beside a
`shared/` folder that holds it (`../shared/data/e2e/devset.csv` from the repository root), the
tests that need real data read it; elsewhere they skip. PREFIXLAB_E2E_DEVSET may name another
copy of the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEVSET_BESIDE_REPO = "../shared/data/e2e/devset.csv"  # relative to the repository root
DEVSET = Path(os.environ.get("PREFIXLAB_E2E_DEVSET") or REPO / DEVSET_BESIDE_REPO)

# All eight slots, in E2E order; the names are invented for the tests (not E2E's).
FULL_MR = (
    "name[The Brass Lantern], eatType[coffee shop], food[French], priceRange[£20-25], "
    "customer rating[3 out of 5], area[riverside], familyFriendly[no], near[Pelham Bridge]"
)


def require_devset() -> Path:
    """The path of the real E2E dev split; skips the calling test when it is not there.

    The skip message names the path relative to the repository, never a machine's own path.
    """
    if not DEVSET.is_file():
        pytest.skip(
            f"the real E2E dev split is not beside the repository ({DEVSET_BESIDE_REPO}); "
            "set PREFIXLAB_E2E_DEVSET to its path to run this test"
        )
    return DEVSET
