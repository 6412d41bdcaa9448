"""Sweep: run scripts x datasets x seeds, each run its own process, locally or on Ray; resumable.

    python -m benchmarks.sweep --scripts bc iql --datasets local/pendulum/medium-v0 --seeds 0 1 2 --out sweeps/pendulum
    python -m benchmarks.sweep ... --extra-args="--eval-episodes 20" --script-args cql="--total-steps 100000"
    python -m benchmarks.sweep ... --launcher ray --cpus-per-run 1 --gpus-per-run 0.25 [--ray-address auto]

Each run is the script itself (`python bc.py --dataset-id D --seed S ...`), so the scripts stay the one
source of truth. Layout of the sweep folder DIR:

    DIR/sweep.json                                   the command lines, appended at each invocation
                                                     (under DIR/sweep.json.lock: sweeps may share DIR)
    DIR/<label>/<dataset>/seed<S>/run.json           what ran: script, dataset, seed, command
    DIR/<label>/<dataset>/seed<S>/output.log         everything the run printed
    DIR/<label>/<dataset>/seed<S>/run.lock           locked while the run's script lives (another sweep skips it)
    DIR/<label>/<dataset>/seed<S>/runs/<run_name>/   what the script writes (summary.json, TensorBoard)
    DIR/failures/<label>__<dataset>__seed<S>.log     the last lines of a failed run

A run whose summary.json exists is done and never run again, so the same command resumes a stopped
sweep; a finished run that another command made (other flags) is refused, never passed off as this
one. `--scripts` takes the names in SCRIPTS (bc cql bcq iql dt td3_bc awac ..., where the file exists),
or LABEL=NAME to run one script twice under different labels, e.g. `bc bc10=bc --script-args
bc10="--top-fraction 0.1"`. docs/sweeps.md explains the local, Ray, cluster and Slurm set-ups;
`python -m benchmarks.report DIR` turns the summaries into tables and figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"bc": "bc.py", "cql": "cql.py", "bcq": "bcq.py", "iql": "iql.py", "dt": "decision_transformer.py",
           "td3_bc": "td3_bc.py", "awac": "awac.py", "mopo": "mopo.py", "combo": "combo.py",
           "cal_ql": "cal_ql.py", "rlpd": "rlpd.py", "bear": "bear.py", "tt": "trajectory_transformer.py"}
TAIL_LINES = 30
EXIT_SKIPPED = 75  # some runs were held by another sweep: nothing failed, run the command again later
LABEL_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scripts", nargs="*", default=["bc", "cql", "bcq", "iql", "dt"],
                   help="script names (bc cql bcq iql dt td3_bc awac) or LABEL=NAME; default: the five")
    p.add_argument("--datasets", nargs="*", default=[], help="Minari dataset ids (at least one)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="seeds per (script, dataset)")
    p.add_argument("--out", required=True, help="the sweep folder DIR (created; reused to resume)")
    p.add_argument("--extra-args", default="",
                   help='flags for every script, e.g. --extra-args="--total-steps 20000" (the = is needed before --)')
    p.add_argument("--script-args", nargs="*", default=[], metavar='LABEL="FLAGS"',
                   help='flags for one script label, after --extra-args (so they win), e.g. cql="--total-steps 100000"')
    p.add_argument("--jobs", type=int, default=None,
                   help="local launcher: runs at a time (default: CPUs / --cpus-per-run)")
    p.add_argument("--launcher", choices=["local", "ray"], default="local")
    p.add_argument("--cpus-per-run", type=float, default=1.0,
                   help="CPUs a run reserves (Ray) and its torch threads, rounded down, at least 1 (both launchers)")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray: GPUs a run reserves (fractions share a GPU)")
    p.add_argument("--ray-address", default=None,
                   help="Ray: 'auto' to join the cluster started by `ray start`; default: a new local Ray")
    p.add_argument("--scripts-root", default=str(REPO),
                   help="the folder holding the scripts (default: this repository)")
    return p.parse_args(argv)


def parse_scripts(names: list[str], root: Path) -> tuple[dict[str, str], list[str]]:
    """{label: script file} in the order given, and the errors."""
    labels, errors = {}, []
    for entry in dict.fromkeys(names):
        label, _, name = entry.partition("=") if "=" in entry else (entry, "", entry)
        if name not in SCRIPTS:
            errors.append(f"unknown script '{name}' (choose from {', '.join(SCRIPTS)})")
        elif not LABEL_RE.match(label):
            errors.append(f"label '{label}' must use only letters, digits, '_', '.', '-'")
        elif label in labels:
            errors.append(f"label '{label}' given twice")
        elif not (root / SCRIPTS[name]).is_file():
            errors.append(f"script '{name}': no file {root / SCRIPTS[name]}")
        else:
            labels[label] = SCRIPTS[name]
    return labels, errors


def check_args(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Bad input fails here, before any folder is made or anything runs."""
    labels, errors = parse_scripts(args.scripts, Path(args.scripts_root))
    if not args.scripts:
        errors.append("--scripts: give at least one script")
    if not args.datasets:
        errors.append("--datasets: give at least one dataset id")
    if not args.seeds:
        errors.append("--seeds: give at least one seed")
    if args.jobs is not None and args.jobs < 1:
        errors.append(f"--jobs must be at least 1 (got {args.jobs})")
    if not args.cpus_per_run > 0:
        errors.append(f"--cpus-per-run must be positive (got {args.cpus_per_run})")
    if args.gpus_per_run < 0:
        errors.append(f"--gpus-per-run must be >= 0 (got {args.gpus_per_run})")
    if args.launcher == "local" and (args.gpus_per_run > 0 or args.ray_address):
        errors.append("--gpus-per-run and --ray-address need --launcher ray")
    per_script = {}
    for item in args.script_args:
        label, sep, flags = item.partition("=")
        if not sep:
            errors.append(f"--script-args '{item}': expected LABEL=\"FLAGS\"")
        elif label not in labels:
            errors.append(f"--script-args '{item}': '{label}' is not among --scripts")
        else:
            per_script[label] = per_script.get(label, []) + shlex.split(flags)
    # A missing local/ dataset is built by the first script that needs it (common/make_dataset.py), without a
    # lock: parallel runs would each build it at once. Build first, once.
    minari_root = Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))
    for dataset in dict.fromkeys(args.datasets):
        if dataset.startswith("local/") and not (minari_root / dataset / "data").is_dir():
            errors.append(f"dataset '{dataset}' is not built in {minari_root}; build it first, once: "
                          f"python -m common.make_dataset --preset {dataset.split('/')[1]}")
    try:
        shlex.split(args.extra_args)
    except ValueError as e:
        errors.append(f"--extra-args: {e}")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))
    return labels, per_script


