"""Reinforcement Learning with Prior Data (RLPD): online SAC that samples half of every batch from the
offline data, from the first env step, with no offline pre-training.

Paper: Ball, Smith, Kostrikov, Levine, "Efficient Online Reinforcement Learning with Offline Data",
ICML 2023, https://arxiv.org/abs/2302.02948. Reference code: ikostrikov/rlpd (JAX), whose files the
flags below cite (`configs/rlpd_config.py`, `rlpd/agents/sac/sac_learner.py`, `train_finetuning.py`).

Offline-to-online methods first train offline, then fine-tune, and pay for the switch. RLPD skips the
offline phase: an off-policy online agent that treats the dataset as part of its replay buffer. Three
choices make that work. (1) Symmetric sampling: each batch is half offline transitions, half online
ones, so the few fresh transitions are not drowned by the data. (2) LayerNorm in the critics, which
bounds how far Q can extrapolate to actions the data lack. (3) Many gradient steps per env step (the
update-to-data ratio, UTD) made stable by an ensemble of critics whose target takes the min over a
random subset of two (as REDQ, Chen et al. 2021). Here `--total-steps` counts ENV steps.

    batch  = { N_off rows ~ D_offline } u { B - N_off rows ~ D_online },  N_off = B / 2
    y      = r + gamma (1 - d) ( min_{i in Z} Qbar_i(s', a') - beta log pi(a'|s') ),
             a' ~ pi(.|s'),  Z a random subset of 2 of the N critics, drawn anew at each step
    L_Q    = (1/N) sum_i E_batch[ (Q_i(s,a) - y)^2 ]                     (UTD times per env step)
    L_pi   = E_{s~batch, a~pi}[ beta log pi(a|s) - (1/N) sum_i Q_i(s,a) ]   (once per env step)

(beta: SAC's entropy temperature, tuned so that the policy's entropy stays near -dim(A)/2.) Run
`python rlpd.py --help` for the flags; docs/rlpd.md maps the objective to the lines below.
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
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter

from common.datasets import DEFAULT_DATASET_ID, DatasetError, OfflineDataset, load_dataset


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (network init, batches, subsets, evaluation start states, the online env)"""
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
    total_steps: int = 2_000
    """ENV steps in the dataset's env, not gradient steps (those are --utd per env step once learning starts;
    the authors' README: 250k on D4RL locomotion; 2k = 10 Pendulum episodes for the default data)"""
    batch_size: int = 256
    """transitions per gradient step, half offline and half online (paper; train_finetuning.py)"""
    eval_freq: int = 250
    """evaluate every this many env steps (and at step 0, before any training, and at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation, run side by side in a vector env"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass);
    evaluation only: the online env that collects data is the dataset's own, unchanged"""

    # Algorithm-specific arguments
    utd: int = 10
    """update-to-data ratio: critic gradient steps per env step, each on its own batch; the actor and the
    temperature step once per env step (paper and its README: 20; 10 fits the default run in 5 min of a 2-core CPU)"""
    ensemble_size: int = 10
    """critics in the ensemble, N (paper; configs/rlpd_config.py num_qs)"""
    subset_size: int = 2
    """target critics the TD target takes its min over, a random subset of the N drawn at each critic step
    (paper; configs/rlpd_config.py num_min_qs)"""
    offline_ratio: float = 0.5
    """fraction of each batch drawn from the offline data, the rest from the online transitions (symmetric
    sampling: 0.5, paper; train_finetuning.py offline_ratio). 0 = online SAC that ignores the data"""
    learning_starts: int = 200
    """env steps with uniform random actions and no gradient step before learning starts (train_finetuning.py
    start_training; README: 5000 of 250k on locomotion; 200 = one Pendulum episode)"""
    layer_norm: bool = True
    """LayerNorm after each hidden layer of every critic (paper; configs/rlpd_config.py critic_layer_norm)"""
    backup_entropy: bool = True
    """subtract beta log pi(a'|s') in the TD target (configs/sac_config.py: True, used on locomotion; the
    README turns it off on AntMaze and Adroit)"""
    gamma: float = 0.99
    """discount factor (configs/td_config.py)"""
    tau: float = 5e-3
    """Polyak rate of the target critics, Qbar <- (1 - tau) Qbar + tau Q, after each critic step (configs/td_config.py)"""
    policy_lr: float = 3e-4
    """actor Adam learning rate (configs/td_config.py actor_lr)"""
    q_lr: float = 3e-4
    """critics' Adam learning rate (configs/td_config.py critic_lr)"""
    entropy_lr: float = 3e-4
    """Adam learning rate of the entropy temperature beta (configs/sac_config.py temp_lr)"""
    init_temperature: float = 1.0
    """starting entropy temperature beta (configs/sac_config.py init_temperature)"""
    target_entropy: Optional[float] = None
    """the entropy beta is tuned toward; default -dim(A)/2 (sac_learner.py)"""
    hidden_dim: int = 64
    """width of every hidden layer, actor and critics (64 for Pendulum's 3-d states; configs/td_config.py: 256)"""
    critic_layers: int = 2
    """hidden layers of each critic (configs/td_config.py: 2; the README uses 3 on AntMaze and Adroit)"""
    actor_layers: int = 2
    """hidden layers of the actor (configs/td_config.py: 2)"""


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
    for name in ("hidden_dim", "critic_layers", "actor_layers", "ensemble_size", "subset_size"):
        if getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    for name in ("policy_lr", "q_lr", "entropy_lr", "init_temperature"):
        if not getattr(args, name) > 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    if args.utd < 1:
        errors.append(f"--utd must be at least 1 gradient step per env step (got {args.utd})")
    if 0 < args.ensemble_size < args.subset_size:
        errors.append(f"--subset-size ({args.subset_size}) cannot exceed --ensemble-size ({args.ensemble_size}): "
                      f"the target's min is over distinct critics of the ensemble")
    if not 0.0 <= args.offline_ratio <= 1.0:
        errors.append(f"--offline-ratio must be in [0, 1] (got {args.offline_ratio})")
    elif args.batch_size > 0 and not float(args.batch_size * args.offline_ratio).is_integer():
        errors.append(f"--batch-size ({args.batch_size}) times --offline-ratio ({args.offline_ratio}) must be a "
                      f"whole number of offline rows (an even batch for the default 0.5)")
    if args.total_steps > 0 and not 0 <= args.learning_starts < args.total_steps:
        errors.append(f"--learning-starts must be in [0, --total-steps) = [0, {args.total_steps}) "
                      f"(got {args.learning_starts}): no gradient step would run")
    if args.target_entropy is not None and not math.isfinite(args.target_entropy):
        errors.append(f"--target-entropy must be a finite number (got {args.target_entropy})")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))


