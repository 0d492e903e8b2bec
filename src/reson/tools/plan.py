"""`reson plan`: predict a GRPO recipe's peak GPU memory, term by term, before renting the GPU.

    reson plan --config configs/grpo_qwen2.5_3b_h100.yaml --gpu h100-80gb
    reson plan --config configs/grpo_qwen2.5_1.5b.yaml --gpu a100-40gb --num-gpus 4 --strategy zero3

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

Phases do not overlap: generation runs after the optimizer step, when the gradients are freed (`zero_grad` sets them
to None), and training frees the KV cache. So

    persistent  = weights + optimizer + reference model (+ the vLLM colocate reservation without sleep mode)
    generation  = persistent + generation terms (+ all of the weights, gathered, under zero3 and fsdp)
    training    = persistent + gradients + activations + loss logits
    peak        = max(generation, training)

A recipe fits when the peak is at most 90% of the GPU's memory: the last 10% is left for the CUDA context, cuBLAS
and NCCL workspaces and allocator fragmentation, which `torch.cuda.max_memory_allocated` does not count. When it does
not fit, the advice follows the out-of-memory list in order: num_generations (fewer completions per prompt, so fewer
sequences per generation round), max_completion_length, per_device_train_batch_size (raise
gradient_accumulation_steps to keep the effective batch), gradient checkpointing; it names the first of these that is
enough on its own, or the shortest sequence of them that is. Deliberate simplifications: attention never materialises
the s x s scores (SDPA and flash attention both avoid it), transient buffers of the backward pass and of the
no-gradient log-prob passes are inside the 10% margin, and the prompt length comes from the recipe's
`max_prompt_length` or `--prompt-length` (default 256 tokens: the R1-Zero template plus a GSM8K question).
`bench/bench_gpu_grpo.py` compares the prediction with a measured peak.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
MIB = 1024**2

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
HEADROOM = 0.10  # share of GPU memory left for the CUDA context, workspaces and fragmentation
STRATEGIES = ("single", "ddp", "zero2", "zero3", "fsdp")
DEFAULT_PROMPT_LENGTH = 256
TOKEN_TILE, VOCAB_TILE = 4096, 32768  # trl.kernels.chunked_logprob: TOKEN_CHUNK_SIZE x _CHUNKED_LOGPROB_CHUNK_SIZE
DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2}


@dataclass(frozen=True)
class Architecture:
    """The numbers of a Qwen2/Llama-style decoder that memory depends on (names as in a transformers config.json)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    head_dim: int | None = None

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_size

    @property
    def num_params(self) -> int:
        h, i, kv = self.hidden_size, self.intermediate_size, self.kv_size
        q_out = self.num_attention_heads * self.head_size
        attention = (h * q_out + q_out) + 2 * (h * kv + kv) + q_out * h  # q, k, v carry biases in Qwen2; o does not
        layer = attention + 3 * h * i + 2 * h  # SwiGLU MLP, two RMSNorm weights
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return embeddings + h + self.num_hidden_layers * layer


# From the config.json of each hub model (the Instruct and Math variants share the base's shape).
KNOWN_MODELS = {
    "Qwen/Qwen2.5-0.5B": Architecture(896, 24, 14, 2, 4864, 151936, True),
    "Qwen/Qwen2.5-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, True),
    "Qwen/Qwen2.5-3B": Architecture(2048, 36, 16, 2, 11008, 151936, True),
    "Qwen/Qwen2.5-7B": Architecture(3584, 28, 28, 4, 18944, 152064, False),
    "Qwen/Qwen2.5-Math-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, True),
    "Qwen/Qwen2.5-Math-7B": Architecture(3584, 28, 28, 4, 18944, 152064, False),
}


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


def optimizer_bytes(params: int, s: Settings) -> tuple[int, int]:
    """(AdamW moments, fp32 master weights) for `params` parameters on one GPU, before sharding."""
    if s.strategy in ("zero2", "zero3") and s.weight_bytes < 4:
        return 8 * params, 4 * params  # DeepSpeed's mixed-precision optimizer keeps both in fp32
    if "8bit" in s.optim:
        return 2 * params, 0
    return 2 * s.weight_bytes * params, 0


def layer_activation_bytes(arch: Architecture, s: Settings) -> int:
    """Bytes one decoder layer keeps for backward, per token (the `A` of the module docstring)."""
    h, i, c, r = arch.hidden_size, arch.intermediate_size, s.compute_bytes, s.weight_bytes
    norms = 2 * (4 * h + r * h + c * h)
    attention = c * (2 * h + 2 * arch.kv_size) + 4 * arch.num_attention_heads
    return norms + attention + c * h + 4 * c * i


