"""A run's ``log.jsonl`` and ``metrics.json`` as tables: training curves, final numbers per evaluation
variant, and which branch trains the backbone (``train.log_branch_grads``).

:func:`read_training_log` turns the log (one JSON line per epoch, read by
:func:`reidlib.training.runfolder.read_log`) into three tables, :func:`metrics_table` turns
``metrics.json`` into one row per variant, :func:`read_branch_grads` the gradient log into one table;
:mod:`reidlib.viz.training` draws them. The log can be read while the run is still training (the engine
rewrites it atomically each epoch), so re-running a plot cell shows the curves so far.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reidlib.config import Variant
from reidlib.experiments.runs import METRICS
from reidlib.training.runfolder import LOG, read_log


class TrainingLogError(ValueError):
    """A ``log.jsonl`` or ``metrics.json`` does not hold what :func:`reidlib.training.engine.train` writes."""


@dataclass(frozen=True)
class TrainingLog:
    """One run's log as tables, each indexed by ``epoch`` (1-based, increasing)."""

    epochs: pd.DataFrame  # lr, images_per_s, iters, epoch_time_s
    losses: pd.DataFrame  # one column per WEIGHTED loss term ("global/ce", "ms/ce", ...) and "total"
    metrics: pd.DataFrame  # evaluated epochs only: rank1, rank5, rank10, mAP, mINP (%)

    def table(self) -> pd.DataFrame:
        """All three side by side, one row per epoch (metrics NaN where not evaluated)."""
        return self.epochs.join(self.losses).join(self.metrics, how="left")


# ----------------------------------------------------------------------------- parsing


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def training_log(rows: Sequence[Mapping[str, Any]], source: str = "log.jsonl") -> TrainingLog:
    """Tabulate log rows (as the engine writes them); errors name ``source`` and the row.

    Each row needs ``epoch`` (int >= 1), ``lr`` and ``images_per_s`` (numbers) and ``losses`` (a
    mapping of names to numbers); ``iters`` and ``epoch_time_s`` are optional; ``metrics`` is null or a
    mapping of metric names to numbers. An epoch logged twice keeps its last row.
    """
    by_epoch: dict[int, Mapping[str, Any]] = {}
    for i, row in enumerate(rows, start=1):
        where = f"{source}, row {i}"
        if not isinstance(row, Mapping):
            raise TrainingLogError(f"{where}: expected a JSON object, got {type(row).__name__}")
        epoch = row.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise TrainingLogError(f"{where}: 'epoch' must be an integer >= 1, got {epoch!r}")
        for key in ("lr", "images_per_s"):
            if not _number(row.get(key)):
                raise TrainingLogError(
                    f"{where} (epoch {epoch}): '{key}' must be a number, got {row.get(key)!r}"
                )
        losses = row.get("losses")
        if not isinstance(losses, Mapping) or not losses or not all(_number(v) for v in losses.values()):
            raise TrainingLogError(
                f"{where} (epoch {epoch}): 'losses' must map loss names to numbers, got {losses!r}"
            )
        metrics = row.get("metrics")
        if metrics is not None and (
            not isinstance(metrics, Mapping) or not all(_number(v) for v in metrics.values())
        ):
            raise TrainingLogError(
                f"{where} (epoch {epoch}): 'metrics' must be null or map names to numbers, got {metrics!r}"
            )
        by_epoch[epoch] = row
    if not by_epoch:
        raise TrainingLogError(f"{source}: no epoch logged yet")

    epochs = sorted(by_epoch)
    table = pd.DataFrame(
        {
            "lr": [float(by_epoch[e]["lr"]) for e in epochs],
            "images_per_s": [float(by_epoch[e]["images_per_s"]) for e in epochs],
            "iters": [by_epoch[e].get("iters", math.nan) for e in epochs],
            "epoch_time_s": [by_epoch[e].get("epoch_time_s", math.nan) for e in epochs],
        },
        index=pd.Index(epochs, name="epoch"),
    )
    names = list(dict.fromkeys(k for e in epochs for k in by_epoch[e]["losses"]))  # first-seen order
    if "total" in names:  # the sum goes last
        names = [n for n in names if n != "total"] + ["total"]
    losses = pd.DataFrame(
        {n: [float(by_epoch[e]["losses"].get(n, math.nan)) for e in epochs] for n in names},
        index=pd.Index(epochs, name="epoch"),
    )
    evaluated = [e for e in epochs if by_epoch[e].get("metrics")]
    metric_names = [m for m in METRICS if any(m in by_epoch[e]["metrics"] for e in evaluated)]
    metrics = pd.DataFrame(
        {m: [float(by_epoch[e]["metrics"].get(m, math.nan)) for e in evaluated] for m in metric_names},
        index=pd.Index(evaluated, name="epoch"),
    )
    return TrainingLog(epochs=table, losses=losses, metrics=metrics)


