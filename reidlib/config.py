"""Typed recipes: dataclasses loaded from small YAML files, one per paper recipe.

A recipe file may start with ``base: <recipe name>`` to inherit another recipe and override a few
fields (nested mappings merge, lists and scalars replace); ``base: [<name>, <name>, ...]`` inherits
several in order, each over the ones before (a paper recipe, then a shared budget such as
``budgets/market1501_cpu``); a base given as a ``.yaml`` path is read from the folder of the file that
names it. Unknown keys, wrongly typed values and values outside their range
(``Annotated[..., Bounds(...)]`` beside each field) are refused with the dotted key that is wrong, when
the recipe is loaded; ``--set a.b=value`` overrides go through the same checks, and a whole section
(``--set 'optim={epochs: 5}'``) merges into the recipe's like a recipe file does. ``model.options``
are checked against the chosen network's constructor: its parameter names and type hints.

The YAML is read literally (:func:`yaml_load`): YAML 1.2 scalars (``010`` is 10, ``0o10`` is 8,
``1:00`` and ``no`` are strings, ``1e-3`` a number), no aliases (``*name``: a few hundred bytes of
aliases can expand to gigabytes), no key twice. An error shows at most 200 characters of a value.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from reidlib.models import MODELS, model_options
from reidlib.utils.checks import Bounds
from reidlib.utils.errors import shown
from reidlib.utils.paths import recipes_dir

LOSS_KINDS = ("ce", "triplet", "center")

# Recipe keys that change how a run executes, not what it trains: a resume may change them (and
# says so in params.json), and two folders that differ only in them hold the same run.
EXECUTION_KEYS: tuple[tuple[str, ...], ...] = (
    ("name",),
    ("description",),
    ("data", "workers"),
    ("data", "cache_images"),
    ("data", "test_batch_size"),
    ("train", "progress"),
    ("train", "checkpoint_every"),
    ("train", "keep_checkpoint"),
    ("train", "snapshot_epochs"),  # extra weight files: the training is the same
    ("train", "device"),
    ("train", "threads"),  # CPU threads: speed, not what is trained
)


class ConfigError(ValueError):
    """A recipe key or value is not what the dataclasses below declare."""


Positive = Annotated[int, Bounds(1)]
NonNegative = Annotated[int, Bounds(0)]
PositiveNumber = Annotated[float, Bounds(0.0, low_open=True)]
NonNegativeNumber = Annotated[float, Bounds(0.0)]
Probability = Annotated[float, Bounds(0.0, 1.0)]
UnitInterval = Annotated[float, Bounds(0.0, 1.0, high_open=True)]  # [0, 1)


class Variant(StrEnum):
    """An evaluation variant: plain features, flip-averaged, k-reciprocal re-ranked, or both."""

    PLAIN = "plain"
    FLIP = "flip"
    RERANK = "rerank"
    FLIP_RERANK = "flip+rerank"

    @classmethod
    def of(cls, *, flip: bool, rerank: bool) -> Variant:
        return _VARIANT_OF[(bool(flip), bool(rerank))]

    @classmethod
    def parse(cls, names: Any, key: str) -> list[Variant]:
        """``names`` as variants; a ValueError naming ``key`` and the known names otherwise."""
        unknown = sorted(str(n) for n in names if n not in cls._value2member_map_)
        if unknown:
            raise ValueError(f"{key}: unknown {unknown}; use {', '.join(cls)}")
        return [cls(n) for n in names]

    @property
    def flip(self) -> bool:
        return self in (Variant.FLIP, Variant.FLIP_RERANK)

    @property
    def rerank(self) -> bool:
        return self in (Variant.RERANK, Variant.FLIP_RERANK)


_VARIANT_OF = {(v.flip, v.rerank): v for v in Variant}


@dataclass(frozen=True)
class LossTerm:
    """One weighted loss on one branch: ``weight * kind(outputs[branch])``.

    kind "ce" uses the branch's logits, "triplet" and "center" its pre-BN feature ``feat``.
    """

    branch: str  # e.g. "global", "bs", "ms", "ie_b2", "local"
    kind: str  # "ce" | "triplet" | "center"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.branch, str) or not self.branch or "." in self.branch:
            raise ValueError(f"LossTerm.branch must be a non-empty name without '.', got {self.branch!r}")
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"LossTerm.kind must be one of {LOSS_KINDS}, got {self.kind!r}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (w > 0 and math.isfinite(w)):
            raise ValueError(
                f"LossTerm.weight must be a finite number > 0, got {w!r} ({self.branch}/{self.kind})"
            )

    @property
    def name(self) -> str:
        return f"{self.branch}/{self.kind}"


@dataclass
class DataConfig:
    dataset: str = "market1501"  # a name known to reidlib.data.datasets.load_dataset
    root: str | None = None  # None: reidlib.utils.paths.data_root() / <dataset folder>
    height: Positive = 256  # input size, both papers' 256x128 (Deep Miner: 384x128)
    width: Positive = 128
    num_identities: Annotated[int, Bounds(2)] = 16  # P identities per batch (both papers: 16)
    num_instances: Positive = 4  # K images per identity (both papers: 4)
    flip_p: Probability = 0.5  # random horizontal flip
    pad: NonNegative = 10  # pad then random-crop back to size
    erasing_p: Probability = 0.5  # random erasing (Zhong et al.), area 0.02-0.4, aspect >= 0.3
    workers: NonNegative = 4  # DataLoader workers (0 = load in the main process)
    cache_images: bool = False  # keep decoded images in memory (small datasets, CPU runs)
    device_augment: bool = False  # decode the train split once, augment batches on the device
    test_batch_size: Annotated[int, Bounds(1, 1024)] = 128  # a batch of 1024 at 256x128: 0.4 GB of input


@dataclass
class ModelConfig:
    name: Literal["baseline", "sen", "deep_miner", "bdb"] = "baseline"  # reidlib.models.MODELS
    backbone: str = "resnet50"
    pretrained: bool | str = False  # True: torchvision ImageNet weights from the local cache
    last_stride: Literal[1, 2] = 1
    options: dict[str, Any] = field(default_factory=dict)  # network options (r1, r2, ie_blocks, ...)


@dataclass
class LossConfig:
    terms: list[LossTerm] = field(default_factory=list)  # (branch, kind, weight) as in the papers
    label_smoothing: UnitInterval = 0.1  # epsilon of SEN eq. 6 / Deep Miner eq. 4, in [0, 1)
    triplet_margin: PositiveNumber | None = 0.3  # None: soft margin (Deep Miner eq. 5)
    center_lr: NonNegativeNumber = 0.5  # SGD learning rate of the centers (BoT convention)
    ramp_epochs: NonNegative = 0  # N > 0: non-global terms weigh min(1, epoch / N) x weight (0 = papers)


@dataclass
class OptimConfig:
    name: Literal["adam", "sgd"] = "adam"
    lr: PositiveNumber = 3.5e-4  # base learning rate reached after warmup
    weight_decay: NonNegativeNumber = 5e-4
    momentum: UnitInterval = 0.9  # sgd only
    epochs: Positive = 120
    warmup_epochs: NonNegative = 10  # lr(t) = lr * t / warmup_epochs for t <= warmup_epochs (1-based t)
    milestones: list[Positive] = field(default_factory=lambda: [40, 70])  # lr *= gamma for t > milestone
    gamma: Annotated[float, Bounds(0.0, 1.0, low_open=True)] = 0.1  # in (0, 1]: a decay


@dataclass
class EvalConfig:
    every: Positive = 10  # evaluate every N epochs, and always after the last one
    metric: Literal["cosine", "euclidean"] = "cosine"
    mode: Literal["standard", "official"] = "standard"  # torchreid/fast-reid/BoT | Market-1501 MATLAB
    flip: bool = False  # average the features of the image and its mirror
    rerank: bool = False  # k-reciprocal re-ranking (Zhong et al. 2017)
    max_rank: Positive = 50  # clipped to the gallery size by reidlib.evaluation.metrics
    final_variants: list[str] = field(default_factory=list)  # extra rows after the last epoch:
    # any Variant (reported under "variants" in metrics.json)


@dataclass
class TrainConfig:
    seed: NonNegative = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"  # bf16 on CUDA, off on CPU; fp16 overflow stops
    channels_last: bool = True  # NHWC: the fast layout for convolutions on CUDA and on CPU (oneDNN)
    compile: bool = False  # torch.compile the network
    max_iters_per_epoch: Positive | None = None  # cap iterations per epoch (smoke runs)
    checkpoint_every: Positive = 1  # write last.pt every N epochs (and after the last)
    keep_checkpoint: bool = True  # False: delete last.pt once metrics.json is written (grids, demos)
    snapshot_epochs: list[Positive] = field(default_factory=list)  # also keep the weights after these epochs
    progress: bool = True  # tqdm progress bars
    threads: NonNegative = 0  # torch CPU threads; 0: the cores this process may run on (os.sched_getaffinity)
    log_branch_grads: bool = False  # per epoch: each branch's gradient on the shared trunk (log.jsonl)


@dataclass
class Recipe:
    name: str = "unnamed"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The recipe's sections: an override of a whole section merges into it, as a recipe file's does.
SECTIONS = tuple(f.name for f in dataclasses.fields(Recipe) if f.name not in ("name", "description"))


# ----------------------------------------------------------------------------- typed conversion


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Annotated:
        return _type_name(typing.get_args(tp)[0])
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against (and converted to) the annotation ``tp``; errors name ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        inner, *extras = typing.get_args(tp)
        value = _convert(value, inner, key)
        for bounds in (x for x in extras if isinstance(x, Bounds)):
            try:
                bounds.check(key, value)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) or value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, choices))}, got {shown(value)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {shown(value)}")
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {shown(value)}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {shown(value)}")
        _, item = typing.get_args(tp)
        return {str(k): _convert(v, item, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {shown(value)}")
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {shown(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {shown(value)}")
        return float(value)
    if tp in (str, Path):  # paths stay strings: a recipe is YAML
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {shown(value)}")
        return value
    raise ConfigError(f"{key}: unsupported annotation {tp!r}")  # pragma: no cover - programming error


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key '{where}{unknown[0]}'; {cls.__name__} has: {', '.join(names)}")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    return cls(**kwargs)


# ----------------------------------------------------------------------------- loading


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` for recipes, ``--set`` values and notebook parameters: YAML 1.2 core scalars
    (the resolvers below), no alias (``*name``), no mapping with the same key twice (YAML keeps the last).
    """

    yaml_implicit_resolvers: dict = {}  # filled below: no YAML 1.1 octal, sexagesimal, yes/no, dates

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"line {event.start_mark.line + 1}: YAML aliases (*{shown(event.anchor, 40)[1:-1]}) are not "
                "accepted; write the value out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(f"duplicate key {shown(key, 60)} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        base = {"0o": 8, "0x": 16}.get(text[:2].lower(), 10)
        try:
            return int(text[2:] if base != 10 else text, base)
        except ValueError:
            raise ConfigError(
                f"line {node.start_mark.line + 1}: {shown(text, 60)} is not an integer"
            ) from None


