"""Image transforms for training and testing (torchvision.transforms.v2), and ``denormalize``.

The training pipeline is the BoT / SEN / Deep Miner one
(docs/reading-the-papers.md#shared-augmentation-and-the-p-x-k-batch): resize, horizontal flip p 0.5, pad 10 +
random crop back to size, random erasing (Zhong et al.) p 0.5 over 2-40 % of the area with aspect ratio
in [0.3, 1/0.3], filled with the ImageNet mean.

Resizing is bicubic, as BoT's ``T.Resize(size, interpolation=3)`` (3 = PIL bicubic): Market-1501 and
DukeMTMC crops are upsampled (Market's 128x64 to 256x128), where bicubic is smoother than bilinear,
and matching the baseline's choice keeps comparisons with published numbers clean. Resizing runs on
the PIL image, so bicubic overshoot is clipped to uint8 as in BoT.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from reidlib.utils.checks import check_int

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ERASING_SCALE = (0.02, 0.4)  # random erasing: fraction of the image area
ERASING_RATIO = (0.3, 1 / 0.3)  # and aspect ratio h / w (drawn log-uniform)


def _check_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        check_int(name, value, 1)


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")


def _check_range(name: str, lo_hi: Sequence[float], low: float, high: float) -> tuple[float, float]:
    if len(lo_hi) != 2 or not low <= lo_hi[0] <= lo_hi[1] <= high:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {lo_hi!r}")
    return float(lo_hi[0]), float(lo_hi[1])


def _resize(height: int, width: int) -> v2.Resize:
    return v2.Resize((height, width), interpolation=InterpolationMode.BICUBIC, antialias=True)


def _to_float_tensor() -> list[v2.Transform]:
    """PIL image -> float32 tensor (3, H, W) in [0, 1]."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]


def build_train_transform(
    height: int,
    width: int,
    *,
    flip_p: float = 0.5,
    pad: int = 10,
    erasing_p: float = 0.5,
    erasing_scale: tuple[float, float] = ERASING_SCALE,
    erasing_ratio: tuple[float, float] = ERASING_RATIO,
) -> Callable[[Image.Image], torch.Tensor]:
    """Training augmentation: RGB PIL image -> normalised float32 tensor (3, height, width).

    Resize (bicubic) -> horizontal flip (``flip_p``; 0 disables) -> zero-pad ``pad`` pixels and crop
    a random (height, width) window (skipped when ``pad == 0``) -> float in [0, 1] -> random erasing
    (``erasing_p``; 0 disables) -> Normalize(ImageNet mean, std).

    Random erasing runs before Normalize and fills with ``IMAGENET_MEAN``; after Normalize the erased
    pixels are (mean - mean) / std = 0, i.e. this equals filling 0 after Normalize. torchvision rounds
    the rectangle's sides to whole pixels (so its area can be a row or column off ``erasing_scale``)
    and erases nothing when 10 draws in a row do not fit inside the image.
    """
    scale, ratio = check_augmentation(
        height,
        width,
        flip_p=flip_p,
        pad=pad,
        erasing_p=erasing_p,
        erasing_scale=erasing_scale,
        erasing_ratio=erasing_ratio,
    )
    steps: list[v2.Transform] = [_resize(height, width)]
    if flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=flip_p))
    if pad > 0:
        steps += [v2.Pad(pad, fill=0), v2.RandomCrop((height, width))]
    steps += _to_float_tensor()
    if erasing_p > 0:
        steps.append(v2.RandomErasing(p=erasing_p, scale=scale, ratio=ratio, value=list(IMAGENET_MEAN)))
    steps.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return v2.Compose(steps)


def check_augmentation(
    height: int,
    width: int,
    *,
    flip_p: float,
    pad: int,
    erasing_p: float,
    erasing_scale: tuple[float, float] = ERASING_SCALE,
    erasing_ratio: tuple[float, float] = ERASING_RATIO,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """ValueError naming the argument for a bad training-augmentation setting; the checked ranges."""
    _check_size(height, width)
    _check_probability("flip_p", flip_p)
    _check_probability("erasing_p", erasing_p)
    check_int("pad", pad, 0)
    scale = _check_range("erasing_scale", erasing_scale, 0.0, 1.0)
    ratio = _check_range("erasing_ratio", erasing_ratio, 1e-6, float("inf"))
    return scale, ratio


def build_decode_transform(height: int, width: int) -> Callable[[Image.Image], torch.Tensor]:
    """Resize (bicubic) -> uint8 tensor (3, height, width): the train pipeline's deterministic start,
    decoded once for ``data.device_augment`` (reidlib.data.device_augment)."""
    _check_size(height, width)
    return v2.Compose([_resize(height, width), v2.ToImage()])


def build_test_transform(height: int, width: int) -> Callable[[Image.Image], torch.Tensor]:
    """Deterministic test pipeline: resize (bicubic) -> float in [0, 1] -> Normalize(ImageNet)."""
    _check_size(height, width)
    normalize = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return v2.Compose([_resize(height, width), *_to_float_tensor(), normalize])


def denormalize(
    tensor: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    clamp: bool = True,
) -> torch.Tensor:
    """Undo Normalize for plotting: (3, H, W) or (B, 3, H, W) -> x * std + mean, clamped to [0, 1].

    Returns a new tensor; the input is not modified.
    """
    if tensor.dim() not in (3, 4) or tensor.shape[-3] != len(mean) or len(mean) != len(std):
        raise ValueError(
            f"denormalize expects a (3, H, W) or (B, 3, H, W) tensor with {len(mean)} channels, "
            f"got shape {tuple(tensor.shape)}"
        )
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device)[:, None, None]  # (3, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device)[:, None, None]  # (3, 1, 1)
    out = tensor * std_t + mean_t
    return out.clamp(0.0, 1.0) if clamp else out
