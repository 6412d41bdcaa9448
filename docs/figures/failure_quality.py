"""Draws docs/img/failure_quality.png: four scripts at their defaults on random Pendulum data, beside
the same on the replay of SAC's early training and (BC, IQL) on medium-expert data (docs/overview.md,
"When does offline RL fail?", very low data quality).

    python docs/figures/failure_quality.py                     # draw from the committed JSON, print the table
    python docs/figures/failure_quality.py --run runs/failures # train what is missing, write the JSON, draw (resumable)
    python docs/figures/failure_quality.py --collect W         # write the JSON from the runs already in W, draw

The runs: bc.py, iql.py, td3_bc.py and awac.py with every default, seed 1, on local/pendulum/random-v0
and local/pendulum/medium-replay-v0; BC on medium-replay is the committed default run under
benchmarks/results/pendulum (docs/results.md), and the medium-expert runs are those of
docs/figures/failure_shift.py (the same defaults, plus --save-model, which changes no number).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import failure_runs as fr  # noqa: E402

SCRIPTS = {"bc": "BC", "iql": "IQL", "td3_bc": "TD3+BC", "awac": "AWAC"}
KINDS = {"random": "random", "medium-replay": "medium-replay", "medium-expert": "medium-expert"}
SEED = 1
COMMITTED = fr.ROOT / "benchmarks" / "results"


def source(workdir: Path, script: str, kind: str) -> tuple[Path, str]:
    """Where the run of `script` on `kind` lives: (work folder, sweep name)."""
    if kind == "medium-expert":
        return workdir, "shift"
    if script == "bc" and kind == "medium-replay":
        return COMMITTED, "pendulum"
    return workdir, "quality"


def collect(workdir: Path, run: bool) -> dict:
    if run:
        fr.sweep(workdir, "quality", list(SCRIPTS), ["local/pendulum/random-v0"], [SEED])
        fr.sweep(workdir, "quality", [s for s in SCRIPTS if s != "bc"], ["local/pendulum/medium-replay-v0"],
                 [SEED])
        fr.sweep(workdir, "shift", ["bc", "iql"], ["local/pendulum/medium-expert-v0"], [SEED],
                 extra_args="--save-model")
    out = {"seed": SEED, "data_mean_score": {}, "runs": []}
    for kind in KINDS:
        dataset = f"local/pendulum/{kind}-v0"
        out["data_mean_score"][dataset] = fr.data_mean_score(dataset)
        for script in SCRIPTS:
            if kind == "medium-expert" and script not in ("bc", "iql"):
                continue
            folder, name = source(workdir, script, kind)
            try:
                train = fr.training_record(fr.train_summary(folder, name, script, dataset, SEED))
            except SystemExit as e:  # a run not finished yet: left out, said so
                print(f"skipped: {e}")
                continue
            out["runs"].append({"script": script, "dataset": dataset, "train": train})
    fr.save("failure_quality", out)
    return out


def draw(data: dict, out: str) -> None:
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    width = 0.26
    scripts = [s for s in SCRIPTS if any(r["script"] == s for r in data["runs"])]
    colours = {"random": "tab:brown", "medium-replay": "tab:olive", "medium-expert": "tab:blue"}
    for j, kind in enumerate(KINDS):
        dataset = f"local/pendulum/{kind}-v0"
        label = f"{kind} data (its episodes average {data['data_mean_score'][dataset]:.1f})"
        xs, finals = [], []
        for i, script in enumerate(scripts):
            r = next((r for r in data["runs"] if r["script"] == script and r["dataset"] == dataset), None)
            if r is not None:
                xs.append(i + (j - 1) * width)
                finals.append(r["train"]["final_normalized_score"])
        ax.bar(xs, finals, width, color=colours[kind], label=label)
        for x, v in zip(xs, finals):
            ax.annotate(f"{v:.0f}", (x, max(v, 0)), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(range(len(scripts)), [SCRIPTS[s] for s in scripts])
    ax.set_xlim(-0.6, len(scripts) - 0.4)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_ylabel("final normalised score (seed 1, 10 episodes)")
    ax.set_ylim(min(-25, ax.get_ylim()[0]), 140)
    ax.set_title("Pendulum, every script at its defaults")
    ax.legend(loc="upper right", fontsize=8)
    fig.text(0.99, 0.01, "python docs/figures/failure_quality.py", ha="right", fontsize=8, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def table(data: dict) -> None:
    datasets = [f"local/pendulum/{k}-v0" for k in KINDS]
    print("\n| script | " + " | ".join(f"`{k}`" for k in KINDS) + " |")
    print("| --- |" + " --- |" * len(KINDS))
    print("| the data's episodes | " + " | ".join(f"{data['data_mean_score'][d]:.1f}" for d in datasets) + " |")
    for script, label in SCRIPTS.items():
        cells = []
        for d in datasets:
            r = next((r for r in data["runs"] if r["script"] == script and r["dataset"] == d), None)
            t = r and r["train"]
            cells.append(f"{t['final_normalized_score']:.1f} ({t['best_normalized_score']:.1f})" if t else "")
        print(f"| {label} | " + " | ".join(cells) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="W", help="train what is missing in the work folder W, then collect")
    p.add_argument("--collect", metavar="W", help="collect from the finished runs in W (nothing is trained)")
    p.add_argument("--out", default=str(fr.ROOT / "docs" / "img" / "failure_quality.png"))
    args = p.parse_args()
    if args.run or args.collect:
        data = collect(Path(args.run or args.collect).resolve(), run=bool(args.run))
    else:
        data = fr.load("failure_quality")
    draw(data, args.out)
    table(data)


if __name__ == "__main__":
    main()
