"""Grade the scripts in a folder (a student's copy made by course/make_assignment.py).

    python -m course.grade DIR                          # a table of exercises, points and the first failing check
    python -m course.grade DIR --json out.json          # the same as JSON
    python -m course.grade DIR --gradescope results.json --classroom classroom.json --fail-under 100

The checks are this repository's own tests marked `@pytest.mark.exercise(...)`, run against DIR's
scripts; an exercise earns its points when all its checks pass. The exercises graded are, in order of
precedence: --exercises, the record named by --assignment, the record the copy carries
(DIR/course/assignment.json, written by make_assignment), every exercise.

How the grade is kept from the code it grades (docs/teaching.md says what this does not defend against):
- The teacher's tests and the reporting plugin are copied read-only into a private temporary folder
  before any graded code runs; the checks run from there, in child processes started in their own
  process group, never in this one.
- A child reports each check's start and verdict over a pipe this process opened, every line signed
  with a secret that the child's plugin reads from a second pipe before any graded code is imported.
  A line that is not signed, or is out of sequence, voids every check of that child.
- Which checks exist comes from a collection run against the teacher's own scripts, not the student's:
  each is counted exactly once, and one that never reports a verdict fails.
- A check that runs longer than --timeout, or during which the child exits or crashes, fails; the
  child is killed and the checks that remain run in a fresh one, so that one hung or exiting function
  costs its own exercise only.
- The teacher's files (tests/, course/, common/, the scripts) are compared after grading with what they
  were before; if the graded code changed them they are put back and the copy gets no points.

Then, for each script whose exercises all pass, its short learning check runs: reported, not scored,
and only while the time budget (--budget) lasts, so that the whole grade of a copy stays within a few
minutes as scripts are added. Exit status: 0 graded; 1 graded with a score below --fail-under; 2 the
grading could not run (no such folder, no scripts, a broken record).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro

from course.exercises import EXERCISES, SCRIPTS, find_seams

REPO = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).resolve().parent / "_pytest_plugin.py"
RECORD = Path("course") / "assignment.json"  # where make_assignment records the exercises in a copy
# the teacher's files compared before and after grading (the graded code must leave them alone): these
# folders and the top-level Python files
GUARDED = ("tests", "course", "common")
COLLECT_SECONDS = 180.0  # importing torch, the tests and the scripts, on a busy machine


@dataclass
class Args:
    dir: tyro.conf.Positional[str]
    """the folder holding the scripts to grade (a student's copy)"""
    json: Optional[str] = None
    """also write the result as JSON to this file"""
    gradescope: Optional[str] = None
    """also write Gradescope's results.json (score, and one test per exercise) to this file"""
    classroom: Optional[str] = None
    """also write the result in GitHub Classroom's reporter format (classroom-resources/autograding-grading-reporter)"""
    exercises: Optional[list[str]] = None
    """grade only these exercises (names, or script stems such as iql); default: the assignment's"""
    assignment: Optional[str] = None
    """the assignment record to grade against (default: DIR/course/assignment.json when there, else every exercise)"""
    skip_learning: bool = False
    """do not run the learning checks"""
    timeout: float = 60.0
    """seconds one exercise check may run before it is stopped and fails (the slowest takes a few seconds)"""
    learning_timeout: float = 240.0
    """seconds one learning check may run"""
    budget: float = 170.0
    """seconds after the start past which no learning check runs (0: no limit); the score never depends on it"""
    jobs: int = 2
    """checks run in this many child processes side by side"""
    fail_under: Optional[float] = None
    """exit with status 1 when the score, in percent of the points, is below this (e.g. 100)"""


class GradeError(RuntimeError):
    pass


# ---------------------------------------------------------------- the private place and the children


class _Private:
    """A temporary folder only this user can enter: the teacher's tests and the plugin, read-only, and
    a scratch folder for the children's working directories and temporary files."""

    def __init__(self, tests: Path):
        self.root = Path(tempfile.mkdtemp(prefix="course-grade-"))
        os.chmod(self.root, 0o700)
        self.checks = self.root / "checks"
        shutil.copytree(tests, self.checks / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy(PLUGIN, self.checks / "_course_grader_plugin.py")
        (self.checks / "pytest.ini").write_text("[pytest]\n")
        for path in sorted(self.checks.rglob("*"), reverse=True):
            os.chmod(path, 0o555 if path.is_dir() else 0o444)
        os.chmod(self.checks, 0o555)
        self.scratch = self.root / "scratch"
        self.scratch.mkdir()
        self.files = {p: p.read_bytes() for p in self.checks.rglob("*") if p.is_file()}
        self.tampered: set = set()
        self.lock = threading.Lock()

    def check(self):
        """Put back any of the private checks that graded code changed (it runs as the same user and could
        undo the read-only modes), so that the next child runs the teacher's; remember which."""
        with self.lock:
            for path, data in self.files.items():
                try:
                    same = path.read_bytes() == data
                except OSError:
                    same = False
                if not same:
                    self.tampered.add(str(path.relative_to(self.checks)))
                    for folder in (self.checks, *path.relative_to(self.checks).parents):
                        if (self.checks / folder).is_dir():
                            os.chmod(self.checks / folder, 0o755)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    if path.exists():
                        os.chmod(path, 0o644)
                    path.write_bytes(data)
                    os.chmod(path, 0o444)
            for path in [p for p in self.checks.rglob("*") if p.is_file() and p not in self.files]:
                self.tampered.add(str(path.relative_to(self.checks)))
                os.chmod(path.parent, 0o755)
                path.unlink()

    def remove(self):
        for path in [self.checks, *self.checks.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                os.chmod(path, 0o700)
        shutil.rmtree(self.root, ignore_errors=True)


def _kill(proc: subprocess.Popen):
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and whatever it started
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    errors = [ln[4:].strip() for ln in text.splitlines() if ln.startswith("E   ")]
    if errors:
        return errors[-1]
    return "\n".join(text.splitlines()[-lines:])


class _Child:
    """One pytest process running `nodeids` against `root`'s scripts; its messages come through `events`."""

    def __init__(self, private: _Private, root: Path, args: list[str]):
        self.secret = secrets.token_bytes(32)
        secret_r, secret_w = os.pipe()
        self.out_r, out_w = os.pipe()
        os.write(secret_w, self.secret)
        os.close(secret_w)
        work = Path(tempfile.mkdtemp(prefix="child-", dir=private.scratch))
        self.log = work / "pytest.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSE_", "PYTEST_", "OFFLINE_RL_"))}
        env.update(OFFLINE_RL_ROOT=str(root), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1",
                   PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", TMPDIR=str(work), PYTHONPATH=str(private.checks),
                   COURSE_GRADER_FDS=f"{secret_r},{out_w}")
        cmd = [sys.executable, "-m", "pytest", "-c", str(private.checks / "pytest.ini"),
               "--rootdir", str(private.checks), "-p", "_course_grader_plugin", "-p", "no:cacheprovider",
               "-q", "--no-header", "-rN", "--tb=short", "--continue-on-collection-errors", *args]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, pass_fds=(secret_r, out_w),
                                         start_new_session=True)
        os.close(secret_r)
        os.close(out_w)
        self.buffer = b""
        self.seq = 0

    def messages(self, wait: float):
        """The signed messages that arrive within `wait` seconds (None at end of stream); raises
        ValueError on a line that is not the plugin's."""
        ready, _, _ = select.select([self.out_r], [], [], max(wait, 0.0))
        if not ready:
            return []
        chunk = os.read(self.out_r, 1 << 16)
        if not chunk:
            return None
        self.buffer += chunk
        out = []
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            sig, _, body = line.partition(b" ")
            good = hmac.new(self.secret, body, hashlib.sha256).hexdigest().encode()
            if not hmac.compare_digest(sig, good):
                raise ValueError("a line without the grader's signature")
            message = json.loads(body)
            if message.get("seq") != self.seq:
                raise ValueError("a line out of sequence")
            self.seq += 1
            out.append(message)
        return out

    def close(self, ended: bool):
        if ended:  # let it finish its exit (its status says how it ended), then end what it left behind
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        _kill(self.proc)
        os.close(self.out_r)


