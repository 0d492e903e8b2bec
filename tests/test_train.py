"""`reson train` end to end on a tiny model: GRPO steps, logging to TensorBoard and W&B (offline), emergence records,
checkpoints, SIGKILL and resume, the non-finite guard, the command line."""

from __future__ import annotations

import collections
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from reson.core.config import load_config
from reson.core.folders import RUN_CONFIG, FolderError
from reson.training.callbacks import format_log_line
from reson.training.checkpoints import latest_checkpoint
from reson.training.train import main

CPU_RECIPE = "grpo_cpu_tiny"
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
    """TRL's command-line syntax: a list is several values, a mapping YAML, a boolean true/false, no report `none`."""
    argv = []
    for key, value in overrides.items():
        if value == [] and key == "report_to":
            value = "none"
        values = value if isinstance(value, list) else [value]
        argv += [
            f"--{key}",
            *(
                json.dumps(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v)
                for v in values
            ),
        ]
    return argv


class LengthReward:
    """Longer completions score higher. A random model never earns the accuracy or format reward, so every advantage
    would be zero and nothing would train; this gives the group a spread."""

    def __init__(self):
        self.__name__ = "length"

    def __call__(self, completions, **kwargs):
        return [len(c) / 50 for c in completions]


length = LengthReward()  # the short run names it by import path, test_train.length, as a user names their own


def emergence_steps(output_dir: Path) -> collections.Counter:
    lines = (output_dir / "emergence.jsonl").read_text().splitlines()
    return collections.Counter(json.loads(line)["step"] for line in lines)


# --- a few GRPO steps, with TensorBoard and W&B (offline) ------------------------------------------------------


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, tiny_model_path, shared_data):
    from reson.training.train import train

    root = tmp_path_factory.mktemp("short_run")
    overrides = tiny_overrides(
        tiny_model_path,
        root / "out",
        shared_data,
        max_steps=4,
        rewards=["accuracy", "format", "test_train.length"],
        reward_weights=[1.0, 0.2, 1.0],
        learning_rate=1e-3,
        report_to=["tensorboard", "wandb"],
    )
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}  # WANDB_DIR: reson train sets it to the run folder
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        output_dir = train(load_config(CPU_RECIPE, overrides=overrides))
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
    assert all(0.0 <= e["completions/truncated_ratio"] <= e["completions/clipped_ratio"] for e in losses)


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

    _, output_dir = short_run
    assert AutoModelForCausalLM.from_pretrained(output_dir).config.model_type == "qwen2"
    assert "</think>" in AutoTokenizer.from_pretrained(output_dir).get_vocab()
    resolved = load_config(output_dir / RUN_CONFIG, overrides={"output_dir": str(output_dir / "again")})
    assert resolved.max_steps == 4 and resolved.rewards == ["accuracy", "format", "test_train.length"]


