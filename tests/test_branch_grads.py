"""reidlib.training.branch_grads against a two-branch toy whose gradients are computed by hand.

The toy shares a linear backbone f = W x between a global branch (feature f) and a "drop" branch
(feature M f, M fixed), plus a branch "free" whose feature does not depend on the backbone. Each
branch has one center loss with zero centers, so L_b = w_b / B * sum_i ||F_b x_i||^2 and
dL_b/dW = 2 w_b / B * sum_i F_b^T F_b W x_i x_i^T, which the test writes out for its numbers.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reidlib.config import LossTerm
from reidlib.models.network import ReIDNetwork
from reidlib.models.outputs import BranchOutput
from reidlib.training.branch_grads import branch_gradients
from reidlib.training.losses import Criterion


class Toy(ReIDNetwork):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2, bias=False)
        self.mix = nn.Linear(2, 2, bias=False)
        self.free = nn.Parameter(torch.ones(1, 2))
        self.bn = nn.BatchNorm1d(2)  # running statistics the measurement must leave alone
        with torch.no_grad():
            self.backbone.weight.copy_(torch.eye(2))  # W = I
            self.mix.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.0]]))  # M = diag(2, 0)
        self.feat_dims = {"global": 2, "drop": 2, "free": 2}

    def forward(self, x):
        f = self.backbone(x)
        self.bn(f)
        torch.rand(3)  # draws from the global RNG, as erasing does
        zeros = torch.zeros(x.shape[0], 3)
        g = self.mix(f)
        free = self.free.expand(x.shape[0], 2)
        return {
            "global": BranchOutput(f, f, zeros),
            "drop": BranchOutput(g, g, zeros),
            "free": BranchOutput(free, free, zeros),
        }


def toy_criterion(ramp_epochs: int = 0) -> Criterion:
    terms = [
        LossTerm("global", "center", 1.0),
        LossTerm("drop", "center", 0.5),
        LossTerm("free", "center", 1.0),
    ]
    crit = Criterion(terms, 3, {"global": 2, "drop": 2, "free": 2}, ramp_epochs=ramp_epochs)
    with torch.no_grad():
        for c in crit.centers.values():
            c.centers.zero_()
    return crit


X = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # x_1 = e_1, x_2 = e_2, so sum_i x_i x_i^T = I
PIDS = torch.tensor([0, 0])


def test_norms_and_cosine_match_the_hand_computed_gradients():
    # global: dL/dW = 2/2 * I = I                      -> norm sqrt(2)
    # drop:   dL/dW = 2 * 0.5 / 2 * M^T M = diag(2, 0)  -> norm 2, cosine <I, diag(2,0)> / (sqrt2 * 2)
    got = branch_gradients(Toy(), toy_criterion(), X, PIDS)
    assert list(got) == ["global", "drop", "free"]
    assert got["global"]["norm"] == pytest.approx(math.sqrt(2), abs=1e-12)
    assert got["global"]["cosine"] == pytest.approx(1.0, abs=1e-12)
    assert got["drop"]["norm"] == pytest.approx(2.0, abs=1e-12)
    assert got["drop"]["cosine"] == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    assert got["free"] == {"norm": 0.0, "cosine": None}  # no path to the backbone


def test_the_ramp_scales_a_branch_norm_and_keeps_its_direction():
    crit = toy_criterion(ramp_epochs=4)
    crit.set_epoch(1)  # drop weighs 0.5 * 1/4
    got = branch_gradients(Toy(), crit, X, PIDS)
    assert got["drop"]["norm"] == pytest.approx(0.5, abs=1e-12)
    assert got["drop"]["cosine"] == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    assert got["global"]["norm"] == pytest.approx(math.sqrt(2), abs=1e-12)  # global is never ramped


def test_the_measurement_leaves_rng_buffers_and_grads_untouched():
    model, crit = Toy(), toy_criterion()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    branch_gradients(model, crit, X, PIDS)
    after_rng = torch.rand(4)
    torch.manual_seed(5)
    assert torch.equal(after_rng, torch.rand(4))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_a_criterion_without_a_global_term_is_named():
    crit = Criterion([LossTerm("drop", "center", 1.0)], 3, {"drop": 2})
    with pytest.raises(ValueError, match="'global'"):
        branch_gradients(Toy(), crit, X, PIDS)