def plan(args, labels, per_script) -> list[dict]:
    """One entry per run: everything a worker needs, as plain data (it travels to Ray workers)."""
    out, root, extra = Path(args.out).resolve(), Path(args.scripts_root).resolve(), shlex.split(args.extra_args)
    runs = []
    for label, script in labels.items():
        for dataset in dict.fromkeys(args.datasets):
            for seed in dict.fromkeys(args.seeds):
                runs.append({
                    "label": label, "script": script, "script_path": str(root / script), "dataset_id": dataset,
                    "seed": seed, "dir": str(out / label / dataset.replace("/", "-") / f"seed{seed}"),
                    "args": ["--dataset-id", dataset, "--seed", str(seed), *extra, *per_script.get(label, [])],
                })
    return runs


def command(run: dict) -> str:
    """The run's command line, as run.json records it: a finished run counts only for this exact command."""
    return shlex.join(["python", run["script"], *run["args"]])


def recorded_command(run_dir: str | Path) -> str | None:
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()).get("command") if path.is_file() else None


def mismatches(runs: list[dict]) -> list[str]:
    """Finished runs in the sweep folder that another command made: resuming must not pass them off as these."""
    found = []
    for run in runs:
        made_by = recorded_command(run["dir"]) if finished_summary(run["dir"]) else None
        if made_by is not None and made_by != command(run):
            found.append(f"{run['label']} on {run['dataset_id']}, seed {run['seed']}: finished as `{made_by}`, "
                         f"asked now as `{command(run)}`")
    return found


