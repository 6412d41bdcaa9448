"""Prints the tables of docs/bcq.md (Results, "On the test suite's small sets"): BCQ at its default sizes
and with small networks, and BC, on the test suite's expert and mixed Pendulum sets.

    python docs/figures/bcq_test_data.py               # print the tables from docs/figures/data/bcq_test_data.json
    python docs/figures/bcq_test_data.py --run W       # train what is missing in W, write the JSON, print

The sets are tests/conftest.py's `pendulum_expert` and `pendulum_mixed`, built under W/minari. The
runs, each the script with its own flags, 5,000 steps, one torch thread, one at a time (an estimated
17 minutes of one free core in all):

- `bcq.py --eval-freq 1000` (every other default: VAE 750x750, 400x300), seed 1;
- `bcq.py --eval-freq 500 --hidden-dims 64 64 --vae-hidden-dims 64 64`, seeds 1 and 2;
- `bc.py --eval-freq 500` (its defaults otherwise), seed 1;

and, from each BCQ run's TensorBoard log, the critic loss on the batches of steps 1,000 and 5,000.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pendulum_runs as pr  # noqa: E402

DATA = pr.DATA / "bcq_test_data.json"
SETS = {pr.EXPERT: "test expert", pr.MIXED: "test mixed"}
SMALL = "--hidden-dims 64 64 --vae-hidden-dims 64 64"


def run(workdir: Path) -> None:
    e = pr.build(workdir, list(SETS))
    common = dict(datasets=list(SETS), extra_args="--total-steps 5000", run_env=e)
    pr.sweep(workdir, "bcq_test", ["bcq", "bc"], seeds=[1], script_args=["bcq=--eval-freq 1000", "bc=--eval-freq 500"],
             **common)
    pr.sweep(workdir, "bcq_test", ["bcq_small=bcq"], seeds=[1, 2], script_args=[f"bcq_small=--eval-freq 500 {SMALL}"],
             **common)


def collect(workdir: Path) -> dict:
    runs = []
    for dataset in SETS:
        for label, seed, folder, s in pr.runs(workdir / "bcq_test", dataset):
            r = pr.record(label, seed, s, "this command")
            r["dataset"] = dataset
            if label != "bc":
                loss = pr.scalars(folder, ["losses/critic_loss"])["losses/critic_loss"]
                r["critic_loss"] = [v for v in loss if v[0] in (1000, s["steps"])]
            runs.append(r)
    out = {"runs": runs}
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {DATA.relative_to(pr.ROOT)} ({len(runs)} runs)")
    return out


def table(data: dict) -> None:
    """The default sizes' runs, then the small networks' with BC's."""
    for labels, last, every in ((["bcq"], 5, "1,000"), (["bcq_small", "bc"], 5, "500")):
        print(f"\n| dataset | algorithm | seed | final | best | mean of the last {last} evaluations "
              f"| critic loss at 1k / 5k | curve (every {every} steps) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for dataset, name in SETS.items():
            for label in labels:
                for r in sorted((r for r in data["runs"] if r["dataset"] == dataset and r["label"] == label),
                                key=lambda r: r["seed"]):
                    v = [x for _, x in r["eval_history"]]
                    loss = " / ".join(f"{x:.2f}" for _, x in r["critic_loss"]) if "critic_loss" in r else "-"
                    print(f"| {name} | {'BC' if label == 'bc' else 'BCQ'} | {r['seed']} | {r['final']:.1f} | "
                          f"{r['best']:.1f} | {np.mean(v[-last:]):.1f} | {loss} | {', '.join(f'{x:.1f}' for x in v)} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", metavar="W", type=Path, help="train what is missing in the work folder W, then collect")
    cli = p.parse_args()
    if cli.run:
        run(cli.run.resolve())
    data = collect(cli.run.resolve()) if cli.run else json.loads(DATA.read_text())
    table(data)
