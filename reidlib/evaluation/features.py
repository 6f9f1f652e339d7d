"""Test-time feature extraction and the evaluation protocol applied to a trained network.

:func:`evaluate` is the one call a script or notebook needs: a network, a dataset and the recipe it
was trained with in, an :class:`Evaluation` out (features, distances, CMC/mAP/mINP, ranked lists).
:func:`evaluate_network` is what the engine runs after training (several variants, DDP-aware).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm  # plain text bars: work in terminals, logs and notebooks alike

from reidlib.config import Recipe, Variant
from reidlib.data.datasets.base import ImageRecord, ReidDataset
from reidlib.data.images import build_test_loader
from reidlib.data.transforms import build_test_transform
from reidlib.evaluation.metrics import evaluate_features, evaluate_rank, pairwise_distance
from reidlib.evaluation.ranking import RankedList, ranked_lists
from reidlib.evaluation.reranking import check_rerank_memory, re_ranking
from reidlib.models import ReIDNetwork
from reidlib.utils.distributed import DistContext, broadcast_buffers, gather_strided
from reidlib.utils.runtime import Runtime


@torch.inference_mode()
def extract_features(
    model: ReIDNetwork,
    records: Sequence[ImageRecord],
    *,
    height: int,
    width: int,
    runtime: Runtime,
    batch_size: int = 128,
    workers: int = 0,
    flip: bool = False,
    ctx: DistContext | None = None,
    progress: bool = False,
    desc: str = "extract",
) -> Tensor:
    """Test embeddings (N, D) float32 on the CPU, in the order of ``records``.

    ``flip`` averages the embeddings of each image and its mirror. Under DDP each rank extracts
    ``records[rank::world_size]`` and the rows are gathered back in order.
    """
    ctx = ctx or DistContext()
    was_training = model.training
    model.eval()
    shard = list(records)[ctx.rank :: ctx.world_size]
    loader = build_test_loader(
        shard, build_test_transform(height, width), batch_size=batch_size, workers=workers
    )
    feats = []
    for images, *_ in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images = runtime.images(images)
        with runtime.autocast():
            f = model.embed(images).float()
            if flip:
                f = (f + model.embed(images.flip(3)).float()) / 2
        feats.append(f)
    dim = model.embedding_dim
    out = torch.cat(feats) if feats else torch.zeros(0, dim, device=runtime.device)
    out = gather_strided(out, len(records), ctx)
    model.train(was_training)
    return out.cpu()


def _ids(records: Sequence[ImageRecord]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r.pid for r in records]), np.array([r.camid for r in records])


def rank_features(
    qf: Tensor,
    gf: Tensor,
    query: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    *,
    metric: str = "cosine",
    mode: str = "standard",
    rerank: bool = False,
    max_rank: int = 50,
) -> dict[str, Any]:
    """Distances, optional k-reciprocal re-ranking, then ``evaluate_rank``; also returns the distmat.

    Re-ranking a problem larger than the machine's free memory is refused (MemoryError) up front.
    """
    if rerank:
        check_rerank_memory(len(qf), len(gf))
    distmat = pairwise_distance(qf, gf, metric)
    if rerank:
        # re_ranking follows the paper's convention: squared Euclidean (cosine distances work as given)
        power = 2 if metric == "euclidean" else 1
        distmat = torch.from_numpy(
            re_ranking(
                distmat.numpy() ** power,
                pairwise_distance(qf, qf, metric).numpy() ** power,
                pairwise_distance(gf, gf, metric).numpy() ** power,
            )
        )
    q_pids, q_camids = _ids(query)
    g_pids, g_camids = _ids(gallery)
    result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, mode=mode)
    result["distmat"] = distmat
    return result


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers a run reports, as percentages: rank1/5/10, mAP, mINP, and the CMC curve."""
    cmc = np.asarray(result["cmc"]) * 100
    return {
        "rank1": round(float(cmc[0]), 4),
        "rank5": round(float(cmc[min(4, len(cmc) - 1)]), 4),
        "rank10": round(float(cmc[min(9, len(cmc) - 1)]), 4),
        "mAP": round(float(result["mAP"]) * 100, 4),
        "mINP": round(float(result["mINP"]) * 100, 4),
        "num_valid_queries": int(result["num_valid_queries"]),
        "cmc": [round(float(v), 4) for v in cmc],
    }


