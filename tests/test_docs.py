"""docs/reading-the-papers.md cannot rot: its index names real objects, files and notebook sections,
every equation / figure / table a docstring cites is in the index of the paper it names, and every
link to one of its sections resolves to a heading."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import nbformat
import pytest

from reidlib.utils.paths import repo_root

ROOT = repo_root()
DOC = ROOT / "docs" / "reading-the-papers.md"

# "### Index: <title>" -> paper key; the same keys name the papers in docstrings (PAPER_NAMES)
INDEX_TITLES = {
    "SEN": "sen",
    "Deep Miner": "deep_miner",
    "BoT": "bot",
    "Batch DropBlock": "bdb",
    "re-ranking": "reranking",
}
PAPER_NAMES = {
    "sen": r"\bSEN\b",
    "deep_miner": r"\bDeep Miner\b|\bDM\b",
    "bot": r"\bBoT\b",
    "bdb": r"\bBatch DropBlock\b|\bBDB\b",
    "reranking": r"k-reciprocal|Zhong et al\.,? (?:CVPR )?2017",
}
PAPER_RE = re.compile("|".join(f"(?P<{key}>{pattern})" for key, pattern in PAPER_NAMES.items()))
KINDS = {"eq": "Eq.", "fig": "Fig.", "table": "Table"}
CITATION_RE = re.compile(
    r"\b(?P<kind>[Ee]qs?\.|Figs?\.|Figures?\b|Tables?\b)\s*"
    r"(?P<nums>\d+[a-z]?(?:\s*(?:-|–|,|and)\s*\d+[a-z]?)*)"
)
NUMBER_CELL_RE = re.compile(r"^(Eq\.|Fig\.|Table) (\d+)$")
ANCHOR_LINK_RE = re.compile(r"reading-the-papers\.md#([A-Za-z0-9_-]+)")


# --------------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------------
def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lowercase, punctuation dropped, spaces -> '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(markdown: str) -> list[str]:
    """The ATX headings of a Markdown text (outside fenced code), without the leading #s."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            out.append(line.lstrip("#").strip())
    return out


def anchors(markdown: str) -> set[str]:
    """Every anchor GitHub makes for the headings, duplicates suffixed -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for heading in headings(markdown):
        base = github_anchor(heading)
        count = seen.get(base, 0)
        out.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return out


def index_tables(markdown: str) -> dict[str, list[tuple[str, str, str]]]:
    """paper key -> rows (number, what, where) of the tables under "### Index: <title>"."""
    tables: dict[str, list[tuple[str, str, str]]] = {}
    paper = None
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip()
            paper = INDEX_TITLES.get(title.removeprefix("Index: ")) if title.startswith("Index: ") else None
            if paper is not None:
                tables[paper] = []
            continue
        if paper is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 3 or cells[0] == "number" or set(cells[0]) <= set("-: "):
            continue
        tables[paper].append((cells[0], cells[1], cells[2]))
    return tables


def numbered(rows: list[tuple[str, str, str]]) -> set[tuple[str, int]]:
    """The (kind, number) pairs of an index table: ("eq", 1), ("fig", 3), ("table", 2)."""
    out = set()
    for number, _, _ in rows:
        m = NUMBER_CELL_RE.match(number)
        if m:
            kind = {v: k for k, v in KINDS.items()}[m.group(1)]
            out.add((kind, int(m.group(2))))
    return out


def resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and getattr the rest."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def notebook_headings(path: Path) -> set[str]:
    nb = nbformat.read(path, as_version=4)
    return {h for c in nb.cells if c.cell_type == "markdown" for h in headings(c.source)}


def expand(nums: str) -> list[int]:
    """'1-4' -> 1..4; '2, 4, 5' and '1 and 5b' -> their numbers (a panel letter is dropped)."""
    out: list[int] = []
    for part in re.split(r"\s*(?:,|and)\s*", nums):
        bounds = [int(re.match(r"\d+", b).group()) for b in re.split(r"\s*[-–]\s*", part) if b]
        out.extend(range(bounds[0], bounds[-1] + 1))
    return out


def citations(text: str, default: str | None) -> list[tuple[str | None, str, int, str]]:
    """(paper, kind, number, excerpt) of every eq./Fig./Table in ``text``. The paper is the nearest
    one named before the citation in ``text``, else ``default``."""
    names = [(m.start(), m.lastgroup) for m in PAPER_RE.finditer(text)]
    out = []
    for m in CITATION_RE.finditer(text):
        before = [paper for pos, paper in names if pos < m.start()]
        paper = before[-1] if before else default
        kind = m.group("kind").lower()[:1]
        kind = {"e": "eq", "f": "fig", "t": "table"}[kind]
        for n in expand(m.group("nums")):
            out.append((paper, kind, n, text[max(0, m.start() - 40) : m.end()].replace("\n", " ")))
    return out


def docstrings(path: Path) -> list[tuple[str, str]]:
    """(qualified name, docstring) of a module and of every class and function in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    if ast.get_docstring(tree):
        out.append(("<module>", ast.get_docstring(tree)))
    for node in ast.walk(tree):
        is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if is_def and ast.get_docstring(node):
            out.append((node.name, ast.get_docstring(node)))
    return out


