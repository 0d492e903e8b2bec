"""The `reson` command: one entry point, one subcommand per module.

Each subcommand lives in its own module with a ``main(argv)`` that parses its own arguments, so
``reson train ...`` and ``python -m reson.training.train ...`` are the same program, and ``reson --help`` imports
nothing heavy.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, one-line summary)
COMMANDS = {
    "demo": ("reson.miniature.demo", "the offline miniature: build a tiny base model, evaluate, GRPO, evaluate again"),
    "score": ("reson.evaluation.score", "score a JSONL of completions with the accuracy and format rewards"),
    "train": ("reson.training.train", "train a base model with GRPO from a YAML recipe"),
    "eval": ("reson.evaluation.evaluate", "evaluate a model on GSM8K, MATH and friends"),
    "compare": ("reson.evaluation.compare", "compare eval runs: the Baseline vs After GRPO table in markdown"),
    "convert": ("reson.tools.convert", "convert a trained model to MLX, optionally quantized"),
    "chat": ("reson.tools.chat", "chat with a model, interactively or in batch (MLX or transformers)"),
    "plan": ("reson.tools.plan", "predict a training recipe's peak GPU memory"),
    "report": ("reson.tools.report", "plots and an HTML page of a run's curves and canary completions"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: reson <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `reson <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"reson: unknown command {name!r}. Choose one of: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
