"""Speed of rlpd.py's update: the critic ensemble as stacked weights (one batched matrix product per
layer for all N critics, `rlpd.EnsembleQ`) against the same ensemble evaluated critic by critic in a
Python loop (`LoopEnsembleQ` below: N `nn.Linear`/`nn.LayerNorm` MLPs, the same maths), both inside
the script's own `RLPD.update` on batches from `ReplayBuffer.sample_symmetric`, in one process,
alternating rounds.

    OMP_NUM_THREADS=1 python benchmarks/speed_rlpd.py --threads 1
    OMP_NUM_THREADS=1 python benchmarks/speed_rlpd.py --threads 1 --hidden-dim 256 --obs-dim 11 --act-dim 3

One timed "step" is one env step's update: --utd critic steps, then the actor and temperature step.
Reported: env-step updates per second (wall clock) and per CPU second of the process, and critic
gradient steps per second (= --utd times the first), median over rounds; the ratios stacked / loop
are the medians of the per-round ratios (per wall second; per CPU second of the process, which on a busy
machine is the steadier of the two). Random data (Pendulum-shaped by default: obs 3, act 1).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rlpd  # noqa: E402
from common.datasets import OfflineDataset  # noqa: E402


class LoopEnsembleQ(nn.Module):
    """The same N critics as rlpd.EnsembleQ, each its own nn.Sequential, evaluated one after the other."""

    def __init__(self, in_dim: int, hidden_dim: int, layers: int, n: int, layer_norm: bool = True):
        super().__init__()

        def one():
            modules, width = [], in_dim
            for _ in range(layers):
                modules += [nn.Linear(width, hidden_dim)] + ([nn.LayerNorm(hidden_dim, eps=1e-6)] if layer_norm else [])
                modules += [nn.ReLU()]
                width = hidden_dim
            return nn.Sequential(*modules, nn.Linear(width, 1))

        self.critics = nn.ModuleList([one() for _ in range(n)])
        self.n = n

    def forward(self, obs, act, members=None):
        x = torch.cat([obs, act], dim=-1)
        chosen = range(self.n) if members is None else members.tolist()
        return torch.stack([self.critics[i](x).squeeze(-1) for i in chosen])


def random_dataset(obs_dim: int, act_dim: int, n: int) -> OfflineDataset:
    """n random transitions (speed does not depend on what the numbers are)."""
    obs = torch.randn(n, obs_dim)
    return OfflineDataset(
        dataset_id="bench/random-v0", observations=obs, actions=torch.rand(n, act_dim) * 2 - 1,
        rewards=torch.randn(n), next_observations=torch.randn(n, obs_dim), terminals=torch.zeros(n),
        truncations=torch.zeros(n), episode_starts=torch.tensor([0]), episode_lengths=torch.tensor([n]),
        episode_returns=torch.zeros(1), obs_mean=torch.zeros(obs_dim), obs_std=torch.ones(obs_dim),
        action_low=-torch.ones(act_dim), action_high=torch.ones(act_dim), ref_min_score=None, ref_max_score=None,
        ref_source="none", max_episode_steps=None, make_env=None,
    )


def make_agent(variant: str, args: rlpd.Args, obs_dim: int, act_dim: int):
    agent = rlpd.RLPD(obs_dim, act_dim, args, -torch.ones(act_dim), torch.ones(act_dim), "cpu")
    if variant == "loop":
        agent.critic = LoopEnsembleQ(obs_dim + act_dim, args.hidden_dim, args.critic_layers, args.ensemble_size,
                                     args.layer_norm)
        agent.critic_target = LoopEnsembleQ(obs_dim + act_dim, args.hidden_dim, args.critic_layers,
                                            args.ensemble_size, args.layer_norm).requires_grad_(False)
        agent.critic_target.load_state_dict(agent.critic.state_dict())
        agent.critic_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.q_lr)
    return agent


def rate(agent, buffer, args, seconds: float) -> tuple[float, float]:
    """(updates per wall second, updates per CPU second) of whole env-step updates."""
    n_off = args.batch_size // 2

    def one():
        obs, act, rew, next_obs, done = buffer.sample_symmetric(args.batch_size, n_off, args.utd)
        agent.update(obs, act, rew, next_obs, done, n_off)

    for _ in range(3):  # warm-up
        one()
    steps, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        one()
        steps += 1
    return steps / (time.perf_counter() - t0), steps / (time.process_time() - c0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=4.0, help="timed seconds per variant and round")
    p.add_argument("--obs-dim", type=int, default=3)
    p.add_argument("--act-dim", type=int, default=1)
    p.add_argument("--hidden-dim", type=int, default=rlpd.Args.hidden_dim)
    p.add_argument("--utd", type=int, default=rlpd.Args.utd)
    p.add_argument("--ensemble-size", type=int, default=rlpd.Args.ensemble_size)
    p.add_argument("--batch-size", type=int, default=rlpd.Args.batch_size)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rlpd.keep_freed_memory()
    torch.manual_seed(0)
    args = rlpd.Args(hidden_dim=a.hidden_dim, utd=a.utd, ensemble_size=a.ensemble_size, batch_size=a.batch_size)
    data = random_dataset(a.obs_dim, a.act_dim, 8_000)
    buffer = rlpd.ReplayBuffer(data, 10_000)
    for _ in range(2_000):  # an online half to sample from
        buffer.add(torch.randn(a.obs_dim), torch.rand(a.act_dim) * 2 - 1, 0.0, torch.randn(a.obs_dim), False)
    load_before = os.getloadavg()[0]
    agents = {v: make_agent(v, args, a.obs_dim, a.act_dim) for v in ("stacked", "loop")}
    results = {v: [] for v in agents}
    for r in range(a.rounds):
        order = ("stacked", "loop") if r % 2 == 0 else ("loop", "stacked")
        for v in order:
            results[v].append(rate(agents[v], buffer, args, a.seconds))
    ratios = [s[0] / lp[0] for s, lp in zip(results["stacked"], results["loop"])]
    cpu_ratios = [s[1] / lp[1] for s, lp in zip(results["stacked"], results["loop"])]
    print(f"torch {torch.__version__}, {a.threads} thread(s); obs {a.obs_dim}, act {a.act_dim}, hidden "
          f"{a.hidden_dim}x{args.critic_layers}, N = {a.ensemble_size}, UTD {a.utd}, batch {a.batch_size}; "
          f"{a.rounds} rounds of {a.seconds:g} s per variant; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print("| critics | env-step updates/s | per CPU second | critic gradient steps/s |")
    print("| --- | --- | --- | --- |")
    for v in ("stacked", "loop"):
        wall = statistics.median(x[0] for x in results[v])
        cpu = statistics.median(x[1] for x in results[v])
        print(f"| {v} | {wall:.2f} | {cpu:.2f} | {wall * a.utd:.1f} |")
    print(f"stacked / loop: {statistics.median(ratios):.2f}x per wall second (rounds: {min(ratios):.2f}-"
          f"{max(ratios):.2f}), {statistics.median(cpu_ratios):.2f}x per CPU second (rounds: "
          f"{min(cpu_ratios):.2f}-{max(cpu_ratios):.2f})")


if __name__ == "__main__":
    main()
