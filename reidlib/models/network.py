"""What all four networks share: input checks, the feature-map contract, the test embedding and
per-branch dimensions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reidlib.models.outputs import ModelOutput
from reidlib.utils.checks import check_int


def check_num_classes(num_classes: int) -> None:
    check_int("num_classes", num_classes, 1)


class ReIDNetwork(nn.Module):
    """Base class: subclasses build branches and set ``embedding_branches`` and ``feat_dims``.

    ``forward`` returns ``{branch: BranchOutput}`` in train and eval alike; ``embed`` concatenates the
    after-BN features of ``embedding_branches`` (the test embedding each paper specifies).

    ``feature_maps(images)`` has the same keys for the same roles in every network, so a figure never
    asks which network it holds:

    - ``b1``..``b4``: Y_1..Y_4, the outputs of the backbone's blocks B1..B4 (a ResNet's
      ``layer1``..``layer4``; MobileNetV2's cut in :mod:`reidlib.models.backbone`) as the global branch
      sees them
      (after Deep Miner's attention modules); the global branch pools ``b4``;
    - one key per erasing branch, the branch's name (``bs``, ``ms``, ``drop``, ``ie_b2``, ``ie_b3``):
      the map that branch's :class:`~reidlib.erasing.Erase` reads, before erasing.

    ``map_notes`` says in words what each key of a network holds (:meth:`describe_map`).
    """

    embedding_branches: tuple[str, ...] = ()
    feat_dims: dict[str, int]
    map_notes: dict[str, str] = {}

    def feature_maps(self, images: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe_map(self, key: str) -> str:
        """What ``feature_maps(...)[key]`` holds, in a few words (for figure captions)."""
        if key in self.map_notes:
            return self.map_notes[key]
        if key in {"b1", "b2", "b3", "b4"}:
            return f"Y_{key[1]}, the output of backbone block B{key[1]}"
        raise KeyError(f"{type(self).__name__} has no feature map {key!r}")

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
        for; :mod:`reidlib.training.branch_grads`): the backbone, unless a network says otherwise."""
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
