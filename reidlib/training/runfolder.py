"""The run folder: its files, their one writer and their readers, and when a folder may be used.

A run folder is what :func:`reidlib.training.engine.train` writes:

- ``params.json``: :class:`Params`: the resolved recipe, seed, dataset statistics, runtime,
  environment (git SHA, versions, device), the ImageNet weights' file and sha256 when the network
  starts from them, and one entry per resume;
- ``log.jsonl``: one :class:`EpochLog` per line;
- ``last.pt``: the checkpoint (:mod:`reidlib.training.checkpoint`), ``epochNNN.pt``: weight snapshots;
- ``metrics.json``: :class:`FinalMetrics`, written once the last epoch is evaluated: the run is finished.

Policy (:func:`open_run`): one process writes a run folder at a time (it holds ``.lock``,
:class:`reidlib.utils.fileio.FolderLock`: a second one is refused naming the PID of the first); a new
run never lands in a folder that holds one (``params.json``, ``metrics.json`` or ``last.pt``) unless
asked to ``overwrite`` it; a resume continues from ``last.pt`` only with the recipe it started with, up
to :data:`reidlib.config.EXECUTION_KEYS`; a run stopped before its first epoch ended (no ``last.pt``,
no epoch logged) starts again when asked to resume; a finished run asked to resume is read back, never
trained again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reidlib.config import Recipe, Variant, is_execution_key, recipe_changes
from reidlib.data.datasets import ReidDataset
from reidlib.evaluation.metrics import chance_rank1
from reidlib.training.checkpoint import save_compact
from reidlib.utils.fileio import FolderLock, atomic_write_json, atomic_write_text, check_output_file

PARAMS, LOG, METRICS, CHECKPOINT = "params.json", "log.jsonl", "metrics.json", "last.pt"


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (holds a run, nothing to resume, recipe changed)."""


class RunReadError(ValueError):
    """A run folder is incomplete or one of its files is not what the engine writes."""


# ----------------------------------------------------------------------------- the three records


@dataclass
class Params:
    """``params.json``: what was run, on what, from which code; one entry per resume.

    Read back from any version: a field an older engine did not write is None (and stays unwritten),
    a key this version does not know is kept in ``extra`` and written back as it was.
    """

    recipe: dict[str, Any]
    seed: int | None = None
    num_classes: int | None = None
    world_size: int | None = None
    global_batch: int | None = None  # each rank draws its own P x K batch: a step averages world_size
    dataset: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] | None = None  # the ImageNet weights file and its sha256 (None: from scratch)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        names = [f.name for f in dataclasses.fields(self) if f.name != "extra"]
        values = {k: getattr(self, k) for k in names if getattr(self, k) is not None}
        return json.loads(json.dumps({**values, **self.extra}))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Params:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {k: v for k, v in values.items() if k not in names}
        return cls(**{k: v for k, v in values.items() if k in names}, extra=extra)


@dataclass
class EpochLog:
    """One line of ``log.jsonl``; ``extra`` holds any further per-epoch record, at the top level."""

    epoch: int
    lr: float
    losses: dict[str, float]
    iters: int
    images_per_s: float
    epoch_time_s: float
    metrics: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**row, **self.extra}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> EpochLog:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {k: v for k, v in row.items() if k not in names}
        return cls(**{k: v for k, v in row.items() if k in names}, extra=extra)


