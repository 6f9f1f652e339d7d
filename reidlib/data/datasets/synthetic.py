"""A synthetic person re-identification dataset in Market-1501 layout, drawn from a seed.

Every test and the CPU demo run on it through the real Market-1501 parser
(:func:`reidlib.data.datasets.base.read_market_folder`), so it imitates Market-1501's layout, naming and
protocol, and is built so that re-identifying its people takes the same kind of reasoning as the
real task on a small scale, rather than being noise or a one-cue lookup.

Three steps, one module each: :mod:`reidlib.data.datasets.synthetic_plan` says who each identity is
(several cues, look-alike groups) and which image shows whom, in which camera and split, named how;
:mod:`reidlib.data.datasets.synthetic_render` draws each planned image (the camera's scene, the figure,
lighting, occluders); this module checks the arguments and writes the folder
(:func:`make_synthetic`), and re-draws the person masks of a written set (:func:`person_masks`).

Determinism. All randomness comes from ``numpy.random.default_rng`` seeded with ``seed`` plus a
fixed tag, never a global RNG or the clock; JPEGs are written with fixed options. The same arguments
give byte-identical files on the same numpy / Pillow versions, and different seeds give different
people, cameras and splits. ``synthetic.json`` in the root records the arguments and the per-split
counts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reidlib.data.datasets.base import SPLIT_FOLDERS
from reidlib.data.datasets.synthetic_plan import NUM_CAMERAS, SyntheticDatasetError, check_seed, plan_images
from reidlib.data.datasets.synthetic_render import camera, draw, render_jpeg
from reidlib.utils.checks import check_int

DEFAULT_TRAIN_IDS = 100
DEFAULT_TEST_IDS = 100
META_FILE = "synthetic.json"
FORMAT_VERSION = 1


def _check_int(name: str, value: Any, low: int) -> int:
    try:
        return check_int(name, value, low)
    except ValueError as err:
        raise SyntheticDatasetError(str(err)) from None


def _check_root(root: Path, overwrite: bool) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise SyntheticDatasetError(f"{root}: exists and is not a folder; choose another output folder")
    if not any(root.iterdir()):
        return
    if not overwrite:
        raise SyntheticDatasetError(
            f"{root}: folder exists and is not empty; pass --overwrite (overwrite=True in Python) "
            f"to replace it, "
            "or choose another output folder"
        )
    if not (root / META_FILE).is_file():
        raise SyntheticDatasetError(
            f"{root}: refusing to replace a non-empty folder without {META_FILE} "
            "(overwrite=True only replaces a dataset written by make_synthetic)"
        )
    foreign = _foreign_files(root)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise SyntheticDatasetError(
            f"{root}: holds files the synthetic set did not write ({shown}); overwrite replaces the set "
            "only: move them out first, or choose another output folder"
        )


def _foreign_files(root: Path) -> list[str]:
    """The files and folders under ``root`` (relative paths) that the set its ``synthetic.json``
    describes did not write: what overwriting must never delete."""
    try:
        args = json.loads((root / META_FILE).read_text(encoding="utf-8"))["args"]
        _, specs = _cameras_and_plan(args)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SyntheticDatasetError(f"{root / META_FILE}: not a synthetic dataset's record ({err})") from err
    own = {META_FILE, *SPLIT_FOLDERS.values()}
    own |= {f"{SPLIT_FOLDERS[spec['split']]}/{spec['name']}" for spec in specs}
    found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    return [name for name in found if name not in own]


def _split_counts(specs: list[dict]) -> dict[str, Any]:
    """Per-split stats as the parser sees them (junk dropped, pid 0 one id), and file counts."""
    out: dict[str, Any] = {}
    for split in SPLIT_FOLDERS:
        kept = [s for s in specs if s["split"] == split and s["pid"] != -1]
        out[split] = {
            "images": len(kept),
            "ids": len({s["pid"] for s in kept}),
            "cameras": len({s["cam"] for s in kept}),
        }
    gallery = [s for s in specs if s["split"] == "gallery"]
    out["files"] = {
        folder: sum(s["split"] == split for s in specs) for split, folder in SPLIT_FOLDERS.items()
    }
    out["gallery_junk"] = sum(s["pid"] == -1 for s in gallery)
    out["gallery_distractors"] = sum(s["pid"] == 0 for s in gallery)
    return out


def _checked_args(
    num_ids: int | None,
    num_train_ids: int | None,
    num_test_ids: int | None,
    num_distractors: int | None,
    num_junk: int | None,
    images_per_id: tuple[int, int],
    seed: int,
    height: int,
    width: int,
) -> dict[str, Any]:
    """The arguments of :func:`make_synthetic`, checked, with the defaults filled in (the ``args`` of
    ``synthetic.json``, in its order)."""
    if num_ids is not None:
        if num_train_ids is not None or num_test_ids is not None:
            raise SyntheticDatasetError(
                "give either num_ids (train = test = num_ids) or num_train_ids / num_test_ids, not both"
            )
        num_train_ids = num_test_ids = _check_int("num_ids", num_ids, 1)
    num_train_ids = _check_int(
        "num_train_ids", DEFAULT_TRAIN_IDS if num_train_ids is None else num_train_ids, 1
    )
    num_test_ids = _check_int("num_test_ids", DEFAULT_TEST_IDS if num_test_ids is None else num_test_ids, 1)
    if num_train_ids + num_test_ids > 9999:
        raise SyntheticDatasetError(
            f"num_train_ids + num_test_ids must be <= 9999 (4-digit pids), got {num_train_ids + num_test_ids}"
        )
    num_distractors = _check_int(
        "num_distractors", 2 * num_test_ids if num_distractors is None else num_distractors, 0
    )
    num_junk = _check_int("num_junk", num_test_ids if num_junk is None else num_junk, 0)
    try:
        lo, hi = (int(v) for v in images_per_id)
    except (TypeError, ValueError):
        raise SyntheticDatasetError(f"images_per_id must be (min, max), got {images_per_id!r}") from None
    if not 4 <= lo <= hi <= 1000:
        raise SyntheticDatasetError(
            f"images_per_id must be (min, max) with 4 <= min <= max <= 1000, got {images_per_id!r}"
        )
    return {
        "num_train_ids": num_train_ids,
        "num_test_ids": num_test_ids,
        "num_distractors": num_distractors,
        "num_junk": num_junk,
        "images_per_id": [lo, hi],
        "seed": check_seed(seed),
        "height": _check_int("height", height, 32),
        "width": _check_int("width", width, 16),
    }


def _cameras_and_plan(args: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """The six cameras and the planned images of the set made with ``args`` (``synthetic.json``)."""
    seed, size = args["seed"], (args["height"], args["width"])
    cams = [camera(seed, c, *size) for c in range(NUM_CAMERAS)]
    counts = [args[k] for k in ("num_train_ids", "num_test_ids", "num_distractors", "num_junk")]
    return cams, plan_images(seed, *counts, tuple(args["images_per_id"]), cams)


def _write_folder(root: Path, meta: dict, cams: list[dict], specs: list[dict], overwrite: bool) -> None:
    """Every image and ``synthetic.json`` into a temporary sibling folder, then renamed to ``root``."""
    args = meta["args"]
    size, seed = (args["height"], args["width"]), args["seed"]
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        os.chmod(tmp, 0o755)
        for folder in SPLIT_FOLDERS.values():
            (tmp / folder).mkdir()
        for spec in specs:
            data = render_jpeg(spec, cams[spec["cam"]], size, seed)
            (tmp / SPLIT_FOLDERS[spec["split"]] / spec["name"]).write_bytes(data)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, root, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def make_synthetic(
    root: str | os.PathLike,
    *,
    num_ids: int | None = None,
    num_train_ids: int | None = None,
    num_test_ids: int | None = None,
    num_distractors: int | None = None,
    num_junk: int | None = None,
    images_per_id: tuple[int, int] = (10, 20),
    seed: int = 0,
    height: int = 128,
    width: int = 64,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic dataset (see the module docstring) under ``root`` and return ``root``.

    Identities: ``num_ids`` sets both the train and the test ids (train = test = ``num_ids``); or give
    ``num_train_ids`` / ``num_test_ids`` separately (default 100 each; not together with ``num_ids``).
    ``num_distractors`` pid-0 gallery images (default 2 per test id) and ``num_junk`` pid -1 gallery
    images (default 1 per test id). Each identity gets ``images_per_id`` = (min, max) images (min >= 4:
    two cameras, two images each). Images are ``height`` x ``width`` (Market: 128 x 64).

    Written into a temporary sibling folder, then renamed to ``root``. A non-empty ``root`` is an error
    unless ``overwrite=True``, which replaces it only if it holds a ``synthetic.json`` (a previous
    output), so a wrong path never deletes someone's data. The defaults (about 3,300 images, 14 MB)
    take about 7 s on one CPU core; ``num_train_ids=8, num_test_ids=6`` (about 215 images) 0.5 s.
    """
    args = _checked_args(
        num_ids, num_train_ids, num_test_ids, num_distractors, num_junk, images_per_id, seed, height, width
    )
    root = Path(root).expanduser()
    _check_root(root, overwrite)
    cams, specs = _cameras_and_plan(args)
    meta = {
        "generator": "reidlib.data.datasets.synthetic.make_synthetic",
        "format_version": FORMAT_VERSION,
        "args": args,
        "counts": _split_counts(specs),
        "software": {"numpy": np.__version__, "pillow": Image.__version__},
    }
    _write_folder(root, meta, cams, specs, overwrite)
    return root


