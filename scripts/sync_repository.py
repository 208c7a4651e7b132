"""Point every notebook's Colab badge and set-up cell at one repository and branch.

The repository and branch are read from ``[tool.prefixlab]`` in pyproject.toml. A fork
changes them there and runs this script, so the badge (which notebook Colab opens) and the
set-up cell (what that notebook installs) can never disagree.

python scripts/sync_repository.py          # rewrite the notebooks and the README's Colab line
python scripts/sync_repository.py --check  # exit 1 when something is out of step
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# The first code cell of every notebook. It installs a regular (not editable) copy with
# pip straight from git: no clone folder is left in the working directory, so nothing named
# `prefixlab` there can shadow the package as a namespace package, and the package is
# importable at once (no .pth file to wait for) and in every later kernel. A folder found
# with no origin is such a namespace package, so the cell installs over it.
SETUP_CELL = """\
# Set-up: installs prefixlab when it is missing (Colab); does nothing where it is installed.
# Forks: set [tool.prefixlab] in pyproject.toml and run scripts/sync_repository.py.
import importlib
import importlib.util
import os
import subprocess
import sys

REPO = "{repository}"
BRANCH = "{branch}"
found = importlib.util.find_spec("prefixlab")
if found is None or found.origin is None:  # missing, or just a folder named prefixlab here
    source = f"git+{{os.environ.get('PREFIXLAB_REPO_URL', REPO)}}@{{BRANCH}}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)
    importlib.invalidate_caches()  # site-packages changed under the running interpreter"""

COLAB = re.compile(r"https://colab\.research\.google\.com/github/[^)\s`]+?/notebooks/")
GITHUB = re.compile(r"https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)")


def repository_settings(pyproject: Path = ROOT / "pyproject.toml") -> tuple[str, str]:
    """(repository URL, branch) from pyproject.toml's [tool.prefixlab] table, validated."""
    try:
        import tomllib
    except ModuleNotFoundError as err:  # Python 3.10
        raise RuntimeError("This script needs Python 3.11 or newer (tomllib).") from err
    table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("prefixlab", {})
    repository, branch = table.get("repository"), table.get("branch")
    if not isinstance(repository, str) or not GITHUB.fullmatch(repository):
        raise ValueError(
            f"[tool.prefixlab] repository in {pyproject} must look like "
            f"'https://github.com/<owner>/<name>' (Colab opens notebooks from GitHub), "
            f"got {repository!r}."
        )
    if not isinstance(branch, str) or not re.fullmatch(r"[A-Za-z0-9_./-]+", branch):
        raise ValueError(
            f"[tool.prefixlab] branch in {pyproject} must be a git branch name such as 'main', "
            f"got {branch!r}."
        )
    return repository, branch


def colab_prefix(repository: str, branch: str) -> str:
    """The Colab URL of the repository's notebooks/ folder, e.g. '.../blob/main/notebooks/'."""
    owner, name = GITHUB.fullmatch(repository).groups()
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/notebooks/"


def first_cell(nb: dict, cell_type: str) -> dict:
    return next(c for c in nb["cells"] if c["cell_type"] == cell_type)


def sync_notebook(nb: dict, repository: str, branch: str) -> dict:
    """Rewrite the badge (first markdown cell) and the set-up cell (first code cell) in place.

    Only the two cells' `source` changes; outputs and execution counts are left as they are.
    """
    badge = first_cell(nb, "markdown")
    text = "".join(badge["source"])
    if not COLAB.search(text):
        raise ValueError("the first markdown cell has no Colab badge: add one, then rerun.")
    badge["source"] = COLAB.sub(colab_prefix(repository, branch), text).splitlines(keepends=True)
    setup = SETUP_CELL.format(repository=repository, branch=branch)
    first_cell(nb, "code")["source"] = setup.splitlines(keepends=True)
    return nb


def main(argv: list[str]) -> int:
    repository, branch = repository_settings()
    stale = []
    for path in NOTEBOOKS + [ROOT / "README.md"]:
        before = path.read_text()
        if path.suffix == ".ipynb":
            nb = sync_notebook(json.loads(before), repository, branch)
            after = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        else:
            after = COLAB.sub(colab_prefix(repository, branch), before)
        if after != before:
            stale.append(path.relative_to(ROOT).as_posix())
            if "--check" not in argv:
                path.write_text(after)
    if stale and "--check" in argv:
        print(f"Out of step with [tool.prefixlab] in pyproject.toml: {', '.join(stale)}.")
        print("Run: python scripts/sync_repository.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
