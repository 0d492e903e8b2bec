"""What `reson train` writes at the end: the final model, and its model card (what it was trained from, how, and how
it scored on the held-out canaries)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from reson.core import folders, models
from reson.core.config import ResonConfig, model_init_kwargs, save_resolved_config
from reson.core.data import HUB_DATASETS, chat_template, format_prompt
from reson.core.jsonl import read_jsonl
from reson.core.metrics import cell, label, summarize

CANARY_ROWS = ("accuracy", "think_usage", "self_correction_rate_among_thinking", "avg_think_tokens")


def base_model_name(model: str) -> str:
    """The hub id a base model came from: the id itself, or for a local folder the id in its config.json (a model
    built here has none: then the folder)."""
    if not models.is_local(model):
        return model
    config = Path(model) / "config.json"
    name = models.run_config(model).get("model_name_or_path") if config.is_file() else None
    return name or str(Path(model).resolve())


def lora_lines(config: ResonConfig) -> list[str]:
    """What a LoRA run's card says first: this folder is an adapter, of which rank, on which layers."""
    if not config.use_peft:
        return []
    targets = config.lora_target_modules
    on = "every linear layer (all-linear)" if targets == "all-linear" else ", ".join(targets)
    base = "4-bit" if config.load_in_4bit else str(model_init_kwargs(config)["dtype"])
    return [
        f"**LoRA**: this folder holds a rank-{config.lora_r} adapter (alpha {config.lora_alpha}"
        f"{', rsLoRA' if config.use_rslora else ''}) on {on} of the frozen {base} base, not a whole model; "
        "`reson chat`, `reson eval` and `reson convert` merge it into the base, which they load by the name in "
        "`adapter_config.json`.",
        "",
    ]


def model_card(config: ResonConfig, emergence_file: Path) -> str:
    """The README.md of a trained model: base model, recipe, rewards, the canaries' held-out results and usage."""
    base = base_model_name(config.model_name_or_path)
    names = [HUB_DATASETS[d["name"]][0] if d["name"] in HUB_DATASETS else d["name"] for d in config.datasets]
    datasets = ", ".join(
        f"{n} ({d['split']}, weight {d['weight']})" for n, d in zip(names, config.datasets, strict=True)
    )
    weights = config.reward_weights or [1.0] * len(config.rewards)
    records = read_jsonl(emergence_file).records
    steps = sorted({r["step"] for r in records})
    lines = [
        "---",
        f"base_model: {base}" if not models.is_local(base) else "base_model: null",
        f"library_name: {'peft' if config.use_peft else 'transformers'}",
        "tags: [reson, grpo, r1-zero, trl" + (", lora]" if config.use_peft else "]"),
        "---",
        "",
        f"# {Path(config.output_dir).name}",
        "",
        f"Trained from **{base}** with pure reinforcement learning (GRPO, TRL) by reson-llm, DeepSeek-R1-Zero style: "
        "no supervised reasoning data.",
        "",
        *lora_lines(config),
        f"- data: {datasets}; {config.max_steps} steps of {config.generation_batch_size // config.num_generations} "
        f"prompts x {config.num_generations} completions up to {config.max_completion_length} tokens",
        f"- rewards: {', '.join(f'{n} x {w}' for n, w in zip(config.rewards, weights, strict=True))}"
        f" (accuracy: math-verify against the gold answer; format: the <think>...</think> structure, graded)",
        f"- loss {config.loss_type}, scale_rewards {config.scale_rewards}, beta {config.beta}, learning rate "
        f"{config.learning_rate}, max_grad_norm {config.max_grad_norm}, seed {config.seed}",
        "- the whole resolved recipe: `train_config.yaml` beside the weights",
        "",
    ]
    if len(steps) >= 1:
        first = summarize([r for r in records if r["step"] == steps[0]])
        last = summarize([r for r in records if r["step"] == steps[-1]])
        lines += [
            f"## Held-out canaries ({first['count']} {config.canary_dataset or config.datasets[0]['name']} "
            f"{config.canary_split} problems, sampled as in training)",
            "",
            f"| metric | step {steps[0]} | step {steps[-1]} |",
            "|---|---:|---:|",
        ]
        lines += [f"| {label(k)} | {cell(k, first[k])} | {cell(k, last[k])} |" for k in CANARY_ROWS]
        lines += ["", "Full evaluations: `reson eval` and `reson compare` (the project's README).", ""]
    lines += [
        "## Use",
        "",
        "The model was trained on a plain-text prompt, not a chat format; `chat_template.jinja` renders it, so chat",
        "tools prompt it as it was trained. The prompt for a question:",
        "",
        "```text",
        format_prompt("{question}", config.template)
        if config.template != "chat"
        else "(the tokenizer's chat template)",
        "```",
        "",
        "```bash",
        f"reson chat --model_name_or_path {config.output_dir}",
        f"reson convert --model_name_or_path {config.output_dir} --quantize 4bit   # MLX, for a Mac",
        "```",
        "",
    ]
    return "\n".join(lines)


def _weights_last(path: Path) -> tuple[tuple[bool, bool], str]:
    """Moved into place in this order: the files that describe the model, the weights, their shard index: the weights
    that mark a finished run arrive only once everything else is there."""
    return (path.name.endswith(".index.json"), path.suffix in (".safetensors", ".bin")), path.name


def save_final_model(trainer, config: ResonConfig, note: str = "") -> None:
    """The final model and tokenizer (given a chat template that renders the training prompt, so chat tools prompt
    the model as it was trained), the trainer state, and on the main process the resolved config and the card."""
    template = chat_template(config.template)
    if template is not None:
        trainer.processing_class.chat_template = template
    output_dir = Path(config.output_dir)
    staging = output_dir / ".final-model"  # written whole first: a save cut short leaves no partial model in place
    main = trainer.is_world_process_zero()  # every process takes part in saving (ZeRO-3 gathers), the main one writes
    try:
        trainer.save_model(str(staging))
        if main:
            for path in sorted(staging.iterdir(), key=_weights_last):
                os.replace(path, output_dir / path.name)
    finally:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
    trainer.save_state()
    if trainer.is_world_process_zero():
        save_resolved_config(config, note=note)
        card = model_card(config, Path(config.output_dir) / folders.EMERGENCE_FILE)
        folders.write_text(Path(config.output_dir) / "README.md", card)
