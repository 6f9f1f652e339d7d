"""Where an erasing mask falls on the person: the papers' claims as numbers.

SEN says M1 (eq. 3) erases background and M2 (eq. 5) the most salient body parts; Deep Miner says
ErO (eq. 1) erases the most discriminative part of the person. With a silhouette per image (the
synthetic set knows it: ``reidlib.data.datasets.synthetic.person_masks``) each claim becomes a share:
of the cells a mask erases, how many lie on the person, against what a mask that erased the same
number of cells at random in each image would get (the chance share).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


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

    @property
    def on_background(self) -> float:
        return 1.0 - self.on_person

    @property
    def chance_on_background(self) -> float:
        return 1.0 - self.chance_on_person


def placement(keep: Tensor, coverage: Tensor, threshold: float = 0.5) -> Placement:
    """Where the erased cells of ``keep`` (N, 1, h, w), 0 = erased, fall; a cell is a person cell when
    ``coverage`` (N, h, w) is at least ``threshold``. Chance: sum_i k_i p_i / sum_i k_i for k_i erased
    cells in image i and p_i its share of person cells."""
    if keep.dim() != 4 or keep.shape[1] != 1 or keep.shape[0] != coverage.shape[0] \
            or keep.shape[2:] != coverage.shape[1:]:
        raise ValueError(f"keep-mask {tuple(keep.shape)} does not fit coverage {tuple(coverage.shape)}")
    erased = keep[:, 0] == 0
    person = coverage >= threshold
    k = erased.flatten(1).sum(1).double()  # (N,)
    p = person.flatten(1).double().mean(1)  # (N,)
    total = float(k.sum())
    if total == 0:
        nan = float("nan")
        return Placement(keep.shape[0], 0.0, nan, nan)
    return Placement(
        images=keep.shape[0],
        erased_per_image=total / keep.shape[0],
        on_person=float((erased & person).sum()) / total,
        chance_on_person=float((k * p).sum()) / total,
    )


def placement_rows(masks: dict[str, Tensor], coverage_of: dict[tuple[int, int], Tensor],
                   claims: dict[str, str]) -> list[dict[str, object]]:
    """One row per mask: its claim (``person`` or ``background``), the observed and chance shares of
    erased cells there, and their ratio. ``coverage_of`` maps each grid size to its coverage."""
    rows = []
    for name, keep in masks.items():
        where = placement(keep, coverage_of[tuple(keep.shape[2:])])
        claim = claims[name]
        observed = where.on_person if claim == "person" else where.on_background
        chance = where.chance_on_person if claim == "person" else where.chance_on_background
        rows.append({"mask": name, "grid": f"{keep.shape[2]}x{keep.shape[3]}", "claim": claim,
                     "erased_per_image": round(where.erased_per_image, 2),
                     "observed_share": round(100 * observed, 1), "chance_share": round(100 * chance, 1),
                     "ratio_to_chance": round(observed / chance, 2) if chance > 0 else float("nan"),
                     "images": where.images})
    return rows


def coverage_by_grid(person: Tensor, grids: list[tuple[int, int]]) -> dict[tuple[int, int], Tensor]:
    return {tuple(g): cell_coverage(person, tuple(g)) for g in grids}
