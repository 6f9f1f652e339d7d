"""Reading run folders back: the provenance of every row a notebook labels "ours".

A run folder is what :func:`reidlib.training.engine.train` writes: ``params.json`` (resolved recipe, dataset
statistics, git SHA and dirty flag, device), ``log.jsonl`` (one line per epoch) and, once the last
epoch is evaluated, ``metrics.json`` (rank1/5/10, mAP, mINP in %, the protocol and the "variants":
plain, flip, rerank, flip+rerank). :func:`read_run` reads one folder; :func:`runs_table` turns many into
one row per run with the budget and the provenance beside the numbers; :func:`variants_table` lists
the evaluation variants (flip, re-ranking) of each run, one row per (run, variant).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from reidlib.experiments import paper_results
from reidlib.training.runfolder import (
    LOG,
    PARAMS,
    RunReadError,
    Variant,
    is_finished,
    is_run,
    read_log,
    read_metrics,
    read_params,
)
from reidlib.training.runfolder import METRICS as METRICS_FILE
from reidlib.utils.fileio import FolderLock

METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")
VARIANTS = tuple(v.value for v in Variant)
# recipe model.name -> the network's short name (the folder names under results/market1501_cpu/)
NETWORK_NAMES = {"baseline": "bot", "sen": "sen", "deep_miner": "deep_miner", "bdb": "bdb"}
NETWORK_LABELS = {"bot": "BoT", "sen": "SEN", "deep_miner": "Deep Miner", "bdb": "BDB"}
NETWORK_ORDER = ("bot", "bdb", "sen", "deep_miner")
# the networks by their papers' names, and the datasets a recipe name may end with (run_label)
PAPER_LABELS = {"bot": "BoT", "bdb": "Batch DropBlock", "sen": "SEN", "deep_miner": "Deep Miner"}
DATASETS = ("market1501", "dukemtmc", "cuhk03", "msmt17", "synthetic")
BACKBONE_LABELS = {
    "resnet18": "ResNet-18",
    "resnet34": "ResNet-34",
    "resnet50": "ResNet-50",
    "resnet101": "ResNet-101",
    "resnet152": "ResNet-152",
    "mobilenet_v2": "MobileNetV2",
}

RUN_COLUMNS = [
    "run",
    "network",
    "recipe",
    "seed",
    "dataset",
    "backbone",
    "pretrained",
    "input",
    "epochs",
    "planned_epochs",
    "max_iters_per_epoch",
    "status",
    *METRICS,
    "num_query",
    "num_gallery",
    "mode",
    "metric",
    "budget",
    "device",
    "git_sha",
    "git_dirty",
    "started",
    "train_time_s",
    "folder",
]


# ----------------------------------------------------------------------------- one folder


def read_run(folder: str | Path) -> dict[str, Any]:
    """``{"folder", "params", "metrics", "log"}`` of a finished run; raises :class:`RunReadError`
    naming the folder and the file when ``params.json`` or ``metrics.json`` is missing or malformed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunReadError(f"{folder}: no such run folder")
    params = read_params(folder)
    if not is_finished(folder):
        done = read_log(folder / LOG)
        planned = params["recipe"]["optim"].get("epochs", "?")
        raise RunReadError(
            f"{folder}: incomplete run folder, {METRICS_FILE} is missing "
            f"({len(done)} of {planned} epochs logged: still training, or stopped early)"
        )
    metrics = read_metrics(folder)
    return {"folder": folder, "params": params, "metrics": metrics, "log": read_log(folder / LOG)}


def run_status(folder: str | Path) -> str:
    """``"finished"``; for params.json without metrics.json, ``"running: epoch e/E (process PID)"``
    while a live process holds the folder's lock, else ``"stopped: epoch e/E"`` (``--resume`` goes on);
    or ``"not a run folder"``."""
    folder = Path(folder)
    if not is_run(folder):
        return "not a run folder"
    if is_finished(folder):
        return "finished"
    params = read_params(folder)
    log = read_log(folder / LOG)
    done = max((r["epoch"] for r in log), default=0)
    where = f"epoch {done}/{params['recipe']['optim'].get('epochs', '?')}"
    holder = FolderLock(folder).holder()
    return f"stopped: {where}" if holder is None else f"running: {where} (process {holder or '?'})"


# ----------------------------------------------------------------------------- budget and provenance


