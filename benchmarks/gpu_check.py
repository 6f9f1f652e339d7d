"""One-shot GPU check: training images/s of the four networks, then a short BoT run on Market-1501.

    python benchmarks/gpu_check.py [--data-root DIR] [--out FILE] [--budget-s 450]
    python benchmarks/gpu_check.py --dry-run [--data-root DIR --dataset synthetic]   # CPU, tiny

(a) Throughput at the paper settings (ResNet-50, 256x128, P x K = 16 x 4, 751 classes, each
network's recipe losses, random images) in three modes: fp32 eager (NCHW), bf16 autocast +
channels_last, and the same + ``torch.compile``; each a fixed number of warm-up + timed steps.
(b) With Market-1501 under ``--data-root``: BoT (bot_market1501, no pretrained weights needed) for 2
epochs on the fastest path of (a), with ``data.device_augment``, evaluated after epoch 2; the
projected time of the full 120-epoch recipe is 120 x the epoch-2 training time (epoch 1 pays the
compilation) + 12 x the evaluation time (every 10 epochs).
(c) ``evaluate_features`` (reidlib.evaluation.metrics) on the GPU (random 2048-d features, cosine) at
Market-1501 size (3,368 x 15,913) and MSMT17 size (11,659 x 82,161), distances and counting on the device:
seconds, peak GPU memory, and at Market size whether it equals evaluate_rank on the full matrix.

Everything is time-bounded: stages run cheapest first and a compiled measurement is skipped, with
the reason recorded, when the time left in ``--budget-s`` (default 450 s: under 8 minutes with
start-up) is less than what the last compilation took. One JSON is written (and rewritten after
every stage, so a killed run still leaves its figures) to ``--out``, default
``results/gpu_check/gpu_check-<time>.json``. ``--dry-run`` (the default without CUDA) runs the same
code on the CPU at tiny sizes (ResNet-18, 64x32, 2 x 4 batches, 1 + 1 steps, torch.compile with the
``eager`` backend), which tests/test_gpu_check.py exercises.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidlib.config import load_recipe
from reidlib.evaluation.features import Runtime
from reidlib.evaluation.metrics import evaluate_features, evaluate_rank, pairwise_distance
from reidlib.training import engine
from reidlib.training.engine import TrainStep, build_criterion, build_network, train
from reidlib.utils.fileio import atomic_write_json
from reidlib.utils.paths import results_root

NETWORKS = {
    "baseline": "bot_market1501",
    "sen": "sen_market1501",
    "deep_miner": "deep_miner_market1501",
    "bdb": "bdb_market1501",
}
MODES = ("fp32_eager", "bf16_channels_last", "bf16_channels_last_compile")
NUM_CLASSES = 751
# (c): queries, gallery, identities, cameras of the evaluation problems
EVAL_SIZES = {"market1501": (3368, 15913, 751, 6), "msmt17": (11659, 82161, 3060, 15)}
MARKET_RUN_MIN_S = 150  # what part (b) needs on one H200 at the least (decode, 2 epochs, 1 evaluation)


def settings(dry_run: bool) -> dict[str, Any]:
    if dry_run:
        return dict(backbone="resnet18", height=64, width=32, p=2, k=4, warmup=1, steps=1, backend="eager")
    return dict(backbone="resnet50", height=256, width=128, p=16, k=4, warmup=5, steps=20, backend="inductor")


def runtime_for(mode: str, device: torch.device) -> Runtime:
    if mode == "fp32_eager":
        return Runtime(device, None, channels_last=False)
    return Runtime(device, torch.bfloat16, channels_last=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(network: str, mode: str, device: torch.device, s: dict[str, Any]) -> dict[str, Any]:
    """images/s of one network's training step (forward, losses, backward, Adam) in one mode."""
    recipe = load_recipe(NETWORKS[network], [f"model.backbone={s['backbone']}", "model.pretrained=false"])
    runtime = runtime_for(mode, device)
    torch.manual_seed(0)
    model = runtime.place(build_network(recipe, NUM_CLASSES))
    criterion = build_criterion(recipe, model, NUM_CLASSES, check_inputs=False).to(device)
    step: torch.nn.Module = TrainStep(model, criterion, runtime)
    if mode.endswith("compile"):
        torch._dynamo.reset()  # each network compiles afresh (no cache limit hit across networks)
        step = torch.compile(step, backend=s["backend"])
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4)
    n = s["p"] * s["k"]
    images = runtime.images(torch.randn(n, 3, s["height"], s["width"]))
    pids = torch.arange(s["p"], device=device).repeat_interleave(s["k"])

    def one_step() -> None:
        total, _ = step(images, pids)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(s["warmup"]):
        one_step()
    _sync(device)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(s["steps"]):
        one_step()
    _sync(device)
    seconds = time.perf_counter() - start
    row = {
        "images_per_s": round(s["steps"] * n / seconds, 1),
        "warmup_s": round(warmup_s, 1),
        "timed_s": round(seconds, 2),
    }
    if device.type == "cuda":
        row["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return row


def evaluation_timing(device: torch.device, dry_run: bool) -> dict[str, Any]:
    """(c) evaluate_features on random features on ``device``: seconds (the first call warmed up on a
    slice), peak GPU memory, and at Market size the identity with the full-matrix evaluation."""
    sizes = {k: (12, 40, 5, 3) for k in EVAL_SIZES} if dry_run else EVAL_SIZES
    dim = 16 if dry_run else 2048
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for name, (num_q, num_g, num_ids, num_cams) in sizes.items():
        centers = torch.randn(num_ids, dim, device=device)
        q_pids, g_pids = rng.integers(0, num_ids, num_q), rng.integers(0, num_ids, num_g)
        qf = centers[torch.as_tensor(q_pids, device=device)] + 3.5 * torch.randn(num_q, dim, device=device)
        gf = centers[torch.as_tensor(g_pids, device=device)] + 3.5 * torch.randn(num_g, dim, device=device)
        ids = (q_pids, g_pids, rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g))
        evaluate_features(qf[:8], gf, ids[0][:8], ids[1], ids[2][:8], ids[3])  # warm-up: kernels, caches
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        start = time.perf_counter()
        result = evaluate_features(qf, gf, *ids)
        _sync(device)
        row = {"seconds": round(time.perf_counter() - start, 3), "shape": [num_q, num_g, dim]}
        row |= {"mAP": round(float(result["mAP"]) * 100, 4), "rank1": round(float(result["cmc"][0]) * 100, 4)}
        if device.type == "cuda":
            row["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if name == "market1501":
            full = evaluate_rank(pairwise_distance(qf, gf, "cosine"), *ids)
            row["identical_to_full_matrix"] = bool(
                np.array_equal(full["cmc"], result["cmc"])
                and (full["mAP"], full["mINP"]) == (result["mAP"], result["mINP"])
            )
        out[name] = row
        del qf, gf, centers
    return out


def market_run(
    fastest: str, data_root: str, dataset: str, out_dir: Path, s: dict[str, Any], dry_run: bool, device: str
) -> dict[str, Any]:
    """BoT for 2 epochs on the fastest mode, evaluated after epoch 2; times and the 120-epoch projection."""
    mode = fastest
    if dry_run and mode.endswith("compile"):
        mode = "bf16_channels_last"  # the engine compiles with inductor: too slow for a CPU dry run
    overrides = [
        f"data.dataset={dataset}",
        "data.device_augment=true",
        f"data.workers={0 if dry_run else 8}",
        f"data.height={s['height']}",
        f"data.width={s['width']}",
        f"data.num_identities={s['p']}",
        f"data.num_instances={s['k']}",
        f"model.backbone={s['backbone']}",
        "model.pretrained=false",
        "optim.epochs=2",
        "optim.warmup_epochs=1",  # the recipe's 10-epoch warm-up does not fit 2 epochs (timing only)
        "eval.every=2",
        "eval.final_variants=[]",
        f"train.device={device}",
        f"train.amp={'none' if mode == 'fp32_eager' else 'bf16'}",
        f"train.channels_last={'false' if mode == 'fp32_eager' else 'true'}",
        f"train.compile={'true' if mode.endswith('compile') else 'false'}",
        "train.progress=false",
        "train.keep_checkpoint=false",
    ]
    if dry_run:
        overrides.append("train.max_iters_per_epoch=2")
    recipe = load_recipe("bot_market1501", overrides)
    eval_seconds: list[float] = []
    evaluate = engine.evaluate_network

    def timed_evaluate(*args, **kwargs):
        start = time.perf_counter()
        out = evaluate(*args, **kwargs)
        eval_seconds.append(time.perf_counter() - start)
        return out

    engine.evaluate_network = timed_evaluate  # time the engine's own evaluation, nothing added
    try:
        start = time.perf_counter()
        metrics = train(recipe, out_dir, data_root=data_root)
        wall = time.perf_counter() - start
    finally:
        engine.evaluate_network = evaluate
    log = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    epoch_s = [r["epoch_time_s"] for r in log]
    eval_s = eval_seconds[-1]
    full_s = 120 * epoch_s[-1] + 12 * eval_s
    return {
        "mode": mode,
        "device_augment": True,
        "epoch_time_s": epoch_s,
        "images_per_s": [r["images_per_s"] for r in log],
        "iters_per_epoch": [r["iters"] for r in log],
        "eval_s": round(eval_s, 1),
        "wall_s": round(wall, 1),
        "setup_s": round(wall - sum(epoch_s) - sum(eval_seconds), 1),
        "projected_120_epochs_h": round(full_s / 3600, 2),
        "projection": "120 x epoch-2 training time + 12 x the evaluation time (eval every 10 epochs)",
        "metrics_after_2_epochs": {k: metrics.get(k) for k in ("rank1", "mAP", "mINP")},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="Market-1501 root; without it part (b) is skipped")
    p.add_argument("--dataset", default="market1501", help="dataset of part (b)")
    p.add_argument("--out", default=None, help="the JSON to write (default under results/gpu_check/)")
    p.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of the whole check")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (default without CUDA)")
    p.add_argument("--networks", nargs="*", default=list(NETWORKS), choices=list(NETWORKS))
    args = p.parse_args(argv)
    begin = time.perf_counter()
    dry_run = args.dry_run or not torch.cuda.is_available()
    device = torch.device("cpu" if dry_run else "cuda")
    s = settings(dry_run)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the engine does
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else results_root() / "gpu_check" / f"gpu_check-{stamp}.json"
    report: dict[str, Any] = {
        "dry_run": dry_run,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "settings": {**s, "num_classes": NUM_CLASSES, "budget_s": args.budget_s},
        "throughput": {name: {} for name in args.networks},
        "market1501": None,
    }

    def left() -> float:
        return args.budget_s - (time.perf_counter() - begin)

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - begin, 1)
        atomic_write_json(out, report)

    def measure(name: str, mode: str) -> None:
        try:
            report["throughput"][name][mode] = throughput(name, mode, device, s)
        except Exception as err:  # noqa: BLE001 - a failing mode is a finding, not the end of the check
            report["throughput"][name][mode] = {"error": f"{type(err).__name__}: {err}"[:500]}
        print(f"{name:11s} {mode:27s} {report['throughput'][name][mode]}", flush=True)
        save()

    for name in args.networks:  # (a) the eager modes first: seconds each
        for mode in MODES[:2]:
            measure(name, mode)
    try:  # (c) the evaluation: seconds on a GPU
        report["evaluation"] = evaluation_timing(device, dry_run)
    except Exception as err:  # noqa: BLE001 - recorded in the report
        report["evaluation"] = {"error": f"{type(err).__name__}: {err}"[:500]}
    print(f"evaluation: {report['evaluation']}", flush=True)
    save()
    compile_cost = 0.0
    order = [n for n in ("baseline", *args.networks) if n in args.networks]
    for i, name in enumerate(dict.fromkeys(order)):  # BoT's compiled mode before the Market run
        if left() < 1.5 * compile_cost:
            report["throughput"][name][MODES[2]] = {"skipped": f"time budget: {left():.0f} s left"}
            save()
        else:
            start = time.perf_counter()
            measure(name, MODES[2])
            compile_cost = time.perf_counter() - start
        if i == 0 and args.data_root:  # (b), as soon as BoT's fastest mode is known
            bot = report["throughput"].get("baseline", {})
            speeds = {m: r.get("images_per_s", 0.0) for m, r in bot.items()}
            fastest = max(speeds, key=speeds.get) if speeds else MODES[1]
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    if left() < MARKET_RUN_MIN_S and not dry_run:
                        raise TimeoutError(f"time budget: {left():.0f} s left, < {MARKET_RUN_MIN_S} s")
                    report["market1501"] = market_run(
                        fastest, args.data_root, args.dataset, Path(tmp) / "run", s, dry_run, device.type
                    )
                except Exception as err:  # noqa: BLE001 - recorded in the report
                    report["market1501"] = {"error": f"{type(err).__name__}: {err}"[:500]}
            print(f"market1501: {report['market1501']}", flush=True)
            save()
    if not args.data_root:
        report["market1501"] = {"skipped": "no --data-root"}
    save()
    print(f"wrote {out} ({report['elapsed_s']} s)")
    return report


if __name__ == "__main__":
    main()
