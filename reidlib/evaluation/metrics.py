"""Retrieval metrics for person re-identification: CMC, mAP and mINP, plus the distance matrix.

Two protocols (docs/reading-the-papers.md#evaluation-standard-protocol and
docs/reading-the-papers.md#evaluation-official-protocol):

- ``"standard"``: what torchreid, fast-reid and BoT compute, and what the SEN and Deep Miner papers
  report. For each query the gallery is ranked by increasing distance (ties broken by gallery index,
  a stable sort); gallery items with the query's pid AND camera are junk and removed; a query with no
  remaining match is skipped. AP is the non-interpolated mean of the precision at each match; mINP
  (Ye et al., "Deep Learning for Person Re-identification: A Survey") is the number of matches over the
  1-based position of the last one. CMC, mAP and mINP are averaged over the valid queries.
- ``"official"``: the Market-1501 MATLAB code (``compute_AP.m``): same junk rule (pid -1 images were
  dropped at load time), "good" = same pid from another camera, trapezoidal AP. Every query counts: a
  query without a good match contributes AP = CMC = mINP = 0 (our choice; the MATLAB code never meets
  one on Market-1501). mINP uses the standard per-query value.

In both modes max_rank is clipped to the gallery size (as torchreid does: a rank past the gallery
means nothing, and a huge max_rank would only allocate), a filtered gallery shorter than max_rank pads
the CMC with its last value, and a problem where no query has a good match is an error rather than a
row of zeros.

:func:`evaluate_rank_reference` is the definition: one plain loop per query, to read in a minute.
:func:`evaluate_rank` is the fast version of the same numbers, and the tests hold it to the loop.

Only the positions of the query's good matches in the filtered ranked list matter, and each is a count,
so the fast path never sorts the gallery: a good match's position in the stable order is the number of
gallery items closer than it plus the equally distant ones with a smaller index, and the junk items
ahead of it are found among the query's own matches. The counts are comparisons of a chunk of queries'
rows against their matches' distances (O(G) per match, vectorised; on CPU in cache-sized pieces on all
the torch threads, on CUDA on the GPU), and every metric is computed from the sparse list of positions
with vectorised numpy. Chunks keep memory bounded (an MSMT17 problem is 11,659 x 82,161).
"""

from __future__ import annotations

import queue
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from reidlib.utils.checks import check_int

__all__ = [
    "CHUNK_ELEMENTS",
    "CPU_CHUNK_ELEMENTS",
    "MODES",
    "evaluate_features",
    "evaluate_rank",
    "evaluate_rank_reference",
    "pairwise_distance",
    "stable_sort_keys",
]

MODES = ("standard", "official")
# Queries per chunk = budget // num_g (at least 1). On CPU a chunk is one task for a worker thread
# (its rows are copied and compared in cache-sized pieces); on GPU bigger chunks are better.
CHUNK_ELEMENTS = 8_000_000
CPU_CHUNK_ELEMENTS = 1_000_000
# pairwise_distance multiplies queries in blocks of exactly this many rows (see there).
ROW_BLOCK = 256
_LITTLE_ENDIAN = sys.byteorder == "little"
# CPU counting: one comparison writes at most this many bytes (rows x matches x padded gallery), so
# that it and the rows it reads stay in a core's L2 cache.
COMPARE_BYTES = 1 << 20
# Rows of comparison results are padded to a multiple of 255 uint64 words: summing 255 words whose
# bytes are 0 or 1 cannot carry out of a byte (see _row_counts).
_ROW_PAD = 255 * 8


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _shape(x) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def _as_distmat(distmat) -> np.ndarray | torch.Tensor:
    """A 2-D float32/float64 numpy array, or a CUDA tensor (kept on its device, counted there)."""
    if isinstance(distmat, torch.Tensor):
        distmat = distmat.detach()
        if distmat.ndim != 2:
            raise ValueError(f"distmat must be 2-D (num_q, num_g), got shape {_shape(distmat)}")
        if distmat.dtype not in (torch.float32, torch.float64):
            if distmat.is_floating_point() or distmat.dtype == torch.bool:
                distmat = distmat.float()
            elif distmat.is_complex():
                raise ValueError(f"distmat must hold real distances, got dtype {distmat.dtype}")
            else:
                distmat = distmat.double()
        if _torch_counting(distmat.device):
            return distmat
        return distmat.cpu().numpy()
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_q, num_g), got shape {distmat.shape}")
    if distmat.dtype.kind in "iub":
        distmat = distmat.astype(np.float64)
    elif distmat.dtype.kind == "f" and distmat.dtype not in (np.float32, np.float64):
        distmat = distmat.astype(np.float32)
    elif distmat.dtype.kind != "f":
        raise ValueError(f"distmat must hold real distances, got dtype {distmat.dtype}")
    return distmat


def _as_ids(ids, name: str, expected: int, distmat_shape: tuple[int, int]) -> np.ndarray:
    """A 1-D integer numpy array of length ``expected``; ``name`` is the argument, for the message."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.shape[0] != expected:
        raise ValueError(
            f"{name} has shape {ids.shape}, but distmat has shape {distmat_shape}: expected ({expected},)"
        )
    if ids.dtype.kind not in "iu":
        if ids.size == 0:
            return ids.astype(np.int64)
        raise ValueError(f"{name} must hold integer ids, got dtype {ids.dtype}")
    return ids


def _encode(q_ids: np.ndarray, g_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map ids to dense int32 codes (same code = same id): cheaper to gather than int64."""
    _, inverse = np.unique(np.concatenate([q_ids, g_ids]), return_inverse=True)
    inverse = inverse.astype(np.int32)
    return inverse[: len(q_ids)], inverse[len(q_ids) :]


