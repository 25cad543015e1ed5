"""Sphinx configuration: the guides (Markdown, read by MyST) and the API reference (numpydoc docstrings).

Why Sphinx + numpydoc + MyST: scikit-learn, SciPy, NumPy, pandas and scikit-image, the libraries whose
users skfeaturize serves, document their APIs this way. Docstrings follow the numpydoc standard, so the
``Parameters`` sections read the same in ``help()``, in an IDE and on this site; MyST lets the guides stay
plain Markdown that GitHub renders as well. Build with ``make docs`` (warnings are errors).
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # document this checkout's skfeaturize

import skfeaturize  # noqa: E402

project = "skfeaturize"
copyright = "skfeaturize developers"
author = "skfeaturize developers"
release = skfeaturize.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# -- autodoc + numpydoc --------------------------------------------------------------------------------
autodoc_typehints = "none"  # the types are in the numpydoc Parameters sections
autodoc_member_order = "bysource"
autodoc_default_options: dict = {}
numpydoc_show_class_members = False  # members are listed explicitly on each API page
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# numpydoc's own checks, reported as build warnings (hence errors under -W): every parameter of the
# signature is documented (PR01), none that is not (PR02), and each has a type (PR04) and a description (PR07)
numpydoc_validation_checks = {"PR01", "PR02", "PR04", "PR07"}
numpydoc_validation_exclude = {
    r"\.__init__$",
    r"\.fit_transform$",  # scikit-learn's own docstring (TransformerMixin)
    r"\.set_output$",
    r"\.get_params$",
    r"\.set_params$",
}

# -- MyST (the Markdown guides) ---------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3  # `[text](cache.md#what-a-key-is)` links resolve

# -- HTML ----------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skfeaturize {release}"
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path: list[str] = []
