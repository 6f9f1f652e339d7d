"""Tests of reidlib.evaluation.metrics: the fast ``evaluate_rank`` against the shipped per-query definition
``evaluate_rank_reference``, and both against hand-worked cases (the independent check of the reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reidlib.evaluation.metrics import (
    evaluate_rank,
    evaluate_rank_reference,
    junk_mask,
    pairwise_distance,
    stable_sort_keys,
)


def assert_same(got, want):
    assert got["num_valid_queries"] == want["num_valid_queries"]
    assert got["cmc"].dtype == np.float64 and got["cmc"].shape == want["cmc"].shape
    np.testing.assert_allclose(got["cmc"], want["cmc"], rtol=0, atol=1e-12)
    assert got["mAP"] == pytest.approx(want["mAP"], abs=1e-12)
    assert got["mINP"] == pytest.approx(want["mINP"], abs=1e-12)


def random_problem(seed, num_q=12, num_g=40, num_ids=8, num_cams=3, levels=6, dtype=np.float32):
    """Integer-valued distances (many ties), pid 0 distractors, +inf and -0.0 entries, and pids that
    are missing from the gallery or only seen by the query's own camera."""
    rng = np.random.default_rng(seed)
    distmat = rng.integers(0, levels, size=(num_q, num_g)).astype(dtype)
    distmat[rng.random((num_q, num_g)) < 0.05] = np.inf
    distmat[rng.random((num_q, num_g)) < 0.05] = -0.0
    distmat[rng.random((num_q, num_g)) < 0.05] = -1.5
    g_pids = rng.integers(0, num_ids, num_g)  # pid 0 = distractors
    g_camids = rng.integers(0, num_cams, num_g)
    q_pids = rng.integers(1, num_ids + 2, num_q)  # some pids absent from the gallery
    q_camids = rng.integers(0, num_cams, num_q)
    only = num_ids + 3  # a pid the gallery holds only under the query's camera
    q_pids[0], q_camids[0] = only, 0
    g_pids[:2], g_camids[:2] = only, 0
    return distmat, q_pids, g_pids, q_camids, g_camids


# --------------------------------------------------------------------------------------------------
# against the per-query definition (reidlib.evaluation.metrics.evaluate_rank_reference)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["standard", "official"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(5))
def test_matches_naive_loop(seed, dtype, mode):
    args = random_problem(seed, dtype=dtype)
    for max_rank in (1, 5, 50):  # 50 > num_g = 40: the CMC is padded
        want = evaluate_rank_reference(*args, max_rank=max_rank, mode=mode)
        assert want["num_valid_queries"] < len(args[1])  # some queries have no valid match
        assert_same(evaluate_rank(*args, max_rank=max_rank, mode=mode), want)


