"""Recipes: every shipped YAML loads and builds its model; typed loading refuses bad keys/values."""

from __future__ import annotations

import json
import typing

import pytest
import torch
import yaml

from reidlib.config import ConfigError, ModelConfig, load_recipe, recipe_from_dict, recipe_names
from reidlib.models import MODELS
from reidlib.models.outputs import BranchOutput
from reidlib.training.engine import build_criterion, build_network
from reidlib.utils.paths import recipes_dir, repo_root

PAPER_RECIPES = [
    "bot_market1501",
    "sen_market1501",
    "sen_dukemtmc",
    "sen_cuhk03",
    "deep_miner_market1501",
    "deep_miner_dukemtmc",
    "deep_miner_cuhk03",
    "deep_miner_msmt17",
    "bdb_market1501",
    "smoke",
]


def test_every_issue_recipe_is_shipped():
    assert set(PAPER_RECIPES) <= set(recipe_names())


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_loads_builds_its_model_and_its_losses_fit(name):
    recipe = load_recipe(name, ["model.pretrained=false"])
    assert recipe.name == name
    # Build at ResNet-18 to stay fast; the branch structure (what the loss terms need) is the same.
    recipe.model.backbone = "resnet18"
    model = build_network(recipe, num_classes=5)
    criterion = build_criterion(recipe, model, num_classes=5)
    model.train()
    h, w = 64, 32
    out = model(torch.randn(4, 3, h, w))
    assert {t.branch for t in recipe.loss.terms} <= set(out)
    total, _ = criterion(out, torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(total)


def test_paper_values_reach_the_dataclasses():
    sen = load_recipe("sen_market1501")
    assert (sen.optim.lr, sen.optim.epochs, sen.optim.milestones) == (4.5e-4, 210, [45, 90])
    assert sen.model.options == {"use_bs": True, "use_ms": True, "r1": 0.1, "r2": 0.25, "p": 2}
    weights = {(t.branch, t.kind): t.weight for t in sen.loss.terms}  # SEN eq. 10
    assert weights == {
        ("global", "ce"): 1.0,
        ("bs", "ce"): 0.5,
        ("ms", "ce"): 1.0,
        ("global", "triplet"): 1.0,
        ("global", "center"): 0.0005,
    }
    dm = load_recipe("deep_miner_market1501")
    assert (dm.data.height, dm.data.width) == (384, 128)
    assert dm.loss.triplet_margin is None  # soft margin, eq. 5
    assert dm.model.options["ie_blocks"] == [2, 3] and dm.model.options["tau"] == 0.8
    assert load_recipe("sen_dukemtmc").data.dataset == "dukemtmc"  # inherits everything else
    assert load_recipe("sen_dukemtmc").optim.epochs == 210


def test_overrides_as_a_mapping_are_checked_the_same_way():
    r = load_recipe("sen_smoke", {"optim.epochs": 5, "model.options": {"r2": 0.3}, "eval.flip": True})
    assert r.optim.epochs == 5 and r.model.options == {"r2": 0.3} and r.eval.flip is True
    with pytest.raises(ConfigError, match="optim.epochs"):
        load_recipe("smoke", {"optim.epochs": "five"})


def test_overrides_are_typed():
    r = load_recipe(
        "sen_smoke", ["optim.epochs=5", "optim.lr=1e-3", "model.options.r2=0.3", "eval.flip=true"]
    )
    assert r.optim.epochs == 5 and r.optim.lr == 1e-3 and r.eval.flip is True
    assert r.model.options["r2"] == 0.3
    assert isinstance(load_recipe("smoke", ["optim.lr=1"]).optim.lr, float)


@pytest.mark.parametrize(
    "override, words",
    [
        ("optim.lrr=1", ["optim.lrr"]),
        ("nosuch.key=1", ["nosuch"]),
        ("optim.epochs=five", ["optim.epochs", "integer"]),
        ("optim.epochs=2.5", ["optim.epochs", "integer"]),
        ("eval.flip=maybe", ["eval.flip", "true or false"]),
        ("optim.milestones=3", ["optim.milestones", "list"]),
        ("optim.name=rmsprop", ["optim.name"]),
        ("eval.final_variants=[mirror]", ["eval.final_variants"]),
        ("loss.terms=[]", ["loss.terms"]),
        ("optim.epochs", ["key=value"]),
        ("eval.every=0", ["eval.every", ">= 1"]),
        ("train.checkpoint_every=0", ["train.checkpoint_every"]),
        ("eval.max_rank=0", ["eval.max_rank"]),
        ("data.test_batch_size=0", ["data.test_batch_size"]),
        ("data.workers=-1", ["data.workers"]),
        ("data.num_instances=1", ["data.num_instances", "positive"]),
        ("loss.ramp_epochs=-1", ["loss.ramp_epochs"]),
        ("loss.ramp_epochs=1.5", ["loss.ramp_epochs", "integer"]),
        ("train.log_branch_grads=maybe", ["train.log_branch_grads", "true or false"]),
    ],
)
def test_bad_keys_and_values_are_named(override, words):
    with pytest.raises(ConfigError) as err:
        load_recipe("smoke", [override])
    for w in words:
        assert w in str(err.value)


# Every recipe value with a physical meaning has its range checked at load, named by its key; the
# expected ranges are written here by hand from what each value means.
@pytest.mark.parametrize(
    "override, words",
    [
        ("data.num_identities=1", ["data.num_identities", ">= 2"]),  # P: a triplet needs two ids
        ("data.num_instances=0", ["data.num_instances", ">= 1"]),  # K
        ("data.height=0", ["data.height", ">= 1"]),
        ("data.width=-8", ["data.width", ">= 1"]),
        ("data.pad=-1", ["data.pad", ">= 0"]),
        ("data.flip_p=1.5", ["data.flip_p", "[0, 1]"]),
        ("data.erasing_p=-0.1", ["data.erasing_p", "[0, 1]"]),
        ("optim.epochs=0", ["optim.epochs", ">= 1"]),
        ("optim.warmup_epochs=-1", ["optim.warmup_epochs", ">= 0"]),
        ("optim.lr=0", ["optim.lr", "> 0"]),
        ("optim.lr=-3.5e-4", ["optim.lr", "> 0"]),
        ("optim.lr=.nan", ["optim.lr"]),
        ("optim.gamma=-0.1", ["optim.gamma", "(0, 1]"]),
        ("optim.gamma=0", ["optim.gamma", "(0, 1]"]),
        ("optim.gamma=1.5", ["optim.gamma", "(0, 1]"]),
        ("optim.weight_decay=-5e-4", ["optim.weight_decay", ">= 0"]),
        ("optim.momentum=1", ["optim.momentum", "[0, 1)"]),
        ("optim.milestones=[10, 0]", ["optim.milestones[1]", ">= 1"]),
        ("train.seed=-1", ["train.seed", ">= 0"]),
        ("train.threads=-2", ["train.threads", ">= 0"]),
        ("train.max_iters_per_epoch=0", ["train.max_iters_per_epoch"]),
        ("train.snapshot_epochs=[0]", ["train.snapshot_epochs[0]", ">= 1"]),
        ("loss.label_smoothing=1", ["loss.label_smoothing", "[0, 1)"]),
        ("loss.triplet_margin=-0.3", ["loss.triplet_margin"]),
        ("loss.center_lr=-1", ["loss.center_lr", ">= 0"]),
        ("eval.metric=manhattan", ["eval.metric", "cosine, euclidean"]),
        ("eval.mode=matlab", ["eval.mode", "standard, official"]),
        ("train.amp=fp8", ["train.amp", "auto, none, bf16, fp16"]),
        ("model.last_stride=3", ["model.last_stride", "1, 2"]),
        ("model.name=resnet", ["model.name", "baseline, sen, deep_miner, bdb"]),
        ("train.device=tpu", ["train.device", "auto, cpu, cuda or cuda:N"]),
        ("train.device=cuda:x", ["train.device"]),
    ],
)
def test_values_outside_their_range_are_refused_at_load(override, words):
    with pytest.raises(ConfigError) as err:
        load_recipe("smoke", [override])
    for w in words:
        assert w in str(err.value), str(err.value)


def test_edges_of_the_ranges_are_accepted():
    r = load_recipe(
        "smoke",
        [
            "optim.gamma=1",
            "optim.weight_decay=0",
            "data.flip_p=0",
            "data.erasing_p=1",
            "train.seed=0",
            "data.pad=0",
            "loss.label_smoothing=0",
            "loss.triplet_margin=null",
            "data.num_identities=2",
        ],
    )
    assert (r.optim.gamma, r.optim.weight_decay, r.data.flip_p, r.loss.triplet_margin) == (
        1.0,
        0.0,
        0.0,
        None,
    )


def test_model_names_match_the_networks():
    assert set(typing.get_args(typing.get_type_hints(ModelConfig, include_extras=True)["name"])) == set(
        MODELS
    )


@pytest.mark.parametrize(
    "network, override, words",
    [
        ("sen", "model.options.r1=low", ["model.options.r1", "number"]),
        ("sen", "model.options.use_bs=maybe", ["model.options.use_bs", "true or false"]),
        ("sen", "model.options.tau=0.5", ["model.options.tau", "unknown", "r1, r2"]),
        ("baseline", "model.options.r2=0.3", ["model.options.r2", "'baseline'"]),
        ("bdb", "model.options.head=linear", ["model.options.head", "reduction, bnneck"]),
        ("deep_miner", "model.options.attention=se", ["model.options.attention", "sam+cham"]),
        ("deep_miner", "model.options.ie_blocks=2", ["model.options.ie_blocks", "list"]),
        ("deep_miner", "model.options.ie_blocks=[2, x]", ["model.options.ie_blocks[1]", "integer"]),
    ],
)
def test_model_options_are_typed_by_the_network_constructor(network, override, words):
    with pytest.raises(ConfigError) as err:
        load_recipe("smoke", [f"model.name={network}", override])
    for w in words:
        assert w in str(err.value), str(err.value)


def test_model_options_of_the_right_type_pass_through():
    r = load_recipe("smoke", ["model.name=deep_miner", "model.options.ie_blocks=[3]", "model.options.tau=1"])
    assert r.model.options["ie_blocks"] == [3] and r.model.options["tau"] == 1.0
    assert isinstance(r.model.options["tau"], float)


def test_bad_loss_term_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        load_recipe("smoke", ["loss.terms=[{branch: global, kind: arcface}]"])


def test_unknown_recipe_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe 'nope'.*smoke"):
        load_recipe("nope")
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop}\n")
    with pytest.raises(ConfigError, match="loops"):
        load_recipe(loop)


