"""Run the numbered notebooks headless with papermill into ``results/<run_id>/``.

``python -m reidlib notebooks run --params demo`` executes every ``notebooks/NN_*.ipynb`` with the
parameters in ``notebooks/params/<notebook>/<params>.yaml`` (the committed demo and GPU settings),
each writing its figures, tables and metrics under ``results/<run_id>/<notebook>/`` and its executed
copy as ``results/<run_id>/<notebook>.ipynb``. Parameter files and ``--set`` values are checked
against each notebook's cell tagged ``parameters`` before any kernel starts: their names, their types
(the cell's annotations, ``r1: float = 0.1``), their ranges (:data:`RANGES`, which each notebook's
first code cell checks again when it runs on its own), that ``data_root`` and ``checkpoint`` exist (the
checkpoint of a later notebook at its turn: an earlier notebook of the run may write it), and none
that the runner sets itself (``output_dir``: ``--out`` chooses the run folder). A run folder is
written only where its files are the runner's own (:func:`check_run_folder`; ``--overwrite`` lifts
that). What the cells print comes to the terminal as it is printed (a training's epoch lines included).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

from reidlib.config import ConfigError, yaml_load
from reidlib.notebooks.kernel import LOG_LEVEL_VAR
from reidlib.notebooks.reporting import foreign_output, mark_output_folder
from reidlib.training.provenance import git_state
from reidlib.utils.checks import Bounds
from reidlib.utils.errors import shown
from reidlib.utils.fileio import atomic_write_json
from reidlib.utils.paths import repo_root, results_root
from reidlib.utils.threads import apply_wait_policy


class NotebookRunError(ValueError):
    """A parameter file, a parameter name or a notebook is not what the runner expects."""


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def notebook_paths(only: Sequence[str] = ()) -> list[Path]:
    """The numbered notebooks in order; ``only`` selects by stem or number prefix (``03``), and runs
    them in the order given (``make reproduce`` trains in 03 before 02 draws that network's masks)."""
    paths = sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return paths
    matches = {o: [p for p in paths if p.stem == o or p.stem.startswith(f"{o}_")] for o in only}
    missing = [o for o, found in matches.items() if not found]
    if missing:
        raise NotebookRunError(f"no notebook matches {missing}; notebooks: {[p.stem for p in paths]}")
    return list(dict.fromkeys(p for o in only for p in matches[o]))


def _parameter_nodes(path: Path) -> list[tuple[str, ast.expr, ast.expr | None]]:
    """(name, value, annotation or None) of each assignment in the cell tagged ``parameters``."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise NotebookRunError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    nodes = []
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, node.annotation  # `r1: float = 0.1`: papermill shows it
        else:
            continue
        if isinstance(target, ast.Name):
            nodes.append((target.id, node.value, annotation))
    return nodes


def declared_parameters(path: Path) -> dict[str, Any]:
    """Names and default values of the cell tagged ``parameters`` (literals only, by convention)."""
    params = {}
    for name, value, _ in _parameter_nodes(path):
        try:
            params[name] = ast.literal_eval(value)
        except ValueError as err:
            raise NotebookRunError(f"{path}: parameter {name} is not a literal ({err})") from err
    return params


def declared_types(path: Path) -> dict[str, str]:
    """The annotation of each annotated parameter, as written (``"float"``, ``"list[str]"``)."""
    return {name: ast.unparse(annotation) for name, _, annotation in _parameter_nodes(path) if annotation}


_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": (int, float),  # papermill passes 1 for 1.0; the notebook computes the same
    "bool": bool,
    "dict": dict,
    "list": list,
}


def fits(value: Any, annotation: str) -> bool:
    """Whether ``value`` has the type ``annotation`` names (str, int, float, bool, dict, list, list[T],
    dict[K, V], T | None); an annotation of another form is not checked (True)."""
    return _fits(value, ast.parse(annotation, mode="eval").body) is not False


def _fits(value: Any, node: ast.expr) -> bool | None:
    """True or False, or None when ``node`` is an annotation this check does not know."""
    if isinstance(node, ast.Constant) and node.value is None:
        return value is None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = (_fits(value, node.left), _fits(value, node.right))
        return True if True in sides else None if None in sides else False
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        if node.value.id == "dict":
            return isinstance(value, dict)
        if node.value.id != "list":
            return None
        if not isinstance(value, list):
            return False
        items = [_fits(v, node.slice) for v in value]
        return False if False in items else None if None in items else True
    if not isinstance(node, ast.Name) or node.id not in _TYPES:
        return None
    if isinstance(value, bool) and node.id in ("int", "float"):
        return False
    return isinstance(value, _TYPES[node.id])


# The range of each numeric notebook parameter, by name (a name means one thing in every notebook that
# declares it); a list's range holds for each of its items. The runner checks them before a kernel starts,
# and each notebook's first code cell again (check_parameters) when papermill or JupyterLab runs it. The
# ratios and the threshold are the networks' own (SEN's r1 and r2, Deep Miner's tau, BDB's block height).
_RATIO = ("a ratio", Bounds(0.0, 1.0, high_open=True))  # erasing every cell leaves nothing to learn from
_THRESHOLD = ("a threshold", Bounds(0.0, 1.0))
_COUNT = ("a count", Bounds(1))
_SEED = ("a seed", Bounds(0))
RANGES: dict[str, tuple[str, Bounds]] = {
    "r1": _RATIO,
    "r2": _RATIO,
    "r1_values": _RATIO,
    "r2_values": _RATIO,
    "tau": _THRESHOLD,
    "tau_values": _THRESHOLD,
    "block_h_ratio": ("a ratio", Bounds(0.0, 1.0)),
    "p": ("an exponent", Bounds(1)),
    "train_epochs": _COUNT,
    "imagenet_epochs": ("a count (0: none)", Bounds(0)),
    "num_images": _COUNT,
    "stats_images": _COUNT,
    "samples_per_camera": _COUNT,
    "num_queries": _COUNT,
    "top_k": _COUNT,
    "seed": _SEED,
    "query_seed": _SEED,
}


def parameter_problem(name: str, value: Any, annotation: str | None) -> str | None:
    """What is wrong with ``value`` for the parameter ``name`` declared with ``annotation``: its type,
    then its range (:data:`RANGES`); None when nothing is."""
    if annotation and not fits(value, annotation):
        return f"parameter {name}: expected {annotation}, got {shown(value, 80)}"
    if name not in RANGES:
        return None
    what, bounds = RANGES[name]
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, (int, float)) and not isinstance(item, bool) and not bounds.contains(item):
            within = f" (in {shown(value, 80)})" if isinstance(value, list) else ""
            return f"parameter {name}: expected {what} {bounds}, got {item!r}{within}"
    return None


def check_parameters(notebook: str, namespace: Mapping[str, Any]) -> None:
    """The check a notebook's first code cell makes, in its own kernel, before any work: the value of each
    parameter of its cell tagged ``parameters`` (as papermill or the user left it in ``namespace``)
    against its annotation and its range. Raises :class:`NotebookRunError` naming the first bad one."""
    path = notebooks_dir() / f"{notebook}.ipynb"
    types = declared_types(path)
    for name in declared_parameters(path):
        problem = parameter_problem(name, namespace[name], types.get(name)) if name in namespace else None
        if problem:
            raise NotebookRunError(f"{notebook}: {problem}")


def _show(path: Path) -> str:
    """A path as the user would type it: relative to the repository when inside it."""
    try:
        return str(path.relative_to(repo_root()))
    except ValueError:
        return str(path)


def params_file(notebook: Path, params: str) -> Path:
    return notebooks_dir() / "params" / notebook.stem / f"{params}.yaml"


def available_params(notebook: Path) -> list[str]:
    return sorted(p.stem for p in (notebooks_dir() / "params" / notebook.stem).glob("*.yaml"))


RUNNER_SETS = ("output_dir",)  # the runner's own: <run folder>/<notebook>


def is_path_parameter(name: str) -> bool:
    """Parameters that hold paths, by their names: ``*_root``, ``*_dir``, ``*_dirs``, ``checkpoint`` and
    ``*_checkpoint``."""
    return name == "checkpoint" or name.endswith(("_checkpoint", "_root", "_dir", "_dirs"))


def absolute_paths(name: str, value: Any) -> Any:
    """A path parameter's relative paths made absolute from the caller's working directory, as papermill
    reads its own paths (the kernel runs in notebooks/, so it would read them from there); "" stays ""."""
    if not is_path_parameter(name):
        return value
    if isinstance(value, str):
        return str(Path(value).expanduser().resolve()) if value else value
    if isinstance(value, list):
        return [absolute_paths(name, v) for v in value]
    return value


@dataclass
class NotebookJob:
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)


def plan(params: str, only: Sequence[str] = (), overrides: Sequence[str] = ()) -> list[NotebookJob]:
    """Resolve and check every notebook's parameters (names, types, data_root's folder); raises before
    any notebook runs."""
    parsed = [_parse_set(text) for text in overrides]
    jobs, used = [], set()
    for nb in notebook_paths(only):
        path = params_file(nb, params)
        if not path.is_file():
            raise NotebookRunError(
                f"{nb.stem}: no parameter file {_show(path)}; available: {available_params(nb) or 'none'}"
            )
        values = _read_params_file(path)
        declared = declared_parameters(nb)
        source = dict.fromkeys(values, _show(path))
        for name, value in parsed:
            if name in declared:
                values[name], source[name] = value, f"--set {name}"
                used.add(name)
        values = {name: absolute_paths(name, value) for name, value in values.items()}
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise NotebookRunError(
                f"{_show(path)}: unknown parameter(s) {unknown} for {nb.stem}; it declares {sorted(declared)}"
            )
        _check_values(nb, values, source)
        jobs.append(NotebookJob(nb, values))
    unused = sorted({n for n, _ in parsed} - used)
    if unused:
        raise NotebookRunError(f"--set {unused}: no selected notebook declares such a parameter")
    return jobs


def _parse_set(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise NotebookRunError(f"--set {shown(text)}: expected name=value")
    name, value = (part.strip() for part in text.split("=", 1))
    if name in RUNNER_SETS:
        raise NotebookRunError(
            f"--set {name}: the runner sets {name} itself (<run folder>/<notebook>); choose the run folder "
            "with --out instead"
        )
    try:
        return name, yaml_load(value)
    except (yaml.YAMLError, ConfigError) as err:
        raise NotebookRunError(f"--set {shown(text)}: {' '.join(str(err).split())}") from None


def _read_params_file(path: Path) -> dict[str, Any]:
    try:
        values = yaml_load(path.read_text()) or {}
    except (yaml.YAMLError, ConfigError) as err:
        raise NotebookRunError(f"{_show(path)}: {' '.join(str(err).split())}") from None
    if not isinstance(values, dict):
        raise NotebookRunError(f"{path}: expected a mapping of parameter names to values")
    ignored = sorted(set(values) & set(RUNNER_SETS))
    if ignored:
        raise NotebookRunError(f"{_show(path)}: {ignored} are set by the runner (choose --out instead)")
    return values


def _check_values(nb: Path, values: dict[str, Any], source: dict[str, str]) -> None:
    """Each value against its annotation and its range; a non-empty data_root must be a folder that
    exists."""
    types = declared_types(nb)
    for name, value in values.items():
        problem = parameter_problem(name, value, types.get(name))
        if problem:
            raise NotebookRunError(f"{nb.stem}: {problem} (from {source.get(name, 'the parameter file')})")
    root = values.get("data_root")
    if isinstance(root, str) and root and not Path(root).is_dir():
        raise NotebookRunError(
            f"{nb.stem}: parameter data_root: {root} is not a folder (from {source['data_root']})"
        )


def missing_inputs(job: NotebookJob) -> str | None:
    """What ``job`` would read and cannot: a ``checkpoint`` that does not exist. The first notebook of a
    run is checked before anything runs; a later one at its turn (an earlier notebook of the run, e.g.
    03 before 02 in ``make demo``, may write it)."""
    ckpt = job.parameters.get("checkpoint")
    if not isinstance(ckpt, str) or not ckpt or Path(ckpt).is_file():
        return None
    return f"{job.notebook.stem}: parameter checkpoint: {ckpt} does not exist (no such file)"


def _executed_copy(path: Path, stem: str) -> bool:
    """Whether ``path`` is papermill's executed copy of the notebook ``stem`` (its metadata names it)."""
    try:
        source = json.loads(path.read_text())["metadata"]["papermill"]["input_path"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(source, str) and Path(source).name == f"{stem}.ipynb"


def _recorded_notebooks(path: Path) -> set[str] | None:
    """The notebooks a runner's run.json at ``path`` records; None when the file is something else."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    entries = record.get("notebooks") if isinstance(record, dict) and "params" in record else None
    if not isinstance(entries, list):
        return None
    return {e["notebook"] for e in entries if isinstance(e, dict) and isinstance(e.get("notebook"), str)}


def check_run_folder(run_dir: Path, jobs: Sequence[NotebookJob], *, overwrite: bool = False) -> None:
    """Refuse, before any kernel starts, a run folder whose files in the runner's way are not its own:
    a ``run.json`` that is not a runner's record, a ``<notebook>.ipynb`` that is not an executed copy of
    that notebook, a ``<notebook>/`` output folder that holds files the notebook did not write
    (:func:`~reidlib.notebooks.reporting.foreign_output`; an unmarked one counts as its own when the
    folder's run.json records the notebook, or its executed copy lies beside it). ``overwrite`` lets the
    run write over them (nothing is removed)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise NotebookRunError(f"{_show(run_dir)}: is a file, expected a run folder (--out)")
    if overwrite:
        return
    advice = "choose another --out, or pass --overwrite to write over it"
    record = run_dir / "run.json"
    recorded = _recorded_notebooks(record) if record.exists() else set()
    if recorded is None:
        raise NotebookRunError(f"{_show(record)}: not the record of a notebook run; {advice}")
    for job in jobs:
        stem = job.notebook.stem
        executed = run_dir / f"{stem}.ipynb"
        if executed.exists() and not _executed_copy(executed, stem):
            raise NotebookRunError(f"{_show(executed)}: not an executed copy of {stem}; {advice}")
        problem = foreign_output(run_dir / stem, stem)
        if problem and stem not in recorded and not executed.exists():
            raise NotebookRunError(f"{problem}; {advice}")


def figure_problems(outputs: Sequence[Mapping[str, Any]], pngs: Iterable[Path]) -> list[str]:
    """What a reader of the notebook would miss: each PNG in ``pngs`` (the figures the notebook wrote)
    must appear, byte for byte, as an ``image/png`` output among ``outputs``, no output may be a bare
    ``<Figure ...>`` text (a figure that was never drawn), and no cell may end with a value that has no
    rich display (a ``PosixPath``, a dict). Empty when all is well."""
    shown, problems = set(), []
    for output in outputs:
        data = output.get("data", {})
        if "image/png" in data:
            shown.add(base64.b64decode(data["image/png"]))
        texts = [data.get("text/plain", ""), output.get("text", "")] if "image/png" not in data else []
        for text in texts:
            text = "".join(text) if isinstance(text, list) else text
            if "<Figure size" in text:
                problems.append(f"a figure is shown as text, not as an image: {text.strip()[:60]!r}")
        if output.get("output_type") == "execute_result" and set(data) <= {"text/plain"}:
            # a value a cell happened to end with (a path, a dict): a table or a figure has a rich form
            problems.append(f"a stray value under a cell: {''.join(data.get('text/plain', ''))[:60]!r}")
    for png in sorted(pngs):
        if png.read_bytes() not in shown:
            problems.append(f"{_show(png)} was written but is not displayed in the notebook")
    return problems


def notebook_outputs(path: Path) -> list[dict[str, Any]]:
    nb = nbformat.read(path, as_version=4)
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def kernel_name() -> str:
    """``reidlib`` when that kernel is installed (``make install``), else ``python3`` (this interpreter:
    the runner puts it first on PATH)."""
    from reidlib.notebooks.kernel import KERNEL_NAME, is_installed

    return KERNEL_NAME if is_installed() else "python3"


def run(
    params: str = "demo",
    *,
    only: Sequence[str] = (),
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    overwrite: bool = False,
    started: dict[str, Any] | None = None,
) -> Path:
    """Execute the notebooks; returns the run folder. Raises before any runs on a run folder whose files
    in its way the runner did not write, unless ``overwrite`` (:func:`check_run_folder`); then on the first
    notebook that fails, or whose figures are not displayed in it (``figure_problems``). ``started``
    receives this run's ``record`` (what run.json holds) once its first notebook starts: the summary to
    print, whatever happens."""
    jobs = plan(params, only, overrides)
    run_dir = Path(out) if out else results_root() / f"{params}-{time.strftime('%Y%m%d-%H%M%S')}"
    missing = missing_inputs(jobs[0]) if jobs else None  # the later ones: at their turn
    if missing:
        raise NotebookRunError(missing)
    check_run_folder(run_dir, jobs, overwrite=overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    apply_wait_policy()  # inherited by every kernel (reidlib.utils.threads)
    os.environ.setdefault(LOG_LEVEL_VAR, "CRITICAL")  # errors come back in the cells' outputs
    # The kernel must be this interpreter (with reidlib installed), whatever PATH says.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    kernel = kernel_name()
    record: dict[str, Any] = {"params": params, "overrides": list(overrides), **git_state(), "notebooks": []}
    if started is not None:
        started["record"] = record
    print(
        f"running {len(jobs)} notebook(s), parameters '{params}', kernel {kernel}, into {_show(run_dir)}",
        flush=True,
    )
    for number, job in enumerate(jobs, 1):
        stem = job.notebook.stem
        parameters = {**job.parameters}
        if "output_dir" in declared_parameters(job.notebook):
            parameters["output_dir"] = str((run_dir / stem).resolve())
        print(f"[{number}/{len(jobs)}] {stem}", flush=True)
        start = time.perf_counter()
        entry = {"notebook": stem, "parameters": parameters, "status": "failed"}
        record["notebooks"].append(entry)
        try:
            missing = missing_inputs(job)  # what an earlier notebook of the run should have written
            if missing:
                raise NotebookRunError(missing)
            _execute(job, parameters, run_dir, kernel)
            problems = figure_problems(
                notebook_outputs(run_dir / f"{stem}.ipynb"), (run_dir / stem).rglob("*.png")
            )
            if problems:
                entry["status"] = "figures not shown"
                raise NotebookRunError(f"{stem}: " + "; ".join(problems))
            entry["status"] = "ok"
        except KeyboardInterrupt:
            entry["status"] = "interrupted"
            raise
        finally:
            entry["seconds"] = round(time.perf_counter() - start, 1)
            atomic_write_json(run_dir / "run.json", record)
            print(f"    {stem}: {entry['status']} in {entry['seconds']:.0f} s", flush=True)
    return run_dir


def _execute(job: NotebookJob, parameters: dict[str, Any], run_dir: Path, kernel: str) -> None:
    """papermill on ``job`` into ``run_dir/<stem>.ipynb``, its output folder made and marked first; what
    its cells print is written to the terminal as it arrives (:class:`_CellPrints`)."""
    import papermill

    stem = job.notebook.stem
    mark_output_folder(run_dir / stem, stem)  # the notebook's own (checked, or --overwrite)
    papermill.execute_notebook(
        str(job.notebook),
        str(run_dir / f"{stem}.ipynb"),
        parameters=parameters,
        cwd=str(notebooks_dir()),
        progress_bar={
            "desc": f"  {stem}",
            "unit": "cell",
            "leave": False,
            "file": sys.stdout,
            "disable": None,
        },  # a bar on a terminal only; a log gets the lines
        stdout_file=_CellPrints(),
        kernel_name=kernel,
    )


class _CellPrints:
    """Where papermill sends what the cells print, as it arrives: each line, indented, above the
    progress bar (a training cell reports its epochs while it runs)."""

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> None:
        from tqdm import tqdm

        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            tqdm.write(f"      {line}", file=sys.stdout)

    def flush(self) -> None:
        sys.stdout.flush()


def summary_table(record: Mapping[str, Any]) -> str:
    """The run's notebooks as a small text table: notebook, seconds, status."""
    rows = [(e["notebook"], f"{e['seconds']:.0f}", e["status"]) for e in record["notebooks"]]
    total = sum(e["seconds"] for e in record["notebooks"])
    rows.append(("total", f"{total:.0f}", ""))
    width = max(len("notebook"), *(len(r[0]) for r in rows))
    lines = [f"{'notebook':<{width}}  {'seconds':>7}  status"]
    lines += [f"{name:<{width}}  {secs:>7}  {status}" for name, secs, status in rows]
    return "\n".join(lines)


def _print_summary(record: Mapping[str, Any] | None, run_dir: Path | None) -> None:
    """This run's summary table (none when no notebook started: never an older run's) and its folder."""
    if record and record["notebooks"]:
        print(summary_table(record))
    if run_dir is not None and record:
        print(f"results: {_show(run_dir)}")


def main(
    params: str, only: Sequence[str], overrides: Sequence[str], out: str | None, overwrite: bool = False
) -> int:
    start, started = time.perf_counter(), {}
    run_dir = Path(out) if out else None
    try:
        run_dir = run(params, only=only, overrides=overrides, out=out, overwrite=overwrite, started=started)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted after {time.perf_counter() - start:.0f} s; the notebooks that finished are in "
            "the results folder below",
            file=sys.stderr,
        )
        _print_summary(started.get("record"), run_dir)
        return 130
    except NotebookRunError as err:  # bad input: a parameter, a notebook name, a figure problem
        print(f"error: {err}", file=sys.stderr)
        _print_summary(started.get("record"), run_dir)
        return 2
    except Exception as err:  # papermill's execution error carries the failing cell
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        _print_summary(started.get("record"), run_dir)
        return 1
    _print_summary(started.get("record"), run_dir)
    print(json.dumps({"run_dir": str(run_dir)}))
    return 0
