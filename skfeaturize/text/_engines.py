"""How a TextFeaturizer runs its token windows: three paths, one result (within 1e-5).

* **packed** (eager torch, the default where the encoder supports it): windows concatenated without any
  padding (:func:`skfeaturize.engines.packed_hidden_states`), so no padding token is computed; batches are
  cut by a token budget;
* **padded** (eager torch otherwise: sentence-transformers heads, encoders without transformers'
  attention interface): length-sorted windows padded per batch by the tokenizer (``tokenizer.pad``);
* **onnxruntime**: the same padded batches through the exported :class:`TextTaps` graph.

All three pool inside (:func:`skfeaturize.pooling.pool_sequence`, or a sentence-transformers head) and
return one ``(batch, width)`` tensor per request.
"""

from __future__ import annotations

import numpy as np

ST_HEAD = "st"
TOKENS_PER_BATCH = 128
"""Packed batches hold up to ``batch_size × TOKENS_PER_BATCH`` tokens (4096 at the default batch size: the
best measured on MiniLM, 1000 mixed texts)."""


def TextTaps(net, head, requests, n_layers: int, left: bool, pass_positions: bool, pass_token_types: bool):  # noqa: N802
    """``forward(input_ids, attention_mask) -> tuple`` of every request's pooled tensor (a padded batch)."""
    import torch
    from torch import nn

    from ..pooling import pool_sequence

    states_needed = any(int(r.layer) != n_layers for r in requests)

    class _TextTaps(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.head = net, head

        def forward(self, input_ids, attention_mask):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if pass_token_types:
                kwargs["token_type_ids"] = torch.zeros_like(input_ids)
            if left and pass_positions:  # positions count real tokens only: left padding is invisible
                kwargs["position_ids"] = (attention_mask.cumsum(1) - 1).clamp(min=0)
            out = self.net(**kwargs, output_hidden_states=states_needed, return_dict=True)
            pooled = []
            for r in requests:
                hidden = out.hidden_states[int(r.layer)] if states_needed else out.last_hidden_state
                if r.pooling == ST_HEAD:
                    feats = {"input_ids": input_ids, "attention_mask": attention_mask,
                             "token_embeddings": hidden}
                    pooled.append(self.head(feats)["sentence_embedding"])
                else:
                    pooled.append(pool_sequence(hidden.float(), attention_mask, r.pooling))
            return tuple(pooled)

    return _TextTaps().eval()


def taps_for(rt, requests, n_layers: int):
    left = getattr(rt.tokenizer, "padding_side", "right") == "left"
    return TextTaps(rt.net, rt.head, requests, n_layers, left, rt.pass_positions, rt.pass_token_types)


def can_pack(rt, requests) -> bool:
    from ..engines import supports_packing

    return all(r.pooling != ST_HEAD for r in requests) and supports_packing(rt.net)


class WindowBatch:
    """Token windows as one runner input: sliceable (out-of-memory backoff) and device-free."""

    def __init__(self, windows: list):
        self.windows = windows

    def __getitem__(self, s: slice) -> WindowBatch:
        return WindowBatch(self.windows[s])

    def to(self, *_args, **_kwargs) -> WindowBatch:
        return self


def packed_batches(windows: list, order: np.ndarray, budget: int):
    """Length-sorted windows in batches of at most ``budget`` tokens (a longer window alone)."""
    start = 0
    while start < len(order):
        stop, tokens = start, 0
        while stop < len(order) and (stop == start or tokens + len(windows[order[stop]]) <= budget):
            tokens += len(windows[order[stop]])
            stop += 1
        idx = order[start:stop]
        yield idx, WindowBatch([windows[w] for w in idx])
        start = stop


def padded_batches(tokenizer, windows: list, order: np.ndarray, size: int):
    """Length-sorted windows, ``size`` per batch, padded by the tokenizer itself (its side, its id)."""
    for start in range(0, len(order), size):
        idx = order[start:start + size]
        enc = tokenizer.pad({"input_ids": [windows[w] for w in idx]}, padding=True, return_tensors="pt",
                            return_attention_mask=True)
        yield idx, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def packed_forward(net, requests, budget: int):
    """One packed row per batch: ``budget`` is the token limit ``packed_batches`` cut the batch to, so a
    batch the runner halves after an out-of-memory error is a row half as long."""
    from ..engines import packed_hidden_states

    layers = sorted({int(r.layer) for r in requests})

    def forward(batch: WindowBatch):
        states = packed_hidden_states(net, batch.windows, layers, max_tokens=budget)
        return {r: states.pool(states.layers.index(int(r.layer)), r.pooling) for r in requests}

    return forward


def padded_forward(taps, requests):
    def forward(batch):
        return dict(zip(requests, taps(batch["input_ids"], batch["attention_mask"]), strict=True))

    return forward


def onnx_forward(session, requests, picked):
    import torch

    def forward(batch):
        outs = session(batch["input_ids"].cpu().numpy(), batch["attention_mask"].cpu().numpy())
        return {r: torch.from_numpy(outs[i]) for r, i in zip(requests, picked, strict=True)}

    return forward
