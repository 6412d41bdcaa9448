"""Report: the results page and its figures, from the summary.json of every run under the given folders.

    python -m benchmarks.report DIR... [--out docs/results.md] [--figures docs/img]
    python -m benchmarks.report --collect SWEEP_DIR --into benchmarks/results/NAME
    python -m benchmarks.report benchmarks/results --check     # is docs/results.md what the runs give?

DIR is a sweep folder (benchmarks/sweep.py) or a collected copy of one: `--collect` copies just the
small JSON files (summary.json, run.json, sweep.json) and the failure records of a sweep into a tree
that can be committed, so the page can always be regenerated from it, byte for byte. The page has:
per (script, dataset) the final and best raw returns and normalised scores (mean +- population std over
seeds), on Hopper/HalfCheetah/Walker2d data also on D4RL's reference returns (labelled: not D4RL
scores), seeds, steps and wall time; CORL's published D4RL scores in a table of their own, as context;
per normalisation (runs pooled by their reference returns, never by env name), the interquartile mean
(IQM) with 95% stratified-bootstrap confidence intervals and a performance profile, both from rliable
(Agarwal et al. 2021, https://arxiv.org/abs/2108.13264); a figure of learning curves per dataset, one
set of axes per budget. A summary outside a sweep (a plain runs/ folder) counts under its "algorithm" name.

    python -m benchmarks.report benchmarks/results/pendulum --default-runs   # the README's table
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

# table order; other labels follow, sorted
ORDER = ["bc", "cql", "bcq", "iql", "dt", "td3_bc", "awac", "bear", "tt", "mopo", "combo", "cal_ql", "rlpd"]
ALGORITHM_LABEL = {"decision_transformer": "dt", "trajectory_transformer": "tt"}  # summary["algorithm"] -> sweep name
ALGORITHM_LABEL_FILE = {"dt": "decision_transformer", "tt": "trajectory_transformer"}  # sweep name -> script stem
# flags that change nothing a run learns or scores: a run with them still counts as a default run
NO_EFFECT_FLAGS = ("--save-model", "--no-cuda")
BOOTSTRAP_SEED = 0
BOOTSTRAP_REPS = 2000

# CORL's README (tinkoff-ai/CORL at 6afec90, "D4RL Benchmarks > Offline > Last Scores > Gym-MuJoCo"):
# final normalised score, mean +- std over 4 seeds (results/runs_tables/offline_urls.csv), 1M gradient
# steps (DT: 100k), on the original D4RL -v2 datasets. Only the columns of algorithms we have or plan.
CORL_STEPS = {"dt": 100_000}  # gradient steps behind CORL_FINAL; every other algorithm 1M
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
# D4RL's reference returns (random, expert) per env, as d4rl/infos.py has them (REF_MIN_SCORE, REF_MAX_SCORE;
# common/datasets.py carries the same numbers): the second normalisation of our local suites' scores.
D4RL_REFERENCES = {"hopper": (-20.272305, 3234.3), "halfcheetah": (-280.178953, 12135.0), "walker2d": (1.629008, 4592.3)}
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
    references: tuple[float, float] | None = None  # (random, expert) returns behind its normalised scores
    references_from: str = "none"  # "recorded" in the summary, "inferred" from its evaluations, or "none"
    command: str | None = None  # from the sweep's run.json: `python bc.py --dataset-id D --seed S ...`

    @property
    def is_default_run(self) -> bool:
        """The script with no flags but the dataset and the seed: `python bc.py --dataset-id D --seed S`
        (and perhaps NO_EFFECT_FLAGS)."""
        parts = [p for p in shlex.split(self.command or "") if p not in NO_EFFECT_FLAGS]
        return parts[2:] == ["--dataset-id", self.dataset, "--seed", str(self.seed)] and parts[0] == "python"


def infer_references(history) -> tuple[float, float] | None:
    """(random, expert) from a run's own evaluations: each logs a raw mean return R and its score
    100 (R - random) / (expert - random), so two evaluations with different returns fix both references.
    For summaries written before the scripts recorded them."""
    points = [(float(ret), float(score)) for _, ret, score in history if score is not None]
    pairs = [(a, b) for i, a in enumerate(points) for b in points[i + 1:]]
    if not pairs:
        return None
    (r1, s1), (r2, s2) = max(pairs, key=lambda pair: abs(pair[0][0] - pair[1][0]))
    if abs(r1 - r2) < 1e-6 or abs(s1 - s2) < 1e-9:
        return None
    slope = (s1 - s2) / (r1 - r2)  # 100 / (expert - random)
    random = r1 - s1 / slope
    return random, random + 100.0 / slope


def same_references(a, b) -> bool:
    return a is not None and b is not None and all(abs(x - y) <= 1e-3 * max(1.0, abs(x)) for x, y in zip(a, b))


def run_references(summary: dict, path: Path) -> tuple[tuple[float, float] | None, str]:
    """The reference returns of a run's normalisation: recorded in its summary (checked against its
    evaluations), else inferred from its evaluations; none where the run has no normalised score."""
    if summary.get("final_normalized_score") is None:
        return None, "none"
    inferred = infer_references(summary.get("eval_history", []))
    recorded = (summary.get("ref_min_score"), summary.get("ref_max_score"))
    if None not in recorded:
        recorded = (float(recorded[0]), float(recorded[1]))
        if inferred is not None and not same_references(inferred, recorded):
            sys.exit(f"error: {path} records reference returns {recorded}, but its evaluations were scored with "
                     f"{tuple(round(x, 3) for x in inferred)}")
        return recorded, "recorded"
    return (inferred, "inferred") if inferred is not None else (None, "none")


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
            run = Run(label, summary["dataset_id"], int(summary["seed"]), summary, path, *run_references(summary, path),
                      command=meta.get("command") if meta else None)
            key = (run.label, run.dataset, run.seed)
            if key in seen:
                sys.exit(f"error: two summaries for {run.label} on {run.dataset}, seed {run.seed}:\n"
                         f"       {seen[key]}\n       {path}\nKeep one (e.g. delete the other run's folder).")
            seen[key] = path
            runs.append(run)
    return runs


def suite(dataset_id: str) -> str:
    """The environment a dataset belongs to (`local/hopper/medium-v0` -> `hopper`)."""
    parts = dataset_id.split("/")
    return parts[1] if len(parts) == 3 else parts[0]


def family(dataset_id: str) -> str:
    """`local/hopper/medium-v0` -> `local/hopper`: the datasets built (or published) together."""
    return dataset_id.rsplit("/", 1)[0] if "/" in dataset_id else dataset_id


@dataclass
class Pool:
    """Runs whose scores share one normalisation (the same reference returns): the only runs pooled."""
    name: str  # e.g. `local/hopper`: the dataset families in it
    slug: str  # for file names
    references: tuple[float, float]
    runs: list[Run]


def pools(runs: list[Run]) -> list[Pool]:
    """Runs grouped by their reference returns, not by env name: `local/hopper/*` (our SAC expert) and
    `mujoco/hopper/*` (D4RL's references) never share an aggregate. Runs without a score are left out."""
    groups: list[tuple[tuple[float, float], list[Run]]] = []
    for r in sorted(runs, key=lambda r: (r.dataset, r.label, r.seed)):
        if r.references is None:
            continue
        group = next((g for g in groups if same_references(g[0], r.references)), None)
        if group is None:
            groups.append((r.references, [r]))
        else:
            group[1].append(r)
    out, used = [], set()
    for refs, members in groups:
        name = " + ".join(sorted({family(r.dataset) for r in members}))
        slug = re.sub(r"[^A-Za-z0-9_.+-]", "-", name.replace(" + ", "+"))
        while slug in used:  # one family under two references (a rebuilt dataset): keep the figures apart
            slug += "-b"
        used.add(slug)
        out.append(Pool(name, slug, refs, members))
    return sorted(out, key=lambda p: p.slug)


def readings(dirs: list[str]) -> list[str]:
    """The Markdown files at the top of each folder: the committed reading of its runs, shown verbatim."""
    return [p.read_text().strip() for d in dirs for p in sorted(Path(d).glob("*.md"))]


def label_order(labels) -> list[str]:
    return [x for x in ORDER if x in labels] + sorted(x for x in set(labels) if x not in ORDER)


STD_NOTE = "std is the population standard deviation (ddof 0, as CORL's tables); one seed shows its value alone"


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


def budget(runs: list[Run]) -> int:
    """A label's budget in gradient steps (the longest of its runs): runs of other budgets get other axes."""
    return max(int(r.summary["steps"]) for r in runs)


def d4rl_rescored(ret, env: str):
    """A raw return normalised with D4RL's references for `env`: not a D4RL score (other data, other env version)."""
    lo, hi = D4RL_REFERENCES[env]
    return None if ret is None else 100.0 * (ret - lo) / (hi - lo)


def best_return(summary: dict):
    """The raw return of the run's best evaluation (the one behind "best")."""
    scored = [(score, ret) for _, ret, score in summary.get("eval_history", []) if score is not None]
    return max(scored)[1] if scored else None


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
    """Per label of one pool: its score matrix, its datasets, its budget, and the IQM and mean with CIs."""
    from rliable import metrics

    by_label = {}
    for r in runs:
        by_label.setdefault(r.label, []).append(r)
    matrices, datasets, budgets = {}, {}, {}
    for label in label_order(by_label):
        scores, names = score_matrix(by_label[label])
        if scores.size:
            matrices[label], datasets[label], budgets[label] = scores, names, budget(by_label[label])
    estimates = interval_estimates(
        matrices, lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)]))
    return matrices, datasets, budgets, estimates


