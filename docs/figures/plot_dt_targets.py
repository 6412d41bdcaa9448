"""Plot the Decision Transformer's return knob: the return achieved against the return asked for.

    python decision_transformer.py --eval-checkpoint runs/<run>/decision_transformer.pt \
        --target-returns -1200 -900 -600 -300 -150 0 200
    python docs/figures/plot_dt_targets.py runs/*/summary.json --out docs/img/dt_targets.png

Reads the summary.json of `--eval-checkpoint` runs (their "per_target" entry); one line per
checkpoint, the mean over episodes with its standard deviation as a band; the diagonal
(achieved = asked) and the dataset's best episode return for reference.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="achieved vs asked return of decision_transformer.py")
    parser.add_argument("summaries", nargs="+", help="summary.json files of --eval-checkpoint runs")
    parser.add_argument("--out", default="docs/img/dt_targets.png")
    parser.add_argument("--title", default=None)
    cli = parser.parse_args()

    fig, ax = plt.subplots(figsize=(6, 4.5))
    lo, hi, best = np.inf, -np.inf, None
    for path in cli.summaries:
        with open(path) as f:
            s = json.load(f)
        if "per_target" not in s:
            raise SystemExit(f"{path}: no per_target entry (not a decision_transformer.py --eval-checkpoint summary)")
        asked = np.array(sorted(float(k) for k in s["per_target"]))
        runs = [np.array(s["per_target"][f"{a:g}"]["returns"]) for a in asked]
        mean, std = np.array([r.mean() for r in runs]), np.array([r.std() for r in runs])
        label = os.path.basename(os.path.dirname(os.path.abspath(s["checkpoint"])))
        line, = ax.plot(asked, mean, "o-", label=label.split("__")[-2] and f"seed {label.split('__')[-2]}")
        ax.fill_between(asked, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        lo, hi = min(lo, asked.min(), mean.min()), max(hi, asked.max(), mean.max())
        best = s.get("dataset_best_return", best)
        dataset = s["dataset_id"]
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="achieved = asked")
    if best is not None:
        ax.axvline(best, color="gray", lw=1, ls=":", label=f"best return in the data ({best:.0f})")
        ax.axhline(best, color="gray", lw=1, ls=":")
    ax.set_xlabel("target return asked for (R_1)")
    ax.set_ylabel("return achieved (mean ± std over episodes)")
    ax.set_title(cli.title or f"Decision Transformer on {dataset}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    os.makedirs(os.path.dirname(cli.out) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(cli.out, dpi=120)
    print(f"wrote {cli.out}")


if __name__ == "__main__":
    main()
