"""The exercises: which functions a student writes, their points and the hint the student copy shows.

An exercise is a function of an algorithm script whose body sits between `# BEGIN SOLUTION` and
`# END SOLUTION`; its name is `<script stem>.<function>`. Its checks are the tests marked
`@pytest.mark.exercise("<name>")` in tests/; each script's learning check is marked
`@pytest.mark.learning("<stem>")`. docs/teaching.md lists them for teachers.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = ("bc.py", "cql.py", "bcq.py", "iql.py", "decision_transformer.py", "td3_bc.py", "awac.py",
           "mopo.py", "combo.py", "cal_ql.py", "rlpd.py", "bear.py", "trajectory_transformer.py")
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"


@dataclass(frozen=True)
class Exercise:
    points: int
    minutes: int
    hint: str
    observe: str
    """what a student sees when the solution works (docs/teaching.md)"""


EXERCISES: dict[str, Exercise] = {
    "bc.bc_loss": Exercise(1, 5, "the mean squared error between the policy's actions and the dataset's",
                           "`python bc.py` scores far above random on the default data"),
    # CQL
    "cql.tanh_gaussian_log_prob": Exercise(
        2, 15, "the Gaussian log-density of u summed over the dimensions, minus the log of tanh's slope at u, "
        "written with softplus so that it stays finite for large abs(u)",
        "`losses/entropy` stays finite"),
    "cql.cql_logsumexp": Exercise(
        3, 20, "importance sampling: weight each sample's exp Q by one over its proposal's density (uniform on "
        "[-1, 1]^d, or pi) and average over all 3N samples, in log space",
        "`values/q_random` sits below `values/q_data` (by about 2 on `local/pendulum/expert-v0`)"),
    "cql.cql_penalty": Exercise(
        1, 5, "for each critic, the batch mean of the logsumexp estimate minus Q at the dataset's action",
        "on `local/pendulum/expert-v0`, `values/q_data` follows `values/mc_return` while offline SAC's "
        "(`--cql-alpha 0`) climbs above it"),
    "cql.td_target": Exercise(
        1, 5, "the reward plus the discounted smaller of the two target critics' values, with no bootstrap where "
        "the episode terminated",
        "`losses/critic_loss` stays finite and `values/q_data` moves toward `values/mc_return`"),
    "cql.actor_loss": Exercise(
        1, 5, "the batch mean of beta * log pi minus the smaller twin's Q",
        "`values/q_policy` rises toward `values/q_data` and the score beats random"),
    "cql.cql_alpha_loss": Exercise(
        2, 10, "minus alpha' = exp(log_alpha') times (the twins' mean gap minus the target gap)",
        "with `--cql-lagrange`, `losses/alpha` rises while `losses/cql_gap` is above the target and falls below it"),
    # Cal-QL
    "cal_ql.calibrated_q": Exercise(
        1, 5, "the elementwise larger of each policy sample's Q-value and the reference value V^mu of its state, "
        "broadcast over the two critics and the K samples",
        "`values/bound_rate` (the `lifted` column of the progress line) is above 0: about 0.1 after 4,000 steps "
        "on the default data"),
    # RLPD (rlpd.py)
    "rlpd.td_target": Exercise(
        1, 10, "the smaller of the subset's target critics at (s', a'), minus beta log pi(a'|s'), discounted by gamma "
        "and dropped where the episode terminated, added to the reward",
        "`losses/critic_loss` stays finite, `values/q_target` tracks `values/q`, and `python rlpd.py` swings the "
        "pendulum up within a few thousand env steps"),
    # BCQ
    "bcq.vae_loss": Exercise(
        2, 15, "the mean squared error between the decoded and the data's actions, plus kl_weight times the KL of "
        "N(mu, sigma^2) to N(0, 1) computed from log sigma, averaged over batch and latent dimensions; return the "
        "loss and both terms",
        "`losses/vae_recon_loss` falls and `losses/vae_kl_loss` stays small and positive"),
    "bcq.perturbed_action": Exercise(
        1, 10, "squash the network's output with tanh, scale it by Phi and the half-width of the action range, add "
        "it to the VAE's samples, clip to the bounds; return both",
        "`values/perturbation_ratio` stays in [0, 1] (0 with `--phi 0`)"),
    "bcq.soft_clipped_target": Exercise(
        2, 15, "for each candidate mix the two critics' min and max with weights lambda and 1 - lambda, keep each "
        "state's best candidate, discount it and drop it at terminations",
        "`losses/critic_loss` stays finite and `values/q_data` settles"),
    "bcq.actor_loss": Exercise(
        1, 5, "the batch mean whose minimisation raises Q1 at the perturbed actions",
        "`values/q_chosen` sits above `values/q_data`"),
    # IQL
    "iql.expectile_loss": Exercise(
        1, 10, "weight each squared error u^2 by tau where u > 0 and by 1 - tau where u < 0, then average",
        "with tau 0.5 it is half the mean squared error; `values/v` rises with `--expectile`"),
    "iql.value_loss": Exercise(
        1, 5, "expectile regression of V(s) onto the target critics' Q(s, a) at the dataset's actions (Q held fixed)",
        "`values/v` settles between the mean and the maximum of Q over the data's actions"),
    "iql.q_loss": Exercise(
        2, 10, "each critic's mean squared error against r + gamma (1 - terminal) V(s'), V held fixed; sum the two",
        "`losses/q_loss` falls and `values/q` follows the data's returns"),
    "iql.awr_actor_loss": Exercise(
        2, 10, "minus the batch mean of min(exp(beta * A), max_weight) times log pi(a|s), the weights held fixed",
        "`python iql.py` scores far above BC on the default medium-replay data"),
    # TD3+BC
    "td3_bc.td3_bc_actor_loss": Exercise(
        2, 10, "lambda = alpha / mean |Q(s, pi(s))| held fixed; the loss is -lambda mean Q(s, pi(s)) plus the mean "
        "squared distance of pi(s) to the dataset's action",
        "`values/lambda` falls as abs(Q) grows; on the default data `--alpha 10` beats `bc.py` clearly"),
    "td3_bc.td3_target": Exercise(
        2, 15, "add clipped Gaussian noise to the target actor's action at s', clip to the bounds, take the smaller "
        "target critic, discount, and drop it at terminations",
        "`losses/critic_loss` stays finite"),
    "td3_bc.polyak_update": Exercise(
        1, 5, "move every target tensor a fraction tau of the way to its online twin, in place",
        "target values trail the online ones smoothly"),
    # AWAC
    "awac.critic_target": Exercise(
        2, 10, "sample a' from the policy at s', take the smaller target critic there, discount, drop at terminations",
        "`losses/critic_loss` stays finite"),
    "awac.awac_weights": Exercise(
        1, 5, "exp(A / lambda), clipped above at exp_adv_max",
        "an action as good as the policy's weighs 1; better ones weigh more"),
    "awac.awac_actor_loss": Exercise(
        1, 5, "minus the batch mean of weight times log pi(a|s) at the dataset's actions",
        "`python awac.py` beats BC on the default medium-replay data"),
    # BEAR (bear.py)
    "bear.mmd": Exercise(
        2, 15, "for each state, the mean of the kernel over all pairs within X, within Y and across; the kernel "
        "exp(-L1 distance / (2 sigma)) (laplacian) or exp(-squared L2 distance / (2 sigma)) (gaussian); return "
        "sqrt(kxx + kyy - 2 kxy + 1e-6)",
        "`losses/mmd` falls during the warm start"),
    "bear.actor_loss": Exercise(
        1, 10, "the smaller of the two critics' means over the policy's samples; the loss is the batch mean of "
        "minus that plus alpha times the MMD, or of alpha times the MMD alone in the warm start",
        "`values/q_policy` rises after the warm start"),
    "bear.alpha_loss": Exercise(
        1, 5, "minus alpha = exp(log alpha) times (the batch mean of the MMD, held fixed, minus epsilon)",
        "`losses/alpha` rises while `losses/mmd` is above `--epsilon` and falls below it"),
    # MOPO (mopo.py)
    "mopo.gaussian_nll": Exercise(
        2, 10, "per member, the batch and dimension mean of half of ((y - mu)^2 exp(-logvar) + logvar + log 2 pi)",
        "`losses/model_holdout_nll` falls during the model phase and ends below 0 on the default data"),
    "mopo.penalized_reward": Exercise(
        1, 5, "u is the largest, over the members, of the norm of sigma over the outputs; return r - lambda u and u",
        "`values/penalty` is positive and `values/penalized_reward` sits lambda times it below `values/model_reward`"),
    # COMBO (combo.py)
    "combo.combo_regularizer": Exercise(
        1, 10, "for each critic, the mean of the logsumexp estimate over the model's states minus the mean of Q over "
        "the dataset's pairs: two means over different samples",
        "`values/q_model_random` (Q at uniform actions in the model's states) sits below `values/q_real`"),
    # Decision Transformer
    "decision_transformer.returns_to_go": Exercise(
        2, 15, "for every transition, the undiscounted sum of the rewards from it to the end of its own episode "
        "(episode_starts and episode_lengths delimit the episodes)",
        "R_1 of each episode equals the episode's return"),
    "decision_transformer.interleave_tokens": Exercise(
        1, 10, "add the timestep embedding to each of the three embeddings, then interleave them per timestep as "
        "R, s, a into 3K tokens",
        "`losses/action_loss` falls during training"),
    "decision_transformer.action_loss": Exercise(
        1, 10, "the squared error averaged over the action dimensions, then over the positions where the mask is "
        "True only", "the training loss falls well below the variance of the data's actions"),
    "decision_transformer.update_context": Exercise(
        2, 20, "put a_t in the last slot, shift every tensor one slot left, and append R_t - scale * r_t, s_{t+1}, "
        "a zero action, t + 1 and True",
        "different `--target-returns` give different returns, a higher target scoring higher within the data's range"),
    # Trajectory Transformer (trajectory_transformer.py)
    "trajectory_transformer.bin_edges": Exercise(
        2, 15, "uniform: V + 1 evenly spaced edges from each column's min to its max; quantile: the sorted column at "
        "V + 1 evenly spaced indices from 0 to M - 1",
        "decode(encode(x)) lies within half a bin of x, and quantile bins hold about equally many values"),
    "trajectory_transformer.beam_score": Exercise(
        1, 10, "the predicted rewards discounted by gamma^k for k = 0..t, summed, plus gamma^(t+1) times the value",
        "on a hand-made model the planner finds the best plan, and a value makes a one-step plan look ahead"),
}


@dataclass(frozen=True)
class Seam:
    """Where an exercise's solution sits in a file: lines `begin`..`end` (1-based, the markers included)."""

    name: str
    path: Path
    function: str
    begin: int
    end: int
    indent: str


