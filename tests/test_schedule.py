"""The learning-rate curves against the numbers written in docs/reading-the-papers.md and the papers."""

from __future__ import annotations

import pytest

from reidlib.config import OptimConfig, load_recipe
from reidlib.training.schedule import lr_at

# docs/reading-the-papers.md#sen-the-eq-11-typo: lr(t) = 4.5e-4 * t / 10 for t <= 10, then 4.5e-4 to
# epoch 45, 4.5e-5 to 90, 4.5e-6 to 210.
SEN = {
    1: 4.5e-5,
    2: 9.0e-5,
    5: 2.25e-4,
    10: 4.5e-4,
    11: 4.5e-4,
    45: 4.5e-4,
    46: 4.5e-5,
    90: 4.5e-5,
    91: 4.5e-6,
    210: 4.5e-6,
}
# docs/reading-the-papers.md#deep-miner-schedule-and-epochs (and BoT): 3.5e-5 -> 3.5e-4 over 10 epochs;
# x0.1 at epochs 40 and 70.
DEEP_MINER = {1: 3.5e-5, 10: 3.5e-4, 40: 3.5e-4, 41: 3.5e-5, 70: 3.5e-5, 71: 3.5e-6, 120: 3.5e-6}


@pytest.mark.parametrize(
    "recipe, curve",
    [("sen_market1501", SEN), ("deep_miner_market1501", DEEP_MINER), ("bot_market1501", DEEP_MINER)],
)
def test_paper_curves(recipe, curve):
    optim = load_recipe(recipe).optim
    for epoch, lr in curve.items():
        assert lr_at(epoch, optim) == pytest.approx(lr, rel=1e-12), epoch


def test_no_warmup_and_bad_epoch():
    optim = OptimConfig(lr=1.0, warmup_epochs=0, milestones=[2], gamma=0.5)
    assert [lr_at(t, optim) for t in (1, 2, 3)] == [1.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="1-based"):
        lr_at(0, optim)
