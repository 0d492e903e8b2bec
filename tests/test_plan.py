"""The memory planner: each term against a hand computation, the fits decision, the advice, and the command line."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reson.core import memory
from reson.core.config import RECIPES, load_config
from reson.core.machine import visible_gpu
from reson.core.memory import GIB, Settings, estimate
from reson.core.models import KNOWN_MODELS, Architecture, architecture
from reson.tools import plan
from reson.tools.install_plan import VLLM_OFF

# A made-up decoder small enough to count by hand: h=8, L=2, a=2 heads, k=1 kv head, d=4, I=16, V=32, tied.
TINY = Architecture(
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    intermediate_size=16,
    vocab_size=32,
    tie_word_embeddings=True,
)
# b=2 completions a micro-batch, G=4 generated a round, prompt 4 + completion 6 tokens, bf16 weights and compute
BASE = Settings(
    per_device_train_batch_size=2,
    generation_batch_size=4,
    num_generations=2,
    max_completion_length=6,
    prompt_length=4,
    gradient_checkpointing=False,
    weight_bytes=2,
    compute_bytes=2,
)
GPU = 10**9  # large enough to fit; the fits tests pick their own size

# Parameters: embeddings 32*8 = 256 (tied, counted once), final norm 8; per layer q 8*8+8 = 72, k and v
# 2*(8*4+4) = 72, o 8*8 = 64, MLP 3*8*16 = 384, two norms 16: 608 a layer, 1216 for two.
PARAMS = 256 + 8 + 2 * (72 + 72 + 64 + 384 + 16)
# One layer's saved activations per token: norms 2*(4*8 + 2*8 + 2*8) = 128; q, k, v, out 2*(2*8 + 2*4) = 48;
# logsumexp 4*2 = 8; o_proj input 2*8 = 16; MLP 4*2*16 = 128.
LAYER = 128 + 48 + 8 + 16 + 128
TOKENS = 2 * (4 + 6)  # micro-batch sequences x (prompt + completion)
FINAL_NORM = TOKENS * (4 * 8 + 2 * 8 + 2 * 8)


def test_parameter_count_by_hand():
    assert PARAMS == 1480
    assert TINY.num_params == PARAMS


@pytest.mark.parametrize(
    "model, published",
    [
        # The parameter counts on each model's hub page
        ("Qwen/Qwen2.5-0.5B", 494_032_768),
        ("Qwen/Qwen2.5-1.5B", 1_543_714_304),
        ("Qwen/Qwen2.5-3B", 3_085_938_688),
        ("Qwen/Qwen2.5-7B", 7_615_616_512),  # untied: the LM head counts separately
    ],
)
def test_parameter_count_of_known_models(model, published):
    assert KNOWN_MODELS[model].num_params == published


def test_each_term_by_hand():
    p = estimate(TINY, BASE, GPU)
    assert p.terms["weights"] == 2 * 1480
    assert p.terms["gradients"] == 2 * 1480
    assert p.terms["optimizer states (AdamW moments)"] == 2 * 2 * 1480  # two moments in the weights' dtype
    assert p.terms["master weights (fp32)"] == 0  # plain PyTorch keeps no fp32 copy
    assert p.terms["reference model (beta > 0)"] == 0  # beta 0: no reference model
    assert LAYER == 328
    assert p.activations_without_checkpointing == TOKENS * 2 * 328 + FINAL_NORM == 14400
    # With checkpointing: each layer's input (2 bytes x h) plus one layer recomputed at a time
    assert p.activations_with_checkpointing == TOKENS * (2 * 2 * 8 + 328) + FINAL_NORM == 8480
    assert p.terms["activations"] == 14400  # checkpointing is off
    # Fused LM head: a 12-token x 32-vocab tile in bf16, the fp32 LM-head gradient 4*32*8, hidden 12 x 8 at 4+2 bytes
    n = 2 * 6
    assert p.terms["loss logits (fused LM head)"] == 2 * n * 32 + 4 * 32 * 8 + 6 * n * 8 == 2368
    assert p.unfused_logits == 2 * 4 * n * 32  # fp32 logits plus their log-softmax
    # KV cache: k and v, 2 layers, 4 values per token, 10 tokens, 4 sequences, 2 bytes
    assert p.terms["generation KV cache"] == 2 * 2 * 4 * 10 * 4 * 2 == 1280
    # Prefill's widest layer over 4 x 4 prompt tokens, 2 bytes x (3*16 + 4*8); sampling logits 3 x 4 bytes x 4 x 32
    assert p.terms["generation prefill and sampling"] == 4 * 4 * 2 * (48 + 32) + 3 * 4 * 4 * 32 == 4096
    assert p.terms["vLLM reservation (colocate)"] == 0
    assert p.terms["autocast 16-bit weight copies"] == 0  # 16-bit weights: nothing to cast
    assert p.terms["CUDA context and workspaces"] == GIB
    persistent = GIB + 2960 + 5920
    assert p.generation_phase == persistent + 1280 + 4096
    assert p.training_phase == persistent + 2960 + 14400 + 2368
    assert p.peak == max(p.generation_phase, p.training_phase) == GIB + 28608


def test_checkpointing_switches_the_activation_term():
    p = estimate(TINY, dataclasses.replace(BASE, gradient_checkpointing=True), GPU)
    assert p.terms["activations"] == 8480
    assert p.training_phase == GIB + 2960 + 5920 + 2960 + 8480 + 2368


def test_fp32_weights_under_16_bit_autocast_keep_a_16_bit_copy_of_each():
    """TRL runs the forward under accelerator.autocast(): torch keeps every cast weight until the forward ends."""
    fp32 = estimate(TINY, dataclasses.replace(BASE, weight_bytes=4, compute_bytes=2), GPU)
    assert fp32.terms["autocast 16-bit weight copies"] == 2 * 1480
    assert fp32.training_phase - fp32.terms["autocast 16-bit weight copies"] == (
        GIB
        + 4 * 1480
        + 2 * 4 * 1480
        + 4 * 1480
        + fp32.terms["activations"]
        + fp32.terms["loss logits (fused LM head)"]
    )
    no_autocast = estimate(TINY, dataclasses.replace(BASE, weight_bytes=4, compute_bytes=4), GPU)
    assert no_autocast.terms["autocast 16-bit weight copies"] == 0


def test_fp32_weights_train_in_bf16_with_fp32_states():
    s = dataclasses.replace(BASE, weight_bytes=4, compute_bytes=2)
    p = estimate(TINY, s, GPU)
    assert p.terms["weights"] == p.terms["gradients"] == 4 * 1480
    assert p.terms["optimizer states (AdamW moments)"] == 8 * 1480
    # The residual stream and the norms' inputs are fp32 now: norms 2*(32 + 32 + 16), attention 48+8, o_proj 16,
    # MLP 128
    assert p.activations_without_checkpointing == TOKENS * 2 * (160 + 56 + 16 + 128) + TOKENS * (32 + 32 + 16)


def test_eight_bit_adam_takes_two_bytes_a_parameter():
    p = estimate(TINY, dataclasses.replace(BASE, optim="adamw_8bit"), GPU)
    assert p.terms["optimizer states (AdamW moments)"] == 2 * 1480


def test_reference_model_when_beta_is_positive():
    p = estimate(TINY, dataclasses.replace(BASE, beta=0.04), GPU)
    assert p.terms["reference model (beta > 0)"] == 2 * 1480
    assert p.generation_phase == GIB + 2960 + 5920 + 2960 + 1280 + 4096


def test_zero3_shards_everything_and_gathers_the_model_to_generate():
    s = dataclasses.replace(BASE, num_gpus=4, strategy="zero3")
    p = estimate(TINY, s, GPU)
    assert p.terms["weights"] == 2 * 1480 // 4
    assert p.terms["gradients"] == 2 * 1480 // 4
    assert p.terms["optimizer states (AdamW moments)"] == 8 * 1480 // 4  # DeepSpeed keeps fp32 moments
    assert p.terms["master weights (fp32)"] == 4 * 1480 // 4
    persistent = GIB + 740 + 2960 + 1480
    assert p.generation_phase == persistent + (2960 - 740) + 1280 + 4096


def test_zero2_shards_gradients_and_optimizer_not_weights():
    p = estimate(TINY, dataclasses.replace(BASE, num_gpus=2, strategy="zero2"), GPU)
    assert p.terms["weights"] == 2960
    assert p.terms["gradients"] == 1480
    assert p.terms["optimizer states (AdamW moments)"] == 8 * 1480 // 2
    assert p.terms["master weights (fp32)"] == 4 * 1480 // 2


def test_ddp_replicates_everything():
    single = estimate(TINY, BASE, GPU)
    ddp = estimate(TINY, dataclasses.replace(BASE, num_gpus=8, strategy="ddp"), GPU)
    assert ddp.terms == single.terms


def test_vllm_colocate_reserves_its_share_for_the_whole_run():
    s = dataclasses.replace(BASE, use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.25)
    p = estimate(TINY, s, 100_000)
    assert p.terms["vLLM reservation (colocate)"] == 25_000
    assert "generation KV cache" not in p.terms  # vLLM's KV cache lives inside its reservation
    assert p.training_phase == GIB + 25_000 + 2960 + 5920 + 2960 + 14400 + 2368
    assert p.generation_phase == GIB + 25_000 + 2960 + 5920


def test_vllm_sleep_mode_releases_the_reservation_while_training():
    s = dataclasses.replace(BASE, use_vllm=True, vllm_gpu_memory_utilization=0.25, vllm_enable_sleep_mode=True)
    p = estimate(TINY, s, 100_000)
    assert p.training_phase == GIB + 2960 + 5920 + 2960 + 14400 + 2368
    assert p.generation_phase == GIB + 2960 + 5920 + 25_000


def test_vllm_server_puts_nothing_on_the_training_gpu():
    p = estimate(TINY, dataclasses.replace(BASE, use_vllm=True, vllm_mode="server"), GPU)
    assert p.terms["vLLM reservation (colocate)"] == 0
    assert p.generation_phase == GIB + 2960 + 5920


def test_fits_at_ninety_percent_of_the_gpu():
    peak = estimate(TINY, BASE, GPU).peak  # 1 GiB + 28608 bytes
    smallest = -(-peak * 10 // 9)  # the smallest GPU whose 90% holds the peak
    assert estimate(TINY, BASE, smallest).fits
    tight = estimate(TINY, BASE, smallest - 1)
    assert not tight.fits and tight.peak == peak
    assert tight.advice  # says what to change


def _peak(settings: Settings) -> int:
    return estimate(TINY, settings, GPU).peak


def _need(settings: Settings) -> int:
    """The smallest GPU that fits `settings`."""
    return int(estimate(TINY, settings, GPU).peak / 0.9) + 1


def test_advice_names_the_first_knob_that_is_enough():
    # Generation dominates (64 sequences in flight): fewer generations per prompt and shorter completions both help,
    # and num_generations comes first in the list
    s = dataclasses.replace(BASE, per_device_train_batch_size=1, num_generations=8, generation_batch_size=64)
    s = dataclasses.replace(s, gradient_checkpointing=True, max_completion_length=256)
    halved = dataclasses.replace(s, num_generations=4, generation_batch_size=32)
    p = estimate(TINY, s, _need(halved))
    assert p.generation_phase > p.training_phase and not p.fits
    assert len(p.advice) == 1 and p.advice[0].startswith(
        "turn num_generations 8 -> 4 (same prompts per step: 64 -> 32"
    )


def test_advice_skips_knobs_that_cannot_turn():
    # num_generations 2 cannot halve, 64 tokens is the shortest completion, one completion a batch: only checkpointing
    s = dataclasses.replace(BASE, per_device_train_batch_size=1, max_completion_length=64, generation_batch_size=2)
    with_ckpt = dataclasses.replace(s, gradient_checkpointing=True)
    gpu = _need(with_ckpt)
    advice = estimate(TINY, s, gpu).advice
    assert advice == [
        f"turn gradient_checkpointing false -> true first: predicted peak {memory.gib(_peak(with_ckpt))} GiB"
    ]


def test_advice_walks_the_list_when_no_single_knob_is_enough():
    s = dataclasses.replace(BASE, max_completion_length=512, per_device_train_batch_size=4, generation_batch_size=4)
    both = dataclasses.replace(s, max_completion_length=128, per_device_train_batch_size=2)
    gpu = _need(both)
    for field, turn in memory.KNOBS:  # no knob alone gets there
        changed = s
        while (nxt := turn(changed)) is not None:
            changed = nxt
        assert not estimate(TINY, changed, gpu).fits, field
    advice = estimate(TINY, s, gpu).advice
    assert advice[0] == "no single knob is enough; in order:"
    assert advice[1].startswith("max_completion_length 512 -> 64")
    assert advice[2].startswith("per_device_train_batch_size 4 -> ")


def test_advice_when_nothing_fits_points_past_the_list():
    s = dataclasses.replace(BASE, use_vllm=True, vllm_gpu_memory_utilization=0.3)
    advice = estimate(TINY, s, 4_000).advice  # the weights and optimizer alone are larger than 90% of 4 kB
    assert advice[0].startswith("no knob in the out-of-memory list makes it fit")
    assert "vllm_gpu_memory_utilization=0.3" in advice[1]


# ---------------------------------------------------------------------------------------------------------------
# LoRA: a frozen base, trained adapters

# Rank 2 on every linear layer of TINY: (in + out) of q 8+8, k 8+4, v 8+4, o 8+8, gate 8+16, up 8+16, down 16+8 = 128,
# times r = 2, in each of 2 layers.
ADAPTER = 2 * 2 * 128
LORA = dataclasses.replace(BASE, lora_rank=2)  # a 16-bit base under 16-bit autocast, fp32 adapters
# Per token and layer, each adapter keeps a 2-byte copy of its input (8 for six layers, 16 for down_proj) and its
# 2-wide output, 2 * (6*8 + 16 + 7*2), while the frozen layers no longer keep the two norms' outputs, o_proj's input
# and down_proj's, 2 * (3*8 + 16).
LORA_LAYER = LAYER + 2 * (6 * 8 + 16 + 7 * 2) - 2 * (3 * 8 + 16)


def test_adapter_parameters_by_hand():
    assert ADAPTER == 512 and TINY.lora_params("all-linear", 2) == ADAPTER
    assert TINY.lora_params(["q_proj", "self_attn.v_proj"], 2) == 2 * 2 * (16 + 12)  # a dotted name by its last part
    # Qwen2.5-3B, rank 16 on all seven: 36 layers x 16 x (4096 + 2304 + 2304 + 4096 + 3 x 13056)
    assert KNOWN_MODELS["Qwen/Qwen2.5-3B"].lora_params("all-linear", 16) == 36 * 16 * 51968 == 29_933_568


def test_lora_terms_by_hand():
    p = estimate(TINY, LORA, GPU)
    assert p.terms["base weights (frozen)"] == 2 * 1480
    assert p.terms["LoRA adapters"] == 4 * 512  # fp32
    assert p.terms["adapter gradients"] == 4 * 512  # no gradient for the frozen base
    assert p.terms["adapter AdamW moments"] == 8 * 512
    assert p.terms["autocast 16-bit weight copies"] == 2 * 512  # only the adapters, the weights that train
    assert "weights" not in p.terms and "reference model (beta > 0)" not in p.terms
    assert LORA_LAYER == 328 + 156 - 80
    assert p.activations_without_checkpointing == TOKENS * 2 * 404 + FINAL_NORM == 17_440
    assert p.activations_with_checkpointing == TOKENS * (2 * 2 * 8 + 404) + FINAL_NORM == 10_000
    n = 2 * 6  # the LM head is frozen: no fp32 head gradient, 4 x 32 x 8, in the fused head's term
    assert p.terms["loss logits (fused LM head)"] == 2 * n * 32 + 6 * n * 8 == 1344
    assert p.terms["generation KV cache"] == 1280  # generation is the full model's: the unmerged adapter adds little
    persistent = GIB + 2960 + 2048 + 4096
    assert p.generation_phase == persistent + 1280 + 4096
    assert p.training_phase == persistent + 2048 + 17_440 + 1344 + 1024
    assert p.peak == max(p.generation_phase, p.training_phase)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_lora_layers_activation_term_bounds_what_autograd_keeps(dtype):
    """The bytes one decoder layer's forward leaves for backward with LoRA on every linear layer (autograd's saved
    tensors, weights and their 16-bit copies left out), under bf16 autocast on the CPU: `layer_activation_bytes` is
    at most 15% above them and never below. What it over-counts is `A`'s residual-stream input to each norm, which
    autograd does not keep (nor, measured the same way, for full training)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch = Architecture(64, 2, 4, 2, 256, 300, True)
    config = Qwen2Config(
        vocab_size=300, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype))
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    weights = {p.data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    batch, length = 4, 128

    def keep(t):  # per-token tensors lead with the batch, or the batch's tokens; weights and their casts do not
        if t.data_ptr() not in weights and t.dim() > 1 and t.shape[0] in (batch, batch * length):
            kept[t.data_ptr()] = t.numel() * t.element_size()
        return t

    layer = model.get_decoder().layers[0]
    hidden = torch.randn(batch, length, 64, dtype=model.dtype, requires_grad=True)
    positions = model.get_decoder().rotary_emb(hidden, torch.arange(length)[None])
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        layer(hidden, position_embeddings=positions, attention_mask=None)
    s = Settings(1, 1, 2, 1, weight_bytes=4 if dtype == "float32" else 2, compute_bytes=2, lora_rank=8)
    measured = sum(kept.values()) / (batch * length)
    assert measured <= memory.layer_activation_bytes(arch, s) <= 1.15 * measured


def test_lora_needs_no_reference_copy_whatever_beta():
    """TRL computes the reference log-probs with the adapter switched off: no second model."""
    assert estimate(TINY, dataclasses.replace(LORA, beta=0.04), GPU).terms == estimate(TINY, LORA, GPU).terms


def test_lora_on_a_4_bit_base_by_hand():
    # Linear weights 8*8 + 2*(8*4) + 8*8 + 2*(8*16) + 16*8 = 576 a layer, 1152 in all, at half a byte plus an fp32
    # scale per 64; the other 328 parameters (embeddings, norms, biases) stay 16-bit. TRL casts the adapters to bf16.
    p = estimate(TINY, dataclasses.replace(LORA, load_in_4bit=True, adapter_bytes=2), GPU)
    assert p.terms["base weights (frozen)"] == 1152 // 2 + 1152 * 4 // 64 + 2 * 328 == 1304
    assert p.terms["LoRA adapters"] == p.terms["adapter gradients"] == 2 * 512
    assert p.terms["adapter AdamW moments"] == 4 * 512
    assert p.terms["autocast 16-bit weight copies"] == 0  # bf16 adapters: nothing to cast
    nested = estimate(TINY, dataclasses.replace(LORA, load_in_4bit=True, nested_quant=True), GPU)
    assert nested.terms["base weights (frozen)"] == int(1152 * (0.5 + (1 + 4 / 256) / 64)) + 2 * 328 == 1250


def test_lora_settings_come_from_the_config(tmp_path):
    config = _config(
        tmp_path,
        use_peft=True,
        lora_r=8,
        lora_dropout=0.0,
        lora_target_modules=["q_proj", "v_proj"],
        dtype="bfloat16",
    )
    s = memory.settings_from_config(config)
    assert (s.lora_rank, s.lora_targets, s.weight_bytes, s.adapter_bytes) == (8, ("q_proj", "v_proj"), 2, 4)
    full = memory.settings_from_config(_config(tmp_path))
    assert full.lora_rank == 0
    with pytest.raises(memory.PlanError, match="LoRA is planned on one GPU or under ddp"):
        memory.settings_from_config(config, num_gpus=2, strategy="zero3")


def test_plan_shows_the_t4_lora_recipe_term_by_term(capsys):
    assert plan.main(["--config", "grpo_qwen2.5_3b_lora_16gb", "--gpu", "t4-16gb"]) == 0
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-3B: 3.09B parameters, 16-bit frozen weights" in out
    assert "LoRA rank 16 on every linear layer: 29.9M trained parameters (0.97% of the model) in fp32" in out
    for term in ("base weights (frozen)", "LoRA adapters", "adapter gradients", "adapter AdamW moments"):
        assert re.search(rf"^{re.escape(term)} +\d+\.\d$", out, re.M), term
    assert "generation by transformers" in out and ": fits" in out


# ---------------------------------------------------------------------------------------------------------------
# Recipes and models


def _config(tmp_path, **values):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": "Qwen/Qwen2.5-3B", "output_dir": str(tmp_path), **values}))
    return load_config(path, machine=False)


def test_settings_come_from_the_parsed_config_with_trls_defaults(tmp_path):
    s = memory.settings_from_config(_config(tmp_path))
    assert (s.per_device_train_batch_size, s.generation_batch_size, s.num_generations) == (8, 8, 8)
    assert s.max_completion_length == 512 and s.gradient_checkpointing  # GRPOConfig 1.16's own defaults
    assert s.weight_bytes == 4  # GRPOTrainer loads a model given by name in float32 unless told otherwise
    assert s.compute_bytes == 2  # bf16 defaults to True


def test_generation_batch_and_dtype(tmp_path):
    config = _config(
        tmp_path,
        per_device_train_batch_size=6,
        gradient_accumulation_steps=4,
        num_generations=6,
        model_init_kwargs={"dtype": "auto"},
    )
    s = memory.settings_from_config(config, prompt_length=300)
    assert s.generation_batch_size == 24 and s.weight_bytes == 2 and s.prompt_length == 300
    # TRL's generation_batch_size counts completions over all processes
    s = memory.settings_from_config(_config(tmp_path, generation_batch_size=64), num_gpus=4, strategy="zero2")
    assert s.generation_batch_size == 16


def test_the_prompt_length_comes_from_the_recipes_datasets(tmp_path):
    """TRL pads a batch to its longest prompt and no longer truncates prompts: plan for the datasets' long ones."""
    gsm8k = _config(tmp_path, datasets=[{"name": "gsm8k"}])
    mixed = _config(tmp_path, datasets=[{"name": "gsm8k"}, {"name": "math", "weight": 0.5}])
    assert memory.settings_from_config(gsm8k).prompt_length == memory.PROMPT_TOKENS["gsm8k"] == 320
    assert memory.settings_from_config(mixed).prompt_length == memory.PROMPT_TOKENS["math"] == 512
    assert memory.settings_from_config(mixed, prompt_length=100).prompt_length == 100  # --prompt_length wins


def test_vllm_kv_cache_room_by_hand():
    """Qwen2.5-3B: 36 layers, 2 KV heads of 128: 2 x 36 x 256 x 2 bytes = 36 KiB of keys and values a token."""
    arch = KNOWN_MODELS["Qwen/Qwen2.5-3B"]
    s = dataclasses.replace(BASE, use_vllm=True, vllm_gpu_memory_utilization=0.17)
    gpu = plan.GPUS["h100-80gb"]
    room = int(0.17 * gpu) - 2 * arch.num_params - GIB  # the share, less bf16 weights and CUDA graphs
    assert memory.vllm_kv_tokens(arch, s, gpu) == room // (36 * 1024)
    share = memory.vllm_share_for(arch, s, gpu, 196_608)
    bigger = dataclasses.replace(s, vllm_gpu_memory_utilization=share)
    smaller = dataclasses.replace(s, vllm_gpu_memory_utilization=share - 0.01)
    assert memory.vllm_kv_tokens(arch, bigger, gpu) >= 196_608 > memory.vllm_kv_tokens(arch, smaller, gpu)


def test_the_3b_recipes_vllm_share_holds_a_whole_generation_round():
    config = load_config("grpo_qwen2.5_3b_h100", machine=False)
    arch = KNOWN_MODELS[config.model_name_or_path]
    result = estimate(arch, memory.settings_from_config(config), plan.GPUS["h100-80gb"])
    assert result.fits and result.vllm_kv_tokens >= result.vllm_kv_needed == 96 * (512 + 1536)


def test_local_model_folder_reads_config_json(tmp_path):
    config = {
        "hidden_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 16,
        "vocab_size": 32,
        "tie_word_embeddings": True,
        "dtype": "float32",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert architecture(str(tmp_path)) == TINY
    assert architecture("someone/unknown-model") is None


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda tmp: plan.resolve_gpu("rtx9090"), "h100-80gb, h100-94gb"),
        (lambda tmp: memory.settings_from_config(_config(tmp), dtype="int3"), "dtype 'int3'"),
        (lambda tmp: memory.settings_from_config(_config(tmp), num_gpus=2, strategy="single"), "choose ddp"),
    ],
)
def test_bad_input_says_what_to_change(call, match, tmp_path):
    with pytest.raises(memory.PlanError, match=match):
        call(tmp_path)


