"""Unpadded (packed) text batches for BERT-family encoders: no padding token is ever computed.

What transformers 5 offers for this on CPU, read from its source (``masking_utils.py``,
``modeling_flash_attention_utils.py``, ``integrations/sdpa_attention.py``):

* the packed path (``position_ids`` restarting at 0 per sequence, or ``cu_seq_lens_*`` kwargs) is only
  honoured by the flash-attention implementations, which need CUDA; ``create_bidirectional_mask`` ignores
  ``position_ids``, so an encoder under SDPA would let packed sequences attend to each other;
* a ready 4-D mask is passed through unchanged, so one row of concatenated sequences with a
  block-diagonal mask is exact, but attention then costs ``T^2`` for ``T`` packed tokens;
* ``AttentionInterface.register`` accepts a custom attention function, and the model forwards its extra
  keyword arguments (``cu_seq_lens_q``, ``max_length_q``) down to it.

This module takes the last road. Windows are sorted by length and concatenated into rows of at most
``max_tokens`` tokens; ``position_ids`` restart per window, so the embeddings, every Linear, LayerNorm and
GELU see only real tokens; the registered attention function ``skfeaturize_varlen`` cuts each row at the
window boundaries (``cu_seq_lens_q``) and, because sorted windows of one length lie side by side, runs
``scaled_dot_product_attention`` once per distinct length on an unmasked ``(n, heads, length, head_dim)``
view. Nothing is padded, nothing is masked, and the hidden states equal the padded batch's real tokens
within float tolerance (``tests/test_packed_text.py``, 1e-5 on every layer). Without those keyword
arguments the function is plain SDPA, so a model left pointing at it still computes padded batches right.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

ATTENTION_NAME = "skfeaturize_varlen"
MAX_TOKENS = 4096  # measured on MiniLM, 1000 mixed texts: 2048 1.04x, 4096 1.07x, 8192 1.09x, 16384 0.95x
_SWITCH = threading.Lock()


@dataclass
class PackedStates:
    """Hidden states of packed windows, in the order the windows were given.

    ``hidden[k]`` is the ``(total_tokens, hidden_size)`` float tensor of layer ``layers[k]`` (0 = the
    embedding output); window ``i`` is rows ``offsets[i]:offsets[i + 1]``."""

    layers: list[int]
    hidden: list[torch.Tensor]
    offsets: np.ndarray

    def window(self, i: int, layer_index: int = -1) -> torch.Tensor:
        return self.hidden[layer_index][self.offsets[i]:self.offsets[i + 1]]

    def pool(self, layer_index: int, how: str) -> torch.Tensor:
        """``(n_windows, hidden)`` pooled over each window's tokens (all real: no mask needed)."""
        return pool_packed(self.hidden[layer_index], self.offsets, how)


def supports_packing(net) -> bool:
    """True for encoders whose attention goes through transformers' ``AttentionInterface`` with absolute
    position embeddings (BERT, RoBERTa, XLM-R, ELECTRA, MiniLM, ...)."""
    config = getattr(net, "config", None)
    if config is None or getattr(config, "is_decoder", False) or not getattr(
            net, "_supports_attention_backend", False):
        return False
    kind = getattr(config, "position_embedding_type", "absolute")
    return kind in (None, "absolute") and hasattr(net, "embeddings")


def packed_hidden_states(net, windows: Sequence[Sequence[int]], layers: Sequence[int] | None = None, *,
                         max_tokens: int = MAX_TOKENS) -> PackedStates:
    """Run ``net`` on token-id ``windows`` (special tokens included) without padding.

    ``layers``: hidden-state indices to keep (0 = embeddings, negatives from the end; default all).
    ``max_tokens``: tokens per packed row; a window longer than that gets a row of its own."""
    import torch

    if not supports_packing(net):
        raise ValueError(
            f"{type(net).__name__} cannot run packed sequences (it needs transformers' AttentionInterface "
            "and absolute position embeddings); run it on padded, length-sorted batches instead."
        )
    n_states = net.config.num_hidden_layers + 1
    keep = _resolve_layers(layers, n_states)
    lengths = np.array([len(w) for w in windows], dtype=np.int64)
    if len(windows) and lengths.min() < 1:
        bad = int(np.argmin(lengths))
        raise ValueError(f"Window {bad} is empty; every window needs at least one token (its [CLS]).")
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    order = np.argsort(-lengths, kind="stable")
    device = next(net.parameters()).device
    token_types = _accepts(net, "token_type_ids")
    with _varlen_attention(net), torch.inference_mode():
        out = [torch.empty(int(offsets[-1]), net.config.hidden_size, device=device) for _ in keep]
        for row in _rows(order, lengths, max_tokens):
            states = _forward_row(net, [windows[i] for i in row], device, token_types)
            dest = torch.from_numpy(np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in row]))
            dest = dest.to(device)
            for k, layer in enumerate(keep):
                out[k][dest] = states[layer][0].float()
    return PackedStates(layers=keep, hidden=out, offsets=offsets)


