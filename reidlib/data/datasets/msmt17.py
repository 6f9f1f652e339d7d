"""MSMT17 (Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person Re-Identification",
CVPR 2018).

Two releases share the list files ``list_train.txt``, ``list_val.txt``, ``list_query.txt`` and
``list_gallery.txt`` (one ``<relative path> <pid>`` per line):

- V1: images in ``train/`` (train and val lists) and ``test/`` (query and gallery lists);
- V2: the same images with faces masked, in ``mask_train_v2/`` and ``mask_test_v2/``.

pids come from the lists (train and test ids are both numbered from 0, so they are separate sets).
The camera comes from the file name, ``0000_000_01_0303morning_0015_0.jpg``: identity, the running
number of the image within its identity folder, camera 01..15, then date + time of day, frame and a
box index. Standard practice (and the paper's 32,621 training images) merges val into train.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from reidlib.data.datasets.base import (
    DatasetError,
    ImageRecord,
    ReidDataset,
    check_split_size,
    find_dataset_dir,
    relabel,
)

MSMT17_FOLDERS = ("MSMT17_V1", "MSMT17_V2", "MSMT17", "msmt17")
NUM_CAMERAS = 15
# release -> (train image folder, test image folder)
IMAGE_FOLDERS = {"v1": ("train", "test"), "v2": ("mask_train_v2", "mask_test_v2")}

# split -> (images, ids); train is list_train (30,248) + list_val (2,373).
MSMT17_SIZES = {"train": (32621, 1041), "query": (11659, 3060), "gallery": (82161, 3060)}
MSMT17_TRAIN_ONLY_SIZE = (30248, 1041)

# PPPP_NNN_CC_...: identity, image number, camera.
_MSMT_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_")


def load_msmt17(root: str | os.PathLike, *, include_val: bool = True) -> ReidDataset:
    """MSMT17 V1 or V2 (Wei et al. CVPR 2018), 15 cameras.

    train 32,621 images / 1,041 ids (list_train 30,248 + list_val 2,373; ``include_val=False`` keeps
    list_train only); query 11,659 / 3,060; gallery 82,161 / 3,060.
    """
    sizes = dict(MSMT17_SIZES)
    if not include_val:
        sizes["train"] = MSMT17_TRAIN_ONLY_SIZE
    return read_msmt17(root, include_val=include_val, expected_sizes=sizes)


def read_msmt17(
    root: str | os.PathLike,
    *,
    include_val: bool = True,
    expected_sizes: dict[str, tuple[int, int]] | None = None,
) -> ReidDataset:
    """Read either release from its list files; ``expected_sizes`` (split -> (images, ids)) checks."""
    folder = find_dataset_dir(Path(root), MSMT17_FOLDERS, "list_train.txt")
    release = next((r for r, (train, _) in IMAGE_FOLDERS.items() if (folder / train).is_dir()), None)
    if release is None:
        wanted = " or ".join(f"'{train}/'" for train, _ in IMAGE_FOLDERS.values())
        raise DatasetError(f"{folder}: no image folder {wanted} beside list_train.txt")
    train_dir, test_dir = (folder / sub for sub in IMAGE_FOLDERS[release])

    train = read_list(folder / "list_train.txt", train_dir)
    if include_val:
        train += read_list(folder / "list_val.txt", train_dir)
    splits = {
        "train": sorted(train, key=lambda r: r.path),
        "query": sorted(read_list(folder / "list_query.txt", test_dir), key=lambda r: r.path),
        "gallery": sorted(read_list(folder / "list_gallery.txt", test_dir), key=lambda r: r.path),
    }
    if expected_sizes is not None:
        list_names = {"train": "list_train.txt", "query": "list_query.txt", "gallery": "list_gallery.txt"}
        for split, (images, ids) in expected_sizes.items():
            check_split_size(folder / list_names[split], split, splits[split], images, ids)
    return ReidDataset("msmt17", folder, relabel(splits["train"]), splits["query"], splits["gallery"])


def read_list(list_path: Path, image_dir: Path) -> list[ImageRecord]:
    """Records of one list file; every listed image must exist below ``image_dir``."""
    if not list_path.is_file():
        raise DatasetError(f"{list_path}: list file not found")
    records = []
    for lineno, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise DatasetError(f"{list_path}:{lineno}: expected '<relative path> <pid>', got {line!r}")
        path = image_dir / fields[0]
        pid = int(fields[1])
        if pid == -1:
            continue
        records.append(ImageRecord(str(path), pid, parse_msmt17_camid(path)))
    missing = [r.path for r in records if not os.path.isfile(r.path)]
    if missing:
        raise DatasetError(f"{list_path}: {len(missing)} listed image(s) not found, e.g. {missing[0]}")
    return records


def parse_msmt17_camid(path: Path) -> int:
    """0-based camera from an MSMT17 name ``PPPP_NNN_CC_...`` (CC = camera 01..15)."""
    m = _MSMT_NAME.match(path.name)
    if m is None:
        raise DatasetError(
            f"{path}: file name does not parse; expected 'PPPP_NNN_CC_...' (identity, image number, "
            "camera), as in '0000_000_01_0303morning_0015_0.jpg'"
        )
    cam = int(m.group(3))
    if not 1 <= cam <= NUM_CAMERAS:
        raise DatasetError(f"{path}: camera {cam} outside 1..{NUM_CAMERAS}")
    return cam - 1
