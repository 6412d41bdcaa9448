"""Loaded by course/grade.py into each pytest process it starts, under a private name, before any of the
graded code is imported. It reports every check's start and verdict to the grading process over a pipe
that the grading process opened, each line signed with a secret that the grading process wrote into a
second pipe; the secret is read and that pipe closed at import, so that code imported later has no
file, variable or environment entry to read it from, and a line it writes to the pipe is rejected.

Before each check it puts back the assertion helpers the checks rely on (pytest.approx,
torch.testing.assert_close, ...) as they were at import, and a check during which the code under test
replaced one fails. It stands alone (no import from course/): it runs from the grader's private folder.
"""

import builtins
import hashlib
import hmac
import json
import os
import re

import pytest

# ---- the channel: fds handed over by the grading process; the secret lives only in this closure ----


def _open_channel():
    spec = os.environ.pop("COURSE_GRADER_FDS", None)
    if not spec:
        return None
    secret_fd, out_fd = (int(x) for x in spec.split(","))
    secret = b""
    while len(secret) < 32:
        chunk = os.read(secret_fd, 32 - len(secret))
        if not chunk:
            break
        secret += chunk
    os.close(secret_fd)
    write, new, dumps, sha256 = os.write, hmac.new, json.dumps, hashlib.sha256
    state = {"seq": 0}

    def send(record):
        record = dict(record, seq=state["seq"])
        state["seq"] += 1
        body = dumps(record, sort_keys=True)
        line = (new(secret, body.encode(), sha256).hexdigest() + " " + body + "\n").encode()
        while line:
            line = line[write(out_fd, line):]

    return send


_send = _open_channel()

# ---- the assertion helpers a check relies on, as they are before any graded code runs ----


def _guarded():
    import math

    import numpy
    import numpy.testing
    import torch
    import torch.testing
    from _pytest import python as _pyt_python
    from _pytest import runner as _pyt_runner

    pairs = [(pytest, n) for n in ("approx", "raises", "fail", "warns")]
    pairs += [(torch.testing, "assert_close"), (math, "isclose"), (math, "isfinite")]
    pairs += [(torch, n) for n in ("allclose", "isclose", "equal", "all", "any", "isfinite", "testing")]
    pairs += [(torch.Tensor, n) for n in ("allclose", "equal", "__eq__", "__lt__", "__gt__", "__le__", "__ge__",
                                          "__bool__", "__float__", "item", "all", "any", "tolist")]
    pairs += [(numpy, n) for n in ("allclose", "isclose", "array_equal", "all", "any")]
    pairs += [(numpy.testing, n) for n in ("assert_allclose", "assert_array_equal", "assert_equal")]
    pairs += [(builtins, n) for n in ("abs", "all", "any", "isinstance", "len", "float", "int", "bool", "max",
                                      "min", "sum", "round", "AssertionError")]
    pairs += [(_pyt_python.Function, "runtest"), (_pyt_runner.CallInfo, "from_call")]
    return [(obj, name, _raw(obj, name)) for obj, name in pairs]


def _raw(obj, name, vars=vars, getattr=getattr):
    """The attribute as stored (a classmethod object, not a new bound method at each look-up)."""
    own = vars(obj)
    return own[name] if name in own else getattr(obj, name, None)


_ORIGINALS = _guarded() if _send is not None else []
_setattr = setattr


def _replaced() -> list:
    return [f"{getattr(obj, '__name__', type(obj).__name__)}.{name}" for obj, name, value in _ORIGINALS
            if _raw(obj, name) is not value]


def _restore():
    for obj, name, value in _ORIGINALS:
        if _raw(obj, name) is not value:
            _setattr(obj, name, value)


# ---- which checks run: the grading process names them; this keeps markers for the collection report ----


def _names(item, marker):
    return [m.args[0] for m in item.iter_markers(marker)]


def pytest_collection_finish(session):
    if _send is not None:
        _send({"kind": "collected", "items": [
            {"nodeid": it.nodeid, "exercises": _names(it, "exercise"), "learning": _names(it, "learning")}
            for it in session.items]})


# ---- plain words for the failures students meet most ----

