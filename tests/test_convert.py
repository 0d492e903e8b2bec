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
from reson.tools.backends import MLXBackend, generate, model_format
from reson.tools.convert import main as convert

pytestmark = [pytest.mark.mlx, pytest.mark.slow]


@pytest.fixture(scope="module")
def converted(tiny_model_path, tmp_path_factory):
    """The tiny model converted twice: unquantized and 4-bit, with default output names beside a copy."""
    root = tmp_path_factory.mktemp("convert")
    source = root / "run"
    shutil.copytree(tiny_model_path, source)
    assert convert(["--model_path", str(source)]) == 0
    assert convert(["--model_path", str(source), "--quantize", "4bit"]) == 0
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
        completion = generate(MLXBackend(folder), prompt, max_tokens=6, temperature=0.0)
        assert completion.num_tokens == 6 and completion.text


def test_writes_rope_theta_that_mlx_lm_reads(converted, tiny_model_path):
    # transformers 5 keeps rope_theta under rope_parameters; mlx-lm's Qwen2 reads only the top-level key
    hf_config = json.loads((tiny_model_path / "config.json").read_text())
    mlx_config = json.loads((converted[1] / "config.json").read_text())
    assert mlx_config["rope_theta"] == hf_config["rope_parameters"]["rope_theta"]


def test_prints_size_and_sample(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "m"
    assert convert(["--model_path", str(tiny_model_path), "--output", str(out), "--quantize", "8bit"]) == 0
    printed = capsys.readouterr().out
    assert f"MLX model (8bit) written to {out}" in printed and " MB" in printed
    assert json.loads((out / "config.json").read_text())["quantization"]["bits"] == 8


def test_refuses_existing_output_without_force(converted, capsys):
    source, plain, _ = converted
    before = (plain / "model.safetensors").stat().st_mtime_ns
    assert convert(["--model_path", str(source)]) == 2
    assert "already exists: pass --force" in capsys.readouterr().err
    assert (plain / "model.safetensors").stat().st_mtime_ns == before


def test_force_replaces_output_only_when_the_new_one_is_complete(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous output")
    # A source that passes the checks but cannot convert: its config asks for a layer the weights lack
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_path, broken)
    config = json.loads((broken / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (broken / "config.json").write_text(json.dumps(config))
    assert convert(["--model_path", str(broken), "--output", str(out), "--force"]) == 1
    assert "failed" in capsys.readouterr().err
    assert (out / "old.txt").read_text() == "previous output"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "out"]  # no temporary folder left behind

    assert convert(["--model_path", str(tiny_model_path), "--output", str(out), "--force"]) == 0
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
    assert convert(["--model_path", str(checkpoint)]) == 0
    out = run / "checkpoint-5-mlx"
    names = {p.name for p in out.iterdir()}
    assert {"tokenizer.json", "config.json", "model.safetensors"} <= names
    assert not names & {"optimizer.pt", "trainer_state.json"}
    assert generate(MLXBackend(out), format_prompt("1 + 1?"), max_tokens=3, temperature=0.0).num_tokens == 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp, tiny, mlx: tmp / "nope", "does not exist"),
        (lambda tmp, tiny, mlx: (tmp / "empty").mkdir() or tmp / "empty", "has no config.json"),
        (lambda tmp, tiny, mlx: mlx, "already an MLX model"),
    ],
    ids=["missing-folder", "no-config", "already-mlx"],
)
def test_bad_model_path_fails_before_loading(make, message, tmp_path, tiny_model_path, converted, capsys):
    assert convert(["--model_path", str(make(tmp_path, tiny_model_path, converted[1]))]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_model_without_tokenizer_anywhere(tiny_model_path, tmp_path, capsys):
    lonely = tmp_path / "a" / "model"
    lonely.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_path / name, lonely / name)
    assert convert(["--model_path", str(lonely)]) == 2
    assert "no tokenizer" in capsys.readouterr().err


def test_mlx_missing(tiny_model_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlx", None)  # what `import mlx` does where it is not installed
    monkeypatch.setitem(sys.modules, "mlx.core", None)
    assert convert(["--model_path", str(tiny_model_path), "--output", str(tmp_path / "o")]) == 2
    assert "requirements-mac.txt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        reson(["convert", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--quantize" in out and "--force" in out and "--output" in out