@pytest.mark.slow
def test_emergence_metrics_in_log_history(short_run):
    _, output_dir = short_run
    state = json.loads((output_dir / "trainer_state.json").read_text())
    canary_logs = [e for e in state["log_history"] if "emergence/think_usage" in e]
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
    for key in ("think_usage", "avg_think_tokens", "self_correction_rate", "canary_accuracy"):
        (tag,) = [t for t in tags if t.endswith(f"emergence/{key}")]
        assert [e.step for e in accumulator.Scalars(tag)] == [0, 2, 4]
    assert any(t.endswith("/loss") for t in tags)
    (text_tag,) = [t for t in accumulator.Tags()["tensors"] if "emergence/completions" in t]  # one per canary step
    texts = accumulator.Tensors(text_tag)
    assert [e.step for e in texts] == [0, 2, 4]
    table = texts[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| step |") and table.count("\n") == 2 + NUM_CANARIES


@pytest.mark.slow
def test_emergence_metrics_reach_wandb_offline(short_run):
    root, output_dir = short_run
    assert not (root / "wandb").exists()  # the wandb folder lands beside the run, not in the working folder
    (run_file,) = output_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = run_file.read_bytes()
    for key in ("think_usage", "avg_think_tokens", "self_correction_rate", "canary_accuracy"):
        assert f"emergence/{key}".encode() in data
    assert b"rewards/accuracy/mean" in data
    assert b"emergence/completions" in data and b"table-file" in data  # the canary completions as a W&B table
    tables = list(output_dir.glob("wandb/offline-run-*/files/media/table/emergence/completions_*.table.json"))
    assert len(tables) == 3  # steps 0, 2 and 4
    assert all(len(json.loads(t.read_text())["data"]) == NUM_CANARIES for t in tables)


@pytest.mark.slow
def test_the_model_card_names_the_base_recipe_and_canary_results(short_run):
    _, output_dir = short_run
    card = (output_dir / "README.md").read_text()
    assert "base_model: null" in card  # a local base model has no hub name to link
    assert "4 steps of 2 prompts x 4 completions up to 12 tokens" in card
    assert "rewards: accuracy x 1.0, format x 0.2, test_train.length x 1.0" in card
    assert "| metric | step 0 | step 4 |" in card
    assert f"reson chat --model_name_or_path {output_dir}" in card
    assert (output_dir / "chat_template.jinja").is_file()


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
    command = [sys.executable, "-m", "reson", "train", "--config", CPU_RECIPE, *as_argv(overrides)]
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

    # resuming the finished run again is refused in one line, and changes nothing
    before = (output_dir / "trainer_state.json").read_bytes()
    again = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2 and "max_steps is 6: that run is finished" in again.stderr, again.stderr[-2000:]
    assert (output_dir / "trainer_state.json").read_bytes() == before
    assert not (output_dir / "checkpoint-7").exists()


# --- divergence: caught where it shows, before a bad step is saved --------------------------------------------


@pytest.mark.slow
def test_non_finite_weights_stop_the_run_and_keep_the_good_checkpoint(tmp_path, tiny_model_path, shared_data):
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from reson.training.faults import TrainingDiverged
    from reson.training.train import train

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
        train(load_config(CPU_RECIPE, overrides=overrides), callbacks=[Poison()])
    assert "step 3" in str(info.value) and "checkpoint-2" in str(info.value)
    assert latest_checkpoint(output_dir).name == "checkpoint-2"
    assert not (output_dir / "checkpoint-3").exists() and not (output_dir / "model.safetensors").exists()
    weights = load_file(output_dir / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


@pytest.mark.slow
def test_an_exploding_learning_rate_stops_with_one_line_before_any_bad_checkpoint(
    tmp_path, tiny_model_path, shared_data, capsys
):
    """lr 1e10 makes the weights finite but ~1e10 at the first step with a gradient: stopped there, exit 1, and every
    checkpoint kept holds weights of the starting scale (the issue found a "last good" one at ~1e10)."""
    import torch
    from safetensors.torch import load_file

    overrides = tiny_overrides(
        tiny_model_path, tmp_path / "out", shared_data, max_steps=6, save_steps=1, num_canaries=0, learning_rate=1e10
    )
    assert main(["--config", CPU_RECIPE, *as_argv(overrides)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("reson train: training diverged: after step") and "the largest weight is" in err
    assert "--resume applies the new values" in err
    start = max(w.abs().max() for w in load_file(tiny_model_path / "model.safetensors").values())
    kept = sorted((tmp_path / "out").glob("checkpoint-*"))
    assert ("no checkpoint was written" in err) == (not kept)
    for checkpoint in kept:
        assert checkpoint.name in err or checkpoint != kept[-1]
        weights = load_file(checkpoint / "model.safetensors").values()
        assert max(w.abs().max() for w in weights) < 100 * start and all(torch.isfinite(w).all() for w in weights)


def test_the_guard_refuses_non_finite_gradients_and_exploded_weights():
    import torch
    from transformers import TrainerControl, TrainerState

    from reson.training.callbacks import DivergenceGuard
    from reson.training.faults import TrainingDiverged

    model = torch.nn.Linear(2, 2)
    args = SimpleNamespace(fp16=False)
    guard, state, control = DivergenceGuard(), TrainerState(global_step=6), TrainerControl()
    guard.on_train_begin(args, state, control, model=model)
    model.weight.grad = torch.ones(2, 2)
    guard.on_pre_optimizer_step(args, state, control, model=model)  # finite: fine
    guard.on_optimizer_step(args, state, control, model=model)
    model.weight.grad[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="gradients of step 7 are not finite$"):
        guard.on_pre_optimizer_step(args, state, control, model=model)
    with torch.no_grad():
        model.weight.mul_(1e6)
    with pytest.raises(TrainingDiverged, match="after step 7 the largest weight"):
        guard.on_optimizer_step(args, state, control, model=model)


def test_in_fp16_the_guard_lets_the_loss_scaler_skip_overflowing_steps_but_not_forever():
    """The scaler skips a step whose gradients overflow and halves its scale; ten in a row is an overflow it cannot
    cure (a finite step in between starts the count again)."""
    import torch
    from transformers import TrainerControl, TrainerState

    from reson.training.callbacks import FP16_SKIPPED_STEPS, DivergenceGuard
    from reson.training.faults import TrainingDiverged

    model = torch.nn.Linear(2, 2)
    args, guard, state, control = SimpleNamespace(fp16=True), DivergenceGuard(), TrainerState(), TrainerControl()
    guard.on_train_begin(args, state, control, model=model)
    model.weight.grad = torch.full((2, 2), float("inf"))
    for _ in range(FP16_SKIPPED_STEPS - 1):
        guard.on_pre_optimizer_step(args, state, control, model=model)
    model.weight.grad = torch.ones(2, 2)
    guard.on_pre_optimizer_step(args, state, control, model=model)  # the scale found: the count starts again
    model.weight.grad = torch.full((2, 2), float("inf"))
    for _ in range(FP16_SKIPPED_STEPS - 1):
        guard.on_pre_optimizer_step(args, state, control, model=model)
    with pytest.raises(TrainingDiverged, match=f"not finite \\({FP16_SKIPPED_STEPS} steps in a row\\)"):
        guard.on_pre_optimizer_step(args, state, control, model=model)


def test_a_loss_that_is_not_finite_stops_the_step(monkeypatch):
    """A forward pass that overflows (fp16 with Qwen) gives a NaN loss: stopped before its gradients reach the
    weights, whatever the loss scaler would do with them."""
    import torch
    from trl import GRPOTrainer

    from reson.training.faults import TrainingDiverged
    from reson.training.trainer import ResonTrainer

    trainer = ResonTrainer.__new__(ResonTrainer)  # the loss check alone, without building a trainer
    trainer.state = SimpleNamespace(global_step=0)
    monkeypatch.setattr(GRPOTrainer, "compute_loss", lambda self, *args, **kwargs: torch.tensor(0.5))
    assert trainer.compute_loss(None, {}).item() == 0.5
    monkeypatch.setattr(GRPOTrainer, "compute_loss", lambda self, *args, **kwargs: torch.tensor(float("nan")))
    with pytest.raises(TrainingDiverged, match="the loss of step 1 is nan"):
        trainer.compute_loss(None, {})


def test_an_fp16_run_that_overflows_is_told_to_train_in_fp32_at_the_planned_cost(monkeypatch):
    import torch

    from reson.training.faults import fp16_remedy

    config = load_config("grpo_qwen2.5_0.5b_16gb", machine=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "set fp16: false to train in fp32" in fp16_remedy(config)
    t4 = SimpleNamespace(total_memory=15360 * 2**20)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: t4)
    said = fp16_remedy(config)
    assert re.search(r"a peak of [\d.]+ GiB in fp32 against 10.3 GiB in fp16, of 13.5 usable on this GPU", said), said
    # with LoRA on an fp16 base, fp32 means the base too: 3B in fp32 does not fit a T4, and the remedy says so
    said = fp16_remedy(load_config("grpo_qwen2.5_3b_lora_16gb", machine=False))
    assert "set fp16: false and dtype: float32 to train in fp32" in said
    assert re.search(r"a peak of [\d.]+ GiB in fp32 against 10.6 GiB in fp16, .* it does not fit", said), said


def test_the_divergence_message_names_the_starting_weight_when_the_floor_sets_the_limit():
    import torch
    from transformers import TrainerControl, TrainerState

    from reson.training.callbacks import DivergenceGuard
    from reson.training.faults import TrainingDiverged

    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.bias.fill_(0.25)
    guard, state, control = DivergenceGuard(), TrainerState(global_step=2), TrainerControl()
    guard.on_train_begin(None, state, control, model=model)  # 100 x 0.5 is under the floor: the limit is 1000
    with torch.no_grad():
        model.weight.fill_(2000.0)
    with pytest.raises(TrainingDiverged, match=r"is 2e\+03 \(at the start: 0.5; the limit is 1e\+03\)"):
        guard.on_optimizer_step(None, state, control, model=model)


# --- resume: the config's values win, and are recorded --------------------------------------------------------


@pytest.mark.slow
def test_resume_applies_a_changed_learning_rate_and_save_steps(tmp_path, tiny_model_path, shared_data):
    from reson.training.train import train

    output_dir = tmp_path / "out"
    first = tiny_overrides(
        tiny_model_path, output_dir, shared_data, max_steps=2, save_steps=1, num_canaries=0, learning_rate=1e-3
    )
    train(load_config(CPU_RECIPE, overrides=first))
    changed = {**first, "max_steps": 6, "learning_rate": 5e-4, "save_steps": 3}
    train(load_config(CPU_RECIPE, overrides=changed), resume=True)
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    rates = {e["step"]: e["learning_rate"] for e in history if "learning_rate" in e}
    assert rates[1] == rates[2] == pytest.approx(1e-3) and rates[3] == rates[6] == pytest.approx(5e-4)
    # every 3 steps from the resume (save_total_limit 2 keeps the last two): with the old 1 it would be 5 and 6
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    recorded = (output_dir / RUN_CONFIG).read_text()
    assert "learning_rate: 0.0005" in recorded and "save_steps: 3" in recorded
    assert (
        "# resumed from checkpoint-2 with changed settings" in recorded and "learning_rate 0.001 -> 0.0005" in recorded
    )


# --- the run folder: refused when it holds other work, locked while a run writes it ---------------------------


def test_a_finished_run_is_not_trained_over(tmp_path, tiny_model_path, shared_data):
    """A folder with a final model, trainer_state.json and emergence.jsonl (no checkpoints left) is refused."""
    from reson.training.train import train

    done = tmp_path / "out"
    done.mkdir()
    for name in ("trainer_state.json", "emergence.jsonl", "model.safetensors"):
        (done / name).write_text("{}")
    config = load_config(CPU_RECIPE, overrides=tiny_overrides(tiny_model_path, done, shared_data))
    with pytest.raises(FolderError, match="already holds a training run: resume it, pass --overwrite"):
        train(config)
    assert (done / "emergence.jsonl").read_text() == "{}"  # untouched


def test_an_evaluation_folder_is_not_a_training_folder(tmp_path, tiny_model_path, shared_data):
    from reson.training.train import train

    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text("{}")
    config = load_config(CPU_RECIPE, overrides=tiny_overrides(tiny_model_path, tmp_path / "eval", shared_data))
    with pytest.raises(FolderError, match="holds an evaluation: write a training run into another folder"):
        train(config)


def test_output_dir_naming_a_file_is_one_line(tmp_path, tiny_model_path, shared_data, capsys):
    (tmp_path / "file").write_text("x")
    overrides = tiny_overrides(tiny_model_path, tmp_path / "file", shared_data)
    assert main(["--config", CPU_RECIPE, *as_argv(overrides)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a file" in err


def test_a_model_folder_with_only_a_config_fails_before_anything_is_written(tmp_path, shared_data, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    overrides = tiny_overrides(tmp_path / "model", tmp_path / "out", shared_data)
    assert main(["--config", CPU_RECIPE, *as_argv(overrides)]) == 2
    assert "holds no weights" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_stops_naming_the_first(tmp_path, tiny_model_path, shared_data):
    output_dir = tmp_path / "out"
    overrides = tiny_overrides(tiny_model_path, output_dir, shared_data, max_steps=40, num_canaries=0)
    command = [sys.executable, "-m", "reson", "train", "--config", CPU_RECIPE, *as_argv(overrides)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (output_dir / RUN_CONFIG).exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the first run holds the lock from before it writes anything
        second = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"is in use by pid {first.pid}" in second.stderr and "reson train" in second.stderr
    finally:
        first.kill()
        first.wait()


def test_latest_checkpoint_passes_over_half_written_and_torn_ones(tmp_path):
    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_step": 4}'), (6, None), (8, '{"global_st')):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert latest_checkpoint(tmp_path).name == "checkpoint-4"  # 8's state is torn, 6 has none
    assert latest_checkpoint(tmp_path / "missing") is None


# --- the command line and small pieces ------------------------------------------------------------------------


def test_help_lists_trls_fields_and_ours(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in (
        "--config",
        "--resume",
        "--overwrite",
        "--num_canaries",
        "--emergence_every",
        "--reward_timeout",
        "--datasets",
        "--num_generations",
        "--loss_type",
        "--vllm_importance_sampling_mode",
    ):
        assert name in out


def test_reson_train_help_through_the_cli():
    result = subprocess.run([sys.executable, "-m", "reson", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: reson train" in result.stdout and "--learning_rate" in result.stdout


def test_config_error_exits_2_with_one_line(tmp_path, capsys, tiny_model_path):
    from reson.core.config import recipe_path

    recipe = tmp_path / "bad.yaml"
    recipe.write_text(recipe_path(CPU_RECIPE).read_text() + "num_generation: 8\n")
    assert main(["--config", str(recipe), "--model_name_or_path", str(tiny_model_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "num_generation" in err and "bad.yaml" in err


def test_check_prints_the_whole_resolved_config_without_training(tmp_path, capsys, tiny_model_path):
    argv = ["--config", CPU_RECIPE, "--model_name_or_path", str(tiny_model_path), "--check"]
    assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr()
    assert "valid" in printed.err and not (tmp_path / "out").exists()
    resolved = yaml.safe_load(printed.out)  # stdout is the YAML alone
    for field in ("num_canaries", "learning_rate", "adam_beta1", "vllm_importance_sampling_mode"):
        assert field in resolved  # TRL's fields too


def test_console_line_is_compact():
    logs = {
        "loss": 0.01,
        "reward": 0.41234,
        "rewards/accuracy/mean": 0.3125,
        "rewards/format/mean": 0.75,
        "completions/mean_length": 23.44,
        "completions/truncated_ratio": 0.0625,
        "completions/clipped_ratio": 0.125,
        "sampling/importance_sampling_ratio/mean": 0.9912,
        "step_time": 0.614,
        "grad_norm": 0.3,
    }
    line = format_log_line(10, 150, logs)
    assert line == (
        "step 10/150 | reward 0.412 | acc 0.312 | format 0.750 | len 23.4 | truncated 0.06 | no EOS 0.12 | "
        "IS ratio 0.991 | loss 0.0100 | 0.61 s/step"
    )
    canary = format_log_line(
        50,
        150,
        {
            "emergence/canary_accuracy": 0.5,
            "emergence/think_usage": 0.875,
            "emergence/avg_think_tokens": 21.25,
            "emergence/self_correction_rate": 0.1,
            "emergence/self_correction_rate_among_thinking": 0.125,
        },
    )
    assert canary == (
        "step 50/150 | canaries: acc 0.500 | think 87.5% | think tokens 21.2 | self-correction among thinking 0.125"
    )
    assert format_log_line(3, 10, {"train_runtime": 4.0}) is None


def test_a_disk_too_small_for_the_run_is_said_at_the_start(tmp_path, monkeypatch, caplog):
    """The 3B recipe keeps 3 checkpoints of fp32 weights and AdamW moments (~37 GB each), writes a fourth and the
    final model: ~160 GB. Less free space is a warning before the first step, not a crash at step 150."""
    import collections
    import shutil

    from reson.training import checkpoints

    config = load_config("grpo_qwen2.5_3b_h100", overrides={"output_dir": str(tmp_path / "run")}, machine=False)
    assert 150e9 < checkpoints.disk_needed(config) < 170e9
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 100e9, 100e9))
    with caplog.at_level("WARNING"):
        checkpoints.warn_if_disk_is_short(config)
    assert "100 GB free" in caplog.text and "need about 1" in caplog.text
    caplog.clear()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 0, 10**12))
    checkpoints.warn_if_disk_is_short(config)
    assert caplog.text == ""


# --- preemption, a full disk, out of memory: one line each, nothing written lost ---------------------------------


def start_and_wait_for_step(command: list[str], log: Path, step: int) -> subprocess.Popen:
    """Start a training process and return once its console has printed `step` (the run is between steps)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 240
    while f"step {step}/" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


@pytest.mark.slow
def test_sigterm_saves_the_step_in_flight_and_resume_ends_where_an_uninterrupted_run_does(
    tmp_path, tiny_model_path, shared_data
):
    from safetensors.torch import load_file

    def command(name: str) -> list[str]:
        overrides = tiny_overrides(tiny_model_path, tmp_path / name, shared_data, max_steps=6, save_steps=100)
        return [sys.executable, "-m", "reson", "train", "--config", CPU_RECIPE, *as_argv(overrides)]

    straight = subprocess.run(command("straight"), capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    first = start_and_wait_for_step(command("stopped"), tmp_path / "first.log", 2)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 143
    said = (tmp_path / "first.log").read_text().strip().splitlines()[-1]
    step = int(re.search(r"stopped by SIGTERM after step (\d+);", said).group(1))
    assert f"checkpoint-{step} is the resume point" in said and "--resume" in said, said
    assert latest_checkpoint(tmp_path / "stopped").name == f"checkpoint-{step}" and 2 <= step < 6
    assert not (tmp_path / "stopped" / "model.safetensors").exists()  # not a finished run

    resumed = subprocess.run([*command("stopped"), "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert emergence_steps(tmp_path / "stopped") == emergence_steps(tmp_path / "straight")
    expected, got = (load_file(tmp_path / name / "model.safetensors") for name in ("straight", "stopped"))
    assert all((expected[key] == got[key]).all() for key in expected)  # bit for bit: nothing lost, nothing redone


@pytest.mark.slow
def test_a_second_sigterm_stops_at_once_and_the_run_still_resumes(tmp_path, tiny_model_path, shared_data):
    output_dir = tmp_path / "out"
    overrides = tiny_overrides(tiny_model_path, output_dir, shared_data, max_steps=6, save_steps=1)
    command = [sys.executable, "-m", "reson", "train", "--config", CPU_RECIPE, *as_argv(overrides)]
    first = start_and_wait_for_step(command, tmp_path / "first.log", 2)
    first.send_signal(signal.SIGTERM)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) in (-signal.SIGTERM, 143)  # at once; or the step was already saved
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_a_full_disk_while_saving_keeps_the_last_checkpoint_and_says_what_it_needs(
    tmp_path, tiny_model_path, shared_data, monkeypatch, capsys
):
    """The second checkpoint's weights hit ENOSPC half-written: the run stops in one line, the partial checkpoint is
    gone, the first is whole, and --resume once there is space finishes the run."""
    import errno

    import transformers.modeling_utils as writer  # where save_pretrained writes safetensors

    output_dir = tmp_path / "out"
    overrides = tiny_overrides(tiny_model_path, output_dir, shared_data, max_steps=4, num_canaries=0)
    real_save, saves = writer.safe_save_file, []

    def full_disk(tensors, filename, *args, **kwargs):
        saves.append(filename)
        if len(saves) == 2:  # the second checkpoint: half a file, then no space
            Path(filename).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(filename))
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(writer, "safe_save_file", full_disk)
    assert main(["--config", CPU_RECIPE, *as_argv(overrides)]) == 1
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"the disk of {output_dir} is full (No space left on device;" in said and "GB free" in said, said
    assert "a checkpoint of this run takes about" in said and "the partial checkpoint-4 was removed" in said
    assert "checkpoint-2 is the resume point" in said and "--resume" in said
    assert not (output_dir / "checkpoint-4").exists() and latest_checkpoint(output_dir).name == "checkpoint-2"
    monkeypatch.setattr(writer, "safe_save_file", real_save)  # space freed
    assert main(["--config", CPU_RECIPE, *as_argv(overrides), "--resume"]) == 0
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 4


def out_of_memory(*args, **kwargs):
    import torch

    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.57 GiB total capacity)")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "phase"),
    [
        ("trl.GRPOTrainer._generate", "in generation at step 1"),
        ("trl.GRPOTrainer._calculate_rewards", "in scoring the completions (rewards and log-probabilities) at step 1"),
        ("trl.GRPOTrainer.compute_loss", "in the training step's forward and backward at step 1"),
        ("reson.training.emergence.EmergenceCallback.run", "in the canaries' generation at step 0"),
    ],
)
def test_out_of_memory_says_the_phase_the_step_the_plan_and_its_first_knob(
    target, phase, tmp_path, tiny_model_path, shared_data, monkeypatch, capsys
):
    import torch

    monkeypatch.setattr(target, out_of_memory)
    t4 = SimpleNamespace(total_memory=15360 * 2**20)  # the planner's figures for the GPU the run is on
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: t4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    overrides = tiny_overrides(tiny_model_path, tmp_path / "out", shared_data, max_steps=2, use_cpu=True)
    assert main(["--config", CPU_RECIPE, *as_argv(overrides)]) == 1
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said[-1]) > 0 and said[-1].startswith(f"reson train: out of GPU memory {phase} (tried to allocate 2.00")
    assert "reson plan predicted a peak of" in said[-1] and "its first knob: num_generations 4 -> 2" in said[-1]
    assert "Nothing written is lost: no checkpoint was written yet." in said[-1]


@pytest.mark.slow
def test_a_full_disk_while_saving_the_final_model_leaves_no_partial_model(
    tmp_path, tiny_model_path, shared_data, monkeypatch, capsys
):
    import errno

    import transformers.modeling_utils as writer

    def full_disk(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))

    output_dir = tmp_path / "out"
    overrides = tiny_overrides(tiny_model_path, output_dir, shared_data, max_steps=2, save_steps=100, num_canaries=0)
    monkeypatch.setattr(writer, "safe_save_file", full_disk)  # the final model is the first thing saved
    assert main(["--config", CPU_RECIPE, *as_argv(overrides)]) == 1
    assert "is full" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (output_dir / "model.safetensors").exists()  # nothing that looks like a finished run
    assert not (output_dir / ".final-model").exists()


@pytest.mark.slow
def test_a_countdown_run_logs_the_canaries_search_measures(tmp_path, tiny_model_path, shared_data):
    from reson.training.train import train

    overrides = tiny_overrides(
        tiny_model_path,
        tmp_path / "out",
        shared_data,
        max_steps=2,
        datasets=[{"name": "synthetic_countdown", "split": "train"}],
        canary_dataset="synthetic_countdown",
        rewards=["countdown", "format"],
        max_completion_length=16,
    )
    output_dir = train(load_config(CPU_RECIPE, overrides=overrides))
    state = json.loads((output_dir / "trainer_state.json").read_text())
    canary_logs = [e for e in state["log_history"] if "emergence/think_usage" in e]
    keys = ("emergence/avg_candidates", "emergence/rejection_rate", "emergence/verified_rate")
    assert canary_logs and all(all(key in e for key in keys) for e in canary_logs)
    assert all("rewards/countdown/mean" in e for e in state["log_history"] if "loss" in e)
    records = [json.loads(line) for line in (output_dir / "emergence.jsonl").read_text().splitlines()]
    assert records and all({"nums", "target", "candidates", "rejections", "verified"} <= set(r) for r in records)
