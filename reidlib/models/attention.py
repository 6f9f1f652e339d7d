"""Deep Miner's attention: SAM (position attention) and CHAM (channel attention), section 3.4."""

from __future__ import annotations

import torch
from torch import Tensor, nn

ATTENTION_KINDS = ("none", "sam", "cham", "sam+cham")


class SpatialAttention(nn.Module):
    """SAM (Deep Miner Fig. 5): Y + gamma * BN(Y re-weighted by a position affinity).

    1x1 convolutions give A and B with C/8 channels; the affinity softmax(A^T B) over the D = H*W
    positions mixes Y's positions; gamma is a learnable scalar starting at 0, so the module starts as
    the identity (docs/reading-the-papers.md#deep-miner-attention-sam-and-cham).
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.query = nn.Conv2d(channels, channels // reduction, kernel_size=1)
        self.key = nn.Conv2d(channels, channels // reduction, kernel_size=1)
        self.bn = nn.BatchNorm2d(channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, y: Tensor) -> Tensor:
        b, c, h, w = y.shape
        a = self.query(y).flatten(2)  # (B, C/8, D)
        k = self.key(y).flatten(2)  # (B, C/8, D)
        affinity = torch.softmax(a.transpose(1, 2) @ k, dim=-1)  # (B, D, D), rows sum to 1
        mixed = y.flatten(2) @ affinity.transpose(1, 2)  # (B, C, D): position d = sum_e aff[d, e] y_e
        return y + self.gamma * self.bn(mixed.view(b, c, h, w))


class ChannelAttention(nn.Module):
    """CHAM (Deep Miner Fig. 6): a squeeze-excitation block without the global pooling.

    conv C -> C/16, ReLU, conv C/16 -> C, softmax over CHANNELS at each position, multiplied
    element-wise with the input. As the paper writes it, the softmax weights sum to 1 over channels,
    so the output is about C times smaller than the input; the next block's BatchNorm rescales it.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.squeeze = nn.Conv2d(channels, channels // reduction, kernel_size=1)
        self.excite = nn.Conv2d(channels // reduction, channels, kernel_size=1)

    def forward(self, y: Tensor) -> Tensor:
        weights = torch.softmax(self.excite(torch.relu(self.squeeze(y))), dim=1)  # (B, C, H, W)
        return y * weights


def build_attention(kind: str, channels: int) -> nn.Module:
    """ATT(Y) = CHAM(SAM(Y)) for ``"sam+cham"``; one of them alone; or the identity for ``"none"``."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention: expected one of {ATTENTION_KINDS}, got {kind!r}")
    modules = []
    if "sam" in kind.split("+"):
        modules.append(SpatialAttention(channels))
    if "cham" in kind.split("+"):
        modules.append(ChannelAttention(channels))
    return nn.Sequential(*modules) if modules else nn.Identity()
