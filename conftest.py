"""Settings of every pytest run of this repository: the unit tests (tests/) and the notebooks under nbval
(``pytest --nbval-lax notebooks``).

- `make test` runs both at once on two pytest-xdist workers (``-n 2 --dist loadfile``: a notebook's cells
  stay in order on one worker, in one kernel). Each worker, and every process it starts (the command
  line, notebook kernels), then uses one torch thread, so the two never fight for a core; a count the
  user exported is kept.
- An nbval run also checks what a reader sees: every PNG a cell writes into the notebook's output folder
  must be displayed by that same cell, byte for byte, as an ``image/png`` output, and no output may be a
  bare ``<Figure ...>`` text (``reidlib.notebooks.runner.figure_problems``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _pngs(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")} if folder.is_dir() else {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    outputs_of = getattr(item, "test_outputs", False)
    if outputs_of is False or item.path.suffix != ".ipynb":
        return (yield)
    from reidlib.notebooks.runner import figure_problems
    from reidlib.utils.paths import results_root

    # the notebooks' default output folder (output_dir = ""): reidlib.notebooks.reporting.output_folder
    folder = results_root() / "notebooks" / item.path.stem
    before = _pngs(folder)
    result = yield
    written = [p for p, mtime in _pngs(folder).items() if before.get(p) != mtime]
    problems = figure_problems(item.test_outputs or [], written)
    if problems:
        pytest.fail(f"cell {getattr(item, 'cell_num', '?')}: " + "; ".join(problems), pytrace=False)
    return result
