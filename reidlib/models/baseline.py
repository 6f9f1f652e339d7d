"""BoT, the strong baseline (Luo et al., 2019): ResNet, global average pooling, BNNeck.

This is "Baseline" in SEN Table 2: SEN's global branch alone.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from reidlib.models.backbone import build_backbone
from reidlib.models.heads import BNNeck, global_avg_pool
from reidlib.models.network import ReIDNetwork, check_num_classes
from reidlib.models.outputs import ModelOutput


class Baseline(ReIDNetwork):
    embedding_branches = ("global",)

    def __init__(
        self,
        num_classes: int,
        *,
        backbone: str = "resnet50",
        pretrained: bool | str | Path = False,
        last_stride: int = 1,
    ):
        super().__init__()
        check_num_classes(num_classes)
        self.backbone = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        c = self.backbone.out_channels
        self.global_neck = BNNeck(c, num_classes)
        self.feat_dims = {"global": c}

    def feature_maps(self, images: Tensor) -> dict[str, Tensor]:
        """Y_1..Y_4 (``b1``..``b4``); no erasing branch."""
        self.check_images(images)
        return self.backbone.block_outputs(images)

    def forward(self, images: Tensor) -> ModelOutput:
        a = self.feature_maps(images)["b4"]  # (B, C, h, w)
        return {"global": self.global_neck(global_avg_pool(a))}
