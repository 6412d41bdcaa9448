"""Plot what CQL's theory is about, from the TensorBoard logs of cql.py runs: the mean Q on dataset
actions (values/q_data) against the dataset's Monte-Carlo return of the same states (values/mc_return).

    python docs/figures/plot_cql_values.py runs/<alpha-0 run> runs/<alpha-5 run> --labels "alpha = 0" "alpha = 5" \
        --out q_vs_mc.png

A tool for your own runs (it reads their TensorBoard logs); the figures of docs/cql.md are drawn from
committed numbers by docs/figures/cql_alpha.py.

Each run gets one colour: a solid line for Q(s, a) on dataset actions, a dashed one for the Monte-Carlo
return. `--ymax-line` draws the largest value any policy could reach (max reward / (1 - gamma)).
"""

from __future__ import annotations

import argparse
import glob
import os


def read_scalars(run_dir: str, tag: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one scalar tag in the event file(s) of a run directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        raise FileNotFoundError(f"no TensorBoard event file in {run_dir}")
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        raise KeyError(f"{run_dir} has no scalar '{tag}' (has: {sorted(acc.Tags()['scalars'])})")
    events = acc.Scalars(tag)
    return [e.step for e in events], [e.value for e in events]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories of cql.py (runs/<run_name>)")
    parser.add_argument("--labels", nargs="+", help="one label per run (default: the run names)")
    parser.add_argument("--out", default="q_vs_mc.png", help="where to write the PNG")
    parser.add_argument("--title", default="Q on dataset actions vs. the dataset's Monte-Carlo return")
    parser.add_argument("--ymax-line", type=float, default=None,
                        help="draw a horizontal line here (e.g. max reward / (1 - gamma))")
    parser.add_argument("--symlog", action="store_true", help="symmetric log scale on y (for runaway values)")
    args = parser.parse_args(argv)
    labels = args.labels or [os.path.basename(r.rstrip("/")) for r in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(args.runs)} runs but {len(labels)} labels")

    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.2))
    for i, (run, label) in enumerate(zip(args.runs, labels)):
        color = f"C{i}"
        ax.plot(*read_scalars(run, "values/q_data"), color=color, label=f"{label}: Q(s, a), a from the data")
        ax.plot(*read_scalars(run, "values/mc_return"), color=color, linestyle="--",
                label=f"{label}: Monte-Carlo return of the data")
    if args.ymax_line is not None:
        ax.axhline(args.ymax_line, color="gray", linewidth=0.8, linestyle=":", label="largest possible value")
    if args.symlog:
        ax.set_yscale("symlog", linthresh=10)
    ax.set_xlabel("gradient step")
    ax.set_ylabel("value (same batch of states)")
    ax.set_title(args.title, fontsize=10)
    # below the axes: inside, it hides part of a curve whatever corner it takes
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")  # the legend below the axes stays inside the image
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
