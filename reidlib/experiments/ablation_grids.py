"""The papers' ablation grids as data: each table's rows, run at any scale.

A grid is a list of :class:`AblationRow`: the table it belongs to, the row label as printed in the
paper (and in ``data/paper_results``), a base recipe and overrides (dotted recipe key -> value). The
base recipe sets the BUDGET (data, input size, backbone, schedule: ``"paper"``, ``"cpu"`` or
``"smoke"``); the overrides state the whole NETWORK of the row (``model.name``, every ``model.options``
key, ``loss.terms``, the triplet margin), so the same grid runs on the paper's recipe, the CPU budget or
the synthetic smoke set. A row's loss terms come from its paper's recipe (``LOSS_RECIPES``): SEN eq. 10
without the terms of the branches that are off, Deep Miner eq. 2 on each branch of the row.

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
:mod:`reidlib.experiments.ablation_runner` trains or reads the rows,
:mod:`reidlib.experiments.paper_comparison` sets them
beside the published ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reidlib.config import LossTerm, Recipe, load_recipe
from reidlib.experiments.paper_results import PAPER_NAMES
from reidlib.models.attention import DEFAULT_CHAM_ACTIVATION
from reidlib.training.losses import GLOBAL_BRANCH

# Base recipe per paper and scale: "paper" = the paper's own setting, "cpu" = the shared CPU budget on
# the real Market-1501 (ResNet-18 from scratch, 128x64, 20 epochs), "smoke" = synthetic set, seconds.
BASE_RECIPES = {
    "sen": {"paper": "sen_market1501", "cpu": "sen_market1501_cpu", "smoke": "smoke"},
    "deep_miner": {"paper": "deep_miner_market1501", "cpu": "deep_miner_market1501_cpu", "smoke": "smoke"},
}
# The recipe whose loss.terms are each paper's loss (SEN eq. 10, Deep Miner eq. 2 per branch).
LOSS_RECIPES = {"sen": "sen_market1501", "deep_miner": "deep_miner_market1501"}


@dataclass(frozen=True)
class AblationRow:
    """One row of an ablation grid.

    ``row`` is the label printed in the paper (the ``method`` column of data/paper_results); ``recipe``
    the base recipe (budget); ``overrides`` the row's network as dotted recipe keys -> values. ``value``
    is the swept parameter of a sweep row (r2, tau). ``paper``/``paper_table``/``paper_row`` point at
    the published row with the same setting (None: not published), ``paper_dataset`` at the dataset the
    paper reports it on (None: the dataset we compare with).
    """

    table: str
    row: str
    recipe: str
    overrides: dict[str, Any] = field(default_factory=dict)
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

    def load(self, extra: Mapping[str, Any] | None = None) -> Recipe:
        """The row's recipe: base recipe, then the row's overrides, then ``extra`` (which wins)."""
        return load_recipe(self.recipe, {**self.overrides, **(extra or {})})


# ----------------------------------------------------------------------------- the network of a row


def paper_terms(paper: str) -> list[LossTerm]:
    """The loss terms of ``paper``'s recipe (``LOSS_RECIPES``)."""
    return load_recipe(LOSS_RECIPES[paper]).loss.terms


def _network(name: str, options: dict[str, Any], terms: list[LossTerm], margin: float | None) -> dict:
    # "model.options" whole: the row states every option, whatever the base recipe had.
    return {"model.name": name, "model.options": options, "loss.terms": terms, "loss.triplet_margin": margin}


def sen_overrides(
    *, use_bs: bool, use_ms: bool, r1: float = 0.1, r2: float = 0.25, p: float = 2
) -> dict[str, Any]:
    """SEN with the given branches; loss = eq. 10 (SEN's recipe) without the CE terms of the branches
    that are off; batch-hard triplet, margin 0.3 (SEN eq. 8)."""
    branches = {GLOBAL_BRANCH, *(["bs"] if use_bs else []), *(["ms"] if use_ms else [])}
    terms = [t for t in paper_terms("sen") if t.branch in branches]
    options = {"use_bs": use_bs, "use_ms": use_ms, "r1": r1, "r2": r2, "p": p}
    return _network("sen", options, terms, 0.3)


def deep_miner_branches(ie_blocks: Sequence[int], local: bool) -> list[str]:
    """Branch names of a Deep Miner configuration: global, ie_b<i> per IE block, local."""
    return [GLOBAL_BRANCH, *(f"ie_b{i}" for i in sorted(ie_blocks)), *(["local"] if local else [])]


def deep_miner_overrides(
    *, ie_blocks: Sequence[int], tau: float = 0.8, local: bool = False, attention: str = "none"
) -> dict[str, Any]:
    """Deep Miner with the given branches; loss = eq. 2 (CE + soft-margin triplet + center) per branch,
    the terms Deep Miner's recipe puts on its global branch, on every branch of the row.

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
    per_branch = [t for t in paper_terms("deep_miner") if t.branch == GLOBAL_BRANCH]
    branches = deep_miner_branches(ie_blocks, local)
    terms = [LossTerm(branch, t.kind, t.weight) for branch in branches for t in per_branch]
    return _network("deep_miner", options, terms, None)  # soft margin (eq. 5)


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
            sen_overrides(use_bs=bs, use_ms=ms),
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
                sen_overrides(use_bs=True, use_ms=True, r2=r2),
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
        deep_miner_overrides(**network),
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


def _shown(value: Any) -> str:
    """An option value as the recipe files write it: true, null, [2, 3]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


def rows_table(rows: Sequence[AblationRow]) -> pd.DataFrame:
    """The grid as a table: table, row, folder slug, base recipe, the network (model and options), the
    weighted loss terms, the triplet margin and the published row with the same setting."""
    out = []
    for r in rows:
        recipe = r.load()
        options = ", ".join(f"{k}={_shown(v)}" for k, v in recipe.model.options.items())
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
