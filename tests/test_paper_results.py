"""The transcribed paper tables: schema checks (always run) and every cell checked against the paper texts.

The paper checks go CSV -> text: for each table the printed row lines are read from the paper's OCR'd
text (between two anchor lines) and every value of the CSV must appear on its method's line, in the
printed column order. The papers live in ``../shared/papers`` (``$REIDLIB_PAPERS`` overrides); users
without them get a skip with the reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
import pytest

from reidlib.experiments import paper_results
from reidlib.experiments.paper_results import (
    COLUMNS,
    DATASETS,
    PAPER_TABLES,
    PaperResultsError,
    PaperTableNotFound,
    load_all,
    load_dataset_table,
    load_paper_table,
)
from reidlib.utils.paths import repo_root

PAPER_FILES = {"sen": "self_erasing_network_sensors2021.txt", "deep_miner": "deep_miner_2021.txt"}
OWN = "this paper's method"
MARKERS = {"*": "attention", "+": "stripes", "~": "pose"}
SOTA_TABLES = [
    ("sen", 3),
    ("sen", 4),
    ("deep_miner", 5),
    ("deep_miner", 6),
    ("deep_miner", 7),
    ("deep_miner", 8),
]


def papers_dir() -> Path:
    env = os.environ.get("REIDLIB_PAPERS")
    return Path(env) if env else repo_root().parent / "shared" / "papers"


def paper_lines(paper: str) -> list[str]:
    path = papers_dir() / PAPER_FILES[paper]
    if not path.is_file():
        names = ", ".join(PAPER_FILES.values())
        pytest.skip(f"paper text not found: {path} (set REIDLIB_PAPERS to the folder holding {names})")
    return path.read_text(encoding="utf-8").splitlines()


# ---------------------------------------------------------------------------------------------------
# Schema (no paper needed)


@pytest.fixture(scope="module")
def all_tables() -> pd.DataFrame:
    return load_all()


@pytest.mark.parametrize("key", list(PAPER_TABLES), ids=lambda k: f"{k[0]}-{k[1]}")
def test_schema(key):
    paper, table = key
    df = load_paper_table(paper, table)
    assert list(df.columns) == COLUMNS
    for col in ("paper", "method", "venue", "backbone", "dataset", "notes"):
        assert pd.api.types.is_string_dtype(df[col]), col
        assert not df[col].isna().any(), col
    for col in ("table", "row"):
        assert df[col].dtype == "int64", col
    for col in ("rank1", "mAP", "score"):
        assert df[col].dtype == "float64", col
        values = df[col].dropna()
        assert ((values >= 0) & (values <= 100)).all(), col
    assert (df["paper"] == paper).all() and (df["table"] == table).all()
    assert set(df["dataset"]) <= set(DATASETS)
    assert not df.duplicated(["method", "dataset"]).any()
    # rows are 1..n in file order, one number per method
    methods_in_order = list(dict.fromkeys(df["method"]))
    assert df["row"].tolist() == [methods_in_order.index(m) + 1 for m in df["method"]]
    assert df["row"].is_monotonic_increasing
    # venue and backbone are properties of the printed row, not of the dataset
    assert (df.groupby("row")[["venue", "backbone"]].nunique() == 1).all().all()
    # every method has at least one number
    assert not df.groupby("row")[["rank1", "mAP"]].apply(lambda g: g.isna().all().all()).any()
    if paper == "sen":
        assert (df["backbone"] == "").all()
    else:
        assert (df["venue"] == "").all() and df["score"].isna().all()


def test_ablation_datasets():
    for table in (1, 2, 3, 4):
        assert set(load_paper_table("deep_miner", table)["dataset"]) == {"market1501"}
    assert set(load_paper_table("sen", 2)["dataset"]) == {
        "market1501",
        "dukemtmc",
        "cuhk03_labeled",
        "cuhk03_detected",
    }


def test_one_own_row_per_sota_table():
    for paper, table in SOTA_TABLES:
        df = load_paper_table(paper, table)
        own = df[df["notes"].str.contains(OWN, regex=False)]
        assert own["method"].nunique() == 1, (paper, table)
        assert own["method"].iloc[0] in ("Ours", "Deep Miner")


def test_sen_score_is_rounded_mean(all_tables):
    """SEN sec. 4.2.2: Score = mean of Rank-1 and mAP, rounded to one decimal (half up)."""
    sen = all_tables[(all_tables["paper"] == "sen") & all_tables["score"].notna()]
    assert len(sen) > 0
    for r in sen.itertuples():
        mean = (Decimal(str(r.rank1)) + Decimal(str(r.mAP))) / 2
        assert float(mean.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)) == r.score, r


def test_map_above_rank1_is_flagged(all_tables):
    """mAP above Rank-1 is unusual; the only such cell must carry a note."""
    odd = all_tables[all_tables["mAP"] > all_tables["rank1"]]
    assert len(odd) == 1
    assert odd["notes"].str.contains("swapped").all()


def _cells(paper: str, table: int, method: str, dataset: str) -> tuple[float, float]:
    df = load_paper_table(paper, table)
    hit = df[(df["method"] == method) & (df["dataset"] == dataset)]
    assert len(hit) == 1, (paper, table, method, dataset)
    return float(hit["rank1"].iloc[0]), float(hit["mAP"].iloc[0])


def test_repeated_rows_agree_within_each_paper():
    """Rows the papers print twice (one ablation's best is the next one's starting point)."""
    dm = "deep_miner"
    m = "market1501"
    assert _cells(dm, 2, "After block 3", m) == _cells(dm, 1, "After block 3", m)
    assert _cells(dm, 3, "No", m) == _cells(dm, 2, "After blocks 2 and 3", m)
    assert _cells(dm, 4, "No", m) == _cells(dm, 3, "Yes", m)
    assert _cells(dm, 4, "SAM & CHAM", m) == _cells(dm, 5, "Deep Miner", m)
    for ds in ("market1501", "dukemtmc"):
        assert _cells("sen", 2, "+BS+MS", ds) == _cells("sen", 3, "Ours", ds)
    for ds in ("cuhk03_labeled", "cuhk03_detected"):
        assert _cells("sen", 2, "+BS+MS", ds) == _cells("sen", 4, "Ours", ds)


def test_methods_in_both_papers_agree():
    """Two independent printings of the same published numbers; OSNet on Duke is the known exception."""
    pairs = [
        (("sen", 3, "HOReID [40]"), ("deep_miner", 5, "HOReID [35]"), "market1501"),
        (("sen", 3, "HOReID [40]"), ("deep_miner", 6, "HOReID [35]"), "dukemtmc"),
        (("sen", 3, "OSNet [10]"), ("deep_miner", 5, "OSNet [47]"), "market1501"),
        (("sen", 4, "OSNet [10]"), ("deep_miner", 7, "OSNet [47]"), "cuhk03_detected"),
        (("sen", 4, "MHN [41]"), ("deep_miner", 7, "MHN [5]"), "cuhk03_labeled"),
        (("sen", 4, "MHN [41]"), ("deep_miner", 7, "MHN [5]"), "cuhk03_detected"),
    ]
    for (p1, t1, m1), (p2, t2, m2), ds in pairs:
        assert _cells(p1, t1, m1, ds) == _cells(p2, t2, m2, ds), (m1, ds)
    assert _cells("sen", 3, "OSNet [10]", "dukemtmc") != _cells("deep_miner", 6, "OSNet [47]", "dukemtmc")


# ---------------------------------------------------------------------------------------------------
# Loader errors (no paper needed)


def test_sen_table1_matches_the_printed_lines():
    """The dataset statistics table, against the tab-separated rows printed under "Table 1."."""
    lines = paper_lines("sen")
    start = lines.index("Table 1. Statistics of datasets.")
    printed = [line.split("\t") for line in lines[start + 1 : start + 8] if "\t" in line][1:]  # header off
    names = {"Market1501": "market1501", "DukeMTMC-ReID": "dukemtmc", "CUHK03(D)": "cuhk03_detected"}
    df = load_dataset_table()
    assert len(printed) == len(df) == 3
    for cells, row in zip(printed, df.itertuples(), strict=True):
        assert names[cells[0]] == row.dataset
        counts = [row.train_ids, row.train_images, row.gallery_ids, row.gallery_images, row.cameras]
        assert [int(c) for c in cells[1:6]] == counts and cells[6] == row.resolution


def test_the_dataset_table_is_read_by_its_own_reader(tmp_path, monkeypatch):
    with pytest.raises(PaperResultsError, match="load_dataset_table"):
        load_paper_table("sen", 1)
    bad = (paper_results.paper_table_path("sen", 1)).read_text().replace(",751,", ",7x1,")
    (tmp_path / "sen_table1.csv").write_text(bad, encoding="utf-8")
    monkeypatch.setattr(paper_results, "paper_results_dir", lambda: tmp_path)
    with pytest.raises(PaperResultsError, match="sen_table1.csv: column 'train_ids' must hold a count"):
        load_dataset_table()


def test_unknown_table_is_refused():
    with pytest.raises(PaperResultsError, match="no transcribed table"):
        load_paper_table("sen", 9)
    with pytest.raises(PaperResultsError, match="known"):
        load_paper_table("deepminer", 5)


def test_missing_file_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(paper_results, "paper_results_dir", lambda: tmp_path)
    with pytest.raises(PaperTableNotFound, match=re.escape(str(tmp_path / "sen_table3.csv"))):
        load_paper_table("sen", 3)


def _write(tmp_path: Path, text: str) -> None:
    (tmp_path / "sen_table3.csv").write_text(text, encoding="utf-8")


def test_bad_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(paper_results, "paper_results_dir", lambda: tmp_path)
    header = ",".join(COLUMNS) + "\n"
    _write(tmp_path, "paper,table,row\nsen,3,1\n")
    with pytest.raises(PaperResultsError, match="sen_table3.csv: columns"):
        load_paper_table("sen", 3)
    _write(tmp_path, header + "sen,3,1,X,,,market1501,9O.1,80,85,\n")
    with pytest.raises(PaperResultsError, match="column 'rank1'"):
        load_paper_table("sen", 3)
    _write(tmp_path, header + "sen,3,1,X,,,market,90.1,80,85,\n")
    with pytest.raises(PaperResultsError, match="unknown dataset"):
        load_paper_table("sen", 3)
    _write(tmp_path, header + "sen,4,1,X,,,market1501,90.1,80,85,\n")
    with pytest.raises(PaperResultsError, match="do not belong"):
        load_paper_table("sen", 3)
    _write(tmp_path, header + "sen,3,,X,,,market1501,90.1,80,85,\n")
    with pytest.raises(PaperResultsError, match="'row' must hold integers"):
        load_paper_table("sen", 3)


# ---------------------------------------------------------------------------------------------------
# CSV -> paper text


@dataclass(frozen=True)
class Layout:
    """Where a table is printed in the text and what its columns are, left to right after the label.

    start/end: prefixes of the first line of the table's region and of the line that ends it.
    caption: (prefix of the caption line, words it must contain): ties the rows to the caption.
    cells: (dataset, column) per printed cell; dataset None for venue/backbone.
    markers: the row labels carry Deep Miner's *, +, ~ markers.
    """

    start: str
    end: str
    caption: tuple[str, tuple[str, ...]]
    cells: tuple[tuple[str | None, str], ...]
    markers: bool = False


def _pairs(*datasets: str, order: tuple[str, ...]) -> tuple[tuple[str | None, str], ...]:
    return tuple((ds, col) for ds in datasets for col in order)


_DM_SOTA = (None, "backbone")
# Deep Miner's captions come AFTER their tables in the text: each region ends at its own caption.
LAYOUTS: dict[tuple[str, int], Layout] = {
    ("sen", 2): Layout(
        "Table 2. Influences",
        "The maximum activation suppression",
        ("Table 2.", ("self-erasing",)),
        _pairs("market1501", "dukemtmc", "cuhk03_labeled", "cuhk03_detected", order=("rank1", "mAP")),
    ),
    ("sen", 3): Layout(
        "Table 3. Comparison",
        "Table 4. Comparison",
        ("Table 3.", ("Market1501", "DukeMTMC-ReID")),
        ((None, "venue"),) + _pairs("market1501", "dukemtmc", order=("rank1", "mAP", "score")),
    ),
    ("sen", 4): Layout(
        "Table 4. Comparison",
        "4.5. Limitations",
        ("Table 4.", ("CUHK-03",)),
        ((None, "venue"),) + _pairs("cuhk03_labeled", "cuhk03_detected", order=("rank1", "mAP", "score")),
    ),
    ("deep_miner", 1): Layout(
        "IE Branch Position\t",
        "Table 1:",
        ("Table 1:", ("IE-Branch position",)),
        _pairs("market1501", order=("mAP", "rank1")),
    ),
    ("deep_miner", 2): Layout(
        "IE Branch Positions\t",
        "Table 2:",
        ("Table 2:", ("multiple IE-Branches",)),
        _pairs("market1501", order=("mAP", "rank1")),
    ),
    ("deep_miner", 3): Layout(
        "Local Branch\t",
        "Table 3:",
        ("Table 3:", ("Local Branch",)),
        _pairs("market1501", order=("mAP", "rank1")),
    ),
    ("deep_miner", 4): Layout(
        "Attention Module\t",
        "Table 4:",
        ("Table 4:", ("Attention Module",)),
        _pairs("market1501", order=("mAP", "rank1")),
    ),
    ("deep_miner", 5): Layout(
        "Table 4:",
        "Table 5:",
        ("Table 5:", ("Market1501",)),
        (_DM_SOTA,) + _pairs("market1501", order=("mAP", "rank1")),
        markers=True,
    ),
    ("deep_miner", 6): Layout(
        "Table 5:",
        "Table 6:",
        ("Table 6:", ("DukeMTMC-ReID",)),
        (_DM_SOTA,) + _pairs("dukemtmc", order=("mAP", "rank1")),
        markers=True,
    ),
    ("deep_miner", 7): Layout(
        "Table 6:",
        "Table 7:",
        ("Table 7:", ("CUHK03", "767/700")),
        (_DM_SOTA,) + _pairs("cuhk03_labeled", "cuhk03_detected", order=("mAP", "rank1")),
        markers=True,
    ),
    ("deep_miner", 8): Layout(
        "Table 7:",
        "Table 8:",
        ("Table 8:", ("MSMT17",)),
        (_DM_SOTA,) + _pairs("msmt17", order=("mAP", "rank1")),
        markers=True,
    ),
}

# Row labels the CSV corrects (README "Transcription decisions"): CSV method -> label in the text.
PRINTED_LABEL = {("deep_miner", 4, "CHAM"): "Снам"}

_NUMBER = re.compile(r"^\d+(\.\d+)?$")


@dataclass
class PrintedRow:
    label: str  # without markers, <b> tags and extra spaces
    markers: str
    cells: list[str]
    line_no: int


def _norm(text: str) -> str:
    return " ".join(text.replace("<b>", " ").replace("</b>", " ").split()).casefold()


def _region(lines: list[str], layout: Layout) -> list[tuple[int, str]]:
    start = next(i for i, line in enumerate(lines) if line.startswith(layout.start))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(layout.end))
    return list(enumerate(lines))[start : end + 1]


def _is_value(token: str) -> bool:
    return token == "-" or bool(_NUMBER.match(token))


def _printed_rows(region: list[tuple[int, str]], layout: Layout, labels: list[str]) -> list[PrintedRow]:
    """The data lines of a region, one PrintedRow per printed table row (flattened lines expanded).

    labels: the printed labels expected in this table, used only to split a flattened label cell.
    """
    rows = []
    for line_no, line in region:
        cells = line.split("\t")
        data = [cell.replace("<b>", " ").replace("</b>", " ").split() for cell in cells[1:]]
        numeric = [i for i, (ds, _) in enumerate(layout.cells) if ds is not None]
        tokens = [t for i in numeric if i < len(data) for t in data[i]]
        if not tokens or not all(_is_value(t) for t in tokens) or not any(_NUMBER.match(t) for t in tokens):
            continue  # prose, header, legend
        label = cells[0]
        markers = ""
        if layout.markers:
            stripped = label.lstrip("*+~\\ ")
            markers = "".join(c for c in label[: len(label) - len(stripped)] if c in MARKERS)
            label = stripped
        n = max(len(cell) for cell in data)
        if n == 1 or len(data) != len(layout.cells):
            rows.append(PrintedRow(_norm(label), markers, [" ".join(c) for c in data], line_no + 1))
            continue
        # a flattened line: n labels in the label cell, n tokens per cell
        assert all(len(cell) == n for cell in data), f"line {line_no + 1}: ragged flattened cells"
        found = sorted((_norm(label).find(lab), lab) for lab in labels if lab in _norm(label))
        assert len(found) == n, f"line {line_no + 1}: {n} values per cell but labels {found}"
        for k, (_, lab) in enumerate(found):
            rows.append(PrintedRow(lab, markers, [cell[k] for cell in data], line_no + 1))
    return rows


def _expected_cells(df_method: pd.DataFrame, layout: Layout) -> list[str | float]:
    out: list[str | float] = []
    for ds, col in layout.cells:
        if ds is None:
            out.append(df_method[col].iloc[0])
            continue
        hit = df_method[df_method["dataset"] == ds]
        assert len(hit) == 1, f"{df_method['method'].iloc[0]}: no single row for {ds}"
        out.append(float(hit[col].iloc[0]))
    return out


def _cell_matches(expected: str | float, printed: str) -> bool:
    if isinstance(expected, str):
        return expected == ("" if printed == "-" else printed)
    if printed == "-":
        return pd.isna(expected)
    return not pd.isna(expected) and float(printed) == expected


@pytest.mark.parametrize("key", list(PAPER_TABLES), ids=lambda k: f"{k[0]}-{k[1]}")
def test_every_cell_is_on_its_printed_line(key):
    paper, table = key
    layout = LAYOUTS[key]
    lines = paper_lines(paper)
    df = load_paper_table(paper, table)
    region = _region(lines, layout)

    caption_prefix, words = layout.caption
    caption = next(line for _, line in region if line.startswith(caption_prefix))
    for word in words:
        assert word in caption, f"{paper} Table {table}: caption {caption!r} lacks {word!r}"
    assert {ds for ds, _ in layout.cells if ds} == set(df["dataset"])

    methods = list(dict.fromkeys(df["method"]))  # in row order (checked by test_schema)
    labels = [_norm(PRINTED_LABEL.get((paper, table, m), m)) for m in methods]
    printed = _printed_rows(region, layout, labels)
    assert [p.label for p in printed] == labels, f"{paper} Table {table}: printed rows differ from CSV rows"

    problems = []
    for method, row in zip(methods, printed, strict=True):
        sub = df[df["method"] == method]
        expected = _expected_cells(sub, layout)
        if len(row.cells) != len(expected):
            problems.append(f"line {row.line_no} {method}: {len(row.cells)} cells, expected {len(expected)}")
            continue
        for (ds, col), want, got in zip(layout.cells, expected, row.cells, strict=True):
            if not _cell_matches(want, got):
                problems.append(f"line {row.line_no} {method} {ds} {col}: CSV {want!r}, printed {got!r}")
        if layout.markers:
            notes = {item.strip() for item in sub["notes"].iloc[0].split(";")}
            want_marks = {MARKERS[c] for c in row.markers}
            if notes & set(MARKERS.values()) != want_marks:
                problems.append(f"line {row.line_no} {method}: markers {row.markers!r} vs notes {notes}")
    assert not problems, f"{paper} Table {table}:\n" + "\n".join(problems)


def test_deep_miner_figure7_numbers_match_table1():
    """Figure 7's caption (baseline) and the erasing-threshold prose (tau = 0.8) repeat Table 1 rows."""
    lines = paper_lines("deep_miner")
    percent = re.compile(r"(\d+(?:\.\d+)?)%")
    caption = next(line for line in lines if line.startswith("Figure 7:"))
    prose = next(line for line in lines if line.startswith("**Erasing threshold:**"))
    assert r"\tau = 0.8" in prose
    baseline = _cells("deep_miner", 1, "baseline (only global branch)", "market1501")
    best = _cells("deep_miner", 1, "After block 3", "market1501")
    assert [float(x) for x in percent.findall(caption)] == list(baseline)  # Rank-1 then mAP
    assert [float(x) for x in percent.findall(prose)] == list(best)
