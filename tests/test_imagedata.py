from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reidlib.data.datasets.base import DatasetError, ImageRecord
from reidlib.data.images import (
    ImageDataset,
    build_test_loader,
    build_train_loader,
    load_test_batch,
    read_image,
)
from reidlib.data.transforms import build_test_transform, build_train_transform


def write_image(path: Path, seed: int, size=(16, 8), mode="RGB") -> np.ndarray:
    """A random image (H, W) = size saved at ``path``; returns its pixels (H, W, C) uint8."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(*size, channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels).save(path)
    return pixels


def make_records(folder: Path, counts: list[int], size=(16, 8)) -> list[ImageRecord]:
    records = []
    for pid, n in enumerate(counts):
        for j in range(n):
            path = folder / f"{pid:04d}_c{j % 3 + 1}s1_{j:06d}_00.png"
            write_image(path, seed=pid * 100 + j, size=size)
            records.append(ImageRecord(str(path), pid, j % 3))
    return records


def test_reads_png_and_jpeg_as_rgb(tmp_path):
    png = write_image(tmp_path / "a.png", seed=0)
    gray = write_image(tmp_path / "g.png", seed=1, mode="L")
    Image.fromarray(png).save(tmp_path / "b.jpg", quality=95)
    dataset = ImageDataset(
        [
            ImageRecord(str(tmp_path / "a.png"), 3, 1),
            ImageRecord(str(tmp_path / "g.png"), 4, 0),
            ImageRecord(str(tmp_path / "b.jpg"), 5, 2),
        ]
    )
    assert len(dataset) == 3
    image, pid, camid, index = dataset[0]
    assert (pid, camid, index) == (3, 1, 0)
    assert image.mode == "RGB" and image.size == (8, 16)  # PIL size is (width, height)
    assert np.array_equal(np.asarray(image), png)
    gray_rgb = np.asarray(dataset[1][0])
    assert gray_rgb.shape == (16, 8, 3)
    assert all(np.array_equal(gray_rgb[..., c], gray[..., 0]) for c in range(3))
    jpeg, pid, camid, index = dataset[2]
    assert jpeg.mode == "RGB" and (pid, camid, index) == (5, 2, 2)
    with Image.open(tmp_path / "b.jpg") as reference:  # JPEG is lossy: compare with PIL's own decode
        assert np.array_equal(np.asarray(jpeg), np.asarray(reference.convert("RGB")))


def test_truncated_jpeg_raises_dataset_error_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(128, 64, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    path = tmp_path / "0001_c1s1_000001_00.jpg"
    path.write_bytes(data[: len(data) // 2])
    Image.open(path).close()  # the header alone still opens: the error must come from decoding
    with pytest.raises(DatasetError, match=r"cannot read image .*0001_c1s1_000001_00\.jpg: .*truncated"):
        ImageDataset([ImageRecord(str(path), 1, 0)])[0]


@pytest.mark.parametrize("content", [b"not an image at all", b""])
def test_non_image_file_raises_dataset_error_naming_the_file(tmp_path, content):
    path = tmp_path / "0002_c2s1_000001_00.jpg"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=r"cannot read image .*0002_c2s1_000001_00\.jpg"):
        ImageDataset([ImageRecord(str(path), 2, 1)])[0]


def test_missing_file_raises_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="cannot read image .*missing.png"):
        read_image(tmp_path / "missing.png")


def test_bad_records_raise_value_error():
    with pytest.raises(ValueError, match=r"records\[1\]"):
        ImageDataset([ImageRecord("a.png", 0, 0), ("b.png", 1)])


def test_cache_gives_identical_tensors_and_does_not_reread(tmp_path):
    records = make_records(tmp_path, [2, 3])
    transform = build_test_transform(32, 16)
    plain = ImageDataset(records, transform)
    cached = ImageDataset(records, transform, cache=True)
    first = [cached[i][0] for i in range(len(records))]
    for i in range(len(records)):
        assert torch.equal(plain[i][0], first[i])
    for r in records:
        Path(r.path).unlink()  # a cached dataset no longer needs the files
    for i in range(len(records)):
        assert torch.equal(cached[i][0], first[i])
    with pytest.raises(DatasetError):
        plain[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_yields_p_by_k_batches(tmp_path, workers):
    records = make_records(tmp_path, [1, 3, 4, 5, 2, 6])
    loader = build_train_loader(
        records,
        build_test_transform(32, 16),
        num_identities=3,
        num_instances=2,
        seed=0,
        workers=workers,
        cache=True,
    )
    assert loader.pin_memory == torch.cuda.is_available()
    assert not loader.persistent_workers  # fresh, re-seeded workers every epoch
    seen = set()
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader)
        for images, pids, camids, indices in batches:
            assert images.shape == (6, 3, 32, 16) and images.dtype == torch.float32
            assert pids.shape == camids.shape == indices.shape == (6,)
            per_pid = Counter(pids.tolist())
            assert len(per_pid) == 3 and set(per_pid.values()) == {2}
            for pid, camid, index in zip(pids.tolist(), camids.tolist(), indices.tolist(), strict=True):
                assert (records[index].pid, records[index].camid) == (pid, camid)
            seen |= set(indices.tolist())
    assert seen == set(range(len(records)))


def test_train_loader_ddp_ranks_have_equal_length(tmp_path):
    records = make_records(tmp_path, [4, 4, 4, 4, 4])
    kwargs = dict(num_identities=2, num_instances=4, seed=3, workers=0, world_size=2)
    transform = build_test_transform(16, 8)
    lengths = [len(build_train_loader(records, transform, rank=r, **kwargs)) for r in range(2)]
    assert lengths == [2, 2]  # 5 chunks -> 3 batches of 2 ids, padded to 4


def test_test_loader_keeps_order_and_the_last_batch(tmp_path):
    records = make_records(tmp_path, [3, 4])
    loader = build_test_loader(records, build_test_transform(32, 16), batch_size=3, workers=0)
    batches = list(loader)
    assert [len(b[3]) for b in batches] == [3, 3, 1]
    assert torch.cat([b[3] for b in batches]).tolist() == list(range(7))
    assert torch.cat([b[1] for b in batches]).tolist() == [r.pid for r in records]


def test_loader_arguments_are_checked(tmp_path):
    records = make_records(tmp_path, [2, 2])
    transform = build_test_transform(16, 8)
    with pytest.raises(ValueError, match="batch_size"):
        build_test_loader(records, transform, batch_size=0, workers=0)
    with pytest.raises(ValueError, match="workers"):
        build_test_loader(records, transform, batch_size=2, workers=-1)
    with pytest.raises(ValueError, match="num_identities=3"):
        build_train_loader(records, transform, num_identities=3, num_instances=2, seed=0, workers=0)


def test_reseeded_generator_reproduces_augmentation_with_workers(tmp_path):
    """What exact resume relies on: re-seeding loader.generator fixes an epoch's augmentation."""
    records = make_records(tmp_path, [1, 3, 4, 5, 2, 6])

    def epoch_images(generator_seed: int) -> list[torch.Tensor]:
        loader = build_train_loader(
            records, build_train_transform(32, 16), num_identities=3, num_instances=2, seed=0, workers=2
        )
        loader.batch_sampler.set_epoch(3)
        loader.generator.manual_seed(generator_seed)
        return [images for images, *_ in loader]

    first, again, other = epoch_images(11), epoch_images(11), epoch_images(12)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_load_test_batch_is_the_test_transform_of_each_image(tmp_path):
    paths = []
    for i, color in enumerate([(10, 20, 30), (200, 100, 0)]):
        paths.append(tmp_path / f"000{i}_c1s1_000001_01.png")
        Image.new("RGB", (8, 16), color).save(paths[-1])
    records = [ImageRecord(str(p), i, 0) for i, p in enumerate(paths)]
    batch = load_test_batch(records, 32, 16)
    assert batch.shape == (2, 3, 32, 16) and batch.dtype == torch.float32
    transform = build_test_transform(32, 16)
    for image, path in zip(batch, paths, strict=True):
        torch.testing.assert_close(image, transform(Image.open(path).convert("RGB")))
