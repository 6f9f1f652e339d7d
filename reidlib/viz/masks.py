"""Drawing what the erasing networks erase: activation maps and keep-masks over the input images.

Every mask and score drawn here comes from :mod:`reidlib.erasing` (the functions the networks call) and
every map from the networks' ``feature_maps``; this module picks the maps each mask reads
(:func:`erasing_inputs`) and draws them. A mask ``(h, w)`` lives on the feature-map grid;
:func:`upsample_nearest` maps each image pixel to the cell that covers it, so a figure shows exactly
which cells are erased: erased cells are shaded and hatched, and the cell grid is drawn. Activation maps
are drawn cell by cell too (no smoothing), on a per-image colour scale. Figures are built without
pyplot (no global state); colours are Okabe-Ito.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from reidlib.data.transforms import denormalize
from reidlib.viz.style import FIGURE_DPI

ERASED_COLOR = "#D55E00"  # Okabe-Ito vermillion: hatching of erased cells, erased bars
KEPT_COLOR = "#0072B2"  # Okabe-Ito blue: kept positions
MAP_CMAP = "viridis"
SHADE_ALPHA = 0.55


class OverlayColumn(NamedTuple):
    """One column of :func:`plot_overlay_grid`: the image alone, a map, or a keep-mask per image."""

    title: str
    kind: str  # "image" | "map" | "mask"
    grids: np.ndarray | None = None  # (N, h, w): activation maps, or keep-masks (1 keep, 0 erase)
    erased: np.ndarray | None = None  # (N, h, w) keep-masks whose erased cells a map column hatches


class ConstructionRow(NamedTuple):
    """One row of :func:`plot_mask_construction`: the score a mask is made from, and the mask."""

    label: str  # e.g. "M1 = lowest N1 of F(A)"
    score: np.ndarray  # (h, w) the map the mask function ranks or thresholds
    mask: np.ndarray  # (h, w) keep-mask from reidlib.erasing
    threshold: float | None = None  # drawn as a line on the sorted scores (Deep Miner's tau)


# ----------------------------------------------------------------------------- pure helpers


def upsample_nearest(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) grid -> (H, W): pixel (y, x) takes the value of cell (y * h // H, x * w // W).

    For H = k * h (a network's stride) every cell becomes a k x k block; otherwise cells differ by at
    most one pixel. Pure indexing, so a mask stays exactly 0/1.
    """
    grid = np.asarray(grid)
    if grid.ndim != 2:
        raise ValueError(f"grid: expected a 2-D (h, w) array, got shape {grid.shape}")
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size: expected a positive (height, width), got {size}")
    rows = np.arange(height) * grid.shape[0] // height  # (H,)
    cols = np.arange(width) * grid.shape[1] // width  # (W,)
    return grid[rows[:, None], cols[None, :]]  # (H, W)


