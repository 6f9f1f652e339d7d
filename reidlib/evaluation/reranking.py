"""k-reciprocal re-ranking (Zhong et al., CVPR 2017, "Re-ranking Person Re-identification with
k-reciprocal Encoding").

Conventions (the paper leaves them open; the values match the authors' public setting):

- The inputs are the "original distance" d(p, g) of the paper. Eq. 1 uses a Mahalanobis distance,
  which for the identity metric is the SQUARED Euclidean distance, so pass squared Euclidean distances
  to follow the paper. With L2-normalised features, squared Euclidean = 2 x cosine distance, and the
  per-sample normalisation below cancels the factor 2: cosine distances give the same result. The
  distances are used as given: nothing is squared inside (peer code squares its input).
- Queries and gallery form one joint set of N = num_q + num_g samples; the joint distance matrix
  [[q_q, q_g], [q_g^T, g_g]] is normalised per sample by its maximum (the matrix is symmetric, so row
  and column maxima agree; q_q_dist and g_g_dist are assumed symmetric).
- N(p, k) (eq. 2) = the k nearest OTHER samples plus p itself, i.e. the first k + 1 of p's stable
  ranking (ties broken by index); R(p, k) = {g in N(p, k) : p in N(g, k)} (eq. 3).
- R*(p, k1) (eq. 4): R(p, k1), plus R(q, k1/2) for each q in R(p, k1) whose R(q, k1/2) shares MORE than
  2/3 of its members with R(p, k1); k1/2 is rounded to the nearest integer (ties to even).
- V_p (eq. 7): exp(-d(p, g)) on R*(p, k1), normalised to sum 1 (zero elsewhere).
- Local query expansion (eq. 11): V_p <- mean of V_g over the k2 nearest samples of p, p included
  (the first k2 of its ranking).
- Jaccard distance (eq. 10): 1 - sum min(V_p, V_g) / sum max(V_p, V_g); every V row sums to 1, so
  sum max = 2 - sum min.
- Final distance (eq. 12): (1 - lambda) d_J + lambda d, with d the normalised original distance.

Memory: the dense joint matrix (19281^2 float32 = 1.5 GB for Market-1501) is never built. It is
visited in row chunks once to find each sample's k nearest (stable, with packed uint64 keys); V is a
sparse matrix (a few hundred non-zeros per row) and the Jaccard step walks an inverted index (V's
gallery rows by column), so the extra memory beyond the inputs and the (num_q, num_g) output is small.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from reidlib.evaluation.metrics import stable_sort_keys
from reidlib.utils.checks import check_int

__all__ = ["check_rerank_memory", "re_ranking", "rerank_memory_bytes"]

_CHUNK_ELEMENTS = 8_000_000


def _as_float32(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise ValueError(f"{name} must hold real distances, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
    return np.asarray(x, dtype=np.float32)  # no copy when already float32


def _check_finite(x: np.ndarray, name: str) -> None:
    rows = max(1, _CHUNK_ELEMENTS // max(x.shape[1], 1))
    bad = sum(int(np.count_nonzero(~np.isfinite(x[s : s + rows]))) for s in range(0, x.shape[0], rows))
    if bad:
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s): distances must be finite")


class _Joint:
    """Row access to the joint distance matrix [[q_q, q_g], [q_g^T, g_g]] without building it."""

    def __init__(self, q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> None:
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.num_q, self.num_g = q_g.shape
        self.n = self.num_q + self.num_g

    def rows(self, s: int, e: int) -> np.ndarray:
        """(e - s, N) float32 rows s..e-1 of the joint matrix, negatives clamped to 0."""
        nq = self.num_q
        out = np.empty((e - s, self.n), dtype=np.float32)  # (R, N)
        qs, qe = min(s, nq), min(e, nq)
        if qe > qs:  # query rows: [q_q | q_g]
            out[: qe - qs, :nq] = self.q_q[qs:qe]
            out[: qe - qs, nq:] = self.q_g[qs:qe]
        gs, ge = max(s, nq) - nq, max(e, nq) - nq
        if ge > gs:  # gallery rows: [q_g^T | g_g]
            out[qe - qs :, :nq] = self.q_g[:, gs:ge].T
            out[qe - qs :, nq:] = self.g_g[gs:ge]
        np.maximum(out, 0.0, out=out)
        return out

    def pairs(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """float32 d(i[t], j[t]) for index arrays into the joint set, negatives clamped to 0."""
        nq = self.num_q
        out = np.empty(len(i), dtype=np.float32)
        iq, jq = i < nq, j < nq
        for mask, src, a, b in (
            (iq & jq, self.q_q, i, j),
            (iq & ~jq, self.q_g, i, j - nq),
            (~iq & jq, self.q_g, j, i - nq),
            (~iq & ~jq, self.g_g, i - nq, j - nq),
        ):
            out[mask] = src[a[mask], b[mask]]
        return np.maximum(out, 0.0, out=out)


def _nearest(joint: _Joint, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's k nearest samples (stable ranking of its normalised row) and the row maxima."""
    n = joint.n
    ranks = np.empty((n, k), dtype=np.int64)  # (N, k)
    row_max = np.empty(n, dtype=np.float32)  # (N,)
    step = max(1, _CHUNK_ELEMENTS // n)
    for s in range(0, n, step):
        e = min(s + step, n)
        rows = joint.rows(s, e)  # (R, N)
        m = rows.max(axis=1)
        m[m <= 0] = 1.0  # an all-zero row stays all zero
        row_max[s:e] = m
        rows /= m[:, None]
        keys = stable_sort_keys(rows)  # (R, N) unique uint64, order = stable order of the row
        del rows
        if k < n:
            keys = np.partition(keys, k - 1, axis=1)[:, :k]
        keys.sort(axis=1)
        ranks[s:e] = (keys & np.uint64(0xFFFFFFFF)) >> np.uint64(8)  # column index
    return ranks, row_max


def _reciprocal(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """N(p, k) as an (N, k + 1) array and the mask of its members that are in R(p, k) (eq. 3)."""
    fwd = np.ascontiguousarray(ranks[:, : k + 1])  # (N, k + 1)
    n, w = fwd.shape
    mask = np.empty((n, w), dtype=bool)
    step = max(1, _CHUNK_ELEMENTS // (w * w))
    for s in range(0, n, step):
        e = min(s + step, n)
        p = np.arange(s, e)[:, None, None]
        mask[s:e] = (fwd[fwd[s:e]] == p).any(axis=2)  # p in N(g, k) for each g in N(p, k)
    return fwd, mask


def _expanded_sets(fwd, rec, half, half_rec) -> tuple[np.ndarray, np.ndarray]:
    """R*(p, k1) (eq. 4) as sparse (row, col) pairs sorted by row, without duplicates."""
    n, w = fwd.shape
    wh = half.shape[1]
    rows_out, cols_out = [], []
    step = max(1, _CHUNK_ELEMENTS // (w * wh * w))
    for s in range(0, n, step):
        e = min(s + step, n)
        r_set = np.where(rec[s:e], fwd[s:e], -1)  # (R, w) R(p, k1), -1 = not a member
        cand = fwd[s:e]  # (R, w) candidates q (used where rec)
        c_set = np.where(half_rec[cand], half[cand], -2)  # (R, w, wh) R(q, k1/2), -2 = not a member
        c_size = half_rec[cand].sum(axis=2)  # (R, w)
        inter = (c_set[:, :, :, None] == r_set[:, None, None, :]).any(axis=3).sum(axis=2)  # (R, w)
        accept = rec[s:e] & (3 * inter > 2 * c_size)  # |R(p,k1) & R(q,k1/2)| > 2/3 |R(q,k1/2)|
        extra = np.where(accept[:, :, None], c_set, -1).reshape(e - s, w * wh)  # (R, w * wh)
        members = np.concatenate([r_set, extra], axis=1)  # (R, w + w * wh)
        members = np.where(members < 0, -1, members)
        members.sort(axis=1)
        first = np.ones(members.shape, dtype=bool)
        first[:, 1:] = members[:, 1:] != members[:, :-1]
        r, c = np.nonzero(first & (members >= 0))
        rows_out.append(r + s)
        cols_out.append(members[r, c])
    return np.concatenate(rows_out), np.concatenate(cols_out)


def _jaccard_final(v: sp.csr_matrix, joint: _Joint, row_max: np.ndarray, lambda_value: float) -> np.ndarray:
    """(num_q, num_g) float32 (1 - lambda) * Jaccard(V_q, V_g) + lambda * normalised d(q, g)."""
    nq, ng = joint.num_q, joint.num_g
    vq = v[:nq].tocsr()
    inv = v[nq:].tocsc()  # inverted index: column j -> gallery rows with V_gj > 0
    inv.sort_indices()
    col_len = np.diff(inv.indptr)  # (N,)
    pairs_per_nz = col_len[vq.indices]  # (nnz_q,) gallery entries sharing each query non-zero
    cum_pairs = np.concatenate([[0], np.cumsum(pairs_per_nz)])[vq.indptr]  # (num_q + 1,)
    max_rows = max(1, _CHUNK_ELEMENTS // max(ng, 1))
    out = np.empty((nq, ng), dtype=np.float32)  # (num_q, num_g)
    s = 0
    while s < nq:
        e = int(np.searchsorted(cum_pairs, cum_pairs[s] + _CHUNK_ELEMENTS, side="right")) - 1
        e = min(max(e, s + 1), s + max_rows, nq)
        a, b = vq.indptr[s], vq.indptr[e]
        counts = pairs_per_nz[a:b]  # (nnz,)
        q_local = np.repeat(np.arange(e - s), np.diff(vq.indptr[s : e + 1]))  # (nnz,)
        q_rep = np.repeat(q_local, counts)  # (P,)
        val_rep = np.repeat(vq.data[a:b], counts)  # (P,)
        start = np.repeat(inv.indptr[vq.indices[a:b]] - np.cumsum(counts) + counts, counts)
        pos = start + np.arange(len(q_rep))  # (P,) index into the inverted index
        mins = np.minimum(val_rep, inv.data[pos])
        sum_min = np.bincount(q_rep * ng + inv.indices[pos], weights=mins, minlength=(e - s) * ng)
        sum_min = sum_min.reshape(e - s, ng)  # (R, num_g)
        jaccard = 1.0 - sum_min / (2.0 - sum_min)
        original = np.maximum(joint.q_g[s:e], 0.0) / row_max[s:e, None]
        out[s:e] = (1.0 - lambda_value) * jaccard + lambda_value * original
        s = e
    return out


def re_ranking(
    q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """k-reciprocal re-ranked (num_q, num_g) float32 distances (Zhong et al. 2017, eq. 12).

    Args:
        q_g_dist: (num_q, num_g) original distances query -> gallery (squared Euclidean to follow the
            paper's eq. 1; see the module docstring). numpy or torch.
        q_q_dist: (num_q, num_q) query -> query; g_g_dist: (num_g, num_g) gallery -> gallery; symmetric.
        k1: size of the k-reciprocal neighbourhood (paper: 20). Capped at N - 1 on tiny problems.
        k2: local query expansion size, the sample itself included (paper: 6); 1 = no expansion.
        lambda_value: weight of the original distance (paper: 0.3); 1 gives back the normalised
            original distance.

    Negative distances (rounding in a squared-distance expansion) are treated as 0; NaN or infinite
    ones are an error.
    """
    q_g = _as_float32(q_g_dist, "q_g_dist")
    q_q = _as_float32(q_q_dist, "q_q_dist")
    g_g = _as_float32(g_g_dist, "g_g_dist")
    nq, ng = q_g.shape
    if q_q.shape != (nq, nq):
        raise ValueError(
            f"q_q_dist has shape {q_q.shape}, but q_g_dist has shape {q_g.shape}: expected ({nq}, {nq})"
        )
    if g_g.shape != (ng, ng):
        raise ValueError(
            f"g_g_dist has shape {g_g.shape}, but q_g_dist has shape {q_g.shape}: expected ({ng}, {ng})"
        )
    if nq == 0 or ng == 0:
        raise ValueError(f"q_g_dist needs at least one query and one gallery item, got shape {q_g.shape}")
    for name, value in (("k1", k1), ("k2", k2)):
        check_int(name, value, 1)
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")
    for name, x in (("q_g_dist", q_g), ("q_q_dist", q_q), ("g_g_dist", g_g)):
        _check_finite(x, name)

    joint = _Joint(q_g, q_q, g_g)
    n = joint.n
    k1 = min(int(k1), n - 1) if n > 1 else 0
    k2 = min(int(k2), n)
    k_half = int(round(k1 / 2))
    ranks, row_max = _nearest(joint, max(k1 + 1, k2))  # (N, K)

    fwd, rec = _reciprocal(ranks, k1)  # R(p, k1)
    half, half_rec = _reciprocal(ranks, k_half)  # R(p, k1/2)
    rows, cols = _expanded_sets(fwd, rec, half, half_rec)  # R*(p, k1)

    # eq. 7: Gaussian kernel of the normalised distance on R*, each row normalised to sum 1
    weight = np.exp(-(joint.pairs(rows, cols) / row_max[rows])).astype(np.float64)
    weight /= np.bincount(rows, weights=weight, minlength=n)[rows]
    v = sp.csr_matrix((weight, (rows, cols)), shape=(n, n))  # (N, N) sparse

    if k2 > 1:  # eq. 11: mean of V over the k2 nearest samples, the sample itself included
        qe_rows = np.repeat(np.arange(n), k2)
        qe = sp.csr_matrix((np.full(n * k2, 1.0 / k2), (qe_rows, ranks[:, :k2].ravel())), shape=(n, n))
        v = (qe @ v).tocsr()
    return _jaccard_final(v, joint, row_max, float(lambda_value))


def rerank_memory_bytes(num_q: int, num_g: int) -> int:
    """Bytes re-ranking a (num_q, num_g) problem holds at once: the float32 q_g, q_q and g_g distances
    it reads, the re-ranked (num_q, num_g) output, and the squared copies the evaluation makes."""
    n = num_q + num_g
    return 4 * (3 * num_q * num_g + 2 * (num_q * num_q + num_g * num_g)) + 12 * 400 * n  # + sparse V


def available_memory_bytes() -> int:
    """Memory the machine can still give this process (``MemAvailable``; total RAM where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_rerank_memory(num_q: int, num_g: int, available: int | None = None) -> None:
    """Refuse (MemoryError, saying how much it needs) a re-ranking the machine cannot hold."""
    need = rerank_memory_bytes(num_q, num_g)
    available = available_memory_bytes() if available is None else available
    if need > available:
        raise MemoryError(
            f"re-ranking {num_q} queries x {num_g} gallery images needs about {need / 2**30:.1f} GiB "
            f"(float32 query-gallery, query-query and gallery-gallery distances and the output) but "
            f"{available / 2**30:.1f} GiB is available; evaluate without it (eval.rerank=false, no "
            "rerank in eval.final_variants) or on a larger machine"
        )
