"""TD3+BC: TD3 whose actor is also pulled towards the dataset's actions, offline RL in a few lines.

Paper: Fujimoto, Gu, "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021,
https://arxiv.org/abs/2106.06860. Defaults follow the paper, its code (github.com/sfujim/TD3_BC,
TD3_BC.py and main.py) and CORL's td3_bc.py (Tarasov et al., "CORL: Research-oriented Deep Offline
RL Library", 2022). TD3 itself: Fujimoto, van Hoof, Meger, "Addressing Function Approximation Error
in Actor-Critic Methods", ICML 2018.

TD3 trains twin critics towards a clipped double-Q target and a deterministic actor that climbs the
first critic. Offline, that climb ends at actions the data never shows, where Q is extrapolation.
TD3+BC changes one line: the actor's objective also pays the squared distance to the dataset's action,
and Q's term is rescaled by lambda, so that the two terms keep the same proportion whatever the
scale of the rewards. States are normalised with the dataset's mean and std (every script does).

    pi = argmax_pi E_{(s,a)~D} [ lambda Q(s, pi(s)) - (pi(s) - a)^2 ],   lambda = alpha / ((1/N) sum_i |Q(s_i, a_i)|)
    y = r + gamma (1 - d) min_{j=1,2} Q_theta'_j(s', clip(pi_phi'(s') + clip(eps, -c, c), low, high)),  eps ~ N(0, sigma^2)
    L(theta_j) = E_{(s,a,r,s')~D} [ (y - Q_theta_j(s,a))^2 ],  j = 1, 2

The actor and the target networks are updated every `policy_freq` critic steps (TD3's delay). The
noise sigma, c and the BC term's pi(s) - a are measured in half-widths of the action range (the
paper's units on its [-1, 1] boxes).

Run `python td3_bc.py --help` for the flags; docs/td3_bc.md maps the objective to the lines below.
"""

import copy
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
    total_steps: int = 20_000
    """gradient steps of the critics (paper and CORL: 1M on D4RL; 20k, about 2.5 minutes of one CPU core, for the
    default data)"""
    batch_size: int = 256
    """transitions per gradient step (paper; CORL)"""
    eval_freq: int = 5_000
    """evaluate every this many gradient steps"""
    eval_episodes: int = 10
    """episodes per evaluation, run side by side in a vector env"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass)"""

    # Algorithm-specific arguments
    learning_rate: float = 3e-4
    """Adam learning rate of the actor and of the critics, each with its own Adam (paper's code; CORL)"""
    hidden_dim: int = 256
    """width of the two hidden layers of the actor and of each critic (paper's code; CORL: 2x256)"""
    gamma: float = 0.99
    """the discount factor gamma (paper's code: `discount`; CORL)"""
    tau: float = 5e-3
    """target network update rate: theta' <- tau theta + (1 - tau) theta' (paper's code; CORL)"""
    alpha: float = 2.5
    """weight of Q in the actor's loss: lambda = alpha / mean |Q| (paper and its code: 2.5); 0 gives plain BC.
    The BC term is measured in half-widths of the action range: on a box [-m, m] the paper's code with
    alpha equals this script with alpha / m^2. On the default Pendulum data 2.5 stays near BC and 10
    does far better; on expert data 10 does far worse (docs/td3_bc.md, Results)"""
    policy_noise: float = 0.2
    """std sigma of the target policy smoothing noise, in half-widths of the action range (paper's code
    multiplies it by max_action, the half-width of a symmetric box; CORL)"""
    noise_clip: float = 0.5
    """the noise is clipped to [-c, c], c = noise_clip half-widths of the action range (paper's code; CORL)"""
    policy_freq: int = 2
    """update the actor and the target networks once every this many critic steps (TD3's delay; paper's code)"""


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
    for name in ("hidden_dim", "policy_freq"):
        if getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    if not args.learning_rate > 0:
        errors.append(f"--learning-rate must be positive (got {args.learning_rate})")
    for name in ("alpha", "policy_noise", "noise_clip"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) >= 0):
            errors.append(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))


def mlp(in_dim: int, out_dim: int, hidden_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )


