"""Prints the tables of docs/iql.md (Results): IQL with its default expectile and with others, against BC,
on the default data and on the test suite's mixed Pendulum set.

    python docs/figures/iql_expectile.py                  # print the tables from docs/figures/data/iql_expectile.json
    python docs/figures/iql_expectile.py --run W          # train what is missing in W, write the JSON, print

The runs, each the script with its own flags, one torch thread, one at a time (about 16 minutes of CPU
time in all):

- default data (local/pendulum/medium-replay-v0, every default: 30,000 steps, evaluation every 5,000):
  `iql.py --expectile 0.9`, seed 1; beside it the committed default runs of iql.py and bc.py, seeds
  1-3 (benchmarks/results/pendulum, docs/results.md);
- test/pendulum/mixed-v0 (tests/conftest.py's `pendulum_mixed` set, built under W/minari):
  `iql.py --expectile E` for E = 0.5, 0.7 (the default), 0.9 and `bc.py`, seeds 1 and 2, 10,000 steps,
  evaluation every 1,000; and, from each IQL run's TensorBoard log, what the expectile does to V, the
  advantages and the weights on the batch of step 10,000.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pendulum_runs as pr  # noqa: E402

DATA = pr.DATA / "iql_expectile.json"
EXPECTILES = (0.5, 0.7, 0.9)
MIXED_FLAGS = "--total-steps 10000 --eval-freq 1000"
TAGS = ["values/v", "values/q", "values/advantage", "values/awr_weight_mean", "values/awr_weight_max",
        "values/awr_weight_clipped_frac"]


def run(workdir: Path) -> None:
    pr.sweep(workdir, "iql_default_data", ["iql_e0.9=iql"], [pr.DEFAULT], [1], script_args=['iql_e0.9=--expectile 0.9'])
    mixed_env = pr.build_mixed(workdir)
    pr.sweep(workdir, "iql_mixed", [f"iql_e{e}=iql" for e in EXPECTILES] + ["bc"], [pr.MIXED], [1, 2],
             extra_args=MIXED_FLAGS, script_args=[f"iql_e{e}=--expectile {e}" for e in EXPECTILES],
             run_env=mixed_env)


def collect(workdir: Path) -> dict:
    default = [pr.record(label, seed, s, "this command")
               for label, seed, _, s in pr.runs(workdir / "iql_default_data", pr.DEFAULT)]
    mixed = []
    for label, seed, folder, s in pr.runs(workdir / "iql_mixed", pr.MIXED):
        r = pr.record(label, seed, s, "this command")
        if label != "bc":
            r["last_batch"] = {tag: values[-1] for tag, values in pr.scalars(folder, TAGS).items()}
            r["reward_scale"] = s["reward_scale"]
        mixed.append(r)
    out = {"default_data": {"dataset": pr.DEFAULT, "runs": pr.committed("iql") + default + pr.committed("bc")},
           "mixed_data": {"dataset": pr.MIXED, "flags": MIXED_FLAGS, "runs": mixed}}
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {DATA.relative_to(pr.ROOT)} ({len(default)} new runs on the default data, {len(mixed)} on the mixed set)")
    return out


def name(label: str) -> str:
    if label == "bc":
        return "BC (`bc.py`)"
    if label == "iql":
        return "IQL (defaults)"
    e = float(label[len("iql_e"):])
    return f"IQL `--expectile {e:g}`" + (" (default)" if e == 0.7 else "")


def scores(r: dict) -> str:
    return ", ".join(f"{v:.1f}" for _, v in r["eval_history"])


def table(data: dict) -> None:
    """docs/iql.md's tables: the default data; the mixed set's scores, curves and logged values."""
    runs = data["default_data"]["runs"]
    print("\n| run | seed | steps | final | best | evaluations |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in runs:
        print(f"| {name(r['label'])} | {r['seed']} | {r['steps']:,} | {r['final']:.1f} | {r['best']:.1f} | {scores(r)} |")

    runs = data["mixed_data"]["runs"]
    labels = ["bc"] + [f"iql_e{e}" for e in EXPECTILES]
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["label"], r["seed"]): r for r in runs}
    print("\n| run | " + " | ".join(f"seed {s} final / best" for s in seeds) + " | mean final |")
    print("| --- |" + " --- |" * (len(seeds) + 1))
    for label in labels:
        rs = [by[label, s] for s in seeds if (label, s) in by]
        cells = [f"{r['final']:.1f} / {r['best']:.1f}" for r in rs]
        print(f"| {name(label)} | " + " | ".join(cells) + f" | {sum(r['final'] for r in rs) / len(rs):.1f} |")

    first = seeds[0]
    steps = [s for s, _ in by["bc", first]["eval_history"]]
    print(f"\n| run, seed {first} | " + " | ".join(f"{s // 1000}k" for s in steps) + " |")
    print("| --- |" + " --- |" * len(steps))
    for label in labels:
        print(f"| {name(label)} | " + " | ".join(f"{v:.1f}" for _, v in by[label, first]["eval_history"]) + " |")

    print("\n| `--expectile` | seed | mean $V(s)$ | mean $\\hat Q(s,a)$ | mean $\\hat Q(s,a) - V(s)$ "
          "| mean / max AWR weight | clipped |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label in labels[1:]:
        for s in seeds:
            b = {tag.split("/")[1]: v for tag, (_, v) in by[label, s]["last_batch"].items()}
            print(f"| {float(label[len('iql_e'):]):g} | {s} | {b['v']:.1f} | {b['q']:.1f} | {b['advantage']:.2f} | "
                  f"{b['awr_weight_mean']:.2f} / {b['awr_weight_max']:.3g} | {100 * b['awr_weight_clipped_frac']:.1f}% |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", metavar="W", type=Path, help="train what is missing in the work folder W, then collect")
    cli = p.parse_args()
    if cli.run:
        run(cli.run.resolve())
    data = collect(cli.run.resolve()) if cli.run else json.loads(DATA.read_text())
    table(data)
