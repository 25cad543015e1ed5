"""What a user sees on stderr (issue 14 items 4–5): progress per batch in bulk jobs and in featurizers,
and none of the libraries' own noise inside skfeaturize's calls (scoped: the user's settings come back)."""

from __future__ import annotations

import logging
import os

import numpy as np

from skfeaturize import ImageFeaturizer, TextFeaturizer
from skfeaturize.jobs import embed

from .test_text import _save_tiny


def test_featurizer_progress_callable_counts_items_per_batch(small_images):
    seen = []
    f = ImageFeaturizer("timm:test_resnet", weights=None, batch_size=5, progress=seen.append).fit([])
    f.transform(small_images)
    assert seen == [5, 5, 2]


def test_text_progress_counts_texts_not_windows(tmp_path):
    seen = []
    tiny = _save_tiny(tmp_path / "tiny")
    texts = ["good movie " * 40, "bad", "fine film", "so so"]  # the first text has several windows
    TextFeaturizer(tiny, long_text="chunk", max_length=16, batch_size=2, progress=seen.append).fit(
        texts).transform(texts)
    assert sum(seen) == len(texts) and all(n > 0 for n in seen)


def test_bulk_job_progress_moves_per_batch_not_per_chunk(tmp_path, image_files, capsys):
    folder = os.path.dirname(image_files[0])
    embed(folder, str(tmp_path / "out.parquet"), featurizer="image", model="timm:test_resnet",
          params={"weights": None, "batch_size": 3}, chunk_size=512, progress="log", log_every=0)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("embed: ")]
    counts = [int(ln.split()[1].split("/")[0]) for ln in lines]
    assert counts[:4] == [3, 6, 9, 12], err  # one line per batch of 3, although the chunk holds all 12
    assert "items/s" in lines[0] and "ETA" in lines[0]


def test_transformers_noise_is_silenced_inside_skfeaturize_only(tmp_path, capfd, caplog):
    import transformers
    from transformers.utils import logging as tf_logging

    tiny = _save_tiny(tmp_path / "tiny-noise")
    assert tf_logging.is_progress_bar_enabled()
    with caplog.at_level(logging.WARNING):
        f = TextFeaturizer(tiny, long_text="chunk", max_length=16).fit(["x"])
        out = f.transform(["good movie " * 100])  # 200 tokens > the tokenizer's 64: windowed on purpose
    err = capfd.readouterr().err
    assert out.shape == (1, 32) and np.isfinite(out).all()
    assert "Loading weights" not in err and "sequence length is longer" not in err + caplog.text
    assert tf_logging.is_progress_bar_enabled(), "the user's progress-bar setting is restored"
    tok = transformers.AutoTokenizer.from_pretrained(tiny)
    with caplog.at_level(logging.WARNING):
        tok("good movie " * 100)  # the user's own call still warns as transformers does
    assert "sequence length is longer" in caplog.text + capfd.readouterr().err


class _Stream:
    """A stream that says it is a terminal (or not) and reports a width (``os.get_terminal_size``)."""

    def __init__(self, tty: bool):
        self.tty, self.text = tty, []

    def isatty(self):
        return self.tty

    def fileno(self):
        return 2

    def write(self, s):
        self.text.append(s)

    def flush(self):
        pass


def test_auto_progress_is_log_lines_without_a_terminal_or_its_width(monkeypatch):
    from skfeaturize.jobs._progress import Progress

    assert Progress(10, mode="auto", stream=_Stream(tty=False)).mode == "log"  # redirected to a file

    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((0, 0)))  # a pseudo-tty in CI
    assert Progress(10, mode="auto", stream=_Stream(tty=True)).mode == "log"

    def no_width(fd):
        raise OSError("inappropriate ioctl for device")  # a terminal whose size cannot be read

    monkeypatch.setattr(os, "get_terminal_size", no_width)
    stream = _Stream(tty=True)
    p = Progress(10, mode="auto", stream=stream, every=0.0)
    assert p.mode == "log" and p.bar is None
    p.batch(4)
    line = "".join(stream.text)
    assert "4/10" in line and "items/s" in line and "ETA" in line and "\r" not in line
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((120, 40)))
    bar = Progress(10, mode="auto", stream=_Stream(tty=True))
    assert bar.mode == "bar"
    bar.close()
