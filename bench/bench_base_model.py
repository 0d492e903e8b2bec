"""Build the miniature base model for several pretraining seeds and probe each on held-out problems.

    python bench/bench_base_model.py --seeds 0 1 --output_dir runs/base-bench

Prints one markdown table row per seed: parameters, pretraining time and tokens/s, torch threads, the 1-minute load
average when the build started, greedy accuracy under the R1-Zero template, probe accuracy (`<think>` prefilled),
the think-tag prior and the base model's format reward.
A seed whose model is already built under --output_dir is reused (its recorded pretraining time is reported);
pass --fresh to rebuild. `--curve_every N` also probes 100 held-out problems every N pretraining steps (greedy,
`<think>` prefilled) and prints where the arithmetic clicks; `--set key=value` changes `BaseModelConfig` fields.

    python bench/bench_base_model.py --compare_shipped --output_dir runs/rebuild --fresh

rebuilds the shipped base model (seed 0, default config; ~8-10 min) and compares it with the one in the package:
the sha256 of each file, and the probe on the demo's held-out problems against the recorded numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def _value(text: str):
    """A --set value: a number or boolean as JSON reads it, else the text itself (check_style=recompute)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def probe_curve(rows: list[dict], every: int):
    """A pretraining callback that prints the probe's accuracy every `every` steps, or None."""
    if not every:
        return None
    from reson.core.data import format_prompt
    from reson.core.generation import HFEngine, Request, Sampling
    from reson.core.rewards import score
    from reson.miniature.corpus import final_answer

    prompts = [format_prompt(r["question"], "r1_zero_think") for r in rows]
    golds = [final_answer(r) for r in rows]

    def callback(step, model, tokenizer):
        if step % every:
            return
        model.eval()
        outputs = HFEngine(model, tokenizer).generate([Request(p) for p in prompts], Sampling(max_new_tokens=64))
        accuracy = sum(s.accuracy for s in score([o.text for o in outputs], golds, prompts)) / len(rows)
        model.train()
        print(f"  step {step}: probe {accuracy:.0%}", file=sys.stderr, flush=True)

    return callback


def compare_shipped(output_dir: str, fresh: bool) -> int:
    """Rebuild the shipped base model and print how it compares with the package's copy, file by file."""
    from reson.core.machine import cpu_kernel_settings, pin_cpu_kernels, processor_name

    pin_cpu_kernels()  # as `python -m reson.miniature.pretrain` does
    import torch

    from reson.miniature.pretrain import BUILD_RECORD, BaseModelConfig, build_base_model, build_record
    from reson.miniature.shipped import PROBE_KEYS, SHIPPED_SEED, manifest, probe_numbers, sha256

    torch.set_num_threads(BaseModelConfig.threads)
    path = Path(output_dir) / f"seed{SHIPPED_SEED}"
    if fresh and path.exists():
        shutil.rmtree(path)
    build_base_model(path, seed=SHIPPED_SEED)
    # the build record holds the build's own times, so it differs every time: compare the model and tokenizer
    recorded = {name: digest for name, digest in manifest()["sha256"].items() if name != BUILD_RECORD}
    differ = [name for name, digest in recorded.items() if sha256(path / name) != digest]
    result = probe_numbers(path, BaseModelConfig.threads)
    stats = build_record(path)["stats"]
    print(f"processor: {processor_name()}, kernels {cpu_kernel_settings()}, torch {torch.__version__}")
    print(f"rebuilt in {stats['pretrain_seconds']} s of pretraining ({stats['build_seconds']} s in all)")
    files = "every file identical" if not differ else f"differ: {', '.join(differ)}"
    print(f"against the shipped copy: {files} ({len(recorded) - len(differ)} of {len(recorded)} sha256 equal)")
    shipped_probe = manifest()["probe"]
    for key in PROBE_KEYS:
        print(f"{key}: rebuilt {result[key]:.4f}, shipped {shipped_probe[key]:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output_dir", default="runs/base-bench")
    parser.add_argument("--num_problems", type=int, default=200)
    parser.add_argument("--fresh", action="store_true", help="rebuild even when a build is cached")
    parser.add_argument("--curve_every", type=int, default=0, help="probe every N pretraining steps (0: never)")
    parser.add_argument("--set", nargs="*", default=[], help="BaseModelConfig fields, key=value")
    parser.add_argument(
        "--compare_shipped", action="store_true", help="rebuild the shipped model (seed 0) and compare it with it"
    )
    args = parser.parse_args(argv)
    if args.compare_shipped:
        return compare_shipped(args.output_dir, fresh=args.fresh)
    settings = {key: _value(value) for key, _, value in (pair.partition("=") for pair in args.set)}

    from reson.core.machine import pin_cpu_kernels
    from reson.miniature.pretrain import BaseModelConfig, build_base_model, build_record
    from reson.miniature.probe import probe

    pin_cpu_kernels()  # as `reson demo` and `python -m reson.miniature.pretrain` do: the same models
    import torch

    from reson.core.synthetic import problems

    torch.set_num_threads(BaseModelConfig.threads)
    rows = problems("test", args.num_problems, seed=0)
    print(
        "| seed | params | pretrain s | tokens/s | threads | load | final loss | base acc | probe acc | tag prior "
        "| base format |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for seed in args.seeds:
        path = Path(args.output_dir) / f"seed{seed}"
        if args.fresh and path.exists():
            shutil.rmtree(path)
        load = os.getloadavg()[0]  # other jobs on the machine slow the build: report it beside the time
        build_base_model(path, seed=seed, callback=probe_curve(rows[:100], args.curve_every), **settings)
        stats = build_record(path)["stats"]
        start = time.perf_counter()
        result = probe(path, rows)
        result["probe_seconds"] = round(time.perf_counter() - start, 1)
        result.update(seed=seed, **stats)
        results.append(result)
        print(
            f"| {seed} | {stats['parameters']:,} | {stats['pretrain_seconds']} | {stats['tokens_per_second']:,} "
            f"| {stats['torch_threads']} | {load:.1f} "
            f"| {stats['final_loss']:.3f} | {result['base_accuracy']:.1%} | {result['probe_accuracy']:.1%} "
            f"| {result['tag_prior']:.1%} | {result['base_format']:.3f} |",
            flush=True,
        )
    print(json.dumps([{k: v for k, v in r.items() if k != "samples"} for r in results]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
