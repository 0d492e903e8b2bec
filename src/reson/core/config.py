"""The training configuration: TRL's `GRPOConfig` plus this project's own fields, loaded from YAML and checked.

`ResonConfig` subclasses `trl.GRPOConfig`, so a recipe uses TRL's field names (`num_generations`,
`max_completion_length`, `reward_weights`, `loss_type`, `beta`, `epsilon`, `scale_rewards`, ...) with TRL's own
documentation, and adds only what belongs to this project: the model, the reward names, the dataset mix, the
prompt template and the emergence canaries. Each field is documented once, in its `metadata["help"]`.

`load_config(path, overrides)` reads the YAML, applies `--key value` overrides, and checks everything it can
before a model loads, raising `ConfigError` with one line that names the key, where it came from and what to
change. argparse `choices` would not guard values that come from YAML, so every name is checked here.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.util
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from trl import GRPOConfig

from reson.core.rewards import DEFAULT_TIMEOUT

COMMAND_LINE = "the command line"
# The file a resolved config is written to inside output_dir.
RESOLVED_CONFIG_NAME = "train_config.yaml"
DATASET_SPEC_KEYS = ("name", "split", "weight")
# TRL fields whose valid values GRPOConfig documents but does not check when the config is built.
TRL_CHOICES = {
    "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
    "scale_rewards": ("group", "batch", "none"),
    "vllm_mode": ("colocate", "server"),
    "importance_sampling_level": ("token", "sequence"),
    "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum"),
}
# Never written into a resolved config file.
SECRET_FIELDS = ("hub_token",)
# A Hugging Face Hub repo id: "name" or "namespace/name" (letters, digits, '-', '_', '.'; at most 96 characters).
HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")


class ConfigError(ValueError):
    """A configuration problem, in one line that names the key, its source and what to change."""


@dataclass
class ResonConfig(GRPOConfig):
    """GRPO training configuration: every `trl.GRPOConfig` field plus the fields below."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Base model to train: a local folder in Hugging Face format or a hub id (Qwen/Qwen2.5-3B)."},
    )
    rewards: list[str] = field(
        default_factory=lambda: ["accuracy", "format"],
        metadata={
            "help": "Reward functions by name (reson.core.rewards.REWARDS), weighed in this order by `reward_weights`."
        },
    )
    reward_timeout: float = field(
        default=DEFAULT_TIMEOUT,
        metadata={
            "help": "Wall-clock seconds allowed to grade one completion with math-verify before it scores as wrong "
            "(reson.core.rewards.DEFAULT_TIMEOUT); `reson eval` of the trained model uses the same value."
        },
    )
    datasets: list[dict] = field(
        default_factory=lambda: [{"name": "gsm8k", "split": "train", "weight": 1.0}],
        metadata={
            "help": "Training data: a list of {name, split, weight}. `name` is a dataset name (reson.core.data) "
            "(gsm8k, math, ...) or a path to a .jsonl/.parquet file; `weight` is its share of the mix."
        },
    )
    num_train_problems: int | None = field(
        default=None,
        metadata={"help": "Problems in the training mix, drawn by weight; null takes every row of every dataset."},
    )
    template: str = field(
        default="r1_zero",
        metadata={"help": "Prompt template (reson.core.data.TEMPLATES), or 'chat' for the tokenizer's chat template."},
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

    def __post_init__(self):
        # What the config was built from, before TRL derives fields (steps_per_generation, bf16, ...): written
        # out as the resolved config, and loads back to the same config.
        self._values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        super().__post_init__()


PROJECT_FIELDS = tuple(
    f.name for f in dataclasses.fields(ResonConfig) if f.name not in GRPOConfig.__dataclass_fields__
)


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    check_environment: bool = True,
) -> ResonConfig:
    """The validated config from a YAML file and overrides (a dict, or `["--key", "value", ...]` argv tokens).

    Raises ConfigError before any model loads. `check_environment=False` skips the checks that depend on this
    machine (bf16 needs a CUDA GPU, use_vllm needs vLLM) and returns the checked values as a dict instead of a
    built config, since TRL itself refuses to build a bf16 config without a GPU.
    """
    values, sources = parse_config(path, overrides)
    if not check_environment:
        return values
    check_machine(values, sources)
    return build_config(values, sources)