def test_user_recipe_file_inherits_a_shipped_one(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: sen_market1501\nmodel:\n  options:\n    use_bs: false\n")
    r = load_recipe(path)
    assert r.name == "mine" and r.model.options["use_bs"] is False and r.model.options["r2"] == 0.25


def test_base_may_be_a_list_applied_in_order(tmp_path):
    budget = tmp_path / "budget.yaml"
    budget.write_text("optim:\n  epochs: 7\n  warmup_epochs: 1\n  lr: 1.0e-3\n")
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"base: [sen_market1501, {budget}]\noptim:\n  lr: 2.0e-3\n")
    r = load_recipe(mine)
    assert (r.model.name, r.optim.epochs, r.optim.lr, r.optim.milestones) == ("sen", 7, 2e-3, [45, 90])
    mine.write_text("base: [sen_market1501, 3]\n")
    with pytest.raises(ConfigError, match="base: expected a recipe name or a list"):
        load_recipe(mine)


def test_round_trip_through_dict():
    r = load_recipe("deep_miner_market1501")
    assert recipe_from_dict(r.to_dict()) == r


def test_branch_output_is_what_losses_consume():
    # The criterion reads BranchOutput fields by name: a guard against reordering the NamedTuple.
    assert BranchOutput._fields == ("feat", "bn_feat", "logits")


