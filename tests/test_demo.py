"""`reson demo` end to end at CI size: a small base model built here, a short GRPO run, evaluations before and after.

The learning check compares the mean reward of the first and last 8 of 30 steps of a fixed-seed run, at a learning
rate of 1e-4 (the recipe's, pinned here because the margin was measured at it), on a CI-size base model of the
earlier recipe (batch 16, tag share 0.1). Measured at this size (2-core CPU; pretraining seed, GRPO seed -> gain):
(0, 0) +0.071, (0, 1) +0.039, (1, 2) +0.081; the same runs at learning rate 0, the no-learning control: (0, 0)
+0.007, (1, 2) +0.011. The margin sits between the two: over twice the control's largest drift, under two thirds
of the smallest gain.
"""

from __future__ import annotations

import json

import pytest

from reson.core.config import ConfigError
from reson.miniature.demo import DemoError, run_demo
from reson.miniature.shipped import SHIPPED_DIR

# CI size: a base model from 3,000 pretraining texts (~20 s), 30 GRPO steps of 8 prompts x 8 completions.
BASE_SETTINGS = {"num_texts": 3000, "batch_size": 16, "tag_share": 0.1}
STEPS = 30
K = 8  # steps averaged at each end
MARGIN = 0.025  # mean reward gain required (see the module docstring)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("demo")
    overrides = {
        "learning_rate": 1e-4,
        "logging_steps": 1,
        "emergence_every": 10,
        "num_canaries": 8,
        "save_steps": 1000,
    }
    result = run_demo(
        output_dir, num_problems=24, max_steps=STEPS, threads=1, base_settings=BASE_SETTINGS, overrides=overrides
    )
    return output_dir, result


def rewards_per_step(run_dir) -> list[float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["reward"] for entry in history if "reward" in entry]


@pytest.mark.slow
def test_grpo_raises_the_reward(demo):
    _, result = demo
    rewards = rewards_per_step(result["paths"]["trained_model"])
    assert len(rewards) == STEPS
    first, last = sum(rewards[:K]) / K, sum(rewards[-K:]) / K
    assert last - first > MARGIN, f"mean reward {first:.3f} over the first {K} steps, {last:.3f} over the last {K}"


@pytest.mark.slow
def test_demo_writes_the_table_the_report_and_both_evaluations(demo):
    output_dir, result = demo
    table = result["table"]
    for row in (
        "accuracy (%)",
        "format compliance (%)",
        "think usage (%)",
        "mean completion tokens",
        "self-correction among thinking (%)",
    ):
        assert row in table
    compare_file = next(output_dir.glob("compare-*.md"))
    assert compare_file.read_text().strip() == table
    report = result["paths"]["report"]
    assert report.is_file() and (report.parent / "think_usage.png").is_file()
    for eval_dir, results in zip(result["paths"]["evals"], (result["before"], result["after"]), strict=True):
        stored = json.loads((eval_dir / "results.json").read_text())
        assert stored["datasets"]["synthetic"]["metrics"] == results["datasets"]["synthetic"]["metrics"]
        assert stored["datasets"]["synthetic"]["metrics"]["count"] == 24
    # the table's numbers are the evaluations' numbers
    before = result["before"]["datasets"]["synthetic"]["metrics"]
    assert f"| accuracy (%) | {100 * before['accuracy']:.1f} |" in table
    # the probe measured the latent skill on the same number of problems
    assert result["probe"]["count"] == 24
    # a base model built for the shipped seed has its own folder, next to the runs made from it
    assert result["paths"]["base_model"] == output_dir / "base-seed0-built"
    assert result["paths"]["trained_model"] == output_dir / "grpo-base0-built-seed0"
    phases = ["base model", "probe", "evaluation before", "GRPO", "evaluation after", "table and report"]
    assert list(result["phases"]) == phases


@pytest.mark.slow
def test_the_default_demo_starts_from_the_shipped_model(tmp_path):
    overrides = {"save_steps": 1000, "num_canaries": 4}
    result = run_demo(tmp_path, num_problems=4, max_steps=1, threads=1, overrides=overrides)
    assert result["paths"]["base_model"] == SHIPPED_DIR
    assert not list(tmp_path.glob("base-seed*"))  # nothing was built
    assert result["paths"]["trained_model"] == tmp_path / "grpo-base0-seed0"
    config = json.loads((tmp_path / "grpo-base0-seed0" / "config.json").read_text())
    assert config["model_type"] == "qwen2"


@pytest.mark.slow
def test_a_second_run_reuses_every_finished_phase(demo):
    output_dir, first = demo
    state = first["paths"]["trained_model"] / "trainer_state.json"
    stamp = state.stat().st_mtime_ns
    again = run_demo(output_dir, num_problems=24, max_steps=STEPS, threads=1, base_settings=BASE_SETTINGS)
    assert state.stat().st_mtime_ns == stamp  # not trained again
    assert again["table"] == first["table"]


def test_bad_input_stops_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: no such file"):
        run_demo(tmp_path / "out", recipe=tmp_path / "missing.yaml")
    with pytest.raises(DemoError, match="num_problems"):
        run_demo(tmp_path / "out", num_problems=0)
    with pytest.raises(DemoError, match="--max_steps -1"):
        run_demo(tmp_path / "out", max_steps=-1)
    with pytest.raises(ValueError, match="learning_rate"):
        run_demo(tmp_path / "out", overrides={"learning_rate": "fast"})
    assert not (tmp_path / "out").exists()  # nothing was built


def test_demo_help(capsys):
    from reson.cli import main

    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--pretrain_seed" in out and "--rebuild_base" in out
    assert "--task {arithmetic,countdown}" in out and "--control" in out


@pytest.mark.slow
def test_the_search_task_on_a_tiny_budget(tmp_path):
    """`reson demo --task countdown` end to end, far too small to learn: its own folders beside the arithmetic
    task's, the search rows, the base model's best-of-k line and the lr-0 control's column."""
    base = {"num_texts": 300, "batch_size": 16}
    overrides = {"save_steps": 1000, "num_canaries": 4, "emergence_every": 1, "max_completion_length": 24}
    result = run_demo(
        tmp_path, task="countdown", num_problems=4, max_steps=1, threads=1, base_settings=base, overrides=overrides,
        control=True,
    )  # fmt: skip
    table = result["table"]
    for row in (
        "mean candidates tried (Countdown)",
        "rejected a candidate and went on, among thinking (Countdown) (%)",
        "retry after a candidate shown wrong (Countdown) (%)",
        "retry after a candidate shown right (Countdown) (%)",
    ):
        assert row in table
    assert table.splitlines()[0].endswith("| lr-0 control |")
    assert "the base model's first guesses" in table and "at equal tokens" in table
    assert 1 <= result["search"]["k"] <= 8
    assert (tmp_path / "base-countdown-seed0-built" / "reson_base_model.json").is_file()
    assert result["paths"]["trained_model"] == tmp_path / "grpo-countdown-base0-built-seed0"
    assert (tmp_path / "grpo-countdown-base0-built-seed0-lr0" / "model.safetensors").is_file()
    metrics = result["before"]["datasets"]["tiny_countdown"]["metrics"]
    assert metrics["count"] == 4 and "rejection_rate_among_thinking" in metrics
    with pytest.raises(DemoError, match="--task chess"):
        run_demo(tmp_path / "other", task="chess")
