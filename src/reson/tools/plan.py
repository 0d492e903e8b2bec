"""`reson plan`: predict a GRPO recipe's peak GPU memory, term by term, before renting the GPU.

    reson plan --config grpo_qwen2.5_3b_h100 --gpu h100-80gb
    reson plan --config grpo_qwen2.5_1.5b_40gb --gpu a100-40gb
    reson plan --config my_recipe.yaml --gpu a100-80gb --num_gpus 4 --strategy zero3

The estimate and its terms: `reson.core.memory` (its docstring has every formula). Here: the GPUs by name, the recipe
for a GPU (`choose_recipe`, what the notebook uses; `reson.core.machine.visible_gpu` reads the GPU) and the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from reson.core import models
from reson.core.config import ConfigError, load_config, model_init_kwargs
from reson.core.help import HelpFormatter, own_stdout
from reson.core.memory import (
    GIB,
    HEADROOM,
    MIB,
    STRATEGIES,
    Plan,
    PlanError,
    Settings,
    estimate,
    gib,
    lora_params,
    settings_from_config,
    vllm_share_for,
)
from reson.core.models import Architecture

# Memory as nvidia-smi reports it (MiB).
GPUS = {
    "h100-80gb": 81559 * MIB,
    "h100-94gb": 95830 * MIB,
    "h200-141gb": 143771 * MIB,
    "b200-180gb": 183359 * MIB,
    "a100-80gb": 81920 * MIB,
    "a100-40gb": 40960 * MIB,
    "a6000-48gb": 49140 * MIB,
    "l40s-48gb": 46068 * MIB,
    "l4-24gb": 23034 * MIB,
    "a10g-24gb": 23028 * MIB,
    "rtx4090-24gb": 24564 * MIB,
    "v100-32gb": 32768 * MIB,
    "t4-16gb": 15360 * MIB,
}


# The GPU recipes, full training from the largest model down, then LoRA on the 3B model before full training of the
# 0.5B one: `choose_recipe` takes the first that fits the GPU.
RECIPE_LADDER = (
    "grpo_qwen2.5_3b_h100",
    "grpo_qwen2.5_1.5b_40gb",
    "grpo_qwen2.5_3b_lora_24gb",
    "grpo_qwen2.5_3b_lora_16gb",
    "grpo_qwen2.5_0.5b_16gb",
)
# A recipe built around vLLM generation, and the one further down the ladder made for the same run generating with
# transformers (shorter completions, fewer problems): where vLLM cannot run, the first gives way to the second.
TRANSFORMERS_TWIN = {"grpo_qwen2.5_3b_lora_24gb": "grpo_qwen2.5_3b_lora_16gb"}


def choose_recipe(gpu_bytes: int, native_bf16: bool, without_vllm: Sequence[str] = ()) -> tuple[str, list[str]] | None:
    """The shipped recipe for a GPU of ``gpu_bytes`` memory: the first of `RECIPE_LADDER` whose planned peak fits,
    with the command-line overrides its precision needs (fp16 on a GPU without native bf16, bf16 where the recipe is
    fp16 and the GPU runs bf16; a 16-bit frozen base follows); None when no recipe fits (the miniature then runs on
    the CPU). ``without_vllm``: the overrides that turn vLLM off, where none can run (`reson.tools.install_plan`'s
    ``overrides``); a recipe that generates with vLLM is then sized, and returned, with them, unless it has a
    `TRANSFORMERS_TWIN`."""
    for recipe in RECIPE_LADDER:
        if without_vllm and recipe in TRANSFORMERS_TWIN:
            continue  # its twin, made for transformers generation, comes next
        config = load_config(recipe, machine=False)
        half = "bfloat16" if native_bf16 else "float16"
        if (config.bf16 and not native_bf16) or (config.fp16 and native_bf16):
            overrides = ["--bf16", str(native_bf16).lower(), "--fp16", str(not native_bf16).lower()]
        else:
            overrides = []
        if model_init_kwargs(config)["dtype"] in ("bfloat16", "float16") and config.dtype != half:
            overrides += ["--dtype", half]
        if config.use_vllm and without_vllm:
            overrides += without_vllm
        config = load_config(recipe, argv=overrides, machine=False)
        arch = models.architecture(config.model_name_or_path)
        if estimate(arch, settings_from_config(config), gpu_bytes).fits:
            return recipe, overrides
    return None


def resolve_gpu(name: str) -> int:
    """A GPU's memory in bytes: a name from GPUS, or a size in GiB ("39.5", what nvidia-smi says divided by 1024)."""
    key = name.lower()
    if key in GPUS:
        return GPUS[key]
    try:
        size = float(key.removesuffix("gib"))
    except ValueError:
        size = 0.0
    if not size > 0:
        raise PlanError(
            f"--gpu {name!r} is not a GPU the planner knows; choose one of: {', '.join(GPUS)}, or give its memory in "
            "GiB (e.g. 39.5)"
        )
    return int(size * GIB)


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def format_plan(plan: Plan, arch: Architecture, s: Settings, model: str, gpu: str) -> str:
    weights = ("4-bit (NF4)" if s.load_in_4bit else _dtype_name(s.weight_bytes)) + (" frozen" if s.lora_rank else "")
    lines = [
        f"model {model}: {arch.num_params / 1e9:.2f}B parameters, {weights} weights; "
        f"GPU {gpu} ({gib(plan.gpu_bytes)} GiB) x {s.num_gpus}, strategy {s.strategy}",
        f"per GPU: {s.per_device_train_batch_size} completions a micro-batch, {s.generation_batch_size} generated a "
        f"round ({s.num_generations} per prompt), prompt {s.prompt_length} + completion {s.max_completion_length} "
        f"tokens, gradient checkpointing {'on' if s.gradient_checkpointing else 'off'}, generation by "
        + (f"vLLM ({s.vllm_mode})" if s.use_vllm else "transformers"),
        *lora_lines(arch, s),
        "",
        f"{'term':<36}{'GiB':>8}",
    ]
    for name, value in plan.terms.items():
        if value or name in ("weights", "gradients", "activations"):
            lines.append(f"{name:<36}{gib(value):>8}")
    lines += [
        "",
        f"activations with checkpointing     {gib(plan.activations_with_checkpointing):>8}",
        f"activations without checkpointing  {gib(plan.activations_without_checkpointing):>8}",
        f"(unfused loss logits, fp32 + log-softmax, would be {gib(plan.unfused_logits)} GiB; TRL 1.16 fuses them)",
        "",
        f"generation phase {gib(plan.generation_phase):>8} GiB",
        f"training phase   {gib(plan.training_phase):>8} GiB",
        f"predicted peak   {gib(plan.peak):>8} GiB of {gib(plan.limit)} GiB usable "
        f"({int((1 - HEADROOM) * 100)}% of {gib(plan.gpu_bytes)}): " + ("fits" if plan.fits else "does NOT fit"),
    ]
    lines += [f"  {line}" for line in plan.advice]
    if plan.vllm_kv_tokens is not None:
        room, need, length = plan.vllm_kv_tokens, plan.vllm_kv_needed, s.prompt_length + s.max_completion_length
        lines.append(
            f"vLLM KV cache: room for {room:,} tokens in its share of {s.vllm_gpu_memory_utilization:g}; a generation "
            f"round at the limit needs {need:,} ({s.generation_batch_size} x {length})"
            + (": one wave" if room >= need else f": vLLM queues it in {-(-need // max(room, 1))} waves (slower)")
        )
        if room < need:
            share = vllm_share_for(arch, s, plan.gpu_bytes, need)
            whole = estimate(arch, dataclasses.replace(s, vllm_gpu_memory_utilization=share), plan.gpu_bytes)
            lines.append(
                f"  vllm_gpu_memory_utilization {share:g} holds a whole round: predicted peak {gib(whole.peak)} GiB "
                f"({'fits' if whole.fits else 'does NOT fit'})"
            )
    return "\n".join(lines)


