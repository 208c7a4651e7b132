"""Tiny random models and token batches for the tests (imported by conftest.py and tests).

Kept out of conftest.py so that tests can import them by a unique module name: pytest loads
notebooks/conftest.py too, and two modules named "conftest" would shadow each other.
"""

from __future__ import annotations

import string

import torch

VOCAB = 97


def _freeze(model):
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def make_gpt2(seed: int = 0, attn_implementation: str = "eager"):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        attn_implementation=attn_implementation,
    )
    return _freeze(GPT2LMHeadModel(config))


def make_llama(seed: int = 0, attn_implementation: str = "eager"):
    """Llama-style model with grouped-query attention (4 query heads share 2 key/value heads)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        attn_implementation=attn_implementation,
    )
    return _freeze(LlamaForCausalLM(config))


MAKERS = {"gpt2": make_gpt2, "llama": make_llama}


P = 4  # the prefix length of the adapters `make_adapter` builds by default


def make_adapter(model, method: str, prefix_length: int = P, **kw):
    """A PrefixTuning (method "prefix") or PromptTuning (otherwise) of `prefix_length` on
    `model`; `kw` go to the adapter (seed, init, ...)."""
    from prefixlab import PrefixTuning, PromptTuning

    cls = PrefixTuning if method == "prefix" else PromptTuning
    return cls(model, prefix_length, **kw)


def batch(
    batch_size: int = 3, length: int = 7, seed: int = 0, pad_right: int = 0, pad_left: int = 0
):
    """Random token batch; the last row gets `pad_right` or `pad_left` padding positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch_size, length), generator=g)
    mask = torch.ones_like(ids)
    if pad_right:
        ids[-1, -pad_right:] = 0
        mask[-1, -pad_right:] = 0
    if pad_left:
        ids[-1, :pad_left] = 0
        mask[-1, :pad_left] = 0
    return ids, mask


def char_tokenizer():
    """One token per character (77 ids, fits the fixtures' vocabulary of 97); pad 0, bos 1, eos 2."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = string.ascii_letters + string.digits + " .,[]|'-£!?"
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3}
    vocab.update({c: i + 4 for i, c in enumerate(chars)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
        unk_token="<unk>",
    )  # fmt: skip


def save_lab_gpt2(folder) -> None:
    """A seeded 2-layer GPT-2 (vocab 97, width 32) and the character tokenizer saved in
    `folder`: the model folder of the run tests' tiny lab."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=97, n_positions=96, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=1, eos_token_id=2, pad_token_id=0)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)


def write_lab_csv(path) -> None:
    """An E2E-format CSV of 6 MRs with two references each (the tiny lab's data)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["mr", "ref"])
        for i, area in enumerate(["riverside", "city centre"] * 3):
            writer.writerow([f"name[N{i}], area[{area}]", f"N{i} is by the {area}."])
            writer.writerow([f"name[N{i}], area[{area}]", f"N{i}, {area}."])
