"""Where an erasing mask falls on the person: the papers' claims as numbers.

SEN says M1 (eq. 3) erases background and M2 (eq. 5) the most salient body parts; Deep Miner says
ErO (eq. 1) erases the most discriminative part of the person. With a silhouette per image (the
synthetic set knows it: ``reidlib.data.datasets.synthetic.person_masks``) each claim becomes a share:
of the cells a mask erases, how many lie on the person, against what a mask that erased the same
number of cells at random in each image would get (the chance share).

:func:`erasing_inputs` gives the feature maps the masks read from any of the four networks, and
:func:`erased_where` where on the grid a batch of masks erases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib import erasing
from reidlib.evaluation.chance import verdict
from reidlib.models import ReIDNetwork


def cell_coverage(person: Tensor, grid: tuple[int, int]) -> Tensor:
    """(N, H, W) pixel coverage -> (N, h, w): the person's share of each feature-map cell's pixels
    (each cell of an h x w map covers an (H/h) x (W/w) block of the input)."""
    if person.dim() != 3:
        raise ValueError(f"person masks: expected (N, H, W), got shape {tuple(person.shape)}")
    return F.adaptive_avg_pool2d(person.float().unsqueeze(1), grid).squeeze(1)


@dataclass(frozen=True)
class Placement:
    """Of the erased cells of a set of images: how many, and which share lies on the person."""

    images: int
    erased_per_image: float
    on_person: float  # share of erased cells that are person cells
    chance_on_person: float  # expected share for the same number of cells erased at random per image
    z_on_person: float = float("nan")  # (observed - expected) / sd of the person-cell count at random

    @property
    def on_background(self) -> float:
        return 1.0 - self.on_person

    @property
    def chance_on_background(self) -> float:
        return 1.0 - self.chance_on_person


def placement(keep: Tensor, coverage: Tensor, threshold: float = 0.5) -> Placement:
    """Where the erased cells of ``keep`` (N, 1, h, w), 0 = erased, fall; a cell is a person cell when
    ``coverage`` (N, h, w) is at least ``threshold``. Chance: sum_i k_i p_i / sum_i k_i for k_i erased
    cells in image i and p_i its share of person cells.

    At random, image i's count of erased person cells is hypergeometric (k_i draws from n cells of which
    m_i are the person's): mean k_i m_i / n, variance k_i (m_i / n)(1 - m_i / n)(n - k_i) / (n - 1). The
    images are independent, so ``z_on_person`` is the observed count's distance from the summed mean in
    standard deviations of the summed variance.
    """
    if (
        keep.dim() != 4
        or keep.shape[1] != 1
        or keep.shape[0] != coverage.shape[0]
        or keep.shape[2:] != coverage.shape[1:]
    ):
        raise ValueError(f"keep-mask {tuple(keep.shape)} does not fit coverage {tuple(coverage.shape)}")
    erased = keep[:, 0] == 0
    person = coverage >= threshold
    k = erased.flatten(1).sum(1).double()  # (N,)
    p = person.flatten(1).double().mean(1)  # (N,)
    total = float(k.sum())
    if total == 0:
        nan = float("nan")
        return Placement(keep.shape[0], 0.0, nan, nan)
    n = erased[0].numel()
    observed = float((erased & person).sum())
    expected = float((k * p).sum())
    variance = float((k * p * (1 - p) * (n - k) / max(n - 1, 1)).sum())
    return Placement(
        images=keep.shape[0],
        erased_per_image=total / keep.shape[0],
        on_person=observed / total,
        chance_on_person=expected / total,
        z_on_person=(observed - expected) / variance**0.5 if variance > 0 else float("nan"),
    )


def placement_rows(
    masks: dict[str, Tensor], coverage_of: dict[tuple[int, int], Tensor], claims: dict[str, str]
) -> list[dict[str, object]]:
    """One row per mask: its claim (``person`` or ``background``), the observed and chance shares of
    erased cells there, their ratio, the z-score of the observed count on the claim and the
    :func:`verdict`. ``coverage_of`` maps each grid size to its coverage."""
    rows = []
    for name, keep in masks.items():
        where = placement(keep, coverage_of[tuple(keep.shape[2:])])
        claim = claims[name]
        observed = where.on_person if claim == "person" else where.on_background
        chance = where.chance_on_person if claim == "person" else where.chance_on_background
        z = where.z_on_person if claim == "person" else -where.z_on_person  # background = not person
        rows.append(
            {
                "mask": name,
                "grid": f"{keep.shape[2]}x{keep.shape[3]}",
                "claim": claim,
                "erased_per_image": round(where.erased_per_image, 2),
                "observed_share": round(100 * observed, 1),
                "chance_share": round(100 * chance, 1),
                "ratio_to_chance": round(observed / chance, 2) if chance > 0 else float("nan"),
                "images": where.images,
                "z": round(z, 2),
                "verdict": verdict(z),
            }
        )
    return rows


def coverage_by_grid(person: Tensor, grids: list[tuple[int, int]]) -> dict[tuple[int, int], Tensor]:
    return {tuple(g): cell_coverage(person, tuple(g)) for g in grids}


def erased_counts(masks: Tensor | np.ndarray) -> np.ndarray:
    """Erased positions (zeros) per image of keep-masks (B, 1, h, w) or (B, h, w)."""
    m = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    return (m.reshape(m.shape[0], -1) == 0).sum(axis=1)


def erased_where(masks: Tensor | np.ndarray) -> pd.DataFrame:
    """Where a batch of keep-masks (B, 1, h, w) or (B, h, w) erases, summed over the images.

    One row per feature-map column and per row of the grid (``axis``, ``index``): the share of all
    erased positions that fall there (``erased_share``) and the share of the grid it covers
    (``grid_share``, 1/w or 1/h), so a mask that picked cells at random would have equal shares; plus
    the same two numbers for the grid's border cells (``axis="border"``, ``index``: how many there are).
    This is how one sees over many images whether SEN's M1 erases background (the border columns of a
    pedestrian crop) or the person.
    """
    m = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    erased = (m[:, 0] if m.ndim == 4 else m) == 0  # (B, h, w)
    total = max(int(erased.sum()), 1)
    h, w = erased.shape[1:]
    rows = [
        {"axis": "column", "index": j, "erased_share": erased[:, :, j].sum() / total, "grid_share": 1 / w}
        for j in range(w)
    ]
    rows += [
        {"axis": "row", "index": i, "erased_share": erased[:, i, :].sum() / total, "grid_share": 1 / h}
        for i in range(h)
    ]
    border = np.zeros((h, w), dtype=bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    rows.append(
        {
            "axis": "border",
            "index": int(border.sum()),
            "erased_share": erased[:, border].sum() / total,
            "grid_share": border.sum() / (h * w),
        }
    )
    return pd.DataFrame(rows)


# What each mask the notebooks draw reads: the branch that owns it, then the stand-ins a network
# without that branch offers, nearest first (feature-map keys of ReIDNetwork.feature_maps).
MASK_INPUTS = {
    "A": ("bs", "b4"),  # SEN M1 (and the grid of BDB's block)
    "B": ("ms", "drop", "b4"),  # SEN M2
    "Y2": ("ie_b2", "b2"),  # Deep Miner ErO after block 2
    "Y3": ("ie_b3", "b3"),  # ... after block 3
}


@torch.no_grad()
def erasing_inputs(model: ReIDNetwork, images: Tensor) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The feature maps the four masks are computed from (eval mode), and a line saying where each
    comes from.

    Keys of :data:`MASK_INPUTS`: ``A`` (SEN's M1 input), ``B`` (SEN's M2 input), ``Y2``, ``Y3`` (Deep
    Miner's ErO inputs). A network without the owning branch gives its nearest stand-in, and the line
    says so.
    """
    was_training = model.training
    model.eval()
    try:
        maps = model.feature_maps(images)
    finally:
        model.train(was_training)
    name = type(model).__name__
    feats, sources = {}, {}
    for role, keys in MASK_INPUTS.items():
        key = next(k for k in keys if k in maps)
        feats[role] = maps[key]
        sources[role] = f"{name} {key!r}: {model.describe_map(key)}"
        if key != keys[0]:
            sources[role] += f" (it has no {keys[0]!r} branch: a stand-in)"
    return feats, sources


