"""One contract for all three featurizers (issue 10): scikit-learn's data-independent checks, batch-size
invariance, order preservation, determinism, pickling, cache hit = miss, set_params + fit really switches,
Pipeline + GridSearchCV, and every parameter's behaviour when changed after fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gensim.test.utils import datapath

from skfeaturize import ImageFeaturizer, TextFeaturizer, WordVectorFeaturizer

from .contract import (
    check_batch_size_invariance,
    check_cache_hit_equals_miss,
    check_in_grid_search,
    check_order_preservation,
    check_output_contract,
    check_parameters_need_a_refit,
    check_pickle_round_trip,
    check_set_params_changes_output,
    run_api_checks,
)
from .test_text import _save_tiny

WORD_DOCS = ["the anarchist society", "what is property", "anarchism is a term", "it is the society",
             "anarchists are what they are", "property of the society", "an anarchist is", "this term"]


def _tiny_preprocess(img):
    return torch.from_numpy(np.asarray(img.resize((32, 32)), np.float32).transpose(2, 0, 1) / 255)


@pytest.fixture(scope="module")
def cases(small_images, tmp_path_factory):
    tiny = _save_tiny(tmp_path_factory.mktemp("contract-bert"))
    other = _save_tiny(tmp_path_factory.mktemp("contract-bert-2"))
    texts = ["good movie", "bad plot", "the acting was great", "awful", "a fine film", "so so", "", "ok"]
    image = ImageFeaturizer("timm:test_resnet", weights=None, layer=[1, -1], batch_size=4)
    text = TextFeaturizer(tiny, layer=[1, -1], batch_size=3)
    words = WordVectorFeaturizer(datapath("toy-model.vec"), pooling="tfidf")
    return {
        "image": dict(
            featurizer=image, X=small_images, y=np.array([0] * 6 + [1] * 6),
            grid={"layer": ["layer1", -1], "pooling": ["avg", "max"]},
            switch={"layer": "layer2"},
            runtime={"batch_size", "device", "num_workers", "progress", "cache"},
            changes={"backbone": "timm:test_vit", "weights": "DEFAULT", "layer": [0], "pooling": "max",
                     "combine": "mean", "preprocess": _tiny_preprocess, "batch_size": 2, "device": "cpu",
                     "precision": "bf16", "engine": "auto", "num_workers": 1, "cache": None,
                     "cache_layers": [0],
                     "cache_poolings": ["max"], "n_components": 2, "dtype": "float16", "progress": True}),
        "text": dict(
            featurizer=text, X=texts, y=np.array([1, 0, 1, 0, 1, 0, 0, 1]),
            grid={"layer": [0, -1], "pooling": ["mean", "max"]},
            switch={"pooling": "cls"},
            runtime={"batch_size", "device", "progress", "cache"},
            changes={"model": other, "layer": 0, "pooling": "max", "combine": "sum", "max_length": 16,
                     "long_text": "chunk", "stride": 3, "normalize": True, "batch_size": 1, "device": "cpu",
                     "precision": "bf16", "engine": "auto", "missing": "empty", "revision": "main",
                     "trust_remote_code": True,
                     "cache": None, "cache_layers": [0], "cache_poolings": ["max"], "n_components": 2,
                     "dtype": "float16", "progress": True}),
        "words": dict(
            featurizer=words, X=WORD_DOCS, y=np.array([0, 1, 0, 1, 0, 1, 0, 1]),
            grid={"pooling": ["mean", "tfidf"]},
            switch={"pooling": "max"},
            runtime={"cache"},
            changes={"vectors": datapath("lee_fasttext.bin"), "words": ["a"], "tokenizer": "whitespace",
                     "lowercase": False, "pooling": "sif", "oov": "zero", "hash_buckets": 8,
                     "learn_epochs": 2, "sif_a": 0.5, "oov_feature": True, "random_state": 3, "cache": None,
                     "n_components": 2, "dtype": "float16"}),
    }


KINDS = ["image", "text", "words"]


@pytest.mark.parametrize("kind", KINDS)
def test_api_checks(cases, kind):
    run_api_checks(cases[kind]["featurizer"])


@pytest.mark.parametrize("kind", KINDS)
def test_output_batch_order_and_pickle(cases, kind):
    c = cases[kind]
    out = check_output_contract(c["featurizer"], c["X"])
    if "batch_size" in c["featurizer"].get_params():
        check_batch_size_invariance(c["featurizer"], c["X"])
    check_order_preservation(c["featurizer"], c["X"])
    again = check_pickle_round_trip(c["featurizer"], c["X"])
    assert out.shape[0] == len(c["X"]) and len(again) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_cache_hit_equals_miss(cases, kind, tmp_path):
    check_cache_hit_equals_miss(cases[kind]["featurizer"], cases[kind]["X"], tmp_path / "cache")


@pytest.mark.parametrize("kind", KINDS)
def test_set_params_then_fit_switches_and_grid_search(cases, kind):
    c = cases[kind]
    check_set_params_changes_output(c["featurizer"], c["X"], **c["switch"])
    check_in_grid_search(c["featurizer"], c["X"], c["y"], c["grid"])


@pytest.mark.parametrize("kind", KINDS)
def test_every_parameter_changed_after_fit(cases, kind):
    c = cases[kind]
    check_parameters_need_a_refit(c["featurizer"], c["X"], c["changes"], c["runtime"])
