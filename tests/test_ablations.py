"""Ablation grids as data: valid recipes and models, running and reading a grid, the join with the papers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from reidlib.config import load_recipe
from reidlib.experiments import ablation_grids as grids
from reidlib.experiments.ablation_grids import AblationRow, grid_rows
from reidlib.experiments.ablation_runner import StaleRunError, is_plumbing_check, recipe_key, run_grid
from reidlib.experiments.paper_comparison import compare_with_paper, gains_over_first
from reidlib.training.engine import build_network

from support import tiny_recipe

SMALL_NET = {"model.backbone": "resnet18", "model.pretrained": False, "data.height": 64, "data.width": 32}


def _terms(recipe) -> list[tuple[str, str, float]]:
    return [(t.branch, t.kind, t.weight) for t in recipe.loss.terms]


# ----------------------------------------------------------------------------- the grids


@pytest.mark.slow
@pytest.mark.parametrize("grid", list(grids.GRIDS))
def test_every_row_builds_a_model_whose_branches_are_the_loss_branches(grid):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 32)
    for row in grids.GRIDS[grid]("smoke"):
        recipe = row.load(SMALL_NET)
        model = build_network(recipe, num_classes=5).train()
        outputs = model(images)
        assert set(outputs) == {t.branch for t in recipe.loss.terms}, (grid, row.row)
        assert set(model.feat_dims) == set(outputs)


@pytest.mark.parametrize("base", ["smoke", "cpu", "paper"])
def test_the_base_sets_the_budget_and_the_row_the_network(base):
    budget = {  # (recipe, input, epochs, backbone) of each scale, from the shipped recipe files
        "smoke": {"sen": ("synthetic", 128, 4, "resnet18"), "deep_miner": ("synthetic", 128, 4, "resnet18")},
        "cpu": {
            "sen": ("market1501", 128, 20, "resnet18"),
            "deep_miner": ("market1501", 128, 20, "resnet18"),
        },
        "paper": {
            "sen": ("market1501", 256, 210, "resnet50"),
            "deep_miner": ("market1501", 384, 120, "resnet50"),
        },
    }[base]
    smoke_rows = {(r.table, r.row): r.load() for r in grid_rows(list(grids.GRIDS), "smoke")}
    for row in grid_rows(list(grids.GRIDS), base):
        recipe = row.load()
        paper = "sen" if row.table.startswith("sen") else "deep_miner"
        d = recipe.data
        assert (d.dataset, d.height, recipe.optim.epochs, recipe.model.backbone) == budget[paper], row
        same = smoke_rows[(row.table, row.row)]
        assert recipe.model.name == same.model.name and recipe.model.options == same.model.options
        assert _terms(recipe) == _terms(same) and recipe.loss.triplet_margin == same.loss.triplet_margin


def test_sen_table2_rows_drop_the_loss_terms_of_the_branches_that_are_off():
    rows = {r.row: r.load() for r in grids.sen_table2()}
    assert list(rows) == ["Baseline", "+BS", "+MS", "+BS+MS"]
    tail = [("global", "triplet", 1.0), ("global", "center", 0.0005)]
    expected = {  # SEN eq. 10, written out by hand
        "Baseline": [("global", "ce", 1.0), *tail],
        "+BS": [("global", "ce", 1.0), ("bs", "ce", 0.5), *tail],
        "+MS": [("global", "ce", 1.0), ("ms", "ce", 1.0), *tail],
        "+BS+MS": [("global", "ce", 1.0), ("bs", "ce", 0.5), ("ms", "ce", 1.0), *tail],
    }
    for label, recipe in rows.items():
        assert recipe.model.name == "sen"
        assert _terms(recipe) == expected[label]
        assert recipe.model.options == {
            "use_bs": "BS" in label,
            "use_ms": "MS" in label,
            "r1": 0.1,
            "r2": 0.25,
            "p": 2,
        }
        assert recipe.loss.triplet_margin == 0.3


def test_deep_miner_rows_state_branches_attention_and_soft_margin():
    t1 = {r.row: r.load() for r in grids.deep_miner_table1()}
    assert t1["baseline (only global branch)"].model.options["ie_blocks"] == []
    assert [t.branch for t in t1["baseline (only global branch)"].loss.terms] == ["global"] * 3
    assert t1["After block 2"].model.options == {
        "ie_blocks": [2],
        "tau": 0.8,
        "local": False,
        "num_stripes": 4,
        "attention": "none",
    }
    t4 = {r.row: r.load() for r in grids.deep_miner_table4()}
    assert {k: r.model.options["attention"] for k, r in t4.items()} == {
        "No": "none",
        "SAM": "sam",
        "CHAM": "cham",
        "SAM & CHAM": "sam+cham",
    }
    branches = [t.branch for t in t4["SAM"].loss.terms]
    assert branches == ["global"] * 3 + ["ie_b2"] * 3 + ["ie_b3"] * 3 + ["local"] * 3
    assert all(r.loss.triplet_margin is None for r in t4.values())
    taus = [r.load().model.options["tau"] for r in grids.deep_miner_tau_sweep(taus=(0.6, 0.8))[1:]]
    assert taus == [0.6, 0.8]


def test_deep_miner_recipe_puts_the_same_eq2_terms_on_every_branch():
    """The rows put the recipe's global-branch terms on each of their branches (eq. 2 per branch)."""
    by_branch: dict[str, list] = {}
    for term in load_recipe("deep_miner_market1501").loss.terms:
        by_branch.setdefault(term.branch, []).append((term.kind, term.weight))
    assert list(by_branch) == ["global", "ie_b2", "ie_b3", "local"]
    assert all(terms == by_branch["global"] for terms in by_branch.values())


