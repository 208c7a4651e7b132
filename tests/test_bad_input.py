"""Bad input gets a clear error or warning, not a crash deep in torch or a silent wrong result.

Context budget in `generate`, encoder-only models, a diverging run, an adapter loaded onto
another base model, a notebook that hangs.
"""

from __future__ import annotations

import json
import math
import time
import warnings

import pytest
import torch
from notebook_files import write_notebook
from tiny_models import VOCAB, P, make_adapter, make_gpt2

from prefixlab import (
    AdaptedModel,
    PrefixTuning,
    PromptTuning,
    export_peft,
    import_peft,
    load_adapter,
    model_dims,
    save_adapter,
)
from prefixlab.batching import encode_for_training
from prefixlab.config import TrainConfig
from prefixlab.train import train

# -- 1. generation past the model's context ----------------------------------------------------


def test_generate_past_the_context_names_the_budget(tiny_model, method):
    adapted = AdaptedModel(tiny_model, make_adapter(tiny_model, method))
    context = model_dims(tiny_model).n_positions  # 64
    T = context - P - 5
    ids = torch.randint(3, VOCAB, (2, T))
    with pytest.raises(ValueError, match=r"max_new_tokens <= 5") as err:
        adapted.generate(ids, max_new_tokens=20, do_sample=False)
    assert f"context of {context}" in str(err.value) and f"({T})" in str(err.value)
    # exactly filling the context is fine
    out = adapted.generate(ids, max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert out.shape == (2, T + 5)


def test_generate_checks_max_new_tokens(tiny_model):
    adapted = AdaptedModel(tiny_model, PrefixTuning(tiny_model, P))
    ids = torch.randint(3, VOCAB, (1, 5))
    for bad in (0, -3, 2.5, "8", True):
        with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1"):
            adapted.generate(ids, max_new_tokens=bad)


# -- 2. encoder-only models are not causal LMs -------------------------------------------------


def make_bert():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    return BertForMaskedLM(config).eval()


@pytest.mark.parametrize("build", ["prefix", "prompt", "adapted", "dims"])
def test_encoder_only_model_is_refused(build):
    bert = make_bert()
    with pytest.raises(ValueError, match="not a causal LM") as err:
        if build == "prefix":
            PrefixTuning(bert, P)
        elif build == "prompt":
            PromptTuning(bert, P)
        elif build == "adapted":
            AdaptedModel(bert)
        else:
            model_dims(bert.config)  # from the config alone: is_decoder=False
    assert "BertForMaskedLM" in str(err.value) or "BertConfig" in str(err.value)
    assert "AutoModelForCausalLM" in str(err.value)


def test_causal_lms_are_still_accepted(tiny_model):
    assert model_dims(tiny_model).n_layers == 2
    assert model_dims(tiny_model.config).n_layers == 2


# -- 3. a run that diverges is labelled, with advice -------------------------------------------


@pytest.fixture(scope="module")
def pretrained():
    """The embedded tiny GPT-2: a model whose untrained loss is well below ln V."""
    from prefixlab import load_model

    return load_model("tiny")


@pytest.fixture(scope="module")
def encoded(pretrained):
    from prefixlab.e2e import load_e2e

    _, tokenizer = pretrained
    pairs = list(load_e2e("synthetic", "train"))[:16]  # what the tiny model was built for
    return encode_for_training(tokenizer, pairs, 128, overflow="skip")


def tuned(pretrained, method):
    model, tokenizer = pretrained
    if method == "prompt":
        return AdaptedModel(model, PromptTuning(model, P, init="vocab", tokenizer=tokenizer))
    reparam = "mlp" if method == "prefix+mlp" else "none"
    prefix = PrefixTuning(model, P, init="vocab", tokenizer=tokenizer, reparam=reparam)
    return AdaptedModel(model, prefix)


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("kind", ["prefix", "prefix+mlp"])
def test_huge_learning_rate_is_reported_as_diverged(pretrained, kind, encoded, validate):
    config = TrainConfig(steps=12, batch_size=4, lr=1e6, eval_every=6 if validate else None)
    with pytest.warns(RuntimeWarning, match="lower the learning rate") as caught:
        history = train(
            tuned(pretrained, kind), encoded, config, val_data=encoded if validate else None,
            progress=False,
        )  # fmt: skip
    assert history.stopped_reason == "diverged"
    assert len(history) == 12  # the run finishes; its history is kept
    assert history.diverged_at is not None and 2 <= history.diverged_at <= 12
    start = history.val_loss[0] if validate else history.loss[0]  # the untrained loss
    tail = history.loss[history.diverged_at - 1 :]
    assert sum(tail) / len(tail) > 1.5 * start  # from diverged_at on, clearly worse
    if validate:
        assert history.final_val_loss > 1.5 * start
    text = str(caught[0].message)
    assert "1e+06" in text and f"{start:.3f}" in text and f"step {history.diverged_at}" in text
    assert history.message == text


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("kind, lr", [("prefix", 0.1), ("prompt", 0.1), ("prompt", 1e-12)])
def test_a_sane_run_is_not_labelled_diverged(pretrained, encoded, kind, lr, validate):
    config = TrainConfig(steps=12, batch_size=4, lr=lr, eval_every=6 if validate else None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        history = train(
            tuned(pretrained, kind), encoded, config, val_data=encoded if validate else None,
            progress=False,
        )  # fmt: skip
    assert history.stopped_reason == "completed" and history.diverged_at is None


def test_a_random_start_above_ln_v_is_not_diverged(pretrained):
    """A random prefix on unfamiliar text starts above ln V; staying there is not diverging."""
    model, tokenizer = pretrained
    pairs = [(f"name[Mill {i}], food[Thai]", f"Mill {i} serves Thai food.") for i in range(8)]
    encoded = encode_for_training(tokenizer, pairs, 64)
    adapted = AdaptedModel(model, PrefixTuning(model, P, init="random"))
    config = TrainConfig(steps=12, batch_size=4, lr=1e-12, eval_every=None)
    history = train(adapted, encoded, config, progress=False)
    assert history.loss[0] > math.log(model_dims(model).vocab_size)
    assert history.stopped_reason == "completed"


def test_history_round_trips_diverged_at():
    from prefixlab.train import History

    history = History(step=[1, 2], loss=[1.0, 9.0], stopped_reason="diverged", diverged_at=2)
    again = History.from_dict(json.loads(json.dumps(history.to_dict())))
    assert again.diverged_at == 2 and again.stopped_reason == "diverged"
    assert History.from_dict({"step": [1], "loss": [1.0]}).diverged_at is None  # old caches


# -- 4. an adapter loaded onto another base model ----------------------------------------------


def other_gpt2():
    """Same dimensions as make_gpt2(), other weights (another vocabulary, as far as it knows)."""
    return make_gpt2(seed=1)


def test_save_records_the_base_fingerprint(tiny_model, method, tmp_path):
    save_adapter(make_adapter(tiny_model, method), tmp_path, model=tiny_model)
    fingerprint = json.loads((tmp_path / "adapter.json").read_text())["base_fingerprint"]
    assert fingerprint["vocab_size"] == VOCAB and fingerprint["n_layers"] == 2
    assert len(fingerprint["embedding_checksum"]) == 16
    # the adapter remembers its base, so saving without model= records it too
    save_adapter(make_adapter(tiny_model, method), tmp_path / "b")
    again = json.loads((tmp_path / "b" / "adapter.json").read_text())["base_fingerprint"]
    assert again == fingerprint


def test_load_onto_another_base_model_warns(method, tmp_path):
    base, other = make_gpt2(), other_gpt2()
    base.name_or_path, other.name_or_path = "base-gpt2", "other-gpt2"
    save_adapter(make_adapter(base, method), tmp_path, model=base)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_adapter(tmp_path, base)  # the same model: silent
        load_adapter(tmp_path, make_gpt2())  # a fresh copy of the same weights: silent
    with pytest.warns(UserWarning, match="another base model") as caught:
        loaded = load_adapter(tmp_path, other)
    text = str(caught[0].message)
    saved = json.loads((tmp_path / "adapter.json").read_text())["base_fingerprint"]
    assert "base-gpt2" in text and "other-gpt2" in text
    assert saved["embedding_checksum"] in text
    assert loaded.base_fingerprint["embedding_checksum"] in text
    assert loaded.base_fingerprint["embedding_checksum"] != saved["embedding_checksum"]


def test_old_artifact_without_fingerprint_loads_silently(tmp_path):
    base = make_gpt2()
    save_adapter(PrefixTuning(base, P), tmp_path, model=base)
    info = json.loads((tmp_path / "adapter.json").read_text())
    del info["base_fingerprint"]
    (tmp_path / "adapter.json").write_text(json.dumps(info))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_adapter(tmp_path, other_gpt2())
    assert loaded.weight.shape == (P, 2 * 2 * 32)


def test_peft_round_trip_ignores_the_fingerprint(tiny_model, method, tmp_path):
    adapter = make_adapter(tiny_model, method)
    export_peft(adapter, tmp_path, model=tiny_model)
    assert "base_fingerprint" not in (tmp_path / "adapter_config.json").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = import_peft(tmp_path, tiny_model)
    torch.testing.assert_close(back.weight, adapter.materialize().weight)


# -- 5. a notebook that hangs ------------------------------------------------------------------


def test_hanging_notebook_fails_after_the_wall_clock_limit(tmp_path, capsys):
    from prefixlab.cli import main

    path = write_notebook(
        tmp_path / "01_hang.ipynb", "x = 1", "import time\ntime.sleep(30)", "y = 2"
    )
    start = time.monotonic()
    code = main(
        ["run-notebooks", str(path), "--out", str(tmp_path / "html"), "--notebook-timeout", "5"]
    )
    assert code == 1
    assert time.monotonic() - start < 25  # well before the 30 s sleep ends
    err = capsys.readouterr().err
    assert "01_hang.ipynb" in err and "cell 1" in err and "'import time'" in err
    assert "5 s" in err and "--notebook-timeout" in err


@pytest.mark.parametrize("bad", [0, -1, "ten", math.inf, math.nan, True])
def test_notebook_timeout_is_validated(bad, tmp_path):
    from prefixlab.runner import run_notebooks

    path = write_notebook(tmp_path / "01_ok.ipynb", "x = 1")
    with pytest.raises(ValueError, match="notebook_timeout must be"):
        run_notebooks([path], out=tmp_path, notebook_timeout=bad)


def test_cli_rejects_a_bad_notebook_timeout(tmp_path, capsys):
    from prefixlab.cli import main

    path = write_notebook(tmp_path / "01_ok.ipynb", "x = 1")
    with pytest.raises(SystemExit) as exit_:
        main(["run-notebooks", str(path), "--notebook-timeout", "0"])
    assert exit_.value.code == 2
    assert "--notebook-timeout must be a number of seconds > 0" in capsys.readouterr().err
