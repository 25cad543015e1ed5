"""Issue 11's remaining classes: the cache never answers with another input's vector, the featurizers run no
code from a planted file, leave the global RNGs alone, survive fork(), and treat odd inputs the same with and
without a cache.

The house rule for every key or fingerprint: two inputs (or parameters) that differ only in that part are
featurized with a shared cache, and each answer equals its own uncached answer. The other classes of issue
11 are tested where their code lives (``test_cache_faults.py``, ``test_image_io.py``, ``test_words_io.py``,
``test_embed_*.py``); ``docs/reliability.md`` maps every promise to its test.
"""

from __future__ import annotations

import functools
import os
import pathlib
import random
import re
import signal
import time
import traceback
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from gensim.models import KeyedVectors
from gensim.test.utils import datapath

from skfeaturize import (
    ImageFeaturizer,
    InvalidSampleError,
    RefitRequiredError,
    SkfeaturizeError,
    TextFeaturizer,
    UncachedWarning,
    WeightsNotFoundError,
    WordVectorFeaturizer,
    clear_loaded,
)
from skfeaturize.backends.transformers import is_local, model_ref
from skfeaturize.cache import EmbeddingCache

from .test_text import _save_tiny

TOY_VEC = datapath("toy-model.vec")
DOCS = ["the anarchist society", "what is property", "an anarchist is", "it is the term"]
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


# -- shared helpers -------------------------------------------------------------------------------------

def _to_tensor(img):
    """A small preprocessing (32 × 32, scaled to [0, 1]): fast, and identifiable."""
    return torch.from_numpy(np.asarray(img.resize((32, 32)), np.float32).transpose(2, 0, 1) / 255)


def _scaled(img, scale):
    return _to_tensor(img) * scale


def _make(scale):
    def preprocess(img):
        return _to_tensor(img) * scale
    return preprocess


def _save_bert(folder: pathlib.Path, *, seed: int = 0, cased: bool = False) -> str:
    """The tiny BERT of test_text with pieces for "café" composed (one token) and decomposed ("cafe" +
    U+0301); ``cased``: no lowercasing and no accent stripping."""
    return _save_tiny(folder, seed=seed, cased=cased, extra_vocab=("caf\u00e9", "cafe", "##\u0301"))


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return _save_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def cased_bert(tmp_path_factory):
    return _save_bert(tmp_path_factory.mktemp("cased-bert"), cased=True)


@pytest.fixture(scope="module")
def kv():
    """Word vectors that hold a word with a lone surrogate (a file name decoded with os.fsdecode)."""
    words = ["good", "movie", "bad", "plot", "caf\udce9"]
    table = KeyedVectors(6)
    table.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), 6)).astype(np.float32))
    return table


def _image(k: int) -> np.ndarray:
    return np.random.default_rng(k).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def _no_entries(folder) -> bool:
    return len(EmbeddingCache(folder)) == 0


# -- 1. preprocessing callables: code, closure values, partial arguments ----------------------------------

PREPROCESS_PAIRS = {  # (first, second, an equal copy of the second)
    "lambdas": (lambda img: _to_tensor(img), lambda img: 1 - _to_tensor(img),
                lambda img: 1 - _to_tensor(img)),
    "closures": (_make(1), _make(0.5), _make(0.5)),
    "partials": (functools.partial(_scaled, scale=1.0), functools.partial(_scaled, scale=0.5),
                 functools.partial(_scaled, scale=0.5)),
}


@pytest.mark.parametrize("kind", list(PREPROCESS_PAIRS))
def test_preprocess_callables_that_compute_differently_never_share_a_namespace(kind, tmp_path):
    first, second, copy = PREPROCESS_PAIRS[kind]
    X = [_image(k) for k in range(4)]
    cache = EmbeddingCache(tmp_path)

    def featurizer(preprocess, cache):
        return ImageFeaturizer("timm:test_resnet", weights=None, preprocess=preprocess, cache=cache).fit(X)

    out_first = featurizer(first, cache).transform(X)
    out_second = featurizer(second, cache).transform(X)  # 0.1: the first one's vectors
    ref_second = featurizer(second, None).transform(X)
    assert np.array_equal(out_second, ref_second)
    assert np.abs(out_first - ref_second).max() > 1e-3  # the two really compute different numbers
    assert len(cache.namespaces()) == 2 and len(cache) == 8
    # identity is by what a callable computes, not by which object it is: an equal copy hits
    assert np.array_equal(featurizer(copy, cache).transform(X), ref_second)
    assert len(cache.namespaces()) == 2 and len(cache) == 8


