"""The plan of the synthetic set: who each identity is, and which image shows whom, where and how.

Identities. An identity is defined by several cues (see :func:`describe_identity`):

- upper clothing: colour, pattern (``plain``, ``hstripes``, ``vstripes``, ``checks``, or ``print``:
  a chest patch seen only from the front), second colour, stripe period, long or short sleeves;
- lower clothing: colour and style (``trousers``, ``shorts``, ``skirt``);
- shoe colour, skin tone, hair colour and length (long hair covers the upper back);
- build (height and width factors);
- an optional bag: a ``backpack`` (seen from the back and the side, hidden from the front) or a
  ``shoulder`` bag at the hip (seen from the back and the side).

Pids are grouped in blocks of 12 consecutive pids, cut into groups of 1-4; all members of a group
share the dominant cue (the whole upper-clothing description) and get distinct lower-clothing
colours, so a model that only looks at the shirt confuses them and has to use the lower clothing,
shoes, bag, hair or build. Train and test pids are drawn at random from 1..N, so a group can span
both splits, as similar-looking people do.

Splits, like Market-1501 (:func:`plan_images`). ``bounding_box_train/`` holds the train ids; the test
ids are disjoint. Every identity is seen by 2-6 cameras and has 10-20 images (``images_per_id``), at
least two per camera; within one camera a person forms a track (same viewpoint, mostly, and similar
scale, like consecutive frames). For each test id, ``query/`` holds one image per camera the id
appears in, and ``bounding_box_test/`` (the gallery) holds the rest, so every query has matches in
other cameras. The gallery also holds distractors (pid ``0000``: people who are neither train nor
test ids, half of them in a test id's shirt) and junk (pid ``-1``: background-only crops and badly
cropped fragments of test people), which the parser drops. Names follow Market:
``PPPP_cCsS_FFFFFF_NN.jpg`` (pid, camera 1-6, sequence, frame, box index), e.g.
``0007_c3s1_000123_02.jpg``.

All randomness comes from ``numpy.random.default_rng`` seeded with ``seed`` plus a fixed tag
(:func:`rng_for`), never a global RNG or the clock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reidlib.data.datasets.base import DatasetError
from reidlib.utils.checks import check_int

NUM_CAMERAS = 6

# Tags mixed into the seed so each kind of draw has its own stream (camera and image: the renderer).
TAG_GROUPS, TAG_GROUP_CUES, TAG_ID_CUES, TAG_CAMERA, TAG_SPLIT, TAG_IMAGE = range(1, 7)
_GROUP_BLOCK = 12
_GROUP_SIZES, _GROUP_SIZE_P = (1, 2, 3, 4), (0.3, 0.3, 0.25, 0.15)
VIRTUAL_PID_BASE = 1_000_000  # distractors and background pedestrians: people outside 1..N

CLOTHING_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (32, 32, 36),
    "white": (225, 225, 218),
    "grey": (128, 128, 128),
    "navy": (32, 42, 92),
    "blue": (42, 92, 190),
    "lightblue": (125, 172, 222),
    "red": (192, 32, 38),
    "darkred": (112, 22, 32),
    "green": (42, 132, 62),
    "olive": (112, 112, 52),
    "yellow": (226, 200, 52),
    "orange": (230, 122, 32),
    "pink": (230, 142, 172),
    "purple": (112, 52, 142),
    "brown": (102, 66, 40),
    "beige": (202, 182, 142),
}
LOWER_COLOURS = ("black", "navy", "blue", "grey", "beige", "brown", "white", "olive", "darkred", "lightblue")
SHOE_COLOURS = ("black", "white", "brown", "grey", "red", "blue")
BAG_COLOURS = ("black", "brown", "red", "blue", "green", "grey", "beige", "yellow")
SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "light": (240, 206, 182),
    "fair": (224, 180, 146),
    "medium": (190, 140, 100),
    "tan": (142, 96, 66),
    "dark": (96, 66, 46),
}
HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (22, 20, 20),
    "darkbrown": (62, 40, 26),
    "brown": (112, 76, 46),
    "blond": (202, 172, 102),
    "grey": (152, 150, 148),
    "auburn": (142, 62, 32),
}
UPPER_PATTERNS = ("plain", "hstripes", "vstripes", "checks", "print")
_PATTERN_P = (0.35, 0.2, 0.15, 0.15, 0.15)
VIEWS = ("front", "back", "side")

_CAMERA_P = np.array([0.2, 0.19, 0.18, 0.15, 0.13, 0.15])
_CAMS_PER_ID, _CAMS_PER_ID_P = (2, 3, 4, 5, 6), (0.15, 0.3, 0.25, 0.18, 0.12)


class SyntheticDatasetError(DatasetError):
    """Bad arguments to :func:`reidlib.data.datasets.synthetic.make_synthetic`, or a root it refuses to
    write to."""


def check_seed(seed: Any) -> int:
    try:
        return check_int("seed", seed, 0)
    except ValueError as err:
        raise SyntheticDatasetError(str(err)) from None


# --------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------


def rng_for(*key: int) -> np.random.Generator:
    """The random stream of one kind of draw: ``seed`` and a ``TAG_*`` first, then the draw's own keys."""
    return np.random.default_rng([int(k) for k in key])


