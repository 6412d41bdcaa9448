"""Decision Transformer (DT): offline RL as sequence modelling, conditioned on the return to come.

Paper: Chen, Lu, Rajeswaran, Lee, Grover, Laskin, Abbeel, Srinivas, Mordatch, "Decision Transformer:
Reinforcement Learning via Sequence Modeling", NeurIPS 2021, https://arxiv.org/abs/2106.01345.

DT has no value function and no Bellman backup. A trajectory becomes a sequence of tokens
(R_1, s_1, a_1, R_2, s_2, a_2, ...), where R_t is the return-to-go, and a small causal transformer
(a GPT) is trained to predict each action a_t from the tokens up to s_t. At evaluation the first
return-to-go is the return we ask for: a knob, decremented by every reward received.

    R_t = sum_{t' >= t} r_{t'}
    L = E_{tau ~ D} [ 1/K sum_{t=1..K} || pi(R_{<=t}, s_{<=t}, a_{<t}) - a_t ||^2 ]

Run `python decision_transformer.py --help` for the flags; docs/decision_transformer.md maps the
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
    total_steps: int = 1_000
    """gradient steps (the paper and CORL use 100k on D4RL; 1k keeps the default run to minutes on 2 CPU cores)"""
    batch_size: int = 64
    """windows of `context_len` timesteps per gradient step (Chen 2021; CORL)"""
    eval_freq: int = 500
    """evaluate every this many gradient steps"""
    eval_episodes: int = 10
    """episodes per evaluation, run side by side in a vector env"""
    eval_env_kwargs: Optional[str] = None
    """evaluate in a changed env: a JSON object of env arguments or attributes, e.g. '{"m": 1.3}' (Pendulum's mass)"""

    # Algorithm-specific arguments
    learning_rate: float = 1e-4
    """AdamW learning rate (Chen 2021; CORL)"""
    weight_decay: float = 1e-4
    """AdamW weight decay (Chen 2021; CORL)"""
    warmup_steps: Optional[int] = None
    """linear learning-rate warm-up over this many steps; None = total_steps // 10 (the paper: 10k of 100k)"""
    grad_clip: float = 0.25
    """clip the gradient norm to this (Chen 2021; CORL)"""
    embed_dim: int = 128
    """width of the token embeddings and of the transformer (Chen 2021; CORL)"""
    n_layers: int = 3
    """transformer blocks (Chen 2021; CORL)"""
    n_heads: int = 1
    """attention heads per block (Chen 2021; CORL)"""
    context_len: int = 20
    """K, the timesteps the model sees: 3K tokens (Chen 2021; CORL)"""
    dropout: float = 0.1
    """dropout on embeddings, attention weights and residual branches (Chen 2021; CORL)"""
    reward_scale: Optional[float] = None
    """returns-to-go are multiplied by this; None = 10^-floor(log10(max |episode return|)), the largest |return|
    lands in [1, 10). It follows the dataset, not the env: on D4RL halfcheetah 1e-3 for medium and medium-replay,
    1e-4 for medium-expert and expert (best returns above 10,000); CORL uses 1e-3 everywhere"""
    target_returns: Optional[tuple[float, ...]] = None
    """returns to ask for at evaluation (raw, unscaled; the first is the main score); None = the dataset's best
    and median episode returns (the paper asks for an expert return and half of it)"""
    bf16: bool = True
    """bf16 autocast in the transformer on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX); weights stay fp32"""


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
    for name in ("embed_dim", "n_layers", "n_heads", "context_len"):
        if getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive (got {getattr(args, name)})")
    if not args.learning_rate > 0:
        errors.append(f"--learning-rate must be positive (got {args.learning_rate})")
    if not args.weight_decay >= 0:
        errors.append(f"--weight-decay must be >= 0 (got {args.weight_decay})")
    if not args.grad_clip > 0:
        errors.append(f"--grad-clip must be positive (got {args.grad_clip})")
    if args.warmup_steps is not None and args.warmup_steps < 0:
        errors.append(f"--warmup-steps must be >= 0 (got {args.warmup_steps})")
    if args.n_heads > 0 and args.embed_dim % args.n_heads != 0:
        errors.append(f"--embed-dim ({args.embed_dim}) must be a multiple of --n-heads ({args.n_heads})")
    if not 0.0 <= args.dropout < 1.0:
        errors.append(f"--dropout must be in [0, 1) (got {args.dropout})")
    if args.reward_scale is not None and not (args.reward_scale > 0 and math.isfinite(args.reward_scale)):
        errors.append(f"--reward-scale must be positive (got {args.reward_scale})")
    if args.target_returns is not None and (
        len(args.target_returns) == 0 or not all(math.isfinite(r) for r in args.target_returns)
    ):
        errors.append(f"--target-returns needs one or more finite returns (got {args.target_returns})")
    if errors:
        sys.exit("error: " + "\n       ".join(errors))


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention; the mask decides which earlier tokens each token may read."""

    def __init__(self, embed_dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)  # Q, K and V in one matmul
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """The outputs at the tokens x[:, rows] (all by default), each reading the tokens attn_mask allows."""
        B, L, H = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, H // self.n_heads).permute(2, 0, 3, 1, 4)
        # softmax(Q K^T / sqrt(d) + M) V, M = -inf where attn_mask is False (fused kernels on the GPU);
        # queries of the chosen rows only, keys and values of every token
        y = F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=attn_mask[..., rows, :],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, -1, H)))


class Block(nn.Module):
    """GPT-2 block: pre-LayerNorm attention and MLP, each on a residual branch."""

    def __init__(self, embed_dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dim)
        self.attn = CausalSelfAttention(embed_dim, n_heads, dropout)
        self.ln2 = nn.LayerNorm(embed_dim)
        # GELU is CORL's choice (dt.py), as in GPT-2; the paper's code (kzl/decision-transformer) sets ReLU.
        self.mlp = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(),
                                 nn.Linear(4 * embed_dim, embed_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """The block's outputs at the tokens x[:, rows] (all by default)."""
        x = x[:, rows] + self.attn(self.ln1(x), attn_mask, rows)
        return x + self.mlp(self.ln2(x))


# ALGO LOGIC: the token layout, the part of the model a student writes (course/make_assignment.py cuts
# the SOLUTION bodies out)
def interleave_tokens(return_emb: torch.Tensor, state_emb: torch.Tensor, action_emb: torch.Tensor,
                      time_emb: torch.Tensor) -> torch.Tensor:
    """The sequence (R_1, s_1, a_1, R_2, s_2, a_2, ..., R_K, s_K, a_K) the transformer reads. Each token is
    its own embedding plus the embedding of its timestep, which the three tokens of a timestep share
    (the only position signal). return_emb, state_emb, action_emb, time_emb: (B, K, H), one row per
    timestep of the window. Returns (B, 3K, H): token 3i is R, 3i+1 is s, 3i+2 is a of the window's i-th step."""
    # BEGIN SOLUTION
    B, K, H = time_emb.shape
    tokens = torch.stack([return_emb + time_emb, state_emb + time_emb, action_emb + time_emb], dim=2)  # (B, K, 3, H)
    return tokens.reshape(B, 3 * K, H)
    # END SOLUTION


class DecisionTransformer(nn.Module):
    """A small GPT over (R_t, s_t, a_t) tokens; predicts a_t from the output at s_t's token."""

    def __init__(self, obs_dim: int, act_dim: int, embed_dim: int, n_layers: int, n_heads: int,
                 context_len: int, max_ep_len: int, dropout: float, action_low, action_high):
        super().__init__()
        self.context_len, self.max_ep_len = context_len, max_ep_len
        self.embed_return = nn.Linear(1, embed_dim)
        self.embed_state = nn.Linear(obs_dim, embed_dim)
        self.embed_action = nn.Linear(act_dim, embed_dim)
        # The timestep within the episode is the only position signal (the paper drops GPT's own).
        self.embed_timestep = nn.Embedding(max_ep_len, embed_dim)
        self.embed_ln = nn.LayerNorm(embed_dim)
        self.embed_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(embed_dim, n_heads, dropout) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(embed_dim)
        self.predict_action = nn.Linear(embed_dim, act_dim)
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)
        self.register_buffer("causal", torch.tril(torch.ones(3 * context_len, 3 * context_len, dtype=torch.bool)))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2's initialisation (as in CORL): N(0, 0.02) weights, zero biases. With PyTorch's N(0, 1)
        # for nn.Embedding the timestep would drown the state in every token.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, returns_to_go, states, actions, timesteps, mask) -> torch.Tensor:
        """returns_to_go (B, K, 1) scaled, states (B, K, obs_dim) normalised, actions (B, K, act_dim),
        timesteps (B, K) int64, mask (B, K) bool, False at padding. Returns the predicted a_t (B, K, act_dim)."""
        K = timesteps.shape[1]
        # Timesteps past the longest episode of the data (evaluation only) reuse its last embedding.
        time_emb = self.embed_timestep(timesteps.clamp(max=self.max_ep_len - 1))
        tokens = interleave_tokens(self.embed_return(returns_to_go), self.embed_state(states),
                                   self.embed_action(actions), time_emb)  # (B, 3K, H)
        x = self.embed_drop(self.embed_ln(tokens))
        # Token i reads token j <= i, never a padded one; each reads itself, so no row is all -inf.
        real = mask.repeat_interleave(3, dim=1)
        causal = self.causal[: 3 * K, : 3 * K]
        attn_mask = (causal & (real[:, None, :] | torch.eye(3 * K, dtype=torch.bool, device=mask.device)))[:, None]
        for block in self.blocks[:-1]:
            x = block(x, attn_mask)
        # Only the outputs at the state tokens are read, so the last block computes those alone (its keys
        # and values still come from every token): a third of its queries, projection and MLP rows, the
        # same predictions, and 1.2x faster training at embed 256 on a CPU (docs/decision_transformer.md, Speed).
        x = self.ln_f(self.blocks[-1](x, attn_mask, rows=slice(1, None, 3)))
        # a_t = pi(R_{<=t}, s_{<=t}, a_{<t}): the output at s_t's token, tanh-bounded to the action box
        return torch.tanh(self.predict_action(x)) * self.action_scale + self.action_bias


