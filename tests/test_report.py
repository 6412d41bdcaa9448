"""The report: table numbers worked out by hand from a few fake summaries, exact regeneration, the
collected tree, and docs/results.md against the committed runs."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import testdata

# benchmarks/ is the repository's, never a student's copy (see test_sweep.py)
sys.path.insert(0, str(testdata.REPO))
from benchmarks import report  # noqa: E402

sys.path.remove(str(testdata.REPO))


def add_run(out, label, dataset, seed, final, best, steps=1000, wall=10.0, ret=-100.0, history=None, script=None):
    """A run as the sweep leaves it: DIR/<label>/<dataset>/seed<S>/{run.json, runs/<name>/summary.json}."""
    cell = Path(out) / label / dataset.replace("/", "-") / f"seed{seed}"
    run_dir = cell / "runs" / f"{dataset.replace('/', '-')}__{label}__{seed}__1700000000"
    run_dir.mkdir(parents=True)
    script = script or f"{label}.py"
    (cell / "run.json").write_text(json.dumps({"label": label, "script": script, "dataset_id": dataset, "seed": seed}))
    (cell / "output.log").write_text("training...\n")
    (run_dir / "events.out.tfevents.1700000000.host").write_bytes(b"\0" * 64)
    history = history or [[steps // 2, ret - 50, None if final is None else final - 10], [steps, ret, final]]
    (run_dir / "summary.json").write_text(json.dumps({
        "algorithm": Path(script).stem, "dataset_id": dataset, "seed": seed, "steps": steps,
        "final_normalized_score": final, "best_normalized_score": best, "final_return_mean": ret,
        "final_returns": [ret], "reference": "dataset", "sps": 100.0, "wall_time_s": wall, "eval_history": history}))


HOPPER, PENDULUM = "local/hopper/medium-v0", "local/pendulum/medium-v0"


@pytest.fixture
def sweep_dir(tmp_path):
    out = tmp_path / "sweep"
    add_run(out, "bc", HOPPER, 0, final=40.0, best=45.0, wall=10.0)
    add_run(out, "bc", HOPPER, 1, final=60.0, best=70.0, wall=20.0)
    add_run(out, "bc", PENDULUM, 0, final=20.0, best=30.0, steps=500)
    add_run(out, "bc", PENDULUM, 1, final=100.0, best=101.0, steps=500)
    add_run(out, "iql", HOPPER, 3, final=70.0, best=75.0, ret=1500.0)
    (out / "sweep.json").write_text(json.dumps({"invocations": [
        {"command": "python -m benchmarks.sweep --scripts bc iql --out sweep"},
        {"command": "python -m benchmarks.sweep --scripts bc iql --out sweep"},
        # stopped before any run finished: it made nothing on the page
        {"command": "python -m benchmarks.sweep --scripts iql --seeds 9 --out sweep", "status": "interrupted",
         "already_done": 0, "done": 0}]}))
    return out


def row(text, *first_cells):
    start = "| " + " | ".join(first_cells) + " |"
    rows = [line for line in text.splitlines() if line.startswith(start)]
    assert len(rows) == 1, f"expected one table row starting {start!r}, found {rows}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_table_numbers_by_hand(sweep_dir, tmp_path):
    text = report.page(report.find_runs([str(sweep_dir)]), [str(sweep_dir)], str(tmp_path / "results.md"),
                       str(tmp_path / "img"))
    # bc on hopper: finals 40, 60 -> mean 50, population std 10; bests 45, 70 -> 57.5 +- 12.5; wall 10, 20 -> 15
    assert row(text, f"`{HOPPER}`", "bc") == [f"`{HOPPER}`", "bc", "2", "1,000", "50.0 ± 10.0", "57.5 ± 12.5",
                                               "-100.0 ± 0.0", "15", "53.51 ± 1.76"], "bc on hopper"
    # one seed: its value alone; CORL's IQL on hopper-medium-v2 beside it
    assert row(text, f"`{HOPPER}`", "iql")[2:] == ["1", "1,000", "70.0", "75.0", "1500.0", "10", "67.53 ± 3.78"]
    # Pendulum has no D4RL namesake: no CORL number
    assert row(text, f"`{PENDULUM}`", "bc")[2:] == [
        "2", "500", "60.0 ± 40.0", "65.5 ± 35.5", "-100.0 ± 0.0", "10", ""]
    assert row(text, "iql", "1", "1")[3] == "70.0 [70.0, 70.0]", "one run: the IQM is that run, with no spread"
    assert "--seeds 9" not in text, "an invocation that finished no run should not be listed"
    assert text.count("python -m benchmarks.sweep --scripts bc iql --out sweep") == 1, (
        "a command given twice (a resume) is listed once")


def test_the_same_runs_give_the_same_page_and_the_figures(sweep_dir, tmp_path):
    for seed in range(4, 12):  # enough runs that another bootstrap draw would move the CIs
        add_run(sweep_dir, "iql", HOPPER, seed, final=37.3 * seed % 101, best=100.0)
    out, figures = tmp_path / "docs" / "results.md", tmp_path / "docs" / "img"
    argv = [str(sweep_dir), "--out", str(out), "--figures", str(figures)]
    assert report.main(argv) == 0
    first = out.read_text()
    np.random.seed(12345)  # another process starts numpy's global generator elsewhere
    assert report.main(argv) == 0
    assert out.read_text() == first, "regenerating from the same summaries must give the same bytes"
    drawn = sorted(p.name for p in figures.iterdir())
    assert drawn == ["results_aggregates_hopper.png", "results_aggregates_pendulum.png",
                     "results_curves_local-hopper-medium-v0.png", "results_curves_local-pendulum-medium-v0.png",
                     "results_profile_hopper.png", "results_profile_pendulum.png"], drawn
    assert all((figures / name).stat().st_size > 1000 for name in drawn)
    for name in drawn:
        assert f"](img/{name})" in first, f"the page should show {name}"
    assert f"Regenerate: `python -m benchmarks.report {sweep_dir} --out {out} --figures {figures}`" in first
    # --check: the page matches; after a summary changes, it no longer does
    assert report.main([*argv, "--check"]) == 0
    summary = next(sweep_dir.glob("bc/local-hopper-medium-v0/seed0/runs/*/summary.json"))
    summary.write_text(summary.read_text().replace('"final_normalized_score": 40.0', '"final_normalized_score": 41.0'))
    assert report.main([*argv, "--check"]) == 1, "--check must notice a page that no longer matches its runs"


def test_labels_missing_scores_and_plain_runs_folders(tmp_path):
    out = tmp_path / "sweep"
    add_run(out, "bc10", HOPPER, 0, final=30.0, best=31.0, script="bc.py")  # bc10=bc --top-fraction 0.1
    add_run(out, "dt", "mujoco/pen/human-v0", 0, final=None, best=None, script="decision_transformer.py")
    plain = tmp_path / "runs" / "x"  # a script's own runs/ folder, no sweep around it
    plain.mkdir(parents=True)
    (plain / "summary.json").write_text(json.dumps({
        "algorithm": "decision_transformer", "dataset_id": HOPPER, "seed": 5, "steps": 10,
        "final_normalized_score": 12.0, "best_normalized_score": 12.0, "final_return_mean": 3.0,
        "wall_time_s": 1.0, "eval_history": [[10, 3.0, 12.0]]}))
    (tmp_path / "runs" / "y").mkdir()  # an --eval-checkpoint summary: not a training run
    (tmp_path / "runs" / "y" / "summary.json").write_text(json.dumps({"dataset_id": HOPPER, "normalized_score": 1.0}))
    runs = report.find_runs([str(out), str(tmp_path / "runs")])
    text = report.page(runs, [str(out)], str(tmp_path / "r.md"), str(tmp_path / "img"))
    assert row(text, f"`{HOPPER}`", "bc10")[-1] == "", "bc10 is not CORL's BC: no CORL number beside it"
    assert row(text, f"`{HOPPER}`", "dt")[-1] == "65.10 ± 1.61", "a plain decision_transformer run counts as dt"
    assert row(text, "`mujoco/pen/human-v0`", "dt")[4:6] == ["n/a", "n/a"], "no reference scores: n/a, not 0"


def test_two_summaries_of_one_run_are_an_error(sweep_dir, tmp_path):
    copy = tmp_path / "copy"
    add_run(copy, "bc", HOPPER, 0, final=1.0, best=1.0)
    with pytest.raises(SystemExit, match="two summaries for bc on local/hopper/medium-v0, seed 0"):
        report.find_runs([str(sweep_dir), str(copy)])


def test_collect_copies_only_the_small_files(sweep_dir, tmp_path):
    (sweep_dir / "failures").mkdir()
    (sweep_dir / "failures" / "iql__local-pendulum-medium-v0__seed3.log").write_text("Traceback ...\n")
    into = tmp_path / "results" / "demo"
    assert report.main(["--collect", str(sweep_dir), "--into", str(into)]) == 0
    copied = sorted(p.relative_to(into).as_posix() for p in into.rglob("*") if p.is_file())
    assert all(name.endswith(("summary.json", "run.json", ".log")) or name == "sweep.json" for name in copied), copied
    assert not any("tfevents" in name or "output.log" in name for name in copied), copied
    assert len([n for n in copied if n.endswith("summary.json")]) == 5 and "sweep.json" in copied, copied
    assert json.loads((into / "sweep.json").read_text())["collect"].startswith("python -m benchmarks.report --collect ")
    # the collected tree gives the same tables as the sweep itself, and lists the failure
    a = report.page(report.find_runs([str(sweep_dir)]), [str(sweep_dir)], "r.md", "img")
    b = report.page(report.find_runs([str(into)]), [str(into)], "r.md", "img")
    assert a[a.index("## Per dataset"):a.index("![IQM")] == b[b.index("## Per dataset"):b.index("![IQM")]
    assert "`iql__local-pendulum-medium-v0__seed3`" in b
    # collecting again replaces the copy; a folder with other files is refused
    assert report.main(["--collect", str(sweep_dir), "--into", str(into)]) == 0
    (into / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="holds files a collect did not write"):
        report.main(["--collect", str(sweep_dir), "--into", str(into)])


def test_scores_are_pooled_within_an_environment_and_readings_are_shown(sweep_dir, tmp_path):
    (sweep_dir / "reading.md").write_text("On Hopper, the runs show X.\n")
    add_run(sweep_dir, "bc", HOPPER, 2, final=0.0, best=1.0)
    add_run(sweep_dir, "bc", HOPPER, 3, final=200.0, best=201.0)
    add_run(sweep_dir, "iql", "local/hopper/expert-v0", 0, final=90.0, best=91.0)
    text = report.page(report.find_runs([str(sweep_dir)]), [str(sweep_dir)], str(tmp_path / "r.md"), "img")
    hopper = text[text.index("### hopper"):text.index("### pendulum")]
    pendulum = text[text.index("### pendulum"):text.index("## Learning curves")]
    # bc on Hopper alone, {0, 40, 60, 200}: IQM = mean of the middle two = 50, mean = 75; its Pendulum
    # runs (20, 100) never join them, and Pendulum's pool is {20, 100}: IQM = mean = 60
    for section, expected in ((hopper, (50.0, 75.0)), (pendulum, (60.0, 60.0))):
        cells = row(section, "bc")
        for cell, value in zip(cells[3:], expected):
            point, lo, hi = map(float, re.match(r"(\S+) \[(\S+), (\S+)\]", cell).groups())
            assert point == value and lo <= point <= hi, f"bc: expected {value} inside its CI, got {cell}"
    assert row(hopper, "iql")[1:3] == ["2", "1"], "iql: two Hopper datasets, one run each"
    assert "different sets of datasets" in hopper and "different sets" not in pendulum
    assert "iql" not in pendulum, "iql has no Pendulum run"
    notes = text[text.index("## What the runs show"):text.index("## Across datasets")]
    assert "On Hopper, the runs show X." in notes


def test_committed_results_match_docs_results(monkeypatch):
    assert list((testdata.REPO / "benchmarks" / "results").rglob("summary.json")), "no committed run summaries"
    monkeypatch.chdir(testdata.REPO)
    assert report.main(["benchmarks/results", "--out", "docs/results.md", "--figures", "docs/img", "--check"]) == 0, (
        "docs/results.md differs from what benchmarks/results gives: regenerate it with "
        "`python -m benchmarks.report benchmarks/results --out docs/results.md --figures docs/img`")
