"""Datasets in Market-1501 layout: Market-1501, DukeMTMC-reID and any folder named the same way.

The layout is three folders, ``bounding_box_train/``, ``query/`` and ``bounding_box_test/`` (the
gallery), with file names ``PPPP_cC...jpg``: the identity (pid; -1 marks junk, 0 distractors), then
the camera number from 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from reidlib.data.datasets.base import (
    SPLIT_FOLDERS,
    ReidDataset,
    check_split_size,
    find_dataset_dir,
    read_market_folder,
    relabel,
)

MARKET1501_FOLDERS = ("Market-1501-v15.09.15", "Market-1501", "market1501")
DUKEMTMC_FOLDERS = ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmc")

# split -> (images, ids) of the official releases, after junk (pid -1) is dropped.
MARKET1501_SIZES = {"train": (12936, 751), "query": (3368, 750), "gallery": (15913, 751)}
DUKEMTMC_SIZES = {"train": (16522, 702), "query": (2228, 702), "gallery": (17661, 1110)}


def read_market_layout(
    name: str,
    root: str | os.PathLike,
    candidates: Sequence[str] = (),
    expected_sizes: dict[str, tuple[int, int]] | None = None,
) -> ReidDataset:
    """Read the three split folders below ``root`` (or below one of ``candidates`` inside it).

    Junk (pid -1) is dropped, pid 0 distractors stay, train pids are relabelled 0..N-1. With
    ``expected_sizes`` each split is checked against its (images, ids).
    """
    folder = find_dataset_dir(Path(root), candidates, SPLIT_FOLDERS["train"])
    splits = {split: read_market_folder(folder / sub) for split, sub in SPLIT_FOLDERS.items()}
    if expected_sizes is not None:
        for split, (images, ids) in expected_sizes.items():
            check_split_size(folder / SPLIT_FOLDERS[split], split, splits[split], images, ids)
    return ReidDataset(name, folder, relabel(splits["train"]), splits["query"], splits["gallery"])


def load_market1501(root: str | os.PathLike) -> ReidDataset:
    """Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015).

    6 cameras. train 12,936 images / 751 ids; query 3,368 / 750; gallery 15,913 / 751 (the 19,732
    files of ``bounding_box_test`` minus 3,819 junk images; the 2,798 pid-0 distractors stay and count
    as one id). ``root`` is ``Market-1501-v15.09.15/`` or a folder holding it.
    """
    return read_market_layout("market1501", root, MARKET1501_FOLDERS, MARKET1501_SIZES)


def load_dukemtmc(root: str | os.PathLike) -> ReidDataset:
    """DukeMTMC-reID (Ristani et al., ECCVW 2016; re-ID split by Zheng et al., ICCV 2017).

    8 cameras. train 16,522 images / 702 ids; query 2,228 / 702; gallery 17,661 / 1,110 (702 test ids
    plus 408 distractor ids). No junk images. ``root`` is ``DukeMTMC-reID/`` or a folder holding it.
    """
    return read_market_layout("dukemtmc", root, DUKEMTMC_FOLDERS, DUKEMTMC_SIZES)


def load_folder(root: str | os.PathLike) -> ReidDataset:
    """Any dataset in Market-1501 layout at ``root`` (the synthetic set, users' own data).

    Same rules as Market-1501 (junk dropped, distractors kept, train relabelled), no size check.
    """
    return read_market_layout("folder", root)