def test_tokenizer_partials_with_different_arguments_never_share_a_namespace(tmp_path):
    words_only = functools.partial(re.findall, r"\w+")
    long_words = functools.partial(re.findall, r"\w{4,}")  # drops "is", "an", "the", "it"
    cache = EmbeddingCache(tmp_path)

    def featurizer(tokenizer, cache):
        return WordVectorFeaturizer(TOY_VEC, tokenizer=tokenizer, cache=cache).fit(DOCS)

    out_words = featurizer(words_only, cache).transform(DOCS)
    out_long = featurizer(long_words, cache).transform(DOCS)  # 0.1: the first one's vectors
    ref_long = featurizer(long_words, None).transform(DOCS)
    assert np.array_equal(out_long, ref_long)
    assert np.abs(out_words - ref_long).max() > 1e-3
    assert len(cache.namespaces()) == 2 and len(cache) == 8


def test_a_tokenizer_that_cannot_be_identified_is_not_cached_with_one_warning(tmp_path):
    f = WordVectorFeaturizer(TOY_VEC, tokenizer=str.split, cache=tmp_path).fit(DOCS)
    with pytest.warns(UncachedWarning) as record:
        out = f.transform(DOCS)
    messages = [str(w.message) for w in record if issubclass(w.category, UncachedWarning)]
    assert len(messages) == 1
    assert re.fullmatch(r"WordVectorFeaturizer: not caching: the tokenizer callable cannot be identified "
                        r"\(str\.split \(method_descriptor\) is a C function: its behaviour cannot be "
                        r"inspected\)\. Features are computed every time; .*", messages[0])
    assert np.array_equal(out, WordVectorFeaturizer(TOY_VEC, tokenizer=str.split).fit(DOCS).transform(DOCS))
    assert _no_entries(tmp_path)


# -- 2. sample keys: text as given, token lists unambiguous ------------------------------------------------

def test_cafe_composed_and_decomposed_are_two_inputs_to_a_cased_text_model(tmp_path, cased_bert):
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    uncached = TextFeaturizer(cased_bert).fit([nfc])
    both, ref_nfc, ref_nfd = (uncached.transform(t) for t in ([nfc, nfd], [nfc], [nfd]))
    assert np.abs(ref_nfc - ref_nfd).max() > 1e-3  # the model sees two different inputs
    one_call = TextFeaturizer(cased_bert, cache=tmp_path / "a").fit([nfc])
    assert np.array_equal(one_call.transform([nfc, nfd]), both)  # 0.1: one key, the first row twice
    assert len(EmbeddingCache(tmp_path / "a")) == 2
    f = TextFeaturizer(cased_bert, cache=tmp_path / "b").fit([nfc])
    assert np.array_equal(f.transform([nfc]), ref_nfc)
    assert np.array_equal(f.transform([nfd]), ref_nfd)  # a miss, not the composed form's hit
    assert np.array_equal(f.transform([nfd, nfc]), np.concatenate([ref_nfd, ref_nfc]))  # both hits now


def test_token_lists_that_differ_only_by_the_separator_are_two_keys(tmp_path, kv):
    glued, split = ["good\x1fmovie"], ["good", "movie"]
    ref = WordVectorFeaturizer(kv).fit(None).transform([glued, split])
    assert not ref[0].any() and ref[1].any()  # the glued token is out of vocabulary: a zero vector
    f = WordVectorFeaturizer(kv, cache=tmp_path).fit(None)
    assert np.array_equal(f.transform([glued]), ref[:1])
    assert np.array_equal(f.transform([split]), ref[1:])  # 0.1: the glued list's zero vector
    assert np.array_equal(f.transform([split, glued]), ref[::-1])
    assert len(EmbeddingCache(tmp_path)) == 2


# -- 3. weights: a user module's current tensors ----------------------------------------------------------

def _small_net():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten())