def activation_bytes(arch: Architecture, s: Settings, checkpointing: bool) -> int:
    tokens = s.per_device_train_batch_size * (s.prompt_length + s.max_completion_length)
    h, c, r = arch.hidden_size, s.compute_bytes, s.weight_bytes
    per_layer = layer_activation_bytes(arch, s)
    final_norm = tokens * (4 * h + r * h + c * h)
    if checkpointing:
        return tokens * (arch.num_hidden_layers * r * h + per_layer) + final_norm
    return tokens * arch.num_hidden_layers * per_layer + final_norm


def loss_logit_bytes(arch: Architecture, s: Settings) -> int:
    """TRL's fused LM head: one logits tile, the fp32 LM-head gradient, the kept hidden states and their fp32 grad."""
    n = s.per_device_train_batch_size * s.max_completion_length
    h, c = arch.hidden_size, s.compute_bytes
    return c * min(n, TOKEN_TILE) * min(arch.vocab_size, VOCAB_TILE) + 4 * arch.vocab_size * h + (4 + c) * n * h


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
    return plan


def _estimate(arch: Architecture, s: Settings, gpu_bytes: int) -> Plan:
    p = arch.num_params
    n = s.num_gpus if s.strategy in ("zero2", "zero3", "fsdp") else 1
    full_shard = s.strategy in ("zero3", "fsdp")
    moments, master = optimizer_bytes(p, s)
    terms = {
        "weights": s.weight_bytes * p // (n if full_shard else 1),
        "gradients": s.weight_bytes * p // n,
        "optimizer states (AdamW moments)": moments // n,
        "master weights (fp32)": master // n,
        "reference model (beta > 0)": s.weight_bytes * p if s.beta > 0 else 0,
    }
    with_ckpt = activation_bytes(arch, s, checkpointing=True)
    without_ckpt = activation_bytes(arch, s, checkpointing=False)
    terms["activations"] = with_ckpt if s.gradient_checkpointing else without_ckpt
    terms["loss logits (fused LM head)"] = loss_logit_bytes(arch, s)
    gen = generation_bytes(arch, s)
    terms.update(gen)
    colocate = s.use_vllm and s.vllm_mode == "colocate"
    vllm = int(s.vllm_gpu_memory_utilization * gpu_bytes) if colocate else 0
    terms["vLLM reservation (colocate)"] = vllm

    persistent = sum(terms[k] for k in ("weights", "optimizer states (AdamW moments)", "master weights (fp32)"))
    persistent += terms["reference model (beta > 0)"]
    gathered = s.weight_bytes * p - terms["weights"] if full_shard else 0  # whole model gathered for generation
    if colocate and s.vllm_enable_sleep_mode:
        generation_phase = persistent + gathered + vllm
        training_phase = persistent
    else:
        persistent += vllm
        generation_phase = persistent + gathered + sum(gen.values())
        training_phase = persistent
    training_phase += terms["gradients"] + terms["activations"] + terms["loss logits (fused LM head)"]
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
            return [f"turn {_describe(field, s, changed)} first: predicted peak {_gib(peak(changed))} GiB"]
    # Else: each knob in turn, as far as it helps, until the recipe fits
    steps, settings = [], s
    for field, turn in KNOBS:
        changed = turn_until_fits(settings, turn)
        if changed != settings:
            steps.append(f"{_describe(field, settings, changed)}: predicted peak {_gib(peak(changed))} GiB")
            settings = changed
        if peak(settings) <= limit:
            return ["no single knob is enough; in order:", *steps]
    advice = [
        f"no knob in the out-of-memory list makes it fit (all four turned: {_gib(peak(settings))} GiB): use a GPU "
        "with more memory, shard over more GPUs (--num-gpus N --strategy zero3), or a smaller model"
    ]
    if s.use_vllm and s.vllm_mode == "colocate":
        advice.append(
            f"vLLM colocate reserves vllm_gpu_memory_utilization={s.vllm_gpu_memory_utilization} of the GPU: lower "
            "it, or run vLLM in server mode on other GPUs (docs/scaling.md)"
        )
    return advice


def _gib(n: int) -> str:
    return f"{n / GIB:.1f}"


# ---------------------------------------------------------------------------------------------------------------------
# Reading a recipe and a model's shape


class PlanError(ValueError):
    """Bad input to the planner; the message says what to change."""


# GRPOConfig 1.16's defaults for the fields read here, used when a recipe leaves them out
TRL_DEFAULTS = {
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "num_generations": 8,
    "max_completion_length": 512,
    "gradient_checkpointing": True,
    "beta": 0.0,
    "optim": "adamw_torch_fused",
    "use_vllm": False,
    "vllm_mode": "colocate",
    "vllm_gpu_memory_utilization": 0.3,
    "vllm_enable_sleep_mode": False,
}


