"""What a reader sees in a notebook: figures as images, the `reidlib` kernel, outputs kept out of git."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess

import nbformat
import pytest
from PIL import Image

from reidlib.notebooks import kernel
from reidlib.notebooks.runner import figure_problems, notebook_outputs, notebook_paths
from reidlib.utils.paths import repo_root


def _png(tmp_path, name, colour):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    return path


def _image_output(path):
    return {
        "output_type": "display_data",
        "data": {"image/png": base64.b64encode(path.read_bytes()).decode(), "text/plain": "<Image>"},
    }


def test_a_written_figure_that_is_displayed_is_fine(tmp_path):
    png = _png(tmp_path, "a.png", "red")
    assert figure_problems([_image_output(png)], [png]) == []


def test_a_figure_on_disk_but_not_in_the_notebook_is_reported(tmp_path):
    shown, hidden = _png(tmp_path, "a.png", "red"), _png(tmp_path, "b.png", "blue")
    problems = figure_problems([_image_output(shown)], [shown, hidden])
    assert len(problems) == 1 and "b.png" in problems[0]


def test_a_bare_figure_text_is_reported_but_not_beside_its_image(tmp_path):
    bare = {"output_type": "display_data", "data": {"text/plain": "<Figure size 580x340 with 1 Axes>"}}
    stream = {"output_type": "stream", "name": "stdout", "text": "<Figure size 580x340 with 1 Axes>\n"}
    assert len(figure_problems([bare, stream], [])) == 2
    png = _png(tmp_path, "a.png", "red")
    both = _image_output(png)
    both["data"]["text/plain"] = "<Figure size 580x340 with 1 Axes>"
    assert figure_problems([both], [png]) == []


def test_a_stray_value_under_a_cell_is_reported_but_not_a_table():
    path = {"output_type": "execute_result", "data": {"text/plain": "PosixPath('/x/y.png')"}}
    table = {"output_type": "execute_result", "data": {"text/plain": "   a\n0  1", "text/html": "<table/>"}}
    assert figure_problems([path], []) == ["a stray value under a cell: \"PosixPath('/x/y.png')\""]
    assert figure_problems([table], []) == []


def test_every_notebook_names_the_reidlib_kernel():
    for path in notebook_paths():
        spec = nbformat.read(path, as_version=4).metadata.kernelspec
        assert spec["name"] == "reidlib", path.name


@pytest.fixture
def reidlib_kernel(tmp_path, monkeypatch):
    """The kernel spec as `make install` writes it, here into a prefix of the test's own."""
    spec = kernel.install(prefix=tmp_path / "prefix")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "prefix" / "share" / "jupyter"))
    return spec


@pytest.mark.slow
def test_the_kernel_applies_the_thread_policy_and_keeps_the_users(reidlib_kernel, monkeypatch):
    from nbclient import NotebookClient

    assert json.loads(reidlib_kernel.read_text())["argv"][1:3] == ["-m", "reidlib.notebooks.kernel"]
    for exported, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        if exported is None:
            monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        else:
            monkeypatch.setenv("OMP_WAIT_POLICY", exported)
        nb = nbformat.v4.new_notebook()
        code = "import os, sys\nprint(os.environ.get('OMP_WAIT_POLICY'), sys.executable)"
        nb.cells = [nbformat.v4.new_code_cell(code)]
        NotebookClient(nb, kernel_name="reidlib", timeout=120).execute()
        policy, python = nb.cells[0].outputs[0]["text"].split()
        assert policy == expected
        assert os.path.samefile(python, json.loads(reidlib_kernel.read_text())["argv"][0])


@pytest.mark.slow
def test_notebook_01_through_the_reidlib_kernel_shows_every_figure_it_writes(reidlib_kernel, tmp_path):
    import papermill

    out_dir = tmp_path / "01"
    executed = tmp_path / "01.ipynb"
    papermill.execute_notebook(
        str(notebook_paths(["01"])[0]),
        str(executed),
        kernel_name="reidlib",
        parameters={"output_dir": str(out_dir)},
        cwd=str(repo_root() / "notebooks"),
        progress_bar=False,
    )
    pngs = sorted(out_dir.glob("*.png"))
    assert len(pngs) == 3  # cameras, identities, samples: one dataset
    outputs = notebook_outputs(executed)
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    assert figure_problems(outputs, pngs) == []


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_a_notebook_saved_with_outputs_is_committed_without_them(tmp_path):
    """`make install` puts nbstripout in as this clone's git filter; what is committed has no outputs."""
    nbstripout = repo_root() / ".venv" / "bin" / "nbstripout"
    exe = str(nbstripout) if nbstripout.exists() else "nbstripout"
    repo = tmp_path / "clone"
    repo.mkdir()
    _git("init", "-q", cwd=repo)
    subprocess.run([exe, "--install"], cwd=repo, check=True)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3)
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)]
    nb.cells = [cell]
    nbformat.write(nb, repo / "saved.ipynb")
    _git("add", "saved.ipynb", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "saved from JupyterLab", cwd=repo)
    committed = nbformat.reads(_git("show", "HEAD:saved.ipynb", cwd=repo), as_version=4)
    assert committed.cells[0].outputs == [] and committed.cells[0].execution_count is None
    assert nbformat.read(repo / "saved.ipynb", as_version=4).cells[0].outputs  # the working copy keeps them
    assert _git("status", "--porcelain", cwd=repo) == ""  # and git sees nothing to commit


def test_the_notebooks_git_would_commit_carry_no_outputs():
    """The index copy (what a commit takes; the working copy on a fresh clone): no outputs, no counts."""
    root = repo_root()
    probe = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True)
    in_git = probe.returncode == 0
    for path in notebook_paths():
        rel = path.relative_to(root).as_posix()
        text = _git("show", f":{rel}", cwd=root) if in_git else path.read_text()
        nb = nbformat.reads(text, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, rel
