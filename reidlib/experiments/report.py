"""The results page: every run below one or more results folders, written once as Markdown from its files.

``python -m reidlib report results/market1501_cpu results/market1501_mnv2_cpu --out docs/results.md``
writes it (``make results-page``); the README shows its summary (:func:`summary_block`) and notebook 04
the same numbers, and a test regenerates the page and compares it with the committed copy, so no number
on it is typed by hand. Every run is compared with the BoT runs of its own budget (dataset, backbone and
its initialisation, input size, epochs, device; :func:`reidlib.experiments.runs.budget_label`): a
from-scratch ResNet-18 is never measured against an ImageNet-initialised BoT. Sections:

- the budgets side by side (when there are several): each network's rank-1 / mAP and its gain over the
  BoT of the same budget (:func:`budget_table`);
- one section per budget: rank-1, mAP, mINP, the gain over the mean of that budget's BoT runs (and how
  far apart its BoT seeds are), the flip and re-ranked variants, train time and commit (from
  ``metrics.json`` and ``params.json``), and the runs that have not finished (no ``metrics.json`` yet);
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

import numpy as np
import pandas as pd

from reidlib.experiments.logs import branch_grads_table
from reidlib.experiments.runs import (
    PAPER_LABELS,
    budget_names,
    gains_over_reference,
    run_label,
    runs_table,
)
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
    """Budget by budget (in the order they first appear), then BoT, BDB, SEN, Deep Miner; within a
    network its first recipe, then the variants; then seeds."""
    order = {n: i for i, n in enumerate(PAPER_LABELS)}
    budgets = {b: i for i, b in enumerate(dict.fromkeys(runs["budget"]))}
    key = [
        (budgets[b], order.get(n, len(order)), run_label(rc, n) != PAPER_LABELS.get(n, n), rc, s)
        for b, n, rc, s in zip(runs["budget"], runs["network"], runs["recipe"], runs["seed"], strict=True)
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
    name = PAPER_LABELS.get(reference, reference)
    if gains.empty:
        return f"Only {name} has finished here: no other network to set against it yet."
    mean = gains.groupby("label", sort=False)[["gain_rank1", "gain_mAP"]].mean()
    above = [k for k, g in mean.iterrows() if g.gain_rank1 > 0 and g.gain_mAP > 0]
    below = [k for k in mean.index if k not in above]
    said = f"Above {name} on both rank-1 and mAP: {'; '.join(above) or 'none'}."
    return said + (f" Below it on at least one: {'; '.join(below)}." if below else "")


def takeaways(runs: pd.DataFrame, reference: str = "bot") -> list[str]:
    """:func:`takeaway` of each budget of the finished ``runs``, each against its own reference; with
    several budgets each sentence starts with its budget's name ("MobileNetV2 from ImageNet: ...")."""
    names = budget_names(runs)
    groups = _in_order(runs).groupby("budget", sort=False)
    if len(names) == 1:
        return [takeaway(runs, reference)]
    return [f"{names[b]}: {takeaway(group, reference)}" for b, group in groups]


def reference_line(runs: pd.DataFrame, reference: str = "bot") -> str:
    """What the gains of one budget's ``runs`` are measured against: the mean of its BoT runs, and how
    far apart their seeds are (the noise one run's number carries), or that a second seed is missing."""
    ref = runs[runs["network"] == reference]
    name = PAPER_LABELS.get(reference, reference)
    if ref.empty:
        return f"No {name} run at this budget: no gain is measured."
    seeds = sorted(int(s) for s in ref["seed"])
    mean = _pair(ref["rank1"].mean(), ref["mAP"].mean())
    if len(ref) == 1:
        return (
            f"Reference: the one {name} run (seed {seeds[0]}), {mean}; a second seed would give the spread."
        )
    spread = _pair(ref["rank1"].max() - ref["rank1"].min(), ref["mAP"].max() - ref["mAP"].min())
    listed = ", ".join(map(str, seeds[:-1])) + f" and {seeds[-1]}"
    return (
        f"Reference: the mean of the {len(ref)} {name} runs (seeds {listed}), {mean}; from seed to seed "
        f"they move by {spread} points, the noise one run's number carries."
    )