FORGED = ("a result the grader did not sign reached it: the code under test wrote to the grader's channel, "
          "so no check of this run counts")


def _run(private: _Private, root: Path, nodeids: list[str], timeout: float, exercises_of: dict,
         deadline: Optional[float] = None, collect: bool = False) -> dict:
    """Verdicts {nodeid: (outcome, message)} for `nodeids`, each exactly once. A check that hangs, or
    during which the process ends, fails, and so do the other checks of its exercises; the rest run in
    a fresh process. With collect=True: the collected items instead (the teacher's run)."""
    verdicts: dict = {}
    pending = list(nodeids)
    while pending or collect:
        if deadline is not None and time.monotonic() >= deadline:
            verdicts.update({n: ("not run", "the grade's time budget was spent (--budget)") for n in pending})
            return verdicts
        if collect:  # only the files that mark checks: importing the others would cost time
            args = ["--collect-only", "-m", "exercise or learning"] + [
                str(p) for p in sorted((private.checks / "tests").glob("test_*.py"))
                if re.search(r"mark\.(exercise|learning)\(", p.read_text())]
        else:
            args = [str(private.checks / n) for n in pending]
        private.check()
        child = _Child(private, root, args)
        current, collected, forged, ended = None, None, False, False
        limit = time.monotonic() + max(COLLECT_SECONDS, timeout)
        try:
            while True:
                now = time.monotonic()
                stop = min(limit, deadline) if deadline else limit
                if now >= stop:
                    break
                try:
                    batch = child.messages(stop - now)
                except (ValueError, json.JSONDecodeError):
                    forged = True
                    break
                if batch is None:
                    ended = True
                    break
                for m in batch:
                    if m.get("kind") == "collected":
                        collected = m["items"]
                        limit = time.monotonic() + timeout
                    elif m.get("kind") == "start":
                        current = m.get("nodeid")
                        limit = time.monotonic() + timeout
                    elif m.get("kind") == "result" and m.get("nodeid") in pending \
                            and m["nodeid"] not in verdicts:
                        verdicts[m["nodeid"]] = (m.get("outcome"), m.get("message") or "")
                        current = None
        finally:
            child.close(ended)
        rc = child.proc.returncode
        if collect:
            if collected is None or not ended:
                raise GradeError(f"the teacher's checks could not be collected:\n{_tail(child.log, 15)}")
            return {"items": collected}
        if forged:
            for n in pending:
                verdicts[n] = ("failed", FORGED)
            verdicts["__forged__"] = ("failed", FORGED)
            return verdicts
        over_budget = deadline is not None and time.monotonic() >= deadline
        outcome = "stopped" if over_budget else "failed"
        if over_budget:
            why = "stopped at the grade's time budget (--budget)"
        elif not ended:  # still running at the limit: the check it was in, or the imports, took too long
            why = (f"took longer than {timeout:g} s and was stopped (an endless loop?)" if current is not None else
                   "importing the scripts and the checks took too long; stopped")
        else:
            why = (f"the process running the checks ended during this check (exit status {rc}: os._exit, "
                   f"a crash, or sys.exit outside a check)")
        pending = [n for n in pending if n not in verdicts]
        if current is None or current not in pending:
            # no check was running: the checks could not start (an import error), or all have reported
            if not ended or over_budget:
                detail = why
            elif collected is None:
                detail = f"the checks could not start: {_tail(child.log) or f'the process ended (exit status {rc})'}"
            else:
                detail = f"the check did not run: {_tail(child.log) or f'exit status {rc}'}"
            for n in pending:
                verdicts[n] = (outcome, detail)
            return verdicts
        verdicts[current] = (outcome, why)
        lost = set(exercises_of.get(current, []))
        for n in pending:
            if over_budget:
                verdicts.setdefault(n, ("not run", "the grade's time budget was spent (--budget)"))
            elif n != current and lost & set(exercises_of.get(n, [])):
                verdicts.setdefault(n, (outcome, f"not run: {', '.join(sorted(lost))} already failed ({why})"))
        pending = [n for n in pending if n not in verdicts]
    return verdicts


