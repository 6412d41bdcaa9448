"""Batch-Constrained deep Q-learning (BCQ): act only with actions the data's behaviour policy would take.

Paper: Fujimoto, Meger, Precup, "Off-Policy Deep Reinforcement Learning without Exploration", ICML 2019,
https://arxiv.org/abs/1812.02900. Reference implementation: https://github.com/sfujim/BCQ (continuous_BCQ).

BCQ constrains the policy, not the value: a conditional VAE G_omega(s) learns the dataset's actions, a
perturbation network xi_phi(s, a) nudges each VAE sample by at most Phi, and the policy picks, among n
perturbed samples, the one the critic Q_theta1 likes best. The Q-function is thus never asked about
actions far from the data. With Phi = 0 BCQ chooses among VAE samples only (weighted imitation).

    VAE:    min_omega E_{(s,a)~D} [ ||a - D_omega(s, z)||^2 + 0.5 KL(N(mu, sigma) || N(0, I)) ],  z ~ N(mu, sigma)
    policy: pi(s) = argmax_{a_i + xi_phi(s, a_i)} Q_theta1(s, a_i + xi_phi(s, a_i)),  a_i ~ G_omega(s), i = 1..n
    critic: y = r + gamma max_{a_i} [ lambda min_j Q_theta'_j(s', a_i) + (1 - lambda) max_j Q_theta'_j(s', a_i) ]
            (a_i the n perturbed VAE samples at s'),  min_theta sum_j (y - Q_theta_j(s, a))^2
    actor:  max_phi E_{s~D, a~G_omega(s)} [ Q_theta1(s, a + xi_phi(s, a)) ]

Run `python bcq.py --help` for the flags; docs/bcq.md maps the objective to the lines below.
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
    total_steps: int = 5_000
    """gradient steps (Fujimoto's code: 1M, d3rlpy's reproduction: 500k; 5k, about 3.5 minutes of one CPU core, for the
    default Pendulum data, see docs/bcq.md)"""
    batch_size: int = 100
    """transitions per gradient step (Fujimoto 2019 and its code; d3rlpy's reproduction)"""
    eval_freq: int = 1_000
    """evaluate every this many gradient steps"""
    eval_episodes: int = 10
    """episodes per evaluation, run side by side in a vector env"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass)"""

    # Algorithm-specific arguments
    learning_rate: float = 1e-3
    """Adam learning rate of the VAE, the perturbation network and the critics (Fujimoto's code; d3rlpy's reproduction)"""
    gamma: float = 0.99
    """discount (Fujimoto 2019 and its code)"""
    tau: float = 0.005
    """soft update rate of the target networks (Fujimoto 2019 and its code)"""
    phi: float = 0.05
    """Phi, the bound of the perturbation in half-widths of the action range, in [0, 2] (paper: 0.05); 0 = choose among VAE samples only"""
    lam: float = 0.75
    """lambda of the soft clipped double-Q target, lambda min + (1 - lambda) max (paper: 0.75)"""
    num_candidates: int = 10
    """n, VAE samples per next state in the target (paper and its code: 10; d3rlpy: 100)"""
    eval_candidates: int = 10
    """VAE samples per state when acting (paper: n = 10; Fujimoto's code and d3rlpy: 100)"""
    kl_weight: float = 0.5
    """weight of the KL term of the VAE loss (Fujimoto's code; d3rlpy's beta)"""
    latent_clip: float = 0.5
    """sampling draws the latent from N(0, I) clipped to [-c, c] (Fujimoto's code)"""
    latent_dim: Optional[int] = None
    """size of the VAE's latent; None = 2 x action dim (Fujimoto's code)"""
    vae_hidden_dims: tuple[int, ...] = (750, 750)
    """hidden layers of the VAE's encoder and of its decoder (paper; Fujimoto's code)"""
    hidden_dims: tuple[int, ...] = (400, 300)
    """hidden layers of the perturbation network and of each critic (paper; Fujimoto's code; d3rlpy's default: 256 256)"""


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
    for name in ("num_candidates", "eval_candidates"):
        if getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    if args.latent_dim is not None and args.latent_dim <= 0:
        errors.append(f"--latent-dim must be positive (got {args.latent_dim})")
    for name in ("hidden_dims", "vae_hidden_dims"):
        if not getattr(args, name) or min(getattr(args, name)) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be one or more positive widths (got {getattr(args, name)})")
    for name in ("learning_rate", "latent_clip"):
        if not getattr(args, name) > 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    # Phi is in half-widths of the action range: at Phi = 2 every action is in reach from any sample,
    # where (with many candidates) BCQ approaches Q-learning, as the paper notes; 0 is Q-weighted imitation.
    if not 0.0 <= args.phi <= 2.0:
        errors.append(f"--phi must be in [0, 2] (got {args.phi})")
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
    """Conditional VAE G_omega(s): encoder E_omega(s, a) -> N(mu, sigma) over z, decoder D_omega(s, z) -> a."""

    def __init__(self, obs_dim, act_dim, latent_dim, hidden_dims, latent_clip, action_low, action_high):
        super().__init__()
        self.encoder = mlp(obs_dim + act_dim, hidden_dims, 2 * latent_dim)
        self.decoder = mlp(obs_dim + latent_dim, hidden_dims, act_dim)
        self.latent_dim, self.latent_clip = latent_dim, latent_clip
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)

    def encode(self, obs, action):
        mean, log_std = self.encoder(torch.cat([obs, action], 1)).chunk(2, dim=1)
        return mean, log_std.clamp(-4.0, 15.0)  # clamped for numerical stability (Fujimoto's code)

    def decode(self, obs, z=None, generator=None):
        if z is None:
            # sampling: z ~ clip(N(0, I), -c, c), so that decoded actions stay where the data is dense
            z = torch.randn(obs.shape[0], self.latent_dim, device=obs.device, generator=generator)
            z = z.clamp(-self.latent_clip, self.latent_clip)
        # tanh, scaled to the action bounds: every decoded action is a valid one
        return torch.tanh(self.decoder(torch.cat([obs, z], 1))) * self.action_scale + self.action_bias

    def forward(self, obs, action, eps=None):
        """Reconstruct the data's actions: (D_omega(s, z), mu, log sigma), z drawn from E_omega(s, a)."""
        mean, log_std = self.encode(obs, action)
        # z = mu + sigma * eps, eps ~ N(0, I) (reparameterisation: gradients reach mu and sigma)
        z = mean + log_std.exp() * (torch.randn_like(mean) if eps is None else eps)
        return self.decode(obs, z), mean, log_std


