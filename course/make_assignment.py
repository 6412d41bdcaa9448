"""Write a student copy of the repository: each chosen exercise's solution replaced by a hint.

    python -m course.make_assignment --out ~/assignment                       # every exercise
    python -m course.make_assignment --out ~/a1 --exercises iql.expectile_loss iql.value_loss

In the copy, each chosen body between `# BEGIN SOLUTION` and `# END SOLUTION` becomes
`raise NotImplementedError("<exercise>: <hint>")`; the function's signature and docstring (the equation)
stay. No solution of a chosen exercise stays anywhere else in the copy either:
- a test helper `reference_<function>` in tests/test_<script>.py (a reference solution that stands in for
  the exercise in the checks of the others) calls the student's own function instead;
- a Markdown code span that quotes a line of a chosen solution reads `(cut from the student copy)`.
A solution line that another, unchosen exercise shares is reported (assign both to hide it).
The chosen exercises are recorded in the copy's course/assignment.json, which `python -m course.grade
DIR` reads. Everything else is copied unchanged. The copy is written to a hidden folder beside --out and
renamed into place, so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro

from course.exercises import BEGIN, END, EXERCISES, find_seams

REPO = Path(__file__).resolve().parents[1]
# never copied: local state, caches, data
SKIP = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", "videos", ".ruff_cache"}
RECORD = Path("course") / "assignment.json"  # course/grade.py reads it
CUT = "(cut from the student copy)"


@dataclass
class Args:
    out: str
    """folder to create for the student copy (must not exist yet)"""
    exercises: Optional[list[str]] = None
    """exercises to cut out, e.g. iql.expectile_loss cql (a script stem means all of its); default: all"""
    source: str = str(REPO)
    """the repository to copy (default: this one)"""


class AssignmentError(ValueError):
    pass


def _files(source: Path) -> list[Path]:
    """The repository's files: git's list when it is a git checkout, else every file outside SKIP."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=source, check=True,
                             capture_output=True, text=True).stdout
        files = [Path(p) for p in out.splitlines()]
    except (OSError, subprocess.CalledProcessError):
        files = [p.relative_to(source) for p in source.rglob("*") if p.is_file()]
    return sorted(p for p in files if not SKIP.intersection(p.parts) and (source / p).is_file())


def choose(names: Optional[list[str]], available: list[str]) -> list[str]:
    if not names:
        return available
    chosen = []
    for name in names:
        match = [a for a in available if a == name or a.split(".")[0] == name]
        if not match:
            raise AssignmentError(f"unknown exercise {name!r}; the exercises are: {', '.join(available)}")
        chosen += [m for m in match if m not in chosen]
    return chosen


def stub(name: str, indent: str) -> str:
    hint = EXERCISES[name].hint if name in EXERCISES else "see the docstring"
    return f"{indent}raise NotImplementedError({f'{name}: {hint}'!r})\n"


def cut(text: str, seams) -> str:
    """`text` with each seam's body (the lines strictly between its markers) replaced by its stub."""
    lines = text.splitlines(keepends=True)
    for seam in sorted(seams, key=lambda s: -s.begin):  # from the bottom, so line numbers hold
        lines[seam.begin: seam.end - 1] = [stub(seam.name, seam.indent)]
    return "".join(lines)


def solution_lines(seam) -> list[str]:
    """The lines of a solution that give it away: code, not comments, long enough to be more than `return x`."""
    body = seam.path.read_text().splitlines()[seam.begin:seam.end - 1]
    return [ln.strip() for ln in body if len(ln.strip()) >= 16 and not ln.strip().startswith("#")]


