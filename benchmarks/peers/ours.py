"""Child process, project venv: one script's training step at d3rlpy's setting, timed.

    python -m benchmarks.peers.ours --algo cql [--variant default] [--seconds 8] [--threads 2]
    python -m benchmarks.peers.ours --algo bcq --profile 5     # the top operators of 5 steps instead
    python -m benchmarks.peers.ours --algo cql --matmuls       # FLOPs, and the matrix products timed alone

The script is imported as a module and its own pieces run exactly as its main loop runs them: the data
as tensors (observations normalised once), a batch drawn with torch.randint (through the script's
ReplayBuffer where it has one), then its update. keep_freed_memory() first, as the script's __main__
does. Prints one MARKER line of JSON (benchmarks/peers/timing.py).
"""

import argparse
import importlib
import os
import sys
from dataclasses import asdict

import torch

from benchmarks.peers import data as peer_data
from benchmarks.peers import matmuls
from benchmarks.peers.settings import SETTINGS
from benchmarks.peers.timing import emit, measure


def offline_dataset(arrays: dict):
    """The arrays as common.datasets.OfflineDataset, as the loader would hand them to a script."""
    from common.datasets import OfflineDataset

    t = {k: torch.from_numpy(v) for k, v in arrays.items() if k != "episode_length"}
    n, length = t["observations"].shape[0], arrays["episode_length"]
    starts = torch.arange(0, n, length)
    lengths = torch.full_like(starts, length)
    obs, act_dim = t["observations"], t["actions"].shape[1]
    return OfflineDataset(
        dataset_id="bench/hopper-shaped/peers-v0", observations=obs, actions=t["actions"], rewards=t["rewards"],
        next_observations=t["next_observations"], terminals=t["terminals"], truncations=t["timeouts"],
        episode_starts=starts, episode_lengths=lengths,
        episode_returns=t["rewards"].view(-1, length).sum(1), obs_mean=obs.mean(0),
        obs_std=obs.std(0).clamp_min(1e-3), action_low=-torch.ones(act_dim),
        action_high=torch.ones(act_dim), ref_min_score=None, ref_max_score=None, ref_source="none",
        max_episode_steps=length, make_env=lambda **kw: None)


def with_networks(step, owner):
    """`step`, carrying the networks it trains (step.networks): every nn.Module of `owner`, or `owner`."""
    if isinstance(owner, torch.nn.Module):
        step.networks = [owner]
    else:
        step.networks = [m for m in vars(owner).values() if isinstance(m, torch.nn.Module)]
    return step


def make_step(algo: str, variant: str, data, **overrides):
    """A closure doing one training step of the script, as its main loop does (logging excluded), at the
    setting of benchmarks/peers/settings.py (`overrides`: other Args, for tests). step.networks: the
    networks it trains; step.keep_freed_memory: whether the script's allocator setting took."""
    s = SETTINGS[algo]
    if variant not in s["variants"]:
        raise ValueError(f"{algo}: no variant {variant!r} (there are {s['variants']})")
    module = importlib.import_module(s["script"][: -len(".py")])
    kept = module.keep_freed_memory()  # first thing in every script's __main__
    args = module.Args(**(s["ours_args"] | s.get("variant_args", {}).get(variant, {}) | overrides))
    step = build_step(module, algo, data, args)
    step.keep_freed_memory = kept
    return step


