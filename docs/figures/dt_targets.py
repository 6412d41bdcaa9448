"""Draws docs/img/dt_targets.png and prints the tables of docs/decision_transformer.md (Results): the
default runs, and the return knob (the return achieved against the return asked for).

    python docs/figures/dt_targets.py                # draw from docs/figures/data/dt_targets.json, print the tables
    python docs/figures/dt_targets.py --run W        # train and evaluate what is missing in W, write the JSON, draw

The runs (each the script with its own flags, one torch thread, one at a time; about 10 minutes of one
free core in all, 26 minutes on a busy 2-core machine):

    python -m benchmarks.sweep --scripts dt --datasets local/pendulum/medium-replay-v0 --seeds 1 2 3 \\
        --out W/dt_default --jobs 1 --extra-args="--save-model"
    python decision_transformer.py --eval-checkpoint W/dt_default/.../decision_transformer.pt \\
        --target-returns -1600 -1292.1 -1000 -671.3 -400 -150.8 0        # in W/evals/dt_targets/seed<S>

decision_transformer.py with every default, which is the committed default run of docs/results.md
(benchmarks/results/pendulum/dt) again, with its checkpoint kept; then each final checkpoint asked for
several returns, on the start states of its last evaluation. The asked returns: the data's median
(-1292.1) and best (-671.3) episode returns, which training evaluates, the expert reference (-150.8), and
others around them. The first table is the committed default runs'; the JSON says whether the reruns
gave the same scores.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pendulum_runs as pr  # noqa: E402

DATA = pr.DATA / "dt_targets.json"
IMG = pr.ROOT / "docs" / "img" / "dt_targets.png"
ASKED = [-1600, -1292.1, -1000, -671.3, -400, -150.8, 0]
SEEDS = [1, 2, 3]


def run(workdir: Path) -> None:
    pr.sweep(workdir, "dt_default", ["dt"], [pr.DEFAULT], SEEDS, extra_args="--save-model")
    for label, seed, folder, _ in pr.runs(workdir / "dt_default", pr.DEFAULT, "dt"):
        out = workdir / "evals" / "dt_targets" / f"seed{seed}"
        if sorted(out.glob("runs/*/summary.json")):
            continue
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(pr.ROOT / "decision_transformer.py"), "--eval-checkpoint",
               str(folder / "decision_transformer.pt"), "--target-returns", *map(str, ASKED)]
        with open(out / "out.log", "w") as log:
            subprocess.run(cmd, cwd=out, env=pr.env(), stdout=log, stderr=subprocess.STDOUT, check=True)


def per_target(per: dict) -> dict:
    return {k: {"return_mean": v["return_mean"], "normalized_score": v["normalized_score"], "returns": v["returns"]}
            for k, v in per.items()}


def collect(workdir: Path) -> dict:
    default = []
    for label, seed, _, s in pr.runs(pr.COMMITTED, pr.DEFAULT, "dt"):
        r = pr.record(label, seed, s, "benchmarks/results/pendulum/dt")
        r["targets"], r["final_per_target"] = s["target_returns"], per_target(s["final_per_target"])
        default.append(r)
    knob = []
    for label, seed, _, s in pr.runs(workdir / "dt_default", pr.DEFAULT, "dt"):
        (path,) = sorted((workdir / "evals" / "dt_targets" / f"seed{seed}").glob("runs/*/summary.json"))[-1:]
        e = json.loads(path.read_text())
        knob.append({"seed": seed, "final": s["final_normalized_score"],
                     "same_as_committed": any(d["seed"] == seed and d["eval_history"] == pr.record(label, seed, s, "")[
                         "eval_history"] for d in default),
                     "per_target": per_target(e["per_target"])})
        best, median = e["dataset_best_return"], e["dataset_median_return"]
    out = {"dataset": pr.DEFAULT, "dataset_best_return": best, "dataset_median_return": median,
           "default_runs": default, "knob_runs": knob}
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {DATA.relative_to(pr.ROOT)} ({len(default)} default runs, {len(knob)} checkpoints asked "
          f"{len(ASKED)} returns; reruns identical to the committed runs: {[k['same_as_committed'] for k in knob]})")
    return out


def asked(run: dict) -> list[str]:
    return sorted(run["per_target"], key=float)


def draw(data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    lo, hi = np.inf, -np.inf
    for r in data["knob_runs"]:
        keys = asked(r)
        x = np.array([float(k) for k in keys])
        returns = [np.array(r["per_target"][k]["returns"]) for k in keys]
        mean, std = np.array([v.mean() for v in returns]), np.array([v.std() for v in returns])
        line, = ax.plot(x, mean, "o-", label=f"seed {r['seed']}")
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        lo, hi = min(lo, x.min(), mean.min()), max(hi, x.max(), mean.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="achieved = asked")
    for value, name, style in ((data["dataset_best_return"], "best", ":"), (data["dataset_median_return"], "median", "-.")):
        ax.axvline(value, color="gray", lw=1, ls=style, label=f"{name} episode return in the data ({value:.0f})")
    ax.set_xlabel("return asked for ($\\hat R_1$)")
    ax.set_ylabel("return achieved (mean ± std over 10 episodes)")
    ax.set_title(f"decision_transformer.py defaults on {data['dataset']}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    IMG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG, dpi=120)
    print(f"wrote {IMG.relative_to(pr.ROOT)}")


def table(data: dict) -> None:
    """The two tables of docs/decision_transformer.md: the default runs, and the return knob."""
    runs = data["default_runs"]
    best, median = (f"{t:g}" for t in runs[0]["targets"])
    first = runs[0]["eval_history"][0][0]
    print(f"\n| seed | asked {best} (the data's best episode; the main score): step {first:,}, final "
          f"| asked {median} (the data's median), final |")
    print("| --- | --- | --- |")
    for r in runs:
        print(f"| {r['seed']} | {r['eval_history'][0][1]:.1f}, **{r['final']:.1f}** "
              f"| {r['final_per_target'][median]['normalized_score']:.1f} |")
    print(f"| mean | **{np.mean([r['final'] for r in runs]):.1f}** "
          f"| {np.mean([r['final_per_target'][median]['normalized_score'] for r in runs]):.1f} |")

    knob = data["knob_runs"]
    keys = asked(knob[0])
    print("\n| asked | " + " | ".join(keys) + " |")
    print("| --- |" + " --- |" * len(keys))
    for r in knob:
        print(f"| seed {r['seed']}, return | " + " | ".join(f"{r['per_target'][k]['return_mean']:.0f}" for k in keys) + " |")
    for r in knob:
        print(f"| seed {r['seed']}, score | " + " | ".join(f"{r['per_target'][k]['normalized_score']:.1f}" for k in keys)
              + " |")
    print("| mean score | " + " | ".join(f"{np.mean([r['per_target'][k]['normalized_score'] for r in knob]):.1f}"
                                        for k in keys) + " |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", metavar="W", type=Path, help="train and evaluate what is missing in W, then collect")
    cli = p.parse_args()
    if cli.run:
        run(cli.run.resolve())
    data = collect(cli.run.resolve()) if cli.run else json.loads(DATA.read_text())
    draw(data)
    table(data)
