"""Deep Miner's attention: SAM (position attention) and CHAM (channel attention), section 3.4."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

AttentionKind = Literal["none", "sam", "cham", "sam+cham"]
ATTENTION_KINDS = get_args(AttentionKind)


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


ChamActivation = Literal["softmax_channels", "sigmoid"]
CHAM_ACTIVATIONS = get_args(ChamActivation)
DEFAULT_CHAM_ACTIVATION = "sigmoid"  # chosen in ChannelAttention's docstring


class ChannelAttention(nn.Module):
    """CHAM (Deep Miner Fig. 6): a squeeze-excitation block without the global pooling.

    conv C -> C/16, ReLU, conv C/16 -> C, an activation, multiplied element-wise with the input.
    The paper says CHAM is "based on Squeeze-and-Excitation" (whose gate is a sigmoid), then names a
    softmax without an axis; ``activation`` picks the reading:

    - ``"softmax_channels"``: softmax over the C channels at each position. The weights sum to 1, so
      the output is about Y / C. At initialisation (studies/cham_activation.py, 128x64, train-mode BN)
      CHAM after B3 gives out/in std 0.0043 for ResNet-18 (C = 256, i.e. 1.10 / C) and 0.0013 for
      ResNet-50 (C = 1024, 1.32 / C); block 4's first BNs then see a variance of 1.6 eps (ResNet-18,
      bn1) and 0.34 eps (ResNet-50, downsample), so they scale their output by 0.78 and 0.50
      instead of normalising it to 1.
    - ``"sigmoid"``: SE's gate, each channel scaled by its own weight in (0, 1): out/in std 0.51
      (ResNet-18) and 0.53 (ResNet-50), and block 4's BNs normalise as without attention (gain 1.00).

    Default ``"sigmoid"``: SE's gate keeps the scale, and on the smoke budget (synthetic set,
    ResNet-18 from scratch, 4 epochs, one seed, Deep Miner with all its branches) it reached
    rank-1 38.3 / mAP 35.1 against 26.4 / 27.0 with the softmax. ``"softmax_channels"`` is what
    reidlib used before the option existed (the committed CPU run; deep_miner_market1501_cpu pins it).
    """

    def __init__(self, channels: int, reduction: int = 16, activation: str = DEFAULT_CHAM_ACTIVATION):
        super().__init__()
        if activation not in CHAM_ACTIVATIONS:
            raise ValueError(f"cham_activation: expected one of {list(CHAM_ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.squeeze = nn.Conv2d(channels, channels // reduction, kernel_size=1)
        self.excite = nn.Conv2d(channels // reduction, channels, kernel_size=1)

    def forward(self, y: Tensor) -> Tensor:
        logits = self.excite(torch.relu(self.squeeze(y)))  # (B, C, H, W)
        if self.activation == "sigmoid":
            return y * torch.sigmoid(logits)
        return y * torch.softmax(logits, dim=1)  # weights sum to 1 over the channels

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


def build_attention(kind: str, channels: int, cham_activation: str = DEFAULT_CHAM_ACTIVATION) -> nn.Module:
    """ATT(Y) = CHAM(SAM(Y)) for ``"sam+cham"``; one of them alone; or the identity for ``"none"``."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention: expected one of {ATTENTION_KINDS}, got {kind!r}")
    modules = []
    if "sam" in kind.split("+"):
        modules.append(SpatialAttention(channels))
    if "cham" in kind.split("+"):
        modules.append(ChannelAttention(channels, activation=cham_activation))
    return nn.Sequential(*modules) if modules else nn.Identity()
