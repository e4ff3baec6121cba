"""Property-based fuzzing of every reader: whatever the bytes, the answer is a correct result or
an HrqtokError (one `Error:` line at the CLI), never another exception (a traceback).

Readers: items (JSONL, CSV, Parquet), token tables, multitokens (decode input), interactions,
and model directories' config.json. FUZZ_CASES is the number of cases the suite runs."""

import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hrqtok.errors import HrqtokError
from hrqtok.sources.interactions import read_interactions
from hrqtok.sources.items import ItemFields, read_items
from hrqtok.store.model_dir import CHECKSUM, config_checksum, load_model_dir
from hrqtok.store.multitokens import read_multitokens
from hrqtok.store.tables import build_table, read_table, write_table
from tests.conftest import TINY_FIT
from tests.test_cli import run

EXAMPLES = 300
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FUZZ_TESTS = 11  # the @FUZZ tests below
FUZZ_CASES = EXAMPLES * FUZZ_TESTS

VEC = ItemFields("id", ("text",), "vec")
json_scalars = st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)
ids = st.one_of(st.text(max_size=6), st.integers(-5, 10**20), st.none(), st.booleans(), st.floats())
vectors = st.one_of(st.lists(st.floats(width=64), min_size=0, max_size=4),
                    st.lists(st.integers(-(10**400), 10**400), max_size=3),
                    st.lists(st.booleans(), max_size=3), st.text(max_size=10), st.none(),
                    st.lists(st.lists(st.floats(), max_size=2), max_size=2))


SCRATCH = Path(tempfile.mkdtemp(prefix="hrqtok-fuzz-"))


@pytest.fixture(scope="module", autouse=True)
def _scratch():
    yield
    shutil.rmtree(SCRATCH, ignore_errors=True)


def _tmp(content: bytes, suffix: str) -> str:
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False, dir=SCRATCH)
    handle.write(content)
    handle.close()
    return handle.name


def mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for position, value, kind in edits:
        if not out:
            out.append(value)
            continue
        position %= len(out)
        if kind == 0:
            out[position] = value
        elif kind == 1:
            out.insert(position, value)
        else:
            del out[position]
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.integers(0, 2)),
                 min_size=1, max_size=6)


def _check_items(result, records):
    """A successful read returned exactly the records' ids and vectors."""
    by_id = {str(r["id"]): r for r in records if isinstance(r, dict) and "id" in r}
    assert len(result.ids) == len(set(result.ids))
    for item_id, vector in zip(result.ids, result.vectors):
        assert item_id.strip() and np.isfinite(vector).all()
        expected = np.asarray(by_id[item_id]["vec"], dtype=np.float64).astype(np.float32)
        assert np.array_equal(vector, expected)


@FUZZ
@given(st.lists(st.fixed_dictionaries({"id": ids, "vec": vectors}), max_size=5))
def test_jsonl_items_are_read_exactly_or_refused(records):
    path = _tmp("".join(json.dumps(r) + "\n" for r in records).encode(), ".jsonl")
    try:
        _check_items(read_items(path, VEC), records)
    except HrqtokError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_jsonl_bytes(data):
    try:
        read_items(_tmp(data, ".jsonl"), ItemFields())
    except HrqtokError:
        pass


@FUZZ
@given(st.text(max_size=300), edits)
def test_csv_text_and_bytes(text, changes):
    base = "id,text,vec\na,hello,1 2\nb,\"x, y\",3 4\n" + text
    for content in (base.encode(), mutate(base.encode("utf-8", "surrogatepass"), changes)):
        for fields in (ItemFields(), VEC):
            try:
                read_items(_tmp(content, ".csv"), fields)
            except HrqtokError:
                pass


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


VALID_ITEMS = _parquet_bytes(pa.table({"id": ["a", "b"], "vec": [[1.0, 2.0], [3.0, 4.0]],
                                       "text": ["x", "y"]}))


@FUZZ
@given(edits, st.lists(st.fixed_dictionaries({"id": ids, "vec": vectors}), min_size=1, max_size=4))
@example([(0, 0, 0)], [{"id": "0", "vec": "0"}])  # a string column read as digits (found by the fuzzer)
def test_parquet_items_mutated_and_typed(changes, records):
    try:
        read_items(_tmp(mutate(VALID_ITEMS, changes), ".parquet"), VEC)
    except HrqtokError:
        pass
    try:
        table = pa.Table.from_pylist(records)
    except (pa.ArrowException, OverflowError):
        return  # pyarrow itself cannot hold these values together
    try:
        _check_items(read_items(_tmp(_parquet_bytes(table), ".parquet"), VEC), records)
    except HrqtokError:
        pass


VALID_TABLE = build_table(["a", "b", "c"], np.array([[1, 2], [1, 2], [0, 3]]),
                          {"model_fingerprint": "f" * 16, "levels": 2, "codebook_sizes": [4, 4]})


def _table_bytes() -> bytes:
    path = _tmp(b"", ".parquet")
    write_table(VALID_TABLE, path)
    return Path(path).read_bytes()


TABLE_BYTES = _table_bytes()


