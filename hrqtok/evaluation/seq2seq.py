"""The encoder-decoder transformer of the downstream tasks (HRQ paper Appendix C.1/C.2): it reads
multitokens (a noun's, or a user's history) and generates one multitoken, position by position,
with beam search restricted to multitokens of real items.

Embeddings are tied: one table embeds source and target ids and, transposed, scores the next
id. Positions are learned.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from hrqtok.config import Seq2SeqConfig
from hrqtok.devices import resolve_device
from hrqtok.evaluation.dropout import use_lane_dropout
from hrqtok.evaluation.vocabulary import BOS, PAD, PrefixTrie


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig, vocabulary_size: int, max_length: int):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocabulary_size, config.d_model, padding_idx=PAD)
        # sources are left-padded (histories: the most recent item last), so their positions
        # count back from the end; target positions count from the start
        self.source_position = nn.Embedding(max_length, config.d_model)
        self.target_position = nn.Embedding(max_length, config.d_model)
        layer = dict(d_model=config.d_model, nhead=config.heads, dim_feedforward=config.feedforward,
                     dropout=config.dropout, batch_first=True)
        # no nested-tensor fast path: a prototype that warns, and no gain on sequences this short
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), config.encoder_layers,
                                             norm=nn.LayerNorm(config.d_model), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), config.decoder_layers,
                                             norm=nn.LayerNorm(config.d_model))
        nn.init.normal_(self.embed.weight, std=config.d_model ** -0.5)
        use_lane_dropout(self)  # torch's CPU dropout was a quarter of a step

    def _embed(self, ids: Tensor, positions: Tensor) -> Tensor:
        return self.embed(ids) * math.sqrt(self.config.d_model) + positions

    def encode(self, source: Tensor) -> tuple[Tensor, Tensor]:
        padding = source == PAD
        from_end = torch.arange(source.shape[1] - 1, -1, -1, device=source.device)
        hidden = self._embed(source, self.source_position(from_end))
        return self.encoder(hidden, src_key_padding_mask=padding), padding

    def decode(self, memory: Tensor, padding: Tensor, prefix: Tensor) -> Tensor:
        """Logits (b, t, V) of the id after each position of ``prefix`` (b, t)."""
        causal = nn.Transformer.generate_square_subsequent_mask(prefix.shape[1], dtype=memory.dtype)
        positions = self.target_position(torch.arange(prefix.shape[1], device=prefix.device))
        hidden = self.decoder(self._embed(prefix, positions), memory, tgt_mask=causal,
                                          tgt_is_causal=True, memory_key_padding_mask=padding)
        return hidden @ self.embed.weight.T

    def cross_cache(self, memory: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Each decoder layer's cross-attention keys and values of ``memory`` (b, S, d), as
        (b, heads, S, d_head): computed once per source instead of once per beam and step."""
        heads = self.config.heads
        cache = []
        for layer in self.decoder.layers:
            attention = layer.multihead_attn
            d = attention.embed_dim
            key_value = nn.functional.linear(memory, attention.in_proj_weight[d:], attention.in_proj_bias[d:])
            key, value = (part.unflatten(-1, (heads, -1)).transpose(1, 2) for part in key_value.chunk(2, -1))
            cache.append((key, value))
        return cache

    def decode_next(self, cache: list[tuple[Tensor, Tensor]], padding: Tensor, prefix: Tensor) -> Tensor:
        """Logits (b·w, V) of the id after the last position of each prefix (b·w, t): w beams
        per source, beams of source i in rows i·w … i·w + w - 1. Inference only; the same
        result as ``decode(memory repeated w times, …)[:, -1]`` without repeating memory. It
        follows nn.TransformerDecoderLayer's post-norm forward (the layers built above)."""
        b = len(padding)
        rows, t = prefix.shape
        width, heads = rows // b, self.config.heads
        positions = self.target_position(torch.arange(t, device=prefix.device))
        x = self._embed(prefix, positions)
        causal = nn.Transformer.generate_square_subsequent_mask(t, dtype=x.dtype)
        attend = ~padding[:, None, None, :]  # (b, 1, 1, S)
        for layer, (key, value) in zip(self.decoder.layers, cache):
            x = layer.norm1(x + layer.self_attn(x, x, x, attn_mask=causal, is_causal=True,
                                                need_weights=False)[0])
            attention = layer.multihead_attn
            d = attention.embed_dim
            query = nn.functional.linear(x, attention.in_proj_weight[:d], attention.in_proj_bias[:d])
            # every beam's queries of one source attend to that source's keys: stack them
            query = query.reshape(b, width * t, heads, -1).transpose(1, 2)
            mixed = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attend)
            mixed = mixed.transpose(1, 2).reshape(rows, t, d)
            x = layer.norm2(x + attention.out_proj(mixed))
            x = layer.norm3(x + layer.linear2(layer.activation(layer.linear1(x))))
        return self.decoder.norm(x[:, -1]) @ self.embed.weight.T

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        """Teacher forcing: logits (b, L, V) for each id of ``target`` (b, L)."""
        memory, padding = self.encode(source)
        prefix = torch.cat([torch.full_like(target[:, :1], BOS), target[:, :-1]], 1)
        return self.decode(memory, padding, prefix)


