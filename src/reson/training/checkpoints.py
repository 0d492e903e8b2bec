"""Checkpoints and the run folder: which checkpoint is complete, what to resume, what changed, whether it fits.

A TRL checkpoint is complete when its ``trainer_state.json`` (written last) parses and its weights are there; a
folder a crash left half-written, or whose state file was torn, is passed over and the one before it is used.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from reson.core import folders, models
from reson.core.config import ConfigError, ResonConfig, model_init_kwargs, resolved_values

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


def checkpoint_step(path: str | Path) -> int | None:
    """The step a complete checkpoint holds (its trainer_state.json), None when it is incomplete or torn."""
    path = Path(path)
    try:
        step = json.loads((path / folders.TRAINER_STATE).read_text())["global_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    has_weights = any(next(path.glob(pattern), None) for pattern in models.WEIGHT_GLOBS)
    return int(step) if has_weights else None


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in ``output_dir`` (see the module docstring), None when there is none."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    numbered = [p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.name[len(CHECKPOINT_PREFIX) :].isdigit()]
    for path in sorted(numbered, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), reverse=True):
        if checkpoint_step(path) is not None:
            return path
        logger.warning("%s is incomplete (a save cut short): passed over", path)
    return None


def resume_point(config: ResonConfig, resume: bool | str | None) -> Path | None:
    """The checkpoint to continue from: ``resume`` True means the newest in output_dir (None when there is none yet),
    a path names one; None uses ``config.resume_from_checkpoint``."""
    resume = config.resume_from_checkpoint if resume is None else resume
    if not resume:
        return None
    if resume is True or resume == "latest":
        found = latest_checkpoint(config.output_dir)
        if found is None:
            logger.warning("--resume: no complete checkpoint in %s yet; starting from step 0.", config.output_dir)
            return None
    elif checkpoint_step(resume) is None:
        raise ConfigError(
            f"resume_from_checkpoint {resume} is not a complete checkpoint (no readable trainer_state.json and "
            f"weights): pass a {CHECKPOINT_PREFIX}N folder, or --resume for the newest complete one."
        )
    else:
        found = Path(resume)
    step = checkpoint_step(found)
    if 0 < config.max_steps <= step:  # the Trainer would run one step past max_steps
        raise ConfigError(
            f"{found} is at step {step} and max_steps is {config.max_steps}: that run is finished; raise "
            "--max_steps to train on from it, or start again with --overwrite."
        )
    return found


def changed_settings(output_dir: str | Path, config: ResonConfig) -> dict[str, tuple[Any, Any]]:
    """Fields whose value differs from what the earlier run in ``output_dir`` recorded: {field: (then, now)}."""
    recorded = models.run_config(output_dir)
    now = resolved_values(config)
    skip = {"resume_from_checkpoint", "output_dir"}
    return {
        key: (recorded[key], now[key])
        for key in now
        if key in recorded and recorded[key] != now[key] and key not in skip
    }


def remove_partial(output_dir: str | Path) -> list[Path]:
    """Remove the checkpoints newer than the newest complete one (what a save cut short leaves) and return them."""
    good = latest_checkpoint(output_dir)
    newest = int(good.name[len(CHECKPOINT_PREFIX) :]) if good else -1
    partial = [
        path
        for path in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*")
        if path.name[len(CHECKPOINT_PREFIX) :].isdigit() and int(path.name[len(CHECKPOINT_PREFIX) :]) > newest
    ]
    for path in partial:
        shutil.rmtree(path, ignore_errors=True)
    return partial


def trained_bytes(config: ResonConfig) -> int | None:
    """The bytes of the trained weights in a checkpoint: all of them, or the LoRA adapter (fp32: peft upcasts it);
    None when the model's size is unknown."""
    arch = models.architecture(config.model_name_or_path)
    if arch is None:
        return None
    if config.use_peft:
        return arch.lora_params(config.lora_target_modules, config.lora_r) * 4
    dtype = str(model_init_kwargs(config)["dtype"])
    return arch.num_params * (2 if dtype in ("bfloat16", "float16") else 4)


def checkpoint_bytes(config: ResonConfig) -> int | None:
    """A checkpoint's size: the trained weights and AdamW's two moments in their dtype; None when unknown."""
    trained = trained_bytes(config)
    return None if trained is None else 3 * trained


def disk_needed(config: ResonConfig) -> int | None:
    """Bytes the run will write at its peak: ``save_total_limit`` checkpoints plus the one being written, plus the
    final model (the trained weights); None when the model's size is unknown."""
    checkpoint = checkpoint_bytes(config)
    if checkpoint is None:
        return None
    kept = (config.save_total_limit or 1) + 1 if config.save_strategy != "no" else 0
    return checkpoint * kept + checkpoint // 3


def warn_if_disk_is_short(config: ResonConfig) -> None:
    needed = disk_needed(config)
    folder = Path(config.output_dir)
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed is not None and free < needed:
        logger.warning(
            "output_dir %s: %.0f GB free, but %d checkpoints of %s and the final model need about %.0f GB: free "
            "space, lower save_total_limit, or point output_dir at a larger disk.",
            config.output_dir,
            free / 1e9,
            (config.save_total_limit or 1) + 1,
            config.model_name_or_path,
            needed / 1e9,
        )


def prepare(config: ResonConfig, resume: bool | str | None) -> tuple[Path | None, str]:
    """Before a run starts: the checkpoint to resume from (None for a fresh start), and a note of what the resumed run
    changes (logged, and written into train_config.yaml); warns when the disk is short."""
    checkpoint = resume_point(config, resume)
    note = resume_note(checkpoint, changed_settings(config.output_dir, config)) if checkpoint is not None else ""
    if note:
        logger.info(note)
    warn_if_disk_is_short(config)
    return checkpoint, note


def resume_note(checkpoint: Path, changes: dict[str, tuple[Any, Any]]) -> str:
    """One line for the log and for train_config.yaml: where the run resumed and what it changed."""
    if not changes:
        return f"resumed from {checkpoint.name} with the same settings"
    listed = "; ".join(f"{key} {then!r} -> {now!r}" for key, (then, now) in changes.items())
    return f"resumed from {checkpoint.name} with changed settings, applied from there on: {listed}"
