"""`reson chat`: both backends on a real tiny model, the streamed display, single and multi-turn prompts, batch
mode, the terminal session (through a pseudo-terminal), the converted folder's chat template, and every refusal.

The parity test uses a "lively" copy of the tiny model: the fixture's random init (std 0.02) makes every logit
nearly equal and greedy decoding repeats one token, which would let a broken backend pass. Weights drawn with
std 0.3 give varied, tie-free greedy text.
"""

from __future__ import annotations

import builtins
import io
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from reson.cli import main as reson
from reson.core.data import format_prompt
from reson.core.generation import Generation, HFEngine, MLXEngine, Request, Sampling, decode_stream
from reson.tools.chat import Renderer, Session, conversation_prompt, interactive
from reson.tools.chat import main as chat
from reson.tools.convert import main as convert

pytestmark = [pytest.mark.mlx, pytest.mark.slow]

# Runs `reson chat` where torch and trl cannot be imported, as on a Mac with only requirements-mac.txt:
# any import of either fails, and transformers (which mlx-lm uses for tokenizers) sees no torch.
NO_TORCH = "import sys; sys.modules.update(torch=None, trl=None); from reson.tools.chat import main; sys.exit(main())"
QUESTION = "Natalia sold clips to 48 of her friends in April. How many clips did she sell?"


def greedy(engine, prompt: str, tokens: int) -> Generation:
    return engine.generate([Request(prompt)], Sampling(max_new_tokens=tokens))[0]


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
    assert convert(["--model_name_or_path", str(hf)]) == 0
    assert convert(["--model_name_or_path", str(hf), "--quantize", "4bit"]) == 0
    return hf, root / "lively-mlx", root / "lively-mlx-4bit"


def test_mlx_and_transformers_give_the_same_greedy_text(models):
    hf, mlx, _ = models
    prompt = format_prompt(QUESTION)
    a = greedy(HFEngine.from_pretrained(str(hf)), prompt, 40)
    b = greedy(MLXEngine(mlx), prompt, 40)
    assert len(set(a.text)) > 10  # varied text, not one token repeated
    assert (a.text, a.num_tokens) == (b.text, b.num_tokens)


def test_streamed_text_is_exactly_the_decoded_tokens(models):
    # mlx-lm's streaming detokenizer would drop this leading space (and turn the byte 0 into "Ā")
    engine = MLXEngine(models[1])
    text = " <think> 12-7=5 \x00 caf\u00e9 </think>"
    ids = engine.tokenizer.encode(text, add_special_tokens=False)
    items = list(decode_stream(engine.tokenizer, iter(ids), engine.eos_token_ids, Sampling(len(ids), stop=())))
    pieces, result = items[:-1], items[-1]
    assert "".join(pieces) == text and result.text == text
    assert result.num_tokens == len(ids) and result.finish_reason == "length"


def test_hf_streaming_is_the_batch_generation(models):
    engine = HFEngine.from_pretrained(str(models[0]))
    prompt = format_prompt(QUESTION)
    items = list(engine.stream(prompt, Sampling(max_new_tokens=30, temperature=1.0), seed=5))
    batch = engine.generate([Request(prompt, seed=5)], Sampling(max_new_tokens=30, temperature=1.0))[0]
    assert "".join(items[:-1]) == items[-1].text == batch.text and items[-1].num_tokens == batch.num_tokens


def test_mlx_without_rope_fix_would_differ(models):
    # Guards the config fix: mlx-lm's default rope_theta (1e6) instead of the model's 1e4 changes the output
    from mlx_lm.utils import load_model

    _, mlx, _ = models
    engine = MLXEngine(mlx)
    prompt = format_prompt(QUESTION)
    fixed = greedy(engine, prompt, 40).text
    engine.model, _ = load_model(mlx, model_config={"rope_theta": 1e6})
    assert greedy(engine, prompt, 40).text != fixed


def test_sampling_is_seeded(models):
    engine = MLXEngine(models[2])  # the 4-bit model
    prompt = format_prompt(QUESTION)
    sampling = Sampling(max_new_tokens=20, temperature=1.0)
    runs = [engine.generate([Request(prompt, seed=s)], sampling)[0].text for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


class PieceTokenizer:
    """Each token id decodes to a fixed piece of text, to test where decoding stops (model text is random here)."""

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.pieces[i] for i in ids)


