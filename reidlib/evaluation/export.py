"""ONNX export of a trained network's test embedding, checked against PyTorch with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from reidlib.models import ReIDNetwork
from reidlib.utils.fileio import atomic_path


class EmbeddingNetwork(nn.Module):
    """images (B, 3, H, W) normalised -> test embedding (B, D); what a deployment needs."""

    def __init__(self, model: ReIDNetwork):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.embed(images)


def export_onnx(
    model: ReIDNetwork, path: str | Path, *, height: int, width: int, check: bool = True
) -> float | None:
    """Write ``path`` (dynamic batch size) and, with ``check``, return the largest difference between
    onnxruntime's and PyTorch's embeddings of a random batch of 3, relative to the largest embedding
    value (embeddings of different networks live on very different scales)."""
    wrapper = EmbeddingNetwork(model).eval()
    example = torch.randn(2, 3, height, width)
    with atomic_path(path) as tmp:
        torch.onnx.export(
            wrapper,
            (example,),
            str(tmp),
            input_names=["images"],
            output_names=["embedding"],
            dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=4096)}},
            dynamo=True,
            external_data=False,
        )
    if not check:
        return None
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.randn(3, 3, height, width)
    with torch.inference_mode():
        expected = wrapper(images).numpy()
    got = session.run(["embedding"], {"images": images.numpy()})[0]
    return float(np.abs(got - expected).max() / max(float(np.abs(expected).max()), 1e-30))
