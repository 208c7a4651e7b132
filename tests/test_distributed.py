"""`prefixlab train` on Hugging Face Accelerate (prefixlab.distributed, prefixlab.cli_train).

What is checked, all on the CPU:
- two processes (DDP, gloo) give the losses and the prefix of one process with the same global
  batch, within 1e-5 (losses, relative) and 1e-4 (prefix entries, absolute): only the order of
  float sums differs (measured: about 1e-6);
- with one process, gradient accumulation and every method give the losses of
  `prefixlab.train.train` (same batches, loss, schedule), on a Llama-style model with grouped-
  query attention loaded from a folder, with CSV data;
- a run interrupted after a checkpoint and resumed ends with the prefix and losses of a run
  never interrupted (to float equality: the same operations in the same order);
- bad options stop with an error naming the option and the fix.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import char_tokenizer

from prefixlab.artifacts import load_adapter
from prefixlab.cli import build_parser, main
from prefixlab.cli_train import train_options
from prefixlab.config import FAST, RunConfig
from prefixlab.distributed import latest_checkpoint, train_accelerated
from prefixlab.loading import load_model
from prefixlab.runs import _encoded, build
from prefixlab.train import train

ROOT = Path(__file__).resolve().parents[1]
LOSS_RTOL = 1e-5  # losses: relative, 1 vs 2 processes
PREFIX_ATOL = 1e-4  # prefix entries (of size ~1): absolute, 1 vs 2 processes


def tiny_config(**changes) -> RunConfig:
    """The embedded tiny model on a little synthetic data: a few seconds per run."""
    fields = dict(model="tiny", data="synthetic", method="prefix", n_train_mrs=20, n_val_mrs=5,
                  eval_mrs=0, steps=12, batch_size=8, eval_every=None, device="cpu")  # fmt: skip
    return FAST.with_(**{**fields, **changes})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weight(folder: Path) -> torch.Tensor:
    return load_file(str(folder / "adapter" / "adapter.safetensors"))["weight"]


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


# -- two processes vs one ---------------------------------------------------------------------


def test_two_processes_match_one_process(tmp_path):
    args = ["--model", "tiny", "--method", "prefix", "--steps", "12", "--batch-size", "8",
            "--n-train-mrs", "20", "--n-val-mrs", "5", "--eval-every", "none", "--cpu",
            "--no-progress", "--checkpoint-every", "5"]  # fmt: skip
    two, one = tmp_path / "two", tmp_path / "one"
    # `accelerate launch --cpu` starts one process unless MPI is set up; --multi_gpu uses
    # torchrun, and on a machine without GPUs the processes talk over gloo on the CPU.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", str(_free_port())]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PREFIXLAB_PROGRESS="0")
    done = subprocess.run(
        [*launch, "-m", "prefixlab", "train", *args, "--out", str(two)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es), global batch 8, completed" in done.stdout
    assert main(["train", *args, "--out", str(one)]) == 0

    m2, m1 = _metrics(two), _metrics(one)
    assert (m2["world_size"], m2["per_process_batch"], m2["global_batch"]) == (2, 4, 8)
    assert (m1["world_size"], m1["global_batch"]) == (1, 8)
    assert m2["distributed_type"].endswith("MULTI_CPU")
    assert m2["steps_done"] == m1["steps_done"] == 12
    loss2, loss1 = torch.tensor(m2["history"]["loss"]), torch.tensor(m1["history"]["loss"])
    torch.testing.assert_close(loss2, loss1, rtol=LOSS_RTOL, atol=0)
    assert m2["final_loss"] == pytest.approx(m1["final_loss"], rel=LOSS_RTOL)
    assert loss1[-1] < loss1[0]  # it trained
    torch.testing.assert_close(_weight(two), _weight(one), rtol=0, atol=PREFIX_ATOL)
    # the artifact loads onto the model, and a checkpoint was written by the DDP run
    model, _ = load_model("tiny")
    adapter = load_adapter(two / "adapter", model)
    torch.testing.assert_close(adapter.weight.detach(), _weight(one), rtol=0, atol=PREFIX_ATOL)
    assert (two / "peft" / "adapter_config.json").is_file()
    assert latest_checkpoint(two).name == "step_000010"


# -- one process: the same run as prefixlab.train.train, for every method ---------------------


@pytest.fixture(scope="module")
def llama_lab(tmp_path_factory):
    """A tiny Llama-style model (grouped-query attention) saved with a character tokenizer,
    and an E2E-format CSV: a model loaded like a hub id, data like a user's CSV."""
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("llama_lab")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=96,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(root / "model")
    char_tokenizer().save_pretrained(root / "model")
    with open(root / "data.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["mr", "ref"])
        for i, area in enumerate(["riverside", "city centre", "riverside", "city centre"] * 2):
            writer.writerow([f"name[N{i}], area[{area}]", f"N{i} is by the {area}."])
            writer.writerow([f"name[N{i}], area[{area}]", f"N{i}, {area}."])
    return root


@pytest.mark.parametrize("method", ["prefix", "prefix+mlp", "prompt", "lora", "full"])
def test_same_run_as_the_train_loop_with_accumulation(llama_lab, tmp_path, method):
    config = FAST.with_(
        model=str(llama_lab / "model"), data=str(llama_lab / "data.csv"), method=method,
        n_train_mrs=None, n_val_mrs=None, eval_mrs=0, steps=6, batch_size=4, eval_every=None,
        max_length=64, prefix_length=3, lora_rank=2, device="cpu",
    )  # fmt: skip
    metrics = train_accelerated(config, tmp_path, grad_accum=2, progress=False)
    adapted, tokenizer = build(config)
    encoded = _encoded(config, tokenizer, "train", None, "n_train_mrs")
    history = train(adapted, encoded, config.resolved().train, progress=False)
    assert metrics["stopped_reason"] == "completed"
    assert metrics["micro_batch"] == 2 and metrics["grad_accum"] == 2
    torch.testing.assert_close(
        torch.tensor(metrics["history"]["loss"]), torch.tensor(history.loss), rtol=1e-5, atol=0
    )
    assert history.loss[-1] < history.loss[0]
    if method in ("prefix", "prefix+mlp", "prompt"):
        weight = adapted.adapter.materialize().flat().detach()
        torch.testing.assert_close(_weight(tmp_path), weight, rtol=0, atol=1e-4)
        assert (tmp_path / "peft" / "adapter_model.safetensors").is_file()
    else:
        reloaded, _ = load_model(str(tmp_path / "model"))  # LoRA merged into the weights
        ids, mask = encoded["input_ids"][:2], encoded["attention_mask"][:2]
        with torch.no_grad():
            want = adapted.model(ids, attention_mask=mask).logits
            got = reloaded(ids, attention_mask=mask).logits
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
        assert (tmp_path / "lora" / "lora.safetensors").is_file() == (method == "lora")


# -- checkpoints ------------------------------------------------------------------------------


def test_resume_after_an_interrupt_gives_the_uninterrupted_run(tmp_path):
    config = tiny_config()
    straight = train_accelerated(config, tmp_path / "straight", grad_accum=2, progress=False)

    def interrupt(history):
        if history.steps_done == 8:
            raise KeyboardInterrupt  # as Ctrl-C, between two checkpoints

    out = tmp_path / "stopped"
    first = train_accelerated(config, out, grad_accum=2, checkpoint_every=5, callback=interrupt,
                              progress=False)  # fmt: skip
    assert first["stopped_reason"] == "interrupted" and first["steps_done"] == 8
    assert "resume" in first["message"] and "step_000005" in first["message"]
    assert not (out / "adapter").exists()  # nothing half-trained is passed off as a result
    with pytest.raises(ValueError, match="resume=True"):
        train_accelerated(config, out, grad_accum=2, progress=False)
    with pytest.raises(ValueError, match="another run.*prefix_length"):
        train_accelerated(config.with_(prefix_length=4), out, resume=True, progress=False)
    resumed = train_accelerated(config, out, grad_accum=2, checkpoint_every=5, resume=True,
                                progress=False)  # fmt: skip
    assert resumed["stopped_reason"] == "completed"
    assert resumed["resumed_from_step"] == 5 and resumed["steps_done"] == 12
    assert resumed["history"]["step"] == list(range(1, 13))
    assert resumed["history"]["loss"] == straight["history"]["loss"]
    assert torch.equal(_weight(out), _weight(tmp_path / "straight"))
    assert latest_checkpoint(out).name == "step_000010"  # the older one was removed
    assert len(list((out / "checkpoints").iterdir())) == 1


# -- epochs, mixed precision, generation ------------------------------------------------------


def test_epochs_bf16_and_beam_search_scores(tmp_path):
    config = tiny_config(method="prefix+mlp", num_beams=2, max_new_tokens=12, eval_split="test")
    metrics = train_accelerated(config, tmp_path, epochs=1.5, mixed_precision="bf16",
                                eval_mrs=2, progress=False)  # fmt: skip
    per_epoch = metrics["train_rows"] // 8
    assert metrics["steps"] == metrics["steps_done"] == -(-3 * per_epoch // 2)
    assert metrics["mixed_precision"] == "bf16"
    assert metrics["final_loss"] < metrics["history"]["loss"][0]
    assert set(metrics["scores"]) >= {"bleu", "slot_error_rate", "rouge_l", "nist"}
    assert 0 <= metrics["scores"]["rouge_l"] <= 100  # the E2E challenge's other metrics
    assert 0 <= metrics["scores"]["bleu"] <= 100
    generated = json.loads((tmp_path / "generations.json").read_text())["generations"]
    assert len(generated) == 2 and all(g["text"] for g in generated)
    assert set(metrics["versions"]) >= {"prefixlab", "torch", "transformers", "accelerate"}


# -- the recipe -------------------------------------------------------------------------------


def _options(*argv):
    parser = build_parser()
    return train_options(parser.parse_args(["train", *argv]), parser)


def test_recipe_sets_the_paper_settings_and_options_override_them():
    config, options = _options("--recipe", "li-liang-e2e", "--out", "x")
    assert (config.model, config.data, config.method) == ("gpt2-medium", "e2e", "prefix+mlp")
    assert (config.prefix_length, config.mlp_hidden, config.lr) == (5, 512, 8e-5)
    assert (config.train.batch_size, config.num_beams, config.eval_split) == (10, 5, "test")
    assert options["epochs"] == 5 and options["eval_mrs"] == "all"
    assert options["recipe_name"] == "li-liang-e2e"
    config, options = _options("--recipe", "li-liang-e2e", "--model", "tiny", "--steps", "3",
                               "--lr", "1e-3", "--eval-mrs", "4", "--out", "x")  # fmt: skip
    assert (config.model, config.train.steps, config.lr) == ("tiny", 3, 1e-3)
    assert options["epochs"] is None and options["eval_mrs"] == 4
    assert config.prefix_length == 5  # what was not overridden stays the recipe's
    config, _ = _options("--out", "x", "--n-train-mrs", "all", "--clip-grad-norm", "none")
    assert config.n_train_mrs is None and config.train.clip_grad_norm is None


# -- bad options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--steps", "0"], "--steps: steps must be an int >= 1, got 0"),
        (["--steps", "5", "--epochs", "2"], "--steps or --epochs, not both"),
        (["--epochs", "0"], "--epochs must be a number > 0"),
        (["--method", "prefix-mlp"], "Did you mean 'prefix+mlp'?"),
        (["--recipe", "li-liang"], "Unknown recipe 'li-liang'. Did you mean 'li-liang-e2e'?"),
        (["--lr", "-1"], "--lr: lr must be a positive number"),
        (["--batch-size", "6", "--grad-accum", "4"], "multiple of 4 (e.g. 4)"),
        (["--mixed-precision", "fp8"], "mixed_precision must be one of ('no', 'fp16', 'bf16')"),
        (["--mixed-precision", "fp16"], "fp16' needs a GPU; on a CPU pass 'bf16' or 'no'"),
        (["--eval-mrs", "-1"], "--eval-mrs must be an int >= 0 or 'all'"),
        (["--n-train-mrs", "lots"], "expected an integer or 'all', got 'lots'"),
        (["--checkpoint-every", "0"], "checkpoint_every must be an int >= 1"),
        (["--warmup-steps", "50", "--steps", "10"], "warmup_steps < steps"),
        (["--method", "none"], "method='none' trains nothing"),
    ],
)
def test_bad_options_name_the_fix(argv, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), "--cpu", "--n-train-mrs", "5", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_bad_calls_of_the_function(tmp_path):
    config = tiny_config()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; pass a folder"):
        train_accelerated(config, tmp_path / "file")
    with pytest.raises(ValueError, match="accelerate places each process"):
        train_accelerated(config.with_(device="cuda"), tmp_path / "run")
    with pytest.raises(ValueError, match="eval_mrs must be an int >= 0"):
        train_accelerated(config, tmp_path / "run", eval_mrs="some")
    with pytest.raises(ValueError, match="config must be a RunConfig"):
        train_accelerated(config.train, tmp_path / "run")