def test_decoding_stops_after_answer_close_even_when_split():
    pieces = [" <think> 2+3", "=5 </think> <answer>5</ans", "wer> User: and", " more"]
    consumed = []
    tokens = (consumed.append(i) or i for i in range(len(pieces)))
    items = list(decode_stream(PieceTokenizer(pieces), tokens, set(), Sampling(max_new_tokens=10)))
    result = items[-1]
    assert result.text == " <think> 2+3=5 </think> <answer>5</answer>" and result.finish_reason == "stop"
    assert "".join(items[:-1]) == result.text
    assert consumed == [0, 1, 2]  # nothing generated past the stop


def test_decoding_reports_truncation():
    items = list(decode_stream(PieceTokenizer(["a", "b", "c"]), iter(range(3)), set(), Sampling(max_new_tokens=2)))
    assert items[-1].text == "ab" and items[-1].truncated


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


class Recorder:
    """An engine that answers " 5" and records the prompts it was given."""

    name = "recorder"
    tokenizer = None

    def __init__(self):
        self.prompts = []

    def stream(self, prompt, sampling, seed=0):
        self.prompts.append(prompt)
        yield " 5"
        yield Generation(" 5", 1, "stop")


@pytest.mark.parametrize("history", [False, True])
def test_each_question_is_asked_on_its_own_unless_history_is_asked_for(monkeypatch, capsys, history):
    """The model was trained on single questions: a follow-up keeps earlier turns only with --history."""
    questions = iter(["What is 2+3?", "And times 2?"])

    def fake_input(prompt=""):
        try:
            return next(questions)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr(builtins, "input", fake_input)
    engine = Recorder()
    session = Session(model="m", template="r1_zero", sampling=Sampling(), history=history)
    assert interactive(engine, session) == 0
    assert engine.prompts[0] == format_prompt("What is 2+3?")
    if history:
        assert engine.prompts[1] == format_prompt("What is 2+3?") + " 5 User: And times 2?. Assistant:"
    else:
        assert engine.prompts[1] == format_prompt("And times 2?")


def test_conversation_prompt_keeps_turns_in_the_training_format():
    first = " <think> 2+3=5 </think> <answer>5</answer>"
    assert conversation_prompt([], "What is 2+3?", "r1_zero") == format_prompt("What is 2+3?", "r1_zero")
    prompt = conversation_prompt([("What is 2+3?", first)], "And times 2?", "r1_zero")
    assert prompt == format_prompt("What is 2+3?") + first + " User: And times 2?. Assistant:"
    prompt = conversation_prompt([("What is 2+3?", " 5 </think> <answer>5</answer>")], "And 4?", "r1_zero_think")
    assert prompt.endswith("<answer>5</answer> User: And 4?. Assistant: <think>")


def test_one_prompt_streams_to_stdout(models, capsys):
    _, mlx, _ = models
    argv = ["--model_name_or_path", str(mlx), "--prompt", QUESTION, "--max_completion_length", "12", "--temperature"]
    assert chat([*argv, "0"]) == 0
    out = capsys.readouterr().out
    expected = greedy(MLXEngine(mlx), format_prompt(QUESTION), 12)
    assert out.startswith("[answer] ") or out.startswith("[thinking] ")
    assert "(stopped after --max_completion_length 12 tokens)" in out
    # what was shown is the completion, less the tags it turned into labels
    shown = out.split("] ", 1)[1].split("\n(stopped")[0]
    assert shown.replace("\n[answer] ", "").replace("\n[thinking] ", "") in expected.text