def test_a_module_edited_in_place_needs_a_refit_and_then_misses(tmp_path):
    net = _small_net()
    X = [_image(k) for k in range(4)]
    cache = EmbeddingCache(tmp_path)
    f = ImageFeaturizer(net, layer="output", preprocess=_to_tensor, cache=cache).fit(X)
    before = f.transform(X)
    with torch.no_grad():
        net[0].weight.mul_(3)
    says = (r"^ImageFeaturizer was fitted with other parameters \(backbone: the module's weights changed "
            r"since fit \(in place: 0\.weight\)\)\. set_params\(\) does not refit: call fit\(\) again")
    with pytest.raises(RefitRequiredError, match=says):
        f.transform(X)  # 0.1: the old namespace's vectors
    after = f.fit(X).transform(X)
    ref = ImageFeaturizer(net, layer="output", preprocess=_to_tensor).fit(X).transform(X)
    assert np.array_equal(after, ref)
    assert np.abs(after - before).max() > 1e-3
    assert len(cache.namespaces()) == 2 and len(cache) == 8


def test_a_module_edited_through_data_is_never_served_the_old_vectors(tmp_path):
    net = _small_net()
    X = [_image(k) for k in range(4)]
    f = ImageFeaturizer(net, layer="output", preprocess=_to_tensor, cache=EmbeddingCache(tmp_path)).fit(X)
    f.transform(X)
    net[0].weight.data.mul_(3)  # the old idiom of initialisation code: autograd (and _version) never see it
    ref = ImageFeaturizer(net, layer="output", preprocess=_to_tensor).fit(X).transform(X)
    try:
        out = f.transform(X)  # either a RefitRequiredError, or the new weights' numbers
    except RefitRequiredError:
        out = f.fit(X).transform(X)
    assert np.array_equal(out, ref)


def test_word_vectors_edited_in_place_are_refused_also_on_cache_hits(tmp_path):
    table = KeyedVectors(6)
    table.add_vectors(["good", "movie", "bad", "plot"], np.random.default_rng(1).normal(size=(4, 6)))
    docs = ["good movie", "bad plot"]
    f = WordVectorFeaturizer(table, cache=tmp_path).fit(docs)
    uncached = WordVectorFeaturizer(table).fit(docs)
    assert np.array_equal(f.transform(docs), uncached.transform(docs))
    table.vectors[0] *= 2  # "good" changes
    says = r"vectors='KeyedVectors' changed since fit \(its contents differ\); call fit\(\) again"
    with pytest.raises(RefitRequiredError, match=says):
        uncached.transform(docs)
    with pytest.raises(RefitRequiredError, match=says):
        f.transform(docs)  # all hits: the old vectors of "good movie"
    assert np.array_equal(f.fit(docs).transform(docs), uncached.fit(docs).transform(docs))


# -- 4. non-finite outputs are an error naming the sample, never an entry ---------------------------------

class NanWhenBright(torch.nn.Module):
    """A model that gives NaN for any image brighter than ``threshold`` on average (as an overflowing
    model does on some inputs)."""

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = threshold
        self.proj = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x):
        h = self.proj(x).mean((2, 3))
        bright = x.mean((1, 2, 3)) > self.threshold
        return torch.where(bright[:, None], torch.full_like(h, float("nan")), h)


