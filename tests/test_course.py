"""course/: every exercise registered and checked; make_assignment cuts exactly the solutions;
grade gives the project full marks, a fresh student copy zero, and a wrong solution loses its own
exercise's points and no others."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from course import grade as grader
from course.exercises import BEGIN, END, EXERCISES, SCRIPTS, find_seams
from course.make_assignment import AssignmentError, make_assignment

REPO = Path(__file__).resolve().parents[1]
SEAMS = find_seams(REPO)
NAMES = [s.name for s in SEAMS]


def _marked_checks() -> dict[str, int]:
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


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("course") / "student"
    make_assignment(out)
    return out


def test_student_copy_cuts_the_solutions_and_nothing_else(student):
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if not path.is_file() or {".git", ".venv", "runs", "__pycache__", ".pytest_cache"} & set(rel.parts):
            continue
        if subprocess.run(["git", "check-ignore", "-q", str(rel)], cwd=REPO).returncode == 0:
            continue
        copy = student / rel
        assert copy.is_file(), f"{rel} missing from the student copy"
        if rel.name not in SCRIPTS:
            assert copy.read_bytes() == path.read_bytes(), f"{rel} changed"
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


def test_make_assignment_cuts_only_the_chosen(tmp_path):
    chosen = make_assignment(tmp_path / "a", ["bc"])
    assert chosen == [n for n in NAMES if n.startswith("bc.")]
    for script in SCRIPTS:
        if script != "bc.py":
            assert (tmp_path / "a" / script).read_bytes() == (REPO / script).read_bytes()


def _grade(root, **kw):
    return grader.grade(Path(root), learning=False, **kw)


def test_the_project_gets_full_marks():
    result = _grade(REPO)
    failed = [(r["exercise"], r["first_failure"]) for r in result["exercises"] if not r["passed"]]
    assert not failed
    assert result["earned"] == result["total"] == sum(e.points for e in EXERCISES.values())


def test_a_fresh_student_copy_gets_zero_without_crashing(student, tmp_path):
    result = _grade(student)
    assert result["earned"] == 0 and result["total"] > 0
    for row in result["exercises"]:
        assert row["first_failure"].startswith("not implemented yet"), row
    # the command line: exit 0 whatever the score, a table, and the JSON report
    out = subprocess.run([sys.executable, "-m", "course.grade", str(student), "--skip-learning", "--exercises", "bc",
                          "--json", str(tmp_path / "g.json")], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "bc.bc_loss" in out.stdout and "0 / " in out.stdout
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["earned"] == 0 and report["exercises"][0]["exercise"] == "bc.bc_loss"


# one wrong solution per case: (exercise, text in the solution, its wrong replacement)
WRONG = [
    ("bc.bc_loss", "** 2).mean()", "** 2).sum()"),
    ("iql.expectile_loss", "1.0 - expectile, expectile)", "expectile, 1.0 - expectile)"),  # weights swapped
    ("cql.cql_penalty", "(lse - q_data)", "(q_data - lse)"),  # the penalty's sign flipped
]


@pytest.mark.parametrize("exercise, right, wrong", WRONG)
def test_a_wrong_solution_loses_its_own_points_only(exercise, right, wrong, tmp_path):
    copy = tmp_path / "copy"
    script = exercise.split(".")[0]
    make_assignment(copy, [script])  # a full copy; put the solutions back, one of them wrong
    seam = next(s for s in SEAMS if s.name == exercise)
    (copy / seam.path.name).write_bytes((REPO / seam.path.name).read_bytes())
    lines = (copy / seam.path.name).read_text().splitlines(keepends=True)
    block = "".join(lines[seam.begin:seam.end - 1])
    assert right in block, f"{right!r} not in the solution of {exercise}"
    lines[seam.begin:seam.end - 1] = [block.replace(right, wrong)]
    (copy / seam.path.name).write_text("".join(lines))
    result = _grade(copy, exercises=[script])
    lost = {r["exercise"]: r["points"] - r["earned"] for r in result["exercises"] if r["earned"] < r["points"]}
    assert lost == {exercise: EXERCISES[exercise].points}, lost


def test_grade_refuses_what_it_cannot_grade(tmp_path):
    out = subprocess.run([sys.executable, "-m", "course.grade", str(tmp_path / "missing")], capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 2 and "is not a folder" in out.stderr
    out = subprocess.run([sys.executable, "-m", "course.grade", str(tmp_path)], capture_output=True, text=True,
                         cwd=REPO)
    assert out.returncode == 2 and "no algorithm scripts" in out.stderr


def test_grade_runs_the_learning_check_once_the_exercises_pass():
    result = grader.grade(REPO, exercises=["bc"], learning=True)
    assert result["earned"] == result["total"]
    assert {r["script"]: r["status"] for r in result["learning"]} == {"bc": "passed"}