def _raise_on_nan(distmat, start: int, rows: int) -> None:
    """Count the NaN in distmat[start:] and raise a ValueError saying how many, if there are any."""
    count = 0
    for s in range(start, distmat.shape[0], rows):
        chunk = distmat[s : s + rows]
        if isinstance(chunk, torch.Tensor):
            count += int(torch.isnan(chunk).sum().item())
        else:
            count += int(np.count_nonzero(np.isnan(chunk)))
    if count:
        raise ValueError(
            f"distmat contains {count} NaN value(s) (counted from query row {start} on) out of "
            f"{distmat.shape[0] * distmat.shape[1]}: distances must be finite (+inf is allowed)"
        )


# --------------------------------------------------------------------------------------------------
# stable sort keys (re-ranking's nearest-neighbour search sorts rows with them)
# --------------------------------------------------------------------------------------------------
def stable_sort_keys(dist: np.ndarray, flags: np.ndarray | None = None, out: np.ndarray | None = None):
    """uint64 keys whose plain sort is the stable sort of each row of a float32 ``dist`` (R, G).

    High 32 bits: the float mapped to order-preserving uint32 bits (``+0.0`` added first so that
    ``-0.0 == +0.0``; negative floats: ``~bits``, others: ``bits | 0x80000000``). Low 32 bits:
    ``(column << 8) | flag``, with ``flags`` an optional (R, G) bool array carried along. Keys are
    unique, so ties fall back to the column index whatever the flags; after sorting, the column is
    ``(key & 0xFFFFFFFF) >> 8`` and the flag ``key & 1``. numpy's SIMD integer sort of these keys is
    about 4x faster than a stable float argsort. NaN must be excluded by the caller; G < 2**24.
    """
    if dist.dtype != np.float32 or dist.ndim != 2:
        raise ValueError(f"stable_sort_keys needs a 2-D float32 array, got {dist.dtype} {dist.shape}")
    num_rows, num_cols = dist.shape
    if num_cols >= 2**24:
        raise ValueError(f"rows of {num_cols} columns do not fit the 24-bit column index")
    keys = np.empty((num_rows, num_cols), dtype=np.uint64) if out is None else out  # (R, G)
    if _LITTLE_ENDIAN and num_rows > 0:  # write both halves in place through 32-bit views
        halves = keys.view(np.uint32)  # (R, 2G)
        high, low = halves[:, 1::2], halves[:, 0::2]
        np.add(dist, np.float32(0.0), out=high.view(np.float32))
        sign = np.right_shift(high.view(np.int32), 31)  # (R, G) all ones where negative, else 0
        sign |= np.int32(-(2**31))
        high ^= sign.view(np.uint32)
        np.left_shift(np.arange(num_cols, dtype=np.uint32), 8, out=low[0])
        low[1:] = low[0]
        if flags is not None:
            low |= flags
        return keys
    bits = np.add(dist, np.float32(0.0), order="C").view(np.uint32)  # (R, G)
    sign = (bits.view(np.int32) >> 31).view(np.uint32)
    sign |= np.uint32(0x80000000)
    bits ^= sign
    keys[...] = bits
    keys <<= np.uint64(32)
    keys |= np.arange(num_cols, dtype=np.uint64) << np.uint64(8)
    if flags is not None:
        keys |= flags
    return keys


# --------------------------------------------------------------------------------------------------
# positions of the good matches, by counting (no sort of the gallery)
# --------------------------------------------------------------------------------------------------
class _Matches:
    """Every query's matches (gallery items with its pid), found once per evaluation, as flat lists
    sorted by (query, gallery index): query q's are ``[start[q], start[q + 1])``; ``junk`` flags those
    seen by the query's own camera (removed from its ranked list)."""

    def __init__(self, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray):
        by_pid = np.argsort(g_pids, kind="stable")  # gallery indices grouped by pid, in gallery order
        sorted_pids = g_pids[by_pid]
        first = np.searchsorted(sorted_pids, q_pids, side="left")
        count = np.searchsorted(sorted_pids, q_pids, side="right") - first  # (num_q,)
        self.start = np.concatenate([[0], np.cumsum(count)])  # (num_q + 1,)
        self.rows = np.repeat(np.arange(len(q_pids)), count)  # (M,) query of each match
        self.cols = by_pid[np.arange(len(self.rows)) - self.start[self.rows] + first[self.rows]]
        self.junk = g_camids[self.cols] == q_camids[self.rows]


def _chunk_matches_numpy(chunk: np.ndarray, matches: _Matches, offset: int, buf: np.ndarray):
    """The good matches of the queries ``offset .. offset + len(chunk) - 1`` (rows of ``chunk``):
    (row in the chunk, 1-based position in the query's filtered ranked list), sorted by both; None
    when the chunk holds a NaN. ``buf`` is a zeroed bool scratch array (see _count_positions)."""
    a, b = matches.start[offset], matches.start[offset + len(chunk)]
    rows, cols, junk = matches.rows[a:b] - offset, matches.cols[a:b], matches.junk[a:b]
    dist = chunk[rows, cols]
    order = np.lexsort((cols, dist + 0.0, rows))  # by (row, distance, gallery index): the ranked order
    rows, cols, junk, dist = rows[order], cols[order], junk[order], dist[order]
    junk_ahead = np.cumsum(junk) - junk  # junk matches earlier in the chunk's ranked lists
    junk_ahead -= junk_ahead[matches.start[offset + rows] - a]  # ... earlier in the row's own list
    good = ~junk
    rows, cols, dist = rows[good], cols[good], dist[good]
    pos = _count_positions(chunk, rows, cols, dist, buf)
    return None if pos is None else (rows, pos - junk_ahead[good] + 1)


