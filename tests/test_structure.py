"""The house rules a change can break without a failing behaviour test (issue 15's acceptance).

Read from the source with ``ast``: no function in reidlib/ over 80 lines; no ``isinstance`` of a network
class outside reidlib/models/ (a figure asks the feature-map contract, not the class); the split folder
names and the evaluation variant names each spelled in one module only.
"""

from __future__ import annotations

import ast

import pytest

from reidlib.paths import repo_root

PACKAGE = repo_root() / "reidlib"
MAX_FUNCTION_LINES = 80
# The networks and their parts, by the names their modules give them.
NETWORK_CLASSES = {"ReIDNetwork", "Baseline", "SEN", "BatchDropBlock", "DeepMiner", "InputErasedBranch"}
# Strings that belong to one module each: the Market layout's folders, the evaluation variants.
SPELLED_ONCE = {
    "bounding_box_train": "datasets/base.py",
    "bounding_box_test": "datasets/base.py",
    "flip+rerank": "runfolder.py",
}


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
