"""Per-branch evaluation: each branch's slice of the embedding, checked against the branch outputs."""

from __future__ import annotations

import pytest
import torch

from reidlib.data.datasets import load_dataset
from reidlib.data.images import load_test_batch
from reidlib.evaluation.features import (
    evaluate,
    evaluate_branches,
    extract_features,
    rank_features,
    summarize,
)
from reidlib.evaluation.metrics import evaluate_rank_reference
from reidlib.evaluation.ranking import rank1_of
from reidlib.models import build_model
from reidlib.utils.runtime import Runtime

from support import tiny_recipe

H, W = 64, 32


@pytest.fixture(scope="module")
def sen_and_data(tiny_synthetic):
    torch.manual_seed(0)
    model = build_model("sen", 8, backbone="resnet18").eval()
    ds = load_dataset("folder", tiny_synthetic)
    return model, ds


def test_embedding_slices_cover_the_embedding_in_branch_order(sen_and_data):
    model, _ = sen_and_data
    slices = model.embedding_slices
    assert list(slices) == list(model.embedding_branches)
    widths = [s.stop - s.start for s in slices.values()]
    assert widths == [model.feat_dims[b] for b in model.embedding_branches]
    assert slices[model.embedding_branches[0]].start == 0 and sum(widths) == model.embedding_dim


def test_each_branch_ranks_like_its_own_output(sen_and_data):
    model, ds = sen_and_data
    kw = dict(height=H, width=W, runtime=Runtime(torch.device("cpu")), batch_size=32)
    qf, gf = extract_features(model, ds.query, **kw), extract_features(model, ds.gallery, **kw)
    got = evaluate_branches(model, qf, gf, ds.query, ds.gallery)
    assert set(got) == {*model.embedding_branches, "all"}
    # independent path: the branch outputs of forward(), not slices of embed()
    with torch.inference_mode():
        q_out, g_out = model(load_test_batch(ds.query, H, W)), model(load_test_batch(ds.gallery, H, W))
    for branch in model.embedding_branches:
        expected = summarize(
            rank_features(q_out[branch].bn_feat, g_out[branch].bn_feat, ds.query, ds.gallery)
        )
        assert got[branch]["mAP"] == pytest.approx(expected["mAP"], abs=1e-3)
        assert got[branch]["cmc"] == pytest.approx(expected["cmc"], abs=1e-3)
    assert got["all"] == summarize(rank_features(qf, gf, ds.query, ds.gallery))
    with pytest.raises(ValueError, match=rf"expected {model.embedding_dim} columns"):
        evaluate_branches(model, qf[:, :10], gf, ds.query, ds.gallery)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["plain", "flip"])
def test_evaluate_is_the_recipes_protocol_in_one_call(sen_and_data, tiny_synthetic, variant):
    model, ds = sen_and_data
    recipe = tiny_recipe(tiny_synthetic, "eval.metric=euclidean")
    ev = evaluate(model, ds, recipe, variant=variant)
    # independent path: the test images by hand, the embedding (flip-averaged) and Euclidean distances
    with torch.inference_mode():
        q, g = load_test_batch(ds.query, H, W), load_test_batch(ds.gallery, H, W)
        qf, gf = model.embed(q), model.embed(g)
        if variant == "flip":
            qf, gf = (qf + model.embed(q.flip(3))) / 2, (gf + model.embed(g.flip(3))) / 2
    assert torch.allclose(ev.query_features, qf, atol=1e-4) and torch.allclose(
        ev.gallery_features, gf, atol=1e-4
    )
    assert torch.allclose(ev.distmat, torch.cdist(qf.double(), gf.double()).float(), atol=1e-3)
    reference = evaluate_rank_reference(ev.distmat.numpy(), *ev.ids())
    assert ev.metrics["mAP"] == pytest.approx(100 * reference["mAP"], abs=1e-3)
    assert ev.metrics["rank1"] == pytest.approx(100 * reference["cmc"][0], abs=1e-3)
    assert ev.variant == variant
    assert rank1_of(ev.ranked_lists(top_k=3)) == pytest.approx(ev.metrics["rank1"], abs=1e-3)
    with pytest.raises(ValueError, match="variant"):
        evaluate(model, ds, recipe, variant="mirror")
