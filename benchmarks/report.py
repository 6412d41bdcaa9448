"""Report: the results page and its figures, from the summary.json of every run under the given folders.

    python -m benchmarks.report DIR... [--out docs/results.md] [--figures docs/img]
    python -m benchmarks.report --collect SWEEP_DIR --into benchmarks/results/NAME
    python -m benchmarks.report benchmarks/results --check     # is docs/results.md what the runs give?

DIR is a sweep folder (benchmarks/sweep.py) or a collected copy of one: `--collect` copies just the
small JSON files (summary.json, run.json, sweep.json) and the failure records of a sweep into a tree
that can be committed, so the page can always be regenerated from it, byte for byte. The page has:
per (script, dataset) the final and best normalised scores (mean +- std over seeds), seeds, steps and
wall time, beside CORL's published D4RL scores where our dataset has a D4RL namesake; across
datasets, per script, the interquartile mean (IQM) with 95% stratified-bootstrap confidence intervals
and a performance profile, both from rliable (Agarwal et al. 2021, https://arxiv.org/abs/2108.13264);
a figure of learning curves per dataset. A summary outside a sweep (a plain runs/ folder) counts under
its "algorithm" name.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ORDER = ["bc", "cql", "bcq", "iql", "dt", "td3_bc", "awac"]  # table order; other labels follow, sorted
ALGORITHM_LABEL = {"decision_transformer": "dt"}  # summary["algorithm"] -> sweep name, outside a sweep
BOOTSTRAP_SEED = 0
BOOTSTRAP_REPS = 2000

# CORL's README (tinkoff-ai/CORL at 6afec90, "D4RL Benchmarks > Offline > Last Scores > Gym-MuJoCo"):
# final normalised score, mean +- std over 4 seeds (results/runs_tables/offline_urls.csv), 1M gradient
# steps (DT: 100k), on the original D4RL -v2 datasets. Only the columns of algorithms we have or plan.
CORL_URL = "https://github.com/tinkoff-ai/CORL/blob/6afec90484bbf47dee05fdf525e26a3ebe028e9b/README.md#gym-mujoco"
CORL_FINAL = {
    "halfcheetah-medium-v2": {"bc": "42.40 ± 0.19", "td3_bc": "48.10 ± 0.18", "awac": "49.46 ± 0.62",
                              "cql": "47.04 ± 0.22", "iql": "48.31 ± 0.22", "dt": "42.20 ± 0.26"},
    "halfcheetah-medium-replay-v2": {"bc": "35.66 ± 2.33", "td3_bc": "44.84 ± 0.59", "awac": "44.70 ± 0.69",
                                     "cql": "45.04 ± 0.27", "iql": "44.46 ± 0.22", "dt": "38.91 ± 0.50"},
    "halfcheetah-medium-expert-v2": {"bc": "55.95 ± 7.35", "td3_bc": "90.78 ± 6.04", "awac": "93.62 ± 0.41",
                                     "cql": "95.63 ± 0.42", "iql": "94.74 ± 0.52", "dt": "91.55 ± 0.95"},
    "hopper-medium-v2": {"bc": "53.51 ± 1.76", "td3_bc": "60.37 ± 3.49", "awac": "74.45 ± 9.14",
                         "cql": "59.08 ± 3.77", "iql": "67.53 ± 3.78", "dt": "65.10 ± 1.61"},
    "hopper-medium-replay-v2": {"bc": "29.81 ± 2.07", "td3_bc": "64.42 ± 21.52", "awac": "96.39 ± 5.28",
                                "cql": "95.11 ± 5.27", "iql": "97.43 ± 6.39", "dt": "81.77 ± 6.87"},
    "hopper-medium-expert-v2": {"bc": "52.30 ± 4.01", "td3_bc": "101.17 ± 9.07", "awac": "52.73 ± 37.47",
                                "cql": "99.26 ± 10.91", "iql": "107.42 ± 7.80", "dt": "110.44 ± 0.33"},
    "walker2d-medium-v2": {"bc": "63.23 ± 16.24", "td3_bc": "82.71 ± 4.78", "awac": "66.53 ± 26.04",
                           "cql": "80.75 ± 3.28", "iql": "80.91 ± 3.17", "dt": "67.63 ± 2.54"},
    "walker2d-medium-replay-v2": {"bc": "21.80 ± 10.15", "td3_bc": "85.62 ± 4.01", "awac": "82.20 ± 1.05",
                                  "cql": "73.09 ± 13.22", "iql": "82.15 ± 3.03", "dt": "59.86 ± 2.73"},
    "walker2d-medium-expert-v2": {"bc": "98.96 ± 15.98", "td3_bc": "110.03 ± 0.36", "awac": "49.41 ± 38.16",
                                  "cql": "109.56 ± 0.39", "iql": "111.72 ± 0.86", "dt": "107.11 ± 0.96"},
}
D4RL_NAMESAKE = re.compile(
    r"^(?:local|mujoco)/(hopper|halfcheetah|walker2d)/(medium|medium-replay|medium-expert)-v\d+$")


def d4rl_name(dataset_id: str) -> str | None:
    """`local/hopper/medium-v0` -> `hopper-medium-v2`: the D4RL dataset ours is built after (not the same data)."""
    m = D4RL_NAMESAKE.match(dataset_id)
    return f"{m.group(1)}-{m.group(2)}-v2" if m else None


@dataclass
class Run:
    label: str  # the sweep's name for the script (bc, iql, or a LABEL=NAME label)
    dataset: str
    seed: int
    summary: dict
    path: Path


def find_runs(dirs: list[str]) -> list[Run]:
    runs, seen = [], {}
    for d in dirs:
        root = Path(d).resolve()
        for path in sorted(root.rglob("summary.json")):
            summary = json.loads(path.read_text())
            if "final_normalized_score" not in summary:  # an --eval-checkpoint summary, not a training run
                continue
            meta = next((json.loads((p / "run.json").read_text()) for p in path.parents
                         if (p / "run.json").is_file() and (p == root or root in p.parents)), None)
            label = meta["label"] if meta else ALGORITHM_LABEL.get(summary["algorithm"], summary["algorithm"])
            run = Run(label, summary["dataset_id"], int(summary["seed"]), summary, path)
            key = (run.label, run.dataset, run.seed)
            if key in seen:
                sys.exit(f"error: two summaries for {run.label} on {run.dataset}, seed {run.seed}:\n"
                         f"       {seen[key]}\n       {path}\nKeep one (e.g. delete the other run's folder).")
            seen[key] = path
            runs.append(run)
    return runs


def suite(dataset_id: str) -> str:
    """The environment a dataset belongs to (`local/hopper/medium-v0` -> `hopper`): scores are pooled
    within a suite only, never across environments."""
    parts = dataset_id.split("/")
    return parts[1] if len(parts) == 3 else parts[0]


def readings(dirs: list[str]) -> list[str]:
    """The Markdown files at the top of each folder: the committed reading of its runs, shown verbatim."""
    return [p.read_text().strip() for d in dirs for p in sorted(Path(d).glob("*.md"))]


def label_order(labels) -> list[str]:
    return [x for x in ORDER if x in labels] + sorted(x for x in set(labels) if x not in ORDER)


def mean_std(values, digits=1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    # population std (ddof 0), as CORL's tables
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"


def span(values) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"


def score_matrix(runs: list[Run]) -> tuple[np.ndarray, list[str]]:
    """Final scores as rliable wants them, (runs, datasets): per dataset the first n seeds (sorted), n the
    fewest seeds any dataset has. Datasets with no normalised score are left out."""
    by_dataset = {}
    for r in runs:
        if r.summary["final_normalized_score"] is not None:
            by_dataset.setdefault(r.dataset, []).append(r)
    datasets = sorted(by_dataset)
    if not datasets:
        return np.zeros((0, 0)), []
    n = min(len(v) for v in by_dataset.values())
    columns = [[r.summary["final_normalized_score"] for r in sorted(by_dataset[d], key=lambda r: r.seed)[:n]]
               for d in datasets]
    return np.array(columns, dtype=np.float64).T, datasets


def interval_estimates(matrices: dict[str, np.ndarray], func) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """rliable's stratified bootstrap, each label on its own fixed seed so a label's numbers do not depend
    on which other labels are in the report."""
    from rliable import library as rly

    out, state = {}, np.random.get_state()
    for label, scores in matrices.items():
        # rliable's StratifiedBootstrap draws from numpy's global generator (it ignores random_state)
        np.random.seed(BOOTSTRAP_SEED)
        point, ci = rly.get_interval_estimates({label: scores}, func, reps=BOOTSTRAP_REPS)
        out[label] = (point[label], ci[label])
    np.random.set_state(state)
    return out


def aggregates(runs: list[Run]):
    from rliable import metrics

    by_label = {}
    for r in runs:
        by_label.setdefault(r.label, []).append(r)
    matrices, datasets = {}, {}
    for label in label_order(by_label):
        scores, names = score_matrix(by_label[label])
        if scores.size:
            matrices[label], datasets[label] = scores, names
    estimates = interval_estimates(
        matrices, lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)]))
    return matrices, datasets, estimates


def curve(runs: list[Run]):
    """(steps, mean, std) of the normalised score over seeds, at the steps every seed evaluated."""
    histories = [{int(step): score for step, _, score in r.summary.get("eval_history", []) if score is not None}
                 for r in runs]
    steps = sorted(set.intersection(*(set(h) for h in histories)))
    values = np.array([[h[s] for s in steps] for h in histories], dtype=np.float64).reshape(len(runs), len(steps))
    return np.array(steps), values.mean(axis=0), values.std(axis=0)


def figure_names(datasets: list[str]) -> dict[str, str]:
    names = {}
    for name in sorted({suite(d) for d in datasets}):
        names[("aggregates", name)] = f"results_aggregates_{name}.png"
        names[("profile", name)] = f"results_profile_{name}.png"
    for d in datasets:
        names[d] = f"results_curves_{d.replace('/', '-')}.png"
    return names


def shown(path: str) -> str:
    """A path as the page shows it: relative to the current folder when inside it, with forward slashes."""
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def sweep_commands(dirs: list[str]) -> list[str]:
    """The commands that made the runs: each sweep's invocations (the same command once), then its collect.
    An invocation that ended having finished no run (stopped at once, or with everything already done)
    made nothing on the page and is left out; one that never recorded its end (still running) stays."""
    commands = []
    for d in dirs:
        for path in sorted(Path(d).rglob("sweep.json")):
            history = json.loads(path.read_text())
            for entry in history.get("invocations", []):
                if "done" in entry and entry["done"] <= entry.get("already_done", 0):
                    continue
                if entry["command"] not in commands:
                    commands.append(entry["command"])
            if history.get("collect") and history["collect"] not in commands:
                commands.append(history["collect"])
    return commands


def failures(dirs: list[str]) -> list[str]:
    return [p.stem for d in dirs for p in sorted(Path(d).rglob("failures/*.log"))]


def aggregate_section(runs: list[Run], link: dict, name: str, command: str) -> list[str]:
    """One environment's pooled table and figures."""
    matrices, used, estimates = aggregates(runs)
    if not matrices:
        return ["No run has a normalised score.", ""]
    lines = ["| script | datasets | runs per dataset | IQM (95% CI) | mean (95% CI) |",
             "| --- | --- | --- | --- | --- |"]
    for label, scores in matrices.items():
        point, ci = estimates[label]
        cells = [f"{point[i]:.1f} [{ci[0][i]:.1f}, {ci[1][i]:.1f}]" for i in range(2)]
        lines.append(f"| {label} | {len(used[label])} | {scores.shape[0]} | {cells[0]} | {cells[1]} |")
    if len({tuple(v) for v in used.values()}) > 1:
        lines += ["", "The scripts were run on different sets of datasets: compare their aggregates with care."]
    lines += [
        "",
        f"![IQM and mean with 95% confidence intervals]({link[('aggregates', name)]})",
        "",
        f"Regenerate: `{command}`",
        "",
        f"![Performance profiles]({link[('profile', name)]})",
        "",
        "Performance profile: the fraction of all runs (every dataset, every seed) whose final score exceeds",
        "$\\tau$; shaded, its 95% confidence band. A curve above another is better at every threshold.",
        "",
        f"Regenerate: `{command}`",
        "",
    ]
    return lines


