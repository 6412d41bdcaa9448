"""Prints the tables of docs/rlpd.md (Results): rlpd.py's default runs on the default data, their
evaluations and their online episodes.

    python docs/figures/rlpd_default.py                # print the tables from docs/figures/data/rlpd_default.json
    python docs/figures/rlpd_default.py --collect      # copy the committed runs' numbers into that JSON, then print

Nothing is trained here: the runs are the committed default runs of docs/results.md
(benchmarks/results/pendulum/rlpd, seeds 1-3), made with

    python -m benchmarks.sweep --scripts rlpd --datasets local/pendulum/medium-replay-v0 --seeds 1 2 3 --out W --jobs 1
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pendulum_runs as pr  # noqa: E402

DATA = pr.DATA / "rlpd_default.json"


def collect() -> dict:
    runs = []
    for label, seed, _, s in pr.runs(pr.COMMITTED, pr.DEFAULT, "rlpd"):
        r = pr.record(label, seed, s, "benchmarks/results/pendulum/rlpd")
        r.update(gradient_steps=s["gradient_steps"], wall_time_s=s["wall_time_s"],
                 online_episode_returns=s["online_episode_returns"])
        runs.append(r)
    out = {"dataset": pr.DEFAULT, "ref_min_score": s["ref_min_score"], "ref_max_score": s["ref_max_score"],
           "runs": runs}
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {DATA.relative_to(pr.ROOT)} ({len(runs)} runs)")
    return out


def table(data: dict) -> None:
    """The evaluations of each seed (normalised), then the returns of the online episodes."""
    runs = data["runs"]
    steps = [s for s, _ in runs[0]["eval_history"]]
    print("\n| seed | " + " | ".join(f"{s:,}" for s in steps) + " | final | best |")
    print("| --- |" + " --- |" * (len(steps) + 2))
    for r in runs:
        print(f"| {r['seed']} | " + " | ".join(f"{v:.1f}" for _, v in r["eval_history"])
              + f" | **{r['final']:.1f}** | {r['best']:.1f} |")
    finals, bests = [r["final"] for r in runs], [r["best"] for r in runs]
    print("| mean ± std |" + " |" * len(steps)
          + f" **{np.mean(finals):.1f} ± {np.std(finals):.1f}** | {np.mean(bests):.1f} ± {np.std(bests):.1f} |")

    ends = [s for s, _ in runs[0]["online_episode_returns"]]
    print("\n| seed | " + " | ".join(f"{s:,}" for s in ends) + " |")
    print("| --- |" + " --- |" * len(ends))
    for r in runs:
        print(f"| {r['seed']} | " + " | ".join(f"{v:.0f}" for _, v in r["online_episode_returns"]) + " |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--collect", action="store_true", help="read the committed runs again into the JSON")
    cli = p.parse_args()
    data = collect() if cli.collect else json.loads(DATA.read_text())
    table(data)
