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


# (random, expert) reference returns of the fake datasets; a run's returns follow from its scores
REFS = {"local/hopper/medium-v0": (0.0, 1000.0), "local/hopper/expert-v0": (0.0, 1000.0),
        "local/pendulum/medium-v0": (-1000.0, 0.0), "mujoco/hopper/medium-v0": (-20.272305, 3234.3)}


def to_return(score, refs):
    return None if score is None else refs[0] + score / 100 * (refs[1] - refs[0])


def add_run(out, label, dataset, seed, final, best, steps=1000, wall=10.0, history=None, script=None, record=False,
            refs=None, start=1700000000):
    """A run as the sweep leaves it: DIR/<label>/<dataset>/seed<S>/{run.json, runs/<name>/summary.json}; its
    evaluations are (step, return, score) with the dataset's references, which `record` writes in the summary
    (as the scripts do now; older summaries lack them)."""
    cell = Path(out) / label / dataset.replace("/", "-") / f"seed{seed}"
    run_dir = cell / "runs" / f"{dataset.replace('/', '-')}__{label}__{seed}__{start}"
    run_dir.mkdir(parents=True)
    script = script or f"{label}.py"
    (cell / "run.json").write_text(json.dumps({"label": label, "script": script, "dataset_id": dataset, "seed": seed}))
    (cell / "output.log").write_text("training...\n")
    (run_dir / "events.out.tfevents.1700000000.host").write_bytes(b"\0" * 64)
    refs = refs or REFS.get(dataset, (0.0, 100.0))
    ret = to_return(final, refs) if final is not None else -100.0
    history = history or [[steps // 2, to_return(best, refs) if best is not None else -150.0, best],
                          [steps, ret, final]]
    summary = {"algorithm": Path(script).stem, "dataset_id": dataset, "seed": seed, "steps": steps,
               "final_normalized_score": final, "best_normalized_score": best, "final_return_mean": ret,
               "final_returns": [ret], "reference": "dataset", "sps": 100.0, "wall_time_s": wall,
               "eval_history": history}
    if record:
        summary.update(ref_min_score=refs[0] if final is not None else None,
                       ref_max_score=refs[1] if final is not None else None)
    (run_dir / "summary.json").write_text(json.dumps(summary))


HOPPER, PENDULUM = "local/hopper/medium-v0", "local/pendulum/medium-v0"


@pytest.fixture
def sweep_dir(tmp_path):
    out = tmp_path / "sweep"
    add_run(out, "bc", HOPPER, 0, final=40.0, best=45.0, wall=10.0)
    add_run(out, "bc", HOPPER, 1, final=60.0, best=70.0, wall=20.0)
    add_run(out, "bc", PENDULUM, 0, final=20.0, best=30.0, steps=500)
    add_run(out, "bc", PENDULUM, 1, final=100.0, best=101.0, steps=500)
    add_run(out, "iql", HOPPER, 3, final=70.0, best=75.0, record=True)
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
    # bc on hopper (references 0 and 1000): finals 40, 60 -> returns 400, 600 -> 500 +- 100 (population std);
    # scores 50.0 +- 10.0. On D4RL's Hopper scale (random -20.272305, expert 3234.3):
    # 100 * (500 + 20.272305) / 3254.572305 = 15.99, std 100 * 100 / 3254.572305 = 3.07.
    # bests 45, 70 -> returns 450, 700 -> 575 +- 125, scores 57.5 +- 12.5, D4RL scale 18.29 +- 3.84; wall 15
    assert row(text, f"`{HOPPER}`", "bc") == [f"`{HOPPER}`", "bc", "2", "1,000", "500.0 ± 100.0", "50.0 ± 10.0",
                                               "16.0 ± 3.1", "575.0 ± 125.0", "57.5 ± 12.5", "18.3 ± 3.8", "15"]
    # one seed: its value alone
    assert row(text, f"`{HOPPER}`", "iql")[2:] == ["1", "1,000", "700.0", "70.0", "22.1", "750.0", "75.0", "23.7", "10"]
    # Pendulum has no D4RL references: no second normalisation
    assert row(text, f"`{PENDULUM}`", "bc")[2:] == [
        "2", "500", "-400.0 ± 400.0", "60.0 ± 40.0", "", "-345.0 ± 355.0", "65.5 ± 35.5", "", "10"]
    # CORL's numbers stand apart, as context, with the differences said; never in a row of ours
    corl = text[text.index("### CORL's D4RL scores, for context"):]
    assert row(corl, "`hopper-medium-v2`")[1:] == ["53.51 ± 1.76", "59.08 ± 3.77", "67.53 ± 3.78", "65.10 ± 1.61",
                                                  "60.37 ± 3.49", "74.45 ± 9.14"]
    for said in ("other data", "other references", "another budget", "not a D4RL score either"):
        assert said in corl, said
    assert "67.53" not in text[:text.index("### CORL's D4RL scores")], "a CORL number beside ours"
    # the std convention is stated under the table and the curves
    assert text.count("ddof 0") >= 3, "the std convention must be said on every table and curve caption"
    assert "Not a D4RL score: other data, other env version" in text
    assert row(text, "iql", "1,000", "1", "1")[4] == "70.0 [70.0, 70.0]", "one run: the IQM is that run, with no spread"
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
    assert drawn == ["results_aggregates_local-hopper.png", "results_aggregates_local-pendulum.png",
                     "results_curves_local-hopper-medium-v0.png", "results_curves_local-pendulum-medium-v0.png",
                     "results_profile_local-hopper.png", "results_profile_local-pendulum.png"], drawn
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
    assert row(text, f"`{HOPPER}`", "bc10")[5] == "30.0"
    assert row(text, f"`{HOPPER}`", "dt")[5] == "12.0", "a plain decision_transformer run counts as dt"
    assert [row(text, "`mujoco/pen/human-v0`", "dt")[i] for i in (5, 8)] == ["n/a", "n/a"], (
        "no reference scores: n/a, not 0")


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
    # another sweep's collect into the same folder would delete these runs: refused, unless --replace
    other = tmp_path / "other"
    add_run(other, "cql", HOPPER, 0, final=1.0, best=1.0)
    (other / "sweep.json").write_text(json.dumps({"invocations": []}))
    with pytest.raises(SystemExit, match="holds 5 run summaries that .* does not"):
        report.main(["--collect", str(other), "--into", str(into)])
    assert len(list(into.rglob("summary.json"))) == 5, "a refused collect must leave the folder as it was"
    assert report.main(["--collect", str(other), "--into", str(into), "--replace"]) == 0
    assert len(list(into.rglob("summary.json"))) == 1
    assert report.main(["--collect", str(sweep_dir), "--into", str(into), "--replace"]) == 0
    (into / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="holds files a collect did not write"):
        report.main(["--collect", str(sweep_dir), "--into", str(into)])


def test_scores_are_pooled_within_an_environment_and_readings_are_shown(sweep_dir, tmp_path):
    (sweep_dir / "reading.md").write_text("On Hopper, the runs show X.\n")
    add_run(sweep_dir, "bc", HOPPER, 2, final=0.0, best=1.0)
    add_run(sweep_dir, "bc", HOPPER, 3, final=200.0, best=201.0)
    add_run(sweep_dir, "iql", "local/hopper/expert-v0", 0, final=90.0, best=91.0)
    text = report.page(report.find_runs([str(sweep_dir)]), [str(sweep_dir)], str(tmp_path / "r.md"), "img")
    hopper = text[text.index("### `local/hopper/*`"):text.index("### `local/pendulum/*`")]
    pendulum = text[text.index("### `local/pendulum/*`"):text.index("## Learning curves")]
    # bc on Hopper alone, {0, 40, 60, 200}: IQM = mean of the middle two = 50, mean = 75; its Pendulum
    # runs (20, 100) never join them, and Pendulum's pool is {20, 100}: IQM = mean = 60
    for section, expected in ((hopper, (50.0, 75.0)), (pendulum, (60.0, 60.0))):
        cells = row(section, "bc")
        for cell, value in zip(cells[4:], expected):
            point, lo, hi = map(float, re.match(r"(\S+) \[(\S+), (\S+)\]", cell).groups())
            assert point == value and lo <= point <= hi, f"bc: expected {value} inside its CI, got {cell}"
    assert row(hopper, "iql")[2:4] == ["2", "1"], "iql: two Hopper datasets, one run each"
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


def test_runs_are_pooled_by_their_references_not_by_env_name(tmp_path):
    out = tmp_path / "sweep"
    # the same scores on D4RL-referenced Hopper data (recorded) and on ours (an older summary: inferred)
    for seed, final in enumerate((10.0, 20.0, 30.0, 40.0)):
        add_run(out, "bc", HOPPER, seed, final=final, best=final + 5)
        add_run(out, "bc", "mujoco/hopper/medium-v0", seed, final=final + 50, best=final + 55, record=True)
        add_run(out, "iql", HOPPER, seed, final=(10.0, 20.0, 30.0, 100.0)[seed], best=105.0)  # IQM 25, mean 40
    runs = report.find_runs([str(out)])
    assert {r.references_from for r in runs} == {"inferred", "recorded"}
    ours = next(r for r in runs if r.dataset == HOPPER)
    assert np.allclose(ours.references, REFS[HOPPER]), "two evaluations fix the references of an older summary"
    assert [p.name for p in report.pools(runs)] == ["local/hopper", "mujoco/hopper"], "one pool per normalisation"
    text = report.page(runs, [str(out)], str(tmp_path / "r.md"), "img")
    local = text[text.index("### `local/hopper/*`"):text.index("### `mujoco/hopper/*`")]
    d4rl = text[text.index("### `mujoco/hopper/*`"):text.index("## Learning curves")]
    # {10, 20, 30, 40}: IQM of the middle two 25, mean 25; {60, 70, 80, 90}: 75 and 75. Pooled by env name
    # (all eight in one aggregate) the mean would be 50.
    for section, value, refs in ((local, 25.0, "random 0.0, expert 1,000.0 (inferred"),
                                 (d4rl, 75.0, "random -20.3, expert 3,234.3 (recorded")):
        assert refs in section, section
        assert [float(c.split()[0]) for c in row(section, "bc")[4:6]] == [value, value], section
    # our references get a second pair of columns on D4RL's: the IQM and the mean, with their intervals, of the
    # rescored returns themselves, by brute force (the same bootstrap, run on the rescored runs); D4RL's own pool, none
    from rliable import metrics

    lo, hi = report.D4RL_REFERENCES["hopper"]
    both = lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)])  # noqa: E731
    for label, finals in (("bc", (10.0, 20.0, 30.0, 40.0)), ("iql", (10.0, 20.0, 30.0, 100.0))):
        rescored = np.array([[100 * (to_return(x, REFS[HOPPER]) - lo) / (hi - lo)] for x in finals])
        point, ci = report.interval_estimates({label: rescored}, both)[label]
        brute = [f"{point[i]:.1f} [{ci[0][i]:.1f}, {ci[1][i]:.1f}]" for i in range(2)]
        assert row(local, label)[6:8] == brute, (label, row(local, label), brute)
    assert "IQM, D4RL refs" not in d4rl and len(row(d4rl, "bc")) == 6, d4rl
    # same references, other families: one pool
    add_run(out, "iql", "other/hopper/medium-v0", 0, final=1.0, best=1.0, refs=REFS[HOPPER], record=True)
    assert [p.name for p in report.pools(report.find_runs([str(out)]))] == [
        "local/hopper + other/hopper", "mujoco/hopper"]
    # a summary whose recorded references are not those its scores were made with is an error
    bad = tmp_path / "bad"
    add_run(bad, "bc", HOPPER, 0, final=10.0, best=20.0, record=True)
    summary = next(bad.rglob("summary.json"))
    summary.write_text(summary.read_text().replace('"ref_max_score": 1000.0', '"ref_max_score": 2000.0'))
    with pytest.raises(SystemExit, match="records reference returns"):
        report.find_runs([str(bad)])


