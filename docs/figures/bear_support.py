"""The tables of docs/bear.md: BEAR's default runs (Results), and how far each policy-constrained method's
actions lie from the data's: BEAR (support, by MMD), BCQ (by
construction: perturbed samples of a behaviour model) and TD3+BC (pointwise, a squared distance to the
logged action).

    python docs/figures/bear_support.py                 # print the table from docs/figures/data/bear_support.json
    python docs/figures/bear_support.py --collect W/bear W/bear_support   # measure the runs there, write the JSON

The runs (each script's default run on local/pendulum/medium-replay-v0, seed 1, with --save-model):

    S="python -m benchmarks.sweep --datasets local/pendulum/medium-replay-v0 --jobs 1 --extra-args=--save-model"
    $S --scripts bear --seeds 1 2 3 --out W/bear
    $S --scripts td3_bc bcq --seeds 1 --out W/bear_support

The default runs' table reads the committed summaries (benchmarks/results/pendulum/bear, collected from
a sweep without --save-model, which trains the same); the MMD, alpha and critic loss at each evaluation
come from the TensorBoard logs of the runs under W/bear.

For every (s, a) of the dataset (8,000 transitions) the policy acts at s exactly as in evaluation (BEAR
and BCQ: the best of 10 sampled candidates under Q1, each state with its own fixed random stream; TD3+BC:
its deterministic actor) and we measure, in action units (Pendulum's torque, range [-2, 2]):

- `to logged a`: |pi(s) - a|, the distance to the action the data took at that very state (what TD3+BC's
  penalty (pi(s) - a)^2 measures);
- `to nearest in data`: min_k |pi(s) - a_k| over the actions a_k the data took at the K = 20 states nearest
  to s (normalised observations, s itself included): how far pi(s) is from the *support* of the data's
  actions around s;
- `off support`: the fraction of states where that nearest distance exceeds 0.1 (2.5% of the range).

A uniform random policy is measured the same way, for scale. For BEAR the script also prints its MMD at
the data's states, policy against VAE, and VAE against a second draw of the VAE (the estimator's floor).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "docs" / "figures" / "data" / "bear_support.json"
DATASET = "local/pendulum/medium-replay-v0"
COMMITTED = ROOT / "benchmarks" / "results" / "pendulum" / "bear" / DATASET.replace("/", "-")
K, OFF = 20, 0.1


def default_runs(roots: list) -> list:
    """Each committed default run's evaluations, with the MMD, alpha and critic loss its log holds at each."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = []
    for path in sorted(COMMITTED.glob("seed*/runs/*/summary.json")):
        summary = json.loads(path.read_text())
        logs = [p for root in roots for p in root.rglob(f"*__bear__{summary['seed']}__*")
                if p.is_dir() and list(p.glob("events*"))]
        ea = EventAccumulator(str(logs[0])).Reload()
        logged = {tag: {e.step: e.value for e in ea.Scalars(tag)}
                  for tag in ("losses/mmd", "losses/alpha", "losses/critic_loss")}
        steps = [step for step, _, _ in summary["eval_history"]]
        runs.append({"seed": summary["seed"], "steps": summary["steps"], "wall_time_s": summary["wall_time_s"],
                     "scores": [score for _, _, score in summary["eval_history"]], "eval_steps": steps,
                     "final": summary["final_normalized_score"], "best": summary["best_normalized_score"],
                     **{tag.split("/")[1]: [logged[tag][t] for t in steps] for tag in logged}})
    if not runs:
        sys.exit(f"error: no committed default runs under {COMMITTED}")
    return runs


def policies(run_dirs: dict, data, device="cpu"):
    """name -> (function of normalised obs -> actions, summary of the run)."""
    import bcq
    import bear
    import td3_bc

    out = {}
    for name, run in run_dirs.items():
        ckpt = torch.load(run / f"{name}.pt", map_location=device, weights_only=True)
        summary = json.loads((run / "summary.json").read_text())
        low, high = data.action_low, data.action_high
        if name == "bear":
            agent = bear.BEAR(data.obs_dim, data.act_dim, low, high, bear.Args(**ckpt["args"]), device)
        elif name == "bcq":
            agent = bcq.BCQ(data.obs_dim, data.act_dim, low, high, bcq.Args(**ckpt["args"]), device)
        else:
            agent = td3_bc.TD3BC(data.obs_dim, data.act_dim, td3_bc.Args(**ckpt["args"]), low, high, device)
        if name == "td3_bc":
            agent.actor.load_state_dict(ckpt["actor"])
            act = agent.actor
        else:
            agent.load_state_dict(ckpt)
            act = agent.eval_policy([0], device)  # one fixed random stream for the candidates
        out[name] = (act, summary, agent)
    return out


