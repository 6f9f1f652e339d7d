"""Re-ranking refuses, saying what it would need, a problem larger than the machine's free memory."""

from __future__ import annotations

import pytest
import torch

import reidlib.evaluation.reranking as reranking
from reidlib.evaluation.features import rank_features
from reidlib.evaluation.reranking import available_memory_bytes, check_rerank_memory, rerank_memory_bytes
from reidlib.training.engine import train

from support import tiny_recipe


def test_msmt17_needs_more_than_this_machine_and_says_how_much():
    need = rerank_memory_bytes(11659, 82161)
    assert need > 4 * 82161**2  # at least the gallery-gallery distances
    with pytest.raises(
        MemoryError, match=r"re-ranking 11659 queries x 82161 gallery images needs about 6\d\.\d GiB"
    ):
        check_rerank_memory(11659, 82161, available=16 * 2**30)
    check_rerank_memory(3368, 15913, available=16 * 2**30)  # Market-1501 fits in 16 GiB
    assert 0 < available_memory_bytes()


def test_evaluation_refuses_before_computing_any_distance(monkeypatch):
    monkeypatch.setattr(reranking, "available_memory_bytes", lambda: 1000)
    monkeypatch.setattr(
        "reidlib.evaluation.features.pairwise_distance", lambda *a, **k: pytest.fail("distances computed")
    )
    q, g = [("q.jpg", 1, 0)] * 3, [("g.jpg", 1, 1)] * 5
    with pytest.raises(MemoryError, match="needs about 0.0 GiB .* 0.0 GiB is available"):
        rank_features(torch.zeros(3, 4), torch.zeros(5, 4), q, g, rerank=True)


def test_training_with_rerank_refuses_before_the_first_epoch(tiny_synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(reranking, "available_memory_bytes", lambda: 1000)
    with pytest.raises(MemoryError, match="eval.rerank=false"):
        train(tiny_recipe(tiny_synthetic, "eval.final_variants=[rerank]"), tmp_path / "run")
    assert not (tmp_path / "run" / "log.jsonl").exists()
