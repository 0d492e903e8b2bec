"""`reson train`: DeepSeek-R1-Zero-style pure-RL training with GRPO, a thin recipe around TRL's GRPOTrainer.

Launch:

    reson train --config grpo_qwen2.5_3b_h100                              # a shipped recipe, one GPU
    reson train --config my_recipe.yaml --learning_rate 5e-7 --report_to wandb
    reson train --config grpo_qwen2.5_3b_h100 --resume                     # continue from the last checkpoint
    reson train --config grpo_qwen2.5_3b_lora_16gb                         # LoRA adapters on a frozen 3B base
    accelerate launch --config_file src/reson/configs/accelerate/ddp.yaml -m reson train --config ...

Any config field is a flag (`reson train --help` lists them all, with TRL's); `python -m reson train` is the same
program. From Python: `train(load_config(recipe, argv)) -> output_dir`.

Departures from the DeepSeek-R1-Zero and Dr. GRPO papers, on purpose:

- Scale. A 0.5B-3B base model, 500-1000 steps of 8-16 prompts x 8-12 completions up to 1-1.5k tokens, on one GPU.
  R1-Zero: a 671B MoE, 16 completions per question up to 32k (later 64k) tokens, 32 questions a step.
- Loss and advantage follow Dr. GRPO, not R1-Zero's GRPO: token losses summed and divided by a constant
  (`loss_type: dr_grpo`, TRL's constant is `max_completion_length`), advantages not divided by the group's std
  (`scale_rewards: none`).
- No KL term and no reference model (`beta: 0.0`), as Dr. GRPO / Oat-Zero and DAPO; R1-Zero used 0.001. Constant
  learning rate 1e-6 (R1-Zero: 3e-6), gradient clipping at 0.2.
- One optimisation pass per generated batch (`num_iterations: 1`): the policy ratio is 1 at every update, so the
  clip (`epsilon`) never binds; R1-Zero's schedule of several updates per rollout is not reproduced.
- Rewards: the final answer (math-verify, time-bounded) plus a *graded* format reward (0 / 0.25 / 0.5 / 1.0) at
  weight 0.2. R1-Zero: rule-based accuracy and format rewards; Dr. GRPO: correctness only.
- Data: GSM8K and MATH train splits (R1-Zero's RL data is not public); R1-Zero's plain-text template. vLLM stops at
  `</answer>` (the GPU recipes); TRL's transformers generator takes no stop string: it runs to EOS or the limit.
- Emergence canaries (held-out prompts generated every `emergence_every` steps) are this project's addition; so is
  the divergence guard, which stops a run before a non-finite or exploded step can be saved.
- LoRA (`use_peft`, the 16-24 GB recipes): adapters on every linear layer of a frozen 16-bit base, at 10x the full
  recipes' learning rate (LoRA Without Regret); R1-Zero trained every weight. The run folder then holds the adapter
  and its base's name, and every command serves it merged into the base (`reson.core.lora`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch
import yaml
from trl import get_peft_config, get_quantization_config

from reson.core import folders, models
from reson.core.config import (
    ConfigError,
    ResonConfig,
    check_tasks,
    config_parser,
    load_config,
    model_init_kwargs,
    resolved_values,
    save_resolved_config,
)
from reson.core.data import canary_rows, load_problems, mix, task, to_hf_dataset, with_prompts
from reson.core.help import own_stdout
from reson.core.preemption import stop_requests
from reson.core.rewards import reward_funcs
from reson.core.verifier import warm_up
from reson.training import checkpoints, faults
from reson.training.callbacks import CurrentSettingsOnResume, DivergenceGuard, StopOnRequest, use_console
from reson.training.card import save_final_model
from reson.training.emergence import EmergenceCallback, EmergenceLog
from reson.training.trainer import ResonTrainer

logger = logging.getLogger("reson.train")


def load_data(config: ResonConfig, tokenizer) -> tuple[list[dict], list[dict]]:
    """(training rows, canary rows), each with a `prompt` under the config's template."""
    load = lambda name, split: load_problems(name, split, config.data_dir, seed=config.seed)  # noqa: E731
    sources = [(load(spec["name"], spec["split"]), spec["weight"]) for spec in config.datasets]
    if config.num_train_problems is None:
        rows = mix([(rows, len(rows)) for rows, _ in sources], seed=config.seed)
    else:
        rows = mix(sources, total=config.num_train_problems, seed=config.seed)
    canaries = []
    if config.num_canaries > 0 and config.emergence_every > 0:
        pool = load(config.canary_dataset or config.datasets[0]["name"], config.canary_split)
        canaries = canary_rows(pool, config.num_canaries, config.seed, exclude=rows)
    return with_prompts(rows, config.template, tokenizer), with_prompts(canaries, config.template, tokenizer)


def train(config: ResonConfig, resume: bool | str | None = None, overwrite: bool = False, callbacks=()) -> Path:
    """Train with GRPO as `config` says; returns output_dir, which then holds the final model (with use_peft, the
    adapter, naming its base), its tokenizer, the resolved config (train_config.yaml), a model card, emergence.jsonl
    and the TensorBoard/W&B logs.

    `resume`: True continues from the newest complete checkpoint in output_dir, a path from that checkpoint, None
    uses `config.resume_from_checkpoint`; `overwrite` replaces an earlier run in output_dir. Extra `callbacks` run
    before this project's. Raises ConfigError (before the model loads), and `reson.training.faults.RunStopped` when
    the run ends early: diverged, out of GPU memory, a full disk, or stopped by SIGTERM or SIGINT (after saving the
    step in flight).
    """
    output_dir, is_main = Path(config.output_dir), config.process_index == 0

    # ---- Output folder: locked, and what it holds checked, before anything is written ----
    lock = folders.claim(output_dir, folders.TRAINING, "output_dir", bool(resume), overwrite) if is_main else None
    try:
        with stop_requests() as stop:  # SIGTERM or SIGINT from here on: stop where nothing is lost
            return _train(config, output_dir, is_main, resume, callbacks, stop)
    finally:
        if lock is not None:
            lock.release()


