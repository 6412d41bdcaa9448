"""Conservative Q-Learning (CQL): offline SAC whose critic is pushed down on actions the data lacks.

Paper: Kumar, Zhou, Tucker, Levine, "Conservative Q-Learning for Offline Reinforcement Learning",
NeurIPS 2020, https://arxiv.org/abs/2006.04779 (CQL(H): Eq. 4; importance-sampled logsumexp and the
Lagrangian alpha: Appendix F). Backbone: Haarnoja et al., "Soft Actor-Critic Algorithms and
Applications", 2018, https://arxiv.org/abs/1812.05905.

Off-policy RL on a fixed dataset overestimates the actions the data never tried: the actor picks them
and the Bellman backup copies the error backwards, with no new data to correct it. CQL adds one term
to the critic's loss: push Q down on every action (a soft maximum over a), push it back up on the
dataset's actions. The paper proves for this pair a bound in expectation under the learned policy: for
alpha large enough, E_{a~pi(.|s)}[Q(s,a)] <= V^pi(s) at the dataset's states (Theorem 3.2, pushing down under
pi; 3.3 for the logsumexp, while pi stays near exp(Q)/Z). It does not bound Q pointwise at every (s,a): that
holds for the push-down term alone (Theorem 3.1), given up by the push-up term. With `--cql-alpha 0` this file is offline SAC
with the deterministic backup (no entropy term in the TD target, the default of the CQL code and of
CORL; `--backup-entropy` adds it, as textbook SAC has it): the failure case, kept on purpose.

    min_Q  alpha E_{s~D}[ log sum_a exp Q(s,a) - E_{a~D(a|s)} Q(s,a) ]
           + E_{(s,a,r,s')~D}[ (Q(s,a) - (r + gamma (1-d) E_{a'~pi(.|s')} Qbar(s',a')))^2 ]
    max_pi E_{s~D, a~pi(.|s)}[ min_i Q_i(s,a) - beta log pi(a|s) ]

(beta: SAC's entropy temperature, tuned so that the policy's entropy stays near -dim(A).) With
`--online-steps N` the same update keeps running for N more steps while the policy acts in the dataset's
env and its transitions join the offline data (offline-to-online fine-tuning, alpha unchanged).

Run `python cql.py --help` for the flags; docs/cql.md maps the objective to the lines below.
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
    total_steps: int = 10_000
    """offline gradient steps (CORL: 1M on D4RL; 10k suit the small default Pendulum data, see docs/cql.md, Settings)"""
    batch_size: int = 256
    """transitions per gradient step (CORL)"""
    eval_freq: int = 2_000
    """evaluate every this many gradient steps (offline and online steps count alike)"""
    eval_episodes: int = 10
    """episodes per evaluation, run side by side in a vector env"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass);
    evaluation only: the --online-steps phase collects its data in the dataset's own env, unchanged"""

    # Algorithm-specific arguments
    gamma: float = 0.99
    """discount factor (paper, CORL)"""
    tau: float = 5e-3
    """Polyak rate of the target critics, Qbar <- (1 - tau) Qbar + tau Q (CORL)"""
    policy_lr: float = 3e-4
    """actor Adam learning rate (3e-4 for 10k steps on small data; d3rlpy: 1e-4; CORL: 3e-5, for runs of 1M steps)"""
    q_lr: float = 1e-3
    """critics' Adam learning rate (1e-3 for 10k steps on small data; paper, CORL: 3e-4)"""
    entropy_lr: float = 3e-4
    """Adam learning rate of the entropy temperature beta (SAC, Haarnoja et al. 2018)"""
    hidden_dim: int = 64
    """width of every hidden layer, actor and critics (64 for Pendulum's 3-d states; CORL: 256)"""
    critic_layers: int = 2
    """hidden layers of each Q-network (2x64 for Pendulum; CORL: 3x256)"""
    actor_layers: int = 2
    """hidden layers of the actor (2x64 for Pendulum; CORL: 3x256)"""
    cql_alpha: float = 5.0
    """weight alpha of the conservative penalty (paper: 5; CORL: 10); with --cql-lagrange, its starting value;
    0 without --cql-lagrange = offline SAC with the deterministic backup (the failure case). The usual guide (0.5-1
    for expert data, 1-5 for medium, 5-10 for random or replay data) is tested in docs/cql.md, Choosing alpha"""
    cql_n_actions: int = 5
    """sampled actions per state from each of: uniform, pi(.|s), pi(.|s') (5 for a 1-d action; paper, CORL: 10);
    also the number of actions the max of --cql-max-target-backup is taken over"""
    cql_lagrange: bool = False
    """tune alpha by dual gradient steps so that the CQL gap stays near --cql-target-action-gap (paper, App. F)"""
    cql_target_action_gap: float = 5.0
    """with --cql-lagrange: the target tau of the gap logsumexp_i[Q(s,a_i) - log mu(a_i)] - E_D[Q(s,a)] taken
    over the 3N samples as the paper's code and CORL take it (no -log(3N)), so their values carry over (paper:
    5 or 10; CORL on AntMaze: 0.8); any finite number"""
    cql_alpha_lr: float = 3e-4
    """with --cql-lagrange: Adam learning rate of log(alpha) (CORL: the critics' rate)"""
    cql_max_target_backup: bool = False
    """TD target min_i max_k Qbar_i(s', a'_k) over --cql-n-actions actions a'_k ~ pi(.|s'), as the paper's code
    has it (CORL takes the min over the twins first); both use it on AntMaze. Needs the deterministic backup"""
    backup_entropy: bool = False
    """subtract beta log pi(a'|s') in the TD target, as textbook SAC does (off in the paper's code and CORL: then Q
    estimates reward only and is comparable with the Monte-Carlo return)"""
    compile: bool = False
    """run the loss computations through torch.compile (see docs/cql.md for whether it pays on your machine)"""
    online_steps: int = 0
    """after the offline steps, this many iterations of one env step with the current (sampled) policy and one
    gradient step on the offline data plus the online transitions so far, alpha unchanged (0 = offline only)"""


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
    for name in ("hidden_dim", "critic_layers", "actor_layers", "cql_n_actions"):
        if getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    for name in ("policy_lr", "q_lr", "entropy_lr", "cql_alpha_lr"):
        if not getattr(args, name) > 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    if not (math.isfinite(args.cql_alpha) and args.cql_alpha >= 0):
        errors.append(f"--cql-alpha must be >= 0 (got {args.cql_alpha})")
    elif args.cql_lagrange and args.cql_alpha == 0:
        errors.append("--cql-lagrange needs a positive starting --cql-alpha (got 0.0): alpha is tuned in log space")
    if not math.isfinite(args.cql_target_action_gap):
        errors.append(f"--cql-target-action-gap must be a finite number (got {args.cql_target_action_gap})")
    if args.online_steps < 0:
        errors.append(f"--online-steps must be non-negative (got {args.online_steps})")
    if args.cql_max_target_backup and args.backup_entropy:
        errors.append("--cql-max-target-backup takes no --backup-entropy: a max over sampled actions has no single "
                      "log pi(a'|s') to subtract (the paper's code drops the entropy term there too)")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))