_YAML_1_2_CORE = (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        "float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+.0123456789",
    ),
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
)
for _tag, _pattern, _first in _YAML_1_2_CORE:
    _RecipeLoader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"), list(_first)
    )
_RecipeLoader.add_constructor("tag:yaml.org,2002:int", _RecipeLoader.construct_yaml_int)


def yaml_load(text: str) -> Any:
    """``text`` read as YAML the recipes' way (:class:`_RecipeLoader`); ConfigError on an alias or a
    duplicate key, yaml.YAMLError on a syntax error."""
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``reidlib/recipes``."""
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A shipped recipe name (``sen_market1501``) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: recipe file not found")
        return path
    shipped = recipes_dir() / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ConfigError(
            f"unknown recipe {str(name_or_path)!r}; shipped recipes: {', '.join(recipe_names())}"
        )
    return shipped


def _read_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise ConfigError(f"{path}: recipe inheritance loops through {' -> '.join(map(str, seen))}")
    try:
        raw = yaml_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    bases = base if isinstance(base, list) else [base]
    if not bases or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: base: expected a recipe name or a list of them, got {shown(base)}")
    merged: dict[str, Any] = {}
    for name in bases:  # in order: each one's keys override the ones before
        merged = _merge(merged, _read_raw(_base_path(name, path), (*seen, path)))
    return _merge(merged, raw)


def _base_path(name: str, child: Path) -> Path:
    """A ``base:`` entry of ``child``: a shipped recipe name, or a YAML path read from ``child``'s folder."""
    if Path(name).suffix not in (".yaml", ".yml"):
        return resolve_recipe_path(name)
    path = child.parent / Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found (base of {child})")
    return path


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> (["optim", "lr"], 0.001); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {shown(text)}: expected key=value, e.g. optim.epochs=5")
    key, raw = text.split("=", 1)
    try:
        value = yaml_load(raw) if raw.strip() else None
    except (yaml.YAMLError, ConfigError) as err:
        raise ConfigError(f"override {shown(text)}: {' '.join(str(err).split())}") from None
    return key.strip().split("."), value


