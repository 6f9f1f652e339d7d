"""Comparison plots: what they draw (values, gains, labels), and the state-of-the-art table they plot."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from reidlib.viz import comparison as vc


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


def _compare(ours_rank1: list[float]) -> pd.DataFrame:
    rows = []
    for label, p1, o1 in zip(["Baseline", "+BS", "+MS"], [94.2, 94.8, 95.0], ours_rank1, strict=True):
        rows.append(
            {
                "table": "t",
                "row": label,
                "value": math.nan,
                "source": "paper",
                "dataset": "market1501",
                "rank1": p1,
                "mAP": p1 - 8,
                "mINP": math.nan,
                "budget": "published",
                "reference": "",
            }
        )
        rows.append(
            {
                "table": "t",
                "row": label,
                "value": math.nan,
                "source": "ours",
                "dataset": "synthetic",
                "rank1": o1,
                "mAP": o1 / 2,
                "mINP": 1.0,
                "budget": "tiny budget",
                "reference": "",
            }
        )
    return pd.DataFrame(rows)


def test_ablation_figure_shows_published_and_ours_with_gains():
    fig = vc.ablation_figure(_compare([10.0, 12.5, 9.0]), "t", title="SEN Table 2")
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "published: rank-1 (Market-1501)",
        "published: mAP (Market-1501)",
        "ours: rank-1 (synthetic)",
        "ours: mAP (synthetic)",
    ]
    texts = _texts(fig)
    assert "94.8\n(+0.6)" in texts and "95.0\n(+0.8)" in texts  # published gains over Baseline
    assert "12.5\n(+2.5)" in texts and "9.0\n(-1.0)" in texts  # ours
    assert any("tiny budget" in t for t in texts)
    pts = fig.axes[2].lines[-1].get_ydata()
    assert list(pts) == [10.0, 12.5, 9.0]
    fig.savefig(io.BytesIO(), format="png")


def test_ablation_figure_without_published_rows_or_runs():
    ours_only = _compare([10.0, 11.0, 12.0])
    fig = vc.ablation_figure(ours_only[ours_only["source"] == "ours"], "t")
    assert len(fig.axes) == 2
    empty = vc.ablation_figure(_compare([math.nan] * 3), "t")
    assert "no runs yet" in _texts(empty)
    with pytest.raises(ValueError, match="no rows for table 'u'"):
        vc.ablation_figure(ours_only, "u")


def test_sweep_figure_puts_the_swept_value_on_x():
    rows = [
        {
            "table": "s",
            "row": "baseline",
            "value": math.nan,
            "source": "ours",
            "dataset": "synthetic",
            "rank1": 5.0,
            "mAP": 3.0,
            "mINP": 1.0,
            "budget": "tiny",
            "reference": "",
        }
    ]
    for v, r1 in [(0.5, 6.0), (0.8, 7.0), (0.9, 4.0)]:
        rows.append({**rows[0], "row": f"tau={v}", "value": v, "rank1": r1})
    rows.append({**rows[2], "source": "paper", "dataset": "market1501", "rank1": 94.7, "mAP": 88.0})
    fig = vc.ablation_figure(pd.DataFrame(rows), "s", param="tau")
    ours_ax = fig.axes[2]
    line = ours_ax.lines[0]
    assert list(line.get_xdata()) == [0.5, 0.8, 0.9] and list(line.get_ydata()) == [6.0, 7.0, 4.0]
    assert [t.get_text() for t in ours_ax.get_xticklabels()] == ["0.5", "0.8", "0.9"]
    assert "baseline: 5.0" in _texts(fig)
    assert fig.axes[0].get_xlim() == ours_ax.get_xlim()  # published point at its place on the same axis


def _published() -> pd.DataFrame:
    cols = [
        "paper",
        "table",
        "row",
        "method",
        "venue",
        "backbone",
        "dataset",
        "rank1",
        "mAP",
        "score",
        "notes",
    ]
    data = [
        ["sen", 3, 4, "OSNet [10]", "CVPR2019", "", "market1501", 94.8, 84.9, 89.9, ""],
        ["sen", 3, 9, "Ours", "", "", "market1501", 95.2, 88.1, 91.7, "this paper's method; SEN"],
        ["sen", 3, 9, "Ours", "", "", "dukemtmc", 89.0, 78.5, 83.8, "this paper's method; SEN"],
        ["sen", 2, 4, "+BS+MS", "", "", "market1501", 95.2, 88.1, math.nan, "this paper's method"],
        [
            "deep_miner",
            5,
            1,
            "Deep Miner",
            "",
            "Resnet50",
            "market1501",
            95.7,
            90.4,
            math.nan,
            "this paper's method",
        ],
        ["deep_miner", 5, 2, "OSNet [47]", "", "OSNet", "market1501", 94.8, 84.9, math.nan, ""],
        ["deep_miner", 5, 3, "PCB [31]", "", "Resnet50", "market1501", 92.3, 77.4, math.nan, "stripes"],
    ]
    return pd.DataFrame(data, columns=cols)


def test_sota_rows_merge_duplicates_name_the_papers_and_add_ours():
    ours = pd.DataFrame(
        [
            {
                "paper": "ours",
                "table": "measured",
                "row": "bot",
                "method": "BoT (ours)",
                "venue": "this repo",
                "backbone": "ResNet-18",
                "dataset": "market1501",
                "rank1": 60.0,
                "mAP": 36.0,
                "score": 48.0,
                "notes": "measured: ...",
            }
        ]
    )
    df = vc.sota_rows(_published(), ours, "market1501")
    assert list(df["method"]) == [
        "Deep Miner",
        "SEN",
        "OSNet",
        "PCB",
        "BoT (ours)",
    ]  # by mAP; Table 2 left out
    assert list(df["kind"]) == ["this paper", "this paper", "published", "published", "ours"]
    osnet = df[df["method"] == "OSNet"].iloc[0]
    assert osnet["source"] == "SEN Table 3; Deep Miner Table 5"
    assert (osnet["venue"], osnet["backbone"]) == ("CVPR2019", "OSNet")  # one from each table
    duke = vc.sota_rows(_published(), None, "dukemtmc")
    assert list(duke["method"]) == ["SEN"]


def test_clean_method_drops_citations_and_markers():
    assert vc.clean_method("*+ PLR OSNet [38]") == "PLR OSNet"
    assert vc.clean_method("~PSE+ECN [25]") == "PSE+ECN"
    assert vc.clean_method("Auto-ReID [38]") == "Auto-ReID"


def _boxes(ax):
    """The labels' text boxes (an Annotation's own extent would include its leader line)."""
    ax.figure.canvas.draw()  # an annotation's text is placed at draw time
    renderer = ax.figure.canvas.get_renderer()
    return [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts]


def test_sota_scatter_labels_every_method_without_overlaps():
    rng = np.random.default_rng(0)
    n = 25
    published = pd.DataFrame(
        {
            "method": [f"Method{i}" for i in range(n)],
            "kind": ["published"] * (n - 1) + ["this paper"],
            "paper": ["deep_miner"] * n,
            "rank1": rng.uniform(93, 96, n).round(1),
            "mAP": rng.uniform(82, 90, n).round(1),
        }
    )
    ours = pd.DataFrame(
        {"method": ["BoT (ours)"], "kind": ["ours"], "paper": ["ours"], "rank1": [60.0], "mAP": [35.0]}
    )
    fig = vc.sota_scatter(pd.concat([published, ours], ignore_index=True), title="Market-1501")
    overview, zoom = fig.axes
    outside = [t.get_text() for t in overview.texts]  # ours and the weakest published methods
    boxes = _boxes(zoom)
    assert "BoT (ours)" in outside and 1 < len(outside) < 10
    assert sorted(outside + [t for t, _ in boxes]) == sorted([*published["method"], "BoT (ours)"])
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i][1].overlaps(boxes[j][1]), (boxes[i][0], boxes[j][0])
    frame = zoom.get_window_extent()
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 for _, b in boxes)
    bold = [t.get_text() for t in zoom.texts if t.get_fontweight() == "bold"]
    assert bold == [f"Method{n - 1}"]  # the paper's own method is highlighted


def test_sota_scatter_is_one_panel_when_nothing_lies_outside():
    df = vc.sota_rows(_published(), None, "market1501")
    fig = vc.sota_scatter(df)
    assert len(fig.axes) == 1 and {t.get_text() for t in fig.axes[0].texts} == set(df["method"])
    with pytest.raises(ValueError, match="nothing to plot"):
        vc.sota_scatter(df.iloc[0:0])


def test_network_figure_bars_are_the_numbers():
    runs = pd.DataFrame(
        {
            "network": ["bot", "sen"],
            "dataset": ["market1501"] * 2,
            "budget": ["ResNet-18, CPU"] * 2,
            "rank1": [60.0, 64.0],
            "mAP": [36.0, 40.0],
            "mINP": [8.0, 10.0],
            "gain_rank1": [0.0, 4.0],
            "gain_mAP": [0.0, 4.0],
            "gain_mINP": [0.0, 2.0],
            "plain_mAP": [36.0, 40.0],
            "flip_mAP": [37.0, 41.0],
        }
    )
    fig = vc.network_figure(runs)
    left, right = fig.axes
    heights = [p.get_height() for p in left.patches]
    assert heights == [60.0, 64.0, 36.0, 40.0, 8.0, 10.0]
    assert [p.get_height() for p in right.patches] == [36.0, 40.0, 37.0, 41.0]
    assert "64.0\n+4.0" in _texts(fig) and "Market-1501" in fig.get_suptitle()


def test_network_figure_names_each_recipe_of_a_network():
    runs = pd.DataFrame(
        {
            "network": ["bot", "bdb", "bdb", "bdb"],
            "recipe": [f"{r}_market1501_cpu" for r in ("bot", "bdb", "bdb_faithful", "bdb_ramp")],
            "seed": [0, 0, 0, 0],
            "dataset": ["market1501"] * 4,
            "budget": ["ResNet-18, CPU"] * 4,
            "rank1": [60.0, 40.0, 38.0, 55.0],
            "mAP": [36.0, 24.0, 22.0, 35.0],
            "mINP": [8.0, 5.0, 5.0, 8.0],
        }
    )
    labels = [t.get_text() for t in vc.network_figure(runs).axes[0].get_xticklabels()]
    assert labels == ["BoT", "BDB\nseed 0", "BDB\nfaithful\nseed 0", "BDB\nramp\nseed 0"]
    one_recipe = runs.iloc[:1].assign(recipe="bot_market1501_mnv2_cpu")  # nothing to tell apart
    labels = [t.get_text() for t in vc.network_figure(one_recipe).axes[0].get_xticklabels()]
    assert labels == ["BoT"]


def test_network_figure_keeps_ten_runs_legible():
    """Ten runs (the nine committed CPU rows and one more seed): no tick or value label runs into another."""
    rows = [  # network, recipe variant, seed, rank-1, mAP, mINP
        ("bot", "", 0, 63.5, 41.9, 11.4), ("bot", "", 1, 63.5, 41.8, 11.2), ("bdb", "", 0, 42.5, 24.4, 4.9),
        ("bdb", "_faithful", 0, 39.9, 22.5, 4.9), ("bdb", "_ramp", 0, 54.9, 35.8, 8.7),
        ("sen", "", 0, 67.3, 45.8, 14.1), ("sen", "", 1, 67.0, 45.5, 13.8),
        ("deep_miner", "", 0, 52.0, 31.6, 6.7), ("deep_miner", "_ramp", 0, 57.3, 36.2, 8.3),
        ("deep_miner", "_ramp", 1, 57.0, 36.0, 8.2),
    ]  # fmt: skip
    net, variant, seed, rank1, mAP, mINP = (list(c) for c in zip(*rows, strict=True))
    runs = pd.DataFrame(
        {
            "network": net,
            "recipe": [f"{n}{v}_market1501_cpu" for n, v in zip(net, variant, strict=True)],
            "seed": seed,
            "dataset": ["market1501"] * len(rows),
            "budget": ["ResNet-18, from scratch, 128x64, 20 epochs, CPU"] * len(rows),
            "rank1": rank1,
            "mAP": mAP,
            "mINP": mINP,
            "gain_rank1": [r - 63.5 for r in rank1],
            "gain_mAP": [m - 41.85 for m in mAP],
            "gain_mINP": [m - 11.3 for m in mINP],
            **{f"{v}_mAP": [m + d for m in mAP] for v, d in (("plain", 0), ("flip", 1.2), ("rerank", 13.5))},
            "flip+rerank_mAP": [m + 14.8 for m in mAP],
        }
    )
    fig = vc.network_figure(runs)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
        assert len(ticks) == len(rows)
        assert all(a.x1 < b.x0 for a, b in zip(ticks[:-1], ticks[1:], strict=True)), "tick labels overlap"
        values = _boxes(ax)
        assert values
        for i, (text, box) in enumerate(values):
            for other, box2 in values[i + 1 :]:
                assert not box.overlaps(box2), (text, other)
