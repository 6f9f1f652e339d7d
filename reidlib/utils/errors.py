"""One line per error: what a failed command prints, from the project's errors and the system's."""

from __future__ import annotations

_WORKER = "DataLoader worker"


def is_worker_error(err: BaseException) -> bool:
    """An error the DataLoader re-raised from a worker (its message carries the worker's traceback)."""
    first = str(err).lstrip().split("\n", 1)[0]
    return first.startswith("Caught ") and _WORKER in first


def one_line(err: BaseException) -> str:
    """``err`` as one line: a worker's original message, an OSError's file and reason, else its text."""
    text = str(err)
    if is_worker_error(err):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        where = lines[0].removeprefix("Caught ").rstrip(".")
        text = f"{lines[-1]} ({where.split(' ', 1)[-1]})"
    elif isinstance(err, OSError) and err.strerror and err.filename:
        text = f"{err.filename}: {err.strerror}"
    return " ".join(text.split()) or type(err).__name__


SHOWN_CHARS = 200


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (a value can be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
