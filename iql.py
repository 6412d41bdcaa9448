"""Implicit Q-Learning (IQL): offline RL that never evaluates an action outside the dataset.

Paper: Kostrikov, Nair, Levine, "Offline Reinforcement Learning with Implicit Q-Learning", ICLR 2022,
https://arxiv.org/abs/2110.06169. Defaults follow the paper's locomotion settings, its code
(github.com/ikostrikov/implicit_q_learning) and CORL's iql.py (Tarasov et al., "CORL: Research-oriented
Deep Offline RL Library", 2022).

The max over actions in the Bellman target is where out-of-distribution actions get in. IQL drops
it: V(s) is fitted by expectile regression to Q(s,a) on the dataset's actions only, so for an
expectile tau near 1 it approaches the best in-data action's value; Q is fitted to r + gamma V(s');
the policy is then extracted by advantage-weighted regression (AWR) on the dataset's actions. Each
gradient step updates V, then Q (and its Polyak-averaged target Q_hat), then pi, as in the paper's
Algorithm 1, each network with its own Adam. The same update keeps running, with the same losses
and settings, when online transitions join the data (`--online-steps`), as in the paper's fine-tuning.

    L_V(psi)   = E_{(s,a)~D} [ L2^tau( Q_hat(s,a) - V_psi(s) ) ],   L2^tau(u) = |tau - 1(u < 0)| u^2
    L_Q(theta) = E_{(s,a,r,s')~D} [ ( r + gamma (1 - d) V_psi(s') - Q_theta(s,a) )^2 ]
    L_pi(phi)  = -E_{(s,a)~D} [ exp( beta (Q_hat(s,a) - V_psi(s)) ) log pi_phi(a|s) ]

Run `python iql.py --help` for the flags; docs/iql.md maps the objective to the lines below.
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
from typing import Literal, Optional

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
    total_steps: int = 30_000
    """offline gradient steps (paper and CORL: 1M on D4RL; 30k, a few minutes on 2 CPU cores, for the default data)"""
    batch_size: int = 256
    """transitions per gradient step (CORL)"""
    eval_freq: int = 5_000
    """evaluate every this many gradient steps (offline and online steps count alike)"""
    eval_episodes: int = 10
    """episodes per evaluation, run side by side in a vector env"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass);
    evaluation only: the --online-steps phase collects its data in the dataset's own env, unchanged"""

    # Algorithm-specific arguments
    learning_rate: float = 3e-4
    """Adam learning rate of V, of the two Q networks and of the actor, each with its own Adam (paper,
    appendix B; CORL)"""
    hidden_dim: int = 256
    """width of the two hidden layers of every network (paper and CORL: 2x256)"""
    gamma: float = 0.99
    """the discount factor gamma (paper; CORL)"""
    tau: float = 5e-3
    """target network update rate: Q_hat <- (1 - tau) Q_hat + tau Q (paper; CORL). Not the expectile"""
    expectile: float = 0.7
    """the expectile tau of V's regression (paper, locomotion: 0.7). 0.5 makes it plain mean regression
    (V = E_a[Q], the value of the data's policy); near 1 V approaches the largest in-data Q(s,a)"""
    beta: float = 3.0
    """inverse temperature of the AWR weights exp(beta * advantage) (paper, locomotion: 3.0)"""
    max_weight: float = 100.0
    """AWR weights exp(beta * advantage) are clipped at this value (paper's code; CORL: 100)"""
    deterministic_actor: bool = False
    """a deterministic tanh policy fitted by weighted MSE, instead of the paper's Gaussian (CORL's option)"""
    reward_scale: Literal["locomotion", "antmaze", "none"] = "locomotion"
    """reward preprocessing (paper's code; CORL): locomotion = r * T / (max episode return - min episode
    return), T the env's time limit (1000 on D4RL locomotion: the paper's x1000), or the longest episode
    where the env has none; antmaze = r - 1; none. Locomotion suits the dense, fixed-horizon Pendulum
    reward of the default data. The online rewards of --online-steps get the same r' = scale r + shift"""
    actor_lr_schedule: Literal["auto", "cosine", "constant"] = "auto"
    """the actor's learning rate. auto: as the paper's code, a cosine decay to 0 over --total-steps in an offline run
    (learner.py's default; CORL) and no decay at all, offline or online, when --online-steps > 0 (the paper's
    fine-tuning config, configs/antmaze_finetune_config.py: opt_decay_schedule = None). cosine: the decay to 0 over
    the offline steps even with --online-steps, then held at --learning-rate online (CORL's finetune/iql.py also
    reaches 0 at the switch, then continues the cosine back up). constant: no decay"""
    online_steps: int = 0
    """after the offline steps, this many iterations of one env step with the current (sampled) policy and one
    gradient step on the offline data plus the online transitions so far, with the same losses and settings
    (the paper's fine-tuning; see --actor-lr-schedule for the actor's learning rate); 0 = offline only"""


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
    if not 0.0 < args.expectile < 1.0:
        errors.append(f"--expectile must be in (0, 1) (got {args.expectile})")
    if not args.beta >= 0:
        errors.append(f"--beta must be non-negative (got {args.beta})")
    if not args.max_weight > 0:
        errors.append(f"--max-weight must be positive (got {args.max_weight})")
    if args.online_steps < 0:
        errors.append(f"--online-steps must be non-negative (got {args.online_steps})")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))


