"""The results page: every finished run below a results folder, written once as Markdown from its files.

``python -m reidlib report results/market1501_cpu --out docs/results.md`` writes it; the README and
notebook 04 show its main table (:func:`results_table`) and link to it, and a test regenerates the page
and compares it with the committed copy, so no number on it is typed by hand. Sections:

- the runs: rank-1, mAP, mINP, the gain over the mean of the BoT runs, the flip and re-ranked variants,
  train time and commit (from ``metrics.json`` and ``params.json``);
- what each branch retrieves alone (``report/03_training/branch_metrics.csv``);
- which branch trains the backbone (the ``branch_grads`` entries of ``log.jsonl``): each branch's gradient
  norm on the shared blocks over the global branch's, and the cosine between the two, early and late;
- where the masks erase on real images (``report/02_erasing_masks/erased_where.csv``);
- the note kept beside each run (its ``README.md``: how and where it was trained, what was looked at).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reidlib.experiments.logs import branch_grads_table
from reidlib.experiments.runs import PAPER_LABELS, gains_over_reference, run_label, runs_table
from reidlib.training.runfolder import LOG, read_log
from reidlib.utils.fileio import atomic_write_text

RUN_NOTE = "README.md"
# The masks each network erases with (notebook 02 draws all of them on every network; a mask a network
# does not own is a stand-in there, and is left out of the results page).
OWN_MASKS = {"sen": ("M1", "M2"), "deep_miner": ("ErO Y2", "ErO Y3"), "bdb": ("BDB",)}


def _pair(a: float, b: float) -> str:
    return f"{a:.1f} / {b:.1f}"


def _signed_pair(a: float, b: float) -> str:
    return f"{a:+.1f} / {b:+.1f}"


def results_table(runs: pd.DataFrame, reference: str = "bot") -> pd.DataFrame:
    """One row per finished run: label, seed, rank-1, mAP, mINP (%), gain over the mean of the
    ``reference`` runs (rank-1 / mAP, points), the flip and re-ranked variants (rank-1 / mAP), train
    time (min) and the commit it ran at. ``runs`` is a :func:`reidlib.experiments.runs.runs_table`."""
    runs = gains_over_reference(_in_order(runs), reference, ("rank1", "mAP"))
    rows = []
    for _, r in runs.iterrows():
        is_ref = r["network"] == reference
        rows.append(
            {
                "network": run_label(r["recipe"], r["network"]),
                "seed": int(r["seed"]),
                "rank-1": f"{r['rank1']:.1f}",
                "mAP": f"{r['mAP']:.1f}",
                "mINP": f"{r['mINP']:.1f}",
                "gain over BoT (rank-1 / mAP)": "reference"
                if is_ref
                else _signed_pair(r.gain_rank1, r.gain_mAP),
                "flip (rank-1 / mAP)": _variant(r, "flip"),
                "re-ranked (rank-1 / mAP)": _variant(r, "rerank"),
                "train time": f"{r['train_time_s'] / 60:.0f} min",
                "git": f"`{str(r['git_sha'])[:7]}`",
            }
        )
    return pd.DataFrame(rows)


def _in_order(runs: pd.DataFrame) -> pd.DataFrame:
    """BoT, BDB, SEN, Deep Miner; within a network its first recipe, then the variants; then seeds."""
    order = {n: i for i, n in enumerate(PAPER_LABELS)}
    key = [
        (order.get(n, len(order)), run_label(rc, n) != PAPER_LABELS.get(n, n), rc, s)
        for n, rc, s in zip(runs["network"], runs["recipe"], runs["seed"], strict=True)
    ]
    return runs.iloc[sorted(range(len(runs)), key=key.__getitem__)].reset_index(drop=True)


def _variant(run: pd.Series, variant: str) -> str:
    r1, ap = run.get(f"{variant}_rank1"), run.get(f"{variant}_mAP")
    return "" if r1 is None or pd.isna(r1) else _pair(r1, ap)


def takeaway(runs: pd.DataFrame, reference: str = "bot") -> str:
    """One sentence from the numbers: which networks beat the reference on rank-1 and mAP (mean over
    their runs of each label), and which stay below it."""
    gains = gains_over_reference(runs, reference, ("rank1", "mAP"))
    gains = gains[gains["network"] != reference].assign(
        label=lambda d: [run_label(rc, n) for rc, n in zip(d["recipe"], d["network"], strict=True)]
    )
    mean = gains.groupby("label", sort=False)[["gain_rank1", "gain_mAP"]].mean()
    above = [k for k, g in mean.iterrows() if g.gain_rank1 > 0 and g.gain_mAP > 0]
    below = [k for k in mean.index if k not in above]
    name = PAPER_LABELS.get(reference, reference)
    said = f"Above {name} on both rank-1 and mAP: {'; '.join(above) or 'none'}."
    return said + (f" Below it on at least one: {'; '.join(below)}." if below else "")


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table of ``table``'s cells as they are (strings, numbers printed as given)."""
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def summary_block(root: str | Path) -> str:
    """The main table and the takeaway of :func:`results_page`, as the README shows them."""
    runs = runs_table(root)
    return markdown_table(results_table(runs)) + "\n\n" + takeaway(runs)


