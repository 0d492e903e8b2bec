"""`reson train`: DeepSeek-R1-Zero-style pure-RL training with GRPO, a thin recipe around TRL's GRPOTrainer.

Launch:

    reson train --config configs/grpo_qwen2.5_3b_h100.yaml                  # one GPU
    reson train --config configs/grpo_cpu_tiny.yaml --model_name_or_path runs/miniature/base --max_steps 50
    reson train --config configs/grpo_qwen2.5_3b_h100.yaml --resume        # continue from the last checkpoint
    accelerate launch --config_file configs/accelerate/ddp.yaml -m reson.training.train --config configs/...yaml

Any config field can be overridden as `--key value` (`python -m reson train` is the same program). From Python:
`train(load_config(path, overrides)) -> output_dir`.

Departures from the DeepSeek-R1-Zero and Dr. GRPO papers, on purpose:

- Scale. A 1.5B-3B base model, 1000 steps of 8-16 prompts x 8-12 completions up to 1-1.5k tokens, on one GPU.
  R1-Zero: a 671B MoE, 16 completions per question up to 32k (later 64k) tokens, 32 questions a step.
- Loss and advantage follow Dr. GRPO, not R1-Zero's GRPO: token losses summed and divided by a constant
  (`loss_type: dr_grpo`, TRL's constant is `max_completion_length`), advantages not divided by the group's std
  (`scale_rewards: none`).
- No KL term and no reference model (`beta: 0.0`), as Dr. GRPO / Oat-Zero and DAPO; R1-Zero used 0.001.
- One optimisation pass per generated batch (`num_iterations: 1`): the policy ratio is 1 at every update, so the
  clip (`epsilon`) never binds; R1-Zero's schedule of several updates per rollout is not reproduced.
- Constant learning rate 1e-6 (R1-Zero: 3e-6), gradient clipping at 0.2.
- Rewards: the final-answer reward (math-verify, wall-clock bounded) plus a *graded* format reward (0 / 0.25 /
  0.5 / 1.0 for the think/answer structure) at weight 0.2. R1-Zero used a rule-based accuracy reward and a format
  reward; Dr. GRPO used correctness only. The graded term made the switch to reasoning ~2.5x sooner in the
  miniature (see DESIGN.md).
- Data: GSM8K and MATH train splits (R1-Zero's RL data is not public); R1-Zero's plain-text template.
- Generation stops at the tokenizer's EOS or `max_completion_length`, with no `</answer>` stop string (TRL's
  transformers generator takes none); the accuracy reward reads the last `<answer>` span, so text after it costs
  tokens, not reward.
- Emergence canaries (held-out prompts generated every `emergence_every` steps) are this project's addition.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from reson.core.config import (
    PROJECT_FIELDS,
    RESOLVED_CONFIG_NAME,
    ConfigError,
    ResonConfig,
    field_help,
    load_config,
    save_resolved_config,
)

logger = logging.getLogger("reson.training.train")

CHECKPOINT_PREFIX = "checkpoint-"


class TrainingDiverged(RuntimeError):
    """Loss, gradient norm or weights became non-finite; training stopped and nothing bad was saved."""


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------


def checkpoint_step(path: str | Path) -> int:
    """The step a checkpoint folder holds, from its trainer_state.json."""
    import json

    return int(json.loads((Path(path) / "trainer_state.json").read_text())["global_step"])


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest *complete* checkpoint in output_dir: trainer_state.json is written last, so a folder a crash left
    half-written (no trainer_state.json) is passed over."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    done = [
        p
        for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*")
        if p.name[len(CHECKPOINT_PREFIX) :].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def _resolve_resume(config: ResonConfig, resume: bool | str | None) -> Path | None:
    if resume is None:
        resume = config.resume_from_checkpoint
    if not resume:
        if latest_checkpoint(config.output_dir) is not None:
            raise ConfigError(
                f"output_dir {config.output_dir} already holds checkpoints from an earlier run: pass --resume to "
                "continue it, or choose a new output_dir."
            )
        return None
    if resume is True or resume == "latest":
        found = latest_checkpoint(config.output_dir)
        if found is None:
            logger.warning("--resume: no complete checkpoint in %s yet; starting from step 0.", config.output_dir)
        return found
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise ConfigError(
            f"resume_from_checkpoint {path} is not a complete checkpoint (no trainer_state.json): pass a "
            f"{CHECKPOINT_PREFIX}N folder, or --resume for the latest one in output_dir."
        )
    return path


# ---------------------------------------------------------------------------------------------------------------
# Callbacks: console and the non-finite guard
# ---------------------------------------------------------------------------------------------------------------


def _callbacks():
    """Callback classes, defined here so that importing this module stays light."""
    import torch
    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    class ConsoleCallback(ProgressCallback):
        """The progress bar, plus one compact line per logging step (instead of the raw metrics dict)."""

        def __init__(self, show_bar: bool = True):
            super().__init__()
            self.show_bar = show_bar

        def on_train_begin(self, args, state, control, **kwargs):
            if self.show_bar:
                super().on_train_begin(args, state, control, **kwargs)

        def on_step_end(self, args, state, control, **kwargs):
            if self.show_bar:
                super().on_step_end(args, state, control, **kwargs)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            line = format_log_line(state.global_step, state.max_steps, logs)
            if line is None:
                return
            if self.show_bar and self.training_bar is not None:
                self.training_bar.write(line)
            else:
                print(line, flush=True)

        def on_train_end(self, args, state, control, **kwargs):
            if self.show_bar:
                super().on_train_end(args, state, control, **kwargs)

    class NonFiniteGuard(TrainerCallback):
        """Stop on a non-finite loss, gradient norm or weight, and cancel any save that would store it."""

        def __init__(self):
            self.problem: str | None = None
            self.step: int | None = None

        def _trip(self, state, control, problem: str):
            if self.problem is None:
                self.problem, self.step = problem, state.global_step
            control.should_training_stop = True
            control.should_save = False

        def on_step_end(self, args, state, control, model=None, **kwargs):
            # Before a checkpoint is written, make sure every weight is finite (cheap next to a step).
            if control.should_save and model is not None and not _all_finite(model):
                self._trip(state, control, "a model weight is not finite")
            elif self.problem is not None:
                control.should_save = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            for key in ("loss", "grad_norm"):
                value = (logs or {}).get(key)
                if value is not None and not math.isfinite(value):
                    self._trip(state, control, f"{key} is {value}")

        def on_epoch_end(self, args, state, control, **kwargs):
            if self.problem is not None:
                control.should_save = False

    def _all_finite(model) -> bool:
        with torch.no_grad():
            return all(bool(torch.isfinite(p).all()) for p in model.parameters())

    return ConsoleCallback, NonFiniteGuard, _all_finite


def format_log_line(step: int, max_steps: int, logs: dict) -> str | None:
    """`step 10/150 | reward 0.412 | acc 0.312 | format 0.750 | len 23.4 | 0.61 s/step` for a training log, a
    canary line for an emergence log, None for anything else."""
    if any(k.startswith("emergence/") for k in logs):
        return (
            f"step {step}/{max_steps} | canaries: acc {logs.get('emergence/canary_accuracy', 0):.3f} | "
            f"think {logs.get('emergence/think_usage_pct', 0):.1f}% | "
            f"think tokens {logs.get('emergence/avg_think_tokens', 0):.1f} | "
            f"self-correction {logs.get('emergence/self_correction_rate', 0):.3f}"
        )
    if "loss" not in logs:
        return None
    parts = [f"step {step}/{max_steps}"]
    for label, key, fmt in (
        ("reward", "reward", ".3f"),
        ("acc", "rewards/accuracy/mean", ".3f"),
        ("format", "rewards/format/mean", ".3f"),
        ("len", "completions/mean_length", ".1f"),
        ("loss", "loss", ".4f"),
    ):
        if logs.get(key) is not None:
            parts.append(f"{label} {logs[key]:{fmt}}")
    if logs.get("step_time") is not None:  # TRL's mean wall time per step since the last log
        parts.append(f"{logs['step_time']:.2f} s/step")
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


def load_data(config: ResonConfig, tokenizer=None) -> tuple[list[dict], list[dict]]:
    """(training rows, canary rows), each with a `prompt` under the config's template."""
    from reson.core.data import canary_rows, load_problems, mix, with_prompts

    sources = [
        (load_problems(spec["name"], spec["split"], config.data_dir, seed=config.seed), spec["weight"])
        for spec in config.datasets
    ]
    if config.num_train_problems is None:
        rows = mix([(rows, len(rows)) for rows, _ in sources], seed=config.seed)
    else:
        rows = mix(sources, total=config.num_train_problems, seed=config.seed)
    rows = with_prompts(rows, config.template, tokenizer)
    canaries = []
    if config.num_canaries > 0 and config.emergence_every > 0:
        name = config.canary_dataset or config.datasets[0]["name"]
        pool = load_problems(name, config.canary_split, config.data_dir, seed=config.seed)
        canaries = with_prompts(
            canary_rows(pool, config.num_canaries, config.seed, exclude=rows), config.template, tokenizer
        )
    return rows, canaries


