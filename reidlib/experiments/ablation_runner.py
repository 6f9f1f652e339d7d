"""Running an ablation grid: each row trained into its own run folder, or read back when it exists.

:func:`run_grid` trains each row of :mod:`reidlib.experiments.ablation_grids` into ``root/<table>/<row slug>``
unless its ``metrics.json`` exists (then it is read), reusing one run for rows whose recipes are
identical (Deep Miner Table 2 "After block 3" is Table 1's).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from reidlib.config import Recipe, flatten, is_execution_key, trained_changes
from reidlib.experiments.ablation_grids import AblationRow
from reidlib.experiments.runs import METRICS, budget_label, read_run
from reidlib.training import runfolder
from reidlib.training.runfolder import is_finished, read_params

# Where the data lives is not what was trained (the same data lives under another path on another
# machine): beside the run folder's execution keys, ignored when matching a row with a folder.
PLACE_KEYS = ("data.root",)


# Below this many training iterations per row a grid checks the plumbing (it trains, evaluates and is
# read back), and its numbers say nothing about the methods: a few hundred iterations is less than two
# epochs of Market-1501, and a network from scratch is then at chance.
PLUMBING_ITERATIONS = 500


def is_plumbing_check(results: pd.DataFrame) -> bool:
    """Whether every trained row of a :func:`run_grid` result trained fewer than
    :data:`PLUMBING_ITERATIONS` iterations (False when no row has trained)."""
    done = results["iterations"].dropna() if "iterations" in results else pd.Series(dtype=float)
    return bool(len(done)) and bool((done < PLUMBING_ITERATIONS).all())


class StaleRunError(ValueError):
    """A grid row's run folder holds a run of a different recipe."""


def recipe_key(recipe: Recipe | dict[str, Any]) -> str:
    """What was trained, as a string: the recipe without execution keys and :data:`PLACE_KEYS`."""
    values = recipe.to_dict() if isinstance(recipe, Recipe) else recipe
    trained = {k: v for k, v in flatten(values).items() if not is_execution_key(k) and k not in PLACE_KEYS}
    return json.dumps(trained, sort_keys=True)


def _finished_runs(root: Path) -> dict[str, Path]:
    """recipe key -> run folder, for the finished runs already below ``root``."""
    found = {}
    for params in sorted(root.glob(f"*/*/{runfolder.PARAMS}")):
        if is_finished(params.parent):
            found.setdefault(recipe_key(read_params(params.parent)["recipe"]), params.parent)
    return found


def _result_row(row: AblationRow, recipe: Recipe, folder: Path | None, status: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "table": row.table,
        "row": row.row,
        "value": row.value,
        "source": "ours",
        "dataset": recipe.data.dataset,
        "budget": budget_label(recipe.to_dict()),
        "status": status,
        "run_dir": str(folder) if folder else "",
        "paper": row.paper,
        "paper_table": row.paper_table,
        "paper_row": row.paper_row,
        "paper_dataset": row.paper_dataset,
    }
    metrics = {}
    if folder is not None and is_finished(folder):
        run = read_run(folder)
        metrics, env = run["metrics"], run["params"].get("environment", {})
        out.update(
            git_sha=env.get("git_sha"),
            device=env.get("device"),
            train_time_s=metrics.get("train_time_s"),
            iterations=sum(int(r.get("iters", 0)) for r in run["log"]),
        )
    out.update({k: metrics.get(k, math.nan) for k in METRICS})
    return out


def run_grid(
    rows: Sequence[AblationRow],
    root: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    data_root: str | Path | None = None,
    train: bool = True,
    verbose: bool = True,
) -> pd.DataFrame:
    """Our numbers for each row, one DataFrame row each (rank1/5/10, mAP, mINP, budget, status).

    ``overrides`` (dotted recipe key -> value, e.g. ``{"optim.epochs": 2}``) are set on every row, after
    the row's own. A row's run folder is ``root/<table>/<slug>``. When it holds a metrics.json, its
    numbers are read (after checking that its params.json recipe is the row's, else
    :class:`StaleRunError`); when another finished run below ``root`` trained the very same recipe,
    that run is reused; otherwise the row is trained with :func:`reidlib.training.engine.train`
    (resumed when a last.pt is there) if ``train``, and skipped with status "missing" if not.
    """
    from reidlib.training import engine  # torch-heavy import only when a grid runs

    if overrides is not None and not isinstance(overrides, Mapping):
        raise ValueError(f"overrides: expected a mapping of recipe keys to values, got {overrides!r}")
    root = Path(root)
    finished = _finished_runs(root) if root.is_dir() else {}
    results = []
    for row in rows:
        recipe = row.load(overrides)
        key = recipe_key(recipe)
        folder = root / row.table / row.slug
        start = time.perf_counter()
        if is_finished(folder):
            saved = read_run(folder)["params"]["recipe"]
            if recipe_key(saved) != key:
                changes = trained_changes(saved, recipe.to_dict(), ignore=PLACE_KEYS)
                diff = [f"{k}: {old!r} (folder) vs {new!r} (asked)" for k, (old, new) in changes.items()]
                raise StaleRunError(
                    f"{folder}: holds a run of another recipe ({'; '.join(diff[:4])}); delete the folder "
                    "or choose another runs_root"
                )
            status = "read"
        elif key in finished:
            folder, status = finished[key], f"same run as {finished[key].parent.name}/{finished[key].name}"
        elif train:
            resume = (folder / runfolder.CHECKPOINT).is_file()
            engine.train(recipe, folder, data_root=data_root, resume=resume)
            status = f"trained ({time.perf_counter() - start:.0f} s)"
        else:
            folder, status = None, "missing (train=False)"
        if folder is not None and is_finished(folder):
            finished.setdefault(key, folder)
        results.append(_result_row(row, recipe, folder, status))
        if verbose:
            r = results[-1]
            print(f"{row.table}/{row.row}: {status}; rank-1 {r['rank1']:.1f}, mAP {r['mAP']:.1f}")
    return pd.DataFrame(results, columns=RESULT_COLUMNS)


RESULT_COLUMNS = [
    "table",
    "row",
    "value",
    "source",
    "dataset",
    "status",
    *METRICS,
    "budget",
    "run_dir",
    "git_sha",
    "device",
    "train_time_s",
    "iterations",
    "paper",
    "paper_table",
    "paper_row",
    "paper_dataset",
]
