"""What the failure_*.py and bc_*.py figure scripts share: train with the sweep, evaluate a saved
policy in a changed env, and read back the summaries (docs/overview.md, "When does offline RL fail?").

Layout of a work folder W (the same for every figure, so one folder can serve them all):

    W/<sweep>/<label>/<dataset>/seed<S>/runs/<run>/summary.json     training (benchmarks/sweep.py)
    W/<sweep>/<label>/<dataset>/seed<S>/runs/<run>/<script>.pt      its checkpoint (--save-model)
    W/evals/<name>/<tag>/runs/<run>/summary.json                    `--eval-checkpoint` in a changed env

Every run is a script started with its own flags, one torch thread; a run whose summary exists is
never run again, so a stopped figure command resumes where it stopped.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "figures" / "data"
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def sweep(workdir: Path, name: str, scripts: list[str], datasets: list[str], seeds: list[int],
          extra_args: str = "", script_args: list[str] = ()) -> None:
    """Train every (script, dataset, seed) of the list, one run at a time, skipping those already done."""
    cmd = [sys.executable, "-m", "benchmarks.sweep", "--scripts", *scripts, "--datasets", *datasets,
           "--seeds", *map(str, seeds), "--out", str(workdir / name), "--jobs", "1"]
    if extra_args:
        cmd.append(f"--extra-args={extra_args}")
    if script_args:
        cmd += ["--script-args", *script_args]
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True)


def run_folder(workdir: Path, name: str, label: str, dataset: str, seed: int) -> Path:
    """The training run's own folder (the one holding summary.json and the checkpoint)."""
    found = sorted((workdir / name / label / dataset.replace("/", "-") / f"seed{seed}").glob("runs/*/summary.json"))
    if not found:
        sys.exit(f"error: no finished run of {label} on {dataset}, seed {seed}, under {workdir / name}")
    return found[-1].parent


def train_summary(workdir: Path, name: str, label: str, dataset: str, seed: int) -> dict:
    return json.loads((run_folder(workdir, name, label, dataset, seed) / "summary.json").read_text())


def evaluate(workdir: Path, name: str, script: str, checkpoint: Path, env_kwargs: dict, tag: str,
             run: bool = True) -> dict | None:
    """`python <script>.py --eval-checkpoint C --eval-env-kwargs J`: the saved policy, on the start
    states of its last evaluation, in the changed env. Returns the run's summary; with run=False,
    None when that evaluation has not been run."""
    folder = workdir / "evals" / name / tag
    found = sorted(folder.glob("runs/*/summary.json"))
    if not found and not run:
        print(f"skipped: no evaluation {name}/{tag} under {workdir / 'evals'}")
        return None
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(ROOT / f"{script}.py"), "--eval-checkpoint", str(checkpoint),
               "--eval-env-kwargs", json.dumps(env_kwargs)]
        with open(folder / "out.log", "w") as log:
            subprocess.run(cmd, cwd=folder, env=ENV, stdout=log, stderr=subprocess.STDOUT, check=True)
        found = sorted(folder.glob("runs/*/summary.json"))
    return json.loads(found[-1].read_text())


def training_record(s: dict) -> dict:
    """The few numbers of a training summary that the figures use."""
    keep = ("algorithm", "dataset_id", "seed", "steps", "final_normalized_score", "best_normalized_score",
            "final_return_mean", "final_returns", "eval_history")
    return {k: s[k] for k in keep if k in s}


def eval_record(s: dict, env_kwargs: dict) -> dict:
    return {"env_kwargs": env_kwargs, "normalized_score": s["normalized_score"], "return_mean": s["return_mean"],
            "returns": s["returns"]}


def reference(dataset_id: str) -> tuple[float, float]:
    """The dataset's reference returns (random, expert): the 0 and the 100 of the normalised score."""
    import minari

    meta = minari.load_dataset(dataset_id).storage.metadata
    return float(meta["ref_min_score"]), float(meta["ref_max_score"])


def data_mean_score(dataset_id: str) -> float:
    """The mean normalised return of the dataset's own episodes: how good the behaviour was."""
    import minari

    dataset = minari.load_dataset(dataset_id)
    returns = [float(np.sum(e.rewards)) for e in dataset.iterate_episodes()]
    return float(np.mean(normalised(returns, reference(dataset_id))))


def normalised(returns, ref: tuple[float, float]) -> list[float]:
    return [100.0 * (r - ref[0]) / (ref[1] - ref[0]) for r in returns]


def save(name: str, payload: dict) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def load(name: str) -> dict:
    path = DATA / f"{name}.json"
    if not path.exists():
        sys.exit(f"error: {path.relative_to(ROOT)} is missing: run this script with --run (or --collect W)")
    return json.loads(path.read_text())
