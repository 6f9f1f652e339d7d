"""Where the repository, the datasets and the results live.

Everything is resolved from the package location, never from the working directory, so a notebook
run from ``notebooks/``, a test run from the root and papermill running elsewhere all agree.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # reidlib/, this file is reidlib/utils/paths.py


def repo_root() -> Path:
    """The checkout that holds the ``reidlib`` package (installed editable)."""
    return PACKAGE_DIR.parent


def data_root() -> Path:
    """Dataset roots: ``$REIDLIB_DATA`` when set, else ``<repo>/data``."""
    env = os.environ.get("REIDLIB_DATA")
    return Path(env).expanduser().resolve() if env else repo_root() / "data"


def results_root() -> Path:
    """Run outputs: ``$REIDLIB_RESULTS`` when set, else ``<repo>/results``."""
    env = os.environ.get("REIDLIB_RESULTS")
    return Path(env).expanduser().resolve() if env else repo_root() / "results"


def recipes_dir() -> Path:
    """The paper recipes (YAML) shipped inside the package."""
    return PACKAGE_DIR / "recipes"


def paper_results_dir() -> Path:
    """Published tables of the two papers, transcribed once (committed CSVs)."""
    return repo_root() / "data" / "paper_results"