def _chunks(groups: dict, n: int) -> list[list[str]]:
    """The checks of `groups` ({script: nodeids}) in at most n lists of about equal length, each group whole
    (the longest first into the shortest list), each check once."""
    lists: list[list[str]] = [[] for _ in range(max(1, n))]
    seen: set = set()
    for key in sorted(groups, key=lambda k: -len(groups[k])):
        mine = [c for c in groups[key] if c not in seen]
        seen.update(mine)
        min(lists, key=len).extend(mine)
    return [chunk for chunk in lists if chunk]


# ---------------------------------------------------------------- the teacher's files, before and after


def _snapshot(repo: Path) -> dict:
    files = {}
    paths = sorted(repo.glob("*.py")) + [p for d in GUARDED for p in sorted((repo / d).rglob("*"))]
    for path in paths:
        if path.is_file() and "__pycache__" not in path.parts:
            files[str(path.relative_to(repo))] = path.read_bytes()
    return files


def _put_back(repo: Path, before: dict) -> list[str]:
    """Restore the teacher's guarded files to `before`; the paths that had changed."""
    changed = []
    now = _snapshot(repo)
    for rel, data in before.items():
        if now.get(rel) != data:
            changed.append(rel)
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                os.chmod(path, stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)
            path.write_bytes(data)
    for rel in now:
        if rel not in before:
            changed.append(rel)
            (repo / rel).unlink()
    return sorted(changed)


