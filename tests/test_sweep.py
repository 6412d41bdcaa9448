"""The sweep runner, against fake scripts (tiny files that behave like the real ones) and once against
bc.py: every run done, resume, failures, Ctrl-C, the Ray launcher, bad input."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import testdata

# benchmarks/ is the repository's, never a student's copy; the path goes again so that `import bc`
# still finds the scripts under test.
sys.path.insert(0, str(testdata.REPO))
from benchmarks import report, sweep  # noqa: E402

sys.path.remove(str(testdata.REPO))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network, ever

# A stand-in for a training script: logs its call, then writes a summary.json as the real ones do.
# A dataset id containing "bad" makes it fail, one containing "slow" makes it sleep first.
FAKE = textwrap.dedent('''
    import argparse, json, os, sys, time
    from pathlib import Path
    p = argparse.ArgumentParser()
    p.add_argument("--dataset-id"); p.add_argument("--seed", type=int)
    p.add_argument("--total-steps", type=int, default=100)
    args = p.parse_args()
    here = Path(__file__).resolve().parent
    with open(here / "calls.txt", "a") as f:
        f.write(f"{Path(__file__).stem} {args.dataset_id} {args.seed} {args.total_steps} {os.getcwd()} "
                f"{os.environ['OMP_NUM_THREADS']}\\n")
    run_dir = Path("runs") / f"{args.dataset_id.replace('/', '-')}__fake__{args.seed}__{int(time.time())}"
    run_dir.mkdir(parents=True)
    (run_dir / "events.out.tfevents.fake").write_text("x")
    if "slow" in args.dataset_id:
        (here / "slow.pid").write_text(str(os.getpid()))
        time.sleep(600)
    if "orphan" in args.dataset_id:  # kill the worker that started it, as when a Ray worker is lost; finish alone
        os.kill(os.getppid(), 9)
        time.sleep(2)
    if "bad" in args.dataset_id:
        print("\\n".join(f"line {i}" for i in range(100)))
        sys.exit("error: this dataset is bad")
    score = 10.0 * args.seed + len(args.dataset_id)
    summary = {"algorithm": Path(__file__).stem, "dataset_id": args.dataset_id, "seed": args.seed,
               "steps": args.total_steps, "final_normalized_score": score, "best_normalized_score": score + 1,
               "final_return_mean": -100.0, "wall_time_s": 1.0, "sps": 100.0,
               "eval_history": [[args.total_steps // 2, -150.0, score - 5], [args.total_steps, -100.0, score]]}
    (run_dir / "summary.json.tmp").write_text(json.dumps(summary))
    os.replace(run_dir / "summary.json.tmp", run_dir / "summary.json")
''')


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "scripts"
    root.mkdir()
    for name in ("bc.py", "iql.py"):
        (root / name).write_text(FAKE)
    return root


def calls(root):
    path = root / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def summaries(out):
    return sorted(p.relative_to(out).as_posix() for p in Path(out).glob("*/*/*/runs/*/summary.json"))


def test_every_run_done_in_its_own_folder(fake_root, tmp_path):
    out = tmp_path / "sweep"
    rc = sweep.main(["--scripts", "bc", "iql", "--datasets", "d/a-v0", "d/b-v0", "--seeds", "0", "1",
                     "--out", str(out), "--jobs", "2", "--scripts-root", str(fake_root),
                     "--extra-args=--total-steps 50", "--script-args", 'iql=--total-steps 70'])
    assert rc == 0, "a sweep with no failure should exit with status 0"
    found = summaries(out)
    assert len(found) == 8, f"expected 8 summaries (2 scripts x 2 datasets x 2 seeds), found {found}"
    for line in calls(fake_root):
        script, dataset, seed, steps, cwd, threads = line.split()
        assert Path(cwd) == out / script / dataset.replace("/", "-") / f"seed{seed}", (
            f"each run must work in DIR/<script>/<dataset>/seed<S>, this one ran in {cwd}")
        assert steps == ("70" if script == "iql" else "50"), (
            f"--extra-args go to every script and --script-args (after them) win: {script} got --total-steps {steps}")
        assert threads == "1", f"each run should get one torch thread, got OMP_NUM_THREADS={threads}"
    meta = json.loads((out / "iql" / "d-b-v0" / "seed1" / "run.json").read_text())
    assert (meta["label"], meta["script"], meta["dataset_id"], meta["seed"]) == ("iql", "iql.py", "d/b-v0", 1), meta
    history = json.loads((out / "sweep.json").read_text())["invocations"]
    assert len(history) == 1 and history[0]["status"] == "finished" and history[0]["done"] == 8, history


def test_resume_runs_only_what_is_missing(fake_root, tmp_path):
    out = tmp_path / "sweep"
    argv = ["--scripts", "bc", "--datasets", "d/a-v0", "--seeds", "0", "1", "2", "--out", str(out),
            "--scripts-root", str(fake_root)]
    assert sweep.main(argv) == 0
    assert len(calls(fake_root)) == 3
    # A run killed earlier left a folder without a summary: it is rerun from a clean folder.
    runs = out / "bc" / "d-a-v0" / "seed1" / "runs"
    victim = runs / "killed-run"
    next(runs.iterdir()).rename(victim)
    (victim / "summary.json").unlink()
    t0 = time.time()
    assert sweep.main(argv) == 0
    assert time.time() - t0 < 10, "re-running a finished sweep should take seconds"
    assert len(calls(fake_root)) == 4, f"only the run without a summary should run again, calls: {calls(fake_root)}"
    assert calls(fake_root)[-1].split()[2] == "1", "the rerun should be seed 1, the one without a summary"
    assert not victim.exists() and len(list(runs.iterdir())) == 1, (
        "the stale run folder (no summary) should be removed before the rerun")
    assert len(summaries(out)) == 3
    history = json.loads((out / "sweep.json").read_text())["invocations"]
    assert [h["already_done"] for h in history] == [0, 2], f"sweep.json should record each invocation: {history}"


def test_a_failure_is_recorded_and_the_others_go_on(fake_root, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["--scripts", "bc", "iql", "--datasets", "d/bad-v0", "d/good-v0", "--seeds", "0", "--out", str(out),
            "--jobs", "2", "--scripts-root", str(fake_root)]
    assert sweep.main(argv) == 1, "a sweep with a failed run should exit with status 1"
    assert len(summaries(out)) == 2, "the two runs on the good dataset should finish despite the failures"
    records = sorted(p.name for p in (out / "failures").iterdir())
    assert records == ["bc__d-bad-v0__seed0.log", "iql__d-bad-v0__seed0.log"], records
    text = (out / "failures" / records[0]).read_text()
    assert "error: this dataset is bad" in text and "line 99" in text and "line 60" not in text, (
        "the failure record should hold the last ~30 lines of the run's output")
    printed = capsys.readouterr().out
    assert "FAILED: bc on d/bad-v0, seed 0" in printed and "2/4 runs done, 2 failed" in printed, printed
    # A resume retries only the failed runs; they fail again.
    assert sweep.main(argv) == 1
    assert len(calls(fake_root)) == 6, "resume should retry the 2 failed runs only"


@pytest.mark.parametrize("bad, message", [
    (["--scripts", "ppo"], "unknown script 'ppo'"),
    (["--scripts", "bc", "--datasets"], "--datasets: give at least one dataset id"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--script-args", "cql=--total-steps 5"], "'cql' is not among --scripts"),
    (["--scripts", "bc", "awac"], "script 'awac': no file"),
    (["--datasets", "local/pendulum/medium-v0"], "python -m common.make_dataset --preset pendulum"),
])
def test_bad_input_fails_before_anything_runs(fake_root, tmp_path, bad, message):
    out = tmp_path / "sweep"
    argv = ["--scripts", "bc", "--datasets", "d/a-v0", "--out", str(out), "--scripts-root", str(fake_root), *bad]
    with pytest.raises(SystemExit) as e:
        sweep.main(argv)
    assert message in str(e.value), f"expected an error saying {message!r}, got {e.value}"
    assert not out.exists() and not calls(fake_root), "nothing may be made or run on bad input"


def test_ray_launcher_without_ray_says_what_to_install(fake_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SystemExit, match="pip install -r requirements-cluster.txt"):
        sweep.main(["--scripts", "bc", "--datasets", "d/a-v0", "--out", str(tmp_path / "s"),
                    "--scripts-root", str(fake_root), "--launcher", "ray"])


@pytest.mark.parametrize("launcher, sig", [("local", signal.SIGINT), ("ray", signal.SIGINT), ("ray", signal.SIGTERM)])
def test_ctrl_c_kills_the_runs_and_keeps_the_finished_ones(fake_root, tmp_path, launcher, sig):
    if launcher == "ray":
        pytest.importorskip("ray", reason="pip install -r requirements-cluster.txt")
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "benchmarks.sweep", "--scripts", "bc", "--datasets", "d/fast-v0", "d/slow-v0",
            "--seeds", "0", "--jobs", "2", "--out", str(out), "--scripts-root", str(fake_root), "--launcher", launcher]
    # a shell that starts pytest in the background makes it ignore SIGINT, and children inherit that:
    # give the sweep the default handler, as a terminal would
    sweeper = subprocess.Popen(argv, cwd=testdata.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not ((fake_root / "slow.pid").exists() and summaries(out)) and time.time() < deadline:
            time.sleep(0.1)
        slow = int((fake_root / "slow.pid").read_text())
        t0 = time.time()
        sweeper.send_signal(sig)
        printed, _ = sweeper.communicate(timeout=180)
    finally:
        if sweeper.poll() is None:  # the test failed before the sweep stopped: leave nothing running
            sweeper.kill()
            sweeper.communicate()
    assert sweeper.returncode == 130, f"an interrupted sweep should exit with status 130:\n{printed}"
    # the slow run sleeps 600 s: stopping well before that means it was killed, not waited for
    assert time.time() - t0 < 60, f"the sweep should stop within seconds, took {time.time() - t0:.0f} s"
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(slow, 0)  # the running run was killed, not left behind
    assert [p.split("/runs/")[0] for p in summaries(out)] == ["bc/d-fast-v0/seed0"], (
        "the finished run is kept, the killed one left no summary")
    assert "Interrupted: 1/2 runs done" in printed, printed
    assert not (out / "failures").exists(), "a run killed by Ctrl-C is not a failure"
    history = json.loads((out / "sweep.json").read_text())["invocations"]
    assert history[-1]["status"] == "interrupted", history


def test_ray_launcher_on_a_local_ray(fake_root, tmp_path):
    ray = pytest.importorskip("ray", reason="pip install -r requirements-cluster.txt")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "sweep"
        argv = ["--scripts", "bc", "iql", "--datasets", "d/a-v0", "d/bad-v0", "--seeds", "0", "1", "--out", str(out),
                "--scripts-root", str(fake_root), "--launcher", "ray", "--cpus-per-run", "1"]
        assert sweep.main(argv) == 1, "the runs on d/bad-v0 fail"
        assert len(summaries(out)) == 4, "every run on the good dataset should finish on Ray"
        assert len(list((out / "failures").iterdir())) == 4, "every failed Ray run should leave a failure record"
        assert sweep.main(argv) == 1
        assert len(calls(fake_root)) == 12, "a resume on Ray reruns only the 4 failed runs"
    finally:
        ray.shutdown()


def test_sweep_of_the_real_bc(pendulum_expert, tmp_path):
    out = tmp_path / "sweep"
    rc = sweep.main(["--scripts", "bc", "--datasets", pendulum_expert, "--seeds", "3", "--out", str(out),
                     "--scripts-root", str(testdata.ROOT),
                     "--extra-args=--total-steps 200 --eval-freq 100 --eval-episodes 2 --no-cuda"])
    assert rc == 0, (out / "failures").iterdir() if (out / "failures").exists() else "bc.py failed"
    (path,) = summaries(out)
    summary = json.loads((out / path).read_text())
    assert (summary["algorithm"], summary["dataset_id"], summary["seed"], summary["steps"]) == (
        "bc", pendulum_expert, 3, 200), summary
    assert [row[0] for row in summary["eval_history"]] == [100, 200], summary["eval_history"]
    # the summary records the reference returns of its scores, and the report reads the real summary format
    (run,) = report.find_runs([str(out)])
    assert run.references_from == "recorded" and run.references == (summary["ref_min_score"], summary["ref_max_score"])
    text = report.page([run], [str(out)], str(tmp_path / "r.md"), str(tmp_path / "img"))
    assert (f"| `{pendulum_expert}` | bc | 1 | 200 | {summary['final_return_mean']:.1f} "
            f"| {summary['final_normalized_score']:.1f} |") in text, text


def test_two_sweeps_share_one_folder(fake_root, tmp_path):
    # Pieces of a grid may run side by side into one DIR: neither may lose the other's sweep.json entry.
    out = tmp_path / "sweep"
    first = subprocess.Popen([sys.executable, "-m", "benchmarks.sweep", "--scripts", "bc", "--datasets", "d/a-v0",
                              "--seeds", *map(str, range(10)), "--out", str(out), "--jobs", "1",
                              "--scripts-root", str(fake_root)], cwd=testdata.REPO)
    deadline = time.time() + 60
    while not (out / "sweep.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert sweep.main(["--scripts", "iql", "--datasets", "d/a-v0", "--seeds", "0", "--out", str(out),
                       "--scripts-root", str(fake_root)]) == 0
    assert first.poll() is None, "the first sweep should still be running when the second ends"
    assert first.wait(timeout=120) == 0
    history = json.loads((out / "sweep.json").read_text())["invocations"]
    assert sorted((h["settings"]["scripts"][0], h["status"], h["done"]) for h in history) == [
        ("bc", "finished", 10), ("iql", "finished", 1)], f"both sweeps should be recorded as finished: {history}"
    assert not list(out.glob("*.tmp")), "no temporary file should be left behind"


def test_a_run_under_way_in_another_sweep_is_skipped(fake_root, tmp_path, capsys):
    out = tmp_path / "sweep"
    first = subprocess.Popen([sys.executable, "-m", "benchmarks.sweep", "--scripts", "bc", "--datasets", "d/slow-v0",
                              "--seeds", "0", "--out", str(out), "--scripts-root", str(fake_root)],
                             cwd=testdata.REPO)
    try:
        deadline = time.time() + 60
        while not (fake_root / "slow.pid").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (fake_root / "slow.pid").exists(), "the slow fake run never started"
        rc = sweep.main(["--scripts", "bc", "--datasets", "d/slow-v0", "d/a-v0", "--seeds", "0", "--out", str(out),
                         "--scripts-root", str(fake_root)])
        assert rc == sweep.EXIT_SKIPPED == 75, "a sweep that left a run to another must not exit with status 0"
        printed = capsys.readouterr().out
        assert "SKIPPED: bc on d/slow-v0, seed 0: another sweep is running it" in printed, printed
        assert printed.strip().splitlines()[-1].startswith("1/2 runs done, 0 failed, 1 skipped (another sweep"), (
            f"the final line must say that a run was skipped:\n{printed}")
        history = json.loads((out / "sweep.json").read_text())["invocations"]
        second = next(h for h in history if len(h["settings"]["datasets"]) == 2)
        assert second["skipped"] == ["bc__d-slow-v0__seed0"] and second["done"] == 1, second
        assert first.poll() is None and (out / "bc" / "d-slow-v0" / "seed0" / "runs").exists(), (
            "the second sweep must neither stop the first one's run nor clear its folder")
        assert [c.split()[1] for c in calls(fake_root)] == ["d/slow-v0", "d/a-v0"], calls(fake_root)
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)


def test_a_rerun_with_other_flags_is_refused_not_passed_off(fake_root, tmp_path):
    out = tmp_path / "sweep"
    argv = ["--scripts", "bc", "iql", "--datasets", "d/a-v0", "--seeds", "0", "--out", str(out),
            "--scripts-root", str(fake_root), "--extra-args=--total-steps 50"]
    assert sweep.main(argv) == 0 and len(calls(fake_root)) == 2
    assert sweep.main(argv) == 0 and len(calls(fake_root)) == 2, "the same command resumes (nothing to do)"
    before = (out / "sweep.json").read_text()
    for changed in (["--extra-args=--total-steps 70"], ["--script-args", "iql=--total-steps 70"]):
        with pytest.raises(SystemExit) as e:
            sweep.main(argv + changed)
        message = str(e.value)
        assert "holds finished runs made with other flags" in message, message
        assert "finished as `python iql.py --dataset-id d/a-v0 --seed 0 --total-steps 50`" in message, message
        assert (out / "sweep.json").read_text() == before and len(calls(fake_root)) == 2, (
            "a refused sweep must neither run nor record anything")
    # under another label the same script runs afresh, beside the old runs
    assert sweep.main(["--scripts", "iql_70=iql", "--datasets", "d/a-v0", "--seeds", "0", "--out", str(out),
                       "--scripts-root", str(fake_root), "--extra-args=--total-steps 70"]) == 0
    assert calls(fake_root)[-1].split()[3] == "70" and len(summaries(out)) == 3


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its parent, does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_stopping_a_run_kills_what_outlives_sigterm(tmp_path):
    # a run's script that exits on SIGTERM, with a child (e.g. a worker it started) that ignores SIGTERM
    pid_file = tmp_path / "child.pid"
    child = (f"import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             f"open({str(pid_file) + '.tmp'!r}, 'w').write(str(os.getpid())); "
             f"os.replace({str(pid_file) + '.tmp'!r}, {str(pid_file)!r}); time.sleep(600)")
    leader = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys, time; "
                               f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(600)"],
                              start_new_session=True)
    try:
        deadline = time.time() + 60
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        survivor = int(pid_file.read_text())
        sweep.kill_group(leader, grace=1.0)
        assert leader.poll() is not None, "the script itself must be stopped"
        deadline = time.time() + 10
        while _alive(survivor) and time.time() < deadline:
            time.sleep(0.05)
        assert not _alive(survivor), "a process of the run's group that survives SIGTERM must get SIGKILL"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_a_run_whose_worker_died_is_not_started_twice(fake_root, tmp_path):
    # A worker (a Ray worker, or a sweep killed with SIGKILL) dies while its run's script goes on: a retry of
    # the run, or another sweep, must leave that folder to the live script.
    run = sweep.plan(sweep.parse_args(["--scripts", "bc", "--datasets", "d/slow-v0", "--seeds", "0", "--out",
                                       str(tmp_path / "sweep"), "--scripts-root", str(fake_root)]),
                     {"bc": "bc.py"}, {})[0]
    worker = subprocess.Popen([sys.executable, "-c", "import json, sys; from benchmarks import sweep; "
                               "sweep.run_one(json.loads(sys.argv[1]), 1)", json.dumps(run)], cwd=testdata.REPO)
    started = []

    def stop_at_once(proc):  # a second copy would sleep for 600 s: record it and stop it
        started.append(proc)
        sweep.kill_group(proc, grace=0.5)

    try:
        deadline = time.time() + 60
        while not (fake_root / "slow.pid").exists() and time.time() < deadline:
            time.sleep(0.05)
        slow = int((fake_root / "slow.pid").read_text())
        worker.kill()
        worker.wait()
        assert _alive(slow), "the run's script lives on after its worker died (it has its own session)"
        result = sweep.run_one(run, 1, on_start=stop_at_once)
        assert result.get("busy") and not started, "a second copy of a live run was started in its folder"
        assert len(calls(fake_root)) == 1 and (Path(run["dir"]) / "runs").exists()
    finally:
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.killpg(slow, signal.SIGKILL)


def test_ray_does_not_retry_a_run_whose_worker_died(fake_root, tmp_path):
    ray = pytest.importorskip("ray", reason="pip install -r requirements-cluster.txt")
    out = tmp_path / "sweep"
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        rc = sweep.main(["--scripts", "bc", "--datasets", "d/orphan-v0", "--seeds", "0", "--out", str(out),
                         "--scripts-root", str(fake_root), "--launcher", "ray"])
    finally:
        ray.shutdown()
    # the orphaned script finishes on its own: wait for it, so that nothing is left running
    deadline = time.time() + 60
    while not summaries(out) and time.time() < deadline:
        time.sleep(0.1)
    assert len(calls(fake_root)) == 1, f"Ray retried the run in the same folder: {calls(fake_root)}"
    assert rc == 1 and (out / "failures" / "bc__d-orphan-v0__seed0.log").exists(), (
        "a run whose worker died is a failed run (the next sweep retries it), not a retried or skipped one")
