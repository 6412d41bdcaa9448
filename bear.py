"""Bootstrapping Error Accumulation Reduction (BEAR): keep the policy on the support of the data's actions.

Paper: Kumar, Fu, Tucker, Levine, "Stabilizing Off-Policy Q-Learning via Bootstrapping Error Reduction",
NeurIPS 2019, https://arxiv.org/abs/1906.00949. Reference implementation: https://github.com/aviralkumar2907/BEAR
(`algos.py`, class BEAR), called "the authors' code" below.

Offline, a Bellman backup that maximises over actions the data never took backs up the critic's
extrapolation errors, and they compound. BEAR keeps the policy pi_phi inside the *support* of the
behaviour policy pi_beta, not close to its density: the policy may put all its mass on the best actions
the data contain. The distance is a sampled maximum mean discrepancy (MMD) between a few of the policy's
actions and a few of a behaviour model's (a VAE, as in BCQ), held under epsilon by a Lagrange multiplier.

    VAE:     min_omega E[ ||a - D_omega(s, z)||^2 + 0.5 KL(N(mu, sigma) || N(0, I)) ]             (as in bcq.py)
    critics: y = r + gamma max_{a_i ~ pi_phi'(s')} [ lambda min_j Q_j'(s', a_i) + (1 - lambda) max_j Q_j'(s', a_i) ]
    actor:   min_phi E_s[ -min_j E_{a ~ pi_phi(s)} Q_j(s, a) + alpha MMD_k(pi_phi(s), pi_beta(s)) ]
    dual:    max_{alpha >= 0} alpha (E_s[ MMD_k ] - epsilon)   (one gradient step on log alpha per update)
    MMD_k(X, Y)^2 = mean_{x,x'} k(x, x') + mean_{y,y'} k(y, y') - 2 mean_{x,y} k(x, y),
    k(x, y) = exp(-||x - y||_1 / (2 sigma)) (Laplacian) or exp(-||x - y||^2 / (2 sigma)) (Gaussian)

For the first warm_start_steps updates the actor minimises alpha MMD alone (the authors' code): it
learns to imitate the behaviour model's support before the critics are trusted.

Run `python bear.py --help` for the flags; docs/bear.md maps the objective to the lines below.
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

KERNELS = ("laplacian", "gaussian")
# sigma per kernel when --mmd-sigma is not given: the settings the authors' README recommends
DEFAULT_SIGMA = {"laplacian": 10.0, "gaussian": 20.0}


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
    total_steps: int = 4_000
    """gradient steps (the authors' code: 1M; d3rlpy: 1M; 4k for the default Pendulum data, see docs/bear.md)"""
    batch_size: int = 100
    """transitions per gradient step (the authors' code, `train(batch_size=100)`; d3rlpy: 256)"""
    eval_freq: int = 1_000
    """evaluate every this many gradient steps"""
    eval_episodes: int = 10
    """episodes per evaluation, run side by side in a vector env"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass)"""

    # Algorithm-specific arguments
    learning_rate: float = 1e-3
    """Adam learning rate of the VAE, the actor and the critics (the authors' code: torch's default 1e-3)"""
    alpha_learning_rate: float = 1e-3
    """Adam learning rate of log alpha, the dual step (the authors' code; d3rlpy)"""
    gamma: float = 0.99
    """discount (the authors' code)"""
    tau: float = 0.005
    """soft update rate of the target actor and critics (the authors' code)"""
    kernel: str = "laplacian"
    """MMD kernel: laplacian or gaussian (the authors' README recommends both; d3rlpy: laplacian)"""
    mmd_sigma: Optional[float] = None
    """kernel bandwidth sigma, in pre-tanh action units; None = 10 for laplacian, 20 for gaussian (the authors' README)"""
    mmd_samples: int = 5
    """actions drawn from the policy and from the VAE per state for the MMD (the authors' README: 5; their main.py: 10;
    d3rlpy and d4rl_evaluations: 4)"""
    epsilon: float = 0.05
    """epsilon, the MMD threshold of the dual step (the authors' code, `thresh = 0.05`; d3rlpy's alpha_threshold)"""
    log_alpha_init: float = 0.0
    """initial log alpha (d4rl_evaluations and d3rlpy: alpha = 1; the authors' code draws it from N(0, 1))"""
    log_alpha_max: float = 10.0
    """log alpha is clamped to [-5, this] after each dual step (the authors' code: `lagrange_thresh` 10; min -5)"""
    warm_start_steps: int = 1_000
    """the first updates train the actor on alpha MMD alone (the authors' code: 20 epochs, 20k steps with their
    README's eval_freq; d3rlpy and d4rl_evaluations: 40k; 1k for the default Pendulum data)"""
    lam: float = 0.75
    """lambda of the soft clipped double-Q target, lambda min + (1 - lambda) max (the authors' code, from BCQ)"""
    num_candidates: int = 10
    """actions sampled from the target actor per next state in the target (the authors' code; d3rlpy: 10)"""
    eval_candidates: int = 10
    """actions sampled from the actor per state when acting, the one with the highest Q1 taken (the authors' code;
    d3rlpy: 100)"""
    noise_clip: float = 0.5
    """the actor's samples for the MMD and the Q term use N(0, 1) noise clipped to [-c, c] (the authors' code)"""
    kl_weight: float = 0.5
    """weight of the KL term of the VAE loss (the authors' code, from BCQ)"""
    latent_clip: float = 0.5
    """VAE sampling draws the latent from N(0, I) clipped to [-c, c] (the authors' code, from BCQ)"""
    latent_dim: Optional[int] = None
    """size of the VAE's latent; None = 2 x action dim (the authors' code)"""
    vae_hidden_dims: tuple[int, ...] = (750, 750)
    """hidden layers of the VAE's encoder and of its decoder (the authors' code)"""
    hidden_dims: tuple[int, ...] = (400, 300)
    """hidden layers of the actor and of each critic (the authors' code; d3rlpy: 256 256)"""


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
    if args.kernel not in KERNELS:
        errors.append(f"--kernel must be one of {', '.join(KERNELS)} (got {args.kernel!r})")
    if not (math.isfinite(args.epsilon) and args.epsilon > 0):
        errors.append(f"--epsilon must be positive (got {args.epsilon})")
    if args.mmd_sigma is not None and not (math.isfinite(args.mmd_sigma) and args.mmd_sigma > 0):
        errors.append(f"--mmd-sigma must be positive (got {args.mmd_sigma})")
    if args.mmd_samples < 2:  # with one sample per side the MMD compares two points, not two sets
        errors.append(f"--mmd-samples must be at least 2 (got {args.mmd_samples})")
    for name in ("num_candidates", "eval_candidates"):
        if getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    if args.warm_start_steps < 0:
        errors.append(f"--warm-start-steps must be >= 0 (got {args.warm_start_steps})")
    if args.latent_dim is not None and args.latent_dim <= 0:
        errors.append(f"--latent-dim must be positive (got {args.latent_dim})")
    for name in ("hidden_dims", "vae_hidden_dims"):
        if not getattr(args, name) or min(getattr(args, name)) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be one or more positive widths (got {getattr(args, name)})")
    for name in ("learning_rate", "alpha_learning_rate", "latent_clip", "noise_clip"):
        if not getattr(args, name) > 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    if not -5.0 <= args.log_alpha_init <= args.log_alpha_max:
        errors.append(f"--log-alpha-init must be in [-5, --log-alpha-max = {args.log_alpha_max}] (got {args.log_alpha_init})")
    if not 0.0 <= args.lam <= 1.0:
        errors.append(f"--lam must be in [0, 1] (got {args.lam})")
    if not (math.isfinite(args.kl_weight) and args.kl_weight >= 0):
        errors.append(f"--kl-weight must be >= 0 (got {args.kl_weight})")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))


