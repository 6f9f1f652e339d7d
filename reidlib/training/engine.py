"""One training loop for every network and recipe.

``train(recipe, out_dir)`` runs a recipe end to end: it opens the run folder
(:mod:`reidlib.training.runfolder`:
refused if it holds another run), builds the network, loss, optimisers and loader, restores last.pt on
a resume (:class:`reidlib.training.checkpoint.TrainState`), then loops over the epochs: train, evaluate every
``eval.every`` epochs, log, checkpoint; after the last epoch it writes metrics.json.

Randomness is re-seeded at the start of every epoch from (seed, epoch, rank), so a run killed after
epoch e and resumed ends exactly where the uninterrupted run would on the CPU. Under torchrun every
rank trains on its share of each epoch (DDP) and rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm  # plain text bars: work in terminals, logs and notebooks alike

from reidlib.config import ConfigError, Recipe
from reidlib.data.datasets import ReidDataset, load_dataset
from reidlib.data.device_augment import build_device_train_loader
from reidlib.data.images import build_train_loader, check_dataset_images
from reidlib.data.transforms import build_train_transform
from reidlib.evaluation.features import evaluate_network
from reidlib.evaluation.reranking import check_rerank_memory
from reidlib.models import ReIDNetwork, build_model
from reidlib.models.outputs import BranchOutput
from reidlib.models.weights import weights_record
from reidlib.training.branch_grads import log_branch_grads
from reidlib.training.checkpoint import (
    CheckpointInfo,
    TrainState,
    checkpoint_recipe,
    load_checkpoint,
    load_weights,
    restore,
    save_checkpoint,
    save_snapshot,
)
from reidlib.training.losses import Criterion
from reidlib.training.provenance import device_description, environment
from reidlib.training.runfolder import (
    EpochLog,
    FinalMetrics,
    Opened,
    Params,
    RunFolder,
    RunFolderError,
    Variant,
    is_run,
    open_run,
)
from reidlib.training.schedule import describe, lr_at
from reidlib.utils.distributed import DistContext, barrier, init_distributed, shutdown
from reidlib.utils.errors import one_line, shown
from reidlib.utils.paths import results_root
from reidlib.utils.runtime import Runtime
from reidlib.utils.threads import set_torch_threads


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or grew :data:`DIVERGED_FACTOR` times over its first value; the
    last good checkpoint is left untouched."""


# A training loss this many times its first value (the untrained network's) has diverged: a sane run's
# loss falls, and the loss weights' ramp (loss.ramp_epochs) adds a few times at most.
DIVERGED_FACTOR = 1000.0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message names the epoch and the checkpoint to resume from."""


class TrainingIOError(OSError):
    """A read or write failed during training (disk full, ...); names the epoch and what to do."""


# ----------------------------------------------------------------------------- set-up pieces


def resolve_runtime(recipe: Recipe, ctx: DistContext) -> Runtime:
    """Device, autocast dtype and memory format from ``recipe.train`` (auto: fast path on CUDA); also
    sets this process's torch CPU threads (``train.threads``, 0: the usable cores; reidlib.utils.threads)."""
    t = recipe.train
    set_torch_threads(t.threads)
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
    """``<results>/runs/<name>-<time>``; ConfigError when the name would place it anywhere else."""
    runs = results_root() / "runs"
    out = runs / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if Path(recipe.name).is_absolute() or not out.resolve().is_relative_to(runs.resolve()):
        raise ConfigError(
            f"name: {shown(recipe.name, 80)} would put the run folder outside {runs}; give the run a plain "
            "name (letters, digits, - _ .), or its folder with --out"
        )
    return out


def _params(recipe: Recipe, dataset: ReidDataset, runtime: Runtime, ctx: DistContext) -> Params:
    d, t = recipe.data, recipe.train
    return Params(
        recipe=recipe.to_dict(),
        seed=t.seed,
        num_classes=dataset.num_train_pids,
        world_size=ctx.world_size,
        global_batch=ctx.world_size * d.num_identities * d.num_instances,
        dataset={"name": d.dataset, "root": str(dataset.root), **dataset.stats()},
        runtime={"amp": str(runtime.amp_dtype), "channels_last": runtime.channels_last, "compile": t.compile},
        environment=environment(runtime.device),
        weights=weights_record(recipe.model.backbone, recipe.model.pretrained),
    )