def _train(config: ResonConfig, output_dir: Path, is_main: bool, resume, callbacks, stop) -> Path:
    if config.torch_threads:  # before any model work: another thread count sums floats in another order
        torch.set_num_threads(config.torch_threads)
    checkpoint, note = checkpoints.prepare(config, resume)  # the checkpoint to resume, what changed; disk space

    # ---- Tokenizer, data, rewards ----
    tokenizer = models.load_tokenizer(config.model_name_or_path)
    try:
        rows, canaries = load_data(config, tokenizer)
    except (ValueError, FileNotFoundError) as err:  # bad data settings: still before the model loads
        raise ConfigError(f"datasets: {err}") from None
    check_tasks(config.rewards, [task(row) for row in rows + canaries])  # files and hub ids, now that they are read
    logger.info("training on %d problems; %d canaries", len(rows), len(canaries))
    rewards = reward_funcs(config.rewards, timeout=config.reward_timeout)
    warm_up()  # the verifier processes start now, not in the middle of the first step
    if is_main:
        save_resolved_config(config, note=note)
        EmergenceLog(output_dir / folders.EMERGENCE_FILE).truncate_after(
            checkpoints.checkpoint_step(checkpoint) if checkpoint else -1
        )
    if "wandb" in config.report_to:
        os.environ.setdefault("WANDB_DIR", str(output_dir))  # its wandb/ folder beside the run, not in the cwd

    # ---- Trainer, training, the final model: SIGTERM or SIGINT saves the step in flight and stops ----
    if stop.signal is not None:  # came while the data loaded: no model to load, no step to finish
        raise faults.stopped(stop, checkpoints.checkpoint_step(checkpoint) if checkpoint else 0, output_dir)
    config.model_init_kwargs = model_init_kwargs(config)  # the model and, with use_peft, its adapter, as `trl grpo`
    model = config.model_name_or_path
    if models.is_local(model):  # a LoRA run's adapter_config.json names its base: by a path that holds anywhere
        model = str(Path(model).expanduser().resolve())
    emergence = EmergenceCallback(canaries, tokenizer, output_dir, config)
    try:
        trainer = ResonTrainer(
            model=model,
            reward_funcs=rewards,
            args=config,
            train_dataset=to_hf_dataset(rows),
            processing_class=tokenizer,
            callbacks=[*callbacks, CurrentSettingsOnResume(), StopOnRequest(stop), DivergenceGuard(), emergence],
            peft_config=get_peft_config(config),
            quantization_config=get_quantization_config(config),
        )
        emergence.attach(trainer)  # canaries log through the trainer (and are off where weights are sharded)
        use_console(trainer, show_bar=not config.disable_tqdm)
        trains = stop.signal is None  # a signal while the model loaded: no step to finish, nothing new to save
        if trains:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        if stop.signal is not None and (not trains or trainer.state.global_step < trainer.state.max_steps):
            step = trainer.state.global_step or (checkpoints.checkpoint_step(checkpoint) if checkpoint else 0)
            raise faults.stopped(stop, step, output_dir)
        save_final_model(trainer, config, note)
    except faults.Stopped:
        raise
    except Exception as error:  # divergence, out of memory, a full disk: one line, nothing written lost
        stopped = faults.explain(error, config, output_dir)
        if stopped is None:
            raise
        raise stopped from None
    return output_dir


# ---------------------------------------------------------------------------------------------------------------
# Command line


def add_run_flags(parser) -> None:
    """The flags of a `reson train` run that are not config fields."""
    parser.add_argument("--config", help="a YAML recipe, or the name of a shipped one (grpo_qwen2.5_3b_h100, ...)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in output_dir")
    parser.add_argument("--check", action="store_true", help="validate and print the whole resolved config; no run")


def help_text() -> str:
    """Every config field with its help and default (TRL's parser), and the run flags."""
    parser = config_parser()
    add_run_flags(parser.add_argument_group("the run"))
    return parser.format_help()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        print(help_text())
        return 0
    flags = argparse.ArgumentParser(add_help=False)
    add_run_flags(flags)
    args, rest = flags.parse_known_args(argv)

    # ---- Logging, config, then the run; SIGTERM or SIGINT, from here on, stops it where nothing is lost ----
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with stop_requests():
        return _main(args, rest)


def _main(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        if args.check:  # the resolved config on stdout, as YAML a program can read
            with own_stdout() as out:
                config = load_config(args.config, rest)
                print(yaml.safe_dump(resolved_values(config), sort_keys=False, width=119), file=out)
            print(f"{args.config}: valid", file=sys.stderr)
            return 0
        config = load_config(args.config, rest)
        train(config, resume=True if args.resume else None, overwrite=args.overwrite)
    except (ConfigError, folders.FolderError) as err:
        print(f"reson train: {err}", file=sys.stderr)
        return 2
    except faults.RunStopped as err:  # diverged, out of memory, disk full, stopped by a signal
        print(f"reson train: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
