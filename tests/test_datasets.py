"""Dataset parsers on tiny fake datasets written to tmp_path; expectations are written out by hand."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

import reidlib.data.datasets as datasets
from reidlib.data.datasets import DatasetError, ImageRecord, cuhk03, load_dataset, market, msmt17


def _tiny_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 8), (120, 30, 200)).save(buf, format="JPEG")  # 8 x 4 (H x W)
    return buf.getvalue()


JPEG = _tiny_jpeg()

# A tiny Market-layout set: junk (-1), distractors (0000), a doubled extension and stray files.
MARKET_FILES = {
    "bounding_box_train": [
        "0015_c3s1_000100_01.jpg",
        "0002_c1s1_000451_03.jpg",
        "0007_c2s1_000301_00.jpg",
        "0007_c6s1_000176_02.jpg",
        "0002_c4s1_000051_01.jpg",
        "Thumbs.db",
    ],
    "query": [
        "0003_c1s1_001051_00.jpg",
        "1488_c1s6_023021_00.jpg.jpg",
        "Thumbs.db",
        ".DS_Store",
    ],
    "bounding_box_test": [
        "0003_c2s1_000301_01.jpg",
        "1488_c2s3_065527_02.jpg.jpg",
        "0000_c1s6_023071_04.jpg",
        "0000_c5s3_071737_02.jpg",
        "-1_c1s1_000401_03.jpg",
        "-1_c4s6_022316_11.jpg.jpg",
        "readme.txt",
    ],
}


def make_market_layout(folder: Path, files: dict[str, list[str]] = MARKET_FILES) -> Path:
    for sub, names in files.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            (folder / sub / name).write_bytes(JPEG if ".jp" in name else b"stray")
    return folder


def names(records: list[ImageRecord]) -> list[tuple[str, int, int]]:
    return [(Path(r.path).name, r.pid, r.camid) for r in records]


# ---------------------------------------------------------------- Market layout


def test_folder_splits_relabel_junk_distractors_strays(tmp_path):
    ds = load_dataset("folder", make_market_layout(tmp_path / "mine"))
    assert ds.name == "folder" and ds.root == tmp_path / "mine"
    # train pids 2, 7, 15 -> 0, 1, 2; camids c1..c6 -> 0..5; sorted by file name; Thumbs.db ignored
    assert names(ds.train) == [
        ("0002_c1s1_000451_03.jpg", 0, 0),
        ("0002_c4s1_000051_01.jpg", 0, 3),
        ("0007_c2s1_000301_00.jpg", 1, 1),
        ("0007_c6s1_000176_02.jpg", 1, 5),
        ("0015_c3s1_000100_01.jpg", 2, 2),
    ]
    assert names(ds.query) == [("0003_c1s1_001051_00.jpg", 3, 0), ("1488_c1s6_023021_00.jpg.jpg", 1488, 0)]
    # junk (-1, also with .jpg.jpg) dropped, pid 0 distractors kept, readme.txt ignored
    assert names(ds.gallery) == [
        ("0000_c1s6_023071_04.jpg", 0, 0),
        ("0000_c5s3_071737_02.jpg", 0, 4),
        ("0003_c2s1_000301_01.jpg", 3, 1),
        ("1488_c2s3_065527_02.jpg.jpg", 1488, 1),
    ]
    assert Path(ds.gallery[0].path) == tmp_path / "mine" / "bounding_box_test" / "0000_c1s6_023071_04.jpg"
    assert ds.stats() == {
        "train": {"images": 5, "ids": 3, "cameras": 5},
        "query": {"images": 2, "ids": 2, "cameras": 1},
        "gallery": {"images": 4, "ids": 3, "cameras": 3},
    }
    assert datasets.dataset_stats(ds) == ds.stats()


def test_non_parsing_image_name_names_the_file(tmp_path):
    files = {**MARKET_FILES, "query": ["0003_c1s1_001051_00.jpg", "frame_12.jpg"]}
    with pytest.raises(DatasetError, match="frame_12.jpg"):
        load_dataset("folder", make_market_layout(tmp_path, files))


def test_camera_zero_is_an_error(tmp_path):
    files = {**MARKET_FILES, "query": ["0003_c0s1_001051_00.jpg"]}
    with pytest.raises(DatasetError, match="0003_c0s1_001051_00.jpg"):
        load_dataset("folder", make_market_layout(tmp_path, files))


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(DatasetError, match=str(tmp_path / "nowhere")):
        load_dataset("market1501", tmp_path / "nowhere")


def test_missing_split_folder_names_the_path(tmp_path):
    files = {k: v for k, v in MARKET_FILES.items() if k != "query"}
    make_market_layout(tmp_path, files)
    with pytest.raises(DatasetError, match=str(tmp_path / "query")):
        load_dataset("folder", tmp_path)


def test_no_train_folder_lists_the_places_looked(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="bounding_box_train") as err:
        load_dataset("market1501", tmp_path / "empty")
    assert "Market-1501-v15.09.15" in str(err.value)


def test_market1501_size_mismatch_names_folder_and_counts(tmp_path):
    make_market_layout(tmp_path / "Market-1501")
    with pytest.raises(DatasetError) as err:
        load_dataset("market1501", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "Market-1501" / "bounding_box_train") in msg
    assert "5 images / 3 ids" in msg  # what is there
    assert "12936 images / 751 ids" in msg  # what the release has


@pytest.mark.parametrize("folder_name", market.MARKET1501_FOLDERS)
def test_market1501_root_may_be_the_parent(tmp_path, monkeypatch, folder_name):
    # hand counts of MARKET_FILES: the size check passes, so the whole path is exercised
    sizes = {"train": (5, 3), "query": (2, 2), "gallery": (4, 3)}
    monkeypatch.setattr(market, "MARKET1501_SIZES", sizes)
    make_market_layout(tmp_path / folder_name)
    for root in (tmp_path, tmp_path / folder_name):
        ds = load_dataset("market1501", root)
        assert ds.name == "market1501" and ds.root == tmp_path / folder_name
        assert len(ds.train) == 5 and len(ds.gallery) == 4


def test_dukemtmc_root_parent_and_size_check(tmp_path, monkeypatch):
    files = {
        "bounding_box_train": ["0005_c2_f0046182.jpg", "0001_c8_f0000001.jpg"],
        "query": ["0002_c1_f0040000.jpg"],
        "bounding_box_test": ["0002_c5_f0049999.jpg", "0009_c3_f0011111.jpg"],
    }
    make_market_layout(tmp_path / "DukeMTMC-reID", files)
    with pytest.raises(DatasetError, match="2 images / 2 ids.*16522 images / 702 ids"):
        load_dataset("dukemtmc", tmp_path)
    monkeypatch.setattr(market, "DUKEMTMC_SIZES", {"train": (2, 2), "query": (1, 1), "gallery": (2, 2)})
    ds = load_dataset("dukemtmc", tmp_path)
    assert names(ds.train) == [("0001_c8_f0000001.jpg", 0, 7), ("0005_c2_f0046182.jpg", 1, 1)]
    assert names(ds.gallery) == [("0002_c5_f0049999.jpg", 2, 4), ("0009_c3_f0011111.jpg", 9, 2)]


def test_default_root_is_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_DATA", str(tmp_path))
    monkeypatch.setattr(market, "MARKET1501_SIZES", {"train": (5, 3), "query": (2, 2), "gallery": (4, 3)})
    make_market_layout(tmp_path / "market1501" / "Market-1501-v15.09.15")
    ds = load_dataset("market1501")
    assert ds.root == tmp_path.resolve() / "market1501" / "Market-1501-v15.09.15"


def test_folder_needs_a_root():
    with pytest.raises(ValueError, match="folder"):
        load_dataset("folder")


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError, match="unknown dataset 'market'") as err:
        load_dataset("market", "/tmp")
    for name in ("market1501", "dukemtmc", "cuhk03_detected", "cuhk03_labeled", "msmt17", "folder"):
        assert name in str(err.value)


def test_unknown_option_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown option.*relabel.*'folder'"):
        load_dataset("folder", tmp_path, relabel=False)
    with pytest.raises(ValueError, match="accepted: include_val"):
        load_dataset("msmt17", tmp_path, include_vall=False)


def test_format_stats_table(tmp_path):
    ds = load_dataset("folder", make_market_layout(tmp_path))
    lines = datasets.format_stats_table(ds).splitlines()
    assert lines[0].startswith("folder")
    assert lines[1].split() == ["split", "images", "ids", "cameras"]
    assert [line.split() for line in lines[2:]] == [
        ["train", "5", "3", "5"],
        ["query", "2", "2", "1"],
        ["gallery", "4", "3", "3"],
    ]


def test_make_synthetic_is_reexported():
    from reidlib.data.datasets.synthetic import make_synthetic

    assert datasets.make_synthetic is make_synthetic


# ---------------------------------------------------------------- CUHK03


def matlab_image(campair: int, pid: int, imgidx: int, height: int = 6, width: int = 4) -> np.ndarray:
    """A distinct H x W x 3 image (MATLAB orientation) for every cell; not symmetric in H and W."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = campair * 40
    img[..., 1] = pid * 20 + imgidx
    img[..., 2] = np.arange(height)[:, None] * 10 + np.arange(width)[None, :]
    return img


