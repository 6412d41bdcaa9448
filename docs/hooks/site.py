"""MkDocs hooks of the docs site (mkdocs.yml): MathJax served from the site.

MathJax 3 comes from the django-static-mathjax package (requirements.txt), which ships MathJax's
browser build; its combined component `tex-chtml.js`, the CommonHTML fonts it loads and the TeX
extensions it autoloads are added to the site under assets/mathjax/, so that the built site renders
its maths with no network (and nothing of MathJax is committed here)."""

from __future__ import annotations

from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File


# MathJax's files the site serves, relative to MathJax's es5/ folder
MATHJAX = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions")
MATHJAX_DEST = "assets/mathjax"


def mathjax_root() -> Path:
    try:
        import mathjax  # django-static-mathjax: MathJax's repository under mathjax/static/mathjax
    except ImportError:
        raise PluginError("MathJax is missing: pip install -r requirements.txt (django-static-mathjax)") from None
    root = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (root / "tex-chtml.js").is_file():
        raise PluginError(f"no MathJax browser build at {root} (is the `mathjax` module django-static-mathjax's?)")
    return root


def on_files(files, config):
    root = mathjax_root()
    for entry in MATHJAX:
        paths = [root / entry] if (root / entry).is_file() else sorted(p for p in (root / entry).rglob("*") if p.is_file())
        for path in paths:
            uri = f"{MATHJAX_DEST}/{path.relative_to(root).as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_post_build(config):
    # the site's front page is the overview (its file keeps the name the GitHub links use)
    index = Path(config.site_dir) / "index.html"
    if not index.exists():
        index.write_text('<!doctype html><meta charset="utf-8"><title>Overview</title>'
                         '<meta http-equiv="refresh" content="0; url=overview.html">'
                         '<a href="overview.html">Overview</a>\n')