def _record_start(opened: Opened, fresh: Params, start_epoch: int) -> Params:
    """A fresh run's params, or the saved ones plus this resume (its epoch, environment, changes)."""
    if not opened.resume or not is_run(opened.folder.path):
        if opened.resume:  # a folder from before params.json: start its record now
            fresh.resumes.append({"from_epoch": start_epoch, "environment": fresh.environment})
        return fresh
    saved = opened.folder.read_params()
    if saved.dataset.get("root", fresh.dataset["root"]) != fresh.dataset["root"]:
        raise RunFolderError(
            f"{opened.folder.path}: --resume with another dataset: {saved.dataset['root']!r} -> "
            f"{fresh.dataset['root']!r}; give the run's data root back (--data-root / data.root)"
        )
    changed = {k: {"old": old, "new": new} for k, (old, new) in opened.changes.items()}
    saved.resumes.append({"from_epoch": start_epoch, "environment": fresh.environment, "changed": changed})
    return saved


# ----------------------------------------------------------------------------- training


@dataclass
class Training:
    """What the epoch loop works with: the recipe, its data and runtime, the state it trains."""

    recipe: Recipe
    dataset: ReidDataset
    runtime: Runtime
    ctx: DistContext
    state: TrainState
    loader: torch.utils.data.DataLoader
    step: nn.Module  # TrainStep, wrapped in DDP and/or torch.compile as asked
    first_loss: float | None = None  # the run's first loss (a resume: its first epoch's), see _check_loss


def build_training(recipe: Recipe, dataset: ReidDataset, runtime: Runtime, ctx: DistContext) -> Training:
    """Network, loss, optimisers, scaler and loader of ``recipe``, seeded alike on every rank."""
    d, t = recipe.data, recipe.train
    num_classes = dataset.num_train_pids
    seed_everything(t.seed)  # same initial weights on every rank
    model = runtime.place(build_network(recipe, num_classes))
    criterion = build_criterion(recipe, model, num_classes, check_inputs=False).to(runtime.device)
    center_params = list(criterion.center_parameters())
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
    if d.device_augment:  # the train split decoded once, batches augmented on the device
        loader = build_device_train_loader(
            dataset.train, d, seed=t.seed, device=runtime.device, rank=ctx.rank, world_size=ctx.world_size
        )
    state = TrainState(
        model=model,
        criterion=criterion,
        optimizer=build_optimizer(recipe, model.parameters()),
        center_optimizer=torch.optim.SGD(center_params, lr=recipe.loss.center_lr) if center_params else None,
        scaler=torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16),
        sampler=loader.batch_sampler,
    )
    step: nn.Module = TrainStep(model, criterion, runtime)
    if ctx.enabled:
        step = DistributedDataParallel(
            step, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None
        )
    if t.compile:
        step = torch.compile(step)
    return Training(recipe, dataset, runtime, ctx, state, loader, step)


