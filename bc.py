"""Behaviour cloning (BC): supervised learning of the dataset's actions, the baseline of offline RL.

Paper: Pomerleau, "Efficient Training of Artificial Neural Networks for Autonomous Navigation",
Neural Computation 1991. Filtered ("x% BC", `--top-fraction`): Chen et al., "Decision Transformer",
2021, https://arxiv.org/abs/2106.01345, and Kostrikov et al., "Offline RL with Implicit Q-Learning",
2022, https://arxiv.org/abs/2110.06169 (the 10% BC column).

BC ignores the rewards: it regresses the policy on the dataset's actions, so at best it matches the
policy that collected the data. Every offline RL algorithm must beat it, and on good data it is hard
to beat. Filtered BC clones only the episodes with the highest returns.

    pi = argmin_pi E_{(s,a)~D} [ || pi(s) - a ||^2 ]

Run `python bc.py --help` for the flags; docs/bc.md maps the objective to the lines below.
"""

import ctypes
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter

from common.datasets import DEFAULT_DATASET_ID, DatasetError, OfflineDataset, load_dataset


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (network init, batches, evaluation start states)"""
    torch_deterministic: bool = True
    """sets `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """use CUDA when available (falls back to the CPU, saying so)"""
    track: bool = False
    """also log to Weights and Biases (needs `pip install wandb`); TensorBoard is always on"""
    wandb_project_name: str = "offline-rl"
    """the W&B project, with --track"""
    wandb_entity: Optional[str] = None
    """the W&B entity (team), with --track"""
    capture_video: bool = False
    """record videos of evaluation episodes under runs/{run_name}/videos"""
    save_model: bool = False
    """save a checkpoint to runs/{run_name}/{exp_name}.pt at each evaluation and at the end"""
    eval_checkpoint: Optional[str] = None
    """evaluate this checkpoint (a .pt file written by --save-model) and exit, without training"""
    dataset_id: str = DEFAULT_DATASET_ID
    """Minari dataset id: a local one (built on the spot if missing) or a remote one like mujoco/hopper/medium-v0"""
    total_steps: int = 50_000
    """gradient steps (CORL uses 1M on D4RL; 50k suffice for the default Pendulum data)"""
    batch_size: int = 256
    """transitions per gradient step (CORL)"""
    eval_freq: int = 5_000
    """evaluate every this many gradient steps"""
    eval_episodes: int = 10
    """episodes per evaluation, run side by side in a vector env"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass)"""

    # Algorithm-specific arguments
    learning_rate: float = 3e-4
    """Adam learning rate (CORL)"""
    hidden_dim: int = 256
    """width of the two hidden layers of the policy (CORL: 2x256)"""
    top_fraction: float = 1.0
    """clone only this fraction of the episodes, those with the highest returns (0.1 = "10% BC"); 1.0 = plain BC"""


def common_arg_errors(args) -> list[str]:
    """The checks of the flags every script shares (kept identical in every file)."""
    errors = []
    for name in ("total_steps", "batch_size", "eval_freq", "eval_episodes"):
        if getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    for name in ("gamma", "tau"):  # discount in [0, 1), Polyak rate in (0, 1], where a script has them
        value = getattr(args, name, None)
        if name == "gamma" and value is not None and not 0.0 <= value < 1.0:
            errors.append(f"--gamma must be in [0, 1) (got {value})")
        if name == "tau" and value is not None and not 0.0 < value <= 1.0:
            errors.append(f"--tau must be in (0, 1] (got {value})")
    if args.eval_env_kwargs is not None:
        try:
            if not isinstance(json.loads(args.eval_env_kwargs), dict):
                raise ValueError("not an object")
        except ValueError as e:
            errors.append(f"--eval-env-kwargs must be a JSON object like '{{\"m\": 1.3}}' (got {args.eval_env_kwargs!r}: {e})")
    if args.eval_checkpoint is not None and not os.path.isfile(args.eval_checkpoint):
        errors.append(f"--eval-checkpoint: no such file '{args.eval_checkpoint}'")
    return errors


def check_args(args: Args) -> None:
    """Bad flags fail here, before anything is written."""
    errors = common_arg_errors(args)
    if args.hidden_dim <= 0:
        errors.append(f"--hidden-dim must be positive (got {args.hidden_dim})")
    if not args.learning_rate > 0:
        errors.append(f"--learning-rate must be positive (got {args.learning_rate})")
    if not 0.0 < args.top_fraction <= 1.0:
        errors.append(f"--top-fraction must be in (0, 1] (got {args.top_fraction})")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))


class Actor(nn.Module):
    """Deterministic MLP policy, tanh-squashed then scaled to the action bounds."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, action_low, action_high):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, act_dim),
        )
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs)) * self.action_scale + self.action_bias


# ALGO LOGIC: the loss a student writes (course/make_assignment.py cuts the SOLUTION bodies out)
def bc_loss(pred_actions: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """L(pi) = E_{(s,a)~D} || pi(s) - a ||^2: the mean over the batch of the squared error, averaged over
    the action dimensions too (F.mse_loss's convention; a constant factor 1/act_dim).
    pred_actions, actions: (B, act_dim)."""
    # BEGIN SOLUTION
    return ((pred_actions - actions) ** 2).mean()
    # END SOLUTION


# TRY NOT TO MODIFY: data selection, evaluation, checkpoints and logging (the same in every script)
def top_episode_transitions(data: OfflineDataset, fraction: float) -> torch.Tensor:
    """Indices of the transitions of the ceil(fraction * E) episodes with the highest returns: whole
    episodes ranked by return, as CORL's filtered BC does (the DT paper's "%BC" instead keeps the top
    fraction of timesteps ranked by their episode's return)."""
    k = max(1, math.ceil(fraction * data.num_episodes - 1e-9))
    episodes = torch.argsort(data.episode_returns, descending=True, stable=True)[:k]
    return torch.cat([
        torch.arange(int(data.episode_starts[e]), int(data.episode_starts[e] + data.episode_lengths[e]),
                     device=data.observations.device)
        for e in episodes
    ])


def evaluation_seeds(seed: int, evaluation: int, episodes: int) -> list[int]:
    """Fresh start states at each evaluation, reproducible from (seed, evaluation index)."""
    return [int(s) for s in np.random.SeedSequence([seed, evaluation]).generate_state(episodes)]


@torch.no_grad()
def evaluate(policy, data: OfflineDataset, seeds: list[int], device, video_dir: Optional[str] = None):
    """Roll out `policy` (normalised obs tensor -> action tensor) deterministically, one episode per
    seed, all side by side. Returns (raw returns, normalised scores or None)."""

    def make(i):
        def thunk():
            env = data.make_eval_env(render_mode="rgb_array" if video_dir and i == 0 else None)
            if video_dir and i == 0:
                env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)
            return env
        return thunk

    envs = gym.vector.SyncVectorEnv([make(i) for i in range(len(seeds))])
    obs, _ = envs.reset(seed=seeds)
    returns = np.zeros(len(seeds))
    done = np.zeros(len(seeds), dtype=bool)
    while not done.all():
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
        action = policy(data.normalize_obs(obs_t)).cpu().numpy().astype(envs.single_action_space.dtype)
        obs, reward, terminated, truncated, _ = envs.step(action)
        returns += np.where(done, 0.0, reward)  # an env that finished keeps its first episode's return
        done |= terminated | truncated
    envs.close()
    return returns, data.normalized_score(returns)


def save_checkpoint(path: str, checkpoint: dict) -> None:
    """Write to a temporary name, then rename: a crash never leaves half a file."""
    torch.save(checkpoint, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path: str, algorithm: str, keys: tuple[str, ...], device) -> dict:
    """Read a checkpoint that `algorithm`'s --save-model wrote; anything else exits with a clear error
    before a run directory exists. weights_only=True: tensors and plain containers, never code."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # not a torch file, a truncated one, or one holding pickled objects
        sys.exit(f"error: '{path}' is not a checkpoint of {algorithm}.py: torch cannot read it "
                 f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    written_by = checkpoint.get("algorithm") if isinstance(checkpoint, dict) else None
    if written_by is not None and written_by != algorithm:
        sys.exit(f"error: '{path}' is a checkpoint of {written_by}.py, not of {algorithm}.py: "
                 f"evaluate it with `python {written_by}.py --eval-checkpoint {path}`")
    missing = [k for k in (*keys, "args", "obs_mean", "obs_std", "eval_seeds")
               if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        sys.exit(f"error: '{path}' is not a checkpoint of {algorithm}.py (it lacks {', '.join(missing)})")
    return checkpoint


def write_summary(run_dir: str, data: OfflineDataset, summary: dict) -> None:
    # the reference returns behind every normalised score in it: the report pools runs that share them
    summary = {**summary, "ref_min_score": data.ref_min_score, "ref_max_score": data.ref_max_score}
    with open(os.path.join(run_dir, "summary.json.tmp"), "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(os.path.join(run_dir, "summary.json.tmp"), os.path.join(run_dir, "summary.json"))
    print(json.dumps(summary, indent=2))


def exit_on_unimplemented_exercise(exc_type, exc, tb) -> None:
    """sys.excepthook: a course exercise still to write ends the run with its own message."""
    if issubclass(exc_type, NotImplementedError):
        print(f"error: {exc}", file=sys.stderr)
    else:
        sys.__excepthook__(exc_type, exc, tb)


def keep_freed_memory() -> bool:
    """glibc only (elsewhere a no-op): keep freed blocks up to 32 MiB in the heap instead of handing them
    back to the OS, which costs page faults when the next step asks for them again (docs/benchmarks.md).
    The same as exporting MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824.
    Returns whether both settings took."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # raises AttributeError where the C library is not glibc
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
    return libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**30) == 1


def score_text(returns, scores) -> str:
    text = f"return {returns.mean():.1f}"
    return text + (f" | normalized score {scores.mean():.1f}" if scores is not None else "")


if __name__ == "__main__":
    sys.excepthook = exit_on_unimplemented_exercise
    keep_freed_memory()
    args = tyro.cli(Args)
    check_args(args)
    if args.track:
        try:
            import wandb
        except ImportError:
            sys.exit("error: --track needs Weights and Biases: pip install wandb")

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if args.cuda and not torch.cuda.is_available():
        print("CUDA is not available: running on the CPU.")
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    checkpoint = None
    if args.eval_checkpoint:
        checkpoint = load_checkpoint(args.eval_checkpoint, "bc", ("actor",), device)
        args.dataset_id = checkpoint["args"]["dataset_id"]
    try:
        data = load_dataset(args.dataset_id, device)
        if args.eval_env_kwargs is not None:  # a dynamics-shift test: evaluation only, the data stay
            data.set_eval_env_kwargs(json.loads(args.eval_env_kwargs))
    except DatasetError as e:
        sys.exit(f"error: {e}")
    if args.eval_checkpoint is None and args.top_fraction < 1.0:
        keep = top_episode_transitions(data, args.top_fraction)
        print(f"Filtered BC: cloning the top {args.top_fraction:.0%} episodes ({keep.numel()} transitions).")
    else:
        keep = None
    n_keep = data.size if keep is None else keep.numel()

    run_name = f"{args.dataset_id}__{args.exp_name}__{args.seed}__{int(time.time())}".replace("/", "-")
    run_dir = os.path.join("runs", run_name)
    writer = SummaryWriter(run_dir)
    writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])),
    )
    if args.track:
        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                   config=vars(args), name=run_name, save_code=True)
    video_dir = os.path.join(run_dir, "videos") if args.capture_video else None

    hidden_dim = checkpoint["args"]["hidden_dim"] if checkpoint else args.hidden_dim
    actor = Actor(data.obs_dim, data.act_dim, hidden_dim, data.action_low, data.action_high).to(device)

    if checkpoint is not None:  # --eval-checkpoint: evaluate the saved policy, then exit
        actor.load_state_dict(checkpoint["actor"])
        data.obs_mean, data.obs_std = checkpoint["obs_mean"].to(device), checkpoint["obs_std"].to(device)
        seeds = checkpoint["eval_seeds"]
        returns, scores = evaluate(actor, data, seeds, device, video_dir)
        print(f"{args.eval_checkpoint}: {score_text(returns, scores)}")
        write_summary(run_dir, data, {
            "dataset_id": args.dataset_id, "checkpoint": args.eval_checkpoint, "eval_seeds": seeds,
            "returns": returns.tolist(), "return_mean": float(returns.mean()),
            "normalized_score": None if scores is None else float(scores.mean()),
            "reference": data.ref_source,
        })
        writer.close()
        sys.exit(0)

    optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate)
    # Normalise once: the hot loop only indexes.
    observations = data.normalize_obs(data.observations)
    actions = data.actions

    history, best_score, train_time, evaluations = [], -math.inf, 0.0, 0
    t_start = t_log = t_print = time.time()
    print(f"Training BC on {args.dataset_id} for {args.total_steps} steps on {device} ({run_dir})")
    for step in range(1, args.total_steps + 1):
        idx = torch.randint(0, n_keep, (args.batch_size,), device=device)
        if keep is not None:
            idx = keep[idx]
        # L(pi) = E_{(s,a)~D} || pi(s) - a ||^2
        loss = bc_loss(actor(observations[idx]), actions[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps
        if step % 1000 == 0 or evaluate_now:  # .item() syncs with the device: only at logging steps
            writer.add_scalar("losses/actor_loss", loss.item(), step)
            now = time.time()
            train_time += now - t_log
            t_log = now
            sps = round(step / train_time, 1)
            writer.add_scalar("charts/SPS", sps, step)
            if now - t_print > 15 and not evaluate_now:  # a sign of life between evaluations
                print(f"step {step}/{args.total_steps} | SPS {sps} | loss {loss.item():.4f}", flush=True)
                t_print = now

        if evaluate_now:
            seeds = evaluation_seeds(args.seed, evaluations, args.eval_episodes)
            evaluations += 1
            actor.eval()
            returns, scores = evaluate(actor, data, seeds, device, video_dir)
            actor.train()
            writer.add_scalar("eval/episodic_return", returns.mean(), step)
            if scores is not None:
                writer.add_scalar("eval/normalized_score", scores.mean(), step)
                best_score = max(best_score, float(scores.mean()))
            history.append([step, float(returns.mean()), None if scores is None else float(scores.mean())])
            print(f"step {step}/{args.total_steps} | SPS {sps} | loss {loss.item():.4f} | {score_text(returns, scores)}",
                  flush=True)
            if args.save_model:
                save_checkpoint(os.path.join(run_dir, f"{args.exp_name}.pt"), {
                    "algorithm": "bc", "actor": actor.state_dict(), "args": asdict(args),
                    "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    write_summary(run_dir, data, {
        "algorithm": "bc", "dataset_id": args.dataset_id, "seed": args.seed, "steps": args.total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
    })
    writer.close()
