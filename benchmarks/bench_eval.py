"""Next-item evaluation on MovieLens-100k (from the recbole package), random 3 × 256 multitokens:
- training throughput: batches of similar-length histories trimmed to their longest
  (what `eval next-item` runs) vs random batches padded to 19 items;
- beam search over the 943 validation users: cross-attention keys/values computed once per
  user (`Seq2Seq.decode_next`) vs memory repeated per beam and re-projected every step
  (`Seq2Seq.decode`), with a check that both return the same beams.
Prints seconds and the speed-ups measured in this run."""

import time
from dataclasses import replace

import numpy as np
import torch
from _common import best_time

from hrqtok.config import NEXT_ITEM
from hrqtok.evaluation.histories import build_histories, item_rows, leave_one_out
from hrqtok.evaluation.next_item import history_ids
from hrqtok.evaluation.seq2seq import Seq2Seq, beam_search, train_seq2seq
from hrqtok.evaluation.systems import random_multitokens
from hrqtok.evaluation.vocabulary import BOS, PAD, PrefixTrie, Vocabulary
from hrqtok.sources.interactions import read_interactions
from hrqtok.sources.movielens import FIELDS, interactions_path, movie_records


def padded_epoch(model: Seq2Seq, source: torch.Tensor, target: torch.Tensor, batch_size: int) -> None:
    """The baseline: random batches, every history padded to the longest one."""
    optimizer = torch.optim.Adam(model.parameters(), lr=NEXT_ITEM.learning_rate)
    model.train()
    for batch in torch.randperm(len(source)).split(batch_size):
        logits = model(source[batch], target[batch])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target[batch].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def repeated_memory_beams(model: Seq2Seq, sources: np.ndarray, trie: PrefixTrie, width: int,
                          batch_size: int = 256) -> np.ndarray:
    """The baseline beam search: memory repeated for each beam, decoded in full at each step."""
    length = len(trie.steps)
    out = []
    for start in range(0, len(sources), batch_size):
        source = torch.from_numpy(sources[start:start + batch_size])
        b = len(source)
        memory, padding = model.encode(source)
        memory, padding = memory.repeat_interleave(width, 0), padding.repeat_interleave(width, 0)
        beams = torch.full((b * width, 1), BOS, dtype=torch.long)
        scores = torch.full((b, width), float("-inf"))
        scores[:, 0] = 0.0
        for _ in range(length):
            log_p = model.decode(memory, padding, beams)[:, -1].log_softmax(-1)
            log_p = log_p.masked_fill(~trie.allowed(beams[:, 1:]), float("-inf"))
            scores, flat = (scores.reshape(-1, 1) + log_p).reshape(b, -1).topk(width, dim=1)
            parent = flat // log_p.shape[1] + torch.arange(b).unsqueeze(1) * width
            beams = torch.cat([beams[parent.reshape(-1)], (flat % log_p.shape[1]).reshape(-1, 1)], 1)
        out.append(beams[:, 1:].reshape(b, width, length).masked_fill(scores.isinf().unsqueeze(-1), PAD))
    return torch.cat(out).numpy()


def main() -> None:
    torch.manual_seed(0)
    ids = [movie["id"] for movie in movie_records()]
    events = read_interactions(interactions_path(), FIELDS)
    histories, _ = build_histories(events.users, item_rows(events.items, ids), events.times)
    splits = leave_one_out(histories)
    tokens = random_multitokens(len(ids), [256] * 3, seed=0)
    vocabulary = Vocabulary.for_tokens(tokens)
    item_ids = vocabulary.ids(tokens)
    source = history_ids(splits["train"], item_ids)
    target = item_ids[splits["train"].targets]
    n = len(source)

    config = replace(NEXT_ITEM, epochs=1)
    start = time.perf_counter()
    model = train_seq2seq(source, target, len(vocabulary), config).model
    trimmed = time.perf_counter() - start
    start = time.perf_counter()
    padded_epoch(Seq2Seq(config, len(vocabulary), source.shape[1]), torch.from_numpy(source),
                 torch.from_numpy(target), config.batch_size)
    padded = time.perf_counter() - start
    print(f"training, {n:,} histories of 1–19 items (76 ids at most), d {config.d_model}: "
          f"length batches {trimmed:.1f} s/epoch ({n / trimmed:,.0f} examples/s), padded "
          f"{padded:.1f} s/epoch ({n / padded:,.0f}/s); speed-up {padded / trimmed:.2f}x")

    trie = PrefixTrie(item_ids, len(vocabulary))
    validation = history_ids(splits["validation"], item_ids)
    width = NEXT_ITEM.beam
    cached = best_time(lambda: beam_search(model, validation, trie, width=width), repeat=3)
    plain = best_time(lambda: repeated_memory_beams(model, validation, trie, width), repeat=2)
    same = np.mean(beam_search(model, validation, trie, width=width)
                   == repeated_memory_beams(model, validation, trie, width))
    print(f"beam search, {len(validation)} users, width {width}: cached cross-attention "
          f"{cached:.2f} s ({len(validation) / cached:,.0f} users/s), repeated memory {plain:.2f} s; "
          f"speed-up {plain / cached:.1f}x; same beams {same:.2%}")


if __name__ == "__main__":
    main()