# --------------------------------------------------------------------------------------------------
# the parsers on hand-made inputs (so the checks below can fail)
# --------------------------------------------------------------------------------------------------
def test_github_anchor_rules():
    assert github_anchor("SEN: the eq. 11 typo") == "sen-the-eq-11-typo"
    assert github_anchor("Shared: center loss at BoT's scale") == "shared-center-loss-at-bots-scale"
    assert github_anchor("Deep Miner: attention (SAM and CHAM)") == "deep-miner-attention-sam-and-cham"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_citation_parser():
    text = "SEN M1 (eq. 3) and Figs. 2, 4, 5b; Deep Miner eqs. 3-4 and Table 1's row; (eq. 8)"
    got = [(p, k, n) for p, k, n, _ in citations(text, None)]
    assert got == [
        ("sen", "eq", 3),
        ("sen", "fig", 2),
        ("sen", "fig", 4),
        ("sen", "fig", 5),
        ("deep_miner", "eq", 3),
        ("deep_miner", "eq", 4),
        ("deep_miner", "table", 1),
        ("deep_miner", "eq", 8),  # nearest paper named before it
    ]
    assert citations("the ratio (eq. 2)", None)[0][0] is None
    assert citations("the ratio (eq. 2)", "bot")[0][0] == "bot"


def test_index_parser():
    md = "### Index: SEN\n\n| number | what | where |\n| --- | --- | --- |\n| Eq. 1 | map | `a.b` |\n"
    md += "| Fig. 10 | maps | `c` |\n### Index: BoT\n| BNNeck | neck | `d` |\n## Other\n| Eq. 9 | x | y |\n"
    tables = index_tables(md)
    assert numbered(tables["sen"]) == {("eq", 1), ("fig", 10)}
    assert tables["bot"] == [("BNNeck", "neck", "`d`")] and numbered(tables["bot"]) == set()


# --------------------------------------------------------------------------------------------------
# the document itself
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def index(doc) -> dict[str, list[tuple[str, str, str]]]:
    return index_tables(doc)


def test_index_has_a_table_per_paper(index):
    assert set(index) == set(INDEX_TITLES.values())
    for paper, rows in index.items():
        assert rows, f"the index of {paper} is empty"
    for paper in ("sen", "deep_miner"):
        kinds = {kind for kind, _ in numbered(index[paper])}
        assert kinds == {"eq", "fig", "table"}, paper


