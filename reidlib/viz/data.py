"""Plots of the dataset statistics of :mod:`reidlib.data.stats` (SEN Table 1): cameras, identities,
sample images. Each function draws the tables or arrays it is given and reads no file. Figures are
built without pyplot (no global state); colours are seaborn's colour-blind palette.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reidlib.data.datasets import ImageRecord
from reidlib.data.datasets.base import SPLITS
from reidlib.viz.style import FIGURE_DPI

PALETTE = dict(zip(SPLITS, sns.color_palette("colorblind", 3), strict=True))


# ----------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_images_per_camera(counts: pd.DataFrame, title: str = "") -> Figure:
    """Bars of images per camera, one colour per split (from :func:`camera_counts`)."""
    num_cams = counts["camid"].nunique()
    fig = _figure(max(5.0, 0.55 * num_cams + 2.5), 3.4)
    ax = fig.add_subplot()
    sns.barplot(
        data=counts, x="camid", y="images", hue="split", hue_order=list(SPLITS), palette=PALETTE, ax=ax
    )
    ax.set_xlabel("camera (camid, 0-based)")
    ax.set_ylabel("images")
    ax.set_title(title or "Images per camera and split")
    ax.legend(title="split", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_identity_distributions(identities: pd.DataFrame, title: str = "") -> Figure:
    """Histogram of images per identity and bars of cameras per identity, per split.

    Gallery distractors (identities with no query) are left out: Market's pid 0 alone has 2,798 images.
    """
    ids = identities[~identities["distractor"]]
    fig = _figure(10.0, 3.6)
    ax_img, ax_cam = fig.subplots(1, 2)
    sns.histplot(
        data=ids,
        x="images",
        hue="split",
        hue_order=list(SPLITS),
        palette=PALETTE,
        element="step",
        discrete=ids["images"].max() <= 60,
        legend=False,
        ax=ax_img,
    )
    ax_img.set_xlabel("images per identity")
    ax_img.set_ylabel("identities")
    ax_img.set_title("Images per identity")
    cams = ids.groupby(["split", "cameras"]).size().rename("identities").reset_index()
    sns.barplot(
        data=cams,
        x="cameras",
        y="identities",
        hue="split",
        hue_order=list(SPLITS),
        palette=PALETTE,
        ax=ax_cam,
    )
    ax_cam.set_xlabel("cameras per identity")
    ax_cam.set_ylabel("identities")
    ax_cam.set_title("Cameras per identity")
    ax_cam.legend(title="split", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        fig.suptitle(title)
    return fig


def plot_samples_per_camera(
    samples: Mapping[int, Sequence[tuple[np.ndarray, ImageRecord]]], title: str = ""
) -> Figure:
    """One row per camera, its images labelled ``pid / cam`` (:func:`reidlib.data.stats.sample_images`)."""
    if not samples:
        raise ValueError("samples: expected at least one camera with images")
    cams = sorted(samples)
    ncols = max(len(samples[c]) for c in cams)
    fig = _figure(1.05 * ncols + 0.8, 2.15 * len(cams) + 0.4)
    axes = np.asarray(fig.subplots(len(cams), ncols, squeeze=False))
    for row, cam in enumerate(cams):
        for col in range(ncols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(samples[cam]):
                image, rec = samples[cam][col]
                ax.imshow(image)
                ax.set_title(f"pid {rec.pid} / cam {rec.camid}", fontsize=8)
        axes[row, 0].set_ylabel(f"camera {cam}")
    fig.suptitle(title or "Sample images per camera")
    return fig
