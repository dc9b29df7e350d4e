"""Sphinx configuration for the releasecache documentation.

Build with ``make docs`` (or ``python -m sphinx -W -b html docs docs/_build/html``).
The build needs no network: no intersphinx, notebooks are not executed.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "src"))

project = "releasecache"
author = "the releasecache authors"
copyright = "the releasecache authors"
try:
    from releasecache import __version__ as release
except Exception:  # the docs still build if the package cannot be imported
    release = "0.1.0"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",  # the pages are Markdown
    "sphinx_click",  # the CLI reference is generated from the click commands
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "**/*.ipynb", "*.ipynb", "README.md", "**/README.md"]

# numpydoc-style docstrings
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": False}
autodoc_mock_imports: list[str] = []

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"releasecache {release}"
html_static_path: list[str] = []

# Pages that other parts of the project add; they join the table of contents
# when they exist, in this order. Any other top-level page is appended too, so
# a new page never breaks the build with "not included in any toctree".
ORDERED_PAGES = [
    "quickstart",
    "how-it-works",
    "clusters",
    "streaming",
    "reproducibility",
    "auditing",
    "migration",
    "performance",
    "reliability",
    "vbn_fixture_and_deviations",
    "cli",
    "api",
]


def _toc() -> str:
    present = {p.relative_to(HERE).with_suffix("").as_posix() for p in HERE.rglob("*")
               if p.suffix in (".md", ".rst") and p.name != "README.md" and "_build" not in p.parts
               and not p.name.startswith(".")} - {"index"}
    pages = [p for p in ORDERED_PAGES if p in present] + sorted(present - set(ORDERED_PAGES))
    toc = "\n```{toctree}\n:maxdepth: 2\n:caption: Contents\n\n" + "\n".join(pages) + "\n```\n"
    notebooks = sorted(p.relative_to(HERE).as_posix() for p in HERE.rglob("*.ipynb")
                       if "_build" not in p.parts and ".ipynb_checkpoints" not in p.parts)
    if notebooks:
        toc += "\n## Tutorial notebooks\n\nDownload and run them in Jupyter (they are not executed by this build):\n\n"
        toc += "\n".join(f"- {{download}}`{Path(nb).name} <{nb}>`" for nb in notebooks) + "\n"
    return toc


def _add_toc(app, docname, source):  # type: ignore[no-untyped-def]
    if docname == "index":
        source[0] = source[0].replace("<!-- toc -->", _toc())


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("source-read", _add_toc)
