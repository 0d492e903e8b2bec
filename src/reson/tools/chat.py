"""Chat with a trained model: interactively, for one prompt, or over a JSONL file of prompts.

    reson chat --model_name_or_path runs/r1-zero-3b-mlx-4bit                    # interactive, MLX (a Mac, or mlx[cpu])
    reson chat --model_name_or_path runs/r1-zero-3b --prompt "What is 17 * 24?"    # one question, transformers
    reson chat --model_name_or_path runs/r1-zero-3b-mlx --prompts questions.jsonl --output_file answers.jsonl

- **Backend.** `--backend auto` (the default) follows the model folder: an MLX folder (from `reson convert`) runs on
  MLX, a transformers folder on transformers (`hf`). The MLX path imports neither torch nor trl, so a Mac needs only
  requirements-mac.txt. Generation is `reson.core.generation`'s, the engine of `reson eval` and the training
  canaries (TRL generates the rollouts itself).
- **Prompt.** The question goes through the training template (`--template`, default: the run's own, else `r1_zero`,
  the plain-text DeepSeek-R1-Zero prompt), exactly as `reson train` and `reson eval` build it. Each question is asked
  on its own, as in training; `--history` keeps earlier turns in the prompt instead ("... Assistant: <completion>
  User: <next question>. Assistant:"). `/reset` clears them, `/quit`, Ctrl-D or Ctrl-C at the prompt leave, and
  Ctrl-C while the model writes stops that answer.
- **Output.** Tokens are shown as they come, the thinking apart from the answer: dimmed under a "thinking" label on
  a terminal, `[thinking]` / `[answer]` labels otherwise (the tags themselves are not shown). Generation stops at
  EOS or after `</answer>`.
- **Batch.** `--prompts FILE` reads JSONL rows with a `question` (or `prompt`: the same, templated) or a
  `raw_prompt` (sent exactly as written), and writes each row back with `completion`, `thinking`, `response` (the
  text after the think block), `extracted` (the final answer, parsed as the rewards parse it), `num_tokens` and
  `truncated`. A gold `answer` column passes through untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reson.core import folders, generation, models
from reson.core.data import PLAIN_TEMPLATE, TEMPLATES, format_prompt
from reson.core.help import HelpFormatter
from reson.core.jsonl import JsonlError, read_jsonl
from reson.core.parsing import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    extract_answer,
    prompt_opens_think,
    split_completion,
)

DIM, BOLD, RESET = "\x1b[2m", "\x1b[1m", "\x1b[0m"
HELP = "Type a question. /reset clears the conversation, /quit (or Ctrl-D) leaves."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reson chat",
        description="Chat with a model (MLX or transformers): interactively, one prompt, or a JSONL file of prompts.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model_name_or_path", required=True, help="an MLX folder (reson convert) or a transformers folder"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--interactive", action="store_true", help="a conversation at the terminal (the default)")
    mode.add_argument("--prompt", default=None, help="answer one question and exit")
    mode.add_argument("--prompts", default=None, help="a JSONL file of rows with `question` or `raw_prompt` (batch)")
    parser.add_argument("--output_file", default=None, help="batch mode: the JSONL file to write (default: stdout)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output_file if it exists")
    parser.add_argument(
        "--backend",
        choices=("auto", "mlx", "hf", "transformers"),
        default="auto",
        help="auto follows the folder: mlx, or hf (transformers, also accepted by that name)",
    )
    parser.add_argument(
        "--template", choices=[*TEMPLATES, "chat"], default=None, help="prompt template (default: the run's, r1_zero)"
    )
    parser.add_argument(
        "--max_completion_length",
        type=int,
        default=None,
        help=f"tokens per answer at most (default: the run's own, else {generation.DEFAULT_MAX_COMPLETION_LENGTH})",
    )
    parser.add_argument("--temperature", type=float, default=0.6, help="0 for greedy decoding")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (turn i of a conversation uses seed + i)")
    parser.add_argument("--history", action="store_true", help="keep earlier turns in the prompt (multi-turn)")
    return parser


# ---------------------------------------------------------------------------------------------------------------
# Prompts


def conversation_prompt(history: list[tuple[str, str]], question: str, template: str, tokenizer=None) -> str:
    """The prompt for `question` after the earlier (question, completion) turns in `history`.

    With no history this is exactly `format_prompt(question, template)`. Earlier turns follow in the template's
    own plain format: for r1_zero, "<template with q1> <completion 1> User: q2. Assistant:".
    """
    if template == "chat":
        messages = []
        for q, a in history:
            messages += [
                {"role": "user", "content": PLAIN_TEMPLATE.format(question=q)},
                {"role": "assistant", "content": a},
            ]
        messages.append({"role": "user", "content": PLAIN_TEMPLATE.format(question=question)})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not history:
        return format_prompt(question, template)
    marker = "\x00"
    head, tail = format_prompt(marker, template).split(marker)
    turn_head, sep = (head[head.rfind("User:") :], " ") if "User:" in head else (head, "\n\n")
    prompt = head + history[0][0].strip() + tail
    for i, (_, answer) in enumerate(history):
        following = history[i + 1][0] if i + 1 < len(history) else question
        prompt += answer.rstrip() + sep + turn_head + following.strip() + tail
    return prompt


# ---------------------------------------------------------------------------------------------------------------
# Showing a streamed completion


class Renderer:
    """Writes a streamed completion with the thinking and the answer told apart.

    Text inside `<think>...</think>` is thinking, everything else answer. The tags are replaced by section labels
    ("thinking" dimmed and "answer" in bold on a terminal, `[thinking]` / `[answer]` otherwise). A tag can arrive
    split over several pieces, so a tail that could still become a tag is held back until the next piece.
    """

    TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

    def __init__(self, out: TextIO, color: bool, prompt: str = ""):
        self.out = out
        self.color = color
        self.in_think = prompt_opens_think(prompt)
        self.buffer = ""  # text not yet shown: a possible partial tag
        self.section: str | None = None  # the section whose label was last written
        self.pending = ""  # whitespace held until we know which section it belongs to

    def feed(self, piece: str) -> None:
        self.buffer += piece
        while True:
            hits = [(i, tag) for tag in self.TAGS if (i := self.buffer.find(tag)) >= 0]
            if not hits:
                break
            i, tag = min(hits)
            self._text(self.buffer[:i])
            self.buffer = self.buffer[i + len(tag) :]
            self.pending = ""
            if tag == THINK_OPEN:
                self.in_think = True
            elif tag in (THINK_CLOSE, ANSWER_OPEN):
                self.in_think = False
        longest = max(map(len, self.TAGS))
        keep = max(
            (
                k
                for k in range(1, min(len(self.buffer), longest) + 1)
                for t in self.TAGS
                if t.startswith(self.buffer[-k:])
            ),
            default=0,
        )
        self._text(self.buffer[: len(self.buffer) - keep])
        self.buffer = self.buffer[len(self.buffer) - keep :]
        self.out.flush()

    def finish(self) -> None:
        self._text(self.buffer)
        self.buffer = ""
        if self.color and self.section is not None:
            self.out.write(RESET)
        self.out.write("\n")
        self.out.flush()

    def _text(self, text: str) -> None:
        if not text:
            return
        text = self.pending + text
        section = "thinking" if self.in_think else "answer"
        if section != self.section:
            text = text.lstrip()
            if not text:
                self.pending = ""
                return
            self._label(section)
        body = text.rstrip()  # trailing whitespace waits: it may end the section
        self.pending = text[len(body) :]
        self.out.write(body)

    def _label(self, section: str) -> None:
        if self.section is not None:
            self.out.write(RESET + "\n" if self.color else "\n")
        if self.color:
            self.out.write(f"{DIM}thinking: " if section == "thinking" else f"{BOLD}answer:{RESET} ")
        else:
            self.out.write(f"[{section}] ")
        self.section = section


# ---------------------------------------------------------------------------------------------------------------
# Modes


@dataclass(frozen=True)
class Session:
    """What a chat runs with, checked and resolved from the command line: the model's name (for the banner), the
    prompt template, how to decode, the first seed, and whether earlier turns stay in the prompt."""

    model: str
    template: str
    sampling: generation.Sampling
    seed: int = 0
    history: bool = False


def answer_one(engine, sampling: generation.Sampling, prompt: str, seed: int, out: TextIO) -> generation.Generation:
    renderer = Renderer(out, color=out.isatty(), prompt=prompt)
    result = None
    try:
        with contextlib.closing(engine.stream(prompt, sampling, seed)) as steps:
            for item in steps:
                if isinstance(item, generation.Generation):
                    result = item
                else:
                    renderer.feed(item)
    finally:
        renderer.finish()
    if result.truncated:
        out.write(f"(stopped after --max_completion_length {sampling.max_new_tokens} tokens)\n")
    return result


def interactive(engine, session: Session) -> int:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    turns = "earlier turns kept (--history)" if session.history else "each question on its own"
    print(f"{session.model} on {engine.name}, template {session.template}, {turns}. {HELP}")
    history: list[tuple[str, str]] = []
    asked = 0
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        question = line.strip()
        if not question:
            continue
        if question in ("/quit", "/exit"):
            return 0
        if question == "/reset":
            history.clear()
            print("(conversation cleared)")
            continue
        if question.startswith("/"):
            print(f"unknown command {question!r}. {HELP}")
            continue
        prompt = conversation_prompt(history, question, session.template, engine.tokenizer)
        try:
            completion = answer_one(engine, session.sampling, prompt, session.seed + asked, sys.stdout)
        except KeyboardInterrupt:
            print("(interrupted; this answer is not kept in the conversation)")
            continue
        asked += 1
        if session.history:
            history.append((question, completion.text))


def read_rows(path: Path) -> list[dict]:
    """Prompt rows of a JSONL file; ValueError naming the line for a row without a question."""
    rows = read_jsonl(path, strict=True).records
    for number, row in enumerate(rows, start=1):
        if not any(isinstance(row.get(key), str) for key in ("question", "prompt", "raw_prompt")):
            raise ValueError(f"{path}, row {number}: needs a string `question` (or `prompt`, or `raw_prompt`).")
    if not rows:
        raise ValueError(f"{path} holds no rows.")
    return rows


def row_prompt(row: dict, template: str, tokenizer) -> str:
    """The prompt for a batch row: `raw_prompt` as written, else its `question` (or `prompt`) under the template."""
    if isinstance(row.get("raw_prompt"), str):
        return row["raw_prompt"]
    return format_prompt(
        row["question"] if isinstance(row.get("question"), str) else row["prompt"], template, tokenizer
    )


def batch(engine, session: Session, rows: list[dict], output_file: str | None) -> int:
    out = open(output_file, "w") if output_file else sys.stdout  # noqa: SIM115
    try:
        for i, row in enumerate(rows):
            prompt = row_prompt(row, session.template, engine.tokenizer)
            start = time.perf_counter()
            [completion] = engine.generate([generation.Request(prompt, session.seed + i)], session.sampling)
            parsed = split_completion(completion.text, prompt)
            record = {
                **row,
                "prompt": prompt,
                "completion": completion.text,
                "thinking": parsed.think,
                "response": parsed.answer,
                "extracted": extract_answer(parsed.answer),
                "num_tokens": completion.num_tokens,
                "truncated": completion.truncated,
                "backend": engine.name,
            }
            out.write(json.dumps(record) + "\n")
            out.flush()
            seconds = time.perf_counter() - start
            print(
                f"[{i + 1}/{len(rows)}] {completion.num_tokens} tokens in {seconds:.1f}s, "
                f"answer: {record['extracted']!r}",
                file=sys.stderr,
            )
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    # Check the inputs, before the model loads
    run = models.run_config(args.model_name_or_path)
    template = args.template or run.get("template", "r1_zero")
    length = args.max_completion_length
    if length is None:
        length = run.get("max_completion_length", generation.DEFAULT_MAX_COMPLETION_LENGTH)
    try:
        if length < 1:
            raise ValueError(f"--max_completion_length must be at least 1, got {length}.")
        if args.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {args.temperature}.")
        if args.output_file and not args.prompts:
            raise ValueError("--output_file goes with --prompts (batch mode).")
        folders.check_output_file(args.output_file, "--output_file", args.overwrite)
        rows = None
        if args.prompts:
            if not Path(args.prompts).is_file():
                raise ValueError(f"--prompts {args.prompts}: no such file.")
            rows = read_rows(Path(args.prompts))
        models.check_model(args.model_name_or_path)
        backend = generation.resolve_backend(args.backend, args.model_name_or_path)
        if template == "chat" and not has_chat_template(args.model_name_or_path):
            raise ValueError(
                f"--template chat: {args.model_name_or_path} has no chat template; use --template r1_zero (the "
                "training template)."
            )
    except (ValueError, JsonlError) as error:  # ModelPathError, BackendError and FolderError are ValueErrors
        print(f"reson chat: {error}", file=sys.stderr)
        return 2
    sampling = generation.Sampling(max_new_tokens=length, temperature=args.temperature)
    session = Session(args.model_name_or_path, template, sampling, args.seed, args.history)

    # Load the model
    engine = generation.load_engine(backend, args.model_name_or_path)

    # Chat
    if rows is not None:
        return batch(engine, session, rows, args.output_file)
    if args.prompt is not None:
        answer_one(engine, sampling, format_prompt(args.prompt, template, engine.tokenizer), args.seed, sys.stdout)
        return 0
    return interactive(engine, session)


def has_chat_template(model: str) -> bool:
    """Whether the model's tokenizer carries a chat template, from its files (nothing loads)."""
    folder = models.tokenizer_dir(model) if models.is_local(model) else None
    if folder is None:
        return True  # a hub id: its tokenizer decides when it loads
    if (folder / "chat_template.jinja").is_file():
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


if __name__ == "__main__":
    sys.exit(main())
