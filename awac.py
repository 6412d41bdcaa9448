"""Advantage-Weighted Actor-Critic (AWAC): an off-policy critic and a policy that clones the data's
actions weighted by their advantage; trains offline, then can keep training online.

Paper: Nair, Gupta, Dalal, Levine, "AWAC: Accelerating Online Reinforcement Learning with Offline
Datasets", 2020, https://arxiv.org/abs/2006.09359. Defaults follow CORL's offline `awac.py` and its
D4RL locomotion configs (Tarasov et al., "CORL: Research-oriented Deep Offline RL Library", 2022).

The critic is fitted as in SAC, to a target whose next action comes from the current policy. The
policy is never pushed along the critic's gradient, where an offline critic is least reliable:
it maximises the likelihood of the dataset's own actions, each weighted by exp(A(s,a) / lambda), so
that better-than-the-policy actions are cloned and worse ones are ignored. That is the closed-form
solution of "improve on the advantage while staying close to the data" (a KL constraint with
multiplier lambda), projected back onto the policy class. Because nothing in it is specific to the
offline data, the same update keeps running when fresh online transitions join the buffer
(`--online-steps`).

    y          = r + gamma (1 - d) min_j Q_hat_j(s', a'),   a' ~ pi_phi(.|s')
    L_Q(theta) = sum_j E_{(s,a,r,s')~D} [ ( Q_theta_j(s,a) - y )^2 ]
    A(s,a)     = min_j Q_j(s,a) - min_j Q_j(s, a~),          a~ ~ pi_phi(.|s)
    L_pi(phi)  = -E_{(s,a)~D} [ min( exp(A(s,a) / lambda), exp_adv_max ) log pi_phi(a|s) ]

Run `python awac.py --help` for the flags; docs/awac.md maps the objective to the lines below.
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
    """seed of the experiment (network init, batches, evaluation start states, the online env)"""
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
    total_steps: int = 10_000
    """offline gradient steps (CORL: 1M on D4RL; 10k for the default Pendulum data: about 3 min of one CPU core)"""
    batch_size: int = 256
    """transitions per gradient step (CORL; the paper's code: 1024)"""
    eval_freq: int = 2_000
    """evaluate every this many gradient steps (offline and online steps count alike)"""
    eval_episodes: int = 10
    """episodes per evaluation, run side by side in a vector env"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass);
    evaluation only: the --online-steps phase collects its data in the dataset's own env, unchanged"""

    # Algorithm-specific arguments
    learning_rate: float = 3e-4
    """Adam learning rate of the actor and of the critics (CORL; the paper's code)"""
    hidden_dim: int = 256
    """width of every hidden layer, actor and critics (CORL; the paper's code)"""
    actor_layers: int = 3
    """hidden layers of the actor (CORL: 3; the paper's code: 4)"""
    critic_layers: int = 3
    """hidden layers of each critic (CORL: 3; the paper's code: 2)"""
    gamma: float = 0.99
    """the discount factor gamma (CORL; the paper's code)"""
    tau: float = 5e-3
    """target critics' Polyak rate: Q_hat <- (1 - tau) Q_hat + tau Q (CORL; the paper's code)"""
    awac_lambda: float = 1.0
    """temperature lambda of the weights exp(A / lambda): smaller follows the advantage more greedily, larger
    stays closer to plain behaviour cloning (CORL's awac.py default: 1.0; its D4RL configs: 0.3333 on
    locomotion, 0.1 on Adroit and AntMaze)"""
    exp_adv_max: float = 100.0
    """the weights exp(A / lambda) are clipped at this value (CORL)"""
    online_steps: int = 0
    """after the offline steps, this many iterations of one env step with the current (sampled) policy and one
    gradient step on the offline data plus the online transitions so far (the paper's fine-tuning; 0 = offline only)"""


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
    for name in ("hidden_dim", "actor_layers", "critic_layers"):
        if getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    for name in ("learning_rate", "awac_lambda", "exp_adv_max"):
        if not getattr(args, name) > 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    if args.online_steps < 0:
        errors.append(f"--online-steps must be non-negative (got {args.online_steps})")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))


