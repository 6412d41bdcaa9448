"""course/: every exercise registered and checked; make_assignment cuts exactly the solutions, leaves no
reference solution elsewhere in the copy and records the assignment; grade gives the project full marks,
a fresh student copy zero, a wrong solution loses its own exercise's points and no others, in plain
words; and the grade holds against code that tries to change it (forged results, atexit, patched
assertion helpers, an endless loop, an exit, edits to the teacher's files, the copy's own emptied tests),
with the Gradescope and GitHub Classroom reports the platforms read.

Grading runs against a snapshot of this repository (the `teacher` fixture), so that the tests that attack
the teacher's files attack a copy."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from course import grade as grader
from course.exercises import BEGIN, END, EXERCISES, SCRIPTS, find_seams
from course.make_assignment import AssignmentError, _files, leaks, make_assignment

REPO = Path(__file__).resolve().parents[1]
SEAMS = find_seams(REPO)
NAMES = [s.name for s in SEAMS]


def _marked_checks() -> dict[str, int]:
    import re

    counts: dict[str, int] = {}
    for test in (REPO / "tests").glob("test_*.py"):
        for name in re.findall(r"pytest\.mark\.exercise\(\"([\w.]+)\"\)", test.read_text()):
            counts[name] = counts.get(name, 0) + 1
    return counts


def test_every_exercise_is_registered_and_has_checks():
    assert len(NAMES) == len(set(NAMES)), "two solution blocks in one function"
    assert set(NAMES) == set(EXERCISES), (set(NAMES) ^ set(EXERCISES))
    checks = _marked_checks()
    assert not [n for n in NAMES if not checks.get(n)], "exercises without a check"
    assert not [n for n in checks if n not in EXERCISES], "checks of exercises that do not exist"
    for name, ex in EXERCISES.items():
        assert 1 <= ex.points <= 3 and ex.minutes > 0 and ex.hint and ex.observe, name
    # every algorithm script offers at least one exercise
    assert {n.split(".")[0] for n in NAMES} == {Path(s).stem for s in SCRIPTS}


def test_teaching_page_lists_the_exercises_as_registered():
    from course.exercises import markdown_table

    page = (REPO / "docs" / "teaching.md").read_text()
    start = page.index("\n", page.index("<!-- exercises-table")) + 1
    assert page[start:page.index("<!-- end exercises-table -->")] == markdown_table(), \
        "docs/teaching.md's table is stale: regenerate it with `python -m course.exercises`"


# ---------------------------------------------------------------- fixtures: the teacher, copies, bodies


def _snapshot_repo(dest: Path) -> Path:
    for rel in _files(REPO):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    return dest


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """This repository as it is now, in a folder of its own: the grader's checks come from here."""
    return _snapshot_repo(tmp_path_factory.mktemp("teacher") / "repo")


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("course") / "student"
    make_assignment(out)
    return out


def copy_with(teacher: Path, out: Path, exercises: list[str], bodies: dict = {}, append: dict = {}) -> Path:
    """A student copy of `exercises` in which every assigned function holds the teacher's solution, except
    those in `bodies` ({exercise: code}); `append` adds module-level code at the end of a script."""
    make_assignment(out, exercises, source=teacher)
    for script in {n.split(".")[0] for n in make_assignment_names(teacher, exercises)}:
        text = (teacher / f"{script}.py").read_text()
        lines = text.splitlines(keepends=True)
        for seam in sorted(find_seams(teacher), key=lambda s: -s.begin):
            if seam.name in bodies and seam.path.name == f"{script}.py":
                code = textwrap.indent(textwrap.dedent(bodies[seam.name]).strip("\n") + "\n", seam.indent)
                lines[seam.begin:seam.end - 1] = [code]
        (out / f"{script}.py").write_text("".join(lines) + textwrap.dedent(append.get(script, "")))
    return out


def make_assignment_names(teacher: Path, exercises: list[str]) -> list[str]:
    return [s.name for s in find_seams(teacher) if s.name in exercises or s.name.split(".")[0] in exercises]


