"""The result tables pasted in the docs pages are the ones the figure scripts print from their committed
JSON (docs/figures/data/<script>.json): each must appear in its page verbatim, as consecutive lines.
Nothing is trained, fetched or drawn: each script is imported from its path (its `__main__` guard
keeps the command line out) and only its `table` function runs, on the loaded JSON. The same holds for
the README's table of default runs and the overview's evidence rows, made by benchmarks/report.py from
the committed run summaries (benchmarks/results/<folder>/.../summary.json)."""

import contextlib
import functools
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]  # the docs are the repository's, never a student's copy
FIGURES = REPO / "docs" / "figures"
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))
from benchmarks import report  # noqa: E402

sys.path.remove(str(REPO))

# Rows of the overview's evidence table that quote committed runs: (page, how the row's first cell begins, results
# folder, dataset, one label per column in the page's order BC IQL CQL BCQ DT TD3+BC AWAC; a `.py` name
# stands for that script's default runs, no flags but the seed; None for an empty cell). A first cell that
# says "D4RL's references" holds the same runs' final returns on D4RL's scale for the env.
DEFAULT_SCRIPTS = ["bc.py", "iql.py", "cql.py", "bcq.py", "decision_transformer.py", "td3_bc.py", "awac.py"]
HOPPER_20K = ["bc", "iql", "cql_defaults", "bcq", "dt", "td3_bc", "awac"]
HOPPER_100K = ["bc_100k", "iql_100k", "cql_defaults_100k", None, None, "td3_bc_100k", "awac_100k"]  # no DT runs; BCQ ran on medium-replay
HOPPER_100K_MR = HOPPER_100K[:3] + ["bcq_100k"] + HOPPER_100K[4:]
EVIDENCE_ROWS = [
    ("overview.md", "each script's default run, `local/pendulum/medium-replay-v0`, 3 seeds", "pendulum",
     "local/pendulum/medium-replay-v0", DEFAULT_SCRIPTS),
    ("overview.md", "`local/hopper/medium-v0`, 20k steps", "hopper", "local/hopper/medium-v0", HOPPER_20K),
    ("overview.md", "`local/hopper/medium-v0`, 100k steps", "hopper-100k", "local/hopper/medium-v0", HOPPER_100K),
    ("overview.md", "`local/hopper/medium-v0` on D4RL's references, 100k steps", "hopper-100k", "local/hopper/medium-v0",
     HOPPER_100K),
    ("overview.md", "`local/hopper/medium-replay-v0`, 20k steps", "hopper", "local/hopper/medium-replay-v0", HOPPER_20K),
    ("overview.md", "`local/hopper/medium-expert-v0`, 20k steps", "hopper", "local/hopper/medium-expert-v0", HOPPER_20K),
    ("overview.md", "`local/hopper/medium-v0` on D4RL's references, 20k steps", "hopper", "local/hopper/medium-v0", HOPPER_20K),
    ("overview.md", "`local/hopper/medium-replay-v0` on D4RL's references, 20k steps", "hopper", "local/hopper/medium-replay-v0",
     HOPPER_20K),
    ("overview.md", "`local/hopper/medium-expert-v0` on D4RL's references, 20k steps", "hopper", "local/hopper/medium-expert-v0",
     HOPPER_20K),
    ("overview.md", "`local/hopper/medium-replay-v0`, 100k steps", "hopper-100k", "local/hopper/medium-replay-v0",
     HOPPER_100K_MR),
    ("overview.md", "`local/hopper/medium-replay-v0` on D4RL's references, 100k steps", "hopper-100k",
     "local/hopper/medium-replay-v0", HOPPER_100K_MR),
    ("overview.md", "`local/hopper/medium-expert-v0`, 100k steps", "hopper-100k", "local/hopper/medium-expert-v0",
     HOPPER_100K),
    ("overview.md", "`local/hopper/medium-expert-v0` on D4RL's references, 100k steps", "hopper-100k",
     "local/hopper/medium-expert-v0", HOPPER_100K),
]

