"""Trajectory Transformer (TT): offline RL as sequence modelling, acting by beam search over the model.

Paper: Janner, Li, Levine, "Offline Reinforcement Learning as One Big Sequence Modeling Problem",
NeurIPS 2021, https://arxiv.org/abs/2106.02039. Reference code: JannerM/trajectory-transformer.

Every dimension of the state, the action, the reward and the reward-to-go value is discretised into V
bins, so a trajectory becomes one flat sequence of tokens, N = obs_dim + act_dim + 2 per timestep,

    (s_1^1, ..., s_1^n, a_1^1, ..., a_1^m, r_1, R_1,  s_2^1, ...),   R_t = sum_{k>=1} gamma^(k-1) r_{t+k},

and a small GPT is trained on it like a language model, by next-token cross-entropy:

    L = E_{tau ~ D} [ sum_i w_i * -log P_theta(tau_i | tau_{<i}) ]    (w_i = 5 on action tokens, else 1).

It models the dynamics, the rewards and the values along with the behaviour. To act, it plans: beam
search from the current state, H steps ahead, sampling actions from the model, predicting rewards and
values, keeping the beams with the best  sum_{k<=t} gamma^k r_k + gamma^(t+1) R_t,  and executing the
first action of the best.

Run `python trajectory_transformer.py --help` for the flags; docs/trajectory_transformer.md maps the
objective to the lines below.
"""

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
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter

