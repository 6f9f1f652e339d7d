"""`python -m reidlib train --config smoke`: the whole pipeline on the synthetic set, on CPU.

The issue's bar: it finishes on CPU in under 3 minutes (about 1.5 minutes on 2 idle cores; timed in the
issue note, not asserted here) and its mAP is clearly above chance. Chance is measured, not assumed:
the same evaluation on random distances.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from reidlib.data.datasets import load_dataset
from reidlib.evaluation.metrics import evaluate_rank


@pytest.mark.slow
def test_smoke_recipe_learns_far_above_chance(tmp_path):
    env = {**os.environ, "REIDLIB_DATA": str(tmp_path / "data")}
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reidlib",
            "train",
            "--config",
            "smoke",
            "--out",
            str(out),
            "--set",
            "train.progress=false",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert {"params.json", "log.jsonl", "metrics.json", "last.pt"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())

    ds = load_dataset("folder", tmp_path / "data" / "synthetic")
    q_pids, q_cams = np.array([r.pid for r in ds.query]), np.array([r.camid for r in ds.query])
    g_pids, g_cams = np.array([r.pid for r in ds.gallery]), np.array([r.camid for r in ds.gallery])
    rng = np.random.default_rng(0)
    chance = [
        evaluate_rank(rng.random((len(q_pids), len(g_pids))), q_pids, g_pids, q_cams, g_cams)
        for _ in range(5)
    ]
    chance_map = 100 * np.mean([c["mAP"] for c in chance])
    chance_rank1 = 100 * np.mean([c["cmc"][0] for c in chance])
    # Measured: chance mAP ~1.2 %, rank-1 ~0.8 %; the smoke run reaches mAP ~35 %, rank-1 ~35 %.
    assert metrics["mAP"] > max(5 * chance_map, 15.0), (metrics["mAP"], chance_map)
    assert metrics["rank1"] > max(5 * chance_rank1, 15.0), (metrics["rank1"], chance_rank1)
