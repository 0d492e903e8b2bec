"""The miniature's bar, over seeds and CPU kernels: `reson demo` for every (variant, pretraining seed, GRPO seed).

    python bench/bench_demo.py                                    # the shipped base model, GRPO seeds 0 1 2
    python bench/bench_demo.py --seeds 0 --variants all           # every kernel variant below, GRPO seed 0
    python bench/bench_demo.py --pretrain_seeds 1 2 --seeds 0     # base models built here first (~8-10 min each)

Each demo runs in its own process, because the kernel settings must be in the environment before torch starts. A
variant changes what a processor decides: ATen's kernel family, MKL's code branch, the thread count. The pinned one is
what `reson demo` runs; the others are the kind of bit differences another vendor's processor introduces, so the band
over them is the band to expect across vendors where the pins do not hold. For each demo it prints the probe, every
figure of the before/after table, the phase times (seconds) and the load average at the start: the machine may be
shared, so compare times only within one run of this bench. The bar: under 3 minutes a demo on 2 cores (install
aside), accuracy +15 points, format from under 10% to over 80%, every after-GRPO figure within 2 points over variants
and seeds. Sampled self-correction: bench/bench_selfcorrection.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from reson.core.machine import CPU_KERNEL_PINS

# name -> (environment, torch threads for GRPO and the evaluations); "pinned" is what `reson demo` runs
VARIANTS = {
    "pinned": (CPU_KERNEL_PINS, 1),
    "old-pins": ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}, 1),  # the pins before COMPATIBLE
    "mkl-auto": ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AUTO"}, 1),  # MKL's choice, ATen pinned
    "native": ({}, 1),  # nothing pinned: on an AVX-512 Intel, ATen's AVX-512 kernels and MKL's own choice
    "2-threads": (CPU_KERNEL_PINS, 2),
}
KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")
FIGURES = (  # (metric key, short label, scale) of the rows printed
    ("accuracy", "acc", 100.0),
    ("format_compliance", "fmt", 100.0),
    ("think_usage", "think", 100.0),
    ("avg_completion_tokens", "tokens", 1.0),
    ("self_correction_rate_among_thinking", "SC", 100.0),
)


def _value(text: str):
    """A --grpo value: a number or boolean as JSON reads it, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def one(args) -> None:
    """One demo in this process (the environment is already set): print its row as JSON."""
    import logging

    from reson.core.machine import cpu_kernel_settings, processor_name
    from reson.miniature.demo import run_demo
    from reson.miniature.tasks import TASKS

    dataset = TASKS["arithmetic"].dataset

    logging.basicConfig(level=logging.WARNING)  # the kernel settings are the variant's: nothing pinned here
    variant, pretrain_seed, seed = args.one[0], int(args.one[1]), int(args.one[2])
    overrides = {key: _value(value) for key, _, value in (pair.partition("=") for pair in args.grpo)}
    if args.curve_every:  # keep a checkpoint every N steps, to evaluate each after the demo
        overrides.update(save_steps=args.curve_every, save_total_limit=None)
    load = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    result = run_demo(
        os.path.join(args.output_dir, variant),
        seed=seed,
        pretrain_seed=pretrain_seed,
        num_problems=args.num_problems,
        max_steps=args.max_steps,
        threads=VARIANTS[variant][1],
        overrides=overrides,
    )
    # CPU time of the demo (this process and the grading workers it started and ended): on a shared machine it
    # varies far less than the wall time, so kernel settings are compared by it
    cpu_seconds = round(_cpu_seconds() - cpu_started, 1)
    seconds = round(time.perf_counter() - started, 1)
    before = result["before"]["datasets"][dataset]["metrics"]
    after = result["after"]["datasets"][dataset]["metrics"]
    curve = {}  # step -> the after-GRPO figures of the checkpoint saved at that step
    if args.curve_every:
        from reson.evaluation.evaluate import evaluate
        from reson.miniature.demo import evaluation_settings

        train_dir = result["paths"]["trained_model"]
        for checkpoint in sorted(train_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])):
            out = train_dir.parent / f"eval-{train_dir.name}-{checkpoint.name}"
            scores = evaluate(str(checkpoint), dataset, out, **evaluation_settings(args.num_problems))
            metrics = scores["datasets"][dataset]["metrics"]
            curve[int(checkpoint.name.split("-")[-1])] = {key: metrics[key] for key, _, _ in FIGURES}
    row = {
        "variant": variant,
        "kernels": cpu_kernel_settings(),
        "processor": processor_name(),
        "pretrain_seed": pretrain_seed,
        "seed": seed,
        "probe_accuracy": result["probe"]["probe_accuracy"],
        "base_accuracy_probe": result["probe"]["base_accuracy"],
        "before": {key: before[key] for key, _, _ in FIGURES},
        "after": {key: after[key] for key, _, _ in FIGURES},
        "curve": curve,
        "phases": result["phases"],
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load_at_start": round(load, 2),
    }
    print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/bench_demo")
    parser.add_argument("--variants", nargs="+", default=["pinned"], help=f"'all' or some of {list(VARIANTS)}")
    parser.add_argument("--pretrain_seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num_problems", type=int, default=200)
    parser.add_argument("--max_steps", type=int, default=None, help="GRPO steps (default: the recipe's)")
    parser.add_argument("--grpo", nargs="*", default=[], help="recipe fields, key=value")
    parser.add_argument(
        "--curve_every",
        type=int,
        default=0,
        help="also evaluate a checkpoint every N GRPO steps, as the demo evaluates the final model: where the "
        "after-GRPO figures level off (a run of fewer steps is exactly the start of a longer one)",
    )
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--one", nargs=3, metavar=("VARIANT", "PRETRAIN_SEED", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args)
        return
    variants = list(VARIANTS) if args.variants == ["all"] else args.variants
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}: choose from {list(VARIANTS)} or 'all'")

    rows = []
    figures = " ".join(f"{label + ' b/a':>13}" for _, label, _ in FIGURES)
    print(f"{'variant':<10} {'base':>4} {'seed':>4} {'probe':>6} {figures}  phases (s)", flush=True)
    for variant in variants:
        for pretrain_seed in args.pretrain_seeds:
            for seed in args.seeds:
                env = {k: v for k, v in os.environ.items() if k not in KNOBS}
                env.update(VARIANTS[variant][0])
                command = [sys.executable, __file__, "--one", variant, str(pretrain_seed), str(seed)]
                command += ["--output_dir", args.output_dir, "--num_problems", str(args.num_problems)]
                if args.max_steps:
                    command += ["--max_steps", str(args.max_steps)]
                if args.grpo:
                    command += ["--grpo", *args.grpo]
                if args.curve_every:
                    command += ["--curve_every", str(args.curve_every)]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode:
                    print(done.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"the demo for {variant} {pretrain_seed} {seed} failed")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                cells = " ".join(
                    f"{row['before'][key] * scale:>6.1f}/{row['after'][key] * scale:<6.1f}"
                    for key, _, scale in FIGURES
                )
                phases = ", ".join(f"{name} {s:.0f}" for name, s in row["phases"].items())
                print(
                    f"{variant:<10} {pretrain_seed:>4} {seed:>4} {100 * row['probe_accuracy']:>5.1f}% {cells}  "
                    f"{phases}; total {row['seconds']:.0f} s ({row.get('cpu_seconds', 0):.0f} s CPU), load "
                    f"{row['load_at_start']}",
                    flush=True,
                )
    print(f"processor: {rows[0]['processor']}")
    for key, label, scale in FIGURES:
        values = [row["after"][key] * scale for row in rows]
        print(f"after GRPO, {label}: {min(values):.1f} to {max(values):.1f} (spread {max(values) - min(values):.1f})")
    steps = sorted({step for row in rows for step in row["curve"]}, key=int)
    for step in steps:  # the band over every demo, had GRPO stopped at this step
        cells = []
        for key, label, scale in FIGURES:
            values = [row["curve"][step][key] * scale for row in rows if step in row["curve"]]
            cells.append(f"{label} {min(values):.1f}-{max(values):.1f}")
        print(f"checkpoint {step}: " + ", ".join(cells))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
