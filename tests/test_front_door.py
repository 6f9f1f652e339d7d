"""What a newcomer meets first works as written: the README is short, its links resolve, its Python quick
start runs (and its network learns far above chance), the shell commands of the getting-started page run
in a plain shell, and the documentation site carries each notebook's figures."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from reidlib.data.datasets import load_dataset
from reidlib.evaluation.metrics import evaluate_rank
from reidlib.notebooks.site import build_site, home_page
from reidlib.utils.paths import repo_root

ROOT = repo_root()
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "CHANGELOG.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ```<language> blocks of a Markdown text (indented ones too, as in a list)."""
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, re.S | re.M)


def shell_lines(block: str) -> list[str]:
    """A bash block's commands: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [
        line.split("  #")[0].strip()
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def section(text: str, heading: str) -> str:
    """The part of a Markdown text under ``heading`` (a "## " line), up to the next heading of that level."""
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 150


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    missing = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.name}: {missing}"


def test_the_front_page_picture_is_small_and_comes_from_the_synthetic_set():
    picture = ROOT / "docs" / "figures" / "sen_masks.png"
    assert picture.is_file() and picture.stat().st_size < 400_000
    assert "docs/figures/sen_masks.png" in README.read_text()


def _isolated(tmp_path: Path) -> dict[str, str]:
    """An environment whose data and results roots are under ``tmp_path`` (nothing lands in the repo)."""
    return {
        **os.environ,
        "REIDLIB_DATA": str(tmp_path / "data"),
        "REIDLIB_RESULTS": str(tmp_path / "results"),
    }


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The README's Python quick start run as written, twice, in a fresh folder: (folder, first, again)."""
    (code,) = fenced(README.read_text(), "python")
    folder = tmp_path_factory.mktemp("quickstart")
    env = _isolated(folder)
    first, again = (
        subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True)
        for _ in range(2)
    )
    return folder, first, again


@pytest.mark.slow
def test_the_python_quick_start_runs_as_written_twice(quickstart):
    folder, first, again = quickstart
    (code,) = fenced(README.read_text(), "python")
    assert len(code.splitlines()) <= 15
    assert first.returncode == 0, first.stderr[-3000:]
    assert re.search(r"SEN after 2 epochs: rank-1 \d+\.\d %, mAP \d+\.\d %", first.stdout)
    assert (
        "query 0's top 5:" in first.stdout and (folder / "results" / "quickstart" / "metrics.json").is_file()
    )
    assert again.returncode == 0, again.stderr[-3000:]
    said = [
        next(line for line in run.stdout.splitlines() if line.startswith("SEN after"))
        for run in (first, again)
    ]
    assert said[0] == said[1]  # read back, not trained again
    assert "epoch 1/2" in first.stdout and "epoch 1/2" not in again.stdout


@pytest.mark.slow
def test_the_quick_starts_network_learns_far_above_chance(quickstart):
    """Chance is measured, not assumed: the same evaluation of the synthetic test split on random
    distances (measured: rank-1 and mAP about 1 %; the quick start's SEN after its 2 epochs: rank-1 about
    13 %, mAP about 26 %)."""
    folder, first, _ = quickstart
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = json.loads((folder / "results" / "quickstart" / "metrics.json").read_text())
    ds = load_dataset("folder", folder / "data" / "synthetic")
    ids = [
        np.array([getattr(r, key) for r in split])
        for split in (ds.query, ds.gallery)
        for key in ("pid", "camid")
    ]
    q_pids, q_cams, g_pids, g_cams = ids
    rng = np.random.default_rng(0)
    chance = [
        evaluate_rank(rng.random((len(q_pids), len(g_pids))), q_pids, g_pids, q_cams, g_cams)
        for _ in range(5)
    ]
    chance_map = 100 * np.mean([c["mAP"] for c in chance])
    chance_rank1 = 100 * np.mean([c["cmc"][0] for c in chance])
    assert metrics["mAP"] > 10 * chance_map, (metrics["mAP"], chance_map)
    assert metrics["rank1"] > 10 * chance_rank1, (metrics["rank1"], chance_rank1)