def mlp(in_dim: int, out_dim: int, hidden_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )


class ValueNetwork(nn.Module):
    """V_psi(s)."""

    def __init__(self, obs_dim: int, hidden_dim: int):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class TwinQ(nn.Module):
    """Q_theta1(s,a) and Q_theta2(s,a), two independent MLPs."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int):
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, 1, hidden_dim)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden_dim)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor):
        x = torch.cat([obs, actions], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class Actor(nn.Module):
    """pi_phi(a|s) = N(mu(s), diag(sigma^2)), mu tanh-bounded to the action box, log sigma a free
    parameter (state-independent, as the paper's locomotion policy); or, with `deterministic`, a
    deterministic tanh policy mu(s)."""

    # log sigma is clipped to [-5, 2]: the paper's learner.py passes log_std_min=-5.0 to its policy
    # (whose own default, -10, it overrides) and keeps the default maximum, 2
    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
    # the deterministic policy explores online with N(0, 0.03^2) noise clipped at 0.5, in units of half the
    # action box (CORL's fine-tuning iql.py: expl_noise, noise_clip)
    EXPLORATION_STD, EXPLORATION_CLIP = 0.03, 0.5

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, action_low, action_high,
                 deterministic: bool = False):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden_dim)
        self.log_std = None if deterministic else nn.Parameter(torch.zeros(act_dim))
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action mu(s): what evaluation executes."""
        return torch.tanh(self.net(obs)) * self.action_scale + self.action_bias

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """a ~ pi(.|s), clipped to the action box: how the online phase acts. obs (B, obs_dim) -> (B, act_dim)."""
        mu = self(obs)
        if self.log_std is None:
            noise = (self.EXPLORATION_STD * torch.randn_like(mu)).clamp(-self.EXPLORATION_CLIP, self.EXPLORATION_CLIP)
            a = mu + noise * self.action_scale
        else:
            a = mu + self.log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX).exp() * torch.randn_like(mu)
        low, high = self.action_bias - self.action_scale, self.action_bias + self.action_scale
        return torch.maximum(torch.minimum(a, high), low)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s), or -||mu(s) - a||^2 for the deterministic policy (CORL's choice)."""
        mu = self(obs)
        if self.log_std is None:
            return -((mu - actions) ** 2).sum(-1)
        log_std = self.log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
        # log N(a; mu, sigma^2) = sum_i [ -(a_i - mu_i)^2 / (2 sigma_i^2) - log sigma_i - log(2 pi) / 2 ]
        z = (actions - mu) * torch.exp(-log_std)
        return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


# ALGO LOGIC: the losses a student writes (course/make_assignment.py cuts the SOLUTION bodies out), the
# target update, and the three updates of one gradient step
def expectile_loss(u: torch.Tensor, expectile: float) -> torch.Tensor:
    """The asymmetric squared loss of expectile regression, averaged over the batch:

        L2^tau(u) = |tau - 1(u < 0)| u^2

    u: (B,), the residuals; expectile: tau in (0, 1). A residual u >= 0 weighs tau, a negative one
    1 - tau, so with tau > 0.5 the minimiser sits above the mean; tau = 0.5 gives half the squared
    error (mean regression). Returns a scalar."""
    # BEGIN SOLUTION
    weight = torch.where(u < 0, 1.0 - expectile, expectile)
    return (weight * u**2).mean()
    # END SOLUTION


def value_loss(q_hat: torch.Tensor, v: torch.Tensor, expectile: float) -> torch.Tensor:
    """V's loss, expectile regression of V(s) onto Q(s,a) at the dataset's actions only:

        L_V(psi) = E_{(s,a)~D} [ L2^tau( Q_hat(s,a) - V_psi(s) ) ]

    q_hat: (B,), Q_hat(s,a) = min(Q_hat1(s,a), Q_hat2(s,a)), the target critics at the batch's (s, a)
    (a constant here); v: (B,), V_psi(s), whose gradient this loss drives; expectile: tau. Use
    expectile_loss. Returns a scalar."""
    # BEGIN SOLUTION
    return expectile_loss(q_hat - v, expectile)
    # END SOLUTION


def q_loss(q1: torch.Tensor, q2: torch.Tensor, rewards: torch.Tensor, terminals: torch.Tensor,
           next_v: torch.Tensor, gamma: float) -> torch.Tensor:
    """The critics' loss, the squared TD error of each critic against a target built from V, not Q:

        y = r + gamma (1 - d) V_psi(s')
        L_Q(theta) = E_D[ (y - Q_theta1(s,a))^2 ] + E_D[ (y - Q_theta2(s,a))^2 ]

    q1, q2: (B,), the two critics at the batch's (s, a); rewards, terminals: (B,), d = 1 only where the
    episode terminated (a time-limit truncation still bootstraps); next_v: (B,), V_psi(s') (a constant
    here). The two critics' losses are summed, as in the paper's code. Returns a scalar."""
    # BEGIN SOLUTION
    y = rewards + gamma * (1.0 - terminals) * next_v
    return ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
    # END SOLUTION


def awr_actor_loss(advantage: torch.Tensor, log_prob: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """Advantage-weighted regression: behaviour cloning in which each dataset action counts
    exp(beta A(s,a)) times, the weight clipped at max_weight (100 in the paper's code):

        L_pi(phi) = -E_{(s,a)~D} [ min( exp(beta A(s,a)), max_weight ) log pi_phi(a|s) ]

    advantage: (B,), A(s,a) = Q_hat(s,a) - V_psi(s) (a constant: no gradient); log_prob: (B,),
    log pi_phi(a|s) of the dataset's actions; beta: the inverse temperature. Returns a scalar."""
    # BEGIN SOLUTION
    weights = torch.exp(beta * advantage).clamp(max=max_weight)
    return -(weights * log_prob).mean()
    # END SOLUTION


@torch.no_grad()
def polyak_update(target_params: list[torch.Tensor], online_params: list[torch.Tensor], tau: float) -> None:
    """theta_hat <- (1 - tau) theta_hat + tau theta, for every tensor in one call: lerp_(theta, tau)
    computes theta_hat + tau (theta - theta_hat), the same thing."""
    torch._foreach_lerp_(target_params, online_params, tau)


class IQL:
    """The networks, one Adam per network, and one gradient step of each, in the order of the paper's
    Algorithm 1 (and CORL): V, then Q and its target, then pi."""

    def __init__(self, obs_dim: int, act_dim: int, args: Args, action_low, action_high, device):
        self.gamma, self.tau, self.expectile = args.gamma, args.tau, args.expectile
        self.beta, self.max_weight = args.beta, args.max_weight
        self.vf = ValueNetwork(obs_dim, args.hidden_dim).to(device)
        self.qf = TwinQ(obs_dim, act_dim, args.hidden_dim).to(device)
        self.qf_target = copy.deepcopy(self.qf).requires_grad_(False)
        self.actor = Actor(obs_dim, act_dim, args.hidden_dim, action_low, action_high,
                           args.deterministic_actor).to(device)
        # Adam with lr 3e-4 for each network (paper, appendix B); fused: one kernel for all of a network's
        # tensors instead of a loop over them (the step is bound by per-call overhead at these sizes)
        self.v_optimizer = torch.optim.Adam(self.vf.parameters(), lr=args.learning_rate, fused=True)
        self.q_optimizer = torch.optim.Adam(self.qf.parameters(), lr=args.learning_rate, fused=True)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.learning_rate, fused=True)
        # the actor's lr decays to 0 along a cosine over the offline steps (paper's code; CORL), except in a
        # fine-tuning run, whose config in the paper's code sets no decay (--actor-lr-schedule)
        schedule = args.actor_lr_schedule
        if schedule == "auto":
            schedule = "constant" if args.online_steps > 0 else "cosine"
        self.actor_scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_optimizer, args.total_steps)
                                if schedule == "cosine" else None)
        # the Polyak update's tensors, listed once rather than at every step
        self.target_params, self.online_params = list(self.qf_target.parameters()), list(self.qf.parameters())

    def update_v(self, obs, q_hat):
        """One step of V on L_V; returns the loss and V(s) before the step (detached)."""
        v = self.vf(obs)
        # L_V = E[ L2^tau(Q_hat(s,a) - V(s)) ]
        loss = value_loss(q_hat, v, self.expectile)
        self.v_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.v_optimizer.step()
        return loss.detach(), v.detach()

    def update_q(self, obs, actions, rewards, next_obs, terminals):
        """One step of both critics on L_Q, bootstrapping from V(s'); returns the loss and Q_1(s,a)."""
        with torch.no_grad():
            # V(s'): the target needs no action at s', so no action outside the data is ever queried
            next_v = self.vf(next_obs)
        q1, q2 = self.qf(obs, actions)
        # L_Q = sum_i E[ (r + gamma (1 - d) V(s') - Q_i(s,a))^2 ]
        loss = q_loss(q1, q2, rewards, terminals, next_v, self.gamma)
        self.q_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.q_optimizer.step()
        return loss.detach(), q1.detach()

    def update_actor(self, obs, actions, advantage):
        """One step of pi on L_pi, weighting the dataset's actions by their advantage (detached); returns
        the loss."""
        # L_pi = -E[ min(exp(beta A(s,a)), max_weight) log pi(a|s) ]
        loss = awr_actor_loss(advantage, self.actor.log_prob(obs, actions), self.beta, self.max_weight)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        if self.actor_scheduler is not None:
            self.actor_scheduler.step()
        return loss.detach()

    def start_online(self, learning_rate: float) -> None:
        """The online phase keeps every loss and setting and holds the actor's learning rate constant, at
        --learning-rate (after a cosine of --actor-lr-schedule cosine, which has reached 0 at the switch)."""
        self.actor_scheduler = None
        for group in self.actor_optimizer.param_groups:
            group["lr"] = learning_rate

    def update(self, obs, actions, rewards, next_obs, terminals) -> dict:
        """One gradient step of each network on a batch. Returns detached tensors (no device sync)."""
        with torch.no_grad():
            # Q_hat(s,a) = min(Q_hat1(s,a), Q_hat2(s,a)), the target critics at the dataset's actions only
            q_hat = torch.min(*self.qf_target(obs, actions))
        # 1. psi <- psi - lr grad L_V(psi)
        loss_v, v = self.update_v(obs, q_hat)
        # 2. theta <- theta - lr grad L_Q(theta), the target from the V just updated
        loss_q, q = self.update_q(obs, actions, rewards, next_obs, terminals)
        # 3. theta_hat <- (1 - tau) theta_hat + tau theta
        polyak_update(self.target_params, self.online_params, self.tau)
        # 4. phi <- phi - lr grad L_pi(phi), A(s,a) = Q_hat(s,a) - V(s) with step 1's V(s) (CORL); the
        # paper's code evaluates V(s) again after V's step: one more pass for one step's difference
        advantage = q_hat - v
        loss_pi = self.update_actor(obs, actions, advantage)

        weights = torch.exp(self.beta * advantage).clamp(max=self.max_weight)
        return {
            "losses/value_loss": loss_v, "losses/q_loss": loss_q, "losses/actor_loss": loss_pi,
            "values/v": v.mean(), "values/q": q.mean(), "values/advantage": advantage.mean(),
            "values/awr_weight_mean": weights.mean(), "values/awr_weight_max": weights.max(),
            # exp(beta A) >= max_weight  <=>  beta A >= log(max_weight)
            "values/awr_weight_clipped_frac": (self.beta * advantage >= math.log(self.max_weight)).float().mean(),
        }


