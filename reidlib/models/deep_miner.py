"""Deep Miner (Benzine et al., 2021, Fig. 1): global, Input-Erased and local branches.

The global branch G is the ResNet with an attention module ATT = CHAM(SAM(.)) after blocks B2 and B3
and global MAX pooling on B4's output. An Input-Erased branch at block i applies ErO (eq. 1: channel
mean, min-max normalised, erase where > tau) to Y_i (after ATT where there is one) and runs its own
copies of G's later blocks (attention included), then GMP -> BNNeck. The local branch runs a copy of
B4 on Y_3, averages 4 horizontal stripes and concatenates them into one vector with one BNNeck (as
in PLR-OSNet). Copies start from G's weights and are not shared in training (section 3.2).

Every branch gets CE + soft-margin triplet + center loss (eq. 2); the test embedding concatenates every
branch's after-BN feature (docs/reading-the-papers.md#deep-miner-test-embedding).
With ``backbone="mobilenet_v2"`` the blocks are MobileNetV2's cut (:mod:`reidlib.models.backbone`): ATT
follows B2 = ``features[4:7]`` (32 channels, 1/8) and B3 = ``features[7:14]`` (96 channels, 1/16);
``ie_b2`` copies B3 + ATT + B4 (``features[7:19]``), ``ie_b3`` and the local branch copy B4
(``features[14:19]``, 1280 channels).
Tables 1-4 are ``ie_blocks``, ``local`` and ``attention``;
``cham_activation`` is the reading of CHAM's activation (:class:`ChannelAttention`), and
``detach_branches=True`` (a control) stops the IE and local branches' gradients at G's maps.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from reidlib.erasing import Erase, minmax_threshold_mask
from reidlib.models.attention import (
    CHAM_ACTIVATIONS,
    DEFAULT_CHAM_ACTIVATION,
    AttentionKind,
    ChamActivation,
    build_attention,
)
from reidlib.models.backbone import build_backbone
from reidlib.models.heads import BNNeck, global_max_pool, stripe_avg_pool
from reidlib.models.network import ReIDNetwork, check_num_classes
from reidlib.models.outputs import BranchOutput, ModelOutput
from reidlib.utils.checks import check_choice, check_flag, check_fraction

ATTENTION_AFTER = (2, 3)  # blocks followed by ATT in G and in the copies (section 3.4)


class InputErasedBranch(nn.Module):
    """ErO on Y_i, then copies of G's blocks i+1..4, GMP and a BNNeck."""

    def __init__(self, stages: Sequence[nn.Module], tau: float, channels: int, num_classes: int):
        super().__init__()
        self.erase = Erase(minmax_threshold_mask, threshold=tau)
        self.blocks = nn.Sequential(*(copy.deepcopy(s) for s in stages))
        self.neck = BNNeck(channels, num_classes)

    def forward(self, y: Tensor) -> BranchOutput:
        return self.neck(global_max_pool(self.blocks(self.erase(y))))


class LocalBranch(nn.Module):
    """A copy of G's last block on Y_3, ``num_stripes`` stripe averages, one BNNeck on the concat."""

    def __init__(self, stage: nn.Module, num_stripes: int, channels: int, num_classes: int):
        super().__init__()
        self.block = copy.deepcopy(stage)
        self.num_stripes = num_stripes
        self.neck = BNNeck(num_stripes * channels, num_classes)

    def forward(self, y3: Tensor) -> BranchOutput:
        return self.neck(stripe_avg_pool(self.block(y3), self.num_stripes))  # (B, S * C)