def _count_positions(chunk: np.ndarray, rows, cols, dist, buf: np.ndarray) -> np.ndarray | None:
    """0-based position of gallery item ``cols[i]`` (at distance ``dist[i]``) in the stable ranking of
    ``chunk[rows[i]]``: #{k: d_k < dist[i]} + #{k < cols[i]: d_k == dist[i]}. ``rows`` sorted. None
    when ``chunk`` holds a NaN (checked on each row while it is in cache).

    The rows are compared in groups of similar item counts, rows x items padded to a rectangle whose
    comparison results fill at most ``buf`` ((cap, padded num_g) bool, zero past num_g)."""
    num_rows, num_g = chunk.shape
    per_row = np.bincount(rows, minlength=num_rows)
    if np.count_nonzero(per_row) < num_rows and np.isnan(chunk[per_row == 0]).any():
        return None
    order = np.argsort(-per_row, kind="stable")
    order = order[per_row[order] > 0]  # rows with items, most items first
    place = np.empty(num_rows, dtype=np.int64)
    place[order] = np.arange(len(order))
    slot = np.arange(len(rows)) - np.concatenate([[0], np.cumsum(per_row)])[rows]  # item's index in row
    width = int(per_row[order[0]]) if len(order) else 0
    thresholds = np.full((len(order), width), np.nan, dtype=chunk.dtype)  # NaN: no item, counts 0
    thresholds[place[rows], slot] = dist
    item_cols = np.zeros((len(order), width), dtype=np.int64)
    item_cols[place[rows], slot] = cols
    pos = np.zeros((len(order), width), dtype=np.int64)
    groups = _groups(per_row[order], buf.shape[0])
    d = np.empty((max((r for _, r in groups), default=0), num_g), dtype=chunk.dtype)
    for i, r in groups:
        np.take(chunk, order[i : i + r], axis=0, out=d[:r], mode="clip")  # "clip": out is not buffered
        if np.isnan(d[:r]).any():
            return None
        m = int(per_row[order[i]])
        pos[i : i + r, :m] = _count_group(d[:r], thresholds[i : i + r, :m], item_cols[i : i + r, :m], buf)
    return pos[place[rows], slot]


