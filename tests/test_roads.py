"""Issue 27, "nothing lost on any road": one test per case off the CLI's main road. One writer per run
folder, outputs that never clobber a run's records, a run that can always finish, bounded and literal
config, schedules that fit the run, data checks that mean it, notebook parameters checked first."""

from __future__ import annotations

import ast
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image

from reidlib.cli import main
from reidlib.config import ConfigError, load_recipe
from reidlib.data.datasets import DatasetError, ImageRecord
from reidlib.data.images import check_image_files, read_image
from reidlib.evaluation.metrics import (
    chance_rank1,
    evaluate_features,
    evaluate_rank,
    learning_verdict,
    pairwise_distance,
)
from reidlib.experiments import runs
from reidlib.notebooks import runner as nb_runner
from reidlib.notebooks.reporting import MARK, OutputFolderError, mark_output_folder, output_folder
from reidlib.notebooks.runner import NotebookRunError, check_run_folder, plan
from reidlib.training import engine, schedule
from reidlib.training.checkpoint import load_checkpoint
from reidlib.training.engine import train
from reidlib.training.runfolder import read_log
from reidlib.utils.threads import set_torch_threads

from support import (
    cli_sets,
    error_line,
    interrupt_at,
    poison_from,
    scale_loss_from,
    tiny_overrides,
    tiny_recipe,
)

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


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_pid(tiny_synthetic, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["train", "--config", "smoke", "--out", str(out), *cli_sets(tiny_synthetic)]
    monkeypatch.setattr(engine, "_optimizer_step", interrupt_at(4))  # stopped in epoch 2: last.pt at 1
    assert main(args) == 130
    monkeypatch.undo()
    capsys.readouterr()
    temp = out / ".last.pt.w0rk1ng.tmp"  # the live writer's checkpoint being written
    with _live_writer(out) as writer:
        temp.write_bytes(b"half a checkpoint")
        for extra in (["--resume"], ["--overwrite"], []):
            assert main([*args, *extra]) == 2
            line = error_line(capsys)
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


@pytest.mark.slow
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
            line = error_line(capsys)
            assert "would replace the run's own" in line and str(run) in line, line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    mine = tmp_path / "eval.json"
    mine.write_text("mine")
    assert main(["evaluate", *ckpt, "--out", str(mine)]) == 2
    assert "eval.json: exists; pass --overwrite" in error_line(capsys)
    assert mine.read_text() == "mine"
    assert main(["evaluate", *ckpt, "--out", str(mine), "--overwrite"]) == 0
    assert "rank1" in json.loads(mine.read_text())


@pytest.mark.slow
def test_evaluating_into_a_run_folder_waits_for_no_writer(finished_run, capsys):
    ckpt = ["--checkpoint", str(finished_run / "last.pt"), "--device", "cpu", "--workers", "0"]
    with _live_writer(finished_run) as writer:
        assert main(["evaluate", *ckpt, "--rerank", "--out", str(finished_run / "rerank.json")]) == 2
        assert f"in use by process {writer.pid}" in error_line(capsys)
    assert main(["evaluate", *ckpt, "--rerank", "--out", str(finished_run / "rerank.json")]) == 0
    assert (finished_run / "rerank.json").is_file() and not (finished_run / ".lock").exists()


# ------------------------------------------------------------ 3. a run that can always finish


@pytest.mark.slow
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
        *cli_sets(tiny_synthetic, "optim.epochs=1"),
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


# ------------------------------------------------------------ 4. bounded, literal config

LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9))


def test_yaml_aliases_are_refused_and_a_shown_value_is_bounded(tmp_path, capsys):
    path = tmp_path / "laughs.yaml"
    path.write_text(f"base: smoke\ndescription: &l0 lol\nx:\n  {LAUGHS.replace(chr(10), chr(10) + '  ')}\n")
    with pytest.raises(ConfigError, match=r"laughs.yaml: line 4: YAML aliases \(\*l0\) are not accepted"):
        load_recipe(path)
    assert main(["train", "--config", str(path)]) == 2
    assert len(error_line(capsys)) < 400
    with pytest.raises(ConfigError, match="aliases"):
        load_recipe("smoke", ["data.root=[&a [1, 2], *a]"])
    with pytest.raises(ConfigError, match=r"unknown key 'model.options.<<'"):  # a key, no YAML 1.1 merge
        load_recipe("smoke", ["model.options={<<: {a: 1}}"])
    long = "[" + ", ".join(["x" * 10] * 400) + "]"  # 4.8 kB
    assert main(["train", "--config", "smoke", "--set", f"data.root={long}"]) == 2
    line = error_line(capsys)
    assert "data.root: expected" in line and len(line) < 600


