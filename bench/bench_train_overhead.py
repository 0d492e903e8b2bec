"""What `reson train` adds on top of plain TRL, per GRPO step.

Runs the same tiny GRPO job (the CPU recipe's batch: 8 prompts x 8 completions, synthetic problems, a random tiny
Qwen2) through `reson.training.train.train` (config checks, real accuracy + format rewards, console line, non-finite
guard, emergence canaries, and on a CPU its sampler, `reson.training.sampler`) and through a bare `trl.GRPOTrainer`
with a trivial reward, alternating A/B rounds in one process so machine load hits both alike. learning_rate is 0 in
both, so both models stay identical and every step generates the same completions (the sampler gives `generate`'s
tokens): the time difference is the layer, not the sampling. The random model rarely ends a completion early, so
the sampler saves little here; on completions of uneven length it saves most of generation (bench_sampler.py).
Per-step wall time is measured from one step's start to the next's by the same callback in both; the first steps of
a run (warm-up: the verifier pool starts, allocators grow) and the steps where canaries were generated are excluded.

    .venv/bin/python bench/bench_train_overhead.py [--steps 24] [--rounds 2]

Target: the layer adds at most 10% per step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

RECIPE = "grpo_cpu_tiny"  # the recipe shipped in the package
WARMUP_STEPS = 2


def build_model(folder: Path) -> Path:
    from reson.core.data import format_prompt
    from reson.core.synthetic import problems
    from reson.miniature.tiny_model import save_tiny_model

    rows = problems("train", 400, seed=1)
    texts = [format_prompt(r["question"]) + " <think>" + r["answer"] + "</think> <answer>1</answer>" for r in rows]
    return save_tiny_model(folder, texts, seed=0)


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time and this process's CPU time (all threads) from each step's start to the next step's start, so
        callbacks, logging and saving count. CPU time is steadier on a shared machine; it leaves out the reward
        verifier's worker processes, which only see answers that are not plain numbers."""

        def __init__(self):
            self.starts: dict[int, tuple[float, float]] = {}
            self.end = None

        def on_step_begin(self, args, state, control, **kwargs):
            self.starts[state.global_step] = (time.perf_counter(), time.process_time())

        def on_train_end(self, args, state, control, **kwargs):
            self.end = (time.perf_counter(), time.process_time())

        def durations(self) -> dict[int, tuple[float, float]]:
            """{step number (1-based): (wall seconds, CPU seconds)}."""
            begins = sorted(self.starts.items())
            out = {}
            for (step, t0), (_, t1) in zip(begins, begins[1:] + [(None, self.end)], strict=True):
                out[step + 1] = (t1[0] - t0[0], t1[1] - t0[1])
            return out

    return StepTimer()


def overrides(model: Path, output_dir: Path, steps: int, emergence_every: int) -> dict:
    return {
        "model_name_or_path": str(model),
        "output_dir": str(output_dir),
        "max_steps": steps,
        "learning_rate": 0.0,
        "emergence_every": emergence_every,
        "num_train_problems": 8 * steps,
        "save_strategy": "no",
        "report_to": [],
        "logging_steps": 1,
        "disable_tqdm": True,
    }


def run_reson(model: Path, workdir: Path, steps: int, emergence_every: int) -> tuple[dict[int, float], set[int]]:
    from reson.core.config import load_config
    from reson.training.train import train

    timer = step_timer()
    config = load_config(RECIPE, overrides(model, workdir, steps, emergence_every))
    train(config, callbacks=[timer])
    canary_steps = {s for s in range(steps + 1) if s % emergence_every == 0 or s == steps}
    # The canaries for step s run at the end of step s, so step s's wall time includes them.
    return timer.durations(), canary_steps


def run_plain_trl(model: Path, workdir: Path, steps: int) -> dict[int, float]:
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from reson.core.config import load_config
    from reson.core.data import to_hf_dataset
    from reson.training.train import load_data

    # Same rows, same prompts, same TRL settings as the reson run.
    config = load_config(RECIPE, overrides(model, workdir / "unused", steps, 10**9))
    rows, _ = load_data(config)
    args = GRPOConfig(
        output_dir=str(workdir),
        max_steps=steps,
        learning_rate=0.0,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        beta=config.beta,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        report_to=[],
        logging_steps=1,
        disable_tqdm=True,
        seed=config.seed,
        dataloader_pin_memory=False,
    )

    def trivial(completions, **kwargs):
        return [float(len(c) % 2) for c in completions]

    timer = step_timer()
    trainer = GRPOTrainer(model=str(model), reward_funcs=trivial, args=args, train_dataset=to_hf_dataset(rows))
    trainer.remove_callback(PrinterCallback)  # the raw metrics dict per step would flood the benchmark's output
    trainer.add_callback(timer)
    trainer.train()
    return timer.durations()


def summarize(durations: dict[int, tuple[float, float]], excluded: set[int]) -> list[tuple[float, float]]:
    return [t for step, t in sorted(durations.items()) if step > WARMUP_STEPS and step not in excluded]


def report(label: str, ours: list[tuple[float, float]], plain: list[tuple[float, float]]) -> str:
    lines = []
    for i, kind in enumerate(("wall", "CPU")):
        a, b = [t[i] for t in ours], [t[i] for t in plain]
        lines.append(
            f"{label} {kind:>4}: reson {statistics.mean(a):.3f} s/step (median {statistics.median(a):.3f}), "
            f"plain TRL {statistics.mean(b):.3f} (median {statistics.median(b):.3f}), "
            f"ratio mean {statistics.mean(a) / statistics.mean(b):.3f}, "
            f"median {statistics.median(a) / statistics.median(b):.3f}"
        )
    return "\n".join(lines)


def main() -> None:
    import logging
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=24, help="GRPO steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds (each: one reson run, one plain TRL run)")
    parser.add_argument("--emergence_every", type=int, default=10, help="canary interval in the reson runs")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_model(tmp / "model")
        ours, plain = [], []
        for r in range(args.rounds):
            durations, canary_steps = run_reson(model, tmp / f"reson{r}", args.steps, args.emergence_every)
            ours.append(summarize(durations, canary_steps))
            plain.append(summarize(run_plain_trl(model, tmp / f"trl{r}", args.steps), set()))
            print(report(f"round {r + 1} ({len(ours[-1])}+{len(plain[-1])} steps)", ours[-1], plain[-1]), flush=True)
    all_ours = [t for run in ours for t in run]
    all_plain = [t for run in plain for t in run]
    print(report("all rounds", all_ours, all_plain))
    print("target: ratio <= 1.10")


if __name__ == "__main__":
    main()