def load_recipe(name_or_path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = ()) -> Recipe:
    """Load a recipe, apply overrides, and check every key and type.

    ``overrides`` are ``"key=value"`` strings (the command line's ``--set``; values read as YAML) or a
    mapping ``{"optim.epochs": 5}`` (notebook parameters, ablation rows; values used as they are, in
    order, checked the same way). A whole section (``optim={epochs: 5}``) merges into the recipe's;
    any other mapping value (``model.options``) replaces the recipe's.
    """
    path = resolve_recipe_path(name_or_path)
    raw = _read_raw(path)
    raw.setdefault("name", path.stem)
    original = copy.deepcopy(raw)
    if isinstance(overrides, Mapping):
        items = [(str(k).split("."), copy.deepcopy(v), f"{k}={v!r}") for k, v in overrides.items()]
    else:
        items = [(*parse_override(text), text) for text in overrides]
    for keys, value, text in items:
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {shown(text)}: '{k}' is not a section")
        section = len(keys) == 1 and keys[0] in SECTIONS and isinstance(node.get(keys[0]), dict)
        node[keys[-1]] = _merge(node[keys[0]], value) if section and isinstance(value, dict) else value
    recipe = recipe_from_dict(raw)
    if items:
        recipe.description = _described(recipe, original)
    return recipe