def test_batch_writes_jsonl(models, tmp_path, capsys):
    hf, _, q4 = models
    prompts = tmp_path / "in.jsonl"
    rows = [
        {"id": "a", "question": QUESTION, "answer": "72"},
        {"id": "b", "prompt": "What is 2+3?"},  # a prompt is a question too: templated
        {"id": "c", "raw_prompt": "What is 2+3? Assistant: <think>"},  # sent as written
    ]
    prompts.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    out = tmp_path / "out.jsonl"
    args = ["--prompts", str(prompts), "--output_file", str(out), "--max_completion_length", "8", "--temperature", "0"]
    assert chat(["--model_name_or_path", str(q4), *args]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == ["a", "b", "c"] and got[0]["answer"] == "72"  # gold passes through
    assert got[0]["prompt"] == format_prompt(QUESTION) and got[1]["prompt"] == format_prompt("What is 2+3?")
    assert got[2]["prompt"] == rows[2]["raw_prompt"]
    engine = MLXEngine(q4)
    for g in got:
        assert g["completion"] == greedy(engine, g["prompt"], 8).text
        assert g["backend"] == "mlx" and g["num_tokens"] <= 8
        assert {"thinking", "response", "extracted", "truncated"} <= g.keys()
    assert got[2]["thinking"] is not None  # the prompt opened the think block, so the completion is thinking

    # an existing output file is not replaced without --overwrite
    assert chat(["--model_name_or_path", str(q4), *args]) == 2
    assert "--overwrite" in capsys.readouterr().err

    # the transformers backend, asked for by that name, same file, same format
    out_hf = tmp_path / "out_hf.jsonl"
    args[args.index(str(out))] = str(out_hf)
    assert chat(["--model_name_or_path", str(hf), "--backend", "transformers", *args]) == 0
    assert [json.loads(line)["backend"] for line in out_hf.read_text().splitlines()] == ["hf", "hf", "hf"]


def test_mlx_chat_runs_without_torch(models):
    argv = ["--model_name_or_path", str(models[2]), "--prompt", QUESTION, "--max_completion_length", "5"]
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "(stopped after --max_completion_length 5 tokens)" in result.stdout


def test_the_converted_folder_works_with_mlx_lms_own_tools(models):
    """Its chat template renders the training prompt, so `mlx_lm.generate` (and `mlx_lm.chat`) prompt the model as
    it was trained."""
    from transformers import AutoTokenizer

    for folder in models[1:]:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False)
        assert rendered == format_prompt(QUESTION)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "generate",
            "--model",
            str(models[2]),
            "--prompt",
            QUESTION,
            "--max-tokens",
            "4",
            "--verbose",
            "True",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def _session(model: Path) -> pexpect.spawn:
    args = [
        "-c",
        NO_TORCH,
        "--model_name_or_path",
        str(model),
        "--interactive",
        "--max_completion_length",
        "6",
        "--temperature",
        "0",
    ]
    child = pexpect.spawn(
        sys.executable,
        args,
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
        # a terminal session starts with Ctrl-C live; a suite run as a background job inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    child.expect("you> ")
    return child


def test_interactive_session_in_a_terminal(models):
    child = _session(models[1])
    child.sendline(QUESTION)
    child.expect(r"(thinking|answer):")  # a label, in color: stdout is a terminal
    child.expect(r"stopped after --max_completion_length 6 tokens")
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
    assert chat(["--model_name_or_path", str(models[1]), "--backend", "mlx", "--prompt", "hi"]) == 2
    assert "requirements-mac.txt" in capsys.readouterr().err
    assert chat(["--model_name_or_path", str(models[1]), "--prompt", "hi"]) == 2  # auto on an MLX folder
    assert "needs MLX, and the MLX backend needs mlx" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("which", "extra", "message"),
    [
        ("missing", ["--prompt", "hi"], "no such folder"),
        (
            "mlx",
            ["--prompt", "hi", "--backend", "hf"],
            "is an MLX model (written by reson convert): use --backend mlx",
        ),
        ("hf", ["--prompt", "hi", "--backend", "mlx"], "convert it first (reson convert --model_name_or_path"),
        ("hf", ["--prompt", "hi", "--output_file", "x.jsonl"], "--output_file goes with --prompts"),
        ("hf", ["--prompt", "hi", "--max_completion_length", "0"], "--max_completion_length must be at least 1"),
        ("hf", ["--prompts", "nope.jsonl"], "no such file"),
        ("hf", ["--prompt", "hi", "--template", "chat"], "has no chat template; use --template r1_zero"),
    ],
    ids=[
        "missing-folder",
        "mlx-to-hf",
        "hf-to-mlx",
        "output-without-prompts",
        "zero-tokens",
        "missing-prompts",
        "no-chat-template",
    ],
)
def test_errors_before_loading(models, tmp_path, which, extra, message, capsys):
    path = {"missing": tmp_path / "nope", "mlx": models[1], "hf": models[0]}[which]
    assert chat(["--model_name_or_path", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_prompts_file(models, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{"text": "no question"}\n')
    assert chat(["--model_name_or_path", str(models[1]), "--prompts", str(bad)]) == 2
    assert "row 2: needs a string `question`" in capsys.readouterr().err


def test_help_says_every_default(capsys):
    assert reson(["chat", "--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--interactive",
        "--prompts",
        "--backend",
        "--max_completion_length",
        "--temperature",
        "--seed",
        "--history",
    ):
        assert option in out
    assert "(default: 0.6)" in out and "else 1536" in out


def test_transformers_missing(models, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # a Mac with requirements-mac.txt: no torch
    assert chat(["--model_name_or_path", str(models[0]), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert "needs torch for the hf backend" in err and "convert it to MLX" in err
