"""The synthetic dataset: deterministic, Market-1501 layout, atomic, and a real (not trivial) task."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidlib.data.datasets import synthetic
from reidlib.data.datasets.base import DatasetError, read_market_folder, split_stats
from reidlib.data.datasets.synthetic import SyntheticDatasetError, make_synthetic
from reidlib.data.datasets.synthetic_plan import describe_identity
from reidlib.data.datasets.synthetic_render import person_labels

SMALL = {"num_train_ids": 8, "num_test_ids": 6}  # the set the tests and the quick checks use
TINY = {"num_train_ids": 1, "num_test_ids": 1, "images_per_id": (4, 4), "num_distractors": 1, "num_junk": 1}
FOLDERS = ("bounding_box_train", "query", "bounding_box_test")
NAME = re.compile(r"^(-1|\d{4})_c([1-6])s([1-6])_(\d{6})_(\d{2})\.jpg$")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth") / "small", seed=0, **SMALL)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def splits(root: Path, drop_junk: bool = True) -> dict[str, list]:
    return {f: read_market_folder(root / f, drop_junk=drop_junk) for f in FOLDERS}


# ---------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(small, tmp_path):
    again = make_synthetic(tmp_path / "again", seed=0, **SMALL)
    first, second = file_hashes(small), file_hashes(again)
    assert len(first) > 200
    assert list(first) == list(second)  # same names in the same folders
    assert first == second  # same bytes


def test_different_seed_gives_different_data(small, tmp_path):
    other = make_synthetic(tmp_path / "other", seed=1, **SMALL)
    first, second = file_hashes(small), file_hashes(other)
    images = [k for k in first if k.endswith(".jpg")]
    assert set(images) != {k for k in second if k.endswith(".jpg")}
    shared_bytes = {first[k] for k in images} & set(second.values())
    assert not shared_bytes  # not a single image is the same


def test_describe_identity_is_a_pure_function_of_pid_and_seed():
    assert describe_identity(5, seed=3) == describe_identity(5, seed=3)
    assert describe_identity(5, seed=3) != describe_identity(5, seed=4)
    assert describe_identity(5, seed=3) != describe_identity(6, seed=3)
    with pytest.raises(SyntheticDatasetError, match="pid"):
        describe_identity(0)
    with pytest.raises(SyntheticDatasetError, match="seed"):
        describe_identity(1, seed=-1)


# ---------------------------------------------------------------------------- layout and protocol


def test_file_names_and_images_follow_market(small):
    for folder in FOLDERS:
        names = [p.name for p in (small / folder).iterdir()]
        assert names, folder
        for name in names:
            assert NAME.match(name), f"{folder}/{name}"
        with Image.open(small / folder / names[0]) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 128))
    assert sorted(p.name for p in small.iterdir()) == sorted([*FOLDERS, "synthetic.json"])


def test_parser_reads_a_market_like_split(small):
    s = splits(small)
    raw = splits(small, drop_junk=False)
    train, query, gallery = s["bounding_box_train"], s["query"], s["bounding_box_test"]
    train_ids = {r.pid for r in train}
    test_ids = {r.pid for r in query}
    assert len(train_ids) == 8 and len(test_ids) == 6
    assert not train_ids & test_ids
    assert min(train_ids | test_ids) >= 1
    # junk (-1) only in the gallery folder, distractors (0) only in the gallery
    for folder in ("bounding_box_train", "query"):
        assert {r.pid for r in raw[folder]} & {-1, 0} == set(), folder
    assert any(r.pid == -1 for r in raw["bounding_box_test"])
    assert any(r.pid == 0 for r in gallery)
    assert {r.pid for r in gallery} == test_ids | {0}
    for split in (train, query, gallery):
        assert {r.camid for r in split} == set(range(6))

    cams = defaultdict(set)
    for r in train + query + gallery:
        if r.pid > 0:
            cams[r.pid].add(r.camid)
    assert all(len(c) >= 2 for c in cams.values())  # every identity seen by >= 2 cameras
    per_id = defaultdict(int)
    for r in train + query + gallery:
        per_id[r.pid] += r.pid > 0
    assert all(10 <= per_id[p] <= 20 for p in train_ids | test_ids)

    # one query per (test id, camera), and a gallery match in another camera for every query
    q_per_cam = defaultdict(int)
    for r in query:
        q_per_cam[r.pid, r.camid] += 1
    assert set(q_per_cam.values()) == {1}
    for r in query:
        assert any(g.pid == r.pid and g.camid != r.camid for g in gallery), r.path
        assert {g.camid for g in gallery if g.pid == r.pid} >= {q.camid for q in query if q.pid == r.pid}


def test_synthetic_json_counts_agree_with_the_files(small):
    meta = json.loads((small / "synthetic.json").read_text())
    assert meta["args"] == {
        "num_train_ids": 8,
        "num_test_ids": 6,
        "num_distractors": 12,
        "num_junk": 6,
        "images_per_id": [10, 20],
        "seed": 0,
        "height": 128,
        "width": 64,
    }
    s, raw = splits(small), splits(small, drop_junk=False)
    counts = meta["counts"]
    assert counts["train"] == split_stats(s["bounding_box_train"])
    assert counts["query"] == split_stats(s["query"])
    assert counts["gallery"] == split_stats(s["bounding_box_test"])
    assert counts["files"] == {f: len(list((small / f).iterdir())) for f in FOLDERS}
    assert counts["gallery_junk"] == sum(r.pid == -1 for r in raw["bounding_box_test"]) == 6
    assert counts["gallery_distractors"] == sum(r.pid == 0 for r in raw["bounding_box_test"]) == 12


def test_num_ids_sets_train_and_test(tmp_path):
    root = make_synthetic(tmp_path / "d", num_ids=2, images_per_id=(4, 5), num_distractors=0, num_junk=0)
    args = json.loads((root / "synthetic.json").read_text())["args"]
    assert (args["num_train_ids"], args["num_test_ids"]) == (2, 2)
    assert len({r.pid for r in read_market_folder(root / "bounding_box_train")}) == 2
    assert len({r.pid for r in read_market_folder(root / "query")}) == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_ids": 2, "num_train_ids": 3}, "num_ids"),
        ({"num_ids": 0}, "num_ids"),
        ({"num_train_ids": 0}, "num_train_ids"),
        ({"num_test_ids": 5000, "num_train_ids": 5000}, "9999"),
        ({"num_junk": -1}, "num_junk"),
        ({"images_per_id": (3, 5)}, "images_per_id"),
        ({"images_per_id": (8, 6)}, "images_per_id"),
        ({"images_per_id": 10}, "images_per_id"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"height": 8}, "height"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises(SyntheticDatasetError, match=match):
        make_synthetic(tmp_path / "d", **kwargs)
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------- atomic writes


def test_existing_root_is_refused_unless_overwrite(tmp_path):
    root = tmp_path / "d"
    root.mkdir()  # an empty folder is fine
    make_synthetic(root, seed=0, **TINY)
    before = file_hashes(root)
    with pytest.raises(DatasetError, match="overwrite=True"):
        make_synthetic(root, seed=1, **TINY)
    assert file_hashes(root) == before

    make_synthetic(root, seed=1, overwrite=True, **TINY)
    after = file_hashes(root)
    assert after != before and json.loads((root / "synthetic.json").read_text())["args"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary or old folder left


def test_overwrite_never_deletes_a_folder_it_did_not_write(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    (root / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(SyntheticDatasetError, match="synthetic.json"):
        make_synthetic(root, overwrite=True, **TINY)
    assert (root / "holiday.jpg").read_bytes() == b"precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(SyntheticDatasetError, match="not a folder"):
        make_synthetic(tmp_path / "file", **TINY)


def test_a_failure_half_way_leaves_nothing_behind(tmp_path, monkeypatch):
    real_render, calls = synthetic.render_jpeg, []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_jpeg", failing_render)
    with pytest.raises(RuntimeError, match="disk full"):
        make_synthetic(tmp_path / "d", **TINY)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- the cues are real


def test_groups_share_the_upper_clothing_and_differ_below():
    groups = defaultdict(list)
    for pid in range(1, 201):
        cues = describe_identity(pid, seed=0)
        groups[cues["group"]].append(cues)
    multi = [g for g in groups.values() if len(g) >= 2]
    assert len(multi) >= 20  # many identities have a look-alike
    for members in multi:
        assert all(m["upper"] == members[0]["upper"] for m in members)
        lowers = [m["lower"]["colour"] for m in members]
        assert len(set(lowers)) == len(lowers)


def hand_made_identity(bag_kind: str) -> dict:
    return {
        "upper": {
            "rgb": [200, 0, 0],
            "rgb2": [0, 0, 200],
            "pattern": "print",
            "period": 0.04,
            "sleeves": "long",
        },
        "lower": {"rgb": [0, 0, 100], "style": "trousers"},
        "shoes": {"rgb": [10, 10, 10]},
        "skin": {"rgb": [220, 180, 150]},
        "hair": {"rgb": [30, 20, 20], "length": "short"},
        "bag": {"kind": bag_kind, "rgb": [0, 150, 0], "side": "left"},
        "build": {"height": 1.0, "width": 1.0},
    }


@pytest.mark.parametrize("bag_kind", ["backpack", "shoulder"])
def test_bag_is_hidden_from_the_front_and_seen_from_back_and_side(bag_kind):
    ident = hand_made_identity(bag_kind)
    bag, print_patch = 6, 7  # label values documented in person_labels
    seen = {}
    for view in ("front", "back", "side"):
        labels = person_labels((256, 128), ident, view, 1, 64.0, 10.0, 230.0, 0.3)
        assert labels.shape == (256, 128) and labels.dtype == np.uint8
        assert (labels > 0).mean() > 0.1  # a figure was drawn
        seen[view] = (int((labels == bag).sum()), int((labels == print_patch).sum()))
    assert seen["front"][0] == 0
    assert seen["back"][0] > 100 and seen["side"][0] > 100
    assert seen["front"][1] > 100 and seen["back"][1] == seen["side"][1] == 0  # chest print: front only


def colour_histograms(records, bins: int = 4, stripes: int = 2) -> np.ndarray:
    """A deliberately simple descriptor: joint RGB histograms of horizontal stripes of the centre.

    Centre crop (the person), grey-world colour constancy (divide by the image's mean colour),
    ``bins`` levels per channel, L1-normalised per stripe.
    """
    feats = []
    for r in records:
        with Image.open(r.path) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float64)[8:120, 20:44]
        a = np.clip(a / a.reshape(-1, 3).mean(axis=0) * 110, 0, 255).astype(int) // (256 // bins)
        parts = []
        for stripe in np.array_split(a, stripes, axis=0):
            idx = (stripe[..., 0] * bins + stripe[..., 1]) * bins + stripe[..., 2]
            h = np.bincount(idx.ravel(), minlength=bins**3).astype(np.float64)
            parts.append(h / h.sum())
        feats.append(np.concatenate(parts))
    return np.stack(feats)


def test_a_colour_histogram_matcher_beats_chance_but_is_not_perfect(small):
    """Rank-1 of a histogram nearest neighbour, standard protocol, against the chance rate.

    Chance, per query: (matches in other cameras) / (gallery items left after removing the same
    pid in the same camera), averaged over queries. Measured with this matcher on the small set for
    seeds 0-9: chance 0.09-0.12, rank-1 0.45-0.87 (0.65 for seed 0, tested here). On raw colours of
    the whole image it scores 0.0-0.04, below chance: a camera's backgrounds mislead it.
    """
    query = read_market_folder(small / "query")
    gallery = read_market_folder(small / "bounding_box_test")
    qf, gf = colour_histograms(query), colour_histograms(gallery)
    hits, chance, n = 0, 0.0, 0
    for i, q in enumerate(query):
        valid = [j for j, g in enumerate(gallery) if not (g.pid == q.pid and g.camid == q.camid)]
        matches = [j for j in valid if gallery[j].pid == q.pid]
        assert matches
        best = min(valid, key=lambda j: np.abs(qf[i] - gf[j]).sum())
        hits += gallery[best].pid == q.pid
        chance += len(matches) / len(valid)
        n += 1
    rank1, chance = hits / n, chance / n
    assert 0.05 < chance < 0.2
    assert rank1 > chance + 0.25 and rank1 > 3 * chance
    assert rank1 < 0.95
