"""What is compared: for each algorithm, d3rlpy 2.8.1's config and ours set to the same architecture.
No torch here: the parent process, both children and the tests read this table."""

D3RLPY_VERSION = "2.8.1"
OBS_DIM, ACT_DIM = 11, 3  # Hopper's shapes
EPISODES, EPISODE_LENGTH = 100, 1000  # 100k transitions

# algo: script, d3rlpy's config class and the arguments given to it (empty: d3rlpy's defaults), our Args
# overrides, our variants (several where a switch of ours changes the speed; variant_args: their Args),
# and the setting in words.
# Learning rates and loss weights do not change the cost of a step; architecture, batch and sample counts do.
SETTINGS = {
    "cql": dict(
        script="cql.py", peer="CQLConfig", peer_args={}, batch=256,
        ours_args=dict(batch_size=256, hidden_dim=256, critic_layers=2, actor_layers=2, cql_n_actions=10,
                       cql_lagrange=True),
        variants=["default"],
        setting="d3rlpy's defaults: batch 256, twin critics and tanh-Gaussian actor 2x256, 10 uniform + 10 "
                "pi(s) + 10 pi(s') actions per state, Lagrange alpha, learned entropy temperature"),
    "bcq": dict(
        script="bcq.py", peer="BCQConfig", peer_args=dict(batch_size=256), batch=256,
        ours_args=dict(batch_size=256, hidden_dims=(256, 256), vae_hidden_dims=(256, 256), num_candidates=100),
        variants=["default"],
        setting="batch 256 (d3rlpy's default is 100), VAE, perturbation and twin critics 2x256 "
                "(d3rlpy's defaults), latent 2 x act_dim, 100 candidate actions per next state"),
    "dt": dict(
        script="decision_transformer.py", peer="DecisionTransformerConfig", peer_args={}, batch=64,
        ours_args=dict(batch_size=64, embed_dim=256, n_layers=3, n_heads=1, context_len=20, dropout=0.1),
        variants=["float32", "bf16"], variant_args={"float32": dict(bf16=False), "bf16": dict(bf16=True)},
        setting="d3rlpy's defaults: batch 64, context 20, embedding 256, 3 layers, 1 head, dropout 0.1, "
                "timesteps up to 1000 (d3rlpy embeds states with a 2x256 MLP, ours with one linear layer)"),
    "iql": dict(
        script="iql.py", peer="IQLConfig", peer_args={}, batch=256,
        ours_args=dict(batch_size=256, hidden_dim=256),
        variants=["default"],
        setting="d3rlpy's defaults: batch 256, V, twin Q and Gaussian actor 2x256, expectile 0.7"),
    "bc": dict(
        script="bc.py", peer="BCConfig", peer_args=dict(batch_size=256), batch=256,
        ours_args=dict(batch_size=256, hidden_dim=256),
        variants=["default"],
        setting="batch 256 (d3rlpy's default is 100), deterministic MLP 2x256, squared error"),
    "td3_bc": dict(
        script="td3_bc.py", peer="TD3PlusBCConfig", peer_args={}, batch=256,
        ours_args=dict(batch_size=256, hidden_dim=256, policy_freq=2),
        variants=["default"],
        setting="d3rlpy's defaults: batch 256, actor and twin critics 2x256, actor step every 2nd update"),
    "awac": dict(
        script="awac.py", peer="AWACConfig", peer_args={}, batch=1024,
        ours_args=dict(batch_size=1024, hidden_dim=256, actor_layers=2, critic_layers=2),
        variants=["default"],
        setting="d3rlpy's defaults: batch 1024, Gaussian actor and twin critics 2x256, 1 action sample"),
}
ALGOS = list(SETTINGS)