def rows(result) -> dict:
    return {r["exercise"]: r for r in result["exercises"]}


def lost(result) -> dict:
    return {r["exercise"]: r["points"] - r["earned"] for r in result["exercises"] if r["earned"] < r["points"]}


# ---------------------------------------------------------------- make_assignment


def test_student_copy_cuts_the_solutions_and_leaves_none_elsewhere(student):
    changed = []
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if not path.is_file() or {".git", ".venv", "runs", "__pycache__", ".pytest_cache"} & set(rel.parts):
            continue
        if subprocess.run(["git", "check-ignore", "-q", str(rel)], cwd=REPO).returncode == 0:
            continue
        copy = student / rel
        assert copy.is_file(), f"{rel} missing from the student copy"
        if rel.name not in SCRIPTS and copy.read_bytes() != path.read_bytes():
            changed.append(rel)
    # only reference solutions in tests and quoted solution lines in Markdown differ
    assert all(r.suffix == ".md" or (r.parts[0] == "tests" and r.name.startswith("test_")) for r in changed), changed
    cut = find_seams(student)
    assert [s.name for s in cut] == NAMES
    for seam in cut:
        text = seam.path.read_text().splitlines()
        body = [line.strip() for line in text[seam.begin - 1:]]
        end = body.index(END)
        assert body[0] == BEGIN and end == 2, seam.name
        assert body[1].startswith(f"raise NotImplementedError(\"{seam.name}: ") or \
            body[1].startswith(f"raise NotImplementedError('{seam.name}: "), body[1]
    # the lines outside the blocks are the project's, in order
    for script in SCRIPTS:
        if not (REPO / script).is_file():
            continue
        mine = (REPO / script).read_text().splitlines()
        theirs = (student / script).read_text().splitlines()

        def outside(lines):
            out, inside = [], False
            for line in lines:
                if line.strip() == BEGIN:
                    inside = True
                elif line.strip() == END:
                    inside = False
                elif not inside:
                    out.append(line)
            return out

        assert outside(mine) == outside(theirs), script
    # no line of a solution stays in the tests or the docs (a script may share code with another: a note)
    assert not [n for n in leaks(student, SEAMS) if not n.split(" ")[0].endswith(".py") or "/" in n.split(" ")[0]]
    # tests/test_iql.py's reference_expectile_loss, the full solution, now calls the student's function
    ref = (student / "tests" / "test_iql.py").read_text()
    body = ref[ref.index("def reference_expectile_loss"):ref.index("def numerical_expectile")]
    assert "u**2" not in body and "_student_expectile_loss(u, tau)" in body
    assert json.loads((student / "course" / "assignment.json").read_text())["exercises"] == NAMES