def finished_summary(run_dir: str) -> Path | None:
    done = sorted(Path(run_dir).glob("runs/*/summary.json"))
    return done[0] if done else None


def failure_path(out: Path, run: dict) -> Path:
    return out / "failures" / f"{run['label']}__{run['dataset_id'].replace('/', '-')}__seed{run['seed']}.log"


def write_json(path: Path, obj) -> None:
    # a temporary name of this process's own, then an atomic rename: a reader never sees half a file
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def locked_history(path: Path):
    """DIR/sweep.json, read and rewritten under an exclusive lock: two sweeps may share one DIR."""
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        history = json.loads(path.read_text()) if path.exists() else {"invocations": []}
        yield history
        write_json(path, history)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)  # signal 0: is anyone in the group left? (sends nothing)
        return True
    except ProcessLookupError:
        return False


def kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the run's whole process group (the script and anything it started); whatever in the group is
    still alive after `grace` seconds, the script or a child that outlived it, gets SIGKILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the script once it exits: a zombie would still count as a member of the group
        if not group_alive(proc.pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_one(run: dict, threads: int, on_start=None) -> dict:
    """Run one script to the end in its own folder and process group; never raises for a failed run.
    Self-contained (standard library only): Ray ships it to worker processes."""
    run_dir = Path(run["dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    # Another sweep into the same DIR may hold this run: leave it to that one (held until this function returns).
    lock = open(run_dir / "run.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return {"ok": False, "busy": True, "returncode": None, "seconds": 0.0, "tail": "", "final": None}
    except OSError:
        pass  # a file system without locks (some network mounts): run unguarded
    with lock:
        summary = finished_summary(run_dir)
        if summary is not None:  # finished by another sweep since this one started
            if recorded_command(run_dir) not in (None, command(run)):
                return {"ok": False, "returncode": None, "seconds": 0.0, "final": None,
                        "tail": f"[sweep] another sweep finished this run as `{recorded_command(run_dir)}`, "
                                f"not `{command(run)}`: choose another --out or label\n"}
            return {"ok": True, "returncode": 0, "seconds": 0.0, "tail": "",
                    "final": json.loads(summary.read_text()).get("final_normalized_score")}
        return run_locked(run, run_dir, threads, on_start, lock)


def run_locked(run: dict, run_dir: Path, threads: int, on_start, lock) -> dict:
    # A run killed before its summary leaves TensorBoard files only: start from a clean folder.
    shutil.rmtree(run_dir / "runs", ignore_errors=True)
    cmd = [sys.executable, run["script_path"], *run["args"]]
    write_json(run_dir / "run.json", {
        "label": run["label"], "script": run["script"], "dataset_id": run["dataset_id"], "seed": run["seed"],
        "command": command(run)})
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    t0 = time.time()
    with open(run_dir / "output.log", "w") as log:
        # The script inherits the run's lock: should this worker die (a Ray worker lost), the run stays locked for
        # as long as its script lives, and no other sweep (or retry) starts a second copy in this folder.
        proc = subprocess.Popen(cmd, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, pass_fds=(lock.fileno(),))
        if on_start is not None:
            on_start(proc)
        try:
            while True:  # wait in slices: Ray's cancel raises KeyboardInterrupt only between Python bytecodes
                try:
                    returncode = proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:  # Ctrl-C in this process (Ray's cancel): take the run down with us
            kill_group(proc)
            raise
    summary = finished_summary(run_dir)
    with open(run_dir / "output.log", errors="replace") as log:
        tail = log.readlines()[-TAIL_LINES:]
    if returncode == 0 and summary is None:
        tail.append("[sweep] the script exited with status 0 but wrote no runs/*/summary.json\n")
    result = {"ok": returncode == 0 and summary is not None, "returncode": returncode, "seconds": time.time() - t0,
              "tail": "".join(tail), "final": None}
    if result["ok"]:
        result["final"] = json.loads(summary.read_text()).get("final_normalized_score")
    return result


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts runs as they end, writes failure records, prints one line per run."""

    def __init__(self, out: Path, total: int, already: int, to_run: int):
        self.out, self.total, self.done, self.to_run = out, total, already, to_run
        self.finished_now, self.failed, self.busy, self.t0 = 0, [], [], time.time()

    def record(self, run: dict, result: dict) -> None:
        self.finished_now += 1
        name = f"{run['label']} on {run['dataset_id']}, seed {run['seed']}"
        failure = failure_path(self.out, run)
        if result.get("busy"):
            self.busy.append(run)
            what = "skipped: another sweep into this folder is running it"
        elif result["ok"]:
            self.done += 1
            failure.unlink(missing_ok=True)  # an earlier failure of this run is history now
            what = f"final {result['final']:.1f}" if result["final"] is not None else "done"
        else:
            self.failed.append(run)
            failure.parent.mkdir(exist_ok=True)
            failure.write_text(f"# {name}: exit status {result['returncode']}\n"
                               f"# command: {command(run)}\n"
                               f"# folder: {run['dir']}\n{result['tail']}")
            what = f"FAILED (status {result['returncode']}, see {failure})"
        elapsed = time.time() - self.t0
        remaining = self.to_run - self.finished_now
        eta = elapsed / self.finished_now * remaining
        print(f"[{self.done}/{self.total} done, {len(self.failed)} failed | elapsed {duration(elapsed)} | "
              f"ETA {duration(eta)}] {name}: {what} ({result['seconds']:.0f} s)", flush=True)


def launch_local(todo: list[dict], jobs: int, threads: int, progress: Progress) -> None:
    lock, procs, stopping = threading.Lock(), set(), threading.Event()

    def started(proc):
        with lock:
            procs.add(proc)
            if stopping.is_set():  # started while we were stopping: stop it too
                kill_group(proc, grace=0.5)

    def work(run):
        if stopping.is_set():
            return None
        try:
            return run_one(run, threads, on_start=started)
        except Exception as e:  # e.g. the folder cannot be written: this run failed, the others go on
            return {"ok": False, "returncode": None, "seconds": 0.0, "tail": f"[sweep] {type(e).__name__}: {e}\n"}

    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = {pool.submit(work, run): run for run in todo}
    try:
        for fut in as_completed(futures):
            progress.record(futures[fut], fut.result())
    except BaseException:
        stopping.set()
        with lock:
            running = [p for p in procs if p.poll() is None]
        for proc in running:
            kill_group(proc)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


def launch_ray(todo: list[dict], args, threads: int, progress: Progress) -> None:
    try:
        import ray
    except ImportError:
        sys.exit("error: --launcher ray needs Ray: pip install -r requirements-cluster.txt")
    # Ship this module's functions by value: a worker on another node needs only the standard library.
    if __name__ != "__main__":  # __main__ travels by value anyway
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # Ray reports usage statistics over the network unless told not to; export RAY_USAGE_STATS_ENABLED=1 to allow
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started_here = not ray.is_initialized()
    if started_here:
        # "local": a new instance of our own, even where `ray start` left one (or the file of a dead one)
        ray.init(address=args.ray_address or "local", include_dashboard=False, log_to_driver=False)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # ray.init put its own in: stop cleanly instead
    # max_retries=0: Ray would rerun a task whose worker died, in the same folder, while the first copy's script
    # (its own process group) may still run; a lost worker is a failed run here, and the next sweep retries it.
    task = ray.remote(run_one).options(num_cpus=args.cpus_per_run, num_gpus=args.gpus_per_run, max_retries=0)
    refs = {task.remote(run, threads): run for run in todo}
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                try:
                    result = ray.get(ref)
                except Exception as e:  # the worker died or the task raised: a failed run, not a failed sweep
                    result = {"ok": False, "returncode": None, "seconds": 0.0, "tail": f"[sweep] Ray: {e}\n"}
                progress.record(refs[ref], result)
    except BaseException:
        for ref in pending:  # a running task gets a KeyboardInterrupt, and run_one kills its process group
            ray.cancel(ref)
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=15.0)
        raise
    finally:
        if started_here:
            ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    labels, per_script = check_args(args)
    runs = plan(args, labels, per_script)
    out = Path(args.out).resolve()
    mismatched = mismatches(runs)
    if mismatched:
        shown = mismatched[:5] + ([f"... and {len(mismatched) - 5} more"] if len(mismatched) > 5 else [])
        sys.exit(f"error: {args.out} holds finished runs made with other flags:\n       " + "\n       ".join(shown) +
                 "\n       Choose another --out, give these runs another label (LABEL=NAME, e.g. bc_100k=bc), "
                 "or delete their folders to rerun them.")
    todo = [run for run in runs if finished_summary(run["dir"]) is None]
    threads = max(1, math.floor(args.cpus_per_run))
    jobs = args.jobs or max(1, (os.cpu_count() or 1) // threads)
    out.mkdir(parents=True, exist_ok=True)

    # DIR/sweep.json: every invocation appended, with how it ended (the report lists the commands).
    history_path = out / "sweep.json"
    entry = {"command": shlex.join(["python", "-m", "benchmarks.sweep", *argv]),
             "settings": vars(args),
             "started": datetime.datetime.now().isoformat(timespec="seconds"), "runs": len(runs),
             "already_done": len(runs) - len(todo)}
    with locked_history(history_path) as history:
        history["invocations"].append(entry)
        index = len(history["invocations"]) - 1

    print(f"{len(runs)} runs ({len(labels)} scripts x {len(set(args.datasets))} datasets x "
          f"{len(set(args.seeds))} seeds): {len(runs) - len(todo)} already done, {len(todo)} to run with the "
          f"{args.launcher} launcher, {threads} torch thread(s) each, in {out}", flush=True)
    progress = Progress(out, len(runs), len(runs) - len(todo), len(todo))
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # scancel/kill: stop as on Ctrl-C
    status = "finished"
    try:
        if todo and args.launcher == "local":
            launch_local(todo, min(jobs, len(todo)), threads, progress)
        elif todo:
            launch_ray(todo, args, threads, progress)
    except KeyboardInterrupt:
        status = "interrupted"
        progress.done = sum(finished_summary(run["dir"]) is not None for run in runs)  # a summary may beat the signal
    except BaseException:
        status = "crashed"
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        entry.update(finished=datetime.datetime.now().isoformat(timespec="seconds"), status=status,
                     done=progress.done, failed=[failure_path(out, r).name for r in progress.failed],
                     skipped=[failure_path(out, r).stem for r in progress.busy])
        with locked_history(history_path) as history:  # re-read: another sweep may have appended meanwhile
            history["invocations"][index] = entry

    if status == "interrupted":
        print(f"\nInterrupted: {progress.done}/{len(runs)} runs done and kept; the same command resumes the sweep.")
        return 130
    for run in progress.failed:
        print(f"FAILED: {run['label']} on {run['dataset_id']}, seed {run['seed']}: {failure_path(out, run)}")
    for run in progress.busy:
        print(f"SKIPPED: {run['label']} on {run['dataset_id']}, seed {run['seed']}: another sweep is running it; "
              f"run this command again once it ends")
    skipped = (f", {len(progress.busy)} skipped (another sweep is running them: run this command again once it "
               f"ends)" if progress.busy else "")
    print(f"{progress.done}/{len(runs)} runs done, {len(progress.failed)} failed{skipped}. "
          f"Report: python -m benchmarks.report {shlex.quote(args.out)}")
    # 75 (EX_TEMPFAIL, "try again later"): nothing failed, but not every run is done yet
    return 1 if progress.failed else EXIT_SKIPPED if progress.busy else 0


if __name__ == "__main__":
    sys.exit(main())
