"""LoRA adapters once trained: merged into their base to serve and export them, and for TRL's weight sync to vLLM.

A LoRA run's folder holds the adapter (peft's ``adapter_config.json`` and ``adapter_model.safetensors``) and the name
of the base model it was trained on (``base_model_name_or_path``). Every backend serves it merged: ``load_merged`` for
transformers, in memory; ``save_merged`` for vLLM, which cannot load an adapter folder, into a temporary folder; and
for `reson convert`, which turns the merged model into MLX (or, with ``--merge_only``, keeps the transformers folder).

Merging adds ``scaling * B @ A`` to each adapted weight ``W`` in fp32 and rounds once to W's dtype, out of place
(``merged_weight``). peft's own merge adds the update in W's dtype in place, and its unmerge subtracts it again; in
16-bit the two do not cancel, so TRL's weight sync to vLLM, which merges and unmerges once a step, moves the frozen
base a little every step (TRL #6688). ``vllm_weights`` is that sync's iterator with the out-of-place merge: the base
stays bit for bit what it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from reson.core import models

ADAPTER = "default"  # the adapter name peft gives the one adapter TRL trains


def lora_layers(model) -> dict[str, object]:
    """The LoRA-wrapped layers of a peft model, by module name."""
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def merged_weight(layer, adapter: str = ADAPTER):
    """``W + scaling * B @ A`` of one LoRA-wrapped linear layer, summed in fp32 and rounded once to W's dtype; W is
    left as it is."""
    if adapter in layer.lora_variant:
        raise ValueError(f"{type(layer.lora_variant[adapter]).__name__} adapters are not merged here: plain LoRA only")
    weight = layer.get_base_layer().weight  # [out, in]
    delta = layer.lora_B[adapter].weight.float() @ layer.lora_A[adapter].weight.float()  # [out, r] @ [r, in]
    if layer.fan_in_fan_out:
        delta = delta.T
    return (weight.float() + delta * layer.scaling[adapter]).to(weight.dtype)


def vllm_weights(model, vllm_name: Callable[..., str]) -> Iterator[tuple[str, object]]:
    """What TRL's ``VLLMGeneration._iter_named_params`` yields for a PEFT model on one process, each adapted weight
    merged out of place: (the name vLLM's ``load_weights`` takes, the tensor). ``vllm_name`` is TRL's own renaming
    (``VLLMGeneration._fix_param_name_to_vllm``)."""
    import torch

    layers = lora_layers(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if model.prefix in name or "original_module" in name:  # the adapter's own tensors, as TRL skips them
                continue
            owner = name.removesuffix(".base_layer.weight")
            tensor = merged_weight(layers[owner]) if owner != name and owner in layers else param.data
            name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            yield vllm_name(name, extra_prefixes=["modules_to_save.default."]), tensor


def load_merged(adapter_dir: str | Path, dtype="auto"):
    """The adapter's base model (loaded in ``dtype``, by default its own) with the adapter merged, as a plain
    transformers model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(models.adapter_base(adapter_dir), dtype=dtype)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.get_base_layer().weight.copy_(merged_weight(layer))
    return model.unload()  # the base model, its weights merged, the adapter modules gone


def save_merged(adapter_dir: str | Path, output_dir: str | Path) -> Path:
    """Write the merged model in its base's dtype, with the run's tokenizer (and chat template), to ``output_dir``."""
    output_dir = Path(output_dir)
    load_merged(adapter_dir).save_pretrained(output_dir)
    models.load_tokenizer(str(adapter_dir)).save_pretrained(output_dir)
    return output_dir
