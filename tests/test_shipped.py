"""The base model shipped inside the package: intact, the default recipe's build, and measuring as recorded.

A full rebuild (~8-10 min) is too slow for the suite: `bench/bench_base_model.py --compare_shipped` rebuilds it and
compares bits and probe (docs/benchmarks.md, "Miniature: the shipped base model").
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict

import pytest

from reson.core.machine import CPU_KERNEL_PINS
from reson.miniature.pretrain import BaseModelConfig, build_record
from reson.miniature.shipped import MANIFEST, SHIPPED_DIR, SHIPPED_SEED, ShippedModelError, check, manifest


def test_the_shipped_files_match_their_recorded_sha256():
    assert check() == SHIPPED_DIR
    listed = set(manifest()["sha256"])
    # every file of the folder but the manifest itself is listed, the weights and tokenizer among them
    assert listed == {p.name for p in SHIPPED_DIR.iterdir() if p.is_file()} - {MANIFEST}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= listed


def test_the_shipped_model_is_the_default_recipes_build():
    record = build_record(SHIPPED_DIR)
    assert record["config"] == asdict(BaseModelConfig(seed=SHIPPED_SEED))
    stats = record["stats"]
    # built under the kernels the demo pins, one thread, with the torch the project pins
    assert stats["cpu_kernels"] == {"aten": CPU_KERNEL_PINS["ATEN_CPU_CAPABILITY"].upper(), "mkl_cbwr": "COMPATIBLE"}
    assert stats["torch_threads"] == 1 and stats["torch"].startswith("2.13.0")
    assert stats["processor"]
    recorded = manifest()
    assert recorded["command"] == f"python -m reson.miniature.pretrain --output_dir DIR --seed {SHIPPED_SEED}"
    assert recorded["environment"] == {**CPU_KERNEL_PINS, "torch_threads": 1}


@pytest.mark.parametrize("damage", ["altered", "missing", "no manifest"])
def test_a_damaged_copy_is_refused_with_what_to_do(tmp_path, damage):
    copy = shutil.copytree(SHIPPED_DIR, tmp_path / "base_model")
    if damage == "altered":
        data = bytearray((copy / "model.safetensors").read_bytes())
        data[-1] ^= 1  # one bit of one weight
        (copy / "model.safetensors").write_bytes(bytes(data))
    elif damage == "missing":
        (copy / "tokenizer.json").unlink()
    else:
        (copy / MANIFEST).unlink()
    with pytest.raises(ShippedModelError, match="--rebuild_base") as err:
        check(copy)
    expected = {"altered": "model.safetensors has another sha256", "missing": "tokenizer.json is missing"}
    assert expected.get(damage, MANIFEST) in str(err.value)


@pytest.mark.slow
def test_the_probe_reproduces_the_recorded_numbers():
    # in a fresh process under the demo's pins (they must be set before torch runs anything)
    env = {k: v for k, v in os.environ.items() if k not in CPU_KERNEL_PINS}
    run = subprocess.run(
        [sys.executable, "-m", "reson.miniature.shipped", "--probe"], env=env, capture_output=True, text=True
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    recorded, measured = result["recorded"], result["measured"]
    assert recorded["probe_accuracy"] >= 0.9 and recorded["base_accuracy"] <= 0.5  # a model worth running GRPO on
    if platform.machine() in ("x86_64", "AMD64"):
        # the pinned kernels are the same code on every x86 processor: the same bits, the same numbers
        assert result["same"] and run.returncode == 0, result
    else:  # other kernels altogether (ARM): the greedy answers may differ on a problem or two
        for key in ("probe_accuracy", "base_accuracy"):
            assert abs(measured[key] - recorded[key]) <= 0.02, result
