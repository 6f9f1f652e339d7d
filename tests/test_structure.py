"""The house rules a change can break without a failing behaviour test.

Read from the source with ``ast``: the package is layered (a module never imports from a layer above its
own, function-level imports included, so there is no import cycle); ``ls reidlib`` shows at most a few
modules beside the layers; viz draws what it is handed and reads no file; no function in reidlib/ over 80
lines; no ``isinstance`` of a network class outside reidlib/models/ (a figure asks the feature-map
contract, not the class); the split folder names and the evaluation variant names each spelled in one
module only.
"""

from __future__ import annotations

import ast
import functools

import pytest

from reidlib.utils.paths import repo_root

PACKAGE = repo_root() / "reidlib"
MAX_FUNCTION_LINES = 80
# The networks and their parts, by the names their modules give them.
NETWORK_CLASSES = {"ReIDNetwork", "Baseline", "SEN", "BatchDropBlock", "DeepMiner", "InputErasedBranch"}
# Strings that belong to one module each: the Market layout's folders, the evaluation variants.
SPELLED_ONCE = {
    "bounding_box_train": "data/datasets/base.py",
    "bounding_box_test": "data/datasets/base.py",
    "flip+rerank": "config.py",
}
# The layers, lowest first: a module may import from its own layer and the layers below it only. The
# name is the first part of the module's path in reidlib/ (a subpackage, or a top-level module).
LAYERS = (
    ("utils",),
    ("erasing",),
    ("models",),
    ("config",),
    ("data",),
    ("evaluation",),
    ("training",),
    ("experiments",),
    ("viz",),
    ("notebooks",),
    ("cli", "__main__", "__init__"),
)
MAX_TOP_LEVEL_MODULES = 8
# What viz may not call: it draws arrays and tables it is handed, it reads no file.
FILE_READERS = {
    "open",
    "read_text",
    "read_bytes",
    "glob",
    "rglob",
    "iterdir",
    "read_image",
    "load_test_batch",
    "load",
    "loads",
    "read_csv",
    "read_json",
    "read_log",
    "load_dataset",
    "torch_load",
}


@functools.cache
def modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (not code)."""
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                out.add(id(body[0].value))
    return out


def long_functions(mods) -> list[str]:
    return [
        f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, tree in mods
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def network_isinstance(mods) -> list[str]:
    found = []
    for name, tree in mods:
        if name.startswith("models/"):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "isinstance"
                and len(node.args) == 2
            ):
                classes = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                if {getattr(c, "id", getattr(c, "attr", None)) for c in classes} & NETWORK_CLASSES:
                    found.append(f"{name}:{node.lineno}")
    return found


def spelled_in(mods, text: str) -> set[str]:
    where = set()
    for name, tree in mods:
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == text and id(node) not in skip:
                where.add(name)
    return where


def module_name(path: str) -> str:
    """``data/datasets/base.py`` -> ``reidlib.data.datasets.base``; ``viz/__init__.py`` -> ``reidlib.viz``."""
    parts = ["reidlib", *path.removesuffix(".py").split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The reidlib modules ``tree`` imports anywhere (module level, functions, TYPE_CHECKING blocks).

    reidlib imports by absolute name only (a relative import is reported as the module ``.``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("reidlib")}
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if base.startswith(("reidlib", ".")):
                out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return out - {name}


def layer_of(module: str) -> int:
    if module.startswith("."):
        raise AssertionError("a relative import: reidlib imports its modules by their full name")
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: in no layer of LAYERS; add its folder there")


def import_graph(mods) -> dict[str, set[str]]:
    names = {module_name(name): tree for name, tree in mods}
    return {name: imported(name, tree, set(names)) for name, tree in names.items()}


def upward_imports(mods) -> list[str]:
    graph = import_graph(mods)
    return sorted(
        f"{m} -> {d}" for m, deps in graph.items() for d in deps if d in graph and layer_of(d) > layer_of(m)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``, each as the modules on it (depth-first search)."""
    found, done, path = [], set(), []

    def visit(m: str) -> None:
        if m in path:
            found.append(path[path.index(m) :] + [m])
            return
        if m in done:
            return
        path.append(m)
        for d in sorted(graph.get(m, ())):
            visit(d)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
    return found


