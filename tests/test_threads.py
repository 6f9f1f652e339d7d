"""The CPU thread policy (reidlib.utils.threads): PASSIVE OpenMP waits unless the user chose, and as many
torch threads as the process may run on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from reidlib.config import ConfigError, load_recipe
from reidlib.utils.threads import apply_wait_policy, set_torch_threads, usable_cores


def test_wait_policy_is_set_when_the_user_set_nothing():
    env = {}
    assert apply_wait_policy(env) == "PASSIVE"
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_a_value_the_user_exported_is_kept():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert apply_wait_policy(env) == "ACTIVE"
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.parametrize("off", ["off", "0", "OFF", "false"])
def test_the_policy_can_be_switched_off(off):
    env = {"REIDLIB_THREAD_POLICY": off}
    assert apply_wait_policy(env) is None
    assert "OMP_WAIT_POLICY" not in env


def _run(code: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.slow
def test_the_command_line_sets_the_policy_before_torch_is_imported():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "REIDLIB_THREAD_POLICY")}
    code = (
        "import os, sys, reidlib.cli\n"
        "assert 'torch' not in sys.modules, 'importing the CLI must not load torch'\n"
        "reidlib.cli.main(['recipes'])\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    assert _run(code, env).splitlines()[-1] == "PASSIVE"
    assert _run(code, {**env, "OMP_WAIT_POLICY": "ACTIVE"}).splitlines()[-1] == "ACTIVE"


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_threads_follow_the_affinity_mask_not_the_machine():
    # pin a child process to one core (as taskset or a container would): torch gets 1 thread
    code = (
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
        "import torch; from reidlib.utils.threads import set_torch_threads\n"
        "print(set_torch_threads(0), torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # exported, it would win
    assert _run(code, env) == "1 1"


def test_explicit_thread_count_wins_and_is_restored(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # exported, it would set the count for 0
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_torch_threads(0) == usable_cores() == len(os.sched_getaffinity(0))
        assert torch.get_num_threads() == usable_cores()
    finally:
        torch.set_num_threads(before)


def test_train_threads_is_a_checked_recipe_key():
    assert load_recipe("smoke").train.threads == 0
    assert load_recipe("smoke", ["train.threads=2"]).train.threads == 2
    with pytest.raises(ConfigError, match="train.threads"):
        load_recipe("smoke", ["train.threads=-1"])
