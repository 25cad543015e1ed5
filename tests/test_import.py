import subprocess
import sys


def test_import_does_not_load_heavy_libraries():
    code = (
        "import sys, skfeaturize; "
        "heavy = [m for m in ('torch', 'timm', 'transformers', 'gensim', 'torchvision', "
        "'sentence_transformers') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve_lazily():
    code = (
        "import sys, skfeaturize; f = skfeaturize.ImageFeaturizer('resnet18', weights=None); "
        "print('torch' in sys.modules, type(f).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # constructing a featurizer stores parameters only: still no torch
    assert out.stdout.split() == ["False", "ImageFeaturizer"]


def test_unknown_attribute():
    import pytest

    import skfeaturize

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        skfeaturize.Nope  # noqa: B018


import pytest  # noqa: E402

MISSING_CASES = [
    ("torch", "ImageFeaturizer('resnet18', weights=None).fit([])",
     r"'torch' is required.*skfeaturize\[image\]"),
    ("torch", "TextFeaturizer('x').fit(['a'])", r"'torch' is required.*skfeaturize\[text\]"),
    ("timm", "ImageFeaturizer('timm:test_resnet', weights=None).fit([])", r"'timm' .*skfeaturize\[image\]"),
    ("transformers", "TextFeaturizer('x').fit(['a'])", r"'transformers' .*skfeaturize\[text\]"),
    ("gensim", "WordVectorFeaturizer('glove-wiki-gigaword-50').fit(['a'])",
     r"'gensim' .*skfeaturize\[words\]"),
]


@pytest.mark.parametrize("module,call,message", MISSING_CASES)
def test_a_missing_library_fails_at_first_use_with_the_install_hint(module, call, message):
    block = ("import sys\n"
             "class Block:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             f"        if name.split('.')[0] == {module!r}:\n"
             "            raise ImportError(f'No module named {name!r} (blocked by the test)')\n"
             "sys.meta_path.insert(0, Block())\n")
    code = (block +
            "from skfeaturize import ImageFeaturizer, TextFeaturizer, WordVectorFeaturizer\n"
            "from skfeaturize import MissingDependencyError\n"
            f"try:\n    {call}\nexcept MissingDependencyError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    import re

    assert re.search(message, out.stdout), out.stdout + out.stderr


def test_every_public_error_and_warning_class_lives_in_exceptions():
    import importlib

    for name in ("skfeaturize", "skfeaturize.cache", "skfeaturize.jobs", "skfeaturize.selection",
                 "skfeaturize.image", "skfeaturize.text", "skfeaturize.words"):
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if isinstance(obj, type) and issubclass(obj, (Exception, Warning)):
                assert obj.__module__ == "skfeaturize.exceptions", (name, attr, obj.__module__)