def test_index_names_objects_that_exist(index):
    """Every `reidlib.x.y` imports, every path exists, every notebook section is a heading there."""
    missing = []
    for paper, rows in index.items():
        for number, _, where in rows:
            assert "`" in where, f"{paper} {number}: names nothing"
            for nb, section in re.findall(r'`(notebooks/[^`]+?\.ipynb)`\s*"([^"]+)"', where):
                if not (ROOT / nb).is_file() or section not in notebook_headings(ROOT / nb):
                    missing.append(f"{paper} {number}: {nb} section {section!r}")
            for ref in re.findall(r"`([^`]+)`", re.sub(r'"[^"]*"', "", where)):
                if ref.startswith("reidlib."):
                    try:
                        resolve(ref)
                    except (ImportError, AttributeError) as exc:
                        missing.append(f"{paper} {number}: {ref} ({exc})")
                elif "/" in ref and not (ROOT / ref).exists():
                    missing.append(f"{paper} {number}: {ref} does not exist")
    assert not missing, "\n".join(missing)


def test_every_docstring_citation_is_indexed(index):
    """Every eq. / Fig. / Table cited in a docstring of reidlib/ is a row of its paper's index."""
    listed = {paper: numbered(rows) for paper, rows in index.items()}
    problems, count = [], 0
    for path in sorted((ROOT / "reidlib").rglob("*.py")):
        docs = docstrings(path)
        module_doc = next((d for name, d in docs if name == "<module>"), "")
        first = PAPER_RE.search(module_doc)
        default = first.lastgroup if first else None
        for name, text in docs:
            for paper, kind, n, excerpt in citations(text, default):
                count += 1
                where = f"{path.relative_to(ROOT)}:{name}: ...{excerpt}"
                if paper is None:
                    problems.append(f"{where}: which paper? name it in the docstring")
                elif (kind, n) not in listed[paper]:
                    problems.append(f"{where}: {paper} {KINDS[kind]} {n} is not in the index")
    assert count > 50  # the scan sees the citations (SEN eqs. 1-11, Deep Miner eqs. 1-6, Tables ...)
    assert not problems, "\n".join(problems)


def _ours(paths):
    """The repository's own files: not the copies JupyterLab keeps in .ipynb_checkpoints/ and the like."""
    return [p for p in paths if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]


def cited_anchors() -> list[tuple[str, str]]:
    """(file, anchor) for every link to a section of reading-the-papers.md in the repository's text."""
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    sources = (("reidlib", ("*.py", "*.yaml")), ("tests", ("*.py",)), ("notebooks", ("*.ipynb",)))
    for folder, patterns in sources:
        for pattern in patterns:
            files.extend(_ours((ROOT / folder).rglob(pattern)))
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        out.extend((str(path.relative_to(ROOT)), a) for a in ANCHOR_LINK_RE.findall(text))
        if path == DOC:
            out.extend((str(path.relative_to(ROOT)), a) for a in re.findall(r"\]\(#([A-Za-z0-9_-]+)\)", text))
    return out


def test_every_cited_anchor_resolves(doc):
    cited = cited_anchors()
    assert len({f for f, _ in cited}) >= 15  # code, recipes, notebooks and tests cite the sections
    have = anchors(doc)
    broken = [f"{f}: #{a}" for f, a in cited if a not in have]
    assert not broken, "no such heading in docs/reading-the-papers.md:\n" + "\n".join(broken)


def test_papers_are_cited_by_title_and_id(doc):
    for ident in ("10.3390/s21134262", "arXiv:2102.09321", "arXiv:1903.07071", "arXiv:1811.07130"):
        assert ident in doc


def test_no_reference_to_files_outside_the_repository():
    """The reading notes live in docs/, and datasets are found through the data root."""
    notes, shared = "NOTES" + ".md", ".." + "/shared"
    texts = [ROOT / "README.md"]
    for folder in ("reidlib", "notebooks", "tests"):
        found = _ours((ROOT / folder).rglob("*"))
        texts.extend(p for p in found if p.suffix in (".py", ".yaml", ".ipynb", ".md"))
    hits = []
    for path in texts:
        text = path.read_text(encoding="utf-8")
        if notes in text:
            hits.append(f"{path.relative_to(ROOT)} cites {notes}")
        if shared in text and path.parts[len(ROOT.parts)] != "tests":
            hits.append(f"{path.relative_to(ROOT)} refers to {shared}")
    assert not hits, "\n".join(hits)