@pytest.mark.parametrize(
    "base, sen, dm",
    [
        ("paper", "sen_market1501", "deep_miner_market1501"),
        ("cpu", "sen_market1501_cpu", "deep_miner_market1501_cpu"),
    ],
)
def test_the_full_rows_are_the_shipped_recipes(base, sen, dm):
    full_sen = next(r for r in grids.sen_table2(base) if r.row == "+BS+MS").load()
    full_dm = next(r for r in grids.deep_miner_table4(base) if r.row == "SAM & CHAM").load()
    assert recipe_key(full_sen) == recipe_key(load_recipe(sen))
    shipped = load_recipe(dm)
    if base == "cpu":
        # the one difference: deep_miner_market1501_cpu pins its committed run's CHAM (softmax over
        # channels); the rows use the network's reading, SE's sigmoid
        assert shipped.model.options["cham_activation"] == "softmax_channels"
        assert full_dm.model.options["cham_activation"] == "sigmoid"
        shipped.model.options["cham_activation"] = "sigmoid"
    assert recipe_key(full_dm) == recipe_key(shipped)


def test_slugs_are_folder_names_and_unique_per_grid():
    examples = {
        "+BS+MS": "plus-bs-plus-ms",
        "SAM & CHAM": "sam-and-cham",
        "After blocks 1,2,3": "after-blocks-1-2-3",
        "r2=0.25": "r2-0.25",
        "baseline (only global branch)": "baseline-only-global-branch",
    }
    for label, slug in examples.items():
        assert AblationRow("t", label, "smoke").slug == slug
    for name, grid in grids.GRIDS.items():
        slugs = [r.slug for r in grid("smoke")]
        assert len(set(slugs)) == len(slugs), name


def test_unknown_grid_names_are_refused():
    with pytest.raises(ValueError, match="unknown.*sen_table9"):
        grid_rows(["sen_table2", "sen_table9"])


def test_every_published_reference_exists_in_the_transcribed_tables():
    from reidlib.experiments.paper_results import load_all

    paper = load_all()
    rows = grid_rows(list(grids.GRIDS))
    ours = pd.DataFrame([{**_result(r), "rank1": 1.0, "mAP": 1.0, "mINP": 1.0} for r in rows])
    joined = compare_with_paper(ours, paper)
    published = joined[joined["source"] == "paper"]
    assert len(published) == sum(r.paper is not None for r in rows)
    sen = published[(published["table"] == "sen_table2") & (published["row"] == "+MS")].iloc[0]
    assert (sen["rank1"], sen["mAP"], sen["dataset"]) == (95.0, 87.5, "market1501")  # SEN Table 2
    r2 = published[published["table"] == "sen_r2"].iloc[0]
    assert (r2["row"], r2["rank1"], r2["mAP"], r2["dataset"]) == ("r2=0.25", 77.0, 74.5, "cuhk03_labeled")


# ----------------------------------------------------------------------------- running a grid


def _result(row: AblationRow) -> dict:
    return {
        "table": row.table,
        "row": row.row,
        "value": row.value,
        "dataset": "synthetic",
        "budget": "tiny",
        "run_dir": "",
        "paper": row.paper,
        "paper_table": row.paper_table,
        "paper_row": row.paper_row,
        "paper_dataset": row.paper_dataset,
    }


def _write_run(folder: Path, recipe, metrics: dict, iters: tuple[int, ...] = ()) -> None:
    folder.mkdir(parents=True)
    params = {"recipe": recipe.to_dict(), "environment": {"git_sha": "abc1234def", "device": "cpu: test"}}
    (folder / "params.json").write_text(json.dumps(params))
    (folder / "metrics.json").write_text(json.dumps({**metrics, "train_time_s": 1.0}))
    log = [{"epoch": e, "lr": 1e-3, "losses": {}, "iters": n} for e, n in enumerate(iters, start=1)]
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("run_grid trained although the metrics were on disk")

    monkeypatch.setattr("reidlib.training.engine.train", refuse)


