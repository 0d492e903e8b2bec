"""`reson train` end to end on a tiny model: GRPO steps, logging to TensorBoard and W&B (offline), emergence records,
checkpoints, SIGKILL and resume, the non-finite guard, the command line."""

from __future__ import annotations

import collections
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reson.core.config import RESOLVED_CONFIG_NAME, ConfigError, load_config
from reson.training.train import format_log_line, latest_checkpoint, main

CPU_RECIPE = Path(__file__).resolve().parents[1] / "src" / "reson" / "configs" / "grpo_cpu_tiny.yaml"
NUM_CANARIES = 4


def tiny_overrides(model: Path, output_dir: Path, data_dir: Path, **changes) -> dict:
    """The CPU recipe, shrunk to seconds: 2 prompts x 4 completions of 12 tokens per step, GSM8K rows."""
    return {
        "model_name_or_path": str(model),
        "output_dir": str(output_dir),
        "datasets": [{"name": "gsm8k", "split": "train"}],
        "data_dir": str(data_dir),
        "canary_dataset": "gsm8k",
        "num_train_problems": 16,
        "num_canaries": NUM_CANARIES,
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "max_completion_length": 12,
        "emergence_every": 2,
        "save_steps": 2,
        "logging_steps": 1,
        "disable_tqdm": True,
        "report_to": [],
        **changes,
    }


def as_argv(overrides: dict) -> list[str]:
    return [token for key, value in overrides.items() for token in (f"--{key}", json.dumps(value))]


class LengthReward:
    """Longer completions score higher. A random model never earns the accuracy or format reward, so every advantage
    would be zero and nothing would train; this gives the group a spread."""

    def __init__(self):
        self.__name__ = "length"

    def __call__(self, completions, **kwargs):
        return [len(c) / 50 for c in completions]


def emergence_steps(output_dir: Path) -> collections.Counter:
    lines = (output_dir / "emergence.jsonl").read_text().splitlines()
    return collections.Counter(json.loads(line)["step"] for line in lines)


# --- a few GRPO steps, with TensorBoard and W&B (offline) ------------------------------------------------------


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, tiny_model_path, shared_data):
    from reson.core import rewards
    from reson.training.train import train

    root = tmp_path_factory.mktemp("short_run")
    overrides = tiny_overrides(
        tiny_model_path,
        root / "out",
        shared_data,
        max_steps=4,
        rewards=["accuracy", "format", "length"],
        reward_weights=[1.0, 0.2, 1.0],
        learning_rate=1e-3,
        report_to=["tensorboard", "wandb"],
    )
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(root), "WANDB_SILENT": "true"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(rewards.REWARDS, "length", LengthReward)
        for key, value in env.items():
            mp.setenv(key, value)
        output_dir = train(load_config(CPU_RECIPE, overrides))
        import wandb

        wandb.finish()
    return root, output_dir


@pytest.mark.slow
def test_steps_run_and_the_loss_is_logged(short_run):
    _, output_dir = short_run
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    losses = [e for e in state["log_history"] if "loss" in e]
    assert [e["step"] for e in losses] == [1, 2, 3, 4]  # canary logs do not swallow a step's own log
    assert all(math.isfinite(e["loss"]) for e in losses)
    assert all("rewards/length/mean" in e and "rewards/accuracy/mean" in e for e in losses)


@pytest.mark.slow
def test_parameters_change(short_run, tiny_model_path):
    from safetensors.torch import load_file

    _, output_dir = short_run
    before = load_file(tiny_model_path / "model.safetensors")
    after = load_file(output_dir / "model.safetensors")
    changed = [name for name in before if not (before[name] == after[name]).all()]
    assert len(changed) >= len(before) // 2


