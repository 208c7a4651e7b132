"""The shipped models (nano, tiny, mini): they load offline, model fresh text, grow in size
with one shared tokenizer, fit the data budget, and their build script runs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefixlab.e2e import synthetic_e2e
from prefixlab.paths import EMBEDDED_MODELS, data_dir, embedded_model_dir

REPO = Path(__file__).resolve().parents[1]


DATA_BUDGET_BYTES = 25e6  # all of data/: three models, their tokenizers, the synthetic CSVs


@pytest.mark.parametrize("name", EMBEDDED_MODELS)
def test_embedded_model_loads_offline_and_models_fresh_text(name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = embedded_model_dir(name)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id == tok.eos_token_id
    assert model.config.model_type == "gpt2" and model.config.vocab_size == len(tok)
    card = (path / "README.md").read_text()
    assert card.count("Tuning evidence") == 1 and card.startswith(f"# {name}-gpt2")

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


def test_family_grows_in_size_with_one_tokenizer_and_fits_the_data_budget():
    from prefixlab import load_model

    sizes = []
    vocabularies = []
    for name in EMBEDDED_MODELS:
        model, tok = load_model(name)
        assert not any(p.requires_grad for p in model.parameters())
        sizes.append(sum(p.numel() for p in model.parameters()))
        vocabularies.append(tok.get_vocab())
    assert sizes == sorted(sizes) and sizes[-1] > 10 * sizes[0], sizes
    # one corpus, one tokenizer recipe: a text means the same tokens for every size
    assert all(v == vocabularies[0] for v in vocabularies[1:])
    total = sum(f.stat().st_size for f in data_dir().rglob("*") if f.is_file())
    assert total <= DATA_BUDGET_BYTES, f"data/ holds {total / 1e6:.1f} MB"


def test_unknown_embedded_name_lists_the_family():
    with pytest.raises(ValueError, match="nano"):
        embedded_model_dir("huge")


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


def test_readme_family_table_matches_the_builds():
    """The README's table of the embedded models repeats each card's measured numbers."""
    import json
    import re

    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- model-family -->")[1].split("<!-- /model-family -->")[0]
    rows = {line.split("|")[1].strip(" `"): line for line in block.splitlines() if "-gpt2" in line}
    assert set(rows) == {f"{name}-gpt2" for name in EMBEDDED_MODELS}
    for name in EMBEDDED_MODELS:
        info = json.loads((embedded_model_dir(name) / "build_info.json").read_text())
        cells = [c.strip() for c in rows[f"{name}-gpt2"].split("|")[1:-1]]
        assert cells[2] == f"{info['n_params']:,}", (name, cells)
        assert cells[3] == f"{info['final_heldout_loss']:.3f}", (name, cells)
        checks = info["context_checks"]
        worth = checks["after_other_facts"] - checks["after_facts"]
        assert cells[4] == f"{worth:.3f}", (name, cells)
        assert re.fullmatch(r"\d+", cells[5]) and abs(int(cells[5]) - info["total_minutes"]) < 1