def test_run_grid_reads_finished_rows_and_skips_missing_ones(tmp_path, no_training):
    rows = grids.sen_table2()
    extra = {"optim.epochs": 1}
    _write_run(
        tmp_path / "sen_table2" / "baseline",
        rows[0].load(extra),
        {"rank1": 50.0, "rank5": 60.0, "rank10": 70.0, "mAP": 30.0, "mINP": 10.0},
        iters=(200, 200),
    )
    _write_run(
        tmp_path / "sen_table2" / "plus-bs",
        rows[1].load(extra),
        {"rank1": 52.5, "rank5": 61.0, "rank10": 71.0, "mAP": 31.5, "mINP": 11.0},
        iters=(300, 300),
    )
    df = run_grid(rows, tmp_path, overrides=extra, train=False, verbose=False)
    # 400 and 600 iterations: one row trained enough to be read, so the grid is not a plumbing check
    assert df["iterations"].iloc[:2].tolist() == [400, 600] and not is_plumbing_check(df)
    assert is_plumbing_check(df.iloc[:1]) and not is_plumbing_check(df.iloc[2:])
    assert list(df["row"]) == ["Baseline", "+BS", "+MS", "+BS+MS"]
    assert list(df["status"]) == ["read", "read", "missing (train=False)", "missing (train=False)"]
    assert df["rank1"].iloc[:2].tolist() == [50.0, 52.5] and df["mAP"].iloc[:2].tolist() == [30.0, 31.5]
    assert df["rank1"].iloc[2:].isna().all()
    assert df["git_sha"].iloc[0] == "abc1234def" and (df["source"] == "ours").all()
    assert df["budget"].iloc[0] == "ResNet-18, from scratch, 128x64, 1 epoch"


def test_run_grid_refuses_a_folder_that_holds_another_recipe(tmp_path, no_training):
    row = grids.sen_table2()[3]
    _write_run(
        tmp_path / "sen_table2" / row.slug, row.load({"model.options.r2": 0.3}), {"rank1": 1.0, "mAP": 1.0}
    )
    with pytest.raises(StaleRunError, match=r"plus-bs-plus-ms.*model\.options\.r2: 0\.3 \(folder\) vs 0\.25"):
        run_grid([row], tmp_path, verbose=False)


def test_rows_with_the_same_recipe_share_one_run(tmp_path, no_training):
    t1_row = next(r for r in grids.deep_miner_table1() if r.row == "After block 3")
    _write_run(tmp_path / "deep_miner_table1" / t1_row.slug, t1_row.load(), {"rank1": 40.0, "mAP": 20.0})
    t2_row = grids.deep_miner_table2()[0]  # "After block 3" again
    tau_row = next(r for r in grids.deep_miner_tau_sweep() if r.value == 0.8)
    df = run_grid([t2_row, tau_row], tmp_path, verbose=False)
    assert list(df["status"]) == ["same run as deep_miner_table1/after-block-3"] * 2
    assert df["rank1"].tolist() == [40.0, 40.0] and df["mAP"].tolist() == [20.0, 20.0]
    assert not (tmp_path / "deep_miner_table2").exists()


@pytest.mark.slow
def test_run_grid_trains_a_missing_row_then_reads_it(tiny_synthetic, tmp_path, monkeypatch):
    row = grids.sen_table2()[2]  # +MS
    tiny = _tiny_overrides(tiny_synthetic)
    df = run_grid([row], tmp_path, overrides=tiny, verbose=False)
    folder = tmp_path / "sen_table2" / "plus-ms"
    saved = json.loads((folder / "metrics.json").read_text())
    params = json.loads((folder / "params.json").read_text())
    assert df["status"].iloc[0].startswith("trained")
    assert df["rank1"].iloc[0] == saved["rank1"] and df["mAP"].iloc[0] == saved["mAP"]
    assert params["recipe"]["model"]["options"]["use_ms"] is True
    assert [t["branch"] for t in params["recipe"]["loss"]["terms"]] == ["global", "ms", "global", "global"]

    def refuse(*args, **kwargs):
        raise AssertionError("trained twice")

    monkeypatch.setattr("reidlib.training.engine.train", refuse)
    again = run_grid([row], tmp_path, overrides=tiny, verbose=False)
    assert again["status"].iloc[0] == "read" and again["mAP"].iloc[0] == saved["mAP"]


def _tiny_overrides(root: Path) -> dict:
    """The overrides of support.tiny_recipe (applied after the row's network overrides)."""
    recipe = tiny_recipe(root)
    return {
        "data.root": str(root),
        "data.height": recipe.data.height,
        "data.width": recipe.data.width,
        "data.num_identities": recipe.data.num_identities,
        "data.num_instances": recipe.data.num_instances,
        "optim.epochs": 2,
        "optim.warmup_epochs": 1,
        "optim.milestones": [1],
        "eval.every": 2,
        "train.max_iters_per_epoch": 3,
        "train.progress": False,
    }