@dataclass
class FinalMetrics:
    """``metrics.json``: the reported variant's numbers (%) at the top, the protocol (with the rank-1
    of a random ranking, :func:`reidlib.evaluation.metrics.chance_rank1`), every variant."""

    summary: dict[str, Any]  # rank1/5/10, mAP, mINP, num_valid_queries, cmc
    epoch: int
    train_time_s: float
    protocol: dict[str, Any]
    variants: dict[str, dict[str, Any]]

    @classmethod
    def of(
        cls, recipe: Recipe, dataset: ReidDataset, metrics: dict[str, Any], *, epoch: int, seconds: float
    ) -> FinalMetrics:
        """From ``evaluate_network``'s ``{variant: summary}`` after the last epoch."""
        e = recipe.eval
        return cls(
            summary=metrics[Variant.of(flip=e.flip, rerank=e.rerank)],
            epoch=epoch,
            train_time_s=round(seconds, 1),
            protocol={
                "dataset": recipe.data.dataset,
                "mode": e.mode,
                "metric": e.metric,
                "flip": e.flip,
                "rerank": e.rerank,
                "max_rank": e.max_rank,
                "num_query": len(dataset.query),
                "num_gallery": len(dataset.gallery),
                "chance_rank1": _chance(dataset),
            },
            variants={k: {m: v for m, v in s.items() if m != "cmc"} for k, s in metrics.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary,
            "epoch": self.epoch,
            "train_time_s": self.train_time_s,
            "protocol": self.protocol,
            "variants": self.variants,
        }


def _chance(dataset: ReidDataset) -> dict[str, float] | None:
    """:func:`reidlib.evaluation.metrics.chance_rank1` of the dataset's query/gallery split."""
    q, g = dataset.query, dataset.gallery
    pids, cams = ([r.pid for r in q], [r.pid for r in g]), ([r.camid for r in q], [r.camid for r in g])
    try:
        return chance_rank1(*pids, *cams)
    except ValueError:  # no query has a match: the evaluation itself says so
        return None


# ----------------------------------------------------------------------------- reading


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunReadError(f"{path.parent}: incomplete run folder, {path.name} is missing")
    try:
        value = json.loads(path.read_text())
    except ValueError as err:
        raise RunReadError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise RunReadError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``log.jsonl`` (one JSON object per epoch); [] when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise RunReadError(f"{path}, line {number}: not valid JSON ({err})") from err
        if not isinstance(row, dict) or "epoch" not in row:
            raise RunReadError(f"{path}, line {number}: expected an object with an 'epoch' key")
        rows.append(row)
    return rows


def read_params(folder: str | Path) -> dict[str, Any]:
    """``params.json`` of ``folder``, checked to hold a recipe with name, data, model and optim."""
    path = Path(folder) / PARAMS
    params = read_json(path)
    recipe = params.get("recipe")
    if not isinstance(recipe, dict) or not all(k in recipe for k in ("name", "data", "model", "optim")):
        raise RunReadError(f"{path}: no 'recipe' with name, data, model and optim (not written by reidlib?)")
    return params


def read_metrics(folder: str | Path) -> dict[str, Any]:
    """``metrics.json`` of ``folder``, checked to hold rank1 and mAP as numbers."""
    path = Path(folder) / METRICS
    metrics = read_json(path)
    missing = [k for k in ("rank1", "mAP") if not isinstance(metrics.get(k), (int, float))]
    if missing:
        raise RunReadError(f"{path}: expected numbers under {missing} (rank1/mAP in %)")
    return metrics


def is_record(path: str | Path) -> bool:
    """Whether ``path`` is named like one of a run folder's own files (records, checkpoints, snapshots)."""
    name = Path(path).name
    return name in (PARAMS, LOG, METRICS, CHECKPOINT) or re.fullmatch(r"epoch\d{3,}\.pt", name) is not None


def holds_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds a run, started or finished (any of its records)."""
    return any((Path(folder) / name).is_file() for name in (PARAMS, LOG, METRICS, CHECKPOINT))


def is_run(folder: str | Path) -> bool:
    return (Path(folder) / PARAMS).is_file()


def is_finished(folder: str | Path) -> bool:
    return (Path(folder) / METRICS).is_file()


def snapshot_path(run_dir: str | Path, epoch: int) -> Path:
    """Where ``train.snapshot_epochs`` keeps the weights after ``epoch``: ``<run>/epoch<NNN>.pt``.

    A snapshot holds the recipe, class count, epoch and weights (no optimiser state): enough for
    :func:`reidlib.training.engine.load_network`, not for resuming.
    """
    return Path(run_dir) / f"epoch{epoch:03d}.pt"


def compact(run_dir: str | Path) -> int:
    """Keep a finished run small: ``last.pt`` rewritten as half-precision weights only (it still
    loads with ``load_network``; it no longer resumes) and the weight snapshots removed. Returns the
    bytes freed. A run that is not finished is refused."""
    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        raise RunFolderError(
            f"{run_dir}: not a finished run ({METRICS} is missing); only finished runs are compacted"
        )
    files = [run_dir / CHECKPOINT, *snapshots(run_dir).values()]
    before = sum(f.stat().st_size for f in files if f.is_file())
    lock = lock_run_folder(run_dir)  # no process trains or evaluates into it meanwhile
    try:
        if (run_dir / CHECKPOINT).is_file():
            save_compact(run_dir / CHECKPOINT)
        for snap in snapshots(run_dir).values():
            snap.unlink()
    finally:
        lock.release()
    return before - sum(f.stat().st_size for f in files if f.is_file())


def snapshots(run_dir: str | Path) -> dict[int, Path]:
    """The weight snapshots ``run_dir`` holds, ``{epoch: path}`` in epoch order (:func:`snapshot_path`)."""
    found = {int(p.stem[len("epoch") :]): p for p in Path(run_dir).glob("epoch[0-9][0-9][0-9].pt")}
    return dict(sorted(found.items()))


# ----------------------------------------------------------------------------- the folder of one run


class RunFolder:
    """One run folder: its paths, its one writer, and where the writing stands (for error messages)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.log_rows: list[EpochLog] = []
        self.saved_epoch = 0  # the epoch last.pt holds (0: none yet)
        self.epoch = 0  # the epoch being trained

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def snapshot(self, epoch: int) -> Path:
        return snapshot_path(self.path, epoch)

    def write_params(self, params: Params) -> None:
        atomic_write_json(self.path / PARAMS, params.to_dict())

    def read_params(self) -> Params:
        return Params.from_dict(read_params(self.path))

    def restore_log(self, up_to_epoch: int) -> list[EpochLog]:
        """The log rows up to the checkpoint's epoch (later ones were never checkpointed)."""
        rows = read_log(self.path / LOG)
        self.log_rows = [EpochLog.from_dict(r) for r in rows if r["epoch"] <= up_to_epoch]
        return self.log_rows

    def append_log(self, row: EpochLog) -> None:
        self.log_rows.append(row)
        atomic_write_text(self.path / LOG, "".join(json.dumps(r.to_dict()) + "\n" for r in self.log_rows))

    def write_metrics(self, metrics: FinalMetrics) -> dict[str, Any]:
        values = metrics.to_dict()
        atomic_write_json(self.path / METRICS, values)
        return values

    def resume_hint(self) -> str:
        """What to do after a run stopped: resume from the last good checkpoint, or start again."""
        if self.saved_epoch:
            return f"{self.checkpoint} holds epoch {self.saved_epoch}: continue with --resume"
        if self.checkpoint.is_file():  # stopped just as the first one was written
            return f"{self.checkpoint} holds the last epoch saved: continue with --resume"
        return f"no checkpoint was written yet: start again with --overwrite (folder {self.path})"

    def remove_stale_temporaries(self) -> list[Path]:
        """Remove the ``.<name>.*.tmp`` files a killed atomic write left behind (call it holding the
        folder's lock: a live writer's temporaries are then never among them)."""
        stale = sorted(self.path.glob(".*.tmp")) if self.path.is_dir() else []
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        return stale

    def clear(self) -> None:
        """Remove the files of the run that lives here (other files, e.g. a report/ folder, stay)."""
        for name in (METRICS, PARAMS, LOG, CHECKPOINT):
            (self.path / name).unlink(missing_ok=True)
        for snap in snapshots(self.path).values():
            snap.unlink()


# ----------------------------------------------------------------------------- when a folder may be used


@contextlib.contextmanager
def output_file(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """An output file of ``evaluate --out``, ``extract --out`` or ``export --onnx``, checked before any
    work: refused if it is a folder, if it exists (unless ``overwrite``), or if it would replace one of
    a run folder's own records (never, whatever ``overwrite`` says). While the command runs, the run
    folder the file lands in is locked (no training writes there meanwhile, nor removes our temporary)."""
    path, folder = Path(path), Path(path).parent
    if holds_run(folder) and is_record(path):
        raise RunFolderError(
            f"{path}: would replace the run's own {path.name} in {folder}; write the output under "
            "another name or into another folder"
        )
    check_output_file(path, overwrite=overwrite)
    if not holds_run(folder):
        yield path
        return
    lock = lock_run_folder(folder)
    try:
        yield path
    finally:
        lock.release()


@dataclass
class Opened:
    """What :func:`open_run` decided: a fresh run, a resume (with its execution-key changes), or a
    finished run read back (``finished`` holds its metrics.json)."""

    folder: RunFolder
    resume: bool
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    finished: dict[str, Any] | None = None
    restarted: bool = False  # a resume of a run stopped before its first epoch ended: it starts again
    lock: FolderLock | None = None  # held by the main rank until :meth:`close`

    def close(self) -> None:
        """Let another process use the folder (the run is done, or stopped)."""
        if self.lock is not None:
            self.lock.release()


def check_folder_target(path: Path) -> None:
    """Refuse a run folder path that is a file, or below a file (before any work starts)."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise RunFolderError(f"{path}: {p} is a file, expected a folder for the run (choose --out)")
            return


def open_run(
    path: str | Path, recipe: dict[str, Any], *, resume: bool, overwrite: bool, is_main: bool = True
) -> Opened:
    """Decide how ``path`` is used for ``recipe`` (see the module docstring); on the main rank also
    create the folder and take its lock (held until :meth:`Opened.close`), remove stale temporaries
    and, with ``overwrite``, the previous run's files."""
    folder = RunFolder(path)
    check_folder_target(folder.path)
    if resume and overwrite:
        raise RunFolderError(f"{folder.path}: --resume and --overwrite exclude each other; pick one")
    lock = _lock(folder.path) if is_main and (folder.path.is_dir() or not resume) else None
    try:
        if resume:
            opened = _open_resume(folder, recipe)
        else:
            _refuse_existing(folder, overwrite)
            opened = Opened(folder, resume=False)
        if is_main:
            folder.remove_stale_temporaries()
            if overwrite:
                folder.clear()
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    opened.lock = lock
    return opened


def lock_run_folder(path: str | Path) -> FolderLock:
    """The lock of the run folder ``path``, taken (RunFolderError naming the PID that holds it)."""
    return _lock(Path(path))


def _lock(path: Path) -> FolderLock:
    path.mkdir(parents=True, exist_ok=True)
    try:
        return FolderLock(path, "run folder").acquire()
    except ValueError as err:  # FolderBusyError: another live process writes here
        raise RunFolderError(str(err)) from None


def _open_resume(folder: RunFolder, recipe: dict[str, Any]) -> Opened:
    if not folder.checkpoint.is_file() and not is_finished(folder.path):
        if is_run(folder.path) and not read_log(folder.path / LOG):
            return Opened(folder, resume=False, restarted=True)  # stopped in epoch 1: nothing to lose
        raise RunFolderError(f"{folder.path}: nothing to resume, {CHECKPOINT} is missing")
    changes = {}
    if is_run(folder.path):
        changes = recipe_changes(read_params(folder.path)["recipe"], recipe)
        refused = {k: v for k, v in changes.items() if not is_execution_key(k)}
        if refused:
            listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
            raise RunFolderError(
                f"{folder.path}: --resume with a changed recipe ({listed}); a resume may change only "
                "execution keys (progress, checkpointing, device, workers): put the old values back, "
                "or train into another --out"
            )
    finished = read_metrics(folder.path) if is_finished(folder.path) else None
    return Opened(folder, resume=True, changes=changes, finished=finished)


def _refuse_existing(folder: RunFolder, overwrite: bool) -> None:
    if overwrite:
        return
    if is_finished(folder.path):
        raise RunFolderError(
            f"{folder.path}: holds a finished run ({METRICS}); pass --resume to read it back, "
            "--overwrite to replace it, or choose another --out"
        )
    if is_run(folder.path) or folder.checkpoint.is_file():
        done = max((r["epoch"] for r in read_log(folder.path / LOG)), default=0)
        raise RunFolderError(
            f"{folder.path}: a run already lives here ({done} epochs logged); pass --resume to continue "
            "it, --overwrite to start it again, or choose another --out"
        )
