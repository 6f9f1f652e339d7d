"""reidlib: person re-identification with erasing networks (SEN, Deep Miner, Batch DropBlock, BoT).

The pipeline is the package's folders, lowest layer first::

    utils/        plumbing: checks, errors, atomic files, paths, threads, devices
    erasing.py    the erasing functions: a feature map in, a keep-mask out
    models/       the four networks and their backbones, heads and attention
    config.py     typed recipes (YAML -> dataclasses)
    data/         datasets, the synthetic set, image loading, samplers, transforms
    evaluation/   features, CMC/mAP/mINP, re-ranking, export, mask placement
    training/     losses, schedule, checkpoints, the engine and the run folder it writes
    experiments/  reading run folders, ablation grids, the papers' tables, the results page
    viz/          figures drawn from arrays and tables (never reads files)
    notebooks/    running the notebooks: runner, kernel, notebook outputs

The names below are what a script needs; each is imported on first use, so ``import reidlib`` stays
light (the command line starts without torch).
"""

from importlib import import_module

# name -> the module that defines it
_API = {
    "load_recipe": "reidlib.config",
    "load_dataset": "reidlib.data.datasets",
    "make_synthetic": "reidlib.data.datasets",
    "train": "reidlib.training.engine",
    "load_network": "reidlib.training.engine",
    "evaluate": "reidlib.evaluation.features",
    "evaluate_network": "reidlib.evaluation.features",
    "read_run": "reidlib.experiments.runs",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'reidlib' has no attribute {name!r}")
