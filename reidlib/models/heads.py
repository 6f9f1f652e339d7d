"""Pooling and the BNNeck head shared by every branch of every network."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from reidlib.models.outputs import BranchOutput


def global_avg_pool(x: Tensor) -> Tensor:
    return x.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)


def global_max_pool(x: Tensor) -> Tensor:
    return x.amax(dim=(2, 3))  # (B, C, H, W) -> (B, C)


def stripe_avg_pool(x: Tensor, num_stripes: int) -> Tensor:
    """Average each of ``num_stripes`` horizontal stripes and concatenate: (B, num_stripes * C).

    Stripe-major order, so stripe 0 (head) occupies the first C dimensions.
    """
    pooled = F.adaptive_avg_pool2d(x, (num_stripes, 1))  # (B, C, S, 1)
    return pooled.squeeze(3).transpose(1, 2).flatten(1)  # (B, S * C)


class BNNeck(nn.Module):
    """BatchNorm1d with a frozen zero bias, then a bias-free classifier (Luo et al., BNNeck).

    Triplet and center losses see the feature before the BN; cross-entropy sees the logits of the
    after-BN feature; the after-BN feature is the test embedding
    (docs/reading-the-papers.md#shared-bnneck-and-the-test-embedding).
    """

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(in_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: Tensor) -> BranchOutput:
        bn_feat = self.bn(feat)
        return BranchOutput(feat, bn_feat, self.classifier(bn_feat))
