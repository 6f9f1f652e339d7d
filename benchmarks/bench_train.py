"""Training throughput (images/s) of the four networks: fp32 eager vs the fast path, in one run.

The fast path is what the engine does on a GPU: bf16 autocast + channels_last (+ torch.compile with
--compile). On CPU the fp32 row also uses channels_last unless --nchw is given (oneDNN's fast layout),
so the ratio there isolates bf16. Each network is timed with its paper recipe's losses (the same
TrainStep the engine runs), on random images; the projection converts images/s into the wall time of
a full 120-epoch Market-1501 BoT run (13,568 sampled images per epoch: 212 batches of 64).

    python benchmarks/bench_train.py                      # CPU: ResNet-18, 128x64, batch 32
    python benchmarks/bench_train.py --device cuda         # GPU: ResNet-50, 256x128, batch 64

Then the cost of reidlib's loop itself: a plain PyTorch loop written out below (torchvision ResNet-18
with last stride 1, BNNeck, CE with label smoothing 0.1 + batch-hard triplet 0.3, Adam) against the
engine's own epoch loop (``reidlib.training.engine._train_epoch``: TrainStep, the BoT network with the same
two loss terms, loss logging, NaN checks) on the same batches, fp32 and the same memory format, the
two alternating ``--plain-rounds`` times, best round each. Target: engine >= 0.95x the plain loop.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reidlib.config import load_recipe
from reidlib.training import engine
from reidlib.training.checkpoint import TrainState
from reidlib.training.engine import TrainStep, build_criterion, build_network, build_optimizer
from reidlib.utils.distributed import DistContext
from reidlib.utils.runtime import Runtime

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


class PlainNet(nn.Module):
    """torchvision ResNet-18, last stride 1, global average pooling, BNNeck: written plainly."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        resnet = torchvision.models.resnet18(weights=None)
        resnet.layer4[0].conv1.stride = (1, 1)
        resnet.layer4[0].downsample[0].stride = (1, 1)
        self.body = nn.Sequential(*list(resnet.children())[:-2])  # no pooling, no fc
        self.bn = nn.BatchNorm1d(512)
        self.bn.bias.requires_grad_(False)
        self.fc = nn.Linear(512, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.body(x).mean(dim=(2, 3))  # (B, 512)
        return feat, self.fc(self.bn(feat))


def plain_triplet(feat: torch.Tensor, pids: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    dist = torch.cdist(feat, feat)  # (B, B)
    same = pids[:, None] == pids[None, :]
    hardest_pos = (dist * same).amax(dim=1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(dim=1)
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def plain_loop(model: nn.Module, optimizer: torch.optim.Optimizer, batches, runtime: Runtime) -> None:
    model.train()
    for images, pids, _camids, _idx in batches:
        images, pids = runtime.images(images), pids.to(runtime.device)
        feat, logits = model(images)
        loss = F.cross_entropy(logits, pids, label_smoothing=0.1) + plain_triplet(feat, pids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def engine_vs_plain(runtime: Runtime, args: argparse.Namespace) -> tuple[float, float]:
    """(plain loop images/s, reidlib engine images/s) on the same batches, best of the rounds."""
    num_classes, p, k = 751, args.batch // 4, 4
    recipe = load_recipe(
        "bot_market1501",
        [
            "model.backbone=resnet18",
            "model.pretrained=false",
            "loss.terms=[{branch: global, kind: ce}, {branch: global, kind: triplet}]",
            "train.progress=false",
        ],
    )
    torch.manual_seed(0)
    batches = [
        (
            torch.randn(p * k, 3, args.height, args.width),
            torch.randint(0, num_classes, (p,)).repeat_interleave(k),
            torch.zeros(p * k, dtype=torch.int64),
            torch.arange(p * k),
        )
        for _ in range(args.iters)
    ]
    model = runtime.place(build_network(recipe, num_classes))
    criterion = build_criterion(recipe, model, num_classes).to(runtime.device)
    step = TrainStep(model, criterion, runtime)
    optimizer = build_optimizer(recipe, model.parameters())
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=False)
    plain = runtime.place(PlainNet(num_classes))
    plain_opt = torch.optim.Adam(
        [q for q in plain.parameters() if q.requires_grad], lr=3.5e-4, weight_decay=5e-4
    )
    sync = torch.cuda.synchronize if runtime.device.type == "cuda" else (lambda: None)

    state = TrainState(
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        center_optimizer=None,
        scaler=scaler,
        sampler=None,
    )
    training = engine.Training(
        recipe=recipe,
        dataset=None,
        runtime=runtime,
        ctx=DistContext(),
        state=state,
        loader=batches,
        step=step,
    )

    def run_engine():  # the engine's own epoch loop, on a list of batches as its loader
        engine._train_epoch(training, 1, 3.5e-4)

    def run_plain():
        plain_loop(plain, plain_opt, batches, runtime)

    best = {"plain": 0.0, "engine": 0.0}
    for fn in (run_plain, run_engine):  # warm-up
        fn()
    for _ in range(args.plain_rounds):
        for name, fn in (("plain", run_plain), ("engine", run_engine)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            best[name] = max(best[name], len(batches) * p * k / (time.perf_counter() - start))
    return best["plain"], best["engine"]


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
    p.add_argument("--plain-rounds", type=int, default=3, help="rounds of the engine vs plain loop (0: skip)")
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
    if args.plain_rounds > 0:
        plain, ours = engine_vs_plain(fp32, args)
        print(
            f"ResNet-18 BNNeck CE + triplet, fp32, batch {args.batch}, {args.iters} iterations per round, "
            f"best of {args.plain_rounds}: plain PyTorch loop {plain:.1f} img/s, reidlib engine loop "
            f"{ours:.1f} img/s -> {ours / plain:.3f}x (target >= 0.95x)"
        )


if __name__ == "__main__":
    main()
