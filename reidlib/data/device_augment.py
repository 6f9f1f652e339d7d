"""The training augmentation as batched tensor operations on the training device (``data.device_augment``).

The train split is decoded and resized (bicubic, as the PIL path) once, into one uint8 tensor
(N, 3, H, W): on the training GPU when it takes at most a quarter of its free memory, else in pinned
CPU memory (on a CPU run, plain CPU memory). Each batch is then gathered from it and augmented on
the device in a few tensor operations, with the PIL path's distributions (reidlib.data.transforms):

- horizontal flip with probability ``flip_p``;
- zero-pad ``pad`` pixels and crop back to (H, W) at offsets uniform in 0..2 * pad (flip first, as
  the PIL path);
- to float, Normalize(ImageNet), then random erasing with probability ``erasing_p``: torchvision's
  rule, up to 10 draws of area (uniform in ``erasing_scale`` x H x W) and aspect (log-uniform in
  ``erasing_ratio``), sides rounded to whole pixels, the first draw that fits strictly inside the
  image is erased (nothing if none fits), at a uniform position. The erased pixels are 0, which is
  the PIL path's fill with the ImageNet mean after Normalize.

The parameters of a batch are drawn on the CPU from ``loader.generator``, which the engine re-seeds
from (seed, epoch, rank) every epoch as for the PIL loader: with the PKBatchSampler plan an epoch's
batches and augmentations depend on nothing else, so a resumed run is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from reidlib.config import DataConfig
from reidlib.data.datasets.base import ImageRecord
from reidlib.data.images import _check_records, _loader_seed, build_test_loader
from reidlib.data.samplers import PKBatchSampler
from reidlib.data.transforms import (
    ERASING_RATIO,
    ERASING_SCALE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_decode_transform,
    check_augmentation,
)

_ERASE_ATTEMPTS = 10  # torchvision's RandomErasing


def storage_device(nbytes: int, device: torch.device) -> torch.device:
    """Where the decoded split lives: ``device`` itself (CPU, or a GPU with 4x its size free), else CPU."""
    if device.type != "cuda":
        return device
    free, _total = torch.cuda.mem_get_info(device)
    return device if 4 * nbytes <= free else torch.device("cpu")


def decode_split(
    records: Sequence[ImageRecord], height: int, width: int, *, device: torch.device, workers: int = 0
) -> Tensor:
    """Every image of ``records`` resized to (height, width): one uint8 tensor (N, 3, height, width).

    On ``device`` when it fits there (:func:`storage_device`), else in CPU memory, pinned when a GPU
    trains. ``workers`` decode in parallel (DataLoader workers).
    """
    records = _check_records(records)
    nbytes = len(records) * 3 * height * width
    where = storage_device(nbytes, torch.device(device))
    pin = where.type == "cpu" and torch.device(device).type == "cuda"
    out = torch.empty((len(records), 3, height, width), dtype=torch.uint8, device=where, pin_memory=pin)
    loader = build_test_loader(
        records, build_decode_transform(height, width), batch_size=256, workers=workers
    )
    start = 0
    for images, *_ in loader:  # (b, 3, H, W) uint8
        out[start : start + len(images)] = images.to(where)
        start += len(images)
    return out


def draw_params(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator,
    *,
    flip_p: float = 0.5,
    pad: int = 10,
    erasing_p: float = 0.5,
    erasing_scale: tuple[float, float] = ERASING_SCALE,
    erasing_ratio: tuple[float, float] = ERASING_RATIO,
) -> dict[str, Tensor]:
    """The random choices for ``n`` images, as CPU tensors of length n.

    ``flip`` (bool), crop offsets ``top``/``left`` into the padded image (int64, 0..2 * pad), and the
    erased rectangle ``erase_top``/``erase_left``/``erase_h``/``erase_w`` (int64; h = w = 0: none).
    """
    g = generator
    flip = torch.rand(n, generator=g) < flip_p
    top = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    apply = torch.rand(n, generator=g) < erasing_p
    lo, hi = erasing_scale
    log_lo, log_hi = math.log(erasing_ratio[0]), math.log(erasing_ratio[1])
    u = torch.rand(n, _ERASE_ATTEMPTS, 2, generator=g, dtype=torch.float64)  # (n, 10, 2)
    area = height * width * (lo + (hi - lo) * u[..., 0])  # (n, 10)
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])  # (n, 10)
    h = torch.round(torch.sqrt(area * aspect)).long()  # round half to even, as Python's round
    w = torch.round(torch.sqrt(area / aspect)).long()
    fits = (h < height) & (w < width)  # (n, 10)
    first = fits.int().argmax(dim=1, keepdim=True)  # first draw that fits (0 when none does)
    apply &= fits.any(dim=1)
    h = torch.where(apply, h.gather(1, first)[:, 0], 0)
    w = torch.where(apply, w.gather(1, first)[:, 0], 0)
    pos = torch.rand(n, 2, generator=g, dtype=torch.float64)  # (n, 2)
    erase_top = (pos[:, 0] * (height - h + 1)).floor().long()
    erase_left = (pos[:, 1] * (width - w + 1)).floor().long()
    return {
        "flip": flip,
        "top": top,
        "left": left,
        "erase_top": erase_top,
        "erase_left": erase_left,
        "erase_h": h,
        "erase_w": w,
    }


def augment(images: Tensor, params: dict[str, Tensor], pad: int) -> Tensor:
    """uint8 (B, 3, H, W) images -> augmented, normalised float32 (B, 3, H, W), on their device."""
    b, c, height, width = images.shape
    dev = images.device
    p = {k: v.to(dev, non_blocking=True) for k, v in params.items()}
    x = torch.where(p["flip"][:, None, None, None], images.flip(3), images)
    if pad > 0:  # output pixel (i, j) = flipped pixel (top + i - pad, left + j - pad), zero outside
        rows = p["top"][:, None] - pad + torch.arange(height, device=dev)  # (B, H)
        cols = p["left"][:, None] - pad + torch.arange(width, device=dev)  # (B, W)
        inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
        x = x.gather(2, rows.clamp(0, height - 1)[:, None, :, None].expand(b, c, height, width))
        x = x.gather(3, cols.clamp(0, width - 1)[:, None, None, :].expand(b, c, height, width))
        x = x * inside[:, None]  # (B, 3, H, W) uint8, zero padding
    x = x.to(torch.float32).mul_(1.0 / 255)  # as torchvision's ToDtype(float32, scale=True)
    mean = torch.tensor(IMAGENET_MEAN, device=dev)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=dev)[:, None, None]
    x = x.sub_(mean).div_(std)
    r = torch.arange(height, device=dev)[None, :, None]  # (1, H, 1)
    q = torch.arange(width, device=dev)[None, None, :]  # (1, 1, W)
    t, lft = p["erase_top"][:, None, None], p["erase_left"][:, None, None]
    erased = (
        (r >= t)
        & (r < t + p["erase_h"][:, None, None])
        & (q >= lft)
        & (q < lft + p["erase_w"][:, None, None])
    )
    return x.masked_fill_(erased[:, None], 0.0)  # the ImageNet mean, normalised


class DeviceAugmentLoader:
    """Stands in for the training DataLoader: same ``batch_sampler``, ``generator`` and batches
    ``(images, pids, camids, indices)``, images already augmented on ``device`` (the rest on CPU)."""

    def __init__(
        self,
        images: Tensor,
        records: Sequence[ImageRecord],
        batch_sampler: PKBatchSampler,
        *,
        device: torch.device,
        flip_p: float,
        pad: int,
        erasing_p: float,
    ) -> None:
        self.images, self.batch_sampler, self.device = images, batch_sampler, torch.device(device)
        self.pids = torch.tensor([r.pid for r in records], dtype=torch.int64)
        self.camids = torch.tensor([r.camid for r in records], dtype=torch.int64)
        self.options = {"flip_p": flip_p, "pad": pad, "erasing_p": erasing_p}
        self.generator = torch.Generator().manual_seed(_loader_seed(batch_sampler.seed, batch_sampler.rank))

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def _gather(self, idx: Tensor) -> Tensor:
        if self.images.is_cuda:  # the split lives on the GPU
            return self.images.index_select(0, idx.to(self.images.device))
        batch = self.images.index_select(0, idx)  # (B, 3, H, W) on the CPU
        if self.device.type == "cuda":  # pinned staging: the copy overlaps the GPU's work
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        _, _, height, width = self.images.shape
        for batch in self.batch_sampler:
            idx = torch.as_tensor(batch, dtype=torch.int64)
            params = draw_params(len(idx), height, width, self.generator, **self.options)
            images = augment(self._gather(idx), params, self.options["pad"])
            yield images, self.pids[idx], self.camids[idx], idx


def build_device_train_loader(
    records: Sequence[ImageRecord],
    data: DataConfig,
    *,
    seed: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> DeviceAugmentLoader:
    """The ``data.device_augment`` training loader for ``data``'s input size, augmentation and P x K:
    the split decoded once (:func:`decode_split`, ``data.workers`` decoding), batches from
    :class:`PKBatchSampler` as :func:`reidlib.data.images.build_train_loader`'s."""
    d = data
    check_augmentation(d.height, d.width, flip_p=d.flip_p, pad=d.pad, erasing_p=d.erasing_p)
    records = _check_records(records)
    sampler = PKBatchSampler(
        [r.pid for r in records],
        d.num_identities,
        d.num_instances,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    images = decode_split(records, d.height, d.width, device=device, workers=d.workers)
    return DeviceAugmentLoader(
        images, records, sampler, device=device, flip_p=d.flip_p, pad=d.pad, erasing_p=d.erasing_p
    )
