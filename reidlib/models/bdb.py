"""Batch DropBlock (Dai et al., ICCV 2019), as SEN compares with it (SEN Fig. 2).

Global branch GAP, and a drop branch: a fresh Bottleneck, then one random block of round(0.33*h)
rows across the full width erased for the whole batch, then global max pooling
(docs/reading-the-papers.md#batch-dropblock-the-drop-branch). Both branches get CE
and the batch-hard triplet (soft margin in the paper, set in the recipe's loss). The head of each
branch is ``head``:

- ``"reduction"`` (default: the BDB paper's section 3 and the authors' code): global GAP -> 1x1 conv
  to 512 + BN + ReLU; drop GMP -> Linear to 1024 + BN + ReLU; CE (classifier with bias) and triplet
  on these reduced features; test embedding their concatenation (1536-d), compared with Euclidean
  distance in that code (``eval.metric: euclidean`` in the recipe).
- ``"bnneck"``: BoT's BNNeck on the raw pooled features (triplet before the BN, CE after it, test
  embedding the after-BN concat), what reidlib used before the reduction heads existed.

``detach_branches=True`` stops the drop branch's gradient at the backbone output (a control: the
backbone is then trained by the global branch alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from torch import Tensor

from reidlib.erasing import Erase, random_block_mask
from reidlib.models.backbone import bottleneck, build_backbone
from reidlib.models.heads import BNNeck, ReductionHead, global_avg_pool, global_max_pool
from reidlib.models.network import ReIDNetwork, check_num_classes
from reidlib.models.outputs import ModelOutput
from reidlib.utils.checks import check_choice, check_flag, check_fraction

BDBHead = Literal["reduction", "bnneck"]
BDB_HEADS = get_args(BDBHead)
REDUCTION_DIMS = {"global": 512, "drop": 1024}  # the authors' code, whatever the backbone width


class BatchDropBlock(ReIDNetwork):
    embedding_branches = ("global", "drop")
    map_notes = {"drop": "a Bottleneck on the backbone output, which the drop block erases"}

    def __init__(
        self,
        num_classes: int,
        *,
        backbone: str = "resnet50",
        pretrained: bool | str | Path = False,
        last_stride: int = 1,
        h_ratio: float = 0.33,
        w_ratio: float = 1.0,
        head: BDBHead = "reduction",
        detach_branches: bool = False,
    ):
        super().__init__()
        check_num_classes(num_classes)
        check_fraction("h_ratio", h_ratio, closed=True)
        check_fraction("w_ratio", w_ratio, closed=True)
        check_choice("head", head, BDB_HEADS)
        check_flag("detach_branches", detach_branches)
        self.backbone = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        c = self.backbone.out_channels
        self.head, self.detach_branches = head, detach_branches
        reduced = head == "reduction"
        dims = REDUCTION_DIMS if reduced else {"global": c, "drop": c}
        # built in this order so that head="bnneck" draws the initial weights it always drew
        self.global_neck = (
            ReductionHead(c, dims["global"], num_classes, init_mode="fan_in")
            if reduced
            else BNNeck(c, num_classes)
        )
        self.drop_block = bottleneck(c)
        self.drop_erase = Erase(random_block_mask, h_ratio=h_ratio, w_ratio=w_ratio)
        self.drop_neck = (
            ReductionHead(c, dims["drop"], num_classes, init_mode="fan_out")
            if reduced
            else BNNeck(c, num_classes)
        )
        self.feat_dims = dict(dims)

    def feature_maps(self, images: Tensor) -> dict[str, Tensor]:
        """``b1``..``b4``, and ``drop``: the drop branch's Bottleneck output, unerased."""
        self.check_images(images)
        maps = self.backbone.block_outputs(images)
        a = maps["b4"]
        maps["drop"] = self.drop_block(a.detach() if self.detach_branches else a)
        return maps

    def forward(self, images: Tensor) -> ModelOutput:
        maps = self.feature_maps(images)  # (B, C, h, w) each
        return {
            "global": self.global_neck(global_avg_pool(maps["b4"])),
            "drop": self.drop_neck(global_max_pool(self.drop_erase(maps["drop"]))),
        }
