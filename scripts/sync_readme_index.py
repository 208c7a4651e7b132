"""Rewrite the README's notebook index from each notebook's opening paragraph.

python scripts/sync_readme_index.py          # rewrite README.md
python scripts/sync_readme_index.py --check  # exit 1 when the index is out of step
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- notebook-index -->", "<!-- /notebook-index -->"


def opening_paragraph(path: Path) -> str:
    """The first prose paragraph of the notebook's first markdown cell (after the title)."""
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    paragraphs = [p.strip() for p in first.source.split("\n\n")]
    prose = [p for p in paragraphs if p and not p.startswith("#") and not p.startswith("[![")]
    return " ".join(prose[0].split()) if prose else ""


def index_table() -> str:
    rows = ["| notebook | what you will see |", "|---|---|"]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        rows.append(f"| [{path.stem}](notebooks/{path.name}) | {opening_paragraph(path)} |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    readme = (ROOT / "README.md").read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    updated = pattern.sub(f"{START}\n{index_table()}\n{END}", readme)
    if "--check" in argv:
        if updated != readme:
            print(
                "README.md notebook index is out of step: run python scripts/sync_readme_index.py"
            )
            return 1
        return 0
    (ROOT / "README.md").write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
