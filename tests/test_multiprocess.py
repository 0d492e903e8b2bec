"""Two training processes on the CPU (`accelerate launch --num_processes 2`, gloo): they step in lockstep, and only
rank 0 logs and saves. Plus: every accelerate config under configs/accelerate/ loads with accelerate's own parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = sorted((ROOT / "src" / "reson" / "configs" / "accelerate").glob("*.yaml"))
STEPS = 3

# Runs `train` as `reson train` does, with one extra callback that records, on every rank, what that
# rank did: its step, a checksum of its weights after the step, and whether it is the process that logs and saves.
DRIVER = """
import json, sys
import torch
from transformers import TrainerCallback
from reson.core.config import load_config
from reson.training.train import train

config_path, record_dir = sys.argv[1], sys.argv[2]


class Recorder(TrainerCallback):
    def _write(self, args, record):
        with open(f"{record_dir}/rank{args.process_index}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\\n")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        with torch.no_grad():
            checksum = sum(float(p.double().sum()) for p in model.parameters())
        self._write(args, {
            "step": state.global_step, "checksum": checksum, "world_size": args.world_size,
            "world_zero": state.is_world_process_zero, "should_save": args.should_save,
            "should_log": args.should_log,
        })


train(load_config(config_path), callbacks=[Recorder()])
"""


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(path))  # raises on unknown keys
    assert config.num_machines == 1 and config.machine_rank == 0
    assert config.mixed_precision == "bf16" and not config.use_cpu


def test_accelerate_configs_are_all_there():
    assert [p.name for p in ACCELERATE_CONFIGS] == [
        "ddp.yaml",
        "deepspeed_zero2.yaml",
        "deepspeed_zero3.yaml",
        "fsdp.yaml",
    ]


@pytest.mark.slow
def test_two_processes_step_in_lockstep_and_only_rank_zero_logs_and_saves(tmp_path, tiny_model_path):
    output_dir = tmp_path / "run"
    records = tmp_path / "records"
    records.mkdir()
    recipe = {
        "model_name_or_path": str(tiny_model_path),
        "datasets": [{"name": "synthetic", "split": "train"}],
        "canary_dataset": "synthetic",
        "num_train_problems": 64,
        "num_generations": 4,
        "per_device_train_batch_size": 4,  # 2 ranks x 4 = 8 completions a step: 2 prompts x 4
        "gradient_accumulation_steps": 1,
        "max_completion_length": 12,
        "learning_rate": 1e-3,
        "max_steps": STEPS,
        "bf16": False,
        "use_cpu": True,
        "gradient_checkpointing": False,
        "num_canaries": 2,
        "emergence_every": 2,
        "logging_steps": 1,
        "save_steps": 2,
        "report_to": ["tensorboard"],
        "output_dir": str(output_dir),
        "seed": 0,
    }
    config_path = tmp_path / "recipe.yaml"
    config_path.write_text(yaml.safe_dump(recipe))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)

    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1"]
    # --multi_gpu selects accelerate's torchrun launcher (with --cpu it would start a single process); without CUDA,
    # each process then joins a gloo process group on the CPU (the recipe's use_cpu)
    launch += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [*launch, str(driver), str(config_path), str(records)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    # Both ranks ran every step, in a world of two
    ranks = {
        int(path.stem.removeprefix("rank")): [json.loads(line) for line in path.read_text().splitlines()]
        for path in records.glob("rank*.jsonl")
    }
    assert sorted(ranks) == [0, 1]
    for rank, steps in ranks.items():
        assert [r["step"] for r in steps] == list(range(1, STEPS + 1)), rank
        assert all(r["world_size"] == 2 for r in steps)
    # Lockstep: after every step both ranks hold the same weights (DDP averaged the same gradients into both)
    for r0, r1 in zip(ranks[0], ranks[1], strict=True):
        assert r0["checksum"] == pytest.approx(r1["checksum"], rel=1e-9, abs=1e-9)
    checksums = [r["checksum"] for r in ranks[0]]
    assert len(set(checksums)) == STEPS  # and the weights moved at every step

    # Only rank 0 is the logging and saving process
    assert all(r["world_zero"] and r["should_save"] and r["should_log"] for r in ranks[0])
    assert not any(r["world_zero"] or r["should_save"] or r["should_log"] for r in ranks[1])

    # One console line per logging step, not one per rank
    for step in range(1, STEPS + 1):
        assert result.stdout.count(f"step {step}/{STEPS} | reward") == 1, result.stdout
    # One TensorBoard writer
    assert len(list(output_dir.rglob("events.out.tfevents.*"))) == 1
    # Canary records written once: two canaries at each emergence step (0, 2, and the last), none duplicated
    canaries = [json.loads(line) for line in (output_dir / "emergence.jsonl").read_text().splitlines()]
    per_step = Counter(r["step"] for r in canaries)
    assert {0, 2} <= set(per_step) and set(per_step.values()) == {2}, per_step
    # The final model, and checkpoints at save_steps and at the last step
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "train_config.yaml").is_file()
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
