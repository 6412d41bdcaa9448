"""Draws docs/img/stitching.png: offline RL joins pieces of trajectories, filtered imitation cannot
(docs/overview.md, "Offline RL or imitation? Stitching").

    python docs/figures/stitching.py                 # build the data if missing, train, roll out, draw
    python docs/figures/stitching.py --reuse         # draw again from the runs already in --workdir

The data (common/make_maze.py): PointMaze U-maze, pieces driven by D4RL's waypoint controller with
noise. No episode goes from the start to the goal: start-to-middle pieces stop one cell short of the
goal, middle-to-goal pieces start there, middle-to-start pieces go back. The control, umaze-whole,
holds whole start-to-goal episodes instead of the first two pieces.

Each run is the script itself, started as a subprocess with its command-line flags only, one torch
thread each; its final normalised score is read from runs/*/summary.json. Then the best IQL or CQL
run (by final score) and the first filtered-BC run are rolled out from their checkpoints
(`--eval-checkpoint`, on the final evaluation's start states) with the positions recorded, and:
(a) the data's pieces and those rollouts, (b) final normalised score (= success rate, in %) per
algorithm and dataset, mean over seeds with each seed as a dot.
"""

import argparse
import atexit
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# (label, script, dataset kind, extra flags, total steps, evaluate every): short budgets. IQL's score
# settled (85-100) from step 7500 on; DT and CQL cost the most per step. Plain BC is not part of the
# question, but a reader will ask about it.
RUNS = [
    ("BC", "bc.py", "umaze", [], 2000, 500),
    ("BC top 10%", "bc.py", "umaze", ["--top-fraction", "0.1"], 2000, 500),
    ("DT", "decision_transformer.py", "umaze", [], 1000, 500),
    ("IQL", "iql.py", "umaze", [], 20000, 2500),
    ("CQL", "cql.py", "umaze", [], 2000, 500),
    ("BC top 10%", "bc.py", "umaze-whole", ["--top-fraction", "0.1"], 2000, 500),
    ("DT", "decision_transformer.py", "umaze-whole", [], 1000, 500),
]
EVAL_EPISODES = 20


def run_dir(workdir: Path, label: str, kind: str, seed: int) -> Path:
    return workdir / kind / label.replace(" ", "-").replace("%", "pct") / f"seed{seed}"


