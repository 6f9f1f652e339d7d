"""Shared fixtures: a tiny synthetic dataset (through the real parser). The helpers the tests share are
in support.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from reidlib.data.datasets import make_synthetic


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """8 train ids, 6 test ids (about 220 images of 128x64), written once per test session."""
    return make_synthetic(
        tmp_path_factory.mktemp("data") / "synthetic", num_train_ids=8, num_test_ids=6, seed=0
    )
