"""The training config: every recipe parses through the real loader; each bad input is one clear line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from reson.core.config import (
    PROJECT_FIELDS,
    RESOLVED_CONFIG_NAME,
    ConfigError,
    ResonConfig,
    field_help,
    load_config,
    parse_config,
    resolved_values,
    save_resolved_config,
)

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "src" / "reson" / "configs").glob("*.yaml"))

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


def error_for(path, overrides=None, check_environment=True) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides, check_environment=check_environment)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


def test_recipes_list_is_not_empty():
    names = {p.name for p in CONFIGS}
    assert {"grpo_qwen2.5_3b_h100.yaml", "grpo_qwen2.5_1.5b.yaml", "grpo_debug.yaml", "grpo_cpu_tiny.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_parses_and_validates(path, tiny_model_path):
    """Through the real parser, without loading a model. The CPU miniature's model folder is built by the demo, so
    it is pointed at the test's tiny model; hub ids are checked by form only."""
    raw = yaml.safe_load(path.read_text())
    overrides = {}
    if not Path(raw["model_name_or_path"]).is_dir() and raw["model_name_or_path"].count("/") > 1:
        overrides["model_name_or_path"] = str(tiny_model_path)
    values, sources = parse_config(path, overrides)
    assert values["output_dir"] and values["rewards"]
    assert sources["num_generations"] == str(path)
    cpu_capable = not raw.get("bf16", True) and not raw.get("use_vllm", False)
    if cpu_capable:
        config = load_config(path, overrides)
        assert isinstance(config, ResonConfig)
        assert config.generation_batch_size % config.num_generations == 0
    else:
        import torch

        if not torch.cuda.is_available():  # this machine cannot run it: the check says so, naming bf16
            assert "bf16" in error_for(path, overrides)


def test_gpu_recipes_carry_the_dr_grpo_settings():
    recipe = yaml.safe_load((CONFIGS[0].parent / "grpo_qwen2.5_3b_h100.yaml").read_text())
    assert recipe["num_generations"] == 12 and recipe["loss_type"] == "dr_grpo" and recipe["scale_rewards"] == "none"
    assert recipe["beta"] == 0.0 and recipe["epsilon"] == 0.2 and recipe["max_completion_length"] == 1536
    assert recipe["use_vllm"] is True and recipe["vllm_mode"] == "colocate"
    assert recipe["reward_weights"] == [1.0, 0.2] and recipe["max_grad_norm"] == 0.2


def test_every_recipe_key_has_a_comment():
    for path in CONFIGS:
        for line in path.read_text().splitlines():
            top_level_key = line and not line.startswith((" ", "#", "-")) and ":" in line
            nested_mapping = line.rstrip().endswith(":")
            if top_level_key and not nested_mapping:
                assert "#" in line, f"{path.name}: say why: {line}"


def test_command_line_overrides_the_yaml(tmp_path):
    path = write_recipe(tmp_path, learning_rate=1.0e-6)
    argv = ["--learning_rate", "1e-4", "--rewards", "[accuracy]", "--reward_weights=[1.0]", "--emergence_greedy"]
    config = load_config(path, argv)
    assert config.learning_rate == pytest.approx(1e-4)
    assert config.rewards == ["accuracy"] and config.reward_weights == [1.0]
    assert config.emergence_greedy is True


def test_yaml_1e_minus_6_is_a_float(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(BASE) + "learning_rate: 1e-6\n")  # YAML 1.1 reads this as a string
    assert load_config(path).learning_rate == pytest.approx(1e-6)


def test_resolved_config_loads_back_to_the_same_config(tmp_path):
    config = load_config(write_recipe(tmp_path, output_dir=str(tmp_path / "out"), generation_batch_size=16))
    saved = save_resolved_config(config)
    assert saved.name == RESOLVED_CONFIG_NAME
    reloaded = load_config(saved)
    assert resolved_values(reloaded) == resolved_values(config)
    assert reloaded.generation_batch_size == 16 and reloaded.steps_per_generation == 2


def test_project_fields_are_documented_once():
    helps = {name: text for name, text, _ in field_help()}
    assert set(helps) == set(PROJECT_FIELDS)
    assert all(len(text) > 20 for text in helps.values())
    assert "num_generations" not in PROJECT_FIELDS  # TRL's name and TRL's documentation


# --- one test per validation error ---------------------------------------------------------------------------


