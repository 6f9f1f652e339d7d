"""Cost of the four networks: parameters, GFLOPs per image and CPU inference latency.

    python benchmarks/bench_models.py                       # paper defaults: ResNet-50, 256x128
    python benchmarks/bench_models.py --backbone resnet18 --height 128 --width 64   # CPU recipes

Parameters are counted in full and without the heads' classifiers (which depend on the number of
training identities and are dropped at test time). FLOPs are what ``torch.utils.flop_counter`` counts
for one forward of one image in eval mode (2 FLOPs per multiply-add; convolutions and matrix
products only, BatchNorm/ReLU/pooling are not counted). Latency is the median wall time of
``model.embed`` on one batch in eval mode under ``torch.inference_mode``, after warm-up runs, with
torch's default number of threads; the models are timed in turn, round by round, so load from other
processes spreads over all of them. Ratios are relative to the baseline (BoT) row.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from reidlib.models import MODELS, build_model
from reidlib.models.heads import BNNeck, ReductionHead
from reidlib.models.network import ReIDNetwork

MODEL_NAMES = ("baseline", "sen", "deep_miner", "bdb")


def count_params(model: ReIDNetwork) -> tuple[int, int]:
    """(all parameters, parameters without the heads' classifiers)."""
    total = sum(p.numel() for p in model.parameters())
    classifiers = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, (BNNeck, ReductionHead))
        for p in m.classifier.parameters()
    )
    return total, total - classifiers


def gflops_per_image(model: ReIDNetwork, height: int, width: int) -> float:
    model.eval()
    x = torch.randn(1, 3, height, width)  # (1, 3, H, W)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.embed(x)
    return counter.get_total_flops() / 1e9


def latencies_s(
    models: dict[str, ReIDNetwork], batch: int, height: int, width: int, warmup: int, repeats: int
) -> dict[str, float]:
    """Median seconds per batch of ``model.embed`` in eval mode, for each model.

    The models are timed round-robin (one batch each per round), so a burst of load from other
    processes on a shared machine lands on every model rather than on whichever ran at that moment.
    """
    x = torch.randn(batch, 3, height, width)  # (B, 3, H, W)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model.eval()
            for _ in range(warmup):
                model.embed(x)
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model.embed(x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet50", choices=["resnet18", "resnet34", "resnet50"])
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32, help="images per latency batch")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-classes", type=int, default=751, help="751: Market-1501 training ids")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=sorted(MODELS))
    parser.add_argument("--no-latency", action="store_true", help="parameters and FLOPs only")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's own default). On a machine shared with other jobs, "
        "--threads 1 avoids OpenMP oversubscription stalls that swamp the compute time",
    )
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads: expected a positive int, got {args.threads}")
    for name in ("height", "width", "batch", "repeats", "num_classes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected a positive int, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup: expected a non-negative int, got {args.warmup}")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"# {args.backbone}, input {args.height}x{args.width}, {args.num_classes} classes, "
        f"latency: batch {args.batch}, median of {args.repeats} after {args.warmup} warm-up; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}"
    )
    rows, models = [], {}
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name, args.num_classes, backbone=args.backbone)
        params, params_test = count_params(model)
        rows.append(
            {
                "model": name,
                "emb_dim": model.embedding_dim,
                "params_m": params / 1e6,
                "params_test_m": params_test / 1e6,
                "gflops": gflops_per_image(model, args.height, args.width),
                "latency_s": None,
            }
        )
        models[name] = model
    if not args.no_latency:
        medians = latencies_s(models, args.batch, args.height, args.width, args.warmup, args.repeats)
        for row in rows:
            row["latency_s"] = medians[row["model"]]
    print_table(rows)
    return rows


def print_table(rows: list[dict]) -> None:
    base = next((r for r in rows if r["model"] == "baseline"), None)

    def ratio(row: dict, key: str) -> str:
        if base is None or row[key] is None or not base[key]:
            return "-"
        return f"{row[key] / base[key]:.2f}x"

    header = (
        "| model | emb dim | params (M) | params w/o classifiers (M) | GFLOPs/img | latency/batch (s) "
        "| params ratio | FLOPs ratio | latency ratio |"
    )
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for r in rows:
        lat = "-" if r["latency_s"] is None else f"{r['latency_s']:.2f}"
        print(
            f"| {r['model']} | {r['emb_dim']} | {r['params_m']:.2f} | {r['params_test_m']:.2f} "
            f"| {r['gflops']:.2f} | {lat} | {ratio(r, 'params_m')} | {ratio(r, 'gflops')} "
            f"| {ratio(r, 'latency_s')} |"
        )


if __name__ == "__main__":
    main()
