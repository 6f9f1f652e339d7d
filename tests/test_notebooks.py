"""The papermill runner: parameter checks before any work, executed copies and outputs per run."""

from __future__ import annotations

import ast
import json

import nbformat
import pytest

from reidlib.notebooks import runner as notebooks
from reidlib.notebooks.runner import NotebookRunError, declared_parameters, notebook_paths, plan

PARAM_SETS = ["demo", "market1501", "dukemtmc", "cuhk03", "msmt17"]


def test_the_five_numbered_notebooks_exist():
    stems = [p.stem for p in notebook_paths()]
    assert stems == [
        "01_data_statistics",
        "02_erasing_masks",
        "03_training",
        "04_ablations",
        "05_sota_comparison",
    ]


@pytest.mark.parametrize("params", PARAM_SETS)
def test_every_committed_parameter_file_fits_its_notebook(params):
    jobs = plan(params)
    assert len(jobs) == 5
    for job in jobs:
        assert set(job.parameters) <= set(declared_parameters(job.notebook))


def test_single_notebook_parameter_files_fit_their_notebook():
    # sets that exist for one notebook only, e.g. 03_training/market1501_cpu.yaml (the CPU-budget runs)
    for nb in notebook_paths():
        for name in set(notebooks.available_params(nb)) - set(PARAM_SETS):
            (job,) = plan(name, only=[nb.stem[:2]])
            assert set(job.parameters) <= set(declared_parameters(nb)), (nb.stem, name)


def test_only_runs_notebooks_in_the_order_given():
    assert [p.stem[:2] for p in notebook_paths(["03", "01", "02", "04", "05"])] == [
        "03",
        "01",
        "02",
        "04",
        "05",
    ]


def test_every_notebook_has_one_literal_parameters_cell_with_output_dir():
    for path in notebook_paths():
        declared = declared_parameters(path)
        assert declared["output_dir"] == "", path.stem


def _write_notebook(folder, stem, code, params_yaml=None, params_name="demo"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell('x = 1  # a number\ndata_root = ""  # data\noutput_dir = ""  # outputs')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem}"), cell, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, folder / f"{stem}.ipynb")
    if params_yaml is not None:
        (folder / "params" / stem).mkdir(parents=True, exist_ok=True)
        (folder / "params" / stem / f"{params_name}.yaml").write_text(params_yaml)


