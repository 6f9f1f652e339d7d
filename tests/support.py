"""Helpers the tests share (imported as ``from support import ...``): the tiny recipe and its
overrides, a loss scaled or poisoned from a given step, a KeyboardInterrupt at a given optimiser step, and
the one-line error a failed command prints."""

from __future__ import annotations

from pathlib import Path

from reidlib.config import Recipe, load_recipe
from reidlib.training.losses import Criterion


def tiny_overrides(root: Path, *overrides: str) -> list[str]:
    """The ``--set`` values that shrink the smoke recipe to seconds (see :func:`tiny_recipe`)."""
    return [
        f"data.root={root}",
        "data.height=64",
        "data.width=32",
        "data.num_identities=4",
        "data.num_instances=2",
        "optim.epochs=2",
        "optim.warmup_epochs=1",
        "optim.milestones=[1]",
        "eval.every=1",
        "train.max_iters_per_epoch=3",
        "train.progress=false",
        *overrides,
    ]


def tiny_recipe(root: Path, *overrides: str) -> Recipe:
    """The smoke recipe shrunk to seconds: 64x32 input, P x K = 4 x 2, 3 iterations per epoch."""
    return load_recipe("smoke", tiny_overrides(root, *overrides))


def scale_loss_from(monkeypatch, call: int, factor: float) -> None:
    """Multiply the loss by ``factor`` from the ``call``-th criterion call on (3 calls per tiny epoch)."""
    original, calls = Criterion.forward, []

    def scaled(self, outputs, pids):
        total, logs = original(self, outputs, pids)
        calls.append(1)
        if len(calls) < call:
            return total, logs
        return total * factor, logs | {"total": logs["total"] * factor}

    monkeypatch.setattr(Criterion, "forward", scaled)


def poison_from(monkeypatch, call: int) -> None:
    """Make the loss NaN from the ``call``-th criterion call on (3 calls per tiny epoch)."""
    scale_loss_from(monkeypatch, call, float("nan"))


def cli_sets(root: Path, *overrides: str) -> list[str]:
    """:func:`tiny_overrides` as command-line ``--set`` arguments."""
    return [arg for o in tiny_overrides(root, *overrides) for arg in ("--set", o)]


def error_line(capsys) -> str:
    """The one line a failed command printed on stderr (no traceback)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def interrupt_at(call: int):
    """An optimiser step raising KeyboardInterrupt at its ``call``-th call (patched over the engine's)."""
    from reidlib.training import engine

    original, calls = engine._optimizer_step, []

    def step(state, total):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return original(state, total)

    return step
