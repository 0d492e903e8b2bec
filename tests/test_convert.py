"""`reson convert`: real mlx-lm conversion of the tiny model, plain and 4-bit, and every refusal before it.

The fixture's hidden size is 64, so 4-bit quantization with groups of 64 applies to every linear layer and the
embedding: no larger model is needed.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from reson.cli import main as reson
from reson.core.data import format_prompt
from reson.core.generation import MLXEngine, Request, Sampling
from reson.core.models import model_format
from reson.evaluation.evaluate import evaluate
from reson.tools.convert import main as convert

pytestmark = [pytest.mark.mlx, pytest.mark.slow]


@pytest.fixture(scope="module")
def converted(tiny_model_path, tmp_path_factory):
    """The tiny model converted twice: unquantized and 4-bit, with default output names beside a copy."""
    root = tmp_path_factory.mktemp("convert")
    source = root / "run"
    shutil.copytree(tiny_model_path, source)
    assert convert(["--model_name_or_path", str(source)]) == 0
    assert convert(["--model_name_or_path", str(source), "--quantize", "4bit"]) == 0
    return source, root / "run-mlx", root / "run-mlx-4bit"


def _weights(path):
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def test_converts_plain_and_4bit_to_loadable_mlx(converted):
    source, plain, q4 = converted
    assert model_format(source) == "hf"
    assert model_format(plain) == "mlx" and model_format(q4) == "mlx"
    assert "quantization" not in json.loads((plain / "config.json").read_text())
    assert json.loads((q4 / "config.json").read_text())["quantization"]["bits"] == 4
    # float32 -> 4 bits (+ scales and biases per group of 64): well under a third of the size
    assert _weights(q4) < _weights(plain) / 3
    prompt = format_prompt("What is 2 + 3?")
    for folder in (plain, q4):
        completion = MLXEngine(folder).generate([Request(prompt)], Sampling(max_new_tokens=6, stop=()))[0]
        assert completion.num_tokens == 6 and completion.text


def test_writes_rope_theta_that_mlx_lm_reads(converted, tiny_model_path):
    # transformers 5 keeps rope_theta under rope_parameters; mlx-lm's Qwen2 reads only the top-level key
    hf_config = json.loads((tiny_model_path / "config.json").read_text())
    mlx_config = json.loads((converted[1] / "config.json").read_text())
    assert mlx_config["rope_theta"] == hf_config["rope_parameters"]["rope_theta"]


def test_prints_size_and_sample(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "m"
    assert convert(["--model_name_or_path", str(tiny_model_path), "--output_dir", str(out), "--quantize", "8bit"]) == 0
    printed = capsys.readouterr().out
    assert f"MLX model (8bit) written to {out}" in printed and " MB" in printed
    assert json.loads((out / "config.json").read_text())["quantization"]["bits"] == 8


def test_refuses_existing_output_without_overwrite(converted, capsys):
    source, plain, _ = converted
    before = (plain / "model.safetensors").stat().st_mtime_ns
    assert convert(["--model_name_or_path", str(source)]) == 2
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert (plain / "model.safetensors").stat().st_mtime_ns == before


def test_overwrite_replaces_output_only_when_the_new_one_is_complete(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous output")
    # A source that passes the checks but cannot convert: its config asks for a layer the weights lack
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_path, broken)
    config = json.loads((broken / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (broken / "config.json").write_text(json.dumps(config))
    assert convert(["--model_name_or_path", str(broken), "--output_dir", str(out), "--overwrite"]) == 1
    assert "failed" in capsys.readouterr().err
    assert (out / "old.txt").read_text() == "previous output"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "out"]  # no temporary folder left behind

    assert convert(["--model_name_or_path", str(tiny_model_path), "--output_dir", str(out), "--overwrite"]) == 0
    assert not (out / "old.txt").exists() and model_format(out) == "mlx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "out"]


def test_checkpoint_without_tokenizer_uses_the_run_folder(tiny_model_path, tmp_path):
    # A TRL run folder: the tokenizer at the top, checkpoint-N with weights and trainer state only
    run = tmp_path / "run"
    checkpoint = run / "checkpoint-5"
    checkpoint.mkdir(parents=True)
    for f in tiny_model_path.iterdir():
        shutil.copy(f, (checkpoint if f.name in ("config.json", "model.safetensors") else run) / f.name)
    (checkpoint / "optimizer.pt").write_bytes(b"not a model file")
    (checkpoint / "trainer_state.json").write_text("{}")
    assert convert(["--model_name_or_path", str(checkpoint)]) == 0
    out = run / "checkpoint-5-mlx"
    names = {p.name for p in out.iterdir()}
    assert {"tokenizer.json", "config.json", "model.safetensors"} <= names
    assert not names & {"optimizer.pt", "trainer_state.json"}
    engine = MLXEngine(out)
    assert engine.generate([Request(format_prompt("1 + 1?"))], Sampling(max_new_tokens=3, stop=()))[0].num_tokens == 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp, tiny, mlx: tmp / "nope", "no such folder"),
        (lambda tmp, tiny, mlx: (tmp / "empty").mkdir() or tmp / "empty", "has no config.json"),
        (lambda tmp, tiny, mlx: mlx, "already an MLX model"),
    ],
    ids=["missing-folder", "no-config", "already-mlx"],
)
def test_bad_model_path_fails_before_loading(make, message, tmp_path, tiny_model_path, converted, capsys):
    assert convert(["--model_name_or_path", str(make(tmp_path, tiny_model_path, converted[1]))]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_model_without_tokenizer_anywhere(tiny_model_path, tmp_path, capsys):
    lonely = tmp_path / "a" / "model"
    lonely.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_path / name, lonely / name)
    assert convert(["--model_name_or_path", str(lonely)]) == 2
    assert "no tokenizer" in capsys.readouterr().err


def test_mlx_missing(tiny_model_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlx", None)  # what `import mlx` does where it is not installed
    monkeypatch.setitem(sys.modules, "mlx.core", None)
    assert convert(["--model_name_or_path", str(tiny_model_path), "--output_dir", str(tmp_path / "o")]) == 2
    assert "requirements-mac.txt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_help(capsys):
    assert reson(["convert", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--quantize" in out and "--overwrite" in out and "--output_dir" in out and "(default: 64)" in out
    assert "(default: None)" not in out


def test_a_run_folder_passes_on_its_config_and_a_chat_template(tiny_model_path, tmp_path):
    """reson chat and eval read the run's template and limits from the MLX folder; mlx-lm's tools its template."""
    from transformers import AutoTokenizer

    run = tmp_path / "run"
    shutil.copytree(tiny_model_path, run)
    (run / "train_config.yaml").write_text("template: r1_zero_think\nmax_completion_length: 48\nreward_timeout: 3.0\n")
    assert convert(["--model_name_or_path", str(run)]) == 0
    out = tmp_path / "run-mlx"
    assert "max_completion_length: 48" in (out / "train_config.yaml").read_text()
    messages = [{"role": "user", "content": "2+2?"}]
    rendered = AutoTokenizer.from_pretrained(out).apply_chat_template(messages, tokenize=False)
    assert rendered == format_prompt("2+2?", "r1_zero_think")


def test_eval_on_the_mlx_backend_measures_the_quantized_model(converted, shared_data, tmp_path):
    """`reson eval --backend mlx` on the 4-bit folder, beside the transformers model it came from: the comparison a
    user makes to see what quantization costs. Same problems, same scoring, both backends end to end."""
    source, plain, q4 = converted
    data = [str(shared_data / "gsm8k" / "test.jsonl")]
    settings = dict(num_problems=4, max_completion_length=8, progress=False)
    full = evaluate(str(source), data, tmp_path / "hf", backend="hf", **settings)
    mlx = evaluate(str(plain), data, tmp_path / "mlx", **settings)  # auto: an MLX folder runs on MLX
    quantized = evaluate(str(q4), data, tmp_path / "4bit", backend="mlx", **settings)
    assert mlx["backend"] == quantized["backend"] == "mlx" and full["backend"] == "hf"
    for results in (full, mlx, quantized):
        assert results["datasets"]["gsm8k"]["metrics"]["count"] == 4
    # the unquantized MLX model decodes what transformers decodes, token for token
    completions = {
        name: [json.loads(line)["completion"] for line in (tmp_path / name / "samples.jsonl").open()]
        for name in ("hf", "mlx")
    }
    assert completions["hf"] == completions["mlx"]
