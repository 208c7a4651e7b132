"""prefixlab.data (MR syntax, generator, loaders, token batches) and the shipped tiny model."""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefixlab.data import (
    SEPARATOR,
    SLOTS,
    E2EDataset,
    encode_for_generation,
    encode_for_training,
    format_mr,
    format_source,
    iterate_batches,
    load_e2e,
    parse_mr,
    realize,
    split_of_mr,
    synthetic_e2e,
    synthetic_pretraining_pairs,
    synthetic_sentences,
)

REPO = Path(__file__).resolve().parents[1]
DEVSET = Path(__file__).resolve().parents[2] / "shared/data/e2e/devset.csv"

EAGLE = (
    "name[The Brass Lantern], eatType[coffee shop], food[French], priceRange[£20-25], "
    "customer rating[3 out of 5], area[riverside], familyFriendly[no], near[Pelham Bridge]"
)


# --- MR syntax ---------------------------------------------------------------------------------


def test_slots_in_e2e_order():
    assert SLOTS == (
        "name", "eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near"
    )  # fmt: skip


def test_parse_format_round_trip():
    mr = parse_mr(EAGLE)
    assert list(mr) == list(SLOTS)
    assert mr["priceRange"] == "£20-25" and mr["customer rating"] == "3 out of 5"
    assert format_mr(mr) == EAGLE
    assert parse_mr(format_mr(mr)) == mr


def test_parse_keeps_written_order_and_format_makes_it_canonical():
    mr = parse_mr(" area[city centre] ,name[Oriel],  familyFriendly[yes] ")
    assert list(mr) == ["area", "name", "familyFriendly"]
    assert format_mr(mr) == "name[Oriel], area[city centre], familyFriendly[yes]"


@pytest.mark.parametrize(
    "text, named",
    [
        ("name[Oriel", "no closing ']'"),
        ("name[Oriel]], area[riverside]", "Unbalanced"),
        ("name[Ori[el], area[riverside]", "Unbalanced"),
        ("name]Oriel[", "Unbalanced"),
        ("name[Oriel], colour[red]", "'colour'"),
        ("name[Oriel], food[ ]", "slot 'food'"),
        ("name[], area[riverside]", "slot 'name'"),
        ("name[Oriel] area[riverside]", "Expected ','"),
        ("name[Oriel], name[Sable]", "twice"),
        ("", "Empty MR"),
        ("just text", "'just text'"),
    ],
)
def test_malformed_mr_names_the_bad_part(text, named):
    with pytest.raises(ValueError) as info:
        parse_mr(text)
    assert named in str(info.value)


def test_format_mr_rejects_bad_input():
    with pytest.raises(ValueError, match="'colour'"):
        format_mr({"name": "Oriel", "colour": "red"})
    with pytest.raises(ValueError, match="'area'"):
        format_mr({"name": "Oriel", "area": "  "})
    with pytest.raises(ValueError, match="may not contain"):
        format_mr({"name": "Ori]el"})


# --- the synthetic generator --------------------------------------------------------------------


def test_generator_is_deterministic_by_seed():
    a = synthetic_e2e("train", n_mrs=30, refs_per_mr=3, seed=5)
    b = synthetic_e2e("train", n_mrs=30, refs_per_mr=3, seed=5)
    c = synthetic_e2e("train", n_mrs=30, refs_per_mr=3, seed=6)
    assert a.pairs == b.pairs
    assert a.pairs != c.pairs
    assert synthetic_sentences(50, seed=1) == synthetic_sentences(50, seed=1)
    assert realize(EAGLE, 3) == realize(EAGLE, 3)


