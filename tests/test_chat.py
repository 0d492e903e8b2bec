"""`reson chat`: both backends on a real tiny model, the streamed display, the conversation, batch mode, the
terminal session (through a pseudo-terminal) and every refusal.

The parity test uses a "lively" copy of the tiny model: the fixture's random init (std 0.02) makes every logit
nearly equal and greedy decoding repeats one token, which would let a broken backend pass. Weights drawn with
std 0.3 give varied, tie-free greedy text.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from reson.cli import main as reson
from reson.core.data import format_prompt
from reson.tools.backends import HFBackend, MLXBackend, decode_stream, generate
from reson.tools.chat import Renderer, conversation_prompt
from reson.tools.chat import main as chat
from reson.tools.convert import main as convert

pytestmark = [pytest.mark.mlx, pytest.mark.slow]

# Runs `reson chat` where torch and trl cannot be imported, as on a Mac with only requirements-mac.txt:
# any import of either fails, and transformers (which mlx-lm uses for tokenizers) sees no torch.
NO_TORCH = "import sys; sys.modules.update(torch=None, trl=None); from reson.tools.chat import main; sys.exit(main())"
QUESTION = "Natalia sold clips to 48 of her friends in April. How many clips did she sell?"


@pytest.fixture(scope="module")
def models(tiny_model_path, tmp_path_factory):
    """(transformers folder, its MLX conversion, its 4-bit MLX conversion) of the lively tiny model."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("chat")
    hf = root / "lively"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(hf)
    for f in tiny_model_path.glob("tokenizer*"):
        shutil.copy(f, hf / f.name)
    assert convert(["--model_path", str(hf)]) == 0
    assert convert(["--model_path", str(hf), "--quantize", "4bit"]) == 0
    return hf, root / "lively-mlx", root / "lively-mlx-4bit"


def test_mlx_and_transformers_give_the_same_greedy_text(models):
    hf, mlx, _ = models
    prompt = format_prompt(QUESTION)
    a = generate(HFBackend(hf), prompt, max_tokens=40, temperature=0.0)
    b = generate(MLXBackend(mlx), prompt, max_tokens=40, temperature=0.0)
    assert len(set(a.text)) > 10  # varied text, not one token repeated
    assert (a.text, a.num_tokens) == (b.text, b.num_tokens)


def test_streamed_text_is_exactly_the_decoded_tokens(models):
    # mlx-lm's streaming detokenizer would drop this leading space (and turn the byte 0 into "Ā")
    backend = MLXBackend(models[1])
    text = " <think> 12-7=5 \x00 caf\u00e9 </think>"
    ids = backend.encode(text)
    pieces = list(decode_stream(backend.tokenizer, iter(ids), backend.eos_token_ids, max_tokens=len(ids)))
    assert "".join(p for p, _, _ in pieces) == text
    assert [n for _, n, _ in pieces] == list(range(1, len(ids) + 1)) and pieces[-1][2] == "length"


def test_mlx_without_rope_fix_would_differ(models):
    # Guards the config fix: mlx-lm's default rope_theta (1e6) instead of the model's 1e4 changes the output
    from mlx_lm.utils import load_model

    _, mlx, _ = models
    backend = MLXBackend(mlx)
    prompt = format_prompt(QUESTION)
    fixed = generate(backend, prompt, max_tokens=40, temperature=0.0).text
    backend.model, _ = load_model(mlx, model_config={"rope_theta": 1e6})
    assert generate(backend, prompt, max_tokens=40, temperature=0.0).text != fixed


