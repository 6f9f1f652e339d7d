"""Input pipeline throughput (images/s, no model): the PIL DataLoader path against data.device_augment.

    python benchmarks/bench_input.py                         # synthetic images, written to a temp dir
    python benchmarks/bench_input.py --data-root /data/market1501 --dataset market1501

Both paths deal the same P x K batches (PKBatchSampler) at the paper's 256x128 input with the paper's
augmentation (flip 0.5, pad 10 + crop, random erasing 0.5). PIL path: torchvision v2 on each PIL
image, ``--workers`` DataLoader workers, decoded images cached in memory as the CPU recipes do (so
neither path pays JPEG decoding per batch). Batched path: the split decoded once into a uint8
tensor (its one-off cost printed apart), then flip / pad + crop / erasing as batched tensor
operations on ``--device``. Each path is timed over ``--batches`` batches after ``--warmup``, in
the same run; the two alternate ``--rounds`` times and the best round of each is kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from reidlib.config import DataConfig
from reidlib.data.datasets import load_dataset, make_synthetic
from reidlib.data.device_augment import build_device_train_loader
from reidlib.data.images import build_train_loader
from reidlib.data.transforms import build_train_transform


def images_per_s(loader, batches: int, warmup: int, device: torch.device) -> float:
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        images = next(it)[0].to(device)
        seen += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="default: a synthetic set written to a temp dir")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--device", default="cpu")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="PIL path DataLoader workers")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root or make_synthetic(Path(tmp) / "synthetic", num_train_ids=150, num_test_ids=4)
        train = load_dataset(args.dataset, root).train
        data = DataConfig(height=args.height, width=args.width, workers=args.workers)
        batches_needed = args.warmup + args.batches
        pil = build_train_loader(
            train,
            build_train_transform(args.height, args.width),
            num_identities=data.num_identities,
            num_instances=data.num_instances,
            seed=0,
            workers=args.workers,
            cache=args.workers == 0,  # the cache lasts across epochs only in the main process
        )
        if args.workers == 0:
            for i in range(len(pil.dataset)):  # fill the decode cache: time the augmentation only
                pil.dataset[i]
        start = time.perf_counter()
        batched = build_device_train_loader(train, data, seed=0, device=device)
        decode_s = time.perf_counter() - start
        if len(pil) < batches_needed:
            raise SystemExit(
                f"{len(pil)} batches per epoch: fewer than --warmup + --batches = {batches_needed}"
            )
        print(
            f"{len(train)} train images -> {args.height}x{args.width}, batches of "
            f"{data.num_identities} x {data.num_instances}, {torch.get_num_threads()} threads; batched path "
            f"on {device}: decoded once in {decode_s:.1f} s "
            f"({batched.images.numel() / 2**20:.0f} MiB uint8 on {batched.images.device})"
        )
        best = {"pil": 0.0, "batched": 0.0}
        for _ in range(args.rounds):
            for name, loader in (("pil", pil), ("batched", batched)):
                loader.batch_sampler.set_epoch(1)
                best[name] = max(best[name], images_per_s(loader, args.batches, args.warmup, device))
        print(f"PIL DataLoader path ({args.workers} workers, cached decode): {best['pil']:8.1f} images/s")
        print(f"batched device_augment path ({device}):                {best['batched']:8.1f} images/s")
        print(f"ratio batched / PIL: {best['batched'] / best['pil']:.1f}x")


if __name__ == "__main__":
    main()
