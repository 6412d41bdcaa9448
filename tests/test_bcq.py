"""bcq.py: the VAE's loss, the perturbed action, the soft clipped double-Q target and the actor's loss by
hand (the course exercises); the target in blocks against a plain loop, the actor step, the Polyak
update, --phi 0, runs that do not depend on --eval-freq, end to end with checkpoint reload, learning
beats random, bad input."""

import math

import numpy as np
import pytest
import torch

import bcq
from common.datasets import load_dataset
from testdata import read_summary, run_script

# Small networks keep the end-to-end runs fast; the defaults are tested by the benchmark, not here.
SMALL = ["--hidden-dims", "32", "32", "--vae-hidden-dims", "32", "32"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # The scripts run here use tiny networks, bound by per-op overhead: one thread is faster, and a
    # busy shared CPU slows two spinning threads down by 10x or more (measured).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def make_agent(obs_dim=3, act_dim=2, low=(-1.0, 0.0), high=(3.0, 1.0), **overrides):
    args = bcq.Args(hidden_dims=(16, 16), vae_hidden_dims=(16, 16), **overrides)
    return bcq.BCQ(obs_dim, act_dim, torch.tensor(low), torch.tensor(high), args, "cpu")


def test_vae_reconstructs_through_the_clamped_reparameterised_latent():
    # Zero weights: the encoder outputs its last bias (mu, log sigma), the decoder tanh(bias) * scale.
    vae = bcq.VAE(obs_dim=2, act_dim=1, latent_dim=2, hidden_dims=(4,), latent_clip=0.5,
                  action_low=torch.tensor([-2.0]), action_high=torch.tensor([2.0]))
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        # mu = (0.5, -1), log sigma = (log 0.5, -6): the second is clamped to -4
        vae.encoder[-1].bias.copy_(torch.tensor([0.5, -1.0, math.log(0.5), -6.0]))
        vae.decoder[-1].bias.copy_(torch.tensor([0.3]))
    obs, actions = torch.randn(3, 2), torch.tensor([[1.0], [-0.5], [0.0]])
    decoded, mean, log_std = vae(obs, actions)
    torch.testing.assert_close(mean, torch.tensor([[0.5, -1.0]]).expand(3, 2))
    torch.testing.assert_close(log_std, torch.tensor([[math.log(0.5), -4.0]]).expand(3, 2))
    torch.testing.assert_close(decoded, torch.full((3, 1), 2.0 * math.tanh(0.3)))

    # The decoder reads z = mu + sigma * eps, so that the loss's gradient reaches mu and sigma.
    vae = bcq.VAE(2, 1, 2, (8,), 0.5, torch.tensor([-1.0]), torch.tensor([1.0]))
    obs, actions, eps = torch.randn(5, 2), torch.rand(5, 1) * 2 - 1, torch.randn(5, 2)
    decoded, mean, log_std = vae(obs, actions, eps)
    torch.testing.assert_close(decoded, vae.decode(obs, mean + log_std.exp() * eps))
    decoded.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.encoder.parameters())


@pytest.mark.exercise("bcq.vae_loss")
def test_vae_loss_is_reconstruction_plus_half_kl_by_hand():
    decoded, actions = torch.tensor([[0.5], [0.0]]), torch.tensor([[1.0], [-1.0]])
    mean = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    log_std = torch.tensor([[0.0, 0.0], [0.0, math.log(2.0)]])
    loss, recon, kl = bcq.vae_loss(decoded, actions, mean, log_std, 0.5)
    # squared errors 0.25 and 1: mean 0.625
    assert float(recon) == pytest.approx(0.625), \
        f"VAE reconstruction: for errors 0.5 and 1 expected their mean square 0.625, got {float(recon):.6g}"
    # KL per latent dimension, 1/2 (mu^2 + sigma^2 - 1 - log sigma^2): 0, 0.5, 2 and 1/2 (3 - 2 log 2)
    expected_kl = (0.0 + 0.5 + 2.0 + 0.5 * (3.0 - 2.0 * math.log(2.0))) / 4
    assert float(kl) == pytest.approx(expected_kl), \
        f"VAE KL: for mu = (0, 1; 2, 0), sigma = (1, 1; 1, 2) expected the mean {expected_kl:.6g}, got {float(kl):.6g}"
    assert float(loss) == pytest.approx(0.625 + 0.5 * expected_kl), \
        f"VAE loss: expected reconstruction + 0.5 KL = {0.625 + 0.5 * expected_kl:.6g}, got {float(loss):.6g}"
    loss, _, _ = bcq.vae_loss(decoded, actions, mean, log_std, 2.0)
    assert float(loss) == pytest.approx(0.625 + 2.0 * expected_kl), \
        f"VAE loss: with kl_weight 2 expected reconstruction + 2 KL = {0.625 + 2 * expected_kl:.6g}, got {float(loss):.6g}"
    _, _, kl = bcq.vae_loss(decoded, actions, torch.zeros(2, 2), torch.zeros(2, 2), 0.5)
    assert float(kl) == pytest.approx(0.0, abs=1e-7), \
        f"VAE KL: for mu = 0, sigma = 1 (the prior itself) expected 0, got {float(kl):.6g}"


