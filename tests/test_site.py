"""The docs as a site (mkdocs.yml, Material for MkDocs): `mkdocs build --strict` passes (broken links,
unknown anchors, missing images and pages left out of the nav fail it); the built pages fetch nothing
from the network; and in a real browser, headless Chromium, every formula typesets without a MathJax
error and every image loads. The same Markdown is read on GitHub, so the patterns that GitHub's maths
or Python-Markdown's lists mishandle are refused here too.

The browser test needs Debian's `chromium` (`.ci/run` installs it); without it that test is skipped.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--allow-file-access-from-files"]


def build(dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(dest)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=_env())


def _env():
    import os

    return {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    dest = tmp_path_factory.mktemp("site") / "site"
    done = build(dest)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert done.returncode == 0, "`mkdocs build --strict` failed:\n" + "\n".join(problems or [done.stderr[-3000:]])
    return dest


def test_site_builds_strictly_with_every_page(site):
    for page in PAGES:
        assert (site / page.with_suffix(".html").name).is_file(), f"docs/{page.name} has no page in the built site"
    assert (site / "index.html").is_file() and "overview.html" in (site / "index.html").read_text()
    assert (site / "assets" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not served from the site"


def test_nav_lists_every_page_in_the_overviews_order():
    import yaml

    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]

    def flatten(items):
        for item in items:
            (title, value), = item.items()
            yield from flatten(value) if isinstance(value, list) else [value]

    order = list(flatten(nav))
    missing = [p.name for p in PAGES if p.name not in order]
    assert not missing, f"pages missing from mkdocs.yml's nav: {missing}"
    assert order[0] == "overview.md" and order[-5:] == ["datasets.md", "results.md", "teaching.md", "benchmarks.md",
                                                         "sweeps.md"], order


def test_the_built_pages_fetch_nothing_from_the_network(site):
    external = re.compile(r"""<(?:script|img|iframe)\b[^>]*\bsrc=["']?(?:https?:)?//|<link\b[^>]*\bhref=["']?(?:https?:)?//""")
    assert external.findall('<script src="https://cdn.example.org/mathjax.js">') and \
        external.findall("<link rel=stylesheet href='//fonts.example.org/css'>") and \
        not external.findall('<script src="assets/mathjax/tex-chtml.js">')
    for html in sorted(site.glob("*.html")):
        hits = external.findall(html.read_text())
        assert not hits, f"{html.name} loads from the network: {hits[:3]}"


# ---------------------------------------------------------------------------------------------------
# In the browser

CHECK = """<!doctype html><html><body><pre id="result">pending</pre><script>
const pages = %s;
async function check(name) {
  const frame = document.createElement("iframe");
  frame.style.width = "1200px"; frame.style.height = "900px";
  document.body.appendChild(frame);
  await new Promise(done => { frame.onload = done; frame.src = name; });
  const w = frame.contentWindow, d = frame.contentDocument, out = {page: name};
  if (!(w.MathJax && w.MathJax.startup && w.MathJax.startup.promise)) { out.error = "MathJax did not load"; return out; }
  await w.MathJax.startup.promise;
  const spans = [...d.querySelectorAll(".arithmatex")];
  out.spans = spans.length;
  out.typeset = d.querySelectorAll("mjx-container").length;
  out.untypeset = spans.filter(s => !s.querySelector("mjx-container")).map(s => s.textContent.slice(0, 80));
  out.errors = [...d.querySelectorAll("mjx-merror")].map(e => e.getAttribute("data-mjx-error") || e.textContent);
  out.broken_images = [...d.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  frame.remove();
  return out;
}
(async () => {
  const results = [];
  for (const p of pages) { try { results.push(await check(p)); } catch (e) { results.push({page: p, error: String(e)}); } }
  document.getElementById("result").textContent = JSON.stringify(results);
})();
</script></body></html>
"""


def browse(site: Path, pages: list[str], profiles: Path) -> dict[str, dict]:
    """Open each page of the built site in headless Chromium (in an iframe of a checking page; one
    browser per page, two at a time), wait for MathJax to finish, and return per page: its maths spans,
    how many typeset, the ones left as text, MathJax's error messages, and the images that did not load."""
    import html
    from concurrent.futures import ThreadPoolExecutor

    def one(page: str) -> dict:
        checker = site / f"_check_{page}"
        checker.write_text(CHECK % json.dumps([page]))
        try:
            done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profiles / page}", "--virtual-time-budget=30000",
                                   "--dump-dom", checker.as_uri()], capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            return {"page": page, "error": "Chromium did not finish the page within 180 s"}
        found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
        if not (found and found.group(1) != "pending"):
            return {"page": page, "error": f"Chromium gave no result (exit {done.returncode}): {done.stderr[-500:]}"}
        return json.loads(html.unescape(found.group(1)))[0]

    with ThreadPoolExecutor(2) as pool:
        return {r["page"]: r for r in pool.map(one, pages)}


