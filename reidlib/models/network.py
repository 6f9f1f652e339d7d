"""What all four networks share: input checks, the test embedding and per-branch dimensions."""

from __future__ import annotations

import numbers
import operator

import torch
from torch import Tensor, nn

from reidlib.models.outputs import ModelOutput


def check_num_classes(num_classes: int) -> None:
    try:
        ok = not isinstance(num_classes, bool) and operator.index(num_classes) >= 1
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")


def check_fraction(name: str, value: float, *, closed: bool) -> None:
    """Ratios live in [0, 1) (erasing everything is meaningless); thresholds in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"{name}: expected a value in [0, {'1]' if closed else '1)'}, got {value}")


def check_flag(name: str, value: bool) -> None:
    """Switches must be true booleans: a YAML string such as "no" would otherwise count as true."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


class ReIDNetwork(nn.Module):
    """Base class: subclasses build branches and set ``embedding_branches`` and ``feat_dims``.

    ``forward`` returns ``{branch: BranchOutput}`` in train and eval alike; ``embed`` concatenates the
    after-BN features of ``embedding_branches`` (the test embedding each paper specifies).
    """

    embedding_branches: tuple[str, ...] = ()
    feat_dims: dict[str, int]

    @staticmethod
    def check_images(images: Tensor) -> None:
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images: expected a (B, 3, H, W) float tensor, got {shape}")
        if not images.is_floating_point():
            raise ValueError(f"images: expected a float tensor (normalised), got dtype {images.dtype}")

    def forward(self, images: Tensor) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters every branch's gradient flows through (the trunk the branches compete
        for; :mod:`reidlib.branch_grads`): the backbone, unless a network says otherwise."""
        return list(self.backbone.parameters())

    @property
    def embedding_dim(self) -> int:
        return sum(self.feat_dims[b] for b in self.embedding_branches)

    @property
    def embedding_slices(self) -> dict[str, slice]:
        """Where each branch sits in ``embed``'s columns: ``{branch: slice}``, in embedding order."""
        out, start = {}, 0
        for b in self.embedding_branches:
            out[b] = slice(start, start + self.feat_dims[b])
            start += self.feat_dims[b]
        return out

    def embed(self, images: Tensor) -> Tensor:
        """Test embedding (B, embedding_dim); call in eval mode (erasing is then the identity)."""
        out = self(images)
        return torch.cat([out[b].bn_feat for b in self.embedding_branches], dim=1)