def test_sampling_clips_the_latent():
    vae = bcq.VAE(2, 1, 2, (8,), 0.5, torch.tensor([-1.0]), torch.tensor([1.0]))
    obs = torch.randn(200, 2)
    torch.manual_seed(0)
    sampled = vae.decode(obs)
    torch.manual_seed(0)
    z = torch.randn(200, 2)
    assert (z.abs() > 0.5).any()
    torch.testing.assert_close(sampled, vae.decode(obs, z.clamp(-0.5, 0.5)))
    assert not torch.allclose(sampled, vae.decode(obs, z))


@pytest.mark.exercise("bcq.perturbed_action")
def test_perturbed_action_by_hand():
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([3.0, 1.0])  # half-widths (2, 0.5)
    actions = torch.tensor([[0.5, 0.9], [-0.95, 0.2]])
    f = torch.tensor([[math.atanh(0.5), 0.0], [-100.0, 100.0]])  # tanh: (0.5, 0) and (-1, 1)
    perturbed, xi = bcq.perturbed_action(actions, f, 0.1, (high - low) / 2, low, high)
    # xi = Phi * half-width * tanh(f) = (0.1 * 2 * 0.5, 0), (0.1 * 2 * -1, 0.1 * 0.5 * 1)
    expected_xi = torch.tensor([[0.1, 0.0], [-0.2, 0.05]])
    assert torch.allclose(xi, expected_xi, atol=1e-6), \
        f"perturbation: expected xi = Phi * scale * tanh(f) = {expected_xi.tolist()}, got {xi.tolist()}"
    # a + xi = (0.6, 0.9), (-1.15, 0.25): the first dimension of the second row is clipped to low = -1
    expected = torch.tensor([[0.6, 0.9], [-1.0, 0.25]])
    assert torch.allclose(perturbed, expected, atol=1e-6), \
        f"perturbed action: expected a + xi clipped to [low, high] = {expected.tolist()}, got {perturbed.tolist()}"


@pytest.mark.exercise("bcq.perturbed_action")
@pytest.mark.parametrize("phi", [0.05, 1.0])
def test_perturbation_stays_in_phi_and_actions_in_bounds(phi):
    torch.manual_seed(0)
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([3.0, 1.0])  # scale (2, 0.5), asymmetric
    actor = bcq.Perturbation(3, 2, (16, 16), phi, low, high)
    with torch.no_grad():
        actor.net[-1].weight.mul_(100.0)  # saturate tanh: the bound itself is reached
    obs = torch.randn(4000, 3) * 3
    actions = low + (high - low) * torch.rand(4000, 2)
    actions[:500] = low  # on the bounds, where a + xi would leave them
    actions[500:1000] = high
    perturbed, xi = actor(obs, actions)
    bound = phi * (high - low) / 2
    assert (xi.abs() <= bound + 1e-6).all(), f"perturbation: expected |xi| <= Phi * scale = {bound.tolist()}"
    assert (xi.abs().amax(dim=0) > 0.99 * bound).all(), \
        f"perturbation: a saturated network should reach the bound Phi * scale = {bound.tolist()}"
    assert ((perturbed >= low) & (perturbed <= high)).all(), "perturbed action: expected it inside [low, high]"
    assert (perturbed == low).any() and (perturbed == high).any(), \
        "perturbed action: actions on the bounds pushed outwards should be clipped to the bounds"
    inside = ((actions + xi > low) & (actions + xi < high)).all(dim=1)
    assert torch.allclose(perturbed[inside], (actions + xi)[inside]), \
        "perturbed action: expected exactly a + xi wherever that lies inside the bounds"

    agent = make_agent(phi=phi)
    with torch.no_grad():
        agent.actor.net[-1].weight.mul_(100.0)
    chosen = agent.act(torch.randn(500, 3) * 3)
    assert ((chosen >= low) & (chosen <= high)).all(), "acting: expected every chosen action inside [low, high]"


