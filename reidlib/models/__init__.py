"""The four networks and ``build_model``, the one entry point.

``build_model(name, num_classes, **options)``: ``name`` is one of ``MODELS``; options are the
network's keyword arguments (e.g. ``use_bs``, ``r2`` for SEN; ``ie_blocks``, ``tau``, ``attention`` for
Deep Miner) so every ablation row is a set of options, not a new class.
"""

from __future__ import annotations

import inspect

from reidlib.models.baseline import Baseline
from reidlib.models.bdb import BatchDropBlock
from reidlib.models.deep_miner import DeepMiner
from reidlib.models.network import ReIDNetwork
from reidlib.models.outputs import BranchOutput, ModelOutput
from reidlib.models.sen import SEN

MODELS = {"baseline": Baseline, "sen": SEN, "deep_miner": DeepMiner, "bdb": BatchDropBlock}


def model_options(name: str) -> list[str]:
    """The option names ``build_model`` accepts for ``name``."""
    if name not in MODELS:
        raise ValueError(f"model: unknown {name!r}; expected one of {sorted(MODELS)}")
    params = inspect.signature(MODELS[name].__init__).parameters
    return [p for p in params if p not in ("self", "num_classes")]


def build_model(name: str, num_classes: int, **options) -> ReIDNetwork:
    known = model_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"model {name!r}: unknown option(s) {unknown}; known options: {known}")
    return MODELS[name](num_classes, **options)


__all__ = ["MODELS", "BranchOutput", "ModelOutput", "ReIDNetwork", "build_model", "model_options"]
