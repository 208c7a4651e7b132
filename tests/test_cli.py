"""The command line: --version and the headless notebook runner."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
from notebook_files import write_notebook

import prefixlab
from prefixlab.cli import main


def test_version_module_and_script():
    out = subprocess.run(
        [sys.executable, "-m", "prefixlab", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"prefixlab {prefixlab.__version__}"


@pytest.mark.slow
def test_run_notebooks_writes_html_and_names_failing_cell(tmp_path, capsys):
    good = write_notebook(tmp_path / "01_good.ipynb", "x = 21 * 2", "print(x)")
    bad = write_notebook(tmp_path / "02_bad.ipynb", "y = 1", "raise RuntimeError('boom')")
    out = tmp_path / "html"
    assert main(["run-notebooks", str(good), "--out", str(out)]) == 0
    assert "42" in (out / "01_good.html").read_text()
    assert main(["run-notebooks", str(good), str(bad), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "[1/2] 01_good.ipynb ... ok" in captured.out
    assert "02_bad.ipynb: cell 1 failed" in captured.err and "boom" in captured.err


def test_run_notebooks_missing_file(tmp_path, capsys):
    assert main(["run-notebooks", str(tmp_path / "nope.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err


@pytest.mark.slow
def test_run_notebooks_inplace_keeps_outputs_and_drops_widget_state(tmp_path):
    path = write_notebook(tmp_path / "01_w.ipynb", "print(6 * 7)")
    nb = nbformat.read(path, as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, path)
    assert main(["run-notebooks", str(path), "--inplace", "--out", str(tmp_path / "html")]) == 0
    done = nbformat.read(path, as_version=4)
    assert done.cells[0].outputs[0]["text"] == "42\n"
    assert "widgets" not in done.metadata
    assert "execution" not in done.cells[0].metadata  # no timestamps to churn the diff
