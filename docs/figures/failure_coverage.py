"""Draws docs/img/failure_coverage.png: policies trained on expert-only Hopper data and on broader
data, evaluated from start states perturbed more than any the data begin from (docs/overview.md,
"When does offline RL fail?", narrow coverage).

    python docs/figures/failure_coverage.py                     # draw from the committed JSON, print the table
    python docs/figures/failure_coverage.py --run runs/failures # train, evaluate, write the JSON, draw (resumable)
    python docs/figures/failure_coverage.py --collect W         # write the JSON from the runs already in W, draw

The runs: bc.py and iql.py, 20,000 steps, one evaluation at the end on 10 episodes, --save-model,
on local/hopper/expert-v0 and local/hopper/medium-expert-v0 (seed 1). Each checkpoint is evaluated
again with `--eval-checkpoint C --eval-env-kwargs '{"reset_noise_scale": X}'` on the same start-state
seeds: Hopper-v5 adds uniform noise in [-X, X] to every joint position and velocity at reset, and its
data were collected with the default X = 0.005 (the training run's own final evaluation is that
point).
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import failure_runs as fr  # noqa: E402

SCRIPTS = {"bc": "BC", "iql": "IQL"}
DATASETS = {"local/hopper/expert-v0": "expert", "local/hopper/medium-expert-v0": "medium-expert"}
SEED = 1
FLAGS = "--total-steps 20000 --eval-freq 20000 --eval-episodes 10 --save-model"
DEFAULT_NOISE = 0.005
NOISE = [0.02, 0.05, 0.1, 0.2]


def zero_torque_steps(seeds: list[int], noise: float) -> list[int]:
    """How long each start state stands with no torque at all: a start that falls within a few steps
    whatever the policy does is the env's, not the policy's."""
    import gymnasium as gym

    steps = []
    for seed in seeds:
        env = gym.make("Hopper-v5", reset_noise_scale=noise)
        env.reset(seed=seed)
        for t in range(1, 1001):
            _, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape))
            if terminated or truncated:
                break
        steps.append(t)
        env.close()
    return steps


def collect(workdir: Path, run: bool) -> dict:
    if run:
        fr.sweep(workdir, "coverage", list(SCRIPTS), list(DATASETS), [SEED], extra_args=FLAGS)
    out = {"flags": FLAGS, "seed": SEED, "reference": {}, "runs": []}
    for dataset in DATASETS:
        out["reference"][dataset] = ref = fr.reference(dataset)
        for script in SCRIPTS:
            try:
                folder = fr.run_folder(workdir, "coverage", script, dataset, SEED)
            except SystemExit as e:  # a run not finished yet: left out, said so
                print(f"skipped: {e}")
                continue
            train = fr.training_record(fr.train_summary(workdir, "coverage", script, dataset, SEED))
            points = [{"reset_noise_scale": DEFAULT_NOISE, "returns": train["final_returns"],
                       "return_mean": train["final_return_mean"],
                       "normalized_score": train["final_normalized_score"]}]
            for noise in NOISE:
                kwargs = {"reset_noise_scale": noise}
                name = f"hopper-{script}-{dataset.split('/')[-1]}"
                s = fr.evaluate(workdir, name, script, folder / f"{script}.pt", kwargs, f"noise{noise}", run)
                if s is not None:
                    points.append(dict(fr.eval_record(s, kwargs), reset_noise_scale=noise, eval_seeds=s["eval_seeds"],
                                       zero_torque_steps=zero_torque_steps(s["eval_seeds"], noise)))
            out["runs"].append({"script": script, "dataset": dataset, "train": train, "evals": points})
    fr.save("failure_coverage", out)
    return out


def draw(data: dict, out: str) -> None:
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    colours = {"bc": "tab:gray", "iql": "tab:red"}
    styles = {"local/hopper/expert-v0": "-", "local/hopper/medium-expert-v0": "--"}
    for r in data["runs"]:
        ref = data["reference"][r["dataset"]]
        x = [e["reset_noise_scale"] for e in r["evals"]]
        scores = [np.array(fr.normalised(e["returns"], ref)) for e in r["evals"]]
        sem = [s.std(ddof=1) / np.sqrt(len(s)) for s in scores]
        ax.errorbar(x, [s.mean() for s in scores], yerr=sem, marker="o", capsize=3, color=colours[r["script"]],
                    ls=styles[r["dataset"]], label=f"{SCRIPTS[r['script']]}, {DATASETS[r['dataset']]} data")
    ax.set_xscale("log")
    ax.set_xticks([DEFAULT_NOISE] + NOISE, [str(v) for v in [DEFAULT_NOISE] + NOISE])
    ax.minorticks_off()
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("Hopper-v5 reset_noise_scale at evaluation (the data's: 0.005)")
    ax.set_ylabel("normalised score (mean ± s.e., 10 episodes)")
    ax.set_title(f"Trained 20k steps, seed {data['seed']}; the same start-state seeds at every noise")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)  # outside: never over the data
    fig.text(0.99, 0.01, "python docs/figures/failure_coverage.py", ha="right", fontsize=8, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def table(data: dict) -> None:
    """Two tables: the normalised scores (ours), then the same evaluations' mean returns and those returns on
    D4RL's Hopper references (not a D4RL score: other data, other env version)."""
    sys.path.insert(0, str(fr.ROOT))
    from benchmarks.report import D4RL_REFERENCES

    low, high = D4RL_REFERENCES["hopper"]
    noises = [DEFAULT_NOISE] + NOISE
    print("\n| script | data | " + " | ".join(f"noise {n}" for n in noises) + " |")
    print("| --- | --- |" + " --- |" * len(noises))
    for r in data["runs"]:
        cells = [f"{e['normalized_score']:.1f}" for e in r["evals"]]
        print(f"| {SCRIPTS[r['script']]} | `{r['dataset']}` | " + " | ".join(cells) + " |")
    print("\n| script | data | " + " | ".join(f"noise {n}" for n in noises) + " |")
    print("| --- | --- |" + " --- |" * len(noises))
    for r in data["runs"]:
        cells = [f"{e['return_mean']:,.0f} ({100 * (e['return_mean'] - low) / (high - low):.1f})" for e in r["evals"]]
        print(f"| {SCRIPTS[r['script']]} | `{r['dataset']}` | " + " | ".join(cells) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="W", help="train and evaluate what is missing in the work folder W, then collect")
    p.add_argument("--collect", metavar="W", help="collect from the finished runs in W (nothing is trained)")
    p.add_argument("--out", default=str(fr.ROOT / "docs" / "img" / "failure_coverage.png"))
    args = p.parse_args()
    if args.run or args.collect:
        data = collect(Path(args.run or args.collect).resolve(), run=bool(args.run))
    else:
        data = fr.load("failure_coverage")
    draw(data, args.out)
    table(data)


if __name__ == "__main__":
    main()
