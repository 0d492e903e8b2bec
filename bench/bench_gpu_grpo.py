"""GPU GRPO benchmark: step time, generation and training throughput, peak memory, and the planner's prediction.

    python bench/bench_gpu_grpo.py                      # 3B (H100 recipe) as is and capped at 80 GB, then 1.5B
    python bench/bench_gpu_grpo.py --sizes 3b --steps 2
    python bench/bench_gpu_grpo.py --tiny               # the same code path on a CPU with a tiny model, in seconds

Each run builds a randomly initialised Qwen2 model with the real model's architecture (Qwen2.5-3B or -1.5B: the
config numbers of `reson.tools.plan.KNOWN_MODELS`, nothing downloaded) and a byte-level BPE tokenizer trained here, and
trains a few GRPO steps with the settings of the matching recipe (configs/grpo_qwen2.5_3b_h100.yaml,
configs/grpo_qwen2.5_1.5b.yaml): batch, accumulation, num_generations, max_completion_length, checkpointing, dtype,
loss. Departures, so that the script needs nothing beyond torch, transformers and trl:

- generation uses the transformers generator, not vLLM (the recipes' `use_vllm` is turned off);
- the reward is a trivial one (completion length), so step time is generation and training, not grading;
- a random model never samples the end-of-text token: every completion runs to max_completion_length, the worst
  case for time and memory;
- the tokenizer is small, but the model's vocabulary is Qwen's (151,936), so the embedding, LM head and loss are
  full size; ids past the tokenizer decode to nothing.

Each run is its own process, so one run's out-of-memory error or allocator state cannot touch the next. The H100
run is repeated with `torch.cuda.set_per_process_memory_fraction` holding it to an H100's 80 GB (on a bigger GPU
such as an H200) to show whether the recipe fits. Printed per run: seconds a step, generated tokens a second,
trained tokens a second, peak allocated memory, and `reson plan`'s predicted peak for the same settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {  # size -> (architecture in reson.tools.plan.KNOWN_MODELS, recipe)
    "3b": ("Qwen/Qwen2.5-3B", "configs/grpo_qwen2.5_3b_h100.yaml"),
    "1.5b": ("Qwen/Qwen2.5-1.5B", "configs/grpo_qwen2.5_1.5b.yaml"),
}
# The recipe fields the benchmark takes over into GRPOConfig
RECIPE_FIELDS = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "max_completion_length",
    "gradient_checkpointing",
    "bf16",
    "beta",
    "epsilon",
    "loss_type",
    "scale_rewards",
    "learning_rate",
    "max_grad_norm",
    "temperature",
    "top_p",
    "top_k",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(RUNS), default=["3b", "1.5b"], help="models to run")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps a run (the first includes warm-up)")
    parser.add_argument("--no-cap", action="store_true", help="skip the run capped at an H100's memory")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU: checks the script, not a GPU")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one run, as JSON
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------------------
# One run (in its own process)


def run_one(spec: dict) -> dict:
    """Train `spec["steps"]` GRPO steps and measure them; returns the numbers, or the error that stopped the run."""
    import torch
    import yaml
    from datasets import Dataset
    from transformers import Qwen2Config, Qwen2ForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from reson.core.data import format_prompt
    from reson.miniature.synthetic import generate
    from reson.miniature.tiny_model import train_tokenizer
    from reson.tools import plan

    tiny, cuda = spec["tiny"], torch.cuda.is_available() and not spec["tiny"]
    model_id, recipe_path = RUNS[spec["size"]]
    recipe = yaml.safe_load((ROOT / recipe_path).read_text())
    settings = {k: recipe[k] for k in RECIPE_FIELDS if k in recipe}
    dtype = str((recipe.get("model_init_kwargs") or {}).get("dtype", "float32"))
    arch = plan.KNOWN_MODELS[model_id]
    if tiny:  # the same code path, sized for a CPU (the vocabulary is set to the tokenizer's below)
        arch = plan.Architecture(64, 2, 4, 2, 256, arch.vocab_size, True)
        settings.update(per_device_train_batch_size=4, gradient_accumulation_steps=2, num_generations=4)
        settings.update(max_completion_length=16, gradient_checkpointing=True, bf16=False)
        dtype = "float32"
    if spec["cap_bytes"]:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(spec["cap_bytes"] / total, 1.0))

    # Data: R1-Zero prompts of synthetic problems; the tokenizer is trained on the same text
    rows = generate("train", 512, seed=0)
    prompts = [format_prompt(r["question"]) for r in rows]
    tokenizer = train_tokenizer(prompts + [r["answer"] for r in rows], vocab_size=2048)
    prompt_tokens = max(len(tokenizer(p).input_ids) for p in prompts)
    dataset = Dataset.from_list([{"prompt": p} for p in prompts])
    if tiny:
        arch = dataclasses.replace(arch, vocab_size=len(tokenizer))

    # Model: random weights, the real architecture
    config = Qwen2Config(
        vocab_size=arch.vocab_size,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        tie_word_embeddings=arch.tie_word_embeddings,
        max_position_embeddings=32768,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype))
    if cuda:
        model = model.cuda()

    # Measure generation: wrap this model's generate (TRL calls it on the unwrapped model)
    timing = {"generate_s": 0.0, "generated_tokens": 0}
    original_generate = model.generate

    def timed_generate(*args, **kwargs):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = original_generate(*args, **kwargs)
        if cuda:
            torch.cuda.synchronize()
        timing["generate_s"] += time.perf_counter() - start
        prompt_len = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
        timing["generated_tokens"] += out.shape[0] * (out.shape[1] - prompt_len)
        return out

    model.generate = timed_generate

    class StepClock(TrainerCallback):
        def __init__(self):
            self.steps: list[dict] = []

        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.start = time.perf_counter()
            self.gen_before = dict(timing)

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.steps.append(
                {
                    "step_s": time.perf_counter() - self.start,
                    "generate_s": timing["generate_s"] - self.gen_before["generate_s"],
                    "generated_tokens": timing["generated_tokens"] - self.gen_before["generated_tokens"],
                }
            )

    def length_reward(completions, **kwargs):
        return [len(c) / 100 for c in completions]

    args = GRPOConfig(
        output_dir=str(Path(spec["output_dir"])),
        max_steps=spec["steps"],
        use_vllm=False,
        use_cpu=not cuda,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        **settings,
    )
    clock = StepClock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=length_reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[clock],
    )

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.train()
    except torch.OutOfMemoryError as error:
        return {"error": f"out of memory: {str(error).splitlines()[0]}", "steps": clock.steps}

    # Numbers: the first step warms up kernels and the allocator, so average over the later ones where there are any
    measured = clock.steps[1:] or clock.steps
    step_s = sum(s["step_s"] for s in measured) / len(measured)
    gen_s = sum(s["generate_s"] for s in measured) / len(measured)
    gen_tokens = sum(s["generated_tokens"] for s in measured) / len(measured)
    completions = args.per_device_train_batch_size * args.gradient_accumulation_steps
    trained_tokens = completions * (prompt_tokens + args.max_completion_length)  # padded to the longest, as trained
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        gpu_bytes = torch.cuda.get_device_properties(0).total_memory
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # CPU: the process's peak RSS
        gpu_bytes = plan.GPUS["h100-80gb"]

    # The planner's prediction for the same settings (transformers generator, the measured prompt length)
    planned = plan.settings_from_recipe(
        {**recipe, **settings, "use_vllm": False}, None, prompt_length=prompt_tokens, dtype=dtype
    )
    predicted = plan.estimate(arch, planned, spec["cap_bytes"] or gpu_bytes)
    return {
        "steps": clock.steps,
        "step_s": step_s,
        "generate_s": gen_s,
        "generation_tokens_per_s": gen_tokens / gen_s if gen_s else None,
        "training_tokens_per_s": trained_tokens / (step_s - gen_s) if step_s > gen_s else None,
        "peak_bytes": peak,
        "peak_kind": "cuda max_memory_allocated" if cuda else "CPU peak RSS",
        "predicted_peak_bytes": predicted.peak,
        "predicted_fits": predicted.fits,
        "prompt_tokens": prompt_tokens,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }


# ---------------------------------------------------------------------------------------------------------------------
# The benchmark: one process per run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print("RESULT " + json.dumps(run_one(spec)), flush=True)
        return 0

    import torch

    from reson.tools.plan import GPUS

    if not args.tiny and not torch.cuda.is_available():
        print(
            "bench_gpu_grpo: needs a CUDA GPU (torch.cuda.is_available() is False). "
            "Run it on a GPU machine, or pass --tiny to check the script's code path on this CPU.",
            file=sys.stderr,
        )
        return 2

    runs = []
    for size in args.sizes:
        runs.append((size, 0))
        if size == "3b" and not args.no_cap and not args.tiny:
            runs.append((size, GPUS["h100-80gb"]))
    results = []
    print(f"{'run':<24}{'s/step':>8}{'gen tok/s':>11}{'train tok/s':>13}{'peak GiB':>10}{'planned GiB':>13}")
    for size, cap in runs:
        name = f"{size}{' capped 80 GB' if cap else ''}{' (tiny)' if args.tiny else ''}"
        spec = {"size": size, "cap_bytes": cap, "steps": args.steps, "tiny": args.tiny}
        spec["output_dir"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_gpu_grpo_{size}")
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, cwd=ROOT
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            result = {"error": f"worker exited {proc.returncode}: " + " | ".join(tail)}
        else:
            result = json.loads(lines[-1][len("RESULT ") :])
        result.update(run=name, wall_s=time.perf_counter() - started)
        results.append(result)
        if "error" in result:
            print(f"{name:<24}{result['error']}")
            continue
        gen = result["generation_tokens_per_s"] or 0.0
        train = result["training_tokens_per_s"] or 0.0
        print(
            f"{name:<24}{result['step_s']:>8.2f}{gen:>11.0f}{train:>13.0f}"
            f"{result['peak_bytes'] / 2**30:>10.2f}{result['predicted_peak_bytes'] / 2**30:>13.2f}"
        )
    print(f"peak: {results[0].get('peak_kind', '?')}; device: {results[0].get('device', '?')}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
