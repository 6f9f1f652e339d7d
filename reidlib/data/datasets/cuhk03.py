"""CUHK03 under the new protocol (CUHK03-NP) of Zhong et al., "Re-ranking Person Re-identification
with k-reciprocal Encoding", CVPR 2017.

Inputs, in the dataset folder (``root`` or ``cuhk03/``, ``cuhk03_release/`` below it):

- ``cuhk-03.mat`` (official release, MATLAB v7.3 = HDF5; here or in ``cuhk03_release/``): groups
  ``detected`` and ``labeled``, each a cell per camera pair holding an N x 10 cell of images (N
  identities; images 1-5 from the pair's first camera, 6-10 from its second). MATLAB stores arrays
  column-major, so HDF5 sees every array transposed: the pair cell as (10, N), an H x W x 3 image as
  (3, W, H). Empty cells are 2-element arrays.
- ``cuhk03_new_protocol_config_detected.mat`` / ``..._labeled.mat`` (MATLAB v5): ``filelist``,
  ``labels``, ``camId``, ``train_idx``, ``query_idx``, ``gallery_idx`` (1-based indices).

The images are extracted once to ``images_detected/`` / ``images_labeled/`` as PNG files named
``{campair}_{pid:03d}_{cam}_{imgidx:02d}.png``, exactly the config's ``filelist`` names. The
extraction writes a hidden temporary folder and renames it, so an interrupted run is redone from
scratch, never half-used. Once extracted, ``cuhk-03.mat`` is no longer needed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from reidlib.data.datasets.base import (
    SPLITS,
    DatasetError,
    ImageRecord,
    ReidDataset,
    check_split_size,
    find_dataset_dir,
    relabel,
)

CUHK03_FOLDERS = ("cuhk03", "cuhk03_release", "cuhk03/cuhk03_release")
MAT_NAME = "cuhk-03.mat"
VARIANTS = ("detected", "labeled")
CONFIG_FIELDS = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")
IMAGES_PER_ID = 10  # per camera pair and identity: 5 views from each of the pair's two cameras

# variant -> split -> (images, ids), from Zhong et al. 2017 (Table 1 and the released configs).
CUHK03_SIZES = {
    "detected": {"train": (7365, 767), "query": (1400, 700), "gallery": (5332, 700)},
    "labeled": {"train": (7368, 767), "query": (1400, 700), "gallery": (5328, 700)},
}


def config_name(variant: str) -> str:
    return f"cuhk03_new_protocol_config_{variant}.mat"


def load_cuhk03_detected(root: str | os.PathLike) -> ReidDataset:
    """CUHK03-NP, detector (DPM) boxes (Zhong et al. CVPR 2017; images from Li et al. CVPR 2014).

    train 7,365 images / 767 ids; query 1,400 / 700; gallery 5,332 / 700. Two cameras per camera pair
    (camids 0/1 from the config's ``camId``).
    """
    return read_cuhk03(root, "detected", expected_sizes=CUHK03_SIZES["detected"])


def load_cuhk03_labeled(root: str | os.PathLike) -> ReidDataset:
    """CUHK03-NP, hand-drawn boxes (Zhong et al. CVPR 2017; images from Li et al. CVPR 2014).

    train 7,368 images / 767 ids; query 1,400 / 700; gallery 5,328 / 700. Two cameras per camera pair
    (camids 0/1 from the config's ``camId``).
    """
    return read_cuhk03(root, "labeled", expected_sizes=CUHK03_SIZES["labeled"])


def read_cuhk03(
    root: str | os.PathLike, variant: str, *, expected_sizes: dict[str, tuple[int, int]] | None
) -> ReidDataset:
    """Extract the images of ``variant`` if needed, then build the splits from the protocol config.

    pids and cameras come from the config's ``labels`` / ``camId``, not from the file names. With
    ``expected_sizes`` (split -> (images, ids)) each split is checked.
    """
    if variant not in VARIANTS:
        raise ValueError(f"CUHK03 variant must be one of {VARIANTS}, got {variant!r}")
    folder = find_dataset_dir(Path(root), CUHK03_FOLDERS, config_name(variant))
    config = read_config(folder / config_name(variant))
    images_dir = folder / f"images_{variant}"
    if not images_dir.is_dir():
        mat_path = find_release_mat(folder)
        extract_images(mat_path, variant, images_dir)
    check_images_present(images_dir, config["filelist"])

    filelist, labels, camids = config["filelist"], config["labels"], config["camId"]
    splits = {}
    for split in SPLITS:
        records = [
            ImageRecord(str(images_dir / filelist[i]), int(labels[i]), int(camids[i]) - 1)
            for i in config[f"{split}_idx"]
        ]
        splits[split] = sorted(records, key=lambda r: r.path)
    if expected_sizes is not None:
        for split, (images, ids) in expected_sizes.items():
            check_split_size(folder / config_name(variant), split, splits[split], images, ids)
    return ReidDataset(
        f"cuhk03_{variant}", folder, relabel(splits["train"]), splits["query"], splits["gallery"]
    )


def find_release_mat(folder: Path) -> Path:
    """``cuhk-03.mat`` in the dataset folder or in ``cuhk03_release/`` below it."""
    candidates = (folder / MAT_NAME, folder / "cuhk03_release" / MAT_NAME)
    for path in candidates:
        if path.is_file():
            return path
    raise DatasetError(
        f"{folder}: images not extracted yet and no '{MAT_NAME}' to extract them from; looked for "
        + ", ".join(str(p) for p in candidates)
    )


def read_config(path: Path) -> dict[str, list | np.ndarray]:
    """The new-protocol config (MATLAB v5): file names, labels, cameras, 0-based split indices."""
    import scipy.io

    try:
        raw = scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises several types for a damaged or non-MATLAB file
        raise DatasetError(f"{path}: cannot read as a MATLAB v5 .mat file ({err})") from err
    missing = [k for k in CONFIG_FIELDS if k not in raw]
    if missing:
        raise DatasetError(f"{path}: missing field(s) {missing}; expected {list(CONFIG_FIELDS)}")
    filelist = _cell_strings(raw["filelist"])
    n = len(filelist)
    config: dict[str, list | np.ndarray] = {"filelist": filelist}
    for key in ("labels", "camId"):
        values = np.asarray(raw[key]).ravel().astype(np.int64)
        if len(values) != n:
            raise DatasetError(f"{path}: '{key}' has {len(values)} entries, 'filelist' has {n}")
        config[key] = values
    if np.any(config["camId"] < 1):
        raise DatasetError(f"{path}: 'camId' values must start at 1")
    for key in ("train_idx", "query_idx", "gallery_idx"):
        idx = np.asarray(raw[key]).ravel().astype(np.int64)
        if idx.size and (idx.min() < 1 or idx.max() > n):
            raise DatasetError(f"{path}: '{key}' must hold 1-based indices in 1..{n}")
        config[key] = idx - 1
    return config


def _cell_strings(arr: np.ndarray) -> list[str]:
    """Strings of a MATLAB cell array of strings (or of a char matrix) as loaded by scipy."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "US":
        return [str(s).strip() for s in arr.ravel()]
    return [str(np.asarray(cell).ravel()[0]).strip() for cell in arr.ravel()]


def check_images_present(images_dir: Path, filelist: list[str]) -> None:
    present = set(os.listdir(images_dir))
    missing = [name for name in filelist if name not in present]
    if missing:
        raise DatasetError(
            f"{images_dir}: {len(missing)} image(s) of the protocol config are missing (e.g. "
            f"{', '.join(missing[:3])}); delete the folder to extract the images again"
        )


def extract_images(mat_path: Path, variant: str, out_dir: Path) -> int:
    """Write every image of ``variant`` in ``cuhk-03.mat`` as PNG into ``out_dir``; return the count.

    Written into a hidden temporary folder beside ``out_dir`` that is renamed at the end.
    """
    import h5py
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    count = 0
    try:
        with h5py.File(mat_path, "r") as f:
            if variant not in f:
                raise DatasetError(f"{mat_path}: no '{variant}' entry; found {sorted(f.keys())}")
            for campair, pair_ref in enumerate(np.asarray(f[variant]).ravel(), start=1):
                cells = np.asarray(f[pair_ref])  # (10, N): MATLAB's N x 10 cell, transposed
                if cells.ndim != 2 or cells.shape[0] != IMAGES_PER_ID:
                    raise DatasetError(
                        f"{mat_path}: '{variant}' camera pair {campair} has shape {cells.shape}, expected "
                        f"({IMAGES_PER_ID}, num_ids) (an N x {IMAGES_PER_ID} MATLAB cell)"
                    )
                for pid in range(1, cells.shape[1] + 1):
                    for imgidx in range(1, IMAGES_PER_ID + 1):
                        ref = cells[imgidx - 1, pid - 1]
                        image = _matlab_image(np.asarray(f[ref]) if ref else np.zeros(2), mat_path)
                        if image is None:
                            continue
                        cam = 1 if imgidx <= IMAGES_PER_ID // 2 else 2
                        Image.fromarray(image).save(tmp / f"{campair:1d}_{pid:03d}_{cam:1d}_{imgidx:02d}.png")
                        count += 1
        if out_dir.exists():  # another process finished the same extraction first
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


def _matlab_image(arr: np.ndarray, mat_path: Path) -> np.ndarray | None:
    """An H x W x 3 uint8 image from its HDF5 form, or None for an empty cell (a 2-element array)."""
    if arr.ndim != 3:
        if arr.size <= 2:
            return None
        raise DatasetError(f"{mat_path}: image cell of shape {arr.shape}, expected 3 dimensions")
    if arr.shape[0] == 3:  # (3, W, H): MATLAB's H x W x 3, transposed
        arr = arr.T
    elif arr.shape[2] == 3:  # (W, H, 3)
        arr = arr.transpose(1, 0, 2)
    else:
        raise DatasetError(f"{mat_path}: image of shape {arr.shape} has no colour axis of size 3")
    return np.ascontiguousarray(arr, dtype=np.uint8)  # (H, W, 3)
