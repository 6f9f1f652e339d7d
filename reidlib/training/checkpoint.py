"""Checkpoints: written atomically, read with ``weights_only=True``, checked before use.

A checkpoint (``last.pt``) holds everything a killed run needs to continue exactly: its
:class:`CheckpointInfo` (the resolved recipe, the number of classes, the epoch) and its
:class:`TrainState` (the network, the centers, both optimisers, the grad scaler, the sampler, the RNG
states). A snapshot (``epochNNN.pt``) holds the info and the network's weights only. The keys of both
files are the fields of these two dataclasses (plus ``format`` and ``rng``), spelled nowhere else.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reidlib.config import Recipe, recipe_from_dict
from reidlib.utils.fileio import TorchFileError, atomic_path, read_torch_file

FORMAT = "reidlib-checkpoint-1"
_FORMAT_KEY, _RNG_KEY = "format", "rng"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the network it is loaded into."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (torch reports a full disk as a RuntimeError)."""


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


@dataclass
class CheckpointInfo:
    """What every checkpoint and snapshot says about itself."""

    recipe: dict[str, Any]  # Recipe.to_dict()
    num_classes: int
    epoch: int

    @classmethod
    def of(cls, ckpt: dict[str, Any]) -> CheckpointInfo:
        return cls(**{f.name: ckpt[f.name] for f in dataclasses.fields(cls)})


@dataclass
class TrainState:
    """Everything a resume needs besides the recipe; each part has ``state_dict``/``load_state_dict``."""

    model: nn.Module
    criterion: nn.Module  # holds the centers
    optimizer: torch.optim.Optimizer
    center_optimizer: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler
    sampler: Any  # reidlib.data.samplers: where the identity sampler stands

    def parts(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def state_dict(self) -> dict[str, Any]:
        """Every part's state (None for an absent part) and the RNG states."""
        state = {k: None if p is None else p.state_dict() for k, p in self.parts().items()}
        return {**state, _RNG_KEY: rng_state()}

    def load_state_dict(self, state: dict[str, Any], path: str | Path = "checkpoint") -> None:
        for name, part in self.parts().items():
            if part is None:
                continue
            try:
                part.load_state_dict(state[name])
            except (RuntimeError, KeyError, ValueError, TypeError) as err:
                raise CheckpointError(f"{path}: its {name} state does not fit the run: {err}") from err
        set_rng_state(state[_RNG_KEY])


_WEIGHTS = "model"  # the TrainState part a snapshot keeps
_COMPACT = "compact"  # set in a finished run's last.pt rewritten as weights only (save_compact)


def _save(path: str | Path, info: CheckpointInfo, content: dict[str, Any]) -> None:
    """``torch.save`` of the format tag, ``info`` and ``content``, to a temp file renamed over ``path``."""
    with atomic_path(path) as tmp:
        try:
            torch.save({_FORMAT_KEY: FORMAT, **dataclasses.asdict(info), **content}, tmp)
        except RuntimeError as err:  # torch's zip writer reports a failed write (disk full) this way
            free = shutil.disk_usage(Path(path).parent).free / 2**20
            first = str(err).strip().splitlines()[0]
            raise CheckpointWriteError(
                f"{path}: writing the checkpoint failed ({first}); disk full? {free:.0f} MiB free"
            ) from err


def save_checkpoint(path: str | Path, info: CheckpointInfo, state: TrainState) -> None:
    """``last.pt``: a resume point."""
    _save(path, info, state.state_dict())


def save_snapshot(path: str | Path, info: CheckpointInfo, state: TrainState) -> None:
    """``epochNNN.pt``: the network's weights of that epoch (no optimiser state: not a resume point)."""
    _save(path, info, {_WEIGHTS: state.model.state_dict()})


def save_compact(path: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """Rewrite the checkpoint ``path`` as its network's weights only, in ``dtype``: what a finished
    run keeps to be drawn and evaluated again (about a sixth of a resume point), but not resumed."""
    ckpt = load_checkpoint(path)
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt[_WEIGHTS].items()}
    _save(path, CheckpointInfo.of(ckpt), {_WEIGHTS: weights, _COMPACT: True})


def restore(path: str | Path, state: TrainState, recipe: Recipe, num_classes: int) -> int:
    """Load ``last.pt`` into ``state`` after checking it fits ``recipe``; returns its epoch."""
    ckpt = load_checkpoint(path)
    if ckpt.get(_COMPACT):
        raise CheckpointError(
            f"{path}: holds a finished run's weights only (compacted); it cannot be resumed"
        )
    check_compatible(ckpt, recipe, num_classes, path)
    state.load_state_dict(ckpt, path)
    return CheckpointInfo.of(ckpt).epoch


def load_weights(model: nn.Module, ckpt: dict[str, Any], path: str | Path) -> None:
    """The checkpoint's (or snapshot's) network weights into ``model``."""
    try:
        model.load_state_dict(ckpt[_WEIGHTS])
    except (RuntimeError, KeyError) as err:
        name = CheckpointInfo.of(ckpt).recipe["model"]["name"]
        raise CheckpointError(f"{path}: weights do not fit model {name!r}: {err}") from err


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (tensors and plain containers only); clear errors otherwise."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, expected a checkpoint file (e.g. {path / 'last.pt'})")
    try:
        ckpt = read_torch_file(path, "checkpoint")
    except TorchFileError as err:
        raise CheckpointError(str(err)) from err
    if not isinstance(ckpt, dict) or ckpt.get(_FORMAT_KEY) != FORMAT:
        raise CheckpointError(f"{path}: not a reidlib checkpoint (expected format {FORMAT!r})")
    missing = [f.name for f in dataclasses.fields(CheckpointInfo) if f.name not in ckpt]
    if _WEIGHTS not in ckpt or missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {[*missing, _WEIGHTS][:4]}")
    return ckpt


def checkpoint_recipe(ckpt: dict[str, Any]) -> Recipe:
    return recipe_from_dict(CheckpointInfo.of(ckpt).recipe)


def check_compatible(ckpt: dict[str, Any], recipe: Recipe, num_classes: int, path: str | Path) -> None:
    """Refuse a checkpoint of another network, other options or another number of classes."""
    saved = checkpoint_recipe(ckpt).model
    want = recipe.model
    for field in ("name", "backbone", "last_stride", "options"):
        if getattr(saved, field) != getattr(want, field):
            raise CheckpointError(
                f"{path}: checkpoint is for model.{field}={getattr(saved, field)!r}, "
                f"but the run uses model.{field}={getattr(want, field)!r}"
            )
    saved_classes = CheckpointInfo.of(ckpt).num_classes
    if saved_classes != num_classes:
        raise CheckpointError(
            f"{path}: checkpoint has {saved_classes} classes, the training set has {num_classes}"
        )
