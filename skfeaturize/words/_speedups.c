/* Compiled batch encoder for skfeaturize.words (optional: skfeaturize/words/_encode.py has a pure
 * Python/Arrow path that gives the same result, used when this module did not build).
 *
 * encode_batch(samples, lowercase, seed=0) -> (counts, codes, uniques, flags)
 *
 * samples: a list whose items are
 *   - str, ASCII only: tokenized here with the default tokenizer's rules (see _tokenize.DEFAULT_PATTERN:
 *     word runs [A-Za-z0-9_]+, "n't" split off a run ending in n, clitics 's 're 've 'll 'd 'm), after
 *     ASCII lowercasing when `lowercase`; every other byte, NUL and the other control bytes included, is a
 *     separator, as for the regex (a test compares both on random text with control characters);
 *   - list of str: user tokens, not yet normalised: ASCII tokens are lowercased here when `lowercase`,
 *     other tokens are returned raw with flag 1 (the caller applies NFC / apostrophe / lowercase to them
 *     and merges types that become equal);
 *   - tuple of str: tokens already normalised by the caller (used as they are, flag 0).
 * Every token gets a type code, types numbered in order of first appearance over the whole batch.
 *
 * Returns counts (bytearray of int64, tokens per sample), codes (bytearray of int32, a type per token in
 * sample order), uniques (list of str, the types) and flags (bytearray of uint8 per type).
 * A token that is not a str raises TypeError naming the sample and the token position.
 *
 * ASCII tokens are hashed from their bytes into one open-addressing table (no Python object per token);
 * other tokens go through dicts keyed by the str itself (its cached hash). `seed` keys the table's hash
 * (the caller passes a random per-process value), so crafted input cannot aim tokens at one slot to make
 * the linear probing quadratic; the codes do not depend on it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static unsigned char IS_WORD[256];

/* A token of up to 8 bytes is its own key (bytes packed into a uint64, compared with its length);
 * a longer one is keyed by a 64-bit hash and compared byte for byte with its copy in the arena. */
typedef struct {
    uint64_t key;
    int32_t code; /* -1: empty slot */
    int32_t len;
} Slot;

typedef struct {
    Slot *slots;
    int shift;    /* slot index = (mixed key) >> shift; 64 - log2(number of slots) */
    uint64_t seed;
    size_t mask;
    size_t used;
    char *arena;  /* bytes of the long ASCII types */
    size_t arena_len, arena_cap;
    Py_ssize_t *long_off; /* per type: offset of a long type's bytes in the arena */
    size_t long_off_cap;
    PyObject *uniques;    /* list */
    PyObject *flags;      /* bytearray */
    PyObject *raw_norm;   /* dict: non-ASCII user token -> code (flag 1) */
    PyObject *raw_ready;  /* dict: non-ASCII normalised token -> code (flag 0) */
    int64_t ntypes;
    int32_t *codes;
    size_t ncodes, codes_cap;
    unsigned char *scratch; /* lowered/padded copy of the current text or token */
    size_t scratch_cap;
} Encoder;

#define PAD 8 /* zero bytes after every scratch copy, so that 8-byte loads never leave the buffer */

static inline uint64_t load_short(const unsigned char *p, Py_ssize_t n)
{
    /* p[0:n], n <= 8, packed into a uint64 (p is followed by at least 8 readable bytes) */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t w;
    memcpy(&w, p, 8);
    return n == 8 ? w : (w & ((1ULL << (8 * n)) - 1));
#else
    uint64_t w = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        w |= (uint64_t)p[k] << (8 * k);
    }
    return w;
#endif
}

static inline uint64_t hash_long(const unsigned char *p, Py_ssize_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)n * 0xD6E8FEB86659FD93ULL);
    uint64_t w;
    while (n >= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    w = 0;
    if (n > 0) {
        memcpy(&w, p, (size_t)n);
    }
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 29;
    return h;
}

static inline size_t slot_of(uint64_t key, int32_t len, uint64_t seed, int shift)
{
    /* keyed multiplicative (Fibonacci) hashing, top bits: without the per-process seed, input cannot be
     * crafted to fall into one run of slots */
    return (size_t)(((key ^ seed ^ (uint64_t)len) * 0x9E3779B97F4A7C15ULL) >> shift);
}