def mlp(in_dim: int, hidden_dims, out_dim: int) -> nn.Sequential:
    layers, d = [], in_dim
    for h in hidden_dims:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, out_dim))


class VAE(nn.Module):
    """Conditional VAE G_omega(s), the behaviour model (bcq.py's): encoder E_omega(s, a) -> N(mu, sigma) over z,
    decoder D_omega(s, z) -> a. BEAR also reads the decoder's pre-tanh output: the MMD is taken there."""

    def __init__(self, obs_dim, act_dim, latent_dim, hidden_dims, latent_clip, action_low, action_high):
        super().__init__()
        self.encoder = mlp(obs_dim + act_dim, hidden_dims, 2 * latent_dim)
        self.decoder = mlp(obs_dim + latent_dim, hidden_dims, act_dim)
        self.latent_dim, self.latent_clip = latent_dim, latent_clip
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)

    def encode(self, obs, action):
        mean, log_std = self.encoder(torch.cat([obs, action], 1)).chunk(2, dim=1)
        return mean, log_std.clamp(-4.0, 15.0)  # clamped for numerical stability (the authors' code)

    def decode_pre_tanh(self, obs, z=None, generator=None):
        if z is None:
            # sampling: z ~ clip(N(0, I), -c, c), so that decoded actions stay where the data is dense
            z = torch.randn(obs.shape[0], self.latent_dim, device=obs.device, generator=generator)
            z = z.clamp(-self.latent_clip, self.latent_clip)
        return self.decoder(torch.cat([obs, z], 1))

    def decode(self, obs, z=None, generator=None):
        # tanh, scaled to the action bounds: every decoded action is a valid one
        return torch.tanh(self.decode_pre_tanh(obs, z, generator)) * self.action_scale + self.action_bias

    def forward(self, obs, action, eps=None):
        """Reconstruct the data's actions: (D_omega(s, z), mu, log sigma), z drawn from E_omega(s, a)."""
        mean, log_std = self.encode(obs, action)
        # z = mu + sigma * eps, eps ~ N(0, I) (reparameterisation: gradients reach mu and sigma)
        z = mean + log_std.exp() * (torch.randn_like(mean) if eps is None else eps)
        return self.decode(obs, z), mean, log_std


