"""The miniature's base model as it ships inside the package: where it is, what made it, and whether it is intact.

`reson demo` starts GRPO from this model (pretraining seed 0, the default `BaseModelConfig`), so every machine starts
from the same weights whatever its processor, and the demo skips the build that was three quarters of its time.
`reson demo --rebuild_base`, or `python -m reson.miniature.pretrain --output_dir DIR --seed 0`, builds it again.
The search task's base model (`reson demo --task countdown`, `reson.miniature.tasks`) ships the same way, in its own
folder; every function here takes the task.

The folder holds the model and tokenizer in HF format, the record the build wrote (`reson_base_model.json`: the
`BaseModelConfig`, torch version, CPU kernels, processor and times) and `shipped.json`: the command that made it, the
sha256 of every other file, and what the probe measured on the demo's held-out problems, which
`tests/test_shipped.py` reproduces. To ship a new build after the recipe changed:

    python -m reson.miniature.pretrain --output_dir runs/ship/base-seed0 --seed 0
    python -m reson.miniature.shipped --ship runs/ship/base-seed0
    python -m reson.miniature.shipped --task countdown --ship runs/ship/base-countdown-seed0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from reson.miniature.pretrain import BUILD_RECORD, build_record, recorded_config
from reson.miniature.tasks import TASKS, Task

SHIPPED_DIR = TASKS["arithmetic"].shipped_dir
MANIFEST = "shipped.json"
SHIPPED_SEED = 0  # the pretraining seed of the shipped models; other seeds are built
PROBE_ROWS = 200  # held-out problems the recorded probe ran on (the demo's default)
PROBE_KEYS = ("probe_accuracy", "base_accuracy", "base_format", "tag_prior")  # what shipped.json records of it


class ShippedModelError(RuntimeError):
    """The shipped base model is missing or altered; the message says what to do."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(path: str | Path = SHIPPED_DIR) -> dict:
    """What `shipped.json` records: command, environment, per-file sha256 and the probe's numbers."""
    return json.loads((Path(path) / MANIFEST).read_text())


def check(path: str | Path = SHIPPED_DIR) -> Path:
    """Return `path` if every file `shipped.json` lists is there with its recorded sha256; else ShippedModelError."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise ShippedModelError(
            f"no shipped base model at {path} (its {MANIFEST} is missing): reinstall reson, or build one with "
            "`reson demo --rebuild_base`."
        )
    problems = []
    for name, digest in manifest(path)["sha256"].items():
        file = path / name
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif sha256(file) != digest:
            problems.append(f"{name} has another sha256 than recorded")
    if problems:
        raise ShippedModelError(
            f"the shipped base model at {path} is not the one recorded ({'; '.join(problems)}): reinstall reson, "
            "or build one with `reson demo --rebuild_base`."
        )
    return path


def build_command(task: Task, seed: int = SHIPPED_SEED) -> str:
    """The command that builds `task`'s base model for `seed` (into a folder DIR)."""
    command = f"python -m reson.miniature.pretrain --output_dir DIR --seed {seed}"
    return command + ("" if task.name == "arithmetic" else f" --task {task.name}")


def probe_numbers(path: str | Path, threads: int = 1, task: Task = TASKS["arithmetic"]) -> dict:
    """The probe's numbers (`PROBE_KEYS`) for the model at `path` on the demo's held-out problems of `task`, with
    `threads` torch threads; the CPU kernels are whatever the caller pinned."""
    import torch

    from reson.miniature.probe import probe

    torch.set_num_threads(threads)
    result = probe(path, task.held_out_rows(PROBE_ROWS), max_new_tokens=task.max_completion_length)
    return {key: result[key] for key in PROBE_KEYS}


