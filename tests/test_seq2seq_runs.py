"""Encoder-decoder runs through the package's one-call path: RunConfig(model="tiny-bart",
parts=...), run_experiment (train, validate, generate, score, cache), and the pieces the two
architectures share (`prefixlab.pair_format`): batches, token-weighted losses, table gain."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from tiny_models import char_tokenizer, save_lab_gpt2, write_lab_csv

from prefixlab.batching import iterate_batches
from prefixlab.config import FAST, RunConfig
from prefixlab.evaluate import generate_texts, mismatched_pairs, table_gain, validation_loss
from prefixlab.pair_format import DECODER_ONLY, ENCODER_DECODER, pair_format
from prefixlab.run_cache import canonical, key_fields
from prefixlab.runs import build, run_data, run_experiment, run_grid
from prefixlab.seq2seq import PARTS
from prefixlab.seq2seq_batching import encode_seq2seq

TINY_BART_BUILT = (
    Path(__file__).resolve().parents[1].joinpath("data", "tiny-bart", "model.safetensors").is_file()
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A tiny random BART and a tiny random GPT-2 (character tokenizer) saved as model
    folders, and an E2E-format CSV."""
    from transformers import BartConfig, BartForConditionalGeneration

    root = tmp_path_factory.mktemp("s2s_lab")
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=97, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=96, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=2, forced_eos_token_id=None, dropout=0.0,
    )  # fmt: skip
    BartForConditionalGeneration(config).save_pretrained(root / "bart")
    char_tokenizer().save_pretrained(root / "bart")
    save_lab_gpt2(root / "gpt2")
    write_lab_csv(root / "data.csv")
    return root


def lab_config(lab, model: str = "bart") -> RunConfig:
    return FAST.with_(
        model=str(lab / model), data=str(lab / "data.csv"), n_train_mrs=4, n_val_mrs=2,
        eval_mrs=2, max_new_tokens=6, steps=3, batch_size=4, eval_every=None, max_length=48,
        prefix_length=3,
    )  # fmt: skip


# -- configs and cache keys (no model is loaded) -----------------------------------------------