def by_budget(budgets: dict[str, int]) -> list[tuple[int, list[str]]]:
    """Labels grouped by budget, shortest first, each group in table order."""
    return [(b, [label for label in budgets if budgets[label] == b]) for b in sorted(set(budgets.values()))]


def curve(runs: list[Run]):
    """(steps, mean, std) of the normalised score over seeds, at the steps every seed evaluated; std is the
    population std (ddof 0), as in the tables."""
    histories = [{int(step): score for step, _, score in r.summary.get("eval_history", []) if score is not None}
                 for r in runs]
    steps = sorted(set.intersection(*(set(h) for h in histories)))
    values = np.array([[h[s] for s in steps] for h in histories], dtype=np.float64).reshape(len(runs), len(steps))
    return np.array(steps), values.mean(axis=0), values.std(axis=0, ddof=0)


def figure_names(runs: list[Run]) -> dict:
    names = {}
    for pool in pools(runs):
        names[("aggregates", pool.slug)] = f"results_aggregates_{pool.slug}.png"
        names[("profile", pool.slug)] = f"results_profile_{pool.slug}.png"
    for d in sorted({r.dataset for r in runs}):
        names[d] = f"results_curves_{d.replace('/', '-')}.png"
    return names


# one hue per script (ORDER): tab10, then three more far from its ten
HUES = [*(f"C{i}" for i in range(10)), "#000080", "#e6ab02", "#76ff03"]


