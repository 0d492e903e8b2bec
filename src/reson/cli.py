"""The `reson` command: one entry point, one subcommand per module.

Each subcommand lives in its own module with a ``main(argv)`` that parses its own arguments, so ``reson train ...``
and ``python -m reson train ...`` are the same program, and ``reson --help`` imports nothing heavy. A command's
``--help`` is cached on disk (per version of the package's sources, TRL and transformers): ``reson train --help``
lists every TRL field, and importing TRL (torch included) alone takes about three seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# subcommand -> (module, one-line summary)
COMMANDS = {
    "demo": ("reson.miniature.demo", "the offline miniature: evaluate a tiny base model, GRPO, evaluate again"),
    "train": ("reson.training.train", "train a base model with GRPO from a YAML recipe"),
    "eval": ("reson.evaluation.evaluate", "evaluate a model on GSM8K, MATH and friends"),
    "compare": ("reson.evaluation.compare", "compare eval runs: the Baseline vs After GRPO table in markdown"),
    "score": ("reson.evaluation.score", "score a JSONL of completions with the accuracy and format rewards"),
    "report": ("reson.tools.report", "plots and an HTML page of one or more runs' curves and canary completions"),
    "plan": ("reson.tools.plan", "predict a training recipe's peak GPU memory"),
    "convert": ("reson.tools.convert", "convert a trained model to MLX, optionally quantized"),
    "chat": ("reson.tools.chat", "chat with a model, interactively or in batch (MLX or transformers)"),
    "data": (
        "reson.tools.download",
        "download GSM8K, MATH and friends into a folder for --data_dir (offline machines)",
    ),
}
PACKAGE = Path(__file__).resolve().parent


def package_version() -> str:
    try:
        return version("reson-llm")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: reson <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `reson <command> --help` for a command's options; `reson --version` for the version."]
    return "\n".join(lines)


def import_command(name: str):
    """The module of command ``name``. What its libraries print while importing goes to stderr: a command's stdout is
    for what it prints itself, often data (`reson plan --json`, batch chat); transformers, for one, prints a line when
    WANDB_MODE is offline."""
    with contextlib.redirect_stdout(sys.stderr):
        return importlib.import_module(COMMANDS[name][0])


def command_help(name: str) -> str:
    """`reson <name> --help`, cached: built once by running the command's own `--help`."""
    sources = sorted(PACKAGE.rglob("*.py"))
    key = hashlib.sha256()
    for path in sources:
        key.update(path.read_bytes())
    for dependency in ("trl", "transformers"):
        with contextlib.suppress(PackageNotFoundError):
            key.update(version(dependency).encode())
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reson"
    cache = folder / f"{name}-{key.hexdigest()[:16]}"
    if cache.is_file():
        return cache.read_text()
    module = import_command(name)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        module.main(["--help"])
    text = out.getvalue()
    with contextlib.suppress(OSError):  # a read-only home: no cache, the same help
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, cache)
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(_usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"reson {package_version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"reson: unknown command {name!r}. Choose one of: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    if rest in (["--help"], ["-h"]):
        print(command_help(name), end="")
        return 0
    return import_command(name).main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
