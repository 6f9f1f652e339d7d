"""ONNX export of every network's test embedding, checked against PyTorch with onnxruntime."""

from __future__ import annotations

import pytest

from reidlib.evaluation.export import export_onnx
from reidlib.models import build_model


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sen", "deep_miner", "bdb"])
def test_export_matches_torch(name, tmp_path):
    model = build_model(name, 10, backbone="resnet18").eval()
    diff = export_onnx(model, tmp_path / f"{name}.onnx", height=64, width=32)
    assert diff is not None and diff < 1e-4  # relative to the largest embedding value
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed, not left behind