def script_of(label: str) -> str | None:
    """The script a sweep label runs, read from its name: `cql_defaults_100k` -> `cql`, `bc10` -> `bc`."""
    return next((b for b in ORDER if label == b or (label.startswith(b) and label[len(b)] in "_0123456789")), None)


def colours(labels: list[str], axes: dict[str, set] | None = None) -> dict[str, tuple]:
    """One colour per label, the same in every figure, and a script's labels in its hue (ORDER, HUES): `iql_100k`
    is drawn like `iql`. Labels of one script that share a set of axes (`axes[label]`: the axes it is drawn on;
    all shared when not given) take shades of the hue instead, lighter and darker in turn. Labels of no known
    script take the hues no script uses, then evenly spaced ones."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgb

    family = {}
    for label in labels:
        family.setdefault(script_of(label) or label, []).append(label)
    free = [h for b, h in zip(ORDER, HUES) if b not in family]  # the hues of scripts not drawn
    unknown = [f for f in family if f not in ORDER]
    if len(unknown) > len(free):
        free = [colormaps["hsv"](i / len(unknown)) for i in range(len(unknown))]
    hue = {f: HUES[ORDER.index(f)] for f in family if f in ORDER} | dict(zip(unknown, free))
    out = {}
    for f, members in family.items():
        base = np.array(to_rgb(hue[f]))
        shades = [base] + [base + min(0.4 + 0.2 * (i // 2), 0.8) * ((np.ones(3) if i % 2 == 0 else 0) - base)
                           for i in range(len(members))]  # lighter, darker, lighter still, ...
        taken = []  # (shade index, label)
        for m in sorted(members, key=lambda m: (m != f, labels.index(m))):  # the script's own label first
            near = {k for k, other in taken if axes is None or (axes[m] & axes[other])}
            k = next(k for k in range(len(shades)) if k not in near)
            taken.append((k, m))
            out[m] = tuple(shades[k])
    return out


PANELS_PER_ROW = 3  # a figure of many budgets wraps into rows: one row of eight panels is too wide to read


def panels(plt, n: int):
    """A figure of n panels sharing the y axis, at most PANELS_PER_ROW a row, the unused places removed."""
    rows, cols = -(-n // PANELS_PER_ROW), min(n, PANELS_PER_ROW)
    fig, grid = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False, sharey=True)
    axes = list(grid.flat)
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def shown(path: str) -> str:
    """A path as the page shows it: relative to the current folder when inside it, with forward slashes."""
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def pasteable(command: str) -> str:
    """A recorded command as a reader can paste it: an absolute --out or --collect folder (where the sweep
    ran, on its own machine) becomes sweeps/<its name>, and --scripts-root (a second checkout of the same
    scripts, which changes no result) is left out. sweep.json keeps the commands as they were run."""
    parts, out = shlex.split(command), []
    for i, part in enumerate(parts):
        if part == "--scripts-root" or part.startswith("--scripts-root=") or (i and parts[i - 1] == "--scripts-root"):
            continue
        if i and parts[i - 1] in ("--out", "--collect") and os.path.isabs(part):
            part = f"sweeps/{Path(part).name}"
        out.append(part)
    return shlex.join(out)


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
                if pasteable(entry["command"]) not in commands:
                    commands.append(pasteable(entry["command"]))
            if history.get("collect") and pasteable(history["collect"]) not in commands:
                commands.append(pasteable(history["collect"]))
    return commands


def at_once(runs: list[Run], dirs: list[str]) -> str:
    """The most runs of each results folder (a folder with a sweep.json) that ran at the same time, from each
    run's start (the time stamp that ends its run name, `..._<unix time>`) and its wall time. Runs of other
    folders may have shared the machine too: the folders do not say where they ran."""
    parts = []
    for d in dirs:
        for folder in sorted(p.parent.resolve() for p in Path(d).rglob("sweep.json")):
            events = []
            for r in runs:
                stamp = r.path.parent.name.rsplit("__", 1)[-1]
                if folder in r.path.resolve().parents and stamp.isdigit() and r.summary.get("wall_time_s"):
                    events += [(int(stamp), 1), (int(stamp) + float(r.summary["wall_time_s"]), -1)]
            running = most = 0
            for _, change in sorted(events):  # at equal times an end (-1) sorts before a start: they did not overlap
                running += change
                most = max(most, running)
            if events:
                parts.append(f"`{folder.name}` {most}")
    return "; ".join(parts)


def failures(dirs: list[str]) -> list[str]:
    return [p.stem for d in dirs for p in sorted(Path(d).rglob("failures/*.log"))]


def references_text(refs: tuple[float, float]) -> str:
    return f"random {refs[0]:,.1f}, expert {refs[1]:,.1f}"


def aggregate_section(pool: Pool, link: dict, command: str) -> list[str]:
    """One pool's table and figures: runs normalised with the same reference returns."""
    matrices, used, budgets, estimates = aggregates(pool.runs)
    if not matrices:
        return ["No run has a normalised score.", ""]
    inferred = sum(r.references_from == "inferred" for r in pool.runs)
    how = ("recorded in every summary" if not inferred else
           "inferred, in every summary, from its own evaluations" if inferred == len(pool.runs) else
           f"recorded in {len(pool.runs) - inferred} summaries and inferred from their own evaluations in {inferred}")
    envs = {suite(r.summary["dataset_id"]) for r in pool.runs}
    env = envs.pop() if len(envs) == 1 else None
    # a second pair of columns only where D4RL's references are other than the pool's own
    env = env if env in D4RL_REFERENCES and not same_references(pool.references, D4RL_REFERENCES[env]) else None
    lines = [f"Reference returns: {references_text(pool.references)} ({how}).",
             "No std here: the brackets are 95% confidence intervals.", "",
             "| script | steps | datasets | runs per dataset | IQM (95% CI) | mean (95% CI) |"
             + (" IQM (95% CI), D4RL refs | mean (95% CI), D4RL refs |" if env else ""),
             "| --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if env else "")]
    for label, scores in matrices.items():
        point, ci = estimates[label]
        cells = [f"{point[i]:.1f} [{ci[0][i]:.1f}, {ci[1][i]:.1f}]" for i in range(2)]
        if env:
            # score -> return -> D4RL's scale is one increasing affine map for the whole pool (its runs share their
            # references, to same_references' 1e-3), so the IQM, the mean and the percentile bootstrap's bounds map
            # through it exactly: the same resamples, the same order, the same scores trimmed
            lo, hi = pool.references
            d4rl = lambda x: d4rl_rescored(lo + x * (hi - lo) / 100.0, env)  # noqa: E731
            cells += [f"{d4rl(point[i]):.1f} [{d4rl(ci[0][i]):.1f}, {d4rl(ci[1][i]):.1f}]" for i in range(2)]
        lines.append(f"| {label} | {budgets[label]:,} | {len(used[label])} | {scores.shape[0]} | " + " | ".join(cells) + " |")
    if env:
        lines += ["", f"**D4RL refs**: the same aggregates on D4RL's references for {env} "
                  f"({references_text(D4RL_REFERENCES[env])}): not a D4RL score, other data, other env version."]
    if len({tuple(v) for v in used.values()}) > 1:
        lines += ["", "The scripts were run on different sets of datasets: compare their aggregates with care."]
    if len(set(budgets.values())) > 1:
        lines += ["", "The scripts ran for different numbers of gradient steps: the figures give each budget its own axes."]
    lines += [
        "",
        f"![IQM and mean with 95% confidence intervals]({link[('aggregates', pool.slug)]})",
        "",
        f"Regenerate: `{command}`",
        "",
        f"![Performance profiles]({link[('profile', pool.slug)]})",
        "",
        "Performance profile: the fraction of all runs (every dataset, every seed) whose final score exceeds",
        "$\\tau$; shaded, its 95% confidence band (no std). A curve above another is better at every threshold.",
        "",
        f"Regenerate: `{command}`",
        "",
    ]
    return lines


def corl_section(datasets: list[str]) -> list[str]:
    """CORL's published D4RL scores for the D4RL datasets ours are named after: context, never a column of ours."""
    names = sorted({d4rl_name(d) for d in datasets if d4rl_name(d) in CORL_FINAL})
    if not names:
        return []
    algos = ["bc", "cql", "iql", "dt", "td3_bc", "awac"]
    envs = sorted({n.split("-")[0] for n in names})
    refs = "; ".join(f"{env}: {references_text(D4RL_REFERENCES[env])}" for env in envs)
    lines = [
        "### CORL's D4RL scores, for context",
        "",
        f"[CORL's README]({CORL_URL}) publishes these final scores, mean ± std over 4 seeds, on the D4RL datasets",
        "that ours are named after. They are context, not a target for our numbers, for three reasons: other",
        "data (D4RL's behaviour policies, recorded on the `-v2` MuJoCo envs with mujoco-py; ours are our own",
        "SAC's, on the `-v5` envs with MuJoCo 3), other references (D4RL's; our 100 is our own expert's",
        "return), and another budget (1M gradient steps, DT 100k; ours are in the steps column above).",
        f"The nearest of our numbers is the \"D4RL refs\" column, our returns on D4RL's scale ({refs}),",
        "and it is not a D4RL score either: other data, other env version.",
        "",
        "| D4RL dataset | " + " | ".join(algos) + " |",
        "| --- | " + " | ".join("---" for _ in algos) + " |",
    ]
    for name in names:
        lines.append(f"| `{name}` | " + " | ".join(CORL_FINAL[name].get(a, "") for a in algos) + " |")
    return lines + [""]


def page(runs: list[Run], dirs: list[str], out: str, figures: str) -> str:
    """The results page. Pure text from the summaries: the same runs always give the same bytes."""
    command = shlex.join(["python", "-m", "benchmarks.report", *map(shown, dirs), "--out", shown(out),
                          "--figures", shown(figures)])
    datasets = sorted({r.dataset for r in runs})
    names = figure_names(runs)
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
        "- mean ± standard deviation over seeds, the population std (ddof 0, as CORL's tables); a single seed",
        "  shows its value.",
        "- Runs are pooled only with runs normalised by the same reference returns (each summary records them;",
        "  for summaries older than that record, they are inferred from the run's own evaluations, each a raw",
        "  return beside its score), never by env name alone.",
        "",
        "## Commands",
        "",
        "```bash",
        *sweep_commands(dirs),
        command,
        "```",
        "",
        "`--out` is the folder a sweep writes its runs to, and `--collect` copies their summaries from there into",
        "the committed tree; each `sweep.json` keeps the commands exactly as they ran (with the folders of the",
        "machine that ran them, and `--scripts-root` where a second checkout of the same scripts was used).",
        "**wall time** is each run's own duration with one torch thread, averaged over seeds; it depends on what",
        f"else ran beside it (speeds measured alone are in [benchmarks.md]({rel(docs / 'benchmarks.md')})).",
        *([f"The most runs of one results folder that ran at the same time, by each run's start (the time stamp that ends",
           f"its run name) and wall time: {at_once(runs, dirs)}."] if at_once(runs, dirs) else []),
        "",
        "## Per dataset",
        "",
    ]
    if not runs:
        return "\n".join(lines + ["No run summaries found.", ""])

    rescored = any(suite(d) in D4RL_REFERENCES for d in datasets)
    head = "| dataset | script | seeds | steps | final return | final | best return | best | wall time (s) |"
    rule = "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    if rescored:
        head = ("| dataset | script | seeds | steps | final return | final | final, D4RL refs | best return | best "
                "| best, D4RL refs | wall time (s) |")
        rule = "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    lines += [head, rule]
    for dataset in datasets:
        here = [r for r in runs if r.dataset == dataset]
        env = suite(dataset) if suite(dataset) in D4RL_REFERENCES else None
        for label in label_order({r.label for r in here}):
            rs = sorted((r for r in here if r.label == label), key=lambda r: r.seed)
            s = [r.summary for r in rs]
            final_returns = [x.get("final_return_mean") for x in s]
            best_returns = [best_return(x) for x in s]
            cells = [f"`{dataset}`", label, str(len(rs)), span([x["steps"] for x in s]), mean_std(final_returns),
                     mean_std([x["final_normalized_score"] for x in s])]
            if rescored:
                cells.append(mean_std([d4rl_rescored(v, env) for v in final_returns]) if env else "")
            cells += [mean_std(best_returns), mean_std([x["best_normalized_score"] for x in s])]
            if rescored:
                cells.append(mean_std([d4rl_rescored(v, env) for v in best_returns]) if env else "")
            cells.append(f"{statistics.fmean(x['wall_time_s'] for x in s):,.0f}")
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Mean ± std over seeds; {STD_NOTE}. **return**: the raw mean return of the evaluation's",
              "episodes; **final**, **best**: the same evaluations normalised with the dataset's own references."]
    if rescored:
        envs = sorted({suite(d) for d in datasets if suite(d) in D4RL_REFERENCES})
        refs = "; ".join(f"{env}: {references_text(D4RL_REFERENCES[env])}" for env in envs)
        lines += [
            "**D4RL refs**: the same returns normalised with D4RL's reference returns for the env",
            f"({refs}). Not a D4RL score: other data, other env version (our datasets are built here, on the",
            "MuJoCo `-v5` envs, with our own behaviour policies; D4RL's were recorded on `-v2`).",
        ]
    lines.append("")
    lines += corl_section(datasets)

    notes = readings(dirs)
    if notes:
        lines += ["## What the runs show", ""]
        for note in notes:
            lines += [note, ""]

    lines += [
        "## Across datasets",
        "",
        "Final normalised scores pooled over each script's datasets that share one normalisation (the same",
        "reference returns): the interquartile mean (IQM, the mean of the middle 50% of all runs' scores) and",
        "the mean, with 95% stratified-bootstrap confidence intervals (rliable, Agarwal et al. 2021;",
        f"{BOOTSTRAP_REPS:,} resamples of the seeds within each dataset, numpy seed {BOOTSTRAP_SEED}). A dataset",
        "contributes as many runs as the dataset with the fewest seeds.",
        "",
    ]
    every = pools(runs)
    for pool in every:
        lines += [f"### `{pool.name}/*`" if " + " not in pool.name else f"### {pool.name}", ""]
        lines += aggregate_section(pool, link, command)
    unpooled = sorted({r.dataset for r in runs if r.references is None and r.summary["final_normalized_score"] is not None})
    if unpooled:
        lines += ["These datasets' runs have scores whose references cannot be told (no record, and no two evaluations",
                  "with different returns), so they join no pool: " + ", ".join(f"`{d}`" for d in unpooled) + ".", ""]
    lines += ["## Learning curves", "",
              "Normalised score at each evaluation: the mean over seeds, shaded ± one population standard deviation",
              "(ddof 0) over seeds, at the steps every seed evaluated. Runs of different budgets are drawn on axes",
              "of their own. A label keeps its colour in every figure, in its script's hue (`iql_100k` as `iql`);",
              "two labels of one script on the same axes take two shades of it.", ""]
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


