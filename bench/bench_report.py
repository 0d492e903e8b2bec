"""How long `reson report` takes on a full-length run, and how big its page gets.

    python bench/bench_report.py [--steps 1000] [--canaries 64] [--every 50] [--runs 1]

Builds run folders shaped like a 1000-step `reson train` run of the GPU recipes (TRL's per-step log keys, vLLM's
included, in checkpoint trainer states and TensorBoard events, emergence.jsonl with every canary completion), then
times reading one and writing the plots (2x PNG and SVG each) and the page of all of them overlaid. Prints seconds per
phase and the sizes written.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from reson.tools import report
from reson.tools.report import runs

KEYS = (
    "loss",
    "grad_norm",
    "learning_rate",
    "reward",
    "reward_std",
    "rewards/accuracy/mean",
    "rewards/accuracy/std",
    "rewards/format/mean",
    "rewards/format/std",
    "completions/mean_length",
    "completions/min_length",
    "completions/max_length",
    "completions/clipped_ratio",
    "completions/mean_terminated_length",
    "frac_reward_zero_std",
    "entropy",
    "num_tokens",
    "step_time",
    "sampling/importance_sampling_ratio/mean",
)


def build_run(root: Path, steps: int, canaries: int, every: int, seed: int = 0) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    rng = random.Random(seed)
    run = root / f"run-{seed}"
    history = []
    writer = SummaryWriter(str(run / "runs" / "bench"))
    for step in range(1, steps + 1):
        entry = {"step": step, "epoch": step / steps, **{key: rng.random() for key in KEYS}}
        history.append(entry)
        for key in KEYS:
            writer.add_scalar(f"train/{key}", entry[key], step)
    writer.close()
    for checkpoint in range(steps // 2, steps + 1, steps // 2):
        folder = run / f"checkpoint-{checkpoint}"
        folder.mkdir(parents=True)
        state = {"global_step": checkpoint, "max_steps": steps, "log_history": history[:checkpoint]}
        (folder / "trainer_state.json").write_text(json.dumps(state))
    think = "Let me add the numbers. " * 40 + "Wait, let me check: 12 + 30 = 42."
    lines = []
    for step in range(0, steps + 1, every):
        for index in range(canaries):
            uses = rng.random() < step / steps
            completion = f"<think>{think}</think> <answer>42</answer>" if uses else " 42"
            row = {"step": step, "canary": index, "question": "What is 12 + 30?", "gold": "42"}
            row.update(completion=completion, extracted="42", think_used=uses, think_tokens=200 if uses else 0)
            row.update(self_correction=uses, accuracy=float(rng.random() < 0.5), format=float(uses))
            lines.append(json.dumps(row))
    (run / "emergence.jsonl").write_text("\n".join(lines) + "\n")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--canaries", type=int, default=64)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1, help="runs (seeds) overlaid in the report")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dirs = [build_run(Path(tmp), args.steps, args.canaries, args.every, seed) for seed in range(args.runs)]
        start = time.perf_counter()
        loaded = runs.load_run(run_dirs[0])
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        page = report.build_report(run_dirs, Path(tmp) / "report")  # reads again, then plots and writes
        build_s = time.perf_counter() - start
        pngs, svgs = list(page.parent.glob("*.png")), list(page.parent.glob("*.svg"))
        print(
            f"run: {args.steps} steps, {len(loaded.series)} metrics, {args.canaries} canaries every {args.every} steps"
        )
        print(f"read one run's logs: {read_s:.2f} s")
        print(f"full report of {args.runs} run(s) (read + {len(pngs)} plots as PNG and SVG + page): {build_s:.2f} s")
        png_mb, svg_mb = (sum(p.stat().st_size for p in files) / 1e6 for files in (pngs, svgs))
        print(f"report.html: {page.stat().st_size / 1e6:.2f} MB; PNGs: {png_mb:.2f} MB; SVGs: {svg_mb:.2f} MB")


if __name__ == "__main__":
    main()
