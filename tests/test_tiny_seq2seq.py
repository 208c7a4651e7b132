"""The embedded encoder-decoder (data/tiny-bart): its build script, its examples, its batches,
and the shipped model: it loads offline, reads its source, and takes prefixes and prompts."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefixlab.e2e import fact_sheet, synthetic_e2e, synthetic_pretraining_corpus
from prefixlab.paths import EMBEDDED_SEQ2SEQ_MODELS, embedded_model_dir, embedded_seq2seq_dir
from prefixlab.seq2seq import Seq2SeqPrefixTuning, Seq2SeqPromptTuning, load_seq2seq
from prefixlab.seq2seq_adapted import Seq2SeqAdaptedModel
from prefixlab.seq2seq_batching import encode_seq2seq

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "build_tiny_seq2seq.py"


def build_script():
    spec = importlib.util.spec_from_file_location("build_tiny_seq2seq", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being built
    spec.loader.exec_module(module)
    return module


def gpt_tokenizer():
    """tiny-gpt2's tokenizer, the one tiny-bart ships with."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir("tiny"))


@pytest.fixture(scope="module")
def tiny_bart():
    return load_seq2seq("tiny")


# -- batches ------------------------------------------------------------------------------------


def test_encode_seq2seq_pads_and_ends_with_eos():
    tok = gpt_tokenizer()
    eos = tok.eos_token_id
    pairs = [("name=The Eagle", "The Eagle is a pub."), ("area=riverside; kids=yes", "Hi.")]
    enc = encode_seq2seq(tok, pairs)
    short_source = tok(" name=The Eagle", add_special_tokens=False)["input_ids"]
    S = enc["input_ids"].shape[1]
    assert enc["input_ids"][0, : len(short_source) + 1].tolist() == short_source + [eos]
    assert enc["attention_mask"][0].tolist() == [1] * (len(short_source) + 1) + [0] * (
        S - len(short_source) - 1
    )
    short_target = tok(" Hi.", add_special_tokens=False)["input_ids"] + [eos]
    labels = enc["labels"][1].tolist()
    assert labels[: len(short_target)] == short_target
    assert set(labels[len(short_target) :]) == {-100} and enc["labels"].shape[0] == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_source": 1}, "max_source"),
        ({"max_target": "64"}, "max_target"),
        ({"max_source": 3}, "max_source=.*shorten"),
    ],
)
def test_encode_seq2seq_refuses_bad_options(kwargs, match):
    tok = gpt_tokenizer()
    with pytest.raises(ValueError, match=match):
        encode_seq2seq(tok, [("name=The Eagle; area=city centre", "A pub.")], **kwargs)


def test_encode_seq2seq_refuses_bad_pairs():
    tok = gpt_tokenizer()
    with pytest.raises(ValueError, match="at least one"):
        encode_seq2seq(tok, [])
    with pytest.raises(ValueError, match="item 1"):
        encode_seq2seq(tok, [("a", "b"), ("only a source",)])


# -- the build script ---------------------------------------------------------------------------


def test_examples_are_the_decoder_corpus_as_pairs():
    """Same descriptions and same fact sheets as tiny-gpt2's corpus; deletions keep word order."""
    module = build_script()
    examples = module.pretraining_examples(
        300, seed=0, fact_share=0.4, deletion=0.5, copy_share=0.25
    )
    corpus = synthetic_pretraining_corpus(300, seed=0, fact_share=0.4)
    kinds = [kind for kind, _, _ in examples]
    assert 60 < kinds.count("sheet") < 180 and 20 < kinds.count("copy") < 70
    for (kind, source, target), document in zip(examples, corpus, strict=True):
        if kind == "sheet":
            assert document == f"{source}\n {target}"
        elif kind == "copy":
            assert source == target == document
        else:
            assert document == target
            kept, words = source.split(" "), target.split(" ")
            assert 0 < len(kept) < len(words)
            it = iter(words)  # a subsequence: deleted words, never moved or changed
            assert all(word in it for word in kept)
    shares = [
        1 - len(s.split(" ")) / len(t.split(" ")) for kind, s, t in examples if kind == "deletion"
    ]
    assert 0.15 < sum(shares) / len(shares) < 0.35 and max(shares) < 0.6


