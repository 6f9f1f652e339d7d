"""Tests of reidlib.erasing on hand-built feature maps, against expectations derived by hand.

References are written from the definitions (docs/reading-the-papers.md#shared-keep-masks; SEN eqs. 1, 3, 5;
Deep Miner eq. 1; Batch DropBlock), never from numbers the code under test produces. Counts use exact decimal
arithmetic (``fractions.Fraction``) so a float slip such as 0.29 * 100 = 28.999... shows up.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from reidlib.erasing import (
    Erase,
    activation_map,
    low_activation_mask,
    minmax_threshold_mask,
    normalized_mean_map,
    random_block_mask,
    top_activation_mask,
)

# ------------------------------------------------------------------------------------------------
# Hand-built features: B=2, C=3, H=4, W=2, every position of an image has a distinct rank 0..7.
# Position of rank r holds the channel vector (s * (r + 1), -1, 2) with an alternating sign s, so
#   F^2 = (r + 1)^2 + 1 + 4 = (r + 1)^2 + 5   and   F^1 = (r + 1) + 1 + 2 = r + 4,
# both strictly increasing in r; no entry is zero, so an erased position is visible on every channel.
# ------------------------------------------------------------------------------------------------

RANKS = torch.tensor(
    [
        [[3, 7], [0, 5], [6, 1], [4, 2]],  # image 0
        [[5, 0], [2, 6], [7, 3], [1, 4]],  # image 1 (a different layout: its own mask)
    ]
)  # (B, H, W)


def ranked_features(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    b, h, w = RANKS.shape
    sign = torch.tensor([1.0, -1.0]).repeat(h * w // 2).view(1, h, w)  # alternating +-1
    feat = torch.empty(b, 3, h, w, dtype=dtype)
    feat[:, 0] = sign * (RANKS + 1).to(dtype)
    feat[:, 1] = -1.0
    feat[:, 2] = 2.0
    return feat  # (B, C, H, W)


def naive_activation_map(feat: torch.Tensor, p: float) -> torch.Tensor:
    b, c, h, w = feat.shape
    out = torch.zeros(b, h, w, dtype=torch.float64)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                out[i, y, x] = sum(abs(float(feat[i, k, y, x])) ** p for k in range(c))
    return out


def exact_count(ratio: float, h: int, w: int) -> int:
    """floor(ratio * H * W) in exact decimal arithmetic (the ratio as written)."""
    return math.floor(Fraction(str(ratio)) * h * w)


# ------------------------------------------------------------------------------------------------
# activation_map
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2, 3])
def test_activation_map_equals_naive_loop(p):
    feat = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(p))
    got = activation_map(feat, p=p)
    assert got.shape == (2, 3, 4)
    torch.testing.assert_close(got.double(), naive_activation_map(feat, p), rtol=1e-5, atol=1e-6)


def test_activation_map_of_hand_built_features():
    feat = ranked_features()
    torch.testing.assert_close(activation_map(feat, p=2), ((RANKS + 1) ** 2 + 5).float())
    torch.testing.assert_close(activation_map(feat, p=1), (RANKS + 4).float())


def test_activation_map_half_precision_does_not_overflow():
    # 3 * 300^2 = 270,000 > 65,504 (float16 max): the map must be summed in float32.
    feat = torch.full((1, 3, 2, 2), 300.0, dtype=torch.float16)
    got = activation_map(feat, p=2)
    assert got.dtype == torch.float32
    assert torch.all(got == 270_000.0)


# ------------------------------------------------------------------------------------------------
# low_activation_mask (SEN M1) and top_activation_mask (SEN M2)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("ratio, count", [(0.0, 0), (0.1, 0), (0.25, 2), (0.5, 4), (0.99, 7)])
def test_low_and_top_masks_on_ranked_features(ratio, count, p):
    # floor(ratio * 8): 0 -> 0, 0.1 -> 0 (0.8), 0.25 -> 2, 0.5 -> 4, 0.99 -> 7 (7.92)
    feat = ranked_features()
    hw = RANKS.shape[1] * RANKS.shape[2]
    low = low_activation_mask(feat, ratio, p=p)
    top = top_activation_mask(feat, ratio, p=p)
    for mask in (low, top):
        assert mask.shape == (2, 1, 4, 2)
        assert mask.dtype == torch.float32
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert (mask == 0).sum(dim=(1, 2, 3)).tolist() == [count, count]
    # Lowest `count` ranks erased by M1, highest `count` ranks erased by M2, image by image.
    assert torch.equal(low[:, 0], (RANKS >= count).float())
    assert torch.equal(top[:, 0], (RANKS < hw - count).float())


def test_low_and_top_masks_written_out_by_hand():
    feat = ranked_features()
    # ratio 0.25 -> 2 positions. Image 0: ranks 0, 1 at (1, 0), (2, 1); ranks 6, 7 at (2, 0), (0, 1).
    # Image 1: ranks 0, 1 at (0, 1), (3, 0); ranks 6, 7 at (1, 1), (2, 0).
    low = torch.tensor(
        [
            [[1, 1], [0, 1], [1, 0], [1, 1]],
            [[1, 0], [1, 1], [1, 1], [0, 1]],
        ],
        dtype=torch.float32,
    )
    top = torch.tensor(
        [
            [[1, 0], [1, 1], [0, 1], [1, 1]],
            [[1, 1], [1, 0], [0, 1], [1, 1]],
        ],
        dtype=torch.float32,
    )
    assert torch.equal(low_activation_mask(feat, 0.25)[:, 0], low)
    assert torch.equal(top_activation_mask(feat, 0.25)[:, 0], top)
    assert not torch.equal(low[0], low[1])  # each image has its own mask


def test_masks_ignore_the_sign_for_p1():
    # Two positions with |A| = 5 (one negative) and two with |A| = 1: p = 1 must use |A_c|.
    feat = torch.tensor([[[[-5.0, 1.0], [1.0, 5.0]]]])  # (1, 1, 2, 2)
    assert torch.equal(low_activation_mask(feat, 0.5, p=1)[0, 0], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


@pytest.mark.parametrize("h, w", [(10, 10), (16, 8), (24, 8), (7, 3)])
def test_erased_count_is_exact_for_every_percent(h, w):
    # Every ratio 0.00 .. 0.99; e.g. 0.29 * 100 = 28.999999999999996 in float64, but 29 is meant.
    feat = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w) + 1.0  # distinct values
    for percent in range(100):
        ratio = percent / 100
        count = exact_count(ratio, h, w)
        low = low_activation_mask(feat, ratio)
        top = top_activation_mask(feat, ratio)
        assert int((low == 0).sum()) == count, (ratio, h, w)
        assert int((top == 0).sum()) == count, (ratio, h, w)
        values = feat.flatten()
        # Distinct increasing values: M1 erases the first `count`, M2 the last `count` positions.
        assert torch.equal(low.flatten(), (values > count).float()), (ratio, h, w)
        assert torch.equal(top.flatten(), (values <= h * w - count).float()), (ratio, h, w)


def test_ratio_029_on_10x10_erases_29():
    feat = torch.randn(3, 4, 10, 10, generator=torch.Generator().manual_seed(0))
    assert (low_activation_mask(feat, 0.29) == 0).sum(dim=(1, 2, 3)).tolist() == [29, 29, 29]
    assert (top_activation_mask(feat, 0.29) == 0).sum(dim=(1, 2, 3)).tolist() == [29, 29, 29]


def test_paper_counts_on_16x8_maps():
    # docs/reading-the-papers.md#sen-tie-handling: with 16x8 maps, r1 = 0.1 erases 12 positions and
    # r2 = 0.25 erases 32.
    feat = torch.randn(4, 8, 16, 8, generator=torch.Generator().manual_seed(1))
    assert (low_activation_mask(feat, 0.1) == 0).sum(dim=(1, 2, 3)).tolist() == [12] * 4
    assert (top_activation_mask(feat, 0.25) == 0).sum(dim=(1, 2, 3)).tolist() == [32] * 4


def test_masks_match_argsort_on_random_features():
    # Random maps (distinct values almost surely): erased set == argsort's first/last N positions.
    feat = torch.randn(3, 6, 16, 8, generator=torch.Generator().manual_seed(2))
    scores = naive_activation_map(feat, 2).view(3, -1)
    for ratio in (0.1, 0.25):
        n = exact_count(ratio, 16, 8)
        low = low_activation_mask(feat, ratio).view(3, -1)
        top = top_activation_mask(feat, ratio).view(3, -1)
        for i in range(3):
            order = sorted(range(128), key=lambda j, i=i: float(scores[i, j]))
            assert set(torch.nonzero(low[i] == 0).flatten().tolist()) == set(order[:n])
            assert set(torch.nonzero(top[i] == 0).flatten().tolist()) == set(order[-n:])


def test_ties_still_give_the_exact_count():
    flat = torch.zeros(2, 1, 4, 2)  # image 0: constant map, every position tied
    flat[1, 0] = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 2.0]])  # image 1: tie groups
    low = low_activation_mask(flat, 0.25)  # 2 positions
    top = top_activation_mask(flat, 0.5)  # 4 positions
    assert (low == 0).sum(dim=(1, 2, 3)).tolist() == [2, 2]
    assert (top == 0).sum(dim=(1, 2, 3)).tolist() == [4, 4]
    values = flat[1, 0]
    assert torch.all(values[low[1, 0] == 0] == 0.0)  # two of the three zeros
    erased_top = sorted(values[top[1, 0] == 0].tolist())
    assert erased_top[2:] == [2.0, 2.0] and erased_top[:2] == [1.0, 1.0]  # both 2s and two of the 1s


def test_erase_zeroes_every_channel_at_the_masked_positions():
    feat = ranked_features()
    erase = Erase(top_activation_mask, ratio=0.25).train()
    out = erase(feat)
    keep = (RANKS < 6).view(2, 1, 4, 2)  # ranks 6, 7 erased in each image
    assert torch.all(out[~keep.expand_as(out)] == 0)
    assert torch.equal(out[keep.expand_as(out)], feat[keep.expand_as(feat)])
    assert torch.all(feat != 0)  # so a zero in `out` can only come from the mask


def test_half_precision_features_get_float32_masks():
    feat = ranked_features(torch.float16) * 100  # F^2 up to 3e5: overflows float16
    mask = top_activation_mask(feat, 0.25)
    assert mask.dtype == torch.float32
    assert torch.equal(mask[:, 0], (RANKS < 6).float())


# ------------------------------------------------------------------------------------------------
# minmax_threshold_mask (Deep Miner ErO, eq. 1)
# ------------------------------------------------------------------------------------------------


def eroded_case() -> torch.Tensor:
    # Channel mean [[1, 3], [5, 9]] -> min 1, max 9 -> normalised [[0, .25], [.5, 1]].
    ch0 = torch.tensor([[0.0, 2.0], [4.0, 10.0]])
    ch1 = torch.tensor([[2.0, 4.0], [6.0, 8.0]])
    return torch.stack([ch0, ch1]).unsqueeze(0)  # (1, 2, 2, 2)


@pytest.mark.parametrize(
    "tau, keep",
    [
        (0.8, [[1, 1], [1, 0]]),
        (0.5, [[1, 1], [1, 0]]),  # 0.5 is not > 0.5: kept
        (0.4, [[1, 1], [0, 0]]),
        (0.2, [[1, 0], [0, 0]]),
        (0.0, [[1, 0], [0, 0]]),
        (1.0, [[1, 1], [1, 1]]),
    ],
)
def test_minmax_threshold_by_hand(tau, keep):
    mask = minmax_threshold_mask(eroded_case(), tau)
    assert mask.shape == (1, 1, 2, 2)
    assert torch.equal(mask[0, 0], torch.tensor(keep, dtype=torch.float32))


def test_normalized_mean_map_by_hand_is_what_ero_thresholds():
    feat = torch.zeros(2, 2, 2, 2)
    feat[0, 0] = torch.tensor([[0.0, 2.0], [4.0, 8.0]])
    feat[0, 1] = torch.tensor([[2.0, 2.0], [2.0, 2.0]])  # channel means 1, 2, 3, 5
    feat[1] = 3.0  # constant map
    got = normalized_mean_map(feat)
    torch.testing.assert_close(got[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))  # (m - 1) / (5 - 1)
    torch.testing.assert_close(got[1], torch.zeros(2, 2))
    for tau in (0.2, 0.25, 0.5, 0.9):
        erased = minmax_threshold_mask(feat, tau)[:, 0] == 0
        assert torch.equal(erased, got > tau)  # the drawn score explains exactly the erased cells


def test_minmax_uses_the_channel_mean_not_a_single_channel():
    # Channel 0 alone peaks at (0, 0), but the mean peaks at (1, 1).
    feat = torch.tensor([[[[9.0, 0.0], [0.0, 0.0]], [[-9.0, 0.0], [0.0, 4.0]]]])  # mean [[0,0],[0,2]]
    assert torch.equal(minmax_threshold_mask(feat, 0.5)[0, 0], torch.tensor([[1.0, 1.0], [1.0, 0.0]]))


def test_minmax_tau1_erases_nothing_and_tau0_keeps_only_the_minimum():
    feat = torch.randn(3, 5, 6, 4, generator=torch.Generator().manual_seed(3))
    assert torch.all(minmax_threshold_mask(feat, 1.0) == 1)
    mask0 = minmax_threshold_mask(feat, 0.0)
    mean = feat.double().mean(dim=1)  # (B, H, W)
    for i in range(3):
        kept = torch.nonzero(mask0[i, 0] == 1).tolist()
        assert kept == torch.nonzero(mean[i] == mean[i].min()).tolist()
        assert len(kept) == 1


def test_minmax_tau0_keeps_every_tied_minimum():
    feat = torch.tensor([[[[1.0, 1.0], [3.0, 2.0]]]])
    assert torch.equal(minmax_threshold_mask(feat, 0.0)[0, 0], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


@pytest.mark.parametrize("tau", [0.0, 0.5, 0.8, 1.0])
def test_minmax_constant_map_erases_nothing(tau):
    feat = torch.full((2, 3, 4, 2), 7.5)
    feat[1] = 0.0
    mask = minmax_threshold_mask(feat, tau)
    assert torch.all(mask == 1)
    assert torch.isfinite(mask).all()


def test_minmax_normalises_each_image_separately():
    base = torch.randn(1, 4, 8, 4, generator=torch.Generator().manual_seed(4))
    batch = torch.cat([base, base * 100.0, base * 0.01 - 3.0])  # affine copies of one image
    mask = minmax_threshold_mask(batch, 0.7)
    alone = minmax_threshold_mask(base, 0.7)
    for i in range(3):
        assert torch.equal(mask[i], alone[0])
    assert 0 < int((alone == 0).sum()) < 32  # a non-trivial mask


# ------------------------------------------------------------------------------------------------
# random_block_mask (Batch DropBlock)
# ------------------------------------------------------------------------------------------------


def block_rows_cols(mask2d: torch.Tensor) -> tuple[list[int], list[int]]:
    erased = torch.nonzero(mask2d == 0)
    return sorted(set(erased[:, 0].tolist())), sorted(set(erased[:, 1].tolist()))


def round_half_up(ratio: float, size: int) -> int:
    return math.floor(Fraction(str(ratio)) * size + Fraction(1, 2))


@pytest.mark.parametrize(
    "h, w, h_ratio, w_ratio, rows, cols",
    [
        (16, 8, 0.33, 1.0, 5, 8),  # 5.28 -> 5 rows, full width (SEN's comparison setting)
        (24, 8, 0.33, 1.0, 8, 8),  # 7.92 -> 8
        (10, 5, 0.25, 0.5, 3, 3),  # 2.5 -> 3 and 2.5 -> 3: half rounds up (Python's round gives 2)
        (25, 8, 0.58, 0.5, 15, 4),  # 0.58 * 25 = 14.5 exactly; float64 gives 14.499999999999998
        (8, 4, 0.0, 1.0, 0, 4),
    ],
)
def test_random_block_size(h, w, h_ratio, w_ratio, rows, cols):
    assert (rows, cols) == (round_half_up(h_ratio, h), round_half_up(w_ratio, w))
    feat = torch.randn(3, 2, h, w)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        mask = random_block_mask(feat, h_ratio, w_ratio, generator=gen)
        assert mask.shape == (3, 1, h, w)
        assert int((mask[0] == 0).sum()) == rows * cols  # never clipped by the border
        if rows * cols:
            erased_rows, erased_cols = block_rows_cols(mask[0, 0])
            assert erased_rows == list(range(erased_rows[0], erased_rows[0] + rows))  # contiguous
            assert erased_cols == list(range(erased_cols[0], erased_cols[0] + cols))


def test_random_block_is_shared_by_the_batch():
    feat = torch.randn(5, 3, 16, 8)
    mask = random_block_mask(feat, 0.33, 0.5, generator=torch.Generator().manual_seed(1))
    for i in range(1, 5):
        assert torch.equal(mask[i], mask[0])


def test_random_block_seeded_generator_reproduces_and_seeds_differ():
    feat = torch.randn(2, 3, 16, 8)

    def draws(seed: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return [random_block_mask(feat, 0.33, 0.5, generator=gen).clone() for _ in range(5)]

    a, b, c = draws(0), draws(0), draws(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_random_block_covers_every_position_inside_the_bounds():
    # 16x8, block 5x4: the top row ranges over 0..11, the left column over 0..4.
    feat = torch.zeros(1, 1, 16, 8)
    gen = torch.Generator().manual_seed(2)
    tops, lefts = set(), set()
    for _ in range(300):
        rows, cols = block_rows_cols(random_block_mask(feat, 0.33, 0.5, generator=gen)[0, 0])
        assert len(rows) == 5 and len(cols) == 4
        tops.add(rows[0])
        lefts.add(cols[0])
    assert tops == set(range(12)) and lefts == set(range(5))


# ------------------------------------------------------------------------------------------------
# Erase
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mask_fn, kwargs",
    [
        (low_activation_mask, {"ratio": 0.25}),
        (top_activation_mask, {"ratio": 0.25}),
        (minmax_threshold_mask, {"threshold": 0.5}),
        (random_block_mask, {"h_ratio": 0.5, "w_ratio": 1.0}),
    ],
)
def test_erase_is_the_identity_in_eval(mask_fn, kwargs):
    feat = ranked_features()
    erase = Erase(mask_fn, **kwargs).eval()
    out = erase(feat)
    assert torch.equal(out, feat)
    assert erase.last_mask is None  # nothing computed in eval


def test_erase_applies_the_mask_in_training_and_keeps_it():
    feat = ranked_features()
    erase = Erase(low_activation_mask, ratio=0.5).train()
    out = erase(feat)
    expected_mask = (RANKS >= 4).float().unsqueeze(1)  # (B, 1, H, W): the 4 lowest ranks erased
    assert torch.equal(erase.last_mask, expected_mask)
    assert torch.equal(out, feat * expected_mask)
    assert not erase.last_mask.requires_grad


def test_erase_gradient_wrt_input_is_the_mask():
    feat = torch.randn(2, 4, 4, 2, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    erase = Erase(top_activation_mask, ratio=0.25).train()
    erase(feat).sum().backward()
    expected = top_activation_mask(feat.detach(), 0.25).expand_as(feat)  # d(x * mask)/dx = mask
    assert torch.equal(feat.grad, expected)


def test_erase_treats_even_a_differentiable_mask_as_a_constant():
    # With a smooth mask m(x), autograd would add x * dm/dx unless Erase detaches: grad must be m.
    def soft_mask(feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(feat.mean(dim=1, keepdim=True))

    feat = torch.randn(2, 3, 4, 2, generator=torch.Generator().manual_seed(6)).requires_grad_(True)
    Erase(soft_mask).train()(feat).sum().backward()
    expected = torch.sigmoid(feat.detach().mean(dim=1, keepdim=True)).expand_as(feat)
    torch.testing.assert_close(feat.grad, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "make_mask",
    [
        lambda f: low_activation_mask(f, 0.25),
        lambda f: top_activation_mask(f, 0.25),
        lambda f: minmax_threshold_mask(f, 0.5),
        lambda f: random_block_mask(f, 0.5, 1.0),
        lambda f: activation_map(f),
    ],
)
def test_masks_from_features_that_require_grad_do_not_require_grad(make_mask):
    feat = torch.randn(2, 3, 4, 2).requires_grad_(True)
    mask = make_mask(feat)
    assert not mask.requires_grad and mask.grad_fn is None


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda f: activation_map(f),
        lambda f: low_activation_mask(f, 0.1),
        lambda f: top_activation_mask(f, 0.1),
        lambda f: minmax_threshold_mask(f, 0.5),
        lambda f: random_block_mask(f, 0.33, 1.0),
    ],
)
def test_three_dimensional_feature_is_rejected(call):
    with pytest.raises(ValueError, match="feat"):
        call(torch.randn(3, 4, 2))


@pytest.mark.parametrize("mask_fn", [low_activation_mask, top_activation_mask])
@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_bad_ratio_is_rejected(mask_fn, ratio):
    with pytest.raises(ValueError, match="ratio"):
        mask_fn(torch.randn(1, 2, 4, 2), ratio)


@pytest.mark.parametrize("threshold", [1.5, -0.1])
def test_bad_threshold_is_rejected(threshold):
    with pytest.raises(ValueError, match="threshold"):
        minmax_threshold_mask(torch.randn(1, 2, 4, 2), threshold)


@pytest.mark.parametrize("name, kwargs", [("h_ratio", {"h_ratio": 1.5}), ("w_ratio", {"w_ratio": -0.1})])
def test_bad_block_ratio_is_rejected(name, kwargs):
    args = {"h_ratio": 0.33, "w_ratio": 1.0} | kwargs
    with pytest.raises(ValueError, match=name):
        random_block_mask(torch.randn(1, 2, 4, 2), **args)
