"""One training loop for every network and recipe.

``train(recipe, out_dir)`` runs a recipe end to end and writes a self-describing run folder:

- ``params.json``: the resolved recipe, seeds, dataset statistics, git SHA and dirty flag, library
  versions and device (plus one entry per resume);
- ``log.jsonl``: one JSON line per epoch (loss terms by name, lr, images/s, metrics when evaluated);
- ``last.pt``: the checkpoint (network, both optimisers, centers, sampler and RNG state, epoch);
- ``metrics.json``: the final evaluation (rank1/5/10, mAP, mINP in %, the CMC and the protocol).

Randomness is re-seeded at the start of every epoch from (seed, epoch, rank), so a run killed after
epoch e and resumed ends exactly where the uninterrupted run would on the CPU. Under torchrun every
rank trains on its share of each epoch (DDP) and rank 0 alone writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm  # plain text bars: work in terminals, logs and notebooks alike

from reidlib.branch_grads import log_branch_grads
from reidlib.checkpoint import (
    CheckpointError,
    check_compatible,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from reidlib.config import Recipe
from reidlib.datasets import ReidDataset, load_dataset
from reidlib.distributed import DistContext, barrier, init_distributed, shutdown
from reidlib.evaluation import Runtime, evaluate_network
from reidlib.fileio import atomic_write_json, atomic_write_text
from reidlib.imagedata import build_train_loader
from reidlib.losses import Criterion
from reidlib.models import ReIDNetwork, build_model
from reidlib.models.outputs import BranchOutput
from reidlib.paths import results_root
from reidlib.provenance import device_description, environment
from reidlib.schedule import lr_at
from reidlib.transforms import build_train_transform


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (exists without --resume, or nothing to resume)."""


# ----------------------------------------------------------------------------- set-up pieces