# (script, which of the tables its `table` prints (0 = first), the page that shows that table)
TABLES = [
    ("bc_quality", 0, "bc.md"),
    ("failure_coverage", 0, "overview.md"),
    ("failure_coverage", 1, "overview.md"),
    ("failure_quality", 0, "overview.md"),
    ("failure_shift", 0, "overview.md"),
    ("offline_to_online", 0, "offline_to_online.md"),
    ("cql_alpha", 0, "cql.md"),
    ("cql_alpha", 0, "overview.md"),
    ("cql_alpha", 1, "cql.md"),
    ("bcq_phi", 0, "bcq.md"),
    ("bcq_phi", 1, "bcq.md"),
    ("td3_bc_alpha", 0, "td3_bc.md"),
    ("td3_bc_alpha", 1, "td3_bc.md"),
    ("bear_support", 0, "bear.md"),
    ("bear_support", 1, "bear.md"),
    ("bcq_test_data", 0, "bcq.md"),
    ("bcq_test_data", 1, "bcq.md"),
    ("model_based_small_data", 0, "overview.md"),
    ("mopo_branch_length", 0, "mopo.md"),
    ("mopo_branch_length", 1, "mopo.md"),
    ("rlpd_default", 0, "rlpd.md"),
    ("rlpd_default", 1, "rlpd.md"),
    ("iql_expectile", 0, "iql.md"),
    ("iql_expectile", 1, "iql.md"),
    ("iql_expectile", 2, "iql.md"),
    ("iql_expectile", 3, "iql.md"),
    ("tt_default", 0, "trajectory_transformer.md"),
    ("tt_default", 1, "trajectory_transformer.md"),
    ("dt_targets", 0, "decision_transformer.md"),
    ("dt_targets", 1, "decision_transformer.md"),
    ("awac_lambda", 0, "awac.md"),
    ("awac_lambda", 1, "awac.md"),
    ("awac_lambda", 2, "awac.md"),
    ("stitching", 0, "overview.md"),
    ("stitching", 0, "trajectory_transformer.md"),
    ("stitching", 1, "trajectory_transformer.md"),
    ("dataset_stats", 0, "datasets.md"),
    ("dataset_stats", 1, "datasets.md"),
]
# figure scripts whose runs are not committed yet: no page may show a table of theirs until their JSON
# is, and then they must move to TABLES (checked below)
PENDING = set()


def command(script: str) -> str:
    """The command that prints the script's tables (and redraws its figure) from the committed JSON."""
    return f"python docs/figures/{script}.py" + (" plot" if script == "cql_alpha" else "")


@functools.lru_cache(maxsize=None)
def load(script: str):
    """The figure script as a module, imported from its path; failure_runs.py, which some import, sits
    beside them."""
    spec = importlib.util.spec_from_file_location(f"docs_figures_{script}", FIGURES / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(FIGURES))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(FIGURES))
    return module


@functools.lru_cache(maxsize=None)
def tables(script: str) -> tuple[tuple[str, ...], ...]:
    """Each Markdown table (its consecutive `|` lines) that the script's `table` prints or returns."""
    module = load(script)
    data = json.loads((FIGURES / "data" / f"{script}.json").read_text())
    if script == "offline_to_online":
        data = module.by_label(data["runs"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        returned = module.table(data)
    blocks, block = [], []
    for line in (out.getvalue() + "\n" + (returned or "")).splitlines():
        if line.startswith("|"):
            block.append(line)
        elif block:
            blocks.append(tuple(block))
            block = []
    if block:
        blocks.append(tuple(block))
    return tuple(blocks)


def find(block: tuple[str, ...], lines: list[str]) -> int | None:
    """Index of the first page line where `block` starts, as consecutive lines; None if nowhere."""
    for i in range(len(lines) - len(block) + 1):
        if tuple(lines[i:i + len(block)]) == block:
            return i
    return None


def mismatch(block: tuple[str, ...], lines: list[str]) -> str:
    """Where the page's table that starts with the same header differs from `block`, in words."""
    starts = [i for i, line in enumerate(lines) if line == block[0]]
    if not starts:
        return "the page has no table with this header line"
    i = starts[0]
    shown = lines[i:i + len(block)]
    diffs = [f"  line {i + 1 + k}: page has      {got!r}\n{' ' * len(str(i + 1 + k))}         script prints {want!r}"
             for k, (got, want) in enumerate(zip(shown + [""] * len(block), block)) if got != want]
    return "the table under the same header differs:\n" + "\n".join(diffs)


@pytest.mark.parametrize("script, index, page", TABLES, ids=[f"{s}[{i}]->{p}" for s, i, p in TABLES])
def test_page_shows_the_table_of_the_committed_json(script, index, page):
    blocks = tables(script)
    assert index < len(blocks), (
        f"`{command(script)}` prints {len(blocks)} table(s); docs/{page} is expected to show table {index + 1}")
    block = blocks[index]
    lines = (REPO / "docs" / page).read_text().splitlines()
    if find(block, lines) is None:
        pytest.fail(
            f"docs/{page} does not show, line for line, table {index + 1} of `{command(script)}` (made from "
            f"docs/figures/data/{script}.json, which is the truth): run that command and paste its table into "
            f"the page in place of the old one; {mismatch(block, lines)}\nexpected:\n" + "\n".join(block))


def test_every_printed_table_is_checked():
    """A script with a `table` function, or a new table printed by one, must be listed in TABLES."""
    with_table = sorted(p.stem for p in FIGURES.glob("*.py") if re.search(r"^def table\(", p.read_text(), re.M))
    listed = {s for s, _, _ in TABLES}
    for script in PENDING:
        assert not (FIGURES / "data" / f"{script}.json").exists(), (
            f"docs/figures/data/{script}.json is committed: move {script} from PENDING to TABLES with its pages")
    with_table = [s for s in with_table if s not in PENDING]
    assert set(with_table) == listed, (
        f"figure scripts with a table function: {with_table}; tests/test_docs_tables.py checks {sorted(listed)}: "
        f"add each missing script's (script, table, page) to TABLES")
    for script in with_table:
        checked = {i for s, i, _ in TABLES if s == script}
        assert checked == set(range(len(tables(script)))), (
            f"`{command(script)}` prints {len(tables(script))} table(s), TABLES checks tables {sorted(checked)} "
            f"(0 = the first): give every table its page")


def test_tables_neither_draw_nor_train():
    """The tables come from the JSON alone: no figure is left open (and nothing else was run to get them)."""
    for script in sorted({s for s, _, _ in TABLES}):
        tables(script)
    if "matplotlib.pyplot" in sys.modules:
        opened = sys.modules["matplotlib.pyplot"].get_fignums()
        assert not opened, f"a table function opened figures {opened}: it must only print from the JSON"


def test_a_changed_number_is_caught():
    """The check itself: the same page with one digit of the table changed must fail to match."""
    block = tables("failure_shift")[0]
    lines = (REPO / "docs" / "overview.md").read_text().splitlines()
    i = find(block, lines)
    assert i is not None, "docs/overview.md does not show the table of `python docs/figures/failure_shift.py`"
    row = i + 2  # the first row of numbers, under the header and the --- line
    changed = list(lines)
    changed[row] = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), lines[row], count=1)
    assert changed[row] != lines[row] and find(block, changed) is None, (
        f"a page whose table has one digit changed ({changed[row]!r}) still matched the script's table")
    assert f"line {row + 1}:" in mismatch(block, changed), (
        f"the failure message must name page line {row + 1}, the one changed; it says: {mismatch(block, changed)}")


