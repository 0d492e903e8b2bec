"""What ends a training run early, and the one line it ends with: divergence, running out of GPU memory, a full disk,
and a request to stop (SIGTERM or SIGINT, `reson.core.preemption`).

Nothing already written is lost in any of them: the last complete checkpoint stays the resume point (a partial one,
cut short by a full disk, is removed), and the line says what to change and that `--resume` continues from there.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from reson.core import folders, memory
from reson.core.config import ResonConfig, model_init_kwargs
from reson.core.preemption import StopRequest
from reson.training import checkpoints

logger = logging.getLogger(__name__)


class RunStopped(RuntimeError):
    """A run that ended early: ``str()`` is its one line, ``exit_code`` what `reson train` exits with."""

    exit_code = 1


class TrainingDiverged(RunStopped):
    """The loss, the gradients or the weights became non-finite or exploded; the run stopped before saving them."""


class OutOfMemory(RunStopped):
    """CUDA ran out of memory in ``phase`` of ``step``."""

    def __init__(self, phase: str, step: int, detail: str = ""):
        super().__init__(f"out of GPU memory in {phase} at step {step}{detail}")
        self.phase, self.step, self.detail = phase, step, detail


class DiskFull(RunStopped):
    """A write into the run folder failed for want of space (or a quota, or a file-size limit)."""


class Stopped(RunStopped):
    """SIGTERM or SIGINT: the step in flight finished and a checkpoint was saved."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def out_of_memory(error: torch.OutOfMemoryError, phase: str, step: int) -> OutOfMemory:
    """``OutOfMemory`` for torch's error, with what it tried to allocate."""
    asked = re.search(r"Tried to allocate [\d.]+ [KMG]iB", str(error))
    return OutOfMemory(phase, step, f" ({asked.group(0).lower()})" if asked else "")


def resume_point(output_dir: Path) -> str:
    good = checkpoints.latest_checkpoint(output_dir)
    return f"{good} is the resume point (--resume)" if good else "no checkpoint was written yet"


def explain(error: BaseException, config: ResonConfig, output_dir: Path) -> RunStopped | None:
    """The one-line ``RunStopped`` an error ends the run with, None for an error that is not one of these."""
    if isinstance(error, TrainingDiverged) or (
        isinstance(error, RuntimeError) and "probability tensor contains" in str(error)  # sampling from NaN weights
    ):
        good = checkpoints.latest_checkpoint(output_dir)
        keep = f"the last good checkpoint is {good}" if good else "no checkpoint was written"
        remedy = fp16_remedy(config) if config.fp16 else "Lower learning_rate or max_grad_norm"
        return TrainingDiverged(
            f"training diverged: {error}; {keep} (its weights passed the check). {remedy} and resume from it "
            "(--resume applies the new values)."
        )
    if isinstance(error, OutOfMemory):
        return OutOfMemory(error.phase, error.step, error.detail + out_of_memory_advice(config, output_dir))
    reason = folders.disk_full_error(error)
    if reason is not None:
        return disk_full(reason, config, output_dir)
    return None


def out_of_memory_advice(config: ResonConfig, output_dir: Path) -> str:
    """After the phase and step of an OOM: the peak `reson plan` predicted on this GPU, its first knob, and the resume
    point."""
    advice = ""
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_properties(0).total_memory
        plan = memory.plan_for(config, gpu)
        if plan is not None:
            advice = (
                f"; reson plan predicted a peak of {memory.gib(plan.peak)} GiB of {memory.gib(plan.limit)} usable on "
                f"this GPU; its first knob: {memory.first_knob(config, gpu)}"
            )
    return f"{advice}. Nothing written is lost: {resume_point(output_dir)}."


def disk_full(reason: str, config: ResonConfig, output_dir: Path) -> DiskFull:
    """Remove the checkpoint the full disk cut short, and say how much space the run needs."""
    removed = checkpoints.remove_partial(output_dir)
    size = checkpoints.checkpoint_bytes(config)
    need = f"; a checkpoint of this run takes about {size / 1e9:.2g} GB" if size else ""
    cut = f"; the partial {', '.join(p.name for p in removed)} was removed" if removed else ""
    return DiskFull(
        f"{folders.disk_full(output_dir, reason)}{need}{cut}. "
        f"{resume_point(output_dir).capitalize()}: free space, lower save_total_limit or move output_dir, then run "
        "the same command with --resume."
    )


def stopped(request: StopRequest, step: int, output_dir: Path) -> Stopped:
    return Stopped(
        f"stopped by {request.name} after step {step}; {resume_point(output_dir)}: run the same command with "
        "--resume to continue.",
        request.exit_code,
    )


def fp16_remedy(config: ResonConfig) -> str:
    """What to do when an fp16 run stops on non-finite numbers: train in fp32 (with LoRA, the frozen base too), at the
    memory `reson plan` predicts for it on this GPU."""
    fp32_base = config.use_peft and str(model_init_kwargs(config)["dtype"]) == "float16"
    remedy = (
        "In fp16 this is most likely an overflow (Qwen-family models are known to overflow fp16's range in the "
        "forward pass): set fp16: false" + (" and dtype: float32" if fp32_base else "") + " to train in fp32"
    )
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_properties(0).total_memory
        in_fp32 = {"compute_bytes": 4, **({"weight_bytes": 4} if fp32_base else {})}
        half, full = memory.plan_for(config, gpu), memory.plan_for(config, gpu, **in_fp32)
        if half is not None and full is not None:
            fits = "fits" if full.fits else "does not fit: also lower max_completion_length or num_generations"
            remedy += (
                f" (reson plan: a peak of {memory.gib(full.peak)} GiB in fp32 against {memory.gib(half.peak)} GiB in "
                f"fp16, of {memory.gib(full.limit)} usable on this GPU: it {fits})"
            )
    return remedy + ", or use a GPU with native bf16,"
