"""Tokenization for :class:`WordVectorFeaturizer`.

The default tokenizer (``tokenizer="default"``) follows the tokenization the common pretrained tables
were built with (GloVe, word2vec on news text), so that fewer words fall out of the vocabulary:

1. the text is NFC-normalised (``"café"`` composed and decomposed are one word) and the typographic
   apostrophe ``’`` becomes ``'``;
2. it is lowercased when ``lowercase=True``;
3. tokens are runs of word characters (letters, digits, underscore; any script), **one-character words
   included** (``"a"``, ``"i"``, ``"5"``), with English clitics split off as separate tokens the way
   GloVe's (Penn-Treebank style) tokenizer does: ``"it's" → ["it", "'s"]``, ``"don't" → ["do", "n't"]``.
   Punctuation and hyphens separate words (``"e-mail" → ["e", "mail"]``) and are dropped.

``tokenizer="whitespace"`` splits on whitespace (for text that is already tokenized, such as gensim's test
corpora); a callable ``str -> list[str]`` replaces the whole step (NFC normalisation and lowercasing are
still applied before it, so pass ``lowercase=False`` to keep case; it sees control characters as they are).

**Control characters are separators.** NUL and the other characters of Unicode category Cc (``U+0000``–
``U+001F``, ``U+007F``–``U+009F``) never join two words: ``"good\x00movie"`` is ``["good", "movie"]`` for
both tokenizers, and no token holds one. For the default tokenizer this is its word rule (a Cc character is
not a word character, exactly like punctuation: ``"don\x00't" → ["don", "t"]``); the compiled, NumPy and
regex paths agree (tests compare them on random text with control characters). ``"whitespace"`` splits on
them as on spaces (``str.split()`` alone keeps ``"good\x00movie"`` whole). A pre-tokenized sample (a token
list) is used as given: its tokens are not split.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

DEFAULT_PATTERN = r"(?u)\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|\w+"
_DEFAULT_RE = re.compile(DEFAULT_PATTERN)
# Cc characters that str.split() does not treat as whitespace (it does split on \t \n \v \f \r, \x1c-\x1f
# and \x85); the Cc set is closed (Unicode stability policy), so the first 160 code points hold all of it
CONTROL_NOT_SPACE = "".join(c for c in map(chr, range(0xA0)) if unicodedata.category(c) == "Cc"
                            and not c.isspace())
_CONTROL_NOT_SPACE_RE = re.compile("[" + re.escape(CONTROL_NOT_SPACE) + "]")
WHITESPACE_RULE = "str.split() after control characters (Cc) -> space"


def normalize(text: str, lowercase: bool) -> str:
    """NFC-normalise, unify apostrophes, and optionally lowercase."""
    text = unicodedata.normalize("NFC", text).replace("\u2019", "'")
    return text.lower() if lowercase else text


def default_tokenize(text: str) -> list[str]:
    """Split already-normalised text with :data:`DEFAULT_PATTERN`."""
    return _DEFAULT_RE.findall(text)


def whitespace_tokenize(text: str) -> list[str]:
    """Split on whitespace and on control characters (a search first: most texts hold none)."""
    if _CONTROL_NOT_SPACE_RE.search(text) is not None:
        text = _CONTROL_NOT_SPACE_RE.sub(" ", text)
    return text.split()


def resolve_tokenizer(tokenizer) -> Callable[[str], list[str]]:
    """``"default"``, ``"whitespace"`` or a callable → a function ``str -> list[str]``."""
    if tokenizer is None or tokenizer == "default":
        return default_tokenize
    if tokenizer == "whitespace":
        return whitespace_tokenize
    if callable(tokenizer):
        return tokenizer
    raise ValueError(f"tokenizer={tokenizer!r} is not supported; use 'default', 'whitespace' or a callable "
                     "str -> list[str].")


def tokenizer_identity(tokenizer) -> str:
    """A stable description of the tokenizer for the cache fingerprint."""
    if tokenizer is None or tokenizer == "default":
        return "default:" + DEFAULT_PATTERN
    if tokenizer == "whitespace":  # the rule is part of it: caches of the old str.split() do not match
        return "whitespace:" + WHITESPACE_RULE
    mod = getattr(tokenizer, "__module__", "?")
    name = getattr(tokenizer, "__qualname__", type(tokenizer).__qualname__)
    code = getattr(tokenizer, "__code__", None)
    extra = ""
    if code is not None:
        import hashlib

        extra = ":" + hashlib.blake2b(code.co_code + repr(code.co_consts).encode(), digest_size=8).hexdigest()
    return f"callable:{mod}.{name}{extra}"


def tokenize_documents(samples: list, tokenizer: Callable[[str], list[str]],
                       lowercase: bool) -> list[list[str]]:
    """Strings are normalised and tokenized; token lists are normalised token by token."""
    out = []
    for s in samples:
        if isinstance(s, str):
            out.append(list(tokenizer(normalize(s, lowercase))))
        else:
            out.append(normalize_tokens(s, lowercase))
    return out


def normalize_tokens(tokens: list[str], lowercase: bool) -> list[str]:
    """Normalise a token list as one string (one C call instead of one per token). A unit separator
    between tokens keeps NFC from composing across them; ASCII text skips NFC."""
    if not tokens:
        return []
    joined = "\x1f".join(tokens)
    if joined.count("\x1f") != len(tokens) - 1:  # a token holds the separator itself
        return [normalize(t, lowercase) for t in tokens]
    if not joined.isascii():
        joined = unicodedata.normalize("NFC", joined).replace("\u2019", "'")
    if lowercase:
        joined = joined.lower()
    return joined.split("\x1f")