# Every GPU recipe on the GPUs it is written for (the notebook gives each recipe these).
RECIPE_GPUS = [
    ("grpo_qwen2.5_3b_h100", "h100-80gb"),
    ("grpo_qwen2.5_3b_countdown", "h100-80gb"),
    ("grpo_qwen2.5_3b_h100", "a100-80gb"),
    ("grpo_qwen2.5_3b_h100", "h200-141gb"),
    ("grpo_qwen2.5_1.5b", "a100-80gb"),
    ("grpo_qwen2.5_1.5b_40gb", "a100-40gb"),
    ("grpo_qwen2.5_1.5b_40gb", "l40s-48gb"),
    ("grpo_qwen2.5_0.5b_16gb", "t4-16gb"),
    ("grpo_qwen2.5_0.5b_16gb", "l4-24gb"),
    ("grpo_qwen2.5_3b_lora_24gb", "l4-24gb"),
    ("grpo_qwen2.5_3b_lora_24gb", "a10g-24gb"),
    ("grpo_qwen2.5_3b_lora_24gb", "rtx4090-24gb"),
    ("grpo_qwen2.5_3b_lora_16gb", "t4-16gb"),
    ("grpo_qwen2.5_3b_lora_24gb_countdown", "l4-24gb"),
    ("grpo_qwen2.5_3b_lora_24gb_countdown", "rtx4090-24gb"),
]