def lora_lines(arch: Architecture, s: Settings) -> list[str]:
    """What trains in a LoRA plan: the adapters' size, and that gradients and moments are theirs alone."""
    if not s.lora_rank:
        return []
    targets = "every linear layer" if s.lora_targets == "all-linear" else ", ".join(s.lora_targets)
    adapters = lora_params(arch, s)
    return [
        f"LoRA rank {s.lora_rank} on {targets}: {adapters / 1e6:.1f}M trained parameters "
        f"({100 * adapters / arch.num_params:.2f}% of the model) in {_dtype_name(s.adapter_bytes)}, their gradients "
        "and AdamW moments the only ones; the LM head is frozen, so no fp32 head gradient"
    ]


def _dtype_name(weight_bytes: int) -> str:
    return {2: "16-bit", 4: "fp32"}[weight_bytes]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reson plan",
        usage="reson plan --config RECIPE [--gpu GPU] [options] [--FIELD VALUE ...]",
        description="Predict a GRPO recipe's peak GPU memory, term by term, and what to change if it does not fit. "
        "Any other --FIELD VALUE overrides the recipe as on `reson train`'s command line (--use_vllm false).",
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # an override such as --num_generations must never pass for one of these flags
    )
    parser.add_argument("--config", required=True, help="training recipe: a YAML file or a shipped recipe's name")
    parser.add_argument(
        "--gpu", default="h100-80gb", help=f"GPU model, one of: {', '.join(GPUS)}; or its memory in GiB (39.5)"
    )
    parser.add_argument("--num_gpus", type=int, default=1, help="GPUs training together")
    parser.add_argument("--strategy", choices=STRATEGIES, help="how the GPUs share the model (default ddp, or single)")
    parser.add_argument("--model_name_or_path", help="model id or folder, in place of the recipe's")
    parser.add_argument(
        "--prompt_length",
        type=int,
        default=None,
        help="prompt tokens (default: from the recipe's datasets, reson.core.memory.PROMPT_TOKENS)",
    )
    parser.add_argument("--dtype", help="weights' dtype, in place of the recipe's (bfloat16, float32, auto)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (bytes)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args, fields = build_parser().parse_known_args(argv)
    with own_stdout() as out:
        return _main(args, fields, out)


def _main(args: argparse.Namespace, fields: list[str], out) -> int:
    try:
        if args.num_gpus < 1:
            raise PlanError(f"--num_gpus {args.num_gpus}: give 1 or more")
        if args.prompt_length is not None and args.prompt_length < 1:
            raise PlanError(f"--prompt_length {args.prompt_length}: give a positive number of tokens")
        gpu_bytes = resolve_gpu(args.gpu)
        overrides = ["--model_name_or_path", args.model_name_or_path] if args.model_name_or_path else []
        # the same parsing and checks as reson train, other --FIELD VALUE pairs included
        config = load_config(args.config, [*overrides, *fields], machine=False)
        model = config.model_name_or_path
        arch = models.architecture(model)
        if arch is None:
            raise PlanError(
                f"model {model!r}: neither a local folder with a config.json nor a known hub id "
                f"({', '.join(models.KNOWN_MODELS)}); pass --model_name_or_path"
            )
        settings = settings_from_config(config, args.prompt_length, args.num_gpus, args.strategy, dtype=args.dtype)
    except (PlanError, ConfigError, models.ModelPathError) as error:
        print(f"reson plan: {error}", file=sys.stderr)
        return 2
    plan = estimate(arch, settings, gpu_bytes)
    if args.json:
        print(json.dumps({"model": str(model), "gpu": args.gpu, **dataclasses.asdict(plan)}, indent=2), file=out)
    else:
        print(format_plan(plan, arch, settings, str(model), args.gpu), file=out)
    return 0 if plan.fits else 1


if __name__ == "__main__":
    sys.exit(main())