def _resolve_layers(layers, n_states: int) -> list[int]:
    if layers is None:
        return list(range(n_states))
    keep = []
    for layer in layers:
        is_int = isinstance(layer, (int, np.integer)) and not isinstance(layer, bool)
        if not is_int or not -n_states <= layer < n_states:
            raise ValueError(f"layer={layer!r} is not a hidden-state index of this model "
                             f"(valid: {-n_states} to {n_states - 1}).")
        keep.append(int(layer) % n_states)
    return keep


def _rows(order: np.ndarray, lengths: np.ndarray, max_tokens: int):
    """Consecutive runs of the length-sorted windows holding at most ``max_tokens`` tokens each."""
    row, total = [], 0
    for i in order:
        if row and total + lengths[i] > max_tokens:
            yield row
            row, total = [], 0
        row.append(int(i))
        total += int(lengths[i])
    if row:
        yield row


def _forward_row(net, row_windows, device, token_types: bool):
    import torch

    lengths = [len(w) for w in row_windows]
    ids = torch.tensor([t for w in row_windows for t in w], dtype=torch.long, device=device)[None]
    start = _position_offset(net)
    positions = torch.cat([torch.arange(start, start + n) for n in lengths]).to(device)[None]
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32, device=device)
    kwargs = {"input_ids": ids, "position_ids": positions, "output_hidden_states": True,
              "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max(lengths),
              "max_length_k": max(lengths)}
    if token_types:
        kwargs["token_type_ids"] = torch.zeros_like(ids)
    return net(**kwargs).hidden_states


def _position_offset(net) -> int:
    """RoBERTa-style embeddings number positions from ``padding_idx + 1``; BERT from 0."""
    emb = net.embeddings
    roberta_style = hasattr(type(emb), "create_position_ids_from_input_ids")
    if roberta_style and getattr(emb, "padding_idx", None) is not None:
        return int(emb.padding_idx) + 1
    return 0


def _accepts(net, name: str) -> bool:
    import inspect

    return name in inspect.signature(net.forward).parameters


@contextlib.contextmanager
def _varlen_attention(net):
    """Point ``net`` at the varlen attention for the call. The function is plain SDPA without
    ``cu_seq_lens_q``, so another thread running the same model padded meanwhile is still right."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    if ATTENTION_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION_NAME, varlen_sdpa_attention)
        # padded calls meanwhile get SDPA's padding mask (packed calls pass no mask, so get none)
        AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    with _SWITCH:
        before = net.config._attn_implementation
        net.config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        with _SWITCH:
            net.config._attn_implementation = before


def varlen_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: float | None = None, cu_seq_lens_q=None, **kwargs):
    """transformers attention function: ``(1, heads, T, d)`` packed query/key/value, sequences given by
    ``cu_seq_lens_q``; returns ``(1, T, heads, d)`` like ``sdpa_attention_forward``."""
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    out = query.new_empty(query.shape[0], query.shape[2], query.shape[1], query.shape[3])  # (1, T, H, d)
    for start, count, length in _equal_length_runs(cu_seq_lens_q):
        stop = start + count * length

        def grouped(x, start=start, stop=stop, count=count, length=length):  # (1,H,n*L,d) -> (n,H,L,d)
            return x[0, :, start:stop].unflatten(1, (count, length)).transpose(0, 1)

        res = F.scaled_dot_product_attention(grouped(query), grouped(key), grouped(value), dropout_p=0.0,
                                             scale=scaling)
        out[0, start:stop] = res.permute(0, 2, 1, 3).reshape(count * length, res.shape[1], res.shape[3])
    return out, None


def _equal_length_runs(cu) -> list[tuple[int, int, int]]:
    """``(start token, count, length)`` for each run of consecutive windows of one length."""
    bounds = cu.tolist()
    runs = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        length = b - a
        if runs and runs[-1][2] == length:
            runs[-1][1] += 1
        else:
            runs.append([a, 1, length])
    return [tuple(r) for r in runs]


def pool_packed(hidden: torch.Tensor, offsets: np.ndarray, how: str) -> torch.Tensor:
    """Pool ``(total_tokens, d)`` packed states per window: ``mean``, ``cls``, ``max``, ``last`` (the same
    vocabulary as :func:`skfeaturize.pooling.pool_sequence`; every packed token is real)."""
    import torch

    starts = torch.as_tensor(offsets[:-1], device=hidden.device)
    lengths = torch.as_tensor(np.diff(offsets), device=hidden.device)
    if how == "cls":
        return hidden[starts]
    if how == "last":
        return hidden[starts + lengths - 1]
    if how in ("mean", "max"):
        return torch.segment_reduce(hidden, "mean" if how == "mean" else "max", lengths=lengths, axis=0)
    raise ValueError(f"pooling={how!r} does not apply to text; choose one of ('mean', 'cls', 'max', 'last')")