def test_yaml_numbers_follow_yaml_1_2(tmp_path):
    r = load_recipe("smoke", ["train.seed=010", "eval.max_rank=0o10", "optim.lr=1e-3"])
    assert (r.train.seed, r.eval.max_rank, r.optim.lr) == (10, 8, 1e-3)  # YAML 1.1: 8, and 0o10 a string
    with pytest.raises(ConfigError, match=r"eval.max_rank: expected an integer, got '1:00'"):  # 1.1: 60
        load_recipe("smoke", ["eval.max_rank=1:00"])
    with pytest.raises(ConfigError, match=r"train.progress: expected true or false, got 'no'"):
        load_recipe("smoke", ["train.progress=no"])
    with pytest.raises(ConfigError, match=r"description: expected a string, got"):
        load_recipe("smoke", ["description=[1]"])
    assert load_recipe("smoke", ["description=2024-01-01"]).description == "2024-01-01"  # not a date
    path = tmp_path / "r.yaml"
    path.write_text("base: smoke\ntrain:\n  seed: 010\n")
    assert load_recipe(path).train.seed == 10


def test_a_section_override_merges_like_a_recipe_file():
    smoke = load_recipe("smoke")
    for overrides in (["optim={epochs: 3}"], {"optim": {"epochs": 3}}):
        r = load_recipe("smoke", overrides)
        assert r.optim.epochs == 3
        assert (r.optim.lr, r.optim.warmup_epochs, r.optim.milestones) == (
            smoke.optim.lr,
            smoke.optim.warmup_epochs,
            smoke.optim.milestones,
        )


def test_base_paths_are_read_from_the_recipe_files_folder(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "parent.yaml").write_text("base: smoke\noptim:\n  lr: 2.0e-3\n")
    (tmp_path / "mine" / "child.yaml").write_text("base: parent.yaml\noptim:\n  epochs: 3\n")
    monkeypatch.chdir(tmp_path)  # not the recipes' folder
    r = load_recipe("mine/child.yaml")
    assert (r.optim.lr, r.optim.epochs, r.data.dataset) == (2e-3, 3, "synthetic")
    with pytest.raises(ConfigError, match=r"missing.yaml: recipe file not found \(base of .*child2.yaml\)"):
        (tmp_path / "mine" / "child2.yaml").write_text("base: missing.yaml\n")
        load_recipe("mine/child2.yaml")


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/escaped", "a/../../escaped"])
def test_a_runs_name_cannot_leave_the_results_root(name, tiny_synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REIDLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(engine, "_train_opened", lambda *a, **k: pytest.fail("training started"))
    assert main(["train", "--config", "smoke", "--set", f"name={name}", *cli_sets(tiny_synthetic)]) == 2
    line = error_line(capsys)
    assert f"name: {name!r} would put the run folder outside" in line
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.glob("**/escaped*"))


# ------------------------------------------------------------ 5. schedules that fit the run


def test_epochs_below_the_warm_up_are_refused_naming_the_keys_to_set(capsys):
    with pytest.raises(ConfigError, match=r"optim.warmup_epochs: 10 warm-up epochs .* optim.epochs=2.*set"):
        load_recipe("bot_market1501_cpu", ["optim.epochs=2"])
    assert main(["train", "--config", "bot_market1501_cpu", "--set", "optim.epochs=2"]) == 2
    assert "optim.warmup_epochs" in error_line(capsys)
    short = load_recipe("bot_market1501_cpu", ["optim.epochs=2", "optim.warmup_epochs=1"])
    assert "optim.epochs=2" in short.description and "optim.warmup_epochs=1" in short.description
    assert "20 epochs" in short.description  # the recipe's words, then what was changed
    assert (
        load_recipe("bot_market1501_cpu").description
        == load_recipe("bot_market1501_cpu", ["train.progress=false"]).description
    )
    assert schedule.describe(short.optim) == (
        "2 epochs, lr 3.50e-04 after 1 warm-up epoch; x0.1 after epoch 10: never (past the last epoch)"
    )
    for shipped in ("smoke", "sen_smoke"):  # what the notebooks and tests shorten
        load_recipe(shipped, ["optim.epochs=1", "optim.milestones=[]"])
        load_recipe(shipped, tiny_overrides("x", "optim.epochs=1"))