def build_kernels(recorded: dict | str) -> dict:
    """The kernel pins (`CPU_KERNEL_PINS`' keys) a build ran under, from its record: {"aten", "mkl_cbwr"}, or the
    single family ("AVX2") that earlier builds pinned both to."""
    if isinstance(recorded, str):
        return {"ATEN_CPU_CAPABILITY": recorded.lower(), "MKL_CBWR": recorded}
    return {"ATEN_CPU_CAPABILITY": recorded["aten"].lower(), "MKL_CBWR": recorded["mkl_cbwr"]}


def ship(build_dir: str | Path, task: Task = TASKS["arithmetic"]) -> dict:
    """Copy a finished build into `task`'s shipped folder, probe it on the demo's held-out problems and write
    `shipped.json`."""
    build_dir, dest = Path(build_dir), task.shipped_dir
    try:
        record, config = build_record(build_dir), recorded_config(build_dir)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{build_dir} is not a finished base-model build ({BUILD_RECORD}: {err}).") from None
    if config.task != task.name:
        raise ValueError(f"{build_dir} is a base model for the {config.task} task, not {task.name}.")
    files = sorted(p.name for p in build_dir.iterdir() if p.is_file())
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in files:
        shutil.copyfile(build_dir / name, dest / name)
    numbers = probe_numbers(dest, config.threads, task)
    data = {
        "command": build_command(task, config.seed),
        "environment": {**build_kernels(record["stats"]["cpu_kernels"]), "torch_threads": config.threads},
        "build_record": BUILD_RECORD,
        "sha256": {name: sha256(dest / name) for name in files},
        "probe": {
            "rows": f"the demo's {PROBE_ROWS} held-out problems (reson.miniature.tasks, {task.dataset})",
            **numbers,
        },
    }
    (dest / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")
    return data


def probe_again(task: Task = TASKS["arithmetic"]) -> dict:
    """Probe `task`'s shipped model again as `ship` did: {"recorded", "measured", "same"} (the kernels are the
    caller's)."""
    path = check(task.shipped_dir)
    recorded = {key: manifest(path)["probe"][key] for key in PROBE_KEYS}
    measured = probe_numbers(path, recorded_config(path).threads, task)
    return {"recorded": recorded, "measured": measured, "same": measured == recorded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reson.miniature.shipped",
        description="Check the base model shipped with reson (default), probe it again, or ship a new build.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--probe",
        action="store_true",
        help="probe the shipped model again on this machine and compare with the recorded numbers (~10 s)",
    )
    action.add_argument("--ship", metavar="BUILD_DIR", help="a finished build to copy into the package and record")
    parser.add_argument(
        "--task", choices=tuple(TASKS), default="arithmetic", help="whose base model (default: arithmetic)"
    )
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    from reson.core.machine import pin_cpu_kernels

    pin_cpu_kernels()  # the probe runs under the demo's kernels
    if args.ship:
        try:
            data = ship(args.ship, task)
        except ValueError as err:
            print(f"python -m reson.miniature.shipped: {err}", file=sys.stderr)
            return 2
        print(json.dumps(data["probe"], indent=2))
        return 0
    try:
        path = check(task.shipped_dir)
        if args.probe:
            again = probe_again(task)
            print(json.dumps(again))
            return 0 if again["same"] else 1
    except ShippedModelError as err:
        print(err, file=sys.stderr)
        return 1
    record, data = build_record(path), manifest(path)
    stats = record["stats"]
    print(f"shipped base model: {path} (intact: {len(data['sha256'])} files match their sha256)")
    print(f"made by:   {data['command']} with {data['environment']}")
    on = f"{stats.get('processor', 'an unrecorded processor')}, torch {stats.get('torch', 'unrecorded')}"
    print(f"on:        {on}, kernels {stats['cpu_kernels']}")
    print(f"build:     {stats['steps']} steps in {stats['pretrain_seconds']} s, final loss {stats['final_loss']:.3f}")
    probe = data["probe"]
    print(
        f"probe:     {probe['probe_accuracy']:.1%} with <think> prefilled, {probe['base_accuracy']:.1%} answering "
        f"directly, <think> prior {probe['tag_prior']:.1%}; on {probe['rows']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
