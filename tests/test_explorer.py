"""02's mask explorer: a slider recomputes the masks with the erasing functions and says again where they
fall; headless, the same call draws the static figure with no widget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reidlib.evaluation.mask_placement import masks_for
from reidlib.notebooks import explorer as explorer_module
from reidlib.notebooks.explorer import MaskExplorer, show_explorer


def _feats(n: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "A": torch.rand(n, 16, 8, 4, generator=gen),
        "B": torch.rand(n, 16, 8, 4, generator=gen),
        "Y2": torch.rand(n, 8, 16, 8, generator=gen),
        "Y3": torch.rand(n, 8, 8, 4, generator=gen),
    }


@pytest.fixture
def explorer():
    stats = _feats(30, 1)
    coverage = {(8, 4): torch.zeros(30, 8, 4), (16, 8): torch.zeros(30, 16, 8)}
    for grid in coverage.values():
        grid[:, :, 1:-1] = 1.0  # the person: every column but the two outer ones
    images = np.random.default_rng(0).random((2, 128, 64, 3))
    return MaskExplorer(_feats(2, 0), images, ["a", "b"], stats_feats=stats, coverage=coverage)


def test_masks_for_one_setting_are_the_erasing_functions(explorer):
    masks = masks_for(explorer.feats, r1=0.3, r2=0.5, tau=0.5, p=2)
    assert [int((m[0] == 0).sum()) for m in (masks["M1"], masks["M2"])] == [9, 16]  # floor(r x 32)
    assert set(masks) == {"M1", "M2", "ErO Y2", "ErO Y3"}


def test_the_sentences_follow_the_settings(explorer):
    low = explorer.sentences(r1=0.1, r2=0.25, tau=0.8, p=2)
    high = explorer.sentences(r1=0.4, r2=0.25, tau=0.8, p=2)
    assert (
        len(low) == 4 and low[0].startswith("**M1** (3 cells per image") and high[0].startswith("**M1** (12 ")
    )
    assert low[1] == high[1]  # M2 did not move
    # random maps: M1's background share is about the chance share (2 of 4 columns are background)
    assert "at chance" in low[0]


def test_without_silhouettes_there_are_no_sentences(explorer):
    explorer.coverage = None
    assert explorer.sentences(r1=0.1, r2=0.25, tau=0.8, p=2) == []


def test_a_slider_redraws_with_its_value(explorer, monkeypatch):
    pytest.importorskip("ipywidgets")
    calls = []
    monkeypatch.setattr(explorer, "draw", lambda r1, r2, tau, p: calls.append((r1, r2, tau, p)))
    monkeypatch.setattr(explorer_module, "display", lambda *a, **k: None)
    show_explorer(explorer, interactive=True, r1=0.1, r2=0.25, tau=0.8, p=2)
    assert calls[-1] == (0.1, 0.25, 0.8, 2)
    explorer.sliders["r1"].value = 0.3
    explorer.sliders["tau"].value = 0.6
    r1, r2, tau, p = calls[-1]
    assert math.isclose(r1, 0.3) and math.isclose(tau, 0.6) and (r2, p) == (0.25, 2)


def test_headless_it_draws_the_figure_and_the_sentences(explorer, monkeypatch):
    shown = []
    monkeypatch.setattr(explorer_module, "display", shown.append)
    monkeypatch.setattr(explorer_module, "display_figure", lambda fig: shown.append(fig))
    assert show_explorer(explorer, interactive=False, r1=0.2, r2=0.25, tau=0.8, p=2) is explorer
    assert not explorer.sliders  # no widget
    fig, text = shown
    assert len(fig.axes) == 2 * 5  # two images x (input + four masks)
    assert "**M1** (6 cells per image" in text.data
