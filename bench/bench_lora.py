"""The miniature, LoRA next to full training: does the same learning happen, and at what rank?

    python bench/bench_lora.py                                  # full, then LoRA rank 1, 8 and 32; GRPO seeds 0, 1
    python bench/bench_lora.py --ranks 8 --seeds 0 --lr_scale 10 20

Every run is `reson demo`'s pipeline (the `grpo_cpu_tiny` recipe, 90 steps, one torch thread, the pinned kernels) on
the base model shipped with reson: full training at the recipe's learning
rate, and LoRA adapters (alpha 32, no dropout, every linear layer, as the GPU recipes) at ``--lr_scale`` times it.
Per run it prints held-out accuracy and format compliance (greedy, 200 problems) after GRPO, the step at which the
training format reward first passed 0.5 (the switch to the think/answer format), the trained parameters and the
minutes GRPO took (TRL's train_runtime). Before GRPO the base model scores the same for every run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

from reson.core.machine import pin_cpu_kernels
from reson.miniature.demo import THREADS, run_demo
from reson.miniature.tasks import TASKS

DATASET, RECIPE = TASKS["arithmetic"].dataset, TASKS["arithmetic"].recipe

FORMAT_SWITCH = 0.5  # the training format reward (graded 0-1) past which the think/answer format has taken over


def format_switch_step(run_dir: Path) -> int | None:
    """The first logged step whose mean format reward passed `FORMAT_SWITCH`; None if none did."""
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return next((e["step"] for e in history if e.get("rewards/format/mean", 0) > FORMAT_SWITCH), None)


def grpo_minutes(run_dir: Path) -> float:
    """The GRPO run's own wall time (TRL's train_runtime), whatever the rest of the pipeline reused."""
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return next(e["train_runtime"] for e in reversed(history) if "train_runtime" in e) / 60


def trained_parameters(run_dir: Path) -> int:
    from safetensors import safe_open

    name = "adapter_model.safetensors" if (run_dir / "adapter_model.safetensors").is_file() else "model.safetensors"
    with safe_open(str(run_dir / name), "pt") as weights:
        return sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())  # noqa: SIM118


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/bench_lora")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="GRPO seeds")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 8, 32], help="LoRA ranks")
    parser.add_argument("--lr_scale", type=float, nargs="+", default=[10.0], help="LoRA lr / the recipe's lr")
    parser.add_argument("--no_full", action="store_true", help="leave out the full-training runs")
    parser.add_argument("--num_problems", type=int, default=200)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    pin_cpu_kernels()  # as `reson demo` does: the same tables
    from reson.core.config import load_config

    root = Path(args.output_dir)
    recipe_lr = load_config(RECIPE, overrides={"model_name_or_path": "Qwen/Qwen2.5-0.5B"}).learning_rate
    variants = [] if args.no_full else [("full", {})]
    for rank in args.ranks:
        for scale in args.lr_scale:
            lora = {"use_peft": True, "lora_r": rank, "lora_alpha": 32, "lora_dropout": 0.0}
            lora.update(lora_target_modules="all-linear", learning_rate=scale * recipe_lr)
            variants.append((f"lora-r{rank}-lr{scale:g}x", lora))

    rows = []
    print(f"{'run':>16} {'seed':>4} {'lr':>7} {'params':>8} {'acc':>6} {'format':>6} {'switch':>6} {'GRPO min':>8}")
    for name, overrides in variants:
        folder = root / name
        for seed in args.seeds:
            started = time.perf_counter()
            result = run_demo(folder, seed=seed, num_problems=args.num_problems, threads=THREADS, overrides=overrides)
            run_dir = result["paths"]["trained_model"]
            before = result["before"]["datasets"][DATASET]["metrics"]
            after = result["after"]["datasets"][DATASET]["metrics"]
            row = {
                "run": name,
                "seed": seed,
                "learning_rate": overrides.get("learning_rate", recipe_lr),
                "trained_parameters": trained_parameters(run_dir),
                "accuracy_before": before["accuracy"],
                "format_before": before["format_compliance"],
                "accuracy_after": after["accuracy"],
                "format_after": after["format_compliance"],
                "format_switch_step": format_switch_step(run_dir),
                "grpo_minutes": grpo_minutes(run_dir),
                "minutes": (time.perf_counter() - started) / 60,
            }
            rows.append(row)
            print(
                f"{name:>16} {seed:>4} {row['learning_rate']:>7.0e} {row['trained_parameters']:>8}"
                f" {100 * row['accuracy_after']:>5.1f}% {100 * row['format_after']:>5.1f}%"
                f" {row['format_switch_step'] or '-':>6} {row['grpo_minutes']:>8.1f}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
