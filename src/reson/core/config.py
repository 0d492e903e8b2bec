"""The training configuration: TRL's `GRPOConfig` and `ModelConfig` plus this project's fields, parsed by TRL's own
parser.

`ResonConfig` subclasses `trl.GRPOConfig` and `trl.ModelConfig`, the two dataclasses `trl grpo` parses, so a recipe
uses TRL's field names (`num_generations`, `max_completion_length`, `reward_weights`, `loss_type`, `beta`, `epsilon`,
`scale_rewards`, ...; for LoRA `use_peft`, `lora_r`, `lora_alpha`, `lora_dropout`, `lora_target_modules`, `dtype`,
`load_in_4bit`) with TRL's own documentation, and adds only what belongs to this project: the reward names, the
dataset mix, the prompt template and the emergence canaries. One class rather than TRL's two keeps one config object
for every command, and the one field both would define, `model_name_or_path`, is defined once, here. The config is a
`ModelConfig`, so `trl.get_peft_config(config)` and `trl.get_quantization_config(config)` build the adapter and the
4-bit settings exactly as TRL's script does. Each field is documented once, in its `metadata["help"]`, and `reson
train --help` lists every field with its default and help (TRL's `TrlParser`, the same parser `trl grpo` uses).

The model loads with `model_init_kwargs(config)`: ModelConfig's `dtype`, `model_revision` and `attn_implementation`
under the recipe's `model_init_kwargs`, whose keys win, the rule of TRL's own script. The full recipes set
`model_init_kwargs: {dtype: float32}`; the LoRA recipes set `dtype`, which is also the 4-bit compute dtype.

`load_config(recipe, argv)` reads a YAML recipe (a path, or the name of a recipe shipped in `reson/configs`),
applies command-line overrides and checks everything before a model loads. What TRL's parser lacks is added here and
only here: an unknown key or flag gets a did-you-mean, a YAML value of the wrong type is refused (TrlParser takes
YAML values as they are), every error is one `ConfigError` line naming the key, where it came from and what to
change, and the checks that only TRL's trainer would make after the model loads (names of rewards, datasets,
templates, the loss) are made up front.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.util
import json
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from trl import GRPOConfig, ModelConfig, TrlParser

from reson.core import data, folders, models
from reson.core.machine import cuda_problem
from reson.core.rewards import DEFAULT_TIMEOUT, REWARDS, TASKS, get_reward

COMMAND_LINE = "the command line"
RECIPES = Path(__file__).resolve().parents[1] / "configs"  # the recipes shipped with the package
SECRET_FIELDS = ("hub_token",)
DATASET_KEYS = ("name", "split", "weight")
# TRL 1.16 checks these only at the first loss or generation, minutes after the model has loaded; a test keeps the
# lists equal to the names TRL documents (tests/test_config.py).
LATE_CHECKED_CHOICES = {
    "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
    "vllm_importance_sampling_mode": ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"),
}


class ConfigError(ValueError):
    """A configuration problem, in one line that names the key, its source and what to change.

    Raised with ``key`` where the problem is one field's; ``load_config`` then says where that value came from.
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def dataset_spec(value: Any) -> dict:
    """One training dataset, ``{name, split, weight}``: from YAML a mapping (or a bare name), on the command line a
    YAML mapping (``--datasets '{name: gsm8k}' '{name: math, weight: 0.5}'``)."""
    if isinstance(value, str):
        value = yaml.safe_load(value) if value.lstrip().startswith("{") else {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ConfigError(f"{value!r}: write each dataset as {{name: gsm8k, split: train, weight: 1.0}}.", "datasets")
    unknown = sorted(set(value) - set(DATASET_KEYS))
    if unknown:
        raise ConfigError(f"{value['name']} has unknown key(s) {unknown}: use {', '.join(DATASET_KEYS)}.", "datasets")
    split, weight = value.get("split", "train"), value.get("weight", 1.0)
    if not isinstance(split, str):
        raise ConfigError(f"{value['name']}: split must be a name such as train or test, got {split!r}.", "datasets")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise ConfigError(f"{value['name']}: weight must be a positive number, got {weight!r}.", "datasets")
    return {"name": value["name"], "split": split, "weight": float(weight)}


@dataclass
class ResonConfig(GRPOConfig, ModelConfig):
    """GRPO training configuration: every `trl.GRPOConfig` and `trl.ModelConfig` field plus the fields below."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Base model to train: a local folder in Hugging Face format or a hub id (Qwen/Qwen2.5-3B)."},
    )
    rewards: list[str] = field(
        default_factory=lambda: ["accuracy", "format"],
        metadata={
            "help": "Reward functions by name (accuracy, format) or import path (my_lib.rewards.my_reward), weighed "
            "in this order by `reward_weights`."
        },
    )
    reward_timeout: float = field(
        default=DEFAULT_TIMEOUT,
        metadata={
            "help": "Wall-clock seconds allowed to grade one completion with math-verify before it scores as wrong; "
            "`reson eval` of the trained model uses the same value."
        },
    )
    datasets: list[dataset_spec] = field(
        default_factory=lambda: [{"name": "gsm8k", "split": "train", "weight": 1.0}],
        metadata={
            "help": "Training data: {name, split, weight} mappings. `name` is gsm8k, math, math500, aime24, amc23, "
            "synthetic, a hub id or a .jsonl/.parquet file; `weight` is its share of the mix."
        },
    )
    num_train_problems: int | None = field(
        default=None,
        metadata={"help": "Problems in the training mix, drawn by weight; null takes every row of every dataset."},
    )
    template: str = field(
        default="r1_zero",
        metadata={
            "help": "Prompt template: r1_zero, r1_zero_think (<think> prefilled), plain, or chat (the "
            "tokenizer's chat template)."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder holding local copies of the named datasets (laid out like shared/data); null uses the "
            "RESON_DATA_DIR environment variable, then the hub."
        },
    )
    canary_dataset: str | None = field(
        default=None,
        metadata={"help": "Dataset the emergence canaries come from; null uses the first training dataset's name."},
    )
    canary_split: str = field(
        default="test",
        metadata={"help": "Split of `canary_dataset` the canaries come from: held out from training."},
    )
    num_canaries: int = field(
        default=32,
        metadata={"help": "Fixed held-out prompts generated at every emergence step; 0 turns the canaries off."},
    )
    emergence_every: int = field(
        default=50,
        metadata={"help": "Generate from the canaries at step 0 and every this many steps; 0 turns them off."},
    )
    emergence_greedy: bool = field(
        default=False,
        metadata={"help": "Decode canaries greedily instead of sampling them as training does."},
    )
    torch_threads: int | None = field(
        default=None,
        metadata={
            "help": "Torch CPU threads for the run; null keeps torch's default (the machine's cores). Another count "
            "sums floats in another order, so a fixed count is what makes a CPU run repeat bit for bit."
        },
    )

    def __post_init__(self):
        # What the config was built from, before TRL derives fields (steps_per_generation, bf16, ...): written out
        # as the resolved config, and loads back to the same config.
        self.datasets = [dataset_spec(spec) for spec in self.datasets]
        self._values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        check_fields(self)
        self.lora_target_modules = _lora_targets(self.lora_target_modules)
        super().__post_init__()  # GRPOConfig's; ModelConfig's own checks are check_fields' (its 4/8-bit one too)


PROJECT_FIELDS = tuple(ResonConfig.__annotations__)  # the fields defined above: this project's
# ModelConfig's adapter and quantization fields: each means something only with use_peft
PEFT_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(ModelConfig)
    if f.name not in ("model_name_or_path", "model_revision", "dtype", "attn_implementation", "use_peft")
)
# TRL fields this project refuses with use_peft, and why (the adapter is merged for vLLM and for export as plain LoRA)
UNSUPPORTED_PEFT = {
    "use_dora": "DoRA's magnitude vector is not merged by the weight sync to vLLM and the export here",
    "lora_target_parameters": "it targets the expert parameters of mixture-of-experts models; these are dense",
    "lora_modules_to_save": "trained copies of whole modules are not merged by the weight sync to vLLM and the export",
    "load_in_8bit": "vLLM refuses 8-bit weights and the planner does not plan them; load_in_4bit is the quantized one",
}
HALF_DTYPES = ("float16", "bfloat16")


def model_init_kwargs(config: ResonConfig) -> dict[str, Any]:
    """What GRPOTrainer loads the model with: ModelConfig's dtype, model_revision and attn_implementation, under the
    recipe's model_init_kwargs, whose keys win (TRL's `trl grpo` script builds them the same way)."""
    kwargs = {"revision": config.model_revision, "attn_implementation": config.attn_implementation}
    kwargs["dtype"] = config.dtype
    if isinstance(config.model_init_kwargs, dict):
        kwargs.update(config.model_init_kwargs)
    return kwargs


def _lora_targets(value: Any) -> Any:
    """TRL's parser gives a list; peft takes "all-linear" only as a bare string, and any other bare string as a
    regular expression that must match a module's whole name, so `[q_proj]` stays a list (TRL's ModelConfig would
    make it the string "q_proj", which matches nothing)."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    return "all-linear" if names == ["all-linear"] else names