@pytest.mark.parametrize("mode", ["standard", "official"])
def test_torch_inputs(mode):
    distmat, q_pids, g_pids, q_camids, g_camids = random_problem(11, dtype=np.float64)
    want = evaluate_rank_reference(distmat, q_pids, g_pids, q_camids, g_camids, 10, mode)
    tensors = [torch.from_numpy(a) for a in (distmat, q_pids, g_pids, q_camids, g_camids)]
    assert_same(evaluate_rank(*tensors, max_rank=10, mode=mode), want)
    tensors[0] = tensors[0].float().requires_grad_()
    want32 = evaluate_rank_reference(distmat.astype(np.float32), q_pids, g_pids, q_camids, g_camids, 10, mode)
    assert_same(evaluate_rank(*tensors, max_rank=10, mode=mode), want32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["standard", "official"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_naive_loop(mode, dtype):
    distmat, q_pids, g_pids, q_camids, g_camids = random_problem(12, num_q=30, num_g=200)
    want = evaluate_rank_reference(distmat, q_pids, g_pids, q_camids, g_camids, 20, mode)
    d = torch.from_numpy(distmat).to("cuda", dtype)
    ids = [torch.from_numpy(a).cuda() for a in (q_pids, g_pids, q_camids, g_camids)]
    assert_same(evaluate_rank(d, *ids, max_rank=20, mode=mode, chunk_rows=7), want)


@pytest.mark.parametrize("mode", ["standard", "official"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_equals_unchunked(mode, dtype):
    args = random_problem(21, num_q=37, num_g=60, dtype=dtype)
    whole = evaluate_rank(*args, max_rank=20, mode=mode, chunk_rows=10_000)
    for rows in (1, 4, 9):  # several chunks, the last one partial
        part = evaluate_rank(*args, max_rank=20, mode=mode, chunk_rows=rows)
        assert_same(part, whole)
    assert_same(whole, evaluate_rank_reference(*args, max_rank=20, mode=mode))


def test_module_chunk_constant_is_used(monkeypatch):
    import reidlib.evaluation.metrics as metrics

    args = random_problem(22, num_q=20, num_g=30)
    whole = evaluate_rank(*args, max_rank=10)
    monkeypatch.setattr(metrics, "CPU_CHUNK_ELEMENTS", 70)  # 70 // 30 = 2 rows per chunk
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 80)  # flush the sparse matches every 10 or more
    assert_same(evaluate_rank(*args, max_rank=10), whole)


def test_stable_sort_keys_order_and_flags():
    row = np.array([[3.0, -0.0, 0.0, -2.5, np.inf, 0.0, -np.inf, 3.0, -0.0, 1e-30, -1e-30]], dtype=np.float32)
    flags = np.array([[1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0]], dtype=bool)
    keys = np.sort(stable_sort_keys(row, flags=flags), axis=1)
    order = ((keys & np.uint64(0xFFFFFFFF)) >> np.uint64(8)).astype(int)[0]
    assert order.tolist() == sorted(range(row.shape[1]), key=lambda j: (float(row[0, j]), j))
    assert ((keys & np.uint64(1)).astype(bool)[0] == flags[0, order]).all()


@pytest.mark.parametrize("mode", ["standard", "official"])
def test_torch_sort_path_on_cpu(monkeypatch, mode):
    """The CUDA code path (torch.sort, torch gathers) run on CPU tensors, against the naive loop."""
    import reidlib.evaluation.metrics as metrics

    distmat, q_pids, g_pids, q_camids, g_camids = random_problem(13, num_q=25, num_g=50)
    monkeypatch.setattr(metrics, "_as_distmat", lambda d: d)  # keep the tensor: torch path
    got = evaluate_rank(
        torch.from_numpy(distmat), q_pids, g_pids, q_camids, g_camids, max_rank=60, mode=mode, chunk_rows=6
    )
    assert_same(got, evaluate_rank_reference(distmat, q_pids, g_pids, q_camids, g_camids, 60, mode))
    nan = torch.from_numpy(distmat).clone()
    nan[3, 4] = float("nan")
    with pytest.raises(ValueError, match="1 NaN"):
        evaluate_rank(nan, q_pids, g_pids, q_camids, g_camids)


# --------------------------------------------------------------------------------------------------
# hand-worked 3 x 4 case
# --------------------------------------------------------------------------------------------------
# gallery:  g0 (pid 1, cam 0)   g1 (pid 2, cam 1)   g2 (pid 1, cam 1)   g3 (pid 1, cam 2)
# q0 (pid 1, cam 0), distances [0.1, 0.3, 0.2, 0.4]:
#   ranked g0 g2 g1 g3; g0 has q0's pid and camera -> junk, removed; kept g2 g1 g3 = hit miss hit.
#   CMC: first hit at position 1 -> 1 from rank 1 on.
#   standard AP = (1/1 + 2/3) / 2 = 5/6; mINP = 2 hits / last hit at 3 = 2/3.
#   official AP (ngood = 2): position 1, hit 1: (old precision 1 + 1/1) / 2 * 1/2 = 1/2;
#     position 2 (miss) adds nothing but sets old precision = 1/2;
#     position 3, hit 2: (1/2 + 2/3) / 2 * 1/2 = 7/24.  AP = 12/24 + 7/24 = 19/24.
# q1 (pid 2, cam 0), distances [0.5, 0.2, 0.1, 0.2]:
#   g1 and g3 tie at 0.2 -> gallery index order: ranked g2 g1 g3 g0 = miss hit miss miss (no junk).
#   CMC: first hit at 2. standard AP = (1/2) / 1 = 1/2; mINP = 1/2.
#   official AP (ngood = 1): position 2, hit 1: old precision 0/1 = 0, precision 1/2:
#     (0 + 1/2) / 2 * 1 = 1/4.
# q2 (pid 2, cam 1), distances [0.4, 0.1, 0.2, 0.3]:
#   its only pid-2 image g1 is from cam 1 too -> junk; no valid match.
# standard (2 valid queries), max_rank 5, clipped to the 4 gallery items (the filtered lists hold 3
# and 4 items: padded):
#   CMC = [(1+0)/2, (1+1)/2, 1, 1] = [1/2, 1, 1, 1]
#   mAP = (5/6 + 1/2) / 2 = 2/3; mINP = (2/3 + 1/2) / 2 = 7/12
# official (all 3 queries, q2 counts 0):
#   CMC = [1/3, 2/3, 2/3, 2/3]; mAP = (19/24 + 1/4 + 0) / 3 = 25/72; mINP = (2/3 + 1/2) / 3 = 7/18
HAND_DIST = np.array([[0.1, 0.3, 0.2, 0.4], [0.5, 0.2, 0.1, 0.2], [0.4, 0.1, 0.2, 0.3]])
HAND_IDS = dict(
    q_pids=np.array([1, 2, 2]),
    g_pids=np.array([1, 2, 1, 1]),
    q_camids=np.array([0, 0, 1]),
    g_camids=np.array([0, 1, 1, 2]),
)


@pytest.mark.parametrize("evaluate", [evaluate_rank, evaluate_rank_reference], ids=["fast", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hand_worked_standard(dtype, evaluate):
    r = evaluate(HAND_DIST.astype(dtype), **HAND_IDS, max_rank=5)
    np.testing.assert_allclose(r["cmc"], [1 / 2, 1, 1, 1], rtol=0, atol=1e-15)
    assert r["mAP"] == pytest.approx(2 / 3, abs=1e-15)
    assert r["mINP"] == pytest.approx(7 / 12, abs=1e-15)
    assert r["num_valid_queries"] == 2


@pytest.mark.parametrize("evaluate", [evaluate_rank, evaluate_rank_reference], ids=["fast", "reference"])
def test_hand_worked_official(evaluate):
    r = evaluate(HAND_DIST, **HAND_IDS, max_rank=5, mode="official")
    np.testing.assert_allclose(r["cmc"], [1 / 3, 2 / 3, 2 / 3, 2 / 3], rtol=0, atol=1e-15)
    assert r["mAP"] == pytest.approx(25 / 72, abs=1e-15)
    assert r["mINP"] == pytest.approx(7 / 18, abs=1e-15)
    assert r["num_valid_queries"] == 2


@pytest.mark.parametrize("evaluate", [evaluate_rank, evaluate_rank_reference], ids=["fast", "reference"])
def test_hand_worked_single_queries(evaluate):
    # q0 alone: standard AP 5/6 and official AP 19/24 differ (trapezoid vs precision at the hits)
    one = {k: v[:1] if k.startswith("q") else v for k, v in HAND_IDS.items()}
    assert evaluate(HAND_DIST[:1], **one, max_rank=1)["mAP"] == pytest.approx(5 / 6, abs=1e-15)
    off = evaluate(HAND_DIST[:1], **one, max_rank=1, mode="official")
    assert off["mAP"] == pytest.approx(19 / 24, abs=1e-15)
    # swapping the tie g1/g3 order (g3 first) would put q1's hit at 3: check the index tie-break
    two = {k: v[1:2] if k.startswith("q") else v for k, v in HAND_IDS.items()}
    r = evaluate(HAND_DIST[1:2], **two, max_rank=3)
    np.testing.assert_array_equal(r["cmc"], [0.0, 1.0, 1.0])


@pytest.mark.parametrize("evaluate", [evaluate_rank, evaluate_rank_reference], ids=["fast", "reference"])
def test_junk_rule_needs_same_pid_and_same_camera(evaluate):
    # one query (pid 5, cam 0); gallery: same cam other pid (kept, a miss), same pid same cam (junk),
    # same pid other cam (a hit). Ranked by distance: miss, junk, hit -> filtered miss, hit: AP = 1/2.
    r = evaluate(np.array([[1.0, 2.0, 3.0]]), [5], [7, 5, 5], [0], [0, 0, 1], max_rank=3)
    np.testing.assert_array_equal(r["cmc"], [0.0, 1.0, 1.0])
    assert r["mAP"] == 0.5 and r["mINP"] == 0.5


@pytest.mark.parametrize("evaluate", [evaluate_rank, evaluate_rank_reference], ids=["fast", "reference"])
def test_pid_zero_is_an_ordinary_non_matching_id(evaluate):
    # pid 0 distractors rank like any other non-match (they are not removed)
    r = evaluate(np.array([[0.0, 1.0, 2.0]]), [3], [0, 0, 3], [0], [1, 1, 1], max_rank=3)
    assert r["mAP"] == pytest.approx(1 / 3) and r["cmc"].tolist() == [0.0, 0.0, 1.0]


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
def test_errors():
    d, ids = HAND_DIST, HAND_IDS
    with pytest.raises(ValueError, match="distmat must be 2-D"):
        evaluate_rank(d[0], **ids)
    with pytest.raises(ValueError, match="distmat must be 2-D"):
        evaluate_rank(torch.zeros(2, 3, 4), **ids)
    with pytest.raises(ValueError, match=r"q_pids has shape \(2,\), but distmat has shape \(3, 4\)"):
        evaluate_rank(d, **{**ids, "q_pids": np.array([1, 2])})
    with pytest.raises(ValueError, match=r"g_camids has shape \(5,\), but distmat has shape \(3, 4\)"):
        evaluate_rank(d, **{**ids, "g_camids": np.zeros(5, dtype=int)})
    with pytest.raises(ValueError, match="g_pids must hold integer ids"):
        evaluate_rank(d, **{**ids, "g_pids": np.array([1.0, 2.0, 1.0, 1.0])})
    nan = d.copy()
    nan[0, 1] = nan[2, 3] = np.nan
    with pytest.raises(ValueError, match="distmat contains 2 NaN value.*must be finite"):
        evaluate_rank(nan, **ids)
    with pytest.raises(ValueError, match="max_rank: expected an integer >= 1"):
        evaluate_rank(d, **ids, max_rank=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate_rank(d, **ids, mode="matlab")
    for mode in ("standard", "official"):
        with pytest.raises(ValueError, match="no query has a valid match"):
            evaluate_rank(
                d[2:], **{**ids, "q_pids": ids["q_pids"][2:], "q_camids": ids["q_camids"][2:]}, mode=mode
            )


def test_reference_errors():
    d, ids = HAND_DIST, HAND_IDS
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate_rank_reference(d, **ids, mode="matlab")
    with pytest.raises(ValueError, match="max_rank: expected an integer >= 1"):
        evaluate_rank_reference(d, **ids, max_rank=0)
    nan = d.copy()
    nan[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank_reference(nan, **ids)
    only_q2 = {**ids, "q_pids": ids["q_pids"][2:], "q_camids": ids["q_camids"][2:]}
    for mode in ("standard", "official"):
        with pytest.raises(ValueError, match="no query has a valid match"):
            evaluate_rank_reference(d[2:], **only_q2, mode=mode)


@pytest.mark.parametrize("evaluate", [evaluate_rank, evaluate_rank_reference], ids=["fast", "reference"])
def test_infinite_distances_rank_last(evaluate):
    r = evaluate(np.array([[np.inf, 1.0, 2.0]]), [1], [1, 2, 3], [0], [1, 1, 1], max_rank=3)
    assert r["cmc"].tolist() == [0.0, 0.0, 1.0] and r["mAP"] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------------------------------
# pairwise_distance
# --------------------------------------------------------------------------------------------------
def naive_distance(qf, gf, metric):
    out = np.zeros((len(qf), len(gf)))
    for i, q in enumerate(qf.tolist()):
        for j, g in enumerate(gf.tolist()):
            if metric == "euclidean":
                out[i, j] = math.sqrt(sum((a - b) ** 2 for a, b in zip(q, g, strict=True)))
            else:
                dot = sum(a * b for a, b in zip(q, g, strict=True))
                out[i, j] = 1 - dot / math.sqrt(sum(a * a for a in q)) / math.sqrt(sum(b * b for b in g))
    return out


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_distance_matches_double_loop(metric, dtype):
    gen = torch.Generator().manual_seed(0)
    qf = torch.randn(6, 5, generator=gen, dtype=dtype)
    gf = torch.randn(9, 5, generator=gen, dtype=dtype)
    got = pairwise_distance(qf, gf, metric=metric)
    assert got.dtype == torch.float32 and got.shape == (6, 9)
    np.testing.assert_allclose(got.numpy(), naive_distance(qf.double(), gf.double(), metric), atol=1e-5)
    chunked = pairwise_distance(qf.numpy(), gf.numpy(), metric=metric, chunk_elements=7)  # 1-row blocks
    np.testing.assert_allclose(chunked.numpy(), got.numpy(), atol=1e-6)


def test_cosine_of_parallel_vectors_is_zero():
    qf = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    gf = torch.cat([3.0 * qf, 0.01 * qf])
    d = pairwise_distance(qf, gf, metric="cosine")
    assert d[0, 0].item() == pytest.approx(0.0, abs=1e-6) and d[1, 3].item() == pytest.approx(0.0, abs=1e-6)
    assert pairwise_distance(qf, qf, metric="euclidean").diagonal().abs().max().item() < 1e-3


def test_pairwise_distance_errors():
    with pytest.raises(ValueError, match=r"same feature dimension.*qf \(2, 3\) and gf \(4, 5\)"):
        pairwise_distance(torch.zeros(2, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="qf must be 2-D"):
        pairwise_distance(torch.zeros(3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="gf must be 2-D"):
        pairwise_distance(torch.zeros(2, 3), torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="metric must be one of"):
        pairwise_distance(torch.zeros(2, 3), torch.zeros(4, 3), metric="manhattan")


@pytest.mark.parametrize("evaluate", [evaluate_rank, evaluate_rank_reference], ids=["fast", "reference"])
def test_a_huge_max_rank_is_clipped_to_the_gallery(evaluate):
    # 10**9 ranks would need gigabytes per query; past the 4 gallery items the CMC cannot change.
    r = evaluate(HAND_DIST, **HAND_IDS, max_rank=10**9)
    np.testing.assert_allclose(r["cmc"], [1 / 2, 1, 1, 1], rtol=0, atol=1e-15)
    assert r["mAP"] == pytest.approx(2 / 3, abs=1e-15)


def test_junk_mask_is_same_pid_and_same_camera():
    g_pids = np.array([1, 1, 2, 1, 0])
    g_camids = np.array([0, 1, 0, 0, 0])
    got = junk_mask(1, 0, g_pids, g_camids)
    assert got.tolist() == [True, False, False, True, False]  # pid 1 seen by camera 0, nothing else
    assert not junk_mask(3, 0, g_pids, g_camids).any()
