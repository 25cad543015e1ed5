"""Long texts: turn token ids into the model's input windows, and combine window vectors per text.

``head`` keeps the first ``max_length`` tokens (special tokens included), ``tail`` the last ones, and
``chunk`` splits the text into windows of ``max_length`` tokens that share ``stride`` tokens with the
previous window; every window gets the tokenizer's special tokens (``[CLS] … [SEP]``).

How ``chunk`` combines a text's windows, per pooling (``n_w`` = the window's real tokens, special tokens
included, i.e. its attention-mask sum):

=========  ====================================================================================
pooling    combined vector
=========  ====================================================================================
``mean``   token-weighted mean of the window means: ``Σ n_w·mean_w / Σ n_w`` = the mean over every
           token position of every window (tokens in an overlap count once per window)
``max``    element-wise max of the window maxima = the max over every token of every window
``cls``    token-weighted mean of the windows' first-token (``[CLS]``) vectors: each window's summary
           counts in proportion to the text it covers
``last``   the last window's last real token: the last token of the whole text
``st``     (a sentence-transformers head) token-weighted mean of the windows' sentence embeddings
=========  ====================================================================================

``normalize=True`` applies after the combination, so a chunked vector has unit norm too.
"""

from __future__ import annotations

import numpy as np

LONG_TEXT_MODES = ("head", "tail", "chunk")


def make_windows(ids: list[int], mode: str, content: int, stride: int) -> list[list[int]]:
    """Windows of at most ``content`` ids (special tokens not yet added)."""
    if len(ids) <= content:
        return [ids]
    if mode == "head":
        return [ids[:content]]
    if mode == "tail":
        return [ids[len(ids) - content:]]
    step = content - stride
    windows = []
    start = 0
    while True:
        windows.append(ids[start:start + content])
        if start + content >= len(ids):
            return windows
        start += step


def combine(vectors: np.ndarray, weights: np.ndarray, pooling: str) -> np.ndarray:
    """Combine ``(n_windows, d)`` window vectors of one text into one ``(d,)`` vector."""
    if len(vectors) == 1:
        return vectors[0]
    if pooling == "max":
        return vectors.max(axis=0)
    if pooling == "last":
        return vectors[-1]
    w = weights.astype(np.float64)
    return (vectors.astype(np.float64) * w[:, None]).sum(axis=0) / w.sum()
