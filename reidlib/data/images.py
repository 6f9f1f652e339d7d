"""Torch Dataset over :class:`ImageRecord` lists, and the train / test DataLoaders.

Reproducibility of a training loader (``build_train_loader``):

- Which images form which batch, in which order: exact for a given (seed, epoch, rank, world_size),
  whatever ``workers`` is and also after resuming (the :class:`PKBatchSampler` plan). Call
  ``loader.batch_sampler.set_epoch(epoch)`` before every epoch.
- Augmentation with ``workers > 0``: workers are NOT persistent; they start afresh every epoch and
  torch seeds ``torch``, ``random`` and ``numpy`` in worker w with base + w, base drawn from
  ``loader.generator``. The training engine re-seeds that generator from (seed, epoch, rank) before
  each epoch, so an epoch's augmentations depend on nothing else: a resumed run draws the same ones
  as the uninterrupted run. (A different ``workers`` count deals batches to other workers and so
  gives other augmentations.) Restarting workers costs a fork per worker per epoch, nothing next to
  an epoch; the image cache therefore only lasts across epochs with ``workers == 0``.
- Augmentation with ``workers == 0``: drawn from the main process's global torch RNG, which the
  engine also re-seeds per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from reidlib.data.datasets.base import SPLITS, DatasetError, ImageRecord
from reidlib.data.samplers import PKBatchSampler
from reidlib.data.transforms import build_test_transform
from reidlib.utils.checks import check_int


def read_image(path: str | Path) -> Image.Image:
    """Decode an image file fully into an RGB PIL image; DatasetError naming the file if it fails.

    ``img.load()`` forces the whole decode, so a truncated JPEG raises here (PIL's default
    ``ImageFile.LOAD_TRUNCATED_IMAGES = False``; code that sets it True globally makes PIL pad
    truncated files with grey instead).
    """
    try:
        with Image.open(path) as img:
            img.load()
            return _rgb(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # OSError covers missing files, UnidentifiedImageError and "image file is truncated".
        raise DatasetError(f"cannot read image {path}: {e}") from e


_WIDE_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit PNGs open as one of these


def _rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB. PIL's ``convert`` clips a 16-bit image at 255 (all white): its values are
    scaled by 255 / 65535 instead; a floating-point image is refused (its range is unknown)."""
    if img.mode in _WIDE_INTEGER_MODES:
        values = np.asarray(img, dtype=np.float64) / 257.0  # 0..65535 -> 0..255
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        raise ValueError("a floating-point image (mode F): save it as 8-bit RGB")
    return img.convert("RGB")


def _one_colour(img: Image.Image) -> str | None:
    """The colour of an image whose every pixel has it (what a wrongly decoded file shows); else None."""
    extrema = _rgb(img).getextrema()
    if all(low == high for low, high in extrema):
        return str(tuple(low for low, _ in extrema))
    return None


JPEG_END = b"\xff\xd9"  # the EOI marker: a JPEG cut short has lost it


def load_test_batch(records: Sequence[ImageRecord], height: int, width: int) -> torch.Tensor:
    """The records' images as the network sees them at test time (resized, normalised): (N, 3, H, W)."""
    transform = build_test_transform(height, width)
    return torch.stack([transform(read_image(r.path)) for r in records])


def _header_problem(path: str) -> str | None:
    """Why ``path`` is not a usable image; None if it is whole and shows more than one colour.

    PIL identifies the file and its size from the header; a JPEG must end with its EOI marker (a file
    cut short has lost it; when it lacks it, some encoders pad after it, it is decoded once to decide)
    and is decoded at 1/8 scale (``draft``: a fraction of a full decode), other formats get PIL's
    ``verify`` and are decoded. An image of one colour is refused: a 16-bit or float file read wrong, a
    blank crop.
    """
    try:
        with Image.open(path) as img:
            if img.format != "JPEG":
                img.verify()
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
                _check_jpeg_end(path)
            img.load()
            colour = _one_colour(img)
        return None if colour is None else f"decodes to one colour {colour} everywhere"
    except DatasetError as e:
        return str(e.__cause__ or e)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return str(e) or type(e).__name__


def _check_jpeg_end(path: str) -> None:
    """A JPEG without its EOI marker near the end is read in full once, so that a cut one fails."""
    with open(path, "rb") as f:
        f.seek(max(0, Path(path).stat().st_size - 64))
        if JPEG_END in f.read():
            return
    read_image(path)


