"""The committed real-data runs (results/market1501_cpu/) are complete, consistent and fairly compared.

These folders are the evidence the README and notebooks 04/05 quote, so they are checked like code: each
run names the commit and environment it ran with, its final metrics are the ones its log recorded, all
runs share one budget, and the README's table says what the files say. The checks read the JSON files
directly, not through ``reidlib.experiments.runs``, so a bug there cannot hide a bad folder. No image is
committed:
the figures show Market-1501 pixels and are redrawn from these tables by ``make market1501-cpu``.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from reidlib.utils.paths import repo_root

RESULTS = repo_root() / "results" / "market1501_cpu"
# <network>[_<variant>][_seed<N>]: the variant names what differs from the network's first CPU recipe
FOLDER_NAME = re.compile(
    r"^(?P<run>(?P<network>bot|bdb|sen|deep_miner)(?:_(?P<variant>faithful|ramp))?)(?:_seed(?P<seed>\d+))?$"
)
NETWORKS = ("bot", "bdb", "sen", "deep_miner")
# the README labels of the runs in its results table
README_LABELS = {
    "BoT": "bot",
    "Batch DropBlock": "bdb",
    "Batch DropBlock, faithful": "bdb_faithful",
    "Batch DropBlock, ramp": "bdb_ramp",
    "SEN": "sen",
    "Deep Miner": "deep_miner",
    "Deep Miner, ramp": "deep_miner_ramp",
}
# train keys that say how a run was executed, not what was trained (they may differ between runs);
# log_branch_grads measures on a copy of one batch and takes no step
EXECUTION_KEYS = {
    "seed",
    "progress",
    "keep_checkpoint",
    "threads",
    "snapshot_epochs",
    "checkpoint_every",
    "log_branch_grads",
}
# budget values a run may differ in, each stated in its recipe: faithful BDB ranks by the Euclidean
# distance of its authors' code
DOCUMENTED_DIFFERENCES = {"bdb_faithful": {("eval", "metric"): "euclidean"}}
# recipe keys added after the first runs, with the value that means what those runs did
LATER_KEYS = {("data", "device_augment"): False}
# Market-1501's published split (Zheng et al. 2015): what every run must have been evaluated on
MARKET1501 = {
    "train": {"images": 12936, "ids": 751, "cameras": 6},
    "query": {"images": 3368, "ids": 750, "cameras": 6},
    "gallery": {"images": 15913, "ids": 751, "cameras": 6},
}


def _finished_runs() -> list[Path]:
    """Run folders with final metrics; a run still training (no metrics.json) is not evidence yet."""
    if not RESULTS.is_dir():
        return []
    return sorted(p for p in RESULTS.iterdir() if (p / "metrics.json").is_file())


RUNS = _finished_runs()


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]


def _network_and_seed(folder: Path) -> tuple[str, int]:
    """(run name without the seed, e.g. "bdb_faithful", seed)."""
    match = FOLDER_NAME.match(folder.name)
    assert match, f"{folder.name}: expected <network>[_faithful|_ramp][_seed<N>], network one of {NETWORKS}"
    return match["run"], int(match["seed"] or 0)


def test_the_committed_runs_exist():
    assert RUNS, f"no finished run under {RESULTS}"


@pytest.mark.parametrize("folder", RUNS, ids=[p.name for p in RUNS])
def test_each_run_names_its_recipe_seed_commit_and_machine(folder):
    network, seed = _network_and_seed(folder)
    params = _json(folder / "params.json")
    assert params["recipe"]["name"] == f"{network}_market1501_cpu"
    assert params["seed"] == params["recipe"]["train"]["seed"] == seed
    environments = [params["environment"]] + [r["environment"] for r in params["resumes"]]
    for env in environments:
        assert re.fullmatch(r"[0-9a-f]{40}", env["git_sha"]), env["git_sha"]
        assert env["git_dirty"] is False, "a committed result must come from committed code"
        for key in ("torch", "torchvision", "python", "reidlib", "started", "command"):
            assert env[key], key
        assert env["device"].startswith("cpu: "), env["device"]
    assert params["dataset"]["name"] == "market1501"
    assert {split: params["dataset"][split] for split in MARKET1501} == MARKET1501


@pytest.mark.parametrize("folder", RUNS, ids=[p.name for p in RUNS])
def test_final_metrics_are_the_last_logged_evaluation(folder):
    params, metrics, log = _json(folder / "params.json"), _json(folder / "metrics.json"), _log(folder)
    epochs = params["recipe"]["optim"]["epochs"]
    assert [row["epoch"] for row in log] == list(range(1, epochs + 1)), "one log line per epoch, in order"
    assert metrics["epoch"] == epochs
    last = log[-1]["metrics"]
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
        assert metrics[key] == pytest.approx(last[key]), key
    assert metrics["num_valid_queries"] == MARKET1501["query"]["images"]
    cmc = metrics["cmc"]
    assert all(a <= b for a, b in zip(cmc[:-1], cmc[1:], strict=True)), "CMC must not decrease"
    assert (cmc[0], cmc[4], cmc[9]) == pytest.approx((metrics["rank1"], metrics["rank5"], metrics["rank10"]))
    assert 0 < metrics["mINP"] < 100 and 0 < metrics["mAP"] < 100
    assert set(metrics["variants"]) == {"plain", "flip", "rerank", "flip+rerank"}
    assert metrics["variants"]["plain"]["mAP"] == pytest.approx(metrics["mAP"])
    assert metrics["train_time_s"] > 0


def _budget(params: dict, run: str) -> dict:
    recipe = json.loads(json.dumps(params["recipe"]))
    for (block, key), value in DOCUMENTED_DIFFERENCES.get(run, {}).items():
        assert recipe[block][key] == value, f"{run}: {block}.{key}"
        recipe[block][key] = _json(RESULTS / "bot" / "params.json")["recipe"][block][key]
    for (block, key), value in LATER_KEYS.items():
        recipe[block].setdefault(key, value)
    model = recipe["model"]
    train = {k: v for k, v in recipe["train"].items() if k not in EXECUTION_KEYS}
    return {
        "data": recipe["data"],
        "optim": recipe["optim"],
        "eval": recipe["eval"],
        "train": train,
        "backbone": (model["backbone"], model["pretrained"], model["last_stride"]),
    }


def test_all_runs_share_one_budget():
    budgets = {p.name: _budget(_json(p / "params.json"), _network_and_seed(p)[0]) for p in RUNS}
    reference = budgets[RUNS[0].name]
    for name, budget in budgets.items():
        for block in reference:
            assert budget[block] == reference[block], f"{name}: {block} differs from {RUNS[0].name}"
    assert reference["backbone"] == ("resnet18", False, 1)
    data, optim = reference["data"], reference["optim"]
    assert (data["height"], data["width"], optim["epochs"]) == (128, 64, 20)


def test_every_network_and_the_repeated_seeds_are_there():
    """Issue 6: all four networks, and a second seed for BoT and for the best erasing network."""
    seeds: dict[str, set[int]] = {}
    best: tuple[float, str] | None = None
    for folder in RUNS:
        network, seed = _network_and_seed(folder)
        if network not in NETWORKS:
            continue  # a variant row (faithful, ramp) is extra evidence, not one of the four
        seeds.setdefault(network, set()).add(seed)
        if network != "bot" and seed == 0:
            best = max(best or (-1.0, ""), (_json(folder / "metrics.json")["mAP"], network))
    assert set(seeds) == set(NETWORKS)
    assert len(seeds["bot"]) >= 2
    assert best is not None and len(seeds[best[1]]) >= 2, f"{best[1]} is best at seed 0 but has one seed"


@pytest.mark.parametrize("folder", RUNS, ids=[p.name for p in RUNS])
def test_each_run_has_the_tables_of_its_report(folder):
    """The tables behind the report's figures are committed; the figures are redrawn, never committed."""
    report = folder / "report" / "03_training"
    for name in ("training_log.csv", "final_metrics.csv", "ranked_lists.csv", "branch_metrics.csv"):
        assert (report / name).is_file(), f"{report / name} missing: run `make market1501-cpu`"
    assert (report / "summary.json").is_file()
    if _json(folder / "params.json")["recipe"]["train"].get("log_branch_grads"):
        assert (report / "branch_grads.csv").is_file()
        for row in _log(folder):  # every epoch: each branch's norm, and the global branch's cosine 1
            grads = row["branch_grads"]
            assert grads["global"]["cosine"] == pytest.approx(1.0) and set(grads) > {"global"}
            assert all(g["norm"] > 0 and -1 <= g["cosine"] <= 1 + 1e-9 for g in grads.values())


