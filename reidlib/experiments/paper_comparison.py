"""Our ablation results beside the published rows with the same setting, and the gains over each
grid's reference row.

:func:`compare_with_paper` joins the results of :func:`reidlib.experiments.ablation_runner.run_grid` with the
transcribed tables (:func:`reidlib.experiments.paper_results.load_all`); :func:`gains_over_first` measures
every
row against the first row of its table, the quantity that compares across budgets.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from reidlib.experiments.paper_results import DATASETS, PAPER_NAMES


def _norm(text: Any) -> str:
    """Row labels compared case- and spacing-insensitively ("Sam & Cham" == "SAM & CHAM")."""
    return re.sub(r"\s+", " ", str(text)).strip().casefold()


def _table_number(value: Any) -> int | None:
    digits = re.findall(r"\d+", str(value))
    return int(digits[-1]) if digits else None


def _paper_key(value: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(value).casefold()).strip("_")


def compare_with_paper(
    ours: pd.DataFrame, paper: pd.DataFrame, *, dataset: str | None = None
) -> pd.DataFrame:
    """Our grid results (``run_grid``) and the published rows with the same setting, one long table:
    table, row, value, source ("paper" or "ours"), dataset, rank1, mAP, mINP, budget, reference.

    ``paper`` holds rows of data/paper_results (columns paper, table, method, dataset, rank1, mAP).
    The published dataset of a row is its ``paper_dataset`` when set, else ``dataset``, else our
    dataset when the papers report it, else market1501. A row whose published label is not in
    ``paper`` raises ValueError naming the table and the labels it has.
    """
    missing_cols = {"paper", "table", "method", "dataset", "rank1", "mAP"} - set(paper.columns)
    if missing_cols:
        raise ValueError(f"paper rows: missing column(s) {sorted(missing_cols)}")
    keys = paper.assign(
        _paper=paper["paper"].map(_paper_key),
        _table=paper["table"].map(_table_number),
        _label=paper["method"].map(_norm),
    )
    out = []
    for _, r in ours.iterrows():
        if r["paper"] and isinstance(r["paper"], str):
            ds = r["paper_dataset"] if isinstance(r["paper_dataset"], str) else dataset
            if not ds:
                ds = r["dataset"] if r["dataset"] in DATASETS else "market1501"
            number = int(r["paper_table"])
            table = keys[(keys["_paper"] == r["paper"]) & (keys["_table"] == number)]
            hit = table[(table["_label"] == _norm(r["paper_row"])) & (table["dataset"] == ds)]
            if hit.empty:
                raise ValueError(
                    f"{r['paper']} Table {number}: no published row {r['paper_row']!r} on {ds}; "
                    f"the table has {sorted(set(table['method']))} on {sorted(set(table['dataset']))}"
                )
            p = hit.iloc[0]
            out.append(
                {
                    "table": r["table"],
                    "row": r["row"],
                    "value": r["value"],
                    "source": "paper",
                    "dataset": ds,
                    "rank1": p["rank1"],
                    "mAP": p["mAP"],
                    "mINP": math.nan,
                    "budget": "published",
                    "reference": f"{PAPER_NAMES.get(r['paper'], r['paper'])} Table {number}: {p['method']}",
                }
            )
        out.append(
            {
                "table": r["table"],
                "row": r["row"],
                "value": r["value"],
                "source": "ours",
                "dataset": r["dataset"],
                "rank1": r["rank1"],
                "mAP": r["mAP"],
                "mINP": r["mINP"],
                "budget": r["budget"],
                "reference": r["run_dir"],
            }
        )
    columns = ["table", "row", "value", "source", "dataset", "rank1", "mAP", "mINP", "budget", "reference"]
    return pd.DataFrame(out, columns=columns)


def gains_over_first(compare: pd.DataFrame, metrics: Sequence[str] = ("rank1", "mAP")) -> pd.DataFrame:
    """``compare`` with ``gain_<metric>`` columns: each row minus the first row of its (table, source)
    group, in percentage points (the first row of every table grid is its reference: Baseline, the
    global branch alone, "After block 3", "No")."""
    out = compare.copy()
    for k in metrics:
        first = out.groupby(["table", "source"], sort=False)[k].transform(
            lambda s: s.iloc[0]
        )  # NaN stays NaN
        out[f"gain_{k}"] = out[k] - first
    return out
