"""Ranked retrieval lists with activation maps, as in SEN Figs. 1 and 11: per query a row of images
(GREEN border: same pid, RED: wrong) and a row with each image's activation map overlaid. The rows
come from :func:`reidlib.evaluation.ranking.retrieval_rows`; this module only draws them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from reidlib.evaluation.ranking import RetrievalRow
from reidlib.viz.style import FIGURE_DPI

CORRECT_COLOR = "#009E73"  # Okabe-Ito bluish green: same pid as the query
WRONG_COLOR = "#D55E00"  # Okabe-Ito vermillion: another pid (or a distractor)
QUERY_COLOR = "#000000"


def border_color(correct: bool) -> str:
    """GREEN for a correct item (same pid), RED for a wrong one (SEN Figs. 1 and 11)."""
    return CORRECT_COLOR if correct else WRONG_COLOR


def _normalise(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def _frame(ax, height: int, width: int, color: str, linewidth: float) -> None:
    """A border drawn just inside the image, so it hugs the image whatever the axes' shape."""
    inset = linewidth * 0.35
    ax.add_patch(
        Rectangle(
            (-0.5 + inset / 2, -0.5 + inset / 2),
            width - inset,
            height - inset,
            fill=False,
            edgecolor=color,
            linewidth=linewidth,
        )
    )


def plot_ranked_lists(
    rows: Sequence[RetrievalRow],
    *,
    title: str | None = None,
    cmap: str = "inferno",
    alpha: float = 0.55,
    cell_width: float = 1.2,
) -> Figure:
    """Per query two figure rows: the query and its top-k (border GREEN = same pid, RED = wrong, with
    a check or cross in the caption as well), then each image with its activation map overlaid
    (bilinear upsampling of the h x w map, min-max scaled per image; colour bar on the right).

    Axes are placed in inches so each image keeps its aspect and the two rows of a query stay
    together; ``cell_width`` is the width of one image in inches.
    """
    if not rows:
        raise ValueError("rows: expected at least one RetrievalRow")
    ncols = max(len(r.records) for r in rows)
    height, width = rows[0].images.shape[1:3]
    cell_h = cell_width * height / width
    left, right, top, bottom = 0.45, 0.75, 0.45 if title else 0.1, 0.1
    gap_x, gap_row, gap_block, caption = 0.08, 0.05, 0.3, 0.42
    block_h = caption + 2 * cell_h + gap_row
    fig_w = left + ncols * cell_width + (ncols - 1) * gap_x + right
    fig_h = top + len(rows) * block_h + (len(rows) - 1) * gap_block + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)

    def axes_at(x: float, y_top: float):  # inches from the left / top edge of the figure
        box = (x / fig_w, 1 - (y_top + cell_h) / fig_h, cell_width / fig_w, cell_h / fig_h)
        ax = fig.add_axes(box)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        return ax

    overlay = None
    for r, row in enumerate(rows):
        y_images = top + r * (block_h + gap_block) + caption
        y_maps = y_images + cell_h + gap_row
        q = row.records[0]
        for c, (image, amap, rec) in enumerate(zip(row.images, row.maps, row.records, strict=True)):
            h, w = image.shape[:2]
            extent = (-0.5, w - 0.5, h - 0.5, -0.5)
            x = left + c * (cell_width + gap_x)
            ax_img, ax_map = axes_at(x, y_images), axes_at(x, y_maps)
            ax_img.imshow(image, extent=extent)
            ax_map.imshow(image, extent=extent)
            overlay = ax_map.imshow(
                _normalise(amap),
                cmap=cmap,
                alpha=alpha,
                interpolation="bilinear",
                extent=extent,
                vmin=0,
                vmax=1,
            )
            if c == 0:
                _frame(ax_img, h, w, QUERY_COLOR, 2)
                ax_img.set_title(f"query\npid {q.pid} cam {q.camid}", fontsize=8)
                ax_map.set_ylabel("activation map", fontsize=8)
                continue
            ok = bool(row.ranked.correct[c - 1])
            _frame(ax_img, h, w, border_color(ok), 5)
            mark = "\u2713" if ok else "\u2717"
            ax_img.set_title(
                f"#{c} {mark} pid {rec.pid} cam {rec.camid}\nd={row.ranked.distances[c - 1]:.3f}",
                fontsize=8,
                color=border_color(ok),
            )
    cax = fig.add_axes(
        ((fig_w - right + 0.15) / fig_w, bottom / fig_h, 0.12 / fig_w, (fig_h - top - bottom) / fig_h)
    )
    bar = fig.colorbar(overlay, cax=cax)
    bar.solids.set_alpha(1)
    bar.set_label("activation F(A), min-max per image (SEN eq. 1)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.12 / fig_h, va="top")
    return fig
