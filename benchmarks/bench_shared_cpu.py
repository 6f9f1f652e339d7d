"""Training images/s on a shared CPU: alone and beside another reidlib training run, with and without
reidlib's thread policy (reidlib.utils.threads), in one run.

Every training here is ``python -m reidlib train --config smoke`` started as a user would, with nothing
set in the environment: "with the policy" is what the command line does by itself (OMP_WAIT_POLICY=
PASSIVE, torch threads = usable cores); "without" opts out (REIDLIB_THREAD_POLICY=off), which is how
reidlib behaved before it had a policy. The run beside is another smoke training with the same
setting, started first and stopped at the end. images/s is the training loop's own figure (log.jsonl),
of the last epoch (the first one also decodes the images into the cache).

    python benchmarks/bench_shared_cpu.py [--iters 15]

Target: beside another run >= 0.35x of alone (0.5x is the fair share on 2 cores), and no
loss alone. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICY_VARS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "REIDLIB_THREAD_POLICY")


def user_env(policy: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
    if not policy:
        env["REIDLIB_THREAD_POLICY"] = "off"
    return env


def train_command(out: Path, epochs: int, iters: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "reidlib",
        "train",
        "--config",
        "smoke",
        "--out",
        str(out),
        "--set",
        f"optim.epochs={epochs}",
        "--set",
        f"train.max_iters_per_epoch={iters}",
        "--set",
        "optim.milestones=[]",
        "--set",
        f"eval.every={epochs}",
        "--set",
        "train.progress=false",
        "--set",
        "train.keep_checkpoint=false",
    ]


def measured_run(scratch: Path, name: str, policy: bool, iters: int) -> float:
    out = scratch / name
    subprocess.run(train_command(out, 2, iters), env=user_env(policy), check=True, capture_output=True)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return float(rows[-1]["images_per_s"])


def start_beside(scratch: Path, name: str, policy: bool) -> subprocess.Popen:
    """A long smoke training in the background; returns once it is past its first iterations."""
    out = scratch / name
    proc = subprocess.Popen(
        train_command(out, 200, 1000),
        env=user_env(policy),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(20)  # dataset loading, model building, image cache: let it reach its training loop
    if proc.poll() is not None:
        raise RuntimeError(f"the background run stopped early (exit {proc.returncode})")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=15, help="iterations per epoch of the measured runs")
    args = parser.parse_args()
    from reidlib.data.datasets import load_dataset

    load_dataset("synthetic", None)  # written on first use: not inside a timing
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_shared_cpu_") as tmp:
        scratch = Path(tmp)
        for policy in (True, False):
            label = "with policy" if policy else "without policy"
            alone = measured_run(scratch, f"alone_{policy}", policy, args.iters)
            beside_proc = start_beside(scratch, f"background_{policy}", policy)
            try:
                beside = measured_run(scratch, f"beside_{policy}", policy, args.iters)
            finally:
                beside_proc.terminate()
                beside_proc.wait()
            results[label] = (alone, beside)
            print(
                f"{label:15s} alone {alone:6.1f} img/s, beside another run {beside:6.1f} img/s "
                f"({beside / alone:.2f}x of alone)",
                flush=True,
            )
    (w_alone, w_beside), (o_alone, o_beside) = results["with policy"], results["without policy"]
    print(f"policy vs none: alone {w_alone / o_alone:.2f}x, beside another run {w_beside / o_beside:.2f}x")
    print(
        f"target beside >= 0.35x of alone: {'met' if w_beside / w_alone >= 0.35 else 'NOT met'} "
        f"({w_beside / w_alone:.2f}x); cores usable: {len(os.sched_getaffinity(0))}"
    )


if __name__ == "__main__":
    main()
