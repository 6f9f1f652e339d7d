"""Checkpoints: written atomically, read with ``weights_only=True``, checked before use.

A checkpoint holds everything a killed run needs to continue exactly: the resolved recipe, the number
of classes, the epoch, the network, both optimisers (network and centers), the centers, the sampler
state and the RNG states.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidlib.config import Recipe, recipe_from_dict
from reidlib.fileio import atomic_path

FORMAT = "reidlib-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the network it is loaded into."""


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


def save_checkpoint(path: str | Path, **content: Any) -> None:
    """``torch.save`` of ``content`` plus the format tag, to a temp file renamed over ``path``."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **content}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (tensors and plain containers only); clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read checkpoint (corrupt or truncated?): {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a reidlib checkpoint (expected format {FORMAT!r})")
    return ckpt


def checkpoint_recipe(ckpt: dict[str, Any]) -> Recipe:
    return recipe_from_dict(ckpt["recipe"])


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
    if ckpt["num_classes"] != num_classes:
        raise CheckpointError(
            f"{path}: checkpoint has {ckpt['num_classes']} classes, the training set has {num_classes}"
        )