# 1000: one block; 10: two states per block; 15: blocks of 3 and 1 states; 3 (< n): one state per block
@pytest.mark.parametrize("block_rows", [1000, 10, 15, 3])
def test_target_matches_a_plain_loop(block_rows, monkeypatch):
    monkeypatch.setattr(bcq, "BLOCK_ROWS", block_rows)
    torch.manual_seed(1)
    agent = make_agent(num_candidates=5, lam=0.75, gamma=0.9)
    with torch.no_grad():  # targets unlike the online networks, so that using the wrong ones fails
        for p in agent.targets:
            p.add_(0.3 * torch.randn_like(p))
    B, n = 4, 5
    next_obs, rewards = torch.randn(B, 3), torch.randn(B)
    terminals = torch.tensor([0.0, 1.0, 0.0, 0.0])
    torch.manual_seed(7)
    y = agent.target(rewards, next_obs, terminals)

    # The same latents, drawn in the same order: block by block, state b's candidates in rows b*n..b*n+n-1.
    torch.manual_seed(7)
    states_per_block = max(1, block_rows // n)
    block_sizes = [min(states_per_block, B - start) for start in range(0, B, states_per_block)]
    z = torch.cat([torch.randn(k * n, agent.vae.latent_dim) for k in block_sizes]).clamp(-0.5, 0.5)
    for b in range(B):
        best = -math.inf
        for i in range(n):
            s = next_obs[b : b + 1]
            a, _ = agent.actor_target(s, agent.vae.decode(s, z[b * n + i : b * n + i + 1]))
            q1, q2 = agent.q1_target(s, a).item(), agent.q2_target(s, a).item()
            best = max(best, 0.75 * min(q1, q2) + 0.25 * max(q1, q2))
        expected = rewards[b].item() + (0.0 if terminals[b] else 0.9 * best)
        assert y[b].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.exercise("bcq.soft_clipped_target")
def test_soft_clipped_target_by_hand():
    # 3 next states x 2 candidates; the third state is a termination
    q1 = torch.tensor([[1.0, 5.0], [2.0, -1.0], [0.0, 3.0]])
    q2 = torch.tensor([[2.0, -3.0], [2.0, 4.0], [1.0, 1.0]])
    rewards, terminals = torch.tensor([1.0, -1.0, 0.5]), torch.tensor([0.0, 0.0, 1.0])
    y = bcq.soft_clipped_target(rewards, terminals, q1, q2, 0.9, 0.75)
    # state 0: candidates 0.75 * 1 + 0.25 * 2 = 1.25 and 0.75 * -3 + 0.25 * 5 = -1, best 1.25: 1 + 0.9 * 1.25
    # state 1: candidates 2 and 0.75 * -1 + 0.25 * 4 = 0.25, best 2: -1 + 0.9 * 2; state 2: r only
    expected = [2.125, 0.8, 0.5]
    assert torch.allclose(y, torch.tensor(expected)), \
        f"target: for lambda 0.75, gamma 0.9 expected {expected} (the third state terminal), got {y.tolist()}"


@pytest.mark.exercise("bcq.soft_clipped_target")
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_soft_clipped_target_matches_a_plain_loop(lam):
    g = torch.Generator().manual_seed(0)
    B, n = 5, 4
    q1, q2 = torch.randn(B, n, generator=g), torch.randn(B, n, generator=g)
    rewards, terminals = torch.randn(B, generator=g), torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0])
    y = bcq.soft_clipped_target(rewards, terminals, q1, q2, 0.99, lam)
    for b in range(B):
        best = max(lam * min(q1[b, i].item(), q2[b, i].item()) + (1 - lam) * max(q1[b, i].item(), q2[b, i].item())
                   for i in range(n))
        expected = rewards[b].item() + (0.0 if terminals[b] else 0.99 * best)
        assert y[b].item() == pytest.approx(expected, rel=1e-5, abs=1e-6), \
            f"target, lambda {lam}: for state {b} expected {expected:.5g}, got {y[b].item():.5g}"