def mlp(in_dim: int, out_dim: int, hidden_dim: int, layers: int) -> nn.Sequential:
    sizes = [in_dim] + [hidden_dim] * layers
    modules = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        modules += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*modules, nn.Linear(hidden_dim, out_dim))


class Actor(nn.Module):
    """pi_phi(a|s) = N(mu(s), diag(sigma^2)): mean tanh-bounded to the action box, log sigma a free
    parameter per action dimension (state-independent, as CORL's and the paper's code have it)."""

    LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # CORL's clip of log sigma

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, layers: int, action_low, action_high):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden_dim, layers)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.register_buffer("action_low", action_low.clone())
        self.register_buffer("action_high", action_high.clone())
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action mu(s): what evaluation executes."""
        return torch.tanh(self.net(obs)) * self.action_scale + self.action_bias

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """a ~ pi(.|s), clipped to the action box (CORL clips too). obs (B, obs_dim) -> (B, act_dim)."""
        log_std = self.log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
        a = self(obs) + log_std.exp() * torch.randn(obs.shape[0], log_std.shape[0], device=obs.device)
        return torch.maximum(torch.minimum(a, self.action_high), self.action_low)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of the given actions, summed over the action dimensions: (B,)."""
        log_std = self.log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
        # log N(a; mu, sigma^2) = sum_i [ -(a_i - mu_i)^2 / (2 sigma_i^2) - log sigma_i - log(2 pi) / 2 ]
        z = (actions - self(obs)) * torch.exp(-log_std)
        return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class TwinQ(nn.Module):
    """Q_theta1(s,a) and Q_theta2(s,a), two independent MLPs."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, layers: int):
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, 1, hidden_dim, layers)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden_dim, layers)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor):
        x = torch.cat([obs, actions], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


# ALGO LOGIC: the functions a student writes (course/make_assignment.py cuts the SOLUTION bodies out),
# the target update, and one gradient step of the critics and of the actor
def critic_target(actor: Actor, qf_target: TwinQ, rewards: torch.Tensor, next_obs: torch.Tensor,
                  terminals: torch.Tensor, gamma: float) -> torch.Tensor:
    """The critics' TD target, bootstrapping from an action the current policy samples in s' (no
    entropy term, as in CORL and the paper's code):

        y = r + gamma (1 - d) min( Q_hat_1(s', a'), Q_hat_2(s', a') ),   a' ~ pi_phi(.|s')

    actor: the policy, `actor.sample(obs)` draws one action per state, (B, act_dim); qf_target: the
    target critics, `qf_target(obs, actions)` returns (Q_hat_1, Q_hat_2), each (B,); rewards,
    terminals: (B,), d = 1 only where the episode terminated (a time-limit truncation still
    bootstraps); next_obs: (B, obs_dim). Called under torch.no_grad(): y is a constant. Returns (B,)."""
    # BEGIN SOLUTION
    next_actions = actor.sample(next_obs)
    next_q = torch.min(*qf_target(next_obs, next_actions))
    return rewards + gamma * (1.0 - terminals) * next_q
    # END SOLUTION


def awac_weights(advantage: torch.Tensor, awac_lambda: float, exp_adv_max: float) -> torch.Tensor:
    """The weight of each dataset action in the actor's loss, exponential in its advantage and clipped:

        w(s,a) = min( exp(A(s,a) / lambda), exp_adv_max )

    advantage: (B,), A(s,a); awac_lambda: the temperature lambda > 0; exp_adv_max: the clip (CORL:
    100). An action as good as the policy's (A = 0) weighs 1. Returns (B,)."""
    # BEGIN SOLUTION
    return torch.exp(advantage / awac_lambda).clamp(max=exp_adv_max)
    # END SOLUTION


def awac_actor_loss(weights: torch.Tensor, log_prob: torch.Tensor) -> torch.Tensor:
    """Weighted maximum likelihood of the dataset's actions, averaged over the batch:

        L_pi(phi) = -E_{(s,a)~D} [ w(s,a) log pi_phi(a|s) ]

    weights: (B,), w(s,a), constants (no gradient flows into them); log_prob: (B,), log pi_phi(a|s) of
    the dataset's actions, whose gradient this loss drives. Returns a scalar."""
    # BEGIN SOLUTION
    return -(weights * log_prob).mean()
    # END SOLUTION


