"""The documentation site: ``docs/``, the README as its home page and executed notebooks, built by mkdocs.

``python -m reidlib.notebooks.site [--notebooks results/demo-<time>] [--out site]`` (``make docs``)
copies the pages into a staging folder, rewrites the README's links for the site (``docs/x.md`` ->
``x.md``, ``notebooks/NN_x.ipynb`` -> the executed copy), writes the mkdocs configuration from
``mkdocs.yml`` with the navigation, and runs ``mkdocs build``. mkdocs-jupyter renders each executed
notebook as it is, outputs and figures included, without running it again.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from reidlib.utils.paths import repo_root, results_root

# The pages of docs/ in the order of the navigation, with their titles.
PAGES = (
    ("Getting started", "getting-started.md"),
    ("Datasets", "datasets.md"),
    ("Training", "training.md"),
    ("Results", "results.md"),
    ("Reading the papers", "reading-the-papers.md"),
    ("Going further with the masks", "going-further.md"),
    ("Glossary", "glossary.md"),
    ("Development", "development.md"),
)
NOTEBOOK = re.compile(r"^\d\d_\w+\.ipynb$")


def newest_demo(root: Path | None = None) -> Path | None:
    """The newest ``results/demo-<time>/`` that holds executed notebooks (None when there is none)."""
    demos = sorted((root or results_root()).glob("demo-*"), reverse=True)
    return next((d for d in demos if any(NOTEBOOK.match(p.name) for p in d.glob("*.ipynb"))), None)


def home_page(readme: str) -> str:
    """The README as the site's home: its links into docs/ made relative to the site (the notebooks
    keep their ``notebooks/NN_name.ipynb`` paths, where the site has their executed copies)."""
    return readme.replace("](docs/", "](")


def stage(staging: Path, notebooks: Sequence[Path]) -> Path:
    """Fill ``staging`` with the mkdocs configuration and its ``docs/`` folder; returns the config."""
    root = repo_root()
    docs = staging / "docs"
    shutil.copytree(root / "docs", docs)
    (docs / "notebooks").mkdir()
    for nb in notebooks:
        shutil.copy2(nb, docs / "notebooks" / nb.name)
    shutil.copy2(root / "CHANGELOG.md", docs / "CHANGELOG.md")
    readme = (root / "README.md").read_text(encoding="utf-8")
    (docs / "index.md").write_text(home_page(readme), encoding="utf-8")
    config = yaml.safe_load((root / "mkdocs.yml").read_text(encoding="utf-8"))
    config["docs_dir"] = "docs"
    config["nav"] = [
        {"Home": "index.md"},
        {"Getting started": "getting-started.md"},
        {"Notebooks": [{_title(nb.name): f"notebooks/{nb.name}"} for nb in notebooks]},
        *({title: page} for title, page in PAGES[1:]),
        {"Changelog": "CHANGELOG.md"},
    ]
    path = staging / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _title(name: str) -> str:
    """``02_erasing_masks.ipynb`` -> ``02 Erasing masks``."""
    number, _, words = Path(name).stem.partition("_")
    return f"{number} {words.replace('_', ' ').capitalize()}"


def build_site(notebooks: Path, out: Path) -> Path:
    """Build the site from the executed notebooks in ``notebooks`` into ``out``; returns ``out``."""
    found = sorted(p for p in notebooks.glob("*.ipynb") if NOTEBOOK.match(p.name))
    if not found:
        raise ValueError(f"{notebooks}: no executed notebook (NN_name.ipynb); run `make demo` first")
    with tempfile.TemporaryDirectory(prefix="reidlib-site-") as tmp:
        config = stage(Path(tmp), found)
        done = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--quiet", "-f", str(config), "-d", str(out.resolve())],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise RuntimeError(f"mkdocs build failed: {done.stderr.strip()[-2000:]}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reidlib.notebooks.site", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--notebooks", type=Path, help="folder of executed notebooks (default: the newest demo)"
    )
    parser.add_argument("--out", type=Path, default=repo_root() / "site", help="site folder (default: site/)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or newest_demo()
    if notebooks is None:
        print("error: no executed demo under results/: run `make demo` first", file=sys.stderr)
        return 2
    try:
        out = build_site(notebooks, args.out)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'index.html'} (notebooks from {notebooks})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