def _groups(counts: np.ndarray, cap: int) -> list[tuple[int, int]]:
    """(first, length) of consecutive runs of rows with decreasing item ``counts``, each run's rows x
    its first (largest) count at most ``cap`` (at least one row)."""
    groups, i = [], 0
    while i < len(counts):
        r = max(1, min(cap // int(counts[i]), len(counts) - i))
        groups.append((i, r))
        i += r
    return groups


def _count_group(d: np.ndarray, thresholds: np.ndarray, cols: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """(r, m) counts #{k: d[i, k] < thresholds[i, j]} + #{k < cols[i, j]: d[i, k] == thresholds[i, j]}
    for rows d (r, num_g), where thresholds[i, j] = d[i, cols[i, j]] or NaN (counts 0). The equal
    items are counted only when some row holds a value equal to one of its thresholds other than the
    item itself (ties are rare)."""
    r, m = thresholds.shape
    num_g = d.shape[1]
    step = max(1, buf.shape[0] // r)
    out = np.empty((r, m), dtype=np.int64)
    for s in range(0, m, step):
        t, c = thresholds[:, s : s + step, None], cols[:, s : s + step]  # (r, ms, 1), (r, ms)
        flat = buf[: r * c.shape[1]]  # (r * ms, padded num_g), zero past num_g
        hits = flat.reshape(r, c.shape[1], -1)[:, :, :num_g]
        np.less(d[:, None, :], t, out=hits)
        out[:, s : s + step] = _row_counts(flat).reshape(r, -1)
        np.equal(d[:, None, :], t, out=hits)
        hits[np.arange(r)[:, None], np.arange(c.shape[1]), c] = False  # each item equals itself
        if flat.any():  # a tie: count the equal items before the item
            out[:, s : s + step] += np.count_nonzero(hits & (np.arange(num_g) < c[:, :, None]), axis=2)
    return out


def _row_counts(flags: np.ndarray) -> np.ndarray:
    """Number of True in each row of a C-contiguous (n, 255 * 8 * c) bool array: the rows as uint64
    words, 255 words summed at a time (each byte stays <= 255, no carry), then the bytes."""
    words = flags.view(np.uint64).reshape(len(flags), -1, 255).sum(axis=2, dtype=np.uint64)
    return words.view(np.uint8).reshape(len(flags), -1).sum(axis=1, dtype=np.int64)


def _padded_width(num_g: int) -> int:
    return -(-max(num_g, 1) // _ROW_PAD) * _ROW_PAD


def _chunk_matches_torch(chunk, q_pids, q_camids, g_pids, g_camids):
    """:func:`_chunk_matches_numpy` with torch on the chunk's device (a CUDA chunk stays on its GPU), the
    ids as tensors there; only (rows, 1-based filtered positions) come back, as numpy. Every match is
    compared with the whole row, the equal items before it counted too (no separate tie check)."""
    match = g_pids[None, :] == q_pids[:, None]  # (R, G)
    rows, cols = torch.nonzero(match, as_tuple=True)  # sorted by (row, gallery index)
    junk = g_camids[cols] == q_camids[rows]
    dist = chunk[rows, cols]
    order = torch.sort(dist + 0.0, stable=True).indices  # +0.0: -0.0 and 0.0 tie (radix sorts on GPU)
    order = order[torch.sort(rows[order], stable=True).indices]  # by (row, distance, gallery index)
    rows, cols, junk, dist = rows[order], cols[order], junk[order], dist[order]
    ahead = torch.cumsum(junk, 0) - junk.long()  # junk matches earlier in the chunk's ranked lists
    junk_ahead = ahead - ahead[torch.searchsorted(rows, rows)]  # ... earlier in the row's own list
    good = ~junk
    rows, cols, dist, junk_ahead = rows[good], cols[good], dist[good], junk_ahead[good]
    slot = torch.arange(len(rows), device=chunk.device) - torch.searchsorted(rows, rows)
    width = int(slot.max()) + 1 if len(rows) else 0
    thresholds = torch.full((len(chunk), width), float("nan"), dtype=chunk.dtype, device=chunk.device)
    thresholds[rows, slot] = dist
    item_cols = torch.zeros((len(chunk), width), dtype=torch.long, device=chunk.device)
    item_cols[rows, slot] = cols
    pos = torch.zeros_like(item_cols)
    index = torch.arange(chunk.shape[1], device=chunk.device)
    step = max(1, 4 * CHUNK_ELEMENTS // max(chunk.numel(), 1))  # bounded (R, step, G) temporaries
    for s in range(0, width, step):
        t = thresholds[:, s : s + step, None]
        closer = (chunk[:, None, :] < t).sum(dim=2)
        tied = ((chunk[:, None, :] == t) & (index < item_cols[:, s : s + step, None])).sum(dim=2)
        pos[:, s : s + step] = closer + tied
    fpos = pos[rows, slot] - junk_ahead + 1
    return rows.cpu().numpy(), fpos.cpu().numpy()


# --------------------------------------------------------------------------------------------------
# per-query statistics from the sparse list of match positions
# --------------------------------------------------------------------------------------------------
def _query_stats(rows: np.ndarray, fpos: np.ndarray, num_rows: int) -> dict:
    """Per-query statistics of a block of queries from its good matches: ``rows`` the query within the
    block, ``fpos`` the 1-based position in its filtered ranked list, sorted by (row, fpos). Returns
    arrays of length ``num_rows``."""
    qidx = np.arange(num_rows)
    fpos = fpos.astype(np.float64)
    g_start = np.searchsorted(rows, qidx, side="left")
    g_end = np.searchsorted(rows, qidx, side="right")
    num_good = g_end - g_start  # (num_rows,)
    hits = (np.arange(len(rows)) - g_start[rows] + 1).astype(np.float64)  # i-th match of its query
    valid = num_good > 0
    denom = np.maximum(num_good, 1).astype(np.float64)

    # standard AP: mean over the matches of the precision at the match (non-interpolated)
    ap_std = np.bincount(rows, weights=hits / fpos, minlength=num_rows) / denom
    # official AP (compute_AP.m): trapezoid between the precision one position earlier (1.0 before
    # the first position) and the precision at the match, times the recall step 1 / ngood
    prev_prec = np.ones_like(fpos)
    np.divide(hits - 1.0, fpos - 1.0, out=prev_prec, where=fpos > 1)
    ap_off = np.bincount(rows, weights=(prev_prec + hits / fpos) / 2.0, minlength=num_rows) / denom

    first_pos = np.zeros(num_rows, dtype=np.int64)
    last_pos = np.ones(num_rows, dtype=np.float64)
    first_pos[valid] = fpos[g_start[valid]]
    last_pos[valid] = fpos[g_end[valid] - 1]
    inp = np.where(valid, num_good / last_pos, 0.0)
    return {"valid": valid, "ap_std": ap_std, "ap_off": ap_off, "inp": inp, "first_pos": first_pos}


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def junk_mask(q_pid, q_camid, g_pids: np.ndarray, g_camids: np.ndarray) -> np.ndarray:
    """The standard protocol's junk rule for one query: gallery items with its pid AND its camera
    (the same person seen by the same camera is no retrieval). (num_g,) bool.

    The fast paths apply the same rule to a query's matches only (``_chunk_matches_*``: a match whose
    camera is the query's is junk)."""
    return (np.asarray(g_pids) == q_pid) & (np.asarray(g_camids) == q_camid)


def evaluate_rank_reference(
    distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50, mode: str = "standard"
) -> dict:
    """CMC, mAP and mINP by their definition, one query at a time (slow; same result as ``evaluate_rank``).

    For each query: rank the gallery by increasing distance, ties by gallery index; drop the junk, the
    gallery items with the query's pid AND camera; the matches are the remaining items with its pid.
    With the 1-based positions p_1 < ... < p_n of the n matches in that filtered list:

    - CMC[k - 1] = 1 if p_1 <= k, else 0 (a list shorter than max_rank keeps its last value);
    - AP = (1/n) sum_i i / p_i, the precision at each match (SEN eq. 12); ``"official"``: the trapezoid
      rule of Market-1501's ``compute_AP.m`` over the whole filtered list;
    - INP = n / p_n: 1 when the matches come first, small when the last one is deep (mINP, Ye et al.).

    mAP (SEN eq. 13), mINP and the CMC are means over the queries with a match (``"standard"``) or over
    all queries, a query without a match adding 0 (``"official"``). Same arguments and return value as
    :func:`evaluate_rank` (without ``chunk_rows``); docs/reading-the-papers.md#evaluation-standard-protocol.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    max_rank = check_int("max_rank", max_rank, 1)
    dist, q_pids, g_pids, q_camids, g_camids = (
        np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a)
        for a in (distmat, q_pids, g_pids, q_camids, g_camids)
    )
    if np.isnan(dist).any():
        raise ValueError("distmat contains NaN: distances must be finite (+inf is allowed)")
    num_q, num_g = dist.shape
    max_rank = min(max_rank, num_g)
    all_cmc, all_ap, all_inp, num_valid = [], [], [], 0
    for q in range(num_q):
        ranked = sorted(range(num_g), key=lambda j, q=q: (dist[q, j], j))  # stable: ties by gallery index
        junk = junk_mask(q_pids[q], q_camids[q], g_pids, g_camids)
        kept = [j for j in ranked if not junk[j]]
        hits = [g_pids[j] == q_pids[q] for j in kept]  # True where the filtered list has a match
        positions = [i + 1 for i, hit in enumerate(hits) if hit]  # 1-based positions of the matches
        n = len(positions)
        if n == 0:  # no match left: skipped (standard) or zeros (official)
            if mode == "official":
                all_cmc.append([0.0] * max_rank)
                all_ap.append(0.0)
                all_inp.append(0.0)
            continue
        num_valid += 1
        all_cmc.append([1.0 if positions[0] <= k else 0.0 for k in range(1, max_rank + 1)])
        all_inp.append(n / positions[-1])
        if mode == "standard":
            all_ap.append(sum(i / p for i, p in enumerate(positions, start=1)) / n)
        else:  # compute_AP.m: trapezoid between the precision one position earlier and at the match
            ap, found, old_precision = 0.0, 0, 1.0
            for j, hit in enumerate(hits, start=1):
                found += hit
                precision = found / j
                if hit:
                    ap += (old_precision + precision) / 2 / n
                old_precision = precision
            all_ap.append(ap)
    if num_valid == 0:
        raise ValueError(
            f"no query has a valid match in the gallery ({num_q} queries, {num_g} gallery items; a match "
            "needs the same pid from another camera)"
        )
    return {
        "cmc": np.mean(np.asarray(all_cmc, dtype=np.float64), axis=0),
        "mAP": float(np.mean(all_ap)),
        "mINP": float(np.mean(all_inp)),
        "num_valid_queries": num_valid,
    }


def evaluate_rank(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    mode: str = "standard",
    chunk_rows: int | None = None,
) -> dict:
    """CMC, mAP and mINP of a query-gallery distance matrix (smaller distance = more similar).

    Args:
        distmat: (num_q, num_g) distances, numpy array or torch tensor (CPU or CUDA; a CUDA tensor is
            ranked on its GPU). float32 and float64 are used as they are. +inf is allowed (ranks last),
            NaN is not.
        q_pids, g_pids, q_camids, g_camids: 1-D integer ids (numpy or torch), of length num_q / num_g.
            Junk pid -1 images must have been dropped at load time; pid 0 distractors simply never match.
        max_rank: length of the returned CMC, clipped to the gallery size. A filtered gallery shorter
            than max_rank pads the CMC with its last value (peer code crashes there).
        mode: ``"standard"`` (torchreid / fast-reid / BoT; queries without a match are skipped) or
            ``"official"`` (Market-1501 MATLAB code: trapezoidal AP, and every query counts, one without
            a good match adding AP = CMC = mINP = 0). See the module docstring.
        chunk_rows: queries per chunk; default ``CPU_CHUNK_ELEMENTS // num_g`` on CPU and
            ``CHUNK_ELEMENTS // num_g`` on GPU (at least 1).

    Returns:
        ``{"cmc": float64 (max_rank,), "mAP": float, "mINP": float, "num_valid_queries": int}``,
        fractions in [0, 1]; num_valid_queries counts queries with at least one good match.

    Raises:
        ValueError: bad shapes, NaN distances, max_rank < 1, unknown mode, or no query with a match.

    Same numbers as :func:`evaluate_rank_reference` without sorting: the metrics need only the good
    matches' positions, and a position in the stable ranking is a count (items closer, plus equally
    close ones with a smaller gallery index) minus the junk items counted in it (known: same pid).

    Rounding: the sums run in float64 in a different order from peer code, so results agree with
    torchreid's to ~1e-15 (torchreid's CMC is averaged in float32, ours in float64).
    """
    distmat, (q_pids, g_pids, q_camids, g_camids), max_rank, chunk_rows = _checked_inputs(
        distmat, (q_pids, g_pids, q_camids, g_camids), max_rank, mode, chunk_rows
    )
    num_q, num_g = _shape(distmat)
    q_pids, g_pids = _encode(q_pids, g_pids)
    q_camids, g_camids = _encode(q_camids, g_camids)
    acc = _Accumulator(max_rank)
    spans = [(s, min(s + chunk_rows, num_q)) for s in range(0, num_q, chunk_rows)]
    if isinstance(distmat, torch.Tensor):  # CUDA: counted on its GPU, chunk by chunk
        _raise_on_nan(distmat, 0, chunk_rows)
        ids = [torch.as_tensor(a.astype(np.int64), device=distmat.device) for a in (q_pids, q_camids)]
        g_ids = [torch.as_tensor(a.astype(np.int64), device=distmat.device) for a in (g_pids, g_camids)]
        for s, e in spans:
            acc.add(*_chunk_matches_torch(distmat[s:e], ids[0][s:e], ids[1][s:e], *g_ids), e - s)
        return acc.result(num_q, num_g, mode)

    matches = _Matches(q_pids, g_pids, q_camids, g_camids)

    def task(span: tuple[int, int], buf: np.ndarray):
        found = _chunk_matches_numpy(distmat[span[0] : span[1]], matches, span[0], buf)
        if found is None:
            _raise_on_nan(distmat, span[0], chunk_rows)
        return found

    with _Workers(num_g) as workers:
        for (rows, fpos), (s, e) in zip(workers.map(task, spans), spans, strict=True):
            acc.add(rows, fpos, e - s)
    return acc.result(num_q, num_g, mode)


def _checked_inputs(distmat, ids, max_rank, mode: str, chunk_rows):
    """:func:`evaluate_rank`'s arguments checked and converted: (distmat, (q_pids, g_pids, q_camids,
    g_camids), max_rank, chunk_rows), the chunk size defaulting to the device's budget."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    max_rank = check_int("max_rank", max_rank, 1)
    distmat = _as_distmat(distmat)
    num_q, num_g = _shape(distmat)
    names, lengths = ("q_pids", "g_pids", "q_camids", "g_camids"), (num_q, num_g, num_q, num_g)
    ids = tuple(_as_ids(a, n, k, (num_q, num_g)) for a, n, k in zip(ids, names, lengths, strict=True))
    if chunk_rows is None:
        budget = CHUNK_ELEMENTS if isinstance(distmat, torch.Tensor) else CPU_CHUNK_ELEMENTS
        chunk_rows = max(1, budget // max(num_g, 1))
    else:
        chunk_rows = check_int("chunk_rows", chunk_rows, 1)
    return distmat, ids, min(max_rank, num_g), chunk_rows


_METRICS = ("euclidean", "cosine")


def _as_features(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    x = x.detach()
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num, dim), got shape {_shape(x)}")
    if not x.is_floating_point():
        x = x.float()
    elif x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    bad = ~torch.isfinite(x).all(dim=1)  # an inf would be ranked (Euclidean) or turn into NaN (cosine)
    if bool(bad.any()):
        count = int(bad.sum())
        raise ValueError(
            f"{name}: row {int(bad.nonzero()[0, 0])} of {x.shape[0]} is not finite ({count} row"
            f"{'s' if count != 1 else ''} with inf or NaN); features must be finite (a diverged network?)"
        )
    return x


def pairwise_distance(
    qf, gf, metric: str = "euclidean", chunk_elements: int = CHUNK_ELEMENTS
) -> torch.Tensor:
    """(num_q, num_g) float32 distances between query features qf (num_q, d) and gallery gf (num_g, d).

    ``"euclidean"``: true (not squared) Euclidean distance through ``|q|^2 + |g|^2 - 2 q.g``; the tiny
    negatives that expansion produces are clamped to 0 before the square root, so identical vectors are
    at ~0 (about 1e-3 x the feature norm in float32, not exactly 0). ``"cosine"``: 1 - cosine
    similarity, features L2-normalised inside (an all-zero feature is at distance 1 from everything),
    clamped to [0, 2]. Tensors stay on their device (CPU or CUDA); float64 features are computed in
    float64 and the result cast to float32.

    Queries go through in blocks of exactly ``ROW_BLOCK`` rows (the last one zero-padded) and the
    gallery in blocks of ``chunk_elements // ROW_BLOCK`` columns, so every matrix product has the
    same shape: a row of the result is the same bits whichever other queries come with it
    (:func:`evaluate_features` relies on it to equal ranking the full matrix).
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    qf = _as_features(qf, "qf")
    gf = _as_features(gf, "gf")
    if qf.shape[1] != gf.shape[1]:
        raise ValueError(
            f"qf and gf must have the same feature dimension, got qf {_shape(qf)} and gf {_shape(gf)}"
        )
    if qf.device != gf.device:
        raise ValueError(f"qf and gf must be on the same device, got {qf.device} and {gf.device}")
    dtype = torch.float64 if torch.float64 in (qf.dtype, gf.dtype) else torch.float32
    return _Gallery(gf.to(dtype), metric, chunk_elements).distances(qf.to(dtype))


class _Gallery:
    """The gallery side of :func:`pairwise_distance`, prepared once (normalised rows for cosine,
    squared norms for Euclidean), and the distances of query rows to it in fixed ROW_BLOCK blocks."""

    def __init__(self, gf: torch.Tensor, metric: str, chunk_elements: int = CHUNK_ELEMENTS) -> None:
        self.metric, self.block = metric, max(1, chunk_elements // ROW_BLOCK)
        if metric == "cosine":
            self.gf, self.g_sq = torch.nn.functional.normalize(gf, dim=1), None
        else:
            self.gf, self.g_sq = gf, (gf * gf).sum(dim=1)[None, :]  # (1, num_g)

    def distances(self, qf: torch.Tensor) -> torch.Tensor:
        """(num_q, num_g) float32 distances of the query rows ``qf`` (same dtype and device)."""
        num_q, num_g = qf.shape[0], self.gf.shape[0]
        out = torch.empty((num_q, num_g), dtype=torch.float32, device=qf.device)  # (num_q, num_g)
        block = self.block
        for r in range(0, num_q, ROW_BLOCK):
            q = qf[r : r + ROW_BLOCK]  # (n, d), n <= ROW_BLOCK
            n = q.shape[0]
            if n < ROW_BLOCK:
                q = torch.cat([q, q.new_zeros(ROW_BLOCK - n, q.shape[1])])  # (ROW_BLOCK, d)
            if self.metric == "cosine":
                q = torch.nn.functional.normalize(q, dim=1)
            else:
                q_sq = (q * q).sum(dim=1, keepdim=True)  # (ROW_BLOCK, 1)
            for s in range(0, num_g, block):
                g = self.gf[s : s + block]  # (b, d)
                if self.metric == "cosine":
                    d = (1.0 - q @ g.T).clamp_(0.0, 2.0)  # (ROW_BLOCK, b)
                else:
                    d = torch.addmm(q_sq + self.g_sq[:, s : s + block], q, g.T, beta=1.0, alpha=-2.0)
                    d = d.clamp_(min=0.0).sqrt_()  # (ROW_BLOCK, b)
                out[r : r + n, s : s + block] = d[:n]
        return out


# --------------------------------------------------------------------------------------------------
# evaluation straight from features, in query chunks
# --------------------------------------------------------------------------------------------------
# Queries per distance chunk = DISTANCE_CHUNK_ELEMENTS // num_g: a (R, num_g) float32 chunk of 128 MB,
# big enough for an efficient matrix product, small enough that MSMT17 stays far below 4 GiB.
DISTANCE_CHUNK_ELEMENTS = 32_000_000


def evaluate_features(
    qf,
    gf,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    metric: str = "cosine",
    mode: str = "standard",
    max_rank: int = 50,
    chunk_rows: int | None = None,
) -> dict:
    """``evaluate_rank(pairwise_distance(qf, gf, metric), ...)`` without the (num_q, num_g) matrix.

    The distances of ``chunk_rows`` queries at a time (default: about ``DISTANCE_CHUNK_ELEMENTS //
    num_g``, rounded down to whole ``ROW_BLOCK`` blocks) are computed on the device the features are
    on and reduced to their good matches' positions by counting, on that device too (CUDA features
    never leave the GPU: feature chunks in, positions out), before the next chunk. Memory beyond the
    features is the prepared gallery (a normalised copy for cosine), one (chunk_rows, num_g) chunk and
    the counting buffers. Arguments and result as :func:`evaluate_rank`; ``metric`` as
    :func:`pairwise_distance`.

    The result is exactly that of evaluate_rank on the full matrix: pairwise_distance gives a query's
    row the same bits in a chunk as in the whole matrix (its fixed ``ROW_BLOCK``), and the counting and
    the reductions are evaluate_rank's own.
    """
    qf, gf, (q_pids, g_pids, q_camids, g_camids), max_rank, chunk_rows = _checked_features(
        qf, gf, (q_pids, g_pids, q_camids, g_camids), metric, mode, max_rank, chunk_rows
    )
    num_q, num_g = qf.shape[0], gf.shape[0]
    q_pids, g_pids = _encode(q_pids, g_pids)
    q_camids, g_camids = _encode(q_camids, g_camids)
    dtype = torch.float64 if torch.float64 in (qf.dtype, gf.dtype) else torch.float32
    qf, gallery = qf.to(dtype), _Gallery(gf.to(dtype), metric)  # the gallery side prepared once
    acc = _Accumulator(min(max_rank, num_g))
    if _torch_counting(qf.device):
        ids = [torch.as_tensor(a.astype(np.int64), device=qf.device) for a in (q_pids, q_camids)]
        g_ids = [torch.as_tensor(a.astype(np.int64), device=qf.device) for a in (g_pids, g_camids)]
        rank_rows = max(1, CHUNK_ELEMENTS // max(num_g, 1))
        for s in range(0, num_q, chunk_rows):
            dist = gallery.distances(qf[s : s + chunk_rows])  # (R, num_g) float32, as pairwise_distance's
            if bool(torch.isnan(dist).any()):
                _raise_on_nan_features(dist, s)
            for r in range(0, len(dist), rank_rows):  # counted in pieces of bounded size
                a, b = s + r, s + min(r + rank_rows, len(dist))
                acc.add(
                    *_chunk_matches_torch(dist[r : r + rank_rows], ids[0][a:b], ids[1][a:b], *g_ids), b - a
                )
        return acc.result(num_q, num_g, mode)

    matches = _Matches(q_pids, g_pids, q_camids, g_camids)
    rank_rows = max(1, CPU_CHUNK_ELEMENTS // max(num_g, 1))
    with _Workers(num_g) as workers:
        for s in range(0, num_q, chunk_rows):
            dist = gallery.distances(qf[s : s + chunk_rows]).numpy()  # (R, num_g) float32

            def task(r: int, buf: np.ndarray, dist=dist, s=s):
                found = _chunk_matches_numpy(dist[r : r + rank_rows], matches, s + r, buf)
                if found is None:
                    _raise_on_nan_features(dist, s)
                return found

            pieces = range(0, len(dist), rank_rows)
            for (rows, fpos), r in zip(workers.map(task, pieces), pieces, strict=True):
                acc.add(rows, fpos, min(rank_rows, len(dist) - r))
            del dist
    return acc.result(num_q, num_g, mode)


def _checked_features(qf, gf, ids, metric: str, mode: str, max_rank: int, chunk_rows: int | None):
    """evaluate_features' arguments checked: (qf, gf, (q_pids, g_pids, q_camids, g_camids), max_rank,
    chunk_rows), chunk_rows defaulting to a whole number of pairwise_distance's row blocks."""
    q_pids, g_pids, q_camids, g_camids = ids
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    max_rank = check_int("max_rank", max_rank, 1)
    qf, gf = _as_features(qf, "qf"), _as_features(gf, "gf")
    if qf.shape[1] != gf.shape[1]:
        raise ValueError(
            f"qf and gf must have the same feature dimension, got qf {_shape(qf)} and gf {_shape(gf)}"
        )
    if qf.device != gf.device:
        raise ValueError(f"qf and gf must be on the same device, got {qf.device} and {gf.device}")
    shape = num_q, num_g = qf.shape[0], gf.shape[0]
    q_pids = _as_ids(q_pids, "q_pids", num_q, shape)
    g_pids = _as_ids(g_pids, "g_pids", num_g, shape)
    q_camids = _as_ids(q_camids, "q_camids", num_q, shape)
    g_camids = _as_ids(g_camids, "g_camids", num_g, shape)
    if chunk_rows is None:  # a whole number of pairwise_distance's row blocks
        chunk_rows = max(1, DISTANCE_CHUNK_ELEMENTS // max(num_g, 1) // ROW_BLOCK) * ROW_BLOCK
    else:
        chunk_rows = check_int("chunk_rows", chunk_rows, 1)
    return qf, gf, (q_pids, g_pids, q_camids, g_camids), max_rank, chunk_rows


def _raise_on_nan_features(dist, start: int) -> None:
    nan = int(torch.isnan(dist).sum().item()) if isinstance(dist, torch.Tensor) else int(np.isnan(dist).sum())
    raise ValueError(
        f"the distances of queries {start}..{start + len(dist) - 1} contain {nan} NaN value(s): qf and gf "
        "must be finite"
    )


def _torch_counting(device: torch.device) -> bool:
    """Whether tensors on ``device`` are counted with torch where they are (CUDA) rather than moved
    to numpy (CPU). The tests run the torch path on CPU by patching this."""
    return device.type != "cpu"


class _Workers:
    """``fn(item, buffer)`` over items, results in order, on up to ``torch.get_num_threads()`` threads
    (numpy releases the GIL in its loops); each running call has a zeroed (rows, padded num_g) bool
    buffer of its own, whose columns past num_g stay zero (see _count_positions)."""

    def __init__(self, num_g: int) -> None:
        width = _padded_width(num_g)
        self.shape = (max(1, COMPARE_BYTES // width), width)
        self.threads = max(1, torch.get_num_threads())
        self.free: queue.SimpleQueue = queue.SimpleQueue()
        self.pool: ThreadPoolExecutor | None = None  # started by the first map of several items

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _call(self, fn, item):
        try:
            buf = self.free.get_nowait()
        except queue.Empty:
            buf = np.zeros(self.shape, dtype=bool)
        try:
            return fn(item, buf)
        finally:
            self.free.put(buf)

    def map(self, fn, items):
        items = list(items)
        if self.threads == 1 or len(items) < 2:
            yield from (self._call(fn, item) for item in items)
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.threads)
        futures = [self.pool.submit(self._call, fn, item) for item in items]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


class _Accumulator:
    """Sums of the per-query statistics of blocks of queries, reduced many blocks at a time."""

    def __init__(self, max_rank: int) -> None:
        self.max_rank = int(max_rank)
        self.cmc_hist = np.zeros(self.max_rank + 2, dtype=np.int64)  # first match at position k
        self.n_valid = 0
        self.sum_ap_std = self.sum_ap_off = self.sum_inp = 0.0
        self.pending, self.n_pending, self.rows_pending = [], 0, 0

    def add(self, rows: np.ndarray, fpos: np.ndarray, num_rows: int) -> None:
        """The good matches of the next ``num_rows`` queries (rows relative to the block's first query,
        1-based positions in the filtered lists), sorted by (row, position)."""
        self.pending.append((rows + self.rows_pending, fpos))
        self.n_pending += len(rows)
        self.rows_pending += num_rows
        if self.n_pending >= CHUNK_ELEMENTS // 8:
            self._reduce()

    def _reduce(self) -> None:
        if not self.pending:
            return
        st = _query_stats(*(np.concatenate(p) for p in zip(*self.pending, strict=True)), self.rows_pending)
        self.pending, self.n_pending, self.rows_pending = [], 0, 0
        valid = st["valid"]
        self.n_valid += int(valid.sum())
        self.sum_ap_std += float(st["ap_std"][valid].sum())
        self.sum_ap_off += float(st["ap_off"][valid].sum())
        self.sum_inp += float(st["inp"][valid].sum())
        first = np.minimum(st["first_pos"][valid], self.max_rank + 1)
        self.cmc_hist += np.bincount(first, minlength=self.max_rank + 2)

    def result(self, num_q: int, num_g: int, mode: str) -> dict:
        self._reduce()
        if self.n_valid == 0:
            raise ValueError(
                f"no query has a valid match in the gallery ({num_q} queries, {num_g} gallery items; a "
                "match needs the same pid from another camera)"
            )
        denom = float(self.n_valid if mode == "standard" else num_q)
        cmc = np.cumsum(self.cmc_hist[1 : self.max_rank + 1]).astype(np.float64) / denom
        mean_ap = (self.sum_ap_std if mode == "standard" else self.sum_ap_off) / denom
        return {"cmc": cmc, "mAP": mean_ap, "mINP": self.sum_inp / denom, "num_valid_queries": self.n_valid}


def ranked_head(distances: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` of the gallery indices ``keep`` in the protocol's order (increasing distance, ties
    by gallery index, as in :func:`evaluate_rank_reference`), without sorting the whole row.

    ``distances``: one query's (num_g,) row; ``keep``: increasing gallery indices (e.g. the junk removed).
    """
    need = min(k, keep.size)
    if need == 0:
        return keep[:0]
    # every kept item at most as far as the need-th nearest kept one (ties included), then a stable
    # sort by (distance, gallery index): the exact head of the full stable sort
    threshold = np.partition(distances[keep], need - 1)[need - 1]
    candidates = keep[distances[keep] <= threshold]
    return candidates[np.lexsort((candidates, distances[candidates]))][:need]


# --------------------------------------------------------------------------------------------------
# chance: what a network that learned nothing scores
# --------------------------------------------------------------------------------------------------


def chance_rank1(q_pids, g_pids, q_camids, g_camids) -> dict[str, float]:
    """Rank-1 (%) of a random ranking under the standard protocol, and the bar a trained network must
    clear to be above it.

    For a query, a random order of its gallery (junk removed: same pid and camera) puts a match first
    with probability ``p = matches / candidates``; chance rank-1 is the mean p over the queries with a
    match. ``above`` is chance plus three standard deviations of a random ranking's rank-1 over those
    queries (independent draws: the variance is the sum of p(1 - p), over the number of queries squared),
    so a rank-1 above it is not luck.
    """
    q_pids, g_pids, q_camids, g_camids = (
        np.asarray(a, dtype=np.int64) for a in (q_pids, g_pids, q_camids, g_camids)
    )
    pid_count = dict(zip(*np.unique(g_pids, return_counts=True), strict=True))
    pairs = np.stack([g_pids, g_camids], axis=1)
    keys, counts = np.unique(pairs, axis=0, return_counts=True) if len(pairs) else (np.empty((0, 2)), [])
    pair_count = {(int(k[0]), int(k[1])): int(c) for k, c in zip(keys, counts, strict=True)}
    same = np.array([pair_count.get((int(p), int(c)), 0) for p, c in zip(q_pids, q_camids, strict=True)])
    matches = np.array([pid_count.get(int(p), 0) for p in q_pids]) - same
    candidates = len(g_pids) - same
    valid = (matches > 0) & (candidates > 0)
    if not valid.any():
        raise ValueError("no query has a match in the gallery: chance rank-1 is undefined")
    p = matches[valid] / candidates[valid]
    n = int(valid.sum())
    chance = float(p.mean())
    spread = float(np.sqrt((p * (1 - p)).sum()) / n)
    return {"rank1": 100 * chance, "above": 100 * min(1.0, chance + 3 * spread), "queries": n}


def learning_verdict(rank1: float, chance: dict[str, float]) -> str:
    """One line: the run's rank-1 (%) against :func:`chance_rank1`'s, and whether it learned."""
    verdict = (
        "above chance: it learns"
        if rank1 > chance["above"]
        else "not above chance: it learned nothing measurable (check the labels, optim.lr, optim.epochs)"
    )
    return (
        f"rank-1 {rank1:.2f} % vs {chance['rank1']:.2f} % for a random ranking of this split (above chance: "
        f"> {chance['above']:.2f} % over {chance['queries']} queries): {verdict}"
    )
