"""How `make test` shares the two cores: the unit tests and the notebooks (nbval) run on two pytest-xdist
workers (``-n 2 --dist loadgroup``), one per core."""

from __future__ import annotations

import os

import pytest

# Each worker, and every process it starts (the command line, notebook kernels), uses one torch thread, so
# the two workers never fight for a core. A count the user exported is kept.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cells of one notebook run in order, on one worker, in one kernel: one group per notebook."""
    for item in items:
        path = item.nodeid.split("::")[0]
        if path.endswith(".ipynb"):
            item.add_marker(pytest.mark.xdist_group(path))
