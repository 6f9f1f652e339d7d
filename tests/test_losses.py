"""Tests of reidlib.training.losses against hand-computed values and naive loops written from the
definitions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reidlib.config import LossTerm, load_recipe
from reidlib.models.outputs import BranchOutput
from reidlib.training.losses import (
    CenterLoss,
    Criterion,
    batch_hard_triplet,
    cross_entropy_label_smooth,
    euclidean_distmat,
    ramp_factor,
)

# the papers' term lists as their recipes state them (SEN eq. 10, BoT, Batch DropBlock)
SEN_TERMS = load_recipe("sen_market1501").loss.terms
BOT_TERMS = load_recipe("bot_market1501").loss.terms
BDB_TERMS = load_recipe("bdb_market1501").loss.terms


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# ------------------------------------------------------------------------------------------------
# Label-smoothed cross-entropy
# ------------------------------------------------------------------------------------------------


def test_label_smooth_ce_two_classes_by_hand():
    # logits (0, ln 3) -> p = (1/4, 3/4); target 1, eps = 0.1, N = 2:
    # q = (eps/N, 1 - eps (N-1)/N) = (0.05, 0.95); loss = -(0.05 ln 1/4 + 0.95 ln 3/4)
    logits = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    loss = cross_entropy_label_smooth(logits, torch.tensor([1]), epsilon=0.1)
    expected = -(0.05 * math.log(0.25) + 0.95 * math.log(0.75))  # = 0.342609...
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_label_smooth_ce_three_classes_by_hand_batch_mean():
    # Row 1: logits ln(1, 2, 5) -> p = (1/8, 2/8, 5/8), target 0, eps = 0.3, N = 3:
    #   q = (1 - 0.3 * 2/3, 0.1, 0.1) = (0.8, 0.1, 0.1)
    #   loss1 = -(0.8 ln 1/8 + 0.1 ln 1/4 + 0.1 ln 5/8)
    # Row 2: logits (0, 0, 0) -> p = 1/3 each; any q sums to 1 -> loss2 = ln 3
    logits = torch.tensor([[0.0, math.log(2.0), math.log(5.0)], [0.0, 0.0, 0.0]], dtype=torch.float64)
    loss = cross_entropy_label_smooth(logits, torch.tensor([0, 2]), epsilon=0.3)
    loss1 = -(0.8 * math.log(1 / 8) + 0.1 * math.log(1 / 4) + 0.1 * math.log(5 / 8))
    loss2 = math.log(3.0)
    assert loss.item() == pytest.approx((loss1 + loss2) / 2, rel=1e-6)


def test_label_smooth_ce_eps0_is_plain_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 11, generator=g)
    targets = torch.randint(0, 11, (8,), generator=g)
    loss = cross_entropy_label_smooth(logits, targets, epsilon=0.0)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets))


def test_label_smooth_ce_matches_torch_label_smoothing():
    # torch's label_smoothing mixes (1 - eps) one-hot + eps / N: the same q as eq. 6
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=g)
    targets = torch.randint(0, 5, (6,), generator=g)
    loss = cross_entropy_label_smooth(logits, targets, epsilon=0.1)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets, label_smoothing=0.1))


def test_label_smooth_ce_bad_input():
    logits = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="targets"):
        cross_entropy_label_smooth(logits, torch.tensor([0, 1, 2]))  # 3 labels for 4 rows
    with pytest.raises(ValueError, match="targets"):
        cross_entropy_label_smooth(logits, torch.tensor([0, 1, 2, 3]))  # class 3 of 3
    with pytest.raises(ValueError, match="targets"):
        cross_entropy_label_smooth(logits, torch.zeros(4))  # float labels
    with pytest.raises(ValueError, match="logits"):
        cross_entropy_label_smooth(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="epsilon"):
        cross_entropy_label_smooth(logits, torch.zeros(4, dtype=torch.long), epsilon=1.0)


# ------------------------------------------------------------------------------------------------
# Batch-hard triplet
# ------------------------------------------------------------------------------------------------

# Identity 0: a1 = (0, 0), a2 = (3, 4); identity 1: b1 = (6, 0), b2 = (6, 8). Distances:
#   a1-a2 = 5, b1-b2 = 8, a1-b1 = 6, a1-b2 = 10, a2-b1 = sqrt(9 + 16) = 5, a2-b2 = sqrt(9 + 16) = 5
# Anchor  d_ap  d_an             d_ap - d_an
#   a1     5    min(6, 10) = 6       -1
#   a2     5    min(5, 5)  = 5        0
#   b1     8    min(6, 5)  = 5        3
#   b2     8    min(10, 5) = 5        3
# The images are interleaved (a1, b1, a2, b2) so the masks, not the order, must find the pairs.
FOUR_POINTS = torch.tensor([[0.0, 0.0], [6.0, 0.0], [3.0, 4.0], [6.0, 8.0]], dtype=torch.float64)
FOUR_PIDS = torch.tensor([0, 1, 0, 1])


def test_triplet_hinge_by_hand():
    # margin 0.3: max(-0.7, 0) + max(0.3, 0) + 3.3 + 3.3 = 6.9 -> mean 1.725
    loss = batch_hard_triplet(FOUR_POINTS, FOUR_PIDS, margin=0.3)
    assert loss.item() == pytest.approx(6.9 / 4, rel=1e-9)
    # margin 2: 1 + 2 + 5 + 5 = 13 -> mean 3.25
    assert batch_hard_triplet(FOUR_POINTS, FOUR_PIDS, margin=2.0).item() == pytest.approx(3.25, rel=1e-9)


def test_triplet_soft_margin_by_hand():
    # softplus(-1) + softplus(0) + 2 softplus(3), averaged over the 4 anchors
    expected = (softplus(-1.0) + math.log(2.0) + 2 * softplus(3.0)) / 4
    loss = batch_hard_triplet(FOUR_POINTS, FOUR_PIDS, margin=None)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_euclidean_distmat_by_hand():
    d = euclidean_distmat(FOUR_POINTS, FOUR_POINTS)
    expected = torch.tensor([[0, 6, 5, 10], [6, 0, 5, 8], [5, 5, 0, 5], [10, 8, 5, 0]], dtype=torch.float64)
    torch.testing.assert_close(d, expected, atol=1e-5, rtol=0)  # the diagonal is sqrt(1e-12) = 1e-6


def _naive_triplet(feats: torch.Tensor, pids: list[int], margin: float | None) -> float:
    """Batch-hard triplet from the definition: loops over anchors, distances as norms of differences."""
    per_anchor = []
    for a in range(len(pids)):
        d_ap = max(
            float(torch.linalg.norm(feats[a] - feats[p]))
            for p in range(len(pids))
            if p != a and pids[p] == pids[a]
        )
        d_an = min(
            float(torch.linalg.norm(feats[a] - feats[n])) for n in range(len(pids)) if pids[n] != pids[a]
        )
        per_anchor.append(softplus(d_ap - d_an) if margin is None else max(d_ap - d_an + margin, 0.0))
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("margin", [None, 0.3])
def test_triplet_matches_naive_loop_on_random_data(margin):
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(12, 5, generator=g, dtype=torch.float64)
    pids = [3, 7, 3, 9, 7, 9, 3, 7, 9, 3, 7, 9]  # P = 3 identities x K = 4, shuffled
    loss = batch_hard_triplet(feats, torch.tensor(pids), margin=margin)
    assert loss.item() == pytest.approx(_naive_triplet(feats, pids, margin), rel=1e-9)


def test_triplet_gradient_finite_when_features_coincide():
    # Both images of identity 0 have the same feature, so the mined positive of each is at distance 0;
    # large values make the rounding of ||x||^2 + ||y||^2 - 2 x.y visible in float32.
    feats = torch.tensor(
        [[100.0, 200.0, -50.0], [100.0, 200.0, -50.0], [101.0, 199.0, -48.0], [90.0, 210.0, -55.0]],
        requires_grad=True,
    )
    pids = torch.tensor([0, 0, 1, 1])
    for margin in (0.3, None):
        feats.grad = None
        batch_hard_triplet(feats, pids, margin=margin).backward()
        assert torch.isfinite(feats.grad).all()
    # every feature identical: the distances are all (clamped) zero and the gradient is still finite
    same = torch.ones(4, 3, requires_grad=True)
    batch_hard_triplet(same, pids, margin=0.3).backward()
    assert torch.isfinite(same.grad).all()


def test_triplet_needs_two_identities():
    with pytest.raises(ValueError, match="pids.*at least 2 identities"):
        batch_hard_triplet(torch.randn(4, 3), torch.tensor([5, 5, 5, 5]))


def test_triplet_needs_a_positive_for_every_anchor():
    with pytest.raises(ValueError, match=r"pids.*identities with one image: \[2\]"):
        batch_hard_triplet(torch.randn(5, 3), torch.tensor([1, 1, 2, 3, 3]))


def test_triplet_bad_shapes_and_margin():
    with pytest.raises(ValueError, match="feats"):
        batch_hard_triplet(torch.randn(4), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="pids"):
        batch_hard_triplet(torch.randn(4, 2), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="margin"):
        batch_hard_triplet(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), margin=-0.1)


# ------------------------------------------------------------------------------------------------
# Center loss
# ------------------------------------------------------------------------------------------------


def _hand_center_loss() -> tuple[CenterLoss, torch.Tensor, torch.Tensor]:
    crit = CenterLoss(num_classes=3, feat_dim=2)
    with torch.no_grad():
        crit.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]))
    feats = torch.tensor([[3.0, 4.0], [1.0, 2.0], [2.0, 0.0], [0.0, 0.0]], requires_grad=True)
    pids = torch.tensor([0, 1, 2, 1])
    return crit, feats, pids


def test_center_loss_by_hand():
    # ||(3,4)-(0,0)||^2 = 25, ||(1,2)-(1,1)||^2 = 1, ||(2,0)-(2,0)||^2 = 0, ||(0,0)-(1,1)||^2 = 2
    # BoT scale: batch mean, no 1/2 -> (25 + 1 + 0 + 2) / 4 = 7
    crit, feats, pids = _hand_center_loss()
    loss = crit(feats, pids)
    assert loss.item() == pytest.approx(7.0)
    loss.backward()
    # d/dc_y = -(2 / B) * sum_{i: y_i = y} (f_i - c_y)
    #   c_0: -(2/4) (3, 4) = (-1.5, -2);  c_1: -(2/4) ((0, 1) + (-1, -1)) = (0.5, 0);  c_2: (0, 0)
    expected = torch.tensor([[-1.5, -2.0], [0.5, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(crit.centers.grad, expected)
    # d/df_i = (2 / B) (f_i - c_{y_i}) = 0.5 * ((3,4), (0,1), (0,0), (-1,-1))
    torch.testing.assert_close(feats.grad, torch.tensor([[1.5, 2.0], [0.0, 0.5], [0.0, 0.0], [-0.5, -0.5]]))


def test_center_loss_init_and_bad_input():
    crit = CenterLoss(num_classes=5, feat_dim=7)
    assert crit.centers.shape == (5, 7) and crit.centers.requires_grad
    with pytest.raises(ValueError, match="feat_dim"):
        crit(torch.randn(2, 6), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="pids"):
        crit(torch.randn(2, 7), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="num_classes"):
        CenterLoss(0, 7)


# ------------------------------------------------------------------------------------------------
# Criterion
# ------------------------------------------------------------------------------------------------

NUM_CLASSES = 6


def _outputs(branches: dict[str, int], batch: int, seed: int = 0) -> dict[str, BranchOutput]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, dim in branches.items():
        feat = torch.randn(batch, dim, generator=g, dtype=torch.float64, requires_grad=True)
        bn_feat = torch.randn(batch, dim, generator=g, dtype=torch.float64)
        logits = torch.randn(batch, NUM_CLASSES, generator=g, dtype=torch.float64, requires_grad=True)
        out[name] = BranchOutput(feat, bn_feat, logits)
    return out


PIDS = torch.tensor([0, 4, 0, 4, 2, 2])  # P = 3 x K = 2


def _naive_center(feat: torch.Tensor, centers: torch.Tensor, pids: torch.Tensor) -> float:
    return sum(float(((feat[i] - centers[int(pids[i])]) ** 2).sum()) for i in range(len(pids))) / len(pids)


def test_criterion_sen_total_matches_eq10_by_independent_references():
    outputs = _outputs({"global": 8, "bs": 8, "ms": 8}, batch=len(PIDS))
    crit = Criterion(SEN_TERMS, NUM_CLASSES, {"global": 8}, label_smoothing=0.1, triplet_margin=0.3)
    total, tensor_logs = crit(outputs, PIDS)
    # logs are detached 0-d tensors (no GPU sync per iteration); compare their values
    for v in tensor_logs.values():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad
    logs = {k: float(v) for k, v in tensor_logs.items()}
    pid_list = PIDS.tolist()
    centers = crit.centers["global"].centers.detach()
    ce = {b: float(F.cross_entropy(outputs[b].logits.detach(), PIDS, label_smoothing=0.1)) for b in outputs}
    tri = _naive_triplet(outputs["global"].feat.detach(), pid_list, 0.3)
    cen = _naive_center(outputs["global"].feat.detach(), centers, PIDS)
    # SEN eq. 10: L = L_ID1 + 0.5 L_ID2 + L_ID3 + L_tri + 0.0005 L_c
    expected = ce["global"] + 0.5 * ce["bs"] + ce["ms"] + tri + 0.0005 * cen
    assert total.item() == pytest.approx(expected, rel=1e-9)
    assert logs == pytest.approx(
        {
            "global/ce": ce["global"],
            "bs/ce": 0.5 * ce["bs"],
            "ms/ce": ce["ms"],
            "global/triplet": tri,
            "global/center": 0.0005 * cen,
            "total": expected,
        },
        rel=1e-9,
    )
    # the logged terms add up to the total
    assert sum(v for k, v in logs.items() if k != "total") == pytest.approx(logs["total"], rel=1e-12)
    total.backward()
    assert outputs["bs"].logits.grad is not None and outputs["global"].feat.grad is not None
    assert outputs["ms"].feat.grad is None  # no feature loss on the MS branch


def test_criterion_deep_miner_soft_margin_per_branch():
    branches = ["global", "ie1", "ie2", "local"]
    dims = {"global": 4, "ie1": 4, "ie2": 4, "local": 16}
    outputs = _outputs(dims, batch=len(PIDS), seed=3)
    # Deep Miner eq. 2 on every branch, written out: L_ID + L_triplet + 0.0005 L_center
    eq2 = (("ce", 1.0), ("triplet", 1.0), ("center", 5e-4))
    terms = [LossTerm(branch, kind, weight) for branch in branches for kind, weight in eq2]
    crit = Criterion(terms, NUM_CLASSES, dims, triplet_margin=None)
    assert sorted(crit.centers) == sorted(branches)
    assert crit.centers["local"].centers.shape == (NUM_CLASSES, 16)
    total, logs = crit(outputs, PIDS)
    expected = 0.0
    for b in branches:
        # Deep Miner eq. 2: L_ID + L_triplet (soft margin, eq. 5, averaged) + 5e-4 L_center
        tri = _naive_triplet(outputs[b].feat.detach(), PIDS.tolist(), None)
        assert float(logs[f"{b}/triplet"]) == pytest.approx(tri, rel=1e-9)
        expected += (
            float(F.cross_entropy(outputs[b].logits.detach(), PIDS, label_smoothing=0.1))
            + tri
            + 5e-4 * _naive_center(outputs[b].feat.detach(), crit.centers[b].centers.detach(), PIDS)
        )
    assert total.item() == pytest.approx(expected, rel=1e-9)


def test_bot_and_bdb_recipe_terms():
    assert BOT_TERMS == [
        LossTerm("global", "ce"),
        LossTerm("global", "triplet"),
        LossTerm("global", "center", 0.0005),
    ]
    assert [t.name for t in BDB_TERMS] == ["global/ce", "global/triplet", "drop/ce", "drop/triplet"]
    assert all(t.weight == 1.0 for t in BDB_TERMS)
    crit = Criterion(BDB_TERMS, NUM_CLASSES, {})
    assert list(crit.center_parameters()) == []


def test_rescale_center_grads_undoes_the_loss_weight():
    outputs = _outputs({"global": 3}, batch=len(PIDS), seed=5)
    crit = Criterion(BOT_TERMS, NUM_CLASSES, {"global": 3})
    with torch.no_grad():
        crit.centers["global"].centers.copy_(torch.arange(18.0).reshape(6, 3) / 10)
    params = list(crit.center_parameters())
    assert len(params) == 1 and params[0] is crit.centers["global"].centers
    total, _ = crit(outputs, PIDS)
    total.backward()
    feat = outputs["global"].feat.detach().float()
    centers = params[0].detach()
    # d L_center / d c_y = -(2 / B) sum_{i: y_i = y} (f_i - c_y); classes 1, 3, 5 are absent -> 0
    unweighted = torch.zeros(6, 3)
    for i, y in enumerate(PIDS.tolist()):
        unweighted[y] -= 2.0 / len(PIDS) * (feat[i] - centers[y])
    # before: only the weighted loss 0.0005 * L_center reaches the centers
    torch.testing.assert_close(params[0].grad, 0.0005 * unweighted)
    crit.rescale_center_grads()
    torch.testing.assert_close(params[0].grad, unweighted)
    # the features' gradient is left alone
    assert outputs["global"].feat.grad is not None


def test_rescale_center_grads_without_grad_is_a_no_op():
    crit = Criterion(BOT_TERMS, NUM_CLASSES, {"global": 3})
    crit.rescale_center_grads()  # no backward yet: grad is None
    assert crit.centers["global"].centers.grad is None


# ------------------------------------------------------------------------------------------------
# loss.ramp_epochs: the non-global branches ramped in
# ------------------------------------------------------------------------------------------------


def test_ramp_factor_per_epoch():
    # min(1, e / N), 1-based e: N = 4 -> 1/4, 2/4, 3/4, 1, 1
    assert [ramp_factor(e, 4) for e in range(1, 6)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert [ramp_factor(e, 0) for e in (1, 2, 50)] == [1.0, 1.0, 1.0]  # 0: off (the papers)
    assert ramp_factor(1, 1) == 1.0
    with pytest.raises(ValueError, match="epoch"):
        ramp_factor(0, 4)


def test_criterion_ramps_every_non_global_term_and_only_those():
    branches = {"global": 3, "drop": 3}
    terms = [
        LossTerm("global", "ce"),
        LossTerm("global", "triplet"),
        LossTerm("drop", "ce", 0.5),
        LossTerm("drop", "triplet"),
        LossTerm("drop", "center", 5e-4),
    ]
    outputs = _outputs(branches, batch=len(PIDS), seed=9)
    plain = Criterion(terms, NUM_CLASSES, branches, ramp_epochs=0)
    ramped = Criterion(terms, NUM_CLASSES, branches, ramp_epochs=3)
    ramped.load_state_dict(plain.state_dict())  # same centers
    _, ref = plain(outputs, PIDS)
    for epoch, factor in [(1, 1 / 3), (2, 2 / 3), (3, 1.0), (7, 1.0)]:
        ramped.set_epoch(epoch)
        total, logs = ramped(outputs, PIDS)
        for name in ("global/ce", "global/triplet"):
            torch.testing.assert_close(logs[name], ref[name])
        for name in ("drop/ce", "drop/triplet", "drop/center"):
            torch.testing.assert_close(logs[name], factor * ref[name])
        expected = ref["global/ce"] + ref["global/triplet"]
        expected = expected + factor * (ref["drop/ce"] + ref["drop/triplet"] + ref["drop/center"])
        torch.testing.assert_close(total.detach(), expected)
    groups = ramped.branch_losses(outputs, PIDS)
    assert list(groups) == ["global", "drop"]
    torch.testing.assert_close(
        groups["drop"].detach(), ref["drop/ce"] + ref["drop/triplet"] + ref["drop/center"]
    )


def test_rescale_center_grads_undoes_the_ramped_weight():
    branches = {"global": 3, "ms": 3}
    terms = [LossTerm("global", "ce"), LossTerm("ms", "center", 0.5)]
    outputs = _outputs(branches, batch=len(PIDS), seed=2)
    grads = []
    for ramp, epoch in [(0, 1), (4, 1)]:
        torch.manual_seed(0)
        crit = Criterion(terms, NUM_CLASSES, branches, ramp_epochs=ramp)
        crit.set_epoch(epoch)
        total, _ = crit(outputs, PIDS)
        total.backward()
        crit.rescale_center_grads()
        grads.append(crit.centers["ms"].centers.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])  # the centers move as fast with and without a ramp


def test_bad_ramp_epochs_is_named():
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="ramp_epochs"):
            Criterion(BOT_TERMS, NUM_CLASSES, {"global": 3}, ramp_epochs=bad)


# ------------------------------------------------------------------------------------------------
# Criterion errors
# ------------------------------------------------------------------------------------------------


def test_criterion_missing_branch_names_it_and_the_present_ones():
    crit = Criterion(SEN_TERMS, NUM_CLASSES, {"global": 8})
    outputs = _outputs({"global": 8, "ms": 8}, batch=len(PIDS))
    with pytest.raises(ValueError, match=r"\['bs'\].*\['global', 'ms'\]"):
        crit(outputs, PIDS)


def test_criterion_one_identity_raises():
    crit = Criterion(BOT_TERMS, NUM_CLASSES, {"global": 4})
    outputs = _outputs({"global": 4}, batch=4)
    with pytest.raises(ValueError, match="pids"):
        crit(outputs, torch.tensor([1, 1, 1, 1]))


def test_loss_term_validation():
    with pytest.raises(ValueError, match="kind"):
        LossTerm("global", "arcface")
    with pytest.raises(ValueError, match="weight"):
        LossTerm("global", "ce", 0.0)
    with pytest.raises(ValueError, match="weight"):
        LossTerm("global", "ce", -1.0)
    with pytest.raises(ValueError, match="weight"):
        LossTerm("global", "ce", float("nan"))
    with pytest.raises(ValueError, match="branch"):
        LossTerm("", "ce")


def test_criterion_construction_errors():
    with pytest.raises(ValueError, match="terms"):
        Criterion([], NUM_CLASSES, {})
    with pytest.raises(ValueError, match="twice"):
        Criterion([LossTerm("global", "ce"), LossTerm("global", "ce", 0.5)], NUM_CLASSES, {})
    with pytest.raises(ValueError, match="feat_dims.*'global'"):
        Criterion(BOT_TERMS, NUM_CLASSES, {"drop": 4})
    with pytest.raises(ValueError, match="num_classes"):
        Criterion(BOT_TERMS, 0, {"global": 4})
    with pytest.raises(ValueError, match="triplet_margin"):
        Criterion(BOT_TERMS, NUM_CLASSES, {"global": 4}, triplet_margin=-1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        Criterion(BOT_TERMS, NUM_CLASSES, {"global": 4}, label_smoothing=1.5)


def test_triplet_half_precision_is_computed_in_float32():
    # float16 squared norms of these features (|f|^2 = 4 * 300^2 = 360000) overflow float16 (max 65504)
    feats = FOUR_POINTS.repeat(1, 2) * 0 + 300.0
    feats[:, :2] += FOUR_POINTS  # identity offsets as in FOUR_POINTS -> same distances as by hand
    loss = batch_hard_triplet(feats.half(), FOUR_PIDS, margin=0.3)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(6.9 / 4, rel=1e-3)


def test_unchecked_terms_give_the_same_loss_and_check_labels_catches_what_they_skip():
    """The engine runs the terms with check_inputs=False (no GPU sync) and checks labels on the CPU."""
    outputs = _outputs({"global": 8, "bs": 8, "ms": 8}, batch=len(PIDS))
    checked = Criterion(SEN_TERMS, NUM_CLASSES, {"global": 8})
    unchecked = Criterion(SEN_TERMS, NUM_CLASSES, {"global": 8}, check_inputs=False)
    unchecked.load_state_dict(checked.state_dict())
    assert torch.equal(checked(outputs, PIDS)[0], unchecked(outputs, PIDS)[0])
    with pytest.raises(ValueError, match="must lie in"):
        unchecked.check_labels(torch.tensor([0, 0, NUM_CLASSES, NUM_CLASSES]))
    with pytest.raises(ValueError, match="at least 2 images"):
        unchecked.check_labels(torch.tensor([0, 0, 1, 2]))
    ce_only = Criterion([LossTerm("global", "ce")], NUM_CLASSES, {"global": 8}, check_inputs=False)
    ce_only.check_labels(torch.tensor([0, 1, 2, 3]))  # no triplet term: single images are fine