def mmd_floor(agent, obs) -> dict:
    """BEAR's own MMD at the data's states: the policy against the VAE (what the constraint measures), and
    the VAE against an independent draw of itself (the estimator's floor: no policy can get below it)."""
    import bear

    g = torch.Generator().manual_seed(0)
    n, out = agent.n_mmd, {"policy_vs_vae": [], "vae_vs_vae": []}
    with torch.no_grad():
        for o in obs.split(1000):
            s = o.repeat_interleave(n, dim=0)
            u1, u2 = (agent.vae.decode_pre_tanh(s, generator=g).view(o.shape[0], n, -1) for _ in range(2))
            _, u_pi = agent.actor.sample(o, n, agent.noise_clip, generator=g)
            out["policy_vs_vae"].append(bear.mmd(u1, u_pi, agent.kernel, agent.sigma))
            out["vae_vs_vae"].append(bear.mmd(u1, u2, agent.kernel, agent.sigma))
    return {k: float(torch.cat(v).mean()) for k, v in out.items()}


def measure(act, obs, actions, neighbours) -> dict:
    with torch.no_grad():
        pi = torch.cat([act(o) for o in obs.split(1000)])
    to_logged = (pi - actions).abs().sum(-1)
    to_nearest = (pi.unsqueeze(1) - actions[neighbours]).abs().sum(-1).min(dim=1).values
    return {"to_logged": float(to_logged.mean()), "to_nearest": float(to_nearest.mean()),
            "off_support": float((to_nearest > OFF).float().mean())}


def collect(roots: list) -> dict:
    from common.datasets import load_dataset

    torch.manual_seed(0)
    data = load_dataset(DATASET, "cpu", verbose=False)
    obs = data.normalize_obs(data.observations)
    # the K nearest dataset states of each state, itself included
    neighbours = torch.cat([torch.cdist(o, obs).topk(K, largest=False).indices for o in obs.split(1000)])
    runs = {}
    for name in ("bear", "bcq", "td3_bc"):
        found = sorted(p for root in roots for p in root.rglob(f"{name}.pt"))
        found = [p for p in found if f"__{name}__1__" in p.parent.name]  # seed 1
        if not found:
            sys.exit(f"error: no {name}.pt of seed 1 under {', '.join(map(str, roots))}")
        runs[name] = found[-1].parent
    rows = {}
    mmds = {}
    for name, (act, summary, agent) in policies(runs, data).items():
        rows[name] = {**measure(act, obs, data.actions, neighbours), "score": summary["final_normalized_score"],
                      "steps": summary["steps"], "run": runs[name].name}
        if name == "bear":
            mmds = {**mmd_floor(agent, obs), "epsilon": agent.epsilon, "kernel": agent.kernel, "sigma": agent.sigma,
                    "samples": agent.n_mmd, "final_alpha": float(agent.log_alpha.detach().exp())}
    g = torch.Generator().manual_seed(0)
    uniform = lambda o: data.action_low + (data.action_high - data.action_low) * torch.rand(  # noqa: E731
        o.shape[0], data.act_dim, generator=g)
    rows["uniform random"] = {**measure(uniform, obs, data.actions, neighbours), "score": 0.0, "steps": 0, "run": ""}
    return {"dataset": DATASET, "K": K, "off_threshold": OFF, "default_runs": default_runs(roots), "rows": rows,
            "bear_mmd": mmds}


def table(result: dict) -> str:
    """Prints the default runs' table; returns the support table."""
    runs = result["default_runs"]
    print("| seed | evaluations (every 1,000 steps) | final (step 4,000) | best | MMD | alpha | critic loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        print(f"| {r['seed']} | {', '.join(f'{x:.1f}' for x in r['scores'])} | {r['final']:.1f} | {r['best']:.1f} "
              f"| {', '.join(f'{x:.3f}' for x in r['mmd'])} | {', '.join(f'{x:.0f}' for x in r['alpha'])} "
              f"| {', '.join(f'{x:.2f}' for x in r['critic_loss'])} |")
    finals, bests = np.array([r["final"] for r in runs]), np.array([r["best"] for r in runs])
    print(f"| mean ± std | | **{finals.mean():.1f} ± {finals.std():.1f}** | {bests.mean():.1f} ± {bests.std():.1f} | | | |")
    print()
    lines = ["| policy | final score (seed 1) | to logged a | to nearest in data | off support |",
             "| --- | --- | --- | --- | --- |"]
    for name, r in result["rows"].items():
        score = f"{r['score']:.1f}" if r["steps"] else "0 (by definition)"
        lines.append(f"| {name} | {score} | {r['to_logged']:.3f} | {r['to_nearest']:.3f} | {100 * r['off_support']:.1f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--collect", type=Path, nargs="+", help="folders holding the runs (searched recursively)")
    args = p.parse_args()
    if args.collect:
        result = collect(args.collect)
        DATA.parent.mkdir(parents=True, exist_ok=True)
        DATA.write_text(json.dumps(result, indent=2) + "\n")
    result = json.loads(DATA.read_text())
    print(table(result))
    m = result["bear_mmd"]
    print(f"\nBEAR's MMD ({m['kernel']}, sigma {m['sigma']:g}, {m['samples']} samples) over the data's states: policy vs VAE "
          f"{m['policy_vs_vae']:.3f}, VAE vs VAE {m['vae_vs_vae']:.3f}, epsilon {m['epsilon']:g}; final alpha {m['final_alpha']:.1f}")
