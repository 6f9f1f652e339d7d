from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reidlib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_test_transform,
    build_train_transform,
    denormalize,
)


def noise_image(h: int = 64, w: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def test_train_transform_output_shape_and_dtype():
    torch.manual_seed(0)
    out = build_train_transform(48, 24)(noise_image())
    assert out.shape == (3, 48, 24)
    assert out.dtype == torch.float32


def test_test_transform_normalises_a_constant_colour_image_by_hand():
    colour = (200, 30, 120)
    image = Image.new("RGB", (40, 70), colour)
    transform = build_test_transform(32, 16)
    out = transform(image)
    assert out.shape == (3, 32, 16) and out.dtype == torch.float32
    for c in range(3):
        expected = (colour[c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[c], torch.full((32, 16), expected), atol=1e-6)
    assert torch.equal(transform(noise_image()), transform(noise_image()))


def test_full_flip_mirrors_the_unflipped_output():
    image = noise_image(seed=1)
    plain = build_train_transform(40, 20, flip_p=0.0, pad=0, erasing_p=0.0)(image)
    flipped = build_train_transform(40, 20, flip_p=1.0, pad=0, erasing_p=0.0)(image)
    assert not torch.equal(plain, flipped)
    assert torch.equal(flipped, plain[:, :, torch.arange(19, -1, -1)])


def test_no_augmentation_equals_the_test_transform():
    image = noise_image(seed=2)
    train = build_train_transform(40, 20, flip_p=0.0, pad=0, erasing_p=0.0)
    assert torch.equal(train(image), build_test_transform(40, 20)(image))


def test_padding_shifts_the_image_inside_a_zero_border():
    image = noise_image(seed=3)
    torch.manual_seed(0)
    outs = [build_train_transform(40, 20, flip_p=0.0, pad=10, erasing_p=0.0)(image) for _ in range(8)]
    assert all(o.shape == (3, 40, 20) for o in outs)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("seed", range(12))
def test_full_erasing_fills_a_rectangle_with_the_imagenet_mean(seed):
    h, w = 128, 64
    torch.manual_seed(seed)
    transform = build_train_transform(h, w, flip_p=0.0, pad=0, erasing_p=1.0)
    raw = denormalize(transform(noise_image(h, w, seed)), clamp=False)  # (3, h, w)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    # Noise pixels are k / 255, never within 1e-3 of the mean (123.675 / 255, ...), so equality
    # with the mean marks exactly the erased pixels.
    erased = (raw - mean).abs().le(1e-5).all(dim=0)  # (h, w)
    assert erased.any()
    rows, cols = torch.nonzero(erased, as_tuple=True)
    eh, ew = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert int(erased.sum()) == eh * ew, "erased pixels do not form a rectangle"
    # torchvision rounds each side to whole pixels: the sides are within 0.5 of a rectangle whose
    # area is 2-40 % of the image and whose aspect ratio h / w lies in [0.3, 1 / 0.3].
    area = h * w
    assert (eh - 0.5) * (ew - 0.5) <= 0.4 * area and (eh + 0.5) * (ew + 0.5) >= 0.02 * area
    assert 0.02 - 0.01 <= eh * ew / area <= 0.4 + 0.01
    assert (eh - 0.5) / (ew + 0.5) <= 1 / 0.3 and (eh + 0.5) / (ew - 0.5) >= 0.3
    # Everything else is the image.
    image = torch.from_numpy(np.array(noise_image(h, w, seed))).permute(2, 0, 1) / 255.0  # (3, h, w)
    assert torch.allclose(raw[:, ~erased], image[:, ~erased], atol=1e-5)


def test_erased_pixels_are_zero_after_normalisation():
    torch.manual_seed(0)
    out = build_train_transform(64, 32, flip_p=0.0, pad=0, erasing_p=1.0)(noise_image())
    assert (out.abs() < 1e-6).all(dim=0).any()  # (mean - mean) / std == 0 over the erased rectangle


def test_denormalize_inverts_normalize_and_keeps_its_input():
    x = torch.rand(2, 3, 8, 4)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    normalised = (x - mean) / std
    copy = normalised.clone()
    assert torch.allclose(denormalize(normalised), x, atol=1e-6)
    assert torch.allclose(denormalize(normalised[0]), x[0], atol=1e-6)
    assert torch.equal(normalised, copy)
    assert denormalize(torch.full((3, 2, 2), 10.0)).max() == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"flip_p": 1.5}, "flip_p"),
        ({"erasing_p": -0.1}, "erasing_p"),
        ({"pad": -1}, "pad"),
        ({"erasing_scale": (0.4, 0.02)}, "erasing_scale"),
        ({"erasing_ratio": (0.0, 3.0)}, "erasing_ratio"),
    ],
)
def test_bad_train_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_train_transform(64, 32, **kwargs)


def test_bad_sizes_and_shapes_raise():
    with pytest.raises(ValueError, match="height"):
        build_test_transform(0, 32)
    with pytest.raises(ValueError, match="width"):
        build_train_transform(64, 12.5)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        denormalize(torch.zeros(1, 8, 4))


def test_imagenet_constants():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
