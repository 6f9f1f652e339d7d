"""Market-sized evaluation: reidlib against torchreid's compiled and Python evaluation and fast-reid's.

    python benchmarks/bench_metrics.py [--torchreid DIR] [--fastreid DIR] [--python-queries N] [--msmt]

One run times, on the same Market-sized matrix (3,368 x 15,913 float32, 751 ids, 6 cameras):

- ``reidlib.evaluation.metrics.evaluate_rank`` (good matches' positions by counting, no sort of the gallery);
- torchreid's Cython evaluation, compiled here from its own ``rank_cy.pyx``;
- torchreid's and fast-reid's pure-Python ``eval_market1501``;

and prints each time, the ratios and whether CMC, mAP (and mINP, which only fast-reid computes) agree.
Peer code is read at run time from checkouts given on the command line (``--torchreid``: a
KaiyangZhou/deep-person-reid checkout, default ``$TORCHREID_SRC``; ``--fastreid``: a JDAI-CV/fast-reid
checkout, default ``$FASTREID_SRC``); ``rank_cy.pyx`` is compiled with Cython (importable, with a C
compiler) into ``--build-dir`` (default: a temporary folder), never into this repository. A missing
peer skips its row with the reason. The peers sort with an unstable argsort, so the matrix is built
without ties (distinct integers for non-matches, distinct half-integers for matches, which are pulled
0.4 x num_g closer); on it every correct evaluation gives the same numbers. torchreid averages its
CMC and mAP in float32: agreement there means within float32 rounding (1e-6).
``--python-queries N`` times the Python peers on the first N queries only and scales linearly.

Then evaluation from 2048-d features (BoT's embedding size): ``evaluate_features`` (query chunks, never
the full matrix) against ``pairwise_distance`` + ``evaluate_rank`` on a Market-sized problem (identical
results, time and peak resident set of each), and with ``--msmt`` ``evaluate_features`` on an
MSMT17-sized problem (11,659 x 82,161): time (and the part spent in the distance matrix products) and
peak resident set beyond the features.

Targets (issue 30): Market >= 10x torchreid's Cython evaluation with identical CMC / mAP; MSMT17
evaluate_features <= 10 s on 2 cores, < 2 GiB beyond the features. Timings on a shared machine are
noisy: run it alone.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import reidlib.evaluation.metrics as metrics
from reidlib.evaluation.metrics import evaluate_features, evaluate_rank, pairwise_distance

MARKET = dict(num_q=3368, num_g=15913, num_ids=751, num_cams=6)
MSMT = dict(num_q=11659, num_g=82161, num_ids=3060, num_cams=15)


# --------------------------------------------------------------------------------------------------
# problems
# --------------------------------------------------------------------------------------------------
def tie_free_problem(num_q: int, num_g: int, num_ids: int, num_cams: int, seed: int):
    """(distmat, q_pids, g_pids, q_camids, g_camids) with no two equal distances in a row.

    Each row is a random permutation of 0 .. num_g - 1 (as float32, exact); a query's matches (same
    pid) get their value minus 0.4 num_g plus one half, so they are drawn closer, distinct among
    themselves and never equal to a non-match. pid 0 (Market's share of distractors) never matches."""
    rng = np.random.default_rng(seed)
    num_distractors = int(round(num_g * 2798 / 15913))
    g_pids = np.concatenate(
        [np.zeros(num_distractors, np.int64), rng.integers(1, num_ids + 1, num_g - num_distractors)]
    )
    rng.shuffle(g_pids)
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_camids, q_camids = rng.integers(0, num_cams, num_g), rng.integers(0, num_cams, num_q)
    distmat = np.empty((num_q, num_g), dtype=np.float32)  # (num_q, num_g)
    rows = max(1, 4_000_000 // num_g)
    shift = np.float32(np.round(0.4 * num_g) - 0.5)
    for s in range(0, num_q, rows):  # in row chunks: building stays memory-bounded
        e = min(s + rows, num_q)
        d = rng.permuted(np.broadcast_to(np.arange(num_g, dtype=np.float32), (e - s, num_g)), axis=1)
        d[q_pids[s:e, None] == g_pids[None, :]] -= shift
        distmat[s:e] = d
    return distmat, q_pids, g_pids, q_camids, g_camids


def feature_problem(num_q: int, num_g: int, num_ids: int, num_cams: int, dim: int, seed: int):
    """Random features: identity centre + noise, scaled for a Market-like mAP (pid 0: noise only)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    num_distractors = int(round(num_g * 2798 / 15913))
    g_pids = np.concatenate(
        [np.zeros(num_distractors, np.int64), rng.integers(1, num_ids + 1, num_g - num_distractors)]
    )
    rng.shuffle(g_pids)
    q_pids = rng.integers(1, num_ids, num_q)
    centers = torch.randn(num_ids + 1, dim, generator=gen)  # (num_ids + 1, dim)
    centers[0] = 0.0

    def features(pids: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(pids), dim)  # (n, dim), filled in blocks: building stays memory-bounded
        for s in range(0, len(pids), 8192):
            idx = torch.from_numpy(pids[s : s + 8192])
            out[s : s + 8192] = centers[idx] + 3.5 * torch.randn(len(idx), dim, generator=gen)
        return out

    ids = (q_pids, g_pids, rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g))
    return features(q_pids), features(g_pids), ids


# --------------------------------------------------------------------------------------------------
# peer code, loaded from checkouts at run time
# --------------------------------------------------------------------------------------------------
def find_file(root: str | None, candidates: tuple[str, ...]) -> Path:
    """The first of ``candidates`` (paths relative to ``root``) that exists; FileNotFoundError if none."""
    if not root:
        raise FileNotFoundError("no checkout given")
    for rel in candidates:
        path = Path(root).expanduser() / rel
        if path.is_file():
            return path
    raise FileNotFoundError(f"none of {', '.join(candidates)} under {root}")


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_cython(pyx: Path, build_dir: Path):
    """Compile ``pyx`` (torchreid's rank_cy.pyx) into ``build_dir`` and import it."""
    from Cython.Build import cythonize  # noqa: PLC0415 - optional, only for this row
    from setuptools import Distribution, Extension  # noqa: PLC0415

    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / "rank_cy.pyx"
    shutil.copyfile(pyx, source)
    ext = Extension("rank_cy", [str(source)], include_dirs=[np.get_include()])
    dist = Distribution({"ext_modules": cythonize([ext], quiet=True, language_level=3)})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib, cmd.build_temp = str(build_dir), str(build_dir / "tmp")
    dist.run_command("build_ext")
    built = next(build_dir.glob("rank_cy*.so"), None) or next(build_dir.glob("rank_cy*.pyd"))
    return load_module("rank_cy", built)  # the name its PyInit_ function carries


def peer_evaluators(args) -> dict:
    """{row name: evaluate(distmat, q_pids, g_pids, q_camids, g_camids) -> (cmc, mAP, mINP or None)}
    for the peers found; a peer that cannot be loaded maps to the reason (a string)."""
    rows: dict = {}
    try:
        pyx = find_file(args.torchreid, ("torchreid/metrics/rank_cylib/rank_cy.pyx", "rank_cy.pyx"))
        build_dir = Path(args.build_dir or tempfile.mkdtemp(prefix="torchreid_rank_cy_"))
        cy = build_cython(pyx, build_dir)
        rows["torchreid Cython"] = lambda *p: (*cy.evaluate_cy(*p, 50), None)
    except Exception as err:  # noqa: BLE001 - any failure skips the row, with its reason
        rows["torchreid Cython"] = f"skipped: {type(err).__name__}: {err}"
    try:
        tr = load_module(
            "torchreid_rank", find_file(args.torchreid, ("torchreid/metrics/rank.py", "rank.py"))
        )
        rows["torchreid Python"] = lambda *p: (*tr.eval_market1501(*p, 50), None)
    except Exception as err:  # noqa: BLE001
        rows["torchreid Python"] = f"skipped: {type(err).__name__}: {err}"
    try:
        fr = load_module(
            "fastreid_rank", find_file(args.fastreid, ("fastreid/evaluation/rank.py", "rank.py"))
        )

        def fastreid(*p):
            cmc, all_ap, all_inp = fr.eval_market1501(*p, 50)
            return cmc, float(np.mean(all_ap)), float(np.mean(all_inp))

        rows["fast-reid Python"] = fastreid
    except Exception as err:  # noqa: BLE001
        rows["fast-reid Python"] = f"skipped: {type(err).__name__}: {err}"
    return rows


# --------------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------------
def best_of(n: int, fn):
    times, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def rss_gib() -> tuple[float, float]:
    """(current, peak since the last reset_peak_rss) resident set, GiB, from /proc/self/status."""
    fields = {
        line.split(":")[0]: int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith(("VmRSS", "VmHWM"))
    }
    return fields["VmRSS"] / 2**20, fields["VmHWM"] / 2**20


def reset_peak_rss() -> None:
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current resident set


def timed_with_peak(fn):
    """(seconds, result, peak resident set added by fn in GiB)."""
    reset_peak_rss()
    before, _ = rss_gib()
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    return seconds, out, rss_gib()[1] - before


def same_result(a, b) -> bool:
    return (
        a["num_valid_queries"] == b["num_valid_queries"]
        and np.array_equal(a["cmc"], b["cmc"])
        and a["mAP"] == b["mAP"]
        and a["mINP"] == b["mINP"]
    )


def agreement(ours: dict, cmc, mean_ap: float, minp: float | None) -> tuple[bool, str]:
    """(agree, text): the largest CMC and mAP (and mINP) differences, agreement within float32
    rounding of a float32 average (1e-6)."""
    cmc = np.asarray(cmc, dtype=np.float64)[: len(ours["cmc"])]
    d_cmc, d_ap = float(np.abs(cmc - ours["cmc"]).max()), abs(float(mean_ap) - ours["mAP"])
    text = f"max |dCMC| {d_cmc:.1e}, |dmAP| {d_ap:.1e}"
    ok = d_cmc <= 1e-6 and d_ap <= 1e-6
    if minp is not None:
        d_inp = abs(minp - ours["mINP"])
        text += f", |dmINP| {d_inp:.1e}"
        ok = ok and d_inp <= 1e-6
    return ok, text


# --------------------------------------------------------------------------------------------------
# the runs
# --------------------------------------------------------------------------------------------------
def compare_with_peers(args) -> bool:
    problem = tie_free_problem(**MARKET, seed=args.seed)
    num_q, num_g = problem[0].shape
    print(
        f"Market-sized matrix: {num_q} x {num_g} float32, {MARKET['num_ids']} ids, {MARKET['num_cams']} "
        f"cameras, no ties; {torch.get_num_threads()} torch threads"
    )
    t_ours, ours = best_of(5, lambda: evaluate_rank(*problem))
    print(
        f"  reidlib evaluate_rank (best of 5): {t_ours:.3f} s  mAP {ours['mAP']:.6f}  rank-1 "
        f"{ours['cmc'][0]:.6f}  mINP {ours['mINP']:.6f}  valid queries {ours['num_valid_queries']}"
    )
    n = min(args.python_queries or num_q, num_q)
    sub = (problem[0][:n], problem[1][:n], problem[2], problem[3][:n], problem[4])
    ours_sub = ours if n == num_q else evaluate_rank(*sub)
    all_ok = True
    for name, evaluate in peer_evaluators(args).items():
        if isinstance(evaluate, str):
            print(f"  {name}: {evaluate}")
            continue
        python = "Python" in name
        t, (cmc, mean_ap, minp) = best_of(
            1 if python else 3, lambda e=evaluate, p=(sub if python else problem): e(*p)
        )
        scaled = t * num_q / n if python else t
        ok, text = agreement(ours_sub if python else ours, cmc, mean_ap, minp)
        all_ok = all_ok and ok
        runs = "best of 3" if not python else (f"{n} queries, scaled to {num_q}" if n < num_q else "once")
        print(
            f"  {name} ({runs}): {scaled:.3f} s -> reidlib {scaled / t_ours:.1f}x faster; "
            f"identical: {'yes' if ok else 'NO'} ({text})"
        )
    return all_ok


def compare_with_full_matrix(args) -> bool:
    qf, gf, ids = feature_problem(**MARKET, dim=2048, seed=args.seed)
    print(
        f"Market-sized features: {len(qf)} + {len(gf)} x 2048 float32 "
        f"({(qf.nbytes + gf.nbytes) / 2**30:.2f} GiB), cosine"
    )
    rows = {}
    for _ in range(2):  # alternate the two paths, best of 2 each: load from other jobs hits both
        for name, fn in (
            (
                "pairwise_distance + evaluate_rank (full matrix)",
                lambda: evaluate_rank(pairwise_distance(qf, gf, "cosine"), *ids),
            ),
            ("evaluate_features (query chunks)", lambda: evaluate_features(qf, gf, *ids)),
        ):
            t, r, peak = timed_with_peak(fn)
            if name not in rows or t < rows[name][0]:
                rows[name] = (t, r, peak)
    for name, (t, r, peak) in rows.items():
        print(f"  {name}: {t:.2f} s, peak RSS +{peak:.2f} GiB, mAP {r['mAP']:.6f}")
    same = same_result(*(r for _, r, _ in rows.values()))
    print(f"  identical results: {'yes' if same else 'NO'}")
    return same


def msmt_features(args) -> None:
    qf, gf, ids = feature_problem(**MSMT, dim=2048, seed=args.seed)
    feats_gib = (qf.nbytes + gf.nbytes) / 2**30
    spent = [0.0]
    distances = metrics._Gallery.distances

    def timed_distances(self, q):  # the matrix products' share of the time
        t = time.perf_counter()
        out = distances(self, q)
        spent[0] += time.perf_counter() - t
        return out

    metrics._Gallery.distances = timed_distances
    try:
        t, r, peak = timed_with_peak(lambda: evaluate_features(qf, gf, *ids))
    finally:
        metrics._Gallery.distances = distances
    print(
        f"MSMT17-sized features: {len(qf)} + {len(gf)} x 2048 float32 ({feats_gib:.2f} GiB): "
        f"evaluate_features {t:.1f} s (distances {spent[0]:.1f} s, counting and the rest "
        f"{t - spent[0]:.1f} s), peak RSS +{peak:.2f} GiB beyond the features; mAP {r['mAP']:.4f}, "
        f"rank-1 {r['cmc'][0]:.4f} (targets: <= 10 s, < 2 GiB)"
    )
    rate = product_rate(qf.shape[1])
    flop = 2.0 * len(qf) * len(gf) * qf.shape[1]
    print(
        f"  the float32 products alone: {flop:.2e} FLOP; one {metrics.ROW_BLOCK} x {qf.shape[1]} by "
        f"{qf.shape[1]} x 4096 product runs at {rate:.0f} GFLOP/s here, so they need "
        f">= {flop / rate / 1e9:.1f} s however the rest is done"
    )


def product_rate(dim: int) -> float:
    """GFLOP/s of one float32 (ROW_BLOCK, dim) x (dim, 4096) product, best of 5: the host's rate for
    the distance products."""
    a, b = torch.randn(metrics.ROW_BLOCK, dim), torch.randn(4096, dim)
    t, _ = best_of(5, lambda: a @ b.T)
    return 2.0 * metrics.ROW_BLOCK * dim * 4096 / t / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--torchreid", default=os.environ.get("TORCHREID_SRC"), help="deep-person-reid checkout"
    )
    parser.add_argument("--fastreid", default=os.environ.get("FASTREID_SRC"), help="fast-reid checkout")
    parser.add_argument(
        "--build-dir", default=None, help="where rank_cy.pyx is compiled (default: temporary)"
    )
    parser.add_argument("--python-queries", type=int, default=0, help="queries for the Python peers (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--msmt", action="store_true", help="also time an MSMT17-sized evaluate_features")
    parser.add_argument("--skip-features", action="store_true", help="only the distance-matrix comparison")
    args = parser.parse_args()
    ok = compare_with_peers(args)
    if not args.skip_features:
        ok = compare_with_full_matrix(args) and ok
    if args.msmt:
        msmt_features(args)
    if not ok:
        sys.exit("some results disagree")


if __name__ == "__main__":
    main()