def resolve_runtime(recipe: Recipe, ctx: DistContext) -> Runtime:
    """Device, autocast dtype and memory format from ``recipe.train`` (auto: fast path on CUDA)."""
    t = recipe.train
    if t.device == "auto":
        device = torch.device(f"cuda:{ctx.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(t.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("train.device: cuda was asked for but torch sees no GPU")
    cuda = device.type == "cuda"
    amp = {"auto": "bf16" if cuda else "none", "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    dtype = amp[t.amp] if t.amp != "auto" else amp[amp["auto"]]
    return Runtime(device=device, amp_dtype=dtype, channels_last=t.channels_last)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A 32-bit seed per (seed, epoch, rank): each epoch's randomness depends on nothing else."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_dataset(recipe: Recipe, data_root: str | Path | None = None) -> ReidDataset:
    """The recipe's dataset, from ``data_root`` when given (command line), else ``data.root``."""
    root = data_root if data_root is not None else recipe.data.root
    return load_dataset(recipe.data.dataset, root)


def build_criterion(
    recipe: Recipe, model: ReIDNetwork, num_classes: int, *, check_inputs: bool = True
) -> Criterion:
    """The recipe's loss terms for ``model``; every branch of the model must have a term (a branch
    without a loss would train nothing and, under DDP, stop the gradient reduction)."""
    unused = sorted(set(model.feat_dims) - {t.branch for t in recipe.loss.terms})
    if unused:
        raise ValueError(
            f"loss.terms: no loss term for the model's branch(es) {unused}; the model has "
            f"{list(model.feat_dims)} (add a term, or switch the branch off in model.options)"
        )
    return Criterion(
        recipe.loss.terms,
        num_classes,
        model.feat_dims,
        label_smoothing=recipe.loss.label_smoothing,
        triplet_margin=recipe.loss.triplet_margin,
        check_inputs=check_inputs,
        ramp_epochs=recipe.loss.ramp_epochs,
    )


def build_network(recipe: Recipe, num_classes: int) -> ReIDNetwork:
    m = recipe.model
    return build_model(
        m.name,
        num_classes,
        backbone=m.backbone,
        pretrained=m.pretrained,
        last_stride=m.last_stride,
        **m.options,
    )


def build_optimizer(recipe: Recipe, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    o = recipe.optim
    params = [p for p in params if p.requires_grad]
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


class TrainStep(nn.Module):
    """Network + criterion in one module, so DDP also averages the centers' gradients."""

    def __init__(self, model: ReIDNetwork, criterion: Criterion, runtime: Runtime):
        super().__init__()
        self.model, self.criterion, self.runtime = model, criterion, runtime

    def forward(self, images: Tensor, pids: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        with self.runtime.autocast():
            outputs = self.model(images)
        if self.runtime.amp_dtype is not None:  # losses in float32
            outputs = {k: BranchOutput(*(t.float() for t in o)) for k, o in outputs.items()}
        return self.criterion(outputs, pids)


# ----------------------------------------------------------------------------- the run folder


def default_out_dir(recipe: Recipe) -> Path:
    return results_root() / "runs" / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _read_log(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= up_to_epoch]


def _append_log(path: Path, rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    rows.append(row)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------- training


def train(
    recipe: Recipe,
    out_dir: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``recipe``, evaluate it, and return the final metrics (rank 0; {} on other ranks)."""
    ctx = init_distributed(use_cuda=torch.cuda.is_available() and recipe.train.device != "cpu")
    try:
        return _train(recipe, out_dir, data_root=data_root, resume=resume, ctx=ctx)
    finally:
        shutdown(ctx)


def _train(
    recipe: Recipe,
    out_dir: str | Path | None,
    *,
    data_root: str | Path | None,
    resume: bool,
    ctx: DistContext,
) -> dict[str, Any]:
    t, o, d, e = recipe.train, recipe.optim, recipe.data, recipe.eval
    runtime = resolve_runtime(recipe, ctx)
    out = Path(out_dir) if out_dir is not None else default_out_dir(recipe)
    ckpt_path = out / "last.pt"
    if resume and not ckpt_path.is_file():
        raise RunFolderError(f"{out}: nothing to resume, {ckpt_path.name} is missing")
    if not resume and ckpt_path.is_file():
        raise RunFolderError(f"{out}: a run already lives here; pass --resume to continue it or choose --out")
    if resume and (out / "metrics.json").is_file() and load_checkpoint(ckpt_path)["epoch"] >= o.epochs:
        return json.loads((out / "metrics.json").read_text())  # finished: nothing to train, read it back
    if ctx.is_main:
        tqdm.write(f"training {recipe.name} on {device_description(runtime.device)}")
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels

    dataset = prepare_dataset(recipe, data_root)
    num_classes = dataset.num_train_pids
    seed_everything(t.seed)  # same initial weights on every rank
    model = runtime.place(build_network(recipe, num_classes))
    criterion = build_criterion(recipe, model, num_classes, check_inputs=False).to(runtime.device)
    optimizer = build_optimizer(recipe, model.parameters())
    center_params = list(criterion.center_parameters())
    center_optimizer = torch.optim.SGD(center_params, lr=recipe.loss.center_lr) if center_params else None
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    loader = build_train_loader(
        dataset.train,
        build_train_transform(d.height, d.width, flip_p=d.flip_p, pad=d.pad, erasing_p=d.erasing_p),
        num_identities=d.num_identities,
        num_instances=d.num_instances,
        seed=t.seed,
        workers=d.workers,
        rank=ctx.rank,
        world_size=ctx.world_size,
        cache=d.cache_images,
    )

    start_epoch, log_rows, params = 1, [], None
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        check_compatible(ckpt, recipe, num_classes, ckpt_path)
        model.load_state_dict(ckpt["model"])
        try:
            criterion.load_state_dict(ckpt["criterion"])
        except RuntimeError as err:
            raise CheckpointError(f"{ckpt_path}: its centers do not fit loss.terms: {err}") from err
        optimizer.load_state_dict(ckpt["optimizer"])
        if center_optimizer is not None:
            center_optimizer.load_state_dict(ckpt["center_optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        loader.batch_sampler.load_state_dict(ckpt["sampler"])
        set_rng_state(ckpt["rng"])
        start_epoch = ckpt["epoch"] + 1
        log_rows = _read_log(out / "log.jsonl", ckpt["epoch"])
        if (out / "params.json").is_file():
            params = json.loads((out / "params.json").read_text())

    env = environment(runtime.device)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if params is None:
            params = {
                "recipe": recipe.to_dict(),
                "seed": t.seed,
                "num_classes": num_classes,
                "world_size": ctx.world_size,
                # each rank draws its own P x K batch: under DDP one step averages world_size batches
                "global_batch": ctx.world_size * d.num_identities * d.num_instances,
                "dataset": {"name": d.dataset, "root": str(dataset.root), **dataset.stats()},
                "runtime": {
                    "amp": str(runtime.amp_dtype),
                    "channels_last": runtime.channels_last,
                    "compile": t.compile,
                },
                "environment": env,
                "resumes": [],
            }
        else:
            params["resumes"].append({"from_epoch": start_epoch, "environment": env})
        atomic_write_json(out / "params.json", params)
    barrier(ctx)

    step: nn.Module = TrainStep(model, criterion, runtime)
    if ctx.enabled:
        step = DistributedDataParallel(
            step, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None
        )
    if t.compile:
        step = torch.compile(step)

    metrics: dict[str, Any] = {}
    train_seconds = sum(r.get("epoch_time_s", 0.0) for r in log_rows)
    for epoch in range(start_epoch, o.epochs + 1):
        lr = lr_at(epoch, o)
        for group in optimizer.param_groups:
            group["lr"] = lr
        seed_everything(epoch_seed(t.seed, epoch, ctx.rank))
        loader.generator.manual_seed(epoch_seed(t.seed, epoch, ctx.rank))
        loader.batch_sampler.set_epoch(epoch)
        criterion.set_epoch(epoch)  # loss.ramp_epochs: the branches' weights of this epoch
        row = _train_epoch(
            step, criterion, optimizer, center_optimizer, scaler, loader, runtime, recipe, epoch, lr, ctx
        )
        train_seconds += row["epoch_time_s"]
        if epoch % e.every == 0 or epoch == o.epochs:
            variants = _eval_variants(recipe) if epoch == o.epochs else [_main_variant(recipe)]
            metrics = evaluate_network(
                model,
                dataset,
                height=d.height,
                width=d.width,
                runtime=dataclasses.replace(runtime, amp_dtype=None),  # test features in fp32
                batch_size=d.test_batch_size,
                workers=d.workers,
                metric=e.metric,
                mode=e.mode,
                max_rank=e.max_rank,
                variants=variants,
                ctx=ctx,
                progress=t.progress and ctx.is_main,
            )
            if ctx.is_main:
                main = metrics[_main_variant(recipe)]
                row["metrics"] = {k: v for k, v in main.items() if k != "cmc"}
        if ctx.is_main:
            _print_epoch(row, o.epochs)
            _append_log(out / "log.jsonl", log_rows, row)
            if epoch % t.checkpoint_every == 0 or epoch == o.epochs:
                save_checkpoint(
                    ckpt_path,
                    recipe=recipe.to_dict(),
                    num_classes=num_classes,
                    epoch=epoch,
                    model=model.state_dict(),
                    criterion=criterion.state_dict(),
                    optimizer=optimizer.state_dict(),
                    center_optimizer=center_optimizer.state_dict() if center_optimizer else None,
                    scaler=scaler.state_dict(),
                    sampler=loader.batch_sampler.state_dict(),
                    rng=rng_state(),
                )
            if epoch in t.snapshot_epochs:  # the network as it was then (SEN Fig. 10: maps over epochs)
                save_checkpoint(
                    snapshot_path(out, epoch),
                    recipe=recipe.to_dict(),
                    num_classes=num_classes,
                    epoch=epoch,
                    model=model.state_dict(),
                )
        barrier(ctx)

    if not ctx.is_main or not metrics:
        return {}
    final = _final_metrics(recipe, dataset, metrics, epoch=o.epochs, train_seconds=train_seconds)
    atomic_write_json(out / "metrics.json", final)
    if not t.keep_checkpoint:
        ckpt_path.unlink(missing_ok=True)  # the run is complete; nothing left to resume
    return final


def snapshot_path(run_dir: str | Path, epoch: int) -> Path:
    """Where ``train.snapshot_epochs`` keeps the weights after ``epoch``: ``<run>/epoch<NNN>.pt``.

    A snapshot holds the recipe, class count, epoch and weights (no optimiser state): enough for
    :func:`load_network`, not for resuming.
    """
    return Path(run_dir) / f"epoch{epoch:03d}.pt"


def _main_variant(recipe: Recipe) -> str:
    e = recipe.eval
    return "+".join([v for v, on in (("flip", e.flip), ("rerank", e.rerank)) if on]) or "plain"


def _eval_variants(recipe: Recipe) -> list[str]:
    main = _main_variant(recipe)
    return [main, *[v for v in recipe.eval.final_variants if v != main]]


def _final_metrics(
    recipe: Recipe,
    dataset: ReidDataset,
    metrics: dict[str, dict[str, Any]],
    *,
    epoch: int,
    train_seconds: float,
) -> dict[str, Any]:
    e = recipe.eval
    main = metrics[_main_variant(recipe)]
    return {
        **main,
        "epoch": epoch,
        "train_time_s": round(train_seconds, 1),
        "protocol": {
            "dataset": recipe.data.dataset,
            "mode": e.mode,
            "metric": e.metric,
            "flip": e.flip,
            "rerank": e.rerank,
            "max_rank": e.max_rank,
            "num_query": len(dataset.query),
            "num_gallery": len(dataset.gallery),
        },
        "variants": {k: {m: v for m, v in s.items() if m != "cmc"} for k, s in metrics.items()},
    }


def _print_epoch(row: dict[str, Any], epochs: int) -> None:
    """One line per epoch, with or without progress bars, so long runs leave a readable log."""
    line = (
        f"epoch {row['epoch']}/{epochs}: loss {row['losses'].get('total', float('nan')):.4f}, "
        f"lr {row['lr']:.2e}, {row['images_per_s']:.0f} img/s, {row['epoch_time_s']:.0f} s"
    )
    m = row["metrics"]
    if m:
        line += f"; rank-1 {m['rank1']:.2f}, mAP {m['mAP']:.2f}, mINP {m['mINP']:.2f}"
    tqdm.write(line)
    sys.stdout.flush()  # visible at once when stdout is a log file


def _train_epoch(
    step: nn.Module,
    criterion: Criterion,
    optimizer: torch.optim.Optimizer,
    center_optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler,
    loader: torch.utils.data.DataLoader,
    runtime: Runtime,
    recipe: Recipe,
    epoch: int,
    lr: float,
    ctx: DistContext,
) -> dict[str, Any]:
    """One epoch; returns its log row. Loss sums stay on the device (no sync per iteration)."""
    t = recipe.train
    step.train()
    total_iters = len(loader) if t.max_iters_per_epoch is None else min(len(loader), t.max_iters_per_epoch)
    sums: dict[str, Tensor] = {}
    images_seen, start, grad_log = 0, time.perf_counter(), {}
    bar = tqdm(
        total=total_iters,
        desc=f"epoch {epoch}/{recipe.optim.epochs}",
        leave=False,
        disable=not (t.progress and ctx.is_main),
    )
    for it, (images, pids, _camids, _idx) in enumerate(loader):
        if it >= total_iters:
            break
        criterion.check_labels(pids)  # on the CPU batch: no GPU sync inside the loss terms
        images, pids = runtime.images(images), pids.to(runtime.device, non_blocking=True)
        if it == 0 and t.log_branch_grads:  # one backward per branch on the first batch (branch_grads)
            grad_log = log_branch_grads(step, criterion, images, pids, runtime)
        total, terms = step(images, pids)
        optimizer.zero_grad(set_to_none=True)
        if center_optimizer is not None:
            center_optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        if center_optimizer is not None:
            scaler.unscale_(center_optimizer)
            criterion.rescale_center_grads()
            scaler.step(center_optimizer)
        scaler.update()
        for name, value in terms.items():
            sums[name] = sums[name] + value if name in sums else value.clone()
        images_seen += images.shape[0]
        if (it + 1) % 10 == 0 or it + 1 == total_iters:
            mean_total = float(sums["total"]) / (it + 1)
            _check_finite(mean_total, epoch, it, ctx)
            bar.set_postfix(
                loss=f"{mean_total:.3f}", img_s=f"{images_seen / (time.perf_counter() - start):.0f}"
            )
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    losses = {k: float(v) / max(total_iters, 1) for k, v in sums.items()}
    _check_finite(losses.get("total", 0.0), epoch, total_iters - 1, ctx)
    return {
        "epoch": epoch,
        "lr": lr,
        "losses": losses,
        "iters": total_iters,
        "images_per_s": round(images_seen * ctx.world_size / seconds, 2),
        "epoch_time_s": round(seconds, 2),
        "metrics": None,
        **grad_log,
    }


def _check_finite(value: float, epoch: int, iteration: int, ctx: DistContext) -> None:
    """Stop on a NaN/inf loss; under DDP every rank stops together (no rank left waiting in a collective)."""
    finite = math.isfinite(value)
    if ctx.enabled:
        flag = torch.tensor([1.0 if finite else 0.0], device=_collective_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        finite = bool(flag.item())
    if not finite:
        raise TrainingDiverged(
            f"epoch {epoch}: the training loss became non-finite by iteration {iteration + 1}; stopped "
            "before writing a checkpoint, so last.pt still holds the last good epoch "
            "(lower optim.lr or check the data)"
        )


def _collective_device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


# ----------------------------------------------------------------------------- trained networks


def load_network(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[ReIDNetwork, Recipe]:
    """The network stored in a checkpoint (eval mode) and the recipe it was trained with."""
    from reidlib.checkpoint import checkpoint_recipe

    ckpt = load_checkpoint(checkpoint)
    recipe = checkpoint_recipe(ckpt)
    recipe.model.pretrained = False  # the checkpoint holds the weights
    model = build_network(recipe, ckpt["num_classes"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        from reidlib.checkpoint import CheckpointError

        raise CheckpointError(f"{checkpoint}: weights do not fit model {recipe.model.name!r}: {err}") from err
    return model.to(device).eval(), recipe