def test_unknown_key(tmp_path):
    message = error_for(write_recipe(tmp_path, num_generation=8))
    assert "num_generation in" in message and "recipe.yaml" in message and "Did you mean num_generations" in message


def test_wrong_type(tmp_path):
    message = error_for(write_recipe(tmp_path, max_steps="many"))
    assert "max_steps in" in message and "recipe.yaml" in message and "expected int" in message


def test_wrong_type_bool(tmp_path):
    message = error_for(write_recipe(tmp_path, emergence_greedy="sometimes"))
    assert "emergence_greedy" in message and "expected bool" in message


def test_wrong_type_from_the_command_line(tmp_path):
    message = error_for(write_recipe(tmp_path), ["--max_steps", "abc"])
    assert "--max_steps on the command line" in message and "expected int" in message


def test_unknown_reward_name_from_yaml(tmp_path):
    message = error_for(write_recipe(tmp_path, rewards=["accuracy", "lenght"]))
    assert "rewards in" in message and "'lenght'" in message and "accuracy" in message and "format" in message


def test_unknown_dataset_name(tmp_path):
    message = error_for(write_recipe(tmp_path, datasets=[{"name": "gsm9k"}]))
    assert "datasets in" in message and "'gsm9k'" in message and "gsm8k" in message


def test_dataset_without_that_split(tmp_path):
    message = error_for(write_recipe(tmp_path, datasets=[{"name": "math500", "split": "train"}]))
    assert "math500 has no 'train' split" in message and "test" in message


def test_reward_weights_length_mismatch(tmp_path):
    message = error_for(write_recipe(tmp_path, reward_weights=[1.0]))
    assert (
        "reward_weights in" in message and "1 weights for 2 rewards" in message and "one weight per reward" in message
    )


def test_generation_batch_not_divisible_by_num_generations(tmp_path):
    message = error_for(write_recipe(tmp_path, per_device_train_batch_size=6))
    assert "per_device_train_batch_size in" in message and "not divisible by num_generations (4)" in message
    assert "multiple of 4" in message


def test_generation_batch_size_not_divisible(tmp_path):
    message = error_for(write_recipe(tmp_path, generation_batch_size=10, per_device_train_batch_size=2))
    assert "generation_batch_size in" in message and "not divisible" in message


def test_model_path_that_does_not_exist(tmp_path):
    message = error_for(write_recipe(tmp_path, model_name_or_path=str(tmp_path / "no" / "model")))
    assert "model_name_or_path in" in message and "does not exist" in message


def test_model_name_that_is_not_a_hub_id(tmp_path):
    message = error_for(write_recipe(tmp_path, model_name_or_path="qwen 2.5 3b"))
    assert "model_name_or_path" in message and "neither an existing local folder nor a hub id" in message


def test_model_folder_without_config_json(tmp_path):
    (tmp_path / "empty_model").mkdir()
    message = error_for(write_recipe(tmp_path, model_name_or_path=str(tmp_path / "empty_model")))
    assert "has no config.json" in message


def test_missing_model(tmp_path):
    message = error_for(write_recipe(tmp_path, model_name_or_path=...))
    assert "model_name_or_path" in message and "missing" in message


def test_unknown_loss_type(tmp_path):
    message = error_for(write_recipe(tmp_path, loss_type="drgrpo"))
    assert "loss_type in" in message and "dr_grpo" in message


def test_unknown_template(tmp_path):
    message = error_for(write_recipe(tmp_path, template="r1"))
    assert "template in" in message and "r1_zero" in message


def test_bf16_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        pytest.skip("this machine runs bf16")
    message = error_for(write_recipe(tmp_path, bf16=True))
    assert "bf16 in" in message and "recipe.yaml" in message and "bf16: false" in message
    # TRL turns an unset bf16 on: that is caught too
    assert "bf16" in error_for(write_recipe(tmp_path, bf16=...))


def test_use_vllm_without_vllm(tmp_path):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    message = error_for(write_recipe(tmp_path, use_vllm=True, vllm_mode="colocate"))
    assert "use_vllm in" in message and "reson-llm[vllm]" in message and "use_vllm: false" in message


def test_missing_config_file(tmp_path):
    message = error_for(tmp_path / "nope.yaml")
    assert "nope.yaml not found" in message


def test_environment_checks_can_be_left_out(tmp_path):
    """Static validation of a GPU recipe on any machine: the values come back, unbuilt."""
    values = load_config(write_recipe(tmp_path, bf16=True, use_vllm=True), check_environment=False)
    assert values["bf16"] is True and values["use_vllm"] is True
