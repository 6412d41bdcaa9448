"""Our scripts beside d3rlpy 2.8.1: gradient steps per second, interleaved, each side in a fresh process.

    python -m benchmarks.peers.setup     # once: benchmarks/peers/.venv with d3rlpy 2.8.1
    python -m benchmarks.peers.compare [--algos cql bcq dt iql bc td3_bc awac] [--rounds 3] [--seconds 8]
                                       [--threads 2] [--out benchmarks/results/speed/peers.json]
    python -m benchmarks.peers.compare --matmuls --algos cql bcq dt [--rounds 3] [--seconds 8]
                                       # FLOPs per step, and the steps' matrix products timed alone
                                       # (benchmarks/peers/matmuls.py), into benchmarks/results/speed/matmuls.json
    python -m benchmarks.peers.report    # the tables in docs/benchmarks.md from the JSON files

For each round and each algorithm, every side runs in a fresh subprocess, one after another: ours
(benchmarks/peers/ours.py, the project's python) and d3rlpy's (benchmarks/peers/theirs.py, the peers
venv's python), in turn, the order flipped every round. Each child builds the same Hopper-shaped data
(benchmarks/peers/data.py), warms up for --warmup seconds, then counts steps for --seconds. The
ratio ours / d3rlpy is taken within each round and its median over rounds is reported. The children
get the default environment of a user: no MALLOC_* variables, GLIBC_TUNABLES or LD_PRELOAD (no tuned
allocator), and no OMP/MKL thread variables (--threads sets torch's threads). The JSON is rewritten
after each algorithm's round, so an interrupted run keeps what it finished.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

from benchmarks.peers import setup as peers_setup
from benchmarks.peers.settings import ALGOS, D3RLPY_VERSION, SETTINGS
from benchmarks.peers.timing import parse

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "benchmarks", "results", "speed", "peers.json")
OUT_MATMULS = os.path.join(REPO, "benchmarks", "results", "speed", "matmuls.json")
PEER = "d3rlpy"
# the user's default environment: no allocator tuning, no thread settings, nothing of another venv
STRIPPED = ("GLIBC_TUNABLES", "LD_PRELOAD", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONPATH", "PYTHONHOME",
            "VIRTUAL_ENV")


def child_env(environ) -> dict:
    return {k: v for k, v in environ.items() if not k.startswith("MALLOC_") and k not in STRIPPED}


def labels(algo: str) -> list[str]:
    """Our sides of an algorithm: "ours", or "ours <variant>" where it has several."""
    variants = SETTINGS[algo]["variants"]
    return ["ours"] if variants == ["default"] else [f"ours {v}" for v in variants]


def round_order(algo: str, r: int) -> list[str]:
    """Ours first in even rounds, d3rlpy first in odd ones: neither side always follows the other."""
    sides = labels(algo) + [PEER]
    return sides if r % 2 == 0 else sides[::-1]


def summarize(rounds: list[dict], ours: list[str]) -> dict:
    """Per our side: the median steps/s of each side and the median, min and max of the per-round
    ratio ours / d3rlpy (rounds missing a side are skipped); the same median against d3rlpy's fit step
    (its sampler and its update) where the rounds have it."""
    out = {}
    for label in ours:
        pairs = [(r[label]["sps"], r[PEER]["sps"]) for r in rounds if label in r and PEER in r]
        if not pairs:
            continue
        ratios = [a / b for a, b in pairs]
        out[label] = {"ours_sps": statistics.median(a for a, _ in pairs),
                      "d3rlpy_sps": statistics.median(b for _, b in pairs),
                      "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                      "rounds": len(pairs),
                      # per CPU second of each child: steadier on a shared machine (with one thread, the
                      # rate of a core of its own)
                      "ratio_cpu": statistics.median(r[label]["cpu_sps"] / r[PEER]["cpu_sps"] for r in rounds
                                                     if label in r and PEER in r)}
        fit = [(r[label]["sps"], r[PEER]["fit_step"]["sps"]) for r in rounds
               if label in r and "fit_step" in r.get(PEER, {})]
        if fit:  # d3rlpy's update with its own sampler, as in its fit loop
            out[label] |= {"d3rlpy_fit_sps": statistics.median(b for _, b in fit),
                           "ratio_fit": statistics.median(a / b for a, b in fit),
                           "ratio_fit_min": min(a / b for a, b in fit), "ratio_fit_max": max(a / b for a, b in fit),
                           "ratio_fit_cpu": statistics.median(r[label]["cpu_sps"] / r[PEER]["fit_step"]["cpu_sps"]
                                                              for r in rounds if label in r and PEER in r)}
    return out


def summarize_matmuls(rounds: list[dict], ours: list[str]) -> dict:
    """Per our side, medians over rounds: FLOPs per step and steps/s of both sides, our step's matrix
    products alone (seconds per step), their share of our step, and the ceiling they set: our steps/s if
    nothing but those products took time, over d3rlpy's steps/s (taken within each round)."""
    out = {}
    for label in ours:
        pairs = [(r[label], r[PEER]) for r in rounds if label in r and PEER in r]
        if not pairs:
            continue
        med = lambda f: statistics.median(f(a, b) for a, b in pairs)  # noqa: E731
        out[label] = {"ours_gflop": med(lambda a, b: a["gflop"]), "d3rlpy_gflop": med(lambda a, b: b["gflop"]),
                      "ours_sps": med(lambda a, b: a["sps"]), "d3rlpy_sps": med(lambda a, b: b["sps"]),
                      "ratio": med(lambda a, b: a["sps"] / b["sps"]),
                      "ours_product_ms": 1e3 * med(lambda a, b: a["product_seconds"]),
                      "d3rlpy_product_ms": 1e3 * med(lambda a, b: b["product_seconds"]),
                      "product_share": med(lambda a, b: a["product_seconds"] * a["sps"]),
                      "product_gflops": med(lambda a, b: a["gflop"] / a["product_seconds"]),
                      "ceiling_ratio": med(lambda a, b: 1.0 / a["product_seconds"] / b["sps"]),
                      "dtypes": pairs[0][0]["dtypes"], "rounds": len(pairs)}
    return out


