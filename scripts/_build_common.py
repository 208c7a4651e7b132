"""What the two pretraining scripts share (build_tiny_model.py for the decoder-only family,
build_tiny_seq2seq.py for the encoder-decoder): the learning-rate schedule, the optimizer and
its training step, the real dev split's overlap with the corpus, the build's provenance, the
files every build ends with, and the command line's output folder and flags.

A build config here is either script's `BuildConfig`: the helpers read the fields both have
(seed, threads, steps, warmup, lr, weight_decay, n_sentences).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEVSET_ENV = "PREFIXLAB_E2E_DEVSET"


def real_devset() -> Path | None:
    """The real E2E dev split, if it is on this machine: `$PREFIXLAB_E2E_DEVSET`, else
    ../shared/data/e2e/devset.csv beside the repository (or beside its parent, a worktree)."""
    env = os.environ.get(DEVSET_ENV)
    if env:
        return Path(env) if Path(env).is_file() else None
    for root in (REPO.parent, REPO.parent.parent):
        path = root / "shared" / "data" / "e2e" / "devset.csv"
        if path.is_file():
            return path
    return None


def real_mrs_in_corpus(cfg) -> dict | None:
    """How many MRs of the real E2E dev split the pretraining corpus realizes (same facts, our
    own sentences): the corpus samples MRs over E2E's values, so a few can coincide. None when
    the dev split is not on this machine."""
    from prefixlab.e2e import load_csv, synthetic_pretraining_pairs
    from prefixlab.e2e.mr import canonical_mr

    path = real_devset()
    if path is None:
        return None
    real = {canonical_mr(mr) for mr in load_csv(path).mrs}
    corpus = {canonical_mr(mr) for mr, _ in synthetic_pretraining_pairs(cfg.n_sentences, cfg.seed)}
    return {"dev_mrs": len(real), "realized_in_corpus": len(real & corpus)}


def lr_at(step: int, cfg) -> float:
    """The learning rate at `step`: linear warmup to cfg.lr, then cosine decay to cfg.lr / 10."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def start_build(cfg, out: Path) -> float:
    """Quiet transformers' notices and progress bars, seed torch, set its threads and make
    `out`. Returns the start time (time.time())."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # no per-call notices about masks and loss types
    hf_logging.disable_progress_bar()
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    return t0


def adamw(model, cfg) -> torch.optim.AdamW:
    """AdamW (betas 0.9/0.95) with weight decay on the matrices only, none on biases and
    norms."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )


def train_step(model, optimizer, batch: dict, lr: float) -> float:
    """One step at learning rate `lr` on `batch` (the model's keyword inputs, labels
    included), gradients clipped to norm 1.0. Returns the batch's loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = model(**batch).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.item()


def smoothed(running: float | None, loss: float) -> float:
    """The running loss the log shows: an exponential average with weight 0.05 on the new."""
    return loss if running is None else 0.95 * running + 0.05 * loss


def eval_due(step: int, cfg) -> bool:
    """Whether the build measures after `step` (0-based): every cfg.eval_every steps and last."""
    return (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps


def build_times(t0: float) -> dict:
    """Wall minutes since `t0`, the process's CPU minutes (summed over threads) and the
    5-minute load average now, for build_info.json."""
    return {
        "total_minutes": round((time.time() - t0) / 60, 2),
        "cpu_minutes": round(time.process_time() / 60, 1),  # summed over threads
        "load_average": round(os.getloadavg()[1], 1),  # 5-minute load at the end
    }


def provenance(cfg, command: str, packages: tuple[str, ...]) -> dict:
    """The command that made the build, the versions of python, torch and `packages`, and the
    machine with the build's threads, for build_info.json."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    versions |= {name: __import__(name).__version__ for name in packages}
    return {
        "command": command,
        "versions": versions,
        "machine": f"{platform.machine()}, {cfg.threads} CPU thread"
        + ("s" if cfg.threads > 1 else ""),
    }


def write_build(out: Path, info: dict, card: str, log) -> None:
    """Add the weights' size to `info`, write build_info.json and the model card README.md."""
    info["weights_mb"] = round((out / "model.safetensors").stat().st_size / 1e6, 2)
    (out / "build_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(card(info), encoding="utf-8")
    log(f"wrote {out} in {info['total_minutes']:.1f} min")


def build_parser(doc: str, out_default: str) -> argparse.ArgumentParser:
    """The command line every build script starts with: its description (the first paragraph
    of `doc`), --out (`out_default` says where it goes without it) and --quick."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output folder (default {out_default})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="seconds-long smoke build (temp folder)"
    )
    return parser


def given_options(args, keys: tuple[str, ...]) -> dict:
    """The options among `keys` given on the command line (not None), in `keys` order."""
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def output_folder(args, folder: str, quick_prefix: str) -> Path:
    """--out if given; for --quick a new temporary folder whose name starts with
    `quick_prefix`; else data/<folder>."""
    if args.out is not None:
        return args.out
    if args.quick:
        return Path(tempfile.mkdtemp(prefix=quick_prefix))
    return REPO / "data" / folder


def command_line(script: str, head: list[str], options: dict) -> str:
    """The command that rebuilds: `python scripts/<script>`, the `head` flags, then the given
    options as `--name value`."""
    flags = [f"--{key.replace('_', '-')} {value}" for key, value in options.items()]
    return " ".join([f"python scripts/{script}", *head, *flags])