def jitter(rng: np.random.Generator, rgb: tuple[int, int, int], sd: float) -> list[int]:
    """``rgb`` with Gaussian noise of ``sd`` per channel, rounded and clipped to 0..255."""
    return [int(v) for v in np.clip(np.round(np.asarray(rgb) + rng.normal(0.0, sd, 3)), 0, 255)]


def _group_of(pid: int, seed: int) -> tuple[int, int, int]:
    """(block, group index in the block, member index in the group) of ``pid``."""
    block, pos = divmod(pid - 1, _GROUP_BLOCK)
    sizes = rng_for(seed, TAG_GROUPS, block).choice(_GROUP_SIZES, size=_GROUP_BLOCK, p=_GROUP_SIZE_P)
    start = 0
    for g, size in enumerate(sizes):
        if pos < start + size:
            return block, g, pos - start
        start += int(size)
    raise AssertionError("unreachable: group sizes cover the block")


def describe_identity(pid: int, seed: int = 0) -> dict[str, Any]:
    """The cues of identity ``pid`` (>= 1) in the dataset generated from ``seed``.

    A pure function of (pid, seed), so a notebook can show what a pid should look like. The
    ``group`` entry is shared by identities that wear the same upper clothing.
    """
    try:
        check_int("pid", pid, 1)
    except ValueError as err:
        raise SyntheticDatasetError(str(err)) from None
    seed = check_seed(seed)
    block, group, member = _group_of(int(pid), seed)
    g = rng_for(seed, TAG_GROUP_CUES, block, group)
    names = list(CLOTHING_COLOURS)
    c1 = names[g.integers(len(names))]
    c2 = [n for n in names if n != c1][g.integers(len(names) - 1)]
    upper = {
        "colour": c1,
        "rgb": jitter(g, CLOTHING_COLOURS[c1], 8.0),
        "pattern": UPPER_PATTERNS[g.choice(len(UPPER_PATTERNS), p=_PATTERN_P)],
        "colour2": c2,
        "rgb2": jitter(g, CLOTHING_COLOURS[c2], 8.0),
        "period": round(float(g.uniform(0.03, 0.055)), 4),  # stripe period, fraction of body height
        "sleeves": "long" if g.random() < 0.6 else "short",
    }
    lower_name = LOWER_COLOURS[g.permutation(len(LOWER_COLOURS))[member]]  # distinct within a group

    r = rng_for(seed, TAG_ID_CUES, int(pid))
    lower = {
        "colour": lower_name,
        "rgb": jitter(r, CLOTHING_COLOURS[lower_name], 8.0),
        "style": ("trousers", "shorts", "skirt")[r.choice(3, p=(0.65, 0.2, 0.15))],
    }
    shoe = SHOE_COLOURS[r.integers(len(SHOE_COLOURS))]
    skin = list(SKIN_TONES)[r.integers(len(SKIN_TONES))]
    hair = list(HAIR_COLOURS)[r.integers(len(HAIR_COLOURS))]
    bag_kind = ("none", "backpack", "shoulder")[r.choice(3, p=(0.45, 0.3, 0.25))]
    bag_colour = BAG_COLOURS[r.integers(len(BAG_COLOURS))]
    bag_side = ("left", "right")[r.integers(2)]
    return {
        "pid": int(pid),
        "group": f"{block}-{group}",
        "upper": upper,
        "lower": lower,
        "shoes": {"colour": shoe, "rgb": jitter(r, CLOTHING_COLOURS[shoe], 6.0)},
        "skin": {"tone": skin, "rgb": jitter(r, SKIN_TONES[skin], 5.0)},
        "hair": {
            "colour": hair,
            "rgb": jitter(r, HAIR_COLOURS[hair], 6.0),
            "length": "long" if r.random() < 0.35 else "short",
        },
        "bag": None
        if bag_kind == "none"
        else {
            "kind": bag_kind,
            "colour": bag_colour,
            "side": bag_side,
            "rgb": jitter(r, CLOTHING_COLOURS[bag_colour], 8.0),
        },
        "build": {
            "height": round(float(r.uniform(0.92, 1.05)), 4),
            "width": round(float(r.uniform(0.85, 1.18)), 4),
        },
    }


