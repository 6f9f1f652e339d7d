"""Dataset statistics (SEN Table 1): split sizes, image sizes, junk, distractors, cameras, identities.

These functions turn a :class:`~reidlib.data.datasets.ReidDataset` into numbers and tables;
:mod:`reidlib.viz.data` draws them. Image sizes are read from the file headers only
(:func:`image_size_stats`, a few seconds for Market-1501's 32,217 images).

Which datasets: :func:`load_datasets` reads ``names`` from ``data_root``. One name: ``data_root`` is
that dataset's folder (or a folder holding it) and a missing dataset raises its ``DatasetError``.
Several names: ``data_root`` is a parent folder with one folder per dataset (``<data_root>/market1501``,
the names of ``reidlib.data.datasets.DEFAULT_FOLDERS``), and a missing dataset is reported, not raised,
so a survey table can list what is absent. ``data_root = ""`` means each dataset's default folder
(``reidlib.utils.paths.data_root()``, i.e. ``$REIDLIB_DATA`` or ``<repo>/data``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from reidlib.data.datasets import DEFAULT_FOLDERS, DatasetError, ImageRecord, ReidDataset, load_dataset
from reidlib.data.datasets.base import SPLIT_FOLDERS, SPLITS, read_market_folder
from reidlib.data.images import read_image
from reidlib.utils.checks import check_int

# SEN Table 1 columns, then what reidlib adds (query split, cameras per split, sizes, junk, distractors).
TABLE1_COLUMNS = (
    "dataset",
    "source",
    "train_ids",
    "train_images",
    "query_ids",
    "query_images",
    "gallery_ids",
    "gallery_images",
    "cameras",
    "train_cameras",
    "query_cameras",
    "gallery_cameras",
    "height_min",
    "height_median",
    "height_max",
    "width_min",
    "width_median",
    "width_max",
    "resolution",
    "junk_images",
    "distractor_ids",
    "distractor_images",
    "note",
)

# ----------------------------------------------------------------------------- loading


def dataset_root(name: str, data_root: str | os.PathLike, several: bool) -> Path | None:
    """The root given to ``load_dataset`` for ``name`` (None: its default folder).

    ``data_root`` empty: None. One dataset: ``data_root`` itself. Several: ``data_root/<default
    folder>`` when that exists (always for ``synthetic``, which is written there on first use), else
    ``data_root`` itself (the loaders also look for the release folder, e.g. ``Market-1501-v15.09.15``).
    """
    if not str(data_root):
        return None
    root = Path(data_root).expanduser()
    if not several:
        return root
    folder = DEFAULT_FOLDERS.get(name)
    if folder is not None and (name == "synthetic" or (root / folder).is_dir()):
        return root / folder
    return root


def load_datasets(
    names: Sequence[str], data_root: str | os.PathLike = ""
) -> tuple[dict[str, ReidDataset], dict[str, str]]:
    """Load ``names``; returns ({name: dataset} for those present, {name: one-line note} for the rest).

    With a single name a missing dataset raises its ``DatasetError`` (a run asked for it explicitly);
    with several, the error text becomes the note. Unknown names always raise ``ValueError``.
    """
    if isinstance(names, str) or not names:
        raise ValueError(f"datasets: expected a non-empty list of dataset names, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"datasets: names are repeated in {list(names)}")
    several = len(names) > 1
    present: dict[str, ReidDataset] = {}
    absent: dict[str, str] = {}
    for name in names:
        try:
            present[name] = load_dataset(name, dataset_root(name, data_root, several))
        except DatasetError as err:
            if not several:
                raise
            absent[name] = f"absent: {' '.join(str(err).split())}"
    if not present:
        notes = "; ".join(f"{k}: {v}" for k, v in absent.items())
        raise DatasetError(f"none of the datasets is present: {notes}")
    return present, absent


# ----------------------------------------------------------------------------- pure statistics


def image_size_stats(
    paths: Sequence[str | os.PathLike], max_images: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Min / median / max height and width, read from the image headers only (no decoding).

    ``max_images``: examine a seeded random sample of that many paths instead of all. ``resolution`` is
    ``"fixed"`` when every examined image has the same (height, width), else ``"vary"`` (SEN Table 1).
    """
    paths = list(paths)
    if not paths:
        raise ValueError("paths: expected at least one image path")
    if max_images is not None and max_images < len(paths):
        if max_images < 1:
            raise ValueError(f"max_images: expected a positive int or None, got {max_images!r}")
        idx = np.random.default_rng(seed).choice(len(paths), size=max_images, replace=False)
        paths = [paths[i] for i in sorted(idx)]
    start = time.perf_counter()
    sizes = np.empty((len(paths), 2), dtype=np.int64)  # (N, 2): height, width
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:  # lazy: parses the header, decodes nothing
                sizes[i] = img.height, img.width
        except OSError as err:
            raise DatasetError(f"cannot read the image header of {path}: {err}") from err
    seconds = time.perf_counter() - start
    h, w = sizes[:, 0], sizes[:, 1]
    return {
        "height_min": int(h.min()),
        "height_median": float(np.median(h)),
        "height_max": int(h.max()),
        "width_min": int(w.min()),
        "width_median": float(np.median(w)),
        "width_max": int(w.max()),
        "resolution": "fixed" if len(np.unique(sizes, axis=0)) == 1 else "vary",
        "images_examined": len(paths),
        "sampled": max_images is not None and len(paths) == max_images,
        "seconds": round(seconds, 3),
    }


