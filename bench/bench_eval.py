"""Batched against one-at-a-time generation in `reson eval`, on the tiny model on CPU.

    python bench/bench_eval.py                       # 64 GSM8K test problems, 64 new tokens, batch 32 vs 1
    python bench/bench_eval.py --num_problems 128 --batch_size 64 --threads 2

Both arms run the whole `reson.evaluation.evaluate.evaluate` pipeline (prompts, generation, scoring, samples.jsonl) on
the same problems with greedy decoding, and differ only in `batch_size`; samples/s is generated completions over
the wall-clock time of the generate-and-score loop (model loading excluded). The model is a randomly
initialised tiny Qwen2 (hidden 64, 2 layers) with a tokenizer trained on GSM8K text, built fresh in a temporary
folder: a random model rarely emits EOS, so nearly every completion runs to `--max_completion_length` and both arms
do the same amount of work. Also prints whether the two arms produced the same completions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def build_tiny_model(folder: Path, data: Path) -> Path:
    from reson.core.data import format_prompt
    from reson.miniature.tiny_model import save_tiny_model

    rows = [json.loads(line) for line in (data / "gsm8k" / "train.jsonl").read_text().splitlines()[:300]]
    texts = [format_prompt(r["question"]) + " <think>" + r["answer"] + "</think> <answer>1</answer>" for r in rows]
    return save_tiny_model(folder, texts, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=str(SHARED_DATA), help="folder laid out like shared/data")
    parser.add_argument("--num_problems", type=int, default=64)
    parser.add_argument("--max_completion_length", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 suits a tiny model)")
    args = parser.parse_args()

    import torch

    from reson.evaluation.evaluate import evaluate

    torch.set_num_threads(args.threads)
    data = Path(args.data_dir)
    gsm8k = str(data / "gsm8k" / "test.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "model", data)
        settings = dict(
            num_problems=args.num_problems, max_completion_length=args.max_completion_length, progress=False
        )
        runs = {}
        for name, batch_size in (("one-at-a-time", 1), ("batched", args.batch_size)):
            out = Path(tmp) / name
            results = evaluate(str(model), [gsm8k], out, batch_size=batch_size, **settings)
            completions = [json.loads(line)["completion"] for line in (out / "samples.jsonl").read_text().splitlines()]
            runs[name] = (results, sorted(completions))

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, {args.threads} thread(s)"
    )
    print(
        f"workload: {args.num_problems} GSM8K test problems, greedy, max {args.max_completion_length} new tokens, "
        "tiny random Qwen2 (hidden 64, 2 layers)"
    )
    for name, (results, _) in runs.items():
        t = results["throughput"]
        tokens = results["datasets"]["gsm8k"]["metrics"]["avg_completion_tokens"]
        batch = results["generation"]["batch_size"]
        print(
            f"{name:>14} (batch {batch:>3}): {t['samples_per_s']:7.2f} samples/s  "
            f"({t['seconds']:.1f} s, {tokens:.1f} tokens per completion)"
        )
    speedup = (
        runs["batched"][0]["throughput"]["samples_per_s"] / runs["one-at-a-time"][0]["throughput"]["samples_per_s"]
    )
    print(f"speed-up: {speedup:.1f}x")
    same = runs["batched"][1] == runs["one-at-a-time"][1]
    print(f"same completions in both arms: {same}")


if __name__ == "__main__":
    main()