def check_fields(config: ResonConfig) -> None:
    """The checks TRL does not make, or makes only after the model has loaded; ConfigError(key) on the first."""
    try:
        kind = models.check_model(config.model_name_or_path, "model_name_or_path")
    except models.ModelPathError as error:
        raise ConfigError(str(error).removeprefix("model_name_or_path "), "model_name_or_path") from None
    if kind == "adapter":
        raise ConfigError(
            f"{config.model_name_or_path} is a LoRA adapter: train from its base model "
            f"({models.adapter_base(config.model_name_or_path)}), or merge it first (reson convert --merge_only).",
            "model_name_or_path",
        )
    if config.output_dir is None:
        raise ConfigError("missing: set the folder for checkpoints, logs and the final model.", "output_dir")
    if not config.rewards:
        raise ConfigError(f"empty: list the rewards by name ({', '.join(REWARDS)}) or import path.", "rewards")
    for name in config.rewards:
        if name not in REWARDS:  # an import path: imported and checked now, before any model loads
            try:
                get_reward(name)
            except ValueError as error:
                raise ConfigError(str(error), "rewards") from None
    if config.reward_weights is not None and len(config.reward_weights) != len(config.rewards):
        raise ConfigError(
            f"{len(config.reward_weights)} weights for {len(config.rewards)} rewards ({', '.join(config.rewards)}): "
            "give one weight per reward, in the same order.",
            "reward_weights",
        )
    if not config.reward_timeout > 0:
        raise ConfigError("must be a positive number of seconds to grade one completion.", "reward_timeout")
    if not config.datasets:
        raise ConfigError("empty: list at least one {name: gsm8k, split: train}.", "datasets")
    for spec in config.datasets:
        _check_dataset(spec["name"], spec["split"], "datasets")
    check_tasks(config.rewards, [spec["name"] for spec in config.datasets])
    _check_dataset(config.canary_dataset or config.datasets[0]["name"], config.canary_split, "canary_split")
    if config.template != "chat" and config.template not in data.TEMPLATES:
        choices = ", ".join([*data.TEMPLATES, "chat"])
        raise ConfigError(f"unknown template {config.template!r}: choose from {choices}.", "template")
    for key in ("num_canaries", "emergence_every"):
        if getattr(config, key) < 0:
            raise ConfigError("must be 0 (off) or a positive number.", key)
    if config.num_train_problems is not None and config.num_train_problems < 1:
        raise ConfigError("must be a positive number of problems, or null for all of them.", "num_train_problems")
    if config.torch_threads is not None and config.torch_threads < 1:
        raise ConfigError("must be a positive number of threads, or null for torch's default.", "torch_threads")
    generation = config.generation_kwargs or {}
    if isinstance(generation, str):  # from the command line: JSON, which TrainingArguments reads later
        try:
            generation = json.loads(generation) if generation.strip() else {}
        except ValueError:
            raise ConfigError(
                f"{generation!r} is not a JSON mapping: write it as '{{\"stop\": [...]}}'.", "generation_kwargs"
            ) from None
    if not isinstance(generation, dict):
        raise ConfigError(f"{generation!r} is not a mapping of generation settings.", "generation_kwargs")
    stops = generation.get("stop") or generation.get("stop_strings")
    if stops and not config.use_vllm:
        raise ConfigError(
            "stop strings work with vLLM generation only (TRL's transformers path gives generate() no tokenizer, so "
            "it fails at the first step): set use_vllm: true, or remove the stop.",
            "generation_kwargs",
        )
    if stops and config.mask_truncated_completions:
        raise ConfigError(
            "a completion stopped at a stop string ends without EOS, so TRL counts it as truncated and would mask the "
            "answered completions out of the loss: set mask_truncated_completions: false.",
            "mask_truncated_completions",
        )
    for key, choices in LATE_CHECKED_CHOICES.items():
        if getattr(config, key) not in choices:
            raise ConfigError(f"{getattr(config, key)!r} is not one of {', '.join(choices)}.", key)
    _check_model_settings(config)