ProgressFn = Callable[[str, int, int, dict], None]


@dataclass
class Training:
    model: Seq2Seq  # in eval mode; the best-validated weights when a validation was given
    losses: list[float]  # mean cross-entropy per epoch
    validation: list[tuple[int, float]] = field(default_factory=list)  # (epoch, score)
    best_epoch: int | None = None


def train_seq2seq(sources: np.ndarray, targets: np.ndarray, vocabulary_size: int,
                  config: Seq2SeqConfig, *, progress: ProgressFn | None = None,
                  validate: Callable[[Seq2Seq], float] | None = None,
                  validate_every: int = 1) -> Training:
    """Fit on (source ids (n, S) left-padded with PAD, target ids (n, L)) pairs. With ``validate``
    (higher is better), the model is scored every ``validate_every`` epochs and after the last,
    and the best-scoring weights are the ones returned."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # on the CPU: the same batches anywhere
    device = resolve_device(config.device)
    model = Seq2Seq(config, vocabulary_size, max(sources.shape[1], targets.shape[1])).to(device)
    # fused: one kernel for every parameter instead of a loop of small ops per tensor
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, fused=True)
    lengths = torch.from_numpy((sources != PAD).sum(1))  # left-padded: PAD only at the start
    source, target = torch.from_numpy(sources).to(device), torch.from_numpy(targets).to(device)
    training = Training(model, [])
    best_score, best_state = float("-inf"), None
    for epoch in range(1, config.epochs + 1):
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=device)  # no sync per step
        for batch in _length_batches(lengths, config.batch_size, generator):
            longest, batch = int(lengths[batch].max()), batch.to(device)
            logits = model(source[batch, -longest:], target[batch])
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), target[batch].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * len(batch)
        training.losses.append(float(total) / max(len(source), 1))
        info = {"loss": training.losses[-1]}
        if validate and (epoch % validate_every == 0 or epoch == config.epochs):
            model.eval()
            score = float(validate(model))
            training.validation.append((epoch, score))
            if score > best_score:
                best_score, training.best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
            info.update(validation=score, best=best_score)
        if progress:
            progress("train", epoch, config.epochs, info)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return training


def _length_batches(lengths: Tensor, size: int, generator: torch.Generator) -> list[Tensor]:
    """Random batches of sources of similar length, in random order: trimming each batch to
    its longest source then wastes little on padding (histories vary from 1 to 19 items)."""
    shuffled = torch.randperm(len(lengths), generator=generator)
    by_length = shuffled[torch.sort(lengths[shuffled], stable=True).indices]
    batches = by_length.split(size)
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


@torch.no_grad()
def beam_search(model: Seq2Seq, sources: np.ndarray, trie: PrefixTrie, *, width: int,
                batch_size: int = 256, progress: ProgressFn | None = None) -> np.ndarray:
    """The ``width`` most likely multitokens in ``trie`` for each source, best first:
    (n, width, L) vocabulary ids, a row of PAD where fewer than ``width`` exist. It runs on
    the model's device."""
    length = len(trie.steps)
    out = np.full((len(sources), width, length), PAD, dtype=np.int64)
    source = torch.from_numpy(sources).to(next(model.parameters()).device)
    for start in range(0, len(source), batch_size):
        out[start:start + batch_size] = _beam_batch(model, source[start:start + batch_size], trie,
                                                    width, length).cpu().numpy()
        if progress:
            progress("generate", min(start + batch_size, len(source)), len(source), {})
    return out


def _beam_batch(model: Seq2Seq, source: Tensor, trie: PrefixTrie, width: int, length: int) -> Tensor:
    b = len(source)
    longest = int((source != PAD).sum(1).max()) if b else 0
    memory, padding = model.encode(source[:, -max(longest, 1):])  # sources are left-padded
    cache = model.cross_cache(memory)
    device = source.device
    beams = torch.full((b * width, 1), BOS, dtype=torch.long, device=device)
    scores = torch.full((b, width), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live beam to start with
    for t in range(length):
        logits = model.decode_next(cache, padding, beams)
        allowed = trie.allowed(beams[:, 1:].cpu()).to(device)  # the trie lives on the CPU
        log_p = logits.log_softmax(-1).masked_fill(~allowed, float("-inf"))
        total = (scores.reshape(-1, 1) + log_p).reshape(b, -1)  # (b, width * V)
        scores, flat = total.topk(width, dim=1)
        parent = flat // log_p.shape[1] + torch.arange(b, device=device).unsqueeze(1) * width
        beams = torch.cat([beams[parent.reshape(-1)], (flat % log_p.shape[1]).reshape(-1, 1)], 1)
    result = beams[:, 1:].reshape(b, width, length)
    return result.masked_fill(scores.isinf().unsqueeze(-1), PAD)