def command(algo: str, label: str, cli) -> list[str]:
    timing = ["--algo", algo, "--seconds", str(cli.seconds), "--warmup", str(cli.warmup),
              "--threads", str(cli.threads)] + ["--matmuls"] * cli.matmuls
    if label == PEER:
        return [peers_setup.PYTHON, "-m", "benchmarks.peers.theirs", *timing]
    variant = label.split(" ", 1)[1] if " " in label else "default"
    return [sys.executable, "-m", "benchmarks.peers.ours", *timing, "--variant", variant]


def run_child(cmd: list[str], timeout: float) -> dict:
    proc = subprocess.run(cmd, cwd=REPO, env=child_env(os.environ), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    return parse(proc.stdout)


def save(results: dict, path: str) -> None:
    """Written to a temporary name and renamed: an interrupted run never leaves half a file."""
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(cli) -> dict:
    if not peers_setup.ready(peers_setup.torch_version()):
        sys.exit(f"error: {peers_setup.VENV} lacks d3rlpy {D3RLPY_VERSION} or the project's torch: "
                 f"run `python -m benchmarks.peers.setup` first")
    results = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": cli.threads,
                    "python": platform.python_version(), "load_average_at_start": os.getloadavg()[0]},
        "protocol": {"rounds": cli.rounds, "seconds": cli.seconds, "warmup_seconds": cli.warmup,
                     "matmuls": cli.matmuls,
                     "rounds_done": 0,
                     "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
        "peer": {"name": PEER, "version": D3RLPY_VERSION},
        "algorithms": {a: {k: SETTINGS[a][k] for k in ("script", "peer", "peer_args", "ours_args", "batch", "setting")}
                       | {"variant_args": SETTINGS[a].get("variant_args", {}), "rounds": []} for a in cli.algos},
    }
    os.makedirs(os.path.dirname(os.path.abspath(cli.out)), exist_ok=True)
    for r in range(cli.rounds):
        for algo in cli.algos:
            row = {}
            for label in round_order(algo, r):
                row[label] = run_child(command(algo, label, cli), cli.timeout)
                products = (f", {row[label]['gflop']:.2f} GFLOP, products alone "
                            f"{1e3 * row[label]['product_seconds']:.1f} ms" if cli.matmuls else "")
                print(f"round {r + 1}/{cli.rounds} {algo:7s} {label:13s} {row[label]['sps']:8.2f} steps/s{products} "
                      f"(load {row[label]['load_average']:.1f})", flush=True)
            entry = results["algorithms"][algo]
            entry["rounds"].append(row)
            entry["summary"] = (summarize_matmuls if cli.matmuls else summarize)(entry["rounds"], labels(algo))
            results["machine"]["torch"] = row[labels(algo)[0]]["torch"]
            results["machine"]["torch_d3rlpy"] = row[PEER]["torch"]
            results["protocol"]["rounds_done"] = min(len(e["rounds"]) for e in results["algorithms"].values())
            save(results, cli.out)
    for algo in cli.algos:
        for label, s in results["algorithms"][algo]["summary"].items():
            if cli.matmuls:
                print(f"{algo:7s} {label:13s} {s['ours_gflop']:.2f} vs d3rlpy {s['d3rlpy_gflop']:.2f} GFLOP per step; "
                      f"{s['ours_sps']:.2f} vs {s['d3rlpy_sps']:.2f} steps/s; our products alone "
                      f"{s['ours_product_ms']:.1f} ms ({s['product_share']:.0%} of our step): at most "
                      f"{s['ceiling_ratio']:.2f}x d3rlpy")
                continue
            print(f"{algo:7s} {label:13s} {s['ours_sps']:8.2f} vs d3rlpy {s['d3rlpy_sps']:8.2f} steps/s: "
                  f"{s['ratio']:.2f}x (rounds {s['ratio_min']:.2f}-{s['ratio_max']:.2f}x); against d3rlpy's "
                  f"sampler + update {s.get('d3rlpy_fit_sps', float('nan')):.2f} steps/s: "
                  f"{s.get('ratio_fit', float('nan')):.2f}x")
    print(f"wrote {cli.out}")
    return results


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", nargs="+", default=ALGOS, choices=ALGOS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per side per round")
    p.add_argument("--warmup", type=float, default=2.0, help="untimed warm-up seconds per side per round")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each child")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before a child is given up")
    p.add_argument("--matmuls", action="store_true",
                   help="FLOPs per step and each step's matrix products timed alone, instead of steps/s alone")
    p.add_argument("--out", default=None, help=f"default: {OUT}, or {OUT_MATMULS} with --matmuls")
    cli = p.parse_args(argv)
    cli.out = cli.out or (OUT_MATMULS if cli.matmuls else OUT)
    if cli.rounds < 1 or cli.seconds <= 0 or cli.warmup < 0 or cli.threads < 1:
        p.error("--rounds and --threads must be >= 1, --seconds > 0, --warmup >= 0")
    return cli


if __name__ == "__main__":
    main(parse_args())