def person_masks(root: str | os.PathLike, paths: list[str | os.PathLike]) -> np.ndarray:
    """(N, H, W) float32 in [0, 1]: where each image of a synthetic dataset shows its own person.

    Re-drawn from ``root/synthetic.json`` (the arguments the set was made with), so nothing beside the
    images is stored: pixel (y, x) of image i is the share of that pixel covered by the figure of the
    image's pid, less what an occluder in front of it hides; a background-only crop is all 0.
    ``paths`` are image files under ``root`` (any split).
    """
    root = Path(root)
    meta_path = root / META_FILE
    try:
        args = json.loads(meta_path.read_text(encoding="utf-8"))["args"]
    except (OSError, ValueError, KeyError) as err:
        raise SyntheticDatasetError(f"{meta_path}: not a synthetic dataset's record ({err})") from err
    size = (args["height"], args["width"])
    cams, specs = _cameras_and_plan(args)
    by_file = {(SPLIT_FOLDERS[s["split"]], s["name"]): s for s in specs}
    masks = np.zeros((len(paths), *size), np.float32)
    for i, path in enumerate(paths):
        key = (Path(path).parent.name, Path(path).name)
        if key not in by_file:
            raise SyntheticDatasetError(f"{path}: not an image of the synthetic set in {root}")
        spec = by_file[key]
        masks[i] = draw(spec, cams[spec["cam"]], size, args["seed"])[1]
    return masks


def _replace_dir(tmp: Path, root: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``root``; an old ``root`` is moved aside first and deleted afterwards."""
    _check_root(root, overwrite)  # again: something may have appeared while we were drawing
    if not root.exists():
        os.rename(tmp, root)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
    old.rmdir()
    os.rename(root, old)
    try:
        os.rename(tmp, root)
    except BaseException:
        os.rename(old, root)
        raise
    shutil.rmtree(old, ignore_errors=True)
