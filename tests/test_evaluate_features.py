"""evaluate_features (distances and ranking in query chunks) against evaluate_rank on the full matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reidlib.evaluation.metrics as metrics
from reidlib.evaluation.metrics import evaluate_features, evaluate_rank, pairwise_distance


def feature_problem(seed, num_q=40, num_g=90, dim=32, num_ids=10, num_cams=3):
    """Continuous features, same-pid features drawn closer, pid 0 distractors, query pids missing
    from the gallery and one only seen by the query's own camera."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_ids + 4, dim))
    g_pids = rng.integers(0, num_ids, num_g)
    q_pids = rng.integers(1, num_ids + 2, num_q)
    g_camids, q_camids = rng.integers(0, num_cams, num_g), rng.integers(0, num_cams, num_q)
    q_pids[0], q_camids[0] = num_ids + 3, 0
    g_pids[:2], g_camids[:2] = num_ids + 3, 0
    gf = centers[g_pids] + rng.normal(scale=1.5, size=(num_g, dim))
    qf = centers[q_pids] + rng.normal(scale=1.5, size=(num_q, dim))
    feats = torch.from_numpy(qf).float(), torch.from_numpy(gf).float()
    return feats, (q_pids, g_pids, q_camids, g_camids)


def tied_problem(seed, num_q=30, num_g=60, dim=12):
    """Features with four entries of +-1: norms are exactly 2, so cosine and Euclidean distances are
    exact in float32 and take a few values only; gallery rows are repeated: many exact ties."""
    rng = np.random.default_rng(seed)
    base = np.zeros((8, dim), np.float32)
    for row in base:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    gf = base[rng.integers(0, 8, num_g)]
    qf = base[rng.integers(0, 8, num_q)]
    ids = (
        rng.integers(0, 5, num_q),
        rng.integers(0, 5, num_g),
        rng.integers(0, 2, num_q),
        rng.integers(0, 2, num_g),
    )
    return (torch.from_numpy(qf), torch.from_numpy(gf)), ids


def assert_identical(got, want):
    assert got["num_valid_queries"] == want["num_valid_queries"]
    assert got["cmc"].dtype == np.float64 and np.array_equal(got["cmc"], want["cmc"])
    assert got["mAP"] == want["mAP"] and got["mINP"] == want["mINP"]


def full_matrix(feats, ids, metric, **kw):
    return evaluate_rank(pairwise_distance(*feats, metric=metric), *ids, **kw)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("mode", ["standard", "official"])
@pytest.mark.parametrize("seed", range(3))
def test_equals_evaluate_rank_on_the_full_matrix(seed, mode, metric):
    feats, ids = feature_problem(seed)
    for max_rank in (1, 10, 200):  # 200 > num_g = 90: the CMC is padded
        want = full_matrix(feats, ids, metric, max_rank=max_rank, mode=mode)
        assert 0 < want["num_valid_queries"] < len(ids[0])
        for chunk_rows in (None, 1, 7, 40, 1000):
            got = evaluate_features(
                *feats, *ids, metric=metric, mode=mode, max_rank=max_rank, chunk_rows=chunk_rows
            )
            assert_identical(got, want)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("mode", ["standard", "official"])
def test_ties_are_broken_like_the_full_matrix(mode, metric):
    for seed in range(4):
        feats, ids = tied_problem(seed)
        d = pairwise_distance(*feats, metric=metric)
        assert len(torch.unique(d)) <= 10  # exact ties everywhere
        want = evaluate_rank(d, *ids, max_rank=20, mode=mode)
        for chunk_rows in (1, 4, 30):
            assert_identical(
                evaluate_features(*feats, *ids, metric=metric, mode=mode, max_rank=20, chunk_rows=chunk_rows),
                want,
            )


@pytest.mark.parametrize("num_g", [1, 2, 3])
def test_small_galleries(num_g):
    qf = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    gf = torch.tensor([[1.0, 0.1], [0.2, 1.0], [0.5, 0.5]])[:num_g]
    ids = (np.array([1, 2, 1]), np.array([1, 2, 1])[:num_g], np.array([0, 0, 0]), np.array([1, 1, 1])[:num_g])
    for mode in ("standard", "official"):
        want = evaluate_rank(pairwise_distance(qf, gf, "cosine"), *ids, max_rank=50, mode=mode)
        got = evaluate_features(qf, gf, *ids, mode=mode, max_rank=50, chunk_rows=2)
        assert_identical(got, want)
        assert got["cmc"].shape == (num_g,)  # max_rank 50 clipped to the gallery