@FUZZ
@given(edits)
def test_token_table_bytes(changes):
    try:
        table = read_table(_tmp(mutate(TABLE_BYTES, changes), ".parquet"))
    except HrqtokError:
        return
    assert len(set(table.ids)) == len(table.ids) and (table.tokens >= 0).all()


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=4), st.none()), min_size=1, max_size=4),
       st.lists(st.one_of(st.none(), st.lists(st.one_of(st.integers(-3, 2**40), st.none()),
                                              max_size=4)), min_size=1, max_size=4),
       st.dictionaries(st.sampled_from(["format_version", "levels", "codebook_sizes"]),
                       json_values, max_size=3))
def test_token_tables_of_any_shape(names, tokens, meta):
    rows = min(len(names), len(tokens))
    try:
        arrow = pa.table({"id": pa.array(names[:rows], pa.string()),
                          "tokens": pa.array(tokens[:rows], pa.list_(pa.int64()))})
    except (pa.ArrowException, OverflowError):
        return
    metadata = {"hrqtok.format_version": "1", **{f"hrqtok.{k}": json.dumps(v) for k, v in meta.items()}}
    arrow = arrow.replace_schema_metadata(metadata)
    try:
        table = read_table(_tmp(_parquet_bytes(arrow), ".parquet"))
    except HrqtokError:
        return
    assert table.tokens.shape[0] == rows and table.ids == names[:rows]
    assert [list(r) for r in table.tokens.tolist()] == tokens[:rows]


@FUZZ
@given(st.lists(st.one_of(
    st.lists(st.integers(-2, 300), max_size=5).map(lambda t: " ".join(map(str, t))),
    st.lists(st.integers(0, 30), max_size=4).map(
        lambda t: "x\t" + "".join(f"<{chr(97 + i)}_{v}>" for i, v in enumerate(t))),
    json_values.map(json.dumps), st.text(max_size=12)), max_size=5), edits)
def test_multitoken_lines(lines, changes):
    content = "\n".join(lines).encode("utf-8", "surrogatepass")
    for data in (content, mutate(content, changes)):
        try:
            result = read_multitokens(_tmp(data, ".txt"))
        except HrqtokError:
            continue
        assert all(isinstance(t, list) and all(type(v) is int for v in t) for _, t in result)
        assert all(where.startswith(str(SCRATCH)) for where, _ in result)


VALID_EVENTS = _parquet_bytes(pa.table({"user_id": ["1", "2"], "item_id": ["a", "b"],
                                        "timestamp": [5, 6]}))


@FUZZ
@given(st.text(max_size=200), edits, st.sampled_from([".tsv", ".csv", ".parquet"]))
@example("", [(305, 128, 0)], ".parquet")  # a column name that is not UTF-8 (found by the fuzzer)
def test_interactions(text, changes, suffix):
    sep = "\t" if suffix == ".tsv" else ","
    base = (sep.join(["user_id", "item_id", "timestamp"]) + "\n" + sep.join(["1", "a", "5"]) + "\n"
            + text).encode("utf-8", "surrogatepass")
    if suffix == ".parquet":
        base = VALID_EVENTS
    for data in (base, mutate(base, changes)):
        try:
            events = read_interactions(_tmp(data, suffix))
        except HrqtokError:
            continue
        assert np.isfinite(events.times).all() and len(events) >= 1


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.conftest import clustered_vectors

    root = tmp_path_factory.mktemp("fuzz-model")
    items = root / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"i{i}", "vec": v.tolist()}) + "\n"
                             for i, v in enumerate(clustered_vectors())))
    assert run("fit", items, "--model", root / "m", "--embedding-field", "vec", *TINY_FIT).exit_code == 0
    return root / "m"


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, prefix + (key,))


@FUZZ
@given(st.data())
def test_config_json_values(model_dir, data):
    config = json.loads((model_dir / "config.json").read_text())
    paths = [p for p in _paths(config) if p]
    path = data.draw(st.sampled_from(paths))
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(json_values)
    config[CHECKSUM] = config_checksum(config) if data.draw(st.booleans()) else config[CHECKSUM]
    folder = Path(tempfile.mkdtemp())
    shutil.copytree(model_dir, folder / "m")
    try:
        (folder / "m" / "config.json").write_text(json.dumps(config))
    except ValueError:
        return
    try:
        loaded = load_model_dir(folder / "m")
    except HrqtokError:
        return
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert loaded.model_config.levels == 2


@FUZZ
@given(edits)
def test_config_json_bytes(model_dir, changes):
    folder = Path(tempfile.mkdtemp())
    shutil.copytree(model_dir, folder / "m")
    config = folder / "m" / "config.json"
    config.write_bytes(mutate(config.read_bytes(), changes))
    try:
        load_model_dir(folder / "m")
    except HrqtokError:
        pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@FUZZ
@given(st.lists(st.text(min_size=1, max_size=8).filter(lambda t: not t.startswith("-")),
                min_size=1, max_size=4))
def test_decode_arguments_through_the_cli(model_dir, tokens):
    result = run("decode", *tokens, "--model", model_dir, "-q")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert result.exit_code in (0, 1, 2)
