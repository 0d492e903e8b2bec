"""The GPU check's code path at toy size on the CPU: the script that measures the recipes on a lent GPU must run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_trains_and_generates_on_a_tiny_model(tmp_path):
    output = tmp_path / "gpu_check.json"
    script = ROOT / "bench" / "bench_gpu_grpo.py"
    run = subprocess.run(
        [sys.executable, script, "--tiny", "--sizes", "3b", "--output_file", output],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (result,) = json.loads(output.read_text())
    assert result["size"] == "3b" and result["recipe"] == "grpo_qwen2.5_3b_h100"
    assert result["fits"] is True
    assert len(result["step_seconds"]) == 2 and all(s > 0 for s in result["step_seconds"])
    assert result["generated_tokens_per_second"] > 0
    assert result["vllm_stand_in_gib"] == 0  # nothing is held on a CPU
    assert 0 < result["planned_peak_gib"] < result["usable_gib"]


def test_the_check_trains_on_the_gpu_it_finds(monkeypatch):
    """On a GPU machine the config the check trains with is parsed for the GPU. Parsing it as for a CPU (use_cpu) and
    switching back afterwards leaves TRL's cached CPU device, and the Trainer puts the model on the CPU: that was the
    bug. Here the GPU is faked: torch says CUDA and native bf16 are there, and the device TrainingArguments resolves
    while parsing is the GPU unless use_cpu is set, as transformers decides it, without touching CUDA."""
    import functools
    import importlib.util

    import torch
    import transformers

    spec = importlib.util.spec_from_file_location("bench_gpu_grpo", ROOT / "bench" / "bench_gpu_grpo.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    # transformers asks once a process and caches the answer: the suite's earlier tests have asked it on this CPU
    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)

    def setup_devices(args):  # what transformers' _setup_devices leaves behind, for one process
        args.distributed_state, args._n_gpu = None, 0 if args.use_cpu else 1
        return torch.device("cpu" if args.use_cpu else "cuda")

    device = functools.cached_property(setup_devices)
    device.__set_name__(transformers.TrainingArguments, "_setup_devices")
    monkeypatch.setattr(transformers.TrainingArguments, "_setup_devices", device)

    overrides = {**bench.OVERRIDES, "output_dir": "/tmp/gpu_check"}
    config = bench.training_config("grpo_qwen2.5_3b_h100", overrides, cuda=True)
    assert config.use_cpu is False and config.bf16 is True
    assert config.device.type == "cuda"  # what the Trainer moves the model to


def test_gpu_check_trains_a_lora_recipe_and_the_base_stays_put(tmp_path):
    """The LoRA case at toy size: TRL's peft_config on the check's model, only the adapters trained, the base's first
    and last layers bit for bit as they were."""
    output = tmp_path / "gpu_check.json"
    script = ROOT / "bench" / "bench_gpu_grpo.py"
    run = subprocess.run(
        [sys.executable, script, "--tiny", "--sizes", "3b_lora_16gb", "--output_file", output],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (result,) = json.loads(output.read_text())
    assert result["recipe"] == "grpo_qwen2.5_3b_lora_16gb" and result["fits"] is True
    # rank 16 on the toy decoder (hidden 64, 4 heads of 16, 2 KV heads, MLP 256), 2 layers: 16 x (128 + 96 + 96 + 128
    # + 3 x 320) a layer
    assert result["trained_parameters"] == 2 * 16 * 1408
    assert result["base_unchanged"] is True
    assert 0 < result["planned_peak_gib"] < result["usable_gib"]