@pytest.mark.exercise("bcq.actor_loss")
def test_actor_loss_is_minus_mean_q_and_its_step_raises_q():
    got = float(bcq.actor_loss(torch.tensor([1.0, 3.0, -1.0])))
    assert got == pytest.approx(-1.0), f"actor loss: for Q1 = (1, 3, -1) expected -mean = -1, got {got:.4g}"
    # Q(a) = -(a - 1)^2 peaks at a = 1: a gradient step on the loss must move a towards it and raise Q
    a = torch.zeros(4, requires_grad=True)
    bcq.actor_loss(-(a - 1.0) ** 2).backward()
    with torch.no_grad():
        stepped = a - 0.1 * a.grad
    assert (stepped > 0).all(), \
        f"actor loss: a gradient step should raise Q, moving a = 0 towards Q's peak at 1; it moved to {stepped.tolist()}"


def test_phi_zero_chooses_among_the_vae_candidates():
    agent = make_agent(phi=0.0, eval_candidates=7)
    obs = torch.randn(6, 3)
    generator = torch.Generator().manual_seed(3)
    chosen = agent.act(obs, generator)
    generator = torch.Generator().manual_seed(3)
    s = obs.repeat_interleave(7, dim=0)
    decoded = agent.vae.decode(s, generator=generator).view(6, 7, 2)
    q = agent.q1(s, decoded.reshape(42, 2)).view(6, 7)
    for b in range(6):
        assert any(torch.equal(chosen[b], decoded[b, i]) for i in range(7))
        torch.testing.assert_close(chosen[b], decoded[b, q[b].argmax()])

    # With Phi = 0 the perturbation network is left untouched by the updates.
    before = [p.clone() for p in agent.actor.parameters()]
    batch = torch.randn(8, 3), torch.rand(8, 2) * torch.tensor([4.0, 1.0]) - torch.tensor([1.0, 0.0])
    metrics = agent.update(batch[0], batch[1], torch.randn(8), torch.randn(8, 3), torch.zeros(8))
    assert all(torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
    assert metrics["values/perturbation_ratio"].item() == 0.0


def test_update_changes_all_networks_and_targets_follow_by_polyak_averaging():
    torch.manual_seed(0)
    agent = make_agent(tau=0.1)
    with torch.no_grad():  # targets unlike the online networks, so that mixing them up fails
        for p in agent.targets:
            p.add_(0.3 * torch.randn_like(p))
    online = [agent.vae, agent.actor, agent.q1, agent.q2]
    targets = [agent.actor_target, agent.q1_target, agent.q2_target]
    before = [[p.clone() for p in net.parameters()] for net in online + targets]
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([3.0, 1.0])
    metrics = agent.update(torch.randn(16, 3), low + (high - low) * torch.rand(16, 2), torch.randn(16),
                           torch.randn(16, 3), torch.zeros(16))
    for net, old in zip(online + targets, before):
        assert any(not torch.equal(a, b) for a, b in zip(old, net.parameters())), net
    # theta' <- tau theta + (1 - tau) theta', with theta the online weights after this step's gradient step
    for net, target, old in zip(online[1:], targets, before[len(online):]):
        for p, p_target, old_target in zip(net.parameters(), target.parameters(), old):
            torch.testing.assert_close(p_target, 0.1 * p + 0.9 * old_target)
    assert all(math.isfinite(v.item()) for v in metrics.values())
    assert 0.0 < metrics["values/perturbation_ratio"].item() <= 1.0


@pytest.mark.parametrize("seed", range(5))
def test_one_actor_step_raises_q1_at_the_perturbed_actions(seed):
    torch.manual_seed(seed)
    agent = make_agent(phi=0.5)
    obs = torch.randn(64, 3)
    critic_before = [p.clone() for p in [*agent.q1.parameters(), *agent.q2.parameters(), *agent.vae.parameters()]]
    torch.manual_seed(100 + seed)
    sampled = agent.vae.decode(obs)
    with torch.no_grad():
        before = agent.q1(obs, agent.actor(obs, sampled)[0]).mean().item()
    torch.manual_seed(100 + seed)  # update_actor draws the same VAE samples
    agent.update_actor(obs)
    with torch.no_grad():
        after = agent.q1(obs, agent.actor(obs, sampled)[0]).mean().item()
    assert after > before, f"one actor step should raise Q1 at the perturbed actions: {before:.6g} -> {after:.6g}"
    after_params = [*agent.q1.parameters(), *agent.q2.parameters(), *agent.vae.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(critic_before, after_params)), "the actor step moved a critic or the VAE"
    assert all(p.grad is None for p in agent.q1.parameters()), "the actor step computed gradients for critic 1"


def test_acting_leaves_the_global_random_stream_alone():
    # Logging's and evaluation's acting draw from their own generators: training's batches stay the same.
    agent, obs = make_agent(), torch.randn(5, 3)
    state = torch.get_rng_state()
    agent.act(obs, torch.Generator().manual_seed(0))
    agent.eval_policy([7, 8], "cpu")(obs)
    assert torch.equal(state, torch.get_rng_state()), "acting with a generator drew from torch's global stream"


def test_end_to_end_checkpoint_reloads_with_same_actions(pendulum_expert, run_dir):
    out = run_script("bcq.py", "--dataset-id", pendulum_expert, "--total-steps", 300, "--eval-freq", 150,
                     "--eval-episodes", 2, "--save-model", "--no-cuda", *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["steps"] == 300 and len(summary["eval_history"]) == 2
    assert math.isfinite(summary["final_normalized_score"]) and summary["sps"] > 0
    assert "step 300/300" in out.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = set(EventAccumulator(str(run)).Reload().Tags()["scalars"])
    for tag in ("losses/vae_recon_loss", "losses/vae_kl_loss", "losses/critic_loss", "losses/actor_loss",
                "values/q_data", "values/q_chosen", "values/perturbation_ratio", "charts/SPS",
                "eval/episodic_return", "eval/normalized_score"):
        assert tag in tags, tag

    ckpt = torch.load(run / "bcq.pt", weights_only=True)
    assert ckpt["algorithm"] == "bcq"
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    agent = bcq.BCQ(data.obs_dim, data.act_dim, data.action_low, data.action_high, bcq.Args(**ckpt["args"]), "cpu")
    agent.load_state_dict(ckpt)
    torch.testing.assert_close(ckpt["obs_mean"], data.obs_mean)
    # The reloaded policy, evaluated on the checkpoint's seeds, scores exactly what training reported.
    returns, scores = bcq.evaluate(agent.eval_policy(ckpt["eval_seeds"], "cpu"), data, ckpt["eval_seeds"], "cpu")
    np.testing.assert_allclose(returns, summary["final_returns"], rtol=1e-6)
    assert np.isfinite(scores).all()

    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("bcq.py", "--eval-checkpoint", run / "bcq.pt", "--no-cuda", cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["normalized_score"] == pytest.approx(summary["final_normalized_score"], rel=1e-9)


def test_same_seed_same_weights_whatever_the_evaluation_frequency(pendulum_expert, tmp_path):
    # Run 1 evaluates (and logs) only at the end, run 0 also halfway. Evaluating and logging draw from
    # random streams of their own, so both end with the same weights (and a run is deterministic).
    # That the evaluations themselves repeat is checked by the checkpoint reload above.
    runs = []
    for i, eval_freq in enumerate((50, 100)):
        (tmp_path / str(i)).mkdir()
        out = run_script("bcq.py", "--dataset-id", pendulum_expert, "--total-steps", 100, "--eval-freq", eval_freq,
                         "--eval-episodes", 2, "--save-model", "--no-cuda", "--seed", 3, *SMALL, cwd=tmp_path / str(i))
        assert out.returncode == 0, out.stderr
        runs.append(read_summary(tmp_path / str(i))[0])
    a, b = (torch.load(run / "bcq.pt", weights_only=True) for run in runs)
    assert a["step"] == b["step"] == 100
    for net in ("vae", "actor", "q1", "q2"):
        for name in a[net]:
            assert torch.equal(a[net][name], b[net][name]), f"{net}.{name} depends on --eval-freq"


@pytest.mark.learning("bcq")
def test_bcq_learns_to_beat_random(pendulum_expert, run_dir):
    # The controller's data is normalised to 100, the random policy to 0 (an untrained BCQ scores
    # about 0 too). Measured with these flags: 73 (seed 1, this run); seeds 2, 3, 4: 49, 60, 80.
    out = run_script("bcq.py", "--dataset-id", pendulum_expert, "--total-steps", 2000, "--eval-freq", 2000,
                     "--eval-episodes", 10, "--no-cuda", "--hidden-dims", "64", "64",
                     "--vae-hidden-dims", "64", "64", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    _, summary = read_summary(run_dir)
    assert summary["final_normalized_score"] > 40, summary


def test_phi_zero_runs_end_to_end(pendulum_expert, run_dir):
    out = run_script("bcq.py", "--dataset-id", pendulum_expert, "--total-steps", 100, "--eval-freq", 100,
                     "--eval-episodes", 2, "--no-cuda", "--phi", 0, *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert math.isfinite(summary["final_normalized_score"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ratio = EventAccumulator(str(run)).Reload().Scalars("values/perturbation_ratio")
    assert [e.value for e in ratio] == [0.0]


@pytest.mark.parametrize("overrides, message", [
    (dict(tau=0.0), "--tau must be in (0, 1] (got 0.0)"),
    (dict(gamma=1.0), "--gamma must be in [0, 1) (got 1.0)"),
    (dict(phi=-0.1), "--phi must be in [0, 2] (got -0.1)"),
    (dict(phi=2.5), "--phi must be in [0, 2] (got 2.5)"),
    (dict(phi=math.nan), "--phi must be in [0, 2] (got nan)"),
    (dict(lam=1.5), "--lam must be in [0, 1] (got 1.5)"),
    (dict(lam=-0.25), "--lam must be in [0, 1] (got -0.25)"),
    (dict(kl_weight=-1.0), "--kl-weight must be >= 0 (got -1.0)"),
    (dict(kl_weight=math.inf), "--kl-weight must be >= 0 (got inf)"),
    (dict(latent_clip=0.0), "--latent-clip must be positive (got 0.0)"),
    (dict(learning_rate=0.0), "--learning-rate must be positive (got 0.0)"),
    (dict(num_candidates=0), "--num-candidates must be positive (got 0)"),
    (dict(eval_candidates=0), "--eval-candidates must be positive (got 0)"),
    (dict(latent_dim=0), "--latent-dim must be positive (got 0)"),
    (dict(hidden_dims=(0, 32)), "--hidden-dims must be one or more positive widths"),
    (dict(vae_hidden_dims=()), "--vae-hidden-dims must be one or more positive widths"),
    (dict(batch_size=0), "--batch-size must be positive (got 0)"),
])
def test_bad_flags_are_refused(overrides, message):
    with pytest.raises(SystemExit) as exit_info:
        bcq.check_args(bcq.Args(**overrides))
    assert message in str(exit_info.value.code)


def test_good_flags_pass():
    bcq.check_args(bcq.Args())
    bcq.check_args(bcq.Args(phi=0.0, lam=0.0, tau=1.0, gamma=0.0, kl_weight=0.0))
    bcq.check_args(bcq.Args(phi=2.0, lam=1.0))


@pytest.mark.parametrize("flags, message", [
    (["--tau", "0", "--phi", "-0.1"], "--phi must be in [0, 2] (got -0.1)"),
    (["--dataset-id", "nonsense"], "is not a Minari dataset id"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(flags, message, pendulum_expert, run_dir):
    out = run_script("bcq.py", "--dataset-id", pendulum_expert, "--no-cuda", *flags, cwd=run_dir)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert not (run_dir / "runs").exists()


def test_a_checkpoint_of_another_script_is_refused(run_dir):
    torch.save({"algorithm": "iql", "actor": {}, "args": {}, "obs_mean": torch.zeros(3),
                "obs_std": torch.ones(3), "eval_seeds": [1]}, run_dir / "other.pt")
    out = run_script("bcq.py", "--eval-checkpoint", run_dir / "other.pt", "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "is a checkpoint of iql.py, not of bcq.py" in out.stderr
    assert not (run_dir / "runs").exists()


def test_discrete_dataset_is_refused(discrete_dataset, run_dir):
    out = run_script("bcq.py", "--dataset-id", discrete_dataset, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "action space Discrete(2)" in out.stderr and "continuous Box action space" in out.stderr
    assert not (run_dir / "runs").exists()
