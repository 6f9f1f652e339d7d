"""reidlib.viz.training: the log.jsonl parser, the metrics table and the figures' axes and labels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from reidlib.experiments.logs import (
    TrainingLogError,
    branch_grads_table,
    main_variant,
    metrics_table,
    read_branch_grads,
    read_training_log,
    training_log,
)
from reidlib.viz.training import plot_branch_grads, plot_cmc, plot_training_curves

# Written by hand in the engine's format: a blank line, epochs out of order, epoch 2 logged twice
# (the later row wins), metrics at epochs 2 and 4 only, and a loss term that appears at epoch 3.
LOG_LINES = [
    {
        "epoch": 1,
        "lr": 1e-4,
        "losses": {"global/ce": 4.0, "global/triplet": 1.0, "total": 5.0},
        "iters": 10,
        "images_per_s": 30.0,
        "epoch_time_s": 10.0,
        "metrics": None,
    },
    {
        "epoch": 2,
        "lr": 2e-4,
        "losses": {"global/ce": 9.0, "global/triplet": 9.0, "total": 18.0},
        "iters": 10,
        "images_per_s": 1.0,
        "epoch_time_s": 99.0,
        "metrics": None,
    },
    None,  # blank line
    {
        "epoch": 3,
        "lr": 2e-4,
        "losses": {"global/ce": 3.0, "global/triplet": 0.5, "ms/ce": 2.0, "total": 5.5},
        "iters": 10,
        "images_per_s": 35.0,
        "epoch_time_s": 9.0,
        "metrics": None,
    },
    {
        "epoch": 2,
        "lr": 2e-4,
        "losses": {"global/ce": 3.5, "global/triplet": 0.8, "total": 4.3},
        "iters": 10,
        "images_per_s": 32.0,
        "epoch_time_s": 9.5,
        "metrics": {
            "rank1": 10.0,
            "rank5": 20.0,
            "rank10": 30.0,
            "mAP": 8.0,
            "mINP": 2.0,
            "num_valid_queries": 5,
        },
    },
    {
        "epoch": 4,
        "lr": 2e-5,
        "losses": {"global/ce": 2.5, "global/triplet": 0.4, "ms/ce": 1.5, "total": 4.4},
        "iters": 10,
        "images_per_s": 40.0,
        "epoch_time_s": 8.0,
        "metrics": {
            "rank1": 25.0,
            "rank5": 40.0,
            "rank10": 50.0,
            "mAP": 20.0,
            "mINP": 6.0,
            "num_valid_queries": 5,
        },
    },
]


def write_log(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(("" if r is None else json.dumps(r)) + "\n" for r in lines)
    (folder / "log.jsonl").write_text(text)
    return folder


@pytest.fixture
def log(tmp_path):
    return read_training_log(write_log(tmp_path / "run", LOG_LINES))


# ----------------------------------------------------------------------------- parsing


def test_epochs_sorted_and_last_duplicate_wins(log):
    assert list(log.epochs.index) == [1, 2, 3, 4]
    assert log.epochs.index.name == "epoch"
    assert log.epochs.loc[2, "images_per_s"] == 32.0  # the second epoch-2 row
    assert list(log.epochs["lr"]) == [1e-4, 2e-4, 2e-4, 2e-5]
    assert list(log.epochs["epoch_time_s"]) == [10.0, 9.5, 9.0, 8.0]


def test_losses_by_name_total_last_and_missing_terms_nan(log):
    assert list(log.losses.columns) == ["global/ce", "global/triplet", "ms/ce", "total"]
    assert log.losses.loc[2, "global/ce"] == 3.5
    assert math.isnan(log.losses.loc[1, "ms/ce"]) and log.losses.loc[4, "ms/ce"] == 1.5


def test_metrics_only_at_evaluated_epochs(log):
    assert list(log.metrics.index) == [2, 4]
    assert list(log.metrics.columns) == ["rank1", "rank5", "rank10", "mAP", "mINP"]
    assert log.metrics.loc[4, "mAP"] == 20.0
    table = log.table()
    assert list(table.index) == [1, 2, 3, 4]
    assert math.isnan(table.loc[3, "rank1"]) and table.loc[2, "rank1"] == 10.0


def test_read_accepts_the_file_itself(tmp_path):
    folder = write_log(tmp_path / "run", LOG_LINES[:1])
    assert list(read_training_log(folder / "log.jsonl").epochs.index) == [1]


def test_missing_log_names_the_path(tmp_path):
    with pytest.raises(TrainingLogError, match="no-run.*log.jsonl"):
        read_training_log(tmp_path / "no-run")


def test_bad_json_line_names_the_line(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "log.jsonl").write_text(json.dumps(LOG_LINES[0]) + "\n{not json\n")
    with pytest.raises(TrainingLogError, match="line 2"):
        read_training_log(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": None}, "'lr' must be a number"),
        ({"images_per_s": "fast"}, "'images_per_s' must be a number"),
        ({"epoch": 0}, "'epoch' must be an integer >= 1"),
        ({"losses": {}}, "'losses' must map"),
        ({"losses": {"total": "x"}}, "'losses' must map"),
        ({"metrics": {"rank1": "high"}}, "'metrics' must be null"),
    ],
)
def test_malformed_rows_are_refused_with_the_key(change, message):
    row = {**LOG_LINES[0], **change}
    with pytest.raises(TrainingLogError, match=message):
        training_log([LOG_LINES[0], row], source="x.jsonl")


def test_empty_log_is_an_error(tmp_path):
    with pytest.raises(TrainingLogError, match="no epoch logged"):
        read_training_log(write_log(tmp_path / "run", [None]))


# ----------------------------------------------------------------------------- metrics.json


def variant(rank1, mAP, mINP):
    return {
        "rank1": rank1,
        "rank5": rank1 + 20,
        "rank10": rank1 + 30,
        "mAP": mAP,
        "mINP": mINP,
        "num_valid_queries": 9,
    }


METRICS_JSON = {
    **variant(50.0, 40.0, 10.0),
    "cmc": [50.0, 60.0, 65.0],
    "protocol": {"flip": True, "rerank": False},
    "variants": {
        "flip": variant(50.0, 40.0, 10.0),
        "plain": variant(48.0, 39.0, 9.0),
        "rerank": variant(55.0, 50.0, 20.0),
    },
}


def test_main_variant_follows_the_protocol():
    assert main_variant(METRICS_JSON) == "flip"
    assert main_variant({"protocol": {"flip": True, "rerank": True}}) == "flip+rerank"
    assert main_variant({}) == "plain"


def test_metrics_table_reported_variant_first():
    table = metrics_table(METRICS_JSON)
    assert list(table.index) == ["flip", "plain", "rerank"]
    assert list(table.columns) == ["rank1", "rank5", "rank10", "mAP", "mINP", "num_valid_queries"]
    assert table.loc["rerank", "mAP"] == 50.0 and table.loc["plain", "rank1"] == 48.0


def test_metrics_table_without_variants():
    table = metrics_table({"rank1": 1.0, "rank5": 2.0, "rank10": 3.0, "mAP": 4.0, "mINP": 5.0})
    assert list(table.index) == ["plain"]
    assert list(table.columns) == ["rank1", "rank5", "rank10", "mAP", "mINP"]


def test_metrics_table_refuses_missing_numbers():
    with pytest.raises(TrainingLogError, match="rerank"):
        metrics_table({**METRICS_JSON, "variants": {"rerank": {"rank1": 1.0}}})


# ----------------------------------------------------------------------------- figures


def test_training_curves_axes_and_labels(log):
    fig = plot_training_curves(log, title="run")
    assert isinstance(fig, Figure)
    losses, lr, ips, metrics = fig.axes
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    assert losses.get_ylabel().startswith("weighted loss") and losses.get_yscale() == "log"
    assert [t.get_text() for t in losses.get_legend().get_texts()] == list(log.losses.columns)
    assert lr.get_ylabel() == "learning rate"
    assert ips.get_ylabel() == "training images / s"
    assert [p.get_height() for p in ips.patches] == [30.0, 32.0, 35.0, 40.0]
    assert metrics.get_ylabel() == "%"
    legend = {t.get_text() for t in metrics.get_legend().get_texts()}
    assert legend == {"rank-1", "rank-5", "rank-10", "mAP", "mINP"}
    rank1 = next(line for line in metrics.get_lines() if line.get_label() == "rank-1")
    assert list(rank1.get_xdata()) == [2, 4] and list(rank1.get_ydata()) == [10.0, 25.0]
    assert fig.get_suptitle() == "run"


def test_training_curves_before_any_evaluation():
    fig = plot_training_curves(training_log([LOG_LINES[0]]))
    assert any("no evaluated epoch" in t.get_text() for t in fig.axes[3].texts)


def test_cmc_axes_and_curve():
    cmc = [40.0, 55.0, 60.0, 70.0, 72.0, 80.0]
    fig = plot_cmc({"ours": cmc, "baseline": [30.0, 35.0, 50.0, 60.0, 65.0, 66.0]}, max_rank=5)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "rank" and ax.get_ylabel() == "matching rate (%)"
    line = ax.get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(line.get_ydata(), cmc[:5])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["ours (rank-1 40.0%)", "baseline (rank-1 30.0%)"]


@pytest.mark.parametrize("curves", [{}, {"a": []}, {"a": [0.5, 120.0]}, {"a": [[1.0, 2.0]]}])
def test_cmc_refuses_bad_curves(curves):
    with pytest.raises(ValueError, match="curves"):
        plot_cmc(curves)


# ----------------------------------------------------------------------------- branch gradients

GRAD_ROWS = [
    {
        "epoch": 1,
        "branch_grads": {"global": {"norm": 2.0, "cosine": 1.0}, "drop": {"norm": 15.0, "cosine": 0.05}},
    },
    {"epoch": 2},  # logged without branch_grads: skipped
    {
        "epoch": 3,
        "branch_grads": {"global": {"norm": 1.0, "cosine": 1.0}, "drop": {"norm": 0.0, "cosine": None}},
    },
    {
        "epoch": 1,
        "branch_grads": {"global": {"norm": 3.0, "cosine": 1.0}, "drop": {"norm": 12.0, "cosine": 0.1}},
    },
]


def test_branch_grads_table_by_epoch_last_duplicate_wins():
    table = branch_grads_table(GRAD_ROWS)
    assert list(table.index) == [1, 3]
    assert list(table.columns) == [
        ("global", "norm"),
        ("global", "cosine"),
        ("drop", "norm"),
        ("drop", "cosine"),
    ]
    assert table.loc[1, ("drop", "norm")] == 12.0 and table.loc[1, ("global", "norm")] == 3.0
    assert table.loc[3, ("drop", "norm")] == 0.0 and math.isnan(table.loc[3, ("drop", "cosine")])


def test_branch_grads_read_from_a_run_and_refused_when_absent(tmp_path):
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GRAD_ROWS))
    assert read_branch_grads(tmp_path).loc[3, ("global", "norm")] == 1.0
    with pytest.raises(TrainingLogError, match="log_branch_grads"):
        branch_grads_table([{"epoch": 1}])
    with pytest.raises(TrainingLogError, match="row 1.*branch_grads"):
        branch_grads_table([{"epoch": 1, "branch_grads": {"drop": {"norm": "big"}}}])


def test_branch_grads_figure_norms_and_cosines():
    fig = plot_branch_grads(branch_grads_table(GRAD_ROWS))
    assert isinstance(fig, Figure)
    norm_ax, cos_ax = fig.axes
    assert [line.get_label() for line in norm_ax.get_lines()] == ["global", "drop"]
    assert [line.get_label() for line in cos_ax.get_lines() if not line.get_label().startswith("_")] == [
        "drop"
    ]
    np.testing.assert_allclose(norm_ax.get_lines()[1].get_ydata(), [12.0, 0.0])
    assert norm_ax.get_yscale() == "linear"  # a zero norm: no log scale
    assert cos_ax.get_ylim() == (-1.05, 1.05)
    assert fig._suptitle.get_text() == "Which branch trains the backbone"
