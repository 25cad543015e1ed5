"""Shared fixtures: small real images, image files of every mode, tiny seeded models."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    import importlib.util

    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def photos():
    """scikit-learn's two sample photos (china.jpg, flower.jpg) as uint8 HWC arrays."""
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


@pytest.fixture(scope="session")
def small_images(photos):
    """Twelve distinct 96×128 crops of the sample photos (real image statistics, cheap to run)."""
    crops = []
    for photo in photos:
        for k in range(6):
            y, x = 40 * k, 60 * k
            crops.append(np.ascontiguousarray(photo[y:y + 96, x:x + 128]))
    return crops


@pytest.fixture(scope="session")
def image_files(tmp_path_factory, small_images):
    """JPEG and PNG files on disk, one per small image."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("imgs")
    paths = []
    for i, a in enumerate(small_images):
        p = folder / (f"img{i:02d}.jpg" if i % 2 else f"img{i:02d}.png")
        Image.fromarray(a).save(p, quality=92)
        paths.append(str(p))
    return paths


# -- counting forward passes (tests prove "one backbone pass per sample" with these) --------------------

@pytest.fixture
def image_passes(monkeypatch):
    """Counts the images that go through an image backbone's forward pass."""
    from skfeaturize import ImageFeaturizer

    seen = {"samples": 0}
    real = ImageFeaturizer._run_taps

    def counting(taps, x, layers):
        seen["samples"] += x.shape[0]
        return real(taps, x, layers)

    monkeypatch.setattr(ImageFeaturizer, "_run_taps", staticmethod(counting))
    return seen


def text_batch_size(batch) -> int:
    """Token windows in one text-engine batch: packed windows, or a padded ``input_ids`` batch."""
    return len(batch.windows) if hasattr(batch, "windows") else batch["input_ids"].shape[0]


def wrap_text_forward(monkeypatch, wrap):
    """Replace every TextFeaturizer engine path's ``forward`` with ``wrap(forward)``."""
    from skfeaturize import TextFeaturizer

    real = TextFeaturizer._path

    def wrapped(self, plan, rt, requests, device):
        forward, batches, module = real(self, plan, rt, requests, device)
        return wrap(forward), batches, module

    monkeypatch.setattr(TextFeaturizer, "_path", wrapped)


@pytest.fixture
def text_passes(monkeypatch):
    """Counts the token windows that go through a text encoder's forward pass."""
    seen = {"samples": 0}

    def counting(forward):
        def counted(batch):
            seen["samples"] += text_batch_size(batch)
            return forward(batch)

        return counted

    wrap_text_forward(monkeypatch, counting)
    return seen