def file_reads_in_viz(mods) -> list[str]:
    return [
        f"{name}:{node.lineno} {getattr(node.func, 'id', getattr(node.func, 'attr', ''))}"
        for name, tree in mods
        if name.startswith("viz/")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) in FILE_READERS
    ]


def test_a_module_never_imports_from_a_layer_above_its_own():
    assert upward_imports(modules()) == []


def test_there_is_no_import_cycle():
    assert cycles(import_graph(modules())) == []


def test_ls_reidlib_shows_the_layers_and_a_few_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    layered = {name for names in LAYERS for name in names}
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders <= layered and {p.removesuffix(".py") for p in top} <= layered


def test_viz_reads_no_file():
    assert file_reads_in_viz(modules()) == []


MIN_FONT_SIZE = 8  # points: what a student can read in the notebook and on a projector


def small_fonts(mods) -> list[str]:
    """Font sizes below MIN_FONT_SIZE given to matplotlib in viz/ (a number, or a size name)."""
    found = []
    for name, tree in mods:
        if not name.startswith("viz/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("fontsize", "labelsize", "size"):
                value = node.value
                if isinstance(value, ast.Constant) and (
                    (isinstance(value.value, (int, float)) and value.value < MIN_FONT_SIZE)
                    or value.value in ("xx-small", "x-small", "small")
                ):
                    found.append(f"{name}:{node.lineno} {node.arg}={value.value!r}")
    return found


def test_no_figure_text_is_smaller_than_8_points():
    assert small_fonts(modules()) == []
    bad = ast.parse(
        "ax.set_xlabel('x', fontsize=7)\nax.legend(fontsize='x-small')\nax.text(0, 0, 's', fontsize=9)"
    )
    assert small_fonts([("viz/bad.py", bad)]) == [
        "viz/bad.py:1 fontsize=7",
        "viz/bad.py:2 fontsize='x-small'",
    ]


def test_the_network_classes_named_here_exist():
    defined = {
        node.name for _, tree in modules() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
    }
    assert NETWORK_CLASSES <= defined  # a rename must update the rule, not silently void it


def test_no_function_is_longer_than_80_lines():
    assert long_functions(modules()) == []


def test_no_isinstance_of_a_network_outside_models():
    assert network_isinstance(modules()) == []


@pytest.mark.parametrize("text", sorted(SPELLED_ONCE))
def test_names_are_spelled_in_one_module(text):
    assert spelled_in(modules(), text) == {SPELLED_ONCE[text]}


def test_the_rules_catch_a_module_that_breaks_them():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = (
        f'"""flip+rerank in a docstring is fine."""\ndef long():\n{body}\n\n'  # lines 1 to 83
        'if isinstance(m, (int, DeepMiner)):\n    f = "flip+rerank"\n'
    )
    mods = [("viz/bad.py", ast.parse(source))]
    assert long_functions(mods) == [f"viz/bad.py:2 long ({MAX_FUNCTION_LINES + 1} lines)"]
    assert network_isinstance(mods) == ["viz/bad.py:84"]
    assert network_isinstance([("models/bad.py", mods[0][1])]) == []  # models/ may ask
    assert spelled_in(mods, "flip+rerank") == {"viz/bad.py"}
    assert spelled_in([("doc.py", ast.parse('"""flip+rerank"""'))], "flip+rerank") == set()


def test_the_layer_rules_catch_an_upward_import_a_cycle_and_a_file_read():
    low = ast.parse("def f():\n    from reidlib.training.engine import train\n")  # a function-level import
    high = ast.parse("from reidlib.utils.paths import repo_root\n")
    mods = [("utils/bad.py", low), ("training/engine.py", high)]
    assert upward_imports(mods) == ["reidlib.utils.bad -> reidlib.training.engine"]
    graph = import_graph([*mods, ("utils/paths.py", ast.parse("import reidlib.utils.bad\n"))])
    assert cycles(graph) == [
        ["reidlib.training.engine", "reidlib.utils.paths", "reidlib.utils.bad", "reidlib.training.engine"]
    ]
    reads = ast.parse("from PIL import Image\ndef draw(p):\n    return Image.open(p), p.read_text()\n")
    assert file_reads_in_viz([("viz/bad.py", reads)]) == ["viz/bad.py:3 open", "viz/bad.py:3 read_text"]
    assert file_reads_in_viz([("data/ok.py", reads)]) == []
