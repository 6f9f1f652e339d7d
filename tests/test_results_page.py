"""The results page is written from the run folders, never by hand: the committed page and the README's
table are what `python -m reidlib report` writes today, and its pieces hold on hand-made runs."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from reidlib.cli import main
from reidlib.config import load_recipe
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
# what `make results-page` reads: the from-scratch runs and the ImageNet-initialised ones
PAGE_ROOTS = ["results/market1501_cpu", "results/market1501_mnv2_cpu"]
README_BLOCK = re.compile(r"<!-- results table: [^\n]*-->\n(.*?)\n<!-- end of results table -->", re.S)


def test_the_committed_results_page_is_what_the_command_writes():
    committed = (ROOT / "docs" / "results.md").read_text()
    fresh = results_page(
        [ROOT / r for r in PAGE_ROOTS],
        shown_roots=PAGE_ROOTS,
        command=f"python -m reidlib report {' '.join(PAGE_ROOTS)} --out docs/results.md",
    )
    assert committed == fresh, "docs/results.md is stale: run `make results-page` and commit it"


def test_the_readme_shows_the_pages_table():
    block = README_BLOCK.search((ROOT / "README.md").read_text())
    assert block, "README: the results table markers are missing"
    assert block.group(1).strip() == summary_block([ROOT / r for r in PAGE_ROOTS]).strip()


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
    only_bot = RUNS[RUNS["network"] == "bot"]
    assert takeaway(only_bot) == "Only BoT has finished here: no other network to set against it yet."


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
    assert table["epochs, early / late"] == "1-2 / 5-8"  # the first quarter and the second half of 8
    assert table["ratio, early"] == "0.50 to 1.00"
    assert table["cosine, early"] == "0.10 to 0.20"
    assert table["ratio, late"] == "2.50 to 4.00"
    assert table["cosine, late"] == "0.50 to 0.80"
    assert gradient_summary([tmp_path], ["none"]).empty  # no log: no row


# ----------------------------------------------------------------------------- several budgets


def _run_folder(folder, recipe, seed, numbers=None, *, epochs_logged=12):
    """A run folder as the engine writes it: params.json, log.jsonl and, once finished, metrics.json
    (``numbers``: rank-1, mAP, mINP)."""
    folder.mkdir(parents=True)
    params = {
        "recipe": load_recipe(recipe).to_dict(),
        "seed": seed,
        "dataset": {"name": "market1501"},
        "environment": {"git_sha": "abcdef0123", "git_dirty": False, "device": "cpu: 2 cores"},
    }
    (folder / "params.json").write_text(json.dumps(params))
    log = [{"epoch": e, "epoch_time_s": 60.0} for e in range(1, epochs_logged + 1)]
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    if numbers is not None:
        rank1, mAP, mINP = numbers
        metrics = {"rank1": rank1, "rank5": 90.0, "rank10": 95.0, "mAP": mAP, "mINP": mINP}
        (folder / "metrics.json").write_text(json.dumps({**metrics, "train_time_s": 600.0}))
    return folder


@pytest.fixture
def two_budgets(tmp_path):
    """From-scratch ResNet-18 runs under scratch/, ImageNet MobileNetV2 runs under imagenet/ (its Deep
    Miner still training: no metrics.json)."""
    scratch, imagenet = tmp_path / "scratch", tmp_path / "imagenet"
    _run_folder(scratch / "bot", "bot_market1501_cpu", 0, (60.0, 40.0, 10.0))
    _run_folder(scratch / "bot_seed1", "bot_market1501_cpu", 1, (62.0, 42.0, 11.0))
    _run_folder(scratch / "sen", "sen_market1501_cpu", 0, (64.0, 41.5, 12.0))
    _run_folder(imagenet / "bot", "bot_market1501_mnv2_cpu", 0, (70.0, 50.0, 20.0))
    _run_folder(imagenet / "bot_seed1", "bot_market1501_mnv2_cpu", 1, (71.0, 52.0, 21.0))
    _run_folder(imagenet / "sen", "sen_market1501_mnv2_cpu", 0, (72.0, 50.0, 22.0))
    _run_folder(imagenet / "bdb", "bdb_market1501_mnv2_cpu", 0, (69.0, 49.0, 18.0))
    _run_folder(imagenet / "deep_miner", "deep_miner_market1501_mnv2_cpu", 0, None, epochs_logged=3)
    return scratch, imagenet


def _section(page, heading):
    return page.split(f"\n## {heading}\n")[1].split("\n## ")[0]


def _rows(markdown):
    """The cells of a Markdown table's body rows, keyed by the first cell."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    return {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])
    }