def read_training_log(run: str | Path) -> TrainingLog:
    """:func:`training_log` of ``run/log.jsonl`` (``run`` may also be the log file itself)."""
    path = Path(run)
    if path.is_dir() or path.suffix != ".jsonl":
        path = path / LOG
    if not path.is_file():
        raise TrainingLogError(f"{path}: no training log (is {path.parent} a reidlib run folder?)")
    try:
        rows = read_log(path)
    except ValueError as err:  # reidlib.experiments.runs.RunReadError names the line
        raise TrainingLogError(str(err)) from err
    return training_log(rows, source=str(path))


def main_variant(metrics: Mapping[str, Any]) -> str:
    """Name of the variant reported at the top level of ``metrics.json``: plain, flip, rerank or
    flip+rerank (from ``protocol.flip`` / ``protocol.rerank``, as the engine names it)."""
    protocol = metrics.get("protocol") or {}
    return Variant.of(flip=protocol.get("flip"), rerank=protocol.get("rerank")).value


def metrics_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Final numbers of ``metrics.json`` (%), one row per evaluation variant, the reported one first.

    Columns rank1, rank5, rank10, mAP, mINP (and num_valid_queries when present); index ``variant``.
    Variants come from ``metrics["variants"]`` (e.g. flip, rerank); without it, the top level alone.
    """
    if not isinstance(metrics, Mapping):
        raise TrainingLogError(f"metrics: expected the mapping of metrics.json, got {type(metrics).__name__}")
    main = main_variant(metrics)
    variants: dict[str, Mapping[str, Any]] = {main: metrics}
    extra = metrics.get("variants") or {}
    if not isinstance(extra, Mapping):
        raise TrainingLogError(f"metrics['variants']: expected a mapping variant -> numbers, got {extra!r}")
    for name, values in extra.items():
        if name != main:
            variants[name] = values
    columns = [*METRICS, "num_valid_queries"]
    rows = []
    for name, values in variants.items():
        missing = [m for m in ("rank1", "mAP") if not _number(values.get(m))]
        if missing:
            raise TrainingLogError(f"metrics.json, variant {name!r}: expected numbers under {missing}")
        rows.append({c: values.get(c, math.nan) for c in columns})
    table = pd.DataFrame(rows, index=pd.Index(list(variants), name="variant"), columns=columns)
    if table["num_valid_queries"].isna().all():
        table = table.drop(columns="num_valid_queries")
    return table


# ----------------------------------------------------------------------------- which branch trains it


def branch_grads_table(rows: Sequence[Mapping[str, Any]], source: str = "log.jsonl") -> pd.DataFrame:
    """The ``branch_grads`` entries of log rows (``train.log_branch_grads``) as one table.

    Index ``epoch`` (the rows that have the entry), columns ``(branch, "norm" | "cosine")`` in the
    logged branch order: ||g_b|| on the shared trunk and cos(g_b, g_global) (NaN where undefined,
    e.g. a detached branch). An epoch logged twice keeps its last row.
    """
    by_epoch: dict[int, Mapping[str, Any]] = {}
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping) or "branch_grads" not in row:
            continue
        grads = row["branch_grads"]
        epoch = row.get("epoch")
        ok = (
            isinstance(grads, Mapping)
            and grads
            and all(
                isinstance(v, Mapping)
                and _number(v.get("norm"))
                and (v.get("cosine") is None or _number(v["cosine"]))
                for v in grads.values()
            )
        )
        if not ok or not isinstance(epoch, int):
            raise TrainingLogError(
                f"{source}, row {i}: 'branch_grads' must map branches to {{norm, cosine}} numbers, "
                f"got {grads!r}"
            )
        by_epoch[epoch] = grads
    if not by_epoch:
        raise TrainingLogError(
            f"{source}: no epoch has branch_grads (train with train.log_branch_grads=true)"
        )
    epochs = sorted(by_epoch)
    branches = list(dict.fromkeys(b for e in epochs for b in by_epoch[e]))
    data = {}
    for b in branches:
        for key in ("norm", "cosine"):
            data[(b, key)] = [
                math.nan if by_epoch[e].get(b, {}).get(key) is None else float(by_epoch[e][b][key])
                for e in epochs
            ]
    table = pd.DataFrame(data, index=pd.Index(epochs, name="epoch"))
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["branch", "value"])
    return table


def read_branch_grads(run: str | Path) -> pd.DataFrame:
    """:func:`branch_grads_table` of ``run/log.jsonl`` (``run`` may also be the log file itself)."""
    path = Path(run)
    if path.is_dir() or path.suffix != ".jsonl":
        path = path / "log.jsonl"
    if not path.is_file():
        raise TrainingLogError(f"{path}: no training log (is {path.parent} a reidlib run folder?)")
    try:
        rows = read_log(path)
    except ValueError as err:
        raise TrainingLogError(str(err)) from err
    return branch_grads_table(rows, source=str(path))
