"""Issue 27, "nothing lost on any road": one test per case off the CLI's main road. One writer per run
folder, outputs that never clobber a run's records, a run that can always finish, bounded and literal
config, schedules that fit the run, data checks that mean it, notebook parameters checked first."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys

import pytest

from reidlib.cli import main
from reidlib.experiments import runs
from reidlib.training import engine
from reidlib.training.engine import train
from reidlib.training.runfolder import read_log

from conftest import tiny_overrides, tiny_recipe


def _sets(root, *overrides: str) -> list[str]:
    return [arg for o in tiny_overrides(root, *overrides) for arg in ("--set", o)]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _interrupt_at(call: int):
    original, calls = engine._optimizer_step, []

    def step(state, total):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return original(state, total)

    return step


# ------------------------------------------------------------ 1. one writer per run folder

_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
time.sleep(300)
"""


@contextlib.contextmanager
def _live_writer(folder):
    """Another process holding the run folder's lock, as a training in progress does."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder / ".lock")], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_writer_is_refused_naming_the_pid(tiny_synthetic, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["train", "--config", "smoke", "--out", str(out), *_sets(tiny_synthetic)]
    monkeypatch.setattr(engine, "_optimizer_step", _interrupt_at(4))  # stopped in epoch 2: last.pt at 1
    assert main(args) == 130
    monkeypatch.undo()
    capsys.readouterr()
    temp = out / ".last.pt.w0rk1ng.tmp"  # the live writer's checkpoint being written
    with _live_writer(out) as writer:
        temp.write_bytes(b"half a checkpoint")
        for extra in (["--resume"], ["--overwrite"], []):
            assert main([*args, *extra]) == 2
            line = _error_line(capsys)
            assert str(out) in line and f"process {writer.pid}" in line, line
        assert temp.exists() and not (out / "metrics.json").exists()
        writer.send_signal(signal.SIGKILL)  # killed: its lock file stays, with a dead PID in it
        writer.wait()
    assert (out / ".lock").read_text().strip() == str(writer.pid)
    assert main([*args, "--resume"]) == 0  # the stale lock is taken over
    assert (out / "metrics.json").is_file() and not (out / ".lock").exists()


# ------------------------------------------------------------ 2. outputs never clobber records


@pytest.fixture(scope="module")
def finished_run(tiny_synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("roads") / "run"
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1", "train.snapshot_epochs=[1]"), out)
    return out


def test_outputs_never_replace_a_runs_records(finished_run, tmp_path, capsys):
    run = finished_run
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    ckpt = ["--checkpoint", str(run / "last.pt"), "--device", "cpu", "--workers", "0"]
    for command in (
        ["export", "--checkpoint", str(run / "last.pt"), "--onnx", str(run / "last.pt")],
        ["evaluate", *ckpt, "--out", str(run / "metrics.json")],
        ["extract", *ckpt, "--out", str(run / "params.json")],
        ["extract", *ckpt, "--out", str(run / "epoch001.pt")],
        ["evaluate", *ckpt, "--out", str(run / "log.jsonl")],
    ):
        for overwrite in ([], ["--overwrite"]):
            assert main([*command, *overwrite]) == 2, command
            line = _error_line(capsys)
            assert "would replace the run's own" in line and str(run) in line, line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    mine = tmp_path / "eval.json"
    mine.write_text("mine")
    assert main(["evaluate", *ckpt, "--out", str(mine)]) == 2
    assert "eval.json: exists; pass --overwrite" in _error_line(capsys)
    assert mine.read_text() == "mine"
    assert main(["evaluate", *ckpt, "--out", str(mine), "--overwrite"]) == 0
    assert "rank1" in json.loads(mine.read_text())


def test_evaluating_into_a_run_folder_waits_for_no_writer(finished_run, capsys):
    ckpt = ["--checkpoint", str(finished_run / "last.pt"), "--device", "cpu", "--workers", "0"]
    with _live_writer(finished_run) as writer:
        assert main(["evaluate", *ckpt, "--rerank", "--out", str(finished_run / "rerank.json")]) == 2
        assert f"in use by process {writer.pid}" in _error_line(capsys)
    assert main(["evaluate", *ckpt, "--rerank", "--out", str(finished_run / "rerank.json")]) == 0
    assert (finished_run / "rerank.json").is_file() and not (finished_run / ".lock").exists()


# ------------------------------------------------------------ 3. a run that can always finish


def test_a_run_whose_metrics_write_failed_finishes_on_resume(finished_run, tiny_synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "metrics.json").unlink()  # the disk filled up, or the process was killed, just then
    assert runs.run_status(out) == "stopped: epoch 1/1"  # no process writes it: not "running"
    with _live_writer(out) as writer:
        assert runs.run_status(out) == f"running: epoch 1/1 (process {writer.pid})"
    args = [
        "train",
        "--config",
        "smoke",
        "--out",
        str(out),
        "--resume",
        *_sets(tiny_synthetic, "optim.epochs=1"),
    ]
    assert main(args) == 0
    assert "run folder" in capsys.readouterr().out
    done = json.loads((out / "metrics.json").read_text())
    kept = json.loads((finished_run / "metrics.json").read_text())
    assert {k: done[k] for k in ("rank1", "mAP", "cmc", "epoch")} == {
        k: kept[k] for k in ("rank1", "mAP", "cmc", "epoch")
    }
    assert runs.run_status(out) == "finished"
    assert [r["epoch"] for r in read_log(out / "log.jsonl")] == [1]
