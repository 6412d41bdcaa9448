"""CQL speed: gradient steps/s of cql.py's update against its SAC backbone, with and without torch.compile.

    python benchmarks/speed_cql.py                # all variants, 3 interleaved rounds, medians
    python benchmarks/speed_cql.py --seconds 5 --rounds 5 --no-compile

Everything runs in one process on Hopper-shaped data (obs 11, act 3; a 100k-transition buffer of random
tensors, batches drawn with torch.randint as in cql.py's loop), batch 256, 2 threads, with glibc's
allocator set as the scripts set it (keep_freed_memory). The variants:
- "CORL-shaped": twin 3x256 critics, 3x256 actor, 10 uniform + 10 pi(s) + 10 pi(s') actions (the D4RL
  settings of docs/cql.md);
- the same networks with --cql-alpha 0: the SAC step alone (no sampled actions at all);
- "d3rlpy-shaped": twin 2x256 critics, 2x256 actor, 10 + 10 + 10 actions, Lagrange alpha: d3rlpy 2.8.1's
  CQL setting;
- cql.py's classroom defaults (twin 2x64, 2x64 actor, 5 + 5 + 5 actions), sized for Pendulum;
- the CORL-shaped step and its SAC step with --compile (compiling takes minutes on 2 loaded cores).
Each round times every variant for `--seconds` after a warm-up; rounds interleave the variants so that
the load of a shared CPU falls on all of them alike; the medians over rounds are reported, as steps per
second of wall time and per second of this process's CPU time (on a shared machine the second says more).
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cql  # noqa: E402

OBS, ACT, BATCH, BUFFER = 11, 3, 256, 100_000
CORL = dict(hidden_dim=256, critic_layers=3, actor_layers=3, cql_n_actions=10)
D3RLPY = dict(hidden_dim=256, critic_layers=2, actor_layers=2, cql_n_actions=10)
VARIANTS = {
    "cql CORL-shaped (3x256, 3x10 actions)": dict(**CORL),
    "sac backbone (3x256, alpha 0)": dict(**CORL, cql_alpha=0.0),
    "cql d3rlpy-shaped (2x256, 3x10 actions, Lagrange)": dict(**D3RLPY, cql_lagrange=True),
    "sac backbone (2x256, alpha 0)": dict(**D3RLPY, cql_alpha=0.0),
    "cql defaults (2x64, 3x5 actions)": dict(),
}


def make_agent(**kw):
    torch.manual_seed(0)
    return cql.CQL(OBS, ACT, cql.Args(**kw), -torch.ones(ACT), torch.ones(ACT), "cpu")


def steps_per_second(agent, buffer, seconds, warmup=0):
    """(steps per wall second, steps per CPU second of this process) over `seconds` after `warmup` steps."""
    obs, act, rew, next_obs, done = buffer
    n, t0, c0 = 0, None, None
    while True:
        if n == warmup:
            t0, c0 = time.perf_counter(), time.process_time()
        idx = torch.randint(0, BUFFER, (BATCH,))
        agent.update(obs[idx], act[idx], rew[idx], next_obs[idx], done[idx])
        n += 1
        if t0 is not None and time.perf_counter() - t0 > seconds:
            return (n - warmup) / (time.perf_counter() - t0), (n - warmup) / max(time.process_time() - c0, 1e-9)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="CQL gradient steps/s (see the module docstring)")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--only", default=None, help="only variants whose name contains this")
    opts = parser.parse_args()
    cql.keep_freed_memory()  # as every script does first
    torch.set_num_threads(opts.threads)
    g = torch.Generator().manual_seed(0)
    buffer = (torch.randn(BUFFER, OBS, generator=g), torch.rand(BUFFER, ACT, generator=g) * 2 - 1,
              torch.randn(BUFFER, generator=g), torch.randn(BUFFER, OBS, generator=g),
              (torch.rand(BUFFER, generator=g) < 0.01).float())

    agents = {}
    for name, kw in VARIANTS.items():
        if opts.only and opts.only not in name:
            continue
        for compiled in (False,) if opts.no_compile or "3x256" not in name else (False, True):
            label = name + (" + compile" if compiled else "")
            agents[label] = make_agent(**kw, compile=compiled)
            t0 = time.perf_counter()
            steps_per_second(agents[label], buffer, seconds=0.0, warmup=5)  # compiles here, if asked
            print(f"built {label} (first steps {time.perf_counter() - t0:.1f}s)", flush=True)

    results = {label: [] for label in agents}
    for r in range(opts.rounds):
        for label, agent in agents.items():
            results[label].append(steps_per_second(agent, buffer, opts.seconds, warmup=3))
            wall, cpu = results[label][-1]
            print(f"round {r + 1}: {label}: {wall:.1f} steps/s ({cpu:.1f} per CPU second)", flush=True)

    print(f"\nmedians over {opts.rounds} rounds (torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {BATCH}, obs {OBS}, act {ACT}):")
    med = {label: statistics.median(w for w, _ in v) for label, v in results.items()}
    for label, m in med.items():
        cpu = statistics.median(c for _, c in results[label])
        print(f"  {label:58s} {m:6.1f} steps/s, {cpu:6.1f} per CPU second   "
              f"(rounds: {', '.join(f'{w:.1f}' for w, _ in results[label])})")
    for a, b in (("cql CORL-shaped (3x256, 3x10 actions)", "sac backbone (3x256, alpha 0)"),
                 ("cql d3rlpy-shaped (2x256, 3x10 actions, Lagrange)", "sac backbone (2x256, alpha 0)")):
        if a in med and b in med:
            print(f"  cost of the CQL term: {a} is {med[b] / med[a]:.1f}x slower than {b}")
