"""Shared fixtures: tiny random models built in memory, so the suite runs offline in seconds."""

from __future__ import annotations

import os

import pytest
import torch
from tiny_models import MAKERS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFIXLAB_PRESET", "fast")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# The browser tests' stand-in notebooks are run in JupyterLab by tests/test_browser.py, not by
# nbval (which would otherwise collect every .ipynb under tests/).
collect_ignore_glob = ["browser/fixtures/*"]


@pytest.fixture(params=["gpt2", "llama"])
def arch(request) -> str:
    return request.param


@pytest.fixture
def tiny_model(arch):
    """A frozen tiny random causal LM of each architecture (parametrized: gpt2, llama)."""
    return MAKERS[arch]()


@pytest.fixture(params=["prefix", "prompt"])
def method(request) -> str:
    return request.param
