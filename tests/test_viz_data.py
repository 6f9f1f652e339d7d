"""reidlib.viz.data: dataset statistics checked against hand-counted tiny datasets, and the figures."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from reidlib.data import stats
from reidlib.data.datasets import DatasetError, ImageRecord, ReidDataset, load_folder
from reidlib.experiments.paper_results import sen_table1_row
from reidlib.viz import data as vdata

# ----------------------------------------------------------------------------- a hand-counted dataset
# train: pid 0 in cams 0, 1 (2 images); pid 1 in cam 1 (1 image)
# query: pid 5 cam 0, pid 6 cam 1
# gallery: pid 5 cam 1, pid 6 cam 0, pid 0 (distractor) cam 2 twice, pid 9 (no query: distractor) cam 1
R = ImageRecord
HAND = ReidDataset(
    "hand",
    Path("/nonexistent"),
    train=[R("t0", 0, 0), R("t1", 0, 1), R("t2", 1, 1)],
    query=[R("q0", 5, 0), R("q1", 6, 1)],
    gallery=[R("g0", 5, 1), R("g1", 6, 0), R("g2", 0, 2), R("g3", 0, 2), R("g4", 9, 1)],
)


def _write_image(path: Path, height: int, width: int, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (200, 40, 90)).save(path, format=fmt)


def test_distractors_are_gallery_ids_without_query():
    assert stats.distractor_pids(HAND) == {0, 9}


def test_table1_row_counts_by_hand():
    sizes = {
        "height_min": 8,
        "height_median": 8.0,
        "height_max": 8,
        "width_min": 4,
        "width_median": 4.0,
        "width_max": 4,
        "resolution": "fixed",
        "images_examined": 10,
        "sampled": False,
    }
    row = stats.table1_row(HAND, sizes, junk=7)
    assert row["dataset"] == "hand" and row["source"] == "measured"
    assert (row["train_ids"], row["train_images"]) == (2, 3)
    assert (row["query_ids"], row["query_images"]) == (2, 2)
    assert (row["gallery_ids"], row["gallery_images"]) == (4, 5)  # pids 5, 6, 0, 9
    assert row["cameras"] == 3  # cams 0, 1, 2 over all splits
    assert (row["train_cameras"], row["query_cameras"], row["gallery_cameras"]) == (2, 2, 3)
    assert row["resolution"] == "fixed" and row["height_max"] == 8
    assert row["junk_images"] == 7
    assert (row["distractor_ids"], row["distractor_images"]) == (2, 3)


def test_table1_keeps_integers_and_leaves_missing_cells_empty():
    row = stats.table1_row(HAND, {"height_min": 8, "height_median": 8.0, "resolution": "fixed"}, junk=None)
    table = stats.table1([row, stats.absent_row("dukemtmc", "absent: x"), sen_table1_row("market1501")])
    assert list(table.columns) == list(stats.TABLE1_COLUMNS)
    assert list(table["source"]) == ["measured", "absent", "SEN Table 1"]
    assert str(table["train_images"].dtype) == "Int64"
    assert table.loc[0, "train_images"] == 3 and pd.isna(table.loc[1, "train_images"])
    assert pd.isna(table.loc[0, "junk_images"])
    assert table.loc[2, "gallery_images"] == 19732 and table.loc[2, "train_ids"] == 751
    assert ",3.0," not in table.to_csv(index=False)  # counts stay integers in the CSV
    assert sen_table1_row("synthetic") is None


def test_camera_counts_by_hand():
    got = stats.camera_counts(HAND)
    want = pd.DataFrame(
        [
            ("train", 0, 1, 1),
            ("train", 1, 2, 2),
            ("query", 0, 1, 1),
            ("query", 1, 1, 1),
            ("gallery", 0, 1, 1),
            ("gallery", 1, 2, 2),
            ("gallery", 2, 2, 1),
        ],
        columns=["split", "camid", "images", "ids"],
    )
    pd.testing.assert_frame_equal(got, want)


def test_identity_table_by_hand():
    got = stats.identity_table(HAND)
    want = pd.DataFrame(
        [
            ("train", 0, 2, 2, False),
            ("train", 1, 1, 1, False),
            ("query", 5, 1, 1, False),
            ("query", 6, 1, 1, False),
            ("gallery", 0, 2, 1, True),
            ("gallery", 5, 1, 1, False),
            ("gallery", 6, 1, 1, False),
            ("gallery", 9, 1, 1, True),
        ],
        columns=["split", "pid", "images", "cameras", "distractor"],
    )
    pd.testing.assert_frame_equal(got, want)


def test_dataset_summary_per_identity():
    summary = stats.dataset_summary(
        HAND, {"resolution": "fixed"}, None, stats.camera_counts(HAND), stats.identity_table(HAND)
    )
    assert summary["per_identity"]["train"]["images_per_identity"] == {"min": 1, "median": 1.5, "max": 2}
    assert summary["per_identity"]["gallery"]["images_per_identity"]["max"] == 1  # distractors left out
    assert summary["distractor_images"] == 3 and summary["junk_images"] is None


# ----------------------------------------------------------------------------- image sizes


def test_image_size_stats_by_hand(tmp_path):
    shapes = [(10, 20), (12, 20), (30, 40)]  # (height, width)
    paths = []
    for i, (h, w) in enumerate(shapes):
        paths.append(tmp_path / f"{i}.png")
        _write_image(paths[-1], h, w, "PNG")
    s = stats.image_size_stats(paths)
    assert (s["height_min"], s["height_median"], s["height_max"]) == (10, 12.0, 30)
    assert (s["width_min"], s["width_median"], s["width_max"]) == (20, 20.0, 40)
    assert s["resolution"] == "vary" and s["images_examined"] == 3 and s["sampled"] is False
    same = stats.image_size_stats(paths[:1] * 2)
    assert same["resolution"] == "fixed"
    sample = stats.image_size_stats(paths, max_images=2, seed=1)
    assert sample["images_examined"] == 2 and sample["sampled"] is True


def test_image_size_stats_reads_headers_only(tmp_path):
    """A JPEG cut after its header still gives its size: the pixels are never decoded."""
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
    data = buf.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert stats.image_size_stats([path])["height_max"] == 64


def test_image_size_stats_errors(tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"hello")
    with pytest.raises(DatasetError, match="not_an_image.jpg"):
        stats.image_size_stats([bad])
    with pytest.raises(ValueError, match="paths"):
        stats.image_size_stats([])


def test_count_junk_in_market_layout(tmp_path):
    names = {
        "bounding_box_train": ["0001_c1s1_000001_01.jpg", "0002_c2s1_000002_01.jpg"],
        "query": ["0003_c1s1_000003_01.jpg"],
        "bounding_box_test": [
            "-1_c1s1_000004_01.jpg",
            "-1_c2s1_000005_01.jpg",
            "0000_c3s1_000006_01.jpg",
            "0003_c2s1_000007_01.jpg",
        ],
    }
    for folder, files in names.items():
        for name in files:
            _write_image(tmp_path / folder / name, 8, 4)
    ds = load_folder(tmp_path)
    assert stats.count_junk(ds) == 2
    assert len(ds.gallery) == 2  # the parser dropped the junk
    assert stats.count_junk(HAND) is None  # no Market-layout folders


# ----------------------------------------------------------------------------- loading


def test_dataset_root_rules(tmp_path):
    (tmp_path / "market1501").mkdir()
    assert stats.dataset_root("market1501", "", several=True) is None
    assert stats.dataset_root("market1501", tmp_path, several=False) == tmp_path
    assert stats.dataset_root("market1501", tmp_path, several=True) == tmp_path / "market1501"
    assert stats.dataset_root("dukemtmc", tmp_path, several=True) == tmp_path  # no dukemtmc/ below
    assert stats.dataset_root("synthetic", tmp_path, several=True) == tmp_path / "synthetic"


def test_load_datasets_single_missing_raises(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        stats.load_datasets(["market1501"], tmp_path / "nowhere")


def test_load_datasets_survey_notes_absent(tiny_synthetic):
    present, absent = stats.load_datasets(["synthetic", "market1501"], tiny_synthetic.parent)
    assert list(present) == ["synthetic"] and present["synthetic"].root == tiny_synthetic
    assert list(absent) == ["market1501"] and absent["market1501"].startswith("absent: ")
    assert "\n" not in absent["market1501"]


def test_load_datasets_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        stats.load_datasets(["market"], tmp_path)
    with pytest.raises(ValueError, match="non-empty list"):
        stats.load_datasets([], tmp_path)
    with pytest.raises(ValueError, match="non-empty list"):
        stats.load_datasets("synthetic", tmp_path)
    with pytest.raises(ValueError, match="repeated"):
        stats.load_datasets(["synthetic", "synthetic"], tmp_path)
    with pytest.raises(DatasetError, match="none of the datasets"):
        stats.load_datasets(["market1501", "dukemtmc"], tmp_path)


# ----------------------------------------------------------------------------- sampling


def test_sample_per_camera_prefers_distinct_identities():
    records = [R(f"a{i}", pid, 0) for i, pid in enumerate([1, 1, 1, 2, 2, 3])] + [R("b0", 4, 3)]
    out = stats.sample_per_camera(records, 3, seed=5)
    assert list(out) == [0, 3]
    assert sorted(r.pid for r in out[0]) == [1, 2, 3]  # three distinct pids exist, so three are taken
    assert out[3] == [R("b0", 4, 3)]  # fewer than k: all of them
    more = stats.sample_per_camera(records, 5, seed=5)[0]
    assert len(more) == 5 and len({r.pid for r in more[:3]}) == 3
    assert all(r.camid == 0 for r in more)
    assert stats.sample_per_camera(records, 3, seed=5) == out  # seeded
    with pytest.raises(ValueError, match="samples_per_camera"):
        stats.sample_per_camera(records, 0)


# ----------------------------------------------------------------------------- figures


def test_plot_images_per_camera():
    fig = vdata.plot_images_per_camera(stats.camera_counts(HAND), "hand")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xlabel() and ax.get_ylabel() == "images" and ax.get_title() == "hand"
    assert len(ax.patches) >= 7  # one bar per (split, camera) row


def test_plot_identity_distributions():
    fig = vdata.plot_identity_distributions(stats.identity_table(HAND), "hand")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() == "identities" and ax.get_title()


def test_plot_samples_per_camera(tmp_path):
    records = []
    for cam in range(2):
        for pid in range(3):
            path = tmp_path / f"{pid}_{cam}.png"
            _write_image(path, 16, 8, "PNG")
            records.append(R(str(path), pid, cam))
    samples = stats.sample_per_camera(records, 2)
    images = stats.sample_images(samples)
    assert images[0][0][0].shape == (16, 8, 3) and images[0][0][1] == samples[0][0]
    fig = vdata.plot_samples_per_camera(images, "grid")
    assert isinstance(fig, Figure) and len(fig.axes) == 4  # 2 cameras x 2 images
    assert fig.axes[0].get_ylabel() == "camera 0" and fig.axes[2].get_ylabel() == "camera 1"
    first = samples[0][0]
    assert fig.axes[0].get_title() == f"pid {first.pid} / cam 0"
