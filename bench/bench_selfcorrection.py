"""Self-correction in the miniature, measured honestly: before and after GRPO, among completions that think.

    python bench/bench_selfcorrection.py --output_dir runs/sc/clean                  # the shipped corpus
    python bench/bench_selfcorrection.py --output_dir runs/sc/slip10r100 \\
        --base_settings slip_rate=0.1 repair_rate=1.0 --grpo max_completion_length=64 --control
    python bench/bench_selfcorrection.py --output_dir runs/sc/demo --models base=runs/demo/base-seed0 \\
        after=runs/demo/grpo-base0-seed0                                             # measure existing models

One experiment: build a base model (`BaseModelConfig` fields from `--base_settings`, e.g. the slip, repair and check
rates that write a verify-and-repair habit into the corpus), train it with the `grpo_cpu_tiny` recipe (same rewards:
nothing rewards the words themselves; `--grpo` overrides fields) and, with `--control`, the same run at learning
rate 0. Then each model samples `--k` completions per held-out problem at temperature 0.7 under two templates:
`r1_zero_think` (`<think>` prefilled, so the rate is not moved by the format switch) and `r1_zero` (training's).

Printed per model and template: accuracy, format, think usage, self-correction among thinking completions
(`reson.core.metrics.has_self_correction` on the think part), accuracy of those that self-correct against those that
do not, and a look inside the traces: the share of written facts ("12-7=6") that are wrong, and how often "wait"
follows a wrong fact and a right one. Self-correction can only pay if the second is well below the first.
One torch thread and pinned CPU kernels throughout, as `reson demo`; everything lands under --output_dir.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter
from pathlib import Path

from reson.core.machine import pin_cpu_kernels

FACT_RE = re.compile(r"(\d+)\s*([+-])\s*(\d+)\s*=\s*(\d+)")
TEMPLATES = ("r1_zero_think", "r1_zero")


def fact_stats(think: str) -> Counter:
    """Wrong and right arithmetic facts in a think text, and whether "wait" follows each before the next fact."""
    counts = Counter()
    facts = list(FACT_RE.finditer(think))
    for i, fact in enumerate(facts):
        a, op, b, c = int(fact[1]), fact[2], int(fact[3]), int(fact[4])
        kind = "right" if c == (a + b if op == "+" else a - b) else "wrong"
        # a check's own fact ("..., check 6+7=13, wait") belongs to the step it checks: look past it
        following = facts[i + 1 :]
        if following and think[fact.end() : following[0].start()].strip(" ,.").lower().endswith("check"):
            following = following[1:]
        between = think[fact.end() : following[0].start() if following else len(think)]
        counts[kind] += 1
        counts[f"{kind}_then_wait"] += "wait" in between.lower()
    return counts


def summarize(records: list[dict]) -> dict:
    from reson.core.metrics import self_correction_phrases
    from reson.core.parsing import split_completion

    def mean(values):
        return sum(values) / len(values) if values else float("nan")

    thinking = [r for r in records if r["think_used"]]
    correcting = [r for r in thinking if r["self_correction"]]
    facts, phrases = Counter(), Counter()
    for r in thinking:
        think = split_completion(r["completion"], r["prompt"]).think or ""
        facts.update(fact_stats(think))
        phrases.update({m[0].lower() for m in self_correction_phrases(think)})
    return {
        "n": len(records),
        "accuracy": mean([r["accuracy"] or 0.0 for r in records]),
        "format": mean([float(r["format"] == 1.0) for r in records]),
        "think_usage": mean([float(r["think_used"]) for r in records]),
        "sc_among_thinking": mean([float(r["self_correction"]) for r in thinking]),
        "thinking": len(thinking),
        "self_correcting": len(correcting),
        "acc_sc": mean([r["accuracy"] or 0.0 for r in correcting]),
        "acc_no_sc": mean([r["accuracy"] or 0.0 for r in thinking if not r["self_correction"]]),
        "wrong_facts": facts["wrong"] / max(1, facts["wrong"] + facts["right"]),
        "wait_after_wrong": facts["wrong_then_wait"] / facts["wrong"] if facts["wrong"] else float("nan"),
        "wait_after_right": facts["right_then_wait"] / facts["right"] if facts["right"] else float("nan"),
        "phrases": dict(phrases.most_common(4)),
    }


def settings(pairs: list[str]) -> dict:
    """key=value pairs, values read as JSON where they parse (numbers, lists), else as strings."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def run_experiment(args, output_dir: Path) -> dict[str, str]:
    """Build, GRPO (and the lr-0 control); returns {label: model path}."""
    from reson.core.config import load_config
    from reson.miniature.pretrain import build_base_model, build_record
    from reson.training.train import train

    started = time.perf_counter()
    base = build_base_model(output_dir / "base", seed=args.pretrain_seed, **settings(args.base_settings))
    print(f"base model: {base} ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"  build: {json.dumps(build_record(base)['stats'])}", flush=True)
    models = {"base": str(base)}
    runs = [("after", {})] + ([("lr0", {"learning_rate": 0.0})] if args.control else [])
    for label, extra in runs:
        folder = output_dir / f"grpo-{label}"
        if not (folder / "model.safetensors").is_file():
            overrides = {"model_name_or_path": str(base), "output_dir": str(folder), "seed": args.seed}
            config = load_config("grpo_cpu_tiny", overrides={**overrides, **settings(args.grpo), **extra})
            started = time.perf_counter()
            train(config)
            print(f"GRPO {label}: {folder} ({time.perf_counter() - started:.0f} s)", flush=True)
        models[label] = str(folder)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--models", nargs="+", help="label=path pairs to measure instead of running an experiment")
    parser.add_argument("--base_settings", nargs="*", default=[], help="BaseModelConfig fields, key=value")
    parser.add_argument("--grpo", nargs="*", default=[], help="grpo_cpu_tiny fields to override, key=value")
    parser.add_argument("--pretrain_seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="GRPO seed")
    parser.add_argument("--control", action="store_true", help="also train at learning rate 0 and measure it")
    parser.add_argument("--num_problems", type=int, default=200)
    parser.add_argument("--k", type=int, default=4, help="samples per problem")
    parser.add_argument("--max_completion_length", type=int, default=96)
    args = parser.parse_args()
    pin_cpu_kernels()
    logging.basicConfig(level=logging.WARNING)
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    from reson.core.folders import SAMPLES_FILE
    from reson.evaluation.evaluate import evaluate
    from reson.evaluation.store import read_samples

    output_dir = Path(args.output_dir)
    models = dict(m.split("=", 1) for m in args.models) if args.models else run_experiment(args, output_dir)
    summary = {}
    for label, path in models.items():
        for template in TEMPLATES:
            folder = output_dir / "sampled" / f"{label}-{template}"
            evaluate(
                path,
                "synthetic",
                folder,
                num_problems=args.num_problems,
                template=template,
                temperature=0.7,
                num_generations=args.k,
                max_completion_length=args.max_completion_length,
                progress=False,
            )
            summary[f"{label} / {template}"] = summarize(read_samples(folder / SAMPLES_FILE))
    (output_dir / "selfcorrection.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(
        "\n| model / template | acc | format | think | SC among thinking | acc SC / no SC | wrong facts "
        "| wait after wrong / right | phrases |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for key, s in summary.items():
        print(
            f"| {key} | {s['accuracy']:.3f} | {s['format']:.3f} | {s['think_usage']:.3f} "
            f"| {s['sc_among_thinking']:.3f} ({s['self_correcting']}/{s['thinking']}) "
            f"| {s['acc_sc']:.2f} / {s['acc_no_sc']:.2f} | {s['wrong_facts']:.3f} "
            f"| {s['wait_after_wrong']:.3f} / {s['wait_after_right']:.3f} | {s['phrases']} |"
        )


if __name__ == "__main__":
    main()
