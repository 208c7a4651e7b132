"""`prefixlab train`: the command-line face of `prefixlab.distributed.train_accelerated`.

    prefixlab train --model tiny --method prefix --steps 20 --out runs/tiny
    accelerate launch --num_processes 2 -m prefixlab train --model gpt2 --out runs/gpt2
    prefixlab train --recipe li-liang-e2e --out runs/li-liang   # the paper's E2E settings

Every option starts as "not given": a recipe fills in its values, then the options given on
the command line override them, each checked by RunConfig (or train_accelerated) with an error
naming the option and how to fix it. torch and transformers are imported only when training.
"""

from __future__ import annotations

import argparse

from prefixlab.recipes import RECIPES, recipe

# (flag dest, RunConfig/TrainConfig field): options that go straight into the config
CONFIG_OPTIONS = (
    ("model", "model"),
    ("data", "data"),
    ("method", "method"),
    ("prefix_length", "prefix_length"),
    ("init", "init"),
    ("init_text", "init_text"),
    ("mlp_hidden", "mlp_hidden"),
    ("lora_rank", "lora_rank"),
    ("lora_alpha", "lora_alpha"),
    ("steps", "steps"),
    ("batch_size", "batch_size"),
    ("lr", "lr"),
    ("schedule", "schedule"),
    ("warmup_steps", "warmup_steps"),
    ("weight_decay", "weight_decay"),
    ("clip_grad_norm", "clip_grad_norm"),
    ("seed", "seed"),
    ("max_length", "max_length"),
    ("n_train_mrs", "n_train_mrs"),
    ("n_val_mrs", "n_val_mrs"),
    ("eval_every", "eval_every"),
    ("eval_batches", "eval_batches"),
    ("eval_split", "eval_split"),
    ("num_beams", "num_beams"),
    ("max_new_tokens", "max_new_tokens"),
    ("data_seed", "data_seed"),
)
ALL, NONE = "all", "none"
# options that take the word 'all' or 'none' for the field's None
NULLABLE = ("n_train_mrs", "n_val_mrs", "eval_every", "eval_batches", "clip_grad_norm")


def _int_or(word: str):
    """An argparse type: an int, or `word` ('all' or 'none', kept as that string)."""

    def parse(text: str):
        if text.strip().lower() == word:
            return word
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer or '{word}', got {text!r}"
            ) from None

    parse.__name__ = f"int or '{word}'"
    return parse