@pytest.mark.slow
def test_final_model_tokenizer_and_resolved_config_are_saved(short_run, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reson.core import rewards

    monkeypatch.setitem(rewards.REWARDS, "length", LengthReward)
    _, output_dir = short_run
    assert AutoModelForCausalLM.from_pretrained(output_dir).config.model_type == "qwen2"
    assert "</think>" in AutoTokenizer.from_pretrained(output_dir).get_vocab()
    resolved = load_config(output_dir / RESOLVED_CONFIG_NAME, {"output_dir": str(output_dir / "again")})
    assert resolved.max_steps == 4 and resolved.rewards == ["accuracy", "format", "length"]


@pytest.mark.slow
def test_emergence_metrics_in_log_history(short_run):
    _, output_dir = short_run
    state = json.loads((output_dir / "trainer_state.json").read_text())
    canary_logs = [e for e in state["log_history"] if "emergence/think_usage_pct" in e]
    assert [e["step"] for e in canary_logs] == [0, 2, 4]
    for entry in canary_logs:
        for key in ("avg_think_tokens", "self_correction_rate", "canary_accuracy"):
            assert 0 <= entry[f"emergence/{key}"] < math.inf


@pytest.mark.slow
def test_emergence_metrics_reach_tensorboard(short_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, output_dir = short_run
    (events,) = {p.parent for p in output_dir.glob("runs/*/events.out.tfevents.*")}
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    for key in ("think_usage_pct", "avg_think_tokens", "self_correction_rate", "canary_accuracy"):
        (tag,) = [t for t in tags if t.endswith(f"emergence/{key}")]
        assert [e.step for e in accumulator.Scalars(tag)] == [0, 2, 4]
    assert any(t.endswith("/loss") for t in tags)


@pytest.mark.slow
def test_emergence_metrics_reach_wandb_offline(short_run):
    root, _ = short_run
    (run_file,) = root.glob("wandb/offline-run-*/run-*.wandb")
    data = run_file.read_bytes()
    for key in ("think_usage_pct", "avg_think_tokens", "self_correction_rate", "canary_accuracy"):
        assert f"emergence/{key}".encode() in data
    assert b"rewards/accuracy/mean" in data


@pytest.mark.slow
def test_emergence_jsonl_has_every_canary_step(short_run):
    _, output_dir = short_run
    assert emergence_steps(output_dir) == {0: NUM_CANARIES, 2: NUM_CANARIES, 4: NUM_CANARIES}
    record = json.loads((output_dir / "emergence.jsonl").read_text().splitlines()[0])
    assert {"step", "completion", "gold", "think_used", "think_tokens", "self_correction", "accuracy"} <= set(record)


# --- SIGKILL mid-run, then --resume ---------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_then_resume_reaches_max_steps(tmp_path, tiny_model_path, shared_data):
    output_dir = tmp_path / "out"
    overrides = tiny_overrides(tiny_model_path, output_dir, shared_data, max_steps=6)
    command = [sys.executable, "-m", "reson.training.train", "--config", str(CPU_RECIPE), *as_argv(overrides)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 240
    while latest_checkpoint(output_dir) is None and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()  # SIGKILL: no cleanup of any kind
    assert first.wait() == -9, (tmp_path / "first.log").read_text()[-2000:]
    killed_at = latest_checkpoint(output_dir)
    assert killed_at is not None and killed_at.name in ("checkpoint-2", "checkpoint-4")

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Continuing training from checkpoint" in resumed.stderr or "resum" in resumed.stderr.lower()

    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    loss_steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert loss_steps == [1, 2, 3, 4, 5, 6]  # no step lost, none repeated
    assert emergence_steps(output_dir) == {0: NUM_CANARIES, 2: NUM_CANARIES, 4: NUM_CANARIES, 6: NUM_CANARIES}


# --- the non-finite guard -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_non_finite_weights_stop_the_run_and_keep_the_good_checkpoint(tmp_path, tiny_model_path, shared_data):
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from reson.training.train import TrainingDiverged, train

    class Poison(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 3:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("nan"))

    output_dir = tmp_path / "out"
    overrides = tiny_overrides(
        tiny_model_path, output_dir, shared_data, max_steps=5, save_steps=1, save_total_limit=5, num_canaries=0
    )
    with pytest.raises(TrainingDiverged) as info:
        train(load_config(CPU_RECIPE, overrides), callbacks=[Poison()])
    assert "step 3" in str(info.value) and "checkpoint-2" in str(info.value)
    assert latest_checkpoint(output_dir).name == "checkpoint-2"
    assert not (output_dir / "checkpoint-3").exists() and not (output_dir / "model.safetensors").exists()
    weights = load_file(output_dir / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_guard_stops_on_a_non_finite_loss_and_cancels_the_save():
    from transformers import TrainerControl, TrainerState

    from reson.training.train import _callbacks

    _, NonFiniteGuard, _ = _callbacks()
    guard, state, control = NonFiniteGuard(), TrainerState(global_step=7), TrainerControl(should_save=True)
    guard.on_log(None, state, control, logs={"loss": 0.5, "grad_norm": 1.0})
    assert not control.should_training_stop
    guard.on_log(None, state, control, logs={"loss": float("nan"), "grad_norm": 1.0})
    assert control.should_training_stop and not control.should_save
    assert guard.step == 7 and "loss is nan" in guard.problem


# --- the command line and small pieces ------------------------------------------------------------------------


def test_help_lists_the_project_fields(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("--config", "--resume", "num_canaries", "emergence_every", "reward_timeout", "datasets"):
        assert name in out


def test_reson_train_help_through_the_cli():
    result = subprocess.run([sys.executable, "-m", "reson", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: reson train" in result.stdout


def test_config_error_exits_2_with_one_line(tmp_path, capsys, tiny_model_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(CPU_RECIPE.read_text() + "num_generation: 8\n")
    assert main(["--config", str(recipe), "--model_name_or_path", str(tiny_model_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "num_generation" in err and "bad.yaml" in err


def test_check_validates_without_training(tmp_path, capsys, tiny_model_path):
    argv = ["--config", str(CPU_RECIPE), "--model_name_or_path", str(tiny_model_path), "--check"]
    assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 0
    assert "valid" in capsys.readouterr().out and not (tmp_path / "out").exists()


def test_fresh_run_refuses_an_output_dir_with_checkpoints(tmp_path, tiny_model_path, shared_data):
    from reson.training.train import train

    (tmp_path / "out" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "out" / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    config = load_config(CPU_RECIPE, tiny_overrides(tiny_model_path, tmp_path / "out", shared_data))
    with pytest.raises(ConfigError, match="pass --resume"):
        train(config)


def test_latest_checkpoint_skips_a_half_written_one(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_console_line_is_compact():
    logs = {
        "loss": 0.01,
        "reward": 0.41234,
        "rewards/accuracy/mean": 0.3125,
        "rewards/format/mean": 0.75,
        "completions/mean_length": 23.44,
        "step_time": 0.614,
        "grad_norm": 0.3,
    }
    line = format_log_line(10, 150, logs)
    assert line == "step 10/150 | reward 0.412 | acc 0.312 | format 0.750 | len 23.4 | loss 0.0100 | 0.61 s/step"
    canary = format_log_line(50, 150, {"emergence/canary_accuracy": 0.5, "emergence/think_usage_pct": 87.5})
    assert canary.startswith("step 50/150 | canaries: acc 0.500 | think 87.5%")
    assert format_log_line(3, 10, {"train_runtime": 4.0}) is None
