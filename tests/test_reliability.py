"""Faults, one test per class: a run folder is never overwritten or mixed, every command fails in one
line (exit 2, 130 after Ctrl-C) naming what to do, and writes are durable."""

from __future__ import annotations

import errno
import json
import os
import shutil
import types

import pytest
import torch
import yaml

from reidlib.cli import main
from reidlib.config import ConfigError, load_recipe
from reidlib.data.datasets import DatasetError, ImageRecord
from reidlib.data.images import check_image_files
from reidlib.training import engine
from reidlib.training.checkpoint import load_checkpoint
from reidlib.training.engine import train
from reidlib.training.runfolder import RunFolderError
from reidlib.utils.errors import one_line
from reidlib.utils.fileio import atomic_write_text

from support import cli_sets, error_line, interrupt_at, poison_from, tiny_recipe


def _numbers(folder) -> dict:
    m = json.loads((folder / "metrics.json").read_text())
    return {k: m[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP", "cmc")}


@pytest.fixture(scope="module")
def whole_run(tiny_synthetic, tmp_path_factory):
    """The uninterrupted tiny 2-epoch run: what a stopped and resumed run must end with."""
    out = tmp_path_factory.mktemp("whole") / "run"
    train(tiny_recipe(tiny_synthetic), out)
    return out


# ----------------------------------------------------------------------------- never overwritten, never mixed


@pytest.mark.slow
def test_a_finished_run_is_kept_unless_overwrite_is_asked(tiny_synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    recipe = tiny_recipe(tiny_synthetic, "optim.epochs=1", "train.keep_checkpoint=false")  # no last.pt
    train(recipe, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RunFolderError, match="holds a finished run.*--overwrite"):
        train(recipe, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    args = ["train", "--config", "smoke", "--out", str(out), *cli_sets(tiny_synthetic, "optim.epochs=1")]
    assert main(args) == 2
    assert "holds a finished run" in error_line(capsys)
    (out / "report").mkdir()  # what else lives in the folder stays
    train(recipe, out, overwrite=True)
    params = json.loads((out / "params.json").read_text())
    assert params["environment"]["started"] >= json.loads(before["params.json"])["environment"]["started"]
    assert (out / "report").is_dir() and (out / "metrics.json").is_file()
    with pytest.raises(RunFolderError, match="exclude each other"):
        train(recipe, out, resume=True, overwrite=True)


def test_a_started_run_is_refused_too(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "params.json").write_text(json.dumps({"recipe": tiny_recipe(tiny_synthetic).to_dict()}))
    with pytest.raises(RunFolderError, match="a run already lives here.*--resume.*--overwrite"):
        train(tiny_recipe(tiny_synthetic), out)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="is a file, expected a folder"):
        train(tiny_recipe(tiny_synthetic), tmp_path / "file" / "run")


@pytest.mark.slow
def test_a_resume_of_a_run_stopped_in_its_first_epoch_starts_it_again(tiny_synthetic, tmp_path, monkeypatch):
    out = tmp_path / "run"
    recipe = tiny_recipe(tiny_synthetic, "optim.epochs=1")
    with monkeypatch.context() as m:
        m.setattr(engine, "_optimizer_step", interrupt_at(1))
        with pytest.raises(KeyboardInterrupt):
            train(recipe, out)
    assert (out / "params.json").is_file() and not (out / "last.pt").exists()
    with pytest.raises(RunFolderError, match="a run already lives here"):
        train(recipe, out)
    again, straight = train(recipe, out, resume=True), train(recipe, tmp_path / "straight")
    assert again["variants"] == straight["variants"]  # the same run as one never stopped
    (out / "metrics.json").unlink()
    (out / "last.pt").unlink()  # epochs logged but no checkpoint: refused, the log is not thrown away
    with pytest.raises(RunFolderError, match="nothing to resume, last.pt is missing"):
        train(recipe, out, resume=True)


@pytest.mark.slow
def test_a_resume_with_a_changed_recipe_is_refused_naming_each_key(tiny_synthetic, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(engine, "_optimizer_step", interrupt_at(4))
    with pytest.raises(KeyboardInterrupt):
        train(tiny_recipe(tiny_synthetic), out)
    monkeypatch.undo()
    with pytest.raises(RunFolderError, match=r"optim.epochs: 2 -> 3; optim.lr: 0.001 -> 0.002"):
        train(tiny_recipe(tiny_synthetic, "optim.lr=2e-3", "optim.epochs=3"), out, resume=True)
    with pytest.raises(RunFolderError, match="data.root"):
        train(tiny_recipe(tmp_path / "elsewhere"), out, resume=True)
    # execution keys may change; the resume record says which
    changed = tiny_recipe(tiny_synthetic, "train.checkpoint_every=2", "data.test_batch_size=16")
    train(changed, out, resume=True)
    (resume,) = json.loads((out / "params.json").read_text())["resumes"]
    assert resume["from_epoch"] == 2
    assert resume["changed"] == {
        "data.test_batch_size": {"old": 64, "new": 16},
        "train.checkpoint_every": {"old": 1, "new": 2},
    }
    # a finished run asked to resume with a changed recipe is refused too, not read back as if it matched
    with pytest.raises(RunFolderError, match="optim.lr"):
        train(tiny_recipe(tiny_synthetic, "optim.lr=2e-3"), out, resume=True)


# ----------------------------------------------------------------------------- one error path


@pytest.mark.slow
def test_ctrl_c_mid_epoch_exits_130_in_one_line_and_resumes_to_the_same_numbers(
    tiny_synthetic, whole_run, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    args = ["train", "--config", "smoke", "--out", str(out), *cli_sets(tiny_synthetic)]
    monkeypatch.setattr(engine, "_optimizer_step", interrupt_at(5))  # epoch 2, 2nd iteration
    assert main(args) == 130
    line = error_line(capsys)
    assert "interrupted in epoch 2" in line and "last.pt holds epoch 1: continue with --resume" in line
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    assert _numbers(out) == _numbers(whole_run)
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]


@pytest.mark.slow
def test_ctrl_c_before_any_checkpoint_says_to_start_again(tiny_synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(engine, "_optimizer_step", interrupt_at(1))
    out = tmp_path / "run"
    assert main(["train", "--config", "smoke", "--out", str(out), *cli_sets(tiny_synthetic)]) == 130
    assert "no checkpoint was written yet: start again with --overwrite" in error_line(capsys)


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one(
    tiny_synthetic, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    real_save, calls, before = torch.save, [], []

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:  # epoch 2's last.pt: the disk fills up half-way
            before.append((out / "last.pt").read_bytes())
            with open(f, "wb") as half:
                half.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    assert main(["train", "--config", "smoke", "--out", str(out), *cli_sets(tiny_synthetic)]) == 2
    line = error_line(capsys)
    assert "epoch 2" in line and "No space left on device" in line and "holds epoch 1" in line
    assert (out / "last.pt").read_bytes() == before[0] and load_checkpoint(out / "last.pt")["epoch"] == 1
    assert not list(out.glob(".*.tmp")) and not (out / "metrics.json").exists()


@pytest.mark.slow
def test_a_diverging_loss_is_one_line_naming_the_epoch(tiny_synthetic, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    poison_from(monkeypatch, 4)
    args = ["train", "--config", "smoke", "--out", str(out), *cli_sets(tiny_synthetic, "optim.epochs=3")]
    assert main(args) == 2
    line = error_line(capsys)
    assert "epoch 2: the training loss became non-finite" in line and "holds epoch 1" in line
    assert load_checkpoint(out / "last.pt")["epoch"] == 1


@pytest.mark.slow
def test_a_file_that_is_not_a_checkpoint_is_one_line(whole_run, tmp_path, capsys):
    for given in (whole_run / "params.json", whole_run, tmp_path / "missing.pt"):
        assert main(["evaluate", "--checkpoint", str(given), "--device", "cpu", "--workers", "0"]) == 2
        assert str(given) in error_line(capsys)
    assert main(["export", "--checkpoint", str(whole_run / "last.pt"), "--onnx", str(tmp_path)]) == 2
    assert "is a folder, expected a file" in error_line(capsys)


@pytest.mark.slow
def test_a_resume_from_a_broken_last_pt_is_one_line(tiny_synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out)
    (out / "metrics.json").unlink()
    (out / "last.pt").write_text("{}")
    args = ["train", "--config", "smoke", "--out", str(out), "--resume"]
    assert main([*args, *cli_sets(tiny_synthetic, "optim.epochs=1")]) == 2
    assert "last.pt: cannot read checkpoint" in error_line(capsys)


class _Payload:
    """A pickle that would create a file when unpickled: what a hostile weights file does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_as_pretrained_weights_is_refused_in_one_line(tiny_synthetic, tmp_path, capsys):
    evil, marker = tmp_path / "weights.pt", tmp_path / "ran"
    torch.save({"conv1.weight": _Payload(marker)}, evil)  # a real torch zip archive, code inside
    args = ["train", "--config", "smoke", "--out", str(tmp_path / "run")]
    assert main([*args, *cli_sets(tiny_synthetic, f"model.pretrained={evil}")]) == 2
    line = error_line(capsys)
    assert str(evil) in line and "cannot read torchvision resnet18 weights" in line
    assert not marker.exists()


def test_bad_notebook_runner_input_is_one_line_exit_2(capsys):
    assert main(["notebooks", "run", "--only", "99"]) == 2
    assert "no notebook matches ['99']" in capsys.readouterr().err


def test_debug_adds_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REIDLIB_DEBUG", "1")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_a_dataloader_worker_error_is_one_line():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise FileNotFoundError(f"data/img{i}.jpg: no such image")

    loader = torch.utils.data.DataLoader(Broken(), num_workers=1)
    with pytest.raises(FileNotFoundError) as info:
        next(iter(loader))
    assert "\n" in str(info.value)  # the worker's traceback rides in the message
    line = one_line(info.value)
    assert line.startswith("FileNotFoundError: data/img0.jpg: no such image") and "worker" in line


def _with_a_truncated_query_image(tiny_synthetic, tmp_path):
    """A copy of the tiny dataset whose first query JPEG lost its second half (a cut-off copy)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_synthetic, root)
    victim = sorted((root / "query").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    return root, victim


@pytest.mark.slow
def test_a_truncated_query_image_stops_the_run_before_training(tiny_synthetic, tmp_path, monkeypatch, capsys):
    root, victim = _with_a_truncated_query_image(tiny_synthetic, tmp_path)
    monkeypatch.setattr(engine, "_train_epoch", lambda *a: pytest.fail("an epoch started"))
    out = tmp_path / "run"
    assert main(["train", "--config", "smoke", "--out", str(out), *cli_sets(root, "data.workers=2")]) == 2
    line = error_line(capsys)
    assert str(victim) in line and "query split" in line
    assert not (out / "log.jsonl").exists()
    args = ["evaluate", "--checkpoint", "unused.pt", "--workers", "2", "--root", str(root)]
    monkeypatch.setattr(engine, "load_network", lambda *a, **k: (None, tiny_recipe(root)))
    monkeypatch.setattr(engine, "resolve_runtime", lambda *a: types.SimpleNamespace(place=lambda m: m))
    assert main(args) == 2
    assert str(victim) in error_line(capsys)


@pytest.mark.slow
def test_the_image_check_tells_whole_files_from_broken_ones(tiny_synthetic, tmp_path):
    root, victim = _with_a_truncated_query_image(tiny_synthetic, tmp_path)
    gallery = sorted((root / "bounding_box_test").glob("*.jpg"))
    check_image_files([ImageRecord(str(p), 0, 0) for p in gallery], "gallery")  # whole: no error
    padded = gallery[0].with_name("padded.jpg")  # bytes after the EOI marker: still a whole image
    padded.write_bytes(gallery[0].read_bytes() + b"\0" * 100)
    check_image_files([ImageRecord(str(padded), 0, 0)], "gallery")
    text = gallery[1].with_name("notes.jpg")
    text.write_text("not an image")
    records = [ImageRecord(str(p), 0, 0) for p in (gallery[2], victim, text)]
    with pytest.raises(DatasetError, match=rf"{victim.name} \(query split\).*and 1 more bad files"):
        check_image_files(records, "query")


# ----------------------------------------------------------------------------- durable writes


def test_atomic_writes_fsync_before_the_rename(tmp_path, monkeypatch):
    synced, real = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    atomic_write_text(tmp_path / "a.txt", "x")
    assert synced[0].endswith(".tmp") and ".a.txt." in synced[0] and synced[-1] == str(tmp_path)


@pytest.mark.slow
def test_stale_temporaries_are_removed_when_the_folder_is_opened(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out)
    stale = out / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out, resume=True)  # read back
    assert not stale.exists() and (out / "metrics.json").is_file()


@pytest.mark.slow
def test_yaml_with_a_duplicate_key_is_refused(tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    path.write_text("base: smoke\noptim:\n  lr: 1.0e-3\n  epochs: 2\n  lr: 2.0e-3\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: duplicate key 'lr' \(line 5\)"):
        load_recipe(path)
    assert main(["train", "--config", str(path)]) == 2
    assert "duplicate key 'lr'" in error_line(capsys)
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load_recipe("smoke", ["model.options={a: 1, a: 2}"])
    assert yaml.safe_load("a: 1\na: 2\n") == {"a": 2}  # what plain YAML would have done


def test_torch_reporting_a_failed_write_as_runtime_error_is_an_oserror(tmp_path, monkeypatch):
    from reidlib.training.checkpoint import CheckpointInfo, CheckpointWriteError, save_snapshot

    def full(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1605504 vs 1605400")

    monkeypatch.setattr(torch, "save", full)
    state = type("State", (), {"model": torch.nn.Linear(1, 1)})()
    with pytest.raises(CheckpointWriteError, match="epoch001.pt: writing the checkpoint failed.*disk full"):
        save_snapshot(tmp_path / "epoch001.pt", CheckpointInfo({}, 1, 1), state)
    assert isinstance(CheckpointWriteError("x"), OSError) and not list(tmp_path.iterdir())


def test_params_of_an_older_engine_round_trip_unchanged():
    from reidlib.training.runfolder import Params

    old = {"recipe": {"name": "bot"}, "seed": 0, "num_classes": 751, "world_size": 1, "dataset": {}, "x": [1]}
    params = Params.from_dict(old)  # no global_batch (older engines), an unknown key
    assert params.global_batch is None
    assert params.to_dict() == {**old, "runtime": {}, "environment": {}, "resumes": []}
