"""The training config: TRL's parser over ResonConfig, every shipped recipe through the real loader, each bad input
one clear line naming the key and where it came from."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from trl import GRPOConfig

from reson.core.config import (
    LATE_CHECKED_CHOICES,
    PROJECT_FIELDS,
    RECIPES,
    ConfigError,
    ResonConfig,
    config_parser,
    load_config,
    resolved_values,
    save_resolved_config,
)
from reson.core.folders import RUN_CONFIG

CONFIGS = sorted(RECIPES.glob("*.yaml"))

# A small valid recipe; a hub id is only checked for its form, so nothing is downloaded.
BASE = {
    "model_name_or_path": "Qwen/Qwen2.5-0.5B",
    "output_dir": "runs/test",
    "bf16": False,
    "use_vllm": False,
    "rewards": ["accuracy", "format"],
    "reward_weights": [1.0, 0.2],
    "datasets": [{"name": "gsm8k", "split": "train"}],
    "num_generations": 4,
    "per_device_train_batch_size": 8,
}


def write_recipe(tmp_path: Path, **changes) -> Path:
    values = {**BASE, **changes}
    values = {k: v for k, v in values.items() if v is not ...}  # `...` removes a key
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def error_for(path, argv=(), machine=True) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, argv, machine=machine)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


def test_the_recipes_are_shipped():
    names = {p.name for p in CONFIGS}
    assert {
        "grpo_qwen2.5_3b_h100.yaml",
        "grpo_qwen2.5_1.5b.yaml",
        "grpo_qwen2.5_1.5b_40gb.yaml",
        "grpo_qwen2.5_0.5b_16gb.yaml",
        "grpo_debug.yaml",
        "grpo_cpu_tiny.yaml",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_parses_and_validates(path, tiny_model_path):
    """Through the real parser, without loading a model. The CPU miniature's model folder is built by the demo, so it
    is pointed at the test's tiny model; hub ids are checked by form only. GPU recipes parse as on their GPU."""
    raw = yaml.safe_load(path.read_text())
    argv = (
        []
        if "/" not in raw["model_name_or_path"] or "Qwen/" in raw["model_name_or_path"]
        else ["--model_name_or_path", str(tiny_model_path)]
    )
    config = load_config(path, argv, machine=False)
    assert isinstance(config, ResonConfig) and config.output_dir and config.rewards
    assert config.generation_batch_size % config.num_generations == 0
    if not raw.get("bf16") and not raw.get("fp16") and not raw.get("use_vllm"):  # runs here: the machine check too
        assert load_config(path, argv).use_cpu is False


def test_a_shipped_recipe_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("grpo_debug", machine=False).max_steps == 50
    assert load_config("grpo_debug.yaml", machine=False).max_steps == 50
    message = error_for("grpo_nope", machine=False)
    assert "grpo_nope" in message and "grpo_debug" in message and "grpo_qwen2.5_3b_h100" in message


def test_gpu_recipes_carry_the_dr_grpo_settings():
    gpu_recipes = ("grpo_qwen2.5_3b_h100", "grpo_qwen2.5_1.5b", "grpo_qwen2.5_1.5b_40gb", "grpo_qwen2.5_0.5b_16gb")
    for name in (*gpu_recipes, "grpo_qwen2.5_3b_countdown"):
        config = load_config(name, machine=False)
        assert config.loss_type == "dr_grpo" and config.scale_rewards == "none" and config.beta == 0.0
        assert config.epsilon == 0.2 and config.learning_rate == 1e-6 and config.max_grad_norm == 0.2
        assert config.reward_weights == [1.0, 0.2]
        if config.use_vllm:  # per-token importance sampling, and a stop at </answer> that is not masked out
            assert config.vllm_importance_sampling_mode == "token_truncate"
            assert config.generation_kwargs["stop"] == ["</answer>"] and not config.mask_truncated_completions
    main = load_config("grpo_qwen2.5_3b_h100", machine=False)
    assert main.num_generations == 12 and main.max_completion_length == 1536 and main.vllm_mode == "colocate"


def test_every_recipe_key_has_a_comment():
    for path in CONFIGS:
        for line in path.read_text().splitlines():
            top_level_key = line and not line.startswith((" ", "#", "-")) and ":" in line
            nested_mapping = line.rstrip().endswith(":")
            if top_level_key and not nested_mapping:
                assert "#" in line, f"{path.name}: say why: {line}"


