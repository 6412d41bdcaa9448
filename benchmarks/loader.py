"""Loader benchmark: a 1M-transition Hopper-shaped dataset into tensors; time and peak memory.

    python -m benchmarks.loader            # builds the dataset once under /tmp/offline-rl-bench-minari
    python -m benchmarks.loader --out benchmarks/results/speed/loader.json   # and keeps the measurements

Each load runs in a fresh process; peak memory is the process's peak RSS minus its RSS after
imports, against the size of the loaded tensors.
"""

import json
import os
import subprocess
import sys
import time

ROOT = "/tmp/offline-rl-bench-minari"
DATASET = "bench/hopper-shaped/1m-v0"

CHILD = r"""
import json, resource, time, torch
from common.datasets import load_dataset
import minari, h5py, gymnasium  # imported before the baseline is taken
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
base = rss_mb()
t0 = time.time()
data = load_dataset("%s", "cpu", verbose=False)
seconds = time.time() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
size = sum(t.numel() * t.element_size() for t in (data.observations, data.next_observations, data.actions,
           data.rewards, data.terminals, data.truncations)) / 2**20
print(json.dumps({"transitions": data.size, "seconds": round(seconds, 2), "data_mb": round(size, 1),
                  "peak_extra_mb": round(peak - base, 1), "ratio": round((peak - base) / size, 2)}))
"""


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the measurements, with the machine's load, to this JSON file")
    args = parser.parse_args()
    os.environ["MINARI_DATASETS_PATH"] = ROOT
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.synthetic import make_hopper_shaped

    t0 = time.time()
    make_hopper_shaped(DATASET, episodes=1000, episode_length=1000)
    print(f"dataset ready ({time.time() - t0:.0f}s)")
    results = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", CHILD % DATASET], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1])
    print("median seconds:", sorted(r["seconds"] for r in results)[1],
          "| median peak/data:", sorted(r["ratio"] for r in results)[1])
    if args.out:  # the numbers a page may quote, and what the machine was doing while they were taken
        import torch

        record = {"dataset": DATASET, "episodes": 1000, "episode_length": 1000, "torch": torch.__version__,
                  "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loads": results}
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
