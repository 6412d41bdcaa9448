"""Draws docs/img/failure_shift.png: policies trained on Pendulum data, evaluated with another mass or
another pole length than the data's (docs/overview.md, "When does offline RL fail?", dynamics shift).

    python docs/figures/failure_shift.py                     # draw from the committed JSON, print the table
    python docs/figures/failure_shift.py --run runs/failures # train, evaluate, write the JSON, draw (resumable)
    python docs/figures/failure_shift.py --collect W         # write the JSON from the runs already in W, draw

The runs: bc.py and iql.py with their defaults and --save-model on local/pendulum/medium-expert-v0
(seed 1), then each checkpoint evaluated with `--eval-checkpoint C --eval-env-kwargs '{"m": X}'` (and
'{"l": X}'), on the start states of its final evaluation. Pendulum-v1's mass m and length l are 1.0
when the data were collected; the scores are normalised with the dataset's reference returns, which
were measured at m = l = 1.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import failure_runs as fr  # noqa: E402

DATASET = "local/pendulum/medium-expert-v0"
SCRIPTS = {"bc": "BC", "iql": "IQL"}
SEED = 1
VALUES = {"m": [0.6, 0.8, 1.0, 1.2, 1.4, 1.7, 2.0], "l": [0.6, 0.8, 1.0, 1.2, 1.4, 1.7, 2.0]}
NAMES = {"m": "mass m", "l": "pole length l"}


def tag(param: str, value: float) -> str:
    return "m1.0" if value == 1.0 else f"{param}{value}"  # m = l = 1 is the same env: evaluated once


def collect(workdir: Path, run: bool) -> dict:
    if run:
        fr.sweep(workdir, "shift", list(SCRIPTS), [DATASET], [SEED], extra_args="--save-model")
    ref = fr.reference(DATASET)
    out = {"dataset": DATASET, "seed": SEED, "reference": ref, "runs": {}}
    for script in SCRIPTS:
        try:
            folder = fr.run_folder(workdir, "shift", script, DATASET, SEED)
        except SystemExit as e:  # a run not finished yet: left out, said so
            print(f"skipped: {e}")
            continue
        record = {"train": fr.training_record(fr.train_summary(workdir, "shift", script, DATASET, SEED)), "evals": []}
        for param, values in VALUES.items():
            for value in values:
                kwargs = {"m": 1.0} if value == 1.0 else {param: value}
                s = fr.evaluate(workdir, f"pend-{script}", script, folder / f"{script}.pt", kwargs,
                                tag(param, value), run)
                if s is not None:
                    record["evals"].append(dict(fr.eval_record(s, kwargs), param=param, value=value))
        out["runs"][script] = record
    fr.save("failure_shift", out)
    return out


def draw(data: dict, out: str) -> None:
    ref = data["reference"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, param in zip(axes, VALUES):
        for (script, label), colour in zip(SCRIPTS.items(), ("tab:gray", "tab:red")):
            evals = [e for e in data["runs"].get(script, {"evals": []})["evals"] if e["param"] == param]
            if not evals:
                continue
            x = [e["value"] for e in evals]
            scores = [np.array(fr.normalised(e["returns"], ref)) for e in evals]
            mean = [s.mean() for s in scores]
            sem = [s.std(ddof=1) / np.sqrt(len(s)) for s in scores]
            ax.errorbar(x, mean, yerr=sem, marker="o", capsize=3, color=colour, label=label)
        ax.axvline(1.0, color="k", ls=":", lw=1)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.annotate("the data's", (1.0, 0.02), xycoords=("data", "axes fraction"), xytext=(4, 0),
                    textcoords="offset points", fontsize=9)
        ax.set_xlabel(f"Pendulum's {NAMES[param]} at evaluation")
        ax.set_title(f"evaluated with another {NAMES[param]}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("normalised score (mean ± s.e., 10 episodes)")
    axes[1].legend(loc="upper right")
    n = len(next(iter(data["runs"].values()))["evals"][0]["returns"])
    fig.suptitle(f"Trained on {data['dataset']} (m = l = 1), seed {data['seed']}; {n} episodes per point")
    fig.text(0.99, 0.01, "python docs/figures/failure_shift.py", ha="right", fontsize=8, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def table(data: dict) -> None:
    def score(script: str, param: str, value: float) -> str:
        evals = data["runs"].get(script, {"evals": []})["evals"]
        e = next((e for e in evals if e["param"] == param and e["value"] == value), None)
        return f"{e['normalized_score']:.1f}" if e else ""

    print("\n| mass $m$ | BC | IQL | | length $l$ | BC | IQL |\n| --- | --- | --- | --- | --- | --- | --- |")
    for m, l in zip(VALUES["m"], VALUES["l"]):
        print(f"| {m} | {score('bc', 'm', m)} | {score('iql', 'm', m)} | "
              f"| {l} | {score('bc', 'l', l)} | {score('iql', 'l', l)} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="W", help="train and evaluate what is missing in the work folder W, then collect")
    p.add_argument("--collect", metavar="W", help="collect from the finished runs in W (nothing is trained)")
    p.add_argument("--out", default=str(fr.ROOT / "docs" / "img" / "failure_shift.png"))
    args = p.parse_args()
    if args.run or args.collect:
        data = collect(Path(args.run or args.collect).resolve(), run=bool(args.run))
    else:
        data = fr.load("failure_shift")
    draw(data, args.out)
    table(data)


if __name__ == "__main__":
    main()
