"""The notebooks' set-up cell: one source of truth, and it survives a kernel restart.

The restart tests run the first code cell of notebook 00 the way Colab would, offline: in a
fresh virtual environment that sees this environment's packages but not prefixlab, in its own
working directory, installing from a local git repository made from this work tree
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
NOT_MISSING = (
    "prefixlab is importable from this environment's site-packages itself (a regular, "
    "non-editable install?): the test needs a venv where it is missing."
)


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


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A local git repository standing in for GitHub: this work tree as it is (committed or
    not, ignored files left out), on the branch the set-up cell names."""
    _, branch = sync_repository.repository_settings()
    repo = tmp_path_factory.mktemp("origin")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    _git("init", "-q", "-b", branch, cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "t", cwd=repo)
    return repo


class Colab:
    """A fresh venv and an empty working directory; `kernel()` runs the set-up cell and PROBE
    in a new interpreter, as a (re)started kernel would.

    The venv sees this environment's site-packages as a plain path entry: torch and friends
    import, but the .pth files there (an editable prefixlab) are not processed.
    """

    def __init__(self, root: Path):
        self.work = root / "content"
        self.work.mkdir()
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PREFIXLAB_DATA")
        }
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        self.python = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
        self.purelib = self.run("import sysconfig; print(sysconfig.get_paths()['purelib'])")
        Path(self.purelib, "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    def run(self, code: str) -> str:
        """stdout of `code` run by the venv's python in the working directory."""
        result = subprocess.run(
            [self.python, "-c", code],
            cwd=self.work,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def origin_of_prefixlab(self) -> str:
        return self.run(
            "import importlib.util; print(importlib.util.find_spec('prefixlab').origin)"
        )

    def kernel(self, repo_url: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.python, "-c", setup_cell(NOTEBOOKS[0]) + "\n" + PROBE],
            cwd=self.work,
            env={**self.env, "PREFIXLAB_REPO_URL": repo_url},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def check_two_kernels(self, origin: Path) -> None:
        """The first kernel installs a regular package and imports it; the second, given a URL
        that would fail, finds it and installs nothing."""
        first = self.kernel(origin.as_uri())
        assert first.returncode == 0, first.stderr
        file, spec_origin, model_dir = first.stdout.split()
        assert file == spec_origin and file.startswith(self.purelib), file
        assert model_dir.startswith(self.purelib) and Path(model_dir, "config.json").is_file()
        second = self.kernel((self.work / "no-such-repo").as_uri())
        assert second.returncode == 0, second.stderr
        assert second.stdout.split()[0] == file


@pytest.mark.slow
def test_setup_cell_installs_once_and_survives_a_restart(tmp_path, origin):
    colab = Colab(tmp_path)
    # A folder named prefixlab in the working directory, which Python imports as an empty
    # namespace package: the cell must install over it, and the install must win.
    (colab.work / "prefixlab").mkdir()
    (colab.work / "prefixlab" / "README.md").write_text("not the package\n")
    assert colab.origin_of_prefixlab() == "None", NOT_MISSING
    colab.check_two_kernels(origin)


@pytest.mark.slow
def test_setup_cell_repairs_what_the_old_cell_left(tmp_path, origin):
    """The old cell cloned into ./prefixlab and installed that clone editable: after a restart
    the clone folder shadowed the package (ImportError from cell 2)."""
    colab = Colab(tmp_path)
    _git("clone", "-q", str(origin), str(colab.work / "prefixlab"), cwd=tmp_path)
    subprocess.run(
        [colab.python, "-m", "pip", "install", "-q", "--no-deps", "-e", "prefixlab"],
        cwd=colab.work,
        check=True,
        capture_output=True,
    )
    # The namespace package wins over the editable install: the old bug.
    assert colab.origin_of_prefixlab() == "None", NOT_MISSING
    colab.check_two_kernels(origin)
