"""A finished run compacted (what `make demo` keeps): its weights still load and embed as before, within
half precision; it refuses to resume; its snapshots are gone; an unfinished run is refused."""

from __future__ import annotations

import pytest
import torch

from reidlib.cli import main
from reidlib.data.datasets import load_dataset
from reidlib.data.images import load_test_batch
from reidlib.training.checkpoint import CheckpointError
from reidlib.training.engine import load_network, train
from reidlib.training.runfolder import RunFolderError, compact, snapshots

from support import tiny_recipe

pytestmark = pytest.mark.slow  # trains a tiny run


def test_a_compacted_run_loads_embeds_and_refuses_to_resume(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(tiny_synthetic, "train.snapshot_epochs=[1]")
    train(recipe, out)
    query = load_dataset("folder", tiny_synthetic).query[:6]
    images = load_test_batch(query, recipe.data.height, recipe.data.width)
    before, _ = load_network(out / "last.pt")
    with torch.inference_mode():
        expected = before.embed(images)
    size = (out / "last.pt").stat().st_size
    assert list(snapshots(out)) == [1]
    freed = compact(out)
    assert freed > 0 and (out / "last.pt").stat().st_size < size / 4 and snapshots(out) == {}
    after, _ = load_network(out / "last.pt")
    with torch.inference_mode():
        got = after.embed(images)
    assert next(after.parameters()).dtype == torch.float32
    assert torch.allclose(got, expected, rtol=2e-2, atol=2e-2 * float(expected.abs().max()))
    assert train(recipe, out, resume=True)["rank1"] >= 0  # finished: read back, not trained
    (out / "metrics.json").unlink()  # as if it had stopped before its end: last.pt must not resume
    with pytest.raises(CheckpointError, match="weights only \\(compacted\\); it cannot be resumed"):
        train(recipe, out, resume=True)


def test_only_finished_runs_are_compacted(tiny_synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "params.json").write_text("{}")
    with pytest.raises(RunFolderError, match="not a finished run"):
        compact(out)
    assert main(["compact", str(tmp_path)]) == 0
    assert "compacted 0 finished run(s)" in capsys.readouterr().out