def plant(site: Path) -> str:
    """A copy of the overview with a formula MathJax cannot parse, an undefined macro and a missing image."""
    text = (site / "overview.html").read_text()
    i = text.index("<h2")
    bad = ('<p><span class="arithmatex">\\(\\frac{1}\\)</span> <span class="arithmatex">\\(\\notamacro x\\)</span> '
           '<span class="arithmatex">\\(\\frac{1}{\\)</span> <img src="img/no-such-figure.png" alt="missing"></p>')
    (site / "_planted.html").write_text(text[:i] + bad + text[i:])
    return "_planted.html"


def problems(result: dict) -> list[str]:
    out = [result["error"]] if "error" in result else []
    out += [f"maths error: {e}" for e in result.get("errors", [])]
    out += [f"maths left as text: {t}" for t in result.get("untypeset", [])]
    out += [f"image did not load: {src}" for src in result.get("broken_images", [])]
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium; .ci/run does)")
def test_every_page_typesets_its_maths_and_loads_its_images_in_chromium(site, tmp_path):
    pages = sorted(p.name for p in site.glob("*.html") if p.name not in {"404.html", "index.html"})
    results = browse(site, pages + [plant(site)], tmp_path)
    # the check itself: the planted page must show each planted fault
    planted = problems(results.pop("_planted.html"))
    for fault in ("Missing argument for \\frac", "Undefined control sequence \\notamacro", "\\frac{1}{",
                  "img/no-such-figure.png"):
        assert any(fault in p for p in planted), f"the browser check missed a planted fault ({fault}): {planted}"
    bad = {page: problems(r) for page, r in results.items() if problems(r)}
    assert not bad, "pages that do not render cleanly in Chromium:\n" + "\n".join(
        f"  {page}: {p}" for page, ps in bad.items() for p in ps[:10])
    for page in pages:
        md = DOCS / page.replace(".html", ".md")
        has_maths = md.exists() and any(INLINE_MATH.search(line) or line.startswith("$$")
                                        for _, line in _prose(md.read_text()))
        if has_maths:
            assert results[page]["typeset"] >= results[page]["spans"] > 0, f"{page}: no maths typeset: {results[page]}"


# ---------------------------------------------------------------------------------------------------
# Markdown that renders alike on GitHub and on the site

