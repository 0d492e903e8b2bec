"""`reson.training.sampler`: `model.generate`'s completions, token for token, and when the trainer uses it."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from reson.core.config import load_config
from reson.core.data import R1_ZERO_TEMPLATE, R1_ZERO_THINK_TEMPLATE, load_problems
from reson.core.models import load_tokenizer
from reson.miniature.tasks import TASKS
from reson.training import sampler
from reson.training.trainer import ResonTrainer


@pytest.fixture(scope="module")
def countdown_model():
    """The shipped search base model: it ends its completions with EOS after a guess (~9 tokens) or a search (more)."""
    folder = TASKS["countdown"].shipped_dir
    return AutoModelForCausalLM.from_pretrained(folder).eval(), load_tokenizer(str(folder))


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.7, 5, 0.9)])
def test_samples_generate_completions_token_for_token(countdown_model, temperature, top_k, top_p):
    """From the same random state, the completions are `generate`'s, token for token, and the random stream is left
    where `generate` leaves it: for prompts of different lengths (left padding), completions that end with EOS at
    different steps (rows leave the batch) and completions cut at the limit."""
    model, tokenizer = countdown_model
    questions = [row["question"] for row in load_problems("tiny_countdown", "test")[:4]]
    prompts = [
        template.format(question=q) for q in questions for template in (R1_ZERO_TEMPLATE, R1_ZERO_THINK_TEMPLATE)
    ]
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts for _ in range(4)]
    eos, limit = tokenizer.eos_token_id, 48
    settings = {"temperature": temperature, "top_k": top_k, "top_p": top_p}

    width = max(map(len, prompt_ids))
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([[eos] * (width - len(ids)) + ids for ids in prompt_ids]),
            attention_mask=torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids]),
            do_sample=True, max_new_tokens=limit, eos_token_id=eos, pad_token_id=eos, **settings,
        )  # fmt: skip
    after_generate = torch.rand(1)
    expected = [row[: row.index(eos) + 1] if eos in row else row for row in out[:, width:].tolist()]

    torch.manual_seed(0)
    with torch.no_grad():
        completions = sampler.sample(model, prompt_ids, max_new_tokens=limit, eos_ids={eos}, pad_id=eos, **settings)
    assert completions == expected
    assert torch.equal(torch.rand(1), after_generate)
    lengths = [len(c) for c in completions]
    assert min(lengths) < limit and limit in lengths, lengths  # rows left the batch early, others hit the limit
    assert len(set(lengths)) > 3 and len({len(ids) for ids in prompt_ids}) > 1


def _trainer(model_path, tmp_path, prompts=("q",) * 4, **overrides):
    from datasets import Dataset

    settings = {
        "model_name_or_path": str(model_path),
        "output_dir": str(tmp_path),
        "num_generations": 4,
        "per_device_train_batch_size": 4,
        "max_completion_length": 6,
        "num_canaries": 0,
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "reward_weights": None,
        **overrides,
    }
    return ResonTrainer(
        model=str(model_path),
        reward_funcs=[lambda completions, **kwargs: [float(len(c) % 3) for c in completions]],
        args=load_config("grpo_debug", overrides=settings),
        train_dataset=Dataset.from_dict({"prompt": list(prompts)}),
    )


def test_training_on_cpu_gives_the_weights_generate_gives(tmp_path, monkeypatch):
    """Three GRPO steps from the search base model (completions of many lengths) end on the same weights, bit for
    bit, whether completions come from the sampler or from TRL's `generate`."""
    questions = [row["question"] for row in load_problems("tiny_countdown", "train")[:6]]
    settings = {
        "prompts": [R1_ZERO_THINK_TEMPLATE.format(question=q) for q in questions],
        "max_completion_length": 32,
        "per_device_train_batch_size": 8,
        "max_steps": 3,
        "learning_rate": 1e-3,
        "save_strategy": "no",
    }
    weights = {}
    for path in ("sampler", "generate"):
        if path == "generate":
            monkeypatch.setattr(ResonTrainer, "_samples_on_cpu", lambda self, *args: False)
        trainer = _trainer(TASKS["countdown"].shipped_dir, tmp_path / path, **settings)
        trainer.train()
        weights[path] = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    before = AutoModelForCausalLM.from_pretrained(TASKS["countdown"].shipped_dir).state_dict()
    assert any(not torch.equal(p, before[name]) for name, p in weights["sampler"].items())  # it trained
    assert all(torch.equal(p, weights["generate"][name]) for name, p in weights["sampler"].items())


def test_trainer_samples_on_cpu_without_generate(tiny_model_path, tmp_path, monkeypatch):
    """On a CPU with the recipes' settings, completions come from the sampler (generate is never called), each at most
    max_completion_length tokens."""
    trainer = _trainer(tiny_model_path, tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("generate was called")

    monkeypatch.setattr(trainer.model, "generate", refuse)
    completions, logprobs = trainer._generate_single_turn([[5, 6, 7], [5, 6]], None, {}, 2)
    assert len(completions) == 2 and logprobs is None
    assert all(1 <= len(c) <= 6 for c in completions)


@pytest.mark.parametrize("overrides", [{"repetition_penalty": 1.1}, {"min_p": 0.1}])
def test_trainer_keeps_generate_for_settings_the_sampler_lacks(tiny_model_path, tmp_path, monkeypatch, overrides):
    trainer = _trainer(tiny_model_path, tmp_path, **overrides)
    called = []
    generate = trainer.model.generate
    monkeypatch.setattr(trainer.model, "generate", lambda *a, **k: called.append(1) or generate(*a, **k))
    completions, _ = trainer._generate_single_turn([[5, 6, 7], [5, 6]], None, {}, 2)
    assert called and len(completions) == 2
