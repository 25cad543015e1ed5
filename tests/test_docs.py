"""The documentation is true to the code: every Python snippet of README.md and docs/*.md runs offline as
written, every docstring example passes, and every parameter is documented with the default it has.

Snippets are the fenced blocks marked ``python``. A guide's snippets run in order in one namespace (a guide
reads top to bottom); each README snippet runs in a fresh namespace, so the README's examples are
self-contained. All of them run in a temporary working directory, offline (``HF_HUB_OFFLINE=1``), and a
warning that escapes a snippet fails it: what the docs show must run cleanly. A block preceded by the line
``<!-- not run: REASON -->`` is not executed (the reason is required): only for what cannot run here, such
as dask, which is not a dependency.
"""

from __future__ import annotations

import ast
import doctest
import inspect
import os
import pathlib
import re
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md"] + sorted(DOCS.glob("*.md"))

_FENCE = re.compile(r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->$")


def snippets(path: pathlib.Path) -> list[tuple[int, str, str | None]]:
    """``(line, code, reason-not-run or None)`` of every ``python`` fenced block of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        if info.split()[:1] != ["python"]:
            continue
        previous = next((ln.strip() for ln in reversed(lines[:start - 1]) if ln.strip()), "")
        skip = _NOT_RUN.match(previous)
        out.append((start + 1, "\n".join(body) + "\n", skip.group("reason") if skip else None))
    return out


def _run(code: str, namespace: dict, where: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, where, "exec"), namespace)  # noqa: S102 - the docs' own snippets
    shown = [w for w in caught if issubclass(w.category, (UserWarning, RuntimeWarning))
             and not issubclass(w.category, DeprecationWarning)]
    assert not shown, f"{where} emits warnings: " + "; ".join(
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in shown)


@pytest.fixture()
def offline_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return tmp_path


def test_snippets_are_found():
    """The extractor finds the README's examples (one per featurizer) and honours the not-run marker."""
    readme = snippets(ROOT / "README.md")
    assert len(readme) >= 3
    assert all(reason is None for _, _, reason in readme)
    for name in ("ImageFeaturizer", "TextFeaturizer", "WordVectorFeaturizer"):
        assert any(name in code for _, code, _ in readme), name


@pytest.mark.slow  # real offline weights
@pytest.mark.parametrize("path", MARKDOWN, ids=[p.name for p in MARKDOWN])
def test_markdown_snippets_run(path, offline_tmp_cwd):
    blocks = snippets(path)
    shared: dict = {"__name__": "__docs__"}
    for line, code, reason in blocks:
        if reason is not None:
            compile(code, f"{path.name}:{line}", "exec")  # not run here, but still valid Python
            continue
        namespace = {"__name__": "__docs__"} if path.name == "README.md" else shared
        _run(code, namespace, f"{path.name}:{line}")


def _public_objects():
    import skfeaturize
    from skfeaturize import jobs

    names = [n for n in skfeaturize.__all__ if n != "__version__"]
    objs = [getattr(skfeaturize, n) for n in names] + [jobs.embed, jobs.read_embeddings, jobs.EmbedResult]
    return [o for o in objs if inspect.isclass(o) or inspect.isfunction(o)]


@pytest.mark.slow  # real offline weights
def test_docstring_examples_pass(offline_tmp_cwd):
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    for obj in _public_objects():
        for test in finder.find(obj, obj.__qualname__, globs={}):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 15 and result.failed == 0


_PARAM_LINE = re.compile(r"^    (?P<names>[*\w][\w, *]*?) : (?P<type>.+)$")


def documented_parameters(doc: str) -> dict[str, str]:
    """``{name: type line}`` of a numpydoc ``Parameters`` section (class docstrings are indented 4)."""
    doc = inspect.cleandoc(doc)
    m = re.search(r"^Parameters\n-{10,}\n(?P<body>.*?)(?:\n\n[A-Z][A-Za-z ]+\n-{3,}\n|\Z)", doc, re.S | re.M)
    assert m, "no Parameters section"
    out = {}
    for line in ("    " + ln for ln in m.group("body").splitlines()):
        pm = _PARAM_LINE.match(line)
        if pm:
            for name in pm.group("names").split(","):
                out[name.strip()] = pm.group("type")
    return out


def _featurizers():
    from skfeaturize import ImageFeaturizer, TextFeaturizer, WordVectorFeaturizer

    return [ImageFeaturizer, TextFeaturizer, WordVectorFeaturizer]


def same_default(documented: str, value) -> bool:
    """A documented default (``"auto"``, ``1e-3``, ``None``) is the code's value, of the same type."""
    try:
        parsed = ast.literal_eval(documented.strip())
    except (ValueError, SyntaxError):
        return False
    return type(parsed) is type(value) and parsed == value


def _defaults(func) -> dict:
    return {n: p.default for n, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("func", _featurizers() + ["embed", "EmbeddingCache", "list_layers"],
                         ids=lambda f: f if isinstance(f, str) else f.__name__)
def test_every_parameter_is_documented_with_its_default(func):
    import skfeaturize
    from skfeaturize import jobs

    if isinstance(func, str):
        func = getattr(jobs, func, None) or getattr(skfeaturize, func)
    doc = documented_parameters(func.__doc__)
    target = func.__init__ if inspect.isclass(func) else func
    params = [n for n, p in inspect.signature(target).parameters.items() if n != "self"
              and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    missing = [n for n in params if n not in doc]
    assert not missing, f"{func.__name__}: parameters without documentation: {missing}"
    for name, default in _defaults(target).items():
        m = re.search(r"default=(.+)$", doc[name])
        assert m, f"{func.__name__}({name}=...): the docstring gives no default"
        assert same_default(m.group(1), default), \
            f"{func.__name__}({name}=...): documented default {m.group(1)!r}, code {default!r}"


_TABLE_ROW = re.compile(r"^\| `(?P<name>\w+)` \| `(?P<default>[^`]*)` \|")


def guide_parameters(path: pathlib.Path) -> dict[str, str]:
    """``{name: default}`` of the guide's "Parameters" table (rows ``| `name` | `default` | ... |``)."""
    text = path.read_text(encoding="utf-8")
    section = re.search(r"^## Parameters\n(?P<body>.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, f"{path.name} has no '## Parameters' section"
    rows = map(_TABLE_ROW.match, section.group("body").splitlines())
    return {m.group("name"): m.group("default") for m in rows if m}


@pytest.mark.parametrize("guide, index", [("image.md", 0), ("text.md", 1), ("words.md", 2)])
def test_each_guide_lists_every_parameter_with_its_default(guide, index):
    cls = _featurizers()[index]
    table = guide_parameters(DOCS / guide)
    signature = _defaults(cls.__init__)
    assert list(table) == list(signature), f"{guide}: table {list(table)} vs signature {list(signature)}"
    for name, default in signature.items():
        assert same_default(table[name], default), \
            f"{guide}: `{name}` documented as {table[name]!r}, code {default!r}"


def test_install_guide_lists_every_extra():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    text = (DOCS / "install.md").read_text(encoding="utf-8")
    missing = [e for e in extras if f"| `{e}` |" not in text]
    assert not missing, f"docs/install.md does not list the extras {missing}"


def test_sphinx_api_pages_cover_the_public_names():
    import skfeaturize
    from skfeaturize import exceptions

    pages = {p.stem for p in (DOCS / "api").glob("*.rst")}
    wanted = {f"skfeaturize.{n}" for n in skfeaturize.__all__ if n != "__version__"}
    wanted |= {"skfeaturize.jobs.embed", "skfeaturize.jobs.read_embeddings"}
    for name, obj in vars(exceptions).items():
        if inspect.isclass(obj) and obj.__module__ == exceptions.__name__:
            top = name in skfeaturize.__all__
            wanted.add(f"skfeaturize.{name}" if top else f"skfeaturize.exceptions.{name}")
    assert wanted <= pages, f"API pages missing: {sorted(wanted - pages)}"
    assert os.path.isfile(DOCS / "conf.py")
