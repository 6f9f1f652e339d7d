"""`.ci/link-datasets`: CI finds the real datasets kept beside the clone through the data root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reidlib.utils.paths import repo_root

SCRIPT = repo_root() / ".ci" / "link-datasets"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def link(clone: Path) -> str:
    done = subprocess.run(["bash", str(SCRIPT), str(clone)], capture_output=True, text=True, check=True)
    return done.stdout


def test_links_each_shared_dataset_into_data(tmp_path):
    for name in ("market1501", "dukemtmc"):
        (tmp_path / "shared" / "datasets" / name / "bounding_box_train").mkdir(parents=True)
    (tmp_path / "shared" / "datasets" / "README").write_text("not a dataset folder")
    clone = tmp_path / "reidlib"
    clone.mkdir()
    link(clone)
    data = clone / "data"
    assert sorted(p.name for p in data.iterdir()) == ["dukemtmc", "market1501"]
    for name in ("market1501", "dukemtmc"):
        assert os.readlink(data / name) == f"../../shared/datasets/{name}"  # relative: survives a move
        assert (data / name / "bounding_box_train").is_dir()


def test_leaves_existing_entries_alone_and_is_idempotent(tmp_path):
    (tmp_path / "shared" / "datasets" / "market1501").mkdir(parents=True)
    (tmp_path / "shared" / "datasets" / "msmt17").mkdir(parents=True)
    own = tmp_path / "reidlib" / "data" / "market1501"
    own.mkdir(parents=True)  # the user's own copy
    link(tmp_path / "reidlib")
    assert own.is_dir() and not own.is_symlink()
    assert os.readlink(tmp_path / "reidlib" / "data" / "msmt17") == "../../shared/datasets/msmt17"
    assert "already there" in link(tmp_path / "reidlib")  # a second run changes nothing
    assert sorted(p.name for p in (tmp_path / "reidlib" / "data").iterdir()) == ["market1501", "msmt17"]


def test_without_a_shared_folder_nothing_happens(tmp_path):
    clone = tmp_path / "reidlib"
    clone.mkdir()
    assert link(clone) == ""
    assert not (clone / "data").exists()


def test_ci_run_links_before_testing():
    lines = (repo_root() / ".ci" / "run").read_text().splitlines()
    assert lines.index(".ci/link-datasets") < lines.index("make test")
