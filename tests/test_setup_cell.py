"""The notebooks' set-up cell: one source of truth, and it survives a kernel restart.

The restart test runs the first code cell of notebook 00 the way Colab would, offline: in a
fresh virtual environment that sees this environment's packages but not prefixlab, in an
empty working directory, installing from a local git clone of this repository
(`PREFIXLAB_REPO_URL`). Each `python` subprocess stands for one kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import sync_repository  # noqa: E402

NOTEBOOKS = sync_repository.NOTEBOOKS

# After the cell: where prefixlab comes from, whether it is a regular package, and a name the
# notebooks import from it (cell 2 of notebooks 03-06).
PROBE = """
import importlib.util
import prefixlab
from prefixlab.config import lab_sources
from prefixlab.paths import tiny_model_dir
print(prefixlab.__file__)
print(importlib.util.find_spec("prefixlab").origin)
print(tiny_model_dir())
"""


def setup_cell(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def test_notebooks_agree_with_pyproject():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/sync_repository.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
    repository, branch = sync_repository.repository_settings()
    owner_name = repository.removeprefix("https://github.com/")
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        badge = "".join(nb["cells"][0]["source"])
        assert f"colab.research.google.com/github/{owner_name}/blob/{branch}/notebooks/" in badge
        assert path.name in badge
        cell = setup_cell(path)
        assert f'REPO = "{repository}"' in cell and f'BRANCH = "{branch}"' in cell
        assert "sys.path" not in cell, "the set-up cell must not edit sys.path"


def test_sync_rewrites_badge_and_cell_together(tmp_path):
    nb = json.loads(NOTEBOOKS[0].read_text())
    setup = next(c for c in nb["cells"] if c["cell_type"] == "code")
    before = (setup.get("execution_count"), setup.get("outputs"))
    sync_repository.sync_notebook(nb, "https://github.com/someone/fork", "dev")
    badge = "".join(nb["cells"][0]["source"])
    assert f"github/someone/fork/blob/dev/notebooks/{NOTEBOOKS[0].name})" in badge
    assert "prefixlab/prefixlab" not in badge
    cell = "".join(setup["source"])
    assert 'REPO = "https://github.com/someone/fork"' in cell and 'BRANCH = "dev"' in cell
    assert (setup.get("execution_count"), setup.get("outputs")) == before
    compile(cell, "setup", "exec")


@pytest.mark.parametrize(
    "table, message",
    [
        ('repository = "git@github.com:a/b.git"\nbranch = "main"', "https://github.com/"),
        ('repository = "https://github.com/a/b"\nbranch = "has space"', "branch"),
        ('repository = "https://github.com/a/b"', "branch"),
    ],
)
def test_repository_settings_rejects_bad_values(tmp_path, table, message):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f"[tool.prefixlab]\n{table}\n")
    with pytest.raises(ValueError, match=message):
        sync_repository.repository_settings(pyproject)


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.slow
def test_setup_cell_installs_once_and_survives_a_restart(tmp_path):
    cell = setup_cell(NOTEBOOKS[0])
    _, branch = sync_repository.repository_settings()

    # A local git repository standing in for GitHub: this work tree as it is (committed or
    # not, ignored files left out) on the cell's branch.
    clone = tmp_path / "origin"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, clone / rel)
    _git("init", "-q", "-b", branch, cwd=clone)
    _git("add", "-A", cwd=clone)
    _git("-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "t", cwd=clone)

    # A fresh venv that sees this environment's site-packages as a plain path entry: torch and
    # friends import, but .pth files there (an editable prefixlab) are not processed.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    # Colab's working directory, with a folder named prefixlab in it: what the old cell's
    # clone left behind, which Python imports as an empty namespace package.
    work = tmp_path / "content"
    (work / "prefixlab").mkdir(parents=True)
    (work / "prefixlab" / "README.md").write_text("an old clone\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PREFIXLAB_DATA")}

    def kernel(repo_url: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [python, "-c", cell + "\n" + PROBE],
            cwd=work,
            env={**env, "PREFIXLAB_REPO_URL": repo_url},
            capture_output=True,
            text=True,
            timeout=300,
        )

    before = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util; print(importlib.util.find_spec('prefixlab').origin)",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert before.stdout.strip() == "None", "prefixlab must start as the empty folder only"

    first = kernel(clone.as_uri())
    assert first.returncode == 0, first.stderr
    file, origin, model_dir = first.stdout.split()
    assert file == origin and file.startswith(purelib), file  # a regular installed package
    assert model_dir.startswith(purelib) and Path(model_dir, "config.json").is_file()

    # The second kernel, with a URL that would fail: there must be nothing to install.
    second = kernel((tmp_path / "no-such-repo").as_uri())
    assert second.returncode == 0, second.stderr
    assert second.stdout.split()[0] == file