def _described(recipe: Recipe, original: dict[str, Any]) -> str:
    """The recipe's description and, when overrides changed what it trains, which keys they set."""
    try:
        changes = trained_changes(recipe_from_dict(original).to_dict(), recipe.to_dict())
    except ConfigError:  # the file alone is not a whole recipe: its description says nothing more
        return recipe.description
    if not changes:
        return recipe.description
    listed = ", ".join(
        f"{k}={new!r}" if isinstance(new, str) else f"{k}={new}" for k, (_, new) in changes.items()
    )
    return f"{recipe.description} (changed: {shown(listed)[1:-1]})"


def recipe_from_dict(values: dict[str, Any]) -> Recipe:
    """Build and check a recipe from its mapping (a loaded YAML file, or ``Recipe.to_dict`` of a
    checkpoint or params.json)."""
    recipe = _build(Recipe, values)
    recipe.model.options = _typed_options(recipe.model)
    validate(recipe)
    return recipe


def _typed_options(model: ModelConfig) -> dict[str, Any]:
    """``model.options`` checked against the network's constructor: known names, hinted types."""
    known = model_options(model.name)
    hints = typing.get_type_hints(MODELS[model.name].__init__, include_extras=True)
    out = {}
    for name, value in model.options.items():
        if name not in known:
            raise ConfigError(
                f"unknown key 'model.options.{name}'; model {model.name!r} has: {', '.join(known)}"
            )
        out[name] = _convert(value, hints.get(name, Any), f"model.options.{name}")
    return out


def validate(recipe: Recipe) -> None:
    """Checks across fields that a field's type and range alone cannot express."""
    o, d = recipe.optim, recipe.data
    if sorted(o.milestones) != o.milestones:
        raise ConfigError(f"optim.milestones: expected increasing epochs, got {shown(o.milestones)}")
    if o.warmup_epochs > o.epochs:
        raise ConfigError(
            f"optim.warmup_epochs: {o.warmup_epochs} warm-up epochs do not fit a run of optim.epochs="
            f"{o.epochs} (its lr would never reach optim.lr); set optim.warmup_epochs <= {o.epochs} and "
            f"optim.milestones within the run too, e.g. --set optim.warmup_epochs={max(1, o.epochs // 10)} "
            f"--set 'optim.milestones=[{max(1, o.epochs * 2 // 3)}]'"
        )
    if d.num_instances < 2 and any(term.kind == "triplet" for term in recipe.loss.terms):
        raise ConfigError("data.num_instances must be >= 2 with a triplet loss (anchors need a positive)")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", recipe.train.device):
        raise ConfigError(
            f"train.device: expected auto, cpu, cuda or cuda:N, got {shown(recipe.train.device)}"
        )
    outside = [e for e in recipe.train.snapshot_epochs if not 1 <= e <= o.epochs]
    if outside:
        raise ConfigError(f"train.snapshot_epochs: {outside} outside the run's epochs 1..{o.epochs}")
    try:
        Variant.parse(recipe.eval.final_variants, "eval.final_variants")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if not recipe.loss.terms:
        raise ConfigError("loss.terms: a recipe needs at least one loss term")


# ----------------------------------------------------------------------------- recipe changes


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{dotted key: leaf value}`` (an empty mapping is a leaf)."""
    if not isinstance(values, dict) or not values:
        return {prefix: values}
    out: dict[str, Any] = {}
    for k, v in values.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def recipe_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every recipe key whose value differs."""
    a, b = flatten(_normalised(old)), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _normalised(recipe: dict[str, Any]) -> dict[str, Any]:
    """A saved recipe with the fields added since filled in with their defaults (when it still loads)."""
    try:
        return recipe_from_dict(recipe).to_dict()
    except ConfigError:
        return recipe


def is_execution_key(key: str) -> bool:
    """Whether the dotted ``key`` is one of :data:`EXECUTION_KEYS`."""
    return tuple(key.split(".")) in EXECUTION_KEYS


def trained_changes(
    old: dict[str, Any], new: dict[str, Any], *, ignore: Sequence[str] = ()
) -> dict[str, tuple[Any, Any]]:
    """:func:`recipe_changes` that change what is trained: without execution keys and ``ignore``."""
    changes = recipe_changes(old, new)
    return {k: v for k, v in changes.items() if not is_execution_key(k) and k not in ignore}
