"""The spread behind tests/test_demo.py's learning margin: mean reward of the first and last 8 of 30 GRPO steps.

    python bench/bench_learning_check.py --pretrain_seed 0 --seed 0 --learning_rate 1e-4
    python bench/bench_learning_check.py --pretrain_seed 0 --seed 0 --learning_rate 0     # the no-learning control

A CI-sized base model (3,000 pretraining texts) and 30 steps of the grpo_cpu_tiny recipe, one torch thread.
"""

from __future__ import annotations

import argparse
import json
import time

K = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain_seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--output_dir", default="runs/bench_learning_check")
    args = parser.parse_args()

    import torch

    from reson.core.config import load_config
    from reson.miniature.pretrain import build_base_model
    from reson.miniature.tasks import TASKS
    from reson.training.train import train

    torch.set_num_threads(1)
    started = time.perf_counter()
    # the CI-size base of tests/test_demo.py
    base = build_base_model(
        f"{args.output_dir}/base{args.pretrain_seed}",
        seed=args.pretrain_seed,
        num_texts=3000,
        batch_size=16,
        tag_share=0.1,
    )
    run = f"{args.output_dir}/run-{args.pretrain_seed}-{args.seed}-lr{args.learning_rate:g}"
    overrides = {
        "model_name_or_path": str(base),
        "output_dir": run,
        "seed": args.seed,
        "learning_rate": args.learning_rate,
        "max_steps": args.steps,
        "logging_steps": 1,
        "num_canaries": 0,
        "save_steps": 10_000,
        "report_to": [],
        "disable_tqdm": True,
    }
    output_dir = train(load_config(TASKS["arithmetic"].recipe, overrides))
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    rewards = [entry["reward"] for entry in history if "reward" in entry]
    first, last = sum(rewards[:K]) / K, sum(rewards[-K:]) / K
    print(
        f"pretrain seed {args.pretrain_seed}, seed {args.seed}, lr {args.learning_rate:g}: mean reward "
        f"{first:.3f} -> {last:.3f} ({last - first:+.3f}) in {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
