"""`reson demo`: the R1-Zero experiment in miniature, offline, on a laptop CPU.

    reson demo                                   # under 3 minutes on 2 cores; everything under runs/demo
    reson demo --seed 1                          # another RL seed on the same base model
    reson demo --rebuild_base                    # build the base model here instead of using the shipped one
    reson demo --pretrain_seed 2                 # another base model: built here first (~8-10 minutes)
    reson demo --max_steps 30 --num_problems 50  # a quick look
    reson demo --task countdown --control        # the search task, and GRPO at learning rate 0 beside it

Phases, each reusing what an earlier run already finished in the same output folder:

1. **Base model.** A 279k-parameter Qwen2 pretrained on synthetic arithmetic (`reson.miniature.pretrain`): mostly
   problems with direct answers, plus worked solutions under another template, so it has a latent reasoning skill
   while the R1 tags stay rare under the training template. The one for pretraining seed 0 ships inside the package
   (`reson.miniature.shipped`, checked against its recorded sha256); any other is built here. A probe (`<think>`
   prefilled, greedy) measures the latent skill.
2. **Baseline.** `reson eval` on held-out synthetic problems, greedy, under the training template.
3. **GRPO.** `reson train` with the `grpo_cpu_tiny` recipe: the real rewards, TRL trainer and emergence canaries.
4. **After.** The same evaluation of the trained model.
5. **Summary.** The before/after table (also `compare-<run>.md`) and the run report with the emergence plots.

`--task countdown` runs the same phases on the search task (`reson.miniature.tasks`: small Countdown, a base model
that mostly guesses under the training template and searches under another; GRPO with the Countdown reward only) and
adds the rows that say whether search emerged, counted on the expressions the thinking writes: candidates tried, the
share that rejects a candidate and goes on, the share followed by a retry among candidates the thinking shows wrong
and shown right, and the accuracy of the completions that reject one; then the base model's best-of-k at equal
tokens (k samples at the recipe's temperature, an oracle picking) and its first guesses. `--control` trains the
same run at learning rate 0 beside it: what moves there is sampling, not learning.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from reson.core import folders, metrics, models
from reson.core.machine import cpu_kernel_settings, pin_cpu_kernels, processor_name
from reson.miniature.tasks import TASKS

logger = logging.getLogger("reson.miniature.demo")

THREADS = 1  # torch threads for GRPO and the evaluations: another count gives other floats, so another table
# the metrics of the before/after table, in order
TABLE_ROWS = (
    "accuracy",
    "format_compliance",
    "think_usage",
    "avg_completion_tokens",
    "self_correction_rate_among_thinking",
)
BEST_OF = 8  # the search task: samples per problem from the base model, for its best-of-k at equal tokens


class DemoError(ValueError):
    pass


def before_after_table(before: dict, after: dict, task: str = "arithmetic", control: dict | None = None) -> str:
    """The markdown before/after table of two `reson eval` results on `task`'s dataset: the common rows, then the
    task's own; with `control` (the evaluation after GRPO at learning rate 0) a column more."""
    spec = TASKS[task]
    results = [r["datasets"][spec.dataset]["metrics"] for r in (before, after, control) if r is not None]
    head = "| metric | base model | after GRPO | change |" + (" lr-0 control |" if control else "")
    lines = [head, "|---|---:|---:|---:|" + ("---:|" if control else "")]
    for key in TABLE_ROWS + spec.rows:
        b, a = results[0][key], results[1][key]
        cells = [metrics.label(key), metrics.cell(key, b), metrics.cell(key, a), metrics.change(key, b, a)]
        cells += [metrics.cell(key, r[key]) for r in results[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluation_settings(num_problems: int, task: str = "arithmetic") -> dict:
    """The `reson eval` settings of the demo's before and after evaluations (greedy, held-out test problems)."""
    length = TASKS[task].max_completion_length
    return dict(split="test", num_problems=num_problems, max_completion_length=length, progress=False)


def run_demo(
    output_dir: str | Path = "runs/demo",
    *,
    seed: int = 0,
    pretrain_seed: int = 0,
    recipe: str | Path | None = None,
    num_problems: int = 200,
    max_steps: int | None = None,
    threads: int = THREADS,
    overrides: dict | None = None,
    base_settings: dict | None = None,
    rebuild_base: bool = False,
    task: str = "arithmetic",
    control: bool = False,
) -> dict:
    """Run the miniature end to end and return {"before", "after", "probe", "table", "paths", "seconds", "phases"};
    for the search task also "search" (`search_summary`), and with `control` "control" (the evaluation after GRPO at
    learning rate 0).

    `task` is one of `reson.miniature.tasks.TASKS`; `recipe` defaults to its recipe. `overrides` change fields of the
    GRPO recipe, `base_settings` fields of `reson.miniature.pretrain.BaseModelConfig` (over the task's own). The
    shipped base model serves pretraining seed 0 with the task's settings unless `rebuild_base`; any other base model
    is built under `output_dir`. `phases` holds the seconds each phase took.
    """
    import torch

    from reson.core.config import load_config
    from reson.evaluation.evaluate import evaluate
    from reson.miniature.pretrain import build_base_model
    from reson.miniature.probe import probe
    from reson.miniature.shipped import SHIPPED_SEED, check
    from reson.tools.report import build_report

    if task not in TASKS:
        raise DemoError(f"--task {task}: choose one of {', '.join(TASKS)}.")
    spec = TASKS[task]
    recipe, dataset, tag = recipe or spec.recipe, spec.dataset, spec.folder
    output_dir = Path(output_dir)
    shipped = pretrain_seed == SHIPPED_SEED and not base_settings and not rebuild_base
    # a base model built here for the shipped seed gets its own names: its runs never mix with the shipped one's
    suffix = "-built" if pretrain_seed == SHIPPED_SEED and not shipped else ""
    base_name = f"{tag}base{pretrain_seed}{suffix}"
    base_dir = spec.shipped_dir if shipped else output_dir / f"base-{tag}seed{pretrain_seed}{suffix}"
    run_name = f"grpo-{base_name}-seed{seed}"
    train_dir = output_dir / run_name
    eval_base, eval_after = output_dir / f"eval-{base_name}", output_dir / f"eval-{run_name}"
    eval_settings = evaluation_settings(num_problems, task)

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
    # the base model may not exist yet: check the rest of the recipe with a stand-in model id
    load_config(recipe, overrides={**config_overrides, "model_name_or_path": "Qwen/Qwen2.5-0.5B"})
    if shipped:
        check(base_dir)  # the files are the recorded ones, or a clear error before any work
    torch.set_num_threads(threads)  # the evaluations and the probe; the build fixes its own (BaseModelConfig.threads)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    phases = {}

    def phase_done(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 1)
        return now

    # ---- 1. Base model ------------------------------------------------------------------------------------------
    if shipped:
        logger.info("[1/5] base model: the one shipped with reson (pretraining seed %d), %s", pretrain_seed, base_dir)
    else:
        why = "rebuilding it as asked" if rebuild_base or base_settings else "no shipped model for this seed"
        logger.info("[1/5] base model: building or reusing %s (%s; pretraining takes ~8-35 minutes)", base_dir, why)
        build_base_model(base_dir, seed=pretrain_seed, **{**spec.base_settings, **(base_settings or {})})
    mark = phase_done("base model", started)
    latent = probe(base_dir, spec.held_out_rows(num_problems), max_new_tokens=spec.max_completion_length)
    logger.info(
        "      latent skill: %.1f%% with <think> prefilled, against %.1f%% answering directly; <think> prior %.1f%%",
        100 * latent["probe_accuracy"],
        100 * latent["base_accuracy"],
        100 * latent["tag_prior"],
    )
    mark = phase_done("probe", mark)

    # ---- 2. Baseline --------------------------------------------------------------------------------------------
    logger.info("[2/5] evaluating the base model on %d held-out problems", num_problems)
    before = evaluate(str(base_dir), dataset, eval_base, **eval_settings)
    mark = phase_done("evaluation before", mark)

    # ---- 3. GRPO ------------------------------------------------------------------------------------------------
    from reson.training.checkpoints import CHECKPOINT_PREFIX
    from reson.training.train import train

    def train_once(config, what: str) -> None:
        run_dir = Path(config.output_dir)
        finished = any((run_dir / name).is_file() for name in ("model.safetensors", *models.ADAPTER_WEIGHTS))
        if finished:
            logger.info("[3/5] %s: reusing the finished run in %s", what, run_dir)
            return
        resume = any(run_dir.glob(f"{CHECKPOINT_PREFIX}*"))
        logger.info("[3/5] %s: %d steps into %s%s", what, config.max_steps, run_dir, " (resuming)" if resume else "")
        train(config, resume=resume or None)

    config = load_config(recipe, overrides=config_overrides)
    train_once(config, "GRPO")
    if control:  # the same run at learning rate 0: what moves there, sampling moved, not learning
        control_dir = output_dir / f"{run_name}-lr0"
        control_overrides = {**config_overrides, "output_dir": str(control_dir), "learning_rate": 0.0}
        train_once(load_config(recipe, overrides=control_overrides), "GRPO at learning rate 0 (the control)")
    mark = phase_done("GRPO", mark)

    # ---- 4. After -----------------------------------------------------------------------------------------------
    logger.info("[4/5] evaluating the trained model on the same problems")
    after = evaluate(str(train_dir), dataset, eval_after, **eval_settings)
    evals, extra = [eval_base, eval_after], {}
    if control:
        evals.append(output_dir / f"eval-{run_name}-lr0")
        extra["control"] = evaluate(str(control_dir), dataset, evals[-1], **eval_settings)
    if spec.rows:  # the search task: the base model's best-of-k, sampled at the temperature GRPO sampled at
        logger.info("      and the base model, %d samples a problem at temperature %g", BEST_OF, config.temperature)
        evals.append(output_dir / f"eval-{base_name}-sampled")
        sampled = {**eval_settings, "num_generations": BEST_OF, "temperature": config.temperature}
        evaluate(str(base_dir), dataset, evals[-1], **sampled)
        extra["search"] = search_summary(eval_base, eval_after, evals[-1])
    mark = phase_done("evaluation after", mark)

    # ---- 5. Summary ---------------------------------------------------------------------------------------------
    logger.info("[5/5] writing the before/after table and the run report")
    table = before_after_table(before, after, task, extra.get("control"))
    if "search" in extra:
        table += "\n\n" + search_lines(extra["search"])
    folders.write_text(output_dir / f"compare-{run_name}.md", table + "\n")
    report = build_report(train_dir)
    phase_done("table and report", mark)
    seconds = time.perf_counter() - started
    paths = {"base_model": base_dir, "trained_model": train_dir, "report": report, "evals": evals}
    return {
        "before": before,
        "after": after,
        "probe": latent,
        "table": table,
        "paths": paths,
        "seconds": seconds,
        "phases": phases,
    } | extra


def search_summary(eval_base: Path, eval_after: Path, sampled_dir: Path) -> dict:
    """The search task's comparisons, from the evaluations' samples: the accuracy of the base model's first guesses
    (greedy completions that reject no candidate) and of the trained model's completions that reject one, and the
    base model's best-of-k at equal tokens: k samples (at the recipe's temperature) whose tokens add up to no more than
    the trained model's mean completion, right when any one is (an oracle picks, so a generous baseline)."""
    from reson.core.folders import SAMPLES_FILE
    from reson.evaluation.store import read_samples

    before, after, sampled = (read_samples(Path(d) / SAMPLES_FILE) for d in (eval_base, eval_after, sampled_dir))

    def accuracy(records: list[dict]) -> float | None:
        return sum(r["accuracy"] == 1.0 for r in records) / len(records) if records else None

    after_tokens = sum(r["num_tokens"] for r in after) / len(after)
    sampled_tokens = sum(r["num_tokens"] for r in sampled) / len(sampled)
    k = max(1, min(BEST_OF, int(after_tokens // max(sampled_tokens, 1e-9))))
    by_problem: dict[str, list[bool]] = {}
    for r in sampled:
        by_problem.setdefault(str(r["id"]), []).append(r["accuracy"] == 1.0)
    best_of_k = sum(metrics.pass_at_k(len(v), sum(v), k) for v in by_problem.values()) / len(by_problem)
    first_guesses = [r for r in before if not r.get("rejections")]
    rejecting = [r for r in after if r.get("rejections")]
    return {
        "base_first_guess_accuracy": accuracy(first_guesses),
        "base_first_guesses": len(first_guesses),
        "after_rejecting_accuracy": accuracy(rejecting),
        "after_rejecting": len(rejecting),
        "after_tokens": after_tokens,
        "sampled_tokens": sampled_tokens,
        "k": k,
        "best_of_k": best_of_k,
        "sampled_accuracy": accuracy(sampled),
    }


def search_lines(search: dict) -> str:
    """The search task's comparisons (`search_summary`) as lines under the table."""

    def percent(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}%"

    return "\n".join(
        [
            f"- completions after GRPO that reject a candidate: {percent(search['after_rejecting_accuracy'])} right "
            f"(n={search['after_rejecting']}); the base model's first guesses (no candidate rejected): "
            f"{percent(search['base_first_guess_accuracy'])} (n={search['base_first_guesses']})",
            f"- the base model's best-of-{search['k']} at equal tokens ({search['k']} samples of "
            f"{search['sampled_tokens']:.1f} tokens against {search['after_tokens']:.1f} after GRPO, right when any "
            f"one is): {percent(search['best_of_k'])}; one sample: {percent(search['sampled_accuracy'])}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reson demo",
        description="The R1-Zero experiment in miniature, offline on a CPU: take the tiny base model shipped with "
        "reson (or build one), evaluate it, train it with GRPO, evaluate it again.",
    )
    parser.add_argument("--output_dir", default="runs/demo", help="where everything goes (default runs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="GRPO seed (default 0)")
    parser.add_argument(
        "--pretrain_seed",
        type=int,
        default=0,
        help="base model seed (default 0, the model shipped with reson; another seed is built first: ~8-10 min, "
        "~20-35 min for the search task)",
    )
    parser.add_argument(
        "--rebuild_base",
        action="store_true",
        help="build the base model here (~8-10 min; the search task ~20-35) instead of using the shipped one",
    )
    parser.add_argument(
        "--task",
        choices=tuple(TASKS),
        default="arithmetic",
        help="arithmetic word problems (default), or countdown: the search task, where a candidate is easy to check "
        "and hard to find (~9 min)",
    )
    parser.add_argument(
        "--config", default=None, help="the CPU recipe: a YAML file or a shipped recipe's name (default: the task's)"
    )
    parser.add_argument(
        "--control", action="store_true", help="also run GRPO at learning rate 0 and evaluate it (a column more)"
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
    from reson.miniature.shipped import ShippedModelError

    try:
        result = run_demo(
            args.output_dir,
            seed=args.seed,
            pretrain_seed=args.pretrain_seed,
            recipe=args.config,
            num_problems=args.num_problems,
            max_steps=args.max_steps,
            threads=args.threads,
            rebuild_base=args.rebuild_base,
            task=args.task,
            control=args.control,
        )
    except (DemoError, ConfigError, ShippedModelError) as err:
        print(f"reson demo: {err}", file=sys.stderr)
        return 2
    paths = result["paths"]
    print(f"\nBase model vs after GRPO, {args.num_problems} held-out problems, greedy:\n\n{result['table']}\n")
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result["phases"].items())
    print(f"finished in {result['seconds'] / 60:.1f} min ({phases})")
    print(f"  base model:    {paths['base_model']}")
    print(f"  trained model: {paths['trained_model']}")
    print(f"  evaluations:   {', '.join(str(p) for p in paths['evals'])}")
    print(f"  report:        {paths['report']}  (emergence plots: think_usage.png, canary_accuracy.png beside it)")
    kernels = cpu_kernel_settings()
    print(f"  CPU:           {processor_name()}, kernels ATen {kernels['aten']}, MKL {kernels['mkl_cbwr']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
