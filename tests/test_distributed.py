"""DDP on CPU: two gloo processes under torchrun train in lockstep on disjoint data; rank 0 alone writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reidlib.config import load_recipe
from reidlib.data.datasets import load_dataset
from reidlib.evaluation.features import evaluate_network
from reidlib.training.engine import load_network, prepare_dataset
from reidlib.utils.runtime import Runtime

from support import tiny_overrides

WORKER = Path(__file__).parent / "helpers" / "ddp_worker.py"


@pytest.mark.slow
def test_two_gloo_ranks_train_in_lockstep(tiny_synthetic, tmp_path):
    records, out = tmp_path / "records", tmp_path / "run"
    records.mkdir()
    overrides = tiny_overrides(tiny_synthetic, "eval.every=2", "train.max_iters_per_epoch=4")  # later wins
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        str(WORKER),
        str(records),
        str(out),
        *overrides,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    r0, r1 = (json.loads((records / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    for e0, e1 in zip(r0["records"], r1["records"], strict=True):
        assert e0["checksum"] == e1["checksum"], f"weights differ across ranks after epoch {e0['epoch']}"
        seen0 = {i for b in e0["batches"] for i in b}
        seen1 = {i for b in e1["batches"] for i in b}
        assert not any(b in e1["batches"] for b in e0["batches"])  # disjoint shares of the epoch
        assert len(e0["batches"]) == len(e1["batches"]) == 4
        assert seen0 and seen1
    # rank 0 alone wrote the run folder: one log line per epoch, nothing written twice
    log = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "log.jsonl", "metrics.json", "params.json"]
    assert json.loads((out / "params.json").read_text())["world_size"] == 2

    # The metrics came from features gathered across both ranks: they must equal a one-process
    # evaluation of the same weights, which extracts everything itself.
    model, recipe = load_network(out / "last.pt")
    dataset = prepare_dataset(load_recipe("smoke", overrides))
    runtime = Runtime(device=model_device(model), channels_last=recipe.train.channels_last)
    single = evaluate_network(model, dataset, height=64, width=32, runtime=runtime, batch_size=16)["plain"]
    ddp = json.loads((out / "metrics.json").read_text())
    assert ddp["mAP"] == pytest.approx(single["mAP"], abs=1e-3)
    assert ddp["rank1"] == pytest.approx(single["rank1"], abs=1e-3)
    assert load_dataset("folder", tiny_synthetic).stats() == dataset.stats()


def free_port() -> int:
    """A port nobody listens on now (torchrun's --master_port=0 does not work with the static rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_device(model):
    return next(model.parameters()).device
