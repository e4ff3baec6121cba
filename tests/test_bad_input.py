"""Bad data is never accepted silently, options that cannot apply are refused, decode reads
every format encode writes, and the embedding cache never stops a command."""

import json
import multiprocessing
import os
import sqlite3
import stat

import numpy as np
import pytest

from hrqtok.errors import InputError
from hrqtok.jsonsafe import dumps, json_safe
from hrqtok.sources.embedder import EmbeddingCache, embed_texts
from hrqtok.sources.items import ItemFields, read_items
from tests.conftest import TINY_FIT, FakeEmbedder
from tests.test_cli import run

VEC = ItemFields("id", ("text",), "vec")


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _refused(path, fields=VEC, fmt=None):
    with pytest.raises(InputError) as info:
        read_items(path, fields, fmt=fmt)
    return str(info.value)


@pytest.mark.parametrize("line, words", [
    ('{"id": "a", "vec": [true, false]}', "true/false"),
    ('{"id": "a", "vec": ["1", "2"]}', "not a number"),
    ('{"id": "a", "vec": [1e39, 0]}', "float32"),
    ('{"id": "a", "vec": [' + "1" + "0" * 400 + ', 0]}', "too large"),
    ('{"id": "a", "vec": [NaN, 0]}', "NaN"),
    ('{"id": "a", "vec": [[1, 2]]}', "flat"),
    ('{"id": "   ", "vec": [1, 2]}', "whitespace"),
    ('{"id": "a\\nb", "vec": [1, 2]}', "line break"),
    ('{"id": null, "vec": [1, 2]}', "null"),
])
def test_bad_vectors_and_ids_name_the_line_and_field(tmp_path, line, words):
    path = _write(tmp_path, "x.jsonl", '{"id": "ok", "vec": [0.5, 0.5]}\n' + line + "\n")
    message = _refused(path)
    assert words in message and f"{path}:2" in message


@pytest.mark.parametrize("text", ["NaN", "null", "Infinity"])
def test_non_texts_are_not_embedded_as_words(tmp_path, text):
    path = _write(tmp_path, "x.jsonl", f'{{"id": "a", "text": {text}}}\n')
    assert "text" in _refused(path, ItemFields())


def test_csv_extra_fields_bom_long_fields_and_bad_bytes(tmp_path):
    extra = _write(tmp_path, "extra.csv", "id,vec\na,1 2\nb,1 2,oops\n")
    assert "extra.csv:3" in _refused(extra) and "3 fields" in _refused(extra)
    long_text = "word " * 40_000  # 200 KB, beyond csv's default field limit
    bom = _write(tmp_path, "bom.csv", "\ufeffid,text\na,\"" + long_text + "\"\n")
    items = read_items(bom, ItemFields())
    assert items.ids == ["a"] and len(items.texts[0]) > 128_000
    bad = _write(tmp_path, "bad.csv", b"id,text\na,fine\nb,caf\xe9\n")
    assert "bad.csv:3" in _refused(bad, ItemFields()) and "UTF-8" in _refused(bad, ItemFields())


def test_fifo_dev_stdin_and_dev_null_inputs(tmp_path):
    import threading

    fifo = tmp_path / "items.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text('{"id": "a", "vec": [1, 2]}\n'))
    writer.start()
    items = read_items(str(fifo), VEC, fmt="jsonl")
    writer.join()
    assert items.ids == ["a"]
    assert "no items found" in _refused("/dev/null", VEC, fmt="jsonl")
    assert "no such file" in _refused(str(tmp_path / "missing.jsonl"))


def test_json_output_never_holds_nan():
    report = {"latent_norm": {"mean": 0.0, "cv": float("nan")}, "rows": [1.0, float("inf")]}
    text = dumps(report)
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back["latent_norm"]["cv"] is None and back["rows"][1] is None
    assert set(back["null_reasons"]) == {"latent_norm.cv", "rows[1]"}
    assert json_safe({"a": 1}) == {"a": 1}