def test_quick_build_script(tmp_path):
    out = tmp_path / "quick"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    for name in ("config.json", "generation_config.json", "model.safetensors", "README.md"):
        assert (out / name).is_file(), name
    for name in ("tokenizer.json", "tokenizer_config.json"):  # tiny-gpt2's, byte for byte
        assert (out / name).read_bytes() == (embedded_model_dir("tiny") / name).read_bytes()
    model, tok = load_seq2seq(out, dtype="float32")
    assert model.config.model_type == "bart" and model.config.encoder_layers == 1
    assert model.config.decoder_start_token_id == tok.eos_token_id == tok.pad_token_id
    assert next(model.parameters()).dtype == torch.float32
    info = json.loads((out / "build_info.json").read_text())
    assert info["steps_done"] == info["config"]["steps"] == 20 and not info["stopped_early"]
    assert info["curve"][-1]["train"] < info["curve"][0]["train"]
    assert set(info["copy_checks"]) >= {"name_copied", "slot_error_rate", "exact_copy"}
    assert 0 <= info["float16"]["max_abs_logit_diff"] < 1e-2
    card = (out / "README.md").read_text()
    assert card.startswith("# quick-bart") and "--quick" in card and "float16" in card


# -- the shipped model --------------------------------------------------------------------------


def test_embedded_seq2seq_loads_offline_frozen_in_float32(tiny_bart):
    model, tok = tiny_bart
    assert model.config.model_type == "bart" and model.config.is_encoder_decoder
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert next(model.parameters()).dtype == torch.float32  # stored in float16
    # the decoder-only family's tokenizer: a text is the same tokens for both
    from prefixlab import load_model

    _, gpt_tok = load_model("tiny")
    assert tok.get_vocab() == gpt_tok.get_vocab() and model.config.vocab_size == len(tok)
    card = (embedded_seq2seq_dir("tiny") / "README.md").read_text()
    assert card.startswith("# tiny-bart") and "float16" in card
    info = json.loads((embedded_seq2seq_dir("tiny") / "build_info.json").read_text())
    assert info["train_cpu_minutes"] <= 25.5 and info["config"]["threads"] == 1
    assert not info["stopped_early"]
    assert info["float16"]["max_abs_logit_diff"] < 0.05


def test_unknown_embedded_seq2seq_name_lists_the_embedded_ones():
    assert EMBEDDED_SEQ2SEQ_MODELS == ("tiny",)
    with pytest.raises(ValueError, match="tiny"):
        embedded_seq2seq_dir("huge")


def test_embedded_seq2seq_reads_the_facts_of_its_source(tiny_bart):
    """Fresh text (test-split MRs, a seed the build never used): a description costs less after
    its own fact sheet than after another MR's, and far less than a uniform guess."""
    import random

    model, tok = tiny_bart
    pairs = synthetic_e2e("test", n_mrs=24, refs_per_mr=1, seed=123).pairs
    rng = random.Random(5)
    mrs = [mr for mr, _ in pairs]
    texts = [text for _, text in pairs]

    def loss(sources):
        batch = encode_seq2seq(tok, list(zip(sources, texts, strict=True)))
        with torch.no_grad():
            return model(**batch).loss.item()

    own = loss([fact_sheet(mr, rng) for mr in mrs])
    other = loss([fact_sheet(mr, rng) for mr in mrs[1:] + mrs[:1]])
    assert own < other - 0.1, (own, other)
    assert own < 0.25 * torch.log(torch.tensor(float(len(tok)))).item()


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_adapters_run_and_a_short_training_lowers_validation_loss(tiny_bart, method):
    """E2E MRs as the source (a format the model never saw): prefix (all three parts) or prompt
    tuning, 30 Adam steps on 40 training MRs, lowers the loss on validation MRs."""
    model, tok = tiny_bart
    train = encode_seq2seq(tok, synthetic_e2e("train", n_mrs=40, refs_per_mr=1, seed=0).pairs)
    val = encode_seq2seq(tok, synthetic_e2e("validation", n_mrs=24, refs_per_mr=1, seed=0).pairs)
    if method == "prefix":
        adapter = Seq2SeqPrefixTuning(model, 5, init_std=0.5, seed=0)
        lr = 3e-2
    else:
        adapter = Seq2SeqPromptTuning(model, 5, init="vocab", seed=0)
        lr = 3e-1
    adapted = Seq2SeqAdaptedModel(model, adapter)

    def val_loss():
        with torch.no_grad():
            return adapted(**val).loss.item()

    out = adapted(**val)
    assert out.logits.shape == (*val["labels"].shape, len(tok))
    start = val_loss()
    opt = torch.optim.Adam(adapted.trainable_parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        rows = torch.randint(0, len(train["labels"]), (8,), generator=g)
        loss = adapted(**{k: v[rows] for k, v in train.items()}).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = val_loss()
    assert end < start - 0.2, (start, end)
    assert not any(p.requires_grad for p in model.parameters())
    ids = adapted.generate(val["input_ids"][:2], val["attention_mask"][:2], max_new_tokens=12)
    assert ids.shape[0] == 2 and ids.shape[1] <= 13 and (ids[:, 0] == tok.eos_token_id).all()
