"""MOPO speed: SAC steps/s of mopo.py's policy phase (rollouts included) beside cql.py's update, at the
same network sizes.

    python benchmarks/speed_mopo.py                       # Pendulum-shaped, the defaults of both, 3 rounds
    python benchmarks/speed_mopo.py --shape hopper --hidden-dim 256 --rounds 3 --seconds 10

Everything runs in one process, one torch thread (`--threads`), with glibc's allocator set as the scripts
set it. MOPO's step is what its main loop does per SAC step: every `rollout_freq` steps a round of
`rollout_batch_size` branches of h steps through the ensemble (7 members, 5 elites, the script's model
width) into the model buffer, then a batch of 5% real and 95% model transitions and one SAC update.
CQL's step is cql.py's update at its defaults (5 uniform + 5 pi(s) + 5 pi(s') actions) on the same
actor and critic sizes. A step of each is timed for `--seconds` (MOPO over whole rollout periods, so
the rollouts' cost is amortised as in a run), the two interleaved over `--rounds` so that a shared
machine's load falls on both alike; medians over rounds, in steps per second of wall time and of this
process's CPU time, and the ratio MOPO / CQL of each round. The ensemble is untrained: a forward pass
costs the same whatever its weights.
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cql  # noqa: E402
import mopo  # noqa: E402

SHAPES = {"pendulum": (3, 1, 8_000), "hopper": (11, 3, 100_000)}


def mopo_step_factory(obs_dim, act_dim, n, args):
    torch.manual_seed(0)
    low, high = -torch.ones(act_dim), torch.ones(act_dim)
    agent = mopo.SAC(obs_dim, act_dim, args, low, high, "cpu")
    model = mopo.EnsembleDynamics(obs_dim, act_dim, args.model_hidden_dim, args.model_layers, args.ensemble_size,
                                  args.num_elites)
    data = [torch.randn(n, obs_dim), torch.rand(n, act_dim) * 2 - 1, torch.randn(n), torch.randn(n, obs_dim),
            torch.zeros(n)]
    real = mopo.ModelBuffer(n, obs_dim, act_dim, "cpu")
    real.add(*data)
    buffer = mopo.ModelBuffer(args.rollout_batch_size * args.rollout_length * args.model_retain_epochs,
                              obs_dim, act_dim, "cpu")
    never = mopo.never_terminates(None)
    n_real = int(args.batch_size * args.real_ratio)
    state = {"step": 0}

    def step():
        if state["step"] % args.rollout_freq == 0:
            start = data[0][torch.randint(0, n, (args.rollout_batch_size,))]
            b = mopo.rollout(model, agent.actor.explore, start, args.rollout_length, never, args.penalty_coef)
            buffer.add(b["obs"], b["act"], b["reward"], b["next_obs"], b["done"])
        parts = [real.sample(n_real), buffer.sample(args.batch_size - n_real)]
        agent.update(*(torch.cat(x) for x in zip(*parts)))
        state["step"] += 1
    return step


def cql_step_factory(obs_dim, act_dim, n, hidden_dim, layers, batch_size):
    torch.manual_seed(0)
    agent = cql.CQL(obs_dim, act_dim, cql.Args(hidden_dim=hidden_dim, critic_layers=layers, actor_layers=layers),
                    -torch.ones(act_dim), torch.ones(act_dim), "cpu")
    data = [torch.randn(n, obs_dim), torch.rand(n, act_dim) * 2 - 1, torch.randn(n), torch.randn(n, obs_dim),
            torch.zeros(n)]

    def step():
        idx = torch.randint(0, n, (batch_size,))
        agent.update(*(x[idx] for x in data))
    return step


def timed(step, seconds, multiple_of=1):
    """(steps per wall second, per CPU second), over whole multiples of `multiple_of` steps."""
    for _ in range(multiple_of):  # warm-up: one full period
        step()
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - t0 < seconds or n % multiple_of:
        step()
        n += 1
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=list(SHAPES), default="pendulum")
    p.add_argument("--hidden-dim", type=int, default=64, help="actor and critics (both scripts' default: 64)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cql.keep_freed_memory()
    obs_dim, act_dim, n = SHAPES[a.shape]
    args = mopo.Args(hidden_dim=a.hidden_dim, critic_layers=a.layers, actor_layers=a.layers)
    mopo_step = mopo_step_factory(obs_dim, act_dim, n, args)
    cql_step = cql_step_factory(obs_dim, act_dim, n, a.hidden_dim, a.layers, args.batch_size)
    results = {"mopo": [], "cql": [], "ratio_wall": [], "ratio_cpu": []}
    for r in range(a.rounds):
        order = [("mopo", mopo_step, args.rollout_freq), ("cql", cql_step, 1)]
        for name, step, period in (order if r % 2 == 0 else order[::-1]):
            results[name].append(timed(step, a.seconds, period))
        results["ratio_wall"].append(results["mopo"][-1][0] / results["cql"][-1][0])
        results["ratio_cpu"].append(results["mopo"][-1][1] / results["cql"][-1][1])
        print(f"round {r + 1}: mopo {results['mopo'][-1][0]:.1f} steps/s ({results['mopo'][-1][1]:.1f} per CPU s) | "
              f"cql {results['cql'][-1][0]:.1f} ({results['cql'][-1][1]:.1f}) | load {os.getloadavg()[0]:.1f}", flush=True)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    print(f"{a.shape}-shaped (obs {obs_dim}, act {act_dim}), actor and critics {a.layers}x{a.hidden_dim}, batch "
          f"{args.batch_size}, model {args.ensemble_size}x{args.model_layers}x{args.model_hidden_dim}, "
          f"{args.rollout_batch_size} branches x h {args.rollout_length} every {args.rollout_freq} steps; "
          f"{a.threads} thread(s), medians of {a.rounds} rounds:")
    print(f"  mopo.py policy phase: {med([x[0] for x in results['mopo']]):.1f} steps/s "
          f"({med([x[1] for x in results['mopo']]):.1f} per CPU second)")
    print(f"  cql.py update:        {med([x[0] for x in results['cql']]):.1f} steps/s "
          f"({med([x[1] for x in results['cql']]):.1f} per CPU second)")
    print(f"  MOPO / CQL: {med(results['ratio_wall']):.2f}x wall ({min(results['ratio_wall']):.2f}-"
          f"{max(results['ratio_wall']):.2f}), {med(results['ratio_cpu']):.2f}x CPU")


if __name__ == "__main__":
    main()
