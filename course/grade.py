"""Grade the scripts in a folder (a student's copy made by course/make_assignment.py).

    python -m course.grade DIR                  # a table of exercises, points and the first failing check
    python -m course.grade DIR --json out.json  # the same for an autograding platform

The checks are this repository's own tests marked `@pytest.mark.exercise(...)`, run against DIR's
scripts (OFFLINE_RL_ROOT=DIR); an exercise earns its points when all its checks pass. Then, for each
script whose exercises all pass, its short learning check runs: it is reported, not scored, so that a
wrong solution costs its own exercise's points and no others. Exit status 0 whenever grading ran,
whatever the score; 2 when it could not run (no such folder, no scripts, pytest broke).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro

from course.exercises import EXERCISES, SCRIPTS, find_seams

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


@dataclass
class Args:
    dir: tyro.conf.Positional[str]
    """the folder holding the scripts to grade (a student's copy)"""
    json: Optional[str] = None
    """also write the result as JSON to this file"""
    exercises: Optional[list[str]] = None
    """grade only these exercises (names, or script stems such as iql); default: every exercise"""
    skip_learning: bool = False
    """do not run the learning checks"""


class GradeError(RuntimeError):
    pass


def _run_checks(root: Path, marker: str, exercises: list[str], learning: Optional[list[str]] = None) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        results = Path(tmp) / "results.json"
        env = dict(os.environ, OFFLINE_RL_ROOT=str(root), COURSE_RESULTS=str(results), OMP_NUM_THREADS="1",
                   PYTHONDONTWRITEBYTECODE="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env["COURSE_EXERCISES"] = ",".join(exercises)
        if learning is not None:
            env["COURSE_LEARNING"] = ",".join(learning)
        cmd = [sys.executable, "-m", "pytest", str(TESTS), "-m", marker, "-p", "course._pytest_plugin",
               "-p", "no:cacheprovider", "-q", "--no-header", "-rN", "--tb=no"]
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        # pytest: 0 all passed, 1 some failed, 5 none collected; anything else is a broken run
        if proc.returncode not in (0, 1, 5) or not results.exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise GradeError(f"the checks could not run (pytest exit {proc.returncode}):\n{tail}")
        return json.loads(results.read_text())


def _plain(message: str) -> str:
    """The failure as a student reads it: NotImplementedError means not written yet."""
    for prefix in ("AssertionError: ", "NotImplementedError: "):
        if message.startswith(prefix):
            message = ("not implemented yet (" + message[len(prefix):] + ")") if prefix.startswith("Not") \
                else message[len(prefix):]
    return message if len(message) <= 300 else message[:297] + "..."


def grade(root: Path, exercises: Optional[list[str]] = None, learning: bool = True) -> dict:
    root = Path(root).resolve()
    if not root.is_dir():
        raise GradeError(f"{root} is not a folder")
    if not any((root / s).is_file() for s in SCRIPTS):
        raise GradeError(f"no algorithm scripts ({', '.join(SCRIPTS)}) in {root}")
    # the exercises are the teacher's (this repository's), whatever the student's copy says
    names = [s.name for s in find_seams(REPO)]
    if exercises:
        names = [n for n in names if n in exercises or n.split(".")[0] in exercises]
        if not names:
            raise GradeError(f"no exercise matches {exercises}")
    t0 = time.time()
    records = _run_checks(root, "exercise", names)
    rows = []
    for name in names:
        mine = [r for r in records if name in r["exercises"]]
        failed = [r for r in mine if r["outcome"] != "passed"]
        if not mine:
            raise GradeError(f"exercise {name} has no check in {TESTS}: the teacher's tests are incomplete")
        points = EXERCISES[name].points if name in EXERCISES else 1
        rows.append({"exercise": name, "points": points, "earned": 0 if failed else points,
                     "passed": not failed, "checks": len(mine), "checks_passed": len(mine) - len(failed),
                     "first_failure": _plain(failed[0]["message"]) if failed else None})
    scripts = sorted({n.split(".")[0] for n in names})
    learning_rows = []
    ready = [s for s in scripts if all(r["passed"] for r in rows if r["exercise"].split(".")[0] == s)]
    ran = _run_checks(root, "learning", names, learning=ready) if learning and ready else []
    for s in scripts:
        mine = [r for r in ran if s in r["learning"]]
        if not learning:
            status, why = "skipped", "--skip-learning"
        elif s not in ready:
            status, why = "not run", "some of its exercises fail"
        elif not mine:
            status, why = "none", "no learning check for this script"
        else:
            bad = [r for r in mine if r["outcome"] != "passed"]
            status, why = ("failed", _plain(bad[0]["message"])) if bad else ("passed", None)
        learning_rows.append({"script": s, "status": status, "detail": why})
    total = sum(r["points"] for r in rows)
    earned = sum(r["earned"] for r in rows)
    return {"dir": str(root), "earned": earned, "total": total, "exercises": rows, "learning": learning_rows,
            "seconds": round(time.time() - t0, 1)}


def table(result: dict) -> str:
    width = max(len(r["exercise"]) for r in result["exercises"])
    out = [f"{'exercise':<{width}}  points  result", f"{'-' * width}  ------  ------"]
    for r in result["exercises"]:
        verdict = "passed" if r["passed"] else f"FAILED: {r['first_failure']}"
        out.append(f"{r['exercise']:<{width}}  {r['earned']:>2} / {r['points']:<2} {verdict}")
    out.append(f"{'total':<{width}}  {result['earned']:>2} / {result['total']:<2}")
    out.append("")
    out.append("learning checks (reported, not scored):")
    for r in result["learning"]:
        out.append(f"  {r['script']:<22} {r['status']}" + (f": {r['detail']}" if r["detail"] else ""))
    out.append(f"\ngraded {result['dir']} in {result['seconds']} s")
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    args = tyro.cli(Args, args=argv)
    try:
        result = grade(Path(args.dir), args.exercises, learning=not args.skip_learning)
    except (GradeError, ValueError) as e:
        print(f"grade: error: {e}", file=sys.stderr)
        return 2
    print(table(result))
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(result, f, indent=2)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
