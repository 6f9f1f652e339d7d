"""The one output structure every network returns, in training and in evaluation."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class BranchOutput(NamedTuple):
    """What one branch produces for a batch.

    ``feat`` feeds the triplet and center losses, ``bn_feat`` (after the BNNeck's BatchNorm) is the
    branch's part of the test embedding, ``logits`` feed the ID (cross-entropy) loss. With BDB's
    reduction heads (:class:`reidlib.models.heads.ReductionHead`) ``feat`` and ``bn_feat`` are the same
    reduced feature, as in the BDB authors' code.
    """

    feat: Tensor  # (B, D) before the BNNeck
    bn_feat: Tensor  # (B, D) after the BNNeck's BatchNorm
    logits: Tensor  # (B, num_classes)


# A network's forward returns {branch name: BranchOutput}, in a fixed branch order.
ModelOutput = dict[str, BranchOutput]