def test_parts_are_read_in_every_spelling_and_keyed_only_when_they_matter():
    config = FAST.with_(model="tiny-bart", parts=["cross", "encoder"])
    assert config.parts == ("encoder", "cross")  # PARTS order
    assert FAST.with_(model="tiny-bart", parts="encoder+cross") == config
    assert FAST.with_(model="tiny-bart", parts="decoder").parts == ("decoder",)
    assert config.to_row()["parts"] == "encoder+cross"
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # a decoder-only run's key has no parts (its keys stayed as they were); a placed prefix's has
    assert "parts" not in key_fields(FAST) and "parts" not in key_fields(config.with_(parts=PARTS))
    assert key_fields(config)["parts"] == ["encoder", "cross"]
    # a soft prompt sits in front of the encoder input: parts cannot change it
    prompt = config.with_(method="prompt")
    assert canonical(prompt) == canonical(prompt.with_(parts=PARTS))
    # the config part of FAST's key, computed before encoder-decoder runs existed
    text = json.dumps(key_fields(FAST), sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == "9489c986ae6eba3d"


@pytest.mark.parametrize(
    ("changes", "problem", "fix"),
    [
        ({"model": "tiny-bart", "parts": ()}, "at least one", "parts='encoder+decoder'"),
        ({"model": "tiny-bart", "parts": "encoder+encoder"}, "at most once", "any of 'encoder'"),
        ({"model": "tiny-bart", "parts": "enc"}, "Did you mean 'encoder'", "any of 'encoder'"),
        ({"model": "tiny-bart", "parts": 3}, "tuple of names", "parts=('decoder',)"),
        ({"model": "tiny-bart", "method": "lora"}, "'prefix', 'prefix\\+mlp', 'prompt', 'none'",
         "need a decoder-only model"),
        ({"model": "tiny-bart", "method": "infix"}, "encoder-decoder model 'tiny-bart'",
         "need a decoder-only model"),
        ({"model": "tiny-bart", "init": "vocab"}, "init .for an encoder-decoder",
         "decoder-only for now"),
        ({"parts": "encoder"}, "'tiny' is decoder-only", "use model='tiny-bart'"),
    ],
)  # fmt: skip
def test_bad_encoder_decoder_options_say_how_to_fix_them(changes, problem, fix):
    with pytest.raises(ValueError, match=problem) as err:
        FAST.with_(**changes)
    assert fix in str(err.value)


def test_folders_are_recognised_from_their_config(lab):
    with pytest.raises(ValueError, match="encoder-decoder model"):
        lab_config(lab).with_(method="full")
    with pytest.raises(ValueError, match="is decoder-only"):
        lab_config(lab, "gpt2").with_(parts="encoder")
    assert lab_config(lab).with_(method="prompt", init="vocab").init == "vocab"


# -- batches and losses shared by both architectures --------------------------------------------


def test_encoder_decoder_batches_trim_source_and_target_on_their_own():
    """Source and target of the same width: each is trimmed by its own mask (a batch whose
    sources are short keeps its long targets)."""
    tok = char_tokenizer()
    pairs = [("abcdefgh", "ab"), ("ab", "abcdefgh"), ("abc", "abc")]
    enc = encode_seq2seq(tok, pairs)
    assert enc["input_ids"].shape == enc["labels"].shape  # S == T: widths cannot tell them apart
    batch = next(iterate_batches({k: v[1:] for k, v in enc.items()}, 2))
    assert batch["input_ids"].shape[1] == len(" abc") + 1  # the short sources: trimmed
    assert batch["labels"].shape[1] == len(" abcdefgh") + 1  # the long target: kept whole
    assert (batch["labels"][0] != -100).all()
    with pytest.warns(UserWarning, match="1 of 3 pairs are too long"):
        skipped = encode_seq2seq(tok, pairs, max_source=6, overflow="skip")
    assert skipped.kept == [1, 2] and skipped.n_dropped == 1


def test_losses_are_token_weighted_and_table_gain_swaps_the_encoder_input(lab):
    """validation_loss over batches of one row equals the mean over every target token at
    once, for both architectures; the table gain's wrong-MR loss is the loss with the encoder
    reading another MR."""
    config = lab_config(lab).with_(method="none")
    adapted, tok = build(config)
    assert pair_format(adapted) is ENCODER_DECODER and pair_format(adapted.model) is ENCODER_DECODER
    pairs = run_data(config, "validation").pairs
    enc = encode_seq2seq(tok, pairs)
    with torch.no_grad():
        whole = adapted(**enc).loss.item()
    assert validation_loss(adapted, enc, batch_size=1) == pytest.approx(whole, rel=1e-5)
    gain = table_gain(adapted, tok, pairs, max_length=48, batch_size=1)
    with torch.no_grad():
        wrong = adapted(**encode_seq2seq(tok, mismatched_pairs(pairs))).loss.item()
    assert gain["loss_right_mr"] == pytest.approx(whole, rel=1e-5)
    assert gain["loss_wrong_mr"] == pytest.approx(wrong, rel=1e-5)
    per = table_gain(adapted, tok, pairs, max_length=48, batch_size=1, per_table=True)
    assert per["loss_right_mr"] == pytest.approx(whole, rel=1e-5)

    gpt, gpt_tok = build(config.with_(model=str(lab / "gpt2")))
    assert pair_format(gpt) is DECODER_ONLY
    gpt_enc = DECODER_ONLY.encode(gpt_tok, pairs, 96)
    with torch.no_grad():
        gpt_whole = gpt(**gpt_enc).loss.item()
    assert validation_loss(gpt, gpt_enc, batch_size=1) == pytest.approx(gpt_whole, rel=1e-5)


# -- run_experiment on a tiny random BART -------------------------------------------------------


def test_random_bart_runs_like_a_decoder_only_model(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    base = lab_config(lab)
    table, histories = run_grid(
        base, method=["prefix", "prompt", "none"], parts=["encoder", "decoder+cross", PARTS],
        progress=False,
    )  # fmt: skip
    # prompt and none ignore parts: one run each
    assert table["method"].tolist() == ["prefix"] * 3 + ["prompt", "none"]
    assert (table["architecture"] == "encoder-decoder").all()
    assert table["parts"].tolist()[:3] == ["encoder", "decoder+cross", "encoder+decoder+cross"]
    assert table["parts"][3:].isna().all()
    # P x layers x (key, value) x d_model per part: 3 * 2 * 2 * 32 = 384
    assert table["trainable_params"].tolist() == [384, 768, 1152, 3 * 32, 0]
    assert table["label"][0] == "prefix P=3 encoder lr=0.03 seed=0"
    assert table["bleu"].notna().all() and table["slot_error_rate"].between(0, 1).all()
    assert table["table_gain"].notna().all() and table["final_val_loss"].notna().all()
    assert (table["stopped_reason"] == "completed").all()
    for history in histories.values():
        assert len(history.generations) == 2 and len(history.table_losses) == 2

    # the same columns as a decoder-only run
    gpt_row, _, _ = run_experiment(lab_config(lab, "gpt2").with_(max_length=96), progress=False)
    assert set(gpt_row) == set(table.columns) - {"run_id"} | {"run_id"}
    assert gpt_row["architecture"] == "decoder-only" and gpt_row["parts"] is None

    # a cache hit rebuilds the trained prefix, with the parts it had
    config = base.with_(parts="encoder")
    row, history, adapted = run_experiment(config, progress=False)
    assert row["cached"] and row["run_id"] == table["run_id"][0]
    assert set(adapted.adapter.parts) == {"encoder"}
    assert [n for n, p in adapted.named_parameters() if p.requires_grad] == [
        "adapter.weights.encoder"
    ]
    fresh, _ = build(config)
    assert not torch.equal(fresh.adapter.flat("encoder"), adapted.adapter.flat("encoder"))


# -- the embedded tiny-bart at the FAST preset --------------------------------------------------


@pytest.mark.skipif(not TINY_BART_BUILT, reason="data/tiny-bart is not built")
@pytest.mark.parametrize(
    ("method", "parts"), [("prefix", "encoder+decoder+cross"), ("prompt", PARTS)]
)
def test_tiny_bart_learns_at_the_fast_preset(method, parts, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    config = FAST.with_(model="tiny-bart", method=method, parts=parts)
    row, history, adapted = run_experiment(config, progress=False)
    assert history.stopped_reason == "completed" and history.steps_done == FAST.train.steps
    assert history.val_loss[-1] < history.val_loss[0] - 0.2, history.val_loss
    # the right MR is worth something: the model reads its encoder's input
    assert row["table_gain"] > 0.3 and row["loss_right_mr"] == pytest.approx(
        row["final_val_loss"], rel=1e-4
    )
    texts = [g["text"] for g in history.generations]
    assert len(texts) == FAST.eval_mrs and all(len(t.split()) >= 3 for t in texts)
    _, tok = build(config)
    mrs = [g["mr"] for g in history.generations]
    again = generate_texts(adapted, tok, mrs, max_new_tokens=FAST.max_new_tokens, batch_size=8)
    assert again == texts  # generation is deterministic and batching does not change it
    assert 0 <= row["slot_error_rate"] < 0.5 and row["bleu"] > 10
    second, history2, _ = run_experiment(config, progress=False, return_model=False)
    assert second["cached"] and history2.val_loss == history.val_loss
