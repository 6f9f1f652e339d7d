"""data.device_augment: batched augmentation against the PIL path, its loader, and exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms.v2 import functional as F

import reidlib.training.engine as engine
from reidlib.config import DataConfig
from reidlib.data.datasets import load_dataset
from reidlib.data.device_augment import augment, build_device_train_loader, decode_split, draw_params
from reidlib.data.images import build_train_loader, read_image
from reidlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_decode_transform, build_train_transform
from reidlib.training.checkpoint import load_checkpoint
from reidlib.training.engine import train

from support import tiny_recipe

H, W, PAD = 40, 20, 10


def coordinate_image() -> np.ndarray:
    """(H, W, 3) uint8: red = row + 1, green = column + 1, blue = 200, so an augmented output tells
    its flip, crop offsets and erased rectangle (pad pixels are 0, erased ones normalise to 0)."""
    img = np.empty((H, W, 3), np.uint8)
    img[..., 0] = np.arange(1, H + 1)[:, None]
    img[..., 1] = np.arange(1, W + 1)[None, :]
    img[..., 2] = 200
    return img


def read_choices(out: torch.Tensor) -> dict[str, np.ndarray]:
    """The flip, crop offsets and erased rectangle of each normalised (N, 3, H, W) output."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    erased = (out == 0).all(dim=1).numpy()  # (N, H, W)
    u8 = ((out * std + mean) * 255).round().clamp(0, 255).to(torch.int64).numpy()  # (N, 3, H, W)
    red, green, blue = u8[:, 0], u8[:, 1], u8[:, 2]
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    res = {k: [] for k in ("flip", "top", "left", "erased", "area", "log_aspect", "erase_top")}
    for n in range(len(out)):
        seen = (blue[n] == 200) & ~erased[n]
        top = set((red[n][seen] - 1 - rows[seen] + PAD).tolist())
        plain = set((green[n][seen] - 1 - cols[seen] + PAD).tolist())
        mirrored = set((W - green[n][seen] - cols[seen] + PAD).tolist())
        assert len(top) == 1 and (len(plain) == 1) != (len(mirrored) == 1), n
        res["flip"].append(len(mirrored) == 1)
        res["top"].append(top.pop())
        res["left"].append((mirrored if len(mirrored) == 1 else plain).pop())
        e = erased[n]
        res["erased"].append(e.any())
        if e.any():
            r, c = np.flatnonzero(e.any(axis=1)), np.flatnonzero(e.any(axis=0))
            h, w = r[-1] - r[0] + 1, c[-1] - c[0] + 1
            assert e.sum() == h * w  # one rectangle
            res["area"].append(h * w / (H * W))
            res["log_aspect"].append(np.log(h / w))
            res["erase_top"].append(r[0])
    return {k: np.asarray(v) for k, v in res.items()}


@pytest.mark.slow
def test_random_choices_have_the_pil_distributions():
    n = 3000
    image = coordinate_image()
    torch.manual_seed(0)
    pil = build_train_transform(H, W)  # flip 0.5, pad 10, erasing 0.5 over 2-40 %, aspect 0.3-3.33
    pil_out = torch.stack([pil(Image.fromarray(image)) for _ in range(n)])
    batch = torch.from_numpy(image).permute(2, 0, 1)[None].expand(n, 3, H, W).contiguous()
    params = draw_params(n, H, W, torch.Generator().manual_seed(0), flip_p=0.5, pad=PAD, erasing_p=0.5)
    dev_out = augment(batch, params, PAD)
    a, b = read_choices(pil_out), read_choices(dev_out)
    # the outputs tell the batched path's own parameters back
    assert np.array_equal(b["flip"], params["flip"].numpy()) and np.array_equal(
        b["top"], params["top"].numpy()
    )
    assert np.array_equal(b["left"], params["left"].numpy())
    assert np.array_equal(b["erased"], (params["erase_h"] > 0).numpy())
    for key in ("flip", "erased"):  # Bernoulli(0.5) each
        assert abs(a[key].mean() - 0.5) < 0.04 and abs(b[key].mean() - 0.5) < 0.04
        table = [[a[key].sum(), n - a[key].sum()], [b[key].sum(), n - b[key].sum()]]
        assert stats.chi2_contingency(table).pvalue > 1e-3, key
    for key in ("top", "left"):  # uniform on 0..2 * pad
        counts = [np.bincount(x[key], minlength=2 * PAD + 1) for x in (a, b)]
        assert all(len(c) == 2 * PAD + 1 for c in counts)
        assert all(stats.chisquare(c).pvalue > 1e-3 for c in counts), key
        assert stats.chi2_contingency(counts).pvalue > 1e-3, key
    for key in ("area", "log_aspect", "erase_top"):  # the retry rule shapes these (wide boxes do not fit)
        assert stats.ks_2samp(a[key], b[key]).pvalue > 1e-3, key
    slack = (H + W) / (H * W)  # sides rounded to whole pixels
    assert all(0.02 - slack <= x["area"].min() and x["area"].max() <= 0.4 + slack for x in (a, b))
    assert a["log_aspect"].mean() > 0.1  # taller than wide on average: 20 columns reject wide draws


