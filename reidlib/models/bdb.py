"""Batch DropBlock (Dai et al., ICCV 2019), as SEN compares with it (SEN Fig. 2).

Global branch GAP -> BNNeck, and a drop branch: a fresh Bottleneck, then one random block of
round(0.33*h) rows across the full width erased for the whole batch, then global max pooling ->
BNNeck. Test embedding: concat(global, drop) after the BN
(docs/reading-the-papers.md#batch-dropblock-the-drop-branch).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from reidlib.erasing import Erase, random_block_mask
from reidlib.models.backbone import ResNetBackbone, bottleneck
from reidlib.models.heads import BNNeck, global_avg_pool, global_max_pool
from reidlib.models.network import ReIDNetwork, check_fraction, check_num_classes
from reidlib.models.outputs import ModelOutput


class BatchDropBlock(ReIDNetwork):
    embedding_branches = ("global", "drop")

    def __init__(
        self,
        num_classes: int,
        *,
        backbone: str = "resnet50",
        pretrained: bool | str | Path = False,
        last_stride: int = 1,
        h_ratio: float = 0.33,
        w_ratio: float = 1.0,
    ):
        super().__init__()
        check_num_classes(num_classes)
        check_fraction("h_ratio", h_ratio, closed=True)
        check_fraction("w_ratio", w_ratio, closed=True)
        self.backbone = ResNetBackbone(backbone, pretrained=pretrained, last_stride=last_stride)
        c = self.backbone.out_channels
        self.global_neck = BNNeck(c, num_classes)
        self.drop_block = bottleneck(c)
        self.drop_erase = Erase(random_block_mask, h_ratio=h_ratio, w_ratio=w_ratio)
        self.drop_neck = BNNeck(c, num_classes)
        self.feat_dims = {"global": c, "drop": c}

    def feature_maps(self, images: Tensor) -> dict[str, Tensor]:
        self.check_images(images)
        a = self.backbone(images)
        return {"backbone": a, "drop": self.drop_block(a)}

    def forward(self, images: Tensor) -> ModelOutput:
        maps = self.feature_maps(images)  # both (B, C, h, w)
        return {
            "global": self.global_neck(global_avg_pool(maps["backbone"])),
            "drop": self.drop_neck(global_max_pool(self.drop_erase(maps["drop"]))),
        }