def _check_model_settings(config: ResonConfig) -> None:
    """ModelConfig's fields: the dtype, and the adapter and 4-bit settings that TRL or peft would refuse only after
    the model has loaded, or not at all."""
    dtypes = ("auto", "float32", *HALF_DTYPES)
    if config.dtype not in dtypes:  # argparse's choices do not guard YAML values
        raise ConfigError(f"{config.dtype!r} is not one of {', '.join(dtypes)}.", "dtype")
    given = (config.model_init_kwargs or {}).get("dtype") if isinstance(config.model_init_kwargs, dict) else None
    if given is not None and config.dtype != "float32" and str(given) != config.dtype:
        raise ConfigError(
            f"{config.dtype} disagrees with model_init_kwargs' dtype {given}, which would win: set the weights' dtype "
            "in one place.",
            "dtype",
        )
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    if not config.use_peft:
        for key in PEFT_FIELDS:
            if getattr(config, key) != defaults[key]:
                raise ConfigError(
                    f"{getattr(config, key)!r} has no effect while use_peft is false: set use_peft: true to train "
                    f"LoRA adapters on the frozen base, or remove {key}.",
                    key,
                )
        return
    for key, why in UNSUPPORTED_PEFT.items():
        if getattr(config, key) != defaults[key]:
            raise ConfigError(f"not supported here: {why}. Remove it.", key)
    if config.lora_task_type != "CAUSAL_LM":
        raise ConfigError(f"{config.lora_task_type!r}: GRPO trains a causal LM: set CAUSAL_LM.", "lora_task_type")
    if config.lora_r < 1 or config.lora_alpha <= 0:
        key = "lora_r" if config.lora_r < 1 else "lora_alpha"
        raise ConfigError(f"must be positive, got {getattr(config, key)}.", key)
    if not 0 <= config.lora_dropout < 1:
        raise ConfigError(f"must be in [0, 1), got {config.lora_dropout}.", "lora_dropout")
    if config.lora_dropout > 0 and not config.disable_dropout:
        raise ConfigError(
            f"{config.lora_dropout} (TRL's default) stays on while GRPO samples and scores completions (the trainer "
            "generates in train mode), so the sampled policy is not the one trained: set lora_dropout: 0.0 (LoRA "
            "Without Regret's setting), or disable_dropout: true.",
            "lora_dropout",
        )
    _check_targets(config)
    if config.load_in_4bit and config.use_vllm:
        raise ConfigError(
            "the weight sync to vLLM fails on a 4-bit base (TRL #4973: merged 16-bit tensors where vLLM expects 4-bit "
            "ones): set use_vllm: false to generate with transformers, or load_in_4bit: false.",
            "load_in_4bit",
        )
    if config.load_in_4bit and config.dtype not in HALF_DTYPES:
        raise ConfigError(
            f"a 4-bit base computes in `dtype`, here {config.dtype}: set dtype: float16 (T4, V100) or bfloat16 "
            "(Ampere and newer).",
            "dtype",
        )
    base = str(model_init_kwargs(config)["dtype"])
    bf16 = not config.fp16 if config.bf16 is None else config.bf16  # TRL turns an unset bf16 on unless fp16 is
    autocast = "fp16" if config.fp16 else "bf16" if bf16 else None
    if (base, autocast) in (("bfloat16", "fp16"), ("float16", "bf16")):
        other = "bf16" if autocast == "fp16" else "fp16"
        raise ConfigError(
            f"a {base} base trained under {autocast} autocast casts every frozen weight at every step: set {other}: "
            f"true and {autocast}: false, or a dtype to match.",
            "dtype",
        )
    if config.sync_ref_model:
        raise ConfigError(
            "TRL cannot sync a reference model with a PEFT model: set sync_ref_model: false.", "sync_ref_model"
        )
    if config.use_transformers_continuous_batching:
        raise ConfigError(
            "TRL casts the whole model to 16-bit for continuous batching, the fp32 adapters too, for good: set "
            "use_transformers_continuous_batching: false.",
            "use_transformers_continuous_batching",
        )