def page(runs: list[Run], dirs: list[str], out: str, figures: str) -> str:
    """The results page. Pure text from the summaries: the same runs always give the same bytes."""
    command = shlex.join(["python", "-m", "benchmarks.report", *map(shown, dirs), "--out", shown(out),
                          "--figures", shown(figures)])
    datasets = sorted({r.dataset for r in runs})
    names = figure_names(datasets)
    page_dir = Path(out).resolve().parent

    def rel(path: Path) -> str:  # a link from the page
        return Path(os.path.relpath(path.resolve(), page_dir)).as_posix()

    link = {k: rel(Path(figures, v)) for k, v in names.items()}
    docs = Path(__file__).resolve().parents[1] / "docs"
    lines = [
        "# Results",
        "",
        "Normalised scores of the scripts, generated from the run summaries (one `summary.json` per run)",
        "by `benchmarks/report.py`; the runs themselves were made by `benchmarks/sweep.py`",
        f"([sweeps.md]({rel(docs / 'sweeps.md')})). This page is never edited by hand: the commands below",
        "remake it, byte for byte.",
        "",
        "- **Normalised score**: $100 \\cdot (R - R_{random}) / (R_{expert} - R_{random})$ with the dataset's",
        f"  reference returns ([datasets.md]({rel(docs / 'datasets.md')})). **final**: the evaluation at the",
        "  last step of a run, the number to quote. **best**: the highest evaluation of the run, optimistic",
        "  (it picks the best of many noisy evaluations).",
        "- mean ± standard deviation over seeds (population std, as CORL's tables); a single seed shows its value.",
        "",
        "## Commands",
        "",
        "```bash",
        *sweep_commands(dirs),
        command,
        "```",
        "",
        "`--out` is where a sweep wrote its runs on the machine that ran it (`--collect` copies their summaries",
        "here); `--scripts-root`, where given, is a second checkout of this repository with the same scripts,",
        "so that edits to the working tree during a long sweep cannot reach the runs. **wall time** is each run's",
        "own duration with one torch thread, averaged over seeds; it depends on what else ran beside it (speeds",
        f"measured alone are in [benchmarks.md]({rel(docs / 'benchmarks.md')})).",
        "",
        "## Per dataset",
        "",
    ]
    if not runs:
        return "\n".join(lines + ["No run summaries found.", ""])

    corl = any(d4rl_name(d) for d in datasets)
    head = "| dataset | script | seeds | steps | final | best | final return | wall time (s) |"
    rule = "| --- | --- | --- | --- | --- | --- | --- | --- |"
    if corl:
        head, rule = head + " CORL final, D4RL -v2 |", rule + " --- |"
    lines += [head, rule]
    for dataset in datasets:
        here = [r for r in runs if r.dataset == dataset]
        for label in label_order({r.label for r in here}):
            rs = sorted((r for r in here if r.label == label), key=lambda r: r.seed)
            s = [r.summary for r in rs]
            row = (f"| `{dataset}` | {label} | {len(rs)} | {span([x['steps'] for x in s])} "
                   f"| {mean_std([x['final_normalized_score'] for x in s])} "
                   f"| {mean_std([x['best_normalized_score'] for x in s])} "
                   f"| {mean_std([x.get('final_return_mean') for x in s])} "
                   f"| {statistics.fmean(x['wall_time_s'] for x in s):,.0f} |")
            if corl:
                # by label: a LABEL=NAME run (bc10=bc --top-fraction 0.1) is not CORL's algorithm of that name
                row += f" {CORL_FINAL.get(d4rl_name(dataset), {}).get(label, '')} |"
            lines.append(row)
    lines.append("")
    if corl:
        lines += [
            f"The last column is CORL's published final score ([CORL's README]({CORL_URL}): D4RL -v2 datasets,",
            "4 seeds, 1M gradient steps, DT 100k) on the D4RL dataset that ours is named after. Our datasets are",
            "another build (made here on MuJoCo v5, or Minari's regeneration) and our budgets differ: the two",
            "columns are not comparable point for point.",
            "",
        ]
    else:
        lines += [
            "None of these datasets is named after a D4RL one, so CORL's published D4RL scores have no row here;",
            "they appear beside `local/{hopper,halfcheetah,walker2d}/{medium,medium-replay,medium-expert}-v0`.",
            "",
        ]

    notes = readings(dirs)
    if notes:
        lines += ["## What the runs show", ""]
        for note in notes:
            lines += [note, ""]

    lines += [
        "## Across datasets",
        "",
        "Final normalised scores pooled over each script's datasets of one environment: the interquartile mean",
        "(IQM, the mean of the middle 50% of all runs' scores) and the mean, with 95% stratified-bootstrap",
        f"confidence intervals (rliable, Agarwal et al. 2021; {BOOTSTRAP_REPS:,} resamples of the seeds within",
        f"each dataset, numpy seed {BOOTSTRAP_SEED}). A dataset contributes as many runs as the dataset with the",
        "fewest seeds.",
        "",
    ]
    for name in sorted({suite(d) for d in datasets}):
        lines += [f"### {name}", ""]
        lines += aggregate_section([r for r in runs if suite(r.dataset) == name], link, name, command)
    lines += ["## Learning curves", "",
              "Normalised score at each evaluation, mean over seeds, shaded ± one standard deviation.", ""]
    for dataset in datasets:
        lines += [f"### `{dataset}`", "", f"![Learning curves on {dataset}]({link[dataset]})", "",
                  f"Regenerate: `{command}`", ""]

    failed = failures(dirs)
    if failed:
        lines += ["## Failed runs", "",
                  "These runs failed and are not in the tables (their last lines of output are in the sweep's",
                  "`failures/` folder):", ""]
        lines += [f"- `{name}`" for name in failed] + [""]
    return "\n".join(lines)


