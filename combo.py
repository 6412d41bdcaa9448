"""Conservative Offline Model-Based Policy Optimization (COMBO): SAC on real and model transitions, its
critic pushed down on the model's state-action pairs and up on the dataset's.

Paper: Yu, Kumar, Rafailov, Rajeswaran, Levine, Finn, "COMBO: Conservative Offline Model-Based Policy
Optimization", NeurIPS 2021, https://arxiv.org/abs/2102.08363 (Eq. 2; Algorithm 1). Reference code:
OfflineRL-Kit (offlinerlkit/policy/model_based/combo.py, run_example/run_combo.py). The model and the
rollouts are mopo.py's (Yu et al. 2020, https://arxiv.org/abs/2005.13239), copied here unchanged; the
regulariser is cql.py's (Kumar et al. 2020, https://arxiv.org/abs/2006.04779) at other states.

MOPO makes the model's rewards pessimistic by the ensemble's uncertainty u(s,a), and so depends on how
well u measures the model's error. COMBO drops u: the model's rewards enter the TD target unchanged, and
the conservatism is CQL's, moved. CQL pushes Q down at the dataset's states on every action (a soft
maximum over a) and up on the dataset's actions; COMBO pushes Q down on the state-action pairs the
policy visits in the model, rho(s,a) = d^pi_M(s) pi(a|s), and up on the dataset's pairs:

    min_Q  alpha ( E_{s~d_M, a~rho(a|s)}[ Q(s,a) ] - E_{(s,a)~D}[ Q(s,a) ] )
           + E_{(s,a,r,s')~d_f}[ (Q(s,a) - (r + gamma (1-d) min_j Qbar_j(s',a')))^2 ]
    max_pi E_{s~d_f, a~pi(.|s)}[ min_i Q_i(s,a) - beta log pi(a|s) ]

with d_f a mix of real transitions (a fraction f) and model transitions, and the push-down taken, as
in cql.py and OfflineRL-Kit, as the importance-sampled log sum_a exp Q(s,a) at the model's states s.
The paper (Section 4) shows that, for alpha large enough and rollouts that differ enough from the data, the
policy's value under this Q lower-bounds its true value over start states, and can be less conservative than CQL's.
(beta: SAC's entropy temperature; alpha is the paper's beta.)

Run `python combo.py --help` for the flags; docs/combo.md maps the objective to the lines below.
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
from typing import Callable, Literal, Optional

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
    """save a checkpoint (policy, critics and the dynamics ensemble) to runs/{run_name}/{exp_name}.pt at each
    evaluation and at the end"""
    eval_checkpoint: Optional[str] = None
    """evaluate this checkpoint (a .pt file written by --save-model) and exit, without training"""
    dataset_id: str = DEFAULT_DATASET_ID
    """Minari dataset id: a local one (built on the spot if missing) or a remote one like mujoco/hopper/medium-v0"""
    total_steps: int = 10_000
    """SAC gradient steps after the model is trained (OfflineRL-Kit: 1M on D4RL; 10k suit the small default
    Pendulum data, as mopo.py and cql.py)"""
    batch_size: int = 256
    """transitions per SAC gradient step, real and model together (OfflineRL-Kit)"""
    eval_freq: int = 2_000
    """evaluate every this many SAC gradient steps"""
    eval_episodes: int = 10
    """episodes per evaluation, run side by side in a vector env"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass)"""

    # Algorithm-specific arguments: SAC and the conservative term
    gamma: float = 0.99
    """discount factor (OfflineRL-Kit)"""
    tau: float = 5e-3
    """Polyak rate of the target critics, Qbar <- (1 - tau) Qbar + tau Q (OfflineRL-Kit)"""
    policy_lr: float = 3e-4
    """actor Adam learning rate (as mopo.py and cql.py for small data; OfflineRL-Kit: 1e-4, cosine-annealed)"""
    q_lr: float = 1e-3
    """critics' Adam learning rate (1e-3 for 10k steps on small data, as cql.py; OfflineRL-Kit: 3e-4)"""
    entropy_lr: float = 3e-4
    """Adam learning rate of the entropy temperature beta (OfflineRL-Kit: 1e-4)"""
    hidden_dim: int = 64
    """width of every hidden layer of the actor and the critics (64 for Pendulum, as cql.py; OfflineRL-Kit: 256)"""
    critic_layers: int = 2
    """hidden layers of each Q-network (2x64 for Pendulum, as cql.py; OfflineRL-Kit: 3x256)"""
    actor_layers: int = 2
    """hidden layers of the actor (2x64 for Pendulum, as cql.py; OfflineRL-Kit: 3x256)"""
    cql_alpha: float = 5.0
    """alpha, the weight of the conservative term (the paper's beta). OfflineRL-Kit (run_example/run_combo.py,
    D4RL -v2): halfcheetah medium 0.5, medium-replay 0.5, medium-expert 5; hopper medium 5, medium-replay 0.5,
    medium-expert 5; walker2d medium 5, medium-replay 0.5, medium-expert 5; its default 5. Pendulum: 5 (with 1 the
    gap grew without bound, docs/combo.md); 0 = SAC on real and model data with no pessimism at all"""
    cql_n_actions: int = 5
    """sampled actions per push-down state from each of: uniform, pi(.|s), pi(.|s') (5 for a 1-d action, as
    cql.py; OfflineRL-Kit: 10)"""
    push_down_states: Literal["model", "mix"] = "model"
    """the states whose actions are pushed down: "model", those of the batch's model transitions (the paper's
    rho = d^pi_M); "mix", all the batch's states, real and model (OfflineRL-Kit's default, --rho-s mix)"""
    backup_entropy: bool = False
    """subtract beta log pi(a'|s') in the TD target (off in OfflineRL-Kit's COMBO and in cql.py)"""

    # Algorithm-specific arguments: the dynamics ensemble (as mopo.py)
    ensemble_size: int = 7
    """members N of the dynamics ensemble (MOPO's code, OfflineRL-Kit: 7)"""
    num_elites: int = 5
    """members with the lowest held-out error that generate the rollouts (MOPO's code, OfflineRL-Kit: 5)"""
    model_hidden_dim: int = 64
    """width of each member's hidden layers (64 for Pendulum's 3-d states, as mopo.py; OfflineRL-Kit: 200)"""
    model_layers: int = 4
    """hidden layers of each member, swish activations (MOPO's code, OfflineRL-Kit: 4)"""
    model_lr: float = 3e-3
    """the ensemble's Adam learning rate (3e-3 for small data, as mopo.py; OfflineRL-Kit: 1e-3)"""
    model_batch_size: int = 256
    """transitions per member per model gradient step (MOPO's code, OfflineRL-Kit: 256)"""
    holdout_ratio: float = 0.2
    """fraction of the data held out to rank members and stop training, at most 1000 transitions (MOPO's code)"""
    model_patience: int = 20
    """stop after more than this many epochs in which no member's held-out MSE improved by more than 1% (20 for
    small data, as mopo.py; OfflineRL-Kit: 5)"""
    model_max_epochs: Optional[int] = 100
    """at most this many model epochs (100 keep the default run within minutes, as mopo.py; OfflineRL-Kit: no
    limit, early stopping alone: pass --model-max-epochs None)"""
    logvar_bound_coef: float = 0.01
    """weight of the term that pulls the learned log-variance bounds together (MOPO's code: 0.01)"""

    # Algorithm-specific arguments: rollouts (as mopo.py, without the reward penalty)
    rollout_length: int = 5
    """h: the length of each model branch. OfflineRL-Kit (run_example/run_combo.py, D4RL -v2) and the paper:
    5 on halfcheetah and hopper, 1 on walker2d"""
    rollout_batch_size: int = 5_000
    """branches started at each rollout, from states drawn from the data (5k for the small default data, as
    mopo.py; OfflineRL-Kit: 50k)"""
    rollout_freq: int = 250
    """start new branches every this many SAC steps (250 for 10k steps, as mopo.py; OfflineRL-Kit: 1000)"""
    model_retain_epochs: int = 5
    """the model buffer keeps the transitions of the last this many rollout rounds (OfflineRL-Kit: 5)"""
    real_ratio: float = 0.5
    """f: fraction of each SAC batch drawn from the dataset, the rest from the model buffer (the paper,
    OfflineRL-Kit: 0.5); the dataset's part is also what the conservative term pushes up"""


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
    for name in ("hidden_dim", "critic_layers", "actor_layers", "cql_n_actions", "ensemble_size", "num_elites",
                 "model_hidden_dim", "model_layers", "model_batch_size", "model_patience", "rollout_batch_size",
                 "rollout_freq", "model_retain_epochs"):
        if getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    for name in ("policy_lr", "q_lr", "entropy_lr", "model_lr"):
        if not getattr(args, name) > 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    if not (math.isfinite(args.cql_alpha) and args.cql_alpha >= 0):
        errors.append(f"--cql-alpha must be >= 0 (got {args.cql_alpha})")
    if args.rollout_length < 1:
        errors.append(f"--rollout-length (h) must be at least 1 (got {args.rollout_length})")
    if args.num_elites > args.ensemble_size:
        errors.append(f"--num-elites ({args.num_elites}) cannot exceed --ensemble-size ({args.ensemble_size})")
    if not 0.0 <= args.real_ratio <= 1.0:
        errors.append(f"--real-ratio must be in [0, 1] (got {args.real_ratio})")
    elif args.batch_size > 0 and int(args.batch_size * args.real_ratio) < 1:
        errors.append(f"--real-ratio {args.real_ratio} leaves no real transition in a batch of {args.batch_size}: "
                      f"the conservative term pushes Q up on the dataset's pairs")
    elif (args.batch_size > 0 and args.push_down_states == "model"
          and args.batch_size - int(args.batch_size * args.real_ratio) < 1):
        errors.append(f"--real-ratio {args.real_ratio} leaves no model transition in a batch of {args.batch_size} "
                      f"to push down: lower it, or pass --push-down-states mix (then --real-ratio 1 is CQL)")
    if not 0.0 < args.holdout_ratio < 1.0:
        errors.append(f"--holdout-ratio must be in (0, 1) (got {args.holdout_ratio})")
    if args.model_max_epochs is not None and args.model_max_epochs <= 0:
        errors.append(f"--model-max-epochs must be positive or None (got {args.model_max_epochs})")
    if not (math.isfinite(args.logvar_bound_coef) and args.logvar_bound_coef >= 0):
        errors.append(f"--logvar-bound-coef must be >= 0 (got {args.logvar_bound_coef})")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))