def test_bdb_paper_recipe_is_the_papers_and_the_faithful_cpu_recipe_inherits_it():
    for name in ("bdb_market1501", "bdb_faithful_market1501_cpu"):
        r = load_recipe(name)
        assert r.loss.triplet_margin is None, name  # soft margin (BDB paper and code)
        assert r.model.options["head"] == "reduction", name
        assert r.eval.metric == "euclidean", name  # the authors' code
    cpu = load_recipe("bdb_faithful_market1501_cpu")
    assert (cpu.model.backbone, cpu.data.height, cpu.optim.epochs) == ("resnet18", 128, 20)
    assert cpu.train.log_branch_grads is True and cpu.loss.ramp_epochs == 0
    for name in ("bdb_ramp_market1501_cpu", "deep_miner_ramp_market1501_cpu"):
        r = load_recipe(name)
        assert r.loss.ramp_epochs == 10 and r.train.log_branch_grads is True, name


def test_the_deep_miner_ramp_recipe_differs_from_the_committed_runs_in_what_it_says_only():
    """The ramp row changes CHAM to SE's sigmoid gate and ramps the non-global losses; nothing else."""
    ramp = _dotted(load_recipe("deep_miner_ramp_market1501_cpu").to_dict())
    base = _dotted(load_recipe("deep_miner_market1501_cpu").to_dict())
    changed = {key for key in base.keys() | ramp.keys() if base.get(key) != ramp.get(key)}
    assert changed == {"name", "description", "model.options", "loss.ramp_epochs", "train.log_branch_grads"}
    assert base["model.options"]["cham_activation"] == "softmax_channels"
    assert ramp["model.options"] == {**base["model.options"], "cham_activation": "sigmoid"}


