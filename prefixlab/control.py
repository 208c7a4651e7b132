"""Control prefixes (Clive et al., 2021): a task prefix plus one attribute prefix per row.

A `ControlPrefix` holds one task prefix (shared by every row) and, for each attribute (e.g.
"length"), one small prefix per value ("one sentence", "full"). Row i of a batch sees

    [task prefix | value prefix of attribute 1 | value prefix of attribute 2 | ...]

concatenated along the key axis, in one forward pass: the rows of a batch may ask for
different values. `AdaptedModel(model, control)(ids, mask, task_ids=...)` takes each row's
values in `task_ids` (see `ControlPrefix.value_index`), and `prefixlab.train.train` passes
a "task_ids" entry of the encoded data on, so the task and attribute prefixes train jointly.

`length_attribute` and `control_accuracy` check automatically which value a generated text
follows, so control accuracy is a number, not an impression.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from prefixlab._validate import require_int
from prefixlab.e2e.sentences import count_sentences
from prefixlab.prefix import PrefixTuning

LENGTH_VALUES = ("one sentence", "several sentences")  # the values of `length_attribute`


class ControlPrefix(nn.Module):
    """A task prefix composed with one prefix per attribute value, chosen per row.

    Args:
        task: the task prefix (a direct or MLP PrefixTuning), shared by every row.
        attributes: {attribute name: {value name: PrefixTuning}}, e.g.
            {"length": {"one sentence": p1, "several sentences": p2}}. The values of one
            attribute share one prefix length; a list of prefixes names its values "0", "1".

    Shapes: `flat_rows(task_ids)` returns [B, P, L * 2 * kv_dim] with P = the task length plus
    one value length per attribute (`prefix_length`).
    """

    method = "prefix"

    def __init__(self, task: PrefixTuning, attributes: Mapping[str, Mapping | Sequence]):
        super().__init__()
        if not isinstance(task, PrefixTuning):
            raise ValueError(f"task must be a PrefixTuning, got {type(task).__name__}.")
        if not isinstance(attributes, Mapping) or not attributes:
            raise ValueError(
                "attributes must be a non-empty dict {attribute: {value: PrefixTuning}}, e.g. "
                "{'length': {'one sentence': p1, 'several sentences': p2}}."
            )
        self.task = task
        self.dims = task.dims
        self.attribute_names: list[str] = []
        self.value_names: dict[str, list[str]] = {}
        self.values = nn.ModuleList()  # one ModuleList of value prefixes per attribute
        lengths = [task.prefix_length]
        for name, values in attributes.items():
            if isinstance(values, (list, tuple)):
                values = {str(i): v for i, v in enumerate(values)}
            if not isinstance(values, Mapping) or not values:
                raise ValueError(f"Attribute {name!r} needs at least one value prefix.")
            for value, prefix in values.items():
                if not isinstance(prefix, PrefixTuning):
                    raise ValueError(
                        f"Attribute {name!r}, value {value!r}: expected a PrefixTuning, got "
                        f"{type(prefix).__name__}."
                    )
                if prefix.dims != task.dims:
                    raise ValueError(
                        f"Attribute {name!r}, value {value!r} was built for another model "
                        "than the task prefix; build every prefix for the same model."
                    )
            value_lengths = {p.prefix_length for p in values.values()}
            if len(value_lengths) != 1:
                raise ValueError(
                    f"The values of attribute {name!r} must share one prefix_length; got "
                    f"{sorted(value_lengths)}."
                )
            self.attribute_names.append(str(name))
            self.value_names[str(name)] = [str(v) for v in values]
            self.values.append(nn.ModuleList(values.values()))
            lengths.append(value_lengths.pop())
        self.lengths = lengths  # task length, then one length per attribute
        self.prefix_length = sum(lengths)

    def value_index(self, task_ids) -> torch.Tensor:
        """Each row's value of each attribute, as LongTensor [B, n_attributes].

        `task_ids` may be a LongTensor [B, n_attributes] (or [B] with one attribute) of value
        positions, a list of value names or ints (one attribute), or a list of dicts
        {attribute: value} naming every attribute.
        """
        n = len(self.attribute_names)
        if isinstance(task_ids, torch.Tensor):
            index = task_ids.long()
            if index.dim() == 1 and n == 1:
                index = index.unsqueeze(1)
        else:
            rows = [self._row_values(row) for row in task_ids]
            index = torch.tensor(rows, dtype=torch.long).reshape(len(rows), n)
        if index.dim() != 2 or index.shape[1] != n:
            raise ValueError(
                f"task_ids must give {n} value(s) per row ({self.attribute_names}); got shape "
                f"{tuple(index.shape)}. Pass [B, {n}] ints or one dict per row."
            )
        for a, name in enumerate(self.attribute_names):
            count = len(self.value_names[name])
            column = index[:, a]
            if column.numel() and (column.min() < 0 or column.max() >= count):
                raise ValueError(
                    f"Attribute {name!r} has values 0..{count - 1} "
                    f"({self.value_names[name]}); task_ids asks for {column.tolist()}."
                )
        return index

    def _row_values(self, row) -> list[int]:
        """One row's values (a dict, or a name or int when there is one attribute) -> ints."""
        if not isinstance(row, Mapping):
            if len(self.attribute_names) != 1:
                raise ValueError(
                    f"With several attributes ({self.attribute_names}) give each row as a dict "
                    "{attribute: value} or a LongTensor [B, n_attributes]."
                )
            row = {self.attribute_names[0]: row}
        missing = [a for a in self.attribute_names if a not in row]
        unknown = [a for a in row if a not in self.attribute_names]
        if missing or unknown:
            raise ValueError(
                f"A row names attributes {sorted(row)}; expected exactly {self.attribute_names}."
            )
        out = []
        for name in self.attribute_names:
            value, names = row[name], self.value_names[name]
            if isinstance(value, str):
                if value not in names:
                    raise ValueError(f"Attribute {name!r} has no value {value!r}; it has {names}.")
                value = names.index(value)
            out.append(int(value))
        return out

    def flat_rows(self, task_ids) -> torch.Tensor:
        """The composed prefix of every row. Returns [B, P, L * 2 * kv_dim]."""
        index = self.value_index(task_ids)  # [B, n_attributes]
        task = self.task.flat()  # [P_task, width]
        parts = [task.unsqueeze(0).expand(index.shape[0], -1, -1)]
        for a, values in enumerate(self.values):
            stack = torch.stack([v.flat() for v in values])  # [n_values, P_a, width]
            parts.append(stack[index[:, a].to(stack.device)])  # [B, P_a, width]
        return torch.cat(parts, dim=1)  # [B, P, width]: task, then attributes

    @torch.no_grad()
    def composed(self, values) -> PrefixTuning:
        """One row's composed prefix as a plain direct PrefixTuning (for checks and export).

        `values`: that row's values, as one entry of `task_ids` (a dict, a name or an int).
        """
        flat = self.flat_rows([values])[0]
        prefix = PrefixTuning(self.dims, self.prefix_length, init="zero")
        prefix.base_fingerprint = self.task.base_fingerprint
        prefix.weight = nn.Parameter(flat.detach().clone())
        return prefix

    def extra_repr(self) -> str:
        return f"P={self.prefix_length} (task {self.lengths[0]}), values={self.value_names}"