# ---------------------------------------------------------------- what is graded


def _read_record(path: Path) -> list[str]:
    try:
        record = json.loads(path.read_text())
        names = record["exercises"]
        assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
        raise GradeError(f"{path} is not an assignment record made by course.make_assignment ({e})")
    return names


def choose(root: Path, exercises: Optional[list[str]], assignment: Optional[Path],
           teacher: Path = REPO) -> tuple[list[str], str]:
    """The exercises to grade (the teacher's names) and where that choice came from."""
    available = [s.name for s in find_seams(teacher)]
    if exercises:
        source = "--exercises " + " ".join(exercises)
    else:
        record = Path(assignment) if assignment else root / RECORD
        if assignment is None and not record.is_file():
            return available, "every exercise"
        exercises, source = _read_record(record), f"the assignment recorded in {record}"
        unknown = [n for n in exercises if n not in available]
        if unknown:
            raise GradeError(f"{record} names exercises that do not exist: {', '.join(unknown)}")
    names = [n for n in available if n in exercises or n.split(".")[0] in exercises]
    if not names:
        raise GradeError(f"no exercise matches {exercises}")
    return names, source


def grade(root: Path, exercises: Optional[list[str]] = None, learning: bool = True, *,
          assignment: Optional[Path] = None, timeout: float = 60.0, learning_timeout: float = 240.0,
          budget: float = 170.0, jobs: int = 2, teacher: Path = REPO) -> dict:
    """The grade of the copy in `root` by the checks of the repository `teacher` (this one by default)."""
    t0 = time.monotonic()
    teacher = Path(teacher).resolve()
    root = Path(root).resolve()
    if not root.is_dir():
        raise GradeError(f"{root} is not a folder")
    if not any((root / s).is_file() for s in SCRIPTS):
        raise GradeError(f"no algorithm scripts ({', '.join(SCRIPTS)}) in {root}")
    if root == teacher and (teacher / RECORD).is_file():
        raise GradeError(f"{root} is a student copy ({RECORD} is there) and this grader is the copy's own, whose "
                         f"tests the student can change: grade it from the teacher's repository, "
                         f"`python -m course.grade {root}` run there")
    names, source = choose(root, exercises, assignment, teacher)
    deadline = t0 + budget if budget and budget > 0 else None

    before = _snapshot(teacher)
    private = _Private(teacher / "tests")  # before any of the graded code runs
    try:
        items = _run(private, teacher, [], timeout, {}, collect=True)["items"]  # the teacher's scripts: trusted
        exercises_of = {it["nodeid"]: it["exercises"] for it in items}
        checks = {n: [it["nodeid"] for it in items if n in it["exercises"]] for n in names}
        missing = [n for n, c in checks.items() if not c]
        if missing:
            raise GradeError(f"no check of {', '.join(missing)} in {teacher / 'tests'}: the teacher's tests are "
                             f"incomplete")
        scripts = list(dict.fromkeys(n.split(".")[0] for n in names))
        learning_checks = {s: [it["nodeid"] for it in items if s in it["learning"]] for s in scripts}

        # the exercise checks, in `jobs` processes side by side (one starting process costs seconds: importing
        # torch and the tests), each script's checks kept together
        by_script = {s: list(dict.fromkeys(c for n in names if n.split(".")[0] == s for c in checks[n]))
                     for s in scripts}
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            parts = pool.map(lambda chunk: _run(private, root, chunk, timeout, exercises_of),
                             _chunks(by_script, jobs))
            verdicts = {k: v for part in parts for k, v in part.items()}
        # then the learning checks of the scripts whose exercises all pass, while the time budget lasts
        forged = "__forged__" in verdicts
        ready = {s: learning_checks[s] for s in scripts if learning and not forged and learning_checks[s]
                 and all(verdicts.get(c, ("failed",))[0] == "passed" for c in by_script[s])}
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            parts = pool.map(lambda chunk: _run(private, root, chunk, learning_timeout, {}, deadline=deadline),
                             _chunks(ready, jobs))
            learned = {k: v for part in parts for k, v in part.items()}
    finally:
        private.check()
        private.remove()
        changed = _put_back(teacher, before) + sorted(f"(the grader's private copy of) {t}" for t in private.tampered)

    rows = []
    for name in names:
        mine = [verdicts.get(c, ("failed", "the check never reported")) for c in checks[name]]
        failed = [v for v in mine if v[0] != "passed"]
        points = EXERCISES[name].points if name in EXERCISES else 1
        if changed:
            failed = [("failed", "the code in this copy changed the grader's files (" + ", ".join(changed[:4])
                       + "): they were put back, and the copy gets no points")]
        rows.append({"exercise": name, "points": points, "earned": 0 if failed else points, "passed": not failed,
                     "checks": len(mine), "checks_passed": len(mine) - len([v for v in mine if v[0] != "passed"]),
                     "first_failure": failed[0][1] if failed else None})
    learning_rows = []
    for s in scripts:
        mine = {c: learned[c] for c in learning_checks[s] if c in learned} or None
        ready = all(r["passed"] for r in rows if r["exercise"].split(".")[0] == s)
        if not learning:
            status, why = "skipped", "--skip-learning"
        elif not learning_checks[s]:
            status, why = "none", "no learning check for this script"
        elif not ready:
            status, why = "not run", "some of its exercises fail"
        elif mine is None:
            status, why = "not run", "the grade stopped first"
        else:
            bad = [v for v in mine.values() if v[0] != "passed"]
            status, why = (bad[0][0] if bad[0][0] in ("not run", "stopped") else "failed", bad[0][1]) if bad \
                else ("passed", None)
        learning_rows.append({"script": s, "status": status, "detail": why})
    total = sum(r["points"] for r in rows)
    earned = sum(r["earned"] for r in rows)
    return {"dir": str(root), "graded": source, "earned": earned, "total": total, "exercises": rows,
            "learning": learning_rows, "teacher_files_changed": changed,
            "seconds": round(time.monotonic() - t0, 1)}


