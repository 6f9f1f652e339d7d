"""Where a notebook puts what it produces, and the checks that it did.

Every notebook writes into one folder (``output_folder``): figures as PNG, tables as CSV, numbers as
JSON, each written atomically. The folder is the notebook's own: one that holds files the notebook did
not write is refused, so a run never writes over anyone else's. Its last cell calls ``check_outputs``
so that a run (papermill, nbval) fails when a figure is missing, empty or not the size it should be.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reidlib.utils.fileio import atomic_path, atomic_write_json, atomic_write_text
from reidlib.utils.paths import results_root
from reidlib.viz.style import FIGURE_DPI

MARK = ".notebook"  # in a notebook's output folder: the name of the notebook whose outputs it holds


class OutputFolderError(ValueError):
    """A notebook's output folder holds files that notebook did not write."""


def foreign_output(folder: str | Path, notebook: str) -> str | None:
    """Why ``folder`` is not ``notebook``'s own output folder, or None when it is: a folder that does not
    exist yet, an empty one, or one carrying ``notebook``'s mark (:data:`MARK`, written on first use)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        return f"{folder}: is a file, expected {notebook}'s output folder"
    mark = folder / MARK
    if mark.is_file():
        owner = mark.read_text(errors="replace").strip()
        if owner != notebook:
            return f"{folder}: the output folder of {owner[:80]!r}, not {notebook}'s"
        return None
    first = min((p.name for p in folder.iterdir()), default=None)
    if first is None:
        return None
    return f"{folder}: holds {first}, and {notebook} did not write there (no {MARK} file naming it)"


def mark_output_folder(folder: str | Path, notebook: str) -> Path:
    """Create ``folder`` if missing and mark it as ``notebook``'s output folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / MARK).is_file() or (folder / MARK).read_text(errors="replace").strip() != notebook:
        atomic_write_text(folder / MARK, f"{notebook}\n")
    return folder


def output_folder(notebook: str, output_dir: str = "") -> Path:
    """``output_dir`` when given (the runner passes ``results/<run_id>/<notebook>``), else
    ``results/notebooks/<notebook>`` for interactive and nbval runs; created if missing and marked as
    the notebook's own. A folder that holds anything else is refused (:func:`foreign_output`): a notebook
    writes over its own previous outputs only, and removes nothing."""
    folder = Path(output_dir) if output_dir else results_root() / "notebooks" / notebook
    problem = foreign_output(folder, notebook)
    if problem:
        raise OutputFolderError(f"{problem}; choose another output_dir, or empty that folder")
    return mark_output_folder(folder, notebook)


def save_figure(fig, path: str | Path, *, dpi: int = FIGURE_DPI, colors: int | None = None) -> Path:
    """Save a matplotlib figure as PNG (fixed dpi, so its pixel size is known) and return the path.

    ``colors``: store a palette of that many colours instead of full RGBA. Figures made of photos
    (ranked lists, activation overlays) shrink about 3x at 256 colours with no visible change, which
    is what keeps committed run reports small.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if colors is None:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
        else:
            from PIL import Image

            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
            buffer.seek(0)
            with Image.open(buffer) as image:
                palette = image.convert("RGB").quantize(colors, method=Image.Quantize.MEDIANCUT)
            palette.save(tmp, format="png", optimize=True)
    return path


def show_figure(fig, path: str | Path, *, dpi: int = FIGURE_DPI, colors: int | None = None) -> None:
    """Save ``fig`` as :func:`save_figure` does and display that PNG in the notebook.

    The notebook shows the file's own bytes (an ``image/png`` output), so what a reader sees in
    JupyterLab, in a papermill copy and on disk is one image, whatever matplotlib backend is active
    (a ``Figure`` made without pyplot has no inline display of its own). Returns nothing, so a cell
    that ends with it shows the figure and no stray value.
    """
    from IPython.display import Image, display

    display(Image(filename=str(save_figure(fig, path, dpi=dpi, colors=colors))))


def display_figure(fig, *, dpi: int = FIGURE_DPI) -> None:
    """Display ``fig`` as a PNG without writing a file (figures redrawn by a widget)."""
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    display(Image(data=buffer.getvalue(), format="png"))


def save_table(df, path: str | Path) -> None:
    """Save a pandas DataFrame as CSV (index kept only when it is named)."""
    with atomic_path(Path(path)) as tmp:
        df.to_csv(tmp, index=df.index.name is not None)


def save_json(obj: Any, path: str | Path) -> None:
    atomic_write_json(Path(path), obj)


class OutputCheckError(AssertionError):
    """A notebook did not write what it promised."""


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) read from a PNG header."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise OutputCheckError(f"{path}: not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def check_outputs(
    folder: str | Path,
    *,
    figures: Mapping[str, tuple[int, int]] = (),
    tables: Sequence[str] = (),
    jsons: Sequence[str] = (),
) -> dict[str, Any]:
    """Check that ``folder`` holds each figure (PNG at least (width, height) pixels), each table (CSV
    with a header and at least one row) and each JSON file; return a summary, raise otherwise."""
    folder = Path(folder)
    summary: dict[str, Any] = {}
    for name, (min_w, min_h) in dict(figures).items():
        path = folder / name
        if not path.is_file() or path.stat().st_size == 0:
            raise OutputCheckError(f"figure {path} was not written")
        w, h = png_size(path)
        if w < min_w or h < min_h:
            raise OutputCheckError(f"figure {path} is {w}x{h} pixels, expected at least {min_w}x{min_h}")
        summary[name] = [w, h]
    for name in tables:
        path = folder / name
        lines = path.read_text().splitlines() if path.is_file() else []
        if len(lines) < 2:
            raise OutputCheckError(f"table {path} is missing or has no rows")
        summary[name] = len(lines) - 1
    for name in jsons:
        path = folder / name
        try:
            json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise OutputCheckError(f"{path} is missing or not JSON: {err}") from err
        summary[name] = "ok"
    return summary