def count_junk(ds: ReidDataset) -> int | None:
    """Junk files (pid -1, dropped by the parser) in the split folders of a Market-layout dataset.

    None for datasets in another layout (CUHK03, MSMT17), whose releases mark no junk.
    """
    root = Path(ds.root)
    if not (root / SPLIT_FOLDERS["gallery"]).is_dir():
        return None
    total = 0
    for folder in SPLIT_FOLDERS.values():
        if (root / folder).is_dir():
            total += sum(r.pid == -1 for r in read_market_folder(root / folder, drop_junk=False))
    return total


def distractor_pids(ds: ReidDataset) -> set[int]:
    """Gallery identities with no query image: Market's pid 0, DukeMTMC's 408 extra identities."""
    return {r.pid for r in ds.gallery} - {r.pid for r in ds.query}


def camera_counts(ds: ReidDataset) -> pd.DataFrame:
    """Images and identities per (split, camid); camids are 0-based, as in the records."""
    rows = []
    for split in SPLITS:
        records = getattr(ds, split)
        for cam in sorted({r.camid for r in records}):
            in_cam = [r for r in records if r.camid == cam]
            rows.append(
                {"split": split, "camid": cam, "images": len(in_cam), "ids": len({r.pid for r in in_cam})}
            )
    return pd.DataFrame(rows, columns=["split", "camid", "images", "ids"])


def identity_table(ds: ReidDataset) -> pd.DataFrame:
    """One row per (split, pid): images, distinct cameras, and whether it is a gallery distractor."""
    distractors = distractor_pids(ds)
    rows = []
    for split in SPLITS:
        per_pid: dict[int, list[ImageRecord]] = {}
        for r in getattr(ds, split):
            per_pid.setdefault(r.pid, []).append(r)
        for pid in sorted(per_pid):
            rows.append(
                {
                    "split": split,
                    "pid": pid,
                    "images": len(per_pid[pid]),
                    "cameras": len({r.camid for r in per_pid[pid]}),
                    "distractor": split == "gallery" and pid in distractors,
                }
            )
    return pd.DataFrame(rows, columns=["split", "pid", "images", "cameras", "distractor"])


