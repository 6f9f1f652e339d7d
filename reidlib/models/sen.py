"""SEN, the Self-Erasing Network (Fan et al., Sensors 2021, Fig. 3).

Three branches on one ResNet backbone output A (B, C, h, w):

- global: GAP(A) -> BNNeck (CE + triplet + center);
- BS, background suppression: M1 erases the floor(r1*h*w) LOWEST positions of F(A) = sum_c |A_c|^p
  (eqs. 1-4), then GAP -> BNNeck (CE, weight lambda1 = 0.5);
- MS, maximum-activation suppression: two fresh Bottlenecks give B, M2 erases the floor(r2*h*w)
  HIGHEST positions of F(B) (eq. 5), then global MAX pooling -> BNNeck (CE).

Test embedding: concat(global, MS) after the BN, with MS computed without M2 (erasing is the identity
in eval), 2 x C = 4096-d for ResNet-50 (docs/reading-the-papers.md#sen-test-embedding). The rows of
Table 2 are ``use_bs``/``use_ms``.
``detach_branches=True`` (a control) stops the BS and MS branches' gradients at A.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from reidlib.erasing import Erase, low_activation_mask, top_activation_mask
from reidlib.models.backbone import bottleneck, build_backbone
from reidlib.models.heads import BNNeck, global_avg_pool, global_max_pool
from reidlib.models.network import ReIDNetwork, check_num_classes
from reidlib.models.outputs import ModelOutput
from reidlib.utils.checks import Bounds, check_flag, check_fraction, check_number


class SEN(ReIDNetwork):
    map_notes = {
        "bs": "A, the backbone output (Y_4), which M1 erases in the BS branch",
        "ms": "B, two Bottlenecks on A, which M2 erases in the MS branch",
    }

    def __init__(
        self,
        num_classes: int,
        *,
        backbone: str = "resnet50",
        pretrained: bool | str | Path = False,
        last_stride: int = 1,
        use_bs: bool = True,
        use_ms: bool = True,
        r1: float = 0.1,
        r2: float = 0.25,
        p: float = 2,
        detach_branches: bool = False,
    ):
        super().__init__()
        check_num_classes(num_classes)
        check_fraction("r1", r1, closed=False)
        check_fraction("r2", r2, closed=False)
        check_flag("use_bs", use_bs)
        check_flag("use_ms", use_ms)
        check_flag("detach_branches", detach_branches)
        self.detach_branches = detach_branches
        check_number("p", p, Bounds(0.0, low_open=True))  # the exponent of F(A) (eq. 1)
        self.backbone = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        c = self.backbone.out_channels
        self.global_neck = BNNeck(c, num_classes)
        self.feat_dims = {"global": c}
        self.use_bs, self.use_ms = use_bs, use_ms
        if use_bs:
            self.bs_erase = Erase(low_activation_mask, ratio=r1, p=p)
            self.bs_neck = BNNeck(c, num_classes)
            self.feat_dims["bs"] = c
        if use_ms:
            self.ms_blocks = nn.Sequential(bottleneck(c), bottleneck(c))
            self.ms_erase = Erase(top_activation_mask, ratio=r2, p=p)
            self.ms_neck = BNNeck(c, num_classes)
            self.feat_dims["ms"] = c
        self.embedding_branches = ("global", "ms") if use_ms else ("global",)

    def feature_maps(self, images: Tensor) -> dict[str, Tensor]:
        """``b1``..``b4`` (``b4`` = A), and the unerased inputs of M1 (``bs``: A) and M2 (``ms``: B)."""
        self.check_images(images)
        maps = self.backbone.block_outputs(images)
        a = maps["b4"]
        a_branch = a.detach() if self.detach_branches else a
        if self.use_bs:
            maps["bs"] = a_branch
        if self.use_ms:
            maps["ms"] = self.ms_blocks(a_branch)
        return maps

    def forward(self, images: Tensor) -> ModelOutput:
        maps = self.feature_maps(images)
        out = {"global": self.global_neck(global_avg_pool(maps["b4"]))}  # A: (B, C, h, w)
        if self.use_bs:
            out["bs"] = self.bs_neck(global_avg_pool(self.bs_erase(maps["bs"])))  # A' = A * M1 (eq. 4)
        if self.use_ms:
            out["ms"] = self.ms_neck(global_max_pool(self.ms_erase(maps["ms"])))  # B * M2, then GMP
        return out
