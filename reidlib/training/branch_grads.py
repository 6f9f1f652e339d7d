"""Which branch trains the backbone: each branch's gradient on the shared trunk (train.log_branch_grads).

For one batch, every branch's loss group L_b (the weighted sum of its terms, as the Criterion trains
it) is back-propagated on its own to the parameters every branch shares
(:meth:`ReIDNetwork.shared_parameters`, theta), giving g_b = dL_b / dtheta flattened into one vector.
The log holds ||g_b|| and cos(g_b, g_global) = <g_b, g_global> / (||g_b|| ||g_global||); the cosine is
None where a norm is 0 (a detached branch). The total loss's gradient on theta is the sum of the g_b,
so a branch whose norm dwarfs the global one's and whose cosine is near 0 steers the trunk somewhere
the global branch does not ask for.

Cost: one forward and one backward per branch, on one batch, per epoch (the engine uses the first
batch of each epoch), logged as ``branch_grads_s``. Measured on the smoke budget (2 shared cores,
52 iterations of 32 images at 128x64): 0.9-1.1 s per epoch for the smoke recipe itself (BoT, one
branch; epochs of 37-74 s), 0.9-1.7 s for BDB (two branches; 35-42 s epochs), 1.2-4.7 s for Deep Miner
(four branches; 79-256 s epochs), a few per cent of an epoch, and less at the real budget (about 200
iterations per epoch). It leaves training untouched: the RNG is forked and BatchNorm's running
statistics are put back, so a run ends with the same weights with and without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from reidlib.models.network import ReIDNetwork
from reidlib.models.outputs import BranchOutput
from reidlib.training.losses import GLOBAL_BRANCH, Criterion


@contextmanager
def _buffers_restored(module: nn.Module) -> Iterator[None]:
    saved = {name: b.detach().clone() for name, b in module.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(saved[name])


def _flat_grad(loss: Tensor, params: list[nn.Parameter]) -> Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    flat = [
        torch.zeros(p.numel(), dtype=torch.float64, device=p.device) if g is None else g.reshape(-1).double()
        for g, p in zip(grads, params, strict=True)
    ]
    return torch.cat(flat)


def branch_gradients(
    model: ReIDNetwork,
    criterion: Criterion,
    images: Tensor,
    pids: Tensor,
    *,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[str, dict[str, float | None]]:
    """``{branch: {"norm": ||g_b||, "cosine": cos(g_b, g_global)}}`` for one batch, in the criterion's
    branch order (float64 sums); ``model`` is used in the mode it is in (train, for the engine)."""
    params = [p for p in model.shared_parameters() if p.requires_grad]
    if not params:
        raise ValueError("branch gradients: the model's shared parameters are all frozen")
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _buffers_restored(model):
        with autocast():
            outputs = model(images)
        outputs = {k: BranchOutput(*(t.float() for t in o)) for k, o in outputs.items()}
        losses = criterion.branch_losses(outputs, pids)
        if GLOBAL_BRANCH not in losses:
            raise ValueError(f"branch gradients: no loss term on {GLOBAL_BRANCH!r}; terms on {list(losses)}")
        grads = {b: _flat_grad(loss, params) for b, loss in losses.items()}
    ref = grads[GLOBAL_BRANCH]
    ref_norm = float(ref.norm())
    out: dict[str, dict[str, float | None]] = {}
    for b, g in grads.items():
        norm = float(g.norm())
        cosine = float(g @ ref) / (norm * ref_norm) if norm > 0 and ref_norm > 0 else None
        out[b] = {"norm": norm, "cosine": cosine}
    return out


def log_branch_grads(
    step: nn.Module, criterion: Criterion, images: Tensor, pids: Tensor, runtime: Any
) -> dict[str, Any]:
    """The engine's call: the log-row entries ``branch_grads`` (:func:`branch_gradients` of the
    training step's network) and ``branch_grads_s`` (the seconds it took, inside the epoch's time)."""
    start = time.perf_counter()
    inner = getattr(step, "_orig_mod", step)  # torch.compile
    inner = getattr(inner, "module", inner)  # DistributedDataParallel
    grads = branch_gradients(inner.model, criterion, images, pids, autocast=runtime.autocast)
    return {"branch_grads": grads, "branch_grads_s": round(time.perf_counter() - start, 3)}
