"""Callbacks `reson train` adds to TRL's trainer: the console line, the divergence guard, stopping on SIGTERM or
SIGINT, and the config's settings on resume. The emergence canaries have their own module
(`reson.training.emergence`).
"""

from __future__ import annotations

import logging
import math

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from reson.core.preemption import StopRequest
from reson.training.faults import TrainingDiverged

logger = logging.getLogger(__name__)

# A run has diverged when its largest weight grows past this many times its largest weight at the start (a healthy
# run moves it by a few per cent; lr 1e10 multiplies it by ~1e10 in one step), or past this floor for a model that
# starts near zero.
WEIGHT_GROWTH_LIMIT = 100.0
WEIGHT_FLOOR = 1e3
# In fp16, the loss scaler skips a step whose gradients overflow and halves its scale: a few such steps are how it
# finds its scale. This many in a row (a scale 1024 times smaller) is an overflow no scale cures.
FP16_SKIPPED_STEPS = 10


def format_log_line(step: int, max_steps: int, logs: dict) -> str | None:
    """``step 10/150 | reward 0.412 | acc 0.312 | format 0.750 | len 23.4 | truncated 0.00 | no EOS 0.12 | loss 0.01 |
    0.61 s/step`` for a training log (plus the vLLM importance-sampling ratio when there is one), a canary line for an
    emergence log, None for anything else. "truncated": cut at max_completion_length; "no EOS": TRL's clipped_ratio,
    which also counts completions stopped at a stop string."""
    if any(key.startswith("emergence/") for key in logs):
        return (
            f"step {step}/{max_steps} | canaries: acc {logs.get('emergence/canary_accuracy', 0):.3f} | "
            f"think {100 * logs.get('emergence/think_usage', 0):.1f}% | "
            f"think tokens {logs.get('emergence/avg_think_tokens', 0):.1f} | "
            f"self-correction among thinking {logs.get('emergence/self_correction_rate_among_thinking', 0):.3f}"
        )
    if "loss" not in logs:
        return None
    parts = [f"step {step}/{max_steps}"]
    for label, key, fmt in (
        ("reward", "reward", ".3f"),
        ("acc", "rewards/accuracy/mean", ".3f"),
        ("format", "rewards/format/mean", ".3f"),
        ("len", "completions/mean_length", ".1f"),
        ("truncated", "completions/truncated_ratio", ".2f"),
        ("no EOS", "completions/clipped_ratio", ".2f"),
        ("IS ratio", "sampling/importance_sampling_ratio/mean", ".3f"),
        ("loss", "loss", ".4f"),
    ):
        if logs.get(key) is not None:
            parts.append(f"{label} {logs[key]:{fmt}}")
    if logs.get("step_time") is not None:  # TRL's mean wall time per step since the last log
        parts.append(f"{logs['step_time']:.2f} s/step")
    return " | ".join(parts)


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
        line = format_log_line(state.global_step, state.max_steps, logs or {}) if state.is_world_process_zero else None
        if line is None:
            return
        if self.show_bar and self.training_bar is not None:
            self.training_bar.write(line)
        else:
            print(line, flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.show_bar:
            super().on_train_end(args, state, control, **kwargs)


class DivergenceGuard(TrainerCallback):
    """Stop the run, with ``TrainingDiverged``, before a bad step can be saved or sampled from.

    Before each optimizer step the (clipped) gradients must be finite: a NaN or infinite gradient norm makes every
    gradient NaN. In fp16 the loss scaler skips such a step itself (that is how it finds its scale), so only
    `FP16_SKIPPED_STEPS` of them in a row stop the run. After each step every trained weight (all of them, or a LoRA
    run's adapters: the frozen base cannot move) must be finite, and the largest within ``WEIGHT_GROWTH_LIMIT``
    times the largest at the start. A checkpoint is saved only after its step passed both, so every checkpoint the
    run keeps holds weights that evaluate to something.
    """

    def __init__(self):
        self.start = math.nan  # the largest weight at the start
        self.limit = math.inf
        self.skipped = 0  # fp16 steps in a row whose gradients overflowed

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.start = largest_weight(model)
            self.limit = max(WEIGHT_GROWTH_LIMIT * self.start, WEIGHT_FLOOR)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        finite = not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        self.skipped = 0 if finite else self.skipped + 1
        if not finite and (not args.fp16 or self.skipped >= FP16_SKIPPED_STEPS):
            steps = f" ({self.skipped} steps in a row)" if args.fp16 else ""
            raise TrainingDiverged(f"the gradients of step {state.global_step + 1} are not finite{steps}")

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        self._check_weights(model, state.global_step + 1)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_save:  # once more right before a checkpoint: nothing may have changed them since
            self._check_weights(model, state.global_step)

    def _check_weights(self, model, step: int) -> None:
        largest = largest_weight(model)
        if not largest <= self.limit:  # NaN compares false too
            raise TrainingDiverged(
                f"after step {step} the largest weight is {largest:.3g} (at the start: {self.start:.3g}; the limit "
                f"is {self.limit:.3g})"
            )


def largest_weight(model) -> float:
    """The largest absolute weight ``model`` trains (NaN if any of them is NaN)."""
    with torch.no_grad():  # aminmax: no full-size temporary, unlike abs()
        trained = [p for p in model.parameters() if p.requires_grad]
        extremes = torch.stack([torch.stack(p.detach().aminmax()).abs().float() for p in trained])
        return float(extremes.amax()) if not extremes.isnan().any() else math.nan


class StopOnRequest(TrainerCallback):
    """After SIGTERM or SIGINT (`reson.core.preemption`): the step in flight finishes, a checkpoint of it is saved (its
    weights checked by the divergence guard first, which runs after this), and training ends."""

    def __init__(self, request: StopRequest):
        self.request = request

    def on_step_end(self, args, state, control, **kwargs):
        if self.request.signal is not None:
            control.should_save = True
            control.should_training_stop = True


class CurrentSettingsOnResume(TrainerCallback):
    """On resume, transformers' Trainer restores the learning rate from the optimizer and scheduler state, and the
    save/logging/eval intervals from the trainer state; this puts the config's values back, so what the config (and
    train_config.yaml) says is what runs."""

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        if state.global_step == 0:
            return
        state.compute_steps(args, state.max_steps)
        if lr_scheduler is None or optimizer is None:
            return
        lr_scheduler.base_lrs = [args.learning_rate] * len(lr_scheduler.base_lrs)
        lambdas = getattr(lr_scheduler, "lr_lambdas", None)  # LambdaLR: every schedule transformers builds
        for i, group in enumerate(optimizer.param_groups):
            group["initial_lr"] = args.learning_rate
            group["lr"] = args.learning_rate * (lambdas[i](lr_scheduler.last_epoch) if lambdas else 1.0)
        lr_scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what the Trainer logs


def use_console(trainer, show_bar: bool) -> None:
    """Replace the trainer's progress bar and raw metric printer with ``ConsoleCallback``."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(ConsoleCallback(show_bar=show_bar))


def log_through_trainer(trainer, metrics: dict[str, float]) -> None:
    """Send metrics through the trainer's log path, so log_history, TensorBoard and W&B all get them at this step.

    `transformers.Trainer.log`, not `GRPOTrainer.log`, which would fold in and clear the running averages of the
    step's training metrics. Logging clears `control.should_log`; it is restored so the step's own log still runs.
    """
    should_log = trainer.control.should_log
    Trainer.log(trainer, dict(metrics))
    trainer.control.should_log = should_log


def parameters_sharded(trainer) -> bool:
    """True under DeepSpeed ZeRO-3 or FSDP, where no single process holds the whole model."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(getattr(trainer, "is_deepspeed_enabled", False) and plugin is not None and plugin.zero_stage == 3)