def test_zero_vectors_give_null_cv_with_a_reason(tmp_path):
    path = tmp_path / "zeros.jsonl"
    path.write_text("".join(json.dumps({"id": f"z{i}", "vec": [0.0] * 4 if i < 6 else
                                        [float(i % 3 == j) for j in range(4)]}) + "\n" for i in range(12)))
    assert run("fit", path, "--model", tmp_path / "m", "--embedding-field", "vec",
               "--quantizer", "rq-kmeans", "--codebook-size", "2", "--levels", "1", "-q").exit_code == 0
    zeros = tmp_path / "only-zeros.jsonl"
    zeros.write_text("".join(json.dumps({"id": f"z{i}", "vec": [0.0] * 4}) + "\n" for i in range(3)))
    result = run("inspect", zeros, "--model", tmp_path / "m", "--json")
    assert result.exit_code == 0 and "NaN" not in result.stdout
    norm = json.loads(result.stdout)["vectors"]["latent_norm"]
    assert norm["cv"] is None and "0" in norm["cv_undefined"]


@pytest.mark.parametrize("option", [
    ["--learning-rate", "inf"], ["--curvature", "inf"], ["--curvature", "100"],
    ["--commitment", "nan"], ["--seed", str(2**64)], ["--seed", "-1"],
    ["--test-fraction", "0.2"], ["--negatives", "10"], ["--quantize-weight", "0.5"],
    ["--tau-max", "1.5"], ["--centroid", "einstein"], ["--hidden-dims", "8,x"],
])
def test_bad_or_inapplicable_options_exit_2_before_any_work(tmp_path, vector_items, option):
    result = run("fit", vector_items, "--model", tmp_path / "m", "--embedding-field", "vec", *option)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "m").exists()


def test_item_options_are_refused_with_wordnet(tmp_path):
    result = run("fit", "--wordnet", "--root", "mammal.n.01", "--model", tmp_path / "m",
                 "--embedding-field", "vec")
    assert result.exit_code == 2 and not (tmp_path / "m").exists()


def test_bad_embedder_folder_is_one_error_line(tmp_path, text_items):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text("{broken")
    result = run("fit", text_items, "--model", tmp_path / "m", "--embedder", folder, *TINY_FIT)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "embedding model" in lines[0], result.output


# --- decode reads what encode writes -------------------------------------------------------------
@pytest.fixture
def fitted(tmp_path, vector_items):
    model = tmp_path / "model"
    assert run("fit", vector_items, "--model", model, "--embedding-field", "vec", *TINY_FIT).exit_code == 0
    return model


@pytest.mark.parametrize("fmt, suffix", [("parquet", "parquet"), ("jsonl", "jsonl"),
                                         ("csv", "csv"), ("strings", "txt")])
def test_decode_reads_every_format_encode_writes(tmp_path, fitted, fmt, suffix):
    out = tmp_path / f"tok.{suffix}"
    assert run("encode", "--model", fitted, "--out", out, "--format", fmt, "-q").exit_code == 0
    from_file = run("decode", "-i", out, "--model", fitted, "-q")
    from_stdin = run("decode", "--model", fitted, "-q", input=out.read_bytes())
    for result in (from_file, from_stdin):
        assert result.exit_code == 0, result.output
        ids = [json.loads(line)["id"] for line in result.stdout.splitlines()]
        assert ids == [f"item{i:03d}" for i in range(120)]


def test_decode_token_strings_and_lengths(fitted):
    strings = run("encode", "--model", fitted, "--format", "strings", "-q").stdout.splitlines()
    item, token_string = strings[0].split("\t")
    assert run("decode", token_string, "--model", fitted, "-q").stdout == f"{item}\n"
    wrong = run("decode", "1", "2", "3", "4", "5", "--model", fitted)
    assert wrong.exit_code == 2 and "5 tokens" in wrong.stderr
    assert run("decode", "<a_1><c_2>", "--model", fitted).exit_code == 2