# ----------------------------------------------------------------------------- per-run tables


def branch_scores(folders: Sequence[Path], labels: Sequence[str]) -> pd.DataFrame:
    """Rank-1 / mAP of each branch's part of the embedding alone, and of all of it, per run."""
    rows = []
    for folder, label in zip(folders, labels, strict=True):
        path = folder / "report" / "03_training" / "branch_metrics.csv"
        if path.is_file():
            for b in pd.read_csv(path).itertuples(index=False):
                rows.append(
                    {
                        "run": label,
                        "branch": b.branch,
                        "dims": int(b.dims),
                        "rank-1 / mAP": _pair(b.rank1, b.mAP),
                    }
                )
    return pd.DataFrame(rows, columns=["run", "branch", "dims", "rank-1 / mAP"])


def _span(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.2f}" if math.isclose(lo, hi, abs_tol=0.005) else f"{lo:.2f} to {hi:.2f}"


def gradient_summary(folders: Sequence[Path], labels: Sequence[str]) -> pd.DataFrame:
    """Per run that logged ``branch_grads`` and per non-global branch: its gradient norm on the shared
    blocks over the global branch's (``ratio``) and the cosine of the two gradients, in epoch 1, over
    the first quarter of the epochs, and over the second half."""
    rows = []
    for folder, label in zip(folders, labels, strict=True):
        log = [r for r in read_log(folder / LOG) if "branch_grads" in r]
        if not log:
            continue
        table = branch_grads_table(log, source=str(folder / LOG))
        epochs = table.index
        early = table[epochs <= max(1, math.ceil(epochs.max() / 4))]
        late = table[epochs > epochs.max() / 2]
        for branch in table.columns.get_level_values("branch").unique():
            if branch == "global":
                continue
            ratio = table[(branch, "norm")] / table[("global", "norm")]
            rows.append(
                {
                    "run": label,
                    "branch": branch,
                    "ratio, epoch 1": _span(ratio.loc[epochs[:1]]),
                    f"ratio, epochs 1-{early.index.max()}": _span(ratio.loc[early.index]),
                    "cosine, early": _span(table.loc[early.index, (branch, "cosine")]),
                    f"ratio, epochs {late.index.min()}-{late.index.max()}": _span(ratio.loc[late.index]),
                    "cosine, late": _span(table.loc[late.index, (branch, "cosine")]),
                }
            )
    return pd.DataFrame(rows)


