"""Install PyTorch before prefixlab: the CPU build unless there is an NVIDIA GPU to use.

An unpinned `pip install torch` on Linux fetches the CUDA build from PyPI (several GB of
nvidia-* wheels) even on a machine without a GPU. Run this first, and the later
`pip install -e ".[lab]"` finds torch already installed and leaves it alone.

python scripts/install_torch.py            # chooses: torch already there -> nothing to do
python scripts/install_torch.py --dry-run  # print the pip command instead of running it
python scripts/install_torch.py --build cpu|cuda

Linux: CPU build from PyTorch's CPU index unless `nvidia-smi` is on the PATH (then PyPI's
default build, which is the CUDA one). macOS and Windows: PyPI's default build, which is
already CPU-only there (for CUDA on Windows, use the command from pytorch.org).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import shutil
import subprocess
import sys

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BUILDS = ("auto", "cpu", "cuda")


def installed_torch() -> str | None:
    """The installed torch version (e.g. '2.13.0+cpu'), or None when torch is missing."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_install_command(system: str, build: str, python: str = sys.executable) -> list[str]:
    """The pip command that installs torch for `system` ('Linux', 'Darwin', 'Windows').

    build: 'cpu', 'cuda' or 'auto' ('auto' means 'cuda' when nvidia-smi is on the PATH).
    Only Linux needs the CPU index: PyPI's Linux wheels are the CUDA build.
    """
    if build not in BUILDS:
        raise ValueError(f"build must be one of {BUILDS}, got {build!r}.")
    if build == "auto":
        build = "cuda" if shutil.which("nvidia-smi") else "cpu"
    command = [python, "-m", "pip", "install", "torch"]
    if system == "Linux" and build == "cpu":
        command += ["--index-url", CPU_INDEX]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", choices=BUILDS, default="auto", help="default: auto")
    parser.add_argument("--dry-run", action="store_true", help="print the command only")
    args = parser.parse_args(argv)

    version = installed_torch()
    if version is not None:
        print(f"torch {version} is already installed: nothing to do.")
        return 0
    command = torch_install_command(platform.system(), args.build)
    print("+ " + " ".join(command))
    if args.dry_run:
        return 0
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
