"""The command line: data stats / synth, evaluate, extract, export, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from reidlib.cli import main
from reidlib.data.datasets import load_dataset
from reidlib.training.engine import train

from support import tiny_recipe


@pytest.fixture(scope="module")
def trained_run(tiny_synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    train(tiny_recipe(tiny_synthetic, "optim.epochs=1"), out)
    return out


def test_data_stats_json_matches_the_parser(tiny_synthetic, capsys):
    assert main(["data", "stats", "--dataset", "folder", "--root", str(tiny_synthetic), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == load_dataset("folder", tiny_synthetic).stats()
    assert set(printed) == {"train", "query", "gallery"}
    assert set(printed["train"]) == {"images", "ids", "cameras"}


def test_data_stats_table(tiny_synthetic, capsys):
    assert main(["data", "stats", "--dataset", "folder", "--root", str(tiny_synthetic)]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "gallery" in text


def test_data_synth_writes_a_parsable_set(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "synth", "--out", str(out), "--ids", "5", "--seed", "3"]) == 0
    stats = load_dataset("folder", out).stats()
    assert stats["train"]["ids"] == 5 and stats["query"]["ids"] == 5
    assert str(out) in capsys.readouterr().out


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "stats", "--dataset", "market1501", "--root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "none") in err and "Traceback" not in err
    assert main(["train", "--config", "no_such_recipe"]) == 2
    assert "unknown recipe 'no_such_recipe'" in capsys.readouterr().err
    assert main(["train", "--config", "smoke", "--set", "optim.epochz=3"]) == 2
    assert "optim.epochz" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_checkpoint_matches_the_run(trained_run, tiny_synthetic, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(trained_run / "last.pt"),
                "--device",
                "cpu",
                "--workers",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    evaluated = json.loads(out.read_text())
    during = json.loads((trained_run / "metrics.json").read_text())
    assert evaluated["mAP"] == pytest.approx(during["mAP"], abs=1e-3)
    assert evaluated["rank1"] == pytest.approx(during["rank1"], abs=1e-3)
    assert len(evaluated["cmc"]) == 50
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(trained_run / "last.pt"),
                "--device",
                "cpu",
                "--workers",
                "0",
                "--flip",
                "--rerank",
                "--mode",
                "official",
            ]
        )
        == 0
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["protocol"]["flip"] and line["protocol"]["rerank"] and line["protocol"]["mode"] == "official"


@pytest.mark.slow
def test_extract_writes_features_in_record_order(trained_run, tiny_synthetic, tmp_path):
    out = tmp_path / "features.pt"
    assert (
        main(
            [
                "extract",
                "--checkpoint",
                str(trained_run / "last.pt"),
                "--device",
                "cpu",
                "--workers",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    feats = torch.load(out, weights_only=True)
    ds = load_dataset("folder", tiny_synthetic)
    assert feats["query"]["features"].shape == (len(ds.query), 512)
    assert feats["gallery"]["paths"] == [r.path for r in ds.gallery]
    assert feats["gallery"]["pids"].tolist() == [r.pid for r in ds.gallery]


@pytest.mark.slow
def test_export_onnx_agrees_with_torch(trained_run, tmp_path, capsys):
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(trained_run / "last.pt"), "--onnx", str(onnx_path)]) == 0
    text = capsys.readouterr().out
    diff = float(text.rsplit("=", 1)[1])
    assert onnx_path.stat().st_size > 1_000_000 and diff < 1e-4


@pytest.mark.slow
def test_module_entry_point_runs():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "reidlib", "recipes"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 and "sen_market1501" in done.stdout