@torch.no_grad()
def polyak_update(target_params: list[torch.Tensor], online_params: list[torch.Tensor], tau: float) -> None:
    """theta_hat <- (1 - tau) theta_hat + tau theta, for every tensor in one call: lerp_(theta, tau)
    computes theta_hat + tau (theta - theta_hat), the same thing."""
    torch._foreach_lerp_(target_params, online_params, tau)


class AWAC:
    """The networks, one Adam for the critics and one for the actor, and one gradient step of each, in
    CORL's order: the critics, then the actor with the critics just updated, then the targets."""

    def __init__(self, obs_dim: int, act_dim: int, args: Args, action_low, action_high, device):
        self.gamma, self.tau = args.gamma, args.tau
        self.awac_lambda, self.exp_adv_max = args.awac_lambda, args.exp_adv_max
        self.actor = Actor(obs_dim, act_dim, args.hidden_dim, args.actor_layers, action_low, action_high).to(device)
        self.qf = TwinQ(obs_dim, act_dim, args.hidden_dim, args.critic_layers).to(device)
        self.qf_target = copy.deepcopy(self.qf).requires_grad_(False)
        # Adam, lr 3e-4 (CORL); Adam is per parameter, so one for both critics equals CORL's two
        self.q_optimizer = torch.optim.Adam(self.qf.parameters(), lr=args.learning_rate)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.learning_rate)
        # the Polyak update's tensors, listed once rather than at every step
        self.target_params, self.online_params = list(self.qf_target.parameters()), list(self.qf.parameters())

    def update_critic(self, obs, actions, rewards, next_obs, terminals):
        """One step of both critics on L_Q; returns the loss and Q_1(s,a) (detached)."""
        with torch.no_grad():
            # y = r + gamma (1 - d) min_j Q_hat_j(s', a'),  a' ~ pi(.|s')
            y = critic_target(self.actor, self.qf_target, rewards, next_obs, terminals, self.gamma)
        q1, q2 = self.qf(obs, actions)
        # L_Q = sum_j E[ (Q_j(s,a) - y)^2 ]
        loss = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
        self.q_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.q_optimizer.step()
        return loss.detach(), q1.detach()

    def update_actor(self, obs, actions):
        """One step of pi on L_pi; returns the loss, the advantages and the weights."""
        with torch.no_grad():
            # A(s,a) = min_j Q_j(s,a) - min_j Q_j(s, a~),  a~ ~ pi(.|s): one sample stands in for V(s) (CORL)
            advantage = torch.min(*self.qf(obs, actions)) - torch.min(*self.qf(obs, self.actor.sample(obs)))
            # w = min(exp(A / lambda), exp_adv_max)
            weights = awac_weights(advantage, self.awac_lambda, self.exp_adv_max)
        # L_pi = -E[ w log pi(a|s) ]
        loss = awac_actor_loss(weights, self.actor.log_prob(obs, actions))
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        return loss.detach(), advantage, weights

    def update(self, obs, actions, rewards, next_obs, terminals) -> dict:
        """One gradient step of each network on a batch. Returns detached tensors (no device sync)."""
        # 1. theta <- theta - lr grad L_Q(theta)
        loss_q, q = self.update_critic(obs, actions, rewards, next_obs, terminals)
        # 2. phi <- phi - lr grad L_pi(phi), the advantages from the critics just updated (CORL)
        loss_pi, advantage, weights = self.update_actor(obs, actions)
        # 3. theta_hat <- (1 - tau) theta_hat + tau theta
        polyak_update(self.target_params, self.online_params, self.tau)
        return {
            "losses/critic_loss": loss_q, "losses/actor_loss": loss_pi,
            "values/q": q.mean(), "values/advantage": advantage.mean(),
            "values/awac_weight_mean": weights.mean(), "values/awac_weight_max": weights.max(),
            # exp(A / lambda) >= exp_adv_max  <=>  A >= lambda log(exp_adv_max)
            "values/awac_weight_clipped_frac":
                (advantage >= self.awac_lambda * math.log(self.exp_adv_max)).float().mean(),
            "values/policy_std": self.actor.log_std.clamp(Actor.LOG_STD_MIN, Actor.LOG_STD_MAX).exp().mean().detach(),
        }


