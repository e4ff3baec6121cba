"""Taxonomy agreement: NMI, purity and Spearman against scikit-learn / SciPy and by hand, path
parsing, and `hrqtok eval taxonomy` end to end on a real Parquet table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import normalized_mutual_info_score
from typer.testing import CliRunner

from hrqtok.cli import app
from hrqtok.errors import InputError
from hrqtok.evaluation.taxonomy import (
    normalised_mutual_information,
    parse_path,
    purity,
    spearman,
    taxonomy_agreement,
)
from hrqtok.store.tables import build_table, write_table

runner = CliRunner()


def test_purity_and_nmi_by_hand():
    assert purity(np.array([0, 0, 1, 1]), np.array([5, 5, 5, 7])) == pytest.approx(0.75)
    same = np.array([0, 0, 1, 1, 2])
    assert normalised_mutual_information(same, same[::-1] * 0 + same) == pytest.approx(1.0)
    # each cluster holds one of each class: nothing shared
    assert normalised_mutual_information(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_nmi_and_spearman_match_the_libraries(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 6, 300), rng.integers(0, 4, 300)
    b[:150] = a[:150] % 4  # some shared structure
    assert normalised_mutual_information(a, b) == pytest.approx(normalized_mutual_info_score(a, b), rel=1e-9)
    x, y = rng.integers(0, 4, 500), rng.integers(0, 5, 500)  # many ties
    y[:250] = x[:250]
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, rel=1e-9)


def test_parse_path_accepts_lists_and_arrow_strings():
    where = dict(source="items.jsonl", line=3, field="path")
    assert parse_path("Beauty > Skin > Face", **where) == ("Beauty", "Skin", "Face")
    assert parse_path(["a", "b"], **where) == ("a", "b")
    with pytest.raises(InputError, match="items.jsonl:3.*'path'"):
        parse_path(7, **where)
    with pytest.raises(InputError, match="empty category"):
        parse_path("A >  > C", **where)


def test_tokens_that_follow_the_paths_agree_fully():
    paths = [("a", "x"), ("a", "y"), ("b", "z"), ("b", "z"), ("c",)] * 20
    first = {"a": 0, "b": 1, "c": 2}
    second = {"x": 0, "y": 1, "z": 2}
    codes = np.array([[first[p[0]], second.get(p[1], 3) if len(p) > 1 else 3] for p in paths])
    report = taxonomy_agreement(codes, paths, pairs=2_000)
    assert [lv["items"] for lv in report["levels"]] == [100, 80]
    for level in report["levels"]:
        assert level["nmi"] == pytest.approx(1.0) and level["purity"] == 1.0
    # not exactly 1: two ("c",) items share both codes but only one category
    assert report["rank_correlation"] > 0.98
    shuffled = taxonomy_agreement(np.random.default_rng(0).permutation(codes), paths, pairs=2_000)
    assert shuffled["levels"][0]["nmi"] < 0.2 and abs(shuffled["rank_correlation"]) < 0.2


@pytest.fixture
def catalogue(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"item{i}" for i in range(200)]
    top = rng.integers(0, 4, 200)
    table = build_table(ids, np.column_stack([top, rng.integers(0, 8, 200)]),
                        {"levels": 2, "codebook_sizes": [8, 8]})
    write_table(table, str(tmp_path / "tokens.parquet"))
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": i, "path": f"top{t} > mid{t}{k % 2}"}) + "\n"
                             for k, (i, t) in enumerate(zip(ids, top))))
    return tmp_path / "tokens.parquet", items


def test_eval_taxonomy_cli(catalogue):
    tokens, items = catalogue
    result = runner.invoke(app, ["eval", "taxonomy", "--tokens", str(tokens), "--items", str(items),
                                 "--compare", "--runs", "2", "--pairs", "5000", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    model, chance = report["results"]["model"], report["results"]["random"]
    assert report["items"] == 200 and model["runs"] == 2
    assert model["nmi_1"]["mean"] == pytest.approx(1.0) and model["purity_1"]["std"] == 0
    assert chance["nmi_1"]["mean"] < 0.6  # chance NMI is biased upwards on 200 items
    human = runner.invoke(app, ["eval", "taxonomy", "--tokens", str(tokens), "--items", str(items)])
    assert human.exit_code == 0 and "nmi level 1" in human.stderr


def test_eval_taxonomy_bad_input(catalogue, tmp_path):
    tokens, items = catalogue
    extra = tmp_path / "more.jsonl"
    extra.write_text(items.read_text() + json.dumps({"id": "new", "path": "top0"}) + "\n")
    result = runner.invoke(app, ["eval", "taxonomy", "--tokens", str(tokens), "--items", str(extra)])
    assert result.exit_code == 1 and "1 of 201 items have no multitoken" in result.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"id": "item0", "path": 3}) + "\n")
    result = runner.invoke(app, ["eval", "taxonomy", "--tokens", str(tokens), "--items", str(broken)])
    assert result.exit_code == 1 and "broken.jsonl:1" in result.output and "'path'" in result.output
    assert len(result.output.strip().splitlines()) == 1