def evaluate_network(
    model: ReIDNetwork,
    dataset: ReidDataset,
    *,
    height: int,
    width: int,
    runtime: Runtime,
    batch_size: int = 128,
    workers: int = 0,
    metric: str = "cosine",
    mode: str = "standard",
    max_rank: int = 50,
    variants: Sequence[str] = (Variant.PLAIN,),
    ctx: DistContext | None = None,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``model`` on ``dataset``'s query/gallery for each variant.

    Variants: ``plain``, ``flip`` (flip-averaged features), ``rerank`` and ``flip+rerank``. Features are
    extracted once per flip setting. Returns ``{variant: summary}``; only rank 0 gets summaries under DDP
    (other ranks get an empty dict).
    """
    ctx = ctx or DistContext()
    broadcast_buffers(model, ctx)
    variants = Variant.parse(variants, "variants")
    feats: dict[bool, tuple[Tensor, Tensor]] = {}
    out: dict[str, dict[str, Any]] = {}
    for variant in variants:
        flip = variant.flip
        if flip not in feats:
            kw = dict(
                height=height,
                width=width,
                runtime=runtime,
                batch_size=batch_size,
                workers=workers,
                flip=flip,
                ctx=ctx,
                progress=progress,
            )
            feats[flip] = (
                extract_features(model, dataset.query, desc="query", **kw),
                extract_features(model, dataset.gallery, desc="gallery", **kw),
            )
        if not ctx.is_main:
            continue
        qf, gf = feats[flip]
        if variant.rerank:
            result = rank_features(
                qf,
                gf,
                dataset.query,
                dataset.gallery,
                metric=metric,
                mode=mode,
                rerank=True,
                max_rank=max_rank,
            )
        else:  # in query chunks, on the training device: never the full distance matrix
            (q_pids, q_camids), (g_pids, g_camids) = _ids(dataset.query), _ids(dataset.gallery)
            result = evaluate_features(
                qf.to(runtime.device),
                gf.to(runtime.device),
                q_pids,
                g_pids,
                q_camids,
                g_camids,
                metric=metric,
                mode=mode,
                max_rank=max_rank,
            )
        out[variant.value] = summarize(result)
    return out


def evaluate_branches(
    model: ReIDNetwork,
    qf: Tensor,
    gf: Tensor,
    query: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    *,
    metric: str = "cosine",
    mode: str = "standard",
) -> dict[str, dict[str, Any]]:
    """Rank with each branch's part of the test embedding alone, then with all of it (``"all"``).

    ``qf``/``gf`` are ``model``'s embeddings (:func:`extract_features`). A multi-branch network's
    embedding concatenates its branches; this says which of them carries the retrieval, and whether
    one drags the concatenation below another branch on its own. Returns ``{branch: summary}``.
    """
    if qf.shape[1] != model.embedding_dim or gf.shape[1] != model.embedding_dim:
        raise ValueError(
            f"qf, gf: expected {model.embedding_dim} columns (the model's embedding), got {qf.shape[1]} "
            f"and {gf.shape[1]}"
        )
    parts = dict(model.embedding_slices)
    if len(parts) > 1:
        parts["all"] = slice(0, model.embedding_dim)
    (q_pids, q_camids), (g_pids, g_camids) = _ids(query), _ids(gallery)
    return {
        name: summarize(
            evaluate_features(
                qf[:, s], gf[:, s], q_pids, g_pids, q_camids, g_camids, metric=metric, mode=mode
            )
        )
        for name, s in parts.items()
    }


@dataclass(frozen=True)
class Evaluation:
    """One network evaluated on a dataset's query and gallery (:func:`evaluate`)."""

    query: Sequence[ImageRecord]
    gallery: Sequence[ImageRecord]
    query_features: Tensor  # (num_q, D), CPU
    gallery_features: Tensor  # (num_g, D), CPU
    distmat: Tensor  # (num_q, num_g), CPU: the recipe's metric (re-ranked when asked)
    metrics: dict[str, Any]  # rank1/5/10, mAP, mINP (%), num_valid_queries, cmc
    variant: Variant

    def ids(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(q_pids, g_pids, q_camids, g_camids)`` in the order of ``query`` and ``gallery``."""
        (q_pids, q_camids), (g_pids, g_camids) = _ids(self.query), _ids(self.gallery)
        return q_pids, g_pids, q_camids, g_camids

    def ranked_lists(self, top_k: int = 5) -> list[RankedList]:
        """Every query's top-``top_k`` gallery items, junk removed, in the evaluation's order."""
        return ranked_lists(self.distmat, *self.ids(), top_k=top_k)


def evaluate(
    model: ReIDNetwork,
    dataset: ReidDataset,
    recipe: Recipe,
    *,
    variant: str | None = None,
    runtime: Runtime | None = None,
) -> Evaluation:
    """Evaluate ``model`` on ``dataset`` with ``recipe``'s test settings: image size, batch size,
    metric, protocol and variant (``eval.flip``/``eval.rerank`` unless ``variant`` names another).

    ``runtime``: where the network runs (default: the device of its weights, float32).
    """
    chosen = (
        Variant.parse([variant], "variant")[0]
        if variant
        else Variant.of(flip=recipe.eval.flip, rerank=recipe.eval.rerank)
    )
    runtime = runtime or Runtime(device=next(model.parameters()).device)
    kw = dict(
        height=recipe.data.height,
        width=recipe.data.width,
        runtime=runtime,
        flip=chosen.flip,
        batch_size=recipe.data.test_batch_size,
    )
    qf = extract_features(model, dataset.query, desc="query", **kw)
    gf = extract_features(model, dataset.gallery, desc="gallery", **kw)
    result = rank_features(
        qf,
        gf,
        dataset.query,
        dataset.gallery,
        metric=recipe.eval.metric,
        mode=recipe.eval.mode,
        rerank=chosen.rerank,
        max_rank=recipe.eval.max_rank,
    )
    return Evaluation(
        dataset.query, dataset.gallery, qf, gf, result.pop("distmat"), summarize(result), chosen
    )
