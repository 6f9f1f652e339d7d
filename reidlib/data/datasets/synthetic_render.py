"""The renderer of the synthetic set: a camera's scene, a person's figure, and one image.

People. Each person is a simple articulated figure (head, neck, torso, two arms, two legs, shoes;
:func:`person_labels`) drawn at twice the size and averaged down (smooth edges), with cylindrical
shading, in the cues of its identity (:func:`reidlib.data.datasets.synthetic_plan.describe_identity`).

Cameras. Six cameras (:func:`camera`), each with its own scene (wall texture: bricks, panels with
windows, foliage or a plain gradient; floor: tiles or plain; a few poles), lighting (colour cast,
brightness, contrast), preferred viewpoint (front / back / side), typical person scale, blur and
sensor noise, and occlusion rate; between cameras the viewpoint and lighting change. Each image
(:func:`draw`) adds scale jitter, a small translation, a walking phase, brightness jitter, and in a
fraction of images an occluder: a rectangle at a border (pole, car, sign) or a second pedestrian at
the side.

JPEGs are written by PIL with fixed quality and sub-sampling, no optimisation, not progressive
(``JPEG_OPTIONS``), so the same plan gives byte-identical files on the same numpy / Pillow versions.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from reidlib.data.datasets.synthetic_plan import (
    CLOTHING_COLOURS,
    TAG_CAMERA,
    TAG_IMAGE,
    VIEWS,
    VIRTUAL_PID_BASE,
    SyntheticDatasetError,
    describe_identity,
    jitter,
    rng_for,
)

JPEG_OPTIONS = {"quality": 90, "subsampling": 2, "optimize": False, "progressive": False}

# Labels of the person label map.
_BG, _SKIN, _HAIR, _UPPER, _LOWER, _SHOES, _BAG, _UPPER2 = range(8)


# --------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------


def _colour_of(rng: np.random.Generator, names: list[str], sd: float, dtype: Any = None) -> np.ndarray:
    """One of the clothing colours ``names``, drawn at random and jittered by ``sd``, as RGB in 0..1."""
    return np.array(jitter(rng, CLOTHING_COLOURS[str(rng.choice(names))], sd), dtype=dtype) / 255.0


def _smooth_noise(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, scale: float, waves: int = 4
) -> np.ndarray:
    """Low-frequency texture in about [-1, 1]: a sum of random plane waves."""
    out = np.zeros_like(yy)
    for _ in range(waves):
        fy, fx = rng.uniform(-1, 1, 2) * (2 * np.pi / scale)
        out += np.sin(fy * yy + fx * xx + rng.uniform(0, 2 * np.pi))
    return out / np.sqrt(waves)


def camera(seed: int, cam: int, height: int, width: int) -> dict[str, Any]:
    """Scene (1.25x taller and 4x wider than an image; crops give backgrounds), lighting and habits."""
    rng = rng_for(seed, TAG_CAMERA, cam)
    hs, ws = int(round(height * 1.25)), width * 4
    s = height / 256.0  # texture sizes below are in pixels of a 256-pixel-tall image
    yy, xx = np.mgrid[0:hs, 0:ws].astype(np.float32)  # (hs, ws)
    horizon = rng.uniform(0.5, 0.78) * hs
    wall = _colour_of(rng, ["grey", "beige", "white", "brown", "lightblue", "olive", "darkred"], 18.0)
    floor = _colour_of(rng, ["grey", "black", "beige", "brown"], 18.0)
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
            np.array(jitter(rng, (90, 90, 95), 40.0)) / 255.0
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


class _Figure:
    """One figure's drawing frame: body units (``u`` across, in ``bw`` pixels; ``v`` down, in ``hp``
    pixels) from the head top at (``cx``, ``y0``), and the shapes of the label map drawn in it."""

    def __init__(self, d: ImageDraw.ImageDraw, cx: float, y0: float, hp: float, bw: float, sleeve_end: float):
        self.d, self.cx, self.y0, self.hp, self.bw, self.sleeve_end = d, cx, y0, hp, bw, sleeve_end

    def x(self, u: float) -> float:
        return self.cx + u * self.bw

    def y(self, v: float) -> float:
        return self.y0 + v * self.hp

    def rect(self, u0: float, v0: float, u1: float, v1: float, label: int) -> None:
        X, Y = self.x, self.y
        self.d.rectangle([min(X(u0), X(u1)), Y(v0), max(X(u0), X(u1)), Y(v1)], fill=label)

    def ellipse(self, u: float, v: float, ru: float, rv: float, label: int) -> None:
        self.d.ellipse([self.x(u - ru), self.y(v - rv), self.x(u + ru), self.y(v + rv)], fill=label)

    def arm(self, x0: float, v0: float, angle: float) -> None:
        """Skin, the sleeve over it down to ``sleeve_end``, and the hand."""
        hp, bw, d = self.hp, self.bw, self.d
        quad = _limb(x0, self.y(v0), angle, 0.3 * hp, 0.05 * bw, 0.04 * bw)
        d.polygon(quad, fill=_SKIN)
        d.polygon(_cut(quad, (self.sleeve_end - v0) / 0.3), fill=_UPPER)
        hx, hy = _end(quad)
        d.ellipse([hx - 0.022 * bw, hy - 0.02 * hp, hx + 0.022 * bw, hy + 0.02 * hp], fill=_SKIN)


def _front_or_back(fig: _Figure, ident: dict, view: str, swing: float, lower_end: float) -> None:
    """A figure seen from the front or the back, back to front."""
    X, Y, rect, ellipse, d = fig.x, fig.y, fig.rect, fig.ellipse, fig.d
    upper, lower, bag = ident["upper"], ident["lower"], ident["bag"]
    bag_kind = None if bag is None else bag["kind"]
    long_hair = ident["hair"]["length"] == "long"
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
        d.polygon([(X(-0.1), Y(0.48)), (X(0.1), Y(0.48)), (X(0.13), Y(0.7)), (X(-0.13), Y(0.7))], fill=_LOWER)
    for side in (-1, 1):
        fig.arm(X(side * 0.115), 0.165, side * 0.1 + 0.05 * swing)
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


def _side_view(fig: _Figure, ident: dict, facing: int, swing: float, lower_end: float) -> None:
    """A figure seen from the side, turned by ``facing``, back to front."""
    X, Y, rect, ellipse, d = fig.x, fig.y, fig.rect, fig.ellipse, fig.d
    hp, bw = fig.hp, fig.bw
    lower, bag = ident["lower"], ident["bag"]
    bag_kind = None if bag is None else bag["kind"]
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
    if ident["hair"]["length"] == "long":
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
    fig.arm(X(0.0), 0.17, -f * 0.45 * swing)


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
    bw = hp * ident["build"]["width"]  # horizontal unit in pixels
    sleeve_end = 0.46 if ident["upper"]["sleeves"] == "long" else 0.29  # body-height fractions
    lower_end = {"trousers": 0.945, "shorts": 0.66, "skirt": 0.5}[ident["lower"]["style"]]
    swing = float(np.sin(phase))
    fig = _Figure(ImageDraw.Draw(im), cx, y0, hp, bw, sleeve_end)
    if view in ("front", "back"):
        _front_or_back(fig, ident, view, swing, lower_end)
    else:
        _side_view(fig, ident, facing, swing, lower_end)
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
    colour = _colour_of(rng, ["grey", "black", "white", "red", "blue", "brown", "beige"], 20.0, np.float32)
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


def render_jpeg(spec: dict, cam: dict, size: tuple[int, int], seed: int) -> bytes:
    """JPEG bytes of one planned image (see :func:`reidlib.data.datasets.synthetic_plan.plan_images`)."""
    pixels, _ = draw(spec, cam, size, seed)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", **JPEG_OPTIONS)
    return buf.getvalue()


def draw(spec: dict, cam: dict, size: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One planned image: (H, W, 3) uint8 pixels and (H, W) float32 person coverage in [0, 1], the
    share of each pixel that shows the image's own person (its figure, less what an occluder in front
    hides; 0 everywhere for a background-only crop)."""
    rng = rng_for(seed, TAG_IMAGE, spec["index"])
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
                o_ident = describe_identity(VIRTUAL_PID_BASE + int(rng.integers(1_000_000)), seed)
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
