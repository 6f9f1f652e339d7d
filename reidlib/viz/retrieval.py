"""Ranked retrieval lists with activation maps, as in SEN Figs. 1 and 11.

- :func:`ranked_lists`: for each query, the top-k gallery items under the standard protocol's junk
  rule (gallery items with the query's pid AND camera are removed before ranking,
  docs/reading-the-papers.md#evaluation-standard-protocol), with a correct/wrong flag per item (same pid
  as the query). Ties are broken by gallery index, as in :func:`reidlib.metrics.evaluate_rank`, so the
  rank-1 of these lists is the rank-1 of the evaluation.
- :func:`choose_queries`: a seeded choice of queries that shows a failure (wrong rank-1) when there is
  one, and a success when there is one.
- :func:`retrieval_rows`: the images (test transform, denormalised) and the activation map
  F(A) = sum_c |A_c|^p (SEN eq. 1, :func:`reidlib.erasing.activation_map`) of the network's backbone
  output (``feature_maps``' ``b4``) for each query and its list.
- :func:`plot_ranked_lists`: per query a row of images (GREEN border: same pid, RED: wrong) and a row
  with each image's activation map overlaid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from reidlib.checks import check_int
from reidlib.datasets.base import ImageRecord
from reidlib.erasing import activation_map
from reidlib.imagedata import load_test_batch
from reidlib.metrics import junk_mask
from reidlib.models import ReIDNetwork
from reidlib.reporting import FIGURE_DPI
from reidlib.transforms import denormalize

CORRECT_COLOR = "#009E73"  # Okabe-Ito bluish green: same pid as the query
WRONG_COLOR = "#D55E00"  # Okabe-Ito vermillion: another pid (or a distractor)
QUERY_COLOR = "#000000"


@dataclass(frozen=True)
class RankedList:
    """The top of one query's ranking, junk removed."""

    query: int  # index into the query list
    gallery: np.ndarray  # (k,) gallery indices, most similar first
    distances: np.ndarray  # (k,)
    correct: np.ndarray  # (k,) bool: the item has the query's pid
    num_junk: int  # gallery items with the query's pid and camera, removed before ranking
    num_matches: int  # items with the query's pid from another camera (0: the protocol skips it)


def border_color(correct: bool) -> str:
    """GREEN for a correct item (same pid), RED for a wrong one (SEN Figs. 1 and 11)."""
    return CORRECT_COLOR if correct else WRONG_COLOR


def _as_ids(ids, name: str, expected: int) -> np.ndarray:
    a = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids)
    if a.ndim != 1 or a.shape[0] != expected or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(f"{name}: expected {expected} integer ids (1-D), got shape {a.shape}, {a.dtype}")
    return a


def ranked_lists(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    *,
    top_k: int = 5,
    queries: Sequence[int] | None = None,
    remove_junk: bool = True,
) -> list[RankedList]:
    """Top-``top_k`` gallery items of each query in ``queries`` (default: all), smallest distance first.

    ``remove_junk`` applies the standard protocol: gallery items with the query's pid and camera are
    dropped before the list is cut. Ties are broken by gallery index (a stable sort).
    """
    d = distmat.detach().cpu().numpy() if isinstance(distmat, torch.Tensor) else np.asarray(distmat)
    if d.ndim != 2 or d.dtype.kind not in "fiu":
        raise ValueError(f"distmat: expected a 2-D (num_q, num_g) array of distances, got shape {d.shape}")
    if np.isnan(d).any():
        raise ValueError("distmat: contains NaN; distances must be numbers")
    num_q, num_g = d.shape
    q_pids, q_camids = _as_ids(q_pids, "q_pids", num_q), _as_ids(q_camids, "q_camids", num_q)
    g_pids, g_camids = _as_ids(g_pids, "g_pids", num_g), _as_ids(g_camids, "g_camids", num_g)
    check_int("top_k", top_k, 1)
    queries = range(num_q) if queries is None else [int(q) for q in queries]
    bad = [q for q in queries if not 0 <= q < num_q]
    if bad:
        raise ValueError(f"queries: indices {bad[:5]} out of range for {num_q} queries")

    out = []
    for q in queries:
        row = d[q]  # (num_g,)
        same_pid = g_pids == q_pids[q]
        junk = junk_mask(q_pids[q], q_camids[q], g_pids, g_camids) if remove_junk else np.zeros(num_g, bool)
        keep = np.flatnonzero(~junk)
        need = min(top_k, keep.size)
        if need:
            # every kept item at most as far as the need-th nearest kept one (ties included), then a
            # stable sort by (distance, gallery index): the exact head of the full stable sort
            thr = np.partition(row[keep], need - 1)[need - 1]
            cand = keep[row[keep] <= thr]
            top = cand[np.lexsort((cand, row[cand]))][:need]
        else:
            top = keep[:0]
        out.append(
            RankedList(
                query=q,
                gallery=top,
                distances=row[top].astype(np.float64),
                correct=same_pid[top],
                num_junk=int(junk.sum()),
                num_matches=int((same_pid & ~junk).sum()) if remove_junk else int(same_pid.sum()),
            )
        )
    return out