# camera pair -> identities -> the image indices (1..10) present; the others are empty cells
FAKE_CELLS = {
    "detected": {1: {1: [1, 2, 6], 2: [1, 7]}, 2: {1: [3, 8, 9]}},
    "labeled": {1: {1: [1, 6], 2: [2, 7]}, 2: {1: [1, 6]}},
}


def write_fake_release_mat(path: Path, *, wh3: tuple[str, int, int, int] | None = None) -> None:
    """``cuhk-03.mat`` as MATLAB v7.3 writes it: every array transposed, cells as object references.

    ``wh3`` = (variant, campair, pid, imgidx) of one image stored as (W, H, 3) instead of (3, W, H).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        counter = iter(range(10_000))

        def store(data: np.ndarray) -> h5py.Reference:
            ds = refs.create_dataset(f"r{next(counter)}", data=data)
            return ds.ref

        for variant, pairs in FAKE_CELLS.items():
            pair_refs = []
            for campair, ids in pairs.items():
                num_ids = max(ids)
                cells = np.empty((10, num_ids), dtype=object)  # MATLAB's num_ids x 10, transposed
                for pid in range(1, num_ids + 1):
                    for imgidx in range(1, 11):
                        if imgidx in ids.get(pid, []):
                            img = matlab_image(campair, pid, imgidx)
                            if wh3 == (variant, campair, pid, imgidx):
                                data = img.transpose(1, 0, 2)  # (W, H, 3)
                            else:
                                data = img.T  # (3, W, H)
                        else:
                            data = np.zeros(2, np.uint64)  # MATLAB's empty cell
                        cells[imgidx - 1, pid - 1] = store(data)
                pair_refs.append(store(cells.astype(h5py.ref_dtype)))
            f.create_dataset(variant, data=np.array([pair_refs], dtype=h5py.ref_dtype))  # (1, P)


def fake_filelist(variant: str) -> list[str]:
    return [
        f"{campair}_{pid:03d}_{1 if imgidx <= 5 else 2}_{imgidx:02d}.png"
        for campair, ids in FAKE_CELLS[variant].items()
        for pid, idxs in ids.items()
        for imgidx in idxs
    ]


def write_fake_config(path: Path, variant: str, labels, cams, train, query, gallery) -> None:
    filelist = fake_filelist(variant)
    cell = np.empty((len(filelist), 1), dtype=object)
    for i, name in enumerate(filelist):
        cell[i, 0] = name
    col = lambda xs: np.array(xs, dtype=np.float64).reshape(-1, 1)  # noqa: E731 (MATLAB doubles)
    scipy.io.savemat(
        str(path),
        {
            "filelist": cell,
            "labels": col(labels),
            "camId": col(cams),
            "train_idx": col(train),
            "query_idx": col(query),
            "gallery_idx": col(gallery),
        },
    )


# detected filelist: 1_001_1_01, 1_001_1_02, 1_001_2_06, 1_002_1_01, 1_002_2_07, 2_001_1_03, 2_001_2_08,
# 2_001_2_09. Labels are global ids that differ from the names on purpose.
DETECTED_CONFIG = dict(
    labels=[11, 11, 11, 40, 40, 25, 25, 25],
    cams=[1, 1, 2, 1, 2, 1, 2, 2],
    train=[1, 2, 3, 4, 5],
    query=[6],
    gallery=[8, 7],
)
# labeled filelist: 1_001_1_01, 1_001_2_06, 1_002_1_02, 1_002_2_07, 2_001_1_01, 2_001_2_06
LABELED_CONFIG = dict(
    labels=[5, 5, 3, 3, 9, 9], cams=[1, 2, 1, 2, 1, 2], train=[1, 2, 3, 4], query=[5], gallery=[6]
)


def make_fake_cuhk03(folder: Path, mat_dir: str = "cuhk03_release", **mat_kwargs) -> Path:
    write_fake_release_mat(folder / mat_dir / "cuhk-03.mat", **mat_kwargs)
    write_fake_config(folder / cuhk03.config_name("detected"), "detected", **DETECTED_CONFIG)
    write_fake_config(folder / cuhk03.config_name("labeled"), "labeled", **LABELED_CONFIG)
    return folder


def test_cuhk03_extracts_images_in_image_orientation(tmp_path):
    folder = make_fake_cuhk03(tmp_path / "cuhk03", wh3=("detected", 2, 1, 9))
    cuhk03.read_cuhk03(folder, "detected", expected_sizes=None)
    out = folder / "images_detected"
    assert sorted(p.name for p in out.iterdir()) == sorted(fake_filelist("detected"))
    for campair, ids in FAKE_CELLS["detected"].items():
        for pid, idxs in ids.items():
            for imgidx in idxs:
                cam = 1 if imgidx <= 5 else 2
                got = np.asarray(Image.open(out / f"{campair}_{pid:03d}_{cam}_{imgidx:02d}.png"))
                np.testing.assert_array_equal(got, matlab_image(campair, pid, imgidx))  # (6, 4, 3)
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_cuhk03_detected_splits_from_config(tmp_path):
    folder = make_fake_cuhk03(tmp_path)
    ds = cuhk03.read_cuhk03(tmp_path, "detected", expected_sizes=None)
    assert ds.name == "cuhk03_detected" and ds.root == folder
    # train: labels 11, 11, 11, 40, 40 -> 0, 0, 0, 1, 1; cameras camId - 1
    assert names(ds.train) == [
        ("1_001_1_01.png", 0, 0),
        ("1_001_1_02.png", 0, 0),
        ("1_001_2_06.png", 0, 1),
        ("1_002_1_01.png", 1, 0),
        ("1_002_2_07.png", 1, 1),
    ]
    assert names(ds.query) == [("2_001_1_03.png", 25, 0)]
    assert names(ds.gallery) == [("2_001_2_08.png", 25, 1), ("2_001_2_09.png", 25, 1)]  # sorted by name
    assert Path(ds.query[0].path) == folder / "images_detected" / "2_001_1_03.png"


def test_cuhk03_labeled_from_the_same_mat(tmp_path):
    make_fake_cuhk03(tmp_path)
    ds = cuhk03.read_cuhk03(tmp_path, "labeled", expected_sizes=None)
    assert names(ds.train) == [
        ("1_001_1_01.png", 1, 0),
        ("1_001_2_06.png", 1, 1),
        ("1_002_1_02.png", 0, 0),
        ("1_002_2_07.png", 0, 1),
    ]
    assert names(ds.query) == [("2_001_1_01.png", 9, 0)]
    assert names(ds.gallery) == [("2_001_2_06.png", 9, 1)]
    assert (tmp_path / "images_labeled").is_dir() and not (tmp_path / "images_detected").exists()


def test_cuhk03_works_from_extracted_images_without_the_mat(tmp_path):
    make_fake_cuhk03(tmp_path)
    first = cuhk03.read_cuhk03(tmp_path, "detected", expected_sizes=None)
    (tmp_path / "cuhk03_release" / "cuhk-03.mat").unlink()
    assert cuhk03.read_cuhk03(tmp_path, "detected", expected_sizes=None) == first
    with pytest.raises(DatasetError, match="cuhk-03.mat"):  # labeled was never extracted
        cuhk03.read_cuhk03(tmp_path, "labeled", expected_sizes=None)


def test_cuhk03_mat_in_the_dataset_folder(tmp_path):
    make_fake_cuhk03(tmp_path, mat_dir=".")
    ds = cuhk03.read_cuhk03(tmp_path, "detected", expected_sizes=None)
    assert len(ds.train) == 5


def test_cuhk03_interrupted_extraction_leaves_nothing(tmp_path, monkeypatch):
    make_fake_cuhk03(tmp_path)
    real_save, calls = Image.Image.save, []

    def failing_save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        cuhk03.read_cuhk03(tmp_path, "detected", expected_sizes=None)
    assert not (tmp_path / "images_detected").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    monkeypatch.setattr(Image.Image, "save", real_save)
    # a partial folder left by a killed run is ignored; the extraction is redone in full
    (tmp_path / ".images_detected.x.partial").mkdir()
    (tmp_path / ".images_detected.x.partial" / "1_001_1_01.png").write_bytes(b"half")
    ds = cuhk03.read_cuhk03(tmp_path, "detected", expected_sizes=None)
    assert len(list((tmp_path / "images_detected").iterdir())) == 8
    assert Image.open(ds.train[0].path).size == (4, 6)


def test_cuhk03_missing_extracted_image(tmp_path):
    make_fake_cuhk03(tmp_path)
    cuhk03.read_cuhk03(tmp_path, "detected", expected_sizes=None)
    (tmp_path / "images_detected" / "1_002_2_07.png").unlink()
    with pytest.raises(DatasetError, match="1_002_2_07.png"):
        cuhk03.read_cuhk03(tmp_path, "detected", expected_sizes=None)


def test_cuhk03_official_size_check(tmp_path):
    make_fake_cuhk03(tmp_path / "cuhk03")
    with pytest.raises(DatasetError, match="5 images / 2 ids.*7365 images / 767 ids"):
        load_dataset("cuhk03_detected", tmp_path)
    with pytest.raises(DatasetError, match="4 images / 2 ids.*7368 images / 767 ids"):
        load_dataset("cuhk03_labeled", tmp_path)


def test_cuhk03_bad_config_index(tmp_path):
    make_fake_cuhk03(tmp_path)
    write_fake_config(
        tmp_path / cuhk03.config_name("detected"), "detected", **{**DETECTED_CONFIG, "query": [9]}
    )
    with pytest.raises(DatasetError, match="query_idx"):
        cuhk03.read_cuhk03(tmp_path, "detected", expected_sizes=None)


def test_cuhk03_missing_config(tmp_path):
    with pytest.raises(DatasetError, match="cuhk03_new_protocol_config_labeled.mat"):
        load_dataset("cuhk03_labeled", tmp_path)


# ---------------------------------------------------------------- MSMT17

# (list file, relative path, pid); the test lists restart their pids at 0 like the release
MSMT_LISTS = {
    "list_train.txt": [
        ("0000/0000_000_01_0303morning_0015_0.jpg", 0),
        ("0000/0000_001_05_0303noon_0100_1.jpg", 0),
        ("0004/0004_000_15_0304afternoon_0003_0.jpg", 4),
    ],
    "list_val.txt": [("0002/0002_000_12_0303morning_0900_0.jpg", 2)],
    "list_query.txt": [("0000/0000_000_03_0113morning_0009_0.jpg", 0)],
    "list_gallery.txt": [
        ("0000/0000_001_07_0113noon_0061_2.jpg", 0),
        ("0001/0001_000_03_0113noon_0001_0.jpg", 1),
    ],
}


def make_msmt17(folder: Path, release: str, lists=MSMT_LISTS) -> Path:
    train_dir, test_dir = msmt17.IMAGE_FOLDERS[release]
    for list_name, entries in lists.items():
        image_dir = folder / (train_dir if list_name in ("list_train.txt", "list_val.txt") else test_dir)
        for rel, _ in entries:
            (image_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (image_dir / rel).write_bytes(JPEG)
        (folder / list_name).write_text("".join(f"{rel} {pid}\n" for rel, pid in entries))
    return folder


@pytest.mark.parametrize(("release", "folder_name"), [("v1", "MSMT17_V1"), ("v2", "MSMT17_V2")])
def test_msmt17_both_releases(tmp_path, release, folder_name):
    make_msmt17(tmp_path / folder_name, release)
    ds = msmt17.read_msmt17(tmp_path, expected_sizes=None)
    assert ds.root == tmp_path / folder_name
    # train = list_train + list_val, pids 0, 2, 4 -> 0, 1, 2; camera = third name field - 1
    assert names(ds.train) == [
        ("0000_000_01_0303morning_0015_0.jpg", 0, 0),
        ("0000_001_05_0303noon_0100_1.jpg", 0, 4),
        ("0002_000_12_0303morning_0900_0.jpg", 1, 11),
        ("0004_000_15_0304afternoon_0003_0.jpg", 2, 14),
    ]
    assert names(ds.query) == [("0000_000_03_0113morning_0009_0.jpg", 0, 2)]
    assert names(ds.gallery) == [
        ("0000_001_07_0113noon_0061_2.jpg", 0, 6),
        ("0001_000_03_0113noon_0001_0.jpg", 1, 2),
    ]
    train_dir, test_dir = msmt17.IMAGE_FOLDERS[release]
    assert Path(ds.train[0].path).parent.parent == tmp_path / folder_name / train_dir
    assert Path(ds.query[0].path).parent.parent == tmp_path / folder_name / test_dir


def test_msmt17_without_val_and_size_check(tmp_path, monkeypatch):
    make_msmt17(tmp_path / "msmt17", "v1")
    with pytest.raises(DatasetError, match="4 images / 3 ids.*32621 images / 1041 ids"):
        load_dataset("msmt17", tmp_path)
    monkeypatch.setattr(msmt17, "MSMT17_SIZES", {"train": (4, 3), "query": (1, 1), "gallery": (2, 2)})
    monkeypatch.setattr(msmt17, "MSMT17_TRAIN_ONLY_SIZE", (3, 2))
    assert len(load_dataset("msmt17", tmp_path).train) == 4
    ds = load_dataset("msmt17", tmp_path, include_val=False)
    assert [(r.pid, r.camid) for r in ds.train] == [(0, 0), (0, 4), (1, 14)]


def test_msmt17_missing_listed_image(tmp_path):
    make_msmt17(tmp_path, "v1")
    (tmp_path / "test" / "0001" / "0001_000_03_0113noon_0001_0.jpg").unlink()
    with pytest.raises(DatasetError, match="list_gallery.txt.*0001_000_03_0113noon_0001_0.jpg"):
        msmt17.read_msmt17(tmp_path)


def test_msmt17_bad_name_and_bad_line(tmp_path):
    lists = {**MSMT_LISTS, "list_query.txt": [("0000/query_7.jpg", 0)]}
    make_msmt17(tmp_path / "a", "v1", lists)
    with pytest.raises(DatasetError, match="query_7.jpg"):
        msmt17.read_msmt17(tmp_path / "a")
    lists = {**MSMT_LISTS, "list_query.txt": [("0000/0000_000_16_0113morning_0009_0.jpg", 0)]}
    make_msmt17(tmp_path / "b", "v1", lists)
    with pytest.raises(DatasetError, match="camera 16"):
        msmt17.read_msmt17(tmp_path / "b")
    make_msmt17(tmp_path / "c", "v1")
    (tmp_path / "c" / "list_val.txt").write_text("0002/0002_000_12_0303morning_0900_0.jpg\n")
    with pytest.raises(DatasetError, match="list_val.txt:1"):
        msmt17.read_msmt17(tmp_path / "c")


def test_msmt17_no_image_folder(tmp_path):
    (tmp_path / "list_train.txt").write_text("")
    with pytest.raises(DatasetError, match="'train/' or 'mask_train_v2/'"):
        msmt17.read_msmt17(tmp_path)


def test_a_synthetic_set_written_on_first_use_says_where(tmp_path, monkeypatch, capsys):
    import reidlib.data.datasets as datasets

    real = datasets.make_synthetic
    monkeypatch.setattr(datasets, "make_synthetic", lambda root: real(root, num_train_ids=8, num_test_ids=6))
    root = tmp_path / "new_root"
    ds = datasets.load_dataset("synthetic", root)
    assert ds.name == "synthetic" and len(ds.train) > 0
    assert f"{root} holds no dataset: writing the synthetic set there" in capsys.readouterr().out
    datasets.load_dataset("synthetic", root)  # the second time it is read, silently
    assert capsys.readouterr().out == ""