def reward_scaling(data: OfflineDataset, mode: str) -> tuple[float, float]:
    """(scale, shift) with r' = scale * r + shift, as the paper's code and CORL preprocess rewards."""
    if mode == "locomotion":
        spread = float(data.episode_returns.max() - data.episode_returns.min())
        if spread <= 0:
            raise DatasetError(f"--reward-scale locomotion needs episodes with different returns "
                               f"(all {data.num_episodes} have {float(data.episode_returns[0]):.3f}); "
                               f"use --reward-scale none")
        # T = the env's time limit: 1000 on D4RL locomotion (the paper's x1000), also where every episode
        # ends early (random Hopper's last 13-54 steps); the longest episode if the env has no limit
        horizon = data.max_episode_steps or int(data.episode_lengths.max())
        # r' = r T / (max_return - min_return)
        return horizon / spread, 0.0
    if mode == "antmaze":
        return 1.0, -1.0  # r' = r - 1: the sparse 0/1 goal reward becomes -1 per step until the goal
    return 1.0, 0.0


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
        checkpoint = load_checkpoint(args.eval_checkpoint, "iql", ("actor",), device)
        args.dataset_id = checkpoint["args"]["dataset_id"]
    try:
        data = load_dataset(args.dataset_id, device)
        if args.eval_env_kwargs is not None:  # a dynamics-shift test: evaluation only, the data stay
            data.set_eval_env_kwargs(json.loads(args.eval_env_kwargs))
        reward_scale, reward_shift = reward_scaling(data, args.reward_scale) if checkpoint is None else (1.0, 0.0)
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
        actor = Actor(data.obs_dim, data.act_dim, checkpoint["args"]["hidden_dim"], data.action_low,
                      data.action_high, checkpoint["args"]["deterministic_actor"]).to(device)
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

    iql = IQL(data.obs_dim, data.act_dim, args, data.action_low, data.action_high, device)
    actor = iql.actor
    # Normalise and scale once, offline data and online transitions alike: the hot loop only indexes.
    buffer = ReplayBuffer(data, args.online_steps, reward_scale, reward_shift)
    runner = OnlineRunner(online_env, buffer, args.seed) if args.online_steps > 0 else None
    total_steps = args.total_steps + args.online_steps
    print(f"Rewards ({args.reward_scale}): r' = {reward_scale:.4g} r + {reward_shift:g}")
    writer.add_scalar("charts/reward_scale", reward_scale, 0)
    writer.add_scalar("charts/reward_shift", reward_shift, 0)

    history, best_score, train_time, evaluations = [], -math.inf, 0.0, 0
    online_returns, offline_final_score = [], None
    t_start = t_log = t_print = time.time()
    print(f"Training IQL on {args.dataset_id} for {args.total_steps} offline steps"
          + (f" + {args.online_steps} online steps" if args.online_steps else "") + f" on {device} ({run_dir})")
    for step in range(1, total_steps + 1):
        if step > args.total_steps:  # online: one env step with the current policy, then a gradient step
            if step == args.total_steps + 1:
                print(f"Online fine-tuning from step {step}: one env step per gradient step", flush=True)
                writer.add_text("phase", f"online fine-tuning from step {step}", step)
                iql.start_online(args.learning_rate)
            finished = runner.step(actor)
            if finished is not None:
                writer.add_scalar("charts/online_episodic_return", finished, step)
                online_returns.append([step, finished])
        # V, then Q and its target, then pi (IQL.update)
        metrics = iql.update(*buffer.sample(args.batch_size))

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps or step == total_steps
        if step % 1000 == 0 or evaluate_now:  # .item() syncs with the device: only at logging steps
            values = dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))
            for name, value in values.items():
                writer.add_scalar(name, value, step)
            writer.add_scalar("charts/actor_lr", iql.actor_optimizer.param_groups[0]["lr"], step)
            writer.add_scalar("charts/env_steps", buffer.size - data.size, step)
            now = time.time()
            train_time += now - t_log
            t_log = now
            sps = round(step / train_time, 1)
            writer.add_scalar("charts/SPS", sps, step)
            losses = (f"V {values['losses/value_loss']:.4f} Q {values['losses/q_loss']:.4f} "
                      f"pi {values['losses/actor_loss']:.4f}")
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
                    "algorithm": "iql", "actor": actor.state_dict(), "value": iql.vf.state_dict(),
                    "critic": iql.qf.state_dict(), "critic_target": iql.qf_target.state_dict(),
                    "args": asdict(args), "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "reward_scale": reward_scale, "reward_shift": reward_shift,
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    if runner is not None:
        runner.env.close()
    summary = {
        "algorithm": "iql", "dataset_id": args.dataset_id, "seed": args.seed, "steps": total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
        "online_steps": args.online_steps, "reward_scale": reward_scale, "reward_shift": reward_shift,
    }
    if args.online_steps > 0:
        summary.update({"offline_steps": args.total_steps, "online_episode_returns": online_returns,
                        "offline_final_normalized_score": offline_final_score})
    write_summary(run_dir, data, summary)
    writer.close()
