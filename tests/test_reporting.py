"""Figures, tables and the output check every notebook ends with."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from reidlib.notebooks import reporting
from reidlib.notebooks.reporting import OutputCheckError, check_outputs, png_size


def _photo_figure():
    fig = Figure(figsize=(3, 4), dpi=reporting.FIGURE_DPI)
    FigureCanvasAgg(fig)
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(64, 32, 3)), 0), 1)  # photo-like: smooth, many colours
    fig.add_subplot().imshow((smooth - smooth.min()) / np.ptp(smooth))
    return fig


def test_palette_png_has_the_same_size_and_nearly_the_same_pixels(tmp_path):
    fig = _photo_figure()
    full = reporting.save_figure(fig, tmp_path / "full.png")
    small = reporting.save_figure(fig, tmp_path / "small.png", colors=256)
    assert png_size(full) == png_size(small)
    with Image.open(full) as a, Image.open(small) as b:
        assert b.mode == "P" and len(b.getcolors(maxcolors=1 << 16)) <= 256
        diff = np.abs(np.asarray(a.convert("RGB"), float) - np.asarray(b.convert("RGB"), float))
    assert diff.mean() < 3  # out of 255: no visible change
    assert small.stat().st_size < full.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.png", "small.png"]  # no temp files left


def test_check_outputs_names_what_is_missing_or_too_small(tmp_path):
    reporting.save_figure(_photo_figure(), tmp_path / "fig.png")
    reporting.save_table(pd.DataFrame({"a": [1, 2]}), tmp_path / "t.csv")
    reporting.save_json({"x": 1}, tmp_path / "s.json")
    w, h = png_size(tmp_path / "fig.png")
    summary = check_outputs(tmp_path, figures={"fig.png": (w, h)}, tables=["t.csv"], jsons=["s.json"])
    assert summary == {"fig.png": [w, h], "t.csv": 2, "s.json": "ok"}
    with pytest.raises(OutputCheckError, match=rf"fig.png is {w}x{h} pixels, expected at least {w + 1}"):
        check_outputs(tmp_path, figures={"fig.png": (w + 1, h)})
    with pytest.raises(OutputCheckError, match="other.png was not written"):
        check_outputs(tmp_path, figures={"other.png": (1, 1)})
    (tmp_path / "empty.csv").write_text("a\n")
    with pytest.raises(OutputCheckError, match="empty.csv is missing or has no rows"):
        check_outputs(tmp_path, tables=["empty.csv"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(OutputCheckError, match="bad.json is missing or not JSON"):
        check_outputs(tmp_path, jsons=["bad.json"])
