"""Search in the miniature, over seeds: `reson demo --task countdown` for every (pretraining seed, GRPO seed) pair.

    python bench/bench_search.py --output_dir runs/search                       # base 0, GRPO seeds 0 1 2, control
    python bench/bench_search.py --output_dir runs/search --pretrain_seeds 1 --seeds 0 --no_control
    python bench/bench_search.py --output_dir runs/search-fmt --grpo rewards='["countdown","format"]' \\
        reward_weights='[1.0,0.2]'                                              # a recipe variant
    python bench/bench_search.py --output_dir runs/search-c --base_settings search_share=0.0   # a corpus variant

Per pair, greedy on 200 held-out problems under the training template (the demo's table), and sampled (4 samples a
problem at the recipe's temperature, 1.0) for the base model and the trained one, since greedy decoding of the base
model rarely thinks: accuracy, think usage, the share of thinking completions that reject a candidate and go on
(`rejection_rate_among_thinking`, counted on expressions), P(retry | a candidate the thinking shows wrong) against
P(retry | shown right), the share that reject and then succeed, the accuracy of completions that reject against the
base model's first guesses, the base model's best-of-k at equal tokens, the checks' false accepts and false rejects,
and the lr-0 control. The bar (issue 25): among thinking completions, the rejecting share at least doubles and
reaches 15%; completions that retry are right more often than the base model's first guesses; the control stays
flat; accuracy +15 points; the demo <= 10 minutes on 2 cores. One torch thread and pinned kernels, as the demo.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from bench_selfcorrection import settings  # key=value pairs, read as JSON where they parse

from reson.core.machine import pin_cpu_kernels
from reson.miniature.tasks import TASKS

SAMPLES = 4  # sampled completions a problem, for the measures among thinking completions


def check_errors(records: list[dict]) -> dict:
    """The checks' quality over the candidates of `records` (`search_measures`' checks): false accepts (shown right,
    not right) among the candidates that are wrong, false rejects (right, not shown right) among those that are
    right. A check beats chance when the two add up to less than 1."""
    checks = [c for r in records for c in r.get("checks") or ()]
    wrong = [shown for shown, right, _ in checks if not right]
    right = [shown for shown, right, _ in checks if right]
    return {
        "false_accepts": sum(wrong) / len(wrong) if wrong else None,
        "false_rejects": (len(right) - sum(right)) / len(right) if right else None,
        "candidates_read": len(checks),
    }


def sampled(model: str, folder: Path, num_problems: int, temperature: float, length: int) -> dict:
    """Metrics of SAMPLES completions a problem at `temperature`, with the checks' quality."""
    from reson.core.folders import SAMPLES_FILE
    from reson.evaluation.evaluate import evaluate
    from reson.evaluation.store import read_samples

    result = evaluate(
        model,
        "tiny_countdown",
        folder,
        num_problems=num_problems,
        num_generations=SAMPLES,
        temperature=temperature,
        max_completion_length=length,
        progress=False,
    )
    records = read_samples(folder / SAMPLES_FILE)
    return {**result["datasets"]["tiny_countdown"]["metrics"], **check_errors(records)}


# the sampled table's rows: accuracy, think usage, the search task's rows, the checks' quality, the length
KEYS = ("accuracy", "think_usage", *TASKS["countdown"].rows, "false_accepts", "false_rejects", "avg_completion_tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/bench_search")
    parser.add_argument("--pretrain_seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num_problems", type=int, default=200)
    parser.add_argument("--base_settings", nargs="*", default=[], help="BaseModelConfig fields over the task's")
    parser.add_argument("--grpo", nargs="*", default=[], help="recipe fields to override, key=value (JSON values)")
    parser.add_argument("--no_control", action="store_true", help="skip the run at learning rate 0")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    pin_cpu_kernels()  # as `reson demo` does: the same tables
    import torch

    from reson.core.config import load_config
    from reson.miniature.demo import run_demo

    torch.set_num_threads(1)
    spec = TASKS["countdown"]
    output_dir = Path(args.output_dir)
    stand_in = {"model_name_or_path": "Qwen/Qwen2.5-0.5B"}  # the recipe's own path is a folder to build into
    temperature = load_config(spec.recipe, overrides={**settings(args.grpo), **stand_in}).temperature
    rows = []
    for pretrain_seed in args.pretrain_seeds:
        for seed in args.seeds:
            started = time.perf_counter()
            result = run_demo(
                output_dir,
                seed=seed,
                pretrain_seed=pretrain_seed,
                num_problems=args.num_problems,
                task="countdown",
                control=not args.no_control,
                overrides=settings(args.grpo),
                base_settings=settings(args.base_settings),
            )
            minutes = (time.perf_counter() - started) / 60
            paths = result["paths"]
            greedy = {
                label: result[label]["datasets"][spec.dataset]["metrics"]
                for label in ("before", "after", "control")
                if label in result
            }
            sample = {
                label: sampled(
                    str(path),
                    output_dir / f"sampled-{label}-base{pretrain_seed}-seed{seed}",
                    args.num_problems,
                    temperature,
                    spec.max_completion_length,
                )
                for label, path in (("before", paths["base_model"]), ("after", paths["trained_model"]))
            }
            row = {
                "pretrain_seed": pretrain_seed,
                "seed": seed,
                "probe": result["probe"]["probe_accuracy"],
                "greedy": greedy,
                "sampled": sample,
                "search": result["search"],
                "minutes": minutes,
                "table": result["table"],
            }
            rows.append(row)
            print(f"\n## base {pretrain_seed}, GRPO seed {seed} ({minutes:.1f} min, probe {row['probe']:.1%})\n")
            print(result["table"])
            print(f"\n| sampled, T={temperature:g}, {SAMPLES} a problem | base model | after GRPO |\n|---|---:|---:|")
            for key in KEYS:
                cells = [sample[label].get(key) for label in ("before", "after")]
                print(f"| {key} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in cells) + " |")
            print(flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
