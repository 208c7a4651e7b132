"""The shared argument checks, and the package's own import rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from prefixlab._validate import require_choice, require_int, require_number
from prefixlab._version import __version__

PACKAGE = Path(__file__).resolve().parent.parent / "prefixlab"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: require_int("steps", 0, low=1, hint="Try 300."), r"steps must be an int >= 1, got 0\. Try 300\."),
        (lambda: require_int("steps", True, low=1), "must be an int >= 1, got True"),
        (lambda: require_int("n", "3", low=0, allow_none=True), "an int >= 0 or None"),
        (lambda: require_number("lr", 0, above=0), "lr must be a positive number, got 0"),
        (lambda: require_number("f", 1.0, above=1), "f must be a number > 1"),
        (lambda: require_number("r", 1.0, at_least=0, below=1), r"r must be a number in \[0, 1\)"),
        (lambda: require_number("x", float("nan")), "x must be a finite number"),
        (lambda: require_number("x", False), "x must be a finite number"),
        (lambda: require_choice("schedule", "cosin", ("linear", "cosine")), "Did you mean 'cosine'"),
    ],
)  # fmt: skip
def test_messages_say_how_to_fix_the_call(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_valid_values_pass():
    require_int("n", 3, low=1)
    require_int("n", None, low=1, allow_none=True)
    require_number("r", 0.0, at_least=0, below=1)
    require_number("lr", None, above=0, allow_none=True)
    require_choice("schedule", "linear", ("linear", "cosine"))


def test_version_has_one_source():
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'attr = "prefixlab._version.__version__"' in pyproject
    assert __import__("prefixlab").__version__ == __version__


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "_embedded" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_do_not_import_the_package_root(path):
    """`from prefixlab import x` runs prefixlab/__init__.py, which imports most of the
    package; modules below the root import what they need from its module."""
    if path.name == "__init__.py" and path.parent == PACKAGE:
        return
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "prefixlab":
            pytest.fail(f"{path.name}:{node.lineno} imports from the package root")
        if isinstance(node, ast.Import) and any(a.name == "prefixlab" for a in node.names):
            pytest.fail(f"{path.name}:{node.lineno} imports the package root")