def test_realize_rejects_values_it_cannot_say():
    with pytest.raises(ValueError, match=r"area\[seaside\]"):
        realize({"name": "Oriel", "area": "seaside"}, 0)
    with pytest.raises(ValueError, match="name slot"):
        realize("area[riverside], food[Thai]", 0)
    assert "Thai" in realize("name[Oriel], food[Thai]", 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_splits_are_disjoint_by_mr(seed):
    mrs = {
        split: set(synthetic_e2e(split, n_mrs=n, refs_per_mr=1, seed=seed).mrs)
        for split, n in (("train", 600), ("validation", 150), ("test", 150))
    }
    assert not mrs["train"] & mrs["validation"]
    assert not mrs["train"] & mrs["test"]
    assert not mrs["validation"] & mrs["test"]
    assert all(split_of_mr(mr) == split for split, group in mrs.items() for mr in group)


def test_several_distinct_refs_per_mr():
    data = synthetic_e2e("validation", n_mrs=40, refs_per_mr=5)
    assert len(data) == 200 and len(data.mrs) == 40
    for mr, refs in data.grouped().items():
        assert len(refs) == 5 and len(set(refs)) == 5
        assert format_mr(parse_mr(mr)) == mr  # canonical E2E form


def test_default_sizes():
    assert len(synthetic_e2e("test").mrs) == 100
    assert len(load_e2e("synthetic", "validation", refs_per_mr=2)) == 200


def test_realizations_say_the_values():
    """Name and near appear verbatim; food, area and numbers in one of their wordings."""
    words = {
        "English": ("English", "British"),
        "Fast food": ("fast food",),
        "city centre": ("city", "centre", "central"),
        "riverside": ("river",),
    }
    data = synthetic_e2e("train", n_mrs=150, refs_per_mr=3, seed=2)
    for mr_text, ref in data.pairs:
        mr = parse_mr(mr_text)
        assert mr["name"] in ref
        if "near" in mr:
            assert mr["near"] in ref
        for slot in ("food", "area"):
            if slot in mr:
                assert any(w in ref for w in words.get(mr[slot], (mr[slot],))), (mr_text, ref)
        # "£20-25" may be "between £20 and £25"; "3 out of 5" may be "3 stars"
        numbers = re.findall(r"\d+", mr.get("priceRange", ""))
        numbers += re.findall(r"\d+", mr.get("customer rating", ""))[:1]
        assert all(number in ref for number in numbers), (mr_text, ref)


def test_generator_varies_the_wording():
    pairs = synthetic_e2e("train", n_mrs=300, refs_per_mr=1, seed=3).pairs
    openings = {
        "name" if ref.startswith(parse_mr(mr)["name"]) else " ".join(ref.split()[:2])
        for mr, ref in pairs
    }
    assert {"name", "There is", "If you"} <= openings and len(openings) >= 12
    assert {1, 2, 3} <= {ref.count(". ") + 1 for _, ref in pairs}  # sentences per reference
    negated = [ref for mr, ref in pairs if "familyFriendly[no]" in mr]
    assert {" not " in ref for ref in negated} == {True, False}  # "not ..." and "adults only"


def test_pretraining_text_never_realizes_validation_or_test_mrs():
    pairs = synthetic_pretraining_pairs(3000, seed=0)
    assert all(split_of_mr(mr) == "train" for mr, _ in pairs)
    held_out = set()
    for split in ("validation", "test"):
        held_out |= set(synthetic_e2e(split, n_mrs=300, refs_per_mr=1).mrs)
    assert not held_out & {mr for mr, _ in pairs}
    assert synthetic_sentences(3000, seed=0) == [text for _, text in pairs]
    assert not any("[" in text or SEPARATOR.strip() in text for _, text in pairs)  # no MRs


# --- datasets and subsets ------------------------------------------------------------------------


def test_subsets_by_number_of_mrs():
    data = synthetic_e2e("train", n_mrs=600, refs_per_mr=2)
    for n in (50, 100, 500):
        sub = data.subset(n, seed=1)
        assert len(sub.mrs) == n and len(sub) == 2 * n
    assert set(data.subset(50, seed=1).mrs) <= set(data.subset(100, seed=1).mrs)  # nested
    assert data.subset(50, seed=1).pairs != data.subset(50, seed=2).pairs
    assert data.subset(None).pairs == data.pairs
    with pytest.raises(ValueError, match="only 600"):
        data.subset(601)
    with pytest.raises(ValueError, match="n_mrs"):
        data.subset(0)


def test_grouped_keeps_first_seen_order():
    data = E2EDataset([("b", "1"), ("a", "2"), ("b", "3")], "toy")
    assert data.grouped() == {"b": ["1", "3"], "a": ["2"]}
    assert data.mrs == ["b", "a"] and len(data) == 3


# --- loading real E2E ---------------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_load_devset_csv():
    if not DEVSET.is_file():
        pytest.skip(f"E2E devset not found at {DEVSET}")
    data = load_e2e(DEVSET)
    assert len(data) == 4672 and len(data.mrs) == 547 and data.skipped == 0
    assert all(len(refs) >= 2 for refs in data.grouped().values())
    folder = load_e2e(DEVSET.parent, split="validation")  # release folder, file chosen by split
    assert folder.pairs == data.pairs


def test_csv_without_columns_says_what_it_found(tmp_path):
    path = write_csv(tmp_path / "bad.csv", ["meaning", "text"], [["name[Oriel]", "Oriel."]])
    with pytest.raises(ValueError, match=r"'mr' and 'ref'.*\['meaning', 'text'\]"):
        load_e2e(path)


def test_csv_bad_rows_are_skipped_counted_and_warned(tmp_path):
    rows = [
        ["name[Oriel], area[riverside]", "Oriel is by the river."],
        ["name[Oriel, area[riverside]", "Broken brackets."],
        ["name[Oriel], area[riverside]", "   "],
        ["name[Sable], colour[red]", "Unknown slot."],
        ["name[Sable], food[Chinese]", "Sable serves Chinese food."],
    ]
    path = write_csv(tmp_path / "some.csv", ["mr", "ref"], rows)
    with pytest.warns(UserWarning, match=r"skipped 3 row\(s\) \(2 malformed MR, 1 empty ref\)"):
        data = load_e2e(path)
    assert data.skipped == 3 and len(data) == 2
    assert data.skipped_reasons == {"malformed MR": 2, "empty ref": 1}


def test_hub_source_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="CSV.*synthetic"):
        load_e2e("someone/e2e_nlg")
    with pytest.raises(ConnectionError, match="tuetschek/e2e_nlg"):
        load_e2e("e2e")  # the alias of the real data on the hub
    with pytest.raises(FileNotFoundError):
        load_e2e("no_such_file.csv")
    with pytest.raises(ValueError, match="split"):
        load_e2e("synthetic", split="dev")