def table1_row(ds: ReidDataset, sizes: Mapping[str, Any], junk: int | None) -> dict[str, Any]:
    """One SEN Table 1 row (plus query, per-split cameras, sizes, junk and distractors).

    Image counts are after the parser drops junk (SEN's Table 1 counts Market's 19,732 gallery files
    with the junk; here gallery = 15,913 and junk = 3,819 are separate columns).
    """
    stats = ds.stats()
    distractors = distractor_pids(ds)
    row: dict[str, Any] = {"dataset": ds.name, "source": "measured"}
    for split in SPLITS:
        row[f"{split}_ids"] = stats[split]["ids"]
        row[f"{split}_images"] = stats[split]["images"]
    row["cameras"] = len({r.camid for split in SPLITS for r in getattr(ds, split)})
    for split in SPLITS:
        row[f"{split}_cameras"] = stats[split]["cameras"]
    row.update({k: sizes[k] for k in TABLE1_COLUMNS if k in sizes})
    row["junk_images"] = junk
    row["distractor_ids"] = len(distractors)
    row["distractor_images"] = sum(r.pid in distractors for r in ds.gallery)
    row["note"] = "" if not sizes.get("sampled") else f"sizes from a sample of {sizes['images_examined']}"
    return row


def absent_row(name: str, note: str) -> dict[str, Any]:
    """The Table 1 row of a dataset that is not on disk: its name and the one-line reason."""
    return {"dataset": name, "source": "absent", "note": note}


def table1(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows of :func:`table1_row`, :func:`reidlib.experiments.paper_results.sen_table1_row`
    and :func:`absent_row` as one table.

    Counts are nullable integers, so a row without a number leaves the cell empty instead of turning
    the column into floats.
    """
    df = pd.DataFrame([{c: row.get(c) for c in TABLE1_COLUMNS} for row in rows], columns=list(TABLE1_COLUMNS))
    text = ("dataset", "source", "resolution", "note")
    for col in TABLE1_COLUMNS:
        if col not in text:
            df[col] = df[col].astype("Float64" if col.endswith("_median") else "Int64")
    return df


def dataset_summary(
    ds: ReidDataset,
    sizes: Mapping[str, Any],
    junk: int | None,
    cameras: pd.DataFrame,
    identities: pd.DataFrame,
) -> dict[str, Any]:
    """Everything the notebook measured about one dataset, for its stats JSON."""
    ids = identities[~identities["distractor"]]
    per_split = {}
    for split, group in ids.groupby("split", sort=False):
        per_split[split] = {
            f"{col}_per_identity": {
                "min": int(group[col].min()),
                "median": float(group[col].median()),
                "max": int(group[col].max()),
            }
            for col in ("images", "cameras")
        }
    distractors = distractor_pids(ds)
    return {
        "root": str(ds.root),
        "splits": ds.stats(),
        "image_sizes": dict(sizes),
        "junk_images": junk,
        "distractor_ids": len(distractors),
        "distractor_images": sum(r.pid in distractors for r in ds.gallery),
        "per_camera": cameras.to_dict(orient="records"),
        "per_identity": per_split,
    }


def sample_per_camera(records: Sequence[ImageRecord], k: int, seed: int = 0) -> dict[int, list[ImageRecord]]:
    """Up to ``k`` records per camera (sorted camids), distinct identities first, seeded."""
    check_int("samples_per_camera", k, 1)
    rng = np.random.default_rng(seed)
    out: dict[int, list[ImageRecord]] = {}
    for cam in sorted({r.camid for r in records}):
        in_cam = [r for r in records if r.camid == cam]
        order = rng.permutation(len(in_cam))
        seen: set[int] = set()
        first, rest = [], []  # first: one record per identity, in the shuffled order
        for i in order:
            (rest if in_cam[i].pid in seen else first).append(in_cam[i])
            seen.add(in_cam[i].pid)
        out[cam] = (first + rest)[:k]
    return out


def sample_images(
    samples: Mapping[int, Sequence[ImageRecord]],
) -> dict[int, list[tuple[np.ndarray, ImageRecord]]]:
    """:func:`sample_per_camera`'s records with their decoded images: ``{camid: [(RGB array, record)]}``."""
    return {cam: [(np.asarray(read_image(rec.path)), rec) for rec in recs] for cam, recs in samples.items()}