def cut_references(text: str, stem: str, chosen_functions: set) -> str:
    """A test file's `reference_<function>` helpers of chosen exercises, their bodies replaced by a call
    to the student's function, fetched when the test module is imported (before any monkeypatch)."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    for node in sorted(tree.body, key=lambda n: -n.lineno):
        if not (isinstance(node, ast.FunctionDef) and node.name.startswith("reference_")):
            continue
        function = node.name[len("reference_"):]
        if function not in chosen_functions:
            continue
        first = node.body[0]
        keep = first.end_lineno if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None),
                                                                              ast.Constant) else node.body[0].lineno - 1
        a = node.args
        call = [p.arg for p in a.posonlyargs + a.args] + ([f"*{a.vararg.arg}"] if a.vararg else []) + \
            [f"{p.arg}={p.arg}" for p in a.kwonlyargs] + ([f"**{a.kwarg.arg}"] if a.kwarg else [])
        indent = " " * first.col_offset
        body = [f"{indent}# {CUT[1:-1]}: the student's own {stem}.{function} stands in for the reference\n",
                f"{indent}return _student_{function}({', '.join(call)})\n",
                "\n\n",
                f"_student_{function} = __import__({stem!r}).{function}\n"]
        lines[keep:node.end_lineno] = body
    return "".join(lines)


def cut_quotes(text: str, solution: list[str]) -> str:
    """Markdown: each code span that holds a line of a chosen solution, replaced by CUT."""
    def span(m):
        code = m.group(1)
        return f"`{CUT}`" if any(line in code or (len(code) >= 16 and code in line) for line in solution) \
            else m.group(0)
    return re.sub(r"`([^`\n]+)`", span, text)


def make_assignment(out: Path, exercises: Optional[list[str]] = None, source: Path = REPO) -> list[str]:
    return make_assignment_with_notes(out, exercises, source)[0]


def make_assignment_with_notes(out: Path, exercises: Optional[list[str]] = None,
                               source: Path = REPO) -> tuple[list[str], list[str]]:
    """Write the copy; return the chosen exercises and notes on solution lines that stay in the copy."""
    source, out = Path(source).resolve(), Path(out).resolve()
    if out.exists():
        raise AssignmentError(f"{out} exists; choose a new folder (nothing was written)")
    seams = find_seams(source)
    if not seams:
        raise AssignmentError(f"no {BEGIN} blocks in the scripts under {source}")
    chosen = choose(exercises, [s.name for s in seams])
    by_file: dict[Path, list] = {}
    for seam in seams:
        if seam.name in chosen:
            by_file.setdefault(seam.path.resolve(), []).append(seam)
    solution = {s.name: solution_lines(s) for s in seams if s.name in chosen}
    quoted = [line for lines in solution.values() for line in lines]
    functions: dict[str, set] = {}  # script stem -> chosen functions
    for name in chosen:
        stem, function = name.split(".", 1)
        functions.setdefault(stem, set()).add(function)

    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    notes = []
    try:
        for rel in _files(source):
            if (source / rel).resolve() == out or out in (source / rel).resolve().parents:
                continue
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = (source / rel).resolve()
            if src in by_file:
                text = cut(src.read_text(), by_file[src])
            elif rel.parts[0] == "tests" and rel.suffix == ".py" and rel.stem.startswith("test_") \
                    and rel.stem[5:] in functions:
                text = cut_references(src.read_text(), rel.stem[5:], functions[rel.stem[5:]])
            elif rel.suffix == ".md":
                text = cut_quotes(src.read_text(), quoted)
            else:
                shutil.copy2(src, dest)
                continue
            if rel.suffix == ".py":
                compile(text, str(dest), "exec")  # the copy must still parse
            dest.write_text(text)
            shutil.copystat(src, dest)
        record = {"exercises": chosen, "points": sum(EXERCISES[c].points for c in chosen if c in EXERCISES),
                  "made_by": "python -m course.make_assignment", "source_commit": _commit(source)}
        (staging / RECORD).parent.mkdir(parents=True, exist_ok=True)
        (staging / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        notes = leaks(staging, [s for s in seams if s.name in chosen])
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return chosen, notes


def _commit(source: Path) -> Optional[str]:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, check=True, capture_output=True,
                              text=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def leaks(copy: Path, chosen_seams) -> list[str]:
    """Where a line of a chosen solution still stands in `copy` (after the cuts): inside an exercise that
    was not chosen, or anywhere else. Notes for the teacher."""
    in_copy = find_seams(copy)
    found = []
    for path in sorted(copy.rglob("*")):
        if not path.is_file() or path.suffix not in (".py", ".md", ".txt", ".yml", ".yaml", ".json", ".ipynb"):
            continue
        text = path.read_text(errors="replace")
        lines = text.splitlines()
        for seam in chosen_seams:
            for line in solution_lines(seam):
                if line in text:
                    where = next((s.name for s in in_copy if s.path == path
                                  and line in "\n".join(lines[s.begin:s.end - 1])), None)
                    found.append(f"{path.relative_to(copy)} holds `{line}` of {seam.name}'s solution"
                                 + (f" (in {where}, not assigned: assign it too to hide it)" if where else ""))
    return found


def main(argv: Optional[list[str]] = None) -> None:
    args = tyro.cli(Args, args=argv)
    try:
        chosen, notes = make_assignment_with_notes(Path(args.out), args.exercises, Path(args.source))
    except AssignmentError as e:
        sys.exit(f"make_assignment: error: {e}")
    total = sum(EXERCISES[c].points for c in chosen if c in EXERCISES)
    out = Path(args.out).resolve()
    print(f"Wrote the student copy to {out}: {len(chosen)} exercise(s), {total} points:")
    for c in chosen:
        print(f"  {c}")
    for note in notes:
        print(f"note: {note}")
    print(f"The copy records them in {out / RECORD}. Grade a copy from this repository with:")
    print(f"  python -m course.grade STUDENT_COPY --assignment {out / RECORD}")
    print(f"(or `python -m course.grade {out}`: the grader reads the record a copy carries, which a student "
          f"can edit; the same as --exercises {' '.join(chosen)})")


if __name__ == "__main__":
    main()