from common.datasets import DEFAULT_DATASET_ID, DatasetError, OfflineDataset, load_dataset


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (network init, batches, evaluation start states, the planner's samples)"""
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
    """evaluate this checkpoint (a .pt file written by --save-model) and exit, without training; planner flags
    given beside it (--beam-width, --n-expand, --top-k-act, --cdf-act, --top-k-obs, --cdf-obs) replace the
    checkpoint's: the same model under another search"""
    dataset_id: str = DEFAULT_DATASET_ID
    """Minari dataset id: a local one (built on the spot if missing) or a remote one like mujoco/hopper/medium-v0"""
    total_steps: int = 1_000
    """gradient steps (the reference code trains 50 epochs of a 1M-transition set, about 4M windows at batch 256,
    i.e. ~200k steps; 1k keeps the default run within minutes on 2 CPU cores)"""
    batch_size: int = 64
    """windows of `sequence_len` transitions per gradient step (the reference code: 256, config/offline.py; 64 here
    gives four times the steps in the default run's few minutes)"""
    eval_freq: int = 1_000
    """evaluate every this many gradient steps (planning is costly: by default once, at the end)"""
    eval_episodes: int = 5
    """episodes per evaluation, run side by side in a vector env, their beams in one forward pass (5 keeps the
    default run within 5 minutes on 2 CPU cores; the paper reports 15 episodes per seed)"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass)"""

    # Algorithm-specific arguments
    n_bins: int = 100
    """V, bins per dimension of state, action, reward and value (N = 100, config/offline.py)"""
    discretizer: Literal["quantile", "uniform"] = "quantile"
    """bin edges at the data's quantiles (the reference code's QuantileDiscretizer, trajectory/utils/discretization.py)
    or evenly spaced between its min and max (the paper's other choice)"""
    gamma: float = 0.99
    """discount of the value tokens R_t and of the beam score (config/offline.py)"""
    sequence_len: int = 10
    """transitions per training window (subsampled_sequence_length, config/offline.py); context plus horizon of
    the planner must fit in it"""
    embed_dim: int = 128
    """width of the transformer (n_embd 32 per head x 4 heads, config/offline.py and scripts/train.py)"""
    n_layers: int = 4
    """transformer blocks (config/offline.py)"""
    n_heads: int = 4
    """attention heads per block (config/offline.py)"""
    dropout: float = 0.1
    """dropout on embeddings, attention weights and residual branches (config/offline.py)"""
    learning_rate: float = 6e-4
    """AdamW learning rate (config/offline.py), betas (0.9, 0.95) as scripts/train.py"""
    weight_decay: float = 0.1
    """AdamW weight decay on the matmul weights only (scripts/train.py; models/transformers.py)"""
    grad_clip: float = 1.0
    """clip the gradient norm to this (scripts/train.py)"""
    warmup_steps: Optional[int] = None
    """linear learning-rate warm-up, then cosine decay to 10% at the last step; None = total_steps // 20 (the
    reference warms up over one epoch of 20, scripts/train.py)"""
    action_weight: float = 5.0
    """weight of the action tokens in the loss (config/offline.py); states, rewards and values weigh 1"""
    termination_penalty: Optional[float] = None
    """reward of a transition that terminates the episode; the reference code sets -100 on D4RL locomotion, where
    termination means falling (config/offline.py); None keeps the data's reward (on PointMaze termination is the goal)"""
    horizon: int = 5
    """H, env steps planned ahead (the paper's code: 15, and 5 on halfcheetah, config/offline.py)"""
    beam_width: int = 32
    """beams kept after each planned step (the paper's code: 128, and 32 on halfcheetah, config/offline.py)"""
    n_expand: int = 2
    """candidates sampled from each beam at each planned step (config/offline.py)"""
    max_context_transitions: Optional[int] = None
    """past transitions the planner conditions on; None = sequence_len - horizon (5 in the paper's code,
    config/offline.py)"""
    top_k_act: Optional[int] = None
    """sample the action tokens from the k most likely bins only (None = all; config/offline.py)"""
    cdf_act: Optional[float] = 0.6
    """drop the least likely action bins whose probabilities sum to less than this before sampling (config/offline.py)"""
    top_k_obs: Optional[int] = 1
    """sample the predicted state tokens from the k most likely bins (1 = the most likely; config/offline.py)"""
    cdf_obs: Optional[float] = None
    """as cdf_act, for the state tokens (config/offline.py: None)"""
    kv_cache: bool = True
    """keep the keys and values of every token the planner has seen, so that each new token costs one row
    of the transformer; --no-kv-cache recomputes the whole sequence each time (the same plans; docs/benchmarks.md)"""
    bf16: bool = True
    """bf16 autocast in training on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX); weights stay fp32
    (planning runs in float32: the same plans with and without the attention cache)"""


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
    if args.n_bins < 2:
        errors.append(f"--n-bins must be at least 2 (got {args.n_bins})")
    if args.beam_width < 1:
        errors.append(f"--beam-width must be at least 1 (got {args.beam_width})")
    if args.horizon < 1:
        errors.append(f"--horizon must be at least 1 (got {args.horizon})")
    for name in ("sequence_len", "embed_dim", "n_layers", "n_heads", "n_expand"):
        if getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    for name in ("top_k_act", "top_k_obs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            errors.append(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(args, name)})")
    for name in ("cdf_act", "cdf_obs"):
        if getattr(args, name) is not None and not 0.0 <= getattr(args, name) < 1.0:
            errors.append(f"--{name.replace('_', '-')} must be in [0, 1) (got {getattr(args, name)})")
    if args.max_context_transitions is not None and args.max_context_transitions < 0:
        errors.append(f"--max-context-transitions must be >= 0 (got {args.max_context_transitions})")
    context = args.max_context_transitions if args.max_context_transitions is not None else args.sequence_len - args.horizon
    if args.horizon >= 1 and args.sequence_len > 0 and context + args.horizon > args.sequence_len:
        errors.append(f"--horizon ({args.horizon}) plus --max-context-transitions ({context}) must fit in "
                      f"--sequence-len ({args.sequence_len}): raise --sequence-len or shorten the others")
    if not args.learning_rate > 0:
        errors.append(f"--learning-rate must be positive (got {args.learning_rate})")
    if not args.weight_decay >= 0:
        errors.append(f"--weight-decay must be >= 0 (got {args.weight_decay})")
    if not args.grad_clip > 0:
        errors.append(f"--grad-clip must be positive (got {args.grad_clip})")
    if not args.action_weight > 0:
        errors.append(f"--action-weight must be positive (got {args.action_weight})")
    if args.warmup_steps is not None and args.warmup_steps < 0:
        errors.append(f"--warmup-steps must be >= 0 (got {args.warmup_steps})")
    if args.n_heads > 0 and args.embed_dim % args.n_heads != 0:
        errors.append(f"--embed-dim ({args.embed_dim}) must be a multiple of --n-heads ({args.n_heads})")
    if not 0.0 <= args.dropout < 1.0:
        errors.append(f"--dropout must be in [0, 1) (got {args.dropout})")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))


