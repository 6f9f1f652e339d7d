"""The papers' ablation grids as data, run at any scale, and set beside the published rows.

A grid is a list of :class:`AblationRow`: the table it belongs to, the row label as printed in the
paper (and in ``data/paper_results``), a base recipe and ``key=value`` overrides. The base recipe sets
the BUDGET (data, input size, backbone, schedule: ``"paper"``, ``"cpu"`` or ``"smoke"``); the overrides
state the whole NETWORK of the row (``model.name``, every ``model.options`` key, ``loss.terms``, the
triplet margin), so the same grid runs on the paper's recipe, the CPU budget or the synthetic smoke set.

Grids (``GRIDS``):

- ``sen_table2``: SEN Table 2, Baseline / +BS / +MS / +BS+MS (``use_bs``, ``use_ms``; the BS and MS CE
  terms of eq. 10 are dropped with their branches);
- ``sen_r2``: SEN Fig. 9, the MS erasing ratio r2 (the paper's sweep is on CUHK03(L));
- ``deep_miner_table1``: one IE branch after B1, B2 or B3 vs the global branch alone;
- ``deep_miner_table2``: several IE branches;
- ``deep_miner_table3``: the local branch (IE after B2 and B3);
- ``deep_miner_table4``: attention none / SAM / CHAM / SAM & CHAM (IE after B2, B3 + local);
- ``deep_miner_tau``: Deep Miner Fig. 7, the ErO threshold tau with one IE branch after B3.

Deep Miner's Tables 1-3 and Fig. 7 have no attention and no local branch unless stated (Table 4's "No"
row equals Table 3's "Yes" row, 89.4 / 95.2, and Table 1's baseline has 84.7 mAP, Fig. 7's caption).

:func:`run_grid` trains each row into ``root/<table>/<row slug>`` unless its ``metrics.json`` exists
(then it is read), reusing one run for rows whose recipes are identical (Deep Miner Table 2 "After
block 3" is Table 1's); :func:`compare_with_paper` puts the published numbers beside ours.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reidlib import runfolder
from reidlib.config import Recipe, load_recipe
from reidlib.losses import LossTerm, deep_miner_terms, sen_terms
from reidlib.models.attention import DEFAULT_CHAM_ACTIVATION
from reidlib.runfolder import is_finished, read_params
from reidlib.runs import METRICS, budget_label, read_run

# Base recipe per paper and scale: "paper" = the paper's own setting, "cpu" = the shared CPU budget on
# the real Market-1501 (ResNet-18 from scratch, 128x64, 20 epochs), "smoke" = synthetic set, seconds.
BASE_RECIPES = {
    "sen": {"paper": "sen_market1501", "cpu": "sen_market1501_cpu", "smoke": "smoke"},
    "deep_miner": {"paper": "deep_miner_market1501", "cpu": "deep_miner_market1501_cpu", "smoke": "smoke"},
}
PAPER_NAMES = {"sen": "SEN", "deep_miner": "Deep Miner"}
PAPER_DATASETS = ("market1501", "dukemtmc", "cuhk03_labeled", "cuhk03_detected", "msmt17")

# Recipe keys that say how a run was executed, not what was trained: ignored when deciding whether an
# existing run folder holds the row asked for. The run folder's execution keys, and the data root (the
# same data lives under another path on another machine).
EXECUTION_KEYS = (*runfolder.EXECUTION_KEYS, ("data", "root"))


class StaleRunError(ValueError):
    """A grid row's run folder holds a run of a different recipe."""