def test_no_checkpoint_image_or_large_file_is_tracked():
    if not (repo_root() / ".git").exists():
        pytest.skip("not a git checkout: nothing is tracked")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "results"], cwd=repo_root(), capture_output=True, check=True
    ).stdout.decode()
    files = [repo_root() / f for f in listed.split("\0") if f]
    assert files
    # figures of real runs show Market-1501 pixels (research use only): images never enter git
    forbidden = {".pt", ".pth", ".ckpt", ".png", ".jpg", ".jpeg", ".svg"}
    assert not [f for f in files if f.suffix.lower() in forbidden]
    assert not [f for f in files if f.is_file() and f.stat().st_size > 2_000_000]


def _readme_rows() -> list[list[str]]:
    text = (repo_root() / "README.md").read_text()
    section = text.split("## Results on Market-1501 at a CPU budget", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[2:]]  # drop the header and its rule


# the README's side-by-side table: one column per budget, in this order
README_BUDGETS = [RESULTS, repo_root() / "results" / "market1501_mnv2_cpu"]


def test_the_readme_table_says_what_the_files_say():
    """Each cell starts with "rank-1 / mAP" of that network's finished runs in that budget's folder (the mean
    over its seeds), read here from their metrics.json; "not run" where it has none."""
    rows = _readme_rows()
    assert {README_LABELS[r[0]] for r in rows} == set(README_LABELS.values())
    for row in rows:
        name = README_LABELS[row[0]]
        for folder, cell in zip(README_BUDGETS, row[1:], strict=True):
            runs = [
                p
                for p in (sorted(folder.iterdir()) if folder.is_dir() else [])
                if (p / "metrics.json").is_file() and _network_and_seed(p)[0] == name
            ]
            if not runs:
                assert cell == "not run", (name, folder.name, cell)
                continue
            metrics = [_json(p / "metrics.json") for p in runs]
            mean = [sum(m[k] for m in metrics) / len(metrics) for k in ("rank1", "mAP")]
            assert cell.startswith(f"{mean[0]:.1f} / {mean[1]:.1f}"), (name, folder.name, cell)
