"""The on-disk token table (store.bulk, metrics.bulk_report) against the in-memory one (tables.build_table and
metrics.reports.table_report): the same multitokens and figures for any chunking, any number
of partitions and any existing table."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrqtok.errors import InputError
from hrqtok.metrics.bulk_report import bulk_table_report
from hrqtok.metrics.reports import table_report
from hrqtok.store.bulk import BulkTable
from hrqtok.store.tables import TokenTable, build_table

LEVELS, SIZE = 3, 4


def bulk(folder, ids, codes, *, chunk, partitions, existing=None, source="items.jsonl"):
    table = BulkTable(folder, LEVELS, partitions=partitions)
    for start in range(0, len(ids), chunk):
        table.add(ids[start:start + chunk], codes[start:start + chunk], source=source,
                  lines=list(range(start + 1, start + 1 + len(ids[start:start + chunk]))))
    table.finish(existing)
    return table


def collected(table, rows=7):
    ids, tokens = [], []
    for chunk_ids, chunk_tokens in table.chunks(rows):
        ids += chunk_ids
        tokens.append(chunk_tokens)
    return ids, np.concatenate(tokens)


catalogues = st.integers(0, 60).flatmap(lambda n: st.tuples(
    st.lists(st.text("abcxyzé", min_size=1, max_size=4), min_size=n, max_size=n, unique=True),
    st.lists(st.lists(st.integers(0, SIZE - 1), min_size=LEVELS, max_size=LEVELS),
             min_size=n, max_size=n)))


@settings(max_examples=60, deadline=None)
@given(catalogue=catalogues, old=catalogues, chunk=st.integers(1, 25),
       partitions=st.integers(1, 5), with_existing=st.booleans())
def test_bulk_table_equals_the_in_memory_table(tmp_path_factory, catalogue, old, chunk,
                                               partitions, with_existing):
    ids, codes = catalogue
    codes = np.array(codes, dtype=np.int32).reshape(-1, LEVELS)
    existing = None
    if with_existing:
        old_ids, old_codes = old
        existing = build_table(old_ids, np.array(old_codes, np.int32).reshape(-1, LEVELS), {})
    expected = build_table(ids, codes, {}, existing)
    table = bulk(tmp_path_factory.mktemp("bulk"), ids, codes, chunk=chunk,
                 partitions=partitions, existing=existing)
    got_ids, got_tokens = collected(table)
    assert got_ids == expected.ids
    np.testing.assert_array_equal(got_tokens, expected.tokens)
    assert bulk_table_report(table, SIZE) == table_report(expected, SIZE)


def test_first_repeated_id_in_input_order_is_reported(tmp_path):
    ids = ["a", "b", "c", "b", "a", "d"]  # b repeats at line 4 before a does at line 5
    with pytest.raises(InputError) as error:
        bulk(tmp_path, ids, np.zeros((6, LEVELS), np.int32), chunk=2, partitions=3)
    assert str(error.value) == ("items.jsonl:4: duplicate id 'b' in field 'id' (first "
                                "on line 2); ids must be unique")


def test_kept_rows_keep_their_old_tokens_and_new_rows_skip_taken_indices(tmp_path):
    existing = TokenTable(["old", "x"], np.array([[1, 1, 1, 0], [2, 2, 2, 5]], np.int32))
    ids = ["x", "n1", "n2"]
    codes = np.array([[0, 0, 0], [1, 1, 1], [1, 1, 1]], np.int32)
    _, tokens = collected(bulk(tmp_path, ids, codes, chunk=2, partitions=2, existing=existing))
    # x keeps [2, 2, 2, 5] whole; n1, n2 share old's codes and skip its index 0
    assert tokens.tolist() == [[2, 2, 2, 5], [1, 1, 1, 1], [1, 1, 1, 2]]
