"""Launched by tests/test_distributed.py under torchrun: trains a tiny recipe with
reidlib.training.engine.train
and records, per rank and epoch, the batches the rank's sampler gave and a checksum of the weights."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import reidlib.training.engine as engine
from reidlib.config import load_recipe

record_dir = Path(sys.argv[1])
out_dir = Path(sys.argv[2])
overrides = sys.argv[3:]
rank = int(os.environ["RANK"])
original_epoch = engine._train_epoch
records = []


def recording_epoch(tr, epoch, lr):
    batches = [list(map(int, b)) for b in tr.loader.batch_sampler]
    row = original_epoch(tr, epoch, lr)
    model, criterion = tr.state.model, tr.state.criterion
    # the network and the centers: DDP must keep both identical (the centers live in the criterion)
    checksum = [float(p.detach().double().sum()) for p in [*model.parameters(), *criterion.parameters()]]
    records.append({"epoch": epoch, "batches": batches[: row.iters], "checksum": checksum})
    return row


engine._train_epoch = recording_epoch
engine.train(load_recipe("smoke", overrides), out_dir)
(record_dir / f"rank{rank}.json").write_text(
    json.dumps({"world_size": int(os.environ["WORLD_SIZE"]), "records": records, "torch": torch.__version__})
)
