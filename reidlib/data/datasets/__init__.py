"""Dataset parsers: ``load_dataset(name, root)`` returns a :class:`ReidDataset` (train / query / gallery).

Known names: ``market1501``, ``dukemtmc``, ``cuhk03_detected``, ``cuhk03_labeled``, ``msmt17``,
``folder`` (any directory in Market-1501 layout) and ``synthetic`` (the set :func:`make_synthetic`
writes, generated with its defaults on first use).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path

from reidlib.data.datasets.base import (
    SPLIT_FOLDERS,
    DatasetError,
    ImageRecord,
    ReidDataset,
    format_stats_table,
)
from reidlib.data.datasets.cuhk03 import load_cuhk03_detected, load_cuhk03_labeled
from reidlib.data.datasets.market import load_dukemtmc, load_folder, load_market1501
from reidlib.data.datasets.msmt17 import load_msmt17
from reidlib.data.datasets.synthetic import make_synthetic
from reidlib.utils.paths import data_root


def load_synthetic(root: Path) -> ReidDataset:
    """The synthetic set at ``root`` (Market-1501 layout), written with the defaults if it is missing."""
    if not (Path(root) / SPLIT_FOLDERS["train"]).is_dir():
        print(f"{root} holds no dataset: writing the synthetic set there (seed 0, a few seconds)", flush=True)
        make_synthetic(root)
    return dataclasses.replace(load_folder(root), name="synthetic")


DATASETS = {
    "market1501": load_market1501,
    "dukemtmc": load_dukemtmc,
    "cuhk03_detected": load_cuhk03_detected,
    "cuhk03_labeled": load_cuhk03_labeled,
    "msmt17": load_msmt17,
    "folder": load_folder,
    "synthetic": load_synthetic,
}

# Folder below reidlib.utils.paths.data_root() used when no root is given; 'folder' always needs a root.
DEFAULT_FOLDERS = {
    "market1501": "market1501",
    "dukemtmc": "dukemtmc",
    "cuhk03_detected": "cuhk03",
    "cuhk03_labeled": "cuhk03",
    "msmt17": "msmt17",
    "synthetic": "synthetic",
}


def load_dataset(name: str, root: str | os.PathLike | None = None, **options) -> ReidDataset:
    """Load dataset ``name`` from ``root`` (default ``data_root() / DEFAULT_FOLDERS[name]``).

    ``root`` may be the release folder itself or a folder holding it. ``options`` are the loader's
    keyword arguments (e.g. ``include_val`` for msmt17).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    loader = DATASETS[name]
    accepted = [p for p in inspect.signature(loader).parameters if p != "root"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; "
            f"accepted: {', '.join(accepted) or 'none'}"
        )
    if root is None:
        if name not in DEFAULT_FOLDERS:
            raise ValueError(
                f"dataset {name!r} needs a root folder (a directory in Market-1501 layout): give it with "
                "--data-root (train), --root (data stats, evaluate) or data.root"
            )
        root = data_root() / DEFAULT_FOLDERS[name]
    return loader(Path(root), **options)


def dataset_stats(ds: ReidDataset) -> dict[str, dict[str, int]]:
    """Images, identities and cameras per split (same as ``ds.stats()``)."""
    return ds.stats()


__all__ = [
    "DATASETS",
    "DEFAULT_FOLDERS",
    "DatasetError",
    "ImageRecord",
    "ReidDataset",
    "dataset_stats",
    "format_stats_table",
    "load_cuhk03_detected",
    "load_cuhk03_labeled",
    "load_dataset",
    "load_dukemtmc",
    "load_folder",
    "load_market1501",
    "load_msmt17",
    "make_synthetic",
]