# ---------------------------------------------------------------- reports


def table(result: dict) -> str:
    width = max(len(r["exercise"]) for r in result["exercises"])
    out = [f"graded: {result['graded']}", "", f"{'exercise':<{width}}  points  result",
           f"{'-' * width}  ------  ------"]
    for r in result["exercises"]:
        verdict = "passed" if r["passed"] else f"FAILED: {r['first_failure']}"
        out.append(f"{r['exercise']:<{width}}  {r['earned']:>2} / {r['points']:<2} {verdict}")
    out.append(f"{'total':<{width}}  {result['earned']:>2} / {result['total']:<2}")
    out.append("")
    out.append("learning checks (reported, not scored):")
    for r in result["learning"]:
        out.append(f"  {r['script']:<22} {r['status']}" + (f": {r['detail']}" if r["detail"] else ""))
    if result.get("teacher_files_changed"):
        out.append(f"\nWARNING: the graded code changed the grader's files, put back: "
                   f"{', '.join(result['teacher_files_changed'])}")
    out.append(f"\ngraded {result['dir']} in {result['seconds']} s")
    return "\n".join(out)


def gradescope(result: Optional[dict], error: Optional[str] = None) -> dict:
    """Gradescope's results.json (gradescope-autograders.readthedocs.io/en/latest/specs/): one test per
    exercise with its points; the learning checks as tests without points."""
    if result is None:
        return {"score": 0.0, "output": f"The grader could not run: {error}", "tests": []}
    tests = [{"name": r["exercise"], "score": float(r["earned"]), "max_score": float(r["points"]),
              "status": "passed" if r["passed"] else "failed",
              "output": "passed" if r["passed"] else r["first_failure"]} for r in result["exercises"]]
    tests += [{"name": f"learning check: {r['script']} (reported, not scored)",
               "status": "passed" if r["status"] == "passed" else "failed",
               "output": r["status"] + (f": {r['detail']}" if r["detail"] else "")} for r in result["learning"]]
    return {"score": float(result["earned"]), "execution_time": int(result["seconds"]),
            "output": f"{result['earned']} / {result['total']} points", "tests": tests}