def _label(run: pd.Series) -> str:
    seed = run["seed"]
    label = run_label(run["recipe"], run["network"])
    return label + ("" if not seed or pd.isna(seed) else f" (seed {int(seed)})")


def unfinished_line(runs: pd.DataFrame) -> str:
    """The runs of a :func:`runs_table` (``unfinished="include"``) that have no ``metrics.json`` yet, in one
    sentence ("" when every run finished): they are in no table until their last epoch is evaluated."""
    waiting = _in_order(runs[runs["status"] != "finished"])
    if waiting.empty:
        return ""
    said = [
        f"{_label(r)} ({int(r['epochs'])} of {int(r['planned_epochs'])} epochs logged)"
        for _, r in waiting.iterrows()
    ]
    return f"Not finished yet, so in no table: {'; '.join(said)}."


def budget_table(runs: pd.DataFrame, reference: str = "bot") -> pd.DataFrame:
    """The budgets side by side: one row per network label, one column per budget (its
    :func:`reidlib.experiments.runs.budget_names` name); a cell holds the label's rank-1 / mAP at that
    budget (the mean over its seeds) and its gain over the mean of that budget's ``reference`` runs;
    the reference's cell says how far apart its seeds are. ``runs`` is a :func:`runs_table` with
    ``unfinished="include"``: a run still training shows as not finished, a label never run as "not run"."""
    names = budget_names(_in_order(runs))
    done = gains_over_reference(runs[runs["status"] == "finished"], reference, ("rank1", "mAP"))
    ordered = _in_order(runs.assign(budget=""))  # the networks in one order whatever their budget
    labels = dict.fromkeys(map(run_label, ordered["recipe"], ordered["network"]))
    table = pd.DataFrame({"network": list(labels)})
    for budget, name in names.items():
        table[name] = [_budget_cell(runs, done, budget, label, reference) for label in labels]
    return table


def _budget_cell(runs: pd.DataFrame, done: pd.DataFrame, budget: str, label: str, reference: str) -> str:
    def of(df: pd.DataFrame) -> pd.DataFrame:
        mine = [run_label(rc, n) == label for rc, n in zip(df["recipe"], df["network"], strict=True)]
        return df[(df["budget"] == budget) & pd.Series(mine, index=df.index, dtype=bool)]

    finished, every = of(done), of(runs)
    if finished.empty:
        if every.empty:
            return "not run"
        r = every.iloc[0]
        return f"not finished ({int(r['epochs'])} of {int(r['planned_epochs'])} epochs)"
    value = _pair(finished["rank1"].mean(), finished["mAP"].mean())
    seeds = f"{len(finished)} seeds" if len(finished) > 1 else ""
    if (finished["network"] == reference).all():
        apart = _pair(np.ptp(finished["rank1"]), np.ptp(finished["mAP"])) if len(finished) > 1 else ""
        return f"{value}, reference" + (f" ({seeds}, {apart} apart)" if seeds else "")
    gain = finished[["gain_rank1", "gain_mAP"]].mean()
    gained = "no BoT" if gain.isna().any() else _signed_pair(gain["gain_rank1"], gain["gain_mAP"])
    return f"{value}, {gained}" + (f" ({seeds})" if seeds else "")


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table of ``table``'s cells as they are (strings, numbers printed as given)."""
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def summary_block(roots: str | Path | Sequence[str | Path]) -> str:
    """What the README shows of :func:`results_page`: for one budget its table and takeaway; for
    several, the budgets side by side (:func:`budget_table`) and each budget's takeaway."""
    every = read_roots(roots)
    runs = every[every["status"] == "finished"]
    if runs["budget"].nunique() <= 1:
        return markdown_table(results_table(runs)) + "\n\n" + takeaway(runs)
    return markdown_table(budget_table(every)) + "\n\n" + "\n".join(f"- {s}" for s in takeaways(runs))


