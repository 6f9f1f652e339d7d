"""The Jupyter kernel named ``reidlib``: IPython in this interpreter, with reidlib's CPU thread policy.

``python -m reidlib.notebooks.kernel install`` (run by ``make install``) writes the kernel spec into this
interpreter's prefix (``.venv/share/jupyter/kernels/reidlib``), so nothing goes to the user's home;
JupyterLab started from ``.venv``, papermill (``-k reidlib``) and nbval find it there. The kernel it
starts is ``python -m reidlib.notebooks.kernel -f <connection file>``: it applies the thread policy of
``reidlib.utils.threads`` (a value the user exported is kept) before IPython, and so torch, starts.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from reidlib.utils.threads import apply_wait_policy

KERNEL_NAME = "reidlib"
# The kernel's own log level when set (the notebook runner sets CRITICAL: a run stopped with Ctrl-C
# would otherwise end with the kernel's traceback about its closed sockets).
LOG_LEVEL_VAR = "REIDLIB_KERNEL_LOG_LEVEL"
DISPLAY_NAME = "Python (reidlib)"


def spec_dir(prefix: str | Path = sys.prefix) -> Path:
    return Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME


def kernel_spec(python: str = sys.executable) -> dict:
    return {
        "argv": [python, "-m", "reidlib.notebooks.kernel", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": True},
    }


def install(prefix: str | Path = sys.prefix, python: str = sys.executable) -> Path:
    """Write the ``reidlib`` kernel spec under ``prefix``; returns its kernel.json."""
    from reidlib.utils.fileio import atomic_write_json

    path = spec_dir(prefix) / "kernel.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, kernel_spec(python))
    return path


def is_installed() -> bool:
    """Whether Jupyter, as this interpreter sees it, knows a kernel named ``reidlib``."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        return False
    return True


def main(argv: list[str]) -> int:
    if argv[:1] == ["install"]:
        print(f"installed kernel '{KERNEL_NAME}': {install()}")
        return 0
    apply_wait_policy()
    if sys.path and sys.path[0] in ("", str(Path.cwd())):
        del sys.path[0]  # as ipykernel's own launcher: the notebook's folder is not a package root
    logging.getLogger("IPKernelApp").addFilter(_LoopbackTransportNotice())
    level = os.environ.get(LOG_LEVEL_VAR)  # the notebook runner: cells report their own errors
    from ipykernel import kernelapp

    kernelapp.launch_new_instance([*argv, f"--IPKernelApp.log_level={level}"] if level else argv)
    return 0


class _LoopbackTransportNotice(logging.Filter):
    """Drops ipykernel's notice that TCP carries plain text: the kernel listens on loopback only
    (the connection file Jupyter writes binds 127.0.0.1), so it would greet every run with noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "running over TCP without encryption" not in record.getMessage()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
