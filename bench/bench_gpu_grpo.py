"""The GPU check: does each recipe fit the card it is written for, how close is `reson plan`, and how fast is it.

    python bench/bench_gpu_grpo.py                       # 3b (H100 recipe, 80 GB) and 1.5b (A100 recipe, 80 GB)
    python bench/bench_gpu_grpo.py --sizes 1.5b_40gb 0.5b_16gb
    python bench/bench_gpu_grpo.py --sizes 3b_lora_24gb 3b_lora_16gb   # the LoRA recipes, on an L4's and a T4's memory
    python bench/bench_gpu_grpo.py --tiny                # the same code path on a CPU with a tiny model, in seconds

Each size runs in its own process (an out-of-memory error or allocator state cannot touch the next) and:

- holds the allocator to the target card's memory less the CUDA context (`torch.cuda.set_per_process_memory_fraction`
  on a bigger GPU such as an H200), and takes the recipe's vLLM colocate share with a stand-in allocation, so the
  check can show that a recipe fits, not only that it does not;
- builds the real architecture (`reson.core.models.KNOWN_MODELS`, random weights, in the dtype the recipe loads it:
  fp32, or the LoRA recipes' 16-bit frozen base with TRL's `peft_config`) on the GPU, with a small tokenizer trained
  here (ids past it decode to nothing; the embedding and LM head are full size);
- trains two steps through TRL's real path with the recipe's parsed config (`reson.core.config.load_config`: batch,
  accumulation, checkpointing, bf16 autocast, Dr. GRPO), taking worst-case completions from TRL's `rollout_func`:
  every one `max_completion_length` tokens with no EOS, so no generation is needed and no step is shorter than the
  longest a base model writes;
- times transformers generation (`reson.core.generation.HFEngine`, the canaries' path) on a short batch;
- prints and writes (``--output_file``, or $OUT/gpu_check.json) per size: fits or out of memory, the peak allocated and
  reserved memory next to `reson plan`'s prediction for the same settings, seconds per training step, generated
  tokens per second; for LoRA the trained parameters, and whether the base's first and last layers came out of
  training bit for bit as they went in.

A recipe in vLLM sleep mode (vLLM frees its share while training) trains without the stand-in: the training phase is
what is measured, next to `planned_training_phase_gib`.

On the lent H200 (Python 3.12, torch 2.11, transformers 5.17, accelerate 1.15, no network) trl and datasets travel
as wheels (docs/benchmarks.md, "The GPU check", has the download and the run command). The whole check stays under
five minutes of GPU time. Nothing here runs vLLM: its wheel is far larger than what can travel.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GIB = 2**30
# size -> (recipe, the card it is written for)
RUNS = {
    "3b": ("grpo_qwen2.5_3b_h100", "h100-80gb"),
    "1.5b": ("grpo_qwen2.5_1.5b", "a100-80gb"),
    "1.5b_40gb": ("grpo_qwen2.5_1.5b_40gb", "a100-40gb"),
    "0.5b_16gb": ("grpo_qwen2.5_0.5b_16gb", "t4-16gb"),
    "3b_lora_24gb": ("grpo_qwen2.5_3b_lora_24gb", "l4-24gb"),
    "3b_lora_16gb": ("grpo_qwen2.5_3b_lora_16gb", "t4-16gb"),
}
STEPS = 2
OVERRIDES = {  # what this check changes: no vLLM here (its share is held by a stand-in), two steps, no saving
    "use_vllm": False,
    "generation_kwargs": None,
    "max_steps": STEPS,
    "report_to": "none",
    "save_strategy": "no",
    "logging_steps": 1,
    "disable_tqdm": True,
    "num_canaries": 0,
    "rewards": ["accuracy"],  # stands for the check's one random reward: advantages that are not zero
    "reward_weights": None,
    "model_init_kwargs": None,  # the model is built here, in the dtype the recipe loads it
}
PROMPT_LENGTH = 256  # the planner's default: the R1-Zero template plus a GSM8K question
GENERATE = (32, 64)  # sequences and new tokens of the generation timing


def training_config(recipe: str, overrides: dict, cuda: bool):
    """The recipe's config to train with, parsed for the device it will train on: on a GPU with this machine's checks
    (bf16 native, ...), on a CPU with use_cpu. Never parsed as for a CPU and switched back afterwards: TRL resolves and
    caches the device while parsing, and the Trainer would then put the model on the CPU."""
    from reson.core.config import load_config

    if not cuda:
        overrides = {**overrides, "use_cpu": True, "bf16": False, "fp16": False, "dtype": "float32"}
    return load_config(recipe, overrides=overrides)


def check(size: str, tiny: bool) -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, TrainerCallback
    from trl import GRPOTrainer, get_peft_config

    from reson.core import memory, models
    from reson.core.config import load_config
    from reson.core.data import format_prompt, to_hf_dataset
    from reson.core.generation import HFEngine, Request, Sampling
    from reson.core.synthetic import problems
    from reson.miniature.tiny_model import train_tokenizer
    from reson.tools import plan

    recipe, card = RUNS[size]
    cuda = torch.cuda.is_available() and not tiny
    overrides = {**OVERRIDES, "output_dir": f"/tmp/gpu_check_{size}"}
    prompt_length = PROMPT_LENGTH
    arch = models.KNOWN_MODELS[load_config(recipe, machine=False).model_name_or_path]
    if tiny:  # the same path at toy size on a CPU
        arch = models.Architecture(64, 2, 4, 2, 256, 600, True)
        overrides.update(
            per_device_train_batch_size=4,
            gradient_accumulation_steps=2,
            num_generations=4,
            max_completion_length=16,
        )
        prompt_length = 32
    config = training_config(recipe, overrides, cuda)
    recipe_config = load_config(recipe, machine=False)  # read only: what the planner is given
    card_bytes = plan.GPUS[card]
    colocated = recipe_config.use_vllm and not recipe_config.vllm_enable_sleep_mode  # held while training too
    share = int(recipe_config.vllm_gpu_memory_utilization * card_bytes) if colocated and cuda else 0
    stand_in = None
    if cuda:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min((card_bytes - memory.CUDA_CONTEXT) / total, 1.0))
        stand_in = torch.empty(share, dtype=torch.uint8, device="cuda")  # what colocated vLLM would hold

    rows = problems("train", 256, seed=0)
    tokenizer = train_tokenizer([format_prompt(r["question"]) for r in rows], vocab_size=512)
    dataset = to_hf_dataset([{"prompt": format_prompt(r["question"]), "answer": "0"} for r in rows])
    length = config.max_completion_length

    def worst_case(prompts, trainer):  # one completion per entry (TRL's sampler already repeats each prompt)
        g = torch.Generator().manual_seed(len(prompts))
        return {  # ids 1..len(tokenizer)-1 decode and are never EOS or pad (id 0)
            "prompt_ids": torch.randint(1, len(tokenizer), (len(prompts), prompt_length), generator=g).tolist(),
            "completion_ids": torch.randint(1, len(tokenizer), (len(prompts), length), generator=g).tolist(),
            "logprobs": None,
        }

    class Clock(TrainerCallback):
        def __init__(self):
            self.steps: list[float] = []

        def on_step_begin(self, *args, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.steps.append(time.perf_counter() - self.start)

    model_config = Qwen2Config(
        vocab_size=arch.vocab_size,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        tie_word_embeddings=arch.tie_word_embeddings,
        max_position_embeddings=32768,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = Qwen2ForCausalLM(model_config)  # fp32 weights, as the full recipes load them
    ends = (model.model.layers[0], model.model.layers[-1])  # the base's first and last layers, to compare after
    if config.use_peft:  # the LoRA recipes' frozen base: 16-bit
        model = model.to(getattr(torch, config.dtype))
    base_before = layer_weights(ends)
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    clock = Clock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=lambda completions, **kwargs: torch.rand(len(completions)).tolist(),  # non-zero advantages
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[clock],
        rollout_func=worst_case,
        peft_config=get_peft_config(config),
    )
    settings = memory.settings_from_config(recipe_config, prompt_length=prompt_length)
    if tiny:  # the tiny run's shapes
        settings = memory.settings_from_config(config, prompt_length=prompt_length)
    predicted = memory.estimate(arch, settings, card_bytes)
    result = {
        "size": size,
        "recipe": recipe,
        "card": card,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "vllm_stand_in_gib": round(share / GIB, 2),
        "planned_peak_gib": round(predicted.peak / GIB, 2),
        "planned_training_phase_gib": round(predicted.training_phase / GIB, 2),
        "usable_gib": round(predicted.limit / GIB, 2),
    }
    placed = next(trainer.model.parameters()).device.type
    if cuda and placed != "cuda":  # a GPU is here but the model is not on it: nothing measured would mean anything
        return {**result, "fits": False, "error": f"the model is on the {placed}, not the GPU: nothing was timed"}
    result["model_device"] = placed
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.train()
    except torch.OutOfMemoryError as error:
        result.update(fits=False, error="out of memory: " + str(error).splitlines()[0])
        if cuda:
            result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        return result
    result.update(fits=True, step_seconds=[round(s, 2) for s in clock.steps])
    if config.use_peft:
        result["trained_parameters"] = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        after = layer_weights(ends)
        result["base_unchanged"] = after.keys() == base_before.keys() and all(
            torch.equal(after[k], base_before[k]) for k in after
        )
    if cuda:  # the stand-in is part of both: the vLLM share the recipe reserves
        result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 2)
        result["peak_reserved_plus_context_gib"] = round(result["peak_reserved_gib"] + memory.CUDA_CONTEXT / GIB, 2)

    sequences, new_tokens = GENERATE if not tiny else (4, 8)
    engine = HFEngine(trainer.model, tokenizer, batch_size=sequences)
    prompts = [Request(format_prompt(r["question"]), seed=i) for i, r in enumerate(rows[:sequences])]
    start = time.perf_counter()
    outputs = engine.generate(prompts, Sampling(max_new_tokens=new_tokens, temperature=1.0, stop=()))
    if cuda:
        torch.cuda.synchronize()
    result["generated_tokens_per_second"] = round(
        sum(o.num_tokens for o in outputs) / (time.perf_counter() - start), 1
    )
    del stand_in
    return result


def layer_weights(layers) -> dict:
    """CPU copies of the base weights of ``layers``, by name (a LoRA layer's wrapped weight under its plain name)."""
    return {
        f"{i}.{name.replace('.base_layer', '')}": param.detach().cpu().clone()
        for i, layer in enumerate(layers)
        for name, param in layer.named_parameters()
        if "lora_" not in name
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["3b", "1.5b"], choices=list(RUNS))
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU: checks the code path only")
    parser.add_argument("--output_file", help="write the results here (default: $OUT/gpu_check.json when set)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one size, in its own process
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(check(args.worker, args.tiny)), flush=True)
        return 0
    results = []
    for size in args.sizes:
        command = [sys.executable, __file__, "--worker", size, *(["--tiny"] if args.tiny else [])]
        run = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        result = json.loads(lines[-1][7:]) if lines else {"size": size, "error": (run.stderr or run.stdout)[-2000:]}
        print(json.dumps(result), flush=True)
        results.append(result)
    output = args.output_file or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if output:
        Path(output).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r.get("fits") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
