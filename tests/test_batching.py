"""prefixlab.batching: token batches with the loss on the target only."""

from __future__ import annotations

import pytest
import torch
from shared_data import FULL_MR

from prefixlab.batching import (
    encode_for_generation,
    encode_for_training,
    format_source,
    iterate_batches,
)
from prefixlab.e2e import synthetic_e2e, synthetic_sentences


@pytest.fixture(scope="module")
def small_tokenizer():
    """A byte-level BPE trained in a second, with no pad token (eos must stand in)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([" " + s for s in synthetic_sentences(300, seed=9)], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def test_encode_for_training_masks_source_and_pads_right(small_tokenizer):
    tok = small_tokenizer
    assert tok.pad_token_id is None
    pairs = synthetic_e2e("validation", n_mrs=3, refs_per_mr=2).pairs
    enc = encode_for_training(tok, pairs, max_length=512)
    ids, mask, labels = enc["input_ids"], enc["attention_mask"], enc["labels"]
    assert ids.shape == mask.shape == labels.shape and ids.shape[0] == 6
    eos = tok.eos_token_id
    for row, (mr, ref) in enumerate(pairs):
        source = tok(format_source(mr), add_special_tokens=False)["input_ids"]
        target = tok(" " + ref, add_special_tokens=False)["input_ids"] + [eos]
        n = len(source) + len(target)
        assert ids[row, :n].tolist() == source + target
        assert mask[row].tolist() == [1] * n + [0] * (ids.shape[1] - n)  # right padding
        assert (labels[row, : len(source)] == -100).all()
        assert labels[row, len(source) : n].tolist() == target  # eos is scored
        assert (labels[row, n:] == -100).all() and (ids[row, n:] == eos).all()
        assert tok.decode(ids[row, len(source) : n - 1]) == " " + ref


def test_encode_never_cuts_a_target(small_tokenizer):
    pairs = synthetic_e2e("test", n_mrs=4, refs_per_mr=1).pairs
    with pytest.raises(ValueError, match="max_length="):
        encode_for_training(small_tokenizer, pairs, max_length=20)
    lengths = encode_for_training(small_tokenizer, pairs, max_length=512)["attention_mask"].sum(1)
    cut = int(lengths.sort().values[1])  # keeps the two shortest pairs
    with pytest.warns(UserWarning, match="2 of 4 pairs"):
        kept = encode_for_training(small_tokenizer, pairs, max_length=cut, overflow="skip")
    assert kept["input_ids"].shape[0] == 2


def test_encode_for_generation_pads_left(small_tokenizer):
    mrs = ["name[Oriel], area[riverside]", FULL_MR]
    enc = encode_for_generation(small_tokenizer, mrs, max_length=512)
    first = small_tokenizer(format_source(mrs[0]), add_special_tokens=False)["input_ids"]
    width = enc["input_ids"].shape[1]
    assert enc["input_ids"][0, width - len(first) :].tolist() == first
    assert enc["attention_mask"][0].tolist() == [0] * (width - len(first)) + [1] * len(first)
    assert enc["attention_mask"][1].all()
    with pytest.raises(ValueError, match="max_length"):
        encode_for_generation(small_tokenizer, mrs, max_length=5)


def test_iterate_batches_is_deterministic_and_trims(small_tokenizer):
    pairs = synthetic_e2e("test", n_mrs=10, refs_per_mr=1).pairs
    enc = encode_for_training(small_tokenizer, pairs, max_length=512)
    a = list(iterate_batches(enc, 4, shuffle=True, seed=3))
    b = list(iterate_batches(enc, 4, shuffle=True, seed=3))
    assert [x["input_ids"].tolist() for x in a] == [x["input_ids"].tolist() for x in b]
    assert [len(x["input_ids"]) for x in a] == [4, 4, 2]
    assert all(x["attention_mask"][:, -1].any() for x in a)  # no all-padding column left
    rows = sorted(r for x in a for r in x["labels"][:, :5].tolist())
    assert rows == sorted(enc["labels"][:, :5].tolist())  # every row exactly once
    assert len(list(iterate_batches(enc, 4, drop_last=True))) == 2
    with pytest.raises(ValueError, match="batch_size"):
        next(iterate_batches(enc, 0))


def test_dropped_pairs_are_counted_and_warned_once(small_tokenizer):
    import warnings

    pairs = synthetic_e2e("test", n_mrs=6, refs_per_mr=1).pairs
    full = encode_for_training(small_tokenizer, pairs, max_length=512)
    assert full.n_dropped == 0
    lengths = full["attention_mask"].sum(1).sort().values
    cut = int(lengths[2])  # keeps the three shortest pairs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = encode_for_training(small_tokenizer, pairs, max_length=cut, overflow="skip")
    dropped = int((lengths > cut).sum())
    assert dropped >= 2 and kept.n_dropped == dropped and len(kept["input_ids"]) == 6 - dropped
    assert len(caught) == 1  # one warning per call, however many pairs are dropped
    message = str(caught[0].message)
    assert f"{dropped} of 6 pairs" in message and f"Pass max_length={int(lengths[-1])}" in message


def test_encoded_pairs_batch_like_a_dict_of_tensors(small_tokenizer):
    pairs = synthetic_e2e("test", n_mrs=5, refs_per_mr=1).pairs
    enc = encode_for_training(small_tokenizer, pairs, max_length=512)
    assert sorted(enc) == ["attention_mask", "input_ids", "labels"]  # the count is no key
    assert all(isinstance(value, torch.Tensor) for value in enc.values())
    batches = list(iterate_batches(enc, 2))
    assert sum(len(b["input_ids"]) for b in batches) == 5
    assert "n_dropped=0" in repr(enc)


def test_encode_options_are_checked(small_tokenizer):
    pairs = synthetic_e2e("test", n_mrs=2, refs_per_mr=1).pairs
    for bad in (0, 1.5, True, "64"):
        with pytest.raises(ValueError, match="max_length must be an int >= 2"):
            encode_for_training(small_tokenizer, pairs, max_length=bad)
        with pytest.raises(ValueError, match="max_length must be an int >= 2"):
            encode_for_generation(small_tokenizer, [pairs[0][0]], max_length=bad)
    with pytest.raises(ValueError, match="overflow must be 'error' or 'skip'"):
        encode_for_training(small_tokenizer, pairs, overflow="cut")
    with pytest.raises(TypeError, match=r"\(mr, ref\) string pairs; item 1"):
        encode_for_training(small_tokenizer, [pairs[0], pairs[1][0]])
    with pytest.raises(ValueError, match="empty"):
        encode_for_training(small_tokenizer, [])