# ALGO LOGIC: returns-to-go, the loss, and the step of a return-conditioned rollout (exercises, like the above)
def returns_to_go(rewards: torch.Tensor, episode_starts: torch.Tensor, episode_lengths: torch.Tensor) -> torch.Tensor:
    """R_t = sum_{t' >= t} r_{t'}: the undiscounted sum of the rewards from t to the end of t's episode.
    rewards: (N,) the flat dataset, episodes one after another; episode_starts, episode_lengths: (E,) int64,
    episode e being rewards[episode_starts[e] : episode_starts[e] + episode_lengths[e]].
    Returns (N,) float32; sum in float64 (an episode of D4RL has 1000 rewards, a dataset millions)."""
    # BEGIN SOLUTION
    # R_t = (sum of the rewards up to the episode's end) - (sum of the rewards before t), by cumulative sums
    c = torch.cat([rewards.new_zeros(1, dtype=torch.float64), torch.cumsum(rewards.double(), 0)])
    episode_of = torch.repeat_interleave(torch.arange(len(episode_starts), device=rewards.device), episode_lengths)
    end = (episode_starts + episode_lengths)[episode_of]
    return (c[end] - c[:-1]).float()
    # END SOLUTION


def sample_windows(end: torch.Tensor, context_len: int, start_of: torch.Tensor, rtg, states, actions, timesteps):
    """The K timesteps up to and including transition `end` (B,) of each window, left-padded where the
    episode began less than K steps before. Returns (rtg, states, actions, timesteps, mask)."""
    idx = end[:, None] + torch.arange(1 - context_len, 1, device=end.device)  # (B, K)
    mask = idx >= start_of[end][:, None]  # False at positions before the episode's first step
    idx = torch.where(mask, idx, end[:, None])  # any real index; zeroed below
    m = mask[..., None].to(states.dtype)
    return rtg[idx][..., None] * m, states[idx] * m, actions[idx] * m, timesteps[idx] * mask, mask


