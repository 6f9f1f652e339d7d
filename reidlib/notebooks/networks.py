"""The trained networks notebook 02 draws its masks on: a checkpoint when one is given, else a short run
trained on the spot.

Notebook 02 draws two: its own SEN (``sen_smoke``, ResNet-18 from scratch, unless a checkpoint is given)
and, beside it, an ImageNet-initialised SEN (:data:`IMAGENET_SEN`: MobileNetV2 with the ImageNet weights
that ``make weights`` puts in the torch cache), the papers' regime. Without those weights the second one
is skipped with one sentence that names the command, never an error: a user who did not run ``make
weights`` still gets the rest of the lesson.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from reidlib.config import Recipe, load_recipe
from reidlib.experiments.runs import BACKBONE_LABELS, short_budget
from reidlib.models import ReIDNetwork
from reidlib.models.weights import FETCH_COMMAND, WeightsNotFoundError, resolve_weights_file
from reidlib.training.checkpoint import checkpoint_recipe, load_checkpoint
from reidlib.training.engine import load_network, train

# SEN on the demo budget with MobileNetV2 from ImageNet (reidlib/recipes/sen_mnv2_smoke.yaml)
IMAGENET_SEN = "sen_mnv2_smoke"


class DrawnNetwork(NamedTuple):
    """A network to draw masks on (``model`` None: there is none, ``said`` says why)."""

    model: ReIDNetwork | None
    recipe: Recipe | None  # as it was trained (``model.pretrained`` as the run had it)
    trained: dict[str, Any] | None  # the short run's final metrics; None when read from a checkpoint
    said: str  # one sentence: which network this is, or why there is none

    @property
    def label(self) -> str:
        """ "ResNet-18 from scratch", "MobileNetV2 from ImageNet" ("" without a network)."""
        if self.recipe is None:
            return ""
        return short_budget(self.recipe.model.backbone, bool(self.recipe.model.pretrained))

    @property
    def stacked_label(self) -> str:
        """:attr:`label` on two lines, the backbone above where it started: a narrow column's title."""
        return self.label.replace(" from ", "\nfrom ", 1)


def describe(recipe: Recipe) -> str:
    """ "sen, MobileNetV2 from ImageNet, 2 epochs on synthetic"."""
    init = short_budget(recipe.model.backbone, bool(recipe.model.pretrained))
    epochs = f"{recipe.optim.epochs} epoch" + ("s" if recipe.optim.epochs != 1 else "")
    return f"{recipe.model.name}, {init}, {epochs} on {recipe.data.dataset}"


def network_to_draw(
    checkpoint: str | Path,
    recipe_name: str,
    *,
    epochs: int,
    dataset: str,
    data_root: str | Path | None,
    options: dict[str, Any],
    out: str | Path,
) -> DrawnNetwork:
    """The network of ``checkpoint`` when one is given; else a short run of ``recipe_name`` (its erasing
    ``options`` set, e.g. SEN's r1, r2 and p) for ``epochs`` on ``dataset``, trained into ``out``; else,
    with ``epochs`` 0 or the recipe's ImageNet weights missing, no network and the reason."""
    if checkpoint:
        path = Path(checkpoint).resolve()
        model, _ = load_network(path)
        recipe = checkpoint_recipe(load_checkpoint(path))  # load_network's recipe no longer says pretrained
        return DrawnNetwork(model, recipe, None, f"Read from `{checkpoint}`: {describe(recipe)}.")
    if epochs == 0:
        said = f"No {recipe_name} run here: its epochs are 0 and no checkpoint is given."
        return DrawnNetwork(None, None, None, said)
    base = load_recipe(recipe_name)
    recipe = load_recipe(
        recipe_name,
        {
            "model.options": {**base.model.options, **options},
            "data.dataset": dataset,
            "data.root": str(data_root) if data_root else None,
            "optim.epochs": epochs,
            "optim.warmup_epochs": min(base.optim.warmup_epochs, epochs),
            "optim.milestones": [],
            "eval.every": epochs,
            "train.progress": False,
        },
    )
    if recipe.model.pretrained:
        try:
            resolve_weights_file(recipe.model.backbone, recipe.model.pretrained)
        except WeightsNotFoundError:
            backbone = recipe.model.backbone
            said = (
                f"The ImageNet weights of {BACKBONE_LABELS.get(backbone, backbone)} are not on this machine, "
                f"so the {recipe_name} run is skipped: `make weights` (or "
                f"`{FETCH_COMMAND.format(name=backbone)}`) gets them once."
            )
            return DrawnNetwork(None, None, None, said)
    trained = train(recipe, out, overwrite=True)
    model, _ = load_network(Path(out) / "last.pt")
    said = (
        f"Trained here ({describe(recipe)}) in {trained['train_time_s']:.0f} s: rank-1 "
        f"{trained['rank1']:.1f} %, mAP {trained['mAP']:.1f} % on its test split."
    )
    return DrawnNetwork(model, recipe, trained, said)
