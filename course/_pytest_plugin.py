"""Loaded by course/grade.py into the pytest run it starts (`-p course._pytest_plugin`): records, for
every check, its exercise (or learning check), its outcome and the first line of its failure, into
the JSON file named by $COURSE_RESULTS."""

import json
import os

import pytest

_records = []


def _names(item, marker):
    return [m.args[0] for m in item.iter_markers(marker)]


def pytest_collection_modifyitems(config, items):
    """Keep only the checks of the exercises in $COURSE_EXERCISES and the learning checks of the
    scripts in $COURSE_LEARNING (each comma-separated; unset: no filter)."""
    keep, drop = [], []
    for item in items:
        ok = True
        for marker, var in (("exercise", "COURSE_EXERCISES"), ("learning", "COURSE_LEARNING")):
            names, allowed = _names(item, marker), os.environ.get(var)
            if names and allowed is not None and not set(names) & set(allowed.split(",")):
                ok = False
        (keep if ok else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _first_line(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "failed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _records.append({
            "nodeid": item.nodeid, "exercises": _names(item, "exercise"), "learning": _names(item, "learning"),
            "outcome": report.outcome, "message": "" if report.passed else _first_line(report),
            "duration": round(report.duration, 3),
        })


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("COURSE_RESULTS")
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(_records, f)
        os.replace(path + ".tmp", path)