def test_command_line_overrides_the_yaml_in_trl_syntax(tmp_path):
    path = write_recipe(tmp_path, learning_rate=1.0e-6)
    argv = ["--learning_rate", "1e-4", "--rewards", "accuracy", "--reward_weights", "1.0", "--emergence_greedy"]
    config = load_config(path, argv)
    assert config.learning_rate == pytest.approx(1e-4)
    assert config.rewards == ["accuracy"] and config.reward_weights == [1.0]
    assert config.emergence_greedy is True
    config = load_config(path, ["--datasets", "{name: gsm8k}", "{name: math, weight: 0.5}"])
    assert config.datasets == [
        {"name": "gsm8k", "split": "train", "weight": 1.0},
        {"name": "math", "split": "train", "weight": 0.5},
    ]


def test_python_overrides_sit_between_the_yaml_and_the_command_line(tmp_path):
    path = write_recipe(tmp_path, max_steps=10)
    assert load_config(path, overrides={"max_steps": 20}).max_steps == 20
    assert load_config(path, ["--max_steps", "30"], overrides={"max_steps": 20}).max_steps == 30


def test_yaml_1e_minus_6_is_a_float(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(BASE) + "learning_rate: 1e-6\n")  # YAML 1.1 reads this as a string
    assert load_config(path).learning_rate == pytest.approx(1e-6)


def test_resolved_config_loads_back_to_the_same_config(tmp_path):
    config = load_config(write_recipe(tmp_path, output_dir=str(tmp_path / "out"), generation_batch_size=16))
    saved = save_resolved_config(config, note="resumed from checkpoint-4")
    assert saved.name == RUN_CONFIG and "# resumed from checkpoint-4" in saved.read_text()
    reloaded = load_config(saved)
    assert resolved_values(reloaded) == resolved_values(config)
    assert reloaded.generation_batch_size == 16 and reloaded.steps_per_generation == 2


def test_project_fields_are_documented_once_in_trl_fashion():
    fields = {f.name: f for f in dataclasses.fields(ResonConfig)}
    assert all(len(fields[name].metadata["help"]) > 20 for name in PROJECT_FIELDS)
    assert "num_generations" not in PROJECT_FIELDS  # TRL's name and TRL's documentation


def test_help_lists_every_field_with_its_help_and_default():
    text = config_parser().format_help()
    for field in (*PROJECT_FIELDS, "num_generations", "max_completion_length", "loss_type", "learning_rate"):
        assert f"--{field}" in text
    assert re.search(r"--num_canaries NUM_CANARIES, --num-canaries NUM_CANARIES\s+Fixed held-out prompts", text)
    assert "(default: 32)" in text and "(default: dapo)" in text  # ours and TRL's


def test_late_checked_choices_are_trls_own_names():
    """TRL checks these only after the model loads; the lists checked up front must stay TRL's documented names."""
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(GRPOConfig)}
    loss_names = re.findall(r"'(\w+)'", helps["loss_type"].split("Supported values are")[1].split(".")[0])
    assert tuple(loss_names) == LATE_CHECKED_CHOICES["loss_type"]
    defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    for key, choices in LATE_CHECKED_CHOICES.items():
        assert defaults[key] in choices


# --- one test per validation error ---------------------------------------------------------------------------


def test_unknown_key(tmp_path):
    message = error_for(write_recipe(tmp_path, num_generation=8))
    assert "num_generation in" in message and "recipe.yaml" in message and "Did you mean num_generations" in message


def test_unknown_flag(tmp_path):
    message = error_for(write_recipe(tmp_path), ["--learnin_rate", "1e-5"])
    assert "--learnin_rate on the command line" in message and "Did you mean learning_rate" in message


def test_wrong_type(tmp_path):
    message = error_for(write_recipe(tmp_path, max_steps="many"))
    assert "max_steps in" in message and "recipe.yaml" in message and "invalid int value: 'many'" in message
    message = error_for(write_recipe(tmp_path, max_steps=5.5))
    assert "max_steps in" in message and "5.5 (float) is not a whole number" in message


def test_wrong_type_bool(tmp_path):
    message = error_for(write_recipe(tmp_path, emergence_greedy="sometimes"))
    assert "emergence_greedy" in message and "sometimes" in message


def test_a_list_where_one_value_belongs(tmp_path):
    message = error_for(write_recipe(tmp_path, learning_rate=[1e-6, 2e-6]))
    assert "learning_rate in" in message and "is not a number" in message


def test_wrong_type_from_the_command_line(tmp_path):
    message = error_for(write_recipe(tmp_path), ["--max_steps", "abc"])
    assert "--max_steps on the command line" in message and "invalid int value" in message


def test_unknown_reward_name_from_yaml(tmp_path):
    message = error_for(write_recipe(tmp_path, rewards=["accuracy", "lenght"]))
    assert "rewards in" in message and "'lenght'" in message and "accuracy" in message and "format" in message


