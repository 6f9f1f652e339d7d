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


class ReductionHead(nn.Module):
    """Batch DropBlock's head as the authors' code builds it: Linear -> BN -> ReLU, then a classifier.

    The reduced feature feeds CE (through the classifier, which has a bias) and the triplet loss, and
    is the branch's part of the test embedding, so ``feat`` and ``bn_feat`` are the same tensor. The
    global branch's 1x1 convolution + BatchNorm2d on the pooled 1x1 map is this Linear + BatchNorm1d
    (the same products, the same per-channel batch statistics). The reduction has no bias: the BN
    that follows subtracts its input's mean, so the code's bias changes nothing but would be left
    with a zero gradient. Initialised as that code does: Kaiming-normal reduction (``init_mode``
    fan_in for the global branch's convolution, fan_out for the drop branch's Linear) and
    classifier (fan_out), zero classifier bias, unit BN (the code draws the BN scale from
    N(1, 0.02); reidlib starts it at exactly 1).
    """

    def __init__(self, in_dim: int, out_dim: int, num_classes: int, *, init_mode: str = "fan_in"):
        super().__init__()
        self.reduce = nn.Linear(in_dim, out_dim, bias=False)
        self.bn = nn.BatchNorm1d(out_dim)
        self.classifier = nn.Linear(out_dim, num_classes)
        nn.init.kaiming_normal_(self.reduce.weight, mode=init_mode)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        nn.init.kaiming_normal_(self.classifier.weight, mode="fan_out")
        nn.init.zeros_(self.classifier.bias)

    def forward(self, feat: Tensor) -> BranchOutput:
        reduced = F.relu(self.bn(self.reduce(feat)))  # (B, out_dim)
        return BranchOutput(reduced, reduced, self.classifier(reduced))