def test_fixed_choices_give_the_pil_pixels():
    image = coordinate_image()
    image[..., 2] = np.random.default_rng(0).integers(0, 256, (H, W))  # texture
    params = {
        "flip": torch.tensor([True, False]),
        "top": torch.tensor([3, 20]),
        "left": torch.tensor([17, 0]),
        "erase_top": torch.tensor([5, 0]),
        "erase_left": torch.tensor([2, 0]),
        "erase_h": torch.tensor([7, 0]),
        "erase_w": torch.tensor([4, 0]),
    }
    batch = torch.from_numpy(image).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    got = augment(batch, params, PAD)
    for k in range(2):  # the PIL path's own operations with the same choices
        x = Image.fromarray(image)
        x = F.horizontal_flip(x) if params["flip"][k] else x
        x = F.crop(F.pad(x, PAD, fill=0), int(params["top"][k]), int(params["left"][k]), H, W)
        x = F.to_dtype(F.to_image(x), torch.float32, scale=True)
        if params["erase_h"][k]:
            i, j, h, w = (int(params[f"erase_{s}"][k]) for s in ("top", "left", "h", "w"))
            x = F.erase(x, i, j, h, w, torch.tensor(IMAGENET_MEAN)[:, None, None])
        want = F.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        assert torch.equal(got[k], want), k


def test_loader_decodes_once_and_deals_the_pil_loaders_batches(tiny_synthetic):
    ds = load_dataset("synthetic", tiny_synthetic)
    data = DataConfig(height=32, width=16, num_identities=4, num_instances=2, workers=0)
    images = decode_split(ds.train, 32, 16, device=torch.device("cpu"))
    assert images.dtype == torch.uint8 and images.shape == (len(ds.train), 3, 32, 16)
    decode = build_decode_transform(32, 16)
    assert torch.equal(images[5], decode(read_image(ds.train[5].path)))
    loader = build_device_train_loader(ds.train, data, seed=3, device=torch.device("cpu"))
    pil = build_train_loader(
        ds.train, build_train_transform(32, 16), num_identities=4, num_instances=2, seed=3, workers=0
    )
    assert len(loader) == len(pil)
    for sampler in (loader.batch_sampler, pil.batch_sampler):
        sampler.set_epoch(2)
    first = []
    for (x, pids, camids, idx), (_, pil_pids, _, pil_idx) in zip(loader, pil, strict=True):
        assert torch.equal(idx, pil_idx) and torch.equal(pids, pil_pids)
        assert x.shape == (8, 3, 32, 16) and x.dtype == torch.float32
        assert torch.equal(camids, torch.tensor([ds.train[i].camid for i in idx]))
        first.append(x)
    loader.generator.manual_seed(7)
    again = [x for x, *_ in loader]
    loader.generator.manual_seed(7)
    assert all(torch.equal(u, v) for u, v in zip(again, [x for x, *_ in loader], strict=True))
    assert not torch.equal(first[0], again[0])
    with pytest.raises(ValueError, match="flip_p must be a probability"):
        build_device_train_loader(ds.train, DataConfig(flip_p=2.0), seed=0, device=torch.device("cpu"))


@pytest.mark.slow
def test_resume_with_device_augment_ends_like_the_uninterrupted_run(tiny_synthetic, tmp_path, monkeypatch):
    sets = ("data.device_augment=true", "optim.epochs=2", "eval.every=2")
    whole = train(tiny_recipe(tiny_synthetic, *sets), tmp_path / "whole")
    pil = train(tiny_recipe(tiny_synthetic, "optim.epochs=2", "eval.every=2"), tmp_path / "pil")

    original = engine.save_checkpoint

    def save_then_die(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_recipe(tiny_synthetic, *sets), tmp_path / "killed")
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(engine, "save_checkpoint", original)
    resumed = train(tiny_recipe(tiny_synthetic, *sets), tmp_path / "killed", resume=True)
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP", "cmc"):
        assert resumed[key] == whole[key], key
    wa = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "killed" / "last.pt")["model"]
    wp = load_checkpoint(tmp_path / "pil" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wp[k]) for k in wa)  # the option changed the input pipeline
    log = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and pil["protocol"] == whole["protocol"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_loader_keeps_the_split_on_the_gpu_and_draws_the_cpu_batches(tiny_synthetic):
    ds = load_dataset("synthetic", tiny_synthetic)
    data = DataConfig(height=32, width=16, num_identities=4, num_instances=2, workers=0)
    gpu = build_device_train_loader(ds.train, data, seed=1, device=torch.device("cuda"))
    cpu = build_device_train_loader(ds.train, data, seed=1, device=torch.device("cpu"))
    assert gpu.images.is_cuda and torch.equal(gpu.images.cpu(), cpu.images)
    for (xg, pg, _, ig), (xc, pc, _, ic) in zip(gpu, cpu, strict=True):
        assert xg.is_cuda and torch.equal(ig, ic) and torch.equal(pg, pc)
        torch.testing.assert_close(xg.cpu(), xc, rtol=0, atol=1e-6)
