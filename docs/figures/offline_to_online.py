"""Draws docs/img/offline_to_online.png and prints the table of docs/offline_to_online.md: each script
trained offline, then fine-tuned online with `--online-steps`, several seeds, one x axis (total
gradient steps).

    python docs/figures/offline_to_online.py                      # from docs/figures/data/offline_to_online.json
    python docs/figures/offline_to_online.py --collect SWEEP_DIR  # first gather a sweep's runs into that file

The runs are a sweep (docs/sweeps.md), e.g. the ones behind the page:

    python -m benchmarks.sweep --scripts iql awac cql cal_ql --datasets local/pendulum/medium-v0 --seeds 0 1 2 \\
        --out sweeps/offline_to_online --extra-args="--total-steps 5000 --online-steps 5000 --eval-freq 500" --jobs 1
    python -m benchmarks.sweep --scripts rlpd --datasets local/pendulum/medium-v0 --seeds 0 1 2 \\
        --out sweeps/offline_to_online --extra-args="--total-steps 5000 --eval-freq 500" --jobs 1
    python -m benchmarks.sweep --scripts iql_offline=iql --datasets local/pendulum/medium-v0 --seeds 0 1 2 \\
        --out sweeps/offline_to_online --extra-args="--total-steps 10000 --actor-lr-schedule constant --eval-freq 500" --jobs 1

The last sweep is the control for IQL's fall at the switch: the same seeds trained on past the switch
with no online data and the learning rates of a fine-tuning run (`--actor-lr-schedule constant`), drawn
dashed. A label ending in `_offline` marks such a run: `--collect` keeps it apart from the online runs.

The x axis counts steps from the switch: offline gradient steps before it (negative), env steps after
it. RLPD has no offline phase (its switch is step 0, each env step followed by several gradient
steps); the other scripts take one env step and one gradient step per online iteration.

`--collect` keeps, per run, the evaluation history (step, normalised score) and the online episodes'
returns, normalised with the dataset's reference scores; runs of a label already in the file are
replaced, other labels kept (so a script can be added later from another sweep folder).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "docs/figures/data/offline_to_online.json"
COLORS = {"iql": "tab:blue", "awac": "tab:orange", "cql": "tab:green", "cal_ql": "tab:red", "rlpd": "tab:purple"}
NAMES = {"iql": "IQL", "awac": "AWAC", "cql": "CQL", "cal_ql": "Cal-QL", "rlpd": "RLPD"}


def collect(sweep: Path, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from common.datasets import load_dataset

    old = json.loads(out.read_text()) if out.exists() else {}
    runs, controls = old.get("runs", []), old.get("offline_continuations", [])
    new, new_controls, datasets = [], [], {}
    for path in sorted(sweep.glob("*/*/seed*/runs/*/summary.json")):
        s = json.loads(path.read_text())
        label = path.relative_to(sweep).parts[0]
        if not s.get("online_steps"):
            if label.endswith("_offline"):  # a control: the offline phase continued, no online data
                new_controls.append({"label": label, "script": s["algorithm"], "dataset_id": s["dataset_id"],
                                     "seed": s["seed"], "steps": s["steps"],
                                     "eval": [[step, round(score, 2)] for step, _, score in s["eval_history"]]})
            continue
        if s["dataset_id"] not in datasets:
            datasets[s["dataset_id"]] = load_dataset(s["dataset_id"], "cpu", verbose=False)
        data = datasets[s["dataset_id"]]
        online = s["online_episode_returns"]
        scores = data.normalized_score(np.array([r for _, r in online])) if online else []
        new.append({
            "label": label, "script": s["algorithm"], "dataset_id": s["dataset_id"], "seed": s["seed"],
            "offline_steps": s["offline_steps"], "online_steps": s["online_steps"],
            "eval": [[step, round(score, 2)] for step, _, score in s["eval_history"]],
            "online_episodes": [[step, round(float(sc), 2)] for (step, _), sc in zip(online, scores)],
        })
    labels = {r["label"] for r in new} | {r["label"] for r in new_controls}
    runs = sorted([r for r in runs if r["label"] not in labels] + new, key=lambda r: (r["label"], r["seed"]))
    controls = sorted([r for r in controls if r["label"] not in labels] + new_controls,
                      key=lambda r: (r["label"], r["seed"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"sweep": sweep.name, "runs": runs, "offline_continuations": controls}, indent=1) + "\n")
    print(f"{len(new) + len(new_controls)} runs from {sweep} ({', '.join(sorted(labels))}) -> {out}")


def by_label(runs: list) -> dict:
    groups = {}
    for r in runs:
        groups.setdefault(r["label"], []).append(r)
    return groups


def curve(group: list, key: str):
    """steps and a (seeds, steps) array of scores; only the steps every seed has."""
    steps = sorted(set.intersection(*[{s for s, _ in r[key]} for r in group]))
    values = np.array([[dict(map(tuple, r[key]))[s] for s in steps] for r in group])
    return np.array(steps), values


def table(groups: dict) -> str:
    """Markdown: per label, the evaluations at the switch, the lowest in the first 1000 online steps,
    the mean of the last four and the final one, each mean +- std over seeds."""
    def cell(x):
        return f"{x.mean():.1f} ± {x.std():.1f}"

    rows = ["| script | seeds | at the switch | lowest, first 1k online steps | last four, mean | final |",
            "| --- | --- | --- | --- | --- | --- |"]
    for label, group in groups.items():
        steps, values = curve(group, "eval")
        switch = group[0]["offline_steps"]
        at = values[:, steps == switch][:, 0]
        dip = values[:, (steps > switch) & (steps <= switch + 1000)].min(1)
        rows.append(f"| {NAMES.get(label, label)} | {len(group)} | {cell(at)} | {cell(dip)} | "
                    f"{cell(values[:, -4:].mean(1))} | {cell(values[:, -1])} |")
    return "\n".join(rows)


def draw(groups: dict, out: Path, controls: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, gridspec_kw={"width_ratios": [2, 1]})
    end = 0
    for label, group in groups.items():
        color = COLORS.get(label)
        name = f"{NAMES.get(label, label)} ({len(group)} seeds)"
        switch = group[0]["offline_steps"]  # steps are drawn from the switch: offline ones negative
        end = max(end, group[0]["online_steps"])
        steps, values = curve(group, "eval")
        axes[0].plot(steps - switch, values.mean(0), color=color, label=name, marker="o", ms=3)
        axes[0].fill_between(steps - switch, values.min(0), values.max(0), color=color, alpha=0.15, lw=0)
        steps, values = curve(group, "online_episodes")
        axes[1].plot(steps - switch, values.mean(0), color=color, marker="o", ms=3)
        axes[1].fill_between(steps - switch, values.min(0), values.max(0), color=color, alpha=0.15, lw=0)
    for label, group in (controls or {}).items():  # the offline phase continued past the switch: dashed
        base = label.removesuffix("_offline")
        switch = groups[base][0]["offline_steps"]
        steps, values = curve(group, "eval")
        axes[0].plot(steps - switch, values.mean(0), color=COLORS.get(base), ls="--", marker="o", ms=2,
                     label=f"{NAMES.get(base, base)}, offline only ({len(group)} seeds)")
    for ax in axes:
        ax.axvline(0, color="black", ls="--", lw=1)
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("steps from the switch (offline: gradient steps; online: env steps)")
    axes[1].set_xlabel("env steps from the switch")
    axes[0].text(0, 0.02, " switch: online from here", fontsize=8,
                 transform=axes[0].get_xaxis_transform(), va="bottom")
    axes[0].set_ylabel("normalised score")
    axes[0].set_title("(a) evaluation of the mean action, 10 episodes")
    axes[1].set_title("(b) online episodes (sampled actions)")
    axes[1].set_xlim(-0.02 * end, 1.02 * end)
    handles, labels = axes[0].get_legend_handles_labels()
    # the caption under the figure in docs/offline_to_online.md says: mean over seeds, band = min to max
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--collect", type=Path, help="a sweep folder: gather its --online-steps runs into --data first")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=ROOT / "docs/img/offline_to_online.png")
    args = p.parse_args()
    if args.collect:
        collect(args.collect, args.data)
    data = json.loads(args.data.read_text())
    groups = by_label(data["runs"])
    draw(groups, args.out, by_label(data.get("offline_continuations", [])))
    print(table(groups))


if __name__ == "__main__":
    main()
