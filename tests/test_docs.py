"""The docs' equation-to-code tables cite line numbers; this keeps them true. Each row of a
"From equation to code" table that cites `line N` or `lines A-B` must also name, in backticks, code
found on those lines (a function, a variable, a call), so a row whose lines moved fails here."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs").glob("*.md"))
LINE_REF = re.compile(r"\blines? (\d+)(?:\s*[-–]\s*(\d+))?")


def _table_rows(page: Path):
    """(script, row text) for each row of the page's "From equation to code" tables."""
    text = page.read_text()
    section = re.search(r"^## From equation to code\n(.*?)(?=^## )", text + "\n## ", flags=re.M | re.S)
    if not section:
        return []
    rows = []
    script = None
    for line in section.group(1).splitlines():
        header = re.match(r"\|[^|]*\|\s*`([\w./]+\.py)`", line)
        if header:
            script = header.group(1)
            continue
        if line.startswith("|") and not set(line) <= set("|- :") and script:
            rows.append((script, line))
    return rows


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


CASES = [(page.name, script, row) for page in PAGES for script, row in _table_rows(page)]


def test_every_algorithm_page_has_a_checked_table():
    pages = {name for name, _, _ in CASES}
    for page in PAGES:
        if page.name in {"bc.md", "cql.md", "bcq.md", "iql.md", "decision_transformer.md"}:
            assert page.name in pages, f"docs/{page.name} has no 'From equation to code' table"


@pytest.mark.parametrize("page, script, row", CASES)
def test_cited_lines_hold_the_named_code(page, script, row):
    code_cell = _cells(row)[-1]
    refs = LINE_REF.findall(code_cell)
    if not refs:
        return
    names = re.findall(r"`([^`]+)`", code_cell)
    assert names, f"docs/{page}: a row cites lines of {script} but names no code in backticks: {row}"
    lines = (REPO / script).read_text().splitlines()
    for a, b in refs:
        a, b = int(a), int(b or a)
        assert 1 <= a <= b <= len(lines), f"docs/{page}: lines {a}-{b} are outside {script}: {row}"
        held = "\n".join(lines[a - 1:b])
        assert any(n in held or n.split("(")[0] in held for n in names), (
            f"docs/{page}: {script} lines {a}-{b} hold none of {names} (have the lines moved?): {row}\n{held}")


def test_relink_moves_references_with_their_lines():
    import sys

    sys.path.insert(0, str(REPO / "docs"))
    import relink

    old = ["a", "b", "c", "d"]
    new = ["a", "new 1", "new 2", "b", "c", "d changed"]
    mapping = relink.line_map(old, new)
    assert mapping == {1: 1, 2: 4, 3: 5}, mapping
    page = ("## From equation to code\n\n| term | `x.py` |\n| --- | --- |\n"
            "| t | `b`, line 2; `c`, lines 2-3 |\n| u | `d`, line 4 |\n\n## Next\n| v | line 2 |\n")
    problems = []
    out = relink.relink_page(page, {"x.py": mapping}, problems, "p.md")
    assert "| t | `b`, line 4; `c`, lines 4-5 |" in out, out
    assert "| u | `d`, line 4 |" in out and len(problems) == 1, "a changed line must be reported, not moved"
    assert "| v | line 2 |" in out, "only the equation-to-code tables are renumbered"


# The common layout of an algorithm page (CleanRL's pages are the model): a title, one short paragraph
# with the paper, then exactly these sections in this order (### subsections inside them are free).
LAYOUT = ["The idea", "The objective", "From equation to code", "Usage", "Logged metrics",
          "Implementation details", "Results", "References"]
SCRIPTS = sorted(p.stem for p in REPO.glob("*.py"))


def _sections(text: str) -> tuple[list[str], dict[str, str], str]:
    """The page's `## ` headings in order, each section's text, and the text before the first one;
    lines inside code fences are never headings."""
    headings, bodies, current, fenced, preamble = [], {}, None, False, []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            current = line[3:].strip()
            headings.append(current)
            bodies[current] = ""
            continue
        if current is None:
            preamble.append(line)
        else:
            bodies[current] += line + "\n"
    return headings, bodies, "\n".join(preamble)


def layout_problems(name: str, text: str) -> list[str]:
    script = name.removesuffix(".md") + ".py"
    headings, bodies, preamble = _sections(text)
    found = []
    if not text.startswith("# "):
        found.append("the page must open with its `# ` title")
    if headings != LAYOUT:
        found.append(f"its `##` sections are {headings}; the layout is {LAYOUT} (speed and profiling go to "
                     "docs/benchmarks.md, other sections become `###` subsections of these)")
    intro = [line for line in preamble.splitlines()[1:] if line.strip()]
    if not intro or "arxiv.org" not in " ".join(intro) or any(line.startswith(("#", "```")) for line in intro):
        found.append("under the title: one short paragraph with the paper and its arXiv link, no heading, no code")
    if "From equation to code" in bodies and f"`{script}`" not in bodies["From equation to code"].split("\n|")[0] + \
            "".join(line for line in bodies["From equation to code"].splitlines() if line.startswith("|")):
        found.append(f"'From equation to code' needs a table whose header names `{script}`")
    if "Usage" in bodies and not re.search(rf"```bash\n(?:.*\n)*?python {re.escape(script)}", bodies["Usage"]):
        found.append(f"'Usage' needs a ```bash block with the default run, `python {script}`")
    if "References" in bodies and "](http" not in bodies["References"] and "<http" not in bodies["References"]:
        found.append("'References' needs the papers, with links")
    return found


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_algorithm_page_has_the_common_layout(script):
    page = REPO / "docs" / f"{script}.md"
    assert page.exists(), f"{script}.py has no page docs/{script}.md"
    problems = layout_problems(page.name, page.read_text())
    assert not problems, f"docs/{page.name}: " + "; ".join(problems)


def test_the_layout_check_catches_a_page_out_of_order():
    good = (REPO / "docs" / "bc.md").read_text()
    assert layout_problems("bc.md", good) == []
    swapped = good.replace("## Usage\n", "## Speed\n", 1)
    assert any("layout is" in p for p in layout_problems("bc.md", swapped))
    no_paper = good.replace("arxiv.org", "example.org")
    assert any("arXiv" in p for p in layout_problems("bc.md", no_paper))
    no_run = good.replace("python bc.py", "python other.py")
    assert any("default run" in p for p in layout_problems("bc.md", no_run))


def test_no_page_cites_an_article_readers_do_not_have():
    """Readers have the papers, not our tutorial: a claim cites a paper, or is ours beside its run."""
    pages = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md", *sorted((REPO / "benchmarks" / "results").glob("*.md"))]
    found = [f"{p.relative_to(REPO)}:{n}: {line.strip()}" for p in pages
             for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bthe article\b", line, re.I)]
    assert not found, "cite the paper (authors, year, arXiv) instead of 'the article':\n" + "\n".join(found)
