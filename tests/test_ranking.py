"""reidlib.evaluation.ranking and reidlib.viz.retrieval: junk rule and correct/wrong flags of the ranked
lists, the query choice, the activation maps of each image and the figure's borders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from reidlib.data.datasets.base import ImageRecord
from reidlib.erasing import activation_map
from reidlib.evaluation.metrics import evaluate_rank
from reidlib.evaluation.ranking import (
    RankedList,
    RetrievalRow,
    activation_maps,
    choose_queries,
    rank1_of,
    ranked_lists,
    ranked_table,
    retrieval_rows,
    same_camera_sentence,
    same_camera_share,
)
from reidlib.viz.retrieval import border_color, plot_ranked_lists

# A hand-built problem. Query 0: pid 1, camera 0; query 1: pid 2, camera 1.
Q_PIDS, Q_CAMIDS = np.array([1, 2]), np.array([0, 1])
G_PIDS = np.array([1, 1, 3, 2, 1, 0, 2])
G_CAMIDS = np.array([0, 1, 0, 1, 2, 1, 0])
DISTMAT = np.array(
    [
        [0.1, 0.5, 0.2, 0.3, 0.5, 0.05, 0.9],  # g0 is junk (pid 1, camera 0); g1 and g4 tie at 0.5
        [0.4, 0.4, 0.4, 0.0, 0.6, 0.7, 0.1],  # g3 is junk (pid 2, camera 1); g0, g1, g2 tie at 0.4
    ]
)


def test_junk_removed_before_the_cut_and_flags_by_pid():
    q0, q1 = ranked_lists(DISTMAT, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, top_k=4)
    # query 0 without g0: g5 (0.05, distractor), g2 (0.2), g3 (0.3), then g1 before g4 (tie, index)
    assert q0.gallery.tolist() == [5, 2, 3, 1]
    assert q0.correct.tolist() == [False, False, False, True]
    np.testing.assert_allclose(q0.distances, [0.05, 0.2, 0.3, 0.5])
    assert (q0.num_junk, q0.num_matches) == (1, 2)
    # query 1 without g3 (distance 0): g6 (pid 2, camera 0) first, then the tied g0, g1, g2 in order
    assert q1.gallery.tolist() == [6, 0, 1, 2]
    assert q1.correct.tolist() == [True, False, False, False]
    assert (q1.num_junk, q1.num_matches) == (1, 1)


def test_ties_at_the_cut_keep_the_lowest_gallery_index():
    (q1,) = ranked_lists(DISTMAT, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, top_k=2, queries=[1])
    assert q1.query == 1 and q1.gallery.tolist() == [6, 0]


def test_without_the_junk_rule_the_same_camera_image_counts():
    q0, _ = ranked_lists(DISTMAT, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, top_k=2, remove_junk=False)
    assert q0.gallery.tolist() == [5, 0] and q0.correct.tolist() == [False, True]
    assert q0.num_junk == 0 and q0.num_matches == 3


def test_short_gallery_gives_a_short_list():
    q0, _ = ranked_lists(DISTMAT, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, top_k=50)
    assert len(q0.gallery) == 6 and 0 not in q0.gallery.tolist()


def naive_top_k(d, q_pids, g_pids, q_camids, g_camids, k):
    """Straight from the definition: sort by (distance, gallery index), drop junk, keep k."""
    out = []
    for q in range(d.shape[0]):
        order = sorted(range(d.shape[1]), key=lambda g: (d[q, g], g))
        kept = [g for g in order if not (g_pids[g] == q_pids[q] and g_camids[g] == q_camids[q])]
        out.append(kept[:k])
    return out


def test_matches_a_naive_loop_on_a_random_problem_with_ties():
    rng = np.random.default_rng(3)
    d = rng.integers(0, 6, size=(25, 40)).astype(np.float32)  # many ties
    q_pids, g_pids = rng.integers(0, 5, 25), rng.integers(0, 5, 40)
    q_camids, g_camids = rng.integers(0, 3, 25), rng.integers(0, 3, 40)
    lists = ranked_lists(torch.from_numpy(d), q_pids, g_pids, q_camids, g_camids, top_k=7)
    expected = naive_top_k(d, q_pids, g_pids, q_camids, g_camids, 7)
    for r, want in zip(lists, expected, strict=True):
        assert r.gallery.tolist() == want
        assert r.correct.tolist() == [bool(g_pids[g] == q_pids[r.query]) for g in want]


@pytest.mark.parametrize("ties", [False, True])
def test_rank1_of_the_lists_is_the_rank1_of_evaluate_rank(ties):
    rng = np.random.default_rng(5)
    d = rng.random((30, 60))
    if ties:  # a quarter-step grid: most distances tie with others; the order falls to gallery index
        d = np.round(d * 4) / 4
    q_pids, g_pids = rng.integers(0, 6, 30), rng.integers(0, 6, 60)
    q_camids, g_camids = rng.integers(0, 3, 30), rng.integers(0, 3, 60)
    lists = ranked_lists(d, q_pids, g_pids, q_camids, g_camids, top_k=1)
    valid = [r for r in lists if r.num_matches > 0]
    cmc = evaluate_rank(d, q_pids, g_pids, q_camids, g_camids, max_rank=1)["cmc"]
    assert np.mean([r.correct[0] for r in valid]) == pytest.approx(cmc[0])
    assert rank1_of(lists) == pytest.approx(100 * cmc[0])


def test_rank1_of_needs_a_query_with_a_match():
    empty = RankedList(0, np.array([3]), np.array([0.1]), np.array([False]), num_junk=0, num_matches=0)
    with pytest.raises(ValueError, match="no query has a match"):
        rank1_of([empty])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"distmat": np.zeros(3)}, "distmat"),
        ({"distmat": np.full((2, 7), np.nan)}, "NaN"),
        ({"q_pids": np.array([1, 2, 3])}, "q_pids"),
        ({"g_camids": np.array([0.5] * 7)}, "g_camids"),
        ({"top_k": 0}, "top_k"),
        ({"queries": [2]}, "queries"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = {
        "distmat": DISTMAT,
        "q_pids": Q_PIDS,
        "g_pids": G_PIDS,
        "q_camids": Q_CAMIDS,
        "g_camids": G_CAMIDS,
    }
    extra = {k: kwargs.pop(k) for k in ("top_k", "queries") if k in kwargs}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ranked_lists(**args, **extra)


def test_ranked_table_rows():
    lists = ranked_lists(DISTMAT, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, top_k=2)
    query = [ImageRecord("q0.jpg", 1, 0), ImageRecord("q1.jpg", 2, 1)]
    gallery = [
        ImageRecord(f"g{i}.jpg", int(p), int(c))
        for i, (p, c) in enumerate(zip(G_PIDS, G_CAMIDS, strict=True))
    ]
    table = ranked_table(lists, query, gallery)
    assert table[["query", "rank", "gallery", "pid", "camid", "correct"]].values.tolist() == [
        [0, 1, 5, 0, 1, False],
        [0, 2, 2, 3, 0, False],
        [1, 1, 6, 2, 0, True],
        [1, 2, 0, 1, 0, False],
    ]


# ----------------------------------------------------------------------------- green / red


def test_border_green_for_correct_red_for_wrong():
    r, g, _ = to_rgb(border_color(True))
    assert g > r  # green
    r, g, _ = to_rgb(border_color(False))
    assert r > g  # red


# ----------------------------------------------------------------------------- query choice


def fake_lists(first_correct, num_matches=None):
    num_matches = num_matches or [1] * len(first_correct)
    return [
        RankedList(i, np.array([0]), np.array([0.0]), np.array([ok]), 0, m)
        for i, (ok, m) in enumerate(zip(first_correct, num_matches, strict=True))
    ]


def test_choice_is_seeded_and_skips_queries_without_a_match():
    lists = fake_lists([True, False, True, True, False, True], num_matches=[1, 0, 1, 1, 1, 1])
    a, b = choose_queries(lists, 3, seed=7), choose_queries(lists, 3, seed=7)
    assert a == b and len(a) == 3 and len(set(a)) == 3 and 1 not in a
    assert sorted(choose_queries(lists, 10, seed=0)) == [0, 2, 3, 4, 5]  # every valid query


@pytest.mark.parametrize("seed", range(8))
def test_the_only_failure_is_always_shown(seed):
    lists = fake_lists([True] * 9 + [False])
    chosen = choose_queries(lists, 3, seed=seed)
    assert 9 in chosen and len(chosen) == 3


@pytest.mark.parametrize("seed", range(8))
def test_a_success_is_kept_when_there_is_one(seed):
    lists = fake_lists([False] * 9 + [True])
    chosen = choose_queries(lists, 2, seed=seed)
    assert 9 in chosen and len(chosen) == 2


def test_all_failures_or_all_successes():
    assert len(choose_queries(fake_lists([False] * 5), 3)) == 3
    assert len(choose_queries(fake_lists([True] * 5), 3)) == 3
    with pytest.raises(ValueError, match="num_queries"):
        choose_queries(fake_lists([True]), 0)


def test_same_camera_share():
    # query 0 (camera 0): wrong items g5 (camera 1), g2 (camera 0), g3 (camera 1)
    # query 1 (camera 1): wrong items g0, g1, g2 (cameras 0, 1, 0)
    lists = ranked_lists(DISTMAT, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, top_k=4)
    observed, chance, count = same_camera_share(lists, Q_CAMIDS, G_CAMIDS)
    assert count == 6
    assert observed == pytest.approx(100 * 2 / 6)
    # gallery: camera 0 holds 3 of 7, camera 1 holds 3 of 7; every wrong item's query camera: 3/7
    assert chance == pytest.approx(100 * 3 / 7)
    # the sentence: 2 of 6 from the query's camera, each with probability 3/7 at random:
    # z = (2 - 6 x 3/7) / sqrt(6 x 3/7 x 4/7) = -0.47 by hand: at chance
    sentence = same_camera_sentence(lists, Q_CAMIDS, G_CAMIDS)
    assert sentence == (
        "6 items of these top-4 lists are wrong; 33 % of them come from the query's own camera, against "
        "43 % for random gallery images: at chance (z = -0.5)."
    )


def test_a_scene_matcher_is_above_chance():
    # 40 queries whose 5 wrong items all come from the query's camera, in a gallery of 4 cameras
    lists = [RankedList(q, np.arange(5), np.zeros(5), np.zeros(5, bool), 0, 1) for q in range(40)]
    q_camids, g_camids = np.zeros(40, int), np.array([0] * 5 + [1, 2, 3] * 5)
    assert "above chance" in same_camera_sentence(lists, q_camids, g_camids)
    assert same_camera_sentence(lists[:0], q_camids, g_camids) == "No item of these lists is wrong."


# ----------------------------------------------------------------------------- maps and figure


class TinyNet(nn.Module):
    """Stands in for a ReIDNetwork: feature_maps returns named (B, C, h, w) maps."""

    def __init__(self, names=("b4",)):
        super().__init__()
        self.names = names
        self.conv = nn.Conv2d(3, 4, kernel_size=4, stride=4)

    def feature_maps(self, images):
        a = self.conv(images)  # (B, 4, H/4, W/4)
        return {name: a * (i + 1) for i, name in enumerate(self.names)}


def test_activation_maps_draw_b4_unless_named():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 16, 8)
    net = TinyNet(("b4", "ms")).train()
    want = activation_map(net.conv(images))  # (2, 4, 2)
    torch.testing.assert_close(activation_maps(net, images), want)
    assert net.training  # mode restored
    torch.testing.assert_close(activation_maps(net, images, name="ms"), activation_map(2 * net.conv(images)))
    with pytest.raises(ValueError, match="no 'x'"):
        activation_maps(net, images, name="x")


def test_retrieval_rows_pair_each_image_with_its_own_map(tiny_synthetic):
    from reidlib.data.datasets import load_folder

    ds = load_folder(tiny_synthetic)
    torch.manual_seed(0)
    net = TinyNet()
    lists = [RankedList(1, np.array([3, 0]), np.array([0.1, 0.2]), np.array([True, False]), 0, 1)]
    (row,) = retrieval_rows(net, ds.query, ds.gallery, lists, height=32, width=16)
    assert row.records == [ds.query[1], ds.gallery[3], ds.gallery[0]]
    assert row.images.shape == (3, 32, 16, 3) and 0.0 <= row.images.min() and row.images.max() <= 1.0
    assert row.maps.shape == (3, 8, 4)
    for image_record, amap in zip(row.records, row.maps, strict=True):
        alone = retrieval_rows(
            net,
            [image_record],
            [],
            [RankedList(0, np.array([], dtype=int), np.array([]), np.array([], dtype=bool), 0, 0)],
            height=32,
            width=16,
        )[0]
        np.testing.assert_allclose(alone.maps[0], amap, rtol=1e-5)


def make_rows(flags):
    rng = np.random.default_rng(0)
    rows = []
    for q, row_flags in enumerate(flags):
        k = len(row_flags)
        records = [ImageRecord(f"q{q}.jpg", 10 + q, 0)] + [
            ImageRecord(f"g{j}.jpg", 10 + q if ok else 99, 1) for j, ok in enumerate(row_flags)
        ]
        ranked = RankedList(q, np.arange(k), np.linspace(0.1, 0.5, k), np.array(row_flags), 0, 1)
        rows.append(RetrievalRow(ranked, records, rng.random((k + 1, 16, 8, 3)), rng.random((k + 1, 4, 2))))
    return rows


def test_figure_borders_follow_the_flags():
    flags = [[True, False, False], [False, True, True]]
    fig = plot_ranked_lists(make_rows(flags), title="lists")
    assert isinstance(fig, Figure)
    ncols = 4
    image_axes = fig.axes[: 2 * len(flags) * ncols]
    assert len(fig.axes) == 2 * len(flags) * ncols + 1  # + the colour bar
    for r, row_flags in enumerate(flags):
        cells = image_axes[r * 2 * ncols : (r + 1) * 2 * ncols]
        tops, maps = cells[0::2], cells[1::2]  # each column adds its image then its map
        assert tops[0].get_title().startswith("query")
        assert maps[0].get_ylabel() == "activation map"
        for c, ok in enumerate(row_flags, start=1):
            (frame,) = [p for p in tops[c].patches if isinstance(p, Rectangle)]
            red, green, _ = to_rgb(frame.get_edgecolor())
            assert (green > red) == ok
            assert ("\u2713" in tops[c].get_title()) == ok and ("\u2717" in tops[c].get_title()) != ok
            assert len(maps[c].get_images()) == 2  # the image and its map on top
            assert not maps[c].patches  # no border on the map row
    assert fig.axes[-1].get_ylabel().startswith("activation")


def test_figure_needs_rows():
    with pytest.raises(ValueError, match="rows"):
        plot_ranked_lists([])
