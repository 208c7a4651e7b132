"""The methods table: complete rows, a helpful lookup, and the modules that read it."""

from __future__ import annotations

import dataclasses
import re

import pytest
from transformers import GPT2Config

from prefixlab import accounting, config, methods, plotting
from prefixlab.adapted import AdaptedModel
from prefixlab.config import RunConfig
from prefixlab.methods import METHOD_TABLE, METHODS, Method, method, method_of_adapter
from prefixlab.prefix import PrefixTuning
from prefixlab.train import _method_of


@pytest.mark.parametrize("row", METHOD_TABLE, ids=lambda m: m.name)
def test_every_method_has_every_field(row):
    for f in dataclasses.fields(Method):
        assert getattr(row, f.name) is not None or f.name == "adapter", f.name
    assert row.name and row.label and row.short_label
    assert re.fullmatch(r"#[0-9a-f]{6}", row.color)
    assert row.adapter in ("prefix", "prompt", "infix", None) and row.reparam in ("none", "mlp")
    assert row.default_lr >= 0 and (row.default_lr > 0) == (row.name != "none")
    assert row.uses_prefix_length == (row.adapter is not None) == bool(row.inits)
    assert all(isinstance(i, str) for i in row.inits)


def test_names_and_colours_are_distinct():
    assert tuple(m.name for m in METHOD_TABLE) == METHODS
    assert len(set(METHODS)) == len(METHODS)
    assert len({m.color for m in METHOD_TABLE}) == len(METHOD_TABLE)
    assert len({m.short_label for m in METHOD_TABLE}) == len(METHOD_TABLE)


def test_lookup_names_the_close_method():
    assert method("prefix+mlp").reparam == "mlp" and method("prefix+mlp").adapter == "prefix"
    with pytest.raises(ValueError, match="Did you mean 'prefix\\+mlp'"):
        method("prefix-mlp")
    with pytest.raises(ValueError, match="Choose one of"):
        method("adapter")
    assert method_of_adapter("prefix", "mlp").name == "prefix+mlp"
    assert method_of_adapter("prompt").name == "prompt"
    with pytest.raises(ValueError, match="reparam"):
        method_of_adapter("prompt", "mlp")


def test_config_reads_the_table(monkeypatch):
    assert dict(config.DEFAULT_LR) == {m.name: m.default_lr for m in METHOD_TABLE}
    for row in METHOD_TABLE:
        run = RunConfig(method=row.name)
        assert run.lr == row.default_lr and run.reparam == row.reparam
        assert run.uses_prefix_length == row.uses_prefix_length
        assert run.adapter_method == (row.adapter or row.name)
        for init in row.inits:
            RunConfig(method=row.name, init=init, init_text="Describe:")
    # a new rate in the table is the rate a run uses
    changed = dataclasses.replace(method("prefix"), default_lr=0.123)
    monkeypatch.setitem(methods._BY_NAME, "prefix", changed)
    assert RunConfig(method="prefix").lr == 0.123
    assert RunConfig(method="prefix").resolved().train.lr == 0.123


def test_accounting_rows_follow_the_table():
    rows = accounting.parameter_counts(GPT2Config(n_layer=2, n_embd=32, n_head=4), 5)
    counted = [m for m in METHOD_TABLE if m.name not in ("none", "infix")]
    assert [r["method"] for r in rows] == [m.name for m in counted]
    assert [r["label"] for r in rows] == [m.label for m in counted]


def test_widgets_read_the_table():
    widgets = pytest.importorskip("prefixlab.widgets")
    lab = tuple(
        m.name for m in METHOD_TABLE if m.adapter in ("prefix", "prompt") and not m.uses_lora
    )
    assert lab == widgets.LAB_METHODS and "infix" not in lab  # the infix needs notebook 07
    assert "prefix+lora" not in lab  # the lab varies P; the hybrid's LoRA does not depend on it
    assert widgets.METHOD_CHOICES == (("prefix tuning", "prefix"), ("prompt tuning", "prompt"))
    assert all(label == method(name).short_label for label, name in widgets.METHOD_CHOICES)


def test_plotting_colours_and_names_match_the_table():
    """plotting keeps its own copy for now; it must say what the table says."""
    for row in METHOD_TABLE:
        assert plotting.METHOD_COLORS[row.name] == row.color
        assert plotting.method_label(row.name) == row.short_label


def test_training_picks_the_table_rate_for_the_adapter(tiny_model):
    mlp = AdaptedModel(tiny_model, PrefixTuning(tiny_model, 2, reparam="mlp", mlp_hidden=4))
    assert _method_of(mlp) == "prefix+mlp"
    full = AdaptedModel(tiny_model)
    for p in full.parameters():
        p.requires_grad_(True)
    assert _method_of(full) == "full"