def budget_label(recipe: dict[str, Any], device: str | None = None) -> str:
    """What a run could afford, in words: ``"ResNet-18, from scratch, 128x64, 20 epochs, CPU"``."""
    m, d, o, t = recipe["model"], recipe["data"], recipe["optim"], recipe.get("train", {})
    parts = [
        BACKBONE_LABELS.get(m.get("backbone"), str(m.get("backbone"))),
        "ImageNet-pretrained" if m.get("pretrained") else "from scratch",
        f"{d['height']}x{d['width']}",
    ]
    epochs = f"{o['epochs']} epoch" + ("s" if o["epochs"] != 1 else "")
    if t.get("max_iters_per_epoch"):
        epochs += f" x {t['max_iters_per_epoch']} iters"
    parts.append(epochs)
    if device:
        parts.append("GPU" if not device.lower().startswith("cpu") else "CPU")
    return ", ".join(parts)


def short_budget(backbone: str | None, pretrained: bool) -> str:
    """A budget by its backbone and where the backbone starts: "ResNet-18 from scratch",
    "MobileNetV2 from ImageNet"."""
    name = BACKBONE_LABELS.get(str(backbone), str(backbone))
    return f"{name} {'from ImageNet' if pretrained else 'from scratch'}"


def budget_names(runs: pd.DataFrame, *, brief: bool = False) -> dict[str, str]:
    """Each budget of ``runs`` (a :func:`runs_table`) by its :func:`short_budget` name ("MobileNetV2 from
    ImageNet"), or, ``brief``, by where its backbone starts alone ("from ImageNet") where that tells the
    budgets apart; by its whole :func:`budget_label` where two budgets would share a shorter name (the
    same backbone at other epochs)."""
    rows = list(dict.fromkeys(zip(runs["budget"], runs["backbone"], runs["pretrained"], strict=True)))
    tiers = [{b: short_budget(bb, bool(pt)) for b, bb, pt in rows}, {b: b for b, _, _ in rows}]
    if brief:
        tiers.insert(0, {b: "from ImageNet" if pt else "from scratch" for b, _, pt in rows})
    for names in tiers:
        if len(set(names.values())) == len(names):
            return names
    return tiers[-1]


def run_label(recipe: str, network: str) -> str:
    """``bdb_ramp_market1501_cpu`` -> "Batch DropBlock, ramp": the network, then the word the recipe's
    name adds between the network and the dataset (none for the network's first recipe)."""
    label = PAPER_LABELS.get(network, network)
    rest = recipe.removeprefix(f"{network}_")
    if rest == recipe or rest.startswith(DATASETS):
        return label
    return f"{label}, {rest.split('_')[0]}"


def network_name(recipe: dict[str, Any]) -> str:
    """Short network name from the recipe's model: bot, sen, deep_miner, bdb."""
    name = recipe["model"]["name"]
    return NETWORK_NAMES.get(name, name)


def _flatten(run: dict[str, Any] | None, params: dict[str, Any], folder: Path, status: str) -> dict[str, Any]:
    recipe = params["recipe"]
    env = params.get("environment", {})
    d, m = recipe["data"], recipe["model"]
    row: dict[str, Any] = {
        "run": folder.name,
        "network": network_name(recipe),
        "recipe": recipe["name"],
        "seed": params.get("seed", recipe.get("train", {}).get("seed")),
        "dataset": params.get("dataset", {}).get("name", d.get("dataset")),
        "backbone": m.get("backbone"),
        "pretrained": bool(m.get("pretrained")),
        "input": f"{d['height']}x{d['width']}",
        "planned_epochs": recipe["optim"]["epochs"],
        "max_iters_per_epoch": recipe.get("train", {}).get("max_iters_per_epoch"),
        "status": status,
        "budget": budget_label(recipe, env.get("device")),
        "device": env.get("device"),
        "git_sha": env.get("git_sha"),
        "git_dirty": env.get("git_dirty"),
        "started": env.get("started"),
        "folder": str(folder),
    }
    if run is None:
        log = read_log(folder / LOG)
        row["epochs"] = max((r["epoch"] for r in log), default=0)
        row["train_time_s"] = round(sum(r.get("epoch_time_s", 0.0) for r in log), 1)
        return row
    metrics = run["metrics"]
    protocol = metrics.get("protocol", {})
    row.update({k: metrics.get(k, math.nan) for k in METRICS})
    row.update(
        epochs=metrics.get("epoch", recipe["optim"]["epochs"]),
        train_time_s=metrics.get("train_time_s"),
        num_query=protocol.get("num_query"),
        num_gallery=protocol.get("num_gallery"),
        mode=protocol.get("mode"),
        metric=protocol.get("metric"),
    )
    for variant, values in metrics.get("variants", {}).items():
        for k in METRICS:
            if k in values:
                row[f"{variant}_{k}"] = values[k]
    return row


