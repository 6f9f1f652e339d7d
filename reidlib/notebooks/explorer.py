"""The mask explorer of notebook 02: sliders for r1, r2, tau and p over feature maps computed once.

Moving a slider recomputes SEN's M1 and M2 and Deep Miner's ErO with :mod:`reidlib.erasing` on the
cached maps (milliseconds), redraws them over the shown images, and, where the dataset knows its
silhouettes, says again where each mask falls against chance
(:func:`reidlib.evaluation.mask_placement.placement_sentence`). Run headless (papermill, nbval, the
docs site), ``interactive=False`` draws the same figure for the notebook's parameters, with no widget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from IPython.display import Markdown, display
from torch import Tensor

from reidlib.evaluation.mask_placement import CLAIMS, masks_for, placement_rows, placement_sentence
from reidlib.notebooks.reporting import display_figure
from reidlib.viz import masks as vmask
from reidlib.viz.masks import OverlayColumn

# slider ranges: (min, max, step)
RANGES = {"r1": (0.0, 0.5, 0.05), "r2": (0.05, 0.75, 0.05), "tau": (0.05, 0.95, 0.05), "p": (1, 4, 1)}


@dataclass
class MaskExplorer:
    """The shown images with their feature maps, and (optionally) many images' maps with the coverage
    of the person per grid, for the placement sentences."""

    feats: dict[str, Tensor]
    images: np.ndarray  # (N, H, W, 3) in [0, 1]
    labels: Sequence[str]
    stats_feats: dict[str, Tensor] | None = None
    coverage: dict[tuple[int, int], Tensor] | None = None
    sliders: dict = field(default_factory=dict)

    def figure(self, *, r1: float, r2: float, tau: float, p: float):
        masks = masks_for(self.feats, r1=r1, r2=r2, tau=tau, p=p)
        columns = [OverlayColumn("input", "image")]
        titles = {"M1": f"SEN M1, r1 = {r1:g}", "M2": f"SEN M2, r2 = {r2:g}"}
        titles |= {"ErO Y2": f"ErO on Y2, tau = {tau:g}", "ErO Y3": f"ErO on Y3, tau = {tau:g}"}
        columns += [OverlayColumn(titles[name], "mask", vmask.grids(m)) for name, m in masks.items()]
        return vmask.plot_overlay_grid(self.images, columns, self.labels, f"The masks at p = {p:g}")

    def sentences(self, *, r1: float, r2: float, tau: float, p: float) -> list[str]:
        """Where each mask falls on the many images, against chance (empty without silhouettes)."""
        if self.stats_feats is None or self.coverage is None:
            return []
        masks = masks_for(self.stats_feats, r1=r1, r2=r2, tau=tau, p=p)
        return [placement_sentence(row) for row in placement_rows(masks, self.coverage, CLAIMS)]

    def draw(self, r1: float, r2: float, tau: float, p: float) -> None:
        display_figure(self.figure(r1=r1, r2=r2, tau=tau, p=p))
        lines = self.sentences(r1=r1, r2=r2, tau=tau, p=p)
        if lines:
            display(Markdown("\n".join(f"- {line}" for line in lines)))

    def widget(self, **values: float):
        """Sliders starting at ``values`` (r1, r2, tau, p) and the output they redraw."""
        import ipywidgets as widgets

        for name, (low, high, step) in RANGES.items():
            kind = widgets.IntSlider if name == "p" else widgets.FloatSlider
            self.sliders[name] = kind(
                value=values[name], min=low, max=high, step=step, description=name, continuous_update=False
            )
        output = widgets.interactive_output(self.draw, self.sliders)
        return widgets.VBox([widgets.HBox(list(self.sliders.values())), output])


def show_explorer(explorer: MaskExplorer, *, interactive: bool, r1: float, r2: float, tau: float, p: float):
    """In JupyterLab (``interactive``): the sliders and their figure. Headless: the figure for these
    values. Returns the explorer (its ``sliders`` move it from code)."""
    if interactive:
        display(explorer.widget(r1=r1, r2=r2, tau=tau, p=p))
    else:
        explorer.draw(r1, r2, tau, p)
    return explorer