def draw(runs: list[Run], figures: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly

    folder = Path(figures)
    folder.mkdir(parents=True, exist_ok=True)
    datasets = sorted({r.dataset for r in runs})
    names = figure_names(datasets)
    written = []

    def save(fig, key):
        path = folder / names[key]
        fig.tight_layout()
        fig.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(fig)
        written.append(path)

    for name in sorted({suite(d) for d in datasets}):
        matrices, _, estimates = aggregates([r for r in runs if suite(r.dataset) == name])
        if not matrices:
            continue
        labels = list(matrices)
        every = label_order({r.label for r in runs})
        color = {label: f"C{every.index(label)}" for label in labels}  # a script keeps its colour everywhere
        fig, axes = plt.subplots(1, 2, figsize=(9, 0.5 + 0.45 * len(labels)), sharey=True, squeeze=False)
        for i, (ax, title) in enumerate(zip(axes[0], ("IQM", "mean"))):
            for y, label in enumerate(labels):
                point, ci = estimates[label]
                ax.plot([ci[0][i], ci[1][i]], [y, y], lw=6, alpha=0.5, color=color[label], solid_capstyle="butt")
                ax.plot([point[i]], [y], "|", ms=14, mew=2, color="k")
            ax.set_title(f"{name}: {title} (final normalised score)")
            ax.set_yticks(range(len(labels)), labels)
            ax.set_ylim(len(labels) - 0.5, -0.5)  # first script on top
            ax.grid(axis="x", alpha=0.3)
        save(fig, ("aggregates", name))

        everything = np.concatenate([m.ravel() for m in matrices.values()])
        taus = np.linspace(min(0.0, math.floor(everything.min())), max(100.0, math.ceil(everything.max())), 101)
        # rliable's score distribution, P(score > tau) over all runs and datasets, at every tau at once
        # (rly.score_distributions loops over tau in Python: 20x slower under the bootstrap)
        profiles = interval_estimates(matrices, lambda s: (s.reshape(-1, 1) > taus).mean(axis=0))
        assert np.allclose(profiles[labels[0]][0], rly.score_distributions(matrices[labels[0]], taus))
        fig, ax = plt.subplots(figsize=(6, 4))
        for label in labels:
            point, ci = profiles[label]
            ax.plot(taus, point, color=color[label], label=label)
            ax.fill_between(taus, ci[0], ci[1], color=color[label], alpha=0.2)
        ax.set_xlabel(r"normalised score $\tau$")
        ax.set_ylabel(r"fraction of runs with score > $\tau$")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, ("profile", name))

    for dataset in datasets:
        here = [r for r in runs if r.dataset == dataset]
        fig, ax = plt.subplots(figsize=(6, 4))
        for label in label_order({r.label for r in here}):
            steps, mean, std = curve([r for r in here if r.label == label])
            if len(steps):
                color = f"C{label_order({r.label for r in runs}).index(label)}"
                ax.plot(steps, mean, color=color, label=label)
                ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
        ax.set_title(dataset)
        ax.set_xlabel("gradient step")
        ax.set_ylabel("normalised score")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
        save(fig, dataset)
    return written