def mask_placement(folders: Sequence[Path], labels: Sequence[str], networks: Sequence[str]) -> pd.DataFrame:
    """Per run with a masks report and per mask: the column of the feature-map grid that takes the
    largest share of the erased cells, that share, and the border's share of the erased cells against
    the border's share of the grid (what random cells would give). Only the masks of each run's own
    network (:data:`OWN_MASKS`)."""
    rows = []
    for folder, label, network in zip(folders, labels, networks, strict=True):
        path = folder / "report" / "02_erasing_masks" / "erased_where.csv"
        if not path.is_file():
            continue
        where = pd.read_csv(path)
        for mask, m in where.groupby("mask", sort=False):
            if mask not in OWN_MASKS.get(network, ()):
                continue
            columns = m[m["axis"] == "column"]
            top = columns.loc[columns["erased_share"].idxmax()]
            border = m[m["axis"] == "border"].iloc[0]
            rows.append(
                {
                    "run": label,
                    "mask": mask,
                    "grid": m["grid"].iloc[0],
                    "most erased column": int(top["index"]),
                    "its share": f"{100 * top['erased_share']:.0f} %",
                    "at random": f"{100 * top['grid_share']:.0f} %",
                    "on the border": f"{100 * border['erased_share']:.0f} %",
                    "border at random": f"{100 * border['grid_share']:.0f} %",
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the page


def results_page(root: str | Path, *, shown_root: str | None = None, command: str = "") -> str:
    """The Markdown page of every finished run below ``root`` (``shown_root``: how to name ``root`` on
    the page, e.g. the path relative to the repository; ``command``: the command that writes it)."""
    runs = runs_table(root)
    if runs.empty:
        raise ValueError(
            f"{root}: no finished run below it (a run folder holds params.json and metrics.json)"
        )
    runs = _in_order(runs)
    folders = [Path(f) for f in runs["folder"]]
    labels = [
        run_label(rc, n) + ("" if s == 0 else f" (seed {s})")
        for rc, n, s in zip(runs["recipe"], runs["network"], runs["seed"], strict=True)
    ]
    name = shown_root or str(root)
    parts = [
        "# Results",
        "",
        f"<!-- written by `{command or f'python -m reidlib report {name}'}`: do not edit, regenerate -->",
        "",
        f"Every finished run below `{name}`, read from its files. Budget: {_budget(runs)}.",
        "Gains are in points over the mean of the BoT runs; flip and re-ranking are evaluation variants",
        "of the same networks.",
        "",
        markdown_table(results_table(runs)),
        "",
        takeaway(runs),
    ]
    for title, text, table in _sections(folders, labels, list(runs["network"])):
        if not table.empty:
            parts += ["", f"## {title}", "", text, "", markdown_table(table)]
    notes = [(label, folder / RUN_NOTE) for folder, label in zip(folders, labels, strict=True)]
    notes = [(label, path) for label, path in notes if path.is_file()]
    if notes:
        parts += ["", "## Notes on the runs", "", "Kept beside each run, as the `README.md` of its folder."]
        for label, path in notes:
            parts += ["", f"### {label}", "", path.read_text(encoding="utf-8").strip()]
    return "\n".join(parts) + "\n"


def _budget(runs: pd.DataFrame) -> str:
    budgets = sorted(set(runs["budget"]))
    return budgets[0] if len(budgets) == 1 else "; ".join(budgets)


def _sections(
    folders: list[Path], labels: list[str], networks: list[str]
) -> list[tuple[str, str, pd.DataFrame]]:
    return [
        (
            "What each branch retrieves alone",
            "Rank-1 / mAP of each branch's part of the test embedding on its own, and of all of it.",
            branch_scores(folders, labels),
        ),
        (
            "Which branch trains the backbone",
            "Each branch's gradient on the shared blocks over the global branch's (ratio) and the cosine "
            "between the two (`train.log_branch_grads`); early is the first quarter of the epochs, late "
            "the second half.",
            gradient_summary(folders, labels),
        ),
        (
            "Where the masks erase on Market-1501",
            "Over the query images of notebook 02's report: the grid column that takes the largest share "
            "of a mask's erased cells, and the share of erased cells on the grid's border, each against "
            "what cells picked at random would give.",
            mask_placement(folders, labels, networks),
        ),
    ]


def write_results_page(root: str | Path, out: str | Path, *, shown_root: str | None = None) -> Path:
    """Write :func:`results_page` to ``out`` (atomically) and return its path."""
    out = Path(out)
    name = shown_root or str(root)
    atomic_write_text(
        out, results_page(root, shown_root=name, command=f"python -m reidlib report {name} --out {out}")
    )
    return out