def test_sampling_is_seeded(models):
    backend = MLXBackend(models[2])  # the 4-bit model
    prompt = format_prompt(QUESTION)
    runs = [generate(backend, prompt, max_tokens=20, temperature=1.0, seed=s).text for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


class Scripted:
    """A backend that replays fixed text pieces, to test where `generate` stops (model text is random here)."""

    name = "scripted"

    def __init__(self, pieces):
        self.pieces = pieces
        self.served = 0

    def encode(self, text):
        return [0]

    def stream(self, prompt_ids, max_tokens, temperature, seed):
        for i, piece in enumerate(self.pieces[:max_tokens]):
            self.served += 1
            yield piece, i + 1, "length" if i + 1 == max_tokens else None


def test_generate_stops_after_answer_close_even_when_split():
    backend = Scripted([" <think> 2+3", "=5 </think> <answer>5</ans", "wer> User: and", " more"])
    shown = []
    completion = generate(backend, "p", max_tokens=10, on_text=shown.append)
    assert completion.text == " <think> 2+3=5 </think> <answer>5</answer>"
    assert "".join(shown) == completion.text and completion.finish_reason == "stop"
    assert backend.served == 3  # nothing generated past the stop


def test_generate_reports_truncation():
    completion = generate(Scripted(["a", "b", "c"]), "p", max_tokens=2)
    assert completion.text == "ab" and completion.truncated


@pytest.mark.parametrize(
    ("completion", "prompt", "expected"),
    [
        # the model opens the block itself; the tags become labels, the space before <think> is dropped
        (" <think> 2+3=5 </think> <answer>5</answer>", "Assistant:", "[thinking] 2+3=5\n[answer] 5\n"),
        # prefilled <think> in the prompt: the completion starts inside the block
        (" 2+3=5 </think> <answer>5</answer>", "Assistant: <think>", "[thinking] 2+3=5\n[answer] 5\n"),
        # no tags at all: everything is answer
        (" The answer is 5.", "Assistant:", "[answer] The answer is 5.\n"),
        # a think block never closed (cut by max_tokens): all thinking
        (" <think> 2+3 is", "Assistant:", "[thinking] 2+3 is\n"),
        # a "<" that is not a tag is shown once it is clear
        (" <think> 2<3 </think> 3 > 2", "Assistant:", "[thinking] 2<3\n[answer] 3 > 2\n"),
    ],
)
def test_renderer_labels_thinking_and_answer_however_the_text_is_split(completion, prompt, expected):
    for size in (1, 2, 3, 7, len(completion)):
        out = io.StringIO()
        renderer = Renderer(out, color=False, prompt=prompt)
        for i in range(0, len(completion), size):
            renderer.feed(completion[i : i + size])
        renderer.finish()
        assert out.getvalue() == expected, size


def test_renderer_dims_thinking_on_a_terminal():
    out = io.StringIO()
    renderer = Renderer(out, color=True, prompt="Assistant:")
    renderer.feed(" <think> hmm </think> <answer>5</answer>")
    renderer.finish()
    assert out.getvalue() == "\x1b[2mthinking: hmm\x1b[0m\n\x1b[1manswer:\x1b[0m 5\x1b[0m\n"


def test_conversation_prompt_keeps_turns_in_the_training_format():
    first = " <think> 2+3=5 </think> <answer>5</answer>"
    assert conversation_prompt([], "What is 2+3?", "r1_zero") == format_prompt("What is 2+3?", "r1_zero")
    prompt = conversation_prompt([("What is 2+3?", first)], "And times 2?", "r1_zero")
    assert prompt == format_prompt("What is 2+3?") + first + " User: And times 2?. Assistant:"
    prompt = conversation_prompt([("What is 2+3?", " 5 </think> <answer>5</answer>")], "And 4?", "r1_zero_think")
    assert prompt.endswith("<answer>5</answer> User: And 4?. Assistant: <think>")


def test_one_prompt_streams_to_stdout(models, capsys):
    _, mlx, _ = models
    assert chat(["--model_path", str(mlx), "--prompt", QUESTION, "--max_tokens", "12", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    expected = generate(MLXBackend(mlx), format_prompt(QUESTION), max_tokens=12, temperature=0.0)
    assert out.startswith("[answer] ") or out.startswith("[thinking] ")
    assert "(stopped after --max_tokens 12 tokens)" in out
    # what was shown is the completion, less the tags it turned into labels
    shown = out.split("] ", 1)[1].split("\n(stopped")[0]
    assert shown.replace("\n[answer] ", "").replace("\n[thinking] ", "") in expected.text


def test_batch_writes_jsonl(models, tmp_path):
    hf, _, q4 = models
    prompts = tmp_path / "in.jsonl"
    rows = [
        {"id": "a", "question": QUESTION, "answer": "72"},
        {"id": "b", "prompt": "What is 2+3? Assistant: <think>"},
    ]
    prompts.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    out = tmp_path / "out.jsonl"
    args = ["--prompts", str(prompts), "--output", str(out), "--max_tokens", "8", "--temperature", "0"]
    assert chat(["--model_path", str(q4), *args]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == ["a", "b"] and got[0]["answer"] == "72"  # gold passes through
    assert got[0]["prompt"] == format_prompt(QUESTION) and got[1]["prompt"] == rows[1]["prompt"]
    backend = MLXBackend(q4)
    for g in got:
        assert g["completion"] == generate(backend, g["prompt"], max_tokens=8, temperature=0.0).text
        assert g["backend"] == "mlx" and g["num_tokens"] <= 8
        assert {"thinking", "response", "extracted", "truncated"} <= g.keys()
    assert got[1]["thinking"] is not None  # the prompt opened the think block, so the completion is thinking

    # the transformers backend, same file, same format
    out_hf = tmp_path / "out_hf.jsonl"
    args[args.index(str(out))] = str(out_hf)
    assert chat(["--model_path", str(hf), *args]) == 0
    assert [json.loads(line)["backend"] for line in out_hf.read_text().splitlines()] == ["hf", "hf"]


def test_mlx_chat_runs_without_torch(models):
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, "--model_path", str(models[2]), "--prompt", QUESTION, "--max_tokens", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "(stopped after --max_tokens 5 tokens)" in result.stdout


def _session(model: Path) -> pexpect.spawn:
    args = ["-c", NO_TORCH, "--model_path", str(model), "--interactive", "--max_tokens", "6", "--temperature", "0"]
    child = pexpect.spawn(sys.executable, args, encoding="utf-8", timeout=60, dimensions=(40, 200))
    child.expect("you> ")
    return child


def test_interactive_session_in_a_terminal(models):
    child = _session(models[1])
    child.sendline(QUESTION)
    child.expect(r"(thinking|answer):")  # a label, in color: stdout is a terminal
    child.expect(r"stopped after --max_tokens 6 tokens")
    child.expect("you> ")
    child.sendline("/nonsense")
    child.expect("unknown command")
    child.sendline("/reset")
    child.expect(r"\(conversation cleared\)")
    child.expect("you> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.parametrize("leave", ["ctrl-d", "ctrl-c"])
def test_interactive_exits_cleanly_on_ctrl_d_and_ctrl_c(models, leave):
    child = _session(models[2])
    if leave == "ctrl-d":
        child.sendeof()
    else:
        child.sendintr()
    child.expect(pexpect.EOF)
    assert "Traceback" not in child.before
    child.close()
    assert child.exitstatus == 0


def test_mlx_missing(models, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlx", None)  # what `import mlx` does where it is not installed
    monkeypatch.setitem(sys.modules, "mlx.core", None)
    assert chat(["--model_path", str(models[1]), "--backend", "mlx", "--prompt", "hi"]) == 2
    assert "requirements-mac.txt" in capsys.readouterr().err
    assert chat(["--model_path", str(models[1]), "--prompt", "hi"]) == 2  # auto on an MLX folder
    assert "is an MLX model, and the MLX backend needs mlx" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("which", "extra", "message"),
    [
        ("missing", ["--prompt", "hi"], "does not exist"),
        ("mlx", ["--prompt", "hi", "--backend", "hf"], "which transformers cannot load"),
        ("hf", ["--prompt", "hi", "--backend", "mlx"], "convert it first with `reson convert"),
        ("hf", ["--prompt", "hi", "--output", "x.jsonl"], "--output goes with --prompts"),
        ("hf", ["--prompt", "hi", "--max_tokens", "0"], "--max_tokens must be at least 1"),
        ("hf", ["--prompts", "nope.jsonl"], "is not a file"),
    ],
    ids=["missing-folder", "mlx-to-hf", "hf-to-mlx", "output-without-prompts", "zero-tokens", "missing-prompts"],
)
def test_errors_before_loading(models, tmp_path, which, extra, message, capsys):
    path = {"missing": tmp_path / "nope", "mlx": models[1], "hf": models[0]}[which]
    assert chat(["--model_path", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_prompts_file(models, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{"text": "no question"}\n')
    assert chat(["--model_path", str(models[1]), "--prompts", str(bad)]) == 2
    assert "line 2 needs a string `question`" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        reson(["chat", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--interactive", "--prompts", "--backend", "--max_tokens", "--temperature", "--seed"):
        assert option in out


def test_transformers_missing(models, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # a Mac with requirements-mac.txt: no torch
    assert chat(["--model_path", str(models[0]), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert "needs torch and transformers" in err and "reson convert" in err
