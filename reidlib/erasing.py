"""Feature erasing: one convention for SEN's M1/M2, Deep Miner's ErO and Batch DropBlock.

A *mask function* maps features ``(B, C, H, W)`` to a keep-mask ``(B, 1, H, W)``: 1 keeps a position,
0 erases it, and every channel of an image shares the mask. :class:`Erase` applies a mask function
in training and is the identity in evaluation. Masks are computed from detached features in float32,
so no gradient flows through them and half-precision sums cannot overflow.

Each mask is a threshold or a sort of a *score map* exported here: :func:`activation_map` for SEN's
M1 and M2, :func:`normalized_mean_map` for Deep Miner's ErO. The notebooks draw these same functions,
so a figure shows exactly what the masks see.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

MaskFn = Callable[..., Tensor]


def _check_feat(feat: Tensor) -> None:
    if not isinstance(feat, Tensor) or feat.dim() != 4:
        shape = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat).__name__
        raise ValueError(f"feat: expected a (B, C, H, W) tensor, got {shape}")


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio: expected a value in [0, 1), got {ratio}")


def num_erased(ratio: float, height: int, width: int) -> int:
    """N = floor(ratio * H * W) (SEN eqs. 3 and 5); a tiny epsilon absorbs float error (0.29*100)."""
    _check_ratio(ratio)
    return math.floor(ratio * height * width + 1e-9)


def activation_map(feat: Tensor, p: float = 2) -> Tensor:
    """F^p(A) = sum_c |A_c|^p per position (SEN eq. 1, after Zagoruyko & Komodakis): (B, H, W)."""
    _check_feat(feat)
    return feat.detach().float().abs().pow(p).sum(dim=1)


def _erase_extremes(scores: Tensor, count: int, largest: bool) -> Tensor:
    """Keep-mask (B, 1, H, W) that zeroes the ``count`` lowest or highest scores of each image.

    ``topk`` picks exactly ``count`` positions even when scores tie
    (docs/reading-the-papers.md#sen-tie-handling).
    """
    b, h, w = scores.shape
    mask = torch.ones(b, h * w, device=scores.device, dtype=torch.float32)
    if count > 0:
        idx = scores.reshape(b, h * w).topk(count, dim=1, largest=largest).indices  # (B, count)
        mask.scatter_(1, idx, 0.0)
    return mask.view(b, 1, h, w)


def low_activation_mask(feat: Tensor, ratio: float, p: float = 2) -> Tensor:
    """SEN M1 (eq. 3): erase the floor(ratio*H*W) LOWEST positions of the activation map.

    Background suppression: the weakest responses are taken to be background (r1 = 0.1).
    """
    _check_feat(feat)
    count = num_erased(ratio, feat.shape[2], feat.shape[3])
    return _erase_extremes(activation_map(feat, p), count, largest=False)


def top_activation_mask(feat: Tensor, ratio: float, p: float = 2) -> Tensor:
    """SEN M2 (eq. 5): erase the floor(ratio*H*W) HIGHEST positions of the activation map.

    Maximum-activation suppression pushes the branch onto weaker cues (r2 = 0.25).
    """
    _check_feat(feat)
    count = num_erased(ratio, feat.shape[2], feat.shape[3])
    return _erase_extremes(activation_map(feat, p), count, largest=True)


def normalized_mean_map(feat: Tensor) -> Tensor:
    """The score ErO thresholds (Deep Miner eq. 1): the channel mean, min-max scaled per image to [0, 1].

    A constant map (max == min) gives zeros instead of dividing by zero, so ErO then erases nothing
    (docs/reading-the-papers.md#deep-miner-the-constant-map-ero). (B, C, H, W) -> (B, H, W).
    """
    _check_feat(feat)
    mean = feat.detach().float().mean(dim=1)  # (B, H, W)
    lo = mean.amin(dim=(1, 2), keepdim=True)
    span = mean.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (mean - lo) / span.clamp_min(torch.finfo(torch.float32).tiny), 0.0)


def minmax_threshold_mask(feat: Tensor, threshold: float) -> Tensor:
    """Deep Miner ErO (eq. 1): erase where :func:`normalized_mean_map` > threshold."""
    _check_feat(feat)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a value in [0, 1], got {threshold}")
    return (normalized_mean_map(feat) <= threshold).float().unsqueeze(1)  # (B, 1, H, W)


def _round_half_up(x: float) -> int:
    """floor(x + 1/2); the epsilon absorbs float error (0.58 * 25 = 14.499999999999998)."""
    return math.floor(x + 0.5 + 1e-9)


def random_block_mask(
    feat: Tensor, h_ratio: float, w_ratio: float, generator: torch.Generator | None = None
) -> Tensor:
    """Batch DropBlock (Dai et al., ICCV 2019): one random block erased, the same for the whole batch.

    The block has round(h_ratio*H) rows and round(w_ratio*W) columns (rounding half up); its corner
    is drawn from ``generator`` (CPU) or the global RNG, so a seeded generator reproduces it.
    """
    _check_feat(feat)
    for name, value in (("h_ratio", h_ratio), ("w_ratio", w_ratio)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}: expected a value in [0, 1], got {value}")
    b, _, h, w = feat.shape
    bh, bw = _round_half_up(h_ratio * h), _round_half_up(w_ratio * w)
    top = int(torch.randint(0, h - bh + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - bw + 1, (1,), generator=generator))
    mask = torch.ones(1, 1, h, w, device=feat.device, dtype=torch.float32)
    mask[:, :, top : top + bh, left : left + bw] = 0.0
    return mask.expand(b, 1, h, w)


class Erase(nn.Module):
    """Multiply features by ``mask_fn(features, **kwargs)`` in training; identity in eval.

    The last mask is kept in ``last_mask`` (detached) so notebooks can draw what was erased.
    """

    def __init__(self, mask_fn: MaskFn, **kwargs) -> None:
        super().__init__()
        self.mask_fn = mask_fn
        self.kwargs = kwargs
        self.last_mask: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        with torch.no_grad():
            mask = self.mask_fn(x.detach(), **self.kwargs)
        self.last_mask = mask
        return x * mask.to(x.dtype)

    def extra_repr(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items() if k != "generator")
        return f"{self.mask_fn.__name__}, {args}"