# ALGO LOGIC: the policy, the critic ensemble, the losses and the update; a student writes the function with
# a SOLUTION block (course/make_assignment.py cuts its body out)
def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) of a = tanh(u), u ~ N(mu, sigma^2) per dimension (as cql.py, where it is an exercise):
    sum_j [ log N(u_j; mu_j, sigma_j^2) - log(1 - tanh(u_j)^2) ], finite for any u. Returns (...)."""
    log_normal = -0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (log_normal - log_det).sum(-1)


def mlp(in_dim: int, hidden_dim: int, layers: int) -> nn.Sequential:
    modules = []
    for i in range(layers):
        modules += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), nn.ReLU()]
    return nn.Sequential(*modules)


class Actor(nn.Module):
    """Tanh-Gaussian policy (as cql.py's): a = tanh(u), u ~ N(mu(s), sigma(s)^2), actions in [-1, 1]^d;
    `act` and `explore` return actions in the env's units."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # keeps sigma in a range where log pi stays finite

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, layers: int, action_low, action_high):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden_dim, layers)
        self.mean = nn.Linear(hidden_dim, act_dim)
        self.log_std = nn.Linear(hidden_dim, act_dim)
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)

    def forward(self, obs: torch.Tensor):
        h = self.trunk(obs)
        return self.mean(h), self.log_std(h).clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)

    def sample(self, obs: torch.Tensor):
        """An action a ~ pi(.|s) in [-1, 1]^d and log pi(a|s): shapes (B, d), (B)."""
        mean, log_std = self(obs)
        # u = mu + sigma eps, eps ~ N(0, I): the reparameterisation, so gradients reach mu and sigma
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action tanh(mu(s)), in the env's units (for evaluation)."""
        return torch.tanh(self(obs)[0]) * self.action_scale + self.action_bias

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """An action a ~ pi(.|s), in the env's units (for the online data)."""
        return self.sample(obs)[0] * self.action_scale + self.action_bias


