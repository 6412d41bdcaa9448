"""Draws docs/img/stitching.png and prints the table of docs/overview.md ("Offline RL or imitation?
Stitching") and of docs/trajectory_transformer.md: offline RL joins pieces of trajectories, imitation cannot.

    python docs/figures/stitching.py            # build the data if missing, train, roll out, write the JSON, draw
    python docs/figures/stitching.py --reuse    # draw and print again from docs/figures/data/stitching.json

The data (common/make_maze.py): PointMaze U-maze, pieces driven by D4RL's waypoint controller with
noise. No episode goes from the start to the goal: start-to-middle pieces stop one cell short of the
goal, middle-to-goal pieces start there, middle-to-start pieces go back, and round trips go from the
start to the middle and turn back there. The control, umaze-whole, holds whole start-to-goal episodes
instead of the first two pieces (and no round trips).

Each run is the script itself, started as a subprocess with its command-line flags only, one torch
thread, one run at a time; its final normalised score is read from runs/*/summary.json. Then the best
IQL or CQL run (by final score) and the first plain-BC and filtered-BC runs are rolled out from their
checkpoints (`--eval-checkpoint`, on the final evaluation's start states) with the positions recorded, and
so are the TT runs, once as trained and once without search (one sampled candidate a step).
Everything the figure and the table need (the scores, the rollouts, 25 of each piece of the data) goes
to docs/figures/data/stitching.json; the figure: (a) the data's pieces and those rollouts, (b) final
normalised score (= success rate, in %) per algorithm and dataset, mean over seeds with each seed as a
dot.
"""

import argparse
import atexit
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "figures" / "data" / "stitching.json"

# TT: a smaller GPT and a shorter plan than the defaults (docs/trajectory_transformer.md), so that its
# runs fit beside the others; 8,000 steps, the budget at which it learns the control
TT_FLAGS = ["--embed-dim", "64", "--n-layers", "2", "--sequence-len", "4", "--horizon", "2", "--beam-width", "8"]
TT_STEPS, TT_EVERY, TT_EPISODES = 8000, 2000, 20
NO_SEARCH = ("--beam-width", "1", "--n-expand", "1")  # TT's planner keeping one sampled candidate: no choice
# (label, script, dataset kind, extra flags, total steps, evaluate every, evaluation episodes, seeds: all
# of --seeds or only the first): short budgets. IQL's score settled from step 7500 on; CQL costs the
# most per step (it runs on one seed); DT and TT cost more still (TT runs a beam search at every env
# step of its evaluations), but run on every seed: the two sequence models are the pages' comparison.
RUNS = [
    ("BC", "bc.py", "umaze", [], 10000, 2500, 20, "all"),
    ("BC top 10%", "bc.py", "umaze", ["--top-fraction", "0.1"], 2000, 500, 20, "all"),
    ("DT", "decision_transformer.py", "umaze", [], 1000, 500, 20, "all"),
    ("TT", "trajectory_transformer.py", "umaze", TT_FLAGS, TT_STEPS, TT_EVERY, TT_EPISODES, "all"),
    ("IQL", "iql.py", "umaze", [], 10000, 2500, 20, "all"),
    ("CQL", "cql.py", "umaze", [], 2000, 500, 20, "first"),
    ("BC top 10%", "bc.py", "umaze-whole", ["--top-fraction", "0.1"], 2000, 500, 20, "all"),
    ("DT", "decision_transformer.py", "umaze-whole", [], 1000, 500, 20, "all"),
    ("TT", "trajectory_transformer.py", "umaze-whole", TT_FLAGS, TT_STEPS, TT_EVERY, TT_EPISODES, "all"),
]
SHOWN = 25  # pieces of each kind drawn in panel (a)


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


def train(workdir: Path, spec: tuple, seed: int, keep: bool) -> tuple[dict, Path]:
    """Run one script (or, with keep, find its finished run); returns its summary and run folder."""
    label, script, kind, flags, steps, freq, episodes, _ = spec
    from common.make_maze import dataset_id

    cwd = run_dir(workdir, label, kind, seed)
    if keep and finished_run(cwd, steps) is not None:
        run = finished_run(cwd, steps)
        return json.loads((run / "summary.json").read_text()), run
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / script), "--dataset-id", dataset_id(kind), "--total-steps", str(steps),
           "--eval-freq", str(freq), "--eval-episodes", str(episodes), "--seed", str(seed), "--no-cuda",
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


