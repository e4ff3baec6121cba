"""Next-item retrieval: the interactions reader and its errors, histories and the leave-one-out
split against a slow reference, the cached beam decoder against the plain one, an end-to-end
run on synthetic data where structured tokens must beat random ones, the CLI, and the real
MovieLens-100k inside the recbole package."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from hrqtok.cli import app
from hrqtok.config import Seq2SeqConfig
from hrqtok.errors import InputError
from hrqtok.evaluation.histories import build_histories, item_rows, leave_one_out
from hrqtok.evaluation.next_item import history_ids, next_item_scores
from hrqtok.evaluation.seq2seq import Seq2Seq, _length_batches, train_seq2seq
from hrqtok.evaluation.vocabulary import PAD, Vocabulary
from hrqtok.sources.interactions import InteractionFields, read_interactions
from hrqtok.store.tables import build_table, write_table

runner = CliRunner()
TINY = dict(d_model=32, heads=4, encoder_layers=1, decoder_layers=1, feedforward=64, dropout=0.0)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- reading interactions ---------------------------------------------------------------------------

def test_reads_recbole_headers_csv_and_parquet_alike(tmp_path):
    tsv = _write(tmp_path / "a.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                       "u1\t10\t3\t5\nu2\t11\t4\t1.5\nu1\t12\t1\t2\n")
    csv = _write(tmp_path / "a.csv", "timestamp,item_id,user_id\n5,10,u1\n1.5,11,u2\n2,12,u1\n")
    parquet = tmp_path / "a.parquet"
    pq.write_table(pa.table({"user_id": ["u1", "u2", "u1"], "item_id": [10, 11, 12],
                             "timestamp": [5.0, 1.5, 2.0]}), parquet)
    for path in (tsv, csv, str(parquet)):
        events = read_interactions(path)
        assert events.users.tolist() == [0, 1, 0]
        assert events.items.to_pylist() == ["10", "11", "12"]
        assert events.times.tolist() == [5.0, 1.5, 2.0]


def test_reads_iso_times_and_custom_fields(tmp_path):
    path = _write(tmp_path / "a.csv", "who,what,when\na,x,2024-01-02T00:00:00\na,y,2024-01-01\n")
    events = read_interactions(path, InteractionFields("who", "what", "when"))
    assert events.times[0] - events.times[1] == 86400


@pytest.mark.parametrize("text, message", [
    ("user_id,item_id\nu,1\n", "a.csv: field 'timestamp' is missing"),
    ("user_id,item_id,timestamp\nu,1,3\nu,,4\n", "a.csv:3: field 'item_id' is empty"),
    ("user_id,item_id,timestamp\nu,1,3\nu,2,soon\n", "a.csv:3: field 'timestamp' must be a number"),
    ("user_id,item_id,timestamp\n", "a.csv: no interactions found"),
    ("", "a.csv: empty file"),
])
def test_bad_interactions_name_file_line_and_field(tmp_path, text, message):
    path = _write(tmp_path / "a.csv", text)
    with pytest.raises(InputError) as caught:
        read_interactions(path)
    assert str(caught.value).replace(str(tmp_path) + "/", "").startswith(message)


def test_parquet_timestamps_and_a_named_format(tmp_path):
    import datetime

    path = tmp_path / "events.data"
    when = [datetime.datetime(2024, 1, 1, 0, 0, 10), datetime.datetime(2024, 1, 1)]
    pq.write_table(pa.table({"user_id": [1, 1], "item_id": ["a", "b"], "timestamp": when}), path)
    events = read_interactions(str(path), fmt="parquet")
    assert events.times[0] - events.times[1] == 10 and events.users.tolist() == [0, 0]
    assert events.location(0) == "row 1"


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_interactions(str(tmp_path / "none.tsv"))
    with pytest.raises(InputError, match="--interactions-format"):
        read_interactions(_write(tmp_path / "a.log", "x"))


# --- histories and the split ------------------------------------------------------------------------

def _reference_histories(users, rows, times, min_events, max_events):
    """One user at a time, in plain Python."""
    sequences = {}
    for index in sorted(range(len(rows)), key=lambda i: (users[i], times[i], i)):
        if rows[index] >= 0:
            sequences.setdefault(users[index], []).append(rows[index])
    return [seq[-max_events:] for _, seq in sorted(sequences.items()) if len(seq) >= min_events]


@pytest.mark.parametrize("seed", range(5))
def test_histories_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    m = 400
    users = rng.integers(0, 30, m)
    rows = np.where(rng.random(m) < 0.1, -1, rng.integers(0, 50, m))
    times = rng.integers(0, 40, m).astype(float)  # many ties: input order must break them
    histories, stats = build_histories(users, rows, times, min_events=5, max_events=8)
    expected = _reference_histories(users, rows, times, 5, 8)
    assert [s[:n].tolist() for s, n in zip(histories.sequences, histories.lengths)] == expected
    assert (histories.sequences[np.arange(8) >= histories.lengths[:, None]] == -1).all()
    assert stats["unknown_interactions"] == int((rows < 0).sum())
    assert stats["kept_users"] + stats["short_users"] == len(np.unique(users))


def test_leave_one_out_by_hand():
    users = np.array([0] * 6 + [1] * 5)
    rows = np.array([10, 11, 12, 13, 14, 15, 20, 21, 22, 23, 24])
    histories, _ = build_histories(users, rows, np.arange(11.0), min_events=5, max_events=5)
    assert histories.sequences.tolist() == [[11, 12, 13, 14, 15], [20, 21, 22, 23, 24]]
    split = leave_one_out(histories)
    assert split["test"].targets.tolist() == [15, 24]
    assert split["test"].histories.tolist() == [[11, 12, 13, 14], [20, 21, 22, 23]]
    assert split["validation"].targets.tolist() == [14, 23]
    assert split["validation"].histories.tolist() == [[-1, 11, 12, 13], [-1, 20, 21, 22]]
    assert split["train"].targets.tolist() == [12, 13, 21, 22]
    assert split["train"].histories.tolist() == [[-1, -1, -1, 11], [-1, -1, 11, 12],
                                                 [-1, -1, -1, 20], [-1, -1, 20, 21]]


def test_history_ids_concatenate_multitokens_left_padded():
    tokens = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 1]])
    vocabulary = Vocabulary.for_tokens(tokens)
    item_ids = vocabulary.ids(tokens)
    split = leave_one_out(build_histories(np.zeros(5, int), np.array([0, 1, 2, 0, 1]),
                                          np.arange(5.0), min_events=5, max_events=5)[0])
    ids = history_ids(split["validation"], item_ids)
    assert ids.tolist() == [[PAD] * 3 + item_ids[0].tolist() + item_ids[1].tolist() + item_ids[2].tolist()]


def test_item_rows_marks_unknown_items():
    assert item_rows(pa.array(["b", "z", "a"]), ["a", "b"]).tolist() == [1, -1, 0]


# --- the transformer pieces next-item relies on -------------------------------------------------------

@pytest.mark.parametrize("width", [1, 3])
def test_cached_decoder_matches_plain_decoder(width):
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(**TINY), 20, 12).eval()
    source = torch.randint(2, 20, (4, 12))
    source[:2, :5] = PAD  # left padding
    prefix = torch.randint(2, 20, (4 * width, 3))
    with torch.no_grad():
        memory, padding = model.encode(source)
        plain = model.decode(memory.repeat_interleave(width, 0), padding.repeat_interleave(width, 0),
                             prefix)[:, -1]
        cached = model.decode_next(model.cross_cache(memory), padding, prefix)
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)


def test_leading_padding_does_not_change_the_model_output():
    """Training trims each batch to its longest history: that must not change what the model
    computes for the others, so positions count from the end and PAD is masked."""
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(**TINY), 20, 12).eval()
    history, target = torch.randint(2, 20, (3, 5)), torch.randint(2, 20, (3, 2))
    padded = torch.cat([torch.full((3, 7), PAD), history], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded, target), model(history, target), atol=1e-5, rtol=1e-5)


def test_length_batches_cover_each_example_once_with_similar_lengths():
    lengths = torch.tensor([5, 1, 3, 5, 2, 1, 4, 3, 2, 5])
    batches = _length_batches(lengths, 3, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    spans = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    assert max(spans) <= 1  # sorted by length before batching


def test_training_returns_the_weights_of_the_best_validated_epoch():
    sources = np.random.default_rng(0).integers(2, 12, (40, 6))
    targets = np.random.default_rng(1).integers(2, 12, (40, 2))
    scores, snapshots = iter([0.1, 0.5, 0.3, 0.2]), []

    def validate(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    training = train_seq2seq(sources, targets, 12, Seq2SeqConfig(**TINY, epochs=4, batch_size=8),
                             validate=validate)
    assert training.best_epoch == 2 and [e for e, _ in training.validation] == [1, 2, 3, 4]
    returned = training.model.state_dict()
    assert all(torch.equal(returned[k], snapshots[1][k]) for k in returned)
    assert not all(torch.equal(returned[k], snapshots[3][k]) for k in returned)
    assert not training.model.training


# --- end to end -------------------------------------------------------------------------------------

def _cluster_world(users=160, clusters=6, per_cluster=6, events=8, seed=0):
    """Each user watches random items of one cluster; cluster tokens tell the cluster."""
    rng = np.random.default_rng(seed)
    items = clusters * per_cluster
    tokens = np.column_stack([np.arange(items) // per_cluster, np.arange(items) % per_cluster,
                              np.zeros(items, int)])
    cluster = rng.integers(0, clusters, users)
    rows = (cluster[:, None] * per_cluster + rng.integers(0, per_cluster, (users, events))).ravel()
    user = np.repeat(np.arange(users), events)
    return tokens, user, rows, np.tile(np.arange(events, dtype=float), users)


def test_structured_tokens_beat_random_ones_end_to_end():
    tokens, users, rows, times = _cluster_world()
    split = leave_one_out(build_histories(users, rows, times)[0])
    config = Seq2SeqConfig(**TINY, epochs=12, batch_size=64, learning_rate=3e-3)
    structured = next_item_scores(tokens, split, config)
    shuffled = next_item_scores(tokens[np.random.default_rng(1).permutation(len(tokens))], split, config)
    # the next item is uniform over 6 items of the user's cluster: recall@10 can reach 1
    assert structured["recall@10"] > 0.9
    assert structured["recall@10"] > shuffled["recall@10"] + 0.2
    assert 1 <= structured["best_epoch"] <= 12
    assert structured["ndcg@5"] <= structured["ndcg@10"] <= structured["recall@10"]


def _world_files(tmp_path):
    tokens, users, rows, times = _cluster_world(users=40, events=6)
    ids = [f"m{i}" for i in range(len(tokens))]
    table = build_table(ids, tokens[:, :2], {"codebook_sizes": [6, 6]})
    write_table(table, str(tmp_path / "tokens.parquet"))
    lines = ["user\titem\ttime"] + [f"u{u}\tm{r}\t{t:.0f}" for u, r, t in zip(users, rows, times)]
    lines += ["u0\tghost\t99", "lonely\tm1\t1"]  # an unknown item; a user with one event
    _write(tmp_path / "events.tsv", "\n".join(lines) + "\n")
    return str(tmp_path / "tokens.parquet"), str(tmp_path / "events.tsv")


FAST = ["--epochs", "2", "--d-model", "16", "--heads", "2", "--layers", "1", "--feedforward", "32"]
FIELDS = ["--user-field", "user", "--item-field", "item", "--time-field", "time"]


def test_cli_reports_metrics_and_warns_about_what_it_left_out(tmp_path):
    tokens, events = _world_files(tmp_path)
    result = runner.invoke(app, ["eval", "next-item", "--tokens", tokens, "--interactions", events,
                                 *FIELDS, *FAST, "--compare", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["results"]) == {"model", "random"}
    assert {"recall@5", "recall@10", "ndcg@5", "ndcg@10"} <= set(report["results"]["model"])
    assert report["data"]["unknown_interactions"] == 1 and report["data"]["unknown_items"] == 1
    assert report["data"]["short_users"] == 1 and report["data"]["kept_users"] == 40
    assert report["examples"] == {"train": 40 * 3, "validation": 40, "test": 40}
    assert "events.tsv: 1 of 242 interactions name items that are not in" in result.stderr
    assert "(1 distinct); they are left out (first on line 242: 'ghost')" in result.stderr
    assert "1 of 41 users have fewer than 5 interactions" in result.stderr
    # a log gets plain progress lines with each epoch's validation score
    assert re.search(r"^train 2/2 · loss [\d.]+ · validation [\d.]+ \(best [\d.]+\)$",
                     result.stderr, re.MULTILINE)


@pytest.mark.parametrize("extra, code, message", [
    ([], 2, "--interactions FILE or --movielens-100k"),
    (["--interactions", "X", "--movielens-100k"], 2, "--interactions FILE or --movielens-100k"),
    (["--interactions", "EVENTS", "--min-events", "7", "--max-events", "6"], 2, "--min-events"),
    (["--interactions", "EVENTS", "--min-events", "50", "--max-events", "60"], 1, "no user has 50 or more interactions"),
    (["--interactions", "EVENTS", "--item-field", "user"], 1, "no interaction names an item"),
])
def test_cli_rejects_bad_requests(tmp_path, extra, code, message):
    tokens, events = _world_files(tmp_path)
    extra = [events if e == "EVENTS" else e for e in extra]
    fields = ["--user-field", "user", "--time-field", "time"] if "--item-field" in extra else FIELDS
    result = runner.invoke(app, ["eval", "next-item", "--tokens", tokens, *fields, *extra, *FAST, "-q"])
    assert result.exit_code == code
    assert message in " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # rich's box
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1


# --- the real MovieLens-100k ------------------------------------------------------------------------

def test_movielens_100k_from_the_installed_recbole_package(tmp_path):
    from hrqtok.sources.movielens import FIELDS as ML_FIELDS
    from hrqtok.sources.movielens import interactions_path, movie_records

    events = read_interactions(interactions_path(), ML_FIELDS)
    assert len(events) == 100_000 and events.users.max() + 1 == 943
    movies = movie_records()
    assert len(movies) == 1682
    assert movies[0]["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    histories, stats = build_histories(events.users, item_rows(events.items, [m["id"] for m in movies]),
                                       events.times)
    assert stats["unknown_interactions"] == 0 and stats["kept_users"] == 943
    assert (histories.lengths == 20).all()  # every MovieLens-100k user has at least 20 ratings

    result = runner.invoke(app, ["export", "movielens-100k", "--out", str(tmp_path / "ml")])
    assert result.exit_code == 0, result.output
    exported = [json.loads(line) for line in (tmp_path / "ml" / "items.jsonl").read_text().splitlines()]
    assert exported == movies
    copied = read_interactions(str(tmp_path / "ml" / "interactions.tsv"))
    assert copied.items.equals(events.items) and np.array_equal(copied.times, events.times)