def _float_or_none(text: str):
    if text.strip().lower() == NONE:
        return NONE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def add_train_parser(sub) -> argparse.ArgumentParser:
    """Add the `train` subcommand to the subparsers `sub`; returns its parser."""
    p = sub.add_parser(
        "train",
        help="train a prefix, prompt, LoRA or the full model with Hugging Face Accelerate",
        description="Train one method on one model and write out/adapter (load_adapter), "
        "out/peft, out/metrics.json. One device as it is; N GPUs with `accelerate launch "
        "--num_processes N -m prefixlab train ...` (DDP); N CPU processes with `accelerate "
        "launch --multi_gpu --num_processes N -m prefixlab train --cpu ...`. Defaults are "
        "RunConfig's; a --recipe sets its own, and options given here override both.",
        argument_default=None,
    )
    what = p.add_argument_group("what to train")
    what.add_argument("--recipe", help=f"published settings: {', '.join(RECIPES)}")
    what.add_argument(
        "--model", help="'tiny' (embedded, default), 'nano', 'mini', a hub id, a folder"
    )
    what.add_argument("--data", help="'synthetic' (default), 'e2e' (hub), or a CSV path (mr,ref)")
    what.add_argument("--method", help="prefix (default), prefix+mlp, prompt, lora, full")
    what.add_argument("--prefix-length", type=int, metavar="P", help="virtual tokens (10)")
    what.add_argument("--init", help="adapter init: random, zero, vocab, text (prompt: mean)")
    what.add_argument("--init-text", help="the text for --init text")
    what.add_argument("--mlp-hidden", type=int, help="hidden width of the prefix MLP (512)")
    what.add_argument("--lora-rank", type=int, help="LoRA rank (8)")
    what.add_argument("--lora-alpha", type=float, help="LoRA alpha (16)")
    what.add_argument("--n-train-mrs", type=_int_or(ALL), help="training MRs, or 'all'")
    what.add_argument("--n-val-mrs", type=_int_or(ALL), help="validation MRs (50), 'all'")
    what.add_argument("--data-seed", type=int, help="picks the MR subsets (0)")

    how = p.add_argument_group("how to train")
    how.add_argument("--steps", type=int, help="optimizer updates (300)")
    how.add_argument("--epochs", type=float, help="passes over the data; instead of --steps")
    how.add_argument("--batch-size", type=int, help="global batch, over all processes (16)")
    how.add_argument("--grad-accum", type=int, help="micro-batches per process and update (1)")
    how.add_argument("--lr", type=float, help="peak learning rate (default: the method's)")
    how.add_argument("--schedule", help="linear (default), cosine, constant")
    how.add_argument("--warmup-steps", type=int, help="linear warmup (default: 6%% of steps)")
    how.add_argument("--weight-decay", type=float, help="AdamW weight decay (0)")
    how.add_argument("--clip-grad-norm", type=_float_or_none, help="max gradient norm, or 'none'")
    how.add_argument("--seed", type=int, help="batch order and adapter init (0)")
    how.add_argument("--max-length", type=int, help="longest row in tokens (128)")
    how.add_argument("--mixed-precision", help="no, bf16, fp16 (GPU); default: accelerate's")
    how.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")

    run = p.add_argument_group("output, checkpoints, evaluation")
    run.add_argument("--out", required=True, help="output folder (created)")
    run.add_argument("--checkpoint-every", type=int, metavar="N", help="save state every N steps")
    run.add_argument("--resume", action="store_true", help="continue from out's last checkpoint")
    run.add_argument("--eval-every", type=_int_or(NONE), help="validate every N steps")
    run.add_argument("--eval-batches", type=_int_or(ALL), help="batches per validation")
    run.add_argument("--eval-mrs", type=_int_or(ALL), help="MRs to generate for at the end")
    run.add_argument("--eval-split", help="validation (default) or test")
    run.add_argument("--num-beams", type=int, help="beam width of that generation (1)")
    run.add_argument("--max-new-tokens", type=int, help="generation budget per MR (64)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def train_options(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """(config, keyword arguments of train_accelerated) from parsed `prefixlab train` options.

    Errors go to `parser.error` (exit code 2), naming the option."""
    from prefixlab.config import RunConfig

    given = {dest: getattr(args, dest) for dest, _ in CONFIG_OPTIONS}
    # not given: None; 'all' / 'none' given to an option that takes it: the field's None
    given = {
        k: (None if k in NULLABLE and v in (ALL, NONE) else v)
        for k, v in given.items()
        if v is not None
    }
    if args.steps is not None and args.epochs is not None:
        parser.error("give --steps or --epochs, not both.")
    config = RunConfig(eval_mrs=0)
    epochs, eval_mrs, name = None, None, None
    if args.recipe is not None:
        try:
            chosen = recipe(args.recipe)
        except ValueError as err:
            parser.error(f"--recipe: {err}")
        name, epochs, eval_mrs = chosen.name, chosen.epochs, chosen.eval_mrs
        config = config.with_(**chosen.run)
    if args.steps is not None:
        epochs = None  # the command line wins over the recipe's epochs
    if args.epochs is not None:
        if not args.epochs > 0:
            parser.error(f"--epochs must be a number > 0, got {args.epochs:g}. Try 5.")
        epochs = args.epochs
    if args.eval_mrs is not None:
        eval_mrs = args.eval_mrs
        if eval_mrs != ALL and eval_mrs < 0:
            parser.error(f"--eval-mrs must be an int >= 0 or 'all', got {eval_mrs}.")
    # Fields in a safe order (steps before warmup, method before init); each checked alone so
    # the error names the option that caused it.
    for dest, field in CONFIG_OPTIONS:
        if dest in given:
            try:
                config = config.with_(**{field: given[dest]})
            except ValueError as err:
                parser.error(f"{_flag(dest)}: {err}")
    if args.cpu:
        config = config.with_(device="cpu")
    options = {
        "epochs": epochs,
        "grad_accum": 1 if args.grad_accum is None else args.grad_accum,
        "mixed_precision": args.mixed_precision,
        "checkpoint_every": args.checkpoint_every,
        "resume": args.resume,
        "progress": not args.no_progress,
        "eval_mrs": eval_mrs,
        "recipe_name": name,
    }
    return config, options


def run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run `prefixlab train`; the exit code is 0 when training completed, 1 on a non-finite
    loss, 130 when interrupted (resume with --resume)."""
    config, options = train_options(args, parser)
    from accelerate.state import PartialState

    from prefixlab.distributed import train_accelerated

    try:
        metrics = train_accelerated(config, args.out, **options)
    except (ValueError, FileNotFoundError, ConnectionError, OSError) as err:
        parser.error(str(err))
    if PartialState().is_main_process:
        _print_summary(metrics)
    return {"nan": 1, "interrupted": 130}.get(metrics["stopped_reason"], 0)


def _print_summary(metrics: dict) -> None:
    lines = [
        f"{metrics['method']} on {metrics['model']} ({metrics['data']}): "
        f"{metrics['steps_done']} of {metrics['steps']} steps, {metrics['world_size']} "
        f"process(es), global batch {metrics['global_batch']}, "
        f"{metrics['stopped_reason']}; final loss {metrics['final_loss']:.4f}",
    ]
    if metrics["message"]:
        lines.append(metrics["message"])
    for label, path in metrics["artifacts"].items():
        lines.append(f"  {label:12s} {path}")
    for label, value in metrics["scores"].items():
        lines.append(f"  {label:12s} {value:.4g}")
    print("\n".join(lines), flush=True)
