"""A GRPO recipe's peak GPU memory, term by term: the estimate behind `reson plan`, the notebook's choice of
recipe and the out-of-memory advice of `reson train`.

    reson plan --config grpo_qwen2.5_3b_h100 --gpu h100-80gb
    reson plan --config grpo_qwen2.5_1.5b_40gb --gpu a100-40gb
    reson plan --config my_recipe.yaml --gpu a100-80gb --num_gpus 4 --strategy zero3
    reson plan --config grpo_qwen2.5_3b_lora_16gb --gpu t4-16gb

The estimate follows what TRL 1.16's GRPOTrainer allocates on one training GPU. Notation: P parameters; h hidden
size, L layers, a attention heads, k key/value heads, d = h / a head size, I MLP width, V vocabulary; w bytes per
weight (2 for bf16/fp16 weights, 4 for fp32), c bytes per activation (2 when training in bf16/fp16, else 4);
b = per_device_train_batch_size (completions per micro-batch); G completions generated per device per generation
round (generation_batch_size, else b x steps_per_generation, else b x gradient_accumulation_steps);
s_p prompt length, s_c = max_completion_length, s = s_p + s_c; N = b x s_c completion tokens per micro-batch;
n GPUs sharing a ZeRO-2/3 or FSDP shard.

    P                 = V h (x2 when embeddings are untied) + h + L (h(h+1) + 2 h k d + 2 k d + h h + 3 h I + 2 h)
    weights           = w P                                  (/ n under zero3 and fsdp)
    gradients         = w P                                  (/ n under zero2, zero3 and fsdp)
    optimizer         = 2 w P  (AdamW's two moments, in the weights' dtype as torch keeps them; 2 P for 8-bit AdamW)
                        DeepSpeed (zero2/zero3) with 16-bit weights: 8 P fp32 moments + 4 P fp32 master weights, / n
    reference model   = w P when beta > 0 (no gradients, no optimizer)
    autocast copies   = 2 P when fp32 weights train under bf16/fp16 autocast: TRL runs each forward inside
                        accelerator.autocast(), and torch keeps the 16-bit copy of every weight it casts until the
                        outermost autocast exits (~5.8 GiB for Qwen2.5-3B), at the end of each forward
    CUDA context      = 1 GiB on every GPU: the CUDA context, cuBLAS and NCCL workspaces, outside torch's allocator
    activations       = b s L A                              without gradient checkpointing
                      = b s (L r h + A)                      with it (each layer's input, plus one layer recomputed)
        A = 2 (4 h + r h + c h)    two RMSNorms: the fp32 upcast, the residual input, the normalised output
          + c (2 h + 2 k d) + 4 a  attention: q, k, v and output kept by SDPA / flash attention, fp32 logsumexp
          + c h                    o_proj's input
          + 4 c I                  SwiGLU MLP: gate, silu(gate), up, their product
        with r = w bytes per element of the residual stream; plus the final norm, b s (4 h + r h + c h).
    loss logits       TRL 1.16 never materialises [N, V]: its fused LM head projects 4096-token x 32768-vocab tiles
                      = c min(N, 4096) min(V, 32768) + 4 V h (fp32 LM-head gradient) + (4 + c) N h
                      (a plain forward would hold 2 x 4 N V bytes: fp32 logits and their log-softmax; printed as
                      a note, since Qwen's 151,936-token vocabulary makes it the largest term at long lengths)
    generation        transformers generator: KV cache 2 L k d s G c, the prefill's widest layer G s_p c (3 I + 4 h)
                      and the sampling logits 3 x 4 G V;
                      vLLM colocate: vllm_gpu_memory_utilization x GPU memory, held all run (with sleep mode, released
                      while training); vLLM server: nothing on the training GPUs.

LoRA (`use_peft`) trains adapters of rank r on a frozen base; with R = r (in + out) summed over the targeted layers
of every decoder layer (A is [r, in], B is [out, r]; all-linear on Qwen2.5-3B at r = 16: 29.9M), the weight and
optimizer terms become

    base weights      = w P, frozen (no gradients, no moments); with load_in_4bit the decoder's linear weights
                        take 0.5 byte each plus an fp32 scale per 64 (with nested quantization an 8-bit one, and an
                        fp32 one per 256 of those), the embeddings, norms and biases w bytes each
    LoRA adapters     = 4 R  (peft keeps them in fp32; 2 R on a 4-bit base, where TRL casts them to bf16)
    adapter gradients = 4 R;  adapter AdamW moments = 8 R  (2 R for 8-bit AdamW)
    reference model   = 0 whatever beta is: TRL computes it with the adapter switched off, no second copy
    autocast copies   = 2 R: autocast keeps the 16-bit copy only of weights that train; the frozen base is cast
                        per operation, or (16-bit) not at all
    activations       as above, with A - c (3 h + I) + sum over the targeted layers of c (in + r): the frozen layers
                      no longer keep their inputs (the two norms' outputs, o_proj's, down_proj's), while peft casts
                      each adapter's input to the fp32 adapter's dtype and autocast casts it back, so each A keeps its
                      own c-byte copy of its input and each B A's r-wide output (all-linear: A + 3 c h + 7 c r; at
                      most 15% above what autograd keeps for a layer under CPU autocast, tests/test_plan.py: `A`'s
                      residual input to each norm is not kept); checkpointing through the frozen base keeps each
                      layer's input, as above
    loss logits       without the fp32 LM-head gradient: the head is frozen (TRL refuses an adapter on it)
    generation        as above: transformers generates through the unmerged adapter; vLLM colocate holds its own
                      16-bit copy of the base in its share, and TRL pushes the merged weights to it every step.

Phases do not overlap: generation runs after the optimizer step, when the gradients are freed (`zero_grad` sets them
to None), and training frees the KV cache. So

    persistent  = CUDA context + weights + optimizer + reference model (LoRA: base weights, adapters and their
                  moments) (+ the vLLM colocate reservation without sleep mode)
    generation  = persistent + generation terms (+ all of the weights, gathered, under zero3 and fsdp)
    training    = persistent + gradients + activations + loss logits + autocast copies
    peak        = max(generation, training)

A recipe fits when the peak is at most 90% of the GPU's memory: the last 10% is left for allocator fragmentation
and transient buffers, which `torch.cuda.max_memory_allocated` does not count. The prediction is meant to be within
that margin of the reserved peak (`torch.cuda.max_memory_reserved` plus the CUDA context); `bench/bench_gpu_grpo.py`
measures both on a GPU, and docs/benchmarks.md says where that has been checked. When it does
not fit, the advice follows the out-of-memory list in order: num_generations (fewer completions per prompt, so fewer
sequences per generation round), max_completion_length, per_device_train_batch_size (raise
gradient_accumulation_steps to keep the effective batch), gradient checkpointing; it names the first of these that is
enough on its own, or the shortest sequence of them that is. Deliberate simplifications: attention never materialises
the s x s scores (SDPA and flash attention both avoid it), transient buffers of the backward pass and of the
no-gradient log-prob passes are inside the 10% margin. The prompt length s_p is `--prompt_length` when given, else
the longest of the recipe's datasets' `PROMPT_TOKENS`: TRL 1.16 pads each batch to its longest prompt and no
longer truncates prompts, so the planner takes the 99th percentile of the R1-Zero template plus a question, in
characters, at a conservative 3 characters a token (Qwen2.5's tokenizer averages about 4 on English, fewer on
LaTeX). MATH's longest prompts (~4,700 characters, ~1.2-1.6k tokens) are longer still and rare.

vLLM colocate holds its weights (16-bit: 2 P), `VLLM_OVERHEAD` for CUDA graphs and its profiling run, and a KV
cache of 2 L k d x 2 bytes a token in what is left of its share; a generation round needs G (s_p + s_c) tokens of
it. When the share holds fewer, vLLM queues the rest and runs the round in several waves: slower, not failing. The
plan says how many tokens fit, how many a round needs, and the share that would hold a whole round.
`bench/bench_gpu_grpo.py` compares the prediction with a measured peak.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reson.core import models
from reson.core.config import ResonConfig, model_init_kwargs, resolved_values
from reson.core.models import Architecture

GIB = 1024**3
MIB = 1024**2

HEADROOM = 0.10  # share of GPU memory left for allocator fragmentation and transient buffers
CUDA_CONTEXT = GIB  # the CUDA context, cuBLAS and NCCL workspaces on every GPU, outside torch's allocator
STRATEGIES = ("single", "ddp", "zero2", "zero3", "fsdp")
# Prompt tokens by training dataset: the 99th percentile of the R1-Zero template plus a question, in characters,
# at 3 characters a token, rounded up to 32 (GSM8K train: 945 characters; MATH train: 1,518; the competition sets are
# MATH-like; a Countdown prompt is ~740 characters). A dataset not listed plans at DEFAULT_PROMPT_LENGTH.
PROMPT_TOKENS = {"gsm8k": 320, "math": 512, "math500": 512, "aime24": 512, "amc23": 512, "countdown": 256}
DEFAULT_PROMPT_LENGTH = 512
VLLM_OVERHEAD = GIB  # vLLM colocate, besides weights and KV cache: CUDA graphs and its profiling run's activations
TOKEN_TILE, VOCAB_TILE = 4096, 32768  # trl.kernels.chunked_logprob: TOKEN_CHUNK_SIZE x _CHUNKED_LOGPROB_CHUNK_SIZE
DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2}


@dataclass(frozen=True)
class Settings:
    """The training settings memory depends on, with TRL's field names."""

    per_device_train_batch_size: int
    generation_batch_size: int  # completions generated per device per generation round
    num_generations: int
    max_completion_length: int
    prompt_length: int = DEFAULT_PROMPT_LENGTH
    gradient_checkpointing: bool = False
    weight_bytes: int = 2
    compute_bytes: int = 2
    beta: float = 0.0
    optim: str = "adamw_torch"
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    vllm_enable_sleep_mode: bool = False
    num_gpus: int = 1
    strategy: str = "single"
    lora_rank: int = 0  # 0: every weight trains; else LoRA adapters of this rank train on a frozen base
    lora_targets: str | tuple[str, ...] = "all-linear"
    adapter_bytes: int = 4  # peft keeps adapters in fp32; TRL casts them to bf16 on a 4-bit base
    load_in_4bit: bool = False  # the base's decoder linear layers in bitsandbytes 4-bit (NF4)
    nested_quant: bool = False  # bitsandbytes' double quantization of the 4-bit blocks' scales