def _recorded(folder: str) -> dict:
    path = repo_root() / "results" / "market1501_cpu" / folder / "params.json"
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    return json.loads(path.read_text())["recipe"]


# options added after the committed runs, pinned in their recipes to what those runs trained
PINNED_SINCE = {"bdb": {"head": "bnneck"}, "deep_miner": {"cham_activation": "softmax_channels"}}


@pytest.mark.parametrize("network", ["bot", "bdb", "sen", "deep_miner"])
def test_cpu_recipes_still_train_what_the_committed_runs_recorded(network):
    """Options added later (BDB heads, CHAM activation, the ramp, the gradient log) must leave the
    recipe of each committed run meaning what its params.json recorded."""
    recorded = _recorded(network)
    now = load_recipe(f"{network}_market1501_cpu").to_dict()
    added = {"loss": {"ramp_epochs": 0}, "train": {"log_branch_grads": False}}  # new keys, off
    # how a run was executed (the Makefile's overrides, the data folder), not what was trained
    execution = {"train": {"seed", "progress", "keep_checkpoint", "snapshot_epochs", "checkpoint_every"}}
    execution["data"] = {"root"}
    for section, values in recorded.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if key in execution.get(section, set()):
                continue
            expected = {**value, **PINNED_SINCE.get(network, {})} if key == "options" else value
            assert now[section][key] == expected, f"{section}.{key}"
        for key, value in added.get(section, {}).items():
            assert key not in values and now[section][key] == value, f"{section}.{key}"


# The budget of the CPU recipes (reidlib/recipes/budgets/market1501_cpu.yaml) as dotted keys: data sizes,
# P x K, augmentation, loading, backbone, optimiser, epochs, schedule, evaluation and seed.
CPU_BUDGET_KEYS = (
    *(f"data.{k}" for k in ("dataset", "height", "width", "num_identities", "num_instances")),
    *(f"data.{k}" for k in ("flip_p", "pad", "erasing_p", "workers", "cache_images", "test_batch_size")),
    "model.backbone",
    "model.pretrained",
    "model.last_stride",
    *(f"optim.{k}" for k in ("name", "lr", "weight_decay", "momentum", "epochs", "warmup_epochs")),
    "optim.milestones",
    "optim.gamma",
    *(f"eval.{k}" for k in ("every", "metric", "mode", "flip", "rerank", "max_rank", "final_variants")),
    "train.seed",
    "train.amp",
    "train.progress",
    "train.log_branch_grads",
)
# keys added after the committed BoT run (absent from its params.json), as that run trained
RECORDED_LATER = {"train.log_branch_grads": False}
# the differences the recipe files document in their comments
CPU_BUDGET_DIFFERENCES = {
    "bdb_faithful_market1501_cpu": {"eval.metric": "euclidean", "train.log_branch_grads": True},
    "bdb_ramp_market1501_cpu": {"train.log_branch_grads": True},
    "deep_miner_ramp_market1501_cpu": {"train.log_branch_grads": True},
}
CPU_RECIPES = [name for name in recipe_names() if name.endswith("_market1501_cpu")]