def rollouts(script: str, run: Path, flags: tuple[str, ...] = (), name: str = "rollouts") -> list[dict]:
    """Evaluate a run's checkpoint with its script's --eval-checkpoint (and `flags`), recording each episode's
    positions in run/<name>.json."""
    ckpt = run / f"{script[:-3]}.pt"
    if not ckpt.exists():
        sys.exit(f"error: no checkpoint {ckpt} (the runs are made with --save-model)")
    out = run / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--record", str(out), "--",
           str(ROOT / script), "--eval-checkpoint", str(ckpt), "--no-cuda", *flags]
    with open(run / f"{name}-log.txt", "w") as log:
        rc = subprocess.call(cmd, cwd=run, stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    if rc != 0 or not out.exists():
        sys.exit(f"error: rolling out {ckpt} failed (exit {rc}); see {run / 'rollouts-log.txt'}")
    return [{**e, "xy": rounded(e["xy"][:-1:2] + e["xy"][-1:])} for e in json.loads(out.read_text())]


def rounded(xy: list) -> list:
    """Positions to the hundredth of a cell, enough to draw them (and a small JSON)."""
    return [[round(x, 2), round(y, 2)] for x, y in xy]


def data_pieces() -> dict:
    """The (x, y) path of the first SHOWN episodes of each piece of umaze-v0, every other point."""
    import minari

    from common import make_maze as mm

    ds = minari.load_dataset(mm.dataset_id("umaze"))
    pieces = mm.pieces_of("umaze")
    shown = {p: [] for p in pieces}
    for k, e in enumerate(ds.iterate_episodes()):
        p = pieces[k % len(pieces)]
        if len(shown[p]) < SHOWN:
            shown[p].append(rounded(e.observations["achieved_goal"][::2].tolist()))
        if min(map(len, shown.values())) >= SHOWN:
            break
    return shown


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


def scores_of(data: dict) -> list[tuple[dict, list[float]]]:
    """Each (label, kind) of the runs, in RUNS' order as stored, with its final scores in seed order."""
    groups = {}
    for r in data["runs"]:
        groups.setdefault((r["label"], r["kind"]), (r, []))[1].append(r["final_normalized_score"])
    return list(groups.values())


def cell_centre(cell: tuple[int, int]) -> tuple[float, float]:
    """A maze cell's centre in the env's (x, y) coordinates (the map's centre is the origin)."""
    from common import make_maze as mm

    rows, cols = len(mm.MAZES["umaze"].maze_map), len(mm.MAZES["umaze"].maze_map[0])
    return cell[1] + 0.5 - cols / 2, rows / 2 - cell[0] - 0.5


def went_through_middle(episode: dict) -> bool:
    """Whether a rolled-out episode came within the success radius of M's centre, where the pieces meet."""
    import numpy as np

    from common import make_maze as mm

    xy = np.asarray(episode["xy"]) - np.asarray(cell_centre(mm.MAZES["umaze"].middle))
    return bool((np.linalg.norm(xy, axis=1) <= mm.REACH_RADIUS).any())


def table(data: dict) -> None:
    """The tables of docs/overview.md and docs/trajectory_transformer.md: final score per run and seed; then
    where the rolled-out episodes from S went: to M (the cell where the pieces meet), and on to G or not."""
    sys.path.insert(0, str(ROOT))
    print("| algorithm | dataset | steps | evaluation episodes | seeds | final score per seed | mean |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r, scores in scores_of(data):
        seeds = [x["seed"] for x in data["runs"] if (x["label"], x["kind"]) == (r["label"], r["kind"])]
        print(f"| {r['label']} | `{r['dataset_id']}` | {r['steps']:,} | {r['eval_episodes']} | "
              f"{', '.join(map(str, seeds))} | {', '.join(f'{v:.0f}' for v in scores)} | "
              f"{sum(scores) / len(scores):.1f} |")
    rolled = [(t["label"], t["episodes"]) for t in data["traces"].values()]
    rolled += [(f"TT (seed {t['seed']})", t["episodes"]) for t in data.get("tt_other_seeds", [])]
    rolled += [(f"TT without search, beam 1 x 1 (seed {t['seed']})", t["episodes"]) for t in data.get("tt_no_search", [])]
    print()
    print("| rolled out on `umaze-v0` | episodes | reach M | reach M, then G | reach M, not G |")
    print("| --- | --- | --- | --- | --- |")
    for label, episodes in rolled:
        at_m = [e for e in episodes if went_through_middle(e)]
        print(f"| {label} | {len(episodes)} | {len(at_m)} | {sum(e['reached_goal'] for e in at_m)} | "
              f"{sum(not e['reached_goal'] for e in at_m)} |")


def draw(data: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Circle, Rectangle

    sys.path.insert(0, str(ROOT))
    from common import make_maze as mm

    maze = mm.MAZES["umaze"]
    rows, cols = len(maze.maze_map), len(maze.maze_map[0])

    xy = cell_centre

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5.6), gridspec_kw={"width_ratios": [1, 1.45]})
    for i, row in enumerate(maze.maze_map):
        for j, c in enumerate(row):
            if c == 1:
                ax.add_patch(Rectangle((j - cols / 2, rows / 2 - i - 1), 1, 1, color="0.35"))
    colors = {"start-to-middle": "tab:blue", "middle-to-goal": "tab:green", "middle-to-start": "0.6",
              "start-to-middle-to-start": "tab:purple"}
    for p, paths in data["pieces"].items():
        for n, path in enumerate(paths):
            path = np.asarray(path)
            ax.plot(path[:, 0], path[:, 1], color=colors[p], lw=0.7, alpha=0.3 if p == "start-to-middle-to-start" else 0.45,
                    zorder=1 if p == "start-to-middle-to-start" else 2, label=f"data: {p}" if n == 0 else None)
    styles = {"stitched": {"color": "tab:red", "lw": 1.6}, "copied": {"color": "k", "lw": 1.2, "ls": "--"},
              "cloned": {"color": "tab:orange", "lw": 1.2, "ls": ":"}, "planned": {"color": "tab:brown", "lw": 1.2, "ls": "-."}}
    for name, trace in data["traces"].items():
        eps = trace["episodes"]
        for n, e in enumerate(eps):
            p = np.asarray(e["xy"])
            ax.plot(p[:, 0], p[:, 1], **styles[name], alpha=0.8,
                    label=f"{trace['label']}: {sum(x['reached_goal'] for x in eps)}/{len(eps)} reach the goal"
                    if n == 0 else None)
            ax.plot(*p[-1], "o", color=styles[name]["color"], ms=3)
    ax.add_patch(Circle(xy(maze.goal), mm.REACH_RADIUS, fill=False, color="tab:green", lw=2))
    for cell, name in ((maze.start, "start"), (maze.goal, "goal"), (maze.middle, "middle")):
        ax.text(xy(cell)[0], xy(cell)[1] - 0.42, name, ha="center", va="bottom", fontsize=10, weight="bold")
    edge = 0.3  # of the outer wall
    ax.set(xlim=(1 - edge - cols / 2, cols / 2 - 1 + edge), ylim=(1 - edge - rows / 2, rows / 2 - 1 + edge),
           aspect="equal", xticks=[], yticks=[],
           title=f"(a) the data's pieces ({SHOWN} of each) and rollouts from the start")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=8, ncol=2, frameon=False)

    groups = [("umaze", "pieces only\n(umaze-v0)"), ("umaze-whole", "control: whole episodes\n(umaze-whole-v0)")]
    x, ticks, names = 0.0, [], []
    for kind, title in groups:
        runs = [(r, np.array(scores)) for r, scores in scores_of(data) if r["kind"] == kind]
        bx.text(x + (len(runs) - 1) / 2, 118, title, ha="center", va="center", fontsize=9)
        if x > 0:
            bx.axvline(x - 0.8, color="0.6", lw=0.8)
        for r, scores in runs:
            color = {"IQL": "tab:red", "CQL": "tab:orange"}.get(r["label"], "0.45")
            bx.bar(x, scores.mean(), color=color, width=0.8, alpha=0.85)
            bx.plot(np.full(len(scores), x), scores, "o", color="k", ms=4)
            bx.text(x, max(scores.max(), 0) + 3, f"{scores.mean():.0f}", ha="center", fontsize=9)
            ticks.append(x)
            names.append(r["label"].replace(" top", "\ntop"))
            x += 1
        x += 0.6
    bx.axhline(100, color="k", lw=0.8, ls=":")
    bx.set_xticks(ticks, names, fontsize=8)
    bx.set_yticks(range(0, 101, 20))
    episodes = sorted({r["eval_episodes"] for r in data["runs"]}, reverse=True)
    bx.set(ylim=(-5, 127), ylabel="final normalised score (= % of episodes reaching the goal)",
           title=f"(b) final score, mean over seeds (dots: seeds), "
                 f"{' or '.join(map(str, episodes))} episodes each")
    fig.suptitle("Stitching: no episode of the data goes from the start to the goal", fontsize=12)
    fig.text(0.99, 0.01, "python docs/figures/stitching.py", ha="right", fontsize=7, color="0.4")
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def run_all(workdir: Path, seeds: list[int], keep: bool) -> dict:
    """Train every run of RUNS on every seed, one at a time, then roll out the runs panel (a) shows."""
    sys.path.insert(0, str(ROOT))
    from common import make_maze

    t0 = time.time()
    make_maze.build(["umaze", "umaze-whole"])  # reused when present
    def seeds_of(spec: tuple) -> list[int]:
        return seeds if spec[7] == "all" else seeds[:1]

    jobs = [(spec, seed) for spec in RUNS for seed in seeds_of(spec)]
    print(f"{len(jobs)} runs, one at a time, in {workdir}", flush=True)
    done = {}
    for spec, seed in jobs:
        done[(spec[0], spec[2], seed)] = train(workdir, spec, seed, keep)
    runs = [{"label": label, "script": script, "kind": kind, "dataset_id": make_maze.dataset_id(kind),
             "flags": flags, "steps": steps, "eval_freq": freq, "eval_episodes": episodes, "seed": seed,
             **{k: done[(label, kind, seed)][0][k] for k in ("final_normalized_score", "best_normalized_score",
                                                             "wall_time_s", "eval_history")}}
            for (label, script, kind, flags, steps, freq, episodes, _), seed in jobs]

    def run_of(label: str, seed: int) -> tuple[str, Path]:
        spec = next(s for s in RUNS if s[0] == label and s[2] == "umaze")
        return spec[1], done[(label, "umaze", seed)][1]

    # the best IQL or CQL run by final score (ties: IQL, then the lower seed), the first BC runs
    offline = [(done[(s[0], "umaze", seed)][0]["final_normalized_score"], -i, -seed, s[0], seed)
               for i, s in enumerate(RUNS) if s[0] in ("IQL", "CQL") and s[2] == "umaze" for seed in seeds_of(s)]
    *_, best, best_seed = max(offline)
    traces = {"stitched": {"label": f"{best} (seed {best_seed})", "episodes": rollouts(*run_of(best, best_seed))},
              "copied": {"label": f"BC top 10% (seed {seeds[0]})", "episodes": rollouts(*run_of("BC top 10%", seeds[0]))},
              "cloned": {"label": f"BC (seed {seeds[0]})", "episodes": rollouts(*run_of("BC", seeds[0]))},
              "planned": {"label": f"TT (seed {seeds[0]})", "episodes": rollouts(*run_of("TT", seeds[0]))}}
    # TT's other seeds too, not drawn: the second table says where each of its episodes went
    tt_seeds = [{"seed": seed, "episodes": rollouts(*run_of("TT", seed))} for seed in seeds[1:]]
    # the same TT models without a choice: one candidate a step, its action tokens sampled from the model as a
    # clone's would be; what the beam search over predicted rewards and values adds is the difference
    tt_no_search = [{"seed": seed, "episodes": rollouts(*run_of("TT", seed), flags=NO_SEARCH, name="rollouts-no-search")}
                    for seed in seeds]
    print(f"{(time.time() - t0) / 60:.1f} min", flush=True)
    return {"seeds": seeds, "runs": runs, "traces": traces, "tt_other_seeds": tt_seeds, "tt_no_search": tt_no_search,
            "pieces": data_pieces()}


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--record":
        sys.path.insert(0, str(ROOT))
        return record(sys.argv[2], sys.argv[4:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/img/stitching.png")
    p.add_argument("--workdir", default="runs/stitching", help="where the runs go (one folder per run)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reuse", action="store_true", help="train nothing: draw and print from docs/figures/data/stitching.json")
    p.add_argument("--keep-runs", action="store_true",
                   help="keep the runs already finished in --workdir (same steps) instead of training them again")
    args = p.parse_args()
    if not args.reuse:
        data = run_all(Path(args.workdir).resolve(), args.seeds, args.keep_runs)
        DATA.parent.mkdir(parents=True, exist_ok=True)
        DATA.write_text(json.dumps(data) + "\n")
        print(f"wrote {DATA}")
    data = json.loads(DATA.read_text())
    draw(data, args.out)
    print()
    table(data)
    print(f"\n{sum(r['wall_time_s'] for r in data['runs']) / 60:.1f} min of training and evaluation in all (the runs' "
          "own wall times, one run at a time)")


if __name__ == "__main__":
    main()