def drawn_on(runs: list[Run]) -> dict[str, set]:
    """Per label, the axes it is drawn on: a pool's or a dataset's figure, at the label's budget there."""
    axes = {}
    for pool in pools(runs):
        for label in {r.label for r in pool.runs}:
            mine = [r for r in pool.runs if r.label == label]
            if score_matrix(mine)[0].size:  # as aggregates() draws it
                axes.setdefault(label, set()).add((pool.slug, budget(mine)))
    for dataset in {r.dataset for r in runs}:
        for label in {r.label for r in runs if r.dataset == dataset}:
            axes.setdefault(label, set()).add((dataset, budget([r for r in runs if r.dataset == dataset and r.label == label])))
    return axes


def draw(runs: list[Run], figures: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly

    folder = Path(figures)
    folder.mkdir(parents=True, exist_ok=True)
    names = figure_names(runs)
    colour = colours(label_order({r.label for r in runs}), drawn_on(runs))  # a label keeps its colour everywhere
    legend = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)  # off the curves
    written = []

    def save(fig, key):
        path = folder / names[key]
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        written.append(path)

    for pool in pools(runs):
        matrices, _, budgets, estimates = aggregates(pool.runs)
        if not matrices:
            continue
        groups = by_budget(budgets)
        fig, axes = plt.subplots(len(groups), 2, figsize=(9, 1.2 + 0.6 * len(groups) + 0.45 * len(matrices)),
                                 squeeze=False, sharex="col",
                                 gridspec_kw={"height_ratios": [len(g) + 0.6 for _, g in groups]})
        for row, (steps, labels) in enumerate(groups):
            for i, (ax, title) in enumerate(zip(axes[row], ("IQM", "mean"))):
                for y, label in enumerate(labels):
                    point, ci = estimates[label]
                    ax.plot([ci[0][i], ci[1][i]], [y, y], lw=6, alpha=0.6, color=colour[label], solid_capstyle="butt")
                    ax.plot([point[i]], [y], "|", ms=14, mew=2, color="k")
                ax.set_title(f"{title}, {steps:,} gradient steps", fontsize=10)
                ax.set_yticks(range(len(labels)), labels)
                ax.set_ylim(len(labels) - 0.5, -0.5)  # first script on top
                ax.grid(axis="x", alpha=0.3)
        for ax in axes[-1]:
            ax.set_xlabel("final normalised score (95% CI)")
        fig.suptitle(f"{pool.name}: {references_text(pool.references)}", fontsize=10)
        fig.tight_layout()
        save(fig, ("aggregates", pool.slug))

        everything = np.concatenate([m.ravel() for m in matrices.values()])
        taus = np.linspace(min(0.0, math.floor(everything.min())), max(100.0, math.ceil(everything.max())), 101)
        # rliable's score distribution, P(score > tau) over all runs and datasets, at every tau at once
        # (rly.score_distributions loops over tau in Python: 20x slower under the bootstrap)
        profiles = interval_estimates(matrices, lambda s: (s.reshape(-1, 1) > taus).mean(axis=0))
        first = next(iter(matrices))
        assert np.allclose(profiles[first][0], rly.score_distributions(matrices[first], taus))
        fig, axes = panels(plt, len(groups))
        for ax, (steps, labels) in zip(axes, groups):
            for label in labels:
                point, ci = profiles[label]
                ax.plot(taus, point, color=colour[label], label=label)
                ax.fill_between(taus, ci[0], ci[1], color=colour[label], alpha=0.2)
            ax.set_title(f"{pool.name}, {steps:,} gradient steps", fontsize=10)
            ax.set_xlabel(r"normalised score $\tau$")
            ax.grid(alpha=0.3)
            ax.legend(**legend)
        for ax in axes[::PANELS_PER_ROW]:
            ax.set_ylabel(r"fraction of runs with score > $\tau$")
        fig.tight_layout()
        save(fig, ("profile", pool.slug))

    for dataset in sorted({r.dataset for r in runs}):
        here = [r for r in runs if r.dataset == dataset]
        drawn = {}
        for label in label_order({r.label for r in here}):
            mine = [r for r in here if r.label == label]
            steps, mean, std = curve(mine)
            if len(steps):
                drawn[label] = (budget(mine), steps, mean, std)
        groups = by_budget({label: v[0] for label, v in drawn.items()}) or [(0, [])]
        fig, axes = panels(plt, len(groups))
        for ax, (total, labels) in zip(axes, groups):
            for label in labels:
                _, steps, mean, std = drawn[label]
                # markers: each point is an evaluation, and a label with one evaluation is a point, not a line
                ax.plot(steps, mean, color=colour[label], label=label, marker="o", markersize=3)
                ax.fill_between(steps, mean - std, mean + std, color=colour[label], alpha=0.2)
            ax.set_title(f"{dataset}, {total:,} gradient steps" if labels else dataset, fontsize=10)
            ax.set_xlabel("gradient step")
            ax.grid(alpha=0.3)
            if labels:
                ax.legend(**legend)
        for ax in axes[::PANELS_PER_ROW]:
            ax.set_ylabel("normalised score (mean ± population std)")
        fig.tight_layout()
        save(fig, dataset)
    return written


