"""record_attention on tiny GPT-2 and Llama (grouped-query) models, for both methods and none."""

from __future__ import annotations

import warnings

import pytest
import torch
from tiny_models import MAKERS, batch

from prefixlab import AdaptedModel, PrefixTuning, PromptTuning
from prefixlab.attention import prefix_mass_per_token, real_query_mask
from prefixlab.hooks import (
    AttentionCache,
    attention_modules,
    attention_report,
    pattern_hook_name,
    record_attention,
)

P = 3
HEADS = 4  # query heads of both tiny models (the Llama one has 2 key/value heads)


@pytest.fixture(params=["prefix", "prompt", "none"])
def kind(request) -> str:
    return request.param


def adapted_model(model, kind: str, seed: int = 1) -> AdaptedModel:
    if kind == "prefix":
        return AdaptedModel(model, PrefixTuning(model, P, seed=seed))
    if kind == "prompt":
        return AdaptedModel(model, PromptTuning(model, P, seed=seed))
    return AdaptedModel(model)


def hook_counts(model) -> list[int]:
    return [len(m._forward_hooks) for m in attention_modules(model)]


# -- exactness -------------------------------------------------------------------------------


def test_recorded_equals_eager_output_attentions(tiny_model, kind):
    adapted = adapted_model(tiny_model, kind)
    ids, mask = batch(3, 6, pad_left=2)
    with torch.no_grad():
        expected = adapted(ids, mask, output_attentions=True).attentions
        with record_attention(adapted) as cache:
            adapted(ids, mask)
    assert len(expected) == cache.n_layers == len(cache) == 2
    for layer, want in enumerate(expected):
        assert torch.equal(cache["pattern", layer], want)


def test_sdpa_is_switched_to_eager_and_back(arch, method):
    sdpa = MAKERS[arch](attn_implementation="sdpa")
    eager = MAKERS[arch](attn_implementation="eager")  # same seed, same weights
    adapter = PrefixTuning(sdpa, P, seed=1) if method == "prefix" else PromptTuning(sdpa, P, seed=1)
    fast, slow = AdaptedModel(sdpa, adapter), AdaptedModel(eager, adapter)
    ids, mask = batch(2, 5, pad_left=1)
    with torch.no_grad():
        expected = slow(ids, mask, output_attentions=True).attentions
        before = fast(ids, mask).logits
        with pytest.warns(UserWarning, match="eager") as caught, record_attention(fast) as cache:
            assert sdpa.config._attn_implementation == "eager"
            fast(ids, mask)
        after = fast(ids, mask).logits
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert caught[0].filename == __file__, "the warning should point at the caller's `with`"
    assert sdpa.config._attn_implementation == "sdpa"
    assert torch.equal(before, after)
    for layer, want in enumerate(expected):
        assert torch.equal(cache["pattern", layer], want)