def load_recipe(path: str | Path) -> dict:
    """The recipe's keys as a flat dict (yaml.safe_load; nothing is validated beyond what the planner reads)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PlanError(f"--config {path}: no such file; pass a training recipe such as configs/grpo_debug.yaml")
    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise PlanError(f"--config {path}: not valid YAML ({error.__class__.__name__}); fix the file") from None
    if not isinstance(recipe, dict):
        raise PlanError(f"--config {path}: expected a mapping of training settings, got {type(recipe).__name__}")
    return recipe


def resolve_gpu(name: str) -> int:
    key = name.lower()
    if key not in GPUS:
        raise PlanError(f"--gpu {name!r} is not a GPU the planner knows; choose one of: {', '.join(GPUS)}")
    return GPUS[key]


def resolve_architecture(model: str) -> tuple[Architecture, str | None]:
    """(shape, dtype in its config) of a local model folder (its config.json) or of a known hub id."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise PlanError(f"model {model}: the folder has no config.json; point at a saved transformers model")
        config = json.loads(config_file.read_text())
        config = config.get("text_config", config)
        try:
            arch = Architecture(
                hidden_size=config["hidden_size"],
                num_hidden_layers=config["num_hidden_layers"],
                num_attention_heads=config["num_attention_heads"],
                num_key_value_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                intermediate_size=config["intermediate_size"],
                vocab_size=config["vocab_size"],
                tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
                head_dim=config.get("head_dim"),
            )
        except KeyError as missing:
            raise PlanError(
                f"model {model}: config.json lacks {missing}; the planner needs a decoder's sizes"
            ) from None
        return arch, config.get("dtype") or config.get("torch_dtype")
    arch = known_architecture(model)
    if arch is None:
        raise PlanError(
            f"model {model!r}: neither a local folder with a config.json nor a known hub id: {', '.join(KNOWN_MODELS)}"
        )
    return arch, "bfloat16"


def known_architecture(model: str) -> Architecture | None:
    """The built-in shape of a hub id (any case; an -Instruct variant has its base's shape), or None."""
    key = model.lower().removesuffix("-instruct")
    return next((arch for name, arch in KNOWN_MODELS.items() if name.lower() == key), None)


def _dtype_bytes(name: str, where: str) -> int:
    if str(name).lower() not in DTYPE_BYTES:
        raise PlanError(f"{where} {name!r}: expected one of {', '.join(DTYPE_BYTES)} or auto")
    return DTYPE_BYTES[str(name).lower()]


