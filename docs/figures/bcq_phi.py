"""Draws docs/img/bcq_phi.png: BCQ's score against Phi, the range of its perturbation, and prints the tables
of docs/bcq.md (Results, and Phi).

    python docs/figures/bcq_phi.py                      # draw from docs/figures/data/bcq_phi.json, print the tables
    python docs/figures/bcq_phi.py --collect W          # write the JSON from the sweep folders under W, then draw

The runs: bcq.py's default run (5,000 steps, evaluated every 1,000) on local/pendulum/medium-replay-v0,
three seeds; and 3,000-step runs with another Phi, one seed:

    S="python -m benchmarks.sweep --datasets local/pendulum/medium-replay-v0 --jobs 1"
    $S --scripts bcq --seeds 1 2 3 --out W/bcq_default
    for phi in 0 0.25 1.0; do
      $S --scripts bcq_phi$phi=bcq --seeds 1 --out W/bcq_phi --extra-args="--total-steps 3000" \\
         --script-args bcq_phi$phi="--phi $phi"
    done

Phi = 0.05 (the default) in the figure is the default runs' first three evaluations, which are what a
3,000-step run gives (training never depends on the number of steps or on evaluation). Where W holds
no default run of seed 1, the committed 10,000-step run of benchmarks/results/pendulum/bcq (the same
training up to step 5,000; docs/results.md) stands in, cut at step 5,000. BC is bc.py's default run
(50,000 steps), the committed summaries under benchmarks/results/pendulum/bc.
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
DATA = ROOT / "docs" / "figures" / "data" / "bcq_phi.json"
IMG = ROOT / "docs" / "img" / "bcq_phi.png"
DATASET = "local/pendulum/medium-replay-v0"
COMMITTED = ROOT / "benchmarks" / "results" / "pendulum"  # the sweep folder of docs/results.md


def summaries(folder: Path, label: str = "*"):
    """(label, seed, summary) of every finished run of a sweep folder (of one label, or all)."""
    for path in sorted(folder.glob(f"{label}/{DATASET.replace('/', '-')}/seed*/runs/*/summary.json")):
        label, seed = path.parts[-6], int(path.parts[-4][len("seed"):])
        yield label, seed, json.loads(path.read_text())


def collect(workdir: Path) -> dict:
    default = {seed: {"seed": seed, "eval_history": s["eval_history"], "source": "bcq_default"}
               for _, seed, s in summaries(workdir / "bcq_default")}
    if 1 not in default:
        for _, seed, s in summaries(COMMITTED, "bcq"):
            if seed == 1:
                history = [h for h in s["eval_history"] if h[0] <= 5000]
                default[1] = {"seed": 1, "eval_history": history,
                              "source": "benchmarks/results/pendulum/bcq, cut at 5,000"}
    phi_runs = []
    for label, seed, s in summaries(workdir / "bcq_phi"):
        phi = float(re.fullmatch(r"bcq_phi([0-9.]+)", label).group(1))
        phi_runs.append({"phi": phi, "seed": seed, "eval_history": s["eval_history"]})
    bc = [s["final_normalized_score"] for _, _, s in summaries(COMMITTED, "bc")]
    out = {"dataset": DATASET, "default_runs": [default[k] for k in sorted(default)],
           "phi_runs": sorted(phi_runs, key=lambda r: (r["phi"], r["seed"])), "bc_final": bc}
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {DATA.relative_to(ROOT)} ({len(default)} default runs, {len(phi_runs)} runs with another Phi)")
    return out


def phi_runs(data: dict) -> tuple[int, list[dict]]:
    """The length of the runs with another Phi, and every run cut to it (the default runs as Phi = 0.05)."""
    steps = max(h[0] for r in data["phi_runs"] for h in r["eval_history"]) if data["phi_runs"] else 3000
    runs = [dict(r, phi=0.05, eval_history=[h for h in r["eval_history"] if h[0] <= steps])
            for r in data["default_runs"]]
    return steps, runs + data["phi_runs"]


def draw(data: dict) -> None:
    bc = float(np.mean(data["bc_final"]))
    steps, runs = phi_runs(data)
    phis = sorted({r["phi"] for r in runs})
    cmap = plt.get_cmap("viridis")
    colour = {phi: cmap(i / max(1, len(phis) - 1)) for i, phi in enumerate(phis)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for x, phi in enumerate(phis):
        group = [r for r in runs if r["phi"] == phi]
        for r in group:
            s, v = zip(*[(h[0], h[2]) for h in r["eval_history"]])
            left.plot([x], [v[-1]], "o", color=colour[phi], ms=6, alpha=0.8)
            right.plot(s, v, "o-", color=colour[phi], lw=1.5, ms=3, alpha=0.8,
                       label=f"$\\Phi$ = {phi:g}" + (" (default)" if phi == 0.05 else "") + f", seed {r['seed']}")
        if len(group) > 1:
            left.plot([x], [np.mean([r["eval_history"][-1][2] for r in group])], "_", color="k", ms=16, mew=2)
    for ax in (left, right):
        ax.axhline(bc, color="gray", ls="--", lw=1)
        ax.grid(alpha=0.3)
    left.text(len(phis) - 1, bc + 2, f"BC (bc.py defaults), mean of {len(data['bc_final'])} seeds", ha="right",
              va="bottom", fontsize=8, color="gray")
    left.set_xticks(range(len(phis)), [f"{p:g}" for p in phis])
    left.set_xlim(-0.5, len(phis) - 0.5)
    left.set_xlabel("$\\Phi$ (bound of the perturbation, in half-widths of the action range)")
    left.set_ylabel("normalised score")
    left.set_title(f"score at step {steps:,} (bar: mean over seeds)", fontsize=9)
    right.set_xlabel("gradient step")
    right.set_title("evaluations, 10 episodes each", fontsize=9)
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.suptitle(f"BCQ on {data['dataset']}: the perturbation range $\\Phi$", fontsize=11)
    fig.tight_layout()
    IMG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG, dpi=120, bbox_inches="tight")
    print(f"wrote {IMG.relative_to(ROOT)}")


def table(data: dict) -> None:
    """The two tables of docs/bcq.md: the default runs (Results) and the runs with another Phi."""
    print("\n| seed | evaluations (every 1,000 steps) | final (step 5,000) | best |")
    print("| --- | --- | --- | --- |")
    finals = []
    for r in data["default_runs"]:
        v = [h[2] for h in r["eval_history"]]
        finals.append(v[-1])
        print(f"| {r['seed']} | {', '.join(f'{x:.1f}' for x in v)} | {v[-1]:.1f} | {max(v):.1f} |")
    print(f"| mean ± std | | **{np.mean(finals):.1f} ± {np.std(finals):.1f}** | |")
    print(f"BC (bc.py defaults, 50k steps), final over {len(data['bc_final'])} seeds: "
          f"{', '.join(f'{x:.1f}' for x in data['bc_final'])}; mean {np.mean(data['bc_final']):.1f}")
    steps, runs = phi_runs(data)
    print(f"\n| $\\Phi$ | seed | evaluations (every 1,000 steps) | final (step {steps:,}) |")
    print("| --- | --- | --- | --- |")
    for phi in sorted({r["phi"] for r in runs}):
        for r in (r for r in runs if r["phi"] == phi):
            v = [h[2] for h in r["eval_history"]]
            print(f"| {phi:g} | {r['seed']} | {', '.join(f'{y:.1f}' for y in v)} | {v[-1]:.1f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--collect", metavar="W", type=Path, help="the folder holding the sweeps bcq_default and bcq_phi")
    cli = p.parse_args()
    data = collect(cli.collect) if cli.collect else json.loads(DATA.read_text())
    draw(data)
    table(data)
