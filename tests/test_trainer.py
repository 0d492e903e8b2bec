"""`ResonTrainer`: what it adds to TRL's GRPOTrainer, on completions of known lengths and endings."""

from __future__ import annotations

import pytest

from reson.core.config import load_config
from reson.training.trainer import TRUNCATED, ResonTrainer


def test_truncated_counts_only_completions_cut_at_the_limit(tiny_model_path, tmp_path, monkeypatch):
    """Four completions, limit 4: cut at the limit (truncated), ended with EOS early, ended with EOS exactly at the
    limit, and stopped early without EOS (as at a stop string). TRL's clipped_ratio counts the first and the last."""
    from datasets import Dataset

    from reson.core.models import load_tokenizer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func: completions without generating
    eos = load_tokenizer(str(tiny_model_path)).eos_token_id
    completions = [[8, 8, 8, 8], [8, eos], [8, 8, 8, eos], [8, 8, 8]]

    def rollout(prompts, trainer):
        return {"prompt_ids": [[5, 6, 7]] * len(prompts), "completion_ids": completions, "logprobs": None}

    overrides = {
        "model_name_or_path": str(tiny_model_path),
        "output_dir": str(tmp_path),
        "num_generations": 4,
        "per_device_train_batch_size": 4,
        "max_completion_length": 4,
        "num_canaries": 0,
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "reward_weights": None,
    }
    trainer = ResonTrainer(
        model=str(tiny_model_path),
        reward_funcs=[lambda completions, **kwargs: [0.0] * len(completions)],
        args=load_config("grpo_debug", overrides=overrides),
        train_dataset=Dataset.from_dict({"prompt": ["q"] * 4}),
        rollout_func=rollout,
    )
    trainer.model.train()  # as during training: the metrics are the training ones
    trainer._generate_and_score_completions([{"prompt": "q"}] * 4)
    metrics = trainer._metrics["train"]
    assert metrics[TRUNCATED] == [pytest.approx(0.25)]
    assert metrics["completions/clipped_ratio"] == [pytest.approx(0.5)]
