"""Training curves and final numbers of one run; the CMC curve of SEN Figs. 6-8; which branch trains the
backbone (:func:`plot_branch_grads`). The tables come from :mod:`reidlib.experiments.logs`; the
functions here only draw them. Figures are built without pyplot (no global state, nothing shown
twice); colours are Okabe-Ito.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reidlib.experiments.logs import TrainingLog
from reidlib.viz.style import FIGURE_DPI

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