@dataclass(frozen=True)
class AblationRow:
    """One row of an ablation grid.

    ``row`` is the label printed in the paper (the ``method`` column of data/paper_results); ``recipe``
    the base recipe (budget); ``overrides`` the row's network as ``key=value`` strings. ``value`` is the
    swept parameter of a sweep row (r2, tau). ``paper``/``paper_table``/``paper_row`` point at the
    published row with the same setting (None: not published), ``paper_dataset`` at the dataset the
    paper reports it on (None: the dataset we compare with).
    """

    table: str
    row: str
    recipe: str
    overrides: tuple[str, ...] = ()
    value: float | None = None
    paper: str | None = None
    paper_table: int | None = None
    paper_row: str | None = None
    paper_dataset: str | None = None

    @property
    def slug(self) -> str:
        """The row's folder name: ``"+BS+MS"`` -> ``"plus-bs-plus-ms"``, ``"SAM & CHAM"`` ->
        ``"sam-and-cham"``."""
        text = self.row.lower().replace("&", " and ").replace("+", " plus ")
        return re.sub(r"[^a-z0-9.]+", "-", text).strip("-")

    def load(self, extra_overrides: Sequence[str] = ()) -> Recipe:
        """The row's recipe: base recipe, then the row's overrides, then ``extra_overrides``."""
        return load_recipe(self.recipe, [*self.overrides, *extra_overrides])


# ----------------------------------------------------------------------------- overrides of a network


def _yaml(value: Any) -> str:
    """A Python value as a YAML flow literal (what config.parse_override reads back)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def override_strings(values: dict[str, Any]) -> list[str]:
    """``{"optim.epochs": 2, "data.dataset": "dukemtmc"}`` -> ``["optim.epochs=2", "data.dataset=dukemtmc"]``
    (notebook parameters hold overrides as a mapping: papermill cannot read "=" inside a parameter line)."""
    if not isinstance(values, dict):
        raise ValueError(f"overrides: expected a mapping of recipe keys to values, got {values!r}")
    return [f"{key}={_yaml(value)}" for key, value in values.items()]


def terms_override(terms: Iterable[LossTerm]) -> str:
    """``loss.terms=[{branch: global, kind: ce, weight: 1.0}, ...]``."""
    items = [f"{{branch: {t.branch}, kind: {t.kind}, weight: {t.weight!r}}}" for t in terms]
    return "loss.terms=[" + ", ".join(items) + "]"


def _options(name: str, options: dict[str, Any]) -> list[str]:
    # "model.options={}" first: the row states every option, whatever the base recipe had.
    return [
        f"model.name={name}",
        "model.options={}",
        *(f"model.options.{k}={_yaml(v)}" for k, v in options.items()),
    ]


def sen_overrides(
    *, use_bs: bool, use_ms: bool, r1: float = 0.1, r2: float = 0.25, p: float = 2
) -> list[str]:
    """SEN with the given branches; loss = eq. 10 without the CE terms of the branches that are off."""
    return [
        *_options("sen", {"use_bs": use_bs, "use_ms": use_ms, "r1": r1, "r2": r2, "p": p}),
        terms_override(sen_terms(use_bs=use_bs, use_ms=use_ms)),
        "loss.triplet_margin=0.3",  # batch-hard triplet, margin 0.3 (SEN eq. 8)
    ]


def deep_miner_branches(ie_blocks: Sequence[int], local: bool) -> list[str]:
    """Branch names of a Deep Miner configuration: global, ie_b<i> per IE block, local."""
    return ["global", *(f"ie_b{i}" for i in sorted(ie_blocks)), *(["local"] if local else [])]


def deep_miner_overrides(
    *, ie_blocks: Sequence[int], tau: float = 0.8, local: bool = False, attention: str = "none"
) -> list[str]:
    """Deep Miner with the given branches; loss = eq. 2 (CE + soft-margin triplet + center) per branch.

    With CHAM, its reading is stated (the network's default, SE's sigmoid), so that a row never takes a
    run trained before the option existed (softmax over channels) for its own."""
    options = {
        "ie_blocks": list(ie_blocks),
        "tau": tau,
        "local": local,
        "num_stripes": 4,
        "attention": attention,
    }
    if "cham" in attention.split("+"):
        options["cham_activation"] = DEFAULT_CHAM_ACTIVATION
    return [
        *_options("deep_miner", options),
        terms_override(deep_miner_terms(deep_miner_branches(ie_blocks, local))),
        "loss.triplet_margin=null",  # soft margin (eq. 5)
    ]


def base_recipe(paper: str, base: str) -> str:
    """``base`` is a scale (paper, cpu, smoke) mapped to ``paper``'s recipe, or a recipe name/path."""
    return BASE_RECIPES[paper].get(base, base)


# ----------------------------------------------------------------------------- the grids


