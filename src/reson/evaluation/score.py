"""Score saved completions with the training rewards, so a reward change can be checked against real outputs.

    reson score completions.jsonl [--output_file scored.jsonl] [--reward_timeout 5.0]

Each input line is a JSON object with ``completion`` (the generated text, or a message list) and, for a maths
problem, ``answer`` or ``gold`` (the gold answer: a final answer, or a full GSM8K/MATH solution), for Countdown
``nums`` and ``target``; and optionally ``prompt`` (so a ``<think>`` prefilled at the end of the prompt is taken into
account). So `reson eval`'s ``samples.jsonl`` and a run's ``emergence.jsonl`` can be rescored as they are, for either
task. Prints accuracy and format statistics; ``--output_file`` gets every input line back with ``accuracy`` and
``format`` (and ``extracted``, the answer span that was graded) added.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from reson.core import folders
from reson.core.help import HelpFormatter
from reson.core.jsonl import JsonlError, read_jsonl, write_jsonl
from reson.core.rewards import DEFAULT_TIMEOUT, is_countdown, score_rows


class InputError(ValueError):
    """Bad input file: the message names the file, the line and what to change."""


def read_rows(path: Path) -> list[dict]:
    """Read and check a completions JSONL before any scoring."""
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass a JSONL file with one {{'completion', 'answer'}} object a line")
    try:
        rows = read_jsonl(path, strict=True).records
    except JsonlError as error:
        raise InputError(str(error)) from None
    for number, row in enumerate(rows, start=1):
        if "completion" not in row or not ("answer" in row or "gold" in row or is_countdown(row)):
            raise InputError(
                f"{path}, row {number}: each line needs 'completion' (the generated text) and 'answer' or 'gold' "
                "(the gold answer), or for Countdown 'nums' and 'target'; it may have 'prompt'"
            )
    if not rows:
        raise InputError(f"{path}: no completions in the file; add one JSON object a line")
    return rows


def _stats(rows: list[dict]) -> str:
    graded = [r["accuracy"] for r in rows if r["accuracy"] is not None]
    grades = Counter(r["format"] for r in rows)
    lines = [f"completions: {len(rows)}"]
    if graded:
        lines.append(f"accuracy: {sum(graded) / len(graded):.4f} ({int(sum(graded))}/{len(graded)} correct)")
    else:
        lines.append("accuracy: n/a (no gold answer could be parsed)")
    skipped = len(rows) - len(graded)
    if skipped:
        lines.append(f"skipped (gold answer unparseable): {skipped}")
    lines.append(f"format: mean {sum(r['format'] for r in rows) / len(rows):.4f}")
    for grade in (1.0, 0.5, 0.25, 0.0):
        lines.append(f"  format {grade:<4}: {grades.get(grade, 0) / len(rows):7.2%}  ({grades.get(grade, 0)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reson score",
        description="Score a JSONL of completions with the accuracy and format rewards and print their statistics.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "file",
        type=Path,
        help="JSONL: one {'completion', 'answer' or 'gold' (or 'nums' and 'target')[, 'prompt']} a line",
    )
    parser.add_argument("--output_file", type=Path, help="write every line back with accuracy and format added")
    parser.add_argument("--overwrite", action="store_true", help="replace --output_file if it exists")
    parser.add_argument(
        "--reward_timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to grade one answer; over: 0.0"
    )
    args = parser.parse_args(argv)

    # Read and check the input
    try:
        if not args.reward_timeout > 0:
            raise InputError(f"--reward_timeout must be a positive number of seconds, got {args.reward_timeout}")
        folders.check_output_file(args.output_file, "--output_file", args.overwrite)
        rows = read_rows(args.file)
    except (InputError, folders.FolderError) as error:
        print(f"reson score: {error}", file=sys.stderr)
        return 2

    # Score
    scores = score_rows(
        [row["completion"] for row in rows], rows, [row.get("prompt") or "" for row in rows], args.reward_timeout
    )
    for row, result in zip(rows, scores, strict=True):
        row.update(accuracy=result.accuracy, format=result.format, extracted=result.extracted)

    # Report
    print(_stats(rows))
    if args.output_file is not None:
        write_jsonl(args.output_file, rows)
        print(f"wrote {len(rows)} scored lines to {args.output_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
