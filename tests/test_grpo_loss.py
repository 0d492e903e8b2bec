"""The algorithm on the page: TRL's advantage and loss under the recipes' settings, checked by hand.

The recipes rely on Dr. GRPO (`loss_type: dr_grpo`, `scale_rewards: none`), no KL (`beta: 0`) and a PPO clip of 0.2.
Each shipped recipe's settings run through TRL's own code on a toy group, and the numbers must be Dr. GRPO's:

    reward     r_i = sum_k w_k r_ik                                  # the recipe's reward_weights
    advantage  A_i = r_i - mean_j r_j                                # over the group; not divided by its std
    ratio      rho_t = exp(logp_t - logp_old_t)                      # per token
    loss       = -sum_i sum_t min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps) A_i) / (G * max_completion_length)

So if TRL changes a default or a normaliser, the recipes cannot silently change meaning.
"""

from __future__ import annotations

import math

import pytest

from reson.core.config import RECIPES, load_config

RECIPE_NAMES = sorted(path.stem for path in RECIPES.glob("*.yaml"))
# a toy group: 4 completions of one prompt, with their accuracy and format rewards and lengths in tokens
ACCURACY = [1.0, 0.0, 0.0, 1.0]
FORMAT = [1.0, 1.0, 0.0, 0.0]
LENGTHS = [3, 2, 4, 1]
MAX_COMPLETION_LENGTH = 4


def toy_trainer(recipe: str, tiny_model_path, tmp_path, monkeypatch):
    """A GRPOTrainer on the tiny model with the recipe's loss, advantage and reward settings; completions come from
    a rollout function (no generation) and the rewards are fixed per completion."""
    from datasets import Dataset
    from trl import GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is what TRL offers to skip generation
    shipped = load_config(recipe, overrides={"model_name_or_path": "Qwen/Qwen2.5-0.5B"}, machine=False)
    settings = {key: getattr(shipped, key) for key in ("loss_type", "scale_rewards", "beta", "epsilon")}
    settings.update(reward_weights=shipped.reward_weights, epsilon_high=shipped.epsilon_high)
    config = load_config(
        "grpo_debug",
        overrides={
            **settings,
            "model_name_or_path": str(tiny_model_path),
            "output_dir": str(tmp_path),
            "rewards": ["accuracy", "format"],
            "num_generations": 4,
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 1,
            "max_completion_length": MAX_COMPLETION_LENGTH,
            "num_canaries": 0,
            "report_to": "none",
            "use_cpu": True,
            "bf16": False,
        },
    )

    def rollout(prompts, trainer):  # one completion per entry, of the toy lengths
        return {
            "prompt_ids": [[5, 6, 7]] * len(prompts),
            "completion_ids": [[8] * n for n in LENGTHS],
            "logprobs": None,
        }

    def accuracy(completions, **kwargs):
        return list(ACCURACY)

    def format_reward(completions, **kwargs):
        return list(FORMAT)

    trainer = GRPOTrainer(
        model=str(tiny_model_path),
        reward_funcs=[accuracy, format_reward],
        args=config,
        train_dataset=Dataset.from_dict({"prompt": ["q"] * 4}),
        rollout_func=rollout,
    )
    return trainer, shipped


@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_the_recipe_runs_dr_grpo(recipe, tiny_model_path, tmp_path, monkeypatch):
    import torch

    trainer, shipped = toy_trainer(recipe, tiny_model_path, tmp_path, monkeypatch)
    weights = shipped.reward_weights or [1.0, 1.0]  # a recipe without weights: TRL weighs every reward 1.0
    eps_low, eps_high = shipped.epsilon, shipped.epsilon_high or shipped.epsilon

    # ---- Advantages: TRL's, from the rewards of the group ----
    batch = trainer._generate_and_score_completions([{"prompt": "q"}] * 4)
    rewards = [weights[0] * a + weights[1] * f for a, f in zip(ACCURACY, FORMAT, strict=True)]
    mean = sum(rewards) / len(rewards)
    expected = [r - mean for r in rewards]  # scale_rewards none: no division by the group's std
    assert batch["advantages"].tolist() == pytest.approx(expected, abs=1e-6)
    assert batch["completion_mask"].sum(1).tolist() == LENGTHS

    # ---- Loss: TRL's, with known log-probabilities so each token's ratio is known ----
    # old log-probs 0, new log-probs log(rho): ratios above, inside and below the clip range
    ratios = torch.tensor([[1.5, 1.0, 0.5, 1.1]] * 4)  # [completions, tokens]
    logps = ratios.log()
    known = (logps, torch.zeros_like(logps), None)  # log-probs, entropies, no auxiliary loss
    monkeypatch.setattr(trainer, "_get_per_token_logps_and_entropies", lambda *args, **kwargs: known)
    batch["old_per_token_logps"] = torch.zeros_like(logps)
    loss = trainer._compute_loss(trainer.model, batch).item()

    total = 0.0
    for advantage, length in zip(expected, LENGTHS, strict=True):
        for rho in ratios[0, :length].tolist():
            clipped = min(max(rho, 1 - eps_low), 1 + eps_high)
            total += -min(rho * advantage, clipped * advantage)
    by_hand = total / (len(LENGTHS) * MAX_COMPLETION_LENGTH)  # a constant normaliser: no length bias
    assert math.isclose(loss, by_hand, rel_tol=1e-5, abs_tol=1e-7), (loss, by_hand)
    # what the recipe promises, so a changed recipe is seen here too
    assert (shipped.loss_type, shipped.scale_rewards, shipped.beta, shipped.epsilon) == ("dr_grpo", "none", 0.0, 0.2)
