"""benchmarks/gpu_check.py in its CPU dry run: every stage runs and the JSON holds every figure."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_measures_every_network_and_mode_and_the_short_run(gpu_check, tiny_synthetic, tmp_path):
    out = tmp_path / "check.json"
    report = gpu_check.main(
        ["--dry-run", "--data-root", str(tiny_synthetic), "--dataset", "synthetic", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["dry_run"] and report["settings"]["backbone"] == "resnet18"
    assert set(report["throughput"]) == {"baseline", "sen", "deep_miner", "bdb"}
    for name, modes in report["throughput"].items():
        assert list(modes) == list(gpu_check.MODES) or set(modes) == set(gpu_check.MODES), name
        for mode, row in modes.items():
            assert row.get("images_per_s", 0) > 0, (name, mode, row)
    market = report["market1501"]
    assert "error" not in market, market
    assert len(market["epoch_time_s"]) == 2 and market["iters_per_epoch"] == [2, 2]
    assert market["eval_s"] > 0 and market["projected_120_epochs_h"] > 0
    assert market["device_augment"] and 0 <= market["metrics_after_2_epochs"]["mAP"] <= 100


@pytest.mark.slow
def test_budget_skips_compiled_modes_and_no_data_root_skips_the_run(gpu_check, tmp_path):
    report = gpu_check.main(
        ["--dry-run", "--networks", "baseline", "bdb", "--budget-s", "0", "--out", str(tmp_path / "c.json")]
    )
    for name in ("baseline", "bdb"):  # the eager modes always run; no time left for compiling
        assert report["throughput"][name]["fp32_eager"]["images_per_s"] > 0
        assert "time budget" in report["throughput"][name]["bf16_channels_last_compile"]["skipped"]
    assert report["market1501"] == {"skipped": "no --data-root"}
