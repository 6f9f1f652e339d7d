"""Training throughput (images/s) of the four networks: fp32 eager vs the fast path, in one run.

The fast path is what the engine does on a GPU: bf16 autocast + channels_last (+ torch.compile with
--compile). On CPU the fp32 row also uses channels_last unless --nchw is given (oneDNN's fast layout),
so the ratio there isolates bf16. Each network is timed with its paper recipe's losses (the same
TrainStep the engine runs), on random images; the projection converts images/s into the wall time of
a full 120-epoch Market-1501 BoT run (13,568 sampled images per epoch: 212 batches of 64).

    python benchmarks/bench_train.py                      # CPU: ResNet-18, 128x64, batch 32
    python benchmarks/bench_train.py --device cuda         # GPU: ResNet-50, 256x128, batch 64
"""

from __future__ import annotations

import argparse
import time

import torch

from reidlib.config import load_recipe
from reidlib.engine import TrainStep, build_criterion, build_network
from reidlib.runtime import Runtime

NETWORKS = {
    "baseline": "bot_market1501",
    "sen": "sen_market1501",
    "deep_miner": "deep_miner_market1501",
    "bdb": "bdb_market1501",
}
MARKET_IMAGES_PER_EPOCH = 212 * 64


def images_per_second(network: str, runtime: Runtime, args: argparse.Namespace, compile_: bool) -> float:
    recipe = load_recipe(NETWORKS[network], [f"model.backbone={args.backbone}", "model.pretrained=false"])
    torch.manual_seed(0)
    model = build_network(recipe, num_classes=751).to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = build_criterion(recipe, model, 751).to(runtime.device)
    step = TrainStep(model, criterion, runtime)
    if compile_:
        step = torch.compile(step)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    p, k = args.batch // 4, 4
    images = runtime.images(torch.randn(p * k, 3, args.height, args.width))
    pids = torch.arange(p, device=runtime.device).repeat_interleave(k)

    def one_step():
        total, _ = step(images, pids)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    for _ in range(args.warmup):
        one_step()
    sync = torch.cuda.synchronize if runtime.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(args.iters):
        one_step()
    sync()
    return args.iters * images.shape[0] / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default=None, help="default: resnet18 on CPU, resnet50 on CUDA")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="P*K with K = 4 (default 32 CPU, 64 GPU)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="add torch.compile to the fast path")
    p.add_argument("--nchw", action="store_true", help="fp32 row in the default NCHW layout")
    p.add_argument("--networks", nargs="*", default=list(NETWORKS))
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.backbone = args.backbone or ("resnet50" if cuda else "resnet18")
    args.height = args.height or (256 if cuda else 128)
    args.width = args.width or (128 if cuda else 64)
    args.batch = args.batch or (64 if cuda else 32)
    device = torch.device(args.device)
    fp32 = Runtime(device, None, channels_last=not args.nchw and not cuda)
    fast = Runtime(device, torch.bfloat16, channels_last=True)
    print(
        f"device {device}, {args.backbone} {args.height}x{args.width}, batch {args.batch}, "
        f"{torch.get_num_threads()} threads, {args.iters} timed iterations"
    )
    print(f"{'network':12s} {'fp32 img/s':>11s} {'fast img/s':>11s} {'ratio':>6s} {'120-ep Market':>17s}")
    for name in args.networks:
        slow = images_per_second(name, fp32, args, compile_=False)
        quick = images_per_second(name, fast, args, compile_=args.compile)
        hours = 120 * MARKET_IMAGES_PER_EPOCH / quick / 3600
        print(f"{name:12s} {slow:11.1f} {quick:11.1f} {quick / slow:5.2f}x {hours:17.2f} h", flush=True)


if __name__ == "__main__":
    main()