def parse_config(
    path: str | Path | None = None, overrides: dict[str, Any] | list[str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Read, merge and statically validate: returns (values, where each value came from)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found: pass --config with the path to a YAML recipe.")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise ConfigError(f"{path}{line}: not valid YAML: fix the syntax.") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of `key: value` lines.")
        values.update(loaded)
        sources.update(dict.fromkeys(loaded, str(path)))
    if isinstance(overrides, list | tuple):
        overrides = parse_overrides(overrides)
    for key, value in (overrides or {}).items():
        values[key] = value
        sources[key] = COMMAND_LINE
    validate(values, sources)
    return values, sources


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """`["--key", "value", "--flag", "--other=1"]` -> {"key": "value" (typed as YAML), "flag": True, "other": 1}."""
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"unexpected argument {token!r} on the command line: write overrides as --key value.")
        key, eq, raw = token[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                raw = argv[i + 1]
                i += 1
            else:
                raw = "true"  # a bare --flag
        overrides[key] = _yaml_scalar(raw)
        i += 1
    return overrides


def _yaml_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def build_config(values: dict[str, Any], sources: dict[str, str]) -> ResonConfig:
    """Construct the ResonConfig; TRL's own checks surface as ConfigError naming the config's source."""
    try:
        return ResonConfig(**values)
    except (ValueError, TypeError) as err:
        where = ", ".join(sorted(set(sources.values()))) or "the defaults"
        message = " ".join(str(err).split())
        raise ConfigError(f"{where}: {message}") from None


# ---------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------


def _where(key: str, sources: dict[str, str]) -> str:
    source = sources.get(key)
    if source is None:
        return f"{key} (default)"
    if source == COMMAND_LINE:
        return f"--{key} on the command line"
    return f"{key} in {source}"


def _fail(key: str, sources: dict[str, str], problem: str) -> typing.NoReturn:
    raise ConfigError(f"{_where(key, sources)}: {problem}")


def validate(values: dict[str, Any], sources: dict[str, str]) -> None:
    """Check keys, types and names in place (coercing "1e-6" to a float); raise ConfigError on the first problem."""
    hints = field_types()
    defaults = field_defaults()
    for key in list(values):
        if key not in hints:
            close = _close_names(key, hints)
            hint = f" Did you mean {close}?" if close else ""
            _fail(key, sources, f"unknown key.{hint} Remove it, or use a GRPOConfig / reson field name.")
        values[key] = _coerce(values[key], hints[key])
        if not _matches(values[key], hints[key]):
            _fail(
                key,
                sources,
                f"expected {_type_name(hints[key])}, got {values[key]!r} ({type(values[key]).__name__}).",
            )
    get = lambda key: values.get(key, defaults[key])  # noqa: E731

    for key, choices in TRL_CHOICES.items():
        value = get(key)
        if isinstance(value, bool) and key == "scale_rewards":
            continue  # TRL maps True/False to group/none
        if value not in choices:
            _fail(key, sources, f"{value!r} is not one of {', '.join(choices)}.")

    # The model: a local folder, or something shaped like a hub id (checked without any download).
    model = get("model_name_or_path")
    if model is None:
        _fail("model_name_or_path", sources, "missing: set it to a local model folder or a hub id (Qwen/Qwen2.5-3B).")
    _check_model_path(model, sources)
    if get("output_dir") is None:
        _fail("output_dir", sources, "missing: set the folder for checkpoints, logs and the final model.")

    # Rewards and their weights.
    from reson.core.rewards import REWARDS

    rewards = get("rewards")
    if not rewards:
        _fail("rewards", sources, f"empty: list at least one of {', '.join(REWARDS)}.")
    for name in rewards:
        if name not in REWARDS:
            _fail("rewards", sources, f"unknown reward {name!r}: choose from {', '.join(REWARDS)}.")
    weights = get("reward_weights")
    if weights is not None and len(weights) != len(rewards):
        _fail(
            "reward_weights",
            sources,
            f"{len(weights)} weights for {len(rewards)} rewards ({', '.join(rewards)}): give one weight per reward, "
            "in the same order.",
        )
    if get("reward_timeout") <= 0:
        _fail("reward_timeout", sources, "must be positive (seconds to grade one completion).")

    # Data, template and canaries.
    values["datasets"] = [_check_dataset(spec, i, sources) for i, spec in enumerate(get("datasets"))]
    if not values["datasets"]:
        _fail("datasets", sources, "empty: list at least one {name: gsm8k, split: train}.")
    if get("canary_dataset") is not None:
        _check_dataset_name(get("canary_dataset"), "canary_dataset", sources)
    canary_source = get("canary_dataset") or values["datasets"][0]["name"]
    _check_dataset_name(canary_source, "canary_split", sources, get("canary_split"))
    _check_template(get("template"), sources)
    for key in ("num_canaries", "emergence_every"):
        if get(key) < 0:
            _fail(key, sources, "must be 0 (off) or a positive number.")
    if get("num_train_problems") is not None and get("num_train_problems") < 1:
        _fail("num_train_problems", sources, "must be a positive number of problems, or null for all of them.")

    # Batch shape: the generation batch holds whole groups of num_generations completions.
    num_generations = get("num_generations")
    if num_generations is None or num_generations < 2:
        _fail("num_generations", sources, "GRPO needs at least 2 completions per prompt to compare them: set it >= 2.")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    per_device = get("per_device_train_batch_size")
    if get("generation_batch_size") is not None:
        batch, key = get("generation_batch_size"), "generation_batch_size"
        how = f"generation_batch_size ({batch})"
    else:
        steps = get("steps_per_generation") or get("gradient_accumulation_steps")
        batch, key = per_device * world_size * steps, "per_device_train_batch_size"
        how = (
            f"the generation batch (per_device_train_batch_size {per_device} x {world_size} processes x {steps} steps)"
        )
        how += f" = {batch}"
    if batch % num_generations:
        _fail(
            key,
            sources,
            f"{how} is not divisible by num_generations ({num_generations}): make it a multiple of {num_generations}.",
        )


def _check_model_path(model: str, sources: dict[str, str]) -> None:
    path = Path(model).expanduser()
    looks_like_path = model.startswith(("/", ".", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model
    if path.is_dir():
        if not (path / "config.json").is_file():
            _fail("model_name_or_path", sources, f"folder {model} has no config.json: point it at a saved model.")
        return
    if looks_like_path:
        _fail(
            "model_name_or_path",
            sources,
            f"local folder {model} does not exist: build or download the model there, or point the key at one.",
        )
    if not HUB_ID.match(model):
        _fail(
            "model_name_or_path",
            sources,
            f"{model!r} is neither an existing local folder nor a hub id (namespace/name): fix the name or path.",
        )


def _check_dataset(spec: Any, index: int, sources: dict[str, str]) -> dict:
    key = f"datasets[{index}]"
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        _fail("datasets", sources, f"{key} is {spec!r}: write each dataset as {{name: gsm8k, split: train}}.")
    unknown = set(spec) - set(DATASET_SPEC_KEYS)
    if unknown:
        _fail("datasets", sources, f"{key} has unknown key(s) {sorted(unknown)}: use {', '.join(DATASET_SPEC_KEYS)}.")
    if not isinstance(spec.get("name"), str):
        _fail("datasets", sources, f"{key} needs a `name` (a dataset name or a .jsonl/.parquet path).")
    split = spec.get("split", "train")
    if not isinstance(split, str):
        _fail("datasets", sources, f"{key}.split must be a string such as train or test, got {split!r}.")
    _check_dataset_name(spec["name"], "datasets", sources, split)
    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        _fail("datasets", sources, f"{key}.weight must be a positive number, got {weight!r}.")
    return {"name": spec["name"], "split": split, "weight": float(weight)}


def _check_dataset_name(name: str, key: str, sources: dict[str, str], split: str | None = None) -> None:
    from reson.core.data import DATASET_NAMES, FILE_SUFFIXES, HUB_DATASETS

    if name in DATASET_NAMES:
        splits = HUB_DATASETS[name][2] if name in HUB_DATASETS else ("train", "test")
        if split is not None and split not in splits:
            _fail(key, sources, f"{name} has no {split!r} split: choose one of {', '.join(splits)}.")
        return
    if name.endswith(FILE_SUFFIXES) or name.startswith(("/", ".", "~")):
        if not Path(name).expanduser().is_file():
            _fail(key, sources, f"dataset file {name} not found: fix the path.")
        return
    if "/" in name and HUB_ID.match(name.partition(":")[0]):
        return  # a hub dataset in GSM8K or MATH form, fetched when the data loads
    _fail(
        key,
        sources,
        f"unknown dataset {name!r}: choose from {', '.join(DATASET_NAMES)}, a hub id (owner/name) or a "
        f"{'/'.join(FILE_SUFFIXES)} path.",
    )


def _check_template(template: str, sources: dict[str, str]) -> None:
    from reson.core.data import TEMPLATES

    if template != "chat" and template not in TEMPLATES:
        _fail("template", sources, f"unknown template {template!r}: choose from {', '.join([*TEMPLATES, 'chat'])}.")


def check_machine(values: dict[str, Any], sources: dict[str, str]) -> None:
    """The checks that depend on this machine: bf16 needs a CUDA GPU that supports it; use_vllm needs vLLM."""
    defaults = field_defaults()
    get = lambda key: values.get(key, defaults[key])  # noqa: E731
    bf16 = get("bf16")
    if (bf16 or (bf16 is None and not get("fp16"))) and not get("use_cpu"):
        import torch

        if not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
            problem = "bf16 is on" if bf16 else "bf16 is unset, and TRL turns it on"
            _fail(
                "bf16",
                sources,
                f"{problem}, but this machine has no CUDA GPU with bf16: set bf16: false (CPU or older GPUs).",
            )
    if get("use_vllm") and importlib.util.find_spec("vllm") is None:
        _fail(
            "use_vllm",
            sources,
            "vLLM is not installed: `pip install 'reson-llm[vllm]'` (Linux + CUDA), or set use_vllm: false to "
            "generate with transformers.",
        )


# ---------------------------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------------------------


def field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(ResonConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(ResonConfig)}


def field_defaults() -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(ResonConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out


def _union_args(hint) -> tuple | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any or hint is object:
        return True
    args = _union_args(hint)
    if args is not None:
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint) or value in {m.value for m in hint}
    if hint is list or origin is list:
        inner = typing.get_args(hint)
        return isinstance(value, list) and (not inner or all(_matches(v, inner[0]) for v in value))
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    return True  # a TRL/accelerate object type: left to TRL's own checks


def _admits(hint: Any, kind: type) -> bool:
    args = _union_args(hint)
    if args is not None:
        return any(_admits(a, kind) for a in args)
    return hint is kind


def _coerce(value: Any, hint: Any) -> Any:
    """YAML reads 1e-6 as a string (YAML 1.1 wants 1.0e-6) and ints where floats are meant: fix those two."""
    if isinstance(value, str) and not _admits(hint, str):
        for kind in (int, float):
            if _admits(hint, kind):
                try:
                    return kind(value)
                except ValueError:
                    pass
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _type_name(hint: Any) -> str:
    args = _union_args(hint)
    if args is not None:
        return " or ".join(dict.fromkeys(_type_name(a) for a in args))
    if hint is type(None):
        return "null"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + "/".join(str(m.value) for m in hint)
    origin = typing.get_origin(hint)
    if origin is list:
        inner = typing.get_args(hint)
        return f"a list of {_type_name(inner[0])}" if inner else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    if origin is typing.Literal:
        return "one of " + "/".join(map(repr, typing.get_args(hint)))
    return getattr(hint, "__name__", str(hint))


def _close_names(key: str, hints: dict) -> str:
    import difflib

    return " or ".join(difflib.get_close_matches(key, list(hints), n=2, cutoff=0.75))


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


def resolved_values(config: ResonConfig) -> dict[str, Any]:
    """Every field as the config was built (defaults filled in), this project's fields first; loads back as is."""
    values = dict(config._values)
    ordered = {name: values[name] for name in PROJECT_FIELDS}
    ordered.update((k, v) for k, v in values.items() if k not in ordered and k not in SECRET_FIELDS)
    return {k: _plain(v) for k, v in ordered.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return None  # accelerate object configs are not recipe settings
    return value


def save_resolved_config(config: ResonConfig, output_dir: str | Path | None = None) -> Path:
    """Write the fully resolved config as YAML into output_dir (atomically) and return its path."""
    output_dir = Path(output_dir or config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RESOLVED_CONFIG_NAME
    text = "# Fully resolved `reson train` config: every field, defaults filled in. Reload with --config.\n"
    text += yaml.safe_dump(resolved_values(config), sort_keys=False, default_flow_style=None, width=119)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def field_help() -> list[tuple[str, str, Any]]:
    """(name, help, default) for this project's own fields, for `reson train --help`."""
    defaults = field_defaults()
    return [
        (f.name, f.metadata.get("help", ""), defaults[f.name])
        for f in dataclasses.fields(ResonConfig)
        if f.name in PROJECT_FIELDS
    ]
