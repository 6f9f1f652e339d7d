"""CPU thread policy: how reidlib's processes share a CPU with other work.

On a busy machine PyTorch's OpenMP threads spin while they wait for a core that another process holds,
and a training run beside another one fell from 46 to 9 images/s on 2 cores. Two settings fix that:

- ``OMP_WAIT_POLICY=PASSIVE``: a waiting OpenMP thread sleeps instead of spinning. The OpenMP runtime
  reads it once, when torch is first imported, so every entry point (``python -m reidlib``, the
  notebook runner and its kernels, the ``make`` targets) calls :func:`apply_wait_policy` before that.
  A value the user set is kept; ``REIDLIB_THREAD_POLICY=off`` leaves the environment alone (what the
  shared-CPU benchmark uses to measure the difference).
- as many torch threads as the process may run on (``os.sched_getaffinity``, which a container or
  ``taskset`` narrows), not the machine's core count; an exported ``OMP_NUM_THREADS`` wins over that,
  and ``train.threads`` over both.

This module imports nothing heavy: it must be usable before torch is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"
THREADS_VAR = "OMP_NUM_THREADS"
OPT_OUT_VAR = "REIDLIB_THREAD_POLICY"


def apply_wait_policy(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` unless it is set or the policy is opted out of
    (``REIDLIB_THREAD_POLICY=off``). Returns the value in force afterwards (None: unset)."""
    if environ.get(OPT_OUT_VAR, "").strip().lower() not in ("off", "0", "false", "no"):
        environ.setdefault(WAIT_POLICY_VAR, "PASSIVE")
    return environ.get(WAIT_POLICY_VAR)


def exported_threads(environ: Mapping[str, str] = os.environ) -> int | None:
    """``OMP_NUM_THREADS`` when the user exported it (a positive integer); None when unset."""
    text = environ.get(THREADS_VAR, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{THREADS_VAR}: expected a positive integer, got {text!r} (unset it, or export 2)")
    return int(text)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity call on this platform
        return max(1, os.cpu_count() or 1)


def set_torch_threads(threads: int = 0) -> int:
    """Use ``threads`` torch intra-op threads (0: an exported ``OMP_NUM_THREADS``, else
    :func:`usable_cores`); returns the number set."""
    import torch

    if threads < 0:
        raise ValueError(f"train.threads: expected 0 (all usable cores) or a positive count, got {threads}")
    count = threads or exported_threads() or usable_cores()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
