"""A warm cache serves fit and transform without any deep-learning library (issue 14 item 2): the resolved
plan is stored in the cache, keyed by the parameters, library versions and the files it came from."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from skfeaturize import ImageFeaturizer, TextFeaturizer

from .test_text import _save_tiny

HEAVY = ("torch", "timm", "torchvision", "transformers", "sentence_transformers", "gensim")

SCRIPT = """
import pickle, sys
f, X = pickle.load(open(sys.argv[1], "rb"))
out = f.fit(X).transform(X)
heavy = [m for m in {heavy!r} if m in sys.modules]
pickle.dump((out, heavy, f.plan_, f.layers_), open(sys.argv[2], "wb"))
"""


def _in_fresh_process(tmp_path, featurizer, X):
    job, result = tmp_path / "job.pkl", tmp_path / "result.pkl"
    with open(job, "wb") as fh:
        pickle.dump((featurizer, X), fh)
    subprocess.run([sys.executable, "-c", SCRIPT.format(heavy=HEAVY), str(job), str(result)], check=True,
                   timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    with open(result, "rb") as fh:
        return pickle.load(fh)


def _image_case(tmp_path, small_images):
    return ImageFeaturizer("timm:test_resnet", weights=None, layer=[1, -1], cache=str(tmp_path / "c")), \
        small_images[:4]


def _text_case(tmp_path, small_images):
    tiny = _save_tiny(tmp_path / "tiny")
    return TextFeaturizer(tiny, layer=[0, -1], cache=str(tmp_path / "c")), ["good movie", "bad plot", ""]


@pytest.mark.parametrize("case", [_image_case, _text_case], ids=["image", "text"])
def test_a_warm_fit_and_transform_import_no_heavy_library(tmp_path, small_images, case):
    f, X = case(tmp_path, small_images)
    cold = f.fit(X).transform(X)  # this process fills the cache and stores the plan
    out, heavy, plan, layers = _in_fresh_process(tmp_path, f, X)
    assert heavy == []
    np.testing.assert_array_equal(out, cold)
    assert plan == f.plan_ and layers == f.layers_


def test_a_changed_checkpoint_file_is_not_served_a_stale_plan(tmp_path, small_images):
    import torch
    import torchvision

    ckpt = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), ckpt)
    f = ImageFeaturizer("resnet18", weights=str(ckpt), cache=str(tmp_path / "c"))
    first = f.fit(small_images[:2]).plan_
    torch.save({k: v + 1 if v.is_floating_point() else v
                for k, v in torchvision.models.resnet18(weights=None).state_dict().items()}, ckpt)
    second = ImageFeaturizer("resnet18", weights=str(ckpt), cache=str(tmp_path / "c")).fit(
        small_images[:2]).plan_
    assert first.identity["weights"] != second.identity["weights"]


def test_a_restored_plan_equals_a_fresh_one(tmp_path, small_images):
    cache = str(tmp_path / "c")
    fresh = ImageFeaturizer("timm:test_vit", weights=None, layer=["blocks.1", -1], pooling="cls+mean").fit([])
    ImageFeaturizer("timm:test_vit", weights=None, layer=["blocks.1", -1], pooling="cls+mean",
                    cache=cache).fit([])
    restored = ImageFeaturizer("timm:test_vit", weights=None, layer=["blocks.1", -1], pooling="cls+mean",
                               cache=cache)
    restored._make_plan = None  # a restore must not resolve anything
    restored.fit([])
    assert restored.plan_ == fresh.plan_ and restored.poolings_ == fresh.poolings_ == ["cls+mean", "none"]
    np.testing.assert_array_equal(restored.transform(small_images[:2]), fresh.transform(small_images[:2]))