def action_loss(pred_actions: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L = 1/#real sum_{real t} 1/act_dim || a_hat_t - a_t ||^2: the squared error averaged over the action
    dimensions and over the real (unpadded) positions of all windows; padded positions weigh nothing.
    pred_actions, actions: (B, K, act_dim); mask: (B, K) bool, False at padding."""
    # BEGIN SOLUTION
    # a sum over the mask divided by its count: no boolean indexing, so no sync with the device
    return (((pred_actions - actions) ** 2).mean(-1) * mask).sum() / mask.sum()
    # END SOLUTION


def update_context(context: tuple, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
                   reward_scale: float) -> tuple:
    """The model's context after the env took a_t and returned r_t and s_{t+1}, for n envs side by side.
    context = (R (n, K, 1) scaled returns-to-go, s (n, K, obs_dim) normalised states, a (n, K, act_dim),
    t (n, K) int64 timesteps, mask (n, K) bool, False at empty slots): the last K steps, oldest first,
    step t in the last slot with a placeholder action. action (n, act_dim): a_t; reward (n,): raw r_t;
    next_obs (n, obs_dim): s_{t+1}, normalised. Returns the context of step t+1: a_t in the place of the
    placeholder, every slot moved one to the left (the oldest drops out), and in the last slot
        (R_{t+1} = R_t - reward_scale * r_t,  s_{t+1},  a zero placeholder action,  t + 1,  True)."""
    # BEGIN SOLUTION
    R, s, a, t, mask = context
    a = torch.cat([a[:, :-1], action[:, None]], 1)
    # R_{t+1} = R_t - r_t, in the model's scale: the return still to collect
    R_next = R[:, -1] - reward_scale * reward[:, None]
    return (torch.cat([R[:, 1:], R_next[:, None]], 1),
            torch.cat([s[:, 1:], next_obs[:, None]], 1),
            torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], 1),
            torch.cat([t[:, 1:], t[:, -1:] + 1], 1),
            torch.cat([mask[:, 1:], torch.ones_like(mask[:, :1])], 1))
    # END SOLUTION


# TRY NOT TO MODIFY: evaluation, checkpoints and logging (the shared helpers are the same in every script)
def use_bf16(device, flag: bool) -> bool:
    """bf16 autocast where the hardware has it: on the CPU without native bf16 it would be slower."""
    device = torch.device(device)
    if device.type == "cuda":
        return flag and torch.cuda.is_bf16_supported()
    return flag and device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def auto_reward_scale(episode_returns: torch.Tensor) -> float:
    """10^-floor(log10(max |R|)): the largest |episode return| of the dataset lands in [1, 10)."""
    largest = float(episode_returns.abs().max())
    return 10.0 ** -math.floor(math.log10(largest)) if largest > 0 else 1.0


def evaluation_seeds(seed: int, evaluation: int, episodes: int) -> list[int]:
    """Fresh start states at each evaluation, reproducible from (seed, evaluation index)."""
    return [int(s) for s in np.random.SeedSequence([seed, evaluation]).generate_state(episodes)]


@torch.no_grad()
def evaluate(model: DecisionTransformer, data: OfflineDataset, seeds: list[int], device,
             video_dir: Optional[str] = None, *, target_return: float, reward_scale: float, bf16: bool = False):
    """Roll out `model` autoregressively, asking for `target_return`, one episode per seed, all side
    by side. Returns (raw returns, normalised scores or None)."""

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
    # The context of step 0: K slots, all empty (masked out) but the last, which holds R_1 (the return we
    # ask for), s_1, a placeholder action and t = 0. update_context shifts each later step in from the right.
    n, K = len(seeds), model.context_len
    R = torch.zeros(n, K, 1, device=device)
    R[:, -1] = target_return * reward_scale
    states = torch.zeros(n, K, data.obs_dim, device=device)
    states[:, -1] = data.normalize_obs(torch.as_tensor(obs, dtype=torch.float32, device=device))
    mask = torch.zeros(n, K, dtype=torch.bool, device=device)
    mask[:, -1] = True
    context = (R, states, torch.zeros(n, K, data.act_dim, device=device),
               torch.zeros(n, K, dtype=torch.long, device=device), mask)
    while not done.all():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            action = model(*context)[:, -1].float()  # a_t: the prediction at the newest state token
        obs, reward, terminated, truncated, _ = envs.step(action.cpu().numpy().astype(envs.single_action_space.dtype))
        next_obs = data.normalize_obs(torch.as_tensor(obs, dtype=torch.float32, device=device))
        context = update_context(context, action, torch.as_tensor(reward, dtype=torch.float32, device=device),
                                 next_obs, reward_scale)
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


def make_model(a: dict, data: OfflineDataset, max_ep_len: int) -> DecisionTransformer:
    """The model from the args dict (the run's, or a checkpoint's)."""
    return DecisionTransformer(data.obs_dim, data.act_dim, a["embed_dim"], a["n_layers"], a["n_heads"],
                               a["context_len"], max_ep_len, a["dropout"], data.action_low, data.action_high)


def evaluate_targets(model, data, seeds, device, video_dir, targets, reward_scale, bf16) -> dict:
    """{target: (returns, scores)}, one batched evaluation per asked return."""
    return {R: evaluate(model, data, seeds, device, video_dir and os.path.join(video_dir, f"target_{R:g}"),
                        target_return=R, reward_scale=reward_scale, bf16=bf16) for R in targets}


def per_target_summary(results: dict) -> dict:
    return {f"{R:g}": {"returns": ret.tolist(), "return_mean": float(ret.mean()),
                       "normalized_score": None if sc is None else float(sc.mean())}
            for R, (ret, sc) in results.items()}


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
        checkpoint = load_checkpoint(args.eval_checkpoint, "decision_transformer",
                                     ("model", "reward_scale", "target_returns", "max_ep_len"), device)
        args.dataset_id = checkpoint["args"]["dataset_id"]
    try:
        data = load_dataset(args.dataset_id, device)
        if args.eval_env_kwargs is not None:  # a dynamics-shift test: evaluation only, the data stay
            data.set_eval_env_kwargs(json.loads(args.eval_env_kwargs))
    except DatasetError as e:
        sys.exit(f"error: {e}")
    max_ep_len = int(data.episode_lengths.max())  # longer evaluation episodes reuse the last timestep
    reward_scale = args.reward_scale if args.reward_scale is not None else auto_reward_scale(data.episode_returns)
    best_return, median_return = float(data.episode_returns.max()), float(data.episode_returns.median())
    targets = list(args.target_returns) if args.target_returns else [round(best_return, 1), round(median_return, 1)]

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
        model = make_model(checkpoint["args"], data, checkpoint["max_ep_len"]).to(device)
        model.load_state_dict(checkpoint["model"])
        model.eval()
        data.obs_mean, data.obs_std = checkpoint["obs_mean"].to(device), checkpoint["obs_std"].to(device)
        seeds = checkpoint["eval_seeds"]
        # The checkpoint's own targets, unless --target-returns asks for others.
        targets = list(args.target_returns) if args.target_returns else checkpoint["target_returns"]
        results = evaluate_targets(model, data, seeds, device, video_dir, targets, checkpoint["reward_scale"],
                                   use_bf16(device, checkpoint["args"]["bf16"]))
        for R, (returns, scores) in results.items():
            print(f"{args.eval_checkpoint}: target {R:g} | {score_text(returns, scores)}")
        returns, scores = results[targets[0]]
        write_summary(run_dir, data, {
            "dataset_id": args.dataset_id, "checkpoint": args.eval_checkpoint, "eval_seeds": seeds,
            "returns": returns.tolist(), "return_mean": float(returns.mean()),
            "normalized_score": None if scores is None else float(scores.mean()),
            "reference": data.ref_source,
            "target_returns": targets, "per_target": per_target_summary(results),
            "dataset_best_return": best_return, "dataset_median_return": median_return,
        })
        writer.close()
        sys.exit(0)

    model = make_model(asdict(args), data, max_ep_len).to(device)
    # AdamW on every parameter, as the paper's and CORL's code do
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    warmup = args.total_steps // 10 if args.warmup_steps is None else args.warmup_steps
    # lr_k = lr * min(1, (k + 1) / warmup): linear warm-up, then constant
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / max(1, warmup)))
    amp = use_bf16(device, args.bf16)
    # Sequences, computed once (the hot loop only indexes): the scaled return-to-go, the timestep and
    # the episode's first index of every transition; normalised observations.
    rtg_scaled = returns_to_go(data.rewards, data.episode_starts, data.episode_lengths) * reward_scale
    start_of = torch.repeat_interleave(data.episode_starts, data.episode_lengths)
    timesteps_all = torch.arange(data.size, device=device) - start_of
    observations = data.normalize_obs(data.observations)
    print(f"bf16 autocast {'on' if amp else 'off'} | returns-to-go scaled by {reward_scale:g} | dataset returns "
          f"{float(data.episode_returns.min()):.1f} .. {best_return:.1f} (median {median_return:.1f}) | "
          f"target returns {targets}")

    history, best_score, train_time, evaluations = [], -math.inf, 0.0, 0
    t_start = t_log = t_print = time.time()
    print(f"Training DT on {args.dataset_id} for {args.total_steps} steps on {device} ({run_dir})")
    for step in range(1, args.total_steps + 1):
        # Window ends drawn uniformly over transitions: episodes weighted by their length.
        end = torch.randint(0, data.size, (args.batch_size,), device=device)
        R, s, a, ts, mask = sample_windows(end, args.context_len, start_of, rtg_scaled, observations,
                                           data.actions, timesteps_all)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(R, s, a, ts, mask)  # a_hat_t = pi(R_{<=t}, s_{<=t}, a_{<t}) at every position t
        # L = 1/#real sum_{real t} || a_hat_t - a_t ||^2
        loss = action_loss(pred.float(), a, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        scheduler.step()

        evaluate_now = step % args.eval_freq == 0 or step == args.total_steps
        if step % 100 == 0 or evaluate_now:  # .item() syncs with the device: only at logging steps
            writer.add_scalar("losses/action_loss", loss.item(), step)
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
            results = evaluate_targets(model, data, seeds, device, video_dir, targets, reward_scale, amp)
            model.train()
            for R, (ret, sc) in results.items():
                writer.add_scalar(f"eval/target_{R:g}/episodic_return", ret.mean(), step)
                if sc is not None:
                    writer.add_scalar(f"eval/target_{R:g}/normalized_score", sc.mean(), step)
            returns, scores = results[targets[0]]  # the first target is the main score
            writer.add_scalar("eval/episodic_return", returns.mean(), step)
            if scores is not None:
                writer.add_scalar("eval/normalized_score", scores.mean(), step)
                best_score = max(best_score, float(scores.mean()))
            history.append([step, float(returns.mean()), None if scores is None else float(scores.mean())])
            print(f"step {step}/{args.total_steps} | SPS {sps} | loss {loss.item():.4f} | "
                  + " | ".join(f"target {R:g}: {score_text(*results[R])}" for R in targets), flush=True)
            if args.save_model:
                save_checkpoint(os.path.join(run_dir, f"{args.exp_name}.pt"), {
                    "algorithm": "decision_transformer", "model": model.state_dict(), "args": asdict(args),
                    "obs_mean": data.obs_mean.cpu(), "obs_std": data.obs_std.cpu(),
                    "reward_scale": reward_scale, "target_returns": targets, "max_ep_len": max_ep_len,
                    "step": step, "eval_seeds": seeds,
                })
            t_log = t_print = time.time()  # evaluation time does not count in SPS

    write_summary(run_dir, data, {
        "algorithm": "decision_transformer", "dataset_id": args.dataset_id, "seed": args.seed, "steps": args.total_steps,
        "final_normalized_score": history[-1][2], "best_normalized_score": None if best_score == -math.inf else best_score,
        "final_return_mean": history[-1][1], "final_returns": returns.tolist(), "reference": data.ref_source,
        "sps": sps, "wall_time_s": round(time.time() - t_start, 1), "eval_history": history,
        "target_returns": targets, "final_per_target": per_target_summary(results), "reward_scale": reward_scale,
        "dataset_best_return": best_return, "dataset_median_return": median_return,
    })
    writer.close()
