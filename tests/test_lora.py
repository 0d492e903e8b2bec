"""LoRA end to end on a tiny model: only the adapter trains (the base bit for bit as it was), metrics, canaries and the
guard work as for a full run, resume is exact, and the run folder serves merged: eval, chat, convert, vLLM."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_train import CPU_RECIPE, NUM_CANARIES, emergence_steps, tiny_overrides

from reson.core import lora, models
from reson.core.config import load_config
from reson.core.data import format_prompt
from reson.training.checkpoints import latest_checkpoint

RANK = 4
LORA = {
    "use_peft": True,
    "lora_r": RANK,
    "lora_alpha": 8,
    "lora_dropout": 0.0,
    "lora_target_modules": "all-linear",
    "learning_rate": 1e-2,  # large, so four steps move the adapter far enough to change what the model says
    "torch_threads": 1,  # one thread: the same sums in the same order, so a resumed run can repeat bit for bit
}
PROMPTS = [format_prompt(q) for q in ("What is 12 + 7?", "Tom has 3 apples and buys 5 more. How many?")]


def lora_overrides(model: Path, output_dir: Path, data_dir: Path, **changes) -> dict:
    """test_train's tiny run with LoRA; its length reward gives every group a spread, so every step trains."""
    rewards = {"rewards": ["accuracy", "format", "test_train.length"], "reward_weights": [1.0, 0.2, 1.0]}
    return tiny_overrides(model, output_dir, data_dir, max_steps=4, **{**LORA, **rewards, **changes})


