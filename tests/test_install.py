"""The README's install commands: CPU torch without a GPU, and no CUDA packages after it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import install_torch  # noqa: E402


@pytest.mark.parametrize(
    "system, build, cpu_index",
    [
        ("Linux", "cpu", True),  # PyPI's Linux wheel is the CUDA build: use the CPU index
        ("Linux", "cuda", False),
        ("Darwin", "cpu", False),  # PyPI's macOS and Windows wheels are CPU builds already
        ("Windows", "cpu", False),
    ],
)
def test_torch_install_command(system, build, cpu_index):
    command = install_torch.torch_install_command(system, build, python="py")
    assert command[:5] == ["py", "-m", "pip", "install", "torch"]
    assert (install_torch.CPU_INDEX in command) == cpu_index


def test_auto_build_follows_nvidia_smi(monkeypatch):
    monkeypatch.setattr(install_torch.shutil, "which", lambda name: None)
    assert install_torch.CPU_INDEX in install_torch.torch_install_command("Linux", "auto")
    monkeypatch.setattr(install_torch.shutil, "which", lambda name: "/usr/bin/" + name)
    assert install_torch.CPU_INDEX not in install_torch.torch_install_command("Linux", "auto")


def test_bad_build_is_rejected():
    with pytest.raises(ValueError, match="build must be one of"):
        install_torch.torch_install_command("Linux", "gpu")


def test_installed_torch_is_left_alone(monkeypatch, capsys):
    monkeypatch.setattr(install_torch, "installed_torch", lambda: "2.13.0+cpu")
    monkeypatch.setattr(install_torch.subprocess, "run", lambda *a, **k: pytest.fail("ran pip"))
    assert install_torch.main([]) == 0
    assert "already installed" in capsys.readouterr().out


def test_missing_torch_dry_run_prints_the_command(monkeypatch, capsys):
    monkeypatch.setattr(install_torch, "installed_torch", lambda: None)
    monkeypatch.setattr(install_torch.subprocess, "run", lambda *a, **k: pytest.fail("ran pip"))
    monkeypatch.setattr(install_torch.platform, "system", lambda: "Linux")
    assert install_torch.main(["--dry-run", "--build", "cpu"]) == 0
    assert install_torch.CPU_INDEX in capsys.readouterr().out


@pytest.mark.slow
def test_lab_and_test_extras_pull_no_cuda_packages(tmp_path):
    """What `pip install -e ".[lab,test]"` would add once torch is installed.

    Proves that no requirement of prefixlab (a torch pin the installed build does not meet,
    a dependency that needs CUDA) makes pip replace the CPU torch that install_torch.py put
    there with PyPI's CUDA build or add nvidia-* wheels. Offline here: everything but
    prefixlab itself is already installed, and pip resolves it without contacting an index.
    """
    # The project's metadata without its code, so that building it writes nothing into the
    # repository (setuptools builds in the source folder).
    project = tmp_path / "project"
    packages = ("prefixlab/__init__.py", "prefixlab/_version.py", "prefixlab/e2e/__init__.py",
                "prefixlab/plotting/__init__.py", "prefixlab/studies/__init__.py")  # fmt: skip
    for name in ("pyproject.toml", "README.md", *packages, "data/README.md"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report)]
        + ["--editable", f"{project}[lab,test]"],
        check=True,
        capture_output=True,
    )
    installs = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "prefixlab" in installs  # the report is about this project
    cuda = {n: v for n, v in installs.items() if n.startswith(("nvidia-", "cuda-")) or "+cu" in v}
    assert not cuda, f"CUDA packages would be installed: {cuda}"
    assert "torch" not in installs and "triton" not in installs, installs
