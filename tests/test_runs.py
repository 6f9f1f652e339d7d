"""Reading run folders back: read_run, runs_table, variants, gains over BoT, our rows as published rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from reidlib.config import load_recipe
from reidlib.experiments import runs
from reidlib.experiments.runs import RunReadError, read_run, runs_table
from reidlib.training.engine import train

from support import tiny_recipe


def _write(
    folder: Path,
    recipe: str,
    metrics: dict | None,
    *,
    epochs_logged: int = 2,
    sha: str = "0123456789ab",
    dirty: bool = False,
    device: str = "cpu: test cpu",
    dataset: str = "market1501",
) -> Path:
    folder.mkdir(parents=True)
    params = {
        "recipe": load_recipe(recipe).to_dict(),
        "dataset": {"name": dataset},
        "environment": {
            "git_sha": sha,
            "git_dirty": dirty,
            "device": device,
            "started": "2026-11-20T10:00:00+00:00",
        },
    }
    (folder / "params.json").write_text(json.dumps(params))
    log = [
        {"epoch": e, "lr": 1e-4, "losses": {"total": 1.0}, "epoch_time_s": 10.0, "metrics": None}
        for e in range(1, epochs_logged + 1)
    ]
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def _metrics(rank1: float, mAP: float, mINP: float, *, variants: bool = True) -> dict:
    m = {
        "rank1": rank1,
        "rank5": rank1 + 10,
        "rank10": rank1 + 15,
        "mAP": mAP,
        "mINP": mINP,
        "epoch": 20,
        "train_time_s": 1234.5,
        "protocol": {
            "dataset": "market1501",
            "mode": "standard",
            "metric": "cosine",
            "num_query": 3368,
            "num_gallery": 15913,
        },
    }
    if variants:
        m["variants"] = {
            "plain": {"rank1": rank1, "mAP": mAP, "mINP": mINP},
            "flip": {"rank1": rank1 + 1, "mAP": mAP + 0.5, "mINP": mINP + 0.25},
            "rerank": {"rank1": rank1 + 2, "mAP": mAP + 10, "mINP": mINP + 20},
        }
    return m


def test_read_run_returns_params_metrics_and_log(tmp_path):
    folder = _write(tmp_path / "sen", "sen_market1501_cpu", _metrics(60.0, 40.0, 10.0))
    run = read_run(folder)
    assert run["folder"] == folder
    assert run["params"]["recipe"]["name"] == "sen_market1501_cpu"
    assert run["metrics"]["mAP"] == 40.0
    assert [r["epoch"] for r in run["log"]] == [1, 2]


def test_incomplete_or_broken_folders_are_named_in_the_error(tmp_path):
    running = _write(tmp_path / "bot", "bot_market1501_cpu", None, epochs_logged=3)
    with pytest.raises(
        RunReadError, match=r"bot: incomplete run folder, metrics.json is missing \(3 of 20 epochs"
    ):
        read_run(running)
    assert runs.run_status(running) == "stopped: epoch 3/20"  # no process holds its lock
    broken = _write(tmp_path / "sen", "sen_market1501_cpu", None)
    (broken / "metrics.json").write_text("{not json")
    with pytest.raises(RunReadError, match=r"sen/metrics.json: not valid JSON"):
        read_run(broken)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunReadError, match=r"empty: incomplete run folder, params.json is missing"):
        read_run(tmp_path / "empty")
    (broken / "metrics.json").write_text(json.dumps({"rank1": "high"}))
    with pytest.raises(RunReadError, match=r"metrics.json: expected numbers under \['rank1', 'mAP'\]"):
        read_run(broken)
    with pytest.raises(RunReadError, match="no such run folder"):
        read_run(tmp_path / "nowhere")


def test_runs_table_one_row_per_run_with_budget_and_provenance(tmp_path):
    _write(tmp_path / "bot", "bot_market1501_cpu", _metrics(60.0, 36.0, 8.0), sha="a" * 40, dirty=True)
    _write(tmp_path / "sen", "sen_market1501_cpu", _metrics(64.0, 40.5, 10.0, variants=False))
    df = runs_table(tmp_path)
    assert list(df["run"]) == ["bot", "sen"]
    bot = df.iloc[0]
    assert (bot["network"], bot["recipe"], bot["dataset"], bot["backbone"], bot["input"]) == (
        "bot",
        "bot_market1501_cpu",
        "market1501",
        "resnet18",
        "128x64",
    )
    assert (bot["epochs"], bot["rank1"], bot["mAP"], bot["mINP"]) == (20, 60.0, 36.0, 8.0)
    assert (bot["flip_rank1"], bot["flip_mAP"], bot["rerank_mINP"]) == (61.0, 36.5, 28.0)
    assert (bot["git_sha"], bot["git_dirty"], bot["device"], bot["train_time_s"]) == (
        "a" * 40,
        True,
        "cpu: test cpu",
        1234.5,
    )
    assert bot["budget"] == "ResNet-18, from scratch, 128x64, 20 epochs, CPU"
    assert math.isnan(df.iloc[1]["flip_rank1"])  # SEN evaluated no variant


def test_unfinished_runs_are_skipped_included_or_refused(tmp_path):
    _write(tmp_path / "a" / "bot", "bot_market1501_cpu", _metrics(60.0, 36.0, 8.0))
    _write(tmp_path / "a" / "sen", "sen_market1501_cpu", None, epochs_logged=5)
    assert list(runs_table(tmp_path)["run"]) == ["bot"]
    df = runs_table(tmp_path, unfinished="include")
    assert list(df["status"]) == ["finished", "stopped: epoch 5/20"]
    assert df.iloc[1]["epochs"] == 5 and df.iloc[1]["train_time_s"] == 50.0 and math.isnan(df.iloc[1]["mAP"])
    with pytest.raises(RunReadError, match="sen: incomplete"):
        runs_table(tmp_path, unfinished="raise")
    with pytest.raises(ValueError, match="unfinished"):
        runs_table(tmp_path, unfinished="maybe")


def test_a_missing_folder_gives_an_empty_table_with_the_columns(tmp_path):
    df = runs_table([tmp_path / "nowhere", tmp_path / "nor_here"])
    assert df.empty and {"network", "rank1", "mAP", "mINP", "git_sha", "budget"} <= set(df.columns)


def test_gains_over_bot_are_taken_within_one_dataset_and_budget():
    df = pd.DataFrame(
        {
            "network": ["bot", "sen", "deep_miner", "sen"],
            "dataset": ["market1501"] * 4,
            "budget": ["cpu", "cpu", "cpu", "gpu"],
            "rank1": [60.0, 64.5, 66.0, 95.0],
            "mAP": [36.0, 40.0, 43.5, 88.0],
            "mINP": [8.0, 10.0, 12.0, 60.0],
        }
    )
    out = runs.gains_over_reference(df)
    assert out["gain_rank1"].tolist()[:3] == [0.0, 4.5, 6.0]
    assert out["gain_mAP"].tolist()[:3] == [0.0, 4.0, 7.5]
    assert out["gain_mINP"].tolist()[:3] == [0.0, 2.0, 4.0]
    assert math.isnan(out["gain_rank1"].iloc[3])  # no BoT at the GPU budget


def test_repeated_reference_seeds_are_averaged_and_their_spread_reported():
    df = pd.DataFrame(
        {
            "network": ["bot", "bot", "sen", "sen"],
            "seed": [0, 1, 0, 1],
            "dataset": ["market1501"] * 4,
            "budget": ["cpu"] * 4,
            "rank1": [60.0, 62.0, 64.0, 65.0],
            "mAP": [36.0, 37.0, 40.0, 40.5],
            "mINP": [8.0, 9.0, 10.0, 10.0],
        }
    )
    out = runs.gains_over_reference(df)
    # BoT mean: rank-1 61, mAP 36.5, mINP 8.5
    assert out["gain_rank1"].tolist() == [-1.0, 1.0, 3.0, 4.0]
    assert out["gain_mAP"].tolist() == [-0.5, 0.5, 3.5, 4.0]
    spread = runs.seed_spread(df).set_index("network")
    assert spread.loc["bot", "rank1_spread"] == 2.0 and spread.loc["sen", "mAP_spread"] == 0.5
    assert spread.loc["bot", "seeds"] == [0, 1] and spread.loc["sen", "rank1_mean"] == 64.5
    assert runs.seed_spread(df[df["seed"] == 0]).empty  # one seed: no spread to report


def test_variants_and_published_rows(tmp_path):
    _write(tmp_path / "sen", "sen_market1501_cpu", _metrics(64.0, 40.0, 10.0), sha="fedcba9876", dirty=True)
    df = runs_table(tmp_path)
    v = runs.variants_table(df)
    assert list(v["variant"]) == ["plain", "flip", "rerank"]
    assert v["mAP"].tolist() == [40.0, 40.5, 50.0]
    pub = runs.as_published_rows(df)
    row = pub.iloc[0]
    assert (
        row["paper"],
        row["method"],
        row["backbone"],
        row["dataset"],
        row["rank1"],
        row["mAP"],
        row["score"],
    ) == ("ours", "SEN (ours)", "ResNet-18", "market1501", 64.0, 40.0, 52.0)
    assert "git fedcba9 (dirty)" in row["notes"] and "2026-11-20" in row["notes"] and "CPU" in row["notes"]


def test_for_display_shortens_shas_and_states_a_shared_budget_once():
    sha = "0123456789abcdef0123456789abcdef01234567"
    table = pd.DataFrame(
        {
            "run": ["bot", "sen"],
            "dataset": ["market1501", "market1501"],
            "budget": ["ResNet-18, CPU", "ResNet-50, GPU"],
            "git_sha": [sha, None],
        }
    )
    shown = runs.for_display(table)
    assert list(shown.columns) == ["run", "budget", "git_sha"]  # one dataset: said once, not per row
    assert shown["git_sha"].iloc[0] == "0123456" and pd.isna(shown["git_sha"].iloc[1])
    assert table["git_sha"].iloc[0] == sha  # the table saved to CSV keeps the whole SHA


def test_sort_networks_puts_bot_first():
    df = pd.DataFrame({"network": ["deep_miner", "zzz", "sen", "bot", "bdb"]})
    assert list(runs.sort_networks(df)["network"]) == ["bot", "bdb", "sen", "deep_miner", "zzz"]


@pytest.mark.slow
def test_a_folder_written_by_the_engine_reads_back(tiny_synthetic, tmp_path):
    recipe = tiny_recipe(tiny_synthetic, "eval.final_variants=[flip]")
    train(recipe, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    row = runs_table(tmp_path).iloc[0]
    assert (row["network"], row["dataset"], row["input"], row["epochs"], row["status"]) == (
        "bot",
        "synthetic",
        "64x32",
        2,
        "finished",
    )
    assert (row["rank1"], row["mAP"], row["mINP"]) == (saved["rank1"], saved["mAP"], saved["mINP"])
    assert row["flip_mAP"] == saved["variants"]["flip"]["mAP"]
    assert row["budget"] == "ResNet-18, from scratch, 64x32, 2 epochs x 3 iters, CPU"


def test_two_budgets_keep_apart_in_order_variants_and_published_rows(tmp_path):
    _write(tmp_path / "a" / "sen", "sen_market1501_cpu", _metrics(64.0, 40.0, 10.0))
    _write(tmp_path / "b" / "bot", "bot_market1501_mnv2_cpu", _metrics(80.0, 60.0, 20.0))
    _write(tmp_path / "b" / "sen", "sen_market1501_mnv2_cpu", _metrics(81.0, 61.0, 21.0))
    _write(tmp_path / "a" / "bot", "bot_market1501_cpu", _metrics(60.0, 36.0, 8.0))
    df = runs_table([tmp_path / "b", tmp_path / "a"])
    ordered = runs.sort_networks(df)
    # budget by budget in the order they come, BoT first within each
    assert list(zip(ordered["network"], ordered["rank1"], strict=True)) == [
        ("bot", 80.0),
        ("sen", 81.0),
        ("bot", 60.0),
        ("sen", 64.0),
    ]
    assert runs.budget_names(df) == {
        "MobileNetV2, ImageNet-pretrained, 128x64, 12 epochs, CPU": "MobileNetV2 from ImageNet",
        "ResNet-18, from scratch, 128x64, 20 epochs, CPU": "ResNet-18 from scratch",
    }
    v = runs.variants_table(ordered)
    assert v[v["variant"] == "flip"]["budget"].map(runs.budget_names(df)).tolist() == [
        "MobileNetV2 from ImageNet",
        "MobileNetV2 from ImageNet",
        "ResNet-18 from scratch",
        "ResNet-18 from scratch",
    ]
    methods = runs.as_published_rows(ordered)["method"].tolist()
    assert methods == [
        "BoT (ours, from ImageNet)",
        "SEN (ours, from ImageNet)",
        "BoT (ours, from scratch)",
        "SEN (ours, from scratch)",
    ]
    # two budgets that start alike: the backbone, then the whole budget, tells them apart
    gpu = df.assign(
        budget=df["budget"].str.replace("ResNet-18, from scratch", "ResNet-18, ImageNet-pretrained")
    )
    gpu["pretrained"] = True
    assert set(runs.budget_names(gpu, brief=True).values()) == {
        "MobileNetV2 from ImageNet",
        "ResNet-18 from ImageNet",
    }
    same = df.assign(backbone="mobilenet_v2", pretrained=True)
    assert runs.budget_names(same, brief=True) == {b: b for b in df["budget"].unique()}
    assert runs.as_published_rows(ordered[ordered["rank1"] < 70])["method"].tolist() == [
        "BoT (ours)",
        "SEN (ours)",
    ]