def find_runs(source: str | Path | Iterable[str | Path]) -> list[Path]:
    """Run folders (folders holding a params.json): ``source`` itself when it is one, else every run
    folder below it (any depth), or the union over a list of such paths. Paths that do not exist
    contribute nothing."""
    if isinstance(source, (str, Path)):
        sources = [Path(source)]
    else:
        sources = [Path(s) for s in source]
    found: list[Path] = []
    for path in sources:
        if is_run(path):
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.rglob(PARAMS)))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def runs_table(source: str | Path | Iterable[str | Path], *, unfinished: str = "skip") -> pd.DataFrame:
    """One row per run below ``source`` (see :func:`find_runs`): network, recipe, dataset, backbone,
    input size, epochs, rank1/5/10, mAP, mINP, each variant's numbers as ``<variant>_<metric>``
    columns (``flip_rank1``, ``rerank_mAP``...), the budget in words, git SHA, dirty flag, device,
    start date and training wall time.

    ``unfinished``: what to do with a folder that has params.json but no metrics.json yet: ``"skip"``
    it, ``"include"`` it (status "stopped: epoch e/E" or "running: ...", :func:`run_status`; metrics NaN),
    or ``"raise"``.
    """
    if unfinished not in ("skip", "include", "raise"):
        raise ValueError(f"unfinished: expected skip, include or raise, got {unfinished!r}")
    rows = []
    for folder in find_runs(source):
        if is_finished(folder) or unfinished == "raise":
            run = read_run(folder)
            rows.append(_flatten(run, run["params"], folder, "finished"))
        elif unfinished == "include":
            rows.append(_flatten(None, read_params(folder), folder, run_status(folder)))
    df = pd.DataFrame(rows)
    for col in RUN_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=float if col in METRICS else object)
    variant_cols = [c for c in df.columns if c not in RUN_COLUMNS]
    split = RUN_COLUMNS.index("num_query")  # the variants right after the main metrics
    return df[RUN_COLUMNS[:split] + variant_cols + RUN_COLUMNS[split:]]


def variants_table(runs: pd.DataFrame, metrics: Iterable[str] = ("rank1", "mAP", "mINP")) -> pd.DataFrame:
    """The evaluation variants of each finished run in ``runs`` (a :func:`runs_table`), one row per
    (run, variant): plain, flip (features of the image and its mirror averaged), rerank (k-reciprocal
    re-ranking), flip+rerank; only the variants a run evaluated. The budget column tells apart runs of
    the same name at different budgets."""
    metrics = list(metrics)
    rows = []
    for _, run in runs.iterrows():
        for variant in VARIANTS:
            cols = [f"{variant}_{k}" for k in metrics]
            if all(c in run.index and pd.notna(run[c]) for c in cols):
                rows.append(
                    {
                        "run": run["run"],
                        "network": run["network"],
                        "budget": run.get("budget"),
                        "variant": variant,
                        **{k: run[c] for k, c in zip(metrics, cols, strict=True)},
                    }
                )
    return pd.DataFrame(rows, columns=["run", "network", "budget", "variant", *metrics])


