"""The notebooks teach a class: each opens with what the student will learn and ends with a summary and
exercises with solutions; the main path of 02 and 03 is short; their markdown states no measurement
(numbers come from code, so they agree with the figures for any parameters)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import nbformat
import pandas as pd
import pytest

from reidlib.notebooks.runner import notebook_paths
from reidlib.utils.paths import repo_root

LESSONS = {p.stem: p for p in notebook_paths()}
MAX_MAIN_PATH_WORDS = 1200
# Numbers a notebook's prose may state: the papers' settings (r1, r2, tau, the center-loss weight, the
# block height, label smoothing), not measurements. Worked answers inside a collapsed solution are the
# exercise's own arithmetic.
PAPER_CONSTANTS = {"0.1", "0.25", "0.8", "0.0005", "0.33", "0.3", "0.5", "0.6", "0.4"}
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
SOLUTIONS = re.compile(r"<details>.*?</details>", re.S)


def markdown(path) -> str:
    return "\n\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")


def main_path_words(text: str) -> int:
    """Words of the markdown a student reads on the way through: everything before "## Going further",
    without the collapsed solutions."""
    return len(SOLUTIONS.sub("", text.split("## Going further")[0]).split())


@pytest.mark.parametrize("name", ["02_erasing_masks", "03_training"])
def test_the_main_path_is_a_lecture(name):
    text = markdown(LESSONS[name])
    assert main_path_words(text) <= MAX_MAIN_PATH_WORDS
    assert "**What you will learn**" in text and "**Time**" in text
    assert "## Summary" in text and "## Exercises" in text and "## Going further" in text
    exercises = text.split("## Exercises")[1].split("<details>")[0]
    assert len(re.findall(r"^\d\. \*\*", exercises, re.M)) >= 3
    solutions = SOLUTIONS.findall(text)
    assert solutions and len(re.findall(r"^\d\. ", solutions[0], re.M)) >= 3


def test_the_word_count_ignores_solutions_and_going_further():
    text = "one two\n<details>three four five</details>\n## Going further\nsix seven"
    assert main_path_words(text) == 2


@pytest.mark.parametrize("name", sorted(LESSONS))
def test_no_measurement_is_typed_in_markdown(name):
    prose = SOLUTIONS.sub("", markdown(LESSONS[name]))
    typed = [n for n in DECIMAL.findall(prose) if n not in PAPER_CONSTANTS]
    assert typed == [], f"{name}: decimals in markdown {typed}; print measurements from code"


def _run_02(tmp_path, checkpoint, tag, *params, env=None):
    out = tmp_path / tag  # the notebook's own output folder; its executed copy goes beside it
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(LESSONS["02_erasing_masks"]),
        str(tmp_path / f"{tag}.ipynb"),
        "-k",
        "reidlib",
    ]
    cmd += ["-p", "checkpoint", str(checkpoint), "-p", "stats_images", "80", "-p", "interactive", "False"]
    cmd += ["-p", "output_dir", str(out), *params]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root(), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    nb = nbformat.read(tmp_path / f"{tag}.ipynb", as_version=4)
    sentences = [
        line.removeprefix("- ")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/markdown" in o.get("data", {})
        for line in o["data"]["text/markdown"].splitlines()
    ]
    return sentences, pd.read_csv(out / "erased_on_person.csv").set_index("mask")


@pytest.mark.slow
def test_02s_sentences_are_this_runs_numbers(tiny_synthetic, tmp_path):
    from reidlib.training.engine import train

    from support import tiny_recipe

    run = tmp_path / "sen"
    train(tiny_recipe(tiny_synthetic, "model.name=sen", *SEN_TERMS, "data.height=128", "data.width=64"), run)
    data = ("-p", "data_root", str(tiny_synthetic))
    # no ImageNet weights (an empty torch cache): section 7 says so in one sentence and the rest runs
    bare = {**os.environ, "TORCH_HOME": str(tmp_path / "no_weights")}
    first, placed = _run_02(tmp_path, run / "last.pt", "paper", *data, env=bare)
    skipped = [s for s in first if "ImageNet weights of MobileNetV2 are not on this machine" in s]
    assert len(skipped) == 1 and "`make weights`" in skipped[0]
    assert not (tmp_path / "paper" / "imagenet_on_person.csv").exists()
    # the same network given as the ImageNet one: section 7's shares must be section 6's
    same = ("-p", "imagenet_checkpoint", str(run / "last.pt"))
    second, moved = _run_02(
        tmp_path, run / "last.pt", "moved", *data, *same, "-p", "r2", "0.4", "-p", "tau", "0.6"
    )
    beside = pd.read_csv(tmp_path / "moved" / "imagenet_on_person.csv").set_index("mask")
    pd.testing.assert_frame_equal(beside, moved)
    for mask in moved.index:
        said = [s for s in second if s.startswith(f"ResNet-18 from scratch: **{mask}**")]
        assert said == [f"ResNet-18 from scratch: {s}" for s in second if s.startswith(f"**{mask}**")][:1]
    for sentences, table in ((first, placed), (second, moved)):
        # section 6 and the explorer print one sentence per mask each, from the same numbers as the figure
        for mask, row in table.iterrows():
            said = [s for s in sentences if s.startswith(f"**{mask}**")]
            assert len(said) == 2 and said[0] == said[1], mask
            expected = (
                f"erases the {row.claim} in {row.observed_share:.0f} % of its cells, against "
                f"{row.chance_share:.0f} % for random cells: {row.verdict} chance (z = {row.z:+.1f})."
            )
            assert said[0].endswith(expected), (said[0], expected)
    m2 = [s for s in first if s.startswith("**M2**")][0], [s for s in second if s.startswith("**M2**")][0]
    assert m2[0] != m2[1]  # r2 moved: the sentence says the new numbers
    assert placed.loc["M2", "erased_per_image"] < moved.loc["M2", "erased_per_image"]


SEN_TERMS = (
    "loss.terms=[{branch: global, kind: ce}, {branch: bs, kind: ce, weight: 0.5}, {branch: ms, kind: ce}, "
    "{branch: global, kind: triplet}]",
)