# COPIED FROM mopo.py (the model, the termination rules, the rollouts), verbatim: tests/test_combo.py compares them
# ALGO LOGIC: the dynamics model: an ensemble of Gaussians over (s' - s, r), its likelihood and its training
def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood of `target` under each member's diagonal Gaussian, in nats per
    dimension, averaged over the batch and the dimensions:

        NLL_i = E_{(x,y)} (1/D) sum_d [ (y_d - mu_id)^2 / sigma_id^2 + log sigma_id^2 + log 2 pi ] / 2

    mean, logvar (= log sigma^2): (N, B, D), one Gaussian per member i and row; target: (N, B, D) or
    (B, D) (the same targets for every member). Returns (N,), one loss per member."""
    # -log N(y; mu, sigma^2) = ((y - mu)^2 / sigma^2 + log sigma^2 + log 2 pi) / 2, per dimension
    nll = 0.5 * ((target - mean).pow(2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi))
    return nll.mean(dim=(1, 2))


def soft_clamp(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """x pushed smoothly into (low, high): high - softplus(high - x), then low + softplus(. - low). Unlike a
    hard clamp it keeps a gradient everywhere, so the bounds themselves are learned (MOPO's bnn.py)."""
    x = high - F.softplus(high - x)
    return low + F.softplus(x - low)


class EnsembleDynamics(nn.Module):
    """N probabilistic MLPs, each mapping (s, a) to a diagonal Gaussian over (s' - s, r): mean and
    log-variance. The members' weights are stacked, (N, in, out) per layer, so one batched matrix
    product (`baddbmm`) per layer runs every member on its own rows: no loop over members.

    Inputs are normalised inside by statistics fitted to the training split (`fit_input_statistics`);
    outputs are in the data's own units. Observations and actions enter in the env's units."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int = 200, layers: int = 4, ensemble_size: int = 7,
                 num_elites: int = 5):
        super().__init__()
        self.obs_dim, self.ensemble_size = obs_dim, ensemble_size
        out_dim = obs_dim + 1  # (s' - s, r)
        sizes = [obs_dim + act_dim] + [hidden_dim] * layers + [2 * out_dim]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # truncated normal, std 1 / (2 sqrt(fan_in)), zero bias (MOPO's fc.py, OfflineRL-Kit's EnsembleLinear)
            w = torch.empty(ensemble_size, fan_in, fan_out)
            nn.init.trunc_normal_(w, std=1.0 / (2.0 * math.sqrt(fan_in)))
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(ensemble_size, 1, fan_out)))
        # L2 weight decay per layer, growing with depth (MOPO's constructor.py: 2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
        self.weight_decays = [2.5e-5, 5e-5] + [7.5e-5] * (layers - 2) + [1e-4] if layers >= 2 else [2.5e-5, 1e-4]
        # learned bounds of log sigma^2, one per output dimension (MOPO's bnn.py: start at 0.5 and -10)
        self.max_logvar = nn.Parameter(torch.full((out_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((out_dim,), -10.0))
        self.register_buffer("input_mean", torch.zeros(obs_dim + act_dim))
        self.register_buffer("input_std", torch.ones(obs_dim + act_dim))
        self.register_buffer("elites", torch.arange(num_elites))

    def fit_input_statistics(self, inputs: torch.Tensor) -> None:
        """Normalise (s, a) by the training split's mean and std (std floored, as every loader here)."""
        self.input_mean.copy_(inputs.mean(0))
        self.input_std.copy_(inputs.std(0).clamp_min(1e-3))

    def forward(self, obs: torch.Tensor, act: torch.Tensor):
        """obs (B, obs_dim), act (B, act_dim): every member on the same rows; or (N, B, .): member i on
        its own rows. Returns mean and log-variance of (s' - s, r), each (N, B, obs_dim + 1)."""
        x = (torch.cat([obs, act], dim=-1) - self.input_mean) / self.input_std
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.ensemble_size, -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = F.silu(x)  # swish: x sigmoid(x)
        mean, logvar = x.chunk(2, dim=-1)
        return mean, soft_clamp(logvar, self.min_logvar, self.max_logvar)

    def decay_loss(self) -> torch.Tensor:
        # sum_l w_l ||W_l||^2 / 2, over every member
        return sum(wd * 0.5 * w.pow(2).sum() for wd, w in zip(self.weight_decays, self.weights))


class ModelDivergedError(RuntimeError):
    """The model's NLL became NaN or infinite during training."""


@torch.no_grad()
def _holdout_errors(model: EnsembleDynamics, obs, act, target):
    mean, logvar = model(obs, act)
    return gaussian_nll(mean, logvar, target), (mean - target).pow(2).mean(dim=(1, 2))


def train_model(model: EnsembleDynamics, obs: torch.Tensor, act: torch.Tensor, rew: torch.Tensor,
                next_obs: torch.Tensor, lr: float = 1e-3, batch_size: int = 256, holdout_ratio: float = 0.2,
                max_holdout: int = 1000, patience: int = 5, max_epochs: Optional[int] = None,
                logvar_bound_coef: float = 0.01, on_epoch: Optional[Callable[[int, dict], None]] = None) -> dict:
    """Fit the ensemble to the transitions (s, a, r, s') by Gaussian NLL, as MOPO's bnn.py does:

    - a random held-out split of min(holdout_ratio * n, max_holdout) transitions, the same for all members;
    - each member trains on its own bootstrap resample of the rest, reshuffled every epoch;
    - after each epoch, each member whose held-out MSE improved by more than 1% on its best is snapshotted;
      training stops after `patience` epochs with no such improvement (or after max_epochs);
    - the snapshots are restored and the members with the lowest held-out MSE become the elites.

    Inputs in the env's units (rows aligned). `on_epoch(epoch, metrics)` is called after each epoch.
    Returns the final metrics (held-out NLL and MSE over the elites, per-member MSE, epochs, elites).
    Raises ModelDivergedError if the NLL is not finite."""
    n, N = obs.shape[0], model.ensemble_size
    targets = torch.cat([next_obs - obs, rew.unsqueeze(-1)], dim=-1)  # (s' - s, r)
    perm = torch.randperm(n, device=obs.device)
    n_holdout = min(int(n * holdout_ratio), max_holdout)
    hold, train = perm[:n_holdout], perm[n_holdout:]
    n_train = train.shape[0]
    model.fit_input_statistics(torch.cat([obs[train], act[train]], dim=-1))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # one bootstrap resample of the training split per member (MOPO's bnn.py)
    boot = train[torch.randint(0, n_train, (N, n_train), device=obs.device)]
    best = torch.full((N,), math.inf, device=obs.device)
    snapshot = copy.deepcopy(model.state_dict())
    epoch, since_update, metrics = 0, 0, {}
    while max_epochs is None or epoch < max_epochs:
        epoch += 1
        # reshuffle each member's rows
        boot = boot.gather(1, torch.argsort(torch.rand(N, n_train, device=obs.device), dim=1))
        nll_sum, batches = torch.zeros(N, device=obs.device), 0
        for start in range(0, n_train, batch_size):
            idx = boot[:, start:start + batch_size]  # (N, b): member i's rows
            mean, logvar = model(obs[idx], act[idx])
            nll = gaussian_nll(mean, logvar, targets[idx])  # (N,)
            # L = sum_i NLL_i + weight decay + c (sum max log sigma^2 - sum min log sigma^2)
            loss = (nll.sum() + model.decay_loss()
                    + logvar_bound_coef * (model.max_logvar.sum() - model.min_logvar.sum()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            nll_sum += nll.detach()
            batches += 1
        holdout_nll, holdout_mse = _holdout_errors(model, obs[hold], act[hold], targets[hold])
        train_nll = nll_sum / batches
        if not (torch.isfinite(train_nll).all() and torch.isfinite(holdout_nll).all()):
            raise ModelDivergedError(
                f"the dynamics model diverged: its NLL is not finite at epoch {epoch} (train {train_nll.tolist()}); "
                f"check the dataset for NaN or huge values, or lower --model-lr (got {lr})")
        # snapshot each member that improved its held-out MSE by more than 1% (MOPO's _save_best)
        improved = holdout_mse < 0.99 * best  # (best - mse) / best > 0.01
        best = torch.where(improved, holdout_mse, best)
        state = model.state_dict()
        for key in ("weights", "biases"):
            for name in (k for k in state if k.startswith(key + ".")):
                snapshot[name][improved] = state[name][improved]
        for name in ("max_logvar", "min_logvar", "input_mean", "input_std"):  # shared by all members
            snapshot[name] = state[name].clone()
        since_update = 0 if improved.any() else since_update + 1
        order = torch.argsort(holdout_mse)[:model.elites.shape[0]]
        metrics = {"epoch": epoch, "train_nll": train_nll.mean().item(), "holdout_nll": holdout_nll[order].mean().item(),
                   "holdout_mse": holdout_mse[order].mean().item(), "improved": int(improved.sum()),
                   "holdout_mse_per_member": holdout_mse.tolist()}
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if since_update > patience:
            break
    model.load_state_dict(snapshot)
    holdout_nll, holdout_mse = _holdout_errors(model, obs[hold], act[hold], targets[hold])
    elites = torch.argsort(holdout_mse)[:model.elites.shape[0]]
    model.elites.copy_(elites)
    return {"epochs": epoch, "train_nll": metrics["train_nll"], "holdout_nll": holdout_nll[elites].mean().item(),
            "holdout_mse": holdout_mse[elites].mean().item(), "holdout_mse_per_member": holdout_mse.tolist(),
            "elites": sorted(elites.tolist()), "stopped_early": since_update > patience}


# ALGO LOGIC: the penalty, the termination rules and the rollouts
def penalized_reward(reward: torch.Tensor, std: torch.Tensor, penalty_coef: float):
    """MOPO's uncertainty-penalised reward (the paper's Eq. for r~, u as in the authors' fake_env.py):

        u(s,a) = max_{i=1..N} || sigma_i(s,a) ||_2,   r~(s,a) = r^(s,a) - lambda u(s,a)

    reward: (B,), the model's sampled reward r^; std: (N, B, D), every member's predicted standard deviation
    over all D outputs (s' - s and r); penalty_coef: lambda. Returns (r~ (B,), u (B,))."""
    # u = max_i ||sigma_i(s,a)||: the norm over the outputs, the max over the members
    u = std.norm(dim=-1).max(dim=0).values
    return reward - penalty_coef * u, u


class UnknownTerminationError(ValueError):
    """An env without a termination rule: model rollouts cannot tell where an episode ends."""


def never_terminates(env: gym.Env):
    """Pendulum and HalfCheetah: no state ends an episode (only the time limit, which is no termination)."""
    return lambda obs, act, next_obs: torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)


def hopper_termination(env: gym.Env):
    """Gymnasium Hopper-v5's `is_healthy`, read from the env: terminated when not all of z (height),
    the torso angle and the state beyond them lie strictly inside the env's healthy ranges."""
    u = env.unwrapped
    if not u._terminate_when_unhealthy:
        return never_terminates(env)
    k = 0 if u._exclude_current_positions_from_observation else 1  # obs = qpos[1:] + qvel, or qpos + qvel
    (z_lo, z_hi), (a_lo, a_hi), (s_lo, s_hi) = u._healthy_z_range, u._healthy_angle_range, u._healthy_state_range

    def done(obs, act, next_obs):
        z, angle, state = next_obs[:, k], next_obs[:, k + 1], next_obs[:, k + 1:]
        healthy = ((z_lo < z) & (z < z_hi) & (a_lo < angle) & (angle < a_hi)
                   & ((s_lo < state) & (state < s_hi)).all(dim=-1))
        return ~healthy
    return done


def walker2d_termination(env: gym.Env):
    """Gymnasium Walker2d-v5's `is_healthy`, read from the env: terminated unless z (height) and the torso
    angle lie strictly inside the env's healthy ranges."""
    u = env.unwrapped
    if not u._terminate_when_unhealthy:
        return never_terminates(env)
    k = 0 if u._exclude_current_positions_from_observation else 1
    (z_lo, z_hi), (a_lo, a_hi) = u._healthy_z_range, u._healthy_angle_range

    def done(obs, act, next_obs):
        z, angle = next_obs[:, k], next_obs[:, k + 1]
        return ~((z_lo < z) & (z < z_hi) & (a_lo < angle) & (angle < a_hi))
    return done


# The env's class -> a function of the env that returns done(obs, act, next_obs), in the env's units.
TERMINATION_RULES = {"PendulumEnv": never_terminates, "HalfCheetahEnv": never_terminates,
                     "HopperEnv": hopper_termination, "Walker2dEnv": walker2d_termination}


def termination_fn(env: gym.Env):
    """The known termination rule of `env`: done(obs, act, next_obs) -> (B,) bool, on raw observations."""
    name = type(env.unwrapped).__name__
    if name not in TERMINATION_RULES:
        env_id = env.spec.id if env.spec is not None else name
        raise UnknownTerminationError(
            f"no termination rule for the env {env_id} ({name}): model rollouts must know which steps end an "
            f"episode, and the model does not learn it. Add one to TERMINATION_RULES in this script: "
            f"'{name}': a function of the env returning done(obs, act, next_obs) -> bool tensor, on raw "
            f"observations (see hopper_termination; never_terminates if no state ends an episode)")
    return TERMINATION_RULES[name](env)


@torch.no_grad()
def rollout(model: EnsembleDynamics, policy: Callable, start_obs: torch.Tensor, horizon: int,
            is_terminal: Callable, penalty_coef: float, generator: Optional[torch.Generator] = None) -> dict:
    """h-step branches in the model from `start_obs` (B, obs_dim), raw: at each step a ~ policy(s), then
    (s' - s, r^) sampled from the Gaussian of one elite drawn at random per row, r~ = r^ - lambda u, and
    the branches that terminated stop (MOPO's _rollout_model). `policy` maps raw observations to actions
    in the env's units. Returns the transitions of every step, concatenated: obs, act, reward (r~),
    next_obs, done, penalty (u), model_reward (r^); and `mean_length`, transitions per branch."""
    out = {k: [] for k in ("obs", "act", "reward", "next_obs", "done", "penalty", "model_reward")}
    obs, B = start_obs, start_obs.shape[0]
    for _ in range(horizon):
        act = policy(obs)
        mean, logvar = model(obs, act)  # (N, n, D): all members, for the penalty's max
        std = torch.exp(0.5 * logvar)
        n, rows = obs.shape[0], torch.arange(obs.shape[0], device=obs.device)
        member = model.elites[torch.randint(0, model.elites.shape[0], (n,), device=obs.device, generator=generator)]
        eps = torch.randn(mean.shape[1:], device=obs.device, generator=generator)
        # (s' - s, r^) ~ N(mu_i(s,a), sigma_i(s,a)^2), i a random elite
        sample = mean[member, rows] + std[member, rows] * eps
        next_obs, model_reward = obs + sample[:, :-1], sample[:, -1]
        # r~ = r^ - lambda u(s,a)
        reward, u = penalized_reward(model_reward, std, penalty_coef)
        done = is_terminal(obs, act, next_obs)
        for k, v in zip(out, (obs, act, reward, next_obs, done, u, model_reward)):
            out[k].append(v)
        if done.all():
            break
        obs = next_obs[~done]  # a terminated branch ends there
    batch = {k: torch.cat(v) for k, v in out.items()}
    batch["mean_length"] = batch["obs"].shape[0] / B
    return batch


class ModelBuffer:
    """A first-in-first-out buffer of transitions (s, a, r, s', d), preallocated on one device: the model's
    rollouts (the oldest dropped once full, as MOPO's model pool), or the dataset itself. Stored as the
    SAC update reads them: observations normalised, actions in [-1, 1]^d, d = 1 only at a termination."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device):
        self.observations = torch.zeros((capacity, obs_dim), device=device)
        self.actions = torch.zeros((capacity, act_dim), device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.next_observations = torch.zeros((capacity, obs_dim), device=device)
        self.terminals = torch.zeros(capacity, device=device)
        self.capacity, self.size, self.pos, self.device = capacity, 0, 0, device

    def add(self, obs, act, rew, next_obs, done) -> None:
        """Append a batch of transitions; past the capacity the oldest are overwritten."""
        n = obs.shape[0]
        if n > self.capacity:  # only the newest fit
            obs, act, rew, next_obs, done = (x[-self.capacity:] for x in (obs, act, rew, next_obs, done))
            n = self.capacity
        idx = (self.pos + torch.arange(n, device=self.device)) % self.capacity
        self.observations[idx], self.actions[idx], self.rewards[idx] = obs, act, rew
        self.next_observations[idx], self.terminals[idx] = next_obs, done.float()
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: Optional[torch.Generator] = None):
        """(s, a, r, s', d), each (batch_size, ...), drawn uniformly from the stored transitions."""
        idx = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return (self.observations[idx], self.actions[idx], self.rewards[idx], self.next_observations[idx],
                self.terminals[idx])
# END OF THE COPY FROM mopo.py


# ALGO LOGIC: SAC with COMBO's conservative term; a student writes the function with a SOLUTION block
# (course/make_assignment.py cuts its body out)
def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) of a tanh-Gaussian action a = tanh(u), u ~ N(mu(s), sigma(s)^2), per dimension j:
    log pi(a|s) = sum_j [ log N(u_j; mu_j, sigma_j^2) - log(1 - tanh(u_j)^2) ] (as in cql.py)."""
    # log N(u; mu, sigma^2) = -(u - mu)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2
    log_normal = -0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), finite for any u
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (log_normal - log_det).sum(-1)


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
        """An action a ~ pi(.|s), in the env's units (for the model rollouts)."""
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
    # log of the uniform density on [-1, 1]^d: log 0.5^d
    log_unif = -act_dim * math.log(2.0)
    weighted = torch.cat([q_rand - log_unif, q_curr - log_pi_curr, q_next - log_pi_next], dim=-1)
    return torch.logsumexp(weighted, dim=-1) - math.log(weighted.shape[-1])


def combo_regularizer(lse_rho: torch.Tensor, q_data: torch.Tensor) -> torch.Tensor:
    """COMBO's conservative term of each critic, the term alpha multiplies in the critic's loss (Eq. 2):

        gap_i = E_{s~rho}[ log sum_a exp Q_i(s,a) ] - E_{(s,a)~D}[ Q_i(s,a) ]

    Unlike CQL's gap, the two expectations run over DIFFERENT samples: lse_rho (2, B_rho), the estimate of
    log sum_a exp Q_i(s,a) at each state of the model's rollouts (pushed down); q_data (2, B_D), Q_i at
    the dataset's state-action pairs (pushed up). Returns (2,), one gap per critic."""
    # BEGIN SOLUTION
    return lse_rho.mean(dim=1) - q_data.mean(dim=1)
    # END SOLUTION


def td_target(rew: torch.Tensor, done: torch.Tensor, next_q: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - d) min_i Qbar_i(s', a'),  a' ~ pi(.|s') (minus beta log pi(a'|s') with
    --backup-entropy); rew, done: (B,); next_q: (2, B), the TARGET critics. Returns (B,)."""
    return rew + gamma * (1.0 - done) * next_q.min(dim=0).values


def actor_loss(log_pi: torch.Tensor, q_pi: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """L_pi = E_{s, a~pi(.|s)}[ beta log pi(a|s) - min_i Q_i(s,a) ]; log_pi (B,), q_pi (2, B)."""
    return (beta * log_pi - q_pi.min(dim=0).values).mean()


def temperature_loss(log_beta: torch.Tensor, log_pi: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """SAC's automatic entropy tuning: L_beta = E_{a~pi}[ -beta (log pi(a|s) + Hbar) ], Hbar = -dim(A).
    beta falls while the policy's entropy -E[log pi] is above Hbar, and rises when it is below."""
    return -(log_beta.exp() * (log_pi.detach() + target_entropy)).mean()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    # Qbar <- (1 - tau) Qbar + tau Q
    for p_target, p in zip(target.parameters(), online.parameters()):
        p_target.lerp_(p, tau)


class COMBO:
    """The networks, optimisers and one gradient step of COMBO: SAC on a batch whose first `n_real` rows
    are the dataset's and the rest the model's (actions in [-1, 1]^d), its critic loss with CQL's term
    moved: pushed down at the model's states, pushed up on the dataset's pairs."""

    def __init__(self, obs_dim: int, act_dim: int, args: Args, action_low, action_high, device):
        self.args, self.act_dim = args, act_dim
        self.actor = Actor(obs_dim, act_dim, args.hidden_dim, args.actor_layers, action_low, action_high).to(device)
        self.critic = TwinQ(obs_dim + act_dim, args.hidden_dim, args.critic_layers).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # SAC's automatic entropy tuning: beta = exp(log_beta), target entropy -dim(A) (Haarnoja et al. 2018)
        self.log_beta = torch.zeros((), device=device, requires_grad=True)
        self.target_entropy = -float(act_dim)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.policy_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=args.q_lr)
        self.beta_optimizer = torch.optim.Adam([self.log_beta], lr=args.entropy_lr)
        # Logging samples its own actions from its own stream: how often one logs never changes training.
        self.log_generator = torch.Generator(device=device).manual_seed(args.seed)

    def sampled_q(self, obs, next_obs, generator: Optional[torch.Generator] = None):
        """Q_1, Q_2 at 3N actions sampled at each state s of obs (B, obs_dim), in ONE pass per critic: N
        uniform on [-1, 1]^d, N from pi(.|s), N from pi(.|s') (next_obs: each state's successor), all
        evaluated at s (as cql.py). Returns q (2, B, 3N) and the logsumexp estimate (2, B)."""
        B, N, d = obs.shape[0], self.args.cql_n_actions, self.act_dim
        with torch.no_grad():  # the samples are proposals for the critic's loss: no gradient to the actor
            rand_act = torch.rand(B, N, d, device=obs.device, generator=generator) * 2.0 - 1.0
            curr_act, curr_log_pi = self.actor.sample(obs, N, generator)
            next_act, next_log_pi = self.actor.sample(next_obs, N, generator)
        all_act = torch.cat([rand_act, curr_act, next_act], dim=1)  # (B, 3N, d)
        all_obs = obs.unsqueeze(1).expand(-1, 3 * N, -1)
        q = self.critic(all_obs.reshape(B * 3 * N, -1), all_act.reshape(B * 3 * N, d)).view(2, B, 3 * N)
        lse = cql_logsumexp(q[..., :N], q[..., N:2 * N], q[..., 2 * N:], curr_log_pi, next_log_pi, d)
        return q, lse

    def push_down_states(self, obs, next_obs, n_real: int):
        """rho's states and their successors: the batch's model rows (the paper), or all its rows (mix)."""
        if self.args.push_down_states == "model":
            return obs[n_real:], next_obs[n_real:]
        return obs, next_obs

    def critic_loss(self, obs, act, rew, next_obs, done, n_real: int):
        """L_Q = L_TD on the whole batch (real and model) + alpha sum_i gap_i, and the gaps (2,) (detached)."""
        with torch.no_grad():
            next_act, next_log_pi = self.actor.sample(next_obs)
            next_q = self.critic_target(next_obs, next_act)
            if self.args.backup_entropy:
                # soft value: Qbar_i(s', a') - beta log pi(a'|s')
                next_q = next_q - self.log_beta.exp() * next_log_pi
            # y = r + gamma (1 - d) min_i Qbar_i(s', a'),  a' ~ pi(.|s'); r is the model's own r^ on model rows
            target = td_target(rew, done, next_q, self.args.gamma)
        q = self.critic(obs, act)  # (2, B): the first n_real columns are the dataset's pairs
        # L_TD = sum_i E_{d_f}[ (Q_i(s,a) - y)^2 ],  d_f = f D + (1 - f) D_model
        td_loss = (q - target).pow(2).mean(dim=1).sum()
        if self.args.cql_alpha == 0:
            return td_loss, torch.zeros(2, device=obs.device)
        # log sum_a exp Q_i(s,a) at rho's states s ~ d_M (pushed down)
        _, lse_rho = self.sampled_q(*self.push_down_states(obs, next_obs, n_real))
        # gap_i = E_{s~rho}[ log sum_a exp Q_i(s,a) ] - E_{(s,a)~D}[ Q_i(s,a) ]   (pushed up: the real rows)
        gap = combo_regularizer(lse_rho, q[:, :n_real])
        # L_Q = L_TD + alpha sum_i gap_i
        return td_loss + self.args.cql_alpha * gap.sum(), gap.detach()

    def update(self, obs, act, rew, next_obs, done, n_real: int) -> dict:
        """One gradient step on a mixed batch, the first n_real rows real. Returns detached tensors, no sync."""
        # 1. the critics: descend on L_TD + alpha sum_i gap_i
        critic_loss, gap = self.critic_loss(obs, act, rew, next_obs, done, n_real)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        # 2. the actor and the entropy temperature, on the states of the whole batch
        pi_act, log_pi = self.actor.sample(obs)
        # L_pi = E_{s~d_f}[ beta log pi(a|s) - min_i Q_i(s,a) ],  a ~ pi(.|s)
        loss_pi = actor_loss(log_pi, self.critic(obs, pi_act), self.log_beta.exp().detach())
        # L_beta = E[ -beta (log pi(a|s) + Hbar) ]
        loss_beta = temperature_loss(self.log_beta, log_pi, self.target_entropy)
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.beta_optimizer.zero_grad(set_to_none=True)
        (loss_pi + loss_beta).backward()  # the critic's gradients from this are cleared at its next step
        self.actor_optimizer.step()
        self.beta_optimizer.step()
        # 3. Qbar <- (1 - tau) Qbar + tau Q
        polyak_update(self.critic_target, self.critic, self.args.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": loss_pi.detach(), "entropy": -log_pi.detach().mean(),
                "combo_gap": gap.mean()}

    @torch.no_grad()
    def probe(self, real_batch, model_batch) -> dict:
        """Mean Q (of the twins) on a batch of real pairs and one of model pairs, on the model batch's states
        at uniform actions; on the logging stream only."""
        (o_r, a_r), (o_m, a_m, nxt_m) = real_batch, model_batch
        q, _ = self.sampled_q(o_m, nxt_m, self.log_generator)
        q_real = self.critic(o_r, a_r)
        return {"q_real": q_real.mean(), "q_model": self.critic(o_m, a_m).mean(),
                "q_model_random": q[..., :self.args.cql_n_actions].mean()}