# ALGO LOGIC: the policy, the critics, the losses and the update; a student writes the functions with
# SOLUTION blocks (course/make_assignment.py cuts their bodies out)
def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) of a tanh-Gaussian action a = tanh(u), u ~ N(mu(s), sigma(s)^2) independently per
    dimension j, by the change of variables a_j = tanh(u_j), da_j/du_j = 1 - tanh(u_j)^2:

        log pi(a|s) = sum_j [ log N(u_j; mu_j, sigma_j^2) - log(1 - tanh(u_j)^2) ]

    u, mean, log_std (= log sigma): (..., d). Returns (...). Must stay exact for large |u|, where
    1 - tanh(u)^2 rounds to 0 in float32 (|u| > 9): write log(1 - tanh(u)^2) with a softplus."""
    # BEGIN SOLUTION
    # log N(u; mu, sigma^2) = -(u - mu)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2
    log_normal = -0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    # log(1 - tanh(u)^2) = log(4 / (e^u + e^-u)^2) = 2 (log 2 - u - softplus(-2u)), finite for any u
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (log_normal - log_det).sum(-1)
    # END SOLUTION


def mlp(in_dim: int, hidden_dim: int, layers: int) -> nn.Sequential:
    modules = []
    for i in range(layers):
        modules += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), nn.ReLU()]
    return nn.Sequential(*modules)


class Actor(nn.Module):
    """Tanh-Gaussian policy: a = tanh(u), u ~ N(mu(s), sigma(s)^2). Actions live in [-1, 1]^d; `act`
    scales the deterministic action tanh(mu(s)) to the env's bounds."""

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

    def sample(self, obs: torch.Tensor, n: Optional[int] = None, generator: Optional[torch.Generator] = None):
        """Actions a ~ pi(.|s) and log pi(a|s): shapes (B, d), (B); or with n, n per state: (B, n, d), (B, n).
        The network runs once per state; only the noise is drawn n times (from `generator` if given)."""
        mean, log_std = self(obs)
        if n is not None:
            mean, log_std = mean.unsqueeze(1), log_std.unsqueeze(1)
        shape = mean.shape if n is None else (obs.shape[0], n, mean.shape[-1])
        # u = mu + sigma eps, eps ~ N(0, I): the reparameterisation, so gradients reach mu and sigma
        u = mean + log_std.exp() * torch.randn(shape, device=obs.device, generator=generator)
        return torch.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action tanh(mu(s)), in the env's units (for evaluation)."""
        return torch.tanh(self(obs)[0]) * self.action_scale + self.action_bias

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """An action a ~ pi(.|s), in the env's units (for the online phase's data)."""
        return self.sample(obs)[0] * self.action_scale + self.action_bias


