"""Training curves and final numbers of one run folder; the CMC curve of SEN Figs. 6-8; which branch
trains the backbone (:func:`plot_branch_grads`, from ``train.log_branch_grads``).

Parsing and plotting are kept apart. :func:`read_training_log` turns a run's ``log.jsonl`` (one JSON
line per epoch, read by :func:`reidlib.runfolder.read_log`) into three tables, and :func:`metrics_table`
turns ``metrics.json`` into one row per evaluation variant; the ``plot_*`` functions only draw them.
The log can be read while the run is still training (the engine rewrites it atomically each epoch),
so re-running a plot cell shows the curves so far.

Figures are built without pyplot (no global state, nothing shown twice); colours are Okabe-Ito.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reidlib.reporting import FIGURE_DPI
from reidlib.runfolder import LOG, Variant, read_log
from reidlib.runs import METRICS

# Okabe-Ito, safe for the common colour-vision deficiencies
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
METRIC_STYLES = {  # metric -> (label, colour, marker)
    "rank1": ("rank-1", "#0072B2", "o"),
    "rank5": ("rank-5", "#56B4E9", "^"),
    "rank10": ("rank-10", "#CC79A7", "v"),
    "mAP": ("mAP", "#E69F00", "s"),
    "mINP": ("mINP", "#009E73", "D"),
}
LOSS_KIND_STYLES = {"ce": "-", "triplet": "--", "center": ":"}  # linestyle per loss kind


class TrainingLogError(ValueError):
    """A ``log.jsonl`` or ``metrics.json`` does not hold what :func:`reidlib.engine.train` writes."""


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
        raise TrainingLogError(f"{path}: no training log (is {path.parent} a run folder of reidlib.engine?)")
    try:
        rows = read_log(path)
    except ValueError as err:  # reidlib.runs.RunReadError names the line
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


# ----------------------------------------------------------------------------- plotting


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _loss_style(name: str, branches: list[str]) -> dict[str, Any]:
    if name == "total":
        return {"color": "black", "linestyle": "-", "linewidth": 2.5}
    branch, _, kind = name.rpartition("/")
    branch = branch or name
    return {
        "color": OKABE_ITO[branches.index(branch) % (len(OKABE_ITO) - 1)],  # black is the total's
        "linestyle": LOSS_KIND_STYLES.get(kind, "-"),
        "linewidth": 1.6,
    }


def _draw_losses(ax, log: TrainingLog) -> None:
    losses = log.losses
    branches = list(dict.fromkeys((n.rpartition("/")[0] or n) for n in losses.columns if n != "total"))
    for name in losses.columns:
        ax.plot(
            losses.index, losses[name], marker="o", markersize=3, label=name, **_loss_style(name, branches)
        )
    values = losses.to_numpy(dtype=float)
    if np.all(values[np.isfinite(values)] > 0):
        ax.set_yscale("log")  # weighted terms span orders of magnitude (center loss x 0.0005)
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted loss (mean over the epoch)")
    ax.set_title("Loss terms (colour: branch, line: kind)")
    ax.legend(fontsize=8, ncol=2 if len(losses.columns) > 5 else 1, loc="best")


def _draw_lr(ax, log: TrainingLog) -> None:
    ax.step(log.epochs.index, log.epochs["lr"], where="mid", color=OKABE_ITO[0])
    ax.plot(log.epochs.index, log.epochs["lr"], "o", color=OKABE_ITO[0], markersize=4)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning rate (warm-up, then steps)")


def _draw_throughput(ax, log: TrainingLog) -> None:
    ips = log.epochs["images_per_s"]
    ax.bar(log.epochs.index, ips, color=OKABE_ITO[5], edgecolor=OKABE_ITO[0], width=0.7)
    mean = float(ips.mean())
    ax.axhline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.1f} images/s")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training images / s")
    ax.set_title("Throughput (training loop only)")
    ax.legend(fontsize=8, loc="lower right")


def _draw_metrics(ax, log: TrainingLog) -> None:
    m = log.metrics
    ax.set_xlabel("epoch")
    ax.set_ylabel("%")
    ax.set_title("Test metrics at evaluated epochs")
    if m.empty:
        ax.text(0.5, 0.5, "no evaluated epoch yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylim(0, 100)
        return
    for name in m.columns:
        label, color, marker = METRIC_STYLES.get(name, (name, "gray", "o"))
        ax.plot(m.index, m[name], marker=marker, color=color, label=label)
    ax.set_ylim(0, min(100.0, max(10.0, float(np.nanmax(m.to_numpy())) * 1.15)))
    ax.legend(fontsize=8, loc="upper left")


def plot_training_curves(log: TrainingLog, *, title: str | None = None) -> Figure:
    """Four panels over epochs: weighted loss terms by name, learning rate, training throughput
    (images/s) and the test metrics at the evaluated epochs."""
    fig, axes = _figure(11, 7.5, 2, 2)
    _draw_losses(axes[0, 0], log)
    _draw_lr(axes[0, 1], log)
    _draw_throughput(axes[1, 0], log)
    _draw_metrics(axes[1, 1], log)
    last = int(log.epochs.index.max())
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, last + 0.5)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def plot_cmc(
    curves: Mapping[str, Sequence[float]],
    *,
    max_rank: int | None = None,
    title: str = "CMC curve",
) -> Figure:
    """CMC curves (matching rate in % at ranks 1..max_rank), one line per entry, as SEN Figs. 6-8.

    ``curves`` maps a legend label to a CMC in % (e.g. ``metrics.json["cmc"]``); ``max_rank`` cuts the
    curves (default: the longest one). The legend gives each curve's rank-1.
    """
    if not curves:
        raise ValueError("curves: expected at least one {label: cmc} entry")
    arrays = {}
    for label, cmc in curves.items():
        a = np.asarray(cmc, dtype=float)
        if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 100:
            raise ValueError(f"curves[{label!r}]: expected a 1-D CMC of percentages in [0, 100]")
        arrays[label] = a
    if max_rank is not None and (not isinstance(max_rank, int) or max_rank < 1):
        raise ValueError(f"max_rank: expected an integer >= 1, got {max_rank!r}")
    longest = max(a.size for a in arrays.values())
    max_rank = longest if max_rank is None else min(max_rank, longest)
    fig, axes = _figure(6.5, 4.5)
    ax = axes[0, 0]
    for i, (label, a) in enumerate(arrays.items()):
        a = a[:max_rank]
        ax.plot(
            np.arange(1, a.size + 1),
            a,
            marker="o",
            markersize=3,
            color=OKABE_ITO[i % len(OKABE_ITO)],
            label=f"{label} (rank-1 {a[0]:.1f}%)",
        )
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title(title)
    ax.set_xlim(0.5, max_rank + 0.5)
    low = min(float(a[:max_rank].min()) for a in arrays.values())
    ax.set_ylim(max(0.0, low - 5), 100.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


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
        raise TrainingLogError(f"{path}: no training log (is {path.parent} a run folder of reidlib.engine?)")
    try:
        rows = read_log(path)
    except ValueError as err:
        raise TrainingLogError(str(err)) from err
    return branch_grads_table(rows, source=str(path))


def plot_branch_grads(table: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Which branch trains the backbone: per epoch, each branch's gradient norm on the shared trunk
    (left, log scale) and the cosine of each other branch's gradient with the global one's (right).

    ``table`` is :func:`branch_grads_table` / :func:`read_branch_grads`. A branch far above the global
    line with a cosine near 0 pushes the shared backbone in a direction the global branch does not ask
    for: it then trains the backbone for itself, at the global branch's expense.
    """
    branches = list(dict.fromkeys(table.columns.get_level_values(0)))
    fig, axes = _figure(11, 4.2, 1, 2)
    norm_ax, cos_ax = axes[0, 0], axes[0, 1]
    for i, b in enumerate(branches):
        style = {"color": "black" if b == "global" else OKABE_ITO[i % (len(OKABE_ITO) - 1)], "marker": "o"}
        norm_ax.plot(table.index, table[(b, "norm")], label=b, markersize=4, **style)
        if b != "global":
            cos_ax.plot(table.index, table[(b, "cosine")], label=b, markersize=4, **style)
    norms = table.xs("norm", axis=1, level=1).to_numpy(dtype=float)
    if np.all(norms[np.isfinite(norms)] > 0):
        norm_ax.set_yscale("log")
    norm_ax.set_ylabel("||dL_branch / d(shared trunk)||")
    norm_ax.set_title("Gradient norm on the shared backbone")
    cos_ax.axhline(0.0, color="gray", linewidth=1, linestyle="--")
    cos_ax.set_ylim(-1.05, 1.05)
    cos_ax.set_ylabel("cosine with the global branch's gradient")
    cos_ax.set_title("Direction relative to the global branch")
    for ax in (norm_ax, cos_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(title or "Which branch trains the backbone")
    return fig