def test_student_copy_runs_help_and_fails_with_the_exercise_message(student, pendulum_expert, tmp_path):
    out = subprocess.run([sys.executable, str(student / "bc.py"), "--help"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0 and "--dataset-id" in out.stdout
    out = subprocess.run([sys.executable, str(student / "bc.py"), "--dataset-id", pendulum_expert,
                          "--total-steps", "5", "--no-cuda"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0
    assert f"error: bc.bc_loss: {EXERCISES['bc.bc_loss'].hint}" in out.stderr
    assert "Traceback" not in out.stderr


def test_make_assignment_bad_input_writes_nothing(tmp_path):
    with pytest.raises(AssignmentError, match="unknown exercise 'nope'"):
        make_assignment(tmp_path / "a", ["nope"])
    assert not (tmp_path / "a").exists() and not list(tmp_path.iterdir())
    (tmp_path / "b").mkdir()
    with pytest.raises(AssignmentError, match="exists"):
        make_assignment(tmp_path / "b")


def test_make_assignment_cuts_only_the_chosen_records_them_and_prints_the_right_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "course.make_assignment", "--out", str(tmp_path / "a"),
                          "--exercises", "iql"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    chosen = [n for n in NAMES if n.startswith("iql.")]
    record = tmp_path / "a" / "course" / "assignment.json"
    assert json.loads(record.read_text())["exercises"] == chosen
    assert f"python -m course.grade STUDENT_COPY --assignment {record}" in out.stdout
    assert "--exercises " + " ".join(chosen) in out.stdout
    # awac's actor loss is IQL's: the teacher is told, since it is not assigned
    assert "note: awac.py holds" in out.stdout and "(in awac.awac_actor_loss, not assigned" in out.stdout
    for script in SCRIPTS:
        if script != "iql.py" and (REPO / script).is_file():
            assert (tmp_path / "a" / script).read_bytes() == (REPO / script).read_bytes()
    assert "def reference_expectile_loss" in (tmp_path / "a" / "tests" / "test_iql.py").read_text()
    assert "(u < 0).float()).abs() * u**2" not in (tmp_path / "a" / "tests" / "test_iql.py").read_text()


# ---------------------------------------------------------------- honest work


def points(names) -> int:
    return sum(EXERCISES[n].points if n in EXERCISES else 1 for n in names)


def test_the_project_gets_full_marks(teacher):
    result = grader.grade(teacher, learning=False, teacher=teacher)
    failed = [(r["exercise"], r["first_failure"]) for r in result["exercises"] if not r["passed"]]
    assert not failed
    assert result["earned"] == result["total"] == points(s.name for s in find_seams(teacher))


# GRADESCOPE's documented results.json (gradescope-autograders.readthedocs.io/en/latest/specs/)
TOP = {"score": (int, float), "execution_time": (int, float), "output": str, "output_format": str,
       "test_output_format": str, "test_name_format": str, "visibility": str, "stdout_visibility": str,
       "extra_data": dict, "tests": list, "leaderboard": list}
TEST = {"score": (int, float), "max_score": (int, float), "status": str, "name": str, "name_format": str,
        "number": str, "output": str, "output_format": str, "tags": list, "visibility": str, "extra_data": dict}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def validate_gradescope(data: dict):
    assert set(data) <= set(TOP), set(data) - set(TOP)
    for key, value in data.items():
        assert isinstance(value, TOP[key]) and not isinstance(value, bool), key
    assert "score" in data or all("score" in t for t in data.get("tests", []))
    for key in ("visibility", "stdout_visibility"):
        assert data.get(key, "visible") in VISIBILITY
    for test in data.get("tests", []):
        assert set(test) <= set(TEST), set(test) - set(TEST)
        for key, value in test.items():
            assert isinstance(value, TEST[key]) and not isinstance(value, bool), (key, test)
        assert test.get("status", "passed") in ("passed", "failed")
        assert test.get("visibility", "visible") in VISIBILITY
        if "score" in test and "max_score" in test:
            assert 0 <= test["score"] <= test["max_score"]


def test_a_fresh_copy_gets_zero_through_gradescopes_run_autograder(teacher, student, tmp_path):
    # Gradescope's layout: the zip (the teacher's repository, with the record at its root) in source/
    ag = tmp_path / "autograder"
    ag.mkdir()
    (ag / "source").symlink_to(teacher)
    shutil.copy(student / "course" / "assignment.json", teacher / "assignment.json")
    shutil.copytree(student, ag / "submission")
    out = subprocess.run(["bash", str(REPO / "course" / "run_autograder")], capture_output=True, text=True,
                         env=dict(os.environ, AUTOGRADER=str(ag), PYTHON=sys.executable))
    assert out.returncode == 0, out.stderr
    results = json.loads((ag / "results" / "results.json").read_text())
    validate_gradescope(results)
    scored = [t for t in results["tests"] if "max_score" in t]
    assert results["score"] == 0 and [t["name"] for t in scored] == NAMES
    assert sum(t["max_score"] for t in scored) == points(NAMES)
    for test in scored:
        assert test["output"].startswith("not implemented yet"), test
    # the schema check can fail: an unknown key, a score above its maximum
    for bad in ({**results, "points": 1}, {**results, "tests": [{**scored[0], "score": 9.0}]}):
        with pytest.raises(AssertionError):
            validate_gradescope(bad)


# each: (exercise, its wrong body, words the failure must say); one copy holds them all
WRONG = {
    "iql.expectile_loss": ("w = torch.where(u < 0, expectile, 1.0 - expectile)\nreturn torch.mean(w * u * u)",
                           "expectile"),  # the weights swapped
    "iql.q_loss": ("target = rewards + gamma * (1.0 - terminals) * next_v\n"
                   "return (q1 - target) ** 2 + (q2 - target) ** 2", "wrong shape"),  # no mean: one per transition
    "cql.cql_penalty": ("return (q_data - lse).mean(dim=1)", "gap per critic"),  # the sign flipped
    "awac.awac_actor_loss": ("loss = weights * log_prob\nreturn -loss.mean().detach()", "no gradient flows"),
    "td3_bc.polyak_update": ("for t, o in zip(target_params, online_params):\n    t.lerp_(o, 1.0 - tau)",
                             "polyak"),  # tau and 1 - tau swapped
}


@pytest.fixture(scope="module")
def honest(teacher, tmp_path_factory):
    copy = copy_with(teacher, tmp_path_factory.mktemp("honest") / "copy", ["bc", "iql", "cql", "awac", "td3_bc"],
                     {name: body for name, (body, _) in WRONG.items()})
    return grader.grade(copy, learning=True, budget=0, teacher=teacher)


def test_a_wrong_solution_loses_its_own_points_only_in_plain_words(honest):
    assert lost(honest) == {name: EXERCISES[name].points for name in WRONG}
    for name, (_, words) in WRONG.items():
        assert words.lower() in rows(honest)[name]["first_failure"].lower(), rows(honest)[name]
    # the raw error is not what the student reads
    assert "RuntimeError" not in rows(honest)["awac.awac_actor_loss"]["first_failure"]


def test_the_learning_check_runs_once_a_scripts_exercises_pass(honest):
    status = {r["script"]: r["status"] for r in honest["learning"]}
    assert status == {"bc": "passed", "iql": "not run", "cql": "not run", "awac": "not run", "td3_bc": "not run"}


def test_a_failed_learning_check_says_the_score_it_got_and_needed(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text("def pytest_configure(config):\n"
                                       "    config.addinivalue_line('markers', 'learning(script): a learning check')\n")
    (tests / "test_fake.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.learning("fake")
        def test_learns():
            summary = {"final_normalized_score": 12.5, "best_normalized_score": 20.0}
            assert summary["final_normalized_score"] > 60, summary
    """))
    private = grader._Private(tests)
    try:
        verdicts = grader._run(private, tmp_path, ["tests/test_fake.py::test_learns"], 60, {})
    finally:
        private.remove()
    outcome, message = verdicts["tests/test_fake.py::test_learns"]
    assert outcome == "failed"
    assert "final normalized score was 12.5" in message and "above 60" in message, message
    assert "best_normalized_score" not in message


# ---------------------------------------------------------------- code that tries to change its grade


FORGE = """
import json, os
# the results file the grader used to read, then a record for every exercise on every open descriptor
path = os.environ.get("COURSE_RESULTS")
if path:
    json.dump([{{"nodeid": n, "exercises": [n], "learning": [], "outcome": "passed", "message": "", "duration": 0}}
               for n in {names!r}], open(path, "w"))
for fd in range(3, 256):
    try:
        os.write(fd, b'0 {{"kind": "result", "nodeid": "tests/test_bc.py::test_bc_loss_on_hand_values", "outcome": "passed", "seq": 0}}\\n')
    except OSError:
        pass
os._exit(0)
"""
FLIP = """
import atexit, json, os

def flip():
    path = os.environ.get("COURSE_RESULTS")
    if path and os.path.exists(path):
        records = json.load(open(path))
        for r in records:
            r["outcome"] = "passed"
        json.dump(records, open(path, "w"))
    for fd in range(3, 256):
        try:
            os.write(fd, b'0 {"kind": "result", "outcome": "passed"}\\n')
        except OSError:
            pass

atexit.register(flip)
w = torch.where(u < 0, expectile, 1.0 - expectile)  # wrong: the weights swapped
return torch.mean(w * u * u)
"""


@pytest.fixture(scope="module")
def forged(teacher, tmp_path_factory):
    names = make_assignment_names(teacher, ["bc", "iql"])
    copy = copy_with(teacher, tmp_path_factory.mktemp("forged") / "copy", ["bc", "iql"],
                     {"bc.bc_loss": FORGE.format(names=names), "iql.expectile_loss": FLIP})
    return grader.grade(copy, learning=False, teacher=teacher)


def test_forged_results_then_exit_earn_nothing(forged):
    assert rows(forged)["bc.bc_loss"]["earned"] == 0, rows(forged)["bc.bc_loss"]


def test_an_atexit_hook_cannot_flip_the_outcomes(forged):
    assert rows(forged)["iql.expectile_loss"]["earned"] == 0, rows(forged)["iql.expectile_loss"]
    assert forged["earned"] < forged["total"]


PATCH = """
# at import: every approximate comparison succeeds, and assert_close never complains
import pytest as _pytest, torch as _torch


class _Anything:
    def __eq__(self, other):
        return True


_pytest.approx = lambda *a, **k: _Anything()
_torch.testing.assert_close = lambda *a, **k: None
_torch.allclose = lambda *a, **k: True
"""


@pytest.fixture(scope="module")
def hostile(teacher, tmp_path_factory):
    copy = copy_with(teacher, tmp_path_factory.mktemp("hostile") / "copy", ["bc", "td3_bc", "iql"], {
        "bc.bc_loss": "return ((pred_actions - actions) ** 2).sum()",  # wrong: a sum
        "iql.expectile_loss": WRONG["iql.expectile_loss"][0],  # wrong: the weights swapped
        "td3_bc.polyak_update": "while True:\n    pass",
        "td3_bc.td3_target": "import os\nos._exit(0)",
    }, append={"td3_bc": PATCH})
    # no --exercises: the grader reads the assignment the copy records
    return grader.grade(copy, learning=False, timeout=20, teacher=teacher)


def test_the_copys_record_chooses_what_is_graded(hostile):
    assert "assignment.json" in hostile["graded"]
    assert list(rows(hostile)) == make_assignment_names(REPO, ["bc", "td3_bc", "iql"])


def test_patched_assertion_helpers_let_no_wrong_exercise_pass(hostile):
    assert {"bc.bc_loss", "iql.expectile_loss"} <= set(lost(hostile))
    # the right ones still pass, checked with the real helpers
    assert rows(hostile)["td3_bc.td3_bc_actor_loss"]["passed"] and rows(hostile)["iql.value_loss"]["passed"]


def test_an_endless_loop_costs_its_own_exercise_only(hostile):
    assert "took longer than 20 s" in rows(hostile)["td3_bc.polyak_update"]["first_failure"]
    assert lost(hostile) == {n: EXERCISES[n].points for n in
                             ("bc.bc_loss", "iql.expectile_loss", "td3_bc.polyak_update", "td3_bc.td3_target")}


def test_an_exit_costs_its_own_exercise_only(hostile):
    assert "ended during this check" in rows(hostile)["td3_bc.td3_target"]["first_failure"]
    assert rows(hostile)["iql.q_loss"]["passed"] and rows(hostile)["iql.awr_actor_loss"]["passed"]


def test_the_teachers_files_stay_untouched(tmp_path):
    teacher = _snapshot_repo(tmp_path / "teacher")
    before = {p: p.read_bytes() for p in teacher.rglob("*") if p.is_file()}
    vandal = f"""
    import pathlib
    tests = pathlib.Path({str(teacher / "tests")!r})
    (tests / "test_iql.py").write_text("def test_nothing():\\n    pass\\n")
    (tests / "test_bc.py").unlink(missing_ok=True)
    import os, sys
    private = pathlib.Path(sys.modules["conftest"].__file__).parent  # the grader's read-only copy
    os.chmod(private, 0o755)
    os.chmod(private / "test_bc.py", 0o644)
    (private / "test_bc.py").write_text("")
    return torch.mean((pred_actions - actions).pow(2))
    """
    copy = copy_with(teacher, tmp_path / "copy", ["bc"], {"bc.bc_loss": vandal})
    result = grader.grade(copy, learning=False, teacher=teacher)
    after = {p: p.read_bytes() for p in teacher.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert after == before
    assert result["earned"] == 0 and "changed the grader's files" in result["exercises"][0]["first_failure"]
    assert "tests/test_bc.py" in result["teacher_files_changed"]
    assert "(the grader's private copy of) tests/test_bc.py" in result["teacher_files_changed"]


def test_classroom_grades_with_the_teachers_checks_and_reports_points(teacher, tmp_path):
    copy = tmp_path / "submission"
    make_assignment(copy, ["bc"], source=teacher)
    # the student replaced the copy's checks with ones that always pass
    for test in (copy / "tests").glob("test_*.py"):
        test.write_text("import pytest\n\n\n@pytest.mark.exercise('bc.bc_loss')\ndef test_yes():\n    pass\n")
    # the old Classroom step, the copy grading itself, is refused
    out = subprocess.run([sys.executable, "-m", "course.grade", "."], capture_output=True, text=True, cwd=copy)
    assert out.returncode == 2 and "is a student copy" in out.stderr, (out.stdout, out.stderr)
    # the workflow template: the teacher's repository checked out beside the student's, graded from there
    workflow = (REPO / "course" / "classroom.yml").read_text()
    assert "repository: TEACHER/REPOSITORY" in workflow and "path: teacher" in workflow
    assert "classroom-resources/autograding-grading-reporter@v1" in workflow
    line = next(ln.strip() for ln in workflow.splitlines() if "python -m course.grade" in ln)
    shutil.copy(copy / "course" / "assignment.json", tmp_path / "record.json")
    command = line.replace("|| true", "").replace("ASSIGNMENT.json", str(tmp_path / "record.json")) \
        .replace("../submission", str(copy)).replace("../classroom.json", str(tmp_path / "classroom.json"))
    assert command.startswith("python -m course.grade ")
    command = [sys.executable] + command.split()[1:] + ["--fail-under", "100"]
    out = subprocess.run(command, capture_output=True, text=True, cwd=teacher)
    assert out.returncode == 1, (out.stdout, out.stderr)  # below full marks: a status the platform sees
    report = json.loads((tmp_path / "classroom.json").read_text())
    assert report["max_score"] == EXERCISES["bc.bc_loss"].points and report["status"] == "fail"
    assert sum(t["score"] for t in report["tests"]) == 0 and report["tests"][0]["name"] == "bc.bc_loss"


def test_grade_refuses_what_it_cannot_grade_and_still_writes_the_reports(tmp_path):
    out = subprocess.run([sys.executable, "-m", "course.grade", str(tmp_path / "missing"), "--gradescope",
                          str(tmp_path / "gs.json"), "--classroom", str(tmp_path / "cl.json")],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "is not a folder" in out.stderr
    gs = json.loads((tmp_path / "gs.json").read_text())
    validate_gradescope(gs)
    assert gs["score"] == 0 and "is not a folder" in gs["output"]
    assert json.loads((tmp_path / "cl.json").read_text())["status"] == "error"
    out = subprocess.run([sys.executable, "-m", "course.grade", str(tmp_path)], capture_output=True, text=True,
                         cwd=REPO)
    assert out.returncode == 2 and "no algorithm scripts" in out.stderr
