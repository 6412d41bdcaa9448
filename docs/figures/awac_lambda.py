"""Prints the tables of docs/awac.md (Results): AWAC with its default lambda and with CORL's 0.3333 on the
default data, and a few network sizes on the test suite's mixed Pendulum set.

    python docs/figures/awac_lambda.py                  # print the tables from docs/figures/data/awac_lambda.json
    python docs/figures/awac_lambda.py --run W          # train what is missing in W, write the JSON, print
    python docs/figures/awac_lambda.py --collect W      # write the JSON from the runs already in W, print

The runs, each awac.py with its own flags, one torch thread, one at a time (about 10 minutes of one free
core in all; 35 minutes on a busy 2-core machine):

- default data (local/pendulum/medium-replay-v0, every default: 10,000 steps, evaluation every 2,000):
  the committed default runs, seeds 1-3 (benchmarks/results/pendulum/awac, docs/results.md), and
  `--awac-lambda 0.3333`, seed 1, with, from its TensorBoard log, the mean Q, the mean advantage and
  the weights on the batches of steps 1,000 and 10,000;
- test/pendulum/mixed-v0 (tests/conftest.py's `pendulum_mixed` set, built under W/minari), seed 1,
  3,000 steps: evaluation every 1,000 steps for each row of NETS; and the flags of the learning check
  (tests/test_awac.py: one evaluation, at 3,000), with the weights as they are and with
  `--awac-lambda 1000000`, which makes every weight exp(A / lambda) differ from 1 by about A / 1e6
  (Gaussian behaviour cloning with the same networks).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pendulum_runs as pr  # noqa: E402

DATA = pr.DATA / "awac_lambda.json"
TAGS = ["values/q", "values/advantage", "values/awac_weight_mean", "values/awac_weight_max",
        "values/awac_weight_clipped_frac"]
SMALL = "--actor-layers 2 --critic-layers 2"
# (label, flags, evaluate every, how the table names the row), on the mixed set, 3,000 steps
NETS = [
    ("m_default", "", 1000, "defaults ($\\lambda$ = 1, 3x256)"),
    ("m_l0.3333", "--awac-lambda 0.3333", 1000, "`--awac-lambda 0.3333`"),
    ("m_2l", SMALL, 1000, f"`{SMALL}`"),
    ("m_2l_l0.3333", f"{SMALL} --awac-lambda 0.3333", 1000, f"`{SMALL} --awac-lambda 0.3333`"),
    ("m_h128_l0.3333", f"--hidden-dim 128 {SMALL} --awac-lambda 0.3333", 1000,
     f"`--hidden-dim 128 {SMALL} --awac-lambda 0.3333`"),
    ("m_h64_l0.3333", f"--hidden-dim 64 {SMALL} --awac-lambda 0.3333", 1000,
     f"`--hidden-dim 64 {SMALL} --awac-lambda 0.3333`"),
    ("check", SMALL, 3000, f"the learning check: `{SMALL}`"),
    ("check_w1", f"{SMALL} --awac-lambda 1000000", 3000, f"the same, `--awac-lambda 1000000` (weights 1: BC)"),
]


def run(workdir: Path) -> None:
    lam = dict(script_args=["awac_l0.3333=--awac-lambda 0.3333"])
    pr.sweep(workdir, "awac_default_data", ["awac_l0.3333=awac"], [pr.DEFAULT], [1], **lam)
    mixed_env = pr.build_mixed(workdir)
    nets = sorted(NETS, key=lambda n: not n[0].startswith("check"))  # the learning check's pair first
    pr.sweep(workdir, "awac_mixed", [f"{label}=awac" for label, *_ in nets], [pr.MIXED], [1],
             extra_args="--total-steps 3000",
             script_args=[f"{label}={flags} --eval-freq {every}".strip() for label, flags, every, _ in nets],
             run_env=mixed_env)


def collect(workdir: Path) -> dict:
    committed = {r["seed"]: r for r in pr.committed("awac")}
    new = []
    for label, seed, folder, s in pr.runs(workdir / "awac_default_data", pr.DEFAULT):
        if label == "awac" and seed != 1:
            continue
        r = pr.record(label, seed, s, "this command")
        curves = pr.scalars(folder, TAGS)
        r["batches"] = {tag: [v for v in values if v[0] in (1000, s["steps"])] for tag, values in curves.items()}
        new.append(r)
    mixed = [pr.record(label, seed, s, "this command") for label, seed, _, s in pr.runs(workdir / "awac_mixed", pr.MIXED)]
    out = {"default_data": {"dataset": pr.DEFAULT, "committed": list(committed.values()), "runs": new,
                            "bc": pr.committed("bc")},
           "mixed_data": {"dataset": pr.MIXED, "runs": mixed}}
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {DATA.relative_to(pr.ROOT)}")
    return out


def table(data: dict) -> None:
    """docs/awac.md's tables: the default data's scores and logged values; the mixed set's runs."""
    d = data["default_data"]
    rows = [("AWAC (defaults, $\\lambda$ = 1)", r) for r in d["committed"]]
    rows += [("AWAC `--awac-lambda 0.3333`", r) for r in d["runs"] if r["label"] == "awac_l0.3333"]
    rows += [("BC (`bc.py` defaults: 50k steps, every 5k)", r) for r in d["bc"]]
    print("\n| run | seed | final | best | evaluations (every 2k steps; BC every 5k) |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows:
        print(f"| {name} | {r['seed']} | {r['final']:.1f} | {r['best']:.1f} | "
              + ", ".join(f"{v:.1f}" for _, v in r["eval_history"]) + " |")

    print("\n| run | seed | step | mean $Q(s,a)$ | mean $A$ | mean / max weight | weights at the clip |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in d["runs"]:
        b = {tag.split("/")[1]: dict(map(tuple, v)) for tag, v in r["batches"].items()}
        name = "defaults" if r["label"] == "awac" else "`--awac-lambda 0.3333`"
        for step in sorted(b["q"]):
            print(f"| {name} | {r['seed']} | {step:,} | {b['q'][step]:.1f} | {b['advantage'][step]:.2f} | "
                  f"{b['awac_weight_mean'][step]:.2f} / {b['awac_weight_max'][step]:.1f} | "
                  f"{100 * b['awac_weight_clipped_frac'][step]:.1f}% |")

    by = {r["label"]: r for r in data["mixed_data"]["runs"]}
    print("\n| flags | 1k | 2k | 3k |")
    print("| --- | --- | --- | --- |")
    for label, _, every, name in NETS:
        if label not in by:
            continue
        r = by[label]
        cells = {s: f"{v:.1f}" for s, v in r["eval_history"]}
        print(f"| {name} | " + " | ".join(cells.get(s, "") for s in (1000, 2000, 3000)) + " |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", metavar="W", type=Path, help="train what is missing in the work folder W, then collect")
    p.add_argument("--collect", metavar="W", type=Path, help="collect the runs finished in W (nothing is trained)")
    cli = p.parse_args()
    if cli.run:
        run(cli.run.resolve())
    workdir = cli.run or cli.collect
    data = collect(workdir.resolve()) if workdir else json.loads(DATA.read_text())
    table(data)
