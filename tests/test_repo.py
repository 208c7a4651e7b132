"""The repository keeps its promises: README index in step, data found, notebooks small."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_readme_index_in_step_with_notebooks():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/sync_readme_index.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in readme


def test_readme_has_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "<!-- test-command -->" in readme and "python -m pytest" in readme
    # The lab opens at the repository root (README and docs reachable) on the first notebook.
    assert "jupyter lab --ServerApp.root_dir=. notebooks/00_tour.ipynb" in readme
    # Both commands install torch through the CPU-aware installer before the package.
    assert readme.count("python scripts/install_torch.py && pip install -e") >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_executed_and_small(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and c["source"]]
    waiting = nb["metadata"].get("prefixlab", {}).get("unexecuted")
    if waiting:  # committed before its studies ran: no outputs at all (none from stand-ins)
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), (
            "an executed notebook must drop the metadata key prefixlab.unexecuted"
        )
    else:
        assert all(c.get("execution_count") for c in code), "commit notebooks executed"
    assert path.stat().st_size < 3 * 1024 * 1024
    text = path.read_text()
    assert "cdn.plot.ly" not in text and "window.PlotlyConfig" not in text, "plotly.js embedded"
    assert "Open In Colab" in "".join("".join(c["source"]) for c in nb["cells"][:2])


def test_data_dir_found_from_package():
    from prefixlab.paths import data_dir

    assert (data_dir() / "README.md").is_file()


def test_data_dir_env_override(tmp_path, monkeypatch):
    from prefixlab.paths import data_dir

    monkeypatch.setenv("PREFIXLAB_DATA", str(tmp_path))
    assert data_dir() == tmp_path


@pytest.mark.slow
def test_wheel_ships_the_embedded_data(tmp_path):
    """A regular `pip install .` copies data/ into the package as prefixlab/_embedded."""
    import zipfile

    pytest.importorskip("setuptools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("prefixlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "prefixlab/_embedded/README.md" in names
    shipped = sorted(
        p.relative_to(ROOT / "data").as_posix() for p in (ROOT / "data").rglob("*") if p.is_file()
    )
    for rel in shipped:
        assert f"prefixlab/_embedded/{rel}" in names, rel