# TRY NOT TO MODIFY: evaluation, checkpoints and logging
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
        checkpoint = load_checkpoint(args.eval_checkpoint, "combo", ("actor", "critic", "dynamics"), device)
        args.dataset_id = checkpoint["args"]["dataset_id"]
    try:
        data = load_dataset(args.dataset_id, device)
        if args.eval_env_kwargs is not None:  # a dynamics-shift test: evaluation only, the data stay
            data.set_eval_env_kwargs(json.loads(args.eval_env_kwargs))
    except DatasetError as e:
        sys.exit(f"error: {e}")
    # Evaluation runs the dataset's env, and the rollouts need its termination rule: fail now, not after training.
    try:
        env = data.make_env()
    except Exception as e:
        sys.exit(f"error: cannot make the environment of '{args.dataset_id}', which evaluation runs and whose "
                 f"termination rule the model rollouts use ({type(e).__name__}: {e}). The dataset must record an "
                 f"env spec (minari's env= / eval_env= when it was created) whose env is installed here.")
    try:
        is_terminal = termination_fn(env)
    except UnknownTerminationError as e:
        if checkpoint is None:
            sys.exit(f"error: {e}")
    finally:
        env.close()

    model = EnsembleDynamics(data.obs_dim, data.act_dim, args.model_hidden_dim, args.model_layers,
                             args.ensemble_size, args.num_elites).to(device)
    model_history, model_result, t_start = [], None, time.time()
    if checkpoint is None:
        # ALGO LOGIC: phase 1, the dynamics ensemble (mopo.py's), trained before any run folder exists: a model
        # that diverges stops the script with nothing written
        print(f"Training the dynamics model ({args.ensemble_size} members, {args.num_elites} elites, "
              f"{args.model_layers}x{args.model_hidden_dim}) on {args.dataset_id} on {device}", flush=True)
        t_print = time.time()

        def on_epoch(epoch: int, m: dict) -> None:
            global t_print
            model_history.append(m)
            if time.time() - t_print > 10 or epoch == 1:
                print(f"model epoch {epoch} | train NLL {m['train_nll']:.3f} | held-out NLL {m['holdout_nll']:.3f} "
                      f"| held-out MSE {m['holdout_mse']:.5f} | members improved {m['improved']}/{args.ensemble_size}",
                      flush=True)
                t_print = time.time()

        try:
            model_result = train_model(model, data.observations, data.actions, data.rewards, data.next_observations,
                                       lr=args.model_lr, batch_size=args.model_batch_size,
                                       holdout_ratio=args.holdout_ratio, patience=args.model_patience,
                                       max_epochs=args.model_max_epochs, logvar_bound_coef=args.logvar_bound_coef,
                                       on_epoch=on_epoch)
        except ModelDivergedError as e:
            sys.exit(f"error: {e}")
        model_result["train_time_s"] = round(time.time() - t_start, 1)
        print(f"model trained: {model_result['epochs']} epochs in {model_result['train_time_s']}s "
              f"({'early stop' if model_result['stopped_early'] else 'epoch limit'}) | held-out NLL "
              f"{model_result['holdout_nll']:.3f} | held-out MSE {model_result['holdout_mse']:.5f} "
              f"| elites {model_result['elites']}", flush=True)

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

    for m in model_history:  # the model phase's curves, one point per epoch
        for k in ("train_nll", "holdout_nll", "holdout_mse"):
            writer.add_scalar(f"losses/model_{k}", m[k], m["epoch"])

    # ALGO LOGIC: phase 2, SAC with the conservative term on batches of real and model transitions
    agent = COMBO(data.obs_dim, data.act_dim, args, data.action_low, data.action_high, device)
    actor = agent.actor

    def unit_actions(actions: torch.Tensor) -> torch.Tensor:
        """The critics see actions in [-1, 1]^d, like the actor's."""
        return ((actions - actor.action_bias) / actor.action_scale).clamp(-1.0, 1.0)

    real = ModelBuffer(data.size, data.obs_dim, data.act_dim, device)
    real.add(data.normalize_obs(data.observations), unit_actions(data.actions), data.rewards,
             data.normalize_obs(data.next_observations), data.terminals)
    model_buffer = ModelBuffer(args.rollout_batch_size * args.rollout_length * args.model_retain_epochs,
                               data.obs_dim, data.act_dim, device)
    n_real = int(args.batch_size * args.real_ratio)  # as mopo.py and OfflineRL-Kit: rounded down
    n_model = args.batch_size - n_real

    def rollout_policy(obs: torch.Tensor) -> torch.Tensor:
        return actor.explore(data.normalize_obs(obs))  # raw observations in, actions in the env's units out

    history, best_score, train_time, evaluations, rollout_stats = [], -math.inf, 0.0, 0, {}
    t_log = t_print = time.time()
    print(f"Training COMBO on {n_real} real + {n_model} model transitions per batch for {args.total_steps} steps, "
          f"branches of h = {args.rollout_length}, alpha = {args.cql_alpha}, pushed down at the "
          f"{args.push_down_states} states ({run_dir})", flush=True)
    for step in range(1, args.total_steps + 1):
        if n_model > 0 and (step - 1) % args.rollout_freq == 0:
            # h-step branches from states of the dataset, under the current policy; no reward penalty (lambda = 0)
            start = data.observations[torch.randint(0, data.size, (args.rollout_batch_size,), device=device)]
            branch = rollout(model, rollout_policy, start, args.rollout_length, is_terminal, 0.0)
            model_buffer.add(data.normalize_obs(branch["obs"]), unit_actions(branch["act"]), branch["reward"],
                             data.normalize_obs(branch["next_obs"]), branch["done"])
            # u, MOPO's penalty, is logged only: COMBO does not use it
            rollout_stats = {"model_uncertainty": branch["penalty"].mean(), "model_reward": branch["model_reward"].mean(),
                             "terminal_rate": branch["done"].float().mean()}
            mean_length = branch["mean_length"]
        # d_f: the dataset's rows first (pushed up), then the model's
        parts = [b.sample(n) for b, n in ((real, n_real), (model_buffer, n_model)) if n > 0]
        obs, act, rew, next_obs, done = (torch.cat(x) for x in zip(*parts))
        metrics = agent.update(obs, act, rew, next_obs, done, n_real)

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps
        if step % 1000 == 0 or evaluate_now:  # .item() syncs with the device: only at logging steps
            if n_model > 0:  # Q on a batch of real and one of model transitions, from the logging stream
                o_r, a_r = real.sample(args.batch_size, agent.log_generator)[:2]
                o_m, a_m, _, nxt_m, _ = model_buffer.sample(args.batch_size, agent.log_generator)
                metrics.update(agent.probe((o_r, a_r), (o_m, a_m, nxt_m)))
            metrics.update(entropy_temperature=agent.log_beta.exp(), **rollout_stats)
            values = {k: round(v.item(), 4) for k, v in metrics.items()}
            if rollout_stats:
                values.update(mean_rollout_length=round(mean_length, 3), model_buffer_size=model_buffer.size)
            for k, v in values.items():
                writer.add_scalar(f"losses/{k}" if k.endswith(("loss", "entropy", "temperature", "gap")) else f"values/{k}", v, step)
            now = time.time()
            train_time += now - t_log
            t_log = now
            sps = round(step / train_time, 1)
            writer.add_scalar("charts/SPS", sps, step)
            line = (f"step {step}/{args.total_steps} | SPS {sps} | Q real {values.get('q_real', 0):.1f} "
                    f"| Q model {values.get('q_model', 0):.1f} | gap {values['combo_gap']:.2f}")
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
            print(f"{line} | {score_text(returns, scores)}", flush=True)
            if args.save_model:
                save_checkpoint(os.path.join(run_dir, f"{args.exp_name}.pt"), {
                    "algorithm": "combo", "actor": actor.state_dict(), "critic": agent.critic.state_dict(),
                    "critic_target": agent.critic_target.state_dict(), "log_beta": agent.log_beta.detach().cpu(),
                    "dynamics": model.state_dict(), "args": asdict(args),
                    "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    write_summary(run_dir, data, {
        "algorithm": "combo", "dataset_id": args.dataset_id, "seed": args.seed, "steps": args.total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
        "final_values": values, "model": model_result,
    })
    writer.close()