def _check_targets(config: ResonConfig) -> None:
    targets = _lora_targets(config.lora_target_modules)
    if targets is None:
        raise ConfigError(
            "null lets peft pick (q_proj and v_proj for Qwen2: attention alone, which LoRA Without Regret found "
            "worse than every layer): name them, e.g. all-linear.",
            "lora_target_modules",
        )
    if targets == "all-linear":
        return
    known = models.linear_layers(config.model_name_or_path)
    for name in targets:
        layer = name.rsplit(".", 1)[-1]
        if layer in ("lm_head", "embed_tokens"):
            raise ConfigError(
                f"{name}: TRL computes log-probs from the LM head's weight itself (tied to embed_tokens in Qwen2.5), "
                "so it refuses an adapter there once the model has loaded: target the decoder's linear layers.",
                "lora_target_modules",
            )
        if known is not None and layer not in known:
            raise ConfigError(
                f"{name}: {config.model_name_or_path} has no such layer; its linear layers are {', '.join(known)} "
                "(or all-linear for every one).",
                "lora_target_modules",
            )


def check_tasks(rewards: list[str], tasks_or_names: list[str]) -> None:
    """A task's reward only on that task's data: accuracy on maths problems, countdown on Countdown ones. Named
    datasets are checked here; files and hub ids once their rows are read (`reson train` does, before the model
    loads). ConfigError otherwise."""
    found = {data.task(item) if item not in (data.MATH, data.COUNTDOWN) else item for item in tasks_or_names} - {None}
    for reward in rewards:
        wanted = TASKS.get(reward)
        if wanted is not None and found - {wanted}:
            other = ", ".join(sorted(found - {wanted}))
            raise ConfigError(
                f"{reward} grades {wanted} problems, but the training data holds {other} problems: use rewards "
                "[countdown, format] for Countdown, [accuracy, format] for maths.",
                "rewards",
            )


