"""Draws docs/img/bc_quality.png: BC's and 10% BC's final score against the quality of the data they
clone, on the five local Pendulum datasets (docs/bc.md, Results).

    python docs/figures/bc_quality.py                     # draw from the committed JSON, print the table
    python docs/figures/bc_quality.py --run runs/failures # train what is missing, write the JSON, draw (resumable)
    python docs/figures/bc_quality.py --collect W         # write the JSON from the runs already in W, draw

The runs: bc.py with every default (50,000 steps), seed 1, and the same with `--top-fraction 0.1`.
On medium-replay they are the committed default runs under benchmarks/results/pendulum (seeds 1-3,
docs/results.md); on medium-expert plain BC is the run of docs/figures/failure_shift.py (the same
defaults, plus --save-model, which changes no number). x = the mean normalised return of the data's
own episodes, y = BC's score: on the diagonal, a policy exactly as good as its data on average.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import failure_runs as fr  # noqa: E402

KINDS = ["random", "medium-replay", "medium", "medium-expert", "expert"]
LABELS = {"bc": "BC", "bc10": "10% BC (--top-fraction 0.1)"}
SEEDS = {"medium-replay": [1, 2, 3]}  # committed runs; one seed elsewhere
COMMITTED = fr.ROOT / "benchmarks" / "results"


def source(workdir: Path, label: str, kind: str) -> tuple[Path, str]:
    if kind == "medium-replay":
        return COMMITTED, "pendulum"
    if kind == "medium-expert" and label == "bc":
        return workdir, "shift"
    return workdir, "quality"


def collect(workdir: Path, run: bool) -> dict:
    if run:
        fr.sweep(workdir, "quality", ["bc"], [f"local/pendulum/{k}-v0" for k in ("random", "medium", "expert")], [1])
        fr.sweep(workdir, "shift", ["bc", "iql"], ["local/pendulum/medium-expert-v0"], [1], extra_args="--save-model")
        fr.sweep(workdir, "quality", ["bc10=bc"], [f"local/pendulum/{k}-v0" for k in KINDS if k != "medium-replay"],
                 [1], script_args=["bc10=--top-fraction 0.1"])
    out = {"data_mean_score": {}, "runs": []}
    for kind in KINDS:
        dataset = f"local/pendulum/{kind}-v0"
        out["data_mean_score"][dataset] = fr.data_mean_score(dataset)
        for label in LABELS:
            folder, name = source(workdir, label, kind)
            for seed in SEEDS.get(kind, [1]):
                try:
                    train = fr.training_record(fr.train_summary(folder, name, label, dataset, seed))
                except SystemExit as e:  # a run not finished yet: left out, said so
                    print(f"skipped: {e}")
                    continue
                out["runs"].append({"label": label, "dataset": dataset, "seed": seed, "train": train})
    fr.save("bc_quality", out)
    return out


def draw(data: dict, out: str) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.plot([-10, 110], [-10, 110], color="k", ls=":", lw=1, label="as good as the data's average episode")
    for (label, text), colour, shift in zip(LABELS.items(), ("tab:gray", "tab:green"), (-1.2, 1.2)):
        for k, kind in enumerate(KINDS):
            dataset = f"local/pendulum/{kind}-v0"
            x = data["data_mean_score"][dataset]
            ys = [r["train"]["final_normalized_score"] for r in data["runs"]
                  if r["label"] == label and r["dataset"] == dataset]
            if not ys:
                continue
            ax.scatter([x + shift] * len(ys), ys, color=colour, s=18, alpha=0.6)
            ax.scatter([x + shift], [np.mean(ys)], color=colour, marker="D", s=45,
                       label=text if k == 0 or (label == "bc10" and kind == "medium-replay") else None)
    for kind in KINDS:  # each name beside BC's mean on that dataset
        dataset = f"local/pendulum/{kind}-v0"
        ys = [r["train"]["final_normalized_score"] for r in data["runs"]
              if r["label"] == "bc" and r["dataset"] == dataset]
        x = data["data_mean_score"][dataset]
        ax.annotate(kind, (x, np.mean(ys) if ys else x), xytext=(-8, -4) if kind == "expert" else (8, -4),
                    ha="right" if kind == "expert" else "left", textcoords="offset points", fontsize=9, color="0.3")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize=9)
    ax.set_xlabel("the data's episodes: mean normalised return")
    ax.set_ylabel("final normalised score (dots: seeds, diamond: mean)")
    ax.set_title("BC on the five Pendulum datasets (50k steps, 10 episodes)")
    ax.set_xlim(-15, 115)
    ax.grid(alpha=0.3)
    fig.text(0.99, 0.01, "python docs/figures/bc_quality.py", ha="right", fontsize=8, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def table(data: dict) -> None:
    print("\n| dataset | the data's episodes | BC final (best) | 10% BC final (best) | seeds |")
    print("| --- | --- | --- | --- | --- |")
    for kind in KINDS:
        dataset = f"local/pendulum/{kind}-v0"
        cells = []
        for label in LABELS:
            rs = [r["train"] for r in data["runs"] if r["label"] == label and r["dataset"] == dataset]
            cells.append(f"{np.mean([t['final_normalized_score'] for t in rs]):.1f} "
                         f"({np.mean([t['best_normalized_score'] for t in rs]):.1f})" if rs else "")
        seeds = ", ".join(map(str, SEEDS.get(kind, [1])))
        print(f"| `{dataset}` | {data['data_mean_score'][dataset]:.1f} | {cells[0]} | {cells[1]} | {seeds} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="W", help="train what is missing in the work folder W, then collect")
    p.add_argument("--collect", metavar="W", help="collect from the finished runs in W (nothing is trained)")
    p.add_argument("--out", default=str(fr.ROOT / "docs" / "img" / "bc_quality.png"))
    args = p.parse_args()
    if args.run or args.collect:
        data = collect(Path(args.run or args.collect).resolve(), run=bool(args.run))
    else:
        data = fr.load("bc_quality")
    draw(data, args.out)
    table(data)


if __name__ == "__main__":
    main()
