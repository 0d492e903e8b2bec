"""`reson.training.sampler`: `model.generate`'s completions and distribution, and when the trainer uses it."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.generation import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

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


def test_top_k_one_gives_generate_greedy_completions(countdown_model):
    """top_k=1 leaves one token to sample: the completions must be greedy `generate`'s, token for token, for prompts
    of different lengths (left padding) whose completions end with EOS at different steps (rows leave the batch),
    and for those cut at the limit."""
    model, tokenizer = countdown_model
    questions = [row["question"] for row in load_problems("tiny_countdown", "test")[:6]]
    prompts = [R1_ZERO_TEMPLATE.format(question=q) for q in questions[:3]]
    prompts += [R1_ZERO_THINK_TEMPLATE.format(question=q) for q in questions[3:]]  # searches: longer
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    eos = tokenizer.eos_token_id
    limit = 40

    torch.manual_seed(0)
    completions = sampler.sample(
        model, prompt_ids, max_new_tokens=limit, temperature=1.0, eos_ids={eos}, pad_id=eos, top_k=1
    )

    expected = []
    for ids in prompt_ids:  # one at a time: no padding in the reference
        out = model.generate(
            torch.tensor([ids]), do_sample=False, max_new_tokens=limit, eos_token_id=eos, pad_token_id=eos
        )
        expected.append(out[0, len(ids) :].tolist())
    assert completions == expected
    lengths = {len(c) for c in completions}
    assert min(lengths) < limit and limit in lengths, lengths  # some rows left the batch early, some hit the limit
    assert all(c[-1] == eos for c in completions if len(c) < limit)
    assert len({len(ids) for ids in prompt_ids}) > 1  # the batch was left-padded


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (0.5, 7, 0.6)]
)
def test_distribution_is_transformers_warpers(temperature, top_k, top_p):
    """The probabilities sampled from are those of transformers' temperature, top-k and top-p warpers, in its order."""
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    expected = warpers(None, logits.clone()).softmax(-1)
    assert torch.allclose(sampler._probabilities(logits, temperature, top_k, top_p), expected, atol=1e-6)


def test_sampling_draws_from_the_distribution(countdown_model):
    """The first token of a completion, sampled 4,000 times from one prompt, lands on each token at the model's
    probability: total variation between the counts and the softmax under 0.05. At temperature 2 the law has nine
    tokens over 1%; 4,000 draws from it stray 0.01-0.02, and the law at a temperature 25% off lies 0.20 away."""
    model, tokenizer = countdown_model
    question = load_problems("tiny_countdown", "test")[0]["question"]
    ids = tokenizer(R1_ZERO_THINK_TEMPLATE.format(question=question), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        probabilities = (model(torch.tensor([ids])).logits[0, -1] / 2.0).softmax(-1)
        torch.manual_seed(0)
        draws = sampler.sample(model, [ids] * 4000, max_new_tokens=1, temperature=2.0, eos_ids={-1}, pad_id=0)
    counts = torch.bincount(torch.tensor([d[0] for d in draws]), minlength=len(probabilities)).float()
    assert (probabilities > 0.01).sum() >= 5  # a law with several likely tokens, not one
    assert 0.5 * (counts / counts.sum() - probabilities).abs().sum() < 0.05


def _trainer(tiny_model_path, tmp_path, **overrides):
    from datasets import Dataset

    settings = {
        "model_name_or_path": str(tiny_model_path),
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
        model=str(tiny_model_path),
        reward_funcs=[lambda completions, **kwargs: [0.0] * len(completions)],
        args=load_config("grpo_debug", overrides=settings),
        train_dataset=Dataset.from_dict({"prompt": ["q"] * 4}),
    )


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
