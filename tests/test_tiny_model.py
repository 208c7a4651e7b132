"""The shipped tiny model: it loads offline, models fresh text, and its build script runs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import torch

from prefixlab.e2e import synthetic_e2e

REPO = Path(__file__).resolve().parents[1]


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