class Actor(nn.Module):
    """The policy pi_phi(s): a = tanh(u) scaled to the action bounds, u ~ N(mu_phi(s), sigma_phi(s))."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # keeps sigma in a sane range (the authors' code leaves it free)

    def __init__(self, obs_dim, act_dim, hidden_dims, action_low, action_high):
        super().__init__()
        self.net = mlp(obs_dim, hidden_dims, 2 * act_dim)  # two heads on the last hidden layer: mu and log sigma
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)

    def forward(self, obs):
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)

    def sample(self, obs, n: int, noise_clip: Optional[float] = None, generator=None):
        """n actions per state by reparameterisation: (actions, pre-tanh u), both (B, n, act_dim).
        With noise_clip the N(0, 1) noise is clipped to [-c, c] (the authors' `sample_multiple`)."""
        mean, log_std = self(obs)
        eps = torch.randn(obs.shape[0], n, mean.shape[-1], device=obs.device, generator=generator)
        if noise_clip is not None:
            eps = eps.clamp(-noise_clip, noise_clip)
        # u = mu + sigma * eps, a = tanh(u) * scale + bias
        u = mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps
        return torch.tanh(u) * self.action_scale + self.action_bias, u


class Critic(nn.Module):
    """Q_theta(s, a)."""

    def __init__(self, obs_dim, act_dim, hidden_dims):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden_dims, 1)

    def forward(self, obs, action):
        return self.net(torch.cat([obs, action], -1)).squeeze(-1)