def train(
    recipe: Recipe,
    out_dir: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``recipe``, evaluate it, and return the final metrics (rank 0; {} on other ranks).

    ``resume``: continue the run in ``out_dir`` from its last.pt (a finished run is read back);
    ``overwrite``: replace the run that lives in ``out_dir`` (refused otherwise).
    """
    ctx = init_distributed(use_cuda=torch.cuda.is_available() and recipe.train.device != "cpu")
    try:
        return _train(recipe, out_dir, data_root=data_root, resume=resume, overwrite=overwrite, ctx=ctx)
    finally:
        shutdown(ctx)


def _train(
    recipe: Recipe,
    out_dir: str | Path | None,
    *,
    data_root: str | Path | None,
    resume: bool,
    overwrite: bool,
    ctx: DistContext,
) -> dict[str, Any]:
    out = Path(out_dir) if out_dir is not None else default_out_dir(recipe)
    opened = open_run(out, recipe.to_dict(), resume=resume, overwrite=overwrite, is_main=ctx.is_main)
    try:  # the folder is this process's until it returns (reidlib.utils.fileio.FolderLock)
        if opened.finished is not None:
            return opened.finished  # finished: nothing to train, read it back
        return _train_opened(recipe, opened, data_root=data_root, ctx=ctx)
    finally:
        opened.close()


def _train_opened(
    recipe: Recipe, opened: Opened, *, data_root: str | Path | None, ctx: DistContext
) -> dict[str, Any]:
    o, e = recipe.optim, recipe.eval
    run, resume = opened.folder, opened.resume
    runtime = resolve_runtime(recipe, ctx)
    if ctx.is_main:
        tqdm.write(f"training {recipe.name} on {device_description(runtime.device)}: {describe(o)}")
        if opened.restarted:
            tqdm.write(f"{run.path}: stopped before its first epoch ended, so it starts again from epoch 1")
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    dataset = prepare_dataset(recipe, data_root)
    check_dataset_images(dataset)  # a bad file stops the run now, not in an epoch or at evaluation
    if any(v.rerank for v in _eval_variants(recipe)):  # refuse now, not after training
        check_rerank_memory(len(dataset.query), len(dataset.gallery))
    tr = build_training(recipe, dataset, runtime, ctx)
    start_epoch = 1
    if resume:
        run.saved_epoch = restore(run.checkpoint, tr.state, recipe, dataset.num_train_pids)
        start_epoch = run.saved_epoch + 1
        run.restore_log(run.saved_epoch)
        tr.first_loss = run.log_rows[0].losses.get("total") if run.log_rows else None
    params = _record_start(opened, _params(recipe, dataset, runtime, ctx), start_epoch)
    if ctx.is_main:
        run.write_params(params)
    barrier(ctx)

    metrics: dict[str, Any] = {}
    train_seconds = sum(r.epoch_time_s for r in run.log_rows)
    with _stopped_cleanly(run):
        for epoch in range(start_epoch, o.epochs + 1):
            run.epoch = epoch
            lr = _start_epoch(tr, epoch)
            row = _train_epoch(tr, epoch, lr)
            train_seconds += row.epoch_time_s
            if epoch % e.every == 0 or epoch == o.epochs:
                metrics = _evaluate(tr, final=epoch == o.epochs)
                if ctx.is_main:
                    row.metrics = {k: v for k, v in metrics[_main_variant(recipe)].items() if k != "cmc"}
            if ctx.is_main:
                _print_epoch(row, o.epochs)
                run.append_log(row)
                _save(run, tr, epoch)
            barrier(ctx)
        if start_epoch > o.epochs:  # last.pt holds the last epoch but metrics.json was never written
            metrics = _evaluate(tr, final=True)
        if not ctx.is_main or not metrics:
            return {}
        final = run.write_metrics(
            FinalMetrics.of(recipe, dataset, metrics, epoch=o.epochs, seconds=train_seconds)
        )
    if not recipe.train.keep_checkpoint:
        run.checkpoint.unlink(missing_ok=True)  # the run is complete; nothing left to resume
    return final


def _start_epoch(tr: Training, epoch: int) -> float:
    """The epoch's learning rate, and its randomness re-seeded from (seed, epoch, rank) alone."""
    lr = lr_at(epoch, tr.recipe.optim)
    for group in tr.state.optimizer.param_groups:
        group["lr"] = lr
    seed = epoch_seed(tr.recipe.train.seed, epoch, tr.ctx.rank)
    seed_everything(seed)
    tr.loader.generator.manual_seed(seed)
    tr.loader.batch_sampler.set_epoch(epoch)
    tr.state.criterion.set_epoch(epoch)  # loss.ramp_epochs: the branches' weights of this epoch
    return lr


def _evaluate(tr: Training, *, final: bool) -> dict[str, dict[str, Any]]:
    """The main variant (every ``eval.every`` epochs), or all the final variants after the last."""
    d, e, t = tr.recipe.data, tr.recipe.eval, tr.recipe.train
    return evaluate_network(
        tr.state.model,
        tr.dataset,
        height=d.height,
        width=d.width,
        runtime=dataclasses.replace(tr.runtime, amp_dtype=None),  # test features in fp32
        batch_size=d.test_batch_size,
        workers=d.workers,
        metric=e.metric,
        mode=e.mode,
        max_rank=e.max_rank,
        variants=_eval_variants(tr.recipe) if final else [_main_variant(tr.recipe)],
        ctx=tr.ctx,
        progress=t.progress and tr.ctx.is_main,
    )


def _save(run: RunFolder, tr: Training, epoch: int) -> None:
    """last.pt every ``train.checkpoint_every`` epochs and after the last; the snapshots asked for."""
    t = tr.recipe.train
    info = CheckpointInfo(recipe=tr.recipe.to_dict(), num_classes=tr.dataset.num_train_pids, epoch=epoch)
    if epoch % t.checkpoint_every == 0 or epoch == tr.recipe.optim.epochs:
        save_checkpoint(run.checkpoint, info, tr.state)
        run.saved_epoch = epoch
    if epoch in t.snapshot_epochs:  # the network as it was then (SEN Fig. 10: maps over epochs)
        save_snapshot(run.snapshot(epoch), info, tr.state)


@contextlib.contextmanager
def _stopped_cleanly(run: RunFolder) -> Iterator[None]:
    """A stop (Ctrl-C, divergence, failed read or write) names the epoch and the checkpoint to resume."""
    try:
        yield
    except KeyboardInterrupt as err:
        hint = run.resume_hint()
        raise TrainingInterrupted(f"{run.path}: interrupted in epoch {run.epoch}; {hint}") from err
    except TrainingDiverged as err:
        err.args = (f"{run.path}: {err}; {run.resume_hint()}",)
        raise
    except OSError as err:
        raise TrainingIOError(
            f"{run.path}: epoch {run.epoch}: {one_line(err)}; fix the cause (disk space, permissions, "
            f"the data), then: {run.resume_hint()}"
        ) from err


def _main_variant(recipe: Recipe) -> Variant:
    return Variant.of(flip=recipe.eval.flip, rerank=recipe.eval.rerank)


def _eval_variants(recipe: Recipe) -> list[Variant]:
    main = _main_variant(recipe)
    return [main, *[v for v in Variant.parse(recipe.eval.final_variants, "eval.final_variants") if v != main]]


def _print_epoch(row: EpochLog, epochs: int) -> None:
    """One line per epoch, with or without progress bars, so long runs leave a readable log."""
    line = (
        f"epoch {row.epoch}/{epochs}: loss {row.losses.get('total', float('nan')):.4f}, "
        f"lr {row.lr:.2e}, {row.images_per_s:.0f} img/s, {row.epoch_time_s:.0f} s"
    )
    m = row.metrics
    if m:
        line += f"; rank-1 {m['rank1']:.2f}, mAP {m['mAP']:.2f}, mINP {m['mINP']:.2f}"
    if row.epoch < epochs:
        line += f"; {_time_left(row.epoch_time_s * (epochs - row.epoch))} of training left at this speed"
    tqdm.write(line)
    sys.stdout.flush()  # visible at once when stdout is a log file


def _time_left(seconds: float) -> str:
    """The time left in words: "about 42 min" below two hours, then "about 5.6 h"."""
    minutes = seconds / 60
    return f"about {minutes:.0f} min" if minutes < 120 else f"about {minutes / 60:.1f} h"


def _train_epoch(tr: Training, epoch: int, lr: float) -> EpochLog:
    """One epoch; returns its log row. Loss sums stay on the device (no sync per iteration)."""
    t, ctx, s = tr.recipe.train, tr.ctx, tr.state
    tr.step.train()
    total_iters = len(tr.loader)
    if t.max_iters_per_epoch is not None:
        total_iters = min(total_iters, t.max_iters_per_epoch)
    sums: dict[str, Tensor] = {}
    images_seen, start, grad_log = 0, time.perf_counter(), {}
    bar = tqdm(
        total=total_iters,
        desc=f"epoch {epoch}/{tr.recipe.optim.epochs}",
        leave=False,
        disable=not (t.progress and ctx.is_main),
    )
    for it, (images, pids, _camids, _idx) in enumerate(tr.loader):
        if it >= total_iters:
            break
        s.criterion.check_labels(pids)  # on the CPU batch: no GPU sync inside the loss terms
        images, pids = tr.runtime.images(images), pids.to(tr.runtime.device, non_blocking=True)
        if it == 0 and t.log_branch_grads:  # one backward per branch on the first batch (branch_grads)
            grad_log = log_branch_grads(tr.step, s.criterion, images, pids, tr.runtime)
        total, terms = tr.step(images, pids)
        if tr.first_loss is None:  # the untrained network's loss: what divergence is measured against
            tr.first_loss = float(total.detach())
        _optimizer_step(s, total)
        for name, value in terms.items():
            sums[name] = sums[name] + value if name in sums else value.clone()
        images_seen += images.shape[0]
        if (it + 1) % 10 == 0 or it + 1 == total_iters:
            mean_total = float(sums["total"]) / (it + 1)
            _check_loss(tr, mean_total, epoch, it, lr)
            bar.set_postfix(
                loss=f"{mean_total:.3f}", img_s=f"{images_seen / (time.perf_counter() - start):.0f}"
            )
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    losses = {k: float(v) / max(total_iters, 1) for k, v in sums.items()}
    _check_loss(tr, losses.get("total", 0.0), epoch, total_iters - 1, lr)
    return EpochLog(
        epoch=epoch,
        lr=lr,
        losses=losses,
        iters=total_iters,
        images_per_s=round(images_seen * ctx.world_size / seconds, 2),
        epoch_time_s=round(seconds, 2),
        extra=grad_log,
    )


def _optimizer_step(s: TrainState, total: Tensor) -> None:
    """Backward through the (scaled) loss, then a step of the network's and the centers' optimisers."""
    s.optimizer.zero_grad(set_to_none=True)
    if s.center_optimizer is not None:
        s.center_optimizer.zero_grad(set_to_none=True)
    s.scaler.scale(total).backward()
    s.scaler.step(s.optimizer)
    if s.center_optimizer is not None:
        s.scaler.unscale_(s.center_optimizer)
        s.criterion.rescale_center_grads()
        s.scaler.step(s.center_optimizer)
    s.scaler.update()


def _check_loss(tr: Training, value: float, epoch: int, iteration: int, lr: float) -> None:
    """Stop on a NaN/inf loss, or one grown :data:`DIVERGED_FACTOR` times over the run's first; under
    DDP every rank stops together (no rank left waiting in a collective)."""
    first = tr.first_loss
    finite = math.isfinite(value)
    grown = finite and first is not None and first > 0 and value > DIVERGED_FACTOR * first
    if tr.ctx.enabled:
        flag = torch.tensor([0.0 if not finite else 1.0 if grown else 2.0], device=_collective_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        finite, grown = flag.item() > 0, flag.item() == 1
    if not finite:
        what = "became non-finite"
    elif grown:
        what = f"grew to {value:.3g}, over {DIVERGED_FACTOR:g} times its first value {first or 0:.3g},"
    else:
        return
    raise TrainingDiverged(
        f"epoch {epoch}: the training loss {what} by iteration {iteration + 1} at lr {lr:.2e}; stopped "
        "before writing a checkpoint (lower optim.lr or check the data)"
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
    ckpt = load_checkpoint(checkpoint)
    recipe = checkpoint_recipe(ckpt)
    recipe.model.pretrained = False  # the checkpoint holds the weights
    model = build_network(recipe, CheckpointInfo.of(ckpt).num_classes)
    load_weights(model, ckpt, checkpoint)
    return model.to(device).eval(), recipe
