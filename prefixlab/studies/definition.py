"""What a study is: a named grid (arms, learning-rate grids, seeds, evaluation tables) and the
rule that moves a learning-rate grid whose best rate sits on its edge.

    study = Study("prefix_vs_prompt", arms=("prompt", "prefix", "prefix+mlp"))
    study.lr_grid("prefix")          # (0.001, 0.0055, 0.03, 0.16, 0.9): 1/30x .. 30x default
    study.protocol_problems()        # [] when it meets the protocol of issue #17

An *arm* is one thing compared: a method name, or an `Arm` (a label, a method and config
fields, e.g. `Arm("prompt (vocab)", "prompt", {"init": "vocab"})`). Extra `axes` (any
RunConfig field, e.g. {"model": ("nano", "tiny", "mini")}) repeat the whole protocol at each
value: every (axis point, arm) gets its own rate tuning and its own seeds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from prefixlab._validate import did_you_mean, require_choice, require_int, require_number
from prefixlab.config import EVAL_SPLITS, PRESETS, RunConfig, TrainConfig
from prefixlab.config import preset as preset_config
from prefixlab.methods import METHODS, method

# The protocol's minimums (issue #17); a study below them still runs, but says so.
MIN_RATES = 5
MIN_LR_SPAN = 30.0
MIN_SEEDS = 5
MIN_EVAL_TABLES = 200

# Fields a study sets itself per run: not allowed in overrides, arms or axes.
_RESERVED = ("method", "lr", "seed", "eval_mrs", "eval_split")
_CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig) if f.name != "train") + tuple(
    f.name for f in fields(TrainConfig)
)


def _check_fields(where: str, names) -> None:
    for name in names:
        if name in _RESERVED:
            raise ValueError(
                f"{where} sets {name!r}, which the study sets per run; use the study's own "
                "fields (arms, lr grid, seeds, n_eval_tables, eval_split) instead."
            )
        if name not in _CONFIG_FIELDS:
            raise ValueError(
                f"{where}: {name!r} is not a RunConfig or TrainConfig field."
                f"{did_you_mean(name, _CONFIG_FIELDS)}"
            )


def round_rate(lr: float) -> float:
    """A learning rate rounded to 2 significant digits (0.005477 -> 0.0055), for readable grids."""
    return float(f"{lr:.2g}")


@dataclass(frozen=True)
class Arm:
    """One thing a study compares: `method` trained with some config fields set.

    label: its name in tables and pairs ("prompt (vocab)"); method: a RunConfig method;
    config: RunConfig / TrainConfig fields it sets (e.g. {"init": "vocab", "prefix_length": 40}).
    """

    label: str
    method: str
    config: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError(f"An arm's label must be a non-empty string, got {self.label!r}.")
        require_choice(f"method of arm {self.label!r}", self.method, METHODS)
        if not isinstance(self.config, Mapping):
            raise ValueError(f"config of arm {self.label!r} must be a dict of config fields.")
        _check_fields(f"arm {self.label!r}", self.config)
        object.__setattr__(self, "config", dict(self.config))

    @property
    def default_lr(self) -> float:
        return method(self.method).default_lr

    @property
    def tuned(self) -> bool:
        """Whether the arm trains anything (so has a learning rate to tune)."""
        return self.method != "none"

    def to_dict(self) -> dict:
        return {"label": self.label, "method": self.method, "config": dict(self.config)}


def _arm(value) -> Arm:
    if isinstance(value, Arm):
        return value
    if isinstance(value, str):
        return Arm(value, value)
    if isinstance(value, Mapping):
        return Arm(**value)
    raise ValueError(
        f"Each arm is a method name (e.g. 'prefix') or an Arm(label, method, config); got "
        f"{value!r}."
    )


def _arms(value) -> tuple[Arm, ...]:
    arms = tuple(_arm(a) for a in ((value,) if isinstance(value, (str, Arm)) else value))
    if not arms:
        raise ValueError("A study needs at least one arm, e.g. arms=('prompt', 'prefix').")
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Arm labels must differ; got {labels}. Give variants an Arm label.")
    return arms


def _seeds(name: str, value) -> tuple[int, ...]:
    values = () if isinstance(value, (int, str)) else tuple(value)
    if not values or len(set(values)) != len(values):
        raise ValueError(f"{name} must be distinct seeds, e.g. (0, 1, 2, 3, 4); got {value!r}.")
    for seed in values:
        require_int(f"each of {name}", seed, low=0)
    return values


@dataclass(frozen=True)
class Study:
    """A named grid plus its analysis (see the module docstring)."""

    name: str  # file stem of its results: results/<name>.csv, .json, .tables.npz
    arms: tuple  # method names or Arms, compared at each axis point
    description: str = ""  # one sentence: what the study asks
    preset: str = "cpu"  # the RunConfig preset the runs start from
    overrides: Mapping = field(default_factory=dict)  # RunConfig/TrainConfig fields on top
    axes: Mapping = field(default_factory=dict)  # field -> values; each value tuned on its own
    n_rates: int = MIN_RATES  # learning rates per grid, log-spaced
    lr_span: float = MIN_LR_SPAN  # the grid runs from default / lr_span to default * lr_span
    max_extensions: int = 2  # how many times an edge-best grid may grow (one rate each time)
    # grow the grid also until the best rate has this many rates on each side (0: only when it
    # is on an edge), so that forms compare over the same span around each one's best
    edge_margin: int = 0
    tuning_seeds: tuple = (0,)  # seeds per rate in stage 1
    seeds: tuple = (0, 1, 2, 3, 4)  # seeds at the best rate in stage 2
    n_eval_tables: int = 250  # held-out tables generated for in stage 2
    eval_split: str = "test"  # where those tables come from ("validation" tunes the rates)
    pairs: tuple = ()  # (arm A, arm B) label pairs: A - B is reported with its verdict

    def __post_init__(self):
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(
                f"A study's name must be lowercase letters, digits and _ (a file name), got "
                f"{self.name!r}; e.g. 'prefix_vs_prompt'."
            )
        arms = _arms(self.arms)
        labels = [a.label for a in arms]
        object.__setattr__(self, "arms", arms)
        if not isinstance(self.description, str):
            raise ValueError("description must be a string.")
        require_choice("preset", self.preset, tuple(PRESETS))
        if not isinstance(self.overrides, Mapping):
            raise ValueError("overrides must be a dict of RunConfig/TrainConfig fields.")
        _check_fields("overrides", self.overrides)
        object.__setattr__(self, "overrides", dict(self.overrides))
        if not isinstance(self.axes, Mapping):
            raise ValueError("axes must be a dict {field: [values]}, e.g. {'model': ['tiny']}.")
        _check_fields("axes", self.axes)
        axes = {}
        for name, values in self.axes.items():
            values = (values,) if isinstance(values, str) else tuple(values)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"Axis {name!r} needs distinct values, got {values!r}.")
            axes[name] = values
        object.__setattr__(self, "axes", axes)
        require_int("n_rates", self.n_rates, low=2, hint=f"The protocol asks for {MIN_RATES}.")
        require_number(
            "lr_span", self.lr_span, above=1, hint=f"The protocol asks for {MIN_LR_SPAN:g}."
        )
        require_int("max_extensions", self.max_extensions, low=0, hint="Try 2.")
        require_int("edge_margin", self.edge_margin, low=0,
                    hint="0 grows a grid only when its best rate is on an edge; e.g. 3.")  # fmt: skip
        for name in ("tuning_seeds", "seeds"):
            object.__setattr__(self, name, _seeds(name, getattr(self, name)))
        require_int(
            "n_eval_tables",
            self.n_eval_tables,
            low=1,
            hint=f"The protocol asks for {MIN_EVAL_TABLES}.",
        )
        require_choice("eval_split", self.eval_split, EVAL_SPLITS)
        if len(self.pairs) == 2 and all(isinstance(p, str) for p in self.pairs):
            raise ValueError(
                f"pairs is a list of pairs; wrap the one pair: ({tuple(self.pairs)},)."
            )
        pairs = tuple(tuple(p) for p in self.pairs)
        for pair in pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"Each pair is two different arm labels, got {pair!r}.")
            for label in pair:
                require_choice("each arm of pairs", label, labels)
        object.__setattr__(self, "pairs", pairs)
        for arm in arms:
            if arm.tuned:
                grid = self.lr_grid(arm.label)
                if len(set(grid)) != len(grid):
                    raise ValueError(
                        f"The rate grid of {arm.label!r} repeats a rate after rounding "
                        f"({grid}); use fewer rates or a wider lr_span."
                    )
        base = self.base_config()  # overrides must make a valid RunConfig, and so each point
        for point in self.points():
            base.with_(**point)

    # -- the grid --------------------------------------------------------------------------

    def arm(self, label: str) -> Arm:
        """The arm called `label`."""
        labels = [a.label for a in self.arms]
        require_choice("arm", label, labels)
        return self.arms[labels.index(label)]

    @property
    def rate_step(self) -> float:
        """The factor between neighbouring rates of a grid (and of an extension)."""
        return self.lr_span ** (2 / (self.n_rates - 1))

    def lr_grid(self, label: str) -> tuple[float, ...]:
        """The arm's learning rates: `n_rates` log-spaced from default / lr_span to
        default * lr_span (its method's default, `methods.METHOD_TABLE`), 2 significant digits."""
        arm = self.arm(label)
        if not arm.tuned:
            raise ValueError(f"Arm {label!r} trains nothing ('none'); it has no rate to tune.")
        low = math.log(arm.default_lr / self.lr_span)
        step = math.log(self.rate_step)
        return tuple(round_rate(math.exp(low + i * step)) for i in range(self.n_rates))

    def extension(self, grid, best: float, n_extended: int) -> float | None:
        """The rate to add when `best` lies on an edge of `grid` (or has fewer than
        `edge_margin` rates beyond it on one side): one step beyond that edge, the low side
        first.

        None when `best` is far enough inside the grid or the grid already grew
        `max_extensions` times.
        """
        if n_extended >= self.max_extensions:
            return None
        need = max(self.edge_margin, 1)  # an edge-best always grows
        if sum(r < best for r in grid) < need:
            return round_rate(min(grid) / self.rate_step)
        if sum(r > best for r in grid) < need:
            return round_rate(max(grid) * self.rate_step)
        return None

    # -- configs ---------------------------------------------------------------------------

    def points(self) -> list[dict]:
        """Every combination of the axis values ([{}] without axes), in order."""
        out = [{}]
        for name, values in self.axes.items():
            out = [{**point, name: value} for point in out for value in values]
        return out

    def base_config(self, preset_name: str | None = None) -> RunConfig:
        """The preset (the study's own unless `preset_name` is given) with `overrides`."""
        return preset_config(preset_name or self.preset).with_(**self.overrides)

    def run_config(self, base: RunConfig, label: str, point: Mapping, *, lr, seed: int,
                   evaluate: bool) -> RunConfig:  # fmt: skip
        """The RunConfig of one run: `base` at `point` for arm `label`; with `evaluate`
        (stage 2) it generates for `n_eval_tables` tables of `eval_split`, else for none."""
        arm = self.arm(label)
        eval_mrs = self.n_eval_tables if evaluate else 0
        return base.with_(**dict(point), **arm.config, method=arm.method, lr=lr, seed=seed,
                          eval_mrs=eval_mrs, eval_split=self.eval_split)  # fmt: skip

    # -- the protocol ----------------------------------------------------------------------

    def protocol_problems(self) -> list[str]:
        """How the study falls short of the protocol of issue #17 ([] when it does not)."""
        problems = []
        if self.n_rates < MIN_RATES:
            problems.append(f"{self.n_rates} rates per grid (the protocol asks >= {MIN_RATES})")
        if self.lr_span < MIN_LR_SPAN:
            problems.append(f"grids span 1/{self.lr_span:g}x..{self.lr_span:g}x (asks 30x)")
        if len(self.seeds) < MIN_SEEDS:
            problems.append(f"{len(self.seeds)} seeds at the best rate (asks >= {MIN_SEEDS})")
        if self.n_eval_tables < MIN_EVAL_TABLES:
            problems.append(f"{self.n_eval_tables} eval tables (asks >= {MIN_EVAL_TABLES})")
        n_val = self.base_config().n_val_mrs
        if n_val is not None and n_val < MIN_EVAL_TABLES:
            problems.append(
                f"validation loss and table gain on {n_val} validation tables (asks >= "
                f"{MIN_EVAL_TABLES}: overrides n_val_mrs={MIN_EVAL_TABLES})"
            )
        return problems

    def describe(self) -> str:
        """The design in a few lines, read from the definition (what a notebook prints under
        "how our study tests it"): arms, axes, rate grids, seeds, tables, budget, pairs."""
        base = self.base_config()

        def settings(config: Mapping) -> str:
            return ", ".join(f"{k}={v}" for k, v in config.items())

        arms = "; ".join(
            a.label + (f" ({a.method}" + (f", {settings(a.config)}" if a.config else "") + ")"
                       if a.label != a.method or a.config else "")
            for a in self.arms
        )  # fmt: skip
        lines = [self.description] if self.description else []
        lines.append(f"arms: {arms}")
        for name, values in self.axes.items():
            lines.append(
                f"axis {name}: {', '.join(map(str, values))} (each value tuned on its own)"
            )
        seeds = ", ".join(map(str, self.tuning_seeds))
        lines.append(
            f"rates: {self.n_rates} per arm, log-spaced from 1/{self.lr_span:g}x to "
            f"{self.lr_span:g}x the method's default ("
            + (f"until the best rate has {self.edge_margin} rates on each side, the grid grows "
               "one rate beyond an edge" if self.edge_margin else
               "a best rate on an edge adds one beyond it")
            + f", up to {self.max_extensions} times), chosen on validation loss at seed {seeds}"
        )  # fmt: skip
        val = "all" if base.n_val_mrs is None else base.n_val_mrs
        lines.append(
            f"at the best rate: seeds {', '.join(map(str, self.seeds))}, each generating for "
            f"{self.n_eval_tables} {self.eval_split} tables; validation loss on {val} tables"
        )
        lines.append(
            f"budget: preset {self.preset!r}, {base.train.steps} steps of batch "
            f"{base.train.batch_size}" + (f"; overrides {settings(self.overrides)}"
                                           if self.overrides else "")
        )  # fmt: skip
        if self.pairs:
            lines.append("paired differences: " + ", ".join(f"{a} - {b}" for a, b in self.pairs))
        return "\n".join(lines)

    def with_(self, **changes) -> Study:
        """A copy with fields changed (validated again), e.g. a small version for a test."""
        valid = [f.name for f in fields(self)]
        for key in changes:
            if key not in valid:
                raise ValueError(
                    f"Study has no field {key!r}.{did_you_mean(key, valid)} Fields: "
                    f"{', '.join(valid)}."
                )
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """The definition as plain JSON-ready data (`from_dict` reads it back)."""
        return {
            "name": self.name,
            "arms": [a.to_dict() for a in self.arms],
            "description": self.description,
            "preset": self.preset,
            "overrides": dict(self.overrides),
            "axes": {k: list(v) for k, v in self.axes.items()},
            "n_rates": self.n_rates,
            "lr_span": self.lr_span,
            "max_extensions": self.max_extensions,
            **({"edge_margin": self.edge_margin} if self.edge_margin else {}),
            "tuning_seeds": list(self.tuning_seeds),
            "seeds": list(self.seeds),
            "n_eval_tables": self.n_eval_tables,
            "eval_split": self.eval_split,
            "pairs": [list(p) for p in self.pairs],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Study:
        data = dict(data)
        data["arms"] = tuple(Arm(**a) for a in data.get("arms", ()))
        data["pairs"] = tuple(tuple(p) for p in data.get("pairs", ()))
        return cls(**data)