def sen_table2(base: str = "smoke") -> list[AblationRow]:
    """SEN Table 2: the global branch alone (BoT's network), +BS, +MS, +BS+MS (r1 0.1, r2 0.25)."""
    recipe = base_recipe("sen", base)
    settings = [
        ("Baseline", False, False),
        ("+BS", True, False),
        ("+MS", False, True),
        ("+BS+MS", True, True),
    ]
    return [
        AblationRow(
            "sen_table2",
            label,
            recipe,
            tuple(sen_overrides(use_bs=bs, use_ms=ms)),
            paper="sen",
            paper_table=2,
            paper_row=label,
        )
        for label, bs, ms in settings
    ]


def sen_r2_sweep(
    base: str = "smoke", r2_values: Sequence[float] = (0.15, 0.2, 0.25, 0.3, 0.35)
) -> list[AblationRow]:
    """SEN Fig. 9: the full SEN with r1 = 0.1 and r2 varied. The figure's x values are not in the text;
    the defaults bracket the paper's optimum r2 = 0.25, the one published number (Table 2 "+BS+MS",
    CUHK03 labeled: 77.0 rank-1 / 74.5 mAP)."""
    recipe = base_recipe("sen", base)
    rows = []
    for r2 in r2_values:
        ref = math.isclose(r2, 0.25)
        rows.append(
            AblationRow(
                "sen_r2",
                f"r2={r2:g}",
                recipe,
                tuple(sen_overrides(use_bs=True, use_ms=True, r2=r2)),
                value=r2,
                paper="sen" if ref else None,
                paper_table=2 if ref else None,
                paper_row="+BS+MS" if ref else None,
                paper_dataset="cuhk03_labeled" if ref else None,
            )
        )
    return rows


DM_BASELINE = "baseline (only global branch)"  # Deep Miner Table 1's first row, as printed


def _dm_row(
    table: str,
    label: str,
    recipe: str,
    *,
    paper_table: int | None,
    paper_row: str | None = None,
    value: float | None = None,
    **network: Any,
) -> AblationRow:
    return AblationRow(
        table,
        label,
        recipe,
        tuple(deep_miner_overrides(**network)),
        value=value,
        paper="deep_miner" if paper_table else None,
        paper_table=paper_table,
        paper_row=(paper_row or label) if paper_table else None,
        paper_dataset="market1501" if paper_table else None,
    )


def deep_miner_table1(base: str = "smoke") -> list[AblationRow]:
    """Deep Miner Table 1: the global branch alone, then one IE branch after B1, B2 or B3 (tau 0.8)."""
    recipe = base_recipe("deep_miner", base)
    return [
        _dm_row("deep_miner_table1", DM_BASELINE, recipe, paper_table=1, ie_blocks=[]),
        *(
            _dm_row("deep_miner_table1", f"After block {i}", recipe, paper_table=1, ie_blocks=[i])
            for i in (1, 2, 3)
        ),
    ]


def deep_miner_table2(base: str = "smoke") -> list[AblationRow]:
    """Deep Miner Table 2: IE branches after B3; B2 and B3; B1 and B3; B1, B2 and B3 (tau 0.8)."""
    recipe = base_recipe("deep_miner", base)
    settings = [
        ("After block 3", [3]),
        ("After blocks 2 and 3", [2, 3]),
        ("After blocks 1 and 3", [1, 3]),
        ("After blocks 1,2,3", [1, 2, 3]),
    ]
    return [
        _dm_row("deep_miner_table2", label, recipe, paper_table=2, ie_blocks=blocks)
        for label, blocks in settings
    ]


def deep_miner_table3(base: str = "smoke") -> list[AblationRow]:
    """Deep Miner Table 3: the local branch (4 stripes) off / on, IE branches after B2 and B3."""
    recipe = base_recipe("deep_miner", base)
    return [
        _dm_row("deep_miner_table3", label, recipe, paper_table=3, ie_blocks=[2, 3], local=local)
        for label, local in (("No", False), ("Yes", True))
    ]