_PLAIN = [
    (r"does not require grad and does not have a grad_fn|does not require grad",
     "no gradient flows through the result: a tensor was detached (.detach(), .item(), .numpy(), "
     "torch.no_grad() or a new torch.tensor(...)) where the loss needs its gradient"),
    (r"Trying to backward through the graph a second time",
     "the gradient went through a part of the graph twice: hold fixed (.detach()) what the docstring says "
     "is held fixed"),
    (r"The size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton dimension (\d+)",
     "wrong shape: two tensors of sizes {0} and {1} met in one operation (dimension {2}); compare each "
     "tensor's shape with the docstring's"),
    (r"mat1 and mat2 shapes cannot be multiplied \(([\dx]+) and ([\dx]+)\)",
     "wrong shape: a matrix product of shapes {0} and {1}; compare each tensor's shape with the docstring's"),
    (r"a Tensor with (\d+) elements cannot be converted to Scalar",
     "wrong shape: the result should be one number (a 0-d tensor), it has {0}: average over the batch"),
    (r"only one element tensors can be converted to Python scalars",
     "wrong shape: the result should be one number (a 0-d tensor), it has several: average over the batch"),
    (r"The values for attribute 'shape' do not match: (torch\.Size\(\[[\d, ]*\]\)) != (torch\.Size\(\[[\d, ]*\]\))",
     "wrong shape: got {0}, expected {1} (a (B, 1) tensor against a (B,) one broadcasts to (B, B))"),
    (r"shape '\[([-\d, ]*)\]' is invalid for input of size (\d+)",
     "wrong shape: cannot view {1} numbers as [{0}]; compare each tensor's shape with the docstring's"),
    (r"Dimension out of range \(expected to be in range of \[(-?\d+), (-?\d+)\], but got (-?\d+)\)",
     "wrong shape: dimension {2} does not exist in a tensor with fewer dimensions; compare each tensor's shape "
     "with the docstring's"),
]

_SCORE = re.compile(r"^assert (-?[\d.]+(?:e[-+]?\d+)?) (>|>=) (-?[\d.]+(?:e[-+]?\d+)?)$", re.M)


def _plain(excinfo, item, learning: bool) -> str:
    exc = excinfo.value
    text = str(exc)
    if isinstance(exc, NotImplementedError):
        return f"not implemented yet ({text})"
    for pattern, words in _PLAIN:
        m = re.search(pattern, text)
        if m:
            return words.format(*[g if g is not None else "several" for g in m.groups()])
    if isinstance(exc, AssertionError):
        score = _SCORE.search(text)
        if learning and score:
            # the learning checks assert `summary[<metric>] > <threshold>`: say what was got and needed
            line = ""
            entry = excinfo.traceback[-1]
            try:
                line = str(entry.statement).strip()
            except Exception:
                pass
            metric = re.search(r"\[[\"'](\w+)[\"']\]", line)
            what = metric.group(1).replace("_", " ") if metric else "score"
            return (f"the {what} was {float(score.group(1)):.4g}; it needs to be above {float(score.group(3)):.4g} "
                    f"(a correct solution gets more; look at the exercises' 'when it works' column)")
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        shape = re.match(r"assert (torch\.Size\(\[[\d, ]*\]\)) == (.+)$", first)
        if shape:
            return f"wrong shape: got {shape.group(1)}, expected {shape.group(2)}"
        return first or "a check failed"
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# ---- each check: the helpers put back before, looked at after; one signed verdict per check ----

_verdicts: dict = {}


def pytest_runtest_logstart(nodeid, location):
    if _send is not None:
        _restore()
        _verdicts[nodeid] = None
        _send({"kind": "start", "nodeid": nodeid})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if _send is None:
        return
    report = outcome.get_result()
    replaced = _replaced()
    if _verdicts.get(item.nodeid) is not None and _verdicts[item.nodeid][0] == "failed":
        pass  # the first failure stands
    elif replaced and call.when in ("setup", "call"):
        _verdicts[item.nodeid] = ("failed", "the code under test replaced " + ", ".join(replaced)
                                  + ": the check cannot trust its own assertions")
        _restore()
    elif call.excinfo is not None and not report.skipped:
        _verdicts[item.nodeid] = ("failed", _plain(call.excinfo, item, bool(_names(item, "learning"))))
    elif report.skipped:
        _verdicts[item.nodeid] = ("failed", "skipped: " + str(report.longrepr[-1] if isinstance(
            report.longrepr, tuple) else report.longrepr))
    elif call.when == "call" and _verdicts.get(item.nodeid) is None:
        _verdicts[item.nodeid] = ("passed", "")


def pytest_runtest_logfinish(nodeid, location):
    if _send is not None:
        verdict = _verdicts.get(nodeid) or ("failed", "the check did not run to its end")
        _send({"kind": "result", "nodeid": nodeid, "outcome": verdict[0], "message": verdict[1][:1500]})