@dataclass
class Plan:
    terms: dict[str, int]  # bytes per GPU, each term once
    activations_with_checkpointing: int
    activations_without_checkpointing: int
    unfused_logits: int  # what [N, V] fp32 logits + log-softmax would take
    generation_phase: int
    training_phase: int
    peak: int
    gpu_bytes: int
    limit: int
    fits: bool
    advice: list[str] = dataclasses.field(default_factory=list)
    vllm_kv_tokens: int | None = None  # tokens of KV cache vLLM colocate's share leaves room for
    vllm_kv_needed: int | None = None  # tokens a whole generation round needs: G (s_p + s_c)


def vllm_kv_tokens(arch: Architecture, s: Settings, gpu_bytes: int) -> int:
    """Tokens of KV cache vLLM colocate's share holds after its 16-bit weights and `VLLM_OVERHEAD`."""
    per_token = 2 * arch.num_hidden_layers * arch.kv_size * 2  # keys and values, bf16/fp16
    room = int(s.vllm_gpu_memory_utilization * gpu_bytes) - 2 * arch.num_params - VLLM_OVERHEAD
    return max(room, 0) // per_token


def vllm_share_for(arch: Architecture, s: Settings, gpu_bytes: int, tokens: int) -> float:
    """The smallest vllm_gpu_memory_utilization (to the hundredth) whose share holds ``tokens`` of KV cache."""
    per_token = 2 * arch.num_hidden_layers * arch.kv_size * 2
    need = 2 * arch.num_params + VLLM_OVERHEAD + tokens * per_token
    return -(-need * 100 // gpu_bytes) / 100


def lora_params(arch: Architecture, s: Settings) -> int:
    """Trainable parameters of the adapters: r (in + out) per targeted layer, in every decoder layer."""
    return arch.lora_params(s.lora_targets, s.lora_rank)


def base_weight_bytes(arch: Architecture, s: Settings) -> int:
    """The frozen base: 16-bit, or its decoder linear layers in 4-bit NF4 blocks of 64 with an fp32 scale each (an
    8-bit scale, and an fp32 one per 256 of those, with nested quantization); embeddings, norms and biases stay
    16-bit."""
    if not s.load_in_4bit:
        return s.weight_bytes * arch.num_params
    linear = arch.num_hidden_layers * sum(i * o for i, o in arch.linear_shapes.values())
    per_block = 1 + 4 / 256 if s.nested_quant else 4
    return int(linear * (0.5 + per_block / 64)) + s.weight_bytes * (arch.num_params - linear)


def optimizer_bytes(params: int, s: Settings) -> tuple[int, int]:
    """(AdamW moments, fp32 master weights) for `params` parameters on one GPU, before sharding."""
    if s.strategy in ("zero2", "zero3") and s.weight_bytes < 4:
        return 8 * params, 4 * params  # DeepSpeed's mixed-precision optimizer keeps both in fp32
    if "8bit" in s.optim:
        return 2 * params, 0
    return 2 * s.weight_bytes * params, 0


def layer_activation_bytes(arch: Architecture, s: Settings) -> int:
    """Bytes one decoder layer keeps for backward, per token (the `A` of the module docstring; with LoRA, plus each
    adapter's copy of its input and its r-wide output)."""
    h, i, c, r = arch.hidden_size, arch.intermediate_size, s.compute_bytes, s.weight_bytes
    norms = 2 * (4 * h + r * h + c * h)
    attention = c * (2 * h + 2 * arch.kv_size) + 4 * arch.num_attention_heads
    return norms + attention + c * h + 4 * c * i + lora_activation_bytes(arch, s)


def lora_activation_bytes(arch: Architecture, s: Settings) -> int:
    """Per token and layer, what LoRA changes in `A`: the frozen linear layers no longer keep their inputs (the two
    norms' outputs, o_proj's and down_proj's inputs), while peft casts each adapter's input to its fp32 weights'
    dtype and autocast casts it back, so each A keeps its own c-byte copy of its input, and each B A's r-wide
    output."""
    if not s.lora_rank:
        return 0
    names = models.LINEAR_LAYERS if s.lora_targets == "all-linear" else [t.rsplit(".", 1)[-1] for t in s.lora_targets]
    adapters = sum(s.compute_bytes * (arch.linear_shapes[name][0] + s.lora_rank) for name in names)
    return adapters - s.compute_bytes * (3 * arch.hidden_size + arch.intermediate_size)


def activation_bytes(arch: Architecture, s: Settings, checkpointing: bool) -> int:
    tokens = s.per_device_train_batch_size * (s.prompt_length + s.max_completion_length)
    h, c, r = arch.hidden_size, s.compute_bytes, s.weight_bytes
    per_layer = layer_activation_bytes(arch, s)
    final_norm = tokens * (4 * h + r * h + c * h)
    if checkpointing:
        return tokens * (arch.num_hidden_layers * r * h + per_layer) + final_norm
    return tokens * arch.num_hidden_layers * per_layer + final_norm


def loss_logit_bytes(arch: Architecture, s: Settings) -> int:
    """TRL's fused LM head: one logits tile, the fp32 LM-head gradient (none for LoRA's frozen head), the kept hidden
    states and their fp32 grad."""
    n = s.per_device_train_batch_size * s.max_completion_length
    h, c = arch.hidden_size, s.compute_bytes
    head_grad = 0 if s.lora_rank else 4 * arch.vocab_size * h
    return c * min(n, TOKEN_TILE) * min(arch.vocab_size, VOCAB_TILE) + head_grad + (4 + c) * n * h


def unfused_logit_bytes(arch: Architecture, s: Settings) -> int:
    n = s.per_device_train_batch_size * s.max_completion_length
    return 2 * 4 * n * arch.vocab_size


def generation_bytes(arch: Architecture, s: Settings) -> dict[str, int]:
    """Generation terms on a training GPU: the transformers generator's, or vLLM colocate's reservation."""
    if s.use_vllm:
        return {}  # the colocate reservation is handled by `estimate`; server mode uses other GPUs
    g, c, h = s.generation_batch_size, s.compute_bytes, arch.hidden_size
    seq = s.prompt_length + s.max_completion_length
    return {
        "generation KV cache": 2 * arch.num_hidden_layers * arch.kv_size * seq * g * c,
        "generation prefill and sampling": g * s.prompt_length * c * (3 * arch.intermediate_size + 4 * h)
        + 3 * 4 * g * arch.vocab_size,
    }


def estimate(arch: Architecture, s: Settings, gpu_bytes: int) -> Plan:
    """Predict the peak memory of one training GPU, and what to change when it does not fit (module docstring)."""
    plan = _estimate(arch, s, gpu_bytes)
    if not plan.fits:
        plan.advice = advise(arch, s, gpu_bytes)
    if s.use_vllm and s.vllm_mode == "colocate":
        plan.vllm_kv_tokens = vllm_kv_tokens(arch, s, gpu_bytes)
        plan.vllm_kv_needed = s.generation_batch_size * (s.prompt_length + s.max_completion_length)
    return plan


def _estimate(arch: Architecture, s: Settings, gpu_bytes: int) -> Plan:
    p = arch.num_params
    n = s.num_gpus if s.strategy in ("zero2", "zero3", "fsdp") else 1
    full_shard = s.strategy in ("zero3", "fsdp")
    # Weights and optimizer: (persistent terms, the gradients' term)
    if s.lora_rank:
        a = lora_params(arch, s)
        moments, _ = optimizer_bytes(a, dataclasses.replace(s, weight_bytes=s.adapter_bytes))
        persistent_terms = {
            "CUDA context and workspaces": CUDA_CONTEXT,
            "base weights (frozen)": base_weight_bytes(arch, s),
            "LoRA adapters": s.adapter_bytes * a,
            "adapter AdamW moments": moments,
        }
        gradients = {"adapter gradients": s.adapter_bytes * a}
        autocast = 2 * a if s.adapter_bytes == 4 and s.compute_bytes == 2 else 0  # only trained leaves are cached
    else:
        moments, master = optimizer_bytes(p, s)
        persistent_terms = {
            "CUDA context and workspaces": CUDA_CONTEXT,
            "weights": s.weight_bytes * p // (n if full_shard else 1),
            "optimizer states (AdamW moments)": moments // n,
            "master weights (fp32)": master // n,
            "reference model (beta > 0)": s.weight_bytes * p if s.beta > 0 else 0,
        }
        gradients = {"gradients": s.weight_bytes * p // n}
        autocast = 2 * p // (n if full_shard else 1) if s.weight_bytes == 4 and s.compute_bytes == 2 else 0
    terms = {**persistent_terms, **gradients}
    with_ckpt = activation_bytes(arch, s, checkpointing=True)
    without_ckpt = activation_bytes(arch, s, checkpointing=False)
    terms["activations"] = with_ckpt if s.gradient_checkpointing else without_ckpt
    terms["loss logits (fused LM head)"] = loss_logit_bytes(arch, s)
    terms["autocast 16-bit weight copies"] = autocast
    gen = generation_bytes(arch, s)
    terms.update(gen)
    colocate = s.use_vllm and s.vllm_mode == "colocate"
    vllm = int(s.vllm_gpu_memory_utilization * gpu_bytes) if colocate else 0
    terms["vLLM reservation (colocate)"] = vllm

    persistent = sum(persistent_terms.values())
    gathered = s.weight_bytes * p - terms["weights"] if full_shard else 0  # whole model gathered for generation
    if colocate and s.vllm_enable_sleep_mode:
        generation_phase = persistent + gathered + vllm
        training_phase = persistent
    else:
        persistent += vllm
        generation_phase = persistent + gathered + sum(gen.values())
        training_phase = persistent
    training_phase += sum(gradients.values()) + terms["activations"] + terms["loss logits (fused LM head)"]
    training_phase += autocast
    peak = max(generation_phase, training_phase)
    limit = int((1 - HEADROOM) * gpu_bytes)
    return Plan(
        terms=terms,
        activations_with_checkpointing=with_ckpt,
        activations_without_checkpointing=without_ckpt,
        unfused_logits=unfused_logit_bytes(arch, s),
        generation_phase=generation_phase,
        training_phase=training_phase,
        peak=peak,
        gpu_bytes=gpu_bytes,
        limit=limit,
        fits=peak <= limit,
    )


# The out-of-memory list, in the order to try it: (field, how one turn of the knob changes the settings)
def _fewer_generations(s: Settings) -> Settings | None:
    if s.num_generations < 4:
        return None  # GRPO needs at least two completions per prompt to compare
    g = max(s.num_generations // 2, 2)
    generation = max(s.generation_batch_size * g // s.num_generations, g)  # same prompts, fewer completions each
    batch = min(s.per_device_train_batch_size, generation)
    return dataclasses.replace(
        s, num_generations=g, generation_batch_size=generation, per_device_train_batch_size=batch
    )


def _shorter_completions(s: Settings) -> Settings | None:
    return (
        None
        if s.max_completion_length < 128
        else dataclasses.replace(s, max_completion_length=s.max_completion_length // 2)
    )


def _smaller_batch(s: Settings) -> Settings | None:
    b = s.per_device_train_batch_size
    return None if b < 2 else dataclasses.replace(s, per_device_train_batch_size=b // 2)


def _checkpointing(s: Settings) -> Settings | None:
    return None if s.gradient_checkpointing else dataclasses.replace(s, gradient_checkpointing=True)


KNOBS = (
    ("num_generations", _fewer_generations),
    ("max_completion_length", _shorter_completions),
    ("per_device_train_batch_size", _smaller_batch),
    ("gradient_checkpointing", _checkpointing),
)


def _describe(field: str, before: Settings, after: Settings) -> str:
    if field == "num_generations":
        return (
            f"num_generations {before.num_generations} -> {after.num_generations} (same prompts per step: "
            f"{before.generation_batch_size} -> {after.generation_batch_size} completions per generation round)"
        )
    if field == "per_device_train_batch_size":
        return (
            f"per_device_train_batch_size {before.per_device_train_batch_size} -> "
            f"{after.per_device_train_batch_size} (gradient_accumulation_steps x"
            f"{before.per_device_train_batch_size // after.per_device_train_batch_size} keeps the effective batch)"
        )
    if field == "gradient_checkpointing":
        return "gradient_checkpointing false -> true"
    return f"{field} {getattr(before, field)} -> {getattr(after, field)}"


def advise(arch: Architecture, s: Settings, gpu_bytes: int) -> list[str]:
    """What to change, in the out-of-memory list's order, to make the recipe fit (empty when it fits)."""

    def peak(settings: Settings) -> int:
        return _estimate(arch, settings, gpu_bytes).peak

    def turn_until_fits(settings: Settings, turn) -> Settings:
        # Turn one knob (halving) while it lowers the peak and the recipe does not fit yet
        while peak(settings) > limit and (changed := turn(settings)) is not None and peak(changed) < peak(settings):
            settings = changed
        return settings

    limit = int((1 - HEADROOM) * gpu_bytes)
    if peak(s) <= limit:
        return []
    # First: the earliest knob in the list that is enough on its own
    for field, turn in KNOBS:
        changed = turn_until_fits(s, turn)
        if peak(changed) <= limit:
            return [f"turn {_describe(field, s, changed)} first: predicted peak {gib(peak(changed))} GiB"]
    # Else: each knob in turn, as far as it helps, until the recipe fits
    steps, settings = [], s
    for field, turn in KNOBS:
        changed = turn_until_fits(settings, turn)
        if changed != settings:
            steps.append(f"{_describe(field, settings, changed)}: predicted peak {gib(peak(changed))} GiB")
            settings = changed
        if peak(settings) <= limit:
            return ["no single knob is enough; in order:", *steps]
    advice = [
        f"no knob in the out-of-memory list makes it fit (all four turned: {gib(peak(settings))} GiB): use a GPU "
        "with more memory, shard over more GPUs (--num-gpus N --strategy zero3), or a smaller model"
    ]
    if s.use_vllm and s.vllm_mode == "colocate":
        advice.append(
            f"vLLM colocate reserves vllm_gpu_memory_utilization={s.vllm_gpu_memory_utilization} of the GPU: lower "
            "it, or run vLLM in server mode on other GPUs (docs/scaling.md)"
        )
    return advice


def gib(n: int) -> str:
    """Bytes as GiB with one decimal."""
    return f"{n / GIB:.1f}"


class PlanError(ValueError):
    """Bad input to the planner; the message says what to change."""


def _dtype_bytes(name: str, where: str) -> int:
    if str(name).lower() not in DTYPE_BYTES:
        raise PlanError(f"{where} {name!r}: expected one of {', '.join(DTYPE_BYTES)} or auto")
    return DTYPE_BYTES[str(name).lower()]


def prompt_tokens(config: ResonConfig) -> int:
    """The prompt length to plan for: the longest of the recipe's datasets' `PROMPT_TOKENS` (module docstring)."""
    return max(PROMPT_TOKENS.get(spec["name"], DEFAULT_PROMPT_LENGTH) for spec in config.datasets)


def settings_from_config(
    config: ResonConfig,
    prompt_length: int | None = None,
    num_gpus: int = 1,
    strategy: str | None = None,
    dtype: str | None = None,
) -> Settings:
    """Settings for `estimate` from a parsed training config (`reson.core.config.load_config`, TRL's defaults filled
    in), for one of ``num_gpus`` GPUs; the prompt length is the recipe's datasets' (`prompt_tokens`) unless given."""
    b = config.per_device_train_batch_size
    # TRL's generation_batch_size counts completions over all processes; left out, it is b x steps per process
    explicit = resolved_values(config)["generation_batch_size"]  # as given, before TRL derives it
    generation = max(explicit // num_gpus, 1) if explicit else b * config.steps_per_generation
    # The weights' dtype: --dtype, else what the model loads with (the recipe's model_init_kwargs.dtype, else its
    # dtype, TRL's ModelConfig field, float32 unless set); `auto` takes the model config's dtype.
    chosen = dtype or model_init_kwargs(config)["dtype"] or "float32"
    if str(chosen).lower() == "auto":
        chosen = models.config_dtype(config.model_name_or_path) or "float32"
    weight_bytes = _dtype_bytes(chosen, "dtype")
    half = bool(config.bf16 or config.fp16)
    strategy = strategy or ("ddp" if num_gpus > 1 else "single")
    if strategy not in STRATEGIES:
        raise PlanError(f"--strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if strategy == "single" and num_gpus > 1:
        raise PlanError(f"--num_gpus {num_gpus} with --strategy single: choose ddp, zero2, zero3 or fsdp")
    if config.use_peft and strategy not in ("single", "ddp"):
        raise PlanError(f"--strategy {strategy}: LoRA is planned on one GPU or under ddp (each GPU holds the base)")
    return Settings(
        per_device_train_batch_size=b,
        generation_batch_size=generation,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        prompt_length=prompt_length or prompt_tokens(config),
        gradient_checkpointing=bool(config.gradient_checkpointing),
        weight_bytes=weight_bytes,
        compute_bytes=2 if half or weight_bytes == 2 else 4,
        beta=float(config.beta),
        optim=str(config.optim),
        use_vllm=bool(config.use_vllm),
        vllm_mode=str(config.vllm_mode),
        vllm_gpu_memory_utilization=float(config.vllm_gpu_memory_utilization),
        vllm_enable_sleep_mode=bool(config.vllm_enable_sleep_mode),
        num_gpus=num_gpus,
        strategy=strategy,
        lora_rank=config.lora_r if config.use_peft else 0,
        lora_targets=targets if isinstance(targets := config.lora_target_modules, str) else tuple(targets or ()),
        adapter_bytes=2 if config.load_in_4bit else 4,
        load_in_4bit=bool(config.load_in_4bit),
        nested_quant=bool(config.use_bnb_nested_quant),
    )


def plan_for(config: ResonConfig, gpu_bytes: int, **changes) -> Plan | None:
    """The plan of a parsed training config on a GPU of ``gpu_bytes``, with ``changes`` to its `Settings`
    (``compute_bytes=4``: the same run in fp32); None when the model's shape is unknown (not a local folder with a
    config.json, nor a model of `reson.core.models.KNOWN_MODELS`)."""
    arch = models.architecture(config.model_name_or_path)
    if arch is None:
        return None
    return estimate(arch, dataclasses.replace(settings_from_config(config), **changes), gpu_bytes)


def first_knob(config: ResonConfig, gpu_bytes: int) -> str:
    """The planner's first knob for a run that ran out of memory: its advice where the plan does not fit, else one
    turn of the first knob of the out-of-memory list that changes anything (the prediction fell short of the run)."""
    arch = models.architecture(config.model_name_or_path)
    settings = settings_from_config(config)
    if arch is None:
        return "lower num_generations, then max_completion_length, then per_device_train_batch_size"
    advice = advise(arch, settings, gpu_bytes)
    if advice:
        return " ".join(advice)
    for field, turn in KNOBS:
        changed = turn(settings)
        if changed is not None:
            peak = _estimate(arch, changed, gpu_bytes).peak
            return f"{_describe(field, settings, changed)} (predicted peak {gib(peak)} GiB)"
    return "use a GPU with more memory"