def test_a_model_that_outputs_nan_names_the_sample_and_stores_nothing(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = NanWhenBright()
    X = [np.full((40, 56, 3), v, np.uint8) for v in (10, 60, 250, 30)]  # sample 2 is bright
    cache = EmbeddingCache(tmp_path)
    says = (r"Sample 2: the model gave non-finite values \(NaN or inf\) for layer 'output', pooling 'none'; "
            r"1 of 4 samples affected\. Nothing was cached\.")
    for c in (None, cache):
        f = ImageFeaturizer(net, layer="output", preprocess=_to_tensor, cache=c).fit([])
        with pytest.raises(InvalidSampleError, match=says) as info:
            f.transform(X)  # 0.1: the NaN row was stored and served later
        assert info.value.index == 2
    assert len(cache) == 0  # not the NaN row, and not the batch's good rows either
    # with the good samples cached, the bad one is named by its position in the caller's input
    f = ImageFeaturizer(net, layer="output", preprocess=_to_tensor, cache=cache).fit([])
    good = f.transform([X[0], X[1], X[3]])
    assert np.isfinite(good).all() and len(cache) == 3
    with pytest.raises(InvalidSampleError, match=r"Sample 2: .*1 of 1 samples affected\. Nothing was cached"):
        f.transform(X)
    assert len(cache) == 3


# -- 5. security: no checkpoint is unpickled with code --------------------------------------------------

class _Payload:
    """Pickles as a call to exec that writes ``marker``: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _plant(path: pathlib.Path, marker: pathlib.Path) -> None:
    torch.save({"conv1.weight": _Payload(marker)}, path)


def test_the_payload_is_real(tmp_path):
    """The test of the planted files proves something only if an unrestricted load runs the payload."""
    marker = tmp_path / "ran"
    _plant(tmp_path / "control.pth", marker)
    torch.load(tmp_path / "control.pth", weights_only=False)  # what 0.1 did through torchvision
    assert marker.read_text() == "ran"


def test_a_file_planted_in_the_torch_hub_cache_never_runs(monkeypatch, tmp_path):
    from torchvision.models import ResNet18_Weights

    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))

    def no_download(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    file_name = os.path.basename(ResNet18_Weights.DEFAULT.url)
    marker = tmp_path / "ran"
    _plant(hub / "checkpoints" / file_name, marker)
    X = [_image(0)]
    f = ImageFeaturizer("resnet18").fit(X)
    says = (r"^Could not obtain torchvision weights resnet18\.IMAGENET1K_V1: the file at .*resnet18-"
            r"f37072fd\.pth' is not a plain state dict \(Unsupported global: GLOBAL exec was not an allowed "
            r"global.*\); it is read with torch\.load\(weights_only=True\), which never runs code from a "
            r"file\. Delete it")
    with pytest.raises(WeightsNotFoundError, match=says):
        f.transform(X)
    assert not marker.exists()


@pytest.mark.parametrize("backbone", ["resnet18", "timm:test_resnet"])
def test_a_checkpoint_path_with_a_payload_never_runs(backbone, tmp_path):
    marker = tmp_path / "ran"
    _plant(tmp_path / "evil.pth", marker)
    X = [_image(0)]
    f = ImageFeaturizer(backbone, weights=str(tmp_path / "evil.pth")).fit(X)
    says = (r"(?s)^Could not load '.*evil\.pth' safely with torch\.load\(weights_only=True\): .*GLOBAL exec "
            r"was not an allowed global.*does not unpickle arbitrary objects; re-save the checkpoint")
    with pytest.raises(SkfeaturizeError, match=says):
        f.transform(X)
    assert not marker.exists()


# -- 6. the global random number generators are left alone ------------------------------------------------

def _seed_all() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


def _draws() -> list:
    return [torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]]


def _rng_cases(bert):
    images = [_image(k) for k in range(3)]
    return {
        "image": (lambda c: ImageFeaturizer("timm:test_resnet", weights=None, preprocess=_to_tensor, cache=c),
                  images),
        "module": (lambda c: ImageFeaturizer(_DropoutNet(), layer="output", preprocess=_to_tensor, cache=c),
                   images),
        "text": (lambda c: TextFeaturizer(bert, cache=c), ["good movie", "a bad plot", ""]),
        "words": (lambda c: WordVectorFeaturizer(TOY_VEC, oov="hash", cache=c), DOCS + ["zzz unknown"]),
    }


class _DropoutNet(torch.nn.Module):
    """A user module in training mode with dropout: a featurizer must run it in eval mode, drawing nothing."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 4, 3)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.conv(x).mean((2, 3)))


@pytest.mark.filterwarnings("ignore:.* of the training tokens are not in:UserWarning")
@pytest.mark.parametrize("which", ["image", "module", "text", "words"])
def test_fit_miss_and_hit_leave_the_global_rngs_alone(which, tmp_path, bert):
    make, X = _rng_cases(bert)[which]
    _seed_all()
    expected = _draws()
    clear_loaded()  # the miss loads the backbone (a seeded random init for the image models) too
    _seed_all()
    f = make(EmbeddingCache(tmp_path)).fit(X)
    assert _draws() == expected
    _seed_all()
    miss = f.transform(X)
    assert _draws() == expected  # 0.1: the miss advanced torch's global generator
    _seed_all()
    hit = f.transform(X)
    assert _draws() == expected
    assert np.array_equal(miss, hit) and len(EmbeddingCache(tmp_path)) == len(X)


# -- 7. fork(): a featurizer used in the parent runs in a forked child -----------------------------------

def _run_in_child(fn, folder: pathlib.Path, timeout: float = 60.0) -> None:
    """``fn()`` in a forked child; its result goes to ``folder/out.npy``, its warnings to
    ``folder/warnings.txt``, a traceback to ``folder/error.txt``. Killed (and failed) after ``timeout``."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                out = fn()
            np.save(folder / "out.npy", out)
            (folder / "warnings.txt").write_text(
                "\n".join(f"{w.category.__name__}: {w.message}" for w in record))
            code = 0
        except BaseException:  # noqa: BLE001 - reported to the parent through the file
            (folder / "error.txt").write_text(traceback.format_exc())
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child did not finish within {timeout:.0f} s (a hang after fork)")
        time.sleep(0.05)
    error = folder / "error.txt"
    assert os.waitstatus_to_exitcode(status) == 0, error.read_text() if error.exists() else status


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_a_featurizer_used_before_fork_runs_in_the_child(tmp_path):
    X = [_image(k) for k in range(6)]
    f = ImageFeaturizer("timm:test_resnet", weights=None, preprocess=_to_tensor, batch_size=2,
                        cache=EmbeddingCache(tmp_path / "cache")).fit(X)
    ref = f.transform(X[:3])  # the parent runs the model: torch's thread pool is started
    uncached = ImageFeaturizer("timm:test_resnet", weights=None, preprocess=_to_tensor, batch_size=2).fit(X)
    ref = np.concatenate([ref, uncached.transform(X[3:])])  # the child's misses, in the same batches
    threads = torch.get_num_threads()
    _run_in_child(lambda: f.transform(X), tmp_path)  # three hits, three misses computed in the child
    child = np.load(tmp_path / "out.npy")
    np.testing.assert_array_equal(child[:3], ref[:3])  # the parent's cached rows
    np.testing.assert_allclose(child[3:], ref[3:], atol=1e-6, rtol=0)  # one thread sums in another order
    said = (tmp_path / "warnings.txt").read_text()
    one_thread = ("RuntimeWarning: skfeaturize: this process was forked from one that had imported torch; "
                  "torch's thread pool does not survive fork() (a model run here could hang), so it now runs "
                  "with one intra-op thread.")
    assert (one_thread in said) == (threads > 1), said
    assert torch.get_num_threads() == threads  # the parent keeps its threads
    assert np.array_equal(f.transform(X), child) and len(EmbeddingCache(tmp_path / "cache")) == 6


# -- 8. lone surrogates: the same with and without the cache ----------------------------------------------

def test_a_lone_surrogate_in_a_text_is_the_same_error_with_and_without_the_cache(tmp_path, bert):
    for cache in (None, tmp_path):
        f = TextFeaturizer(bert, cache=cache).fit(["a"])
        says = r"^Sample 1 is malformed Unicode \(surrogates not allowed at position 3\); clean it"
        with pytest.raises(InvalidSampleError, match=says) as info:
            f.transform(["good movie", "caf\udce9", "bad"])  # 0.1 with cache=: UnicodeEncodeError
        assert info.value.index == 1
    assert _no_entries(tmp_path)


@pytest.mark.filterwarnings("ignore:.* of the training tokens are not in:UserWarning")
def test_a_lone_surrogate_in_a_token_is_featurized_the_same_with_and_without_the_cache(tmp_path, kv):
    docs = [["good", "caf\udce9"], ["caf\udce9"], "good caf\udce9 movie", "\udce9", ["good"]]
    for oov in ("ignore", "hash"):
        ref = WordVectorFeaturizer(kv, oov=oov).fit(docs).transform(docs)
        np.testing.assert_array_equal(ref[1], kv["caf\udce9"])  # the token is the table's word
        f = WordVectorFeaturizer(kv, oov=oov, cache=tmp_path / oov).fit(docs)
        assert np.array_equal(f.transform(docs), ref)  # misses
        assert np.array_equal(f.transform(docs), ref)  # hits
        assert len(EmbeddingCache(tmp_path / oov)) == len(docs)


# -- 9. every missing marker of Python, NumPy and pandas is missing ---------------------------------------

MISSING = [None, float("nan"), np.nan, np.float32("nan"), pd.NA, pd.NaT]


def test_missing_empty_accepts_every_missing_marker(tmp_path, bert):
    plain = TextFeaturizer(bert, missing="empty").fit(["a"])
    cached = TextFeaturizer(bert, missing="empty", cache=tmp_path).fit(["a"])
    as_empty = [0] + [1] * len(MISSING)
    refs = {plain: plain.transform(["good"] + [""] * len(MISSING)),
            cached: plain.transform(["good", ""])[as_empty]}  # the cache computes each distinct text once
    column = pd.Series(["good"] + [None] * len(MISSING), dtype="string")  # pandas' own <NA> cells
    for f, ref in refs.items():
        assert np.array_equal(f.transform(["good"] + MISSING), ref)  # 0.1: pd.NA and pd.NaT were refused
        assert np.array_equal(f.transform(column), ref)
    assert len(EmbeddingCache(tmp_path)) == 2  # "good" and the empty text


@pytest.mark.parametrize("marker", MISSING, ids=repr)
def test_missing_raise_names_the_sample_for_every_marker(marker, bert):
    f = TextFeaturizer(bert).fit(["a"])
    says = (rf"^Sample 1 is missing \({re.escape(repr(marker))}\)\. Drop or fill missing texts, or pass "
            r"missing='empty'")
    with pytest.raises(InvalidSampleError, match=says) as info:
        f.transform(["good", marker, "bad"])
    assert info.value.index == 1


# -- 10. a folder named like a hub id ----------------------------------------------------------------------

def test_a_folder_named_like_a_hub_id_is_the_folder_with_one_warning(tmp_path, monkeypatch):
    folder = _save_bert(tmp_path / HUB_ID, seed=1)
    monkeypatch.chdir(tmp_path)
    says = (rf"model='{HUB_ID}' is both a Hugging Face hub id and a folder in the working directory: it "
            rf"resolved to the local folder '\./{HUB_ID}' \({re.escape(folder)}\), not the hub model\. "
            rf"Write '\./{HUB_ID}' or an absolute path to mean the folder \(no warning\); to use the hub "
            r"model, run from another directory or pass its downloaded snapshot folder")
    with pytest.warns(UserWarning, match=says) as record:
        out = TextFeaturizer(HUB_ID).fit(["a"]).transform(["good movie", "a bad plot"])
        TextFeaturizer(HUB_ID).fit(["a"]).transform(["good movie"])  # a clone in a grid search: no repeat
    assert [issubclass(w.category, UserWarning) and "hub id" in str(w.message) for w in record] == [True]
    assert record[0].filename == __file__  # points at the user's line, not inside skfeaturize
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for explicit in (folder, f"./{HUB_ID}", pathlib.Path(HUB_ID)):
            assert np.array_equal(TextFeaturizer(explicit).fit(["a"]).transform(["good movie", "a bad plot"]),
                                  out)


def test_only_a_bare_hub_id_that_is_also_a_folder_warns(tmp_path, monkeypatch):
    (tmp_path / "org" / "name").mkdir(parents=True)
    (tmp_path / "org" / "not-a-dir").write_text("")
    (tmp_path / "plain-folder").mkdir()
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not is_local("org/absent") and model_ref("org/absent") == "org/absent"  # the hub
        assert not is_local("org/not-a-dir")
        assert is_local("plain-folder") and is_local("./org/name") and is_local(tmp_path / "org" / "name")
        assert is_local("org/name/")  # a trailing slash is a path, not a hub id
    with pytest.warns(UserWarning, match=r"model='org/name' is both a Hugging Face hub id and a folder"):
        assert is_local("org/name")
    assert model_ref("org/name") == str(tmp_path / "org" / "name")  # absolute: no other folder's loader entry


def test_the_same_bare_id_in_another_directory_is_that_directorys_folder(tmp_path, monkeypatch):
    """Loaded models are shared per process by their resolved folder, not by the string the user typed."""
    first = _save_bert(tmp_path / "a" / HUB_ID, seed=1)
    second = _save_bert(tmp_path / "b" / HUB_ID, seed=2)
    texts = ["good movie", "a bad plot"]
    outs = []
    for where in (tmp_path / "a", tmp_path / "b"):
        monkeypatch.chdir(where)
        with pytest.warns(UserWarning, match="is both a Hugging Face hub id and a folder"):
            outs.append(TextFeaturizer(HUB_ID).fit(["a"]).transform(texts))
    for out, folder in zip(outs, (first, second), strict=True):
        assert np.array_equal(out, TextFeaturizer(folder).fit(["a"]).transform(texts))
    assert np.abs(outs[0] - outs[1]).max() > 1e-3


# -- 11. an unreadable file in a bulk job: recorded with --on-error skip, named with raise -----------------

def test_an_unreadable_image_in_a_bulk_job_is_skipped_or_named(tmp_path, monkeypatch):
    from PIL import Image

    from skfeaturize.jobs import SampleFailedError, embed, read_embeddings

    src = tmp_path / "images"
    src.mkdir()
    for k, name in enumerate(["a.png", "b.png", "c.png"]):
        Image.fromarray(_image(k)).save(src / name)
    secret, real_open = str(src / "b.png"), os.open

    def deny(path, *args, **kwargs):  # root ignores permission bits: the refusal is made at the seam
        if os.fspath(path) == secret:
            raise PermissionError(13, "Permission denied", secret)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    job = {"featurizer": "image", "model": "timm:test_resnet", "params": {"weights": None}, "quiet": True}
    res = embed(src, tmp_path / "o.parquet", on_error="skip", **job)  # 0.1: a raw PermissionError
    ids, _, X = read_embeddings(res.out)
    assert ids == ["a.png", "c.png"] and (res.rows, res.failed) == (2, 1)
    f = ImageFeaturizer("timm:test_resnet", weights=None).fit()
    np.testing.assert_allclose(X, f.transform([str(src / "a.png"), str(src / "c.png")]), atol=1e-5, rtol=0)
    (error,) = pathlib.Path(res.errors_path).read_text().splitlines()
    assert '"id": "b.png"' in error and re.search(r"cannot open file \(PermissionError: Permission denied\); "
                                                   r"check that it is readable by this process", error)
    says = (r"^Input item 'b\.png' \(position 1\) failed: InvalidSampleError: Sample 1 \('.*b\.png'\): "
            r"cannot open file \(PermissionError: Permission denied\); .*1 rows are kept \(items before "
            r"position 1\); fix or remove the item and rerun the same command")
    with pytest.raises(SampleFailedError, match=says) as info:
        embed(src, tmp_path / "r.parquet", on_error="raise", **job)
    assert (info.value.id, info.value.position) == ("b.png", 1)


# -- 12. a checkpoint file replaced at the same path --------------------------------------------------------

def _resaved(model, path: pathlib.Path, scale: float) -> None:
    state = model.state_dict()
    torch.save({k: v * scale if v.is_floating_point() else v for k, v in state.items()}, path)


@pytest.mark.parametrize("backbone", ["resnet18", "timm:test_resnet"])
def test_a_checkpoint_replaced_at_the_same_path_is_new_weights(backbone, tmp_path):
    """The weights' identity is the file's content, and so is the loaded model: the same path with other
    bytes is another namespace and another model, never the first file's vectors."""
    X = [_image(k) for k in range(3)]
    skeleton = ImageFeaturizer(backbone, weights=None, preprocess=_to_tensor).fit(X)
    model = skeleton.backend_.load(torch.device("cpu")).model
    path = tmp_path / "weights.pth"
    cache = EmbeddingCache(tmp_path / "cache")
    outs = []
    for scale in (1.0, 0.5):
        _resaved(model, path, scale)
        f = ImageFeaturizer(backbone, weights=str(path), preprocess=_to_tensor, cache=cache).fit(X)
        outs.append(f.transform(X))
        clear_loaded()  # the reference loads the file as it is now
        clear = ImageFeaturizer(backbone, weights=str(path), preprocess=_to_tensor).fit(X)
        np.testing.assert_array_equal(outs[-1], clear.transform(X))
    assert np.abs(outs[0] - outs[1]).max() > 1e-3 and len(cache.namespaces()) == 2


def test_a_model_folder_saved_again_in_place_is_new_weights(tmp_path):
    """A fine-tuned model saved again into its folder: another identity, and another loaded model."""
    folder, texts = tmp_path / "model", ["good movie", "a bad plot"]
    cache = EmbeddingCache(tmp_path / "cache")
    outs = []
    for seed in (1, 2):
        _save_bert(folder, seed=seed)
        outs.append(TextFeaturizer(str(folder), cache=cache).fit(["a"]).transform(texts))
        clear_loaded()  # the reference loads the folder as it is now
        np.testing.assert_array_equal(outs[-1], TextFeaturizer(str(folder)).fit(["a"]).transform(texts))
    assert np.abs(outs[0] - outs[1]).max() > 1e-3 and len(cache.namespaces()) == 2