SCRATCH = "ResNet-18, from scratch, 128x64, 20 epochs, CPU"
IMAGENET = "MobileNetV2, ImageNet-pretrained, 128x64, 12 epochs, CPU"


def test_each_budget_is_measured_against_its_own_bot(two_budgets):
    page = results_page(list(two_budgets), shown_roots=["scratch", "imagenet"])
    # by hand: scratch BoT mean 61.0 / 41.0 (seeds 2.0 / 2.0 apart); ImageNet BoT mean 70.5 / 51.0 (1.0 / 2.0)
    scratch, imagenet = _rows(_section(page, SCRATCH)), _rows(_section(page, IMAGENET))
    assert scratch["SEN"][4] == "+3.0 / +0.5"
    assert imagenet["SEN"][4] == "+1.5 / -1.0"  # not +11.0 / +9.0 over the from-scratch BoT
    assert imagenet["Batch DropBlock"][4] == "-1.5 / -2.0"
    assert "Batch DropBlock" not in scratch and "Deep Miner" not in imagenet
    assert "seeds 0 and 1), 61.0 / 41.0; from seed to seed they move by 2.0 / 2.0" in _section(page, SCRATCH)
    assert "seeds 0 and 1), 70.5 / 51.0; from seed to seed they move by 1.0 / 2.0" in _section(page, IMAGENET)
    assert "Not finished yet, so in no table: Deep Miner (3 of 12 epochs logged)." in _section(page, IMAGENET)
    assert "below `imagenet`" in _section(page, IMAGENET) and "below `scratch`" in _section(page, SCRATCH)
    side = _rows(_section(page, "The budgets side by side"))
    assert side["BoT"] == [
        "61.0 / 41.0, reference (2 seeds, 2.0 / 2.0 apart)",
        "70.5 / 51.0, reference (2 seeds, 1.0 / 2.0 apart)",
    ]
    assert side["SEN"] == ["64.0 / 41.5, +3.0 / +0.5", "72.0 / 50.0, +1.5 / -1.0"]
    assert side["Batch DropBlock"] == ["not run", "69.0 / 49.0, -1.5 / -2.0"]
    assert side["Deep Miner"] == ["not run", "not finished (3 of 12 epochs)"]
    assert list(side) == ["BoT", "Batch DropBlock", "SEN", "Deep Miner"]


def test_one_budget_has_no_side_by_side_table_and_names_a_lone_seed(two_budgets):
    scratch, _ = two_budgets
    page = results_page(scratch / "sen", shown_roots=["sen"])  # a run folder alone: no BoT
    assert "The budgets side by side" not in page
    assert "No BoT run at this budget" in page
    page = results_page([scratch / "bot", scratch / "sen"])
    assert "the one BoT run (seed 0), 60.0 / 40.0; a second seed would give the spread" in page
    assert _rows(_section(page, SCRATCH))["SEN"][4] == "+4.0 / +1.5"


def test_a_budget_still_training_is_shown_not_read(two_budgets, tmp_path):
    scratch, _ = two_budgets
    running = tmp_path / "running"
    _run_folder(running / "bot", "bot_market1501_mnv2_cpu", 0, None, epochs_logged=0)
    page = results_page([scratch, running])
    assert "No finished run yet. \n" not in page
    assert "No finished run yet.\n\nNot finished yet, so in no table: BoT (0 of 12 epochs logged)." in page
    assert _rows(_section(page, "The budgets side by side"))["BoT"][1] == "not finished (0 of 12 epochs)"
    with pytest.raises(ValueError, match="no finished run below it"):
        results_page([running])


def test_the_readme_summary_of_two_budgets(two_budgets):
    block = summary_block(list(two_budgets))
    assert "| network | ResNet-18 from scratch | MobileNetV2 from ImageNet |" in block
    assert (
        "- MobileNetV2 from ImageNet: Above BoT on both rank-1 and mAP: none. Below it on at least one: "
        "Batch DropBlock; SEN." in block
    )
    assert "- ResNet-18 from scratch: Above BoT on both rank-1 and mAP: SEN." in block


def test_the_report_command_reads_several_roots(two_budgets, tmp_path):
    out = tmp_path / "page.md"
    assert main(["report", *map(str, two_budgets), "--out", str(out)]) == 0
    text = out.read_text()
    assert f"## {SCRATCH}" in text and f"## {IMAGENET}" in text
    assert f"report {two_budgets[0]} {two_budgets[1]} --out {out}" in text