# ALGO LOGIC: the losses a student writes (course/make_assignment.py cuts the SOLUTION bodies out)
def vae_loss(decoded: torch.Tensor, actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor,
             kl_weight: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L(omega) = ||a - D_omega(s, z)||^2 + 0.5 KL( N(mu, sigma^2) || N(0, I) ), each a mean over batch and
    dimensions (bcq.py's vae_loss, the authors' code). Returns (loss, reconstruction term, KL term)."""
    # ||a - D_omega(s, z)||^2
    recon = F.mse_loss(decoded, actions)
    # KL( N(mu, sigma^2) || N(0, I) ) = -1/2 (1 + log sigma^2 - mu^2 - sigma^2)
    kl = (-0.5 * (1.0 + 2.0 * log_std - mean.pow(2) - (2.0 * log_std).exp())).mean()
    return recon + kl_weight * kl, recon, kl


def mmd(x: torch.Tensor, y: torch.Tensor, kernel: str = "laplacian", sigma: float = 10.0) -> torch.Tensor:
    """The sampled MMD between two sets of actions per state, with every pair counted (the authors' estimator):
        MMD(X, Y) = sqrt( mean_{i,i'} k(x_i, x_i') + mean_{j,j'} k(y_j, y_j') - 2 mean_{i,j} k(x_i, y_j) + 1e-6 )
        Laplacian k(x, y) = exp(-||x - y||_1 / (2 sigma)),  Gaussian k(x, y) = exp(-||x - y||_2^2 / (2 sigma))
    x: (B, N, d), y: (B, M, d), the sets of B states; kernel: "laplacian" or "gaussian"; sigma: the bandwidth.
    The means run over all N^2, M^2 and N M pairs, i = i' included. The 1e-6 keeps the square root's
    gradient finite where the sets coincide. Returns (B,)."""
    # BEGIN SOLUTION
    def k(a, b):  # (B, N, d), (B, M, d) -> the kernel's mean over all N x M pairs, (B,)
        diff = a.unsqueeze(2) - b.unsqueeze(1)  # (B, N, M, d)
        dist = diff.abs().sum(-1) if kernel == "laplacian" else diff.pow(2).sum(-1)
        return torch.exp(-dist / (2.0 * sigma)).mean(dim=(1, 2))

    # MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)
    return (k(x, x) + k(y, y) - 2.0 * k(x, y) + 1e-6).sqrt()
    # END SOLUTION


def soft_clipped_target(rewards: torch.Tensor, terminals: torch.Tensor, q1_next: torch.Tensor,
                        q2_next: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """y = r + gamma (1 - d) max_i [ lambda min_j Q_theta'_j(s', a_i) + (1 - lambda) max_j Q_theta'_j(s', a_i) ]
    (bcq.py's soft_clipped_target; here the a_i are n samples of the target actor pi_phi'(s')).
    rewards r, terminals d: (B,); q1_next, q2_next: the two target critics' values at the a_i, (B, n). Returns y, (B,)."""
    # lambda min_j Q'_j + (1 - lambda) max_j Q'_j, for each sampled action
    soft_min = lam * torch.minimum(q1_next, q2_next) + (1.0 - lam) * torch.maximum(q1_next, q2_next)
    # y = r + gamma (1 - d) max_i [...]
    return rewards + gamma * (1.0 - terminals) * soft_min.max(dim=1).values


def actor_loss(q1_pi: torch.Tensor, q2_pi: torch.Tensor, mmd_pi: torch.Tensor, alpha: torch.Tensor,
               warm_start: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """L(phi) = E_s[ -min_j mean_i Q_j(s, a_i) + alpha MMD(s) ],  a_i ~ pi_phi(s), i = 1..N;
    during the warm start L(phi) = E_s[ alpha MMD(s) ] (no Q term: the authors' code).
    q1_pi, q2_pi: the two critics at the policy's N samples, (B, N); mmd_pi: MMD per state, (B,); alpha: the
    multiplier, held fixed (a scalar tensor). Returns (loss, the Q term min_j mean_i Q_j, (B,))."""
    # BEGIN SOLUTION
    # min_j over the critics of the mean over the policy's samples (the authors' `version 0`)
    q_pi = torch.minimum(q1_pi.mean(dim=1), q2_pi.mean(dim=1))
    if warm_start:
        return (alpha * mmd_pi).mean(), q_pi
    return (-q_pi + alpha * mmd_pi).mean(), q_pi
    # END SOLUTION


def alpha_loss(log_alpha: torch.Tensor, mmd_pi: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The dual step's loss: L(log alpha) = -alpha (E_s[MMD(s)] - epsilon), alpha = exp(log alpha), the MMD held
    fixed. A gradient step on it raises alpha while the MMD is above epsilon and lowers it below.
    log_alpha: a scalar tensor that requires grad; mmd_pi: (B,). Returns a scalar."""
    # BEGIN SOLUTION
    return -(log_alpha.exp() * (mmd_pi.detach().mean() - epsilon))
    # END SOLUTION


LOG_ALPHA_MIN = -5.0  # the authors' code clamps log alpha to [-5, lagrange_thresh]


class BEAR:
    """The VAE, the actor, the twin critics, their targets, log alpha and the optimisers; one update."""

    def __init__(self, obs_dim, act_dim, action_low, action_high, args: Args, device):
        latent_dim = args.latent_dim or 2 * act_dim
        self.vae = VAE(obs_dim, act_dim, latent_dim, args.vae_hidden_dims, args.latent_clip,
                       action_low, action_high).to(device)
        self.actor = Actor(obs_dim, act_dim, args.hidden_dims, action_low, action_high).to(device)
        self.q1 = Critic(obs_dim, act_dim, args.hidden_dims).to(device)
        self.q2 = Critic(obs_dim, act_dim, args.hidden_dims).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.q1_target = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_target = copy.deepcopy(self.q2).requires_grad_(False)
        self.log_alpha = torch.tensor(float(args.log_alpha_init), device=device, requires_grad=True)
        self.vae_optimizer = torch.optim.Adam(self.vae.parameters(), lr=args.learning_rate)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.learning_rate)
        self.critic_optimizer = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=args.learning_rate)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=args.alpha_learning_rate)
        self.online = [*self.actor.parameters(), *self.q1.parameters(), *self.q2.parameters()]
        self.targets = [*self.actor_target.parameters(), *self.q1_target.parameters(), *self.q2_target.parameters()]
        self.actor_params = list(self.actor.parameters())
        self.gamma, self.tau, self.lam, self.kl_weight = args.gamma, args.tau, args.lam, args.kl_weight
        self.n, self.n_act, self.n_mmd = args.num_candidates, args.eval_candidates, args.mmd_samples
        self.kernel, self.epsilon, self.noise_clip = args.kernel, args.epsilon, args.noise_clip
        self.sigma = args.mmd_sigma if args.mmd_sigma is not None else DEFAULT_SIGMA.get(args.kernel)
        self.log_alpha_max = args.log_alpha_max

    def update(self, obs, actions, rewards, next_obs, terminals, warm_start: bool = False) -> dict:
        """One update of the authors' `train` loop: the VAE, the critics, the actor, the dual step on
        log alpha, then the target networks. Returns the metrics as tensors (no sync with the device)."""
        metrics = self.update_vae(obs, actions)
        metrics.update(self.update_critics(obs, actions, rewards, next_obs, terminals))
        metrics.update(self.update_actor_and_alpha(obs, warm_start))
        self.update_targets()
        return metrics

    def update_vae(self, obs, actions) -> dict:
        decoded, mean, log_std = self.vae(obs, actions)
        # L(omega) = ||a - D_omega(s, z)||^2 + 0.5 KL(N(mu, sigma) || N(0, I))
        loss, recon, kl = vae_loss(decoded, actions, mean, log_std, self.kl_weight)
        self.vae_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.vae_optimizer.step()
        return {"losses/vae_recon_loss": recon.detach(), "losses/vae_kl_loss": kl.detach()}

    @torch.no_grad()
    def target(self, rewards, next_obs, terminals):
        # a_i ~ pi_phi'(s'), i = 1..n: the target actor's samples (plain N(0, 1) noise, the authors' code)
        a_next, _ = self.actor_target.sample(next_obs, self.n)
        s_next = next_obs.unsqueeze(1).expand(-1, self.n, -1)
        # Q_theta'_j(s', a_i), one row per state, one column per sample
        q1_next, q2_next = self.q1_target(s_next, a_next), self.q2_target(s_next, a_next)
        return soft_clipped_target(rewards, terminals, q1_next, q2_next, self.gamma, self.lam)

    def update_critics(self, obs, actions, rewards, next_obs, terminals) -> dict:
        y = self.target(rewards, next_obs, terminals)
        q1, q2 = self.q1(obs, actions), self.q2(obs, actions)
        # L(theta) = sum_j (y - Q_theta_j(s, a))^2
        loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        return {"losses/critic_loss": loss.detach(), "values/q_data": q1.detach().mean(), "values/q_target": y.mean()}

    def update_actor_and_alpha(self, obs, warm_start: bool) -> dict:
        with torch.no_grad():  # the behaviour model's N samples per state, pre-tanh; the actor does not train the VAE
            s = obs.repeat_interleave(self.n_mmd, dim=0)
            u_beta = self.vae.decode_pre_tanh(s).view(obs.shape[0], self.n_mmd, -1)
        a_pi, u_pi = self.actor.sample(obs, self.n_mmd, self.noise_clip)
        # MMD(pi_phi(s), pi_beta(s)) on pre-tanh actions, where tanh's saturation does not flatten the gradient
        mmd_pi = mmd(u_beta, u_pi, self.kernel, self.sigma)
        s_pi = obs.unsqueeze(1).expand(-1, self.n_mmd, -1)
        # L(phi) = E[ -min_j mean_i Q_j(s, a_i) + alpha MMD ] (alpha MMD alone in the warm start)
        alpha = self.log_alpha.detach().exp()
        loss, q_pi = actor_loss(self.q1(s_pi, a_pi), self.q2(s_pi, a_pi), mmd_pi, alpha, warm_start)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=self.actor_params)  # no gradients into the critics' weights
        self.actor_optimizer.step()

        # the dual step: log alpha <- log alpha - lr * d/d(log alpha) [ -alpha (MMD - epsilon) ], then clamped
        dual = alpha_loss(self.log_alpha, mmd_pi, self.epsilon)
        self.alpha_optimizer.zero_grad(set_to_none=True)
        dual.backward()
        self.alpha_optimizer.step()
        with torch.no_grad():
            self.log_alpha.clamp_(LOG_ALPHA_MIN, self.log_alpha_max)
        with torch.no_grad():  # how far the policy's actions are from the behaviour model's (the authors' log)
            a_beta = torch.tanh(u_beta) * self.actor.action_scale + self.actor.action_bias
            divergence = (a_pi - a_beta).pow(2).sum(-1).mean()
        return {"losses/actor_loss": loss.detach(), "losses/mmd": mmd_pi.detach().mean(),
                "losses/alpha": self.log_alpha.detach().exp(), "losses/alpha_loss": dual.detach(),
                "values/q_policy": q_pi.detach().mean(), "values/action_divergence": divergence}

    @torch.no_grad()
    def update_targets(self) -> None:
        for p, p_target in zip(self.online, self.targets):
            # theta' <- tau theta + (1 - tau) theta', phi' likewise
            p_target.lerp_(p, self.tau)

    @torch.no_grad()
    def act(self, obs, generator=None):
        """pi(s): of eval_candidates samples of the actor (plain N(0, 1) noise), the one with the highest Q1
        (the authors' `select_action`)."""
        a, _ = self.actor.sample(obs, self.n_act, generator=generator)
        best = self.q1(obs.unsqueeze(1).expand(-1, self.n_act, -1), a).argmax(dim=1)
        return a[torch.arange(obs.shape[0], device=obs.device), best]

    def state_dict(self) -> dict:
        return {"vae": self.vae.state_dict(), "actor": self.actor.state_dict(),
                "q1": self.q1.state_dict(), "q2": self.q2.state_dict(), "log_alpha": self.log_alpha.detach().cpu()}

    def load_state_dict(self, checkpoint: dict) -> None:
        for name in ("vae", "actor", "q1", "q2"):
            getattr(self, name).load_state_dict(checkpoint[name])
        with torch.no_grad():
            self.log_alpha.copy_(checkpoint["log_alpha"])

    def eval_policy(self, seeds: list[int], device):
        """act() with its own random stream, seeded from the evaluation's seeds: a rerun, or a reloaded
        checkpoint, samples the same candidates, and evaluating leaves training's stream alone."""
        generator = torch.Generator(device=device).manual_seed(seeds[0])
        return lambda obs: self.act(obs, generator)


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
        checkpoint = load_checkpoint(args.eval_checkpoint, "bear", ("vae", "actor", "q1", "q2", "log_alpha"), device)
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
        agent = BEAR(data.obs_dim, data.act_dim, data.action_low, data.action_high, Args(**checkpoint["args"]), device)
        agent.load_state_dict(checkpoint)
        data.obs_mean, data.obs_std = checkpoint["obs_mean"].to(device), checkpoint["obs_std"].to(device)
        seeds = checkpoint["eval_seeds"]
        returns, scores = evaluate(agent.eval_policy(seeds, device), data, seeds, device, video_dir)
        print(f"{args.eval_checkpoint}: {score_text(returns, scores)}")
        write_summary(run_dir, data, {
            "dataset_id": args.dataset_id, "checkpoint": args.eval_checkpoint, "eval_seeds": seeds,
            "returns": returns.tolist(), "return_mean": float(returns.mean()),
            "normalized_score": None if scores is None else float(scores.mean()),
            "reference": data.ref_source,
        })
        writer.close()
        sys.exit(0)

    agent = BEAR(data.obs_dim, data.act_dim, data.action_low, data.action_high, args, device)
    # Normalise once: the hot loop only indexes.
    observations = data.normalize_obs(data.observations)
    next_observations = data.normalize_obs(data.next_observations)
    actions, rewards, terminals = data.actions, data.rewards, data.terminals
    # values/q_chosen samples its candidates from a stream of its own, so that logging (and thus
    # --eval-freq) never shifts the batches and latents that training draws
    log_generator = torch.Generator(device=device).manual_seed(args.seed)

    history, best_score, train_time, evaluations = [], -math.inf, 0.0, 0
    t_start = t_log = t_print = time.time()
    print(f"Training BEAR on {args.dataset_id} for {args.total_steps} steps on {device} ({run_dir})")
    for step in range(1, args.total_steps + 1):
        idx = torch.randint(0, data.size, (args.batch_size,), device=device)
        # the warm start: the first warm_start_steps updates train the actor on alpha MMD alone
        warm_start = step <= args.warm_start_steps
        metrics = agent.update(observations[idx], actions[idx], rewards[idx], next_observations[idx], terminals[idx],
                               warm_start)

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps
        if step % 1000 == 0 or evaluate_now:  # .item() syncs with the device: only at logging steps
            # Q_theta1 of the actions the acting policy picks on this batch's states
            chosen = agent.act(observations[idx], log_generator)
            metrics["values/q_chosen"] = agent.q1(observations[idx], chosen).mean()
            for name, value in metrics.items():
                writer.add_scalar(name, value.item(), step)
            loss = metrics["losses/critic_loss"]
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
            returns, scores = evaluate(agent.eval_policy(seeds, device), data, seeds, device, video_dir)
            writer.add_scalar("eval/episodic_return", returns.mean(), step)
            if scores is not None:
                writer.add_scalar("eval/normalized_score", scores.mean(), step)
                best_score = max(best_score, float(scores.mean()))
            history.append([step, float(returns.mean()), None if scores is None else float(scores.mean())])
            print(f"step {step}/{args.total_steps} | SPS {sps} | loss {loss.item():.4f} | {score_text(returns, scores)}",
                  flush=True)
            if args.save_model:
                save_checkpoint(os.path.join(run_dir, f"{args.exp_name}.pt"), {
                    "algorithm": "bear", **agent.state_dict(), "args": asdict(args),
                    "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    write_summary(run_dir, data, {
        "algorithm": "bear", "dataset_id": args.dataset_id, "seed": args.seed, "steps": args.total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
    })
    writer.close()
