"""The encoder-decoder transformer of the downstream tasks (HRQ paper Appendix C.1/C.2): it reads
multitokens (a noun's, or a user's history) and generates one multitoken, position by position,
with beam search restricted to multitokens of real items.

Embeddings are tied: one table embeds source and target ids and, transposed, scores the next
id. Positions are learned.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from hrqtok.config import Seq2SeqConfig
from hrqtok.evaluation.vocabulary import BOS, PAD, PrefixTrie


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig, vocabulary_size: int, max_length: int):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocabulary_size, config.d_model, padding_idx=PAD)
        self.position = nn.Embedding(max_length, config.d_model)
        layer = dict(d_model=config.d_model, nhead=config.heads, dim_feedforward=config.feedforward,
                     dropout=config.dropout, batch_first=True)
        # no nested-tensor fast path: a prototype that warns, and no gain on sequences this short
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), config.encoder_layers,
                                             norm=nn.LayerNorm(config.d_model), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), config.decoder_layers,
                                             norm=nn.LayerNorm(config.d_model))
        nn.init.normal_(self.embed.weight, std=config.d_model ** -0.5)

    def _embed(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.embed(ids) * math.sqrt(self.config.d_model) + self.position(positions)

    def encode(self, source: Tensor) -> tuple[Tensor, Tensor]:
        padding = source == PAD
        return self.encoder(self._embed(source), src_key_padding_mask=padding), padding

    def decode(self, memory: Tensor, padding: Tensor, prefix: Tensor) -> Tensor:
        """Logits (b, t, V) of the id after each position of ``prefix`` (b, t)."""
        causal = nn.Transformer.generate_square_subsequent_mask(prefix.shape[1], dtype=memory.dtype)
        hidden = self.decoder(self._embed(prefix), memory, tgt_mask=causal,
                                          tgt_is_causal=True, memory_key_padding_mask=padding)
        return hidden @ self.embed.weight.T

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        """Teacher forcing: logits (b, L, V) for each id of ``target`` (b, L)."""
        memory, padding = self.encode(source)
        prefix = torch.cat([torch.full_like(target[:, :1], BOS), target[:, :-1]], 1)
        return self.decode(memory, padding, prefix)


ProgressFn = Callable[[str, int, int, dict], None]


def train_seq2seq(sources: np.ndarray, targets: np.ndarray, vocabulary_size: int,
                  config: Seq2SeqConfig, *, progress: ProgressFn | None = None) -> Seq2Seq:
    """Fit on (source ids (n, S) padded with PAD, target ids (n, L)) pairs; returns the model
    in eval mode."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = Seq2Seq(config, vocabulary_size, max(sources.shape[1], targets.shape[1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    source, target = torch.from_numpy(sources), torch.from_numpy(targets)
    model.train()
    for epoch in range(1, config.epochs + 1):
        total = 0.0
        for batch in torch.randperm(len(source), generator=generator).split(config.batch_size):
            logits = model(source[batch], target[batch])
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), target[batch].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        if progress:
            progress("train", epoch, config.epochs, {"loss": total / max(len(source), 1)})
    return model.eval()


@torch.no_grad()
def beam_search(model: Seq2Seq, sources: np.ndarray, trie: PrefixTrie, *, width: int,
                batch_size: int = 256, progress: ProgressFn | None = None) -> np.ndarray:
    """The ``width`` most likely multitokens in ``trie`` for each source, best first:
    (n, width, L) vocabulary ids, a row of PAD where fewer than ``width`` exist."""
    length = len(trie.steps)
    out = np.full((len(sources), width, length), PAD, dtype=np.int64)
    source = torch.from_numpy(sources)
    for start in range(0, len(source), batch_size):
        out[start:start + batch_size] = _beam_batch(model, source[start:start + batch_size], trie,
                                                    width, length).numpy()
        if progress:
            progress("generate", min(start + batch_size, len(source)), len(source), {})
    return out


def _beam_batch(model: Seq2Seq, source: Tensor, trie: PrefixTrie, width: int, length: int) -> Tensor:
    b = len(source)
    memory, padding = model.encode(source)
    memory = memory.repeat_interleave(width, 0)
    padding = padding.repeat_interleave(width, 0)
    beams = torch.full((b * width, 1), BOS, dtype=torch.long)
    scores = torch.full((b, width), float("-inf"))
    scores[:, 0] = 0.0  # one live beam to start with
    for t in range(length):
        logits = model.decode(memory, padding, beams)[:, -1]
        log_p = logits.log_softmax(-1).masked_fill(~trie.allowed(beams[:, 1:]), float("-inf"))
        total = (scores.reshape(-1, 1) + log_p).reshape(b, -1)  # (b, width * V)
        scores, flat = total.topk(width, dim=1)
        parent = flat // log_p.shape[1] + torch.arange(b).unsqueeze(1) * width
        beams = torch.cat([beams[parent.reshape(-1)], (flat % log_p.shape[1]).reshape(-1, 1)], 1)
    result = beams[:, 1:].reshape(b, width, length)
    return result.masked_fill(scores.isinf().unsqueeze(-1), PAD)