DEFAULT_DATASET = "local/pendulum/medium-replay-v0"  # what every script trains on with no flags


def default_runs(runs: list[Run], dataset: str = DEFAULT_DATASET) -> dict[str, list[Run]]:
    """Each script's default runs (no flags but the seed) on `dataset`, by script file, in table order."""
    by_script = {}
    for r in sorted(runs, key=lambda r: r.seed):
        if r.dataset == dataset and r.is_default_run:
            by_script.setdefault(shlex.split(r.command)[1], []).append(r)
    order = {f"{ALGORITHM_LABEL_FILE.get(x, x)}.py": i for i, x in enumerate(ORDER)}
    return {k: by_script[k] for k in sorted(by_script, key=lambda k: (order.get(k, len(order)), k))}


def default_runs_table(runs: list[Run], dataset: str = DEFAULT_DATASET) -> str:
    """README's table of the default runs: mean ± std (ddof 0) over the committed seeds of each script."""
    lines = ["| script | seeds | gradient steps | final normalised score | final return | wall time (s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for script, rs in default_runs(runs, dataset).items():
        s = [r.summary for r in rs]
        lines.append(f"| `{script}` | {', '.join(str(r.seed) for r in rs)} | {span([x['steps'] for x in s])} "
                     f"| {mean_std([x['final_normalized_score'] for x in s])} "
                     f"| {mean_std([x.get('final_return_mean') for x in s])} "
                     f"| {mean_std([x['wall_time_s'] for x in s], digits=0)} |")
    return "\n".join(lines)


def evidence_cells(runs: list[Run], dataset: str, labels: list[str | None], default_only: bool = False,
                   d4rl_refs: bool = False) -> list[str]:
    """One row of final normalised scores, mean ± std (ddof 0) over seeds, one cell per label (None: empty);
    with `default_only`, a label is a script file's default runs (`bc.py`); with `d4rl_refs`, the final
    returns on D4RL's reference returns for the env (not D4RL scores)."""
    if default_only:
        chosen = default_runs(runs, dataset)
    else:
        chosen = {label: [r for r in runs if r.dataset == dataset and r.label == label] for label in labels if label}

    def score(r: Run):
        if d4rl_refs:
            return d4rl_rescored(r.summary.get("final_return_mean"), suite(dataset))
        return r.summary["final_normalized_score"]

    return [mean_std([score(r) for r in chosen.get(label, [])]) if label else "" for label in labels]


def collect(sweep_dir: str, into: str, replace: bool = False) -> int:
    """Copy a sweep's summaries, run.json files, sweep.json and failure records into a tree to commit."""
    src, dst = Path(sweep_dir).resolve(), Path(into).resolve()
    if not (src / "sweep.json").is_file():
        sys.exit(f"error: {sweep_dir} is not a sweep folder (no sweep.json)")

    def wanted(rel: Path) -> bool:  # not TensorBoard files, logs or checkpoints
        return (rel.name == "summary.json" and "runs" in rel.parts[:-1] or rel.name == "run.json"
                or rel.parts[0] == "failures" and len(rel.parts) == 2 and rel.suffix == ".log")

    files = [p for p in sorted(src.rglob("*")) if p.is_file() and wanted(p.relative_to(src))]
    if dst.exists():
        strangers = [p for p in dst.rglob("*") if p.is_file() and p.suffix not in (".json", ".log")]
        if strangers:
            sys.exit(f"error: {into} holds files a collect did not write (e.g. {strangers[0]}); choose another folder")
        # a collect replaces the whole copy: never silently drop runs that another sweep's collect put there
        kept = {p.relative_to(src) for p in files}
        lost = [p.relative_to(dst) for p in sorted(dst.rglob("summary.json")) if p.relative_to(dst) not in kept]
        if lost and not replace:
            sys.exit(f"error: {into} holds {len(lost)} run summaries that {sweep_dir} does not (e.g. {lost[0]}), and "
                     f"a collect replaces the whole folder: collect into a folder of its own (e.g. {into}-<name>), or "
                     f"give --replace to delete them")
        shutil.rmtree(dst)
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
    p.add_argument("--default-runs", action="store_true",
                   help=f"only print the table of each script's default runs (no flags but the seed) on {DEFAULT_DATASET}")
    p.add_argument("--collect", metavar="SWEEP_DIR", help="copy a sweep's small files into --into, then stop")
    p.add_argument("--into", metavar="DEST", help="with --collect: where to, e.g. benchmarks/results/pendulum")
    p.add_argument("--replace", action="store_true",
                   help="with --collect: replace DEST even where it holds runs the sweep folder does not")
    args = p.parse_args(argv)
    if args.collect or args.into:
        if not (args.collect and args.into) or args.dirs:
            p.error("--collect SWEEP_DIR and --into DEST go together, without other folders")
        return collect(args.collect, args.into, args.replace)
    if not args.dirs:
        p.error("give at least one folder of runs")
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        p.error(f"no such folder: {', '.join(missing)}")

    runs = find_runs(args.dirs)
    if args.default_runs:
        print(default_runs_table(runs))
        return 0
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