@pytest.mark.slow
def test_a_loss_growing_by_orders_of_magnitude_stops_the_run(tiny_synthetic, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    scale_loss_from(monkeypatch, 4, 1e5)
    assert (
        main(["train", "--config", "smoke", "--out", str(out), *cli_sets(tiny_synthetic, "optim.epochs=3")])
        == 2
    )
    line = error_line(capsys)
    assert "epoch 2: the training loss grew" in line and "lr 1.00e-04" in line and "holds epoch 1" in line, (
        line
    )
    assert load_checkpoint(out / "last.pt")["epoch"] == 1 and not (out / "metrics.json").exists()
    monkeypatch.undo()
    poison_from(monkeypatch, 4)
    assert (
        main(["train", "--config", "smoke", "--out", str(out), "--overwrite", *cli_sets(tiny_synthetic)]) == 2
    )
    line = error_line(capsys)
    assert "epoch 2: the training loss became non-finite" in line and "lr 1.00e-04" in line, line


def test_chance_rank1_is_what_a_random_ranking_scores():
    q_pids, q_cams = [1, 2, 9], [0, 1, 0]
    g_pids, g_cams = [1, 1, 2, 2, 3], [0, 1, 0, 1, 1]
    chance = chance_rank1(q_pids, g_pids, q_cams, g_cams)  # 1 match among 4 candidates, twice; 9: none
    assert chance["rank1"] == pytest.approx(25.0) and chance["queries"] == 2
    rng = np.random.default_rng(0)
    q_pids, q_cams = rng.integers(0, 6, 40), rng.integers(0, 3, 40)
    g_pids, g_cams = rng.integers(0, 6, 90), rng.integers(0, 3, 90)
    chance = chance_rank1(q_pids, g_pids, q_cams, g_cams)
    draws = [
        evaluate_rank(rng.random((40, 90)), q_pids, g_pids, q_cams, g_cams)["cmc"][0] * 100
        for _ in range(300)
    ]
    assert np.mean(draws) == pytest.approx(chance["rank1"], abs=0.5)
    assert np.quantile(draws, 0.99) < chance["above"]  # a random ranking stays below the bar
    assert learning_verdict(chance["above"] + 1, chance).endswith("above chance: it learns")
    assert "not above chance" in learning_verdict(chance["rank1"], chance)


@pytest.mark.slow
def test_folder_check_trains_a_market_layout_folder_and_says_whether_it_learns(
    tiny_synthetic, tmp_path, capsys
):
    recipe = load_recipe("folder_check")
    assert (recipe.data.dataset, recipe.data.root, recipe.train.max_iters_per_epoch) == ("folder", None, 60)
    assert main(["train", "--config", "folder_check", "--out", str(tmp_path / "x")]) == 2
    assert "--data-root" in error_line(capsys)
    short = ["--set", "optim.epochs=2", "--set", "train.max_iters_per_epoch=2", "--set", "data.height=64"]
    args = [
        "train",
        "--config",
        "folder_check",
        "--data-root",
        str(tiny_synthetic),
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*args, *short, "--set", "data.width=32"]) == 0
    out = capsys.readouterr().out
    chance = json.loads((tmp_path / "run" / "metrics.json").read_text())["protocol"]["chance_rank1"]
    assert (
        f"vs {chance['rank1']:.2f} % for a random ranking of this split" in out
        and "chance" in out.splitlines()[-2]
    )


# ------------------------------------------------------------ 6. data checks that mean it


def test_a_16_bit_png_reads_as_its_image_and_a_constant_image_is_refused(tmp_path):
    ramp = (np.arange(64 * 32, dtype=np.uint32).reshape(64, 32) * 31).astype(np.uint16)  # 0 .. 63,457
    Image.fromarray(ramp).save(tmp_path / "0001_c1s1_000001_00.png")  # a 16-bit greyscale PNG
    image = np.asarray(read_image(tmp_path / "0001_c1s1_000001_00.png"))
    assert image.shape == (64, 32, 3) and image.min() == 0 and image.max() == round(ramp.max() / 257)
    np.testing.assert_allclose(image[..., 0], ramp / 257, atol=0.51)
    Image.new("RGB", (32, 64), (255, 255, 255)).save(tmp_path / "0002_c1s1_000001_00.png")
    Image.new("RGB", (32, 64), (0, 0, 0)).save(tmp_path / "0003_c1s1_000001_00.jpg", quality=95)
    for name in ("0002_c1s1_000001_00.png", "0003_c1s1_000001_00.jpg"):
        with pytest.raises(DatasetError, match=rf"{name} \(query split\): decodes to one colour"):
            check_image_files([ImageRecord(str(tmp_path / name), 2, 0)], "query")
    check_image_files([ImageRecord(str(tmp_path / "0001_c1s1_000001_00.png"), 1, 0)], "query")


