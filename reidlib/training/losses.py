"""Training losses: label-smoothed ID loss, batch-hard triplet loss, center loss, and their weighted sum.

The three losses are small functions of tensors (plus :class:`CenterLoss`, which owns the learnable
centers). :class:`Criterion` combines them from a list of :class:`LossTerm` (data, not code); the
papers' term lists (SEN eq. 10, Deep Miner eq. 2, BoT, Batch DropBlock) are the ``loss.terms`` of their
recipes in ``reidlib/recipes``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidlib.config import LossTerm
from reidlib.models.outputs import BranchOutput

# the branch every network has and no ramp touches (Criterion ramp_epochs)
GLOBAL_BRANCH = "global"

# Squared distances are clamped to this before the square root, so that the gradient of sqrt stays
# finite (1 / (2 * 1e-6)) when two features coincide.
_MIN_SQUARED_DISTANCE = 1e-12


# ---------------------------------------------------------------------------------------------------
# Input checks shared by the losses
# ---------------------------------------------------------------------------------------------------


def _check_batch(name: str, x: Tensor, pids: Tensor, pids_name: str) -> None:
    """``x`` must be a (B, D) float tensor and ``pids`` a (B,) integer tensor."""
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, D) tensor, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not isinstance(pids, Tensor) or pids.dim() != 1:
        shape = tuple(pids.shape) if isinstance(pids, Tensor) else type(pids).__name__
        raise ValueError(f"{pids_name} must be a (B,) tensor of identity labels, got {shape}")
    if pids.is_floating_point() or pids.is_complex() or pids.dtype == torch.bool:
        raise ValueError(f"{pids_name} must be an integer tensor, got dtype {pids.dtype}")
    if pids.numel() != x.shape[0]:
        raise ValueError(
            f"{pids_name} has {pids.numel()} labels but {name} has {x.shape[0]} rows (batch size B)"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")


def _check_label_range(pids: Tensor, num_classes: int, pids_name: str) -> None:
    lo, hi = int(pids.min()), int(pids.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{pids_name} must lie in [0, {num_classes - 1}] (num_classes = {num_classes}), "
            f"got values in [{lo}, {hi}]"
        )


# ---------------------------------------------------------------------------------------------------
# ID loss
# ---------------------------------------------------------------------------------------------------


def cross_entropy_label_smooth(
    logits: Tensor, targets: Tensor, epsilon: float = 0.1, *, check: bool = True
) -> Tensor:
    """Cross-entropy against label-smoothed targets, averaged over the batch (SEN eqs. 6-7, DM eqs. 3-4).

    With N classes the target distribution is q_i = 1 - eps * (N - 1) / N for the true class and
    q_i = eps / N for every other class; the loss is -sum_i q_i log p_i, p = softmax(logits), and the
    batch mean is returned. ``epsilon = 0`` is plain cross-entropy. ``check=False`` skips the
    label-range check, which reads the labels back from the device (the engine checks them on the CPU).
    """
    _check_batch("logits", logits, targets, "targets")
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must lie in [0, 1), got {epsilon}")
    num_classes = logits.shape[1]
    if check:
        _check_label_range(targets, num_classes, "targets")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # softmax over hundreds of classes in half precision loses digits
    log_probs = F.log_softmax(logits, dim=1)  # (B, N)
    q = torch.full_like(log_probs, epsilon / num_classes)  # (B, N)
    # eps/N + (1 - eps) = 1 - eps (N-1)/N on the true class
    q.scatter_add_(1, targets.long()[:, None], torch.full_like(log_probs[:, :1], 1.0 - epsilon))
    return -(q * log_probs).sum(dim=1).mean()


# ---------------------------------------------------------------------------------------------------
# Triplet loss
# ---------------------------------------------------------------------------------------------------


def euclidean_distmat(x: Tensor, y: Tensor) -> Tensor:
    """Euclidean distances between the rows of ``x`` (M, D) and ``y`` (N, D) -> (M, N).

    Uses ||x||^2 + ||y||^2 - 2 x.y (one matrix product, no (M, N, D) tensor), clamped at 1e-12
    before the square root so the gradient stays finite where two rows coincide. Half-precision
    inputs are computed in float32, also under autocast: squared norms of 2048-d features overflow
    float16, and the expansion cancels digits.
    """
    if x.dtype in (torch.float16, torch.bfloat16) or y.dtype in (torch.float16, torch.bfloat16):
        x, y = x.float(), y.float()
    with torch.autocast(device_type=x.device.type, enabled=False):
        xx = x.pow(2).sum(dim=1, keepdim=True)  # (M, 1)
        yy = y.pow(2).sum(dim=1, keepdim=True).t()  # (1, N)
        d2 = xx + yy - 2.0 * (x @ y.t())  # (M, N)
        return d2.clamp(min=_MIN_SQUARED_DISTANCE).sqrt()


def _check_pk_batch(pids: Tensor) -> None:
    """Batch-hard mining needs >= 2 identities and >= 2 images of every identity in the batch."""
    uniq, counts = torch.unique(pids, return_counts=True)
    if uniq.numel() < 2:
        raise ValueError(
            f"pids: batch-hard triplet loss needs at least 2 identities in the batch (a negative "
            f"for every anchor), got {uniq.numel()} (pids = {pids.tolist()}); sample P x K batches"
        )
    lonely = uniq[counts < 2]
    if lonely.numel() > 0:
        raise ValueError(
            f"pids: batch-hard triplet loss needs at least 2 images of every identity in the batch "
            f"(a positive for every anchor); identities with one image: {lonely.tolist()}; "
            f"sample P x K batches with K >= 2"
        )


def hardest_pairs(feats: Tensor, pids: Tensor, *, check: bool = True) -> tuple[Tensor, Tensor]:
    """For each anchor, the distance to its hardest positive and to its hardest negative.

    Returns (d_ap, d_an), each (B,): d_ap = max over the other images of the anchor's identity (the
    anchor itself excluded), d_an = min over the images of the other identities. Euclidean distances.
    """
    _check_batch("feats", feats, pids, "pids")
    if check:
        _check_pk_batch(pids)
    distmat = euclidean_distmat(feats, feats)  # (B, B)
    same = pids[:, None] == pids[None, :]  # (B, B)
    eye = torch.eye(len(pids), dtype=torch.bool, device=feats.device)
    pos_mask = same & ~eye
    d_ap = distmat.masked_fill(~pos_mask, float("-inf")).amax(dim=1)  # (B,)
    d_an = distmat.masked_fill(same, float("inf")).amin(dim=1)  # (B,)
    return d_ap, d_an


def batch_hard_triplet(
    feats: Tensor, pids: Tensor, margin: float | None = 0.3, *, check: bool = True
) -> Tensor:
    """Batch-hard triplet loss (Hermans et al.; SEN eq. 8), or its soft-margin form (Deep Miner eq. 5).

    For every anchor a of the P x K batch: d_ap = distance to the farthest image of the same identity,
    d_an = distance to the closest image of another identity (Euclidean, :func:`hardest_pairs`).

    - ``margin`` a number: mean over anchors of max(d_ap - d_an + margin, 0) (SEN eq. 8).
    - ``margin=None``: mean over anchors of softplus(d_ap - d_an) = log(1 + exp(d_ap - d_an)).
      Deep Miner eq. 5 writes a SUM over the P*K anchors; reidlib takes the MEAN, as common
      implementations do, so the soft-margin term has the same per-anchor scale as the batch-mean
      ID loss and the hinge form, and the unit weights of eq. 2 keep their meaning whatever the
      batch size (a sum would weigh the triplet term 64 times more than CE at P x K = 16 x 4;
      docs/reading-the-papers.md#deep-miner-losses).

    Raises ValueError when ``pids`` has fewer than 2 identities, or an identity with a single image
    (every anchor needs a positive and a negative).
    """
    if margin is not None and not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"margin must be a finite number >= 0 or None (soft margin), got {margin}")
    d_ap, d_an = hardest_pairs(feats, pids, check=check)
    if margin is None:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(d_ap - d_an + margin).mean()


# ---------------------------------------------------------------------------------------------------
# Center loss
# ---------------------------------------------------------------------------------------------------


class CenterLoss(nn.Module):
    """Center loss (Wen et al.; SEN eq. 9, Deep Miner eq. 6) with BoT's normalisation.

    forward(feats, pids) = (1 / B) * sum_i ||f_i - c_{y_i}||^2, the batch MEAN of squared Euclidean
    distances to the identity centers, WITHOUT the factor 1/2. The papers write 1/2 * sum over the
    batch; reidlib follows BoT (Luo et al.), whose implementation returns the batch mean, because the
    weight 0.0005 that both papers use was tuned at that scale. (BoT also clamps the distances to
    [1e-12, 1e12]; that guards a square root that is not taken here, so reidlib does not clamp.)

    ``centers`` (num_classes, feat_dim) start as standard normal samples. They are meant to be trained
    by their own optimiser (BoT: SGD, lr 0.5) after :meth:`Criterion.rescale_center_grads`.
    """

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        if not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not (isinstance(feat_dim, int) and feat_dim > 0):
            raise ValueError(f"feat_dim must be a positive int, got {feat_dim!r}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, feats: Tensor, pids: Tensor, *, check: bool = True) -> Tensor:
        _check_batch("feats", feats, pids, "pids")
        if feats.shape[1] != self.feat_dim:
            raise ValueError(
                f"feats has dimension {feats.shape[1]} but the centers have feat_dim = {self.feat_dim}"
            )
        if check:
            _check_label_range(pids, self.num_classes, "pids")
        diff = feats - self.centers[pids.long()]  # (B, D)
        return diff.pow(2).sum(dim=1).mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}"


# ---------------------------------------------------------------------------------------------------
# Weighted sum of terms
# ---------------------------------------------------------------------------------------------------


class Criterion(nn.Module):
    """The total training loss: sum over ``terms`` of weight * loss.

    - "ce": :func:`cross_entropy_label_smooth` of the branch's logits (eps = ``label_smoothing``).
    - "triplet": :func:`batch_hard_triplet` of the branch's ``feat`` (``triplet_margin``; None selects
      the soft-margin form of Deep Miner eq. 5).
    - "center": the branch's own :class:`CenterLoss` on ``feat``; its dimension is ``feat_dims[branch]``.

    ``forward(outputs, pids)`` returns ``(total, logs)``: ``total`` the weighted sum (a tensor to
    backpropagate), ``logs`` a dict of detached 0-d tensors with each WEIGHTED term under "branch/kind"
    (e.g. "global/ce", "ms/ce", "global/triplet", "global/center") and their sum under "total". They
    stay on the device so the training loop can average them without a GPU sync per iteration.

    The centers are trained by a separate optimiser (BoT convention,
    docs/reading-the-papers.md#shared-center-loss-at-bots-scale): give it
    :meth:`center_parameters`, and call :meth:`rescale_center_grads` between ``backward()`` and its
    ``step()``. ``check_inputs=False`` skips the per-term label checks (each reads the labels back
    from the GPU); then call :meth:`check_labels` on the CPU batch instead.

    ``ramp_epochs`` N > 0 ramps every term of the branches other than "global" in over the first N
    epochs: at (1-based) epoch e its weight is ``weight * ramp_factor(e, N)`` = weight * min(1, e / N),
    the convention of the learning-rate warm-up (epoch 1 at 1/N, full weight from epoch N on). The
    engine calls :meth:`set_epoch` before each epoch; the factor depends on the epoch alone, so a
    resumed run weighs every epoch as the uninterrupted one. N = 0 (default) is the papers' setting.
    """

    def __init__(
        self,
        terms: Sequence[LossTerm],
        num_classes: int,
        feat_dims: Mapping[str, int],
        *,
        label_smoothing: float = 0.1,
        triplet_margin: float | None = 0.3,
        check_inputs: bool = True,
        ramp_epochs: int = 0,
    ) -> None:
        super().__init__()
        terms = tuple(terms)
        if not terms:
            raise ValueError("terms is empty: a Criterion needs at least one LossTerm")
        seen: set[str] = set()
        for term in terms:
            if not isinstance(term, LossTerm):
                raise ValueError(f"terms must hold LossTerm objects, got {term!r}")
            if term.name in seen:
                raise ValueError(f"terms names {term.name!r} twice; each (branch, kind) may appear once")
            seen.add(term.name)
        if not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        if triplet_margin is not None and not (triplet_margin >= 0 and math.isfinite(triplet_margin)):
            raise ValueError(f"triplet_margin must be a finite number >= 0 or None, got {triplet_margin}")
        if isinstance(ramp_epochs, bool) or not isinstance(ramp_epochs, int) or ramp_epochs < 0:
            raise ValueError(f"ramp_epochs must be an integer >= 0 (0 = no ramp), got {ramp_epochs!r}")
        self.terms = terms
        self.ramp_epochs = ramp_epochs
        self.branch_factor = 1.0  # ramp factor of the non-global terms this epoch (set_epoch)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.triplet_margin = triplet_margin
        self.check_inputs = check_inputs
        self.centers = nn.ModuleDict()
        for term in terms:
            if term.kind != "center":
                continue
            if term.branch not in feat_dims:
                raise ValueError(
                    f"feat_dims has no entry for branch {term.branch!r} (needed by its center loss); "
                    f"feat_dims names {sorted(feat_dims)}"
                )
            self.centers[term.branch] = CenterLoss(num_classes, int(feat_dims[term.branch]))

    def check_labels(self, pids: Tensor) -> None:
        """The value checks of every term, done once on ``pids`` where they live (the CPU batch in
        the engine), so the terms can run with ``check_inputs=False`` and never wait for the GPU."""
        _check_label_range(pids, self.num_classes, "pids")
        if any(t.kind == "triplet" for t in self.terms):
            _check_pk_batch(pids)

    def set_epoch(self, epoch: int) -> None:
        """Weigh the non-global terms for (1-based) ``epoch``: factor :func:`ramp_factor`."""
        self.branch_factor = ramp_factor(epoch, self.ramp_epochs)

    def term_weight(self, term: LossTerm) -> float:
        """The weight ``term`` trains with now: its recipe weight, times the ramp off "global"."""
        return term.weight * (1.0 if term.branch == GLOBAL_BRANCH else self.branch_factor)

    def center_parameters(self) -> Iterator[nn.Parameter]:
        """The learnable centers, for their own optimiser (empty when no term is a center loss)."""
        return self.centers.parameters()

    @torch.no_grad()
    def rescale_center_grads(self) -> None:
        """Multiply each branch's center gradient by 1 / weight of its center term (BoT convention);
        under a ramp, by 1 / the ramped weight, so the ramp slows the features' pull, not the centers.

        The loss weight (0.0005) is meant to scale the centers' pull on the FEATURES only; undoing it on
        the centers' own gradient lets them move at the rate set by their optimiser (SGD lr 0.5). Call
        once per iteration, after ``backward()`` and before the center optimiser's ``step()``.
        """
        for term in self.terms:
            if term.kind != "center":
                continue
            centers = self.centers[term.branch].centers
            if centers.grad is not None:
                centers.grad.mul_(1.0 / self.term_weight(term))  # the ramped weight under a ramp

    def forward(self, outputs: Mapping[str, BranchOutput], pids: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        logs: dict[str, Tensor] = {}
        for term, weighted in self.weighted_terms(outputs, pids):
            logs[term.name] = weighted.detach()
            total = weighted if total is None else total + weighted
        assert total is not None  # terms is non-empty
        logs["total"] = total.detach()
        return total, logs

    def weighted_terms(
        self, outputs: Mapping[str, BranchOutput], pids: Tensor
    ) -> list[tuple[LossTerm, Tensor]]:
        """Each term with its weighted value (a tensor in the graph), in ``terms`` order."""
        missing = sorted({t.branch for t in self.terms if t.branch not in outputs})
        if missing:
            raise ValueError(
                f"the loss terms name branch(es) {missing} that the model outputs do not have; "
                f"outputs has branches {list(outputs)} (recipe and model do not match)"
            )
        out = []
        for term in self.terms:
            o = outputs[term.branch]
            if term.kind == "ce":
                value = cross_entropy_label_smooth(
                    o.logits, pids, self.label_smoothing, check=self.check_inputs
                )
            elif term.kind == "triplet":
                value = batch_hard_triplet(o.feat, pids, self.triplet_margin, check=self.check_inputs)
            else:
                value = self.centers[term.branch](o.feat, pids, check=self.check_inputs)
            out.append((term, self.term_weight(term) * value))
        return out

    def branch_losses(self, outputs: Mapping[str, BranchOutput], pids: Tensor) -> dict[str, Tensor]:
        """The weighted sum of each branch's terms (its loss group), in order of first appearance."""
        groups: dict[str, Tensor] = {}
        for term, weighted in self.weighted_terms(outputs, pids):
            groups[term.branch] = groups[term.branch] + weighted if term.branch in groups else weighted
        return groups

    def extra_repr(self) -> str:
        terms = ", ".join(f"{t.weight:g}*{t.name}" for t in self.terms)
        margin = "soft" if self.triplet_margin is None else f"{self.triplet_margin:g}"
        ramp = f", ramp_epochs={self.ramp_epochs}" if self.ramp_epochs else ""
        return f"terms=[{terms}], label_smoothing={self.label_smoothing:g}, triplet_margin={margin}{ramp}"


def ramp_factor(epoch: int, ramp_epochs: int) -> float:
    """min(1, epoch / ramp_epochs) for a 1-based ``epoch``; 1 when ``ramp_epochs`` is 0 (no ramp)."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"epoch must be an integer >= 1 (1-based), got {epoch!r}")
    return 1.0 if ramp_epochs == 0 else min(1.0, epoch / ramp_epochs)
