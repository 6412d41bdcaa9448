"""Draws docs/img/td3_bc_alpha.png and prints the table of docs/td3_bc.md (Results): TD3+BC's score on
the default data for several values of alpha, the weight of the Q term, against BC.

    python docs/figures/td3_bc_alpha.py                 # draw from docs/figures/data/td3_bc_alpha.json, print the table
    python docs/figures/td3_bc_alpha.py --collect W     # write the JSON from the sweep folder W, then draw

The runs (td3_bc.py with every default, 20,000 steps, evaluation every 5,000 steps; one flag changed):

    python -m benchmarks.sweep --datasets local/pendulum/medium-replay-v0 --jobs 1 --seeds 1 2 3 --out W \\
        --scripts td3_bc2.5=td3_bc td3_bc10=td3_bc --script-args td3_bc2.5="--alpha 2.5" td3_bc10="--alpha 10"

(any label td3_bc<alpha> is read; td3_bc alone is the default, alpha 2.5). BC is bc.py's default run
(50,000 steps), the committed summaries under benchmarks/results/pendulum/bc (docs/results.md).
Entries of the JSON with a "source" of their own (runs of an earlier, numerically identical version of
td3_bc.py, whose summaries are not committed: seed 1 of alpha 2.5 reruns to the same four scores) are
kept by --collect unless W holds the same run.
"""

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "figures" / "data" / "td3_bc_alpha.json"
IMG = ROOT / "docs" / "img" / "td3_bc_alpha.png"
DATASET = "local/pendulum/medium-replay-v0"
COMMITTED = ROOT / "benchmarks" / "results" / "pendulum"  # the sweep folder of docs/results.md


def summaries(folder: Path, label: str = "*"):
    """(label, seed, summary) of every finished run of a sweep folder (of one label, or all)."""
    for path in sorted(folder.glob(f"{label}/{DATASET.replace('/', '-')}/seed*/runs/*/summary.json")):
        yield path.parts[-6], int(path.parts[-4][len("seed"):]), json.loads(path.read_text())


def collect(workdir: Path) -> dict:
    runs = []
    for label, seed, s in summaries(workdir):
        m = re.fullmatch(r"td3_bc([0-9.]*)", label)
        if m:
            runs.append({"alpha": float(m.group(1) or 2.5), "seed": seed, "eval_history": s["eval_history"]})
    done = {(r["alpha"], r["seed"]) for r in runs}
    if DATA.exists():
        earlier = json.loads(DATA.read_text())["runs"]
        runs += [r for r in earlier if "source" in r and (r["alpha"], r["seed"]) not in done]
    bc = [{"seed": seed, "eval_history": s["eval_history"]} for _, seed, s in summaries(COMMITTED, "bc")]
    out = {"dataset": DATASET, "runs": sorted(runs, key=lambda r: (r["alpha"], r["seed"])), "bc": bc}
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {DATA.relative_to(ROOT)} ({len(runs)} TD3+BC runs)")
    return out


def scores(run: dict) -> list[float]:
    return [h[2] for h in run["eval_history"]]


def table(data: dict) -> None:
    """The two tables of docs/td3_bc.md (Results): every run, then the final scores over seeds."""
    alphas = sorted({r["alpha"] for r in data["runs"]})
    print("\n| run | seed | every 5k steps | final | best |")
    print("| --- | --- | --- | --- | --- |")
    finals = {}
    for a in alphas:
        for r in (r for r in data["runs"] if r["alpha"] == a):
            v = scores(r)
            finals.setdefault(a, []).append(v[-1])
            every = ", ".join(f"{x:.1f}" for x in v)
            print(f"| TD3+BC $\\alpha = {a:g}$ | {r['seed']} | {every} | {v[-1]:.1f} | {max(v):.1f} |")
    bc = [scores(r)[-1] for r in data["bc"]]
    print(f"| BC (`bc.py` defaults, 50k steps) | {', '.join(str(r['seed']) for r in data['bc'])} | | "
          f"{', '.join(f'{x:.1f}' for x in bc)} | |")
    print("\n| run | seeds | final, mean ± std over seeds |")
    print("| --- | --- | --- |")
    for a in alphas:
        print(f"| TD3+BC $\\alpha = {a:g}$ | {len(finals[a])} | {np.mean(finals[a]):.1f} ± {np.std(finals[a]):.1f} |")
    print(f"| BC | {len(bc)} | {np.mean(bc):.1f} ± {np.std(bc):.1f} |")


def draw(data: dict) -> None:
    alphas = sorted({r["alpha"] for r in data["runs"]})
    finals = {a: [scores(r)[-1] for r in data["runs"] if r["alpha"] == a] for a in alphas}
    bests = {a: [max(scores(r)) for r in data["runs"] if r["alpha"] == a] for a in alphas}
    bc = [scores(r)[-1] for r in data["bc"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    for x, a in enumerate(alphas):
        ax.plot([x] * len(finals[a]), finals[a], "o", color="C0", alpha=0.7,
                label="TD3+BC final, one seed" if x == 0 else None)
        ax.plot([x] * len(bests[a]), bests[a], "o", mfc="none", color="C0", alpha=0.7,
                label="TD3+BC best of the 4 evaluations" if x == 0 else None)
        ax.plot([x], [np.mean(finals[a])], "_", color="k", ms=18, mew=2,
                label="mean of the final scores" if x == 0 else None)
    ax.axhline(np.mean(bc), color="gray", ls="--", lw=1, label=f"BC (bc.py defaults), mean of {len(bc)} seeds")
    ax.set_xticks(range(len(alphas)), [f"{a:g}" + (" (paper)" if a == 2.5 else "") for a in alphas])
    ax.set_xlabel("$\\alpha$ (weight of the Q term)")
    ax.set_xlim(-0.5, len(alphas) - 0.5)
    ax.set_ylabel("normalised score (final: 20k steps)")
    ax.set_title(f"TD3+BC on {data['dataset']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    IMG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG, dpi=120, bbox_inches="tight")
    print(f"wrote {IMG.relative_to(ROOT)}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--collect", metavar="W", type=Path, help="the sweep folder holding the td3_bc<alpha> runs")
    cli = p.parse_args()
    data = collect(cli.collect) if cli.collect else json.loads(DATA.read_text())
    draw(data)
    table(data)
