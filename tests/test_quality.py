"""The quality gate (warnings and limits), --codebook-size auto and inspect --prefix."""

import json

import numpy as np
import pytest

from hrqtok.metrics.quality import (
    AUTO_MAX,
    AUTO_MIN,
    AUTO_ROOM,
    auto_codebook_size,
    depth_note,
    quality_warnings,
)
from hrqtok.metrics.reports import table_report
from hrqtok.store.tables import build_table
from tests.test_cli import run

KMEANS = ["--quantizer", "rq-kmeans", "--embedding-field", "vec", "--levels", "2", "-q"]


def _report(codes, size):
    codes = np.asarray(codes)
    return table_report(build_table([f"i{i}" for i in range(len(codes))], codes, {}), size)


@pytest.mark.parametrize("items,levels,expected", [
    (2439, 3, 32), (300, 3, 16), (82115, 3, 128), (10, 3, AUTO_MIN), (10**9, 2, AUTO_MAX),
])
def test_auto_codebook_size(items, levels, expected):
    size = auto_codebook_size(items, levels)
    assert size == expected
    if AUTO_MIN < size < AUTO_MAX:  # the smallest power of two with room for the catalogue
        assert size ** levels >= AUTO_ROOM * items > (size // 2) ** levels


def test_warnings_name_collapsed_levels_and_collisions():
    rng = np.random.default_rng(0)
    healthy = np.stack([rng.integers(256, size=400), rng.integers(256, size=400)], 1)
    assert quality_warnings(_report(healthy, 256)) == []
    collapsed = healthy.copy()
    collapsed[:, 1] = np.where(rng.random(400) < 0.98, 0, collapsed[:, 1])
    warnings = quality_warnings(_report(collapsed, 256))
    assert any(w.startswith("level 1 collapsed") and "smaller --codebook-size" in w for w in warnings)
    assert any("share their codes" in w for w in warnings)
    tiny = np.stack([rng.integers(2, size=400), rng.integers(2, size=400)], 1)
    assert any("only 4 distinct ids exist for 400 items" in w
               for w in quality_warnings(_report(tiny, 2)))


def test_depth_note_when_prefixes_are_nearly_unique():
    codes = np.stack([np.arange(100) % 50, np.arange(100), np.zeros(100, int)], 1)
    assert "depth-2 prefixes for 100 items" in depth_note(_report(codes, 256))
    assert depth_note(_report(np.stack([np.arange(100) % 4] * 3, 1), 256)) is None


@pytest.fixture
def duplicated(tmp_path):
    """40 items, each vector twice: collisions are certain."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(20, 8))
    path = tmp_path / "dup.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "vec": vectors[i // 2].tolist(), "text": f"t{i}"})
                            + "\n" for i in range(40)))
    return path


def test_fit_limits_fail_before_anything_is_written(tmp_path, duplicated):
    result = run("fit", duplicated, "--model", tmp_path / "m", *KMEANS, "--codebook-size", "8",
                 "--max-collision-rate", "0.5")
    assert result.exit_code == 1 and "above --max-collision-rate 0.5; nothing written" in result.stderr
    assert not (tmp_path / "m").exists()
    result = run("fit", duplicated, "--model", tmp_path / "m", *KMEANS, "--codebook-size", "8",
                 "--max-disambiguation", "1")
    assert result.exit_code == 1 and "--max-disambiguation 1" in result.stderr
    assert not (tmp_path / "m").exists()
    result = run("fit", duplicated, "--model", tmp_path / "m", *KMEANS, "--codebook-size", "8")
    assert result.exit_code == 0
    assert "warning: 100.0% of items share their codes" in result.stderr
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["quality"]["warnings"] and metrics["table"]["collisions"]["collision_rate"] == 1.0


def test_encode_limits_write_nothing(tmp_path, duplicated):
    assert run("fit", duplicated, "--model", tmp_path / "m", *KMEANS, "--codebook-size", "8").exit_code == 0
    out = tmp_path / "tokens.parquet"
    for args in (["--max-collision-rate", "0.9"], ["--max-disambiguation", "1"]):
        for items in ([duplicated], []):
            result = run("encode", *items, "--model", tmp_path / "m", "--out", out, *args, "-q")
            assert result.exit_code == 1 and "nothing written" in result.stderr, result.output
            assert not out.exists()
    found = json.loads((tmp_path / "m" / "metrics.json").read_text())["table"]["collisions"]
    holds = str(found["disambiguation_size"])  # a limit the table meets lets encode write
    assert run("encode", "--model", tmp_path / "m", "--out", out, "--max-disambiguation", holds,
               "-q").exit_code == 0 and out.exists()


def test_codebook_size_auto_is_chosen_from_the_catalogue(tmp_path, vector_items):
    result = run("fit", vector_items, "--model", tmp_path / "m", *KMEANS, "--codebook-size", "auto")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"]["codebook_size"] == auto_codebook_size(120, 2) == 32
    for bad in ("1", "abc", "70000"):
        result = run("fit", vector_items, "--model", tmp_path / "x", *KMEANS, "--codebook-size", bad)
        assert result.exit_code == 2 and "--codebook-size" in result.stderr, bad


def test_inspect_lists_the_items_under_a_prefix(tmp_path, duplicated):
    assert run("fit", duplicated, "--model", tmp_path / "m", *KMEANS, "--codebook-size", "8").exit_code == 0
    table = json.loads(run("inspect", "--model", tmp_path / "m", "--json").stdout)
    assert table["quality"]["warnings"]
    first = run("encode", "--model", tmp_path / "m", "--out", "-", "-q").stdout.splitlines()[0]
    tokens = json.loads(first)["tokens"]
    report = json.loads(run("inspect", "--model", tmp_path / "m", "--prefix",
                            f"{tokens[0]},{tokens[1]}", "--json").stdout)["prefix"]
    assert report["tokens"] == tokens[:2] and report["count"] >= 2  # the item and its twin
    assert all(item["tokens"][:2] == tokens[:2] for item in report["items"])
    assert all("text" not in item for item in report["items"])
    shown = run("inspect", duplicated, "--model", tmp_path / "m", "--prefix", str(tokens[0]))
    assert shown.exit_code == 0 and f"items start with {tokens[0]}:" in shown.stderr
    with_text = json.loads(run("inspect", duplicated, "--model", tmp_path / "m", "--prefix",
                               str(tokens[0]), "--json").stdout)["prefix"]
    assert with_text["count"] >= report["count"]
    # the items file is at hand: its text field is shown beside the ids
    assert all(item["text"] == f"t{item['id'][1:]}" for item in with_text["items"])
    for bad in ("x", "1,2,3,4", "-1"):
        assert run("inspect", "--model", tmp_path / "m", "--prefix", bad).exit_code == 2, bad