static int grow_slots(Encoder *e)
{
    size_t cap = (e->mask + 1) * 2;
    int shift = e->shift - 1;
    Slot *slots = PyMem_Malloc(cap * sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < cap; i++) {
        slots[i].code = -1;
    }
    for (size_t i = 0; i <= e->mask; i++) {
        Slot *s = &e->slots[i];
        if (s->code < 0) {
            continue;
        }
        size_t j = slot_of(s->key, s->len, e->seed, shift);
        while (slots[j].code >= 0) {
            j = (j + 1) & (cap - 1);
        }
        slots[j] = *s;
    }
    PyMem_Free(e->slots);
    e->slots = slots;
    e->mask = cap - 1;
    e->shift = shift;
    return 0;
}

/* `buf` (holding *cap elements of `size` bytes) with room for `need` elements, grown at least twofold;
 * NULL with MemoryError set on failure (`buf` is then still valid and owned by the caller). */
static void *reserve(void *buf, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap && buf != NULL) {
        return buf;
    }
    size_t new_cap = need > 2 * *cap ? need : 2 * *cap;
    new_cap = new_cap ? new_cap : 1;
    if (new_cap > PY_SSIZE_T_MAX / size) {
        PyErr_NoMemory();
        return NULL;
    }
    void *grown = PyMem_Realloc(buf, new_cap * size);
    if (grown == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    *cap = new_cap;
    return grown;
}

static int new_type(Encoder *e, PyObject *word, char flag)
{
    if (PyList_Append(e->uniques, word) < 0) {
        return -1;
    }
    Py_ssize_t n = PyByteArray_GET_SIZE(e->flags);
    if (PyByteArray_Resize(e->flags, n + 1) < 0) {
        return -1;
    }
    PyByteArray_AS_STRING(e->flags)[n] = flag;
    e->ntypes++;
    return 0;
}

/* The code of the ASCII token p[0:n] (followed by PAD readable bytes), added as a new type when
 * unseen; -1 on error. */
static int64_t ascii_code(Encoder *e, const unsigned char *p, Py_ssize_t n)
{
    if (n > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "token longer than 2**31 characters");
        return -1;
    }
    int32_t len = (int32_t)n;
    int is_short = n <= 8;
    uint64_t key = is_short ? load_short(p, n) : hash_long(p, n);
    size_t i = slot_of(key, len, e->seed, e->shift);
    for (;;) {
        Slot *s = &e->slots[i];
        if (s->code < 0) {
            break;
        }
        if (s->key == key && s->len == len
            && (is_short || memcmp(e->arena + e->long_off[s->code], p, (size_t)n) == 0)) {
            return s->code;
        }
        i = (i + 1) & e->mask;
    }
    int64_t code = e->ntypes;
    Py_ssize_t *long_off = reserve(e->long_off, &e->long_off_cap, (size_t)code + 1, sizeof(Py_ssize_t));
    if (long_off == NULL) {
        return -1;
    }
    e->long_off = long_off;
    e->long_off[code] = -1;
    if (!is_short) {
        char *arena = reserve(e->arena, &e->arena_cap, e->arena_len + (size_t)n, 1);
        if (arena == NULL) {
            return -1;
        }
        e->arena = arena;
        memcpy(e->arena + e->arena_len, p, (size_t)n);
        e->long_off[code] = (Py_ssize_t)e->arena_len;
        e->arena_len += (size_t)n;
    }
    PyObject *word = PyUnicode_New(n, 127);
    if (word == NULL) {
        return -1;
    }
    memcpy(PyUnicode_1BYTE_DATA(word), p, (size_t)n);
    int rc = new_type(e, word, 0);
    Py_DECREF(word);
    if (rc < 0) {
        return -1;
    }
    Slot *s = &e->slots[i];
    s->key = key;
    s->len = len;
    s->code = (int32_t)code;
    if (++e->used * 2 > e->mask + 1 && grow_slots(e) < 0) {
        return -1;
    }
    return code;
}