def cell_edges(cells: int, pixels: int) -> np.ndarray:
    """Pixel coordinates of the cell borders along one axis, as :func:`upsample_nearest` assigns them.

    Cell i covers the pixels p with p * cells // pixels == i, i.e. from ceil(i * pixels / cells).
    """
    return -(-np.arange(cells + 1) * pixels // cells)  # (cells + 1,) ceil division


def shade_erased(
    image: np.ndarray, keep_mask: np.ndarray, color=(0.0, 0.0, 0.0), alpha: float = SHADE_ALPHA
) -> np.ndarray:
    """Blend the pixels of erased cells (mask 0) towards ``color``; kept pixels are unchanged.

    ``image`` (H, W, 3) in [0, 1]; ``keep_mask`` (h, w) on the feature grid. Returns a new array.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: expected an (H, W, 3) array, got shape {image.shape}")
    erased = upsample_nearest(np.asarray(keep_mask) == 0, image.shape[:2])  # (H, W) bool
    out = image.copy()
    out[erased] = (1 - alpha) * image[erased] + alpha * np.asarray(color, dtype=np.float64)
    return out


def grids(masks_or_maps: Tensor) -> np.ndarray:
    """(B, 1, h, w) or (B, h, w) tensor -> (B, h, w) float numpy array, for the plot functions."""
    t = masks_or_maps.detach().float().cpu()
    return (t[:, 0] if t.dim() == 4 else t).numpy()


def to_display_images(images: Tensor) -> np.ndarray:
    """Normalised (N, 3, H, W) network input -> (N, H, W, 3) float array in [0, 1] for imshow."""
    return denormalize(images.detach().float().cpu()).permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------------- drawing


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_grid(ax: Axes, cells: tuple[int, int], size: tuple[int, int]) -> None:
    """The feature-map cell borders over an image drawn with extent (0, W, H, 0)."""
    (h, w), (height, width) = cells, size
    for y in cell_edges(h, height)[1:-1]:
        ax.axhline(y, color="white", linewidth=0.5, alpha=0.6)
    for x in cell_edges(w, width)[1:-1]:
        ax.axvline(x, color="white", linewidth=0.5, alpha=0.6)


def _hatch_erased(ax: Axes, keep_mask: np.ndarray, size: tuple[int, int]) -> int:
    """One hatched rectangle per erased cell (mask 0); returns their number."""
    ys, xs = cell_edges(keep_mask.shape[0], size[0]), cell_edges(keep_mask.shape[1], size[1])
    cells = list(zip(*np.nonzero(keep_mask == 0), strict=True))
    for i, j in cells:
        ax.add_patch(
            Rectangle(
                (xs[j], ys[i]),
                xs[j + 1] - xs[j],
                ys[i + 1] - ys[i],
                fill=False,
                hatch="////",
                edgecolor=ERASED_COLOR,
                linewidth=0.0,
            )
        )
    return len(cells)


def draw_map(
    ax: Axes, image: np.ndarray, grid: np.ndarray, keep_mask: np.ndarray | None = None, alpha: float = 0.6
) -> None:
    """An activation map over the image, one flat colour per cell (per-image colour scale).

    With ``keep_mask`` the erased cells are hatched too (a map after erasing, SEN Fig. 5d).
    """
    height, width = image.shape[:2]
    ax.imshow(image, extent=(0, width, height, 0))
    ax.imshow(
        upsample_nearest(grid, (height, width)),
        extent=(0, width, height, 0),
        cmap=MAP_CMAP,
        alpha=alpha,
        interpolation="nearest",
    )
    if keep_mask is not None:
        _hatch_erased(ax, np.asarray(keep_mask), (height, width))
    _draw_grid(ax, grid.shape, (height, width))
    _bare(ax)


def draw_mask(ax: Axes, image: np.ndarray, keep_mask: np.ndarray) -> int:
    """The image with erased cells shaded and hatched, and the cell grid; returns the erased count."""
    height, width = image.shape[:2]
    keep_mask = np.asarray(keep_mask)
    ax.imshow(shade_erased(image, keep_mask), extent=(0, width, height, 0))
    count = _hatch_erased(ax, keep_mask, (height, width))
    _draw_grid(ax, keep_mask.shape, (height, width))
    _bare(ax)
    return count


def plot_overlay_grid(
    images: np.ndarray,
    columns: Sequence[OverlayColumn],
    row_labels: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
    """Rows = images, columns = the input image, maps or masks (SEN Figs. 2, 4, 5; Deep Miner Fig. 3).

    ``images`` (N, H, W, 3) in [0, 1]. Mask panels are labelled with their erased count.
    """
    images = np.asarray(images)
    n = len(images)
    for col in columns:
        if col.kind not in ("image", "map", "mask"):
            raise ValueError(f"column {col.title!r}: kind must be image, map or mask, got {col.kind!r}")
        if col.kind != "image" and (col.grids is None or len(col.grids) != n):
            raise ValueError(f"column {col.title!r}: expected {n} grids (one per image)")
        if col.erased is not None and len(col.erased) != n:
            raise ValueError(f"column {col.title!r}: expected {n} erased masks (one per image)")
    aspect = images.shape[1] / images.shape[2]
    fig = _figure(1.45 * len(columns) + 0.4, (1.45 * aspect + 0.45) * n + 0.5)
    axes = np.asarray(fig.subplots(n, len(columns), squeeze=False))
    for i in range(n):
        for k, col in enumerate(columns):
            ax = axes[i, k]
            if col.kind == "image":
                ax.imshow(images[i])
                _bare(ax)
            elif col.kind == "map":
                draw_map(ax, images[i], col.grids[i], None if col.erased is None else col.erased[i])
                ax.set_xlabel(f"{col.grids[i].shape[0]}x{col.grids[i].shape[1]} grid", fontsize=8)
            else:
                erased = draw_mask(ax, images[i], col.grids[i])
                ax.set_xlabel(f"erased {erased}/{col.grids[i].size}", fontsize=8)
            if i == 0:
                ax.set_title(col.title, fontsize=8)
        axes[i, 0].set_ylabel(row_labels[i] if row_labels is not None else f"image {i}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_mask_sweep(
    images: np.ndarray,
    rows: Sequence[tuple[str, np.ndarray]],
    title: str = "",
    column_labels: Sequence[str] | None = None,
    chosen: int | None = None,
) -> Figure:
    """One row of masks per parameter value, one column per image; panels give the erased count.

    ``rows``: (label, keep-masks (N, h, w)) per value, e.g. ("r2 = 0.25\\nN2 = 32", masks);
    ``chosen``: the row of the value the notebook uses, labelled in bold with "(chosen)".
    """
    images = np.asarray(images)
    n = len(images)
    if not rows:
        raise ValueError("rows: expected at least one (label, masks) row")
    for label, masks in rows:
        if len(masks) != n:
            raise ValueError(f"row {label!r}: expected {n} masks (one per image), got {len(masks)}")
    aspect = images.shape[1] / images.shape[2]
    fig = _figure(1.45 * n + 1.2, (1.45 * aspect + 0.35) * len(rows) + 0.6)
    axes = np.asarray(fig.subplots(len(rows), n, squeeze=False))
    for r, (label, masks) in enumerate(rows):
        for i in range(n):
            erased = draw_mask(axes[r, i], images[i], masks[i])
            axes[r, i].set_xlabel(f"erased {erased}/{masks[i].size}", fontsize=8)
            if r == 0:
                axes[r, i].set_title(
                    column_labels[i] if column_labels is not None else f"image {i}", fontsize=8
                )
        is_chosen = r == chosen
        axes[r, 0].set_ylabel(
            f"{label}\n(chosen)" if is_chosen else label, fontsize=9, fontweight="bold" if is_chosen else None
        )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_mask_construction(image: np.ndarray, rows: Sequence[ConstructionRow], title: str = "") -> Figure:
    """How a mask is made from its score map, one row per mask (SEN Fig. 4, Deep Miner Fig. 3).

    Columns: the score on the feature grid; the scores sorted (SEN eq. 2's Z), erased positions in
    vermillion, kept in blue, with the threshold line when there is one; the mask over the image.
    """
    if not rows:
        raise ValueError("rows: expected at least one ConstructionRow")
    image = np.asarray(image)
    aspect = image.shape[0] / image.shape[1]
    fig = _figure(7.8, (1.6 * aspect + 0.5) * len(rows) + 0.5)
    axes = np.asarray(fig.subplots(len(rows), 3, squeeze=False, width_ratios=(1, 2.6, 1)))
    for r, row in enumerate(rows):
        score, mask = np.asarray(row.score, dtype=np.float64), np.asarray(row.mask)
        if score.shape != mask.shape:
            raise ValueError(f"row {row.label!r}: score {score.shape} and mask {mask.shape} differ in shape")
        ax_map, ax_sorted, ax_mask = axes[r]
        draw_map(ax_map, image, score)
        ax_map.set_ylabel(row.label, fontsize=8)
        ax_map.set_xlabel(f"score on the {score.shape[0]}x{score.shape[1]} grid", fontsize=8)
        order = np.argsort(score, axis=None, kind="stable")
        erased = (mask.reshape(-1) == 0)[order]
        colors = np.where(erased, ERASED_COLOR, KEPT_COLOR)
        ax_sorted.bar(np.arange(score.size), score.reshape(-1)[order], width=1.0, color=colors)
        if row.threshold is not None:
            ax_sorted.axhline(
                row.threshold,
                color="black",
                linestyle="--",
                linewidth=1,
                label=f"threshold {row.threshold:g}",
            )
            ax_sorted.legend(fontsize=8, frameon=False, loc="upper left")
        ax_sorted.set_xlabel("positions sorted by score (erased in vermillion)", fontsize=8)
        ax_sorted.set_ylabel("score", fontsize=8)
        ax_sorted.tick_params(labelsize=8)
        count = draw_mask(ax_mask, image, mask)
        ax_mask.set_xlabel(f"erased {count}/{mask.size}", fontsize=8)
        if r == 0:
            ax_map.set_title("score map", fontsize=8)
            ax_sorted.set_title("sorted scores", fontsize=8)
            ax_mask.set_title("keep-mask", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _placement_bars(ax: Axes, rows: pd.DataFrame) -> None:
    x = np.arange(len(rows))
    ax.bar(x - 0.2, rows["observed_share"], 0.4, color="#d55e00", label="erased cells there")
    ax.bar(x + 0.2, rows["chance_share"], 0.4, color="#999999", label="a random mask of the same size")
    for i, (obs, chance) in enumerate(zip(rows["observed_share"], rows["chance_share"], strict=True)):
        ax.text(i - 0.2, obs + 1, f"{obs:.0f}", ha="center", fontsize=8)
        ax.text(i + 0.2, chance + 1, f"{chance:.0f}", ha="center", fontsize=8)
    ax.set_xticks(x, [f"{m}\non {c}" for m, c in zip(rows.index, rows["claim"], strict=True)])
    ax.set_ylim(0, 105)


def plot_placement(rows: pd.DataFrame, title: str = "") -> Figure:
    """Bars per mask: the share of its erased cells where its paper says it erases (person or
    background) beside the share a random mask of the same size would get (``mask_placement``)."""
    fig = _figure(1.6 + 1.3 * len(rows), 3.4)
    ax = fig.add_subplot()
    _placement_bars(ax, rows)
    ax.set_ylabel("% of erased cells")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    return fig


def plot_placement_side_by_side(panels: Sequence[tuple[str, pd.DataFrame]], title: str = "") -> Figure:
    """:func:`plot_placement` of several networks, one panel each (``(name, rows)`` pairs), on one
    y-axis, so that a mask's share can be read across networks."""
    most = max(len(rows) for _, rows in panels)
    fig = _figure(0.6 + (1.0 + 1.3 * most) * len(panels), 3.6)
    axes = np.asarray(fig.subplots(1, len(panels), sharey=True, squeeze=False))[0]
    for ax, (name, rows) in zip(axes, panels, strict=True):
        _placement_bars(ax, rows)
        ax.set_title(name, fontsize=9)
    axes[0].set_ylabel("% of erased cells")
    fig.legend(
        *axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8, frameon=False
    )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
