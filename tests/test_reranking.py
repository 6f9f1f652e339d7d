"""Tests of reidlib.evaluation.reranking against a slow literal implementation of Zhong et al. (CVPR 2017)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlib.evaluation.reranking import re_ranking


def literal_re_ranking(q_g, q_q, g_g, k1, k2, lambda_value):
    """The paper's equations with Python sets and loops over a dense joint matrix (slow, small only)."""
    nq, ng = q_g.shape
    d = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64)
    n = nq + ng
    d = d / d.max(axis=1, keepdims=True)  # original distance normalised per sample
    order = [sorted(range(n), key=lambda j, i=i: (d[i, j], j)) for i in range(n)]  # stable ranking

    def nbrs(p, k):  # eq. 2: N(p, k) = the k nearest other samples and p itself
        return set(order[p][: k + 1])

    def recip(p, k):  # eq. 3
        return {g for g in nbrs(p, k) if p in nbrs(g, k)}

    half = int(round(k1 / 2))
    v = np.zeros((n, n))
    for p in range(n):
        r = recip(p, k1)
        r_star = set(r)
        for q in r:  # eq. 4: add R(q, k1/2) when more than 2/3 of it lies in R(p, k1)
            rq = recip(q, half)
            if len(r & rq) > 2.0 / 3.0 * len(rq):
                r_star |= rq
        for g in r_star:  # eq. 7, normalised to sum 1
            v[p, g] = np.exp(-d[p, g])
        v[p] /= v[p].sum()
    v_qe = np.zeros_like(v)
    for p in range(n):  # eq. 11: local query expansion over the k2 nearest (p included)
        v_qe[p] = np.mean([v[g] for g in order[p][:k2]], axis=0)
    out = np.zeros((nq, ng))
    for i in range(nq):
        for j in range(ng):
            a, b = v_qe[i], v_qe[nq + j]
            jac = 1.0 - np.minimum(a, b).sum() / np.maximum(a, b).sum()  # eq. 10
            out[i, j] = (1 - lambda_value) * jac + lambda_value * d[i, nq + j]  # eq. 12
    return out