def _check_dataset(name: str, split: str | None, key: str) -> None:
    try:
        data.check_dataset(name, split)
    except ValueError as error:
        raise ConfigError(str(error), key) from None


def check_machine(config: ResonConfig) -> None:
    """The checks that depend on this machine: bf16 needs a GPU that runs it natively; use_vllm needs vLLM; use_peft
    needs peft; a 4-bit base needs a CUDA GPU and bitsandbytes."""
    if config.bf16 and not config.use_cpu:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"bf16 is on, but {cuda_problem()}: set bf16: false to train on the CPU.", "bf16")
        if not torch.cuda.is_bf16_supported(including_emulation=False):
            name = torch.cuda.get_device_name(0)
            raise ConfigError(
                f"bf16 is on, but the {name} only emulates it (slowly): set bf16: false and fp16: true.", "bf16"
            )
    if config.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "vLLM is not installed: `pip install 'reson-llm[vllm]'` (Linux + CUDA), or set use_vllm: false to "
            "generate with transformers.",
            "use_vllm",
        )
    if config.use_peft and importlib.util.find_spec("peft") is None:
        raise ConfigError("use_peft needs peft: `pip install 'reson-llm[train]'`.", "use_peft")
    if config.load_in_4bit:
        import torch

        if config.use_cpu or not torch.cuda.is_available():
            why = "use_cpu is on" if config.use_cpu else cuda_problem()
            raise ConfigError(
                f"4-bit base weights need bitsandbytes' CUDA kernels, but {why}: set load_in_4bit: false to train "
                "the 16-bit base.",
                "load_in_4bit",
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("4-bit base weights need bitsandbytes: `pip install bitsandbytes`.", "load_in_4bit")


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def recipe_path(recipe: str | Path) -> Path:
    """A recipe file: a path, or the name of a recipe shipped with the package (``grpo_debug``); else ConfigError."""
    path = Path(recipe).expanduser()
    if path.is_file():
        return path
    shipped = RECIPES / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
    raise ConfigError(f"config {recipe}: no such file, and no shipped recipe of that name (shipped: {names}).")


def config_parser(prog: str = "reson train") -> TrlParser:
    """TRL's parser over `ResonConfig`: every field as ``--name value``, with its help and default."""
    return TrlParser(
        (ResonConfig,),
        prog=prog,
        usage=f"{prog} [--config RECIPE] [--resume] [--overwrite] [--check] [--FIELD VALUE ...]",
        description="Train a base model with GRPO (R1-Zero style) from a YAML recipe; CLI values override the YAML.",
        exit_on_error=False,
    )


def load_config(
    recipe: str | Path | None = None,
    argv: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
    *,
    machine: bool = True,
) -> ResonConfig:
    """The checked config from a recipe (a path or a shipped recipe's name), then ``overrides`` (a dict, from Python),
    then ``argv`` (``["--key", "value", ...]``, TRL's command-line syntax); later sources win.

    Raises ConfigError before any model loads. ``machine=False`` leaves out the checks that depend on this machine
    (for `reson plan` and the notebook, which read GPU recipes on a laptop): such a config is for reading only, never
    for training, since it was parsed as for the CPU and TRL caches the device it resolves while parsing.
    """
    parser = config_parser()
    sources: dict[str, str] = {}
    values: dict[str, Any] = {}
    path = recipe_path(recipe) if recipe is not None else None
    for source, given in ((path, _read_recipe(path) if path is not None else {}), ("overrides", overrides or {})):
        for key, value in given.items():
            values[key] = _checked_value(parser, key, value, str(source))
            sources[key] = str(source if source != "overrides" else "the overrides")
    argv = list(argv)
    for key in _command_line_keys(parser, argv):
        sources[key] = COMMAND_LINE
    use_cpu = values.get("use_cpu", False)
    if not machine:  # TRL refuses bf16 on a machine without a GPU: parse as on the GPU the recipe is for
        values["use_cpu"] = True
    parser.set_defaults_with_config(**values)
    try:
        (config,) = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    except argparse.ArgumentError as error:
        key = error.argument_name.split("/")[0].lstrip("-").replace("-", "_") if error.argument_name else None
        raise ConfigError(f"{_where(key, sources)}: {error.message}") from None
    except ConfigError as error:
        raise ConfigError(f"{_where(error.key, sources)}: {error}", error.key) from None
    except (ValueError, TypeError) as error:  # TRL's and transformers' own checks in __post_init__
        if "support bf16" in str(error):  # transformers refuses bf16 without a GPU: say why, and what to set
            raise ConfigError(
                f"{_where('bf16', sources)}: bf16 is on, but {cuda_problem()}: set bf16: false."
            ) from None
        where = ", ".join(sorted(set(sources.values()))) or "the defaults"
        raise ConfigError(f"{where}: {' '.join(str(error).split())}") from None
    if not machine:
        config.use_cpu = config._values["use_cpu"] = use_cpu
    else:
        try:
            check_machine(config)
        except ConfigError as error:
            raise ConfigError(f"{_where(error.key, sources)}: {error}", error.key) from None
    return config


def _read_recipe(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML: fix the syntax.") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of `key: value` lines.")
    return loaded


def _checked_value(parser: TrlParser, key: str, value: Any, source: str) -> Any:
    """A value from YAML or Python, checked against its field's type, which TrlParser checks only for strings (the
    command line's and YAML's quoted ones); an unknown key gets a did-you-mean."""
    if not any(action.dest == key for action in parser._actions):
        raise ConfigError(
            f"{key} in {source}: unknown key.{_did_you_mean(parser, key)} Remove it, or use a "
            "GRPOConfig, ModelConfig or reson field name (reson train --help lists them)."
        )
    hint = _field_types()[key]
    if isinstance(hint, type) and hint is not str and not isinstance(value, list | dict | bool | int | float):
        return value  # a custom type (dataset_spec) checks its own values
    if value is not None and not isinstance(value, str) and not _admits(hint, value):
        raise ConfigError(f"{key} in {source}: {value!r} ({type(value).__name__}) is not {_describe(hint)}.", key)
    return value


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(ResonConfig)


def _admits(hint: Any, value: Any) -> bool:
    """Whether a (non-string) YAML value fits a field's annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_admits(arg, value) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(isinstance(v, str) or _admits(args[0], v) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint in (bool, int, float):
        return (
            isinstance(value, bool)
            if hint is bool
            else not isinstance(value, bool)
            and (isinstance(value, int | float) if hint is float else isinstance(value, int))
        )
    return hint is not type(None) and hint is not str


def _describe(hint: Any) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args if arg is not type(None))
    if typing.get_origin(hint) is list:
        return f"a list of {_describe(args[0])}"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text", dict: "a mapping"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _command_line_keys(parser: TrlParser, argv: list[str]) -> list[str]:
    """The fields ``argv`` sets; ConfigError with a did-you-mean for a flag the parser does not know."""
    keys = []
    for token in argv:
        if not token.startswith("--"):
            continue
        flag = token.split("=", 1)[0]
        action = parser._option_string_actions.get(flag)
        if action is None:
            name = flag[2:].replace("-", "_")
            raise ConfigError(
                f"{flag} on the command line: unknown option.{_did_you_mean(parser, name)} "
                "`reson train --help` lists every field."
            )
        keys.append(action.dest)
    return keys


def _did_you_mean(parser: TrlParser, key: str) -> str:
    names = [a.dest for a in parser._actions if a.dest != "help"]
    close = difflib.get_close_matches(key, names, n=2, cutoff=0.75)
    return f" Did you mean {' or '.join(close)}?" if close else ""


def _where(key: str | None, sources: dict[str, str]) -> str:
    if key is None:
        return ", ".join(sorted(set(sources.values()))) or "the config"
    source = sources.get(key)
    if source is None:
        return f"{key} (default)"
    if source == COMMAND_LINE:
        return f"--{key} on the command line"
    return f"{key} in {source}"


# ---------------------------------------------------------------------------------------------------------------------
# Writing a config out


def resolved_values(config: ResonConfig) -> dict[str, Any]:
    """Every field as the config was built (defaults filled in), this project's fields first; loads back as is."""
    values = dict(config._values)
    ordered = {name: values[name] for name in PROJECT_FIELDS}
    ordered.update((k, v) for k, v in values.items() if k not in ordered and k not in SECRET_FIELDS)
    return {k: _plain(v) for k, v in ordered.items()}


def _plain(value: Any) -> Any:
    if hasattr(value, "value") and not isinstance(value, str | int | float):  # an enum
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return None  # accelerate object configs are not recipe settings
    return value


def save_resolved_config(config: ResonConfig, output_dir: str | Path | None = None, note: str = "") -> Path:
    """Write the fully resolved config as YAML into output_dir (atomically) and return its path."""
    output_dir = Path(output_dir or config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / folders.RUN_CONFIG
    text = "# Fully resolved `reson train` config: every field, defaults filled in. Reload with --config.\n"
    text += "".join(f"# {line}\n" for line in note.splitlines())
    text += yaml.safe_dump(resolved_values(config), sort_keys=False, default_flow_style=None, width=119)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