# ----------------------------------------------------------------------------- beside the papers


def _paper_csv(tmp_path: Path) -> pd.DataFrame:
    text = (
        "paper,table,row,method,venue,backbone,dataset,rank1,mAP,score,notes\n"
        "sen,2,1,Baseline,,,market1501,94.2,86.2,,\n"
        "sen,2,1,Baseline,,,dukemtmc,86.4,76.4,,\n"
        "sen,2,2,+BS,,,market1501,94.8,87.2,,\n"
        "sen,2,4,+BS+MS,,,cuhk03_labeled,77,74.5,,\n"
    )
    (tmp_path / "sen_table2.csv").write_text(text)
    return pd.read_csv(tmp_path / "sen_table2.csv")


def test_compare_puts_each_published_row_before_ours(tmp_path):
    paper = _paper_csv(tmp_path)
    rows = grids.sen_table2()[:2] + [r for r in grids.sen_r2_sweep(r2_values=(0.2, 0.25))]
    ours = pd.DataFrame(
        [{**_result(r), "rank1": 10.0 + i, "mAP": 5.0 + i, "mINP": 1.0} for i, r in enumerate(rows)]
    )
    df = compare_with_paper(ours, paper)
    got = list(zip(df["table"], df["row"], df["source"], df["dataset"], df["rank1"], strict=True))
    assert got == [
        ("sen_table2", "Baseline", "paper", "market1501", 94.2),  # synthetic -> the papers' Market-1501
        ("sen_table2", "Baseline", "ours", "synthetic", 10.0),
        ("sen_table2", "+BS", "paper", "market1501", 94.8),
        ("sen_table2", "+BS", "ours", "synthetic", 11.0),
        ("sen_r2", "r2=0.2", "ours", "synthetic", 12.0),  # not published
        ("sen_r2", "r2=0.25", "paper", "cuhk03_labeled", 77.0),  # Fig. 9 is on CUHK03 (L)
        ("sen_r2", "r2=0.25", "ours", "synthetic", 13.0),
    ]
    duke = compare_with_paper(ours.iloc[:1], paper, dataset="dukemtmc")
    assert duke["rank1"].tolist() == [86.4, 10.0]


def test_compare_names_a_published_row_it_cannot_find(tmp_path):
    paper = _paper_csv(tmp_path)
    row = grids.sen_table2()[2]  # +MS is not in the small CSV
    ours = pd.DataFrame([{**_result(row), "rank1": 1.0, "mAP": 1.0, "mINP": 1.0}])
    with pytest.raises(ValueError, match=r"sen Table 2: no published row '\+MS' on market1501.*'\+BS'"):
        compare_with_paper(ours, paper)


def test_gains_over_first_row_per_table_and_source():
    df = pd.DataFrame(
        {
            "table": ["t"] * 6,
            "source": ["paper", "ours"] * 3,
            "row": ["a", "a", "b", "b", "c", "c"],
            "rank1": [90.0, 10.0, 91.5, 12.0, 89.0, math.nan],
            "mAP": [80.0, 5.0, 80.5, 4.0, 81.0, 6.0],
        }
    )
    out = gains_over_first(df)
    assert out["gain_rank1"].tolist()[:5] == [0.0, 0.0, 1.5, 2.0, -1.0] and math.isnan(
        out["gain_rank1"].iloc[5]
    )
    assert out["gain_mAP"].tolist() == [0.0, 0.0, 0.5, -1.0, 1.0, 1.0]
    no_reference = gains_over_first(df.assign(mAP=[80.0, math.nan, 80.5, 4.0, 81.0, 6.0]))
    assert no_reference["gain_mAP"].iloc[[1, 3, 5]].isna().all()  # not measured against the 2nd row


def test_run_grid_overrides_are_a_mapping(tmp_path, no_training):
    with pytest.raises(ValueError, match="expected a mapping"):
        run_grid(grids.sen_table2()[:1], tmp_path, overrides=["optim.epochs=3"], verbose=False)


def test_snapshots_do_not_change_what_was_trained():
    # a run folder written before train.snapshot_epochs existed (no such key) is the same training
    plain = load_recipe("smoke")
    with_snapshots = load_recipe("smoke", ["train.snapshot_epochs=[1, 2]"])
    assert recipe_key(plain) == recipe_key(with_snapshots)
    old = plain.to_dict()
    del old["train"]["snapshot_epochs"]
    assert recipe_key(old) == recipe_key(plain)
    assert recipe_key(load_recipe("smoke", ["optim.epochs=3"])) != recipe_key(plain)