def test_a_huge_max_rank_is_clipped_to_the_gallery():
    feats, ids = feature_problem(3, num_q=20, num_g=12, num_ids=4)
    got = evaluate_features(*feats, *ids, max_rank=10**9)
    assert got["cmc"].shape == (12,)
    assert_identical(got, evaluate_features(*feats, *ids, max_rank=12))


def test_never_builds_the_full_matrix(monkeypatch):
    feats, ids = feature_problem(5, num_q=50, num_g=70)
    want = full_matrix(feats, ids, "cosine")
    shapes = []
    original = metrics._Gallery.distances  # what pairwise_distance computes, row by row

    def recording(self, qf):
        out = original(self, qf)
        shapes.append(tuple(out.shape))
        return out

    def forbidden(*args, **kwargs):
        raise AssertionError("evaluate_features must not build or rank a full distance matrix")

    monkeypatch.setattr(metrics._Gallery, "distances", recording)
    monkeypatch.setattr(metrics, "pairwise_distance", forbidden)
    monkeypatch.setattr(metrics, "evaluate_rank", forbidden)
    assert_identical(evaluate_features(*feats, *ids, chunk_rows=8), want)
    assert shapes == [(8, 70)] * 6 + [(2, 70)]
    shapes.clear()
    monkeypatch.setattr(metrics, "ROW_BLOCK", 4)  # default: whole row blocks within budget // num_g
    monkeypatch.setattr(metrics, "DISTANCE_CHUNK_ELEMENTS", 70 * 14)
    got = evaluate_features(*feats, *ids)
    monkeypatch.undo()
    monkeypatch.setattr(metrics, "ROW_BLOCK", 4)
    assert_identical(got, full_matrix(feats, ids, "cosine"))  # the full matrix in the same row blocks
    assert shapes == [(12, 70)] * 4 + [(2, 70)]


def test_a_query_row_is_the_same_bits_in_any_chunk():
    torch.manual_seed(0)
    qf, gf = torch.randn(300, 1024), torch.randn(500, 1024)
    for metric in ("cosine", "euclidean"):
        full = pairwise_distance(qf, gf, metric)
        for start, stop in ((0, 1), (3, 10), (17, 299), (256, 300)):
            assert torch.equal(pairwise_distance(qf[start:stop], gf, metric), full[start:stop])


def test_float64_and_numpy_features():
    feats, ids = feature_problem(7)
    qf, gf = (f.double().numpy() for f in feats)
    want = evaluate_rank(pairwise_distance(qf, gf, "euclidean"), *ids)
    assert_identical(evaluate_features(qf, gf, *ids, metric="euclidean", chunk_rows=9), want)


def test_errors():
    feats, ids = feature_problem(1, num_q=6, num_g=9)
    qf, gf = feats
    with pytest.raises(ValueError, match="same feature dimension"):
        evaluate_features(qf, gf[:, :5], *ids)
    with pytest.raises(ValueError, match="metric must be one of"):
        evaluate_features(qf, gf, *ids, metric="manhattan")
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate_features(qf, gf, *ids, mode="matlab")
    with pytest.raises(ValueError, match="chunk_rows: expected an integer >= 1"):
        evaluate_features(qf, gf, *ids, chunk_rows=0)
    with pytest.raises(ValueError, match="max_rank: expected an integer >= 1"):
        evaluate_features(qf, gf, *ids, max_rank=0)
    with pytest.raises(ValueError, match=r"g_pids has shape \(8,\)"):
        evaluate_features(qf, gf, ids[0], ids[1][:8], *ids[2:])
    bad = qf.clone()
    bad[4, 0] = float("nan")
    with pytest.raises(ValueError, match=r"qf: row 4 of \d+ is not finite \(1 row with inf or NaN\)"):
        evaluate_features(bad, gf, *ids, chunk_rows=2)
    with pytest.raises(ValueError, match="no query has a valid match"):
        evaluate_features(qf, gf, ids[0] + 100, *ids[1:])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["standard", "official"])
def test_cuda_features_are_ranked_on_the_gpu(mode, monkeypatch):
    feats, ids = feature_problem(3, num_q=60, num_g=300)
    qf, gf = (f.cuda() for f in feats)
    want = evaluate_rank(pairwise_distance(qf, gf, "cosine"), *ids, mode=mode)  # full matrix, same GPU
    devices = []
    original = metrics._chunk_matches_torch

    def recording(chunk, *args):
        devices.append(chunk.device.type)
        return original(chunk, *args)

    monkeypatch.setattr(metrics, "_chunk_matches_torch", recording)
    assert_identical(evaluate_features(qf, gf, *ids, mode=mode, chunk_rows=16), want)
    assert devices and set(devices) == {"cuda"}