class TwinQ(nn.Module):
    """Q_1 and Q_2, each an MLP on [s, a], stored as stacked weights: one batched matrix product per
    layer evaluates both critics, so the CQL term's many samples cost one pass, not two."""

    def __init__(self, in_dim: int, hidden_dim: int, layers: int, n: int = 2):
        super().__init__()
        sizes = [in_dim] + [hidden_dim] * layers + [1]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation, per critic
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs (M, obs_dim), act (M, act_dim) -> (2, M): Q_1(s, a) and Q_2(s, a)."""
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return x.squeeze(-1)


def cql_logsumexp(q_rand, q_curr, q_next, log_pi_curr, log_pi_next, act_dim: int) -> torch.Tensor:
    """Importance-sampled estimate of log sum_a exp Q(s,a), read as the log of the integral of exp Q(s,a)
    over the action box [-1, 1]^d (paper, App. F), from 3N samples: N uniform on [-1, 1]^d (density
    0.5^d), N from pi(.|s), N from pi(.|s'):

        log int exp Q(s,a) da = log E_{a~mu}[ exp Q(s,a) / mu(a) ]
                             ~= logsumexp_{i=1..3N}[ Q(s,a_i) - log mu(a_i) ] - log(3N)

    mu(a_i) is the density of the proposal a_i came from. q_rand, q_curr, q_next: (..., N), Q at the
    uniform, pi(.|s) and pi(.|s') samples (all evaluated at s); log_pi_curr, log_pi_next: (..., N),
    log pi of the policy samples. Returns (...)."""
    # BEGIN SOLUTION
    # log of the uniform density on [-1, 1]^d: log 0.5^d
    log_unif = -act_dim * math.log(2.0)
    weighted = torch.cat([q_rand - log_unif, q_curr - log_pi_curr, q_next - log_pi_next], dim=-1)
    return torch.logsumexp(weighted, dim=-1) - math.log(weighted.shape[-1])
    # END SOLUTION


def cql_penalty(lse: torch.Tensor, q_data: torch.Tensor) -> torch.Tensor:
    """The CQL gap of each critic, the term alpha multiplies in the critic's loss (Eq. 4):

        gap_i = E_{s~D}[ log sum_a exp Q_i(s,a) - E_{a~D(a|s)} Q_i(s,a) ]

    lse: (2, B), the estimate of log sum_a exp Q_i(s,a) at each batch state; q_data: (2, B), Q_i at the
    dataset's action in that state. Returns (2,), one gap per critic (the batch's mean)."""
    # BEGIN SOLUTION
    return (lse - q_data).mean(dim=1)
    # END SOLUTION


def td_target(rew: torch.Tensor, done: torch.Tensor, next_q: torch.Tensor, gamma: float) -> torch.Tensor:
    """The Bellman target of both critics, with the clipped double-Q of SAC:

        y = r + gamma (1 - d) min_i Qbar_i(s', a'),   a' ~ pi(.|s')

    rew, done: (B,), d = 1 only where the episode terminated (a time-limit truncation still bootstraps);
    next_q: (2, B), the TARGET critics Qbar_1, Qbar_2 at (s', a') (with --backup-entropy minus
    beta log pi(a'|s'); with --cql-max-target-backup their max over sampled a'). Returns (B,)."""
    # BEGIN SOLUTION
    return rew + gamma * (1.0 - done) * next_q.min(dim=0).values
    # END SOLUTION


def actor_loss(log_pi: torch.Tensor, q_pi: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """SAC's policy loss, minimised over the actor:

        L_pi = E_{s~D, a~pi(.|s)}[ beta log pi(a|s) - min_i Q_i(s,a) ]

    log_pi: (B,), log pi(a|s) of one reparameterised action a ~ pi(.|s) per state; q_pi: (2, B), Q_1 and
    Q_2 at (s, a); beta: the entropy temperature (a scalar, treated as a constant here). Returns a scalar."""
    # BEGIN SOLUTION
    return (beta * log_pi - q_pi.min(dim=0).values).mean()
    # END SOLUTION


def temperature_loss(log_beta: torch.Tensor, log_pi: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """SAC's automatic entropy tuning: L_beta = E_{a~pi}[ -beta (log pi(a|s) + Hbar) ], Hbar = -dim(A).
    beta falls while the policy's entropy -E[log pi] is above Hbar, and rises when it is below."""
    return -(log_beta.exp() * (log_pi.detach() + target_entropy)).mean()


def cql_alpha_loss(log_alpha: torch.Tensor, gap: torch.Tensor, target_gap: float) -> torch.Tensor:
    """The Lagrangian's dual step on alpha (paper, App. F): alpha >= 0 maximises alpha (gap - tau), so the
    dual loss to descend is

        L_alpha = -alpha (gap - tau),   alpha = exp(log_alpha)

    (in log alpha, which keeps alpha positive). log_alpha: scalar tensor that requires grad; gap: (2,),
    the CQL gap of each critic, in the convention of tau (logsumexp over the samples without -log(3N));
    the twins' mean gap enters. target_gap: tau. Returns a scalar. alpha rises while the gap is above tau."""
    # BEGIN SOLUTION
    return -log_alpha.exp() * (gap.mean() - target_gap)
    # END SOLUTION


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    # Qbar <- (1 - tau) Qbar + tau Q
    for p_target, p in zip(target.parameters(), online.parameters()):
        p_target.lerp_(p, tau)


class CQL:
    """The networks, optimisers and one gradient step of CQL (or of offline SAC when alpha = 0). Batches
    come as stored, actions in the env's units; the update scales them to [-1, 1]^d for the critics."""

    def __init__(self, obs_dim: int, act_dim: int, args: Args, action_low, action_high, device):
        self.args, self.act_dim = args, act_dim
        self.actor = Actor(obs_dim, act_dim, args.hidden_dim, args.actor_layers, action_low, action_high).to(device)
        self.critic = TwinQ(obs_dim + act_dim, args.hidden_dim, args.critic_layers).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # SAC's automatic entropy tuning: beta = exp(log_beta), target entropy -dim(A) (Haarnoja et al. 2018)
        self.log_beta = torch.zeros((), device=device, requires_grad=True)
        self.target_entropy = -float(act_dim)
        self.log_cql_alpha = torch.tensor(math.log(args.cql_alpha) if args.cql_lagrange else 0.0,
                                          device=device, requires_grad=True)
        # The paper's code takes the logsumexp over its 3N samples without our -log(3N): its gap, the one
        # --cql-target-action-gap speaks of, is ours + log(3N).
        self.log_n_samples = math.log(3 * args.cql_n_actions)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.policy_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=args.q_lr)
        self.beta_optimizer = torch.optim.Adam([self.log_beta], lr=args.entropy_lr)
        self.cql_alpha_optimizer = torch.optim.Adam([self.log_cql_alpha], lr=args.cql_alpha_lr)
        # alpha = 0 without the Lagrangian is offline SAC: skip the sampled actions altogether
        self.use_cql = args.cql_lagrange or args.cql_alpha > 0
        # Logging samples its own actions from its own stream: how often one logs never changes training.
        self.log_generator = torch.Generator(device=device).manual_seed(args.seed)
        self.critic_loss_fn = torch.compile(self.critic_loss) if args.compile else self.critic_loss
        self.policy_losses_fn = torch.compile(self.policy_losses) if args.compile else self.policy_losses

    def unit_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions in the env's units -> [-1, 1]^d, where the actor's samples and the uniform proposal live."""
        return ((actions - self.actor.action_bias) / self.actor.action_scale).clamp(-1.0, 1.0)

    def cql_alpha(self) -> torch.Tensor:
        if self.args.cql_lagrange:
            return self.log_cql_alpha.exp().clamp(0.0, 1e6)
        return torch.tensor(self.args.cql_alpha, device=self.log_cql_alpha.device)

    def sampled_q(self, obs, act, next_obs, generator: Optional[torch.Generator] = None):
        """Q_1, Q_2 at s on the dataset action and on 3N sampled actions, all in ONE pass per critic.
        Returns q (2, B, 1 + 3N) (columns: data, N uniform, N from pi(.|s), N from pi(.|s')) and the
        logsumexp estimate (2, B)."""
        B, N, d = obs.shape[0], self.args.cql_n_actions, self.act_dim
        with torch.no_grad():  # the samples are proposals for the critic's loss: no gradient to the actor
            rand_act = torch.rand(B, N, d, device=obs.device, generator=generator) * 2.0 - 1.0
            curr_act, curr_log_pi = self.actor.sample(obs, N, generator)
            next_act, next_log_pi = self.actor.sample(next_obs, N, generator)
        # every action is evaluated at s, also the ones drawn at s' (as in the paper's code)
        all_act = torch.cat([act.unsqueeze(1), rand_act, curr_act, next_act], dim=1)  # (B, 1 + 3N, d)
        all_obs = obs.unsqueeze(1).expand(-1, 1 + 3 * N, -1)
        q = self.critic(all_obs.reshape(B * (1 + 3 * N), -1), all_act.reshape(B * (1 + 3 * N), d))
        q = q.view(2, B, 1 + 3 * N)
        lse = cql_logsumexp(q[..., 1:1 + N], q[..., 1 + N:1 + 2 * N], q[..., 1 + 2 * N:],
                            curr_log_pi, next_log_pi, d)
        return q, lse

    @torch.no_grad()
    def next_q_target(self, next_obs) -> torch.Tensor:
        """What the TD target bootstraps from, (2, B): the TARGET critics Qbar_i(s', a') at a' ~ pi(.|s')."""
        if self.args.cql_max_target_backup:
            B, K, d = next_obs.shape[0], self.args.cql_n_actions, self.act_dim
            next_act, _ = self.actor.sample(next_obs, K)  # (B, K, d)
            next_q = self.critic_target(next_obs.unsqueeze(1).expand(-1, K, -1).reshape(B * K, -1),
                                        next_act.reshape(B * K, d)).view(2, B, K)
            # max_k Qbar_i(s', a'_k), per critic; td_target then takes the min over i (as the paper's code)
            return next_q.max(dim=-1).values
        next_act, next_log_pi = self.actor.sample(next_obs)
        next_q = self.critic_target(next_obs, next_act)
        if self.args.backup_entropy:
            # soft value: Qbar_i(s', a') - beta log pi(a'|s')
            next_q = next_q - self.log_beta.exp() * next_log_pi
        return next_q

    def critic_loss(self, obs, act, rew, next_obs, done):
        """L_Q = L_TD + alpha sum_i gap_i, and the gaps (2,) (detached)."""
        # y = r + gamma (1 - d) min_i Qbar_i(s', a'),  a' ~ pi(.|s')
        target = td_target(rew, done, self.next_q_target(next_obs), self.args.gamma)
        if not self.use_cql:
            q_data = self.critic(obs, act)
            # L_TD = sum_i E_D[ (Q_i(s,a) - y)^2 ]
            return (q_data - target).pow(2).mean(dim=1).sum(), torch.zeros(2, device=obs.device)
        q, lse = self.sampled_q(obs, act, next_obs)
        q_data = q[..., 0]
        # L_TD = sum_i E_D[ (Q_i(s,a) - y)^2 ]
        td_loss = (q_data - target).pow(2).mean(dim=1).sum()
        # gap_i = E_{s~D}[ log sum_a exp Q_i(s,a) - E_{a~D}[Q_i(s,a)] ], one per critic
        gap = cql_penalty(lse, q_data)
        # L_Q = L_TD + alpha sum_i gap_i   (with the Lagrangian: alpha (gap_i - tau), same gradient in Q)
        return td_loss + self.cql_alpha().detach() * gap.sum(), gap.detach()

    def policy_losses(self, obs):
        """L_pi and L_beta on one reparameterised action per state, and its log pi (detached)."""
        act, log_pi = self.actor.sample(obs)
        beta = self.log_beta.exp().detach()
        # L_pi = E_{s~D, a~pi}[ beta log pi(a|s) - min_i Q_i(s,a) ]
        loss_pi = actor_loss(log_pi, self.critic(obs, act), beta)
        # L_beta = E_{a~pi}[ -beta (log pi(a|s) + Hbar) ],  Hbar = -dim(A)
        loss_beta = temperature_loss(self.log_beta, log_pi, self.target_entropy)
        return loss_pi, loss_beta, log_pi.detach()

    def update(self, obs, act, rew, next_obs, done) -> dict:
        """One gradient step on a batch as stored (actions in the env's units). Returns detached tensors, no sync."""
        # the critics see actions in [-1, 1]^d, like the actor's samples and the uniform proposal
        act = self.unit_actions(act)
        # 1. the critics: descend on L_TD + alpha sum_i gap_i
        critic_loss, gap = self.critic_loss_fn(obs, act, rew, next_obs, done)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        metrics = {"critic_loss": critic_loss.detach()}
        if self.args.cql_lagrange:
            # 2. with the Lagrangian: a dual step on alpha, the gap taken in the paper's code's convention
            alpha_loss = cql_alpha_loss(self.log_cql_alpha, gap + self.log_n_samples,
                                        self.args.cql_target_action_gap)
            self.cql_alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.cql_alpha_optimizer.step()
            metrics["alpha_loss"] = alpha_loss.detach()

        # 3. the actor and the entropy temperature
        loss_pi, loss_beta, log_pi = self.policy_losses_fn(obs)
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.beta_optimizer.zero_grad(set_to_none=True)
        (loss_pi + loss_beta).backward()  # the critic's gradients from this are cleared at its next step
        self.actor_optimizer.step()
        self.beta_optimizer.step()

        # 4. Qbar <- (1 - tau) Qbar + tau Q
        polyak_update(self.critic_target, self.critic, self.args.tau)
        metrics.update(actor_loss=loss_pi.detach(), entropy=-log_pi.mean())
        return metrics

    @torch.no_grad()
    def probe(self, obs, act, next_obs) -> dict:
        """What the theory talks about, on one batch: mean Q (of the twins) on dataset, uniform and
        policy actions, and the CQL gap in the convention of --cql-target-action-gap. Runs at logging
        steps only, in every mode (alpha = 0 too), on the logging stream (training's is untouched)."""
        q, lse = self.sampled_q(obs, self.unit_actions(act), next_obs, self.log_generator)
        N = self.args.cql_n_actions
        return {"q_data": q[..., 0].mean(), "q_random": q[..., 1:1 + N].mean(),
                "q_policy": q[..., 1 + N:1 + 2 * N].mean(),
                "cql_gap": (lse + self.log_n_samples - q[..., 0]).mean()}


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
        action = actor.explore(obs_t[None])[0].cpu().numpy().astype(self.env.action_space.dtype)
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        self.buffer.add(self.obs, action, reward, next_obs, terminated)
        self.episode_return += float(reward)
        if not (terminated or truncated):
            self.obs = next_obs
            return None
        finished, self.episode_return = self.episode_return, 0.0
        self.obs, _ = self.env.reset()
        return finished


# TRY NOT TO MODIFY: the Monte-Carlo returns behind values/mc_return, evaluation, checkpoints and logging
def discounted_returns(data: OfflineDataset, gamma: float) -> torch.Tensor:
    """The dataset's Monte-Carlo return of every transition, G_t = r_t + gamma G_{t+1} within its episode.

    A terminated episode ends with G_T = 0. A truncated one lacks its tail gamma^(T-t) V(s_T), which no
    return in the data measures: we estimate V(s_T) as the mean reward of the episode's last
    min(T, 1/(1-gamma)) steps, continued forever. Exact when an episode ends in a steady state (a
    pendulum balanced or spinning); otherwise an estimate whose error shrinks as gamma^(T-t)."""
    rewards = data.rewards.double().cpu().numpy()
    truncated = data.truncations.cpu().numpy()
    out = np.empty_like(rewards)
    window = int(round(1.0 / (1.0 - gamma)))
    for start, length in zip(data.episode_starts.tolist(), data.episode_lengths.tolist()):
        r = rewards[start:start + length]
        g = r[-min(length, window):].mean() / (1.0 - gamma) if truncated[start + length - 1] else 0.0
        for t in range(length - 1, -1, -1):
            # G_t = r_t + gamma G_{t+1}
            g = r[t] + gamma * g
            out[start + t] = g
    return torch.as_tensor(out, dtype=torch.float32, device=data.rewards.device)


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
        checkpoint = load_checkpoint(args.eval_checkpoint, "cql", ("actor", "critic"), device)
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

    agent = CQL(data.obs_dim, data.act_dim, args, data.action_low, data.action_high, device)
    actor = agent.actor
    # The offline data, then room for the online transitions; observations normalised once here.
    buffer = ReplayBuffer(data, args.online_steps)
    runner = OnlineRunner(online_env, buffer, args.seed) if args.online_steps > 0 else None
    total_steps = args.total_steps + args.online_steps
    mc_returns = discounted_returns(data, args.gamma)  # once per dataset, for values/mc_return

    history, best_score, train_time, evaluations = [], -math.inf, 0.0, 0
    online_returns, offline_final_score = [], None
    t_start = t_log = t_print = time.time()
    mode = "offline SAC (alpha = 0)" if not agent.use_cql else "CQL"
    print(f"Training {mode} on {args.dataset_id} for {args.total_steps} offline steps"
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
        metrics = agent.update(*buffer.sample(args.batch_size))

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps or step == total_steps
        if step % 1000 == 0 or evaluate_now:  # .item() syncs with the device: only at logging steps
            # values/* on a batch of the offline data, drawn from the logging stream, beside its MC return
            idx = torch.randint(0, data.size, (args.batch_size,), device=device, generator=agent.log_generator)
            metrics.update(agent.probe(buffer.observations[idx], buffer.actions[idx], buffer.next_observations[idx]))
            metrics.update(alpha=agent.cql_alpha() if agent.use_cql else torch.zeros(()),
                           entropy_temperature=agent.log_beta.exp())
            values = {k: round(v.item(), 4) for k, v in metrics.items()}
            values["mc_return"] = round(mc_returns[idx].mean().item(), 4)
            for k, v in values.items():
                writer.add_scalar(f"values/{k}" if k.startswith(("q_", "mc_")) else f"losses/{k}", v, step)
            writer.add_scalar("charts/env_steps", buffer.size - data.size, step)
            now = time.time()
            train_time += now - t_log
            t_log = now
            sps = round(step / train_time, 1)
            writer.add_scalar("charts/SPS", sps, step)
            line = (f"step {step}/{total_steps} | SPS {sps} | Q(s,a_data) {values['q_data']:.1f} "
                    f"| MC return {values['mc_return']:.1f} | gap {values['cql_gap']:.2f}")
            if now - t_print > 15 and not evaluate_now:  # a sign of life between evaluations
                print(line, flush=True)
                t_print = now

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
            if step == args.total_steps:
                offline_final_score = history[-1][2]
            print(f"{line} | {score_text(returns, scores)}", flush=True)
            if args.save_model:
                save_checkpoint(os.path.join(run_dir, f"{args.exp_name}.pt"), {
                    "algorithm": "cql", "actor": actor.state_dict(), "critic": agent.critic.state_dict(),
                    "critic_target": agent.critic_target.state_dict(), "log_beta": agent.log_beta.detach().cpu(),
                    "log_cql_alpha": agent.log_cql_alpha.detach().cpu(), "args": asdict(args),
                    "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    if runner is not None:
        runner.env.close()
    summary = {
        "algorithm": "cql", "dataset_id": args.dataset_id, "seed": args.seed, "steps": total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
        "final_values": values, "online_steps": args.online_steps,
    }
    if args.online_steps > 0:
        summary.update({"offline_steps": args.total_steps, "online_episode_returns": online_returns,
                        "offline_final_normalized_score": offline_final_score})
    write_summary(run_dir, data, summary)
    writer.close()
