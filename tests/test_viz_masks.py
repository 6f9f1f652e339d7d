"""reidlib.viz.masks: upsampling and shading checked cell by cell by hand, feature maps against the
networks' own forward pass, and the figures (axes, labels, one hatched patch per erased cell)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from reidlib import erasing
from reidlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reidlib.evaluation import mask_placement
from reidlib.models import build_model
from reidlib.viz import masks as vmask

# ----------------------------------------------------------------------------- pure helpers


def test_upsample_2x2_mask_on_4x2_image_is_blocks():
    mask = np.array([[1, 0], [0, 1]])
    want = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])  # each row of the mask covers two image rows
    np.testing.assert_array_equal(vmask.upsample_nearest(mask, (4, 2)), want)


def test_upsample_exact_blocks_and_uneven_sizes():
    grid = np.arange(6).reshape(2, 3)
    up = vmask.upsample_nearest(grid, (4, 6))
    for y in range(4):
        for x in range(6):
            assert up[y, x] == grid[y // 2, x // 2]
    # 3 cells over 4 pixels: pixel p belongs to cell p * 3 // 4 -> 0, 0, 1, 2
    np.testing.assert_array_equal(vmask.upsample_nearest(np.array([[7, 8, 9]]), (1, 4)), [[7, 7, 8, 9]])
    with pytest.raises(ValueError, match="grid"):
        vmask.upsample_nearest(np.zeros(3), (2, 2))


@pytest.mark.parametrize(("cells", "pixels"), [(2, 4), (3, 4), (8, 128), (3, 10), (5, 5)])
def test_cell_edges_match_upsampling(cells, pixels):
    owner = vmask.upsample_nearest(np.arange(cells)[:, None], (pixels, 1))[:, 0]  # cell of each pixel
    edges = vmask.cell_edges(cells, pixels)
    assert edges[0] == 0 and edges[-1] == pixels
    for i in range(cells):
        assert list(np.nonzero(owner == i)[0]) == list(range(edges[i], edges[i + 1]))


def test_shade_erased_changes_exactly_the_erased_cells():
    rng = np.random.default_rng(0)
    image = rng.random((4, 2, 3))
    mask = np.array([[1, 1], [0, 1]])  # erases cell (1, 0): image rows 2-3, column 0
    out = vmask.shade_erased(image, mask, color=(1.0, 0.0, 0.0), alpha=0.5)
    for y in range(4):
        for x in range(2):
            if y >= 2 and x == 0:
                np.testing.assert_allclose(out[y, x], 0.5 * image[y, x] + 0.5 * np.array([1.0, 0.0, 0.0]))
            else:
                np.testing.assert_array_equal(out[y, x], image[y, x])
    assert not np.shares_memory(out, image)


def test_erased_counts():
    masks = torch.ones(3, 1, 2, 2)
    masks[0, 0, 0, 0] = 0
    masks[2] = 0
    assert mask_placement.erased_counts(masks).tolist() == [1, 0, 4]
    assert mask_placement.erased_counts(masks[:, 0].numpy()).tolist() == [1, 0, 4]


def test_erased_where_by_hand():
    # two 3x2 keep-masks; erased cells: image 0 at (0, 0) and (1, 1), image 1 at (1, 0) and (1, 1)
    masks = torch.ones(2, 1, 3, 2)
    masks[0, 0, 0, 0] = masks[0, 0, 1, 1] = masks[1, 0, 1, 0] = masks[1, 0, 1, 1] = 0
    table = mask_placement.erased_where(masks).set_index(["axis", "index"])
    share = table["erased_share"]
    assert share[("column", 0)] == pytest.approx(2 / 4) and share[("column", 1)] == pytest.approx(2 / 4)
    assert [share[("row", i)] for i in range(3)] == pytest.approx([1 / 4, 3 / 4, 0])
    # on a 3x2 grid every cell touches the border: 6 cells, all of them
    assert share[("border", 6)] == pytest.approx(1.0) and table.loc[("border", 6), "grid_share"] == 1.0
    assert table.loc[("row", 0), "grid_share"] == pytest.approx(1 / 3)
    # a 4x4 grid has 12 border cells and 4 inner ones; erase one inner and one border cell
    inner = torch.ones(1, 4, 4)
    inner[0, 1, 1] = inner[0, 0, 3] = 0
    border = mask_placement.erased_where(inner.numpy()).set_index("axis").loc["border"]
    assert border["erased_share"] == pytest.approx(0.5) and border["grid_share"] == pytest.approx(12 / 16)


def test_to_display_images_undoes_normalisation():
    pixels = torch.rand(2, 3, 4, 2)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    shown = vmask.to_display_images((pixels - mean) / std)
    assert shown.shape == (2, 4, 2, 3)
    np.testing.assert_allclose(shown, pixels.permute(0, 2, 3, 1).numpy(), atol=1e-6)


# ----------------------------------------------------------------------------- feature maps


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)


def test_erasing_inputs_of_sen_are_its_branch_inputs(images):
    torch.manual_seed(0)
    model = build_model("sen", 3, backbone="resnet18").train()
    feats, sources = mask_placement.erasing_inputs(model, images)
    assert model.training  # the mode is restored
    model.eval()
    with torch.no_grad():
        maps = model.feature_maps(images)
    torch.testing.assert_close(feats["A"], maps["bs"])
    torch.testing.assert_close(feats["B"], maps["ms"])
    torch.testing.assert_close(feats["Y2"], maps["b2"])
    assert feats["Y2"].shape == (2, 128, 8, 4) and feats["Y3"].shape == (2, 256, 4, 2)  # strides 8 and 16
    assert feats["A"].shape == (2, 512, 4, 2)  # last stride 1
    assert set(sources) == {"A", "B", "Y2", "Y3"} and "MS branch" in sources["B"]
    assert "stand-in" not in sources["A"] + sources["B"]
    assert "no 'ie_b2' branch: a stand-in" in sources["Y2"]


def test_erasing_inputs_of_baseline_and_deep_miner(images):
    torch.manual_seed(0)
    baseline = build_model("baseline", 3, backbone="resnet18")
    feats, sources = mask_placement.erasing_inputs(baseline, images)
    assert feats["B"] is feats["A"] and "no 'ms' branch" in sources["B"]
    bdb = build_model("bdb", 3, backbone="resnet18").eval()
    feats, sources = mask_placement.erasing_inputs(bdb, images)
    with torch.no_grad():
        torch.testing.assert_close(feats["B"], bdb.feature_maps(images)["drop"])
    assert "'drop'" in sources["B"] and "stand-in" in sources["B"]
    miner = build_model("deep_miner", 3, backbone="resnet18", local=False, ie_blocks=(2, 3)).eval()
    feats, sources = mask_placement.erasing_inputs(miner, images)
    with torch.no_grad():
        maps = miner.feature_maps(images)
    torch.testing.assert_close(feats["Y2"], maps["ie_b2"])
    torch.testing.assert_close(feats["A"], maps["b4"])
    assert "after sam+cham, which ErO erases" in sources["Y3"] and "stand-in" not in sources["Y3"]


# ----------------------------------------------------------------------------- figures


def _hatched(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()]


def test_overlay_grid_axes_labels_and_hatched_cells():
    rng = np.random.default_rng(0)
    shown = rng.random((2, 8, 4, 3))  # (N, H, W, 3)
    maps = rng.random((2, 4, 2))
    masks = np.ones((2, 4, 2))
    masks[0, 1, 0] = 0  # image 0: cell (1, 0) -> pixels y 2..4, x 0..2
    masks[1, 3, 1] = masks[1, 0, 0] = 0
    fig = vmask.plot_overlay_grid(
        shown,
        [
            vmask.OverlayColumn("input", "image"),
            vmask.OverlayColumn("F(A)", "map", maps),
            vmask.OverlayColumn("M", "mask", masks),
            vmask.OverlayColumn("F after", "map", maps, masks),
        ],
        ["a", "b"],
        "t",
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 8
    assert [ax.get_title() for ax in fig.axes[:4]] == ["input", "F(A)", "M", "F after"]
    assert fig.axes[0].get_ylabel() == "a" and fig.axes[4].get_ylabel() == "b"
    assert fig.axes[2].get_xlabel() == "erased 1/8" and fig.axes[6].get_xlabel() == "erased 2/8"
    (cell,) = _hatched(fig.axes[2])
    assert (cell.get_x(), cell.get_y(), cell.get_width(), cell.get_height()) == (0, 2, 2, 2)
    corners = sorted((p.get_x(), p.get_y()) for p in _hatched(fig.axes[6]))
    assert corners == [(0, 0), (2, 6)]
    assert len(_hatched(fig.axes[3])) == 1 and not _hatched(fig.axes[1])


def test_overlay_grid_rejects_bad_columns():
    shown = np.zeros((2, 8, 4, 3))
    with pytest.raises(ValueError, match="kind"):
        vmask.plot_overlay_grid(shown, [vmask.OverlayColumn("x", "heatmap", np.zeros((2, 4, 2)))])
    with pytest.raises(ValueError, match="expected 2 grids"):
        vmask.plot_overlay_grid(shown, [vmask.OverlayColumn("x", "mask", np.zeros((1, 4, 2)))])


def test_mask_sweep_axes_and_counts():
    shown = np.random.default_rng(1).random((3, 8, 4, 3))
    feat = torch.randn(3, 5, 4, 2, generator=torch.Generator().manual_seed(1))
    rows = [(f"r = {r}", vmask.grids(erasing.top_activation_mask(feat, r))) for r in (0.25, 0.5)]
    fig = vmask.plot_mask_sweep(shown, rows, "sweep", ["i0", "i1", "i2"])
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert fig.axes[0].get_ylabel() == "r = 0.25" and fig.axes[3].get_ylabel() == "r = 0.5"
    assert [ax.get_title() for ax in fig.axes[:3]] == ["i0", "i1", "i2"]
    assert all(len(_hatched(ax)) == 2 for ax in fig.axes[:3])  # floor(0.25 * 8) = 2
    assert all(ax.get_xlabel() == "erased 4/8" for ax in fig.axes[3:])
    with pytest.raises(ValueError, match="expected 3 masks"):
        vmask.plot_mask_sweep(shown, [("r", rows[0][1][:2])])


def test_mask_construction_colours_the_lowest_positions():
    score = np.array([[5.0, 1.0], [3.0, 7.0], [2.0, 8.0], [6.0, 4.0]])  # (4, 2), distinct values
    feat = torch.from_numpy(np.sqrt(score))[None, None].float()  # F^2 of one channel = score
    m1 = vmask.grids(erasing.low_activation_mask(feat, 0.25))[0]  # erases the 2 lowest: 1.0 and 2.0
    fig = vmask.plot_mask_construction(np.zeros((8, 4, 3)), [vmask.ConstructionRow("M1", score, m1)], "c")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    bars = fig.axes[1].patches
    assert [b.get_height() for b in bars] == sorted(score.ravel().tolist())
    erased = [tuple(b.get_facecolor()[:3]) for b in bars[:2]]
    kept = {tuple(b.get_facecolor()[:3]) for b in bars[2:]}
    assert erased[0] == erased[1] and erased[0] not in kept and len(kept) == 1
    assert fig.axes[0].get_ylabel() == "M1" and fig.axes[1].get_xlabel() and fig.axes[2].get_xlabel()
    with pytest.raises(ValueError, match="differ in shape"):
        vmask.plot_mask_construction(np.zeros((8, 4, 3)), [vmask.ConstructionRow("x", score, m1[:2])])