def test_unknown_dataset_name(tmp_path):
    message = error_for(write_recipe(tmp_path, datasets=[{"name": "gsm9k"}]))
    assert "datasets in" in message and "'gsm9k'" in message and "gsm8k" in message


def test_dataset_without_that_split(tmp_path):
    message = error_for(write_recipe(tmp_path, datasets=[{"name": "math500", "split": "train"}]))
    assert "math500 has no 'train' split" in message and "test" in message


def test_dataset_with_an_unknown_key(tmp_path):
    message = error_for(write_recipe(tmp_path, datasets=[{"name": "gsm8k", "wieght": 2}]))
    assert "datasets in" in message and "wieght" in message and "name, split, weight" in message


def test_a_reward_import_path_is_checked_before_any_model_loads(tmp_path, monkeypatch):
    reward = "def brevity(completions, **kwargs):\n    return [0.0] * len(completions)\n"
    (tmp_path / "house_rewards.py").write_text(reward)
    monkeypatch.chdir(tmp_path)
    config = load_config(write_recipe(tmp_path, rewards=["accuracy", "house_rewards.brevity"], reward_weights=[1, 1]))
    assert config.rewards == ["accuracy", "house_rewards.brevity"]
    message = error_for(write_recipe(tmp_path, rewards=["accuracy", "house_rewards.verbosity"]))
    assert "rewards in" in message and "verbosity in house_rewards is missing" in message


def test_reward_weights_length_mismatch(tmp_path):
    message = error_for(write_recipe(tmp_path, reward_weights=[1.0]))
    assert "reward_weights in" in message and "1 weights for 2 rewards" in message and "one weight per" in message


def test_generation_batch_not_divisible_by_num_generations(tmp_path):
    message = error_for(write_recipe(tmp_path, per_device_train_batch_size=6))
    assert "recipe.yaml" in message and "divisible" in message and "num_generations" in message


def test_model_path_that_does_not_exist(tmp_path):
    message = error_for(write_recipe(tmp_path, model_name_or_path=str(tmp_path / "no" / "model")))
    assert "model_name_or_path in" in message and "no such folder" in message


def test_model_name_that_is_not_a_hub_id(tmp_path):
    message = error_for(write_recipe(tmp_path, model_name_or_path="qwen 2.5 3b"))
    assert "model_name_or_path" in message and "neither a local folder nor a hub id" in message


def test_model_folder_without_config_json_or_weights(tmp_path):
    (tmp_path / "empty_model").mkdir()
    message = error_for(write_recipe(tmp_path, model_name_or_path=str(tmp_path / "empty_model")))
    assert "has no config.json" in message
    (tmp_path / "empty_model" / "config.json").write_text("{}")
    message = error_for(write_recipe(tmp_path, model_name_or_path=str(tmp_path / "empty_model")))
    assert "holds no weights" in message


def test_missing_model(tmp_path):
    message = error_for(write_recipe(tmp_path, model_name_or_path=...))
    assert "model_name_or_path" in message and "missing" in message


def test_unknown_loss_type(tmp_path):
    message = error_for(write_recipe(tmp_path, loss_type="drgrpo"))
    assert "loss_type in" in message and "dr_grpo" in message


def test_unknown_template(tmp_path):
    message = error_for(write_recipe(tmp_path, template="r1"))
    assert "template in" in message and "r1_zero" in message


def test_a_stop_string_needs_vllm_and_no_masking(tmp_path):
    message = error_for(write_recipe(tmp_path, generation_kwargs={"stop": ["</answer>"]}))
    assert "generation_kwargs in" in message and "use_vllm: true" in message
    message = error_for(
        write_recipe(
            tmp_path, generation_kwargs={"stop": ["</answer>"]}, use_vllm=True, mask_truncated_completions=True
        ),
        machine=False,
    )
    assert "mask_truncated_completions in" in message and "mask_truncated_completions: false" in message


def test_generation_kwargs_from_the_command_line_are_checked_as_json(tmp_path):
    # the command line gives TRL's JSON string, which TRL reads only after reson's checks: they read it the same way
    stop = ["--generation_kwargs", '{"stop": ["</answer>"]}']
    assert "use_vllm: true" in error_for(write_recipe(tmp_path), stop)
    assert "is not a JSON mapping" in error_for(write_recipe(tmp_path), ["--generation_kwargs", "{stop: x"])
    # what the notebook passes to turn a vLLM recipe's generation over to transformers
    config = load_config("grpo_qwen2.5_3b_h100", ["--use_vllm", "false", "--generation_kwargs", "{}"], machine=False)
    assert not config.use_vllm and config.generation_kwargs == {}