def _dotted(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "options":
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_budget_file_sets_only_checked_keys():
    budget = _dotted(yaml.safe_load((recipes_dir() / "budgets" / "market1501_cpu.yaml").read_text()))
    assert set(budget) <= set(CPU_BUDGET_KEYS)
    assert len(CPU_RECIPES) == 7 and set(CPU_BUDGET_DIFFERENCES) <= set(CPU_RECIPES)


@pytest.mark.parametrize("name", CPU_RECIPES)
def test_cpu_recipes_have_the_budget_of_the_committed_bot_run(name):
    """A finished run's provenance is the reference: every *_market1501_cpu recipe trains with the
    budget results/market1501_cpu/bot/params.json recorded, but for the differences it documents."""
    recorded = {**RECORDED_LATER, **_dotted(_recorded("bot"))}
    expected = {key: recorded[key] for key in CPU_BUDGET_KEYS}
    expected.update(CPU_BUDGET_DIFFERENCES.get(name, {}))
    now = _dotted(load_recipe(name).to_dict())
    assert {key: now[key] for key in CPU_BUDGET_KEYS} == expected


# The ImageNet-initialised budget (reidlib/recipes/budgets/market1501_mnv2_cpu.yaml): the from-scratch
# budget's data, optimiser and evaluation, with MobileNetV2 from ImageNet, a shorter schedule, the
# measured memory format and the gradient log; its recipes differ from it only as they document.
MNV2_BUDGET_CHANGES = {
    "model.backbone": "mobilenet_v2",
    "model.pretrained": True,
    "optim.epochs": 12,
    "optim.warmup_epochs": 2,
    "optim.milestones": [8],
    "eval.every": 4,
    "train.log_branch_grads": True,
}
MNV2_PAPER_RECIPES = {
    "baseline": "bot_market1501",
    "sen": "sen_market1501",
    "deep_miner": "deep_miner_market1501",
    "bdb": "bdb_market1501",
}
MNV2_RECIPES = {
    "bot_market1501_mnv2_cpu": ("baseline", {}),
    "sen_market1501_mnv2_cpu": ("sen", {}),
    "deep_miner_market1501_mnv2_cpu": ("deep_miner", {}),
    "deep_miner_ramp_market1501_mnv2_cpu": ("deep_miner", {"loss.ramp_epochs": 2}),
    "bdb_market1501_mnv2_cpu": ("bdb", {"eval.metric": "euclidean"}),
}


def test_the_mnv2_budget_is_the_cpu_budget_but_for_what_it_says():
    scratch = _dotted(yaml.safe_load((recipes_dir() / "budgets" / "market1501_cpu.yaml").read_text()))
    mnv2 = _dotted(yaml.safe_load((recipes_dir() / "budgets" / "market1501_mnv2_cpu.yaml").read_text()))
    assert set(mnv2) <= set(CPU_BUDGET_KEYS) | {"train.channels_last"}
    changed = {k: mnv2[k] for k in mnv2 if scratch.get(k, RECORDED_LATER.get(k)) != mnv2[k]}
    assert changed == {**MNV2_BUDGET_CHANGES, "model.last_stride": 1, "train.channels_last": True}
    assert {name for name in recipe_names() if name.endswith("_mnv2_cpu")} == set(MNV2_RECIPES)


@pytest.mark.parametrize("name", sorted(MNV2_RECIPES))
def test_mnv2_cpu_recipes_have_the_mnv2_budget(name):
    network, differences = MNV2_RECIPES[name]
    budget = _dotted(yaml.safe_load((recipes_dir() / "budgets" / "market1501_mnv2_cpu.yaml").read_text()))
    now = _dotted(load_recipe(name).to_dict())
    assert now["model.name"] == network
    assert {k: now[k] for k in budget} == {**budget, **{k: v for k, v in differences.items() if k in budget}}
    for key, value in differences.items():
        assert now[key] == value, key
    paper = _dotted(load_recipe(MNV2_PAPER_RECIPES[network]).to_dict())  # the network and its losses
    for key in ("model.options", "loss.terms", "loss.triplet_margin", "loss.label_smoothing"):
        assert now[key] == paper[key], key