def build_step(module, algo: str, data, args):
    B, low, high = args.batch_size, data.action_low, data.action_high

    if algo == "bc":
        actor = module.Actor(data.obs_dim, data.act_dim, args.hidden_dim, low, high)
        optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate)
        observations, actions = data.normalize_obs(data.observations), data.actions

        def step():
            idx = torch.randint(0, data.size, (B,))
            loss = module.bc_loss(actor(observations[idx]), actions[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return with_networks(step, actor)

    if algo == "cql":
        agent = module.CQL(data.obs_dim, data.act_dim, args, low, high, "cpu")
        buffer = module.ReplayBuffer(data, 0)
        actor = agent.actor

        def step():
            obs, act, rew, next_obs, done = buffer.sample(B)
            # cql.py's unit_actions: the critics see actions in [-1, 1]^d
            act = ((act - actor.action_bias) / actor.action_scale).clamp(-1.0, 1.0)
            agent.update(obs, act, rew, next_obs, done)
        return with_networks(step, agent)

    if algo in ("bcq", "td3_bc"):
        if algo == "bcq":
            agent = module.BCQ(data.obs_dim, data.act_dim, low, high, args, "cpu")
        else:
            agent = module.TD3BC(data.obs_dim, data.act_dim, args, low, high, "cpu")
        tensors = (data.normalize_obs(data.observations), data.actions, data.rewards,
                   data.normalize_obs(data.next_observations), data.terminals)

        def step():
            idx = torch.randint(0, data.size, (B,))
            agent.update(*(x[idx] for x in tensors))
        return with_networks(step, agent)

    if algo in ("iql", "awac"):
        if algo == "iql":
            agent = module.IQL(data.obs_dim, data.act_dim, args, low, high, "cpu")
            buffer = module.ReplayBuffer(data, 0, 1.0, 0.0)  # the reward scale costs nothing per step
        else:
            agent = module.AWAC(data.obs_dim, data.act_dim, args, low, high, "cpu")
            buffer = module.ReplayBuffer(data, 0)

        def step():
            agent.update(*buffer.sample(B))
        return with_networks(step, agent)

    if algo == "dt":
        length = data.max_episode_steps
        model = module.make_model(asdict(args), data, length)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
        warmup = args.total_steps // 10 if args.warmup_steps is None else args.warmup_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / max(1, warmup)))
        amp = args.bf16
        if amp and not module.use_bf16("cpu", True):
            sys.exit("error: this CPU has no native bf16: decision_transformer.py would train in float32")
        rtg = module.returns_to_go(data.rewards, data.episode_starts, data.episode_lengths) * 1e-3
        start_of = torch.repeat_interleave(data.episode_starts, data.episode_lengths)
        timesteps_all = torch.arange(data.size) - start_of
        observations = data.normalize_obs(data.observations)

        def step():
            end = torch.randint(0, data.size, (B,))
            R, s, a, ts, mask = module.sample_windows(end, args.context_len, start_of, rtg, observations,
                                                      data.actions, timesteps_all)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                pred = model(R, s, a, ts, mask)
            loss = module.action_loss(pred.float(), a, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            scheduler.step()
        return with_networks(step, model)

    raise ValueError(f"unknown algorithm {algo!r}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", required=True, choices=list(SETTINGS))
    p.add_argument("--variant", default="default")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (not timed)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--episodes", type=int, default=None, help="fewer episodes of data (tests)")
    p.add_argument("--matmuls", action="store_true",
                   help="instead of timing alone: FLOPs per step and the step's matrix products timed alone "
                        "(benchmarks/peers/matmuls.py)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="instead of timing: the top operators of N steps after the warm-up (torch.profiler)")
    cli = p.parse_args()
    sys.path.insert(0, os.getcwd())  # the scripts' root (run from the repository root)
    torch.set_num_threads(cli.threads)
    torch.manual_seed(0)
    # the script's allocator setting before any tensor, as in its __main__ (make_step repeats it)
    importlib.import_module(SETTINGS[cli.algo]["script"][: -len(".py")]).keep_freed_memory()
    kw = {} if cli.episodes is None else {"episodes": cli.episodes}
    step = make_step(cli.algo, cli.variant, offline_dataset(peer_data.hopper_shaped(**kw)))
    if cli.profile:
        measure(step, 0.0, cli.warmup)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(cli.profile):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
        sys.exit(0)
    if cli.matmuls:
        measure(step, 0.0, cli.warmup)
        emit({**matmuls.analyse(step, cli.seconds), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "load_average": os.getloadavg()[0]})
        sys.exit(0)
    result = measure(step, cli.seconds, cli.warmup)
    emit({**result, "keep_freed_memory": step.keep_freed_memory, "torch": torch.__version__,
          "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]})
