"""Bulk jobs under faults: a crash at every filesystem step, a full disk, a first attempt that failed,
inputs changed between runs, and errors that name the right item."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skfeaturize.cli import main
from skfeaturize.jobs import (
    FitDataRequiredError,
    ResumeMismatchError,
    SampleFailedError,
    _store,
    embed,
    read_embeddings,
)
from tests.test_embed import TEXTS, TINY, CharNgramFeaturizer, _png

CHAR = "tests.test_embed:CharNgramFeaturizer"


class _Crash(BaseException):
    """A process killed at this point: nothing after it runs (BaseException: no handler catches it)."""


def _lines_file(tmp_path: Path) -> Path:
    src = tmp_path / "docs.txt"
    lines = [t.encode() for t in TEXTS[:11]]
    lines[6] = b"bad \x97 byte"  # not UTF-8: a failed item, so the errors files are part of every run
    src.write_bytes(b"\n".join(lines) + b"\n")
    return src


def _fs_calls(monkeypatch, crash_at: int | None) -> list:
    """Count calls of os.replace/os.unlink/os.fsync; from call ``crash_at`` on, each raises _Crash."""
    calls = [0]

    def patched(name):
        real = getattr(os, name)

        def fake(*args, **kwargs):
            calls[0] += 1
            if crash_at is not None and calls[0] >= crash_at:
                raise _Crash(f"killed at os.{name} (call {calls[0]})")
            return real(*args, **kwargs)

        return fake

    for name in ("replace", "unlink", "fsync"):
        monkeypatch.setattr(os, name, patched(name))
    return calls


def _job(src, out, fmt):
    return embed(src, out, featurizer=CharNgramFeaturizer(), format=fmt, chunk_size=4, on_error="skip",
                 quiet=True)


def _errors(res) -> list:
    return [json.loads(s) for s in Path(res.errors_path).read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["parquet", "npy"])
def test_a_crash_at_every_filesystem_step_resumes_to_the_same_output(fmt, tmp_path, monkeypatch):
    src = _lines_file(tmp_path)
    suffix = ".npy" if fmt == "npy" else ".parquet"
    ref = _job(src, tmp_path / f"ref{suffix}", fmt)
    ref_out = read_embeddings(ref.out)
    with monkeypatch.context() as m:
        calls = _fs_calls(m, None)
        _job(src, tmp_path / f"count{suffix}", fmt)
    n_calls = calls[0]
    assert n_calls > 30  # shards, errors files, manifests, consolidation: every step is a crash point
    for k in range(1, n_calls + 1):
        out = tmp_path / f"run{k}{suffix}"
        with monkeypatch.context() as m:
            _fs_calls(m, k)
            with pytest.raises(_Crash):
                _job(src, out, fmt)
        res = _job(src, out, fmt)  # the same command, after the "crash"
        assert (res.rows, res.failed) == (10, 1), k
        got = read_embeddings(out)
        assert got[0] == ref_out[0] and got[1] == ref_out[1], k
        np.testing.assert_array_equal(np.asarray(got[2]), np.asarray(ref_out[2]), err_msg=str(k))
        assert _errors(res) == _errors(ref), k
        parts = Path(res.manifest_path).parent
        assert not [p for p in parts.iterdir() if p.name.startswith(".")], k  # no temp file left
        assert not [p for p in tmp_path.glob(f".run{k}*")], k
        if fmt == "npy":
            assert sorted(p.name for p in parts.iterdir()) == ["_errors", "_manifest.json"], k
        assert _job(src, out, fmt).featurized == 0  # and it is complete


def test_npy_rerun_of_a_complete_job_whose_matrix_was_deleted(tmp_path):
    src = _lines_file(tmp_path)
    _job(src, tmp_path / "e.npy", "npy")
    (tmp_path / "e.npy").unlink()
    with pytest.raises(ResumeMismatchError, match=r"holds a complete job, but .*e.npy' or .* is missing "
                                                  r"\(deleted\?\)\. Pass --overwrite"):
        _job(src, tmp_path / "e.npy", "npy")


def test_missing_shard_and_old_manifest_format_are_refused_clearly(tmp_path, monkeypatch):
    src = _lines_file(tmp_path)
    out = tmp_path / "o.parquet"
    _crash_after_commits(monkeypatch, 1, src, out)
    (out / "part-000000.parquet").unlink()
    with pytest.raises(ResumeMismatchError, match=r"committed shard\(s\) \['part-000000.parquet'\] are "
                                                  r"missing .*--overwrite"):
        _job(src, out, "parquet")
    m = json.loads((out / "_manifest.json").read_text())
    (out / "_manifest.json").write_text(json.dumps({**m, "format_version": 1}))
    with pytest.raises(ResumeMismatchError, match=r"another skfeaturize version \(manifest format 1, this "
                                                  r"version writes 2\).*--overwrite"):
        _job(src, out, "parquet")


def _crash_after_commits(monkeypatch, n: int, *job_args, **job_kwargs):
    """Run a job that is killed right after its ``n``-th shard was committed."""
    real = _store.ShardStore.commit
    count = [0]

    def commit(self, *args, **kwargs):
        if count[0] >= n:
            raise _Crash("killed")
        count[0] += 1
        return real(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(_store.ShardStore, "commit", commit)
        with pytest.raises(_Crash):
            if job_kwargs:
                embed(*job_args, **job_kwargs)
            else:
                _job(*job_args, "parquet")


# -- a full disk -------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["shard", "manifest"])
def test_full_disk_is_one_line_and_the_manifest_stays_intact(where, tmp_path, monkeypatch, capsys):
    src = tmp_path / "docs.txt"
    src.write_text("\n".join(TEXTS[:11]) + "\n", encoding="utf-8")
    out = tmp_path / "o.parquet"
    cmd = ["embed", str(src), "--out", str(out), "--featurizer", CHAR, "--chunk-size", "4", "--quiet"]
    enospc = OSError(errno.ENOSPC, "No space left on device")
    calls = [0]
    if where == "shard":
        real_write = _store.pq.write_table

        def write_table(table, path, **kw):
            calls[0] += 1
            if calls[0] == 2:
                Path(path).write_bytes(b"PAR1 half a shard")
                raise enospc
            return real_write(table, path, **kw)

        monkeypatch.setattr(_store.pq, "write_table", write_table)
    else:
        real_durably = _store._write_durably

        def write_durably(tmp, data):
            if tmp.name == "._manifest.json.tmp":
                calls[0] += 1
                if calls[0] == 4:  # create, start_run, first commit; the second commit's manifest fails
                    tmp.write_bytes(data[: len(data) // 2])
                    raise enospc
            return real_durably(tmp, data)

        monkeypatch.setattr(_store, "_write_durably", write_durably)
    assert main(cmd) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.fullmatch(r"skfeaturize embed: error: cannot write '.*(part-000001\.parquet|_manifest\.json)"
                        r"': the disk is full \(ENOSPC\)\. The job's manifest is intact: the 4 rows "
                        r"committed so far are kept; free some space \(or fix the output folder\) and rerun "
                        r"the same command to resume\.\n", err), err
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["position"], m["rows"], m["complete"], len(m["shards"])) == (4, 4, False, 1)
    assert sorted(p.name for p in out.iterdir()) in (["_manifest.json", "part-000000.parquet"],
                                                     ["_manifest.json", "part-000000.parquet",
                                                      "part-000001.parquet"])  # orphan: removed on resume
    monkeypatch.undo()
    assert main(cmd) == 0
    ids, _, X = read_embeddings(out)
    assert ids == list(range(11))
    np.testing.assert_array_equal(X, CharNgramFeaturizer().fit().transform(TEXTS[:11]))


# -- a first attempt that wrote nothing locks nothing -----------------------------------------------------
def test_a_job_that_wrote_no_row_does_not_lock_its_parameters(tmp_path, capsys):
    src = tmp_path / "docs.txt"
    src.write_bytes(b"bad \x97 first line\n" + "\n".join(TEXTS[:5]).encode() + b"\n")
    out = tmp_path / "o.parquet"
    with pytest.raises(SampleFailedError, match=r"Input item 0 \(position 0\) failed: .* 0 rows are kept"):
        embed(src, out, featurizer=CharNgramFeaturizer(), quiet=True)
    # other parameters, no --overwrite: a fresh job
    res = embed(src, out, featurizer=CharNgramFeaturizer(), params={"n_features": 8}, on_error="skip",
                chunk_size=1, progress="log")
    assert "holds an earlier attempt that wrote no row; starting over with the new parameters (n_features: " \
           "16 then, 8 now)" in capsys.readouterr().err
    assert (res.rows, res.failed, res.resumed_from) == (5, 1, 0)
    np.testing.assert_array_equal(read_embeddings(out)[2], CharNgramFeaturizer(8).fit().transform(TEXTS[:5]))
    # once rows are committed, other parameters are refused
    with pytest.raises(ResumeMismatchError, match=r"n_features: 8 then, 16 now"):
        embed(src, out, featurizer=CharNgramFeaturizer(), on_error="skip", quiet=True)


def test_a_job_whose_items_all_failed_so_far_does_not_lock_either(tmp_path):
    src = tmp_path / "docs.txt"
    src.write_bytes(b"\x97a\n\x97b\n" + "\n".join(TEXTS[:2]).encode() + b"\n")
    out = tmp_path / "o.parquet"
    with pytest.MonkeyPatch.context() as m:
        _crash_after_commits(m, 1, src, out, featurizer=CharNgramFeaturizer(), chunk_size=2, on_error="skip",
                             quiet=True)
    assert json.loads((out / "_manifest.json").read_text())["errors"] == 2  # a committed shard of 0 rows
    res = embed(src, out, featurizer=CharNgramFeaturizer(), params={"n_features": 8}, encoding="latin-1",
                quiet=True)
    assert (res.rows, res.failed) == (4, 0)
    assert not (out / "_errors").exists() or not any((out / "_errors").iterdir())


# -- the resume check covers what a table references ----------------------------------------------------
@pytest.fixture()
def image_table(tmp_path):
    folder = tmp_path / "imgs"
    for i in range(6):
        _png(folder / f"img{i}.png", 300 + i)
    names = [f"img{i}.png" for i in range(6)]
    table = tmp_path / "t.csv"
    pd.DataFrame({"path": [str(folder / n) for n in names], "name": names}).to_csv(table, index=False)
    return table, folder, names


def _table_job(table, out, **kw):
    return embed(table, out, column="path", id_column="name", chunk_size=2, **TINY, **kw)


def test_resume_refuses_a_committed_image_replaced_behind_a_table(image_table, tmp_path, monkeypatch):
    table, folder, names = image_table
    out = tmp_path / "o.parquet"
    _crash_after_commits(monkeypatch, 2, table, out, column="path", id_column="name", chunk_size=2, **TINY)
    _png(folder / "img1.png", 999)  # a committed item: its vector in the shards is the old image's
    with pytest.raises(ResumeMismatchError,
                       match=r"committed item 'img1.png' \(position 1\) is not what was featurized: its "
                             r"content changed \(content hash [0-9a-f]{12}\.\.\. then, "
                             r"[0-9a-f]{12}\.\.\. now\).*--overwrite"):
        _table_job(table, out)
    (folder / "img1.png").unlink()
    with pytest.raises(ResumeMismatchError, match=r"committed item 'img1.png' \(position 1\) .*it cannot be "
                                                  r"read now"):
        _table_job(table, out)
    pd.DataFrame({"path": [str(folder / n) for n in names[2:]], "name": names[2:]}).to_csv(table, index=False)
    with pytest.raises(ResumeMismatchError, match=r"committed item 'img0.png' \(position 0\) .*the item at "
                                                  r"this position is 'img2.png' now"):
        _table_job(table, out)


def test_resume_accepts_changes_after_the_committed_items(image_table, tmp_path, monkeypatch):
    table, folder, names = image_table
    out = tmp_path / "o.parquet"
    _crash_after_commits(monkeypatch, 2, table, out, column="path", id_column="name", chunk_size=2, **TINY)
    _png(folder / "img5.png", 998)  # not featurized yet: the resumed job sees the new image
    res = _table_job(table, out)
    assert (res.resumed_from, res.featurized) == (4, 2)
    ref = _table_job(table, tmp_path / "ref.parquet")
    for a, b in zip(read_embeddings(out), read_embeddings(ref.out), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# -- messages name the right item ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def many_bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    for i in range(4):
        _png(root / f"good{i}.png", 400 + i)
    (root / "a_empty.png").write_bytes(b"")
    for i in range(10):  # more than 8 bad samples in one chunk: the one-sample-at-a-time path
        (root / f"text{i}.jpg").write_text(f"text {i}, not a JPEG")
    return root


def test_skip_lines_name_each_bad_item_by_its_position(many_bad, tmp_path, capsys):
    out = tmp_path / "o.parquet"
    assert main(["embed", str(many_bad), "--out", str(out), "--backbone", "timm:test_resnet", "--param",
                 "weights=null", "--on-error", "skip", "--chunk-size", "32", "--progress", "log"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "skipped item" in ln]
    order = ["a_empty.png"] + [f"good{i}.png" for i in range(4)] + [f"text{i}.jpg" for i in range(10)]
    bad = [(p, n) for p, n in enumerate(order) if not n.startswith("good")]
    assert len(lines) == len(bad) == 11
    for line, (pos, name) in zip(lines, bad, strict=True):
        assert line.startswith(f"skfeaturize embed: skipped item {name!r} (position {pos}): "
                               f"InvalidSampleError: Sample {pos} ("), line
        assert name in line.split(": Sample", 1)[1]
    errors = [json.loads(s) for s in (tmp_path / "o.errors.jsonl").read_text().splitlines()]
    assert [(e["id"], e["position"]) for e in errors] == [(n, p) for p, n in bad]
    assert [f"skfeaturize embed: skipped item {e['id']!r} (position {e['position']}): {e['error']}"
            for e in errors] == lines


def test_raise_names_the_first_bad_item_although_a_later_one_fails_to_hash(tmp_path):
    # position 1 fails to decode (found by transform), position 3 is empty (found by the hashing pass)
    table = tmp_path / "t.csv"
    folder = tmp_path / "imgs"
    for i in range(3):
        _png(folder / f"g{i}.png", 500 + i)
    (folder / "text.jpg").write_text("not a JPEG")
    (folder / "empty.png").write_bytes(b"")
    names = ["g0.png", "text.jpg", "g1.png", "empty.png", "g2.png"]
    pd.DataFrame({"path": [str(folder / n) for n in names], "name": names}).to_csv(table, index=False)
    with pytest.raises(SampleFailedError, match=r"Input item 'text.jpg' \(position 1\) failed: "
                                                r"InvalidSampleError: Sample 1 .*cannot decode image.* "
                                                r"1 rows are kept .*resume at position 1") as e:
        embed(table, tmp_path / "o.parquet", column="path", id_column="name", chunk_size=8, **TINY)
    assert (e.value.id, e.value.position) == ("text.jpg", 1)


# -- a fitted pooling in a words job ---------------------------------------------------------------------
def test_words_job_with_a_fitted_pooling_says_to_pass_fit_rows(tmp_path, capsys):
    from gensim.test.utils import datapath

    from skfeaturize import WordVectorFeaturizer

    src = tmp_path / "docs.txt"
    docs = ["the cat of the house", "a dog and the cat", "in the house", "of and in"]
    src.write_text("\n".join(docs) + "\n")
    params = {"vectors": datapath("toy-model.vec"), "pooling": "tfidf"}
    with pytest.raises(FitDataRequiredError, match=r"learns from the data with these parameters "
                                                   r"\(pooling='tfidf' is fitted .*pass --fit-rows N "
                                                   r"\(fit_rows=N\) to fit on the first N items"):
        embed(src, tmp_path / "a.parquet", featurizer="words", params=params, quiet=True)
    assert main(["embed", str(src), "--out", str(tmp_path / "b.parquet"), "--featurizer", "words",
                 "--vectors", datapath("toy-model.vec"), "--pooling", "tfidf", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--fit-rows N" in err
    res = embed(src, tmp_path / "c.parquet", featurizer="words", params=params, fit_rows=-1, quiet=True)
    ref = WordVectorFeaturizer(**params).fit(docs).transform(docs)
    np.testing.assert_array_equal(read_embeddings(res.out)[2], ref)


def test_image_open_error_is_unchanged_by_message_rewriting():
    from skfeaturize.exceptions import InvalidSampleError
    from skfeaturize.jobs._chunks import cause

    assert cause(InvalidSampleError("Sample 3 ('x.png'): empty file", index=3), 41) == \
        "InvalidSampleError: Sample 41 ('x.png'): empty file"
    assert cause(InvalidSampleError("Sample 41: bad", index=41), 41) == "InvalidSampleError: Sample 41: bad"
    assert cause(InvalidSampleError("Sample 30 is bad", index=3), 7) == "InvalidSampleError: Sample 30 is bad"
    assert cause(PermissionError(13, "Permission denied"), 7) == \
        "PermissionError: [Errno 13] Permission denied"

