"""Chat with a trained model: interactively, for one prompt, or over a JSONL file of prompts.

    reson chat --model_path runs/r1-zero-3b-mlx-4bit --interactive      # MLX (a Mac, or Linux with mlx[cpu])
    reson chat --model_path runs/r1-zero-3b --prompt "What is 17 * 24?"  # transformers (torch)
    reson chat --model_path runs/r1-zero-3b-mlx --prompts questions.jsonl --output answers.jsonl

- **Backend.** `--backend auto` (the default) follows the model folder: an MLX folder (from `reson convert`)
  runs on MLX, a transformers folder on transformers. The MLX path imports neither torch nor trl, so a Mac
  needs only requirements-mac.txt.
- **Prompt.** The question goes through the training template (`--template`, default `r1_zero`, the plain-text
  DeepSeek-R1-Zero prompt), exactly as `reson train` and `reson eval` build it. In interactive mode earlier
  turns stay in the prompt in the same plain format ("... Assistant: <completion> User: <next question>.
  Assistant:"); `/reset` clears them, `/quit`, Ctrl-D or Ctrl-C at the prompt leave, and Ctrl-C while the model
  writes stops that answer.
- **Output.** Tokens are shown as they come, the thinking apart from the answer: dimmed under a "thinking"
  label on a terminal, `[thinking]` / `[answer]` labels otherwise (the tags themselves are not shown).
  Generation stops at EOS or after `</answer>`.
- **Batch.** `--prompts FILE` reads JSONL rows with a `question` (the template is applied) or a `prompt`
  (used as is, e.g. rows from `reson.core.data.with_prompts`), and writes each row back with `completion`,
  `thinking`, `response` (the text after the think block), `extracted` (the final answer, parsed as the rewards
  parse it), `num_tokens` and `truncated`. A gold `answer` column passes through untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TextIO

from reson.core.parsing import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN, prompt_opens_think
from reson.tools.backends import BACKENDS, ModelFolderError, generate, load_backend, resolve_backend

DIM, BOLD, RESET = "\x1b[2m", "\x1b[1m", "\x1b[0m"
HELP = "Type a question. /reset clears the conversation, /quit (or Ctrl-D) leaves."


def build_parser() -> argparse.ArgumentParser:
    from reson.core.data import TEMPLATES

    parser = argparse.ArgumentParser(
        prog="reson chat",
        description="Chat with a model (MLX or transformers): interactively, one prompt, or a JSONL file of prompts.",
    )
    parser.add_argument("--model_path", required=True, help="an MLX folder (reson convert) or a transformers folder")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--interactive", action="store_true", help="a conversation at the terminal (the default)")
    mode.add_argument("--prompt", default=None, help="answer one question and exit")
    mode.add_argument("--prompts", default=None, help="a JSONL file of rows with `question` or `prompt` (batch)")
    parser.add_argument("--output", default=None, help="batch mode: the JSONL file to write (default: stdout)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="auto follows the model folder's format")
    parser.add_argument(
        "--template", choices=[*TEMPLATES, "chat"], default="r1_zero", help="the prompt template used in training"
    )
    parser.add_argument("--max_tokens", type=int, default=1024, help="the most tokens generated per answer")
    parser.add_argument("--temperature", type=float, default=0.6, help="0 for greedy decoding")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (turn i of a conversation uses seed + i)")
    return parser


# ---------------------------------------------------------------------------------------------------------------
# Prompts


def conversation_prompt(history: list[tuple[str, str]], question: str, template: str, tokenizer=None) -> str:
    """The prompt for `question` after the earlier (question, completion) turns in `history`.

    With no history this is exactly `format_prompt(question, template)`. Earlier turns follow in the template's
    own plain format: for r1_zero, "<template with q1> <completion 1> User: q2. Assistant:".
    """
    from reson.core.data import PLAIN_TEMPLATE, format_prompt

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


def answer_one(backend, args, prompt: str, seed: int, out: TextIO):
    renderer = Renderer(out, color=out.isatty(), prompt=prompt)
    try:
        completion = generate(backend, prompt, args.max_tokens, args.temperature, seed, on_text=renderer.feed)
    finally:
        renderer.finish()
    if completion.truncated:
        out.write(f"(stopped after --max_tokens {args.max_tokens} tokens)\n")
    return completion


def interactive(backend, args) -> int:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    print(f"{args.model_path} on {backend.name}, template {args.template}. {HELP}")
    history: list[tuple[str, str]] = []
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
        prompt = conversation_prompt(history, question, args.template, backend.tokenizer)
        try:
            completion = answer_one(backend, args, prompt, args.seed + len(history), sys.stdout)
        except KeyboardInterrupt:
            print("(interrupted; this answer is not kept in the conversation)")
            continue
        history.append((question, completion.text))


def read_rows(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {n} is not JSON ({e.msg}).") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt", row.get("question")), str):
            raise ValueError(f"{path} line {n} needs a string `question` (or a ready-made `prompt`).")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no rows.")
    return rows


def batch(backend, args, rows: list[dict]) -> int:
    from reson.core.data import format_prompt
    from reson.core.parsing import extract_answer, split_completion

    out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    try:
        for i, row in enumerate(rows):
            prompt = (
                row["prompt"] if "prompt" in row else format_prompt(row["question"], args.template, backend.tokenizer)
            )
            start = time.perf_counter()
            completion = generate(backend, prompt, args.max_tokens, args.temperature, args.seed + i)
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
                "backend": backend.name,
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
    if args.max_tokens < 1:
        print(f"reson chat: --max_tokens must be at least 1, got {args.max_tokens}.", file=sys.stderr)
        return 2
    if args.temperature < 0:
        print(f"reson chat: --temperature must be >= 0, got {args.temperature}.", file=sys.stderr)
        return 2
    if args.output and not args.prompts:
        print("reson chat: --output goes with --prompts (batch mode).", file=sys.stderr)
        return 2
    rows = None
    try:
        if args.prompts:
            if not Path(args.prompts).is_file():
                raise ValueError(f"--prompts {args.prompts} is not a file.")
            rows = read_rows(Path(args.prompts))
        backend_name = resolve_backend(args.backend, args.model_path)
    except (ValueError, ModelFolderError) as e:
        print(f"reson chat: {e}", file=sys.stderr)
        return 2

    # Load the model
    backend = load_backend(backend_name, args.model_path)

    # Chat
    if rows is not None:
        return batch(backend, args, rows)
    if args.prompt is not None:
        from reson.core.data import format_prompt

        prompt = format_prompt(args.prompt, args.template, backend.tokenizer)
        answer_one(backend, args, prompt, args.seed, sys.stdout)
        return 0
    return interactive(backend, args)


if __name__ == "__main__":
    sys.exit(main())