@functools.lru_cache(maxsize=None)
def committed_runs(folder: str):
    return report.find_runs([str(RESULTS / folder)])


def test_every_default_run_has_three_committed_seeds():
    runs = report.default_runs(committed_runs("pendulum"))
    seeds = {script: [r.seed for r in rs] for script, rs in runs.items()}
    scripts = sorted(p.name for p in REPO.glob("*.py"))  # the algorithm scripts, at the top level
    assert {s: len(v) for s, v in seeds.items()} == {s: 3 for s in scripts}, (
        f"each script's default run (no flags but the seed) needs 3 committed seeds in benchmarks/results/pendulum: "
        f"{seeds}")


def test_readme_shows_the_default_runs_table():
    block = tuple(report.default_runs_table(committed_runs("pendulum")).splitlines())
    lines = (REPO / "README.md").read_text().splitlines()
    if find(block, lines) is None:
        pytest.fail("README.md does not show, line for line, the table of `python -m benchmarks.report "
                    f"benchmarks/results/pendulum --default-runs`; {mismatch(block, lines)}\nexpected:\n"
                    + "\n".join(block))


@pytest.mark.parametrize("page, first, folder, dataset, labels", EVIDENCE_ROWS,
                         ids=[f"{p}:{d}" for p, _, _, d, _ in EVIDENCE_ROWS])
def test_evidence_row_quotes_committed_runs(page, first, folder, dataset, labels):
    lines = (REPO / "docs" / page).read_text().splitlines()
    rows = [line for line in lines if line.startswith(f"| {first}") and line.count("|") > 2]
    assert len(rows) == 1, f"docs/{page} should have one table row whose first cell begins {first!r}, has {len(rows)}"
    cells = [cell.strip() for cell in rows[0].strip().strip("|").split("|")][1:]
    default_only = all(label is None or label.endswith(".py") for label in labels)
    expected = report.evidence_cells(committed_runs(folder), dataset, labels, default_only,
                                     d4rl_refs="D4RL's references" in first)
    assert cells == expected, (
        f"docs/{page}, row {first!r}: the page has {cells}, the committed runs in benchmarks/results/{folder} give "
        f"{expected} (mean ± population std over seeds)")


def _copied_records(node):
    """Every record in a figure JSON that names a committed results folder as its source."""
    if isinstance(node, dict):
        if str(node.get("source", "")).startswith("benchmarks/results/"):
            yield node
        for value in node.values():
            yield from _copied_records(value)
    elif isinstance(node, list):
        for value in node:
            yield from _copied_records(value)


def test_copies_of_committed_runs_match_them():
    """A figure JSON that copies committed default runs (docs/figures/pendulum_runs.py's `committed`) holds
    what the summaries under benchmarks/results say now: a run committed again fails here until the figure
    command is run again."""
    runs = load("pendulum_runs")
    checked = 0
    for path in sorted((FIGURES / "data").glob("*.json")):
        for record in _copied_records(json.loads(path.read_text())):
            if "label" not in record or not record["source"].startswith("benchmarks/results/pendulum/"):
                continue
            label = record["source"].split("/")[3].split(",")[0]
            now = {r["seed"]: r for r in runs.committed(label)}
            assert record["seed"] in now, f"{path.name}: {label} seed {record['seed']} is no longer committed"
            for key in ("steps", "final", "best", "eval_history"):
                assert record[key] == now[record["seed"]][key], (
                    f"{path.name}: {label} seed {record['seed']}: {key} differs from the committed summary; run "
                    f"`python docs/figures/{path.stem}.py` with its collect option again")
            checked += 1
    assert checked >= 20, f"only {checked} copied records found"