/* The code of a non-ASCII token (an exact str), from the dict of its kind. */
static int64_t object_code(Encoder *e, PyObject *token, char flag)
{
    PyObject *dict = flag ? e->raw_norm : e->raw_ready;
    PyObject *found = PyDict_GetItemWithError(dict, token);
    if (found != NULL) {
        return PyLong_AsLongLong(found);
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    int64_t code = e->ntypes;
    PyObject *value = PyLong_FromLongLong(code);
    if (value == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(dict, token, value);
    Py_DECREF(value);
    if (rc < 0 || new_type(e, token, flag) < 0) {
        return -1;
    }
    return code;
}

static int push_code(Encoder *e, int64_t code)
{
    if (code < 0) {
        return -1;
    }
    if (code > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "more than 2**31 distinct tokens in one batch");
        return -1;
    }
    if (e->ncodes == e->codes_cap) {
        int32_t *codes = reserve(e->codes, &e->codes_cap, e->ncodes + 4096, sizeof(int32_t));
        if (codes == NULL) {
            return -1;
        }
        e->codes = codes;
    }
    e->codes[e->ncodes++] = (int32_t)code;
    return 0;
}

/* p[0:n] copied to the scratch buffer (ASCII-lowercased when `lower`), followed by PAD zero bytes. */
static const unsigned char *padded_copy(Encoder *e, const unsigned char *p, size_t n, int lower)
{
    unsigned char *buf = reserve(e->scratch, &e->scratch_cap, n + PAD, 1);
    if (buf == NULL) {
        return NULL;
    }
    e->scratch = buf;
    if (lower) {
        for (size_t k = 0; k < n; k++) { /* branch-free, so the compiler vectorises it */
            unsigned char c = p[k];
            buf[k] = (unsigned char)(c + (((unsigned char)(c - 'A') < 26) << 5));
        }
    }
    else {
        memcpy(buf, p, n);
    }
    memset(buf + n, 0, PAD);
    return buf;
}

static inline int emit(Encoder *e, const unsigned char *s, Py_ssize_t a, Py_ssize_t b, int64_t *count)
{
    (*count)++;
    return push_code(e, ascii_code(e, s + a, b - a));
}

/* The default tokenizer on ASCII bytes s[0:n] (already lowercased when asked). */
static int tokenize_ascii(Encoder *e, const unsigned char *s, Py_ssize_t n, int64_t *count)
{
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (IS_WORD[c]) {
            Py_ssize_t end = i + 1;
            while (end < n && IS_WORD[s[end]]) {
                end++;
            }
            /* "n't" then a non-word character or the end: \w+(?=n't\b) | n't\b */
            int nt = s[end - 1] == 'n' && end + 1 < n && s[end] == '\'' && s[end + 1] == 't'
                     && (end + 2 == n || !IS_WORD[s[end + 2]]);
            if (nt) {
                if (end - i >= 2 && emit(e, s, i, end - 1, count) < 0) {
                    return -1;
                }
                if (emit(e, s, end - 1, end + 2, count) < 0) {
                    return -1;
                }
                i = end + 2;
            }
            else {
                if (emit(e, s, i, end, count) < 0) {
                    return -1;
                }
                i = end;
            }
        }
        else if (c == '\'' && i + 1 < n && IS_WORD[s[i + 1]]) {
            /* '(?:s|re|ve|ll|d|m)\b: the apostrophe then a run that is exactly one of these */
            Py_ssize_t end = i + 2;
            while (end < n && IS_WORD[s[end]]) {
                end++;
            }
            Py_ssize_t len = end - i - 1;
            unsigned char c0 = s[i + 1], c1 = len == 2 ? s[i + 2] : 0;
            int clitic = (len == 1 && (c0 == 's' || c0 == 'd' || c0 == 'm'))
                         || (len == 2 && (((c0 == 'r' || c0 == 'v') && c1 == 'e') || (c0 == 'l' && c1 == 'l')));
            if (clitic) {
                if (emit(e, s, i, end, count) < 0) {
                    return -1;
                }
                i = end;
            }
            else {
                i++;
            }
        }
        else {
            i++;
        }
    }
    return 0;
}

static int is_ascii_str(PyObject *o)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(o) < 0) {
        return -1;
    }
#endif
    return PyUnicode_IS_ASCII(o) ? 1 : 0;
}

static int encode_tokens(Encoder *e, PyObject *seq, Py_ssize_t index, int lowercase, int64_t *count)
{
    int user = PyList_Check(seq);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *t = items[j];
        if (!PyUnicode_Check(t)) {
            PyErr_Format(PyExc_TypeError, "sample %zd: token %zd is %.200s, not str", index, j,
                         Py_TYPE(t)->tp_name);
            return -1;
        }
        int ascii = is_ascii_str(t);
        if (ascii < 0) {
            return -1;
        }
        int64_t code;
        if (ascii) {
            Py_ssize_t len = PyUnicode_GET_LENGTH(t);
            const unsigned char *p = padded_copy(e, PyUnicode_DATA(t), (size_t)len, lowercase && user);
            if (p == NULL) {
                return -1;
            }
            code = ascii_code(e, p, len);
        }
        else if (PyUnicode_CheckExact(t)) {
            code = object_code(e, t, (char)user);
        }
        else {
            PyObject *exact = PyUnicode_FromObject(t); /* a str subclass: its plain str value */
            if (exact == NULL) {
                return -1;
            }
            code = object_code(e, exact, (char)user);
            Py_DECREF(exact);
        }
        if (push_code(e, code) < 0) {
            return -1;
        }
        (*count)++;
    }
    return 0;
}

