"""Emergence canaries: when they run, what they record, and that their sampling is reproducible and isolated."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from reson.core.folders import EMERGENCE_FILE
from reson.training.emergence import EmergenceCallback, EmergenceLog


def settings(**changes):
    """The config fields the callback reads, as a training run's config gives them."""
    values = dict(
        emergence_every=5,
        max_completion_length=10,
        emergence_greedy=False,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        min_p=None,
        repetition_penalty=1.0,
        generation_kwargs=None,
        reward_timeout=5.0,
        seed=7,
    )
    return SimpleNamespace(**{**values, **changes})


def record(step: int, canary: int = 0) -> dict:
    return {"step": step, "canary": canary, "completion": "x"}


def test_log_appends_and_truncates_atomically(tmp_path):
    log = EmergenceLog(tmp_path / EMERGENCE_FILE)
    assert log.records() == [] and log.steps() == set()
    for step in (0, 10, 20, 30):
        log.append([record(step, 0), record(step, 1)])
    with log.path.open("a") as f:
        f.write('{"step": 40, "can')  # a line a SIGKILL cut short
    assert log.steps() == {0, 10, 20, 30}  # the partial line is skipped
    log.truncate_after(20)  # resuming from checkpoint-20
    assert [r["step"] for r in log.records()] == [0, 0, 10, 10, 20, 20]
    assert list(tmp_path.iterdir()) == [log.path]  # no temporary file left behind
    log.truncate_after(-1)  # a fresh run
    assert log.path.read_text() == ""


def test_due_at_zero_every_n_and_the_last_step():
    callback = EmergenceCallback([{"prompt": "p", "answer": "1"}], None, "unused", settings(emergence_every=10))
    assert [s for s in range(26) if callback.due(s, max_steps=25)] == [0, 10, 20, 25]
    callback._done = {10}  # already recorded before a resume
    assert not callback.due(10, max_steps=25)


@pytest.mark.parametrize("every, canaries", [(0, [{"prompt": "p", "answer": "1"}]), (10, [])])
def test_off_when_every_is_zero_or_no_canaries(every, canaries):
    callback = EmergenceCallback(canaries, None, "unused", settings(emergence_every=every))
    assert not any(callback.due(s, max_steps=30) for s in range(31))


@pytest.fixture(scope="module")
def model_and_canaries(tiny_model_path, shared_data):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reson.core.data import canary_rows, load_problems, with_prompts

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    rows = load_problems("gsm8k", "test", data_dir=str(shared_data))
    return model, tokenizer, with_prompts(canary_rows(rows, 3, seed=0))


def make_callback(tokenizer, canaries, output_dir, **changes) -> EmergenceCallback:
    return EmergenceCallback(canaries, tokenizer, output_dir, settings(**changes))


def completions(callback, model, step) -> list[str]:
    _, records = callback.run(model, step)
    return [r["completion"] for r in records]


@pytest.mark.slow
def test_run_records_every_canary_and_returns_the_metrics(tmp_path, model_and_canaries):
    from reson.core.metrics import summarize
    from reson.core.parsing import split_completion

    model, tokenizer, canaries = model_and_canaries
    callback = make_callback(tokenizer, canaries, tmp_path)
    metrics, _ = callback.run(model, step=5)
    for key in (
        "think_usage",
        "avg_think_tokens",
        "self_correction_rate",
        "canary_accuracy",
        "self_correction_rate_among_thinking",
    ):
        assert f"emergence/{key}" in metrics
    lines = (tmp_path / EMERGENCE_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["step"], r["canary"]) for r in records] == [(5, 0), (5, 1), (5, 2)]
    assert [r["prompt"] for r in records] == [c["prompt"] for c in canaries]  # so reson score can rescore them
    assert [r["gold"] for r in records] == [c["answer"] for c in canaries]
    for r, canary in zip(records, canaries, strict=True):
        assert 1 <= r["completion_tokens"] <= 10
        think = split_completion(r["completion"], canary["prompt"]).think
        expected = len(tokenizer(think, add_special_tokens=False)["input_ids"]) if think else 0
        assert r["think_tokens"] == expected  # counted in tokenizer tokens, not words
    # The metrics are reson.core.metrics' summary of exactly these records: evaluation computes them the same way.
    summary = summarize(records)
    assert metrics["emergence/think_usage"] == summary["think_usage"]
    assert metrics["emergence/canary_accuracy"] == summary["accuracy"]


@pytest.mark.slow
def test_sampling_is_seeded_by_step_and_leaves_the_training_rng_alone(tmp_path, model_and_canaries):
    import torch

    model, tokenizer, canaries = model_and_canaries
    callback = make_callback(tokenizer, canaries, tmp_path)
    torch.manual_seed(123)
    first = completions(callback, model, step=5)
    after_first = torch.rand(3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    assert torch.equal(after_first, expected)  # canary sampling consumed none of the training stream
    assert completions(callback, model, step=5) == first  # the same step samples the same (a resumed run repeats)
    other_steps = [completions(callback, model, step=s) for s in (10, 15)]
    assert any(texts != first for texts in other_steps)  # another step, another sample


@pytest.mark.slow
def test_greedy_canaries_do_not_depend_on_the_step(tmp_path, model_and_canaries):
    model, tokenizer, canaries = model_and_canaries
    callback = make_callback(tokenizer, canaries, tmp_path, emergence_greedy=True)
    assert completions(callback, model, step=0) == completions(callback, model, step=50)


@pytest.mark.slow
def test_generation_restores_train_mode_and_padding(tmp_path, model_and_canaries):
    model, tokenizer, canaries = model_and_canaries
    model.train()
    tokenizer.padding_side = "right"
    completions(make_callback(tokenizer, canaries[:1], tmp_path), model, step=0)
    assert model.training and tokenizer.padding_side == "right"


@pytest.mark.slow
def test_canaries_stop_where_training_stops(tmp_path, model_and_canaries):
    """With vLLM's stop at </answer> in the recipe, the canaries stop there too (and say it was a stop)."""
    model, tokenizer, canaries = model_and_canaries
    callback = make_callback(tokenizer, canaries, tmp_path, generation_kwargs={"stop": ["</answer>"]})
    assert callback.sampling.stop == ("</answer>",)
    assert make_callback(tokenizer, canaries, tmp_path).sampling.stop == ()