def test_data_stats_runs_the_image_checks_training_runs(tiny_synthetic, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(tiny_synthetic, root)
    for i in range(20):  # zero-byte gallery files
        (root / "bounding_box_test" / f"{9000 + i:04d}_c1s1_000001_00.jpg").write_bytes(b"")
    assert main(["data", "stats", "--dataset", "folder", "--root", str(root)]) == 2
    line = error_line(capsys)
    assert "9000_c1s1_000001_00.jpg (gallery split)" in line and "and 19 more bad files" in line


@pytest.mark.slow
def test_synth_overwrite_removes_only_the_synthetic_sets_own_files(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "synth", "--out", str(out), "--ids", "2"]) == 0
    notes, extra = out / "notes.txt", out / "query" / "0001_c9s1_000001_00.jpg"
    notes.write_text("mine")
    extra.write_bytes((out / "query" / sorted(p.name for p in (out / "query").iterdir())[0]).read_bytes())
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(out), "--ids", "3", "--overwrite"]) == 2
    line = error_line(capsys)
    assert "files the synthetic set did not write" in line and "notes.txt" in line, line
    assert notes.read_text() == "mine" and extra.is_file()
    notes.unlink()
    extra.unlink()
    assert main(["data", "synth", "--out", str(out), "--ids", "3", "--overwrite"]) == 0
    assert json.loads((out / "synthetic.json").read_text())["args"]["num_train_ids"] == 3


def test_the_test_batch_size_is_bounded():
    with pytest.raises(
        ConfigError, match=r"data.test_batch_size: expected a value in \[1, 1024\], got 100000"
    ):
        load_recipe("smoke", ["data.test_batch_size=100000"])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_features_must_be_finite(metric):
    qf, gf = torch.randn(5, 8), torch.randn(7, 8)
    gf[3, 2] = float("inf")
    ids = ([1, 2, 3, 1, 2], [1, 2, 3, 1, 2, 3, 1], [0] * 5, [1] * 7)
    with pytest.raises(ValueError, match=r"gf: row 3 of 7 is not finite \(1 row with inf or NaN\)"):
        evaluate_features(qf, gf, *ids, metric=metric)
    with pytest.raises(ValueError, match=r"gf: row 3 of 7 is not finite"):
        pairwise_distance(qf, gf, metric)


def test_an_exported_omp_num_threads_is_honoured(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_torch_threads(0) == 1 and torch.get_num_threads() == 1
        assert set_torch_threads(2) == 2  # train.threads, when set, still wins
        monkeypatch.setenv("OMP_NUM_THREADS", "two")
        with pytest.raises(ValueError, match=r"OMP_NUM_THREADS: expected a positive integer, got 'two'"):
            set_torch_threads(0)
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------ 7-8. the notebook runner

_PARAMETERS = (
    'r1: float = 0.1  # a ratio\nnames: list[str] = ["a"]\ndata_root: str = ""\ncheckpoint: str = ""\n'
    'output_dir: str = ""\n'
)


def _notebook(folder, stem: str, code: str, params_yaml: str = "{}\n") -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(_PARAMETERS)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, folder / f"{stem}.ipynb")
    (folder / "params" / stem).mkdir(parents=True, exist_ok=True)
    (folder / "params" / stem / "demo.yaml").write_text(params_yaml)


