"""The training engine: run folder, exact resume after a kill, NaN handling, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reidlib.config import ConfigError
from reidlib.data.datasets import DatasetError
from reidlib.training import engine
from reidlib.training.checkpoint import CheckpointError, load_checkpoint
from reidlib.training.engine import TrainingDiverged, load_network, train
from reidlib.training.runfolder import EpochLog, RunFolderError, snapshot_path

from support import poison_from, tiny_recipe


@pytest.mark.slow
def test_tiny_run_writes_a_self_describing_folder(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    metrics = train(tiny_recipe(tiny_synthetic), out)
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "log.jsonl", "metrics.json", "params.json"]
    params = json.loads((out / "params.json").read_text())
    env = params["environment"]
    for key in ("git_sha", "git_dirty", "torch", "torchvision", "cuda", "device", "python"):
        assert key in env
    assert params["recipe"]["name"] == "smoke" and params["seed"] == 0
    assert params["dataset"]["train"] == {
        "images": params["dataset"]["train"]["images"],
        "ids": 8,
        "cameras": 6,
    }
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]["losses"]) == {"global/ce", "global/triplet", "global/center", "total"}
    assert rows[0]["lr"] == pytest.approx(1e-3) and rows[1]["lr"] == pytest.approx(1e-4)  # smoke: lr 1e-3
    assert rows[0]["images_per_s"] > 0 and rows[1]["metrics"]["mAP"] >= 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
        assert 0 <= saved[key] <= 100
    assert saved["protocol"]["mode"] == "standard" and saved["protocol"]["num_query"] > 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["num_classes"] == 8


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "reidlib", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


@pytest.mark.slow
def test_resume_after_kill_ends_where_the_uninterrupted_run_ends(tiny_synthetic, tmp_path):
    sets = [
        "--set",
        f"data.root={tiny_synthetic}",
        "--set",
        "data.height=64",
        "--set",
        "data.width=32",
        "--set",
        "data.num_identities=4",
        "--set",
        "data.num_instances=2",
        "--set",
        "optim.epochs=3",
        "--set",
        "optim.warmup_epochs=1",
        "--set",
        "optim.milestones=[2]",
        "--set",
        "eval.every=3",
        "--set",
        "train.max_iters_per_epoch=6",
        "--set",
        "train.progress=false",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = _run_cli(["train", "--config", "smoke", "--out", str(whole), *sets])
    assert proc.wait(timeout=600) == 0, proc.stdout.read()

    proc = _run_cli(["train", "--config", "smoke", "--out", str(killed), *sets])
    deadline = time.time() + 600
    while not (killed / "last.pt").exists():  # first written at the end of epoch 1
        assert proc.poll() is None and time.time() < deadline, (
            proc.stdout.read() if proc.poll() else "timeout"
        )
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    epoch_at_kill = load_checkpoint(killed / "last.pt")["epoch"]
    assert epoch_at_kill < 3

    proc = _run_cli(["train", "--config", "smoke", "--out", str(killed), "--resume", *sets])
    assert proc.wait(timeout=600) == 0, proc.stdout.read()
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP", "cmc"):
        assert a[key] == b[key], key
    wa, wb = load_checkpoint(whole / "last.pt")["model"], load_checkpoint(killed / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    log = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]  # no epoch logged twice
    assert json.loads((killed / "params.json").read_text())["resumes"][0]["from_epoch"] == epoch_at_kill + 1


@pytest.mark.slow
def test_nan_stops_with_the_epoch_and_keeps_the_last_good_checkpoint(tiny_synthetic, tmp_path, monkeypatch):
    out = tmp_path / "run"
    poison_from(monkeypatch, 4)  # epoch 1 is good, epoch 2 diverges
    with pytest.raises(TrainingDiverged, match=r"epoch 2.*last.pt holds epoch 1: continue with --resume"):
        train(tiny_recipe(tiny_synthetic, "optim.epochs=3"), out)
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert not (out / "metrics.json").exists() and not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_checkpoint_can_be_dropped_once_the_run_is_complete(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1", "train.keep_checkpoint=false"), out)
    assert (out / "metrics.json").is_file() and not (out / "last.pt").exists()


@pytest.mark.slow
def test_resuming_a_finished_run_reads_it_back_without_training(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    first = train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out)
    before = (out / "params.json").read_text(), (out / "last.pt").stat().st_mtime_ns
    assert train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out, resume=True) == first
    assert ((out / "params.json").read_text(), (out / "last.pt").stat().st_mtime_ns) == before


def test_a_model_branch_without_a_loss_term_is_refused(tiny_synthetic, tmp_path):
    recipe = tiny_recipe(tiny_synthetic, "model.name=sen", "loss.terms=[{branch: global, kind: ce}]")
    with pytest.raises(ValueError, match=r"no loss term for the model's branch\(es\) \['bs', 'ms'\]"):
        train(recipe, tmp_path / "run")


@pytest.mark.slow
def test_run_folder_misuse(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunFolderError, match="nothing to resume"):
        train(tiny_recipe(tiny_synthetic), out, resume=True)
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out)
    with pytest.raises(RunFolderError, match="finished run.*--resume to read it back.*--overwrite"):
        train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out)


@pytest.mark.slow
def test_checkpoint_of_another_model_or_class_count_is_refused(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out)
    (out / "metrics.json").unlink()  # as if stopped before its evaluation: last.pt is a resume point
    other = tiny_recipe(
        tiny_synthetic,
        "optim.epochs=1",
        "model.name=sen",
        "model.options={use_bs: false, use_ms: false}",
        "loss.terms=[{branch: global, kind: ce}]",
    )
    with pytest.raises(RunFolderError, match="model.name: 'baseline' -> 'sen'"):
        train(other, out, resume=True)  # params.json names the change
    (out / "params.json").unlink()  # without it, the checkpoint's own recipe is checked
    with pytest.raises(CheckpointError, match="model.name='baseline'.*model.name='sen'"):
        train(other, out, resume=True)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    ckpt["num_classes"] = 99
    torch.save(ckpt, out / "last.pt")
    with pytest.raises(CheckpointError, match="99 classes.*8"):
        train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out, resume=True)


def test_corrupt_and_foreign_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="bad.pt.*corrupt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a reidlib checkpoint"):
        load_network(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.slow
def test_truncated_checkpoint_is_refused(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out)
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="last.pt"):
        load_checkpoint(out / "last.pt")


def test_missing_dataset_root_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=str(missing)):
        train(tiny_recipe(missing, "data.dataset=folder"), tmp_path / "run")


@pytest.mark.slow
def test_load_network_restores_the_embedding(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out)
    model, recipe = load_network(out / "last.pt")
    assert not model.training and recipe.model.name == "baseline"
    x = torch.randn(2, 3, 64, 32)
    state = load_checkpoint(out / "last.pt")["model"]
    assert torch.equal(model.state_dict()["global_neck.bn.weight"], state["global_neck.bn.weight"])
    assert model.embed(x).shape == (2, 512)
    assert Path(out / "last.pt").stat().st_size > 0


@pytest.mark.slow
def test_snapshots_keep_the_network_of_that_epoch(tiny_synthetic, tmp_path):
    # epoch 1 of a 2-epoch run must be the network a 1-epoch run ends with (same seed, same schedule)
    train(
        tiny_recipe(tiny_synthetic, "train.snapshot_epochs=[1]", "train.keep_checkpoint=false"),
        tmp_path / "a",
    )
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "a").glob("*.pt")) == [
        "epoch001.pt"
    ]  # last.pt dropped, snapshot kept
    assert snapshot_path(tmp_path / "a", 1) == tmp_path / "a" / "epoch001.pt"
    snap, one = load_checkpoint(tmp_path / "a" / "epoch001.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert snap["epoch"] == 1 and "optimizer" not in snap  # weights only: not a resume point
    assert snap["model"].keys() == one["model"].keys()
    assert all(torch.equal(snap["model"][k], one["model"][k]) for k in one["model"])
    model, _ = load_network(tmp_path / "a" / "epoch001.pt")
    assert torch.equal(model.state_dict()["global_neck.bn.weight"], one["model"]["global_neck.bn.weight"])
    with pytest.raises(ConfigError, match=r"train.snapshot_epochs: \[3\] outside the run's epochs 1..2"):
        tiny_recipe(tiny_synthetic, "train.snapshot_epochs=[3]")


BDB_TINY = (
    "model.name=bdb",
    "loss.terms=[{branch: global, kind: ce}, {branch: global, kind: triplet}, "
    "{branch: drop, kind: ce}, {branch: drop, kind: triplet}]",
)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt")["model"]


@pytest.mark.slow
def test_branch_grads_are_logged_per_epoch_and_change_no_weight(tiny_synthetic, tmp_path):
    train(tiny_recipe(tiny_synthetic, *BDB_TINY, "train.log_branch_grads=true"), tmp_path / "on")
    train(tiny_recipe(tiny_synthetic, *BDB_TINY), tmp_path / "off")
    on, off = _weights(tmp_path / "on"), _weights(tmp_path / "off")
    assert all(torch.equal(on[k], off[k]) for k in off)  # RNG forked, BN statistics put back
    rows = [json.loads(line) for line in (tmp_path / "on" / "log.jsonl").read_text().splitlines()]
    for row in rows:
        grads = row["branch_grads"]
        assert list(grads) == ["global", "drop"]
        assert grads["global"]["cosine"] == pytest.approx(1.0)
        assert grads["global"]["norm"] > 0 and grads["drop"]["norm"] > 0
        assert -1 <= grads["drop"]["cosine"] <= 1 and row["branch_grads_s"] > 0
    off_row = json.loads((tmp_path / "off" / "log.jsonl").read_text().splitlines()[0])
    assert "branch_grads" not in off_row


@pytest.mark.slow
def test_a_ramped_run_resumes_exactly(tiny_synthetic, tmp_path, monkeypatch):
    ramp = (*BDB_TINY, "loss.ramp_epochs=2")
    train(tiny_recipe(tiny_synthetic, *ramp), tmp_path / "whole")
    original = engine.save_checkpoint

    def save_then_stop(*args, **kwargs):  # killed right after epoch 1's checkpoint
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_recipe(tiny_synthetic, *ramp), tmp_path / "split")
    monkeypatch.setattr(engine, "save_checkpoint", original)
    train(tiny_recipe(tiny_synthetic, *ramp), tmp_path / "split", resume=True)
    whole, split = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert all(torch.equal(whole[k], split[k]) for k in whole)
    # and the ramp did act: epoch 1 trained the drop branch at half weight
    train(tiny_recipe(tiny_synthetic, *BDB_TINY), tmp_path / "plain")
    plain = _weights(tmp_path / "plain")
    assert not all(torch.equal(whole[k], plain[k]) for k in plain)


def _epoch_row(epoch: int, seconds: float) -> EpochLog:
    return EpochLog(
        epoch=epoch, lr=3.5e-5, losses={"total": 14.9775}, iters=220, images_per_s=13.2, epoch_time_s=seconds
    )


def test_epoch_line_says_how_long_the_rest_of_the_training_takes(capsys):
    engine._print_epoch(_epoch_row(1, 1070.0), 20)  # 19 epochs x 1070 s = 338.8 min
    assert capsys.readouterr().out.strip() == (
        "epoch 1/20: loss 14.9775, lr 3.50e-05, 13 img/s, 1070 s; about 5.6 h of training left at this speed"
    )
    engine._print_epoch(_epoch_row(18, 335.0), 20)  # 2 x 335 s = 11.2 min
    assert capsys.readouterr().out.strip().endswith("; about 11 min of training left at this speed")
    engine._print_epoch(_epoch_row(20, 335.0), 20)  # the last epoch: nothing left
    assert "left" not in capsys.readouterr().out