def deep_miner_table4(base: str = "smoke") -> list[AblationRow]:
    """Deep Miner Table 4: attention after B2 and B3 none / SAM / CHAM / CHAM(SAM(.)), with IE
    branches after B2 and B3 and the local branch ("SAM & CHAM" is the full Deep Miner)."""
    recipe = base_recipe("deep_miner", base)
    settings = [("No", "none"), ("SAM", "sam"), ("CHAM", "cham"), ("SAM & CHAM", "sam+cham")]
    return [
        _dm_row(
            "deep_miner_table4", label, recipe, paper_table=4, ie_blocks=[2, 3], local=True, attention=att
        )
        for label, att in settings
    ]


def deep_miner_tau_sweep(
    base: str = "smoke", taus: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9)
) -> list[AblationRow]:
    """Deep Miner Fig. 7: one IE branch after B3, tau varied, and the global-branch baseline. Only
    tau = 0.8 (= Table 1 "After block 3", 94.7 / 88.0) and the baseline (94.2 / 84.7) are in the
    text; the figure's other x values are not, the defaults bracket 0.8."""
    recipe = base_recipe("deep_miner", base)
    rows = [_dm_row("deep_miner_tau", DM_BASELINE, recipe, paper_table=1, ie_blocks=[])]
    for tau in taus:
        ref = math.isclose(tau, 0.8)
        rows.append(
            _dm_row(
                "deep_miner_tau",
                f"tau={tau:g}",
                recipe,
                paper_table=1 if ref else None,
                paper_row="After block 3",
                value=tau,
                ie_blocks=[3],
                tau=tau,
            )
        )
    return rows


GRIDS: dict[str, Callable[[str], list[AblationRow]]] = {
    "sen_table2": sen_table2,
    "sen_r2": sen_r2_sweep,
    "deep_miner_table1": deep_miner_table1,
    "deep_miner_table2": deep_miner_table2,
    "deep_miner_table3": deep_miner_table3,
    "deep_miner_table4": deep_miner_table4,
    "deep_miner_tau": deep_miner_tau_sweep,
}
GRID_TITLES = {
    "sen_table2": "SEN Table 2: background (BS) and max-activation (MS) suppression",
    "sen_r2": "SEN Fig. 9: MS erasing ratio r2",
    "deep_miner_table1": "Deep Miner Table 1: position of one IE branch",
    "deep_miner_table2": "Deep Miner Table 2: multiple IE branches",
    "deep_miner_table3": "Deep Miner Table 3: local branch (IE after B2, B3)",
    "deep_miner_table4": "Deep Miner Table 4: attention module (IE after B2, B3 + local)",
    "deep_miner_tau": "Deep Miner Fig. 7: ErO threshold tau (one IE branch after B3)",
}
SWEEPS = {"sen_r2": "r2", "deep_miner_tau": "tau"}  # grid -> swept parameter


def grid_rows(names: Sequence[str], base: str = "smoke") -> list[AblationRow]:
    """The rows of the named grids (``GRIDS``) at scale ``base``, in order."""
    unknown = [n for n in names if n not in GRIDS]
    if unknown:
        raise ValueError(f"grids: unknown {unknown}; known grids: {list(GRIDS)}")
    return [row for name in names for row in GRIDS[name](base)]


def rows_table(rows: Sequence[AblationRow]) -> pd.DataFrame:
    """The grid as a table: table, row, folder slug, base recipe, the network (model and options), the
    weighted loss terms, the triplet margin and the published row with the same setting."""
    out = []
    for r in rows:
        recipe = r.load()
        options = ", ".join(f"{k}={_yaml(v)}" for k, v in recipe.model.options.items())
        out.append(
            {
                "table": r.table,
                "row": r.row,
                "slug": r.slug,
                "recipe": r.recipe,
                "network": f"{recipe.model.name}({options})",
                "loss terms": " + ".join(f"{t.weight:g} {t.name}" for t in recipe.loss.terms),
                "triplet margin": "soft"
                if recipe.loss.triplet_margin is None
                else recipe.loss.triplet_margin,
                "paper row": f"{PAPER_NAMES[r.paper]} Table {r.paper_table}: {r.paper_row}"
                if r.paper
                else "",
            }
        )
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- running a grid