class DeepMiner(ReIDNetwork):
    def __init__(
        self,
        num_classes: int,
        *,
        backbone: str = "resnet50",
        pretrained: bool | str | Path = False,
        last_stride: int = 1,
        ie_blocks: Sequence[int] = (2, 3),
        tau: float = 0.8,
        local: bool = True,
        num_stripes: int = 4,
        attention: AttentionKind = "sam+cham",
        cham_activation: ChamActivation = DEFAULT_CHAM_ACTIVATION,
        detach_branches: bool = False,
    ):
        super().__init__()
        check_num_classes(num_classes)
        check_fraction("tau", tau, closed=True)
        check_flag("local", local)
        check_flag("detach_branches", detach_branches)
        check_choice("cham_activation", cham_activation, CHAM_ACTIVATIONS)  # also without CHAM
        self.detach_branches, self.attention = detach_branches, attention
        blocks = None if isinstance(ie_blocks, (int, str)) else tuple(ie_blocks)
        if blocks is None or not all(type(i) is int and 1 <= i <= 3 for i in blocks):
            raise ValueError(f"ie_blocks: expected a subset of {{1, 2, 3}} (ints), got {ie_blocks!r}")
        ie_blocks = tuple(sorted(set(blocks)))
        if local and (not isinstance(num_stripes, int) or num_stripes < 1):
            raise ValueError(f"num_stripes: expected a positive int, got {num_stripes!r}")
        net = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        self.stem = net.stem
        self.stages = nn.ModuleList(
            nn.Sequential(
                layer,
                build_attention(attention, ch, cham_activation) if i in ATTENTION_AFTER else nn.Identity(),
            )
            for i, (layer, ch) in enumerate(zip(net.layers(), net.channels, strict=True), start=1)
        )
        c = net.out_channels
        self.global_neck = BNNeck(c, num_classes)
        self.feat_dims = {"global": c}
        # Built after G so that the copies start from G's (possibly pretrained) weights.
        self.ie_branches = nn.ModuleDict(
            {f"ie_b{i}": InputErasedBranch(self.stages[i:], tau, c, num_classes) for i in ie_blocks}
        )
        self.feat_dims.update({name: c for name in self.ie_branches})
        self.local_branch = LocalBranch(self.stages[3], num_stripes, c, num_classes) if local else None
        if local:
            self.feat_dims["local"] = num_stripes * c
        self.embedding_branches = tuple(self.feat_dims)

    def feature_maps(self, images: Tensor) -> dict[str, Tensor]:
        """Y_1..Y_4 of the global branch (after ATT where there is one: ``b1``..``b4``), and each IE
        branch's unerased input (``ie_b2`` is Y_2, detached under ``detach_branches``)."""
        self.check_images(images)
        y = self.stem(images)
        maps = {}
        for i, stage in enumerate(self.stages, start=1):
            y = stage(y)
            maps[f"b{i}"] = y
        for name in self.ie_branches:
            y = maps[f"b{name[-1]}"]  # "ie_b2" erases Y_2
            maps[name] = y.detach() if self.detach_branches else y
        return maps

    def describe_map(self, key: str) -> str:
        if key in self.ie_branches:
            return f"Y_{key[-1]}{self._after_attention(int(key[-1]))}, which ErO erases in IE branch {key}"
        return super().describe_map(key) + (self._after_attention(int(key[1])) if key[0] == "b" else "")

    def _after_attention(self, block: int) -> str:
        return f" after {self.attention}" if block in ATTENTION_AFTER and self.attention != "none" else ""

    def forward(self, images: Tensor) -> ModelOutput:
        maps = self.feature_maps(images)
        out = {"global": self.global_neck(global_max_pool(maps["b4"]))}
        for name, branch in self.ie_branches.items():
            out[name] = branch(maps[name])
        if self.local_branch is not None:
            y3 = maps["b3"]  # detached in the control, as the IE inputs: only G's loss trains G
            out["local"] = self.local_branch(y3.detach() if self.detach_branches else y3)
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        """The stem and G's blocks up to the earliest one a branch leaves from (B2 for ie_b2)."""
        starts = [int(name[-1]) for name in self.ie_branches] + ([3] if self.local_branch is not None else [])
        last = min(starts, default=4)
        return [*self.stem.parameters(), *(p for s in self.stages[:last] for p in s.parameters())]