def settings_from_recipe(
    recipe: dict,
    config_dtype: str | None,
    prompt_length: int | None = None,
    num_gpus: int = 1,
    strategy: str | None = None,
    dtype: str | None = None,
) -> Settings:
    """Settings for `estimate` from a recipe, with GRPOConfig's defaults for what it leaves out."""
    get = {**TRL_DEFAULTS, **recipe}.get
    b = int(get("per_device_train_batch_size"))
    steps_per_generation = int(get("steps_per_generation") or get("gradient_accumulation_steps"))
    if get("generation_batch_size"):  # TRL's generation_batch_size counts completions over all processes
        generation = max(int(get("generation_batch_size")) // num_gpus, 1)
    else:
        generation = b * steps_per_generation
    # The weights' dtype: --dtype, else the recipe's (`dtype`, `torch_dtype` or `model_init_kwargs.dtype`), else
    # GRPOTrainer's default for a model given by name: float32. `auto` takes the model config's dtype.
    model_kwargs = get("model_init_kwargs") or {}
    chosen = (
        dtype or get("dtype") or get("torch_dtype") or model_kwargs.get("dtype") or model_kwargs.get("torch_dtype")
    )
    chosen = chosen or "float32"
    if str(chosen).lower() == "auto":
        chosen = config_dtype or "float32"
    weight_bytes = _dtype_bytes(chosen, "dtype")
    half = get("bf16") is not False or bool(get("fp16"))  # GRPOConfig's bf16 defaults to True
    if get("use_cpu"):
        half = bool(get("bf16"))
    strategy = strategy or ("ddp" if num_gpus > 1 else "single")
    if strategy not in STRATEGIES:
        raise PlanError(f"--strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if strategy == "single" and num_gpus > 1:
        raise PlanError(f"--num-gpus {num_gpus} with --strategy single: choose ddp, zero2, zero3 or fsdp")
    num_generations = int(get("num_generations"))
    if num_generations < 2:
        raise PlanError(f"num_generations {num_generations}: GRPO needs at least 2 completions per prompt")
    return Settings(
        per_device_train_batch_size=b,
        generation_batch_size=generation,
        num_generations=num_generations,
        max_completion_length=int(get("max_completion_length")),
        prompt_length=int(prompt_length or get("max_prompt_length") or DEFAULT_PROMPT_LENGTH),
        gradient_checkpointing=bool(get("gradient_checkpointing")),
        weight_bytes=weight_bytes,
        compute_bytes=2 if half or weight_bytes == 2 else 4,
        beta=float(get("beta")),
        optim=str(get("optim")),
        use_vllm=bool(get("use_vllm")),
        vllm_mode=str(get("vllm_mode")),
        vllm_gpu_memory_utilization=float(get("vllm_gpu_memory_utilization")),
        vllm_enable_sleep_mode=bool(get("vllm_enable_sleep_mode")),
        num_gpus=num_gpus,
        strategy=strategy,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def format_plan(plan: Plan, arch: Architecture, s: Settings, model: str, gpu: str) -> str:
    lines = [
        f"model {model}: {arch.num_params / 1e9:.2f}B parameters, {_dtype_name(s.weight_bytes)} weights; "
        f"GPU {gpu} ({_gib(plan.gpu_bytes)} GiB) x {s.num_gpus}, strategy {s.strategy}",
        f"per GPU: {s.per_device_train_batch_size} completions a micro-batch, {s.generation_batch_size} generated a "
        f"round ({s.num_generations} per prompt), prompt {s.prompt_length} + completion {s.max_completion_length} "
        f"tokens, gradient checkpointing {'on' if s.gradient_checkpointing else 'off'}, generation by "
        + (f"vLLM ({s.vllm_mode})" if s.use_vllm else "transformers"),
        "",
        f"{'term':<36}{'GiB':>8}",
    ]
    for name, value in plan.terms.items():
        if value or name in ("weights", "gradients", "activations"):
            lines.append(f"{name:<36}{_gib(value):>8}")
    lines += [
        "",
        f"activations with checkpointing     {_gib(plan.activations_with_checkpointing):>8}",
        f"activations without checkpointing  {_gib(plan.activations_without_checkpointing):>8}",
        f"(unfused loss logits, fp32 + log-softmax, would be {_gib(plan.unfused_logits)} GiB; TRL 1.16 fuses them)",
        "",
        f"generation phase {_gib(plan.generation_phase):>8} GiB",
        f"training phase   {_gib(plan.training_phase):>8} GiB",
        f"predicted peak   {_gib(plan.peak):>8} GiB of {_gib(plan.limit)} GiB usable "
        f"({int((1 - HEADROOM) * 100)}% of {_gib(plan.gpu_bytes)}): " + ("fits" if plan.fits else "does NOT fit"),
    ]
    lines += [f"  {line}" for line in plan.advice]
    return "\n".join(lines)


def _dtype_name(weight_bytes: int) -> str:
    return {2: "16-bit", 4: "fp32"}[weight_bytes]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reson plan",
        description="Predict a GRPO recipe's peak GPU memory, term by term, and what to change if it does not fit.",
    )
    parser.add_argument("--config", required=True, help="training recipe YAML (configs/*.yaml)")
    parser.add_argument("--gpu", default="h100-80gb", help=f"GPU model, one of: {', '.join(GPUS)} (default h100-80gb)")
    parser.add_argument("--num-gpus", type=int, default=1, help="GPUs training together (default 1)")
    parser.add_argument("--strategy", choices=STRATEGIES, help="how the GPUs share the model (default ddp, or single)")
    parser.add_argument("--model", help="model id or folder, in place of the recipe's model_name_or_path")
    parser.add_argument(
        "--prompt-length", type=int, help=f"prompt tokens (default max_prompt_length or {DEFAULT_PROMPT_LENGTH})"
    )
    parser.add_argument("--dtype", help="weights' dtype, in place of the recipe's (bfloat16, float32, auto)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (bytes)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.num_gpus < 1:
            raise PlanError(f"--num-gpus {args.num_gpus}: give 1 or more")
        gpu_bytes = resolve_gpu(args.gpu)
        recipe = load_recipe(args.config)
        model = args.model or recipe.get("model_name_or_path") or recipe.get("model")
        if not model:
            raise PlanError(f"--config {args.config}: no model_name_or_path; add it or pass --model")
        arch, config_dtype = resolve_architecture(str(model))
        settings = settings_from_recipe(
            recipe, config_dtype, args.prompt_length, args.num_gpus, args.strategy, dtype=args.dtype
        )
    except PlanError as error:
        print(f"reson plan: {error}", file=sys.stderr)
        return 2
    plan = estimate(arch, settings, gpu_bytes)
    if args.json:
        print(json.dumps({"model": str(model), "gpu": args.gpu, **dataclasses.asdict(plan)}, indent=2))
    else:
        print(format_plan(plan, arch, settings, str(model), args.gpu))
    return 0 if plan.fits else 1


if __name__ == "__main__":
    sys.exit(main())
