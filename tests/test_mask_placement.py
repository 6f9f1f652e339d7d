"""Where masks fall on the person: coverage per cell and shares against chance, on hand-built
silhouettes, and the synthetic set's silhouettes against its images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlib.data.datasets import load_dataset, make_synthetic
from reidlib.data.datasets.synthetic import SyntheticDatasetError, person_masks
from reidlib.evaluation.chance import Z_THRESHOLD, verdict
from reidlib.evaluation.mask_placement import cell_coverage, placement, placement_rows


def _rectangle_person():
    """A 128 x 64 image whose person is the block rows 32..95, columns 16..47 (pixels)."""
    person = torch.zeros(1, 128, 64)
    person[0, 32:96, 16:48] = 1.0
    return person


def test_cell_coverage_of_a_known_silhouette():
    cov = cell_coverage(_rectangle_person(), (8, 4))  # cells of 16 x 16 pixels
    expected = torch.zeros(8, 4)
    expected[2:6, 1:3] = 1.0  # rows 32..95 = cells 2..5, columns 16..47 = cells 1..2
    assert torch.equal(cov[0], expected)
    half = torch.zeros(1, 128, 64)
    half[0, 0:16, 0:8] = 1.0  # half of cell (0, 0)
    assert cell_coverage(half, (8, 4))[0, 0, 0].item() == pytest.approx(0.5)


def test_shares_against_chance_by_hand():
    cov = cell_coverage(_rectangle_person(), (8, 4))  # 8 person cells of 32
    keep = torch.ones(1, 1, 8, 4)
    keep[0, 0, 2, 1] = keep[0, 0, 3, 2] = 0  # two person cells
    keep[0, 0, 0, 0] = 0  # one background cell
    where = placement(keep, cov)
    assert where.erased_per_image == 3
    assert where.on_person == pytest.approx(2 / 3)
    assert where.chance_on_person == pytest.approx(8 / 32)
    assert where.on_background == pytest.approx(1 / 3)


def test_chance_weights_each_image_by_what_it_erases():
    # image 0: all person, erases 1 cell; image 1: no person, erases 3 cells -> chance 1/4
    cov = torch.stack([torch.ones(2, 2), torch.zeros(2, 2)])
    keep = torch.ones(2, 1, 2, 2)
    keep[0, 0, 0, 0] = 0
    keep[1, 0].view(-1)[:3] = 0
    assert placement(keep, cov).chance_on_person == pytest.approx(0.25)
    assert placement(keep, cov).on_person == pytest.approx(0.25)


def test_rows_name_the_claim_and_the_ratio():
    cov = cell_coverage(_rectangle_person(), (8, 4))
    keep = torch.ones(1, 1, 8, 4)
    keep[0, 0, 0, :] = 0  # the top row: background
    rows = placement_rows({"M1": keep}, {(8, 4): cov}, {"M1": "background"})
    assert rows[0]["observed_share"] == 100.0 and rows[0]["chance_share"] == 75.0
    assert rows[0]["ratio_to_chance"] == pytest.approx(1.33, abs=0.01)


def test_the_z_score_matches_random_masks_simulated():
    # 50 images of 32 cells with person cells at random; each erases k cells. The z-score's mean and
    # sd under random erasing come from the hypergeometric formula; a simulation must agree.
    gen = torch.Generator().manual_seed(0)
    cov = (torch.rand(50, 8, 4, generator=gen) < 0.3).float()
    k = torch.tensor([3 + i % 5 for i in range(50)]).view(1, 50, 1)
    ranks = torch.rand(2000, 50, 32, generator=gen).argsort(-1).argsort(-1)  # a random order per image
    erased = (ranks < k).view(2000, 50, 1, 8, 4)  # the first k_i cells of that order
    counts = [placement((~erased[j]).float(), cov).z_on_person for j in range(2000)]
    z = torch.tensor(counts)
    assert abs(float(z.mean())) < 0.08 and abs(float(z.std()) - 1) < 0.06
    assert float((z.abs() >= Z_THRESHOLD).float().mean()) < 0.01  # "not chance" is rare at random


def test_verdicts_follow_the_documented_threshold():
    assert [verdict(z) for z in (-3.5, -2.9, 0.0, 2.9, 3.0, float("nan"))] == [
        "below",
        "at",
        "at",
        "at",
        "above",
        "at",
    ]
    cov = cell_coverage(_rectangle_person(), (8, 4))
    keep = torch.ones(20, 1, 8, 4)
    keep[:, 0, 0, :] = 0  # every image erases its top row: background, far from chance
    rows = placement_rows(
        {"M1": keep, "M2": keep}, {(8, 4): cov.expand(20, 8, 4)}, {"M1": "background", "M2": "person"}
    )
    assert rows[0]["verdict"] == "above" and rows[0]["z"] > Z_THRESHOLD
    assert rows[1]["verdict"] == "below" and rows[1]["z"] == -rows[0]["z"]


def test_a_mask_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        placement(torch.ones(1, 1, 8, 4), torch.zeros(1, 4, 8))


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = make_synthetic(tmp_path_factory.mktemp("syn") / "s", num_train_ids=8, num_test_ids=6, seed=3)
    return root, load_dataset("folder", root)


def test_silhouettes_are_where_the_person_is_drawn(tiny_set):
    root, ds = tiny_set
    records = ds.query + ds.gallery
    masks = person_masks(root, [r.path for r in records])
    assert masks.shape == (len(records), 128, 64) and 0 <= masks.min() and masks.max() <= 1
    for record, mask in zip(records, masks, strict=True):
        share = float(mask.mean())
        assert 0.04 < share < 0.6, record.path  # a figure, neither empty nor the whole crop
        cols = np.flatnonzero(mask.max(0) > 0.5)
        centre = (cols[0] + cols[-1]) / 2
        assert 10 < centre < 54, record.path  # pedestrians are centred in their crops
    # the silhouette marks pixels whose colour differs from the rest of the crop
    from PIL import Image

    image = np.asarray(Image.open(records[0].path), dtype=np.float32)
    on, off = masks[0] > 0.99, masks[0] < 0.01
    assert np.abs(image[on].mean(0) - image[off].mean(0)).max() > 10


def test_background_crops_have_no_person_and_strangers_are_refused(tiny_set, tmp_path):
    root, _ = tiny_set
    junk = sorted((root / "bounding_box_test").glob("-1_*.jpg"))
    masks = person_masks(root, junk)
    assert (masks.reshape(len(junk), -1).max(1) == 0).any()  # background-only junk crops: all 0
    with pytest.raises(SyntheticDatasetError, match="not an image of the synthetic set"):
        person_masks(root, [root / "query" / "9999_c1s1_000000_00.jpg"])
    with pytest.raises(SyntheticDatasetError, match="synthetic.json"):
        person_masks(tmp_path, [])
