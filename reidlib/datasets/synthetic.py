"""A synthetic person re-identification dataset in Market-1501 layout, drawn from a seed.

Every test and the CPU demo run on it through the real Market-1501 parser
(:func:`reidlib.datasets.base.read_market_folder`), so it imitates Market-1501's layout, naming and
protocol, and is built so that re-identifying its people takes the same kind of reasoning as the
real task on a small scale, rather than being noise or a one-cue lookup.

Identities. Each person is a simple articulated figure (head, neck, torso, two arms, two legs,
shoes) drawn at twice the size and averaged down (smooth edges), with cylindrical shading. An
identity is defined by several cues (see :func:`describe_identity`):

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

Cameras. Six cameras, each with its own scene (wall texture: bricks, panels with windows, foliage
or a plain gradient; floor: tiles or plain; a few poles), lighting (colour cast, brightness,
contrast), preferred viewpoint (front / back / side), typical person scale, blur and sensor noise,
and occlusion rate. Within one camera a person forms a track (same viewpoint, mostly, and similar
scale, like consecutive frames), between cameras the viewpoint and lighting change. Each image
adds scale jitter, a small translation, a walking phase, brightness jitter, and in a fraction of
images an occluder: a rectangle at a border (pole, car, sign) or a second pedestrian at the side.

Splits, like Market-1501. ``bounding_box_train/`` holds the train ids; the test ids are disjoint.
Every identity is seen by 2-6 cameras and has 10-20 images (``images_per_id``), at least two per
camera. For each test id, ``query/`` holds one image per camera the id appears in, and
``bounding_box_test/`` (the gallery) holds the rest, so every query has matches in other cameras.
The gallery also holds distractors (pid ``0000``: people who are neither train nor test ids) and
junk (pid ``-1``: background-only crops and badly cropped fragments of test people), which the
parser drops. Names follow Market: ``PPPP_cCsS_FFFFFF_NN.jpg`` (pid, camera 1-6, sequence,
frame, box index), e.g. ``0007_c3s1_000123_02.jpg``.

Determinism. All randomness comes from ``numpy.random.default_rng`` seeded with ``seed`` plus a
fixed tag, never a global RNG or the clock; JPEGs are written by PIL with fixed quality and
sub-sampling, no optimisation, not progressive. The same arguments give byte-identical files on
the same numpy / Pillow versions, and different seeds give different people, cameras and splits.
``synthetic.json`` in the root records the arguments and the per-split counts.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from reidlib.datasets.base import DatasetError

SYNTHETIC_README = __doc__

NUM_CAMERAS = 6
DEFAULT_TRAIN_IDS = 100
DEFAULT_TEST_IDS = 100
META_FILE = "synthetic.json"
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
JPEG_OPTIONS = {"quality": 90, "subsampling": 2, "optimize": False, "progressive": False}
FORMAT_VERSION = 1

# Tags mixed into the seed so each kind of draw has its own stream.
_TAG_GROUPS, _TAG_GROUP_CUES, _TAG_ID_CUES, _TAG_CAMERA, _TAG_SPLIT, _TAG_IMAGE = range(1, 7)
_GROUP_BLOCK = 12
_GROUP_SIZES, _GROUP_SIZE_P = (1, 2, 3, 4), (0.3, 0.3, 0.25, 0.15)
_VIRTUAL_PID_BASE = 1_000_000  # distractors and background pedestrians: people outside 1..N

# Labels of the person label map.
_BG, _SKIN, _HAIR, _UPPER, _LOWER, _SHOES, _BAG, _UPPER2 = range(8)

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


class SyntheticDatasetError(DatasetError):
    """Bad arguments to :func:`make_synthetic`, or a root it refuses to write to."""


# --------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], sd: float) -> list[int]:
    return [int(v) for v in np.clip(np.round(np.asarray(rgb) + rng.normal(0.0, sd, 3)), 0, 255)]


def _group_of(pid: int, seed: int) -> tuple[int, int, int]:
    """(block, group index in the block, member index in the group) of ``pid``."""
    block, pos = divmod(pid - 1, _GROUP_BLOCK)
    sizes = _rng(seed, _TAG_GROUPS, block).choice(_GROUP_SIZES, size=_GROUP_BLOCK, p=_GROUP_SIZE_P)
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
    if isinstance(pid, bool) or not isinstance(pid, (int, np.integer)) or pid < 1:
        raise SyntheticDatasetError(f"pid must be an integer >= 1, got {pid!r}")
    seed = _check_seed(seed)
    block, group, member = _group_of(int(pid), seed)
    g = _rng(seed, _TAG_GROUP_CUES, block, group)
    names = list(CLOTHING_COLOURS)
    c1 = names[g.integers(len(names))]
    c2 = [n for n in names if n != c1][g.integers(len(names) - 1)]
    upper = {
        "colour": c1,
        "rgb": _jitter(g, CLOTHING_COLOURS[c1], 8.0),
        "pattern": UPPER_PATTERNS[g.choice(len(UPPER_PATTERNS), p=_PATTERN_P)],
        "colour2": c2,
        "rgb2": _jitter(g, CLOTHING_COLOURS[c2], 8.0),
        "period": round(float(g.uniform(0.03, 0.055)), 4),  # stripe period, fraction of body height
        "sleeves": "long" if g.random() < 0.6 else "short",
    }
    lower_name = LOWER_COLOURS[g.permutation(len(LOWER_COLOURS))[member]]  # distinct within a group

    r = _rng(seed, _TAG_ID_CUES, int(pid))
    lower = {
        "colour": lower_name,
        "rgb": _jitter(r, CLOTHING_COLOURS[lower_name], 8.0),
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
        "shoes": {"colour": shoe, "rgb": _jitter(r, CLOTHING_COLOURS[shoe], 6.0)},
        "skin": {"tone": skin, "rgb": _jitter(r, SKIN_TONES[skin], 5.0)},
        "hair": {
            "colour": hair,
            "rgb": _jitter(r, HAIR_COLOURS[hair], 6.0),
            "length": "long" if r.random() < 0.35 else "short",
        },
        "bag": None
        if bag_kind == "none"
        else {
            "kind": bag_kind,
            "colour": bag_colour,
            "side": bag_side,
            "rgb": _jitter(r, CLOTHING_COLOURS[bag_colour], 8.0),
        },
        "build": {
            "height": round(float(r.uniform(0.92, 1.05)), 4),
            "width": round(float(r.uniform(0.85, 1.18)), 4),
        },
    }


# --------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------


def _smooth_noise(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, scale: float, waves: int = 4
) -> np.ndarray:
    """Low-frequency texture in about [-1, 1]: a sum of random plane waves."""
    out = np.zeros_like(yy)
    for _ in range(waves):
        fy, fx = rng.uniform(-1, 1, 2) * (2 * np.pi / scale)
        out += np.sin(fy * yy + fx * xx + rng.uniform(0, 2 * np.pi))
    return out / np.sqrt(waves)


def _camera(seed: int, cam: int, height: int, width: int) -> dict[str, Any]:
    """Scene (1.25x taller and 4x wider than an image; crops give backgrounds), lighting and habits."""
    rng = _rng(seed, _TAG_CAMERA, cam)
    hs, ws = int(round(height * 1.25)), width * 4
    s = height / 256.0  # texture sizes below are in pixels of a 256-pixel-tall image
    yy, xx = np.mgrid[0:hs, 0:ws].astype(np.float32)  # (hs, ws)
    horizon = rng.uniform(0.5, 0.78) * hs
    wall = (
        np.array(
            _jitter(
                rng,
                CLOTHING_COLOURS[
                    str(rng.choice(["grey", "beige", "white", "brown", "lightblue", "olive", "darkred"]))
                ],
                18.0,
            )
        )
        / 255.0
    )
    floor = (
        np.array(_jitter(rng, CLOTHING_COLOURS[str(rng.choice(["grey", "black", "beige", "brown"]))], 18.0))
        / 255.0
    )
    kind = ("bricks", "panels", "foliage", "gradient")[rng.integers(4)]
    if kind == "bricks":
        bh, bw = rng.uniform(7, 12) * s, rng.uniform(18, 30) * s
        row = np.floor(yy / bh)
        mortar = ((yy % bh) < 1.6 * s) | (((xx + (row % 2) * bw / 2) % bw) < 1.6 * s)
        tone = 1 + 0.08 * np.sin(row * 12.9898 + np.floor((xx + (row % 2) * bw / 2) / bw) * 78.233)
        tex = wall * (tone * (1 - 0.35 * mortar))[..., None]
    elif kind == "panels":
        edges = np.cumsum(rng.uniform(30, 90, 64) * s)
        col = np.searchsorted(edges, xx)
        tones = rng.uniform(0.75, 1.2, 65)
        tex = wall * tones[col][..., None]
        wy0, wy1 = rng.uniform(0.1, 0.25) * hs, rng.uniform(0.35, 0.5) * hs
        local = xx - np.concatenate([[0.0], edges])[col]
        width = np.diff(np.concatenate([[0.0], edges]), append=edges[-1] + 60 * s)[col]
        window = (yy > wy0) & (yy < wy1) & (local > 0.2 * width) & (local < 0.8 * width)
        tex = np.where(window[..., None], np.array([0.25, 0.32, 0.42]) * tones[col][..., None], tex)
    elif kind == "foliage":
        n = _smooth_noise(rng, yy, xx, 40 * s, 6) + 0.5 * _smooth_noise(rng, yy, xx, 12 * s, 6)
        leaf = np.array([0.18, 0.42, 0.16]) * (1 + 0.25 * n)[..., None]
        tex = np.where((n > -0.4)[..., None], leaf, wall[None, None] * 0.8)
    else:
        tex = wall * (0.75 + 0.45 * (yy / hs) + 0.06 * _smooth_noise(rng, yy, xx, 60 * s))[..., None]
    if rng.random() < 0.5:  # floor tiles
        t = rng.uniform(20, 40) * s
        grout = ((xx % t) < 1.5 * s) | ((yy % (0.5 * t)) < 1.5 * s)
        ground = floor * (1 - 0.25 * grout)[..., None]
    else:
        ground = floor * (1 + 0.07 * _smooth_noise(rng, yy, xx, 25 * s))[..., None]
    scene = np.where((yy < horizon)[..., None], tex, ground)
    for _ in range(rng.integers(1, 4)):  # poles, bins, sign posts
        x0 = rng.uniform(0, ws)
        pw = rng.uniform(3, 10) * s
        y0 = rng.uniform(0, horizon)
        scene[int(y0) : int(horizon + 0.1 * hs), int(x0) : int(x0 + pw)] = (
            np.array(_jitter(rng, (90, 90, 95), 40.0)) / 255.0
        )
    scene = scene * (1 + 0.05 * _smooth_noise(rng, yy, xx, 80 * s))[..., None]

    gains = rng.uniform(0.86, 1.14, 3)
    dominant = rng.integers(3)
    views = np.full(3, 0.225)
    views[dominant] = 0.55
    return {
        "scene": np.clip(scene, 0, 1).astype(np.float32),  # (hs, ws, 3)
        "gains": gains / gains.mean(),
        "brightness": float(rng.uniform(0.78, 1.15)),
        "contrast": float(rng.uniform(0.78, 1.1)),
        "view_p": views,
        "scale": float(rng.uniform(0.8, 0.92)),
        "blur": float(rng.uniform(0.0, 0.7)),
        "noise": float(rng.uniform(1.5, 6.0)) / 255.0,
        "occlusion": float(rng.uniform(0.08, 0.25)),
    }


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _limb(x0: float, y0: float, angle: float, length: float, w0: float, w1: float) -> list[tuple]:
    """Quad of a limb hanging from (x0, y0), turned by ``angle`` radians (0: straight down, > 0: to +x).

    Corner order: start+n, end+n, end-n, start-n, so q0->q1 and q3->q2 run along the limb.
    """
    dx, dy = float(np.sin(angle)), float(np.cos(angle))
    x1, y1 = x0 + dx * length, y0 + dy * length
    nx, ny = dy, -dx  # unit normal
    return [
        (x0 + nx * w0 / 2, y0 + ny * w0 / 2),
        (x1 + nx * w1 / 2, y1 + ny * w1 / 2),
        (x1 - nx * w1 / 2, y1 - ny * w1 / 2),
        (x0 - nx * w0 / 2, y0 - ny * w0 / 2),
    ]


def _cut(quad: list[tuple], t: float) -> list[tuple]:
    """The part of a limb quad from its start to the fraction ``t`` of its length (sleeve, trouser)."""
    q0, q1, q2, q3 = quad
    return [
        q0,
        (q0[0] + t * (q1[0] - q0[0]), q0[1] + t * (q1[1] - q0[1])),
        (q3[0] + t * (q2[0] - q3[0]), q3[1] + t * (q2[1] - q3[1])),
        q3,
    ]


def _end(quad: list[tuple]) -> tuple[float, float]:
    return (quad[1][0] + quad[2][0]) / 2, (quad[1][1] + quad[2][1]) / 2


def person_labels(
    size: tuple[int, int], ident: dict, view: str, facing: int, cx: float, y0: float, hp: float, phase: float
) -> np.ndarray:
    """Part-label map (H, W) uint8 of one figure: head top at ``y0``, ``hp`` pixels tall, centred at ``cx``.

    Labels: 0 background, 1 skin, 2 hair, 3 upper clothing, 4 lower, 5 shoes, 6 bag, 7 upper print.
    ``view`` is ``front``, ``back`` or ``side``; ``facing`` (+1 right, -1 left) turns side views;
    ``phase`` is the walking phase (radians). Painter's order, back to front.
    """
    if view not in VIEWS:
        raise SyntheticDatasetError(f"view must be one of {VIEWS}, got {view!r}")
    h, w = size
    im = Image.new("L", (w, h), _BG)
    d = ImageDraw.Draw(im)
    bw = hp * ident["build"]["width"]  # horizontal unit in pixels
    upper, lower, bag = ident["upper"], ident["lower"], ident["bag"]
    bag_kind = None if bag is None else bag["kind"]
    long_hair = ident["hair"]["length"] == "long"
    sleeve_end = 0.46 if upper["sleeves"] == "long" else 0.29  # body-height fractions
    lower_end = {"trousers": 0.945, "shorts": 0.66, "skirt": 0.5}[lower["style"]]
    swing = float(np.sin(phase))

    def X(u: float) -> float:
        return cx + u * bw

    def Y(v: float) -> float:
        return y0 + v * hp

    def rect(u0: float, v0: float, u1: float, v1: float, label: int) -> None:
        d.rectangle([min(X(u0), X(u1)), Y(v0), max(X(u0), X(u1)), Y(v1)], fill=label)

    def ellipse(u: float, v: float, ru: float, rv: float, label: int) -> None:
        d.ellipse([X(u - ru), Y(v - rv), X(u + ru), Y(v + rv)], fill=label)

    def arm(x0: float, v0: float, angle: float) -> None:
        quad = _limb(x0, Y(v0), angle, 0.3 * hp, 0.05 * bw, 0.04 * bw)
        d.polygon(quad, fill=_SKIN)
        d.polygon(_cut(quad, (sleeve_end - v0) / 0.3), fill=_UPPER)
        hx, hy = _end(quad)
        d.ellipse([hx - 0.022 * bw, hy - 0.02 * hp, hx + 0.022 * bw, hy + 0.02 * hp], fill=_SKIN)

    if view in ("front", "back"):
        if long_hair and view == "front":
            rect(-0.06, 0.05, 0.06, 0.23, _HAIR)
        spread = 0.01 + 0.012 * abs(swing)
        for side in (-1, 1):  # legs: skin, then trousers / shorts over it, then the shoe
            leg = [
                (X(side * 0.09), Y(0.49)),
                (X(side * (0.07 + spread)), Y(0.945)),
                (X(side * (0.025 + spread)), Y(0.945)),
                (X(side * 0.005), Y(0.49)),
            ]
            d.polygon(leg, fill=_SKIN)
            d.polygon(_cut(leg, (lower_end - 0.49) / 0.455), fill=_LOWER)
            ellipse(side * (0.048 + spread), 0.955, 0.04, 0.028, _SHOES)
        rect(-0.1, 0.47, 0.1, 0.53, _LOWER)
        if lower["style"] == "skirt":
            d.polygon(
                [(X(-0.1), Y(0.48)), (X(0.1), Y(0.48)), (X(0.13), Y(0.7)), (X(-0.13), Y(0.7))], fill=_LOWER
            )
        for side in (-1, 1):
            arm(X(side * 0.115), 0.165, side * 0.1 + 0.05 * swing)
        d.polygon(
            [(X(-0.125), Y(0.155)), (X(0.125), Y(0.155)), (X(0.105), Y(0.5)), (X(-0.105), Y(0.5))],
            fill=_UPPER,
        )
        ellipse(-0.1, 0.175, 0.035, 0.03, _UPPER)
        ellipse(0.1, 0.175, 0.035, 0.03, _UPPER)
        rect(-0.022, 0.115, 0.022, 0.155, _SKIN)
        if view == "front":
            ellipse(0.0, 0.068, 0.048, 0.062, _SKIN)
            d.chord([X(-0.052), Y(0.0), X(0.052), Y(0.09)], 180, 360, fill=_HAIR)
            if upper["pattern"] == "print":
                rect(-0.05, 0.22, 0.05, 0.31, _UPPER2)
        else:
            ellipse(0.0, 0.068, 0.05, 0.064, _HAIR)
            if long_hair:
                rect(-0.055, 0.07, 0.055, 0.25, _HAIR)
            if bag_kind == "backpack":
                rect(-0.085, 0.18, 0.085, 0.42, _BAG)
            elif bag_kind == "shoulder":  # worn on the left is seen on the image's left from the back
                side = -1 if bag["side"] == "left" else 1
                rect(side * 0.11, 0.4, side * 0.19, 0.53, _BAG)
    else:
        f = 1 if facing >= 0 else -1
        for sgn in (-1, 1):  # far leg, then near leg
            leg = _limb(X(0.0), Y(0.49), f * sgn * 0.32 * swing, 0.45 * hp, 0.085 * bw, 0.05 * bw)
            d.polygon(leg, fill=_SKIN)
            d.polygon(_cut(leg, (lower_end - 0.49) / 0.45), fill=_LOWER)
            fx, fy = _end(leg)
            fx += f * 0.025 * bw
            d.ellipse([fx - 0.045 * bw, fy - 0.02 * hp, fx + 0.045 * bw, fy + 0.015 * hp], fill=_SHOES)
        rect(-0.075, 0.47, 0.075, 0.53, _LOWER)
        if lower["style"] == "skirt":
            d.polygon(
                [(X(-0.075), Y(0.48)), (X(0.075), Y(0.48)), (X(0.1), Y(0.7)), (X(-0.1), Y(0.7))], fill=_LOWER
            )
        if bag_kind == "backpack":  # sticks out behind the back
            rect(-f * 0.04, 0.18, -f * 0.14, 0.42, _BAG)
        if long_hair:
            rect(-f * 0.01, 0.06, -f * 0.055, 0.24, _HAIR)
        d.polygon(
            [(X(-0.075), Y(0.155)), (X(0.075), Y(0.155)), (X(0.07), Y(0.5)), (X(-0.07), Y(0.5))], fill=_UPPER
        )
        ellipse(0.0, 0.175, 0.075, 0.03, _UPPER)
        rect(-0.02, 0.115, 0.02, 0.155, _SKIN)
        ellipse(0.0, 0.068, 0.05, 0.064, _HAIR)
        ellipse(f * 0.012, 0.075, 0.04, 0.055, _SKIN)
        if bag_kind == "shoulder":
            rect(-f * 0.02, 0.4, f * 0.07, 0.53, _BAG)
        arm(X(0.0), 0.17, -f * 0.45 * swing)
    return np.asarray(im)


def _paint_person(
    layer: np.ndarray, alpha: np.ndarray, labels: np.ndarray, ident: dict, cx: float, y0: float, hp: float
) -> None:
    """Colour a label map (pattern, shading) and paint it over ``layer`` (H, W, 3) / ``alpha`` (H, W)."""
    rows_any = np.flatnonzero(labels.any(axis=1))
    cols_any = np.flatnonzero(labels.any(axis=0))
    if rows_any.size == 0:
        return
    r0, r1, c0, c1 = rows_any[0], rows_any[-1] + 1, cols_any[0], cols_any[-1] + 1
    labels = labels[r0:r1, c0:c1]  # only the figure's bounding box
    layer, alpha = layer[r0:r1, c0:c1], alpha[r0:r1, c0:c1]
    mask = labels > 0
    upper = ident["upper"]
    ys = np.arange(r0, r1, dtype=np.float32)
    xs = np.arange(c0, c1, dtype=np.float32)
    if upper["pattern"] in ("hstripes", "vstripes", "checks"):
        half = max(upper["period"] * hp / 2, 1.0)
        rows = (np.floor((ys - y0) / half) % 2).astype(bool)[:, None]  # (H, 1)
        cols = (np.floor((xs - cx) / half) % 2).astype(bool)[None, :]  # (1, W)
        on = {"hstripes": rows, "vstripes": cols, "checks": rows ^ cols}[upper["pattern"]]
        labels = np.where((labels == _UPPER) & on, _UPPER2, labels)
    bag = ident["bag"]
    lut = (
        np.array(
            [
                (0, 0, 0),
                ident["skin"]["rgb"],
                ident["hair"]["rgb"],
                upper["rgb"],
                ident["lower"]["rgb"],
                ident["shoes"]["rgb"],
                bag["rgb"] if bag is not None else (0, 0, 0),
                upper["rgb2"],
            ],
            dtype=np.float32,
        )
        / 255.0
    )  # (8, 3)
    bw = hp * ident["build"]["width"]
    shade_x = 1 - 0.3 * np.clip(np.abs(xs - cx) / (0.16 * bw), 0, 1) ** 2  # round body
    shade_y = 1.05 - 0.12 * np.clip((ys - y0) / hp, 0, 1)  # light from above
    shade = shade_y[:, None] * shade_x[None, :]  # (H, W)
    layer[mask] = lut[labels[mask]] * shade[mask][:, None]
    alpha[mask] = 1.0


def _paint_occluder(
    layer: np.ndarray, alpha: np.ndarray, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A rectangle at the left, right or bottom border: a pole, a car, a sign (in place); returns its
    rows and columns (y0, y1, x0, x1)."""
    h, w, _ = layer.shape
    colour = (
        np.array(
            _jitter(
                rng,
                CLOTHING_COLOURS[
                    str(rng.choice(["grey", "black", "white", "red", "blue", "brown", "beige"]))
                ],
                20.0,
            ),
            dtype=np.float32,
        )
        / 255.0
    )
    where = rng.integers(3)
    if where == 2:
        y0, x0, y1, x1 = int(rng.uniform(0.68, 0.85) * h), 0, h, w
    else:
        width = int(rng.uniform(0.18, 0.38) * w)
        x0 = 0 if where == 0 else w - width
        y0, x1, y1 = int(rng.uniform(0.0, 0.5) * h), x0 + width, h
    grad = np.linspace(1.1, 0.85, y1 - y0, dtype=np.float32)[:, None, None]  # (h', 1, 1)
    layer[y0:y1, x0:x1] = colour * grad
    alpha[y0:y1, x0:x1] = 1.0
    return y0, y1, x0, x1


