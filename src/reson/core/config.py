"""The training configuration: TRL's `GRPOConfig` plus this project's fields, parsed by TRL's own parser.

`ResonConfig` subclasses `trl.GRPOConfig`, so a recipe uses TRL's field names (`num_generations`,
`max_completion_length`, `reward_weights`, `loss_type`, `beta`, `epsilon`, `scale_rewards`, ...) with TRL's own
documentation, and adds only what belongs to this project: the model, the reward names, the dataset mix, the prompt
template and the emergence canaries. Each field is documented once, in its `metadata["help"]`, and `reson train
--help` lists every field with its default and help (TRL's `TrlParser`, the same parser `trl grpo` uses).

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
from trl import GRPOConfig, TrlParser

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
class ResonConfig(GRPOConfig):
    """GRPO training configuration: every `trl.GRPOConfig` field plus the fields below."""

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
        super().__post_init__()


PROJECT_FIELDS = tuple(
    f.name for f in dataclasses.fields(ResonConfig) if f.name not in GRPOConfig.__dataclass_fields__
)


def check_fields(config: ResonConfig) -> None:
    """The checks TRL does not make, or makes only after the model has loaded; ConfigError(key) on the first."""
    try:
        models.check_model(config.model_name_or_path, "model_name_or_path")
    except models.ModelPathError as error:
        raise ConfigError(str(error).removeprefix("model_name_or_path "), "model_name_or_path") from None
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
    """The checks that depend on this machine: bf16 needs a GPU that runs it natively; use_vllm needs vLLM."""
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
            "GRPOConfig / reson field name (reson train --help lists them)."
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
