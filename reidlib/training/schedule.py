"""The learning-rate curve of BoT, SEN (eq. 11) and Deep Miner: linear warmup, then steps.

lr(t) = lr * t / W                       for 1 <= t <= W (W warmup epochs)
lr(t) = lr * gamma ** #{m : t > m}       afterwards (m the milestones)

With lr 3.5e-4, W 10, milestones 40 and 70 this is BoT's and Deep Miner's curve (3.5e-5 at t = 1, 3.5e-4
at t = 10..40, 3.5e-5 at 41..70, 3.5e-6 after). SEN's eq. 11 is the same shape with 4.5e-4 and
milestones 45 and 90; its printed warmup "4.5e-5 x t/10" is read as a typo for 4.5e-4 x t/10
(docs/reading-the-papers.md#sen-the-eq-11-typo).
The rate is set once per epoch (t is 1-based), as in the papers.
"""

from __future__ import annotations

from reidlib.config import OptimConfig


def lr_at(epoch: int, optim: OptimConfig) -> float:
    if epoch < 1:
        raise ValueError(f"epoch: epochs are 1-based, got {epoch}")
    if epoch <= optim.warmup_epochs:
        return optim.lr * epoch / optim.warmup_epochs
    return optim.lr * optim.gamma ** sum(epoch > m for m in optim.milestones)


def describe(optim: OptimConfig) -> str:
    """The curve in words, as the run will really follow it: a milestone at or past the last epoch
    never applies, and is said so (a run shortened with ``optim.epochs`` keeps the recipe's milestones)."""
    warm = optim.warmup_epochs
    lr = f"lr {optim.lr:.2e}" + (f" after {warm} warm-up epoch{'s' if warm != 1 else ''}" if warm else "")
    inside = [m for m in optim.milestones if m < optim.epochs]
    past = [m for m in optim.milestones if m >= optim.epochs]
    steps = f"x{optim.gamma:g} after epoch{'s' if len(inside) != 1 else ''} {', '.join(map(str, inside))}"
    decay = f"; {steps}" if inside else ""
    if past:
        epochs = f"epoch{'s' if len(past) != 1 else ''} {', '.join(map(str, past))}"
        decay += f"; x{optim.gamma:g} after {epochs}: never (past the last epoch)"
    return f"{optim.epochs} epoch{'s' if optim.epochs != 1 else ''}, {lr}{decay}"