class BaseAtTheEnd:
    """A callback that keeps a copy of every weight the model holds when training ends."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class Callback(TrainerCallback):
            def on_train_end(self, args, state, control, model=None, **kwargs):
                outer.weights = {name: p.detach().clone() for name, p in model.named_parameters()}

        self.callback = Callback()
        self.weights: dict = {}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_path, shared_data):
    """4 LoRA steps, a checkpoint at steps 2 and 4, canaries at steps 0, 2 and 4; the weights held at the end."""
    from reson.training.train import train

    root = tmp_path_factory.mktemp("lora_run")
    seen = BaseAtTheEnd()
    output_dir = train(
        load_config(CPU_RECIPE, overrides=lora_overrides(tiny_model_path, root / "out", shared_data)),
        callbacks=[seen.callback],
    )
    return output_dir, seen.weights


@pytest.mark.slow
def test_only_the_adapter_trains_and_the_base_stays_bit_for_bit(lora_run, tiny_model_path):
    from safetensors.torch import load_file

    output_dir, weights = lora_run
    base = load_file(tiny_model_path / "model.safetensors")
    held = {
        name.removeprefix("base_model.model.").replace(".base_layer", ""): tensor
        for name, tensor in weights.items()
        if "lora_" not in name
    }
    assert held.keys() == base.keys()  # every weight of the base (the tied LM head is the embedding)
    assert all((held[name] == base[name]).all() for name in held)  # bit for bit
    adapter = load_file(output_dir / "adapter_model.safetensors")
    assert len(adapter) == 2 * 7 * 2  # A and B of 7 layers in each of 2 decoder layers
    assert all(name.split(".")[-2] in ("lora_A", "lora_B") for name in adapter)
    assert all(adapter[name].abs().max() > 0 for name in adapter if "lora_B" in name)  # B starts at 0: it moved
    assert not list(output_dir.glob("model*.safetensors"))  # the adapter alone, no copy of the base


@pytest.mark.slow
def test_the_run_folder_names_its_base_and_the_card_says_lora(lora_run, tiny_model_path):
    output_dir, _ = lora_run
    adapter = json.loads((output_dir / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_model_path.resolve())  # absolute: resolvable from anywhere
    assert adapter["r"] == RANK and adapter["lora_alpha"] == 8
    assert {name.rsplit(".", 1)[-1] for name in adapter["target_modules"]} == set(models.LINEAR_LAYERS)
    assert models.check_model(str(output_dir)) == "adapter" and models.model_format(output_dir) == "hf"
    assert models.architecture(str(output_dir)) == models.architecture(str(tiny_model_path))
    card = (output_dir / "README.md").read_text()
    assert "library_name: peft" in card and "lora]" in card
    assert f"rank-{RANK} adapter (alpha 8) on every linear layer (all-linear) of the frozen float32 base" in card


@pytest.mark.slow
def test_metrics_and_canaries_are_logged_as_for_a_full_run(lora_run):
    output_dir, _ = lora_run
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4]
    assert all("rewards/accuracy/mean" in e and "completions/truncated_ratio" in e for e in history if "loss" in e)
    assert [e["step"] for e in history if "emergence/think_usage" in e] == [0, 2, 4]
    assert emergence_steps(output_dir) == {0: NUM_CANARIES, 2: NUM_CANARIES, 4: NUM_CANARIES}
    assert latest_checkpoint(output_dir).name == "checkpoint-4"  # an adapter checkpoint counts as complete


@pytest.mark.slow
def test_resume_restores_the_adapter_and_the_optimizer_exactly(lora_run, tmp_path, tiny_model_path, shared_data):
    """A second run resumes the first one's checkpoint-2 and trains steps 3 and 4: its adapter and AdamW state at
    step 4 are the first run's, bit for bit."""
    import torch
    from safetensors.torch import load_file

    from reson.training.train import train

    first, _ = lora_run
    second = tmp_path / "out"
    second.mkdir()
    shutil.copytree(first / "checkpoint-2", second / "checkpoint-2")
    train(load_config(CPU_RECIPE, overrides=lora_overrides(tiny_model_path, second, shared_data)), resume=True)
    for name in ("adapter_model.safetensors", "checkpoint-4/adapter_model.safetensors"):
        a, b = load_file(first / name), load_file(second / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    a, b = (torch.load(run / "checkpoint-4" / "optimizer.pt", weights_only=False) for run in (first, second))
    assert len(a["state"]) == 2 * 7 * 2  # the optimizer holds the adapter alone
    for key, state in a["state"].items():
        assert all(torch.equal(state[k], b["state"][key][k]) for k in ("exp_avg", "exp_avg_sq", "step"))


@pytest.mark.slow
def test_the_divergence_guard_watches_the_adapter(tmp_path, tiny_model_path, shared_data):
    from reson.training.faults import TrainingDiverged
    from reson.training.train import train

    overrides = lora_overrides(tiny_model_path, tmp_path / "out", shared_data, learning_rate=1e10, num_canaries=0)
    with pytest.raises(TrainingDiverged, match="after step 1 the largest weight"):
        train(load_config(CPU_RECIPE, overrides=overrides))


# --- merged: the adapter folder served as a whole model ---------------------------------------------------------


def _greedy(model, tokenizer) -> list[str]:
    from reson.core.generation import HFEngine, Request, Sampling

    engine = HFEngine(model, tokenizer)
    return [g.text for g in engine.generate([Request(p) for p in PROMPTS], Sampling(max_new_tokens=16, stop=()))]


@pytest.mark.slow
def test_the_merged_model_says_what_the_adapter_model_says(lora_run, tiny_model_path):
    """Greedy text equal on fixed prompts; logits within fp32 rounding (W x + s B A x and (W + s B A) x sum in another
    order); and the adapter changes the logits, so the merge is not a no-op."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    output_dir, _ = lora_run
    tokenizer = models.load_tokenizer(str(output_dir))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    base_logits = base(**tokenizer(PROMPTS[:1], return_tensors="pt")).logits
    adapted = PeftModel.from_pretrained(base, str(output_dir)).eval()  # the adapter as trained, unmerged
    merged = lora.load_merged(output_dir).eval()
    assert type(merged).__name__ == "Qwen2ForCausalLM" and not lora.lora_layers(merged)
    with torch.no_grad():
        inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
        a, m = adapted(**inputs).logits, merged(**inputs).logits
        assert (a - m).abs().max() < 1e-5
        assert (a[:1, : base_logits.shape[1]] - base_logits).abs().max() > 1e-3
    assert _greedy(adapted, tokenizer) == _greedy(merged, tokenizer)


def test_the_vllm_sync_merges_out_of_place_and_leaves_a_16_bit_base_as_it_was(tiny_model_path):
    """TRL's sync merges the adapter into the base in place and unmerges it (peft's merge_adapter and
    unmerge_adapter): in bf16 that moves the frozen weights. `vllm_weights` yields the same merged weights, under the
    names vLLM loads, and writes nothing."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.generation.vllm_generation import VLLMGeneration

    vllm_name = functools.partial(VLLMGeneration._fix_param_name_to_vllm, None)  # TRL's renaming; it uses no state
    for dtype in (torch.float32, torch.bfloat16):
        base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=dtype)
        names = [name for name, _ in base.named_parameters()]
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        torch.manual_seed(0)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.data.normal_(0, 0.05)  # a trained adapter: B is no longer 0
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        synced = dict(lora.vllm_weights(model, vllm_name))
        assert list(synced) == names  # the plain model's names, which vLLM's load_weights takes
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # nothing written
        layer = model.base_model.model.model.layers[0].mlp.down_proj
        expected = layer.base_layer.weight.float() + layer.scaling["default"] * (
            layer.lora_B["default"].weight.float() @ layer.lora_A["default"].weight.float()
        )
        assert torch.equal(synced["model.layers.0.mlp.down_proj.weight"], expected.to(dtype))  # rounded once
        for _ in range(10):  # what TRL does once a step
            model.merge_adapter()
            model.unmerge_adapter()
        moved = max((p - before[n]).abs().max().item() for n, p in model.named_parameters() if "base_layer" in n)
        assert moved > 0 if dtype == torch.bfloat16 else moved < 1e-6  # why the sync is done out of place