def finished_run(cwd: Path, steps: int) -> Path | None:
    """The newest run folder under cwd/runs/ whose training summary says `steps` steps."""
    found = []
    for path in (cwd / "runs").glob("*/summary.json"):
        s = json.loads(path.read_text())
        if "final_normalized_score" in s and s.get("steps") == steps:
            found.append(path.parent)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def train(workdir: Path, spec: tuple, seed: int, reuse: bool) -> tuple[dict, Path]:
    """Run one script (or, with reuse, find its finished run); returns its summary and run folder."""
    label, script, kind, flags, steps, freq = spec
    from common.make_maze import dataset_id

    cwd = run_dir(workdir, label, kind, seed)
    if reuse and finished_run(cwd, steps) is not None:
        run = finished_run(cwd, steps)
        return json.loads((run / "summary.json").read_text()), run
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / script), "--dataset-id", dataset_id(kind), "--total-steps", str(steps),
           "--eval-freq", str(freq), "--eval-episodes", str(EVAL_EPISODES), "--seed", str(seed), "--no-cuda",
           "--save-model", *flags]
    t0 = time.time()
    with open(cwd / "log.txt", "w") as log:
        rc = subprocess.call(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    run = finished_run(cwd, steps)
    if rc != 0 or run is None:
        sys.exit(f"error: `{' '.join(cmd)}` failed (exit {rc}); see {cwd / 'log.txt'}")
    s = json.loads((run / "summary.json").read_text())
    print(f"  {label:11s} {kind:12s} seed {seed}: final score {s['final_normalized_score']:6.1f} "
          f"({time.time() - t0:.0f} s)", flush=True)
    return s, run


def rollouts(script: str, run: Path) -> list[dict]:
    """Evaluate a run's checkpoint with its script's --eval-checkpoint, recording each episode's positions."""
    ckpt = run / f"{script[:-3]}.pt"
    if not ckpt.exists():
        sys.exit(f"error: no checkpoint {ckpt} (the runs are made with --save-model)")
    out = run / "rollouts.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--record", str(out), "--",
           str(ROOT / script), "--eval-checkpoint", str(ckpt), "--no-cuda"]
    with open(run / "rollouts-log.txt", "w") as log:
        rc = subprocess.call(cmd, cwd=run, stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    if rc != 0 or not out.exists():
        sys.exit(f"error: rolling out {ckpt} failed (exit {rc}); see {run / 'rollouts-log.txt'}")
    return json.loads(out.read_text())


def record(out: str, argv: list[str]) -> None:
    """Run a script as __main__ with the evaluation env's positions recorded: the loader wraps every
    evaluation env in FlattenDictObservation, whose flat observation starts with achieved_goal = (x, y)
    (keys in sorted order)."""
    import runpy

    from common import datasets

    episodes = []  # one per env: the first episode it runs (a vector env resets finished envs itself)
    wrapper = datasets.FlattenDictObservation
    reset, step = wrapper.reset, wrapper.step

    def recording_reset(self, **kwargs):
        obs, info = reset(self, **kwargs)
        if not hasattr(self, "_trace"):
            self._trace = {"xy": [obs[:2].tolist()], "reached_goal": False, "done": False}
            episodes.append(self._trace)
        else:
            self._trace["done"] = True
        return obs, info

    def recording_step(self, action):
        obs, reward, terminated, truncated, info = step(self, action)
        if not self._trace["done"]:
            self._trace["xy"].append(obs[:2].tolist())
            self._trace["reached_goal"] |= bool(terminated)
            self._trace["done"] = bool(terminated or truncated)
        return obs, reward, terminated, truncated, info

    wrapper.reset, wrapper.step = recording_reset, recording_step
    atexit.register(lambda: Path(out).write_text(json.dumps(episodes)))
    sys.argv = argv
    sys.path.insert(0, str(Path(argv[0]).parent))
    runpy.run_path(argv[0], run_name="__main__")


def draw(results: dict, traces: dict, out: str, seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import minari
    import numpy as np
    from matplotlib.patches import Circle, Rectangle

    from common import make_maze as mm

    maze = mm.MAZES["umaze"]
    rows, cols = len(maze.maze_map), len(maze.maze_map[0])

    def xy(cell):
        return cell[1] + 0.5 - cols / 2, rows / 2 - cell[0] - 0.5

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.4), gridspec_kw={"width_ratios": [1, 1.25]})
    for i, row in enumerate(maze.maze_map):
        for j, c in enumerate(row):
            if c == 1:
                ax.add_patch(Rectangle((j - cols / 2, rows / 2 - i - 1), 1, 1, color="0.35"))
    colors = {"start-to-middle": "tab:blue", "middle-to-goal": "tab:green", "middle-to-start": "0.6"}
    ds = minari.load_dataset(mm.dataset_id("umaze"))
    pieces = mm.pieces_of("umaze")
    shown = {p: 0 for p in pieces}
    for k, e in enumerate(ds.iterate_episodes()):
        p = pieces[k % len(pieces)]
        if shown[p] < 25:
            shown[p] += 1
            pos = e.observations["achieved_goal"]
            ax.plot(pos[:, 0], pos[:, 1], color=colors[p], lw=0.7, alpha=0.5,
                    label=f"data: {p}" if shown[p] == 1 else None)
        if min(shown.values()) >= 25:
            break
    styles = {"stitched": {"color": "tab:red", "lw": 1.6}, "copied": {"color": "k", "lw": 1.2, "ls": "--"}}
    for name, (label, eps) in traces.items():
        for n, e in enumerate(eps):
            p = np.asarray(e["xy"])
            ax.plot(p[:, 0], p[:, 1], **styles[name], alpha=0.8,
                    label=f"{label}: {sum(x['reached_goal'] for x in eps)}/{len(eps)} reach the goal" if n == 0 else None)
            ax.plot(*p[-1], "o", color=styles[name]["color"], ms=3)
    ax.add_patch(Circle(xy(maze.goal), mm.REACH_RADIUS, fill=False, color="tab:green", lw=2))
    for cell, name in ((maze.start, "start"), (maze.goal, "goal"), (maze.middle, "middle")):
        ax.text(xy(cell)[0], xy(cell)[1] - 0.42, name, ha="center", va="bottom", fontsize=10, weight="bold")
    edge = 0.3  # of the outer wall
    ax.set(xlim=(1 - edge - cols / 2, cols / 2 - 1 + edge), ylim=(1 - edge - rows / 2, rows / 2 - 1 + edge),
           aspect="equal", xticks=[], yticks=[],
           title="(a) the data's pieces (25 of each) and rollouts from the start")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=8, ncol=2, frameon=False)

    groups = [("umaze", "pieces only\n(umaze-v0)"), ("umaze-whole", "control: whole episodes\n(umaze-whole-v0)")]
    x, ticks, names = 0.0, [], []
    for kind, title in groups:
        n = sum(s[2] == kind for s in RUNS)
        bx.text(x + (n - 1) / 2, 118, title, ha="center", va="center", fontsize=9)
        if x > 0:
            bx.axvline(x - 0.8, color="0.6", lw=0.8)
        for label, spec in [(s[0], s) for s in RUNS if s[2] == kind]:
            scores = np.array([results[(label, kind, s)]["final_normalized_score"] for s in seeds])
            color = {"IQL": "tab:red", "CQL": "tab:orange"}.get(label, "0.45")
            bx.bar(x, scores.mean(), color=color, width=0.8, alpha=0.85)
            bx.plot(np.full(len(scores), x), scores, "o", color="k", ms=4)
            bx.text(x, max(scores.max(), 0) + 3, f"{scores.mean():.0f}", ha="center", fontsize=9)
            ticks.append(x)
            names.append(label.replace(" top", "\ntop"))
            x += 1
        x += 0.6
    bx.axhline(100, color="k", lw=0.8, ls=":")
    bx.set_xticks(ticks, names, fontsize=8)
    bx.set_yticks(range(0, 101, 20))
    bx.set(ylim=(-5, 127), ylabel="final normalised score (= % of episodes reaching the goal)",
           title=f"(b) final score, mean of {len(seeds)} seeds (dots: seeds), {EVAL_EPISODES} episodes each")
    fig.suptitle("Stitching: no episode of the data goes from the start to the goal", fontsize=12)
    fig.text(0.99, 0.01, "python docs/figures/stitching.py", ha="right", fontsize=7, color="0.4")
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--record":
        return record(sys.argv[2], sys.argv[4:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/img/stitching.png")
    p.add_argument("--workdir", default="runs/stitching", help="where the runs go (one folder per run)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (one torch thread each)")
    p.add_argument("--reuse", action="store_true", help="keep the runs already finished (same steps)")
    args = p.parse_args()
    workdir = Path(args.workdir).resolve()

    from common import make_maze

    t0 = time.time()
    make_maze.build(["umaze", "umaze-whole"])  # reused when present
    jobs = [(spec, seed) for seed in args.seeds for spec in RUNS]
    print(f"{len(jobs)} runs, {args.jobs} at a time, in {workdir}", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda j: train(workdir, j[0], j[1], args.reuse), jobs))
    results = {(spec[0], spec[2], seed): s for (spec, seed), (s, _) in zip(jobs, done)}
    runs = {(spec[0], spec[2], seed): run for (spec, seed), (_, run) in zip(jobs, done)}

    # the best IQL or CQL run by final score (ties: IQL, then the lower seed), and the first filtered BC
    offline = [(results[(s[0], "umaze", seed)]["final_normalized_score"], -i, -seed, s, seed)
               for i, s in enumerate(RUNS) if s[0] in ("IQL", "CQL") for seed in args.seeds]
    *_, best, best_seed = max(offline, key=lambda t: t[:3])
    bc = next(s for s in RUNS if s[0] == "BC top 10%" and s[2] == "umaze")
    traces = {"stitched": (f"{best[0]} (seed {best_seed})", rollouts(best[1], runs[(best[0], "umaze", best_seed)])),
              "copied": (f"BC top 10% (seed {args.seeds[0]})", rollouts(bc[1], runs[(bc[0], "umaze", args.seeds[0])]))}
    draw(results, traces, args.out, args.seeds)
    print("\n| algorithm | dataset | final normalised score per seed | mean |\n| --- | --- | --- | --- |")
    for label, _, kind, *_ in RUNS:
        scores = [results[(label, kind, s)]["final_normalized_score"] for s in args.seeds]
        print(f"| {label} | {make_maze.dataset_id(kind)} | {', '.join(f'{v:.0f}' for v in scores)} | "
              f"{sum(scores) / len(scores):.1f} |")
    print(f"\ntotal {(time.time() - t0) / 60:.1f} min" + (" (runs reused)" if args.reuse else ""))


if __name__ == "__main__":
    main()
