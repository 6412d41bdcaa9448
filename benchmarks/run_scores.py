"""Score benchmark: run scripts over datasets and seeds, gather their summary.json into a table.

    python -m benchmarks.run_scores --scripts bc iql --datasets local/pendulum/medium-v0 --seeds 1 2
    python -m benchmarks.run_scores --extra-args "--total-steps 20000"   # passed to every script

Runs one after another (the scripts use both cores), under runs/ in the current directory. Prints a
Markdown table of final and best normalised scores (mean and standard deviation over seeds) and
writes every summary to `--out`.
"""

import json
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"bc": "bc.py", "cql": "cql.py", "bcq": "bcq.py", "iql": "iql.py", "dt": "decision_transformer.py"}


@dataclass
class Args:
    scripts: list[str] = field(default_factory=lambda: list(SCRIPTS))
    """which scripts: bc cql bcq iql dt"""
    datasets: list[str] = field(default_factory=lambda: [
        f"local/pendulum/{k}-v0" for k in ("random", "medium", "medium-replay", "expert", "medium-expert")])
    """Minari dataset ids"""
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    """seeds per (script, dataset)"""
    extra_args: str = ""
    """flags passed to every script, e.g. "--total-steps 20000 --eval-freq 5000\""""
    out: str = "benchmark_scores.json"
    """where every summary is written"""


def mean_std(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return f"{statistics.mean(xs):.1f} ± {statistics.pstdev(xs):.1f}"


def main(args: Args):
    unknown = [s for s in args.scripts if s not in SCRIPTS]
    if unknown:
        sys.exit(f"error: unknown scripts {unknown}; choose from {list(SCRIPTS)}")
    results = []
    for dataset in args.datasets:
        for name in args.scripts:
            for seed in args.seeds:
                cmd = [sys.executable, str(REPO / SCRIPTS[name]), "--dataset-id", dataset, "--seed", str(seed),
                       "--exp-name", f"bench-{name}", *shlex.split(args.extra_args)]
                t0 = time.time()
                print("+", " ".join(cmd[1:]), flush=True)
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    print(out.stderr[-2000:], file=sys.stderr)
                    sys.exit(f"error: {name} on {dataset} (seed {seed}) failed")
                run = max(Path("runs").glob(f"{dataset.replace('/', '-')}__bench-{name}__{seed}__*"),
                          key=lambda p: p.stat().st_mtime)
                summary = json.loads((run / "summary.json").read_text())
                summary.update(script=name, run=str(run))
                results.append(summary)
                print(f"  final {summary['final_normalized_score']}, best {summary['best_normalized_score']}, "
                      f"{time.time() - t0:.0f}s", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\n| dataset | {' | '.join(args.scripts)} |\n| --- |{' --- |' * len(args.scripts)}")
    for dataset in args.datasets:
        cells = []
        for name in args.scripts:
            rs = [r for r in results if r["script"] == name and r["dataset_id"] == dataset]
            cells.append(f"{mean_std([r['final_normalized_score'] for r in rs])} "
                         f"(best {mean_std([r['best_normalized_score'] for r in rs])})")
        print(f"| {dataset} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main(tyro.cli(Args))