def read_roots(roots: str | Path | Sequence[str | Path], shown: Sequence[str] | None = None) -> pd.DataFrame:
    """One :func:`runs_table` row per run below each of ``roots``, unfinished runs included (their
    ``status`` says so), with the column ``root``: the root it was found under, as ``shown`` names it."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    shown = list(shown) if shown is not None else [str(r) for r in roots]
    tables = [runs_table(r, unfinished="include").assign(root=s) for r, s in zip(roots, shown, strict=True)]
    return pd.concat(tables, ignore_index=True) if tables else runs_table([])


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
    the first quarter of the epochs (early), and over the second half (late); which epochs those are
    differs between budgets, so the table says them in its own column."""
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
                    "epochs, early / late": f"1-{early.index.max()} / {late.index.min()}-{late.index.max()}",
                    "ratio, early": _span(ratio.loc[early.index]),
                    "cosine, early": _span(table.loc[early.index, (branch, "cosine")]),
                    "ratio, late": _span(ratio.loc[late.index]),
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


def results_page(
    roots: str | Path | Sequence[str | Path], *, shown_roots: Sequence[str] | None = None, command: str = ""
) -> str:
    """The Markdown page of every run below ``roots`` (``shown_roots``: how to name them on the page,
    e.g. their paths relative to the repository; ``command``: the command that writes it). One section
    per budget; a run without ``metrics.json`` is listed as not finished, never read as a result."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    names_shown = list(shown_roots) if shown_roots is not None else [str(r) for r in roots]
    every = read_roots(roots, names_shown)
    runs = _in_order(every[every["status"] == "finished"])
    if runs.empty:
        below = " or ".join(names_shown)
        raise ValueError(
            f"{below}: no finished run below it (a run folder holds params.json and metrics.json)"
        )
    names = budget_names(every)
    several = len(names) > 1
    labels = [(f"{names[r['budget']]}: " if several else "") + _label(r) for _, r in runs.iterrows()]
    folders = [Path(f) for f in runs["folder"]]
    where = " and ".join(f"`{r}`" for r in names_shown)
    command = command or "python -m reidlib report " + " ".join(names_shown)
    parts = [
        "# Results",
        "",
        f"<!-- written by `{command}`: do not edit, regenerate -->",
        "",
        f"Every run below {where}, read from its files, one section per budget.",
        "Gains are in points over the mean of the BoT runs of the same budget; flip and re-ranking are",
        "evaluation variants of the same networks.",
    ]
    if several:
        parts += [
            "",
            "## The budgets side by side",
            "",
            "Rank-1 / mAP of each network (the mean over its seeds), then its gain over BoT of the same",
            "budget.",
            "",
            markdown_table(budget_table(every)),
        ]
    for budget, group in every.groupby("budget", sort=False):
        parts += ["", f"## {budget}", "", _budget_intro(group)]
        done = _in_order(group[group["status"] == "finished"])
        if len(done):
            parts += ["", markdown_table(results_table(done)), "", takeaway(done)]
        if unfinished_line(group):
            parts += ["", unfinished_line(group)]
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


def _budget_intro(group: pd.DataFrame) -> str:
    roots = " and ".join(f"`{r}`" for r in dict.fromkeys(group["root"]))
    done = group[group["status"] == "finished"]
    said = reference_line(done) if len(done) else "No finished run yet."
    return f"The runs below {roots}. {said}"


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


def write_results_page(
    roots: str | Path | Sequence[str | Path], out: str | Path, *, shown_roots: Sequence[str] | None = None
) -> Path:
    """Write :func:`results_page` to ``out`` (atomically) and return its path."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    out = Path(out)
    names = list(shown_roots) if shown_roots is not None else [str(r) for r in roots]
    command = f"python -m reidlib report {' '.join(names)} --out {out}"
    atomic_write_text(out, results_page(roots, shown_roots=names, command=command))
    return out
