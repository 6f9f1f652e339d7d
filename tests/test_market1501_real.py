"""The Market-1501 parser on the real release (read-only; skipped when the release is absent).

The release is found where every user puts it: ``<data root>/market1501`` (``data/market1501`` or
``$REIDLIB_DATA/market1501``, see :func:`reidlib.utils.paths.data_root`); CI links it there with
``.ci/link-datasets``. Expected numbers are those of the release's readme and of Zheng et al. ICCV 2015,
not of the parser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reidlib.data.datasets import DEFAULT_FOLDERS, load_dataset
from reidlib.utils.paths import data_root


def market1501_root() -> Path:
    return data_root() / DEFAULT_FOLDERS["market1501"]


pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(
        not market1501_root().exists(),
        reason=f"Market-1501 not found at {market1501_root()} (see README, Datasets; or set REIDLIB_DATA)",
    ),
]


@pytest.fixture(scope="module")
def market():
    return load_dataset("market1501", market1501_root())


def test_split_stats(market):
    assert market.stats() == {
        "train": {"images": 12936, "ids": 751, "cameras": 6},
        "query": {"images": 3368, "ids": 750, "cameras": 6},
        "gallery": {"images": 15913, "ids": 751, "cameras": 6},
    }


def test_distractors_kept_junk_dropped(market):
    assert sum(r.pid == 0 for r in market.gallery) == 2798
    assert all(r.pid != -1 for split in (market.train, market.query, market.gallery) for r in split)
    assert {r.camid for r in market.gallery} == set(range(6))


def test_doubled_extensions_present(market):
    # the release has 6 query and 16 non-junk gallery files named '*.jpg.jpg' (all pid 1488 or 0)
    query = [r for r in market.query if r.path.endswith(".jpg.jpg")]
    gallery = [r for r in market.gallery if r.path.endswith(".jpg.jpg")]
    assert len(query) == 6 and {r.pid for r in query} == {1488}
    assert len(gallery) == 16 and {r.pid for r in gallery} == {0, 1488}
    assert any(Path(r.path).name == "1488_c1s6_023021_00.jpg.jpg" for r in query)


def test_train_pids_relabelled(market):
    assert sorted({r.pid for r in market.train}) == list(range(751))
    # relabelling keeps the order of the original pids: the first file is pid 0002 -> 0
    first = min(market.train, key=lambda r: r.path)
    assert Path(first.path).name.startswith("0002_") and first.pid == 0


def test_cli_json_reports_the_release(capsys):
    """The acceptance command: `python -m reidlib data stats --dataset market1501 --root ... --json`."""
    import json

    from reidlib.cli import main

    assert main(["data", "stats", "--dataset", "market1501", "--root", str(market1501_root()), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "train": {"images": 12936, "ids": 751, "cameras": 6},
        "query": {"images": 3368, "ids": 750, "cameras": 6},
        "gallery": {"images": 15913, "ids": 751, "cameras": 6},
    }