def test_eager_model_records_without_warning(tiny_model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with record_attention(tiny_model) as cache:
            tiny_model(batch(1, 4)[0])
    assert cache.prefix_length == 0 and cache.method is None


def test_missing_probabilities_raise_instead_of_recording_nothing(tiny_model):
    before = hook_counts(tiny_model)
    with (
        pytest.raises(RuntimeError, match="attn_implementation='eager'"),
        record_attention(tiny_model),
    ):
        tiny_model.config._attn_implementation_internal = "sdpa"  # behind the recorder's back
        tiny_model(batch(1, 4)[0])
    assert hook_counts(tiny_model) == before


# -- hooks come and go ---------------------------------------------------------------------------


def test_hooks_are_removed_after_the_context(tiny_model):
    adapted = adapted_model(tiny_model, "prefix")
    before = hook_counts(tiny_model)
    with record_attention(adapted):
        assert hook_counts(tiny_model) == [n + 1 for n in before]
    assert hook_counts(tiny_model) == before


def test_hooks_are_removed_after_an_exception(arch):
    model = MAKERS[arch](attn_implementation="sdpa")
    before = hook_counts(model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        pytest.warns(UserWarning),
        record_attention(model),
    ):
        raise RuntimeError("boom")
    assert hook_counts(model) == before
    assert model.config._attn_implementation == "sdpa"


def test_recording_changes_no_output_and_adds_no_parameter(tiny_model, kind):
    adapted = adapted_model(tiny_model, kind)
    ids, mask = batch(2, 5, pad_right=1)
    params = sorted((n, p.shape) for n, p in adapted.named_parameters())
    with torch.no_grad():
        plain = adapted(ids, mask).logits
        with record_attention(adapted):
            recorded = adapted(ids, mask).logits
    assert torch.equal(plain, recorded)
    assert sorted((n, p.shape) for n, p in adapted.named_parameters()) == params


# -- names and shapes ------------------------------------------------------------------------------


def test_hook_names_are_pinned(tiny_model):
    names = ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    assert [pattern_hook_name(layer) for layer in range(2)] == names
    with record_attention(tiny_model) as cache:
        assert cache.hook_names() == names and list(cache.keys()) == []  # nothing ran yet
        tiny_model(batch(1, 4)[0])
    assert list(cache.keys()) == names
    assert cache["blocks.1.attn.hook_pattern"] is cache["pattern", 1] is cache["pattern", -1]
    with pytest.raises(KeyError, match="hook name"):
        cache["blocks.0.attn.hook_scores"]


def test_selected_layers_only(tiny_model):
    with record_attention(tiny_model, layers=[1]) as cache:
        tiny_model(batch(1, 4)[0])
    assert cache.hook_names() == ["blocks.1.attn.hook_pattern"] == list(cache)
    assert cache.stacked().shape[0] == 1
    with pytest.raises(KeyError, match="not recorded"):
        cache["pattern", 0]
    with pytest.raises(ValueError, match="layers"), record_attention(tiny_model, layers=[2]):
        pass


def test_shapes_put_the_prefix_first(tiny_model, kind):
    adapted = adapted_model(tiny_model, kind)
    B, T = 2, 5
    with torch.no_grad(), record_attention(adapted) as cache:
        adapted(*batch(B, T))
    p = 0 if kind == "none" else P
    queries = T + p if kind == "prompt" else T  # soft tokens are queries too
    assert isinstance(cache, AttentionCache) and cache.prefix_length == p
    assert cache["pattern", 0].shape == (B, HEADS, queries, p + T)
    assert cache.stacked().shape == (2, B, HEADS, queries, p + T)


def test_generate_records_one_call_per_new_token(tiny_model, kind):
    adapted = adapted_model(tiny_model, kind)
    ids, mask = batch(2, 4, pad_left=1)
    p = 0 if kind == "none" else P
    with record_attention(adapted) as cache:
        adapted.generate(ids, mask, max_new_tokens=3, do_sample=False)
    assert cache.n_calls == len(cache.calls) == 3
    first = cache.calls[0]["blocks.0.attn.hook_pattern"]
    assert first is cache["pattern", 0], "indexing returns the prefill call"
    assert first.shape[-1] == p + 4
    for step in (1, 2):
        assert cache.pattern(0, call=step).shape == (2, HEADS, 1, p + 4 + step)


# -- analysis on recorded attention -----------------------------------------------------------------


def test_prefix_mass_and_rest_sum_to_one(tiny_model, kind):
    adapted = adapted_model(tiny_model, kind)
    ids, mask = batch(3, 6, pad_left=2)
    with torch.no_grad(), record_attention(adapted) as cache:
        adapted(ids, mask)
    stacked = cache.stacked()  # [L, B, H, Q, K]
    query_mask = real_query_mask(mask, stacked.shape[-2])
    prefix = prefix_mass_per_token(stacked, cache.prefix_length, query_mask)
    rest = stacked[..., cache.prefix_length :].sum(-1)
    real = query_mask.bool()[None, :, None, :].expand_as(prefix)
    assert torch.allclose((prefix + rest)[real], torch.ones(int(real.sum())), atol=1e-6)
    if kind == "none":
        assert torch.equal(prefix[real], torch.zeros(int(real.sum())))


def test_report_ignores_padding(tiny_model, kind):
    adapted = adapted_model(tiny_model, kind)
    ids, mask = batch(2, 6, pad_left=2)
    padded = attention_report(adapted, ids[-1:], mask[-1:])  # one row, two pads on the left
    alone = attention_report(adapted, ids[-1:, 2:])  # the same row without the pads
    assert list(padded.columns) == [
        "layer",
        "head",
        "prefix_mass",
        "sink_mass",
        "entropy",
        "top_prefix_slot",
    ]
    assert len(padded) == 2 * HEADS
    for column in ("prefix_mass", "sink_mass", "entropy"):
        assert padded[column].to_numpy() == pytest.approx(alone[column].to_numpy(), abs=1e-5)
    assert padded["top_prefix_slot"].tolist() == alone["top_prefix_slot"].tolist()
    assert padded.attrs["prefix_length"] == (0 if kind == "none" else P)
    if kind == "none":
        assert (padded["prefix_mass"] == 0).all() and (padded["top_prefix_slot"] == -1).all()
    else:
        assert ((padded["prefix_mass"] > 0) & (padded["prefix_mass"] < 1)).all()