def _log_through_trainer(trainer, metrics: dict[str, float]) -> None:
    """Send metrics through the trainer's log path, so log_history, TensorBoard and W&B all get them at this step.

    `transformers.Trainer.log`, not `GRPOTrainer.log`, which would fold in and clear the running averages of the
    step's training metrics. Logging clears `control.should_log`; it is restored so the step's own log still runs.
    """
    from transformers import Trainer

    should_log = trainer.control.should_log
    Trainer.log(trainer, dict(metrics))
    trainer.control.should_log = should_log


def _parameters_sharded(trainer) -> bool:
    """True under DeepSpeed ZeRO-3 or FSDP, where no single process holds the whole model."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(getattr(trainer, "is_deepspeed_enabled", False) and plugin is not None and plugin.zero_stage == 3)


def train(config: ResonConfig, resume: bool | str | None = None, callbacks=()) -> Path:
    """Train with GRPO as `config` says; returns output_dir, which then holds the final model, its tokenizer, the
    resolved config (train_config.yaml), emergence.jsonl and the TensorBoard/W&B logs.

    `resume`: True (or "latest") continues from the newest complete checkpoint in output_dir, a path continues
    from that checkpoint, None uses `config.resume_from_checkpoint`. Extra `callbacks` run before this project's.
    Raises TrainingDiverged when the loss, gradient norm or weights become non-finite (the last good checkpoint is
    kept), and ConfigError for a problem found before the model loads.
    """
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOTrainer

    from reson.core.data import to_hf_dataset
    from reson.core.rewards import reward_funcs
    from reson.training.emergence import EMERGENCE_FILE, EmergenceCallback, EmergenceLog

    output_dir = Path(config.output_dir)
    checkpoint = _resolve_resume(config, resume)
    is_main = config.process_index == 0

    # ---- Tokenizer ----
    tokenizer = AutoTokenizer.from_pretrained(config.model_name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    # ---- Data ----
    try:
        rows, canaries = load_data(config, tokenizer)
    except (ValueError, FileNotFoundError) as err:  # bad data settings: still before the model loads
        raise ConfigError(f"datasets: {err}") from None
    logger.info("training on %d problems; %d canaries", len(rows), len(canaries))

    # ---- Rewards ----
    rewards = reward_funcs(config.rewards, timeout=config.reward_timeout)

    # ---- Output folder: resolved config, emergence records consistent with the checkpoint ----
    emergence_log = EmergenceLog(output_dir / EMERGENCE_FILE)
    if is_main:
        save_resolved_config(config)
        emergence_log.truncate_after(checkpoint_step(checkpoint) if checkpoint else -1)

    # ---- Trainer ----
    ConsoleCallback, NonFiniteGuard, all_finite = _callbacks()
    guard = NonFiniteGuard()
    emergence = EmergenceCallback(
        canaries,
        tokenizer,
        output_dir,
        every=config.emergence_every,
        max_new_tokens=config.max_completion_length,
        greedy=config.emergence_greedy,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        min_p=config.min_p,
        repetition_penalty=config.repetition_penalty,
        reward_timeout=config.reward_timeout,
        seed=config.seed,
    )
    trainer = GRPOTrainer(
        model=config.model_name_or_path,
        reward_funcs=rewards,
        args=config,
        train_dataset=to_hf_dataset(rows),
        processing_class=tokenizer,
        callbacks=[*callbacks, guard, emergence],
    )
    emergence.logger_fn = lambda metrics: _log_through_trainer(trainer, metrics)
    if emergence.canaries and _parameters_sharded(trainer):
        # The main process generates canaries alone; with sharded weights it would wait forever for the others.
        logger.warning("emergence canaries are off under ZeRO-3/FSDP: evaluate checkpoints with `reson eval` instead.")
        emergence.canaries = []
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(ConsoleCallback(show_bar=not config.disable_tqdm))

    # ---- Train ----
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if guard.problem is not None:
        good = latest_checkpoint(output_dir)
        keep = f"the last good checkpoint is {good}" if good else "no checkpoint was written"
        raise TrainingDiverged(
            f"training stopped at step {guard.step}: {guard.problem}; {keep}. Lower learning_rate or max_grad_norm "
            "and resume from it with --resume_from_checkpoint."
        )

    # ---- Save ----
    if not all_finite(trainer.model):
        raise TrainingDiverged(
            f"final weights are not finite; the last good checkpoint is {latest_checkpoint(output_dir)}."
        )
    trainer.save_model(str(output_dir))  # model, tokenizer (processing_class), training_args.bin; main process only
    trainer.save_state()  # trainer_state.json with the whole log history
    if is_main:
        save_resolved_config(config)
        logger.info("saved the final model, tokenizer and %s to %s", RESOLVED_CONFIG_NAME, output_dir)
    return output_dir


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    epilog = ["this project's config fields (set in the YAML, or override with --key value):"]
    for name, help_text, default in field_help():
        epilog.append(f"  {name} (default {default!r}): {help_text}")
    epilog += [
        "",
        "Every trl.GRPOConfig / transformers.TrainingArguments field is accepted the same way, e.g.",
        "  --learning_rate 1e-6 --num_generations 12 --max_steps 1000 --report_to wandb --bf16 false",
        "Lists and mappings take YAML: --reward_weights '[1.0, 0.2]'.",
    ]
    parser = argparse.ArgumentParser(
        prog="reson train",
        description="Train a base model with GRPO (R1-Zero style) from a YAML recipe. CLI values override the YAML.",
        epilog="\n".join(epilog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML recipe, e.g. configs/grpo_qwen2.5_3b_h100.yaml")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint in output_dir"
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the config (and print it resolved) without training"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)

    # ---- Logging ----
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # ---- Config ----
    try:
        config = load_config(args.config, rest)
        if args.check:
            import yaml

            from reson.core.config import resolved_values

            values = resolved_values(config)
            print(yaml.safe_dump({k: values[k] for k in PROJECT_FIELDS}, sort_keys=False), end="")
            print(f"{args.config or 'config'}: valid")
            return 0
        train(config, resume=True if args.resume else None)
    except ConfigError as err:
        print(f"reson train: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"reson train: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