def classroom(result: Optional[dict], error: Optional[str] = None) -> dict:
    """The result as GitHub Classroom's autograding reporter reads a runner's output (version 1): the
    points are the sum of the tests' scores out of max_score."""
    if result is None:
        return {"version": 1, "status": "error", "max_score": 0, "message": error, "tests": []}
    tests = [{"name": r["exercise"], "status": "pass" if r["passed"] else "fail", "score": r["earned"],
              "message": None if r["passed"] else r["first_failure"]} for r in result["exercises"]]
    return {"version": 1, "status": "pass" if result["earned"] == result["total"] else "fail",
            "max_score": result["total"], "tests": tests}


def _write(path: str, data: dict):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def main(argv: Optional[list[str]] = None) -> int:
    args = tyro.cli(Args, args=argv)
    result, error = None, None
    try:
        result = grade(Path(args.dir), args.exercises, learning=not args.skip_learning,
                       assignment=Path(args.assignment) if args.assignment else None, timeout=args.timeout,
                       learning_timeout=args.learning_timeout, budget=args.budget, jobs=args.jobs)
    except (GradeError, ValueError) as e:
        error = str(e)
        print(f"grade: error: {e}", file=sys.stderr)
    # the reports are written whatever happened, so that a platform always has one to read
    if args.json:
        _write(args.json, result if result is not None else {"error": error})
    if args.gradescope:
        _write(args.gradescope, gradescope(result, error))
    if args.classroom:
        _write(args.classroom, classroom(result, error))
    if result is None:
        return 2
    print(table(result))
    if args.fail_under is not None:
        percent = 100.0 * result["earned"] / result["total"]
        if percent < args.fail_under:
            print(f"score {percent:.1f}% is below --fail-under {args.fail_under:g}%", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