def choose_queries(lists: Sequence[RankedList], num_queries: int, seed: int = 0) -> list[int]:
    """Indices into ``lists`` of ``num_queries`` queries drawn with ``seed`` among the valid ones
    (at least one match after junk removal), in drawn order.

    The draw is a seeded permutation; if its first ``num_queries`` have no rank-1 failure but one
    exists, the last successes give way to the first failures drawn (at least one shown), and likewise
    at least one success is kept when ``num_queries >= 2`` and one exists.
    """
    check_int("num_queries", num_queries, 1)
    valid = [i for i, r in enumerate(lists) if r.num_matches > 0 and len(r.correct)]
    order = [valid[j] for j in np.random.default_rng(seed).permutation(len(valid))]
    n = min(num_queries, len(order))
    failed = {i: not bool(lists[i].correct[0]) for i in order}
    fails = [i for i in order if failed[i]]
    wins = [i for i in order if not failed[i]]
    n_fail = sum(failed[i] for i in order[:n])
    n_fail = max(n_fail, min(1, len(fails)))  # show a failure if there is one
    if n >= 2 and wins:
        n_fail = min(n_fail, n - 1)  # and keep a success if there is one
    n_fail = min(n_fail, len(fails), n)
    n_win = min(n - n_fail, len(wins))
    chosen = set(fails[:n_fail] + wins[:n_win])
    return [i for i in order if i in chosen]


def ranked_table(
    lists: Sequence[RankedList], query: Sequence[ImageRecord], gallery: Sequence[ImageRecord]
) -> pd.DataFrame:
    """One row per (query, rank): query index/pid/camera, the gallery item's index, pid, camera,
    distance and whether it is correct; plus the query's junk and match counts."""
    rows = []
    for r in lists:
        q = query[r.query]
        for rank, (g, dist, ok) in enumerate(zip(r.gallery, r.distances, r.correct, strict=True), start=1):
            rec = gallery[int(g)]
            rows.append(
                {
                    "query": r.query,
                    "query_pid": q.pid,
                    "query_camid": q.camid,
                    "rank": rank,
                    "gallery": int(g),
                    "pid": rec.pid,
                    "camid": rec.camid,
                    "distance": round(float(dist), 6),
                    "correct": bool(ok),
                    "num_junk_removed": r.num_junk,
                    "num_matches": r.num_matches,
                }
            )
    columns = [
        "query",
        "query_pid",
        "query_camid",
        "rank",
        "gallery",
        "pid",
        "camid",
        "distance",
        "correct",
        "num_junk_removed",
        "num_matches",
    ]
    return pd.DataFrame(rows, columns=columns)


def same_camera_share(lists: Sequence[RankedList], q_camids, g_camids) -> tuple[float, float, int]:
    """How often the WRONG items of ``lists`` come from the query's own camera, against chance.

    Returns ``(observed %, chance %, number of wrong items)``: chance is the mean over the wrong items of
    the share of the gallery taken by their query's camera (what random gallery images would give).
    A network that matches the scene rather than the person shows observed >> chance. NaN when no
    item is wrong.
    """
    q_camids = np.asarray(q_camids)
    g_camids = np.asarray(g_camids)
    cams, counts = np.unique(g_camids, return_counts=True)
    share = dict(zip(cams.tolist(), (counts / max(len(g_camids), 1)).tolist(), strict=True))
    same, expected = [], []
    for r in lists:
        qc = q_camids[r.query]
        wrong = r.gallery[~r.correct]
        same.extend((g_camids[wrong] == qc).tolist())
        expected.extend([share.get(qc.item(), 0.0)] * len(wrong))
    if not same:
        return float("nan"), float("nan"), 0
    return 100 * float(np.mean(same)), 100 * float(np.mean(expected)), len(same)


@dataclass(frozen=True)
class RetrievalRow:
    """What one query's figure row shows: the query first, then its ranked list."""

    ranked: RankedList
    records: list[ImageRecord]  # (1 + k,) query record, then the gallery records in rank order
    images: np.ndarray  # (1 + k, H, W, 3) float in [0, 1]: the test-transformed images, denormalised
    maps: np.ndarray  # (1 + k, h, w) activation maps (raw values of eq. 1)


@torch.inference_mode()
def activation_maps(
    model: ReIDNetwork, images: torch.Tensor, *, name: str = "b4", p: float = 2
) -> torch.Tensor:
    """F^p of ``model.feature_maps(images)[name]`` (SEN eq. 1) in eval mode: (B, h, w) on the CPU.

    ``name``: a key of the networks' feature-map contract (:class:`reidlib.models.ReIDNetwork`); the
    default ``"b4"`` is the map every global branch pools (SEN's A, Deep Miner's Y_4).
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            maps = model.feature_maps(images.to(device))
    finally:
        model.train(was_training)
    if name not in maps:
        raise ValueError(f"name: the model's feature_maps has no {name!r}; it has {sorted(maps)}")
    return activation_map(maps[name], p).cpu()  # (B, h, w)


def retrieval_rows(
    model: ReIDNetwork,
    query: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    lists: Sequence[RankedList],
    *,
    height: int,
    width: int,
    map_name: str = "b4",
    p: float = 2,
) -> list[RetrievalRow]:
    """Images and activation maps for each ranked list (query first, then its gallery items);
    ``map_name`` and ``p`` as in :func:`activation_maps`."""
    rows = []
    for ranked in lists:
        records = [query[ranked.query], *(gallery[int(g)] for g in ranked.gallery)]
        images = load_test_batch(records, height, width)  # (1 + k, 3, H, W)
        maps = activation_maps(model, images, name=map_name, p=p)  # (1 + k, h, w)
        shown = denormalize(images).permute(0, 2, 3, 1).numpy()  # (1 + k, H, W, 3)
        rows.append(RetrievalRow(ranked=ranked, records=records, images=shown, maps=maps.numpy()))
    return rows


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
