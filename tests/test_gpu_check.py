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
