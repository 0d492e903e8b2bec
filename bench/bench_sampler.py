"""GRPO's CPU sampling: `reson.training.sampler.sample` against `model.generate`, on the search task's rounds.

One round is what a step of `grpo_cpu_tiny_countdown` generates: 8 prompts x 8 completions at temperature 1.0, up to
192 tokens, from the shipped search base model, one torch thread. Two workloads: under the R1-Zero template (the base
model mostly guesses: short completions, as at the start of GRPO) and with `<think>` prefilled (it searches: the long,
uneven completions of late GRPO, when a few of 64 run to the limit). The arms alternate within each repeat so load hits
both alike; the table gives the median seconds a round and the ratio. From the same random state both arms must give
the same completions, token for token (printed).

    python bench/bench_sampler.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

PROMPTS, GENERATIONS, LENGTH = 8, 8, 192  # grpo_cpu_tiny_countdown's round


def main() -> None:
    from transformers import AutoModelForCausalLM

    from reson.core.data import R1_ZERO_TEMPLATE, R1_ZERO_THINK_TEMPLATE, load_problems
    from reson.core.machine import cpu_kernel_settings, pin_cpu_kernels, processor_name
    from reson.core.models import load_tokenizer
    from reson.miniature.tasks import TASKS
    from reson.training.sampler import sample

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="rounds per arm and workload")
    args = parser.parse_args()

    pin_cpu_kernels()
    torch.set_num_threads(1)
    folder = TASKS["countdown"].shipped_dir
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = load_tokenizer(str(folder))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    questions = [row["question"] for row in load_problems("tiny_countdown", "train")[: PROMPTS * args.repeats]]
    print(f"CPU: {processor_name()}, kernels {cpu_kernel_settings()}")
    print(f"{PROMPTS} prompts x {GENERATIONS} completions a round, up to {LENGTH} tokens, temperature 1")

    def generate(prompt_ids):
        width = max(map(len, prompt_ids))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
            max_new_tokens=LENGTH, eos_token_id=eos, pad_token_id=pad,
        )  # fmt: skip
        completions = []
        for row in out[:, width:].tolist():
            completions.append(row[: row.index(eos) + 1] if eos in row else row)
        return completions

    def sampled(prompt_ids):
        return sample(model, prompt_ids, max_new_tokens=LENGTH, temperature=1.0, eos_ids={eos}, pad_id=pad)

    print("| workload | generate, s a round | sample, s a round | ratio | mean tokens | same completions |")
    print("|---|---:|---:|---:|---:|---|")
    for name, template in (("R1-Zero template", R1_ZERO_TEMPLATE), ("<think> prefilled", R1_ZERO_THINK_TEMPLATE)):
        times, completions = {"generate": [], "sample": []}, {"generate": [], "sample": []}
        for repeat in range(args.repeats):
            batch = questions[repeat * PROMPTS : (repeat + 1) * PROMPTS]
            prompt_ids = [
                tokenizer(template.format(question=q), add_special_tokens=False)["input_ids"]
                for q in batch
                for _ in range(GENERATIONS)
            ]
            for arm, run in (("generate", generate), ("sample", sampled)):
                torch.manual_seed(repeat)
                start = time.perf_counter()
                with torch.no_grad():
                    completions[arm] += run(prompt_ids)
                times[arm].append(time.perf_counter() - start)
        g, s = statistics.median(times["generate"]), statistics.median(times["sample"])
        tokens = statistics.mean(map(len, completions["sample"]))
        same = completions["generate"] == completions["sample"]
        print(f"| {name} | {g:.2f} | {s:.2f} | {s / g:.2f} | {tokens:.1f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
