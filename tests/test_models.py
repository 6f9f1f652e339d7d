"""Tests of reidlib.models: the four networks, their branches, erasing inside them and attention.

Dimensions come from docs/reading-the-papers.md#embedding-sizes (ResNet-50: baseline 2048, SEN 4096,
Deep Miner 14336) and from the BDB authors' code (reduction heads
512 + 1024 = 1536 whatever the backbone; 2 x C with head="bnneck").
Branch computations are checked against references written here from the papers' definitions
(GAP of A * M1, GMP of B * M2, ErO, stripes), with masks computed by sorting, not by reidlib.erasing.
Only the acceptance tests use ResNet-50 at 256x128 (marked slow); the rest use ResNet-18 and small
inputs so the file stays fast on a CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reidlib.models import MODELS, BranchOutput, build_model, model_options
from reidlib.models.attention import ChannelAttention, SpatialAttention, build_attention
from reidlib.models.backbone import WeightsNotFoundError
from reidlib.models.heads import BNNeck, ReductionHead

NUM_CLASSES = 7
MODEL_NAMES = ["baseline", "sen", "deep_miner", "bdb"]

# name -> (branch names in order, dims in units of the backbone's channels C, embedding branches)
BRANCHES = {
    "baseline": (("global",), (1,), ("global",)),
    "sen": (("global", "bs", "ms"), (1, 1, 1), ("global", "ms")),
    "deep_miner": (
        ("global", "ie_b2", "ie_b3", "local"),
        (1, 1, 1, 4),
        ("global", "ie_b2", "ie_b3", "local"),
    ),
    "bdb": (("global", "drop"), (1, 1), ("global", "drop")),
}
# dims that do not scale with C: BDB's reduction heads (global 512, drop 1024, the authors' code)
ABSOLUTE_DIMS = {"bdb": (512, 1024)}
# docs/reading-the-papers.md#embedding-sizes: SEN 2048 + 2048 (global + MS); Deep Miner 2048 * 3 + 4 * 2048
# (G, IE2, IE3, 4 stripes).
EMBED_DIM_R50 = {"baseline": 2048, "sen": 4096, "deep_miner": 14336, "bdb": 1536}
EMBED_DIM_R18 = {"baseline": 512, "sen": 1024, "deep_miner": 3584, "bdb": 1536}


def images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def labels(batch: int) -> torch.Tensor:
    return torch.arange(batch) % NUM_CLASSES


def r18(name: str, seed: int = 0, **options) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, NUM_CLASSES, backbone="resnet18", **options)


def check_output(out: dict, name: str, batch: int, channels: int) -> None:
    names, units, _ = BRANCHES[name]
    dims = ABSOLUTE_DIMS.get(name, tuple(unit * channels for unit in units))
    assert isinstance(out, dict)
    assert list(out) == list(names)
    for branch, dim in zip(names, dims, strict=True):
        o = out[branch]
        assert isinstance(o, BranchOutput)
        assert o.feat.shape == (batch, dim), branch
        assert o.bn_feat.shape == (batch, dim), branch
        assert o.logits.shape == (batch, NUM_CLASSES), branch
        for t in o:
            assert torch.isfinite(t).all(), branch


def touch_all(out: dict, y: torch.Tensor) -> torch.Tensor:
    """A loss that reaches every output: CE on the logits (hence bn_feat) + a term on feat."""
    return sum(F.cross_entropy(o.logits, y) + o.feat.square().mean() for o in out.values())


def check_gradients(model: nn.Module) -> None:
    """Every learnable parameter gets a finite gradient; only BNNeck biases are frozen (BDB's
    reduction heads have none).

    SAM's query/key convs and BN sit behind gamma = 0 at initialisation, so their gradient exists but
    is exactly zero (the module starts as the identity); every other gradient must be non-zero.
    """
    frozen = {id(m.bn.bias) for m in model.modules() if isinstance(m, BNNeck)}
    behind_gamma = {
        id(p)
        for m in model.modules()
        if isinstance(m, SpatialAttention)
        for n, p in m.named_parameters()
        if n != "gamma"
    }
    assert frozen or any(isinstance(m, ReductionHead) for m in model.modules())
    for n, p in model.named_parameters():
        if id(p) in frozen:
            assert not p.requires_grad and p.grad is None, n
            continue
        assert p.requires_grad, n
        assert p.grad is not None, f"{n} got no gradient"
        assert torch.isfinite(p.grad).all(), n
        if id(p) not in behind_gamma:
            assert p.grad.abs().sum() > 0, f"{n} got an all-zero gradient"


@pytest.fixture(scope="module")
def small_models() -> dict[str, nn.Module]:
    """ResNet-18 versions of the four networks, for tests that only read them."""
    return {name: r18(name) for name in MODEL_NAMES}


# ------------------------------------------------------------------------------------------------
# Acceptance: ResNet-50, (8, 3, 256, 128), pretrained=False, forward + backward on CPU
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_resnet50_forward_backward(name):
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, pretrained=False)  # paper defaults: ResNet-50, last stride 1
    model.train()
    x = images(8, 256, 128)
    out = model(x)
    check_output(out, name, batch=8, channels=2048)
    touch_all(out, labels(8)).backward()
    check_gradients(model)
    assert model.embedding_dim == EMBED_DIM_R50[name]
    assert model.embedding_branches == BRANCHES[name][2]
    assert sum(out[b].bn_feat.shape[1] for b in model.embedding_branches) == EMBED_DIM_R50[name]
    model.eval()
    with torch.no_grad():
        fmap = model.feature_maps(x[:1])["b4"]
    # 256x128 -> 2048x16x8 with last stride 1 (docs/reading-the-papers.md#shared-backbone-and-last-stride)
    assert fmap.shape == (1, 2048, 16, 8)


# ------------------------------------------------------------------------------------------------
# Structure on ResNet-18
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_resnet18_dimensions_and_embedding(name, small_models):
    model = small_models[name].eval()
    x = images(2, 64, 32)
    with torch.no_grad():
        out = model(x)
        emb = model.embed(x)
    check_output(out, name, batch=2, channels=512)
    assert model.embedding_dim == EMBED_DIM_R18[name]
    assert emb.shape == (2, EMBED_DIM_R18[name])
    expected = torch.cat([out[b].bn_feat for b in BRANCHES[name][2]], dim=1)
    torch.testing.assert_close(emb, expected)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_resnet18_forward_backward_reaches_every_parameter(name):
    model = r18(name).train()
    out = model(images(4, 64, 32))
    check_output(out, name, batch=4, channels=512)
    touch_all(out, labels(4)).backward()
    check_gradients(model)


# The feature-map contract (ReIDNetwork): b1..b4 for every network, plus each erasing branch's input
# under the branch's name; written out here, with the Erase module that must read each one.
ERASED_INPUTS = {
    "baseline": {},
    "sen": {"bs": "bs_erase", "ms": "ms_erase"},
    "bdb": {"drop": "drop_erase"},
    "deep_miner": {"ie_b2": "ie_branches.ie_b2.erase", "ie_b3": "ie_branches.ie_b3.erase"},
}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_feature_maps_name_the_same_roles_in_every_network(name):
    model = r18(name).train()
    x = images(2, 128, 64)
    seen = {}
    modules = dict(model.named_modules())
    for key, module_name in ERASED_INPUTS[name].items():
        modules[module_name].register_forward_pre_hook(
            lambda m, args, key=key: seen.__setitem__(key, args[0])
        )
    with torch.no_grad():
        maps = model.feature_maps(x)
        model(x)
    assert set(maps) == {"b1", "b2", "b3", "b4", *ERASED_INPUTS[name]}
    strides = [maps[f"b{i}"].shape[2] for i in range(1, 5)]
    assert strides == [32, 16, 8, 8]  # 128 rows: strides 4, 8, 16 and 16 (last stride 1)
    for key in ERASED_INPUTS[name]:
        torch.testing.assert_close(seen[key], maps[key], rtol=0, atol=0)  # what the Erase reads
        assert "erases" in model.describe_map(key)  # each note says which mask reads the map
    with pytest.raises(KeyError, match="no feature map 'backbone'"):
        model.describe_map("backbone")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_structure_in_train_and_eval(name, small_models):
    model = small_models[name]
    x = images(2, 64, 32)
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
    assert list(train_out) == list(eval_out)
    for b in train_out:
        assert [t.shape for t in train_out[b]] == [t.shape for t in eval_out[b]]


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("height, map_hw", [(256, (16, 8)), (384, (24, 8))])
def test_feature_map_size(name, height, map_hw, small_models):
    model = small_models[name].eval()  # last stride 1
    with torch.no_grad():
        fmap = model.feature_maps(images(1, height, 128))["b4"]
    assert fmap.shape == (1, 512, *map_hw)


# ------------------------------------------------------------------------------------------------
# Branch computations against hand-written references
# ------------------------------------------------------------------------------------------------


def sorted_keep_mask(feat: torch.Tensor, count: int, lowest: bool) -> torch.Tensor:
    """Keep-mask (B, 1, h, w) erasing the `count` lowest/highest sum_c A_c^2, found by sorting."""
    b, _, h, w = feat.shape
    scores = feat.double().square().sum(dim=1).reshape(b, h * w)
    keep = torch.ones(b, h * w)
    for i in range(b):
        order = sorted(range(h * w), key=lambda j, i=i: float(scores[i, j]))
        if not lowest:
            order = order[::-1]
        assert scores[i, order[count - 1]] != scores[i, order[count]]  # no tie at the cut
        keep[i, order[:count]] = 0.0
    return keep.view(b, 1, h, w)


def minmax_keep_mask(feat: torch.Tensor, tau: float) -> torch.Tensor:
    """Deep Miner ErO (eq. 1) from the definition: channel mean, min-max per image, keep <= tau."""
    mean = feat.double().mean(dim=1, keepdim=True)
    b = mean.shape[0]
    keep = torch.empty_like(mean)
    for i in range(b):
        lo, hi = mean[i].min(), mean[i].max()
        keep[i] = ((mean[i] - lo) / (hi - lo) <= tau).double()
    return keep.float()


def test_sen_m2_acts_only_in_training():
    sen = r18("sen", r2=0.25)
    plain = r18("sen", seed=1, r2=0.0)
    plain.load_state_dict(sen.state_dict())  # same weights, M2 off
    x = images(4, 128, 64)
    with torch.no_grad():
        torch.testing.assert_close(sen.eval().embed(x), plain.eval().embed(x), rtol=0, atol=0)
        on, off = sen.train()(x), plain.train()(x)
    torch.testing.assert_close(on["global"].feat, off["global"].feat)
    assert not torch.allclose(on["ms"].feat, off["ms"].feat)  # M2 changes the MS branch in training


def test_sen_branches_match_hand_computed_masks():
    sen = r18("sen").train()  # r1 = 0.1, r2 = 0.25
    x = images(4, 128, 64)  # 8x4 maps: N1 = floor(3.2) = 3, N2 = floor(8) = 8
    with torch.no_grad():
        maps = sen.feature_maps(x)
        out = sen(x)
    a, b = maps["b4"], maps["ms"]
    assert maps["bs"] is a  # M1 reads A itself
    assert a.shape == b.shape == (4, 512, 8, 4)
    m1 = sorted_keep_mask(a, 3, lowest=True)
    m2 = sorted_keep_mask(b, 8, lowest=False)
    torch.testing.assert_close(out["global"].feat, a.mean(dim=(2, 3)))
    torch.testing.assert_close(out["bs"].feat, (a * m1).mean(dim=(2, 3)))  # GAP(A * M1), eq. 4
    torch.testing.assert_close(out["ms"].feat, (b * m2).amax(dim=(2, 3)))  # GMP(B * M2)
    assert not torch.allclose(out["bs"].feat, out["global"].feat)
    torch.testing.assert_close(sen.bs_erase.last_mask, m1)
    torch.testing.assert_close(sen.ms_erase.last_mask, m2)


def test_sen_without_branches_is_the_baseline():
    base = r18("baseline")
    sen = r18("sen", seed=1, use_bs=False, use_ms=False)
    sen.load_state_dict(base.state_dict())  # identical parameter names: backbone.*, global_neck.*
    x = images(2, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(sen.eval().embed(x), base.eval().embed(x), rtol=0, atol=0)


def test_deep_miner_branches_match_hand_computed_references():
    dm = r18("deep_miner").train()  # tau = 0.8, IE after B2 and B3, 4 stripes
    x = images(4, 128, 64)
    with torch.no_grad():
        ys = dm.feature_maps(x)
        out = dm(x)
        torch.testing.assert_close(out["global"].feat, ys["b4"].amax(dim=(2, 3)))  # GMP on B4
        for i in (2, 3):
            y = ys[f"b{i}"]
            keep = minmax_keep_mask(y, 0.8)
            assert 0 < int((keep == 0).sum()) < keep.numel()
            branch = dm.ie_branches[f"ie_b{i}"]
            torch.testing.assert_close(branch.erase.last_mask, keep)
            expected = branch.blocks(y * keep).amax(dim=(2, 3))
            torch.testing.assert_close(out[f"ie_b{i}"].feat, expected)
        z = dm.local_branch.block(ys["b3"])  # (B, 512, 8, 4): stripes of 2 rows
        stripes = [z[:, :, 2 * s : 2 * s + 2].mean(dim=(2, 3)) for s in range(4)]
        torch.testing.assert_close(out["local"].feat, torch.cat(stripes, dim=1))  # head stripe first


def test_bdb_drop_branch_erases_one_full_width_block():
    bdb = r18("bdb", head="bnneck").train()
    x = images(4, 128, 64)  # 8x4 maps: round(0.33 * 8) = 3 rows, all 4 columns
    torch.manual_seed(3)
    with torch.no_grad():
        maps = bdb.feature_maps(x)
        out = bdb(x)
    mask = bdb.drop_erase.last_mask
    assert mask.shape == (4, 1, 8, 4)
    rows = sorted(set(torch.nonzero(mask[0, 0] == 0)[:, 0].tolist()))
    assert len(rows) == 3 and rows == list(range(rows[0], rows[0] + 3))
    assert int((mask == 0).sum()) == 4 * 3 * 4  # full width, same block for every image
    torch.testing.assert_close(out["drop"].feat, (maps["drop"] * mask).amax(dim=(2, 3)))


def test_reduction_head_by_hand():
    head = ReductionHead(3, 2, 2)
    with torch.no_grad():
        head.reduce.weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, -1.0, 0.0]]))
        head.classifier.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        head.classifier.bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, 1.0], [0.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    # z = R x: unit 0 = x0 + x2 = (4, 4, 0, 2), unit 1 = -x1 = (-2, 0, -1, -1)
    # BN (batch mean, biased variance, eps 1e-5): unit 0 mean 2.5, var 2.75; unit 1 mean -1, var 0.5
    z = [[4.0, 4.0, 0.0, 2.0], [-2.0, 0.0, -1.0, -1.0]]
    stats = [(2.5, 2.75), (-1.0, 0.5)]
    reduced = [
        [max(0.0, (z[u][i] - m) / math.sqrt(v + 1e-5)) for u, (m, v) in enumerate(stats)] for i in range(4)
    ]
    logits = [[r[0] + 2 * r[1] + 0.5, -r[1]] for r in reduced]
    out = head.train()(x)
    torch.testing.assert_close(out.feat, torch.tensor(reduced))
    assert out.bn_feat is out.feat  # CE, triplet and the test embedding all see the reduced feature
    torch.testing.assert_close(out.logits, torch.tensor(logits))
    assert head.reduce.bias is None


def test_bdb_reduction_heads_are_the_authors_and_embed_their_concat():
    bdb = r18("bdb").train()  # head="reduction" is the default (the BDB paper's section 3)
    assert isinstance(bdb.global_neck, ReductionHead) and isinstance(bdb.drop_neck, ReductionHead)
    assert (bdb.global_neck.reduce.in_features, bdb.global_neck.reduce.out_features) == (512, 512)
    assert (bdb.drop_neck.reduce.in_features, bdb.drop_neck.reduce.out_features) == (512, 1024)
    x = images(4, 128, 64)
    torch.manual_seed(3)
    with torch.no_grad():
        maps = bdb.feature_maps(x)
        out = bdb(x)

    def by_hand(head: ReductionHead, pooled: torch.Tensor) -> torch.Tensor:
        z = pooled @ head.reduce.weight.T
        return torch.relu((z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5))

    mask = bdb.drop_erase.last_mask
    torch.testing.assert_close(out["global"].feat, by_hand(bdb.global_neck, maps["b4"].mean(dim=(2, 3))))
    torch.testing.assert_close(
        out["drop"].feat, by_hand(bdb.drop_neck, (maps["drop"] * mask).amax(dim=(2, 3)))
    )
    bdb.eval()
    with torch.no_grad():
        emb, ev = bdb.embed(x), bdb(x)
    torch.testing.assert_close(emb, torch.cat([ev["global"].feat, ev["drop"].feat], dim=1))  # 1536-d
    bnneck = r18("bdb", head="bnneck")
    assert isinstance(bnneck.global_neck, BNNeck) and bnneck.embedding_dim == 2 * 512


@pytest.mark.parametrize("name", ["bdb", "sen", "deep_miner"])
def test_detach_branches_leaves_the_trunk_to_the_global_branch(name):
    for detach in (False, True):
        model = r18(name, detach_branches=detach).train()
        out = model(images(4, 64, 32))
        sum(
            o.feat.square().mean() + o.logits.square().mean() for b, o in out.items() if b != "global"
        ).backward()
        trunk = model.shared_parameters()
        reached = sum(float(p.grad.abs().sum()) for p in trunk if p.grad is not None)
        assert (reached == 0) == detach, (name, detach, reached)


@pytest.mark.parametrize(
    "options, blocks",
    [
        ({}, 2),
        ({"ie_blocks": (3,)}, 3),
        ({"ie_blocks": (3,), "local": False}, 3),
        ({"ie_blocks": (1, 3)}, 1),
        ({"ie_blocks": (), "local": False}, 4),
    ],
)
def test_deep_miner_shared_parameters_stop_where_the_first_branch_leaves(options, blocks):
    model = r18("deep_miner", **options)
    expected = [*model.stem.parameters(), *(p for s in model.stages[:blocks] for p in s.parameters())]
    assert [id(p) for p in model.shared_parameters()] == [id(p) for p in expected]
    bdb = r18("bdb")
    assert [id(p) for p in bdb.shared_parameters()] == [id(p) for p in bdb.backbone.parameters()]


# ------------------------------------------------------------------------------------------------
# Deep Miner: the copied blocks
# ------------------------------------------------------------------------------------------------


def assert_same_state(copy_module: nn.Module, original: nn.Module) -> None:
    a, b = copy_module.state_dict(), original.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for p, q in zip(copy_module.parameters(), original.parameters(), strict=True):
        assert p.data_ptr() != q.data_ptr()  # separate storage, not shared


def test_deep_miner_copies_start_equal_and_are_separate():
    dm = r18("deep_miner", ie_blocks=(1, 2, 3))
    g = dm.stages  # G's B1..B4 (with ATT after B2 and B3)
    for i in (1, 2, 3):
        blocks = dm.ie_branches[f"ie_b{i}"].blocks
        assert len(blocks) == 4 - i
        for j, block in enumerate(blocks):
            assert_same_state(block, g[i + j])  # IE_i runs copies of B_{i+1}..B4
    assert_same_state(dm.local_branch.block, g[3])


def test_deep_miner_optimizer_step_changes_only_the_trained_copy():
    dm = r18("deep_miner").train()
    before = {n: p.detach().clone() for n, p in dm.named_parameters()}
    out = dm(images(4, 64, 32))
    (F.cross_entropy(out["ie_b3"].logits, labels(4)) + out["ie_b3"].feat.square().mean()).backward()
    torch.optim.SGD(dm.parameters(), lr=0.1).step()
    changed = {n for n, p in dm.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("ie_branches.ie_b3.blocks.") for n in changed)
    assert any(n.startswith("stages.2.") for n in changed)  # shared trunk up to Y_3 learns too
    untouched = ("stages.3.", "ie_branches.ie_b2.", "local_branch.", "global_neck.")
    assert not [n for n in changed if n.startswith(untouched)]


# ------------------------------------------------------------------------------------------------
# Ablation rows: SEN Table 2, Deep Miner Tables 1-4, through build_model options
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "use_bs, use_ms, branches, embedding",
    [
        (False, False, ("global",), ("global",)),  # Baseline
        (True, False, ("global", "bs"), ("global",)),  # +BS
        (False, True, ("global", "ms"), ("global", "ms")),  # +MS
        (True, True, ("global", "bs", "ms"), ("global", "ms")),  # +BS+MS (SEN)
    ],
)
def test_sen_table2_rows(use_bs, use_ms, branches, embedding):
    model = r18("sen", use_bs=use_bs, use_ms=use_ms).train()
    with torch.no_grad():
        out = model(images(2, 64, 32))
    assert list(out) == list(branches)
    assert model.embedding_branches == embedding
    assert model.embedding_dim == 512 * len(embedding)


@pytest.mark.parametrize("ie_blocks", [(), (1,), (2,), (3,), (2, 3), (1, 3), (1, 2, 3)])
@pytest.mark.parametrize("local", [True, False])
def test_deep_miner_ie_and_local_rows(ie_blocks, local):
    model = r18("deep_miner", ie_blocks=ie_blocks, local=local).train()
    with torch.no_grad():
        out = model(images(2, 64, 32))
    expected = ["global"] + [f"ie_b{i}" for i in ie_blocks] + (["local"] if local else [])
    assert list(out) == expected
    assert list(model.embedding_branches) == expected
    assert model.embedding_dim == 512 * (1 + len(ie_blocks) + (4 if local else 0))


@pytest.mark.parametrize(
    "attention, kinds",
    [
        ("none", []),
        ("sam", [SpatialAttention]),
        ("cham", [ChannelAttention]),
        ("sam+cham", [SpatialAttention, ChannelAttention]),  # ATT(Y) = CHAM(SAM(Y))
    ],
)
def test_deep_miner_attention_rows(attention, kinds):
    model = r18("deep_miner", attention=attention).train()
    with torch.no_grad():
        out = model(images(2, 64, 32))
    assert list(out) == ["global", "ie_b2", "ie_b3", "local"]

    def att_kinds(stage: nn.Module) -> list[type]:
        return [type(m) for m in stage[1].modules() if isinstance(m, (SpatialAttention, ChannelAttention))]

    for i, stage in enumerate(model.stages, start=1):
        assert att_kinds(stage) == (kinds if i in (2, 3) else []), i
    ie2 = model.ie_branches["ie_b2"].blocks  # copies of B3 + ATT and B4
    assert att_kinds(ie2[0]) == kinds and att_kinds(ie2[1]) == []


@pytest.mark.parametrize("tau", [0.5, 0.6, 0.7, 0.8, 0.9])
def test_deep_miner_tau_rows(tau):
    model = r18("deep_miner", tau=tau).train()
    x = images(2, 64, 32)
    with torch.no_grad():
        ys = model.feature_maps(x)
        model(x)
    for i in (2, 3):
        mask = model.ie_branches[f"ie_b{i}"].erase.last_mask
        torch.testing.assert_close(mask, minmax_keep_mask(ys[f"b{i}"], tau))


# ------------------------------------------------------------------------------------------------
# Attention modules
# ------------------------------------------------------------------------------------------------


def test_sam_starts_as_the_identity():
    torch.manual_seed(0)
    sam = SpatialAttention(16)
    assert sam.gamma.item() == 0.0 and sam.gamma.requires_grad
    y = torch.randn(2, 16, 4, 3)
    assert torch.equal(sam.train()(y), y)
    assert torch.equal(sam.eval()(y), y)


def naive_sam(sam: SpatialAttention, y: torch.Tensor, dim: int) -> torch.Tensor:
    """SAM from Fig. 5 with explicit loops (float64); ``dim`` = the affinity axis normalised."""
    b, c, h, w = y.shape
    yd = y.double().flatten(2)  # (B, C, D)
    wq, bq = sam.query.weight.double()[:, :, 0, 0], sam.query.bias.double()
    wk, bk = sam.key.weight.double()[:, :, 0, 0], sam.key.bias.double()
    bn = sam.bn
    out = torch.empty_like(yd)
    for i in range(b):
        a = wq @ yd[i] + bq[:, None]  # (C/8, D)
        k = wk @ yd[i] + bk[:, None]
        energy = a.T @ k  # (D, D): energy[d, e] = <A_d, B_e>
        aff = torch.exp(energy - energy.max(dim=dim, keepdim=True).values)
        aff = aff / aff.sum(dim=dim, keepdim=True)
        if dim == 1:
            torch.testing.assert_close(aff.sum(dim=1), torch.ones(h * w, dtype=torch.float64))  # rows
        mixed = torch.stack([sum(aff[d, e] * yd[i, :, e] for e in range(h * w)) for d in range(h * w)], 1)
        mean, var = bn.running_mean.double()[:, None], bn.running_var.double()[:, None]
        normed = (mixed - mean) / torch.sqrt(var + bn.eps) * bn.weight.double()[:, None]
        normed = normed + bn.bias.double()[:, None]  # BN in eval mode
        out[i] = yd[i] + sam.gamma.double() * normed
    return out.view(b, c, h, w)


def test_sam_output_uses_a_row_normalised_affinity():
    torch.manual_seed(1)
    sam = SpatialAttention(16).eval()
    with torch.no_grad():
        sam.gamma.fill_(0.7)
        sam.bn.running_mean.uniform_(-0.5, 0.5)
        sam.bn.running_var.uniform_(0.5, 2.0)
        sam.bn.weight.uniform_(0.5, 1.5)
        sam.bn.bias.uniform_(-0.5, 0.5)
    y = torch.randn(2, 16, 3, 2) * 3
    with torch.no_grad():
        got = sam(y).double()
    torch.testing.assert_close(got, naive_sam(sam, y, dim=1), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, naive_sam(sam, y, dim=0), rtol=1e-4, atol=1e-5)  # columns differ


def test_cham_weights_sum_to_one_over_channels_at_each_position():
    torch.manual_seed(2)
    cham = ChannelAttention(32, activation="softmax_channels")
    y = torch.rand(2, 32, 4, 3) + 0.5  # no zeros: weights = output / input
    with torch.no_grad():
        weights = cham(y) / y
    assert torch.all(weights > 0) and torch.all(weights < 1)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 4, 3))
    assert not torch.allclose(weights[:, :, 0, 0], weights[:, :, 3, 2])  # per position: no pooling


def test_cham_sigmoid_gates_each_channel_by_hand():
    torch.manual_seed(2)
    cham = ChannelAttention(32, activation="sigmoid")
    y = torch.rand(2, 32, 4, 3) + 0.5
    w1, b1 = cham.squeeze.weight[:, :, 0, 0], cham.squeeze.bias  # (2, 32): C/16 = 2
    w2, b2 = cham.excite.weight[:, :, 0, 0], cham.excite.bias  # (32, 2)
    with torch.no_grad():
        hidden = torch.relu(torch.einsum("kc,bchw->bkhw", w1, y) + b1[:, None, None])
        gate = 1 / (1 + torch.exp(-(torch.einsum("ck,bkhw->bchw", w2, hidden) + b2[:, None, None])))
        got = cham(y)
    torch.testing.assert_close(got, y * gate)
    assert not torch.allclose(gate.sum(dim=1), torch.ones(2, 4, 3))  # no sum-to-one constraint
    with pytest.raises(ValueError, match="cham_activation"):
        ChannelAttention(32, activation="softmax")
    # the default reading (attention.py: chosen by studies/cham_activation.py and a smoke-budget run)
    assert ChannelAttention(32).activation == "sigmoid"
    chams = [m for m in r18("deep_miner").modules() if isinstance(m, ChannelAttention)]
    assert chams and {m.activation for m in chams} == {"sigmoid"}
    chams = [
        m
        for m in r18("deep_miner", cham_activation="softmax_channels").modules()
        if isinstance(m, ChannelAttention)
    ]
    assert {m.activation for m in chams} == {"softmax_channels"}


def test_build_attention_order_and_kinds():
    assert isinstance(build_attention("none", 64), nn.Identity)
    att = build_attention("sam+cham", 64)
    assert [type(m) for m in att] == [SpatialAttention, ChannelAttention]
    with pytest.raises(ValueError, match="attention"):
        build_attention("se", 64)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(
    "bad",
    [torch.randn(2, 1, 64, 32), torch.randn(3, 64, 32), torch.zeros(2, 3, 64, 32, dtype=torch.uint8)],
    ids=["one-channel", "3-D", "uint8"],
)
def test_bad_images_are_rejected(name, bad, small_models):
    model = small_models[name].eval()
    for call in (model, model.feature_maps, model.embed):
        with pytest.raises(ValueError, match="images"):
            call(bad)


def test_unknown_model_and_option_are_named():
    with pytest.raises(ValueError, match="resnet_ibn"):
        build_model("resnet_ibn", NUM_CLASSES)
    with pytest.raises(ValueError, match="resnet_ibn"):
        model_options("resnet_ibn")
    with pytest.raises(ValueError, match="'tau'"):
        build_model("sen", NUM_CLASSES, tau=0.8)  # a Deep Miner option
    assert set(model_options("deep_miner")) >= {"ie_blocks", "tau", "local", "attention", "backbone"}
    assert set(MODELS) == set(MODEL_NAMES)


@pytest.mark.parametrize(
    "name, options, argument",
    [
        ("sen", {"r1": -0.1}, "r1"),
        ("sen", {"r1": 1.0}, "r1"),
        ("sen", {"r2": 1.0}, "r2"),
        ("sen", {"r2": -0.01}, "r2"),
        ("sen", {"p": 0}, "p"),
        ("deep_miner", {"tau": -0.1}, "tau"),
        ("deep_miner", {"tau": 1.1}, "tau"),
        ("deep_miner", {"ie_blocks": (4,)}, "ie_blocks"),
        ("deep_miner", {"ie_blocks": (2, 4)}, "ie_blocks"),
        ("deep_miner", {"ie_blocks": (0,)}, "ie_blocks"),
        ("deep_miner", {"ie_blocks": (2.0,)}, "ie_blocks"),
        ("deep_miner", {"ie_blocks": 2}, "ie_blocks"),
        ("sen", {"r1": "abc"}, "r1"),  # values from a YAML typo: named, not a TypeError
        ("sen", {"p": "2"}, "p"),
        ("sen", {"use_bs": "no"}, "use_bs"),  # a non-empty string would count as true
        ("deep_miner", {"tau": "0.8"}, "tau"),
        ("deep_miner", {"local": 1}, "local"),
        ("deep_miner", {"num_stripes": 0}, "num_stripes"),
        ("deep_miner", {"attention": "se"}, "attention"),
        ("bdb", {"h_ratio": 1.5}, "h_ratio"),
        ("bdb", {"head": "bn"}, "head"),
        ("bdb", {"detach_branches": "yes"}, "detach_branches"),
        ("sen", {"detach_branches": 1}, "detach_branches"),
        ("deep_miner", {"cham_activation": "softmax"}, "cham_activation"),
        ("deep_miner", {"attention": "none", "cham_activation": "tanh"}, "cham_activation"),
        ("baseline", {"backbone": "resnet101"}, "backbone"),
        ("baseline", {"last_stride": 3}, "last_stride"),
    ],
)
def test_bad_options_are_named(name, options, argument):
    with pytest.raises(ValueError, match=argument):
        build_model(name, NUM_CLASSES, **({"backbone": "resnet18"} | options))


@pytest.mark.parametrize("num_classes", [0, -3, 2.5])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build_model("baseline", num_classes, backbone="resnet18")


# ------------------------------------------------------------------------------------------------
# Pretrained weights: never downloaded, loaded from a local file
# ------------------------------------------------------------------------------------------------

# torchvision's checkpoint file names (download.pytorch.org/models/...); True means IMAGENET1K_V1.
V1_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-0676ba61.pth"}


@pytest.mark.parametrize(
    "backbone, pretrained, file_name",
    [
        ("resnet18", True, V1_FILES["resnet18"]),
        ("resnet50", True, V1_FILES["resnet50"]),
        ("resnet50", "IMAGENET1K_V2", "resnet50-11ad3fa6.pth"),
    ],
)
def test_pretrained_without_cache_names_the_expected_path(
    backbone, pretrained, file_name, tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / file_name
    with pytest.raises(WeightsNotFoundError) as info:
        build_model("baseline", NUM_CLASSES, backbone=backbone, pretrained=pretrained)
    assert str(expected) in str(info.value)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing downloaded


def reference_resnet18(seed: int) -> torchvision.models.ResNet:
    torch.manual_seed(seed)
    ref = torchvision.models.resnet18(weights=None)
    for m in ref.modules():  # non-default BN statistics, so they are checked too
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            nn.init.uniform_(m.bias, -0.1, 0.1)
    return ref


def assert_backbone_equals(layers: list[nn.Module], stem: nn.Module, ref: torchvision.models.ResNet) -> None:
    assert torch.equal(stem[0].weight, ref.conv1.weight)
    assert_same_state(stem[1], ref.bn1)
    for layer, ref_layer in zip(layers, (ref.layer1, ref.layer2, ref.layer3, ref.layer4), strict=True):
        assert_same_state(layer, ref_layer)


@pytest.mark.parametrize("as_path", [False, True])
def test_pretrained_path_loads_the_state_dict(tmp_path, as_path):
    ref = reference_resnet18(seed=11)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    model = r18("baseline", pretrained=path if as_path else str(path))
    bb = model.backbone
    assert_backbone_equals(list(bb.layers()), bb.stem, ref)
    fresh = r18("baseline", seed=12)
    assert not torch.equal(fresh.backbone.stem[0].weight, ref.conv1.weight)  # the file made the difference


def test_pretrained_true_loads_from_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = reference_resnet18(seed=13)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(ref.state_dict(), cache / V1_FILES["resnet18"])
    model = r18("baseline", pretrained=True)
    assert_backbone_equals(list(model.backbone.layers()), model.backbone.stem, ref)


def test_deep_miner_copies_start_from_the_pretrained_weights(tmp_path):
    ref = reference_resnet18(seed=14)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    dm = r18("deep_miner", pretrained=str(path))
    assert_backbone_equals([s[0] for s in dm.stages], dm.stem, ref)
    assert_same_state(dm.ie_branches["ie_b2"].blocks[0][0], ref.layer3)
    assert_same_state(dm.ie_branches["ie_b3"].blocks[0][0], ref.layer4)
    assert_same_state(dm.local_branch.block[0], ref.layer4)


def test_pretrained_missing_or_wrong_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        r18("baseline", pretrained=str(missing))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="pretrained"):
        r18("baseline", pretrained=str(wrong))


@pytest.mark.parametrize("name", ["baseline", "deep_miner"])
@pytest.mark.parametrize("height, map_hw", [(256, (8, 4)), (384, (12, 4))])
def test_last_stride_two_halves_the_map(name, height, map_hw, small_models):
    x = images(1, height, 128)
    model2 = r18(name, last_stride=2).eval()
    with torch.no_grad():
        a1 = small_models[name].eval().feature_maps(x)["b4"]
        a2 = model2.feature_maps(x)["b4"]
    assert a2.shape[2:] == map_hw
    assert a1.shape[2] == 2 * a2.shape[2] and a1.shape[3] == 2 * a2.shape[3]