def for_display(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` for reading on screen: commit SHAs cut to 7 characters, and the dataset and budget
    columns left out where every row shares them (say them once above the table)."""
    out = table.copy()
    if "git_sha" in out:
        out["git_sha"] = out["git_sha"].str[:7]
    shared = [c for c in ("dataset", "budget") if c in out and out[c].nunique(dropna=False) == 1]
    return out.drop(columns=shared)


def sort_networks(df: pd.DataFrame, column: str = "network") -> pd.DataFrame:
    """Rows in the order BoT, BDB, SEN, Deep Miner (others after, by name); with a ``budget`` column,
    budget by budget first, in the order the budgets first appear."""
    order = {n: i for i, n in enumerate(NETWORK_ORDER)}
    budgets = list(df["budget"]) if "budget" in df.columns else [""] * len(df)
    first = {b: i for i, b in enumerate(dict.fromkeys(budgets))}
    key = [(first[b], order.get(n, len(order)), str(n)) for b, n in zip(budgets, df[column], strict=True)]
    return df.iloc[sorted(range(len(df)), key=key.__getitem__)].reset_index(drop=True)


def gains_over_reference(
    runs: pd.DataFrame,
    reference: str = "bot",
    metrics: Iterable[str] = ("rank1", "mAP", "mINP"),
    *,
    by: str = "network",
    within: Iterable[str] = ("dataset", "budget"),
) -> pd.DataFrame:
    """``runs`` with ``gain_<metric>`` columns: each row's metric minus the ``reference`` rows' (the
    rows whose ``by`` column equals ``reference``) among the rows with the same ``within`` columns (same
    dataset and same budget), in percentage points; NaN where there is no such reference. Several
    reference runs (repeated seeds) are averaged, so every run is compared with the same number."""
    metrics, within = list(metrics), list(within)
    out = runs.copy()
    for k in metrics:
        out[f"gain_{k}"] = math.nan
    for _, idx in out.groupby(within, dropna=False).groups.items():
        group = out.loc[idx]
        ref = group[group[by] == reference]
        if ref.empty:
            continue
        for k in metrics:
            out.loc[idx, f"gain_{k}"] = group[k] - float(ref[k].mean())
    return out


def seed_spread(runs: pd.DataFrame, metrics: Iterable[str] = ("rank1", "mAP", "mINP")) -> pd.DataFrame:
    """Per network (and dataset, budget) with more than one seed: the runs, the mean, and the spread
    (max - min) of each metric, in points: the noise a single run's number carries."""
    metrics = list(metrics)
    rows = []
    for (network, dataset, budget), group in runs.groupby(["network", "dataset", "budget"], dropna=False):
        if group["seed"].nunique() < 2:
            continue
        row = {"network": network, "dataset": dataset, "budget": budget, "seeds": sorted(group["seed"])}
        for k in metrics:
            row[f"{k}_mean"] = float(group[k].mean())
            row[f"{k}_spread"] = float(group[k].max() - group[k].min())
        rows.append(row)
    return pd.DataFrame(rows)


def _seed_note(run: pd.Series) -> str:
    seed = run.get("seed")
    return "" if seed is None or pd.isna(seed) or seed == 0 else f", seed {int(seed)}"


def _budget_note(names: dict[str, str], run: pd.Series) -> str:
    return f", {names[run['budget']]}" if run["budget"] in names else ""


def as_published_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished runs in the schema of ``data/paper_results`` (paper, table, row, method, venue,
    backbone, dataset, rank1, mAP, score, notes) with ``paper = "ours"`` and the provenance (budget,
    git SHA, device, date, run folder) in ``notes``, so our rows can stand beside the published ones.
    When ``runs`` holds several budgets, each method names its own (:func:`budget_names`, brief):
    "SEN (ours, from ImageNet)"."""
    runs = runs[runs["status"] == "finished"]
    # several budgets: each method says its own, so that two SEN rows can be told apart
    names = budget_names(runs, brief=True) if runs["budget"].nunique() > 1 else {}
    rows = []
    for _, r in runs.iterrows():
        sha = (r["git_sha"] or "unknown")[:7] + (" (dirty)" if r["git_dirty"] else "")
        date = str(r["started"] or "")[:10]
        rows.append(
            {
                "paper": "ours",
                "table": "measured",
                "row": r["run"],
                "method": f"{run_label(r['recipe'], r['network'])} (ours{_budget_note(names, r)}"
                f"{_seed_note(r)})",
                "venue": "this repo",
                "backbone": BACKBONE_LABELS.get(r["backbone"], r["backbone"]),
                "dataset": r["dataset"],
                "rank1": r["rank1"],
                "mAP": r["mAP"],
                "score": round((r["rank1"] + r["mAP"]) / 2, 1),
                "notes": f"measured: {r['budget']}; git {sha}; {r['device']}; {date}; {r['folder']}",
            }
        )
    return pd.DataFrame(rows, columns=paper_results.COLUMNS)
