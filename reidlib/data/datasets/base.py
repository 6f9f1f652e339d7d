"""What every dataset parser returns, and the checks they share.

A dataset is three lists of :class:`ImageRecord` (path, pid, camid): ``train`` with pids relabelled
0..N-1 (sorted by the original pid), ``query`` and ``gallery`` with their original pids. Camera ids
are 0-based. Junk images (pid -1) are dropped; pid 0 distractors stay in the gallery.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# PPPP_cC... : pid (may be -1), then the camera digit(s); Market-1501, DukeMTMC-reID and the
# synthetic set all name their files like this.
_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")


SPLITS = ("train", "query", "gallery")
# The Market-1501 layout's folder per split (DukeMTMC-reID and the synthetic set share it).
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


class DatasetError(ValueError):
    """A dataset on disk is missing, malformed, or not the size its release says it is."""


class ImageRecord(NamedTuple):
    path: str
    pid: int
    camid: int


@dataclass(frozen=True)
class ReidDataset:
    """Train / query / gallery splits of one ReID dataset."""

    name: str
    root: Path
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    def stats(self) -> dict[str, dict[str, int]]:
        """Images, identities and cameras per split (the ``data stats --json`` form)."""
        return {name: split_stats(getattr(self, name)) for name in SPLITS}


def split_stats(records: Sequence[ImageRecord]) -> dict[str, int]:
    return {
        "images": len(records),
        "ids": len({r.pid for r in records}),
        "cameras": len({r.camid for r in records}),
    }


def is_image_file(path: Path) -> bool:
    """True for image files, also with a doubled extension such as ``x.jpg.jpg``."""
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def parse_market_name(path: Path) -> tuple[int, int]:
    """(pid, 0-based camid) from a Market-1501-style name ``PPPP_cC...``; error naming the file."""
    m = _MARKET_NAME.match(path.name)
    if m is None:
        raise DatasetError(
            f"{path}: file name does not parse; expected 'PPPP_cC...<ext>' (pid, then camera), "
            "as in '0002_c1s1_000451_03.jpg'"
        )
    pid, cam = int(m.group(1)), int(m.group(2))
    if cam < 1:
        raise DatasetError(f"{path}: camera number must start at 1, got c{cam}")
    return pid, cam - 1


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name; stray files (Thumbs.db, .DS_Store) are ignored."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def read_market_folder(folder: Path, *, drop_junk: bool = True) -> list[ImageRecord]:
    """Records of a folder in Market-1501 naming; pid -1 (junk) dropped unless ``drop_junk=False``."""
    records = []
    for path in list_images(folder):
        pid, camid = parse_market_name(path)
        if pid == -1 and drop_junk:
            continue
        records.append(ImageRecord(str(path), pid, camid))
    return records


def relabel(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    """Train pids mapped to 0..N-1 in increasing order of the original pid."""
    records = list(records)
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [ImageRecord(r.path, mapping[r.pid], r.camid) for r in records]


def check_split_size(
    folder: Path, split: str, records: Sequence[ImageRecord], images: int, ids: int | None = None
) -> None:
    """Fail with the folder and both counts when a split is not the size of the official release."""
    got = split_stats(records)
    if got["images"] != images or (ids is not None and got["ids"] != ids):
        want = f"{images} images" + (f" / {ids} ids" if ids is not None else "")
        raise DatasetError(
            f"{folder}: {split} split has {got['images']} images / {got['ids']} ids, expected {want} "
            "(the official release). Is the folder complete? Use dataset 'folder' for a custom set."
        )


def find_dataset_dir(root: Path, candidates: Sequence[str], marker: str) -> Path:
    """The folder holding ``marker``: ``root`` itself or one of ``candidates`` below it."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: dataset root does not exist (see README, 'Datasets')")
    for folder in (root, *(root / c for c in candidates)):
        if (folder / marker).exists():
            return folder
    tried = ", ".join(str(root / c) for c in ("", *candidates))
    raise DatasetError(f"{root}: no '{marker}' found; looked in {tried} (see README, 'Datasets')")


def format_stats_table(ds: ReidDataset) -> str:
    """Plain-text table of images / ids / cameras per split (``reidlib data stats``)."""
    rows = [("split", "images", "ids", "cameras")]
    rows += [
        (split, f"{s['images']:,}", f"{s['ids']:,}", f"{s['cameras']:,}") for split, s in ds.stats().items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{ds.name}  ({ds.root})"]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, 4)]
        lines.append("  ".join(cells))
    return "\n".join(lines)
