"""The counting fast path of reidlib.evaluation.metrics (a good match's position = the items ahead of it,
counted; no sort of the gallery) against the per-query definition ``evaluate_rank_reference``, on
problems built to be hard for it: distances rounded to one or two bits of mantissa (ties everywhere),
-0.0 and +0.0, +-inf, duplicated gallery columns, matches tied with junk and with each other; chunks
and cache pieces of every size, one or several threads, and the torch implementation (the CUDA path)
run on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reidlib.evaluation.metrics as metrics
from reidlib.evaluation.metrics import (
    evaluate_features,
    evaluate_rank,
    evaluate_rank_reference,
    pairwise_distance,
)


def assert_same(got, want):
    assert got["num_valid_queries"] == want["num_valid_queries"]
    np.testing.assert_allclose(got["cmc"], want["cmc"], rtol=0, atol=1e-12)
    assert got["mAP"] == pytest.approx(want["mAP"], abs=1e-12)
    assert got["mINP"] == pytest.approx(want["mINP"], abs=1e-12)


def tied_problem(seed, bits, dtype=np.float32, num_q=14, num_g=70, num_ids=5, num_cams=3):
    """Distances over a few binades with ``bits`` bits of mantissa (a handful of distinct values per
    sign and binade), -0.0 / +0.0 / +-inf sprinkled in, duplicated gallery columns; few pids and
    cameras, so each query has many matches, junk among them, and every kind of tie."""
    rng = np.random.default_rng(seed)
    mantissa, exponent = np.frexp(rng.standard_normal((num_q, num_g)) * 3)
    dist = np.ldexp(np.round(mantissa * 2**bits) / 2**bits, exponent)
    special = rng.random((num_q, num_g))
    dist[special < 0.06] = 0.0
    dist[(special >= 0.06) & (special < 0.12)] = -0.0
    dist[(special >= 0.12) & (special < 0.15)] = np.inf
    dist[(special >= 0.15) & (special < 0.17)] = -np.inf
    dup = rng.integers(0, num_g, 10)
    dist[:, dup[:5]] = dist[:, dup[5:]]  # identical columns: ties in every row
    dist = dist.astype(dtype)
    g_pids = rng.integers(0, num_ids, num_g)
    q_pids = rng.integers(1, num_ids + 1, num_q)  # pid num_ids: absent from the gallery
    return dist, q_pids, g_pids, rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)


def torch_path(monkeypatch):
    """Count CPU tensors with the torch implementation, as CUDA tensors are."""
    monkeypatch.setattr(metrics, "_torch_counting", lambda device: True)


@pytest.mark.parametrize("mode", ["standard", "official"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bits", [1, 2])
def test_heavy_ties_match_the_reference(bits, dtype, mode):
    for seed in range(12):
        args = tied_problem(seed, bits, dtype)
        want = evaluate_rank_reference(*args, max_rank=20, mode=mode)
        assert len(np.unique(args[0])) < args[0].size // 15  # ties everywhere
        for chunk_rows in (None, 1, 5):
            assert_same(evaluate_rank(*args, max_rank=20, mode=mode, chunk_rows=chunk_rows), want)


@pytest.mark.parametrize("mode", ["standard", "official"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_implementation_on_cpu_matches_the_reference(monkeypatch, dtype, mode):
    torch_path(monkeypatch)
    for seed in range(8):
        dist, *ids = tied_problem(100 + seed, bits=1 + seed % 2)
        want = evaluate_rank_reference(dist, *ids, max_rank=20, mode=mode)
        got = evaluate_rank(torch.from_numpy(dist).to(dtype), *ids, max_rank=20, mode=mode, chunk_rows=4)
        assert_same(got, want)


def test_cache_pieces_of_one_row_and_one_match(monkeypatch):
    """COMPARE_BYTES below one padded row: every row alone, its matches compared one at a time."""
    args = tied_problem(7, bits=1, num_g=150, num_ids=3)
    want = evaluate_rank_reference(*args, max_rank=30)
    monkeypatch.setattr(metrics, "COMPARE_BYTES", 1)
    assert_same(evaluate_rank(*args, max_rank=30), want)
    monkeypatch.setattr(metrics, "COMPARE_BYTES", 3 * metrics._ROW_PAD)  # 3 rows x matches per piece
    assert_same(evaluate_rank(*args, max_rank=30), want)


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_do_not_change_the_result(threads):
    args = tied_problem(8, bits=2, num_q=40)
    want = evaluate_rank_reference(*args, max_rank=10)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        assert_same(evaluate_rank(*args, max_rank=10, chunk_rows=3), want)
    finally:
        torch.set_num_threads(before)


def test_a_nan_is_reported_from_the_first_chunk_that_holds_one():
    dist, *ids = tied_problem(9, bits=2, num_q=40)
    dist[30, 3] = dist[37, 5] = dist[38, 0] = np.nan
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # later chunks may finish first: the error is still chunk 28's
        with pytest.raises(ValueError, match=r"3 NaN value\(s\) \(counted from query row 28 on\)"):
            evaluate_rank(dist, *ids, chunk_rows=4)
    finally:
        torch.set_num_threads(before)


def test_ties_between_matches_junk_and_others_by_hand():
    # one query (pid 1, camera 0); gallery index: pid, camera, distance
    #   0: pid 2 cam 1 d 1.0   other, tied with the good match 3 and ahead of it (smaller index)
    #   1: pid 1 cam 0 d 1.0   junk, tied with 3 and ahead of it: removed, not counted
    #   2: pid 1 cam 1 d 0.5   good
    #   3: pid 1 cam 2 d 1.0   good, tied with 0, 1 and 4
    #   4: pid 1 cam 2 d 1.0   good, tied, after 3
    #   5: pid 2 cam 0 d 1.0   other, tied, after 3 and 4
    # stable order: 2, 0, 1, 3, 4, 5; without the junk: 2 (hit), 0, 3 (hit), 4 (hit), 5
    # positions 1, 3, 4: AP = (1/1 + 2/3 + 3/4) / 3 = 29/36; INP = 3/4
    dist = np.array([[1.0, 1.0, 0.5, 1.0, 1.0, 1.0]], dtype=np.float32)
    ids = dict(q_pids=[1], g_pids=[2, 1, 1, 1, 1, 2], q_camids=[0], g_camids=[1, 0, 1, 2, 2, 0])
    for evaluate in (evaluate_rank, evaluate_rank_reference):
        r = evaluate(dist, **ids, max_rank=5)
        assert r["mAP"] == pytest.approx(29 / 36) and r["mINP"] == pytest.approx(3 / 4)
        assert r["cmc"].tolist() == [1.0] * 5


def test_row_counts_count_the_true_entries():
    rng = np.random.default_rng(0)
    for width in (metrics._ROW_PAD, 3 * metrics._ROW_PAD):
        for p in (0.0, 0.3, 1.0):
            flags = rng.random((5, width)) < p
            np.testing.assert_array_equal(metrics._row_counts(flags), flags.sum(axis=1))


@pytest.mark.parametrize("mode", ["standard", "official"])
def test_evaluate_features_torch_path_on_cpu(monkeypatch, mode):
    """evaluate_features' CUDA path (distances and counting kept on the device) run on CPU tensors."""
    rng = np.random.default_rng(3)
    base = rng.choice([-1.0, 0.0, 1.0], size=(6, 8)).astype(np.float32)  # few distinct rows: ties
    qf = torch.from_numpy(base[rng.integers(0, 6, 25)] + rng.normal(size=(25, 8)).astype(np.float32) * 0.1)
    gf = torch.from_numpy(base[rng.integers(0, 6, 60)])
    ids = (rng.integers(0, 4, 25), rng.integers(0, 4, 60), rng.integers(0, 2, 25), rng.integers(0, 2, 60))
    for metric in ("cosine", "euclidean"):
        dist = pairwise_distance(qf, gf, metric).numpy()
        want = evaluate_rank_reference(dist, *ids, max_rank=15, mode=mode)
        numpy_path = evaluate_features(qf, gf, *ids, metric=metric, mode=mode, max_rank=15, chunk_rows=7)
        with monkeypatch.context() as patch:
            torch_path(patch)
            got = evaluate_features(qf, gf, *ids, metric=metric, mode=mode, max_rank=15, chunk_rows=7)
        assert_same(got, want)
        assert_same(numpy_path, want)