def _drop(d: dict[str, Any], keys: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    d = json.loads(json.dumps(d))
    for key in keys:
        node = d
        for k in key[:-1]:
            node = node.get(k, {})
        node.pop(key[-1], None)
    return d


def recipe_key(recipe: Recipe | dict[str, Any]) -> str:
    """What was trained, as a string: the recipe without its ``EXECUTION_KEYS``."""
    values = recipe.to_dict() if isinstance(recipe, Recipe) else recipe
    return json.dumps(_drop(values, EXECUTION_KEYS), sort_keys=True)


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if a == b else [f"{prefix}: {a!r} (folder) vs {b!r} (asked)"]


def _finished_runs(root: Path) -> dict[str, Path]:
    """recipe key -> run folder, for the finished runs already below ``root``."""
    found = {}
    for params in sorted(root.glob(f"*/*/{runfolder.PARAMS}")):
        if is_finished(params.parent):
            found.setdefault(recipe_key(read_params(params.parent)["recipe"]), params.parent)
    return found


def _result_row(row: AblationRow, recipe: Recipe, folder: Path | None, status: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "table": row.table,
        "row": row.row,
        "value": row.value,
        "source": "ours",
        "dataset": recipe.data.dataset,
        "budget": budget_label(recipe.to_dict()),
        "status": status,
        "run_dir": str(folder) if folder else "",
        "paper": row.paper,
        "paper_table": row.paper_table,
        "paper_row": row.paper_row,
        "paper_dataset": row.paper_dataset,
    }
    metrics = {}
    if folder is not None and is_finished(folder):
        run = read_run(folder)
        metrics, env = run["metrics"], run["params"].get("environment", {})
        out.update(
            git_sha=env.get("git_sha"), device=env.get("device"), train_time_s=metrics.get("train_time_s")
        )
    out.update({k: metrics.get(k, math.nan) for k in METRICS})
    return out


def run_grid(
    rows: Sequence[AblationRow],
    root: str | Path,
    *,
    extra_overrides: Sequence[str] = (),
    data_root: str | Path | None = None,
    train: bool = True,
    verbose: bool = True,
) -> pd.DataFrame:
    """Our numbers for each row, one DataFrame row each (rank1/5/10, mAP, mINP, budget, status).

    A row's run folder is ``root/<table>/<slug>``. When it holds a metrics.json, its numbers are read
    (after checking that its params.json recipe is the row's, else :class:`StaleRunError`); when
    another finished run below ``root`` trained the very same recipe, that run is reused; otherwise the
    row is trained with :func:`reidlib.engine.train` (resumed when a last.pt is there) if ``train``,
    and skipped with status "missing" if not.
    """
    from reidlib import engine  # torch-heavy import only when a grid runs

    root = Path(root)
    finished = _finished_runs(root) if root.is_dir() else {}
    results = []
    for row in rows:
        recipe = row.load(extra_overrides)
        key = recipe_key(recipe)
        folder = root / row.table / row.slug
        start = time.perf_counter()
        if is_finished(folder):
            saved = read_run(folder)["params"]["recipe"]
            if recipe_key(saved) != key:
                diff = _differences(_drop(saved, EXECUTION_KEYS), _drop(recipe.to_dict(), EXECUTION_KEYS))
                raise StaleRunError(
                    f"{folder}: holds a run of another recipe ({'; '.join(diff[:4])}); delete the folder "
                    "or choose another runs_root"
                )
            status = "read"
        elif key in finished:
            folder, status = finished[key], f"same run as {finished[key].parent.name}/{finished[key].name}"
        elif train:
            resume = (folder / runfolder.CHECKPOINT).is_file()
            engine.train(recipe, folder, data_root=data_root, resume=resume)
            status = f"trained ({time.perf_counter() - start:.0f} s)"
        else:
            folder, status = None, "missing (train=False)"
        if folder is not None and is_finished(folder):
            finished.setdefault(key, folder)
        results.append(_result_row(row, recipe, folder, status))
        if verbose:
            r = results[-1]
            print(f"{row.table}/{row.row}: {status}; rank-1 {r['rank1']:.1f}, mAP {r['mAP']:.1f}")
    return pd.DataFrame(results, columns=RESULT_COLUMNS)


RESULT_COLUMNS = [
    "table",
    "row",
    "value",
    "source",
    "dataset",
    "status",
    *METRICS,
    "budget",
    "run_dir",
    "git_sha",
    "device",
    "train_time_s",
    "paper",
    "paper_table",
    "paper_row",
    "paper_dataset",
]


# ----------------------------------------------------------------------------- beside the papers


def _norm(text: Any) -> str:
    """Row labels compared case- and spacing-insensitively ("Sam & Cham" == "SAM & CHAM")."""
    return re.sub(r"\s+", " ", str(text)).strip().casefold()


def _table_number(value: Any) -> int | None:
    digits = re.findall(r"\d+", str(value))
    return int(digits[-1]) if digits else None


def _paper_key(value: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(value).casefold()).strip("_")


def compare_with_paper(
    ours: pd.DataFrame, paper: pd.DataFrame, *, dataset: str | None = None
) -> pd.DataFrame:
    """Our grid results (``run_grid``) and the published rows with the same setting, one long table:
    table, row, value, source ("paper" or "ours"), dataset, rank1, mAP, mINP, budget, reference.

    ``paper`` holds rows of data/paper_results (columns paper, table, method, dataset, rank1, mAP).
    The published dataset of a row is its ``paper_dataset`` when set, else ``dataset``, else our
    dataset when the papers report it, else market1501. A row whose published label is not in
    ``paper`` raises ValueError naming the table and the labels it has.
    """
    missing_cols = {"paper", "table", "method", "dataset", "rank1", "mAP"} - set(paper.columns)
    if missing_cols:
        raise ValueError(f"paper rows: missing column(s) {sorted(missing_cols)}")
    keys = paper.assign(
        _paper=paper["paper"].map(_paper_key),
        _table=paper["table"].map(_table_number),
        _label=paper["method"].map(_norm),
    )
    out = []
    for _, r in ours.iterrows():
        if r["paper"] and isinstance(r["paper"], str):
            ds = r["paper_dataset"] if isinstance(r["paper_dataset"], str) else dataset
            if not ds:
                ds = r["dataset"] if r["dataset"] in PAPER_DATASETS else "market1501"
            number = int(r["paper_table"])
            table = keys[(keys["_paper"] == r["paper"]) & (keys["_table"] == number)]
            hit = table[(table["_label"] == _norm(r["paper_row"])) & (table["dataset"] == ds)]
            if hit.empty:
                raise ValueError(
                    f"{r['paper']} Table {number}: no published row {r['paper_row']!r} on {ds}; "
                    f"the table has {sorted(set(table['method']))} on {sorted(set(table['dataset']))}"
                )
            p = hit.iloc[0]
            out.append(
                {
                    "table": r["table"],
                    "row": r["row"],
                    "value": r["value"],
                    "source": "paper",
                    "dataset": ds,
                    "rank1": p["rank1"],
                    "mAP": p["mAP"],
                    "mINP": math.nan,
                    "budget": "published",
                    "reference": f"{PAPER_NAMES.get(r['paper'], r['paper'])} Table {number}: {p['method']}",
                }
            )
        out.append(
            {
                "table": r["table"],
                "row": r["row"],
                "value": r["value"],
                "source": "ours",
                "dataset": r["dataset"],
                "rank1": r["rank1"],
                "mAP": r["mAP"],
                "mINP": r["mINP"],
                "budget": r["budget"],
                "reference": r["run_dir"],
            }
        )
    columns = ["table", "row", "value", "source", "dataset", "rank1", "mAP", "mINP", "budget", "reference"]
    return pd.DataFrame(out, columns=columns)


def gains_over_first(compare: pd.DataFrame, metrics: Sequence[str] = ("rank1", "mAP")) -> pd.DataFrame:
    """``compare`` with ``gain_<metric>`` columns: each row minus the first row of its (table, source)
    group, in percentage points (the first row of every table grid is its reference: Baseline, the
    global branch alone, "After block 3", "No")."""
    out = compare.copy()
    for k in metrics:
        first = out.groupby(["table", "source"], sort=False)[k].transform(
            lambda s: s.iloc[0]
        )  # NaN stays NaN
        out[f"gain_{k}"] = out[k] - first
    return out