# ALGO LOGIC: offline-to-online fine-tuning (--online-steps): a buffer that holds the offline data and the
# online transitions alike, and a runner that adds one online transition per call
class ReplayBuffer:
    """The offline data followed by room for `online_capacity` online transitions, all preallocated on
    the data's device and stored as the loader stores the data: observations normalised with the
    dataset's (fixed) statistics, terminal = 1 only at a termination. Rewards, offline and online
    alike, are stored as r' = reward_scale * r + reward_shift (a script that preprocesses its rewards
    passes its scale; 1 and 0 keep them raw). Batches are drawn uniformly over everything stored so far."""

    def __init__(self, data: OfflineDataset, online_capacity: int, reward_scale: float = 1.0,
                 reward_shift: float = 0.0):
        n, capacity, device = data.size, data.size + online_capacity, data.observations.device

        def room(offline: torch.Tensor) -> torch.Tensor:
            buffer = torch.zeros((capacity, *offline.shape[1:]), dtype=torch.float32, device=device)
            buffer[:n] = offline
            return buffer

        self.normalize_obs = data.normalize_obs
        # normalised once here: the hot loop only indexes
        self.observations = room(data.normalize_obs(data.observations))
        self.actions = room(data.actions)
        self.reward_scale, self.reward_shift = reward_scale, reward_shift
        self.rewards = room(data.rewards * reward_scale + reward_shift)
        self.next_observations = room(data.normalize_obs(data.next_observations))
        self.terminals = room(data.terminals)
        self.size, self.capacity, self.device = n, capacity, device

    def add(self, obs, action, reward: float, next_obs, terminated: bool) -> None:
        """Append one transition; obs and next_obs raw, as the env returns them."""
        if self.size == self.capacity:
            raise RuntimeError(f"the replay buffer is full ({self.capacity} transitions)")
        i = self.size
        as_tensor = lambda x: torch.as_tensor(x, dtype=torch.float32, device=self.device)  # noqa: E731
        self.observations[i] = self.normalize_obs(as_tensor(obs))
        self.actions[i] = as_tensor(action)
        # r' = scale r + shift, the preprocessing of the offline rewards
        self.rewards[i] = self.reward_scale * float(reward) + self.reward_shift
        self.next_observations[i] = self.normalize_obs(as_tensor(next_obs))
        # d = 1 only at a termination: a truncated episode still bootstraps from next_obs
        self.terminals[i] = float(terminated)
        self.size += 1

    def sample(self, batch_size: int):
        """(s, a, r, s', d), each (batch_size, ...), drawn uniformly from the stored transitions."""
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return (self.observations[idx], self.actions[idx], self.rewards[idx], self.next_observations[idx],
                self.terminals[idx])


