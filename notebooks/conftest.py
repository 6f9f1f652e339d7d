"""nbval runs of the notebooks (``pytest --nbval-lax notebooks``) also check what a reader sees.

Every PNG a cell writes into the notebook's output folder must be displayed by that same cell, byte
for byte, as an ``image/png`` output, and no output may be a bare ``<Figure ...>`` text: a notebook
whose figures exist only on disk fails here (``reidlib.notebooks.runner.figure_problems``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reidlib.notebooks.runner import figure_problems
from reidlib.utils.paths import results_root


def _pngs(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")} if folder.is_dir() else {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    outputs_of = getattr(item, "test_outputs", False)
    if outputs_of is False or not str(item.fspath).endswith(".ipynb"):
        return (yield)
    # the notebooks' default output folder (output_dir = ""): reidlib.notebooks.reporting.output_folder
    folder = results_root() / "notebooks" / Path(str(item.fspath)).stem
    before = _pngs(folder)
    result = yield
    written = [p for p, mtime in _pngs(folder).items() if before.get(p) != mtime]
    problems = figure_problems(item.test_outputs or [], written)
    if problems:
        pytest.fail(f"cell {getattr(item, 'cell_num', '?')}: " + "; ".join(problems), pytrace=False)
    return result
