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
