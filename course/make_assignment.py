"""Write a student copy of the repository: each chosen exercise's solution replaced by a hint.

    python -m course.make_assignment --out ~/assignment                       # every exercise
    python -m course.make_assignment --out ~/a1 --exercises iql.expectile_loss iql.value_loss

Everything else is copied unchanged. In the copy, each chosen body between `# BEGIN SOLUTION` and
`# END SOLUTION` becomes `raise NotImplementedError("<exercise>: <hint>")`; the function's signature
and docstring (the equation) stay. The copy is written to a hidden folder beside --out and renamed
into place, so an interrupted run leaves nothing behind. Grade it with `python -m course.grade DIR`.
"""

from __future__ import annotations

import os
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


def make_assignment(out: Path, exercises: Optional[list[str]] = None, source: Path = REPO) -> list[str]:
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

    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for rel in _files(source):
            if (source / rel).resolve() == out or out in (source / rel).resolve().parents:
                continue
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = (source / rel).resolve()
            if src in by_file:
                text = cut(src.read_text(), by_file[src])
                compile(text, str(dest), "exec")  # the copy must still parse
                dest.write_text(text)
            else:
                shutil.copy2(src, dest)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return chosen


def main(argv: Optional[list[str]] = None) -> None:
    args = tyro.cli(Args, args=argv)
    try:
        chosen = make_assignment(Path(args.out), args.exercises, Path(args.source))
    except AssignmentError as e:
        sys.exit(f"make_assignment: error: {e}")
    total = sum(EXERCISES[c].points for c in chosen if c in EXERCISES)
    print(f"Wrote the student copy to {args.out}: {len(chosen)} exercise(s), {total} points:")
    for c in chosen:
        print(f"  {c}")
    print(f"Grade it with: python -m course.grade {args.out}")


if __name__ == "__main__":
    main()
