"""The networks notebook 02 draws: a checkpoint read back with how it was initialised, a run skipped in
one sentence when its ImageNet weights are missing or its epochs are 0, and the placement figure of two
networks side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from reidlib.notebooks import networks
from reidlib.training.engine import train
from reidlib.viz import masks as vmask

from support import tiny_recipe

# SEN's branches each with a loss term (a tiny SEN that trains in seconds)
SEN_TERMS = ("loss.terms=[{branch: global, kind: ce}, {branch: bs, kind: ce}, {branch: ms, kind: ce}]",)


def test_missing_imagenet_weights_skip_the_run_in_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_cache"))
    drawn = networks.network_to_draw(
        "",
        networks.IMAGENET_SEN,
        epochs=2,
        dataset="synthetic",
        data_root=None,
        options={},
        out=tmp_path / "r",
    )
    assert drawn.model is None and drawn.recipe is None and drawn.label == ""
    assert drawn.said.count(". ") == 0 and drawn.said.endswith(".")  # one sentence
    assert "MobileNetV2 are not on this machine" in drawn.said and "`make weights`" in drawn.said
    assert "python -m reidlib weights get mobilenet_v2" in drawn.said
    assert not (tmp_path / "r").exists()  # nothing trained


def test_zero_epochs_skip_the_run(tmp_path):
    drawn = networks.network_to_draw(
        "", "sen_smoke", epochs=0, dataset="synthetic", data_root=None, options={}, out=tmp_path / "r"
    )
    assert drawn.model is None and "epochs are 0" in drawn.said


@pytest.mark.slow
def test_a_checkpoint_is_read_with_its_initialisation(tiny_synthetic, tmp_path):
    run = tmp_path / "sen"
    train(tiny_recipe(tiny_synthetic, "model.name=sen", *SEN_TERMS), run)
    drawn = networks.network_to_draw(
        str(run / "last.pt"), "unused", epochs=0, dataset="x", data_root=None, options={}, out=tmp_path / "o"
    )
    assert drawn.model is not None and drawn.trained is None
    assert drawn.label == "ResNet-18 from scratch"
    assert drawn.said == f"Read from `{run / 'last.pt'}`: sen, ResNet-18 from scratch, 2 epochs on synthetic."


def test_the_imagenet_recipe_is_sen_smoke_on_mobilenet_v2_from_imagenet():
    from reidlib.config import load_recipe

    imagenet, scratch = load_recipe(networks.IMAGENET_SEN), load_recipe("sen_smoke")
    assert (imagenet.model.backbone, imagenet.model.pretrained) == ("mobilenet_v2", True)
    assert imagenet.model.name == scratch.model.name == "sen"
    assert imagenet.model.options == scratch.model.options and imagenet.loss == scratch.loss
    assert imagenet.data == scratch.data  # the same images, sizes and batches as the demo's SEN
    assert networks.describe(imagenet) == "sen, MobileNetV2 from ImageNet, 2 epochs on synthetic"
    drawn = networks.DrawnNetwork(None, imagenet, None, "")
    assert (drawn.label, drawn.stacked_label) == ("MobileNetV2 from ImageNet", "MobileNetV2\nfrom ImageNet")


def _rows(observed, chance):
    return pd.DataFrame(
        {"claim": ["background", "person"], "observed_share": observed, "chance_share": chance},
        index=pd.Index(["M1", "M2"], name="mask"),
    )


def test_the_side_by_side_placement_bars_are_the_numbers():
    panels = [
        ("ResNet-18 from scratch", _rows([46.0, 32.0], [77.0, 23.0])),
        ("MobileNetV2", _rows([86.0, 52.0], [76.0, 22.0])),
    ]
    fig = vmask.plot_placement_side_by_side(panels, "Where the masks erase")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["ResNet-18 from scratch", "MobileNetV2"]
    for ax, (_, rows) in zip(axes, panels, strict=True):
        heights = [p.get_height() for p in ax.patches if isinstance(p, Rectangle)]
        # observed bars first, then the chance bars, as drawn
        np.testing.assert_allclose(heights, [*rows["observed_share"], *rows["chance_share"]])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["M1\non background", "M2\non person"]
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])  # one y-axis: shares read across panels


@pytest.mark.slow
def test_a_short_run_is_trained_with_the_notebooks_erasing_settings(tiny_synthetic, tmp_path):
    import json

    drawn = networks.network_to_draw(
        "",
        "sen_smoke",
        epochs=1,
        dataset="synthetic",
        data_root=tiny_synthetic,
        options={"r1": 0.2, "p": 1},
        out=tmp_path / "run",
    )
    assert drawn.recipe.optim.epochs == 1 and drawn.recipe.model.options["r1"] == 0.2
    assert drawn.recipe.model.options["r2"] == 0.25  # the recipe's own where the notebook sets none
    assert drawn.model.bs_erase.kwargs == {"ratio": 0.2, "p": 1.0}  # the network built with them
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    said = f"rank-1 {metrics['rank1']:.1f} %, mAP {metrics['mAP']:.1f} % on its test split."
    assert drawn.said.endswith(said)
    assert drawn.said.startswith("Trained here (sen, ResNet-18 from scratch, 1 epoch on synthetic)")
