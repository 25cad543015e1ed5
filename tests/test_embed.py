"""Bulk jobs: `skfeaturize embed` / skfeaturize.jobs.embed (round trips, resume after SIGKILL, errors,
Ray)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from skfeaturize._plan import Plan, Request
from skfeaturize.base import BaseFeaturizer
from skfeaturize.cache._keys import hash_text
from skfeaturize.cli import main, parse_value
from skfeaturize.exceptions import InvalidSampleError
from skfeaturize.jobs import ResumeMismatchError, SampleFailedError, embed, read_embeddings

REPO = Path(__file__).resolve().parents[1]
TINY = {"featurizer": "image", "model": "timm:test_resnet", "params": {"weights": None}, "quiet": True}


class CharNgramFeaturizer(BaseFeaturizer):
    """A real, deterministic text featurizer: hashed character n-gram counts, L2-normalised."""

    _input_what = "texts"
    _parameter_constraints: dict = {"n_features": [int], "ngram": [int], "layer": [str], "pooling": [str],
                                    "cache": "no_validation"}

    def __init__(self, n_features=16, *, ngram=3, layer="chars", pooling="l2", cache=None):
        self.n_features = n_features
        self.ngram = ngram
        self.layer = layer
        self.pooling = pooling
        self.cache = cache

    def _make_plan(self, X, y):
        request = Request(self.layer, self.pooling)
        return Plan(requests=(request,), widths={request: self.n_features}, prefix="charngram",
                    identity={"n_features": self.n_features, "ngram": self.ngram},
                    params=self._param_snapshot())

    def _check_sample(self, index, sample):
        if not isinstance(sample, str):
            raise InvalidSampleError(f"Sample {index}: expected a str, got {type(sample).__name__}",
                                     index=index)
        return sample

    def _sample_key(self, sample, index):
        return hash_text(sample)

    def _compute(self, plan, samples, requests, indices):
        out = np.zeros((len(samples), self.n_features), np.float32)
        for row, text in enumerate(samples):
            padded = f" {text} "
            for j in range(max(1, len(padded) - self.ngram + 1)):
                gram = padded[j:j + self.ngram].encode()
                out[row, int.from_bytes(hashlib.blake2b(gram, digest_size=4).digest(), "little")
                    % self.n_features] += 1
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return {r: out for r in requests}


TEXTS = [f"document number {i}: {'lorem ipsum dolor sit amet'[: 5 + i % 20]} café" for i in range(23)]


def _png(path: Path, seed: int, size=(40, 52)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imgs")
    for i in range(11):
        sub = ["a", "b/c", "b/d/e", ""][i % 4]
        _png(root / sub / f"img{i:02d}.png", i)
    (root / "notes.txt").write_text("not an image, ignored by extension")
    return root


@pytest.fixture(scope="module")
def tiny_reference(image_dir):
    """The in-process featurizer on every image of the folder, keyed by relative path."""
    from skfeaturize import ImageFeaturizer

    paths = sorted(p for p in image_dir.rglob("*.png"))
    f = ImageFeaturizer("timm:test_resnet", weights=None).fit()
    X = f.transform([str(p) for p in paths])
    return {p.relative_to(image_dir).as_posix(): x for p, x in zip(paths, X, strict=True)}


def _check_against(out, reference: dict, order: list | None = None):
    ids, hashes, X = read_embeddings(out)
    assert len(ids) == len(set(ids)) == len(reference)
    if order is not None:
        assert ids == order
    np.testing.assert_allclose(X, np.stack([reference[i] for i in ids]), atol=1e-5)
    return ids, hashes, X


# -- round trips ---------------------------------------------------------------------------------------
def test_folder_round_trip_nested(image_dir, tiny_reference, tmp_path):
    out = tmp_path / "emb.parquet"
    res = embed(image_dir, out, chunk_size=4, **TINY)
    assert (res.rows, res.failed, res.featurized, res.resumed_from) == (11, 0, 11, 0)
    # sorted walk (each directory's entries by name), nested dirs, relative posix ids, .txt ignored
    order = ["a/img00.png", "a/img04.png", "a/img08.png", "b/c/img01.png", "b/c/img05.png", "b/c/img09.png",
             "b/d/e/img02.png", "b/d/e/img06.png", "b/d/e/img10.png", "img03.png", "img07.png"]
    ids, hashes, X = _check_against(out, tiny_reference, order)
    assert X.shape == (11, 96) and X.dtype == np.float32
    from skfeaturize.cache._keys import hash_file

    assert hashes == [hash_file(image_dir / i) for i in ids]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["_manifest.json"] + [f"part-{k:06d}.parquet" for k in range(3)]
    schema = pq.read_schema(out / "part-000000.parquet")
    meta = json.loads(schema.metadata[b"skfeaturize"])
    assert meta["featurizer"] == "skfeaturize.image._featurizer:ImageFeaturizer"
    assert meta["params"]["backbone"] == "timm:test_resnet" and meta["params"]["weights"] is None
    from skfeaturize import ImageFeaturizer

    assert meta["fingerprint"] == ImageFeaturizer("timm:test_resnet", weights=None).fit().fingerprint_
    assert meta["feature_groups"] == ["test_resnet__pre_logits__none"] and meta["n_features"] == 96
    emb_type = schema.field("embedding").type
    assert emb_type.list_size == 96 and str(emb_type.value_type) == "float"


def test_csv_paths_with_id_column_and_columns_layout(image_dir, tiny_reference, tmp_path):
    rel = sorted(tiny_reference)[:7]
    pd.DataFrame({"key": [f"k{i}" for i in range(7)], "path": [str(image_dir / r) for r in rel],
                  "other": range(7)}).to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "o.parquet"
    embed(tmp_path / "t.csv", out, column="path", id_column="key", layout="columns", chunk_size=3, **TINY)
    df = pd.read_parquet(out)
    assert df["id"].tolist() == [f"k{i}" for i in range(7)]
    assert list(df.columns[:3]) == ["id", "content_hash", "test_resnet__pre_logits__none_0"]
    np.testing.assert_allclose(df.iloc[:, 2:].to_numpy(), np.stack([tiny_reference[r] for r in rel]),
                               atol=1e-5)


def test_csv_relative_paths_resolve_against_table_folder(image_dir, tiny_reference, tmp_path):
    rel = sorted(tiny_reference)[:3]
    pd.DataFrame({"path": rel}).to_csv(image_dir / "rel.csv", index=False)
    try:
        res = embed(image_dir / "rel.csv", tmp_path / "o.parquet", **TINY)
    finally:
        (image_dir / "rel.csv").unlink()
    ids, _, X = read_embeddings(res.out)
    assert ids == [0, 1, 2]
    np.testing.assert_allclose(X, np.stack([tiny_reference[r] for r in rel]), atol=1e-5)


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "csv", "txt"])
def test_text_inputs_round_trip(kind, tmp_path):
    df = pd.DataFrame({"doc_id": [100 + i for i in range(len(TEXTS))], "text": TEXTS})
    src = tmp_path / f"in.{kind}"
    if kind == "parquet":
        df.to_parquet(src, row_group_size=5)
    elif kind == "jsonl":
        df.to_json(src, orient="records", lines=True, force_ascii=False)
    elif kind == "csv":
        df.to_csv(src, index=False)
    else:
        src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    kw = {} if kind == "txt" else {"column": "text", "id_column": "doc_id"}
    res = embed(src, tmp_path / "o.parquet", featurizer=CharNgramFeaturizer(), params={"n_features": 32},
                chunk_size=4, quiet=True, **kw)
    assert res.rows == len(TEXTS)
    ids, hashes, X = read_embeddings(res.out)
    expected = CharNgramFeaturizer(32).fit().transform(TEXTS)
    np.testing.assert_array_equal(X, expected)
    assert ids == (list(range(len(TEXTS))) if kind == "txt" else list(df["doc_id"]))
    assert hashes == [hash_text(t) for t in TEXTS]


def test_default_column_and_missing_column_error(tmp_path):
    pd.DataFrame({"text": TEXTS[:3], "n": [1, 2, 3]}).to_parquet(tmp_path / "t.parquet")
    res = embed(tmp_path / "t.parquet", tmp_path / "o.parquet", featurizer=CharNgramFeaturizer(), quiet=True)
    assert read_embeddings(res.out)[0] == [0, 1, 2]
    pd.DataFrame({"a": TEXTS[:3], "b": [1, 2, 3]}).to_parquet(tmp_path / "u.parquet")
    with pytest.raises(ValueError, match=r"Which column holds the samples\? .* \['a', 'b'\]; pass --column"):
        embed(tmp_path / "u.parquet", tmp_path / "o2.parquet", featurizer=CharNgramFeaturizer(), quiet=True)
    with pytest.raises(ValueError, match=r"column='txt' is not a column .* Did you mean 'text'\?"):
        embed(tmp_path / "t.parquet", tmp_path / "o3.parquet", featurizer=CharNgramFeaturizer(),
              column="txt", quiet=True)


# -- errors ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    for i in range(6):
        _png(root / f"good{i}.png", 100 + i)
    img = Image.fromarray(np.random.default_rng(7).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (root / "sub").mkdir()
    img.save(root / "sub" / "full.jpg", quality=90)
    data = (root / "sub" / "full.jpg").read_bytes()
    (root / "sub" / "full.jpg").unlink()
    (root / "sub" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "good2_text.jpg").write_text("this is text, not a JPEG")
    return root


def test_on_error_raise_names_the_item_and_keeps_written_shards(corrupt_dir, tmp_path):
    with pytest.raises(SampleFailedError,
                       match=r"Input item 'empty.png' \(position 0\) failed: .*empty file.*0 rows are kept"):
        embed(corrupt_dir, tmp_path / "o.parquet", chunk_size=2, **TINY)
    assert json.loads((tmp_path / "o.parquet" / "_manifest.json").read_text())["position"] == 0
    # a bad item in the second chunk: the first chunk and the good item before it stay committed
    src = tmp_path / "list.csv"
    names = ["good0.png", "good1.png", "good3.png", "good2_text.jpg", "good4.png"]
    pd.DataFrame({"path": [str(corrupt_dir / n) for n in names], "name": names}).to_csv(src, index=False)
    out = tmp_path / "o2.parquet"
    with pytest.raises(SampleFailedError, match=r"Input item 'good2_text.jpg' \(position 3\) failed: "
                                                r"InvalidSampleError: Sample 3 .*cannot decode image.* "
                                                r"3 rows are kept .*rerun the same command to resume at "
                                                r"position 3"):
        embed(src, out, column="path", id_column="name", chunk_size=2, **TINY)
    m = json.loads((out / "_manifest.json").read_text())
    assert m["position"] == 3 and m["rows"] == 3
    assert read_embeddings(out)[0] == ["good0.png", "good1.png", "good3.png"]
    # the bad row removed, the same command resumes at it and finishes
    names.remove("good2_text.jpg")
    pd.DataFrame({"path": [str(corrupt_dir / n) for n in names], "name": names}).to_csv(src, index=False)
    res = embed(src, out, column="path", id_column="name", chunk_size=2, **TINY)
    assert (res.resumed_from, res.featurized, res.rows) == (3, 1, 4)
    ref = embed(src, tmp_path / "ref.parquet", column="path", id_column="name", **TINY)
    for a, b in zip(read_embeddings(out), read_embeddings(ref.out), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_on_error_skip_records_and_keeps_good(corrupt_dir, tmp_path):
    from skfeaturize import ImageFeaturizer

    out = tmp_path / "o.parquet"
    res = embed(corrupt_dir, out, on_error="skip", chunk_size=4, **TINY)
    assert (res.rows, res.failed) == (6, 3)
    ids, _, X = read_embeddings(out)
    assert ids == [f"good{i}.png" for i in range(6)]
    f = ImageFeaturizer("timm:test_resnet", weights=None).fit()
    np.testing.assert_allclose(X, f.transform([str(corrupt_dir / i) for i in ids]), atol=1e-5)
    errors = [json.loads(line) for line in Path(res.errors_path).read_text().splitlines()]
    assert Path(res.errors_path).name == "o.errors.jsonl"
    by_id = {e["id"]: e["error"] for e in errors}
    assert set(by_id) == {"empty.png", "good2_text.jpg", "sub/truncated.jpg"}
    assert "empty file" in by_id["empty.png"]
    assert "cannot decode image" in by_id["good2_text.jpg"]
    assert "truncated" in by_id["sub/truncated.jpg"]


def test_on_error_skip_text_bytes_line(tmp_path):
    src = tmp_path / "docs.txt"
    src.write_bytes(b"first line\nbad \x97 byte\nthird line\n")
    with pytest.raises(SampleFailedError,
                       match=r"Input item 1 \(position 1\) failed: .*expected a str, got bytes"):
        embed(src, tmp_path / "a.parquet", featurizer=CharNgramFeaturizer(), quiet=True)
    res = embed(src, tmp_path / "b.parquet", featurizer=CharNgramFeaturizer(), on_error="skip", quiet=True)
    assert read_embeddings(res.out)[0] == [0, 2]
    assert [json.loads(s)["id"] for s in Path(res.errors_path).read_text().splitlines()] == [1]


# -- resumption ------------------------------------------------------------------------------------------
def test_resume_refuses_different_params_and_overwrite_restarts(image_dir, tmp_path):
    out = tmp_path / "o.parquet"
    embed(image_dir, out, chunk_size=4, **TINY)
    again = embed(image_dir, out, chunk_size=4, **TINY)
    assert again.featurized == 0 and again.rows == 11  # complete: nothing recomputed
    with pytest.raises(ResumeMismatchError, match=r"different parameters or input \(pooling: 'auto' then, "
                                                  r"'max' now\).*--overwrite"):
        embed(image_dir, out, pooling="max", **TINY)
    with pytest.raises(ResumeMismatchError, match="layout: 'list' then, 'columns' now"):
        embed(image_dir, out, layout="columns", **TINY)
    _png(image_dir / "zz_new.png", 99)
    try:
        with pytest.raises(ResumeMismatchError, match=r"input \(files, listing changed"):
            embed(image_dir, out, **TINY)
    finally:
        (image_dir / "zz_new.png").unlink()
    res = embed(image_dir, out, pooling="max", overwrite=True, **TINY)
    assert res.featurized == 11
    assert json.loads((out / "_manifest.json").read_text())["job"]["params"]["pooling"] == "max"
    # runtime-only parameters may change on resume
    assert embed(image_dir, out, pooling="max", batch_size=3, **TINY).featurized == 0


def test_resume_discards_uncommitted_shards(image_dir, tiny_reference, tmp_path):
    out = tmp_path / "o.parquet"
    embed(image_dir, out, chunk_size=4, **TINY)
    m = json.loads((out / "_manifest.json").read_text())
    # simulate a kill after shard 1 was renamed but before the manifest committed it (and a temp file)
    committed = {**m, "shards": m["shards"][:1], "position": 4, "rows": 4, "complete": False}
    (out / "_manifest.json").write_text(json.dumps(committed))
    (out / ".part-000002.parquet.tmp").write_bytes(b"partial")
    res = embed(image_dir, out, chunk_size=4, **TINY)
    assert (res.resumed_from, res.featurized, res.rows) == (4, 7, 11)
    assert sorted(p.name for p in out.iterdir()) == ["_manifest.json"] + [f"part-{k:06d}.parquet"
                                                                            for k in range(3)]
    _check_against(out, tiny_reference)


def test_refuses_foreign_output_folder(image_dir, tmp_path):
    (tmp_path / "o.parquet").mkdir()
    (tmp_path / "o.parquet" / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a skfeaturize job folder"):
        embed(image_dir, tmp_path / "o.parquet", **TINY)
    with pytest.raises(FileExistsError, match="--overwrite would delete"):
        embed(image_dir, tmp_path / "o.parquet", overwrite=True, **TINY)


def test_sigkill_and_resume_equals_uninterrupted(tmp_path):
    src = tmp_path / "imgs"
    for i in range(40):
        _png(src / f"d{i % 3}" / f"{i:03d}.png", 1000 + i, size=(64, 64))
    cmd = [sys.executable, "-m", "skfeaturize", "embed", str(src), "--out", str(tmp_path / "o.parquet"),
           "--backbone", "resnet18", "--param", "weights=null", "--chunk-size", "4", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    manifest = tmp_path / "o.parquet" / "_manifest.json"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_at = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            pos = json.loads(manifest.read_text())["position"]
        except (FileNotFoundError, json.JSONDecodeError):
            pos = 0
        if pos >= 8:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at = pos
            break
        time.sleep(0.005)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    at_kill = json.loads(manifest.read_text())
    assert not at_kill["complete"] and 8 <= at_kill["position"] < 40
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = json.loads(manifest.read_text())
    assert final["complete"] and final["rows"] == 40
    run = final["runs"][-1]
    assert run["resumed_from"] == at_kill["position"]
    assert run["featurized"] == 40 - at_kill["position"]  # nothing already written was recomputed
    ids, hashes, X = read_embeddings(tmp_path / "o.parquet")
    assert len(ids) == len(set(ids)) == 40
    ref = embed(src, tmp_path / "ref.parquet", featurizer="image", model="resnet18",
                params={"weights": None}, chunk_size=4, quiet=True)
    rids, rhashes, rX = read_embeddings(ref.out)
    assert ids == rids and hashes == rhashes
    np.testing.assert_allclose(X, rX, atol=1e-5)


# -- npy --------------------------------------------------------------------------------------------------
def test_npy_format(image_dir, tiny_reference, tmp_path):
    out = tmp_path / "emb.npy"
    res = embed(image_dir, out, format="npy", chunk_size=5, **TINY)
    X = np.load(out, mmap_mode="r")
    assert isinstance(X, np.memmap) and X.shape == (11, 96) and X.dtype == np.float32
    ids = pd.read_parquet(tmp_path / "emb.ids.parquet")
    np.testing.assert_allclose(X, np.stack([tiny_reference[i] for i in ids["id"]]), atol=1e-5)
    assert res.rows == 11 and not list((tmp_path / "emb.npy.parts").glob("*.parquet"))
    assert embed(image_dir, out, format="npy", **TINY).featurized == 0
    with pytest.raises(ValueError, match="layout='columns' applies to format='parquet'"):
        embed(image_dir, out, format="npy", layout="columns", **TINY)


def test_bad_options():
    with pytest.raises(ValueError, match=r"format='csv' is not one of"):
        embed("x", "y", format="csv")
    with pytest.raises(ValueError, match=r"on_error='ignore' is not one of"):
        embed("x", "y", on_error="ignore")
    with pytest.raises(ValueError, match=r"chunk_size=0 must be a positive int"):
        embed("x", "y", chunk_size=0)
    with pytest.raises(ValueError, match=r"featurizer='audio' is not one of"):
        embed("x", "y", featurizer="audio")
    with pytest.raises(ValueError, match=r"Unknown parameter\(s\) \['layers'\] .*did you mean 'layer'"):
        embed("x", "y", params={"layers": 1})
    with pytest.raises(FileNotFoundError, match="INPUT '/nonexistent' does not exist"):
        embed("/nonexistent", "y", params={"weights": None}, model="timm:test_resnet")


# -- CLI ----------------------------------------------------------------------------------------------------
def test_parse_value():
    assert [parse_value(v) for v in ["3", "0.5", "null", "None", "true", "False", "[1, -1]", "layer4",
                                     '"7"']] == [3, 0.5, None, None, True, False, [1, -1], "layer4", "7"]


def test_cli_help_is_complete(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    top = capsys.readouterr().out
    assert "embed" in top and "layers" in top
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    text = capsys.readouterr().out
    for opt in ["--out", "--featurizer", "--backbone", "--model", "--layer", "--pooling", "--param",
                "--config", "--column", "--id-column", "--format", "--layout", "--chunk-size", "--on-error",
                "--overwrite", "--cache", "--quiet", "--engine", "--ray-address", "--concurrency",
                "--gpus-per-actor", "--fit-rows"]:
        assert opt in text, opt


def test_cli_layers(capsys):
    assert main(["layers", "timm:test_resnet"]) == 0
    out = capsys.readouterr().out
    import skfeaturize

    expected = skfeaturize.list_layers("timm:test_resnet")
    for name in expected["name"]:
        assert name in out
    assert out.splitlines()[0].split()[:2] == ["name", "index"]
    assert main(["layers", "timm:test_resnet", "--format", "json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == list(expected["name"])


def test_cli_embed_with_config_and_params(image_dir, tiny_reference, tmp_path, capsys):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("featurizer: image\nbackbone: timm:test_resnet\nchunk_size: 5\nparams:\n  weights: null\n"
                   "  batch_size: 2\n")
    out = tmp_path / "o.parquet"
    assert main(["embed", str(image_dir), "--out", str(out), "--config", str(cfg), "--layer", "-2",
                 "--pooling", "max", "--param", "precision=fp32", "--progress", "log"]) == 0
    err = capsys.readouterr().err
    assert "done: 11 rows" in err and "featurized 11 items" in err
    job = json.loads((out / "_manifest.json").read_text())["job"]
    assert job["params"]["layer"] == -2 and job["params"]["pooling"] == "max"
    assert job["params"]["batch_size"] == 2 and job["params"]["precision"] == "fp32"
    meta = json.loads(pq.read_schema(out / "part-000000.parquet").metadata[b"skfeaturize"])
    assert meta["feature_groups"] == ["test_resnet__layer4__max"]  # layer -2 resolved
    assert [s["stop"] - s["start"] for s in json.loads((out / "_manifest.json").read_text())["shards"]] == \
        [5, 5, 1]
    # a mismatch is a clean CLI error
    assert main(["embed", str(image_dir), "--out", str(out), "--config", str(cfg), "--quiet"]) == 1
    assert "different parameters" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"chunksize": 3}))
    assert main(["embed", str(image_dir), "--out", str(out), "--config", str(tmp_path / "bad.json")]) == 1
    assert "Unknown option(s) ['chunksize']" in capsys.readouterr().err


# -- Ray ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_equals_local(ray_local, corrupt_dir, tmp_path, capsys, monkeypatch):
    from skfeaturize.jobs import _inputs, _store

    local = embed(corrupt_dir, tmp_path / "local.parquet", on_error="skip", chunk_size=3,
                  **{**TINY, "quiet": False}, progress="log")
    local_err = capsys.readouterr().err
    # count how far the driver reads ahead of what it has committed
    read, committed, ahead = [0], [0], []
    real_chunks, real_commit = _inputs.InputSource.chunks, _store.ShardStore.commit

    def chunks(self, *a, **kw):
        for c in real_chunks(self, *a, **kw):
            read[0] += 1
            ahead.append(read[0] - committed[0])
            yield c

    def commit(self, *a, **kw):
        committed[0] += 1
        return real_commit(self, *a, **kw)

    monkeypatch.setattr(_inputs.InputSource, "chunks", chunks)
    monkeypatch.setattr(_store.ShardStore, "commit", commit)
    remote = embed(corrupt_dir, tmp_path / "ray.parquet", on_error="skip", chunk_size=1, engine="ray",
                   concurrency=2, **{**TINY, "quiet": False}, progress="log")
    monkeypatch.undo()
    ray_err = capsys.readouterr().err
    assert read[0] == committed[0] == 9 and max(ahead) == 4  # two chunks per actor in flight, not all 9
    a, b = pd.read_parquet(local.out), pd.read_parquet(remote.out)
    assert a["id"].tolist() == b["id"].tolist() and a["content_hash"].tolist() == b["content_hash"].tolist()
    np.testing.assert_allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), atol=1e-5)
    assert pq.read_schema(Path(local.out) / "part-000000.parquet").remove_metadata() == \
        pq.read_schema(Path(remote.out) / "part-000000.parquet").remove_metadata()
    def no_address(text):  # Pillow names a BytesIO object by its address
        return re.sub(r" at 0x[0-9a-f]+", "", text)

    errs = [[json.loads(s) for s in Path(r.errors_path).read_text().splitlines()] for r in (local, remote)]
    assert [(e["id"], e["position"], no_address(e["error"])) for e in errs[0]] == \
        [(e["id"], e["position"], no_address(e["error"])) for e in errs[1]]
    assert [e["id"] for e in errs[1]] == ["empty.png", "good2_text.jpg", "sub/truncated.jpg"]
    skipped = [[no_address(ln) for ln in err.splitlines() if "skipped item" in ln]
               for err in (local_err, ray_err)]
    assert len(skipped[0]) == 3 and skipped[0] == skipped[1]  # the Ray engine prints the same lines
    assert json.loads((Path(remote.out) / "_manifest.json").read_text())["runs"][-1]["engine"] == "ray"
    # resume interchangeably: a local job killed after 2 shards is finished by Ray, and vice versa
    from tests.test_embed_reliability import _crash_after_commits

    for first, then in (("local", "ray"), ("ray", "local")):
        out = tmp_path / f"{first}_{then}.parquet"
        _crash_after_commits(monkeypatch, 2, corrupt_dir, out, on_error="skip", chunk_size=3, engine=first,
                             concurrency=2, **TINY)
        res = embed(corrupt_dir, out, on_error="skip", chunk_size=3, engine=then, concurrency=2, **TINY)
        assert (res.resumed_from, res.rows, res.failed) == (6, 6, 3)
        pd.testing.assert_frame_equal(pd.read_parquet(out), a)
