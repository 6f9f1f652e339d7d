"""The results page is written from the run folders, never by hand: the committed page and the README's
table are what `python -m reidlib report` writes today, and its pieces hold on hand-made runs."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from reidlib.cli import main
from reidlib.experiments.report import (
    gradient_summary,
    markdown_table,
    results_page,
    results_table,
    summary_block,
    takeaway,
)
from reidlib.experiments.runs import run_label
from reidlib.utils.paths import repo_root

ROOT = repo_root()
RESULTS = ROOT / "results" / "market1501_cpu"
README_BLOCK = re.compile(r"<!-- results table: [^\n]*-->\n(.*?)\n<!-- end of results table -->", re.S)


def test_the_committed_results_page_is_what_the_command_writes():
    committed = (ROOT / "docs" / "results.md").read_text()
    fresh = results_page(
        RESULTS,
        shown_root="results/market1501_cpu",
        command="python -m reidlib report results/market1501_cpu --out docs/results.md",
    )
    assert committed == fresh, "docs/results.md is stale: run `make results-page` and commit it"


def test_the_readme_shows_the_pages_table():
    block = README_BLOCK.search((ROOT / "README.md").read_text())
    assert block, "README: the results table markers are missing"
    assert block.group(1).strip() == summary_block(RESULTS).strip()


def test_the_report_command_writes_a_page_and_refuses_an_empty_folder(tmp_path, capsys):
    out = tmp_path / "page.md"
    assert main(["report", str(RESULTS), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Results\n")
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no finished run below it" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("recipe", "network", "label"),
    [
        ("bot_market1501_cpu", "bot", "BoT"),
        ("bdb_ramp_market1501_cpu", "bdb", "Batch DropBlock, ramp"),
        ("deep_miner_ramp_market1501_cpu", "deep_miner", "Deep Miner, ramp"),
        ("sen_market1501", "sen", "SEN"),
        ("sen_smoke", "sen", "SEN, smoke"),
        ("my_recipe", "sen", "SEN"),
    ],
)
def test_run_labels(recipe, network, label):
    assert run_label(recipe, network) == label


def _runs(rows):
    base = {"dataset": "market1501", "budget": "b", "train_time_s": 600.0, "git_sha": "0123456789abc"}
    return pd.DataFrame([{**base, **r} for r in rows])


RUNS = _runs(
    [
        {
            "network": "bot",
            "recipe": "bot_market1501_cpu",
            "seed": 0,
            "rank1": 60.0,
            "mAP": 40.0,
            "mINP": 10.0,
        },
        {
            "network": "bot",
            "recipe": "bot_market1501_cpu",
            "seed": 1,
            "rank1": 62.0,
            "mAP": 42.0,
            "mINP": 11.0,
        },
        {
            "network": "sen",
            "recipe": "sen_market1501_cpu",
            "seed": 0,
            "rank1": 64.0,
            "mAP": 41.5,
            "mINP": 12.0,
        },
        {
            "network": "bdb",
            "recipe": "bdb_market1501_cpu",
            "seed": 0,
            "rank1": 50.0,
            "mAP": 30.0,
            "mINP": 8.0,
        },
    ]
)


def test_the_table_measures_gains_against_the_mean_of_the_reference_seeds():
    table = results_table(RUNS).set_index(["network", "seed"])
    # by hand: BoT mean 61.0 / 41.0
    assert table.loc[("SEN", 0), "gain over BoT (rank-1 / mAP)"] == "+3.0 / +0.5"
    assert table.loc[("Batch DropBlock", 0), "gain over BoT (rank-1 / mAP)"] == "-11.0 / -11.0"
    assert table.loc[("BoT", 1), "gain over BoT (rank-1 / mAP)"] == "reference"
    assert list(table.index.get_level_values(0)) == ["BoT", "BoT", "Batch DropBlock", "SEN"]
    assert table.loc[("SEN", 0), "train time"] == "10 min" and table.loc[("SEN", 0), "git"] == "`0123456`"
    assert (
        takeaway(RUNS) == "Above BoT on both rank-1 and mAP: SEN. Below it on at least one: Batch DropBlock."
    )


def test_markdown_table():
    text = markdown_table(pd.DataFrame({"a": ["x", "y"], "b": [1, 2]}))
    assert text == "| a | b |\n| --- | --- |\n| x | 1 |\n| y | 2 |"


def test_gradient_summary_by_hand(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = []
    for epoch in range(1, 9):  # the drop branch's norm is epoch x 0.5 the global's; cosine epoch / 10
        grads = {
            "global": {"norm": 2.0, "cosine": None},
            "drop": {"norm": float(epoch), "cosine": epoch / 10},
        }
        rows.append({"epoch": epoch, "branch_grads": grads})
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = gradient_summary([run], ["BDB"]).iloc[0]
    assert table["ratio, epoch 1"] == "0.50"
    assert table["ratio, epochs 1-2"] == "0.50 to 1.00"  # the first quarter of 8 epochs
    assert table["cosine, early"] == "0.10 to 0.20"
    assert table["ratio, epochs 5-8"] == "2.50 to 4.00"  # the second half
    assert table["cosine, late"] == "0.50 to 0.80"
    assert gradient_summary([tmp_path], ["none"]).empty  # no log: no row
