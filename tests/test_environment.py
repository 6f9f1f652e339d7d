"""environment.yml and pyproject.toml must describe the same environment; paths come from the package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

import reidlib
from reidlib.utils import paths

ROOT = Path(__file__).resolve().parent.parent
DESIGN_CARD = [
    "torch",
    "torchvision",
    "jupyterlab",
    "papermill",
    "nbval",
    "seaborn",
    "pandas",
    "pytest",
    "tqdm",
    "pyyaml",
    "nbstripout",
    "ruff",
]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _all_requirements(project: dict, extra: str, seen: set[str] | None = None) -> set[str]:
    """Names ``pip install -e .[extra]`` installs, following self-references (reidlib[notebooks])."""
    seen = seen or set()
    names = {_name(r) for r in project["dependencies"]}
    for req in project["optional-dependencies"][extra]:
        name = _name(req)
        if name == project["name"]:
            inner = re.search(r"\[(.*)\]", req).group(1)
            for e in inner.split(","):
                if e not in seen:
                    names |= _all_requirements(project, e.strip(), seen | {e})
        else:
            names.add(name)
    return names


def test_environment_yml_installs_the_package_with_its_dev_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    # Python is pinned by conda; every Python package comes from pyproject through the extras.
    assert any(d.startswith("python=") for d in conda)
    assert set(conda) <= {d for d in conda if d.startswith("python=")} | {"pip"}, conda
    assert pip == ["-e .[dev]"]
    python = next(d for d in conda if d.startswith("python=")).split("=")[1]
    minimum = _pyproject()["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("."))) >= tuple(map(int, minimum.split(".")))


def test_dev_extras_install_the_design_card_packages():
    names = _all_requirements(_pyproject()["project"], "dev")
    missing = [p for p in DESIGN_CARD if p not in names]
    assert not missing, missing


def test_ci_constraints_pin_torch_and_torchvision():
    pins = dict(
        line.split("==")
        for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    names = _all_requirements(_pyproject()["project"], "dev")
    unpinned = [n for n in names if n not in {k.lower() for k in pins}]
    assert not unpinned, f"packages without a CI pin: {unpinned}"


def test_paths_resolve_from_the_package_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REIDLIB_DATA", raising=False)
    monkeypatch.delenv("REIDLIB_RESULTS", raising=False)
    assert paths.repo_root() == Path(reidlib.__file__).resolve().parent.parent == ROOT
    assert paths.data_root() == ROOT / "data"
    assert paths.results_root() == ROOT / "results"
    monkeypatch.setenv("REIDLIB_DATA", str(tmp_path / "elsewhere"))
    assert paths.data_root() == tmp_path / "elsewhere"


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
