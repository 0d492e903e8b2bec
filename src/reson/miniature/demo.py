"""`reson demo`: the R1-Zero experiment in miniature, offline, on a laptop CPU.

    reson demo                                   # about 10 minutes on 2 cores; everything under runs/demo
    reson demo --seed 1 --pretrain_seed 2        # another RL seed on another base model
    reson demo --max_steps 30 --num_problems 50  # a quick look

Phases, each reusing what an earlier run already finished in the same output folder:

1. **Base model.** A 279k-parameter Qwen2 pretrained here on synthetic arithmetic (`reson.miniature.pretrain`): mostly
   problems with direct answers, plus worked solutions under another template, so it has a latent reasoning skill
   while the R1 tags stay rare under the training template. A probe (`<think>` prefilled, greedy) measures that skill.
2. **Baseline.** `reson eval` on held-out synthetic problems, greedy, under the training template.
3. **GRPO.** `reson train` with the `grpo_cpu_tiny` recipe: the real rewards, TRL trainer and emergence canaries.
4. **After.** The same evaluation of the trained model.
5. **Summary.** The before/after table (also `compare-<run>.md`) and the run report with the emergence plots.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from reson.core import folders, metrics, models
from reson.core.machine import pin_cpu_kernels

logger = logging.getLogger("reson.miniature.demo")

DEFAULT_RECIPE = "grpo_cpu_tiny"  # a recipe shipped in reson/configs
DATASET = "synthetic"
THREADS = 1  # torch threads for GRPO and the evaluations: another count gives other floats, so another table
# the metrics of the before/after table, in order
TABLE_ROWS = (
    "accuracy",
    "format_compliance",
    "think_usage",
    "avg_completion_tokens",
    "self_correction_rate_among_thinking",
)


class DemoError(ValueError):
    pass


def before_after_table(before: dict, after: dict) -> str:
    """The markdown before/after table of two `reson eval` results on the demo's dataset."""
    b, a = before["datasets"][DATASET]["metrics"], after["datasets"][DATASET]["metrics"]
    lines = ["| metric | base model | after GRPO | change |", "|---|---:|---:|---:|"]
    for key in TABLE_ROWS:
        cells = (
            metrics.label(key),
            metrics.cell(key, b[key]),
            metrics.cell(key, a[key]),
            metrics.change(key, b[key], a[key]),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(
    output_dir: str | Path = "runs/demo",
    *,
    seed: int = 0,
    pretrain_seed: int = 0,
    recipe: str | Path = DEFAULT_RECIPE,
    num_problems: int = 200,
    max_steps: int | None = None,
    threads: int = THREADS,
    overrides: dict | None = None,
    base_settings: dict | None = None,
) -> dict:
    """Run the miniature end to end and return {"before", "after", "probe", "table", "paths", "seconds"}.

    `overrides` change fields of the GRPO recipe, `base_settings` fields of `reson.miniature.pretrain.BaseModelConfig`.
    """
    import torch

    from reson.core.config import load_config
    from reson.evaluation.evaluate import evaluate
    from reson.miniature.pretrain import build_base_model
    from reson.miniature.probe import probe
    from reson.tools.report import build_report

    output_dir = Path(output_dir)
    base_dir = output_dir / f"base-seed{pretrain_seed}"
    run_name = f"grpo-base{pretrain_seed}-seed{seed}"
    train_dir = output_dir / run_name
    eval_base, eval_after = output_dir / f"eval-base{pretrain_seed}", output_dir / f"eval-{run_name}"
    eval_settings = dict(split="test", num_problems=num_problems, max_completion_length=64, progress=False)

    # ---- Check everything before any work -----------------------------------------------------------------------
    config_overrides = {
        "model_name_or_path": str(base_dir),
        "output_dir": str(train_dir),
        "seed": seed,
        "torch_threads": threads,
    }
    if max_steps is not None:
        config_overrides["max_steps"] = max_steps
    config_overrides.update(overrides or {})
    if num_problems < 1:
        raise DemoError(f"--num_problems {num_problems}: evaluate on at least one problem.")
    if max_steps is not None and max_steps < 1:
        raise DemoError(f"--max_steps {max_steps}: train for at least one step.")
    # the base model does not exist yet: check the rest of the recipe with a stand-in model id
    load_config(recipe, overrides={**config_overrides, "model_name_or_path": "Qwen/Qwen2.5-0.5B"})
    torch.set_num_threads(threads)  # the evaluations and the probe; the build fixes its own (BaseModelConfig.threads)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    # ---- 1. Base model ------------------------------------------------------------------------------------------
    logger.info("[1/5] base model: building or reusing %s (pretraining takes a few minutes the first time)", base_dir)
    build_base_model(base_dir, seed=pretrain_seed, **(base_settings or {}))
    from reson.core.data import load_problems, sample_rows

    probe_rows = sample_rows(load_problems(DATASET, "test"), num_problems, seed=0)
    latent = probe(base_dir, probe_rows)
    logger.info(
        "      latent skill: %.1f%% with <think> prefilled, against %.1f%% answering directly; <think> prior %.1f%%",
        100 * latent["probe_accuracy"],
        100 * latent["base_accuracy"],
        100 * latent["tag_prior"],
    )

    # ---- 2. Baseline --------------------------------------------------------------------------------------------
    logger.info("[2/5] evaluating the base model on %d held-out problems", num_problems)
    before = evaluate(str(base_dir), DATASET, eval_base, **eval_settings)

    # ---- 3. GRPO ------------------------------------------------------------------------------------------------
    from reson.training.checkpoints import CHECKPOINT_PREFIX
    from reson.training.train import train

    config = load_config(recipe, overrides=config_overrides)
    finished = any((train_dir / name).is_file() for name in ("model.safetensors", *models.ADAPTER_WEIGHTS))
    if finished:
        logger.info("[3/5] GRPO: reusing the finished run in %s", train_dir)
    else:
        resume = any(train_dir.glob(f"{CHECKPOINT_PREFIX}*"))
        logger.info("[3/5] GRPO: %d steps into %s%s", config.max_steps, train_dir, " (resuming)" if resume else "")
        train(config, resume=resume or None)

    # ---- 4. After -----------------------------------------------------------------------------------------------
    logger.info("[4/5] evaluating the trained model on the same problems")
    after = evaluate(str(train_dir), DATASET, eval_after, **eval_settings)

    # ---- 5. Summary ---------------------------------------------------------------------------------------------
    logger.info("[5/5] writing the before/after table and the run report")
    table = before_after_table(before, after)
    folders.write_text(output_dir / f"compare-{run_name}.md", table + "\n")
    report = build_report(train_dir)
    seconds = time.perf_counter() - started
    paths = {"base_model": base_dir, "trained_model": train_dir, "report": report, "evals": [eval_base, eval_after]}
    return {"before": before, "after": after, "probe": latent, "table": table, "paths": paths, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reson demo",
        description="The R1-Zero experiment in miniature, offline on a CPU: build a tiny base model, evaluate it, "
        "train it with GRPO, evaluate it again.",
    )
    parser.add_argument("--output_dir", default="runs/demo", help="where everything goes (default runs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="GRPO seed (default 0)")
    parser.add_argument("--pretrain_seed", type=int, default=0, help="base model seed (default 0)")
    parser.add_argument(
        "--config", default=DEFAULT_RECIPE, help="the CPU recipe: a YAML file or a shipped recipe's name"
    )
    parser.add_argument("--num_problems", type=int, default=200, help="held-out problems evaluated (default 200)")
    parser.add_argument("--max_steps", type=int, default=None, help="GRPO steps (default: the recipe's)")
    parser.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help=f"torch threads for GRPO and the evaluations (default {THREADS}; another count gives another table)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pin_cpu_kernels()  # before torch runs anything: one kernel family whatever the processor offers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the demo prints its own phases; no bar per weight file

    from reson.core.config import ConfigError

    try:
        result = run_demo(
            args.output_dir,
            seed=args.seed,
            pretrain_seed=args.pretrain_seed,
            recipe=args.config,
            num_problems=args.num_problems,
            max_steps=args.max_steps,
            threads=args.threads,
        )
    except (DemoError, ConfigError) as err:
        print(f"reson demo: {err}", file=sys.stderr)
        return 2
    paths = result["paths"]
    print(f"\nBase model vs after GRPO, {args.num_problems} held-out problems, greedy:\n\n{result['table']}\n")
    print(f"finished in {result['seconds'] / 60:.1f} min")
    print(f"  base model:    {paths['base_model']}")
    print(f"  trained model: {paths['trained_model']}")
    print(f"  evaluations:   {paths['evals'][0]}, {paths['evals'][1]}")
    print(f"  report:        {paths['report']}  (emergence plots: think_usage.png, canary_accuracy.png beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
