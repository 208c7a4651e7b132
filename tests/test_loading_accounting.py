"""load_model, model_dims and parameter accounting."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_gpt2, make_llama

from prefixlab import PrefixTuning, PromptTuning, context_budget, load_model, parameter_counts
from prefixlab.accounting import lora_parameters, prefix_mlp_parameters


def gpt2_small_config():
    from transformers import GPT2Config

    return GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257)


def test_gpt2_small_counts_from_config_alone():
    rows = {r["method"]: r for r in parameter_counts(gpt2_small_config(), 10)}
    # 10 x 2 x 12 x 768 and 10 x 768 (P x L x 2 x d and P x d); the base count is GPT-2 small's.
    assert rows["prefix"]["trainable"] == 184_320
    assert rows["prompt"]["trainable"] == 7_680
    assert rows["full"]["trainable"] == 124_439_808
    assert rows["prefix+mlp"]["stored"] == 184_320
    assert rows["prefix"]["percent_of_base"] == pytest.approx(100 * 184_320 / 124_439_808)


def test_llama_7b_counts_from_config_alone():
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    )
    rows = {r["method"]: r for r in parameter_counts(config, 10)}
    assert rows["full"]["trainable"] == 6_738_415_616
    assert rows["prefix"]["trainable"] == 10 * 2 * 32 * 4096


@pytest.mark.parametrize("maker", [make_gpt2, make_llama])
def test_counts_match_the_modules(maker):
    model = maker()
    rows = {r["method"]: r["trainable"] for r in parameter_counts(model, 5, mlp_hidden=16)}
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert rows["prefix"] == count(PrefixTuning(model, 5))
    assert rows["prefix+mlp"] == count(PrefixTuning(model, 5, reparam="mlp", mlp_hidden=16))
    assert rows["prompt"] == count(PromptTuning(model, 5))
    assert rows["full"] == count(model)


def test_lora_count_matches_lora_module():
    lora = pytest.importorskip("prefixlab.lora")
    for maker in (make_gpt2, make_llama):
        model = maker()
        params = lora.add_lora(model, rank=4)
        from prefixlab import model_dims

        assert sum(p.numel() for p in params) == lora_parameters(model_dims(model), 4)


def test_mlp_formula_grouped_query():
    from prefixlab import model_dims

    dims = model_dims(make_llama())
    assert prefix_mlp_parameters(dims, 3, 8) == 3 * 16 + (16 + 1) * 8 + (8 + 1) * (2 * 2 * 16)


def test_context_budget():
    budget = context_budget(gpt2_small_config(), 10)
    assert budget["left_for_tokens"] == 1014
    assert budget["percent_used"] == pytest.approx(100 * 10 / 1024)


@pytest.mark.parametrize("bad", [{"prefix_length": 0}, {"lora_rank": 0}, {"mlp_hidden": -1}])
def test_accounting_validates(bad):
    kw = {"prefix_length": 10, **bad}
    with pytest.raises(ValueError):
        parameter_counts(gpt2_small_config(), **kw)


def test_offline_unknown_model_names_the_embedded_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="load_model\\('tiny'\\)"):
        load_model("prefixlab-test/surely-not-cached-model")


def test_offline_fallback_to_tiny_warns(monkeypatch):
    from prefixlab.paths import tiny_model_dir

    try:
        tiny_model_dir()
    except FileNotFoundError:
        pytest.skip("embedded tiny model not built yet")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(UserWarning, match="Falling back"):
        model, tokenizer = load_model(
            "prefixlab-test/surely-not-cached-model", fallback_to_tiny=True
        )
    assert model.name_or_path == "tiny"


def test_load_local_folder_frozen_eval(tmp_path):
    model = make_gpt2()
    model.save_pretrained(tmp_path)
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, **{chr(97 + i): i + 1 for i in range(26)}}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>").save_pretrained(
        tmp_path
    )
    loaded, tokenizer = load_model(str(tmp_path), dtype="float32")
    assert not loaded.training
    assert all(not p.requires_grad for p in loaded.parameters())
    assert tokenizer.pad_token == tokenizer.eos_token
    assert loaded.config._attn_implementation == "eager"
    for a, b in zip(loaded.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kw,match",
    [({"attn_implementation": "fast"}, "attn_implementation"), ({"dtype": "float99"}, "dtype")],
)
def test_load_model_validates(kw, match):
    with pytest.raises(ValueError, match=match):
        load_model("tiny", **kw)


def test_load_model_tiny():
    from prefixlab.paths import tiny_model_dir

    try:
        tiny_model_dir()
    except FileNotFoundError:
        pytest.skip("embedded tiny model not built yet")
    model, tokenizer = load_model("tiny")
    assert model.config.model_type == "gpt2"
    assert all(not p.requires_grad for p in model.parameters()) and not model.training
    assert tokenizer.pad_token is not None


def test_reference_table_covers_gpt2_sizes_and_llama():
    from prefixlab.accounting import accounting_table, reference_configs

    table = accounting_table(reference_configs(), 10)
    full = table[table.method == "full"].set_index("model")["trainable"]
    assert full["gpt2-small"] == 124_439_808
    assert full["gpt2-xl"] > 1.5e9 and full["llama-7b"] > 6.7e9
    # prefix, prefix+mlp, prompt, lora, full, prefix+lora per model
    assert len(table) == 6 * len(reference_configs())


def test_cache_kwarg_follows_the_forward_signature():
    """The forward's cache keyword is `cache` or `past_key_values`: prefixlab uses the one
    the model takes."""
    from torch import nn

    from prefixlab.loading import cache_kwarg

    class Old(nn.Module):
        def forward(self, input_ids=None, past_key_values=None, **kwargs):
            return input_ids

    class New(nn.Module):
        def forward(self, input_ids=None, cache=None, **kwargs):
            return input_ids

    assert cache_kwarg(Old()) == "past_key_values"
    assert cache_kwarg(New()) == "cache"


def test_prefix_forward_raises_no_cache_rename_warning(tiny_model):
    """The installed transformers must not see a deprecated keyword from prefixlab."""
    import warnings

    from prefixlab import AdaptedModel, PrefixTuning

    adapted = AdaptedModel(tiny_model, PrefixTuning(tiny_model, 3))
    ids = torch.randint(1, 50, (2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        adapted(ids)
        adapted.generate(ids, max_new_tokens=2, do_sample=False)