class Perturbation(nn.Module):
    """The actor xi_phi(s, a): a correction of a VAE sample, bounded by Phi times the action scale."""

    def __init__(self, obs_dim, act_dim, hidden_dims, phi, action_low, action_high):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden_dims, act_dim)
        self.phi = phi
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_low", action_low.clone())
        self.register_buffer("action_high", action_high.clone())

    def forward(self, obs, action):
        """Returns (a + xi_phi(s, a) clipped to the action bounds, xi_phi(s, a))."""
        f = self.net(torch.cat([obs, action], 1))
        return perturbed_action(action, f, self.phi, self.action_scale, self.action_low, self.action_high)


class Critic(nn.Module):
    """Q_theta(s, a)."""

    def __init__(self, obs_dim, act_dim, hidden_dims):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden_dims, 1)

    def forward(self, obs, action):
        return self.net(torch.cat([obs, action], 1)).squeeze(-1)


# ALGO LOGIC: the losses and the target a student writes (course/make_assignment.py cuts the SOLUTION bodies out)
def vae_loss(decoded: torch.Tensor, actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor,
             kl_weight: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L(omega) = ||a - D_omega(s, z)||^2 + 0.5 KL( N(mu, sigma^2) || N(0, I) ),  z = mu + sigma * eps.
    decoded: D_omega(s, z), actions: the data's a, both (B, act_dim); mean, log_std: mu and log sigma
    from the encoder E_omega(s, a), both (B, latent_dim); kl_weight: the 0.5.
    Per latent dimension, KL( N(mu, sigma^2) || N(0, 1) ) = -1/2 (1 + log sigma^2 - mu^2 - sigma^2).
    Each term is a mean over the batch and the dimensions (Fujimoto's code), not a sum.
    Returns (loss, reconstruction term, KL term); the two terms are logged apart."""
    # BEGIN SOLUTION
    # ||a - D_omega(s, z)||^2
    recon = F.mse_loss(decoded, actions)
    # KL( N(mu, sigma^2) || N(0, I) ) = -1/2 (1 + log sigma^2 - mu^2 - sigma^2)
    kl = (-0.5 * (1.0 + 2.0 * log_std - mean.pow(2) - (2.0 * log_std).exp())).mean()
    return recon + kl_weight * kl, recon, kl
    # END SOLUTION


def perturbed_action(actions: torch.Tensor, f: torch.Tensor, phi: float, action_scale: torch.Tensor,
                     action_low: torch.Tensor, action_high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a + xi_phi(s, a), clipped to [low, high], with xi_phi(s, a) = Phi * scale * tanh(f_phi(s, a)): a
    correction of at most Phi half-widths of the action range in each dimension.
    actions: the VAE samples a, f: the perturbation network's raw output f_phi(s, a), both (N, act_dim);
    phi: Phi; action_scale (the half-width), action_low, action_high: (act_dim,).
    Returns (the perturbed actions, xi), both (N, act_dim)."""
    # BEGIN SOLUTION
    # xi_phi(s, a) in [-Phi, Phi] x scale
    xi = phi * action_scale * torch.tanh(f)
    # a + xi_phi(s, a), kept a valid action
    return torch.clamp(actions + xi, action_low, action_high), xi
    # END SOLUTION


def soft_clipped_target(rewards: torch.Tensor, terminals: torch.Tensor, q1_next: torch.Tensor,
                        q2_next: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """y = r + gamma (1 - d) max_i [ lambda min_j Q_theta'_j(s', a_i) + (1 - lambda) max_j Q_theta'_j(s', a_i) ]
    rewards r, terminals d (1.0 where the episode terminated at s'): (B,); q1_next, q2_next: the two
    target critics' values at the n perturbed VAE samples a_i of each next state s', (B, n).
    Only a termination stops bootstrapping. Returns y, (B,)."""
    # BEGIN SOLUTION
    # lambda min_j Q'_j + (1 - lambda) max_j Q'_j, for each candidate
    soft_min = lam * torch.minimum(q1_next, q2_next) + (1.0 - lam) * torch.maximum(q1_next, q2_next)
    # y = r + gamma (1 - d) max_i [...]
    return rewards + gamma * (1.0 - terminals) * soft_min.max(dim=1).values
    # END SOLUTION


def actor_loss(q1_perturbed: torch.Tensor) -> torch.Tensor:
    """L(phi) = -E_{s~D, a~G_omega(s)} [ Q_theta1(s, a + xi_phi(s, a)) ]: minimising it raises Q_theta1 at
    the perturbed actions. q1_perturbed: Q_theta1(s, a + xi_phi(s, a)) on the batch, (B,). Returns a scalar."""
    # BEGIN SOLUTION
    return -q1_perturbed.mean()
    # END SOLUTION


# The target scores its B*n candidate rows in blocks of whole states (at least one), at most this many
# rows per block. At the defaults (100 states x 10) that is one block. At d3rlpy's setting (256 x 100),
# one pass over all 25,600 rows makes 26 MB activations at every layer, which the C allocator hands back
# to the OS and page-faults in again at each step; 1024-row blocks stay in cache and reuse their memory,
# 1.6x faster on a CPU (docs/bcq.md, Speed). Same result: each state's candidates stay together.
BLOCK_ROWS = 1024


class BCQ:
    """The VAE, the perturbation network, the twin critics, their targets and optimisers; one update."""

    def __init__(self, obs_dim, act_dim, action_low, action_high, args: Args, device):
        latent_dim = args.latent_dim or 2 * act_dim
        self.vae = VAE(obs_dim, act_dim, latent_dim, args.vae_hidden_dims, args.latent_clip,
                       action_low, action_high).to(device)
        self.actor = Perturbation(obs_dim, act_dim, args.hidden_dims, args.phi, action_low, action_high).to(device)
        self.q1 = Critic(obs_dim, act_dim, args.hidden_dims).to(device)
        self.q2 = Critic(obs_dim, act_dim, args.hidden_dims).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.q1_target = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_target = copy.deepcopy(self.q2).requires_grad_(False)
        self.vae_optimizer = torch.optim.Adam(self.vae.parameters(), lr=args.learning_rate)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.learning_rate)
        self.critic_optimizer = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=args.learning_rate)
        self.online = [*self.actor.parameters(), *self.q1.parameters(), *self.q2.parameters()]
        self.targets = [*self.actor_target.parameters(), *self.q1_target.parameters(), *self.q2_target.parameters()]
        self.actor_params = list(self.actor.parameters())
        self.gamma, self.tau, self.lam, self.phi = args.gamma, args.tau, args.lam, args.phi
        self.kl_weight, self.n, self.n_act = args.kl_weight, args.num_candidates, args.eval_candidates

    @torch.no_grad()
    def candidates(self, obs, n: int, actor: Perturbation, generator=None):
        """n perturbed VAE samples per state, all B*n in one forward pass per network: (B*n, obs), (B*n, act)."""
        obs = obs.repeat_interleave(n, dim=0)
        # a_i ~ G_omega(s), then a_i + xi_phi(s, a_i)
        actions, _ = actor(obs, self.vae.decode(obs, generator=generator))
        return obs, actions

    @torch.no_grad()
    def target(self, rewards, next_obs, terminals):
        q1_next, q2_next = [], []
        # blocks of whole states, at most BLOCK_ROWS candidate rows each; one pass per network per block
        for s in next_obs.split(max(1, BLOCK_ROWS // self.n)):
            # a_i + xi_phi'(s', a_i), a_i ~ G_omega(s'): the current VAE, the target perturbation network
            s2, a2 = self.candidates(s, self.n, self.actor_target)
            # Q_theta'_j(s', a_i), one row per state, one column per candidate
            q1_next.append(self.q1_target(s2, a2).view(-1, self.n))
            q2_next.append(self.q2_target(s2, a2).view(-1, self.n))
        return soft_clipped_target(rewards, terminals, torch.cat(q1_next), torch.cat(q2_next), self.gamma, self.lam)

    @torch.no_grad()
    def act(self, obs, generator=None):
        """pi(s): the candidate with the highest Q_theta1 among eval_candidates perturbed VAE samples."""
        batch = obs.shape[0]
        s, a = self.candidates(obs, self.n_act, self.actor, generator)
        # argmax_i Q_theta1(s, a_i + xi_phi(s, a_i))
        best = self.q1(s, a).view(batch, self.n_act).argmax(dim=1)
        return a.view(batch, self.n_act, -1)[torch.arange(batch, device=obs.device), best]

    def update(self, obs, actions, rewards, next_obs, terminals) -> dict:
        """One training iteration of the paper's Algorithm 1: the VAE, the critics, the actor, then the
        target networks. Returns the metrics as tensors (no sync with the device)."""
        metrics = self.update_vae(obs, actions)
        metrics.update(self.update_critics(obs, actions, rewards, next_obs, terminals))
        metrics.update(self.update_actor(obs))
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

    def update_critics(self, obs, actions, rewards, next_obs, terminals) -> dict:
        y = self.target(rewards, next_obs, terminals)
        q1, q2 = self.q1(obs, actions), self.q2(obs, actions)
        # L(theta) = sum_j (y - Q_theta_j(s, a))^2
        loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        return {"losses/critic_loss": loss.detach(), "values/q_data": q1.detach().mean()}

    def update_actor(self, obs) -> dict:
        with torch.no_grad():
            sampled = self.vae.decode(obs)  # a ~ G_omega(s); the actor's loss does not train the VAE
        perturbed, xi = self.actor(obs, sampled)
        # L(phi) = -E[ Q_theta1(s, a + xi_phi(s, a)) ]
        loss = actor_loss(self.q1(obs, perturbed))
        if self.phi > 0:  # with Phi = 0 the perturbation is 0 whatever phi is: nothing to train
            self.actor_optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=self.actor_params)  # no gradients into the critic's weights
            self.actor_optimizer.step()
        ratio = (xi.detach().abs() / (self.phi * self.actor.action_scale)).mean() if self.phi > 0 else xi.new_zeros(())
        return {"losses/actor_loss": loss.detach(), "values/perturbation_ratio": ratio}

    @torch.no_grad()
    def update_targets(self) -> None:
        for p, p_target in zip(self.online, self.targets):
            # theta' <- tau theta + (1 - tau) theta', phi' likewise
            p_target.lerp_(p, self.tau)

    def state_dict(self) -> dict:
        return {"vae": self.vae.state_dict(), "actor": self.actor.state_dict(),
                "q1": self.q1.state_dict(), "q2": self.q2.state_dict()}

    def load_state_dict(self, checkpoint: dict) -> None:
        for name in ("vae", "actor", "q1", "q2"):
            getattr(self, name).load_state_dict(checkpoint[name])

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
        checkpoint = load_checkpoint(args.eval_checkpoint, "bcq", ("vae", "actor", "q1", "q2"), device)
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
        agent = BCQ(data.obs_dim, data.act_dim, data.action_low, data.action_high, Args(**checkpoint["args"]), device)
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

    agent = BCQ(data.obs_dim, data.act_dim, data.action_low, data.action_high, args, device)
    # Normalise once: the hot loop only indexes.
    observations = data.normalize_obs(data.observations)
    next_observations = data.normalize_obs(data.next_observations)
    actions, rewards, terminals = data.actions, data.rewards, data.terminals
    # values/q_chosen samples its candidates from a stream of its own, so that logging (and thus
    # --eval-freq) never shifts the batches and latents that training draws
    log_generator = torch.Generator(device=device).manual_seed(args.seed)

    history, best_score, train_time, evaluations = [], -math.inf, 0.0, 0
    t_start = t_log = t_print = time.time()
    print(f"Training BCQ on {args.dataset_id} for {args.total_steps} steps on {device} ({run_dir})")
    for step in range(1, args.total_steps + 1):
        idx = torch.randint(0, data.size, (args.batch_size,), device=device)
        metrics = agent.update(observations[idx], actions[idx], rewards[idx], next_observations[idx], terminals[idx])

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps
        if step % 1000 == 0 or evaluate_now:  # .item() syncs with the device: only at logging steps
            # Q_theta1 of the actions the policy picks on this batch's states
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
                    "algorithm": "bcq", **agent.state_dict(), "args": asdict(args),
                    "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    write_summary(run_dir, data, {
        "algorithm": "bcq", "dataset_id": args.dataset_id, "seed": args.seed, "steps": args.total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
    })
    writer.close()
