"""Prints the tables of docs/trajectory_transformer.md (Results): the default runs beside BC's and DT's, and
what the model has learnt of each kind of token in a default run.

    python docs/figures/tt_default.py                 # print the tables from docs/figures/data/tt_default.json
    python docs/figures/tt_default.py --run W         # train what is missing in W, write the JSON, print

The scores are the committed default runs of docs/results.md (benchmarks/results/pendulum/tt, bc, dt;
seeds 1-3). The cross-entropies come from the TensorBoard log of one more default run of
trajectory_transformer.py, seed 1, with a cheaper evaluation (`--eval-episodes 1 --beam-width 2`:
training is the default run's, since the only evaluation comes after the last step), about 10 minutes
here:

    python -m benchmarks.sweep --scripts tt --datasets local/pendulum/medium-replay-v0 --seeds 1 --out W/tt_ce \\
        --jobs 1 --extra-args="--eval-episodes 1 --beam-width 2"
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pendulum_runs as pr  # noqa: E402

DATA = pr.DATA / "tt_default.json"
KINDS = ("obs", "action", "reward", "value")
NAMES = {"tt": "TT (`python trajectory_transformer.py`)", "bc": "BC (`python bc.py`)",
         "dt": "DT (`python decision_transformer.py`)"}


def run(workdir: Path) -> None:
    pr.sweep(workdir, "tt_ce", ["tt"], [pr.DEFAULT], [1], extra_args="--eval-episodes 1 --beam-width 2")


def collect(workdir: Path) -> dict:
    ce = []
    for _, seed, folder, s in pr.runs(workdir / "tt_ce", pr.DEFAULT, "tt"):
        curves = pr.scalars(folder, [f"losses/{k}_ce" for k in KINDS])
        ce.append({"seed": seed, "steps": s["steps"], "curves": {k: curves[f"losses/{k}_ce"] for k in KINDS}})
    out = {"dataset": pr.DEFAULT, "default_runs": {label: pr.committed(label) for label in NAMES},
           "n_bins": 100, "cross_entropy": ce}
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {DATA.relative_to(pr.ROOT)}")
    return out


def table(data: dict) -> None:
    """The default runs' final scores, then the cross-entropy of each kind of token at the first and last
    logged steps of the default run."""
    runs = data["default_runs"]
    seeds = [r["seed"] for r in runs["tt"]]
    print("\n| | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
    print("| --- |" + " --- |" * (len(seeds) + 1))
    for label, name in NAMES.items():
        finals = [r["final"] for r in runs[label]]
        mean = f"{np.mean(finals):.1f}" + (f" ± {np.std(finals):.1f}" if label == "tt" else "")
        print(f"| {name} | " + " | ".join(f"{x:.1f}" for x in finals) + f" | {'**' + mean + '**' if label == 'tt' else mean} |")

    for r in data["cross_entropy"]:
        steps = [r["curves"]["obs"][0][0], r["curves"]["obs"][-1][0]]
        print(f"\n| tokens (seed {r['seed']}) | " + " | ".join(f"cross-entropy at step {s:,} (nats)" for s in steps) + " |")
        print("| --- | --- | --- |")
        for k in KINDS:
            c = r["curves"][k]
            print(f"| {k} | {c[0][1]:.2f} | {c[-1][1]:.2f} |")
        print(f"| (uniform over {data['n_bins']} bins) | {math.log(data['n_bins']):.2f} | {math.log(data['n_bins']):.2f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", metavar="W", type=Path, help="train what is missing in the work folder W, then collect")
    cli = p.parse_args()
    if cli.run:
        run(cli.run.resolve())
    data = collect(cli.run.resolve()) if cli.run else json.loads(DATA.read_text())
    table(data)