class EnsembleQ(nn.Module):
    """N critics Q_1..Q_N, each an MLP on [s, a]: (Linear -> LayerNorm -> ReLU) per hidden layer, then
    Linear to 1 (rlpd/networks/mlp.py with use_layer_norm, state_action_value.py). The N critics' weights
    are stacked, (N, fan_in, fan_out) per layer, so that ONE batched matrix product per layer evaluates
    all N critics (torch.baddbmm), instead of N small products in a Python loop: 1.65x the update's speed
    at the default sizes on a CPU core, the same at 2x256 (docs/benchmarks.md, RLPD). Critic i's weights
    are the slice [i] of every stacked tensor; `members` evaluates only a subset (the target's)."""

    def __init__(self, in_dim: int, hidden_dim: int, layers: int, n: int, layer_norm: bool = True):
        super().__init__()
        sizes = [in_dim] + [hidden_dim] * layers + [1]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # Xavier-uniform weights, zero biases, drawn per critic (the authors' default_init, mlp.py)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.zeros(n, 1, fan_out)))
        # each critic's own LayerNorm gain and bias per hidden layer, starting at 1 and 0 (flax's LayerNorm)
        self.norm_weights = nn.ParameterList([nn.Parameter(torch.ones(n, 1, hidden_dim)) for _ in range(layers)]
                                             if layer_norm else [])
        self.norm_biases = nn.ParameterList([nn.Parameter(torch.zeros(n, 1, hidden_dim)) for _ in range(layers)]
                                            if layer_norm else [])
        self.n, self.layer_norm = n, layer_norm

    def forward(self, obs: torch.Tensor, act: torch.Tensor, members: Optional[torch.Tensor] = None) -> torch.Tensor:
        """obs (B, obs_dim), act (B, act_dim) -> (N, B): Q_i(s, a) of every critic i, or of the critics
        listed in `members` only, (M, B) in that order."""
        pick = (lambda t: t) if members is None else (lambda t: t[members])  # noqa: E731
        k = self.n if members is None else members.numel()
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(k, -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            # x_i <- x_i W_i + b_i for every critic i at once: (k, B, fan_in) @ (k, fan_in, fan_out) + (k, 1, fan_out)
            x = torch.baddbmm(pick(b), x, pick(w))
            if i < len(self.weights) - 1:
                if self.layer_norm:
                    # LayerNorm of each row over its hidden units, then critic i's gain g_i and bias c_i:
                    # (x - mean(x)) / sqrt(var(x) + eps) * g_i + c_i   (eps 1e-6, flax's default)
                    x = torch.addcmul(pick(self.norm_biases[i]), F.layer_norm(x, x.shape[-1:], eps=1e-6),
                                      pick(self.norm_weights[i]))
                x = F.relu(x)
        return x.squeeze(-1)


def random_subset(n: int, m: int, device, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """m distinct indices of the n critics, every m-subset equally likely (sac_learner.py's
    subsample_ensemble: jax.random.choice(..., replace=False)). Returns (m,) int64."""
    return torch.randperm(n, device=device, generator=generator)[:m]


def td_target(rew: torch.Tensor, done: torch.Tensor, next_q: torch.Tensor, next_log_pi: torch.Tensor,
              beta: torch.Tensor, gamma: float) -> torch.Tensor:
    """RLPD's target, shared by all N critics: the min over a random subset Z of the TARGET critics,
    minus the entropy term, bootstrapped only where the episode did not terminate:

        y = r + gamma (1 - d) ( min_{i in Z} Qbar_i(s', a') - beta log pi(a'|s') ),   a' ~ pi(.|s')

    rew, done: (B,), d = 1 only at a termination (a time-limit truncation still bootstraps); next_q:
    (M, B), the M = |Z| target critics of the subset at (s', a'); next_log_pi: (B,), log pi(a'|s');
    beta: the temperature (a scalar tensor; 0 without --backup-entropy). Returns (B,)."""
    # BEGIN SOLUTION
    return rew + gamma * (1.0 - done) * (next_q.min(dim=0).values - beta * next_log_pi)
    # END SOLUTION


def actor_loss(log_pi: torch.Tensor, q_pi: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """SAC's policy loss with the ensemble's MEAN (sac_learner.py's update_actor: qs.mean(axis=0); the
    paper's Algorithm 1 alike), not a min:

        L_pi = E_{s, a~pi(.|s)}[ beta log pi(a|s) - (1/N) sum_i Q_i(s,a) ]

    log_pi: (B,); q_pi: (N, B), every critic at (s, a); beta: a scalar held fixed here. Returns a scalar."""
    return (beta * log_pi - q_pi.mean(dim=0)).mean()


def temperature_loss(log_beta: torch.Tensor, log_pi: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """SAC's automatic entropy tuning: L_beta = E_{a~pi}[ -beta (log pi(a|s) + Hbar) ]. beta falls while
    the policy's entropy -E[log pi] is above Hbar and rises when it is below (sac_learner.py)."""
    return -(log_beta.exp() * (log_pi.detach() + target_entropy)).mean()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    # Qbar <- (1 - tau) Qbar + tau Q, all N critics (optax.incremental_update over the whole ensemble)
    for p_target, p in zip(target.parameters(), online.parameters()):
        p_target.lerp_(p, tau)


class RLPD:
    """The networks, optimisers and the update of one env step: --utd critic steps, then one actor and
    temperature step (sac_learner.py's update)."""

    def __init__(self, obs_dim: int, act_dim: int, args: Args, action_low, action_high, device):
        self.args = args
        self.actor = Actor(obs_dim, act_dim, args.hidden_dim, args.actor_layers, action_low, action_high).to(device)
        self.critic = EnsembleQ(obs_dim + act_dim, args.hidden_dim, args.critic_layers, args.ensemble_size,
                                args.layer_norm).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_beta = torch.tensor(math.log(args.init_temperature), device=device, requires_grad=True)
        self.target_entropy = -act_dim / 2.0 if args.target_entropy is None else args.target_entropy
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.policy_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=args.q_lr)
        self.beta_optimizer = torch.optim.Adam([self.log_beta], lr=args.entropy_lr)
        self.device = device

    def critic_loss(self, obs, act, rew, next_obs, done):
        """L_Q on one batch, and the N critics' Q(s, a) (N, B) and the target y (B,), detached."""
        with torch.no_grad():
            next_act, next_log_pi = self.actor.sample(next_obs)
            subset = random_subset(self.args.ensemble_size, self.args.subset_size, self.device)
            beta = self.log_beta.exp() if self.args.backup_entropy else torch.zeros((), device=self.device)
            # y = r + gamma (1 - d) (min_{i in Z} Qbar_i(s', a') - beta log pi(a'|s'))
            target = td_target(rew, done, self.critic_target(next_obs, next_act, subset), next_log_pi, beta,
                               self.args.gamma)
        q = self.critic(obs, act)
        # L_Q = (1/N) sum_i E[(Q_i(s,a) - y)^2]   (sac_learner.py: the mean over critics and batch)
        return (q - target).pow(2).mean(), q.detach(), target

    def update(self, obs, act, rew, next_obs, done, n_offline: int) -> dict:
        """One env step's update on --utd batches, each tensor (utd, B, ...), actions in [-1, 1]^d, the
        first n_offline rows of each batch offline. Returns detached tensors (no device sync)."""
        for g in range(obs.shape[0]):
            # 1. a critic step on batch g, then the targets: Qbar <- (1 - tau) Qbar + tau Q
            loss, q, target = self.critic_loss(obs[g], act[g], rew[g], next_obs[g], done[g])
            self.critic_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.critic_optimizer.step()
            polyak_update(self.critic_target, self.critic, self.args.tau)

        # 2. once per env step, on the last batch: the actor, then the temperature
        pi_act, log_pi = self.actor.sample(obs[-1])
        # L_pi = E[ beta log pi(a|s) - (1/N) sum_i Q_i(s,a) ],  a ~ pi(.|s) reparameterised
        loss_pi = actor_loss(log_pi, self.critic(obs[-1], pi_act), self.log_beta.exp().detach())
        # L_beta = E[ -beta (log pi(a|s) + Hbar) ]
        loss_beta = temperature_loss(self.log_beta, log_pi, self.target_entropy)
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.beta_optimizer.zero_grad(set_to_none=True)
        (loss_pi + loss_beta).backward()  # the critics' gradients from this are cleared at their next step
        self.actor_optimizer.step()
        self.beta_optimizer.step()

        metrics = {"critic_loss": loss.detach(), "actor_loss": loss_pi.detach(), "entropy": -log_pi.detach().mean(),
                   "entropy_temperature": self.log_beta.detach().exp(), "q": q.mean(), "q_target": target.mean(),
                   "q_ensemble_std": q.std(dim=0).mean()}
        if 0 < n_offline:
            metrics["q_offline"] = q[:, :n_offline].mean()
        if n_offline < q.shape[1]:
            metrics["q_online"] = q[:, n_offline:].mean()
        return metrics


# ALGO LOGIC: the replay buffer (the offline data, then the online transitions) with symmetric sampling,
# and a runner that adds one online transition per call
class ReplayBuffer:
    """The offline data followed by room for `online_capacity` online transitions, all preallocated on
    the data's device and stored as the loader stores the data (as cql.py's): observations normalised
    with the dataset's (fixed) statistics, terminal = 1 only at a termination, rewards raw. Rows
    [0, offline_size) are the data, [offline_size, size) the online transitions so far."""

    def __init__(self, data: OfflineDataset, online_capacity: int):
        n, capacity, device = data.size, data.size + online_capacity, data.observations.device

        def room(offline: torch.Tensor) -> torch.Tensor:
            buffer = torch.zeros((capacity, *offline.shape[1:]), dtype=torch.float32, device=device)
            buffer[:n] = offline
            return buffer

        self.normalize_obs = data.normalize_obs
        # normalised once here: the hot loop only indexes
        self.observations = room(data.normalize_obs(data.observations))
        self.actions = room(data.actions)
        self.rewards = room(data.rewards)
        self.next_observations = room(data.normalize_obs(data.next_observations))
        self.terminals = room(data.terminals)
        self.offline_size, self.size, self.capacity, self.device = n, n, capacity, device

    def add(self, obs, action, reward: float, next_obs, terminated: bool) -> None:
        """Append one transition; obs and next_obs raw, as the env returns them."""
        if self.size == self.capacity:
            raise RuntimeError(f"the replay buffer is full ({self.capacity} transitions)")
        i = self.size
        as_tensor = lambda x: torch.as_tensor(x, dtype=torch.float32, device=self.device)  # noqa: E731
        self.observations[i] = self.normalize_obs(as_tensor(obs))
        self.actions[i] = as_tensor(action)
        self.rewards[i] = float(reward)
        self.next_observations[i] = self.normalize_obs(as_tensor(next_obs))
        # d = 1 only at a termination: a truncated episode still bootstraps from next_obs
        self.terminals[i] = float(terminated)
        self.size += 1

    def sample_symmetric(self, batch_size: int, n_offline: int, n_batches: int):
        """n_batches batches of batch_size transitions; in each, the first n_offline rows are drawn
        uniformly from the offline data and the other batch_size - n_offline uniformly from the online
        transitions stored so far (symmetric sampling: half and half, train_finetuning.py's `combine`).
        Returns (s, a, r, s', d), each (n_batches, batch_size, ...)."""
        n_online = batch_size - n_offline
        if n_online > 0 and self.size == self.offline_size:
            raise RuntimeError("no online transition stored yet to sample the online half from")
        offline = torch.randint(0, self.offline_size, (n_batches, n_offline), device=self.device)
        online = torch.randint(self.offline_size, max(self.size, self.offline_size + 1), (n_batches, n_online),
                               device=self.device)
        idx = torch.cat([offline, online], dim=1)
        return (self.observations[idx], self.actions[idx], self.rewards[idx], self.next_observations[idx],
                self.terminals[idx])


class UniformPolicy:
    """The warm-up before --learning-starts: actions uniform in the env's box (train_finetuning.py:
    env.action_space.sample()), from a generator seeded with --seed."""

    def __init__(self, action_low: torch.Tensor, action_high: torch.Tensor, seed: int):
        self.low, self.high = action_low, action_high
        self.generator = torch.Generator(device=action_low.device).manual_seed(seed)

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        u = torch.rand((obs.shape[0], self.low.numel()), device=self.low.device, generator=self.generator)
        return self.low + (self.high - self.low) * u


class OnlineRunner:
    """One env, stepped once per call with an action from `policy.explore`; each transition goes into
    the buffer, and a new episode starts after a termination or a truncation (as cql.py's)."""

    def __init__(self, env: gym.Env, buffer: ReplayBuffer, seed: int):
        self.env, self.buffer = env, buffer
        self.obs, _ = env.reset(seed=seed)  # later resets continue this seeded stream
        self.episode_return = 0.0

    @torch.no_grad()
    def step(self, policy) -> Optional[float]:
        """One env step and its transition stored; returns the episode's return when the episode ended."""
        obs_t = self.buffer.normalize_obs(torch.as_tensor(self.obs, dtype=torch.float32, device=self.buffer.device))
        action = policy.explore(obs_t[None])[0].cpu().numpy().astype(self.env.action_space.dtype)
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
        checkpoint = load_checkpoint(args.eval_checkpoint, "rlpd", ("actor", "critic"), device)
        args.dataset_id = checkpoint["args"]["dataset_id"]
    try:
        data = load_dataset(args.dataset_id, device)
        if args.eval_env_kwargs is not None:  # a dynamics-shift test: evaluation only, the data stay
            data.set_eval_env_kwargs(json.loads(args.eval_env_kwargs))
    except DatasetError as e:
        sys.exit(f"error: {e}")
    # Training and evaluation both run the dataset's env: fail now, not after the first steps.
    try:
        online_env = data.make_env()
    except Exception as e:
        sys.exit(f"error: cannot make the environment of '{args.dataset_id}', which evaluation and the online "
                 f"steps run ({type(e).__name__}: {e}). The dataset must record an env spec "
                 f"(minari's env= / eval_env= when it was created) whose env is installed here.")
    if checkpoint is not None:
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
        saved = checkpoint["args"]
        actor = Actor(data.obs_dim, data.act_dim, saved["hidden_dim"], saved["actor_layers"],
                      data.action_low, data.action_high).to(device)
        actor.load_state_dict(checkpoint["actor"])
        data.obs_mean, data.obs_std = checkpoint["obs_mean"].to(device), checkpoint["obs_std"].to(device)
        seeds = checkpoint["eval_seeds"]
        returns, scores = evaluate(actor.act, data, seeds, device, video_dir)
        print(f"{args.eval_checkpoint}: {score_text(returns, scores)}")
        write_summary(run_dir, data, {
            "dataset_id": args.dataset_id, "checkpoint": args.eval_checkpoint, "eval_seeds": seeds,
            "returns": returns.tolist(), "return_mean": float(returns.mean()),
            "normalized_score": None if scores is None else float(scores.mean()),
            "reference": data.ref_source,
        })
        writer.close()
        sys.exit(0)

    agent = RLPD(data.obs_dim, data.act_dim, args, data.action_low, data.action_high, device)
    actor = agent.actor
    # The offline data, then room for every online transition; observations normalised once here.
    buffer = ReplayBuffer(data, args.total_steps)
    runner = OnlineRunner(online_env, buffer, args.seed)
    warm_up = UniformPolicy(data.action_low, data.action_high, args.seed)
    n_offline = int(args.batch_size * args.offline_ratio)

    def unit_actions(actions: torch.Tensor) -> torch.Tensor:
        """The critics see actions in [-1, 1]^d, like the actor's."""
        return ((actions - actor.action_bias) / actor.action_scale).clamp(-1.0, 1.0)

    history, best_score, train_time, evaluations, gradient_steps = [], -math.inf, 0.0, 0, 0
    online_returns, values, sps, line = [], {}, 0.0, "step 0"
    t_start = t_log = t_print = time.time()
    print(f"Training RLPD on {args.dataset_id} for {args.total_steps} env steps (uniform random actions for the "
          f"first {args.learning_starts}), {args.utd} critic steps per env step, {n_offline} of every "
          f"{args.batch_size} rows offline, on {device} ({run_dir})")
    for step in range(0, args.total_steps + 1):
        if step > 0:
            # ALGO LOGIC: one env step (random before --learning-starts, then the sampled policy), then the update
            finished = runner.step(warm_up if step <= args.learning_starts else actor)
            if finished is not None:
                writer.add_scalar("charts/online_episodic_return", finished, step)
                online_returns.append([step, finished])
            if step > args.learning_starts:
                obs, act, rew, next_obs, done = buffer.sample_symmetric(args.batch_size, n_offline, args.utd)
                metrics = agent.update(obs, unit_actions(act), rew, next_obs, done, n_offline)
                gradient_steps += args.utd

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps
        if step > args.learning_starts and (step % 100 == 0 or evaluate_now):  # .item() syncs: logging steps only
            values = {k: round(v.item(), 4) for k, v in metrics.items()}
            for k, v in values.items():
                writer.add_scalar(f"values/{k}" if k.startswith("q") else f"losses/{k}", v, step)
            writer.add_scalar("charts/env_steps", step, step)
            writer.add_scalar("charts/gradient_steps", gradient_steps, step)
            now = time.time()
            train_time += now - t_log
            t_log = now
            sps = round(gradient_steps / train_time, 1)  # gradient (critic) steps per second
            writer.add_scalar("charts/SPS", sps, step)
            line = (f"env step {step}/{args.total_steps} | SPS {sps} | Q {values['q']:.1f} "
                    f"| entropy {values['entropy']:.2f}")
            if now - t_print > 15 and not evaluate_now:  # a sign of life between evaluations
                print(line, flush=True)
                t_print = now
        elif step <= args.learning_starts:
            line = f"env step {step}/{args.total_steps} | warm-up (random actions)"

        if evaluate_now:
            seeds = evaluation_seeds(args.seed, evaluations, args.eval_episodes)
            evaluations += 1
            actor.eval()
            returns, scores = evaluate(actor.act, data, seeds, device, video_dir)
            actor.train()
            writer.add_scalar("eval/episodic_return", returns.mean(), step)
            if scores is not None:
                writer.add_scalar("eval/normalized_score", scores.mean(), step)
                best_score = max(best_score, float(scores.mean()))
            history.append([step, float(returns.mean()), None if scores is None else float(scores.mean())])
            print(f"{line} | {score_text(returns, scores)}", flush=True)
            if args.save_model:
                save_checkpoint(os.path.join(run_dir, f"{args.exp_name}.pt"), {
                    "algorithm": "rlpd", "actor": actor.state_dict(), "critic": agent.critic.state_dict(),
                    "critic_target": agent.critic_target.state_dict(), "log_beta": agent.log_beta.detach().cpu(),
                    "args": asdict(args), "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    runner.env.close()
    # RLPD has no offline phase: the "switch" from offline to online is at step 0, before any training
    write_summary(run_dir, data, {
        "algorithm": "rlpd", "dataset_id": args.dataset_id, "seed": args.seed, "steps": args.total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
        "final_values": values, "online_steps": args.total_steps, "offline_steps": 0,
        "gradient_steps": gradient_steps, "online_episode_returns": online_returns,
        "offline_final_normalized_score": history[0][2],
    })
    writer.close()