def test_every_shipped_gpu_recipe_is_in_the_table():
    gpu_recipes = {p.stem for p in RECIPES.glob("grpo_qwen2.5_*.yaml")}
    assert gpu_recipes == {recipe for recipe, _ in RECIPE_GPUS}


@pytest.mark.parametrize(("recipe", "gpu"), RECIPE_GPUS)
def test_every_gpu_recipe_fits_its_gpu(recipe, gpu, capsys):
    assert plan.main(["--config", recipe, "--gpu", gpu]) == 0, capsys.readouterr().out


# What the notebook runs on each GPU, from the line nvidia-smi prints (name, MiB, compute capability, driver): the
# largest model that fits, in the precision the GPU has, checked against the planner's table entry for that GPU.
GPU_CHOICES = [
    ("NVIDIA H200, 143771, 9.0, 580.82.07", "h200-141gb", "grpo_qwen2.5_3b_h100"),
    ("NVIDIA H100 80GB HBM3, 81559, 9.0, 580.82.07", "h100-80gb", "grpo_qwen2.5_3b_h100"),
    ("NVIDIA A100-SXM4-80GB, 81920, 8.0, 580.82.07", "a100-80gb", "grpo_qwen2.5_3b_h100"),
    ("NVIDIA A100-SXM4-40GB, 40960, 8.0, 580.82.07", "a100-40gb", "grpo_qwen2.5_1.5b_40gb"),
    ("NVIDIA L40S, 46068, 8.9, 580.82.07", "l40s-48gb", "grpo_qwen2.5_1.5b_40gb"),
    ("Tesla V100-SXM2-32GB, 32768, 7.0, 580.82.07", "v100-32gb", "grpo_qwen2.5_1.5b_40gb"),
    ("NVIDIA L4, 23034, 8.9, 580.82.07", "l4-24gb", "grpo_qwen2.5_3b_lora_24gb"),  # 3B with LoRA before 0.5B in full
    ("Tesla T4, 15360, 7.5, 550.54.15", "t4-16gb", "grpo_qwen2.5_3b_lora_16gb"),  # the same, without vLLM and in fp16
]


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """Put an `nvidia-smi` on PATH that prints the given line for any query."""

    def install(line: str) -> None:
        script = tmp_path / "nvidia-smi"
        script.write_text(f"#!/bin/sh\necho '{line}'\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    return install


@pytest.mark.parametrize(("line", "gpu", "expected"), GPU_CHOICES)
def test_the_recipe_for_each_gpu_is_the_largest_that_fits(line, gpu, expected, fake_nvidia_smi, capsys):
    fake_nvidia_smi(line)
    found = visible_gpu()
    assert found.memory == plan.GPUS[gpu] and found.name == line.split(",")[0]
    recipe, overrides = plan.choose_recipe(found.memory, found.native_bf16)
    assert recipe == expected
    assert plan.main(["--config", recipe, "--gpu", gpu]) == 0, capsys.readouterr().out  # the planner agrees
    config = load_config(recipe, argv=overrides, machine=False)
    if found.native_bf16:  # 16-bit training in the precision the GPU runs natively
        assert config.bf16 and not config.fp16
    else:
        assert config.fp16 and not config.bf16
    if config.use_peft:  # and a frozen 16-bit base in that precision too
        assert config.dtype == ("bfloat16" if found.native_bf16 else "float16")


def test_a_lora_recipe_chosen_on_another_gpu_follows_its_precision():
    """A card of a T4's memory with native bf16, where the 24 GB recipe does not fit: the T4 recipe in bf16, with a
    bf16 base (an fp16 base under bf16 autocast would be recast at every step, and the config refuses it)."""
    recipe, overrides = plan.choose_recipe(plan.GPUS["t4-16gb"], native_bf16=True)
    assert recipe == "grpo_qwen2.5_3b_lora_16gb"
    assert overrides == ["--bf16", "true", "--fp16", "false", "--dtype", "bfloat16"]
    config = load_config(recipe, argv=overrides, machine=False)
    assert config.bf16 and config.dtype == "bfloat16"


def test_no_gpu_when_nvidia_smi_is_missing_fails_or_devices_are_hidden(fake_nvidia_smi, monkeypatch, tmp_path):
    fake_nvidia_smi("NVIDIA L4, 23034, 8.9, 580.82.07")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpu() is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert visible_gpu() is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert visible_gpu() is None


def test_choose_recipe_gives_none_below_the_smallest_recipe():
    assert plan.choose_recipe(8 * GIB, native_bf16=True) is None


@pytest.mark.parametrize(
    ("gpu", "native_bf16", "expected"),
    [
        # no vLLM on the machine: the vLLM recipes are sized generating with transformers, and still fit
        ("h100-80gb", True, ("grpo_qwen2.5_3b_h100", list(VLLM_OFF))),
        ("a100-40gb", True, ("grpo_qwen2.5_1.5b_40gb", list(VLLM_OFF))),
        # a vLLM recipe with a twin made for transformers generation gives way to it, in the GPU's precision
        ("t4-16gb", False, ("grpo_qwen2.5_3b_lora_16gb", [])),
        ("l4-24gb", True, ("grpo_qwen2.5_3b_lora_16gb", ["--bf16", "true", "--fp16", "false", "--dtype", "bfloat16"])),
    ],
)
def test_choose_recipe_without_vllm_sizes_transformers_generation(gpu, native_bf16, expected):
    assert plan.choose_recipe(plan.GPUS[gpu], native_bf16, without_vllm=VLLM_OFF) == expected


def test_each_transformers_twin_comes_after_its_vllm_recipe_and_drops_only_vllm():
    for recipe, twin in plan.TRANSFORMERS_TWIN.items():
        assert plan.RECIPE_LADDER.index(recipe) < plan.RECIPE_LADDER.index(twin)
        first, second = load_config(recipe, machine=False), load_config(twin, machine=False)
        assert first.use_vllm and not second.use_vllm
        assert (first.model_name_or_path, bool(first.use_peft)) == (second.model_name_or_path, bool(second.use_peft))


def test_the_plan_takes_recipe_fields_after_its_own_flags(capsys):
    args = ["--config", "grpo_qwen2.5_1.5b_40gb", "--gpu", "a100-40gb"]
    assert plan.main([*args, *VLLM_OFF]) == 0
    out = capsys.readouterr().out
    assert "generation by transformers" in out and "vLLM reservation" not in out and "generation KV cache" in out
    # a misspelt field is refused as `reson train` refuses it, not taken for one of the planner's flags
    assert plan.main([*args, "--use_vlm", "false"]) == 2
    assert "use_vllm" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _recipe(tmp_path, **values) -> Path:
    path = tmp_path / "recipe.yaml"
    recipe = {
        "model_name_or_path": "Qwen/Qwen2.5-1.5B",
        "model_init_kwargs": {"dtype": "bfloat16"},
        "output_dir": str(tmp_path / "out"),
        **values,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_help():
    result = subprocess.run([sys.executable, "-m", "reson", "plan", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--gpu" in result.stdout and "h200-141gb" in result.stdout


def test_cli_prints_the_breakdown_and_fits(tmp_path, capsys):
    assert plan.main(["--config", str(_recipe(tmp_path)), "--gpu", "h100-80gb"]) == 0
    out = capsys.readouterr().out
    for line in ("weights", "gradients", "optimizer states", "activations with checkpointing", "generation KV cache"):
        assert line in out
    assert ": fits" in out


def test_cli_exit_code_and_advice_when_it_does_not_fit(tmp_path, capsys):
    recipe = _recipe(tmp_path, gradient_checkpointing=False, per_device_train_batch_size=16)
    assert plan.main(["--config", str(recipe), "--gpu", "a100-40gb"]) == 1
    out = capsys.readouterr().out
    assert "does NOT fit" in out and "first: predicted peak" in out


def test_cli_json(tmp_path, capsys):
    assert plan.main(["--config", str(_recipe(tmp_path)), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["peak"] == max(data["generation_phase"], data["training_phase"]) and data["fits"] is True


def test_json_on_stdout_is_only_json_with_wandb_offline(tmp_path):
    """transformers prints "[INFO] Running in WANDB offline mode" when it imports its integrations: to stderr here."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    for command in (
        ["plan", "--config", str(_recipe(tmp_path)), "--json"],
        ["train", "--config", "grpo_debug", "--check"],
    ):
        run = subprocess.run(
            [sys.executable, "-m", "reson", *command], capture_output=True, text=True, env=env, timeout=120
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) if command[0] == "plan" else yaml.safe_load(run.stdout)["loss_type"] == "dr_grpo"


def test_cli_unknown_gpu_lists_the_valid_ones(tmp_path, capsys):
    assert plan.main(["--config", str(_recipe(tmp_path)), "--gpu", "h100"]) == 2
    err = capsys.readouterr().err
    assert "--gpu 'h100'" in err and all(name in err for name in plan.GPUS)
    assert plan.main(["--config", str(_recipe(tmp_path)), "--gpu", "-3"]) == 2


def test_cli_takes_a_gpu_by_its_memory(tmp_path, capsys):
    """What nvidia-smi reports, in GiB: the same plan as the table's entry for that GPU."""
    recipe = str(_recipe(tmp_path))
    assert plan.main(["--config", recipe, "--gpu", "a100-40gb", "--json"]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert plan.main(["--config", recipe, "--gpu", "40", "--json"]) == 0
    by_size = json.loads(capsys.readouterr().out)
    assert by_size["limit"] == by_name["limit"] and by_size["peak"] == by_name["peak"]


def test_cli_missing_config_file(tmp_path, capsys):
    assert plan.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err


def test_cli_refuses_a_negative_prompt_length_and_an_unknown_key(tmp_path, capsys):
    assert plan.main(["--config", str(_recipe(tmp_path)), "--prompt_length", "-5"]) == 2
    assert "--prompt_length -5" in capsys.readouterr().err
    assert plan.main(["--config", str(_recipe(tmp_path, num_generation=4))]) == 2  # what reson train refuses too
    assert "Did you mean num_generations" in capsys.readouterr().err


def test_cli_recipe_without_a_model(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(f"num_generations: 4\noutput_dir: {tmp_path}\n")
    assert plan.main(["--config", str(path)]) == 2
    assert "model_name_or_path" in capsys.readouterr().err
