"""Draws docs/img/model_based_small_data.png: does a learned dynamics model help more as the data shrinks?
MOPO and COMBO (model-based), CQL and IQL (model-free) and BC (the yardstick), trained on the default
dataset subsampled to a few fractions of its episodes, a few seeds each, the same budget for every run
(docs/overview.md, "Model-based methods?").

    python docs/figures/model_based_small_data.py                   # draw from the committed JSON, print the table
    python docs/figures/model_based_small_data.py --run W           # build the subsets, train what is missing in W, draw
    python docs/figures/model_based_small_data.py --collect W       # write the JSON from the runs already in W, draw

The data: local/pendulum/medium-replay-v0 (40 episodes, 8,000 transitions) and random subsets of its
episodes (FRACTIONS; the episodes drawn once with numpy seed 0, whole episodes, at least one), written
with Minari's own API as local/pendulum-subsets/medium-replay-<pct>pct-v0 with the full set's env spec
and reference scores, so that every score below is on the same scale. The runs: each script with its
defaults and FLAGS (the same number of gradient steps, evaluations and episodes for all), seeds SEEDS,
one torch thread each, through benchmarks.sweep (resumable: a finished run is never run again). A
script whose file is missing (combo.py before it exists) is left out and said so. The model's training
is counted in epochs (MOPO's code), so a subset of a fraction f gets --model-max-epochs 100 / f: about
the same number of model gradient steps on every subset (early stopping may end it sooner).

What is kept per run (docs/figures/data/model_based_small_data.json): the final and best normalised
score, and for the model-based scripts the model's held-out NLL and MSE and the mean penalty (MOPO's u)
on the last rollouts, the numbers that say whether the model's error explains the scores.
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import failure_runs as fr  # noqa: E402

FULL = "local/pendulum/medium-replay-v0"
FRACTIONS = (0.05, 0.25, 1.0)  # 2, 10 and 40 of the 40 episodes
SCRIPTS = {"mopo": "MOPO", "combo": "COMBO", "cql": "CQL", "iql": "IQL", "bc": "BC"}
COLOURS = {"mopo": "tab:blue", "combo": "tab:orange", "cql": "tab:green", "iql": "tab:purple", "bc": "tab:grey"}
MODEL_BASED = ("mopo", "combo")
SEEDS = (1, 2, 3)
FLAGS = "--total-steps 10000 --eval-freq 2000 --eval-episodes 10"
MODEL_EPOCHS = 100  # mopo.py's default --model-max-epochs, on the full data
SWEEP = "small_data"
NAME = "model_based_small_data"


def subset_id(fraction: float) -> str:
    if fraction == 1.0:
        return FULL
    return f"local/pendulum-subsets/medium-replay-{round(100 * fraction)}pct-v0"


def build_subset(fraction: float) -> str:
    """Write the subset of the full dataset's episodes (Minari format) unless it exists; returns its id."""
    import minari
    from gymnasium.envs.registration import EnvSpec
    from minari.data_collector import EpisodeBuffer

    from common.datasets import load_dataset

    dataset_id = subset_id(fraction)
    if fraction == 1.0:
        load_dataset(FULL, verbose=False)  # built on the spot if missing
        return dataset_id
    if dataset_id in minari.list_local_datasets():
        return dataset_id
    full = minari.load_dataset(FULL)
    n = full.total_episodes
    chosen = np.sort(np.random.default_rng(0).choice(n, size=max(1, round(fraction * n)), replace=False))
    buffers = [EpisodeBuffer(id=i, observations=e.observations, actions=e.actions, rewards=list(e.rewards),
                             terminations=list(e.terminations), truncations=list(e.truncations))
               for i, e in enumerate(full.iterate_episodes(episode_indices=chosen.tolist()))]
    meta = full.storage.metadata
    eval_spec = meta.get("eval_env_spec")  # stored as JSON text
    eval_spec = EnvSpec.from_json(eval_spec) if isinstance(eval_spec, str) else eval_spec or full.env_spec
    minari.create_dataset_from_buffers(
        dataset_id, buffers, env=full.env_spec, eval_env=eval_spec,
        ref_min_score=meta["ref_min_score"], ref_max_score=meta["ref_max_score"],
        algorithm_name=f"episodes {chosen.tolist()} of {FULL}", author="docs/figures/model_based_small_data.py",
        author_email="none@localhost", code_permalink="docs/figures/model_based_small_data.py",
        description=f"{len(chosen)} of the {n} episodes of {FULL}, drawn with numpy seed 0")
    print(f"built {dataset_id}: episodes {chosen.tolist()} of {FULL}")
    return dataset_id


def available_scripts() -> list[str]:
    found = [s for s in SCRIPTS if (fr.ROOT / f"{s}.py").is_file()]
    for s in SCRIPTS:
        if s not in found:
            print(f"skipped: {s}.py is not in this checkout")
    return found


