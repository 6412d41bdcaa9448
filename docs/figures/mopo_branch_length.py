"""Draws docs/img/mopo_branch_length.png: MOPO on the default Pendulum data with branches of h = 25 (the
default) and h = 5 (MOPO's D4RL setting), and h = 5 through Pendulum's true equations in place of the
learned model (`--true-dynamics`: a perfect model, no penalty) (docs/mopo.md, Results).

    python docs/figures/mopo_branch_length.py                 # draw from the committed JSON, print the tables
    python docs/figures/mopo_branch_length.py --run W         # train what is missing in W, collect, draw
    python docs/figures/mopo_branch_length.py --collect W     # collect the finished runs in W, draw

The runs: `mopo.py` with the flags of RUNS on local/pendulum/medium-replay-v0, seeds SEEDS, one torch thread
each, through benchmarks.sweep (resumable). The same summaries are committed under
benchmarks/results/pendulum/<label>/ (`python -m benchmarks.report --collect W/<sweep> --into ...`).
Kept per run (docs/figures/data/mopo_branch_length.json): the normalised score at every evaluation, the
model's held-out numbers, the last logged Q on real and on model transitions and the mean penalty u.
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import failure_runs as fr  # noqa: E402

DATASET = "local/pendulum/medium-replay-v0"
SEEDS = (1, 2, 3)  # the seeds of every script's default runs
# (label, flags, legend)
RUNS = [
    ("mopo", "", "h = 25, learned model (default)"),
    ("mopo_h5", "--rollout-length 5", "h = 5, learned model"),
    ("mopo_h5_true", "--rollout-length 5 --true-dynamics", "h = 5, true dynamics"),
]
SWEEP = "mopo_branch_length"
NAME = "mopo_branch_length"
COLOURS = {"mopo": "tab:blue", "mopo_h5": "tab:orange", "mopo_h5_true": "tab:red"}


def collect(workdir: Path, run: bool) -> dict:
    if run:
        fr.sweep(workdir, SWEEP, [label if label == "mopo" else f"{label}=mopo" for label, _, _ in RUNS], [DATASET],
                 list(SEEDS), script_args=[f"{label}={flags}" for label, flags, _ in RUNS if flags])
    out = {"dataset": DATASET, "seeds": list(SEEDS), "runs": {label: flags for label, flags, _ in RUNS},
           "records": []}
    for label, _, _ in RUNS:
        for seed in SEEDS:
            s = fr.train_summary(workdir, SWEEP, label, DATASET, seed)
            values = s.get("final_values", {})
            out["records"].append(dict(fr.training_record(s), label=label,
                                       model_epochs=s["model"]["epochs"], model_holdout_nll=s["model"]["holdout_nll"],
                                       model_holdout_mse=s["model"]["holdout_mse"], q_real=values.get("q_real"),
                                       q_model=values.get("q_model"), penalty=values.get("penalty")))
    fr.save(NAME, out)
    return out


def by_label(data: dict) -> dict:
    out = {}
    for r in data["records"]:
        out.setdefault(r["label"], []).append(r)
    return out


def draw(data: dict, path: str) -> None:
    runs = by_label(data)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for label, _, legend in RUNS:
        if label not in runs:
            continue
        steps = [e[0] for e in runs[label][0]["eval_history"]]
        scores = np.array([[e[2] for e in r["eval_history"]] for r in runs[label]])
        mean, std = scores.mean(0), scores.std(0)  # population std (ddof 0) over the seeds
        ax.plot(steps, mean, marker="o", color=COLOURS[label], label=legend)
        ax.fill_between(steps, mean - std, mean + std, color=COLOURS[label], alpha=0.15)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("SAC gradient steps")
    ax.set_ylabel("normalised score (mean ± std, ddof 0)")
    ax.set_title(f"mopo.py on {data['dataset']}, seeds {', '.join(map(str, data['seeds']))}", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def table(data: dict) -> None:
    runs = by_label(data)
    # 0: the default run, seed by seed
    default = runs["mopo"]
    steps = [e[0] for e in default[0]["eval_history"]]
    print("| seed | model: epochs, held-out NLL, held-out MSE | normalised score at steps "
          + ", ".join(f"{s:,}" for s in steps) + " | final | best |")
    print("| --- | --- | --- | --- | --- |")
    for r in default:
        print(f"| {r['seed']} | {r['model_epochs']}, {r['model_holdout_nll']:.2f}, {r['model_holdout_mse']:.5f} | "
              + ", ".join(f"{e[2]:.1f}" for e in r["eval_history"])
              + f" | {r['final_normalized_score']:.1f} | {r['best_normalized_score']:.1f} |")
    final = np.array([r["final_normalized_score"] for r in default])
    best = np.array([r["best_normalized_score"] for r in default])
    print(f"| mean ± std | | | {final.mean():.1f} ± {final.std():.1f} | {best.mean():.1f} ± {best.std():.1f} |")
    print()
    # 1: the three branch settings
    print("| run | flags | final | best | mean penalty $u$ on the last branches |")
    print("| --- | --- | --- | --- | --- |")
    for label, flags, _ in RUNS:
        rs = runs.get(label, [])
        if not rs:
            continue
        final = np.array([r["final_normalized_score"] for r in rs])
        best = np.array([r["best_normalized_score"] for r in rs])
        u = np.mean([r["penalty"] for r in rs])
        print(f"| `{label}` | {f'`{flags}`' if flags else '(none)'} | {final.mean():.1f} ± {final.std():.1f} "
              f"| {best.mean():.1f} ± {best.std():.1f} | {u:.3f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="W", help="train what is missing in the work folder W, then collect")
    p.add_argument("--collect", metavar="W", help="collect from the finished runs in W (nothing is trained)")
    p.add_argument("--out", default=str(fr.ROOT / "docs" / "img" / f"{NAME}.png"))
    args = p.parse_args()
    if args.run or args.collect:
        sys.path.insert(0, str(fr.ROOT))
        data = collect(Path(args.run or args.collect).resolve(), run=bool(args.run))
    else:
        data = fr.load(NAME)
    draw(data, args.out)
    table(data)


if __name__ == "__main__":
    main()