def _prose(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans blanked."""
    out, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append((n, ""))
            continue
        out.append((n, "" if fenced else re.sub(r"`[^`]*`", "``", line)))
    return out


INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)(?=\S)(.+?)(?<=\S)(?<!\\)\$(?!\$)")
# (pattern inside $...$, why GitHub mishandles it, what to write)
MATH_PATTERNS = [
    (r"\\[{}]", "GitHub reads \\{ and \\} as Markdown escapes and the braces vanish", "\\lbrace ... \\rbrace"),
    (r"\\#", "GitHub reads \\# as a Markdown escape", "\\sharp, or words"),
    (r"\\[,;:!]", "GitHub reads an inline \\, \\; \\: or \\! as an escaped punctuation mark",
     "\\thinspace, \\quad, or nothing"),
]


def lint(name: str, text: str) -> list[str]:
    found = []
    lines = _prose(text)
    in_list, prev_blank, in_display = False, True, False
    for i, (n, line) in enumerate(lines):
        where = f"{name}:{n}"
        for m in INLINE_MATH.finditer(line):
            body = m.group(1)
            for pattern, why, fix in MATH_PATTERNS:
                if re.search(pattern, body):
                    found.append(f"{where}: ${body}$: {why}; write {fix}")
            if line.lstrip().startswith("|") and "|" in body:
                found.append(f"{where}: ${body}$: a | inside maths splits the table row; write \\lvert, \\rvert or \\mid")
        if line.startswith("#") and INLINE_MATH.search(line):
            found.append(f"{where}: maths in a heading: the site's table of contents shows it as TeX source; "
                         "write the symbol's name (alpha)")
        if any("$" in m.group(1) for m in re.finditer(r"\*\*(.+?)\*\*", line)):
            found.append(f"{where}: maths inside **bold**: GitHub does not render it; take the maths out of the bold")
        if line.strip().startswith("$$") and not in_display:
            if i > 0 and lines[i - 1][1].strip():
                found.append(f"{where}: a $$ display needs a blank line before it (the site reads it as text otherwise)")
            in_display = line.strip() == "$$" or line.strip().count("$$") == 1
            continue
        if in_display:
            in_display = not line.strip().endswith("$$")
            continue
        # Python-Markdown's list items: -, * or + and "N." (not "N)"); on GitHub a list may interrupt a
        # paragraph (an ordered one only from 1), on the site it may not
        item = re.match(r"^( *)([-*+]|\d+\.) ", line)
        if item and not line.lstrip().startswith("|"):
            interrupts = item.group(2) in "-*+" or item.group(2) == "1."
            if not prev_blank and not in_list and interrupts:
                found.append(f"{where}: a list right under a paragraph line: the site reads it as text; "
                             "put a blank line before the list")
            if in_list and 0 < len(item.group(1)) < 4:
                found.append(f"{where}: a nested list item indented {len(item.group(1))} spaces: the site needs 4")
            in_list = True
        elif line.strip() and prev_blank and not line.startswith(" "):
            in_list = False
        prev_blank = not line.strip()
    return found


def test_markdown_renders_alike_on_github_and_the_site():
    found = [p for page in [*PAGES, REPO / "README.md"] for p in lint(page.name, page.read_text())]
    assert not found, f"{len(found)} pattern(s) that GitHub or the site renders wrong:\n" + "\n".join(found[:60])


def test_the_lint_catches_each_pattern():
    bad = {
        "$\\{x\\}$": "\\lbrace", "$a \\# b$": "\\sharp", "$a\\,b$": "escaped punctuation",
        "$a\\;b$": "escaped punctuation", "**the $Q$ value**": "bold", "**a** and $x$ **b $y$**": "bold",
        "| $\\lvert x | y$ | 1 |": "splits the table", "text\n$$x$$": "blank line before",
        "a paragraph\n- an item": "list right under", "### Choosing $\\alpha$": "heading",
        "- item\n  - nested": "indented 2 spaces",
    }
    for text, message in bad.items():
        assert any(message in p for p in lint("t.md", text + "\n")), f"not caught: {text!r}"
    good = ("**a** and $x$ **b**\na $x_1$ and $\\lbrace a \\rbrace$\n\n$$\nQ(s,a)\n$$\n\n- item\n    - nested\n\n"
            "| a | $\\lvert x\\rvert$ |\n`$\\{$`\n")
    assert lint("t.md", good) == [], lint("t.md", good)


MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|home|root|Users|mnt|scratch)/[\w./-]*")


def machine_paths(name: str, text: str) -> list[str]:
    """Absolute paths of one machine in a page's commands and code: a reader cannot paste them."""
    return [f"{name}:{n}: {m.group()}" for n, line in enumerate(text.splitlines(), 1)
            for m in MACHINE_PATH.finditer(line)]


def test_commands_hold_no_absolute_machine_paths():
    found = [p for page in [*PAGES, REPO / "README.md"] for p in machine_paths(page.name, page.read_text())]
    assert not found, "commands a reader cannot paste (use a relative folder, e.g. sweeps/<name>):\n" + "\n".join(found[:30])
    assert machine_paths("t.md", "python -m benchmarks.report --collect /work/sweeps/hopper") and \
        not machine_paths("t.md", "python -m benchmarks.report --collect sweeps/hopper; see https://x.org/work/a")