# What each paper says its mask erases (the claim its placement is read against).
CLAIMS = {"M1": "background", "M2": "person", "ErO Y2": "person", "ErO Y3": "person"}


def masks_for(feats: dict[str, Tensor], *, r1: float, r2: float, tau: float, p: float) -> dict[str, Tensor]:
    """SEN's M1 (eq. 3) on A and M2 (eq. 5) on B, Deep Miner's ErO (eq. 1) on Y2 and Y3: the keep-masks
    of :func:`erasing_inputs`' maps for one setting, keyed as :data:`CLAIMS`."""
    return {
        "M1": erasing.low_activation_mask(feats["A"], r1, p),
        "M2": erasing.top_activation_mask(feats["B"], r2, p),
        "ErO Y2": erasing.minmax_threshold_mask(feats["Y2"], tau),
        "ErO Y3": erasing.minmax_threshold_mask(feats["Y3"], tau),
    }


def masks_of(
    model: ReIDNetwork, images: Tensor, *, r1: float, r2: float, tau: float, p: float
) -> dict[str, Tensor]:
    """:func:`masks_for` on ``model``'s own maps of ``images`` (:func:`erasing_inputs`)."""
    feats, _ = erasing_inputs(model, images)
    return masks_for(feats, r1=r1, r2=r2, tau=tau, p=p)


def placement_of(masks: dict[str, Tensor], person: Tensor) -> list[dict[str, object]]:
    """:func:`placement_rows` of ``masks`` (keyed as :data:`CLAIMS`) against the silhouettes ``person``
    (N, H, W) of the same images, each mask read on its own grid."""
    coverage = coverage_by_grid(person, [tuple(m.shape[-2:]) for m in masks.values()])
    return placement_rows(masks, coverage, CLAIMS)


def placement_sentence(row: dict[str, object]) -> str:
    """One :func:`placement_rows` row as a sentence with its verdict, e.g. "**M1** erases the background
    in 42 % of its cells, against 77 % for random cells: below chance (z = -9.1)."."""
    return (
        f"**{row['mask']}** ({row['erased_per_image']:g} cells per image on the {row['grid']} grid) erases "
        f"the {row['claim']} in {row['observed_share']:.0f} % of its cells, against "
        f"{row['chance_share']:.0f} % for random cells: {row['verdict']} chance (z = {row['z']:+.1f})."
    )
