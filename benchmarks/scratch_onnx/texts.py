"""~1000 mixed real texts from gensim's test data: pang_lee sentences, lee_background sentences and whole
lee paragraphs (long: truncated to the model's 256 tokens)."""

from __future__ import annotations

import pathlib
import re


def mixed_texts(n: int = 1000) -> list[str]:
    import gensim

    data = pathlib.Path(gensim.__file__).parent / "test" / "test_data"
    read = lambda name: data.joinpath(name).read_bytes().decode("utf-8", errors="replace")  # noqa: E731
    pang = [
        line.split(" ", 1)[1].strip() for line in read("pang_lee_polarity.cor").splitlines() if line.strip()
    ]
    paragraphs = [p.strip() for p in read("lee.cor").splitlines() if p.strip()]
    background = [p.strip() for p in read("lee_background.cor").splitlines() if p.strip()]
    sentences = [s for p in background for s in re.split(r"(?<=[.!?])\s+", p) if len(s.split()) >= 3]
    texts = pang + paragraphs + sentences
    return texts[:n]