def run_in_plain_shell(lines: list[str], clone: Path) -> list[subprocess.CompletedProcess]:
    """Each line in bash in ``clone`` as a user types it into a fresh shell: ``.venv`` not activated (it is
    this test's interpreter, linked in), PATH=/usr/bin:/bin, data and results roots under ``clone``. The
    test fails on the first line that exits non-zero, naming it."""
    if not (clone / ".venv").exists():
        (clone / ".venv").symlink_to(Path(sys.executable).parents[1])  # the clone's .venv, seen from here
    env = {k: v for k, v in _isolated(clone).items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/bin:/bin"  # a plain shell: no virtual environment on PATH
    done = []
    for line in lines:
        done.append(subprocess.run(["bash", "-c", line], cwd=clone, env=env, capture_output=True, text=True))
        assert done[-1].returncode == 0, f"{line}\n{done[-1].stdout[-2000:]}\n{done[-1].stderr[-2000:]}"
    return done


@pytest.mark.slow
def test_the_command_line_of_getting_started_runs_in_a_plain_shell(tmp_path):
    text = (ROOT / "docs" / "getting-started.md").read_text()
    block = next(b for b in fenced(text, "bash") if "-m reidlib recipes" in b)
    # seconds: the plumbing of each line is what this test checks (the quick start tests the learning)
    tiny = "sen_smoke --set optim.epochs=1 --set train.max_iters_per_epoch=3"
    lines = [line.replace("sen_smoke --set optim.epochs=2", tiny) for line in shell_lines(block)]
    assert sum(tiny in line for line in lines) == 1
    run_in_plain_shell(lines, tmp_path)
    run = tmp_path / "results" / "runs" / "sen-2ep"
    assert {"params.json", "log.jsonl", "metrics.json", "last.pt"} <= {p.name for p in run.iterdir()}
    assert (tmp_path / "results" / "runs" / "RESULTS.md").read_text().startswith("# Results")


# "Your own dataset" shrunk to seconds: 64x32 images, P x K = 4 x 2, one epoch of 3 iterations
TINY = {
    "data.height": 64,
    "data.width": 32,
    "data.num_identities": 4,
    "data.num_instances": 2,
    "optim.epochs": 1,
    "optim.warmup_epochs": 0,
    "optim.milestones": "[]",
    "eval.every": 1,
    "train.max_iters_per_epoch": 3,
}


def _shrunk(line: str) -> str:
    """A command of "Your own dataset" with :data:`TINY` added: to the folder check as --set values, to
    notebook 03 inside its overrides mapping."""
    if "--config folder_check" in line:
        return line + "".join(f" --set {key}={value}" for key, value in TINY.items())
    if "notebooks run" in line:
        assert "train.progress: false}'" in line, line
        more = "".join(f", {key}: {value}" for key, value in TINY.items())
        return line.replace("train.progress: false}'", f"train.progress: false{more}}}'")
    return line


@pytest.mark.slow
def test_your_own_dataset_runs_as_written_in_a_plain_shell(tmp_path, tiny_synthetic):
    text = section((ROOT / "docs" / "datasets.md").read_text(), "## Your own dataset")
    lines = [line for block in fenced(text, "bash") for line in shell_lines(block)]
    assert [line.split()[3] for line in lines] == ["data", "train", "notebooks"]  # check, folder_check, 03
    (tmp_path / "mydata").symlink_to(tiny_synthetic)  # a folder in Market-1501 layout
    stats, _, notebook = run_in_plain_shell([_shrunk(line) for line in lines], tmp_path)
    assert re.search(r"^gallery +\d+ +\d+ +\d+$", stats.stdout, re.M), stats.stdout
    mydata = tmp_path / "results" / "mydata"
    assert (mydata / "check" / "metrics.json").is_file() and (mydata / "sen" / "metrics.json").is_file()
    assert (mydata / "03_training.ipynb").is_file() and "epoch 1/1" in notebook.stdout  # streamed
    (again,) = run_in_plain_shell([_shrunk(lines[-1])], tmp_path)  # the same command: read back
    assert "epoch 1/1" not in again.stdout and (mydata / "03_training.ipynb").is_file()


def test_the_site_home_links_into_the_site():
    assert home_page("see [the glossary](docs/glossary.md) and [02](notebooks/02_x.ipynb)") == (
        "see [the glossary](glossary.md) and [02](notebooks/02_x.ipynb)"
    )


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_the_site_has_a_home_and_a_page_per_notebook_with_its_figures(tmp_path):
    executed = tmp_path / "demo"
    executed.mkdir()
    figures = {}
    for number, color in (("01", (200, 30, 30)), ("02", (30, 30, 200))):
        png = base64.b64encode(_png(color)).decode()
        figures[number] = png
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_markdown_cell(f"# Notebook {number}"),
            nbformat.v4.new_code_cell(
                "show()", outputs=[nbformat.v4.new_output("display_data", data={"image/png": png})]
            ),
        ]
        nbformat.write(nb, executed / f"{number}_tiny.ipynb")
    site = build_site(executed, tmp_path / "site")
    assert "erasing networks" in (site / "index.html").read_text()
    for number, png in figures.items():
        page = (site / "notebooks" / f"{number}_tiny" / "index.html").read_text()
        assert png in page, f"notebook {number}'s figure is not on its page"
    assert (site / "results" / "index.html").is_file() and (site / "glossary" / "index.html").is_file()
    with pytest.raises(ValueError, match="no executed notebook"):
        build_site(tmp_path / "site", tmp_path / "other")