@pytest.fixture
def fake_notebooks(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(notebooks, "notebooks_dir", lambda: folder)
    return folder


def test_unknown_parameter_is_refused_before_anything_runs(fake_notebooks, tmp_path):
    code = (
        "from pathlib import Path\nPath(output_dir, 'ran.txt').parent.mkdir(parents=True, exist_ok=True)\n"
        "Path(output_dir, 'ran.txt').write_text(str(x))"
    )
    _write_notebook(fake_notebooks, "01_first", code, "x: 2\n")
    _write_notebook(fake_notebooks, "02_second", code, "y: 3\n")
    with pytest.raises(NotebookRunError, match=r"unknown parameter\(s\) \['y'\] for 02_second"):
        notebooks.run("demo", out=tmp_path / "run")
    assert not (tmp_path / "run" / "01_first").exists()  # the first notebook did not run either
    with pytest.raises(NotebookRunError, match="no parameter file"):
        notebooks.run("market1501", out=tmp_path / "run")
    with pytest.raises(NotebookRunError, match="no selected notebook declares"):
        plan("demo", only=["01"], overrides=["zzz=1"])
    with pytest.raises(NotebookRunError, match="no notebook matches"):
        plan("demo", only=["07"])


@pytest.mark.slow
def test_run_executes_with_parameters_into_the_run_folder(fake_notebooks, tmp_path):
    code = (
        "from pathlib import Path\nPath(output_dir).mkdir(parents=True, exist_ok=True)\n"
        "_ = Path(output_dir, 'ran.txt').write_text(str(x))"  # no stray value under the cell
    )
    _write_notebook(fake_notebooks, "01_first", code, "x: 2\n")
    run_dir = notebooks.run("demo", overrides=["x=5"], out=tmp_path / "run")
    assert (run_dir / "01_first" / "ran.txt").read_text() == "5"  # --set beat the file, output_dir injected
    executed = nbformat.read(run_dir / "01_first.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["notebooks"][0]["status"] == "ok" and record["notebooks"][0]["parameters"]["x"] == 5


@pytest.mark.slow
def test_a_failing_notebook_gives_a_nonzero_exit(fake_notebooks, tmp_path, capsys):
    _write_notebook(fake_notebooks, "01_bad", "raise RuntimeError('boom')", "{}\n")
    assert notebooks.main("demo", [], [], str(tmp_path / "run")) == 1
    assert "boom" in capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["notebooks"][0]["status"] == "failed"


def test_a_relative_data_root_is_read_from_the_callers_folder(fake_notebooks, tmp_path, monkeypatch):
    # the kernel runs in notebooks/, so "data/x" given on the command line must not be read from there
    _write_notebook(fake_notebooks, "01_first", "pass", 'data_root: ""\n')
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets" / "market1501").mkdir(parents=True)  # a data_root must exist
    (job,) = plan("demo", overrides=["data_root=datasets/market1501"])
    assert job.parameters["data_root"] == str(tmp_path / "datasets" / "market1501")
    (job,) = plan("demo")
    assert job.parameters["data_root"] == ""  # empty keeps its meaning: the notebook's default


def test_annotated_parameters_are_read_and_every_notebook_annotates_its_own(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('r1: float = 0.1  # ratio\nnames: list[str] = ["a"]\nplain = 3')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert declared_parameters(path) == {"r1": 0.1, "names": ["a"], "plain": 3}
    for path in notebook_paths():  # papermill --help-notebook shows each parameter's type
        cells = nbformat.read(path, as_version=4).cells
        source = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
        assert all(isinstance(s, ast.AnnAssign) for s in ast.parse(source).body), path.stem


def test_relative_path_parameters_are_read_from_the_callers_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert notebooks.absolute_paths("run_dir", "runs/a") == str(tmp_path / "runs" / "a")
    assert notebooks.absolute_paths("real_runs_dirs", ["x", "/abs"]) == [str(tmp_path / "x"), "/abs"]
    assert notebooks.absolute_paths("imagenet_checkpoint", "r/last.pt") == str(tmp_path / "r" / "last.pt")
    assert notebooks.absolute_paths("checkpoint", "") == ""  # empty keeps its meaning
    assert notebooks.absolute_paths("recipe", "smoke") == "smoke"  # not a path
    (job,) = plan("demo", only=["03"], overrides=["run_dir=here"])
    assert job.parameters["run_dir"] == str(tmp_path / "here")


_PNG_CODE = (
    "from pathlib import Path\nfrom matplotlib.figure import Figure\n"
    "Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
    "fig = Figure(figsize=(2, 2))\nfig.add_subplot().plot([0, 1])\n"
)


@pytest.mark.slow
def test_a_figure_written_but_not_displayed_fails_the_run(fake_notebooks, tmp_path):
    code = _PNG_CODE + "fig.savefig(Path(output_dir, 'f.png'))\nfig"  # a Figure without pyplot: shown as text
    _write_notebook(fake_notebooks, "01_hidden", code, "{}\n")
    with pytest.raises(NotebookRunError, match=r"f\.png was written but is not displayed"):
        notebooks.run("demo", out=tmp_path / "run")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["notebooks"][0]["status"] == "figures not shown"


@pytest.mark.slow
def test_a_displayed_figure_passes_and_the_summary_table_is_printed(fake_notebooks, tmp_path, capsys):
    code = (
        _PNG_CODE
        + "from reidlib.notebooks import reporting\nreporting.show_figure(fig, Path(output_dir, 'f.png'))"
    )
    _write_notebook(fake_notebooks, "01_shown", code, "{}\n")
    assert notebooks.main("demo", [], [], str(tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert "[1/1] 01_shown" in out
    table = out[out.index("notebook  ") :].splitlines()
    assert table[1].split()[0] == "01_shown" and table[1].split()[2] == "ok"
    assert table[2].split()[0] == "total"


def test_ctrl_c_stops_the_runner_with_one_line_and_exit_130(fake_notebooks, tmp_path, monkeypatch, capsys):
    _write_notebook(fake_notebooks, "01_first", "pass", "{}\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    assert notebooks.main("demo", [], [], str(tmp_path / "run")) == 130
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted after")
    assert "01_first" in captured.out and "interrupted" in captured.out  # the summary says where it stopped