def test_bf16_without_a_gpu_that_runs_it(tmp_path):
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this machine runs bf16")
    message = error_for(write_recipe(tmp_path, bf16=True))
    assert "bf16" in message and "recipe.yaml" in message and "bf16: false" in message
    assert "bf16" in error_for(write_recipe(tmp_path, bf16=...))  # TRL turns an unset bf16 on: caught too


def test_use_vllm_without_vllm(tmp_path):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    message = error_for(write_recipe(tmp_path, use_vllm=True, vllm_mode="colocate"))
    assert "use_vllm in" in message and "reson-llm[vllm]" in message and "use_vllm: false" in message


def test_missing_config_file(tmp_path):
    message = error_for(tmp_path / "nope.yaml")
    assert "nope.yaml" in message and "no such file" in message


def test_machine_checks_can_be_left_out(tmp_path):
    """A GPU recipe parses on any machine (for reson plan): its own values come back, use_cpu as the recipe says."""
    config = load_config(write_recipe(tmp_path, bf16=True, use_vllm=True), machine=False)
    assert config.bf16 is True and config.use_vllm is True and config.use_cpu is False


def test_torch_threads_is_a_positive_count_and_set_by_the_run(tmp_path, monkeypatch):
    import torch

    from reson.training import train as train_module

    assert "torch_threads" in error_for(write_recipe(tmp_path, torch_threads=0))
    assert load_config(write_recipe(tmp_path)).torch_threads is None  # torch's own default unless asked

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(train_module.checkpoints, "prepare", stop)  # right after the threads are set
    before = torch.get_num_threads()
    try:
        with pytest.raises(Stop):
            train_module._train(load_config(write_recipe(tmp_path, torch_threads=1)), tmp_path, True, None, (), None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("driver", "said"),
    [
        ("550.54.15", "NVIDIA driver 550.54.15 is too old for torch 2.13's CUDA 13 build (it needs 580 or newer)"),
        ("580.65.06", "torch cannot use the GPU (NVIDIA driver 580.65.06)"),
        (None, "this machine has no NVIDIA GPU that torch can use"),
    ],
)
def test_why_torch_sees_no_gpu_names_the_driver(driver, said, tmp_path, monkeypatch):
    from reson.core.machine import cuda_problem

    if driver is not None:
        script = tmp_path / "nvidia-smi"
        script.write_text(f"#!/bin/sh\necho '{driver}'\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert said in cuda_problem()


def test_a_tasks_reward_goes_with_that_tasks_data(tmp_path):
    """accuracy grades maths, countdown grades Countdown: the wrong pair is one line, before any model loads."""
    message = error_for(write_recipe(tmp_path, datasets=[{"name": "synthetic_countdown"}]))
    assert "rewards in" in message and "accuracy grades math problems" in message and "countdown" in message
    message = error_for(write_recipe(tmp_path, rewards=["countdown", "format"], datasets=[{"name": "gsm8k"}]))
    assert "countdown grades countdown problems, but the training data holds math problems" in message
    countdown = write_recipe(
        tmp_path, rewards=["countdown", "format"], datasets=[{"name": "synthetic_countdown"}], canary_dataset=None
    )
    assert load_config(countdown).rewards == ["countdown", "format"]


# --- LoRA: TRL's ModelConfig fields, checked before the model loads ---------------------------------------------

LORA = {"use_peft": True, "lora_dropout": 0.0, "lora_target_modules": "all-linear"}


def test_lora_fields_are_trls_own_with_trls_help(tmp_path):
    """One source for each field and its help: ModelConfig's, through TrlParser, and the config is a ModelConfig."""
    from trl import ModelConfig, get_peft_config

    text = config_parser().format_help()
    for name in ("use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "load_in_4bit", "dtype"):
        help_text = " ".join(ModelConfig.__dataclass_fields__[name].metadata["help"].split())
        assert f"--{name}" in text and help_text[:30] in " ".join(text.split()), name
    assert "--model_name_or_path" in text and text.count("--model_name_or_path MODEL_NAME_OR_PATH") == 1
    assert "use_peft" not in PROJECT_FIELDS and "model_name_or_path" in PROJECT_FIELDS
    config = load_config(write_recipe(tmp_path, **LORA))
    assert isinstance(config, ModelConfig)
    peft = get_peft_config(config)  # TRL's own builder, as its grpo script calls it
    assert peft.target_modules == "all-linear" and peft.r == 16 and peft.lora_dropout == 0.0


def test_one_target_stays_a_list_that_peft_matches(tmp_path):
    """TRL's ModelConfig turns [q_proj] into the string "q_proj", which peft takes as a regex over whole module names
    and which then matches nothing; here one name stays a list, and only all-linear becomes peft's bare string."""
    from trl import get_peft_config

    config = load_config(write_recipe(tmp_path, **{**LORA, "lora_target_modules": ["q_proj"]}))
    assert config.lora_target_modules == ["q_proj"] and get_peft_config(config).target_modules == {"q_proj"}
    config = load_config(write_recipe(tmp_path, **LORA), ["--lora_target_modules", "all-linear"])
    assert config.lora_target_modules == "all-linear"


@pytest.mark.parametrize(
    ("changes", "key", "said"),
    [
        # a LoRA field means nothing without use_peft: said, not silently ignored
        ({"lora_r": 8}, "lora_r", "no effect while use_peft is false: set use_peft: true"),
        ({"load_in_4bit": True}, "load_in_4bit", "no effect while use_peft is false"),
        # TRL's dropout default stays on while TRL samples in train mode
        ({**LORA, "lora_dropout": 0.05}, "lora_dropout", "set lora_dropout: 0.0"),
        # peft's default targets are Qwen2's q_proj and v_proj: attention alone
        ({**LORA, "lora_target_modules": None}, "lora_target_modules", "name them, e.g. all-linear"),
        # a layer Qwen2 does not have (the fused qkv of other families)
        ({**LORA, "lora_target_modules": ["q_proj", "qkv_proj"]}, "lora_target_modules", "has no such layer"),
        # TRL refuses an adapter on the LM head only after the model has loaded
        ({**LORA, "lora_target_modules": ["q_proj", "lm_head"]}, "lora_target_modules", "LM head"),
        # a 4-bit base cannot be synced to vLLM (TRL #4973), and computes in `dtype`
        ({**LORA, "load_in_4bit": True, "use_vllm": True, "dtype": "float16"}, "load_in_4bit", "TRL #4973"),
        ({**LORA, "load_in_4bit": True}, "dtype", "set dtype: float16 (T4, V100) or bfloat16"),
        # a 16-bit base must train under autocast of its own precision
        ({**LORA, "dtype": "bfloat16", "fp16": True}, "dtype", "set bf16: true and fp16: false"),
        ({**LORA, "dtype": "float16", "bf16": True}, "dtype", "set fp16: true and bf16: false"),
        # the weights' dtype in two places that disagree (model_init_kwargs would win, silently)
        ({**LORA, "dtype": "float16", "model_init_kwargs": {"dtype": "float32"}}, "dtype", "in one place"),
        ({"dtype": "fp16"}, "dtype", "not one of auto, float32, float16, bfloat16"),
        ({**LORA, "use_dora": True}, "use_dora", "not supported here"),
        ({**LORA, "load_in_8bit": True}, "load_in_8bit", "not supported here"),
        ({**LORA, "lora_r": 0}, "lora_r", "must be positive"),
        ({**LORA, "sync_ref_model": True}, "sync_ref_model", "set sync_ref_model: false"),
    ],
)
def test_each_lora_mistake_is_one_line_before_the_model_loads(tmp_path, changes, key, said):
    message = error_for(write_recipe(tmp_path, **changes), machine=False)
    assert message.startswith(f"{key} ") and said in message, message


def test_a_target_the_model_lacks_is_read_from_its_config_json(tmp_path, tiny_model_path):
    message = error_for(
        write_recipe(
            tmp_path, **{**LORA, "lora_target_modules": ["c_attn", "q"]}, model_name_or_path=str(tiny_model_path)
        )
    )
    assert "c_attn" in message and "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj" in message
    dotted_names = ["self_attn.q_proj", "mlp.down_proj"]
    dotted = load_config(write_recipe(tmp_path, **{**LORA, "lora_target_modules": dotted_names}))
    assert dotted.lora_target_modules == dotted_names


def test_4_bit_needs_cuda_and_is_said_before_anything_loads(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    message = error_for(write_recipe(tmp_path, **LORA, load_in_4bit=True, dtype="float16", fp16=True))
    assert message.startswith("load_in_4bit in") and "set load_in_4bit: false" in message


def test_a_lora_run_is_not_a_base_to_train_from(tmp_path, tiny_model_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text(f'{{"base_model_name_or_path": "{tiny_model_path}"}}')
    (run / "adapter_model.safetensors").write_bytes(b"x")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (run / name).write_text((tiny_model_path / name).read_text())
    message = error_for(write_recipe(tmp_path, model_name_or_path=str(run)))
    assert "is a LoRA adapter: train from its base model" in message and str(tiny_model_path) in message
