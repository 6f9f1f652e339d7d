"""Per-branch evaluation: each branch's slice of the embedding, checked against the branch outputs."""

from __future__ import annotations

import pytest
import torch

from reidlib.datasets import load_dataset
from reidlib.evaluation import evaluate_branches, extract_features, rank_features, summarize
from reidlib.imagedata import load_test_batch
from reidlib.models import build_model
from reidlib.runtime import Runtime

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