def build_control_prefix(
    model,
    prefix_length: int = 10,
    attributes: Mapping[str, Sequence[str]] | None = None,
    *,
    attribute_length: int = 2,
    reparam: str = "none",
    seed: int = 0,
    **prefix_kwargs,
) -> ControlPrefix:
    """A fresh ControlPrefix: a task prefix of `prefix_length` and, per attribute value, a
    prefix of `attribute_length`, all built by `PrefixTuning(model, ..., reparam=...)`.

    Args:
        attributes: {attribute: [value names]}; None = {"length": LENGTH_VALUES}.
        seed: the task prefix uses `seed`, value prefixes seed + 1, seed + 2, ...
        **prefix_kwargs: passed to every PrefixTuning (init, init_std, mlp_hidden, ...).
    """
    attributes = {"length": LENGTH_VALUES} if attributes is None else attributes
    require_int("attribute_length", attribute_length, low=1, hint="Try 2.")
    if not isinstance(attributes, Mapping) or not attributes:
        raise ValueError("attributes must be a non-empty dict {attribute: [value names]}.")
    task = PrefixTuning(model, prefix_length, reparam=reparam, seed=seed, **prefix_kwargs)
    built, k = {}, seed
    for name, values in attributes.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or len(values) < 2:
            raise ValueError(
                f"Attribute {name!r} needs a list of at least two value names, got {values!r}."
            )
        built[name] = {}
        for value in values:
            k += 1
            built[name][str(value)] = PrefixTuning(
                model, attribute_length, reparam=reparam, seed=k, **prefix_kwargs
            )
    return ControlPrefix(task, built)


def length_attribute(text: str) -> str:
    """The length value a text follows: "one sentence" (at most one sentence end) or
    "several sentences" (`prefixlab.e2e.count_sentences` counts the ends)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}.")
    return LENGTH_VALUES[0] if count_sentences(text) <= 1 else LENGTH_VALUES[1]


def control_accuracy(
    texts: Sequence[str],
    wanted: Sequence[str],
    checker: Callable[[str], str] = length_attribute,
) -> float:
    """Share of texts whose checked attribute value equals the value asked for.

    Args:
        texts: generated texts; wanted: the value each was asked to follow (same length);
        checker: text -> value (default: `length_attribute`).
    """
    if len(texts) != len(wanted):
        raise ValueError(f"{len(texts)} texts but {len(wanted)} wanted values; pass one each.")
    if not texts:
        raise ValueError("No texts to check.")
    return sum(checker(t) == w for t, w in zip(texts, wanted, strict=True)) / len(texts)


def attribute_ids(texts: Sequence[str], values: Sequence[str], checker=length_attribute):
    """Each reference text's value index (LongTensor [N]): the "task_ids" a ControlPrefix
    trains on, read from the texts themselves (e.g. their sentence count)."""
    values = list(values)
    found = [checker(t) for t in texts]
    unknown = sorted({v for v in found if v not in values})
    if unknown:
        raise ValueError(f"The checker returned {unknown}, not among the values {values}.")
    return torch.tensor([values.index(v) for v in found], dtype=torch.long)
