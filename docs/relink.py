"""Renumber the line references of the docs' "From equation to code" tables after a script changed.

    python docs/relink.py [--base HEAD] [PAGE ...]     (default: every page under docs/)

Each cited line of a script is looked up in the script as it was at `--base` (a git revision) and
moved to where that same line stands in the working copy; a cited line that was deleted or rewritten
is reported for a person to fix. tests/test_docs.py checks the result.
"""

import argparse
import difflib
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINE_REF = re.compile(r"\b(lines? )(\d+)(?:(\s*[-–]\s*)(\d+))?")
HEADER = re.compile(r"\|[^|]*\|\s*`([\w./]+\.py)`")


def line_map(old: list[str], new: list[str]) -> dict[int, int]:
    """Old line number -> new line number, for the lines the two versions share (1-based)."""
    mapping = {}
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            mapping[a + k + 1] = b + k + 1
    return mapping


def relink_page(text: str, maps: dict, problems: list, page: str) -> str:
    out, script, in_table = [], None, False
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            in_table, script = line.strip() == "## From equation to code", None
        header = HEADER.match(line)
        if in_table and header:
            script = header.group(1)
        elif in_table and script in maps and line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)
            mapping = maps[script]

            def move(m):
                a = int(m.group(2))
                b = int(m.group(4)) if m.group(4) else None
                if a not in mapping or (b is not None and b not in mapping):
                    problems.append(f"{page}: {script} line {a if a not in mapping else b} was changed: {line.strip()}")
                    return m.group(0)
                text = f"{m.group(1)}{mapping[a]}"
                return text + (f"{m.group(3)}{mapping[b]}" if b is not None else "")

            cells[-2] = LINE_REF.sub(move, cells[-2])  # the code cell is the last one
            line = "|".join(cells)
        out.append(line)
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the git revision the references were written against")
    parser.add_argument("pages", nargs="*", type=Path, help="the pages to renumber (default: all)")
    args = parser.parse_args()
    maps = {}
    for script in sorted(REPO.glob("*.py")):
        old = subprocess.run(["git", "show", f"{args.base}:{script.name}"], cwd=REPO, capture_output=True, text=True)
        if old.returncode == 0:
            maps[script.name] = line_map(old.stdout.splitlines(), script.read_text().splitlines())
    problems = []
    for page in args.pages or sorted((REPO / "docs").glob("*.md")):
        text = page.read_text()
        new = relink_page(text, maps, problems, page.name)
        if new != text:
            page.write_text(new)
            print(f"renumbered {page}")
    for problem in problems:
        print("check by hand:", problem)


if __name__ == "__main__":
    main()