# --------------------------------------------------------------------------------------------
# The plan: which image goes where, named how
# --------------------------------------------------------------------------------------------


def _file_name(pid: int, cam: int, seq: int, frame: int, box: int) -> str:
    pid_str = "-1" if pid == -1 else f"{pid:04d}"
    return f"{pid_str}_c{cam + 1}s{seq}_{frame:06d}_{box:02d}.jpg"


class _Specs:
    """The planned images in order, each under a file name unique within its split."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self._names: set[tuple[str, str]] = set()

    def add(self, split: str, pid: int, cam: int, seq: int, frame: int, box: int, **what: Any) -> None:
        name = _file_name(pid, cam, seq, frame, box)
        while (split, name) in self._names:  # only pid 0 / -1 can collide: move to the next frame
            frame = (frame + 1) % 1_000_000
            name = _file_name(pid, cam, seq, frame, box)
        self._names.add((split, name))
        self.items.append(
            {"index": len(self.items), "split": split, "name": name, "pid": pid, "cam": cam, **what}
        )


def _track(rng: np.random.Generator, cam: dict) -> dict:
    """A person's habits in one camera: viewpoint, facing, scale."""
    view = int(rng.choice(3, p=cam["view_p"]))
    return {
        "view": view,
        "facing": int(rng.choice([-1, 1])),
        "scale": cam["scale"] * rng.uniform(0.95, 1.05),
    }