# ALGO LOGIC: the discretiser (trajectory/utils/discretization.py)
def bin_edges(x: torch.Tensor, n_bins: int, kind: str) -> torch.Tensor:
    """The V + 1 edges of the V bins of each dimension. x: (M, D) the data, one row per transition.
    kind "uniform": V bins of equal width from each dimension's min to its max; "quantile": V bins holding
    (about) equally many data points each, i.e. edge k at the data's k/V quantile (its min and max at the ends).
    Returns (V + 1, D), non-decreasing down each column."""
    # BEGIN SOLUTION
    lo, hi = x.min(0).values, x.max(0).values
    if kind == "uniform":
        fractions = torch.linspace(0.0, 1.0, n_bins + 1, dtype=x.dtype, device=x.device)[:, None]
        return lo + fractions * (hi - lo)
    # edge k = the sorted data's element at index k (M - 1) / V, rounded down (the reference code's own formula
    # leaves fewer than V bins when V does not divide M; it keeps this one in a comment)
    index = torch.linspace(0, x.shape[0] - 1, n_bins + 1, device=x.device).long()
    return x.sort(0).values[index]
    # END SOLUTION


def encode(x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """The bin of each value: x (..., D) -> (..., D) int64 in [0, V), a bin with edges[b] <= x <= edges[b+1];
    values outside the data's range go to the first or last bin."""
    D = edges.shape[1]
    inner = edges[1:-1].T.contiguous()  # (D, V - 1): the edges between bins
    flat = x.reshape(-1, D).T.contiguous().to(inner.dtype)  # (D, M)
    # Between bins #(inner edges < x) and #(inner edges <= x) all hold x; take the middle one. A value equal
    # to several edges (quantile edges of a value the data repeats, e.g. a reward that is mostly 0) then lands
    # in a bin of zero width and decodes exactly; the reference code takes the last (a bin above the value).
    lowest = torch.searchsorted(inner, flat, right=False)
    highest = torch.searchsorted(inner, flat, right=True)
    return ((lowest + highest) // 2).T.reshape(x.shape)


def decode(bins: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Each bin's centre, (edges[b] + edges[b+1]) / 2: bins (..., D) int64 -> (..., D) float; within half a bin
    of every value that bin holds."""
    centres = (edges[:-1] + edges[1:]) / 2  # (V, D)
    D = edges.shape[1]
    flat = bins.reshape(-1, D)
    return centres.gather(0, flat).reshape(bins.shape)


def discounted_values(rewards: torch.Tensor, episode_starts: torch.Tensor, episode_lengths: torch.Tensor,
                      gamma: float) -> torch.Tensor:
    """R_t = sum_{k>=1} gamma^(k-1) r_{t+k}: the discounted sum of the rewards after t, to the end of t's episode
    (trajectory/datasets/sequence.py; 0 at an episode's last step). rewards: (N,) the flat dataset, episodes one
    after another. Returns (N,) float32, summed in float64 in one pass from each episode's end."""
    r = rewards.double().cpu().numpy()
    values = np.zeros_like(r)
    is_last = np.zeros(len(r), dtype=bool)
    is_last[(episode_starts + episode_lengths - 1).cpu().numpy()] = True
    # R_t = r_{t+1} + gamma R_{t+1}, and R_t = 0 at an episode's last step (numpy: a Python loop over tensor
    # elements would take minutes on a million transitions)
    for t in range(len(r) - 2, -1, -1):
        if not is_last[t]:
            values[t] = r[t + 1] + gamma * values[t + 1]
    return torch.from_numpy(values).float().to(rewards.device)


class KVCache:
    """The keys and values of every token the model has read so far, per block: buffers (B, heads, capacity,
    head_dim) filled up to `length`, written in place (a torch.cat per token copied the whole cache each time)."""

    def __init__(self, n_layers: int, capacity: int):
        self.keys, self.values = [None] * n_layers, [None] * n_layers
        self.capacity, self.length = capacity, 0

    def select(self, rows: torch.Tensor) -> "KVCache":
        """The cache of the given rows (repeated or reordered), e.g. the beams kept."""
        new = KVCache(len(self.keys), self.capacity)
        new.length = self.length
        new.keys = [k.index_select(0, rows) for k in self.keys]  # index_select: ~4x faster than k[rows] here
        new.values = [v.index_select(0, rows) for v in self.values]
        return new


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention over the new tokens and, with a cache, the keys and values of earlier ones."""

    def __init__(self, embed_dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)  # Q, K and V in one matmul
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, cache: Optional[KVCache] = None,
                layer: int = 0) -> torch.Tensor:
        """x (B, n, H): the new tokens; attn_mask (n, P + n) bool, P the tokens in the cache (0 without one)."""
        B, n, H = x.shape
        q, k, v = self.qkv(x).view(B, n, 3, self.n_heads, H // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache.keys[layer] is None:
                cache.keys[layer] = k.new_zeros(B, self.n_heads, cache.capacity, H // self.n_heads)
                cache.values[layer] = torch.zeros_like(cache.keys[layer])
            P = cache.length
            cache.keys[layer][:, :, P:P + n] = k
            cache.values[layer][:, :, P:P + n] = v
            k, v = cache.keys[layer][:, :, :P + n], cache.values[layer][:, :, :P + n]
        # softmax(Q K^T / sqrt(d) + M) V, M = -inf where attn_mask is False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, n, H)))


class Block(nn.Module):
    """GPT-2 block: pre-LayerNorm attention and MLP, each on a residual branch (models/transformers.py)."""

    def __init__(self, embed_dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dim)
        self.attn = CausalSelfAttention(embed_dim, n_heads, dropout)
        self.ln2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(),
                                 nn.Linear(4 * embed_dim, embed_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, cache: Optional[KVCache] = None,
                layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), attn_mask, cache, layer)
        return x + self.mlp(self.ln2(x))


class TrajectoryTransformer(nn.Module):
    """A GPT over the flat token sequence (s^1..s^n, a^1..a^m, r, R) per timestep. The output at token i gives
    the V logits of token i + 1, through the head of token i + 1's dimension (models/transformers.py)."""

    def __init__(self, transition_dim: int, n_bins: int, sequence_len: int, embed_dim: int, n_layers: int,
                 n_heads: int, dropout: float):
        super().__init__()
        self.transition_dim, self.n_bins = transition_dim, n_bins
        self.block_size = sequence_len * transition_dim - 1  # the inputs of a window: all its tokens but the last
        # One embedding table for all dimensions: bin b of dimension j is token j * V + b.
        self.tok_emb = nn.Embedding(transition_dim * n_bins, embed_dim)
        self.pos_emb = nn.Parameter(torch.zeros(self.block_size, embed_dim))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(embed_dim, n_heads, dropout) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(embed_dim)
        # One linear head (no bias) per dimension, as the reference's EinLinear.
        self.head = nn.Parameter(torch.empty(transition_dim, n_bins, embed_dim))
        self.apply(self._init_weights)
        nn.init.normal_(self.head, mean=0.0, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2's initialisation: N(0, 0.02) weights, zero biases (models/transformers.py)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.blocks), self.block_size)

    def forward(self, tokens: torch.Tensor, cache: Optional[KVCache] = None) -> torch.Tensor:
        """tokens (B, n) int64 bins: the sequence's next n tokens, after the P = cache.length tokens whose keys
        and values the cache holds (P = 0 without a cache); the cache then holds theirs too. Returns the logits
        (B, n, V) of the token after each."""
        T, V = self.transition_dim, self.n_bins
        B, n = tokens.shape
        P = 0 if cache is None else cache.length
        pos = torch.arange(P, P + n, device=tokens.device)
        x = self.drop(self.tok_emb(tokens + (pos % T) * V) + self.pos_emb[pos])
        # Token i reads token j <= i, but never a value token: the values of the context are masked out
        # (models/transformers.py: "mask previous value estimates"), so only predicted values are used.
        # (No row is empty: every token reads the window's first token, a state's.)
        keys = torch.arange(P + n, device=tokens.device)
        attn_mask = (keys[None, :] <= pos[:, None]) & (keys[None, :] % T != T - 1)
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask, cache, i)
        if cache is not None:
            cache.length += n
        x = self.ln_f(x)
        # the logits of token p + 1 from the head of its dimension, (p + 1) mod T
        return torch.einsum("bnh,nvh->bnv", x, self.head[(pos + 1) % T].to(x.dtype))


# ALGO LOGIC: the training windows and the loss
def sample_windows(start: torch.Tensor, sequence_len: int, episode_end: torch.Tensor, tokens: torch.Tensor):
    """Windows of `sequence_len` transitions from transition `start` (B,) on, flattened to token sequences.
    tokens: (N, T) every transition's bins; episode_end: (N,) one past the last transition of its episode.
    Returns (B, L * T) tokens and (B, L * T) bool, False on transitions past the episode's end (any bins there)."""
    idx = start[:, None] + torch.arange(sequence_len, device=start.device)  # (B, L)
    real = idx < episode_end[start][:, None]
    idx = torch.where(real, idx, start[:, None])
    T = tokens.shape[1]
    return tokens[idx].reshape(len(start), -1), real.repeat_interleave(T, dim=1)


def token_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L = sum_i w_i m_i (-log P(tau_i | tau_<i)) / sum_i m_i: the weighted cross-entropy of each next token,
    averaged over the real ones. logits (B, n, V); targets (B, n) bins; weights (n,); mask (B, n) bool."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    m = mask.reshape(-1).float()
    return (ce * weights.repeat(len(targets)) * m).sum() / m.sum()


# ALGO LOGIC: planning (trajectory/search/core.py and sampling.py)
def beam_score(rewards: torch.Tensor, value: torch.Tensor, gamma: float) -> torch.Tensor:
    """The return a beam promises: sum_{k=0..t} gamma^k r_k + gamma^(t+1) R_t, from its predicted rewards
    r_0..r_t (B, t + 1) and the value R_t (B,) predicted after its last reward. Returns (B,)."""
    # BEGIN SOLUTION
    discounts = gamma ** torch.arange(rewards.shape[1] + 1, device=rewards.device, dtype=rewards.dtype)
    return (rewards * discounts[:-1]).sum(1) + discounts[-1] * value
    # END SOLUTION


def filter_logits(logits: torch.Tensor, top_k: Optional[int], cdf: Optional[float]) -> torch.Tensor:
    """The logits with the unlikely bins set to -inf: those whose probabilities, least likely first, sum to less
    than `cdf` (search/sampling.py's filter_cdf), then all but the `top_k` most likely (top_k_logits)."""
    if cdf is not None and cdf > 0:
        probs, order = logits.softmax(-1).sort(-1)
        drop = probs.cumsum(-1) < cdf  # the low tail, least likely first; the most likely bin always stays
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), -math.inf)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    return logits


def sample_bins(logits: torch.Tensor, top_k: Optional[int], cdf: Optional[float], generator) -> torch.Tensor:
    """One bin per row from softmax(filtered logits). logits (B, V) -> (B,) int64."""
    probs = filter_logits(logits.float(), top_k, cdf).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class Sequences:
    """The planner's sequences, each a prefix followed by its plan so far, fed to the model one token at a time.
    With the KV cache the model reads only the new token (and the cache); without, the whole sequence again."""

    def __init__(self, model, prefix: torch.Tensor, kv_cache: bool):
        self.model = model
        self.tokens = prefix
        self.cache = model.new_cache() if kv_cache else None
        self.logits = model(prefix, self.cache)[:, -1]  # one pass over the prefix; the logits of the next token

    def append(self, bins: torch.Tensor) -> None:
        """Append one token per row; self.logits becomes the model's logits of the token after it."""
        self.tokens = torch.cat([self.tokens, bins[:, None]], 1)
        if self.cache is not None:
            self.logits = self.model(bins[:, None], self.cache)[:, -1]
        else:
            self.logits = self.model(self.tokens)[:, -1]

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and repeat) the given rows, in that order."""
        self.tokens, self.logits = self.tokens[rows], self.logits[rows]
        if self.cache is not None:
            self.cache = self.cache.select(rows)


@torch.no_grad()
def beam_plan(model, prefix: torch.Tensor, edges: torch.Tensor, obs_dim: int, act_dim: int, *, horizon: int,
              beam_width: int, n_expand: int, gamma: float, top_k_act=None, cdf_act=None, top_k_obs=1,
              cdf_obs=None, kv_cache: bool = True, generator=None):
    """Beam search for E envs at once (search/core.py's beam_plan, batched over envs and beams).
    prefix (E, P) the tokens of each env's context and current state. Each planned step: every beam is repeated
    n_expand times, its action tokens sampled, its reward and value predicted (their expectations under the model,
    the tokens appended the most likely), and each env keeps its beam_width best by beam_score; then the next
    state's tokens are sampled. Returns the first action of each env's best plan (E, act_dim), its planned action
    bins (E, horizon, act_dim) and its score (E,)."""
    E = prefix.shape[0]
    r_dim, v_dim = obs_dim + act_dim, obs_dim + act_dim + 1
    centres = (edges[:-1] + edges[1:]) / 2  # (V, T)
    seqs = Sequences(model, prefix, kv_cache)
    seqs.select(torch.arange(E, device=prefix.device).repeat_interleave(beam_width))  # E * W rows, env-major
    rewards = torch.zeros(E * beam_width, horizon, device=prefix.device)
    actions = torch.zeros(E * beam_width, horizon, act_dim, dtype=torch.long, device=prefix.device)
    for t in range(horizon):
        # every beam becomes n_expand candidates, still grouped by env: rows e*W*X .. (e+1)*W*X - 1
        repeat = torch.arange(len(rewards), device=prefix.device).repeat_interleave(n_expand)
        seqs.select(repeat)
        rewards, actions = rewards[repeat], actions[repeat]
        for j in range(act_dim):
            bins = sample_bins(seqs.logits, top_k_act, cdf_act, generator)
            actions[:, t, j] = bins
            seqs.append(bins)
        # r_t = E[r], the expectation under the model's distribution (percentile 'mean', config/offline.py)
        rewards[:, t] = (seqs.logits.float().softmax(-1) * centres[:, r_dim]).sum(-1)
        seqs.append(seqs.logits.argmax(-1))
        value = (seqs.logits.float().softmax(-1) * centres[:, v_dim]).sum(-1)  # R_t = E[R]
        score = beam_score(rewards[:, : t + 1], value, gamma)
        # keep each env's beam_width best candidates
        group = score.shape[0] // E  # the candidates of one env
        best = score.view(E, group).topk(beam_width, dim=1).indices  # (E, W), indices within the env's group
        keep = (best + torch.arange(E, device=prefix.device)[:, None] * group).reshape(-1)
        seqs.select(keep)
        rewards, actions, score = rewards[keep], actions[keep], score[keep]
        if t < horizon - 1:  # the next state, unless this was the last planned step
            seqs.append(seqs.logits.argmax(-1))  # the value token
            for j in range(obs_dim):
                seqs.append(sample_bins(seqs.logits, top_k_obs, cdf_obs, generator))
    score = score.view(E, beam_width)
    top = score.argmax(1) + torch.arange(E, device=prefix.device) * beam_width
    first = decode(actions[top, 0], edges[:, obs_dim:obs_dim + act_dim])
    return first, actions[top], score.max(1).values


# TRY NOT TO MODIFY: evaluation, checkpoints and logging (the shared helpers are the same in every script)
def use_bf16(device, flag: bool) -> bool:
    """bf16 autocast where the hardware has it: on the CPU without native bf16 it would be slower."""
    device = torch.device(device)
    if device.type == "cuda":
        return flag and torch.cuda.is_bf16_supported()
    return flag and device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def evaluation_seeds(seed: int, evaluation: int, episodes: int) -> list[int]:
    """Fresh start states at each evaluation, reproducible from (seed, evaluation index)."""
    return [int(s) for s in np.random.SeedSequence([seed, evaluation]).generate_state(episodes)]


@torch.no_grad()
def evaluate(model: TrajectoryTransformer, data: OfflineDataset, seeds: list[int], device,
             video_dir: Optional[str] = None, *, edges: torch.Tensor, plan: dict):
    """Plan and act in every env side by side, one episode per seed: at each step, beam search from the current
    state and the last transitions (their tokens), then the first action of the best plan. `plan`: beam_plan's
    settings plus max_context_transitions. The planner's samples come from a generator seeded by seeds[0], so an
    evaluation is reproducible. Planning runs in float32: bf16 autocast saved about a tenth of a plan's time
    and made the plans depend on the cache (docs/benchmarks.md). Returns (raw returns, normalised scores or None)."""

    def make(i):
        def thunk():
            env = data.make_eval_env(render_mode="rgb_array" if video_dir and i == 0 else None)
            if video_dir and i == 0:
                env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)
            return env
        return thunk

    plan = dict(plan)
    context_len = plan.pop("max_context_transitions")
    generator = torch.Generator(device).manual_seed(seeds[0])
    envs = gym.vector.SyncVectorEnv([make(i) for i in range(len(seeds))])
    obs, _ = envs.reset(seed=seeds)
    returns = np.zeros(len(seeds))
    done = np.zeros(len(seeds), dtype=bool)
    obs_dim, act_dim = data.obs_dim, data.act_dim
    context = torch.zeros(len(seeds), 0, dtype=torch.long, device=device)  # the tokens of the past transitions
    while not done.all():
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
        obs_bins = encode(obs_t, edges[:, :obs_dim])
        action, _, _ = beam_plan(model, torch.cat([context, obs_bins], 1), edges, obs_dim, act_dim,
                                 generator=generator, **plan)
        obs, reward, terminated, truncated, _ = envs.step(action.cpu().numpy().astype(envs.single_action_space.dtype))
        # the transition just taken joins the context: s_t, a_t, r_t and a value placeholder (masked out)
        reward_bins = encode(torch.as_tensor(reward, dtype=torch.float32, device=device)[:, None],
                             edges[:, obs_dim + act_dim:obs_dim + act_dim + 1])
        step = torch.cat([obs_bins, encode(action, edges[:, obs_dim:obs_dim + act_dim]), reward_bins,
                          torch.zeros_like(reward_bins)], 1)
        context = torch.cat([context, step], 1)
        context = context[:, context.shape[1] - min(context.shape[1], context_len * step.shape[1]):]  # the last ones
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


def make_model(a: dict, transition_dim: int) -> TrajectoryTransformer:
    """The model from the args dict (the run's, or a checkpoint's)."""
    return TrajectoryTransformer(transition_dim, a["n_bins"], a["sequence_len"], a["embed_dim"], a["n_layers"],
                                 a["n_heads"], a["dropout"])


SEARCH_FLAGS = ("beam_width", "n_expand", "top_k_act", "cdf_act", "top_k_obs", "cdf_obs")  # --eval-checkpoint may change these


def plan_settings(a: dict) -> dict:
    """beam_plan's settings (and the context length) from the args dict."""
    context = a["max_context_transitions"]
    return dict(horizon=a["horizon"], beam_width=a["beam_width"], n_expand=a["n_expand"], gamma=a["gamma"],
                top_k_act=a["top_k_act"], cdf_act=a["cdf_act"], top_k_obs=a["top_k_obs"], cdf_obs=a["cdf_obs"],
                kv_cache=a["kv_cache"],
                max_context_transitions=a["sequence_len"] - a["horizon"] if context is None else context)


def transitions_as_vectors(data: OfflineDataset, gamma: float, termination_penalty: Optional[float]) -> torch.Tensor:
    """(N, obs_dim + act_dim + 2): each transition's (s, a, r, R), the continuous values the tokens stand for."""
    rewards = data.rewards.clone()
    if termination_penalty is not None:  # the reference code's termination penalty (datasets/sequence.py)
        rewards[data.terminals > 0] = termination_penalty
    values = discounted_values(rewards, data.episode_starts, data.episode_lengths, gamma)
    return torch.cat([data.observations, data.actions, rewards[:, None], values[:, None]], 1)


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
        checkpoint = load_checkpoint(args.eval_checkpoint, "trajectory_transformer", ("model", "edges"), device)
        args.dataset_id = checkpoint["args"]["dataset_id"]
    try:
        data = load_dataset(args.dataset_id, device)
        if args.eval_env_kwargs is not None:  # a dynamics-shift test: evaluation only, the data stay
            data.set_eval_env_kwargs(json.loads(args.eval_env_kwargs))
    except DatasetError as e:
        sys.exit(f"error: {e}")
    transition_dim = data.obs_dim + data.act_dim + 2

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

    if checkpoint is not None:  # --eval-checkpoint: evaluate the saved planner, then exit
        model = make_model(checkpoint["args"], transition_dim).to(device)
        model.load_state_dict(checkpoint["model"])
        model.eval()
        seeds = checkpoint["eval_seeds"]
        # the checkpoint's planner, but --no-kv-cache applies (the same plans, to time the cache), and so do the
        # search flags given on the command line (the horizon and context stay: the model's window bounds them)
        given = [n for n in SEARCH_FLAGS if any(a == f"--{n.replace('_', '-')}" or a.startswith(
            f"--{n.replace('_', '-')}=") for a in sys.argv[1:])]
        plan = plan_settings({**checkpoint["args"], "kv_cache": args.kv_cache, **{n: getattr(args, n) for n in given}})
        t_eval = time.time()
        returns, scores = evaluate(model, data, seeds, device, video_dir, edges=checkpoint["edges"], plan=plan)
        eval_time = time.time() - t_eval
        print(f"{args.eval_checkpoint}: {score_text(returns, scores)}")
        write_summary(run_dir, data, {
            "dataset_id": args.dataset_id, "checkpoint": args.eval_checkpoint, "eval_seeds": seeds,
            "returns": returns.tolist(), "return_mean": float(returns.mean()),
            "normalized_score": None if scores is None else float(scores.mean()),
            "reference": data.ref_source, "planner": plan, "eval_time_s": round(eval_time, 1),
            "cpu_time_s": round(time.process_time(), 1),
        })
        writer.close()
        sys.exit(0)

    # ALGO LOGIC: the data as tokens, once: each transition (s, a, r, R) discretised, V bins per dimension
    vectors = transitions_as_vectors(data, args.gamma, args.termination_penalty)
    edges = bin_edges(vectors, args.n_bins, args.discretizer)
    tokens_all = encode(vectors, edges)  # (N, T)
    episode_end = torch.repeat_interleave(data.episode_starts + data.episode_lengths, data.episode_lengths)
    # loss weights of the L * T - 1 targets (tokens 1 .. L*T - 1 of a window): action tokens weigh action_weight
    dim_weight = torch.ones(transition_dim, device=device)
    dim_weight[data.obs_dim:data.obs_dim + data.act_dim] = args.action_weight
    target_weight = dim_weight.repeat(args.sequence_len)[1:]

    model = make_model(asdict(args), transition_dim).to(device)
    # AdamW, weight decay on the matmul weights only (models/transformers.py's configure_optimizers)
    decay = [p for name, p in model.named_parameters() if p.ndim >= 2 and name not in ("tok_emb.weight", "pos_emb")]
    no_decay = [p for name, p in model.named_parameters() if not (p.ndim >= 2 and name not in ("tok_emb.weight", "pos_emb"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.learning_rate, betas=(0.9, 0.95))
    warmup = args.total_steps // 20 if args.warmup_steps is None else args.warmup_steps

    def lr_factor(k: int) -> float:
        # linear warm-up, then cosine decay to 10% (utils/training.py, counted in steps instead of tokens)
        if k < warmup:
            return (k + 1) / warmup
        progress = (k - warmup) / max(1, args.total_steps - warmup)
        return max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    amp = use_bf16(device, args.bf16)
    plan = plan_settings(asdict(args))
    print(f"bf16 autocast in training {'on' if amp else 'off'} | {args.discretizer} bins: {args.n_bins} per dimension, "
          f"{transition_dim} tokens per transition | planning: horizon {args.horizon}, beam {args.beam_width} x "
          f"{args.n_expand}, context {plan['max_context_transitions']} transitions")

    history, best_score, train_time, evaluations = [], -math.inf, 0.0, 0
    t_start = t_log = t_print = time.time()
    print(f"Training TT on {args.dataset_id} for {args.total_steps} steps on {device} ({run_dir})")
    for step in range(1, args.total_steps + 1):
        # Window starts drawn uniformly over transitions; past an episode's end the tokens weigh nothing.
        start = torch.randint(0, data.size, (args.batch_size,), device=device)
        window, real = sample_windows(start, args.sequence_len, episode_end, tokens_all)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(window[:, :-1])  # P(tau_i | tau_<i) for every token but the first
        # L = sum_i w_i m_i (-log P(tau_i | tau_<i)) / sum_i m_i
        loss = token_loss(logits, window[:, 1:], target_weight, real[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        scheduler.step()

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps
        if step % 100 == 0 or evaluate_now:  # .item() syncs with the device: only at logging steps
            writer.add_scalar("losses/token_loss", loss.item(), step)
            with torch.no_grad():  # the unweighted cross-entropy of each kind of token, on this batch
                ce = F.cross_entropy(logits.float().transpose(1, 2), window[:, 1:], reduction="none")
                kind = torch.arange(1, window.shape[1], device=device) % transition_dim
                m = real[:, 1:].float()
                for name, lo, hi in (("obs", 0, data.obs_dim), ("action", data.obs_dim, data.obs_dim + data.act_dim),
                                     ("reward", transition_dim - 2, transition_dim - 1),
                                     ("value", transition_dim - 1, transition_dim)):
                    sel = m * ((kind >= lo) & (kind < hi)).float()
                    writer.add_scalar(f"losses/{name}_ce", ((ce * sel).sum() / sel.sum()).item(), step)
            writer.add_scalar("charts/learning_rate", scheduler.get_last_lr()[0], step)
            writer.add_scalar("charts/grad_norm", grad_norm.item(), step)
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
            model.eval()
            t_eval = time.time()
            returns, scores = evaluate(model, data, seeds, device, video_dir, edges=edges, plan=plan)
            eval_time = time.time() - t_eval
            model.train()
            writer.add_scalar("eval/episodic_return", returns.mean(), step)
            writer.add_scalar("charts/eval_time_s", eval_time, step)
            if scores is not None:
                writer.add_scalar("eval/normalized_score", scores.mean(), step)
                best_score = max(best_score, float(scores.mean()))
            history.append([step, float(returns.mean()), None if scores is None else float(scores.mean())])
            print(f"step {step}/{args.total_steps} | SPS {sps} | loss {loss.item():.4f} | "
                  f"{score_text(returns, scores)} | evaluation {eval_time:.1f} s", flush=True)
            if args.save_model:
                save_checkpoint(os.path.join(run_dir, f"{args.exp_name}.pt"), {
                    "algorithm": "trajectory_transformer", "model": model.state_dict(), "args": asdict(args),
                    "edges": edges.cpu(), "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    write_summary(run_dir, data, {
        "algorithm": "trajectory_transformer", "dataset_id": args.dataset_id, "seed": args.seed, "steps": args.total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
        "eval_time_s": round(eval_time, 1), "cpu_time_s": round(time.process_time(), 1),
    })
    writer.close()