def test_the_trainer_feeds_vllm_the_out_of_place_merge(tiny_model_path):
    """`ResonTrainer` swaps the iterator TRL's vLLM sync reads (TRL has no hook for it); built without a vLLM."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from reson.training.trainer import ResonTrainer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    model = get_peft_model(base, LoraConfig(target_modules="all-linear"))
    generation = SimpleNamespace(model=model, _fix_param_name_to_vllm=lambda name, extra_prefixes=None: name)
    trainer = ResonTrainer.__new__(ResonTrainer)
    trainer.vllm_generation = generation
    trainer._sync_merged_out_of_place()
    assert [name for name, _ in generation._iter_named_params()] == [
        name for name, _ in lora.vllm_weights(model, generation._fix_param_name_to_vllm)
    ]


@pytest.mark.slow
def test_eval_and_chat_take_a_lora_run_as_a_full_one(lora_run, shared_data, tmp_path):
    from reson.evaluation.evaluate import evaluate
    from reson.tools.convert import main as convert

    output_dir, _ = lora_run
    merged = tmp_path / "merged"
    assert convert(["--model_name_or_path", str(output_dir), "--merge_only", "--output_dir", str(merged)]) == 0
    assert models.check_model(str(merged)) == "folder" and (merged / "train_config.yaml").is_file()
    data = [str(shared_data / "gsm8k" / "test.jsonl")]
    settings = dict(num_problems=3, max_completion_length=8, backend="hf", progress=False)
    folders = {"lora": output_dir, "merged": merged}
    runs = {name: evaluate(str(path), data, tmp_path / f"eval-{name}", **settings) for name, path in folders.items()}
    assert runs["lora"]["datasets"]["gsm8k"]["metrics"]["count"] == 3
    completions = {
        name: [json.loads(line)["completion"] for line in (tmp_path / f"eval-{name}" / "samples.jsonl").open()]
        for name in runs
    }
    assert completions["lora"] == completions["merged"]
    chat = subprocess.run(
        [sys.executable, "-m", "reson", "chat", "--model_name_or_path", str(output_dir), "--prompt", "What is 2 + 3?"]
        + ["--temperature", "0", "--max_completion_length", "6"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr[-2000:]


@pytest.mark.slow
def test_the_vllm_backend_serves_an_adapter_merged(lora_run, monkeypatch):
    """vLLM loads no adapter folder: the engine hands it the merged model, written to a temporary folder."""
    output_dir, _ = lora_run
    loaded = {}

    class FakeLLM:
        def __init__(self, model, tokenizer, dtype, seed):
            loaded.update(model=Path(model), tokenizer=Path(tokenizer))
            loaded["files"] = sorted(p.name for p in Path(model).iterdir())

        def get_tokenizer(self):
            return None

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=FakeLLM))
    from reson.core.generation import VLLMEngine

    engine = VLLMEngine(str(output_dir))
    assert loaded["model"] != output_dir and loaded["tokenizer"] == loaded["model"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(loaded["files"])
    folder = loaded["model"]
    del engine
    import gc

    gc.collect()
    assert not folder.exists()  # the temporary copy goes with the engine


@pytest.mark.mlx
@pytest.mark.slow
def test_convert_merges_a_lora_run_into_mlx(lora_run, tmp_path, capsys):
    from reson.core.generation import MLXEngine, Request, Sampling
    from reson.tools.convert import main as convert

    output_dir, _ = lora_run
    out = tmp_path / "mlx"
    assert convert(["--model_name_or_path", str(output_dir), "--output_dir", str(out)]) == 0
    assert "LoRA adapter" in capsys.readouterr().out and models.model_format(out) == "mlx"
    mlx = MLXEngine(out).generate([Request(p) for p in PROMPTS], Sampling(max_new_tokens=16, stop=()))
    assert [g.text for g in mlx] == _greedy(lora.load_merged(output_dir).eval(), models.load_tokenizer(str(out)))


def test_a_lora_checkpoint_holds_about_a_gigabyte_of_disk_where_full_training_holds_160():
    from reson.training import checkpoints

    config = load_config("grpo_qwen2.5_3b_lora_24gb", machine=False)
    adapters = models.KNOWN_MODELS["Qwen/Qwen2.5-3B"].lora_params("all-linear", 16)
    # 3 kept + 1 being written, each fp32 weights and two moments, and the final adapter
    assert checkpoints.disk_needed(config) == adapters * 12 * 4 + adapters * 4 < 1.6e9