def _sq_euclid(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _problem(seed, nq=5, ng=12, dim=4, integer=False):
    """Clustered features so that reciprocal neighbourhoods are non-trivial."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, dim)) * 3
    qf = centres[rng.integers(0, 4, nq)] + rng.normal(size=(nq, dim))
    gf = centres[rng.integers(0, 4, ng)] + rng.normal(size=(ng, dim))
    if integer:  # integer coordinates: many exactly tied distances
        qf, gf = np.round(qf), np.round(gf)
    return _sq_euclid(qf, gf), _sq_euclid(qf, qf), _sq_euclid(gf, gf)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k1,k2", [(4, 3), (5, 2), (6, 1), (3, 4)])
def test_matches_literal(seed, k1, k2):
    q_g, q_q, g_g = _problem(seed)
    got = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=0.3)
    want = literal_re_ranking(q_g, q_q, g_g, k1, k2, 0.3)
    assert got.dtype == np.float32 and got.shape == (5, 12)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


@pytest.mark.parametrize("seed", range(4))
def test_matches_literal_with_ties(seed):
    q_g, q_q, g_g = _problem(seed, nq=6, ng=14, dim=2, integer=True)
    assert len(np.unique(q_g)) < q_g.size  # ties are present
    got = re_ranking(q_g, q_q, g_g, k1=4, k2=3, lambda_value=0.2)
    np.testing.assert_allclose(got, literal_re_ranking(q_g, q_q, g_g, 4, 3, 0.2), rtol=0, atol=2e-6)


def test_default_parameters_on_a_larger_problem():
    q_g, q_q, g_g = _problem(7, nq=8, ng=30, dim=6)
    got = re_ranking(torch.from_numpy(q_g), q_q, g_g)  # k1=20, k2=6, lambda=0.3; torch input too
    np.testing.assert_allclose(got, literal_re_ranking(q_g, q_q, g_g, 20, 6, 0.3), rtol=0, atol=2e-6)


def test_k1_larger_than_the_joint_set_is_capped():
    q_g, q_q, g_g = _problem(8, nq=2, ng=4)
    got = re_ranking(q_g, q_q, g_g, k1=20, k2=6)
    np.testing.assert_allclose(got, literal_re_ranking(q_g, q_q, g_g, 5, 6, 0.3), rtol=0, atol=2e-6)


def test_lambda_one_gives_normalised_original_distance():
    q_g, q_q, g_g = _problem(3)
    got = re_ranking(q_g, q_q, g_g, k1=4, k2=3, lambda_value=1.0)
    row_max = np.maximum(q_q.max(axis=1), q_g.max(axis=1))  # max of each query's joint row
    np.testing.assert_allclose(got, q_g / row_max[:, None], rtol=1e-6, atol=0)
    assert (np.argsort(got, axis=1, kind="stable") == np.argsort(q_g, axis=1, kind="stable")).all()


def test_reranking_changes_ranking_and_stays_in_range():
    q_g, q_q, g_g = _problem(4)
    got = re_ranking(q_g, q_q, g_g, k1=4, k2=3, lambda_value=0.0)
    assert (got >= 0).all() and (got <= 1 + 1e-6).all()  # pure Jaccard distance


def test_inconsistent_shapes_and_bad_arguments():
    q_g, q_q, g_g = _problem(0)
    with pytest.raises(ValueError, match=r"q_q_dist has shape \(4, 4\).*expected \(5, 5\)"):
        re_ranking(q_g, q_q[:4, :4], g_g)
    with pytest.raises(ValueError, match=r"g_g_dist has shape \(12, 11\).*expected \(12, 12\)"):
        re_ranking(q_g, q_q, g_g[:, :11])
    with pytest.raises(ValueError, match="q_g_dist must be 2-D"):
        re_ranking(q_g[0], q_q, g_g)
    with pytest.raises(ValueError, match="k1: expected an integer"):
        re_ranking(q_g, q_q, g_g, k1=0)
    with pytest.raises(ValueError, match="k2: expected an integer"):
        re_ranking(q_g, q_q, g_g, k2=0)
    with pytest.raises(ValueError, match="lambda_value"):
        re_ranking(q_g, q_q, g_g, lambda_value=1.5)
    bad = q_g.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="q_g_dist contains 1 NaN or infinite"):
        re_ranking(bad, q_q, g_g)


def test_small_chunks_give_the_same_result(monkeypatch):
    import reidlib.evaluation.reranking as rr

    q_g, q_q, g_g = _problem(5, nq=7, ng=15)
    whole = re_ranking(q_g, q_q, g_g, k1=4, k2=3)
    monkeypatch.setattr(rr, "_CHUNK_ELEMENTS", 40)  # several chunks in every chunked loop
    np.testing.assert_array_equal(re_ranking(q_g, q_q, g_g, k1=4, k2=3), whole)
    np.testing.assert_allclose(whole, literal_re_ranking(q_g, q_q, g_g, 4, 3, 0.3), rtol=0, atol=2e-6)


def test_cosine_distance_equals_squared_euclidean_of_normalised_features():
    # with unit features |q - g|^2 = 2 (1 - cos): the per-sample normalisation cancels the factor 2
    rng = np.random.default_rng(9)
    qf, gf = rng.normal(size=(5, 8)), rng.normal(size=(12, 8))
    qf /= np.linalg.norm(qf, axis=1, keepdims=True)
    gf /= np.linalg.norm(gf, axis=1, keepdims=True)
    cos = re_ranking(1 - qf @ gf.T, 1 - qf @ qf.T, 1 - gf @ gf.T, k1=4, k2=3)
    sq = re_ranking(_sq_euclid(qf, gf), _sq_euclid(qf, qf), _sq_euclid(gf, gf), k1=4, k2=3)
    np.testing.assert_allclose(cos, sq, rtol=0, atol=1e-5)