class OnlineRunner:
    """One env, stepped once per call with an action sampled from the current policy; each transition
    goes into the buffer, and a new episode starts after a termination or a truncation."""

    def __init__(self, env: gym.Env, buffer: ReplayBuffer, seed: int):
        self.env, self.buffer = env, buffer
        self.obs, _ = env.reset(seed=seed)  # later resets continue this seeded stream
        self.episode_return = 0.0

    @torch.no_grad()
    def step(self, actor: Actor) -> Optional[float]:
        """One env step and its transition stored; returns the episode's return when the episode ended."""
        obs_t = self.buffer.normalize_obs(torch.as_tensor(self.obs, dtype=torch.float32, device=self.buffer.device))
        action = actor.sample(obs_t[None])[0].cpu().numpy().astype(self.env.action_space.dtype)
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        self.buffer.add(self.obs, action, reward, next_obs, terminated)
        self.episode_return += float(reward)
        if not (terminated or truncated):
            self.obs = next_obs
            return None
        finished, self.episode_return = self.episode_return, 0.0
        self.obs, _ = self.env.reset()
        return finished


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
        checkpoint = load_checkpoint(args.eval_checkpoint, "awac", ("actor",), device)
        args.dataset_id = checkpoint["args"]["dataset_id"]
    try:
        data = load_dataset(args.dataset_id, device)
        if args.eval_env_kwargs is not None:  # a dynamics-shift test: evaluation only, the data stay
            data.set_eval_env_kwargs(json.loads(args.eval_env_kwargs))
    except DatasetError as e:
        sys.exit(f"error: {e}")
    # Evaluation and --online-steps both run the dataset's env: fail now, not after training.
    try:
        online_env = data.make_env()
    except Exception as e:
        sys.exit(f"error: cannot make the environment of '{args.dataset_id}', which evaluation and --online-steps "
                 f"run ({type(e).__name__}: {e}). The dataset must record an env spec "
                 f"(minari's env= / eval_env= when it was created) whose env is installed here.")
    if args.online_steps == 0 or checkpoint is not None:
        online_env.close()

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
        actor = Actor(data.obs_dim, data.act_dim, checkpoint["args"]["hidden_dim"], checkpoint["args"]["actor_layers"],
                      data.action_low, data.action_high).to(device)
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

    awac = AWAC(data.obs_dim, data.act_dim, args, data.action_low, data.action_high, device)
    actor = awac.actor
    buffer = ReplayBuffer(data, args.online_steps)
    runner = OnlineRunner(online_env, buffer, args.seed) if args.online_steps > 0 else None
    total_steps = args.total_steps + args.online_steps

    history, best_score, train_time, evaluations = [], -math.inf, 0.0, 0
    online_returns, offline_final_score = [], None
    t_start = t_log = t_print = time.time()
    print(f"Training AWAC on {args.dataset_id} for {args.total_steps} offline steps"
          + (f" + {args.online_steps} online steps" if args.online_steps else "") + f" on {device} ({run_dir})")
    for step in range(1, total_steps + 1):
        if step > args.total_steps:  # online: one env step with the current policy, then a gradient step
            if step == args.total_steps + 1:
                print(f"Online fine-tuning from step {step}: one env step per gradient step", flush=True)
                writer.add_text("phase", f"online fine-tuning from step {step}", step)
            finished = runner.step(actor)
            if finished is not None:
                writer.add_scalar("charts/online_episodic_return", finished, step)
                online_returns.append([step, finished])
        # critics, then actor, then target critics (AWAC.update)
        metrics = awac.update(*buffer.sample(args.batch_size))

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps or step == total_steps
        if step % 1000 == 0 or evaluate_now:  # .item() syncs with the device: only at logging steps
            values = dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))
            for name, value in values.items():
                writer.add_scalar(name, value, step)
            writer.add_scalar("charts/env_steps", buffer.size - data.size, step)
            now = time.time()
            train_time += now - t_log
            t_log = now
            sps = round(step / train_time, 1)
            writer.add_scalar("charts/SPS", sps, step)
            losses = f"Q {values['losses/critic_loss']:.4f} pi {values['losses/actor_loss']:.4f}"
            if now - t_print > 15 and not evaluate_now:  # a sign of life between evaluations
                print(f"step {step}/{total_steps} | SPS {sps} | {losses}", flush=True)
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
            if step == args.total_steps:
                offline_final_score = history[-1][2]
            print(f"step {step}/{total_steps} | SPS {sps} | {losses} | {score_text(returns, scores)}", flush=True)
            if args.save_model:
                save_checkpoint(os.path.join(run_dir, f"{args.exp_name}.pt"), {
                    "algorithm": "awac", "actor": actor.state_dict(), "critic": awac.qf.state_dict(),
                    "critic_target": awac.qf_target.state_dict(), "args": asdict(args),
                    "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    if runner is not None:
        runner.env.close()
    summary = {
        "algorithm": "awac", "dataset_id": args.dataset_id, "seed": args.seed, "steps": total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
        "online_steps": args.online_steps,
    }
    if args.online_steps > 0:
        summary.update({"offline_steps": args.total_steps, "online_episode_returns": online_returns,
                        "offline_final_normalized_score": offline_final_score})
    write_summary(run_dir, data, summary)
    writer.close()
