"""Our numbers beside the published ones: ablation grids, the four networks, state-of-the-art tables.

- :func:`ablation_figure`: one grid (SEN Table 2, Deep Miner Tables 1-4, the r2 / tau sweeps) as dot
  plots, published values on top and ours below, each on its own y-range with the gain over the grid's
  reference row written at each point (a smoke budget and a paper budget differ by tens of points;
  what can be compared is the ordering and the gains);
- :func:`network_figure`: our four networks at one budget (rank-1, mAP, mINP, and the evaluation
  variants flip / re-ranking);
- :func:`sota_rows` and :func:`sota_scatter`: a dataset's published comparison tables (SEN Tables 3-4,
  Deep Miner Tables 5-8) with our measured rows, as a table and a rank-1 vs mAP scatter.

Figures are built without pyplot (no global state, nothing shown twice); colours are Okabe-Ito.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from reidlib.experiments.runs import NETWORK_LABELS, VARIANTS
from reidlib.viz.style import FIGURE_DPI

# Okabe-Ito, safe for the common colour-vision deficiencies
PAPER_COLOR, OURS_COLOR = "#0072B2", "#D55E00"
PAPER_COLORS = {"sen": "#E69F00", "deep_miner": "#56B4E9"}  # other published methods, by source paper
OWN_COLORS = {"sen": "#D55E00", "deep_miner": "#0072B2"}  # each paper's own method
MEASURED_COLOR = "#009E73"
SIDE_BY_SIDE_RUNS = 6  # network_figure: more runs than this and its two panels are stacked
METRIC_COLORS = {"rank1": "#0072B2", "mAP": "#E69F00", "mINP": "#009E73"}
METRIC_LABELS = {"rank1": "rank-1", "mAP": "mAP", "mINP": "mINP", "rank5": "rank-5", "rank10": "rank-10"}
DATASET_LABELS = {
    "market1501": "Market-1501",
    "dukemtmc": "DukeMTMC-reID",
    "cuhk03_labeled": "CUHK03 (L)",
    "cuhk03_detected": "CUHK03 (D)",
    "msmt17": "MSMT17",
    "synthetic": "synthetic",
}
PAPER_LABELS = {"sen": "SEN", "deep_miner": "Deep Miner", "ours": "ours"}
SOTA_TABLES = {
    ("sen", 3),
    ("sen", 4),
    ("deep_miner", 5),
    ("deep_miner", 6),
    ("deep_miner", 7),
    ("deep_miner", 8),
}
OWN_METHOD_NOTE = "this paper's method"


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)  # a renderer for text extents (label placement) and for PNG output
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def _padded_limits(values: Sequence[float], min_pad: float = 1.0) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return 0.0, 100.0
    lo, hi = min(vals), max(vals)
    pad = max(min_pad, 0.25 * (hi - lo))
    return max(0.0, lo - pad), min(100.0, hi + pad * 1.6)


# ----------------------------------------------------------------------------- ablation grids


def ablation_figure(
    compare: pd.DataFrame,
    table: str,
    *,
    title: str | None = None,
    param: str | None = None,
    metrics: Sequence[str] = ("rank1", "mAP"),
) -> Figure:
    """One grid of :func:`reidlib.experiments.paper_comparison.compare_with_paper` as dot plots: a row of
    panels per
    source (published, ours), a column per metric. Table grids put the rows on x in grid order, draw the
    reference (first) row as a dashed line and write ``value (gain)`` at each point; sweeps (``param``
    set) put the swept value on x and draw rows without a value (the baseline) as a dotted line."""
    d = compare[compare["table"] == table]
    if d.empty:
        raise ValueError(f"compare has no rows for table {table!r}; it has {sorted(set(compare['table']))}")
    labels = list(dict.fromkeys(d["row"]))
    sources = [s for s in ("paper", "ours") if (d["source"] == s).any()]
    fig, axes = _figure(5.2 * len(metrics), 3.4 * len(sources) + 0.6, len(sources), len(metrics))
    for i, source in enumerate(sources):
        s = d[d["source"] == source]
        ds = ", ".join(dataset_label(x) for x in dict.fromkeys(s["dataset"]))
        who = "published" if source == "paper" else "ours"
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            color = PAPER_COLOR if source == "paper" else OURS_COLOR
            if param is None:
                _table_panel(ax, s, labels, metric, color)
            else:
                _sweep_panel(ax, s, metric, color, param, sorted(d["value"].dropna().unique()))
            ax.set_title(f"{who}: {METRIC_LABELS.get(metric, metric)} ({ds})", fontsize=10)
            ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} (%)")
            ax.grid(axis="y", alpha=0.3)
    ours = d[d["source"] == "ours"]
    budgets = "; ".join(dict.fromkeys(ours["budget"]))
    datasets = ", ".join(dataset_label(x) for x in dict.fromkeys(ours["dataset"]))
    note = f"ours: {budgets} on {datasets}" if len(ours) else "ours: no runs"
    if "paper" in sources:
        note = "published: the paper's recipe (ResNet-50, ImageNet-pretrained).   " + note
    fig.suptitle(title or table, fontsize=12)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, color="0.3", wrap=True)
    return fig


def _table_panel(ax: Axes, s: pd.DataFrame, labels: list[str], metric: str, color: str) -> None:
    values = [
        float(s.loc[s["row"] == lab, metric].iloc[0]) if (s["row"] == lab).any() else math.nan
        for lab in labels
    ]
    x = np.arange(len(labels))
    ax.set_xticks(x, labels, rotation=15 if max(len(lab) for lab in labels) > 12 else 0, fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    if all(math.isnan(v) for v in values):
        ax.text(0.5, 0.5, "no runs yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_yticks([])
        return
    ref = values[0]
    lo, hi = _padded_limits(values)
    ax.set_ylim(lo, hi)
    if not math.isnan(ref):
        ax.axhline(ref, color="0.5", ls="--", lw=0.8)
    ax.plot(x, values, "o", color=color, ms=7)
    for xi, v in zip(x, values, strict=True):
        if math.isnan(v):
            ax.text(xi, lo + 0.05 * (hi - lo), "missing", ha="center", fontsize=8, color="0.4")
            continue
        gain = "" if xi == 0 or math.isnan(ref) else f"\n({_signed(v - ref)})"
        ax.annotate(
            f"{v:.1f}{gain}",
            (xi, v),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )


def _signed(x: float) -> str:
    """A gain in points with its sign, "+0.0" rather than "-0.0"."""
    return f"{x:+.1f}" if round(x, 1) != 0 else "+0.0"


def _sweep_panel(ax: Axes, s: pd.DataFrame, metric: str, color: str, param: str, ticks: list[float]) -> None:
    swept = s[s["value"].notna()].sort_values("value")
    base = s[s["value"].isna()]
    ax.set_xlabel(param)
    if ticks:
        span = (max(ticks) - min(ticks)) or 1.0
        ax.set_xticks(ticks)
        ax.set_xlim(min(ticks) - 0.08 * span, max(ticks) + 0.08 * span)
    values = [v for v in [*swept[metric], *base[metric]] if not math.isnan(v)]
    if not values:
        ax.text(
            0.5,
            0.5,
            "no published value" if s["source"].iloc[0] == "paper" else "no runs yet",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
        ax.set_yticks([])
        return
    lo, hi = _padded_limits(values)
    ax.set_ylim(lo, hi)
    ax.plot(swept["value"], swept[metric], "o-", color=color, ms=6)
    for xv, v in zip(swept["value"], swept[metric], strict=True):
        if not math.isnan(v):
            ax.annotate(
                f"{v:.1f}", (xv, v), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8
            )
    for _, b in base.iterrows():
        if not math.isnan(b[metric]):
            ax.axhline(b[metric], color="0.4", ls=":", lw=1)
            ax.annotate(
                f"{b['row']}: {b[metric]:.1f}",
                (0.01, b[metric]),
                xycoords=("axes fraction", "data"),
                xytext=(0, 3),
                textcoords="offset points",
                fontsize=8,
                color="0.3",
            )
    if s["source"].iloc[0] == "paper" and len(swept) < len(ticks):
        ax.text(
            0.99,
            0.03,
            "the figure's other values are not in the text",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="0.4",
        )


# ----------------------------------------------------------------------------- our four networks


def _recipe_kinds(nets: list[str], recipes: list[str]) -> list[str]:
    """What tells a network's recipes apart: ``bdb_faithful_market1501_cpu`` -> "faithful" beside
    ``bdb_market1501_cpu`` -> "" (the network's name and the suffix all recipes share removed); one
    recipe alone tells nothing apart: ""."""
    if len(set(recipes)) < 2:
        return [""] * len(nets)
    suffix = os.path.commonprefix([r[::-1] for r in recipes])[::-1]
    kinds = []
    for net, recipe in zip(nets, recipes, strict=True):
        core = recipe[: len(recipe) - len(suffix)] if suffix else recipe
        kinds.append(core[len(net) :].strip("_").replace("_", " ") if core.startswith(net) else "")
    return kinds


def network_figure(runs: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Our networks at one budget: rank-1 / mAP / mINP per network (gain over BoT in points written
    under the value when ``gain_<metric>`` columns are present, see
    :func:`reidlib.experiments.runs.gains_over_reference`), and beside it (below it for more than
    ``SIDE_BY_SIDE_RUNS`` runs) mAP for each evaluation variant the runs have."""
    if runs.empty:
        raise ValueError("runs is empty: nothing to plot")
    nets = list(runs["network"])
    seeds = list(runs["seed"]) if "seed" in runs.columns else [None] * len(nets)
    kinds = _recipe_kinds(nets, list(runs["recipe"]) if "recipe" in runs.columns else [""] * len(nets))
    repeated = {n for n in nets if nets.count(n) > 1}  # a network run with several seeds or recipes
    names = [
        NETWORK_LABELS.get(n, n) + (f"\n{k}" if k else "") + (f"\nseed {s}" if n in repeated else "")
        for n, k, s in zip(nets, kinds, seeds, strict=True)
    ]
    metrics = ["rank1", "mAP", "mINP"]
    variants = [v for v in VARIANTS if f"{v}_mAP" in runs.columns and runs[f"{v}_mAP"].notna().any()]
    # side by side for a few runs; one above the other, a full width each, once there are more
    panels = 2 if variants else 1
    nrows, ncols = (panels, 1) if len(nets) > SIDE_BY_SIDE_RUNS else (1, panels)
    fig, axes = _figure(12.5, 4.4 * nrows, nrows, ncols)
    axes = axes.ravel()
    ax = axes[0]
    x = np.arange(len(nets))
    width = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        vals = runs[metric].to_numpy(dtype=float)
        pos = x + (k - (len(metrics) - 1) / 2) * width
        ax.bar(pos, vals, width, color=METRIC_COLORS[metric], label=METRIC_LABELS[metric])
        gains = runs.get(f"gain_{metric}")
        for i, (p, v) in enumerate(zip(pos, vals, strict=True)):
            if math.isnan(v):
                continue
            text = f"{v:.1f}"
            if gains is not None and not math.isnan(gains.iloc[i]) and nets[i] != "bot":
                text += f"\n{_signed(gains.iloc[i])}"
            ax.annotate(
                text, (p, v), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8
            )
    ax.set_xticks(x, names)
    ax.set_ylabel("%")
    top = np.nanmax(runs[metrics].to_numpy(dtype=float)) if runs[metrics].notna().any().any() else 100
    ax.set_ylim(0, min(100, top * 1.25 + 2))
    ax.set_title("plain evaluation (gain over BoT in points below each value)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    if variants:
        ax = axes[1]
        width = 0.8 / len(variants)
        shades = ["#0072B2", "#56B4E9", "#E69F00", "#D55E00"]
        for k, variant in enumerate(variants):
            vals = runs[f"{variant}_mAP"].to_numpy(dtype=float)
            pos = x + (k - (len(variants) - 1) / 2) * width
            ax.bar(pos, vals, width, color=shades[k % len(shades)], label=variant)
            for p, v in zip(pos, vals, strict=True):
                if not math.isnan(v):
                    ax.annotate(  # upright: four values side by side over one run
                        f"{v:.1f}",
                        (p, v),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        rotation=90,
                        fontsize=8,
                    )
        ax.set_xticks(x, names)
        ax.set_ylabel("mAP (%)")
        vmax = np.nanmax(runs[[f"{v}_mAP" for v in variants]].to_numpy(dtype=float))
        ax.set_ylim(0, min(100, vmax * 1.3 + 4))
        ax.set_title("mAP per evaluation variant (flip: + mirrored image; rerank: k-reciprocal)", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", ncols=2)
        ax.grid(axis="y", alpha=0.3)
    budgets = "; ".join(dict.fromkeys(runs["budget"]))
    datasets = ", ".join(dataset_label(d) for d in dict.fromkeys(runs["dataset"]))
    fig.suptitle(title or f"Our networks on {datasets} ({budgets})", fontsize=12)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- state of the art


def clean_method(name: str) -> str:
    """``"*+ PLR OSNet [38]"`` -> ``"PLR OSNet"``: no citation number, no attention/stripe markers."""
    name = re.sub(r"\s*\[\d+(,\s*\d+)*\]", "", str(name))
    return re.sub(r"^[*+~\s]+", "", name).strip()


def sota_rows(published: pd.DataFrame, ours: pd.DataFrame | None, dataset: str) -> pd.DataFrame:
    """The comparison on ``dataset``: the rows of the published state-of-the-art tables (SEN Tables 3-4,
    Deep Miner Tables 5-8) and ours (:func:`reidlib.experiments.runs.as_published_rows`), sorted by mAP.

    A method printed with "-" for both numbers on this dataset is left out. Columns: method (citation
    stripped; each paper's own row named "SEN" / "Deep Miner"), kind ("this paper", "published" or
    "ours"), paper, source (e.g. "SEN Table 3; Deep Miner Table 5" when both papers print the same
    numbers for a method, which are then one row, its venue and backbone taken from whichever gives
    them), venue, backbone, rank1, mAP, score, notes.
    """
    keep = published[
        [(p, t) in SOTA_TABLES for p, t in zip(published["paper"], published["table"], strict=True)]
    ]
    keep = keep[(keep["dataset"] == dataset) & (keep["rank1"].notna() | keep["mAP"].notna())]  # "-" rows out
    rows: dict[tuple, dict] = {}
    for _, r in keep.iterrows():
        own = OWN_METHOD_NOTE in str(r["notes"])
        method = PAPER_LABELS[r["paper"]] if own else clean_method(r["method"])
        source = f"{PAPER_LABELS.get(r['paper'], r['paper'])} Table {r['table']}"
        key = (method.casefold(), r["rank1"], r["mAP"])
        if key in rows:
            rows[key]["source"] += f"; {source}"
            for col in ("venue", "backbone", "score"):
                if rows[key][col] in ("", None) or (
                    isinstance(rows[key][col], float) and math.isnan(rows[key][col])
                ):
                    rows[key][col] = r[col]
            continue
        rows[key] = {
            "method": method,
            "kind": "this paper" if own else "published",
            "paper": r["paper"],
            "source": source,
            "venue": r["venue"],
            "backbone": r["backbone"],
            "rank1": r["rank1"],
            "mAP": r["mAP"],
            "score": r["score"],
            "notes": r["notes"],
        }
    out = list(rows.values())
    if ours is not None and len(ours):
        for _, r in ours[ours["dataset"] == dataset].iterrows():
            out.append(
                {
                    "method": r["method"],
                    "kind": "ours",
                    "paper": "ours",
                    "source": "measured here",
                    "venue": r["venue"],
                    "backbone": r["backbone"],
                    "rank1": r["rank1"],
                    "mAP": r["mAP"],
                    "score": r["score"],
                    "notes": r["notes"],
                }
            )
    columns = ["method", "kind", "paper", "source", "venue", "backbone", "rank1", "mAP", "score", "notes"]
    df = pd.DataFrame(out, columns=columns)
    return df.sort_values("mAP", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def _style(r: pd.Series) -> dict:
    if r["kind"] == "ours":
        return {"marker": "D", "color": MEASURED_COLOR, "s": 70, "edgecolor": "black", "zorder": 4}
    if r["kind"] == "this paper":
        return {
            "marker": "*",
            "color": OWN_COLORS.get(r["paper"], "black"),
            "s": 260,
            "edgecolor": "black",
            "zorder": 5,
        }
    return {
        "marker": "o",
        "color": PAPER_COLORS.get(r["paper"], "0.5"),
        "s": 36,
        "edgecolor": "white",
        "zorder": 3,
    }


def _scatter(ax: Axes, rows: pd.DataFrame) -> None:
    for _, r in rows.iterrows():
        if not (math.isnan(r["rank1"]) or math.isnan(r["mAP"])):
            ax.scatter(r["mAP"], r["rank1"], linewidths=0.6, **_style(r))
    ax.set_xlabel("mAP (%)")
    ax.set_ylabel("rank-1 (%)")
    ax.grid(alpha=0.3)


def _apart(a: tuple, b: tuple, pad: float) -> bool:
    """Boxes (x0, y0, x1, y1) that do not overlap, with ``pad`` horizontal air."""
    return a[2] + pad < b[0] or a[0] - pad > b[2] or a[3] < b[1] or a[1] > b[3]


def place_labels(
    ax: Axes,
    xs: Sequence[float],
    ys: Sequence[float],
    texts: Sequence[str],
    *,
    bold: Sequence[bool] | None = None,
    fontsize: float = 7,
) -> list:
    """Label points without overlaps: each label tries right and left of its point, then shifted up
    and down by whole label heights, and takes the first free spot inside the axes (a thin leader line
    when it moved). Call after the figure's layout is final. Returns the annotations."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    bold = list(bold) if bold is not None else [False] * len(texts)
    frame = ax.get_window_extent(renderer)
    pts = ax.transData.transform(np.column_stack([xs, ys])) if len(xs) else np.zeros((0, 2))
    radius = [(9.0 if b else 4.0) * fig.dpi / 72 for b in bold]  # bold labels go with the big markers
    taken = [(px - r, py - r, px + r, py + r) for (px, py), r in zip(pts, radius, strict=True)]
    if ax.get_legend() is not None:  # keep labels off the legend
        b = ax.get_legend().get_window_extent(renderer)
        taken.append((b.x0, b.y0, b.x1, b.y1))
    to_pt = 72 / fig.dpi
    pad = 3 * fig.dpi / 72  # horizontal air between two labels on one line
    placed: list[tuple[float, float, float, float]] = []  # the labels so far
    out = []
    for i in sorted(range(len(texts)), key=lambda k: -pts[k][1]):
        probe = ax.text(0, 0, texts[i], fontsize=fontsize, fontweight="bold" if bold[i] else "normal")
        ext = probe.get_window_extent(renderer)
        probe.remove()
        w, h = ext.width, ext.height
        px, py = pts[i]
        gap = radius[i] + 2 * fig.dpi / 72
        choice = None
        for k in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -8, 10, -10):
            for side in (1, -1):
                dy = k * h * 1.1
                x0 = px + gap if side > 0 else px - gap - w
                box = (x0, py + dy - h / 2, x0 + w, py + dy + h / 2)
                inside = (
                    box[0] >= frame.x0 and box[2] <= frame.x1 and box[1] >= frame.y0 and box[3] <= frame.y1
                )
                free = all(_apart(box, b, 0.0) for b in taken) and all(_apart(box, b, pad) for b in placed)
                if inside and free:
                    choice = (side, dy, box)
                    break
            if choice:
                break
        if choice is None:
            choice = (1, 0.0, (px + gap, py - h / 2, px + gap + w, py + h / 2))
        side, dy, box = choice
        placed.append(box)
        out.append(
            ax.annotate(
                texts[i],
                (xs[i], ys[i]),
                xytext=(side * gap * to_pt, dy * to_pt),
                textcoords="offset points",
                ha="left" if side > 0 else "right",
                va="center",
                fontsize=fontsize,
                fontweight="bold" if bold[i] else "normal",
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5", "shrinkA": 0, "shrinkB": 3}
                if dy
                else None,
            )
        )
    return out


def _legend(ax: Axes, rows: pd.DataFrame) -> None:
    handles = []
    for paper in dict.fromkeys(rows.loc[rows["kind"] == "published", "paper"]):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                color=PAPER_COLORS.get(paper, "0.5"),
                label=f"published, from {PAPER_LABELS.get(paper, paper)}'s table",
            )
        )
    for paper in dict.fromkeys(rows.loc[rows["kind"] == "this paper", "paper"]):
        handles.append(
            Line2D(
                [],
                [],
                marker="*",
                ms=12,
                ls="",
                color=OWN_COLORS.get(paper, "black"),
                markeredgecolor="black",
                label=f"{PAPER_LABELS.get(paper, paper)} (the paper's own)",
            )
        )
    if (rows["kind"] == "ours").any():
        handles.append(
            Line2D(
                [],
                [],
                marker="D",
                ls="",
                color=MEASURED_COLOR,
                markeredgecolor="black",
                label="ours (measured here)",
            )
        )
    ax.legend(handles=handles, fontsize=8, loc="lower right")


def zoom_box(rows: pd.DataFrame, *, dense_from: int = 20, quantile: float = 0.2) -> tuple[float, float]:
    """Lower-left corner (mAP, rank-1) of the region the zoomed panel shows: with more than
    ``dense_from`` published methods, from their ``quantile`` (so a few weak outliers do not squeeze
    the crowded top), else from the lowest published method; the papers' own methods always inside."""
    pub = rows[rows["kind"] != "ours"]
    if len(pub) > dense_from:
        x0, y0 = pub["mAP"].quantile(quantile) - 1.0, pub["rank1"].quantile(quantile) - 0.5
    else:
        x0, y0 = pub["mAP"].min() - 1.0, pub["rank1"].min() - 1.0
    own = pub[pub["kind"] == "this paper"]
    if len(own):
        x0, y0 = min(x0, own["mAP"].min() - 1.0), min(y0, own["rank1"].min() - 1.0)
    return float(x0), float(y0)


def sota_scatter(rows: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Rank-1 against mAP for one dataset's :func:`sota_rows`, every method labelled, the papers' own
    methods as stars and ours as diamonds. When some rows lie outside the crowded region
    (:func:`zoom_box`: weak outliers, our budget runs), a left panel shows every row and labels those
    outside the dashed box, and the right panel zooms on the box and labels the rest."""
    plotted = rows.dropna(subset=["rank1", "mAP"])
    if plotted.empty or (plotted["kind"] == "ours").all():
        raise ValueError("no published row has both rank-1 and mAP: nothing to plot")
    x0, y0 = zoom_box(plotted)
    inside = (plotted["mAP"] >= x0) & (plotted["rank1"] >= y0)
    split = not inside.all()
    fig, axes = _figure(
        17 if split else 12, 8.5, 1, 2 if split else 1, width_ratios=[1, 2.3] if split else None
    )
    panels = []
    if split:
        ax = axes[0, 0]
        _scatter(ax, plotted)
        if (plotted["kind"] == "ours").any():
            ax.set_xlim(0, 100)
            ax.set_ylim(0, 100)
        ax.add_patch(
            Rectangle(
                (x0, y0),
                plotted["mAP"].max() + 1 - x0,
                plotted["rank1"].max() + 1 - y0,
                fill=False,
                ls="--",
                lw=0.8,
                color="0.4",
            )
        )
        ax.set_title("every row (the dashed box is zoomed on the right)", fontsize=10)
        panels.append((ax, plotted[~inside]))
        zoom, zoom_rows = axes[0, 1], plotted[inside]
        zoom.set_title("zoom on the dashed box", fontsize=10)
    else:
        zoom, zoom_rows = axes[0, 0], plotted
    _scatter(zoom, zoom_rows)
    xlo, xhi = zoom_rows["mAP"].min(), zoom_rows["mAP"].max()
    ylo, yhi = zoom_rows["rank1"].min(), zoom_rows["rank1"].max()
    zoom.set_xlim(xlo - 0.5 - 0.05 * (xhi - xlo), xhi + 0.5 + 0.3 * (xhi - xlo))
    zoom.set_ylim(ylo - 0.5 - 0.05 * (yhi - ylo), yhi + 0.5 + 0.08 * (yhi - ylo))
    _legend(zoom, plotted)
    panels.append((zoom, zoom_rows))
    fig.suptitle(title or "Rank-1 vs mAP", fontsize=12)
    fig.tight_layout()
    for ax, labelled in panels:
        place_labels(
            ax,
            list(labelled["mAP"]),
            list(labelled["rank1"]),
            list(labelled["method"]),
            bold=list(labelled["kind"] != "published"),
        )
    return fig
