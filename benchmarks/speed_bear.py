"""Gradient steps per CPU-second of bear.py's update beside bcq.py's, at their defaults, on the default data.

    OMP_NUM_THREADS=1 python benchmarks/speed_bear.py [--rounds 3] [--steps 100]

One process, one torch thread; the two updates run interleaved, round after round, each on batches of
local/pendulum/medium-replay-v0 drawn with torch.randint, as the scripts' main loops draw them. BEAR's
update is the one after the warm start (with the Q term). Steps per CPU-second of the process estimate
what one free core does: wall-clock rates on a shared CPU say more about the neighbours.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bcq  # noqa: E402
import bear  # noqa: E402
from common.datasets import load_dataset  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_dataset("local/pendulum/medium-replay-v0", "cpu", verbose=False)
    obs, nxt = data.normalize_obs(data.observations), data.normalize_obs(data.next_observations)
    dims = (data.obs_dim, data.act_dim, data.action_low, data.action_high)
    agents = {"bear": (bear.BEAR(*dims, bear.Args(), "cpu"), {"warm_start": False}),
              "bcq": (bcq.BCQ(*dims, bcq.Args(), "cpu"), {})}
    rates = {name: [] for name in agents}
    for _ in range(args.rounds):
        for name, (agent, kwargs) in agents.items():
            t0 = time.process_time()
            for _ in range(args.steps):
                idx = torch.randint(0, data.size, (100,))
                agent.update(obs[idx], data.actions[idx], data.rewards[idx], nxt[idx], data.terminals[idx], **kwargs)
            rates[name].append(args.steps / (time.process_time() - t0))
    for name, r in rates.items():
        print(f"{name}: {statistics.median(r):.1f} steps per CPU-second (median of {len(r)}: "
              f"{', '.join(f'{x:.1f}' for x in r)})")


if __name__ == "__main__":
    main()
