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

import pytest

from reson.core.machine import CPU_KERNEL_PINS
from reson.miniature.pretrain import BaseModelConfig, build_record, recorded_config
from reson.miniature.shipped import (
    MANIFEST,
    SHIPPED_DIR,
    SHIPPED_SEED,
    ShippedModelError,
    build_command,
    build_kernels,
    check,
    main,
    manifest,
)
from reson.miniature.tasks import TASKS


@pytest.mark.parametrize("task", TASKS.values(), ids=TASKS)
def test_the_shipped_files_match_their_recorded_sha256(task):
    assert check(task.shipped_dir) == task.shipped_dir
    listed = set(manifest(task.shipped_dir)["sha256"])
    # every file of the folder but the manifest itself is listed, the weights and tokenizer among them
    assert listed == {p.name for p in task.shipped_dir.iterdir() if p.is_file()} - {MANIFEST}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= listed


@pytest.mark.parametrize("task", TASKS.values(), ids=TASKS)
def test_each_shipped_model_is_its_tasks_build(task):
    record, recorded = build_record(task.shipped_dir), manifest(task.shipped_dir)
    assert recorded_config(task.shipped_dir) == BaseModelConfig(seed=SHIPPED_SEED, **task.base_settings)
    assert recorded["command"] == build_command(task)
    assert recorded["environment"] == {**build_kernels(record["stats"]["cpu_kernels"]), "torch_threads": 1}


def test_the_shipped_model_is_the_default_recipes_build():
    record = build_record(SHIPPED_DIR)
    assert recorded_config(SHIPPED_DIR) == BaseModelConfig(seed=SHIPPED_SEED)
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


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--ship", "{tmp}"], "is not a finished base-model build"),
        (["--task", "countdown", "--ship", str(SHIPPED_DIR)], "for the arithmetic task, not countdown"),
    ],
)
def test_shipping_a_wrong_folder_is_refused_in_one_line_and_ships_nothing(tmp_path, capsys, args, says):
    def shipped_files():
        return {path: path.read_bytes() for task in TASKS.values() for path in task.shipped_dir.iterdir()}

    before = shipped_files()
    assert main([arg.format(tmp=tmp_path) for arg in args]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
    assert shipped_files() == before


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS.values(), ids=TASKS)
def test_the_probe_reproduces_the_recorded_numbers(task):
    # in a fresh process under the demo's pins (they must be set before torch runs anything)
    env = {k: v for k, v in os.environ.items() if k not in CPU_KERNEL_PINS}
    command = [sys.executable, "-m", "reson.miniature.shipped", "--probe", "--task", task.name]
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    recorded, measured = result["recorded"], result["measured"]
    if task.name == "arithmetic":  # a model worth running GRPO on: a latent skill far above its direct answers
        assert recorded["probe_accuracy"] >= 0.9 and recorded["base_accuracy"] <= 0.5
    else:  # headroom: it mostly guesses under the training template, and first guesses are mostly wrong
        assert recorded["tag_prior"] <= 0.2 and recorded["base_accuracy"] <= 0.5
    if platform.machine() in ("x86_64", "AMD64"):
        # the pinned kernels are the same code on every x86 processor: the same bits, the same numbers
        assert result["same"] and run.returncode == 0, result
    else:  # other kernels altogether (ARM): the greedy answers may differ on a problem or two
        for key in ("probe_accuracy", "base_accuracy"):
            assert abs(measured[key] - recorded[key]) <= 0.02, result