class Actor(nn.Module):
    """The deterministic policy pi_phi(s): an MLP, tanh-squashed, then scaled to the action bounds."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, action_low, action_high):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden_dim)
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs)) * self.action_scale + self.action_bias


class TwinQ(nn.Module):
    """Q_theta1(s,a) and Q_theta2(s,a), two independent MLPs on the concatenation (s, a)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int):
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, 1, hidden_dim)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden_dim)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor):
        x = torch.cat([obs, actions], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def q1_value(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_theta1(s,a) alone: the actor climbs the first critic only (TD3)."""
        return self.q1(torch.cat([obs, actions], dim=-1)).squeeze(-1)


# ALGO LOGIC: the losses and the target a student writes (course/make_assignment.py cuts the SOLUTION
# bodies out), the Polyak update, and one training iteration
def td3_bc_actor_loss(q_pi: torch.Tensor, pi_actions: torch.Tensor, actions: torch.Tensor,
                      alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The actor's loss: TD3's "climb Q" term, rescaled by lambda, plus behaviour cloning. Minimising

        L(phi) = -lambda E_{s~D}[ Q_theta1(s, pi_phi(s)) ] + E_{(s,a)~D}[ (pi_phi(s) - a)^2 ],
        lambda = alpha / ( (1/N) sum_i |Q_theta1(s_i, pi_phi(s_i))| )

    maximises the paper's E[ lambda Q(s, pi(s)) - (pi(s) - a)^2 ].
    q_pi: (B,), Q_theta1(s, pi_phi(s)), the first critic at the actor's actions (the gradient reaches
    the actor through it); pi_actions: (B, act_dim), pi_phi(s); actions: (B, act_dim), the dataset's a
    (TD3BC.update_actor passes both in half-widths of the action range); alpha: 2.5 in the paper.
    lambda is a number, not a function of phi: no gradient flows through it. The paper writes lambda
    with Q at the batch's (s_i, a_i); its code, followed here, averages |Q| over the same q_pi. The
    squared error is averaged over the batch and the action dimensions (F.mse_loss, as in the paper's
    code). Returns (loss, lambda, the behaviour-cloning term), three scalars."""
    # BEGIN SOLUTION
    # lambda = alpha / mean |Q|, a constant
    lmbda = alpha / q_pi.abs().mean().detach()
    # (pi(s) - a)^2
    bc = ((pi_actions - actions) ** 2).mean()
    return -lmbda * q_pi.mean() + bc, lmbda, bc
    # END SOLUTION


def td3_target(rewards: torch.Tensor, terminals: torch.Tensor, next_obs: torch.Tensor, noise: torch.Tensor,
               actor_target, critic_target, noise_clip, action_low: torch.Tensor, action_high: torch.Tensor,
               gamma: float) -> torch.Tensor:
    """TD3's target for both critics: target policy smoothing, then clipped double Q:

        a' = clip( pi_phi'(s') + clip(eps, -c, c), low, high )
        y  = r + gamma (1 - d) min( Q_theta'_1(s', a'), Q_theta'_2(s', a') )

    rewards r, terminals d: (B,), d = 1.0 only where the episode terminated at s' (a time-limit
    truncation still bootstraps); next_obs: (B, obs_dim), s'; noise: (B, act_dim), eps, already drawn
    from N(0, sigma^2); actor_target: the target actor pi_phi', (B, obs_dim) -> (B, act_dim);
    critic_target: the target critics, (s', a') -> the pair (Q_theta'_1(s', a'), Q_theta'_2(s', a')),
    each (B,); noise_clip: c, a float or (act_dim,); action_low, action_high: (act_dim,), the action
    box. The caller runs it under torch.no_grad(). Returns y, (B,)."""
    # BEGIN SOLUTION
    # a' = clip(pi'(s') + clip(eps, -c, c), low, high)
    next_actions = (actor_target(next_obs) + noise.clamp(-noise_clip, noise_clip)).clamp(action_low, action_high)
    # min_j Q'_j(s', a')
    q_next = torch.minimum(*critic_target(next_obs, next_actions))
    # y = r + gamma (1 - d) min_j Q'_j(s', a')
    return rewards + gamma * (1.0 - terminals) * q_next
    # END SOLUTION


@torch.no_grad()
def polyak_update(target_params: list[torch.Tensor], online_params: list[torch.Tensor], tau: float) -> None:
    """theta' <- tau theta + (1 - tau) theta', in place, for every target tensor theta' and its online
    twin theta (the lists are in the same order). tau: the update rate, 5e-3 by default."""
    # BEGIN SOLUTION
    for target, online in zip(target_params, online_params):
        # theta' + tau (theta - theta') = tau theta + (1 - tau) theta'
        target.lerp_(online, tau)
    # END SOLUTION


class TD3BC:
    """The actor and twin critics, their target copies, one Adam for the actor and one for both
    critics (the paper's code), and one training iteration of the paper's code: a critic step at every
    call, an actor step and a target update at every `policy_freq`-th."""

    def __init__(self, obs_dim: int, act_dim: int, args: Args, action_low, action_high, device):
        self.gamma, self.tau, self.alpha, self.policy_freq = args.gamma, args.tau, args.alpha, args.policy_freq
        self.actor = Actor(obs_dim, act_dim, args.hidden_dim, action_low, action_high).to(device)
        self.critic = TwinQ(obs_dim, act_dim, args.hidden_dim).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # fused: one kernel for all of a network's tensors instead of a loop over them; the step is bound
        # by per-call overhead at these sizes (6% more steps per CPU-second, docs/td3_bc.md)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.learning_rate, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=args.learning_rate, fused=True)
        # sigma and c in action units: the paper's code multiplies both by max_action, the half-width of
        # its symmetric boxes; here by each dimension's half-width, so asymmetric boxes work too
        self.noise_std = args.policy_noise * self.actor.action_scale
        self.noise_clip = args.noise_clip * self.actor.action_scale
        self.action_low = self.actor.action_bias - self.actor.action_scale
        self.action_high = self.actor.action_bias + self.actor.action_scale
        # the tensors of the Polyak update and of the actor's backward, listed once
        self.online_params = [*self.actor.parameters(), *self.critic.parameters()]
        self.target_params = [*self.actor_target.parameters(), *self.critic_target.parameters()]
        self.actor_params = list(self.actor.parameters())
        self.total_it = 0
        self.actor_metrics = {}  # the last actor step's, reported at the steps between actor steps

    def update_critic(self, obs, actions, rewards, next_obs, terminals) -> dict:
        """One step of both critics towards the TD3 target; returns the loss, mean Q_1(s,a) and mean y."""
        with torch.no_grad():
            # eps ~ N(0, sigma^2)
            noise = torch.randn_like(actions) * self.noise_std
            # y = r + gamma (1 - d) min_j Q'_j(s', clip(pi'(s') + clip(eps, -c, c), low, high))
            y = td3_target(rewards, terminals, next_obs, noise, self.actor_target, self.critic_target,
                           self.noise_clip, self.action_low, self.action_high, self.gamma)
        q1, q2 = self.critic(obs, actions)
        # L(theta) = E[ (y - Q_theta1(s,a))^2 ] + E[ (y - Q_theta2(s,a))^2 ]
        loss = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        return {"losses/critic_loss": loss.detach(), "values/q": q1.detach().mean(), "values/target_q": y.mean()}

    def update_actor(self, obs, actions) -> dict:
        """One step of the actor on the TD3+BC loss; the critics' weights are left alone."""
        pi = self.actor(obs)
        # Q_theta1(s, pi_phi(s))
        q_pi = self.critic.q1_value(obs, pi)
        # L(phi) = -lambda E[ Q_theta1(s, pi(s)) ] + E[ (pi(s) - a)^2 ],  lambda = alpha / mean |Q|, with
        # pi(s) - a in half-widths of the action range: the paper's term on its [-1, 1] boxes, and the
        # same balance of the two terms on any other box (Pendulum's [-2, 2] would weigh BC 4x)
        scale = self.actor.action_scale
        loss, lmbda, bc = td3_bc_actor_loss(q_pi, pi / scale, actions / scale, self.alpha)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=self.actor_params)  # gradients for the actor only, none for the critics
        self.actor_optimizer.step()
        return {"losses/actor_loss": loss.detach(), "losses/bc_loss": bc.detach(),
                "values/q_pi": q_pi.detach().mean(), "values/lambda": lmbda.detach()}

    def update(self, obs, actions, rewards, next_obs, terminals) -> dict:
        """One training iteration on a batch. Returns detached tensors (no device sync)."""
        self.total_it += 1
        # 1. theta_j <- theta_j - lr grad L(theta_j), j = 1, 2
        metrics = self.update_critic(obs, actions, rewards, next_obs, terminals)
        if self.total_it % self.policy_freq == 0:  # TD3's delayed policy updates
            # 2. phi <- phi - lr grad L(phi)
            self.actor_metrics = self.update_actor(obs, actions)
            # 3. theta'_j <- tau theta_j + (1 - tau) theta'_j,  phi' <- tau phi + (1 - tau) phi'
            polyak_update(self.target_params, self.online_params, self.tau)
        return {**metrics, **self.actor_metrics}


# TRY NOT TO MODIFY: evaluation, checkpoints and logging (the same in every script)
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
        checkpoint = load_checkpoint(args.eval_checkpoint, "td3_bc", ("actor", "critic"), device)
        args.dataset_id = checkpoint["args"]["dataset_id"]
    try:
        data = load_dataset(args.dataset_id, device)
        if args.eval_env_kwargs is not None:  # a dynamics-shift test: evaluation only, the data stay
            data.set_eval_env_kwargs(json.loads(args.eval_env_kwargs))
    except DatasetError as e:
        sys.exit(f"error: {e}")

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

    if checkpoint is not None:  # --eval-checkpoint: evaluate the saved policy, then exit
        actor = Actor(data.obs_dim, data.act_dim, checkpoint["args"]["hidden_dim"], data.action_low,
                      data.action_high).to(device)
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

    agent = TD3BC(data.obs_dim, data.act_dim, args, data.action_low, data.action_high, device)
    actor = agent.actor
    # Normalise once (the paper's states normalisation, with the loader's mean and std): the hot loop
    # only indexes.
    observations = data.normalize_obs(data.observations)
    next_observations = data.normalize_obs(data.next_observations)
    actions, rewards, terminals = data.actions, data.rewards, data.terminals

    history, best_score, train_time, evaluations = [], -math.inf, 0.0, 0
    t_start = t_log = t_print = time.time()
    print(f"Training TD3+BC on {args.dataset_id} for {args.total_steps} steps on {device} ({run_dir})")
    for step in range(1, args.total_steps + 1):
        idx = torch.randint(0, data.size, (args.batch_size,), device=device)
        # the critics, then every policy_freq steps the actor and the targets (TD3BC.update)
        metrics = agent.update(observations[idx], actions[idx], rewards[idx], next_observations[idx], terminals[idx])

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps
        if step % 1000 == 0 or evaluate_now:  # .item() syncs with the device: only at logging steps
            values = dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))
            for name, value in values.items():
                writer.add_scalar(name, value, step)
            now = time.time()
            train_time += now - t_log
            t_log = now
            sps = round(step / train_time, 1)
            writer.add_scalar("charts/SPS", sps, step)
            losses = (f"Q {values['losses/critic_loss']:.4f} "
                      f"pi {values.get('losses/actor_loss', math.nan):.4f}")  # nan: no actor step yet
            if now - t_print > 15 and not evaluate_now:  # a sign of life between evaluations
                print(f"step {step}/{args.total_steps} | SPS {sps} | {losses}", flush=True)
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
            print(f"step {step}/{args.total_steps} | SPS {sps} | {losses} | {score_text(returns, scores)}",
                  flush=True)
            if args.save_model:
                save_checkpoint(os.path.join(run_dir, f"{args.exp_name}.pt"), {
                    "algorithm": "td3_bc", "actor": actor.state_dict(), "actor_target": agent.actor_target.state_dict(),
                    "critic": agent.critic.state_dict(), "critic_target": agent.critic_target.state_dict(),
                    "args": asdict(args), "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    write_summary(run_dir, data, {
        "algorithm": "td3_bc", "dataset_id": args.dataset_id, "seed": args.seed, "steps": args.total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
    })
    writer.close()
