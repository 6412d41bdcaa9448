"""CQL's alpha on the Pendulum datasets: the figures and the table of docs/cql.md, from committed numbers.

    python docs/figures/cql_alpha.py collect SWEEP_DIR     # sweep folder -> docs/figures/data/cql_alpha.json
    python docs/figures/cql_alpha.py plot                  # that file -> docs/img/cql_alpha.png, cql_q_vs_mc.png, a table

`collect` reads a benchmarks.sweep folder whose labels are `a<alpha>` (cql.py --cql-alpha <alpha>; `a0` is
offline SAC) and `lag` (--cql-lagrange): each run's summary and, from its TensorBoard log, Q on the data's
actions and the data's Monte-Carlo return at each logged step. `plot` needs only the JSON file.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "cql_alpha.json")
IMG = os.path.join(HERE, "..", "img")
KINDS = ["random", "medium-replay", "medium", "expert"]  # broad to narrow action coverage
TAGS = ["values/q_data", "values/mc_return", "values/q_random", "values/q_policy"]


def collect(sweep_dir: str) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = []
    for path in sorted(glob.glob(os.path.join(sweep_dir, "*", "*", "seed*", "runs", "*", "summary.json"))):
        label = path.split(os.sep)[-6]
        if not re.fullmatch(r"a[\d.]+|lag", label):
            continue
        summary = json.load(open(path))
        events = EventAccumulator(os.path.dirname(path), size_guidance={"scalars": 0})
        events.Reload()
        curves = {tag: [[e.step, round(e.value, 3)] for e in events.Scalars(tag)] for tag in TAGS}
        values = summary["final_values"]
        runs.append({
            "label": label, "lagrange": label == "lag", "alpha_given": None if label == "lag" else float(label[1:]),
            "dataset_id": summary["dataset_id"], "seed": summary["seed"], "steps": summary["steps"],
            "final": round(summary["final_normalized_score"], 2), "best": round(summary["best_normalized_score"], 2),
            "final_alpha": values["alpha"], "final_cql_gap": values["cql_gap"],
            "eval_history": [[s, round(r, 2), round(n, 2)] for s, r, n in summary["eval_history"]],
            "curves": curves,
        })
    if not runs:
        sys.exit(f"no runs labelled a<alpha> or lag under {sweep_dir}")
    os.makedirs(os.path.dirname(DATA), exist_ok=True)
    with open(DATA, "w") as f:
        json.dump({"sweep": os.path.basename(os.path.normpath(sweep_dir)), "runs": runs}, f, indent=1)
    print(f"wrote {DATA}: {len(runs)} runs")


def kind(dataset_id: str) -> str:
    return dataset_id.split("/")[-1].rsplit("-v", 1)[0]


def mean(xs):
    return sum(xs) / len(xs)


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    data = json.load(open(DATA))
    runs = data["runs"]
    kinds = [k for k in KINDS if any(kind(r["dataset_id"]) == k for r in runs)]

    # 1. final score against alpha; offline SAC (alpha 0) at the left edge; the Lagrangian at its final alpha
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    sac_x = 0.2
    for i, k in enumerate(kinds):
        color = f"C{i}"
        fixed = [r for r in runs if kind(r["dataset_id"]) == k and not r["lagrange"] and r["alpha_given"] > 0]
        alphas = sorted({r["alpha_given"] for r in fixed})
        means = [mean([r["final"] for r in fixed if r["alpha_given"] == a]) for a in alphas]
        ax.plot(alphas, means, "o-", color=color, label=f"{k}: fixed alpha")
        ax.plot([r["alpha_given"] for r in fixed], [r["final"] for r in fixed], ".", color=color, alpha=0.4)
        for r in runs:
            if kind(r["dataset_id"]) != k:
                continue
            if r["lagrange"]:
                ax.plot(r["final_alpha"], r["final"], "*", color=color, markersize=13, markeredgecolor="black")
            elif r["alpha_given"] == 0:
                ax.plot(sac_x, r["final"], "x", color=color, markersize=9, markeredgewidth=2)
    ax.plot([], [], "k*", markersize=11, label="Lagrangian (target gap 5), at its final alpha")
    ax.plot([], [], "kx", markersize=8, markeredgewidth=2, label="alpha = 0 (offline SAC)")
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100) if t <= hi]
    ax.set_xticks([sac_x] + ticks, ["0\n(SAC)"] + [f"{t:g}" for t in ticks])
    ax.set_xlim(lo, hi)
    ax.minorticks_off()
    ax.set_xlabel("alpha (log scale)")
    ax.set_ylabel("final normalised score")
    ax.set_title("cql.py defaults on local/pendulum/*-v0: final score against alpha", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the axes, never over a point
    fig.savefig(os.path.join(IMG, "cql_alpha.png"), dpi=120, bbox_inches="tight")
    print("wrote docs/img/cql_alpha.png")

    # 2. Q on the data's actions against the data's Monte-Carlo return: offline SAC and CQL with the default alpha
    panels = [k for k in ("medium-replay", "expert") if k in kinds]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, k in zip(axes[0], panels):
        for label, name, color in (("a0", "alpha = 0 (offline SAC)", "C3"), ("a5", "alpha = 5 (CQL, default)", "C0")):
            chosen = [r for r in runs if kind(r["dataset_id"]) == k and r["label"] == label]
            if not chosen:
                continue
            r = min(chosen, key=lambda r: r["seed"])
            ax.plot(*zip(*r["curves"]["values/q_data"]), color=color, label=f"{name}: Q(s, a), a from the data")
            ax.plot(*zip(*r["curves"]["values/q_random"]), color=color, linestyle=":",
                    label=f"{name}: Q(s, a), a uniform")
        mc = [r for r in runs if kind(r["dataset_id"]) == k and r["label"] == "a5"] or \
             [r for r in runs if kind(r["dataset_id"]) == k]
        ax.plot(*zip(*min(mc, key=lambda r: r["seed"])["curves"]["values/mc_return"]), color="black",
                linestyle="--", label="Monte-Carlo return of the data")
        ax.axhline(0.0, color="gray", linewidth=0.8, label="largest possible value (rewards <= 0)")
        if max(v for r in runs if kind(r["dataset_id"]) == k for _, v in r["curves"]["values/q_data"]) > 0:
            ax.set_yscale("symlog", linthresh=10)  # runaway values: linear near 0, logarithmic beyond
        ax.set_title(f"local/pendulum/{k}-v0, seed {min(mc, key=lambda r: r['seed'])['seed']}", fontsize=10)
        ax.set_xlabel("gradient step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("value on a batch of the data's states")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(IMG, "cql_q_vs_mc.png"), dpi=120, bbox_inches="tight")
    print("wrote docs/img/cql_q_vs_mc.png")

    table(data)


def table(data: dict) -> None:
    """The tables of docs/cql.md: the final score per dataset and setting (the first also in
    docs/overview.md), and the defaults' runs on the default data."""
    runs = data["runs"]
    kinds = [k for k in KINDS if any(kind(r["dataset_id"]) == k for r in runs)]
    # final score, mean over seeds (seeds in brackets), per dataset and setting
    labels = sorted({r["label"] for r in runs}, key=lambda l: (l == "lag", float(l[1:]) if l != "lag" else 0))
    names = {l: ("Lagrangian" if l == "lag" else ("0 (SAC)" if float(l[1:]) == 0 else l[1:])) for l in labels}
    print("\n| dataset | " + " | ".join(f"alpha {names[l]}" if l != "lag" else names[l] for l in labels) + " |")
    print("| --- |" + " --- |" * len(labels))
    for k in kinds:
        cells = []
        for l in labels:
            chosen = [r for r in runs if kind(r["dataset_id"]) == k and r["label"] == l]
            if not chosen:
                cells.append("")
                continue
            cell = f"{mean([r['final'] for r in chosen]):.1f}" + (f" ({len(chosen)} seeds)" if len(chosen) > 1 else "")
            if l == "lag":
                cell += f", alpha {mean([r['final_alpha'] for r in chosen]):.2g}"
            cells.append(cell)
        print(f"| {k} | " + " | ".join(cells) + " |")

    # the default settings (alpha 5) on the default data, every seed
    default = sorted((r for r in runs if r["label"] == "a5" and kind(r["dataset_id"]) == "medium-replay"),
                     key=lambda r: r["seed"])
    if default:
        steps = ", ".join(f"{s:,}" for s, _, _ in default[0]["eval_history"])
        print(f"\n| seed | normalised score at steps {steps} | final | best |\n| --- | --- | --- | --- |")
        for r in default:
            history = ", ".join(f"{n:.1f}" for _, _, n in r["eval_history"])
            print(f"| {r['seed']} | {history} | {r['final']:.1f} | {r['best']:.1f} |")
        finals = [r["final"] for r in default]
        sd = (sum((x - mean(finals)) ** 2 for x in finals) / max(len(finals) - 1, 1)) ** 0.5
        print(f"| mean ± std | | {mean(finals):.1f} ± {sd:.1f} | {mean([r['best'] for r in default]):.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("collect").add_argument("sweep_dir")
    sub.add_parser("plot")
    args = parser.parse_args()
    collect(args.sweep_dir) if args.command == "collect" else plot()
