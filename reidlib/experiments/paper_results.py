"""The published result tables of SEN (Fan et al. 2021) and Deep Miner (Benzine et al. 2021), as DataFrames.

The tables were transcribed once by hand into ``data/paper_results/<paper>_table<N>.csv`` (tidy: one row
per method and dataset; see the README there for the sources and the transcription decisions). SEN
Table 1 is not a result table but the datasets' statistics: ``sen_table1.csv``, one row per dataset,
read by :func:`load_dataset_table`. This module only reads them back with fixed column types, so
notebooks can put reproduced numbers beside the papers' without retyping them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from reidlib.data.stats import TABLE1_COLUMNS
from reidlib.utils.paths import paper_results_dir

COLUMNS = [
    "paper",
    "table",
    "row",
    "method",
    "venue",
    "backbone",
    "dataset",
    "rank1",
    "mAP",
    "score",
    "notes",
]
STRING_COLUMNS = ["paper", "method", "venue", "backbone", "dataset", "notes"]
INT_COLUMNS = ["table", "row"]
FLOAT_COLUMNS = ["rank1", "mAP", "score"]  # percent; NaN where the paper prints "-" or has no such column
DATASETS = ("market1501", "dukemtmc", "cuhk03_labeled", "cuhk03_detected", "msmt17")
PAPER_NAMES = {"sen": "SEN", "deep_miner": "Deep Miner"}  # paper key -> name as printed

PAPER_TABLES: dict[tuple[str, int], str] = {
    ("sen", 2): "SEN ablation: Baseline, +BS, +MS, +BS+MS on Market1501, DukeMTMC-ReID, CUHK03 (L) and (D)",
    ("sen", 3): "SEN vs state of the art on Market1501 and DukeMTMC-ReID (Rank-1, mAP, Score)",
    ("sen", 4): "SEN vs state of the art on CUHK-03 labeled and detected (Rank-1, mAP, Score)",
    ("deep_miner", 1): "Deep Miner ablation on Market-1501: position of one IE-branch (tau = 0.8)",
    ("deep_miner", 2): "Deep Miner ablation on Market-1501: multiple IE-branches (tau = 0.8)",
    ("deep_miner", 3): "Deep Miner ablation on Market-1501: local branch (IE-branches after B2, B3)",
    ("deep_miner", 4): "Deep Miner ablation on Market-1501: attention modules (SAM, CHAM)",
    ("deep_miner", 5): "Deep Miner vs state of the art on Market1501",
    ("deep_miner", 6): "Deep Miner vs state of the art on DukeMTMC-ReID",
    ("deep_miner", 7): "Deep Miner vs state of the art on CUHK03 labeled and detected (767/700 split)",
    ("deep_miner", 8): "Deep Miner vs state of the art on MSMT17",
}


# SEN Table 1 (section 4.2.1, "Statistics of datasets"): one row per dataset, the printed columns.
DATASET_TABLE = ("sen", 1)
DATASET_TABLE_COLUMNS = [
    "paper",
    "table",
    "dataset",
    "train_ids",
    "train_images",
    "gallery_ids",
    "gallery_images",
    "cameras",
    "resolution",
    "notes",
]
DATASET_TABLE_STRINGS = ["paper", "dataset", "resolution", "notes"]


class PaperResultsError(ValueError):
    """An unknown (paper, table) or a transcribed table that does not follow the schema."""


class PaperTableNotFound(FileNotFoundError):
    """The CSV of a known (paper, table) is missing from ``data/paper_results``."""


def paper_table_path(paper: str, table: int) -> Path:
    """``<repo>/data/paper_results/<paper>_table<table>.csv`` for a (paper, table) in ``PAPER_TABLES``
    or the ``DATASET_TABLE``."""
    if (paper, table) not in PAPER_TABLES and (paper, table) != DATASET_TABLE:
        known = ", ".join(f"({p!r}, {t})" for p, t in PAPER_TABLES)
        raise PaperResultsError(f"no transcribed table ({paper!r}, {table!r}); known: {known}")
    return paper_results_dir() / f"{paper}_table{table}.csv"


def load_paper_table(paper: str, table: int) -> pd.DataFrame:
    """One paper table with typed columns (see ``COLUMNS``), rows in file order.

    Strings are never NaN (an empty cell is ""); rank1, mAP and score are float percent with NaN for
    "-" or an absent column.
    """
    if (paper, table) == DATASET_TABLE:
        raise PaperResultsError(f"{paper} Table {table} holds dataset statistics: use load_dataset_table()")
    path, df = _read_csv(paper, table, COLUMNS)
    for col in INT_COLUMNS + FLOAT_COLUMNS:
        values = df[col].str.strip().replace("", None)
        try:
            df[col] = pd.to_numeric(values, errors="raise")
        except (ValueError, TypeError) as err:
            raise PaperResultsError(f"{path}: column {col!r} holds a non-number ({err})") from None
        if col in INT_COLUMNS:
            if df[col].isna().any() or (df[col] % 1 != 0).any():
                raise PaperResultsError(f"{path}: column {col!r} must hold integers in every row")
            df[col] = df[col].astype("int64")
        else:
            df[col] = df[col].astype("float64")
    bad = df[(df["paper"] != paper) | (df["table"] != table)]
    if len(bad):
        raise PaperResultsError(f"{path}: {len(bad)} row(s) do not belong to paper {paper!r} Table {table}")
    unknown = sorted(set(df["dataset"]) - set(DATASETS))
    if unknown:
        raise PaperResultsError(f"{path}: unknown dataset name(s) {unknown}; expected one of {DATASETS}")
    return df


def load_dataset_table() -> pd.DataFrame:
    """SEN Table 1 as printed: one row per dataset, counts as int64, resolution "fixed" or "vary"."""
    path, df = _read_csv(*DATASET_TABLE, DATASET_TABLE_COLUMNS)
    for col in DATASET_TABLE_COLUMNS:
        if col not in DATASET_TABLE_STRINGS:
            if not df[col].str.fullmatch(r"\d+").all():
                raise PaperResultsError(f"{path}: column {col!r} must hold a count (digits) in every row")
            df[col] = df[col].astype("int64")
    unknown = sorted(set(df["dataset"]) - set(DATASETS))
    if unknown:
        raise PaperResultsError(f"{path}: unknown dataset name(s) {unknown}; expected one of {DATASETS}")
    return df


def _read_csv(paper: str, table: int, columns: list[str]) -> tuple[Path, pd.DataFrame]:
    """The CSV of (paper, table) as strings ("" for an empty cell), its columns checked."""
    path = paper_table_path(paper, table)
    if not path.is_file():
        raise PaperTableNotFound(f"transcribed table {paper} Table {table} not found: {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    if list(df.columns) != columns:
        raise PaperResultsError(f"{path}: columns {list(df.columns)}, expected {columns}")
    return path, df


def load_all() -> pd.DataFrame:
    """Every table of ``PAPER_TABLES``, concatenated in that order (same columns and types)."""
    frames = [load_paper_table(paper, table) for paper, table in PAPER_TABLES]
    return pd.concat(frames, ignore_index=True)


def sen_table1_row(name: str) -> dict[str, Any] | None:
    """SEN Table 1's row for ``name`` as printed (``data/paper_results/sen_table1.csv``; None if the
    paper has no row for it)."""
    printed = load_dataset_table().set_index("dataset")
    if name not in printed.index:
        return None
    row = printed.loc[name]
    counts = {c: int(row[c]) for c in TABLE1_COLUMNS if c in row.index and c != "resolution"}
    return {
        "dataset": name,
        "source": "SEN Table 1",
        **counts,
        "resolution": row["resolution"],
        "note": row["notes"],
    }
