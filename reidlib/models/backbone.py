"""torchvision ResNets as ReID backbones: last stride 1, optional ImageNet weights, never downloaded.

With the first block of ``layer4`` at stride 1 (Luo et al.'s "last stride" trick,
docs/reading-the-papers.md#shared-backbone-and-last-stride), a 256x128 input gives a 16x8 map (2048
channels for ResNet-50, 512 for ResNet-18/34).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models as tvm

from reidlib.utils.fileio import read_torch_file

# name -> (torchvision builder, the ImageNet weights the papers' era used). V1 weights are the
# classic torchvision/Caffe-era checkpoints that BoT, SEN and Deep Miner started from.
_RESNETS = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights),
}


class WeightsNotFoundError(FileNotFoundError):
    """ImageNet weights were asked for but are not on disk (reidlib never downloads)."""


def resolve_weights_file(name: str, pretrained: bool | str | Path) -> Path:
    """The local file holding ImageNet weights for ``name``.

    ``pretrained=True`` means torchvision's IMAGENET1K_V1 checkpoint in the torch hub cache
    (``$TORCH_HOME/hub/checkpoints``); the name of another enum member (``"IMAGENET1K_V2"``) picks that
    checkpoint; any other string is a path to a state-dict file.
    """
    weights_enum = _RESNETS[name][1]
    if pretrained is True or (isinstance(pretrained, str) and pretrained in weights_enum.__members__):
        weights = weights_enum.IMAGENET1K_V1 if pretrained is True else weights_enum[pretrained]
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
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


class ResNetBackbone(nn.Module):
    """Stem + ``layer1..layer4`` of a torchvision ResNet (no pooling, no classifier)."""

    def __init__(
        self, name: str = "resnet50", *, pretrained: bool | str | Path = False, last_stride: int = 1
    ):
        super().__init__()
        if name not in _RESNETS:
            raise ValueError(f"backbone: unknown {name!r}; expected one of {sorted(_RESNETS)}")
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride: expected 1 or 2, got {last_stride}")
        net = _RESNETS[name][0](weights=None)
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