@pytest.fixture
def fake_notebooks(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(nb_runner, "notebooks_dir", lambda: folder)
    monkeypatch.setenv("REIDLIB_RESULTS", str(tmp_path / "results"))
    return folder


def _no_kernel(monkeypatch):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel started"))


def test_notebook_parameters_are_type_checked_before_any_kernel(fake_notebooks, monkeypatch, capsys):
    _notebook(fake_notebooks, "01_first", "pass", "r1: 0.2\n")
    _no_kernel(monkeypatch)
    for given, words in [
        ("r1=abc", "01_first: parameter r1: expected float, got 'abc' (from --set r1)"),
        ("names=[a, 2]", "parameter names: expected list[str], got ['a', 2]"),
        ("r1=true", "parameter r1: expected float, got True"),
        ("r1=0o0", None),  # YAML 1.2: 0 (1.1: the string "0o0")
        ("output_dir=/tmp/x", "--set output_dir: the runner sets output_dir itself"),
        ("data_root=/no/such/folder", "parameter data_root: /no/such/folder is not a folder"),
        ("checkpoint=/no/such.pt", "parameter checkpoint: /no/such.pt does not exist"),
    ]:
        if words is None:
            assert plan("demo", overrides=[given])[0].parameters["r1"] == 0
            continue
        assert nb_runner.main("demo", [], [given], None) == 2, given
        captured = capsys.readouterr()
        assert words in captured.err, (given, captured.err)
        assert captured.out == "", captured.out  # no summary, of this run or of an older one
    (fake_notebooks / "params" / "01_first" / "demo.yaml").write_text("r1: 1\noutput_dir: here\n")
    with pytest.raises(NotebookRunError, match=r"\['output_dir'\] are set by the runner"):
        plan("demo")
    assert (
        nb_runner.fits(1, "float") and not nb_runner.fits(True, "int") and nb_runner.fits(None, "int | None")
    )


def test_a_refused_run_never_prints_an_older_runs_summary(fake_notebooks, tmp_path, monkeypatch, capsys):
    _notebook(fake_notebooks, "01_first", "pass")
    older = tmp_path / "results" / "demo-20240101-000000"
    older.mkdir(parents=True)
    record = {"notebooks": [{"notebook": "01_older", "seconds": 3.0, "status": "ok"}]}
    (older / "run.json").write_text(json.dumps(record))
    _no_kernel(monkeypatch)
    for out in (None, str(older)):
        assert nb_runner.main("demo", [], ["zzz=1"], out) == 2
        captured = capsys.readouterr()
        assert "01_older" not in captured.out + captured.err and "no selected notebook" in captured.err


@pytest.mark.slow
def test_the_runner_makes_its_folders_and_streams_what_cells_print(fake_notebooks, tmp_path, monkeypatch):
    code = (
        "import time\nfrom pathlib import Path\nPath(output_dir, 'ran.txt').write_text('x')\n"
        "print('epoch 1/2', flush=True)\ntime.sleep(3)\nprint('epoch 2/2', flush=True)"
    )
    _notebook(fake_notebooks, "01_first", code)
    seen, write = [], nb_runner._CellPrints.write

    def timed(self, text):
        seen.append((time.monotonic(), text))
        write(self, text)

    monkeypatch.setattr(nb_runner._CellPrints, "write", timed)
    run_dir = nb_runner.run("demo", out=tmp_path / "a" / "b" / "run")  # no folder of it exists yet
    assert (run_dir / "01_first" / "ran.txt").is_file()  # the notebook's own folder was made for it
    first = next(t for t, text in seen if "epoch 1/2" in text)
    second = next(t for t, text in seen if "epoch 2/2" in text)
    assert second - first > 2  # the first line came while the cell was still running


def test_a_notebook_parameter_out_of_its_range_is_refused_in_one_line_before_any_kernel(
    monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("REIDLIB_RESULTS", str(tmp_path / "results"))
    _no_kernel(monkeypatch)
    for given, words in [  # the real notebook 02 and its demo parameters
        ("r2=1.5", "02_erasing_masks: parameter r2: expected a ratio in [0, 1), got 1.5 (from --set r2)"),
        ("r1_values=[0.1, 1]", "parameter r1_values: expected a ratio in [0, 1), got 1 (in [0.1, 1])"),
        ("tau=-0.1", "parameter tau: expected a threshold in [0, 1], got -0.1"),
        ("num_images=0", "parameter num_images: expected a count >= 1, got 0"),
        ("seed=-1", "parameter seed: expected a seed >= 0, got -1"),
        ("p=0", "parameter p: expected an exponent >= 1, got 0"),
    ]:
        assert nb_runner.main("demo", ["02"], [given], None) == 2, given
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
        assert words in captured.err and captured.out == "", (given, captured.err)
    assert not (tmp_path / "results").exists()  # refused before any folder was made


def test_every_numeric_notebook_parameter_has_one_range():
    numeric = {
        name
        for path in nb_runner.notebook_paths()
        for name, annotation in nb_runner.declared_types(path).items()
        if annotation in ("int", "float", "list[int]", "list[float]")
    }
    assert numeric == set(nb_runner.RANGES)  # each has a range, and each range a parameter
    for path in nb_runner.notebook_paths():  # the committed parameter sets are in range
        for params in nb_runner.available_params(path):
            plan(params, only=[path.stem])


def test_every_notebook_checks_its_parameters_in_its_own_kernel_before_any_work():
    for path in nb_runner.notebook_paths():
        code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.stem
        body = ast.parse(code[1].source).body
        first_work = next(n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom)))
        assert ast.unparse(first_work) == f"check_parameters('{path.stem}', globals())", path.stem
        namespace: dict = {}
        exec(code[0].source, namespace)  # the parameters cell: what papermill or JupyterLab runs first
        nb_runner.check_parameters(path.stem, namespace)  # the defaults pass
        name = next(iter(nb_runner.declared_types(path)))
        with pytest.raises(NotebookRunError, match=rf"^{path.stem}: parameter {name}: expected "):
            nb_runner.check_parameters(path.stem, {**namespace, name: {1, 2}})  # of no declared type
        if "r2" in namespace:  # `papermill notebooks/02_erasing_masks.ipynb ... -p r2 1.5`
            ratio = r"parameter r2: expected a ratio in \[0, 1\), got 1.5$"
            with pytest.raises(NotebookRunError, match=ratio):
                nb_runner.check_parameters(path.stem, {**namespace, "r2": 1.5})


