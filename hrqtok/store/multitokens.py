"""Reading multitokens back in every form `hrqtok encode` writes them: Parquet token tables,
JSONL (`{"id": …, "tokens": […]}` or bare lists), CSV (`id,tokens` with "12 40 7 0" cells), the
strings form (`id<TAB><a_12><b_40><c_7><d_0>`), and plain lines of integers — in files, FIFOs
or on stdin. Every problem is an InputError naming the source and the line."""

from __future__ import annotations

import csv
import json
import re
import sys

from hrqtok.errors import InputError
from hrqtok.sources.records import check_readable, decode_lines, source_name, text_lines

PARQUET_MAGIC = b"PAR1"
_TOKEN_STRING = re.compile(r"(?:<[a-z]_\d+>)+")
_ONE_TOKEN = re.compile(r"<([a-z])_(\d+)>")
EXPECTED = "expected a multitoken like '12 40 7 0', [12, 40, 7, 0] or <a_12><b_40><c_7><d_0>"


def _from_token_string(text: str, error) -> list[int]:
    pairs = _ONE_TOKEN.findall(text)
    letters = "".join(letter for letter, _ in pairs)
    if letters != "abcdefghijklmnopqrstuvwxyz"[: len(pairs)]:
        raise error(f"token letters must run a, b, c, … in order, found {letters!r}")
    return [int(number) for _, number in pairs]


def parse_multitoken(text: str, where: str) -> list[int]:
    """One multitoken from one line or argument, in any of encode's forms."""

    def error(message: str) -> InputError:
        return InputError(message, source=where)

    text = text.strip()
    if not text:
        raise error(EXPECTED)
    last = text.rsplit("\t", 1)[-1].strip()  # the strings form: id<TAB>tokens
    if _TOKEN_STRING.fullmatch(last):
        return _from_token_string(last, error)
    if text[:1] in "[{":
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise error(f"malformed JSON; {EXPECTED}") from None
        if isinstance(value, dict):
            if "tokens" not in value:
                raise error("a JSON object needs a 'tokens' field")
            value = value["tokens"]
    else:
        try:
            value = [int(t) for t in text.replace(",", " ").split()]
        except ValueError:
            raise error(EXPECTED) from None
    if not isinstance(value, list) or not value or not all(type(t) is int for t in value):
        raise error("expected a non-empty list of integer tokens")
    return value


def _csv_multitokens(lines, name: str) -> list[tuple[str, list[int]]]:
    numbers: list[int] = []

    def texts():
        for number, text in lines:
            numbers.append(number)
            yield text

    reader = csv.reader(texts())
    out = []
    try:
        header = next(reader)
        column = header.index("tokens")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"{len(row)} fields but the header has {len(header)}",
                                 source=name, line=numbers[-1])
            where = f"{name}:{numbers[-1]}"
            out.append((where, parse_multitoken(row[column], where)))
    except csv.Error as e:
        raise InputError(f"malformed CSV ({e})", source=name, line=numbers[-1]) from None
    return out


def _peek(source: str) -> bytes:
    """The first bytes of a regular file."""
    with open(source, "rb") as handle:
        return handle.read(len(PARQUET_MAGIC))


def _table_rows(table, name: str) -> list[tuple[str, list[int]]]:
    return [(f"{name} row {row}", tokens) for row, tokens in enumerate(table.tokens.tolist(), start=1)]


def read_multitokens(source: str) -> list[tuple[str, list[int]]]:
    """(where, multitoken) of every multitoken in ``source`` ('-' is stdin), whichever form
    encode wrote it in; ``where`` names the file and line (or row) for messages."""
    from hrqtok.atomic import is_special
    from hrqtok.store.tables import read_table

    name = source_name(source)
    check_readable(source, name)
    if source == "-" or is_special(source):
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as handle:
                data = handle.read()
        if data.startswith(PARQUET_MAGIC):
            return _table_rows(read_table(name, data=data), name)
        lines = list(decode_lines(data.splitlines(keepends=True), name))
    else:
        if _peek(source) == PARQUET_MAGIC:
            return _table_rows(read_table(source), name)
        lines = list(text_lines(source, name))
    content = [(n, t) for n, t in lines if t.strip()]
    if content and content[0][1].strip().split(",")[:2] in (["id", "tokens"], ["tokens"]):
        return _csv_multitokens(content, name)
    return [(f"{name}:{number}", parse_multitoken(text, f"{name}:{number}"))
            for number, text in content]