def collect(sweep_dir: str, into: str) -> int:
    """Copy a sweep's summaries, run.json files, sweep.json and failure records into a tree to commit."""
    src, dst = Path(sweep_dir).resolve(), Path(into).resolve()
    if not (src / "sweep.json").is_file():
        sys.exit(f"error: {sweep_dir} is not a sweep folder (no sweep.json)")
    if dst.exists():
        strangers = [p for p in dst.rglob("*") if p.is_file() and p.suffix not in (".json", ".log")]
        if strangers:
            sys.exit(f"error: {into} holds files a collect did not write (e.g. {strangers[0]}); choose another folder")
        shutil.rmtree(dst)  # a collect replaces the whole copy: runs deleted from the sweep go too
    def wanted(rel: Path) -> bool:  # not TensorBoard files, logs or checkpoints
        return (rel.name == "summary.json" and "runs" in rel.parts[:-1] or rel.name == "run.json"
                or rel.parts[0] == "failures" and len(rel.parts) == 2 and rel.suffix == ".log")

    files = [p for p in sorted(src.rglob("*")) if p.is_file() and wanted(p.relative_to(src))]
    for path in files:
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    history = json.loads((src / "sweep.json").read_text())
    history["collect"] = shlex.join(["python", "-m", "benchmarks.report", "--collect", shown(sweep_dir),
                                     "--into", shown(into)])
    (dst / "sweep.json").write_text(json.dumps(history, indent=2) + "\n")
    summaries = sum(p.name == "summary.json" for p in files)
    print(f"Collected {summaries} summaries into {into}. Commit it, then: python -m benchmarks.report {shown(into)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="*", help="sweep folders or collected copies (benchmarks/results/...)")
    p.add_argument("--out", default="docs/results.md", help="the page to write")
    p.add_argument("--figures", default="docs/img", help="the folder for its figures")
    p.add_argument("--check", action="store_true", help="only compare the page with --out; exit 1 if it differs")
    p.add_argument("--collect", metavar="SWEEP_DIR", help="copy a sweep's small files into --into, then stop")
    p.add_argument("--into", metavar="DEST", help="with --collect: where to, e.g. benchmarks/results/pendulum")
    args = p.parse_args(argv)
    if args.collect or args.into:
        if not (args.collect and args.into) or args.dirs:
            p.error("--collect SWEEP_DIR and --into DEST go together, without other folders")
        return collect(args.collect, args.into)
    if not args.dirs:
        p.error("give at least one folder of runs")
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        p.error(f"no such folder: {', '.join(missing)}")

    runs = find_runs(args.dirs)
    text = page(runs, args.dirs, args.out, args.figures)
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).is_file() else None
        if current != text:
            print(f"{args.out} is not what the runs give: regenerate it with `python -m benchmarks.report "
                  f"{' '.join(map(shown, args.dirs))} --out {shown(args.out)} --figures {shown(args.figures)}`")
            return 1
        print(f"{args.out} matches the {len(runs)} runs.")
        return 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    written = draw(runs, args.figures)
    print(f"{len(runs)} runs -> {args.out} and {len(written)} figures in {args.figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
