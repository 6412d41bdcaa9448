"""What the figure scripts of the algorithm pages share (iql_expectile.py, awac_lambda.py, dt_targets.py,
tt_default.py, rlpd_default.py, bcq_test_data.py): train with the sweep runner, on the default data or on the test suite's Pendulum sets,
and read back the summaries, the TensorBoard scalars and the committed default runs.

Layout of a work folder W:

    W/minari/                                                    the test sets, built here (never ~/.minari)
    W/<sweep>/<label>/<dataset>/seed<S>/runs/<run>/summary.json  training (benchmarks/sweep.py), with its
                                                                 TensorBoard events beside it

Every run is a script started with its own flags, one torch thread; a run whose summary exists is
never run again, so a stopped figure command resumes where it stopped.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "figures" / "data"
COMMITTED = ROOT / "benchmarks" / "results" / "pendulum"  # the default runs of docs/results.md
DEFAULT = "local/pendulum/medium-replay-v0"
MIXED = "test/pendulum/mixed-v0"
EXPERT = "test/pendulum/expert-v0"

# tests/conftest.py's fixtures: references (random policy, noise-free controller) and the sets
SETS = {
    "test/pendulum/expert-v0": "testdata.rollout_pendulum(20, 0.2, seed=1)",
    "test/pendulum/mixed-v0": "testdata.rollout_pendulum(30, 0.5, seed=2, random_fraction=0.5)",
}
BUILD = """
import sys
sys.path.insert(0, "tests")
import testdata
low = testdata.random_pendulum_return(20, seed=123)
high = float(testdata.rollout_pendulum(20, 0.0, seed=7)[1].mean())
episodes, _ = {episodes}
testdata.write_dataset("{dataset}", episodes, "Pendulum-v1", ref_min_score=low, ref_max_score=high)
print(f"built {dataset}: references {{low:.1f}} (random), {{high:.1f}} (controller)")
"""


def env(workdir: Path | None = None) -> dict:
    """One torch thread; with a work folder, Minari reads (and the test sets go to) W/minari."""
    e = dict(os.environ, OMP_NUM_THREADS="1")
    if workdir is not None:
        e["MINARI_DATASETS_PATH"] = str(workdir / "minari")
    return e


def build(workdir: Path, datasets=(MIXED,)) -> dict:
    """tests/conftest.py's sets under W/minari (once each); returns the env that finds them."""
    e = env(workdir)
    for dataset in datasets:
        if not (workdir / "minari" / dataset.replace("/", os.sep)).exists():
            code = BUILD.format(dataset=dataset, episodes=SETS[dataset])
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=e, check=True)
    return e


def build_mixed(workdir: Path) -> dict:
    return build(workdir, (MIXED,))


def sweep(workdir: Path, name: str, scripts: list[str], datasets: list[str], seeds: list[int], extra_args: str = "",
          script_args: list[str] = (), run_env: dict | None = None) -> None:
    """Train every (script, dataset, seed) of the list, one run at a time, skipping those already done."""
    cmd = [sys.executable, "-m", "benchmarks.sweep", "--scripts", *scripts, "--datasets", *datasets,
           "--seeds", *map(str, seeds), "--out", str(workdir / name), "--jobs", "1"]
    if extra_args:
        cmd.append(f"--extra-args={extra_args}")
    if script_args:
        cmd += ["--script-args", *script_args]
    subprocess.run(cmd, cwd=ROOT, env=run_env or env(), check=True)


def runs(folder: Path, dataset: str, label: str = "*"):
    """(label, seed, run folder, summary) of every finished run of a sweep folder (of one label, or all)."""
    for path in sorted(folder.glob(f"{label}/{dataset.replace('/', '-')}/seed*/runs/*/summary.json")):
        yield path.parts[-6], int(path.parts[-4][len("seed"):]), path.parent, json.loads(path.read_text())


def scalars(run_dir: Path, tags: list[str]) -> dict:
    """The TensorBoard scalars of a run: {tag: [[step, value], ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [[e.step, e.value] for e in events.Scalars(tag)] for tag in tags}


def record(label: str, seed: int, s: dict, source: str) -> dict:
    """The few numbers of a training summary that the tables use."""
    return {"label": label, "seed": seed, "steps": s["steps"], "final": s["final_normalized_score"],
            "best": s["best_normalized_score"], "eval_history": [[h[0], h[2]] for h in s["eval_history"]],
            "source": source}


def committed(label: str) -> list[dict]:
    """The committed default runs of a benchmarks/results/pendulum label (docs/results.md), seeds in order."""
    return [record(label, seed, s, f"benchmarks/results/pendulum/{label}")
            for _, seed, _, s in runs(COMMITTED, DEFAULT, label)]