def check_image_files(records: Sequence[ImageRecord], split: str) -> None:
    """Every file of a split is a readable image (:func:`_header_problem`), before any work on them.

    DatasetError naming the first bad file and how many there are; a second per 10,000 images or so.
    """
    bad = [(r.path, why) for r in records if (why := _header_problem(r.path)) is not None]
    if bad:
        more = f" (and {len(bad) - 1} more bad files in the {split} split)" if len(bad) > 1 else ""
        path, why = bad[0]
        raise DatasetError(f"cannot read image {path} ({split} split): {why}{more}; replace or remove it")


def check_dataset_images(dataset: Any, splits: Sequence[str] = SPLITS) -> None:
    """:func:`check_image_files` on each named split of a :class:`reidlib.data.datasets.ReidDataset`."""
    for split in splits:
        check_image_files(getattr(dataset, split), split)


def _check_records(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    out = []
    for i, r in enumerate(records):
        try:
            path, pid, camid = r
            out.append(ImageRecord(str(path), int(pid), int(camid)))
        except (TypeError, ValueError) as e:
            raise ValueError(f"records[{i}] must be an ImageRecord (path, pid, camid), got {r!r}") from e
    return out


class ImageDataset(Dataset):
    """``dataset[i] -> (image, pid, camid, i)``; image is ``transform(RGB PIL image)`` or the PIL image.

    ``cache=True`` keeps every decoded image as a uint8 (H, W, 3) array after its first read, so JPEG
    decoding happens once instead of once per epoch. Market-1501 crops are 128x64, so the whole train
    split (12,936 images) takes about 320 MB. It pays off on CPU training, where decoding competes
    with the model for a few cores. The cache lives in the process that reads the images: with
    ``workers == 0`` (the CPU recipes) it lasts the whole run; training workers restart every epoch
    (see the module docstring), so with ``workers > 0`` it only helps within an epoch.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        cache: bool = False,
    ) -> None:
        self.records = _check_records(records)
        self.transform = transform
        self.cache = bool(cache)
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, index: int) -> Image.Image:
        if not self.cache:
            return read_image(self.records[index].path)
        array = self._cache.get(index)
        if array is None:
            array = np.asarray(read_image(self.records[index].path), dtype=np.uint8)  # (H, W, 3)
            self._cache[index] = array
        return Image.fromarray(array)

    def __getitem__(self, index: int) -> tuple[Any, int, int, int]:
        index = int(index)
        record = self.records[index]
        image = self._image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, record.pid, record.camid, index


def _check_workers(workers: int) -> int:
    return check_int("workers", workers, 0)


def _loader_seed(seed: int, rank: int) -> int:
    """One 63-bit generator seed per (seed, rank), so ranks do not share augmentation streams."""
    state = np.random.SeedSequence([seed, rank]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def build_train_loader(
    records: Sequence[ImageRecord],
    transform: Callable[[Image.Image], Any],
    *,
    num_identities: int,
    num_instances: int,
    seed: int,
    workers: int,
    rank: int = 0,
    world_size: int = 1,
    cache: bool = False,
) -> DataLoader:
    """Training loader: P x K batches from :class:`PKBatchSampler` (this rank's share).

    Batches are ``(images (P*K, 3, H, W), pids (P*K,), camids (P*K,), indices (P*K,))``. Call
    ``loader.batch_sampler.set_epoch(epoch)`` before every epoch; see the module docstring for what
    is reproducible.
    """
    workers = _check_workers(workers)
    dataset = ImageDataset(records, transform, cache=cache)
    sampler = PKBatchSampler(
        [r.pid for r in dataset.records],
        num_identities,
        num_instances,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        persistent_workers=False,  # fresh, re-seeded workers every epoch: exact resume (see above)
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(_loader_seed(sampler.seed, sampler.rank)),
    )


def build_test_loader(
    records: Sequence[ImageRecord],
    transform: Callable[[Image.Image], Any],
    *,
    batch_size: int,
    workers: int,
) -> DataLoader:
    """Evaluation loader: records in their given order, last batch kept (nothing shuffled or dropped)."""
    workers = _check_workers(workers)
    batch_size = check_int("batch_size", batch_size, 1)
    return DataLoader(
        ImageDataset(records, transform),
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