static void encoder_free(Encoder *e)
{
    PyMem_Free(e->slots);
    PyMem_Free(e->arena);
    PyMem_Free(e->long_off);
    PyMem_Free(e->codes);
    PyMem_Free(e->scratch);
    Py_XDECREF(e->uniques);
    Py_XDECREF(e->flags);
    Py_XDECREF(e->raw_norm);
    Py_XDECREF(e->raw_ready);
}

static PyObject *encode_batch(PyObject *self, PyObject *args)
{
    PyObject *samples;
    int lowercase;
    unsigned long long seed = 0;
    if (!PyArg_ParseTuple(args, "O!p|K:encode_batch", &PyList_Type, &samples, &lowercase, &seed)) {
        return NULL;
    }
    Py_ssize_t n_samples = PyList_GET_SIZE(samples);
    Encoder e;
    memset(&e, 0, sizeof(e));
    PyObject *counts = PyByteArray_FromStringAndSize(NULL, n_samples * (Py_ssize_t)sizeof(int64_t));
    PyObject *result = NULL;
    e.slots = PyMem_Malloc(1024 * sizeof(Slot));
    e.mask = 1023;
    e.shift = 64 - 10;
    e.seed = (uint64_t)seed;
    e.arena_cap = 4096;
    e.arena = PyMem_Malloc(e.arena_cap);
    e.uniques = PyList_New(0);
    e.flags = PyByteArray_FromStringAndSize(NULL, 0);
    e.raw_norm = PyDict_New();
    e.raw_ready = PyDict_New();
    if (counts == NULL || e.slots == NULL || e.arena == NULL || e.uniques == NULL || e.flags == NULL
        || e.raw_norm == NULL || e.raw_ready == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto done;
    }
    for (size_t i = 0; i <= e.mask; i++) {
        e.slots[i].code = -1;
    }
    int64_t *count = (int64_t *)PyByteArray_AS_STRING(counts);
    for (Py_ssize_t i = 0; i < n_samples; i++) {
        PyObject *sample = PyList_GET_ITEM(samples, i);
        count[i] = 0;
        if (PyList_Check(sample) || PyTuple_Check(sample)) {
            if (encode_tokens(&e, sample, i, lowercase, &count[i]) < 0) {
                goto done;
            }
        }
        else if (PyUnicode_Check(sample)) {
            int ascii = is_ascii_str(sample);
            if (ascii < 0) {
                goto done;
            }
            if (!ascii) {
                PyErr_Format(PyExc_ValueError, "sample %zd: only ASCII text is tokenized here", i);
                goto done;
            }
            Py_ssize_t len = PyUnicode_GET_LENGTH(sample);
            const unsigned char *p = padded_copy(&e, PyUnicode_DATA(sample), (size_t)len, lowercase);
            if (p == NULL || tokenize_ascii(&e, p, len, &count[i]) < 0) {
                goto done;
            }
        }
        else {
            PyErr_Format(PyExc_TypeError, "sample %zd is %.200s, not str, list or tuple", i,
                         Py_TYPE(sample)->tp_name);
            goto done;
        }
    }
    PyObject *codes = PyByteArray_FromStringAndSize((const char *)e.codes,
                                                    (Py_ssize_t)(e.ncodes * sizeof(int32_t)));
    if (codes == NULL) {
        goto done;
    }
    result = Py_BuildValue("(ONOO)", counts, codes, e.uniques, e.flags);
done:
    Py_XDECREF(counts);
    encoder_free(&e);
    return result;
}

static PyMethodDef methods[] = {
    {"encode_batch", encode_batch, METH_VARARGS,
     "encode_batch(samples, lowercase, seed=0) -> (counts, codes, uniques, flags); see the module source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "Compiled batch encoder of skfeaturize.words.", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    for (int c = 0; c < 256; c++) {
        IS_WORD[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    }
    return PyModule_Create(&module);
}