# --- token batches ---------------------------------------------------------------------------------


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
    mrs = ["name[Oriel], area[riverside]", EAGLE]
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


# --- the shipped tiny model ---------------------------------------------------------------------


def test_tiny_model_loads_offline_and_models_fresh_text():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefixlab.paths import tiny_model_dir

    path = tiny_model_dir()
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    assert size < 10e6
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id == tok.eos_token_id
    assert model.config.model_type == "gpt2" and model.config.vocab_size == len(tok)
    assert (path / "README.md").read_text().count("Tuning evidence") == 1

    # Fresh text: test-split MRs (never realized in pretraining), a seed the build never used.
    texts = [ref for _, ref in synthetic_e2e("test", n_mrs=20, refs_per_mr=2, seed=123).pairs]
    eos = tok.eos_token_id
    losses = []
    with torch.no_grad():
        for text in texts:
            x = torch.tensor(
                [[eos] + tok(" " + text, add_special_tokens=False)["input_ids"] + [eos]]
            )
            losses.append(model(input_ids=x, labels=x).loss.item())
    loss = sum(losses) / len(losses)
    uniform = math.log(len(tok))
    assert loss < 0.3 * uniform, f"held-out loss {loss:.2f} nats/token, uniform {uniform:.2f}"


def test_quick_build_script(tmp_path):
    out = tmp_path / "tiny"
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts/build_tiny_model.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    ):
        assert (out / name).is_file(), name
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.n_layer == 2 and tok.eos_token_id == model.config.eos_token_id
    card = (out / "README.md").read_text()
    assert "## Tuning evidence" in card and "scripts/evaluate_tiny_model.py" in card
    assert "--quick" in card


def test_first_sentence_and_count_sentences():
    from prefixlab.data import count_sentences, first_sentence

    text = "The Punter is a pub near St. Mary's. It costs £20-25! Try it?"
    assert first_sentence(text) == "The Punter is a pub near St."  # "St." ends a sentence here
    assert first_sentence("No end here") == "No end here"
    assert first_sentence("It has 3.5 stars. Go.") == "It has 3.5 stars."
    assert count_sentences(text) == 4 and count_sentences("none") == 0


def test_fact_sheets_are_not_the_e2e_format_and_keep_value_tokens():
    import random

    from prefixlab.data import FACT_KEYS, SLOTS, fact_sheet, format_mr, parse_mr

    mr = {"name": "The Copper Pot", "food": "Italian", "near": "Pelham Bridge"}
    sheet = fact_sheet(mr, random.Random(0))
    assert "[" not in sheet and "]" not in sheet
    facts = dict(part.split("=", 1) for part in sheet.split("; "))
    assert facts == {"name": "The Copper Pot", "cuisine": "Italian", "near": "Pelham Bridge"}
    assert set(FACT_KEYS) == set(SLOTS) and set(FACT_KEYS.values()) != set(SLOTS)
    assert fact_sheet(format_mr(mr), random.Random(0)) == sheet  # an MR string works too
    orders = {fact_sheet(parse_mr(format_mr(mr)), random.Random(k)) for k in range(20)}
    assert len(orders) > 1  # the order of the facts varies


def test_pretraining_corpus_mixes_sheets_and_plain_descriptions():
    from prefixlab.data import synthetic_pretraining_corpus, synthetic_pretraining_pairs

    docs = synthetic_pretraining_corpus(400, seed=3, fact_share=0.4)
    texts = [text for _, text in synthetic_pretraining_pairs(400, seed=3)]
    with_sheet = [d for d in docs if "\n" in d]
    assert 0.3 < len(with_sheet) / len(docs) < 0.5
    assert [d.split("\n ", 1)[-1] for d in docs] == texts  # the descriptions are unchanged
    assert synthetic_pretraining_corpus(400, seed=3, fact_share=0.4) == docs
    assert all("\n" not in d for d in synthetic_pretraining_corpus(50, fact_share=0))
    with pytest.raises(ValueError, match="fact_share"):
        synthetic_pretraining_corpus(5, fact_share=1.5)


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_shipped_synthetic_csvs_match_the_generator(split):
    from prefixlab.data import synthetic_e2e
    from prefixlab.paths import synthetic_e2e_dir

    shipped = load_e2e(synthetic_e2e_dir(), split)
    assert shipped.pairs == synthetic_e2e(split).pairs, (
        "data/synthetic-e2e is out of date: run python scripts/write_synthetic_e2e.py"
    )


def test_to_csv_round_trips(tmp_path):
    from prefixlab.data import synthetic_e2e

    data = synthetic_e2e("validation", n_mrs=5)
    assert load_e2e(data.to_csv(tmp_path / "x" / "dev.csv")).pairs == data.pairs