def test_figures_one_colour_per_label_legends_outside_budgets_apart(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out = tmp_path / "sweep"
    labels = [f"s{i:02d}" for i in range(12)]  # more labels than matplotlib's 10 default colours
    for i, label in enumerate(labels):
        for seed in (0, 1):
            add_run(out, label, HOPPER, seed, final=5.0 * i + seed, best=5.0 * i + seed + 1,
                    steps=5000 if i == 11 else 1000)
    seen, original = [], Figure.savefig

    def record(fig, *args, **kwargs):
        fig.canvas.draw()
        for ax in fig.axes:
            lines = {line.get_label(): line.get_color() for line in ax.get_lines() if not line.get_label().startswith("_")}
            legend = ax.get_legend()
            outside = legend is None or legend.get_window_extent().x0 >= ax.get_window_extent().x1
            seen.append((Path(args[0]).name, ax.get_title(), lines, outside, ax.get_xlim()))
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    report.draw(report.find_runs([str(out)]), str(tmp_path / "img"))
    colour = {}
    for name, title, lines, outside, _ in seen:
        assert outside, f"{name} ({title}): the legend covers the curves"
        for label, c in lines.items():
            colour.setdefault(label, set()).add(matplotlib.colors.to_hex(c))
    assert all(len(c) == 1 for c in colour.values()), f"a label changes colour between figures: {colour}"
    assert len({next(iter(c)) for c in colour.values()}) == len(colour) == 12, f"two labels share a colour: {colour}"
    curves = [(title, xlim) for name, title, _, _, xlim in seen if name.startswith("results_curves")]
    assert [t for t, _ in curves] == [f"{HOPPER}, 1,000 gradient steps", f"{HOPPER}, 5,000 gradient steps"], curves
    assert curves[0][1][1] < 2000 < curves[1][1][1], "each budget on axes of its own, scaled to it"


def test_script_of_reads_the_script_from_a_sweep_label():
    cases = {"iql": "iql", "iql_100k": "iql", "td3_bc_200k": "td3_bc", "bc10": "bc", "bc_100k": "bc",
             "bcq_100k": "bcq", "cql_defaults": "cql", "cal_ql": "cal_ql", "mopo_h5_true": "mopo", "ttx": None, "s01": None}
    assert {label: report.script_of(label) for label in cases} == cases


def test_a_script_keeps_its_hue_and_labels_sharing_axes_differ(tmp_path, monkeypatch):
    import colorsys

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out = tmp_path / "sweep"
    budgets = {"cql": 1000, "cql_defaults": 1000, "cql_defaults_100k": 5000, "iql": 1000, "iql_100k": 5000,
               "awac_100k": 5000, "s00": 1000}
    for i, (label, steps) in enumerate(budgets.items()):
        for seed in (0, 1):
            add_run(out, label, HOPPER, seed, final=5.0 * i + seed, best=5.0 * i + seed + 1, steps=steps)
    seen, original = {}, Figure.savefig

    def record(fig, *args, **kwargs):
        for ax in fig.axes:
            here = {line.get_label(): matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines()
                    if not line.get_label().startswith("_")}
            assert len(set(here.values())) == len(here), f"two labels share a colour on one set of axes: {here}"
            for label, c in here.items():
                seen.setdefault(label, set()).add(c)
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    report.draw(report.find_runs([str(out)]), str(tmp_path / "img"))
    assert set(seen) == set(budgets) and all(len(c) == 1 for c in seen.values()), seen
    colour = {label: next(iter(c)) for label, c in seen.items()}

    def hue(label):
        return colorsys.rgb_to_hsv(*matplotlib.colors.to_rgb(colour[label]))[0]

    assert colour["iql_100k"] == colour["iql"] and colour["cql_defaults_100k"] == colour["cql"], colour
    assert colour["cql_defaults"] != colour["cql"] and abs(hue("cql_defaults") - hue("cql")) < 0.02, colour
    assert len({colour[label] for label in ("cql", "iql", "awac_100k", "s00")}) == 4, colour


def test_at_once_counts_the_runs_of_a_folder_that_overlapped_in_time(tmp_path):
    # folder a: runs over [0, 10), [5, 15), [8, 9) and [15, 20): three at once (at 8). Folder b: one run, alone
    # however it overlaps a's. Folder c: two runs, then two that start as the first two end: two at once, not four.
    for name, spans in {"a": [(0, 10), (5, 10), (8, 1), (15, 5)], "b": [(5, 10)],
                        "c": [(0, 10), (0, 10), (10, 10), (10, 10)]}.items():
        for seed, (start, wall) in enumerate(spans):
            add_run(tmp_path / name, f"bc_{name}", HOPPER, seed, final=10.0, best=10.0, wall=wall, start=1700000000 + start)
        (tmp_path / name / "sweep.json").write_text(json.dumps({"invocations": []}))
    runs = report.find_runs([str(tmp_path)])
    assert report.at_once(runs, [str(tmp_path)]) == "`a` 3; `b` 1; `c` 2"


def test_many_budgets_wrap_into_rows_of_panels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = report.panels(plt, 8)
    assert len(axes) == len(fig.axes) == 8, "the ninth place of the 3x3 grid is removed"
    rows = sorted({round(ax.get_position().y0, 3) for ax in axes})
    assert len(rows) == 3 and max(sum(round(ax.get_position().y0, 3) == y for ax in axes) for y in rows) == 3
    plt.close(fig)
    fig, axes = report.panels(plt, 2)
    assert len({round(ax.get_position().y0, 3) for ax in axes}) == 1, "two budgets stay side by side"
    plt.close(fig)
