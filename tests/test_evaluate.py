"""Evaluation: BLEU and slot errors on hand-made cases with known answers; loss and generation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from tiny_models import char_tokenizer
from torch import nn

from prefixlab.adapted import AdaptedModel
from prefixlab.batching import encode_for_training
from prefixlab.e2e import synthetic_e2e
from prefixlab.e2e.slots import family_polarity, slot_error_rate, slot_errors
from prefixlab.evaluate import (
    corpus_bleu,
    evaluate,
    generate_texts,
    samples_table,
    score_texts,
    validation_loss,
)
from prefixlab.prefix import PrefixTuning
from prefixlab.prompt import PromptTuning

# -- BLEU ------------------------------------------------------------------------------------


def test_bleu_known_value():
    # n-gram precisions 5/6, 3/5, 2/4, 1/3 and equal lengths (no brevity penalty).
    bleu = corpus_bleu(["the cat sat on the mat"], [["the cat sat on a mat"]])
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert bleu == pytest.approx(expected, abs=0.01)


def test_bleu_takes_the_best_of_several_references():
    hyps = ["the cat sat on the mat", "a dog ran in the park"]
    refs = [["a bird flew away", "the cat sat on the mat"], ["a dog ran in the park"]]
    assert corpus_bleu(hyps, refs) == pytest.approx(100.0)
    # the order of references does not matter, and unequal counts per hypothesis are fine
    assert corpus_bleu(hyps, [refs[0][::-1], refs[1]]) == pytest.approx(100.0)


def test_bleu_disjoint_is_zero():
    assert corpus_bleu(["x y z w"], [["a b c d"]]) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "hyps, refs, match",
    [
        (["a"], [["a"], ["b"]], "one list of references per hypothesis"),
        (["a"], [[]], "at least one reference"),
        ([], [], "No hypotheses"),
        ([3], [["a"]], "must be strings"),
    ],
)
def test_bleu_bad_input(hyps, refs, match):
    with pytest.raises(ValueError, match=match):
        corpus_bleu(hyps, refs)


# -- slot errors -----------------------------------------------------------------------------

MR = "name[The Eagle], eatType[pub], area[riverside], familyFriendly[no]"


@pytest.mark.parametrize(
    "text, missing, contradicted",
    [
        ("The Eagle is a riverside pub. It is not family-friendly.", [], []),
        ("The Eagle is a bar by the river, for adults only.", [], []),
        ("The Eagle is a pub in the city centre that welcomes children.", [],
         ["area", "familyFriendly"]),
        ("Eagle is a pub.", ["name", "area", "familyFriendly"], []),
        ("The Eagle, a coffee shop by the river, is not suitable for children.", [],
         ["eatType"]),
        ("Children are not welcome at The Eagle, a riverside pub.", [], []),
    ],
)  # fmt: skip
def test_slot_errors_hand_made(text, missing, contradicted):
    errors = slot_errors(MR, text)
    assert errors["missing"] == missing
    assert errors["contradicted"] == contradicted


@pytest.mark.parametrize(
    "mr, text, expected",
    [
        ("name[X], customer rating[1 out of 5]", "X is rated 1 out of 5 stars.", "ok"),
        ("name[X], customer rating[5 out of 5]", "X is rated 1 out of 5 stars.", "contradicted"),
        ("name[X], customer rating[high]", "X is a highly rated place.", "ok"),
        ("name[X], customer rating[high]", "X has a low customer rating.", "contradicted"),
        ("name[X], priceRange[£20-25]", "Meals at X cost between £20 and £25.", "ok"),
        ("name[X], priceRange[£20-25]", "Meals at X cost under £20.", "contradicted"),
        ("name[X], priceRange[cheap]", "X is a place.", "missing"),
        ("name[X], food[English]", "X serves British food.", "ok"),
        ("name[X], food[Italian]", "X serves French food.", "contradicted"),
        ("name[X], familyFriendly[yes]", "X is not far from the park and is kid friendly.", "ok"),
    ],
)
def test_closed_slot_values(mr, text, expected):
    errors = slot_errors(mr, text)
    slot = mr.split(", ")[1].split("[")[0]
    verdict = next((k for k in ("missing", "contradicted") if slot in errors[k]), "ok")
    assert verdict == expected


def test_added_slots_and_names_do_not_count():
    # "River" in the name and "Café" in the landmark are blanked before closed slots are checked
    errors = slot_errors("name[River Bar], near[Café Rouge]", "River Bar is near Café Rouge.")
    assert errors == {"missing": [], "contradicted": [], "added": []}
    errors = slot_errors("name[X]", "X is a cheap Italian pub.")
    assert errors["added"] == ["eatType", "food", "priceRange"]


def test_family_polarity():
    assert family_polarity("It is family friendly.") == [True]
    assert family_polarity("It is non-family-friendly.") == [False]
    assert family_polarity("It is not cheap, but kids are welcome.") == [True]
    assert family_polarity("Kids aren't welcome.") == [False]
    assert family_polarity("No mention here.") == []


def test_slot_error_rate_counts():
    mrs = ["name[A], area[riverside], eatType[pub]", "name[B], food[Chinese]"]
    texts = ["A is a pub in the city centre.", "C serves Chinese food."]
    result = slot_error_rate(mrs, texts)
    assert result["slots"] == 5
    assert result["contradicted"] == 1  # area
    assert result["missing"] == 1  # name B
    assert result["slot_error_rate"] == pytest.approx(2 / 5)
    assert result["texts_with_errors"] == 2


def test_synthetic_references_have_no_slot_errors():
    data = synthetic_e2e("validation", n_mrs=40, refs_per_mr=3, seed=7)
    mrs, refs = zip(*data.pairs, strict=True)
    result = slot_error_rate(mrs, refs)
    assert (result["missing"], result["contradicted"], result["added"]) == (0, 0, 0)


def test_slot_error_rate_bad_input():
    with pytest.raises(ValueError, match="one text per MR"):
        slot_error_rate(["name[A]"], [])
    with pytest.raises(ValueError, match="Unknown slot"):
        slot_errors("colour[red]", "red")


# -- samples table ---------------------------------------------------------------------------


def test_samples_table():
    mrs = ["name[A], area[riverside]", "name[B]"]
    table = samples_table(
        mrs,
        {"prefix": ["A is by the river.", "B."], "prompt": ["A is central.", "C."]},
        references=[["A is by the river.", "x"], "B is nice."],
        mark_errors=True,
    )
    assert list(table.columns) == [
        "mr", "reference", "prefix", "prefix errors", "prompt", "prompt errors",
    ]  # fmt: skip
    assert table["reference"].tolist() == ["A is by the river.", "B is nice."]
    assert table["prefix errors"].tolist() == ["", ""]
    assert table["prompt errors"].tolist() == ["contradicted area", "missing name"]
    with pytest.raises(ValueError, match="has 1 texts for 2 MRs"):
        samples_table(mrs, {"x": ["only one"]})


# -- loss and generation on the tiny random fixtures ------------------------------------------

PAIRS = [("name[A], area[riverside]", "A is by the river."), ("name[Bee]", "Bee is a pub."),
         ("name[C], food[Chinese]", "C serves Chinese food.")]  # fmt: skip


def adapted_for(model, method):
    adapter = PrefixTuning(model, 3) if method == "prefix" else PromptTuning(model, 3)
    return AdaptedModel(model, adapter)


def test_validation_loss_is_token_weighted(tiny_model, method):
    tok = char_tokenizer()
    encoded = encode_for_training(tok, PAIRS, 60)
    adapted = adapted_for(tiny_model, method)
    whole = validation_loss(adapted, encoded, batch_size=3)
    in_pieces = validation_loss(adapted, encoded, batch_size=2)  # batches of 2 and 1 rows
    assert in_pieces == pytest.approx(whole, rel=1e-5)
    with torch.no_grad():
        direct = adapted(**encoded).loss.item()
    assert whole == pytest.approx(direct, rel=1e-5)
    first = validation_loss(adapted, encoded, batch_size=1, max_batches=1)
    assert first == pytest.approx(validation_loss(adapted, {k: v[:1] for k, v in encoded.items()}))


def test_generation_batched_equals_one_by_one(tiny_model, method):
    tok = char_tokenizer()
    adapted = adapted_for(tiny_model, method)
    mrs = [mr for mr, _ in PAIRS]
    together = generate_texts(adapted, tok, mrs, max_new_tokens=6, batch_size=3)
    alone = generate_texts(adapted, tok, mrs, max_new_tokens=6, batch_size=1)
    assert together == alone
    beams = generate_texts(adapted, tok, mrs, max_new_tokens=6, num_beams=3, batch_size=2)
    assert len(beams) == 3 and all(isinstance(t, str) for t in beams)


class _Scripted(nn.Module):
    """Stands in for an AdaptedModel whose generate appends fixed tokens to every prompt."""

    def __init__(self, new_tokens):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.new_tokens = torch.tensor(new_tokens)

    def generate(self, input_ids, attention_mask, **kwargs):
        tail = self.new_tokens.expand(input_ids.shape[0], -1)
        return torch.cat([input_ids, tail], dim=1)


def test_generation_strips_prompt_and_cuts_at_eos():
    tok = char_tokenizer()
    ids = tok(" Hi there", add_special_tokens=False)["input_ids"]
    scripted = _Scripted(ids + [tok.eos_token_id] + ids)
    texts = generate_texts(scripted, tok, ["name[A]", "name[Longer]"], max_new_tokens=30)
    assert texts == ["Hi there", "Hi there"]


def test_generation_checks_the_context(tiny_model):
    tok = char_tokenizer()
    with pytest.raises(ValueError, match="max_new_tokens <="):
        generate_texts(adapted_for(tiny_model, "prefix"), tok, ["name[A]"], max_new_tokens=60)
    with pytest.raises(ValueError, match="num_beams must be an int >= 1"):
        generate_texts(adapted_for(tiny_model, "prefix"), tok, ["name[A]"], num_beams=0)


def test_evaluate_combines_everything(tiny_model):
    tok = char_tokenizer()
    adapted = adapted_for(tiny_model, "prefix")
    refs = {mr: [ref] for mr, ref in PAIRS}
    result = evaluate(adapted, tok, refs, encoded=encode_for_training(tok, PAIRS, 60),
                      max_new_tokens=5)  # fmt: skip
    assert result["mrs"] == list(refs) and len(result["texts"]) == 3
    assert math.isfinite(result["val_loss"]) and 0 <= result["bleu"] <= 100
    assert 0 <= result["slot_error_rate"] <= 1 and result["slots"] == 5
    with pytest.raises(ValueError, match="references must be"):
        evaluate(adapted, tok, [])


def test_score_texts_is_bleu_plus_slot_errors():
    mrs = ["name[A], area[riverside], eatType[pub]", "name[B], food[Chinese]"]
    texts = ["A is a pub in the city centre.", "C serves Chinese food."]
    refs = {
        mrs[0]: ["A is a pub by the river."],
        mrs[1]: ["B serves Chinese food.", "B is Chinese."],
    }
    scores = score_texts(mrs, texts, refs)
    assert scores == {
        "bleu": corpus_bleu(texts, [refs[mr] for mr in mrs]),
        **slot_error_rate(mrs, texts),
    }
    assert scores["slot_error_rate"] == pytest.approx(2 / 5) and 0 < scores["bleu"] < 100
    assert score_texts(mrs, texts, [refs[mr] for mr in mrs]) == scores  # lists in MR order
    perfect = score_texts(mrs, [refs[mr][0] for mr in mrs], refs)
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["missing"] == 0


def test_score_texts_bad_input():
    mrs, texts = ["name[A]", "name[B]"], ["A.", "B."]
    with pytest.raises(ValueError, match="one text per MR"):
        score_texts(mrs, texts[:1], {"name[A]": ["A."], "name[B]": ["B."]})
    with pytest.raises(ValueError, match="no entry for 1 MR.*'name\\[B\\]'"):
        score_texts(mrs, texts, {"name[A]": ["A."]})
    with pytest.raises(ValueError, match="2 reference lists"):
        score_texts(["name[A]"], ["A."], [["A."], ["B."]])
    with pytest.raises(TypeError, match=r"wrap it: \[reference\]"):
        score_texts(mrs, texts, {"name[A]": "A.", "name[B]": "B."})
    with pytest.raises(TypeError, match="references must be"):
        score_texts(mrs, texts, 3)
    with pytest.raises(TypeError, match="lists of strings"):
        score_texts("name[A]", "A.", [["A."]])


def test_evaluate_scores_through_score_texts(tiny_model):
    tok = char_tokenizer()
    refs = {mr: [ref] for mr, ref in PAIRS}
    result = evaluate(adapted_for(tiny_model, "prompt"), tok, refs, max_new_tokens=5)
    scores = score_texts(result["mrs"], result["texts"], refs)
    assert set(result) == {"val_loss", "mrs", "texts", *scores}
    assert {key: result[key] for key in scores} == scores and result["val_loss"] is None


def test_validation_loss_bad_input(tiny_model):
    with pytest.raises(ValueError, match="encode_for_training"):
        validation_loss(adapted_for(tiny_model, "prefix"), {"input_ids": torch.ones(1, 2)})
    encoded = encode_for_training(char_tokenizer(), PAIRS, 60)
    with pytest.raises(ValueError, match="max_batches must be an int >= 1 or None"):
        validation_loss(adapted_for(tiny_model, "prefix"), encoded, max_batches=0)


def test_mismatched_pairs_rotate_the_tables():
    from prefixlab.evaluate import mismatched_pairs

    pairs = [("a", "A1"), ("a", "A2"), ("b", "B1"), ("c", "C1")]
    assert mismatched_pairs(pairs) == [("b", "A1"), ("b", "A2"), ("c", "B1"), ("a", "C1")]
    with pytest.raises(ValueError, match="2 distinct"):
        mismatched_pairs([("a", "A1"), ("a", "A2")])
    with pytest.raises(ValueError, match="shift"):
        mismatched_pairs(pairs, shift=3)


def test_table_gain_is_wrong_minus_right():
    from prefixlab import AdaptedModel, load_model
    from prefixlab.e2e import synthetic_e2e
    from prefixlab.evaluate import table_gain

    model, tokenizer = load_model("tiny")
    pairs = synthetic_e2e("validation", n_mrs=6, refs_per_mr=2).pairs
    out = table_gain(AdaptedModel(model), tokenizer, pairs, batch_size=4)
    assert out["table_gain"] == pytest.approx(out["loss_wrong_mr"] - out["loss_right_mr"])
    assert 0 < out["loss_right_mr"] < 10 and 0 < out["loss_wrong_mr"] < 10


# -- per-table statistics ---------------------------------------------------------------------


def test_bleu_statistics_sum_to_corpus_bleu_on_any_subset():
    from prefixlab.evaluate import BLEU_STATISTICS, bleu_from_statistics, bleu_statistics

    grouped = synthetic_e2e("validation", n_mrs=12, refs_per_mr=3).grouped()
    refs = list(grouped.values())
    # partial copies of a reference, a text with no match, one with no 4-gram
    hyps = [r[0].split(".")[0] for r in refs[:9]] + ["zzz qqq", "a b", refs[11][1]]
    stats = bleu_statistics(hyps, refs)
    assert stats.shape == (12, len(BLEU_STATISTICS)) and stats.dtype.kind == "i"
    for rows in (range(12), [0], [3, 9], [9, 10], range(0, 12, 4)):
        rows = list(rows)
        expected = corpus_bleu([hyps[i] for i in rows], [refs[i] for i in rows])
        assert float(bleu_from_statistics(stats[rows].sum(0))) == pytest.approx(expected, abs=1e-9)
    # vectorized over leading axes: [2, 10] sums -> 2 values
    both = bleu_from_statistics(np.stack([stats[:6].sum(0), stats[6:].sum(0)]))
    assert both.shape == (2,) and both[0] != both[1]
    with pytest.raises(ValueError, match="10 columns"):
        bleu_from_statistics(np.zeros(4))


def test_table_scores_add_up_to_score_texts():
    from prefixlab.evaluate import table_scores

    data = synthetic_e2e("validation", n_mrs=5, refs_per_mr=2)
    grouped = data.grouped()
    mrs = list(grouped)
    texts = [grouped[mr][0] for mr in mrs[:3]] + ["A place.", "Nothing here."]
    per = table_scores(mrs, texts, grouped)
    total = score_texts(mrs, texts, grouped)
    errors = sum(len(t["missing"]) + len(t["contradicted"]) for t in per)
    assert errors / sum(t["slots"] for t in per) == pytest.approx(total["slot_error_rate"])
    assert errors > 0 and all(len(t["bleu_stats"]) == 10 for t in per)


def test_table_gain_per_table_adds_up(tiny_model):
    from prefixlab.evaluate import row_losses, table_gain

    tokenizer = char_tokenizer()
    adapted = AdaptedModel(tiny_model)
    pairs = [("name[Aa], food[Thai]", "Aa serves Thai."), ("name[Aa], food[Thai]", "Thai at Aa."),
             ("name[Bb], area[riverside]", "Bb is by the river."),
             ("name[Cc], near[Dd]", "Cc, near Dd, " + "very " * 12 + "long.")]  # fmt: skip
    with pytest.warns(UserWarning, match="1 of 4 pairs are longer"):
        encoded = encode_for_training(tokenizer, pairs, 60, overflow="skip")
    assert encoded.kept == [0, 1, 2] and encoded.n_dropped == 1
    sums, tokens = row_losses(adapted, encoded, batch_size=2)
    assert sums.shape == tokens.shape == (3,)
    assert sums.sum() / tokens.sum() == pytest.approx(validation_loss(adapted, encoded, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = table_gain(adapted, tokenizer, pairs, max_length=60, batch_size=2,
                         overflow="skip", per_table=True)  # fmt: skip
    per = out["per_table"]
    assert [t["mr"] for t in per] == ["name[Aa], food[Thai]", "name[Bb], area[riverside]"]
    right = np.array([t["right"] for t in per]).sum(0)
    wrong = np.array([t["wrong"] for t in per]).sum(0)
    assert right[0] / right[1] == pytest.approx(out["loss_right_mr"])
    assert wrong[0] / wrong[1] - right[0] / right[1] == pytest.approx(out["table_gain"])
    assert right[1] == wrong[1] == tokens.sum()  # the same target tokens, read twice
    with pytest.raises(ValueError, match="leave right_loss=None"):
        table_gain(adapted, tokenizer, pairs[:3], max_length=60, right_loss=1.0, per_table=True)


def test_other_e2e_metrics_rouge_l_and_nist():

    import pytest
    from nltk.translate.nist_score import corpus_nist

    from prefixlab.evaluate import other_e2e_metrics

    same = other_e2e_metrics(["a pub near the river"], [["a pub near the river"]])
    assert same["rouge_l"] == pytest.approx(100.0)
    assert other_e2e_metrics(["a pub"], [["a pub"]])["nist"] is None  # too short for 5-grams
    # LCS "the cat sat" = 3 tokens: precision 3/3, recall 3/4, F = 6/7; the best reference counts
    pair = other_e2e_metrics(["the cat sat"], [["the cat sat down", "a dog"]])
    assert pair["rouge_l"] == pytest.approx(100 * 6 / 7)
    texts = ["the cat sat on the mat", "a pub in the city centre"]
    refs = [["the cat sat on a mat"], ["there is a pub in the city centre", "a city centre pub"]]
    nist = other_e2e_metrics(texts, refs)["nist"]
    assert nist == pytest.approx(corpus_nist([[r.split() for r in rs] for rs in refs],
                                             [t.split() for t in texts], n=5))  # fmt: skip
    assert nist > 0
    with pytest.raises(ValueError, match="one list of references per text"):
        other_e2e_metrics(["a"], [])
    with pytest.raises(ValueError, match="at least one reference"):
        other_e2e_metrics(["a"], [[]])


def test_other_e2e_metrics_say_which_package_is_missing(monkeypatch):
    import sys

    from prefixlab.evaluate import other_e2e_metrics

    monkeypatch.setitem(sys.modules, "rouge_score", None)  # import fails
    text = "a family friendly pub near the river in the city centre"
    out = other_e2e_metrics([text], [[text]])
    assert out["rouge_l"] is None and out["missing"] == "rouge-score" and out["nist"] > 0
