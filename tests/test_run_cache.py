"""The run cache's key: prose does not change it, code does, and no result module is missed."""

from __future__ import annotations

from prefixlab.run_cache import code_digest, result_modules


def test_code_digest_ignores_prose_but_not_code():
    source = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    reworded = '# a comment\n\ndef f(x):\n    """Other words."""\n    return (x + 1)\n'
    changed = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert code_digest(source) == code_digest(reworded)
    assert code_digest(source) != code_digest(changed)


def test_result_modules_follow_the_imports_of_runs():
    modules = result_modules()
    # the run itself, what it trains and scores with, and the table of methods
    for name in ("runs", "train", "stability", "config", "methods", "prefix", "prompt", "lora"):
        assert f"prefixlab.{name}" in modules
    # the figures, the lab and the package root cannot change a run's numbers
    for name in ("prefixlab", "prefixlab.plotting", "prefixlab.widgets", "prefixlab.hooks"):
        assert name not in modules
    assert all(path.is_file() and path.suffix == ".py" for path in modules.values())