def collect(workdir: Path, run: bool) -> dict:
    datasets = {f: build_subset(f) if run else subset_id(f) for f in FRACTIONS}
    scripts = available_scripts()
    if run:
        for fraction, dataset in datasets.items():
            # the model's budget is counted in epochs (MOPO's code): scaled so that every subset gets about
            # the gradient steps of the default run's 100 epochs on the full data
            epochs = [f"{s}=--model-max-epochs {round(MODEL_EPOCHS / fraction)}" for s in MODEL_BASED if s in scripts]
            fr.sweep(workdir, SWEEP, scripts, [dataset], list(SEEDS), extra_args=FLAGS, script_args=epochs)
    out = {"full_dataset": FULL, "fractions": list(FRACTIONS), "datasets": datasets, "flags": FLAGS,
           "seeds": list(SEEDS), "runs": []}
    for fraction, dataset in datasets.items():
        for script in scripts:
            for seed in SEEDS:
                try:
                    s = fr.train_summary(workdir, SWEEP, script, dataset, seed)
                except SystemExit as e:  # not finished yet: left out, said so
                    print(f"skipped: {e}")
                    continue
                record = dict(fr.training_record(s), script=script, fraction=fraction, wall_time_s=s.get("wall_time_s"))
                if script in MODEL_BASED and s.get("model"):
                    values = s.get("final_values", {})
                    record.update(model_holdout_nll=s["model"]["holdout_nll"], model_holdout_mse=s["model"]["holdout_mse"],
                                  model_epochs=s["model"]["epochs"], penalty=values.get("penalty"),
                                  q_real=values.get("q_real"), q_model=values.get("q_model"))
                out["runs"].append(record)
    fr.save(NAME, out)
    return out


def summarise(data: dict) -> dict:
    """(script, fraction) -> mean and std over seeds of the final score, and the model numbers."""
    table = {}
    for r in data["runs"]:
        table.setdefault((r["script"], r["fraction"]), []).append(r)
    out = {}
    for key, runs in table.items():
        final = np.array([r["final_normalized_score"] for r in runs])
        row = {"n": len(runs), "mean": float(final.mean()), "std": float(final.std())}  # population std (ddof 0)
        for k in ("model_holdout_nll", "model_holdout_mse", "penalty"):
            vals = [r[k] for r in runs if r.get(k) is not None]
            if vals:
                row[k] = float(np.mean(vals))
        out[key] = row
    return out


def draw(data: dict, out: str) -> None:
    s = summarise(data)
    scripts = [k for k in SCRIPTS if any(key[0] == k for key in s)]
    has_model = any(key[0] in MODEL_BASED for key in s)
    fig, axes = plt.subplots(1, 2 if has_model else 1, figsize=(10 if has_model else 5.5, 4.8), squeeze=False)
    ax = axes[0, 0]
    for script in scripts:
        fractions = [f for f in data["fractions"] if (script, f) in s]
        mean = np.array([s[(script, f)]["mean"] for f in fractions])
        std = np.array([s[(script, f)]["std"] for f in fractions])
        style = "-" if script in MODEL_BASED else "--"
        ax.errorbar([100 * f for f in fractions], mean, yerr=std, label=SCRIPTS[script], linestyle=style,
                    marker="o", capsize=3, color=COLOURS[script])
    ax.set_xscale("log")
    ax.set_xticks([100 * f for f in data["fractions"]], [f"{100 * f:g}%" for f in data["fractions"]])
    ax.set_xlabel(f"episodes of {data['full_dataset']} kept")
    ax.set_ylabel("final normalised score (mean ± std, ddof 0)")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    if has_model:
        ax = axes[0, 1]
        for script in (m for m in MODEL_BASED if m in scripts):
            fractions = [f for f in data["fractions"] if "model_holdout_nll" in s.get((script, f), {})]
            ax.plot([100 * f for f in fractions], [s[(script, f)]["model_holdout_nll"] for f in fractions],
                    marker="o", color=COLOURS[script], label=f"{SCRIPTS[script]}: model held-out NLL")
        ax.set_xscale("log")
        ax.set_xticks([100 * f for f in data["fractions"]], [f"{100 * f:g}%" for f in data["fractions"]])
        ax.set_xlabel("episodes kept")
        ax.set_ylabel("model's held-out NLL (nats per dimension)")
        handles, labels = ax.get_legend_handles_labels()
        if "mopo" in scripts:  # the penalty on its own axis: a different quantity and scale
            twin = ax.twinx()
            pf = [f for f in data["fractions"] if "penalty" in s.get(("mopo", f), {})]
            twin.plot([100 * f for f in pf], [s[("mopo", f)]["penalty"] for f in pf], marker="s", linestyle=":",
                      color=COLOURS["mopo"], label="MOPO: mean penalty u on its last branches (right axis)")
            twin.set_ylabel("u")
            twin.set_ylim(bottom=0)
            h2, l2 = twin.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def table(data: dict) -> None:
    s = summarise(data)
    fractions = data["fractions"]
    print("| script | " + " | ".join(f"{100 * f:g}% of the episodes" for f in fractions) + " |")
    print("| --- |" + " --- |" * len(fractions))
    for script, label in SCRIPTS.items():
        cells = []
        for f in fractions:
            row = s.get((script, f))
            cells.append(f"{row['mean']:.1f} ± {row['std']:.1f} ({row['n']})" if row else "")
        if any(cells):
            print(f"| {label} | " + " | ".join(cells) + " |")
    for script in MODEL_BASED:
        for k, label in (("model_holdout_nll", "held-out NLL"), ("penalty", "mean penalty u")):
            cells = [f"{s[(script, f)][k]:.3f}" if k in s.get((script, f), {}) else "" for f in fractions]
            if any(cells):
                print(f"| {SCRIPTS[script]}: {label} | " + " | ".join(cells) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="W", help="build the subsets, train what is missing in the work folder W, collect")
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