def test_decode_file_errors_name_the_line(tmp_path, fitted):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"1 2 0\n1 2 3 4 5\n")
    result = run("decode", "-i", bad, "--model", fitted)
    assert result.exit_code == 1 and "5 tokens" in result.stderr and "bad.txt:2" in result.stderr
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"1 2 0\n\xff\xfe 1\n")
    result = run("decode", "-i", binary, "--model", fitted)
    assert result.exit_code == 1 and "bin.txt:2" in result.stderr and "UTF-8" in result.stderr


# --- the embedding cache is only an optimisation -------------------------------------------------
def _embed(cache_path, texts):
    cache = EmbeddingCache(cache_path)
    try:
        return embed_texts(texts, FakeEmbedder(), cache=cache)
    finally:
        cache.close()


def test_corrupt_cache_warns_and_runs_without_it(tmp_path, caplog):
    path = tmp_path / "embeddings.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    vectors = _embed(path, ["a b", "c d"])
    assert vectors.shape == (2, 48) and "embedding cache" in caplog.text


def test_wrongly_shaped_and_non_finite_cache_entries_are_embedded_again(tmp_path, caplog):
    shaped = tmp_path / "shaped.sqlite"
    db = sqlite3.connect(shaped)
    db.execute("CREATE TABLE vectors (x INTEGER)")
    db.commit()
    db.close()
    assert _embed(shaped, ["a b"]).shape == (1, 48)
    path = tmp_path / "nan.sqlite"
    good = _embed(path, ["a b", "c d"])
    db = sqlite3.connect(path)
    db.execute("UPDATE vectors SET vector = ?", (np.full(48, np.nan, np.float32).tobytes(),))
    db.commit()
    db.close()
    again = _embed(path, ["a b", "c d"])
    assert np.array_equal(again, good) and "damaged" in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    assert _embed(folder / "embeddings.sqlite", ["a b"]).shape == (1, 48)


def test_read_only_cache_file_still_answers(tmp_path, caplog):
    path = tmp_path / "embeddings.sqlite"
    first = _embed(path, ["a b"])
    uri = EmbeddingCache.__new__(EmbeddingCache)  # a cache whose writes fail
    uri.path, uri._db, uri._writable = path, sqlite3.connect(f"file:{path}?mode=ro", uri=True), True
    vectors = embed_texts(["a b", "new words"], FakeEmbedder(), cache=uri)
    assert np.array_equal(vectors[0], first[0]) and "cannot write" in caplog.text


ROUNDS, BATCH = 100, 20


def _writer(args):
    """Many small reads and writes, as concurrent encodes do; returns the warnings logged (a
    write that lost the lock and gave up would log one and leave its rows out)."""
    import logging

    path, worker = args
    warnings = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("hrqtok").addHandler(handler)
    cache = EmbeddingCache(path)
    for round in range(ROUNDS):
        keys = [f"w{worker}-r{round}-{i}" for i in range(BATCH)]
        cache.get("m", keys)
        cache.put("m", keys, np.ones((BATCH, 48), np.float32))
    cache.close()
    return warnings


@pytest.mark.slow
def test_six_processes_share_one_cache(tmp_path):
    path = tmp_path / "embeddings.sqlite"
    context = multiprocessing.get_context("spawn")
    with context.Pool(6) as pool:
        warnings = pool.map(_writer, [(path, w) for w in range(6)])
    assert warnings == [[]] * 6
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 6 * ROUNDS * BATCH


def test_cli_reads_items_from_process_substitution_like_paths(tmp_path, fitted, vector_items):
    import threading

    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(vector_items.read_bytes()))
    writer.start()
    result = run("encode", fifo, "--model", fitted, "--input-format", "jsonl", "--out", "-", "-q")
    writer.join()
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 120