# ------------------------------------------------------------ 2. notebooks write into their own folders only


def test_a_notebook_writes_only_into_its_own_output_folder(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(
        OutputFolderError,
        match=rf"^{theirs}: holds notes.txt, and 02_erasing_masks did not write there \(no \.notebook file "
        r"naming it\); choose another output_dir, or empty that folder$",
    ):
        output_folder("02_erasing_masks", str(theirs))
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]  # nothing written, nothing removed
    ours = output_folder("02_erasing_masks", str(tmp_path / "new" / "02"))  # made, and marked as its own
    (ours / "masks.csv").write_text("old")
    assert output_folder("02_erasing_masks", str(ours)) == ours  # a second run writes over its own outputs
    with pytest.raises(OutputFolderError, match=r"the output folder of '02_erasing_masks', not 03_training"):
        output_folder("03_training", str(ours))
    with pytest.raises(OutputFolderError, match=r"notes.txt: is a file, expected 03_training's output"):
        output_folder("03_training", str(theirs / "notes.txt"))


def test_the_runner_writes_only_where_the_run_folders_files_are_its_own(
    fake_notebooks, tmp_path, monkeypatch, capsys
):
    _notebook(fake_notebooks, "01_first", "pass")
    _no_kernel(monkeypatch)
    out = tmp_path / "out"
    jobs = plan("demo")

    def refused(words: str) -> None:
        assert nb_runner.main("demo", [], [], str(out)) == 2
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and words in captured.err, captured.err
        assert "; choose another --out, or pass --overwrite to write over it" in captured.err

    (out / "01_first").mkdir(parents=True)
    (out / "01_first" / "notes.txt").write_text("mine")
    refused(f"error: {out / '01_first'}: holds notes.txt, and 01_first did not write there")
    check_run_folder(out, jobs, overwrite=True)  # --overwrite: written over (nothing removed)
    (out / "01_first.ipynb").write_text("my notebook")
    refused(f"{out / '01_first.ipynb'}: not an executed copy of 01_first")
    (out / "01_first.ipynb").unlink()
    (out / "run.json").write_text("{}")
    refused(f"{out / 'run.json'}: not the record of a notebook run")
    assert (out / "run.json").read_text() == "{}" and not (out / "01_first" / MARK).exists()
    # a folder the runner filled before output folders were marked: its run.json, or the executed copy
    (out / "run.json").write_text(json.dumps({"params": "demo", "notebooks": [{"notebook": "01_first"}]}))
    check_run_folder(out, jobs)
    (out / "run.json").unlink()
    copy = nbformat.v4.new_notebook(metadata={"papermill": {"input_path": "/x/notebooks/01_first.ipynb"}})
    nbformat.write(copy, out / "01_first.ipynb")
    check_run_folder(out, jobs)
    (out / "01_first.ipynb").unlink()
    refused("holds notes.txt")
    mark_output_folder(out / "01_first", "01_first")  # what the runner does before the kernel starts
    check_run_folder(out, jobs)