def _plan_identity(
    specs: _Specs,
    rng: np.random.Generator,
    pid: int,
    train: bool,
    seed: int,
    images_per_id: tuple[int, int],
    cams: list[dict],
) -> None:
    """The images of one identity: its cameras, a track in each, and (test ids) one query per camera."""
    ident = describe_identity(pid, seed)
    n = int(rng.integers(images_per_id[0], images_per_id[1] + 1))
    k = min(int(rng.choice(_CAMS_PER_ID, p=_CAMS_PER_ID_P)), n // 2)
    id_cams = sorted(int(c) for c in rng.choice(NUM_CAMERAS, size=k, replace=False, p=_CAMERA_P))
    counts = 2 + rng.multinomial(n - 2 * k, rng.dirichlet(np.full(k, 2.0)))  # >= 2 per camera
    for cam, m in zip(id_cams, counts, strict=True):
        t = _track(rng, cams[cam])
        seq = int(rng.integers(1, 7))
        frames = int(rng.integers(0, 900_000)) + np.cumsum(rng.integers(3, 40, m))
        boxes = rng.choice([1, 2, 3], size=m, p=[0.75, 0.18, 0.07])
        query_i = int(rng.integers(m)) if not train else -1
        for i in range(m):
            view = t["view"] if rng.random() > 0.15 else int(rng.integers(3))  # the person turns
            split = "train" if train else ("query" if i == query_i else "gallery")
            specs.add(
                split,
                pid,
                cam,
                seq,
                int(frames[i]),
                int(boxes[i]),
                kind="person",
                ident=ident,
                view=VIEWS[view],
                facing=t["facing"],
                scale=t["scale"],
            )


def _plan_distractor(
    specs: _Specs, rng: np.random.Generator, i: int, test_pids: list[int], seed: int, cams: list[dict]
) -> None:
    """Gallery image of distractor ``i``: a person outside 1..N, half of them in a test id's shirt."""
    ident = describe_identity(VIRTUAL_PID_BASE + i + 1, seed)
    if test_pids and rng.random() < 0.5:
        twin = describe_identity(test_pids[int(rng.integers(len(test_pids)))], seed)
        ident["upper"] = twin["upper"]
        if ident["lower"]["colour"] == twin["lower"]["colour"]:
            name = LOWER_COLOURS[(LOWER_COLOURS.index(twin["lower"]["colour"]) + 1) % len(LOWER_COLOURS)]
            ident["lower"] = {**ident["lower"], "colour": name, "rgb": list(CLOTHING_COLOURS[name])}
    cam = int(rng.choice(NUM_CAMERAS, p=_CAMERA_P))
    t = _track(rng, cams[cam])
    specs.add(
        "gallery",
        0,
        cam,
        int(rng.integers(1, 7)),
        int(rng.integers(0, 1_000_000)),
        int(rng.integers(1, 4)),
        kind="person",
        ident=ident,
        view=VIEWS[t["view"]],
        facing=t["facing"],
        scale=t["scale"],
    )


def _plan_junk(specs: _Specs, rng: np.random.Generator, test_pids: list[int], seed: int) -> None:
    """One junk gallery image: a background-only crop or a fragment of a test person."""
    cam = int(rng.choice(NUM_CAMERAS, p=_CAMERA_P))
    fragment = bool(test_pids) and rng.random() < 0.5
    what: dict[str, Any] = {"kind": "junk_background"}
    if fragment:
        what = {
            "kind": "junk_fragment",
            "view": VIEWS[int(rng.integers(3))],
            "facing": int(rng.choice([-1, 1])),
            "ident": describe_identity(test_pids[int(rng.integers(len(test_pids)))], seed),
        }
    specs.add(
        "gallery",
        -1,
        cam,
        int(rng.integers(1, 7)),
        int(rng.integers(0, 1_000_000)),
        int(rng.integers(1, 4)),
        **what,
    )


def plan_images(
    seed: int,
    num_train_ids: int,
    num_test_ids: int,
    num_distractors: int,
    num_junk: int,
    images_per_id: tuple[int, int],
    cams: list[dict],
) -> list[dict]:
    """Every image to draw: split, file name, pid, camera and what it shows, in a fixed order (the
    identities, the distractors, the junk). ``cams`` are the cameras' habits (``view_p``, ``scale``)."""
    rng = rng_for(seed, TAG_SPLIT)
    order = rng.permutation(np.arange(1, num_train_ids + num_test_ids + 1))
    train_pids = {int(p) for p in order[:num_train_ids]}
    test_pids = sorted(int(p) for p in order[num_train_ids:])
    specs = _Specs()
    for pid in range(1, num_train_ids + num_test_ids + 1):
        _plan_identity(specs, rng, pid, pid in train_pids, seed, images_per_id, cams)
    for i in range(num_distractors):
        _plan_distractor(specs, rng, i, test_pids, seed, cams)
    for _ in range(num_junk):
        _plan_junk(specs, rng, test_pids, seed)
    return specs.items