def find_seams(root: Path) -> list[Seam]:
    """Every BEGIN/END SOLUTION pair in the scripts under `root`, with the function that holds it."""
    seams = []
    for script in SCRIPTS:
        path = Path(root) / script
        if not path.is_file():
            continue
        text = path.read_text()
        lines = text.splitlines()
        functions = []  # (start, end, qualified name) of every function, outermost first

        def visit(node, prefix=""):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    functions.append((child.lineno, child.end_lineno, prefix + child.name))
                    visit(child, prefix + child.name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, prefix + child.name + ".")

        visit(ast.parse(text))
        begin = None
        for i, line in enumerate(lines, start=1):
            stripped = line.strip()
            if stripped == BEGIN:
                if begin is not None:
                    raise ValueError(f"{path}:{i}: {BEGIN} inside another solution block")
                begin = i
            elif stripped == END:
                if begin is None:
                    raise ValueError(f"{path}:{i}: {END} without {BEGIN}")
                holders = [f for f in functions if f[0] < begin <= f[1]]  # a trailing comment is past end_lineno
                if not holders:
                    raise ValueError(f"{path}:{begin}: a solution block outside any function")
                function = holders[-1][2]  # the innermost
                indent = lines[begin - 1][: len(lines[begin - 1]) - len(lines[begin - 1].lstrip())]
                seams.append(Seam(f"{path.stem}.{function}", path, function, begin, i, indent))
                begin = None
        if begin is not None:
            raise ValueError(f"{path}:{begin}: {BEGIN} without {END}")
    return seams


def markdown_table(root: Path = Path(__file__).resolve().parents[1]) -> str:
    """The exercises as the Markdown table of docs/teaching.md (a test keeps the page equal to it)."""
    rows = ["| exercise | function in | points | minutes | hint (what the student copy says) | when it works |",
            "| --- | --- | --- | --- | --- | --- |"]
    for seam in find_seams(root):
        ex = EXERCISES[seam.name]
        rows.append(f"| `{seam.name}` | `{seam.path.name}` | {ex.points} | {ex.minutes} | {ex.hint} | {ex.observe} |")
    total = sum(EXERCISES[s.name].points for s in find_seams(root))
    minutes = sum(EXERCISES[s.name].minutes for s in find_seams(root))
    rows.append(f"| **all** | | **{total}** | **{minutes}** | | |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
