"""Ranked lists: each query's top gallery items under the protocol, and what the network looks at.

- :func:`ranked_lists`: for each query, the top-k gallery items in the order and with the junk rule of
  :mod:`reidlib.evaluation.metrics` (:func:`~reidlib.evaluation.metrics.ranked_head`,
  :func:`~reidlib.evaluation.metrics.junk_mask`), with a correct/wrong flag per item (same pid as the
  query), so the rank-1 of these lists is the rank-1 of the evaluation.
- :func:`choose_queries`: a seeded choice of queries that shows a failure (wrong rank-1) when there is
  one, and a success when there is one.
- :func:`retrieval_rows`: the images (test transform, denormalised) and the activation map
  F(A) = sum_c |A_c|^p (SEN eq. 1, :func:`reidlib.erasing.activation_map`) of the network's backbone
  output (``feature_maps``' ``b4``) for each query and its list; :mod:`reidlib.viz.retrieval` draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from reidlib.data.datasets.base import ImageRecord
from reidlib.data.images import load_test_batch
from reidlib.data.transforms import denormalize
from reidlib.erasing import activation_map
from reidlib.evaluation.chance import bernoulli_z, verdict
from reidlib.evaluation.metrics import junk_mask, ranked_head
from reidlib.models import ReIDNetwork
from reidlib.utils.checks import check_int


@dataclass(frozen=True)
class RankedList:
    """The top of one query's ranking, junk removed."""

    query: int  # index into the query list
    gallery: np.ndarray  # (k,) gallery indices, most similar first
    distances: np.ndarray  # (k,)
    correct: np.ndarray  # (k,) bool: the item has the query's pid
    num_junk: int  # gallery items with the query's pid and camera, removed before ranking
    num_matches: int  # items with the query's pid from another camera (0: the protocol skips it)


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
        top = ranked_head(row, np.flatnonzero(~junk), top_k)
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


def rank1_of(lists: Sequence[RankedList]) -> float:
    """Rank-1 (%) of ``lists``: the share of queries with a match whose first item is correct."""
    valid = [r for r in lists if r.num_matches > 0 and len(r.correct)]
    if not valid:
        raise ValueError("lists: no query has a match after junk removal")
    return 100 * float(np.mean([bool(r.correct[0]) for r in valid]))


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


def _wrong_items(lists: Sequence[RankedList], q_camids, g_camids) -> tuple[np.ndarray, np.ndarray]:
    """For every wrong item of ``lists``: whether it comes from its query's camera, and the share of
    the gallery that camera holds (the probability of that at random)."""
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    cams, counts = np.unique(g_camids, return_counts=True)
    share = dict(zip(cams.tolist(), (counts / max(len(g_camids), 1)).tolist(), strict=True))
    same, chance = [], []
    for r in lists:
        qc = q_camids[r.query]
        wrong = r.gallery[~r.correct]
        same.extend((g_camids[wrong] == qc).tolist())
        chance.extend([share.get(qc.item(), 0.0)] * len(wrong))
    return np.asarray(same, dtype=bool), np.asarray(chance, dtype=np.float64)


def same_camera_share(lists: Sequence[RankedList], q_camids, g_camids) -> tuple[float, float, int]:
    """How often the WRONG items of ``lists`` come from the query's own camera, against chance.

    Returns ``(observed %, chance %, number of wrong items)``: chance is the mean over the wrong items of
    the share of the gallery taken by their query's camera (what random gallery images would give).
    A network that matches the scene rather than the person shows observed >> chance. NaN when no
    item is wrong.
    """
    same, chance = _wrong_items(lists, q_camids, g_camids)
    if not len(same):
        return float("nan"), float("nan"), 0
    return 100 * float(same.mean()), 100 * float(chance.mean()), len(same)


def same_camera_sentence(lists: Sequence[RankedList], q_camids, g_camids) -> str:
    """:func:`same_camera_share` as a sentence with its :func:`~reidlib.evaluation.chance.verdict`
    (each wrong item an independent draw with its camera's gallery share)."""
    same, chance = _wrong_items(lists, q_camids, g_camids)
    if not len(same):
        return "No item of these lists is wrong."
    z = bernoulli_z(int(same.sum()), chance)
    return (
        f"{len(same)} items of these top-{max(len(r.gallery) for r in lists)} lists are wrong; "
        f"{100 * same.mean():.0f} % of them come from the query's own camera, against "
        f"{100 * chance.mean():.0f} % for random gallery images: {verdict(z)} chance (z = {z:+.1f})."
    )


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
