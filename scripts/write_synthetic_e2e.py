"""Write the synthetic E2E data as CSV files, in the release's file names and format.

    python scripts/write_synthetic_e2e.py            # into data/synthetic-e2e/

`prefixlab.e2e.synthetic_e2e` generates the data from a seed; these files are the same
pairs (a test checks it), shipped so they can be opened, diffed and read through the same
CSV path as the real E2E release: `load_e2e("data/synthetic-e2e", "validation")`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a plain checkout without installing

from prefixlab.e2e import RELEASE_FILES, SPLITS, synthetic_e2e  # noqa: E402


def write(out: Path) -> list[Path]:
    """One CSV per split, named as in the E2E release (RELEASE_FILES[split][0])."""
    return [synthetic_e2e(split).to_csv(out / RELEASE_FILES[split][0]) for split in SPLITS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "data" / "synthetic-e2e")
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