def _down2(a: np.ndarray) -> np.ndarray:
    """Average 2x2 blocks: (2H, 2W, ...) -> (H, W, ...)."""
    a = a[0::2] + a[1::2]
    return (a[:, 0::2] + a[:, 1::2]) * 0.25


# --------------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------------


def _render(spec: dict, cam: dict, size: tuple[int, int], seed: int) -> bytes:
    """JPEG bytes of one planned image (see :func:`_plan`)."""
    pixels, _ = _draw(spec, cam, size, seed)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", **JPEG_OPTIONS)
    return buf.getvalue()


def _draw(spec: dict, cam: dict, size: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One planned image: (H, W, 3) uint8 pixels and (H, W) float32 person coverage in [0, 1], the
    share of each pixel that shows the image's own person (its figure, less what an occluder in front
    hides; 0 everywhere for a background-only crop)."""
    rng = _rng(seed, _TAG_IMAGE, spec["index"])
    height, width = size
    h2, w2 = 2 * height, 2 * width  # people are drawn at twice the size, then averaged down
    scene = cam["scene"]
    oy = rng.integers(0, scene.shape[0] - height + 1)
    ox = rng.integers(0, scene.shape[1] - width + 1)
    img = scene[oy : oy + height, ox : ox + width]  # (H, W, 3)
    layer = np.zeros((h2, w2, 3), np.float32)  # foreground, premultiplied by its coverage
    alpha = np.zeros((h2, w2), np.float32)
    person = np.zeros((h2, w2), np.float32)  # where the image's own person is visible

    kind = spec["kind"]
    if kind != "junk_background":
        ident = spec["ident"]
        if kind == "junk_fragment":  # far too large and off-centre: a badly cropped detection
            hp = h2 * rng.uniform(1.6, 2.6)
            y0 = -rng.uniform(0.0, hp - 0.5 * h2)
            cx = w2 * rng.uniform(0.1, 0.9)
        else:
            hp = min(h2 * spec["scale"] * ident["build"]["height"] * rng.normal(1.0, 0.03), 0.98 * h2)
            y0 = (h2 - hp) * rng.uniform(0.25, 0.75)
            cx = w2 / 2 + rng.normal(0.0, 0.04 * w2)
        phase = rng.uniform(0, 2 * np.pi)
        view, facing = spec["view"], spec["facing"]
        other, other_in_front, rectangle = None, False, False
        if kind != "junk_fragment" and rng.random() < cam["occlusion"]:
            if rng.random() < 0.5:  # a second pedestrian at a border, in front or behind
                o_ident = describe_identity(_VIRTUAL_PID_BASE + int(rng.integers(1_000_000)), seed)
                ocx = w2 / 2 + rng.choice([-1, 1]) * rng.uniform(0.55, 0.8) * w2
                ohp = hp * rng.uniform(0.9, 1.1)
                oy0 = y0 + rng.normal(0.0, 0.04 * h2)
                olabels = person_labels(
                    (h2, w2),
                    o_ident,
                    VIEWS[rng.integers(3)],
                    int(rng.choice([-1, 1])),
                    ocx,
                    oy0,
                    ohp,
                    rng.uniform(0, 2 * np.pi),
                )
                other = (olabels, o_ident, ocx, oy0, ohp)
                other_in_front = bool(rng.random() < 0.5)
            else:
                rectangle = True
        if other is not None and not other_in_front:
            _paint_person(layer, alpha, *other)
        labels = person_labels((h2, w2), ident, view, facing, cx, y0, hp, phase)
        _paint_person(layer, alpha, labels, ident, cx, y0, hp)
        person[labels > 0] = 1.0
        if other is not None and other_in_front:
            _paint_person(layer, alpha, *other)
            person[other[0] > 0] = 0.0
        if rectangle:
            y0_, y1_, x0_, x1_ = _paint_occluder(layer, alpha, rng)
            person[y0_:y1_, x0_:x1_] = 0.0
        img = img * (1 - _down2(alpha))[..., None] + _down2(layer)  # (H, W, 3), smooth edges
    bright = cam["brightness"] * rng.uniform(0.92, 1.08)
    img = ((img - 0.5) * cam["contrast"] + 0.5) * (cam["gains"] * bright).astype(np.float32)
    pil = Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))
    radius = cam["blur"] + rng.uniform(0.0, 0.4)
    if radius > 0.1:
        pil = pil.filter(ImageFilter.GaussianBlur(radius))
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * np.float32(cam["noise"] * 255)
    arr = np.asarray(pil, dtype=np.float32) + noise
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8), _down2(person)


# --------------------------------------------------------------------------------------------
# The plan: which image goes where, named how
# --------------------------------------------------------------------------------------------

_CAMERA_P = np.array([0.2, 0.19, 0.18, 0.15, 0.13, 0.15])
_CAMS_PER_ID, _CAMS_PER_ID_P = (2, 3, 4, 5, 6), (0.15, 0.3, 0.25, 0.18, 0.12)


def _file_name(pid: int, cam: int, seq: int, frame: int, box: int) -> str:
    pid_str = "-1" if pid == -1 else f"{pid:04d}"
    return f"{pid_str}_c{cam + 1}s{seq}_{frame:06d}_{box:02d}.jpg"


def _plan(
    seed: int,
    num_train_ids: int,
    num_test_ids: int,
    num_distractors: int,
    num_junk: int,
    images_per_id: tuple[int, int],
    cams: list[dict],
) -> list[dict]:
    """Every image to draw: split, file name, pid, camera and what it shows, in a fixed order."""
    rng = _rng(seed, _TAG_SPLIT)
    order = rng.permutation(np.arange(1, num_train_ids + num_test_ids + 1))
    train_pids = {int(p) for p in order[:num_train_ids]}
    test_pids = sorted(int(p) for p in order[num_train_ids:])
    specs: list[dict] = []
    names: set[tuple[str, str]] = set()

    def add(split: str, pid: int, cam: int, seq: int, frame: int, box: int, **what: Any) -> None:
        name = _file_name(pid, cam, seq, frame, box)
        while (split, name) in names:  # only pid 0 / -1 can collide: move to the next frame
            frame = (frame + 1) % 1_000_000
            name = _file_name(pid, cam, seq, frame, box)
        names.add((split, name))
        specs.append({"index": len(specs), "split": split, "name": name, "pid": pid, "cam": cam, **what})

    def track(rng_: np.random.Generator, cam: int) -> dict:
        view = int(rng_.choice(3, p=cams[cam]["view_p"]))
        return {
            "view": view,
            "facing": int(rng_.choice([-1, 1])),
            "scale": cams[cam]["scale"] * rng_.uniform(0.95, 1.05),
        }

    for pid in range(1, num_train_ids + num_test_ids + 1):
        ident = describe_identity(pid, seed)
        n = int(rng.integers(images_per_id[0], images_per_id[1] + 1))
        k = min(int(rng.choice(_CAMS_PER_ID, p=_CAMS_PER_ID_P)), n // 2)
        id_cams = sorted(int(c) for c in rng.choice(NUM_CAMERAS, size=k, replace=False, p=_CAMERA_P))
        counts = 2 + rng.multinomial(n - 2 * k, rng.dirichlet(np.full(k, 2.0)))  # >= 2 per camera
        for cam, m in zip(id_cams, counts, strict=True):
            t = track(rng, cam)
            seq = int(rng.integers(1, 7))
            frames = int(rng.integers(0, 900_000)) + np.cumsum(rng.integers(3, 40, m))
            boxes = rng.choice([1, 2, 3], size=m, p=[0.75, 0.18, 0.07])
            query_i = int(rng.integers(m)) if pid not in train_pids else -1
            for i in range(m):
                view = t["view"] if rng.random() > 0.15 else int(rng.integers(3))  # the person turns
                split = "train" if pid in train_pids else ("query" if i == query_i else "gallery")
                add(
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

    for i in range(num_distractors):  # people outside 1..N; half of them wear a test id's shirt
        ident = describe_identity(_VIRTUAL_PID_BASE + i + 1, seed)
        if test_pids and rng.random() < 0.5:
            twin = describe_identity(test_pids[int(rng.integers(len(test_pids)))], seed)
            ident["upper"] = twin["upper"]
            if ident["lower"]["colour"] == twin["lower"]["colour"]:
                name = LOWER_COLOURS[(LOWER_COLOURS.index(twin["lower"]["colour"]) + 1) % len(LOWER_COLOURS)]
                ident["lower"] = {**ident["lower"], "colour": name, "rgb": list(CLOTHING_COLOURS[name])}
        cam = int(rng.choice(NUM_CAMERAS, p=_CAMERA_P))
        t = track(rng, cam)
        add(
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

    for _ in range(num_junk):  # background-only crops and fragments of test people
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
        add(
            "gallery",
            -1,
            cam,
            int(rng.integers(1, 7)),
            int(rng.integers(0, 1_000_000)),
            int(rng.integers(1, 4)),
            **what,
        )
    return specs


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SyntheticDatasetError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise SyntheticDatasetError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_root(root: Path, overwrite: bool) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise SyntheticDatasetError(f"{root}: exists and is not a folder; choose another output folder")
    if not any(root.iterdir()):
        return
    if not overwrite:
        raise SyntheticDatasetError(
            f"{root}: folder exists and is not empty; pass overwrite=True to replace it, "
            "or choose another output folder"
        )
    if not (root / META_FILE).is_file():
        raise SyntheticDatasetError(
            f"{root}: refusing to replace a non-empty folder without {META_FILE} "
            "(overwrite=True only replaces a dataset written by make_synthetic)"
        )


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
    seed = _check_seed(seed)
    height = _check_int("height", height, 32)
    width = _check_int("width", width, 16)

    root = Path(root).expanduser()
    _check_root(root, overwrite)
    cams = [_camera(seed, c, height, width) for c in range(NUM_CAMERAS)]
    specs = _plan(seed, num_train_ids, num_test_ids, num_distractors, num_junk, (lo, hi), cams)
    meta = {
        "generator": "reidlib.datasets.synthetic.make_synthetic",
        "format_version": FORMAT_VERSION,
        "args": {
            "num_train_ids": num_train_ids,
            "num_test_ids": num_test_ids,
            "num_distractors": num_distractors,
            "num_junk": num_junk,
            "images_per_id": [lo, hi],
            "seed": seed,
            "height": height,
            "width": width,
        },
        "counts": _split_counts(specs),
        "software": {"numpy": np.__version__, "pillow": Image.__version__},
    }

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        os.chmod(tmp, 0o755)
        for folder in SPLIT_FOLDERS.values():
            (tmp / folder).mkdir()
        for spec in specs:
            data = _render(spec, cams[spec["cam"]], (height, width), seed)
            (tmp / SPLIT_FOLDERS[spec["split"]] / spec["name"]).write_bytes(data)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, root, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
    seed, size = args["seed"], (args["height"], args["width"])
    cams = [_camera(seed, c, *size) for c in range(NUM_CAMERAS)]
    counts = [args[k] for k in ("num_train_ids", "num_test_ids", "num_distractors", "num_junk")]
    specs = _plan(seed, *counts, tuple(args["images_per_id"]), cams)
    by_file = {(SPLIT_FOLDERS[s["split"]], s["name"]): s for s in specs}
    masks = np.zeros((len(paths), *size), np.float32)
    for i, path in enumerate(paths):
        key = (Path(path).parent.name, Path(path).name)
        if key not in by_file:
            raise SyntheticDatasetError(f"{path}: not an image of the synthetic set in {root}")
        spec = by_file[key]
        masks[i] = _draw(spec, cams[spec["cam"]], size, seed)[1]
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
